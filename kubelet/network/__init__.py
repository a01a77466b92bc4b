"""Pod networking as the kubelet sees it: give a pod sandbox (by the PID of its infra
container) an address on this node's pod network, take it back, and keep routes to the other
nodes' pod ranges. The bridge implementation (``kubelet.network.bridge``) works like a CNI
bridge plugin with host-local IPAM; ``NoNetwork`` leaves pods with only loopback, for unit
tests and for hosts where the kubelet may not touch the network."""

from __future__ import annotations

from typing import Any, Protocol


class PodNetwork(Protocol):
    async def setup(self, pod_cidr: str) -> None:
        """Create this node's pod bridge with the gateway address of ``pod_cidr``."""

    async def attach(self, pod_uid: str, sandbox_pid: int) -> str:
        """Wire the sandbox's network namespace; its IP (the same one again for a pod
        that already has one)."""

    async def detach(self, pod_uid: str) -> None:
        """Remove the pod's interface and release its address (idempotent)."""

    async def sync_routes(self, nodes: list[dict[str, Any]]) -> None:
        """host-gw routes: each other node's podCIDR via that node's InternalIP."""

    @property
    def dns_ip(self) -> str:
        """The cluster DNS address pods of this node use as their resolver."""


class NoNetwork:
    """Pods get loopback only; addresses are empty."""

    def __init__(self, dns_ip: str = "127.0.0.53"):
        self._dns_ip = dns_ip

    async def setup(self, pod_cidr: str) -> None:
        return None

    async def attach(self, pod_uid: str, sandbox_pid: int) -> str:
        return ""

    async def detach(self, pod_uid: str) -> None:
        return None

    async def sync_routes(self, nodes: list[dict[str, Any]]) -> None:
        return None

    @property
    def dns_ip(self) -> str:
        return self._dns_ip


__all__ = ["PodNetwork", "NoNetwork"]
