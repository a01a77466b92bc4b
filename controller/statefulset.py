"""The StatefulSet controller: pods with stable names, hostnames and claims, made and
replaced one identity at a time.

Pod ``<set>-<i>`` is the only pod that may ever carry identity ``i``: the controller never
creates it while an object of that name exists, even one that is terminating on a node that
stopped answering. So a pod on a lost node is replaced only once the name is free (its node
came back and its kubelet confirmed the deletion, or the node was deleted and the node
lifecycle controller removed its pods) -- never two copies of one member. No expectations are
needed for that reason: a create of a name that still exists fails with 409 and is retried.

``OrderedReady`` creates ordinals in order, each Running and Ready before the next, and
scales down from the highest ordinal one at a time; ``Parallel`` does both at once. A
``RollingUpdate`` replaces pods whose revision is not the update revision from the highest
ordinal down to ``partition``, one at a time, each waiting for the previous to be Ready;
``OnDelete`` only uses the new template for pods someone deleted.

Template history is kept as ``ControllerRevision`` objects named ``<set>-<hash>`` (the hash of
the template, as Deployments name ReplicaSets), each pod labelled ``controller-revision-hash``
with its revision's name, and ``status.currentRevision`` / ``updateRevision`` naming them.
The revision helpers here are shared with the DaemonSet controller.

``volumeClaimTemplates`` give each ordinal a PersistentVolumeClaim ``<claim>-<set>-<i>``,
created before the pod and never deleted with it (retention ``Retain``), so a recreated pod
gets its data back: the kubelet binds the claim to a Docker named volume on its node, and the
scheduler puts the pod back on that node.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

from minik8s.api.errors import AlreadyExists, NotFound
from minik8s.api.meta import Obj, controller_of, labels_of, split_key
from minik8s.api.selectors import selector_from_dict
from minik8s.cache import NAMESPACE_INDEX, namespace_index
from minik8s.client.events import NORMAL, WARNING
from minik8s.runtime import Controller, Result

from controller.util import (CONTROLLER_UID_INDEX, claim, compute_hash, controller_uid_index,
                             is_pod_available, is_pod_ready, owner_reference,
                             pod_from_template)

log = logging.getLogger(__name__)

KIND = "StatefulSet"
RESOURCE = "statefulsets"
REVISION_LABEL = "controller-revision-hash"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


# --- ControllerRevisions (shared with the DaemonSet controller) ------------------------------

def revision_name(owner: Obj, template: Obj) -> str:
    return f"{owner['metadata']['name']}-{compute_hash(template)}"


def revision_template(rev: Obj) -> Obj:
    return ((rev.get("data") or {}).get("spec") or {}).get("template") or {}


async def ensure_revision(client: Any, owner: Obj, template: Obj,
                          revisions: list[Obj]) -> Obj:
    """The revision holding ``template``: an existing one (renumbered to be the newest when
    it is an old one coming back, as a rollback does) or a new one."""
    name = revision_name(owner, template)
    newest = max((int(r.get("revision") or 0) for r in revisions), default=0)
    existing = next((r for r in revisions if r["metadata"]["name"] == name), None)
    ns = owner["metadata"].get("namespace")
    if existing is not None:
        if int(existing.get("revision") or 0) < newest:
            existing = await client.patch("controllerrevisions", name, {
                "revision": newest + 1,
                "metadata": {"resourceVersion": existing["metadata"].get("resourceVersion")}},
                ns)
        return existing
    rev = {"apiVersion": "apps/v1", "kind": "ControllerRevision",
           "metadata": {"name": name, "namespace": ns,
                        "labels": dict(((owner.get("spec") or {}).get("selector") or {})
                                       .get("matchLabels") or {}),
                        "ownerReferences": [owner_reference(owner)]},
           "data": {"spec": {"template": copy.deepcopy(template)}},
           "revision": newest + 1}
    try:
        return await client.create("controllerrevisions", rev, ns)
    except AlreadyExists:
        return await client.get("controllerrevisions", name, ns)


async def truncate_history(client: Any, owner: Obj, revisions: list[Obj],
                           live: set[str]) -> None:
    """Delete the oldest revisions not in ``live`` beyond ``revisionHistoryLimit``."""
    limit = int((owner.get("spec") or {}).get("revisionHistoryLimit", 10) or 0)
    history = sorted((r for r in revisions if r["metadata"]["name"] not in live),
                     key=lambda r: int(r.get("revision") or 0))
    for rev in history[:max(0, len(history) - limit)]:
        try:
            await client.delete("controllerrevisions", rev["metadata"]["name"],
                                rev["metadata"].get("namespace"))
        except NotFound:
            pass


# --- pure decisions --------------------------------------------------------------------------

def ordinal_of(set_name: str, pod_name: str) -> int | None:
    m = re.fullmatch(re.escape(set_name) + r"-(0|[1-9][0-9]*)", pod_name)
    return int(m.group(1)) if m else None


def claim_name(template_name: str, set_name: str, ordinal: int) -> str:
    return f"{template_name}-{set_name}-{ordinal}"


def is_running_and_ready(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and is_pod_ready(pod)


def _terminating(pod: Obj) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def _failed(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded")


def revision_for_ordinal(sts: Obj, ordinal: int, current: str, update: str) -> str:
    """The revision a (re)created pod gets: below the partition of a RollingUpdate the
    current one, otherwise the update revision."""
    strategy = (sts.get("spec") or {}).get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
        if ordinal < partition:
            return current
    return update


def plan(sts: Obj, pods: dict[int, Obj], current: str, update: str) -> list[tuple[str, int]]:
    """The next steps for a set whose pods by ordinal are ``pods``: a list of
    ``("create", i)`` / ``("delete", i)`` (the pod at ``i`` is deleted so it is recreated, or
    it is beyond ``replicas``). Pure: the unit tests drive it directly."""
    spec = sts.get("spec") or {}
    replicas = int(spec.get("replicas", 1))
    ordered = spec.get("podManagementPolicy", "OrderedReady") != "Parallel"
    steps: list[tuple[str, int]] = []
    # 1. members 0..replicas-1, in order
    for i in range(replicas):
        pod = pods.get(i)
        if pod is None:
            steps.append(("create", i))
            if ordered:
                return steps
            continue
        if _failed(pod) and not _terminating(pod):
            steps.append(("delete", i))
            if ordered:
                return steps
            continue
        if ordered and (_terminating(pod) or not is_running_and_ready(pod)):
            return steps  # wait for this one before touching the next
    # 2. condemned members, highest first
    condemned = sorted((i for i in pods if i >= replicas), reverse=True)
    for i in condemned:
        pod = pods[i]
        if _terminating(pod):
            if ordered:
                return steps
            continue
        if ordered and any(not is_running_and_ready(pods[j]) or _terminating(pods[j])
                           for j in pods if j < i and j < replicas):
            return steps
        steps.append(("delete", i))
        if ordered:
            return steps
    if steps:
        return steps
    # 3. rolling update, from the highest ordinal down to the partition, one at a time
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return steps
    partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
    for i in range(replicas - 1, partition - 1, -1):
        pod = pods.get(i)
        if pod is None:
            return steps
        if labels_of(pod).get(REVISION_LABEL) != update and not _terminating(pod):
            return [("delete", i)]
        if not is_running_and_ready(pod) or _terminating(pod):
            return steps
    return steps


def compute_status(sts: Obj, pods: list[Obj], current: str, update: str) -> Obj:
    spec = sts.get("spec") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    live = [p for p in pods if not _failed(p)]
    status: Obj = dict(sts.get("status") or {})
    status.update(
        observedGeneration=sts["metadata"].get("generation") or 1,
        replicas=len(live),
        readyReplicas=sum(1 for p in live if is_pod_ready(p)),
        availableReplicas=sum(1 for p in live if is_pod_available(p, min_ready)),
        currentReplicas=sum(1 for p in live if labels_of(p).get(REVISION_LABEL) == current),
        updatedReplicas=sum(1 for p in live if labels_of(p).get(REVISION_LABEL) == update),
        currentRevision=current, updateRevision=update)
    status.setdefault("collisionCount", 0)
    replicas = int(spec.get("replicas", 1))
    if (status["updatedReplicas"] == replicas == status["replicas"]
            and status["readyReplicas"] == replicas):
        status["currentRevision"] = update
        status["currentReplicas"] = status["updatedReplicas"]
    return status


# --- the controller --------------------------------------------------------------------------

class StatefulSetController:
    name = "statefulset"

    def __init__(self, client: Any, informers: Any, recorder: Any = None, *,
                 workers: int = 2):
        self.client = client
        self.recorder = recorder
        self.sets = informers.informer(RESOURCE, indexers={NAMESPACE_INDEX: namespace_index})
        self.pods = informers.informer("pods", indexers={
            NAMESPACE_INDEX: namespace_index, CONTROLLER_UID_INDEX: controller_uid_index})
        self.revisions = informers.informer("controllerrevisions", indexers={
            CONTROLLER_UID_INDEX: controller_uid_index})
        self.claims = informers.informer("persistentvolumeclaims")
        self.controller = Controller(self.name, self.reconcile, workers=workers)
        self.sets.add_handler(self.controller.enqueue,
                              lambda old, new: self.controller.enqueue(new),
                              self.controller.enqueue)
        self.pods.add_handler(self._on_pod, lambda old, new: self._on_pod(new), self._on_pod)

    def _on_pod(self, pod: Obj) -> None:
        if self.controller.enqueue_owner(pod, KIND):
            return
        if controller_of(pod) is None:  # an orphan some set may adopt
            ns = pod["metadata"].get("namespace") or ""
            for sts in self.sets.by_index(NAMESPACE_INDEX, ns):
                sel = (sts.get("spec") or {}).get("selector")
                if sel and selector_from_dict(sel).matches(labels_of(pod)):
                    self.controller.enqueue(sts)

    async def start(self) -> None:
        await self.controller.start()

    async def reconcile(self, key: str) -> Result | None:
        sts = self.sets.get(key)
        if sts is None or sts["metadata"].get("deletionTimestamp"):
            return None
        ns, name = split_key(key)
        uid = sts["metadata"]["uid"]
        selector = selector_from_dict((sts.get("spec") or {}).get("selector") or {})
        candidates = [p for p in self.pods.by_index(NAMESPACE_INDEX, ns)
                      if (controller_of(p) or {}).get("uid") == uid
                      or (controller_of(p) is None and selector.matches(labels_of(p)))]
        owned = (await claim(self.client, "pods", sts, selector, candidates)).owned
        revisions = self.revisions.by_index(CONTROLLER_UID_INDEX, uid)
        template = (sts.get("spec") or {}).get("template") or {}
        update_rev = await ensure_revision(self.client, sts, template, revisions)
        update = update_rev["metadata"]["name"]
        known = {r["metadata"]["name"]: r for r in revisions}
        known[update] = update_rev
        current = (sts.get("status") or {}).get("currentRevision") or update
        if current not in known:
            current = update
        by_ordinal: dict[int, Obj] = {}
        for pod in owned:
            i = ordinal_of(name, pod["metadata"]["name"])
            if i is not None:
                by_ordinal[i] = pod
        for kind, i in plan(sts, by_ordinal, current, update):
            if kind == "create":
                rev = revision_for_ordinal(sts, i, current, update)
                await self._create(sts, i, known[rev], rev)
            else:
                await self._delete(sts, by_ordinal[i])
        status = compute_status(sts, owned, current, update)
        if status != sts.get("status"):
            await self.client.patch(RESOURCE, name, {"status": status}, ns,
                                    subresource="status")
        live = {current, update} | {labels_of(p).get(REVISION_LABEL) or "" for p in owned}
        await truncate_history(self.client, sts, list(known.values()), live)
        return None

    def _pod(self, sts: Obj, ordinal: int, rev: Obj, rev_name: str) -> Obj:
        spec = sts.get("spec") or {}
        name = f"{sts['metadata']['name']}-{ordinal}"
        pod = pod_from_template(revision_template(rev), sts, name=name,
                                extra_labels={REVISION_LABEL: rev_name, POD_NAME_LABEL: name,
                                              POD_INDEX_LABEL: str(ordinal)})
        pspec = pod["spec"]
        pspec["hostname"] = name
        if spec.get("serviceName"):
            pspec["subdomain"] = spec["serviceName"]
        claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates") or []}
        volumes = [v for v in pspec.get("volumes") or [] if v.get("name") not in claims]
        for tmpl in spec.get("volumeClaimTemplates") or []:
            cname = tmpl["metadata"]["name"]
            volumes.append({"name": cname, "persistentVolumeClaim": {
                "claimName": claim_name(cname, sts["metadata"]["name"], ordinal)}})
        if volumes:
            pspec["volumes"] = volumes
        return pod

    async def _ensure_claims(self, sts: Obj, ordinal: int) -> None:
        ns = sts["metadata"].get("namespace")
        set_name = sts["metadata"]["name"]
        selector_labels = ((sts.get("spec") or {}).get("selector") or {}).get(
            "matchLabels") or {}
        for tmpl in (sts.get("spec") or {}).get("volumeClaimTemplates") or []:
            cname = claim_name(tmpl["metadata"]["name"], set_name, ordinal)
            if self.claims.get(f"{ns}/{cname}") is not None:
                continue
            pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                   "metadata": {"name": cname, "namespace": ns,
                                "labels": {**dict(selector_labels),
                                           **((tmpl.get("metadata") or {}).get("labels")
                                              or {})}},
                   "spec": copy.deepcopy(tmpl.get("spec") or {})}
            try:
                await self.client.create("persistentvolumeclaims", pvc, ns)
                await self._event(sts, NORMAL, "SuccessfulCreate",
                                  f"create Claim {cname} Pod {set_name}-{ordinal} in "
                                  f"StatefulSet {set_name} success")
            except AlreadyExists:
                pass

    async def _create(self, sts: Obj, ordinal: int, rev: Obj, rev_name: str) -> None:
        await self._ensure_claims(sts, ordinal)
        pod = self._pod(sts, ordinal, rev, rev_name)
        name = pod["metadata"]["name"]
        if self.pods.get(f"{sts['metadata'].get('namespace')}/{name}") is not None:
            return  # the name is taken (a pod of someone else, or ours still going away)
        try:
            await self.client.create("pods", pod, sts["metadata"].get("namespace"))
        except Exception as exc:
            await self._event(sts, WARNING, "FailedCreate",
                              f"create Pod {name} in StatefulSet "
                              f"{sts['metadata']['name']} failed error: {exc}")
            raise
        await self._event(sts, NORMAL, "SuccessfulCreate",
                          f"create Pod {name} in StatefulSet {sts['metadata']['name']} "
                          "successful")

    async def _delete(self, sts: Obj, pod: Obj) -> None:
        md = pod["metadata"]
        try:
            await self.client.delete("pods", md["name"], md.get("namespace"),
                                     preconditions={"uid": md.get("uid")})
        except NotFound:
            return
        await self._event(sts, NORMAL, "SuccessfulDelete",
                          f"delete Pod {md['name']} in StatefulSet {sts['metadata']['name']} "
                          "successful")

    async def _event(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        if self.recorder is not None:
            await self.recorder.event(obj, type_, reason, message)


def new(ctx: Any) -> StatefulSetController:
    return StatefulSetController(ctx.client, ctx.informers, ctx.recorder("statefulset-controller"),
                                 workers=max(1, ctx.config.concurrent_syncs // 2))


__all__ = ["StatefulSetController", "new", "plan", "compute_status", "ordinal_of",
           "claim_name", "revision_for_ordinal", "revision_name", "revision_template",
           "ensure_revision", "truncate_history", "REVISION_LABEL"]
