"""The DaemonSet controller: one pod on every eligible node, following nodes as they come
and go.

Eligibility is decided here, from the node alone: the template's ``nodeSelector``, its
required node affinity, and the node's ``NoSchedule``/``NoExecute`` taints against the pod's
tolerations -- including the ones Kubernetes gives every daemon pod (not-ready, unreachable,
unschedulable, the pressure conditions), so daemons keep running on sick or cordoned nodes.
The pod is not bound here: as Kubernetes does, it carries a required node affinity
``matchFields metadata.name In [<node>]`` and the scheduler binds it, so resources and ports
are still checked in one place.

Creations and deletions go through expectations (``controller.util``) because names are
server-generated: without them a reconcile that runs before the informer saw the last create
would put a second pod on the node.

Updates: ``RollingUpdate`` deletes pods of old revisions, unavailable ones first, keeping at
most ``maxUnavailable`` nodes without an available daemon pod; the next reconcile creates the
new pod (``maxSurge`` is not supported: it is treated as 0). ``OnDelete`` waits for users to
delete pods. Template history lives in ControllerRevisions shared with the StatefulSet
controller's helpers; pods carry ``controller-revision-hash`` with the hash part.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from minik8s.api.errors import NotFound
from minik8s.api.meta import Obj, controller_of, key_of, labels_of, split_key
from minik8s.api.selectors import selector_from_dict
from minik8s.api.taints import NO_EXECUTE, NO_SCHEDULE, find_untolerated_taint
from minik8s.cache import NAMESPACE_INDEX, namespace_index
from minik8s.client.events import NORMAL, WARNING
from minik8s.runtime import Controller, Result

from controller.statefulset import ensure_revision, revision_name, truncate_history
from controller.util import (CONTROLLER_UID_INDEX, Expectations, claim, compute_hash,
                             controller_uid_index, int_or_percent, is_pod_available,
                             is_pod_ready, pod_from_template)

log = logging.getLogger(__name__)

KIND = "DaemonSet"
RESOURCE = "daemonsets"
REVISION_LABEL = "controller-revision-hash"
NODE_NAME_FIELD = "metadata.name"

# Kubernetes' ``AddOrUpdateDaemonPodTolerations``.
DAEMON_TOLERATIONS = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": NO_EXECUTE},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": NO_EXECUTE},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": NO_SCHEDULE},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": NO_SCHEDULE},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": NO_SCHEDULE},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": NO_SCHEDULE},
)
HOST_NETWORK_TOLERATION = {"key": "node.kubernetes.io/network-unavailable",
                           "operator": "Exists", "effect": NO_SCHEDULE}


# --- pure decisions --------------------------------------------------------------------------

def daemon_tolerations(pod_spec: Obj) -> list[Obj]:
    """The template's tolerations plus the daemon ones it lacks."""
    tols = [dict(t) for t in pod_spec.get("tolerations") or []]
    extra = list(DAEMON_TOLERATIONS)
    if pod_spec.get("hostNetwork"):
        extra.append(HOST_NETWORK_TOLERATION)
    for t in extra:
        if not any(o.get("key") == t["key"] and o.get("effect") == t["effect"]
                   and o.get("operator") == "Exists" for o in tols):
            tols.append(dict(t))
    return tols


def _requirement(expr: Obj, value: str | None) -> bool:
    op, values = expr.get("operator"), [str(v) for v in expr.get("values") or []]
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt") and value is not None and values:
        try:
            a, b = int(value), int(values[0])
        except ValueError:
            return False
        return a > b if op == "Gt" else a < b
    return False


def node_selector_terms_match(terms: list[Obj], node: Obj) -> bool:
    """Terms are ORed, the expressions of a term ANDed; an empty term matches nothing."""
    labels = labels_of(node)
    fields = {NODE_NAME_FIELD: node["metadata"]["name"]}
    for term in terms:
        exprs = term.get("matchExpressions") or []
        fexprs = term.get("matchFields") or []
        if not exprs and not fexprs:
            continue
        if all(_requirement(e, labels.get(e.get("key"))) for e in exprs) and all(
                _requirement(e, fields.get(e.get("key"))) for e in fexprs):
            return True
    return False


def _required_terms(pod_spec: Obj) -> list[Obj] | None:
    required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    return None if required is None else list(required.get("nodeSelectorTerms") or [])


def should_run(pod_spec: Obj, node: Obj) -> bool:
    """Whether a daemon pod of this spec belongs on ``node``."""
    labels = labels_of(node)
    for k, v in (pod_spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    terms = _required_terms(pod_spec)
    if terms is not None and not node_selector_terms_match(terms, node):
        return False
    taints = (node.get("spec") or {}).get("taints") or []
    return find_untolerated_taint(taints, daemon_tolerations(pod_spec), (NO_SCHEDULE, NO_EXECUTE)) is None


def pod_spec_for_node(pod_spec: Obj, node_name: str) -> Obj:
    """The template's spec pinned to ``node_name`` through node affinity (Kubernetes'
    ``ReplaceDaemonSetPodNodeNameNodeAffinity``), with the daemon tolerations."""
    spec = copy.deepcopy(pod_spec)
    affinity = spec.setdefault("affinity", {})
    node_affinity = affinity.setdefault("nodeAffinity", {})
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [
        {"matchFields": [{"key": NODE_NAME_FIELD, "operator": "In", "values": [node_name]}]}]}
    spec["tolerations"] = daemon_tolerations(pod_spec)
    return spec


def target_node(pod: Obj) -> str | None:
    """The node a daemon pod is for: where it is bound, else its affinity's target."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return spec["nodeName"]
    for term in _required_terms(spec) or []:
        for f in term.get("matchFields") or []:
            if f.get("key") == NODE_NAME_FIELD and f.get("operator") == "In" and \
                    len(f.get("values") or []) == 1:
                return f["values"][0]
    return None


def _terminating(pod: Obj) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def _failed(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") == "Failed"


def _created(pod: Obj) -> str:
    return pod["metadata"].get("creationTimestamp") or ""


def plan(ds: Obj, nodes: list[Obj], pods: list[Obj], hash_: str
         ) -> tuple[list[str], list[Obj]]:
    """(node names to create a pod for, pods to delete) for the daemon set's ``pods``."""
    spec = (ds.get("spec") or {})
    pod_spec = (spec.get("template") or {}).get("spec") or {}
    by_node: dict[str, list[Obj]] = {}
    for pod in pods:
        node = target_node(pod)
        by_node.setdefault(node or "", []).append(pod)
    names = {n["metadata"]["name"] for n in nodes}
    create: list[str] = []
    delete: list[Obj] = []
    for node in nodes:
        name = node["metadata"]["name"]
        mine = [p for p in by_node.get(name, []) if not _terminating(p)]
        if should_run(pod_spec, node):
            failed = [p for p in mine if _failed(p)]
            delete += failed
            alive = sorted((p for p in mine if not _failed(p)), key=_created)
            if not alive and not failed and not any(_terminating(p)
                                                    for p in by_node.get(name, [])):
                create.append(name)
            delete += alive[1:]  # keep the oldest
        else:
            delete += mine
    for node_name, orphaned in by_node.items():
        if node_name not in names:  # the node is gone (or the pod has no target at all)
            delete += [p for p in orphaned if not _terminating(p)]
    # rolling update
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        delete += _rolling_update(ds, nodes, by_node, hash_, delete)
    seen: set[str] = set()
    unique = []
    for p in delete:
        if p["metadata"]["name"] not in seen:
            seen.add(p["metadata"]["name"])
            unique.append(p)
    return create, unique


def _rolling_update(ds: Obj, nodes: list[Obj], by_node: dict[str, list[Obj]], hash_: str,
                    already: list[Obj]) -> list[Obj]:
    spec = ds.get("spec") or {}
    pod_spec = (spec.get("template") or {}).get("spec") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    eligible = [n["metadata"]["name"] for n in nodes if should_run(pod_spec, n)]
    ru = (spec.get("updateStrategy") or {}).get("rollingUpdate") or {}
    max_unavailable = int_or_percent(ru.get("maxUnavailable", 1), len(eligible), True)
    max_unavailable = max(1, max_unavailable) if eligible else 0
    going = {p["metadata"]["name"] for p in already}
    unavailable = 0
    old_available: list[Obj] = []
    out: list[Obj] = []
    for name in eligible:
        pods = [p for p in by_node.get(name, []) if not _terminating(p)
                and p["metadata"]["name"] not in going and not _failed(p)]
        if not pods:
            unavailable += 1
            continue
        pod = pods[0]
        available = is_pod_available(pod, min_ready)
        is_old = labels_of(pod).get(REVISION_LABEL) != hash_
        if not available:
            unavailable += 1
            if is_old:
                out.append(pod)  # old and not available anyway: replacing it costs nothing
        elif is_old:
            old_available.append(pod)
    budget = max_unavailable - unavailable
    out += sorted(old_available, key=lambda p: target_node(p) or "")[:max(0, budget)]
    return out


def compute_status(ds: Obj, nodes: list[Obj], pods: list[Obj], hash_: str) -> Obj:
    spec = ds.get("spec") or {}
    pod_spec = (spec.get("template") or {}).get("spec") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    by_node: dict[str, list[Obj]] = {}
    for pod in pods:
        if not _terminating(pod):
            by_node.setdefault(pod.get("spec", {}).get("nodeName") or "", []).append(pod)
    desired = current = misscheduled = ready = available = updated = 0
    for node in nodes:
        name = node["metadata"]["name"]
        on_node = by_node.get(name, [])
        if should_run(pod_spec, node):
            desired += 1
            if on_node:
                current += 1
                pod = sorted(on_node, key=_created)[0]
                ready += is_pod_ready(pod)
                available += is_pod_available(pod, min_ready)
                updated += labels_of(pod).get(REVISION_LABEL) == hash_
        elif on_node:
            misscheduled += 1
    status = dict(ds.get("status") or {})
    status.update(desiredNumberScheduled=desired, currentNumberScheduled=current,
                  numberMisscheduled=misscheduled, numberReady=ready,
                  numberAvailable=available, numberUnavailable=desired - available,
                  updatedNumberScheduled=updated,
                  observedGeneration=ds["metadata"].get("generation") or 1)
    if not status["numberUnavailable"]:
        status.pop("numberUnavailable")
    return status


# --- the controller --------------------------------------------------------------------------

class DaemonSetController:
    name = "daemonset"

    def __init__(self, client: Any, informers: Any, recorder: Any = None, *,
                 clock: Any = None, workers: int = 2):
        self.client = client
        self.recorder = recorder
        self.expectations = Expectations(clock)
        self.sets = informers.informer(RESOURCE, indexers={NAMESPACE_INDEX: namespace_index})
        self.pods = informers.informer("pods", indexers={
            NAMESPACE_INDEX: namespace_index, CONTROLLER_UID_INDEX: controller_uid_index})
        self.nodes = informers.informer("nodes")
        self.revisions = informers.informer("controllerrevisions", indexers={
            CONTROLLER_UID_INDEX: controller_uid_index})
        self.controller = Controller(self.name, self.reconcile, workers=workers)
        self.sets.add_handler(self.controller.enqueue,
                              lambda old, new: self.controller.enqueue(new),
                              self._on_set_deleted)
        self.pods.add_handler(self._on_pod_added, self._on_pod_updated, self._on_pod_deleted)
        self.nodes.add_handler(self._on_node, self._on_node_updated, self._on_node)

    # --- handlers -----------------------------------------------------------------------

    def _on_set_deleted(self, ds: Obj) -> None:
        self.expectations.forget(key_of(ds))
        self.controller.enqueue(ds)

    def _owner_key(self, pod: Obj) -> str | None:
        ref = controller_of(pod)
        if not ref or ref.get("kind") != KIND:
            return None
        return f"{pod['metadata'].get('namespace')}/{ref.get('name')}"

    def _on_pod_added(self, pod: Obj) -> None:
        key = self._owner_key(pod)
        if key:
            self.expectations.creation_observed(key)
            self.controller.enqueue_key(key)

    def _on_pod_updated(self, old: Obj, new: Obj) -> None:
        key = self._owner_key(new)
        if key:
            if new["metadata"].get("deletionTimestamp") and not old["metadata"].get(
                    "deletionTimestamp"):
                self.expectations.deletion_observed(key, key_of(new))
            self.controller.enqueue_key(key)

    def _on_pod_deleted(self, pod: Obj) -> None:
        key = self._owner_key(pod)
        if key:
            self.expectations.deletion_observed(key, key_of(pod))
            self.controller.enqueue_key(key)

    def _on_node(self, node: Obj) -> None:
        for ds in self.sets.list():
            self.controller.enqueue(ds)

    def _on_node_updated(self, old: Obj, new: Obj) -> None:
        def view(n: Obj) -> tuple:
            return (labels_of(n), (n.get("spec") or {}).get("taints"))
        if view(old) != view(new):
            self._on_node(new)

    async def start(self) -> None:
        await self.controller.start()

    # --- reconcile ----------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result | None:
        ds = self.sets.get(key)
        if ds is None:
            self.expectations.forget(key)
            return None
        if ds["metadata"].get("deletionTimestamp"):
            return None
        ns, name = split_key(key)
        uid = ds["metadata"]["uid"]
        selector = selector_from_dict((ds.get("spec") or {}).get("selector") or {})
        candidates = [p for p in self.pods.by_index(NAMESPACE_INDEX, ns)
                      if (controller_of(p) or {}).get("uid") == uid
                      or (controller_of(p) is None and selector.matches(labels_of(p)))]
        owned = (await claim(self.client, "pods", ds, selector, candidates)).owned
        template = (ds.get("spec") or {}).get("template") or {}
        revisions = self.revisions.by_index(CONTROLLER_UID_INDEX, uid)
        rev = await ensure_revision(self.client, ds, template, revisions)
        hash_ = compute_hash(template)
        nodes = self.nodes.list()
        if self.expectations.satisfied(key):
            create, delete = plan(ds, nodes, owned, hash_)
            await self._manage(ds, rev, hash_, create, delete)
        status = compute_status(ds, nodes, owned, hash_)
        if status != ds.get("status"):
            await self.client.patch(RESOURCE, name, {"status": status}, ns,
                                    subresource="status")
        known = {r["metadata"]["name"]: r for r in revisions}
        known[rev["metadata"]["name"]] = rev
        live = {rev["metadata"]["name"]} | {
            f"{name}-{labels_of(p).get(REVISION_LABEL)}" for p in owned}
        await truncate_history(self.client, ds, list(known.values()), live)
        min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
        if min_ready and status.get("numberAvailable", 0) < status.get("numberReady", 0):
            return Result(requeue_after=1.0)
        return None

    async def _manage(self, ds: Obj, rev: Obj, hash_: str, create: list[str],
                      delete: list[Obj]) -> None:
        key = key_of(ds)
        ns = ds["metadata"].get("namespace")
        template = (rev.get("data") or {}).get("spec", {}).get("template") or \
            (ds.get("spec") or {}).get("template") or {}
        if create:
            self.expectations.expect_creations(key, len(create))
        for node in create:
            pod = pod_from_template(template, ds, extra_labels={REVISION_LABEL: hash_})
            pod["spec"] = pod_spec_for_node(pod["spec"], node)
            try:
                await self.client.create("pods", pod, ns)
            except Exception as exc:
                self.expectations.lower_creations(key, 1)
                await self._event(ds, WARNING, "FailedCreate",
                                  f"Error creating: {exc}")
                raise
            await self._event(ds, NORMAL, "SuccessfulCreate",
                              f"Created pod for node {node}")
        if delete:
            self.expectations.expect_deletions(key, [key_of(p) for p in delete])
        for pod in delete:
            md = pod["metadata"]
            try:
                await self.client.delete("pods", md["name"], ns,
                                         preconditions={"uid": md.get("uid")})
            except NotFound:
                self.expectations.deletion_observed(key, key_of(pod))
                continue
            await self._event(ds, NORMAL, "SuccessfulDelete", f"Deleted pod: {md['name']}")

    async def _event(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        if self.recorder is not None:
            await self.recorder.event(obj, type_, reason, message)


def new(ctx: Any) -> DaemonSetController:
    return DaemonSetController(ctx.client, ctx.informers, ctx.recorder("daemonset-controller"),
                               clock=ctx.clock, workers=max(1, ctx.config.concurrent_syncs // 2))


__all__ = ["DaemonSetController", "new", "plan", "compute_status", "should_run",
           "pod_spec_for_node", "daemon_tolerations", "target_node",
           "node_selector_terms_match", "REVISION_LABEL", "revision_name"]
