"""SIGTERM ends every role of the trainer promptly while it runs as PID 1 of a PID namespace, as it does
in its container (``python -m trainer`` is the image's entrypoint, with no init in front of it).

The kernel hands an init process only the signals it has a handler for, so without one the kubelet's
SIGTERM is dropped and a deleted replica trains on until the SIGKILL at the end of its grace period
(30 s by default). Each task here runs under ``unshare --pid --fork --mount-proc``, and each test checks
first that it is PID 1 there. The first test shows the rule itself, with a plain Python process.
"""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from trainer.loopback_job import LoopbackJob
from trainer.termination import EXIT_TERMINATED
from trainer_fixtures import mnist_dir  # noqa: F401 (a pytest fixture)
from trainer_helpers import JOB_TIMEOUT_S, trainer_args

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a PID namespace of its own (unshare --pid) needs root")

# The task forked by unshare is PID 1 of a new PID namespace (with its own /proc); unshare passes on its
# exit code and, should unshare die, the kernel kills the task.
PID1 = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
# Generous, for a loaded 2-core machine, and well under the kubelet's 30 s grace period. Measured: see
# docs/benchmarks.md.
EXIT_BOUND_S = 10.0
PS_TOPOLOGY = {"master": 1, "worker": 2, "ps": 1}
MWMS_TOPOLOGY = {"chief": 1, "worker": 2}


def pid_in_its_namespace(pid: int) -> list[int]:
    """The PIDs of a process, from this machine's PID namespace inwards (``NSpid`` of /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("NSpid:"))
    return [int(n) for n in line.split()[1:]]


def terminate(cluster: LoopbackJob, job: str, index: int) -> tuple[int, float]:
    """SIGTERM the task, which must be PID 1 of its namespace, as the container runtime does; its exit code
    and the seconds until it exited (EXIT_BOUND_S at most, else the test fails)."""
    pid = cluster.trainer_pid(job, index)
    assert pid_in_its_namespace(pid)[-1] == 1, f"{job}:{index} is not PID 1 of its namespace"
    began = time.monotonic()
    cluster.signal(job, index, signal.SIGTERM)
    try:
        code = cluster.wait(job, index, timeout=EXIT_BOUND_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{job}:{index} still ran {EXIT_BOUND_S} s after SIGTERM:\n{cluster.tail(job, index)}")
    seconds = time.monotonic() - began
    print(f"\n{job}:{index} exited {code} {seconds:.2f} s after SIGTERM")
    return code, seconds


def assert_terminated(cluster: LoopbackJob, job: str, index: int) -> None:
    code, _ = terminate(cluster, job, index)
    assert code == EXIT_TERMINATED, f"{job}:{index} exited {code}:\n{cluster.tail(job, index)}"
    assert re.search(rf"^SIGTERM: .*exiting with {EXIT_TERMINATED}$", cluster.log(job, index), re.MULTILINE), \
        cluster.tail(job, index)


def test_a_python_pid1_without_a_handler_never_sees_sigterm(tmp_path):
    """The rule the trainer's handler is for, on this kernel: the same SIGTERM leaves the process running."""
    ready = tmp_path / "ready"
    program = f"import pathlib, time; pathlib.Path({str(ready)!r}).touch(); time.sleep(60)"
    launcher = subprocess.Popen([*PID1, sys.executable, "-c", program])
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert launcher.poll() is None and time.monotonic() < deadline, "the process did not start"
            time.sleep(0.1)
        (child,) = open(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read().split()
        assert pid_in_its_namespace(int(child))[-1] == 1
        os.kill(int(child), signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            launcher.wait(timeout=3)
    finally:
        launcher.kill()  # --kill-child: the process goes with it
        launcher.wait()


def test_a_single_process_training_exits_on_sigterm(tmp_path, mnist_dir):
    cluster = LoopbackJob({"chief": 1}, trainer_args(mnist_dir, tmp_path / "model", train_steps=5000), tmp_path,
                          launcher=PID1)
    with cluster:
        cluster.start("chief", 0, with_tf_config=False)
        cluster.wait_for_log("chief", 0, r"Saved checkpoint at step \d+", JOB_TIMEOUT_S)
        assert_terminated(cluster, "chief", 0)


def test_every_role_of_a_parameter_server_job_exits_on_sigterm(tmp_path, mnist_dir):
    """The chief while it trains, a worker and the PS while they serve (a serving task waits in a sleep loop
    for the chief's completion marker, where the handler's exit comes at once)."""
    cluster = LoopbackJob(PS_TOPOLOGY, trainer_args(mnist_dir, tmp_path / "model", train_steps=5000), tmp_path,
                          launcher=PID1)
    with cluster:
        cluster.start_all()
        cluster.wait_for_log("master", 0, r"Saved checkpoint at step \d+", JOB_TIMEOUT_S)
        assert_terminated(cluster, "master", 0)
        assert_terminated(cluster, "worker", 1)
        assert_terminated(cluster, "ps", 0)
        assert "Training finished" not in cluster.log("master", 0)


def test_a_mirrored_worker_exits_on_sigterm_while_it_trains(tmp_path, mnist_dir):
    """While it trains. Still waiting at start-up for its peers, it does not exit (TensorFlow holds the GIL
    there; trainer/termination.py), so that is not tested."""
    cluster = LoopbackJob(MWMS_TOPOLOGY, trainer_args(mnist_dir, tmp_path / "model", train_steps=5000), tmp_path,
                          launcher=PID1)
    with cluster:
        cluster.start_all()
        cluster.wait_for_log("chief", 0, r"Saved checkpoint at step \d+", JOB_TIMEOUT_S)
        # TensorFlow's coordination service replaced the handler while the strategy started; the watcher
        # put it back (without that, this SIGTERM would only be recorded by TensorFlow).
        assert "SIGTERM: TensorFlow installed a handler of its own" in cluster.log("worker", 1)
        assert_terminated(cluster, "worker", 1)


def test_a_chief_waiting_inside_tensorflow_for_its_ps_exits_on_sigterm(tmp_path, mnist_dir):
    """A chief whose PS is not there waits at start-up inside TensorFlow, where no Python handler runs (a
    restarted chief does so until the operator's new PS pod answers): the watcher thread exits all the same."""
    cluster = LoopbackJob(PS_TOPOLOGY, trainer_args(mnist_dir, tmp_path / "model"), tmp_path, launcher=PID1)
    with cluster:
        cluster.start("master", 0)
        cluster.wait_for_log("master", 0, r"(?m)^MNIST: ", JOB_TIMEOUT_S)
        time.sleep(5)  # into the strategy's connection to the cluster
        assert cluster.process("master", 0).poll() is None, cluster.tail("master", 0)
        assert "Saved checkpoint" not in cluster.log("master", 0)
        assert_terminated(cluster, "master", 0)

