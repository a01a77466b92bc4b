"""The namespace controller against the real API server: deleting a namespace removes its
contents, refuses new content meanwhile (403), waits for terminating pods, then goes."""

from __future__ import annotations

import uuid

import pytest

from cluster import eventually, running_controllers
from minik8s.api.errors import Forbidden, NotFound


def namespace_gone(client, name):
    async def check():
        try:
            await client.get("namespaces", name)
            return False
        except NotFound:
            return True
    return check


async def test_deleting_a_namespace_removes_its_contents_then_itself(client):
    name = f"nsc-{uuid.uuid4().hex[:8]}"
    await client.create("namespaces", {"metadata": {"name": name}})
    await client.create("configmaps", {"metadata": {"name": "cm"}, "data": {"a": "b"}}, name)
    await client.create("secrets", {"metadata": {"name": "s"}, "stringData": {"a": "b"}}, name)
    await client.create("services", {"metadata": {"name": "svc"}, "spec": {
        "ports": [{"port": 80}], "selector": {"app": "x"}}}, name)
    await client.create("jobs", {"metadata": {"name": "j"}, "spec": {"template": {"spec": {
        "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1"}]}}}}, name)
    # a pod bound to a node is deleted gracefully: it stays until "its kubelet" confirms
    await client.create("pods", {"metadata": {"name": "bound"}, "spec": {
        "nodeName": "no-such-node", "containers": [{"name": "c", "image": "busybox:1"}]}}, name)
    async with running_controllers(client, ["namespace", "garbagecollector"]):
        await client.delete("namespaces", name)
        ns = await client.get("namespaces", name)
        assert ns["status"]["phase"] == "Terminating"
        with pytest.raises(Forbidden):
            await client.create("configmaps", {"metadata": {"name": "late"}}, name)

        async def emptied_but_pod():
            cms = (await client.list("configmaps", name))["items"]
            jobs = (await client.list("jobs", name))["items"]
            svcs = (await client.list("services", name))["items"]
            return not cms and not jobs and not svcs

        await eventually(emptied_but_pod)

        async def remaining_reported():
            ns = await client.get("namespaces", name)
            for c in ns["status"].get("conditions") or []:
                if c["type"] == "NamespaceContentRemaining" and c["status"] == "True":
                    return c
            return None

        c = await eventually(remaining_reported)
        assert c["reason"] == "SomeResourcesRemain" and "pods" in c["message"]
        pod = await client.get("pods", "bound", name)
        assert pod["metadata"]["deletionTimestamp"]
        assert (await client.get("namespaces", name))["spec"]["finalizers"] == ["kubernetes"]
        # the kubelet's final word: delete with grace 0
        await client.delete("pods", "bound", name, grace_period_seconds=0)
        await eventually(namespace_gone(client, name))


async def test_empty_namespace_goes_at_once(client):
    name = f"nsc-{uuid.uuid4().hex[:8]}"
    await client.create("namespaces", {"metadata": {"name": name}})
    async with running_controllers(client, ["namespace"]):
        await client.delete("namespaces", name)
        await eventually(namespace_gone(client, name), timeout=10)
