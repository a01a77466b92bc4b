"""Node pod-range allocation, done by the API server when a Node is registered (what
Kubernetes' node-IPAM controller does with ``--allocate-node-cidrs``), so a kubelet sees its
``spec.podCIDR`` in the answer to its registration and no controller has to run first.

"Free" is computed from the Nodes in the watch cache, so deleting a Node releases its range
with nothing to do. The cache lags a write by a moment; ranges handed out but not yet seen
there are kept in an in-process table, and one asyncio lock serialises the choice, so
concurrent registrations never get the same range. (One API server process is assumed: two
servers sharing an etcd could each hand out the same range in the same instant.)"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from dataclasses import dataclass
from typing import Any, Iterable

from minik8s.api.errors import Invalid, ServiceUnavailable
from minik8s.api.meta import Obj

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# How long a range handed out stays reserved while the cache has not shown it yet; long
# past any create's round trip to etcd, short enough that a failed create frees it soon.
_PENDING_SECONDS = 30.0


class NodeCIDRAllocator:
    def __init__(self, cluster_cidr: str, mask_size: int, nodes: Any):
        """``nodes`` is the watch cache of Nodes (``.objects``: name -> Node, ``.ready``)."""
        self.cluster = ipaddress.ip_network(cluster_cidr, strict=True)
        if not self.cluster.prefixlen <= mask_size <= self.cluster.max_prefixlen:
            raise ValueError(f"node CIDR mask size {mask_size} does not fit the cluster CIDR "
                             f"{cluster_cidr}")
        self.mask_size = mask_size
        self.nodes = nodes
        self._lock = asyncio.Lock()
        # Ranges handed out that the cache may not show yet.
        self._pending: dict[Network, _Pending] = {}

    # --- hooks called by the resource store -----------------------------------------------

    async def admit_create(self, obj: Obj, *, dry_run: bool = False) -> None:
        """Give a new Node the lowest free range, or check the one it names."""
        await self._assign(obj, None, dry_run)

    async def admit_update(self, new: Obj, old: Obj, *, dry_run: bool = False) -> None:
        """``spec.podCIDR`` is immutable once set (an update that leaves it out keeps it, as
        a replaced Service keeps its ClusterIP); a Node that has none yet gets one."""
        old_cidrs = _cidrs(old)
        if old_cidrs:
            if _cidrs(new) not in ([], old_cidrs):
                raise Invalid.object("Node", "", new["metadata"].get("name", ""), [{
                    "reason": "FieldValueForbidden", "field": "spec.podCIDR",
                    "message": "Forbidden: node updates may not change podCIDR except from "
                               "\"\" to valid"}])
            spec = new.get("spec")
            if not isinstance(spec, dict):
                spec = new["spec"] = {}
            spec["podCIDR"], spec["podCIDRs"] = old_cidrs[0], list(old_cidrs)
            return
        await self._assign(new, new["metadata"].get("name"), dry_run)

    def created(self, obj: Obj, revision: int) -> None:
        """The Node is stored at ``revision``: its range is reserved until the cache has
        caught up with that revision (from then on the cache alone tells what is used)."""
        uid = obj["metadata"].get("uid")
        for entry in self._pending.values():
            if entry.uid == uid:
                entry.revision = revision

    # --- allocation ---------------------------------------------------------------------

    async def _assign(self, obj: Obj, self_name: str | None, dry_run: bool) -> None:
        spec = obj.get("spec")
        if spec is None:
            spec = obj["spec"] = {}
        if not isinstance(spec, dict):
            return  # validation has refused it already
        name = obj["metadata"].get("name", "")
        requested = self._requested(name, spec)
        async with self._lock:
            await self._wait_cache()
            self._prune()
            if requested is None and self_name is None and name in self.nodes.objects:
                return  # the create fails with AlreadyExists; reserve nothing for it
            used = self._used(exclude=name if self_name else None)
            if requested is not None:
                clash = next((u for u in used if u[0].overlaps(requested)), None)
                if clash is not None:
                    raise Invalid.object("Node", "", name, [{
                        "reason": "FieldValueInvalid", "field": "spec.podCIDR",
                        "message": f"Invalid value: \"{requested}\": overlaps the podCIDR "
                                   f"{clash[0]} of node {clash[1]}"}])
                cidr = requested
            else:
                cidr = self._lowest_free([u[0] for u in used])
                if cidr is None:
                    log.warning("no pod range left in %s for node %s (mask /%d)",
                                self.cluster, name, self.mask_size)
                    return
            spec["podCIDR"] = str(cidr)
            spec["podCIDRs"] = [str(cidr)]
            if not dry_run:
                self._pending[cidr] = _Pending(name, obj["metadata"].get("uid"), time.monotonic())

    def _requested(self, name: str, spec: dict) -> Network | None:
        """The range a Node names itself, checked: inside the cluster CIDR, consistent."""
        raw = spec.get("podCIDR") or None
        listed = spec.get("podCIDRs") or []
        if raw is None and listed:
            raw = listed[0]
        if raw is None:
            return None
        try:
            cidr = ipaddress.ip_network(str(raw), strict=True)
        except ValueError:
            raise _invalid(name, raw, "must be a network address in CIDR notation "
                                      "(no host bits set)") from None
        if listed and str(listed[0]) != str(raw):
            raise _invalid(name, raw, "must be the first entry of spec.podCIDRs")
        if cidr.version != self.cluster.version or not cidr.subnet_of(self.cluster):  # type: ignore[arg-type]
            raise _invalid(name, raw, f"is outside the cluster CIDR {self.cluster}")
        return cidr

    async def _wait_cache(self) -> None:
        ready = getattr(self.nodes, "ready", None)
        if ready is None or ready.is_set():
            return
        try:
            await asyncio.wait_for(ready.wait(), 10)
        except asyncio.TimeoutError:
            raise ServiceUnavailable("the node cache is not ready; retry the request") from None

    def _prune(self) -> None:
        now = time.monotonic()
        nodes = self.nodes.objects
        cache_revision = getattr(self.nodes, "revision", 0)
        for cidr, entry in list(self._pending.items()):
            node = nodes.get(entry.name)
            if ((entry.revision is not None and cache_revision >= entry.revision)
                    or (node is not None and str(cidr) in _cidrs(node))
                    or now - entry.at > _PENDING_SECONDS):
                del self._pending[cidr]

    def _used(self, exclude: str | None = None) -> list[tuple[Network, str]]:
        used: list[tuple[Network, str]] = []
        for name, node in self.nodes.objects.items():
            if name == exclude:
                continue
            for raw in _cidrs(node):
                try:
                    used.append((ipaddress.ip_network(raw, strict=False), name))
                except ValueError:
                    continue
        used += [(cidr, e.name) for cidr, e in self._pending.items() if e.name != exclude]
        return used

    def _lowest_free(self, used: Iterable[Network]) -> Network | None:
        exact: set[Network] = set()
        other: list[Network] = []
        for u in used:
            if u.version == self.cluster.version and u.overlaps(self.cluster):  # type: ignore[arg-type]
                (exact.add(u) if u.prefixlen == self.mask_size else other.append(u))
        for candidate in self.cluster.subnets(new_prefix=self.mask_size):
            if candidate not in exact and not any(candidate.overlaps(u) for u in other):
                return candidate
        return None


@dataclass
class _Pending:
    name: str
    uid: str | None
    at: float  # monotonic time handed out
    revision: int | None = None  # etcd revision of the create, once stored


def _cidrs(node: Obj) -> list[str]:
    spec = node.get("spec") if isinstance(node, dict) else None
    if not isinstance(spec, dict):
        return []
    out = [str(c) for c in spec.get("podCIDRs") or [] if c]
    if spec.get("podCIDR") and str(spec["podCIDR"]) not in out:
        out.insert(0, str(spec["podCIDR"]))
    return out


def _invalid(name: str, value: Any, message: str) -> Invalid:
    return Invalid.object("Node", "", name, [{
        "reason": "FieldValueInvalid", "field": "spec.podCIDR",
        "message": f"Invalid value: \"{value}\": {message}"}])


__all__ = ["NodeCIDRAllocator"]
