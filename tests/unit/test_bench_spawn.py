"""`make bench-spawn`'s own logic (bench/bench_spawn.py) without a cluster: its clock and its report.
The spawns it times are real and are made by the benchmark alone, not by the tests."""

from __future__ import annotations

import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import pytest

# bench_spawn imports the real-node tests' cluster helpers, as the make target's PYTHONPATH has them.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "realnode"))

from bench import bench_spawn  # noqa: E402

PRESS = datetime(2026, 12, 7, 15, 20, 0, 250000, tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize(
    ("stamp", "seconds"),
    [
        ("2026-12-07T15:20:03Z", 2.75),  # the API server's, whole seconds
        ("2026-12-07T15:20:03.912345678Z", 3.66),  # containerd's, nanoseconds
        ("2026-12-07T15:20:00Z", -0.25),  # a whole-second stamp of an event just after the press
        (None, None),
    ],
)
def test_seconds_after_reads_both_clocks_stamps(stamp, seconds):
    assert bench_spawn.seconds_after(stamp, PRESS) == seconds


def spawn(first: bool, lab: float, listening: float) -> bench_spawn.Spawn:
    return bench_spawn.Spawn(first=first, answered=lab - 0.3, status=201, ready=lab - 0.1, lab=lab, render=4.0,
                             rendered=lab + 4.0, pod={"server listening": listening, "scheduled": None})


def test_the_summary_leaves_the_first_spawn_out_and_gives_median_and_p95():
    spawns = [spawn(True, 12.0, 7.0), *(spawn(False, lab, lab - 1) for lab in (5.0, 4.0, 6.0, 9.0))]
    summary = bench_spawn.summary(spawns)
    assert summary["JupyterLab through the proxy"] == {"median": 5.5, "p95": 9.0, "n": 4}
    assert summary["server listening"] == {"median": 4.5, "p95": 8.0, "n": 4}
    assert "scheduled" not in summary  # never read: no figure rather than a made-up one


def test_the_table_puts_the_first_spawn_beside_the_medians():
    spawns = [spawn(True, 12.0, 7.0), spawn(False, 5.0, 4.0), spawn(False, 4.0, 3.0)]
    results = {"spawns": [asdict(s) for s in spawns], "summary": bench_spawn.summary(spawns),
               "load_average": {"start": [1.0, 1.0, 1.0], "spawns": [2.0, 1.0, 1.0], "end": [2.0, 2.0, 1.0]},
               "machine": {"cpus": 2}, "seconds": {"spawns": 60.0}}
    table = bench_spawn.markdown(results)
    assert "| JupyterLab through the proxy | 4.5 | 5.0 | 12.0 | 8.8 s; median ≤ 5 s: met |" in table
    assert "| server listening | 3.5 | 4.0 | 7.0 |  |" in table
    assert "2 spawns after the first" in table


def test_the_table_says_when_the_median_misses_issue_28s_goal():
    spawns = [spawn(True, 12.0, 7.0), spawn(False, 5.0, 4.0), spawn(False, 6.0, 5.0)]
    results = {"spawns": [asdict(s) for s in spawns], "summary": bench_spawn.summary(spawns),
               "load_average": {"start": [1.0] * 3, "spawns": [1.0] * 3, "end": [1.0] * 3},
               "machine": {"cpus": 2}, "seconds": {}}
    assert "| JupyterLab through the proxy | 5.5 | 6.0 | 12.0 | 8.8 s; median ≤ 5 s: NOT met |" in bench_spawn.markdown(results)
