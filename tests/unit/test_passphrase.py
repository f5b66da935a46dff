"""Which stacks bin/pulumi gives the public local-dev passphrase, and which it refuses (stacks/passphrase.py)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest
import yaml

from stacks import passphrase
from stacks.cluster import LOCAL_PROVIDERS, ClusterProvider, ClusterSettings
from stacks.passphrase import Refused, decide, parse_args
from vocab.versions import REPO


def test_the_provider_names_are_the_programs():
    # passphrase.py cannot import stacks.cluster (too slow before every command): the same names, checked here.
    assert set(passphrase.PROVIDERS) == set(get_args(ClusterProvider))
    assert passphrase.DEFAULT_PROVIDER == ClusterSettings().provider
    assert set(LOCAL_PROVIDERS) <= set(passphrase.PUBLIC_PASSPHRASE_PROVIDERS)
    assert not {"aks", "existing"} & set(passphrase.PUBLIC_PASSPHRASE_PROVIDERS)


@pytest.mark.parametrize("args, stack", [
    (["up", "--stack", "dev"], "dev"),
    (["up", "-s", "dev"], "dev"),
    (["up", "--stack=dev"], "dev"),
    (["up", "-sdev"], "dev"),
    (["--color", "never", "up", "-s=dev"], "dev"),
])
def test_the_stack_flag_in_each_spelling(args, stack):
    assert parse_args(args).flag("--stack") == stack


def test_a_flags_value_is_not_taken_for_the_stack():
    assert parse_args(["stack", "init", "--copy-config-from", "dev", "aks"]).words == ("stack", "init", "aks")
    assert parse_args(["-C", "sub", "stack", "init", "aks"]).words == ("stack", "init", "aks")


@pytest.fixture
def project(tmp_path) -> Path:
    (tmp_path / "Pulumi.yaml").write_text("name: mlplatform\nruntime: python\n")
    for name in ("aks", "dev", "kwok"):
        (tmp_path / f"Pulumi.{name}.yaml").write_text((REPO / f"Pulumi.{name}.yaml").read_text())
    return tmp_path


def env(project: Path, **more: str) -> dict[str, str]:
    return {"PULUMI_BACKEND_URL": f"file://{project}/state", "PULUMI_HOME": str(project / "home"), **more}


def stack_file(project: Path, name: str, config: dict, **top) -> None:
    (project / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump({**top, "config": config}))


@pytest.mark.parametrize("args", [
    ["stack", "init", "aks"], ["up", "--stack", "aks"], ["config", "set", "-s", "aks", "--path", "a.b", "c"],
    ["stack", "select", "--create", "aks"], ["destroy", "--stack=aks", "--yes"], ["stack", "rm", "aks"],
])
def test_a_cloud_stack_is_refused_naming_the_variables(project, args):
    with pytest.raises(Refused) as refusal:
        decide(args, project, env(project))
    message = str(refusal.value)
    assert "stack aks (cluster.provider aks in Pulumi.aks.yaml)" in message
    assert "PULUMI_CONFIG_PASSPHRASE " in message and "PULUMI_CONFIG_PASSPHRASE_FILE" in message


@pytest.mark.parametrize("stack", ["dev", "kwok"])
def test_the_local_stacks_get_the_public_passphrase(project, stack):
    assert decide(["up", "--stack", stack, "--yes"], project, env(project)) == "public"
    assert decide(["stack", "init", stack], project, env(project)) == "public"


def test_render_and_a_stack_without_a_provider_get_it_too(project):
    stack_file(project, "render", {"mlplatform:cluster": {"provider": "render"}})
    stack_file(project, "plain", {"mlplatform:images": {"local": True}})  # the program's default: kwok
    stack_file(project, "text", {"mlplatform:cluster": json.dumps({"provider": "local"})})  # set without --path
    for stack in ("render", "plain", "text"):
        assert decide(["preview", "-s", stack], project, env(project)) == "public"


@pytest.mark.parametrize("cluster, why", [
    ({"provider": "existing"}, "cluster.provider existing in"),
    ({"secure": "v1:abc"}, "cluster.provider unreadable in"),
    ({"provider": "kowk"}, "cluster.provider unreadable in"),
    ("{not json", "cluster.provider unreadable in"),
])
def test_a_stack_whose_provider_is_not_local_or_unknown_is_refused(project, cluster, why):
    stack_file(project, "other", {"mlplatform:cluster": cluster})
    with pytest.raises(Refused, match=why):
        decide(["up", "--stack", "other"], project, env(project))


def test_a_stack_without_a_file_is_refused(project):
    with pytest.raises(Refused, match=r"stack prod \(no Pulumi.prod.yaml"):
        decide(["stack", "init", "prod"], project, env(project))


def test_a_stack_with_a_secrets_provider_of_its_own_is_left_alone(project):
    stack_file(project, "kv", {"mlplatform:cluster": {"provider": "aks"}}, secretsprovider="azurekeyvault://v.vault.azure.net/keys/k",
               encryptedkey="abc")
    assert decide(["up", "--stack", "kv"], project, env(project)) == "none"
    assert decide(["stack", "init", "aks", "--secrets-provider", "awskms://alias/k"], project, env(project)) == "none"
    assert decide(["stack", "init", "aks", "--secrets-provider=gcpkms://p/k"], project, env(project)) == "none"
    with pytest.raises(Refused):
        decide(["stack", "init", "aks", "--secrets-provider", "passphrase"], project, env(project))
    # Pulumi Cloud keeps a new stack's secrets itself; one made with a passphrase still needs it.
    cloud = env(project, PULUMI_BACKEND_URL="https://api.pulumi.com")
    assert decide(["stack", "init", "prod"], project, cloud) == "none"
    stack_file(project, "salted", {"mlplatform:cluster": {"provider": "aks"}}, encryptionsalt="v1:x")
    with pytest.raises(Refused):
        decide(["up", "--stack", "salted"], project, cloud)


@pytest.mark.parametrize("args", [
    [], ["version"], ["plugin", "install", "resource", "kubernetes", "--file", "x"], ["stack", "ls"], ["login", "file://x"],
    ["whoami"], ["about"], ["stack", "select", "aks"], ["up", "--stack", "aks", "--help"], ["stack", "--show-name"],
])
def test_commands_on_no_stack_are_left_alone(project, args):
    assert decide(args, project, env(project)) == "none"


def select(project: Path, stack: str, project_path: Path | None = None) -> None:
    # As `pulumi stack select` writes it (tests/engine checks this against the real CLI).
    path = project_path or project / "Pulumi.yaml"
    workspaces = project / "home" / "workspaces"
    workspaces.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(str(path).encode()).hexdigest()
    (workspaces / f"mlplatform-{digest}-workspace.json").write_text(
        json.dumps({"stacks": {f"file://{project}/state": f"organization/mlplatform/{stack}"}}))


def test_without_a_stack_flag_the_selected_stack_is_read(project):
    assert decide(["up"], project, env(project)) == "none"  # none selected: Pulumi says so itself
    select(project, "kwok")
    assert decide(["up"], project, env(project)) == "public"
    (project / "sub").mkdir()
    assert decide(["config"], project / "sub", env(project)) == "public"  # the project is found upwards
    select(project, "aks")
    with pytest.raises(Refused, match="stack aks"):
        decide(["config"], project, env(project))
    # Another backend has its own selection.
    assert decide(["up"], project, env(project, PULUMI_BACKEND_URL="file:///elsewhere")) == "none"


def test_make_ups_config_file_is_read_where_the_command_takes_no_flag(project, tmp_path_factory):
    # `make up STACK=x CONFIG_FILE=f` selects the stack before anything else, and `stack select`
    # takes no --config-file: the Makefile names the file in MLPLATFORM_STACK_CONFIG.
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "x.yaml").write_text((REPO / "Pulumi.kwok.yaml").read_text())
    (elsewhere / "cloud.yaml").write_text((REPO / "Pulumi.aks.yaml").read_text())
    args = ["stack", "select", "--create", "x", "--non-interactive"]
    assert decide(args, project, {**env(project), "MLPLATFORM_STACK_CONFIG": str(elsewhere / "x.yaml")}) == "public"
    with pytest.raises(Refused, match="cluster.provider aks in cloud.yaml"):
        decide(args, project, {**env(project), "MLPLATFORM_STACK_CONFIG": str(elsewhere / "cloud.yaml")})


def test_the_config_file_flag_and_the_cwd_flag_are_followed(project, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "aks-like.yaml").write_text((REPO / "Pulumi.aks.yaml").read_text())
    with pytest.raises(Refused, match="cluster.provider aks in aks-like.yaml"):
        decide(["up", "--stack", "kwok", "--config-file", str(elsewhere / "aks-like.yaml")], project, env(project))
    assert decide(["-C", str(project), "up", "--stack", "kwok"], elsewhere, env(project)) == "public"


def test_run_as_a_file_it_prints_the_answer_or_refuses_with_one_message(project):
    script = REPO / "stacks" / "passphrase.py"
    ran = subprocess.run([sys.executable, "-I", str(script), "up", "--stack", "dev"], cwd=project, env=env(project),
                         capture_output=True, text=True)
    assert (ran.returncode, ran.stdout, ran.stderr) == (0, "public\n", "")
    ran = subprocess.run([sys.executable, "-I", str(script), "stack", "init", "aks"], cwd=project, env=env(project),
                         capture_output=True, text=True)
    assert ran.returncode == 3 and ran.stdout == ""
    assert ran.stderr.startswith("bin/pulumi: refusing `pulumi stack init` on stack aks") and ran.stderr.count("\n") == 1
