"""Leader election over a ``coordination.k8s.io/v1`` Lease, with client-go's semantics.

Several replicas of a controller-manager or scheduler may run; only one may act, or they
would fight over the same objects. The Lease is the lock: the API server's optimistic
concurrency (create fails if it exists, update fails on a stale resourceVersion) makes taking
it atomic. Expiry is judged by the *local* clock from the moment this process last saw the
record change, never by the remote ``renewTime``: clocks of different hosts disagree, but
every process measures durations on its own clock correctly. So a candidate that first sees a
lease waits a full ``leaseDurationSeconds`` of unchanged record before taking over.

The leader renews every ``retry_period``; if no renewal succeeds within ``renew_deadline`` it
stops acting at once, before the lease could have expired for anyone else
(``renew_deadline < lease_duration``), and ``run`` returns so the process can exit and start
over cleanly, as Kubernetes components do.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import socket
import uuid
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Coroutine, TypeVar

from minik8s.api.errors import AlreadyExists, Conflict, NotFound
from minik8s.api.meta import Obj, deepcopy
from minik8s.runtime.workqueue import REAL_CLOCK, Clock

log = logging.getLogger(__name__)

LEASES = "leases.coordination.k8s.io"
JITTER_FACTOR = 1.2

T = TypeVar("T")


def micro_time(dt: datetime | None = None) -> str:
    """RFC 3339 with microseconds, as Kubernetes' ``MicroTime`` serialises."""
    dt = dt or datetime.now(timezone.utc)
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_identity() -> str:
    return f"{socket.gethostname()}_{uuid.uuid4()}"


class LeaderElector:
    """Campaigns for one Lease and runs a callback while holding it."""

    def __init__(self, client: Any, name: str, namespace: str = "kube-system",
                 identity: str | None = None, lease_duration: float = 15,
                 renew_deadline: float = 10, retry_period: float = 2,
                 clock: Clock | None = None, *, release_on_cancel: bool = False,
                 jitter: float = JITTER_FACTOR):
        if not lease_duration > renew_deadline:
            raise ValueError("lease_duration must be greater than renew_deadline")
        if not renew_deadline > retry_period > 0:
            raise ValueError("renew_deadline must be greater than retry_period (> 0)")
        self.client = client
        self.name = name
        self.namespace = namespace
        self.identity = identity or default_identity()
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.release_on_cancel = release_on_cancel
        self.jitter = jitter
        self._clock: Clock = clock or REAL_CLOCK
        self._leading = False
        self._observed_spec: Obj | None = None
        self._observed_time = 0.0
        self._lease: Obj | None = None  # the lease as we last wrote it

    @property
    def is_leader(self) -> bool:
        return self._leading

    @property
    def observed_holder(self) -> str:
        """Who holds the lease as far as this elector last saw ("" when free/unknown)."""
        return (self._observed_spec or {}).get("holderIdentity") or ""

    # --- running --------------------------------------------------------------------

    async def run(self, on_started_leading: Callable[[], Awaitable[Any]],
                  on_stopped_leading: Callable[[], Any] | None = None) -> None:
        """Campaign until elected, then run ``on_started_leading()`` while renewing. Returns
        when leadership is lost (after cancelling that task). If the task fails, its error
        is raised. ``on_stopped_leading`` is called (plain or async) after leading ends,
        however it ends; not if this elector never led."""
        await self._acquire()
        loop = asyncio.get_running_loop()
        self._leading = True
        log.info("%s became leader of lease %s/%s", self.identity, self.namespace, self.name)
        lead = loop.create_task(_as_coroutine(on_started_leading),
                                name=f"leader:{self.namespace}/{self.name}")
        renew = loop.create_task(self._renew_loop(), name=f"lease-renew:{self.name}")
        lost = False
        try:
            waiting: set[asyncio.Task[Any]] = {lead, renew}
            while renew in waiting:
                done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if lead in done and not lead.cancelled() and lead.exception() is not None:
                    raise lead.exception()  # type: ignore[misc]
            renew.result()
            lost = True
            log.error("%s lost lease %s/%s: no renewal within %ss", self.identity,
                      self.namespace, self.name, self.renew_deadline)
        finally:
            self._leading = False
            for task in (renew, lead):
                task.cancel()
            await asyncio.gather(renew, lead, return_exceptions=True)
            if not lost and self.release_on_cancel:
                await self._release()
            if on_stopped_leading is not None:
                try:
                    result = on_stopped_leading()
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("on_stopped_leading of lease %s failed", self.name)

    async def _acquire(self) -> None:
        while True:
            try:
                if await self._with_timeout(self._try_acquire_or_renew(), self.renew_deadline):
                    return
            except TimeoutError:
                log.warning("acquiring lease %s/%s timed out", self.namespace, self.name)
            delay = self.retry_period
            if self.jitter > 0:
                delay += random.random() * self.jitter * self.retry_period
            await self._clock.sleep(delay)

    async def _renew_loop(self) -> None:
        while True:
            await self._clock.sleep(self.retry_period)
            if not await self._renew_within_deadline():
                return

    async def _renew_within_deadline(self) -> bool:
        deadline = self._clock.now() + self.renew_deadline
        while True:
            remaining = deadline - self._clock.now()
            if remaining <= 0:
                return False
            try:
                if await self._with_timeout(self._try_acquire_or_renew(), remaining):
                    return True
            except TimeoutError:
                return False
            remaining = deadline - self._clock.now()
            if remaining <= 0:
                return False
            await self._clock.sleep(min(self.retry_period, remaining))

    # --- one attempt ----------------------------------------------------------------

    async def _try_acquire_or_renew(self) -> bool:
        try:
            return await self._attempt()
        except (Conflict, AlreadyExists) as exc:
            log.debug("lease %s/%s: %s", self.namespace, self.name, exc)
            return False
        except Exception as exc:
            log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
            return False

    async def _attempt(self) -> bool:
        now = self._clock.now()
        stamp = micro_time()
        try:
            lease = await self.client.get(LEASES, self.name, self.namespace)
        except NotFound:
            body = {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {"holderIdentity": self.identity,
                         "leaseDurationSeconds": int(self.lease_duration),
                         "acquireTime": stamp, "renewTime": stamp, "leaseTransitions": 0},
            }
            self._remember(await self.client.create(LEASES, body, self.namespace), now)
            return True

        spec = lease.get("spec") or {}
        if spec != self._observed_spec:
            self._observed_spec = deepcopy(spec)
            self._observed_time = now
        holder = spec.get("holderIdentity") or ""
        duration = spec.get("leaseDurationSeconds") or self.lease_duration
        if holder and holder != self.identity and self._observed_time + duration > now:
            return False  # someone else holds it and we have not seen it expire

        new = deepcopy(lease)
        new_spec = new.setdefault("spec", {})
        new_spec.update(holderIdentity=self.identity,
                        leaseDurationSeconds=int(self.lease_duration), renewTime=stamp)
        if holder == self.identity:
            new_spec.setdefault("acquireTime", stamp)
            new_spec.setdefault("leaseTransitions", 0)
        else:
            new_spec["acquireTime"] = stamp
            new_spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        # metadata.resourceVersion is carried over: a concurrent writer makes this a 409
        self._remember(await self.client.update(LEASES, new, self.namespace), now)
        return True

    def _remember(self, lease: Obj, now: float) -> None:
        self._lease = lease
        self._observed_spec = deepcopy(lease.get("spec") or {})
        self._observed_time = now

    async def _release(self) -> None:
        """Give the lease up so a standby need not wait for it to expire."""
        lease = self._lease
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
            return
        stamp = micro_time()
        new = deepcopy(lease)
        new["spec"].update(holderIdentity="", leaseDurationSeconds=1, acquireTime=stamp,
                           renewTime=stamp)
        try:
            released = await self._with_timeout(
                self.client.update(LEASES, new, self.namespace), self.renew_deadline)
        except Exception as exc:
            log.warning("releasing lease %s/%s failed: %s", self.namespace, self.name, exc)
            return
        self._remember(released, self._clock.now())
        log.info("%s released lease %s/%s", self.identity, self.namespace, self.name)

    async def _with_timeout(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """``coro``'s result, or ``TimeoutError`` after ``timeout`` on the injected clock."""
        task = asyncio.ensure_future(coro)
        timer = asyncio.ensure_future(self._clock.sleep(timeout))
        try:
            await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task.cancelled():
            raise TimeoutError(f"no answer within {timeout}s")
        return task.result()


async def _as_coroutine(fn: Callable[[], Awaitable[Any]]) -> Any:
    return await fn()


__all__ = ["LeaderElector", "LEASES", "micro_time", "default_identity"]
