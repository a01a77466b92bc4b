"""The queue between event handlers and reconcile workers, with client-go's guarantees.

Handlers enqueue keys, never objects, so a burst of events for one object turns into one
reconcile of its latest state (adds of a waiting key collapse). A key is never handed to two
workers at once: if it is added while being processed it is only marked dirty and comes back
after ``done()``, so reconcilers need no locking of their own. Failures back off per item,
exponentially, in one place, instead of every controller inventing a retry loop; delayed adds
run off one timer task on an injectable clock so tests can advance time instead of sleeping.

``get()`` raises ``ShutDown`` once the queue has been shut down *and* drained, which ends a
worker loop without a sentinel check after every call.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections import deque
from typing import Hashable, Protocol

log = logging.getLogger(__name__)

DEFAULT_BASE_DELAY = 0.005
DEFAULT_MAX_DELAY = 1000.0


class ShutDown(Exception):
    """The queue was shut down and holds nothing more to hand out."""


class Clock(Protocol):
    """Monotonic seconds and a way to wait for them to pass."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


REAL_CLOCK = RealClock()


class RateLimiter(Protocol):
    def when(self, item: Hashable) -> float: ...

    def forget(self, item: Hashable) -> None: ...

    def num_requeues(self, item: Hashable) -> int: ...


class ItemExponentialFailureRateLimiter:
    """``base_delay * 2**failures``, capped at ``max_delay``, counted per item."""

    def __init__(self, base_delay: float = DEFAULT_BASE_DELAY,
                 max_delay: float = DEFAULT_MAX_DELAY):
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._failures: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        exp = self._failures.get(item, 0)
        self._failures[item] = exp + 1
        if exp >= 1024:  # 2**exp would overflow a float; far past any cap anyway
            return self.max_delay
        return min(self.base_delay * 2.0 ** exp, self.max_delay)

    def forget(self, item: Hashable) -> None:
        self._failures.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        return self._failures.get(item, 0)


class WorkQueue:
    """A deduplicating, rate-limited, delaying work queue of hashable keys."""

    def __init__(self, name: str = "", *, rate_limiter: RateLimiter | None = None,
                 base_delay: float = DEFAULT_BASE_DELAY, max_delay: float = DEFAULT_MAX_DELAY,
                 clock: Clock | None = None):
        self.name = name
        self.rate_limiter: RateLimiter = rate_limiter or ItemExponentialFailureRateLimiter(
            base_delay, max_delay)
        self._clock: Clock = clock or REAL_CLOCK
        self._queue: deque[Hashable] = deque()
        self._dirty: set[Hashable] = set()       # waiting to be processed (queued or re-queue)
        self._processing: set[Hashable] = set()  # handed out, not yet done()
        self._getters: deque[asyncio.Future[None]] = deque()
        self._shutting_down = False
        # delayed adds: key -> deadline, plus a heap with lazily dropped stale entries
        self._deadlines: dict[Hashable, float] = {}
        self._heap: list[tuple[float, int, Hashable]] = []
        self._seq = itertools.count()
        self._timer: asyncio.Task[None] | None = None
        self._timer_wakeup = asyncio.Event()

    # --- basic queue ----------------------------------------------------------------

    def add(self, key: Hashable) -> None:
        """Queue ``key`` unless it is already waiting; if it is being processed it is
        queued again once ``done(key)`` is called."""
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return
        self._queue.append(key)
        self._wake_one()

    async def get(self) -> Hashable:
        """The next key; it is now being processed until ``done(key)``. Raises ``ShutDown``
        when the queue has been shut down and is empty."""
        while not self._queue:
            if self._shutting_down:
                raise ShutDown(self.name)
            waiter = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # pass on a wake-up we were given but cannot use
                else:
                    try:
                        self._getters.remove(waiter)
                    except ValueError:
                        pass
                raise
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: Hashable) -> None:
        """Processing of ``key`` finished; re-queue it if it was added meanwhile."""
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._wake_one()

    def shutdown(self) -> None:
        """Stop taking adds; getters drain what is queued, then get ``ShutDown``."""
        self._shutting_down = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._deadlines.clear()
        self._heap.clear()
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def __len__(self) -> int:
        """Keys waiting to be handed out (not counting processing or delayed ones)."""
        return len(self._queue)

    def len(self) -> int:
        return len(self._queue)

    def is_processing(self, key: Hashable) -> bool:
        return key in self._processing

    def _wake_one(self) -> None:
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    # --- rate limiting --------------------------------------------------------------

    def add_rate_limited(self, key: Hashable) -> None:
        """Add after the item's backoff, which doubles with every call until ``forget``."""
        if self._shutting_down:
            return
        self.add_after(key, self.rate_limiter.when(key))

    def forget(self, key: Hashable) -> None:
        """The key succeeded: its next failure starts from the base delay again."""
        self.rate_limiter.forget(key)

    def num_requeues(self, key: Hashable) -> int:
        return self.rate_limiter.num_requeues(key)

    # --- delaying -------------------------------------------------------------------

    def add_after(self, key: Hashable, delay: float) -> None:
        """Add once ``delay`` seconds have passed; a key already waiting for an earlier
        time keeps it."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        deadline = self._clock.now() + delay
        current = self._deadlines.get(key)
        if current is not None and current <= deadline:
            return
        self._deadlines[key] = deadline
        heapq.heappush(self._heap, (deadline, next(self._seq), key))
        if self._timer is None or self._timer.done():
            self._timer = asyncio.get_running_loop().create_task(
                self._run_timer(), name=f"workqueue-timer:{self.name}")
        self._timer_wakeup.set()

    def num_delayed(self) -> int:
        return len(self._deadlines)

    def _fire_ready(self) -> None:
        now = self._clock.now()
        while self._heap:
            deadline, _, key = self._heap[0]
            if self._deadlines.get(key) != deadline:
                heapq.heappop(self._heap)  # superseded by an earlier deadline
                continue
            if deadline > now:
                return
            heapq.heappop(self._heap)
            del self._deadlines[key]
            self.add(key)

    async def _run_timer(self) -> None:
        while True:
            self._fire_ready()
            self._timer_wakeup.clear()
            if not self._heap:
                await self._timer_wakeup.wait()
                continue
            sleeper = asyncio.ensure_future(self._clock.sleep(self._heap[0][0] - self._clock.now()))
            woken = asyncio.ensure_future(self._timer_wakeup.wait())
            try:
                await asyncio.wait({sleeper, woken}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                woken.cancel()


__all__ = ["WorkQueue", "ShutDown", "Clock", "RealClock", "REAL_CLOCK", "RateLimiter",
           "ItemExponentialFailureRateLimiter", "DEFAULT_BASE_DELAY", "DEFAULT_MAX_DELAY"]
