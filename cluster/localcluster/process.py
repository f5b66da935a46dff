"""Daemons of a node: started detached, found again by pid file, stopped by pid."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


class Daemon:
    """One long-running process with a pid file and a log file in the node's state directory.

    A pid counts as the daemon only while /proc/PID/exe is still the binary it was started from
    and the process is not a zombie: after a reboot or a crash the pid may name another program,
    which must never be signalled.

    `launcher` is a command line that prepares the process and then execs ARGV in its own place
    (so the pid it was started as becomes the daemon's), for what nsenter does not do.
    """

    def __init__(self, name: str, argv: list[str], state_dir: Path, netns: str | None = None,
                 env: dict[str, str] | None = None, mount_ns: Path | None = None,
                 launcher: list[str] | None = None, log_file: Path | None = None):
        self.name = name
        self.argv = argv
        self.state_dir = state_dir
        self.netns = netns
        self.mount_ns = mount_ns
        self.env = env
        self.launcher = launcher or []
        self.pid_file = state_dir / f"{name}.pid"
        self.log_file = log_file or state_dir / "logs" / f"{name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
            if os.readlink(f"/proc/{pid}/exe") != os.path.realpath(self.argv[0]):
                return None
        except (OSError, ValueError):
            return None
        return None if state(pid) in (None, "Z") else pid

    def alive(self) -> bool:
        return self.pid() is not None

    def start(self) -> None:
        if self.alive():
            return
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        # nsenter, not `ip netns exec`: the latter remounts /sys in a new mount namespace, and
        # runc then finds no cgroup mounts. nsenter execs the daemon, so its pid is the daemon's.
        enter = [f"--net=/run/netns/{self.netns}"] if self.netns else []
        enter += [f"--mount={self.mount_ns}"] if self.mount_ns else []
        argv = (["nsenter", *enter, "--"] if enter else []) + self.launcher + self.argv
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    cwd=self.state_dir, start_new_session=True,
                                    env={**os.environ, **(self.env or {})})
        self.pid_file.write_text(f"{proc.pid}\n")
        # Wait for nsenter (and the launcher) to exec the daemon, so that pid() recognises it.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not self.alive():
            if proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at once ({proc.returncode}); log: {self.log_file}")
            time.sleep(0.05)

    def stop(self, grace: float = 20) -> None:
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            wait_exited([pid], grace)
            if self.alive():
                os.kill(pid, signal.SIGKILL)
            wait_exited([pid], KILL_GRACE)
        self.pid_file.unlink(missing_ok=True)


# How long a SIGKILLed process may take to finish exiting.
KILL_GRACE = 10


def state(pid: int) -> str | None:
    """PID's state letter from /proc/PID/stat (proc(5): R, S, Z, ...); None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def exited(pid: int) -> bool:
    """Whether PID has finished exiting: gone, or a zombie, which holds nothing but its pid.

    Not whether it is still the daemon: an exiting process loses its exe link and command line
    first and still has its working directory and open files for a while after.
    """
    return state(pid) in (None, "Z", "X")


def wait_exited(pids: list[int], timeout: float) -> None:
    """Waits until each of PIDS has exited, or `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while not all(exited(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)


def wait_for(what: str, check, timeout: float, log: Path | None = None) -> None:
    """Polls check() until it is true, or fails naming what did not happen and where to look."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen in {timeout:.0f}s" + (f"; log: {log}" if log else ""))
        time.sleep(0.25)
