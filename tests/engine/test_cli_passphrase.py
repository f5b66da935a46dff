"""bin/pulumi's public local-dev passphrase: the local stacks get it, any other stack is refused
before the CLI runs unless PULUMI_CONFIG_PASSPHRASE(_FILE) is set (stacks/passphrase.py)."""

from __future__ import annotations

from pathlib import Path

from cli import pulumi

VARIABLES = ("PULUMI_CONFIG_PASSPHRASE ", "PULUMI_CONFIG_PASSPHRASE_FILE")


def stacks(project: Path) -> set[str]:
    listed = pulumi(project, "stack", "ls").stdout.splitlines()[1:]
    return {line.split()[0].rstrip("*") for line in listed if line.strip()}


def test_stack_init_of_the_aks_stack_is_refused_without_a_passphrase_of_ones_own(project, tmp_path):
    stack_file = project / "Pulumi.aks.yaml"
    before = stack_file.read_bytes()
    result = pulumi(project, "stack", "init", "aks", check=False)
    assert result.returncode != 0
    assert result.stdout == ""
    message = result.stderr
    assert message.startswith("bin/pulumi: refusing `pulumi stack init` on stack aks (cluster.provider aks in Pulumi.aks.yaml)")
    assert message.count("\n") == 1 and all(name in message for name in VARIABLES), message
    assert "Traceback" not in message
    # Refused before the CLI ran: no stack, the file as it was, no salt of the public passphrase in it.
    assert stack_file.read_bytes() == before and b"encryptionsalt" not in before
    assert "aks" not in stacks(project)

    # A passphrase of one's own, in a file: allowed, and the salt written is that passphrase's.
    secret = tmp_path / "passphrase"
    secret.write_text("not the public one\n")
    pulumi(project, "stack", "init", "aks", env={"PULUMI_CONFIG_PASSPHRASE_FILE": str(secret)})
    assert "encryptionsalt" in stack_file.read_text()
    assert "aks" in stacks(project)
    # Selected now (stack init selects it): a command naming no stack acts on it and is refused too.
    assert pulumi(project, "stack", "--show-name").stdout.strip() == "aks"
    result = pulumi(project, "config", check=False)
    assert result.returncode != 0 and "refusing `pulumi config` on stack aks" in result.stderr
    assert "passphrase" not in pulumi(project, "config", env={"PULUMI_CONFIG_PASSPHRASE": "not the public one"}).stderr
    pulumi(project, "stack", "rm", "aks", "--yes", env={"PULUMI_CONFIG_PASSPHRASE": "not the public one"})


def test_a_local_stack_still_needs_no_passphrase(project):
    for name in ("kwok", "dev"):
        stack_file = project / f"Pulumi.{name}.yaml"
        before = stack_file.read_bytes()
        pulumi(project, "stack", "select", "--create", name)  # as `make up` does
        # The example files' salt is the public passphrase's: the stack takes it as it is.
        assert stack_file.read_bytes() == before
        assert pulumi(project, "config", "get", "--path", "cluster.provider").stdout.strip() == ("kwok" if name == "kwok" else "local")
    pulumi(project, "stack", "rm", "kwok", "--yes", "--preserve-config")
    pulumi(project, "stack", "rm", "dev", "--yes", "--preserve-config")


def test_commands_on_no_stack_are_left_alone(project):
    assert pulumi(project, "version").stdout.startswith("v3.")
    pulumi(project, "stack", "ls")
    pulumi(project, "whoami")
