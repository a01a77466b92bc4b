"""``minik8s``: runs one component in the foreground (``minik8s apiserver ...``), or a whole
local cluster in the background (``minik8s up`` / ``down`` / ``status``).

Components are started through their entry points by a lazy import inside the command (or as
child processes of ``up``), so the library never imports a daemon at import time."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from minik8s.cli import cluster, encryption, local

# component name -> "module:function" taking argv and returning an exit code
COMPONENTS: dict[str, str] = {
    "apiserver": "apiserver.server:main",
    "kubelet": "kubelet.main:main",
    "scheduler": "scheduler.main:main",
    "controller-manager": "controller.manager:main",
    "kube-proxy": "kubeproxy.main:main",
}


def _run_component(target: str, argv: list[str]) -> int:
    import importlib

    module, _, func = target.partition(":")
    entry: Callable[[list[str]], int] = getattr(importlib.import_module(module), func)
    return entry(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMPONENTS:
        return _run_component(COMPONENTS[argv[0]], argv[1:])

    p = argparse.ArgumentParser(
        prog="minik8s",
        description="minik8s: a small container orchestrator modeled on Kubernetes.",
        epilog="components: " + ", ".join(COMPONENTS) + " (run `minik8s COMPONENT --help`)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    up = sub.add_parser("up", help="start a local cluster in the background")
    up.add_argument("--nodes", type=int, default=1, help="worker nodes (default 1)")
    up.add_argument("--etcd-servers", help="use this etcd instead of starting one")
    up.add_argument("--port", type=int,
                    help="API server port (default: the last one used, else 6443)")
    up.add_argument("--home", help="state folder (default $MINIK8S_HOME or ~/.minik8s)")
    up.add_argument("--controller-manager-arg", action="append", default=[], metavar="ARG",
                    help="extra controller-manager flag, repeatable (e.g. "
                         "--controller-manager-arg=--node-monitor-grace-period=10)")
    up.add_argument("--proxy-mode", choices=("iptables", "userspace"),
                    help="kube-proxy backend on every node (default: iptables when it works, "
                         "else userspace; remembered by later `up` runs)")
    down = sub.add_parser("down", help="stop everything `up` started")
    down.add_argument("--home")
    down.add_argument("--purge", action="store_true",
                      help="also delete the cluster's data (etcd, PKI, kubeconfig)")
    status = sub.add_parser("status", help="show what `up` started and whether it runs")
    status.add_argument("--home")
    encryption.add_parser(sub)
    cluster.add_commands(sub)
    for name in COMPONENTS:
        sub.add_parser(name, help=f"run the {name} in the foreground", add_help=False)
    a = p.parse_args(argv)
    if a.command is None:
        p.print_help()
        return 2
    try:
        if a.command == "up":
            return local.up(local.Home.at(a.home), nodes=a.nodes,
                            etcd_servers=a.etcd_servers, port=a.port,
                            controller_manager_args=a.controller_manager_arg,
                            proxy_mode=a.proxy_mode)
        if a.command == "down":
            return local.down(local.Home.at(a.home), purge=a.purge)
        if a.command == "status":
            return local.status(local.Home.at(a.home))
        if a.command == "rotate-encryption-key":
            return encryption.run(a, local.Home.at(a.home).root)
        if a.command in cluster.COMMANDS:
            return cluster.run(a)
    except local.ClusterError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
