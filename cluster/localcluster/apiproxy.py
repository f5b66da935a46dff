"""Makes the API server, which listens on the machine's 127.0.0.1 only, reachable on PORT inside a
node's network namespace, without any route between the two.

A listening socket belongs to the namespace it was made in, whatever thread later uses it: the
socket is made inside the node's namespace (setns on this thread), then the thread returns to
its own namespace, where each accepted connection is relayed to 127.0.0.1:PORT. The kubelet,
kube-proxy and the node's pods with host networking use it as the API server's address.

Usage: python3 -m localcluster.apiproxy NETNS PORT   (runs until killed)
"""

from __future__ import annotations

import ctypes
import os
import socket
import sys
import threading

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns failed")


def listen_in(netns: str, port: int) -> socket.socket:
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # Loopback for the kubelet and kube-proxy; the API server's advertised address (on the
            # namespace's loopback too) for pods, through the kubernetes Service.
            sock.bind(("0.0.0.0", port))
            sock.listen(128)
        finally:
            _setns(home)
    finally:
        os.close(home)
        os.close(target)
    return sock


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _relay(client: socket.socket, port: int) -> None:
    try:
        upstream = socket.create_connection(("127.0.0.1", port), timeout=10)
        upstream.settimeout(None)
    except OSError:
        client.close()
        return
    threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
    _pipe(client, upstream)
    client.close()
    upstream.close()


def main(argv: list[str]) -> int:
    netns, port = argv[0], int(argv[1])
    listener = listen_in(netns, port)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=_relay, args=(client, port), daemon=True).start()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
