"""The scheduler's own picture of the cluster: nodes, and the pods placed on each.

The informers lag the scheduler's own decisions: a pod bound a moment ago still shows up
as pending, and its node still looks empty. Scheduling from the informer alone would put a
burst of pods on the same "empty" node. So a placement is *assumed* here the moment it is
decided, before the binding is even sent, and counts against its node from then on; when
the informer later delivers the bound pod the assumption is confirmed, when the binding
fails it is forgotten, and if the bound pod never shows up (deleted in between) it expires
``ttl`` seconds after its binding finished, as in Kubernetes' scheduler cache.

A cycle works on a ``Snapshot``: the ``NodeInfo`` objects of that moment. The cache never
mutates a ``NodeInfo`` in place (it swaps in a changed clone), so a snapshot stays
consistent without deep copies, and taking one is a list of references.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Iterable

from minik8s.api.meta import Obj
from minik8s.runtime.workqueue import REAL_CLOCK, Clock
from scheduler.nodeinfo import NodeInfo, PodInfo, pod_key

log = logging.getLogger(__name__)

DEFAULT_ASSUMED_TTL = 30.0


@dataclass(frozen=True)
class Snapshot:
    """The nodes (with their pods) one scheduling cycle sees; never changes."""

    nodes: list[NodeInfo]
    nodes_with_anti_affinity: list[NodeInfo]
    by_name: dict[str, NodeInfo]

    @classmethod
    def of(cls, infos: Iterable[NodeInfo]) -> "Snapshot":
        nodes = [ni for ni in infos if ni.node is not None]
        return cls(nodes, [ni for ni in nodes if ni.anti_affinity_pods],
                   {ni.name: ni for ni in nodes})

    def get(self, name: str) -> NodeInfo | None:
        return self.by_name.get(name)

    def __len__(self) -> int:
        return len(self.nodes)


@dataclass
class _PodState:
    info: PodInfo
    assumed: bool = False
    binding_finished: bool = False
    deadline: float | None = None


def is_terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


class Cache:
    """Nodes and placed pods, with assumed placements; single event loop, no locking."""

    def __init__(self, *, clock: Clock | None = None, ttl: float = DEFAULT_ASSUMED_TTL):
        self.clock: Clock = clock or REAL_CLOCK
        self.ttl = ttl
        self._nodes: dict[str, NodeInfo] = {}
        self._pods: dict[str, _PodState] = {}
        self._snapshot: Snapshot | None = None

    # --- snapshot -------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The current state as an immutable snapshot (the same object until a change)."""
        if self._snapshot is None:
            self._snapshot = Snapshot.of(self._nodes.values())
        return self._snapshot

    def _edit(self, name: str) -> NodeInfo:
        """A private clone of the node's info, installed in place of the published one."""
        old = self._nodes.get(name)
        ni = old.clone() if old is not None else NodeInfo(name=name)
        self._nodes[name] = ni
        self._snapshot = None
        return ni

    def _drop_if_empty(self, name: str) -> None:
        ni = self._nodes.get(name)
        if ni is not None and ni.node is None and not ni.pods:
            del self._nodes[name]

    # --- nodes ----------------------------------------------------------------------

    def add_node(self, node: Obj) -> None:
        name = (node.get("metadata") or {}).get("name") or ""
        self._edit(name).set_node(node)

    update_node = add_node

    def remove_node(self, node: Obj | str) -> None:
        """Forget the node; pods still on it keep being counted until they go (their
        delete events follow), as Kubernetes' cache does."""
        name = node if isinstance(node, str) else (node.get("metadata") or {}).get("name") or ""
        if name not in self._nodes:
            return
        ni = self._edit(name)
        ni.node = None
        self._drop_if_empty(name)

    @property
    def node_count(self) -> int:
        return sum(1 for ni in self._nodes.values() if ni.node is not None)

    def node_info(self, name: str) -> NodeInfo | None:
        return self._nodes.get(name)

    # --- pods -----------------------------------------------------------------------

    def _place(self, info: PodInfo) -> None:
        self._edit(info.node_name).add_pod(info)

    def _unplace(self, info: PodInfo) -> None:
        if info.node_name in self._nodes:
            self._edit(info.node_name).remove_pod(info.key)
            self._drop_if_empty(info.node_name)

    def assume_pod(self, pod: PodInfo, node_name: str) -> PodInfo:
        """Count ``pod`` on ``node_name`` from now on; the placed ``PodInfo``."""
        if pod.key in self._pods:
            raise ValueError(f"pod {pod.namespace}/{pod.name} is already in the cache")
        info = dataclasses.replace(pod, node_name=node_name)
        self._place(info)
        self._pods[pod.key] = _PodState(info, assumed=True)
        return info

    def finish_binding(self, key: str) -> None:
        """The binding was sent successfully: start the assumed pod's expiry clock."""
        st = self._pods.get(key)
        if st is not None and st.assumed:
            st.binding_finished = True
            st.deadline = self.clock.now() + self.ttl

    def forget_pod(self, key: str) -> bool:
        """Drop an assumed placement (its binding failed); True if one was dropped."""
        st = self._pods.get(key)
        if st is None or not st.assumed:
            return False
        del self._pods[key]
        self._unplace(st.info)
        return True

    def is_assumed(self, key: str) -> bool:
        st = self._pods.get(key)
        return st is not None and st.assumed

    def is_known(self, key: str) -> bool:
        return key in self._pods

    def add_pod(self, pod: Obj) -> None:
        """A pod the informer shows bound to a node: confirms an assumed placement (moving
        it if the pod landed elsewhere) or adds it."""
        if is_terminal(pod):
            self.remove_pod(pod)
            return
        info = PodInfo.of(pod)
        if not info.node_name:
            return
        st = self._pods.get(info.key)
        if st is not None:
            self._unplace(st.info)
        self._place(info)
        self._pods[info.key] = _PodState(info)

    def update_pod(self, old: Obj | None, new: Obj) -> None:
        self.add_pod(new)

    def remove_pod(self, pod: Obj | str) -> None:
        key = pod if isinstance(pod, str) else pod_key(pod)
        st = self._pods.pop(key, None)
        if st is not None:
            self._unplace(st.info)

    @property
    def pod_count(self) -> int:
        return len(self._pods)

    @property
    def assumed_count(self) -> int:
        return sum(1 for st in self._pods.values() if st.assumed)

    # --- expiry ---------------------------------------------------------------------

    def cleanup_expired(self) -> list[str]:
        """Forget assumed pods whose binding finished more than ``ttl`` ago and that the
        informer never confirmed; their keys."""
        now = self.clock.now()
        expired = [k for k, st in self._pods.items()
                   if st.assumed and st.binding_finished and st.deadline is not None
                   and st.deadline <= now]
        for key in expired:
            st = self._pods.pop(key)
            log.warning("assumed pod %s/%s on %s expired", st.info.namespace, st.info.name,
                        st.info.node_name)
            self._unplace(st.info)
        return expired


__all__ = ["Cache", "Snapshot", "DEFAULT_ASSUMED_TTL", "is_terminal"]
