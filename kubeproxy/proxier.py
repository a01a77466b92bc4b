"""The loop between the informers and a backend: level-triggered, debounced syncs.

Service and Endpoints events only mark the state dirty; the loop then waits a short
debounce (so a rollout's burst of Endpoints updates becomes one sync) and never syncs more
often than ``min_sync_period``, then rebuilds the whole service map from the caches and
hands it to the backend, which makes its rules or listeners exactly that. A full sync also
runs every ``sync_period`` without events, repairing anything changed behind our back
(another program's rules, a missing jump). A failed sync is retried with backoff; the map
is always rebuilt from the caches, so nothing is lost between attempts."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable, Protocol

from kubeproxy.servicemap import ServicePort, build_service_map
from minik8s.cache import InformerFactory

log = logging.getLogger(__name__)


class Backend(Protocol):
    name: str

    async def sync(self, ports: list[ServicePort]) -> None: ...

    async def close(self) -> None: ...


class Proxier:
    def __init__(self, client: Any, backend: Backend, *,
                 informers: InformerFactory | None = None, min_sync_period: float = 0.5,
                 sync_period: float = 30.0, debounce: float = 0.1,
                 before_sync: Callable[[], Awaitable[None]] | None = None):
        self.backend = backend
        self.informers = informers or InformerFactory(client)
        self.services = self.informers.informer("services")
        self.endpoints = self.informers.informer("endpoints")
        self.min_sync_period = min_sync_period
        self.sync_period = sync_period
        self.debounce = debounce
        self.before_sync = before_sync
        self.syncs = 0
        self.last_map: list[ServicePort] = []
        self.synced = asyncio.Event()  # set after the first successful sync
        self._dirty = asyncio.Event()
        for inf in (self.services, self.endpoints):
            inf.add_handler(self._changed, lambda old, new: self._changed(new), self._changed)

    def _changed(self, obj: Any = None) -> None:
        self._dirty.set()

    def service_map(self) -> list[ServicePort]:
        return build_service_map(self.services.list(), self.endpoints.list())

    async def sync_once(self) -> None:
        if self.before_sync is not None:
            await self.before_sync()
        ports = self.service_map()
        started = time.monotonic()
        await self.backend.sync(ports)
        self.syncs += 1
        if ports != self.last_map:
            log.info("%s: synced %d service port(s) in %.0f ms", self.backend.name, len(ports),
                     (time.monotonic() - started) * 1000)
        self.last_map = ports
        self.synced.set()

    async def start(self) -> None:
        informers = asyncio.get_running_loop().create_task(self.informers.start(),
                                                           name="kube-proxy-informers")
        try:
            await self._loop(informers)
        finally:
            informers.cancel()
            await asyncio.gather(informers, return_exceptions=True)

    async def _loop(self, informers: asyncio.Task[None]) -> None:
        while not await self.informers.wait_synced(1.0):
            if informers.done():
                informers.result()
        backoff = 0.5
        last = 0.0
        while True:
            if informers.done():
                informers.result()  # an informer failed for good: end with its error
            self._dirty.clear()
            try:
                await self.sync_once()
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("%s sync failed (retrying in %.1fs): %s", self.backend.name,
                          backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            last = time.monotonic()
            try:
                await asyncio.wait_for(self._dirty.wait(), self.sync_period)
            except asyncio.TimeoutError:
                continue
            await asyncio.sleep(max(self.debounce,
                                    last + self.min_sync_period - time.monotonic()))


__all__ = ["Proxier", "Backend"]
