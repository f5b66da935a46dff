"""Waiting for a condition, as every test that drives a cluster does."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    """condition()'s first truthy value, polled until `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@contextmanager
def polled_throughout(problem: Callable[[], str | None], interval: float = 0.5) -> Iterator[list[str]]:
    """Calls problem() (None while all is well, else what is wrong) every `interval` seconds while
    the block runs, in a thread of its own, and yields the list of what it said was wrong, each
    "HH:MM:SS: <problem>", filled as it happens."""
    problems: list[str] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            found = problem()
            if found is not None:
                problems.append(f"{time.strftime('%T')}: {found}")
            done.wait(interval)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        yield problems
    finally:
        done.set()
        poller.join(10)
