"""The pod network of one node, wired the way the CNI ``bridge`` plugin with ``host-local``
IPAM does it, in the network namespace the kubelet runs in (the node's):

- a bridge ``mk8s-pods`` (a name Docker never uses) holding the gateway, the first host
  address of the node's podCIDR; IPv4 forwarding on;
- per pod a veth pair: the host end (``vmk`` + 12 hex digits of the pod uid) on the bridge
  in hairpin mode (so a pod can reach itself through its Service's DNAT),
  the other end made as ``eth0`` right in the pod sandbox's namespace (found by the infra
  container's PID), with the pod's address and a default route via the gateway;
- host-gw routes: every other node's podCIDR via that node's InternalIP, and an
  ``unreachable`` route for the whole cluster CIDR, so a pod range no node holds is refused
  here instead of following a default route off the machine;
- a ``filter`` chain ``MK8S-POD-EGRESS``: what pods send may only go to the cluster CIDR,
  the service CIDR, node addresses and the node's own subnet (where the API server of a
  local cluster is), or answer a connection made to them; everything else is dropped.
  Nothing is masqueraded.

Routes this module creates carry their own routing protocol number (``RTPROT_MINIK8S``), so
``sync_routes`` removes exactly its own. Netlink calls go through pyroute2's synchronous
``IPRoute`` in worker threads: its asyncio flavour needs the standard event loop (uvloop
cannot open netlink sockets), and each call is short."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from kubelet.network.ipam import HostLocalIPAM, IPAMExhausted

log = logging.getLogger(__name__)

BRIDGE = "mk8s-pods"
EGRESS_CHAIN = "MK8S-POD-EGRESS"
RTPROT_MINIK8S = 77  # routing protocol number marking routes made here
DEFAULT_CLUSTER_CIDR = "10.244.0.0/16"
DEFAULT_SERVICE_CIDR = "10.96.0.0/12"
_MAIN_TABLE = 254


class PodNetworkError(RuntimeError):
    """Wiring a pod failed; the message says which step."""


def host_veth_name(pod_uid: str) -> str:
    """The node-side interface of a pod (15 characters, the kernel's limit)."""
    return "vmk" + _uid_hex(pod_uid)


def _peer_veth_name(pod_uid: str) -> str:
    return "pmk" + _uid_hex(pod_uid)


def _uid_hex(pod_uid: str) -> str:
    digits = "".join(c for c in pod_uid.lower() if c in "0123456789abcdef")
    if len(digits) < 12:  # not a UUID: hash it into the same shape
        import hashlib
        digits = hashlib.sha256(pod_uid.encode()).hexdigest()
    return digits[:12]


class BridgeNetwork:
    def __init__(self, node_name: str, root_dir: Path | str, node_ip: str = "",
                 cluster_dns: str | None = None, *, cluster_cidr: str | None = None,
                 service_cidr: str | None = None, bridge: str = BRIDGE,
                 mtu: int | None = None):
        cluster_cidr = cluster_cidr or DEFAULT_CLUSTER_CIDR
        service_cidr = service_cidr or DEFAULT_SERVICE_CIDR
        self.node_name = node_name
        self.root_dir = Path(root_dir)
        self.node_ip = node_ip
        self.cluster_dns = cluster_dns or None
        self.cluster_cidr = ipaddress.ip_network(cluster_cidr)
        self.service_cidr = ipaddress.ip_network(service_cidr)
        self.bridge = bridge
        self.mtu = mtu
        self.pod_cidr: ipaddress.IPv4Network | None = None
        self.ipam: HostLocalIPAM | None = None
        self._node_ips: set[str] = {node_ip} if node_ip else set()
        self._lock = asyncio.Lock()  # setup, routes and firewall
        self._pod_locks: dict[str, asyncio.Lock] = {}

    @property
    def ipam_dir(self) -> Path:
        return self.root_dir / "network" / "ipam"

    @property
    def dns_ip(self) -> str:
        return self.cluster_dns or self.node_ip

    @property
    def gateway(self) -> str:
        if self.pod_cidr is None:
            raise PodNetworkError("the pod network is not set up (no podCIDR yet)")
        return str(self.pod_cidr.network_address + 1)

    # --- PodNetwork ---------------------------------------------------------------------

    async def setup(self, pod_cidr: str) -> None:
        cidr = ipaddress.ip_network(pod_cidr, strict=False)
        async with self._lock:
            self.pod_cidr = cidr
            self.ipam = HostLocalIPAM(self.ipam_dir, str(cidr))
            await asyncio.to_thread(self._setup_links, cidr)
            _sysctl("net/ipv4/ip_forward", "1")
            await self._sync_firewall()
        log.info("pod network %s on bridge %s (gateway %s)", cidr, self.bridge, self.gateway)

    async def attach(self, pod_uid: str, sandbox_pid: int) -> str:
        if self.ipam is None or self.pod_cidr is None:
            raise PodNetworkError("the pod network is not set up (no podCIDR yet)")
        async with self._pod_lock(pod_uid):
            try:
                ip = self.ipam.allocate(pod_uid)
            except IPAMExhausted as exc:
                raise PodNetworkError(str(exc)) from None
            await asyncio.to_thread(self._wire, pod_uid, sandbox_pid, ip)
            return ip

    async def reserve(self, pod_uid: str) -> str:
        """The address ``attach`` will give the pod, allocated now without wiring anything
        (so containers made before the sandbox runs can know it)."""
        if self.ipam is None:
            raise PodNetworkError("the pod network is not set up (no podCIDR yet)")
        async with self._pod_lock(pod_uid):
            try:
                return self.ipam.allocate(pod_uid)
            except IPAMExhausted as exc:
                raise PodNetworkError(str(exc)) from None

    async def detach(self, pod_uid: str) -> None:
        async with self._pod_lock(pod_uid):
            await asyncio.to_thread(self._unwire, pod_uid)
            if self.ipam is not None:
                self.ipam.release(pod_uid)
            else:  # not set up in this run: release whatever range the files are in
                _release_any(self.ipam_dir, pod_uid)
        self._pod_locks.pop(pod_uid, None)

    async def sync_routes(self, nodes: list[dict[str, Any]]) -> None:
        wanted: dict[ipaddress.IPv4Network, str] = {}
        node_ips = {self.node_ip} if self.node_ip else set()
        for node in nodes:
            name = (node.get("metadata") or {}).get("name")
            ip = _internal_ip(node)
            if ip:
                node_ips.add(ip)
            if name == self.node_name or not ip or ip == self.node_ip:
                continue
            raw = (node.get("spec") or {}).get("podCIDR")
            try:
                cidr = ipaddress.ip_network(raw, strict=False) if raw else None
            except ValueError:
                cidr = None
            if cidr is None or not cidr.subnet_of(self.cluster_cidr):  # type: ignore[arg-type]
                continue
            if self.pod_cidr is not None and cidr.overlaps(self.pod_cidr):
                continue
            wanted[cidr] = ip
        async with self._lock:
            await asyncio.to_thread(self._sync_route_table, wanted)
            if node_ips != self._node_ips:
                self._node_ips = node_ips
                if self.pod_cidr is not None:
                    await self._sync_firewall()

    # --- netlink (worker threads) -------------------------------------------------------

    def _setup_links(self, cidr: ipaddress.IPv4Network) -> None:
        gateway = str(cidr.network_address + 1)
        with IPRoute() as ipr:
            idx = _index(ipr, self.bridge)
            if idx is None:
                kw = {"mtu": self.mtu} if self.mtu else {}
                ipr.link("add", ifname=self.bridge, kind="bridge", **kw)
                idx = _index(ipr, self.bridge)
            assert idx is not None
            have = [(a.get("address"), a.get("prefixlen"))
                    for a in ipr.addr("dump", index=idx, family=2)]
            for address, prefixlen in have:
                if (address, prefixlen) != (gateway, cidr.prefixlen):
                    ipr.addr("del", index=idx, address=address, prefixlen=prefixlen)
            if (gateway, cidr.prefixlen) not in have:
                ipr.addr("add", index=idx, address=gateway, prefixlen=cidr.prefixlen)
            ipr.link("set", index=idx, state="up")
            lo = _index(ipr, "lo")
            if lo is not None:
                ipr.link("set", index=lo, state="up")
            ipr.route("replace", dst=str(self.cluster_cidr), type="unreachable",
                      proto=RTPROT_MINIK8S)

    def _wire(self, pod_uid: str, pid: int, ip: str) -> None:
        assert self.pod_cidr is not None
        host, peer = host_veth_name(pod_uid), _peer_veth_name(pod_uid)
        nspath = f"/proc/{pid}/ns/net"
        if not os.path.exists(nspath):
            raise PodNetworkError(f"sandbox process {pid} is gone")
        prefix = self.pod_cidr.prefixlen
        with IPRoute() as ipr:
            bridge = _index(ipr, self.bridge)
            if bridge is None:
                raise PodNetworkError(f"bridge {self.bridge} is missing; setup() first")
            host_idx = _index(ipr, host)
            if host_idx is not None and self._pod_has(nspath, ip, prefix):
                ipr.link("set", index=host_idx, master=bridge, state="up")
                _hairpin(ipr, host_idx)
                return  # already wired (a restarted kubelet attaching again)
            stale = [host_idx, _index(ipr, peer)]
            for stale_idx in stale:
                if stale_idx is not None:
                    ipr.link("del", index=stale_idx)
            kw = {"mtu": self.mtu} if self.mtu else {}
            # Fast path: the peer made right inside the sandbox as eth0, which spares the
            # move between namespaces (the kernel waits for an RCU grace period there) and
            # the rename. A sandbox that already has an eth0 takes the long way below.
            try:
                ipr.link("add", ifname=host, kind="veth",
                         peer={"ifname": "eth0", "net_ns_pid": pid}, **kw)
                direct = True
            except NetlinkError:
                with contextlib.suppress(NetlinkError):
                    ipr.link("del", ifname=host)
                ipr.link("add", ifname=host, kind="veth", peer=peer, **kw)
                direct = False
            try:
                host_idx = _index(ipr, host)
                if direct:
                    self._configure_pod(nspath, "eth0", ip, prefix)
                else:
                    peer_idx = _index(ipr, peer)
                    ipr.link("set", index=peer_idx, net_ns_pid=pid)
                    self._configure_pod(nspath, peer, ip, prefix)
                ipr.link("set", index=host_idx, master=bridge, state="up")
                _hairpin(ipr, host_idx)
            except Exception as exc:
                with contextlib.suppress(NetlinkError):
                    ipr.link("del", ifname=host)
                raise PodNetworkError(f"wiring pod {pod_uid} (pid {pid}): {exc}") from exc

    def _pod_has(self, nspath: str, ip: str, prefix: int) -> bool:
        try:
            with _netns_route(nspath) as ns:
                idx = _index(ns, "eth0")
                if idx is None:
                    return False
                return any((a.get("address"), a.get("prefixlen")) == (ip, prefix)
                           for a in ns.addr("dump", index=idx, family=2))
        except (OSError, NetlinkError):
            return False

    def _configure_pod(self, nspath: str, peer: str, ip: str, prefix: int) -> None:
        with _netns_route(nspath) as ns:
            idx = _index(ns, peer)
            if idx is None:
                raise PodNetworkError(f"{peer} did not arrive in the sandbox")
            if peer != "eth0":  # moved in under its own name: it takes eth0's place
                old = _index(ns, "eth0")
                if old is not None:
                    ns.link("del", index=old)
                ns.link("set", index=idx, ifname="eth0")
            ns.addr("add", index=idx, address=ip, prefixlen=prefix)
            ns.link("set", index=idx, state="up")
            lo = _index(ns, "lo")
            if lo is not None:
                ns.link("set", index=lo, state="up")
            ns.route("replace", dst="0.0.0.0/0", gateway=self.gateway, oif=idx)

    def _unwire(self, pod_uid: str) -> None:
        with IPRoute() as ipr:
            for name in (host_veth_name(pod_uid), _peer_veth_name(pod_uid)):
                idx = _index(ipr, name)
                if idx is not None:
                    with contextlib.suppress(NetlinkError):
                        ipr.link("del", index=idx)

    def _sync_route_table(self, wanted: dict[ipaddress.IPv4Network, str]) -> None:
        with IPRoute() as ipr:
            ipr.route("replace", dst=str(self.cluster_cidr), type="unreachable",
                      proto=RTPROT_MINIK8S)
            have: dict[ipaddress.IPv4Network, str | None] = {}
            for r in ipr.route("dump", table=_MAIN_TABLE, family=2):
                if r.get("proto") != RTPROT_MINIK8S or r.get("dst") is None:
                    continue
                dst = ipaddress.ip_network(f"{r.get('dst')}/{r.get('dst_len')}")
                if dst == self.cluster_cidr:
                    continue
                have[dst] = r.get("gateway")
            for dst, gateway in have.items():
                if wanted.get(dst) != gateway:
                    with contextlib.suppress(NetlinkError):
                        ipr.route("del", dst=str(dst), proto=RTPROT_MINIK8S)
            for dst, gateway in wanted.items():
                if have.get(dst) == gateway:
                    continue
                try:
                    ipr.route("replace", dst=str(dst), gateway=gateway, proto=RTPROT_MINIK8S)
                except NetlinkError as exc:
                    if exc.code not in (errno.ENETUNREACH, errno.EHOSTUNREACH):
                        raise
                    log.warning("no route to node address %s for pod range %s", gateway, dst)

    # --- iptables -----------------------------------------------------------------------

    async def _sync_firewall(self) -> None:
        """``FORWARD``: what leaves the pod bridge goes through ``MK8S-POD-EGRESS`` (only
        cluster, service and node addresses allowed); what goes to it is accepted (only
        routes of the cluster lead there)."""
        if shutil.which("iptables") is None:
            log.warning("iptables not found: pod egress is not restricted")
            return
        chain = EGRESS_CHAIN
        if await _iptables("-n", "-L", chain, check=False) != 0:
            await _iptables("-N", chain)
        await _iptables("-F", chain)
        await _iptables("-A", chain, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED",
                        "-j", "ACCEPT")
        allowed = [str(self.cluster_cidr), str(self.service_cidr)]
        allowed += await asyncio.to_thread(_subnets_of, self.node_ip)
        allowed += sorted(f"{ip}/32" for ip in self._node_ips if ip)
        for dst in dict.fromkeys(allowed):
            await _iptables("-A", chain, "-d", dst, "-j", "ACCEPT")
        await _iptables("-A", chain, "-m", "comment", "--comment",
                        "minik8s: pods reach nothing outside the cluster", "-j", "DROP")
        for rule in ([ "-i", self.bridge, "-j", chain],
                     ["-o", self.bridge, "-j", "ACCEPT"]):
            if await _iptables("-C", "FORWARD", *rule, check=False) != 0:
                await _iptables("-I", "FORWARD", "1", *rule)

    def _pod_lock(self, pod_uid: str) -> asyncio.Lock:
        return self._pod_locks.setdefault(pod_uid, asyncio.Lock())


def teardown(bridge: str = BRIDGE) -> list[str]:
    """Undo, in this network namespace, what ``BridgeNetwork`` set up: for ``minik8s reset``
    once the kubelet is stopped and its pods' containers are gone. Removes the pod veths
    still on the bridge, the bridge, every route marked ``RTPROT_MINIK8S`` (host-gw routes
    and the cluster CIDR's unreachable route), the FORWARD rules and the egress chain.
    ``ip_forward`` stays as it is: its value before the kubelet is not known. Returns what
    was removed, for the caller to print."""
    removed: list[str] = []
    with IPRoute() as ipr:
        idx = _index(ipr, bridge)
        if idx is not None:
            for link in ipr.get_links():
                if link.get_attr("IFLA_MASTER") == idx:
                    with contextlib.suppress(NetlinkError):
                        ipr.link("del", index=link["index"])
            with contextlib.suppress(NetlinkError):
                ipr.link("del", index=idx)
                removed.append(f"bridge {bridge}")
        for r in ipr.route("dump", table=_MAIN_TABLE, family=2):
            if r.get("proto") != RTPROT_MINIK8S or r.get("dst") is None:
                continue
            dst = f"{r.get('dst')}/{r.get('dst_len')}"
            with contextlib.suppress(NetlinkError):
                ipr.route("del", dst=dst, proto=RTPROT_MINIK8S, type=r["type"],
                          table=_MAIN_TABLE)
                removed.append(f"route {dst}")
    if shutil.which("iptables") is not None:
        def iptables(*args: str) -> bool:
            return subprocess.run(["iptables", "-w", "5", *args], capture_output=True
                                  ).returncode == 0
        for rule in (["-i", bridge, "-j", EGRESS_CHAIN], ["-o", bridge, "-j", "ACCEPT"]):
            while iptables("-D", "FORWARD", *rule):
                pass
        if iptables("-F", EGRESS_CHAIN) and iptables("-X", EGRESS_CHAIN):
            removed.append(f"chain {EGRESS_CHAIN}")
    return removed


# --- helpers ------------------------------------------------------------------------------


_CLONE_NEWNET = 0x40000000
_libc: Any = None


def _setns(fd: int) -> None:
    import ctypes
    import ctypes.util
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def _netns_route(nspath: str):
    """An ``IPRoute`` working in the network namespace ``nspath``, used on this thread only.

    pyroute2's ``IPRoute(netns=...)`` forks the (multi-threaded) kubelet to open its socket
    and SIGTERMs the child afterwards; a child still alive then runs the asyncio signal
    handler it inherited, whose wakeup fd is the parent loop's, and the kubelet takes the
    child's SIGTERM for its own and stops. Instead this worker thread enters the namespace
    itself (a network namespace is a per-thread attribute), works there, and goes back: no
    fork, and no fork's cost either."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(nspath, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            with IPRoute() as ipr:
                yield ipr
        finally:
            _setns(home)  # never leave a pool thread in a pod's namespace
    finally:
        os.close(home)


def _index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def _internal_ip(node: dict[str, Any]) -> str | None:
    for addr in (node.get("status") or {}).get("addresses") or []:
        if isinstance(addr, dict) and addr.get("type") == "InternalIP" and addr.get("address"):
            return str(addr["address"])
    return None


def _subnets_of(ip: str) -> list[str]:
    """The connected subnet(s) holding ``ip`` in this namespace."""
    if not ip:
        return []
    out = []
    with IPRoute() as ipr:
        for a in ipr.addr("dump", family=2):
            if a.get("address") == ip:
                out.append(str(ipaddress.ip_network(f"{ip}/{a.get('prefixlen')}", strict=False)))
    return [n for n in out if not n.endswith("/32")]


def _hairpin(ipr: IPRoute, port_idx: int) -> None:
    """Hairpin mode on a pod's bridge port (the CNI bridge plugin's ``hairpinMode``): a pod's
    packet to its own Service is DNATed back to the pod while still in the bridge (bridge
    netfilter), and a bridge only sends a frame out of the port it came in by when that
    port is in hairpin mode."""
    ipr.brport("set", index=port_idx, mode=1)


def _sysctl(key: str, value: str) -> None:
    path = Path("/proc/sys") / key
    try:
        if path.read_text().strip() != value:
            path.write_text(value)
    except OSError as exc:
        raise PodNetworkError(f"cannot set {key.replace('/', '.')}={value}: {exc}") from None


def _release_any(directory: Path, pod_uid: str) -> None:
    if not directory.is_dir():
        return
    for path in directory.iterdir():
        with contextlib.suppress(OSError, ValueError):
            ipaddress.ip_address(path.name)
            if path.read_text().strip() == pod_uid:
                path.unlink()


async def _iptables(*args: str, check: bool = True) -> int:
    proc = await asyncio.create_subprocess_exec(
        "iptables", "-w", "5", *args, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    if check and proc.returncode != 0:
        raise PodNetworkError(f"iptables {' '.join(args)}: {err.decode().strip()}")
    return proc.returncode or 0


__all__ = ["BridgeNetwork", "PodNetworkError", "host_veth_name", "teardown", "BRIDGE",
           "EGRESS_CHAIN", "RTPROT_MINIK8S"]
