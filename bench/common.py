"""What the benchmarks share: percentiles, a bounded-concurrency rate meter, and the check
that no other local cluster's ``node-1`` kubelet runs (two clusters on one machine both name
their first node ``node-1``, and each kubelet would take the other's containers for orphans).
Each benchmark puts the repository on ``sys.path`` before importing this."""

from __future__ import annotations

import asyncio
import os
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


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds a process (default: this one) has used so far: per-operation
    CPU cost is a figure a busy machine disturbs far less than a rate."""
    if pid is None:
        return time.process_time()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds spent by named processes between ``start()`` and ``stop()``."""

    def __init__(self, pids: dict[str, int | None]):
        self.pids = pids
        self._start: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def start(self) -> "CpuMeter":
        self._start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        return self

    def stop(self) -> dict[str, float]:
        self.used = {name: cpu_seconds(pid) - self._start[name]
                     for name, pid in self.pids.items()}
        return self.used

    def per_op_ms(self, n: int) -> str:
        return " / ".join(f"{1000 * v / n:.2f}" for v in self.used.values())


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


__all__ = ["pct", "rate", "other_node_1_kubelets", "cpu_seconds", "CpuMeter"]
