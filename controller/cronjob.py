"""The CronJob controller: create a Job at each scheduled time, Kubernetes' CronJob v2 way.

``reconcile(namespace/name)`` looks at the CronJob and the Jobs it controls (Job events
enqueue their owning CronJob), trims finished Jobs beyond the history limits, and if a
scheduled time has passed since ``lastScheduleTime`` creates the Job for the most recent
one, named ``<cronjob>-<scheduled time in minutes since the epoch>`` so a retry can never
create it twice. It then asks to be requeued at the next scheduled time: nothing polls.

Time is ``ctx.clock``'s (``wall_now``): the requeue delay waits on that clock, so tests run
a schedule of minutes in milliseconds with a fake one. Schedules are parsed by
``minik8s.api.validation.parse_cron`` (the same parser that validated them) and evaluated in
``spec.timeZone``, UTC when it is unset.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from minik8s.api.errors import AlreadyExists, NotFound
from minik8s.api.meta import Obj, deepcopy, name_of, namespace_of
from minik8s.api.validation import CronSchedule, parse_cron
from minik8s.runtime import Controller, Result, WorkQueue

from controller.job import (controller_uid_index, epoch_of, finished_condition, is_finished,
                            owner_reference, rfc3339, wall_now)

log = logging.getLogger(__name__)

SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
CRONJOB_OWNER_INDEX = "cronjob-controller/owner-uid"
MAX_MISSED = 100
# Kubernetes requeues a little after the scheduled time so "now" is surely past it.
NEXT_SCHEDULE_DELTA = 0.1
_SEARCH_YEARS = 5


# --- schedule arithmetic ----------------------------------------------------------------

def _day_matches(s: CronSchedule, d: datetime) -> bool:
    dom = d.day in s.days_of_month
    dow = (d.isoweekday() % 7) in s.days_of_week
    if s.dom_star or s.dow_star:
        return dom and dow
    return dom or dow


def next_time(s: CronSchedule, after: float, tz: tzinfo = timezone.utc) -> float | None:
    """The first scheduled time strictly after ``after`` (epoch seconds), or None."""
    t = datetime.fromtimestamp(after, tz).replace(second=0, microsecond=0, tzinfo=None)
    t += timedelta(minutes=1)
    limit = t.year + _SEARCH_YEARS
    while t.year <= limit:
        if t.month not in s.months:
            t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
            continue
        if not _day_matches(s, t):
            t = t.replace(hour=0, minute=0) + timedelta(days=1)
            continue
        if t.hour not in s.hours:
            t = t.replace(minute=0) + timedelta(hours=1)
            continue
        if t.minute not in s.minutes:
            t += timedelta(minutes=1)
            continue
        epoch = t.replace(tzinfo=tz).timestamp()
        if epoch > after:
            return epoch
        t += timedelta(minutes=1)
    return None


def prev_time(s: CronSchedule, at: float, tz: tzinfo = timezone.utc) -> float | None:
    """The last scheduled time at or before ``at`` (epoch seconds), or None."""
    t = datetime.fromtimestamp(at, tz).replace(second=0, microsecond=0, tzinfo=None)
    limit = t.year - _SEARCH_YEARS
    while t.year >= limit:
        if t.month not in s.months:
            t = t.replace(day=1, hour=23, minute=59) - timedelta(days=1)
            continue
        if not _day_matches(s, t):
            t = t.replace(hour=23, minute=59) - timedelta(days=1)
            continue
        if t.hour not in s.hours:
            t = t.replace(minute=59) - timedelta(hours=1)
            continue
        if t.minute not in s.minutes:
            t -= timedelta(minutes=1)
            continue
        epoch = t.replace(tzinfo=tz).timestamp()
        if epoch <= at:
            return epoch
        t -= timedelta(minutes=1)
    return None


def missed_schedules(s: CronSchedule, earliest: float, now: float,
                     tz: tzinfo = timezone.utc) -> tuple[float | None, int]:
    """The most recent scheduled time in ``(earliest, now]`` and how many there were
    (counting stops past ``MAX_MISSED``, as Kubernetes' does)."""
    count, t, last = 0, earliest, None
    while True:
        t = next_time(s, t, tz)
        if t is None or t > now:
            return last, count
        last, count = t, count + 1
        if count > MAX_MISSED:
            return prev_time(s, now, tz), count


def time_zone(cronjob: Obj) -> tzinfo:
    name = (cronjob.get("spec") or {}).get("timeZone")
    return ZoneInfo(name) if name else timezone.utc


def job_name(cronjob: Obj, scheduled: float) -> str:
    return f"{name_of(cronjob)}-{int(scheduled // 60)}"


def job_from_template(cronjob: Obj, scheduled: float, tz: tzinfo = timezone.utc) -> Obj:
    spec = cronjob.get("spec") or {}
    template = deepcopy(spec.get("jobTemplate") or {})
    tmeta = template.get("metadata") or {}
    annotations = dict(tmeta.get("annotations") or {})
    annotations[SCHEDULED_TIMESTAMP] = datetime.fromtimestamp(scheduled, tz).isoformat()
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": job_name(cronjob, scheduled),
                         "namespace": namespace_of(cronjob),
                         "labels": dict(tmeta.get("labels") or {}),
                         "annotations": annotations,
                         "ownerReferences": [owner_reference(cronjob)]},
            "spec": template.get("spec") or {}}


def job_ref(job: Obj) -> Obj:
    md = job["metadata"]
    return {"apiVersion": "batch/v1", "kind": "Job", "name": md["name"],
            "namespace": md.get("namespace"), "uid": md.get("uid"),
            "resourceVersion": md.get("resourceVersion")}


def _start_key(job: Obj) -> tuple[float, str]:
    st = job.get("status") or {}
    t = epoch_of(st.get("startTime")) or epoch_of(job["metadata"].get("creationTimestamp")) or 0
    return t, name_of(job)


def history_to_delete(jobs: list[Obj], successful_limit: int | None,
                      failed_limit: int | None) -> list[Obj]:
    """The oldest finished Jobs beyond each history limit."""
    out: list[Obj] = []
    for type_, limit in (("Complete", successful_limit), ("Failed", failed_limit)):
        if limit is None:
            continue
        done = sorted((j for j in jobs if (finished_condition(j) or {}).get("type") == type_),
                      key=_start_key)
        if len(done) > limit:
            out.extend(done[:len(done) - limit])
    return out


# --- the controller ---------------------------------------------------------------------

class CronJobController:
    name = "cronjob"

    def __init__(self, client: Any, informers: Any, clock: Any, recorder: Any,
                 workers: int = 5):
        self.client = client
        self.clock = clock
        self.recorder = recorder
        self.cronjobs = informers.informer("cronjobs")
        self.jobs = informers.informer("jobs",
                                       indexers={CRONJOB_OWNER_INDEX: controller_uid_index})
        self.controller = Controller("cronjob", self, queue=WorkQueue("cronjob", clock=clock),
                                     workers=workers)
        self.cronjobs.add_handler(self.controller.enqueue,
                                  lambda old, new: self.controller.enqueue(new), None)
        self.jobs.add_handler(self._job_event, lambda old, new: self._job_event(new),
                              self._job_event)

    async def start(self) -> None:
        await self.controller.start()

    def _job_event(self, job: Obj) -> None:
        self.controller.enqueue_owner(job, "CronJob")

    def owned_jobs(self, cronjob: Obj) -> list[Obj]:
        uid = cronjob["metadata"].get("uid")
        return [j for j in self.jobs.by_index(CRONJOB_OWNER_INDEX, uid)
                if namespace_of(j) == namespace_of(cronjob)] if uid else []

    async def reconcile(self, key: str) -> Result | None:
        cached = self.cronjobs.get(key)
        if cached is None:
            return None
        cj = deepcopy(cached)
        spec = cj.get("spec") or {}
        old_status = deepcopy(cj.get("status") or {})
        status = cj.setdefault("status", {})
        jobs = self.owned_jobs(cj)
        by_name = {name_of(j): j for j in jobs}

        # status.active: the unfinished Jobs we own (refs to Jobs gone are dropped)
        active = [j for j in jobs if not is_finished(j) and
                  not j["metadata"].get("deletionTimestamp")]
        status["active"] = [job_ref(j) for j in sorted(active, key=_start_key)]
        last_success = epoch_of(status.get("lastSuccessfulTime"))
        for j in jobs:
            cond = finished_condition(j) or {}
            if cond.get("type") == "Complete":
                done = epoch_of((j.get("status") or {}).get("completionTime")) or \
                    epoch_of(cond.get("lastTransitionTime"))
                if done and (last_success is None or done > last_success):
                    last_success = done
        if last_success is not None:
            status["lastSuccessfulTime"] = rfc3339(last_success)
        if not status["active"]:
            status.pop("active")

        # history limits
        for j in history_to_delete([j for j in jobs if not j["metadata"].get("deletionTimestamp")],
                                   spec.get("successfulJobsHistoryLimit"),
                                   spec.get("failedJobsHistoryLimit")):
            await self._delete_job(cj, j, "SuccessfulDelete")

        result: Result | None = None
        if not cj["metadata"].get("deletionTimestamp") and not spec.get("suspend"):
            result = await self._schedule(cj, status, active, by_name)
        if status != old_status:
            await self.client.update_status("cronjobs", cj)
        return result

    async def _schedule(self, cj: Obj, status: Obj, active: list[Obj],
                        by_name: dict[str, Obj]) -> Result | None:
        spec = cj.get("spec") or {}
        try:
            sched = parse_cron(spec.get("schedule") or "")
            tz = time_zone(cj)
        except Exception as exc:
            await self.recorder.event(cj, "Warning", "UnparseableSchedule",
                                      f"unparseable schedule: {spec.get('schedule')!r}: {exc}")
            return None
        now = wall_now(self.clock)
        earliest = epoch_of(status.get("lastScheduleTime")) or \
            epoch_of(cj["metadata"].get("creationTimestamp")) or now
        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None:
            earliest = max(earliest, now - deadline)
        scheduled, missed = missed_schedules(sched, earliest, now, tz)
        if missed > MAX_MISSED:
            await self.recorder.event(
                cj, "Warning", "TooManyMissedTimes",
                "too many missed start times. Set or decrease .spec.startingDeadlineSeconds "
                "or check clock skew")

        def next_run() -> Result | None:
            nxt = next_time(sched, now, tz)
            return None if nxt is None else Result(requeue_after=nxt - now + NEXT_SCHEDULE_DELTA)

        if scheduled is None:
            return next_run()
        name = job_name(cj, scheduled)
        if name in by_name:  # already made (the status write was lost): just record it
            status["lastScheduleTime"] = rfc3339(scheduled)
            return next_run()
        policy = spec.get("concurrencyPolicy") or "Allow"
        if policy == "Forbid" and active:
            await self.recorder.event(cj, "Normal", "JobAlreadyActive",
                                      "Not starting job because prior execution is running "
                                      "and concurrency policy is Forbid")
            return next_run()
        if policy == "Replace":
            for j in active:
                await self._delete_job(cj, j, "SuccessfulDelete")
            active.clear()
            status.pop("active", None)
        try:
            job = await self.client.create("jobs", job_from_template(cj, scheduled, tz),
                                           namespace_of(cj))
        except AlreadyExists:
            # ours (the cache lags) or someone else's: either way this time is taken
            job = None
        if job is not None:
            await self.recorder.event(cj, "Normal", "SuccessfulCreate",
                                      f"Created job {name_of(job)}")
            status.setdefault("active", []).append(job_ref(job))
        status["lastScheduleTime"] = rfc3339(scheduled)
        return next_run()

    async def _delete_job(self, cj: Obj, job: Obj, reason: str) -> None:
        try:
            await self.client.delete("jobs", name_of(job), namespace_of(job),
                                     propagation_policy="Background",
                                     preconditions={"uid": job["metadata"].get("uid")})
        except NotFound:
            return
        await self.recorder.event(cj, "Normal", reason, f"Deleted job {name_of(job)}")


def new(ctx: Any) -> CronJobController:
    return CronJobController(ctx.client, ctx.informers, ctx.clock,
                             ctx.recorder("cronjob-controller"),
                             workers=max(1, ctx.config.concurrent_syncs))


__all__ = ["CronJobController", "new", "next_time", "prev_time", "missed_schedules",
           "job_name", "job_from_template", "history_to_delete", "SCHEDULED_TIMESTAMP"]
