"""Required inter-pod anti-affinity, in both directions.

A pod may refuse to share a topology domain (a node, for ``kubernetes.io/hostname``) with
pods matching its terms, and pods already placed may refuse the newcomer. Both are checked,
as Kubernetes' InterPodAffinity filter does, with its reasons: the newcomer's own rules give
``node(s) didn't match pod anti-affinity rules``, the placed pods' rules give ``node(s)
didn't satisfy existing pods anti-affinity rules``. Domains are node label values, so any
``topologyKey`` works; a node without the label is in no domain and never conflicts.

The forbidden domains are computed once per cycle from the snapshot (``pre_filter``), so the
per-node check is a set lookup; pods placed but not yet confirmed (assumed) count, which is
what keeps a burst of replicas apart.
"""

from __future__ import annotations

from scheduler.cache import Snapshot
from scheduler.framework import SKIP, CycleState, Status
from scheduler.nodeinfo import NodeInfo, PodInfo

ERR_REASON_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
ERR_REASON_EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"
HOSTNAME = "kubernetes.io/hostname"

_STATE = "InterPodAntiAffinity"

Domains = dict[str, set[str]]


def incoming_forbidden(pod: PodInfo, nodes: list[NodeInfo]) -> Domains:
    """Domains holding a pod that one of ``pod``'s anti-affinity terms matches."""
    out: Domains = {}
    if not pod.anti_affinity:
        return out
    for ni in nodes:
        if not ni.pods:
            continue
        for term in pod.anti_affinity:
            value = ni.labels.get(term.topology_key)
            if value is None or value in out.get(term.topology_key, ()):
                continue
            if any(term.matches(p) for p in ni.pods.values() if p.key != pod.key):
                out.setdefault(term.topology_key, set()).add(value)
    return out


def existing_forbidden(pod: PodInfo, nodes: list[NodeInfo]) -> Domains:
    """Domains holding a pod whose anti-affinity terms match ``pod``."""
    out: Domains = {}
    for ni in nodes:
        for existing in ni.anti_affinity_pods:
            if existing.key == pod.key:
                continue
            for term in existing.anti_affinity:
                value = ni.labels.get(term.topology_key)
                if value is not None and term.matches(pod):
                    out.setdefault(term.topology_key, set()).add(value)
    return out


def _in(domains: Domains, node: NodeInfo) -> bool:
    for key, values in domains.items():
        v = node.labels.get(key)
        if v is not None and v in values:
            return True
    return False


def check_anti_affinity(pod: PodInfo, node: NodeInfo, incoming: Domains,
                        existing: Domains) -> Status | None:
    if incoming and _in(incoming, node):
        return Status.unschedulable(ERR_REASON_ANTI_AFFINITY, plugin=InterPodAntiAffinity.name)
    if existing and _in(existing, node):
        return Status.unschedulable(ERR_REASON_EXISTING_ANTI_AFFINITY,
                                    plugin=InterPodAntiAffinity.name)
    return None


class InterPodAntiAffinity:
    name = "InterPodAffinity"

    def pre_filter(self, state: CycleState, pod: PodInfo, snapshot: Snapshot) -> str | None:
        incoming = incoming_forbidden(pod, snapshot.nodes) if pod.anti_affinity else {}
        existing = (existing_forbidden(pod, snapshot.nodes_with_anti_affinity)
                    if snapshot.nodes_with_anti_affinity else {})
        if not incoming and not existing:
            return SKIP
        state[_STATE] = (incoming, existing)
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        incoming, existing = state.get(_STATE) or ({}, {})
        if not incoming and not existing:
            return None
        return check_anti_affinity(pod, node, incoming, existing)


__all__ = ["InterPodAntiAffinity", "incoming_forbidden", "existing_forbidden",
           "check_anti_affinity", "ERR_REASON_ANTI_AFFINITY",
           "ERR_REASON_EXISTING_ANTI_AFFINITY", "HOSTNAME"]
