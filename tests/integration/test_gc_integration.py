"""The garbage collector against the real API server: DELETE with each propagationPolicy
on an owner whose dependents are other objects (ConfigMaps, unbound Pods, which the API
server deletes at once), with the collector run in-process."""

from __future__ import annotations

import asyncio

from cluster import eventually, running_controllers
from minik8s.api.errors import NotFound


def owned_by(owner, *, block=True):
    md = owner["metadata"]
    return [{"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": md["name"],
             "uid": md["uid"], "blockOwnerDeletion": block}]


async def configmap(client, ns, name, owner=None, block=True):
    md = {"name": name}
    if owner is not None:
        md["ownerReferences"] = owned_by(owner, block=block)
    return await client.create("configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                              "metadata": md, "data": {"k": "v"}}, ns)


async def pod(client, ns, name, owner):
    return await client.create("pods", {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "ownerReferences": owned_by(owner)},
        "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}, ns)


def gone(client, kind, name, ns):
    async def check():
        try:
            await client.get(kind, name, ns)
            return False
        except NotFound:
            return True
    return check


async def test_background_deletes_dependents_after_the_owner(client, ns):
    async with running_controllers(client, ["garbagecollector"]):
        owner = await configmap(client, ns, "owner")
        mid = await configmap(client, ns, "mid", owner)
        await pod(client, ns, "leaf", mid)
        await client.delete("configmaps", "owner", ns, propagation_policy="Background")
        await eventually(gone(client, "configmaps", "mid", ns))
        await eventually(gone(client, "pods", "leaf", ns))


async def test_dependent_with_a_missing_owner_is_collected(client, ns):
    async with running_controllers(client, ["garbagecollector"]):
        ghost = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "never", "uid": "00000000-0000-0000-0000-000000000000"}}
        await configmap(client, ns, "orphaned", ghost)
        await eventually(gone(client, "configmaps", "orphaned", ns))


async def test_dependent_with_a_live_owner_stays(client, ns):
    async with running_controllers(client, ["garbagecollector"]):
        owner = await configmap(client, ns, "keeper")
        await configmap(client, ns, "kept", owner)
        await asyncio.sleep(1.0)
        await client.get("configmaps", "kept", ns)


async def test_foreground_deletes_dependents_first(client, ns):
    async with running_controllers(client, ["garbagecollector"]):
        owner = await configmap(client, ns, "fg-owner")
        mid = await configmap(client, ns, "fg-mid", owner)
        await pod(client, ns, "fg-leaf", mid)
        await client.delete("configmaps", "fg-owner", ns, propagation_policy="Foreground")
        # the owner stays, marked, while it waits for its dependents ...
        marked = await client.get("configmaps", "fg-owner", ns)
        assert marked["metadata"].get("deletionTimestamp")
        assert "foregroundDeletion" in marked["metadata"]["finalizers"]
        # ... which go first, then the owner itself
        await eventually(gone(client, "pods", "fg-leaf", ns))
        await eventually(gone(client, "configmaps", "fg-mid", ns))
        await eventually(gone(client, "configmaps", "fg-owner", ns))


async def test_foreground_waits_for_a_blocking_dependent_held_by_a_finalizer(client, ns):
    async with running_controllers(client, ["garbagecollector"]):
        owner = await configmap(client, ns, "w-owner")
        dep = await configmap(client, ns, "w-dep", owner)
        dep["metadata"]["finalizers"] = ["example.com/hold"]
        await client.update("configmaps", dep, ns)
        await client.delete("configmaps", "w-owner", ns, propagation_policy="Foreground")

        async def dep_marked():
            d = await client.get("configmaps", "w-dep", ns)
            return d if d["metadata"].get("deletionTimestamp") else None

        held = await eventually(dep_marked)
        await asyncio.sleep(0.5)
        assert (await client.get("configmaps", "w-owner", ns))["metadata"]["deletionTimestamp"]
        held["metadata"]["finalizers"] = []
        await client.update("configmaps", held, ns)
        await eventually(gone(client, "configmaps", "w-owner", ns))


async def test_orphan_keeps_dependents_without_the_reference(client, ns):
    async with running_controllers(client, ["garbagecollector"]):
        owner = await configmap(client, ns, "o-owner")
        await configmap(client, ns, "o-dep", owner)
        await pod(client, ns, "o-pod", owner)
        await client.delete("configmaps", "o-owner", ns, propagation_policy="Orphan")
        await eventually(gone(client, "configmaps", "o-owner", ns))
        await asyncio.sleep(0.5)
        dep = await client.get("configmaps", "o-dep", ns)
        p = await client.get("pods", "o-pod", ns)
        assert not dep["metadata"].get("ownerReferences")
        assert not p["metadata"].get("ownerReferences")
