"""A private copy of the `make up` world: its own kwok cluster, Pulumi backend and stack.

The e2e tests and `make bench-deploy` run the project's real entry points (`make up`,
`bin/pulumi`, `make down`) against this environment. Everything it creates lives under one
temporary directory: the cluster's name, work directory and kubeconfig, the Pulumi state backend,
PULUMI_HOME and the stack's config file, so a developer's own `make up` cluster and the repo's
stack files are never touched. The stack is the simulated one (Pulumi.kwok.yaml) unless a test
gives its own `source`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import dynamic
from kubernetes.dynamic.exceptions import NotFoundError

from polling import wait_for  # noqa: F401  (the tests import it from here)
from tools.layout import tools_layout

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "mlplatform"  # the project's config namespace (Pulumi.yaml name)
# The pulumi commands that read stack config (and so take --config-file).
COMMANDS_WITH_CONFIG = {"up", "preview", "destroy", "refresh", "config"}


def tools_dirs() -> dict[str, Path]:
    """The tools cache directories from tools/versions.sh (the one place that knows them)."""
    names = {
        "kubernetes": "KUBERNETES_DIR",
        "etcd": "ETCD_DIR",
        "kwok": "KWOK_DIR",
        "pulumi": "PULUMI_DIR",
        "pulumi-resource-kubernetes": "PULUMI_KUBERNETES_DIR",
    }
    layout = tools_layout()
    return {name: Path(layout[variable]) for name, variable in names.items()}


def missing_tools() -> list[str]:
    return [name for name, path in tools_dirs().items() if not (path / ".stamp").exists()]


class CommandFailed(AssertionError):
    pass


@dataclass
class Run:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class LocalStack:
    """One isolated cluster + backend + stack, rooted at `base`."""

    base: Path
    stack: str = "e2e"
    cluster_name: str = "mlplatform-e2e"
    extra_config: dict[str, Any] = field(default_factory=dict)
    source: str = "Pulumi.kwok.yaml"  # the stack file whose config it starts from
    up_run: Run | None = None  # the `make up` that deployed it
    # The checkout whose program, bin/pulumi and Makefile the commands run: this repository, or a
    # worktree of an earlier commit (tests/realnode/test_upgrade_rehearsal.py).
    root: Path = ROOT

    def __post_init__(self) -> None:
        self.base = self.base.resolve()
        self.cluster_dir = self.base / "kwok"
        self.kubeconfig = self.base / "kubeconfig"
        self.project_dir = self.base / "project"
        self.config_file = self.project_dir / f"Pulumi.{self.stack}.yaml"
        self.kubectl_bin = tools_dirs()["kubernetes"] / "bin" / "kubectl"
        self.env = {
            # A developer's own Pulumi or kwok settings must not leak in; the tools cache does.
            **{k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "KWOK_"))},
            "MLPLATFORM_CLUSTER_NAME": self.cluster_name,
            "MLPLATFORM_CLUSTER_DIR": str(self.cluster_dir),
            "MLPLATFORM_KUBECONFIG": str(self.kubeconfig),
            # What bin/cluster makes nodes for and bin/render renders (`make up` passes it too).
            "MLPLATFORM_STACK_CONFIG": str(self.config_file),
            "PULUMI_BACKEND_URL": f"file://{self.base / 'state'}",
            "PULUMI_HOME": str(self.base / "pulumi-home"),
            "PULUMI_CONFIG_PASSPHRASE": "mlplatform-e2e",
        }
        (self.base / "state").mkdir(parents=True, exist_ok=True)

    # --- setup ---------------------------------------------------------------------------------

    def create_stack(self) -> None:
        """The stack, created with `source`'s config pointed at this cluster's kubeconfig.

        `pulumi stack init` writes the stack's config file (with its encryption salt) next to the
        Pulumi.yaml it finds, so it runs in a directory holding a copy of Pulumi.yaml; every
        later command runs in the repository with `--config-file` naming that file.
        """
        self.project_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.root / "Pulumi.yaml", self.project_dir / "Pulumi.yaml")
        config = yaml.safe_load((self.root / self.source).read_text())
        # The example stacks' salt is for the local-dev passphrase; this stack has its own.
        config.pop("encryptionsalt", None)
        config["config"][f"{NAMESPACE}:cluster"]["kubeconfig"] = str(self.kubeconfig)
        for key, value in self.extra_config.items():
            config["config"][f"{NAMESPACE}:{key}"] = value
        self.config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        self.run([str(self.root / "bin" / "pulumi"), "stack", "init", self.stack, "--non-interactive"], cwd=self.project_dir)

    # --- commands ------------------------------------------------------------------------------

    def run(
        self,
        args: list[str],
        *,
        check: bool = True,
        cwd: Path | None = None,
        timeout: float = 900,
        env: dict[str, str] | None = None,
        input_json: Any = None,
        input_text: str | None = None,
    ) -> Run:
        start = time.monotonic()
        proc = subprocess.run(
            args,
            cwd=cwd or self.root,
            env={**self.env, **(env or {})},
            input=input_text if input_json is None else json.dumps(input_json),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        result = Run(args, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)
        if check and proc.returncode != 0:
            raise CommandFailed(
                f"{' '.join(args)} failed ({proc.returncode}) after {result.seconds:.0f}s:\n"
                f"{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
            )
        return result

    def make(self, target: str, **kwargs: Any) -> Run:
        return self.run(
            ["make", "--no-print-directory", target, f"STACK={self.stack}", f"CONFIG_FILE={self.config_file}"], **kwargs
        )

    def pulumi(self, *args: str, config_file: Path | None = None, **kwargs: Any) -> Run:
        """bin/pulumi on this stack; `config_file` replaces the stack's config file for this call."""
        stack_args = ["--stack", self.stack, "--non-interactive"]
        if args[0] in COMMANDS_WITH_CONFIG:
            stack_args += ["--config-file", str(config_file or self.config_file)]
        return self.run([str(self.root / "bin" / "pulumi"), *args, *stack_args], **kwargs)

    def kubectl(self, *args: str, **kwargs: Any) -> Run:
        return self.run([str(self.kubectl_bin), "--kubeconfig", str(self.kubeconfig), *args], **kwargs)

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    # --- config --------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return yaml.safe_load(self.config_file.read_text())["config"]

    def set_config(self, path: str, value: str, **kwargs: Any) -> None:
        self.pulumi("config", "set", "--path", path, value, **kwargs)

    # --- state ---------------------------------------------------------------------------------

    def export(self) -> dict[str, Any]:
        return json.loads(self.pulumi("stack", "export").stdout)

    def kubernetes_resources(self) -> list[dict[str, Any]]:
        """The Kubernetes objects the stack manages (not the provider, not components, not what it
        only reads: the API server's EndpointSlice, `external` in the state)."""
        resources = self.export()["deployment"].get("resources") or []
        return [r for r in resources if r["type"].startswith("kubernetes:") and not r["type"].startswith("pulumi:")
                and not r.get("external")]

    # --- processes -----------------------------------------------------------------------------

    def cluster_pids(self) -> list[int]:
        """Processes of this cluster: their working directory, or a path they run with, is ours."""
        pids = []
        marker = str(self.cluster_dir)
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cwd = os.readlink(proc / "cwd")
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if cwd.startswith(marker) or marker in cmdline:
                pids.append(int(proc.name))
        return pids

    def component_pids(self) -> dict[str, int]:
        """The cluster's control-plane components (kwokctl runs each in the cluster's directory)."""
        home = str(self.cluster_dir / "clusters" / self.cluster_name)
        found = {}
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and os.readlink(proc / "cwd") == home:
                    found[(proc / "comm").read_text().strip()] = int(proc.name)
            except OSError:
                continue
        return found

    def force_cleanup(self) -> None:
        """Last resort after a failed run: stop this cluster's processes (by pid, ours only)."""
        for pid in self.cluster_pids():
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass


def tf_config(pod: dict[str, Any]) -> dict[str, Any]:
    """The TF_CONFIG the training operator injected into a TFJob replica's pod."""
    container = next(c for c in pod["spec"]["containers"] if c["name"] == "tensorflow")
    value = next(e["value"] for e in container.get("env", []) if e["name"] == "TF_CONFIG")
    return json.loads(value)


def condition(job: dict[str, Any], kind: str) -> bool:
    """Whether a TFJob's status holds condition `kind` (Succeeded, Failed, ...) as True."""
    return any(c["type"] == kind and c["status"] == "True" for c in job.get("status", {}).get("conditions", []))


def steps_changed(preview_json: str) -> dict[str, set[str]]:
    """URN -> the operations `pulumi preview --json` plans for it, leaving out `same` and `read`
    (the cluster component reads the API server's EndpointSlice at every run, which changes
    nothing; the engine's own `--expect-no-changes` does not count reads either)."""
    plan = json.loads(preview_json)
    changed: dict[str, set[str]] = {}
    for step in plan.get("steps", []):
        if step["op"] not in ("same", "read"):
            changed.setdefault(step["urn"], set()).add(step["op"])
    return changed


def live(api: dynamic.DynamicClient, manifest: dict[str, Any]) -> Any | None:
    """The object a manifest names, as the API server has it now; None when it doesn't exist."""
    resource = api.resources.get(api_version=manifest["apiVersion"], kind=manifest["kind"])
    meta = manifest["metadata"]
    try:
        return resource.get(name=meta["name"], namespace=meta.get("namespace"))
    except NotFoundError:
        return None


