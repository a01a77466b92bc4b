import asyncio
import contextlib
import logging

import pytest

from fakes import FakeClient, FakeClock, advance, eventually, settle
from minik8s.cache import Informer, InformerFactory, field_index


def pod(name, ns="default", node=None, labels=None):
    obj = {"metadata": {"name": name, "namespace": ns}, "spec": {}}
    if node:
        obj["spec"]["nodeName"] = node
    if labels:
        obj["metadata"]["labels"] = labels
    return obj


def rv(obj):
    return obj["metadata"]["resourceVersion"]


class Recorder:
    def __init__(self):
        self.events = []

    def on_add(self, obj):
        self.events.append(("add", obj["metadata"]["name"], rv(obj)))

    def on_update(self, old, new):
        self.events.append(("update", new["metadata"]["name"], rv(old), rv(new)))

    def on_delete(self, obj):
        self.events.append(("delete", obj["metadata"]["name"], rv(obj)))

    def register(self, informer):
        return informer.add_handler(self.on_add, self.on_update, self.on_delete)


@contextlib.asynccontextmanager
async def running(runnable):
    task = asyncio.ensure_future(runnable.start())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_initial_list_fills_store_and_calls_on_add():
    client = FakeClient()
    a = client.seed("pods", pod("a"))
    client.seed("pods", pod("b", ns="other"))
    inf = Informer(client, "pods")
    rec = Recorder()
    rec.register(inf)
    assert not inf.has_synced
    async with running(inf):
        assert await inf.wait_synced(timeout=2)
        assert inf.has_synced
        assert sorted(inf.store.keys()) == ["default/a", "other/b"]
        await eventually(lambda: len(rec.events) == 2)
        assert sorted(rec.events) == [("add", "a", rv(a)), ("add", "b", "2")]
    assert client.watch_calls[0]["all_namespaces"] is True
    assert client.watchers("pods") == 0  # the stream was closed on cancel


async def test_handlers_see_add_update_delete_with_right_old_and_new():
    client = FakeClient()
    inf = Informer(client, "pods", "default")
    rec = Recorder()
    rec.register(inf)
    async with running(inf):
        await inf.wait_synced(2)
        created = await client.create("pods", pod("a"))
        changed = dict(created, spec={"nodeName": "n1"})
        updated = await client.update("pods", changed)
        await eventually(lambda: len(rec.events) == 2)
        assert inf.get("default/a")["spec"] == {"nodeName": "n1"}
        deleted = await client.delete("pods", "a")
        await eventually(lambda: len(rec.events) == 3)
        assert rec.events == [
            ("add", "a", rv(created)),
            ("update", "a", rv(created), rv(updated)),
            ("delete", "a", rv(deleted)),
        ]
        assert inf.get("default/a") is None and inf.list() == []


async def test_namespaced_informer_sees_only_its_namespace():
    client = FakeClient()
    client.seed("pods", pod("a", ns="one"))
    client.seed("pods", pod("b", ns="two"))
    inf = Informer(client, "pods", "one")
    async with running(inf):
        await inf.wait_synced(2)
        await client.create("pods", pod("c", ns="two"))
        await client.create("pods", pod("d", ns="one"))
        await eventually(lambda: len(inf.store) == 2)
        assert sorted(inf.store.keys()) == ["one/a", "one/d"]
    assert client.watch_calls[0]["all_namespaces"] is False
    assert client.watch_calls[0]["namespace"] == "one"


async def test_selectors_are_passed_to_the_watch():
    client = FakeClient()
    client.seed("pods", pod("web", labels={"app": "web"}))
    client.seed("pods", pod("db", labels={"app": "db"}))
    inf = Informer(client, "pods", label_selector="app=web", field_selector="spec.x=1")
    async with running(inf):
        await inf.wait_synced(2)
    call = client.watch_calls[0]
    assert (call["label_selector"], call["field_selector"]) == ("app=web", "spec.x=1")


async def test_async_handlers_and_a_failing_handler_do_not_stop_the_informer(caplog):
    client = FakeClient()
    inf = Informer(client, "pods")
    seen = []
    calls = []

    async def async_add(obj):
        await asyncio.sleep(0)
        seen.append(obj["metadata"]["name"])

    def broken(obj):
        calls.append(obj["metadata"]["name"])
        raise RuntimeError("handler bug")

    inf.add_handler(on_add=broken)
    inf.add_handler(on_add=async_add)
    with caplog.at_level(logging.ERROR, logger="minik8s.cache.informer"):
        async with running(inf):
            await inf.wait_synced(2)
            await client.create("pods", pod("a"))
            await client.create("pods", pod("b"))
            await eventually(lambda: seen == ["a", "b"] and calls == ["a", "b"])
    assert "handler bug" in caplog.text
    assert sum("add handler" in r.getMessage() for r in caplog.records) == 2


async def test_late_handler_first_gets_existing_objects():
    client = FakeClient()
    client.seed("pods", pod("a"))
    inf = Informer(client, "pods")
    async with running(inf):
        await inf.wait_synced(2)
        rec = Recorder()
        rec.register(inf)
        await client.create("pods", pod("b"))
        await eventually(lambda: len(rec.events) == 2)
        assert [e[:2] for e in rec.events] == [("add", "a"), ("add", "b")]


async def test_removed_handler_gets_nothing_more():
    client = FakeClient()
    inf = Informer(client, "pods")
    rec = Recorder()
    reg = rec.register(inf)
    async with running(inf):
        await inf.wait_synced(2)
        inf.remove_handler(reg)
        await client.create("pods", pod("a"))
        await settle()
    assert rec.events == []


async def test_resync_calls_on_update_with_the_same_object():
    client = FakeClient()
    clock = FakeClock()
    a = client.seed("pods", pod("a"))
    b = client.seed("pods", pod("b"))
    inf = Informer(client, "pods", resync_period=30, clock=clock)
    rec = Recorder()
    rec.register(inf)
    async with running(inf):
        await inf.wait_synced(2)
        await eventually(lambda: len(rec.events) == 2)
        await advance(clock, 29, step=1)
        assert len(rec.events) == 2
        await advance(clock, 1.5)
        await eventually(lambda: len(rec.events) == 4)
        assert sorted(rec.events[2:]) == [("update", "a", rv(a), rv(a)),
                                          ("update", "b", rv(b), rv(b))]


async def test_restarted_stream_delivers_the_difference():
    client = FakeClient()
    clock = FakeClock()
    keep = client.seed("pods", pod("keep"))
    client.seed("pods", pod("gone"))
    inf = Informer(client, "pods", clock=clock, restart_delay=1)
    rec = Recorder()
    rec.register(inf)
    async with running(inf):
        await inf.wait_synced(2)
        await eventually(lambda: len(rec.events) == 2)
        client.end_watches("pods")
        await eventually(lambda: client.watchers("pods") == 0)
        # changes nobody was told about while the stream was down
        del client.objects["pods"]["default/gone"]
        client.seed("pods", pod("new"))
        await advance(clock, 1.5)
        await eventually(lambda: len(rec.events) == 5)
        assert sorted(rec.events[2:]) == [("add", "new", "3"), ("delete", "gone", "2"),
                                          ("update", "keep", rv(keep), rv(keep))]
        assert sorted(inf.store.keys()) == ["default/keep", "default/new"]


async def test_watch_error_ends_start():
    from minik8s.api.errors import Forbidden
    client = FakeClient()
    client.fail("watch", Forbidden("pods is forbidden"))
    inf = Informer(client, "pods")
    with pytest.raises(Forbidden):
        await asyncio.wait_for(inf.start(), 2)
    assert not await inf.wait_synced(timeout=0.01)


async def test_indexers_on_the_informer_store():
    client = FakeClient()
    client.seed("pods", pod("a", node="n1"))
    client.seed("pods", pod("b", node="n2"))
    inf = Informer(client, "pods", indexers={"node": field_index("spec.nodeName")})
    async with running(inf):
        await inf.wait_synced(2)
        assert [p["metadata"]["name"] for p in inf.by_index("node", "n1")] == ["a"]


async def test_factory_shares_one_informer_per_collection():
    client = FakeClient()
    factory = InformerFactory(client)
    pods = factory.informer("pods")
    assert factory.informer("pod") is pods and factory.informer("po") is pods
    assert factory.informer("pods", "default") is not pods
    assert factory.informer("pods", label_selector="a=b") is not pods
    by_node = field_index("spec.nodeName")
    assert factory.informer("pods", indexers={"node": by_node}) is pods
    assert "node" in pods.store.indexers
    assert factory.informer("pods", resync_period=60).resync_period == 60
    assert factory.informer("pods", resync_period=120).resync_period == 60
    assert len(factory.informers) == 3


async def test_factory_starts_all_informers_and_waits_for_sync():
    client = FakeClient()
    client.seed("pods", pod("a"))
    client.seed("nodes", {"metadata": {"name": "n1"}})
    factory = InformerFactory(client)
    pods = factory.informer("pods")
    nodes = factory.informer("nodes")
    assert not await factory.wait_synced(timeout=0.01)
    async with running(factory) as task:
        assert await factory.wait_synced(timeout=2)
        assert pods.store.keys() == ["default/a"] and nodes.store.keys() == ["n1"]
        # an informer asked for after start is started too
        late = factory.informer("services")
        assert await late.wait_synced(timeout=2)
        assert not task.done()
    assert client.watchers("pods") == client.watchers("nodes") == 0


async def test_factory_start_raises_when_an_informer_fails():
    from minik8s.api.errors import Forbidden
    client = FakeClient()
    client.fail("watch", Forbidden("nodes is forbidden"), times=1)
    factory = InformerFactory(client)
    factory.informer("nodes")
    factory.informer("pods")
    with pytest.raises(Forbidden):
        await asyncio.wait_for(factory.start(), 2)
    assert client.watchers("pods") == 0
