"""Deletion semantics: finalizers and ``deletionTimestamp``, graceful pod deletion,
``propagationPolicy`` and delete preconditions."""

from __future__ import annotations

import pytest

from minik8s.api.errors import Conflict, Invalid, NotFound


def pod(name: str, **spec) -> dict:
    return {"metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}], **spec}}


async def bound_pod(client, ns: str, name: str, node: str = "node-a", **spec) -> dict:
    await client.create("pods", pod(name, **spec), ns)
    await client.create("pods", {"metadata": {"name": name}, "target": {"name": node}}, ns,
                        subresource="binding", name=name)
    return await client.get("pods", name, ns)


# --- finalizers ----------------------------------------------------------------------------


async def test_finalizer_keeps_object_until_removed_by_patch(client, ns):
    await client.create("configmaps", {"metadata": {"name": "f",
                                                    "finalizers": ["example.com/hold"]}}, ns)
    out = await client.delete("configmaps", "f", ns)
    assert out["kind"] == "ConfigMap"
    md = out["metadata"]
    assert md["deletionTimestamp"]
    assert md["deletionGracePeriodSeconds"] == 0
    assert md["finalizers"] == ["example.com/hold"]

    still = await client.get("configmaps", "f", ns)
    assert still["metadata"]["deletionTimestamp"] == md["deletionTimestamp"]

    # Deleting again changes nothing.
    again = await client.delete("configmaps", "f", ns)
    assert again["metadata"]["deletionTimestamp"] == md["deletionTimestamp"]
    assert again["metadata"]["resourceVersion"] == still["metadata"]["resourceVersion"]

    # Other writes keep the deletion mark.
    out = await client.patch("configmaps", "f", {"data": {"x": "1"}}, ns)
    assert out["metadata"]["deletionTimestamp"] == md["deletionTimestamp"]

    await client.patch("configmaps", "f", {"metadata": {"finalizers": None}}, ns)
    with pytest.raises(NotFound):
        await client.get("configmaps", "f", ns)


async def test_last_finalizer_removed_by_update(client, ns):
    await client.create("configmaps", {"metadata": {"name": "u",
                                                    "finalizers": ["a.io/one", "b.io/two"]}}, ns)
    await client.delete("configmaps", "u", ns)
    obj = await client.get("configmaps", "u", ns)
    obj["metadata"]["finalizers"] = ["b.io/two"]
    obj = await client.update("configmaps", obj, ns)
    assert obj["metadata"]["finalizers"] == ["b.io/two"]
    assert obj["metadata"]["deletionTimestamp"]
    obj["metadata"]["finalizers"] = []
    await client.update("configmaps", obj, ns)
    with pytest.raises(NotFound):
        await client.get("configmaps", "u", ns)


async def test_deletion_timestamp_cannot_be_set_or_cleared_by_writes(client, ns):
    created = await client.create("configmaps", {"metadata": {
        "name": "ts", "deletionTimestamp": "2020-01-01T00:00:00Z"}}, ns)
    assert "deletionTimestamp" not in created["metadata"]
    out = await client.patch("configmaps", "ts", {"metadata": {
        "deletionTimestamp": "2020-01-01T00:00:00Z"}}, ns)
    assert "deletionTimestamp" not in out["metadata"]


# --- graceful pod deletion -----------------------------------------------------------------


async def test_bound_pod_deletion_is_graceful(client, ns):
    await bound_pod(client, ns, "g")
    out = await client.delete("pods", "g", ns)
    md = out["metadata"]
    assert md["deletionTimestamp"]
    assert md["deletionGracePeriodSeconds"] == 30  # spec.terminationGracePeriodSeconds default
    got = await client.get("pods", "g", ns)
    assert got["metadata"]["deletionGracePeriodSeconds"] == 30

    # A shorter grace period shortens it; a longer one does not lengthen it.
    out = await client.delete("pods", "g", ns, grace_period_seconds=10)
    assert out["metadata"]["deletionGracePeriodSeconds"] == 10
    out = await client.delete("pods", "g", ns, grace_period_seconds=20)
    assert out["metadata"]["deletionGracePeriodSeconds"] == 10

    out = await client.delete("pods", "g", ns, grace_period_seconds=0)
    assert out["metadata"]["name"] == "g"
    with pytest.raises(NotFound):
        await client.get("pods", "g", ns)


async def test_grace_period_from_pod_spec(client, ns):
    await bound_pod(client, ns, "spec-grace", terminationGracePeriodSeconds=7)
    out = await client.delete("pods", "spec-grace", ns)
    assert out["metadata"]["deletionGracePeriodSeconds"] == 7
    assert (await client.get("pods", "spec-grace", ns))["metadata"]["deletionTimestamp"]


async def test_grace_period_from_query(http, client, ns):
    await bound_pod(client, ns, "q")
    r = await http.delete(f"/api/v1/namespaces/{ns}/pods/q", params={"gracePeriodSeconds": "3"})
    assert r.status_code == 200
    assert r.json()["metadata"]["deletionGracePeriodSeconds"] == 3
    r = await http.delete(f"/api/v1/namespaces/{ns}/pods/q", params={"gracePeriodSeconds": "0"})
    assert r.status_code == 200
    r = await http.get(f"/api/v1/namespaces/{ns}/pods/q")
    assert r.status_code == 404


async def test_unbound_pod_goes_at_once(client, ns):
    await client.create("pods", pod("free"), ns)
    out = await client.delete("pods", "free", ns)
    assert out["metadata"]["name"] == "free"
    with pytest.raises(NotFound):
        await client.get("pods", "free", ns)


async def test_bound_pod_with_finalizer_waits_for_both(client, ns):
    await client.create("pods", {**pod("both"), "metadata": {"name": "both",
                                                             "finalizers": ["x.io/f"]}}, ns)
    await client.create("pods", {"metadata": {"name": "both"}, "target": {"name": "n"}}, ns,
                        subresource="binding", name="both")
    await client.delete("pods", "both", ns, grace_period_seconds=0)
    got = await client.get("pods", "both", ns)
    assert got["metadata"]["deletionTimestamp"]
    await client.patch("pods", "both", {"metadata": {"finalizers": None}}, ns)
    with pytest.raises(NotFound):
        await client.get("pods", "both", ns)


# --- propagationPolicy ---------------------------------------------------------------------


@pytest.mark.parametrize("policy,finalizer", [("Foreground", "foregroundDeletion"),
                                              ("Orphan", "orphan")])
async def test_propagation_policy_adds_finalizer(client, ns, policy, finalizer):
    await client.create("configmaps", {"metadata": {"name": "pp"}}, ns)
    out = await client.delete("configmaps", "pp", ns, propagation_policy=policy)
    assert out["metadata"]["finalizers"] == [finalizer]
    assert out["metadata"]["deletionTimestamp"]
    got = await client.get("configmaps", "pp", ns)
    assert got["metadata"]["finalizers"] == [finalizer]
    await client.patch("configmaps", "pp", {"metadata": {"finalizers": None}}, ns)
    with pytest.raises(NotFound):
        await client.get("configmaps", "pp", ns)


async def test_background_policy_deletes_at_once(client, ns):
    await client.create("configmaps", {"metadata": {"name": "bg"}}, ns)
    out = await client.delete("configmaps", "bg", ns, propagation_policy="Background")
    assert out["status"] == "Success"
    with pytest.raises(NotFound):
        await client.get("configmaps", "bg", ns)


async def test_invalid_propagation_policy_is_422(client, http, ns):
    await client.create("configmaps", {"metadata": {"name": "bad"}}, ns)
    with pytest.raises(Invalid) as exc:
        await client.delete("configmaps", "bad", ns, propagation_policy="Sideways")
    assert exc.value.code == 422
    assert [c["field"] for c in exc.value.causes] == ["propagationPolicy"]
    r = await http.delete(f"/api/v1/namespaces/{ns}/configmaps/bad",
                          params={"propagationPolicy": "Nope"})
    assert r.status_code == 422 and r.json()["reason"] == "Invalid"
    assert (await client.get("configmaps", "bad", ns))["metadata"]["name"] == "bad"


async def test_orphan_dependents_true_means_orphan(client, http, ns):
    await client.create("configmaps", {"metadata": {"name": "od"}}, ns)
    r = await http.request("DELETE", f"/api/v1/namespaces/{ns}/configmaps/od",
                           json={"kind": "DeleteOptions", "apiVersion": "v1",
                                 "orphanDependents": True})
    assert r.status_code == 200
    assert r.json()["metadata"]["finalizers"] == ["orphan"]


# --- preconditions -------------------------------------------------------------------------


async def test_delete_preconditions(client, ns):
    obj = await client.create("configmaps", {"metadata": {"name": "pre"}}, ns)
    with pytest.raises(Conflict) as exc:
        await client.delete("configmaps", "pre", ns, preconditions={"uid": "other"})
    assert "Precondition failed: UID in precondition: other" in str(exc.value)
    await client.patch("configmaps", "pre", {"data": {"a": "b"}}, ns)
    with pytest.raises(Conflict):
        await client.delete("configmaps", "pre", ns, preconditions={
            "resourceVersion": obj["metadata"]["resourceVersion"]})
    await client.delete("configmaps", "pre", ns, preconditions={"uid": obj["metadata"]["uid"]})
    with pytest.raises(NotFound):
        await client.get("configmaps", "pre", ns)


async def test_delete_missing_is_404(client, ns):
    with pytest.raises(NotFound) as exc:
        await client.delete("deployments", "nothing", ns)
    assert str(exc.value) == 'deployments.apps "nothing" not found'
    assert exc.value.details == {"name": "nothing", "group": "apps", "kind": "deployments"}


# --- dry run -------------------------------------------------------------------------------


async def test_dry_run_delete_of_bound_pod_changes_nothing(client, ns):
    before = await bound_pod(client, ns, "dry")
    out = await client.delete("pods", "dry", ns, dry_run=True)
    assert out["metadata"]["deletionTimestamp"]
    after = await client.get("pods", "dry", ns)
    assert after == before
    await client.delete("pods", "dry", ns, grace_period_seconds=0, dry_run=True)
    assert await client.get("pods", "dry", ns) == before


async def test_dry_run_delete_with_finalizer_changes_nothing(client, ns):
    before = await client.create("configmaps", {"metadata": {"name": "df",
                                                             "finalizers": ["x.io/f"]}}, ns)
    out = await client.delete("configmaps", "df", ns, dry_run=True)
    assert out["metadata"]["deletionTimestamp"]
    assert await client.get("configmaps", "df", ns) == before


async def test_dry_run_deletecollection_changes_nothing(http, client, ns):
    for i in range(3):
        await client.create("configmaps", {"metadata": {"name": f"dc{i}"}}, ns)
    r = await http.delete(f"/api/v1/namespaces/{ns}/configmaps", params={"dryRun": "All"})
    assert r.status_code == 200
    assert sorted(i["metadata"]["name"] for i in r.json()["items"]) == ["dc0", "dc1", "dc2"]
    assert len((await client.list("configmaps", ns))["items"]) == 3
