"""``NodeCIDRAllocator`` against a fake node cache: lowest free range, gaps reused,
exhaustion, reservations kept until the cache has caught up."""

from __future__ import annotations

import asyncio

import pytest

from apiserver.nodeipam import NodeCIDRAllocator
from minik8s.api.errors import Invalid


class FakeCache:
    def __init__(self) -> None:
        self.objects: dict[str, dict] = {}
        self.revision = 0
        self.ready = asyncio.Event()
        self.ready.set()

    def put(self, obj: dict) -> None:
        self.revision += 1
        self.objects[obj["metadata"]["name"]] = obj


def node(name: str, cidr: str | None = None) -> dict:
    return {"metadata": {"name": name, "uid": f"uid-{name}"},
            "spec": {"podCIDR": cidr} if cidr else {}}


async def register(alloc: NodeCIDRAllocator, cache: FakeCache, name: str,
                   cidr: str | None = None, *, seen: bool = True) -> dict:
    obj = node(name, cidr)
    await alloc.admit_create(obj)
    alloc.created(obj, cache.revision + 1)
    if seen:
        cache.put(obj)
    return obj


async def test_lowest_free_range_and_gaps():
    cache = FakeCache()
    alloc = NodeCIDRAllocator("10.244.0.0/16", 24, cache)
    a = await register(alloc, cache, "a")
    b = await register(alloc, cache, "b")
    assert (a["spec"]["podCIDR"], b["spec"]["podCIDR"]) == ("10.244.0.0/24", "10.244.1.0/24")
    assert b["spec"]["podCIDRs"] == ["10.244.1.0/24"]
    del cache.objects["a"]
    cache.revision += 1
    c = await register(alloc, cache, "c")
    assert c["spec"]["podCIDR"] == "10.244.0.0/24"


async def test_unseen_allocations_are_reserved():
    cache = FakeCache()
    alloc = NodeCIDRAllocator("10.244.0.0/16", 24, cache)
    first = await register(alloc, cache, "a", seen=False)
    second = await register(alloc, cache, "b", seen=False)
    assert first["spec"]["podCIDR"] != second["spec"]["podCIDR"]


async def test_exhaustion_leaves_the_node_without_a_range():
    cache = FakeCache()
    alloc = NodeCIDRAllocator("10.244.0.0/23", 24, cache)
    await register(alloc, cache, "a")
    await register(alloc, cache, "b")
    third = await register(alloc, cache, "c")
    assert "podCIDR" not in third["spec"]


async def test_named_ranges_checked():
    cache = FakeCache()
    alloc = NodeCIDRAllocator("10.244.0.0/16", 24, cache)
    await register(alloc, cache, "a", "10.244.7.0/24")
    with pytest.raises(Invalid, match="overlaps"):
        await alloc.admit_create(node("b", "10.244.0.0/20"))
    with pytest.raises(Invalid, match="outside"):
        await alloc.admit_create(node("b", "10.245.0.0/24"))
    nxt = await register(alloc, cache, "c")
    assert nxt["spec"]["podCIDR"] == "10.244.0.0/24"


async def test_update_keeps_or_refuses():
    cache = FakeCache()
    alloc = NodeCIDRAllocator("10.244.0.0/16", 24, cache)
    old = await register(alloc, cache, "a")
    kept = node("a")
    await alloc.admit_update(kept, old)
    assert kept["spec"]["podCIDR"] == old["spec"]["podCIDR"]
    with pytest.raises(Invalid, match="podCIDR"):
        await alloc.admit_update(node("a", "10.244.9.0/24"), old)
    bare = node("z")
    cache.put(bare)
    later = node("z")
    await alloc.admit_update(later, bare)
    assert later["spec"]["podCIDR"] == "10.244.1.0/24"
