"""Config checks of the cloud path: what would otherwise fail only in the cloud."""

from __future__ import annotations

import copy

import pytest

from program import aks_stack
from stacks import ConfigError, parse


def aks(**changes):
    """The aks example with `changes` applied: {dotted path: value}."""
    config, secrets = aks_stack()
    config = copy.deepcopy(config)
    for path, value in changes.items():
        node = config
        *parents, last = path.split(".")
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value
    return config, frozenset(secrets)


def refused(config, secrets=frozenset()):
    with pytest.raises(ConfigError) as caught:
        parse(config, secrets)
    return str(caught.value).splitlines()


def test_the_aks_example_passes_every_check():
    config, secrets = aks()
    parse(config, secrets)


def test_a_job_needing_more_gpus_than_its_pool_holds_is_refused_naming_both_numbers():
    # The aks example's chief and two workers take one GPU each; a pool of at most 2 GPU nodes
    # leaves one replica Pending for ever.
    lines = refused(*aks(**{"cluster.nodePools.1.maxCount": 2}))
    line = next(line for line in lines if line.startswith("mlplatform:mnist.gpus:"))
    assert "asks for 3 GPUs (Chief 1 x 1, Worker 2 x 1)" in line, line
    assert "holds at most 2 (mlplatform:cluster.nodePools[1].maxCount 2 x gpusPerNode 1)" in line, line


def test_gpu_capacity_counts_whole_pods_per_node():
    # Three workers of 2 GPUs each ask for 6 GPUs, and two nodes of 3 hold 6, but only one such
    # worker fits on each node.
    mnist = {"replicas": {"Chief": 0, "Worker": 2, "PS": 0}, "gpus": {"Worker": 2}}
    cluster = {"nodePools": [{"name": "gpu", "count": 2, "gpusPerNode": 3}]}
    parse({"cluster": cluster, "mnist": mnist})
    mnist["replicas"]["Worker"] = 3
    lines = refused({"cluster": cluster, "mnist": {**mnist, "batchSize": 96}})
    assert any("asks for 6 GPUs" in line and "holds at most 6" in line and ".count 2" in line for line in lines), lines


@pytest.mark.parametrize(
    ("path", "value", "key", "words"),
    [
        ("cluster.nodePools.1.name", "gpu-pool", "mlplatform:cluster.nodePools[1].name", "lowercase letters and digits"),
        ("cluster.nodePools.1.name", "gpupoolnumber1", "mlplatform:cluster.nodePools[1].name", "1-12 characters"),
        ("cluster.resourceGroup", "rg with spaces", "mlplatform:cluster.resourceGroup", "a resource group name"),
        ("cluster.kubernetesVersion", "v1.34", "mlplatform:cluster.kubernetesVersion", "<major.minor>"),
        ("cluster.location", "West Europe", "mlplatform:cluster.location", "westeurope"),
    ],
)
def test_azure_names_are_checked_at_preview_naming_the_key(path, value, key, words):
    lines = refused(*aks(**{path: value}))
    assert any(line.startswith(key) and words in line for line in lines), lines


def test_the_shared_volume_on_aks_gets_a_class_that_serves_read_write_many():
    from program import run_program

    config, secrets = aks_stack()
    claim = run_program(config, secrets).named("mnist-data").inputs["spec"]
    # AKS's default class (Azure Disk) is ReadWriteOnce only: the claim would stay Pending.
    assert claim["accessModes"] == ["ReadWriteMany"]
    assert claim["storageClassName"] == "azurefile-csi"


def test_read_write_many_without_a_known_class_is_refused_naming_the_key():
    existing = {"provider": "existing", "kubeconfig": "/k", "nodePools": [{"name": "cpu", "labels": {"a": "b"}}]}
    lines = refused({"cluster": existing})
    assert any(line.startswith("mlplatform:mnist.storage.storageClass: required with cluster.provider existing") for line in lines), lines
    parse({"cluster": existing, "mnist": {"storage": {"storageClass": "nfs-client"}}})


@pytest.mark.parametrize(
    ("engine", "profile"),
    [
        (None, {"networkPlugin": "azure", "networkPluginMode": "overlay", "networkDataplane": "cilium", "networkPolicy": "cilium"}),
        ("calico", {"networkPlugin": "azure", "networkPluginMode": "overlay", "networkPolicy": "calico"}),
        ("azure", {"networkPlugin": "azure", "networkPolicy": "azure"}),
    ],
)
def test_aks_clusters_enforce_network_policies(engine, profile):
    # Without an engine chosen at creation AKS accepts NetworkPolicies and ignores them.
    from program import run_program

    config, secrets = aks(**({"cluster.networkPolicy": engine} if engine else {}))
    (managed,) = run_program(config, tuple(secrets)).of_type("azure-native:containerservice:ManagedCluster")
    assert managed.inputs["networkProfile"] == profile


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"cluster": {"networkPolicy": "cilium"}}, "only used with cluster.provider aks"),
        (aks(**{"cluster.networkPolicy": "Cilium"})[0], "'cilium', 'calico', 'azure' or 'none'"),
    ],
)
def test_bad_network_policy_engine_names_the_key(config, words):
    secrets = frozenset({"jupyterhub"}) if config.get("cluster", {}).get("provider") == "aks" else frozenset()
    lines = refused(config, secrets)
    assert any(line.startswith("mlplatform:cluster.networkPolicy") and words in line for line in lines), lines
