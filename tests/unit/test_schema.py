"""Every Kubernetes object of each example stack is valid against the targeted Kubernetes schema."""

from __future__ import annotations

import kubernetes_validate
import pytest

from vocab.versions import KUBERNETES_API_VERSION
from program import aks_stack, example_stack, run_program
from validation import Invalid, validate


def stacks():
    yield "dev", example_stack("dev"), ()
    # The dev stack runs Kueue; without it the job and the hub are declared otherwise.
    without_kueue = example_stack("dev")
    without_kueue["kueue"] = {**without_kueue["kueue"], "enabled": False}
    yield "dev-without-kueue", without_kueue, ()
    config, secrets = aks_stack()
    yield "aks", config, secrets


@pytest.mark.parametrize(("name", "config", "secrets"), list(stacks()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_object_is_schema_valid_strict(name, config, secrets):
    objects = run_program(config, secrets).kubernetes_objects()
    assert objects, f"the {name} stack declares no Kubernetes objects"
    for resource in objects:
        try:
            validate(resource.manifest())
        except Invalid as error:
            pytest.fail(f"{name}: {resource.type} {resource.name} is invalid: {error}")


def test_the_validator_rejects_unknown_fields():
    # Proves the check above can fail: strict mode refuses a field the API does not know.
    bad = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}, "spec": {"gpus": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_API_VERSION, strict=True)


@pytest.mark.parametrize(("name", "config", "secrets"), list(stacks()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_object_takes_back_hand_edited_fields(name, config, secrets):
    # Without the provider's patchForce switch, `pulumi up --refresh` after `kubectl scale` fails
    # with a Server-Side Apply conflict instead of restoring the declared replicas.
    for resource in run_program(config, secrets).kubernetes_objects():
        annotations = resource.manifest()["metadata"].get("annotations") or {}
        assert annotations.get("pulumi.com/patchForce") == "true", f"{name}: {resource.type} {resource.name}"
