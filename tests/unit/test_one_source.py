"""One place for each piece of knowledge: every pin in versions.env only, and the generated docs current."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from vocab.versions import PINS, REPO, VERSIONS_FILE, package_pin
from stacks import reference

# Files that may spell a pin out: the one source, prose, and the files that the tools which
# consume a pin read it from (each checked against versions.env below).
NOT_CODE = (".md", ".png", ".json", ".sum")
OWN_PIN_FILES = {
    "versions.env",
    "tools/go/pulumi/go.mod",
    "tools/go/kubernetes/go.mod",
    "tools/go/kubernetes-node/go.mod",
    "tools/go/etcd/go.mod",
    # What each upstream release ships, keyed by its version, to check the image pins against.
    "tests/unit/test_image_pins.py",
}


def tracked_code() -> dict[str, str]:
    names = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    files = {}
    for name in names:
        path = REPO / name
        # requirements.txt files (the project's, and the images' locks) pin Python packages only.
        if name in OWN_PIN_FILES or path.name == "requirements.txt" or name.endswith(NOT_CODE) or "node_modules" in name or not path.is_file():
            continue
        try:
            files[name] = path.read_text()
        except UnicodeDecodeError:
            continue
    return files


def pins() -> dict[str, str]:
    """Each pinned version, by what it pins: versions.env, and the kubernetes SDK/plugin pin."""
    return {**PINS, "pulumi-kubernetes": package_pin("pulumi-kubernetes")}


def spelled(version: str) -> re.Pattern[str]:
    """The version as a whole token, with or without its leading v."""
    bare = re.escape(version.removeprefix("v"))
    return re.compile(rf"(?<![\w.-])v?{bare}(?![\w.])")


@pytest.mark.parametrize("name", sorted(pins()))
def test_a_pin_is_written_in_one_place_only(name):
    pattern = spelled(pins()[name])
    copies = sorted(f"{file}:{text[: m.start()].count(chr(10)) + 1}" for file, text in tracked_code().items() for m in pattern.finditer(text))
    assert not copies, f"{name} ({pins()[name]}) is pinned in {VERSIONS_FILE.name} (or requirements.txt) but also written in: {copies}"


def test_the_pin_test_finds_a_copy():
    # The check above must be able to fail: a copied pin in any code file is found.
    assert spelled(PINS["KUBERNETES_VERSION"]).search(f'KUBE="{PINS["KUBERNETES_VERSION"]}"')
    assert spelled("v9.8.7").search("image: registry.k8s.io/kube-proxy:9.8.7")
    assert not spelled("v9.8.7").search("v9.8.70 and 19.8.7")


def go_requirement(module_file: str, module: str) -> str:
    text = (REPO / module_file).read_text()
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)} (v\S+)", text, re.MULTILINE)
    assert match, f"{module_file} does not require {module}"
    return match.group(1)


@pytest.mark.parametrize(
    ("module_file", "module", "pin"),
    [
        ("tools/go/pulumi/go.mod", "github.com/pulumi/pulumi/pkg/v3", "PULUMI_VERSION"),
        ("tools/go/pulumi/go.mod", "github.com/pulumi/pulumi/sdk/v3", "PULUMI_VERSION"),
        ("tools/go/kubernetes/go.mod", "k8s.io/kubernetes", "KUBERNETES_VERSION"),
        ("tools/go/kubernetes-node/go.mod", "k8s.io/kubernetes", "KUBERNETES_VERSION"),
        ("tools/go/etcd/go.mod", "go.etcd.io/etcd/server/v3", "ETCD_VERSION"),
    ],
)
def test_go_wrapper_modules_require_the_pinned_version(module_file, module, pin):
    assert go_requirement(module_file, module) == PINS[pin]


def test_the_hub_tests_run_the_pinned_proxy():
    package = json.loads((REPO / "tests" / "hub" / "package.json").read_text())
    assert package["dependencies"]["configurable-http-proxy"] == PINS["CONFIGURABLE_HTTP_PROXY_VERSION"]


def test_the_shell_reads_the_same_pins():
    script = f'. "{REPO}/tools/versions.sh"; ' + "; ".join(f'echo "{name}=${{{name}}}"' for name in sorted(PINS))
    script += '; echo "pulumi-kubernetes=$PULUMI_KUBERNETES_VERSION"'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    assert dict(line.split("=", 1) for line in out.splitlines()) == pins()


def test_the_config_reference_is_generated_from_the_models():
    assert reference.PULUMI_YAML.read_text() == reference.pulumi_yaml(), "Pulumi.yaml is out of date: run `make docs`"
    assert reference.PAGE.read_text() == reference.page(), "docs/configuration.md's config table is out of date: run `make docs`"


def test_every_config_key_is_described():
    missing = [row.key for row in reference.rows() if not row.description]
    assert not missing, f"keys without a description on their field in stacks/: {missing}"
