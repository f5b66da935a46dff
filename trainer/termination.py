"""SIGTERM ends the trainer promptly, also as PID 1 of its container.

A pod's container runs ``python -m trainer`` as the init process of its PID namespace, and the kernel
delivers to an init process only the signals it has a handler for (SIGKILL aside, which the kubelet sends
when the grace period is over). Python installs no SIGTERM handler, so without this module the kubelet's
SIGTERM (pod deleted, evicted, preempted, its job removed by cleanPodPolicy) is dropped and the replica
trains on for the whole grace period (30 s by default).

On SIGTERM the process exits at once with ``EXIT_TERMINATED`` (143, what a process without a handler would
report), unless it is writing what a later run reads (a checkpoint, summaries, the exported model, the
completion marker): then it exits as soon as that write is done, or after ``WRITE_GRACE_S`` if the write
hangs (a collective save whose peers are gone). Stopping at a step boundary would keep nothing more: the
steps since the last checkpoint are lost either way, and the next run resumes from that checkpoint.

The exit is made by a watcher thread, not by the Python-level handler: Python runs a handler only when the
main thread executes bytecode, and the main thread can spend long stretches inside TensorFlow (a chief
waiting at start-up for a PS that is gone, a compiled training call). The C-level handler writes the signal
number to the wakeup fd (``signal.set_wakeup_fd``) at once, from whichever thread received it, and the
watcher is blocked reading that fd.
"""

import ctypes
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# 128 + SIGTERM. Kubeflow's ExitCode restart policy retries any exit code of 128 or more
# (training-operator's IsRetryableExitCode), so a replica stopped by something other than its pod's
# deletion is recreated and resumes from its checkpoint, where 1-127 would fail the whole job for
# what is no fault of the program.
EXIT_TERMINATED = 128 + signal.SIGTERM
# How long a write in progress may delay the exit; well under the kubelet's default grace period (30 s).
WRITE_GRACE_S = 10.0
# How often the watcher checks that SIGTERM's handler is still the trainer's (see _Disposition).
TAKE_BACK_EVERY_S = 0.25


class Termination:
    """Install once, from the main thread, as the first thing the program does."""

    def __init__(self, log: Callable[[str], None], write_grace_s: float = WRITE_GRACE_S):
        self._log = log
        self._write_grace_s = write_grace_s
        self._lock = threading.Lock()
        self._requested = False
        self._writing: list[str] = []  # what the main thread is writing now (nested writes stack)

    def install(self) -> None:
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)  # set_wakeup_fd requires it; a full pipe drops bytes, not blocks
        # Any handler but SIG_DFL makes the kernel deliver SIGTERM to PID 1; the watcher does the work.
        signal.signal(signal.SIGTERM, _ignore_in_main_thread)
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        disposition = _Disposition(signal.SIGTERM)
        threading.Thread(target=self._watch, args=(read_fd, disposition), name="sigterm-watcher", daemon=True).start()

    @contextmanager
    def writing(self, what: str) -> Iterator[None]:
        """A write that SIGTERM must not cut short; the process exits right after it if SIGTERM came meanwhile."""
        with self._lock:
            self._writing.append(what)
        try:
            yield
        finally:
            with self._lock:
                self._writing.pop()
                stop = self._requested and not self._writing
            if stop:
                self._exit(f"SIGTERM: {what} written; exiting with {EXIT_TERMINATED}")

    def _watch(self, read_fd: int, disposition: "_Disposition") -> None:
        # The wakeup fd carries the number of every signal that has a Python handler (SIGINT's too).
        while True:
            readable, _, _ = select.select([read_fd], [], [], TAKE_BACK_EVERY_S)
            if readable and signal.SIGTERM in os.read(read_fd, 512):
                break
            if disposition.take_back():
                self._log("SIGTERM: TensorFlow installed a handler of its own (its preemption notifier); "
                          "the trainer's is back")
        with self._lock:
            self._requested = True
            writing = list(self._writing)
        if not writing:
            self._exit(f"SIGTERM: exiting with {EXIT_TERMINATED}")
        self._log(f"SIGTERM while writing {writing[0]}: exiting once it is written "
                  f"(at most {self._write_grace_s:g} s)")
        time.sleep(self._write_grace_s)
        self._exit(f"SIGTERM: {writing[0]} not written after {self._write_grace_s:g} s; "
                   f"exiting with {EXIT_TERMINATED}")

    def _exit(self, message: str) -> None:
        self._log(message)
        exit_now(EXIT_TERMINATED)


class _Disposition:
    """Python's C-level handler for a signal, kept so that it can be put back when other code replaces it.

    TensorFlow does: while a MultiWorkerMirroredStrategy starts, before the task waits for its peers, its
    coordination service installs a C++ SIGTERM handler (the preemption notifier) that only records the
    signal for a PreemptionCheckpointHandler, which the trainer does not use. Python's ``signal`` module
    cannot see the replacement, so this reads and writes the disposition with libc's ``sigaction``; only
    the handler's address (the first field of glibc's ``struct sigaction``) is compared.

    What this cannot mend: TensorFlow holds the GIL while that task waits for its peers, so no Python
    thread runs until they have all joined, and a SIGTERM in that wait goes to TensorFlow's handler and is
    lost (the kubelet's SIGKILL ends the task at the end of its grace period).
    """

    _SIZE = 256  # more than glibc's struct sigaction on any Linux architecture (152 bytes on x86-64)

    def __init__(self, signum: int):
        self._signum = signum
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.sigaction.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        self._ours = self._current()

    def _current(self) -> ctypes.Array:
        action = ctypes.create_string_buffer(self._SIZE)
        if self._libc.sigaction(self._signum, None, action) != 0:
            raise OSError(ctypes.get_errno(), f"sigaction({self._signum}) failed")
        return action

    def take_back(self) -> bool:
        """Reinstall Python's handler if another replaced it; whether it had been replaced."""
        handler = ctypes.sizeof(ctypes.c_void_p)
        if self._current().raw[:handler] == self._ours.raw[:handler]:
            return False
        if self._libc.sigaction(self._signum, self._ours, None) != 0:
            raise OSError(ctypes.get_errno(), f"sigaction({self._signum}) failed")
        return True


def _ignore_in_main_thread(signum, frame) -> None:
    """The Python-level handler; the exit is the watcher's (see the module's docstring)."""


def exit_now(status: int) -> None:
    """Exit without interpreter teardown, which can block on TensorFlow's threads and aborted collectives."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)

