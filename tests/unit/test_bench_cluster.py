"""`make bench-cluster`'s own logic (bench/bench_cluster.py) without a cluster: its report. The
clusters it times are real and are started by the benchmark alone, not by the tests."""

from __future__ import annotations

import sys
from pathlib import Path

# bench_cluster imports the real-node tests' cluster helpers, as the make target's PYTHONPATH has them.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "realnode"))

from bench import bench_cluster  # noqa: E402


def results(store_made_s: float | None) -> dict:
    return {"date": "2026-12-06 23:50 UTC", "machine": {"cpus": 2, "memory_gib": 23.4, "platform": "Linux"},
            "load_before": [1.0, 2.0, 3.0], "load_after": [2.0, 2.0, 3.0], "store_made_s": store_made_s,
            "runs": {"import": [150.2, 140.0], "store": [50.1, 48.3]}, "median": {"import": 145.1, "store": 49.2}}


def test_the_report_gives_each_way_its_runs_and_median_with_the_load() -> None:
    text = bench_cluster.markdown(results(None))
    assert "| import | 150.2 s, 140.0 s | 145.1 s |" in text
    assert "| store | 50.1 s, 48.3 s | 49.2 s |" in text
    assert "2 cores, 23.4 GiB" in text and "load [1.0, 2.0, 3.0] before" in text and "the store made already" in text
    assert "the store made first in 80.5 s" in bench_cluster.markdown(results(80.5))

