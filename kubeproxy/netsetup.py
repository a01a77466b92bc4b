"""The node-side plumbing kube-proxy needs before any rule: the service bridge and sysctls.

- The service CIDR is routed to ``mk8s-svc``, a bridge with no ports, made before anything
  else. A packet to a ClusterIP that no rule rewrites is then dropped here, on this node,
  instead of following a default route off the machine; and unlike a ``blackhole`` route,
  ``connect()`` to a ClusterIP gets as far as the OUTPUT chain, where NAT rewrites it. The
  userspace backend binds ClusterIPs on this bridge as /32 addresses.
- ``net.bridge.bridge-nf-call-iptables=1``: a pod reaching a Service whose endpoint is on the
  same pod bridge gets its reply bridged at layer 2, straight from pod to pod; without
  bridge netfilter that reply skips conntrack, is never un-DNATed, and the client drops it.
  The setting is per network namespace here (it can be written in a node's namespace);
  where it cannot be set, kube-proxy masquerades all service traffic instead, which sends
  replies back through the node.
- ``route_localnet=1`` on the devices pods are reached by (the pod bridge, and the node's
  link toward other nodes' pods), never ``all``: a NodePort on the node's own loopback is
  DNATed to a pod with a 127.0.0.1 source, which the kernel only routes out of (and accepts
  replies on) a device with route_localnet. ``KUBE-FIREWALL`` guards the rest (CVE-2020-8558).

Routes made here carry the project's routing protocol number, and ``teardown`` removes the
bridge (and with it the route and any bound ClusterIP)."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

log = logging.getLogger(__name__)

SERVICE_BRIDGE = "mk8s-svc"
POD_BRIDGE = "mk8s-pods"
RTPROT_MINIK8S = 77
BRIDGE_NF = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")


def _index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def ensure_service_bridge(service_cidr: str, bridge: str = SERVICE_BRIDGE) -> None:
    """The bridge, up, with the service CIDR routed to it (idempotent)."""
    net = ipaddress.ip_network(service_cidr)
    with IPRoute() as ipr:
        idx = _index(ipr, bridge)
        if idx is None:
            with contextlib.suppress(NetlinkError):  # made meanwhile by another instance
                ipr.link("add", ifname=bridge, kind="bridge")
            idx = _index(ipr, bridge)
        assert idx is not None
        ipr.link("set", index=idx, state="up")
        ipr.route("replace", dst=str(net), oif=idx, proto=RTPROT_MINIK8S, scope=253)


def teardown_service_bridge(bridge: str = SERVICE_BRIDGE) -> bool:
    """Remove the bridge (its routes and addresses go with it); whether it existed."""
    with IPRoute() as ipr:
        idx = _index(ipr, bridge)
        if idx is None:
            return False
        with contextlib.suppress(NetlinkError):
            ipr.link("del", index=idx)
        return True


def bound_addresses(bridge: str = SERVICE_BRIDGE) -> set[str]:
    with IPRoute() as ipr:
        idx = _index(ipr, bridge)
        if idx is None:
            return set()
        return {a.get("address") for a in ipr.addr("dump", index=idx, family=2)}


def set_bound_addresses(wanted: set[str], bridge: str = SERVICE_BRIDGE) -> None:
    """Make the /32 addresses on the bridge exactly ``wanted`` (the userspace backend's
    ClusterIPs)."""
    with IPRoute() as ipr:
        idx = _index(ipr, bridge)
        if idx is None:
            raise RuntimeError(f"the service bridge {bridge} is missing")
        have = {a.get("address"): a.get("prefixlen")
                for a in ipr.addr("dump", index=idx, family=2)}
        for ip, prefix in have.items():
            if ip not in wanted:
                with contextlib.suppress(NetlinkError):
                    ipr.addr("del", index=idx, address=ip, prefixlen=prefix)
        for ip in sorted(wanted - set(have)):
            with contextlib.suppress(NetlinkError):  # EEXIST
                ipr.addr("add", index=idx, address=ip, prefixlen=32)


def enable_bridge_netfilter() -> bool:
    """Turn bridge netfilter on in this namespace; False when that is impossible here."""
    try:
        if BRIDGE_NF.read_text().strip() != "1":
            BRIDGE_NF.write_text("1")
        return BRIDGE_NF.read_text().strip() == "1"
    except OSError as exc:
        log.warning("bridge netfilter is unavailable (%s): masquerading all service traffic",
                    exc)
        return False


def _conf(device: str, key: str) -> Path:
    return Path("/proc/sys/net/ipv4/conf") / device / key


def pod_facing_devices(cluster_cidr: str, pod_bridge: str = POD_BRIDGE) -> list[str]:
    """The pod bridge plus every device a route into the cluster CIDR leaves by."""
    cluster = ipaddress.ip_network(cluster_cidr)
    names: list[str] = []
    with IPRoute() as ipr:
        links = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        if _index(ipr, pod_bridge) is not None:
            names.append(pod_bridge)
        for r in ipr.get_routes(family=2):
            dst, oif = r.get_attr("RTA_DST"), r.get_attr("RTA_OIF")
            if dst is None or oif is None:
                continue
            with contextlib.suppress(ValueError):
                if ipaddress.ip_network(f"{dst}/{r['dst_len']}").subnet_of(cluster):
                    name = links.get(oif)
                    if name and name != "lo" and name not in names:
                        names.append(name)
    return names


def enable_route_localnet(devices: list[str]) -> list[str]:
    """``route_localnet=1`` on each device; the ones changed."""
    changed = []
    for dev in devices:
        path = _conf(dev, "route_localnet")
        with contextlib.suppress(OSError):
            if path.read_text().strip() != "1":
                path.write_text("1")
                changed.append(dev)
    return changed


__all__ = ["ensure_service_bridge", "teardown_service_bridge", "set_bound_addresses",
           "bound_addresses", "enable_bridge_netfilter", "pod_facing_devices",
           "enable_route_localnet", "SERVICE_BRIDGE",
           "POD_BRIDGE"]
