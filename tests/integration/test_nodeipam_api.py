"""Pod ranges handed to Nodes by the API server (``--cluster-cidr`` 10.244.0.0/16, /24 per
node by default): distinct under concurrency, checked when named, immutable, released with
the Node."""

from __future__ import annotations

import asyncio
import ipaddress
import uuid

import pytest

from minik8s.api.errors import Invalid

CLUSTER = ipaddress.ip_network("10.244.0.0/16")


def node(name: str, **spec: object) -> dict:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": dict(spec)}


@pytest.fixture
async def names(client):
    made: list[str] = []
    yield made
    for name in made:
        try:
            await client.delete("nodes", name)
        except Exception:
            pass


def _new(names: list[str]) -> str:
    name = f"ipam-{uuid.uuid4().hex[:8]}"
    names.append(name)
    return name


def _cidr(obj: dict) -> ipaddress.IPv4Network:
    spec = obj["spec"]
    assert spec["podCIDRs"] == [spec["podCIDR"]]
    cidr = ipaddress.ip_network(spec["podCIDR"])
    assert cidr.prefixlen == 24 and cidr.subnet_of(CLUSTER)
    return cidr


async def test_two_nodes_get_distinct_ranges(client, names):
    a = await client.create("nodes", node(_new(names)))
    b = await client.create("nodes", node(_new(names)))
    assert _cidr(a) != _cidr(b)
    got = await client.get("nodes", a["metadata"]["name"])
    assert got["spec"]["podCIDR"] == a["spec"]["podCIDR"]


async def test_concurrent_registrations_never_collide(client, names):
    created = await asyncio.gather(*(client.create("nodes", node(_new(names)))
                                     for _ in range(20)))
    cidrs = [_cidr(n) for n in created]
    assert len(set(cidrs)) == 20
    listed = (await client.list("nodes"))["items"]
    everyone = [n["spec"]["podCIDR"] for n in listed if (n.get("spec") or {}).get("podCIDR")]
    assert len(everyone) == len(set(everyone))


async def test_named_range_is_checked(client, names):
    taken = await client.create("nodes", node(_new(names)))
    with pytest.raises(Invalid, match="overlaps"):
        await client.create("nodes", node(_new(names), podCIDR=taken["spec"]["podCIDR"]))
    with pytest.raises(Invalid, match="outside the cluster CIDR"):
        await client.create("nodes", node(_new(names), podCIDR="10.99.0.0/24"))
    with pytest.raises(Invalid):
        await client.create("nodes", node(_new(names), podCIDR="10.244.250.7/24"))

    free = _free_range(await client.list("nodes"))
    own = await client.create("nodes", node(_new(names), podCIDR=str(free)))
    assert own["spec"]["podCIDR"] == str(free) and own["spec"]["podCIDRs"] == [str(free)]


async def test_range_is_immutable_but_labels_are_not(client, names):
    name = _new(names)
    created = await client.create("nodes", node(name))
    other = _free_range(await client.list("nodes"))
    with pytest.raises(Invalid, match="podCIDR"):
        await client.patch("nodes", name, {"spec": {"podCIDR": str(other),
                                                    "podCIDRs": [str(other)]}})
    patched = await client.patch("nodes", name, {"metadata": {"labels": {"a": "b"}}})
    assert patched["spec"]["podCIDR"] == created["spec"]["podCIDR"]
    replaced = await client.update("nodes", {**patched, "spec": {}})  # a manifest without it
    assert replaced["spec"]["podCIDR"] == created["spec"]["podCIDR"]


async def test_deleting_a_node_releases_its_range(client, names):
    name = _new(names)
    created = await client.create("nodes", node(name))
    cidr = created["spec"]["podCIDR"]
    await client.delete("nodes", name)
    # Free once the server's node cache has seen the deletion (a moment later).
    deadline = asyncio.get_running_loop().time() + 10
    again_name = _new(names)
    while True:
        try:
            again = await client.create("nodes", node(again_name, podCIDR=cidr))
            break
        except Invalid:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)
    assert again["spec"]["podCIDR"] == cidr


async def test_dry_run_reserves_nothing(client, names):
    name = _new(names)
    dry = await client.create("nodes", node(name), dry_run=True)
    real = await client.create("nodes", node(name))
    assert dry["spec"]["podCIDR"] == real["spec"]["podCIDR"]


def _free_range(listed: dict) -> ipaddress.IPv4Network:
    used = {ipaddress.ip_network(n["spec"]["podCIDR"]) for n in listed["items"]
            if (n.get("spec") or {}).get("podCIDR")}
    return next(c for c in reversed(list(CLUSTER.subnets(new_prefix=24))) if c not in used)
