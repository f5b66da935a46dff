"""Stack config: defaults, the example stacks, and every kind of bad input, each naming its key."""

from __future__ import annotations

import pytest

from kubernetes.utils import parse_quantity

from cluster.localcluster.capacity import Allocatable, local_allocatable, machine_capacity
from program import DEV_MACHINE, aks_stack, example_stack
from stacks import ConfigError, parse
from vocab.quantity import quantity


def pool(settings, name):
    return next(p for p in settings.cluster.node_pools if p.name == name)


# Pools whose nodes' capacity is known (kwok): requests must fit a node.
SMALL_POOLS = {
    "nodePools": [
        {"name": "cpu", "cpu": "2", "memory": "4Gi"},
        {"name": "gpu", "cpu": "2", "memory": "8Gi", "gpusPerNode": 1, "taints": ["sku=gpu:NoSchedule"]},
    ]
}
GPU_POOLS = {"nodePools": [{"name": "cpu"}, {"name": "gpu", "gpusPerNode": 1, "taints": ["sku=gpu:NoSchedule"]}]}
# Two GPU types: T4 nodes with one GPU, A100 nodes with four.
TYPED_POOLS = {
    "nodePools": [
        {"name": "cpu"},
        {"name": "t4", "gpusPerNode": 1, "gpuType": "T4"},
        {"name": "a100", "gpusPerNode": 4, "gpuType": "A100"},
    ]
}


def gpu_profile(**changes):
    return {"name": "GPU", "image": "a:1", "gpus": 1, **changes}


def hub_with(*profiles, **hub):
    """A hub on TYPED_POOLS with a CPU profile for everyone and `profiles`."""
    return {"cluster": TYPED_POOLS, "jupyterhub": {"profiles": [{"name": "CPU", "image": "a:1"}, *profiles], **hub}}


def test_defaults_are_the_tutorial_topology_on_a_local_cluster():
    settings = parse({})
    assert settings.cluster.provider == "kwok"
    assert settings.mnist.replica_counts == {"Chief": 1, "Worker": 2, "PS": 1}
    assert settings.jupyterhub.service_type == "ClusterIP"
    assert settings.jupyterhub.cull_idle_seconds == 3600


def test_dev_stack_parses():
    settings = parse(example_stack("dev"))
    assert [p.name for p in settings.cluster.node_pools] == ["cpu", "gpu"]
    assert str(pool(settings, "gpu").taints[0]) == "sku=gpu:NoSchedule"
    assert settings.mnist.gpu_counts == {"Worker": 1}


def test_aks_stack_parses_with_its_secret():
    config, secrets = aks_stack()
    settings = parse(config, frozenset(secrets))
    assert settings.cluster.provider == "aks"
    assert pool(settings, "gpu").min_count == 0


def test_master_replaces_the_default_chief():
    settings = parse({"mnist": {"replicas": {"Master": 1, "Worker": 2, "PS": 1}}})
    assert settings.mnist.replica_counts == {"Master": 1, "Worker": 2, "PS": 1}


def test_a_zero_count_removes_a_replica_type():
    settings = parse({"mnist": {"replicas": {"Chief": 0, "PS": 0, "Worker": 4}}})
    assert settings.mnist.replica_counts == {"Worker": 4}


def test_a_resources_setting_keeps_the_defaults_it_does_not_name():
    settings = parse({"mnist": {"resources": {"Worker": {"memoryLimit": "8Gi"}}}})
    assert settings.mnist.resources.Worker.manifest() == {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "8Gi"}}
    assert settings.mnist.resources.PS.manifest() == {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}


def test_requests_are_not_checked_against_pools_whose_capacity_is_unknown():
    # On aks and existing clusters the pools' cpu/memory are not the nodes' capacity.
    settings = parse({
        "cluster": {"provider": "existing", "kubeconfig": "/k", "nodePools": [{"name": "cpu", "cpu": "500m", "labels": {"a": "b"}}]},
        "mnist": {"storage": {"storageClass": "nfs-client"}},  # ReadWriteMany needs a class there
    })
    assert settings.mnist.resources.Chief.cpu_request == "1"


# --- a `local` cluster's real nodes: this machine's allocatable ----------------------------------


def on_dev_machine():
    return DEV_MACHINE


def dev_stack_with(**changes):
    """The dev stack (cluster.provider local) with some of its values changed: {"mnist.resources.Worker": {...}}."""
    config = example_stack("dev")
    for path, values in changes.items():
        place = config
        for part in path.split("."):
            place = place[int(part)] if part.isdigit() else place.setdefault(part, {})
        place.update(values)
    return config


def test_dev_stack_fits_the_machine_it_is_sized_for():
    settings = parse(example_stack("dev"), local_node=on_dev_machine)
    assert settings.cluster.capacity_known
    assert settings.cluster.node_capacity(1).allocatable == DEV_MACHINE


LOCAL_BAD_CONFIGS = [
    (
        dev_stack_with(**{"jupyterhub.profiles.0": {"cpuGuarantee": "8", "cpuLimit": "8"}}),
        "mlplatform:jupyterhub.profiles[0].cpuGuarantee: 8 is more than a node of pool cpu has "
        "(cpu 2: this machine's allocatable, as each real node of cluster.provider local reports it)",
    ),
    (
        dev_stack_with(**{"mnist.resources.Worker": {"memoryRequest": "32Gi", "memoryLimit": "32Gi"}}),
        "mlplatform:mnist.resources.Worker.memoryRequest: 32Gi is more than a node of pool gpu has "
        "(memory 24581184Ki, about 23.4Gi: this machine's allocatable, as each real node of cluster.provider local reports it)",
    ),
    (
        dev_stack_with(**{"jupyterhub.hubResources": {"cpuRequest": "2500m"}}),
        "mlplatform:jupyterhub.hubResources.cpuRequest: 2500m is more than a node of pool cpu has (cpu 2:",
    ),
    (
        dev_stack_with(**{"mnist.tensorboard.resources": {"memoryRequest": "24Gi", "memoryLimit": "24Gi"}}),
        "mlplatform:mnist.tensorboard.resources.memoryRequest: 24Gi is more than a node of pool cpu has (memory 24581184Ki",
    ),
]


@pytest.mark.parametrize(("config", "message"), LOCAL_BAD_CONFIGS, ids=[m.split(":")[1] for _, m in LOCAL_BAD_CONFIGS])
def test_a_request_no_real_node_could_hold_is_rejected_naming_the_key(config, message):
    with pytest.raises(ConfigError) as caught:
        parse(config, local_node=on_dev_machine)
    lines = str(caught.value).splitlines()
    assert any(line.startswith(message) for line in lines), f"expected {message!r} in: {lines}"


def test_a_request_that_fits_the_machine_exactly_is_allowed():
    config = dev_stack_with(**{"mnist.resources.Chief": {"cpuRequest": "2", "memoryRequest": "24581184Ki", "memoryLimit": None}})
    assert parse(config, local_node=on_dev_machine).mnist.resources.Chief.cpu_request == "2"


def test_local_requests_are_unchecked_until_the_machine_is_known():
    # bin/cluster reads only the pools (stacks/local_nodes.py); the program always passes the machine.
    config = dev_stack_with(**{"jupyterhub.profiles.0": {"cpuGuarantee": "8", "cpuLimit": "8"}})
    assert not parse(config).cluster.capacity_known


def test_the_machine_is_read_only_for_a_local_cluster():
    # An aks or existing stack may be deployed from a machine with no /proc at all.
    def unreadable():
        raise AssertionError("read the machine for a stack that does not run on it")

    for config in (example_stack("kwok"), aks_stack()[0]):
        parse(config, frozenset(["jupyterhub"]), local_node=unreadable)


def test_local_allocatable_is_what_the_kubelet_reports():
    # `kubectl get node real-cpu-0` on the 2-core, 24 GiB machine: capacity memory 24683584Ki,
    # allocatable 24581184Ki (the 100Mi hard eviction threshold held back), cpu 2 of 2.
    assert local_allocatable({"cpu": "2", "memory": "24683584Ki", "hugetlb": "0Ki"}) == DEV_MACHINE


def test_huge_pages_are_not_allocatable_memory():
    # 8Gi less 1Gi of huge pages and the 100Mi threshold.
    assert local_allocatable({"cpu": "4", "memory": "8Gi", "hugetlb": "1Gi"}) == Allocatable(cpu="4", memory="7237632Ki")


@pytest.mark.parametrize(
    "text", ["2", "500m", "1.5", ".5", "24683584Ki", "100Mi", "8Gi", "1Ti", "12n", "3u", "2k", "1M", "1G", "1E", "1e3", "5E-2"]
)
def test_the_platforms_quantities_are_kubernetes_quantities(text):
    # The settings, the hub's config and the cluster manager read quantities with the standard
    # library (vocab/quantity.py); they must mean what the kubernetes client's parser says.
    assert quantity(text) == parse_quantity(text)


@pytest.mark.parametrize("text", ["", "Gi", "1Gb", "1 Gi", "one"])
def test_a_malformed_quantity_is_refused(text):
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        quantity(text)


def test_machine_capacity_counts_online_processors_and_mem_total(tmp_path):
    (tmp_path / "cpuinfo").write_text("".join(f"processor\t: {i}\nmodel name\t: x\n\n" for i in range(3)))
    (tmp_path / "meminfo").write_text(
        "MemTotal:       24683584 kB\nMemFree:        10148528 kB\nHugePages_Total:       1\n"
        "Hugepagesize:       2048 kB\nHugetlb:            2048 kB\n"
    )
    assert machine_capacity(tmp_path) == {"cpu": "3", "memory": "24683584Ki", "hugetlb": "2048Ki"}


def test_taint_without_value():
    settings = parse({"cluster": {"nodePools": [{"name": "gpu", "taints": ["nvidia.com/gpu:NoSchedule"]}]}})
    taint = pool(settings, "gpu").taints[0]
    assert (taint.key, taint.value, taint.effect) == ("nvidia.com/gpu", None, "NoSchedule")


def test_autoscaled_pool_simulates_its_maximum():
    settings = parse({"cluster": {"nodePools": [{"name": "gpu", "minCount": 0, "maxCount": 3}]}})
    assert pool(settings, "gpu").node_count == 3


# A hub reachable from outside the cluster, with the https it needs.
PUBLIC_HUB = {"serviceType": "LoadBalancer", "https": {"type": "selfSigned"}}

BAD_CONFIGS = [
    # (config, key the message must name, words it must contain)
    ({"clustr": {}}, "mlplatform:clustr", "unknown key; allowed: cluster, jupyterhub, mnist"),
    ({"cluster": {"provder": "kwok"}}, "mlplatform:cluster.provder", "unknown key"),
    ({"cluster": {"provider": "gke"}}, "mlplatform:cluster.provider", "'kwok', 'local', 'existing', 'aks' or 'render'"),
    ({"cluster": {"provider": "Kwok"}}, "mlplatform:cluster.provider", "case matters"),
    ({"cluster": {"nodePools": [{"name": "a", "count": -1}]}}, "cluster.nodePools[0].count", "must be >= 0"),
    ({"cluster": {"nodePools": [{"name": "a", "count": "two"}]}}, "cluster.nodePools[0].count", "valid integer"),
    ({"cluster": {"nodePools": [{"name": "a", "minCount": 3, "maxCount": 1}]}}, "cluster.nodePools[0].minCount", "must be <= maxCount"),
    ({"cluster": {"nodePools": [{"name": "a", "minCount": 1}]}}, "cluster.nodePools[0]", "both minCount and maxCount"),
    ({"cluster": {"nodePools": [{"name": "a", "count": 1, "maxCount": 2, "minCount": 0}]}}, "cluster.nodePools[0].count", "not both"),
    ({"cluster": {"nodePools": [{"name": "a", "taints": ["sku=gpu"]}]}}, "cluster.nodePools[0].taints[0]", "key=value:Effect"),
    ({"cluster": {"nodePools": [{"name": "a", "taints": ["sku=gpu:NoExec"]}]}}, "cluster.nodePools[0].taints[0]", "NoSchedule, PreferNoSchedule, NoExecute"),
    ({"cluster": {"nodePools": [{"name": "GPU"}]}}, "cluster.nodePools[0].name", "DNS-1035"),
    ({"cluster": {"nodePools": [{"name": "a"}, {"name": "a"}]}}, "cluster.nodePools[1].name", "more than one pool"),
    ({"cluster": {"nodePools": [{"name": "a", "memory": "lots"}]}}, "cluster.nodePools[0].memory", "Kubernetes quantity"),
    ({"cluster": {"nodePools": [{"name": "a", "gpus": 1}]}}, "cluster.nodePools[0].gpus", "allowed: name, count"),
    ({"cluster": {"provider": "existing"}}, "cluster.kubeconfig", "required with cluster.provider existing"),
    ({"cluster": {"provider": "existing", "kubeconfig": "/k", "nodePools": [{"name": "a"}]}}, "cluster.nodePools[0].labels", "required"),
    ({"cluster": {"provider": "aks"}}, "cluster.location", "required with cluster.provider aks"),
    ({"cluster": {"provider": "aks", "location": "westeurope", "nodePools": [{"name": "a"}]}}, "cluster.nodePools[0].vmSize", "required"),
    ({"cluster": {"location": "westeurope"}}, "cluster.location", "only used with cluster.provider aks"),
    ({"cluster": {"provider": "render", "renderAs": "aks"}}, "cluster.renderAs", "'existing', 'local' or 'kwok'"),
    ({"cluster": {"renderAs": "local"}}, "cluster.renderAs", "only used with cluster.provider render"),
    ({"jupyterhub": {"serviceType": "Loadbalancer"}}, "jupyterhub.serviceType", "'ClusterIP', 'LoadBalancer' or 'NodePort'"),
    ({"jupyterhub": {"serviceType": "LoadBalancer", "auth": {"type": "dummy"}}}, "jupyterhub.auth.type", "lets anyone in"),
    ({"jupyterhub": {"auth": {"type": "ldap"}}}, "jupyterhub.auth.type", "'dummy', 'native', 'github' or 'azuread'"),
    ({"jupyterhub": {"auth": {"type": "github", "clientId": "x", "callbackUrl": "https://x/hub/oauth_callback"}}}, "jupyterhub.auth.clientSecret", "required"),
    ({"jupyterhub": {"auth": {"type": "github", "clientId": "x", "clientSecret": "s", "callbackUrl": "u"}}}, "jupyterhub.auth.clientSecret", "--secret"),
    ({"jupyterhub": {**PUBLIC_HUB, "auth": {"type": "native", "allowedFailedLogins": 0}}}, "jupyterhub.auth.allowedFailedLogins", "a public hub (jupyterhub.serviceType LoadBalancer) needs it"),
    ({"jupyterhub": {**PUBLIC_HUB, "serviceType": "NodePort", "auth": {"minimumPasswordLength": 7}}}, "jupyterhub.auth.minimumPasswordLength", "7 is too short; a public hub (jupyterhub.serviceType NodePort) needs it to be at least 8"),
    ({"jupyterhub": {**PUBLIC_HUB, "auth": {"checkCommonPassword": False}}}, "jupyterhub.auth.checkCommonPassword", "a public hub (jupyterhub.serviceType LoadBalancer) needs it to be true"),
    ({"jupyterhub": {"auth": {"minimumPasswordLength": 0}}}, "jupyterhub.auth.minimumPasswordLength", "must be >= 1"),
    ({"jupyterhub": {"auth": {"lockoutSeconds": 0}}}, "jupyterhub.auth.lockoutSeconds", "must be >= 1"),
    ({"jupyterhub": {"auth": {"allowedFailedLogins": -1}}}, "jupyterhub.auth.allowedFailedLogins", "must be >= 0"),
    ({"jupyterhub": {"auth": {"type": "dummy", "lockoutSeconds": 60}}}, "jupyterhub.auth.lockoutSeconds", "only used with auth.type native, not dummy"),
    ({"jupyterhub": {"auth": {"type": "github", "clientId": "x", "clientSecret": "s", "callbackUrl": "u", "checkCommonPassword": True}}}, "jupyterhub.auth.checkCommonPassword", "only used with auth.type native, not github"),
    ({"jupyterhub": {"limits": {"concurrentSpawnLimit": -1}}}, "jupyterhub.limits.concurrentSpawnLimit", "must be >= 0"),
    ({"jupyterhub": {"limits": {"activeServerLimit": "many"}}}, "jupyterhub.limits.activeServerLimit", "valid integer"),
    ({"jupyterhub": {"limits": {"consecutiveFailureLimit": -2}}}, "jupyterhub.limits.consecutiveFailureLimit", "must be >= 0"),
    ({"jupyterhub": {"limits": {"startTimeoutSeconds": 0}}}, "jupyterhub.limits.startTimeoutSeconds", "must be >= 1"),
    ({"jupyterhub": {"limits": {"httpTimeoutSeconds": 0}}}, "jupyterhub.limits.httpTimeoutSeconds", "must be >= 1"),
    ({"jupyterhub": {"limits": {"spawnLimit": 5}}}, "jupyterhub.limits.spawnLimit", "unknown key"),
    ({"jupyterhub": {"loadBalancerSourceRanges": ["10.0.0.0/8"]}}, "jupyterhub.loadBalancerSourceRanges", "only used with serviceType LoadBalancer"),
    ({"jupyterhub": {"serviceType": "LoadBalancer", "loadBalancerSourceRanges": ["10.0.0.300/8"]}}, "jupyterhub.loadBalancerSourceRanges[0]", "CIDR"),
    ({"jupyterhub": {"profiles": [{"name": "x", "image": "jupyter/base-notebook"}]}}, "jupyterhub.profiles[0].image", "pinned"),
    ({"jupyterhub": {"profiles": [{"name": "x", "image": "jupyter/base-notebook:latest"}]}}, "jupyterhub.profiles[0].image", "not :latest"),
    ({"jupyterhub": {"profiles": [{"name": "x", "image": "a:1", "cpuGuarantee": "2", "cpuLimit": "1"}]}}, "jupyterhub.profiles[0].cpuGuarantee", "must be <= cpuLimit"),
    ({"jupyterhub": {"profiles": [{"name": "x", "image": "a:1", "gpus": 1}]}}, "jupyterhub.profiles[0].gpus", "no node pool has gpusPerNode >= 1"),
    ({"jupyterhub": {"profiles": []}}, "jupyterhub.profiles", "at least one profile"),
    ({"jupyterhub": {"cullIdleSeconds": -5}}, "jupyterhub.cullIdleSeconds", "must be >= 0"),
    ({"jupyterhub": {"userPool": "nope"}}, "jupyterhub.userPool", "is not a node pool"),
    # GPU choices on the spawn form: every count and type checked against the pools.
    ({"cluster": {"nodePools": [{"name": "a", "gpuType": "T4"}]}}, "cluster.nodePools[0].gpuType", "only for a pool with GPUs"),
    ({"cluster": {"nodePools": [{"name": "a", "gpusPerNode": 1, "gpuType": "T 4"}]}}, "cluster.nodePools[0].gpuType", "label value"),
    (hub_with(gpu_profile(gpuChoices=[1, 8])), "jupyterhub.profiles[1].gpuChoices[1]", "no node pool has gpusPerNode >= 8 (GPU pools: t4=1, a100=4)"),
    (hub_with(gpu_profile(gpuChoices=[0, 1])), "jupyterhub.profiles[1].gpuChoices[0]", "0 must be >= 1"),
    (hub_with(gpu_profile(gpuChoices=[1, 1])), "jupyterhub.profiles[1].gpuChoices[1]", "offered twice"),
    (hub_with(gpu_profile(gpus=2, gpuChoices=[1, 4])), "jupyterhub.profiles[1].gpus", "must be one of gpuChoices (1, 4)"),
    (hub_with(gpu_profile(gpuTypes=["T4", "H100"])), "jupyterhub.profiles[1].gpuTypes[1]", '"H100" is not the gpuType of any GPU pool (cluster.nodePools[].gpuType: T4, A100)'),
    (hub_with(gpu_profile(gpuTypes=["A100", "A100"])), "jupyterhub.profiles[1].gpuTypes[1]", "offered twice"),
    (hub_with(gpu_profile(gpuChoices=[1, 4], gpuTypes=["A100", "T4"])), "jupyterhub.profiles[1].gpuChoices[1]", "4 GPUs of type T4 asked for, but no pool of that type has gpusPerNode >= 4 (t4=1)"),
    (hub_with(gpu_profile(gpus=4, gpuTypes=["T4"])), "jupyterhub.profiles[1].gpus", "4 GPUs of type T4"),
    (hub_with(gpu_profile(gpus=0, gpuTypes=["T4"])), "jupyterhub.profiles[1].gpuTypes", "only for a profile with GPUs"),
    (hub_with(gpu_profile(gpuTypes=["a100"])), "jupyterhub.profiles[1].gpuTypes[0]", '"a100" is not the gpuType'),
    ({"cluster": {"nodePools": [{"name": "cpu"}, {"name": "t4", "gpusPerNode": 1, "gpuType": "T4", "memory": "16Gi"},
                                {"name": "a100", "gpusPerNode": 4, "gpuType": "A100", "memory": "64Gi"}]},
      "jupyterhub": {"profiles": [{"name": "CPU", "image": "a:1"}, gpu_profile(gpuTypes=["A100", "T4"], memoryGuarantee="32Gi")]}},
     "jupyterhub.profiles[1].memoryGuarantee", "32Gi is more than a node of pool t4 has (memory 16Gi)"),
    # Profiles by group.
    (hub_with(gpu_profile(groups=["gpu-users"])), "jupyterhub.profiles[1].groups[0]", '"gpu-users" is not in jupyterhub.groups (groups: none'),
    (hub_with(gpu_profile(groups=["gpu users"]), groups={"gpu users": ["a"]}), "jupyterhub.groups.gpu users", "should match pattern"),
    ({"jupyterhub": {"profiles": [{"name": "x", "image": "a:1", "groups": ["g"]}], "groups": {"g": ["a"]}}}, "jupyterhub.profiles", "every profile is limited to groups"),
    (hub_with(groupsFromSignIn=True), "jupyterhub.groupsFromSignIn", "only with auth.type azuread"),
    (hub_with(groupsFromSignIn=True, groups={"g": ["a"]}, auth={"type": "azuread", "clientId": "c", "tenantId": "t", "callbackUrl": "https://h/hub/oauth_callback"}), "jupyterhub.groups", "must be empty with groupsFromSignIn"),
    (hub_with(groups={"g": [""]}), "jupyterhub.groups.g[0]", "at least 1 character"),
    # Culling per profile.
    (hub_with(gpu_profile(cullIdleSeconds=-1)), "jupyterhub.profiles[1].cullIdleSeconds", "must be >= 0"),
    (hub_with(gpu_profile(maxAgeSeconds="a day")), "jupyterhub.profiles[1].maxAgeSeconds", "valid integer"),
    # A profile's own start timeout, within the hub's.
    (hub_with(gpu_profile(startTimeoutSeconds=0)), "jupyterhub.profiles[1].startTimeoutSeconds", "must be >= 1"),
    (hub_with(gpu_profile(startTimeoutSeconds=1000)), "jupyterhub.profiles[1].startTimeoutSeconds",
     "1000 must be at most jupyterhub.limits.startTimeoutSeconds (900)"),
    (hub_with(gpu_profile(startTimeoutSeconds=200), limits={"startTimeoutSeconds": 100}),
     "jupyterhub.profiles[1].startTimeoutSeconds", "200 must be at most jupyterhub.limits.startTimeoutSeconds (100)"),
    ({"mnist": {"replicas": {"Worker": -1}}}, "mlplatform:mnist.replicas.Worker", "-1 must be >= 0"),
    ({"mnist": {"replicas": {"Chief": 1, "Master": 1}}}, "mnist.replicas", "Chief and Master are both set"),
    ({"mnist": {"replicas": {"Launcher": 1}}}, "mnist.replicas.Launcher", "allowed: Chief, Master, Worker, PS, Evaluator"),
    ({"mnist": {"replicas": {"worker": 2}}}, "mnist.replicas.worker", "unknown key"),
    ({"mnist": {"replicas": {"Chief": 2}}}, "mnist.replicas.Chief", "must be <= 1"),
    ({"mnist": {"replicas": {"Chief": 0, "Worker": 0}}}, "mnist.replicas", "needs a Chief"),
    ({"mnist": {"replicas": {"Chief": 0, "Worker": 2, "PS": 1}}}, "mnist.replicas.PS", "need a Chief"),
    ({"mnist": {"gpus": {"Worker": 1}}}, "mnist.gpus.Worker", "no node pool has gpusPerNode >= 1"),
    ({"cluster": GPU_POOLS, "mnist": {"gpus": {"Worker": 2}}}, "mnist.gpus.Worker", "GPU pools: gpu=1"),
    ({"cluster": GPU_POOLS, "mnist": {"gpus": {"PS": 1}}}, "mnist.gpus.PS", "not allowed for PS"),
    ({"cluster": GPU_POOLS, "mnist": {"gpus": {"Evaluator": 1}}}, "mnist.gpus.Evaluator", "no Evaluator replicas"),
    ({"mnist": {"trainSteps": 0}}, "mnist.trainSteps", "must be >= 1"),
    ({"mnist": {"learningRate": 0}}, "mnist.learningRate", "must be > 0"),
    ({"mnist": {"jobName": "Distributed_MNIST"}}, "mnist.jobName", "DNS-1035"),
    ({"mnist": {"restartPolicy": "onFailure"}}, "mnist.restartPolicy", "'Always', 'OnFailure', 'Never' or 'ExitCode'"),
    ({"mnist": {"runPolicy": {"cleanPodPolicy": "Succeeded"}}}, "mnist.runPolicy.cleanPodPolicy", "'None', 'Running' or 'All'"),
    ({"mnist": {"runPolicy": {"backoffLimit": -1}}}, "mnist.runPolicy.backoffLimit", "-1 must be >= 0"),
    ({"mnist": {"runPolicy": {"activeDeadlineSeconds": 0}}}, "mnist.runPolicy.activeDeadlineSeconds", "0 must be >= 1"),
    ({"mnist": {"runPolicy": {"ttlSecondsAfterFinished": -1}}}, "mnist.runPolicy.ttlSecondsAfterFinished", "-1 must be >= 0"),
    ({"mnist": {"restartPolicy": "Never", "runPolicy": {"backoffLimit": 5}}}, "mnist.runPolicy.backoffLimit", "no effect with mnist.restartPolicy Never"),
    ({"mnist": {"tensorboard": {"serviceType": "Ingress"}}}, "mnist.tensorboard.serviceType", "'ClusterIP', 'LoadBalancer' or 'NodePort'"),
    ({"mnist": {"image": {"build": True}}}, "mnist.image.repository", "required with image.build"),
    ({"mnist": {"image": {"reference": "tensorflow/tensorflow"}}}, "mnist.image.reference", "pinned"),
    ({"mnist": {"replicas": {"Chief": 1, "Worker": 2, "PS": 0}, "batchSize": 100}}, "mnist.batchSize", "must divide by the number of chief and worker replicas (3)"),
    ({"mnist": "lots"}, "mlplatform:mnist", "valid dictionary"),
    ({"mnist": {"resources": {"Worker": {"cpuRequest": "2", "cpuLimit": "1"}}}}, "mnist.resources.Worker.cpuRequest", "must be <= cpuLimit (1)"),
    ({"mnist": {"resources": {"Launcher": {}}}}, "mnist.resources.Launcher", "allowed: Chief, Master, Worker, PS, Evaluator"),
    ({"mnist": {"resources": {"PS": {"memoryRequest": "lots"}}}}, "mnist.resources.PS.memoryRequest", "Kubernetes quantity"),
    ({"cluster": SMALL_POOLS, "mnist": {"resources": {"Chief": {"memoryRequest": "8Gi", "memoryLimit": "8Gi"}}}}, "mnist.resources.Chief.memoryRequest", "more than a node of pool cpu has (memory 4Gi)"),
    ({"cluster": SMALL_POOLS, "mnist": {"gpus": {"Worker": 1}, "resources": {"Worker": {"cpuRequest": "3"}}}}, "mnist.resources.Worker.cpuRequest", "more than a node of pool gpu has (cpu 2)"),
    ({"cluster": SMALL_POOLS, "mnist": {"tensorboard": {"resources": {"cpuRequest": "4"}}}}, "mnist.tensorboard.resources.cpuRequest", "pool cpu has (cpu 2)"),
    ({"cluster": SMALL_POOLS, "jupyterhub": {"hubResources": {"memoryRequest": "5Gi"}}}, "jupyterhub.hubResources.memoryRequest", "pool cpu has (memory 4Gi)"),
    ({"cluster": SMALL_POOLS, "jupyterhub": {"profiles": [{"name": "x", "image": "a:1", "memoryGuarantee": "6Gi"}]}}, "jupyterhub.profiles[0].memoryGuarantee", "pool cpu has (memory 4Gi)"),
]


@pytest.mark.parametrize(("config", "key", "words"), BAD_CONFIGS, ids=[c[1] for c in BAD_CONFIGS])
def test_bad_config_is_rejected_naming_the_key(config, key, words):
    with pytest.raises(ConfigError) as caught:
        parse(config)
    lines = str(caught.value).splitlines()
    assert any(key in line and words in line for line in lines), f"expected {key!r} with {words!r} in: {lines}"


def test_every_offered_gpu_count_and_type_a_pool_can_serve_is_allowed():
    settings = parse(hub_with(gpu_profile(gpuChoices=[1, 2, 4], gpuTypes=["A100"]), gpu_profile(name="T4", gpuTypes=["T4", "A100"])))
    gpu = settings.jupyterhub.profiles[1]
    assert (gpu.offered_gpus, gpu.gpu_types) == ((1, 2, 4), ("A100",))


def test_group_limited_profiles_with_groups_from_the_stack_or_from_azure_ad_sign_in():
    settings = parse(hub_with(gpu_profile(groups=["gpu-users"]), groups={"gpu-users": ["alice", "bob"]}))
    assert settings.jupyterhub.groups == {"gpu-users": ("alice", "bob")}
    azuread = {"type": "azuread", "clientId": "c", "clientSecret": "s", "tenantId": "t",
               "callbackUrl": "https://hub.example.com/hub/oauth_callback"}
    object_id = "0b3c2f4e-5a7d-4c4b-9f1e-2d6a8b9c0d1e"  # Azure AD's groups claim holds object ids
    config = hub_with(gpu_profile(groups=[object_id]), groupsFromSignIn=True, auth=azuread,
                      https={"type": "offload", "hosts": ["hub.example.com"]})
    settings = parse(config, frozenset({"jupyterhub"}))
    assert settings.jupyterhub.profiles[1].groups == (object_id,)


def test_a_message_names_the_value_and_what_is_allowed():
    with pytest.raises(ConfigError, match=r'^mlplatform:jupyterhub.serviceType: "Loadbalancer" is not allowed; allowed: '):
        parse({"jupyterhub": {"serviceType": "Loadbalancer"}})


def test_config_error_prints_without_traceback():
    # Pulumi prints a RunError's message alone, without the Python traceback.
    import pulumi

    assert issubclass(ConfigError, pulumi.RunError)


def test_native_sign_in_on_a_public_hub_is_allowed_with_every_guard_on():
    settings = parse({"jupyterhub": {**PUBLIC_HUB, "auth": {"type": "native", "adminUsers": ["admin"], "minimumPasswordLength": 8}}})
    assert settings.jupyterhub.auth.allowed_failed_logins == 3 and settings.jupyterhub.auth.check_common_password


def test_a_private_hub_may_turn_the_sign_in_guards_off():
    # Reached by port-forward only: the team's own choice.
    parse({"jupyterhub": {"auth": {"allowedFailedLogins": 0, "minimumPasswordLength": 1, "checkCommonPassword": False}}})
