"""Events expire: the API server writes them with an etcd lease (Kubernetes' --event-ttl),
so etcd removes them without a cleanup task. Other kinds carry no lease."""

from __future__ import annotations

import aetcd
import pytest


@pytest.fixture
async def etcd_client(etcd):
    c = aetcd.Client(host="127.0.0.1", port=etcd.port)
    await c.connect()
    yield c
    await c.close()


def event(name: str, ns: str) -> dict:
    return {"metadata": {"name": name},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": ns},
            "reason": "Scheduled", "message": "assigned", "type": "Normal", "count": 1}


async def test_event_is_stored_with_a_lease(client, ns, etcd_client):
    created = await client.create("events", event("e1", ns), ns)
    assert created["kind"] == "Event" and created["reason"] == "Scheduled"
    kv = await etcd_client.get(f"/registry/core/events/{ns}/e1".encode())
    assert kv is not None
    assert kv.lease != 0
    info = await etcd_client.get_lease_info(kv.lease)
    # At least the server's --event-ttl (default one hour); the lease is shared by the
    # Events written within a minute, so it is granted a little longer.
    assert info.grantedTTL >= 3600
    assert 0 < info.TTL <= info.grantedTTL
    assert f"/registry/core/events/{ns}/e1".encode() in list(info.keys)


async def test_updated_event_keeps_a_lease(client, ns, etcd_client):
    ev = await client.create("events", event("e2", ns), ns)
    ev["count"] = 2
    out = await client.update("events", ev, ns)
    assert out["count"] == 2
    kv = await etcd_client.get(f"/registry/core/events/{ns}/e2".encode())
    assert kv.lease != 0
    out = await client.patch("events", "e2", {"count": 3}, ns)
    assert out["count"] == 3
    kv = await etcd_client.get(f"/registry/core/events/{ns}/e2".encode())
    assert kv.lease != 0


async def test_event_created_by_put_has_a_lease(client, ns, etcd_client):
    out = await client.update("events", {**event("e3", ns), "metadata": {"name": "e3"}}, ns)
    assert out["metadata"]["name"] == "e3"
    kv = await etcd_client.get(f"/registry/core/events/{ns}/e3".encode())
    assert kv.lease != 0


async def test_other_kinds_have_no_lease(client, ns, etcd_client):
    await client.create("configmaps", {"metadata": {"name": "c"}}, ns)
    kv = await etcd_client.get(f"/registry/core/configmaps/{ns}/c".encode())
    assert kv is not None and kv.lease == 0


async def test_events_may_be_written_into_a_terminating_namespace(client, ns):
    """Controllers report what they do while a namespace is emptied."""
    await client.delete("namespaces", ns)
    out = await client.create("events", event("late", ns), ns)
    assert out["metadata"]["namespace"] == ns
