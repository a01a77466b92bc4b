"""The "hosts" of a local cluster: each node of ``minik8s up --nodes N`` is a network
namespace of its own (``mk8s-node-<i>``), joined by a veth to a bridge of the project's on
the host (``mk8s0``), with an address from a node range (bridge ``10.250.0.1``, node i at
``10.250.0.(10+i)``). A node namespace has no default route: only the node range is
reachable from it, so nothing a node or its pods send can leave the machine.

The host side gets a route to each node's podCIDR via that node's address (host -> pod
traffic) and an ``unreachable`` route for the whole cluster CIDR. Docker sets the host's
FORWARD policy to DROP and turns on bridge netfilter, so frames bridged between node
namespaces need ``-i mk8s0 -o mk8s0 -j ACCEPT`` in ``DOCKER-USER`` (added when the chain
exists, removed with the rest).

Every object made is written to a state file (in the cluster's run folder) before the next
one is made, and ``teardown`` removes exactly what that file lists, by name. The names and
ranges form a "slot": when the default slot's bridge exists already (another cluster on this
machine) or one of its ranges collides with a route on this host, the next slot is used
(``mk8s1``, ``mk8s1-node-<i>``, ``10.251.0.0/24``, cluster CIDR ``10.243.0.0/16`` ...); the
choice is recorded in the same file. Commands go through ``ip`` and ``iptables``."""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

RTPROT_MINIK8S = "77"  # the routing protocol number kubelet.network.bridge marks routes with
_LOCK = Path("/run/lock/minik8s-netns.lock")
_SLOTS = 10
_COMMENT = "minik8s node bridge"


class NetnsError(RuntimeError):
    """A command failed; the message names it and quotes its error."""


@dataclass
class NodeNetSettings:
    bridge: str = "mk8s0"
    ns_prefix: str = "mk8s-node-"
    node_range: str = "10.250.0.0/24"
    cluster_cidr: str = "10.244.0.0/16"

    @classmethod
    def slot(cls, k: int) -> "NodeNetSettings":
        if k == 0:
            return cls()
        return cls(bridge=f"mk8s{k}", ns_prefix=f"mk8s{k}-node-",
                   node_range=f"10.{250 + k}.0.0/24", cluster_cidr=f"10.{244 - k}.0.0/16")

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.node_range)

    @property
    def bridge_ip(self) -> str:
        return str(self.network.network_address + 1)

    def node_ip(self, index: int) -> str:
        ip = self.network.network_address + 10 + index
        if ip not in self.network or ip == self.network.broadcast_address:
            raise NetnsError(f"node {index} does not fit in the node range {self.node_range}")
        return str(ip)

    def namespace(self, index: int) -> str:
        return f"{self.ns_prefix}{index}"

    def host_veth(self, index: int) -> str:
        return f"{self.bridge}-n{index}"


@dataclass
class _State:
    settings: NodeNetSettings
    bridge: bool = False
    docker_user_rule: list[str] | None = None
    cluster_route: bool = False
    namespaces: dict[str, int] = field(default_factory=dict)  # name -> index
    routes: dict[str, str] = field(default_factory=dict)  # pod CIDR -> node address


class NodeNetworks:
    """The node namespaces of one cluster; ``state_file`` records what exists."""

    def __init__(self, state_file: Path | str, settings: NodeNetSettings | None = None):
        self.state_file = Path(state_file)
        self._settings = settings
        self._state: _State | None = None

    # --- state ----------------------------------------------------------------------------

    @property
    def settings(self) -> NodeNetSettings:
        return self._load().settings

    def exists(self) -> bool:
        return self.state_file.exists()

    def _load(self) -> _State:
        if self._state is None:
            try:
                raw = json.loads(self.state_file.read_text())
                raw["settings"] = NodeNetSettings(**raw["settings"])
                self._state = _State(**raw)
            except FileNotFoundError:
                with _machine_lock():
                    self._state = _State(self._settings or _free_slot())
                    # Claim the slot's bridge under the lock, so two clusters never pick one.
                    self._ensure_bridge()
        return self._state

    def _save(self) -> None:
        assert self._state is not None
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_name(f".{self.state_file.name}.tmp")
        tmp.write_text(json.dumps(asdict(self._state), indent=2))
        os.replace(tmp, self.state_file)

    # --- host side ------------------------------------------------------------------------

    def ensure_host(self) -> NodeNetSettings:
        """The host bridge with its address, the DOCKER-USER rule, the cluster route."""
        st = self._load()
        self._ensure_bridge()
        s = st.settings
        if not st.cluster_route:
            st.cluster_route = True
            self._save()
            _run("ip", "route", "replace", "unreachable", s.cluster_cidr, "proto", RTPROT_MINIK8S)
        if st.docker_user_rule is None and _chain_exists("DOCKER-USER"):
            rule = ["-i", s.bridge, "-o", s.bridge, "-m", "comment", "--comment", _COMMENT,
                    "-j", "ACCEPT"]
            st.docker_user_rule = rule
            self._save()
            if _run("iptables", "-w", "5", "-C", "DOCKER-USER", *rule, check=False) != 0:
                _run("iptables", "-w", "5", "-I", "DOCKER-USER", "1", *rule)
        return s

    def _ensure_bridge(self) -> None:
        st = self._state
        assert st is not None
        s = st.settings
        if not st.bridge:
            st.bridge = True
            self._save()
        if not _link_exists(s.bridge):
            _run("ip", "link", "add", s.bridge, "type", "bridge")
        cidr = f"{s.bridge_ip}/{s.network.prefixlen}"
        if cidr not in _run_out("ip", "-4", "-o", "addr", "show", "dev", s.bridge):
            _run("ip", "addr", "add", cidr, "dev", s.bridge)
        _run("ip", "link", "set", s.bridge, "up")

    # --- nodes ----------------------------------------------------------------------------

    def create_node_namespace(self, index: int) -> tuple[str, str]:
        """Namespace ``<prefix><index>`` with ``eth0`` at the node's address; (name, ip)."""
        s = self.ensure_host()
        st = self._load()
        name, ip, veth = s.namespace(index), s.node_ip(index), s.host_veth(index)
        st.namespaces[name] = index
        self._save()
        if name not in list_namespaces():
            _run("ip", "netns", "add", name)
        if not _link_exists(veth):
            _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0",
                 "netns", name)
        _run("ip", "link", "set", veth, "master", s.bridge, "up")
        cidr = f"{ip}/{s.network.prefixlen}"
        if cidr not in _run_out("ip", "-n", name, "-4", "-o", "addr", "show", "dev", "eth0"):
            _run("ip", "-n", name, "addr", "add", cidr, "dev", "eth0")
        _run("ip", "-n", name, "link", "set", "eth0", "up")
        _run("ip", "-n", name, "link", "set", "lo", "up")
        return name, ip

    def delete_node_namespace(self, index: int) -> None:
        st = self._load()
        s = st.settings
        name, ip, veth = s.namespace(index), s.node_ip(index), s.host_veth(index)
        for cidr, via in list(st.routes.items()):
            if via == ip:
                _del_route(cidr, via)
                del st.routes[cidr]
        if name in list_namespaces():
            left = _run_out("ip", "netns", "pids", name).split()
            if left:  # they keep the namespace alive, unnamed, after the delete
                print(f"warning: processes {', '.join(left)} still run in {name}",
                      file=sys.stderr)
            _run("ip", "netns", "del", name)
        if _link_exists(veth):
            _run("ip", "link", "del", veth)
        st.namespaces.pop(name, None)
        self._save()

    def node_indices(self) -> list[int]:
        return sorted(self._load().namespaces.values())

    # --- host -> pod routes ---------------------------------------------------------------

    def sync_pod_routes(self, pod_cidrs: dict[str, str]) -> None:
        """Make the host's routes to pod ranges exactly ``{podCIDR: node address}``."""
        st = self._load()
        for cidr, via in list(st.routes.items()):
            if pod_cidrs.get(cidr) != via:
                _del_route(cidr, via)
                del st.routes[cidr]
                self._save()
        for cidr, via in pod_cidrs.items():
            if st.routes.get(cidr) == via:
                continue
            st.routes[cidr] = via
            self._save()
            _run("ip", "route", "replace", cidr, "via", via, "dev", st.settings.bridge,
                 "proto", RTPROT_MINIK8S)

    # --- teardown -------------------------------------------------------------------------

    def teardown(self) -> list[str]:
        """Remove everything the state file lists; what was removed, for the log."""
        if not self.state_file.exists():
            return []
        st = self._load()
        s = st.settings
        removed: list[str] = []
        for cidr, via in list(st.routes.items()):
            _del_route(cidr, via)
            removed.append(f"route {cidr}")
        st.routes.clear()
        for name, index in sorted(st.namespaces.items()):
            self.delete_node_namespace(index)
            removed.append(f"namespace {name}")
        if st.cluster_route:
            _run("ip", "route", "del", "unreachable", s.cluster_cidr, "proto", RTPROT_MINIK8S,
                 check=False)
            removed.append(f"route {s.cluster_cidr}")
        if st.docker_user_rule:
            while _run("iptables", "-w", "5", "-C", "DOCKER-USER", *st.docker_user_rule,
                       check=False) == 0:
                _run("iptables", "-w", "5", "-D", "DOCKER-USER", *st.docker_user_rule)
            removed.append("DOCKER-USER rule")
        if st.bridge and _link_exists(s.bridge):
            _run("ip", "link", "del", s.bridge)
            removed.append(f"bridge {s.bridge}")
        self.state_file.unlink(missing_ok=True)
        self._state = None
        return removed


# --- machine-wide checks ------------------------------------------------------------------


def list_namespaces() -> list[str]:
    out = _run_out("ip", "netns", "list")
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _free_slot() -> NodeNetSettings:
    routes = _host_networks()
    links = _links()
    namespaces = list_namespaces()
    for k in range(_SLOTS):
        s = NodeNetSettings.slot(k)
        if s.bridge in links or any(n.startswith(s.ns_prefix) for n in namespaces):
            continue
        mine = [s.network, ipaddress.IPv4Network(s.cluster_cidr)]
        if any(m.overlaps(r) for m in mine for r in routes):
            continue
        return s
    raise NetnsError("no free node range: every 10.250-10.259 slot is used on this machine")


def _host_networks() -> list[ipaddress.IPv4Network]:
    """Destinations of the host's IPv4 routes (the default route excluded)."""
    nets = []
    for line in _run_out("ip", "-4", "route", "show", "table", "all").splitlines():
        words = line.split()
        if not words:
            continue
        dst = words[1] if words[0] in ("unreachable", "blackhole", "prohibit", "local",
                                       "broadcast", "unicast", "throw") else words[0]
        if dst == "default":
            continue
        with contextlib.suppress(ValueError):
            nets.append(ipaddress.IPv4Network(dst, strict=False))
    return [n for n in nets if n.prefixlen > 0 and not n.is_loopback]


def _links() -> set[str]:
    out = _run_out("ip", "-o", "link", "show")
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line}


def _link_exists(name: str) -> bool:
    return _run("ip", "link", "show", "dev", name, check=False, quiet=True) == 0


def _chain_exists(chain: str) -> bool:
    return (shutil.which("iptables") is not None
            and _run("iptables", "-w", "5", "-n", "-L", chain, check=False, quiet=True) == 0)


def _del_route(cidr: str, via: str) -> None:
    _run("ip", "route", "del", cidr, "via", via, "proto", RTPROT_MINIK8S, check=False, quiet=True)


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    _LOCK.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _run(*cmd: str, check: bool = True, quiet: bool = False) -> int:
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if check and proc.returncode != 0:
        raise NetnsError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
    return proc.returncode


def _run_out(*cmd: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else ""


__all__ = ["NodeNetworks", "NodeNetSettings", "NetnsError", "list_namespaces"]
