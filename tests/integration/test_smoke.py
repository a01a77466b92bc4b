from minik8s.api.errors import NotFound
import pytest


async def test_namespaces_bootstrapped(client):
    names = {n["metadata"]["name"] for n in (await client.list("namespaces"))["items"]}
    assert {"default", "kube-system", "kube-node-lease", "kube-public"} <= names


async def test_get_missing(client, ns):
    with pytest.raises(NotFound) as exc:
        await client.get("pods", "nope", ns)
    assert str(exc.value) == 'pods "nope" not found'
