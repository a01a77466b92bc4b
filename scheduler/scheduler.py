"""The scheduler runnable: informers feed a queue and a cache; one loop decides, many bind.

Deciding is CPU work on an immutable snapshot and takes well under a millisecond per pod;
binding is a round trip to the API server. So the loop never waits for a binding: it
assumes the placement in the cache (the next decision already sees it), hands the
``POST pods/{name}/binding`` to a bounded pool of concurrent binds, and moves on. A failed
binding undoes the assumption and puts the pod back in the queue; a 409 (already bound) or
404 (gone) just drops it, since the informer brings the truth. Events and status writes are
best-effort and off the hot path too.

Events go through a bounded queue (client-go's broadcaster drops them when its queue is
full, too) to one writer that yields to scheduling: an Event costs the API server about as
much as a binding, and on two cores a burst's Scheduled events written alongside its
bindings took a quarter of the API server's time from them. So the writer waits until the
scheduler has been quiet for ``EVENT_QUIET`` seconds (nothing decided or bound), and an event
waits at most ``EVENT_MAX_DELAY`` seconds, so a scheduler that is never quiet still reports.

Only pods that are pending, not being deleted, and ask for this scheduler's name are
scheduled; every bound pod is counted in the cache whoever bound it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, Collection

from minik8s.api.errors import NotFound, StatusError
from minik8s.api.meta import Obj, now_rfc3339
from minik8s.client.events import NORMAL, WARNING, EventRecorder
from minik8s.runtime.workqueue import REAL_CLOCK, Clock
from scheduler.cache import Cache, is_terminal
from scheduler.framework import FitError, Framework, default_framework
from scheduler.nodeinfo import PodInfo, pod_key
from scheduler.queue import (ASSIGNED_POD_ADD, ASSIGNED_POD_DELETE, ASSIGNED_POD_UPDATE,
                             NODE_ADD, NODE_UPDATE, ClusterEvent, QueueClosed, QueuedPod,
                             SchedulingQueue)

log = logging.getLogger(__name__)

DEFAULT_SCHEDULER_NAME = "default-scheduler"
DEFAULT_BIND_CONCURRENCY = 16
COMPONENT = "default-scheduler"
CLEANUP_PERIOD = 1.0
MAX_PENDING_EVENTS = 10000
EVENT_QUIET = 0.05      # seconds without scheduling work before events are written
EVENT_MAX_DELAY = 10.0  # ... but no event waits longer than this
CLAIM_CHANGE = ClusterEvent("PersistentVolumeClaimChange", frozenset({"VolumeBinding"}))


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def _node_relevant(old: Obj, new: Obj) -> bool:
    """Did the node change in a way scheduling cares about (not just heartbeats)?"""
    def view(n: Obj) -> tuple:
        st = n.get("status") or {}
        conds = sorted((c.get("type"), c.get("status")) for c in st.get("conditions") or [])
        return ((n.get("metadata") or {}).get("labels"), _spec(n).get("unschedulable"),
                _spec(n).get("taints"), st.get("allocatable"), conds)
    return view(old) != view(new)


class Scheduler:
    """Runs the scheduling loop over shared informers; ``start()`` blocks until cancelled."""

    name = "scheduler"

    def __init__(self, client: Any, informers: Any, *,
                 scheduler_name: str = DEFAULT_SCHEDULER_NAME,
                 framework: Framework | None = None, seed: int | None = None,
                 bind_concurrency: int = DEFAULT_BIND_CONCURRENCY,
                 namespaces: Collection[str] | None = None, clock: Clock | None = None,
                 recorder: EventRecorder | None = None, identity: str = ""):
        self.client = client
        self.scheduler_name = scheduler_name
        self.framework = framework or default_framework(random.Random(seed), self._claim)
        self.clock = clock or REAL_CLOCK
        self.cache = Cache(clock=self.clock)
        self.queue = SchedulingQueue(clock=self.clock)
        self.bind_concurrency = bind_concurrency
        self.namespaces = frozenset(namespaces) if namespaces else None
        self.recorder = recorder or EventRecorder(client, COMPONENT, identity)
        self.bound = 0            # bindings this instance made
        self.failed_attempts = 0  # cycles that found no node
        self._slots = asyncio.Semaphore(bind_concurrency)
        self._binding = 0
        self._busy_at = float("-inf")  # when the scheduler last decided or bound
        self._tasks: set[asyncio.Task[Any]] = set()
        self._events: asyncio.Queue[tuple[float, Obj, str, str, str]] = asyncio.Queue()
        self.pod_informer = informers.informer("pods")
        self.node_informer = informers.informer("nodes")
        self.informers = informers
        self.pod_informer.add_handler(self._on_pod_add, self._on_pod_update,
                                      self._on_pod_delete)
        self.node_informer.add_handler(self._on_node_add, self._on_node_update,
                                       self._on_node_delete)
        # Claims place pods on the node of their volume (VolumeBinding); a claim appearing or
        # getting bound may make a waiting pod schedulable.
        self.claim_informer = informers.informer("persistentvolumeclaims")
        self.claim_informer.add_handler(
            lambda c: self.queue.move_all_to_active_or_backoff(CLAIM_CHANGE),
            lambda o, c: self.queue.move_all_to_active_or_backoff(CLAIM_CHANGE))

    def _claim(self, namespace: str, name: str) -> Obj | None:
        return self.claim_informer.store.get_by_key(f"{namespace}/{name}")

    # --- which pods are ours --------------------------------------------------------

    def responsible_for(self, pod: Obj) -> bool:
        md = pod.get("metadata") or {}
        spec = _spec(pod)
        if spec.get("nodeName") or md.get("deletionTimestamp") or is_terminal(pod):
            return False
        if (spec.get("schedulerName") or DEFAULT_SCHEDULER_NAME) != self.scheduler_name:
            return False
        if spec.get("schedulingGates"):
            return False
        return self.namespaces is None or md.get("namespace") in self.namespaces

    # --- event handlers (only bookkeeping: never any I/O) ---------------------------

    def _on_pod_add(self, pod: Obj) -> None:
        if _spec(pod).get("nodeName"):
            self.cache.add_pod(pod)
            self.queue.delete(pod)
            self.queue.move_all_to_active_or_backoff(ASSIGNED_POD_ADD)
        elif self.responsible_for(pod) and not self.cache.is_assumed(pod_key(pod)):
            self.queue.add(pod)

    def _on_pod_update(self, old: Obj, new: Obj) -> None:
        if _spec(new).get("nodeName"):
            was_bound = bool(_spec(old).get("nodeName"))
            self.cache.update_pod(old, new)
            if not was_bound:
                self.queue.delete(new)
                self.queue.move_all_to_active_or_backoff(ASSIGNED_POD_ADD)
            elif is_terminal(new) or (new.get("metadata") or {}).get("labels") != \
                    (old.get("metadata") or {}).get("labels"):
                self.queue.move_all_to_active_or_backoff(ASSIGNED_POD_UPDATE)
        elif self.responsible_for(new):
            if not self.cache.is_assumed(pod_key(new)):
                self.queue.update(old, new)
        else:
            self.queue.delete(new)

    def _on_pod_delete(self, pod: Obj) -> None:
        key = pod_key(pod)
        self.queue.delete(key)
        if self.cache.is_known(key):
            self.cache.remove_pod(key)
            self.queue.move_all_to_active_or_backoff(ASSIGNED_POD_DELETE)

    def _on_node_add(self, node: Obj) -> None:
        self.cache.add_node(node)
        self.queue.move_all_to_active_or_backoff(NODE_ADD)

    def _on_node_update(self, old: Obj, new: Obj) -> None:
        self.cache.update_node(new)
        if _node_relevant(old, new):
            self.queue.move_all_to_active_or_backoff(NODE_UPDATE)

    def _on_node_delete(self, node: Obj) -> None:
        self.cache.remove_node(node)

    # --- running --------------------------------------------------------------------

    async def start(self) -> None:
        await self.informers.wait_synced()
        loop = asyncio.get_running_loop()
        helpers = [loop.create_task(self.queue.run(), name="scheduler:queue-flush"),
                   loop.create_task(self._cleanup_loop(), name="scheduler:cache-cleanup"),
                   loop.create_task(self._event_loop(), name="scheduler:events")]
        log.info("scheduler %r started: %d node(s), %d pending pod(s)", self.scheduler_name,
                 self.cache.node_count, len(self.queue))
        try:
            await self._schedule_loop()
        finally:
            self.queue.close()
            pending = helpers + list(self._tasks)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _schedule_loop(self) -> None:
        while True:
            try:
                qp = await self.queue.pop()
            except QueueClosed:
                return
            await self.schedule_one(qp)
            # Let informer handlers and binds run between decisions during a burst.
            await asyncio.sleep(0)

    async def _cleanup_loop(self) -> None:
        while True:
            await self.clock.sleep(CLEANUP_PERIOD)
            if self.cache.cleanup_expired():
                self.queue.move_all_to_active_or_backoff(ASSIGNED_POD_DELETE)

    # --- one cycle ------------------------------------------------------------------

    async def schedule_one(self, qp: QueuedPod) -> None:
        pod = qp.pod
        if not self.responsible_for(pod) or self.cache.is_known(qp.key):
            self.queue.done(qp.key)
            return
        self._busy_at = self.clock.now()
        info = PodInfo.of(pod)
        try:
            result = self.framework.schedule(info, self.cache.snapshot())
        except FitError as err:
            self.failed_attempts += 1
            self.queue.add_unschedulable(qp, err.diagnosis.unschedulable_plugins)
            message = err.message()
            log.info("unable to schedule %s/%s: %s", qp.namespace, qp.name, message)
            self._spawn(self._record_failure(pod, message))
            return
        except Exception:
            log.exception("scheduling %s/%s failed", qp.namespace, qp.name)
            self.queue.add_backoff(qp)
            return
        self.cache.assume_pod(info, result.node)
        self.queue.done(qp.key)
        await self._slots.acquire()
        self._binding += 1
        self._spawn(self._bind(qp, info, result.node), slot=True)

    def _spawn(self, coro: Any, slot: bool = False) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)

        def finished(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if slot:
                self._slots.release()
                self._binding -= 1
                self._busy_at = self.clock.now()
        task.add_done_callback(finished)

    async def _bind(self, qp: QueuedPod, info: PodInfo, node: str) -> None:
        binding = {"apiVersion": "v1", "kind": "Binding",
                   "metadata": {"name": info.name, "namespace": info.namespace,
                                **({"uid": (info.pod.get("metadata") or {})["uid"]}
                                   if (info.pod.get("metadata") or {}).get("uid") else {})},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        try:
            await self.client.create("pods", binding, info.namespace, subresource="binding",
                                     name=info.name)
        except asyncio.CancelledError:
            self.cache.forget_pod(info.key)
            raise
        except (NotFound, StatusError) as exc:
            if isinstance(exc, NotFound) or exc.code in (404, 409):
                # gone, already bound, or being deleted: the informer brings the truth
                log.info("binding %s/%s to %s: %s", info.namespace, info.name, node, exc)
                self.cache.forget_pod(info.key)
                self.queue.move_all_to_active_or_backoff(ASSIGNED_POD_DELETE)
                return
            self._bind_failed(qp, info, node, exc)
            return
        except Exception as exc:
            self._bind_failed(qp, info, node, exc)
            return
        self.cache.finish_binding(info.key)
        self.bound += 1
        log.debug("bound %s/%s to %s", info.namespace, info.name, node)
        self._emit(info.pod, NORMAL, "Scheduled",
                   f"Successfully assigned {info.namespace}/{info.name} to {node}")

    def _bind_failed(self, qp: QueuedPod, info: PodInfo, node: str, exc: Exception) -> None:
        log.warning("binding %s/%s to %s failed: %s; retrying", info.namespace, info.name,
                    node, exc)
        self.cache.forget_pod(info.key)
        self.queue.move_all_to_active_or_backoff(ASSIGNED_POD_DELETE)
        current = self.pod_informer.store.get_by_key(f"{info.namespace}/{info.name}")
        if current is not None and pod_key(current) == info.key and self.responsible_for(current):
            qp.pod = current
            self.queue.add_backoff(qp)

    # --- reporting ------------------------------------------------------------------

    def _emit(self, pod: Obj, type_: str, reason: str, message: str) -> None:
        if self._events.qsize() < MAX_PENDING_EVENTS:
            self._events.put_nowait((self.clock.now(), pod, type_, reason, message))
        else:
            log.debug("event queue full: dropping %s for %s", reason,
                      (pod.get("metadata") or {}).get("name"))

    def _quiet(self) -> bool:
        return not self._binding and self.clock.now() - self._busy_at >= EVENT_QUIET

    async def _event_loop(self) -> None:
        """Events are written one at a time once the scheduler is quiet (see the module
        docstring), or when the oldest has waited ``EVENT_MAX_DELAY``."""
        while True:
            queued_at, pod, type_, reason, message = await self._events.get()
            while not self._quiet() and self.clock.now() - queued_at < EVENT_MAX_DELAY:
                await self.clock.sleep(EVENT_QUIET)
            await self.recorder.event({"kind": "Pod", "apiVersion": "v1", **pod}, type_,
                                      reason, message)

    async def _record_failure(self, pod: Obj, message: str) -> None:
        self._emit(pod, WARNING, "FailedScheduling", message)
        md = pod.get("metadata") or {}
        conditions = list((pod.get("status") or {}).get("conditions") or [])
        for c in conditions:
            if (c.get("type") == "PodScheduled" and c.get("status") == "False"
                    and c.get("reason") == "Unschedulable" and c.get("message") == message):
                return  # already says so
        old = next((c for c in conditions if c.get("type") == "PodScheduled"), None)
        cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": message, "lastProbeTime": None,
                "lastTransitionTime": (old.get("lastTransitionTime")
                                       if old and old.get("status") == "False" else None)
                or now_rfc3339()}
        conditions = [c for c in conditions if c.get("type") != "PodScheduled"] + [cond]
        try:
            await self.client.patch("pods", md.get("name"), {"status": {"conditions": conditions}},
                                    md.get("namespace"), subresource="status")
        except NotFound:
            pass
        except Exception as exc:
            log.warning("could not update the status of %s/%s: %s", md.get("namespace"),
                        md.get("name"), exc)


__all__ = ["Scheduler", "DEFAULT_SCHEDULER_NAME", "DEFAULT_BIND_CONCURRENCY"]
