"""The scheduler's view of one pod and one node, computed once and then only read.

A filter runs once per (pod, node) pair, so anything it would re-derive from the raw dicts
(parsed quantities, summed requests, host ports, the controlling owner, affinity terms) is
derived once here: ``PodInfo`` when a pod enters a scheduling cycle or the cache, and
``NodeInfo`` when a node or one of its pods changes. Both stay plain data, so plugins remain
pure functions over them and unit tests build them straight from dicts.

A ``NodeInfo`` is copy-on-write: the cache never mutates one it has handed out in a snapshot,
it replaces it with a changed clone. That is what makes a snapshot immutable for a whole
cycle while binds and informer events keep changing the cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from minik8s.api.meta import Obj, controller_of
from minik8s.api.quantity import milli_value_of, value_of

CPU, MEMORY, PODS, EPHEMERAL_STORAGE = "cpu", "memory", "pods", "ephemeral-storage"

# What scoring assumes a container uses when it requests nothing (Kubernetes'
# DefaultMilliCPURequest / DefaultMemoryRequest), so that best-effort pods still spread.
DEFAULT_MILLI_CPU_REQUEST = 100
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024

DEFAULT_BIND_ALL_HOST_IP = "0.0.0.0"

Resources = dict[str, int]


def _amount(name: str, value: Any) -> int:
    """cpu in millicores, everything else in whole units (rounded up, as Kubernetes does)."""
    try:
        return milli_value_of(value) if name == CPU else value_of(value)
    except (ValueError, TypeError):
        return 0


def container_requests(container: Obj) -> Resources:
    """A container's requests; a resource with only a limit requests its limit (the
    Kubernetes default applied to pods)."""
    res = container.get("resources") or {}
    limits = res.get("limits") or {}
    requests = res.get("requests") or {}
    out: Resources = {}
    for name, value in {**limits, **requests}.items():
        out[name] = _amount(name, value)
    return out


def _add(into: Resources, other: Resources) -> None:
    for k, v in other.items():
        into[k] = into.get(k, 0) + v


def _max(into: Resources, other: Resources) -> None:
    for k, v in other.items():
        if v > into.get(k, 0):
            into[k] = v


def pod_requests(pod: Obj) -> Resources:
    """What a pod needs on its node, as ``resource.PodRequests`` computes it: the sum of its
    containers (plus restartable init containers, which keep running), or the largest init
    step if that is higher, plus the pod's overhead."""
    spec = pod.get("spec") or {}
    reqs: Resources = {}
    for c in spec.get("containers") or []:
        _add(reqs, container_requests(c))
    sidecars: Resources = {}
    init_max: Resources = {}
    for c in spec.get("initContainers") or []:
        creq = container_requests(c)
        if c.get("restartPolicy") == "Always":
            _add(reqs, creq)
            _add(sidecars, creq)
            step = dict(sidecars)
        else:
            step = dict(creq)
            _add(step, sidecars)
        _max(init_max, step)
    _max(reqs, init_max)
    overhead = spec.get("overhead") or {}
    if overhead:
        _add(reqs, {k: _amount(k, v) for k, v in overhead.items()})
    return {k: v for k, v in reqs.items() if v}


def _non_zero(pod: Obj, requests: Resources) -> tuple[int, int]:
    """cpu and memory for scoring, with the defaults filled in per container."""
    spec = pod.get("spec") or {}
    cpu = mem = 0
    for c in spec.get("containers") or []:
        r = container_requests(c)
        cpu += r.get(CPU) or DEFAULT_MILLI_CPU_REQUEST
        mem += r.get(MEMORY) or DEFAULT_MEMORY_REQUEST
    init_cpu = init_mem = 0
    for c in spec.get("initContainers") or []:
        r = container_requests(c)
        init_cpu = max(init_cpu, r.get(CPU) or DEFAULT_MILLI_CPU_REQUEST)
        init_mem = max(init_mem, r.get(MEMORY) or DEFAULT_MEMORY_REQUEST)
    return max(cpu, init_cpu), max(mem, init_mem)


def host_ports(pod: Obj) -> tuple[tuple[str, str, int], ...]:
    """``(hostIP, protocol, hostPort)`` of every container port that claims a host port."""
    out = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            hp = p.get("hostPort") or 0
            if hp > 0:
                out.append((p.get("hostIP") or DEFAULT_BIND_ALL_HOST_IP,
                            p.get("protocol") or "TCP", int(hp)))
    return tuple(out)


@dataclass(frozen=True)
class AffinityTerm:
    """One ``podAffinityTerm``, with its namespaces resolved (empty tuple and
    ``all_namespaces`` False means only the pod's own namespace)."""

    selector: Any  # minik8s.api.selectors.LabelSelector
    namespaces: frozenset[str]
    all_namespaces: bool
    topology_key: str

    def matches(self, pod: "PodInfo") -> bool:
        if not self.all_namespaces and pod.namespace not in self.namespaces:
            return False
        return self.selector.matches(pod.labels)


def _terms(pod: Obj, kind: str, namespace: str) -> tuple[AffinityTerm, ...]:
    from minik8s.api.selectors import selector_from_dict

    aff = ((pod.get("spec") or {}).get("affinity") or {}).get(kind) or {}
    out = []
    for t in aff.get("requiredDuringSchedulingIgnoredDuringExecution") or []:
        try:
            sel = selector_from_dict(t.get("labelSelector"))
        except Exception:
            continue
        ns_sel = t.get("namespaceSelector")
        nss = frozenset(t.get("namespaces") or ())
        # An empty namespaceSelector ({}) selects every namespace; a non-empty one would
        # need namespace labels, which this scheduler does not watch: it is ignored.
        all_ns = ns_sel is not None and not ns_sel.get("matchLabels") and \
            not ns_sel.get("matchExpressions")
        if not nss and not all_ns:
            nss = frozenset((namespace,))
        out.append(AffinityTerm(sel, nss, all_ns, t.get("topologyKey") or ""))
    return tuple(out)


@dataclass(eq=False)
class PodInfo:
    """A pod plus what every plugin would otherwise re-derive from it."""

    pod: Obj
    key: str
    namespace: str
    name: str
    labels: dict[str, str]
    priority: int
    requests: Resources
    non_zero_cpu: int
    non_zero_memory: int
    host_ports: tuple[tuple[str, str, int], ...]
    owner_uid: str
    anti_affinity: tuple[AffinityTerm, ...]
    node_name: str = ""
    # requests in the order fit checks report them: cpu, memory, ephemeral-storage, others
    ordered_requests: tuple[tuple[str, int], ...] = ()

    @classmethod
    def of(cls, pod: Obj) -> "PodInfo":
        md = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        ns = md.get("namespace") or ""
        reqs = pod_requests(pod)
        cpu, mem = _non_zero(pod, reqs)
        owner = controller_of(pod) or {}
        return cls(pod=pod, key=pod_key(pod), namespace=ns, name=md.get("name") or "",
                   labels=md.get("labels") or {}, priority=int(spec.get("priority") or 0),
                   requests=reqs, non_zero_cpu=cpu, non_zero_memory=mem,
                   host_ports=host_ports(pod), owner_uid=owner.get("uid") or "",
                   anti_affinity=_terms(pod, "podAntiAffinity", ns),
                   node_name=spec.get("nodeName") or "",
                   ordered_requests=_ordered(reqs))

    @property
    def spec(self) -> Obj:
        return self.pod.get("spec") or {}


def _ordered(reqs: Resources) -> tuple[tuple[str, int], ...]:
    first = [(n, reqs[n]) for n in (CPU, MEMORY, EPHEMERAL_STORAGE) if reqs.get(n, 0) > 0]
    rest = [(n, v) for n, v in sorted(reqs.items())
            if n not in (CPU, MEMORY, EPHEMERAL_STORAGE, PODS) and v > 0]
    return tuple(first + rest)


def pod_key(pod: Obj) -> str:
    """The pod's uid (names are reused, uids are not); ``namespace/name`` without one."""
    md = pod.get("metadata") or {}
    return md.get("uid") or f"{md.get('namespace') or ''}/{md.get('name') or ''}"


def allocatable_of(node: Obj) -> Resources:
    alloc = (node.get("status") or {}).get("allocatable") or {}
    return {k: _amount(k, v) for k, v in alloc.items()}


@dataclass(eq=False)
class NodeInfo:
    """A node and the pods placed on it (bound or assumed), with running totals."""

    name: str
    node: Obj | None = None
    labels: dict[str, str] = field(default_factory=dict)
    allocatable: Resources = field(default_factory=dict)
    pods: dict[str, PodInfo] = field(default_factory=dict)
    requested: Resources = field(default_factory=dict)
    non_zero_cpu: int = 0
    non_zero_memory: int = 0
    # host IP -> {(protocol, port)}
    used_ports: dict[str, set[tuple[str, int]]] = field(default_factory=dict)
    anti_affinity_pods: tuple[PodInfo, ...] = ()
    owner_counts: dict[str, int] = field(default_factory=dict)
    # read by filters for every pod: derived once per node change
    taints: tuple[Obj, ...] = ()
    unschedulable: bool = False
    ready_status: str | None = None

    @classmethod
    def of(cls, node: Obj | None, pods: Iterable[Obj | PodInfo] = ()) -> "NodeInfo":
        """A node info from plain dicts (what tests and the cache start from)."""
        name = ((node or {}).get("metadata") or {}).get("name") or ""
        ni = cls(name=name)
        if node is not None:
            ni.set_node(node)
        for p in pods:
            ni.add_pod(p if isinstance(p, PodInfo) else PodInfo.of(p))
        return ni

    def clone(self) -> "NodeInfo":
        return NodeInfo(name=self.name, node=self.node, labels=self.labels,
                        allocatable=self.allocatable, pods=dict(self.pods),
                        requested=dict(self.requested), non_zero_cpu=self.non_zero_cpu,
                        non_zero_memory=self.non_zero_memory,
                        used_ports={ip: set(s) for ip, s in self.used_ports.items()},
                        anti_affinity_pods=self.anti_affinity_pods,
                        owner_counts=dict(self.owner_counts), taints=self.taints,
                        unschedulable=self.unschedulable, ready_status=self.ready_status)

    # --- mutation (only on a NodeInfo no snapshot holds) ----------------------------

    def set_node(self, node: Obj) -> None:
        self.node = node
        self.name = (node.get("metadata") or {}).get("name") or self.name
        self.labels = (node.get("metadata") or {}).get("labels") or {}
        self.allocatable = allocatable_of(node)
        spec = node.get("spec") or {}
        self.taints = tuple(spec.get("taints") or ())
        self.unschedulable = bool(spec.get("unschedulable"))
        ready = self.condition("Ready")
        self.ready_status = ready.get("status") if ready else None

    def add_pod(self, p: PodInfo) -> None:
        if p.key in self.pods:
            self.remove_pod(p.key)
        self.pods[p.key] = p
        _add(self.requested, p.requests)
        self.non_zero_cpu += p.non_zero_cpu
        self.non_zero_memory += p.non_zero_memory
        for ip, proto, port in p.host_ports:
            self.used_ports.setdefault(ip, set()).add((proto, port))
        if p.anti_affinity:
            self.anti_affinity_pods = self.anti_affinity_pods + (p,)
        if p.owner_uid:
            self.owner_counts[p.owner_uid] = self.owner_counts.get(p.owner_uid, 0) + 1

    def remove_pod(self, key: str) -> PodInfo | None:
        p = self.pods.pop(key, None)
        if p is None:
            return None
        for k, v in p.requests.items():
            left = self.requested.get(k, 0) - v
            if left:
                self.requested[k] = left
            else:
                self.requested.pop(k, None)
        self.non_zero_cpu -= p.non_zero_cpu
        self.non_zero_memory -= p.non_zero_memory
        for ip, proto, port in p.host_ports:
            used = self.used_ports.get(ip)
            if used is not None:
                used.discard((proto, port))
                if not used:
                    del self.used_ports[ip]
        if p.anti_affinity:
            self.anti_affinity_pods = tuple(x for x in self.anti_affinity_pods if x.key != key)
        if p.owner_uid:
            n = self.owner_counts.get(p.owner_uid, 0) - 1
            if n > 0:
                self.owner_counts[p.owner_uid] = n
            else:
                self.owner_counts.pop(p.owner_uid, None)
        return p

    # --- reads ----------------------------------------------------------------------

    @property
    def spec(self) -> Obj:
        return (self.node or {}).get("spec") or {}

    def condition(self, type_: str) -> Obj | None:
        for c in ((self.node or {}).get("status") or {}).get("conditions") or []:
            if c.get("type") == type_:
                return c
        return None


__all__ = ["PodInfo", "NodeInfo", "AffinityTerm", "Resources", "pod_requests",
           "container_requests", "host_ports", "pod_key", "allocatable_of", "CPU", "MEMORY",
           "PODS", "EPHEMERAL_STORAGE", "DEFAULT_MILLI_CPU_REQUEST", "DEFAULT_MEMORY_REQUEST",
           "DEFAULT_BIND_ALL_HOST_IP"]
