"""User data outlives `pulumi destroy` and config edits (stacks/retention.py, components/kept_data.py)."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

import pulumi

from components import kept_data
from program import Deployment, RecordingMocks, example_stack, run_program
from stacks import parse, retention
from stacks.config import ConfigError

# The dev stack's resources that hold user data, and what they hold.
KEPT = ("jupyterhub-namespace", "jupyterhub-db", "mnist-ns", "mnist-data")


def dev() -> dict[str, Any]:
    return example_stack("dev")


def changed(path: str, value: Any) -> dict[str, Any]:
    config = copy.deepcopy(dev())
    *parents, leaf = path.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return config


def record(config: dict[str, Any]) -> dict[str, Any]:
    return retention.kept_data(parse(config))


def test_the_volumes_and_their_namespaces_are_kept_on_delete_and_nothing_else():
    deployment = run_program(dev())
    kept = sorted(name for name, opts in deployment.options.items() if opts is not None and opts.retain_on_delete)
    assert kept == sorted(KEPT)


def test_with_data_retention_delete_nothing_is_kept():
    config = changed("jupyterhub.dataRetention", "delete")
    config["mnist"]["dataRetention"] = "delete"
    deployment = run_program(config)
    kept = [name for name, opts in deployment.options.items() if opts is not None and opts.retain_on_delete]
    assert kept == []


def test_each_deployment_records_what_it_keeps():
    outputs = run_program(dev()).outputs
    assert outputs[retention.OUTPUT] == {
        "jupyterhub": {"namespace": "jupyterhub", "claims": {"hub-db-dir": "<default>"}, "dataRetention": "keep"},
        "mnist": {"namespace": "mnist", "claims": {"distributed-mnist-data": "<default>"}, "dataRetention": "keep"},
    }


@pytest.mark.parametrize(
    ("path", "value", "key", "volumes"),
    [
        ("jupyterhub.namespace", "hub", "jupyterhub.namespace", ["hub-db-dir", "claim-<user>", "'jupyterhub'"]),
        ("jupyterhub.enabled", False, "jupyterhub.enabled", ["hub-db-dir", "claim-<user>"]),
        ("jupyterhub.storage.storageClass", "fast", "jupyterhub.storage.storageClass", ["replaces hub-db-dir"]),
        ("mnist.namespace", "training", "mnist.namespace", ["distributed-mnist-data", "'mnist'"]),
        ("mnist.jobName", "mnist2", "mnist.jobName", ["distributed-mnist-data -> mnist2-data"]),
        ("mnist.enabled", False, "mnist.enabled", ["distributed-mnist-data"]),
        ("mnist.storage.storageClass", "nfs", "mnist.storage.storageClass", ["replaces distributed-mnist-data"]),
    ],
)
def test_a_change_that_would_lose_data_names_the_key_and_the_volumes(path, value, key, volumes):
    (problem,) = retention.problems(record(dev()), parse(changed(path, value)))
    assert problem.startswith(f"mlplatform:{key}: "), problem
    for volume in volumes:
        assert volume in problem, problem
    assert "dataRetention to delete" in problem, problem


def checked(config: dict[str, Any], previous: dict[str, Any]) -> Any:
    """components.kept_data.checked under mocks whose StackReference reads `previous`."""
    deployment = Deployment()
    pulumi.runtime.set_mocks(RecordingMocks(deployment, previous), project="mlplatform", stack="test", preview=True)
    return pulumi.runtime.test(lambda: kept_data.checked(parse(config)))()


def test_the_check_reads_the_stacks_own_last_outputs_and_fails_with_the_config_message():
    """A ConfigError (a RunError: Pulumi prints it without a traceback); the namespaces wait on it."""
    with pytest.raises(ConfigError, match=re.escape("mlplatform:mnist.jobName: renames the volume distributed-mnist-data")):
        checked(changed("mnist.jobName", "mnist2"), {retention.OUTPUT: record(dev())})
    checked(dev(), {retention.OUTPUT: record(dev())})
    checked(changed("mnist.jobName", "mnist2"), {})


def test_the_program_fails_with_that_message():
    with pytest.raises(ConfigError, match=re.escape("mlplatform:jupyterhub.namespace: \"jupyterhub\" -> \"hub\"")):
        run_program(changed("jupyterhub.namespace", "hub"), previous_outputs={retention.OUTPUT: record(dev())})


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("jupyterhub.cullIdleSeconds", 60),  # a hub setting: the hub rolls, the data stays
        ("mnist.storage.size", "8Gi"),  # grown in place
        ("jupyterhub.storage.size", "20Gi"),  # KubeSpawner's new claims only
        ("mnist.trainSteps", 10),
    ],
)
def test_changes_that_keep_the_data_pass(path, value):
    assert retention.problems(record(dev()), parse(changed(path, value))) == []
    run_program(changed(path, value), previous_outputs={retention.OUTPUT: record(dev())})


def test_the_first_deployment_and_one_after_a_destroy_have_nothing_to_compare():
    assert retention.problems(None, parse(changed("jupyterhub.namespace", "hub"))) == []
    run_program(changed("jupyterhub.namespace", "hub"), previous_outputs={})


def test_deleting_takes_a_deployment_that_says_delete_first():
    """retainOnDelete is the last deployment's: a namespace dropped in the same update that first
    says delete would still be kept, so the preview asks for the two steps."""
    delete = changed("mnist.dataRetention", "delete")
    renamed = copy.deepcopy(delete)
    renamed["mnist"]["jobName"] = "mnist2"
    (problem,) = retention.problems(record(dev()), parse(renamed))
    assert "first set mlplatform:mnist.dataRetention to delete and run `pulumi up`" in problem
    assert retention.problems(record(dev()), parse(delete)) == [], "saying delete alone is no loss"
    assert retention.problems(record(delete), parse(renamed)) == []
    back_to_keep = copy.deepcopy(renamed)
    back_to_keep["mnist"]["dataRetention"] = "keep"
    assert retention.problems(record(delete), parse(back_to_keep)), "keep now: the data must not go"
