"""What the benchmarks share: percentiles, a bounded-concurrency rate meter, and the check
that no other local cluster's ``node-1`` kubelet runs (two clusters on one machine both name
their first node ``node-1``, and each kubelet would take the other's containers for orphans).
Each benchmark puts the repository on ``sys.path`` before importing this."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


async def rate(n: int, concurrency: int, op) -> float:
    """ops/s for ``n`` calls of ``op(i)`` with ``concurrency`` in flight."""
    it = iter(range(n))

    async def worker() -> None:
        for i in it:
            await op(i)
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - start)


def other_node_1_kubelets() -> list[int]:
    """Kubelets of other clusters named ``node-1``: their containers carry the same node
    label as ours, so each takes the other's pods for orphans and removes them."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"kubelet" in cmd and b"--node-name" in cmd and \
                cmd[cmd.index(b"--node-name") + 1:][:1] == [b"node-1"]:
            pids.append(int(proc.name))
    return pids


__all__ = ["pct", "rate", "other_node_1_kubelets"]
