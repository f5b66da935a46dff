"""The queued spawner (components/hub_config/queued_spawner.py) as the hub loads it: the dev stack
with Kueue on and its GPU notebooks queued, rendered, loaded by the real JupyterHub, and one user's
spawner driven through a spawn whose pod Kueue gates.

No cluster here: the pod KubeSpawner's reflector would hold, the Workload Kueue would make and the
pending workloads its visibility API would list are given to the spawner (its pod reflector and its
two API reads, `_workload` and `_pending_workloads`); the calls to the API itself run on the real
nodes (tests/realnode/test_kueue_on_real_nodes.py).
"""

from __future__ import annotations

import asyncio
import copy
import sys
import time
from typing import Any

import pytest

from program import example_stack
from rendered import render_hub
from test_hub_config import start_hub, with_spawner

# kubernetes_asyncio fixes its default kubeconfig path (KUBECONFIG) when first imported, and the
# hub fixtures set it: KubeSpawner and the spawner module are imported in the tests, not here.
SCHEDULING_GATE = "kueue.x-k8s.io/admission"
GIVE_UP_BEFORE_SECONDS = 5.0
SHORT = "couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu in flavor pool-gpu, 1 more needed"
POD_UID = "0c1d4a8e-5b1f-4c55-9a6d-1f2e3d4c5b6a"
WORKLOAD = "pod-jupyter-ann-6f1c2"
QUEUED = "Queued in ClusterQueue training (LocalQueue notebooks)"


def pending(*positions: tuple[str, int, int]) -> dict[str, Any]:
    """The visibility API's PendingWorkloadsSummary of LocalQueue notebooks: (workload, position in
    the LocalQueue, in the ClusterQueue), counted from 0 as Kueue counts them."""
    return {"kind": "PendingWorkloadsSummary", "apiVersion": "visibility.kueue.x-k8s.io/v1beta2", "items": [
        {"metadata": {"name": name, "namespace": "jupyterhub"}, "priority": 0, "localQueueName": "notebooks",
         "positionInLocalQueue": in_local, "positionInClusterQueue": in_cluster}
        for name, in_local, in_cluster in positions
    ]}


def workload(status: str | None, message: str = SHORT) -> dict[str, Any]:
    conditions = [] if status is None else [
        {"type": "QuotaReserved", "status": status, "reason": "Pending" if status == "False" else "QuotaReserved",
         "message": message}
    ]
    return {"metadata": {"name": WORKLOAD, "labels": {"kueue.x-k8s.io/job-uid": POD_UID}},
            "status": {"conditions": conditions}}


def pod(gated: bool) -> dict[str, Any]:
    return {"metadata": {"name": "jupyter-ann", "namespace": "jupyterhub", "uid": POD_UID},
            "spec": {"schedulingGates": [{"name": SCHEDULING_GATE}] if gated else []}, "status": {"phase": "Pending"}}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    directory = tmp_path_factory.mktemp("queued-hub")
    config = example_stack("dev")
    config["kueue"] = {**copy.deepcopy(config["kueue"]), "enabled": True}
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield start_hub(render_hub(config, (), directory), directory, monkeypatch)


class Cluster:
    """What the spawner reads of the cluster: its reflector's pods and the Workload of its pod."""

    def __init__(self) -> None:
        self.pods: dict[str, dict[str, Any]] = {}
        self.workload: dict[str, Any] | None = None
        self.reads = 0
        # Set: every read of the Workload from then on hangs (an API server slow under load).
        self.hang = False
        # What the visibility API answers: a summary, or an exception it raises.
        self.pending: dict[str, Any] | Exception = pending()
        self.pending_reads: list[str] = []


@pytest.fixture
def cluster(monkeypatch):
    seen = Cluster()
    spawner_class = None

    def attach(spawner):
        nonlocal spawner_class
        spawner_class = type(spawner)
        monkeypatch.setattr(spawner_class, "pod_reflector", property(lambda self: seen))

        async def read_workload(self, pod):
            seen.reads += 1
            assert pod["metadata"]["uid"] == POD_UID
            if seen.hang:
                await asyncio.sleep(3600)
            return seen.workload

        monkeypatch.setattr(spawner_class, "_workload", read_workload)

        async def read_pending(self, local_queue):
            seen.pending_reads.append(local_queue)
            if isinstance(seen.pending, Exception):
                raise seen.pending
            return seen.pending

        monkeypatch.setattr(spawner_class, "_pending_workloads", read_pending)
        monkeypatch.setattr(sys.modules[spawner_class.__module__], "_visibility_warned", False)
        # Kueue's Workload looked at every 0.2 s instead of 5 s.
        monkeypatch.setattr(sys.modules[spawner_class.__module__], "POLL_SECONDS", 0.2)

    seen.attach = attach
    return seen


def admitted_after(cluster: Cluster, gated_for: float | asyncio.Event, *beside, before=None):
    """A spawn (for with_spawner) of the GPU server that Kueue admits after GATED_FOR seconds, its
    progress read to the end, with the coroutines BESIDE it running meanwhile: (events, url).
    BEFORE, if given, is called with the spawner first."""

    async def spawn(spawner):
        cluster.attach(spawner)
        if before is not None:
            before(spawner)
        gpu_server(spawner, cluster, gated_for=gated_for, start_timeout=60)
        started = spawner.start()
        running = [asyncio.ensure_future(coroutine) for coroutine in beside]
        events = [event async for event in spawner.progress()]
        for task in running:
            await task
        return events, await started

    return spawn


async def started_only(self):
    """KubeSpawner's progress, standing in: no pod event until the start ends, then one."""
    while not self._start_future.done():
        await asyncio.sleep(0.1)
    yield {"progress": 100, "message": "Started container notebook"}


def gpu_server(spawner, cluster: Cluster, gated_for: float | asyncio.Event | None, start_timeout: int):
    """Stands in for KubeSpawner's own _start: loads the GPU profile (its queue label, its start
    timeout), makes the pod (gated), and, if `gated_for` is given, has Kueue admit it after so
    long (or once that event is set) and the server run."""

    async def _start():
        spawner.user_options = {"profile": "tensorflow-gpu"}
        await spawner.load_user_options()
        spawner.start_timeout = start_timeout
        key = f"{spawner.namespace}/{spawner.pod_name}"
        cluster.pods[key] = pod(gated=True)
        if gated_for is None:
            await asyncio.sleep(3600)
        elif isinstance(gated_for, asyncio.Event):
            await gated_for.wait()
        else:
            await asyncio.sleep(gated_for)
        cluster.pods[key] = pod(gated=False)
        # Running a moment later: longer than the progress loop's 1 s wait for a pod event, so
        # that its next look sees the admission before the start ends (at 0.5 s that depended on
        # when the admission fell between two looks).
        await asyncio.sleep(1.5)
        return "http://10.0.0.9:8888"

    spawner._start = _start


def test_the_dev_stack_with_kueue_loads_the_queued_spawner_and_queues_the_gpu_profile(hub):
    from kubespawner import KubeSpawner

    from components.hub_config import queued_spawner

    assert (queued_spawner.SCHEDULING_GATE, queued_spawner.GIVE_UP_BEFORE_SECONDS) == (SCHEDULING_GATE, GIVE_UP_BEFORE_SECONDS)
    # Before the earliest end of KubeSpawner's own wait (JupyterHub's backoff: the timeout less 10 %).
    import inspect

    from jupyterhub.utils import exponential_backoff

    tolerance = inspect.signature(exponential_backoff).parameters["timeout_tolerance"].default
    assert queued_spawner.BACKOFF_JITTER == tolerance
    assert queued_spawner.give_up_after(90) == 76.0 and queued_spawner.give_up_after(600) == 535.0

    async def look(spawner):
        spawner.user_options = {"profile": "tensorflow-gpu"}
        await spawner.load_user_options()
        gpu_labels = dict(spawner.extra_labels)
        return type(spawner).__name__, isinstance(spawner, KubeSpawner), spawner.cluster_queue, gpu_labels

    name, is_kubespawner, cluster_queue, labels = with_spawner(hub, "ann", look)
    assert (name, is_kubespawner, cluster_queue) == ("QueuedKubeSpawner", True, "training")
    assert labels == {"kueue.x-k8s.io/queue-name": "notebooks"}

    async def cpu(spawner):
        spawner.user_options = {"profile": "tensorflow-cpu"}
        await spawner.load_user_options()
        return dict(spawner.extra_labels)

    assert with_spawner(hub, "bob", cpu) == {}


@pytest.mark.parametrize(
    ("found", "said"),
    [
        (None, "Queued in ClusterQueue training (LocalQueue notebooks): waiting for Kueue to take the server's Workload in"),
        (workload(None), f"Queued in ClusterQueue training (LocalQueue notebooks): waiting for Kueue to look at Workload {WORKLOAD}"),
        (workload("False"), f"Queued in ClusterQueue training (LocalQueue notebooks): {SHORT}"),
        (workload("True", "Quota reserved in ClusterQueue training"), "Quota reserved in ClusterQueue training: Quota reserved in ClusterQueue training"),
    ],
)
def test_what_the_spawn_page_says_of_a_workload(hub, found, said):
    from components.hub_config.queued_spawner import queued_message

    assert queued_message("training", "notebooks", found) == said


def test_the_position_is_kueues_counted_from_one(hub):
    from components.hub_config.queued_spawner import position_of, queued_message

    listed = pending(("pod-jupyter-bob-1a2b3", 0, 1), (WORKLOAD, 1, 3))
    assert position_of(listed, workload("False")) == (2, 4)
    # The first in both queues: Kueue leaves nothing out of the JSON for a 0.
    assert position_of(pending((WORKLOAD, 0, 0)), workload("False")) == (1, 1)
    assert position_of(pending(("pod-jupyter-bob-1a2b3", 0, 0)), workload("False")) is None
    assert position_of(listed, None) is None
    assert queued_message("training", "notebooks", workload("False"), (2, 4)) == (
        f"{QUEUED}, position 2 in the LocalQueue and 4 in the ClusterQueue: {SHORT}")


def test_progress_says_the_position_and_follows_it(hub, cluster, monkeypatch):
    """The spawn page's line names the position Kueue's visibility API gives, and a new line comes
    when it changes (the one ahead admitted)."""
    from kubespawner import KubeSpawner

    cluster.workload = workload("False")
    cluster.pending = pending(("pod-jupyter-bob-1a2b3", 0, 1), (WORKLOAD, 1, 2))

    monkeypatch.setattr(KubeSpawner, "progress", started_only)

    admitted = asyncio.Event()

    async def moves_up():
        while not cluster.pending_reads:  # once the page has said the first position
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        cluster.pending = pending((WORKLOAD, 0, 0))
        # Admitted once the page has looked twice more, not after a fixed time (a loaded machine
        # once had it admitted before the page saw the new position).
        looked = len(cluster.pending_reads)
        while len(cluster.pending_reads) < looked + 2:
            await asyncio.sleep(0.05)
        admitted.set()

    events, _ = with_spawner(hub, "ann", admitted_after(cluster, admitted, moves_up()))
    messages = [e["message"] for e in events]
    assert messages[:2] == [
        f"{QUEUED}, position 2 in the LocalQueue and 3 in the ClusterQueue: {SHORT}",
        f"{QUEUED}, position 1 in the LocalQueue and 1 in the ClusterQueue: {SHORT}",
    ], messages
    assert messages[2] == "Admitted by Kueue (ClusterQueue training): starting", messages
    assert set(cluster.pending_reads) == {"notebooks"}


def test_without_the_visibility_api_the_page_says_the_rest_and_the_hub_warns_once(hub, cluster, monkeypatch):
    """The visibility API refusing (or not registered, or its server down): the spawn page says
    queued and why without a position, the spawn goes on, and the hub's log says so once."""
    from kubernetes_asyncio.client.exceptions import ApiException
    from kubespawner import KubeSpawner

    cluster.workload = workload("False")
    cluster.pending = ApiException(status=503, reason="Service Unavailable")

    monkeypatch.setattr(KubeSpawner, "progress", started_only)
    warnings: list[str] = []

    def count_warnings(spawner):
        monkeypatch.setattr(spawner.log, "warning", lambda message, *args: warnings.append(message % args))

    events, url = with_spawner(hub, "ann", admitted_after(cluster, 3.5, before=count_warnings))
    messages = [e["message"] for e in events]
    assert messages[0] == f"{QUEUED}: {SHORT}", messages
    assert url == "http://10.0.0.9:8888"
    assert len(cluster.pending_reads) >= 2, "the position was asked once only"
    assert len(warnings) == 1 and "visibility API did not answer" in warnings[0] and "503" in warnings[0], warnings


@pytest.mark.parametrize("kept_seconds", [None, 0.0])
def test_a_missed_position_read_keeps_the_last_position_while_it_is_recent(hub, cluster, monkeypatch, kept_seconds):
    """The visibility API answers once, then misses every look (slow under load): the page keeps
    the position it said (no line without it) while that is recent (POSITION_KEPT_SECONDS, 15 s);
    once it is older, the page says the rest without it."""
    from kubernetes_asyncio.client.exceptions import ApiException
    from kubespawner import KubeSpawner

    cluster.workload = workload("False")
    cluster.pending = pending((WORKLOAD, 1, 2))

    monkeypatch.setattr(KubeSpawner, "progress", started_only)
    admitted = asyncio.Event()

    def shorter_memory(spawner):
        if kept_seconds is not None:
            monkeypatch.setattr(sys.modules[type(spawner).__module__], "POSITION_KEPT_SECONDS", kept_seconds)

    async def misses():
        while not cluster.pending_reads:
            await asyncio.sleep(0.05)
        cluster.pending = ApiException(status=504, reason="Gateway Timeout")
        looked = len(cluster.pending_reads)
        while len(cluster.pending_reads) < looked + 3:
            await asyncio.sleep(0.05)
        admitted.set()

    events, _ = with_spawner(hub, "ann", admitted_after(cluster, admitted, misses(), before=shorter_memory))
    messages = [e["message"] for e in events]
    positioned = f"{QUEUED}, position 2 in the LocalQueue and 3 in the ClusterQueue: {SHORT}"
    if kept_seconds is None:
        assert messages[:2] == [positioned, "Admitted by Kueue (ClusterQueue training): starting"], messages
    else:
        assert messages[:3] == [positioned, f"{QUEUED}: {SHORT}", "Admitted by Kueue (ClusterQueue training): starting"], messages


def test_progress_says_queued_and_why_then_admitted_between_the_pods_events(hub, cluster, monkeypatch):
    from kubespawner import KubeSpawner

    cluster.workload = workload("False")

    async def pod_events(self):
        # KubeSpawner's own progress: the pod's events until the start ends.
        yield {"progress": 30, "message": "Created Workload: jupyterhub/pod-jupyter-ann-6f1c2"}
        while not self._start_future.done():
            await asyncio.sleep(0.1)

    monkeypatch.setattr(KubeSpawner, "progress", pod_events)

    events, url = with_spawner(hub, "ann", admitted_after(cluster, 2.0))
    messages = [e["message"] for e in events]
    queued = f"Queued in ClusterQueue training (LocalQueue notebooks): {SHORT}"
    # Said when it changes, not at every look, and again after a pod event, so that the page's
    # headline (its latest line) still says queued.
    assert messages.count(queued) in (1, 2), messages
    created = messages.index("Created Workload: jupyterhub/pod-jupyter-ann-6f1c2")
    assert messages[created + 1:-1] == [queued], messages
    assert messages[-1] == "Admitted by Kueue (ClusterQueue training): starting", messages
    # Kueue's lines move no progress bar: the server is not getting closer while it waits.
    assert all("progress" not in e for e in events if e["message"].startswith(("Queued", "Admitted"))), events
    assert url == "http://10.0.0.9:8888"


def test_a_server_still_queued_near_its_start_timeout_fails_with_kueues_reason(hub, cluster):
    cluster.workload = workload("False")
    start_timeout = int(GIVE_UP_BEFORE_SECONDS) + 2

    async def spawn(spawner):
        cluster.attach(spawner)
        gpu_server(spawner, cluster, gated_for=None, start_timeout=start_timeout)
        began = time.monotonic()
        with pytest.raises(TimeoutError) as caught:
            # The hub's own wait, as JupyterHub's User.spawn waits: it must not be the one that ends it.
            await asyncio.wait_for(spawner.start(), timeout=start_timeout)
        return caught.value, time.monotonic() - began

    error, took = with_spawner(hub, "ann", spawn)
    assert type(error).__name__ == "QueuedTooLong", repr(error)
    assert str(error).startswith(f"Queued in ClusterQueue training (LocalQueue notebooks): {SHORT}; gave up after"), str(error)
    assert f"its start timeout, {start_timeout}s" in str(error)
    assert start_timeout * 0.9 - GIVE_UP_BEFORE_SECONDS <= took < start_timeout * 0.9, took


def test_a_queued_server_whose_workload_cannot_be_read_at_the_end_fails_with_the_last_reason_seen(
        hub, cluster, monkeypatch):
    """The last look at its start timeout times out (an API server slow under load); the spawn page
    had shown Kueue's reason: the spawn ends with that."""
    from kubespawner import KubeSpawner

    cluster.workload = workload("False")

    async def pod_events(self):
        while not self._start_future.done():
            await asyncio.sleep(0.1)
        yield {"message": "(the pod's events end with the start)"}

    monkeypatch.setattr(KubeSpawner, "progress", pod_events)
    start_timeout = int(GIVE_UP_BEFORE_SECONDS) + 3

    async def spawn(spawner):
        cluster.attach(spawner)
        gpu_server(spawner, cluster, gated_for=None, start_timeout=start_timeout)
        started = spawner.start()
        shown = []

        async def page():
            async for event in spawner.progress():
                shown.append(event["message"])
                if event["message"].startswith("Queued in"):
                    cluster.hang = True
        watching = asyncio.ensure_future(page())
        with pytest.raises(TimeoutError) as caught:
            await asyncio.wait_for(started, timeout=start_timeout)
        watching.cancel()
        return caught.value, shown

    error, shown = with_spawner(hub, "ann", spawn)
    assert f"Queued in ClusterQueue training (LocalQueue notebooks): {SHORT}" in shown, shown
    assert cluster.hang and cluster.reads >= 2, cluster.reads
    assert type(error).__name__ == "QueuedTooLong", repr(error)
    assert str(error).startswith(f"Queued in ClusterQueue training (LocalQueue notebooks): {SHORT}; gave up after"), str(error)


def test_a_server_kueue_admitted_is_not_ended_early(hub, cluster):
    """Admitted (no gate) but not yet running at the same moment: the spawner leaves it to the
    timeouts that ended it before (here the hub's wait, which cancels it)."""
    start_timeout = int(GIVE_UP_BEFORE_SECONDS) + 2

    async def spawn(spawner):
        cluster.attach(spawner)

        async def _start():
            spawner.user_options = {"profile": "tensorflow-gpu"}
            await spawner.load_user_options()
            spawner.start_timeout = start_timeout
            cluster.pods[f"{spawner.namespace}/{spawner.pod_name}"] = pod(gated=False)
            await asyncio.sleep(3600)

        spawner._start = _start
        began = time.monotonic()
        with pytest.raises(asyncio.TimeoutError) as caught:
            await asyncio.wait_for(spawner.start(), timeout=start_timeout)
        return caught.value, time.monotonic() - began

    error, took = with_spawner(hub, "ann", spawn)
    assert type(error).__name__ == "TimeoutError" and not str(error), repr(error)
    assert took >= start_timeout - 0.5, took
    assert cluster.reads == 0, "an admitted pod's Workload was read"
