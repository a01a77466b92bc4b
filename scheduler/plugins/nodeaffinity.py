"""``nodeSelector`` and required node affinity: the pod names the nodes it may run on.

Both must hold. ``nodeSelectorTerms`` are ORed, the expressions inside one term ANDed, and a
term with no expressions matches no node, as in Kubernetes' ``nodeaffinity`` helpers; a term
that cannot be parsed matches nothing instead of failing the whole pod. Both failures carry
the same reason, Kubernetes' ``ErrReasonPod``.
"""

from __future__ import annotations

from typing import Any, Mapping

from minik8s.api.meta import Obj
from scheduler.framework import SKIP, CycleState, Status
from scheduler.nodeinfo import NodeInfo, PodInfo

ERR_REASON_POD = "node(s) didn't match Pod's node affinity/selector"


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def requirement_matches(req: Obj, values_of: Mapping[str, str]) -> bool:
    """One ``NodeSelectorRequirement`` against labels (or fields)."""
    key = req.get("key") or ""
    op = req.get("operator")
    vals = req.get("values") or []
    present = key in values_of
    if op == "In":
        return present and values_of[key] in vals
    if op == "NotIn":
        return not present or values_of[key] not in vals
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt"):
        if not present or len(vals) != 1:
            return False
        have, want = _int(values_of[key]), _int(vals[0])
        if have is None or want is None:
            return False
        return have > want if op == "Gt" else have < want
    return False


def term_matches(term: Obj, labels: Mapping[str, str], node_name: str) -> bool:
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    if not all(requirement_matches(r, labels) for r in exprs):
        return False
    for f in fields:
        if f.get("key") != "metadata.name" or f.get("operator") not in ("In", "NotIn"):
            return False
        if not requirement_matches(f, {"metadata.name": node_name}):
            return False
    return True


def node_selector_terms_match(terms: list[Obj], labels: Mapping[str, str],
                              node_name: str) -> bool:
    return any(term_matches(t, labels, node_name) for t in terms)


def pod_matches_node(pod: Obj, labels: Mapping[str, str], node_name: str) -> bool:
    """``nodeSelector`` and ``requiredDuringSchedulingIgnoredDuringExecution`` both hold."""
    spec = pod.get("spec") or {}
    for k, v in (spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    req = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
           .get("requiredDuringSchedulingIgnoredDuringExecution"))
    if req is not None:
        return node_selector_terms_match(req.get("nodeSelectorTerms") or [], labels, node_name)
    return True


class NodeAffinity:
    name = "NodeAffinity"

    def pre_filter(self, state: CycleState, pod: PodInfo, snapshot: Any) -> str | None:
        spec = pod.spec
        if not spec.get("nodeSelector") and not (spec.get("affinity") or {}).get("nodeAffinity"):
            return SKIP
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        if pod_matches_node(pod.pod, node.labels, node.name):
            return None
        return Status.unresolvable(ERR_REASON_POD, plugin=self.name)


__all__ = ["NodeAffinity", "pod_matches_node", "node_selector_terms_match", "term_matches",
           "requirement_matches", "ERR_REASON_POD"]
