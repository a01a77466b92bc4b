"""``minik8s controller-manager``: one process running every controller over shared informers.

Controllers are declared in ``CONTROLLERS`` (name -> ``module:new``); each module's
``new(ctx)`` builds its runnable from a ``ControllerContext`` (client, the shared informer
factory, an event recorder, a clock, the settings), so a controller is one module and never
builds its own watches. Informers sync for every replica; the controllers run only while
this replica holds the ``kube-system/kube-controller-manager`` Lease when ``--leader-elect``
is given, so a standby takes over within the lease duration with warm caches.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from dataclasses import dataclass, field, fields
from typing import Any, Callable

from minik8s.cache import InformerFactory
from minik8s.client import Client
from minik8s.client.events import EventRecorder
from minik8s.runtime import LeaderElector, Manager, RealClock
from minik8s.runtime.leaderelection import default_identity
from minik8s.runtime import configfile
from minik8s.runtime.process import run_daemon, run_until_signalled

log = logging.getLogger("controller-manager")

LEASE_NAME = "kube-controller-manager"
LEASE_NAMESPACE = "kube-system"

# name -> "module:new"; new(ctx) returns a runnable (an object with ``async start()``).
CONTROLLERS: dict[str, str] = {
    "job": "controller.job:new",
    "cronjob": "controller.cronjob:new",
    "garbagecollector": "controller.garbagecollector:new",
    "namespace": "controller.namespace:new",
    "replicaset": "controller.replicaset:new",
    "deployment": "controller.deployment:new",
    "nodelifecycle": "controller.nodelifecycle:new",
    "daemonset": "controller.daemonset:new",
    "statefulset": "controller.statefulset:new",
    "certificates": "controller.certificates:new",
    "bootstrapsigner": "controller.bootstrapsigner:new",
    "endpoints": "controller.endpoints:new",
    "horizontalpodautoscaling": "controller.hpa:new",
    "serviceaccount": "controller.serviceaccount:new",
    "root-ca-cert-publisher": "controller.serviceaccount:new_root_ca_publisher",
}


@dataclass
class ControllerManagerConfig:
    """Settings every controller may read; flags of the same names (dashes for
    underscores) override the defaults."""

    # Node lifecycle: a node whose Lease is not renewed for this long is Unknown/unreachable.
    node_monitor_grace_period: float = 40.0
    # Default toleration of unreachable/not-ready NoExecute taints before eviction.
    default_eviction_seconds: float = 300.0
    concurrent_syncs: int = 5
    # Garbage collection of finished Jobs is per Job (ttlSecondsAfterFinished); terminated
    # pods beyond this count are deleted.
    terminated_pod_gc_threshold: int = 12500
    # The CA that signs nodes' certificates (CSRs of the kubelet signers); none: no signing.
    cluster_signing_cert_file: str = ""
    cluster_signing_key_file: str = ""
    # HorizontalPodAutoscaler: how often each HPA is evaluated, the default scale-down
    # stabilization window (an HPA's behavior overrides it) and the tolerance (seconds).
    horizontal_pod_autoscaler_sync_period: float = 15.0
    horizontal_pod_autoscaler_downscale_stabilization: float = 300.0
    horizontal_pod_autoscaler_tolerance: float = 0.1
    # The CA bundle published as ConfigMap kube-root-ca.crt in every namespace (default:
    # the CA of the controller-manager's kubeconfig).
    root_ca_file: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ControllerContext:
    client: Any
    informers: InformerFactory
    config: ControllerManagerConfig
    clock: Any = field(default_factory=RealClock)
    identity: str = ""

    def recorder(self, component: str) -> EventRecorder:
        return EventRecorder(self.client, component, self.identity)


def load(name: str) -> Callable[[ControllerContext], Any]:
    module, _, func = CONTROLLERS[name].partition(":")
    return getattr(importlib.import_module(module), func)


def build(client: Any, *, controllers: list[str] | None = None, leader_elect: bool = False,
          lease_duration: float = 15.0, identity: str | None = None,
          config: ControllerManagerConfig | None = None, clock: Any = None,
          release_on_cancel: bool = True) -> tuple[Manager, dict[str, Any]]:
    """A manager running the named controllers (default: all); ``await manager.start()``."""
    identity = identity or default_identity()
    informers = InformerFactory(client)
    ctx = ControllerContext(client, informers, config or ControllerManagerConfig(),
                            clock or RealClock(), identity)
    names = controllers if controllers is not None else list(CONTROLLERS)
    unknown = [n for n in names if n not in CONTROLLERS]
    if unknown:
        raise ValueError(f"unknown controllers: {', '.join(unknown)} "
                         f"(known: {', '.join(CONTROLLERS)})")
    built = {name: load(name)(ctx) for name in names}
    elector = None
    if leader_elect:
        elector = LeaderElector(client, LEASE_NAME, LEASE_NAMESPACE, identity=identity,
                                lease_duration=lease_duration,
                                renew_deadline=lease_duration * 2 / 3,
                                retry_period=lease_duration * 2 / 15,
                                release_on_cancel=release_on_cancel)
    manager = Manager(informers=informers, elector=elector)
    for runnable in built.values():
        manager.add(runnable, leader_only=True)
    return manager, built


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="minik8s controller-manager",
                                description="Run the controllers that keep declared state.")
    p.add_argument("--kubeconfig", help="kubeconfig to reach the API server")
    p.add_argument("--leader-elect", action="store_true",
                   help="run controllers only while holding the kube-system/"
                        "kube-controller-manager Lease")
    p.add_argument("--lease-duration", type=float, default=15.0)
    p.add_argument("--controllers", default="*",
                   help="comma-separated controllers to run, * for all "
                        f"(known: {', '.join(CONTROLLERS) or 'none yet'})")
    for f in fields(ControllerManagerConfig):
        if f.name != "extra":
            p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default),
                           default=f.default)
    p.add_argument("-v", "--verbose", action="store_true")
    return configfile.parse_args(p, argv)


async def run(args: argparse.Namespace) -> int:
    client = Client.from_kubeconfig(args.kubeconfig)
    config = ControllerManagerConfig(**{f.name: getattr(args, f.name)
                                        for f in fields(ControllerManagerConfig)
                                        if f.name != "extra"})
    names = None if args.controllers in ("*", "") else [
        n.strip() for n in args.controllers.split(",") if n.strip()]
    manager, _ = build(client, controllers=names, leader_elect=args.leader_elect,
                       lease_duration=args.lease_duration, config=config)
    return await run_until_signalled(manager.start, log, client.aclose)


def main(argv: list[str] | None = None) -> int:
    return run_daemon(run, parse_args(list(sys.argv[1:] if argv is None else argv)), log,
                      "controller-manager")


__all__ = ["main", "build", "CONTROLLERS", "ControllerContext", "ControllerManagerConfig",
           "LEASE_NAME", "LEASE_NAMESPACE"]
