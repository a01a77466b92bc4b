"""Pod startup benchmark: pod create -> ``Running`` seen through a watch, beside the same
containers created straight through the Docker SDK in the same run.

    python bench/pod_startup.py [--pods 60] [--concurrency 10]

Starts a throw-away cluster with ``minik8s up --nodes 1`` in a temporary folder (its own
etcd, API server, scheduler and one node namespace with its kubelet), opens a watch on the
benchmark namespace, then measures, for every pod, the time from sending the create to the
first watch event that shows ``status.phase == Running`` with every container ready:

- sequential: one pod at a time, each waited to Running before the next is created;
- burst: pods created ``--concurrency`` at once, each burst waited to Running before the
  next, until ``--pods`` pods ran.

The baseline does what the kubelet has Docker do for such a pod, through docker-py's
low-level ``APIClient`` from a thread pool: create+start an infra container
(``network_mode=none``, the same image, ``sleep`` under ``init``), then create+start an app
container joined to it (``network_mode=container:<id>``), timed from the first call to the
app container's ``start`` returning, and in a second variant until ``inspect`` says it runs;
the same number of iterations at the same concurrency. What the pod path adds on top
(scheduling, binding, watch fan-out, veth wiring, status) is the overhead measured.

A breakdown of the pod path, from the same watch, is printed too: create acknowledged,
binding seen, the kubelet's first status write, Running. Every pod, container and the
cluster are removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import logging
import shutil
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import other_node_1_kubelets, pct  # noqa: E402
from minik8s.cli import local  # noqa: E402
from minik8s.client import Client  # noqa: E402

IMAGE = "minik8s/busybox:1.35"
NAMESPACE = "bench-startup"


# --- minik8s ------------------------------------------------------------------------------


@dataclass
class Track:
    sent: float = 0.0
    acked: float = 0.0
    bound: float = 0.0
    status: float = 0.0
    running: float = 0.0
    done: asyncio.Event = field(default_factory=asyncio.Event)


def pod_manifest(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": "startup"}},
            "spec": {"terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "app", "image": IMAGE,
                                     "command": ["sleep", "3600"]}]}}


def is_running(pod: dict) -> bool:
    st = pod.get("status") or {}
    statuses = st.get("containerStatuses") or []
    return (st.get("phase") == "Running" and bool(statuses)
            and all(s.get("ready") for s in statuses))


class PodWatch:
    """One watch on the namespace, opened before any create, noting per pod when the
    binding, the kubelet's first status and Running were first seen."""

    def __init__(self, client: Client):
        self.client = client
        self.tracks: dict[str, Track] = {}
        self.task: asyncio.Task[None] | None = None
        self.opened = asyncio.Event()

    async def start(self) -> None:
        rv = (await self.client.list("pods", NAMESPACE))["metadata"]["resourceVersion"]
        self.task = asyncio.create_task(self._run(rv))
        await asyncio.sleep(0.3)  # the stream is open

    async def _run(self, rv: str) -> None:
        while True:
            try:
                async for ev in self.client.watch("pods", NAMESPACE, resource_version=rv,
                                                  timeout_seconds=3600,
                                                  allow_bookmarks=False):
                    now = time.perf_counter()
                    obj = ev.get("object") or {}
                    rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                    tr = self.tracks.get((obj.get("metadata") or {}).get("name", ""))
                    if tr is None or ev.get("type") == "DELETED":
                        continue
                    if not tr.bound and (obj.get("spec") or {}).get("nodeName"):
                        tr.bound = now
                    if not tr.status and (obj.get("status") or {}).get("hostIP"):
                        tr.status = now
                    if not tr.running and is_running(obj):
                        tr.running = now
                        tr.done.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a dropped stream: resume from the last version
                logging.warning("watch ended (%s); resuming", exc)
                await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


async def create_and_wait(client: Client, watch: PodWatch, name: str, timeout: float) -> Track:
    tr = watch.tracks[name] = Track()
    tr.sent = time.perf_counter()
    await client.create("pods", pod_manifest(name), NAMESPACE)
    tr.acked = time.perf_counter()
    await asyncio.wait_for(tr.done.wait(), timeout)
    return tr


async def run_pods(client: Client, watch: PodWatch, prefix: str, n: int, concurrency: int,
                   timeout: float) -> list[Track]:
    out: list[Track] = []
    for start in range(0, n, concurrency):
        names = [f"{prefix}-{i:03d}" for i in range(start, min(n, start + concurrency))]
        out += await asyncio.gather(*(create_and_wait(client, watch, nm, timeout)
                                      for nm in names))
    return out


async def delete_all(client: Client, timeout: float = 180) -> None:
    """Delete the namespace's pods and wait until the API has none and Docker holds none
    of their containers, so the next mode does not share the engine with removals."""
    await client.delete_collection("pods", NAMESPACE)
    api = docker.APIClient(version="auto")
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = await asyncio.to_thread(api.containers, all=True, filters={
                "label": f"io.minik8s.pod.namespace={NAMESPACE}"})
            if not left and not (await client.list("pods", NAMESPACE))["items"]:
                await asyncio.sleep(1.0)  # the kubelet's own bookkeeping settles
                return
            await asyncio.sleep(0.2)
    finally:
        api.close()
    raise RuntimeError("pods were not removed in time")


async def wait_node_ready(client: Client, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for n in (await client.list("nodes"))["items"]:
            conds = {c.get("type"): c.get("status") for c in
                     (n.get("status") or {}).get("conditions") or []}
            if conds.get("Ready") == "True" and (n.get("spec") or {}).get("podCIDR"):
                return
        await asyncio.sleep(0.2)
    raise RuntimeError("the node did not become Ready")


async def bench_minik8s(home: local.Home, args: argparse.Namespace) -> dict[str, list[Track]]:
    client = Client.from_kubeconfig(str(home.kubeconfig))
    watch = PodWatch(client)
    try:
        await client.create("namespaces", {"metadata": {"name": NAMESPACE}})
        await wait_node_ready(client)
        await watch.start()
        # Warm-up (not counted): first-time costs such as the node's pod bridge.
        await run_pods(client, watch, "warm", 2, 1, args.timeout)
        await delete_all(client)
        out = {"sequential": await run_pods(client, watch, "seq", args.pods, 1, args.timeout)}
        await delete_all(client)
        out["burst"] = await run_pods(client, watch, "burst", args.pods, args.concurrency,
                                      args.timeout)
        await delete_all(client)
        return out
    finally:
        await watch.stop()
        await client.aclose()


# --- baseline: the Docker SDK directly ----------------------------------------------------


class Baseline:
    def __init__(self, concurrency: int):
        self.api = docker.APIClient(version="auto", timeout=120)
        self.run_id = uuid.uuid4().hex[:8]
        self.label = {"io.minik8s.bench": self.run_id}
        self.pool = concurrent.futures.ThreadPoolExecutor(max(1, concurrency), "baseline")
        self._n = 0
        self._lock = threading.Lock()
        self.files = tempfile.mkdtemp(prefix="minik8s-bench-files-")
        Path(self.files, "resolv.conf").write_text("nameserver 10.96.0.10\n")
        Path(self.files, "hosts").write_text("127.0.0.1\tlocalhost\n")

    def _name(self) -> str:
        with self._lock:
            self._n += 1
            return f"mk8s-bench-{self.run_id}-{self._n:04d}"

    def one(self, wait_running: bool, kubelet_settings: bool = False) -> float:
        """One infra + app pair; ``kubelet_settings``: with the rest of what the kubelet
        asks of Docker for them too (shareable IPC, hostname, CPU shares, log rotation,
        resolv.conf and hosts bind mounts), to tell Docker's share from the kubelet's."""
        api = self.api
        name = self._name()
        infra_kw: dict = {}
        app_kw: dict = {}
        if kubelet_settings:
            logs = docker.types.LogConfig(type="json-file",
                                          config={"max-size": "10m", "max-file": "3"})
            infra_kw = {"ipc_mode": "shareable", "cpu_shares": 2, "log_config": logs}
            app_kw = {"cpu_shares": 2, "log_config": logs,
                      "binds": [f"{self.files}/resolv.conf:/etc/resolv.conf:ro",
                                f"{self.files}/hosts:/etc/hosts:ro"]}
        t0 = time.perf_counter()
        infra = api.create_container(
            IMAGE, command=["sleep", "2147483647"], name=f"{name}-infra", labels=self.label,
            hostname="infra" if kubelet_settings else None,
            host_config=api.create_host_config(network_mode="none", init=True, **infra_kw),
            detach=True)
        api.start(infra["Id"])
        if kubelet_settings:
            app_kw["ipc_mode"] = f"container:{infra['Id']}"
        app = api.create_container(
            IMAGE, command=["sleep", "3600"], name=f"{name}-app", labels=self.label,
            host_config=api.create_host_config(network_mode=f"container:{infra['Id']}",
                                               init=True, **app_kw), detach=True)
        api.start(app["Id"])
        if wait_running:
            while not (api.inspect_container(app["Id"]).get("State") or {}).get("Running"):
                time.sleep(0.005)
        return time.perf_counter() - t0

    def run(self, n: int, concurrency: int, wait_running: bool,
            kubelet_settings: bool = False) -> list[float]:
        out: list[float] = []
        for start in range(0, n, concurrency):
            futs = [self.pool.submit(self.one, wait_running, kubelet_settings)
                    for _ in range(min(concurrency, n - start))]
            out += [f.result() for f in futs]
        return out

    def cleanup(self) -> None:
        for c in self.api.containers(all=True, filters={"label": f"io.minik8s.bench={self.run_id}"}):
            try:
                self.api.remove_container(c["Id"], force=True, v=True)
            except docker.errors.NotFound:
                pass

    def close(self) -> None:
        try:
            self.cleanup()
        finally:
            self.pool.shutdown()
            self.api.close()
            shutil.rmtree(self.files, ignore_errors=True)


def bench_baseline(args: argparse.Namespace) -> dict[str, list[float]]:
    b = Baseline(args.concurrency)
    try:
        b.run(2, 1, True)  # warm-up, not counted
        b.cleanup()
        out = {}
        for mode, conc in (("sequential", 1), ("burst", args.concurrency)):
            for wait in (False, True):
                out[f"{mode}/{'running' if wait else 'start'}"] = b.run(args.pods, conc, wait)
                b.cleanup()
            out[f"{mode}/settings"] = b.run(args.pods, conc, False, kubelet_settings=True)
            b.cleanup()
        return out
    finally:
        b.close()


# --- report -------------------------------------------------------------------------------


def report(pods: dict[str, list[Track]], base: dict[str, list[float]],
           args: argparse.Namespace) -> None:
    ms = 1000.0
    print(f"\npod startup, {args.pods} pods per mode, burst concurrency {args.concurrency} "
          f"(ms; ratio = minik8s / baseline)")
    print(f"{'measure':<56} {'minik8s p50':>11} {'p99':>8} {'baseline p50':>13} {'p99':>8} "
          f"{'ratio p50':>9} {'p99':>6}")
    for mode in ("sequential", "burst"):
        lat = [(t.running - t.sent) * ms for t in pods[mode]]
        for variant, label in (("start", "app start returned"),
                               ("running", "inspect says running"),
                               ("settings", "same, kubelet's settings")):
            b = [x * ms for x in base[f"{mode}/{variant}"]]
            m50, m99, b50, b99 = pct(lat, .5), pct(lat, .99), pct(b, .5), pct(b, .99)
            print(f"{mode + ': create -> Running vs ' + label:<56} {m50:>11.0f} {m99:>8.0f} "
                  f"{b50:>13.0f} {b99:>8.0f} {m50 / b50:>9.2f} {m99 / b99:>6.2f}")
    print("\nbreakdown of the pod path (ms after the create was sent; p50 / p99)")
    for mode in ("sequential", "burst"):
        ts = pods[mode]
        parts = [("create acknowledged", [t.acked - t.sent for t in ts]),
                 ("binding seen in the watch", [t.bound - t.sent for t in ts if t.bound]),
                 ("kubelet's first status seen", [t.status - t.sent for t in ts if t.status]),
                 ("Running seen", [t.running - t.sent for t in ts])]
        for what, vals in parts:
            if vals:
                print(f"  {mode:<11} {what:<30} {pct(vals, .5) * ms:>7.0f} / "
                      f"{pct(vals, .99) * ms:.0f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--pods", type=int, default=60, help="pods per mode (default 60)")
    p.add_argument("--concurrency", type=int, default=10,
                   help="pods created at once in the burst mode (default 10)")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds one pod may take to run before the run fails")
    p.add_argument("--json", metavar="FILE",
                   help="also write every sample (seconds) to FILE, for a closer look")
    p.add_argument("--keep-home", metavar="DIR",
                   help="run the cluster in DIR and keep its logs (default: a temp folder)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    others = other_node_1_kubelets()
    if others:
        print(f"error: another cluster's kubelet for node-1 runs (pid {', '.join(map(str, others))}); "
              f"its orphan sweep would remove this run's containers: run it alone",
              file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="minik8s-bench-") as tmp:
        home = local.Home.at(args.keep_home or tmp)
        local.up(home, nodes=1, port=local.free_port())
        try:
            pods = asyncio.run(bench_minik8s(home, args))
            base = bench_baseline(args)
        finally:
            local.down(home)
    report(pods, base, args)
    if args.json:
        samples = {f"minik8s/{mode}": [{"acked": t.acked - t.sent, "bound": t.bound - t.sent,
                                        "status": t.status - t.sent,
                                        "running": t.running - t.sent} for t in ts]
                   for mode, ts in pods.items()}
        samples.update({f"baseline/{k}": v for k, v in base.items()})
        Path(args.json).write_text(json.dumps(samples, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
