"""The cluster component on each backend, under mocks."""

from __future__ import annotations

import json

import pytest

from vocab.versions import PINS
from cluster.localcluster.ports import FIRST_PORT, LAST_PORT
from components.cluster import LOCAL_API_PORTS, api_server_rules
from program import MOCK_API_SERVER, aks_stack, example_stack, run_program
from stacks import ConfigError

NODE = "kubernetes:core/v1:Node"
DEVICE_PLUGIN = "kubernetes:apps/v1:DaemonSet"
SECRET_SIG = "4dabf18193072939515e22adb298388d"


def test_kwok_pools_become_simulated_nodes_with_labels_taints_and_gpu_capacity():
    deployment = run_program(example_stack("kwok"))
    nodes = {r.inputs["metadata"]["name"]: r.inputs for r in deployment.of_type(NODE)}
    assert sorted(nodes) == ["cpu-0", "cpu-1", "gpu-0", "gpu-1"]
    gpu = nodes["gpu-0"]
    assert gpu["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert gpu["metadata"]["labels"]["mlplatform.dev/pool"] == "gpu"
    assert gpu["spec"]["taints"] == [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]
    capacity = json.loads(gpu["metadata"]["annotations"]["mlplatform.dev/capacity"])
    assert capacity == {"cpu": "6", "memory": "112Gi", "nvidia.com/gpu": "1", "pods": "110"}
    cpu = nodes["cpu-0"]
    assert "nvidia.com/gpu" not in json.loads(cpu["metadata"]["annotations"]["mlplatform.dev/capacity"])
    assert cpu["metadata"]["labels"]["hub.jupyter.org/node-purpose"] == "user"


def test_kwok_has_no_device_plugin_because_capacity_is_simulated():
    assert not run_program(example_stack("dev")).of_type(DEVICE_PLUGIN)


def test_every_kubernetes_object_uses_the_cluster_provider():
    deployment = run_program(example_stack("dev"))
    provider = deployment.named("mlplatform-k8s")
    assert provider.inputs["kubeconfig"] == ".local/kubeconfig"
    for resource in deployment.kubernetes_objects():
        assert resource.provider and "mlplatform-k8s" in resource.provider, resource.name


def test_local_cluster_has_real_nodes_volumes_and_webhooks():
    """cluster.provider local: the machine's cluster with a real node per pool (bin/cluster up --real)."""
    config = example_stack("dev")
    config["cluster"] = {**config["cluster"], "provider": "local"}
    deployment = run_program(config)
    assert deployment.named("mlplatform-k8s").inputs["kubeconfig"] == ".local/kubeconfig"
    kinds = {r.type.rsplit(":", 1)[-1] for r in deployment.kubernetes_objects()}
    assert not kinds & {"Node", "PersistentVolume"}, "real nodes register themselves; local-path provisions volumes"
    assert not deployment.of_type(DEVICE_PLUGIN), "the GPU nodes run their own (simulated) device plugin"
    webhook = deployment.named("training-operator-webhook")
    assert webhook.inputs["webhooks"], "the operator runs in the cluster, its webhook reached over the pod network"
    claim = deployment.named("mnist-data").inputs["spec"]
    assert claim["storageClassName"] == "local-path" and claim["accessModes"] == ["ReadWriteMany"], claim
    (tfjob,) = deployment.of_type("kubernetes:kubeflow.org/v1:TFJob")
    worker = tfjob.inputs["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]
    assert worker["nodeSelector"] == {"mlplatform.dev/pool": "gpu"}, worker["nodeSelector"]


def test_render_provider_writes_manifests_to_the_render_dir():
    config = example_stack("dev")
    config["cluster"] = {**config["cluster"], "provider": "render", "renderDir": "out/manifests"}
    deployment = run_program(config)
    provider = deployment.named("mlplatform-render")
    assert provider.inputs["renderYamlToDirectory"] == "out/manifests"


def rendered_for(render_as):
    config = example_stack("kwok")
    config["cluster"] = {**config["cluster"], "provider": "render", **({"renderAs": render_as} if render_as else {})}
    return run_program(config)


def test_render_writes_what_an_existing_cluster_gets():
    deployment = rendered_for(None)
    kinds = {r.type.rsplit(":", 1)[-1] for r in deployment.kubernetes_objects()}
    assert not kinds & {"Node", "PersistentVolume"}, "simulated nodes and pre-bound volumes belong to kwok only"
    (webhook,) = deployment.of_type("kubernetes:admissionregistration.k8s.io/v1:ValidatingWebhookConfiguration")
    assert webhook.inputs["webhooks"], "the operator's webhook, which a real cluster reaches"
    assert deployment.of_type(DEVICE_PLUGIN), "GPU pools get the NVIDIA device plugin"
    claim = deployment.named("mnist-data").inputs["spec"]
    assert "storageClassName" not in claim, "no empty class pinning the claim to a pre-made volume"
    hub_config = deployment.named("jupyterhub-config").inputs["data"]
    assert "emptyDir" not in str(hub_config), "user homes are persistent volumes, not emptyDir"


def test_render_as_kwok_writes_the_simulated_objects():
    deployment = rendered_for("kwok")
    assert len(deployment.of_type(NODE)) == 4
    assert deployment.of_type("kubernetes:core/v1:PersistentVolume")


def without_generated_secrets(manifest):
    """`manifest` less what each run of the program draws anew: the Secrets' values (the hub's
    tokens, the self-signed certificate) and the pod templates' checksum of them."""
    if manifest.get("kind") == "Secret":
        return {**manifest, "data": sorted(manifest.get("data", {}))}
    template = manifest.get("spec", {}).get("template", {}).get("metadata", {})
    if "checksum/secrets" in template.get("annotations", {}):
        template["annotations"]["checksum/secrets"] = "generated"
    return manifest


def test_render_as_local_writes_exactly_what_make_up_deploys_to_real_local_nodes():
    """`make bench-deploy` applies these with kubectl beside `make up`'s Pulumi deploy of the dev stack."""
    config = example_stack("dev")
    assert config["cluster"]["provider"] == "local", "the dev stack is a local stack"

    def objects(config):
        return {(r.type, r.name): without_generated_secrets(r.manifest()) for r in run_program(config).kubernetes_objects()}

    deployed = objects(config)
    config["cluster"] = {**config["cluster"], "provider": "render", "renderAs": "local"}
    rendered = objects(config)
    assert sorted(rendered) == sorted(deployed), "the same objects"
    # But one rule: the deployed stack asks the cluster where its API server is (the mocks' answer);
    # a rendering cannot, and allows the local cluster's port range instead.
    read = api_server_rules([{"addresses": list(MOCK_API_SERVER[0])}], [{"port": MOCK_API_SERVER[1]}])[0]
    first, last = LOCAL_API_PORTS
    port_range = {"ports": [{"protocol": "TCP", "port": first, "endPort": last}]}
    swapped = []
    for key, manifest in deployed.items():
        if key[0] == "kubernetes:networking.k8s.io/v1:NetworkPolicy" and read in manifest["spec"].get("egress", []):
            egress = manifest["spec"]["egress"]
            egress[egress.index(read)] = port_range
            swapped.append(key[1])
        assert rendered[key] == manifest, f"{key[1]} rendered differs from what the local provider deploys"
    assert sorted(swapped) == ["jupyterhub-netpol-hub", "kueue-netpol-manager", "training-operator-netpol-operator"], swapped
    assert not any(kind == DEVICE_PLUGIN for kind, _ in rendered), "the local nodes run their own device plugin"


def test_existing_cluster_uses_kubeconfig_and_context_and_runs_the_device_plugin_on_gpu_pools():
    config = {
        "cluster": {
            "provider": "existing",
            "kubeconfig": "~/.kube/config",
            "context": "prod",
            "nodePools": [
                {"name": "cpu", "labels": {"pool": "cpu"}},
                {"name": "gpu", "gpusPerNode": 4, "labels": {"accelerator": "a100"}, "taints": ["nvidia.com/gpu=present:NoSchedule"]},
            ],
        },
        "mnist": {"storage": {"storageClass": "nfs-client"}},
    }
    deployment = run_program(config)
    provider = deployment.named("mlplatform-k8s")
    assert (provider.inputs["kubeconfig"], provider.inputs["context"]) == ("~/.kube/config", "prod")
    assert not deployment.of_type(NODE), "an existing cluster's nodes are not declared"
    (plugin,) = deployment.of_type(DEVICE_PLUGIN)
    pod = plugin.inputs["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == f"nvcr.io/nvidia/k8s-device-plugin:{PINS['NVIDIA_DEVICE_PLUGIN_VERSION']}"
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "accelerator", "operator": "In", "values": ["a100"]}]}]
    assert {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["priorityClassName"] == "system-node-critical"


def test_aks_creates_cluster_pools_and_a_secret_kubeconfig():
    config, secrets = aks_stack()
    deployment = run_program(config, secrets)
    (managed,) = deployment.of_type("azure-native:containerservice:ManagedCluster")
    assert managed.inputs["location"] == "westeurope"
    assert managed.inputs["agentPoolProfiles"][0]["mode"] == "System"
    pools = {r.inputs["agentPoolName"]: r.inputs for r in deployment.of_type("azure-native:containerservice:AgentPool")}
    gpu = pools["gpu"]
    assert gpu["vmSize"] == "Standard_NC4as_T4_v3"
    assert (gpu["enableAutoScaling"], gpu["minCount"], gpu["maxCount"]) == (True, 0, 3)
    assert gpu["nodeTaints"] == ["sku=gpu:NoSchedule"]
    assert gpu["nodeLabels"]["mlplatform.dev/pool"] == "gpu"
    (plugin,) = deployment.of_type(DEVICE_PLUGIN)
    tolerations = plugin.inputs["spec"]["template"]["spec"]["tolerations"]
    assert {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"} in tolerations
    provider = deployment.named("mlplatform-k8s")
    kubeconfig = provider.inputs["kubeconfig"]
    # The kubeconfig reaches the provider as a Pulumi secret (the wire form carries the secret signature).
    assert kubeconfig[SECRET_SIG] == "1b47061264138c4ac30d75fd1eb44270"
    assert "kind: Config" in kubeconfig["value"]
    assert "kubeconfig" in deployment.outputs


def test_scheduling_terms_per_pool():
    from components.cluster import Cluster, ClusterArgs
    from stacks import parse

    settings = parse(example_stack("dev")).cluster
    holder = {}

    def build():
        holder["cluster"] = Cluster("c", ClusterArgs(settings))

    run_program_with(build)
    cluster = holder["cluster"]
    gpu = cluster.scheduling_for(gpus=1)
    assert gpu.pod_spec() == {
        "nodeSelector": {"mlplatform.dev/pool": "gpu"},
        "tolerations": [{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
    }
    assert cluster.scheduling_for(gpus=0).pod_spec() == {"nodeSelector": {"mlplatform.dev/pool": "cpu"}}


def test_cpu_pods_are_kept_off_gpu_nodes_when_every_pool_has_gpus():
    from components.cluster import Cluster, ClusterArgs
    from stacks import parse

    settings = parse({"cluster": {"nodePools": [{"name": "gpu", "gpusPerNode": 1}]}}).cluster
    holder = {}
    run_program_with(lambda: holder.setdefault("cluster", Cluster("c", ClusterArgs(settings))))
    spec = holder["cluster"].scheduling_for(gpus=0).pod_spec()
    term = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
    assert term == {"matchExpressions": [{"key": "mlplatform.dev/pool", "operator": "NotIn", "values": ["gpu"]}]}


def test_bad_config_fails_before_any_resource_is_registered():
    with pytest.raises(ConfigError, match="mlplatform:jupyterhub.serviceType"):
        run_program({"jupyterhub": {"serviceType": "Loadbalancer"}})


def run_program_with(build):
    """Build components directly under mocks."""
    import pulumi

    from program import Deployment, RecordingMocks

    pulumi.runtime.set_mocks(RecordingMocks(Deployment()), project="mlplatform", stack="test", preview=False)

    @pulumi.runtime.test
    def run():
        build()
        return pulumi.Output.from_input(None)

    run()


def test_the_local_cluster_is_found_where_bin_cluster_writes_its_kubeconfig(monkeypatch):
    # bin/cluster and bin/training-operator honour MLPLATFORM_KUBECONFIG; so must the program.
    monkeypatch.setenv("MLPLATFORM_KUBECONFIG", "/tmp/elsewhere/kubeconfig")
    deployment = run_program(example_stack("dev"))
    assert deployment.named("mlplatform-k8s").inputs["kubeconfig"] == "/tmp/elsewhere/kubeconfig"


def test_aks_registry_name_is_one_azure_accepts():
    from stacks.azure_names import REGISTRY

    config, secrets = aks_stack()
    (registry,) = run_program(config, secrets).of_type("azure-native:containerregistry:Registry")
    name = registry.inputs.get("registryName")
    assert name, "auto-named from trainer-image-acr, which has dashes Azure refuses"
    assert REGISTRY.problem(name) is None, REGISTRY.problem(name)


def test_aks_example_asks_for_no_retired_vm_size():
    # Azure retired the NCv3 series (Standard_NC6s_v3 and siblings) on 2025-09-30.
    config, _ = aks_stack()
    sizes = [p["vmSize"] for p in config["cluster"]["nodePools"]]
    assert not [s for s in sizes if s.startswith("Standard_NC") and s.endswith("s_v3")], sizes


def test_every_azure_name_the_aks_stack_sends_is_one_azure_accepts():
    from stacks.azure_names import AGENT_POOL, KUBERNETES_VERSION, LOCATION, MANAGED_CLUSTER, RESOURCE_GROUP

    config, secrets = aks_stack()
    deployment = run_program(config, secrets)
    (managed,) = deployment.of_type("azure-native:containerservice:ManagedCluster")
    names = [(AGENT_POOL, p["name"]) for p in managed.inputs["agentPoolProfiles"]]
    names += [(AGENT_POOL, r.inputs["agentPoolName"]) for r in deployment.of_type("azure-native:containerservice:AgentPool")]
    names += [(KUBERNETES_VERSION, managed.inputs["kubernetesVersion"]), (LOCATION, managed.inputs["location"])]
    # Pulumi auto-names the cluster and the resource group: the resource name plus a random suffix.
    names += [(MANAGED_CLUSTER, managed.name + "abc1234")]
    names += [(RESOURCE_GROUP, r.name + "abc1234") for r in deployment.of_type("azure-native:resources:ResourceGroup")]
    for rule, name in names:
        assert rule.problem(name) is None, rule.problem(name)


def test_a_rendering_for_the_local_cluster_allows_the_port_range_its_api_server_listens_in():
    assert LOCAL_API_PORTS == (FIRST_PORT, LAST_PORT)


def test_pods_reach_the_api_server_at_the_address_and_port_its_endpoint_slice_names():
    rules = api_server_rules([{"addresses": ["192.0.2.2"]}, {"addresses": ["fd00::1"]}], [{"name": "https", "port": 6443}])
    assert rules == [{"to": [{"ipBlock": {"cidr": "192.0.2.2/32"}}, {"ipBlock": {"cidr": "fd00::1/128"}}],
                      "ports": [{"protocol": "TCP", "port": 6443}]}]
    with pytest.raises(ValueError, match="default/kubernetes"):
        api_server_rules([], [{"port": 6443}])
