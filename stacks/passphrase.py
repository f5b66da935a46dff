"""Whether `bin/pulumi` may hand a command the public local-dev passphrase, or must refuse it.

    python -I stacks/passphrase.py PULUMI_ARGS...

Asked by bin/pulumi only when neither PULUMI_CONFIG_PASSPHRASE nor PULUMI_CONFIG_PASSPHRASE_FILE
is set, before the CLI runs. It prints one word: `public` (the command acts on a local stack whose
secrets are kept with a passphrase: bin/pulumi sets the public one), or `none` (the command acts
on no stack, or its stack keeps secrets another way, or no stack is known yet: bin/pulumi sets
nothing and Pulumi asks for what it needs itself). For any other stack that would be encrypted
with a passphrase it prints why on stderr and exits 3, and bin/pulumi runs nothing.

The public passphrase is in the repository, so what it "encrypts" anyone can read: it is only for
stacks whose secrets never leave this machine, PUBLIC_PASSPHRASE_PROVIDERS. A stack whose
provider cannot be read (no stack file, a file that is not YAML, a provider set as a secret) is
refused like a cloud one: being wrong there costs a secret.

Run as a file, not as `-m stacks.passphrase`: the `stacks` package imports the whole program
(pydantic, the kubernetes client: seconds), and this runs before every command. So it imports
only the standard library and PyYAML, and tests/unit/test_passphrase.py checks that the provider
names and default below are the ones stacks/cluster.py validates.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

PUBLIC_PASSPHRASE = "mlplatform-local-dev"
# The local cluster's stacks (stacks.cluster.LOCAL_PROVIDERS, whose secrets are kept by the
# cluster bin/cluster runs here) and `render`, whose secrets go only into files on this machine.
PUBLIC_PASSPHRASE_PROVIDERS = ("local", "kwok", "render")
# stacks.cluster.ClusterProvider and ClusterSettings.provider's default, for a stack file that
# sets no provider (the program then deploys to kwok).
PROVIDERS = ("kwok", "local", "existing", "aks", "render")
DEFAULT_PROVIDER = "kwok"
CLUSTER_KEY = "mlplatform:cluster"

# Commands that act on no stack: left alone (no passphrase is given to them or asked of them).
NO_STACK_COMMANDS = frozenset({
    "about", "ai", "completion", "convert", "env", "gen-completion", "help", "install", "login", "logout",
    "new", "org", "package", "plugin", "policy", "project", "schema", "template", "version", "view-trace",
    "whoami",
})
NO_STACK_STACK_COMMANDS = frozenset({"ls", "unselect", "select"})  # `stack select` only when not --create
# Flags that take a value (as `--flag value`) among the global flags and those of the commands
# read here, so that a value is never taken for the command or the stack's name.
VALUE_FLAGS = frozenset({
    "-C", "--cwd", "--color", "-v", "--verbose", "--memprofilerate", "--otel-traces", "--profiling", "--tracing",
    "--tracing-header", "-s", "--stack", "--config-file", "--secrets-provider", "--copy-config-from", "--teams",
})
SECRETS_FLAG = "--secrets-provider"
GROUPS = frozenset({"stack", "config", "state", "deployment"})  # commands named with their subcommand


class Refused(Exception):
    """The command would keep a non-local stack's secrets with the public passphrase."""


@dataclass(frozen=True)
class Command:
    words: tuple[str, ...]  # the command and its positional arguments, e.g. ("stack", "init", "aks")
    flags: dict[str, str | bool]  # long names (short ones spelt long); the last value wins

    def flag(self, name: str) -> str | None:
        value = self.flags.get(name)
        return value if isinstance(value, str) else None


SHORT = {"-s": "--stack", "-C": "--cwd", "-v": "--verbose", "-c": "--create", "-h": "--help"}


def parse_args(args: list[str]) -> Command:
    words: list[str] = []
    flags: dict[str, str | bool] = {}
    rest = iter(args)
    for arg in rest:
        if arg == "--":
            words += list(rest)
            break
        if not arg.startswith("-") or arg == "-":
            words.append(arg)
            continue
        name, equals, value = arg.partition("=")
        if not equals and not arg.startswith("--") and len(arg) > 2 and arg[:2] in SHORT and arg[:2] in VALUE_FLAGS:
            name, equals, value = arg[:2], "=", arg[2:]  # cobra's `-sdev`
        long = SHORT.get(name, name)
        if equals:
            flags[long] = value
        elif name in VALUE_FLAGS:
            flags[long] = next(rest, "")
        else:
            flags[long] = True
    return Command(tuple(words), flags)


# --- where the stack and its file are ---------------------------------------------------------


def project_file(start: Path) -> Path | None:
    """The Pulumi.yaml Pulumi finds from `start`: there or in the nearest directory above."""
    for directory in (start, *start.parents):
        for name in ("Pulumi.yaml", "Pulumi.yml"):
            if (directory / name).is_file():
                return directory / name
    return None


def read_yaml(path: Path) -> dict | None:
    """The mapping in `path`, or None where there is none to read."""
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return document if isinstance(document, dict) else None


def selected_stack(project: Path, pulumi_home: Path, backend: str) -> str | None:
    """The stack `pulumi stack select` chose for this project and backend, read from its workspace
    file ($PULUMI_HOME/workspaces/<project>-<sha1 of Pulumi.yaml's path>-workspace.json), as
    `pulumi stack --show-name` would tell it, without running the CLI."""
    name = (read_yaml(project) or {}).get("name")
    if not isinstance(name, str):
        return None
    # The path Pulumi hashes is the one Go's os.Getwd gave it: $PWD where that is the working
    # directory (symbolic links and all, as `project` is built in main), else the real path.
    paths = [str(project), str(project.resolve())]
    for path in dict.fromkeys(paths):
        digest = hashlib.sha1(path.encode()).hexdigest()
        try:
            workspace = json.loads((pulumi_home / "workspaces" / f"{name}-{digest}-workspace.json").read_text())
        except (OSError, ValueError):
            continue
        stack = (workspace.get("stacks") or {}).get(backend) or workspace.get("stack")
        if isinstance(stack, str) and stack:
            return stack
    return None


def stack_config_file(project: Path, stack: str) -> Path:
    """Pulumi.<stack>.yaml beside Pulumi.yaml, or in the project's stackConfigDir."""
    directory = project.parent
    config_dir = (read_yaml(project) or {}).get("stackConfigDir")
    if isinstance(config_dir, str) and config_dir:
        directory = directory / config_dir
    return directory / f"Pulumi.{stack.rsplit('/', 1)[-1]}.yaml"


# --- what the stack is -------------------------------------------------------------------------


def provider_of(document: dict | None) -> str | None:
    """The stack file's cluster.provider as the program reads it, or None where it cannot be told."""
    if document is None:
        return None
    config = document.get("config") or {}
    if not isinstance(config, dict):
        return None
    cluster = config.get(CLUSTER_KEY, {})
    if isinstance(cluster, str):  # `pulumi config set cluster '<json>'` keeps the object as text
        try:
            cluster = json.loads(cluster)
        except ValueError:
            return None
    if not isinstance(cluster, dict) or "secure" in cluster:
        return None
    provider = cluster.get("provider", DEFAULT_PROVIDER)
    return provider if provider in PROVIDERS else None


def keeps_secrets_with_passphrase(document: dict | None, creating: bool, flag: str | None, service_backend: bool) -> bool:
    """Whether the stack's secrets manager is a passphrase: the one a new stack is given
    (--secrets-provider, else the backend's default), or the one its stack file names."""
    if creating:
        provider = flag
    else:
        document = document or {}
        provider = document.get("secretsprovider")
        if provider is None and document.get("encryptionsalt"):
            provider = "passphrase"
    if provider in (None, "", "default"):
        # A DIY backend (file://, s3://, ...) encrypts with a passphrase by default, Pulumi Cloud itself.
        return not service_backend
    return provider == "passphrase"


def decide(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    """`public`, `none`, or Refused: see the module's docstring."""
    command = parse_args(args)
    words = command.words
    if not words or command.flags.get("--help") or words[0] in NO_STACK_COMMANDS:
        return "none"
    creating = words[:2] == ("stack", "init") or (words[:2] == ("stack", "select") and bool(command.flags.get("--create")))
    if words[0] == "stack" and len(words) > 1 and words[1] in NO_STACK_STACK_COMMANDS and not creating:
        return "none"
    if words == ("stack",) and command.flags.get("--show-name"):
        return "none"  # the name only, which Pulumi reads without the stack's secrets
    if command.flag("--cwd"):
        cwd = cwd / command.flag("--cwd")
    project = project_file(cwd)
    backend = env.get("PULUMI_BACKEND_URL", "")
    stack = command.flag("--stack")
    if not stack and words[0] == "stack" and words[1:2] in (("init",), ("select",), ("rm",)) and len(words) > 2:
        stack = words[2]
    if not stack and project is not None:
        home = Path(env.get("PULUMI_HOME") or Path.home() / ".pulumi")
        stack = selected_stack(project, home, backend)
    if not stack or project is None:
        return "none"  # no stack to act on: Pulumi says so, or asks, and encrypts nothing
    # `make up STACK=x CONFIG_FILE=f` names the stack's file for commands that take no
    # --config-file (`stack select --create`), as it does for bin/cluster.
    config_file = Path(command.flag("--config-file") or env.get("MLPLATFORM_STACK_CONFIG")
                       or stack_config_file(project, stack))
    config_file = cwd / config_file
    document = read_yaml(config_file) if config_file.is_file() else None
    service_backend = backend.startswith(("https://", "http://"))
    if not keeps_secrets_with_passphrase(document, creating, command.flag(SECRETS_FLAG), service_backend):
        return "none"
    provider = provider_of(document)
    if provider in PUBLIC_PASSPHRASE_PROVIDERS:
        return "public"
    name = stack.rsplit("/", 1)[-1]
    if not config_file.is_file():
        what = f"no {config_file.name} to read its cluster.provider from"
    elif provider is None:
        what = f"cluster.provider unreadable in {config_file.name}"
    else:
        what = f"cluster.provider {provider} in {config_file.name}"
    raise Refused(
        f"refusing `pulumi {' '.join(words[:2] if words[0] in GROUPS else words[:1])}` on stack {name} ({what}): "
        "its secrets would be kept with the public local-dev passphrase, which is only for local stacks "
        f"(cluster.provider {', '.join(PUBLIC_PASSPHRASE_PROVIDERS)}). Set PULUMI_CONFIG_PASSPHRASE to a "
        "passphrase of your own (or PULUMI_CONFIG_PASSPHRASE_FILE to a file holding it), or create the stack "
        "with a secrets provider (`--secrets-provider azurekeyvault://...`; awskms://, gcpkms://, hashivault://). "
        "Nothing was run."
    )


def working_directory() -> Path:
    """The working directory as Go's os.Getwd tells it to Pulumi: $PWD when that is it."""
    pwd = os.environ.get("PWD")
    if pwd and os.path.isabs(pwd) and os.path.isdir(pwd) and os.path.samefile(pwd, "."):
        return Path(pwd)
    return Path.cwd()


def main(args: list[str]) -> int:
    try:
        print(decide(args, working_directory(), dict(os.environ)))
    except Refused as refusal:
        print(f"bin/pulumi: {refusal}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
