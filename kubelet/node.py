"""The kubelet's Node: registration, the status heartbeat and the node Lease.

Two signals tell the control plane this node is alive, as in Kubernetes: the Lease in
``kube-node-lease`` (cheap, renewed often) and the Node's conditions (heartbeat times moved
every ``node_status_update_period``). The Node's ``spec.podCIDR`` is assigned by the control
plane on registration; once it is known (or given by ``--pod-cidr``), the pod network is set
up with it, and every change to the set of Nodes refreshes the host-gw routes to the other
nodes' pod ranges."""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import socket
import struct
from datetime import datetime, timezone
from typing import Any

from kubelet.config import KUBELET_VERSION, KubeletConfig
from minik8s.api.errors import AlreadyExists, Conflict, NotFound
from minik8s.api.meta import Obj
from minik8s.api.quantity import value_of

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-node-lease"
PRESSURE_CONDITIONS = (
    ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
)


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_route_ip() -> str:
    """The address of the interface holding the default route (from /proc/net/route; the
    UDP socket below only asks the kernel for a source address and sends nothing)."""
    try:
        with open("/proc/net/route") as f:
            next(f)
            for line in f:
                fields = line.split()
                if len(fields) > 2 and fields[1] == "00000000" and int(fields[3], 16) & 2:
                    gateway = socket.inet_ntoa(struct.pack("<L", int(fields[2], 16)))
                    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                        s.connect((gateway, 9))
                        return s.getsockname()[0]
    except (OSError, StopIteration, ValueError):
        pass
    return "127.0.0.1"


def host_memory_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def os_image() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.platform()


def arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(
        machine, machine)


class NodeAgent:
    def __init__(self, config: KubeletConfig, client: Any, network: Any, runtime: Any):
        self.config = config
        self.client = client
        self.network = network
        self.runtime = runtime
        self.node_ip = config.node_ip or default_route_ip()
        self.pod_cidr = ""  # the one the network was set up with
        self.registered = asyncio.Event()
        self._runtime_version = ""

    @property
    def name(self) -> str:
        return self.config.node_name

    # --- the object --------------------------------------------------------------------

    def capacity(self) -> dict[str, str]:
        cpu = self.config.cpu or str(os.cpu_count() or 1)
        memory = value_of(self.config.memory) if self.config.memory else host_memory_bytes()
        return {"cpu": cpu, "memory": f"{memory // 1024}Ki" if memory % 1024 == 0
                else str(memory), "pods": str(self.config.max_pods)}

    def labels(self) -> dict[str, str]:
        return {"kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux",
                "kubernetes.io/arch": arch(), "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": arch()}

    def conditions(self, old: list[Obj] | None = None) -> list[Obj]:
        now = now_rfc3339()
        prev = {c.get("type"): c for c in old or []}

        def cond(type_: str, status: str, reason: str, message: str) -> Obj:
            p = prev.get(type_)
            since = p.get("lastTransitionTime") if p and p.get("status") == status else None
            return {"type": type_, "status": status, "lastHeartbeatTime": now,
                    "lastTransitionTime": since or now, "reason": reason, "message": message}

        out = [cond(t, "False", r, m) for t, r, m in PRESSURE_CONDITIONS]
        out.append(cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"))
        return out

    def status(self, old: Obj | None = None) -> Obj:
        cap = self.capacity()
        return {
            "capacity": cap, "allocatable": dict(cap),
            "conditions": self.conditions((old or {}).get("conditions")),
            "addresses": [{"type": "InternalIP", "address": self.node_ip},
                          {"type": "Hostname", "address": self.name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.config.port}},
            "nodeInfo": {
                "machineID": _read("/etc/machine-id"), "systemUUID": _read(
                    "/sys/class/dmi/id/product_uuid"), "bootID": _read(
                    "/proc/sys/kernel/random/boot_id"),
                "kernelVersion": platform.release(), "osImage": os_image(),
                "containerRuntimeVersion": f"docker://{self._runtime_version}",
                "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": KUBELET_VERSION,
                "operatingSystem": "linux", "architecture": arch()},
        }

    # --- registration and heartbeat ---------------------------------------------------------

    async def register(self) -> Obj:
        if not self._runtime_version:
            self._runtime_version = await self.runtime.version()
        node = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.name, "labels": self.labels()},
                "spec": {}, "status": self.status()}
        try:
            created = await self.client.create("nodes", node)
            log.info("registered node %s", self.name)
        except AlreadyExists:
            created = await self.update_status(relabel=True)
        self.registered.set()
        await self.observe(created)
        return created

    async def update_status(self, relabel: bool = False) -> Obj:
        current = await self.client.get("nodes", self.name)
        patch: Obj = {"status": self.status(current.get("status"))}
        if relabel:
            patch["metadata"] = {"labels": {**(current["metadata"].get("labels") or {}),
                                            **self.labels()}}
        return await self.client.patch("nodes", self.name, patch, subresource="status",
                                       patch_type="merge")

    async def observe(self, node: Obj) -> None:
        """Act on the Node as stored: set the pod network up once its range is known."""
        cidr = self.config.pod_cidr or (node.get("spec") or {}).get("podCIDR") or ""
        if cidr and cidr != self.pod_cidr:
            await self.network.setup(cidr)
            self.pod_cidr = cidr
            log.info("pod network of node %s set up with %s", self.name, cidr)

    async def run_status(self) -> None:
        while True:
            try:
                if not self.registered.is_set():
                    await self.register()
                else:
                    node = await self.update_status()
                    await self.observe(node)
            except asyncio.CancelledError:
                raise
            except NotFound:
                self.registered.clear()  # deleted from under us: register again
                continue
            except Exception as exc:
                log.warning("node status update failed: %s", exc)
                await asyncio.sleep(min(2.0, self.config.node_status_update_period))
                continue
            await asyncio.sleep(self.config.node_status_update_period)

    # --- the lease ------------------------------------------------------------------------

    def lease(self, uid: str | None = None) -> Obj:
        md: Obj = {"name": self.name, "namespace": LEASE_NAMESPACE}
        if uid:
            md["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": self.name,
                                      "uid": uid}]
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": md,
                "spec": {"holderIdentity": self.name,
                         "leaseDurationSeconds": self.config.lease_duration_seconds,
                         "renewTime": now_micro()}}

    async def renew_lease(self) -> Obj:
        try:
            current = await self.client.get("leases", self.name, LEASE_NAMESPACE)
        except NotFound:
            node_uid = None
            try:
                node_uid = (await self.client.get("nodes", self.name))["metadata"].get("uid")
            except NotFound:
                pass
            try:
                return await self.client.create("leases", self.lease(node_uid), LEASE_NAMESPACE)
            except AlreadyExists:
                current = await self.client.get("leases", self.name, LEASE_NAMESPACE)
        current.setdefault("spec", {}).update(self.lease()["spec"])
        return await self.client.update("leases", current, LEASE_NAMESPACE)

    async def run_lease(self) -> None:
        while True:
            try:
                await self.renew_lease()
                delay = self.config.lease_renew_interval
            except asyncio.CancelledError:
                raise
            except Conflict:
                delay = 0.2
            except Exception as exc:
                log.warning("lease renewal failed: %s", exc)
                delay = min(1.0, self.config.lease_renew_interval)
            await asyncio.sleep(delay)

    # --- routes to other nodes -------------------------------------------------------------

    async def sync_routes(self, nodes: list[Obj]) -> None:
        own = next((n for n in nodes if n["metadata"].get("name") == self.name), None)
        if own is not None:
            await self.observe(own)
        await self.network.sync_routes(
            [n for n in nodes if n["metadata"].get("name") != self.name])


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


__all__ = ["NodeAgent", "default_route_ip", "host_memory_bytes", "LEASE_NAMESPACE"]
