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


__all__ = ["Obj", "now_rfc3339", "parse_rfc3339", "meta", "name_of", "namespace_of", "key_of",
           "split_key", "resource_version", "labels_of", "deepcopy", "get_path", "controller_of"]
