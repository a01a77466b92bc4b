"""The scheduling framework: how plugins are run, and how their verdicts become a choice or
an explanation.

Placement logic lives in plugins that are pure functions of plain data (a ``PodInfo``, a
``NodeInfo``, a per-cycle state), as in Nomad's scheduler harness and the Kubernetes
scheduling framework: they can be tested one by one without a server, and the framework
alone decides the order they run in, how scores are weighted and normalised, how ties break,
and how per-node failures are aggregated into the ``FailedScheduling`` message users read.
That message follows Kubernetes' ``FitError`` exactly (reasons counted over nodes, sorted as
strings), so the wording people search for is the wording they get.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

from scheduler.cache import Snapshot
from scheduler.nodeinfo import NodeInfo, PodInfo

MAX_NODE_SCORE = 100
NO_NODES_AVAILABLE = "no nodes available to schedule pods"

SUCCESS, UNSCHEDULABLE, UNSCHEDULABLE_AND_UNRESOLVABLE, ERROR = 0, 1, 2, 3


@dataclass(frozen=True)
class Status:
    """A plugin's verdict on one node. Filters return ``None`` for "fits" (the common case
    stays allocation-free) and a ``Status`` with one or more reasons otherwise."""

    code: int
    reasons: tuple[str, ...]
    plugin: str = ""

    @classmethod
    def unschedulable(cls, *reasons: str, plugin: str = "") -> "Status":
        return cls(UNSCHEDULABLE, tuple(reasons), plugin)

    @classmethod
    def unresolvable(cls, *reasons: str, plugin: str = "") -> "Status":
        return cls(UNSCHEDULABLE_AND_UNRESOLVABLE, tuple(reasons), plugin)

    @property
    def message(self) -> str:
        return ", ".join(self.reasons)


CycleState = dict[str, Any]

SKIP = "Skip"
"""What a ``pre_filter`` returns when its filter has nothing to check for this pod (no
selector, no host port...): the framework then leaves it out of the per-node loop."""


@runtime_checkable
class FilterPlugin(Protocol):
    """``pre_filter`` (optional) computes per-cycle state from the whole snapshot once;
    ``filter`` judges one node and must not mutate anything."""

    name: str

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None: ...


@runtime_checkable
class ScorePlugin(Protocol):
    """``score`` rates one feasible node; ``normalize`` (optional) rescales the scores of
    all feasible nodes in place to 0..100."""

    name: str

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int: ...


@dataclass
class Diagnosis:
    """Why each node was rejected: node name -> status."""

    node_statuses: dict[str, Status] = field(default_factory=dict)
    unschedulable_plugins: set[str] = field(default_factory=set)


class FitError(Exception):
    """No node fits; ``str()`` is Kubernetes' ``FailedScheduling`` message."""

    def __init__(self, pod: PodInfo, num_all_nodes: int, diagnosis: Diagnosis):
        self.pod = pod
        self.num_all_nodes = num_all_nodes
        self.diagnosis = diagnosis
        super().__init__(self.message())

    def message(self) -> str:
        if self.num_all_nodes == 0:
            return NO_NODES_AVAILABLE
        return fit_error_message(self.num_all_nodes, self.diagnosis.node_statuses.values())


def fit_error_message(num_all_nodes: int, statuses: Any) -> str:
    """``0/3 nodes are available: 1 node(s) had untolerated taint {k: v}, 2 Insufficient
    cpu.``: each reason counted over the nodes that gave it, ``"<count> <reason>"`` strings
    sorted as strings (Go's ``sort.Strings``, what Kubernetes' ``FitError.Error`` does)."""
    histogram: dict[str, int] = {}
    for st in statuses:
        for reason in st.reasons:
            histogram[reason] = histogram.get(reason, 0) + 1
    msg = f"0/{num_all_nodes} nodes are available:"
    parts = sorted(f"{count} {reason}" for reason, count in histogram.items())
    if parts:
        msg += " " + ", ".join(parts) + "."
    return msg


@dataclass
class ScheduleResult:
    node: str
    evaluated: int
    feasible: int


def select_host(scores: Sequence[tuple[str, int]], rng: random.Random) -> str:
    """The highest total; ties broken uniformly at random (reservoir sampling, as
    Kubernetes' ``selectHost``), with an injectable ``rng`` so tests can seed it."""
    if not scores:
        raise ValueError("empty score list")
    best_name, best = scores[0]
    ties = 1
    for name, score in scores[1:]:
        if score > best:
            best_name, best, ties = name, score, 1
        elif score == best:
            ties += 1
            if rng.randrange(ties) == 0:
                best_name = name
    return best_name


class Framework:
    """One profile: filters in order, weighted scorers, and a tie-break rng."""

    def __init__(self, filters: Sequence[Any], scorers: Sequence[tuple[Any, int]],
                 rng: random.Random | None = None):
        self.filters = list(filters)
        self.scorers = list(scorers)
        self.rng = rng or random.Random()

    # --- phases ---------------------------------------------------------------------

    def pre_filter(self, pod: PodInfo, snapshot: Snapshot) -> CycleState:
        """Per-cycle state; ``state["filters"]`` lists the filters that apply to ``pod``,
        ``state["scorers"]`` the scorers whose ``pre_score`` did not answer SKIP (one that
        would give every node the same score)."""
        state: CycleState = {}
        active = []
        for p in self.filters:
            pre = getattr(p, "pre_filter", None)
            if pre is None or pre(state, pod, snapshot) != SKIP:
                active.append(p)
        state["filters"] = active
        scorers = []
        for p, weight in self.scorers:
            pre = getattr(p, "pre_score", None)
            if pre is None or pre(state, pod, snapshot) != SKIP:
                scorers.append((p, weight))
        state["scorers"] = scorers
        return state

    def find_feasible(self, state: CycleState, pod: PodInfo,
                      nodes: Sequence[NodeInfo]) -> tuple[list[NodeInfo], Diagnosis]:
        feasible: list[NodeInfo] = []
        diag = Diagnosis()
        filters = [(p.filter, p.name) for p in state.get("filters", self.filters)]
        for ni in nodes:
            for fn, name in filters:
                st = fn(state, pod, ni)
                if st is not None:
                    if not st.plugin:
                        st = Status(st.code, st.reasons, name)
                    diag.node_statuses[ni.name] = st
                    diag.unschedulable_plugins.add(name)
                    break
            else:
                feasible.append(ni)
        return feasible, diag

    def prioritize(self, state: CycleState, pod: PodInfo,
                   nodes: Sequence[NodeInfo]) -> list[tuple[str, int]]:
        totals = [0] * len(nodes)
        for plugin, weight in state.get("scorers", self.scorers):
            scores = [plugin.score(state, pod, ni) for ni in nodes]
            norm = getattr(plugin, "normalize", None)
            if norm is not None:
                norm(state, pod, scores)
            for i, s in enumerate(scores):
                totals[i] += s * weight
        return [(ni.name, totals[i]) for i, ni in enumerate(nodes)]

    def schedule(self, pod: PodInfo, snapshot: Snapshot) -> ScheduleResult:
        """The node for ``pod``, or ``FitError`` explaining why there is none."""
        nodes = snapshot.nodes
        if not nodes:
            raise FitError(pod, 0, Diagnosis())
        state = self.pre_filter(pod, snapshot)
        feasible, diag = self.find_feasible(state, pod, nodes)
        if not feasible:
            raise FitError(pod, len(nodes), diag)
        if len(feasible) == 1:
            return ScheduleResult(feasible[0].name, len(nodes), 1)
        scores = self.prioritize(state, pod, feasible)
        return ScheduleResult(select_host(scores, self.rng), len(nodes), len(feasible))


def default_framework(rng: random.Random | None = None, claims: Any = None) -> Framework:
    """The default profile: Kubernetes' filter order, LeastAllocated (weight 1), owner
    spreading (weight 2, as PodTopologySpread's default system spreading) and
    TaintToleration's PreferNoSchedule score (weight 3, as in Kubernetes). ``claims``
    (namespace, name) -> PersistentVolumeClaim lets VolumeBinding place pods by their claims."""
    from scheduler.plugins import (InterPodAntiAffinity, LeastAllocated, NodeAffinity,
                                   NodePorts, NodeReady, NodeResourcesFit, NodeUnschedulable,
                                   OwnerSpread, TaintToleration, VolumeBinding)

    taints = TaintToleration()
    return Framework(
        filters=[NodeUnschedulable(), NodeReady(), taints, NodeAffinity(),
                 NodePorts(), NodeResourcesFit(), VolumeBinding(claims),
                 InterPodAntiAffinity()],
        scorers=[(LeastAllocated(), 1), (OwnerSpread(), 2), (taints, 3)],
        rng=rng)


__all__ = ["Status", "CycleState", "FilterPlugin", "ScorePlugin", "Diagnosis", "FitError",
           "ScheduleResult", "Framework", "default_framework", "fit_error_message",
           "select_host", "SKIP", "MAX_NODE_SCORE", "NO_NODES_AVAILABLE", "SUCCESS", "UNSCHEDULABLE",
           "UNSCHEDULABLE_AND_UNRESOLVABLE", "ERROR"]
