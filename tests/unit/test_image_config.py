"""Images as typed config: upstream pins by default, one registry mirror for all, pull secrets on every pod."""

from __future__ import annotations

import json
from typing import Any

import pytest

from vocab.versions import JUPYTERHUB_HUB_IMAGE, TENSORFLOW_IMAGE
from program import aks_stack, dev_stack_with_upstream_images, run_program
from stacks import ConfigError, parse
from stacks.images import mirrored

MIRROR = "mirror.example.com:5000/upstream"


def pod_specs(deployment) -> dict[str, dict[str, Any]]:
    """Every pod spec the stack declares (workloads and TFJob replicas), by resource and replica."""
    specs = {}
    for resource in deployment.kubernetes_objects():
        spec = resource.manifest().get("spec") or {}
        if "template" in spec:
            specs[resource.name] = spec["template"]["spec"]
        for kind, replica in (spec.get("tfReplicaSpecs") or {}).items():
            specs[f"{resource.name}/{kind}"] = replica["template"]["spec"]
    return specs


def images_of(spec: dict[str, Any]) -> list[str]:
    return [c["image"] for c in spec.get("containers", []) + spec.get("initContainers", [])]


def hub_document(deployment) -> dict[str, Any]:
    config = deployment.named("jupyterhub-config").manifest()["data"]
    return json.loads(next(v for k, v in config.items() if k.endswith(".json")))


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("quay.io/jupyterhub/k8s-hub:9.9.9", f"{MIRROR}/jupyterhub/k8s-hub:9.9.9"),
        ("tensorflow/tensorflow:2.21.0-gpu", f"{MIRROR}/tensorflow/tensorflow:2.21.0-gpu"),
        ("ubuntu:24.04", f"{MIRROR}/library/ubuntu:24.04"),
        ("localhost:5000/a/b@sha256:" + "0" * 64, f"{MIRROR}/a/b@sha256:" + "0" * 64),
    ],
)
def test_a_mirror_keeps_path_and_tag(image, expected):
    assert mirrored(image, MIRROR) == expected


def test_defaults_are_the_upstream_pins():
    settings = parse({})
    assert settings.images.hub == JUPYTERHUB_HUB_IMAGE
    assert settings.images.tensorflow == TENSORFLOW_IMAGE
    assert settings.images.pull_secrets == ()


def test_every_image_of_the_aks_stack_comes_from_the_mirror_with_the_pull_secret():
    config, secrets = aks_stack()
    config["mnist"] = {**config["mnist"], "image": {"reference": "registry.example.com/trainer:1.0"}}
    config["images"] = {"registry": MIRROR, "pullSecrets": ["regcred"]}
    deployment = run_program(config, secrets)
    specs = pod_specs(deployment)
    assert {"jupyterhub-hub", "jupyterhub-proxy", "training-operator-deployment", "mlplatform-nvidia-device-plugin"} <= set(specs)
    assert any("/Chief" in name for name in specs), "the TFJob's replicas are among the pod specs"
    for name, spec in specs.items():
        for image in images_of(spec):
            assert image.startswith(MIRROR + "/"), f"{name} pulls {image} from elsewhere"
        assert spec.get("imagePullSecrets") == [{"name": "regcred"}], name
    spawner = hub_document(deployment)["traits"]["KubeSpawner"]
    assert spawner["image_pull_secrets"] == ["regcred"]
    profile_images = [p["kubespawner_override"]["image"] for p in spawner["profile_list"]]
    assert profile_images and all(i.startswith(MIRROR + "/jupyter/") for i in profile_images), profile_images


def test_an_override_replaces_one_image_only():
    config = dev_stack_with_upstream_images({"hub": "registry.example.com/hub:5.5.0-custom"})
    specs = pod_specs(run_program(config))
    assert images_of(specs["jupyterhub-hub"]) == ["registry.example.com/hub:5.5.0-custom"]
    assert images_of(specs["jupyterhub-proxy"])[0].startswith("quay.io/jupyterhub/configurable-http-proxy:")


@pytest.mark.parametrize(
    ("images", "key", "words"),
    [
        ({"registry": "https://mirror.example.com"}, "mlplatform:images.registry", "registry host with an optional path"),
        ({"registry": "mirror"}, "mlplatform:images.registry", "registry host"),
        ({"registry": "mirror.example.com/Upper"}, "mlplatform:images.registry", "registry host"),
        ({"hub": "quay.io/jupyterhub/k8s-hub"}, "mlplatform:images.hub", "pinned"),
        ({"tensorflowGpu": "tensorflow/tensorflow:latest"}, "mlplatform:images.tensorflowGpu", "not :latest"),
        ({"pullSecrets": ["Reg_Cred"]}, "mlplatform:images.pullSecrets[0]", "DNS-1035"),
        ({"tensorbord": "x:1"}, "mlplatform:images.tensorbord", "unknown key; allowed: registry, local, pullSecrets, hub"),
    ],
)
def test_bad_image_config_names_the_key(images, key, words):
    with pytest.raises(ConfigError) as caught:
        parse({"images": images})
    assert any(line.startswith(key) and words in line for line in str(caught.value).splitlines()), str(caught.value)


def test_local_images_and_a_mirror_exclude_each_other():
    with pytest.raises(ConfigError, match=r"^mlplatform:images.registry: set either images.registry or images.local"):
        parse({"images": {"local": True, "registry": MIRROR}})
