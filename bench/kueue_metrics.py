"""The pure half of `make bench-kueue` (bench/bench_kueue.py): the seeded workload generator, the
figures derived from the recorded timestamps, and the SVG drawn from them. No cluster, no I/O:
tests/unit/test_bench_kueue.py checks each part.

Times are seconds since the bench's start (the first arrival is at 0 or later).
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Kind = Literal["notebook", "job"]
KINDS: tuple[Kind, ...] = ("notebook", "job")


# --- the workloads -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    """One workload the bench submits: a user's notebook server (one pod) or a training job (a
    pod group), created `at` seconds after the start and running `duration` seconds once all its
    pods run (a notebook is then stopped, a job's pods complete)."""

    name: str
    kind: Kind
    at: float
    duration: float
    gpus: int
    pods: int


@dataclass(frozen=True)
class Plan:
    """What the generator draws from: how many of each, over how long they arrive, how long each runs."""

    users: int = 30
    jobs: int = 10
    # Time-scaled: a second stands for a minute of a working day. Everyone arrives within half an
    # hour (a morning), a notebook session lasts one to two hours and a job half an hour to an
    # hour and a half: 5,100 GPU-minutes asked of 50 GPUs within 30 minutes, so most must wait.
    arrival_window: float = 30.0
    notebook_seconds: tuple[float, float] = (60.0, 120.0)
    job_seconds: tuple[float, float] = (30.0, 90.0)
    seed: int = 1

    def problems(self) -> list[str]:
        found = []
        for name in ("users", "jobs"):
            if getattr(self, name) < 0:
                found.append(f"--{name}: {getattr(self, name)} must be >= 0")
        if self.users + self.jobs == 0:
            found.append("--users, --jobs: nothing to run; give at least one")
        if self.arrival_window < 0:
            found.append(f"--arrival-window: {self.arrival_window} must be >= 0")
        for flag, (low, high) in (("--notebook-seconds", self.notebook_seconds), ("--job-seconds", self.job_seconds)):
            if not 0 < low <= high:
                found.append(f"{flag}: {low}-{high} must be MIN-MAX with 0 < MIN <= MAX")
        return found


def generate(plan: Plan, job_pods: int, job_gpus: int, notebook_gpus: int) -> list[Arrival]:
    """The arrivals, in order of time: `plan.users` notebooks and `plan.jobs` jobs at seeded random
    times within the window, each with a seeded random duration. The same plan gives the same list."""
    rng = random.Random(plan.seed)
    arrivals = []
    for index in range(plan.users):
        arrivals.append(Arrival(f"user-{index:02d}", "notebook", round(rng.uniform(0, plan.arrival_window), 1),
                                round(rng.uniform(*plan.notebook_seconds), 1), notebook_gpus, 1))
    for index in range(plan.jobs):
        arrivals.append(Arrival(f"job-{index:02d}", "job", round(rng.uniform(0, plan.arrival_window), 1),
                                round(rng.uniform(*plan.job_seconds), 1), job_gpus, job_pods))
    return sorted(arrivals, key=lambda a: (a.at, a.name))


# --- what was recorded ---------------------------------------------------------------------------


@dataclass
class Record:
    """One workload's timestamps as the bench saw them (None: never happened).

    created: its first pod's creation; admitted: the Workload's Admitted condition; running: the
    last of its pods Running; released: when its quota came back (the Workload Finished, or
    Evicted by a preemption); preempted: Kueue took its quota back before it finished.
    """

    name: str
    kind: Kind
    gpus: int
    created: float | None = None
    admitted: float | None = None
    running: float | None = None
    released: float | None = None
    preempted: bool = False
    # Times a pod of the group held a node while its Workload was not admitted (must stay empty).
    partial: list[float] = field(default_factory=list)

    @property
    def wait(self) -> float | None:
        if self.created is None or self.admitted is None:
            return None
        return max(0.0, self.admitted - self.created)


def percentile(values: list[float], p: float) -> float | None:
    """The nearest-rank percentile `p` (0-100) of `values`; None for none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def admission_order(records: list[Record]) -> list[str]:
    """The workloads in the order Kueue admitted them (ties by creation, then name)."""
    admitted = [r for r in records if r.admitted is not None]
    return [r.name for r in sorted(admitted, key=lambda r: (r.admitted, r.created or 0.0, r.name))]


def overtaken(records: list[Record]) -> int:
    """Pairs where a workload created later was admitted earlier than one created before it: how
    often the queue let a smaller workload pass a waiting one (BestEffortFIFO does, by design)."""
    admitted = [r for r in records if r.admitted is not None and r.created is not None]
    return sum(1 for a in admitted for b in admitted if a.created < b.created and b.admitted < a.admitted)


def utilization(records: list[Record], capacity: int, end: float) -> list[tuple[float, int]]:
    """Admitted GPUs over time as steps (time, GPUs from then on), from each workload's admission
    to its release (or `end` when it never released)."""
    events: dict[float, int] = {}
    for r in records:
        if r.admitted is None or not r.gpus:
            continue
        released = r.released if r.released is not None else end
        events[r.admitted] = events.get(r.admitted, 0) + r.gpus
        events[released] = events.get(released, 0) - r.gpus
    steps, level = [(0.0, 0)], 0
    for at in sorted(events):
        level += events[at]
        if steps[-1][0] == at:
            steps[-1] = (at, level)
        else:
            steps.append((at, level))
    if steps[-1][0] < end:
        steps.append((end, level))
    if any(level > capacity for _, level in steps):
        raise ValueError(f"admitted GPUs exceed the cluster's {capacity}: {max(level for _, level in steps)}")
    return steps


def mean_level(steps: list[tuple[float, int]], start: float, end: float) -> float:
    """The time-weighted mean of a step series over [start, end]."""
    if end <= start:
        return 0.0
    total = 0.0
    for (at, level), (after, _) in zip(steps, steps[1:]):
        low, high = max(at, start), min(after, end)
        if high > low:
            total += level * (high - low)
    return total / (end - start)


def waiting_intervals(records: list[Record], end: float) -> list[tuple[float, float]]:
    """The stretches of time during which at least one workload waited (created, not yet admitted)."""
    spans = sorted((r.created, r.admitted if r.admitted is not None else end)
                   for r in records if r.created is not None)
    merged: list[tuple[float, float]] = []
    for low, high in spans:
        if high <= low:
            continue
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def mean_over(steps: list[tuple[float, int]], intervals: list[tuple[float, float]]) -> float | None:
    """The time-weighted mean of a step series over a union of intervals; None when they are empty."""
    total = sum(high - low for low, high in intervals)
    if not total:
        return None
    return sum(mean_level(steps, low, high) * (high - low) for low, high in intervals) / total


def summarize(records: list[Record], capacity: int) -> dict[str, Any]:
    """The figures of a run: per kind how many were admitted, finished, preempted, their waits
    (p50, p90, max); the admission order; GPU utilization (admitted GPUs / capacity) over time,
    its mean while work was waiting or running and its peak; the groups seen partly started."""
    ends = [r.released for r in records if r.released is not None]
    end = max(ends + [r.admitted for r in records if r.admitted is not None] + [0.0])
    steps = utilization(records, capacity, end)
    waiting = waiting_intervals(records, end)
    created = [r.created for r in records if r.created is not None]
    busy_from = min(created) if created else 0.0
    kinds: dict[str, Any] = {}
    for kind in KINDS:
        of_kind = [r for r in records if r.kind == kind]
        waits = [r.wait for r in of_kind if r.wait is not None]
        kinds[kind] = {
            "count": len(of_kind),
            "admitted": sum(r.admitted is not None for r in of_kind),
            "finished": sum(r.released is not None and not r.preempted for r in of_kind),
            "preempted": sum(r.preempted for r in of_kind),
            "wait_p50": percentile(waits, 50),
            "wait_p90": percentile(waits, 90),
            "wait_max": max(waits) if waits else None,
        }
    return {
        "capacity_gpus": capacity,
        "kinds": kinds,
        "admission_order": admission_order(records),
        "overtaken_pairs": overtaken(records),
        "utilization": [[round(at, 1), level] for at, level in steps],
        "utilization_mean": round(mean_level(steps, busy_from, end) / capacity, 3) if capacity else 0.0,
        "utilization_peak": round(max(level for _, level in steps) / capacity, 3) if capacity else 0.0,
        # While something waited, GPUs left idle are ones no waiting workload fits in (a job's four
        # GPUs at once) or that the queue's order holds back: 100 % means nothing was left idle.
        "waiting_seconds": round(sum(high - low for low, high in waiting), 1),
        "utilization_while_waiting": (None if (busy := mean_over(steps, waiting)) is None or not capacity
                                      else round(busy / capacity, 3)),
        "makespan": round(end - busy_from, 1),
        "partly_started": sorted(r.name for r in records if r.partial),
    }


def records_json(records: list[Record]) -> list[dict[str, Any]]:
    return [{**asdict(r), "wait": r.wait} for r in records]


# --- the figure ----------------------------------------------------------------------------------

COLOURS = {"notebook": "#3b7dd8", "job": "#e07b24", "wait": "#d0d0d0", "preempted": "#c0392b"}


def svg(records: list[Record], summary: dict[str, Any], title: str) -> str:
    """Utilization over time (admitted GPUs / capacity) above one bar per workload in order of
    creation: grey while it waited, its kind's colour while it held quota, a red end where it was
    preempted. Plain SVG, no dependency."""
    width, left, right = 900, 110, 20
    plot_w = width - left - right
    util_top, util_h = 50, 140
    row_h, bars_top = 7, util_top + util_h + 50
    ordered = sorted((r for r in records if r.created is not None), key=lambda r: (r.created, r.name))
    height = bars_top + row_h * len(ordered) + 50
    end = max([summary["utilization"][-1][0]] + [r.created for r in ordered] + [1.0])
    capacity = summary["capacity_gpus"] or 1

    def x(t: float) -> float:
        return round(left + plot_w * t / end, 1)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="20" font-size="13" font-weight="bold">{_escape(title)}</text>',
    ]
    # Utilization: axes, 0/50/100 % lines, the step line.
    for share in (0.0, 0.5, 1.0):
        y = round(util_top + util_h * (1 - share), 1)
        out.append(f'<line x1="{left}" y1="{y}" x2="{left + plot_w}" y2="{y}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4}" text-anchor="end">{int(share * 100)} %</text>')
    out.append(f'<text x="{left}" y="{util_top - 8}">GPUs admitted, of {capacity}</text>')
    points = []
    for (at, level), (after, _) in zip(summary["utilization"], summary["utilization"][1:] + [summary["utilization"][-1]]):
        y = round(util_top + util_h * (1 - level / capacity), 1)
        points += [f"{x(at)},{y}", f"{x(after)},{y}"]
    out.append(f'<polyline fill="none" stroke="#2c3e50" stroke-width="1.5" points="{" ".join(points)}"/>')
    # One bar per workload.
    out.append(f'<text x="{left}" y="{bars_top - 8}">one bar per workload, by creation time</text>')
    for index, r in enumerate(ordered):
        y = bars_top + index * row_h
        admitted = r.admitted if r.admitted is not None else end
        out.append(f'<rect x="{x(r.created)}" y="{y}" width="{max(0.5, x(admitted) - x(r.created))}" height="{row_h - 2}" '
                   f'fill="{COLOURS["wait"]}"><title>{r.name}: waited {_seconds(r.wait)}</title></rect>')
        if r.admitted is not None:
            released = r.released if r.released is not None else end
            out.append(f'<rect x="{x(r.admitted)}" y="{y}" width="{max(0.5, x(released) - x(r.admitted))}" '
                       f'height="{row_h - 2}" fill="{COLOURS[r.kind]}"><title>{r.name}: {r.gpus} GPU(s)</title></rect>')
            if r.preempted:
                out.append(f'<rect x="{x(released) - 2}" y="{y}" width="3" height="{row_h - 2}" fill="{COLOURS["preempted"]}"/>')
    # Time axis and legend.
    axis_y = bars_top + row_h * len(ordered) + 6
    out.append(f'<line x1="{left}" y1="{axis_y}" x2="{left + plot_w}" y2="{axis_y}" stroke="#888"/>')
    tick = _tick(end)
    t = 0.0
    while t <= end + 1e-9:
        out.append(f'<text x="{x(t)}" y="{axis_y + 14}" text-anchor="middle">{int(t)}</text>')
        t += tick
    out.append(f'<text x="{left + plot_w}" y="{axis_y + 28}" text-anchor="end">seconds since the start</text>')
    legend = [("notebook", "notebook holds quota"), ("job", "job holds quota"), ("wait", "waiting"), ("preempted", "preempted")]
    lx = left
    for key, text in legend:
        out.append(f'<rect x="{lx}" y="{axis_y + 20}" width="10" height="8" fill="{COLOURS[key]}"/>')
        out.append(f'<text x="{lx + 14}" y="{axis_y + 28}">{text}</text>')
        lx += 30 + 6 * len(text)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _tick(end: float) -> float:
    for step in (10, 20, 30, 60, 120, 300, 600):
        if end / step <= 12:
            return float(step)
    return float(math.ceil(end / 12))


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} s"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
