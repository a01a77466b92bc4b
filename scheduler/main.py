"""``minik8s scheduler``: the process around the ``Scheduler`` runnable.

Everything with a lifetime is composed by a ``Manager``: informers start and sync first,
then the scheduling loop runs, only while this replica holds the ``kube-system/kube-scheduler``
Lease when ``--leader-elect`` is given, so standby replicas keep warm caches but never bind.
Losing the lease ends the process with a non-zero code, so its supervisor restarts it with
a clean cache; SIGTERM and SIGINT end it cleanly with 0.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from minik8s.cache import InformerFactory
from minik8s.client import Client
from minik8s.runtime import LeaderElector, Manager
from minik8s.runtime.leaderelection import default_identity
from minik8s.runtime import configfile
from minik8s.runtime.process import run_daemon, run_until_signalled
from scheduler.scheduler import DEFAULT_BIND_CONCURRENCY, DEFAULT_SCHEDULER_NAME, Scheduler

log = logging.getLogger("scheduler")

LEASE_NAME = "kube-scheduler"
LEASE_NAMESPACE = "kube-system"


def build(client: Any, *, leader_elect: bool = False, lease_duration: float = 15.0,
          renew_deadline: float | None = None, retry_period: float | None = None,
          identity: str | None = None, release_on_cancel: bool = True,
          **scheduler_kw: Any) -> tuple[Manager, Scheduler]:
    """A manager running a scheduler over ``client``; ``await manager.start()`` runs it.

    Renewal timings default to Kubernetes' proportions (15 s lease, 10 s deadline, 2 s
    retry) scaled to ``lease_duration``."""
    identity = identity or default_identity()
    informers = InformerFactory(client)
    sched = Scheduler(client, informers, identity=identity, **scheduler_kw)
    elector = None
    if leader_elect:
        renew = renew_deadline if renew_deadline is not None else lease_duration * 2 / 3
        retry = retry_period if retry_period is not None else lease_duration * 2 / 15
        elector = LeaderElector(client, LEASE_NAME, LEASE_NAMESPACE, identity=identity,
                                lease_duration=lease_duration, renew_deadline=renew,
                                retry_period=retry, release_on_cancel=release_on_cancel)
    manager = Manager(informers=informers, elector=elector)
    manager.add(sched, leader_only=True)
    manager.scheduler = sched  # type: ignore[attr-defined]
    return manager, sched


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="minik8s scheduler",
                                description="Assign pending pods to nodes.")
    p.add_argument("--kubeconfig", help="kubeconfig to reach the API server "
                                        "(default $KUBECONFIG or ~/.kube/config)")
    p.add_argument("--leader-elect", action="store_true",
                   help="run only while holding the kube-system/kube-scheduler Lease")
    p.add_argument("--lease-duration", type=float, default=15.0,
                   help="leader election lease duration in seconds (default 15)")
    p.add_argument("--renew-deadline", type=float, default=None,
                   help="seconds the leader keeps trying to renew (default 2/3 of the lease)")
    p.add_argument("--retry-period", type=float, default=None,
                   help="seconds between election attempts (default 2/15 of the lease)")
    p.add_argument("--scheduler-name", default=DEFAULT_SCHEDULER_NAME,
                   help="schedule pods whose spec.schedulerName is this (default %(default)s)")
    p.add_argument("--bind-concurrency", type=int, default=DEFAULT_BIND_CONCURRENCY,
                   help="bindings in flight at once (default %(default)s)")
    p.add_argument("--namespace", action="append", dest="namespaces", metavar="NS",
                   help="schedule only pending pods of this namespace (repeatable; "
                        "default all). Pods of every namespace still count on their nodes.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return configfile.parse_args(p, argv)


async def run(args: argparse.Namespace) -> int:
    client = Client.from_kubeconfig(args.kubeconfig)
    manager, _ = build(client, leader_elect=args.leader_elect,
                       lease_duration=args.lease_duration, renew_deadline=args.renew_deadline,
                       retry_period=args.retry_period, scheduler_name=args.scheduler_name,
                       bind_concurrency=args.bind_concurrency, namespaces=args.namespaces)
    return await run_until_signalled(manager.start, log, client.aclose)


def main(argv: list[str] | None = None) -> int:
    return run_daemon(run, parse_args(list(sys.argv[1:] if argv is None else argv)), log,
                      "scheduler")


__all__ = ["main", "build", "run", "parse_args", "LEASE_NAME", "LEASE_NAMESPACE"]
