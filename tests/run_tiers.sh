#!/usr/bin/env bash
# `make test`'s runner: the real-node tier beside every other tier, as two pytest sessions, or with
# MLPLATFORM_TEST_PARALLEL=0 every tier one after the other (`pytest tests`).
#
# Why side by side: the real-node tier (tests/realnode) is most of the run and most of its time is
# spent waiting (pods starting, a TFJob training), while the other tiers are short and busy. The
# tiers were made to run beside each other: each starts its own private clusters, hubs and ports,
# and real nodes take the machine lock (tests/realnode/real_cluster.py). On this project's 2-core
# machine the whole run took 32 to 37 min side by side against 49 min one after the other
# (docs/benchmarks.md#tests). The load it adds (4-8) made timing-bound real-node checks fail in
# earlier runs; each was fixed where it failed (a page waited for rather than a health check, a
# bound that allows KubeSpawner's jitter, `down` waiting for every process it stopped, a queued
# server's position kept through a missed read) before this became the default.
#
# Parallel output: the other tiers print to the terminal as they run; the real-node tier writes to
# $MLPLATFORM_TEST_LOG_DIR/realnode.log (.local/test by default) and is followed on the terminal
# once the others have finished, so the two never interleave. The exit status fails if either did.
# Extra arguments go to the pytest session(s) (for example --maxfail=1).
set -uo pipefail
cd "$(dirname "$0")/.." || exit

PY=${PY:-.venv/bin/python}
# Each session's slowest tests in its summary: where the time goes, in every CI log.
DURATIONS=--durations=25
# How long a session may run before it is stopped as if by Ctrl-C: its fixtures' finalizers run
# (clusters down) and pytest prints what failed so far. CI stops a run at 90 min and keeps only its
# log; a run stopped there (one failure slowing every test behind it) said nothing of why. 75 min
# leaves CI's setup before the tests and the finalizers after them time to finish.
BUDGET_S=${MLPLATFORM_TEST_BUDGET_S:-4500}

# A pytest session that Ctrl-C, SIGINT and its budget stop through its finalizers.
# A command started with `&` by a shell without job control ignores SIGINT, and Python then never
# raises KeyboardInterrupt: each session gets a handler back, so that Ctrl-C, or the trap below on
# CI's SIGTERM, stops it (the real-node session's finalizers take its cluster down). The first
# SIGINT is the only one: a second one (Ctrl-C reaches both sessions from the terminal and again
# from the trap) must not cut those finalizers short. SIGALRM is the budget.
interruptible_pytest() {
  exec "$PY" -c 'import signal, sys, pytest
budget = int(sys.argv[1])
def stop(signum, frame):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    if signum == signal.SIGALRM:
        print(f"\nmake test: {budget} s have passed (MLPLATFORM_TEST_BUDGET_S): stopping this session, "
              "its finalizers run and what failed so far is listed", file=sys.stderr, flush=True)
    raise KeyboardInterrupt
signal.signal(signal.SIGINT, stop)
signal.signal(signal.SIGALRM, stop)
signal.alarm(budget)
sys.exit(pytest.main(sys.argv[2:]))' "$BUDGET_S" "$@"
}

if [ "${MLPLATFORM_TEST_PARALLEL:-1}" = 0 ]; then
  interruptible_pytest tests "$DURATIONS" "$@"
fi

log_dir=${MLPLATFORM_TEST_LOG_DIR:-.local/test}
mkdir -p "$log_dir"
realnode_log=$log_dir/realnode.log

interruptible_pytest tests/realnode "$DURATIONS" "$@" >"$realnode_log" 2>&1 &
realnode=$!
echo "make test: tests/realnode runs beside the other tiers; its output: $realnode_log (shown after them)"
interruptible_pytest tests --ignore=tests/realnode "$DURATIONS" "$@" &
others=$!
# Stopped early: both sessions end through their finalizers, and the real-node log is shown (CI's
# log is all that is kept of a run it stops).
follow=""
stopped() {
  kill -INT "$realnode" "$others" 2>/dev/null
  wait "$others"
  wait "$realnode"
  if [ -z "$follow" ]; then
    echo "make test: stopped; tests/realnode's output:"
    cat "$realnode_log"
  fi
  exit 130
}
trap stopped INT TERM
wait "$others"
others_status=$?

echo
echo "make test: the other tiers ended (exit $others_status); tests/realnode so far, then as it runs:"
# In the background, like the sessions: a trap runs only between commands, and `wait` is one.
tail -n +1 -f --pid="$realnode" "$realnode_log" &
follow=$!
wait "$realnode"
realnode_status=$?
wait "$follow"

echo
echo "make test: the other tiers exited $others_status, tests/realnode exited $realnode_status"
[ "$others_status" -eq 0 ] && [ "$realnode_status" -eq 0 ]
