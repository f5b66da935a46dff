"""KubeSpawner for user servers that Kueue queues: the spawn page says "queued", where and why.

Shipped in the hub's ConfigMap beside jupyterhub_config.py when `kueue.notebookQueue` is set (the
document names this class as the spawner). The hub image has no mlplatform in it: this imports
only the standard library, KubeSpawner and what KubeSpawner brings (traitlets, kubernetes_asyncio).

A queued server's pod carries the queue label (its profile's `extra_labels`); Kueue's pod webhook
gates it (`kueue.x-k8s.io/admission`) and makes a Workload for it, which holds no quota while it
does not fit. KubeSpawner itself knows nothing of that (kubespawner #922): it reports the pod's
events, and Kueue writes why it waits on the Workload, not on the pod. So this spawner:
- adds to the spawn progress (what /hub/api/users/NAME/server/progress streams and the
  spawn-pending page shows) a line whenever what Kueue says of the pod changes: queued, in which
  ClusterQueue, at which position (Kueue's visibility API: the LocalQueue's pending workloads, with
  each one's place in the LocalQueue and in the ClusterQueue), and the Workload's QuotaReserved
  message (which resource is short, in which flavor), then that quota was reserved;
- ends a spawn whose pod is still gated when its start timeout is nearly over (give_up_after)
  with that reason, instead of KubeSpawner's bare timeout (the hub's stop then deletes the pod,
  and Kueue finishes its Workload, returning nothing it never held). A pod that was admitted
  times out as before.
The position comes from Kueue's visibility API (`visibility.kueue.x-k8s.io`, which the manager
serves behind an APIService; the hub may get its own LocalQueue's pending workloads and nothing
else). Where that API does not answer (not registered, its server down, refused), the page says the
rest without a position and the hub logs a warning once; the spawn goes on. A single look it misses
(slow under load) keeps the position last read, for up to POSITION_KEPT_SECONDS.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from kubespawner import KubeSpawner
from kubespawner.clients import shared_client
from traitlets import Unicode

# Kueue's names (vocab/kueue_api.py, which the hub cannot import; tests/unit/test_kueue.py holds
# them equal).
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
SCHEDULING_GATE = "kueue.x-k8s.io/admission"
GROUP = "kueue.x-k8s.io"
VERSION = "v1beta2"
WORKLOADS = "workloads"
JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"
QUOTA_RESERVED = "QuotaReserved"
VISIBILITY_GROUP = "visibility.kueue.x-k8s.io"
VISIBILITY_VERSION = "v1beta2"
PENDING_WORKLOADS = "pendingworkloads"

# How often a queued spawn's Workload is read (one list call in the hub's namespace).
POLL_SECONDS = 5.0
# How long the position may take to read (the visibility API), at most.
POSITION_TIMEOUT_SECONDS = 1.5
# A look whose position read fails keeps the position this spawn last read, if it is this recent,
# rather than dropping it from the page until the next look brings it back: under load the
# visibility API misses POSITION_TIMEOUT_SECONDS now and then (seen on the real nodes at a load of 5
# on 2 cores). Older than this, the page says the rest without one.
POSITION_KEPT_SECONDS = 3 * POLL_SECONDS
# KubeSpawner waits for its pod to run with JupyterHub's exponential_backoff, whose deadline is
# drawn at random within 10 % either side of the timeout (its timeout_tolerance): a pod that never
# runs fails its spawn anywhere from 0.9 to 1.1 times the start timeout after it was made (seen on
# the real nodes: 84 s into a 90 s timeout).
BACKOFF_JITTER = 0.1
# A gated pod's spawn ends this long before the earliest of those, so that Kueue's reason ends it,
# not KubeSpawner's bare "did not start in N seconds".
GIVE_UP_BEFORE_SECONDS = 5.0


def give_up_after(start_timeout: float) -> float:
    """Seconds into its spawn when a pod still gated is given up."""
    return max(0.0, start_timeout * (1 - BACKOFF_JITTER) - GIVE_UP_BEFORE_SECONDS)


class QueuedTooLong(TimeoutError):
    """A spawn that waited in Kueue's queue for as long as its start timeout allows. A TimeoutError,
    so that the hub counts and logs it as a timeout; its text is what the spawn page shows."""


def gated(pod: Mapping[str, Any] | None) -> bool:
    """Whether `pod` (as KubeSpawner's reflector holds it) still waits for Kueue's admission."""
    gates = ((pod or {}).get("spec") or {}).get("schedulingGates") or []
    return any(g.get("name") == SCHEDULING_GATE for g in gates)


def quota_reserved(workload: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The Workload's QuotaReserved condition, if Kueue has set it."""
    conditions = ((workload or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == QUOTA_RESERVED), None)


def position_of(pending: Mapping[str, Any] | None, workload: Mapping[str, Any] | None) -> tuple[int, int] | None:
    """The Workload's position in its LocalQueue and in its ClusterQueue, counted from 1, as the
    visibility API's pending workloads of the LocalQueue (`pending`) give them (from 0), or None
    if it is not among them."""
    if not pending or not workload:
        return None
    name = workload["metadata"]["name"]
    for item in pending.get("items") or []:
        if (item.get("metadata") or {}).get("name") == name:
            return int(item.get("positionInLocalQueue") or 0) + 1, int(item.get("positionInClusterQueue") or 0) + 1
    return None


def queued_message(
    cluster_queue: str, local_queue: str, workload: Mapping[str, Any] | None, position: tuple[int, int] | None = None
) -> str:
    """What the spawn page says of a gated pod and its Workload (None: not made yet), with its
    position (in the LocalQueue, in the ClusterQueue; from 1) where Kueue gave it."""
    where = f"Queued in ClusterQueue {cluster_queue} (LocalQueue {local_queue})"
    if position is not None:
        where += f", position {position[0]} in the LocalQueue and {position[1]} in the ClusterQueue"
    condition = quota_reserved(workload)
    if workload is None:
        return f"{where}: waiting for Kueue to take the server's Workload in"
    if condition is None:
        return f"{where}: waiting for Kueue to look at Workload {workload['metadata']['name']}"
    if condition.get("status") == "True":
        return f"Quota reserved in ClusterQueue {cluster_queue}: {condition.get('message', '')}".rstrip(": ")
    return f"{where}: {condition.get('message') or condition.get('reason') or 'no quota reserved yet'}"


# Whether this hub has logged that the visibility API did not answer (once: it is the cluster's
# state, not one spawn's, and every queued spawn asks every few seconds).
_visibility_warned = False


class QueuedKubeSpawner(KubeSpawner):
    cluster_queue = Unicode(
        "", config=True, help="The ClusterQueue the LocalQueue of queued servers points at (shown on the spawn page)."
    )

    @property
    def _pod_key(self) -> str:
        return f"{self.namespace}/{self.pod_name}"

    def _queued(self) -> bool:
        return QUEUE_LABEL in (self.extra_labels or {})

    async def _workload(self, pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The Workload Kueue made for `pod` (found by the pod's uid), or None."""
        api = shared_client("CustomObjectsApi")
        found = await api.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, WORKLOADS,
            label_selector=f"{JOB_UID_LABEL}={pod['metadata']['uid']}", _request_timeout=10,
        )
        items = found.get("items") or []
        return items[0] if items else None

    # Kueue's last reason read for this spawn (None: none yet): what the spawn ends with if the
    # last look, at the start timeout, cannot read the Workload in time.
    _last_reason: str | None = None
    # The position last read for this spawn and when (time.monotonic()), for a read that fails.
    _last_position: tuple[tuple[int, int], float] | None = None

    async def _pending_workloads(self, local_queue: str) -> Mapping[str, Any]:
        """The pending workloads of `local_queue` in the hub's namespace, with their positions, as
        Kueue's visibility API lists them (a subresource the generated client has no method for)."""
        client = shared_client("CustomObjectsApi").api_client
        return await client.call_api(
            "/apis/{group}/{version}/namespaces/{namespace}/localqueues/{name}/" + PENDING_WORKLOADS, "GET",
            path_params={"group": VISIBILITY_GROUP, "version": VISIBILITY_VERSION, "namespace": self.namespace,
                         "name": local_queue},
            header_params={"Accept": "application/json"},
            response_types_map={200: "object"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
            # Kueue answers from memory: a slow answer must not use up the time the reason has when
            # a spawn gives up (GIVE_UP_BEFORE_SECONDS).
            _request_timeout=POSITION_TIMEOUT_SECONDS,
        )

    async def _position(self, workload: Mapping[str, Any] | None) -> tuple[int, int] | None:
        """The pending Workload's position, or None where Kueue does not say it (or was not asked:
        the visibility API unreachable or refusing, logged once)."""
        global _visibility_warned
        if workload is None or (quota_reserved(workload) or {}).get("status") == "True":
            return None
        try:
            pending = await self._pending_workloads(self.extra_labels[QUEUE_LABEL])
        except Exception as error:  # noqa: BLE001 - the page says the rest, with the last position if recent
            if not _visibility_warned:
                _visibility_warned = True
                self.log.warning("Kueue's visibility API did not answer (queued servers are shown without their "
                                 "position until it does; not logged again): %s", error)
            kept = self._last_position
            return kept[0] if kept is not None and time.monotonic() - kept[1] <= POSITION_KEPT_SECONDS else None
        position = position_of(pending, workload)
        self._last_position = None if position is None else (position, time.monotonic())
        return position

    async def queue_state(self) -> str | None:
        """What Kueue says of this server's pod now: a message while it is gated, None once it is
        not (admitted, or not made yet)."""
        pod = self.pod_reflector.pods.get(self._pod_key)
        if not gated(pod):
            return None
        try:
            workload = await self._workload(pod)
        except Exception as error:  # noqa: BLE001 - the spawn goes on; the page says what is unknown
            self.log.warning("Kueue's Workload of %s not read: %s", self._pod_key, error)
            return self._last_reason or (
                f"Queued in ClusterQueue {self.cluster_queue}: the reason could not be read ({type(error).__name__})")
        self._last_reason = queued_message(
            self.cluster_queue, self.extra_labels[QUEUE_LABEL], workload, await self._position(workload)
        )
        return self._last_reason

    async def progress(self) -> AsyncIterator[dict[str, Any]]:
        """KubeSpawner's events of the pod, with what Kueue says of it in between while it waits."""
        events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        async def pod_events() -> None:
            try:
                async for event in super(QueuedKubeSpawner, self).progress():
                    await events.put(event)
            finally:
                await events.put(None)

        pump = asyncio.ensure_future(pod_events())
        said: str | None = None
        was_gated = False
        next_look = 0.0
        try:
            while True:
                if (self._queued() or was_gated) and time.monotonic() >= next_look:
                    state = await self.queue_state()
                    if state is not None and state != said:
                        # No progress figure: the bar does not move while the server waits.
                        yield {"message": state}
                        said, was_gated = state, True
                    elif state is None and was_gated:
                        yield {"message": f"Admitted by Kueue (ClusterQueue {self.cluster_queue}): starting"}
                        was_gated = False
                        said = None
                    next_look = time.monotonic() + POLL_SECONDS
                try:
                    event = await asyncio.wait_for(events.get(), timeout=1.0)
                except asyncio.TimeoutError:
                    continue
                if event is None:
                    break
                yield event
                if said is not None:
                    # The page's headline is the latest line: a pod event ("Created Workload")
                    # must not hide that the server is still queued.
                    yield {"message": said}
        finally:
            pump.cancel()

    def start(self) -> asyncio.Future:
        """KubeSpawner's start, ended with Kueue's reason if its pod is still gated near its timeout."""
        self._start_future = asyncio.ensure_future(self._start_or_say_why())
        return self._start_future

    async def _start_or_say_why(self) -> Any:
        started = time.monotonic()
        self._last_reason = None
        self._last_position = None
        task = asyncio.ensure_future(self._start())
        try:
            while True:
                done, _ = await asyncio.wait([task], timeout=1.0)
                if done:
                    return task.result()
                # start_timeout is the profile's once KubeSpawner has loaded it (in _start).
                if time.monotonic() - started < give_up_after(self.start_timeout):
                    continue
                if not gated(self.pod_reflector.pods.get(self._pod_key)):
                    self.log.info("%s is not gated by Kueue %.0fs into its start: its own timeouts end it",
                                  self._pod_key, time.monotonic() - started)
                    return await task  # not Kueue's: the timeouts end it as they would have
                try:
                    reason = await asyncio.wait_for(self.queue_state(), GIVE_UP_BEFORE_SECONDS / 2)
                except asyncio.TimeoutError:
                    # A hub or API server slow under load: the reason the spawn page showed last.
                    reason = self._last_reason or (
                        f"Queued in ClusterQueue {self.cluster_queue}: the reason could not be read in time")
                task.cancel()
                raise QueuedTooLong(
                    f"{reason or 'queued'}; gave up after {time.monotonic() - started:.0f}s in the queue, the most "
                    f"this profile waits (its start timeout, {self.start_timeout}s)"
                )
        except BaseException:
            task.cancel()
            raise
