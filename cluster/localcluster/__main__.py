"""Usage: bin/cluster up [--real] | down | status | kubectl ARGS...
  up       start the cluster, or reuse it when it runs, or restart what died; then wait until
           the API server is ready and write the kubeconfig. --real (or MLPLATFORM_NODES=real)
           also starts real nodes (containerd + kubelet, one per node pool of the stack), opt-in
  down     stop every process of the cluster and remove its state and kubeconfig
  status   print running | stopped | absent (exit 0 | 3 | 4), and each part's state on stderr
  kubectl  the tools cache's kubectl against this cluster

The local cluster that the dev stack deploys to (`make up` / `make down`), in two parts run in
this order (and stopped in the reverse one):

    control plane  etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok,
                   started by kwokctl                                       (controlplane.py)
    real nodes     opt-in: what they share, then each node's parts          (nodes.py, node.py)

Where (each overridable from the environment, so tests and benchmarks run a second cluster
beside a developer's without touching it; the defaults are in cluster/local.env):
MLPLATFORM_CLUSTER_NAME (kwok's cluster name), MLPLATFORM_CLUSTER_DIR (kwok's work directory),
MLPLATFORM_KUBECONFIG (the kubeconfig written for the cluster; the Pulumi program reads it too),
MLPLATFORM_STACK_CONFIG (the stack config whose node pools real nodes are made for; default
Pulumi.dev.yaml). A cluster that has real nodes keeps them: a later `up` restarts what died of
them, `status` reports them, `down` removes them first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from collections.abc import Mapping

from . import images
from .controlplane import ControlPlane, log
from .nodes import RealNodes
from .settings import REPO, ClusterPaths, tools

USAGE = __doc__.split("\n\n")[0]
VENV_PYTHON = REPO / ".venv" / "bin" / "python"


def main(argv: list[str], environ: Mapping[str, str] = os.environ) -> int:
    command, args = (argv[0], argv[1:]) if argv else ("", [])
    if command not in ("up", "down", "status", "kubectl"):
        print(USAGE, file=sys.stderr)
        return 2
    paths = ClusterPaths.from_environment(environ)
    t = tools()
    control_plane = ControlPlane(paths, t)
    nodes = RealNodes(paths.nodes_dir, t)
    if command == "up":
        return up(control_plane, nodes, args, environ)
    if command == "down":
        return down(control_plane, nodes)
    if command == "status":
        return status(control_plane, nodes)
    require_tools(control_plane)
    os.execv(control_plane.kubectl, [str(control_plane.kubectl), "--kubeconfig", str(paths.kubeconfig), *args])


def up(control_plane: ControlPlane, nodes: RealNodes, args: list[str], environ: Mapping[str, str]) -> int:
    require_tools(control_plane)
    real = wants_real_nodes(control_plane.paths, nodes, args, environ)
    if real:
        # Before anything starts: what this machine lacks for real nodes, and the platform's images
        # (images/), which every node imports: each one built, or which is not and that
        # `make images` builds it, before a pod could wait for an image.
        if not nodes.check():
            return 1
        try:
            images.platform_images()
        except images.ImagesNotBuilt as error:
            print(f"localcluster: {error}", file=sys.stderr)
            return 1
    state = "created"
    if control_plane.exists():
        state = "reused"
        # A component that died (or hangs, or whose pid now names another program after a
        # reboot) would leave the cluster half-working. Restart all of it: the objects are in
        # etcd's data directory and survive; starting five processes takes seconds.
        if not control_plane.healthy():
            state = "restarted"
            log(f"cluster '{control_plane.name}' is not running fully (a component died or does not answer): "
                "restarting it")
            control_plane.stop()
            if taken := control_plane.taken_port():
                raise SystemExit(f"bin/cluster: cannot restart cluster '{control_plane.name}': its port {taken} is "
                                 "now used by another program. Recreate the cluster on new ports with "
                                 "`make down && make up` (its objects are deployed again).")
        if control_plane.config_changed():
            log("warning: cluster/ or the tool versions changed since this cluster was created;")
            log("         run `make down && make up` to recreate it with the new configuration")
    wanted = stack_nodes(control_plane.paths) if real else []
    extra_args: tuple[str, ...] = ()
    if state == "created" and real:
        # Nothing routes from the API server to the nodes' namespaces: it reaches kubelets, pods
        # and Services through the nodes' egress proxy (egress.py). It signs in to the kubelets
        # with kwokctl's admin certificate (the kubelets trust the cluster's CA and ask the API
        # server whether that user may).
        pki = control_plane.dir / "pki"
        extra_args = ("--extra-args", f"kube-apiserver=egress-selector-config-file={nodes.egress_config()}",
                      "--extra-args", f"kube-apiserver=kubelet-client-certificate={pki / 'admin.crt'}",
                      "--extra-args", f"kube-apiserver=kubelet-client-key={pki / 'admin.key'}")
    control_plane.start(real, extra_args)
    if state == "restarted":
        control_plane.release_node_leases(real)
    control_plane.write_kubeconfig()
    control_plane.wait_ready()
    if real:
        try:
            nodes.up(control_plane.admin_kubeconfig, wanted)
        except (RuntimeError, ValueError, OSError, subprocess.CalledProcessError):
            traceback.print_exc()
            raise SystemExit(f"bin/cluster: the real nodes did not come up (logs: {nodes.dir}/*/logs/); "
                             "`bin/cluster down` removes them") from None
    log(f"cluster '{control_plane.name}' ready ({state}): kubeconfig {control_plane.paths.kubeconfig}, "
        f"server {control_plane.server()}")
    return 0


def down(control_plane: ControlPlane, nodes: RealNodes) -> int:
    # Real nodes first, while the API server still answers (their Node objects go with them).
    if nodes.exist():
        nodes.down(deregister=control_plane.healthy())
    control_plane.delete()
    log(f"cluster '{control_plane.name}' removed")
    return 0


def status(control_plane: ControlPlane, nodes: RealNodes) -> int:
    if not control_plane.exists():
        print("absent")
        return 4
    states = [("control-plane", part, state) for part, state in control_plane.status().items()]
    if nodes.exist():
        states += nodes.status()
    for owner, part, state in states:
        print(f"{owner} {part}: {state}", file=sys.stderr)
    running = all(state.startswith("running") for _, _, state in states)
    print("running" if running else "stopped")
    return 0 if running else 3


def require_tools(control_plane: ControlPlane) -> None:
    if missing := control_plane.missing_tools():
        raise SystemExit(f"bin/cluster: {os.path.basename(missing[0])} is not built ({missing[0]}). "
                         "Run `tools/build.sh kube` once (or `make up`, which does).")


def wants_real_nodes(paths: ClusterPaths, nodes: RealNodes, args: list[str], environ: Mapping[str, str]) -> bool:
    mode = environ.get("MLPLATFORM_NODES") or "simulated"
    for arg in args:
        if arg != "--real":
            raise SystemExit(f"bin/cluster: unknown option to up: {arg} (usage: bin/cluster up [--real])")
        mode = "real"
    if mode not in ("real", "simulated"):
        raise SystemExit(f"bin/cluster: MLPLATFORM_NODES={mode}: must be real or simulated")
    # A cluster that has real nodes keeps them; a `local` stack (cluster.provider local) runs its
    # pods on real nodes, so it gets them unasked.
    return mode == "real" or nodes.exist() or stack_provider(paths) == "local"


def stack_provider(paths: ClusterPaths) -> str:
    """The stack config's cluster.provider, as the typed settings read it ("" without the virtualenv)."""
    if not (VENV_PYTHON.is_file() and paths.stack_config.is_file()):
        return ""
    out = subprocess.run([str(VENV_PYTHON), "-m", "stacks.local_nodes", "--provider", str(paths.stack_config)],
                         cwd=REPO, capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else ""


def stack_nodes(paths: ClusterPaths) -> list[dict]:
    """The real nodes of the stack's pools (stacks/local_nodes.py reads its config with the typed settings)."""
    failed = (f"bin/cluster: cannot make real nodes for {paths.stack_config} (above); "
              "run `make venv` first if .venv is missing")
    if not VENV_PYTHON.is_file():
        raise SystemExit(failed)
    out = subprocess.run([str(VENV_PYTHON), "-m", "stacks.local_nodes", str(paths.stack_config)],
                         cwd=REPO, stdout=subprocess.PIPE, text=True)
    if out.returncode != 0:
        raise SystemExit(failed)
    return json.loads(out.stdout)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
