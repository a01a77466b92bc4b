"""The scheduler against the real API server, as ``system:kube-scheduler``, over hollow
nodes (Node objects with no kubelet behind them).

Each test runs its own scheduler in-process, limited to the test's namespace so that pods
other tests left pending elsewhere in the shared cluster are never bound to these nodes, and
deletes the nodes and pods it created (bound pods with grace 0: no kubelet confirms them)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid

import pytest

from cluster import eventually, start_apiserver, start_etcd, stop_process

from minik8s.api.errors import NotFound
from minik8s.client import Client
from scheduler.main import LEASE_NAME, LEASE_NAMESPACE, build

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def hollow_node(name: str, cpu: str = "2", memory: str = "4Gi", pods: str = "110", *,
                labels: dict | None = None, taints: list | None = None,
                unschedulable: bool = False) -> dict:
    n = {"apiVersion": "v1", "kind": "Node",
         "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                               "kubernetes.io/os": "linux", **(labels or {})}},
         "spec": {},
         "status": {"capacity": {"cpu": cpu, "memory": memory, "pods": pods},
                    "allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
                    "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                    "message": "hollow node"}]}}
    if taints:
        n["spec"]["taints"] = taints
    if unschedulable:
        n["spec"]["unschedulable"] = True
    return n


def make_pod(name: str, *, cpu: str | None = None, labels: dict | None = None,
             host_port: int | None = None, node_selector: dict | None = None,
             tolerations: list | None = None, affinity: dict | None = None) -> dict:
    c: dict = {"name": "c", "image": "busybox:1"}
    if cpu:
        c["resources"] = {"requests": {"cpu": cpu}}
    if host_port:
        c["ports"] = [{"containerPort": 80, "hostPort": host_port}]
    spec: dict = {"containers": [c]}
    if node_selector:
        spec["nodeSelector"] = node_selector
    if tolerations:
        spec["tolerations"] = tolerations
    if affinity:
        spec["affinity"] = affinity
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {}}, "spec": spec}


class Env:
    def __init__(self, apiserver, client: Client, ns: str):
        self.apiserver = apiserver
        self.client = client
        self.ns = ns
        self.prefix = f"hollow-{uuid.uuid4().hex[:6]}"
        self.nodes: list[str] = []
        self.runs: list[tuple[asyncio.Task, object]] = []
        self.clients: list[Client] = []
        self.kubeconfig = apiserver.kubeconfig_for("scheduler", "system:kube-scheduler")

    def scheduler_client(self) -> Client:
        c = Client.from_kubeconfig(str(self.kubeconfig))
        self.clients.append(c)
        return c

    async def add_node(self, suffix: str, **kw) -> str:
        name = f"{self.prefix}-{suffix}"
        await self.client.create("nodes", hollow_node(name, **kw))
        self.nodes.append(name)
        return name

    def start(self, **kw):
        """A scheduler in-process; (manager, scheduler)."""
        kw.setdefault("namespaces", [self.ns])
        kw.setdefault("seed", 1)
        manager, sched = build(self.scheduler_client(), **kw)
        task = asyncio.create_task(manager.start())
        self.runs.append((task, sched))
        return manager, sched, task

    async def create(self, pod: dict) -> dict:
        return await self.client.create("pods", pod, self.ns)

    async def wait_bound(self, name: str, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            p = await self.client.get("pods", name, self.ns)
            if p["spec"].get("nodeName"):
                return p["spec"]["nodeName"]
            await asyncio.sleep(0.05)
        raise AssertionError(f"pod {name} was not bound within {timeout}s")

    async def node_of(self, name: str) -> str | None:
        return (await self.client.get("pods", name, self.ns))["spec"].get("nodeName")

    async def events(self, pod: str, reason: str) -> list[dict]:
        evs = await self.client.list("events", self.ns)
        return [e for e in evs["items"] if e["involvedObject"].get("name") == pod
                and e.get("reason") == reason]

    async def wait_event(self, pod: str, reason: str, timeout: float = 15) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = await self.events(pod, reason)
            if found:
                return found[-1]
            await asyncio.sleep(0.1)
        raise AssertionError(f"no {reason} event for {pod} within {timeout}s")

    async def cleanup(self) -> None:
        for task, _ in self.runs:
            task.cancel()
        await asyncio.gather(*(t for t, _ in self.runs), return_exceptions=True)
        pods = await self.client.list("pods", self.ns)
        for p in pods["items"]:
            with contextlib.suppress(NotFound):
                await self.client.delete("pods", p["metadata"]["name"], self.ns,
                                         grace_period_seconds=0)
        for name in self.nodes:
            with contextlib.suppress(NotFound):
                await self.client.delete("nodes", name)
        for c in self.clients:
            await c.aclose()


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory):
    """A cluster of this module's own: the scheduler sees every Node, so Nodes other
    tests leave in the shared server would change where pods go."""
    base = tmp_path_factory.mktemp("scheduler-cluster")
    etcd = start_etcd(base)
    srv = start_apiserver(base, etcd, "--compaction-interval", "3600")
    yield srv
    stop_process(srv.proc)
    stop_process(etcd.proc)


@pytest.fixture
async def env(apiserver, client, ns):
    e = Env(apiserver, client, ns)
    try:
        yield e
    finally:
        await e.cleanup()


async def three_nodes(env: Env, **kw) -> list[str]:
    return [await env.add_node(s, **kw) for s in ("a", "b", "c")]


async def test_pods_are_bound_to_fitting_nodes(env):
    nodes = await three_nodes(env, cpu="2")
    env.start()
    for i in range(6):
        await env.create(make_pod(f"web-{i}", cpu="600m"))
    placed = [await env.wait_bound(f"web-{i}") for i in range(6)]
    assert set(placed) <= set(nodes)
    for n in nodes:  # 3 x 600m fit in 2 CPUs, so least-allocated spreads them 2/2/2
        assert placed.count(n) == 2
    ev = await env.wait_event("web-0", "Scheduled")
    assert ev["type"] == "Normal"
    assert ev["message"] == f"Successfully assigned {env.ns}/web-0 to {placed[0]}"
    pod = await env.client.get("pods", "web-0", env.ns)
    cond = [c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert cond and cond[0]["status"] == "True"


async def test_pod_too_big_stays_pending_with_a_reason_then_fits_a_new_node(env):
    await three_nodes(env, cpu="2")
    env.start()
    await env.create(make_pod("huge", cpu="16"))
    ev = await env.wait_event("huge", "FailedScheduling")
    assert ev["type"] == "Warning"
    assert re.fullmatch(r"0/\d+ nodes are available: (.*, )?3 Insufficient cpu(, .*)?\.",
                        ev["message"]), ev["message"]
    deadline = time.monotonic() + 10
    while True:
        pod = await env.client.get("pods", "huge", env.ns)
        cond = [c for c in (pod.get("status") or {}).get("conditions") or []
                if c["type"] == "PodScheduled"]
        if cond or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert cond[0]["status"] == "False" and cond[0]["reason"] == "Unschedulable"
    assert "Insufficient cpu" in cond[0]["message"]
    assert not pod["spec"].get("nodeName")
    # a node that fits joins: the pod leaves the unschedulable set and is bound to it
    big = await env.add_node("big", cpu="32")
    assert await env.wait_bound("huge") == big


async def test_node_selector(env):
    await env.add_node("a")
    b = await env.add_node("b", labels={"disk": "ssd"})
    await env.add_node("c")
    env.start()
    for i in range(3):
        await env.create(make_pod(f"db-{i}", node_selector={"disk": "ssd"}))
    assert {await env.wait_bound(f"db-{i}") for i in range(3)} == {b}
    await env.create(make_pod("nowhere", node_selector={"disk": "nvme"}))
    ev = await env.wait_event("nowhere", "FailedScheduling")
    assert "3 node(s) didn't match Pod's node affinity/selector" in ev["message"]


async def test_taints_and_tolerations(env):
    taint = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    plain = await env.add_node("plain")
    gpu1 = await env.add_node("gpu1", taints=[taint], labels={"gpu": "yes"})
    await env.add_node("gpu2", taints=[taint], labels={"gpu": "yes"})
    env.start()
    for i in range(4):
        await env.create(make_pod(f"plain-{i}"))
    assert {await env.wait_bound(f"plain-{i}") for i in range(4)} == {plain}
    tol = [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]
    await env.create(make_pod("trainer", tolerations=tol, node_selector={"gpu": "yes"}))
    assert (await env.wait_bound("trainer")).startswith(gpu1[:-1])
    await env.create(make_pod("intruder", node_selector={"gpu": "yes"}))
    ev = await env.wait_event("intruder", "FailedScheduling")
    assert "2 node(s) had untolerated taint {dedicated: gpu}" in ev["message"]


async def test_host_port_conflicts(env):
    nodes = await three_nodes(env)
    env.start()
    for i in range(4):
        await env.create(make_pod(f"proxy-{i}", host_port=8080))
    placed = []
    for i in range(4):
        with contextlib.suppress(AssertionError):
            placed.append(await env.wait_bound(f"proxy-{i}", timeout=5 if placed else 15))
    assert sorted(placed) == sorted(nodes)  # one per node, the fourth has nowhere to go
    pending = [f"proxy-{i}" for i in range(4) if not await env.node_of(f"proxy-{i}")]
    assert len(pending) == 1
    ev = await env.wait_event(pending[0], "FailedScheduling")
    assert "3 node(s) didn't have free ports for the requested pod ports" in ev["message"]


async def test_anti_affinity_spreads_replicas(env):
    nodes = await three_nodes(env)
    env.start()
    aff = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "cache"}},
         "topologyKey": "kubernetes.io/hostname"}]}}
    for i in range(4):
        await env.create(make_pod(f"cache-{i}", labels={"app": "cache"}, affinity=aff))
    placed = []
    for i in range(4):
        with contextlib.suppress(AssertionError):
            placed.append(await env.wait_bound(f"cache-{i}", timeout=5 if len(placed) >= 3 else 15))
    assert sorted(placed) == sorted(nodes)
    pending = [f"cache-{i}" for i in range(4) if not await env.node_of(f"cache-{i}")]
    ev = await env.wait_event(pending[0], "FailedScheduling")
    assert "3 node(s) didn't match pod anti-affinity rules" in ev["message"]


async def test_cordoned_node_gets_nothing(env):
    a = await env.add_node("a")
    cordoned = await env.add_node("b", unschedulable=True)
    c = await env.add_node("c")
    env.start()
    for i in range(6):
        await env.create(make_pod(f"w-{i}"))
    placed = [await env.wait_bound(f"w-{i}") for i in range(6)]
    assert cordoned not in placed and set(placed) == {a, c}


async def test_deleted_pod_frees_room(env):
    only = await env.add_node("a", cpu="1")
    env.start()
    await env.create(make_pod("first", cpu="800m"))
    assert await env.wait_bound("first") == only
    await env.create(make_pod("second", cpu="800m"))
    await env.wait_event("second", "FailedScheduling")
    await env.client.delete("pods", "first", env.ns, grace_period_seconds=0)
    assert await env.wait_bound("second") == only


async def test_leader_election_only_the_leader_binds(env):
    await three_nodes(env)
    client = env.scheduler_client()
    with contextlib.suppress(NotFound):  # a lease left by an earlier run would delay us
        await env.client.delete("leases.coordination.k8s.io", LEASE_NAME, LEASE_NAMESPACE)
    m1, s1, t1 = env.start(leader_elect=True, lease_duration=3, identity="sched-1")
    m2, s2, t2 = env.start(leader_elect=True, lease_duration=3, identity="sched-2")
    for i in range(6):
        await env.create(make_pod(f"le-{i}"))
    for i in range(6):
        await env.wait_bound(f"le-{i}")

    async def counted(n: int) -> bool:  # a binding shows before its bind call returns
        return s1.bound + s2.bound >= n
    await eventually(lambda: counted(6), timeout=5, message="bindings counted")
    assert sorted([s1.bound, s2.bound]) == [0, 6]
    lease = await client.get("leases.coordination.k8s.io", LEASE_NAME, LEASE_NAMESPACE)
    leader, standby, leader_task = (s1, s2, t1) if s1.bound else (s2, s1, t2)
    assert lease["spec"]["holderIdentity"] == ("sched-1" if leader is s1 else "sched-2")
    # the leader goes away (releasing its lease): the standby takes over and binds
    leader_task.cancel()
    await asyncio.gather(leader_task, return_exceptions=True)
    await env.create(make_pod("after"))
    await env.wait_bound("after", timeout=20)
    await eventually(lambda: counted(7), timeout=5, message="the standby's binding counted")
    assert standby.bound == 1


async def test_scheduler_command_binds_and_stops_on_sigterm(env):
    node = await env.add_node("a")
    log = open(os.path.join(os.path.dirname(str(env.kubeconfig)), f"scheduler-{env.ns}.log"), "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "minik8s.cli.main", "scheduler", "--kubeconfig",
         str(env.kubeconfig), "--leader-elect", "--lease-duration", "3",
         "--namespace", env.ns],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "NO_PROXY": "127.0.0.1,localhost"})
    try:
        await env.create(make_pod("cli"))
        assert await env.wait_bound("cli", timeout=30) == node
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(proc.wait, 15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        log.close()
    assert code == 0
