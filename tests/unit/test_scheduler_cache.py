"""The scheduler cache (assume / confirm / forget / expire), snapshots, and the
FailedScheduling message as Kubernetes words it."""

from __future__ import annotations

import random

import pytest

from fakes import FakeClock
from scheduler.cache import Cache, Snapshot
from scheduler.framework import (NO_NODES_AVAILABLE, FitError, Status, default_framework,
                                 fit_error_message)
from scheduler.nodeinfo import PodInfo
from test_scheduler_plugins import CONTROL_PLANE, node, pod


def bound(p: dict, node_name: str) -> dict:
    return {**p, "spec": {**p["spec"], "nodeName": node_name}}


def test_assumed_pod_counts_on_its_node_at_once():
    c = Cache(clock=FakeClock())
    c.add_node(node("n1", cpu="2"))
    p = PodInfo.of(pod("a", cpu="1500m"))
    before = c.snapshot()
    c.assume_pod(p, "n1")
    after = c.snapshot()
    assert after.get("n1").requested["cpu"] == 1500
    assert before.get("n1").requested.get("cpu", 0) == 0  # snapshots never change
    assert c.is_assumed(p.key)
    fw = default_framework(random.Random(0))
    with pytest.raises(FitError) as err:
        fw.schedule(PodInfo.of(pod("b", cpu="1")), after)
    assert str(err.value) == "0/1 nodes are available: 1 Insufficient cpu."


def test_confirm_replaces_the_assumption():
    c = Cache(clock=FakeClock())
    c.add_node(node("n1"))
    raw = pod("a", cpu="1")
    c.assume_pod(PodInfo.of(raw), "n1")
    c.add_pod(bound(raw, "n1"))
    assert not c.is_assumed(PodInfo.of(raw).key)
    assert c.snapshot().get("n1").requested["cpu"] == 1000
    assert len(c.snapshot().get("n1").pods) == 1


def test_confirm_on_another_node_moves_the_pod():
    c = Cache(clock=FakeClock())
    c.add_node(node("n1"))
    c.add_node(node("n2"))
    raw = pod("a", cpu="1")
    c.assume_pod(PodInfo.of(raw), "n1")
    c.add_pod(bound(raw, "n2"))
    assert not c.snapshot().get("n1").pods
    assert c.snapshot().get("n2").requested["cpu"] == 1000


def test_forget_undoes_an_assumption():
    c = Cache(clock=FakeClock())
    c.add_node(node("n1"))
    p = PodInfo.of(pod("a", cpu="1", host_port=80))
    c.assume_pod(p, "n1")
    assert c.forget_pod(p.key)
    ni = c.snapshot().get("n1")
    assert not ni.pods and not ni.requested.get("cpu") and not ni.used_ports
    assert not c.forget_pod(p.key)


def test_confirmed_pods_are_not_forgotten():
    c = Cache(clock=FakeClock())
    c.add_node(node("n1"))
    raw = pod("a")
    c.assume_pod(PodInfo.of(raw), "n1")
    c.add_pod(bound(raw, "n1"))
    assert not c.forget_pod(PodInfo.of(raw).key)
    assert len(c.snapshot().get("n1").pods) == 1


def test_assumed_pods_expire_only_after_their_binding_finished():
    clock = FakeClock()
    c = Cache(clock=clock, ttl=30)
    c.add_node(node("n1"))
    p = PodInfo.of(pod("a", cpu="1"))
    c.assume_pod(p, "n1")
    clock.advance(100)
    assert c.cleanup_expired() == []  # bind still in flight
    c.finish_binding(p.key)
    clock.advance(29)
    assert c.cleanup_expired() == []
    clock.advance(2)
    assert c.cleanup_expired() == [p.key]
    assert not c.snapshot().get("n1").pods


def test_removed_node_keeps_its_pods_counted_until_they_go():
    c = Cache(clock=FakeClock())
    c.add_node(node("n1"))
    raw = bound(pod("a"), "n1")
    c.add_pod(raw)
    c.remove_node("n1")
    assert len(c.snapshot()) == 0
    assert c.node_info("n1") is not None
    c.add_node(node("n1"))
    assert len(c.snapshot().get("n1").pods) == 1
    c.remove_node("n1")
    c.remove_pod(raw)
    assert c.node_info("n1") is None


def test_terminal_pods_free_their_node():
    c = Cache(clock=FakeClock())
    c.add_node(node("n1"))
    raw = bound(pod("a", cpu="1"), "n1")
    c.add_pod(raw)
    c.update_pod(raw, {**raw, "status": {"phase": "Succeeded"}})
    assert not c.snapshot().get("n1").pods


def test_snapshot_is_reused_until_something_changes():
    c = Cache(clock=FakeClock())
    c.add_node(node("n1"))
    s1 = c.snapshot()
    assert c.snapshot() is s1
    c.add_node(node("n2"))
    assert c.snapshot() is not s1 and len(c.snapshot()) == 2


def test_burst_does_not_overcommit():
    c = Cache(clock=FakeClock())
    for i in range(3):
        c.add_node(node(f"n{i}", cpu="2"))
    fw = default_framework(random.Random(0))
    placed = []
    for i in range(7):
        p = PodInfo.of(pod(f"p{i}", cpu="1"))
        try:
            placed.append(fw.schedule(p, c.snapshot()).node)
        except FitError as err:
            assert i == 6
            assert str(err) == "0/3 nodes are available: 3 Insufficient cpu."
            continue
        c.assume_pod(p, placed[-1])
    assert sorted(placed) == ["n0", "n0", "n1", "n1", "n2", "n2"]


# --- the FailedScheduling message ---------------------------------------------------------

def test_message_counts_reasons_and_sorts_them_as_strings():
    statuses = [Status.unschedulable("Insufficient cpu"), Status.unschedulable("Insufficient cpu"),
                Status.unresolvable(
                    "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }")]
    assert fit_error_message(3, statuses) == (
        "0/3 nodes are available: 1 node(s) had untolerated taint "
        "{node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu.")


def test_message_counts_every_reason_of_a_node():
    statuses = [Status.unschedulable("Insufficient cpu", "Insufficient memory")] * 2 + [
        Status.unschedulable("node(s) didn't match Pod's node affinity/selector")]
    assert fit_error_message(3, statuses) == (
        "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
        "2 Insufficient cpu, 2 Insufficient memory.")


def test_framework_failure_message_end_to_end():
    nodes = [node("a", cpu="1"), node("b", cpu="1"), node("cp", cpu="8", taints=[CONTROL_PLANE])]
    fw = default_framework(random.Random(0))
    with pytest.raises(FitError) as err:
        fw.schedule(PodInfo.of(pod(cpu="2")), Snapshot.of(nodes_of(nodes)))
    assert err.value.message() == (
        "0/3 nodes are available: 1 node(s) had untolerated taint "
        "{node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu.")
    assert err.value.diagnosis.unschedulable_plugins == {"TaintToleration", "NodeResourcesFit"}


def test_no_nodes_at_all():
    fw = default_framework(random.Random(0))
    with pytest.raises(FitError) as err:
        fw.schedule(PodInfo.of(pod()), Snapshot.of([]))
    assert str(err.value) == NO_NODES_AVAILABLE


def nodes_of(nodes: list[dict]):
    c = Cache(clock=FakeClock())
    for n in nodes:
        c.add_node(n)
    return c.snapshot().nodes
