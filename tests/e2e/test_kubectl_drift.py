"""Drift heals: what someone changed by hand with kubectl, `pulumi up --refresh` puts back.

Hand edits make kubectl the owner of the fields it touched; without forcing the apply, Server-Side
Apply refuses to take them back. Runs on the session deployment of `make up` (after
test_job_reconciled.py, which must see the job's first pods, and before test_make_up.py, file
order) and leaves it as declared.
"""

from __future__ import annotations

import shlex
from typing import Any

from components.mnist import TENSORBOARD_PORT, code_config_map
from components.trainer_image import trainer_sources
from local_stack import LocalStack

NAMESPACE = "mnist"
DEPLOYMENT = "tensorboard"
SERVICE = "tensorboard"


def config_map(local: LocalStack) -> str:
    from stacks import parse

    return code_config_map(parse({k.split(":", 1)[1]: v for k, v in local.config().items()}).mnist)


def edit(local: LocalStack, kind: str, name: str, sed: str) -> None:
    """`kubectl edit` with sed as the editor: what a person does, under kubectl's field manager."""
    result = local.kubectl("edit", kind, name, "-n", NAMESPACE, env={"KUBE_EDITOR": f"sed -i {shlex.quote(sed)}"})
    assert "edited" in result.output, result.output


def live_state(local: LocalStack) -> dict[str, Any]:
    deployment = local.kubectl_json("get", "deployment", DEPLOYMENT, "-n", NAMESPACE)
    service = local.kubectl_json("get", "service", SERVICE, "-n", NAMESPACE)
    code = local.kubectl_json("get", "configmap", config_map(local), "-n", NAMESPACE)
    return {
        "replicas": deployment["spec"]["replicas"],
        "ports": [(p["name"], p["port"]) for p in service["spec"]["ports"]],
        "component": code["metadata"]["labels"][COMPONENT],
        "main": code["data"]["__main__.py"],
    }


COMPONENT = "app.kubernetes.io/component"
DECLARED = {
    "replicas": 1,
    "ports": [("http", TENSORBOARD_PORT)],
    "component": "trainer-code",
    "main": trainer_sources()["__main__.py"],
}


def heal(local: LocalStack) -> None:
    up = local.pulumi("up", "--refresh", "--yes", "--skip-preview", check=False)
    assert up.returncode == 0, f"`pulumi up --refresh` did not restore the declared state:\n{up.output[-4000:]}"
    assert live_state(local) == DECLARED
    preview = local.pulumi("preview", "--refresh", "--expect-no-changes", check=False)
    assert preview.returncode == 0, f"changes left after healing:\n{preview.output[-4000:]}"


def test_hand_edits_are_restored_by_up_refresh(local: LocalStack) -> None:
    assert live_state(local) == DECLARED
    local.kubectl("scale", "deployment", DEPLOYMENT, "-n", NAMESPACE, "--replicas=3")
    edit(local, "service", SERVICE, "s/name: http$/name: web/")
    edit(local, "configmap", config_map(local), f"s|{COMPONENT}: trainer-code|{COMPONENT}: edited|")
    drifted = live_state(local)
    assert (drifted["replicas"], drifted["ports"], drifted["component"]) == (3, [("web", TENSORBOARD_PORT)], "edited"), drifted
    heal(local)


def test_deleted_objects_are_recreated_by_up_refresh(local: LocalStack) -> None:
    for kind, name in (("deployment", DEPLOYMENT), ("service", SERVICE), ("configmap", config_map(local))):
        local.kubectl("delete", kind, name, "-n", NAMESPACE, "--wait=true")
    heal(local)
