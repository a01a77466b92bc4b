"""The service map: what every backend programs, as plain data built from the Service and
Endpoints objects in the informers' caches.

Both backends (iptables rules, userspace listeners) need the same facts per service port:
its ClusterIP and port, its NodePort, its affinity and the ready endpoints it balances over.
Working that out once, as a pure function, keeps the backends free of API details and makes
the interesting part testable without a cluster. Like Kubernetes' ``ServicePortName``, a
service port is identified by ``namespace/name:portName`` and endpoints are matched to it
by port name (and protocol), the way the endpoints controller wrote them."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Iterable

Obj = dict[str, Any]

DEFAULT_AFFINITY_TIMEOUT = 10800  # seconds, Kubernetes' default for ClientIP affinity
SUPPORTED_PROTOCOLS = ("TCP", "UDP", "SCTP")


@dataclass(frozen=True, order=True)
class Endpoint:
    ip: str
    port: int

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class ServicePort:
    """One port of one Service, with the ready endpoints behind it."""

    namespace: str
    name: str
    port_name: str
    protocol: str
    cluster_ip: str | None  # None for a headless Service (no virtual IP, only NodePorts: none)
    port: int
    node_port: int | None = None
    affinity_timeout: int | None = None  # seconds, set when sessionAffinity is ClientIP
    endpoints: tuple[Endpoint, ...] = field(default=())

    @property
    def key(self) -> str:
        """``namespace/name:portName`` (no colon for an unnamed port), as Kubernetes'
        ``ServicePortName.String()``."""
        suffix = f":{self.port_name}" if self.port_name else ""
        return f"{self.namespace}/{self.name}{suffix}"

    @property
    def proto(self) -> str:
        return self.protocol.lower()


def _valid_ip(value: Any) -> str | None:
    if not isinstance(value, str) or not value or value == "None":
        return None
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        return None


def _port_number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and 0 < value < 65536:
        return value
    return None


def _ready_endpoints(endpoints: Obj | None, port_name: str, protocol: str) -> tuple[Endpoint, ...]:
    """The ready addresses of ``endpoints`` for the port named ``port_name``; sorted, no
    duplicates (a pod listed in two subsets counts once)."""
    if not endpoints:
        return ()
    found: set[Endpoint] = set()
    for subset in endpoints.get("subsets") or []:
        if not isinstance(subset, dict):
            continue
        ports = [p for p in subset.get("ports") or [] if isinstance(p, dict)
                 and (p.get("name") or "") == port_name
                 and (p.get("protocol") or "TCP") == protocol]
        for p in ports:
            number = _port_number(p.get("port"))
            if number is None:
                continue
            for addr in subset.get("addresses") or []:  # notReadyAddresses never get traffic
                ip = _valid_ip((addr or {}).get("ip"))
                if ip:
                    found.add(Endpoint(ip, number))
    return tuple(sorted(found))


def build_service_map(services: Iterable[Obj], endpoints: Iterable[Obj]) -> list[ServicePort]:
    """Every service port to program, sorted by key. Services of type ExternalName and
    headless Services without NodePorts produce nothing: they have no virtual address."""
    eps = {(((e.get("metadata") or {}).get("namespace") or "default"),
            (e.get("metadata") or {}).get("name")): e for e in endpoints}
    out: list[ServicePort] = []
    for svc in services:
        meta = svc.get("metadata") or {}
        spec = svc.get("spec") or {}
        ns, name = meta.get("namespace") or "default", meta.get("name")
        if not name or spec.get("type") == "ExternalName":
            continue
        cluster_ip = _valid_ip(spec.get("clusterIP"))
        affinity = None
        if spec.get("sessionAffinity") == "ClientIP":
            cfg = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
            timeout = cfg.get("timeoutSeconds")
            affinity = (timeout if isinstance(timeout, int) and not isinstance(timeout, bool)
                        and timeout > 0 else DEFAULT_AFFINITY_TIMEOUT)
        with_node_ports = spec.get("type") in ("NodePort", "LoadBalancer")
        for p in spec.get("ports") or []:
            if not isinstance(p, dict):
                continue
            protocol = p.get("protocol") or "TCP"
            port = _port_number(p.get("port"))
            if protocol not in SUPPORTED_PROTOCOLS or port is None:
                continue
            node_port = _port_number(p.get("nodePort")) if with_node_ports else None
            if cluster_ip is None and node_port is None:
                continue
            port_name = p.get("name") or ""
            out.append(ServicePort(
                namespace=ns, name=name, port_name=port_name, protocol=protocol,
                cluster_ip=cluster_ip, port=port, node_port=node_port,
                affinity_timeout=affinity,
                endpoints=_ready_endpoints(eps.get((ns, name)), port_name, protocol)))
    out.sort(key=lambda sp: (sp.key, sp.protocol))
    return out


__all__ = ["Endpoint", "ServicePort", "build_service_map", "DEFAULT_AFFINITY_TIMEOUT"]
