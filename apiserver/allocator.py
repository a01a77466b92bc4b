"""ClusterIP and node-port allocation for Services, done by the API server in the write
itself (Kubernetes' Service REST storage with its IP and port allocators).

Each allocated address and port is a key of its own in etcd
(``/registry/ranges/serviceips/<ip>``, ``/registry/ranges/servicenodeports/<port>``) whose
value names the owning Service. A claim is created (create-if-absent) in the same etcd
transaction that writes the Service, and released in the one that deletes the Service or
stops it using the address, so the Services and the claims never disagree and etcd decides
every race, between requests of one process or of several API servers: of two creates asking
for one address exactly one transaction succeeds; the other is refused ("provided IP is
already allocated") or, when it asked for nothing in particular, takes another pick.
(Kubernetes keeps one bitmap object per range instead; a key per claim needs no
read-modify-write of a shared object.) A repair pass at start removes claims whose Service
is gone and restores claims a Service lacks, as Kubernetes' repair controllers do.

Dynamic picks are random, from the upper part of the range first (Kubernetes' static/dynamic
split), so addresses users ask for by hand rarely collide with given-out ones."""

from __future__ import annotations

import ipaddress
import json
import logging
import random
from dataclasses import dataclass, field
from typing import Any

from minik8s.api.errors import Invalid
from minik8s.api.meta import Obj
from minik8s.api.validation import invalid

from apiserver.storage import Claims, KeyMissing

log = logging.getLogger(__name__)

IP_PREFIX = "/registry/ranges/serviceips/"
PORT_PREFIX = "/registry/ranges/servicenodeports/"
_NODE_PORT_TYPES = ("NodePort", "LoadBalancer")
_ATTEMPTS = 8  # picks per request before giving up on a crowded range
_SMALL = 1 << 16  # ranges up to this size are searched exhaustively for a free value


def parse_port_range(text: str) -> tuple[int, int]:
    """``30000-32767`` (or one port) as (first, last)."""
    lo, sep, hi = str(text).strip().partition("-")
    try:
        first, last = int(lo), int(hi if sep else lo)
    except ValueError:
        raise ValueError(f"invalid port range {text!r}: want FIRST-LAST") from None
    if not 0 < first <= last <= 65535:
        raise ValueError(f"invalid port range {text!r}")
    return first, last


def owner_of(obj: Obj) -> bytes:
    """A claim's value: the Service that holds it (bytes compared exactly on release)."""
    md = obj.get("metadata") or {}
    return json.dumps({"namespace": md.get("namespace"), "name": md.get("name"),
                       "uid": md.get("uid")}, sort_keys=True, separators=(",", ":")).encode()


def ips_of(obj: Obj) -> list[str]:
    """The ClusterIPs a Service holds (none for headless and ExternalName Services)."""
    spec = obj.get("spec") if isinstance(obj, dict) else None
    if not isinstance(spec, dict):
        return []
    ips = [str(i) for i in spec.get("clusterIPs") or [] if isinstance(i, str)]
    if not ips and isinstance(spec.get("clusterIP"), str):
        ips = [spec["clusterIP"]]
    return [i for i in ips if i and i != "None"]


def node_ports_of(obj: Obj) -> list[int]:
    spec = obj.get("spec") if isinstance(obj, dict) else None
    if not isinstance(spec, dict):
        return []
    out: list[int] = []
    for port in spec.get("ports") or []:
        np_ = port.get("nodePort") if isinstance(port, dict) else None
        if isinstance(np_, int) and not isinstance(np_, bool) and np_ and np_ not in out:
            out.append(np_)
    return out


@dataclass
class _Want:
    key: str
    requested: bool
    path: str  # the field a refusal names
    value: Any
    slots: list[Any] = field(default_factory=list)  # where the value is written in the spec


class ServiceAllocator:
    def __init__(self, storage: Any, cluster_ip_range: str = "10.96.0.0/12",
                 node_port_range: str = "30000-32767", services: Any = None):
        """``services``: the watch cache of Services (``.objects``), a hint of what is taken
        so picks rarely collide; etcd's transaction is what decides."""
        self.storage = storage
        self.network = ipaddress.ip_network(cluster_ip_range, strict=True)
        if self.network.version != 4:
            raise ValueError("only IPv4 service ranges are supported")
        if self.network.num_addresses < 4:
            raise ValueError(f"service range {cluster_ip_range} is too small")
        self.port_range = parse_port_range(node_port_range)
        self.services = services
        self._random = random.SystemRandom()
        # Usable addresses: all but the network and broadcast addresses, as Kubernetes.
        self._first = int(self.network.network_address) + 1
        self._last = int(self.network.broadcast_address) - 1
        size = self._last - self._first + 1
        # The lower band is left to requested addresses while the upper one has room.
        self._static = min(max(16, size // 16), 256)

    @property
    def first_ip(self) -> str:
        """The address of the ``kubernetes`` Service."""
        return str(ipaddress.ip_address(self._first))

    # --- hooks called by the resource store ------------------------------------------------

    async def admit_create(self, obj: Obj, *, dry_run: bool = False) -> "Plan | None":
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return None
        plan = Plan(self, obj, held_ips=set(), held_ports=set())
        plan.build()
        if dry_run:
            await plan.check_free()
            return None
        return plan

    async def admit_update(self, new: Obj, old: Obj, *, dry_run: bool = False) -> "Plan | None":
        if not isinstance(new.get("spec"), dict):
            return None
        plan = Plan(self, new, held_ips=set(ips_of(old)), held_ports=set(node_ports_of(old)),
                    old=old)
        plan.build()
        if dry_run:
            await plan.check_free()
            return None
        return plan

    def release_all(self, obj: Obj) -> Claims:
        owner = owner_of(obj)
        keys = [self.ip_key(i) for i in ips_of(obj)] + [self.port_key(p)
                                                          for p in node_ports_of(obj)]
        return Claims(release={k: owner for k in keys})

    # --- keys and picks ------------------------------------------------------------------

    @staticmethod
    def ip_key(ip: str) -> str:
        return IP_PREFIX + ip

    @staticmethod
    def port_key(port: int) -> str:
        return f"{PORT_PREFIX}{port}"

    def ip_in_range(self, ip: ipaddress.IPv4Address) -> bool:
        return ip.version == 4 and self._first <= int(ip) <= self._last

    def _used(self) -> tuple[set[str], set[int]]:
        ips: set[str] = set()
        ports: set[int] = set()
        for svc in list(getattr(self.services, "objects", {}).values()):
            ips.update(ips_of(svc))
            ports.update(node_ports_of(svc))
        return ips, ports

    def pick_ip(self, avoid: set[str]) -> str | None:
        used, _ = self._used()
        used |= avoid
        lo, hi = self._first, self._last
        split = lo + self._static
        bands = [(split, hi), (lo + 1, split - 1)] if split <= hi else [(lo + 1, hi)]
        for first, last in bands:  # lo itself is the `kubernetes` Service's address
            if first > last:
                continue
            for _ in range(64):  # random probes: enough in a sparse range
                ip = str(ipaddress.ip_address(self._random.randint(first, last)))
                if ip not in used:
                    return ip
            if last - first < _SMALL:
                free = [n for n in range(first, last + 1)
                        if str(ipaddress.ip_address(n)) not in used]
                if free:
                    return str(ipaddress.ip_address(self._random.choice(free)))
        return None

    def pick_port(self, avoid: set[int]) -> int | None:
        _, used = self._used()
        used |= avoid
        first, last = self.port_range
        free = [p for p in range(first, last + 1) if p not in used]
        return self._random.choice(free) if free else None

    # --- repair ----------------------------------------------------------------------------

    async def repair(self, services_prefix: str = "/registry/core/services/") -> dict[str, int]:
        """Make the claims match the Services: drop claims no Service holds, add claims a
        Service lacks or holds under another owner. Everything is read at one revision, and
        every change is one transaction guarded by the mod revisions read (the claim's, and
        the Service's for a claim written), so a concurrent write by another API server is
        never undone."""
        services, revision, *_ = await _list_all(self.storage, services_prefix)
        wanted: dict[str, tuple[bytes, str, int]] = {}  # claim key -> owner, service key, rev
        dup = 0
        for st in services:
            obj = st.obj
            md = obj.get("metadata") or {}
            skey = f"{services_prefix}{md.get('namespace')}/{md.get('name')}"
            owner = owner_of(obj)
            keys = [self.ip_key(i) for i in ips_of(obj)] + [self.port_key(p)
                                                              for p in node_ports_of(obj)]
            for k in keys:
                if k in wanted and wanted[k][0] != owner:
                    dup += 1
                    log.warning("%s is held by two Services (%s and %s/%s); recreate one",
                                k.rsplit("/", 1)[-1], wanted[k][1].split("/services/")[-1],
                                md.get("namespace"), md.get("name"))
                    continue
                wanted[k] = (owner, skey, st.revision)
        claims = {key: (value, mod) for prefix in (IP_PREFIX, PORT_PREFIX)
                  async for key, value, mod in self.storage.raw_range(prefix,
                                                                       revision=revision)}
        removed = added = 0
        for key, (value, mod) in claims.items():
            if key not in wanted and await self.storage.write_if({key: mod}, delete=[key]):
                removed += 1
        for key, (owner, skey, srev) in wanted.items():
            held = claims.get(key)
            if held is not None and held[0] == owner:
                continue
            # Absent, or recorded for another owner (a Service recreated under the same
            # name): written in one transaction, only if neither the claim nor the Service
            # changed since they were read, so no concurrent create can slip in between.
            if await self.storage.write_if({key: held[1] if held else 0, skey: srev},
                                           put={key: owner}):
                added += 1
        if removed or added or dup:
            log.info("service allocation repair: %d stale claim(s) removed, %d restored, "
                     "%d conflicting", removed, added, dup)
        return {"removed": removed, "added": added, "conflicts": dup}


class Plan:
    """One write's allocations: fills the Service's spec, lists the claims to take and to
    release, and re-picks when etcd reports a pick taken."""

    def __init__(self, alloc: ServiceAllocator, obj: Obj, *, held_ips: set[str],
                 held_ports: set[int], old: Obj | None = None):
        self.alloc = alloc
        self.obj = obj
        self.old = old
        self.held_ips = held_ips
        self.held_ports = held_ports
        self.wants: list[_Want] = []
        self.avoid_ips: set[str] = set()
        self.avoid_ports: set[int] = set()
        self.attempts = 0

    @property
    def name(self) -> str:
        return (self.obj.get("metadata") or {}).get("name", "")

    def _refuse(self, causes: list[dict[str, str]]) -> Invalid:
        return Invalid.object("Service", "", self.name, causes)

    def build(self) -> None:
        spec = self.obj["spec"]
        svc_type = spec.get("type") or "ClusterIP"
        if svc_type == "ExternalName":
            for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
                if spec.get(key) in (None, "", []):
                    spec.pop(key, None)
        else:
            self._cluster_ip(spec)
        self._node_ports(spec, svc_type)

    def _cluster_ip(self, spec: dict) -> None:
        ip = spec.get("clusterIP")
        ips = spec.get("clusterIPs")
        if ips in (None, []):
            ips = [ip] if ip else []
        if not isinstance(ips, list) or not all(isinstance(i, str) for i in ips):
            raise self._refuse([invalid("spec.clusterIPs", ips, "must be a list of IP "
                                                               "addresses")])
        if ip and ips and ips[0] != ip:
            raise self._refuse([invalid("spec.clusterIPs", ips,
                                        "element [0] must match clusterIP")])
        if len(ips) > 1:
            raise self._refuse([invalid("spec.clusterIPs[1]", ips[1], "this cluster is not "
                                        "configured for dual-stack services")])
        for i, fam in enumerate(spec.get("ipFamilies") or []):
            if fam == "IPv6":
                raise self._refuse([invalid(f"spec.ipFamilies[{i}]", fam,
                                            "not configured on this cluster")])
        if spec.get("ipFamilyPolicy") == "RequireDualStack":
            raise self._refuse([invalid("spec.ipFamilyPolicy", "RequireDualStack",
                                        "this cluster is not configured for dual-stack "
                                        "services")])
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        value = ips[0] if ips else ""
        if value == "None":
            spec["clusterIP"], spec["clusterIPs"] = "None", ["None"]
            return
        if value:
            try:
                parsed = ipaddress.ip_address(value)
            except ValueError:
                raise self._refuse([invalid("spec.clusterIPs[0]", value,
                                            "must be a valid IP address")]) from None
            value = str(parsed)
            if value not in self.held_ips:
                if not self.alloc.ip_in_range(parsed):  # type: ignore[arg-type]
                    raise self._refuse([invalid(
                        "spec.clusterIPs[0]", value,
                        f"failed to allocate IP {value}: the provided IP ({value}) is not in "
                        f"the valid range. The range of valid IPs is {self.alloc.network}")])
                self.wants.append(_Want(self.alloc.ip_key(value), True, "spec.clusterIPs[0]",
                                        value))
        else:
            value = self._pick_ip()
            self.wants.append(_Want(self.alloc.ip_key(value), False, "spec.clusterIPs[0]",
                                    value))
        spec["clusterIP"], spec["clusterIPs"] = value, [value]

    def _pick_ip(self) -> str:
        ip = self.alloc.pick_ip(self.avoid_ips | self.held_ips)
        if ip is None:
            raise self._refuse([invalid("spec.clusterIPs", [], "failed to allocate a "
                                        "serviceIP: range is full")])
        return ip

    def _node_ports(self, spec: dict, svc_type: str) -> None:
        ports = [p for p in spec.get("ports") or [] if isinstance(p, dict)]
        if svc_type not in _NODE_PORT_TYPES:
            return  # validation refuses a nodePort here; the strategy dropped kept ones
        dynamic = not (svc_type == "LoadBalancer"
                       and spec.get("allocateLoadBalancerNodePorts") is False)
        lo, hi = self.alloc.port_range
        by_value: dict[int, _Want] = {}
        for i, port in enumerate(ports):
            np_ = port.get("nodePort")
            path = f"spec.ports[{i}].nodePort"
            if isinstance(np_, int) and not isinstance(np_, bool) and np_:
                if np_ in by_value:
                    by_value[np_].slots.append(port)
                    continue
                if np_ not in self.held_ports and not lo <= np_ <= hi:
                    raise self._refuse([invalid(path, np_, "provided port is not in the valid "
                                                f"range. The range of valid ports is "
                                                f"{lo}-{hi}")])
                want = _Want(self.alloc.port_key(np_), True, path, np_, [port])
                by_value[np_] = want
                if np_ not in self.held_ports:
                    self.wants.append(want)
            elif dynamic:
                value = self._pick_port(set(by_value))
                port["nodePort"] = value
                want = _Want(self.alloc.port_key(value), False, path, value, [port])
                by_value[value] = want
                self.wants.append(want)

    def _pick_port(self, also: set[int]) -> int:
        port = self.alloc.pick_port(self.avoid_ports | self.held_ports | also)
        if port is None:
            raise self._refuse([invalid("spec.ports", [], "failed to allocate a nodePort: "
                                        "range is full")])
        return port

    def claims(self) -> Claims | None:
        owner = owner_of(self.obj)
        take = {w.key: owner for w in self.wants}
        release: dict[str, bytes] = {}
        if self.old is not None:
            old_owner = owner_of(self.old)
            keep = set(ips_of(self.obj))
            release.update({self.alloc.ip_key(i): old_owner for i in self.held_ips
                            if i not in keep})
            keep_ports = set(node_ports_of(self.obj))
            release.update({self.alloc.port_key(p): old_owner for p in self.held_ports
                            if p not in keep_ports})
        claims = Claims(take=take, release=release)
        return claims or None

    def retry(self, taken: list[str]) -> None:
        """Some claims were held already: a requested value is refused; a picked one is
        replaced by another pick."""
        self.attempts += 1
        refused = [w for w in self.wants if w.key in taken and w.requested]
        if refused:
            raise self._refuse([self._taken_cause(w) for w in refused])
        if self.attempts >= _ATTEMPTS:
            raise self._refuse([invalid("spec", self.name, "could not allocate a free "
                                        "address or port; retry the request")])
        spec = self.obj["spec"]
        for w in self.wants:
            if w.key not in taken:
                continue
            if w.key.startswith(IP_PREFIX):
                self.avoid_ips.add(w.value)
                w.value = self._pick_ip()
                spec["clusterIP"], spec["clusterIPs"] = w.value, [w.value]
                w.key = self.alloc.ip_key(w.value)
            else:
                self.avoid_ports.add(w.value)
                others = {x.value for x in self.wants if x is not w}
                w.value = self._pick_port(others)
                for port in w.slots:
                    port["nodePort"] = w.value
                w.key = self.alloc.port_key(w.value)

    @staticmethod
    def _taken_cause(w: _Want) -> dict[str, str]:
        if w.key.startswith(IP_PREFIX):
            return invalid(w.path, w.value, f"failed to allocate IP {w.value}: provided IP is "
                                            f"already allocated")
        return invalid(w.path, w.value, "provided port is already allocated")

    async def check_free(self) -> None:
        """For a dry run: refuse requested values held by someone else, claim nothing."""
        taken = []
        for w in self.wants:
            if not w.requested:
                continue
            try:
                await self.alloc.storage.get(w.key)
                taken.append(w)
            except KeyMissing:
                continue
        if taken:
            raise self._refuse([self._taken_cause(w) for w in taken])


# --- reading for the repair -----------------------------------------------------------------


async def _list_all(storage: Any, prefix: str) -> tuple[list[Any], int]:
    items: list[Any] = []
    start_after, revision = None, 0
    while True:
        page, rev, more, last = await storage.list(prefix, start_after=start_after, limit=500,
                                                   revision=revision)
        revision = revision or rev
        items.extend(page)
        if not more:
            return items, revision
        start_after = last


__all__ = ["ServiceAllocator", "Plan", "IP_PREFIX", "PORT_PREFIX", "parse_port_range",
           "owner_of", "ips_of", "node_ports_of"]
