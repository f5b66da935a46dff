"""A REST and browser client for the session's hub through a port-forward to proxy-public:443.

Shared by the real-node tests that talk to a deployed hub (test_survives_restarts.py,
test_hub_storm.py, test_upgrade_rehearsal.py) and by `make bench-hub` (bench/bench_hub.py).
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from real_cluster import RealCluster, wait_for

NAMESPACE = "jupyterhub"
# The statuses the proxy answers itself when it cannot reach the hub or a server.
PROXY_ERROR_STATUSES = (502, 503, 504)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None


@dataclass
class Client:
    """The hub through a port-forward to proxy-public:443, with a browser's cookie jar."""

    real: RealCluster
    context: ssl.SSLContext
    port: int = 0
    forward: subprocess.Popen | None = None
    cookies: http.cookiejar.CookieJar = field(default_factory=http.cookiejar.CookieJar)
    # Seconds during which `open` sends a request again that the proxy answered 503 (it found no
    # hub to send it to, so the hub never saw it). 0: a 503 is the answer. Only for a hub known to
    # leave its Service when busy (the upgrade rehearsal's earlier commit).
    hub_away_patience: float = 0.0

    def connect(self) -> None:
        """A port-forward to proxy-public, new each time: kubectl forwards to one pod, and a
        deleted proxy pod ends it."""
        self.close()
        self.forward = subprocess.Popen(
            [str(self.real.kubectl_bin), "--kubeconfig", str(self.real.kubeconfig), "port-forward", "-n", NAMESPACE,
             "svc/proxy-public", ":443"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.forward.stdout.readline()
        found = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert found, f"kubectl port-forward said {line!r}"
        self.port = int(found.group(1))

    def close(self) -> None:
        if self.forward is not None:
            self.forward.terminate()
            self.forward.wait(10)
            self.forward = None

    def open(self, method: str, path: str, token: str | None = None, body: Any = None, form: dict[str, str] | None = None,
             follow: bool = True, timeout: float = 30, browser: bool = True) -> tuple[int, str, str]:
        """(status, final path, text); redirects followed unless `follow` is False; with `browser`
        the session's cookies are sent and kept."""
        handlers: list[Any] = [urllib.request.HTTPSHandler(context=self.context)]
        if browser:
            handlers.append(urllib.request.HTTPCookieProcessor(self.cookies))
        if not follow:
            handlers.append(NoRedirect())
        opener = urllib.request.build_opener(*handlers)
        headers = {}
        data = None
        if token:
            headers["Authorization"] = f"token {token}"
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
        request = urllib.request.Request(f"https://localhost:{self.port}{path}", data=data, method=method, headers=headers)
        deadline = time.monotonic() + self.hub_away_patience
        while True:
            try:
                with opener.open(request, timeout=timeout) as response:
                    return response.status, urllib.parse.urlparse(response.url).path, response.read().decode()
            except urllib.error.HTTPError as error:
                answer = error.code, urllib.parse.urlparse(error.url or path).path, error.read().decode(errors="replace")
            if answer[0] != 503 or time.monotonic() > deadline:
                return answer
            time.sleep(1)

    def api(self, method: str, path: str, token: str, body: Any = None, ok: tuple[int, ...] = (200,)) -> Any:
        status, _, text = self.open(method, f"/hub/api{path}", token, body, browser=False)
        assert status in ok, f"{method} /hub/api{path}: HTTP {status}: {text[:500]}{self.proxy_errors(status)}"
        return json.loads(text) if text else None

    def proxy_errors(self, status: int) -> str:
        """For the proxy's own answers (it could not reach the hub), its last errors, which say why."""
        if status not in PROXY_ERROR_STATUSES:
            return ""
        log = self.real.kubectl("logs", "-n", NAMESPACE, "-l", "app.kubernetes.io/component=proxy", "--tail=200",
                                check=False).stdout
        return "\nthe proxy's last errors:\n" + "\n".join([line for line in log.splitlines() if "error" in line][-10:])

    def healthy(self) -> bool:
        try:
            return self.open("GET", "/hub/health", timeout=5)[0] == 200
        except OSError:
            return False

    def xsrf(self, path: str) -> str:
        """The form token of PATH's page."""
        status, _, page = self.open("GET", path)
        found = re.search(r'name="_xsrf"\s+value="([^"]+)"', page)
        assert status == 200 and found, f"no _xsrf in {path}: HTTP {status}{self.proxy_errors(status)}"
        return found.group(1)


def component_pod(real: RealCluster, component: str) -> dict[str, Any] | None:
    pods = real.get("pods", "-n", NAMESPACE, "-l", f"app.kubernetes.io/component={component}")["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    return live[0] if len(live) == 1 else None


def server_answers(client: Client, user: str, token: str) -> bool:
    """The user's server answers its REST API through the proxy (not the hub, which answers a
    missing route)."""
    try:
        status, _, text = client.open("GET", f"/user/{user}/api/status", token, follow=False, timeout=10, browser=False)
    except OSError:
        return False
    return status == 200 and "started" in json.loads(text)


def wait_for_new_hub(client: Client, old: dict[str, Any], timeout: float) -> float:
    """Seconds until the hub is back: the old pod gone, a new one ready, and /hub/health answering
    through the proxy. Not /hub/health alone: until the old pod is gone it can still answer
    (seen: health answered, then the proxy's 503s, `read ECONNRESET` and `connect ECONNREFUSED`
    to the hub's Service, for seconds, until the new pod was ready)."""
    start = time.monotonic()
    name, uid = old["metadata"]["name"], old["metadata"]["uid"]

    def old_hub_gone() -> bool:
        found = client.real.kubectl("get", "pod", "-n", NAMESPACE, name, "-o", "jsonpath={.metadata.uid}", check=False)
        if found.returncode != 0:
            assert "NotFound" in found.stderr, f"kubectl get pod {name}: {found.stderr}"
            return True
        return found.stdout.strip() != uid

    wait_for(old_hub_gone, timeout, f"the old hub pod {name} gone")

    def new_hub_ready() -> bool:
        new = component_pod(client.real, "hub")
        statuses = (new or {}).get("status", {}).get("containerStatuses") or []
        return bool(new) and new["metadata"]["uid"] != uid and bool(statuses) and all(c.get("ready") for c in statuses)

    wait_for(new_hub_ready, timeout, "a new hub pod ready")
    wait_for(client.healthy, timeout, "/hub/health after the hub's restart", interval=0.5)
    return time.monotonic() - start
