"""A pod's ``status`` computed from what the runtime shows, as pure functions of plain data.

The pod worker gathers, per container, the latest instance and the one before it, the
waiting reason its last decision left (``CrashLoopBackOff``, ``ErrImageNeverPull``, ...)
and what the probes say, and these functions turn that into the Kubernetes status: the
container statuses, the phase by Kubernetes' ``getPhase`` rules, and the conditions, each
keeping its ``lastTransitionTime`` while its status does not change. No I/O here, so every
rule is unit-tested on dicts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubelet.runtime.base import ContainerInfo
from minik8s.api.meta import Obj
from minik8s.api.quantity import parse_quantity

PENDING, RUNNING, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"
TERMINAL = (SUCCEEDED, FAILED)


@dataclass
class ContainerView:
    """One container of the spec as the pod worker sees it."""
    name: str
    image: str  # the spec's image
    latest: ContainerInfo | None = None
    previous: ContainerInfo | None = None
    waiting: tuple[str, str] | None = None  # (reason, message) the last decision left
    ready: bool = False
    started: bool = False
    image_id: str = ""  # docker-pullable://... or docker://sha256:...


def container_id(info: ContainerInfo) -> str:
    return f"docker://{info.id}"


def image_ref(image_id: str, digests: list[str] | None = None) -> str:
    """The status ``imageID``: the repo digest of a pulled image, else the local id."""
    if digests:
        return f"docker-pullable://{digests[0]}"
    if not image_id:
        return ""
    return f"docker://{image_id if image_id.startswith('sha256:') else 'sha256:' + image_id}"


def terminated_reason(info: ContainerInfo) -> str:
    if info.oom_killed:
        return "OOMKilled"
    if info.state == "created" and info.error:
        return "ContainerCannotRun"
    return "Completed" if info.exit_code == 0 else "Error"


def terminated_state(info: ContainerInfo) -> Obj:
    code = info.exit_code if info.exit_code is not None else (128 if info.error else 0)
    out: Obj = {"exitCode": code, "reason": terminated_reason(info),
                "containerID": container_id(info)}
    if info.error:
        out["message"] = info.error
    if info.started_at:
        out["startedAt"] = info.started_at
    if info.finished_at:
        out["finishedAt"] = info.finished_at
    return out


def _is_dead(info: ContainerInfo | None) -> bool:
    return info is not None and info.state in ("exited", "created")


def container_status(view: ContainerView, default_waiting: str = "ContainerCreating") -> Obj:
    latest, previous = view.latest, view.previous
    st: Obj = {"name": view.name, "image": view.image, "imageID": view.image_id,
               "ready": False, "started": False,
               "restartCount": latest.attempt if latest is not None else 0}
    last: Obj = {}
    if latest is not None and latest.state == "running":
        state: Obj = {"running": {"startedAt": latest.started_at}} if latest.started_at \
            else {"running": {}}
        st["ready"], st["started"] = view.ready, view.started
        if _is_dead(previous):
            last = {"terminated": terminated_state(previous)}
    elif view.waiting is not None:
        reason, message = view.waiting
        state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        if _is_dead(latest):
            last = {"terminated": terminated_state(latest)}
    elif latest is not None and latest.state == "exited":
        state = {"terminated": terminated_state(latest)}
        if _is_dead(previous):
            last = {"terminated": terminated_state(previous)}
    else:
        state = {"waiting": {"reason": default_waiting}}
        if _is_dead(latest):
            last = {"terminated": terminated_state(latest)}
    st["state"] = state
    st["lastState"] = last
    if latest is not None:
        st["containerID"] = container_id(latest)
    return st


def get_phase(spec: Obj, init_statuses: list[Obj], statuses: list[Obj]) -> str:
    """Kubernetes' ``getPhase``, for regular init containers."""
    policy = spec.get("restartPolicy") or "Always"
    pending_init = failed_init = 0
    for st in init_statuses:
        state, last = st.get("state") or {}, (st.get("lastState") or {}).get("terminated")
        if "running" in state:
            pending_init += 1
        elif "terminated" in state:
            if state["terminated"].get("exitCode") != 0:
                failed_init += 1
        elif "waiting" in state:
            if last is not None:
                if last.get("exitCode") != 0:
                    failed_init += 1
            else:
                pending_init += 1
        else:
            pending_init += 1
    unknown = running = waiting = stopped = succeeded = 0
    for st in statuses:
        state, last = st.get("state") or {}, (st.get("lastState") or {}).get("terminated")
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            if state["terminated"].get("exitCode") == 0:
                succeeded += 1
        elif "waiting" in state:
            if last is not None:
                stopped += 1
            else:
                waiting += 1
        else:
            unknown += 1
    if failed_init > 0 and policy == "Never":
        return FAILED
    if pending_init > 0 or failed_init > 0 or waiting > 0:
        return PENDING
    if running > 0 and unknown == 0:
        return RUNNING
    if running == 0 and stopped > 0 and unknown == 0:
        if policy == "Always":
            return RUNNING
        if stopped == succeeded:
            return SUCCEEDED
        if policy == "Never":
            return FAILED
        return RUNNING
    return PENDING


def _condition(old: dict[str, Obj], type_: str, status: bool, now: str, reason: str = "",
               message: str = "") -> Obj:
    value = "True" if status else "False"
    prev = old.get(type_)
    c: Obj = {"type": type_, "status": value,
              "lastTransitionTime": prev.get("lastTransitionTime") if prev and
              prev.get("status") == value and prev.get("lastTransitionTime") else now}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


def conditions(old_status: Obj, phase: str, init_statuses: list[Obj], statuses: list[Obj],
               now: str) -> list[Obj]:
    old = {c.get("type"): c for c in old_status.get("conditions") or [] if isinstance(c, dict)}
    incomplete = [s["name"] for s in init_statuses
                  if ((s.get("state") or {}).get("terminated") or {}).get("exitCode", 1) != 0]
    app_started = any((s.get("state") or {}).get("running") or
                      (s.get("state") or {}).get("terminated") or
                      (s.get("lastState") or {}).get("terminated") for s in statuses)
    initialized = not incomplete or app_started
    unready = [s["name"] for s in statuses if not s.get("ready")]
    out = []
    if initialized:
        out.append(_condition(old, "Initialized", True, now))
    else:
        out.append(_condition(old, "Initialized", False, now, "ContainersNotInitialized",
                              f"containers with incomplete status: [{' '.join(incomplete)}]"))
    if phase == SUCCEEDED:
        out.append(_condition(old, "Ready", False, now, "PodCompleted"))
        out.append(_condition(old, "ContainersReady", False, now, "PodCompleted"))
    elif unready:
        msg = f"containers with unready status: [{' '.join(unready)}]"
        out.append(_condition(old, "Ready", False, now, "ContainersNotReady", msg))
        out.append(_condition(old, "ContainersReady", False, now, "ContainersNotReady", msg))
    else:
        out.append(_condition(old, "Ready", True, now))
        out.append(_condition(old, "ContainersReady", True, now))
    sched = old.get("PodScheduled")
    out.append(sched if sched and sched.get("status") == "True" else
               _condition(old, "PodScheduled", True, now))
    return out


def qos_class(spec: Obj) -> str:
    """Guaranteed, Burstable or BestEffort, by Kubernetes' rules on cpu and memory."""
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    guaranteed = True
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    for c in containers:
        res = c.get("resources") or {}
        req = {k: v for k, v in (res.get("requests") or {}).items() if k in ("cpu", "memory")}
        lim = {k: v for k, v in (res.get("limits") or {}).items() if k in ("cpu", "memory")}
        for k, v in req.items():
            if parse_quantity(v) != 0:
                requests[k] = v
        for k, v in lim.items():
            if parse_quantity(v) != 0:
                limits[k] = v
        if set(lim) != {"cpu", "memory"}:
            guaranteed = False
        for k, v in req.items():
            if k in lim and parse_quantity(lim[k]) != parse_quantity(v):
                guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def pod_status(pod: Obj, init_views: list[ContainerView], views: list[ContainerView], *,
               now: str, host_ip: str, pod_ip: str, initialized: bool) -> Obj:
    """The whole ``status`` the kubelet writes for a pod."""
    spec = pod.get("spec") or {}
    old = pod.get("status") or {}
    init_statuses = [container_status(v, "PodInitializing") for v in init_views]
    app_default = "ContainerCreating" if initialized else "PodInitializing"
    statuses = [container_status(v, app_default) for v in views]
    phase = get_phase(spec, init_statuses, statuses)
    if old.get("phase") in TERMINAL:
        phase = old["phase"]  # a pod never leaves a terminal phase
    status: Obj = {"phase": phase,
                   "conditions": conditions(old, phase, init_statuses, statuses, now),
                   "hostIP": host_ip, "hostIPs": [{"ip": host_ip}] if host_ip else [],
                   "startTime": old.get("startTime") or now,
                   "containerStatuses": statuses, "qosClass": qos_class(spec)}
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    return status


def status_patch(old: Obj, new: Obj) -> Obj:
    """A merge patch from ``old`` to ``new`` at the top level of ``status`` (lists are
    replaced whole, keys the kubelet no longer sets are removed)."""
    patch: Obj = {k: v for k, v in new.items() if old.get(k) != v}
    for k in ("podIP", "podIPs", "initContainerStatuses", "reason", "message"):
        if k in old and k not in new:
            patch[k] = None
    return patch


__all__ = ["ContainerView", "pod_status", "get_phase", "conditions", "container_status",
           "terminated_state", "image_ref", "qos_class", "status_patch", "PENDING", "RUNNING",
           "SUCCEEDED", "FAILED", "TERMINAL"]
