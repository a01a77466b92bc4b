"""The manager: one process's runnables started in the right order and stopped together.

Controllers must not reconcile from an empty cache (they would "fix" a cluster they have not
seen yet), so informers start and sync first. Leader-only runnables start only after the
Lease is won, so standby replicas keep warm caches but never act. And a component is all or
nothing: if any runnable crashes, or leadership is lost, everything is cancelled and awaited
and ``start()`` raises, so the process exits non-zero and its supervisor restarts it in a
clean state, instead of limping on with a dead controller.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Runnable(Protocol):
    async def start(self) -> None: ...


class LeadershipLost(RuntimeError):
    """The leader election lease was lost; the process should exit."""


class CacheSyncTimeout(RuntimeError):
    """The informers did not sync within the manager's ``sync_timeout``."""


def _name(runnable: Any) -> str:
    return getattr(runnable, "name", None) or type(runnable).__name__


class Manager:
    """Starts informers, then runnables, leader-only ones after winning the election."""

    def __init__(self, *, informers: Any | None = None, elector: Any | None = None,
                 sync_timeout: float | None = None):
        self.informers = informers
        self.elector = elector
        self.sync_timeout = sync_timeout
        self._runnables: list[Any] = []
        self._leader_runnables: list[Any] = []
        self._started = False

    def add(self, runnable: Runnable, leader_only: bool = False) -> None:
        if self._started:
            raise RuntimeError("runnables must be added before the manager starts")
        (self._leader_runnables if leader_only else self._runnables).append(runnable)

    async def start(self) -> None:
        """Run everything until cancelled; raise if a runnable fails or leadership is lost."""
        if self._started:
            raise RuntimeError("manager already started")
        self._started = True
        loop = asyncio.get_running_loop()
        tasks: dict[asyncio.Task[Any], str] = {}
        factory_task: asyncio.Task[Any] | None = None
        try:
            if self.informers is not None:
                factory_task = loop.create_task(self.informers.start(), name="<informers>")
                await self._wait_synced(factory_task)
            for r in self._runnables:
                tasks[loop.create_task(r.start(), name=_name(r))] = _name(r)
            if self.elector is not None:
                tasks[loop.create_task(self.elector.run(self._lead),
                                       name="<leader-election>")] = "<leader-election>"
            else:
                for r in self._leader_runnables:
                    tasks[loop.create_task(r.start(), name=_name(r))] = _name(r)
            watched = set(tasks)
            if factory_task is not None:
                tasks[factory_task] = "<informers>"
                watched.add(factory_task)
            while watched:
                done, watched = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    self._check(task, tasks[task])
        finally:
            await self._stop([t for t in tasks if t is not factory_task])
            if factory_task is not None:
                await self._stop([factory_task])

    async def _wait_synced(self, factory_task: asyncio.Task[Any]) -> None:
        synced = asyncio.ensure_future(self.informers.wait_synced(self.sync_timeout))
        try:
            await asyncio.wait({synced, factory_task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not synced.done():
                synced.cancel()
        if factory_task.done():
            self._check(factory_task, "<informers>")
        if not synced.result():
            raise CacheSyncTimeout(f"caches did not sync within {self.sync_timeout}s")

    def _check(self, task: asyncio.Task[Any], name: str) -> None:
        if task.cancelled():
            raise RuntimeError(f"runnable {name} was cancelled")
        exc = task.exception()
        if exc is not None:
            log.error("runnable %s failed; stopping", name, exc_info=exc)
            raise exc
        if name == "<leader-election>":
            raise LeadershipLost("leader election lost; stopping")
        if name == "<informers>":
            raise RuntimeError("informers stopped")
        log.info("runnable %s finished", name)

    async def _lead(self) -> None:
        """Leader-only runnables, for as long as we lead; one failing stops the rest."""
        loop = asyncio.get_running_loop()
        tasks = {loop.create_task(r.start(), name=_name(r)): _name(r)
                 for r in self._leader_runnables}
        try:
            watched = set(tasks)
            while watched:
                done, watched = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    self._check(task, tasks[task])
            await asyncio.Event().wait()  # all returned: keep leading until cancelled
        finally:
            await self._stop(list(tasks))

    @staticmethod
    async def _stop(tasks: list[asyncio.Task[Any]]) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


__all__ = ["Manager", "Runnable", "LeadershipLost", "CacheSyncTimeout"]
