"""Makes the API server, which listens on the machine's 127.0.0.1 only, reachable on PORT inside a
node's network namespace, without any route between the two.

The listening socket is made inside the node's namespace (relay.made_in); each connection it
accepts is relayed to the machine's 127.0.0.1:PORT. The kubelet, kube-proxy and the node's pods
with host networking use it as the API server's address; pods reach it through the kubernetes
Service at the advertised address, which the namespace carries on loopback.

Usage: python3 -m cluster.localcluster.apiproxy NETNS PORT   (runs until killed)
"""

from __future__ import annotations

import socket
import sys

from .relay import join, listener, made_in, serve


def main(argv: list[str]) -> int:
    netns, port = argv[0], int(argv[1])

    def relay(client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        join(client, upstream)

    serve(made_in(netns, lambda: listener(("0.0.0.0", port))), relay)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
