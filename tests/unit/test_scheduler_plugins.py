"""Scheduler plugins as pure functions: hollow nodes and pods as dicts in, decisions out."""

from __future__ import annotations

import itertools
import random

import pytest

from scheduler.cache import Snapshot
from scheduler.framework import Framework, Status, default_framework, select_host
from scheduler.nodeinfo import NodeInfo, PodInfo, pod_requests
from scheduler.plugins import (InterPodAntiAffinity, NodeAffinity, NodePorts,
                               NodeReady, NodeResourcesFit, NodeUnschedulable, OwnerSpread,
                               TaintToleration)
from scheduler.plugins.resources import fit_reasons, least_allocated_score
from scheduler.plugins.spread import normalize_spread

_uid = itertools.count()


def node(name: str, cpu: str = "4", memory: str = "8Gi", pods: str = "110", *,
         labels: dict | None = None, taints: list | None = None, unschedulable: bool = False,
         ready: str | None = "True") -> dict:
    n = {"apiVersion": "v1", "kind": "Node",
         "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                               **(labels or {})}},
         "spec": {},
         "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
                    "capacity": {"cpu": cpu, "memory": memory, "pods": pods}}}
    if ready is not None:
        n["status"]["conditions"] = [{"type": "Ready", "status": ready}]
    if taints:
        n["spec"]["taints"] = taints
    if unschedulable:
        n["spec"]["unschedulable"] = True
    return n


def pod(name: str = "p", *, cpu: str | None = None, memory: str | None = None,
        limits: dict | None = None, ns: str = "default", labels: dict | None = None,
        node_name: str = "", node_selector: dict | None = None, tolerations: list | None = None,
        host_port: int | None = None, host_ip: str | None = None, protocol: str | None = None,
        affinity: dict | None = None, owner: str | None = None, priority: int | None = None,
        init: list | None = None) -> dict:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    c: dict = {"name": "c", "image": "busybox:1", "resources": {}}
    if requests:
        c["resources"]["requests"] = requests
    if limits:
        c["resources"]["limits"] = limits
    if host_port:
        port = {"containerPort": 80, "hostPort": host_port}
        if host_ip:
            port["hostIP"] = host_ip
        if protocol:
            port["protocol"] = protocol
        c["ports"] = [port]
    p = {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}-{next(_uid)}",
                      "labels": labels or {}},
         "spec": {"containers": [c], "schedulerName": "default-scheduler"}}
    if node_name:
        p["spec"]["nodeName"] = node_name
    if node_selector:
        p["spec"]["nodeSelector"] = node_selector
    if tolerations:
        p["spec"]["tolerations"] = tolerations
    if affinity:
        p["spec"]["affinity"] = affinity
    if owner:
        p["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                             "name": owner, "uid": f"owner-{owner}",
                                             "controller": True}]
    if priority is not None:
        p["spec"]["priority"] = priority
    if init:
        p["spec"]["initContainers"] = init
    return p


def info(n: dict, *pods: dict) -> NodeInfo:
    return NodeInfo.of(n, [PodInfo.of({**p, "spec": {**p["spec"], "nodeName": n["metadata"]["name"]}})
                           for p in pods])


def run_filter(plugin, p: dict, ni: NodeInfo, nodes: list[NodeInfo] | None = None) -> Status | None:
    state: dict = {}
    pi = PodInfo.of(p)
    pre = getattr(plugin, "pre_filter", None)
    if pre is not None:
        pre(state, pi, Snapshot.of(nodes or [ni]))
    return plugin.filter(state, pi, ni)


def reasons(st: Status | None) -> list[str]:
    return [] if st is None else list(st.reasons)


# --- requests -----------------------------------------------------------------------------

def test_pod_requests_sum_containers_and_default_to_limits():
    p = pod(cpu="250m", memory="64Mi")
    p["spec"]["containers"].append({"name": "d", "image": "x", "resources": {
        "limits": {"cpu": "1", "memory": "1Gi"}}})
    assert pod_requests(p) == {"cpu": 1250, "memory": 64 * 2**20 + 2**30}


def test_pod_requests_take_the_largest_init_container_step():
    p = pod(cpu="100m", init=[
        {"name": "i1", "image": "x", "resources": {"requests": {"cpu": "2"}}},
        {"name": "i2", "image": "x", "resources": {"requests": {"cpu": "500m"}}}])
    assert pod_requests(p)["cpu"] == 2000


def test_pod_requests_count_restartable_init_containers_as_running():
    p = pod(cpu="1", init=[
        {"name": "side", "image": "x", "restartPolicy": "Always",
         "resources": {"requests": {"cpu": "500m"}}},
        {"name": "init", "image": "x", "resources": {"requests": {"cpu": "1"}}}])
    # running: 1 + 0.5 sidecar; init step: 1 + 0.5 sidecar
    assert pod_requests(p)["cpu"] == 1500


def test_pod_overhead_is_added():
    p = pod(cpu="1")
    p["spec"]["overhead"] = {"cpu": "250m"}
    assert pod_requests(p)["cpu"] == 1250


# --- NodeResourcesFit ---------------------------------------------------------------------

def test_resources_fit_when_there_is_room():
    ni = info(node("n1", cpu="2"), pod("a", cpu="1"))
    assert run_filter(NodeResourcesFit(), pod(cpu="1"), ni) is None


def test_insufficient_cpu_counts_pods_already_on_the_node():
    ni = info(node("n1", cpu="2"), pod("a", cpu="1500m"))
    st = run_filter(NodeResourcesFit(), pod(cpu="600m"), ni)
    assert reasons(st) == ["Insufficient cpu"]
    assert st.plugin == "NodeResourcesFit"


def test_insufficient_cpu_and_memory_are_both_reported():
    ni = info(node("n1", cpu="1", memory="1Gi"))
    assert reasons(run_filter(NodeResourcesFit(), pod(cpu="2", memory="2Gi"), ni)) == [
        "Insufficient cpu", "Insufficient memory"]


def test_limits_only_count_as_requests():
    ni = info(node("n1", cpu="1"))
    p = pod(limits={"cpu": "2"})
    assert reasons(run_filter(NodeResourcesFit(), p, ni)) == ["Insufficient cpu"]


def test_too_many_pods():
    ni = info(node("n1", pods="2"), pod("a"), pod("b"))
    assert reasons(run_filter(NodeResourcesFit(), pod(), ni)) == ["Too many pods"]
    assert fit_reasons(PodInfo.of(pod(cpu="1")), info(node("n1", pods="1"), pod("a"))) == [
        "Too many pods"]


def test_extended_resources_are_checked_by_name():
    n = node("n1")
    n["status"]["allocatable"]["example.com/gpu"] = "1"
    p = pod(limits={"example.com/gpu": "2"})
    assert reasons(run_filter(NodeResourcesFit(), p, info(n))) == ["Insufficient example.com/gpu"]


def test_best_effort_pod_fits_a_full_node():
    ni = info(node("n1", cpu="1"), pod("a", cpu="1"))
    assert run_filter(NodeResourcesFit(), pod(), ni) is None


# --- NodeUnschedulable / NodeReady --------------------------------------------------------

def test_cordoned_node_rejects_pods():
    st = run_filter(NodeUnschedulable(), pod(), info(node("n1", unschedulable=True)))
    assert reasons(st) == ["node(s) were unschedulable"]


def test_cordoned_node_accepts_pods_that_tolerate_it():
    p = pod(tolerations=[{"key": "node.kubernetes.io/unschedulable", "operator": "Exists",
                          "effect": "NoSchedule"}])
    assert run_filter(NodeUnschedulable(), p, info(node("n1", unschedulable=True))) is None


def test_uncordoned_node_passes():
    assert run_filter(NodeUnschedulable(), pod(), info(node("n1"))) is None


@pytest.mark.parametrize("ready,expected", [
    ("False", "node(s) had untolerated taint {node.kubernetes.io/not-ready: }"),
    (None, "node(s) had untolerated taint {node.kubernetes.io/not-ready: }"),
    ("Unknown", "node(s) had untolerated taint {node.kubernetes.io/unreachable: }"),
])
def test_not_ready_nodes_reject_pods(ready, expected):
    assert reasons(run_filter(NodeReady(), pod(), info(node("n1", ready=ready)))) == [expected]


def test_ready_node_passes_and_not_ready_is_tolerable():
    assert run_filter(NodeReady(), pod(), info(node("n1"))) is None
    p = pod(tolerations=[{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}])
    assert run_filter(NodeReady(), p, info(node("n1", ready="False"))) is None


# --- TaintToleration ----------------------------------------------------------------------

CONTROL_PLANE = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}


def test_untolerated_taint_is_named():
    st = run_filter(TaintToleration(), pod(), info(node("n1", taints=[CONTROL_PLANE])))
    assert reasons(st) == ["node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"]
    st = run_filter(TaintToleration(), pod(), info(node("n1", taints=[
        {"key": "dedicated", "value": "gpu", "effect": "NoExecute"}])))
    assert reasons(st) == ["node(s) had untolerated taint {dedicated: gpu}"]


def test_prefer_no_schedule_taints_do_not_filter():
    t = {"key": "soft", "value": "x", "effect": "PreferNoSchedule"}
    assert run_filter(TaintToleration(), pod(), info(node("n1", taints=[t]))) is None


@pytest.mark.parametrize("toleration", [
    {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},
    {"key": "dedicated", "value": "gpu"},                      # Equal is the default operator
    {"key": "dedicated", "operator": "Exists"},               # any value, any effect
    {"operator": "Exists"},                                    # empty key + Exists: everything
    {"operator": "Exists", "effect": "NoSchedule"},
])
def test_tolerations_that_match(toleration):
    t = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    assert run_filter(TaintToleration(), pod(tolerations=[toleration]),
                      info(node("n1", taints=[t]))) is None


@pytest.mark.parametrize("toleration", [
    {"key": "dedicated", "operator": "Equal", "value": "cpu"},
    {"key": "other", "operator": "Exists"},
    {"key": "dedicated", "operator": "Exists", "effect": "NoExecute"},
    {"operator": "Exists", "effect": "NoExecute"},
])
def test_tolerations_that_do_not_match(toleration):
    t = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    st = run_filter(TaintToleration(), pod(tolerations=[toleration]), info(node("n1", taints=[t])))
    assert reasons(st) == ["node(s) had untolerated taint {dedicated: gpu}"]


def test_prefer_no_schedule_taints_score_lower():
    soft = {"key": "soft", "value": "x", "effect": "PreferNoSchedule"}
    other = {"key": "other", "effect": "PreferNoSchedule"}
    plain, one, two = (info(node("a")), info(node("b", taints=[soft])),
                       info(node("c", taints=[soft, other, CONTROL_PLANE])))
    plugin = TaintToleration()
    scores = [plugin.score({}, PodInfo.of(pod()), n) for n in (plain, one, two)]
    assert scores == [0, 1, 2]
    plugin.normalize({}, PodInfo.of(pod()), scores)
    assert scores == [100, 50, 0]
    # a toleration counts for the score if its effect is empty or PreferNoSchedule
    for tol, want in (({"key": "soft", "operator": "Exists"}, 1),
                      ({"key": "soft", "value": "x", "effect": "PreferNoSchedule"}, 1),
                      ({"key": "soft", "operator": "Exists", "effect": "NoSchedule"}, 2),
                      ({"operator": "Exists"}, 0)):
        assert plugin.score({}, PodInfo.of(pod(tolerations=[tol])), two) == want
    scores = [0, 0]
    plugin.normalize({}, PodInfo.of(pod()), scores)
    assert scores == [100, 100]
    # skipped in a cycle where no node has a PreferNoSchedule taint (all would score alike)
    assert plugin.pre_score({}, PodInfo.of(pod()), Snapshot.of([plain, one])) is None
    assert plugin.pre_score({}, PodInfo.of(pod()), Snapshot.of([
        plain, info(node("d", taints=[CONTROL_PLANE]))])) == "Skip"


def test_framework_avoids_a_soft_tainted_node_but_uses_it_when_alone():
    soft = {"key": "soft", "effect": "PreferNoSchedule"}
    fw = default_framework(random.Random(1))
    tainted, plain = info(node("a", taints=[soft])), info(node("b"))
    picks = {fw.schedule(PodInfo.of(pod()), Snapshot.of([tainted, plain])).node
             for _ in range(20)}
    assert picks == {"b"}
    assert fw.schedule(PodInfo.of(pod()), Snapshot.of([tainted])).node == "a"
    # the control-plane taint: off the master, unless tolerated and selected
    master = info(node("m", labels={"node-role.kubernetes.io/control-plane": ""},
                       taints=[CONTROL_PLANE]))
    assert fw.schedule(PodInfo.of(pod()), Snapshot.of([master, plain])).node == "b"
    p = pod(tolerations=[{"key": CONTROL_PLANE["key"], "operator": "Exists",
                          "effect": "NoSchedule"}],
            node_selector={"node-role.kubernetes.io/control-plane": ""})
    assert fw.schedule(PodInfo.of(p), Snapshot.of([master, plain])).node == "m"


# --- NodeAffinity -------------------------------------------------------------------------

AFF_ERR = "node(s) didn't match Pod's node affinity/selector"


def required(*terms: dict) -> dict:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": list(terms)}}}


def test_node_selector():
    ni = info(node("n1", labels={"disk": "ssd"}))
    assert run_filter(NodeAffinity(), pod(node_selector={"disk": "ssd"}), ni) is None
    assert reasons(run_filter(NodeAffinity(), pod(node_selector={"disk": "hdd"}), ni)) == [AFF_ERR]
    assert reasons(run_filter(NodeAffinity(), pod(node_selector={"gpu": "yes"}), ni)) == [AFF_ERR]


@pytest.mark.parametrize("expr,fits", [
    ({"key": "zone", "operator": "In", "values": ["a", "b"]}, True),
    ({"key": "zone", "operator": "In", "values": ["c"]}, False),
    ({"key": "zone", "operator": "NotIn", "values": ["c"]}, True),
    ({"key": "zone", "operator": "NotIn", "values": ["a"]}, False),
    ({"key": "missing", "operator": "NotIn", "values": ["a"]}, True),
    ({"key": "zone", "operator": "Exists"}, True),
    ({"key": "missing", "operator": "Exists"}, False),
    ({"key": "missing", "operator": "DoesNotExist"}, True),
    ({"key": "zone", "operator": "DoesNotExist"}, False),
    ({"key": "cores", "operator": "Gt", "values": ["4"]}, True),
    ({"key": "cores", "operator": "Gt", "values": ["8"]}, False),
    ({"key": "cores", "operator": "Lt", "values": ["16"]}, True),
    ({"key": "cores", "operator": "Lt", "values": ["8"]}, False),
    ({"key": "zone", "operator": "Gt", "values": ["1"]}, False),  # not an integer
])
def test_required_node_affinity_operators(expr, fits):
    ni = info(node("n1", labels={"zone": "a", "cores": "8"}))
    st = run_filter(NodeAffinity(), pod(affinity=required({"matchExpressions": [expr]})), ni)
    assert (st is None) is fits
    if not fits:
        assert reasons(st) == [AFF_ERR]


def test_node_affinity_terms_are_ored_and_expressions_anded():
    ni = info(node("n1", labels={"zone": "a", "disk": "ssd"}))
    both = {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]},
                                 {"key": "disk", "operator": "In", "values": ["hdd"]}]}
    assert run_filter(NodeAffinity(), pod(affinity=required(both)), ni) is not None
    other = {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}
    assert run_filter(NodeAffinity(), pod(affinity=required(both, other)), ni) is None
    assert run_filter(NodeAffinity(), pod(affinity=required({})), ni) is not None  # empty term


def test_node_affinity_match_fields_by_name():
    term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}
    assert run_filter(NodeAffinity(), pod(affinity=required(term)), info(node("n2"))) is None
    assert reasons(run_filter(NodeAffinity(), pod(affinity=required(term)),
                              info(node("n1")))) == [AFF_ERR]


def test_node_selector_and_affinity_must_both_hold():
    ni = info(node("n1", labels={"zone": "a"}))
    term = {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
    p = pod(node_selector={"zone": "b"}, affinity=required(term))
    assert reasons(run_filter(NodeAffinity(), p, ni)) == [AFF_ERR]


# --- NodePorts ----------------------------------------------------------------------------

PORT_ERR = "node(s) didn't have free ports for the requested pod ports"


def test_host_port_conflict():
    ni = info(node("n1"), pod("a", host_port=8080))
    assert reasons(run_filter(NodePorts(), pod(host_port=8080), ni)) == [PORT_ERR]
    assert run_filter(NodePorts(), pod(host_port=8081), ni) is None
    assert run_filter(NodePorts(), pod(host_port=8080, protocol="UDP"), ni) is None


def test_host_port_addresses():
    specific = info(node("n1"), pod("a", host_port=80, host_ip="10.0.0.1"))
    assert run_filter(NodePorts(), pod(host_port=80, host_ip="10.0.0.2"), specific) is None
    assert run_filter(NodePorts(), pod(host_port=80, host_ip="10.0.0.1"), specific) is not None
    assert run_filter(NodePorts(), pod(host_port=80), specific) is not None  # 0.0.0.0
    wildcard = info(node("n1"), pod("a", host_port=80))
    assert run_filter(NodePorts(), pod(host_port=80, host_ip="10.0.0.9"), wildcard) is not None


# --- InterPodAntiAffinity -----------------------------------------------------------------

def anti(labels: dict, key: str = "kubernetes.io/hostname", **extra) -> dict:
    return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": labels}, "topologyKey": key, **extra}]}}


def test_incoming_anti_affinity():
    n1 = info(node("n1"), pod("a", labels={"app": "web"}))
    n2 = info(node("n2"))
    p = pod(labels={"app": "web"}, affinity=anti({"app": "web"}))
    assert reasons(run_filter(InterPodAntiAffinity(), p, n1, [n1, n2])) == [
        "node(s) didn't match pod anti-affinity rules"]
    assert run_filter(InterPodAntiAffinity(), p, n2, [n1, n2]) is None


def test_existing_pods_anti_affinity():
    n1 = info(node("n1"), pod("a", labels={"app": "db"}, affinity=anti({"app": "web"})))
    n2 = info(node("n2"))
    p = pod(labels={"app": "web"})
    assert reasons(run_filter(InterPodAntiAffinity(), p, n1, [n1, n2])) == [
        "node(s) didn't satisfy existing pods anti-affinity rules"]
    assert run_filter(InterPodAntiAffinity(), p, n2, [n1, n2]) is None
    assert run_filter(InterPodAntiAffinity(), pod(labels={"app": "x"}), n1, [n1, n2]) is None


def test_anti_affinity_is_namespaced_by_default():
    n1 = info(node("n1"), pod("a", ns="other", labels={"app": "web"}))
    p = pod(labels={"app": "web"}, affinity=anti({"app": "web"}))
    assert run_filter(InterPodAntiAffinity(), p, n1) is None
    p = pod(labels={"app": "web"}, affinity=anti({"app": "web"}, namespaces=["other"]))
    assert run_filter(InterPodAntiAffinity(), p, n1) is not None
    p = pod(labels={"app": "web"}, affinity=anti({"app": "web"}, namespaceSelector={}))
    assert run_filter(InterPodAntiAffinity(), p, n1) is not None


def test_anti_affinity_by_zone_covers_every_node_of_the_zone():
    n1 = info(node("n1", labels={"zone": "a"}), pod("a", labels={"app": "web"}))
    n2 = info(node("n2", labels={"zone": "a"}))
    n3 = info(node("n3", labels={"zone": "b"}))
    p = pod(labels={"app": "web"}, affinity=anti({"app": "web"}, key="zone"))
    nodes = [n1, n2, n3]
    assert run_filter(InterPodAntiAffinity(), p, n2, nodes) is not None
    assert run_filter(InterPodAntiAffinity(), p, n3, nodes) is None


# --- scoring ------------------------------------------------------------------------------

def test_least_allocated_prefers_emptier_nodes():
    p = PodInfo.of(pod(cpu="1", memory="1Gi"))
    empty = info(node("a", cpu="4", memory="4Gi"))
    busy = info(node("b", cpu="4", memory="4Gi"), pod("x", cpu="2", memory="2Gi"))
    assert least_allocated_score(p, empty) == 75
    assert least_allocated_score(p, busy) == 25
    # best-effort pods count as 100m / 200Mi so they still spread
    be = PodInfo.of(pod())
    assert least_allocated_score(be, empty) > least_allocated_score(be, busy)


def test_owner_spread_normalizes_fewer_to_higher():
    assert normalize_spread([0, 0]) == [100, 100]
    assert normalize_spread([2, 1, 0]) == [0, 50, 100]
    p = PodInfo.of(pod(owner="rs"))
    ni = info(node("a"), pod("x", owner="rs"), pod("y", owner="rs"), pod("z", owner="other"))
    assert OwnerSpread().score({}, p, ni) == 2


def test_select_host_breaks_ties_randomly_and_reproducibly():
    scores = [("a", 10), ("b", 30), ("c", 30), ("d", 5)]
    picks = {select_host(scores, random.Random(s)) for s in range(50)}
    assert picks == {"b", "c"}
    assert select_host(scores, random.Random(7)) == select_host(scores, random.Random(7))


def test_framework_picks_the_node_with_fewest_replicas():
    fw = default_framework(random.Random(1))
    a = info(node("a"), pod("x", owner="rs"))
    b = info(node("b"))
    result = fw.schedule(PodInfo.of(pod(owner="rs")), Snapshot.of([a, b]))
    assert result.node == "b"


def test_weighted_sum_of_scores():
    class Const:
        def __init__(self, name, values):
            self.name, self.values = name, values

        def score(self, state, pod, node):
            return self.values[node.name]

    fw = Framework([], [(Const("one", {"a": 100, "b": 0}), 1),
                        (Const("two", {"a": 0, "b": 60}), 2)], random.Random(0))
    nodes = [info(node("a")), info(node("b"))]
    assert fw.prioritize({}, PodInfo.of(pod()), nodes) == [("a", 100), ("b", 120)]
    assert fw.schedule(PodInfo.of(pod()), Snapshot.of(nodes)).node == "b"
