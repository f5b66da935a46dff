"""A TFJob-shaped cluster of ``python -m trainer`` processes on loopback, for the tests and the benchmark.

Each task gets its own free 127.0.0.1 port, the TF_CONFIG the Kubeflow operator would inject (``master``
included), a log file and a private TMPDIR, so a test can see what each process printed and left behind.
A ``launcher`` runs each task through another command, e.g. ``unshare --pid --fork --mount-proc`` to make
the trainer PID 1 of a PID namespace of its own, as it is in its container.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_ports(count: int) -> list[int]:
    """Ports that were free a moment ago (all held open at once, so they are distinct)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


class LoopbackJob:
    """Start, kill, restart and wait for the tasks of one job; ``jobs`` maps job name to replica count."""

    def __init__(self, jobs: dict[str, int], trainer_args: list[str], workdir: Path, env: dict | None = None,
                 launcher: list[str] | None = None):
        ports = iter(free_ports(sum(jobs.values())))
        self.spec = {job: [f"127.0.0.1:{next(ports)}" for _ in range(count)] for job, count in jobs.items()}
        self.trainer_args = list(trainer_args)
        self.workdir = Path(workdir)
        self._env = dict(os.environ if env is None else env)
        self._launcher = list(launcher or [])  # a command that forks the trainer and waits for it
        self._procs: dict[tuple[str, int], subprocess.Popen] = {}
        self.starts: dict[tuple[str, int], int] = {}
        self.exit_codes: dict[tuple[str, int], list[int]] = {key: [] for key in self.tasks}

    @property
    def tasks(self) -> list[tuple[str, int]]:
        return [(job, index) for job, addresses in self.spec.items() for index in range(len(addresses))]

    def tf_config(self, job: str, index: int) -> str:
        return json.dumps({"cluster": self.spec, "task": {"type": job, "index": index}, "environment": "cloud"})

    def log_path(self, job: str, index: int) -> Path:
        return self.workdir / "logs" / f"{job}-{index}.log"

    def tmp_dir(self, job: str, index: int) -> Path:
        return self.workdir / "tmp" / f"{job}-{index}"

    def start(self, job: str, index: int, with_tf_config: bool = True) -> subprocess.Popen:
        """Start (or restart) one task; ``with_tf_config=False`` runs it as a lone process instead."""
        key = (job, index)
        if key in self._procs and self._procs[key].poll() is None:
            raise RuntimeError(f"{job}:{index} is already running")
        self.log_path(job, index).parent.mkdir(parents=True, exist_ok=True)
        self.tmp_dir(job, index).mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in self._env.items() if k != "TF_CONFIG"}
        if with_tf_config:
            env["TF_CONFIG"] = self.tf_config(job, index)
        env.update(
            TMPDIR=str(self.tmp_dir(job, index)),
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
            PYTHONUNBUFFERED="1",
        )
        self.starts[key] = self.starts.get(key, 0) + 1
        with open(self.log_path(job, index), "a") as log:
            log.write(f"=== start {self.starts[key]} of {job}:{index} ===\n")
            log.flush()
            proc = subprocess.Popen([*self._launcher, sys.executable, "-m", "trainer", *self.trainer_args], env=env,
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._procs[key] = proc
        return proc

    def start_all(self) -> None:
        for job, index in self.tasks:
            self.start(job, index)

    def process(self, job: str, index: int) -> subprocess.Popen:
        return self._procs[(job, index)]

    def trainer_pid(self, job: str, index: int) -> int:
        """The trainer's PID on this machine: the process started, or the one its launcher forked."""
        proc = self._procs[(job, index)]
        if not self._launcher:
            return proc.pid
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        if len(children) != 1:
            raise RuntimeError(f"{job}:{index}: the launcher {self._launcher[0]} has children {children}, not one")
        return int(children[0])

    def signal(self, job: str, index: int, signum: int) -> None:
        """Send ``signum`` to the trainer itself (under a launcher, not to the launcher)."""
        os.kill(self.trainer_pid(job, index), signum)

    def kill(self, job: str, index: int) -> int:
        """SIGKILL the task, as a node failure or the OOM killer would."""
        self._procs[(job, index)].send_signal(signal.SIGKILL)
        return self.wait(job, index, timeout=30)

    def wait(self, job: str, index: int, timeout: float) -> int:
        returncode = self._procs[(job, index)].wait(timeout=timeout)
        self._record_exit((job, index))
        return returncode

    def wait_all(self, timeout: float) -> dict[tuple[str, int], int]:
        deadline = time.monotonic() + timeout
        return {key: self.wait(*key, timeout=max(0.0, deadline - time.monotonic())) for key in self._procs}

    def supervise(self, timeout: float, max_restarts: int = 3) -> dict[tuple[str, int], int]:
        """Act as the TFJob operator does with ``restartPolicy: OnFailure``: restart each task that exits
        non-zero, until every task has exited 0. Returns the final exit codes."""
        deadline = time.monotonic() + timeout
        while True:
            done = True
            for key, proc in list(self._procs.items()):
                if proc.poll() is None:
                    done = False
                    continue
                self._record_exit(key)
                if proc.returncode != 0:
                    if self.starts[key] > max_restarts:
                        raise RuntimeError(f"{key[0]}:{key[1]} failed {self.starts[key]} times:\n{self.tail(*key)}")
                    self.start(*key)
                    done = False
            if done:
                return {key: proc.returncode for key, proc in self._procs.items()}
            if time.monotonic() > deadline:
                raise TimeoutError(f"the job did not finish in {timeout} s; exit codes so far {self.exit_codes}")
            time.sleep(0.2)

    def _record_exit(self, key: tuple[str, int]) -> None:
        """Note a finished process's exit code (once per start)."""
        if len(self.exit_codes[key]) < self.starts[key]:
            self.exit_codes[key].append(self._procs[key].returncode)

    def log(self, job: str, index: int) -> str:
        return self.log_path(job, index).read_text()

    def wait_for_log(self, job: str, index: int, pattern: str, timeout: float) -> re.Match:
        """Wait until the task's log matches ``pattern``; fail if it exits or the time runs out first."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.log(job, index))
            if match:
                return match
            if self._procs[(job, index)].poll() is not None:
                raise RuntimeError(f"{job}:{index} exited ({self._procs[(job, index)].returncode}) before "
                                   f"printing {pattern!r}:\n{self.tail(job, index)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{job}:{index} did not print {pattern!r} in {timeout} s:\n{self.tail(job, index)}")
            time.sleep(0.2)

    def tail(self, job: str, index: int, lines: int = 40) -> str:
        return "\n".join(self.log(job, index).splitlines()[-lines:])

    def stop(self) -> None:
        """Kill whatever of this cluster still runs (only the processes it started)."""
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def __enter__(self) -> "LoopbackJob":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
