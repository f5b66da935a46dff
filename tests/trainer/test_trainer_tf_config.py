"""TF_CONFIG handling: the Kubeflow ``master`` becomes TF2's ``chief``, and the cluster picks the strategy."""

import json

import pytest

from trainer.tf_config import (ClusterConfigError, StrategyKind, is_chief, resolve_role, strategy_kind,
                             use_chief_for_master)

TUTORIAL_CLUSTER = {
    "master": ["distributed-mnist-master-5oz2-0:2222"],
    "ps": ["distributed-mnist-ps-5oz2-0:2222"],
    "worker": ["distributed-mnist-worker-5oz2-0:2222", "distributed-mnist-worker-5oz2-1:2222"],
}


def tf_config(task_type: str, index: int, cluster: dict = TUTORIAL_CLUSTER) -> dict[str, str]:
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index},
                                     "environment": "cloud"})}


@pytest.mark.parametrize("task_type, index", [("master", 0), ("worker", 1), ("ps", 0)])
def test_master_is_rewritten_to_chief_in_every_process(task_type, index):
    environ = tf_config(task_type, index)
    use_chief_for_master(environ)
    config = json.loads(environ["TF_CONFIG"])
    assert config["cluster"] == {"chief": TUTORIAL_CLUSTER["master"], "ps": TUTORIAL_CLUSTER["ps"],
                                 "worker": TUTORIAL_CLUSTER["worker"]}
    assert config["task"] == {"type": "chief" if task_type == "master" else task_type, "index": index}


def test_no_tf_config_is_left_alone():
    environ = {}
    use_chief_for_master(environ)
    assert environ == {}


def test_master_and_chief_together_are_rejected():
    environ = tf_config("worker", 0, {**TUTORIAL_CLUSTER, "chief": ["c:2222"]})
    with pytest.raises(ClusterConfigError, match="both a 'master' and a 'chief'"):
        use_chief_for_master(environ)


def test_tf2_resolver_sees_the_rewritten_master_as_chief(monkeypatch):
    from trainer.distribute import make_resolver

    environ = tf_config("master", 0)
    use_chief_for_master(environ)
    monkeypatch.setenv("TF_CONFIG", environ["TF_CONFIG"])
    role = resolve_role(make_resolver())
    assert (role.task_type, role.task_id, role.kind) == ("chief", 0, StrategyKind.PARAMETER_SERVER)
    assert role.is_chief and not role.serves


@pytest.mark.parametrize("task_type, serves", [("worker", True), ("ps", True)])
def test_parameter_server_workers_and_ps_only_serve(monkeypatch, task_type, serves):
    from trainer.distribute import make_resolver

    environ = tf_config(task_type, 0)
    use_chief_for_master(environ)
    monkeypatch.setenv("TF_CONFIG", environ["TF_CONFIG"])
    role = resolve_role(make_resolver())
    assert role.serves is serves and not role.is_chief


def test_no_tf_config_resolves_to_a_single_chief(monkeypatch):
    from trainer.distribute import make_resolver

    monkeypatch.delenv("TF_CONFIG", raising=False)
    role = resolve_role(make_resolver())
    assert role.kind is StrategyKind.SINGLE and role.is_chief and not role.serves


@pytest.mark.parametrize("task_type, task_id, jobs, expected", [
    (None, 0, set(), True),                        # no TF_CONFIG: a lone process is the chief
    ("chief", 0, {"chief", "worker"}, True),
    ("worker", 0, {"chief", "worker"}, False),
    ("worker", 0, {"worker"}, True),               # workers only: worker 0 is the chief
    ("worker", 1, {"worker"}, False),
    ("ps", 0, {"chief", "worker", "ps"}, False),
])
def test_is_chief(task_type, task_id, jobs, expected):
    assert is_chief(task_type, task_id, jobs) is expected


@pytest.mark.parametrize("jobs, kind", [
    (set(), StrategyKind.SINGLE),
    ({"chief"}, StrategyKind.MULTI_WORKER_MIRRORED),
    ({"chief", "worker"}, StrategyKind.MULTI_WORKER_MIRRORED),
    ({"worker"}, StrategyKind.MULTI_WORKER_MIRRORED),
    ({"chief", "worker", "ps"}, StrategyKind.PARAMETER_SERVER),
])
def test_strategy_follows_the_cluster(jobs, kind):
    assert strategy_kind(jobs) is kind


@pytest.mark.parametrize("cluster, task_type, message", [
    ({"worker": ["w:1"], "ps": ["p:1"]}, "worker", "needs a 'chief' \\(or 'master'\\)"),
    ({"chief": ["c:1"], "ps": ["p:1"]}, "chief", "at least one 'worker'"),
    ({"chief": ["c:1"], "worker": ["w:1"], "evaluator": ["e:1"]}, "evaluator", "\\['evaluator'\\] not supported"),
])
def test_unsupported_clusters_are_rejected(monkeypatch, cluster, task_type, message):
    from trainer.distribute import make_resolver

    monkeypatch.setenv("TF_CONFIG", tf_config(task_type, 0, cluster)["TF_CONFIG"])
    with pytest.raises(ClusterConfigError, match=message):
        resolve_role(make_resolver())
