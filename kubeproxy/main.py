"""``minik8s kube-proxy``: one per node, in the node's network namespace.

Order matters at start: the service bridge and its route come before any rule, so a packet
to a ClusterIP is never sent anywhere but this node's dead-end bridge. The backend is the
flag's, or chosen automatically: iptables when ``iptables``, ``iptables-save`` and
``iptables-restore`` exist and the ``nat`` table can be read here, userspace otherwise. What
the other backend may have left (rules, bound ClusterIPs) is removed first, so switching
modes never leaves two proxies answering.

SIGTERM/SIGINT remove our rules (or close the listeners and unbind the ClusterIPs) and exit
0; the service bridge stays, so ClusterIP traffic keeps dying here rather than leaking.
``--cleanup`` removes rules, addresses and the bridge, and exits. The node's cluster DNS
(``kubeproxy.dns``) runs in the same process, over the same Service and Endpoints caches,
when that module is present."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import ipaddress
import logging
import socket
import sys
from typing import Any

from kubeproxy import iptables, netsetup
from minik8s.runtime import configfile
from minik8s.runtime.process import run_daemon, run_until_signalled

log = logging.getLogger("kube-proxy")

MODES = ("iptables", "userspace")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="minik8s kube-proxy",
                                description="Service networking of one node: ClusterIPs and "
                                            "NodePorts balanced over ready endpoints.")
    p.add_argument("--node-name", help="this node's name (required unless --cleanup)")
    p.add_argument("--kubeconfig", help="kubeconfig to reach the API server "
                                        "(default $KUBECONFIG or ~/.kube/config)")
    p.add_argument("--proxy-mode", choices=MODES, default=None,
                   help="backend (default: iptables when it works here, else userspace)")
    p.add_argument("--cleanup", action="store_true",
                   help="remove every rule, bound ClusterIP and the service bridge, then exit")
    p.add_argument("--service-cidr", default="10.96.0.0/12",
                   help="the range ClusterIPs come from (default %(default)s)")
    p.add_argument("--cluster-cidr", default="10.244.0.0/16",
                   help="the pods' range; traffic to a ClusterIP from outside it is "
                        "masqueraded (default %(default)s)")
    p.add_argument("--node-ip", default="",
                   help="the node's address, where cluster DNS listens (default: the Node's "
                        "InternalIP)")
    p.add_argument("--masquerade-all", action="store_true",
                   help="masquerade all traffic to ClusterIPs")
    p.add_argument("--min-sync-period", type=float, default=0.5,
                   help="seconds between two syncs at least (default %(default)s)")
    p.add_argument("--sync-period", type=float, default=30.0,
                   help="seconds between full syncs without changes (default %(default)s)")
    p.add_argument("--service-bridge", default=netsetup.SERVICE_BRIDGE,
                   help="the port-less bridge the service CIDR is routed to "
                        "(default %(default)s)")
    p.add_argument("--pod-bridge", default=netsetup.POD_BRIDGE,
                   help="the kubelet's pod bridge (route_localnet is set on it; default "
                        "%(default)s)")
    p.add_argument("--dns-port", type=int, default=53,
                   help="port of the node's cluster DNS (default 53; 0: no DNS)")
    p.add_argument("--cluster-domain", default="cluster.local")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    a = configfile.parse_args(p, argv)
    if not a.cleanup and not a.node_name:
        p.error("--node-name is required")
    for flag in ("service_cidr", "cluster_cidr"):
        try:
            ipaddress.IPv4Network(getattr(a, flag))
        except ValueError as exc:
            p.error(f"--{flag.replace('_', '-')}: {exc}")
    if a.min_sync_period < 0 or a.sync_period <= 0:
        p.error("--min-sync-period must be >= 0 and --sync-period > 0")
    return a


async def cleanup(args: argparse.Namespace) -> list[str]:
    removed: list[str] = []
    if await iptables.usable() is None:
        removed += await iptables.cleanup(iptables.Iptables())
    if await asyncio.to_thread(netsetup.teardown_service_bridge, args.service_bridge):
        removed.append(f"bridge {args.service_bridge}")
    return removed


async def choose_mode(requested: str | None) -> str:
    why = await iptables.usable()
    if requested == "iptables" and why is not None:
        raise RuntimeError(f"--proxy-mode iptables: {why}")
    if requested:
        return requested
    if why is not None:
        log.warning("iptables cannot be used (%s): using the userspace backend", why)
        return "userspace"
    return "iptables"


async def _node_ip(client: Any, args: argparse.Namespace) -> str:
    if args.node_ip:
        return args.node_ip
    with contextlib.suppress(Exception):
        node = await client.get("nodes", args.node_name)
        for addr in (node.get("status") or {}).get("addresses") or []:
            if addr.get("type") == "InternalIP" and addr.get("address"):
                return str(addr["address"])
    with contextlib.suppress(OSError):
        return socket.gethostbyname(socket.gethostname())
    return "127.0.0.1"


def _dns_class() -> Any:
    """``kubeproxy.dns.ClusterDNS`` when this build has it."""
    try:
        module = importlib.import_module("kubeproxy.dns")
    except ModuleNotFoundError as exc:
        if exc.name == "kubeproxy.dns":
            return None
        raise
    return getattr(module, "ClusterDNS", None)


def build_backend(mode: str, args: argparse.Namespace, masquerade_all: bool) -> Any:
    if mode == "iptables":
        return iptables.IptablesBackend(iptables.Iptables(), cluster_cidr=args.cluster_cidr,
                                        masquerade_all=masquerade_all)
    from kubeproxy.userspace import UserspaceBackend
    return UserspaceBackend(bridge=args.service_bridge)


async def run(args: argparse.Namespace) -> int:
    if args.cleanup:
        removed = await cleanup(args)
        print("removed: " + ", ".join(removed) if removed else "nothing to remove")
        return 0
    from kubeproxy.proxier import Proxier
    from minik8s.client import Client

    # Before anything else: ClusterIP traffic ends on this node, whatever follows.
    await asyncio.to_thread(netsetup.ensure_service_bridge, args.service_cidr,
                            args.service_bridge)
    mode = await choose_mode(args.proxy_mode)
    masquerade_all = args.masquerade_all
    if mode == "iptables":
        await asyncio.to_thread(netsetup.set_bound_addresses, set(), args.service_bridge)
        if not await asyncio.to_thread(netsetup.enable_bridge_netfilter):
            masquerade_all = True
    elif await iptables.usable() is None:
        await iptables.cleanup(iptables.Iptables())
    backend = build_backend(mode, args, masquerade_all)

    async def before_sync() -> None:
        if mode == "iptables":  # the pod bridge appears once the kubelet has a podCIDR
            devices = await asyncio.to_thread(netsetup.pod_facing_devices, args.cluster_cidr,
                                              args.pod_bridge)
            changed = await asyncio.to_thread(netsetup.enable_route_localnet, devices)
            if changed:
                log.info("route_localnet on %s", ", ".join(changed))

    client = Client.from_kubeconfig(args.kubeconfig)
    proxier = Proxier(client, backend, min_sync_period=args.min_sync_period,
                      sync_period=args.sync_period, before_sync=before_sync)

    async def main() -> None:
        tasks = [asyncio.get_running_loop().create_task(proxier.start(), name="proxier")]
        dns_cls = _dns_class() if args.dns_port else None
        if dns_cls is not None:
            node_ip = await _node_ip(client, args)
            dns = dns_cls(proxier.services.store, proxier.endpoints.store, listen=node_ip,
                          port=args.dns_port, domain=args.cluster_domain)
            tasks.append(asyncio.get_running_loop().create_task(dns.start(), name="dns"))
            log.info("cluster DNS on %s:%d", node_ip, args.dns_port)
        elif args.dns_port:
            log.warning("no cluster DNS in this build (kubeproxy/dns.py is missing)")
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                t.result()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def stop() -> None:
        try:
            await backend.close()
            log.info("%s state removed", mode)
        finally:
            await client.aclose()

    log.info("kube-proxy for node %s starting (%s backend, service CIDR %s on %s)",
             args.node_name, mode, args.service_cidr, args.service_bridge)
    return await run_until_signalled(main, log, stop)


def main(argv: list[str] | None = None) -> int:
    return run_daemon(run, parse_args(list(sys.argv[1:] if argv is None else argv)), log,
                      "kube-proxy")


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["main", "run", "parse_args", "cleanup", "choose_mode"]
