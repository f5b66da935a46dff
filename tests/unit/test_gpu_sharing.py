"""GPU sharing per pool (`nodePools[].gpuSharing`): NVIDIA's device plugin config on aks and
existing, what the workloads ask for, every preview error, and the simulated plugin's arithmetic."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from cluster.localcluster.gpuplugin import advertised, device_ids, plugin_args
from cluster.localcluster.settings import GpuSharing, NodeSettings, NodeSpec
from components.hub_config.document import DOCUMENT_NAME
from program import aks_stack, example_stack, run_program
from stacks import ConfigError, parse
from stacks.local_nodes import nodes

CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
DAEMON_SET = "kubernetes:apps/v1:DaemonSet"
CLUSTER_ROLE = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole"
CONFIG_LABEL = "nvidia.com/device-plugin.config"
SHARED = {"replicas": 4, "renameByDefault": True, "failRequestsGreaterThanOne": True}


def existing_with(sharing: dict[str, Any] | None, **mnist: Any) -> dict[str, Any]:
    """The dev stack on an existing cluster whose GPU pool (2 GPUs a node) shares them as `sharing` says."""
    config = example_stack("dev")
    # The dev GPU profile's choice of two GPUs, which a pool with failRequestsGreaterThanOne refuses.
    for profile in config["jupyterhub"]["profiles"]:
        profile.pop("gpuChoices", None)
    gpu: dict[str, Any] = {"name": "gpu", "gpusPerNode": 2, "labels": {"agentpool": "t4"}, "taints": ["sku=gpu:NoSchedule"]}
    if sharing is not None:
        gpu["gpuSharing"] = sharing
    config["cluster"] = {
        "provider": "existing",
        "kubeconfig": "~/.kube/config",
        "nodePools": [{"name": "cpu", "labels": {"agentpool": "cpu"}}, gpu],
    }
    config["mnist"]["storage"] = {"storageClass": "nfs-client"}
    config["mnist"].update(mnist)
    # The dev stack's GPU quota is its pool's four shares: here, what the pool advertises.
    for queue in config["kueue"]["clusterQueues"]:
        for quota in queue["quotas"]:
            if quota.get("gpus"):
                quota["gpus"] = 2 * (sharing or {}).get("replicas", 1)
    return config


def plugin_configs(deployment) -> dict[str, dict[str, Any]]:
    (configs,) = [r for r in deployment.of_type(CONFIG_MAP) if r.inputs["metadata"]["name"] == "nvidia-device-plugin-configs"]
    assert configs.inputs["metadata"]["namespace"] == "kube-system"
    return {name: yaml.safe_load(text) for name, text in configs.inputs["data"].items()}


def plugin_roles(deployment) -> list:
    return [r for r in deployment.of_type(CLUSTER_ROLE) if "device-plugin" in r.inputs["metadata"]["name"]]


def plugin_pod(deployment) -> dict[str, Any]:
    (plugin,) = deployment.of_type(DAEMON_SET)
    return plugin.inputs["spec"]["template"]["spec"]


# --- the device plugin's config ---------------------------------------------------------------------


def test_existing_cluster_gets_one_named_plugin_config_per_gpu_pool_in_nvidias_format():
    configs = plugin_configs(run_program(existing_with(SHARED)))
    assert configs["gpu"] == {
        "version": "v1",
        "sharing": {
            "timeSlicing": {
                "renameByDefault": True,
                "failRequestsGreaterThanOne": True,
                "resources": [{"name": "nvidia.com/gpu", "replicas": 4}],
            }
        },
    }
    # A node without the label gets whole GPUs, never a pool's sharing.
    assert configs["mlplatform.whole-gpus"] == {"version": "v1"}


def test_the_plugin_picks_its_nodes_config_by_the_label_through_nvidias_config_manager():
    deployment = run_program(existing_with(SHARED))
    pod = plugin_pod(deployment)
    init, = pod["initContainers"]
    sidecar, plugin = pod["containers"]
    for manager, oneshot in ((init, "true"), (sidecar, "false")):
        env = {e["name"]: e.get("value", e.get("valueFrom")) for e in manager["env"]}
        assert manager["command"] == ["config-manager"] and manager["image"] == plugin["image"]
        assert env["NODE_LABEL"] == CONFIG_LABEL and env["ONESHOT"] == oneshot
        assert env["NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
        assert env["CONFIG_FILE_DST"] == "/config/config.yaml" and env["DEFAULT_CONFIG"] == "mlplatform.whole-gpus"
    assert {"name": "CONFIG_FILE", "value": "/config/config.yaml"} in plugin["env"]
    assert pod["shareProcessNamespace"] is True, "the sidecar signals the plugin to reload a changed config"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["available-configs"]["configMap"] == {"name": "nvidia-device-plugin-configs"}
    assert pod["serviceAccountName"] == "nvidia-device-plugin"
    (role,) = plugin_roles(deployment)
    assert role.inputs["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]}], (
        "the config-manager reads its node's label and nothing else"
    )
    assert not deployment.of_type("kubernetes:core/v1:Node"), "an existing cluster's nodes are labelled by the team"


def test_a_changed_config_rolls_the_plugins_pods():
    def checksum(replicas: int) -> str:
        (plugin,) = run_program(existing_with({"replicas": replicas})).of_type(DAEMON_SET)
        return plugin.inputs["spec"]["template"]["metadata"]["annotations"]["mlplatform.dev/device-plugin-configs-sha256"]

    assert checksum(2) != checksum(3)


def test_without_sharing_the_plugin_has_no_config_and_no_access_to_nodes():
    deployment = run_program(existing_with(None))
    pod = plugin_pod(deployment)
    assert [c["name"] for c in pod["containers"]] == ["nvidia-device-plugin"] and "initContainers" not in pod
    assert not [r for r in deployment.of_type(CONFIG_MAP) if r.inputs["metadata"]["name"].startswith("nvidia")]
    assert not plugin_roles(deployment)


def test_aks_labels_each_gpu_pools_nodes_with_its_plugin_config():
    config, secrets = aks_stack()
    gpu = next(p for p in config["cluster"]["nodePools"] if p.get("gpusPerNode"))
    gpu["gpuSharing"] = {"replicas": 2}
    deployment = run_program(config, secrets)
    pools = {r.inputs["agentPoolName"]: r.inputs for r in deployment.of_type("azure-native:containerservice:AgentPool")}
    assert pools["gpu"]["nodeLabels"][CONFIG_LABEL] == "gpu"
    assert CONFIG_LABEL not in pools["cpu"]["nodeLabels"], "a CPU pool runs no device plugin"
    sharing = plugin_configs(deployment)["gpu"]["sharing"]["timeSlicing"]
    assert sharing["resources"] == [{"name": "nvidia.com/gpu", "replicas": 2}] and sharing["renameByDefault"] is False


# --- what the workloads ask for ---------------------------------------------------------------------


def test_profiles_and_tfjob_replicas_ask_for_the_renamed_shared_resource():
    deployment = run_program(existing_with(SHARED))
    (tfjob,) = deployment.of_type("kubernetes:kubeflow.org/v1:TFJob")
    worker = tfjob.inputs["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu.shared"] == "1"
    assert "nvidia.com/gpu" not in worker["resources"]["limits"]
    (hub_config,) = [r for r in deployment.of_type(CONFIG_MAP) if DOCUMENT_NAME in r.inputs.get("data", {})]
    profiles = json.loads(hub_config.inputs["data"][DOCUMENT_NAME])["traits"]["KubeSpawner"]["profile_list"]
    (gpu_profile,) = [p for p in profiles if "extra_resource_limits" in p["kubespawner_override"]]
    assert gpu_profile["kubespawner_override"]["extra_resource_limits"] == {"nvidia.com/gpu.shared": "1"}


def test_kwok_nodes_advertise_the_shares():
    config = example_stack("kwok")
    gpu = next(p for p in config["cluster"]["nodePools"] if p.get("gpusPerNode"))
    gpu.update(gpusPerNode=2, gpuSharing={"replicas": 3, "renameByDefault": True})
    node = next(r for r in run_program(config).of_type("kubernetes:core/v1:Node") if r.inputs["metadata"]["name"] == "gpu-0")
    capacity = json.loads(node.inputs["metadata"]["annotations"]["mlplatform.dev/capacity"])
    assert capacity["nvidia.com/gpu.shared"] == "6" and "nvidia.com/gpu" not in capacity


def test_shares_count_as_gpus_when_the_job_is_fitted_to_the_pool():
    # Two GPUs a node, time-sliced into four: four workers of one share each fit one node.
    config = existing_with({"replicas": 2}, replicas={"Chief": 1, "Worker": 4, "PS": 1}, gpus={"Worker": 1})
    config["cluster"]["nodePools"][1]["count"] = 1
    parse(config)
    config["mnist"]["replicas"]["Worker"] = 5
    with pytest.raises(ConfigError, match=r"mnist.gpus: the job asks for 5 GPUs .* which holds at most 4 .*"
                                          r"gpusPerNode 2 time-sliced into 4 nvidia.com/gpu"):
        parse(config)


# --- what the preview refuses ------------------------------------------------------------------------


def dev_pool_sharing(sharing: dict[str, Any], **changes: Any) -> dict[str, Any]:
    config = example_stack("dev")
    config["cluster"]["nodePools"][1]["gpuSharing"] = sharing
    for key, value in changes.items():
        config[key].update(value)
    return config


def two_gpu_profile() -> dict[str, Any]:
    return {"profiles": [*example_stack("dev")["jupyterhub"]["profiles"],
                         {"name": "Two GPUs", "image": "quay.io/jupyter/tensorflow-notebook:cuda-2025-12-01", "gpus": 2}]}


FAIL_ABOVE_ONE = {"replicas": 2, "failRequestsGreaterThanOne": True}
BAD_SHARING = [
    # (config, key the message must name, words it must contain)
    (dev_pool_sharing(FAIL_ABOVE_ONE, jupyterhub=two_gpu_profile()),
     f"mlplatform:jupyterhub.profiles[{len(example_stack('dev')['jupyterhub']['profiles'])}].gpus",
     "a pod gets at most 1 there (mlplatform:cluster.nodePools[1].gpuSharing.failRequestsGreaterThanOne is true"),
    (dev_pool_sharing(FAIL_ABOVE_ONE, mnist={"gpus": {"Worker": 2}}), "mlplatform:mnist.gpus.Worker",
     "2 shared GPUs asked for, but a pod gets at most 1 there"),
    (dev_pool_sharing({"replicas": 2, "renameByDefault": True}, mnist={"enabled": False},
                      jupyterhub={"profiles": example_stack("dev")["jupyterhub"]["profiles"][:1]}),
     "mlplatform:cluster.nodePools[1].gpuSharing.renameByDefault",
     "advertises its GPUs only as nvidia.com/gpu.shared, and no GPU profile"),
    (dev_pool_sharing({"replicas": 1}), "mlplatform:cluster.nodePools[1].gpuSharing.replicas", "1 must be >= 2"),
    (dev_pool_sharing({"replicas": 2, "rename": True}), "mlplatform:cluster.nodePools[1].gpuSharing.rename", "unknown key"),
    (dev_pool_sharing({"renameByDefault": True}), "mlplatform:cluster.nodePools[1].gpuSharing.replicas", "required"),
    ({"cluster": {"nodePools": [{"name": "cpu", "gpuSharing": {"replicas": 2}}]}}, "mlplatform:cluster.nodePools[0].gpuSharing",
     "the pool has no GPUs to share"),
    ({**existing_with({"replicas": 2}), "cluster": {**existing_with({"replicas": 2})["cluster"], "nvidiaDevicePlugin": False}},
     "mlplatform:cluster.nodePools[1].gpuSharing", "mlplatform:cluster.nvidiaDevicePlugin is false"),
]


@pytest.mark.parametrize(("config", "key", "words"), BAD_SHARING, ids=[f"{c[1]}-{i}" for i, c in enumerate(BAD_SHARING)])
def test_what_the_sharing_cannot_serve_is_refused_naming_the_key(config, key, words):
    with pytest.raises(ConfigError) as caught:
        parse(config)
    lines = str(caught.value).splitlines()
    assert any(line.startswith(key) and words in line for line in lines), f"expected {key!r} with {words!r} in: {lines}"


def test_a_request_for_whole_gpus_on_a_pool_that_advertises_only_shares_is_refused():
    cluster = parse(dev_pool_sharing({"replicas": 2, "renameByDefault": True})).cluster
    problem = cluster.gpu_request_problem("mlplatform:x.gpus", 1, "nvidia.com/gpu")
    assert problem == ("mlplatform:x.gpus: asks for nvidia.com/gpu, but node pool gpu advertises only nvidia.com/gpu.shared "
                       "(mlplatform:cluster.nodePools[1].gpuSharing.renameByDefault); ask for nvidia.com/gpu.shared")
    assert cluster.gpu_request_problem("mlplatform:x.gpus", 1, "nvidia.com/gpu.shared") is None
    assert cluster.gpu_request_problem("mlplatform:x.gpus", 4, "nvidia.com/gpu.shared", pool_name="gpu") is None


def test_the_dev_stack_time_slices_two_gpus_into_four():
    gpu = parse(example_stack("dev")).cluster.node_pools[1]
    assert (gpu.gpus_per_node, gpu.gpu_resource, gpu.gpus_advertised) == (2, "nvidia.com/gpu", 4)


# --- the simulated device plugin ---------------------------------------------------------------------


def test_simulated_gpus_are_named_simulated_and_shares_name_their_gpu():
    assert device_ids(2) == ["simulated-gpu-0", "simulated-gpu-1"]
    assert device_ids(2, 2) == ["simulated-gpu-0::0", "simulated-gpu-0::1", "simulated-gpu-1::0", "simulated-gpu-1::1"]


def test_the_simulated_plugin_advertises_what_nvidias_would_for_the_pool():
    whole = NodeSpec("n", gpus=2)
    assert advertised(whole) == ("nvidia.com/gpu", 2)
    assert plugin_args(whole) == ["--resource=nvidia.com/gpu", "--devices=simulated-gpu-0,simulated-gpu-1"]
    shared = NodeSpec("n", gpus=2, gpu_sharing=GpuSharing(3, "nvidia.com/gpu.shared", True))
    assert advertised(shared) == ("nvidia.com/gpu.shared", 6)
    args = plugin_args(shared)
    assert args[0] == "--resource=nvidia.com/gpu.shared" and args[-1] == "--fail-requests-greater-than-one"
    assert len(args[1].removeprefix("--devices=").split(",")) == 6


def test_the_real_nodes_get_the_pools_sharing_and_keep_it_in_node_json(tmp_path):
    config = dev_pool_sharing({"replicas": 2, "renameByDefault": True, "failRequestsGreaterThanOne": True})
    wanted = nodes(parse({"cluster": config["cluster"]}).cluster)
    gpu = next(n for n in wanted if n["gpus"])
    assert gpu["gpuSharing"] == {"replicas": 2, "resource": "nvidia.com/gpu.shared", "failRequestsGreaterThanOne": True}
    spec = NodeSpec.from_dict(gpu)
    assert spec.gpu_sharing == GpuSharing(2, "nvidia.com/gpu.shared", True)
    settings = NodeSettings(spec=spec, index=0, state_dir=tmp_path, admin_kubeconfig=tmp_path / "k", api_port=1,
                            cgroup_root="/c", netns="n", node_ip="10.243.0.2", pod_subnet="10.244.0.0/24")
    settings.save()
    assert NodeSettings.load(tmp_path).spec == spec
    assert next(n for n in wanted if not n["gpus"])["gpuSharing"] is None


def test_the_device_plugins_objects_are_valid_kubernetes_objects():
    from validation import validate

    deployment = run_program(existing_with(SHARED))
    checked = [r.manifest() for r in deployment.kubernetes_objects()
               if r.type in (CONFIG_MAP, DAEMON_SET, CLUSTER_ROLE) and "nvidia" in r.inputs["metadata"]["name"]]
    assert len(checked) == 3, [m["metadata"]["name"] for m in checked]
    for manifest in checked:
        validate(manifest)


# --- with the spawn form's GPU choices (gpuChoices, gpuTypes) ----------------------------------------


def gpu_profile_with(**fields: Any) -> dict[str, Any]:
    profile = {"name": "GPU", "image": "quay.io/jupyter/tensorflow-notebook:cuda-2025-12-01", "gpus": 1, **fields}
    return {"profiles": [example_stack("dev")["jupyterhub"]["profiles"][0], profile]}


def typed_pools(t4_sharing: dict[str, Any] | None, a100_sharing: dict[str, Any] | None = None) -> dict[str, Any]:
    pools: list[dict[str, Any]] = [{"name": "cpu"}]
    for name, gpu_type, sharing in (("t4", "T4", t4_sharing), ("a100", "A100", a100_sharing)):
        pool: dict[str, Any] = {"name": name, "gpusPerNode": 2, "gpuType": gpu_type, "taints": ["sku=gpu:NoSchedule"]}
        if sharing:
            pool["gpuSharing"] = sharing
        pools.append(pool)
    return {"provider": "kwok", "nodePools": pools}


def test_a_gpu_count_choice_the_shared_pool_refuses_is_refused_naming_the_choice():
    config = dev_pool_sharing(FAIL_ABOVE_ONE, jupyterhub=gpu_profile_with(gpuChoices=[1, 2]))
    with pytest.raises(ConfigError, match=r"(?m)^mlplatform:jupyterhub.profiles\[1\].gpuChoices\[1\]: 2 shared GPUs asked for"):
        parse(config)


def test_gpu_count_choices_ask_for_the_renamed_resource():
    config = dev_pool_sharing({"replicas": 2, "renameByDefault": True}, jupyterhub=gpu_profile_with(gpuChoices=[1, 2]))
    deployment = run_program(config)
    (hub_config,) = [r for r in deployment.of_type(CONFIG_MAP) if DOCUMENT_NAME in r.inputs.get("data", {})]
    profiles = json.loads(hub_config.inputs["data"][DOCUMENT_NAME])["traits"]["KubeSpawner"]["profile_list"]
    (gpu,) = [p for p in profiles if p["display_name"] == "GPU"]
    assert gpu["kubespawner_override"]["extra_resource_limits"] == {"nvidia.com/gpu.shared": "1"}
    choices = gpu["profile_options"]["gpus"]["choices"]
    assert {n: c["kubespawner_override"]["extra_resource_limits"] for n, c in choices.items()} == {
        "1": {"nvidia.com/gpu.shared": "1"}, "2": {"nvidia.com/gpu.shared": "2"}}


def test_gpu_types_whose_pools_advertise_different_names_are_refused():
    config = {"cluster": typed_pools({"replicas": 2, "renameByDefault": True}),
              "jupyterhub": gpu_profile_with(gpuTypes=["T4", "A100"])}
    with pytest.raises(ConfigError, match=r"(?m)^mlplatform:jupyterhub.profiles\[1\].gpuTypes: the pools of these types "
                                          r"advertise their GPUs under different names \(T4 \(t4\): nvidia.com/gpu.shared"):
        parse(config)


def test_a_renamed_pool_a_gpu_type_choice_lands_on_is_requested():
    config = {"cluster": typed_pools({"replicas": 2, "renameByDefault": True}),
              "jupyterhub": gpu_profile_with(gpuTypes=["T4"]), "mnist": {"enabled": False}}
    parse(config)
    deployment = run_program(config)
    (hub_config,) = [r for r in deployment.of_type(CONFIG_MAP) if DOCUMENT_NAME in r.inputs.get("data", {})]
    profiles = json.loads(hub_config.inputs["data"][DOCUMENT_NAME])["traits"]["KubeSpawner"]["profile_list"]
    (gpu,) = [p for p in profiles if p["display_name"] == "GPU"]
    assert gpu["kubespawner_override"]["extra_resource_limits"] == {"nvidia.com/gpu.shared": "1"}
