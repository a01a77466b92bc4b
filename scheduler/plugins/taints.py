"""Taints and tolerations: a node repels pods that do not tolerate its taints.

Only ``NoSchedule`` and ``NoExecute`` taints keep a pod off a node (``PreferNoSchedule`` is a
scoring hint). The matching rules are Kubernetes' ``Toleration.ToleratesTaint``: an empty
effect matches every effect, an empty key with ``Exists`` tolerates everything, ``Equal``
(or no operator) compares values.
"""

from __future__ import annotations


from minik8s.api.meta import Obj
from minik8s.api.taints import (NO_EXECUTE, NO_SCHEDULE, PREFER_NO_SCHEDULE,
                                 find_untolerated_taint, tolerates)
from scheduler.framework import CycleState, Status
from scheduler.nodeinfo import NodeInfo, PodInfo

DO_NOT_SCHEDULE = (NO_SCHEDULE, NO_EXECUTE)


def untolerated_taint_reason(taint: Obj) -> str:
    return f"node(s) had untolerated taint {{{taint.get('key') or ''}: {taint.get('value') or ''}}}"


def check_taints(pod: PodInfo, node: NodeInfo) -> Status | None:
    taints = node.taints
    if not taints:
        return None
    bad = find_untolerated_taint(taints, pod.spec.get("tolerations") or ())
    if bad is None:
        return None
    return Status.unresolvable(untolerated_taint_reason(bad), plugin=TaintToleration.name)


class TaintToleration:
    name = "TaintToleration"

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        return check_taints(pod, node)


__all__ = ["TaintToleration", "tolerates", "find_untolerated_taint", "check_taints",
           "untolerated_taint_reason", "NO_SCHEDULE", "NO_EXECUTE", "PREFER_NO_SCHEDULE",
           "DO_NOT_SCHEDULE"]
