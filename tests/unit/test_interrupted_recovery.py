"""stacks/interrupted.py: which locks are stale, and which Pulumi commands it runs before `up`.

The CLI here is a recording script (every call's arguments, one line each; `stack export` answers
with the checkpoint the test gives): what the commands do to a real stack is proved in
tests/e2e/test_interrupted_up.py.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "stacks" / "interrupted.py"
STACK = "dev"


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Path]:
    """A project, a file backend and a recording CLI."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text("name: mlplatform\nruntime: python\n")
    backend = tmp_path / "state"
    (backend / ".pulumi" / "stacks" / "mlplatform").mkdir(parents=True)
    calls = tmp_path / "calls"
    export = tmp_path / "export.json"
    export.write_text(json.dumps({"deployment": {"resources": []}}))
    cli = tmp_path / "bin" / "pulumi"
    cli.parent.mkdir()
    cli.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        f'if [ "$1 $2" = "stack export" ]; then cat {export}; fi\n'
    )
    cli.chmod(0o755)
    return {"project": project, "backend": backend, "calls": calls, "export": export, "cli": cli}


def run(world: dict[str, Path], *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")},
        "MLPLATFORM_PULUMI_CLI": str(world["cli"]),
        "PULUMI_BACKEND_URL": f"file://{world['backend']}",
        "PWD": str(world["project"]),
    }
    return subprocess.run(
        [sys.executable, "-I", str(SCRIPT), *args], cwd=world["project"], env=env, capture_output=True, text=True,
        check=False,
    )


def calls(world: dict[str, Path]) -> list[str]:
    return world["calls"].read_text().splitlines() if world["calls"].exists() else []


def lock(world: dict[str, Path], pid: int, host: str | None = None) -> Path:
    directory = world["backend"] / ".pulumi" / "locks" / "organization" / "mlplatform" / STACK
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"lock-{pid}.json"
    path.write_text(json.dumps({"pid": pid, "username": "root", "hostname": host or socket.gethostname(),
                                "timestamp": "2026-12-06T12:00:00Z"}))
    return path


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


def pending_creates(world: dict[str, Path]) -> None:
    world["export"].write_text(json.dumps({"deployment": {"pending_operations": [
        {"type": "creating", "resource": {"urn": "urn:pulumi:dev::mlplatform::kubernetes:apps/v1:Deployment::hub"}}
    ]}}))


@pytest.mark.parametrize("args", [["preview"], ["stack", "output", "--json"], ["refresh", "--stack", STACK], ["up", "--help"]])
def test_other_commands_run_nothing(world: dict[str, Path], args: list[str]) -> None:
    lock(world, dead_pid())
    pending_creates(world)
    result = run(world, *args)
    assert result.returncode == 0, result.stderr
    assert calls(world) == [] and result.stderr == ""


def test_nothing_left_behind_means_only_a_look_at_the_checkpoint(world: dict[str, Path]) -> None:
    result = run(world, "up", "--stack", STACK, "--yes")
    assert result.returncode == 0, result.stderr
    assert calls(world) == [f"stack export --stack {STACK} --non-interactive"]
    assert result.stderr == ""


def test_a_stale_lock_is_cancelled_and_pending_operations_refreshed(world: dict[str, Path]) -> None:
    pid = dead_pid()
    lock(world, pid)
    pending_creates(world)
    result = run(world, "up", "--stack", STACK, "--config-file", "Pulumi.x.yaml", "--yes")
    assert result.returncode == 0, result.stderr
    assert calls(world) == [
        f"cancel --yes --stack {STACK} --non-interactive",
        f"stack export --stack {STACK} --non-interactive",
        f"refresh --clear-pending-creates --yes --skip-preview --stack {STACK} --non-interactive --config-file=Pulumi.x.yaml",
    ]
    assert f"pid {pid} of root@{socket.gethostname()}" in result.stderr
    assert "`bin/pulumi cancel --yes --stack dev --non-interactive`" in result.stderr
    assert "creating urn:pulumi:dev::mlplatform::kubernetes:apps/v1:Deployment::hub" in result.stderr


def test_destroy_clears_a_stale_lock_but_refreshes_nothing(world: dict[str, Path]) -> None:
    lock(world, dead_pid())
    pending_creates(world)
    assert run(world, "destroy", "--stack", STACK, "--yes").returncode == 0
    assert calls(world) == [f"cancel --yes --stack {STACK} --non-interactive"]


def test_a_live_update_s_lock_is_left_to_the_cli(world: dict[str, Path], tmp_path: Path) -> None:
    # A running process whose program is named `pulumi`, as the CLI holding the lock would be.
    sleeper = tmp_path / "live" / "pulumi"
    sleeper.parent.mkdir()
    shutil.copy("/bin/sleep", sleeper)
    live = subprocess.Popen([str(sleeper), "60"])
    try:
        lock(world, live.pid)
        lock(world, dead_pid())
        pending_creates(world)
        result = run(world, "up", "--stack", STACK)
    finally:
        live.kill()
        live.wait()
    assert result.returncode == 0, result.stderr
    assert calls(world) == [], "a running update's stack was touched"


def test_a_pid_reused_by_another_program_is_stale(world: dict[str, Path]) -> None:
    lock(world, os.getpid())  # this pytest: alive, but not a pulumi CLI
    assert run(world, "up", "--stack", STACK).returncode == 0
    assert calls(world)[0] == f"cancel --yes --stack {STACK} --non-interactive"


def test_a_lock_from_another_host_is_left_to_the_cli(world: dict[str, Path]) -> None:
    lock(world, dead_pid(), host="elsewhere")
    assert run(world, "up", "--stack", STACK).returncode == 0
    assert calls(world) == []


def test_a_failing_repair_stops_before_up(world: dict[str, Path]) -> None:
    lock(world, dead_pid())
    world["cli"].write_text(f'#!/bin/sh\necho "$*" >> {world["calls"]}\nexit 7\n')
    result = run(world, "up", "--stack", STACK)
    assert result.returncode == 7
    assert "`bin/pulumi cancel --yes --stack dev --non-interactive` failed (7)" in result.stderr


def test_other_backends_are_left_alone(world: dict[str, Path]) -> None:
    lock(world, dead_pid())
    env_backend = {"PULUMI_BACKEND_URL": "https://api.pulumi.com"}
    result = subprocess.run(
        [sys.executable, "-I", str(SCRIPT), "up", "--stack", STACK], cwd=world["project"],
        env={**os.environ, "MLPLATFORM_PULUMI_CLI": str(world["cli"]), **env_backend}, capture_output=True, text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert calls(world) == []


def checkpoint(world: dict[str, Path], pending: list[dict]) -> Path:
    """The file backend's checkpoint of the stack, as the CLI writes it (project layout)."""
    path = world["backend"] / ".pulumi" / "stacks" / "mlplatform" / f"{STACK}.json"
    latest = {"manifest": {}, "resources": [], **({"pending_operations": pending} if pending else {})}
    path.write_text(json.dumps({"version": 3, "checkpoint": {"stack": f"organization/mlplatform/{STACK}", "latest": latest}}))
    return path


def test_a_plain_checkpoint_file_is_read_without_starting_the_cli(world: dict[str, Path]) -> None:
    checkpoint(world, [])
    result = run(world, "up", "--stack", STACK, "--yes")
    assert result.returncode == 0, result.stderr
    assert calls(world) == [] and result.stderr == ""


def test_pending_operations_in_the_checkpoint_file_are_refreshed(world: dict[str, Path]) -> None:
    checkpoint(world, [{"type": "creating", "resource": {"urn": "urn:pulumi:dev::mlplatform::kubernetes:apps/v1:Deployment::hub"}}])
    result = run(world, "up", "--stack", STACK, "--yes")
    assert result.returncode == 0, result.stderr
    assert calls(world) == [f"refresh --clear-pending-creates --yes --skip-preview --stack {STACK} --non-interactive"]
    assert "creating urn:pulumi:dev::mlplatform::kubernetes:apps/v1:Deployment::hub" in result.stderr


@pytest.mark.parametrize("ext", [".gz", ".zst"])
def test_a_compressed_checkpoint_is_left_to_the_cli(world: dict[str, Path], ext: str) -> None:
    plain = checkpoint(world, [])
    plain.with_name(plain.name + ext).write_bytes(b"\x1f\x8b")
    pending_creates(world)
    result = run(world, "up", "--stack", STACK, "--yes")
    assert result.returncode == 0, result.stderr
    assert calls(world)[0] == f"stack export --stack {STACK} --non-interactive"
    assert calls(world)[1].startswith("refresh --clear-pending-creates")
