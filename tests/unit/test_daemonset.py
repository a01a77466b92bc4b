"""DaemonSet: placement per node (selector, affinity, taints vs tolerations), rolling update
arithmetic, status, and the controller over a FakeClient following nodes."""

import asyncio
import contextlib

from controller.daemonset import (REVISION_LABEL, DaemonSetController, compute_status, plan,
                                  pod_spec_for_node, should_run, target_node)
from fakes import FakeClient, eventually, settle
from minik8s.cache import InformerFactory


def node(name, labels=None, taints=None):
    return {"metadata": {"name": name, "labels": labels or {}},
            "spec": {"taints": taints or []}}


def ds(strategy=None, **pod_spec):
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "default", "uid": "ds-uid",
                         "generation": 1},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "updateStrategy": strategy or {"type": "RollingUpdate",
                                                    "rollingUpdate": {"maxUnavailable": 1}},
                     "template": {"metadata": {"labels": {"app": "agent"}},
                                  "spec": {"containers": [{"name": "c", "image": "img:1"}],
                                           **pod_spec}}}}


def dpod(name, node_name, hash_="h1", ready=True, bound=True):
    spec = pod_spec_for_node({"containers": []}, node_name)
    if bound:
        spec["nodeName"] = node_name
    return {"metadata": {"name": name, "namespace": "default", "labels": {REVISION_LABEL: hash_},
                         "creationTimestamp": f"2024-01-01T00:00:0{name[-1]}Z"},
            "spec": spec, "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True" if ready else "False"}]}}


def test_node_selector_and_affinity():
    spec = {"nodeSelector": {"disk": "ssd"}}
    assert should_run(spec, node("a", {"disk": "ssd"}))
    assert not should_run(spec, node("b", {"disk": "hdd"}))
    aff = {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "zone", "operator": "In", "values": ["z1", "z2"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["c"]}]}]}}}}
    assert should_run(aff, node("a", {"zone": "z2"}))
    assert should_run(aff, node("c"))
    assert not should_run(aff, node("b", {"zone": "z3"}))


def test_taints_against_tolerations_with_daemon_defaults():
    plain = {}
    assert not should_run(plain, node("a", taints=[{"key": "gpu", "effect": "NoSchedule"}]))
    assert should_run(plain, node("a", taints=[{"key": "gpu", "effect": "PreferNoSchedule"}]))
    # daemon pods tolerate cordoned, not-ready and unreachable nodes
    for key, effect in (("node.kubernetes.io/unschedulable", "NoSchedule"),
                        ("node.kubernetes.io/unreachable", "NoExecute"),
                        ("node.kubernetes.io/not-ready", "NoExecute")):
        assert should_run(plain, node("a", taints=[{"key": key, "effect": effect}]))
    tolerant = {"tolerations": [{"key": "gpu", "operator": "Exists"}]}
    assert should_run(tolerant, node("a", taints=[{"key": "gpu", "effect": "NoSchedule"}]))


def test_the_control_plane_node_only_for_daemons_that_tolerate_it():
    # `minik8s init`'s master, as kubeadm's: daemon pods get no toleration for it by default
    key = "node-role.kubernetes.io/control-plane"
    master = node("m", {key: ""}, taints=[{"key": key, "effect": "NoSchedule"}])
    assert not should_run({}, master)
    assert should_run({"tolerations": [{"key": key, "operator": "Exists",
                                        "effect": "NoSchedule"}]}, master)
    assert plan(ds(), [master, node("w")], [], "h1") == (["w"], [])


def test_pod_is_pinned_through_node_affinity_not_node_name():
    spec = pod_spec_for_node({"containers": [], "nodeSelector": {"x": "y"}}, "n1")
    assert "nodeName" not in spec
    assert target_node({"spec": spec}) == "n1"
    assert spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] \
        == {"nodeSelectorTerms": [{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}
    assert any(t["key"] == "node.kubernetes.io/unreachable" for t in spec["tolerations"])


def test_plan_one_pod_per_eligible_node():
    nodes = [node("a"), node("b"), node("c", taints=[{"key": "gpu", "effect": "NoSchedule"}])]
    create, delete = plan(ds(), nodes, [dpod("p1", "a")], "h1")
    assert create == ["b"] and delete == []
    # an extra pod on a, a pod on an ineligible node, a pod for a node that is gone
    pods = [dpod("p1", "a"), dpod("p2", "a"), dpod("p3", "c"), dpod("p4", "gone", bound=False)]
    create, delete = plan(ds(), nodes, pods, "h1")
    assert create == ["b"]
    assert sorted(p["metadata"]["name"] for p in delete) == ["p2", "p3", "p4"]


def test_rolling_update_respects_max_unavailable():
    nodes = [node(n) for n in "abcd"]
    pods = [dpod(f"p{i}", n, hash_="old") for i, n in enumerate("abcd")]
    create, delete = plan(ds(), nodes, pods, "new")
    assert create == [] and len(delete) == 1
    # one node is already unavailable (its new pod is not ready): nothing more goes
    pods[0] = dpod("p0", "a", hash_="new", ready=False)
    assert plan(ds(), nodes, pods, "new")[1] == []
    # an old pod that is not available anyway is replaced regardless of the budget
    pods[1] = dpod("p1", "b", hash_="old", ready=False)
    assert [p["metadata"]["name"] for p in plan(ds(), nodes, pods, "new")[1]] == ["p1"]
    two = ds(strategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "50%"}})
    pods = [dpod(f"p{i}", n, hash_="old") for i, n in enumerate("abcd")]
    assert len(plan(two, nodes, pods, "new")[1]) == 2
    assert plan(ds(strategy={"type": "OnDelete"}), nodes, pods, "new") == ([], [])


def test_status():
    nodes = [node("a"), node("b"), node("c", taints=[{"key": "gpu", "effect": "NoSchedule"}])]
    pods = [dpod("p1", "a"), dpod("p2", "c", hash_="old", ready=False)]
    st = compute_status(ds(), nodes, pods, "h1")
    assert {k: st[k] for k in ("desiredNumberScheduled", "currentNumberScheduled",
                               "numberMisscheduled", "numberReady", "numberAvailable",
                               "updatedNumberScheduled", "observedGeneration")} == {
        "desiredNumberScheduled": 2, "currentNumberScheduled": 1, "numberMisscheduled": 1,
        "numberReady": 1, "numberAvailable": 1, "updatedNumberScheduled": 1,
        "observedGeneration": 1}


# --- the controller over a fake API -----------------------------------------------------------

@contextlib.asynccontextmanager
async def running(client):
    informers = InformerFactory(client)
    ctl = DaemonSetController(client, informers)
    tasks = [asyncio.create_task(informers.start())]
    await informers.wait_synced(2)
    tasks.append(asyncio.create_task(ctl.start()))
    try:
        yield ctl
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def pods_for(client):
    return sorted(target_node(p) for p in client.objects.get("pods", {}).values())


async def test_controller_follows_nodes_joining_and_leaving():
    client = FakeClient()
    client.seed("nodes", node("a"))
    client.seed("daemonsets", ds())
    async with running(client):
        await eventually(lambda: pods_for(client) == ["a"])
        client.seed("nodes", node("b"))
        await eventually(lambda: pods_for(client) == ["a", "b"])
        await settle(100)
        assert pods_for(client) == ["a", "b"]  # expectations: no duplicates
        await client.delete("nodes", "a")
        await eventually(lambda: pods_for(client) == ["b"])
        p = next(iter(client.objects["pods"].values()))
        assert p["metadata"]["labels"][REVISION_LABEL]
        assert client.objects.get("controllerrevisions.apps")
        st = client.stored("daemonsets", "agent", "default")["status"]
        assert st["desiredNumberScheduled"] == 1
