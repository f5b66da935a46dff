"""`make bench-deploy`'s own logic (bench/bench_deploy.py): the steps of `make up`, the update
both sides make, the table. The benchmark itself needs real nodes and runs by hand."""

from __future__ import annotations

import pytest
import yaml

from bench import bench_deploy
from program import ROOT


@pytest.mark.parametrize(
    ("line", "step"),
    [
        ("MLPLATFORM_STACK_CONFIG=/tmp/b/project/Pulumi.bench.yaml bin/cluster up\n", "cluster"),
        ("bin/cluster up\n", "cluster"),
        ("bin/pulumi stack select --create bench --non-interactive\n", "stack"),
        ("bin/pulumi up --stack bench --config-file /tmp/b/Pulumi.bench.yaml --yes --non-interactive\n", "deploy"),
        ("bin/training-operator start\n", "operator"),
        ("tools/build.sh pulumi kube operator $(if ...)\n", None),
        ("localcluster: run bin/cluster up again\n", None),  # a log line naming a command is not make's echo
    ],
)
def test_step_of_finds_the_make_up_step_a_line_starts(line, step):
    assert bench_deploy.step_of(line) == step


def test_split_steps_times_each_step_until_the_next_starts():
    split = bench_deploy.split_steps([("cluster", 2.0), ("stack", 10.0), ("deploy", 11.0)], 30.04)
    assert split == {"up": 30.0, "up.tools": 2.0, "up.cluster": 8.0, "up.stack": 1.0, "up.deploy": 19.0}


@pytest.mark.parametrize("stack", ["dev", "kwok"])
def test_the_update_adds_a_cpu_worker_and_is_a_valid_config(stack):
    config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    workers = config["mlplatform:mnist"]["replicas"]["Worker"]
    updated = bench_deploy.with_update(config, bench_deploy.update_of(config))
    assert updated["mlplatform:mnist"]["replicas"]["Worker"] == workers + 1
    assert updated["mlplatform:mnist"]["gpus"]["Worker"] == 0
    assert config["mlplatform:mnist"]["replicas"]["Worker"] == workers, "the stack's own config is left as it was"
    settings = bench_deploy.stack_settings(updated)
    assert settings.mnist.replica_counts["Worker"] == workers + 1


def test_with_update_creates_missing_keys():
    assert bench_deploy.with_update({}, {"mnist.gpus.Worker": 0}) == {"mlplatform:mnist": {"gpus": {"Worker": 0}}}


PULUMI = {"up": 300.0, "up.tools": 5.0, "up.cluster": 230.0, "up.stack": 1.0, "up.deploy": 64.0, "login": 280.0,
          "succeeded": 400.0, "preview": 20.0, "update": 30.0, "destroy": 40.0, "down": 15.0}
KUBECTL = {"render": 50.0, "cluster": 225.0, "apply": 40.0, "up": 265.0, "wait": 390.0, "login": 250.0,
           "succeeded": 391.0, "preview": 1.0, "update": 0.5, "destroy": 30.0, "down": 12.0}


def rows(markdown):
    return {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:3] for line in markdown.splitlines()[2:]}


def test_table_puts_both_sides_on_each_step():
    found = rows(bench_deploy.table(PULUMI, KUBECTL))
    assert found["from the start: the hub's login page served"] == ["280.0", "250.0"]
    assert found["from the start: the TFJob Succeeded"] == ["400.0", "391.0"]
    assert found["&nbsp;&nbsp;of which cluster start (real nodes: with their images imported)"] == ["230.0", "225.0"]
    assert found["&nbsp;&nbsp;of which stack select"] == ["1.0", "—"]
    assert found["render the manifests (not on the clock below)"] == ["—", "50.0"]
    assert not any("operator start" in row for row in found), "no operator step where neither side has one"


def test_table_names_kubectl_waits_time_and_a_preview_that_found_changes():
    markdown = bench_deploy.table(PULUMI, KUBECTL, {"pulumi": {"preview": False}, "kubectl": {"preview": True}})
    assert rows(markdown)["no-op preview, median of 3"] == ["20.0 (found changes)", "1.0"]
    assert "`kubectl wait` returned: 390.0 s" in markdown


def test_table_without_a_login_page_on_kwok():
    pulumi = {k: v for k, v in PULUMI.items() if k != "login"}
    kubectl = {k: v for k, v in KUBECTL.items() if k != "login"}
    markdown = bench_deploy.table(pulumi, kubectl, render_as="kwok")
    assert "login page" not in markdown
    assert "`bin/render DIR kwok`" in markdown


def columns(markdown, what):
    (line,) = [line for line in markdown.splitlines() if line.startswith(f"| {what} |")]
    return [c.strip() for c in line.strip("|").split("|")]


def test_table_puts_issue_28s_baseline_and_goals_beside_each_figure():
    markdown = bench_deploy.table(PULUMI, KUBECTL, baseline=bench_deploy.BASELINES["dev"])
    assert "baseline 2026-12-02, Pulumi / kubectl (s)" in markdown.splitlines()[0]
    assert columns(markdown, "no-op preview, median of 3")[3:5] == ["7.3 / 1.1", "≤ 3 s (item 5): NOT met"]
    assert columns(markdown, "from the start: the hub's login page served")[3:5] == ["344.3 / 193.0",
                                                                                    "≤ 120 s (item 3): NOT met"]
    # The deploy's bound is kubectl's own deploy in the same run: 64.0 against 1.5 × 40.0.
    assert columns(markdown, "&nbsp;&nbsp;of which deploy and wait")[3:5] == ["61.6 / 20.2",
                                                                             "≤ 1.5× kubectl's (item 5): NOT met"]
    assert columns(markdown, "destroy every object")[3:5] == ["16.5 / 8.2", ""], "no goal where the issue sets none"


def test_a_figure_within_its_goal_is_met():
    faster = {**PULUMI, "preview": 3.0, "up.deploy": 60.0, "login": 119.9, "up.cluster": 45.0}
    markdown = bench_deploy.table(faster, KUBECTL, baseline=bench_deploy.BASELINES["dev"])
    assert columns(markdown, "no-op preview, median of 3")[4] == "≤ 3 s (item 5): met"
    assert columns(markdown, "&nbsp;&nbsp;of which deploy and wait")[4] == "≤ 1.5× kubectl's (item 5): met"
    assert columns(markdown, "from the start: the hub's login page served")[4] == "≤ 120 s (item 3): met"
    assert columns(markdown, "&nbsp;&nbsp;of which cluster start (real nodes: with their images imported)")[4] == \
        "≤ 60 s (item 2): met"


def test_a_ratio_goal_without_kubectls_figure_says_only_the_goal():
    kubectl = {k: v for k, v in KUBECTL.items() if k != "apply"}
    markdown = bench_deploy.table(PULUMI, kubectl)
    assert columns(markdown, "&nbsp;&nbsp;of which deploy and wait")[3:5] == ["— / —", "≤ 1.5× kubectl's (item 5)"]


def test_each_variant_has_a_baseline_for_every_goal_it_can_meet():
    for variant, baseline in bench_deploy.BASELINES.items():
        assert {"up", "succeeded", "preview", "update", "destroy", "down"} <= set(baseline["pulumi"]), variant


class Result:
    def __init__(self, returncode):
        self.returncode = returncode


def test_previews_keep_every_run_and_report_the_median_and_a_run_that_found_changes(monkeypatch):
    clock = iter([0.0, 9.0, 10.0, 14.0, 20.0, 25.0])
    monkeypatch.setattr(bench_deploy.time, "monotonic", lambda: next(clock))
    answers = iter([Result(0), Result(1), Result(0)])
    results = {}
    found = bench_deploy.previews(results, lambda: next(answers))
    assert results == {"preview.runs": [9.0, 4.0, 5.0], "preview": 5.0}
    assert found.returncode == 1, "a run that found changes is the one reported"
