import asyncio
import contextlib
import logging

import pytest

from fakes import FakeClient, FakeClock, advance, eventually, settle
from minik8s.api.errors import AlreadyExists, Conflict, NotFound
from minik8s.cache import InformerFactory
from minik8s.runtime import (CacheSyncTimeout, Controller, LeadershipLost, Manager, Reconciler,
                             Result, WorkQueue)


class Scripted:
    """A reconciler that answers each call with the next scripted outcome."""

    def __init__(self, *outcomes):
        self.outcomes = list(outcomes)
        self.keys = []

    async def reconcile(self, key):
        self.keys.append(key)
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def controller(*outcomes, clock=None):
    rec = Scripted(*outcomes)
    return Controller("test", rec, queue=WorkQueue("test", clock=clock or FakeClock())), rec


async def test_success_forgets_the_key():
    clock = FakeClock()
    c, rec = controller(RuntimeError("x"), None, clock=clock)
    c.enqueue_key("ns/a")
    await c.process_next()
    assert c.queue.num_requeues("ns/a") == 1
    await advance(clock, 0.006, step=0.001)  # the retry comes back after 5 ms
    await c.process_next()
    assert rec.keys == ["ns/a", "ns/a"]
    assert c.queue.num_requeues("ns/a") == 0 and c.queue.num_delayed() == 0
    c.queue.shutdown()


async def test_error_requeues_rate_limited_and_logs_the_key(caplog):
    c, _ = controller(RuntimeError("boom"))
    c.enqueue_key("ns/a")
    with caplog.at_level(logging.DEBUG):
        await c.process_next()
    assert c.queue.num_requeues("ns/a") == 1 and c.queue.num_delayed() == 1
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "ns/a" in errors[0].getMessage() and errors[0].exc_info
    c.queue.shutdown()


@pytest.mark.parametrize("exc", [Conflict("stale"), AlreadyExists("exists")])
async def test_409_requeues_rate_limited_without_an_error_log(caplog, exc):
    c, _ = controller(exc)
    c.enqueue_key("ns/a")
    with caplog.at_level(logging.DEBUG):
        await c.process_next()
    assert c.queue.num_requeues("ns/a") == 1 and c.queue.num_delayed() == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    c.queue.shutdown()


async def test_not_found_at_the_top_means_done():
    clock = FakeClock()
    c, _ = controller(RuntimeError("x"), NotFound("gone"), clock=clock)
    c.enqueue_key("ns/a")
    await c.process_next()
    await advance(clock, 0.006, step=0.001)
    await c.process_next()
    assert c.queue.num_requeues("ns/a") == 0
    assert len(c.queue) == 0 and c.queue.num_delayed() == 0
    c.queue.shutdown()


async def test_requeue_after_forgets_and_waits_for_time():
    clock = FakeClock()
    c, rec = controller(RuntimeError("x"), Result(requeue_after=30), clock=clock)
    c.enqueue_key("ns/a")
    await c.process_next()
    await advance(clock, 0.006, step=0.001)
    await c.process_next()
    assert c.queue.num_requeues("ns/a") == 0  # a wait is not a failure
    await advance(clock, 29, step=1)
    assert len(c.queue) == 0
    await advance(clock, 1.5)
    assert len(c.queue) == 1
    c.queue.shutdown()


async def test_requeue_true_is_rate_limited():
    clock = FakeClock()
    c, _ = controller(Result(requeue=True), Result(requeue=True), clock=clock)
    c.enqueue_key("ns/a")
    await c.process_next()
    await advance(clock, 0.006, step=0.001)
    await c.process_next()
    assert c.queue.num_requeues("ns/a") == 2 and c.queue.num_delayed() == 1
    c.queue.shutdown()


async def test_zero_requeue_after_counts_as_unset():
    c, _ = controller(Result(requeue_after=0))
    c.enqueue_key("ns/a")
    await c.process_next()
    assert c.queue.num_delayed() == 0 and len(c.queue) == 0
    c.queue.shutdown()


async def test_enqueue_helpers():
    c, _ = controller()
    c.enqueue({"metadata": {"name": "a", "namespace": "ns"}})
    c.enqueue({"metadata": {"name": "node1"}})
    pod = {"metadata": {"name": "p", "namespace": "ns", "ownerReferences": [
        {"kind": "ReplicaSet", "name": "other", "controller": False},
        {"kind": "ReplicaSet", "name": "rs1", "controller": True},
    ]}}
    assert c.enqueue_owner(pod, "ReplicaSet") == "ns/rs1"
    assert c.enqueue_owner(pod, "StatefulSet") is None
    assert c.enqueue_owner({"metadata": {"name": "x", "namespace": "ns"}}, "ReplicaSet") is None
    keys = [await c.queue.get() for _ in range(len(c.queue))]
    assert keys == ["ns/a", "node1", "ns/rs1"]
    c.queue.shutdown()


async def test_plain_async_function_is_a_reconciler():
    seen = []

    async def reconcile(key):
        seen.append(key)

    c = Controller("fn", reconcile)
    c.enqueue_key("k")
    await c.process_next()
    assert seen == ["k"]
    assert isinstance(Scripted(), Reconciler)
    c.queue.shutdown()


async def test_workers_run_concurrently_but_never_on_the_same_key():
    active: set[str] = set()
    peak = 0
    violations = []
    done = []

    class Slow:
        async def reconcile(self, key):
            nonlocal peak
            if key in active:
                violations.append(key)
            active.add(key)
            peak = max(peak, len(active))
            await asyncio.sleep(0.002)
            active.discard(key)
            done.append(key)

    c = Controller("slow", Slow(), workers=3)
    task = asyncio.ensure_future(c.start())
    for i in range(30):
        c.enqueue_key(f"k{i % 6}")
        await asyncio.sleep(0)
    await eventually(lambda: len(c.queue) == 0 and not active and set(done) == {
        f"k{i}" for i in range(6)})
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert violations == []
    assert peak > 1  # the workers did overlap
    assert c.queue.shutting_down


async def test_failing_key_is_retried_until_it_succeeds():
    clock = FakeClock()
    c, rec = controller(RuntimeError("1"), Conflict("2"), None, clock=clock)
    task = asyncio.ensure_future(c.start())
    c.enqueue_key("ns/a")
    await eventually(lambda: len(rec.keys) == 1)
    await advance(clock, 0.006, step=0.001)  # first backoff: 5 ms
    await eventually(lambda: len(rec.keys) == 2)
    await advance(clock, 0.011, step=0.001)  # second: 10 ms
    await eventually(lambda: len(rec.keys) == 3)
    assert c.queue.num_requeues("ns/a") == 0
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


# --- manager ---------------------------------------------------------------------------


class Probe:
    """A runnable that records when it starts and stops."""

    def __init__(self, name, check=None):
        self.name = name
        self.started = asyncio.Event()
        self.stopped = False
        self.fail = asyncio.Event()
        self.check = check
        self.saw = None

    async def start(self):
        if self.check:
            self.saw = self.check()
        self.started.set()
        try:
            await self.fail.wait()
            raise RuntimeError(f"{self.name} crashed")
        finally:
            self.stopped = True


class FakeElector:
    def __init__(self):
        self.win = asyncio.Event()
        self.lose = asyncio.Event()

    async def run(self, on_started_leading, on_stopped_leading=None):
        await self.win.wait()
        lead = asyncio.ensure_future(on_started_leading())
        lose = asyncio.ensure_future(self.lose.wait())
        try:
            done, _ = await asyncio.wait({lead, lose}, return_when=asyncio.FIRST_COMPLETED)
            if lead in done:
                lead.result()
        finally:
            lead.cancel()
            lose.cancel()
            await asyncio.gather(lead, lose, return_exceptions=True)


async def test_manager_syncs_caches_before_starting_runnables():
    client = FakeClient()
    client.seed("pods", {"metadata": {"name": "a", "namespace": "default"}})
    factory = InformerFactory(client)
    pods = factory.informer("pods")
    probe = Probe("p", check=lambda: (pods.has_synced, pods.store.keys()))
    mgr = Manager(informers=factory)
    mgr.add(probe)
    task = asyncio.ensure_future(mgr.start())
    await asyncio.wait_for(probe.started.wait(), 2)
    assert probe.saw == (True, ["default/a"])
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert probe.stopped and client.watchers("pods") == 0


async def test_manager_without_elector_starts_leader_only_runnables_at_once():
    mgr = Manager()
    a, b = Probe("a"), Probe("b")
    mgr.add(a)
    mgr.add(b, leader_only=True)
    task = asyncio.ensure_future(mgr.start())
    await asyncio.wait_for(asyncio.gather(a.started.wait(), b.started.wait()), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert a.stopped and b.stopped


async def test_manager_starts_leader_only_runnables_after_winning_and_stops_on_loss():
    elector = FakeElector()
    mgr = Manager(elector=elector)
    always, leader = Probe("always"), Probe("leader")
    mgr.add(always)
    mgr.add(leader, leader_only=True)
    task = asyncio.ensure_future(mgr.start())
    await asyncio.wait_for(always.started.wait(), 2)
    await settle()
    assert not leader.started.is_set()
    elector.win.set()
    await asyncio.wait_for(leader.started.wait(), 2)
    elector.lose.set()
    with pytest.raises(LeadershipLost):
        await asyncio.wait_for(task, 2)
    assert leader.stopped and always.stopped


async def test_manager_stops_everything_and_raises_when_a_runnable_crashes(caplog):
    client = FakeClient()
    factory = InformerFactory(client)
    factory.informer("pods")
    elector = FakeElector()
    elector.win.set()
    mgr = Manager(informers=factory, elector=elector)
    ok, bad, leader = Probe("ok"), Probe("bad"), Probe("leader")
    mgr.add(ok)
    mgr.add(bad)
    mgr.add(leader, leader_only=True)
    task = asyncio.ensure_future(mgr.start())
    await asyncio.wait_for(asyncio.gather(ok.started.wait(), bad.started.wait(),
                                          leader.started.wait()), 2)
    with caplog.at_level(logging.ERROR, logger="minik8s.runtime.manager"):
        bad.fail.set()
        with pytest.raises(RuntimeError, match="bad crashed"):
            await asyncio.wait_for(task, 2)
    assert ok.stopped and leader.stopped
    assert "bad" in caplog.text
    assert client.watchers("pods") == 0


async def test_manager_raises_when_a_leader_only_runnable_crashes():
    elector = FakeElector()
    elector.win.set()
    mgr = Manager(elector=elector)
    other, leader = Probe("other"), Probe("leader")
    mgr.add(other)
    mgr.add(leader, leader_only=True)
    task = asyncio.ensure_future(mgr.start())
    await asyncio.wait_for(leader.started.wait(), 2)
    leader.fail.set()
    with pytest.raises(RuntimeError, match="leader crashed"):
        await asyncio.wait_for(task, 2)
    assert other.stopped


async def test_manager_sync_timeout():
    client = FakeClient()
    client.hang("watch")
    factory = InformerFactory(client)
    factory.informer("pods")
    probe = Probe("p")
    mgr = Manager(informers=factory, sync_timeout=0.05)
    mgr.add(probe)
    with pytest.raises(CacheSyncTimeout):
        await asyncio.wait_for(mgr.start(), 2)
    assert not probe.started.is_set()


async def test_manager_runs_a_controller_fed_by_an_informer():
    client = FakeClient()
    client.seed("pods", {"metadata": {"name": "a", "namespace": "default"}})
    factory = InformerFactory(client)
    pods = factory.informer("pods")
    seen = []

    class Echo:
        async def reconcile(self, key):
            obj = pods.get(key)
            if obj is None:
                raise NotFound(key)
            seen.append((key, obj["metadata"]["resourceVersion"]))

    ctrl = Controller("echo", Echo(), workers=2)
    pods.add_handler(on_add=ctrl.enqueue, on_update=lambda old, new: ctrl.enqueue(new),
                     on_delete=ctrl.enqueue)
    mgr = Manager(informers=factory)
    mgr.add(ctrl)
    task = asyncio.ensure_future(mgr.start())
    await eventually(lambda: seen == [("default/a", "1")])
    await client.patch("pods", "a", {"metadata": {"labels": {"x": "y"}}})
    await eventually(lambda: seen[-1] == ("default/a", "2"))
    await client.delete("pods", "a")
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ctrl.queue.num_requeues("default/a") == 0
