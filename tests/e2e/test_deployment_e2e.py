"""A Deployment on real Docker: scheduler, controller-manager (ReplicaSet + Deployment) and a
kubelet all in-process against the real API server. Three busybox pods become available, and
a deleted pod and a killed container are both healed. The template selects this module's node
(``kubernetes.io/hostname``), so Nodes left by other test modules never get its pods."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from controller.manager import build as build_controller_manager
from e2e_helpers import BUSYBOX, wait_for
from kubelet.runtime.base import LABEL_KIND, LABEL_POD_UID
from minik8s.client import Client
from scheduler.main import build as build_scheduler


@pytest.fixture
async def control_plane(apiserver, node):
    clients, tasks = [], []
    for name, user, build in (
            ("sched-e2e-deploy", "system:kube-scheduler", lambda c: build_scheduler(c)[0]),
            ("cm-e2e-deploy", "system:kube-controller-manager",
             lambda c: build_controller_manager(c, controllers=["replicaset", "deployment"])[0])):
        client = Client.from_kubeconfig(str(apiserver.kubeconfig_for(name, user)))
        clients.append(client)
        tasks.append(asyncio.get_running_loop().create_task(build(client).start()))
    yield
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await t
    for c in clients:
        await c.aclose()


def _kill(ids: list[str]) -> None:
    import docker
    api = docker.APIClient(version="auto")
    try:
        for cid in ids:
            api.kill(cid)
    finally:
        api.close()


def _ready(pod) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


async def test_deployment_runs_and_heals(client, ns, node, control_plane):
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                         "nodeSelector": {"kubernetes.io/hostname": node.name},
                         "terminationGracePeriodSeconds": 1,
                         "containers": [{"name": "main", "image": BUSYBOX,
                                         "command": ["sleep", "3600"]}]}}}}
    await client.create("deployments", body, ns)

    async def available():
        d = await client.get("deployments", "web", ns)
        st = d.get("status") or {}
        return st.get("availableReplicas") == 3 and st.get("updatedReplicas") == 3 and d

    d = await wait_for(available, 120, "3 available replicas")
    assert any(c["type"] == "Available" and c["status"] == "True"
               for c in d["status"]["conditions"])

    async def running_pods():
        pods = (await client.list("pods", ns, label_selector="app=web")).get("items") or []
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        return live if len(live) == 3 and all(_ready(p) for p in live) else None

    pods = await wait_for(running_pods, 60, "3 ready pods")
    assert {p["spec"]["nodeName"] for p in pods} == {node.name}

    # delete a pod: the ReplicaSet replaces it, and it runs
    victim = pods[0]["metadata"]["name"]
    await client.delete("pods", victim, ns)

    async def healed():
        live = await running_pods()
        return live and victim not in {p["metadata"]["name"] for p in live}

    await wait_for(healed, 120, "deleted pod replaced")

    # kill a container: the kubelet restarts it in place
    pods = await wait_for(running_pods, 60, "3 ready pods")
    target = pods[0]
    mine = [c for c in await node.containers(**{LABEL_POD_UID: target["metadata"]["uid"],
                                                LABEL_KIND: "app"}) if c.state == "running"]
    assert mine, "no running app container of the pod found"
    await asyncio.to_thread(_kill, [c.id for c in mine])

    async def restarted():
        pod = await client.get("pods", target["metadata"]["name"], ns)
        counts = [cs.get("restartCount", 0) for cs in pod["status"].get("containerStatuses") or []]
        return counts and max(counts) >= 1 and _ready(pod)

    await wait_for(restarted, 90, "killed container restarted")
    await wait_for(available, 60, "available again")
