"""Kueue: the quotas' config and its checks, and the component (manager, CRDs and webhooks from the
module, least-privilege RBAC, flavors, ClusterQueues, the training job queued as one TFJob)."""

from __future__ import annotations

import ast
import copy
import json
import re
from decimal import Decimal
from typing import Any

import pytest
import yaml

from cluster.localcluster.dns import manifests as coredns_manifests
from cluster.localcluster.nodes import REAL_NODES_ONLY
from components.hub_config.document import QUEUED_SPAWNER_CLASS, QUEUED_SPAWNER_MODULE
from components import kueue
from components.kueue import MANAGER_API_GROUPS, KueueManifests, KueueManifestsError, kueue_manifests_dir
from program import DEV_MACHINE, MOCK_API_SERVER, ROOT, dev_stack_with_upstream_images, example_stack, run_program
from stacks import ConfigError, parse
from stacks.cluster import NodePool
from vocab import kueue_api
from vocab.names import POOL_LABEL
from vocab.quantity import quantity
from vocab.kueue_api import (
    MUTATING_WEBHOOK_CONFIGURATION,
    NAMESPACE,
    POD_GROUP_LABEL,
    POD_GROUP_TOTAL_COUNT,
    QUEUE_LABEL,
    VALIDATING_WEBHOOK_CONFIGURATION,
    WEBHOOK_SERVICE,
)
from vocab.versions import KUEUE_VERSION

CLUSTER_ROLE = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole"
CRD = "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition"


def stack(**kueue: Any) -> dict[str, Any]:
    """The dev stack's config (its upstream images: the local ones need `make images`) with `kueue`
    replacing its kueue section."""
    config = dev_stack_with_upstream_images()
    config["kueue"] = kueue
    return config


def queue(name: str = "training", **quota: Any) -> dict[str, Any]:
    return {"name": name, "quotas": [{"pool": "gpu", "gpus": 2, **quota}]}


def problems(config: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(config, local_node=lambda: DEV_MACHINE)
    return str(caught.value)


# --- config ------------------------------------------------------------------------------------


def test_dev_stack_queues_training_and_gpu_notebooks_under_one_quota_of_the_gpu_pools_shares():
    settings = parse(dev_stack_with_upstream_images(), local_node=lambda: DEV_MACHINE).kueue
    assert settings.enabled and settings.training_queue == settings.notebook_queue == "training"
    gpu = next(q for q in settings.queue("training").quotas if q.pool == "gpu")
    # The GPU node's two GPUs, time-sliced two ways: four shares, as the pool advertises them.
    assert gpu.gpus == 4


def test_the_docs_team_quota_example_is_a_valid_kueue_section_of_the_dev_stack():
    """docs/training.md's example (training and notebooks in queues of a cohort) passes the preview's
    checks on the dev stack's pools."""
    text = (ROOT / "docs" / "training.md").read_text()
    section = text[text.index("## Quotas and queueing with Kueue"):]
    block = section[section.index("```yaml\n") + len("```yaml\n"):section.index("\n```", section.index("```yaml"))]
    config = dev_stack_with_upstream_images()
    config["kueue"] = yaml.safe_load(block)["mlplatform:kueue"]
    settings = parse(config, local_node=lambda: DEV_MACHINE).kueue
    assert {q.name: q.cohort for q in settings.cluster_queues} == {"training": "research", "notebooks": "research"}
    assert (settings.training_queue, settings.notebook_queue) == ("training", "notebooks")


def test_kueue_is_off_unless_enabled_and_checks_nothing_then():
    config = dev_stack_with_upstream_images()
    del config["kueue"]
    assert parse(config, local_node=lambda: DEV_MACHINE).kueue.enabled is False
    # Disabled, its queues are not checked (and not deployed).
    parse(stack(enabled=False, clusterQueues=[queue(gpus=99)]), local_node=lambda: DEV_MACHINE)


@pytest.mark.parametrize(
    ("kueue", "message"),
    [
        (
            {"enabled": True, "clusterQueues": [queue(gpus=5)]},
            r"mlplatform:kueue.clusterQueues\[0\].quotas\[0\].gpus: 5 is more than node pool gpu can back: "
            r"1 node\(s\) x 4 nvidia.com/gpu \(mlplatform:cluster.nodePools\[1\]\)",
        ),
        (
            {"enabled": True, "clusterQueues": [{"name": "q", "quotas": [{"pool": "cpu", "gpus": 1}]}]},
            r"mlplatform:kueue.clusterQueues\[0\].quotas\[0\].gpus: 1, but node pool cpu has no GPUs",
        ),
        (
            {"enabled": True, "clusterQueues": [queue(cpu="64")]},
            r"mlplatform:kueue.clusterQueues\[0\].quotas\[0\].cpu: 64 is more than node pool gpu can back: 1 node\(s\) x 2",
        ),
        (
            {"enabled": True, "clusterQueues": [queue(memory="1Ti")]},
            r"mlplatform:kueue.clusterQueues\[0\].quotas\[0\].memory: 1Ti is more than node pool gpu can back",
        ),
        (
            {"enabled": True, "clusterQueues": [{"name": "q", "quotas": [{"pool": "tpu"}]}]},
            r"mlplatform:kueue.clusterQueues\[0\].quotas\[0\].pool: tpu is not a node pool; pools: cpu, gpu",
        ),
        (
            {"enabled": True, "clusterQueues": [{"name": "q", "quotas": [{"pool": "gpu"}, {"pool": "gpu"}]}]},
            r"mlplatform:kueue.clusterQueues\[0\].quotas\[1\].pool: gpu has a quota above already",
        ),
        (
            {"enabled": True, "clusterQueues": [queue(), queue()]},
            r"mlplatform:kueue.clusterQueues\[1\].name: training is the name of a queue above already",
        ),
        (
            {"enabled": True, "clusterQueues": [queue()], "trainingQueue": "trainng"},
            r"mlplatform:kueue.trainingQueue: trainng is not a ClusterQueue of kueue.clusterQueues; queues: training",
        ),
        (
            {"enabled": True, "clusterQueues": [queue(cpu="2", memory="8Gi")], "notebookQueue": "notebook"},
            r"mlplatform:kueue.notebookQueue: notebook is not a ClusterQueue of kueue.clusterQueues; queues: training",
        ),
        (
            # The dev stack's GPU profile offers two GPUs (gpuChoices): a quota of one never admits that.
            {"enabled": True, "clusterQueues": [queue(gpus=1, cpu="2", memory="8Gi")], "notebookQueue": "training"},
            r"mlplatform:kueue.clusterQueues\[0\].quotas\[0\].gpus: 1 is less than one server of profile "
            r"'TensorFlow \(GPU\)' \(mlplatform:jupyterhub.profiles\[1\]\) asks for \(2\); it would wait until "
            r"its start timeout, every time",
        ),
        (
            # cpu and memory default to 0: the GPU server's guarantees (1 core, 8Gi) never fit.
            {"enabled": True, "clusterQueues": [queue(memory="8Gi")], "notebookQueue": "training"},
            r"mlplatform:kueue.clusterQueues\[0\].quotas\[0\].cpu: 0 is less than one server of profile "
            r"'TensorFlow \(GPU\)'",
        ),
        (
            {"enabled": True, "clusterQueues": [queue(cpu="2", memory="8Gi")], "notebookQueue": "training",
             "notebookProfiles": "all"},
            r"mlplatform:kueue.notebookQueue: ClusterQueue training has no quota of node pool cpu, where the servers "
            r"of profile 'TensorFlow \(CPU\)' \(mlplatform:jupyterhub.profiles\[0\]\) run; give "
            r"mlplatform:kueue.clusterQueues\[0\].quotas one",
        ),
        (
            {"enabled": True, "clusterQueues": [queue(cpu="2", memory="8Gi")], "notebookQueue": "training",
             "notebookProfiles": "gpus"},
            r"mlplatform:kueue.notebookProfiles: .*'gpu' or 'all'",
        ),
        (
            {"enabled": True},
            r"mlplatform:kueue.clusterQueues: Kueue is enabled without a ClusterQueue",
        ),
        (
            {"enabled": True, "clusterQueues": [{"name": "q", "quotas": []}]},
            r"mlplatform:kueue.clusterQueues\[0\].quotas: give at least one pool's quota",
        ),
        (
            {"enabled": True, "clusterQueues": [{"name": "q", "quotas": [], "quota": []}]},
            r"mlplatform:kueue.clusterQueues\[0\].quota: unknown key; allowed: name, cohort, quotas$",
        ),
    ],
)
def test_a_quota_no_pool_can_back_fails_naming_its_key(kueue, message):
    found = problems(stack(**kueue))
    # One message per bad value: the "all" case names the CPU pool once for each CPU profile.
    assert len(found.splitlines()) == 1 or kueue.get("notebookProfiles") == "all", found
    assert re.search(message, found), found


def test_gpu_quota_counts_the_shares_a_pool_advertises():
    """The dev stack's GPU node time-slices its two GPUs into four: a quota of four is backed."""
    parse(stack(enabled=True, clusterQueues=[queue(gpus=4)]), local_node=lambda: DEV_MACHINE)
    config = stack(enabled=True, clusterQueues=[queue(gpus=4)])
    del config["cluster"]["nodePools"][1]["gpuSharing"]
    assert "gpus: 4 is more than node pool gpu can back: 1 node(s) x 2 nvidia.com/gpu" in problems(config)


def test_kueue_on_simulated_nodes_is_refused_naming_the_key():
    config = example_stack("kwok")
    config["kueue"] = {"enabled": True, "clusterQueues": [{"name": "q", "quotas": [{"pool": config["cluster"]["nodePools"][0]["name"]}]}]}
    assert "mlplatform:kueue.enabled: Kueue's manager runs as a pod, and a simulated cluster" in problems(config)


# --- the component -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deployment():
    return run_program(dev_stack_with_upstream_images())


def test_manifests_come_from_the_pinned_module():
    directory = kueue_manifests_dir()
    assert directory.name == f"kueue-manifests-{KUEUE_VERSION}"
    crds = {c["metadata"]["name"] for c in KueueManifests(directory).crds()}
    assert {"clusterqueues.kueue.x-k8s.io", "localqueues.kueue.x-k8s.io", "workloads.kueue.x-k8s.io",
            "resourceflavors.kueue.x-k8s.io"} <= crds


def test_the_fast_loader_reads_the_same_documents_as_pyyamls_own():
    directory = kueue_manifests_dir()
    assert kueue.SAFE_LOADER is yaml.CSafeLoader, "the pinned PyYAML wheel carries libyaml"
    for path in sorted((directory / "crd").glob("*.yaml")):
        own = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        assert KueueManifests(directory)._load_all(f"crd/{path.name}") == own, path.name


def without_descriptions(node):
    if isinstance(node, dict):
        return {key: without_descriptions(value) for key, value in node.items() if key != "description"}
    if isinstance(node, list):
        return [without_descriptions(value) for value in node]
    return node


def test_the_workload_crds_pod_templates_lose_only_their_field_descriptions():
    directory = kueue_manifests_dir()
    manifests = KueueManifests(directory)
    as_generated = {c["metadata"]["name"]: c for name in sorted(p.name for p in (directory / "crd").glob("*.yaml"))
                    for c in manifests._load_all(f"crd/{name}")}
    deployed = {c["metadata"]["name"]: c for c in manifests.crds()}
    assert deployed.keys() == as_generated.keys()
    for name, crd in deployed.items():
        # The same schema for the API server to validate with: only descriptions differ.
        assert without_descriptions(crd) == without_descriptions(as_generated[name]), name
        if name != "workloads.kueue.x-k8s.io":
            assert crd == as_generated[name], f"{name} is deployed as generated"
    workload = deployed["workloads.kueue.x-k8s.io"]
    assert len(json.dumps(workload)) < len(json.dumps(as_generated["workloads.kueue.x-k8s.io"])) / 3
    for version in workload["spec"]["versions"]:
        spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
        template = spec["properties"]["podSets"]["items"]["properties"]["template"]
        assert template["description"], "the template itself keeps its line"
        assert without_descriptions({k: v for k, v in template.items() if k != "description"}) == \
            {k: v for k, v in template.items() if k != "description"}, "no field description inside the template"
        assert spec["properties"]["podSets"]["description"], "descriptions outside the template stay"


def test_missing_manifests_name_the_build_step(tmp_path):
    with pytest.raises(KueueManifestsError, match=r"run `tools/build.sh kueue-manifests`"):
        KueueManifests(tmp_path).crds()


def test_manager_runs_the_pinned_upstream_image_restricted(deployment):
    pod = deployment.named("kueue-deployment").inputs["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == f"registry.k8s.io/kueue/kueue:{KUEUE_VERSION}"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": True,
    }
    labels = deployment.named("kueue-ns").inputs["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_dev_stack_runs_the_local_kueue_image_never_pulled():
    from images.recipe import load

    deployment = run_program(example_stack("dev"))
    (container,) = deployment.named("kueue-deployment").inputs["spec"]["template"]["spec"]["containers"]
    assert container["image"] == load("kueue").reference()
    assert container["imagePullPolicy"] == "Never"


def test_manager_config_queues_servers_and_tfjobs_only_in_the_hubs_and_the_trainings_namespaces(deployment):
    config = yaml.safe_load(deployment.named("kueue-config").inputs["data"]["controller_manager_config.yaml"])
    # The hub's servers as plain pods, the training job as a TFJob (Kueue's integration for it).
    assert config["integrations"] == {"frameworks": ["pod", "kubeflow.org/tfjob"]}
    assert config["manageJobsWithoutQueueName"] is False
    assert config["managedJobsNamespaceSelector"]["matchExpressions"][0]["values"] == ["jupyterhub", "mnist"]
    assert config["internalCertManagement"]["webhookServiceName"] == WEBHOOK_SERVICE
    assert config["leaderElection"] == {"leaderElect": False}


def test_rbac_is_the_generated_role_less_the_integrations_that_are_off(deployment):
    (role,) = [r for r in deployment.of_type(CLUSTER_ROLE) if r.inputs["metadata"]["name"] == "kueue-controller-manager"]
    rules = role.inputs["rules"]
    groups = {g for rule in rules for g in rule["apiGroups"]}
    assert groups <= MANAGER_API_GROUPS | {"kubeflow.org"}
    assert not groups & {"batch", "ray.io", "jobset.x-k8s.io", "trainer.kubeflow.org"}
    # Of Kubeflow's API the TFJob's rules only, as generated: the TFJob integration suspends and
    # resumes the job, and keeps its finalizer and status.
    assert [r for r in rules if "kubeflow.org" in r["apiGroups"]] == [
        {"apiGroups": ["kubeflow.org"], "resources": ["tfjobs/finalizers"], "verbs": ["get", "update"]},
        {"apiGroups": ["kubeflow.org"], "resources": ["tfjobs/status"], "verbs": ["get", "patch", "update"]},
        {"apiGroups": ["kubeflow.org"], "resources": ["tfjobs"], "verbs": ["delete", "get", "list", "patch", "update", "watch"]},
    ]
    for rule in rules:
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in rule.get(field, []), rule
    assert "secrets" not in {r for rule in rules for r in rule["resources"]}, "the webhook Secret is read in kueue-system only"
    named = {n for rule in rules for n in rule.get("resourceNames", [])}
    assert {MUTATING_WEBHOOK_CONFIGURATION, VALIDATING_WEBHOOK_CONFIGURATION} <= named


def test_pod_and_tfjob_webhooks_apply_only_in_the_namespaces_they_queue(deployment):
    hooks = [*deployment.named("kueue-mutating-webhook").inputs["webhooks"],
             *deployment.named("kueue-validating-webhook").inputs["webhooks"]]
    scoped = {h["name"]: h for h in hooks if {g for rule in h["rules"] for g in rule["apiGroups"]} != {"kueue.x-k8s.io"}}
    # The hub's servers are plain pods; the training job's pods are the operator's, never Kueue's.
    assert sorted(scoped) == ["mpod.kb.io", "mtfjob.kb.io", "vpod.kb.io", "vtfjob.kb.io"]
    for name, namespace in (("pod", "jupyterhub"), ("tfjob", "mnist")):
        for hook in (scoped[f"m{name}.kb.io"], scoped[f"v{name}.kb.io"]):
            assert hook["namespaceSelector"]["matchExpressions"][0]["values"] == [namespace], hook["name"]
            # Only what has a queue name waits on Kueue's webhook: the hub's and the proxy's pods never do.
            assert hook["objectSelector"] == {"matchExpressions": [{"key": QUEUE_LABEL, "operator": "Exists"}]}
    for hook in hooks:
        assert hook["clientConfig"]["service"] == {**hook["clientConfig"]["service"], "name": WEBHOOK_SERVICE, "namespace": NAMESPACE}


def test_the_visibility_api_is_registered_for_the_managers_server(deployment):
    """Kueue's on-demand visibility API: the manager serves it (the feature gate left at its
    default, on), behind an APIService of v1beta2 and a Service on its port."""
    (container,) = deployment.named("kueue-deployment").inputs["spec"]["template"]["spec"]["containers"]
    assert not [a for a in container["args"] if "VisibilityOnDemand" in a], container["args"]
    assert {"name": "visibility", "containerPort": 8082, "protocol": "TCP"} in container["ports"]
    # Its self-signed certificate goes to a writable emptyDir (the root filesystem is read-only).
    pod = deployment.named("kueue-deployment").inputs["spec"]["template"]["spec"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "visibility"]
    assert mount["mountPath"] == "/visibility"
    assert {"name": "visibility", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}} in pod["volumes"]
    service = deployment.named("kueue-visibility-svc").inputs
    assert service["metadata"] == {**service["metadata"], "name": kueue_api.VISIBILITY_SERVICE, "namespace": NAMESPACE}
    assert service["spec"]["selector"] == deployment.named("kueue-deployment").inputs["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [{"name": "https", "port": 443, "targetPort": 8082, "protocol": "TCP"}]
    (api,) = deployment.of_type("kubernetes:apiregistration.k8s.io/v1:APIService")
    assert api.inputs["metadata"]["name"] == "v1beta2.visibility.kueue.x-k8s.io"
    assert api.inputs["spec"] == {
        "group": "visibility.kueue.x-k8s.io", "version": "v1beta2", "groupPriorityMinimum": 100, "versionPriority": 100,
        "service": {"name": kueue_api.VISIBILITY_SERVICE, "namespace": NAMESPACE, "port": 443},
        "insecureSkipTLSVerify": True,
    }
    # The manager is reached on the webhook's port and the visibility API's, nothing else.
    policy = deployment.named("kueue-netpol-manager").inputs["spec"]
    assert policy["ingress"] == [{"ports": [{"protocol": "TCP", "port": 9443}, {"protocol": "TCP", "port": 8082}]}]


def test_the_visibility_server_delegates_authentication_and_authorization_only(deployment):
    """The manager as an API server checks callers with the API server (system:auth-delegator:
    TokenReviews and SubjectAccessReviews) and reads the client CAs in kube-system, nothing more."""
    subject = [{"kind": "ServiceAccount", "name": "kueue-controller-manager", "namespace": NAMESPACE}]
    delegator = deployment.named("kueue-visibility-auth-delegator").inputs
    assert delegator["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                     "name": "system:auth-delegator"}
    assert delegator["subjects"] == subject
    reader = deployment.named("kueue-visibility-auth-reader").inputs
    assert reader["metadata"]["namespace"] == "kube-system"
    assert reader["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": "extension-apiserver-authentication-reader"}
    assert reader["subjects"] == subject
    # The only bindings to roles the stack does not write itself.
    borrowed = [b.name for t in ("ClusterRoleBinding", "RoleBinding")
                for b in deployment.of_type(f"kubernetes:rbac.authorization.k8s.io/v1:{t}")
                if b.inputs["roleRef"]["name"] in ("system:auth-delegator", "extension-apiserver-authentication-reader")]
    assert sorted(borrowed) == ["kueue-visibility-auth-delegator", "kueue-visibility-auth-reader"]


def test_converted_crds_point_at_the_managers_conversion_webhook(deployment):
    crds = {r.inputs["metadata"]["name"]: r.inputs["spec"] for r in deployment.of_type(CRD)}
    conversion = crds["clusterqueues.kueue.x-k8s.io"]["conversion"]
    assert conversion["strategy"] == "Webhook"
    assert conversion["webhook"]["clientConfig"]["service"]["name"] == WEBHOOK_SERVICE
    assert "conversion" not in crds["resourceflavors.kueue.x-k8s.io"]


def test_flavors_are_the_pools_and_the_gpu_quota_is_the_pools_resource(deployment):
    gpu = deployment.named("kueue-flavor-gpu").inputs["spec"]
    assert gpu == {"nodeLabels": {"mlplatform.dev/pool": "gpu"}, "nodeTaints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]}
    spec = deployment.named("kueue-cq-training").inputs["spec"]
    (group,) = spec["resourceGroups"]
    assert group["coveredResources"] == ["cpu", "memory", "nvidia.com/gpu"]
    quotas = {f["name"]: {r["name"]: r["nominalQuota"] for r in f["resources"]} for f in group["flavors"]}
    assert quotas == {
        "pool-cpu": {"cpu": "1500m", "memory": "8Gi", "nvidia.com/gpu": "0"},
        "pool-gpu": {"cpu": "2", "memory": "16Gi", "nvidia.com/gpu": "4"},
    }


def lands_on(pod: dict[str, Any], pool: NodePool) -> bool:
    """Whether the scheduler may place `pod` (a pod spec) on a node of `pool`: it selects no other
    pool and tolerates every taint of this one."""
    if (pod.get("nodeSelector") or {}).get(POOL_LABEL, pool.name) != pool.name:
        return False
    tolerated = {t["key"] for t in pod.get("tolerations") or []}
    return all(taint.key in tolerated for taint in pool.taints)


def test_the_dev_stacks_quotas_leave_each_node_room_for_the_pods_that_do_not_queue(deployment):
    """Kueue counts only what queues. The platform's own pods (the stack's Deployments and the
    cluster's CoreDNS) share the pools with the queued ones, so each pool's quota is what is left of
    its node after them; otherwise Kueue admits a job whose last pod stays Pending with
    "Insufficient cpu", holding its quota (seen on the real nodes, 2026-12-07: the CPU pool's quota
    was the node's 2 cores, and these pods request 450m of them)."""
    settings = parse(dev_stack_with_upstream_images(), local_node=lambda: DEV_MACHINE)
    workloads = ("Deployment", "StatefulSet", "DaemonSet")
    templates = [r.manifest()["spec"] for r in deployment.kubernetes_objects() if r.type.split(":")[-1] in workloads]
    (api_address, *_), api_port = MOCK_API_SERVER
    coredns = coredns_manifests("coredns", api_address, api_port, **REAL_NODES_ONLY)
    templates += [o["spec"] for o in coredns if o["kind"] in workloads]
    (queue,) = settings.kueue.cluster_queues
    for quota in queue.quotas:
        pool = next(p for p in settings.cluster.node_pools if p.name == quota.pool)
        platform = {"cpu": Decimal(0), "memory": Decimal(0)}
        for spec in templates:
            if lands_on(spec["template"]["spec"], pool):
                for container in spec["template"]["spec"]["containers"]:
                    for resource, asked in container.get("resources", {}).get("requests", {}).items():
                        platform[resource] += quantity(asked) * int(spec.get("replicas", 1))
        # What a node of the pool offers, as the quota's own check reads it (stacks/kueue.py).
        allocatable = settings.cluster.pool_capacity(pool).allocatable
        for resource in ("cpu", "memory"):
            node = quantity(getattr(allocatable, resource)) * pool.node_count
            assert quantity(getattr(quota, resource)) + platform[resource] <= node, (
                f"pool {pool.name}: a quota of {getattr(quota, resource)} {resource} and the platform's "
                f"{platform[resource]} do not fit the node's {node}")
    # The CPU pool carries the hub, the proxy, TensorBoard, Kueue, the operator and CoreDNS.
    cpu_pool = next(p for p in settings.cluster.node_pools if p.name == "cpu")
    assert sum(lands_on(s["template"]["spec"], cpu_pool) for s in templates) == 6


def test_cohort_is_set_where_configured():
    config = dev_stack_with_upstream_images()
    config["kueue"] = copy.deepcopy(config["kueue"])
    config["kueue"]["clusterQueues"][0]["cohort"] = "team-a"
    spec = run_program(config).named("kueue-cq-training").inputs["spec"]
    assert spec["cohortName"] == "team-a"


def test_the_tfjob_queues_in_the_training_queue_and_its_pods_do_not(deployment):
    job = _tfjob(deployment)
    assert job["metadata"]["labels"][QUEUE_LABEL] == "training"
    # Kueue's webhook suspends it at creation and Kueue resumes it once admitted: not the stack's.
    assert "suspend" not in job["spec"]["runPolicy"]
    for kind, spec in job["spec"]["tfReplicaSpecs"].items():
        metadata = spec["template"]["metadata"]
        assert not {QUEUE_LABEL, POD_GROUP_LABEL} & set(metadata["labels"]), kind
        assert POD_GROUP_TOTAL_COUNT not in metadata.get("annotations", {}), kind
    # Kueue refuses to change the queue of a job it let run: a changed queue is a new job, the old
    # one deleted first (same name). Turning Kueue on or off on a running stack relies on it. So is
    # any change to a queued job's spec: Kueue's node selector from the admission it had would stay.
    options = deployment.options["mnist-tfjob"]
    assert options.replace_on_changes == [f'metadata.labels["{QUEUE_LABEL}"]', "spec"]
    assert options.delete_before_replace
    local_queue = deployment.named("mnist-queue").inputs
    assert local_queue["metadata"] == {**local_queue["metadata"], "name": "training", "namespace": "mnist"}
    assert local_queue["spec"] == {"clusterQueue": "training"}


@pytest.mark.parametrize("off", ["disabled", "absent"])
def test_without_kueue_the_stack_is_as_before(off):
    config = dev_stack_with_upstream_images()
    if off == "absent":
        del config["kueue"]
    else:
        config["kueue"] = {**config["kueue"], "enabled": False}
    deployment = run_program(config)
    assert not [r for r in deployment.resources if r.name.startswith("kueue") or r.name.endswith("-queue")]
    assert QUEUE_LABEL not in _tfjob(deployment)["metadata"]["labels"]
    # Without a queue the operator takes a changed job as it is (more workers, other resources).
    assert deployment.options["mnist-tfjob"].replace_on_changes == [f'metadata.labels["{QUEUE_LABEL}"]']
    for spec in _tfjob(deployment)["spec"]["tfReplicaSpecs"].values():
        assert QUEUE_LABEL not in spec["template"]["metadata"]["labels"]
        assert "annotations" not in spec["template"]["metadata"]
    document = _hub_document(deployment)
    assert document["traits"]["JupyterHub"]["spawner_class"] == "kubespawner.KubeSpawner"
    assert "QueuedKubeSpawner" not in document["traits"]
    for entry in document["traits"]["KubeSpawner"]["profile_list"]:
        assert "extra_labels" not in entry["kubespawner_override"], entry["slug"]
    assert QUEUED_SPAWNER_MODULE.name not in deployment.named("jupyterhub-config").inputs["data"]
    assert not {kueue_api.GROUP, kueue_api.VISIBILITY_GROUP} & {g for rule in _hub_role(deployment) for g in rule["apiGroups"]}
    assert not deployment.of_type("kubernetes:apiregistration.k8s.io/v1:APIService")


# --- notebooks in the queue --------------------------------------------------------------------


def test_gpu_notebooks_queue_in_a_local_queue_of_the_hubs_namespace(deployment):
    local_queue = deployment.named("jupyterhub-queue").inputs
    assert local_queue["metadata"] == {**local_queue["metadata"], "name": "notebooks", "namespace": "jupyterhub"}
    assert local_queue["spec"] == {"clusterQueue": "training"}
    profiles = {e["slug"]: e["kubespawner_override"] for e in _hub_document(deployment)["traits"]["KubeSpawner"]["profile_list"]}
    # GPU servers queue; CPU servers start as before (the hub's limits bound them).
    assert profiles["tensorflow-gpu"]["extra_labels"] == {QUEUE_LABEL: "notebooks"}
    assert "extra_labels" not in profiles["tensorflow-cpu"]
    assert "extra_labels" not in profiles["tensorflow-cpu-research"]


def test_every_profile_queues_with_notebook_profiles_all():
    config = dev_stack_with_upstream_images()
    config["kueue"] = copy.deepcopy(config["kueue"])
    config["kueue"]["clusterQueues"][0]["quotas"][0].update(cpu="2", memory="8Gi")
    config["kueue"]["notebookProfiles"] = "all"
    document = _hub_document(run_program(config))
    for entry in document["traits"]["KubeSpawner"]["profile_list"]:
        assert entry["kubespawner_override"]["extra_labels"] == {QUEUE_LABEL: "notebooks"}, entry["slug"]


def test_the_hub_runs_the_queued_spawner_and_may_only_read_workloads_in_its_namespace(deployment):
    document = _hub_document(deployment)
    assert document["traits"]["JupyterHub"]["spawner_class"] == QUEUED_SPAWNER_CLASS
    assert document["traits"]["QueuedKubeSpawner"] == {"cluster_queue": "training"}
    data = deployment.named("jupyterhub-config").inputs["data"]
    assert data[QUEUED_SPAWNER_MODULE.name] == QUEUED_SPAWNER_MODULE.read_text()
    role = deployment.named("jupyterhub-hub-role").inputs
    assert role["metadata"]["namespace"] == "jupyterhub"
    kueue_rules = [r for r in role["rules"] if kueue_api.GROUP in r["apiGroups"]]
    assert kueue_rules == [{"apiGroups": [kueue_api.GROUP], "resources": ["workloads"], "verbs": ["get", "list"]}]
    # Its LocalQueue's pending workloads (their positions) through the visibility API: get, that queue only.
    visibility_rules = [r for r in role["rules"] if kueue_api.VISIBILITY_GROUP in r["apiGroups"]]
    assert visibility_rules == [{"apiGroups": ["visibility.kueue.x-k8s.io"], "resources": ["localqueues/pendingworkloads"],
                                 "resourceNames": ["notebooks"], "verbs": ["get"]}]
    # Nothing cluster-wide for the hub.
    for binding in deployment.of_type("kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding"):
        assert "hub" not in {s["name"] for s in binding.inputs["subjects"]}, binding.name


def test_the_queued_spawner_speaks_kueues_names_as_the_vocabulary_does():
    """queued_spawner.py runs in the hub without mlplatform: its copies of Kueue's names are these.
    Read, not imported: importing KubeSpawner's client here would fix its kubeconfig for the hub tests."""
    module = ast.parse(QUEUED_SPAWNER_MODULE.read_text())
    constants = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in module.body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and isinstance(node.value, ast.Constant)
    }
    for name in ("QUEUE_LABEL", "SCHEDULING_GATE", "GROUP", "VERSION", "WORKLOADS", "JOB_UID_LABEL", "QUOTA_RESERVED",
                 "VISIBILITY_GROUP", "VISIBILITY_VERSION", "PENDING_WORKLOADS"):
        assert constants.get(name) == getattr(kueue_api, name), name


def _hub_document(deployment) -> dict[str, Any]:
    return json.loads(deployment.named("jupyterhub-config").inputs["data"]["mlplatform-hub.json"])


def _hub_role(deployment) -> list[dict[str, Any]]:
    return deployment.named("jupyterhub-hub-role").inputs["rules"]


def _tfjob(deployment) -> dict[str, Any]:
    (job,) = [r for r in deployment.resources if r.type == "kubernetes:kubeflow.org/v1:TFJob"]
    return job.inputs


def test_the_stack_prints_the_command_that_shows_its_queues():
    deployment = run_program(dev_stack_with_upstream_images())
    command = deployment.outputs["kueueQueues"]
    assert command.startswith("kubectl get clusterqueues,localqueues -A && kubectl get workloads -A -o \"custom-columns=")
    assert "RESERVED:.status.conditions[?(@.type=='QuotaReserved')].status" in command
