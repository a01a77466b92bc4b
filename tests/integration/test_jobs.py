"""Job and CronJob controllers against the real API server, run in-process through
``controller.manager.build``. No kubelet: the tests play it by patching ``pods/{name}/status``
(and finished Jobs' status for CronJob history), and CronJobs run on an accelerated clock
(one minute of schedule per second)."""

from __future__ import annotations

import asyncio
import time

from cluster import eventually, running_controllers
from minik8s.api.errors import NotFound

ACCEL = 60.0  # schedule seconds per real second


class AcceleratedClock:
    """Epoch seconds that run ``factor`` times faster than real time."""

    def __init__(self, factor: float = ACCEL):
        self.factor = factor
        self.t0 = time.time()
        self.m0 = time.monotonic()

    def now(self) -> float:
        return self.t0 + (time.monotonic() - self.m0) * self.factor

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.factor)


def job_manifest(name, **spec):
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "c", "image": "busybox:1", "command": ["true"]}]}}, **spec}}


async def pods_of(client, ns, job):
    lst = await client.list("pods", ns, label_selector=f"batch.kubernetes.io/job-name={job}")
    return lst["items"]


async def set_phase(client, pod, phase):
    await client.patch("pods", pod["metadata"]["name"], {"status": {"phase": phase}},
                       pod["metadata"]["namespace"], subresource="status")


def cond(obj, type_):
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == type_ and c["status"] == "True":
            return c
    return None


async def test_job_completions_3_parallelism_2_completes(client, ns):
    async with running_controllers(client, ["job"]):
        await client.create("jobs", job_manifest("work", completions=3, parallelism=2), ns)

        async def active(n):
            pods = [p for p in await pods_of(client, ns, "work")
                    if p["status"].get("phase") not in ("Succeeded", "Failed")]
            return pods if len(pods) == n else None

        first = await eventually(lambda: active(2))
        for p in first:
            ref = p["metadata"]["ownerReferences"][0]
            assert ref["kind"] == "Job" and ref["controller"] is True
            assert p["spec"]["restartPolicy"] == "Never"
            await set_phase(client, p, "Succeeded")
        third = await eventually(lambda: active(1))
        assert len(await pods_of(client, ns, "work")) == 3  # never more than needed
        await set_phase(client, third[0], "Succeeded")

        async def complete():
            job = await client.get("jobs", "work", ns)
            return job if cond(job, "Complete") else None

        job = await eventually(complete)
        st = job["status"]
        assert st["succeeded"] == 3 and st["active"] == 0 and st["completionTime"]
        assert st["startTime"]
        events = (await client.list("events", ns))["items"]
        reasons = [e["reason"] for e in events if e["involvedObject"]["name"] == "work"]
        assert reasons.count("SuccessfulCreate") >= 1 and "Completed" in reasons


async def test_job_backoff_limit_fails(client, ns):
    async with running_controllers(client, ["job"]):
        await client.create("jobs", job_manifest("flaky", backoffLimit=1), ns)
        for _ in range(2):
            pod = (await eventually(lambda: _running(client, ns, "flaky")))[0]
            await set_phase(client, pod, "Failed")

        async def failed():
            job = await client.get("jobs", "flaky", ns)
            return job if cond(job, "Failed") else None

        job = await eventually(failed)
        assert cond(job, "Failed")["reason"] == "BackoffLimitExceeded"
        assert job["status"]["failed"] == 2
        events = (await client.list("events", ns))["items"]
        assert any(e["reason"] == "BackoffLimitExceeded" and e["type"] == "Warning"
                   for e in events)


async def _running(client, ns, job):
    return [p for p in await pods_of(client, ns, job)
            if p["status"].get("phase") not in ("Succeeded", "Failed")
            and not p["metadata"].get("deletionTimestamp")]


async def test_job_active_deadline_fails_and_deletes_pods(client, ns):
    async with running_controllers(client, ["job"]):
        await client.create("jobs", job_manifest("slow", activeDeadlineSeconds=1), ns)
        # The pod lives for one second only: whether a poll sees it depends on the load,
        # so the test follows the controller's record (events) instead of racing it.

        async def failed():
            job = await client.get("jobs", "slow", ns)
            return job if cond(job, "Failed") else None

        job = await eventually(failed, timeout=60)
        assert cond(job, "Failed")["reason"] == "DeadlineExceeded"
        await eventually(lambda: _none(pods_of(client, ns, "slow")), timeout=60)

        async def job_events():
            events = (await client.list("events", ns))["items"]
            reasons = [e["reason"] for e in events if e["involvedObject"]["name"] == "slow"]
            return reasons if {"SuccessfulCreate", "SuccessfulDelete",
                               "DeadlineExceeded"} <= set(reasons) else None

        # a pod was started, then deleted by the controller when the deadline passed
        await eventually(job_events, timeout=60)


async def _none(coro):
    return not await coro


async def test_job_ttl_after_finished_deletes_job_and_pods(client, ns):
    async with running_controllers(client, ["job", "garbagecollector"]):
        await client.create("jobs", job_manifest("brief", ttlSecondsAfterFinished=1), ns)
        pod = (await eventually(lambda: _running(client, ns, "brief")))[0]
        await set_phase(client, pod, "Succeeded")

        async def gone():
            try:
                await client.get("jobs", "brief", ns)
                return False
            except NotFound:
                return True

        await eventually(gone, timeout=15)
        # Background propagation: the garbage collector removes the Job's pods
        await eventually(lambda: _none(pods_of(client, ns, "brief")), timeout=15)


def cronjob_manifest(name, **spec):
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
            "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [
                    {"name": "c", "image": "busybox:1", "command": ["true"]}]}}}}, **spec}}


async def jobs_of(client, ns, cronjob):
    items = (await client.list("jobs", ns))["items"]
    return sorted((j for j in items
                   if any(r.get("name") == cronjob for r in
                          j["metadata"].get("ownerReferences") or [])),
                  key=lambda j: j["metadata"]["name"])


async def test_cronjob_creates_jobs_on_schedule(client, ns):
    clock = AcceleratedClock()
    async with running_controllers(client, ["cronjob"], clock=clock):
        await client.create("cronjobs", cronjob_manifest("tick"), ns)

        async def three():
            jobs = await jobs_of(client, ns, "tick")
            return jobs if len(jobs) >= 3 else None

        jobs = await eventually(three, timeout=15)
        minutes = [int(j["metadata"]["name"].rsplit("-", 1)[1]) for j in jobs]
        assert minutes == sorted(minutes) and minutes[1] - minutes[0] == 1
        ann = jobs[0]["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
        assert ann.endswith("+00:00")
        assert jobs[0]["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
        cj = await client.get("cronjobs", "tick", ns)
        assert cj["status"]["lastScheduleTime"] and cj["status"]["active"]


async def test_cronjob_forbid_waits_for_the_active_job(client, ns):
    clock = AcceleratedClock()
    async with running_controllers(client, ["cronjob"], clock=clock):
        await client.create("cronjobs", cronjob_manifest("single", concurrencyPolicy="Forbid"),
                            ns)
        first = (await eventually(lambda: jobs_of(client, ns, "single"), timeout=15))[0]
        await asyncio.sleep(3.5)  # three more scheduled minutes
        assert len(await jobs_of(client, ns, "single")) == 1
        events = (await client.list("events", ns))["items"]
        assert any(e["reason"] == "JobAlreadyActive" for e in events)
        await client.patch("jobs", first["metadata"]["name"], {"status": {
            "conditions": [{"type": "Complete", "status": "True"}],
            "startTime": first["metadata"]["creationTimestamp"],
            "completionTime": first["metadata"]["creationTimestamp"]}}, ns,
            subresource="status")

        async def two():
            return len(await jobs_of(client, ns, "single")) >= 2

        await eventually(two, timeout=10)


async def test_cronjob_replace_deletes_the_active_job(client, ns):
    clock = AcceleratedClock()
    async with running_controllers(client, ["cronjob"], clock=clock):
        await client.create("cronjobs", cronjob_manifest("swap", concurrencyPolicy="Replace"),
                            ns)
        first = (await eventually(lambda: jobs_of(client, ns, "swap"), timeout=15))[0]
        name = first["metadata"]["name"]

        async def replaced():
            names = [j["metadata"]["name"] for j in await jobs_of(client, ns, "swap")
                     if not j["metadata"].get("deletionTimestamp")]
            return names if names and name not in names else None

        names = await eventually(replaced, timeout=10)
        assert len(names) == 1


async def test_cronjob_history_limits_trim_finished_jobs(client, ns):
    clock = AcceleratedClock()
    async with running_controllers(client, ["cronjob"], clock=clock):
        await client.create("cronjobs", cronjob_manifest(
            "hist", successfulJobsHistoryLimit=1, failedJobsHistoryLimit=0), ns)
        seen: set[str] = set()
        deadline = time.monotonic() + 15
        while len(seen) < 4 and time.monotonic() < deadline:
            for j in await jobs_of(client, ns, "hist"):
                name = j["metadata"]["name"]
                if name not in seen:
                    seen.add(name)
                    await client.patch("jobs", name, {"status": {
                        "conditions": [{"type": "Complete", "status": "True"}],
                        "startTime": j["metadata"]["creationTimestamp"],
                        "completionTime": j["metadata"]["creationTimestamp"]}}, ns,
                        subresource="status")
            await asyncio.sleep(0.1)
        assert len(seen) >= 4

        async def trimmed():
            done = [j for j in await jobs_of(client, ns, "hist") if cond(j, "Complete")]
            return len(done) <= 1

        await eventually(trimmed, timeout=10)
        cj = await client.get("cronjobs", "hist", ns)
        assert cj["status"].get("lastSuccessfulTime")
