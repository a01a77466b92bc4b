"""The kubelet's Node: registration, the status heartbeat and the node Lease.

Two signals tell the control plane this node is alive, as in Kubernetes: the Lease in
``kube-node-lease`` (cheap, renewed often) and the Node's conditions (heartbeat times moved
every ``node_status_update_period``). The Node's ``spec.podCIDR`` is assigned by the control
plane on registration; once it is known (or given by ``--pod-cidr``), the pod network is set
up with it, and every change to the set of Nodes refreshes the host-gw routes to the other
nodes' pod ranges.

``--register-with-taints`` and ``--node-labels`` go on the Node only when this kubelet creates
it, as in Kubernetes: a restarted kubelet finds its Node and leaves the taints and labels an
admin changed alone. Labels in the kubernetes.io / k8s.io namespaces are refused unless a
kubelet may set them on itself (NodeRestriction's rule), so a node cannot make itself a
control-plane node; ``minik8s init`` sets that role with the admin's credentials."""

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
from minik8s.api.selectors import label_key_errors, label_value_errors

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


# --- what the Node is created with (--register-with-taints, --node-labels) -------------------

TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
# The kubernetes.io / k8s.io labels a kubelet may set on its own Node (Kubernetes'
# ``kubelet/pkg/apis.IsKubeletLabel``, which the NodeRestriction admission plugin enforces):
# these keys, and the [*.]kubelet.kubernetes.io and [*.]node.kubernetes.io namespaces.
KUBELET_LABELS = frozenset({
    "kubernetes.io/hostname", "kubernetes.io/os", "kubernetes.io/arch",
    "beta.kubernetes.io/os", "beta.kubernetes.io/arch", "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type", "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone"})
KUBELET_LABEL_NAMESPACES = ("kubelet.kubernetes.io", "node.kubernetes.io")
NODE_ROLE_PREFIX = "node-role.kubernetes.io/"


def _in_namespace(namespace: str, domain: str) -> bool:
    return namespace == domain or namespace.endswith("." + domain)


def is_kubelet_label(key: str) -> bool:
    """Whether a kubelet may set ``key`` on its own Node: any key outside the kubernetes.io
    and k8s.io namespaces, and the few inside them that describe the node itself."""
    namespace = key.split("/", 1)[0] if "/" in key else ""
    if not (_in_namespace(namespace, "kubernetes.io") or _in_namespace(namespace, "k8s.io")):
        return True
    return key in KUBELET_LABELS or any(_in_namespace(namespace, d)
                                        for d in KUBELET_LABEL_NAMESPACES)


def parse_taints(text: str) -> list[Obj]:
    """``key[=value]:Effect,...`` (``--register-with-taints``) -> taints; ValueError with a
    message naming the bad entry."""
    taints: list[Obj] = []
    seen: set[tuple[str, str]] = set()
    for entry in (e.strip() for e in (text or "").split(",")):
        if not entry:
            continue
        spec, sep, effect = entry.rpartition(":")
        if not sep:
            raise ValueError(f"invalid taint {entry!r}: expected key[=value]:Effect (Effect: "
                             f"{', '.join(TAINT_EFFECTS)})")
        if effect not in TAINT_EFFECTS:
            raise ValueError(f"invalid taint {entry!r}: effect {effect!r} is not one of "
                             f"{', '.join(TAINT_EFFECTS)}")
        key, eq, value = spec.partition("=")
        errors = [f"key: {m}" for m in label_key_errors(key)]
        if eq:
            errors += [f"value: {m}" for m in label_value_errors(value)]
        if errors:
            raise ValueError(f"invalid taint {entry!r}: {'; '.join(errors)}")
        if (key, effect) in seen:
            raise ValueError(f"taint {key}:{effect} is given twice")
        seen.add((key, effect))
        taint: Obj = {"key": key, "effect": effect}
        if value:
            taint["value"] = value
        taints.append(taint)
    return taints


def parse_node_labels(text: str) -> dict[str, str]:
    """``key=value,...`` (``--node-labels``) -> labels, refusing the kubernetes.io and k8s.io
    keys a kubelet may not set on itself; ValueError with a message naming them."""
    labels: dict[str, str] = {}
    for entry in (e.strip() for e in (text or "").split(",")):
        if not entry:
            continue
        key, eq, value = entry.partition("=")
        if not eq:
            raise ValueError(f"invalid node label {entry!r}: expected key=value")
        errors = [f"key: {m}" for m in label_key_errors(key)]
        errors += [f"value: {m}" for m in label_value_errors(value)]
        if errors:
            raise ValueError(f"invalid node label {entry!r}: {'; '.join(errors)}")
        labels[key] = value
    roles = sorted(k for k in labels if k.startswith(NODE_ROLE_PREFIX))
    if roles:
        raise ValueError(
            f"a kubelet may not give its node a role ({', '.join(roles)}): "
            f"{NODE_ROLE_PREFIX}* labels are set with admin credentials, e.g. `mkctl label "
            f"node NAME {roles[0]}=`")
    unknown = sorted(k for k in labels if not is_kubelet_label(k))
    if unknown:
        raise ValueError(
            f"unknown 'kubernetes.io' or 'k8s.io' labels: {', '.join(unknown)} (a kubelet may "
            f"set only [*.]kubelet.kubernetes.io/*, [*.]node.kubernetes.io/* and the "
            f"well-known node labels such as kubernetes.io/hostname or "
            f"topology.kubernetes.io/zone; set others with admin credentials: mkctl label "
            f"node)")
    return labels


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
        # Only a Node this kubelet creates gets these (Kubernetes' initialNode): an existing
        # one keeps what an admin made of its taints and labels.
        self.register_taints = parse_taints(config.register_with_taints)
        self.register_labels = parse_node_labels(config.node_labels)

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
        spec: Obj = {"taints": [dict(t) for t in self.register_taints]} \
            if self.register_taints else {}
        node = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.name,
                             "labels": {**self.register_labels, **self.labels()}},
                "spec": spec, "status": self.status()}
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


__all__ = ["NodeAgent", "default_route_ip", "host_memory_bytes", "LEASE_NAMESPACE",
           "parse_taints", "parse_node_labels", "is_kubelet_label", "TAINT_EFFECTS"]
