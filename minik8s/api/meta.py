"""Small helpers over objects kept as plain dicts in the Kubernetes JSON shape. Objects stay
dicts end to end (wire, etcd, caches) so that unknown fields survive a round trip and no
schema has to be kept in step with Kubernetes'."""

from __future__ import annotations

import copy
from datetime import datetime, timezone
from typing import Any

Obj = dict[str, Any]


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def human_duration(seconds: float) -> str:
    """kubectl's age format (apimachinery ``duration.HumanDuration``): ~2-3 significant figures.

    ``5s`` below two minutes, ``3m2s`` below ten, ``45m`` below three hours, ``4h30m`` below
    eight, ``30h`` below two days, ``2d3h`` below eight days, ``45d`` below two years,
    ``2y30d`` below eight, then ``9y``. Up to one second in the future reads ``0s`` (clock
    skew); further is ``<invalid>``."""
    whole = int(seconds)  # truncates toward zero, as Go's int() does
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        rest = whole % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        rest = hours % 24
        return f"{days}d{rest}h" if rest else f"{days}d"
    if hours < 24 * 365 * 2:
        return f"{days}d"
    years = days // 365
    if hours < 24 * 365 * 8:
        rest = days % 365
        return f"{years}y{rest}d" if rest else f"{years}y"
    return f"{years}y"


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp as an aware datetime, or None for anything else."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def meta(obj: Obj) -> Obj:
    m = obj.get("metadata")
    if not isinstance(m, dict):
        m = obj["metadata"] = {}
    return m


def name_of(obj: Obj) -> str:
    return (obj.get("metadata") or {}).get("name") or ""


def namespace_of(obj: Obj) -> str:
    return (obj.get("metadata") or {}).get("namespace") or ""


def key_of(obj: Obj) -> str:
    """``namespace/name`` (or ``name`` for cluster-scoped objects): the cache and queue key."""
    ns = namespace_of(obj)
    return f"{ns}/{name_of(obj)}" if ns else name_of(obj)


def split_key(key: str) -> tuple[str, str]:
    ns, _, name = key.rpartition("/")
    return ns, name


def resource_version(obj: Obj) -> str:
    return (obj.get("metadata") or {}).get("resourceVersion") or ""


def labels_of(obj: Obj) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def deepcopy(obj: Obj) -> Obj:
    return copy.deepcopy(obj)


def get_path(obj: Any, dotted: str, default: Any = None) -> Any:
    """``get_path(pod, "spec.nodeName")``: a nested field, or ``default`` where any step is missing."""
    cur = obj
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return default
        cur = cur[part]
    return cur


def controller_of(obj: Obj) -> Obj | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


__all__ = ["Obj", "now_rfc3339", "parse_rfc3339", "parse_time", "human_duration", "meta", "name_of", "namespace_of", "key_of",
           "split_key", "resource_version", "labels_of", "deepcopy", "get_path", "controller_of"]
