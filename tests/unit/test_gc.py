"""Garbage collector decisions over a FakeClient: which dependents go, which references are
dropped, when the foregroundDeletion and orphan finalizers come off."""

import asyncio
import contextlib

from fakes import FakeClient, settle
from controller.garbagecollector import GarbageCollector, deletion_policy
from minik8s.api.registry import REGISTRY


class RecordingClient(FakeClient):
    def __init__(self):
        super().__init__()
        self.deletes = []

    async def delete(self, ref, name, namespace=None, **kw):
        plural = (ref if not isinstance(ref, str) else REGISTRY.resolve(ref)).plural
        self.deletes.append((plural, name, kw.get("propagation_policy")))
        return await super().delete(ref, name, namespace, **kw)


def ref(kind, name, uid, api="apps/v1", block=True, controller=True):
    return {"apiVersion": api, "kind": kind, "name": name, "uid": uid,
            "controller": controller, "blockOwnerDeletion": block}


def obj(kind, name, uid, api="apps/v1", owners=(), **md):
    return {"apiVersion": api, "kind": kind,
            "metadata": {"name": name, "namespace": "default", "uid": uid,
                         **({"ownerReferences": list(owners)} if owners else {}), **md}}


KINDS = [REGISTRY.resolve(k) for k in ("pods", "replicasets", "deployments", "configmaps")]


@contextlib.asynccontextmanager
async def running(client):
    from minik8s.cache import InformerFactory
    factory = InformerFactory(client)
    gc = GarbageCollector(client, factory, kinds=KINDS)
    task = asyncio.create_task(factory.start())
    await factory.wait_synced(2)
    await settle()
    try:
        yield gc
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def drain(gc, rounds=20):
    """Process queued uids until the queue is empty."""
    for _ in range(rounds):
        await settle()
        if not len(gc.controller.queue):
            return
        while len(gc.controller.queue):
            await gc.controller.process_next()


async def test_dependent_of_a_missing_owner_is_deleted_in_the_background():
    client = RecordingClient()
    client.seed("pods", obj("Pod", "p", "pod-1", api="v1", owners=[ref("ReplicaSet", "rs", "rs-1")]))
    async with running(client) as gc:
        await drain(gc)
    assert ("pods", "p", "Background") in client.deletes
    assert client.count("get") == 1  # the cache miss was confirmed live before deleting


async def test_dependent_with_an_existing_owner_stays():
    client = RecordingClient()
    client.seed("replicasets", obj("ReplicaSet", "rs", "rs-1"))
    client.seed("pods", obj("Pod", "p", "pod-1", api="v1", owners=[ref("ReplicaSet", "rs", "rs-1")]))
    async with running(client) as gc:
        await drain(gc)
    assert client.deletes == []


async def test_owner_recreated_under_the_same_name_does_not_count():
    client = RecordingClient()
    client.seed("pods", obj("Pod", "p", "pod-1", api="v1", owners=[ref("ReplicaSet", "rs", "old")]))
    async with running(client) as gc:
        # the live GET finds a ReplicaSet "rs" with another uid: the real owner is gone
        client.objects.setdefault("replicasets.apps", {})["default/rs"] = obj(
            "ReplicaSet", "rs", "new", resourceVersion="99")
        await drain(gc)
    assert ("pods", "p", "Background") in client.deletes


async def test_owner_deleted_later_cascades_to_its_dependents():
    client = RecordingClient()
    client.seed("replicasets", obj("ReplicaSet", "rs", "rs-1",
                                   owners=[ref("Deployment", "d", "d-1")]))
    client.seed("deployments", obj("Deployment", "d", "d-1"))
    client.seed("pods", obj("Pod", "p", "pod-1", api="v1", owners=[ref("ReplicaSet", "rs", "rs-1")]))
    async with running(client) as gc:
        await drain(gc)
        assert client.deletes == []
        await client.delete("deployments", "d", "default")
        client.deletes.clear()
        await drain(gc)
        assert ("replicasets", "rs", "Background") in client.deletes
        await drain(gc)
    assert ("pods", "p", "Background") in client.deletes


async def test_partly_dangling_owners_lose_only_the_dangling_references():
    client = RecordingClient()
    client.seed("configmaps", obj("ConfigMap", "cm", "cm-1", api="v1", owners=[
        ref("Deployment", "d", "d-1", controller=False), ref("Deployment", "gone", "d-2",
                                                             controller=False)]))
    client.seed("deployments", obj("Deployment", "d", "d-1"))
    async with running(client) as gc:
        await drain(gc)
    assert client.deletes == []
    refs = client.stored("configmaps", "cm", "default")["metadata"]["ownerReferences"]
    assert [r["uid"] for r in refs] == ["d-1"]


async def test_foreground_owner_waits_for_blocking_dependents_then_loses_its_finalizer():
    client = RecordingClient()
    client.seed("deployments", obj("Deployment", "d", "d-1", finalizers=["foregroundDeletion"],
                                   deletionTimestamp="2024-01-01T00:00:00Z"))
    client.seed("replicasets", obj("ReplicaSet", "rs", "rs-1",
                                   owners=[ref("Deployment", "d", "d-1")]))
    client.seed("pods", obj("Pod", "p", "pod-1", api="v1", owners=[ref("ReplicaSet", "rs", "rs-1")]))
    async with running(client) as gc:
        await drain(gc)
        # the ReplicaSet has dependents of its own: it is deleted in the foreground too
        assert ("replicasets", "rs", "Foreground") in client.deletes
        await drain(gc)
        assert client.stored("deployments", "d", "default")["metadata"]["finalizers"] == []


async def test_foreground_owner_with_no_dependents_is_released_at_once():
    client = RecordingClient()
    client.seed("deployments", obj("Deployment", "d", "d-1",
                                   finalizers=["foregroundDeletion", "example.com/keep"],
                                   deletionTimestamp="2024-01-01T00:00:00Z"))
    async with running(client) as gc:
        await drain(gc)
    assert client.stored("deployments", "d", "default")["metadata"]["finalizers"] == [
        "example.com/keep"]


async def test_orphan_removes_references_then_the_finalizer():
    client = RecordingClient()
    client.seed("deployments", obj("Deployment", "other", "x"))
    client.seed("replicasets", obj("ReplicaSet", "rs", "rs-1", finalizers=["orphan"],
                                   deletionTimestamp="2024-01-01T00:00:00Z"))
    for i in range(2):
        client.seed("pods", obj("Pod", f"p{i}", f"pod-{i}", api="v1", owners=[
            ref("ReplicaSet", "rs", "rs-1"), ref("Deployment", "other", "x", controller=False)]))
    async with running(client) as gc:
        await drain(gc)
    assert client.deletes == []
    for i in range(2):
        refs = client.stored("pods", f"p{i}", "default")["metadata"]["ownerReferences"]
        assert [r["uid"] for r in refs] == ["x"]
    assert client.stored("replicasets", "rs", "default")["metadata"]["finalizers"] == []


async def test_unknown_owner_kinds_are_never_collected():
    client = RecordingClient()
    client.seed("configmaps", obj("ConfigMap", "cm", "cm-1", api="v1", owners=[
        ref("Widget", "w", "w-1", api="example.com/v1")]))
    async with running(client) as gc:
        await drain(gc)
    assert client.deletes == []


def test_deletion_policy():
    plain = {"metadata": {}}
    assert deletion_policy(plain, has_dependents=False, owner_waiting=True) == "Background"
    assert deletion_policy(plain, has_dependents=True, owner_waiting=True) == "Foreground"
    assert deletion_policy(plain, has_dependents=True, owner_waiting=False) == "Background"
    assert deletion_policy({"metadata": {"finalizers": ["orphan"]}}, False, False) == "Orphan"
