"""minik8s' scheduler: a scheduling queue, filter and score plugins over an immutable
snapshot of a cache that also holds assumed placements, and concurrent binding. Run it with
``minik8s scheduler``; ``scheduler.main.build`` composes it for in-process use."""

from scheduler.cache import Cache, Snapshot
from scheduler.framework import FitError, Framework, Status, default_framework
from scheduler.nodeinfo import NodeInfo, PodInfo
from scheduler.queue import SchedulingQueue
from scheduler.scheduler import Scheduler

__all__ = ["Cache", "Snapshot", "FitError", "Framework", "Status", "default_framework",
           "NodeInfo", "PodInfo", "SchedulingQueue", "Scheduler"]
