"""Job controller decisions over a FakeClient and a fake clock: reconcile is called
directly once the informers have synced, so every step is deterministic."""

import asyncio
import contextlib

import pytest

from fakes import FakeClient, FakeClock, settle
from controller.job import Expectations, JobController, format_indexes, pod_from_template, rfc3339
from minik8s.api.defaults import apply_defaults
from minik8s.api.registry import REGISTRY
from minik8s.cache import InformerFactory

T0 = 1_700_000_000.0


class Recorder:
    def __init__(self):
        self.events = []

    async def event(self, obj, type_, reason, message):
        self.events.append((obj["metadata"]["name"], type_, reason, message))

    def reasons(self):
        return [e[2] for e in self.events]


def make_job(name="pi", uid="uid-1", **spec):
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": name, "namespace": "default", "uid": uid},
           "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
               {"name": "c", "image": "busybox:1"}]}}, **spec}}
    apply_defaults(REGISTRY.resolve("jobs"), job)
    return job


@contextlib.asynccontextmanager
async def running(client, clock):
    factory = InformerFactory(client)
    rec = Recorder()
    ctrl = JobController(client, factory, clock, rec)
    task = asyncio.create_task(factory.start())
    await factory.wait_synced(2)
    try:
        yield ctrl, rec
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def pods_of(client):
    return sorted(client.objects.get("pods", {}).values(), key=lambda p: p["metadata"]["name"])


async def set_phase(client, pod, phase, **status):
    await client.patch("pods", pod["metadata"]["name"], {"status": {"phase": phase, **status}},
                       "default")


async def step(ctrl, key="default/pi"):
    await settle()
    result = await ctrl.reconcile(key)
    await settle()
    return result


def job_of(client, name="pi"):
    return client.stored("jobs", name, "default")


async def test_creates_parallelism_pods_with_owner_reference_and_labels():
    client, clock = FakeClient(), FakeClock(T0)
    client.seed("jobs", make_job(completions=3, parallelism=2))
    async with running(client, clock) as (ctrl, rec):
        await step(ctrl)
        pods = pods_of(client)
        assert len(pods) == 2
        for p in pods:
            ref = p["metadata"]["ownerReferences"][0]
            assert ref["kind"] == "Job" and ref["uid"] == "uid-1" and ref["controller"]
            assert p["metadata"]["labels"]["batch.kubernetes.io/controller-uid"] == "uid-1"
            assert p["metadata"]["name"].startswith("pi-")
        status = job_of(client)["status"]
        assert status["active"] == 2 and status["startTime"] == rfc3339(T0)
        assert rec.reasons().count("SuccessfulCreate") == 2


async def test_expectations_stop_duplicates_while_the_cache_lags():
    client, clock = FakeClient(), FakeClock(T0)
    client.seed("jobs", make_job(completions=3, parallelism=2))
    async with running(client, clock) as (ctrl, _):
        await settle()
        ctrl.expectations.expect("default/pi", adds=2)  # as if pods were just created
        await step(ctrl)
        assert pods_of(client) == []
        clock.advance(301)  # expired expectations stop blocking
        await step(ctrl)
        assert len(pods_of(client)) == 2


async def test_completions_three_parallelism_two_completes():
    client, clock = FakeClient(), FakeClock(T0)
    client.seed("jobs", make_job(completions=3, parallelism=2))
    async with running(client, clock) as (ctrl, rec):
        await step(ctrl)
        for p in pods_of(client):
            await set_phase(client, p, "Succeeded")
        await step(ctrl)
        pods = pods_of(client)
        assert len(pods) == 3  # only one more needed
        assert job_of(client)["status"]["succeeded"] == 2
        assert job_of(client)["status"]["active"] == 1
        running_pod = [p for p in pods if p.get("status", {}).get("phase") != "Succeeded"][0]
        await set_phase(client, running_pod, "Succeeded")
        clock.advance(5)
        await step(ctrl)
        status = job_of(client)["status"]
        complete = [c for c in status["conditions"] if c["type"] == "Complete"][0]
        assert complete["status"] == "True" and status["succeeded"] == 3
        assert status["active"] == 0 and status["completionTime"] == rfc3339(T0 + 5)
        assert "Completed" in rec.reasons()
        await step(ctrl)  # finished: nothing more
        assert len(pods_of(client)) == 3


async def test_backoff_limit_fails_the_job():
    client, clock = FakeClient(), FakeClock(T0)
    client.seed("jobs", make_job(backoffLimit=1))
    async with running(client, clock) as (ctrl, rec):
        await step(ctrl)
        await set_phase(client, pods_of(client)[0], "Failed")
        await step(ctrl)  # one failure: within the limit, a replacement
        assert len(pods_of(client)) == 2
        assert job_of(client)["status"]["failed"] == 1
        active = [p for p in pods_of(client) if p.get("status", {}).get("phase") != "Failed"]
        await set_phase(client, active[0], "Failed")
        await step(ctrl)
        status = job_of(client)["status"]
        failed = [c for c in status["conditions"] if c["type"] == "Failed"][0]
        assert failed["status"] == "True" and failed["reason"] == "BackoffLimitExceeded"
        assert status["failed"] == 2 and status["active"] == 0
        assert "BackoffLimitExceeded" in rec.reasons()
        assert "completionTime" not in status


async def test_on_failure_restarts_count_against_the_backoff_limit():
    client, clock = FakeClient(), FakeClock(T0)
    job = make_job(backoffLimit=2)
    job["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    client.seed("jobs", job)
    async with running(client, clock) as (ctrl, _):
        await step(ctrl)
        await set_phase(client, pods_of(client)[0], "Running",
                        containerStatuses=[{"name": "c", "restartCount": 3}])
        await step(ctrl)
        cond = job_of(client)["status"]["conditions"][0]
        assert cond["type"] == "Failed" and cond["reason"] == "BackoffLimitExceeded"
        assert pods_of(client) == []  # the active pod was deleted


async def test_active_deadline_requeues_then_fails_and_deletes_pods():
    client, clock = FakeClient(), FakeClock(T0)
    client.seed("jobs", make_job(activeDeadlineSeconds=10))
    async with running(client, clock) as (ctrl, rec):
        result = await step(ctrl)
        assert result.requeue_after == pytest.approx(10)
        assert len(pods_of(client)) == 1
        clock.advance(4)
        result = await step(ctrl)
        assert result.requeue_after == pytest.approx(6)
        clock.advance(6)
        await step(ctrl)
        status = job_of(client)["status"]
        assert status["conditions"][0]["reason"] == "DeadlineExceeded"
        assert pods_of(client) == [] and "DeadlineExceeded" in rec.reasons()


async def test_ttl_after_finished_deletes_the_job_in_the_background():
    client, clock = FakeClient(), FakeClock(T0)
    client.seed("jobs", make_job(ttlSecondsAfterFinished=30))
    deleted = []
    orig = client.delete

    async def delete(ref, name, namespace=None, **kw):
        deleted.append((str(ref), name, kw.get("propagation_policy")))
        return await orig(ref, name, namespace, **kw)

    client.delete = delete
    async with running(client, clock) as (ctrl, _):
        await step(ctrl)
        await set_phase(client, pods_of(client)[0], "Succeeded")
        result = await step(ctrl)
        assert result.requeue_after == pytest.approx(30)
        clock.advance(29)
        result = await step(ctrl)
        assert result.requeue_after == pytest.approx(1)
        clock.advance(1)
        await step(ctrl)
        assert job_of(client) is None
        assert ("jobs", "pi", "Background") in deleted


async def test_suspend_deletes_active_pods_and_resume_recreates():
    client, clock = FakeClient(), FakeClock(T0)
    client.seed("jobs", make_job(parallelism=2, completions=2))
    async with running(client, clock) as (ctrl, rec):
        await step(ctrl)
        assert len(pods_of(client)) == 2
        await client.patch("jobs", "pi", {"spec": {"suspend": True}}, "default")
        await step(ctrl)
        assert pods_of(client) == []
        cond = [c for c in job_of(client)["status"]["conditions"] if c["type"] == "Suspended"][0]
        assert cond["status"] == "True"
        await client.patch("jobs", "pi", {"spec": {"suspend": False}}, "default")
        await step(ctrl)
        assert len(pods_of(client)) == 2
        assert "Suspended" in rec.reasons() and "Resumed" in rec.reasons()


async def test_work_queue_job_completes_when_one_succeeds_and_none_active():
    client, clock = FakeClient(), FakeClock(T0)
    job = make_job(parallelism=2)
    assert job["spec"].get("completions") is None
    client.seed("jobs", job)
    async with running(client, clock) as (ctrl, _):
        await step(ctrl)
        a, b = pods_of(client)
        await set_phase(client, a, "Succeeded")
        await step(ctrl)
        assert len(pods_of(client)) == 2  # no new pod once one succeeded; b still runs
        await set_phase(client, b, "Succeeded")
        await step(ctrl)
        assert job_of(client)["status"]["conditions"][0]["type"] == "Complete"


async def test_indexed_job_one_pod_per_index():
    client, clock = FakeClient(), FakeClock(T0)
    client.seed("jobs", make_job(completions=3, parallelism=2, completionMode="Indexed"))
    async with running(client, clock) as (ctrl, _):
        await step(ctrl)
        pods = pods_of(client)
        idx = sorted(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
                     for p in pods)
        assert idx == ["0", "1"]
        zero = [p for p in pods if p["metadata"]["annotations"][
            "batch.kubernetes.io/job-completion-index"] == "0"][0]
        assert {"name": "JOB_COMPLETION_INDEX", "value": "0"} in zero["spec"]["containers"][0]["env"]
        await set_phase(client, zero, "Succeeded")
        await step(ctrl)
        idx = sorted(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
                     for p in pods_of(client) if p.get("status", {}).get("phase") != "Succeeded")
        assert idx == ["1", "2"]
        assert job_of(client)["status"]["completedIndexes"] == "0"


def test_format_indexes():
    assert format_indexes({0, 1, 2, 4, 6, 7}) == "0-2,4,6-7"
    assert format_indexes(set()) == ""


def test_pod_from_template_copies_labels_and_owner():
    job = make_job()
    pod = pod_from_template(job)
    assert pod["metadata"]["generateName"] == "pi-"
    assert pod["metadata"]["labels"]["job-name"] == "pi"
    assert pod["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] is True
    assert pod["spec"]["restartPolicy"] == "Never"


def test_expectations_counting():
    clock = FakeClock(0)
    e = Expectations(clock, timeout=10)
    assert e.satisfied("k")
    e.expect("k", adds=2)
    e.creation_observed("k")
    assert not e.satisfied("k")
    e.creation_observed("k")
    assert e.satisfied("k")
    e.raise_by("k", deletes=1)
    assert not e.satisfied("k")
    clock.advance(11)
    assert e.satisfied("k")
