"""The garbage collector: objects whose owners are gone go too, in the order the DELETE asked.

The ownership graph is not a separate structure here: every collectable kind has a shared
informer with two indexes, "uid" and "owner uid", so "who owns X" and "what depends on X"
are index lookups over caches the informers already keep current. Event handlers only
enqueue uids; ``reconcile(uid)`` looks the object up and takes one of three paths, as
Kubernetes' ``attemptToDeleteItem`` / ``attemptToOrphan`` do:

- **orphan**: the object is being deleted with the ``orphan`` finalizer: remove its
  ownerReference from every dependent, then the finalizer, so it goes and they stay.
- **foreground**: the object is being deleted with ``foregroundDeletion``: have every
  dependent deleted (themselves in the foreground when they have dependents), wait until no
  dependent with ``blockOwnerDeletion`` is left, then remove the finalizer.
- **dependent**: the object has ownerReferences: if none of its owners exists any more (a
  cache miss is confirmed by a live GET, comparing uids, since caches lag), delete it; if
  some are gone or waiting on a foreground deletion but others still exist, drop the
  references to those instead.

Kinds the registry does not know are treated as owners that exist (they cannot be checked).
"""

from __future__ import annotations

import logging
from typing import Any

from minik8s.api.errors import NotFound
from minik8s.api.meta import Obj, deepcopy, name_of, namespace_of
from minik8s.api.registry import REGISTRY, ResourceType
from minik8s.runtime import Controller, Result, WorkQueue

log = logging.getLogger(__name__)

UID_INDEX = "gc/uid"
OWNER_INDEX = "gc/owner-uid"
FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
# Kinds never owned nor owning in practice, whose volume would only cost memory.
IGNORED_KINDS = {("", "Event")}


def uid_index(obj: Obj) -> list[str]:
    uid = (obj.get("metadata") or {}).get("uid")
    return [uid] if uid else []


def owner_uid_index(obj: Obj) -> list[str]:
    return [r["uid"] for r in (obj.get("metadata") or {}).get("ownerReferences") or []
            if r.get("uid")]


def collectable(rt: ResourceType) -> bool:
    return (rt.group, rt.kind) not in IGNORED_KINDS and "watch" in rt.verbs and \
        "list" in rt.verbs and "delete" in rt.verbs


def _md(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _finalizers(obj: Obj) -> list[str]:
    return list(_md(obj).get("finalizers") or [])


def _deleting(obj: Obj) -> bool:
    return bool(_md(obj).get("deletionTimestamp"))


def waiting_for_dependents(obj: Obj) -> bool:
    return _deleting(obj) and FOREGROUND in _finalizers(obj)


def orphaning(obj: Obj) -> bool:
    return _deleting(obj) and ORPHAN in _finalizers(obj)


def deletion_policy(obj: Obj, has_dependents: bool, owner_waiting: bool) -> str:
    """How to delete a dependent: Foreground when it blocks a foreground deletion and has
    dependents of its own; otherwise what its own finalizers already ask; else Background."""
    if owner_waiting and has_dependents:
        return "Foreground"
    fins = _finalizers(obj)
    if ORPHAN in fins:
        return "Orphan"
    if FOREGROUND in fins:
        return "Foreground"
    return "Background"


class GarbageCollector:
    name = "garbagecollector"

    def __init__(self, client: Any, informers: Any, clock: Any = None, recorder: Any = None,
                 workers: int = 5, kinds: list[ResourceType] | None = None):
        self.client = client
        self.recorder = recorder
        self.kinds = [rt for rt in (kinds if kinds is not None else list(REGISTRY))
                      if collectable(rt)]
        self.informers = {rt: informers.informer(rt, indexers={UID_INDEX: uid_index,
                                                               OWNER_INDEX: owner_uid_index})
                          for rt in self.kinds}
        self.controller = Controller("garbagecollector", self,
                                     queue=WorkQueue("garbagecollector", clock=clock),
                                     workers=workers)
        for inf in self.informers.values():
            inf.add_handler(self._added, self._updated, self._deleted)

    async def start(self) -> None:
        await self.controller.start()

    # --- graph lookups over the caches ----------------------------------------------

    def locate(self, uid: str) -> tuple[ResourceType, Obj] | None:
        for rt, inf in self.informers.items():
            found = inf.by_index(UID_INDEX, uid)
            if found:
                return rt, found[0]
        return None

    def dependents(self, uid: str) -> list[tuple[ResourceType, Obj]]:
        return [(rt, obj) for rt, inf in self.informers.items()
                for obj in inf.by_index(OWNER_INDEX, uid)]

    def has_dependents(self, uid: str) -> bool:
        return any(inf.by_index(OWNER_INDEX, uid) for inf in self.informers.values())

    # --- handlers: enqueue only -----------------------------------------------------

    def _enqueue(self, uid: str | None) -> None:
        if uid:
            self.controller.enqueue_key(uid)

    def _interesting(self, obj: Obj) -> bool:
        return bool(_md(obj).get("ownerReferences")) or orphaning(obj) or \
            waiting_for_dependents(obj)

    def _enqueue_waiting_owners(self, obj: Obj) -> None:
        for uid in owner_uid_index(obj):
            found = self.locate(uid)
            if found is not None and (waiting_for_dependents(found[1]) or orphaning(found[1])):
                self._enqueue(uid)

    def _added(self, obj: Obj) -> None:
        if self._interesting(obj):
            self._enqueue(_md(obj).get("uid"))

    def _updated(self, old: Obj, new: Obj) -> None:
        refs_changed = _md(old).get("ownerReferences") != _md(new).get("ownerReferences")
        deletion_changed = (_deleting(old), _finalizers(old)) != (_deleting(new),
                                                                   _finalizers(new))
        if (refs_changed or deletion_changed) and self._interesting(new):
            self._enqueue(_md(new).get("uid"))
        if refs_changed or deletion_changed:
            # a dependent that lets go of (or starts leaving) a waiting owner
            self._enqueue_waiting_owners(old)
            self._enqueue_waiting_owners(new)

    def _deleted(self, obj: Obj) -> None:
        uid = _md(obj).get("uid")
        if uid:
            for _, dep in self.dependents(uid):
                self._enqueue(_md(dep).get("uid"))
        self._enqueue_waiting_owners(obj)

    # --- reconcile ------------------------------------------------------------------

    async def reconcile(self, uid: str) -> Result | None:
        found = self.locate(uid)
        if found is None:
            return None
        rt, obj = found
        if orphaning(obj):
            return await self._orphan(rt, obj)
        if waiting_for_dependents(obj):
            return await self._foreground(rt, obj)
        if _deleting(obj) or not _md(obj).get("ownerReferences"):
            return None
        return await self._attempt_to_delete(rt, obj)

    async def _owner_state(self, obj: Obj, ref: Obj) -> str:
        """``solid``, ``waiting`` (being deleted in the foreground) or ``dangling``."""
        rt = REGISTRY.by_kind(ref.get("apiVersion") or "", ref.get("kind") or "")
        if rt is None or rt not in self.informers:
            return "solid"  # cannot be checked: never delete on its account
        if rt.namespaced and not namespace_of(obj):
            return "dangling"  # a cluster-scoped object cannot have a namespaced owner
        cached = self.informers[rt].by_index(UID_INDEX, ref.get("uid") or "")
        if cached:
            owner = cached[0]
        else:
            try:
                owner = await self.client.get(rt, ref.get("name") or "",
                                              namespace_of(obj) if rt.namespaced else None)
            except NotFound:
                return "dangling"
            if _md(owner).get("uid") != ref.get("uid"):
                return "dangling"
        return "waiting" if waiting_for_dependents(owner) else "solid"

    async def _attempt_to_delete(self, rt: ResourceType, obj: Obj) -> Result | None:
        refs = _md(obj).get("ownerReferences") or []
        states = {}
        for ref in refs:
            states[ref.get("uid")] = await self._owner_state(obj, ref)
        solid = [u for u, s in states.items() if s == "solid"]
        if solid:
            drop = {u for u, s in states.items() if s != "solid"}
            if drop:
                await self._remove_refs(rt, obj, drop)
            return None
        waiting = any(s == "waiting" for s in states.values())
        uid = _md(obj).get("uid")
        policy = deletion_policy(obj, self.has_dependents(uid), waiting)
        await self._delete(rt, obj, policy)
        return None

    async def _foreground(self, rt: ResourceType, owner: Obj) -> Result | None:
        uid = _md(owner)["uid"]
        blocking = False
        for _, dep in self.dependents(uid):
            ref = next((r for r in _md(dep).get("ownerReferences") or []
                        if r.get("uid") == uid), {})
            if ref.get("blockOwnerDeletion"):
                blocking = True
            if not _deleting(dep):
                self._enqueue(_md(dep).get("uid"))
        if blocking:
            return None  # dependents' events bring us back
        await self._remove_finalizer(rt, owner, FOREGROUND)
        return None

    async def _orphan(self, rt: ResourceType, owner: Obj) -> Result | None:
        uid = _md(owner)["uid"]
        for dep_rt, dep in self.dependents(uid):
            await self._remove_refs(dep_rt, dep, {uid})
        await self._remove_finalizer(rt, owner, ORPHAN)
        return None

    # --- writes ---------------------------------------------------------------------

    async def _delete(self, rt: ResourceType, obj: Obj, policy: str) -> None:
        log.info("deleting %s %s/%s (%s): its owners are gone", rt.kind, namespace_of(obj),
                 name_of(obj), policy)
        try:
            await self.client.delete(rt, name_of(obj), namespace_of(obj) or None,
                                     propagation_policy=policy,
                                     preconditions={"uid": _md(obj)["uid"]})
        except NotFound:
            return

    async def _remove_refs(self, rt: ResourceType, obj: Obj, uids: set[str]) -> None:
        """Drop the ownerReferences to ``uids`` (an update against the cached version:
        a 409 requeues, and the next attempt reads the newer object)."""
        updated = deepcopy(obj)
        refs = [r for r in _md(updated).get("ownerReferences") or [] if r.get("uid") not in uids]
        if len(refs) == len(_md(updated).get("ownerReferences") or []):
            return
        if refs:
            updated["metadata"]["ownerReferences"] = refs
        else:
            updated["metadata"].pop("ownerReferences", None)
        try:
            await self.client.update(rt, updated, namespace_of(obj) or None)
        except NotFound:
            return

    async def _remove_finalizer(self, rt: ResourceType, obj: Obj, finalizer: str) -> None:
        updated = deepcopy(obj)
        fins = [f for f in _finalizers(updated) if f != finalizer]
        if len(fins) == len(_finalizers(updated)):
            return
        updated["metadata"]["finalizers"] = fins
        try:
            await self.client.update(rt, updated, namespace_of(obj) or None)
        except NotFound:
            return


def new(ctx: Any) -> GarbageCollector:
    return GarbageCollector(ctx.client, ctx.informers, ctx.clock,
                            ctx.recorder("garbage-collector-controller"),
                            workers=max(1, ctx.config.concurrent_syncs))


__all__ = ["GarbageCollector", "new", "uid_index", "owner_uid_index", "deletion_policy",
           "FOREGROUND", "ORPHAN"]
