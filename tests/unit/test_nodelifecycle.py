"""Node lifecycle controller over a FakeClient and a FakeClock: the Lease state machine,
taints, and eviction timing with tolerations."""

import asyncio
import contextlib

import pytest

from controller.nodelifecycle import (MESSAGE_UNKNOWN, REASON_UNKNOWN, NodeLifecycleController,
                                      eviction_delay, lifecycle_taints, with_lifecycle_taints)
from fakes import FakeClient, FakeClock, advance, settle
from minik8s.api.defaults import DEFAULT_TOLERATION_SECONDS
from minik8s.cache import InformerFactory

UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
DEFAULT_TOLS = [{"key": k, "operator": "Exists", "effect": "NoExecute",
                 "tolerationSeconds": DEFAULT_TOLERATION_SECONDS}
                for k in (NOT_READY, UNREACHABLE)]


def node(name, ready="True", heartbeat="t0"):
    return {"metadata": {"name": name}, "spec": {}, "status": {"conditions": [
        {"type": "Ready", "status": ready, "reason": "KubeletReady",
         "lastHeartbeatTime": heartbeat}]}}


def lease(name, renew="r0"):
    return {"metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": name, "renewTime": renew}}


def pod(name, node_name, tolerations=None):
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node_name, "containers": [{"name": "c", "image": "i"}],
                     "tolerations": tolerations if tolerations is not None else DEFAULT_TOLS},
            "status": {"phase": "Running", "conditions": [{"type": "Ready",
                                                           "status": "True"}]}}


@contextlib.asynccontextmanager
async def running(client, clock, grace=40.0, default_eviction=None):
    informers = InformerFactory(client)
    ctl = NodeLifecycleController(client, informers, grace_period=grace,
                                  default_eviction_seconds=default_eviction, clock=clock)
    tasks = [asyncio.create_task(informers.start())]
    await informers.wait_synced(2)
    tasks.append(asyncio.create_task(ctl.start()))
    await settle()
    try:
        yield ctl
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def taints(client, name):
    return [(t["key"], t["effect"]) for t in
            (client.stored("nodes", name).get("spec") or {}).get("taints") or []]


def ready(client, name):
    return next(c for c in client.stored("nodes", name)["status"]["conditions"]
                if c["type"] == "Ready")


async def renew(client, name, n):
    current = client.stored("leases", name, "kube-node-lease")
    current["spec"]["renewTime"] = f"r{n}"
    await client.update("leases", current, "kube-node-lease")


# --- pure ------------------------------------------------------------------------------------

@pytest.mark.parametrize("tolerations, expected", [
    ([], 0.0),
    ([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}], None),
    ([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
       "tolerationSeconds": 30}], 30.0),
    ([{"operator": "Exists"}], None),
    ([{"key": UNREACHABLE, "operator": "Exists", "tolerationSeconds": 10},
      {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
       "tolerationSeconds": 20}], 10.0),
    ([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
       "tolerationSeconds": -5}], 0.0),
    ([{"key": NOT_READY, "operator": "Exists", "effect": "NoExecute"}], 0.0),
])
def test_eviction_delay(tolerations, expected):
    assert eviction_delay([{"key": UNREACHABLE, "effect": "NoExecute"},
                           {"key": UNREACHABLE, "effect": "NoSchedule"}],
                          tolerations) == expected


def test_default_tolerations_take_the_configured_seconds():
    taint = [{"key": UNREACHABLE, "effect": "NoExecute"}]
    assert eviction_delay(taint, DEFAULT_TOLS) == DEFAULT_TOLERATION_SECONDS
    assert eviction_delay(taint, DEFAULT_TOLS, default_seconds=5) == 5
    custom = [{**DEFAULT_TOLS[1], "tolerationSeconds": 77}]
    assert eviction_delay(taint, custom, default_seconds=5) == 77


def test_no_execute_free_node_never_evicts():
    assert eviction_delay([{"key": "x", "effect": "NoSchedule"}], []) is None


def test_lifecycle_taints_keep_time_added_and_other_taints():
    current = [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
               {"key": NOT_READY, "effect": "NoExecute", "timeAdded": "old"}]
    out = with_lifecycle_taints(current, lifecycle_taints("False"), "now")
    assert out[0]["key"] == "dedicated"
    assert {(t["key"], t["effect"], t.get("timeAdded")) for t in out[1:]} == {
        (NOT_READY, "NoExecute", "old"), (NOT_READY, "NoSchedule", "now")}
    assert with_lifecycle_taints(out, lifecycle_taints("True"), "now") == current[:1]
    assert [t["key"] for t in lifecycle_taints("Unknown")] == [UNREACHABLE, UNREACHABLE]


# --- the state machine -----------------------------------------------------------------------

async def test_node_renewing_its_lease_stays_ready():
    client, clock = FakeClient(), FakeClock()
    client.seed("nodes", node("a"))
    client.seed("leases", lease("a"))
    async with running(client, clock):
        for i in range(1, 10):
            await advance(clock, 10, step=1)
            await renew(client, "a", i)
            await settle()
        assert ready(client, "a")["status"] == "True"
        assert taints(client, "a") == []


async def test_silent_node_goes_unknown_after_grace_then_comes_back():
    client, clock = FakeClient(), FakeClock()
    client.seed("nodes", node("a"))
    client.seed("leases", lease("a"))
    async with running(client, clock):
        await advance(clock, 39, step=1)
        assert ready(client, "a")["status"] == "True"
        await advance(clock, 2, step=0.5)
        cond = ready(client, "a")
        assert (cond["status"], cond["reason"], cond["message"]) == (
            "Unknown", REASON_UNKNOWN, MESSAGE_UNKNOWN)
        assert set(taints(client, "a")) == {(UNREACHABLE, "NoSchedule"),
                                            (UNREACHABLE, "NoExecute")}
        # the kubelet returns: lease renewed, Ready posted again
        await renew(client, "a", 1)
        n = client.stored("nodes", "a")
        n["status"]["conditions"] = node("a", "True", "t1")["status"]["conditions"]
        await client.update("nodes", n)
        await advance(clock, 1, step=0.5)
        assert taints(client, "a") == []
        assert ready(client, "a")["status"] == "True"


async def test_not_ready_node_gets_the_not_ready_taint():
    client, clock = FakeClient(), FakeClock()
    client.seed("nodes", node("a", ready="False"))
    client.seed("leases", lease("a"))
    async with running(client, clock):
        await advance(clock, 1)
        assert set(taints(client, "a")) == {(NOT_READY, "NoSchedule"), (NOT_READY, "NoExecute")}
        assert ready(client, "a")["status"] == "False"


async def test_eviction_follows_tolerations():
    client, clock = FakeClient(), FakeClock()
    client.seed("nodes", node("a"))
    client.seed("nodes", node("b"))
    client.seed("leases", lease("a"))
    client.seed("leases", lease("b"))
    client.seed("pods", pod("intolerant", "a", tolerations=[]))
    client.seed("pods", pod("thirty", "a", tolerations=[
        {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 30}]))
    client.seed("pods", pod("defaulted", "a"))
    client.seed("pods", pod("forever", "a", tolerations=[{"operator": "Exists"}]))
    client.seed("pods", pod("elsewhere", "b", tolerations=[]))
    async with running(client, clock, default_eviction=60):
        for i in range(1, 5):  # b keeps renewing
            await advance(clock, 10.5, step=0.5)
            await renew(client, "b", i)
        # a went silent at t=0: Unknown and tainted at 40s; the intolerant pod goes at once
        assert client.stored("pods", "intolerant", "default") is None
        assert client.stored("pods", "thirty", "default") is not None
        for i in range(5, 8):
            await advance(clock, 10, step=0.5)
            await renew(client, "b", i)
        # 30s after the taint
        assert client.stored("pods", "thirty", "default") is None
        assert client.stored("pods", "defaulted", "default") is not None
        for i in range(8, 12):
            await advance(clock, 10, step=0.5)
            await renew(client, "b", i)
        # 60s (the configured default) after the taint
        assert client.stored("pods", "defaulted", "default") is None
        assert client.stored("pods", "forever", "default") is not None
        assert client.stored("pods", "elsewhere", "default") is not None
        # the node's pods were marked not ready when it went Unknown
        forever = client.stored("pods", "forever", "default")
        assert forever["status"]["conditions"][0]["status"] == "False"


async def test_pods_of_a_deleted_node_are_removed():
    client, clock = FakeClient(), FakeClock()
    client.seed("nodes", node("a"))
    client.seed("pods", pod("p", "a", tolerations=[{"operator": "Exists"}]))
    async with running(client, clock):
        await client.delete("nodes", "a")
        await advance(clock, 1)
        assert client.stored("pods", "p", "default") is None
