"""Host ports: two pods cannot listen on the same host port and protocol of one node.

A port bound to ``0.0.0.0`` (or no ``hostIP``) conflicts with the same port on any address
of the node; a specific address conflicts only with itself and with ``0.0.0.0``, as in
Kubernetes' ``HostPortInfo.CheckConflict``.
"""

from __future__ import annotations

from typing import Any

from scheduler.framework import SKIP, CycleState, Status
from scheduler.nodeinfo import DEFAULT_BIND_ALL_HOST_IP, NodeInfo, PodInfo

ERR_REASON = "node(s) didn't have free ports for the requested pod ports"


def port_conflict(used: dict[str, set[tuple[str, int]]], ip: str, protocol: str,
                  port: int) -> bool:
    pp = (protocol, port)
    if ip == DEFAULT_BIND_ALL_HOST_IP:
        return any(pp in s for s in used.values())
    return any(pp in used.get(k, ()) for k in (DEFAULT_BIND_ALL_HOST_IP, ip))


def check_ports(pod: PodInfo, node: NodeInfo) -> Status | None:
    if not pod.host_ports or not node.used_ports:
        return None
    for ip, proto, port in pod.host_ports:
        if port_conflict(node.used_ports, ip, proto, port):
            return Status.unschedulable(ERR_REASON, plugin=NodePorts.name)
    return None


class NodePorts:
    name = "NodePorts"

    def pre_filter(self, state: CycleState, pod: PodInfo, snapshot: Any) -> str | None:
        return None if pod.host_ports else SKIP

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        return check_ports(pod, node)


__all__ = ["NodePorts", "check_ports", "port_conflict", "ERR_REASON"]
