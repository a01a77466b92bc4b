"""One module per plugin family; each exposes pure check functions over ``PodInfo`` /
``NodeInfo`` and a small plugin class the framework runs."""

from scheduler.plugins.interpod import InterPodAntiAffinity
from scheduler.plugins.nodeaffinity import NodeAffinity
from scheduler.plugins.nodeports import NodePorts
from scheduler.plugins.nodestate import NodeReady, NodeUnschedulable
from scheduler.plugins.resources import LeastAllocated, NodeResourcesFit
from scheduler.plugins.spread import OwnerSpread
from scheduler.plugins.taints import TaintToleration
from scheduler.plugins.volumes import VolumeBinding

__all__ = ["InterPodAntiAffinity", "NodeAffinity", "NodePorts", "NodeReady",
           "NodeUnschedulable", "LeastAllocated", "NodeResourcesFit", "OwnerSpread",
           "TaintToleration", "VolumeBinding"]
