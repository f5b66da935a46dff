"""The Python language host's list of the plugins installed SDKs drive
(tools/go/pulumi/cmd/pulumi-language-python/list_plugins.py, embedded in the host), run as the
host runs it: `python -c SCRIPT` with the project's interpreter."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

from program import ROOT

SCRIPT = ROOT / "tools" / "go" / "pulumi" / "cmd" / "pulumi-language-python" / "list_plugins.py"


def listed(cwd: Path, pythonpath: list[Path] | None = None) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in pythonpath or [])}
    out = subprocess.run([sys.executable, "-c", SCRIPT.read_text()], cwd=cwd, env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout)


def by_name(manifests: list[dict]) -> dict[str, dict]:
    return {m["name"]: m for m in manifests}


def every_distributions_manifest() -> list[dict]:
    """What the host listed before: each installed distribution's file list, read whole."""
    found = []
    for dist in importlib.metadata.distributions():
        for file in dist.files or []:
            if file.name == "pulumi-plugin.json":
                found.append(json.loads(file.read_text()))
    return found


def test_it_finds_what_reading_every_distributions_files_finds(tmp_path):
    found = by_name(listed(tmp_path))
    assert found == by_name(every_distributions_manifest())
    assert found["kubernetes"]["resource"] is True
    assert found["kubernetes"]["version"] == importlib.metadata.version("pulumi_kubernetes")


def test_a_package_on_the_path_is_found_once_and_a_broken_manifest_is_skipped(tmp_path):
    (tmp_path / "pulumi_example").mkdir()
    (tmp_path / "pulumi_example" / "pulumi-plugin.json").write_text('{"resource": true, "name": "example", "version": "1.2.3"}')
    (tmp_path / "pulumi_broken").mkdir()
    (tmp_path / "pulumi_broken" / "pulumi-plugin.json").write_text("{not json")
    (tmp_path / "not_a_package.txt").write_text("")
    found = listed(tmp_path / "pulumi_example", pythonpath=[tmp_path, tmp_path, tmp_path / "missing"])
    assert [m for m in found if m["name"] == "example"] == [{"resource": True, "name": "example", "version": "1.2.3"}]
    assert "kubernetes" in by_name(found), "the virtualenv's SDKs are still found beside it"
