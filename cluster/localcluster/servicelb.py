"""The cluster's service load balancer: LoadBalancer and NodePort Services answer on this
machine's loopback, relayed into a real node's network namespace. It does the job of k3s's
servicelb or kind's cloud-provider-kind; here one host process is enough, because the cluster's
nodes are namespaces on this machine.

Why loopback: nothing on this machine may route to a node's address (10.243.N.2), and traffic may
only go to 127.0.0.0/8 and into the cluster's own namespaces. So each cluster takes a /24 of
127.0.0.0/8 for itself, recorded with the cluster (<state dir>/servicelb.json) and, machine-wide,
in /run/mlplatform/loopback-blocks.json, so that a developer's cluster and a test's never share one:

    127.A.B.(1+N)    node N: each NodePort answers there, relayed to <node N's ip>:<nodePort>
                     (also on the Node, annotation mlplatform.dev/loopback-address)
    127.A.B.64-254   LoadBalancer Services, one address each (status.loadBalancer.ingress[0].ip);
                     each port answers there, relayed to <a real node's ip>:<nodePort>

The relay connects from inside the node's namespace (the socket is made there, with setns on the
relaying thread), where kube-proxy's rules take the connection to an endpoint. The ingress says
`ipMode: Proxy`: the address is this relay's, not a VIP that kube-proxy should capture.

`externalTrafficPolicy: Local` is kept as a cloud's load balancer keeps it: a connection goes only
to nodes whose kube-proxy says, at the Service's healthCheckNodePort, that they have an endpoint of
their own (any node when none says so). The pod then sees its own node as the source, which
NetworkPolicy always admits; loadBalancerSourceRanges are enforced here, where the client's
address is known, as a cloud's load balancer enforces them.

The daemon lists Services and Nodes with the tools cache's kubectl every RESYNC_SECONDS and watches
Services in between, so a created, changed or deleted Service has its listeners within a second.
TCP only: a UDP or SCTP port gets a Warning event on its Service. No finalizer: the listeners are
this process's sockets, gone with it, so a deleted Service never waits for the load balancer.

Usage: python3 -m cluster.localcluster.servicelb STATE_DIR   (runs until killed; ServiceLB starts it)
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import itertools
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from .ports import listeners
from .process import Daemon
from .record import RUN_DIR, change
from .relay import join, made_in
from .settings import NodeSettings

BLOCKS_RECORD = RUN_DIR / "loopback-blocks.json"
# Clusters take their /24 from 127.100.0.0-127.199.255.0, clear of 127.0.0.1, Debian's 127.0.1.1
# and systemd-resolved's 127.0.0.53.
FIRST_BLOCK, BLOCK_COUNT = 100 * 256, 100 * 256
FIRST_LB_HOST, LAST_LB_HOST = 64, 254
MAX_NODES = FIRST_LB_HOST - 1
NODE_ANNOTATION = "mlplatform.dev/loopback-address"
# Services asking for another loadBalancerClass are left to whoever implements it.
LOAD_BALANCER_CLASS = "mlplatform.dev/servicelb"
MANAGER = "mlplatform-servicelb"
RESYNC_SECONDS = 10
CONNECT_TIMEOUT = 5
HEALTH_TIMEOUT = 1


def log(msg: str) -> None:
    print(f"{datetime.datetime.now().isoformat(timespec='seconds')} {msg}", file=sys.stderr, flush=True)


# --- the cluster's block of loopback addresses ---------------------------------------------------


def loopback_listeners() -> set[str]:
    """Addresses of 127.0.0.0/8 that some TCP socket of this machine listens on."""
    return {listener.address for listener in listeners() if listener.address.startswith("127.")}


class LoopbackBlocks:
    """The machine-wide record of which cluster holds which 127.A.B.0/24: {prefix: state dir}.

    /run is a tmpfs, so a reboot forgets it; each cluster's own record then claims its block again.
    """

    def __init__(self, record: Path = BLOCKS_RECORD):
        self.record = record

    def _locked(self, update):
        def pruned(data):
            # A holder whose directory is gone was removed without `down`: it holds nothing.
            data = {prefix: holder for prefix, holder in (data or {}).items() if Path(holder).is_dir()}
            result = update(data)
            return data, result

        return change(self.record, pruned)

    def claim(self, holder: Path, wanted: str | None = None) -> str:
        """The prefix "127.A.B" of HOLDER's block: WANTED (its recorded one), or a free one."""
        def update(data):
            if wanted is not None:
                other = data.get(wanted)
                if other not in (None, str(holder)):
                    raise RuntimeError(f"loopback block {wanted}.0/24 of {holder} is held by {other} "
                                       f"({self.record}); remove one of the clusters")
                data[wanted] = str(holder)
                return wanted
            taken = set(data)
            busy = {a.rsplit(".", 1)[0] for a in loopback_listeners()}
            start = int(hashlib.sha256(str(holder).encode()).hexdigest()[:8], 16)
            for i in range(BLOCK_COUNT):
                n = FIRST_BLOCK + (start + i) % BLOCK_COUNT
                prefix = f"127.{n // 256}.{n % 256}"
                if prefix not in taken and prefix not in busy:
                    data[prefix] = str(holder)
                    return prefix
            raise RuntimeError(f"no free /24 left in 127.100.0.0-127.199.255.0 ({self.record})")

        return self._locked(update)

    def release(self, holder: Path) -> None:
        def update(data):
            for prefix in [p for p, h in data.items() if h == str(holder)]:
                del data[prefix]

        self._locked(update)


def node_address(prefix: str, node: NodeSettings) -> str:
    if node.index >= MAX_NODES:
        raise ValueError(f"node {node.spec.name}: at most {MAX_NODES} nodes have a loopback address")
    return f"{prefix}.{1 + node.index}"


# --- the part -------------------------------------------------------------------------------------


class ServiceLB:
    """The daemon, with start / ready / alive / stop like a node's parts."""

    def __init__(self, state_dir: Path, nodes_dir: Path, kubectl: Path, kubeconfig: Path | None = None):
        self.state_dir = state_dir
        self.settings_file = state_dir / "servicelb.json"
        self.nodes_dir = nodes_dir
        self.kubectl = kubectl
        self.kubeconfig = kubeconfig
        self.synced_file = state_dir / "synced"
        self.daemon = Daemon("servicelb", [sys.executable, "-m", "cluster.localcluster.servicelb", str(state_dir)],
                             state_dir, env={"PYTHONPATH": str(Path(__file__).resolve().parents[2])})

    def settings(self) -> dict | None:
        return json.loads(self.settings_file.read_text()) if self.settings_file.exists() else None

    def prefix(self) -> str | None:
        settings = self.settings()
        return settings["prefix"] if settings else None

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        settings = self.settings()
        recorded = settings["prefix"] if settings else None
        prefix = LoopbackBlocks().claim(self.state_dir, recorded)
        if settings is None:
            if self.kubeconfig is None:
                raise RuntimeError("servicelb: a new load balancer needs the admin kubeconfig")
            settings = {"prefix": prefix, "kubeconfig": str(self.kubeconfig), "kubectl": str(self.kubectl),
                        "nodes_dir": str(self.nodes_dir)}
            self.settings_file.write_text(json.dumps(settings, indent=2) + "\n")
        self.synced_file.unlink(missing_ok=True)
        self.daemon.start()

    def ready(self) -> bool:
        """Running, and done with its first pass over the cluster's Services."""
        return self.alive() and self.synced_file.exists()

    def alive(self) -> bool:
        return self.daemon.alive()

    def status(self) -> str:
        prefix = self.prefix()
        return ("running" if self.alive() else "stopped") + (f" ({prefix}.0/24)" if prefix else "")

    def stop(self) -> None:
        self.daemon.stop()
        LoopbackBlocks().release(self.state_dir)
        shutil.rmtree(self.state_dir, ignore_errors=True)


# --- relaying -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    netns: str
    ip: str
    port: int
    health_port: int | None = None  # externalTrafficPolicy Local: where kube-proxy says if the node has an endpoint


def has_local_endpoint(target: Target) -> bool:
    """Whether the node's kube-proxy answers 200 at the Service's health check port, which it does
    while the node has a ready endpoint of the Service (503 while it has none)."""
    try:
        probe = made_in(target.netns, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    except OSError:
        return False
    with probe:
        try:
            probe.settimeout(HEALTH_TIMEOUT)
            probe.connect((target.ip, target.health_port))
            probe.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
            status_line = probe.makefile("rb").readline().decode(errors="replace")
        except OSError:
            return False
    return status_line.split()[1:2] == ["200"]


class Listener:
    """One address:port on this machine's loopback, relayed to TARGETS (tried in turn)."""

    def __init__(self, address: str, port: int, service: str, targets: list[Target],
                 source_ranges: tuple[str, ...] = ()):
        self.address, self.port, self.service = address, port, service
        self.targets = targets
        self.ranges = tuple(source_ranges)
        self.source_ranges = [ipaddress.ip_network(r, strict=False) for r in source_ranges]
        self.sock = socket.create_server((address, port), backlog=128)
        self.connections: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.closed = False
        self.turn = itertools.count()
        threading.Thread(target=self._accept, daemon=True, name=f"accept {address}:{port}").start()

    def _accept(self) -> None:
        while True:
            try:
                client, peer = self.sock.accept()
            except OSError:
                return  # closed
            if self.source_ranges and not any(ipaddress.ip_address(peer[0]) in r for r in self.source_ranges):
                client.close()  # loadBalancerSourceRanges: not from an allowed address
                continue
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _connect(self) -> socket.socket | None:
        targets = list(self.targets)
        if any(t.health_port for t in targets):
            targets = [t for t in targets if has_local_endpoint(t)] or targets
        first = next(self.turn) % len(targets) if targets else 0
        for target in targets[first:] + targets[:first]:
            try:
                upstream = made_in(target.netns, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            except OSError as err:
                log(f"{self.address}:{self.port}: node namespace {target.netns}: {err}")
                continue
            try:
                upstream.settimeout(CONNECT_TIMEOUT)
                upstream.connect((target.ip, target.port))
                upstream.settimeout(None)
                return upstream
            except OSError as err:
                log(f"{self.address}:{self.port} -> {target.ip}:{target.port} ({target.netns}): {err}")
                upstream.close()
        return None

    def _relay(self, client: socket.socket) -> None:
        upstream = self._connect()
        if upstream is None:
            client.close()
            return
        with self.lock:
            if self.closed:
                client.close()
                upstream.close()
                return
            self.connections.update((client, upstream))
        join(client, upstream)
        with self.lock:
            self.connections.difference_update((client, upstream))

    def close(self) -> None:
        """Stops listening (shutdown wakes the accepting thread) and ends open connections."""
        with self.lock:
            self.closed = True
            for conn in self.connections:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


# --- the controller -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Wanted:
    service: str  # namespace/name
    targets: tuple[Target, ...]
    source_ranges: tuple[str, ...] = ()


def is_ours(svc: dict) -> bool:
    spec = svc["spec"]
    return spec.get("type") == "LoadBalancer" and spec.get("loadBalancerClass") in (None, LOAD_BALANCER_CLASS)


def key_of(svc: dict) -> str:
    return f"{svc['metadata']['namespace']}/{svc['metadata']['name']}"


class Balancer:
    """Keeps the listeners, the Services' load-balancer status and the Nodes' annotation in step
    with the cluster."""

    def __init__(self, state_dir: Path):
        settings = json.loads((state_dir / "servicelb.json").read_text())
        self.state_dir = state_dir
        self.prefix = settings["prefix"]
        self.kubectl_argv = [settings["kubectl"], "--kubeconfig", settings["kubeconfig"], "--request-timeout=20s"]
        self.nodes_dir = Path(settings["nodes_dir"])
        self.services: dict[str, dict] = {}
        self.node_annotations: dict[str, dict] = {}
        self.listeners: dict[tuple[str, int], Listener] = {}
        self.addresses: dict[str, str] = {}  # Service uid -> its load-balancer address
        self.reported: dict[str, str] = {}  # Service uid -> the last event's message
        self.updates: queue.Queue = queue.Queue()
        self.watcher: subprocess.Popen | None = None  # the kubectl watch, which goes when this does

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run([*self.kubectl_argv, *args], input=input, capture_output=True, text=True)
        if check and out.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args[:3])}: {out.stderr.strip()}")
        return out

    # Watching: a kubectl watch feeds the queue; the main loop lists everything again every
    # RESYNC_SECONDS (and after a watch ends), which also covers what a watch restart missed.
    def watch(self) -> None:
        while True:
            proc = subprocess.Popen([*self.kubectl_argv[:3], "get", "services", "--all-namespaces", "--watch-only",
                                     "--output-watch-events", "-o", "json"],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self.watcher = proc
            pending = ""
            for line in proc.stdout:
                # One event a line (kubectl writes them compact); should one span lines, read on.
                pending += line
                try:
                    event = json.loads(pending)
                except ValueError:
                    continue
                pending = ""
                if isinstance(event, dict) and event.get("object", {}).get("kind") == "Service":
                    self.updates.put((event["type"], event["object"]))
            proc.wait()
            self.updates.put(("RESYNC", None))
            time.sleep(1)

    def resync(self) -> None:
        listed = json.loads(self.kubectl("get", "nodes,services", "--all-namespaces", "-o", "json").stdout)["items"]
        self.services = {key_of(o): o for o in listed if o["kind"] == "Service"}
        self.node_annotations = {o["metadata"]["name"]: o["metadata"].get("annotations", {})
                                 for o in listed if o["kind"] == "Node"}

    def run(self) -> None:
        threading.Thread(target=self.watch, daemon=True, name="watch").start()
        next_resync = 0.0
        while True:
            if time.monotonic() >= next_resync:
                try:
                    self.resync()
                except (RuntimeError, ValueError) as err:
                    log(f"listing Services and Nodes: {err}")
                next_resync = time.monotonic() + RESYNC_SECONDS
            else:
                try:
                    kind, obj = self.updates.get(timeout=max(0.0, next_resync - time.monotonic()))
                    while True:  # take every update already queued, then reconcile once
                        if kind == "RESYNC":
                            next_resync = 0.0
                        elif kind == "DELETED":
                            self.services.pop(key_of(obj), None)
                        else:
                            self.services[key_of(obj)] = obj
                        kind, obj = self.updates.get_nowait()
                except queue.Empty:
                    pass
            try:
                self.reconcile()
            except (RuntimeError, ValueError, OSError) as err:
                # Logged and tried again at the next change or resync; the listeners that are up stay.
                log(f"reconciling: {err}")
            (self.state_dir / "synced").touch()

    def nodes(self) -> list[NodeSettings]:
        return [NodeSettings.load(p.parent) for p in sorted(self.nodes_dir.glob("*/node.json"))]

    def allocate(self) -> None:
        """A loopback address for each of our LoadBalancer Services: the one its status already
        names (after a restart of this daemon), else the lowest free one."""
        ours = {s["metadata"]["uid"]: s for s in self.services.values() if is_ours(s)}
        self.addresses = {uid: ip for uid, ip in self.addresses.items() if uid in ours}
        used = set(self.addresses.values())
        for uid, svc in ours.items():
            if uid in self.addresses:
                continue
            for ingress in svc.get("status", {}).get("loadBalancer", {}).get("ingress", []):
                ip = ingress.get("ip", "")
                if self.in_lb_range(ip) and ip not in used:
                    self.addresses[uid] = ip
                    used.add(ip)
                    break
        for uid, svc in ours.items():
            if uid in self.addresses:
                continue
            free = [f"{self.prefix}.{h}" for h in range(FIRST_LB_HOST, LAST_LB_HOST + 1)
                    if f"{self.prefix}.{h}" not in used]
            if not free:
                self.event(svc, "Warning", "NoAddress",
                           f"no loopback address left in {self.prefix}.0/24 for a LoadBalancer Service")
                continue
            self.addresses[uid] = free[0]
            used.add(free[0])

    def in_lb_range(self, ip: str) -> bool:
        head, _, host = ip.rpartition(".")
        return head == self.prefix and host.isdigit() and FIRST_LB_HOST <= int(host) <= LAST_LB_HOST

    def wanted(self) -> tuple[dict[tuple[str, int], Wanted], dict[str, list[str]]]:
        """What should listen where, and per Service a note of what it cannot have."""
        nodes = self.nodes()
        want: dict[tuple[str, int], Wanted] = {}
        problems: dict[str, list[str]] = {}
        for key, svc in self.services.items():
            spec = svc["spec"]
            if spec.get("type") not in ("NodePort", "LoadBalancer"):
                continue
            lb_address = self.addresses.get(svc["metadata"]["uid"]) if is_ours(svc) else None
            ranges = tuple(spec.get("loadBalancerSourceRanges") or ())
            for port in spec.get("ports", []):
                protocol = port.get("protocol", "TCP")
                if protocol != "TCP":
                    problems.setdefault(key, []).append(f"{port['port']}/{protocol} is not relayed (TCP only)")
                    continue
                node_port = port.get("nodePort")
                if not node_port:
                    problems.setdefault(key, []).append(f"{port['port']}/TCP has no nodePort to relay to")
                    continue
                targets = tuple(Target(n.netns, n.node_ip, node_port) for n in nodes)
                for node, target in zip(nodes, targets):
                    want[(node_address(self.prefix, node), node_port)] = Wanted(key, (target,))
                if lb_address:
                    if spec.get("externalTrafficPolicy") == "Local" and spec.get("healthCheckNodePort"):
                        targets = tuple(replace(t, health_port=spec["healthCheckNodePort"]) for t in targets)
                    want[(lb_address, port["port"])] = Wanted(key, targets, ranges)
        return want, problems

    def reconcile(self) -> None:
        self.allocate()
        want, problems = self.wanted()
        for address in [a for a, lis in self.listeners.items()
                        if a not in want or (want[a].service, want[a].source_ranges) != (lis.service, lis.ranges)]:
            self.listeners.pop(address).close()
            log(f"closed {address[0]}:{address[1]}")
        for address, wanted in want.items():
            listener = self.listeners.get(address)
            if listener is not None:
                listener.targets = list(wanted.targets)
                continue
            try:
                self.listeners[address] = Listener(*address, wanted.service, list(wanted.targets),
                                                   wanted.source_ranges)
                log(f"listening on {address[0]}:{address[1]} for {wanted.service}")
            except OSError as err:
                problems.setdefault(wanted.service, []).append(f"cannot listen on {address[0]}:{address[1]}: "
                                                               f"{err.strerror}")
        self.update_status()
        self.report(problems)
        self.annotate_nodes()

    def update_status(self) -> None:
        for svc in self.services.values():
            current = svc.get("status", {}).get("loadBalancer", {}).get("ingress", [])
            address = self.addresses.get(svc["metadata"]["uid"])
            if address:
                wanted = [{"ip": address, "ipMode": "Proxy"}]
            elif any(self.in_lb_range(i.get("ip", "")) for i in current):
                wanted = []  # no longer a LoadBalancer of ours: take our address back
            else:
                continue
            if current == wanted:
                continue
            patch = {"status": {"loadBalancer": {"ingress": wanted} if wanted else None}}
            out = self.kubectl("patch", "service", "-n", svc["metadata"]["namespace"], svc["metadata"]["name"],
                               "--subresource=status", "--type=merge", f"--field-manager={MANAGER}",
                               "-p", json.dumps(patch), check=False)
            if out.returncode == 0:
                svc.setdefault("status", {})["loadBalancer"] = {"ingress": wanted} if wanted else {}
                log(f"{key_of(svc)}: status.loadBalancer.ingress {wanted}")
            else:
                log(f"{key_of(svc)}: cannot update its status: {out.stderr.strip()}")

    def report(self, problems: dict[str, list[str]]) -> None:
        """One event on a Service whenever where it answers (or what it cannot have) changes."""
        by_service: dict[str, list[str]] = {}
        for (address, port), listener in sorted(self.listeners.items()):
            by_service.setdefault(listener.service, []).append(f"{address}:{port}")
        for key, svc in self.services.items():
            uid = svc["metadata"]["uid"]
            answers = by_service.get(key, [])
            if not answers and key not in problems:
                self.reported.pop(uid, None)
                continue
            message = "answers on this machine at " + ", ".join(answers) if answers else "not reachable"
            if key in problems:
                message += "; " + "; ".join(problems[key])
            if self.reported.get(uid) != message:
                self.event(svc, "Warning" if key in problems else "Normal",
                           "LoopbackUnavailable" if key in problems else "LoopbackListening", message)
                self.reported[uid] = message
        live = {s["metadata"]["uid"] for s in self.services.values()}
        self.reported = {uid: m for uid, m in self.reported.items() if uid in live}

    def event(self, svc: dict, kind: str, reason: str, message: str) -> None:
        meta = svc["metadata"]
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": "v1", "kind": "Service", "namespace": meta["namespace"],
                               "name": meta["name"], "uid": meta["uid"]},
            "type": kind, "reason": reason, "message": message[:1000],
            "source": {"component": MANAGER}, "reportingComponent": MANAGER, "reportingInstance": socket.gethostname(),
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        out = self.kubectl("create", "-f", "-", input=json.dumps(event), check=False)
        log(f"{key_of(svc)}: {reason}: {message}" + ("" if out.returncode == 0 else f" (event not recorded: "
                                                                                     f"{out.stderr.strip()})"))

    def annotate_nodes(self) -> None:
        for node in self.nodes():
            address = node_address(self.prefix, node)
            annotations = self.node_annotations.get(node.spec.name)
            if annotations is None or annotations.get(NODE_ANNOTATION) == address:
                continue  # not registered yet, or already says so
            out = self.kubectl("annotate", "node", node.spec.name, "--overwrite", f"--field-manager={MANAGER}",
                               f"{NODE_ANNOTATION}={address}", check=False)
            if out.returncode == 0:
                annotations[NODE_ANNOTATION] = address
                log(f"node {node.spec.name}: NodePorts answer at {address}")


def main(argv: list[str]) -> int:
    balancer = Balancer(Path(argv[0]))

    def stop(signum: int, frame: object) -> None:
        # Stopped (Daemon.stop sends SIGTERM): take the kubectl watch along, which would otherwise
        # outlive this process until the API server goes.
        if balancer.watcher is not None:
            balancer.watcher.kill()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    balancer.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
