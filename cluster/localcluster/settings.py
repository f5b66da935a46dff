"""Where the cluster's and its real nodes' files, tools and names come from: the cluster's
places (ClusterPaths, from the environment and cluster/local.env) and one frozen record per node."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tools.layout import tools_layout

REPO = Path(__file__).resolve().parents[2]
MAX_STATE_DIR = 64

# What the control plane runs (`tools/build.sh kube`), as tools/versions.sh names it.
CONTROL_PLANE_TOOLS = ("KUBERNETES_DIR", "ETCD_DIR", "KWOK_DIR")
CONTROL_PLANE_VERSIONS = ("KUBERNETES_VERSION", "ETCD_VERSION", "KWOK_VERSION")

# The tools a node runs, as tools/versions.sh names their directories (the pins are versions.env's).
TOOL_DIRS = (
    "KUBERNETES_DIR",
    "KUBERNETES_NODE_DIR",
    "CONTAINERD_DIR",
    "RUNC_DIR",
    "CNI_PLUGINS_DIR",
    "CRI_TOOLS_DIR",
    "PAUSE_DIR",
    "COREDNS_DIR",
    "KUBE_ROUTER_DIR",
    "LOCAL_PATH_PROVISIONER_DIR",
    "COREDNS_VERSION",
    "CONTAINERD_VERSION",
    "KUBERNETES_VERSION",
)


def sourced(script: Path, names: tuple[str, ...]) -> dict[str, str]:
    """The variables NAMES as bash has them after sourcing SCRIPT: the pins and places are written
    for bash (tools/versions.sh, cluster/local.env) and read from there, never copied."""
    command = f'. "{script}"; ' + "; ".join(f'printf "%s=%s\\n" {n} "${n}"' for n in names)
    out = subprocess.run(["bash", "-c", command], check=True, capture_output=True, text=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


def tools() -> dict[str, str]:
    """The tool directories and versions, as tools/versions.sh has them."""
    return tools_layout()


def missing_tools(t: dict[str, str], names: tuple[str, ...] = TOOL_DIRS) -> list[str]:
    """Tool directories (a node's, unless NAMES says which) without the .stamp that tools/build.sh writes last."""
    return [t[k] for k in names if k.endswith("_DIR") and not (Path(t[k]) / ".stamp").is_file()]


@dataclass(frozen=True)
class ClusterPaths:
    """Where one local cluster lives. The defaults are cluster/local.env's; each has a variable that
    moves it, so tests and benchmarks run a cluster of their own beside a developer's."""

    name: str
    workdir: Path  # kwok's work directory (KWOK_WORKDIR): its clusters and caches
    kubeconfig: Path  # the kubeconfig written for the cluster; the Pulumi program reads it too
    stack_config: Path  # the stack whose node pools real nodes are made for

    @staticmethod
    def from_environment(environ: Mapping[str, str] = os.environ) -> ClusterPaths:
        defaults = sourced(REPO / "cluster" / "local.env",
                           ("LOCAL_CLUSTER_NAME", "LOCAL_CLUSTER_DIR", "LOCAL_KUBECONFIG"))

        def path(variable: str, default: str) -> Path:
            # Relative paths are the repository's, wherever bin/cluster runs from.
            return (REPO / (environ.get(variable) or default)).resolve()

        return ClusterPaths(
            name=environ.get("MLPLATFORM_CLUSTER_NAME") or defaults["LOCAL_CLUSTER_NAME"],
            workdir=path("MLPLATFORM_CLUSTER_DIR", defaults["LOCAL_CLUSTER_DIR"]),
            kubeconfig=path("MLPLATFORM_KUBECONFIG", defaults["LOCAL_KUBECONFIG"]),
            # `make up` passes its STACK's config file.
            stack_config=path("MLPLATFORM_STACK_CONFIG", "Pulumi.dev.yaml"),
        )

    @property
    def cluster_dir(self) -> Path:
        """kwok's directory for the cluster: configuration, PKI, etcd's data, pid files, logs."""
        return self.workdir / "clusters" / self.name

    @property
    def nodes_dir(self) -> Path:
        """The real nodes' state; there only while the cluster has real nodes."""
        return self.cluster_dir / "nodes"


def pause_image(t: dict[str, str]) -> tuple[str, Path]:
    """The pause image's name and archive, as `tools/build.sh pause` wrote them."""
    images = Path(t["PAUSE_DIR"]) / "images"
    return (images / "pause.name").read_text().strip(), images / "pause.tar"


@dataclass(frozen=True)
class GpuSharing:
    """How a node's simulated GPUs are time-sliced, as the pool's `gpuSharing` says (gpuplugin.py)."""

    replicas: int
    resource: str  # nvidia.com/gpu, or nvidia.com/gpu.shared when renamed
    fail_requests_greater_than_one: bool = False


@dataclass(frozen=True)
class NodeSpec:
    """What a node is: its Kubernetes name, labels and taints (`key=value:Effect`)."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[str, ...] = ()
    gpus: int = 0  # simulated GPUs (gpuplugin.py)
    gpu_sharing: GpuSharing | None = None

    @staticmethod
    def from_dict(spec: dict) -> NodeSpec:
        """A spec as node.json keeps it (or `python -m stacks.local_nodes` writes it, gpuSharing in camelCase)."""
        sharing = spec.get("gpu_sharing") or spec.get("gpuSharing")
        if sharing:
            sharing = GpuSharing(sharing["replicas"], sharing["resource"],
                                 sharing.get("fail_requests_greater_than_one", sharing.get("failRequestsGreaterThanOne", False)))
        return NodeSpec(spec["name"], dict(spec["labels"]), tuple(spec["taints"]), spec.get("gpus", 0), sharing)


@dataclass(frozen=True)
class NodeSettings:
    """Everything a node's parts need, fixed when the node is created and kept in node.json.

    Names that the machine shares between clusters (the network namespace, the cgroup) carry a
    hash of the node's state directory, so two clusters (a developer's and a test's) never meet.
    """

    spec: NodeSpec
    index: int
    state_dir: Path
    admin_kubeconfig: Path
    api_port: int
    cgroup_root: str
    netns: str
    node_ip: str
    pod_subnet: str
    # The API server's advertised address (its `kubernetes` EndpointSlice): the namespace carries
    # it on loopback, where the API forwarder serves it to pods (kubernetes Service, CoreDNS).
    api_address: str = ""
    # The cluster's own network namespace, whose bridge links the nodes (network.ClusterNetwork).
    cluster_netns: str = ""

    @staticmethod
    def create(spec: NodeSpec, index: int, nodes_dir: Path, admin_kubeconfig: Path, api_port: int,
               api_address: str) -> NodeSettings:
        state_dir = (nodes_dir / spec.name).resolve()
        if len(str(state_dir)) > MAX_STATE_DIR:
            # The kubelet's and containerd's unix sockets live below it (at most 107 bytes a path).
            raise ValueError(f"{state_dir}: a node's directory may have at most {MAX_STATE_DIR} characters "
                             "(its sockets live below it); move the cluster's directory (MLPLATFORM_CLUSTER_DIR)")
        tag = hashlib.sha256(str(state_dir).encode()).hexdigest()[:8]
        return NodeSettings(
            spec=spec,
            index=index,
            state_dir=state_dir,
            admin_kubeconfig=admin_kubeconfig,
            api_port=api_port,
            cgroup_root=f"{caller_cgroup()}/mlplatform-{tag}",
            netns=f"mlp-{tag}",
            # One /24 per node out of 10.244.0.0/16 for pods; the node's own address on its link
            # to the cluster's bridge. Nothing routes either outside the cluster's namespaces.
            node_ip=f"10.243.{index}.2",
            pod_subnet=f"10.244.{index}.0/24",
            api_address=api_address,
            cluster_netns=cluster_netns(nodes_dir),
        )

    @property
    def mount_ns(self) -> Path:
        """The node's mount namespace, kept at this path (mounts.py); its daemons run inside."""
        return self.state_dir / "ns" / "mnt"

    def save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        data = asdict(self)
        data["state_dir"] = str(self.state_dir)
        data["admin_kubeconfig"] = str(self.admin_kubeconfig)
        data["spec"]["taints"] = list(self.spec.taints)
        (self.state_dir / "node.json").write_text(json.dumps(data, indent=2) + "\n")

    @staticmethod
    def load(state_dir: Path) -> NodeSettings:
        data = json.loads((state_dir / "node.json").read_text())
        spec = data.pop("spec")
        return NodeSettings(
            spec=NodeSpec.from_dict(spec),
            **{**data, "state_dir": Path(data["state_dir"]), "admin_kubeconfig": Path(data["admin_kubeconfig"])},
        )


def cluster_netns(nodes_dir: Path) -> str:
    """The network namespace that links a cluster's nodes; its name carries a hash of their directory."""
    return "mlpnet-" + hashlib.sha256(str(nodes_dir.resolve()).encode()).hexdigest()[:8]


def caller_cgroup() -> str:
    """This process's own memory cgroup (cgroup v1), under which the node's cgroups nest.

    It is a child of the root here and differs from one machine (and one session) to the next, so
    it is read at creation and kept in node.json: a later `down` from elsewhere finds the same one.
    """
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return path.rstrip("/")
    raise RuntimeError("no cgroup v1 memory hierarchy in /proc/self/cgroup: real nodes need cgroup v1 here")
