"""cull_by_profile.py's view of the hub's API, between a culler and a hub answering as JupyterHub 5 does.

The hub here is a small tornado app with JupyterHub's paginated user list (the shapes of
jupyterhub/apihandlers/users.py): what is checked is the view's own work, which servers the
culler sees, that the next page goes through the view too, that a stop is passed on with the
culler's token and that nothing else is. test_profile_choices.py runs it with the real hub.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

from tornado import httpclient, web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from components.hub_config import cull_by_profile

PROFILES = [
    {"slug": "cpu", "display_name": "CPU", "default": True},
    {"slug": "gpu", "display_name": "GPU"},
    {"slug": "research", "display_name": "Research"},
]
DOCUMENT = {"traits": {"KubeSpawner": {"profile_list": PROFILES}}, "profileGroups": {"gpu": ["gpu-users"], "research": ["research"]}}


def user(name: str, groups: list[str], options: dict[str, Any] | None) -> dict[str, Any]:
    servers = {} if options is None else {"": {"name": "", "ready": True, "user_options": options}}
    return {"name": name, "groups": groups, "servers": servers}


PAGES = [
    [user("alice", ["gpu-users"], {"profile": "gpu", "gpus": "2"}), user("bob", [], {})],
    [user("carol", ["research"], {"profile": "research"}), user("dave", ["gpu-users"], None)],
]


def listening() -> tuple[socket.socket, str]:
    bound = bind_sockets(0, "127.0.0.1")[0]
    return bound, f"http://127.0.0.1:{bound.getsockname()[1]}"


def run(profiles: str, requests: list[tuple[str, str]]) -> tuple[list[tuple[int, Any]], list[tuple[str, str, str]]]:
    """Sends `requests` (method, path below the view's API) through a view for `profiles`;
    returns the answers and what reached the hub (method, path, Authorization)."""
    reached: list[tuple[str, str, str]] = []

    class Hub(web.RequestHandler):
        def prepare(self) -> None:
            reached.append((self.request.method, self.request.uri, self.request.headers.get("Authorization", "")))

        def get(self, path: str) -> None:
            if path == "/users":
                offset = int(self.get_argument("offset", "0"))
                following = {"url": f"{self.application.settings['api']}/users?offset=1"} if offset == 0 else None
                self.write({"items": PAGES[offset], "_pagination": {"offset": offset, "next": following}})
            else:
                self.write({"version": "5.5.0"})

        def delete(self, path: str) -> None:
            self.set_status(204)

    async def scenario():
        hub_socket, hub_address = listening()
        hub = web.Application([(r"/hub/api(.*)", Hub)], api=f"{hub_address}/hub/api")
        HTTPServer(hub).add_sockets([hub_socket])
        view_socket, view_address = listening()
        own = f"{view_address}/api"
        HTTPServer(cull_by_profile.view(hub.settings["api"], own, set(profiles.split(",")), DOCUMENT)).add_sockets([view_socket])
        client = httpclient.AsyncHTTPClient()
        answers = []
        for method, path in requests:
            url = f"{own}{path}"
            response = await client.fetch(url, method=method, headers={"Authorization": "token culler-token"},
                                          raise_error=False, allow_nonstandard_methods=True)
            is_json = response.headers.get("Content-Type", "").startswith("application/json")
            answers.append((response.code, json.loads(response.body) if is_json else response.body))
        return answers

    return asyncio.run(scenario()), reached


def servers(page: dict[str, Any]) -> dict[str, list[str]]:
    return {u["name"]: list(u["servers"]) for u in page["items"]}


def test_the_culler_sees_only_the_servers_of_its_profiles():
    (first,), _ = run("gpu", [("GET", "/users?state=ready")])
    status, page = first
    assert status == 200
    assert servers(page) == {"alice": [""], "bob": []}, "bob's server runs his default profile, cpu"


def test_the_next_page_goes_through_the_view():
    answers, reached = run("research,cpu", [("GET", "/users"), ("GET", "/users?offset=1")])
    (_, first), (_, second) = answers
    assert servers(first) == {"alice": [], "bob": [""]}
    assert servers(second) == {"carol": [""], "dave": []}
    assert first["_pagination"]["next"]["url"].endswith("/api/users?offset=1")
    assert not first["_pagination"]["next"]["url"].startswith(reached[0][1].split("/hub/api")[0] + "/hub/api")


def test_a_stop_is_passed_on_with_the_cullers_token_and_nothing_else_is():
    answers, reached = run("gpu", [("DELETE", "/users/alice/server"), ("DELETE", "/users/alice"),
                                   ("POST", "/users/alice/server"), ("GET", "/groups")])
    assert [status for status, _ in answers] == [204, 404, 405, 404]
    assert reached == [("DELETE", "/hub/api/users/alice/server", "token culler-token")]
