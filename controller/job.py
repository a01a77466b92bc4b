"""The Job controller: run a Job's pods until enough of them succeed, or give up.

Level-triggered like every controller here: ``reconcile(namespace/name)`` reads the Job and
the pods it controls from the shared informers, decides (finished? failed? how many pods
should be active?), makes that one step of progress and writes ``status``. Pod events only
enqueue their owning Job. Counts come from the pods themselves, as Kubernetes' Job
controller did before pod-tracking finalizers; the counts already in ``status`` act as a
floor, so a finished pod deleted by someone else is not counted twice nor forgotten.

Creations and deletions are guarded by *expectations* (client-go's ``ControllerExpectations``):
after creating N pods the Job is not managed again until the informer has shown N pod adds
(or a timeout passed), so a cache that lags our own writes never causes extra pods. The
small ``Expectations`` class lives here because Jobs were built alongside ``controller/util.py``;
the two are the same idea.

Time comes from ``ctx.clock``: ``activeDeadlineSeconds`` and ``ttlSecondsAfterFinished`` are
``Result(requeue_after=...)`` waits on that clock, so tests drive them with a fake one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone
from typing import Any

from minik8s.api.errors import AlreadyExists, NotFound
from minik8s.api.meta import Obj, deepcopy, key_of, name_of, namespace_of, parse_time, split_key
from minik8s.runtime import Controller, RealClock, Result, WorkQueue

log = logging.getLogger(__name__)

EXPECTATIONS_TIMEOUT = 300.0
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
JOB_OWNER_INDEX = "job-controller/owner-uid"


# --- time -------------------------------------------------------------------------------

def wall_now(clock: Any) -> float:
    """Epoch seconds from the controller's clock: a ``RealClock`` counts monotonic time,
    so its wall time is ``time.time()``; a test clock's ``now()`` is taken as epoch
    seconds (a ``wall()`` method wins when a clock has one)."""
    if isinstance(clock, RealClock):
        return time.time()
    wall = getattr(clock, "wall", None)
    return float(wall()) if callable(wall) else float(clock.now())


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch_of(value: Any) -> float | None:
    parsed = parse_time(value)
    return parsed.timestamp() if parsed else None


# --- shared helpers (also used by the CronJob controller) -------------------------------

def controller_uid_index(obj: Obj) -> list[str]:
    """Index objects by the uid of their controlling owner."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("uid"):
            return [ref["uid"]]
    return []


def owner_reference(owner: Obj, *, block: bool = True) -> Obj:
    md = owner["metadata"]
    return {"apiVersion": owner.get("apiVersion") or "batch/v1", "kind": owner.get("kind") or "Job",
            "name": md["name"], "uid": md["uid"], "controller": True,
            "blockOwnerDeletion": block}


def condition(obj: Obj, type_: str) -> Obj | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None


def finished_condition(job: Obj) -> Obj | None:
    """The Job's ``Complete`` or ``Failed`` condition if it is True (the Job is finished)."""
    for type_ in ("Complete", "Failed"):
        c = condition(job, type_)
        if c is not None and c.get("status") == "True":
            return c
    return None


def is_finished(job: Obj) -> bool:
    return finished_condition(job) is not None


def set_condition(status: Obj, type_: str, cond_status: str, reason: str, message: str,
                  now: str) -> bool:
    """Set a condition in ``status``; True if anything changed. ``lastTransitionTime``
    moves only when the status flips."""
    conditions = status.setdefault("conditions", [])
    for c in conditions:
        if c.get("type") == type_:
            if (c.get("status"), c.get("reason"), c.get("message")) == (cond_status, reason,
                                                                        message):
                return False
            if c.get("status") != cond_status:
                c["lastTransitionTime"] = now
            c.update(status=cond_status, reason=reason, message=message, lastProbeTime=now)
            return True
    conditions.append({"type": type_, "status": cond_status, "reason": reason,
                       "message": message, "lastProbeTime": now, "lastTransitionTime": now})
    return True


class Expectations:
    """How many adds and deletes of its pods a controller still waits to see, per key.
    Count-based, so an informer event that arrives before the create call returns is
    still counted; entries expire so a lost event never blocks a key forever."""

    def __init__(self, clock: Any, timeout: float = EXPECTATIONS_TIMEOUT):
        self.clock = clock
        self.timeout = timeout
        self._items: dict[str, list[float]] = {}  # key -> [adds, deletes, set at]

    def expect(self, key: str, adds: int = 0, deletes: int = 0) -> None:
        self._items[key] = [adds, deletes, self.clock.now()]

    def raise_by(self, key: str, adds: int = 0, deletes: int = 0) -> None:
        item = self._items.setdefault(key, [0, 0, self.clock.now()])
        item[0] += adds
        item[1] += deletes

    def lower(self, key: str, adds: int = 0, deletes: int = 0) -> None:
        item = self._items.get(key)
        if item is not None:
            item[0] -= adds
            item[1] -= deletes

    def creation_observed(self, key: str) -> None:
        self.lower(key, adds=1)

    def deletion_observed(self, key: str) -> None:
        self.lower(key, deletes=1)

    def satisfied(self, key: str) -> bool:
        item = self._items.get(key)
        if item is None:
            return True
        if item[0] <= 0 and item[1] <= 0:
            return True
        return self.clock.now() - item[2] > self.timeout

    def remaining_timeout(self, key: str) -> float:
        item = self._items.get(key)
        return 0.0 if item is None else max(0.0, item[2] + self.timeout - self.clock.now())

    def delete(self, key: str) -> None:
        self._items.pop(key, None)


# --- pods -------------------------------------------------------------------------------

def _phase(pod: Obj) -> str:
    return (pod.get("status") or {}).get("phase") or "Pending"


def _is_ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _restarts(pod: Obj) -> int:
    return sum(int(cs.get("restartCount") or 0)
               for key in ("initContainerStatuses", "containerStatuses")
               for cs in (pod.get("status") or {}).get(key) or [])


def _is_active(pod: Obj) -> bool:
    return _phase(pod) not in ("Succeeded", "Failed") and \
        not (pod.get("metadata") or {}).get("deletionTimestamp")


def _index_of(pod: Obj) -> int | None:
    value = ((pod.get("metadata") or {}).get("annotations") or {}).get(COMPLETION_INDEX)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def format_indexes(indexes: set[int]) -> str:
    """``{0,1,2,4}`` -> ``"0-2,4"`` (the ``completedIndexes`` format)."""
    out, run = [], []
    for i in sorted(indexes):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [i]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def pod_from_template(job: Obj, index: int | None = None) -> Obj:
    """A pod for ``job`` from its template, controlled by the Job."""
    spec = job.get("spec") or {}
    template = deepcopy(spec.get("template") or {})
    tmeta = template.get("metadata") or {}
    name = name_of(job)
    md: Obj = {"generateName": f"{name}-" if index is None else f"{name}-{index}-",
               "namespace": namespace_of(job),
               "labels": dict(tmeta.get("labels") or {}),
               "ownerReferences": [owner_reference(job)]}
    annotations = dict(tmeta.get("annotations") or {})
    pod_spec = template.get("spec") or {}
    if index is not None:
        annotations[COMPLETION_INDEX] = str(index)
        md["labels"][COMPLETION_INDEX] = str(index)
        pod_spec.setdefault("hostname", f"{name}-{index}")
        for c in pod_spec.get("containers") or []:
            env = c.setdefault("env", [])
            if not any(e.get("name") == "JOB_COMPLETION_INDEX" for e in env):
                env.append({"name": "JOB_COMPLETION_INDEX", "value": str(index)})
    if annotations:
        md["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": pod_spec}


# --- the controller ---------------------------------------------------------------------

class JobController:
    name = "job"

    def __init__(self, client: Any, informers: Any, clock: Any, recorder: Any,
                 workers: int = 5):
        self.client = client
        self.clock = clock
        self.recorder = recorder
        self.jobs = informers.informer("jobs")
        self.pods = informers.informer("pods", indexers={JOB_OWNER_INDEX: controller_uid_index})
        self.expectations = Expectations(clock)
        self.controller = Controller("job", self, queue=WorkQueue("job", clock=clock),
                                     workers=workers)
        self.jobs.add_handler(self.controller.enqueue, self._job_updated,
                              self._job_deleted)
        self.pods.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)

    async def start(self) -> None:
        await self.controller.start()

    # --- handlers -------------------------------------------------------------------

    def _job_updated(self, old: Obj, new: Obj) -> None:
        self.controller.enqueue(new)

    def _job_deleted(self, job: Obj) -> None:
        self.expectations.delete(key_of(job))

    def _pod_added(self, pod: Obj) -> None:
        key = self.controller.enqueue_owner(pod, "Job")
        if key is not None:
            self.expectations.creation_observed(key)
            if (pod.get("metadata") or {}).get("deletionTimestamp"):
                self.expectations.deletion_observed(key)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        key = self.controller.enqueue_owner(new, "Job")
        if key is not None and (new.get("metadata") or {}).get("deletionTimestamp") and \
                not (old.get("metadata") or {}).get("deletionTimestamp"):
            self.expectations.deletion_observed(key)

    def _pod_deleted(self, pod: Obj) -> None:
        key = self.controller.enqueue_owner(pod, "Job")
        if key is not None and not (pod.get("metadata") or {}).get("deletionTimestamp"):
            self.expectations.deletion_observed(key)

    # --- reconcile ------------------------------------------------------------------

    def owned_pods(self, job: Obj) -> list[Obj]:
        uid = job["metadata"].get("uid")
        return [p for p in self.pods.by_index(JOB_OWNER_INDEX, uid)
                if namespace_of(p) == namespace_of(job)] if uid else []

    async def reconcile(self, key: str) -> Result | None:
        cached = self.jobs.get(key)
        if cached is None:
            self.expectations.delete(key)
            return None
        job = deepcopy(cached)
        if job["metadata"].get("deletionTimestamp"):
            return None
        if is_finished(job):
            return await self._finished(key, job)

        spec, old_status = job.get("spec") or {}, deepcopy(job.get("status") or {})
        status = job.setdefault("status", {})
        now = wall_now(self.clock)
        stamp = rfc3339(now)
        pods = self.owned_pods(job)
        active = [p for p in pods if _is_active(p)]
        indexed = spec.get("completionMode") == "Indexed"
        succeeded_pods = [p for p in pods if _phase(p) == "Succeeded"]
        failed_pods = [p for p in pods if _phase(p) == "Failed"]
        completed_indexes: set[int] = set()
        if indexed:
            completed_indexes = {i for i in map(_index_of, succeeded_pods)
                                 if i is not None and i < (spec.get("completions") or 0)}
            succeeded = len(completed_indexes)
        else:
            succeeded = max(len(succeeded_pods), int(old_status.get("succeeded") or 0))
        failed = max(len(failed_pods), int(old_status.get("failed") or 0))
        suspended = bool(spec.get("suspend"))
        result: Result | None = None

        if not suspended and not status.get("startTime"):
            status["startTime"] = stamp

        # --- has the Job failed? ------------------------------------------------------
        backoff_limit = spec.get("backoffLimit", 6)
        restart_failures = 0
        if (spec.get("template") or {}).get("spec", {}).get("restartPolicy") == "OnFailure":
            restart_failures = sum(_restarts(p) for p in active)
        failure: tuple[str, str] | None = None
        if failed + restart_failures > backoff_limit:
            failure = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
        deadline = spec.get("activeDeadlineSeconds")
        started = epoch_of(status.get("startTime"))
        if failure is None and deadline is not None and started is not None and not suspended:
            remaining = started + deadline - now
            if remaining <= 0:
                failure = ("DeadlineExceeded", "Job was active longer than specified deadline")
            else:
                result = Result(requeue_after=remaining)

        completions = spec.get("completions")
        parallelism = spec.get("parallelism", 1)
        if failure is not None:
            await self._delete_pods(key, job, active)
            set_condition(status, "Failed", "True", failure[0], failure[1], stamp)
            active_count = 0
            result = None
            await self.recorder.event(job, "Warning", failure[0], failure[1])
        elif (completions is not None and succeeded >= completions) or \
                (completions is None and succeeded > 0 and not active):
            await self._delete_pods(key, job, active)
            set_condition(status, "Complete", "True", "CompletionsReached",
                          "Reached expected number of succeeded pods", stamp)
            status["completionTime"] = stamp
            active_count = 0
            result = None
            await self.recorder.event(job, "Normal", "Completed", "Job completed")
        elif suspended:
            await self._delete_pods(key, job, active)
            active_count = 0
            if set_condition(status, "Suspended", "True", "JobSuspended", "Job suspended",
                             stamp):
                await self.recorder.event(job, "Normal", "Suspended", "Job suspended")
            result = None
        else:
            if condition(job, "Suspended") and condition(job, "Suspended").get("status") == "True":
                set_condition(status, "Suspended", "False", "JobResumed", "Job resumed", stamp)
                status["startTime"] = stamp
                await self.recorder.event(job, "Normal", "Resumed", "Job resumed")
            active_count = len(active)
            if self.expectations.satisfied(key):
                active_count = await self._manage(key, job, active, succeeded, completions,
                                                  parallelism, completed_indexes if indexed
                                                  else None)
            else:
                wait = self.expectations.remaining_timeout(key)
                if wait > 0 and (result is None or (result.requeue_after or 0) > wait):
                    result = Result(requeue_after=wait)

        status["active"] = active_count
        status["succeeded"] = succeeded
        status["failed"] = failed
        status["ready"] = sum(1 for p in active if _is_ready(p)) if active_count else 0
        status["terminating"] = sum(1 for p in pods if _phase(p) not in ("Succeeded", "Failed")
                                    and p["metadata"].get("deletionTimestamp"))
        if indexed:
            status["completedIndexes"] = format_indexes(completed_indexes)
        if status != old_status:
            job["status"] = status
            await self.client.update_status("jobs", job)
        if is_finished(job):
            return await self._ttl(key, job)
        return result

    async def _manage(self, key: str, job: Obj, active: list[Obj], succeeded: int,
                      completions: int | None, parallelism: int,
                      completed: set[int] | None) -> int:
        """Create or delete pods so the right number are active; the active count after."""
        if completions is None:
            want = min(len(active), parallelism) if succeeded > 0 else parallelism
        else:
            want = max(0, min(parallelism, completions - succeeded))
        if completed is not None:
            return await self._manage_indexed(key, job, active, completions or 0,
                                              parallelism, completed)
        if len(active) > want:
            # not ready and newest first
            newest_first = sorted(active, reverse=True,
                                  key=lambda p: p["metadata"].get("creationTimestamp") or "")
            extra = sorted(newest_first, key=_is_ready)[:len(active) - want]
            await self._delete_pods(key, job, extra)
            return want
        if len(active) < want:
            created = await self._create_pods(key, job, [None] * (want - len(active)))
            return len(active) + created
        return len(active)

    async def _manage_indexed(self, key: str, job: Obj, active: list[Obj], completions: int,
                              parallelism: int, completed: set[int]) -> int:
        by_index: dict[int, list[Obj]] = {}
        extra: list[Obj] = []
        for p in active:
            i = _index_of(p)
            if i is None or i >= completions or i in completed:
                extra.append(p)
            else:
                by_index.setdefault(i, []).append(p)
        for pods in by_index.values():  # one pod per index
            extra.extend(pods[1:])
        keep = len(by_index)
        if keep > parallelism:
            for i in sorted(by_index, reverse=True)[:keep - parallelism]:
                extra.extend(by_index.pop(i))
            keep = parallelism
        if extra:
            await self._delete_pods(key, job, extra)
        missing = [i for i in range(completions) if i not in completed and i not in by_index]
        todo = missing[:max(0, parallelism - keep)]
        created = await self._create_pods(key, job, todo) if todo else 0
        return keep + created

    async def _create_pods(self, key: str, job: Obj, indexes: list[int | None]) -> int:
        self.expectations.raise_by(key, adds=len(indexes))

        async def one(index: int | None) -> bool:
            try:
                pod = await self.client.create("pods", pod_from_template(job, index),
                                               namespace_of(job))
            except AlreadyExists:
                self.expectations.creation_observed(key)
                return False
            except Exception:
                self.expectations.creation_observed(key)
                raise
            await self.recorder.event(job, "Normal", "SuccessfulCreate",
                                      f"Created pod: {name_of(pod)}")
            return True

        results = await asyncio.gather(*(one(i) for i in indexes), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        return sum(1 for r in results if r is True)

    async def _delete_pods(self, key: str, job: Obj, pods: list[Obj]) -> None:
        if not pods:
            return
        self.expectations.raise_by(key, deletes=len(pods))

        async def one(pod: Obj) -> None:
            try:
                await self.client.delete("pods", name_of(pod), namespace_of(pod),
                                         preconditions={"uid": pod["metadata"]["uid"]})
            except NotFound:
                self.expectations.deletion_observed(key)
                return
            except Exception:
                self.expectations.deletion_observed(key)
                raise
            await self.recorder.event(job, "Normal", "SuccessfulDelete",
                                      f"Deleted pod: {name_of(pod)}")

        results = await asyncio.gather(*(one(p) for p in pods), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]

    async def _finished(self, key: str, job: Obj) -> Result | None:
        """A finished Job: stop pods still running, then wait out its TTL."""
        leftovers = [p for p in self.owned_pods(job) if _is_active(p)]
        if leftovers and self.expectations.satisfied(key):
            await self._delete_pods(key, job, leftovers)
        return await self._ttl(key, job)

    async def _ttl(self, key: str, job: Obj) -> Result | None:
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        if ttl is None:
            return None
        cond = finished_condition(job) or {}
        finished_at = epoch_of((job.get("status") or {}).get("completionTime")) \
            or epoch_of(cond.get("lastTransitionTime"))
        if finished_at is None:
            return None
        remaining = finished_at + ttl - wall_now(self.clock)
        if remaining > 0:
            return Result(requeue_after=remaining)
        # check the live object: the TTL may have been changed since the cache saw it
        ns, name = split_key(key)
        live = await self.client.get("jobs", name, ns)
        if live["metadata"].get("uid") != job["metadata"].get("uid") or not is_finished(live):
            return None
        live_ttl = (live.get("spec") or {}).get("ttlSecondsAfterFinished")
        if live_ttl is None:
            return None
        if live_ttl != ttl:
            return await self._ttl(key, live)
        await self.client.delete("jobs", name, ns, propagation_policy="Background",
                                 preconditions={"uid": live["metadata"]["uid"]})
        return None


def new(ctx: Any) -> JobController:
    return JobController(ctx.client, ctx.informers, ctx.clock, ctx.recorder("job-controller"),
                         workers=max(1, ctx.config.concurrent_syncs))


__all__ = ["JobController", "new", "Expectations", "pod_from_template", "wall_now", "rfc3339",
           "epoch_of", "is_finished", "finished_condition", "controller_uid_index",
           "owner_reference", "set_condition", "format_indexes"]
