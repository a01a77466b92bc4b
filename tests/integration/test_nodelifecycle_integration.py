"""Node lifecycle, StatefulSet and DaemonSet controllers against the real API server, as
``system:kube-controller-manager``, over hollow nodes whose Leases the test renews or stops
renewing, with pod statuses patched by the test (no kubelet, no scheduler).

The module runs a cluster of its own: the node lifecycle controller acts on every Node, and
taints it would leave on Nodes of other tests would change where their pods go."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest

from cluster import start_apiserver, start_etcd, stop_process

from controller.manager import ControllerManagerConfig, build
from minik8s.api.errors import NotFound
from minik8s.client import Client
from minik8s.runtime.leaderelection import micro_time

UNREACHABLE = "node.kubernetes.io/unreachable"


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory):
    base = tmp_path_factory.mktemp("nodelifecycle-cluster")
    etcd = start_etcd(base)
    srv = start_apiserver(base, etcd, "--compaction-interval", "3600")
    yield srv
    stop_process(srv.proc)
    stop_process(etcd.proc)


@contextlib.asynccontextmanager
async def controllers(apiserver, names, **config):
    kubeconfig = apiserver.kubeconfig_for("cm-" + uuid.uuid4().hex[:6],
                                          "system:kube-controller-manager")
    client = Client.from_kubeconfig(str(kubeconfig))
    manager, _ = build(client, controllers=names,
                       config=ControllerManagerConfig(**config))
    task = asyncio.create_task(manager.start())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.aclose()


async def wait(pred, timeout=20.0, what="condition"):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await pred()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        await asyncio.sleep(0.1)


def hollow_node(name: str) -> dict:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {}, "status": {"conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady",
                 "lastHeartbeatTime": "2024-01-01T00:00:00Z"}]}}


async def renew(client, name: str) -> None:
    try:
        lease = await client.get("leases", name, "kube-node-lease")
        lease["spec"]["renewTime"] = micro_time()
        await client.update("leases", lease, "kube-node-lease")
    except NotFound:
        await client.create("leases", {"metadata": {"name": name}, "spec": {
            "holderIdentity": name, "leaseDurationSeconds": 40,
            "renewTime": micro_time()}}, "kube-node-lease")


@contextlib.asynccontextmanager
async def renewing(client, name: str, period: float = 0.3):
    async def loop():
        while True:
            await renew(client, name)
            await asyncio.sleep(period)
    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def ensure_lease_ns(client):
    with contextlib.suppress(Exception):
        await client.create("namespaces", {"metadata": {"name": "kube-node-lease"}})


def ready_of(node) -> str:
    return next(c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready")


def taint_keys(node) -> set:
    return {(t["key"], t["effect"]) for t in (node.get("spec") or {}).get("taints") or []}


async def set_running(client, ns, name, node=None):
    pod = await client.get("pods", name, ns)
    if node and not pod["spec"].get("nodeName"):
        await client.request(
            "POST", f"/api/v1/namespaces/{ns}/pods/{name}/binding",
            body={"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                  "target": {"apiVersion": "v1", "kind": "Node", "name": node}})
    await client.patch("pods", name, {"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True"}]}}, ns, subresource="status")


async def test_lost_node_is_tainted_its_pods_evicted_and_restored(apiserver, client, ns):
    await ensure_lease_ns(client)
    a, b = f"nl-a-{ns}", f"nl-b-{ns}"
    for n in (a, b):
        await client.create("nodes", hollow_node(n))
        await renew(client, n)
    tol = lambda s: [{"key": UNREACHABLE, "operator": "Exists",  # noqa: E731
                      "effect": "NoExecute", "tolerationSeconds": s}]
    for name, node, tols in (("gone-now", a, tol(0)), ("gone-later", a, tol(3)),
                             ("stays", a, [{"operator": "Exists"}]), ("other", b, tol(0))):
        await client.create("pods", {"metadata": {"name": name}, "spec": {
            "nodeName": node, "tolerations": tols,
            "containers": [{"name": "c", "image": "busybox:1"}]}}, ns)
    async with controllers(apiserver, ["nodelifecycle"], node_monitor_grace_period=1.5,
                           default_eviction_seconds=2.0), renewing(client, b):
        await asyncio.sleep(0.5)
        assert ready_of(await client.get("nodes", a)) == "True"

        async def lost():
            n = await client.get("nodes", a)
            return ready_of(n) == "Unknown" and (UNREACHABLE, "NoExecute") in taint_keys(n)
        await wait(lost, 10, "node a Unknown and tainted")
        node_a = await client.get("nodes", a)
        cond = next(c for c in node_a["status"]["conditions"] if c["type"] == "Ready")
        assert cond["reason"] == "NodeStatusUnknown"
        assert taint_keys(node_a) == {(UNREACHABLE, "NoExecute"), (UNREACHABLE, "NoSchedule")}

        # evicted = marked for deletion: nothing on a lost node confirms a graceful delete
        async def marked(name):
            p = await client.get("pods", name, ns)
            return bool(p["metadata"].get("deletionTimestamp"))
        await wait(lambda: marked("gone-now"), 5, "gone-now evicted")
        assert not await marked("gone-later")
        await wait(lambda: marked("gone-later"), 6, "gone-later evicted after 3s")
        assert not await marked("stays")
        assert not await marked("other")
        assert ready_of(await client.get("nodes", b)) == "True"

        # the node comes back
        await renew(client, a)
        node_a = await client.get("nodes", a)
        node_a["status"]["conditions"] = hollow_node(a)["status"]["conditions"]
        node_a["status"]["conditions"][0]["lastHeartbeatTime"] = "2024-01-01T00:01:00Z"
        await client.patch("nodes", a, {"status": node_a["status"]}, subresource="status")
        async with renewing(client, a):
            async def back():
                return not taint_keys(await client.get("nodes", a))
            await wait(back, 10, "taints removed")
    for n in (a, b):
        await client.delete("nodes", n)
    for name in ("gone-now", "gone-later", "stays", "other"):
        with contextlib.suppress(NotFound):
            await client.delete("pods", name, ns, grace_period_seconds=0)


async def test_pods_of_a_deleted_node_are_force_deleted(apiserver, client, ns):
    name = f"nl-del-{ns}"
    await client.create("nodes", hollow_node(name))
    await client.create("pods", {"metadata": {"name": "orphan"}, "spec": {
        "nodeName": name, "containers": [{"name": "c", "image": "busybox:1"}]}}, ns)
    async with controllers(apiserver, ["nodelifecycle"], node_monitor_grace_period=30):
        await asyncio.sleep(0.5)
        await client.delete("nodes", name)

        async def gone():
            try:
                await client.get("pods", "orphan", ns)
            except NotFound:
                return True
            return False
        await wait(gone, 10, "orphan pod removed")


def sts_manifest(replicas=2, **spec):
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
            "spec": {"replicas": replicas, "serviceName": "db",
                     "selector": {"matchLabels": {"app": "db"}},
                     "template": {"metadata": {"labels": {"app": "db"}}, "spec": {
                         "containers": [{"name": "c", "image": "busybox:1"}]}},
                     "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                         "accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": "1Gi"}}}}], **spec}}


async def pod_or_none(client, ns, name):
    try:
        return await client.get("pods", name, ns)
    except NotFound:
        return None


async def test_statefulset_orders_members_and_rolls_back_to_front(apiserver, client, ns):
    node = f"sts-{ns}"
    await client.create("nodes", hollow_node(node))
    await client.create("statefulsets", sts_manifest(), ns)
    async with controllers(apiserver, ["statefulset"]):
        p0 = await wait(lambda: pod_or_none(client, ns, "db-0"), 10, "db-0 created")
        assert p0["spec"]["hostname"] == "db-0" and p0["spec"]["subdomain"] == "db"
        pvc = await client.get("persistentvolumeclaims", "data-db-0", ns)
        assert pvc["status"]["phase"] == "Pending"
        await asyncio.sleep(0.5)
        assert await pod_or_none(client, ns, "db-1") is None  # OrderedReady
        await set_running(client, ns, "db-0", node)
        await wait(lambda: pod_or_none(client, ns, "db-1"), 10, "db-1 created")
        await set_running(client, ns, "db-1", node)

        async def status(key, value):
            st = (await client.get("statefulsets", "db", ns)).get("status") or {}
            return st.get(key) == value
        await wait(lambda: status("readyReplicas", 2), 10, "2 ready")
        old_rev = (await client.get("statefulsets", "db", ns))["status"]["currentRevision"]
        revs = (await client.list("controllerrevisions", ns))["items"]
        assert [r["metadata"]["name"] for r in revs] == [old_rev]

        # a template change rolls db-1 first; db-0 waits until db-1 is Ready again
        await client.patch("statefulsets", "db", {"spec": {"template": {"metadata": {
            "labels": {"app": "db", "v": "2"}}}}}, ns)

        async def replaced(name):
            p = await pod_or_none(client, ns, name)
            if p is None or p["metadata"].get("deletionTimestamp"):
                return None
            return p if p["metadata"]["labels"].get("v") == "2" else None
        # bound pods are deleted gracefully: confirm as a kubelet would
        for name in ("db-1", "db-0"):
            async def going(name=name):
                p = await pod_or_none(client, ns, name)
                if p is None:
                    return True
                if p["metadata"].get("deletionTimestamp"):
                    await client.delete("pods", name, ns, grace_period_seconds=0)
                    return True
                return False
            await wait(going, 10, f"{name} deleted for the update")
            await wait(lambda name=name: replaced(name), 10, f"{name} recreated")
            if name == "db-1":
                assert (await pod_or_none(client, ns, "db-0"))["metadata"]["labels"].get(
                    "v") is None
            await set_running(client, ns, name, node)
        await wait(lambda: status("updatedReplicas", 2), 10, "rolled")

        async def done():
            st = (await client.get("statefulsets", "db", ns)).get("status") or {}
            return st if st.get("currentRevision") == st.get("updateRevision") else None
        st = await wait(done, 10, "rollout complete")
        assert st["currentRevision"] == st["updateRevision"] != old_rev
        assert len((await client.list("controllerrevisions", ns))["items"]) == 2
        # claims are kept across recreation
        assert (await client.get("persistentvolumeclaims", "data-db-1", ns))
    for name in ("db-0", "db-1"):
        with contextlib.suppress(NotFound):
            await client.delete("pods", name, ns, grace_period_seconds=0)
    await client.delete("nodes", node)


async def test_daemonset_one_pod_per_node_following_nodes(apiserver, client, ns):
    nodes = [f"ds-{i}-{ns}" for i in range(2)]
    await client.create("nodes", hollow_node(nodes[0]))
    await client.create("daemonsets", {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}},
                 "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {
                     "containers": [{"name": "c", "image": "busybox:1"}]}}}}, ns)

    async def targets():
        items = (await client.list("pods", ns))["items"]
        out = []
        for p in items:
            terms = p["spec"]["affinity"]["nodeAffinity"][
                "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            out.append(terms[0]["matchFields"][0]["values"][0])
        return sorted(out)

    async def targets_are(expected):
        return await targets() == sorted(expected)
    async with controllers(apiserver, ["daemonset"]):
        await wait(lambda: targets_are(nodes[:1]), 10, "a pod for node 0")
        await client.create("nodes", hollow_node(nodes[1]))
        await wait(lambda: targets_are(nodes), 10, "a pod for each node")
        await asyncio.sleep(0.5)
        assert await targets() == sorted(nodes)
        pod = (await client.list("pods", ns))["items"][0]
        assert pod["metadata"]["labels"]["controller-revision-hash"]
        assert any(t["key"] == UNREACHABLE for t in pod["spec"]["tolerations"])

        async def desired(n):
            st = (await client.get("daemonsets", "agent", ns)).get("status") or {}
            return st.get("desiredNumberScheduled") == n
        await wait(lambda: desired(2), 10, "status desired 2")
        await client.delete("nodes", nodes[1])
        await wait(lambda: targets_are(nodes[:1]), 10, "the pod of the deleted node removed")
        await wait(lambda: desired(1), 10, "status desired 1")
    await client.delete("nodes", nodes[0])
