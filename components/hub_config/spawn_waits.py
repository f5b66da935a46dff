"""How often the hub looks while a user's server starts: JupyterHub's two waits of a spawn made brisk.

Shipped in the hub's ConfigMap beside jupyterhub_config.py, which installs it; it imports only
JupyterHub and KubeSpawner (the hub image has no mlplatform in it).

A spawn waits twice, both times with `jupyterhub.utils.exponential_backoff` at its defaults:
KubeSpawner for its pod to run (`kubespawner.spawner`, which also retries its API calls and waits
for a stopped pod to go with it), then the hub for the server to answer HTTP (`jupyterhub.utils.
wait_for_http_server`). Each sleep is drawn at random below a limit that starts at 0.2 s and
doubles up to 5 s, so the longer a step takes the later it is noticed: on the real nodes a server
that listened 7.7 s after Start was reported ready at 12.4 s (`make bench-spawn`, its first spawn,
docs/benchmarks.md). Neither project has a setting for these sleeps. So the two modules' own name
for the function is pointed at the same function with a shorter start and limit. What each wait
checks is cheap: a lookup in KubeSpawner's pod cache, one HTTP request to the server's pod.
"""

from __future__ import annotations

import functools

import jupyterhub.utils
import kubespawner.spawner

FIRST_SLEEP_LIMIT_SECONDS = 0.05  # JupyterHub's default: 0.2
SLEEP_LIMIT_SECONDS = 0.5  # JupyterHub's default: 5
MODULES = (jupyterhub.utils, kubespawner.spawner)


def brisk(backoff):
    """`backoff` (exponential_backoff) with the limits above, unless a caller gives its own."""
    faster = functools.partial(backoff, start_wait=FIRST_SLEEP_LIMIT_SECONDS, max_wait=SLEEP_LIMIT_SECONDS)
    faster.brisk = True
    return faster


def install() -> None:
    """Point each module's name for exponential_backoff at the brisk version (once: the config file
    may be loaded more than once in a process, as the hub's tests do)."""
    for module in MODULES:
        if not getattr(module.exponential_backoff, "brisk", False):
            module.exponential_backoff = brisk(module.exponential_backoff)
