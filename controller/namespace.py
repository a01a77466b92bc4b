"""The namespace controller: a namespace being deleted is emptied, then released.

Deleting a Namespace only marks it (``deletionTimestamp``, phase ``Terminating``; the API
server refuses new content from then on) because ``spec.finalizers`` holds ``kubernetes``.
``reconcile(name)`` then deletes the namespace's objects of every namespaced kind in the
registry (a deletecollection per kind, Background propagation, pods gracefully as the API
server handles them), lists what is left, and reports it in the namespace's conditions
(``NamespaceDeletionContentFailure``, ``NamespaceContentRemaining``, as Kubernetes). Only
when nothing is left does it clear ``kubernetes`` through ``PUT namespaces/{name}/finalize``,
and the API server removes the namespace. While content remains it requeues itself after
a short wait, the way Kubernetes' controller re-estimates graceful termination.
"""

from __future__ import annotations

import logging
from typing import Any

from minik8s.api.errors import NotFound, StatusError
from minik8s.api.meta import deepcopy
from minik8s.api.registry import REGISTRY, ResourceType
from minik8s.runtime import Controller, Result, WorkQueue

from controller.job import rfc3339, set_condition, wall_now

log = logging.getLogger(__name__)

FINALIZER = "kubernetes"
# How long to wait before looking again while content remains (pods terminating, ...).
REMAINING_RECHECK = 1.0


def namespaced_kinds() -> list[ResourceType]:
    return [rt for rt in REGISTRY if rt.namespaced and "delete" in rt.verbs]


class NamespaceController:
    name = "namespace"

    def __init__(self, client: Any, informers: Any, clock: Any, recorder: Any,
                 workers: int = 2, recheck: float = REMAINING_RECHECK):
        self.client = client
        self.clock = clock
        self.recorder = recorder
        self.recheck = recheck
        self.namespaces = informers.informer("namespaces")
        self.controller = Controller("namespace", self,
                                     queue=WorkQueue("namespace", clock=clock), workers=workers)
        self.namespaces.add_handler(self.controller.enqueue,
                                    lambda old, new: self.controller.enqueue(new), None)

    async def start(self) -> None:
        await self.controller.start()

    async def reconcile(self, name: str) -> Result | None:
        cached = self.namespaces.get(name)
        if cached is None or not (cached.get("metadata") or {}).get("deletionTimestamp"):
            return None
        if FINALIZER not in ((cached.get("spec") or {}).get("finalizers") or []):
            return None  # already released by us; other finalizers are someone else's
        ns = deepcopy(cached)
        failures: list[str] = []
        remaining: dict[str, int] = {}
        for rt in namespaced_kinds():
            try:
                await self._delete_all(rt, name)
            except NotFound:
                pass
            except StatusError as exc:
                failures.append(f"{rt.qualified}: {exc}")
            try:
                left = await self.client.list(rt, name)
            except StatusError as exc:
                failures.append(f"{rt.qualified}: {exc}")
                continue
            count = len(left.get("items") or [])
            if count:
                remaining[rt.qualified] = count
        stamp = rfc3339(wall_now(self.clock))
        status = ns.setdefault("status", {})
        before = deepcopy(status)
        if failures:
            set_condition(status, "NamespaceDeletionContentFailure", "True",
                          "ContentDeletionFailed",
                          "Failed to delete all resource types, " + "; ".join(failures), stamp)
        else:
            set_condition(status, "NamespaceDeletionContentFailure", "False",
                          "ContentDeleted", "All content successfully deleted", stamp)
        if remaining:
            detail = ", ".join(f"{k} has {v} resource instances"
                               for k, v in sorted(remaining.items()))
            set_condition(status, "NamespaceContentRemaining", "True", "SomeResourcesRemain",
                          f"Some resources are remaining: {detail}", stamp)
        else:
            set_condition(status, "NamespaceContentRemaining", "False", "ContentRemoved",
                          "All content successfully removed", stamp)
        if status != before:
            for c in status.get("conditions") or []:  # only transitions mark time
                c.pop("lastProbeTime", None)
            try:
                ns = await self.client.update_status("namespaces", ns)
            except NotFound:
                return None
        if failures:
            await self.recorder.event(ns, "Warning", "NamespaceDeletionContentFailure",
                                      "; ".join(failures))
            raise RuntimeError(f"namespace {name}: {'; '.join(failures)}")
        if remaining:
            return Result(requeue_after=self.recheck)
        finalizers = [f for f in (ns.get("spec") or {}).get("finalizers") or []
                      if f != FINALIZER]
        ns.setdefault("spec", {})["finalizers"] = finalizers
        try:
            await self.client.update("namespaces", ns, subresource="finalize")
        except NotFound:
            return None
        log.info("namespace %s emptied and finalized", name)
        return None

    async def _delete_all(self, rt: ResourceType, namespace: str) -> None:
        if "deletecollection" in rt.verbs:
            await self.client.delete_collection(rt, namespace, propagation_policy="Background")
            return
        listed = await self.client.list(rt, namespace)
        for obj in listed.get("items") or []:
            try:
                await self.client.delete(rt, obj["metadata"]["name"], namespace,
                                         propagation_policy="Background")
            except NotFound:
                continue


def new(ctx: Any) -> NamespaceController:
    return NamespaceController(ctx.client, ctx.informers, ctx.clock,
                               ctx.recorder("namespace-controller"))


__all__ = ["NamespaceController", "new", "namespaced_kinds", "FINALIZER"]
