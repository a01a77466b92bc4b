"""Whether a node takes new pods at all: cordoned (``spec.unschedulable``) or not Ready.

Kubernetes expresses both as taints (``node.kubernetes.io/unschedulable`` and the
``not-ready`` / ``unreachable`` taints the node lifecycle controller adds), so a pod that
tolerates the taint may still land there (DaemonSet pods do). Here the Ready condition is
read directly as well, so a node whose kubelet stopped reporting is avoided even before a
controller has tainted it; the reason is worded as the taint it stands for.
"""

from __future__ import annotations

from scheduler.framework import CycleState, Status
from scheduler.nodeinfo import NodeInfo, PodInfo
from scheduler.plugins.taints import NO_SCHEDULE, tolerates, untolerated_taint_reason

ERR_REASON_UNSCHEDULABLE = "node(s) were unschedulable"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"


def _tolerated(pod: PodInfo, taint: dict) -> bool:
    return any(tolerates(t, taint) for t in pod.spec.get("tolerations") or ())


def check_unschedulable(pod: PodInfo, node: NodeInfo) -> Status | None:
    if not node.unschedulable:
        return None
    if _tolerated(pod, {"key": TAINT_UNSCHEDULABLE, "effect": NO_SCHEDULE}):
        return None
    return Status.unresolvable(ERR_REASON_UNSCHEDULABLE, plugin=NodeUnschedulable.name)


def readiness_taint(node: NodeInfo) -> dict | None:
    """The taint a node's Ready condition stands for: none when True, ``not-ready`` when
    False or missing, ``unreachable`` when Unknown."""
    status = node.ready_status
    if status == "True":
        return None
    key = TAINT_UNREACHABLE if status == "Unknown" else TAINT_NOT_READY
    return {"key": key, "effect": NO_SCHEDULE}


def check_ready(pod: PodInfo, node: NodeInfo) -> Status | None:
    taint = readiness_taint(node)
    if taint is None or _tolerated(pod, taint):
        return None
    return Status.unresolvable(untolerated_taint_reason(taint), plugin=NodeReady.name)


class NodeUnschedulable:
    name = "NodeUnschedulable"

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        return check_unschedulable(pod, node)


class NodeReady:
    name = "NodeReady"

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        return check_ready(pod, node)


__all__ = ["NodeUnschedulable", "NodeReady", "check_unschedulable", "check_ready",
           "readiness_taint", "ERR_REASON_UNSCHEDULABLE", "TAINT_UNSCHEDULABLE",
           "TAINT_NOT_READY", "TAINT_UNREACHABLE"]
