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
in a loop of its own: a DNS failure (port 53 taken, no node address yet) is logged and
retried with backoff, and never ends service proxying, whose clean exit would remove every
rule. DNS listens on the node's address (``--node-ip`` or the Node's InternalIP), never a
guessed one: a resolver lookup of the host name may leave the machine, and loopback is
useless to pods."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import sys
from typing import Any, Awaitable, Callable

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
                        "InternalIP; without either, DNS is not started and retried)")
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


class NodeIPUnknown(Exception):
    """Neither ``--node-ip`` nor an InternalIP on the Node object: DNS has no address."""


async def _node_ip(client: Any, args: argparse.Namespace) -> str:
    if args.node_ip:
        return args.node_ip
    from minik8s.client import NotFound
    try:
        node = await client.get("nodes", args.node_name)
    except NotFound:
        raise NodeIPUnknown(f"node {args.node_name} is not registered and --node-ip is not "
                            "set: pass --node-ip (the address pods reach this node on)") from None
    for addr in (node.get("status") or {}).get("addresses") or []:
        if addr.get("type") == "InternalIP" and addr.get("address"):
            return str(addr["address"])
    raise NodeIPUnknown(f"node {args.node_name} has no InternalIP address and --node-ip is "
                        "not set: pass --node-ip (the address pods reach this node on)")


async def run_dns(make: Callable[[], Awaitable[Any]], *,
                  sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                  first_delay: float = 1.0, max_delay: float = 30.0) -> None:
    """Serve the cluster DNS that ``make()`` builds until cancelled; any failure to build or
    bind it (or a server that stops) is logged and retried after a doubling delay."""
    delay = first_delay
    while True:
        try:
            dns = await make()
            await dns.start()  # serves until cancelled
            log.error("cluster DNS stopped; restarting in %.0fs", delay)
        except asyncio.CancelledError:
            raise
        except NodeIPUnknown as exc:
            log.error("cluster DNS not started, retrying in %.0fs: %s", delay, exc)
        except Exception as exc:
            log.error("cluster DNS failed, retrying in %.0fs: %s", delay, exc)
        await sleep(delay)
        delay = min(delay * 2, max_delay)


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

    async def make_dns() -> Any:
        from kubeproxy.dns import ClusterDNS
        return ClusterDNS(proxier.services.store, proxier.endpoints.store,
                          listen=await _node_ip(client, args), port=args.dns_port,
                          domain=args.cluster_domain)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        dns = loop.create_task(run_dns(make_dns), name="dns") if args.dns_port else None
        try:
            await proxier.start()
        finally:
            if dns is not None:
                dns.cancel()
                await asyncio.gather(dns, return_exceptions=True)

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


__all__ = ["main", "run", "parse_args", "cleanup", "choose_mode", "run_dns", "NodeIPUnknown"]
