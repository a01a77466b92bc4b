import asyncio
import contextlib
import re

import pytest

from fakes import FakeClient, FakeClock, advance, advance_until, settle
from minik8s.api.errors import AlreadyExists, Conflict, ServiceUnavailable
from minik8s.runtime import LeaderElector

LEASE = "leases"
MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
# lease_duration=15, renew_deadline=10, retry_period=2: client-go's defaults
DURATION, DEADLINE, RETRY = 15, 10, 2
MAX_RETRY = RETRY * 2.2  # retry_period plus at most 1.2x jitter


class Leading:
    """An on_started_leading callback that records its life."""

    def __init__(self):
        self.started = 0
        self.cancelled = False
        self.stopped = 0
        self.fail = asyncio.Event()

    async def __call__(self):
        self.started += 1
        try:
            await self.fail.wait()
            raise RuntimeError("leader work crashed")
        except asyncio.CancelledError:
            self.cancelled = True
            raise

    def on_stopped(self):
        self.stopped += 1


def make(client, clock, identity, **kw):
    return LeaderElector(client, "controller-manager", "kube-system", identity,
                         lease_duration=DURATION, renew_deadline=DEADLINE, retry_period=RETRY,
                         clock=clock, **kw)


def lease_spec(client):
    return client.stored(LEASE, "controller-manager", "kube-system")["spec"]


@contextlib.asynccontextmanager
async def campaigning(*electors):
    runs = []
    for el in electors:
        leading = Leading()
        task = asyncio.ensure_future(el.run(leading, leading.on_stopped))
        runs.append((task, leading))
    try:
        yield runs
    finally:
        for task, _ in runs:
            task.cancel()
        await asyncio.gather(*(t for t, _ in runs), return_exceptions=True)


def seed_lease(client, holder, renew="2000-01-01T00:00:00.000000Z", transitions=3):
    return client.seed(LEASE, {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "controller-manager", "namespace": "kube-system"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": DURATION,
                 "acquireTime": renew, "renewTime": renew, "leaseTransitions": transitions}})


async def test_first_elector_creates_the_lease_and_keeps_renewing_it():
    client, clock = FakeClient(), FakeClock()
    a = make(client, clock, "a")
    async with campaigning(a) as [(task, leading)]:
        await settle()
        assert a.is_leader and leading.started == 1
        spec = lease_spec(client)
        assert spec["holderIdentity"] == "a" and spec["leaseTransitions"] == 0
        assert spec["leaseDurationSeconds"] == DURATION
        assert MICRO_TIME.match(spec["renewTime"]) and MICRO_TIME.match(spec["acquireTime"])
        rv = client.stored(LEASE, "controller-manager", "kube-system")["metadata"][
            "resourceVersion"]
        await advance(clock, 60, step=0.5)
        assert a.is_leader and not task.done()
        renewed = client.stored(LEASE, "controller-manager", "kube-system")
        assert int(renewed["metadata"]["resourceVersion"]) > int(rv)
        assert renewed["spec"]["acquireTime"] == spec["acquireTime"]
        assert renewed["spec"]["leaseTransitions"] == 0
        assert client.count("update") >= 60 // RETRY - 1


async def test_two_electors_only_one_leads():
    client, clock = FakeClient(), FakeClock()
    a, b = make(client, clock, "a"), make(client, clock, "b")
    async with campaigning(a, b) as runs:
        await advance_until(clock, lambda: a.is_leader or b.is_leader, limit=5)
        for _ in range(200):  # 100 s of fake time: the leader keeps it, the other waits
            assert a.is_leader != b.is_leader
            clock.advance(0.5)
            await settle()
        leader = "a" if a.is_leader else "b"
        assert lease_spec(client)["holderIdentity"] == leader
        assert sorted(leading.started for _, leading in runs) == [0, 1]


async def test_cancelled_leader_releases_and_the_standby_takes_over_at_once():
    client, clock = FakeClient(), FakeClock()
    a = make(client, clock, "a", release_on_cancel=True)
    b = make(client, clock, "b")
    async with campaigning(a) as [(task_a, leading_a)]:
        await settle()
        assert a.is_leader
        async with campaigning(b) as [(task_b, leading_b)]:
            await advance(clock, 20, step=0.5)
            assert not b.is_leader
            task_a.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task_a
            assert leading_a.cancelled and leading_a.stopped == 1 and not a.is_leader
            assert lease_spec(client)["holderIdentity"] == ""
            took = await advance_until(clock, lambda: b.is_leader, limit=MAX_RETRY + 0.5)
            assert took < DURATION  # no waiting for expiry
            assert leading_b.started == 1
            spec = lease_spec(client)
            assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1


async def test_without_release_the_standby_waits_for_the_lease_to_expire():
    client, clock = FakeClient(), FakeClock()
    a, b = make(client, clock, "a"), make(client, clock, "b")
    async with campaigning(a) as [(task_a, _)]:
        await settle()
        async with campaigning(b):
            await advance(clock, 20, step=0.5)
            task_a.cancel()
            await asyncio.gather(task_a, return_exceptions=True)
            assert lease_spec(client)["holderIdentity"] == "a"
            # a renewed at most RETRY before it stopped; b must wait a full duration since
            await advance(clock, DURATION - RETRY - 1, step=0.5)
            assert not b.is_leader
            await advance_until(clock, lambda: b.is_leader, limit=DURATION)
            assert lease_spec(client)["holderIdentity"] == "b"


async def test_leader_whose_renewals_fail_loses_leadership_within_renew_deadline():
    client, clock = FakeClient(), FakeClock()
    a = make(client, clock, "a")
    async with campaigning(a) as [(task, leading)]:
        await advance(clock, 7, step=0.5)
        assert a.is_leader
        last_renewal = clock.now()
        client.fail("get", ServiceUnavailable("apiserver down"))
        client.fail("update", ServiceUnavailable("apiserver down"))
        took = await advance_until(clock, task.done, limit=DURATION, step=0.25)
        # the next renewal is due within RETRY; it may keep trying for DEADLINE, no longer
        assert took <= RETRY + DEADLINE + 0.5
        assert clock.now() - last_renewal < DURATION  # before anyone else could take over
        assert task.result() is None  # run returns: the caller exits
        assert leading.cancelled and leading.stopped == 1 and not a.is_leader


async def test_leader_whose_renewals_hang_loses_leadership_within_renew_deadline():
    client, clock = FakeClient(), FakeClock()
    a = make(client, clock, "a")
    async with campaigning(a) as [(task, leading)]:
        await settle()
        assert a.is_leader
        client.hang("get")
        took = await advance_until(clock, task.done, limit=DURATION, step=0.25)
        assert took <= RETRY + DEADLINE + 0.5
        assert leading.cancelled and not a.is_leader


async def test_takeover_of_an_expired_lease_uses_observed_time_not_renew_time():
    client, clock = FakeClient(), FakeClock()
    seed_lease(client, "ghost")  # renewTime is decades old by the remote clock
    b = make(client, clock, "b")
    async with campaigning(b):
        await settle()
        assert not b.is_leader  # first sighting: the record is assumed fresh
        await advance(clock, DURATION - 1, step=0.5)
        assert not b.is_leader
        await advance_until(clock, lambda: b.is_leader, limit=1 + MAX_RETRY + 0.5)
        spec = lease_spec(client)
        assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 4
        assert spec["acquireTime"] != "2000-01-01T00:00:00.000000Z"


async def test_a_change_of_the_record_restarts_the_observed_expiry():
    client, clock = FakeClient(), FakeClock()
    seed_lease(client, "ghost")
    b = make(client, clock, "b")
    async with campaigning(b):
        await advance(clock, 10, step=0.5)
        lease = client.stored(LEASE, "controller-manager", "kube-system")
        lease = {**lease, "spec": {**lease["spec"], "renewTime": "2000-01-01T00:00:10.000000Z"}}
        await client.update(LEASE, lease)  # the ghost renews (same old remote clock)
        await advance(clock, DURATION - 1, step=0.5)  # 24 s after b first saw the lease
        assert not b.is_leader
        await advance_until(clock, lambda: b.is_leader, limit=DURATION)


async def test_future_remote_renew_time_does_not_block_takeover():
    client, clock = FakeClient(), FakeClock()
    seed_lease(client, "ghost", renew="2999-01-01T00:00:00.000000Z")  # a skewed clock
    b = make(client, clock, "b")
    async with campaigning(b):
        await advance_until(clock, lambda: b.is_leader, limit=DURATION + MAX_RETRY + 0.5)


async def test_create_and_update_conflicts_are_retried():
    client, clock = FakeClient(), FakeClock()
    client.fail("create", AlreadyExists("lost the race"), times=1)
    a = make(client, clock, "a")
    async with campaigning(a):
        await settle()
        assert not a.is_leader
        await advance_until(clock, lambda: a.is_leader, limit=MAX_RETRY + 0.5)

    client2, clock2 = FakeClient(), FakeClock()
    seed_lease(client2, "")  # released: free to take
    client2.fail("update", Conflict("someone wrote first"), times=1)
    b = make(client2, clock2, "b")
    async with campaigning(b):
        await settle()
        assert not b.is_leader
        await advance_until(clock2, lambda: b.is_leader, limit=MAX_RETRY + 0.5)


async def test_crash_of_the_leader_work_is_raised_and_releases():
    client, clock = FakeClient(), FakeClock()
    a = make(client, clock, "a", release_on_cancel=True)
    async with campaigning(a) as [(task, leading)]:
        await settle()
        leading.fail.set()
        await settle()
        with pytest.raises(RuntimeError, match="leader work crashed"):
            await task
        assert leading.stopped == 1 and not a.is_leader
        assert lease_spec(client)["holderIdentity"] == ""


def test_durations_are_validated():
    with pytest.raises(ValueError):
        LeaderElector(FakeClient(), "x", identity="a", lease_duration=10, renew_deadline=10)
    with pytest.raises(ValueError):
        LeaderElector(FakeClient(), "x", identity="a", renew_deadline=2, retry_period=2)
    assert LeaderElector(FakeClient(), "x").identity  # a unique default identity
