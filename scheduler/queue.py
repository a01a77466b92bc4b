"""The scheduling queue: which pending pod to try next, and when to try a failed one again.

Kubernetes' ``PriorityQueue`` in small. Three places a pod can wait:

- *active*: ready to be tried, highest ``spec.priority`` first, then first come first served;
- *backoff*: failed recently; waits 1 s, doubling per attempt up to 10 s, so one pod that
  cannot fit does not monopolise the scheduler;
- *unschedulable*: failed and nothing has changed since, so retrying would fail the same way.
  It leaves only when the cluster changes in a way that could help (a node added or updated,
  a placed pod deleted or bound), filtered by which plugins rejected it, or after five
  minutes as a safety net.

A cluster change that happens *while* a pod is being tried would be missed if that pod then
parked itself in *unschedulable*; so, as Kubernetes does with ``moveRequestCycle``, a pod
whose attempt started before the latest change goes to backoff instead.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from dataclasses import dataclass, field
from typing import Iterable

from minik8s.api.meta import Obj
from minik8s.runtime.workqueue import REAL_CLOCK, Clock
from scheduler.nodeinfo import pod_key

log = logging.getLogger(__name__)

DEFAULT_INITIAL_BACKOFF = 1.0
DEFAULT_MAX_BACKOFF = 10.0
DEFAULT_MAX_UNSCHEDULABLE = 300.0
FLUSH_BACKOFF_PERIOD = 1.0
FLUSH_UNSCHEDULABLE_PERIOD = 30.0


class QueueClosed(Exception):
    """The queue was closed; no more pods will be handed out."""


@dataclass(frozen=True)
class ClusterEvent:
    """A change that may make unschedulable pods schedulable. ``helps`` names the plugins
    whose rejections it may undo (``None``: any)."""

    name: str
    helps: frozenset[str] | None = None

    def relevant(self, plugins: frozenset[str]) -> bool:
        return self.helps is None or not plugins or not self.helps.isdisjoint(plugins)


NODE_ADD = ClusterEvent("NodeAdd")
NODE_UPDATE = ClusterEvent("NodeUpdate")
ASSIGNED_POD_ADD = ClusterEvent("AssignedPodAdd", frozenset({"InterPodAffinity"}))
ASSIGNED_POD_UPDATE = ClusterEvent("AssignedPodUpdate",
                                   frozenset({"InterPodAffinity", "NodeResourcesFit"}))
ASSIGNED_POD_DELETE = ClusterEvent("AssignedPodDelete", frozenset(
    {"InterPodAffinity", "NodeResourcesFit", "NodePorts"}))
UNSCHEDULABLE_TIMEOUT = ClusterEvent("UnschedulableTimeout")


@dataclass(eq=False)
class QueuedPod:
    """A pod waiting in (or handed out by) the queue, with its scheduling history."""

    pod: Obj
    key: str
    timestamp: float                 # when it last entered the queue
    seq: int
    attempts: int = 0
    cycle: int = 0                   # scheduling cycle of its latest attempt
    unschedulable_plugins: frozenset[str] = frozenset()
    updated_in_flight: bool = False
    deleted_in_flight: bool = False

    @property
    def priority(self) -> int:
        return int((self.pod.get("spec") or {}).get("priority") or 0)

    @property
    def namespace(self) -> str:
        return (self.pod.get("metadata") or {}).get("namespace") or ""

    @property
    def name(self) -> str:
        return (self.pod.get("metadata") or {}).get("name") or ""


def _strip(pod: Obj) -> Obj:
    md = {k: v for k, v in (pod.get("metadata") or {}).items()
          if k not in ("resourceVersion", "generation", "managedFields")}
    return {**{k: v for k, v in pod.items() if k != "status"}, "metadata": md}


def pod_updated(old: Obj, new: Obj) -> bool:
    """Did anything change besides status and bookkeeping? (Kubernetes' ``isPodUpdated``.)
    The scheduler's own status writes must not make a pod retry."""
    return _strip(old) != _strip(new)


@dataclass
class _Heap:
    """A heap of keys with lazy deletion: entries whose key left, or was re-pushed with
    another sort key, are skipped when they surface."""

    entries: list[tuple] = field(default_factory=list)
    current: dict[str, tuple] = field(default_factory=dict)

    def push(self, key: str, sort: tuple) -> None:
        entry = (*sort, key)
        self.current[key] = entry
        heapq.heappush(self.entries, entry)

    def remove(self, key: str) -> None:
        self.current.pop(key, None)

    def peek(self) -> tuple | None:
        while self.entries:
            entry = self.entries[0]
            if self.current.get(entry[-1]) is entry:
                return entry
            heapq.heappop(self.entries)
        return None

    def pop(self) -> str:
        entry = self.peek()
        assert entry is not None
        heapq.heappop(self.entries)
        del self.current[entry[-1]]
        return entry[-1]

    def __contains__(self, key: object) -> bool:
        return key in self.current

    def __len__(self) -> int:
        return len(self.current)


class SchedulingQueue:
    """Active heap, backoff heap and unschedulable set of pending pods, keyed by uid."""

    def __init__(self, *, clock: Clock | None = None,
                 initial_backoff: float = DEFAULT_INITIAL_BACKOFF,
                 max_backoff: float = DEFAULT_MAX_BACKOFF,
                 max_unschedulable: float = DEFAULT_MAX_UNSCHEDULABLE):
        self.clock: Clock = clock or REAL_CLOCK
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_unschedulable = max_unschedulable
        self._pods: dict[str, QueuedPod] = {}      # everything waiting, any of the three
        self._active = _Heap()
        self._backoff = _Heap()
        self._unschedulable: dict[str, QueuedPod] = {}
        self._in_flight: dict[str, QueuedPod] = {}
        self._seq = itertools.count()
        self._cycle = 0
        self._move_request_cycle = -1
        self._wakeup = asyncio.Event()
        self._closed = False

    # --- introspection --------------------------------------------------------------

    @property
    def scheduling_cycle(self) -> int:
        return self._cycle

    def pending(self) -> dict[str, list[str]]:
        """Keys per place, for tests and debugging."""
        return {"active": sorted(self._active.current), "backoff": sorted(self._backoff.current),
                "unschedulable": sorted(self._unschedulable), "in_flight": sorted(self._in_flight)}

    def where(self, key: str) -> str | None:
        if key in self._active:
            return "active"
        if key in self._backoff:
            return "backoff"
        if key in self._unschedulable:
            return "unschedulable"
        if key in self._in_flight:
            return "in_flight"
        return None

    def __len__(self) -> int:
        return len(self._pods)

    def __contains__(self, key: object) -> bool:
        return key in self._pods or key in self._in_flight

    # --- backoff arithmetic ---------------------------------------------------------

    def backoff_duration(self, qp: QueuedPod) -> float:
        d = self.initial_backoff
        for _ in range(1, qp.attempts):
            d *= 2
            if d >= self.max_backoff:
                return self.max_backoff
        return min(d, self.max_backoff)

    def backoff_expiry(self, qp: QueuedPod) -> float:
        return qp.timestamp + self.backoff_duration(qp)

    def is_backing_off(self, qp: QueuedPod) -> bool:
        return qp.attempts > 0 and self.backoff_expiry(qp) > self.clock.now()

    # --- placing --------------------------------------------------------------------

    def _to_active(self, qp: QueuedPod) -> None:
        self._backoff.remove(qp.key)
        self._unschedulable.pop(qp.key, None)
        self._pods[qp.key] = qp
        self._active.push(qp.key, (-qp.priority, qp.timestamp, qp.seq))
        self._wakeup.set()

    def _to_backoff(self, qp: QueuedPod) -> None:
        self._active.remove(qp.key)
        self._unschedulable.pop(qp.key, None)
        self._pods[qp.key] = qp
        self._backoff.push(qp.key, (self.backoff_expiry(qp), qp.seq))

    def _to_unschedulable(self, qp: QueuedPod) -> None:
        self._active.remove(qp.key)
        self._backoff.remove(qp.key)
        self._pods[qp.key] = qp
        self._unschedulable[qp.key] = qp

    def _requeue(self, qp: QueuedPod) -> None:
        (self._to_backoff if self.is_backing_off(qp) else self._to_active)(qp)

    # --- what event handlers call ---------------------------------------------------

    def add(self, pod: Obj) -> None:
        """A new pending pod (or one that became pending again): straight to active."""
        key = pod_key(pod)
        flying = self._in_flight.get(key)
        if flying is not None:
            flying.pod = pod
            flying.updated_in_flight = True
            return
        qp = self._pods.get(key)
        if qp is None:
            qp = QueuedPod(pod, key, self.clock.now(), next(self._seq))
        else:
            qp.pod = pod
        self._to_active(qp)

    def update(self, old: Obj | None, new: Obj) -> None:
        key = pod_key(new)
        flying = self._in_flight.get(key)
        if flying is not None:
            if old is None or pod_updated(old, new):
                flying.updated_in_flight = True
            flying.pod = new
            return
        qp = self._pods.get(key)
        if qp is None:
            self.add(new)
            return
        qp.pod = new
        if key in self._active:
            self._to_active(qp)  # priority may have changed
        elif key in self._unschedulable and (old is None or pod_updated(old, new)):
            self._requeue(qp)

    def delete(self, pod: Obj | str) -> None:
        key = pod if isinstance(pod, str) else pod_key(pod)
        flying = self._in_flight.get(key)
        if flying is not None:
            flying.deleted_in_flight = True
        self._pods.pop(key, None)
        self._active.remove(key)
        self._backoff.remove(key)
        self._unschedulable.pop(key, None)

    def move_all_to_active_or_backoff(self, event: ClusterEvent) -> int:
        """The cluster changed: unschedulable pods the change may help go back (to backoff
        while their backoff lasts). Pods being tried right now will not park either."""
        moved = 0
        for qp in list(self._unschedulable.values()):
            if event.relevant(qp.unschedulable_plugins):
                self._requeue(qp)
                moved += 1
        self._move_request_cycle = self._cycle
        if moved:
            log.debug("%s moved %d unschedulable pod(s)", event.name, moved)
        return moved

    # --- what the scheduling loop calls ---------------------------------------------

    async def pop(self) -> QueuedPod:
        """The next pod to try (waits for one); it is *in flight* until ``done``,
        ``add_unschedulable`` or ``add_backoff``."""
        while True:
            if self._closed:
                raise QueueClosed()
            if self._active.peek() is not None:
                break
            self._wakeup.clear()
            await self._wakeup.wait()
        key = self._active.pop()
        qp = self._pods.pop(key)
        self._cycle += 1
        qp.attempts += 1
        qp.cycle = self._cycle
        qp.updated_in_flight = qp.deleted_in_flight = False
        self._in_flight[key] = qp
        return qp

    def done(self, key: str) -> None:
        """The attempt ended with a placement: the pod leaves the queue."""
        self._in_flight.pop(key, None)

    def add_unschedulable(self, qp: QueuedPod, plugins: Iterable[str] = ()) -> None:
        """The attempt found no node; park the pod (or back it off if the cluster changed
        meanwhile)."""
        self._in_flight.pop(qp.key, None)
        if qp.deleted_in_flight or qp.key in self._pods:
            return
        qp.timestamp = self.clock.now()
        qp.unschedulable_plugins = frozenset(plugins)
        if qp.updated_in_flight or self._move_request_cycle >= qp.cycle:
            self._to_backoff(qp)
        else:
            self._to_unschedulable(qp)

    def add_backoff(self, qp: QueuedPod) -> None:
        """The attempt failed for another reason (an API error): retry after backoff."""
        self._in_flight.pop(qp.key, None)
        if qp.deleted_in_flight or qp.key in self._pods:
            return
        qp.timestamp = self.clock.now()
        self._to_backoff(qp)

    # --- timers ---------------------------------------------------------------------

    def flush_backoff_completed(self) -> int:
        now = self.clock.now()
        moved = 0
        while True:
            entry = self._backoff.peek()
            if entry is None or entry[0] > now:
                return moved
            key = self._backoff.pop()
            self._to_active(self._pods[key])
            moved += 1

    def flush_unschedulable_leftover(self) -> int:
        now = self.clock.now()
        moved = 0
        for qp in list(self._unschedulable.values()):
            if now - qp.timestamp >= self.max_unschedulable:
                self._requeue(qp)
                moved += 1
        return moved

    async def run(self) -> None:
        """The periodic flushes, until cancelled."""
        last_leftover = self.clock.now()
        while True:
            await self.clock.sleep(FLUSH_BACKOFF_PERIOD)
            self.flush_backoff_completed()
            if self.clock.now() - last_leftover >= FLUSH_UNSCHEDULABLE_PERIOD:
                last_leftover = self.clock.now()
                self.flush_unschedulable_leftover()

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()


__all__ = ["SchedulingQueue", "QueuedPod", "QueueClosed", "ClusterEvent", "pod_updated",
           "NODE_ADD", "NODE_UPDATE", "ASSIGNED_POD_ADD", "ASSIGNED_POD_UPDATE",
           "ASSIGNED_POD_DELETE", "UNSCHEDULABLE_TIMEOUT", "DEFAULT_INITIAL_BACKOFF",
           "DEFAULT_MAX_BACKOFF", "DEFAULT_MAX_UNSCHEDULABLE"]
