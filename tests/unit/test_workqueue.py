import asyncio
import random

import pytest

from fakes import FakeClock, advance, settle
from minik8s.runtime import ItemExponentialFailureRateLimiter, ShutDown, WorkQueue


async def test_repeated_adds_of_a_waiting_key_collapse():
    q = WorkQueue()
    for key in ["a", "a", "b", "a", "b"]:
        q.add(key)
    assert len(q) == 2 and q.len() == 2
    assert await q.get() == "a"
    assert await q.get() == "b"
    assert len(q) == 0
    q.shutdown()


async def test_key_added_while_processing_is_requeued_on_done_only():
    q = WorkQueue()
    q.add("a")
    key = await q.get()
    q.add("a")
    q.add("a")
    assert len(q) == 0  # not handed out again while processing
    other = asyncio.ensure_future(q.get())
    await settle()
    assert not other.done()
    q.done(key)
    assert await asyncio.wait_for(other, 1) == "a"
    q.done("a")
    assert len(q) == 0  # the two adds collapsed into one re-queue
    q.shutdown()


async def test_done_without_new_add_does_not_requeue():
    q = WorkQueue()
    q.add("a")
    q.done(await q.get())
    assert len(q) == 0
    q.shutdown()


async def test_concurrent_workers_never_process_a_key_twice_at_once():
    q = WorkQueue()
    keys = [f"k{i}" for i in range(8)]
    in_flight: set[str] = set()
    violations: list[str] = []
    processed: dict[str, int] = {k: 0 for k in keys}
    rng = random.Random(7)

    async def worker():
        while True:
            try:
                key = await q.get()
            except ShutDown:
                return
            if key in in_flight:
                violations.append(key)
            in_flight.add(key)
            for _ in range(rng.randint(0, 3)):
                await asyncio.sleep(0)
                q.add(rng.choice(keys))  # adds of keys being processed right now, too
            processed[key] += 1
            in_flight.discard(key)
            q.done(key)

    workers = [asyncio.ensure_future(worker()) for _ in range(4)]
    for _ in range(200):
        q.add(rng.choice(keys))
        await asyncio.sleep(0)
    for k in keys:
        q.add(k)
    await asyncio.wait_for(_drained(q), 2)
    q.shutdown()
    await asyncio.wait_for(asyncio.gather(*workers), 2)
    assert violations == []
    assert all(processed[k] >= 1 for k in keys)


async def _drained(q: WorkQueue) -> None:
    while len(q) or any(q.is_processing(f"k{i}") for i in range(8)):
        await asyncio.sleep(0)


async def test_shutdown_drains_then_raises_and_wakes_waiting_getters():
    q = WorkQueue()
    waiting = asyncio.ensure_future(q.get())
    await settle()
    q.shutdown()
    with pytest.raises(ShutDown):
        await asyncio.wait_for(waiting, 1)

    q2 = WorkQueue()
    q2.add("a")
    q2.shutdown()
    q2.add("b")  # ignored once shutting down
    assert await q2.get() == "a"
    with pytest.raises(ShutDown):
        await q2.get()


async def test_cancelled_getter_does_not_swallow_a_wakeup():
    q = WorkQueue()
    first = asyncio.ensure_future(q.get())
    second = asyncio.ensure_future(q.get())
    await settle()
    q.add("a")  # wakes `first`...
    first.cancel()  # ...which is cancelled before it can take the key
    assert await asyncio.wait_for(second, 1) == "a"
    q.shutdown()


async def test_add_after_waits_for_the_clock():
    clock = FakeClock()
    q = WorkQueue(clock=clock)
    q.add_after("a", 10)
    await advance(clock, 9.9, step=0.5)
    assert len(q) == 0 and q.num_delayed() == 1
    await advance(clock, 0.2)
    assert len(q) == 1 and q.num_delayed() == 0
    assert await q.get() == "a"
    q.shutdown()


async def test_add_after_earlier_deadline_wins():
    clock = FakeClock()
    q = WorkQueue(clock=clock)
    q.add_after("a", 10)
    q.add_after("a", 2)  # earlier: replaces
    q.add_after("b", 2)
    q.add_after("b", 10)  # later: ignored
    await settle()
    await advance(clock, 2.05)
    assert len(q) == 2
    assert {await q.get(), await q.get()} == {"a", "b"}
    q.done("a")
    q.done("b")
    await advance(clock, 10, step=1)
    assert len(q) == 0  # neither fires a second time
    q.shutdown()


async def test_add_after_non_positive_delay_adds_now():
    q = WorkQueue(clock=FakeClock())
    q.add_after("a", 0)
    assert len(q) == 1
    q.shutdown()


def test_exponential_backoff_grows_and_caps():
    rl = ItemExponentialFailureRateLimiter()  # client-go defaults: 5 ms .. 1000 s
    delays = [rl.when("a") for _ in range(25)]
    assert delays[:4] == pytest.approx([0.005, 0.01, 0.02, 0.04])
    assert all(b == pytest.approx(2 * a) for a, b in zip(delays, delays[1:]) if b < 1000)
    assert delays[-1] == 1000.0 and max(delays) == 1000.0
    assert rl.num_requeues("a") == 25
    assert rl.when("b") == pytest.approx(0.005)  # per item
    rl.forget("a")
    assert rl.num_requeues("a") == 0 and rl.when("a") == pytest.approx(0.005)
    for _ in range(5000):  # no overflow after very many failures
        last = rl.when("c")
    assert last == 1000.0


async def test_add_rate_limited_uses_backoff_and_forget_resets():
    clock = FakeClock()
    q = WorkQueue(base_delay=1.0, max_delay=4.0, clock=clock)
    expected = [1.0, 2.0, 4.0, 4.0]
    for i, delay in enumerate(expected):
        q.add_rate_limited("a")
        assert q.num_requeues("a") == i + 1
        await advance(clock, delay - 0.1, step=0.3)
        assert len(q) == 0, f"failure {i + 1} came back before {delay}s"
        await advance(clock, 0.2)
        assert len(q) == 1
        q.done(await q.get())
    q.forget("a")
    assert q.num_requeues("a") == 0
    q.add_rate_limited("a")
    await advance(clock, 1.05)
    assert len(q) == 1
    q.shutdown()
