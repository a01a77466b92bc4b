"""The watch cache: one etcd watch per resource type, fanned out to every client watch.

Each cache keeps the current objects of its type and a window of recent events. A client
watch from version N replays the window's events after N and then receives live ones, so a
thousand watchers cost etcd one stream. A version older than the window is answered with
410 Expired, and the client re-lists, as with the Kubernetes API server. A watcher that does
not keep up (its queue is full) is closed rather than slowing everyone else down; it resumes
from its last version like any dropped watch.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from dataclasses import dataclass, field
from typing import Callable

from minik8s.api.errors import Gone
from minik8s.api.meta import Obj, namespace_of
from minik8s.api.registry import ResourceType

from apiserver.storage import Storage, WatchEvent

log = logging.getLogger(__name__)

Predicate = Callable[[Obj], bool]


@dataclass(frozen=True)
class CachedEvent:
    revision: int
    type: str  # ADDED | MODIFIED | DELETED
    obj: Obj
    prev: Obj | None
    # ``obj`` as JSON, encoded by the first watcher that sends it and shared by the rest.
    _json: list[bytes] = field(default_factory=list, compare=False, repr=False)

    def line(self, kind: str) -> bytes:
        """The watch stream line for ``obj`` as a ``kind`` event: the bytes of
        ``json.dumps({"type": kind, "object": obj}, separators=(",", ":")) + "\n"``,
        with the object encoded once for all watchers."""
        if not self._json:
            self._json.append(json.dumps(self.obj, separators=(",", ":")).encode())
        return _LINE_PREFIX[kind] + self._json[0] + b"}\n"


_LINE_PREFIX = {k: b'{"type":' + json.dumps(k).encode() + b',"object":'
                for k in ("ADDED", "MODIFIED", "DELETED")}


_CLOSED = object()


class CacheWatcher:
    """One client's view: its filter and a bounded queue of events to send."""

    def __init__(self, cache: "WatchCache", namespace: str | None, predicate: Predicate,
                 since: int, bookmarks: bool, capacity: int):
        self.cache = cache
        self.namespace = namespace
        self.predicate = predicate
        self.since = since
        self.bookmarks = bookmarks
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=capacity)
        self.closed = False

    def _visible(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        if self.namespace and namespace_of(obj) != self.namespace:
            return False
        return self.predicate(obj)

    def offer(self, ev: CachedEvent) -> None:
        """Translate the event through this watcher's filter (an object that stops matching
        is DELETED for it, one that starts matching is ADDED) and queue it."""
        if self.closed or ev.revision <= self.since:
            return
        now, before = self._visible(ev.obj), self._visible(ev.prev)
        if ev.type == "MODIFIED":
            if now and not before:
                self._put(("ADDED", ev.obj, ev))
            elif before and not now:
                self._put(("DELETED", ev.obj, ev))
            elif now:
                self._put(("MODIFIED", ev.obj, ev))
        elif now:
            self._put((ev.type, ev.obj, ev))

    def offer_bookmark(self, revision: int) -> None:
        if self.bookmarks and not self.closed and self.queue.empty():
            self._put(("BOOKMARK", revision, None))

    def _put(self, item: object) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            log.info("closing a slow watcher of %s", self.cache.rt.qualified)
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.cache.watchers.discard(self)
        # Make room for the sentinel so the reader wakes up even from a full queue.
        while self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(_CLOSED)

    async def next(self, timeout: float | None) -> tuple[str, object, CachedEvent | None] | None:
        """The next (type, object|revision, cached event or None), ("TIMEOUT", None, None)
        on timeout, or None when closed."""
        queue = self.queue
        if not queue.empty():  # no timer and no task switch when events are waiting
            item = queue.get_nowait()
        else:
            try:
                item = await asyncio.wait_for(queue.get(), timeout)
            except asyncio.TimeoutError:
                return ("TIMEOUT", None, None)
        if item is _CLOSED:
            return None
        return item  # type: ignore[return-value]

    def ready(self, limit: int) -> tuple[list[tuple[str, object, CachedEvent | None]], bool]:
        """Up to ``limit`` further items already queued, without waiting; and whether the
        watcher closed behind them."""
        items = []
        queue = self.queue
        while len(items) < limit and not queue.empty():
            item = queue.get_nowait()
            if item is _CLOSED:
                return items, True
            items.append(item)
        return items, False


class WatchCache:
    def __init__(self, storage: Storage, rt: ResourceType, *, window: int = 10_000,
                 watcher_queue: int = 1_000):
        self.storage = storage
        self.rt = rt
        self.prefix = rt.storage_prefix()
        self.objects: dict[str, Obj] = {}
        self.events: collections.deque[CachedEvent] = collections.deque()
        self.window = window
        self.watcher_queue = watcher_queue
        self.window_start = 0  # events after this revision are all in ``events``
        self.revision = 0  # last revision applied
        self.watchers: set[CacheWatcher] = set()
        self.ready = asyncio.Event()

    async def run(self) -> None:
        """List, then follow etcd; re-list when the stream cannot be resumed. Runs until
        cancelled."""
        backoff = 0.2
        while True:
            try:
                if not self.ready.is_set():
                    await self._relist()
                async for ev in self.storage.watch(self.prefix, self.revision + 1):
                    self._apply(ev)
                    backoff = 0.2
            except asyncio.CancelledError:
                raise
            except Gone:
                log.warning("watch cache of %s fell behind compaction; re-listing",
                            self.rt.qualified)
                self._reset()
            except Exception as exc:  # etcd unreachable: retry, resuming where we were
                log.warning("watch cache of %s: %s; retrying", self.rt.qualified, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _reset(self) -> None:
        self.ready.clear()
        for w in list(self.watchers):
            w.close()

    async def _relist(self) -> None:
        objects: dict[str, Obj] = {}
        start_after = None
        revision = 0
        while True:
            items, rev, more, last = await self.storage.list(
                self.prefix, start_after=start_after, limit=1000, revision=revision)
            revision = revision or rev
            for st in items:
                objects[_key_suffix(self.prefix, st.obj)] = st.obj
            if not more:
                break
            start_after = last
        self.objects = objects
        self.events.clear()
        self.revision = self.window_start = revision
        self.ready.set()

    def _apply(self, ev: WatchEvent) -> None:
        key = ev.key[len(self.prefix):]
        prev = self.objects.get(key)
        if ev.kind == "PUT":
            assert ev.obj is not None
            self.objects[key] = ev.obj
            cached = CachedEvent(ev.revision, "MODIFIED" if prev is not None else "ADDED",
                                 ev.obj, prev)
        else:
            self.objects.pop(key, None)
            last = ev.obj or prev
            if last is None:
                self.revision = ev.revision
                return
            gone = {**last, "metadata": {**last.get("metadata", {}),
                                         "resourceVersion": str(ev.revision)}}
            cached = CachedEvent(ev.revision, "DELETED", gone, None)
        self.revision = ev.revision
        self.events.append(cached)
        if len(self.events) > self.window:
            self.window_start = self.events.popleft().revision
        for w in list(self.watchers):
            w.offer(cached)

    def watch(self, namespace: str | None, resource_version: int | None, predicate: Predicate,
              *, bookmarks: bool = False) -> CacheWatcher:
        """A watcher from ``resource_version`` (None or 0: synthetic ADDED events for the
        current state first, then changes)."""
        if resource_version:
            if resource_version < self.window_start:
                raise Gone(f"too old resource version: {resource_version} "
                           f"({self.window_start})")
            w = CacheWatcher(self, namespace, predicate, resource_version, bookmarks,
                             self.watcher_queue + len(self.events))
            for ev in self.events:
                if ev.revision > resource_version:
                    w.offer(ev)
        else:
            initial = self.list(namespace, predicate)
            w = CacheWatcher(self, namespace, predicate, self.revision, bookmarks,
                             self.watcher_queue + len(initial))
            for obj in initial:
                w._put(("ADDED", obj, None))
        self.watchers.add(w)
        return w

    def list(self, namespace: str | None, predicate: Predicate) -> list[Obj]:
        prefix = f"{namespace}/" if namespace and self.rt.namespaced else ""
        return [o for k, o in sorted(self.objects.items())
                if k.startswith(prefix) and predicate(o)]

    def bookmark(self) -> None:
        for w in list(self.watchers):
            w.offer_bookmark(self.revision)

    def close_all(self) -> None:
        for w in list(self.watchers):
            w.close()


def _key_suffix(prefix: str, obj: Obj) -> str:
    md = obj.get("metadata") or {}
    ns = md.get("namespace")
    return f"{ns}/{md.get('name')}" if ns else md.get("name", "")


class WatchCaches:
    """All caches of the server, one per resource type, with a periodic bookmark tick."""

    def __init__(self, storage: Storage, types: list[ResourceType], **kw: int):
        self.caches = {rt: WatchCache(storage, rt, **kw) for rt in types}
        self._tasks: list[asyncio.Task] = []

    def __getitem__(self, rt: ResourceType) -> WatchCache:
        return self.caches[rt]

    async def start(self, bookmark_interval: float = 5.0) -> None:
        self._tasks = [asyncio.create_task(c.run(), name=f"watchcache-{rt.qualified}")
                       for rt, c in self.caches.items()]
        self._tasks.append(asyncio.create_task(self._bookmarks(bookmark_interval)))
        await asyncio.gather(*(c.ready.wait() for c in self.caches.values()))

    async def _bookmarks(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            for c in self.caches.values():
                c.bookmark()

    async def stop(self) -> None:
        for c in self.caches.values():
            c.close_all()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


__all__ = ["WatchCache", "WatchCaches", "CacheWatcher", "CachedEvent"]
