"""etcd storage: the only code in minik8s that talks to etcd.

Objects are stored as JSON without ``metadata.resourceVersion``; the version handed out is the
key's etcd ``mod_revision``, so it cannot drift from the store. Every write is one etcd
transaction guarded by the revision the caller read (create: the key must not exist), which is
how optimistic concurrency reaches etcd itself rather than living in a process lock. Requests
are built from aetcd's protobuf types directly where its high-level API lacks a parameter
(limit, revision, prev_kv on delete).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable

import aetcd
from aetcd import rpc
from aetcd import watcher as aetcd_watcher
from aetcd.exceptions import (ClientError, ConnectionFailedError, ConnectionTimeoutError,
                              RevisionCompactedError)
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
    # Stored in an old form (a retired encryption key, or plaintext): a write must rewrite
    # it even when the object did not change.
    stale: bool = False


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

    def stale(self, key: str, raw: bytes) -> bool:
        """Whether ``raw`` is not in the form ``encode`` writes now."""
        return False


class EtcdTLS:
    """Client TLS towards etcd (``--etcd-cafile/--etcd-certfile/--etcd-keyfile``), PEM bytes."""

    def __init__(self, ca: bytes, cert: bytes | None = None, key: bytes | None = None):
        self.ca, self.cert, self.key = ca, cert, key

    @classmethod
    def from_files(cls, ca: Any, cert: Any = None, key: Any = None) -> "EtcdTLS":
        def read(p: Any) -> bytes | None:
            return open(p, "rb").read() if p else None
        return cls(read(ca) or b"", read(cert), read(key))


class _Client(aetcd.Client):
    """aetcd's client over one member, over a TLS channel when credentials are given (aetcd
    itself only opens plaintext ones). ``open()`` does no I/O and does not yield, so the
    storage opens a client in the same step that picks it: a call never meets a client
    whose stubs are not there yet. Once another member takes over (``replaced``) it never
    reopens: aetcd's own methods reconnect a closed client, which would revive the dead
    member. (Not opened in ``__init__``: a gRPC channel belongs to the running loop, and
    the storage is made before the server's loop runs.)"""

    def __init__(self, *args: Any, credentials: Any = None, **kw: Any):
        super().__init__(*args, **kw)
        self._credentials = credentials
        self.replaced = asyncio.Event()  # set when another member takes over

    @property
    def is_open(self) -> bool:
        return self._connected.is_set()

    def open(self) -> None:
        target = f"{self._host}:{self._port}"
        if self._credentials is None:
            self.channel = rpc.insecure_channel(target, options=self._options.items())
        else:
            self.channel = rpc.secure_channel(target, self._credentials,
                                              options=self._options.items())
        self.kvstub = rpc.KVStub(self.channel)
        self.clusterstub = rpc.ClusterStub(self.channel)
        self.leasestub = rpc.LeaseStub(self.channel)
        self.maintenancestub = rpc.MaintenanceStub(self.channel)
        self._watcher = aetcd_watcher.Watcher(rpc.WatchStub(self.channel),
                                              timeout=self._timeout, metadata=self.metadata)
        self._connected.set()

    async def connect(self) -> None:
        if self.replaced.is_set():
            raise _Replaced()
        if not self._connected.is_set():
            self.open()


class _Replaced(Exception):
    """The member a call was waiting on was failed over meanwhile."""


def _endpoint(url: str) -> tuple[str, int, bool]:
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        scheme, rest = "http", url.strip()
    host, _, port = rest.rstrip("/").rpartition(":")
    return (host or "127.0.0.1").strip("[]"), int(port or 2379), scheme == "https"


def _unreachable(exc: BaseException) -> bool:
    """The member could not be reached (worth trying another one)."""
    if isinstance(exc, (ConnectionFailedError, ConnectionTimeoutError)):
        return True
    return isinstance(exc, rpc.AioRpcError) and exc.code() in (
        rpc.StatusCode.UNAVAILABLE, rpc.StatusCode.DEADLINE_EXCEEDED)


def _never_sent(exc: BaseException) -> bool:
    """No connection was made, so the request cannot have been applied: safe to resend
    even a write."""
    text = str(exc.details() if isinstance(exc, rpc.AioRpcError) else exc).lower()
    return "failed to connect" in text or "connection refused" in text


class Storage:
    """``endpoints``: etcd client URLs (``http://`` or ``https://`` with ``tls``). One member
    is used at a time; when it cannot be reached the next one takes over: reads are resent
    there at once, writes only when they never left (otherwise the caller gets a 503 and
    retries), and watches restart there through the watch cache's retry."""

    def __init__(self, endpoints: list[str], *, codec: Codec | None = None,
                 timeout: float = 10.0, tls: EtcdTLS | None = None):
        self.endpoints = endpoints
        self.codec = codec or Codec()
        self._timeout = timeout
        self._tls = tls
        self._targets = [_endpoint(e) for e in endpoints] or [("127.0.0.1", 2379, False)]
        self._current = 0
        self._client = self._new_client(0)
        self._closing: set[Any] = set()
        self._ttl_leases: dict[int, tuple[int, float]] = {}

    def _new_client(self, index: int) -> _Client:
        host, port, secure = self._targets[index]
        credentials = None
        if secure:
            import grpc
            tls = self._tls or EtcdTLS(b"")
            credentials = grpc.ssl_channel_credentials(
                root_certificates=tls.ca or None, private_key=tls.key,
                certificate_chain=tls.cert)
        return _Client(host=host, port=port, timeout=self._timeout, credentials=credentials)

    async def start(self) -> None:
        await self._call(lambda c: c.connect())

    async def close(self) -> None:
        self._client.replaced.set()  # nothing reopens it
        await self._client.close()
        await asyncio.gather(*self._closing, return_exceptions=True)

    @property
    def client(self) -> aetcd.Client:
        return self._client

    @property
    def current_endpoint(self) -> str:
        return self.endpoints[self._current] if self.endpoints else ""

    def _failover(self, failed: aetcd.Client) -> None:
        """Move to the next member, once per failed client however many calls saw it fail."""
        if failed is not self._client or len(self._targets) < 2:
            return
        self._current = (self._current + 1) % len(self._targets)
        log.warning("etcd member %s unreachable; using %s", self.endpoints[self._current - 1]
                    if self._current else self.endpoints[-1], self.endpoints[self._current])
        self._client = self._new_client(self._current)
        failed.replaced.set()
        task = asyncio.ensure_future(failed.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _call(self, op: Callable[[aetcd.Client], Awaitable[Any]], *,
                    read: bool = False) -> Any:
        """Run ``op`` against the current member, failing over as the class says."""
        tries = len(self._targets)
        for attempt in range(tries):
            client = self._client
            if client.replaced.is_set():  # only after close(): a switch installs a new one
                raise ServiceUnavailable("etcd: the storage is closed")
            if not client.is_open:
                client.open()  # no await between picking the client and using its stubs
            try:
                if tries == 1:
                    return await op(client)
                return await self._unless_replaced(client, op(client))
            except _Replaced:
                if attempt + 1 < tries and read:
                    continue
                raise ServiceUnavailable("etcd: the member changed during the request") \
                    from None
            except RevisionCompactedError as exc:
                raise Gone(f"too old resource version: {exc.compacted_revision}") from exc
            except (ClientError, rpc.AioRpcError) as exc:
                if isinstance(exc, rpc.AioRpcError) and "compacted" in (exc.details() or ""):
                    raise Gone(f"too old resource version: {exc.details()}") from exc
                if _unreachable(exc):
                    self._failover(client)
                    if attempt + 1 < tries and (read or _never_sent(exc)):
                        continue
                detail = exc.details() if isinstance(exc, rpc.AioRpcError) else exc
                raise ServiceUnavailable(f"etcd: {detail}") from exc
        raise ServiceUnavailable("etcd: no member reachable")

    @staticmethod
    async def _unless_replaced(client: Any, awaitable: Awaitable[Any]) -> Any:
        """``awaitable``, abandoned (``_Replaced``) once ``client`` is failed over: calls
        queued on a dead member's channel (aetcd creates watches one at a time, each waiting
        for its timeout) must not hold their callers up. A call that failed while its client
        was being replaced (its channel closed under it) is ``_Replaced`` too, not its own
        error, unless that error shows it never left: the caller's policy (resend a read,
        and a write that never left; 503 another write) applies."""
        call = asyncio.ensure_future(awaitable)
        replaced = asyncio.ensure_future(client.replaced.wait())
        try:
            await asyncio.wait((call, replaced), return_when=asyncio.FIRST_COMPLETED)
        finally:
            replaced.cancel()
            if not call.done():
                call.cancel()  # a request: the task ends on its next step
        if call.done() and not call.cancelled():
            exc = call.exception()
            if exc is None or not client.replaced.is_set() or _never_sent(exc):
                return call.result()  # its answer, or its own error
        raise _Replaced()

    # --- reads --------------------------------------------------------------------

    async def get(self, key: str) -> Stored:
        resp = await self._call(lambda c: c.kvstub.Range(
            rpc.RangeRequest(key=key.encode()), timeout=self._timeout), read=True)
        if not resp.kvs:
            raise KeyMissing(key)
        kv = resp.kvs[0]
        return Stored(self.codec.decode(key, kv.value, kv.mod_revision), kv.mod_revision,
                      self.codec.stale(key, kv.value))

    async def list(self, prefix: str, *, start_after: str | None = None, limit: int = 0,
                   revision: int = 0) -> tuple[list[Stored], int, bool, str | None]:
        """Objects under ``prefix`` in key order: (items, list revision, more, last key).
        ``start_after`` continues a paged list; ``revision`` pins a paged list to one
        snapshot (``Gone`` once it is compacted)."""
        p = prefix.encode()
        start = (start_after.encode() + b"\0") if start_after else p
        req = rpc.RangeRequest(key=start, range_end=prefix_range_end(p), limit=limit,
                               revision=revision)
        resp = await self._call(lambda c: c.kvstub.Range(req, timeout=self._timeout),
                                read=True)
        items = [Stored(self.codec.decode(kv.key.decode(), kv.value, kv.mod_revision),
                        kv.mod_revision) for kv in resp.kvs]
        last = resp.kvs[-1].key.decode() if resp.kvs else None
        return items, resp.header.revision, bool(resp.more), last

    async def raw_range(self, prefix: str, *, revision: int = 0,
                        page: int = 500) -> AsyncIterator[tuple[str, bytes, int]]:
        """``(key, stored bytes, mod_revision)`` under ``prefix`` in key order, read a page
        at a time, not decoded (an encrypted value stays encrypted): for keys that are not
        objects (the allocator's claims) and for checks on the stored form itself.
        ``revision`` pins every page to one snapshot (0: the first page's)."""
        p = prefix.encode()
        start, end = p, prefix_range_end(p)
        while True:
            req = rpc.RangeRequest(key=start, range_end=end, limit=page, revision=revision)
            resp = await self._call(lambda c: c.kvstub.Range(req, timeout=self._timeout),
                                    read=True)
            revision = revision or resp.header.revision
            for kv in resp.kvs:
                yield kv.key.decode(), bytes(kv.value), kv.mod_revision
            if not resp.more or not resp.kvs:
                return
            start = resp.kvs[-1].key + b"\0"

    async def count(self, prefix: str) -> int:
        p = prefix.encode()
        req = rpc.RangeRequest(key=p, range_end=prefix_range_end(p), count_only=True)
        resp = await self._call(lambda c: c.kvstub.Range(req, timeout=self._timeout),
                                read=True)
        return resp.count

    async def current_revision(self) -> int:
        resp = await self._call(lambda c: c.kvstub.Range(
            rpc.RangeRequest(key=b"/registry/", limit=1), timeout=self._timeout), read=True)
        return resp.header.revision

    # --- writes -------------------------------------------------------------------

    async def _txn(self, compare: list[Any], success: list[Any],
                   failure: list[Any]) -> rpc.TxnResponse:
        req = rpc.TxnRequest(compare=compare, success=success, failure=failure)
        return await self._call(lambda c: c.kvstub.Txn(req, timeout=self._timeout))

    async def write_if(self, expect: dict[str, int], *, put: dict[str, bytes] | None = None,
                       delete: tuple[str, ...] | list[str] = ()) -> bool:
        """One transaction of raw keys: if every key of ``expect`` is at that mod_revision
        (0: absent), write ``put`` and remove ``delete``; whether it was applied. For keys
        that are not objects (the allocator's claims); objects go through create/update."""
        compare = [self._cmp_mod(k.encode(), rev) for k, rev in expect.items()]
        ops = [rpc.RequestOp(request_put=rpc.PutRequest(key=k.encode(), value=v))
               for k, v in (put or {}).items()]
        ops += [rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=k.encode()))
                for k in delete]
        resp = await self._txn(compare, ops, [])
        return bool(resp.succeeded)

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

    async def create(self, key: str, obj: Obj, *, ttl: int | None = None,
                     claims: "Claims | None" = None) -> Stored:
        k = key.encode()
        put = rpc.PutRequest(key=k, value=self.codec.encode(key, obj),
                             lease=await self._lease_for(ttl) if ttl else 0)
        if claims:
            resp = await self._txn([self._cmp_mod(k, 0), *claims.compares()],
                                   [rpc.RequestOp(request_put=put), *claims.ops()],
                                   [self._get_op(k), *claims.reads()])
            if not resp.succeeded:
                if resp.responses[0].response_range.kvs:
                    raise KeyExists(key)
                raise ClaimTaken(claims.taken(resp.responses[1:]))
            return self._stored(obj, resp.header.revision)
        resp = await self._txn([self._cmp_mod(k, 0)], [rpc.RequestOp(request_put=put)], [])
        if not resp.succeeded:
            raise KeyExists(key)
        return self._stored(obj, resp.header.revision)

    async def update(self, key: str, obj: Obj, expected_revision: int, *,
                     ttl: int | None = None, claims: "Claims | None" = None) -> Stored:
        """Write ``obj`` if the key is still at ``expected_revision``; otherwise
        ``RevisionMismatch`` carrying the current value (or ``KeyMissing``, or
        ``ClaimTaken`` when one of ``claims.take`` is held)."""
        k = key.encode()
        put = rpc.PutRequest(key=k, value=self.codec.encode(key, obj),
                             lease=await self._lease_for(ttl) if ttl else 0)
        if claims:
            resp = await self._txn([self._cmp_mod(k, expected_revision), *claims.compares()],
                                   [rpc.RequestOp(request_put=put), *claims.ops()],
                                   [self._get_op(k), *claims.reads()])
            if not resp.succeeded:
                first = resp.responses[0].response_range.kvs
                if not first:
                    raise KeyMissing(key)
                if first[0].mod_revision != expected_revision:
                    raise RevisionMismatch(Stored(self.codec.decode(
                        key, first[0].value, first[0].mod_revision), first[0].mod_revision))
                raise ClaimTaken(claims.taken(resp.responses[1:]))
            return self._stored(obj, resp.header.revision)
        resp = await self._txn([self._cmp_mod(k, expected_revision)],
                               [rpc.RequestOp(request_put=put)], [self._get_op(k)])
        if not resp.succeeded:
            current = self._current_from(key, resp)
            if current is None:
                raise KeyMissing(key)
            raise RevisionMismatch(current)
        return self._stored(obj, resp.header.revision)

    async def delete(self, key: str, expected_revision: int | None = None, *,
                     claims: "Claims | None" = None) -> Stored:
        """Remove the key (if still at ``expected_revision`` when given); the last value back.
        ``claims.release`` go in the same transaction."""
        k = key.encode()
        dreq = rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=k, prev_kv=True))
        cmp = [self._cmp_mod(k, expected_revision)] if expected_revision else []
        resp = await self._txn(cmp, [dreq, *(claims.ops() if claims else [])],
                               [self._get_op(k)])
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
        lease = await self._call(lambda c: c.lease(ttl + 60))
        self._ttl_leases[ttl] = (lease.id, now)
        return lease.id

    # --- watch and maintenance ------------------------------------------------------

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[WatchEvent]:
        """Events under ``prefix`` from ``start_revision`` on; ``Gone`` if compacted."""
        p = prefix.encode()
        stream = await self._call(lambda c: c.watch(
            p, range_end=prefix_range_end(p), start_revision=start_revision, prev_kv=True),
            read=True)
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
        await self._call(lambda c: c.compact(revision))

    async def defragment(self) -> None:
        await self._call(lambda c: c.defragment())


class ClaimTaken(Exception):
    """A key the write meant to claim is held already."""

    def __init__(self, keys: list[str]):
        super().__init__(f"claimed already: {', '.join(keys)}")
        self.keys = keys


@dataclass(frozen=True)
class Claims:
    """Keys written in the same etcd transaction as an object (the Service allocator's
    claims on ClusterIPs and node ports), so the object and its claims never disagree:
    each key of ``take`` must be absent and is created with its value; each key of
    ``release`` is deleted if it still holds its value (a claim of someone else stays)."""

    take: dict[str, bytes] = field(default_factory=dict)
    release: dict[str, bytes] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.take or self.release)

    def compares(self) -> list[Any]:
        return [rpc.Compare(key=k.encode(), target=rpc.Compare.CREATE,
                            result=rpc.Compare.EQUAL, create_revision=0) for k in self.take]

    def ops(self) -> list[Any]:
        out = [rpc.RequestOp(request_put=rpc.PutRequest(key=k.encode(), value=v))
               for k, v in self.take.items()]
        for k, v in self.release.items():
            out.append(rpc.RequestOp(request_txn=rpc.TxnRequest(
                compare=[rpc.Compare(key=k.encode(), target=rpc.Compare.VALUE,
                                     result=rpc.Compare.EQUAL, value=v)],
                success=[rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(
                    key=k.encode()))])))
        return out

    def reads(self) -> list[Any]:
        return [rpc.RequestOp(request_range=rpc.RangeRequest(key=k.encode(), keys_only=True))
                for k in self.take]

    def taken(self, responses: Any) -> list[str]:
        """The keys of ``take`` found held, from the answers to ``reads()``."""
        return [k for k, r in zip(self.take, responses) if r.response_range.kvs]


__all__ = ["Claims", "ClaimTaken", "EtcdTLS", "Storage", "Stored", "WatchEvent", "Codec",
           "KeyExists", "KeyMissing", "RevisionMismatch"]
