"""CronJob schedule arithmetic and controller decisions, on a fake clock reading epoch
seconds, so a schedule of minutes or hours runs instantly."""

import asyncio
import contextlib
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from fakes import FakeClient, FakeClock, settle
from controller.cronjob import (CronJobController, SCHEDULED_TIMESTAMP, history_to_delete,
                                job_name, missed_schedules, next_time, prev_time)
from controller.job import rfc3339
from minik8s.api.defaults import apply_defaults
from minik8s.api.registry import REGISTRY
from minik8s.api.validation import parse_cron
from minik8s.cache import InformerFactory


def ts(text):
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def iso(epoch):
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M")


# --- schedule arithmetic ------------------------------------------------------------------

@pytest.mark.parametrize("schedule,after,expected", [
    ("*/5 * * * *", "2024-03-01 10:02:30", "2024-03-01 10:05"),
    ("*/5 * * * *", "2024-03-01 10:05:00", "2024-03-01 10:10"),
    ("@hourly", "2024-03-01 10:00:00", "2024-03-01 11:00"),
    ("@daily", "2024-12-31 23:59:00", "2025-01-01 00:00"),
    ("30 9 * * MON-FRI", "2024-03-01 10:00:00", "2024-03-04 09:30"),  # Friday -> Monday
    ("0 0 29 2 *", "2024-03-01 00:00:00", "2028-02-29 00:00"),
    ("0 12 1 * 0", "2024-03-02 00:00:00", "2024-03-03 12:00"),  # dom OR dow when both set
    ("@monthly", "2024-01-31 12:00:00", "2024-02-01 00:00"),
])
def test_next_time(schedule, after, expected):
    assert iso(next_time(parse_cron(schedule), ts(after))) == expected


@pytest.mark.parametrize("schedule,at,expected", [
    ("*/5 * * * *", "2024-03-01 10:07:00", "2024-03-01 10:05"),
    ("*/5 * * * *", "2024-03-01 10:05:00", "2024-03-01 10:05"),
    ("@daily", "2024-03-01 00:00:30", "2024-03-01 00:00"),
    ("30 9 * * MON-FRI", "2024-03-04 09:00:00", "2024-03-01 09:30"),
    ("0 0 1 1 *", "2024-06-01 00:00:00", "2024-01-01 00:00"),
])
def test_prev_time(schedule, at, expected):
    assert iso(prev_time(parse_cron(schedule), ts(at))) == expected


def test_time_zone_shifts_the_schedule():
    berlin = ZoneInfo("Europe/Berlin")
    t = next_time(parse_cron("0 9 * * *"), ts("2024-01-10 00:00:00"), berlin)
    assert iso(t) == "2024-01-10 08:00"  # 09:00 CET is 08:00 UTC


def test_missed_schedules_counts_and_finds_the_latest():
    s = parse_cron("* * * * *")
    last, n = missed_schedules(s, ts("2024-03-01 10:00:00"), ts("2024-03-01 10:05:30"))
    assert (iso(last), n) == ("2024-03-01 10:05", 5)
    last, n = missed_schedules(s, ts("2024-03-01 10:00:00"), ts("2024-03-01 10:00:30"))
    assert (last, n) == (None, 0)
    last, n = missed_schedules(s, ts("2024-03-01 00:00:00"), ts("2024-03-02 00:00:10"))
    assert n > 100 and iso(last) == "2024-03-02 00:00"


def test_history_to_delete_keeps_the_newest():
    def job(name, type_, start):
        return {"metadata": {"name": name}, "status": {
            "startTime": rfc3339(start),
            "conditions": [{"type": type_, "status": "True"}] if type_ else []}}
    jobs = [job("a", "Complete", 1), job("b", "Complete", 2), job("c", "Complete", 3),
            job("d", "Failed", 4), job("e", "Failed", 5), job("f", None, 0)]
    assert [j["metadata"]["name"] for j in history_to_delete(jobs, 1, 1)] == ["a", "b", "d"]
    assert history_to_delete(jobs, None, None) == []


# --- the controller -----------------------------------------------------------------------

T0 = ts("2024-03-01 10:00:00")


class Recorder:
    def __init__(self):
        self.events = []

    async def event(self, obj, type_, reason, message):
        self.events.append((type_, reason, message))

    def reasons(self):
        return [e[1] for e in self.events]


def make_cronjob(name="cj", schedule="* * * * *", created=T0, **spec):
    cj = {"apiVersion": "batch/v1", "kind": "CronJob",
          "metadata": {"name": name, "namespace": "default", "uid": "cj-uid",
                       "creationTimestamp": rfc3339(created)},
          "spec": {"schedule": schedule, "jobTemplate": {
              "metadata": {"labels": {"app": "x"}},
              "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                  {"name": "c", "image": "busybox:1"}]}}}}, **spec}}
    apply_defaults(REGISTRY.resolve("cronjobs"), cj)
    return cj


@contextlib.asynccontextmanager
async def running(client, clock):
    factory = InformerFactory(client)
    rec = Recorder()
    ctrl = CronJobController(client, factory, clock, rec)
    task = asyncio.create_task(factory.start())
    await factory.wait_synced(2)
    try:
        yield ctrl, rec
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def step(ctrl, key="default/cj"):
    await settle()
    result = await ctrl.reconcile(key)
    await settle()
    return result


def jobs_of(client):
    return sorted(client.objects.get("jobs.batch", {}).values(),
                  key=lambda j: j["metadata"]["name"])


def cj_status(client):
    return client.stored("cronjobs", "cj", "default").get("status") or {}


async def finish(client, job, type_="Complete", at=None):
    status = {"conditions": [{"type": type_, "status": "True",
                              "lastTransitionTime": rfc3339(at or T0)}]}
    if type_ == "Complete":
        status["completionTime"] = rfc3339(at or T0)
    await client.patch("jobs", job["metadata"]["name"], {"status": status}, "default")


async def test_creates_a_job_at_each_scheduled_time_and_requeues_for_the_next():
    client, clock = FakeClient(), FakeClock(T0 + 30)
    client.seed("cronjobs", make_cronjob())
    async with running(client, clock) as (ctrl, rec):
        result = await step(ctrl)
        assert jobs_of(client) == []  # created at 10:00:00, nothing due before 10:01
        assert result.requeue_after == pytest.approx(30.1)
        clock.advance(30.1)
        result = await step(ctrl)
        jobs = jobs_of(client)
        assert [j["metadata"]["name"] for j in jobs] == [job_name(make_cronjob(), T0 + 60)]
        job = jobs[0]
        assert job["metadata"]["name"] == f"cj-{int((T0 + 60) // 60)}"
        assert job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
        assert job["metadata"]["labels"] == {"app": "x"}
        assert job["metadata"]["annotations"][SCHEDULED_TIMESTAMP].startswith("2024-03-01T10:01")
        status = cj_status(client)
        assert status["lastScheduleTime"] == rfc3339(T0 + 60)
        assert [a["name"] for a in status["active"]] == [job["metadata"]["name"]]
        assert result.requeue_after == pytest.approx(60, abs=0.2)
        assert "SuccessfulCreate" in rec.reasons()
        await step(ctrl)  # idempotent: same minute, no second Job
        assert len(jobs_of(client)) == 1


async def test_forbid_skips_while_a_job_is_active_then_runs_the_missed_time():
    client, clock = FakeClient(), FakeClock(T0 + 60.1)
    client.seed("cronjobs", make_cronjob(concurrencyPolicy="Forbid"))
    async with running(client, clock) as (ctrl, rec):
        await step(ctrl)
        assert len(jobs_of(client)) == 1
        clock.advance(60)
        await step(ctrl)
        assert len(jobs_of(client)) == 1 and "JobAlreadyActive" in rec.reasons()
        await finish(client, jobs_of(client)[0])
        await step(ctrl)
        assert len(jobs_of(client)) == 2
        assert cj_status(client)["lastSuccessfulTime"] == rfc3339(T0)


async def test_replace_deletes_the_active_job():
    client, clock = FakeClient(), FakeClock(T0 + 60.1)
    client.seed("cronjobs", make_cronjob(concurrencyPolicy="Replace"))
    async with running(client, clock) as (ctrl, _):
        await step(ctrl)
        first = jobs_of(client)[0]["metadata"]["name"]
        clock.advance(60)
        await step(ctrl)
        names = [j["metadata"]["name"] for j in jobs_of(client)]
        assert first not in names and len(names) == 1


async def test_allow_runs_concurrently():
    client, clock = FakeClient(), FakeClock(T0 + 60.1)
    client.seed("cronjobs", make_cronjob())
    async with running(client, clock) as (ctrl, _):
        await step(ctrl)
        clock.advance(60)
        await step(ctrl)
        assert len(jobs_of(client)) == 2
        assert len(cj_status(client)["active"]) == 2


async def test_suspend_creates_nothing():
    client, clock = FakeClient(), FakeClock(T0 + 600)
    client.seed("cronjobs", make_cronjob(suspend=True))
    async with running(client, clock) as (ctrl, _):
        assert await step(ctrl) is None
        assert jobs_of(client) == []


async def test_starting_deadline_skips_old_schedules():
    # last ran at 10:00, now 10:10:30; deadline 20s: 10:10 is 30s old -> missed, wait for 10:11
    client, clock = FakeClient(), FakeClock(T0 + 630)
    client.seed("cronjobs", make_cronjob(schedule="*/10 * * * *", startingDeadlineSeconds=20))
    async with running(client, clock) as (ctrl, _):
        result = await step(ctrl)
        assert jobs_of(client) == []
        assert result.requeue_after == pytest.approx(570.1)
    client2, clock2 = FakeClient(), FakeClock(T0 + 615)
    client2.seed("cronjobs", make_cronjob(schedule="*/10 * * * *", startingDeadlineSeconds=20))
    async with running(client2, clock2) as (ctrl, _):
        await step(ctrl)
        assert len(jobs_of(client2)) == 1


async def test_too_many_missed_times_warns_and_runs_the_latest():
    client, clock = FakeClient(), FakeClock(T0 + 3 * 3600 + 5)
    client.seed("cronjobs", make_cronjob())
    async with running(client, clock) as (ctrl, rec):
        await step(ctrl)
        assert "TooManyMissedTimes" in rec.reasons()
        assert [e[0] for e in rec.events if e[1] == "TooManyMissedTimes"] == ["Warning"]
        jobs = jobs_of(client)
        assert len(jobs) == 1
        assert jobs[0]["metadata"]["name"] == f"cj-{int((T0 + 3 * 3600) // 60)}"


async def test_history_limits_trim_the_oldest_finished_jobs():
    client, clock = FakeClient(), FakeClock(T0 + 60.1)
    client.seed("cronjobs", make_cronjob(successfulJobsHistoryLimit=1, failedJobsHistoryLimit=1))
    async with running(client, clock) as (ctrl, _):
        for i in range(3):
            await step(ctrl)
            job = [j for j in jobs_of(client) if not (j.get("status") or {}).get("conditions")][0]
            await finish(client, job, "Complete" if i < 2 else "Failed", at=T0 + 60 * (i + 1))
            clock.advance(60)
        await step(ctrl)
        names = [j["metadata"]["name"] for j in jobs_of(client)]
        # one complete (the newest) and one failed are kept, plus the Job just created
        kinds = sorted(((j.get("status") or {}).get("conditions") or [{}])[0].get("type", "-")
                       for j in jobs_of(client))
        assert kinds == ["-", "Complete", "Failed"], names
