"""KubeSpawner with the user's pod replaced by a local process, for the browser test.

Everything up to the pod is KubeSpawner's own: the options form, reading the form, applying the
chosen profile and building the pod manifest. Instead of sending the manifest to a cluster, it is
written to $STANDIN_REPORT_DIR/<user>.json, and a small local web server stands in for the user's
notebook server, so the hub and the proxy route the browser to it as they would to a pod.

For the tests of the hub's limits, a pod can be slow or fail: the users named (comma-separated) in
$STANDIN_SLOW_USERS take $STANDIN_SLOW_SECONDS to start, as a pod pulling its image would; those
in $STANDIN_FAILING_USERS fail to start, as a pod that crashes; those in $STANDIN_SILENT_USERS
start, but their server never answers HTTP, as one that hangs.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path

from jupyterhub.spawner import Spawner
from kubespawner import KubeSpawner

SERVER = Path(__file__).with_name("standin_server.py")


def _users(variable: str) -> set[str]:
    return {name for name in os.environ.get(variable, "").split(",") if name}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class StandInKubeSpawner(KubeSpawner):
    _process: asyncio.subprocess.Process | None = None
    _silent = False  # started, but nothing listens at its address

    # KubeSpawner reports progress from pod events, which a local process has none of.
    progress = Spawner.progress

    async def start(self):
        await self.load_user_options()
        pod = await self.get_pod_manifest()
        report = Path(os.environ["STANDIN_REPORT_DIR"]) / f"{self.user.name}.json"
        report.write_text(json.dumps(self.api.api_client.sanitize_for_serialization(pod), indent=2))
        if self.user.name in _users("STANDIN_SLOW_USERS"):
            await asyncio.sleep(float(os.environ["STANDIN_SLOW_SECONDS"]))
        if self.user.name in _users("STANDIN_FAILING_USERS"):
            raise RuntimeError(f"the stand-in pod of {self.user.name} failed to start")
        port = _free_port()
        if self.user.name in _users("STANDIN_SILENT_USERS"):
            self._silent = True
            return f"http://127.0.0.1:{port}"
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, str(SERVER), str(port), self.user.name, self.image
        )
        return f"http://127.0.0.1:{port}"

    async def poll(self):
        if self._silent:
            return None
        if self._process is None:
            return 0
        return self._process.returncode

    async def stop(self, now=False):
        self._silent = False
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            await self._process.wait()
