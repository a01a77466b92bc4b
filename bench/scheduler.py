"""Scheduler benchmark: pods bound per second beside the API server's raw pod create rate.

    python bench/scheduler.py [--nodes 100] [--pods 1000] [--concurrency 16]

Starts a throw-away cluster with ``minik8s up --nodes 0`` in a temporary folder (its own etcd
and API server on free ports; the scheduler ``up`` starts is stopped), creates hollow nodes (Node objects with allocatable resources and a
Ready condition, no kubelet), then measures in the same run:

- baseline: the API server's raw create rate for ``--pods`` pods with no scheduler running
  (``--concurrency`` creates in flight), the ceiling any scheduler here shares;
- (b) the scheduler (in-process, binding through ``pods/{name}/binding``) running while the
  same number of pods is created at the same concurrency, and the time until a watch has
  seen every one of them bound: pods bound per second from the first create to the last
  binding, and over the binding window alone;
- (c) a fresh scheduler started on the baseline's pods, all pending at once: binding
  throughput with no creates competing for the API server (what Kubernetes'
  scheduler_perf calls scheduling throughput);
- (d) decisions per second of the framework and cache alone (filter, score, assume) over
  the same nodes, with no API call: the scheduler's own ceiling.

Stops everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CpuMeter, rate  # noqa: E402
from minik8s.api.errors import AlreadyExists  # noqa: E402
from minik8s.cli import local  # noqa: E402
from minik8s.client import Client  # noqa: E402
from scheduler.main import build  # noqa: E402


def hollow_node(i: int) -> dict:
    name = f"hollow-{i:03d}"
    res = {"cpu": "4", "memory": "16Gi", "pods": "110"}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                  "kubernetes.io/os": "linux"}},
            "status": {"capacity": res, "allocatable": res,
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def bench_pod(name: str, ns: str, i: int) -> dict:
    owner = i % 20  # 20 "ReplicaSets" of 50 pods each, so owner spreading has work to do
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": f"rs-{owner}"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                              "name": f"rs-{owner}", "uid": f"bench-rs-{owner}",
                                              "controller": True}]},
            "spec": {"containers": [{"name": "c", "image": "busybox:1", "resources": {
                "requests": {"cpu": "100m", "memory": "128Mi"}}}]}}


def decisions_per_second(nodes: int, pods: int) -> float:
    """(d) The scheduler's own ceiling: filter + score + assume for every pod over the same
    hollow nodes, no API calls."""
    import random

    from scheduler.cache import Cache
    from scheduler.framework import default_framework
    from scheduler.nodeinfo import PodInfo

    cache = Cache()
    for i in range(nodes):
        cache.add_node(hollow_node(i))
    fw = default_framework(random.Random(0))
    objs = []
    for i in range(pods):
        p = bench_pod(f"d-{i:04d}", "bench", i)
        p["metadata"]["uid"] = f"uid-{i}"
        objs.append(p)
    start = time.perf_counter()
    for p in objs:
        info = PodInfo.of(p)
        cache.assume_pod(info, fw.schedule(info, cache.snapshot()).node)
    return pods / (time.perf_counter() - start)


async def run(args: argparse.Namespace, home: local.Home) -> list[tuple[str, str]]:
    client = Client.from_kubeconfig(str(home.kubeconfig))
    sched_client = Client.from_kubeconfig(str(home.kubeconfig))
    rows: list[tuple[str, str]] = []
    procs = {"apiserver": local.running_pid(home, "apiserver"),
             "etcd": local.running_pid(home, "etcd"), "bench": None}
    try:
        for ns in ("bench-raw", "bench"):
            await client.create("namespaces", {"metadata": {"name": ns}})
            # Pods need their service account, which the (stopped) controller-manager
            # would otherwise create.
            try:
                await client.create("serviceaccounts", {"metadata": {"name": "default"}}, ns)
            except AlreadyExists:
                pass
        await rate(args.nodes, args.concurrency,
                   lambda i: client.create("nodes", hollow_node(i)))

        # (a) raw create rate, nothing scheduling
        cpu_a = CpuMeter(procs).start()
        raw = await rate(args.pods, args.concurrency, lambda i: client.create(
            "pods", bench_pod(f"raw-{i:04d}", "bench-raw", i), "bench-raw"))
        cpu_a.stop()
        # (they stay pending: (c) below schedules them)

        # (b) the scheduler running in-process
        manager, sched = build(sched_client, namespaces=["bench"],
                               bind_concurrency=args.bind_concurrency)
        mtask = asyncio.create_task(manager.start())
        while sched.cache.node_count < args.nodes:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # informers synced, scheduling loop waiting

        bound: dict[str, float] = {}
        all_bound = asyncio.Event()
        start_rv = (await client.list("pods", "bench"))["metadata"]["resourceVersion"]

        async def watch() -> None:
            async for ev in client.watch("pods", "bench", resource_version=start_rv,
                                         timeout_seconds=600, allow_bookmarks=False):
                obj = ev["object"]
                if obj["spec"].get("nodeName") and obj["metadata"]["name"] not in bound:
                    bound[obj["metadata"]["name"]] = time.perf_counter()
                    if len(bound) == args.pods:
                        all_bound.set()
                        return
        wtask = asyncio.create_task(watch())
        await asyncio.sleep(0.2)
        cpu_b = CpuMeter(procs).start()
        t0 = time.perf_counter()
        created = await rate(args.pods, args.concurrency, lambda i: client.create(
            "pods", bench_pod(f"p-{i:04d}", "bench", i), "bench"))
        t_created = time.perf_counter()
        await asyncio.wait_for(all_bound.wait(), 300)
        cpu_b.stop()
        t_done = max(bound.values())
        first = min(bound.values())
        wtask.cancel()
        # The Scheduled events trail a burst (the scheduler writes them once it is quiet):
        # wait for all of them, to show they are deferred, not dropped.
        events_done = None
        events_at_done = None
        while time.perf_counter() - t_done < 120:
            evs = (await client.list("events", "bench"))["items"]
            n_events = sum(e.get("reason") == "Scheduled" for e in evs)
            if events_at_done is None:
                events_at_done = n_events
            if n_events >= args.pods:
                events_done = time.perf_counter() - t_done
                break
            await asyncio.sleep(0.5)
        mtask.cancel()
        await asyncio.gather(wtask, mtask, return_exceptions=True)

        per_node: dict[str, int] = {}
        for p in (await client.list("pods", "bench"))["items"]:
            per_node[p["spec"]["nodeName"]] = per_node.get(p["spec"]["nodeName"], 0) + 1
        e2e = args.pods / (t_done - t0)
        window = args.pods / (t_done - first)
        bound_b, failed_b = sched.bound, sched.failed_attempts

        # (c) a fresh scheduler finds the baseline's pods pending: binding throughput alone
        sched_client2 = Client.from_kubeconfig(str(home.kubeconfig))
        manager, sched = build(sched_client2, namespaces=["bench-raw"],
                               bind_concurrency=args.bind_concurrency)
        cpu_c = CpuMeter(procs).start()
        t_start = time.perf_counter()
        mtask = asyncio.create_task(manager.start())
        first_c = None
        while sched.bound < args.pods:
            if first_c is None and sched.bound:
                first_c = time.perf_counter()
            await asyncio.sleep(0.005)
        t_end = time.perf_counter()
        cpu_c.stop()
        mtask.cancel()
        await asyncio.gather(mtask, return_exceptions=True)
        await sched_client2.aclose()
        backlog = args.pods / (t_end - t_start)
        backlog_window = args.pods / (t_end - (first_c or t_start))

        rows += [
            (f"raw pod creates/s (no scheduler, concurrency {args.concurrency})", f"{raw:.0f}"),
            ("(b) pod creates/s with the scheduler running", f"{created:.0f}"),
            ("(b) pods bound/s, first create -> last bound", f"{e2e:.0f}"),
            ("(b) pods bound/s, first bound -> last bound", f"{window:.0f}"),
            ("(b) last bound after the last create (s)", f"{t_done - t_created:.2f}"),
            ("(b) pods per node min / max", f"{min(per_node.values())} / {max(per_node.values())}"),
            ("(b) bindings / failed cycles", f"{bound_b} / {failed_b}"),
            ("(b) Scheduled events written when the last pod was bound", f"{events_at_done}"),
            ("(b) all Scheduled events written, s after the last bound",
             "not within 120 s" if events_done is None else f"{events_done:.1f}"),
            (f"(c) {args.pods} pending pods, scheduler start -> all bound/s", f"{backlog:.0f}"),
            ("(c) pods bound/s, first bound -> last bound", f"{backlog_window:.0f}"),
            ("(d) scheduling decisions/s, no API calls (scheduler ceiling)",
             f"{decisions_per_second(args.nodes, args.pods):.0f}"),
            ("CPU ms per pod, apiserver / etcd / bench+scheduler:", ""),
            ("  (a) raw creates", cpu_a.per_op_ms(args.pods)),
            ("  (b) create + schedule + bind, watched", cpu_b.per_op_ms(args.pods)),
            ("  (c) schedule + bind of pending pods", cpu_c.per_op_ms(args.pods)),
        ]
        return rows
    finally:
        await client.aclose()
        await sched_client.aclose()


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument("--pods", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--bind-concurrency", type=int, default=16)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    load_start = _load()
    with tempfile.TemporaryDirectory(prefix="minik8s-bench-") as tmp:
        home = local.Home.at(tmp)
        # The API server alone: no kubelets; the scheduler `up` starts is stopped at once,
        # so the baseline runs with no scheduler and (b) with only ours, and so is the
        # controller-manager (its garbage collector would delete the pods, whose owners
        # are fictitious ReplicaSets).
        local.up(home, nodes=0, port=local.free_port())
        try:
            local.stop(home, "scheduler")
            local.stop(home, "controller-manager")
            rows = asyncio.run(run(args, home))
        finally:
            local.down(home)
    print(f"\n{'measure':<58} {'value':>10}")
    for name, value in rows:
        print(f"{name:<58} {value:>10}")
    print(f"load average (1/5/15 min) at start: {load_start}, at end: {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
