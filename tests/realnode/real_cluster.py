"""A private local cluster with real nodes (`bin/cluster up --real`), for the real-node tests.

Its name, directory and kubeconfig are its own (under a short directory in /tmp: the nodes'
unix sockets live below it), so a developer's cluster and the e2e tests' never meet it.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import re
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

ROOT = Path(__file__).resolve().parents[2]
from components.hub_config.document import TLS_SECRET_NAME  # noqa: E402
from components.tls import CA_KEY, CERT_KEY  # noqa: E402
from stacks.jupyterhub import JupyterHubSettings  # noqa: E402

from cluster.localcluster import images  # noqa: E402
from cluster.localcluster.kubelet import KUBELET_SYSCTLS, Sysctls, read_sysctl  # noqa: E402
from cluster.localcluster.mounts import MACHINE_PATHS  # noqa: E402
from cluster.localcluster.record import RUN_DIR  # noqa: E402
from cluster.localcluster.servicelb import LoopbackBlocks, loopback_listeners  # noqa: E402
from cluster.localcluster.settings import CONTROL_PLANE_TOOLS, NodeSettings, cluster_netns, missing_tools, tools  # noqa: E402
from polling import wait_for  # noqa: E402,F401  (the tests import it from here)

# Held by a test session for as long as its real cluster lives: two sessions on one machine (two
# clones, a helper's and CI's) take turns instead of sharing the machine's kernel settings and CPU.
MACHINE_LOCK = Path("/tmp/mlplatform-real-node-tests.lock")


def machine_lock():
    """Blocks until no other real-node test session runs on this machine; close() releases it."""
    lock = open(MACHINE_LOCK, "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


def kubelet_sysctls() -> dict[str, str]:
    return {k: read_sysctl(k) for k in KUBELET_SYSCTLS}


def sysctls_before_kubelets() -> dict[str, str]:
    """The values the machine-wide record (kubelet.Sysctls) will restore; there while a node runs."""
    return json.loads(Sysctls().record.read_text())["values"]


def not_built() -> list[str]:
    t = tools()
    return missing_tools(t, CONTROL_PLANE_TOOLS) + missing_tools(t)


POOL_LABEL = "mlplatform.dev/pool"
# The test cluster is made for the dev stack's pools: a CPU pool, and a GPU pool of two
# (simulated) GPUs per node behind a taint; `bin/cluster up --real` makes one node of each.
STACK_CONFIG = ROOT / "Pulumi.dev.yaml"


@dataclass
class RealCluster:
    base: Path
    name: str = "mlp-rn"
    # The kernel settings that the kubelet changes, as they were before the first kubelet on this
    # machine changed them: the record the last node to stop restores them from (read once this
    # cluster runs; the values at hand then may be another cluster's kubelet's, or left by one
    # that was removed without `down`).
    sysctls_before: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.cluster_dir = self.base / "kwok"
        self.kubeconfig = self.base / "kubeconfig"
        self.state_dir = self.cluster_dir / "clusters" / self.name
        self.nodes_dir = self.state_dir / "nodes"
        self.stack_config = STACK_CONFIG
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("KWOK_", "MLPLATFORM_NODES"))},
            "MLPLATFORM_CLUSTER_NAME": self.name,
            "MLPLATFORM_CLUSTER_DIR": str(self.cluster_dir),
            "MLPLATFORM_KUBECONFIG": str(self.kubeconfig),
            "MLPLATFORM_STACK_CONFIG": str(self.stack_config),
        }
        self.kubectl_bin = Path(tools()["KUBERNETES_DIR"]) / "bin" / "kubectl"

    def cluster(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        out = subprocess.run([str(ROOT / "bin" / "cluster"), *args], env=self.env, capture_output=True, text=True,
                             timeout=timeout)
        if check and out.returncode != 0:
            raise AssertionError(f"bin/cluster {' '.join(args)} failed ({out.returncode}):\n{out.stdout}{out.stderr}")
        return out

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess:
        out = subprocess.run([str(self.kubectl_bin), "--kubeconfig", str(self.kubeconfig), *args], input=input,
                             capture_output=True, text=True, timeout=timeout)
        if check and out.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{out.stdout}{out.stderr}")
        return out

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def apply(self, manifest: dict) -> None:
        self.kubectl("apply", "-f", "-", input=json.dumps(manifest))

    @contextmanager
    def port_forward(self, target: str, port: int, namespace: str = "default") -> Iterator[int]:
        """`kubectl port-forward` to `target` (pod/NAME, svc/NAME) from a free local port, which it yields."""
        forward = subprocess.Popen([str(self.kubectl_bin), "--kubeconfig", str(self.kubeconfig), "port-forward",
                                    "-n", namespace, target, f":{port}"], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        try:
            line = forward.stdout.readline()  # "Forwarding from 127.0.0.1:PORT -> 8080"
            found = re.search(r"127\.0\.0\.1:(\d+)", line)
            assert found, f"kubectl port-forward {target}: {line}{forward.stderr.read() if not line else ''}"
            yield int(found.group(1))
        finally:
            forward.terminate()
            forward.wait(10)

    def nodes(self) -> list[NodeSettings]:
        return [NodeSettings.load(p.parent) for p in sorted(self.nodes_dir.glob("*/node.json"))]

    def node(self, pool: str) -> NodeSettings:
        """The real node of POOL."""
        (found,) = [n for n in self.nodes() if n.spec.labels.get(POOL_LABEL) == pool]
        return found

    def loopback_prefix(self) -> str:
        """The "127.A.B" of the cluster's loopback block (servicelb.py), as recorded with the cluster."""
        return json.loads((self.state_dir / "servicelb" / "servicelb.json").read_text())["prefix"]


HUB_NAMESPACE = JupyterHubSettings.model_fields["namespace"].default
# What only the hub's login page holds (JupyterHub's native authenticator's form).
LOGIN_FORM = 'name="username"'


def spki_hash(certificate_pem: str) -> str:
    """The certificate's public key as Chromium's --ignore-certificate-errors-spki-list names it."""
    key = x509.load_pem_x509_certificate(certificate_pem.encode()).public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def hub_context(cluster: RealCluster, namespace: str = HUB_NAMESPACE) -> ssl.SSLContext:
    """Trusts the stack's own CA (Secret proxy-public-tls, key ca.crt) and nothing else."""
    secret = cluster.get("secret", "-n", namespace, TLS_SECRET_NAME)
    return ssl.create_default_context(cadata=base64.b64decode(secret["data"][CA_KEY]).decode())


def hub_certificate(cluster: RealCluster, namespace: str = HUB_NAMESPACE) -> str:
    """The hub's serving certificate (PEM), as Secret proxy-public-tls holds it."""
    secret = cluster.get("secret", "-n", namespace, TLS_SECRET_NAME)
    return base64.b64decode(secret["data"][CERT_KEY]).decode()


def hub_login_form(port: int, context: ssl.SSLContext) -> bool:
    """Whether https://localhost:PORT/hub/login (a port-forward to proxy-public) serves the hub's login
    form, the certificate checked against `context` for `localhost` (one of its names)."""
    try:
        with urllib.request.urlopen(f"https://localhost:{port}/hub/login", context=context, timeout=10) as r:
            return r.status == 200 and LOGIN_FORM in r.read().decode()
    except OSError:  # refused, reset, TLS or HTTP errors (a 503 while the proxy has no hub yet)
        return False


def busybox_image_name() -> str:
    return f"mlplatform.local/busybox:{images.busybox_tag()}"


def pod(name: str, script: str, pool: str = "cpu", **spec: Any) -> dict:
    """A pod running SCRIPT in the imported busybox image on POOL's real node, never restarted."""
    container = {"name": "main", "image": busybox_image_name(), "command": ["/bin/sh", "-c", script],
                 **spec.pop("container", {})}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "nodeSelector": {"mlplatform.dev/node-kind": "real", POOL_LABEL: pool},
            # The real-node taint, and the GPU pool's.
            "tolerations": [{"operator": "Exists", "effect": "NoSchedule"}],
            "containers": [container],
            **spec,
        },
    }


def other_processes() -> Iterator[tuple[str, str, str]]:
    """(pid, command line, working directory) of every process on the machine but this one."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue  # gone meanwhile, or a kernel thread
        yield proc.name, cmdline, cwd


def process_state(pid: str) -> str:
    """"<name> <state>" from /proc/PID/stat: what a process is when its command line is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    name, _, rest = stat.partition("(")[2].rpartition(")")
    return f"{name} {rest.split()[0]}"


def leftovers(settings: NodeSettings) -> list[str]:
    """What of a node is still on the machine: processes, mounts, namespace, cgroups, files."""
    found = []
    state = str(settings.state_dir)
    found += [f"process {pid}: {cmdline[:150]}" for pid, cmdline, cwd in other_processes()
              if state in cmdline or cwd.startswith(state) or settings.netns in cmdline]
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4]
        if target.startswith(state) or target == f"/run/netns/{settings.netns}":
            found.append(f"mount {target}")
    if Path("/run/netns", settings.netns).exists():
        found.append(f"network namespace {settings.netns}")
    leaf = settings.cgroup_root.rsplit("/", 1)[1]
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        for path in hierarchy.glob(f"**/{leaf}"):
            found.append(f"cgroup {path}")
    if settings.state_dir.exists():
        found.append(f"state directory {state}")
    if not Sysctls().held():  # no other real node on the machine: the mount points are gone too
        found += [f"mount point {p}" for p in MACHINE_PATHS if p.exists()]
    # A machine-wide record's lock stays only as long as its record (record.py).
    found += [f"lock without its record {lock}" for lock in RUN_DIR.glob("*.lock")
              if not lock.with_suffix(".json").exists()]
    return found


def cluster_leftovers(cluster: RealCluster, prefix: str) -> list[str]:
    """What of the cluster as a whole is still on the machine: a process started under its
    directory (the egress proxy's, say), the namespace of the bridge between its nodes, a listener
    on its loopback block or the machine's record of that block, its volumes, its nodes' directory."""
    found = []
    netns = cluster_netns(cluster.nodes_dir)
    if Path("/run/netns", netns).exists():
        found.append(f"network namespace {netns}")
    if cluster.nodes_dir.exists():
        found.append(f"directory {cluster.nodes_dir}")
    base = str(cluster.base)
    found += [f"process {pid} ({process_state(pid)}) in {cwd}: {cmdline[:150]}" for pid, cmdline, cwd in other_processes()
              if base in cmdline or cwd.startswith(base)]
    found += [f"listener on {a}" for a in loopback_listeners() if a.startswith(prefix + ".")]
    record = LoopbackBlocks().record
    if record.exists() and prefix in json.loads(record.read_text()):
        found.append(f"loopback block {prefix}.0/24 still recorded in {record}")
    if (cluster.state_dir / "volumes").exists():
        found.append(f"volumes directory {cluster.state_dir / 'volumes'}")
    return found


def host_rules_naming(patterns: tuple[str, ...]) -> list[str]:
    """Rules in this machine's own iptables (the root network namespace) that name PATTERNS."""
    out = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if any(re.search(p, line) for p in patterns)]


def ipset_names(netns: str | None = None) -> list[str]:
    """The ipsets of a node's network namespace, or of this machine's own (netns None)."""
    argv = ["ipset", "list", "-name"]
    if netns:
        argv = ["nsenter", f"--net=/run/netns/{netns}", "--", *argv]
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.split()


def iptables_rules(netns: str) -> list[str]:
    """The filter table of a node's network namespace, as iptables-save writes it."""
    argv = ["nsenter", f"--net=/run/netns/{netns}", "--", "iptables-save", "-t", "filter"]
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.splitlines()


def processes_running(binary: Path, *naming: str) -> list[str]:
    """Processes of BINARY whose command line holds every one of NAMING (a node's admin kubeconfig, say)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or os.readlink(proc / "exe") != os.path.realpath(binary):
                continue
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(n in cmdline for n in naming):
            found.append(f"process {proc.name}: {cmdline}")
    return found


def refuses_privileged_pods(cluster: RealCluster, namespace: str) -> bool:
    """Whether NAMESPACE's Pod Security Admission refuses a privileged pod (a server-side dry run:
    admission runs in full, nothing is created)."""
    manifest = pod("psa-privileged", "true", container={"securityContext": {"privileged": True}})
    manifest["metadata"]["namespace"] = namespace
    out = cluster.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(manifest), check=False)
    refused = out.returncode != 0 and "violates PodSecurity" in out.stderr
    assert refused or out.returncode == 0, f"a privileged pod in {namespace}: {out.stderr}"
    return refused


def restricted_dry_run(cluster: RealCluster, namespace: str) -> str:
    """What a server-side dry run of enforcing `restricted` on NAMESPACE says (its warnings name
    every pod there that breaks the standard). The version goes to `latest` too: Pod Security
    Admission checks a namespace's pods only when the enforce level or version changes, so
    relabelling a namespace that enforces restricted already would check nothing."""
    out = cluster.kubectl("label", "--dry-run=server", "--overwrite", "namespace", namespace,
                          "pod-security.kubernetes.io/enforce=restricted", "pod-security.kubernetes.io/enforce-version=latest")
    return out.stdout + out.stderr
