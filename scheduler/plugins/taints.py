"""Taints and tolerations: a node repels pods that do not tolerate its taints.

Only ``NoSchedule`` and ``NoExecute`` taints keep a pod off a node (``PreferNoSchedule`` is a
scoring hint). The matching rules are Kubernetes' ``Toleration.ToleratesTaint``: an empty
effect matches every effect, an empty key with ``Exists`` tolerates everything, ``Equal``
(or no operator) compares values.
"""

from __future__ import annotations

from typing import Iterable

from minik8s.api.meta import Obj
from scheduler.framework import CycleState, Status
from scheduler.nodeinfo import NodeInfo, PodInfo

NO_SCHEDULE, NO_EXECUTE, PREFER_NO_SCHEDULE = "NoSchedule", "NoExecute", "PreferNoSchedule"
DO_NOT_SCHEDULE = (NO_SCHEDULE, NO_EXECUTE)


def untolerated_taint_reason(taint: Obj) -> str:
    return f"node(s) had untolerated taint {{{taint.get('key') or ''}: {taint.get('value') or ''}}}"


def tolerates(toleration: Obj, taint: Obj) -> bool:
    effect = toleration.get("effect") or ""
    if effect and effect != (taint.get("effect") or ""):
        return False
    key = toleration.get("key") or ""
    if key and key != (taint.get("key") or ""):
        return False
    op = toleration.get("operator") or "Equal"
    if op == "Exists":
        return True
    if op == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def find_untolerated_taint(taints: Iterable[Obj], tolerations: Iterable[Obj],
                           effects: tuple[str, ...] = DO_NOT_SCHEDULE) -> Obj | None:
    """The first taint with one of ``effects`` that no toleration tolerates."""
    tols = list(tolerations)
    for taint in taints:
        if (taint.get("effect") or "") not in effects:
            continue
        if not any(tolerates(t, taint) for t in tols):
            return taint
    return None


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
