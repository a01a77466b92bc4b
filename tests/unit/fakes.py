"""Fakes for the I/O boundaries the cache and runtime layers use, so their unit tests need no
API server and never wait on the wall clock.

``FakeClient`` keeps objects in memory with a resourceVersion counter and the API server's
write rules (409 AlreadyExists on create, 409 Conflict on a stale update, 404 NotFound), and
its ``watch_forever`` behaves like the real one: a list (ADDED per object, then SYNCED), then
one event per write, fed through an ``asyncio.Queue`` per stream that tests can also push raw
events into. Faults (an error, or a call that never answers) are injected per verb.
``FakeClock`` is a clock whose ``sleep`` returns only when a test ``advance``s time.
"""

from __future__ import annotations

import asyncio
import copy
import heapq
import itertools
import uuid
from typing import Any, AsyncIterator, Callable

from minik8s.api.errors import AlreadyExists, Conflict, NotFound
from minik8s.api.meta import Obj, get_path, key_of, labels_of, namespace_of
from minik8s.api.registry import REGISTRY, ResourceType

_END = object()


def _resolve(ref: ResourceType | str) -> tuple[str, ResourceType | None]:
    rt = ref if isinstance(ref, ResourceType) else REGISTRY.resolve(ref)
    return (rt.qualified if rt else str(ref)), rt


def _selector_matches(selector: str | None, values: Callable[[str], Any]) -> bool:
    """Equality-based selectors only: ``a=b,c==d,e!=f``, and ``key`` / ``!key`` existence."""
    if not selector:
        return True
    for term in selector.split(","):
        term = term.strip()
        if not term:
            continue
        if "!=" in term:
            k, v = term.split("!=", 1)
            if values(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if values(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if values(term[1:]) is not None:
                return False
        elif values(term) is None:
            return False
    return True


def _merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = _merge_patch(result.get(k), v)
    return result


class _Watcher:
    def __init__(self, namespace: str | None, label_selector: str | None,
                 field_selector: str | None):
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    def wants(self, obj: Obj) -> bool:
        if self.namespace is not None and namespace_of(obj) != self.namespace:
            return False
        labels = labels_of(obj)
        return (_selector_matches(self.label_selector, labels.get)
                and _selector_matches(self.field_selector,
                                      lambda path: _field_str(get_path(obj, path))))


def _field_str(value: Any) -> str | None:
    return None if value is None else str(value)


class FakeClient:
    """The subset of ``minik8s.client.Client`` the cache and runtime layers use."""

    def __init__(self, namespace: str = "default"):
        self.namespace = namespace
        self.objects: dict[str, dict[str, Obj]] = {}
        self.resource_version = 0
        self.calls: list[tuple[str, str, str]] = []  # (verb, resource, key or namespace)
        self.watch_calls: list[dict[str, Any]] = []
        self._watchers: dict[str, list[_Watcher]] = {}
        self._faults: dict[str, list[Any]] = {}
        self._uids = itertools.count(1)

    # --- test controls --------------------------------------------------------------

    def fail(self, verb: str, exc: BaseException, times: int | None = None) -> None:
        """Make ``verb`` calls raise ``exc`` (``times`` times, or until ``clear_faults``)."""
        self._faults[verb] = [exc, times]

    def hang(self, verb: str) -> None:
        """Make ``verb`` calls never answer (until ``clear_faults``)."""
        self._faults[verb] = ["hang", None]

    def clear_faults(self, verb: str | None = None) -> None:
        if verb is None:
            self._faults.clear()
        else:
            self._faults.pop(verb, None)

    def seed(self, ref: ResourceType | str, obj: Obj) -> Obj:
        """Store an object directly (no fault, no call recorded, but watchers are told)."""
        res, rt = _resolve(ref)
        obj = self._stamp(copy.deepcopy(obj), rt, None)
        self.objects.setdefault(res, {})[key_of(obj)] = obj
        self._broadcast(res, "ADDED", obj)
        return copy.deepcopy(obj)

    def stored(self, ref: ResourceType | str, name: str, namespace: str | None = None) -> Obj | None:
        res, rt = _resolve(ref)
        ns = self._ns(rt, namespace)
        return self.objects.get(res, {}).get(f"{ns}/{name}" if ns else name)

    def push(self, ref: ResourceType | str, event: Obj) -> None:
        """Deliver a raw event to every open watch of the resource."""
        res, _ = _resolve(ref)
        for w in self._watchers.get(res, []):
            w.queue.put_nowait(event)

    def end_watches(self, ref: ResourceType | str) -> None:
        """End every open ``watch_forever`` stream of the resource."""
        res, _ = _resolve(ref)
        for w in self._watchers.get(res, []):
            w.queue.put_nowait(_END)

    def watchers(self, ref: ResourceType | str) -> int:
        return len(self._watchers.get(_resolve(ref)[0], []))

    def count(self, verb: str) -> int:
        return sum(1 for c in self.calls if c[0] == verb)

    # --- plumbing -------------------------------------------------------------------

    def _ns(self, rt: ResourceType | None, namespace: str | None) -> str:
        if rt is not None and not rt.namespaced:
            return ""
        return namespace or self.namespace

    async def _enter(self, verb: str, res: str, what: str) -> None:
        self.calls.append((verb, res, what))
        fault = self._faults.get(verb)
        if fault is None:
            return
        exc, times = fault
        if times is not None:
            fault[1] = times - 1
            if fault[1] <= 0:
                self._faults.pop(verb, None)
        if exc == "hang":
            await asyncio.Event().wait()
        raise exc

    def _next_rv(self) -> str:
        self.resource_version += 1
        return str(self.resource_version)

    def _stamp(self, obj: Obj, rt: ResourceType | None, namespace: str | None) -> Obj:
        md = obj.setdefault("metadata", {})
        if rt is None or rt.namespaced:
            md["namespace"] = namespace or md.get("namespace") or self.namespace
        else:
            md.pop("namespace", None)
        if not md.get("name") and md.get("generateName"):
            md["name"] = f"{md['generateName']}{next(self._uids):05d}"
        md.setdefault("uid", str(uuid.uuid4()))
        md.setdefault("creationTimestamp", "2024-01-01T00:00:00Z")
        md["resourceVersion"] = self._next_rv()
        if rt is not None:
            obj.setdefault("apiVersion", rt.api_version)
            obj.setdefault("kind", rt.kind)
        return obj

    def _broadcast(self, res: str, kind: str, obj: Obj) -> None:
        for w in self._watchers.get(res, []):
            if w.wants(obj):
                w.queue.put_nowait({"type": kind, "object": copy.deepcopy(obj)})

    @staticmethod
    def _names(rt: ResourceType | None, res: str) -> tuple[str, str]:
        return (rt.plural, rt.group) if rt else (res, "")

    # --- verbs ----------------------------------------------------------------------

    async def get(self, ref: ResourceType | str, name: str, namespace: str | None = None,
                  **_: Any) -> Obj:
        res, rt = _resolve(ref)
        ns = self._ns(rt, namespace)
        key = f"{ns}/{name}" if ns else name
        await self._enter("get", res, key)
        obj = self.objects.get(res, {}).get(key)
        if obj is None:
            raise NotFound.object(*self._names(rt, res), name)
        return copy.deepcopy(obj)

    async def list(self, ref: ResourceType | str, namespace: str | None = None, *,
                   all_namespaces: bool = False, label_selector: str | None = None,
                   field_selector: str | None = None, **_: Any) -> Obj:
        res, rt = _resolve(ref)
        ns = None if all_namespaces or (rt is not None and not rt.namespaced) \
            else self._ns(rt, namespace)
        await self._enter("list", res, ns or "")
        w = _Watcher(ns, label_selector, field_selector)
        items = [copy.deepcopy(o) for o in self.objects.get(res, {}).values() if w.wants(o)]
        return {"kind": f"{rt.kind if rt else 'Object'}List", "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self.resource_version)}, "items": items}

    list_all = list

    async def create(self, ref: ResourceType | str, obj: Obj, namespace: str | None = None,
                     **_: Any) -> Obj:
        res, rt = _resolve(ref)
        obj = copy.deepcopy(obj)
        ns = self._ns(rt, namespace or namespace_of(obj))
        await self._enter("create", res, f"{ns}/{(obj.get('metadata') or {}).get('name')}")
        md = obj.setdefault("metadata", {})
        md.pop("resourceVersion", None)
        stamped = self._stamp(obj, rt, ns)
        key = key_of(stamped)
        bucket = self.objects.setdefault(res, {})
        if key in bucket:
            self.resource_version -= 1
            raise AlreadyExists.object(*self._names(rt, res), md["name"])
        bucket[key] = stamped
        self._broadcast(res, "ADDED", stamped)
        return copy.deepcopy(stamped)

    async def update(self, ref: ResourceType | str, obj: Obj, namespace: str | None = None,
                     **_: Any) -> Obj:
        res, rt = _resolve(ref)
        obj = copy.deepcopy(obj)
        md = obj.setdefault("metadata", {})
        ns = self._ns(rt, namespace or md.get("namespace"))
        key = f"{ns}/{md.get('name')}" if ns else md.get("name", "")
        await self._enter("update", res, key)
        current = self.objects.get(res, {}).get(key)
        if current is None:
            raise NotFound.object(*self._names(rt, res), md.get("name", ""))
        rv = md.get("resourceVersion")
        if rv and rv != current["metadata"]["resourceVersion"]:
            raise Conflict.object(*self._names(rt, res), md["name"],
                                  "the object has been modified; please apply your changes "
                                  "to the latest version and try again")
        md["uid"] = current["metadata"].get("uid")
        md["creationTimestamp"] = current["metadata"].get("creationTimestamp")
        md["resourceVersion"] = self._next_rv()
        if ns:
            md["namespace"] = ns
        self.objects[res][key] = obj
        self._broadcast(res, "MODIFIED", obj)
        return copy.deepcopy(obj)

    async def update_status(self, ref: ResourceType | str, obj: Obj, **kw: Any) -> Obj:
        return await self.update(ref, obj, **kw)

    async def patch(self, ref: ResourceType | str, name: str, patch: Any,
                    namespace: str | None = None, **_: Any) -> Obj:
        res, rt = _resolve(ref)
        ns = self._ns(rt, namespace)
        key = f"{ns}/{name}" if ns else name
        await self._enter("patch", res, key)
        current = self.objects.get(res, {}).get(key)
        if current is None:
            raise NotFound.object(*self._names(rt, res), name)
        obj = _merge_patch(copy.deepcopy(current), patch)
        obj["metadata"]["resourceVersion"] = self._next_rv()
        self.objects[res][key] = obj
        self._broadcast(res, "MODIFIED", obj)
        return copy.deepcopy(obj)

    async def delete(self, ref: ResourceType | str, name: str, namespace: str | None = None,
                     **_: Any) -> Obj:
        res, rt = _resolve(ref)
        ns = self._ns(rt, namespace)
        key = f"{ns}/{name}" if ns else name
        await self._enter("delete", res, key)
        obj = self.objects.get(res, {}).pop(key, None)
        if obj is None:
            raise NotFound.object(*self._names(rt, res), name)
        obj["metadata"]["resourceVersion"] = self._next_rv()
        self._broadcast(res, "DELETED", obj)
        return copy.deepcopy(obj)

    async def watch_forever(self, ref: ResourceType | str, namespace: str | None = None, *,
                            all_namespaces: bool = False, label_selector: str | None = None,
                            field_selector: str | None = None, **_: Any) -> AsyncIterator[Obj]:
        res, rt = _resolve(ref)
        ns = None if all_namespaces or (rt is not None and not rt.namespaced) \
            else self._ns(rt, namespace)
        self.watch_calls.append({"resource": res, "namespace": namespace,
                                 "all_namespaces": all_namespaces,
                                 "label_selector": label_selector,
                                 "field_selector": field_selector})
        watcher = _Watcher(ns, label_selector, field_selector)
        await self._enter("watch", res, ns or "")
        # register before taking the snapshot: every later write reaches the queue
        self._watchers.setdefault(res, []).append(watcher)
        try:
            snapshot = [copy.deepcopy(o) for o in self.objects.get(res, {}).values()
                        if watcher.wants(o)]
            for obj in snapshot:
                yield {"type": "ADDED", "object": obj}
            yield {"type": "SYNCED",
                   "object": {"metadata": {"resourceVersion": str(self.resource_version)}}}
            while True:
                event = await watcher.queue.get()
                if event is _END:
                    return
                yield event
        finally:
            self._watchers[res].remove(watcher)


class FakeInformer:
    """An informer over a ``FakeClient``'s stored objects, for controllers that only read
    their informers' caches (``get``/``list``); handlers are not called."""

    def __init__(self, client: FakeClient, resource: str, namespace: str | None):
        self.client, self.resource, self.namespace = client, resource, namespace

    def get(self, key: str) -> Obj | None:
        ns, _, name = key.rpartition("/")
        return self.client.stored(self.resource, name, ns or None)

    def list(self) -> list[Obj]:
        return [o for o in self.client.objects.get(self.resource, {}).values()
                if self.namespace is None or o["metadata"].get("namespace") == self.namespace]

    def add_handler(self, *handlers: Any) -> None:
        pass


class FakeInformers:
    """What a controller's ``informers`` argument offers, as ``FakeInformer``s."""

    def __init__(self, client: FakeClient):
        self.client = client

    def informer(self, resource: str, namespace: str | None = None, **_: Any) -> FakeInformer:
        return FakeInformer(self.client, resource, namespace)


class FakeClock:
    """Monotonic time that moves only when ``advance`` is called."""

    def __init__(self, start: float = 1000.0):
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        await fut

    def advance(self, seconds: float) -> None:
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    @property
    def sleepers(self) -> int:
        return sum(1 for _, _, f in self._sleepers if not f.done())


async def settle(rounds: int = 50) -> None:
    """Let every ready task run until the loop is idle (as far as a test can tell)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def eventually(predicate: Callable[[], bool], timeout: float = 2.0,
                     message: str = "condition not met") -> None:
    """Wait (bounded, real time) for ``predicate``; for effects of background tasks."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(message)
        await asyncio.sleep(0.001)


async def advance(clock: FakeClock, seconds: float, step: float = 0.1) -> None:
    """Move fake time forward in steps, letting tasks react after each one."""
    remaining = seconds
    while remaining > 1e-9:
        dt = min(step, remaining)
        clock.advance(dt)
        remaining -= dt
        await settle()


async def advance_until(clock: FakeClock, predicate: Callable[[], bool], limit: float,
                        step: float = 0.1) -> float:
    """Advance fake time in steps until ``predicate`` holds; the fake time it took.
    Fails if it does not hold within ``limit`` seconds of fake time."""
    start = clock.now()
    await settle()
    while not predicate():
        if clock.now() - start > limit:
            raise AssertionError(f"condition not met within {limit}s of fake time")
        clock.advance(step)
        await settle()
    return clock.now() - start


__all__ = ["FakeClient", "FakeClock", "settle", "eventually", "advance", "advance_until"]
