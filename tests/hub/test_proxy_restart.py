"""A restarted proxy gets its routes back from the hub within a minute (issue 24, item 3).

The dev stack's hub (its ConfigMap's files, default culling settings) and configurable-http-proxy
run on this machine as in test_browser.py. A user's server runs (the stand-in process) and answers
through the proxy; the proxy is stopped and a new one started on the same ports, empty, as a new
proxy pod starts; the hub's route check (`last_activity_interval`, every 60 s as Zero to
JupyterHub; JupyterHub's default is 300 s) must put the user's route back within that time.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from components.hub_config import document as hub_config
from program import example_stack
from local_hub import local_hub

USERNAME = "admin"  # the dev stack's adminUsers is [admin]; its account is made at the hub's start
STANDIN_ANSWER = f"Stand-in notebook server for {USERNAME}"
# A new proxy's first answer and the hub's next check, on a loaded machine.
SLACK = 15


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None


def request(url: str, context: ssl.SSLContext, method: str = "GET", token: str | None = None, body: Any = None) -> tuple[int, str]:
    headers = {"Authorization": f"token {token}"} if token else {}
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), NoRedirect())
    try:
        with opener.open(urllib.request.Request(url, data=data, method=method, headers=headers), timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except OSError as error:  # refused while no proxy listens
        return 0, str(error)


def test_a_new_proxy_gets_the_running_servers_route_within_a_minute(tmp_path):
    config = example_stack("dev")
    assert config["jupyterhub"].get("cullIdleSeconds") is None, "the dev stack should cull at the default timeout"
    with local_hub(config, tmp_path) as running:
        base, trusted, rendered = running.base_url, running.trusted, running.rendered
        # The first admin, whose password the stack generated, starts a server through the API.
        password = rendered.environment[hub_config.FIRST_ADMIN_PASSWORD_ENV]
        status, answer = request(f"{base}/hub/api/users/{USERNAME}/tokens", trusted, "POST",
                                 body={"note": "proxy restart", "auth": {"username": USERNAME, "password": password}})
        assert status in (200, 201), f"a token by password: HTTP {status}: {answer}"
        token = json.loads(answer)["token"]
        status, answer = request(f"{base}/hub/api/users/{USERNAME}/server", trusted, "POST", token, {"profile": "tensorflow-cpu"})
        assert status in (201, 202), f"the server's start: HTTP {status}: {answer}"

        def answers() -> bool:
            status, text = request(f"{base}/user/{USERNAME}/api/status", trusted, token=token)
            return status == 200 and text.startswith(STANDIN_ANSWER)

        deadline = time.monotonic() + 60
        while not answers():
            assert time.monotonic() < deadline, f"the server never answered through the proxy:\n{(tmp_path / 'hub.log').read_text()[-3000:]}"
            time.sleep(0.5)

        # The proxy pod deleted: a new, empty proxy on the same addresses.
        running.stop_proxy()
        assert not answers()
        running.start_proxy("proxy-2")
        started = time.monotonic()
        assert not answers(), "the new proxy had the user's route before the hub's check"
        deadline = started + hub_config.ROUTE_CHECK_SECONDS + SLACK
        while not answers():
            assert time.monotonic() < deadline, (
                f"the user's route was not back {hub_config.ROUTE_CHECK_SECONDS + SLACK} s after the new proxy started:\n"
                f"{(tmp_path / 'hub.log').read_text()[-3000:]}"
            )
            time.sleep(0.5)
        print(f"route back {time.monotonic() - started:.1f} s after the new proxy answered")
