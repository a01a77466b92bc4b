"""Discovery documents (``/api``, ``/apis``, ``/api/v1``, ``/apis/{group}[/{version}]``),
generated from the kind registry. kubectl and the Python client learn every resource name,
short name, scope and verb from here; nothing about a kind is written twice."""

from __future__ import annotations

from minik8s.api.meta import Obj
from minik8s.api.registry import Registry, ResourceType

_SUBRESOURCE = {
    "status": ({"verbs": ["get", "patch", "update"]}, None),
    "scale": ({"verbs": ["get", "patch", "update"], "group": "autoscaling", "version": "v1"},
              "Scale"),
    "binding": ({"verbs": ["create"]}, "Binding"),
    "finalize": ({"verbs": ["update"]}, None),
    "log": ({"verbs": ["get"]}, None),
    "exec": ({"verbs": ["create", "get"]}, "PodExecOptions"),
    "portforward": ({"verbs": ["create", "get"]}, "PodPortForwardOptions"),
    "token": ({"verbs": ["create"], "group": "authentication.k8s.io", "version": "v1"},
              "TokenRequest"),
}


def api_versions(server_address: str) -> Obj:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                            "serverAddress": server_address}]}


def _group(registry: Registry, group: str, versions: list[str]) -> Obj:
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": gvs, "preferredVersion": gvs[0]}


def api_group_list(registry: Registry) -> Obj:
    groups = [_group(registry, g, vs) for g, vs in registry.groups().items() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(registry: Registry, group: str) -> Obj | None:
    versions = registry.groups().get(group)
    if not group or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(registry, group, versions)}


def _resource(rt: ResourceType) -> Obj:
    entry: Obj = {"name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced,
                  "kind": rt.kind, "verbs": list(rt.verbs)}
    if rt.short_names:
        entry["shortNames"] = list(rt.short_names)
    if rt.categories:
        entry["categories"] = list(rt.categories)
    return entry


def _subresource(rt: ResourceType, sub: str) -> Obj:
    extra, kind = _SUBRESOURCE[sub]
    return {"name": f"{rt.plural}/{sub}", "singularName": "", "namespaced": rt.namespaced,
            "kind": kind or rt.kind, **extra}


def api_resource_list(registry: Registry, group: str, version: str) -> Obj | None:
    types = registry.in_group_version(group, version)
    if not types:
        return None
    resources: list[Obj] = []
    for rt in types:
        resources.append(_resource(rt))
        resources.extend(_subresource(rt, s) for s in rt.subresources if s in _SUBRESOURCE)
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources}


__all__ = ["api_versions", "api_group_list", "api_group", "api_resource_list"]
