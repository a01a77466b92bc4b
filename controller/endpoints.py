"""The Endpoints controller: for every Service with a selector, an Endpoints object of the
same name listing the pods behind it, which kube-proxy and the cluster DNS read.

Level-triggered over the shared Service, Pod and Endpoints informers: a Service event
enqueues that Service; a pod event enqueues every Service of its namespace whose selector
matched its old or its new labels (so a pod relabelled away is dropped); a deleted
Endpoints object enqueues its Service so it is written again. ``reconcile`` recomputes the
whole subsets list from the cache (``desired_subsets``, pure) and writes only when it
differs from what is stored.

As Kubernetes' ``endpoints_controller.go``: pods without an IP and pods that finished
(Succeeded/Failed) are left out; terminating pods too unless ``publishNotReadyAddresses``;
ready pods go to ``addresses``, the others to ``notReadyAddresses`` (or to ``addresses``
with ``publishNotReadyAddresses``); ``targetPort`` is resolved per pod, by number or by
container port name, so pods resolving a name differently end in different subsets
(``RepackSubsets``: one subset per distinct set of ports). Services without a selector keep
the Endpoints their users write; ``default/kubernetes`` belongs to the API server. Endpoints
are not owned by their Service (no ownerReference, as in Kubernetes), so deleting a Service
deletes its Endpoints here, explicitly.
"""

from __future__ import annotations

import logging
from typing import Any

from minik8s.api.errors import NotFound
from minik8s.api.meta import Obj, deepcopy, key_of, labels_of, split_key
from minik8s.cache import NAMESPACE_INDEX, namespace_index
from minik8s.runtime import Controller, Result

from controller.util import is_pod_ready, now_rfc3339

log = logging.getLogger(__name__)

# The annotation Kubernetes sets on Endpoints it manages (the time of the change that
# triggered the write); here it also marks an Endpoints object as this controller's, so one
# left behind by a Service deleted while the controller was down is cleaned up.
TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
HEADLESS_LABEL = "service.kubernetes.io/headless"
# Never touched: the API server keeps the Endpoints of the ``kubernetes`` Service itself.
RESERVED = {"default/kubernetes"}


class PortNotFound(Exception):
    pass


# --------------------------------------------------------------------------- pure logic


def service_selector(svc: Obj) -> dict[str, str] | None:
    """The Service's selector, or None when it has none (user-managed Endpoints)."""
    sel = (svc.get("spec") or {}).get("selector")
    return dict(sel) if isinstance(sel, dict) and sel else None


def selects(selector: dict[str, str] | None, labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pod_in_endpoints(pod: Obj, include_terminating: bool) -> bool:
    """``ShouldPodBeInEndpoints``: an IP, not finished, not terminating (unless asked)."""
    status = pod.get("status") or {}
    if not status.get("podIP") and not status.get("podIPs"):
        return False
    if not include_terminating and (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return status.get("phase") not in ("Succeeded", "Failed")


def find_port(pod: Obj, service_port: Obj) -> int:
    """``podutil.FindPort``: the container port a Service port's ``targetPort`` means for
    this pod (a number as is; a name looked up among the pod's container ports with the
    same protocol)."""
    target = service_port.get("targetPort")
    if target is None or target == "" or target == 0:
        target = service_port.get("port")
    if isinstance(target, int) and not isinstance(target, bool):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = service_port.get("protocol") or "TCP"
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == target and (p.get("protocol") or "TCP") == protocol:
                return int(p.get("containerPort"))
    raise PortNotFound(f"no suitable port for manifest: {(pod.get('metadata') or {}).get('uid')}")


def endpoint_address(svc: Obj, pod: Obj) -> Obj:
    md, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    status = pod.get("status") or {}
    ip = status.get("podIP") or ((status.get("podIPs") or [{}])[0].get("ip"))
    addr: Obj = {"ip": ip}
    smd = svc.get("metadata") or {}
    # ``ShouldSetHostname``: the pod names this Service as its subdomain (a StatefulSet's
    # pods behind their headless governing Service get DNS names this way).
    if spec.get("hostname") and spec.get("subdomain") == smd.get("name") and \
            md.get("namespace") == smd.get("namespace"):
        addr["hostname"] = spec["hostname"]
    if spec.get("nodeName"):
        addr["nodeName"] = spec["nodeName"]
    addr["targetRef"] = {"kind": "Pod", "namespace": md.get("namespace"),
                         "name": md.get("name"), "uid": md.get("uid")}
    return addr


def _endpoint_port(service_port: Obj, number: int) -> Obj:
    port: Obj = {}
    if service_port.get("name"):
        port["name"] = service_port["name"]
    port["port"] = number
    port["protocol"] = service_port.get("protocol") or "TCP"
    if service_port.get("appProtocol"):
        port["appProtocol"] = service_port["appProtocol"]
    return port


def _port_key(port: Obj) -> tuple:
    return (port.get("name") or "", int(port.get("port") or 0), port.get("protocol") or "",
            port.get("appProtocol") or "")


def _ip_key(addr: Obj) -> tuple:
    ip = addr.get("ip") or ""
    try:
        parts = tuple(int(x) for x in ip.split("."))
    except ValueError:
        parts = ()
    return (parts, ip, (addr.get("targetRef") or {}).get("uid") or "")


def desired_subsets(svc: Obj, pods: list[Obj]) -> list[Obj]:
    """The Service's subsets for the pods of its namespace (those not matching its
    selector are skipped here too), packed as ``RepackSubsets`` does: the pods offering
    the same set of ports share one subset; addresses and ports in a stable order."""
    spec = svc.get("spec") or {}
    selector = service_selector(svc)
    publish = bool(spec.get("publishNotReadyAddresses"))
    ports = spec.get("ports") or []
    headless = spec.get("clusterIP") == "None"
    # (port key or None for a headless Service without ports) -> {address key: (addr, ready)}
    by_port: dict[tuple | None, dict[tuple, tuple[Obj, bool]]] = {}
    port_objs: dict[tuple, Obj] = {}
    for pod in pods:
        if not selects(selector, labels_of(pod)) or not pod_in_endpoints(pod, publish):
            continue
        addr = endpoint_address(svc, pod)
        ready = publish or is_pod_ready(pod)
        akey = _ip_key(addr)
        if not ports:
            if headless:
                by_port.setdefault(None, {})[akey] = (addr, ready)
            continue
        for sp in ports:
            try:
                number = find_port(pod, sp)
            except PortNotFound:
                continue
            ep = _endpoint_port(sp, number)
            pkey = _port_key(ep)
            port_objs[pkey] = ep
            by_port.setdefault(pkey, {})[akey] = (addr, ready)
    # group ports by the exact set of (address, readiness) that offers them
    groups: dict[tuple, tuple[dict[tuple, tuple[Obj, bool]], list[tuple]]] = {}
    for pkey, addrs in by_port.items():
        sig = tuple(sorted((k, r) for k, (_, r) in addrs.items()))
        entry = groups.setdefault(sig, (addrs, []))
        if pkey is not None:
            entry[1].append(pkey)
    subsets = []
    for addrs, pkeys in groups.values():
        subset: Obj = {}
        ready = [a for k, (a, r) in sorted(addrs.items()) if r]
        unready = [a for k, (a, r) in sorted(addrs.items()) if not r]
        if ready:
            subset["addresses"] = ready
        if unready:
            subset["notReadyAddresses"] = unready
        if pkeys:
            subset["ports"] = [port_objs[k] for k in sorted(pkeys)]
        subsets.append(subset)
    subsets.sort(key=lambda s: ([_port_key(p) for p in s.get("ports") or []],
                                [_ip_key(a) for a in s.get("addresses") or []],
                                [_ip_key(a) for a in s.get("notReadyAddresses") or []]))
    return subsets


def desired_labels(svc: Obj) -> dict[str, str]:
    """The Service's labels, plus ``service.kubernetes.io/headless`` for a headless one."""
    labels = dict(labels_of(svc))
    labels.pop(HEADLESS_LABEL, None)
    if (svc.get("spec") or {}).get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    return labels


def endpoints_changed(current: Obj | None, subsets: list[Obj], labels: dict[str, str]) -> bool:
    if current is None:
        return True
    return (current.get("subsets") or []) != subsets or labels_of(current) != labels


# --------------------------------------------------------------------------- controller


class EndpointsController:
    name = "endpoints"

    def __init__(self, client: Any, informers: Any, *, workers: int = 5):
        self.client = client
        self.svc_informer = informers.informer("services", indexers={
            NAMESPACE_INDEX: namespace_index})
        self.pod_informer = informers.informer("pods", indexers={
            NAMESPACE_INDEX: namespace_index})
        self.ep_informer = informers.informer("endpoints")
        self.controller = Controller(self.name, self, workers=workers)
        # Services seen deleted whose Endpoints are still to be removed.
        self._deleted: set[str] = set()
        self.svc_informer.add_handler(self._svc_added, self._svc_updated, self._svc_deleted)
        self.pod_informer.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)
        self.ep_informer.add_handler(self._ep_added, None, self._ep_deleted)

    async def start(self) -> None:
        await self.controller.start()

    # --- event handlers (they only enqueue) -------------------------------------------

    def _svc_added(self, svc: Obj) -> None:
        key = key_of(svc)
        self._deleted.discard(key)
        self.controller.enqueue_key(key)

    def _svc_updated(self, old: Obj, new: Obj) -> None:
        self.controller.enqueue(new)

    def _svc_deleted(self, svc: Obj) -> None:
        key = key_of(svc)
        self._deleted.add(key)
        self.controller.enqueue_key(key)

    def _ep_added(self, ep: Obj) -> None:
        # A leftover of a Service deleted while no controller ran (marked as ours).
        key = key_of(ep)
        if self.svc_informer.get(key) is None and \
                TRIGGER_TIME_ANNOTATION in ((ep.get("metadata") or {}).get("annotations") or {}):
            self.controller.enqueue_key(key)

    def _ep_deleted(self, ep: Obj) -> None:
        key = key_of(ep)
        if self.svc_informer.get(key) is not None:
            self.controller.enqueue_key(key)  # written again if its Service still selects

    def _enqueue_selecting(self, pod: Obj, *label_sets: dict[str, str]) -> None:
        ns = (pod.get("metadata") or {}).get("namespace") or ""
        for svc in self.svc_informer.by_index(NAMESPACE_INDEX, ns):
            selector = service_selector(svc)
            if selector and any(selects(selector, labels) for labels in label_sets):
                self.controller.enqueue(svc)

    def _pod_added(self, pod: Obj) -> None:
        self._enqueue_selecting(pod, labels_of(pod))

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if (old.get("metadata") or {}).get("resourceVersion") == \
                (new.get("metadata") or {}).get("resourceVersion"):
            return  # a resync: nothing changed
        self._enqueue_selecting(new, labels_of(old), labels_of(new))

    def _pod_deleted(self, pod: Obj) -> None:
        self._enqueue_selecting(pod, labels_of(pod))

    # --- reconcile ------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result | None:
        if key in RESERVED:
            return None
        ns, name = split_key(key)
        svc = self.svc_informer.get(key)
        current = self.ep_informer.get(key)
        if svc is None:
            annotations = ((current or {}).get("metadata") or {}).get("annotations") or {}
            if current is not None and (key in self._deleted or
                                        TRIGGER_TIME_ANNOTATION in annotations):
                try:
                    await self.client.delete("endpoints", name, ns)
                except NotFound:
                    pass
            self._deleted.discard(key)
            return None
        spec = svc.get("spec") or {}
        if spec.get("type") == "ExternalName" or service_selector(svc) is None:
            return None  # user-managed Endpoints, if any
        if (svc.get("metadata") or {}).get("deletionTimestamp"):
            return None
        pods = self.pod_informer.by_index(NAMESPACE_INDEX, ns)
        subsets = desired_subsets(svc, pods)
        labels = desired_labels(svc)
        if not endpoints_changed(current, subsets, labels):
            return None
        if current is None:
            obj: Obj = {"apiVersion": "v1", "kind": "Endpoints",
                        "metadata": {"name": name, "namespace": ns}}
        else:
            obj = deepcopy(current)
        md = obj["metadata"]
        if labels:
            md["labels"] = labels
        else:
            md.pop("labels", None)
        md.setdefault("annotations", {})[TRIGGER_TIME_ANNOTATION] = now_rfc3339()
        if subsets:
            obj["subsets"] = subsets
        else:
            obj.pop("subsets", None)
        if current is None:
            await self.client.create("endpoints", obj, ns)  # 409 if it lagged: requeued
        else:
            await self.client.update("endpoints", obj, ns)  # 409 on a stale cache: requeued
        log.debug("endpoints %s: %d subset(s)", key, len(subsets))
        return None


def new(ctx: Any) -> EndpointsController:
    return EndpointsController(ctx.client, ctx.informers, workers=ctx.config.concurrent_syncs)


__all__ = ["EndpointsController", "desired_subsets", "desired_labels", "find_port",
           "pod_in_endpoints", "endpoint_address", "new", "TRIGGER_TIME_ANNOTATION"]
