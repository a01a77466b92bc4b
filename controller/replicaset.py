"""The ReplicaSet controller: keeps ``spec.replicas`` active pods matching the selector.

Level-triggered over the shared ReplicaSet and Pod informers: pod events only enqueue the
owning ReplicaSet (or, for an orphan, every ReplicaSet whose selector matches it, so one can
adopt it). Each reconcile claims pods (adopt matching orphans, release owned pods whose labels
no longer match), then, only when the expectations of earlier creates/deletes have been
observed in the cache, creates the missing pods in slow-start batches or deletes the least
useful extras, and finally writes ``status`` through the status subresource.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from minik8s.api.errors import NotFound
from minik8s.api.meta import Obj, controller_of, deepcopy, key_of, labels_of, split_key
from minik8s.api.selectors import selector_from_dict
from minik8s.cache import NAMESPACE_INDEX, namespace_index
from minik8s.client.events import NORMAL, WARNING
from minik8s.runtime import Controller, Result

from controller.util import (CONTROLLER_UID_INDEX, Expectations, claim, controller_uid_index,
                             get_condition, is_pod_active, is_pod_available, is_pod_ready,
                             now_rfc3339, pod_from_template, pods_to_delete, remove_condition,
                             seconds_until_available, set_condition, slow_start_batch)

log = logging.getLogger(__name__)

RESOURCE = "replicasets"
KIND = "ReplicaSet"
# Kubernetes' ``BurstReplicas``: at most this many creates or deletes per reconcile.
BURST_REPLICAS = 500


def _replicas(rs: Obj) -> int:
    value = (rs.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def calculate_status(rs: Obj, pods: list[Obj], manage_error: BaseException | None,
                     now: Any = None) -> Obj:
    """The ReplicaSet's status for its (claimed, active) ``pods``."""
    spec = rs.get("spec") or {}
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    status = deepcopy(rs.get("status") or {})
    status["replicas"] = len(pods)
    status["fullyLabeledReplicas"] = sum(
        1 for p in pods if all(labels_of(p).get(k) == v for k, v in template_labels.items()))
    status["readyReplicas"] = sum(1 for p in pods if is_pod_ready(p))
    status["availableReplicas"] = sum(1 for p in pods if is_pod_available(p, min_ready, now))
    status["observedGeneration"] = (rs.get("metadata") or {}).get("generation") or 1
    failure = get_condition(status, "ReplicaFailure")
    if manage_error is not None and isinstance(manage_error, _CreateFailed):
        if failure is None or failure.get("message") != str(manage_error.cause):
            set_condition(status, {"type": "ReplicaFailure", "status": "True",
                                   "reason": "FailedCreate", "message": str(manage_error.cause),
                                   "lastTransitionTime": now_rfc3339()})
    elif manage_error is None and failure is not None:
        remove_condition(status, "ReplicaFailure")
    return status


class _CreateFailed(Exception):
    def __init__(self, cause: BaseException):
        super().__init__(f"creating pods failed: {cause}")
        self.cause = cause


class ReplicaSetController:
    name = "replicaset"

    def __init__(self, client: Any, informers: Any, recorder: Any, *, workers: int = 5,
                 clock: Any = None, burst: int = BURST_REPLICAS):
        self.client = client
        self.recorder = recorder
        self.burst = burst
        self.expectations = Expectations(clock)
        self.rs_informer = informers.informer(RESOURCE, indexers={
            NAMESPACE_INDEX: namespace_index})
        self.pod_informer = informers.informer("pods", indexers={
            NAMESPACE_INDEX: namespace_index, CONTROLLER_UID_INDEX: controller_uid_index})
        self.controller = Controller(self.name, self, workers=workers)
        self.rs_informer.add_handler(self.controller.enqueue, self._rs_updated,
                                     self._rs_deleted)
        self.pod_informer.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)

    async def start(self) -> None:
        await self.controller.start()

    # --- event handlers (they only enqueue) -------------------------------------------

    def _rs_updated(self, old: Obj, new: Obj) -> None:
        self.controller.enqueue(new)

    def _rs_deleted(self, rs: Obj) -> None:
        key = key_of(rs)
        self.expectations.forget(key)
        self.controller.enqueue_key(key)

    def _owner_key(self, pod: Obj) -> str | None:
        ref = controller_of(pod)
        if not ref or ref.get("kind") != KIND:
            return None
        key = f"{(pod.get('metadata') or {}).get('namespace')}/{ref.get('name')}"
        rs = self.rs_informer.get(key)
        if rs is None or (rs.get("metadata") or {}).get("uid") != ref.get("uid"):
            return None
        return key

    def _enqueue_matching(self, pod: Obj) -> None:
        """An orphan: every ReplicaSet of its namespace whose selector matches may adopt it."""
        ns = (pod.get("metadata") or {}).get("namespace") or ""
        labels = labels_of(pod)
        for rs in self.rs_informer.by_index(NAMESPACE_INDEX, ns):
            try:
                if selector_from_dict((rs.get("spec") or {}).get("selector")).matches(labels):
                    self.controller.enqueue(rs)
            except Exception:
                continue

    def _pod_added(self, pod: Obj) -> None:
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            self._pod_deleted(pod)  # a restarted controller sees a pod already terminating
            return
        key = self._owner_key(pod)
        if key is not None:
            self.expectations.creation_observed(key)
            self.controller.enqueue_key(key)
        elif controller_of(pod) is None:
            self._enqueue_matching(pod)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if (old.get("metadata") or {}).get("resourceVersion") == \
                (new.get("metadata") or {}).get("resourceVersion"):
            return  # a resync: nothing changed
        if (new.get("metadata") or {}).get("deletionTimestamp"):
            key = self._owner_key(new)
            if key is not None:
                self.expectations.deletion_observed(key, key_of(new))
        old_ref, new_ref = controller_of(old), controller_of(new)
        labels_changed = labels_of(old) != labels_of(new)
        if old_ref != new_ref and old_ref is not None:
            old_key = self._owner_key(old)
            if old_key is not None:
                self.controller.enqueue_key(old_key)
        key = self._owner_key(new)
        if key is not None:
            self.controller.enqueue_key(key)
            rs = self.rs_informer.get(key)
            min_ready = int(((rs or {}).get("spec") or {}).get("minReadySeconds") or 0)
            if min_ready and not is_pod_ready(old) and is_pod_ready(new):
                self.controller.enqueue_after(key, min_ready + 0.5)
        elif new_ref is None and (labels_changed or old_ref is not None):
            self._enqueue_matching(new)

    def _pod_deleted(self, pod: Obj) -> None:
        key = self._owner_key(pod)
        if key is None:
            ref = controller_of(pod)
            if ref and ref.get("kind") == KIND:
                # the ReplicaSet may be gone from the cache already; still tick it off
                key = f"{(pod.get('metadata') or {}).get('namespace')}/{ref.get('name')}"
            else:
                return
        self.expectations.deletion_observed(key, key_of(pod))
        self.controller.enqueue_key(key)

    # --- reconcile ------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result | None:
        rs = self.rs_informer.get(key)
        if rs is None:
            self.expectations.forget(key)
            return None
        ns, name = split_key(key)
        md = rs.get("metadata") or {}
        selector = selector_from_dict((rs.get("spec") or {}).get("selector"))
        candidates = [p for p in self.pod_informer.by_index(NAMESPACE_INDEX, ns)
                      if is_pod_active(p)]

        async def still_ours() -> bool:
            fresh = await self.client.get(RESOURCE, name, ns)
            fmd = fresh.get("metadata") or {}
            return fmd.get("uid") == md.get("uid") and not fmd.get("deletionTimestamp")

        claimed = await claim(self.client, "pods", rs, selector, candidates,
                              can_adopt=still_ours)
        pods = claimed.owned
        manage_error: BaseException | None = None
        if self.expectations.satisfied(key) and not md.get("deletionTimestamp"):
            try:
                await self._manage(key, rs, pods)
            except _CreateFailed as exc:
                manage_error = exc
            except Exception as exc:  # noqa: BLE001  report after writing status
                manage_error = exc
        status = calculate_status(rs, pods, manage_error)
        await self._write_status(rs, status)
        if manage_error is not None:
            raise manage_error
        min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
        if min_ready:
            waits = [w for w in (seconds_until_available(p, min_ready) for p in pods)
                     if w is not None]
            if waits:
                return Result(requeue_after=min(waits) + 0.1)
        return None

    async def _write_status(self, rs: Obj, status: Obj) -> None:
        if status == (rs.get("status") or {}):
            return
        new = deepcopy(rs)
        new["status"] = status
        try:
            await self.client.update_status(RESOURCE, new)
        except NotFound:
            return

    async def _manage(self, key: str, rs: Obj, pods: list[Obj]) -> None:
        diff = len(pods) - _replicas(rs)
        ns = (rs.get("metadata") or {}).get("namespace")
        if diff < 0:
            count = min(-diff, self.burst)
            self.expectations.expect_creations(key, count)
            template = (rs.get("spec") or {}).get("template") or {}

            async def create_one() -> None:
                pod = pod_from_template(template, rs)
                try:
                    created = await self.client.create("pods", pod, ns)
                except Exception as exc:
                    self.expectations.lower_creations(key, 1)
                    await self.recorder.event(rs, WARNING, "FailedCreate",
                                              f"Error creating: {_message(exc)}")
                    raise
                await self.recorder.event(rs, NORMAL, "SuccessfulCreate",
                                          f"Created pod: {created['metadata']['name']}")

            result = await slow_start_batch(count, create_one)
            if result.error is not None:
                # failed calls lowered their own expectation; never-made ones are lowered here
                self.expectations.lower_creations(key, result.skipped)
                raise _CreateFailed(result.error)
        elif diff > 0:
            victims = pods_to_delete(pods, min(diff, self.burst))
            self.expectations.expect_deletions(key, [key_of(p) for p in victims])

            async def delete_one(pod: Obj) -> None:
                pmd = pod["metadata"]
                try:
                    await self.client.delete("pods", pmd["name"], ns)
                except NotFound:
                    self.expectations.deletion_observed(key, key_of(pod))
                    return
                except Exception as exc:
                    self.expectations.deletion_observed(key, key_of(pod))
                    await self.recorder.event(rs, WARNING, "FailedDelete",
                                              f"Error deleting: {_message(exc)}")
                    raise
                await self.recorder.event(rs, NORMAL, "SuccessfulDelete",
                                          f"Deleted pod: {pmd['name']}")

            results = await asyncio.gather(*(delete_one(p) for p in victims),
                                           return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
            if errors:
                raise errors[0]


def _message(exc: BaseException) -> str:
    return getattr(exc, "message", None) or str(exc)


def new(ctx: Any) -> ReplicaSetController:
    return ReplicaSetController(ctx.client, ctx.informers, ctx.recorder("replicaset-controller"),
                                workers=ctx.config.concurrent_syncs)


__all__ = ["ReplicaSetController", "calculate_status", "new", "BURST_REPLICAS"]
