"""The generic resource store: create/get/list/update/patch/delete of any registered kind,
with the object lifecycle rules of the Kubernetes API server (server-set metadata,
``generation``, the spec/status split, finalizers and ``deletionTimestamp``, graceful pod
deletion, subresources). HTTP parsing and encoding live in ``apiserver.app``; kind-specific
behaviour lives in ``apiserver.strategy``; this module holds what is common to every kind."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from minik8s.api import patch as patching
from minik8s.api import schema
from minik8s.api.errors import (AlreadyExists, BadRequest, Conflict, Gone, Invalid, NotFound,
                                StatusError)
from minik8s.api.meta import Obj, now_rfc3339
from minik8s.api.registry import ResourceType
from minik8s.api.selectors import parse_field_selector, parse_label_selector

from apiserver import strategy
from apiserver.admission import Admission
from apiserver.storage import (ClaimTaken, KeyExists, KeyMissing, RevisionMismatch, Storage,
                               Stored)
from apiserver.watchcache import WatchCaches

PATCH_CONTENT_TYPES = {
    "application/merge-patch+json": "merge",
    "application/json-patch+json": "json",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}


@dataclass
class WriteOptions:
    dry_run: bool = False
    field_validation: str = "Warn"  # Strict | Warn | Ignore, as the query parameter says
    user: str = ""
    groups: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def report(self, problems: list[str]) -> None:
        """Unknown or duplicate fields: an error under Strict, a warning under Warn."""
        if not problems or self.field_validation == "Ignore":
            return
        if self.field_validation == "Strict":
            raise BadRequest(schema.strict_decoding_message(problems))
        self.warnings.extend(problems)


@dataclass
class DeleteOptions:
    grace_period_seconds: int | None = None
    propagation_policy: str | None = None
    preconditions: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False

    @classmethod
    def parse(cls, body: Obj | None, query: dict[str, str]) -> "DeleteOptions":
        body = body or {}
        grace = body.get("gracePeriodSeconds", query.get("gracePeriodSeconds"))
        try:
            grace = None if grace in (None, "") else int(grace)
        except (TypeError, ValueError):
            raise BadRequest(f"gracePeriodSeconds: invalid value {grace!r}") from None
        policy = body.get("propagationPolicy") or query.get("propagationPolicy")
        if policy not in (None, "Orphan", "Background", "Foreground"):
            raise Invalid(f'propagationPolicy: Unsupported value: "{policy}": supported '
                          f'values: "Foreground", "Background", "Orphan"',
                          causes=[{"reason": "FieldValueNotSupported",
                                   "field": "propagationPolicy", "message": str(policy)}])
        if body.get("orphanDependents") is True and policy is None:
            policy = "Orphan"
        dry = body.get("dryRun") or query.get("dryRun")
        dry_run = bool(dry) and ("All" in dry if isinstance(dry, list) else dry == "All")
        preconditions = body.get("preconditions") or {}
        if not isinstance(preconditions, dict):
            raise BadRequest("preconditions: must be an object")
        return cls(grace, policy, dict(preconditions), dry_run)


class ResourceStore:
    def __init__(self, storage: Storage, caches: WatchCaches, admission: Admission, *,
                 event_ttl: int = 3600):
        self.storage = storage
        self.caches = caches
        self.admission = admission
        self.event_ttl = event_ttl
        self.node_ipam: Any = None  # apiserver.nodeipam.NodeCIDRAllocator, set by the app
        self.service_alloc: Any = None  # apiserver.allocator.ServiceAllocator, set by the app

    # --- helpers ------------------------------------------------------------------

    def _ttl(self, rt: ResourceType) -> int | None:
        return self.event_ttl if rt.kind == "Event" and rt.group == "" else None

    async def _get(self, rt: ResourceType, ns: str | None, name: str) -> Stored:
        try:
            return await self.storage.get(rt.storage_key(ns, name))
        except KeyMissing:
            raise NotFound.object(rt.plural, rt.group, name) from None

    @staticmethod
    def _check_identity(rt: ResourceType, ns: str | None, name: str | None, obj: Obj) -> None:
        if not isinstance(obj, dict):
            raise BadRequest("the body of the request must be a JSON or YAML object")
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if kind and kind != rt.kind:
            raise BadRequest(f"the kind of the body ({kind}) does not match the resource "
                             f"({rt.kind})")
        if api_version and api_version != rt.api_version:
            raise BadRequest(f"the API version of the body ({api_version}) does not match "
                             f"the resource ({rt.api_version})")
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        md = obj.get("metadata")
        if md is None:
            md = obj["metadata"] = {}
        if not isinstance(md, dict):
            raise BadRequest("metadata must be an object")
        if rt.namespaced:
            body_ns = md.get("namespace")
            if body_ns and ns and body_ns != ns:
                raise BadRequest("the namespace of the provided object does not match the "
                                 "namespace sent on the request")
            md["namespace"] = ns
        else:
            md.pop("namespace", None)
        if name is not None and md.get("name") and md["name"] != name:
            raise BadRequest("the name of the object does not match the name on the URL")
        if name is not None:
            md["name"] = name

    # --- create -------------------------------------------------------------------

    async def create(self, rt: ResourceType, ns: str | None, obj: Obj,
                     opts: WriteOptions) -> Obj:
        self._check_identity(rt, ns, None, obj)
        md = obj["metadata"]
        if not md.get("name"):
            if md.get("generateName"):
                md["name"] = md["generateName"] + _random_suffix()
            else:
                raise Invalid.object(rt.kind, rt.group, "", [{
                    "reason": "FieldValueRequired", "field": "metadata.name",
                    "message": "name or generateName is required"}])
        for k in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            md.pop(k, None)
        md["uid"] = str(uuid.uuid4())
        md["creationTimestamp"] = now_rfc3339()
        if strategy.tracks_generation(rt):
            md["generation"] = 1
        else:
            md.pop("generation", None)
        _check_fields(rt, obj, opts)
        strategy.prepare_create(rt, obj)
        await self.admission.admit_create(rt, obj, opts)
        if self.node_ipam is not None and rt.kind == "Node" and not rt.group:
            await self.node_ipam.admit_create(obj, dry_run=opts.dry_run)
        plan = None
        if self.service_alloc is not None and rt.kind == "Service" and not rt.group:
            plan = await self.service_alloc.admit_create(obj, dry_run=opts.dry_run)
        if opts.dry_run:
            return obj
        key = rt.storage_key(ns, md["name"])
        for attempt in range(8):
            try:
                return (await self._insert(rt, key, obj, plan)).obj
            except ClaimTaken as exc:
                plan.retry(exc.keys)  # refuses a requested value, re-picks others
                continue
            except KeyExists:
                if md.get("generateName") and attempt < 7 and not opts.dry_run:
                    md["name"] = md["generateName"] + _random_suffix()
                    key = rt.storage_key(ns, md["name"])
                    continue
                raise AlreadyExists.object(rt.plural, rt.group, md["name"]) from None
        raise AlreadyExists.object(rt.plural, rt.group, md["name"])

    async def _insert(self, rt: ResourceType, key: str, obj: Obj, plan: Any = None) -> Stored:
        stored = await self.storage.create(key, obj, ttl=self._ttl(rt),
                                           claims=plan.claims() if plan else None)
        if self.node_ipam is not None and rt.kind == "Node" and not rt.group:
            self.node_ipam.created(stored.obj, stored.revision)
        return stored

    # --- read ---------------------------------------------------------------------

    async def get(self, rt: ResourceType, ns: str | None, name: str) -> Obj:
        return (await self._get(rt, ns, name)).obj

    async def list(self, rt: ResourceType, ns: str | None, query: dict[str, str]) -> Obj:
        predicate = self.predicate(rt, query)
        limit = _int_param(query, "limit") or 0
        token = query.get("continue") or ""
        rv = query.get("resourceVersion") or ""
        if rv and rv != "0":
            _revision(rv)  # any version is served from the latest state, but must be one
        if not token and rv == "0" and not limit:
            cache = self.caches[rt]
            items = cache.list(ns, predicate)
            return self._list_obj(rt, items, str(cache.revision), "")
        start_after, revision = _decode_continue(token) if token else (None, 0)
        prefix = rt.storage_prefix(ns)
        if start_after is not None and not start_after.startswith(prefix):
            raise BadRequest("continue key is not valid for this list")
        items: list[Obj] = []
        page = max(limit, 250) if limit else 1000
        more, last = True, start_after
        try:
            while more and (not limit or len(items) < limit):
                stored, rev, more, page_last = await self.storage.list(
                    prefix, start_after=last, limit=page, revision=revision)
                revision = revision or rev
                for st in stored:
                    if predicate(st.obj):
                        items.append(st.obj)
                        if limit and len(items) == limit:
                            last = _obj_key(rt, st.obj)
                            # More remains if this page or the store has further keys.
                            more = more or st is not stored[-1]
                            break
                else:
                    last = page_last or last
        except Gone:
            raise Gone("The provided continue parameter is too old to display a consistent "
                       "list result. You can start a new list without the continue "
                       "parameter.") from None
        next_token = _encode_continue(last, revision) if (limit and more and last) else ""
        return self._list_obj(rt, items, str(revision), next_token)

    @staticmethod
    def _list_obj(rt: ResourceType, items: list[Obj], rv: str, token: str) -> Obj:
        md: Obj = {"resourceVersion": rv}
        if token:
            md["continue"] = token
        return {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": md,
                "items": items}

    @staticmethod
    def predicate(rt: ResourceType, query: dict[str, str]) -> Callable[[Obj], bool]:
        labels = parse_label_selector(query.get("labelSelector") or "")
        fields = parse_field_selector(query.get("fieldSelector") or "", rt)
        if labels.empty and fields.empty:
            return lambda obj: True
        return lambda obj: (labels.matches((obj.get("metadata") or {}).get("labels") or {})
                            and fields.matches(obj))

    # --- update and patch -----------------------------------------------------------

    async def update(self, rt: ResourceType, ns: str | None, name: str, obj: Obj,
                     sub: str | None, opts: WriteOptions) -> tuple[Obj, bool]:
        """Replace the object (or its status); (object, created). A PUT to a missing object
        creates it, as Kubernetes allows for most kinds."""
        self._check_identity(rt, ns, name, obj)
        want_rv = (obj.get("metadata") or {}).get("resourceVersion")
        for _ in range(16):
            try:
                cur = await self.storage.get(rt.storage_key(ns, name))
            except KeyMissing:
                if sub is None and strategy.allow_create_on_update(rt):
                    return await self.create(rt, ns, obj, opts), True
                raise NotFound.object(rt.plural, rt.group, name) from None
            if want_rv:
                return await self._write(rt, ns, name, cur, obj, sub, opts,
                                         _revision(want_rv)), False
            # An update without a resourceVersion is unconditional, as Kubernetes allows: it
            # applies to whatever is current, retrying if the object moves under it.
            try:
                return await self._write(rt, ns, name, cur, copy.deepcopy(obj), sub, opts,
                                         cur.revision), False
            except Conflict:
                continue
        raise Conflict.object(rt.plural, rt.group, name, "too many concurrent changes")

    async def patch(self, rt: ResourceType, ns: str | None, name: str, body: bytes,
                    content_type: str, sub: str | None, opts: WriteOptions) -> Obj:
        kind = PATCH_CONTENT_TYPES.get(content_type)
        if kind is None or kind == "apply":
            raise StatusError.from_status({
                "code": 415, "reason": "UnsupportedMediaType",
                "message": f"the body of the request was in an unknown format - accepted "
                           f"media types include: {', '.join(list(PATCH_CONTENT_TYPES)[:3])}"})
        try:
            doc = json.loads(body) if body else None
        except (ValueError, RecursionError) as exc:
            raise BadRequest(f"error decoding patch: {exc}") from None
        for _ in range(16):
            cur = await self._get(rt, ns, name)
            base = strategy.view(rt, cur.obj, sub)
            patched = _apply_patch(kind, base, doc, rt.kind)
            if not isinstance(patched, dict):
                raise BadRequest("the patch must produce an object")
            md = patched.get("metadata")
            want_rv = md.get("resourceVersion") if isinstance(md, dict) else None
            if sub == "scale":
                patched = strategy.apply_scale(rt, cur.obj, patched)
            self._check_identity(rt, ns, name, patched)
            # A patch that names a version is a precondition; otherwise it applies to
            # whatever is current, retrying if the object moves under it. (The patched object
            # carries the version it was read at unless the patch set another.)
            pinned = bool(want_rv) and want_rv != cur.obj["metadata"].get("resourceVersion")
            expected = _revision(want_rv) if want_rv else cur.revision
            try:
                return await self._write(rt, ns, name, cur, patched,
                                         None if sub == "scale" else sub, opts, expected)
            except Conflict:
                if pinned:
                    raise
        raise Conflict.object(rt.plural, rt.group, name, "too many concurrent changes")

    async def _write(self, rt: ResourceType, ns: str | None, name: str, cur: Stored,
                     new: Obj, sub: str | None, opts: WriteOptions, expected: int) -> Obj:
        old = cur.obj
        if expected != cur.revision:
            raise Conflict.object(rt.plural, rt.group, name, _STALE)
        _check_fields(rt, new, opts)
        new = strategy.prepare_update(rt, new, old, sub)
        _keep_server_metadata(new, old)
        if sub is None and strategy.tracks_generation(rt) and _spec_changed(new, old):
            new["metadata"]["generation"] = (old["metadata"].get("generation") or 1) + 1
        await self.admission.admit_update(rt, new, old, opts, sub)
        if self.node_ipam is not None and rt.kind == "Node" and not rt.group and sub is None:
            await self.node_ipam.admit_update(new, old, dry_run=opts.dry_run)
        plan = None
        if self.service_alloc is not None and rt.kind == "Service" and not rt.group and \
                sub is None and not _finalized(rt, new):
            plan = await self.service_alloc.admit_update(new, old, dry_run=opts.dry_run)
        if _finalized(rt, new):
            if opts.dry_run:
                return new
            return await self._remove(rt, ns, name, expected, old)
        if opts.dry_run:
            return new
        if not cur.stale and _without_rv(new) == _without_rv(old):
            return old  # nothing changed: no write, no event, same version
        try:
            while True:
                try:
                    return (await self.storage.update(
                        rt.storage_key(ns, name), new, expected, ttl=self._ttl(rt),
                        claims=plan.claims() if plan else None)).obj
                except ClaimTaken as exc:
                    plan.retry(exc.keys)  # refuses a requested value, re-picks others
        except RevisionMismatch:
            raise Conflict.object(rt.plural, rt.group, name, _STALE) from None
        except KeyMissing:
            raise NotFound.object(rt.plural, rt.group, name) from None

    def _cached(self, rt: ResourceType, ns: str | None, name: str) -> Stored | None:
        """The watch cache's copy of the object (it may lag etcd by a moment): a base for a
        write whose etcd transaction compares the revision, saving the read before it."""
        cache = self.caches[rt]
        obj = cache.objects.get(rt.storage_key(ns, name)[len(cache.prefix):])
        if obj is None:
            return None
        try:
            return Stored(obj, int(obj["metadata"]["resourceVersion"]))
        except (KeyError, TypeError, ValueError):
            return None

    async def bind(self, rt: ResourceType, ns: str | None, name: str, binding: Obj,
                   opts: WriteOptions) -> Obj:
        """``POST pods/{name}/binding``: set ``spec.nodeName`` once, atomically.

        The first attempt starts from the watch cache's copy, so a binding usually costs one
        etcd transaction: it succeeds only if the pod is still at that revision, and when it
        is not, the failed transaction returns the current pod to retry on. A refusal decided
        on the cached copy is decided again on a fresh read, so a stale cache never answers."""
        key = rt.storage_key(ns, name)
        md = binding.get("metadata")
        want_uid = md.get("uid") if isinstance(md, dict) else None
        cur = None if opts.dry_run else self._cached(rt, ns, name)
        from_cache = cur is not None
        for _ in range(16):
            if cur is None:
                cur, from_cache = await self._get(rt, ns, name), False
            try:
                if want_uid and want_uid != cur.obj["metadata"].get("uid"):
                    raise Conflict.object(rt.plural, rt.group, name,
                                          "the pod UID does not match")
                bound = strategy.bind(cur.obj, binding)
            except StatusError:
                if from_cache:
                    cur = None
                    continue
                raise
            if opts.dry_run:
                return bound
            try:
                return (await self.storage.update(key, bound, cur.revision)).obj
            except RevisionMismatch as exc:
                cur, from_cache = exc.current, False  # the pod as etcd has it now
                continue
            except KeyMissing:
                raise NotFound.object(rt.plural, rt.group, name) from None
        raise Conflict.object(rt.plural, rt.group, name, "too many concurrent changes")

    # --- delete -------------------------------------------------------------------

    async def delete(self, rt: ResourceType, ns: str | None, name: str,
                     opts: DeleteOptions, wopts: WriteOptions) -> tuple[Obj, bool]:
        """Delete or start deleting; (object, gone now)."""
        for _ in range(16):
            cur = await self._get(rt, ns, name)
            obj = strategy.json_copy(cur.obj)
            md = obj["metadata"]
            pre = opts.preconditions
            if pre.get("uid") and pre["uid"] != md.get("uid"):
                raise Conflict.object(rt.plural, rt.group, name,
                                      f"Precondition failed: UID in precondition: {pre['uid']}"
                                      f", UID in object meta: {md.get('uid')}")
            if pre.get("resourceVersion") and pre["resourceVersion"] != md["resourceVersion"]:
                raise Conflict.object(rt.plural, rt.group, name, _STALE)
            await self.admission.admit_delete(rt, obj, wopts)
            # None: no grace period, delete now; True/False: graceful, object changed or not.
            graceful = strategy.graceful_delete(rt, obj, opts.grace_period_seconds)
            finalizers = list(md.get("finalizers") or [])
            policy = opts.propagation_policy or strategy.default_propagation(rt)
            if policy == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
            if policy == "Orphan" and "orphan" not in finalizers:
                finalizers.append("orphan")
            pending = bool(finalizers) or strategy.pending_finalizers(rt, obj)
            if graceful is None and not pending:
                if opts.dry_run:
                    return obj, True
                try:
                    return await self._remove(rt, ns, name, cur.revision, cur.obj), True
                except Conflict:
                    continue
            changed = bool(graceful)
            if pending:
                if finalizers != (md.get("finalizers") or []):
                    md["finalizers"] = finalizers
                    changed = True
                if not md.get("deletionTimestamp"):
                    md["deletionTimestamp"] = now_rfc3339()
                    changed = True
                if graceful is None and md.get("deletionGracePeriodSeconds") != 0:
                    md["deletionGracePeriodSeconds"] = 0
                    changed = True
                changed = strategy.on_delete_pending(rt, obj) or changed
            if not changed or opts.dry_run:
                return obj, False
            try:
                st = await self.storage.update(rt.storage_key(ns, name), obj, cur.revision,
                                               ttl=self._ttl(rt))
                return st.obj, False
            except RevisionMismatch:
                continue
            except KeyMissing:
                raise NotFound.object(rt.plural, rt.group, name) from None
        raise Conflict.object(rt.plural, rt.group, name, "too many concurrent changes")

    async def _remove(self, rt: ResourceType, ns: str | None, name: str, expected: int,
                      obj: Obj | None = None) -> Obj:
        """Delete at ``expected``; ``obj`` (the object there) releases what it holds."""
        claims = None
        if obj is not None and self.service_alloc is not None and rt.kind == "Service" \
                and not rt.group:
            claims = self.service_alloc.release_all(obj)
        try:
            return (await self.storage.delete(rt.storage_key(ns, name), expected,
                                              claims=claims)).obj
        except RevisionMismatch:
            raise Conflict.object(rt.plural, rt.group, name, _STALE) from None
        except KeyMissing:
            raise NotFound.object(rt.plural, rt.group, name) from None

    async def delete_collection(self, rt: ResourceType, ns: str | None, query: dict[str, str],
                                opts: DeleteOptions, wopts: WriteOptions) -> Obj:
        listed = await self.list(rt, ns, {k: v for k, v in query.items()
                                          if k in ("labelSelector", "fieldSelector")})
        deleted = []
        for obj in listed["items"]:
            md = obj["metadata"]
            try:
                out, _ = await self.delete(rt, md.get("namespace"), md["name"], opts, wopts)
                deleted.append(out)
            except NotFound:
                continue
        return self._list_obj(rt, deleted, listed["metadata"]["resourceVersion"], "")


def _check_fields(rt: ResourceType, obj: Obj, opts: WriteOptions) -> None:
    """A value of the wrong type is always refused (it could not be decoded in Kubernetes);
    unknown fields follow ``fieldValidation`` and are dropped unless it is Strict."""
    issues = schema.check_fields(rt.api_version, rt.kind, obj,
                                 prune=opts.field_validation != "Strict")
    wrong = [i.message for i in issues if i.reason == "type"]
    if wrong:
        raise BadRequest(f"{rt.kind} in version \"{rt.version}\" cannot be handled as a "
                         f"{rt.kind}: " + "; ".join(wrong))
    opts.report([i.message for i in issues if i.reason != "type"])


_STALE = "the object has been modified; please apply your changes to the latest version and try again"


def _apply_patch(kind: str, base: Obj, doc: Any, object_kind: str) -> Any:
    if kind == "json":
        if not isinstance(doc, list):
            raise BadRequest("a JSON patch must be a list of operations")
        return patching.apply_json_patch(base, doc)
    if not isinstance(doc, dict):
        raise BadRequest("a merge patch must be a JSON object")
    if kind == "merge":
        return patching.apply_merge_patch(base, doc)
    return patching.apply_strategic_merge_patch(base, doc, object_kind)


def _keep_server_metadata(new: Obj, old: Obj) -> None:
    """Fields the server owns cannot be changed by a write."""
    md, omd = new["metadata"], old["metadata"]
    for k in ("uid", "creationTimestamp", "generation", "deletionTimestamp",
              "deletionGracePeriodSeconds", "generateName"):
        if k in omd:
            md[k] = omd[k]
        else:
            md.pop(k, None)
    md["name"] = omd["name"]
    if "namespace" in omd:
        md["namespace"] = omd["namespace"]


def _spec_changed(new: Obj, old: Obj) -> bool:
    def spec(o: Obj) -> Obj:
        return {k: v for k, v in o.items() if k not in ("metadata", "status")}
    return spec(new) != spec(old)


def _finalized(rt: ResourceType, obj: Obj) -> bool:
    """A write that leaves an object being deleted with nothing left to wait for removes
    it (Kubernetes' ShouldDeleteDuringUpdate)."""
    md = obj["metadata"]
    return (bool(md.get("deletionTimestamp")) and md.get("deletionGracePeriodSeconds") == 0
            and not md.get("finalizers") and not strategy.pending_finalizers(rt, obj))


def _without_rv(obj: Obj) -> Obj:
    return {**obj, "metadata": {k: v for k, v in obj["metadata"].items()
                                if k != "resourceVersion"}}


def _revision(rv: Any) -> int:
    try:
        value = int(rv)
        if value <= 0:
            raise ValueError
        return value
    except (TypeError, ValueError):
        raise BadRequest(f"invalid resourceVersion {rv!r}") from None


def _int_param(query: dict[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name}: invalid value {raw!r}: must be an integer") from None
    if value < 0:
        raise BadRequest(f"{name}: must be >= 0")
    return value


def _obj_key(rt: ResourceType, obj: Obj) -> str:
    md = obj["metadata"]
    return rt.storage_key(md.get("namespace"), md["name"])


def _encode_continue(key: str, revision: int) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": key}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[str, int]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return str(data["start"]), int(data["rv"])
    except (ValueError, KeyError, TypeError):
        raise BadRequest("continue key is not valid: incorrect encoded start resourceVersion "
                         "(version meta.k8s.io/v1)") from None


def _random_suffix() -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    raw = uuid.uuid4().int
    return "".join(alphabet[(raw >> (5 * i)) % len(alphabet)] for i in range(5))


__all__ = ["ResourceStore", "WriteOptions", "DeleteOptions", "PATCH_CONTENT_TYPES"]
