"""`make up` for real: a private kwok cluster, the real Pulumi engine and the dev stack's config.

One session-wide deployment serves every e2e test; the tests run in file order and each one
leaves the stack as it found it. Needs the tools cache (`tools/build.sh pulumi kube`); without
it the e2e tests are skipped and the summary says so.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import config as kube_config
from kubernetes import dynamic

from local_stack import LocalStack, missing_tools

SKIPPED_BECAUSE: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for reason in SKIPPED_BECAUSE:
        terminalreporter.write_line(f"e2e tests SKIPPED: {reason}", yellow=True, bold=True)


@pytest.fixture(scope="session")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The dev stack deployed by `make up` to its own cluster; `make down` at the end."""
    missing = missing_tools()
    if missing:
        reason = f"tools not built ({', '.join(missing)}): run `tools/build.sh pulumi kube` once"
        SKIPPED_BECAUSE.append(reason)
        pytest.skip(reason)
    stack = LocalStack(tmp_path_factory.mktemp("e2e"))
    stack.create_stack()
    try:
        stack.up_run = stack.make("up")
        yield stack
    finally:
        stack.make("down", check=False)
        stack.force_cleanup()
        shutil.rmtree(stack.base, ignore_errors=True)


@pytest.fixture(scope="session")
def api(local: LocalStack) -> dynamic.DynamicClient:
    return dynamic.DynamicClient(kube_config.new_client_from_config(config_file=str(local.kubeconfig)))
