"""Namespace lifecycle as the API server enforces it (no namespace controller runs here)."""

from __future__ import annotations

import uuid

import pytest

from minik8s.api.errors import BadRequest, Forbidden, NotFound


async def test_system_namespaces_exist(client):
    for name in ("default", "kube-system", "kube-node-lease", "kube-public"):
        ns = await client.get("namespaces", name)
        assert ns["kind"] == "Namespace"
        assert ns["status"]["phase"] == "Active"
        assert ns["spec"]["finalizers"] == ["kubernetes"]


async def test_create_into_missing_namespace_is_404(client):
    with pytest.raises(NotFound) as exc:
        await client.create("configmaps", {"metadata": {"name": "x"}}, "no-such-ns")
    assert exc.value.code == 404
    assert str(exc.value) == 'namespaces "no-such-ns" not found'


async def test_deleting_a_namespace_makes_it_terminating(client):
    name = f"term-{uuid.uuid4().hex[:6]}"
    await client.create("namespaces", {"metadata": {"name": name}})
    await client.create("configmaps", {"metadata": {"name": "before"}}, name)

    out = await client.delete("namespaces", name)
    assert out["kind"] == "Namespace"
    assert out["status"]["phase"] == "Terminating"
    assert out["metadata"]["deletionTimestamp"]
    got = await client.get("namespaces", name)
    assert got["status"]["phase"] == "Terminating"
    assert got["spec"]["finalizers"] == ["kubernetes"]

    with pytest.raises(Forbidden) as exc:
        await client.create("configmaps", {"metadata": {"name": "after"}}, name)
    assert exc.value.code == 403
    assert str(exc.value) == (f'configmaps "after" is forbidden: unable to create new content '
                              f'in namespace {name} because it is being terminated')
    assert exc.value.causes[0]["reason"] == "NamespaceTerminating"

    # Existing content can still be read, updated and deleted.
    assert (await client.patch("configmaps", "before", {"data": {"a": "b"}}, name))["data"] == \
        {"a": "b"}
    await client.delete("configmaps", "before", name)

    # Clearing spec.finalizers through the finalize subresource removes the namespace.
    got["spec"]["finalizers"] = []
    await client.update("namespaces", got, subresource="finalize")
    with pytest.raises(NotFound):
        await client.get("namespaces", name)


@pytest.mark.parametrize("name", ["default", "kube-system", "kube-node-lease", "kube-public"])
async def test_system_namespaces_cannot_be_deleted(client, name):
    with pytest.raises(Forbidden) as exc:
        await client.delete("namespaces", name)
    assert exc.value.code == 403
    assert str(exc.value) == f'namespaces "{name}" is forbidden: this namespace may not be deleted'
    assert (await client.get("namespaces", name))["status"]["phase"] == "Active"


async def test_namespaced_object_paths(client, ns):
    await client.create("configmaps", {"metadata": {"name": "c", "namespace": ns}}, ns)
    other = f"o-{uuid.uuid4().hex[:6]}"
    await client.create("namespaces", {"metadata": {"name": other}})
    with pytest.raises(NotFound):
        await client.get("configmaps", "c", other)
    # A body naming another namespace than the URL is refused.
    with pytest.raises(BadRequest) as exc:
        await client.request("POST", f"/api/v1/namespaces/{ns}/configmaps",
                             body={"metadata": {"name": "d", "namespace": other}})
    assert exc.value.code == 400
    assert str(exc.value) == ("the namespace of the provided object does not match the "
                              "namespace sent on the request")
