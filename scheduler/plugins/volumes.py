"""Volume binding: a pod using a PersistentVolumeClaim goes where the claim's volume lives.

A claim here is backed by a Docker named volume on one node, created by the kubelet that
first mounts it; that kubelet binds the claim by writing the ``minik8s.io/node`` annotation
(``CLAIM_NODE_ANNOTATION``). So a pod whose claim is bound may only run on that node, a pod
whose claim is still unbound may run anywhere (the node it lands on becomes the claim's), and
a pod whose claim does not exist cannot be scheduled yet (Kubernetes' wording:
``persistentvolumeclaim "x" not found``). Two claims bound to different nodes make the pod
unschedulable everywhere.

The claims come from a lookup the scheduler passes in (its PVC informer), so the plugin stays
a pure function of that lookup, the pod and the node.
"""

from __future__ import annotations

from typing import Callable

from minik8s.api.meta import Obj
from scheduler.framework import SKIP, CycleState, Status
from scheduler.nodeinfo import NodeInfo, PodInfo

CLAIM_NODE_ANNOTATION = "minik8s.io/node"
ERR_CONFLICT = "node(s) had volume node affinity conflict"
_STATE_KEY = "VolumeBinding"

ClaimLookup = Callable[[str, str], "Obj | None"]


def claim_names(pod: Obj) -> list[str]:
    return [v["persistentVolumeClaim"].get("claimName") or ""
            for v in (pod.get("spec") or {}).get("volumes") or []
            if isinstance(v, dict) and isinstance(v.get("persistentVolumeClaim"), dict)]


def claim_node(claim: Obj) -> str:
    return ((claim.get("metadata") or {}).get("annotations") or {}).get(
        CLAIM_NODE_ANNOTATION) or ""


def required_node(pod: PodInfo, lookup: ClaimLookup) -> tuple[set[str], str]:
    """(nodes the pod's bound claims pin it to, a reason the pod fits nowhere or "")."""
    nodes: set[str] = set()
    for name in claim_names(pod.pod):
        claim = lookup(pod.namespace, name)
        if claim is None:
            return nodes, f'persistentvolumeclaim "{name}" not found'
        if (claim.get("metadata") or {}).get("deletionTimestamp"):
            return nodes, f'persistentvolumeclaim "{name}" is being deleted'
        node = claim_node(claim)
        if node:
            nodes.add(node)
    return nodes, ""


class VolumeBinding:
    name = "VolumeBinding"

    def __init__(self, lookup: ClaimLookup | None = None):
        self.lookup = lookup

    def pre_filter(self, state: CycleState, pod: PodInfo, snapshot: object) -> str | None:
        if self.lookup is None or not claim_names(pod.pod):
            return SKIP
        state[_STATE_KEY] = required_node(pod, self.lookup)
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        nodes, reason = state.get(_STATE_KEY) or (set(), "")
        if reason:
            return Status.unresolvable(reason, plugin=self.name)
        if nodes and (len(nodes) > 1 or node.name not in nodes):
            return Status.unresolvable(ERR_CONFLICT, plugin=self.name)
        return None


__all__ = ["VolumeBinding", "CLAIM_NODE_ANNOTATION", "claim_names", "claim_node",
           "required_node", "ERR_CONFLICT"]
