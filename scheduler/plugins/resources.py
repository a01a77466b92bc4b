"""Resources: does the pod fit in what the node has left, and how empty would it stay.

Fit compares the pod's requests (``nodeinfo.pod_requests``: containers summed, init
containers maxed, limits standing in for missing requests) with ``status.allocatable``
minus what the node's pods — bound or assumed — already request, and counts pods against
the ``pods`` allocatable. Reasons are Kubernetes' (``Too many pods``, ``Insufficient cpu``,
...), all of them at once, since a user fixing one wants to know about the others.

LeastAllocated scores with the non-zero requests (best-effort containers count as 100m CPU
and 200 MiB), so that pods with no requests still spread instead of piling onto one node.
"""

from __future__ import annotations

from scheduler.framework import MAX_NODE_SCORE, CycleState, Status
from scheduler.nodeinfo import CPU, MEMORY, PODS, NodeInfo, PodInfo

TOO_MANY_PODS = "Too many pods"


def insufficient(resource: str) -> str:
    return f"Insufficient {resource}"


def fit_reasons(pod: PodInfo, node: NodeInfo) -> list[str]:
    """Every reason the pod does not fit (empty when it fits)."""
    alloc, used = node.allocatable, node.requested
    reasons = []
    if len(node.pods) + 1 > alloc.get(PODS, 0):
        reasons.append(TOO_MANY_PODS)
    for name, want in pod.ordered_requests:
        if want > alloc.get(name, 0) - used.get(name, 0):
            reasons.append(insufficient(name))
    return reasons


class NodeResourcesFit:
    name = "NodeResourcesFit"

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        reasons = fit_reasons(pod, node)
        if not reasons:
            return None
        return Status.unschedulable(*reasons, plugin=self.name)


def least_allocated_score(pod: PodInfo, node: NodeInfo,
                          weights: tuple[tuple[str, int], ...] = ((CPU, 1), (MEMORY, 1))) -> int:
    """``(allocatable - requested) * 100 / allocatable`` per resource, weighted average,
    with the pod itself included in ``requested``."""
    total = wsum = 0
    for name, w in weights:
        cap = node.allocatable.get(name, 0)
        if name == CPU:
            requested = node.non_zero_cpu + pod.non_zero_cpu
        else:
            requested = node.non_zero_memory + pod.non_zero_memory
        if cap == 0 or requested > cap:
            score = 0
        else:
            score = (cap - requested) * MAX_NODE_SCORE // cap
        total += score * w
        wsum += w
    return total // wsum if wsum else 0


class LeastAllocated:
    name = "NodeResourcesLeastAllocated"

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        return least_allocated_score(pod, node)


__all__ = ["NodeResourcesFit", "LeastAllocated", "fit_reasons", "least_allocated_score",
           "insufficient", "TOO_MANY_PODS"]
