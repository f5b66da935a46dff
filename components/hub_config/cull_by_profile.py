"""jupyterhub-idle-culler for the servers of some profiles only: one culler per culling policy.

jupyterhub-idle-culler 1.4 has one `--timeout` and `--max-age` per process and nothing that
tells servers apart (its #45 and #25; its own code asks you to edit it for that). So each policy
runs the culler unchanged, configured with the policy's timeout and max age, but pointed at this
process instead of the hub: a view of the hub's REST API in which each user's `servers` holds
only the servers of this policy's profiles (a server's profile is its `user_options`' or, when it
named none, the user's default). Every request is passed on to the hub with the culler's own
token, so the culler can do exactly what its role lets it do; this adds no authority. It answers
only what the culler asks: the API's root, the user list, and stopping a server.

Run by the hub as a managed service (jupyterhub_config.py): `python cull_by_profile.py
--document=<the hub's document> --profiles=<slug,...> -- <jupyterhub-idle-culler arguments>`.
The hub image has no mlplatform in it: this imports the culler, tornado and hub_profiles.py, which
it loads from beside itself.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import jupyterhub_idle_culler
from tornado import httpclient, web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

_spec = importlib.util.spec_from_file_location("hub_profiles", Path(__file__).with_name("hub_profiles.py"))
hub_profiles = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hub_profiles)

# The requests jupyterhub-idle-culler makes (without --cull-users): its stops.
_STOP = re.compile(r"^/users/[^/]+/(server|servers/[^/]+)$")


class HubView(web.RequestHandler):
    def initialize(self, hub_api: str, own_api: str, profiles: set[str], document: dict[str, Any]) -> None:
        self.hub_api = hub_api
        self.own_api = own_api
        self.profiles = profiles
        self.profile_list = document["traits"]["KubeSpawner"]["profile_list"]
        self.profile_groups = document["profileGroups"]

    async def _pass_on(self, path: str) -> httpclient.HTTPResponse:
        query = f"?{self.request.query}" if self.request.query else ""
        headers = {k: v for k in ("Authorization", "Accept") if (v := self.request.headers.get(k))}
        return await httpclient.AsyncHTTPClient().fetch(
            f"{self.hub_api}{path}{query}", method=self.request.method, headers=headers, raise_error=False
        )

    def _answer(self, response: httpclient.HTTPResponse, body: bytes | None = None) -> None:
        self.set_status(response.code)
        if "Content-Type" in response.headers:
            self.set_header("Content-Type", response.headers["Content-Type"])
        # A 204 (a server stopped) has no body, and tornado refuses to send one with it.
        self.finish(None if response.code in (204, 304) else response.body if body is None else body)

    def _mine(self, user: dict[str, Any]) -> dict[str, Any]:
        offered = hub_profiles.offered(self.profile_list, self.profile_groups, user.get("groups", []))
        servers = user.get("servers", {})
        kept = {
            name: server
            for name, server in servers.items()
            if hub_profiles.server_profile(server.get("user_options"), offered) in self.profiles
        }
        return {**user, "servers": kept}

    async def get(self, path: str) -> None:
        if path not in ("", "/", "/users"):
            raise web.HTTPError(404)
        response = await self._pass_on(path)
        if path != "/users" or response.code != 200:
            return self._answer(response)
        model = json.loads(response.body)
        if isinstance(model, list):
            model = [self._mine(user) for user in model]
        else:
            model["items"] = [self._mine(user) for user in model["items"]]
            following = (model.get("_pagination") or {}).get("next")
            if following and following.get("url", "").startswith(self.hub_api):
                # The next page through this view too, not past it.
                following["url"] = self.own_api + following["url"][len(self.hub_api) :]
        self._answer(response, json.dumps(model).encode())

    async def delete(self, path: str) -> None:
        if not _STOP.match(path):
            raise web.HTTPError(404)
        self._answer(await self._pass_on(path))


def view(hub_api: str, own_api: str, profiles: set[str], document: dict[str, Any]) -> web.Application:
    """The view, answering at `own_api`, of the hub's API at `hub_api`, for the servers of `profiles`."""
    settings = {"hub_api": hub_api, "own_api": own_api, "profiles": profiles, "document": document}
    return web.Application([(r"/api(.*)", HubView, settings)])


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--document", required=True, type=Path, help="the hub's configuration document")
    parser.add_argument("--profiles", required=True, help="the slugs of the profiles whose servers the culler sees")
    parser.add_argument("culler_args", nargs=argparse.REMAINDER, help="after --: jupyterhub-idle-culler's arguments")
    args = parser.parse_args(argv)
    culler_args = args.culler_args[1:] if args.culler_args[:1] == ["--"] else args.culler_args
    hub_api = os.environ["JUPYTERHUB_API_URL"].rstrip("/")

    listening = bind_sockets(0, "127.0.0.1")[0]
    own_api = f"http://127.0.0.1:{listening.getsockname()[1]}/api"
    app = view(hub_api, own_api, set(args.profiles.split(",")), json.loads(args.document.read_text()))
    HTTPServer(app).add_sockets([listening])
    # The culler runs on the same event loop, which its main() starts.
    sys.argv = ["jupyterhub-idle-culler", f"--url={own_api}", *culler_args]
    jupyterhub_idle_culler.main()


if __name__ == "__main__":
    main(sys.argv[1:])
