"""The hub's configuration file, mounted into the k8s-hub image beside its rendered document.

Everything the platform decides about the hub is data in the document (mlplatform-hub.json,
rendered by components/hub_config/document.py from the stack's settings). This file loads it,
puts its own directory on the import path (native sign-in's authenticator, guarded_native.py,
lies beside it) and adds the things that cannot be data:
- secrets, from environment variables that Kubernetes fills from Secrets (never in the ConfigMap);
- hub-managed services, run by this hub's own interpreter, which is the one that has them installed;
- the per-user profile rules (hub_profiles.py, beside this file): the profiles a user's groups
  offer them, and the refusal of a spawn request for anything the user's form does not offer;
- the owner every user pod gets (the hub's ServiceAccount, read from the API when the pod is made),
  so that deleting the stack stops the servers and a hub restart does not;
- shorter sleeps in the waits of a spawn, which no setting reaches (spawn_waits.py, beside this file).
It must run with only JupyterHub and its plugins installed: it imports nothing from mlplatform.
"""

import importlib.util
import json
import os
import sys
from pathlib import Path

from tornado import web
from traitlets.config import Config

c = get_config()  # noqa: F821 (provided by traitlets when it executes this file)
sys.path.insert(0, str(Path(__file__).parent))

_document_path = Path(os.environ.get("MLPLATFORM_HUB_CONFIG", Path(__file__).with_name("mlplatform-hub.json")))
_document = json.loads(_document_path.read_text())

c.merge(Config(_document["traits"]))

for _section, _traits in _document["secretEnv"].items():
    for _trait, _variable in _traits.items():
        _value = os.environ.get(_variable)
        # A hub started without its secrets would make up its own and then fail in confusing ways
        # (a proxy it may not talk to, sessions lost on restart): refuse to start instead.
        if not _value:
            raise RuntimeError(f"{_section}.{_trait}: environment variable {_variable} is not set")
        c[_section][_trait] = _value

_here = Path(__file__).parent
_spec = importlib.util.spec_from_file_location("hub_profiles", _here / "hub_profiles.py")
_profiles = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_profiles)
_profile_list = _document["traits"]["KubeSpawner"]["profile_list"]
_profile_groups = _document["profileGroups"]


def _offered_to(spawner):
    """The profiles of `spawner`'s user: KubeSpawner's profile_list, for the form and for starting."""
    return _profiles.offered(_profile_list, _profile_groups, [group.name for group in spawner.user.groups])


def _refuse_unoffered(spawner, user_options):
    problem = _profiles.refusal(user_options, _offered_to(spawner))
    if problem:
        # The user's mistake, not a sign of a broken hub: JupyterHub 5 counts every failed spawn
        # toward Spawner.consecutive_failure_limit and exits at it, so that any user could restart
        # the hub with a few such requests. Take this one out of the count it is about to join
        # (the handler's settings["failure_count"], which the spawn's done-callback raises by one).
        handler = getattr(spawner, "handler", None)
        if handler is not None:
            handler.settings["failure_count"] = handler.settings.get("failure_count", 0) - 1
        raise web.HTTPError(400, problem)


if _profile_groups:
    c.KubeSpawner.profile_list = _offered_to
c.KubeSpawner.apply_user_options = _refuse_unoffered


def _service_command(service):
    if "script" in service:
        # A script beside this file (the culler's per-profile view), told where the document is.
        return [sys.executable, str(_here / service["script"]), f"--document={_document_path}", *service["args"]]
    return [sys.executable, "-m", service["module"], *service["args"]]


c.JupyterHub.services = [
    {"name": _service["name"], "command": _service_command(_service)} for _service in _document["managedServices"]
]

_owner = _document["userPodOwner"]


async def _owned_by_the_hub_account(spawner, pod):
    """The pod with the hub's ServiceAccount as its owner (its uid read now: an owner reference
    names one object, and the account is the stack's)."""
    from kubernetes_asyncio.client.models import V1OwnerReference

    account = await spawner.api.read_namespaced_service_account(_owner["name"], spawner.namespace)
    owner = V1OwnerReference(
        api_version=_owner["apiVersion"], kind=_owner["kind"], name=_owner["name"], uid=account.metadata.uid,
        block_owner_deletion=False,
    )
    pod.metadata.owner_references = [*(pod.metadata.owner_references or []), owner]
    return pod


c.KubeSpawner.modify_pod_hook = _owned_by_the_hub_account

import spawn_waits  # noqa: E402 (beside this file, on the import path only from here on)

spawn_waits.install()
