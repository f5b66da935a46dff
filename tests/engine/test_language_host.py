"""The project's Python language host (tools/go/pulumi/cmd/pulumi-language-python), as the engine
starts and stops it.

The engine ends a plugin by sending SIGINT to the plugin's process group and kills it only after
5 s (`plugin.go` of the pinned SDK). A command started with `&` by a shell without job control
starts with SIGINT ignored, and every process below it inherits that: the benchmarks, scripts, a
`make up &`. A host that kept the inherited disposition sat out those 5 s in every `pulumi
preview` and `pulumi up` (seen in `make bench-deploy`'s no-op preview, 2026-12-07: 9.7 s, of which
5.0 s "Waiting for language runtime metadata").
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from e2e.local_stack import missing_tools, tools_dirs

# The engine's grace before it kills a plugin that did not end on SIGINT.
ENGINE_GRACE_SECONDS = 5


@pytest.fixture
def host_binary():
    if "pulumi" in missing_tools():
        pytest.fail("the pulumi tools are not built: run `tools/build.sh pulumi` (make test builds them first)")
    return tools_dirs()["pulumi"] / "bin" / "pulumi-language-python"


def start_host(binary, sigint: signal.Handlers) -> subprocess.Popen:
    """The host in a process group of its own, as the engine starts it, with SIGINT's disposition
    `sigint` inherited; returns once it printed the port it serves."""

    def inherit() -> None:
        signal.signal(signal.SIGINT, sigint)

    host = subprocess.Popen([str(binary)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True, preexec_fn=inherit)
    port = host.stdout.readline().strip()
    assert port.isdigit(), f"the host printed {port!r}, not its port"
    return host


def ends_on_sigint(host: subprocess.Popen) -> bool:
    """Sends SIGINT to the host's process group as the engine does; whether it ended within the
    engine's grace (if not, it is killed, as the engine would kill it)."""
    os.killpg(host.pid, signal.SIGINT)
    try:
        host.wait(ENGINE_GRACE_SECONDS)
        return True
    except subprocess.TimeoutExpired:
        host.kill()
        host.wait()
        return False


@pytest.mark.parametrize("sigint", [signal.SIG_IGN, signal.SIG_DFL], ids=["inherited-ignored", "default"])
def test_the_host_ends_when_the_engine_interrupts_it_whatever_sigint_it_inherited(host_binary, sigint):
    host = start_host(host_binary, sigint)
    assert ends_on_sigint(host), (
        f"the language host still ran {ENGINE_GRACE_SECONDS}s after SIGINT (inherited: {sigint.name}): "
        "the engine waits that long for it in every preview and update")
    assert host.returncode in (130, -signal.SIGINT), f"the host ended with {host.returncode}, not as SIGINT ends it"
