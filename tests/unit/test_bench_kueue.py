"""The pure parts of `make bench-kueue`: the seeded workload generator, the figures derived from
recorded timestamps, the SVG, and the bench's reading of its stack-shaped config (bench/kueue_metrics.py,
bench/bench_kueue.py). The run itself needs a cluster and is not part of `make test`."""

from __future__ import annotations

import argparse
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from bench.bench_kueue import (
    CONFIG_FILE,
    ROOT,
    BenchError,
    bench_manager_config,
    job_pods,
    load_scenario,
    make_command,
    notebook_pod,
    pod_gpus,
    published_stem,
    queued_namespaces,
    url_client_config,
)
from bench.kueue_metrics import (
    Arrival,
    Plan,
    Record,
    admission_order,
    generate,
    mean_level,
    mean_over,
    overtaken,
    percentile,
    summarize,
    svg,
    utilization,
    waiting_intervals,
)
from vocab.kueue_api import POD_GROUP_LABEL, POD_GROUP_TOTAL_COUNT, QUEUE_LABEL

# --- the generator -------------------------------------------------------------------------------


def test_generate_is_seeded_and_counts_each_kind():
    plan = Plan(users=30, jobs=10, seed=7)
    first, again = generate(plan, 5, 4, 1), generate(plan, 5, 4, 1)
    assert first == again
    assert sum(a.kind == "notebook" for a in first) == 30
    assert sum(a.kind == "job" for a in first) == 10
    assert {(a.gpus, a.pods) for a in first if a.kind == "job"} == {(4, 5)}
    assert {(a.gpus, a.pods) for a in first if a.kind == "notebook"} == {(1, 1)}


def test_generate_another_seed_draws_other_times():
    assert generate(Plan(seed=1), 5, 4, 1) != generate(Plan(seed=2), 5, 4, 1)


def test_generate_keeps_arrivals_and_durations_within_the_plan():
    plan = Plan(users=20, jobs=5, arrival_window=40, notebook_seconds=(10, 20), job_seconds=(5, 8), seed=3)
    arrivals = generate(plan, 5, 4, 1)
    assert [a.at for a in arrivals] == sorted(a.at for a in arrivals)
    assert all(0 <= a.at <= 40 for a in arrivals)
    assert all(10 <= a.duration <= 20 for a in arrivals if a.kind == "notebook")
    assert all(5 <= a.duration <= 8 for a in arrivals if a.kind == "job")
    assert len({a.name for a in arrivals}) == len(arrivals)


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        (Plan(users=-1), "--users: -1 must be >= 0"),
        (Plan(users=0, jobs=0), "nothing to run"),
        (Plan(arrival_window=-5), "--arrival-window: -5"),
        (Plan(notebook_seconds=(30, 10)), "--notebook-seconds: 30-10"),
        (Plan(job_seconds=(0, 10)), "--job-seconds: 0-10"),
    ],
)
def test_plan_problems_name_the_flag(plan, message):
    assert any(message in p for p in plan.problems())


# --- the figures ---------------------------------------------------------------------------------


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 11)]
    assert percentile(values, 50) == 5
    assert percentile(values, 90) == 9
    assert percentile(values, 100) == 10
    assert percentile([3.0], 90) == 3
    assert percentile([], 50) is None


def test_wait_is_admission_less_creation_and_none_until_admitted():
    assert Record("a", "notebook", 1, created=2, admitted=7).wait == 5
    assert Record("a", "notebook", 1, created=2).wait is None


def test_admission_order_and_overtaking():
    records = [
        Record("big", "job", 4, created=0, admitted=20),
        Record("small", "notebook", 1, created=5, admitted=6),
        Record("late", "notebook", 1, created=8, admitted=25),
        Record("never", "notebook", 1, created=9),
    ]
    assert admission_order(records) == ["small", "big", "late"]
    # small (created after big) was admitted before it; late was not admitted before anyone older.
    assert overtaken(records) == 1


def test_utilization_steps_from_admission_to_release():
    records = [
        Record("a", "job", 4, created=0, admitted=1, released=5),
        Record("b", "notebook", 1, created=0, admitted=2, released=3),
        Record("c", "notebook", 1, created=0, admitted=5),  # not released: held to the end
    ]
    steps = utilization(records, capacity=10, end=8)
    assert steps == [(0.0, 0), (1, 4), (2, 5), (3, 4), (5, 1), (8, 0)]
    assert mean_level(steps, 0, 8) == pytest.approx((4 * 1 + 5 * 1 + 4 * 2 + 1 * 3) / 8)


def test_utilization_above_capacity_is_an_error():
    records = [Record("a", "job", 4, admitted=0, released=2), Record("b", "job", 4, admitted=1, released=3)]
    with pytest.raises(ValueError, match="exceed the cluster's 6"):
        utilization(records, capacity=6, end=3)


def test_utilization_while_waiting_counts_only_the_times_someone_waited():
    records = [
        Record("a", "job", 4, created=0, admitted=0, released=10),
        Record("b", "job", 4, created=2, admitted=10, released=20),  # waits 2..10 while a holds 4 of 6
        Record("c", "notebook", 1, created=4, admitted=6, released=8),  # waits 4..6, then fits beside a
    ]
    assert waiting_intervals(records, end=20) == [(2, 10)]
    summary = summarize(records, capacity=6)
    # 2..6: 4 GPUs, 6..8: 5, 8..10: 4 -> (4*4 + 5*2 + 4*2) / 8 = 4.25 of 6
    assert summary["utilization_while_waiting"] == round(4.25 / 6, 3)
    assert summary["waiting_seconds"] == 8
    assert mean_over([(0.0, 1)], []) is None


def test_summarize_per_kind_and_partly_started():
    records = [
        Record("job-00", "job", 4, created=0, admitted=4, running=5, released=20),
        Record("job-01", "job", 4, created=1, admitted=21, running=22, released=30, partial=[10.5]),
        Record("user-00", "notebook", 1, created=0, admitted=0, running=1, released=12),
        Record("user-01", "notebook", 1, created=2, admitted=3, running=3, released=8, preempted=True),
    ]
    summary = summarize(records, capacity=6)  # 4 + 1 + 1 held from 4 s to 8 s
    assert summary["kinds"]["job"] == {"count": 2, "admitted": 2, "finished": 2, "preempted": 0,
                                       "wait_p50": 4, "wait_p90": 20, "wait_max": 20}
    assert summary["kinds"]["notebook"]["preempted"] == 1
    assert summary["kinds"]["notebook"]["finished"] == 1
    assert summary["partly_started"] == ["job-01"]
    assert summary["utilization_peak"] == 1.0
    assert summary["makespan"] == 30
    assert summary["admission_order"] == ["user-00", "user-01", "job-00", "job-01"]


def test_svg_is_well_formed_with_a_bar_per_admitted_workload():
    records = [
        Record("job-00", "job", 4, created=0, admitted=4, running=5, released=20),
        Record("user-00", "notebook", 1, created=0, admitted=0, running=1, released=12, preempted=True),
        Record("user-01", "notebook", 1, created=3),  # never admitted: a wait bar only
    ]
    drawn = svg(records, summarize(records, capacity=5), "a <title> & more")
    root = ET.fromstring(drawn)
    titles = [t.text for t in root.iter("{http://www.w3.org/2000/svg}title")]
    assert "job-00: 4 GPU(s)" in titles and "user-00: 1 GPU(s)" in titles
    assert "user-01: waited -" in titles
    assert "a &lt;title&gt; &amp; more" in drawn
    assert any(r.get("fill") == "#c0392b" for r in root.iter("{http://www.w3.org/2000/svg}rect"))


# --- the scenario: the stack's settings and renderings -------------------------------------------


def test_the_shipped_scenario_has_50_gpus_and_jobs_of_one_chief_and_four_gpu_workers():
    scenario = load_scenario(CONFIG_FILE)
    assert scenario.gpu_capacity == 50
    pods = job_pods(scenario, Arrival("job-03", "job", 0, 1, 4, 5))
    assert [p["metadata"]["name"] for p in pods] == ["job-03-chief-0", *(f"job-03-worker-{i}" for i in range(4))]
    assert sum(pod_gpus(p) for p in pods) == 4
    for pod in pods:  # one pod group, queued for training, whole at five pods
        assert pod["metadata"]["labels"][POD_GROUP_LABEL] == "job-03"
        assert pod["metadata"]["labels"][QUEUE_LABEL] == "training"
        assert pod["metadata"]["annotations"][POD_GROUP_TOTAL_COUNT] == "5"
        assert not any("persistentVolumeClaim" in v for v in pod["spec"]["volumes"])


def test_a_notebook_pod_is_queued_on_the_gpu_pool():
    scenario = load_scenario(CONFIG_FILE)
    pod = notebook_pod(scenario, Arrival("user-07", "notebook", 0, 1, 1, 1))
    assert pod["metadata"]["labels"][QUEUE_LABEL] == "notebooks"
    assert pod["metadata"]["namespace"] == "jupyterhub"
    assert pod_gpus(pod) == 1
    assert pod["spec"]["nodeSelector"] == {"mlplatform.dev/pool": "gpu"}


def _scenario_file(tmp_path: Path, edit) -> Path:
    raw = yaml.safe_load(CONFIG_FILE.read_text())
    edit(raw["config"])
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_quota_no_pool_can_back_is_refused_naming_its_key(tmp_path):
    def more_gpus(config):
        config["mlplatform:kueue"]["clusterQueues"][0]["quotas"][1]["gpus"] = 60

    with pytest.raises(BenchError, match=r"mlplatform:kueue\.clusterQueues\[0\]\.quotas\[1\]\.gpus: 60 is more than"):
        load_scenario(_scenario_file(tmp_path, more_gpus))


def test_an_unknown_notebook_queue_is_refused():
    with pytest.raises(BenchError, match="--notebook-queue: nowhere is not a ClusterQueue"):
        load_scenario(CONFIG_FILE, "nowhere")


def test_the_manager_serves_on_loopback_with_the_bench_certificate(tmp_path):
    config = bench_manager_config(queued_namespaces(load_scenario(CONFIG_FILE)), 9443, 8081, tmp_path)
    assert config["webhook"] == {"port": 9443, "host": "127.0.0.1", "certDir": str(tmp_path)}
    assert config["internalCertManagement"] == {"enable": False}
    assert config["health"]["healthProbeBindAddress"] == "127.0.0.1:8081"
    # The rest is the stack's: the pod integration only (no operator: a job is its pods), in the
    # managed namespaces only.
    assert config["integrations"] == {"frameworks": ["pod"]}
    assert config["managedJobsNamespaceSelector"]["matchExpressions"][0]["values"] == ["jupyterhub", "mnist"]


def test_a_webhook_is_pointed_at_loopback_keeping_its_path():
    client = url_client_config({"service": {"name": "kueue-webhook-service", "path": "/mutate--v1-pod"}}, 4443, b"CA")
    assert client == {"url": "https://127.0.0.1:4443/mutate--v1-pod", "caBundle": "Q0E="}


def test_a_queues_file_replaces_the_queues_only(tmp_path):
    scenario = load_scenario(CONFIG_FILE, "notebooks", ROOT / "bench" / "kueue-queues-split.yaml")
    quotas = {q.name: sum(p.gpus for p in q.quotas) for q in scenario.settings.kueue.cluster_queues}
    assert quotas == {"notebooks": 20, "training": 30}
    assert scenario.gpu_capacity == 50  # the cluster is the scenario's
    other = tmp_path / "queues.yaml"
    other.write_text(yaml.safe_dump({"config": {"mlplatform:kueue": {"enabled": True}, "mlplatform:cluster": {}}}))
    with pytest.raises(BenchError, match="holds mlplatform:cluster; only mlplatform:kueue replaces"):
        load_scenario(CONFIG_FILE, None, other)


def test_a_variant_is_published_beside_the_default_and_its_make_line_says_how():
    assert published_stem(None) == "kueue-scale"
    assert published_stem(Path("bench/kueue-queues-split.yaml")) == "kueue-scale-split"
    args = argparse.Namespace(queues=Path("bench/kueue-queues-split.yaml"), notebook_queue="notebooks", seed=2,
                              users=Plan.users, jobs=Plan.jobs)
    assert make_command(args) == ("make bench-kueue QUEUES=bench/kueue-queues-split.yaml NOTEBOOK_QUEUE=notebooks "
                                  "SEED=2")
