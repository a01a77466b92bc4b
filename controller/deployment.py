"""The Deployment controller: rolls a pod template out through ReplicaSets named
``<deployment>-<pod-template-hash>``, one per distinct template, each carrying the
``deployment.kubernetes.io/revision`` it was (last) rolled out as.

A reconcile follows Kubernetes' ``syncDeployment``: claim the ReplicaSets the selector
matches; when paused or only the replica count changed, scale the active ReplicaSets
proportionally and stop; otherwise make one step of the strategy (RollingUpdate: scale the
new ReplicaSet up within ``maxSurge``, then old ones down within ``maxUnavailable``;
Recreate: old ones to zero, wait for their pods to go, then the new one up), prune history
beyond ``revisionHistoryLimit`` once complete, and write status with the ``Progressing`` and
``Available`` conditions. The arithmetic is in pure functions over plain numbers
(``new_rs_replicas``, ``old_rs_scale_down``, ``proportional_scale``) so it is tested without
a cluster.

The new ReplicaSet is found by comparing templates, not hashes (``util.templates_equal``):
``kubectl rollout undo`` writes an old ReplicaSet's template back, and that old ReplicaSet
is scaled up again with the next revision instead of a new one being created.

Automatic rollback (a minik8s extension, opt-in per Deployment with the annotation
``minik8s.io/auto-rollback: "true"``): a ReplicaSet that once became fully available for
its Deployment is marked ``minik8s.io/available-revision``; when the current revision hits
``ProgressDeadlineExceeded`` without ever having been available, the controller writes the
newest marked revision's template back (as ``rollout undo`` would), records a Warning Event
``RolledBack`` and a ``RolledBack`` condition, and the next reconciles scale that ReplicaSet
up again.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable

from minik8s.api.errors import AlreadyExists, NotFound
from minik8s.api.meta import Obj, controller_of, deepcopy, key_of, labels_of, parse_time, split_key
from minik8s.api.selectors import selector_from_dict
from minik8s.cache import NAMESPACE_INDEX, namespace_index
from minik8s.client.events import NORMAL, WARNING
from minik8s.runtime import Controller, Result

from controller.util import (CONTROLLER_UID_INDEX, POD_TEMPLATE_HASH_LABEL, claim,
                             compute_hash, controller_uid_index, get_condition,
                             int_or_percent, now_rfc3339, owner_reference, remove_condition,
                             set_condition, templates_equal, utcnow)

log = logging.getLogger(__name__)

RESOURCE = "deployments"
KIND = "Deployment"

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
CHANGE_CAUSE = "kubernetes.io/change-cause"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
AUTO_ROLLBACK = "minik8s.io/auto-rollback"
AVAILABLE_MARK = "minik8s.io/available-revision"

# Deployment annotations never copied onto its ReplicaSets (Kubernetes' skipCopyAnnotation).
_SKIP_COPY = {LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS,
              "deprecated.deployment.rollback.to", AUTO_ROLLBACK, AVAILABLE_MARK}

# Condition reasons (Kubernetes' deploymentutil constants).
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"
FAILED_RS_CREATE = "ReplicaSetCreateError"
ROLLED_BACK = "RolledBack"

MAX_INT32 = 2**31 - 1


# --------------------------------------------------------------------------- pure arithmetic


def go_round(x: float) -> int:
    """Go's ``math.Round``: halves away from zero (Python's ``round`` goes to even)."""
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def resolve_fenceposts(max_surge: Any, max_unavailable: Any, desired: int) -> tuple[int, int]:
    """``(surge, unavailable)`` in pods: percentages of ``desired``, surge rounded up and
    unavailable down; both zero would deadlock, so unavailable becomes 1."""
    surge = int_or_percent(max_surge if max_surge is not None else 0, desired, True)
    unavailable = int_or_percent(max_unavailable if max_unavailable is not None else 0,
                                 desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def _spec_replicas(obj: Obj) -> int:
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def _status_int(obj: Obj | None, field: str) -> int:
    return int(((obj or {}).get("status") or {}).get(field) or 0)


def strategy_of(d: Obj) -> tuple[str, Any, Any]:
    strategy = (d.get("spec") or {}).get("strategy") or {}
    kind = strategy.get("type") or "RollingUpdate"
    rolling = strategy.get("rollingUpdate") or {}
    return kind, rolling.get("maxSurge", "25%"), rolling.get("maxUnavailable", "25%")


def max_surge(d: Obj) -> int:
    kind, surge, unavailable = strategy_of(d)
    if kind != "RollingUpdate":
        return 0
    return resolve_fenceposts(surge, unavailable, _spec_replicas(d))[0]


def max_unavailable(d: Obj) -> int:
    kind, surge, unavailable = strategy_of(d)
    replicas = _spec_replicas(d)
    if kind != "RollingUpdate" or replicas == 0:
        return 0
    return min(resolve_fenceposts(surge, unavailable, replicas)[1], replicas)


def new_rs_replicas(desired: int, surge: int, total_current: int, new_current: int) -> int:
    """The new ReplicaSet's size after one RollingUpdate step up: never more than
    ``desired + surge`` pods in all, never more than ``desired`` in the new one."""
    max_total = desired + surge
    if total_current >= max_total:
        return new_current
    up = min(max_total - total_current, max(0, desired - new_current))
    return new_current + up


@dataclass
class RSState:
    """What the rollout arithmetic needs of a ReplicaSet."""

    name: str
    replicas: int          # spec.replicas
    available: int = 0     # status.availableReplicas
    created: str = ""      # creationTimestamp (older sorts first)


def old_rs_scale_down(desired: int, unavailable: int, new: RSState | None,
                      olds: list[RSState]) -> dict[str, int]:
    """One RollingUpdate step down (``reconcileOldReplicaSets``): the new sizes of the old
    ReplicaSets to change. First unhealthy old pods go (they do not count as available),
    then healthy ones, oldest ReplicaSet first, never below ``desired - unavailable``
    available pods overall."""
    old_total = sum(r.replicas for r in olds)
    if old_total == 0:
        return {}
    all_total = old_total + (new.replicas if new else 0)
    min_available = desired - unavailable
    new_unavailable = (new.replicas - new.available) if new else 0
    max_scaled_down = all_total - min_available - new_unavailable
    if max_scaled_down <= 0:
        return {}
    sizes = {r.name: r.replicas for r in olds}
    # 1) unhealthy replicas of old ReplicaSets
    cleaned = 0
    for r in sorted(olds, key=lambda r: (r.created, r.name)):
        if cleaned >= max_scaled_down:
            break
        if sizes[r.name] == 0:
            continue
        unhealthy = sizes[r.name] - r.available
        if unhealthy <= 0:
            continue
        down = min(max_scaled_down - cleaned, unhealthy)
        sizes[r.name] -= down
        cleaned += down
    # 2) healthy ones, within maxUnavailable
    available = sum(min(r.available, sizes[r.name]) for r in olds) + (new.available if new else 0)
    if available > min_available:
        budget = available - min_available
        for r in sorted(olds, key=lambda r: (r.created, r.name)):
            if budget <= 0:
                break
            if sizes[r.name] == 0:
                continue
            down = min(sizes[r.name], budget)
            sizes[r.name] -= down
            budget -= down
    return {r.name: sizes[r.name] for r in olds if sizes[r.name] != r.replicas}


@dataclass
class ScaleInput:
    name: str
    replicas: int
    max_replicas_annotation: int | None   # deployment.kubernetes.io/max-replicas, if any
    created: str = ""


def proportional_scale(desired: int, surge: int, status_replicas: int,
                       active: list[ScaleInput]) -> dict[str, int]:
    """Kubernetes' proportional scaling of several active ReplicaSets (a resize during a
    rollout, or while paused): each gets its share of the change by its size relative to
    the size the Deployment last had (the max-replicas annotation), the leftover goes to
    the largest. Returns the new size of every active ReplicaSet."""
    active = [a for a in active if a.replicas > 0]
    total = sum(a.replicas for a in active)
    allowed = desired + surge if desired > 0 else 0
    to_add = allowed - total
    # largest first; ties: newer first when growing, older first when shrinking
    if to_add > 0:
        order = sorted(active, key=lambda a: (-a.replicas, _neg(a.created), a.name))
    else:
        order = sorted(active, key=lambda a: (-a.replicas, a.created, a.name))
    sizes: dict[str, int] = {}
    added = 0
    for a in order:
        if to_add != 0 and to_add != added:
            if desired == 0:
                fraction = -a.replicas
            else:
                annotated = a.max_replicas_annotation or status_replicas or total
                fraction = go_round(a.replicas * (desired + surge) / annotated) - a.replicas \
                    if annotated else 0
            allowed_left = to_add - added
            share = min(fraction, allowed_left) if to_add > 0 else max(fraction, allowed_left)
            sizes[a.name] = a.replicas + share
            added += share
        else:
            sizes[a.name] = a.replicas
    if order and to_add != 0:
        first = order[0].name
        sizes[first] = max(0, sizes[first] + (to_add - added))
    return sizes


def _neg(ts: str) -> tuple:
    return tuple(-ord(c) for c in ts)


# --------------------------------------------------------------------------- object helpers


def revision_of(obj: Obj | None) -> int:
    try:
        return int(((obj or {}).get("metadata") or {}).get("annotations", {}).get(REVISION) or 0)
    except (TypeError, ValueError):
        return 0


def _annotations(obj: Obj) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def _created(obj: Obj) -> str:
    return (obj.get("metadata") or {}).get("creationTimestamp") or ""


def find_new_rs(d: Obj, rss: list[Obj]) -> Obj | None:
    """The ReplicaSet whose template equals the Deployment's, ignoring the hash label and
    defaults; the oldest one if several do."""
    template = (d.get("spec") or {}).get("template")
    matches = [rs for rs in rss if templates_equal((rs.get("spec") or {}).get("template"),
                                                   template)]
    if not matches:
        return None
    return sorted(matches, key=lambda rs: (_created(rs), rs["metadata"]["name"]))[0]


def _max_replicas_annotation(rs: Obj) -> int | None:
    try:
        return int(_annotations(rs)[MAX_REPLICAS])
    except (KeyError, TypeError, ValueError):
        return None


def deployment_complete(d: Obj, status: Obj) -> bool:
    replicas = _spec_replicas(d)
    return (int(status.get("updatedReplicas") or 0) == replicas
            and int(status.get("replicas") or 0) == replicas
            and int(status.get("availableReplicas") or 0) == replicas
            and int(status.get("observedGeneration") or 0)
            >= int((d.get("metadata") or {}).get("generation") or 1))


def deployment_progressing(d: Obj, status: Obj) -> bool:
    old = d.get("status") or {}
    old_old = int(old.get("replicas") or 0) - int(old.get("updatedReplicas") or 0)
    new_old = int(status.get("replicas") or 0) - int(status.get("updatedReplicas") or 0)
    return (int(status.get("updatedReplicas") or 0) > int(old.get("updatedReplicas") or 0)
            or new_old < old_old
            or int(status.get("readyReplicas") or 0) > int(old.get("readyReplicas") or 0)
            or int(status.get("availableReplicas") or 0) > int(old.get("availableReplicas") or 0))


def _deadline(d: Obj) -> int | None:
    value = (d.get("spec") or {}).get("progressDeadlineSeconds")
    if value is None or int(value) >= MAX_INT32:
        return None
    return int(value)


def deployment_timed_out(d: Obj, status: Obj, now: datetime) -> bool:
    deadline = _deadline(d)
    if deadline is None:
        return False
    cond = get_condition(status, "Progressing")
    if cond is None:
        return False
    if cond.get("reason") == NEW_RS_AVAILABLE:
        return False
    if cond.get("reason") == TIMED_OUT:
        return True
    since = parse_time(cond.get("lastUpdateTime"))
    return since is not None and since + timedelta(seconds=deadline) < now


def _cond(type_: str, status: str, reason: str, message: str) -> Obj:
    now = now_rfc3339()
    return {"type": type_, "status": status, "lastUpdateTime": now,
            "lastTransitionTime": now, "reason": reason, "message": message}


def set_deployment_condition(status: Obj, cond: Obj) -> None:
    """Kubernetes' ``SetDeploymentCondition``: the same status and reason is no change."""
    cur = get_condition(status, cond["type"])
    if cur is not None and cur.get("status") == cond["status"] and \
            cur.get("reason") == cond["reason"]:
        return
    set_condition(status, cond)


def rollback_template(rs: Obj) -> Obj:
    """An old ReplicaSet's template as a Deployment template (without the hash label)."""
    template = deepcopy((rs.get("spec") or {}).get("template") or {})
    labels = (template.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(POD_TEMPLATE_HASH_LABEL, None)
    return template


def rollback_annotations(d: Obj, rs: Obj) -> dict[str, str]:
    """The Deployment's annotations after a rollback to ``rs`` (kubectl's rule: the
    ReplicaSet's copyable annotations, e.g. change-cause, come back with it)."""
    out = dict(_annotations(d))
    for k, v in _annotations(rs).items():
        if k not in _SKIP_COPY:
            out[k] = v
    return out


# --------------------------------------------------------------------------- the controller


class DeploymentController:
    name = "deployment"

    def __init__(self, client: Any, informers: Any, recorder: Any, *, workers: int = 5):
        self.client = client
        self.recorder = recorder
        self.d_informer = informers.informer(RESOURCE, indexers={
            NAMESPACE_INDEX: namespace_index})
        self.rs_informer = informers.informer("replicasets", indexers={
            NAMESPACE_INDEX: namespace_index, CONTROLLER_UID_INDEX: controller_uid_index})
        self.pod_informer = informers.informer("pods", indexers={
            NAMESPACE_INDEX: namespace_index, CONTROLLER_UID_INDEX: controller_uid_index})
        self.controller = Controller(self.name, self, workers=workers)
        self.d_informer.add_handler(self.controller.enqueue,
                                    lambda old, new: self.controller.enqueue(new),
                                    self.controller.enqueue)
        self.rs_informer.add_handler(self._rs_event, self._rs_updated, self._rs_event)
        self.pod_informer.add_handler(None, None, self._pod_deleted)

    async def start(self) -> None:
        await self.controller.start()

    # --- event handlers -------------------------------------------------------------

    def _rs_event(self, rs: Obj) -> None:
        if self.controller.enqueue_owner(rs, KIND) is None and controller_of(rs) is None:
            self._enqueue_matching(rs)

    def _rs_updated(self, old: Obj, new: Obj) -> None:
        if controller_of(old) != controller_of(new):
            self.controller.enqueue_owner(old, KIND)
        if self.controller.enqueue_owner(new, KIND) is None and controller_of(new) is None:
            if labels_of(old) != labels_of(new) or controller_of(old) is not None:
                self._enqueue_matching(new)

    def _enqueue_matching(self, rs: Obj) -> None:
        ns = (rs.get("metadata") or {}).get("namespace") or ""
        for d in self.d_informer.by_index(NAMESPACE_INDEX, ns):
            try:
                if selector_from_dict((d.get("spec") or {}).get("selector")).matches(
                        labels_of(rs)):
                    self.controller.enqueue(d)
            except Exception:
                continue

    def _pod_deleted(self, pod: Obj) -> None:
        """Recreate waits for old pods to go: a pod's deletion may unblock it."""
        ref = controller_of(pod)
        if not ref or ref.get("kind") != "ReplicaSet":
            return
        ns = (pod.get("metadata") or {}).get("namespace") or ""
        rs = self.rs_informer.get(f"{ns}/{ref.get('name')}")
        if rs is None:
            return
        owner = controller_of(rs)
        if owner and owner.get("kind") == KIND:
            d = self.d_informer.get(f"{ns}/{owner.get('name')}")
            if d is not None and strategy_of(d)[0] == "Recreate":
                self.controller.enqueue(d)

    # --- reconcile ------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result | None:
        cached = self.d_informer.get(key)
        if cached is None:
            return None
        d = deepcopy(cached)
        ns, name = split_key(key)
        md = d["metadata"]
        spec = d.setdefault("spec", {})
        selector_dict = spec.get("selector")
        if selector_dict is not None and not selector_dict.get("matchLabels") and \
                not selector_dict.get("matchExpressions"):
            await self.recorder.event(d, WARNING, "SelectingAll",
                                      "This deployment is selecting all pods. A non-empty "
                                      "selector is required.")
            status = deepcopy(d.get("status") or {})
            if status.get("observedGeneration") != md.get("generation"):
                status["observedGeneration"] = md.get("generation")
                await self._write_status(d, status)
            return None
        selector = selector_from_dict(selector_dict)
        rss = await self._claim_replicasets(d, selector)
        if md.get("deletionTimestamp"):
            return await self._sync_status(d, rss)

        await self._check_paused_condition(d)
        if spec.get("paused"):
            return await self._sync(d, rss)
        if self._is_scaling_event(d, rss):
            return await self._sync(d, rss)
        if strategy_of(d)[0] == "Recreate":
            return await self._rollout_recreate(d, rss)
        return await self._rollout_rolling(d, rss)

    async def _claim_replicasets(self, d: Obj, selector: Any) -> list[Obj]:
        ns, name = d["metadata"].get("namespace"), d["metadata"]["name"]
        candidates = self.rs_informer.by_index(NAMESPACE_INDEX, ns or "")

        async def still_ours() -> bool:
            fresh = await self.client.get(RESOURCE, name, ns)
            fmd = fresh.get("metadata") or {}
            return fmd.get("uid") == d["metadata"].get("uid") and not fmd.get(
                "deletionTimestamp")

        claimed = await claim(self.client, "replicasets", d, selector, candidates,
                              can_adopt=still_ours)
        return [deepcopy(rs) for rs in claimed.owned]

    async def _check_paused_condition(self, d: Obj) -> None:
        if _deadline(d) is None:
            return
        status = d.setdefault("status", {})
        cond = get_condition(status, "Progressing")
        if cond is not None and cond.get("reason") == TIMED_OUT:
            return
        paused = bool(d["spec"].get("paused"))
        changed = False
        if paused and (cond is None or cond.get("reason") != PAUSED):
            set_deployment_condition(status, _cond("Progressing", "Unknown", PAUSED,
                                                   "Deployment is paused"))
            changed = True
        elif not paused and cond is not None and cond.get("reason") == PAUSED:
            set_deployment_condition(status, _cond("Progressing", "Unknown", RESUMED,
                                                   "Deployment is resumed"))
            changed = True
        if changed:
            await self._write_status(d, status)

    def _is_scaling_event(self, d: Obj, rss: list[Obj]) -> bool:
        new_rs = find_new_rs(d, rss)
        active = [rs for rs in rss if _spec_replicas(rs) > 0]
        if new_rs is not None and new_rs not in active:
            active.append(new_rs)
        for rs in active:
            desired = _annotations(rs).get(DESIRED_REPLICAS)
            if desired is None:
                continue
            try:
                if int(desired) != _spec_replicas(d):
                    return True
            except ValueError:
                continue
        return False

    # --- finding and creating the new ReplicaSet --------------------------------------

    async def _get_all(self, d: Obj, rss: list[Obj], create: bool
                       ) -> tuple[Obj | None, list[Obj]]:
        new_rs = find_new_rs(d, rss)
        olds = [rs for rs in rss if rs is not new_rs]
        new_rs = await self._get_new_rs(d, rss, olds, new_rs, create)
        return new_rs, olds

    async def _get_new_rs(self, d: Obj, rss: list[Obj], olds: list[Obj], existing: Obj | None,
                          create: bool) -> Obj | None:
        max_old = max((revision_of(rs) for rs in olds), default=0)
        new_revision = str(max_old + 1)
        status = d.setdefault("status", {})
        if existing is not None:
            rs_copy = deepcopy(existing)
            changed = self._set_new_rs_annotations(d, rs_copy, new_revision, True)
            if changed:
                existing = await self.client.update("replicasets", rs_copy)
                _replace(rss, existing)
            await self._sync_deployment_revision(d, existing)
            if _deadline(d) is not None and get_condition(status, "Progressing") is None:
                set_deployment_condition(status, _cond(
                    "Progressing", "True", FOUND_NEW_RS,
                    f'Found new replica set "{existing["metadata"]["name"]}"'))
                await self._write_status(d, status)
            return existing
        if not create:
            return None

        spec = d["spec"]
        collision = int(status.get("collisionCount") or 0)
        template = deepcopy(spec.get("template") or {})
        hash_ = compute_hash(template, collision)
        tmd = template.setdefault("metadata", {})
        tmd.setdefault("labels", {})[POD_TEMPLATE_HASH_LABEL] = hash_
        selector = deepcopy(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[POD_TEMPLATE_HASH_LABEL] = hash_
        name = f"{d['metadata']['name']}-{hash_}"
        rs: Obj = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": d["metadata"].get("namespace"),
                         "labels": dict(tmd["labels"]),
                         "ownerReferences": [owner_reference(d)]},
            "spec": {"replicas": 0, "minReadySeconds": int(spec.get("minReadySeconds") or 0),
                     "selector": selector, "template": template},
        }
        all_rss = olds
        desired = _spec_replicas(d)
        if strategy_of(d)[0] == "RollingUpdate":
            total = sum(_spec_replicas(r) for r in all_rss)
            replicas = new_rs_replicas(desired, max_surge(d), total, 0)
        else:
            replicas = desired
        rs["spec"]["replicas"] = replicas
        self._set_new_rs_annotations(d, rs, new_revision, False)
        try:
            created = await self.client.create("replicasets", rs)
        except AlreadyExists:
            try:
                current = await self.client.get("replicasets", name, rs["metadata"]["namespace"])
            except NotFound:
                raise
            ref = controller_of(current)
            if ref and ref.get("uid") == d["metadata"].get("uid") and templates_equal(
                    (current.get("spec") or {}).get("template"), spec.get("template")):
                return None  # our cache lags: the next reconcile sees it
            # a hash collision: bump collisionCount so the next hash differs
            status["collisionCount"] = collision + 1
            await self._write_status(d, status)
            raise
        except Exception as exc:
            msg = f'Failed to create new replica set "{name}": {exc}'
            if _deadline(d) is not None:
                set_deployment_condition(status, _cond("Progressing", "False",
                                                       FAILED_RS_CREATE, msg))
                await self._write_status(d, status)
            await self.recorder.event(d, WARNING, FAILED_RS_CREATE, msg)
            raise
        rss.append(created)
        if replicas > 0:
            await self.recorder.event(d, NORMAL, "ScalingReplicaSet",
                                      f"Scaled up replica set {name} from 0 to {replicas}")
        await self._sync_deployment_revision(d, created)
        if _deadline(d) is not None:
            set_deployment_condition(status, _cond("Progressing", "True", NEW_RS_CREATED,
                                                   f'Created new replica set "{name}"'))
        remove_condition(status, ROLLED_BACK)  # a new rollout: the rollback is history
        await self._write_status(d, status)
        return created

    def _set_new_rs_annotations(self, d: Obj, rs: Obj, new_revision: str, exists: bool) -> bool:
        ann = rs["metadata"].setdefault("annotations", {})
        before = dict(ann)
        for k, v in _annotations(d).items():
            if k not in _SKIP_COPY:
                ann[k] = v
        old_revision = ann.get(REVISION)
        try:
            old_int = int(old_revision) if old_revision else 0
        except ValueError:
            old_int = 0
        if old_int < int(new_revision):
            ann[REVISION] = new_revision
            if exists and old_revision:
                history = [h for h in (ann.get(REVISION_HISTORY) or "").split(",") if h]
                history.append(old_revision)
                ann[REVISION_HISTORY] = ",".join(history)
        if not exists:  # an existing one's annotations change only when it is scaled
            ann[DESIRED_REPLICAS] = str(_spec_replicas(d))
            ann[MAX_REPLICAS] = str(_spec_replicas(d) + max_surge(d))
        min_ready = int((d.get("spec") or {}).get("minReadySeconds") or 0)
        spec_changed = int((rs.get("spec") or {}).get("minReadySeconds") or 0) != min_ready
        if spec_changed:
            rs.setdefault("spec", {})["minReadySeconds"] = min_ready
        return ann != before or spec_changed

    async def _sync_deployment_revision(self, d: Obj, new_rs: Obj) -> None:
        revision = _annotations(new_rs).get(REVISION)
        if revision and _annotations(d).get(REVISION) != revision:
            status = d.get("status")
            fresh = deepcopy(d)
            fresh["metadata"].setdefault("annotations", {})[REVISION] = revision
            fresh.pop("status", None)
            updated = await self.client.update(RESOURCE, fresh)
            d["metadata"] = updated["metadata"]
            if status is not None:
                d["status"] = status

    # --- scaling --------------------------------------------------------------------

    async def _scale_rs(self, d: Obj, rs: Obj, replicas: int, rss: list[Obj]) -> Obj:
        old = _spec_replicas(rs)
        new = deepcopy(rs)
        new["spec"]["replicas"] = replicas
        ann = new["metadata"].setdefault("annotations", {})
        ann[DESIRED_REPLICAS] = str(_spec_replicas(d))
        ann[MAX_REPLICAS] = str(_spec_replicas(d) + max_surge(d))
        if new == rs:
            return rs
        updated = await self.client.update("replicasets", new)
        _replace(rss, updated)
        if old != replicas:
            word = "up" if replicas > old else "down"
            await self.recorder.event(
                d, NORMAL, "ScalingReplicaSet",
                f"Scaled {word} replica set {rs['metadata']['name']} from {old} to {replicas}")
        return updated

    async def _scale(self, d: Obj, new_rs: Obj | None, olds: list[Obj], rss: list[Obj]) -> None:
        desired = _spec_replicas(d)
        active = [rs for rs in ([new_rs] if new_rs else []) + olds if _spec_replicas(rs) > 0]
        if len(active) <= 1:
            target = active[0] if active else (new_rs or _latest(olds))
            if target is not None:  # also refreshes its replica annotations
                await self._scale_rs(d, target, desired, rss)
            return
        if new_rs is not None and _spec_replicas(new_rs) == desired and \
                _status_int(new_rs, "availableReplicas") == desired:
            for rs in olds:
                if _spec_replicas(rs) > 0:
                    await self._scale_rs(d, rs, 0, rss)
            return
        if strategy_of(d)[0] != "RollingUpdate":
            return
        sizes = proportional_scale(
            desired, max_surge(d), _status_int(d, "replicas"),
            [ScaleInput(rs["metadata"]["name"], _spec_replicas(rs),
                        _max_replicas_annotation(rs), _created(rs)) for rs in active])
        by_name = {rs["metadata"]["name"]: rs for rs in active}
        for name, size in sizes.items():
            await self._scale_rs(d, by_name[name], size, rss)

    # --- strategies -----------------------------------------------------------------

    async def _sync(self, d: Obj, rss: list[Obj]) -> Result | None:
        """Paused, or only the replica count changed: scale proportionally, no rollout."""
        new_rs, olds = await self._get_all(d, rss, create=False)
        await self._scale(d, new_rs, olds, rss)
        new_rs, olds = _split(rss, new_rs)
        if d["spec"].get("paused"):
            await self._cleanup(d, olds)
        return await self._sync_status(d, rss, new_rs)

    async def _rollout_rolling(self, d: Obj, rss: list[Obj]) -> Result | None:
        new_rs, olds = await self._get_all(d, rss, create=True)
        if new_rs is None:
            return Result(requeue=True)
        desired = _spec_replicas(d)
        # 1) scale the new ReplicaSet up (or down to the desired size)
        cur = _spec_replicas(new_rs)
        if cur != desired:
            if cur > desired:
                target = desired
            else:
                total = sum(_spec_replicas(r) for r in rss)
                target = new_rs_replicas(desired, max_surge(d), total, cur)
            if target != cur:
                await self._scale_rs(d, new_rs, target, rss)
                return await self._sync_rollout_status(d, rss)
        new_rs, olds = _split(rss, new_rs)
        # 2) scale old ReplicaSets down
        plan = old_rs_scale_down(
            desired, max_unavailable(d),
            RSState(new_rs["metadata"]["name"], _spec_replicas(new_rs),
                    _status_int(new_rs, "availableReplicas"), _created(new_rs)),
            [RSState(rs["metadata"]["name"], _spec_replicas(rs),
                     _status_int(rs, "availableReplicas"), _created(rs)) for rs in olds])
        if plan:
            by_name = {rs["metadata"]["name"]: rs for rs in olds}
            for rs_name, size in plan.items():
                await self._scale_rs(d, by_name[rs_name], size, rss)
            return await self._sync_rollout_status(d, rss)
        return await self._sync_rollout_status(d, rss, cleanup=True)

    async def _rollout_recreate(self, d: Obj, rss: list[Obj]) -> Result | None:
        new_rs, olds = await self._get_all(d, rss, create=False)
        scaled = False
        for rs in olds:
            if _spec_replicas(rs) > 0:
                await self._scale_rs(d, rs, 0, rss)
                scaled = True
        if scaled:
            return await self._sync_rollout_status(d, rss)
        _, olds = _split(rss, new_rs)
        if self._old_pods_running(olds):
            return await self._sync_rollout_status(d, rss)
        if new_rs is None:
            new_rs, olds = await self._get_all(d, rss, create=True)
            if new_rs is None:
                return Result(requeue=True)
        if _spec_replicas(new_rs) != _spec_replicas(d):
            await self._scale_rs(d, new_rs, _spec_replicas(d), rss)
        return await self._sync_rollout_status(d, rss, cleanup=True)

    def _old_pods_running(self, olds: list[Obj]) -> bool:
        for rs in olds:
            if _status_int(rs, "replicas") > 0:
                return True
            uid = rs["metadata"].get("uid")
            for pod in self.pod_informer.by_index(CONTROLLER_UID_INDEX, uid):
                if (pod.get("status") or {}).get("phase") not in ("Failed", "Succeeded"):
                    return True
        return False

    # --- history --------------------------------------------------------------------

    async def _cleanup(self, d: Obj, olds: list[Obj]) -> None:
        limit = (d.get("spec") or {}).get("revisionHistoryLimit")
        if limit is None:
            return
        alive = [rs for rs in olds if not rs["metadata"].get("deletionTimestamp")]
        diff = len(alive) - int(limit)
        if diff <= 0:
            return
        for rs in sorted(alive, key=lambda r: (revision_of(r), _created(r)))[:diff]:
            if _status_int(rs, "replicas") != 0 or _spec_replicas(rs) != 0:
                continue
            if int(rs["metadata"].get("generation") or 1) > _status_int(rs, "observedGeneration"):
                continue
            try:
                await self.client.delete("replicasets", rs["metadata"]["name"],
                                         rs["metadata"].get("namespace"))
            except NotFound:
                pass

    # --- status ---------------------------------------------------------------------

    def _calculate_status(self, d: Obj, rss: list[Obj], new_rs: Obj | None) -> Obj:
        status = deepcopy(d.get("status") or {})
        available = sum(_status_int(rs, "availableReplicas") for rs in rss)
        total_spec = sum(_spec_replicas(rs) for rs in rss)
        status["observedGeneration"] = d["metadata"].get("generation") or 1
        status["replicas"] = sum(_status_int(rs, "replicas") for rs in rss)
        status["updatedReplicas"] = _status_int(new_rs, "replicas") if new_rs else 0
        status["readyReplicas"] = sum(_status_int(rs, "readyReplicas") for rs in rss)
        status["availableReplicas"] = available
        status["unavailableReplicas"] = max(0, total_spec - available)
        for k in ("readyReplicas", "availableReplicas", "unavailableReplicas",
                  "updatedReplicas", "replicas"):
            if status[k] == 0:
                status.pop(k)  # Kubernetes omits zero counts
        if available >= _spec_replicas(d) - max_unavailable(d):
            set_deployment_condition(status, _cond("Available", "True", MIN_AVAILABLE,
                                                   "Deployment has minimum availability."))
        else:
            set_deployment_condition(status, _cond("Available", "False", MIN_UNAVAILABLE,
                                                   "Deployment does not have minimum "
                                                   "availability."))
        return status

    async def _sync_status(self, d: Obj, rss: list[Obj], new_rs: Obj | None = None
                           ) -> Result | None:
        if new_rs is None:
            new_rs = find_new_rs(d, rss)
        status = self._calculate_status(d, rss, new_rs)
        await self._write_status(d, status)
        return None

    async def _sync_rollout_status(self, d: Obj, rss: list[Obj], cleanup: bool = False
                                   ) -> Result | None:
        new_rs = find_new_rs(d, rss)
        olds = [rs for rs in rss if rs is not new_rs]
        status = self._calculate_status(d, rss, new_rs)
        now = utcnow()
        deadline = _deadline(d)
        if deadline is None:
            remove_condition(status, "Progressing")
        cur = get_condition(status, "Progressing")
        complete_before = (int(status.get("replicas") or 0) ==
                           int(status.get("updatedReplicas") or 0)
                           and cur is not None and cur.get("reason") == NEW_RS_AVAILABLE)
        complete = deployment_complete(d, status)
        rs_name = new_rs["metadata"]["name"] if new_rs else ""
        if deadline is not None and not d["spec"].get("paused") and not complete_before:
            if complete:
                set_deployment_condition(status, _cond(
                    "Progressing", "True", NEW_RS_AVAILABLE,
                    f'ReplicaSet "{rs_name}" has successfully progressed.'))
            elif deployment_progressing(d, status):
                cond = _cond("Progressing", "True", RS_UPDATED,
                             f'ReplicaSet "{rs_name}" is progressing.')
                if cur is not None and cur.get("status") == "True":
                    cond["lastTransitionTime"] = cur.get("lastTransitionTime") or \
                        cond["lastTransitionTime"]
                remove_condition(status, "Progressing")
                set_deployment_condition(status, cond)
            elif deployment_timed_out(d, status, now):
                set_deployment_condition(status, _cond(
                    "Progressing", "False", TIMED_OUT,
                    f'ReplicaSet "{rs_name}" has timed out progressing.'))
        failure = next((c for rs in rss for c in (rs.get("status") or {}).get("conditions") or []
                        if c.get("type") == "ReplicaFailure" and c.get("status") == "True"),
                       None)
        if failure is not None:
            set_deployment_condition(status, _cond("ReplicaFailure", "True",
                                                   failure.get("reason") or "FailedCreate",
                                                   failure.get("message") or ""))
        else:
            remove_condition(status, "ReplicaFailure")

        if complete and new_rs is not None:
            await self._mark_available(new_rs, rss)
            if cleanup:
                await self._cleanup(d, olds)

        rolled = await self._maybe_auto_rollback(d, status, new_rs, olds)
        await self._write_status(d, status)
        if rolled:
            return None
        # come back when the deadline would pass
        cond = get_condition(status, "Progressing")
        if deadline is not None and cond is not None and cond.get("status") == "True" and \
                cond.get("reason") != NEW_RS_AVAILABLE and not complete:
            since = parse_time(cond.get("lastUpdateTime"))
            if since is not None:
                left = (since + timedelta(seconds=deadline) - now).total_seconds()
                return Result(requeue_after=max(left, 0) + 1.0)
        return None

    async def _mark_available(self, new_rs: Obj, rss: list[Obj]) -> None:
        revision = _annotations(new_rs).get(REVISION)
        if not revision or _annotations(new_rs).get(AVAILABLE_MARK) == revision:
            return
        md = new_rs["metadata"]
        updated = await self.client.patch("replicasets", md["name"], {
            "metadata": {"annotations": {AVAILABLE_MARK: revision}}}, md.get("namespace"))
        _replace(rss, updated)

    async def _maybe_auto_rollback(self, d: Obj, status: Obj, new_rs: Obj | None,
                                   olds: list[Obj]) -> bool:
        """Roll back to the newest revision that was ever available, when opted in and the
        current revision, never available, exceeded its progress deadline."""
        if _annotations(d).get(AUTO_ROLLBACK, "").lower() != "true" or new_rs is None:
            return False
        if d["spec"].get("paused"):
            return False
        cond = get_condition(status, "Progressing")
        if cond is None or cond.get("reason") != TIMED_OUT:
            return False
        if AVAILABLE_MARK in _annotations(new_rs):
            return False  # this revision worked once: not a bad rollout
        candidates = [rs for rs in olds if AVAILABLE_MARK in _annotations(rs)]
        if not candidates:
            return False
        target = max(candidates, key=revision_of)
        from_rev, to_rev = revision_of(new_rs), revision_of(target)
        fresh = deepcopy(d)
        fresh.pop("status", None)
        fresh["spec"]["template"] = rollback_template(target)
        fresh["metadata"]["annotations"] = rollback_annotations(d, target)
        updated = await self.client.update(RESOURCE, fresh)
        d["metadata"] = updated["metadata"]
        message = (f'Rolled back deployment "{d["metadata"]["name"]}" from revision '
                   f'{from_rev} to revision {to_rev}: revision {from_rev} did not become '
                   f'available within progressDeadlineSeconds '
                   f'({_deadline(d)}s)')
        set_condition(status, _cond(ROLLED_BACK, "True", TIMED_OUT, message))
        await self.recorder.event(d, WARNING, ROLLED_BACK, message)
        return True

    async def _write_status(self, d: Obj, status: Obj) -> None:
        cached = self.d_informer.get(key_of(d))
        if cached is not None and cached["metadata"].get("resourceVersion") == \
                d["metadata"].get("resourceVersion") and (cached.get("status") or {}) == status:
            d["status"] = status
            return
        new = deepcopy(d)
        new["status"] = status
        updated = await self.client.update_status(RESOURCE, new)
        d["metadata"] = updated["metadata"]
        d["status"] = updated.get("status") or {}


def _replace(rss: list[Obj], updated: Obj) -> None:
    for i, rs in enumerate(rss):
        if rs["metadata"].get("uid") == updated["metadata"].get("uid"):
            rss[i] = updated
            return
    rss.append(updated)


def _split(rss: list[Obj], new_rs: Obj | None) -> tuple[Obj | None, list[Obj]]:
    """The current copies of the new ReplicaSet and the old ones, after updates."""
    if new_rs is None:
        return None, list(rss)
    uid = new_rs["metadata"].get("uid")
    current = next((rs for rs in rss if rs["metadata"].get("uid") == uid), new_rs)
    return current, [rs for rs in rss if rs["metadata"].get("uid") != uid]


def _latest(rss: Iterable[Obj]) -> Obj | None:
    rss = list(rss)
    if not rss:
        return None
    return max(rss, key=lambda rs: (revision_of(rs), _created(rs)))


def new(ctx: Any) -> DeploymentController:
    return DeploymentController(ctx.client, ctx.informers,
                                ctx.recorder("deployment-controller"),
                                workers=ctx.config.concurrent_syncs)


__all__ = ["DeploymentController", "new", "go_round", "resolve_fenceposts", "new_rs_replicas",
           "old_rs_scale_down", "proportional_scale", "RSState", "ScaleInput", "find_new_rs",
           "deployment_complete", "deployment_progressing", "deployment_timed_out",
           "rollback_template", "rollback_annotations", "max_surge", "max_unavailable",
           "REVISION", "CHANGE_CAUSE", "AUTO_ROLLBACK", "AVAILABLE_MARK", "ROLLED_BACK"]
