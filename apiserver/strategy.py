"""Kind-specific lifecycle rules (Kubernetes' per-resource "strategies"): what the server
resets on create, which part of an object a subresource writes, how a delete becomes
graceful, and what keeps a deleted object around. The generic store calls these hooks and
stays free of ``if kind == ...`` branches."""

from __future__ import annotations

import base64
import copy
from datetime import datetime, timedelta, timezone

from minik8s.api.errors import BadRequest, Conflict, Invalid
from minik8s.api.meta import Obj
from minik8s.api.registry import ResourceType
from minik8s.api.selectors import selector_query

# Kinds whose status a creator may set (the kubelet registers a Node with its capacity).
_KEEP_STATUS_ON_CREATE = {"Node"}
# Kinds a PUT may create when missing (as their Kubernetes strategies allow).
_CREATE_ON_UPDATE = {"Lease", "Endpoints", "Event"}
_SCALABLE = {"Deployment", "ReplicaSet", "StatefulSet"}


def json_copy(value):  # type: ignore[no-untyped-def]
    """A deep copy of a tree of dicts, lists and scalars, as decoded from JSON (what the
    store and its cache hold: no shared subtrees), several times faster than
    ``copy.deepcopy``; anything else is handed to ``copy.deepcopy``."""
    if isinstance(value, dict):
        return {k: (v if v.__class__ in _SCALARS else json_copy(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [v if v.__class__ in _SCALARS else json_copy(v) for v in value]
    if value.__class__ in _SCALARS:
        return value
    return copy.deepcopy(value)


_SCALARS = frozenset({str, int, float, bool, type(None)})


# Kinds with a spec but no metadata.generation in Kubernetes.
_NO_GENERATION = {"Pod", "Node", "Namespace", "Service"}


def tracks_generation(rt: ResourceType) -> bool:
    """Whether ``metadata.generation`` counts spec changes for this kind (workloads and
    other spec/status kinds; not ConfigMaps, Secrets, Events ...)."""
    return rt.has_status and rt.kind not in _NO_GENERATION


def _merge_string_data(obj: Obj) -> None:
    """A Secret's ``stringData`` is a write-only convenience: it is merged into ``data``
    (base64) and never stored or returned."""
    string_data = obj.pop("stringData", None)
    if not isinstance(string_data, dict):
        return
    data = obj.get("data")
    if not isinstance(data, dict):
        data = obj["data"] = {}
    for key, value in string_data.items():
        data[key] = base64.b64encode(str(value).encode()).decode()


def prepare_create(rt: ResourceType, obj: Obj) -> None:
    if rt.kind == "Secret":
        _merge_string_data(obj)
    if rt.has_status and rt.kind not in _KEEP_STATUS_ON_CREATE:
        obj.pop("status", None)
    if rt.kind == "Pod":
        obj["status"] = {"phase": "Pending"}
    elif rt.kind == "Service" and not rt.group:
        obj["status"] = {"loadBalancer": {}}  # as Kubernetes shows every Service
    elif rt.kind == "Namespace":
        spec = obj.setdefault("spec", {})
        spec.setdefault("finalizers", ["kubernetes"])
        obj["status"] = {"phase": "Active"}


def stamp_requester(rt: ResourceType, obj: Obj, user: str, groups: list[str]) -> None:
    """A CertificateSigningRequest records who asked, from the request's authentication:
    what the body says about it is replaced (Kubernetes' CSR strategy does the same)."""
    if rt.kind != "CertificateSigningRequest":
        return
    spec = obj.get("spec")
    if isinstance(spec, dict):
        spec.pop("uid", None)
        spec.pop("extra", None)
        spec["username"] = user
        spec["groups"] = list(groups)


def allow_create_on_update(rt: ResourceType) -> bool:
    return rt.kind in _CREATE_ON_UPDATE


def prepare_update(rt: ResourceType, new: Obj, old: Obj, sub: str | None) -> Obj:
    """The object to store for a write of ``new`` over ``old`` through ``sub``: users own
    everything but ``status`` on the main resource; a status write changes only ``status``;
    a namespace's ``finalize`` changes only ``spec.finalizers``."""
    if sub is None:
        if rt.kind == "Secret":
            _merge_string_data(new)
        if rt.has_status:
            if "status" in old:
                new["status"] = json_copy(old["status"])
            else:
                new.pop("status", None)
        if rt.kind == "Service":
            _keep_allocations(new, old)
        return new
    out = json_copy(old)
    out["metadata"]["resourceVersion"] = new["metadata"].get("resourceVersion")
    if sub == "status":
        if "status" in new:
            out["status"] = new["status"]
        else:
            out.pop("status", None)
        if rt.kind == "Node":  # the kubelet keeps its labels and annotations current
            for k in ("labels", "annotations"):
                if k in new["metadata"]:
                    out["metadata"][k] = new["metadata"][k]
    elif sub == "approval":  # a CSR's Approved/Denied conditions, nothing else
        conditions = (new.get("status") or {}).get("conditions")
        out.setdefault("status", {})["conditions"] = conditions or []
    elif sub == "finalize":
        out.setdefault("spec", {})["finalizers"] = (new.get("spec") or {}).get("finalizers") or []
    else:
        raise BadRequest(f"subresource {sub} cannot be written this way")
    return out


def _keep_allocations(new: Obj, old: Obj) -> None:
    """A Service replaced without its allocated ClusterIP or node ports keeps them
    (``kubectl replace`` of a manifest that never named them), as Kubernetes does; and a
    change of type drops what the new type cannot have, unless the write set it itself
    (Kubernetes' ``dropTypeDependentFields``): node ports when leaving NodePort and
    LoadBalancer, the ClusterIP when becoming ExternalName. The allocator then releases
    what was dropped, in the same transaction."""
    spec, old_spec = new.get("spec"), old.get("spec") or {}
    if not isinstance(spec, dict) or not isinstance(old_spec, dict):
        return
    svc_type = spec.get("type") or "ClusterIP"
    old_type = old_spec.get("type") or "ClusterIP"
    if svc_type == "ExternalName":
        if old_type != "ExternalName":
            for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
                if key in spec and spec[key] in (old_spec.get(key), "", None, []):
                    del spec[key]
    else:
        for key in ("clusterIP", "clusterIPs"):
            if not spec.get(key) and old_spec.get(key):
                spec[key] = copy.deepcopy(old_spec[key])
    old_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                 for p in old_spec.get("ports") or [] if isinstance(p, dict)}
    node_port_type = svc_type in ("NodePort", "LoadBalancer")
    for port in spec.get("ports") or []:
        if not isinstance(port, dict):
            continue
        node_port = old_ports.get((port.get("port"), port.get("protocol", "TCP")))
        if node_port_type and not port.get("nodePort") and node_port:
            port["nodePort"] = node_port
        elif not node_port_type and old_type in ("NodePort", "LoadBalancer") and \
                port.get("nodePort") in (node_port, 0):
            port.pop("nodePort", None)
    if not node_port_type and old_type in ("NodePort", "LoadBalancer"):
        if spec.get("externalTrafficPolicy") == old_spec.get("externalTrafficPolicy"):
            spec.pop("externalTrafficPolicy", None)
    if svc_type != "LoadBalancer" and old_type == "LoadBalancer":
        if spec.get("allocateLoadBalancerNodePorts") == old_spec.get(
                "allocateLoadBalancerNodePorts"):
            spec.pop("allocateLoadBalancerNodePorts", None)


# --- scale subresource ---------------------------------------------------------------


def view(rt: ResourceType, obj: Obj, sub: str | None) -> Obj:
    """What a GET of the (sub)resource shows."""
    if sub == "scale":
        return scale_of(rt, obj)
    return obj


def scale_of(rt: ResourceType, obj: Obj) -> Obj:
    if rt.kind not in _SCALABLE:
        raise BadRequest(f"{rt.qualified} has no scale subresource")
    md = obj["metadata"]
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    selector = (spec.get("selector") or {})
    return {
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                        "creationTimestamp") if k in md},
        "spec": {"replicas": spec.get("replicas", 1)},
        "status": {"replicas": status.get("replicas", 0),
                   "selector": selector_query(selector)},
    }


def apply_scale(rt: ResourceType, obj: Obj, scale: Obj) -> Obj:
    """The full object after writing ``scale`` (a Scale) to it."""
    replicas = (scale.get("spec") or {}).get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise Invalid.object("Scale", "autoscaling", obj["metadata"]["name"], [{
            "reason": "FieldValueInvalid", "field": "spec.replicas",
            "message": "must be greater than or equal to 0"}])
    out = json_copy(obj)
    out.setdefault("spec", {})["replicas"] = replicas
    rv = (scale.get("metadata") or {}).get("resourceVersion")
    out["metadata"]["resourceVersion"] = rv or obj["metadata"]["resourceVersion"]
    return out


# --- binding -------------------------------------------------------------------------


def bind(pod: Obj, binding: Obj) -> Obj:
    """The pod after ``POST pods/{name}/binding``: bound once, to the target node."""
    target = binding.get("target")
    node = target.get("name") if isinstance(target, dict) else None
    if not node:
        raise Invalid.object("Binding", "", pod["metadata"]["name"], [{
            "reason": "FieldValueRequired", "field": "target.name", "message": "Required value"}])
    name = pod["metadata"]["name"]
    if pod["metadata"].get("deletionTimestamp"):
        raise Conflict.object("pods", "", name, "pod is being deleted, cannot be assigned to a host")
    current = (pod.get("spec") or {}).get("nodeName")
    if current:
        raise Conflict.object("pods", "", name, f"pod {name} is already assigned to node "
                              f'"{current}"')
    out = json_copy(pod)
    out["spec"]["nodeName"] = node
    conditions = [c for c in (out.get("status") or {}).get("conditions") or []
                  if c.get("type") != "PodScheduled"]
    conditions.append({"type": "PodScheduled", "status": "True",
                       "lastTransitionTime": datetime.now(timezone.utc).strftime(
                           "%Y-%m-%dT%H:%M:%SZ")})
    out.setdefault("status", {})["conditions"] = conditions
    return out


# --- deletion ------------------------------------------------------------------------


def graceful_delete(rt: ResourceType, obj: Obj, grace: int | None) -> bool | None:
    """Make the delete graceful where Kubernetes does: a pod bound to a node stays, marked
    with ``deletionTimestamp``, until its kubelet has stopped it and deletes it with grace 0.
    None means "no grace: delete now"; otherwise whether ``obj`` was changed."""
    if rt.kind != "Pod":
        return None
    spec, md = obj.get("spec") or {}, obj["metadata"]
    phase = (obj.get("status") or {}).get("phase")
    if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
        return None
    if grace is None:
        grace = spec.get("terminationGracePeriodSeconds", 30)
    if grace <= 0:
        return None
    current = md.get("deletionGracePeriodSeconds")
    if md.get("deletionTimestamp") and current is not None and current <= grace:
        return False  # already terminating, and no sooner than asked
    md["deletionGracePeriodSeconds"] = grace
    md["deletionTimestamp"] = (datetime.now(timezone.utc) + timedelta(seconds=grace)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    return True


def default_propagation(rt: ResourceType) -> str:
    """What a DELETE without ``propagationPolicy`` does to dependents: batch/v1 Jobs keep
    Kubernetes' historical default of orphaning their pods; everything else is Background.
    (kubectl always sends Background.)"""
    return "Orphan" if (rt.group, rt.kind) == ("batch", "Job") else "Background"


def pending_finalizers(rt: ResourceType, obj: Obj) -> bool:
    """Kind-specific finalization that must end before the object goes (a namespace's
    ``spec.finalizers``, cleared through ``namespaces/{name}/finalize``)."""
    if rt.kind == "Namespace":
        return bool((obj.get("spec") or {}).get("finalizers"))
    return False


def on_delete_pending(rt: ResourceType, obj: Obj) -> bool:
    """Mark an object whose deletion waits; True if it changed."""
    if rt.kind == "Namespace":
        status = obj.setdefault("status", {})
        if status.get("phase") != "Terminating":
            status["phase"] = "Terminating"
            return True
    return False


__all__ = ["stamp_requester", "default_propagation", "tracks_generation", "prepare_create", "allow_create_on_update", "prepare_update", "view", "scale_of",
           "apply_scale", "bind", "graceful_delete", "pending_finalizers", "on_delete_pending"]
