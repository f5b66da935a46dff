"""Sockets in a node's network namespace, made by a process that stays in the machine's.

A socket belongs to the namespace it was made in, whatever thread later uses it: made_in()
switches this thread into the namespace (setns), makes the socket and switches back, so one
process can listen or dial in several namespaces while relaying to the machine's loopback.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
T = TypeVar("T")


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns failed")


def made_in(netns: str, make: Callable[[], T]) -> T:
    """make(), run on this thread inside /run/netns/NETNS."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            return make()
        finally:
            _setns(home)
    finally:
        os.close(home)
        os.close(target)


def listener(address: tuple[str, int]) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(128)
    return sock


def pipe(src: socket.socket, dst: socket.socket) -> None:
    """Copies until SRC's end is done, then passes the half-close on (an HTTP/1.0 client that
    shuts its sending side still gets its answer)."""
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def join(a: socket.socket, b: socket.socket) -> None:
    """Relays both ways until both sides are done, then closes both."""
    back = threading.Thread(target=pipe, args=(b, a), daemon=True)
    back.start()
    pipe(a, b)
    back.join()
    a.close()
    b.close()


def serve(sock: socket.socket, handle: Callable[[socket.socket], None]) -> None:
    """Accepts forever, each connection handled on a thread of its own."""
    while True:
        client, _ = sock.accept()
        threading.Thread(target=handle, args=(client,), daemon=True).start()
