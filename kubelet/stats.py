"""The kubelet's stats summary (``/stats/summary``) read straight from the cgroup v1 files:
``docker stats`` costs 1-2 s a call, a cgroup file well under a millisecond.

Docker's cgroupfs driver puts a container at ``<root>/<controller>/docker/<id>``; the node
is the root cgroup. CPU is cumulative (``cpuacct.usage``, nanoseconds), so a rate
(``usageNanoCores``) needs two samples. Each cgroup keeps a short history of the samples
earlier summaries took, and the rate is measured against the newest one at least
``WINDOW`` old (else the oldest usable one): two callers asking a moment apart (the API
server's metrics for ``kubectl top`` and for the autoscaler) both get a rate over a real
window rather than over the few milliseconds between their calls. A summary with no usable
earlier sample takes a second one a moment later. Each CPU block also carries the window it
was measured over (``windowSeconds``, an addition to Kubernetes' Summary API that the API
server reports as the metrics' ``window``). The working set is usage minus inactive file
pages, as cAdvisor computes it."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from kubelet.runtime.base import APP, INIT, LABEL_NODE, LABEL_POD_NAME, \
    LABEL_POD_NAMESPACE, SANDBOX, ContainerInfo

Obj = dict[str, Any]

# A rate over less than MIN_INTERVAL is noise; a sample older than MAX_AGE is too stale to
# use; the preferred window is WINDOW (the newest sample at least this old).
MIN_INTERVAL = 0.1
WINDOW = 5.0
MAX_AGE = 60.0
HISTORY = 16  # samples kept per cgroup
SECOND_SAMPLE_DELAY = 0.5


@dataclass
class CpuSample:
    at: float  # monotonic seconds
    usage_ns: int
    wall: float = 0.0  # the same instant, wall-clock seconds


def reference(history: "deque[CpuSample] | list[CpuSample]", current: CpuSample) -> CpuSample | None:
    """The earlier sample to measure ``current``'s rate against: the newest one at least
    ``WINDOW`` old, else the oldest at least ``MIN_INTERVAL`` old; never one older than
    ``MAX_AGE`` or with a larger counter (the cgroup was recreated)."""
    usable = [s for s in history
              if MIN_INTERVAL <= current.at - s.at <= MAX_AGE and s.usage_ns <= current.usage_ns]
    if not usable:
        return None
    wide = [s for s in usable if current.at - s.at >= WINDOW]
    if wide:
        return max(wide, key=lambda s: s.at)
    return min(usable, key=lambda s: s.at)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _read_stat(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if value.strip().isdigit():
                out[key] = int(value)
    except OSError:
        pass
    return out


def rfc3339(ts: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if ts is None else ts, timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


class CgroupReader:
    """Reads one cgroup (a relative path like ``docker/<id>``, or ``""`` for the root)."""

    def __init__(self, root: str = "/sys/fs/cgroup", parent: str = "docker"):
        self.root = Path(root)
        self.parent = parent

    def container(self, container_id: str) -> str:
        return f"{self.parent}/{container_id}"

    def cpu_usage_ns(self, cgroup: str) -> int | None:
        return _read_int(self.root / "cpuacct" / cgroup / "cpuacct.usage")

    def memory(self, cgroup: str) -> Obj | None:
        base = self.root / "memory" / cgroup
        usage = _read_int(base / "memory.usage_in_bytes")
        if usage is None:
            return None
        stat = _read_stat(base / "memory.stat")
        inactive = stat.get("total_inactive_file", stat.get("inactive_file", 0))
        out: Obj = {"usageBytes": usage, "workingSetBytes": max(0, usage - inactive),
                    "rssBytes": stat.get("total_rss", stat.get("rss", 0)),
                    "pageFaults": stat.get("total_pgfault", stat.get("pgfault", 0)),
                    "majorPageFaults": stat.get("total_pgmajfault", stat.get("pgmajfault", 0))}
        limit = _read_int(base / "memory.limit_in_bytes")
        if limit is not None and limit < 1 << 62:
            out["availableBytes"] = max(0, limit - out["workingSetBytes"])
        return out


class StatsProvider:
    def __init__(self, node_name: str, runtime: Any, *, reader: CgroupReader | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 memory_total: Callable[[], int] | None = None):
        self.node_name = node_name
        self.runtime = runtime
        self.reader = reader or CgroupReader()
        self.clock = clock
        self.memory_total = memory_total
        self.started = rfc3339()
        self._history: dict[str, deque[CpuSample]] = {}

    def _sample(self, cgroups: list[str]) -> dict[str, CpuSample]:
        now, wall = self.clock(), time.time()
        out = {}
        for cg in cgroups:
            usage = self.reader.cpu_usage_ns(cg)
            if usage is not None:
                out[cg] = CpuSample(now, usage, wall)
        return out

    def _references(self, current: dict[str, CpuSample]) -> dict[str, CpuSample | None]:
        return {cg: reference(self._history.get(cg) or (), s) for cg, s in current.items()}

    def _remember(self, current: dict[str, CpuSample]) -> None:
        for cg, s in current.items():
            history = self._history.get(cg)
            if history is None or (history and history[-1].usage_ns > s.usage_ns):
                history = self._history[cg] = deque(maxlen=HISTORY)  # new or recreated
            while history and s.at - history[0].at > MAX_AGE:
                history.popleft()
            if not history or history[-1].at < s.at:
                history.append(s)

    def cpu(self, cg: str, current: dict[str, CpuSample],
            earlier: dict[str, CpuSample | None]) -> Obj | None:
        s = current.get(cg)
        if s is None:
            return None
        out: Obj = {"time": rfc3339(s.wall or None), "usageCoreNanoSeconds": s.usage_ns}
        prev = earlier.get(cg)
        if prev is not None and s.at > prev.at and s.usage_ns >= prev.usage_ns:
            out["usageNanoCores"] = int((s.usage_ns - prev.usage_ns) / (s.at - prev.at))
            out["windowSeconds"] = round(s.at - prev.at, 3)
        return out

    async def summary(self) -> Obj:
        infos: list[ContainerInfo] = await self.runtime.list_containers(
            {LABEL_NODE: self.node_name})
        running = [i for i in infos if i.state == "running" and i.kind in (SANDBOX, APP, INIT)]
        groups = [""] + [self.reader.container(i.id) for i in running]
        current = await asyncio.to_thread(self._sample, groups)
        earlier = self._references(current)
        if any(ref is None for ref in earlier.values()):
            self._remember(current)
            await asyncio.sleep(SECOND_SAMPLE_DELAY)
            current = await asyncio.to_thread(self._sample, groups)
            earlier = self._references(current)
        self._remember(current)
        for gone in set(self._history) - set(groups):
            del self._history[gone]
        return await asyncio.to_thread(self._build, running, current, earlier)

    def _build(self, running: list[ContainerInfo], current: dict[str, CpuSample],
               earlier: dict[str, CpuSample | None]) -> Obj:
        now = rfc3339()
        node_mem = self.reader.memory("") or {}
        if node_mem and self.memory_total is not None:
            total = self.memory_total()
            if total:
                node_mem["availableBytes"] = max(0, total - node_mem["workingSetBytes"])
        node: Obj = {"nodeName": self.node_name, "startTime": self.started,
                     "cpu": self.cpu("", current, earlier) or {"time": now},
                     "memory": {"time": now, **node_mem}, "systemContainers": []}
        pods: dict[str, Obj] = {}
        for info in running:
            uid = info.pod_uid
            pod = pods.setdefault(uid, {
                "podRef": {"name": info.labels.get(LABEL_POD_NAME, ""),
                           "namespace": info.labels.get(LABEL_POD_NAMESPACE, ""), "uid": uid},
                "startTime": info.started_at or info.created_at or now, "containers": [],
                "cpu": {"time": now, "usageNanoCores": 0, "usageCoreNanoSeconds": 0},
                "memory": {"time": now, "usageBytes": 0, "workingSetBytes": 0, "rssBytes": 0,
                           "pageFaults": 0, "majorPageFaults": 0}})
            cg = self.reader.container(info.id)
            cpu = self.cpu(cg, current, earlier) or {"time": now}
            mem = self.reader.memory(cg) or {}
            for key in ("usageNanoCores", "usageCoreNanoSeconds"):
                pod["cpu"][key] += cpu.get(key, 0)
            if "windowSeconds" in cpu:
                pod["cpu"]["windowSeconds"] = max(pod["cpu"].get("windowSeconds", 0.0),
                                                  cpu["windowSeconds"])
            for key in ("usageBytes", "workingSetBytes", "rssBytes", "pageFaults",
                        "majorPageFaults"):
                pod["memory"][key] += mem.get(key, 0)
            if info.kind == SANDBOX:
                continue
            pod["containers"].append({
                "name": info.container_name, "startTime": info.started_at or now,
                "cpu": cpu, "memory": {"time": now, **mem}})
        return {"node": node, "pods": list(pods.values())}


__all__ = ["CgroupReader", "CpuSample", "StatsProvider", "reference"]
