"""What an interrupted `pulumi up` left behind, found and cleared before the next one runs.

    MLPLATFORM_PULUMI_CLI=<pulumi> python -I stacks/interrupted.py PULUMI_ARGS...

Run by bin/pulumi before every command (it returns at once for all but `up` and `destroy`), with
the environment bin/pulumi set (backend, PULUMI_HOME, passphrase) and the CLI it resolved. A
Ctrl-C lets the CLI cancel cleanly: it asks the provider to stop waiting, writes what it did and
releases its lock, and the next `up` finds nothing to do here. A CLI that is killed (SIGKILL, a
second Ctrl-C, a closed terminal, the OOM killer, a reboot) leaves two things behind, on the
file (DIY) backend:

- its lock, `.pulumi/locks/<org>/<project>/<stack>/<id>.json` under the backend's directory,
  holding the CLI's pid, user and host. Every later `up`, `refresh` or `destroy` then fails with
  "the stack is currently locked". A lock taken on this host by a pid that is no longer a pulumi
  process is stale: this runs `pulumi cancel --yes`, which deletes the stack's locks. A lock of a
  live pulumi process is left alone (that update is still running, and the CLI says so); a lock
  from another host is not judged from here: the CLI's error names it and `pulumi cancel`.
- pending operations in the checkpoint (`checkpoint.latest.pending_operations` of the backend's
  `.pulumi/stacks/<project>/<stack>.json`, or `pulumi stack export`'s `deployment.pending_operations`):
  the resources the engine had started to create, update or delete when it died, in an unknown
  state. `up` only warns about them, and keeps pending *creates* for ever: the object may exist in
  the cluster while the state does not know it. For `up` this runs `pulumi refresh
  --clear-pending-creates --yes`, Pulumi's own repair: refresh reads every object back from the
  cluster (so interrupted updates and deletes are settled) and the pending creates are dropped.
  Dropping them is safe for this program because every object it declares has a fixed name and
  the kubernetes provider creates by server-side apply, which adopts an object of that name that
  already exists; the `up` that follows creates each one again from the program.

Everything done is said on stderr, with the command, so it can be run by hand too. Standard
library only, run as a file beside stacks/passphrase.py (whose argument parser it shares).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))
import passphrase  # noqa: E402  (stacks/passphrase.py, beside this file; not the `stacks` package)

# The commands that take the stack's lock and would fail on a stale one; `up` also carries pending
# operations forward, so it is the one that repairs them.
LOCKING_COMMANDS = frozenset({"up", "update", "destroy"})
REPAIRING_COMMANDS = frozenset({"up", "update"})
# Flags of the interrupted command that the repairing commands need as they are.
PASSED_FLAGS = ("--cwd", "--config-file")


@dataclass(frozen=True)
class Lock:
    path: Path
    pid: int
    host: str
    user: str
    since: str

    def stale(self, host: str) -> bool:
        """Taken here by a process that is gone (or is now something else than a pulumi CLI)."""
        return self.host == host and not is_pulumi(self.pid)

    def describe(self) -> str:
        return f"{self.path.name}: pid {self.pid} of {self.user}@{self.host}, taken {self.since}"


def is_pulumi(pid: int) -> bool:
    try:
        argv0 = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0", 1)[0]
    except OSError:
        return False
    return os.path.basename(argv0.decode(errors="replace")) == "pulumi"


def backend_directory(url: str) -> Path | None:
    """The directory of a file:// backend; None for any other backend (its locks are not files here)."""
    parsed = urlparse(url)
    if parsed.scheme != "file":
        return None
    return Path(unquote(parsed.netloc + parsed.path)).expanduser()


def project_name(project: Path) -> str | None:
    name = (passphrase.read_yaml(project) or {}).get("name")
    return name if isinstance(name, str) else None


def locks(backend: Path, project: str, stack: str) -> list[Lock]:
    found = []
    for path in sorted(backend.glob(f".pulumi/locks/*/{project}/{stack}/*.json")):
        try:
            content = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being written or removed right now: the CLI judges it itself
        found.append(Lock(path, int(content.get("pid", 0)), str(content.get("hostname", "")),
                          str(content.get("username", "")), str(content.get("timestamp", ""))))
    return found


def checkpoint_file(backend: Path, project: str, stack: str) -> Path | None:
    """The stack's checkpoint on a file backend (project layout), when it is plain JSON and the
    only one: with PULUMI_DIY_BACKEND_GZIP or _ZSTD the CLI writes a compressed one beside it."""
    plain = backend / ".pulumi" / "stacks" / project / f"{stack}.json"
    compressed = [plain.with_name(plain.name + ext) for ext in (".gz", ".zst")]
    if plain.is_file() and not any(path.exists() for path in compressed):
        return plain
    return None


def say(message: str) -> None:
    print(f"bin/pulumi: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Recovery:
    cli: str
    stack: str
    flags: tuple[str, ...]  # --cwd/--config-file of the interrupted command, passed on

    def command(self, *args: str) -> list[str]:
        return [self.cli, *args, "--stack", self.stack, "--non-interactive", *self.flags]

    def shown(self, args: list[str]) -> str:
        return " ".join(["bin/pulumi", *args[1:]])

    def run(self, args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(args, text=True, **kwargs)  # type: ignore[call-overload]
        if result.returncode != 0:
            say(f"`{self.shown(args)}` failed ({result.returncode}); run it by hand once the cause above is fixed")
            raise SystemExit(result.returncode)
        return result

    def clear_stale_locks(self, found: list[Lock], host: str) -> None:
        stale = [lock for lock in found if lock.stale(host)]
        if not stale or len(stale) != len(found):
            return  # nothing stale, or a live update holds the stack: the CLI says which and what to do
        command = [self.cli, "cancel", "--yes", "--stack", self.stack, "--non-interactive"]
        say(
            f"stack {self.stack} is locked by an update that is no longer running (its CLI was killed): "
            + "; ".join(lock.describe() for lock in stale)
            + f". Removing the lock: `{self.shown(command)}`"
        )
        self.run(command, stdout=sys.stderr)

    def pending_operations(self, checkpoint: Path | None = None) -> list[dict]:
        """The checkpoint's pending operations; none where there is no stack yet (the CLI says so).

        Read from the backend's checkpoint file where it is plain JSON: `stack export` starts the
        CLI and rewrites the whole state for what is one key of that file, about a second before
        every `up` on a loaded 2-core machine (docs/benchmarks.md)."""
        if checkpoint is not None:
            try:
                latest = json.loads(checkpoint.read_text()).get("checkpoint", {}).get("latest") or {}
                return list(latest.get("pending_operations") or [])
            except (OSError, ValueError, AttributeError):
                pass  # being replaced right now, or not the layout this reads: ask the CLI
        exported = subprocess.run(
            [self.cli, "stack", "export", "--stack", self.stack, "--non-interactive",
             *[f for f in self.flags if not f.startswith("--config-file")]],
            capture_output=True, text=True,
        )
        if exported.returncode != 0:
            return []
        deployment = json.loads(exported.stdout or "{}").get("deployment") or {}
        return list(deployment.get("pending_operations") or [])

    def settle_pending_operations(self, checkpoint: Path | None = None) -> None:
        pending = self.pending_operations(checkpoint)
        if not pending:
            return
        command = self.command("refresh", "--clear-pending-creates", "--yes", "--skip-preview")
        listed = "; ".join(f"{op.get('type')} {op.get('resource', {}).get('urn')}" for op in pending)
        say(
            f"stack {self.stack} has {len(pending)} operation(s) an interrupted update left unfinished ({listed}). "
            f"Reading every object back from the cluster and dropping the unfinished creates: `{self.shown(command)}`"
        )
        self.run(command, stdout=sys.stderr)


def main(args: list[str]) -> int:
    command = passphrase.parse_args(args)
    if not command.words or command.words[0] not in LOCKING_COMMANDS or command.flags.get("--help"):
        return 0
    cli = os.environ.get("MLPLATFORM_PULUMI_CLI")
    backend = backend_directory(os.environ.get("PULUMI_BACKEND_URL", ""))
    cwd = passphrase.working_directory()
    if command.flag("--cwd"):
        cwd = cwd / command.flag("--cwd")
    project = passphrase.project_file(cwd)
    if not cli or backend is None or project is None:
        return 0
    name = project_name(project)
    stack = command.flag("--stack") or passphrase.selected_stack(
        project, Path(os.environ.get("PULUMI_HOME") or Path.home() / ".pulumi"), os.environ.get("PULUMI_BACKEND_URL", "")
    )
    if not name or not stack:
        return 0
    stack = stack.rsplit("/", 1)[-1]
    flags = tuple(f"{flag}={command.flag(flag)}" for flag in PASSED_FLAGS if command.flag(flag))
    recovery = Recovery(cli, stack, flags)
    found = locks(backend, name, stack)
    host = socket.gethostname()
    recovery.clear_stale_locks(found, host)
    if command.words[0] in REPAIRING_COMMANDS and all(lock.stale(host) for lock in found):
        recovery.settle_pending_operations(checkpoint_file(backend, name, stack))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
