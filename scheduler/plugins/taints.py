"""Taints and tolerations: a node repels pods that do not tolerate its taints.

Only ``NoSchedule`` and ``NoExecute`` taints keep a pod off a node; ``PreferNoSchedule`` is a
scoring hint, as in Kubernetes' TaintToleration score: the fewer such taints a node has that
the pod does not tolerate (counting only tolerations with an empty or ``PreferNoSchedule``
effect), the higher it scores, so a soft-tainted node is used only when the others do not
fit or score much better. The matching rules are Kubernetes' ``Toleration.ToleratesTaint``: an empty
effect matches every effect, an empty key with ``Exists`` tolerates everything, ``Equal``
(or no operator) compares values.
"""

from __future__ import annotations

from typing import Any

from minik8s.api.meta import Obj
from minik8s.api.taints import (NO_EXECUTE, NO_SCHEDULE, PREFER_NO_SCHEDULE,
                                 find_untolerated_taint, tolerates)
from scheduler.framework import MAX_NODE_SCORE, SKIP, CycleState, Status
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


def intolerable_prefer_no_schedule(pod: PodInfo, node: NodeInfo) -> int:
    """How many of the node's PreferNoSchedule taints the pod does not tolerate."""
    taints = [t for t in node.taints if t.get("effect") == PREFER_NO_SCHEDULE]
    if not taints:
        return 0
    tols = [t for t in pod.spec.get("tolerations") or ()
            if (t.get("effect") or "") in ("", PREFER_NO_SCHEDULE)]
    return sum(1 for taint in taints if not any(tolerates(t, taint) for t in tols))


def normalize_reverse(counts: list[int]) -> list[int]:
    """Counts -> scores, fewer is better (Kubernetes' DefaultNormalizeScore, reversed)."""
    top = max(counts, default=0)
    if top == 0:
        return [MAX_NODE_SCORE] * len(counts)
    return [MAX_NODE_SCORE - MAX_NODE_SCORE * c // top for c in counts]


class TaintToleration:
    name = "TaintToleration"

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        return check_taints(pod, node)

    def pre_score(self, state: CycleState, pod: PodInfo, snapshot: Any) -> str | None:
        """SKIP when no node has a PreferNoSchedule taint: every score would be the same."""
        if any(t.get("effect") == PREFER_NO_SCHEDULE for n in snapshot.nodes for t in n.taints):
            return None
        return SKIP

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        return intolerable_prefer_no_schedule(pod, node)

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        scores[:] = normalize_reverse(scores)


__all__ = ["TaintToleration", "tolerates", "find_untolerated_taint", "check_taints",
           "intolerable_prefer_no_schedule", "normalize_reverse",
           "untolerated_taint_reason", "NO_SCHEDULE", "NO_EXECUTE", "PREFER_NO_SCHEDULE",
           "DO_NOT_SCHEDULE"]
