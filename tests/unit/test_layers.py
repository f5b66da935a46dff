"""Imports point one way: `__main__` -> components -> stacks -> vocab, and the cluster manager
stands apart (the system python3's standard library, before any virtualenv exists).

Read from the sources with `ast`, every import counted wherever it sits (a lazy import inside a
function is still a dependency), so a layering slip fails here rather than in a review.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    """Every absolute module `path` imports, at any depth (relative imports stay in the package)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def imports_of(package: str) -> dict[str, set[str]]:
    """Each source file of `package` (a directory below the repository), with what it imports."""
    files = sorted((REPO / package).rglob("*.py"))
    assert files, f"{package}/ has no Python files: the layer test would check nothing"
    return {str(f.relative_to(REPO)): imported_modules(f) for f in files}


def reaching(imports: dict[str, set[str]], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{file} imports {module}"
        for file, modules in imports.items()
        for module in sorted(modules)
        if module.split(".")[0] in forbidden
    ]


def test_stacks_never_import_components():
    assert reaching(imports_of("stacks"), ("components",)) == []


def test_the_vocabulary_imports_no_pulumi_and_no_higher_layer():
    assert reaching(imports_of("vocab"), ("pulumi", "pulumi_kubernetes", "components", "stacks")) == []


def test_the_cluster_manager_imports_only_the_standard_library_and_itself():
    imports = imports_of("cluster/localcluster")
    assert reaching(imports, ("components", "stacks", "pulumi", "pulumi_kubernetes")) == []
    outside = [
        f"{file} imports {module}"
        for file, modules in imports.items()
        for module in sorted(modules)
        if module.split(".")[0] not in sys.stdlib_module_names
        and not module.startswith("cluster.localcluster")
        # The image builder and the tools' layout are the standard library too: images.py asks
        # the one what the nodes import, settings.py the other where the tools are; the training
        # operator's part takes the operator's names from the TFJob vocabulary, the capacity
        # part reads quantities as the settings do.
        and module.split(".")[0] not in ("images", "tools")
        and module not in ("vocab.tfjob_api", "vocab.quantity")
    ]
    assert outside == []


@pytest.mark.parametrize("module", ["tfjob_api.py", "quantity.py"])
def test_the_vocabulary_the_cluster_manager_imports_is_the_standard_library(module):
    imports = imported_modules(REPO / "vocab" / module)
    assert sorted(m for m in imports if m.split(".")[0] not in sys.stdlib_module_names) == []


@pytest.mark.parametrize("module", ["stacks.local_nodes", "stacks"])
def test_the_settings_do_not_load_the_kubernetes_provider(module):
    """`make up` asks stacks.local_nodes for the stack's nodes; it must not pay for pulumi_kubernetes."""
    script = f"import sys, {module}; print('pulumi_kubernetes' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", f"importing {module} loaded pulumi_kubernetes"


def test_the_program_does_not_load_the_kubernetes_client():
    """Every `pulumi preview` and `up` imports the whole program. The kubernetes client package
    (its __init__ loads the dynamic client and, through kubernetes-validate, a JSON-schema
    validator) cost about 2 s of each on a 2-core machine (docs/benchmarks.md); the program needs
    neither it nor the validator, only kubernetes-validate's schema files."""
    modules = ["components.cluster", "components.jupyterhub", "components.mnist", "components.training_operator",
               "components.crd_schema", "components.trainer_image", "components.cert_manager", "stacks"]
    heavy = ("kubernetes", "kubernetes_validate", "jsonschema")
    script = f"import sys, {', '.join(modules)}; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"importing the program loaded {out.stdout.strip()}"
