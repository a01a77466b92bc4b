"""The scheduler's event writer yields to scheduling: events wait while bindings are in
flight or decisions are being made, are written once the scheduler has been quiet, never
wait longer than ``EVENT_MAX_DELAY``, and a full queue drops rather than grows."""

from __future__ import annotations

import asyncio

import pytest

from fakes import FakeClock
from scheduler import scheduler as sched_mod
from scheduler.scheduler import EVENT_MAX_DELAY, EVENT_QUIET, Scheduler


class FakeInformer:
    def __init__(self):
        self.store = self

    def add_handler(self, *handlers):
        pass

    def get_by_key(self, key):
        return None


class FakeInformers:
    def informer(self, name):
        return FakeInformer()


class Recorder:
    def __init__(self):
        self.written: list[str] = []

    async def event(self, obj, type_, reason, message):
        self.written.append(f"{obj['metadata']['name']}:{reason}")


def pod(name):
    return {"metadata": {"name": name, "namespace": "default", "uid": f"u-{name}"}}


async def step(clock: FakeClock, seconds: float) -> None:
    clock.advance(seconds)
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.fixture
def env():
    clock, rec = FakeClock(), Recorder()
    s = Scheduler(None, FakeInformers(), clock=clock, recorder=rec)
    return s, clock, rec


async def test_events_wait_for_a_quiet_scheduler(env):
    s, clock, rec = env
    writer = asyncio.create_task(s._event_loop())
    try:
        s._binding = 1  # a binding in flight
        s._emit(pod("a"), "Normal", "Scheduled", "assigned")
        for _ in range(10):
            await step(clock, EVENT_QUIET)
        assert rec.written == []
        s._binding = 0
        s._busy_at = clock.now()  # the binding just finished
        await step(clock, EVENT_QUIET / 2)
        assert rec.written == []
        await step(clock, EVENT_QUIET)
        assert rec.written == ["a:Scheduled"]
    finally:
        writer.cancel()


async def test_no_event_waits_longer_than_the_max_delay(env):
    s, clock, rec = env
    writer = asyncio.create_task(s._event_loop())
    try:
        s._binding = 1  # never quiet
        s._emit(pod("a"), "Normal", "Scheduled", "assigned")
        s._emit(pod("b"), "Normal", "Scheduled", "assigned")
        elapsed = 0.0
        while elapsed < EVENT_MAX_DELAY - 2 * EVENT_QUIET:
            await step(clock, EVENT_QUIET)
            elapsed += EVENT_QUIET
        assert rec.written == []
        for _ in range(4):
            await step(clock, EVENT_QUIET)
        assert rec.written == ["a:Scheduled", "b:Scheduled"]  # both queued at once
    finally:
        writer.cancel()


async def test_a_full_event_queue_drops(env, monkeypatch):
    s, clock, rec = env
    monkeypatch.setattr(sched_mod, "MAX_PENDING_EVENTS", 2)
    for name in "abc":
        s._emit(pod(name), "Normal", "Scheduled", "assigned")
    writer = asyncio.create_task(s._event_loop())
    try:
        await step(clock, EVENT_QUIET)
        await step(clock, EVENT_QUIET)
        assert rec.written == ["a:Scheduled", "b:Scheduled"]
    finally:
        writer.cancel()
