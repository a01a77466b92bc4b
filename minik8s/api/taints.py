"""Taints and tolerations, as Kubernetes' ``Toleration.ToleratesTaint`` matches them: the
scheduler keeps pods off nodes with them, the node lifecycle controller evicts by them, the
DaemonSet controller places by them, so the rule lives once, here. An empty effect matches
every effect, an empty key with ``Exists`` tolerates everything, ``Equal`` (or no operator)
compares values."""

from __future__ import annotations

from typing import Any, Iterable

NO_SCHEDULE, NO_EXECUTE, PREFER_NO_SCHEDULE = "NoSchedule", "NoExecute", "PreferNoSchedule"
Obj = dict[str, Any]


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
    return op == "Equal" and (toleration.get("value") or "") == (taint.get("value") or "")


def find_untolerated_taint(taints: Iterable[Obj], tolerations: Iterable[Obj],
                           effects: tuple[str, ...] = (NO_SCHEDULE, NO_EXECUTE)) -> Obj | None:
    """The first taint with one of ``effects`` that no toleration tolerates."""
    tols = list(tolerations)
    for taint in taints:
        if (taint.get("effect") or "") in effects and not any(tolerates(t, taint) for t in tols):
            return taint
    return None


__all__ = ["tolerates", "find_untolerated_taint", "NO_SCHEDULE", "NO_EXECUTE",
           "PREFER_NO_SCHEDULE"]
