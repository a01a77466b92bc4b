"""API server benchmark: each figure beside raw etcd doing the same work in the same run.

    python bench/api.py [--objects 2000] [--watchers 100] [--events 200]

Starts a throw-away cluster with ``minik8s up`` in a temporary folder (its own etcd and API
server on free ports), measures, prints a table, and stops everything it started.

- creates/s and gets/s of ConfigMaps through HTTPS (authn, admission, validation, JSON)
  at concurrency 1 and 16, beside aetcd puts/gets of the same bytes on the same etcd;
- a list of 1,000 objects (from etcd, and with resourceVersion=0 from the watch cache)
  beside one aetcd range read of the same keys;
- watch-event delivery latency (write acknowledged -> event received) p50/p99 over
  ``--watchers`` concurrent watch streams, beside as many raw etcd watchers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aetcd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import pct, rate  # noqa: E402
from minik8s.cli import local  # noqa: E402
from minik8s.client import Client  # noqa: E402


def configmap(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "bench", "labels": {"app": "bench"}},
            "data": {"key": "x" * 64}}


async def bench_crud(client: Client, etcd: aetcd.Client, n: int) -> list[tuple[str, float, float]]:
    rows = []
    payload = json.dumps(configmap("x")).encode()
    for conc in (1, 16):
        tag = f"c{conc}"
        api = await rate(n, conc, lambda i: client.create("configmaps", configmap(f"{tag}-{i}"),
                                                          "bench"))
        raw = await rate(n, conc, lambda i: etcd.put(f"/raw/{tag}/{i}".encode(), payload))
        rows.append((f"create, concurrency {conc} (ops/s)", api, raw))
        api = await rate(n, conc, lambda i: client.get("configmaps", f"{tag}-{i}", "bench"))
        raw = await rate(n, conc, lambda i: etcd.get(f"/raw/{tag}/{i}".encode()))
        rows.append((f"get, concurrency {conc} (ops/s)", api, raw))
    return rows


async def bench_list(client: Client, etcd: aetcd.Client, n: int) -> list[tuple[str, float, float]]:
    # 1,000 objects in a namespace of their own.
    await client.create("namespaces", {"metadata": {"name": "bench-list"}})
    payload = json.dumps(configmap("x")).encode()

    async def mk(i: int) -> None:
        obj = configmap(f"l-{i:04d}")
        obj["metadata"]["namespace"] = "bench-list"
        await client.create("configmaps", obj, "bench-list")
    await rate(1000, 16, mk)
    await rate(1000, 16, lambda i: etcd.put(f"/rawlist/{i:04d}".encode(), payload))

    async def timed(op, reps: int = 10) -> float:
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            await op()
            times.append(time.perf_counter() - t)
        return statistics.median(times) * 1000

    async def api_list() -> None:
        out = await client.list("configmaps", "bench-list")
        assert len(out["items"]) == 1000

    async def api_cached() -> None:
        out = await client.list("configmaps", "bench-list", resource_version="0")
        assert len(out["items"]) == 1000

    async def raw_list() -> None:
        out = await etcd.get_prefix(b"/rawlist/")
        assert len(out) == 1000
    raw = await timed(raw_list)
    return [("list 1,000 objects (ms, median of 10)", await timed(api_list), raw),
            ("list 1,000 objects, resourceVersion=0 (ms)", await timed(api_cached), raw)]


async def bench_watch(client: Client, etcd: aetcd.Client, watchers: int,
                      events: int) -> list[tuple[str, float, float]]:
    # API: N watch streams on one namespace. Latency runs from the moment the writer sends
    # the create to the moment a stream receives its event (keyed by object name).
    await client.create("namespaces", {"metadata": {"name": "bench-watch"}})
    sent: dict[str, float] = {}
    lat_api: list[float] = []
    clients = [Client(client.config, max_connections=32) for _ in range(max(1, watchers // 25))]

    async def api_watcher(c: Client) -> None:
        got = 0
        async for ev in c.watch("configmaps", "bench-watch", resource_version=start_rv,
                                timeout_seconds=120, allow_bookmarks=False):
            lat_api.append(time.perf_counter() - sent[ev["object"]["metadata"]["name"]])
            got += 1
            if got == events:
                return

    start_rv = (await client.list("configmaps", "bench-watch"))["metadata"]["resourceVersion"]
    tasks = [asyncio.create_task(api_watcher(clients[i % len(clients)])) for i in range(watchers)]
    await asyncio.sleep(2.0)  # let every stream open
    for i in range(events):
        name = f"w-{i}"
        sent[name] = time.perf_counter()
        await client.create("configmaps", {**configmap(name), "metadata": {
            "name": name, "namespace": "bench-watch"}}, "bench-watch")
        await asyncio.sleep(0.01)
    await asyncio.wait_for(asyncio.gather(*tasks), 120)
    for c in clients:
        await c.aclose()

    # Raw etcd: as many aetcd watchers on one prefix.
    sent_raw: dict[bytes, float] = {}
    lat_raw: list[float] = []
    raw_clients = [aetcd.Client(host=etcd._host, port=etcd._port) for _ in range(len(clients))]

    async def raw_watcher(c: aetcd.Client) -> None:
        w = await c.watch_prefix(b"/rawwatch/")
        got = 0
        async for ev in w:
            lat_raw.append(time.perf_counter() - sent_raw[ev.kv.key])
            got += 1
            if got == events:
                await w.cancel()
                return

    raw_tasks = [asyncio.create_task(raw_watcher(raw_clients[i % len(raw_clients)]))
                 for i in range(watchers)]
    await asyncio.sleep(2.0)
    for i in range(events):
        key = f"/rawwatch/{i}".encode()
        sent_raw[key] = time.perf_counter()
        await etcd.put(key, b"x" * 200)
        await asyncio.sleep(0.01)
    await asyncio.wait_for(asyncio.gather(*raw_tasks), 120)
    for c in raw_clients:
        await c.close()
    return [(f"watch delivery p50, {watchers} watchers (ms)", pct(lat_api, 0.5) * 1000,
             pct(lat_raw, 0.5) * 1000),
            (f"watch delivery p99, {watchers} watchers (ms)", pct(lat_api, 0.99) * 1000,
             pct(lat_raw, 0.99) * 1000)]


async def run(args: argparse.Namespace, home: local.Home) -> list[tuple[str, float, float]]:
    settings = json.loads(home.settings.read_text())
    host, _, port = settings["etcd_servers"].split("//")[1].rpartition(":")
    client = Client.from_kubeconfig(str(home.kubeconfig))
    etcd = aetcd.Client(host=host, port=int(port))
    await etcd.connect()
    try:
        await client.create("namespaces", {"metadata": {"name": "bench"}})
        rows = await bench_crud(client, etcd, args.objects)
        rows += await bench_list(client, etcd, 1000)
        rows += await bench_watch(client, etcd, args.watchers, args.events)
        return rows
    finally:
        await client.aclose()
        await etcd.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--objects", type=int, default=2000)
    p.add_argument("--watchers", type=int, default=100)
    p.add_argument("--events", type=int, default=200)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="minik8s-bench-") as tmp:
        home = local.Home.at(tmp)
        local.up(home, port=local.free_port())
        try:
            rows = asyncio.run(run(args, home))
        finally:
            local.down(home)
    print(f"\n{'measure':<46} {'minik8s API':>12} {'raw etcd':>12}")
    for name, api, raw in rows:
        print(f"{name:<46} {api:>12.1f} {raw:>12.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
