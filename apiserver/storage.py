"""etcd storage: the only code in minik8s that talks to etcd.

Objects are stored as JSON without ``metadata.resourceVersion``; the version handed out is the
key's etcd ``mod_revision``, so it cannot drift from the store. Every write is one etcd
transaction guarded by the revision the caller read (create: the key must not exist), which is
how optimistic concurrency reaches etcd itself rather than living in a process lock. Requests
are built from aetcd's protobuf types directly where its high-level API lacks a parameter
(limit, revision, prev_kv on delete).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable

import aetcd
from aetcd import rpc
from aetcd.exceptions import ClientError, RevisionCompactedError
from aetcd.utils import prefix_range_end

from minik8s.api.errors import Gone, InternalError, ServiceUnavailable
from minik8s.api.meta import Obj

log = logging.getLogger(__name__)


class KeyExists(Exception):
    """Create found the key taken."""


class KeyMissing(Exception):
    """The key is not there."""


class RevisionMismatch(Exception):
    """The key changed since the caller read it."""

    def __init__(self, current: "Stored | None"):
        super().__init__("revision mismatch")
        self.current = current


@dataclass(frozen=True)
class Stored:
    obj: Obj
    revision: int  # mod_revision of the key


@dataclass(frozen=True)
class WatchEvent:
    kind: str  # "PUT" | "DELETE"
    key: str
    obj: Obj | None  # new value (PUT) or last value (DELETE; None if compacted)
    revision: int
    created: bool  # PUT of a key that did not exist before


class Codec:
    """Turns objects into stored bytes and back; a later transformer (encryption at rest)
    wraps it. Stored bytes never carry the resourceVersion."""

    def encode(self, key: str, obj: Obj) -> bytes:
        md = obj.get("metadata")
        if isinstance(md, dict) and "resourceVersion" in md:
            obj = {**obj, "metadata": {k: v for k, v in md.items() if k != "resourceVersion"}}
        return json.dumps(obj, separators=(",", ":")).encode()

    def decode(self, key: str, raw: bytes, revision: int) -> Obj:
        obj = json.loads(raw)
        obj.setdefault("metadata", {})["resourceVersion"] = str(revision)
        return obj


class Storage:
    def __init__(self, endpoints: list[str], *, codec: Codec | None = None,
                 timeout: float = 10.0):
        self.endpoints = endpoints
        self.codec = codec or Codec()
        host, _, port = endpoints[0].split("://")[-1].rpartition(":")
        self._timeout = timeout
        self._client = aetcd.Client(host=host or "127.0.0.1", port=int(port or 2379),
                                    timeout=timeout)
        self._ttl_leases: dict[int, tuple[int, float]] = {}

    async def start(self) -> None:
        await self._call(self._client.connect())

    async def close(self) -> None:
        await self._client.close()

    @property
    def client(self) -> aetcd.Client:
        return self._client

    async def _call(self, awaitable: Awaitable[Any]) -> Any:
        try:
            return await awaitable
        except RevisionCompactedError as exc:
            raise Gone(f"too old resource version: {exc.compacted_revision}") from exc
        except ClientError as exc:
            raise ServiceUnavailable(f"etcd: {exc}") from exc
        except rpc.AioRpcError as exc:
            if "compacted" in (exc.details() or ""):
                raise Gone(f"too old resource version: {exc.details()}") from exc
            raise ServiceUnavailable(f"etcd: {exc.details()}") from exc

    # --- reads --------------------------------------------------------------------

    async def get(self, key: str) -> Stored:
        resp = await self._call(self._client.kvstub.Range(
            rpc.RangeRequest(key=key.encode()), timeout=self._timeout))
        if not resp.kvs:
            raise KeyMissing(key)
        kv = resp.kvs[0]
        return Stored(self.codec.decode(key, kv.value, kv.mod_revision), kv.mod_revision)

    async def list(self, prefix: str, *, start_after: str | None = None, limit: int = 0,
                   revision: int = 0) -> tuple[list[Stored], int, bool, str | None]:
        """Objects under ``prefix`` in key order: (items, list revision, more, last key).
        ``start_after`` continues a paged list; ``revision`` pins a paged list to one
        snapshot (``Gone`` once it is compacted)."""
        p = prefix.encode()
        start = (start_after.encode() + b"\0") if start_after else p
        req = rpc.RangeRequest(key=start, range_end=prefix_range_end(p), limit=limit,
                               revision=revision)
        resp = await self._call(self._client.kvstub.Range(req, timeout=self._timeout))
        items = [Stored(self.codec.decode(kv.key.decode(), kv.value, kv.mod_revision),
                        kv.mod_revision) for kv in resp.kvs]
        last = resp.kvs[-1].key.decode() if resp.kvs else None
        return items, resp.header.revision, bool(resp.more), last

    async def count(self, prefix: str) -> int:
        p = prefix.encode()
        req = rpc.RangeRequest(key=p, range_end=prefix_range_end(p), count_only=True)
        resp = await self._call(self._client.kvstub.Range(req, timeout=self._timeout))
        return resp.count

    async def current_revision(self) -> int:
        resp = await self._call(self._client.kvstub.Range(
            rpc.RangeRequest(key=b"/registry/", limit=1), timeout=self._timeout))
        return resp.header.revision

    # --- writes -------------------------------------------------------------------

    async def _txn(self, compare: list[Any], success: list[Any],
                   failure: list[Any]) -> rpc.TxnResponse:
        req = rpc.TxnRequest(compare=compare, success=success, failure=failure)
        return await self._call(self._client.kvstub.Txn(req, timeout=self._timeout))

    @staticmethod
    def _cmp_mod(key: bytes, revision: int) -> rpc.Compare:
        return rpc.Compare(key=key, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL,
                           mod_revision=revision)

    @staticmethod
    def _get_op(key: bytes) -> rpc.RequestOp:
        return rpc.RequestOp(request_range=rpc.RangeRequest(key=key))

    def _current_from(self, key: str, resp: rpc.TxnResponse) -> Stored | None:
        for r in resp.responses:
            if r.WhichOneof("response") == "response_range" and r.response_range.kvs:
                kv = r.response_range.kvs[0]
                return Stored(self.codec.decode(key, kv.value, kv.mod_revision), kv.mod_revision)
        return None

    async def create(self, key: str, obj: Obj, *, ttl: int | None = None) -> Stored:
        k = key.encode()
        put = rpc.PutRequest(key=k, value=self.codec.encode(key, obj),
                             lease=await self._lease_for(ttl) if ttl else 0)
        resp = await self._txn([self._cmp_mod(k, 0)], [rpc.RequestOp(request_put=put)], [])
        if not resp.succeeded:
            raise KeyExists(key)
        return self._stored(obj, resp.header.revision)

    async def update(self, key: str, obj: Obj, expected_revision: int, *,
                     ttl: int | None = None) -> Stored:
        """Write ``obj`` if the key is still at ``expected_revision``; otherwise
        ``RevisionMismatch`` carrying the current value (or ``KeyMissing``)."""
        k = key.encode()
        put = rpc.PutRequest(key=k, value=self.codec.encode(key, obj),
                             lease=await self._lease_for(ttl) if ttl else 0)
        resp = await self._txn([self._cmp_mod(k, expected_revision)],
                               [rpc.RequestOp(request_put=put)], [self._get_op(k)])
        if not resp.succeeded:
            current = self._current_from(key, resp)
            if current is None:
                raise KeyMissing(key)
            raise RevisionMismatch(current)
        return self._stored(obj, resp.header.revision)

    async def delete(self, key: str, expected_revision: int | None = None) -> Stored:
        """Remove the key (if still at ``expected_revision`` when given); the last value back."""
        k = key.encode()
        dreq = rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=k, prev_kv=True))
        cmp = [self._cmp_mod(k, expected_revision)] if expected_revision else []
        resp = await self._txn(cmp, [dreq], [self._get_op(k)])
        if not resp.succeeded:
            current = self._current_from(key, resp)
            if current is None:
                raise KeyMissing(key)
            raise RevisionMismatch(current)
        deleted = resp.responses[0].response_delete_range
        if not deleted.prev_kvs:
            raise KeyMissing(key)
        kv = deleted.prev_kvs[0]
        obj = self.codec.decode(key, kv.value, resp.header.revision)
        return Stored(obj, resp.header.revision)

    async def guaranteed_update(self, key: str, mutate: Callable[[Obj], Awaitable[Obj | None]],
                                *, attempts: int = 16) -> Stored | None:
        """Read-modify-write that retries on a concurrent change. ``mutate`` gets a fresh copy
        and returns the new object, or None to leave the key as it is."""
        for _ in range(attempts):
            cur = await self.get(key)
            new = await mutate(cur.obj)
            if new is None:
                return cur
            try:
                return await self.update(key, new, cur.revision)
            except RevisionMismatch:
                continue
        raise InternalError(f"too many concurrent changes to {key}")

    def _stored(self, obj: Obj, revision: int) -> Stored:
        out = {**obj, "metadata": {**(obj.get("metadata") or {}),
                                   "resourceVersion": str(revision)}}
        return Stored(out, revision)

    async def _lease_for(self, ttl: int) -> int:
        """One etcd lease shared by all keys written within a minute with the same TTL
        (as the Kubernetes API server does for Events), instead of a lease per key."""
        now = time.monotonic()
        cached = self._ttl_leases.get(ttl)
        if cached and now - cached[1] < 60:
            return cached[0]
        lease = await self._call(self._client.lease(ttl + 60))
        self._ttl_leases[ttl] = (lease.id, now)
        return lease.id

    # --- watch and maintenance ------------------------------------------------------

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[WatchEvent]:
        """Events under ``prefix`` from ``start_revision`` on; ``Gone`` if compacted."""
        p = prefix.encode()
        stream = await self._call(self._client.watch(
            p, range_end=prefix_range_end(p), start_revision=start_revision, prev_kv=True))
        try:
            async for ev in stream:
                yield self._event(ev)
        except RevisionCompactedError as exc:
            raise Gone(f"too old resource version: {exc.compacted_revision}") from exc
        finally:
            try:
                await stream.cancel()
            except Exception:  # the stream may already be gone with its channel
                pass

    def _event(self, ev: Any) -> WatchEvent:
        kv = ev.kv
        key = kv.key.decode()
        if ev.kind == "PUT":
            obj = self.codec.decode(key, kv.value, kv.mod_revision)
            return WatchEvent("PUT", key, obj, kv.mod_revision, kv.create_revision == kv.mod_revision)
        prev = self.codec.decode(key, ev.prev_kv.value, kv.mod_revision) if ev.prev_kv else None
        return WatchEvent("DELETE", key, prev, kv.mod_revision, False)

    async def compact(self, revision: int) -> None:
        await self._call(self._client.compact(revision))

    async def defragment(self) -> None:
        await self._call(self._client.defragment())


__all__ = ["Storage", "Stored", "WatchEvent", "Codec", "KeyExists", "KeyMissing",
           "RevisionMismatch"]
