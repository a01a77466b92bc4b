"""Spreading the replicas of one owner (ReplicaSet, StatefulSet, Job...) across nodes.

Losing a node should not take every replica with it, so among feasible nodes the ones with
fewer pods of the same controller score higher: ``100 * (max - count) / max``, as
Kubernetes' SelectorSpread scored, with the owner read from the controller
``ownerReference`` instead of selectors. Pods with no controller get the same score
everywhere, leaving the choice to the other scorers.
"""

from __future__ import annotations

from scheduler.framework import MAX_NODE_SCORE, CycleState
from scheduler.nodeinfo import NodeInfo, PodInfo


def owner_count(pod: PodInfo, node: NodeInfo) -> int:
    if not pod.owner_uid:
        return 0
    return node.owner_counts.get(pod.owner_uid, 0)


def normalize_spread(counts: list[int]) -> list[int]:
    """Counts of same-owner pods per node -> scores, fewer is better."""
    top = max(counts, default=0)
    if top == 0:
        return [MAX_NODE_SCORE] * len(counts)
    return [MAX_NODE_SCORE * (top - c) // top for c in counts]


class OwnerSpread:
    name = "OwnerSpread"

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        return owner_count(pod, node)

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        scores[:] = normalize_spread(scores)


__all__ = ["OwnerSpread", "owner_count", "normalize_spread"]
