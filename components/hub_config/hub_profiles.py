"""Which profiles a user is offered, and whether a spawn request asks only for what is offered.

Shipped in the hub's ConfigMap beside jupyterhub_config.py, which loads it, as does
cull_by_profile.py. The hub image has no mlplatform in it: this imports only the standard library.

KubeSpawner 7.0 has no group-limited profiles (kubespawner #889): the config file gives it a
`profile_list` callable built on `offered`, so the spawn form and KubeSpawner's own profile lookup
both see only the user's profiles. KubeSpawner does check that a requested profile exists, but
not that a requested choice does: an unknown choice fails late, with a KeyError, after the pre-spawn
hook. `refusal` is what the config file's `apply_user_options` hook answers with instead, an HTTP
400 before anything starts, for the form and the REST API alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Profile = Mapping[str, Any]


def offered(profile_list: list[Profile], profile_groups: Mapping[str, list[str]], user_groups: Iterable[str]) -> list[Profile]:
    """The profiles a member of `user_groups` may see and start, in config order: those limited to no
    group, and those limited to one of the user's."""
    mine = set(user_groups)
    return [p for p in profile_list if p["slug"] not in profile_groups or mine & set(profile_groups[p["slug"]])]


def default_slug(profiles: list[Profile]) -> str | None:
    """The profile KubeSpawner starts when a request names none: the default, else the first."""
    return next((p["slug"] for p in profiles if p.get("default")), profiles[0]["slug"] if profiles else None)


def server_profile(user_options: Mapping[str, Any] | None, profiles: list[Profile]) -> str | None:
    """The slug of the profile a server with `user_options` runs, among the user's `profiles`."""
    return (user_options or {}).get("profile") or default_slug(profiles)


def _listed(values: Iterable[str]) -> str:
    return ", ".join(repr(v) for v in values) or "none"


def refusal(user_options: Mapping[str, Any] | None, profiles: list[Profile]) -> str | None:
    """Why a spawn request's `user_options` asks for what the user's form does not offer, or None."""
    options = dict(user_options or {})
    slug = options.pop("profile", None)
    by_slug = {p["slug"]: p for p in profiles}
    if slug is not None and (not isinstance(slug, str) or slug not in by_slug):
        return f"profile {slug!r} is not offered to you; your profiles: {_listed(by_slug)}"
    profile = by_slug.get(slug or default_slug(profiles) or "")
    if profile is None:
        return "no profile is offered to you"
    offered_options = profile.get("profile_options", {})
    for name, value in options.items():
        option = offered_options.get(name)
        if option is None:
            return f"{name!r} is not an option of profile {profile['slug']!r}; its options: {_listed(offered_options)}"
        if not isinstance(value, str) or value not in option["choices"]:
            return f"{name} {value!r} is not offered by profile {profile['slug']!r}; its choices: {_listed(option['choices'])}"
    return None
