"""Turns a request path and method into what it asks for (verb, resource type, namespace,
name, subresource), the way the Kubernetes API server's RequestInfoFactory does, so that
routing, authorization and auditing all read the same answer."""

from __future__ import annotations

from dataclasses import dataclass

from minik8s.api.errors import MethodNotAllowed, NotFound
from minik8s.api.registry import REGISTRY, Registry, ResourceType

_VERBS = {
    ("GET", False): "list", ("GET", True): "get",
    ("POST", False): "create", ("POST", True): "create",
    ("PUT", True): "update", ("PATCH", True): "patch",
    ("DELETE", True): "delete", ("DELETE", False): "deletecollection",
}
# What each subresource serves (as discovery lists it); the main resource serves ``rt.verbs``.
_SUBRESOURCE_VERBS = {
    "status": ("get", "patch", "update"), "scale": ("get", "patch", "update"),
    "binding": ("create",), "finalize": ("update",),
    "log": ("get",), "exec": ("get", "create"), "token": ("create",),  # proxied to the kubelet (apiserver.proxy)
    "portforward": ("get", "create"),  # proxied to the kubelet too
}


@dataclass(frozen=True)
class RequestInfo:
    verb: str
    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None

    @property
    def is_object(self) -> bool:
        return self.name is not None


def resolve(method: str, group: str, version: str, segments: list[str], *, watch: bool,
            registry: Registry = REGISTRY) -> RequestInfo:
    """``segments`` is the path after ``/api/v1`` or ``/apis/{group}/{version}``."""
    segs = [s for s in segments if s]
    namespace = None
    if (len(segs) >= 3 and segs[0] == "namespaces"
            and (rt := registry.by_path(group, version, segs[2])) is not None and rt.namespaced):
        namespace, segs = segs[1], segs[2:]
    if not segs:
        raise NotFound("the server could not find the requested resource")
    rt = registry.by_path(group, version, segs[0])
    if rt is None:
        raise NotFound(f"the server could not find the requested resource "
                       f"({'/'.join([group, version, segs[0]]).lstrip('/')})")
    if namespace is None and rt.namespaced and len(segs) > 1:
        # /api/v1/pods/x is not a path; namespaced objects live under /namespaces/{ns}.
        raise NotFound("the server could not find the requested resource")
    name = segs[1] if len(segs) > 1 else None
    sub = segs[2] if len(segs) > 2 else None
    if len(segs) > 3 or (sub is not None and sub not in rt.subresources):
        raise NotFound("the server could not find the requested resource")
    verb = _VERBS.get((method, name is not None))
    allowed = _SUBRESOURCE_VERBS.get(sub) if sub else rt.verbs
    if verb is None or (allowed is not None and verb not in allowed):
        raise MethodNotAllowed(f"{method} is not supported on {rt.qualified}"
                               f"{'/' + sub if sub else ' objects' if name else ''}")
    if verb == "list" and watch:
        verb = "watch"
    if verb == "get" and watch and sub is None:
        verb = "watch"
    return RequestInfo(verb, rt, namespace, name, sub)


__all__ = ["RequestInfo", "resolve"]
