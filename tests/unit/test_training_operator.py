"""The training operator: TFJob only, least-privilege RBAC, webhook wiring, the CRD."""

from __future__ import annotations

import pytest

from components.training_operator import TrainingOperator, TrainingOperatorArgs
from vocab.versions import PINS
from program import MOCK_API_SERVER, aks_stack, dev_stack_with_upstream_images, example_stack, run_components, run_program

CRD = "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition"


def rules_of(deployment, type_token):
    return [
        rule
        for r in deployment.of_type(type_token)
        if r.inputs["metadata"]["name"] == "training-operator"
        for rule in r.inputs["rules"]
    ]


def test_operator_reconciles_tfjobs_only_with_a_pinned_image():
    # The upstream image, as every stack but the dev stack (images.local) runs it.
    deployment = run_program(dev_stack_with_upstream_images())
    pod = deployment.named("training-operator-deployment").inputs["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert "--enable-scheme=tfjob" in container["args"]
    assert container["image"] == f"ghcr.io/kubeflow/training-v1/training-operator:{PINS['TRAINING_OPERATOR_IMAGE_TAG']}"
    assert container["imagePullPolicy"] == "Always"
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_dev_stack_runs_the_local_operator_image_never_pulled():
    """images.local: the manager built here (images/operator), which the real nodes have imported
    and no registry serves."""
    from images.recipe import load

    deployment = run_program(example_stack("dev"))
    pod = deployment.named("training-operator-deployment").inputs["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == load("operator").reference()
    assert container["imagePullPolicy"] == "Never"
    assert container["command"] == list(load("operator").config.entrypoint)
    assert pod["securityContext"]["runAsUser"] == int(load("operator").config.user.split(":")[0])


def test_rbac_has_no_wildcards_and_secrets_stay_in_the_operator_namespace():
    deployment = run_program(example_stack("dev"))
    cluster_rules = rules_of(deployment, "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole")
    namespace_rules = rules_of(deployment, "kubernetes:rbac.authorization.k8s.io/v1:Role")
    for rule in cluster_rules + namespace_rules:
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in rule.get(field, []), rule
    cluster_resources = {res for rule in cluster_rules for res in rule["resources"]}
    assert "secrets" not in cluster_resources, "the webhook certificate Secret is read in kubeflow only"
    assert cluster_resources == {
        "pods", "services", "events", "tfjobs", "tfjobs/status", "tfjobs/finalizers", "validatingwebhookconfigurations",
        "podgroups",
    }
    update_webhook = next(r for r in cluster_rules if r["resources"] == ["validatingwebhookconfigurations"] and "update" in r["verbs"])
    assert update_webhook["resourceNames"] == ["validator.training-operator.kubeflow.org"]
    assert deployment.named("training-operator-role").inputs["metadata"]["namespace"] == "kubeflow"


def podgroup_verbs(deployment):
    rules = rules_of(deployment, "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole")
    return {group: rule["verbs"] for rule in rules if rule["resources"] == ["podgroups"] for group in rule["apiGroups"]}


def test_operator_may_watch_the_podgroups_of_either_gang_scheduler():
    # The operator watches PodGroups wherever Volcano's or scheduler-plugins' CRD exists, gang
    # scheduling or not; a watch it may not make keeps its cache from syncing, and it exits.
    verbs = podgroup_verbs(run_program(example_stack("dev")))
    assert verbs == {"scheduling.volcano.sh": ["list", "watch"], "scheduling.x-k8s.io": ["list", "watch"]}
    args = run_program(example_stack("dev")).named("training-operator-deployment").inputs["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [a for a in args if a.startswith("--gang-scheduler-name")], "gang scheduling is off unless asked for"


@pytest.mark.parametrize(
    ("scheduler", "group", "other"),
    [
        ("volcano", "scheduling.volcano.sh", "scheduling.x-k8s.io"),
        ("scheduler-plugins-scheduler", "scheduling.x-k8s.io", "scheduling.volcano.sh"),
    ],
)
def test_gang_scheduling_may_manage_podgroups_of_its_scheduler_only(scheduler, group, other):
    deployment = run_components(lambda: TrainingOperator("training-operator", TrainingOperatorArgs(gang_scheduler=scheduler)))
    verbs = podgroup_verbs(deployment)
    assert verbs[group] == ["create", "delete", "get", "list", "update", "watch"]
    assert verbs[other] == ["list", "watch"]
    container = deployment.named("training-operator-deployment").inputs["spec"]["template"]["spec"]["containers"][0]
    assert f"--gang-scheduler-name={scheduler}" in container["args"]


def test_webhook_is_deployed_where_the_api_server_can_reach_the_operator():
    config, secrets = aks_stack()
    deployment = run_program(config, secrets)
    (webhook,) = deployment.of_type("kubernetes:admissionregistration.k8s.io/v1:ValidatingWebhookConfiguration")
    assert webhook.inputs["metadata"]["name"] == "validator.training-operator.kubeflow.org"
    hook = webhook.inputs["webhooks"][0]
    assert hook["clientConfig"]["service"] == {"name": "training-operator", "namespace": "kubeflow", "path": "/validate-kubeflow-org-v1-tfjob"}
    assert hook["rules"][0]["resources"] == ["tfjobs"]
    service = deployment.named("training-operator-svc").inputs
    assert {"name": "webhook-server", "port": 443, "targetPort": 9443, "protocol": "TCP"} in service["spec"]["ports"]


def test_simulated_cluster_has_no_webhook_the_api_server_could_not_reach():
    deployment = run_program(example_stack("kwok"))
    # The configuration exists, for the operator's certificate rotator to find, but lists no webhook.
    (webhook,) = deployment.of_type("kubernetes:admissionregistration.k8s.io/v1:ValidatingWebhookConfiguration")
    assert webhook.inputs["metadata"]["name"] == "validator.training-operator.kubeflow.org"
    assert webhook.inputs.get("webhooks", []) == []


def test_crd_is_tfjobs_v1_with_status_and_a_generated_pod_template():
    (crd,) = [c for c in run_program(example_stack("dev")).of_type(CRD) if c.name == "training-operator-tfjob-crd"]
    spec = crd.inputs["spec"]
    assert crd.inputs["metadata"]["name"] == "tfjobs.kubeflow.org"
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1", True, True)
    assert version["subresources"] == {"status": {}}
    schema = version["schema"]["openAPIV3Schema"]
    replica = schema["properties"]["spec"]["properties"]["tfReplicaSpecs"]["additionalProperties"]
    pod_spec = replica["properties"]["template"]["properties"]["spec"]["properties"]
    # Generated from the Kubernetes definitions: every PodSpec field is there, typed.
    assert pod_spec["containers"]["items"]["properties"]["resources"]["properties"]["limits"]["additionalProperties"] == {
        "x-kubernetes-int-or-string": True
    }
    assert {"nodeSelector", "tolerations", "affinity", "volumes", "initContainers"} <= set(pod_spec)
    # Free strings and integers, as upstream's CRD has them; the stack's own job is checked at preview.
    assert replica["properties"]["restartPolicy"] == {"type": "string"}
    assert replica["properties"]["replicas"] == {"type": "integer", "format": "int32"}
    run_policy = schema["properties"]["spec"]["properties"]["runPolicy"]["properties"]
    assert run_policy["cleanPodPolicy"] == {"type": "string"}


def test_gang_scheduling_is_a_config_choice():
    config = example_stack("dev")
    config["mnist"]["gangScheduler"] = "volcano"
    deployment = run_program(config)
    assert podgroup_verbs(deployment)["scheduling.volcano.sh"] == ["create", "delete", "get", "list", "update", "watch"]
    container = deployment.named("training-operator-deployment").inputs["spec"]["template"]["spec"]["containers"][0]
    assert "--gang-scheduler-name=volcano" in container["args"]


def test_with_local_images_no_container_of_the_stack_is_ever_pulled():
    """The dev stack's images are the local builds, which the real nodes import and no registry
    serves: every container (and KubeSpawner's user pods) says Never; the upstream images keep
    their policies."""
    import json

    for config, policies in ((example_stack("dev"), {"Never"}), (dev_stack_with_upstream_images(), {"Always", None})):
        deployment = run_program(config)
        seen = set()
        for resource in deployment.kubernetes_objects():
            manifest = resource.manifest()
            templates = [manifest["spec"]["template"]] if manifest["kind"] == "Deployment" else []
            if manifest["kind"] == "TFJob":
                templates = [r["template"] for r in manifest["spec"]["tfReplicaSpecs"].values()]
            seen |= {c.get("imagePullPolicy") for t in templates for c in t["spec"]["containers"]}
        hub_config = next(r.manifest() for r in deployment.kubernetes_objects()
                          if r.manifest()["kind"] == "ConfigMap" and r.manifest()["metadata"]["name"] == "hub-config")
        document = json.loads(next(v for k, v in hub_config["data"].items() if k.endswith(".json")))
        seen.add(document["traits"]["KubeSpawner"].get("image_pull_policy"))
        assert seen == policies, (config.get("images"), seen)


def test_the_operators_namespace_is_restricted_and_denies_all_but_the_webhook_and_the_api_server():
    deployment = run_program(example_stack("dev"))
    (namespace,) = [r.manifest() for r in deployment.of_type("kubernetes:core/v1:Namespace")
                    if r.inputs["metadata"]["name"] == "kubeflow"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    found = {r.inputs["metadata"]["name"]: r.manifest()["spec"]
             for r in deployment.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
             if r.inputs["metadata"]["namespace"] == "kubeflow"}
    assert found["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    operator = found["training-operator"]
    # The API server calls the webhook from an address no rule can name; nothing else is let in.
    assert operator["ingress"] == [{"ports": [{"protocol": "TCP", "port": 9443}]}]
    (address,), port = MOCK_API_SERVER
    assert operator["egress"] == [{"to": [{"ipBlock": {"cidr": f"{address}/32"}}], "ports": [{"protocol": "TCP", "port": port}]}]
