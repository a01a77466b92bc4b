"""Informers: one list+watch per collection, turned into a local cache and event callbacks.

Every controller wants "the current pods" plus a nudge when they change. Doing a watch per
controller multiplies API-server load and memory, so the factory hands out one shared
informer per (resource, namespace, selectors) and each controller only registers handlers.
Handlers are level-triggered hints (they should only enqueue keys); the store is the truth.

Each handler has its own queue and task, as client-go's ``processorListener`` does: a slow or
failing handler delays only itself, never the watch or the other controllers, and every handler
sees its events in order. A handler registered late first receives ``on_add`` for everything
already cached, so it never misses an object. ``on_delete`` receives the object carried by the
DELETED event, which is the last state known (the final state from a watch, or the cached copy
when a relist found it gone). A watch stream that ends is restarted with a fresh list whose
difference with the cache is delivered as events, so the cache never silently diverges.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from typing import Any, Awaitable, Callable, Mapping, Protocol

from minik8s.api.meta import Obj, key_of
from minik8s.api.registry import REGISTRY, ResourceType
from minik8s.cache.store import IndexFunc, Store

log = logging.getLogger(__name__)

Handler = Callable[..., "Awaitable[None] | None"]


class _Sleeper(Protocol):
    async def sleep(self, seconds: float) -> None: ...


class HandlerRegistration:
    """What ``add_handler`` returns; pass it to ``remove_handler`` to unregister."""

    def __init__(self, informer: "Informer", on_add: Handler | None,
                 on_update: Handler | None, on_delete: Handler | None):
        self._informer = informer
        self.on_add = on_add
        self.on_update = on_update
        self.on_delete = on_delete
        self._pending: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

    def push(self, notification: tuple[Any, ...]) -> None:
        self._pending.put_nowait(notification)

    @property
    def pending(self) -> int:
        return self._pending.qsize()

    async def run(self) -> None:
        while True:
            kind, *args = await self._pending.get()
            fn = {"add": self.on_add, "update": self.on_update, "delete": self.on_delete}[kind]
            if fn is None:
                continue
            try:
                result = fn(*args)
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s handler %s of the %s informer failed", kind,
                              getattr(fn, "__qualname__", fn), self._informer.describe())


class Informer:
    """A shared, watch-fed cache of one collection with event handlers."""

    def __init__(self, client: Any, resource: ResourceType | str, namespace: str | None = None,
                 *, label_selector: str | None = None, field_selector: str | None = None,
                 indexers: Mapping[str, IndexFunc] | None = None,
                 resync_period: float | None = None, clock: _Sleeper | None = None,
                 restart_delay: float = 1.0):
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.resync_period = resync_period
        self.restart_delay = restart_delay
        self.store = Store(indexers)
        self._sleep = clock.sleep if clock is not None else asyncio.sleep
        self._handlers: list[HandlerRegistration] = []
        self._handler_tasks: dict[HandlerRegistration, asyncio.Task[None]] = {}
        self._synced = asyncio.Event()
        self._running = False
        self._relisted: set[str] | None = None

    def describe(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        sel = "".join(f" {k}={v}" for k, v in (("labels", self.label_selector),
                                                 ("fields", self.field_selector)) if v)
        name = self.resource.plural if isinstance(self.resource, ResourceType) else self.resource
        return f"{name}{where}{sel}"

    # --- handlers -------------------------------------------------------------------

    def add_handler(self, on_add: Handler | None = None, on_update: Handler | None = None,
                    on_delete: Handler | None = None) -> HandlerRegistration:
        """Register callbacks (plain or async): ``on_add(obj)``, ``on_update(old, new)``,
        ``on_delete(obj)``. Objects already cached are delivered to ``on_add`` first."""
        reg = HandlerRegistration(self, on_add, on_update, on_delete)
        for obj in self.store.list():
            reg.push(("add", obj))
        self._handlers.append(reg)
        if self._running:
            self._start_handler(reg)
        return reg

    def remove_handler(self, reg: HandlerRegistration) -> None:
        if reg in self._handlers:
            self._handlers.remove(reg)
        task = self._handler_tasks.pop(reg, None)
        if task is not None:
            task.cancel()

    def _start_handler(self, reg: HandlerRegistration) -> None:
        self._handler_tasks[reg] = asyncio.get_running_loop().create_task(
            reg.run(), name=f"informer-handler:{self.describe()}")

    def _notify(self, *notification: Any) -> None:
        for reg in self._handlers:
            reg.push(notification)

    # --- cache reads ----------------------------------------------------------------

    def get(self, key: str) -> Obj | None:
        return self.store.get_by_key(key)

    def list(self) -> list[Obj]:
        return self.store.list()

    def by_index(self, index_name: str, value: str) -> list[Obj]:
        return self.store.by_index(index_name, value)

    # --- sync -----------------------------------------------------------------------

    @property
    def has_synced(self) -> bool:
        """True once the initial list is in the store."""
        return self._synced.is_set()

    async def wait_synced(self, timeout: float | None = None) -> bool:
        """Wait for the initial list; False if ``timeout`` passed first (like client-go's
        ``WaitForCacheSync``)."""
        try:
            await asyncio.wait_for(self._synced.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    @property
    def running(self) -> bool:
        return self._running

    # --- running --------------------------------------------------------------------

    async def start(self) -> None:
        """Watch and dispatch until cancelled. Errors the client does not recover from
        itself (403, 404, ...) end it with that error."""
        if self._running:
            raise RuntimeError(f"informer {self.describe()} already started")
        self._running = True
        resync: asyncio.Task[None] | None = None
        try:
            for reg in self._handlers:
                self._start_handler(reg)
            if self.resync_period:
                resync = asyncio.get_running_loop().create_task(
                    self._resync_loop(), name=f"informer-resync:{self.describe()}")
            await self._watch_loop()
        finally:
            self._running = False
            tasks = list(self._handler_tasks.values())
            if resync is not None:
                tasks.append(resync)
            self._handler_tasks.clear()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch_loop(self) -> None:
        while True:
            self._relisted = set()
            stream = self.client.watch_forever(
                self.resource, self.namespace, all_namespaces=self.namespace is None,
                label_selector=self.label_selector, field_selector=self.field_selector)
            async with contextlib.aclosing(stream):
                async for event in stream:
                    self._apply(event)
            log.warning("watch of %s ended; listing again in %.1fs", self.describe(),
                        self.restart_delay)
            await self._sleep(self.restart_delay)

    def _apply(self, event: Obj) -> None:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "SYNCED":
            if self._relisted is not None:
                # a fresh stream lists everything first: what it did not list is gone
                for key in self.store.keys():
                    if key not in self._relisted:
                        gone = self.store.delete(key)
                        self._notify("delete", gone)
                self._relisted = None
            self._synced.set()
            return
        if kind in ("ADDED", "MODIFIED"):
            key = key_of(obj)
            if self._relisted is not None:
                self._relisted.add(key)
            old = self.store.get_by_key(key)
            self.store.add(obj)
            if old is None:
                self._notify("add", obj)
            else:
                self._notify("update", old, obj)
        elif kind == "DELETED":
            old = self.store.delete(key_of(obj))
            last = obj if obj.get("metadata") else old
            if last is not None:
                self._notify("delete", last)
        # BOOKMARK and anything unknown carry no object change

    async def _resync_loop(self) -> None:
        assert self.resync_period
        while True:
            await self._sleep(self.resync_period)
            if self.has_synced:
                for obj in self.store.list():
                    self._notify("update", obj, obj)


def _resource_key(resource: ResourceType | str) -> Any:
    if isinstance(resource, ResourceType):
        return resource
    return REGISTRY.resolve(resource) or resource


class InformerFactory:
    """One informer per (resource, namespace, selectors), shared by every controller."""

    def __init__(self, client: Any, *, resync_period: float | None = None,
                 clock: _Sleeper | None = None):
        self.client = client
        self.resync_period = resync_period
        self.clock = clock
        self._informers: dict[tuple[Any, ...], Informer] = {}
        self._tasks: dict[Informer, asyncio.Task[None]] = {}
        self._running = False
        self._crashed: asyncio.Future[None] | None = None

    def informer(self, resource: ResourceType | str, namespace: str | None = None, *,
                 label_selector: str | None = None, field_selector: str | None = None,
                 indexers: Mapping[str, IndexFunc] | None = None,
                 resync_period: float | None = None) -> Informer:
        """The shared informer for this collection, created on first use. Extra indexers
        are added to it; the shortest resync period asked for wins."""
        key = (_resource_key(resource), namespace, label_selector or None, field_selector or None)
        inf = self._informers.get(key)
        period = resync_period if resync_period is not None else self.resync_period
        if inf is None:
            inf = Informer(self.client, resource, namespace, label_selector=label_selector,
                           field_selector=field_selector, indexers=indexers,
                           resync_period=period, clock=self.clock)
            self._informers[key] = inf
            if self._running:
                self._launch(inf)
        else:
            if indexers:
                inf.store.add_indexers(indexers)
            if period and (not inf.resync_period or period < inf.resync_period):
                if inf.running and not inf.resync_period:
                    log.warning("informer %s already runs without resync", inf.describe())
                else:
                    inf.resync_period = period
        return inf

    @property
    def informers(self) -> list[Informer]:
        return list(self._informers.values())

    def _launch(self, inf: Informer) -> None:
        task = asyncio.get_running_loop().create_task(
            inf.start(), name=f"informer:{inf.describe()}")
        self._tasks[inf] = task

        def finished(t: asyncio.Task[None]) -> None:
            if self._crashed is not None and not self._crashed.done() and not t.cancelled():
                exc = t.exception()
                if exc is not None:
                    self._crashed.set_exception(exc)
                else:
                    self._crashed.set_exception(
                        RuntimeError(f"informer {inf.describe()} stopped"))

        task.add_done_callback(finished)

    async def start(self) -> None:
        """Run every informer, including ones created later, until cancelled; if one of
        them fails, stop the others and raise its error."""
        if self._running:
            raise RuntimeError("informer factory already started")
        self._running = True
        self._crashed = asyncio.get_running_loop().create_future()
        try:
            for inf in list(self._informers.values()):
                self._launch(inf)
            await self._crashed
        finally:
            self._running = False
            tasks = list(self._tasks.values())
            self._tasks.clear()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if not self._crashed.done():
                self._crashed.cancel()
            self._crashed = None

    @property
    def has_synced(self) -> bool:
        return all(inf.has_synced for inf in self._informers.values())

    async def wait_synced(self, timeout: float | None = None) -> bool:
        """Wait until every informer created so far has synced; False on timeout."""
        informers = list(self._informers.values())
        if not informers:
            return True
        results = await asyncio.gather(*(inf.wait_synced(timeout) for inf in informers))
        return all(results)


__all__ = ["Informer", "InformerFactory", "HandlerRegistration", "Handler"]
