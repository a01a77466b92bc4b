"""Node lifecycle: notice nodes that stopped reporting, taint them, and evict their pods.

A kubelet proves it is alive by renewing its Lease in ``kube-node-lease`` (and by moving the
heartbeat of its conditions). As in leader election, the remote ``renewTime`` is never
compared with the local clock: this controller records *when it saw* the renewal change, on
its own (injectable) clock, and a node whose record has not changed for
``node_monitor_grace_period`` is declared lost: every condition goes ``Unknown`` (reason
``NodeStatusUnknown``) through ``nodes/{name}/status``, and the node gets the
``node.kubernetes.io/unreachable`` taint with ``NoSchedule`` and ``NoExecute``. A node that
reports ``Ready=False`` itself gets ``node.kubernetes.io/not-ready`` instead. When the node
reports again, the taints go away.

Taint-based eviction (Kubernetes' NoExecuteTaintManager) is part of the same reconcile: a pod
on a node with a ``NoExecute`` taint it does not tolerate is deleted at once; one tolerating
it with ``tolerationSeconds`` is deleted when the smallest such toleration has run out,
counted from when this controller first saw the taint. The tolerations the API server adds
to every pod (DefaultTolerationSeconds: not-ready/unreachable for
``minik8s.api.defaults.DEFAULT_TOLERATION_SECONDS``) are read as "the default", and the
``default_eviction_seconds`` setting replaces their value, so one flag of this controller
sets how long ordinary pods survive a lost node.

Deletion mode: eviction is an ordinary (graceful) delete, as Kubernetes' taint manager does.
On an unreachable node no kubelet confirms it, so the pod stays ``Terminating``: that is
what keeps "at most one pod per identity" -- a StatefulSet never reuses a name that still
exists -- while a ReplicaSet does not count terminating pods and replaces them elsewhere at
once. A force delete here would free the StatefulSet's name while its container may still run
on the partitioned node. The pod disappears when the node comes back (its kubelet kills the
containers and confirms) or when the node is deleted (below); if the node comes back, its
kubelet also removes containers of any pod no longer bound to it (orphan cleanup), so no pod
runs twice.

Pods of a node that was deleted are force-deleted as well (the pod GC's orphan sweep), so a
StatefulSet waiting for its pod's name to be free can go on.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable

from minik8s.api.defaults import DEFAULT_TOLERATION_SECONDS, TAINT_NOT_READY, TAINT_UNREACHABLE
from minik8s.api.errors import NotFound
from minik8s.api.meta import Obj, now_rfc3339
from minik8s.api.taints import NO_EXECUTE, NO_SCHEDULE, tolerates
from minik8s.cache import field_index
from minik8s.client.events import NORMAL, WARNING
from minik8s.runtime import Controller, Result, WorkQueue

log = logging.getLogger(__name__)

NODE_LEASE_NAMESPACE = "kube-node-lease"
POD_NODE_INDEX = "spec.nodeName"
REASON_UNKNOWN = "NodeStatusUnknown"
MESSAGE_UNKNOWN = "Kubelet stopped posting node status."
LIFECYCLE_TAINT_KEYS = (TAINT_NOT_READY, TAINT_UNREACHABLE)
COMPONENT = "node-controller"


# --- taints and tolerations (pure) ----------------------------------------------------------

def is_default_toleration(toleration: Obj) -> bool:
    """The toleration DefaultTolerationSeconds admission adds."""
    return (toleration.get("key") in LIFECYCLE_TAINT_KEYS
            and toleration.get("operator") == "Exists"
            and toleration.get("effect") == NO_EXECUTE
            and toleration.get("tolerationSeconds") == DEFAULT_TOLERATION_SECONDS)


def eviction_delay(taints: Iterable[Obj], tolerations: Iterable[Obj],
                   default_seconds: float | None = None) -> float | None:
    """How long a pod may stay on a node with these taints: 0 (evict now) when a NoExecute
    taint is not tolerated, None (forever) when none of the tolerations used has
    ``tolerationSeconds``, else the smallest one (Kubernetes' ``getMinTolerationTime``).
    ``default_seconds`` replaces the value of the default tolerations."""
    tols = list(tolerations)
    no_execute = [t for t in taints if (t.get("effect") or "") == NO_EXECUTE]
    if not no_execute:
        return None
    used: list[Obj] = []
    for taint in no_execute:
        matching = [t for t in tols if tolerates(t, taint)]
        if not matching:
            return 0.0
        used.extend(matching)
    best: float | None = None
    for t in used:
        seconds = t.get("tolerationSeconds")
        if seconds is None:
            continue
        if default_seconds is not None and is_default_toleration(t):
            seconds = default_seconds
        seconds = max(0.0, float(seconds))
        best = seconds if best is None else min(best, seconds)
    return best


def ready_status(node: Obj) -> str:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") or "Unknown"
    return "Unknown"


def lifecycle_taints(ready: str) -> list[Obj]:
    """The taints the Ready condition calls for (without ``timeAdded``)."""
    if ready == "True":
        return []
    key = TAINT_UNREACHABLE if ready == "Unknown" else TAINT_NOT_READY
    return [{"key": key, "effect": NO_SCHEDULE}, {"key": key, "effect": NO_EXECUTE}]


def with_lifecycle_taints(current: list[Obj], wanted: list[Obj], now: str) -> list[Obj]:
    """``current`` with its lifecycle taints replaced by ``wanted`` (existing ones keep their
    ``timeAdded``); other taints untouched and first."""
    others = [t for t in current if t.get("key") not in LIFECYCLE_TAINT_KEYS]
    existing = {(t.get("key"), t.get("effect")): t for t in current
                if t.get("key") in LIFECYCLE_TAINT_KEYS}
    out = list(others)
    for t in wanted:
        old = existing.get((t["key"], t["effect"]))
        out.append(old if old is not None else {**t, "timeAdded": now})
    return out


def unknown_conditions(conditions: list[Obj], now: str) -> list[Obj]:
    """Every condition set to Unknown, as Kubernetes does when the kubelet goes silent; a
    missing Ready condition is added."""
    out = []
    seen_ready = False
    for c in conditions:
        c = dict(c)
        seen_ready |= c.get("type") == "Ready"
        if c.get("status") != "Unknown":
            c.update(status="Unknown", reason=REASON_UNKNOWN, message=MESSAGE_UNKNOWN,
                     lastTransitionTime=now)
        out.append(c)
    if not seen_ready:
        out.append({"type": "Ready", "status": "Unknown", "reason": REASON_UNKNOWN,
                    "message": MESSAGE_UNKNOWN, "lastHeartbeatTime": now,
                    "lastTransitionTime": now})
    return out


def _heartbeat(node: Obj) -> Any:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready" and c.get("reason") != REASON_UNKNOWN:
            return c.get("lastHeartbeatTime")
    return None


def _is_terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


# --- the controller -------------------------------------------------------------------------

class NodeLifecycleController:
    name = "nodelifecycle"

    def __init__(self, client: Any, informers: Any, *, grace_period: float = 40.0,
                 default_eviction_seconds: float | None = None, clock: Any = None,
                 recorder: Any = None, workers: int = 1):
        self.client = client
        self.grace_period = grace_period
        self.default_eviction_seconds = default_eviction_seconds
        self.clock = clock
        self.recorder = recorder
        self.nodes = informers.informer("nodes")
        self.leases = informers.informer("leases", NODE_LEASE_NAMESPACE)
        self.pods = informers.informer("pods", indexers={POD_NODE_INDEX:
                                                         field_index("spec.nodeName")})
        self.controller = Controller(self.name, self.reconcile,
                                     queue=WorkQueue(self.name, clock=clock), workers=workers)
        # node -> (what we last saw of its liveness signals, local time we saw it change)
        self._observed: dict[str, tuple[Any, float]] = {}
        # node -> local time its current NoExecute taints were first seen
        self._tainted_since: dict[str, tuple[tuple, float]] = {}
        self._known: set[str] = set()
        enqueue = self.controller.enqueue_key
        self.nodes.add_handler(lambda n: enqueue(n["metadata"]["name"]),
                               lambda o, n: enqueue(n["metadata"]["name"]),
                               lambda n: enqueue(n["metadata"]["name"]))
        self.leases.add_handler(lambda lease: enqueue(lease["metadata"]["name"]),
                                lambda o, lease: enqueue(lease["metadata"]["name"]))
        self.pods.add_handler(self._on_pod, lambda o, p: self._on_pod(p))

    def _on_pod(self, pod: Obj) -> None:
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            self.controller.enqueue_key(node)

    async def start(self) -> None:
        await self.controller.start()

    # --- liveness -----------------------------------------------------------------------

    def _signals(self, name: str, node: Obj) -> tuple:
        lease = self.leases.get(f"{NODE_LEASE_NAMESPACE}/{name}")
        renew = (lease.get("spec") or {}).get("renewTime") if lease else None
        return (renew, _heartbeat(node))

    def _silent_for(self, name: str, node: Obj) -> float:
        """Seconds since the node's Lease or heartbeat last changed, as seen from here."""
        now = self.clock.now()
        signals = self._signals(name, node)
        seen = self._observed.get(name)
        if seen is None or seen[0] != signals:
            self._observed[name] = (signals, now)
            return 0.0
        return now - seen[1]

    # --- reconcile ----------------------------------------------------------------------

    async def reconcile(self, name: str) -> Result | None:
        node = self.nodes.get(name)
        if node is None:
            self._observed.pop(name, None)
            self._tainted_since.pop(name, None)
            if name in self._known:
                self._known.discard(name)
                await self._delete_orphans(name)
            return None
        self._known.add(name)
        silent = self._silent_for(name, node)
        ready = ready_status(node)
        waits: list[float] = []
        if silent >= self.grace_period:
            if ready != "Unknown":
                node = await self._mark_unknown(node)
                ready = "Unknown"
        else:
            waits.append(self.grace_period - silent)
        taints = list((node.get("spec") or {}).get("taints") or [])
        wanted = with_lifecycle_taints(taints, lifecycle_taints(ready), now_rfc3339())
        if wanted != taints:
            node = await self.client.patch(
                "nodes", name, {"metadata": {"resourceVersion":
                                             node["metadata"].get("resourceVersion")},
                                "spec": {"taints": wanted}})
            log.info("node %s is %s: taints now %s", name, ready,
                     [f"{t['key']}:{t['effect']}" for t in wanted] or "none")
            taints = wanted
        wait = await self._evict(name, taints)
        if wait is not None:
            waits.append(wait)
        return Result(requeue_after=min(waits) + 0.01) if waits else None

    async def _mark_unknown(self, node: Obj) -> Obj:
        name = node["metadata"]["name"]
        conditions = unknown_conditions(
            list((node.get("status") or {}).get("conditions") or []), now_rfc3339())
        patched = await self.client.patch(
            "nodes", name, {"metadata": {"resourceVersion":
                                         node["metadata"].get("resourceVersion")},
                            "status": {"conditions": conditions}}, subresource="status")
        log.warning("node %s stopped posting status for %.0fs: Ready=Unknown", name,
                    self.grace_period)
        await self._event(node, NORMAL, "NodeNotReady",
                          f"Node {name} status is now: NodeNotReady")
        await self._mark_pods_not_ready(name)
        return patched

    async def _mark_pods_not_ready(self, name: str) -> None:
        """Their kubelet cannot say so: set the Ready condition of the node's pods False so
        that endpoints drop them (Kubernetes' ``MarkPodsNotReady``)."""
        for pod in self.pods.by_index(POD_NODE_INDEX, name):
            conds = list((pod.get("status") or {}).get("conditions") or [])
            if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds):
                continue
            now = now_rfc3339()
            conds = [{**c, "status": "False", "lastTransitionTime": now}
                     if c.get("type") == "Ready" else c for c in conds]
            try:
                await self.client.patch("pods", pod["metadata"]["name"],
                                        {"status": {"conditions": conds}},
                                        pod["metadata"].get("namespace"), subresource="status")
            except NotFound:
                pass

    async def _evict(self, name: str, taints: list[Obj]) -> float | None:
        """Delete the pods whose toleration ran out; seconds until the next one does."""
        no_execute = tuple(sorted((t.get("key") or "", t.get("value") or "")
                                  for t in taints if t.get("effect") == NO_EXECUTE))
        if not no_execute:
            self._tainted_since.pop(name, None)
            return None
        now = self.clock.now()
        since = self._tainted_since.get(name)
        if since is None or since[0] != no_execute:
            since = (no_execute, now)
            self._tainted_since[name] = since
        next_wait: float | None = None
        for pod in self.pods.by_index(POD_NODE_INDEX, name):
            if _is_terminal(pod):
                continue
            if pod["metadata"].get("deletionTimestamp"):
                continue  # already marked
            delay = eviction_delay(taints, (pod.get("spec") or {}).get("tolerations") or (),
                                   self.default_eviction_seconds)
            if delay is None:
                continue
            left = since[1] + delay - now
            if left > 0:
                next_wait = left if next_wait is None else min(next_wait, left)
                continue
            await self._delete_pod(pod, force=False,
                                   why=f"Marking for deletion Pod "
                                       f"{pod['metadata'].get('namespace')}/"
                                       f"{pod['metadata']['name']}")
        return next_wait

    async def _delete_pod(self, pod: Obj, *, force: bool, why: str) -> None:
        md = pod["metadata"]
        try:
            await self.client.delete("pods", md["name"], md.get("namespace"),
                                     grace_period_seconds=0 if force else None,
                                     preconditions={"uid": md.get("uid")})
        except NotFound:
            return
        log.info("%s (%s)", why, "force" if force else "graceful")
        await self._event(pod, WARNING if force else NORMAL, "TaintManagerEviction", why)

    async def _delete_orphans(self, name: str) -> None:
        for pod in self.pods.by_index(POD_NODE_INDEX, name):
            await self._delete_pod(pod, force=True,
                                   why=f"Force deleting pod {pod['metadata']['name']} of deleted "
                                       f"node {name}")

    async def _event(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        if self.recorder is not None:
            await self.recorder.event(obj, type_, reason, message)


def new(ctx: Any) -> NodeLifecycleController:
    return NodeLifecycleController(
        ctx.client, ctx.informers, grace_period=ctx.config.node_monitor_grace_period,
        default_eviction_seconds=ctx.config.default_eviction_seconds, clock=ctx.clock,
        recorder=ctx.recorder(COMPONENT))


__all__ = ["NodeLifecycleController", "new", "eviction_delay",
           "is_default_toleration", "ready_status", "lifecycle_taints", "with_lifecycle_taints",
           "unknown_conditions", "NODE_LEASE_NAMESPACE", "REASON_UNKNOWN", "MESSAGE_UNKNOWN"]
