"""The API server's way into the nodes: an HTTP CONNECT proxy on a unix socket, which the API
server's egress selector names for its `cluster` network, as clusters whose control plane cannot
route to the nodes do with konnectivity.

The API server listens on the machine's loopback and nothing routes from there to the nodes'
namespaces. What it opens to the cluster (a kubelet for logs, exec, attach and port-forward; a
pod or a Service's cluster IP for webhooks and API proxying) it asks of this proxy as
`CONNECT ip:port`, and the proxy dials from inside the namespace that holds the address: a node's
name, own address or pod range names that node; a cluster IP any node, whose kube-proxy rules
lead on. Any other address is refused.

Usage: python3 -m cluster.localcluster.egress SOCKET NODES_DIR   (runs until killed)
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import time
from pathlib import Path

from .network import NODE_CIDR, SERVICE_CIDR
from .relay import join, made_in, serve
from .settings import NodeSettings

EGRESS_CONFIG = """\
apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
- name: cluster
  connection:
    proxyProtocol: HTTPConnect
    transport:
      uds:
        udsName: {socket}
"""


def socket_path(nodes_dir: Path) -> Path:
    return nodes_dir / "egress.sock"


def write_config(nodes_dir: Path) -> Path:
    """The API server's --egress-selector-config-file, for a new cluster with real nodes."""
    nodes_dir.mkdir(parents=True, exist_ok=True)
    path = nodes_dir / "egress-selector.yaml"
    path.write_text(EGRESS_CONFIG.format(socket=socket_path(nodes_dir)))
    return path


def target_for(host: str, nodes: list[NodeSettings]) -> tuple[str, str] | None:
    """The node namespace to dial HOST from and the address to dial there, or None when HOST is
    not the cluster's. The API server names a kubelet by the node's name (its first preferred
    address type is Hostname), a pod or Service by address."""
    for node in nodes:
        if host == node.spec.name:
            return node.netns, node.node_ip
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    for node in nodes:
        if ip == ipaddress.ip_address(node.node_ip) or ip in ipaddress.ip_network(node.pod_subnet):
            return node.netns, host
    cluster_ranges = (ipaddress.ip_network(NODE_CIDR), ipaddress.ip_network(SERVICE_CIDR))
    if nodes and any(ip in r for r in cluster_ranges):
        return nodes[0].netns, host
    return None


def dial(netns: str, address: str, port: int, patience: float = 5) -> socket.socket:
    """A connection to ADDRESS:PORT made from inside NETNS. A refused one is tried again for a few
    seconds: a Service that just got its endpoints (a webhook's, say) reaches kube-proxy's rules a
    moment later."""
    deadline = time.monotonic() + patience
    while True:
        sock = made_in(netns, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        sock.settimeout(10)
        try:
            sock.connect((address, port))
        except ConnectionRefusedError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)
            continue
        except OSError:
            sock.close()
            raise
        sock.settimeout(None)
        return sock


def _request(client: socket.socket) -> tuple[str, int]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(4096)
        if not chunk or len(data) > 16384:
            raise ValueError("no complete request")
        data += chunk
    method, target, _ = data.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
    if method != "CONNECT":
        raise ValueError(f"{method}: only CONNECT is served")
    host, _, port = target.rpartition(":")
    return host.strip("[]"), int(port)


def main(argv: list[str]) -> int:
    path, nodes_dir = Path(argv[0]), Path(argv[1])

    def handle(client: socket.socket) -> None:
        try:
            host, port = _request(client)
            nodes = [NodeSettings.load(p.parent) for p in sorted(nodes_dir.glob("*/node.json"))]
            target = target_for(host, nodes)
            if target is None:
                client.sendall(b"HTTP/1.1 403 Forbidden\r\n\r\n")
                print(f"egress: refused {host}:{port} (not in the cluster's ranges)", flush=True)
                client.close()
                return
            upstream = dial(*target, port)
        except (OSError, ValueError) as error:
            try:
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
            except OSError:
                pass
            print(f"egress: {error}", flush=True)
            client.close()
            return
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        join(client, upstream)

    path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    os.chmod(path, 0o600)  # the API server runs as root here, as does everything of the cluster
    server.listen(128)
    serve(server, handle)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
