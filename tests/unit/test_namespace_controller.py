"""Namespace controller decisions over a FakeClient: content first, then the finalizer."""

import asyncio
import contextlib

from fakes import FakeClient, FakeClock, settle
from controller.namespace import NamespaceController
from minik8s.api.errors import Forbidden
from minik8s.cache import InformerFactory


class NsClient(FakeClient):
    """FakeClient plus deletecollection; objects named ``sticky*`` survive deletion (as a
    terminating pod or an object with a finalizer would)."""

    def __init__(self):
        super().__init__()
        self.finalize_calls = []
        self.fail_kind = None

    async def delete_collection(self, ref, namespace=None, **kw):
        res = ref.qualified if hasattr(ref, "qualified") else ref
        if self.fail_kind == res:
            raise Forbidden("nope")
        for key in [k for k, o in self.objects.get(res, {}).items()
                    if o["metadata"].get("namespace") == namespace
                    and not o["metadata"]["name"].startswith("sticky")]:
            await self.delete(ref, key.split("/", 1)[1], namespace)
        return {"items": []}

    async def update(self, ref, obj, namespace=None, *, subresource=None, **kw):
        if subresource == "finalize":
            self.finalize_calls.append(obj["metadata"]["name"])
        return await super().update(ref, obj, namespace, **kw)


class Recorder:
    def __init__(self):
        self.events = []

    async def event(self, obj, type_, reason, message):
        self.events.append((type_, reason))


def terminating(name="gone"):
    return {"metadata": {"name": name, "deletionTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Terminating"}}


@contextlib.asynccontextmanager
async def running(client):
    factory = InformerFactory(client)
    rec = Recorder()
    ctrl = NamespaceController(client, factory, FakeClock(1_700_000_000), rec)
    task = asyncio.create_task(factory.start())
    await factory.wait_synced(2)
    await settle()
    try:
        yield ctrl, rec
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def conditions(client, name="gone"):
    ns = client.stored("namespaces", name)
    return {c["type"]: (c["status"], c["reason"]) for c in ns["status"].get("conditions") or []}


async def test_empties_the_namespace_then_finalizes_it():
    client = NsClient()
    client.seed("namespaces", terminating())
    client.seed("configmaps", {"metadata": {"name": "a", "namespace": "gone"}})
    client.seed("pods", {"metadata": {"name": "p", "namespace": "gone"}})
    client.seed("configmaps", {"metadata": {"name": "other", "namespace": "default"}})
    async with running(client) as (ctrl, _):
        assert await ctrl.reconcile("gone") is None
    assert client.stored("configmaps", "a", "gone") is None
    assert client.stored("pods", "p", "gone") is None
    assert client.stored("configmaps", "other", "default") is not None
    assert client.finalize_calls == ["gone"]
    assert client.stored("namespaces", "gone")["spec"]["finalizers"] == []
    assert conditions(client)["NamespaceContentRemaining"] == ("False", "ContentRemoved")


async def test_waits_while_content_remains():
    client = NsClient()
    client.seed("namespaces", terminating())
    client.seed("pods", {"metadata": {"name": "sticky", "namespace": "gone"}})
    async with running(client) as (ctrl, _):
        result = await ctrl.reconcile("gone")
        assert result is not None and result.requeue_after > 0
        assert client.finalize_calls == []
        status, reason = conditions(client)["NamespaceContentRemaining"]
        assert (status, reason) == ("True", "SomeResourcesRemain")
        await client.delete("pods", "sticky", "gone")
        await settle()
        assert await ctrl.reconcile("gone") is None
    assert client.finalize_calls == ["gone"]


async def test_deletion_failure_is_reported_and_retried():
    client = NsClient()
    client.fail_kind = "secrets"
    client.seed("namespaces", terminating())
    async with running(client) as (ctrl, rec):
        try:
            await ctrl.reconcile("gone")
        except RuntimeError:
            pass
        else:
            raise AssertionError("a failed deletion must be retried")
    assert conditions(client)["NamespaceDeletionContentFailure"][0] == "True"
    assert ("Warning", "NamespaceDeletionContentFailure") in rec.events
    assert client.finalize_calls == []


async def test_active_namespace_is_left_alone():
    client = NsClient()
    client.seed("namespaces", {"metadata": {"name": "live"}, "spec": {"finalizers": ["kubernetes"]}})
    client.seed("configmaps", {"metadata": {"name": "a", "namespace": "live"}})
    async with running(client) as (ctrl, _):
        assert await ctrl.reconcile("live") is None
    assert client.stored("configmaps", "a", "live") is not None
