"""The reconcile loop every controller shares, so retry policy lives in exactly one place.

A controller author writes only ``reconcile(key)``: read desired and observed state from the
caches, make one step of progress, return. This module decides what happens next, with
controller-runtime's rules: an exception re-queues the key with per-item exponential backoff;
a 409 (the cache was stale, or someone else wrote first) does the same without an error log,
because it is expected and harmless; NotFound escaping reconcile means the object is gone and
there is nothing left to do; ``Result(requeue_after=...)`` waits for time to pass without
counting as a failure. Event handlers only enqueue keys; objects a controller owns enqueue
their owner's key.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol, Union, runtime_checkable

from minik8s.api.errors import NotFound, StatusError
from minik8s.api.meta import Obj, controller_of, key_of, namespace_of
from minik8s.runtime.workqueue import ShutDown, WorkQueue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    """What a reconcile asks for next. ``requeue_after`` (seconds, > 0) wins over
    ``requeue``; a zero or negative ``requeue_after`` counts as unset, as in
    controller-runtime."""

    requeue: bool = False
    requeue_after: float | None = None


@runtime_checkable
class Reconciler(Protocol):
    async def reconcile(self, key: str) -> Result | None: ...


ReconcileFunc = Callable[[str], Awaitable[Union[Result, None]]]


class Controller:
    """Workers that take keys off a work queue and reconcile them."""

    def __init__(self, name: str, reconciler: Reconciler | ReconcileFunc,
                 queue: WorkQueue | None = None, workers: int = 1):
        if workers < 1:
            raise ValueError("a controller needs at least one worker")
        self.name = name
        self.reconciler = reconciler
        self._reconcile: ReconcileFunc = (reconciler.reconcile
                                          if hasattr(reconciler, "reconcile") else reconciler)
        self.queue = queue if queue is not None else WorkQueue(name)
        self.workers = workers
        self.log = logging.getLogger(f"{__name__}.{name}")

    # --- enqueueing (what event handlers call) --------------------------------------

    def enqueue_key(self, key: str) -> None:
        self.queue.add(key)

    def enqueue(self, obj: Obj) -> None:
        """Queue the object's ``namespace/name``. Usable as any informer callback."""
        self.queue.add(key_of(obj))

    def enqueue_after(self, obj_or_key: Obj | str, delay: float) -> None:
        key = obj_or_key if isinstance(obj_or_key, str) else key_of(obj_or_key)
        self.queue.add_after(key, delay)

    def enqueue_owner(self, obj: Obj, owner_kind: str) -> str | None:
        """Queue the key of the object's controlling owner if it is a ``owner_kind``
        (owners live in the object's namespace); the key queued, or None."""
        ref = controller_of(obj)
        if not ref or ref.get("kind") != owner_kind or not ref.get("name"):
            return None
        ns = namespace_of(obj)
        key = f"{ns}/{ref['name']}" if ns else ref["name"]
        self.queue.add(key)
        return key

    # --- the loop -------------------------------------------------------------------

    async def start(self) -> None:
        """Run ``workers`` workers until cancelled (or until the queue is shut down)."""
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(self._worker(), name=f"controller:{self.name}:{i}")
                 for i in range(self.workers)]
        try:
            await asyncio.gather(*tasks)
        finally:
            self.queue.shutdown()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _worker(self) -> None:
        while True:
            try:
                await self.process_next()
            except ShutDown:
                return

    async def process_next(self) -> str:
        """Take one key, reconcile it and apply the retry policy; the key processed.
        Raises ``ShutDown`` when the queue is shut down and empty."""
        key = await self.queue.get()
        try:
            await self._process(key)
        finally:
            self.queue.done(key)
        return key

    async def _process(self, key: Any) -> None:
        queue = self.queue
        try:
            result = await self._reconcile(key)
        except asyncio.CancelledError:
            raise
        except NotFound:
            self.log.debug("reconcile %s: not found; done", key)
            queue.forget(key)
            return
        except StatusError as exc:
            if exc.code == 409:  # Conflict or AlreadyExists: our cache lagged; try again
                self.log.debug("reconcile %s: %s; requeued", key, exc)
            else:
                self.log.error("reconcile %s failed: %s", key, exc, exc_info=True)
            queue.add_rate_limited(key)
            return
        except Exception:
            self.log.exception("reconcile %s failed", key)
            queue.add_rate_limited(key)
            return
        if result is not None and not isinstance(result, Result):
            self.log.error("reconcile %s returned %r, not a Result; ignored", key, result)
            result = None
        if result is not None and result.requeue_after is not None and result.requeue_after > 0:
            queue.forget(key)
            queue.add_after(key, result.requeue_after)
        elif result is not None and result.requeue:
            queue.add_rate_limited(key)
        else:
            queue.forget(key)


__all__ = ["Controller", "Reconciler", "ReconcileFunc", "Result"]
