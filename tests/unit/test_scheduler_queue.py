"""The scheduling queue: priority then FIFO, backoff, and flushing on cluster changes."""

from __future__ import annotations

import asyncio

import pytest

from fakes import FakeClock
from scheduler.queue import (ASSIGNED_POD_DELETE, NODE_ADD, NODE_UPDATE, QueueClosed,
                             SchedulingQueue, pod_updated)
from test_scheduler_plugins import pod


def key(p: dict) -> str:
    return p["metadata"]["uid"]


async def pop_names(q: SchedulingQueue, n: int) -> list[str]:
    out = []
    for _ in range(n):
        qp = await asyncio.wait_for(q.pop(), 1)
        out.append(qp.name)
        q.done(qp.key)
    return out


async def test_higher_priority_first_then_fifo():
    clock = FakeClock()
    q = SchedulingQueue(clock=clock)
    for name, prio in [("a", 0), ("b", 10), ("c", 0), ("d", 10), ("e", 5)]:
        q.add(pod(name, priority=prio))
        clock.advance(0.001)
    assert await pop_names(q, 5) == ["b", "d", "e", "a", "c"]


async def test_pop_waits_for_a_pod_and_close_ends_it():
    q = SchedulingQueue(clock=FakeClock())
    waiter = asyncio.ensure_future(q.pop())
    await asyncio.sleep(0)
    assert not waiter.done()
    q.add(pod("a"))
    assert (await asyncio.wait_for(waiter, 1)).name == "a"
    closed = asyncio.ensure_future(q.pop())
    await asyncio.sleep(0)
    q.close()
    with pytest.raises(QueueClosed):
        await asyncio.wait_for(closed, 1)


async def test_unschedulable_pod_waits_for_a_cluster_change():
    clock = FakeClock()
    q = SchedulingQueue(clock=clock)
    p = pod("a")
    q.add(p)
    qp = await q.pop()
    q.add_unschedulable(qp, {"NodeResourcesFit"})
    assert q.where(key(p)) == "unschedulable"
    clock.advance(60)
    q.flush_backoff_completed()
    assert q.where(key(p)) == "unschedulable"  # time alone does not bring it back
    assert q.move_all_to_active_or_backoff(NODE_ADD) == 1
    assert q.where(key(p)) == "active"          # its 1 s backoff is long over


async def test_flush_goes_to_backoff_while_backing_off():
    clock = FakeClock()
    q = SchedulingQueue(clock=clock)
    p = pod("a")
    q.add(p)
    q.add_unschedulable(await q.pop(), {"NodeResourcesFit"})
    clock.advance(0.5)
    q.move_all_to_active_or_backoff(NODE_UPDATE)
    assert q.where(key(p)) == "backoff"
    clock.advance(0.4)
    assert q.flush_backoff_completed() == 0
    clock.advance(0.2)
    assert q.flush_backoff_completed() == 1
    assert q.where(key(p)) == "active"


async def test_backoff_doubles_per_attempt_up_to_ten_seconds():
    clock = FakeClock()
    q = SchedulingQueue(clock=clock)
    p = pod("a")
    q.add(p)
    durations = []
    for _ in range(7):
        qp = await q.pop()
        durations.append(q.backoff_duration(qp))
        q.add_backoff(qp)
        clock.advance(q.backoff_duration(qp))
        assert q.flush_backoff_completed() == 1
    assert durations == [1, 2, 4, 8, 10, 10, 10]


async def test_cluster_events_only_move_pods_they_may_help():
    clock = FakeClock()
    q = SchedulingQueue(clock=clock)
    cpu, selector = pod("cpu"), pod("sel")
    q.add(cpu)
    q.add(selector)
    q.add_unschedulable(await q.pop(), {"NodeResourcesFit"})
    q.add_unschedulable(await q.pop(), {"NodeAffinity"})
    clock.advance(5)
    q.move_all_to_active_or_backoff(ASSIGNED_POD_DELETE)  # frees resources, not labels
    assert q.where(key(cpu)) == "active"
    assert q.where(key(selector)) == "unschedulable"
    q.move_all_to_active_or_backoff(NODE_UPDATE)
    assert q.where(key(selector)) == "active"


async def test_change_during_an_attempt_sends_the_pod_to_backoff_not_unschedulable():
    clock = FakeClock()
    q = SchedulingQueue(clock=clock)
    p = pod("a")
    q.add(p)
    qp = await q.pop()
    q.move_all_to_active_or_backoff(NODE_ADD)  # a node appeared while we were deciding
    q.add_unschedulable(qp, {"NodeResourcesFit"})
    assert q.where(key(p)) == "backoff"


async def test_spec_update_requeues_an_unschedulable_pod_status_update_does_not():
    clock = FakeClock()
    q = SchedulingQueue(clock=clock)
    p = pod("a")
    q.add(p)
    q.add_unschedulable(await q.pop(), {"NodeResourcesFit"})
    clock.advance(5)
    status_only = {**p, "status": {"conditions": [{"type": "PodScheduled", "status": "False"}]},
                   "metadata": {**p["metadata"], "resourceVersion": "9"}}
    assert not pod_updated(p, status_only)
    q.update(p, status_only)
    assert q.where(key(p)) == "unschedulable"
    relabeled = {**status_only, "metadata": {**status_only["metadata"], "labels": {"x": "y"}}}
    q.update(status_only, relabeled)
    assert q.where(key(p)) == "active"


async def test_delete_removes_from_every_place_and_from_flight():
    clock = FakeClock()
    q = SchedulingQueue(clock=clock)
    a, b = pod("a"), pod("b")
    q.add(a)
    q.add(b)
    qa = await q.pop()
    q.delete(b)
    q.delete(a)  # while in flight
    q.add_unschedulable(qa, ())
    assert len(q) == 0 and q.where(key(a)) is None and q.where(key(b)) is None


async def test_leftover_unschedulable_pods_return_after_five_minutes():
    clock = FakeClock()
    q = SchedulingQueue(clock=clock)
    p = pod("a")
    q.add(p)
    q.add_unschedulable(await q.pop(), {"NodeAffinity"})
    clock.advance(299)
    assert q.flush_unschedulable_leftover() == 0
    clock.advance(2)
    assert q.flush_unschedulable_leftover() == 1
    assert q.where(key(p)) == "active"


async def test_run_flushes_backoff_on_its_own():
    clock = FakeClock()
    q = SchedulingQueue(clock=clock)
    p = pod("a")
    q.add(p)
    q.add_backoff(await q.pop())
    task = asyncio.ensure_future(q.run())
    await asyncio.sleep(0)
    clock.advance(1.0)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert q.where(key(p)) == "active"
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
