"""Self-healing on real Docker: two in-process kubelets (``--network none``), the scheduler
and the controller-manager (replicaset, statefulset, nodelifecycle with a 5 s grace period
and 2 s default eviction) against an API server of this module's own (the node lifecycle
controller acts on every Node: stale Nodes of other modules would otherwise take pods).

One kubelet stops: its node turns Unknown and tainted, its ReplicaSet pods are evicted and
replaced on the other node, and its StatefulSet member is *not* replaced while the node is
away (its name is still taken). The kubelet comes back: the taints go, the evicted pods'
containers are removed (never two copies), and the StatefulSet member is recreated on the
same node, where its claim's Docker volume lives."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import uuid

import pytest

from cluster import start_apiserver, start_etcd, stop_process
from controller.manager import ControllerManagerConfig
from controller.manager import build as build_controller_manager
from e2e_helpers import BUSYBOX, KubeletHandle, remove_node_containers, wait_for
from kubelet.runtime.base import LABEL_POD_UID
from minik8s.api.errors import NotFound
from minik8s.client import Client
from scheduler.main import build as build_scheduler

pytestmark = pytest.mark.e2e

UNREACHABLE = "node.kubernetes.io/unreachable"


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory):
    base = tmp_path_factory.mktemp("self-healing-cluster")
    etcd = start_etcd(base)
    srv = start_apiserver(base, etcd, "--compaction-interval", "3600")
    yield srv
    stop_process(srv.proc)
    stop_process(etcd.proc)


@contextlib.asynccontextmanager
async def control_plane(apiserver):
    clients, tasks = [], []
    config = ControllerManagerConfig(node_monitor_grace_period=5.0,
                                     default_eviction_seconds=2.0)
    for name, user, build in (
            ("sched-heal", "system:kube-scheduler", lambda c: build_scheduler(c)[0]),
            ("cm-heal", "system:kube-controller-manager",
             lambda c: build_controller_manager(
                 c, controllers=["replicaset", "statefulset", "nodelifecycle"],
                 config=config)[0])):
        client = Client.from_kubeconfig(str(apiserver.kubeconfig_for(name, user)))
        clients.append(client)
        tasks.append(asyncio.get_running_loop().create_task(build(client).start()))
    try:
        yield
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for c in clients:
            await c.aclose()


def _ready(pod) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _remove_volume(name: str) -> None:
    subprocess.run(["docker", "volume", "rm", "-f", name], capture_output=True, timeout=60)


async def test_lost_node_pods_replaced_and_never_duplicated(apiserver, busybox_image,
                                                             tmp_path_factory):
    suffix = uuid.uuid4().hex[:6]
    a = KubeletHandle(apiserver, f"heal-a-{suffix}", tmp_path_factory.mktemp("heal-a"))
    b = KubeletHandle(apiserver, f"heal-b-{suffix}", tmp_path_factory.mktemp("heal-b"))
    client = apiserver.client()
    ns = f"heal-{suffix}"
    volume = f"minik8s-pvc-{ns}-data-db-0"
    try:
        await client.create("namespaces", {"metadata": {"name": ns}})
        await a.start()
        async with control_plane(apiserver):
            await _run(client, ns, a, b)
    finally:
        for k in (a, b):
            await k.stop()
            k.runtime.close()
            await asyncio.to_thread(remove_node_containers, k.name)
        await asyncio.to_thread(_remove_volume, volume)
        await client.aclose()


async def _run(client, ns: str, a: KubeletHandle, b: KubeletHandle) -> None:
    spec = {"terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": BUSYBOX, "command": ["sleep", "3600"],
                            "volumeMounts": []}]}
    await client.create("replicasets", {
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": spec}}}, ns)
    sts_spec = {**spec, "containers": [{**spec["containers"][0], "volumeMounts": [
        {"name": "data", "mountPath": "/data"}]}]}
    await client.create("statefulsets", {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
        "spec": {"replicas": 1, "serviceName": "db",
                 "selector": {"matchLabels": {"app": "db"}},
                 "template": {"metadata": {"labels": {"app": "db"}}, "spec": sts_spec},
                 "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                     "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}}]}}, ns)

    async def pods(selector):
        return (await client.list("pods", ns, label_selector=selector)).get("items") or []

    async def all_ready(selector, count):
        live = [p for p in await pods(selector) if not p["metadata"].get("deletionTimestamp")]
        return live if len(live) == count and all(_ready(p) for p in live) else None

    # everything starts on a (the only node), then b joins
    first = await wait_for(lambda: all_ready("app=web", 2), 120, "2 web pods ready on a")
    db0 = (await wait_for(lambda: all_ready("app=db", 1), 120, "db-0 ready on a"))[0]
    assert {p["spec"]["nodeName"] for p in first} == {a.name} == {db0["spec"]["nodeName"]}
    claim = await client.get("persistentvolumeclaims", "data-db-0", ns)
    assert claim["metadata"]["annotations"]["minik8s.io/node"] == a.name
    assert claim["status"]["phase"] == "Bound"
    await b.start()

    # a's kubelet stops: Unknown + tainted within the grace period
    await a.stop()

    async def lost():
        n = await client.get("nodes", a.name)
        ready = next(c for c in n["status"]["conditions"] if c["type"] == "Ready")
        taints = {(t["key"], t["effect"]) for t in n["spec"].get("taints") or []}
        return ready["status"] == "Unknown" and (UNREACHABLE, "NoExecute") in taints
    await wait_for(lost, 30, "node a Unknown and tainted")

    # its web pods are evicted and replaced on b
    async def replaced():
        live = await all_ready("app=web", 2)
        return live if live and {p["spec"]["nodeName"] for p in live} == {b.name} else None
    await wait_for(replaced, 120, "web pods running on b")
    # the StatefulSet member is not duplicated while a is away
    members = await pods("app=db")
    assert [p["metadata"]["name"] for p in members] == ["db-0"]
    assert members[0]["spec"]["nodeName"] == a.name
    assert members[0]["metadata"].get("deletionTimestamp")  # evicted, waiting for a

    # a comes back: taints removed, evicted pods' containers gone, db-0 back on a
    await a.start()

    async def back():
        n = await client.get("nodes", a.name)
        return not (n["spec"].get("taints") or [])
    await wait_for(back, 30, "taints removed from a")
    old_uids = {p["metadata"]["uid"] for p in first} | {db0["metadata"]["uid"]}

    async def no_old_containers():
        left = [c for c in await a.containers() if c.labels.get(LABEL_POD_UID) in old_uids]
        return not left
    await wait_for(no_old_containers, 60, "containers of evicted pods removed from a")
    db0_new = (await wait_for(lambda: all_ready("app=db", 1), 120, "db-0 recreated"))[0]
    assert db0_new["metadata"]["uid"] != db0["metadata"]["uid"]
    assert db0_new["spec"]["nodeName"] == a.name  # where its volume lives
    # never two copies: each live pod has containers on exactly one node
    for p in await pods("app in (web,db)"):
        uid = p["metadata"]["uid"]
        on_a = [c for c in await a.containers() if c.labels.get(LABEL_POD_UID) == uid]
        on_b = [c for c in await b.containers() if c.labels.get(LABEL_POD_UID) == uid]
        assert not (on_a and on_b), p["metadata"]["name"]
    with contextlib.suppress(NotFound):
        await client.delete("statefulsets", "db", ns)
