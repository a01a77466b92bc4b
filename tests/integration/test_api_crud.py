"""The basic verbs against a real API server: create (with ``generateName``), get, list,
update, patch, delete, deletecollection; ``dryRun``; ``fieldValidation``; server-set
metadata and ``generation``; the ``status``, ``scale`` and ``binding`` subresources."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from minik8s.api.errors import AlreadyExists, Conflict, NotFound


def pod(name: str, **labels: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": dict(labels)},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}


def deployment(name: str, replicas: int = 1) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "web",
                                                           "image": "nginx:1.27"}]}}}}


def cm(name: str, **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": dict(data)}


# --- create / get / list / update / patch / delete -----------------------------------------


async def test_create_get_list_update_patch_delete(client, ns):
    created = await client.create("configmaps", cm("one", a="1"), ns)
    assert created["kind"] == "ConfigMap" and created["apiVersion"] == "v1"
    assert created["metadata"]["namespace"] == ns
    assert created["data"] == {"a": "1"}

    got = await client.get("configmaps", "one", ns)
    assert got == created

    listed = await client.list("configmaps", ns)
    assert listed["kind"] == "ConfigMapList" and listed["apiVersion"] == "v1"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["one"]
    assert int(listed["metadata"]["resourceVersion"]) >= int(created["metadata"]["resourceVersion"])

    got["data"]["b"] = "2"
    updated = await client.update("configmaps", got, ns)
    assert updated["data"] == {"a": "1", "b": "2"}
    assert int(updated["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    assert updated["metadata"]["uid"] == created["metadata"]["uid"]

    patched = await client.patch("configmaps", "one", {"data": {"a": None, "c": "3"}}, ns)
    assert patched["data"] == {"b": "2", "c": "3"}

    status = await client.delete("configmaps", "one", ns)
    assert status["kind"] == "Status" and status["status"] == "Success"
    assert status["details"]["name"] == "one"
    assert status["details"]["uid"] == created["metadata"]["uid"]
    with pytest.raises(NotFound) as exc:
        await client.get("configmaps", "one", ns)
    assert str(exc.value) == 'configmaps "one" not found'


async def test_delete_pod_returns_the_object(client, ns):
    await client.create("pods", pod("p"), ns)
    out = await client.delete("pods", "p", ns)
    assert out["kind"] == "Pod" and out["metadata"]["name"] == "p"
    with pytest.raises(NotFound):
        await client.get("pods", "p", ns)


async def test_create_with_generate_name(client, ns):
    body = {"metadata": {"generateName": "web-"}, "data": {"k": "v"}}
    a = await client.create("configmaps", body, ns)
    b = await client.create("configmaps", body, ns)
    for obj in (a, b):
        assert obj["metadata"]["generateName"] == "web-"
        assert re.fullmatch(r"web-[a-z0-9]{5}", obj["metadata"]["name"])
    assert a["metadata"]["name"] != b["metadata"]["name"]
    assert (await client.get("configmaps", a["metadata"]["name"], ns))["data"] == {"k": "v"}


async def test_server_sets_uid_timestamp_generation(client, ns):
    body = deployment("d")
    body["metadata"].update({"uid": "forged", "creationTimestamp": "2000-01-01T00:00:00Z",
                             "generation": 42, "resourceVersion": "7"})
    created = await client.create("deployments", body, ns)
    md = created["metadata"]
    assert md["uid"] != "forged" and re.fullmatch(r"[0-9a-f-]{36}", md["uid"])
    assert md["creationTimestamp"] != "2000-01-01T00:00:00Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", md["creationTimestamp"])
    assert md["generation"] == 1
    assert md["resourceVersion"] != "7"

    # An update cannot overwrite them either.
    uid, created_at = md["uid"], md["creationTimestamp"]
    created["metadata"].update({"uid": "forged", "generation": 9,
                                "creationTimestamp": "2000-01-01T00:00:00Z"})
    updated = await client.update("deployments", created, ns)
    assert updated["metadata"]["uid"] == uid
    assert updated["metadata"]["creationTimestamp"] == created_at
    assert updated["metadata"]["generation"] == 1


async def test_generation_bumps_on_spec_change_only(client, ns):
    d = await client.create("deployments", deployment("gen"), ns)
    assert d["metadata"]["generation"] == 1

    d = await client.patch("deployments", "gen", {"metadata": {"labels": {"x": "y"},
                                                               "annotations": {"a": "b"}}}, ns)
    assert d["metadata"]["labels"] == {"x": "y"}
    assert d["metadata"]["generation"] == 1

    d = await client.patch("deployments", "gen", {"status": {"replicas": 3}}, ns,
                           subresource="status")
    assert d["status"]["replicas"] == 3
    assert d["metadata"]["generation"] == 1

    d = await client.patch("deployments", "gen", {"spec": {"replicas": 4}}, ns)
    assert d["metadata"]["generation"] == 2

    d["spec"]["paused"] = True
    d = await client.update("deployments", d, ns)
    assert d["metadata"]["generation"] == 3

    # A write that changes nothing keeps generation and resourceVersion.
    again = await client.update("deployments", d, ns)
    assert again["metadata"]["generation"] == 3
    assert again["metadata"]["resourceVersion"] == d["metadata"]["resourceVersion"]


async def test_create_existing_is_already_exists(client, ns):
    await client.create("configmaps", cm("dup"), ns)
    with pytest.raises(AlreadyExists) as exc:
        await client.create("configmaps", cm("dup"), ns)
    assert exc.value.code == 409
    assert str(exc.value) == 'configmaps "dup" already exists'
    assert exc.value.details == {"name": "dup", "group": "", "kind": "configmaps"}


async def test_update_with_stale_resource_version_conflicts(client, ns):
    first = await client.create("configmaps", cm("c", v="1"), ns)
    second = await client.update("configmaps", {**first, "data": {"v": "2"}}, ns)
    with pytest.raises(Conflict) as exc:
        await client.update("configmaps", {**first, "data": {"v": "3"}}, ns)
    assert exc.value.code == 409 and exc.value.reason == "Conflict"
    assert str(exc.value) == ('Operation cannot be fulfilled on configmaps "c": the object has '
                              'been modified; please apply your changes to the latest version '
                              'and try again')
    # A patch carrying a stale version is a precondition that fails the same way.
    with pytest.raises(Conflict):
        await client.patch("configmaps", "c", {"metadata": {"resourceVersion":
                                                            first["metadata"]["resourceVersion"]},
                                               "data": {"v": "4"}}, ns)
    assert (await client.get("configmaps", "c", ns))["data"] == {"v": "2"}
    assert second["data"] == {"v": "2"}


async def test_update_missing_object_is_not_found(client, ns):
    with pytest.raises(NotFound) as exc:
        await client.update("configmaps", cm("ghost"), ns)
    assert str(exc.value) == 'configmaps "ghost" not found'


async def test_deletecollection_with_label_selector(client, ns):
    for i in range(4):
        body = cm(f"c{i}")
        body["metadata"]["labels"] = {"group": "a" if i < 3 else "b"}
        await client.create("configmaps", body, ns)
    out = await client.delete_collection("configmaps", ns, label_selector="group=a")
    assert out["kind"] == "ConfigMapList"
    assert sorted(i["metadata"]["name"] for i in out["items"]) == ["c0", "c1", "c2"]
    left = await client.list("configmaps", ns)
    assert [i["metadata"]["name"] for i in left["items"]] == ["c3"]


# --- dryRun --------------------------------------------------------------------------------


async def test_dry_run_stores_nothing(client, ns, http):
    out = await client.create("configmaps", cm("dry", a="1"), ns, dry_run=True)
    assert out["metadata"]["name"] == "dry" and out["data"] == {"a": "1"}
    assert out["metadata"]["uid"]
    with pytest.raises(NotFound):
        await client.get("configmaps", "dry", ns)

    real = await client.create("configmaps", cm("real", a="1"), ns)
    out = await client.update("configmaps", {**real, "data": {"a": "2"}}, ns, dry_run=True)
    assert out["data"] == {"a": "2"}
    out = await client.patch("configmaps", "real", {"data": {"a": "3"}}, ns, dry_run=True)
    assert out["data"] == {"a": "3"}
    now = await client.get("configmaps", "real", ns)
    assert now["data"] == {"a": "1"}
    assert now["metadata"]["resourceVersion"] == real["metadata"]["resourceVersion"]

    r = await http.delete(f"/api/v1/namespaces/{ns}/configmaps/real",
                          params={"dryRun": "All"})
    assert r.status_code == 200
    await client.delete("configmaps", "real", ns, dry_run=True)
    assert (await client.get("configmaps", "real", ns))["metadata"]["uid"] == \
        real["metadata"]["uid"]

    r = await http.post(f"/api/v1/namespaces/{ns}/configmaps", params={"dryRun": "Some"},
                        json=cm("x"))
    assert r.status_code == 400
    assert r.json()["message"] == 'dryRun: Unsupported value: "Some": supported values: "All"'


# --- fieldValidation -----------------------------------------------------------------------


async def test_field_validation_strict_rejects_unknown_field(http, ns):
    body = deployment("strict")
    body["spec"]["foo"] = 1
    r = await http.post(f"/apis/apps/v1/namespaces/{ns}/deployments",
                        params={"fieldValidation": "Strict"}, json=body)
    assert r.status_code == 400
    st = r.json()
    assert st["kind"] == "Status" and st["reason"] == "BadRequest" and st["code"] == 400
    assert st["message"] == 'strict decoding error: unknown field "spec.foo"'
    r = await http.get(f"/apis/apps/v1/namespaces/{ns}/deployments/strict")
    assert r.status_code == 404


async def test_field_validation_warn_stores_and_warns(http, ns):
    body = deployment("warn")
    body["spec"]["foo"] = 1
    r = await http.post(f"/apis/apps/v1/namespaces/{ns}/deployments",
                        params={"fieldValidation": "Warn"}, json=body)
    assert r.status_code == 201
    # RFC 7234 warn-text is a quoted-string: inner quotes are escaped (kubectl parses it).
    assert r.headers["warning"] == '299 - "unknown field \\"spec.foo\\""'
    r = await http.get(f"/apis/apps/v1/namespaces/{ns}/deployments/warn")
    assert r.status_code == 200
    assert r.json()["spec"]["replicas"] == 1


@pytest.mark.parametrize("mode", ["Warn", "Ignore"])
async def test_unknown_fields_are_dropped_when_not_strict(http, ns, mode):
    body = deployment(f"drop-{mode.lower()}")
    body["spec"]["foo"] = 1
    r = await http.post(f"/apis/apps/v1/namespaces/{ns}/deployments",
                        params={"fieldValidation": mode}, json=body)
    assert r.status_code == 201
    assert "foo" not in r.json()["spec"]


async def test_field_validation_ignore(http, ns):
    body = deployment("ignore")
    body["spec"]["foo"] = 1
    r = await http.post(f"/apis/apps/v1/namespaces/{ns}/deployments",
                        params={"fieldValidation": "Ignore"}, json=body)
    assert r.status_code == 201
    assert "warning" not in r.headers


async def test_field_validation_strict_on_update_and_patch(http, client, ns):
    d = await client.create("deployments", deployment("upd"), ns)
    d["spec"]["template"]["spec"]["containers"][0]["bogus"] = True
    r = await http.put(f"/apis/apps/v1/namespaces/{ns}/deployments/upd",
                       params={"fieldValidation": "Strict"}, json=d)
    assert r.status_code == 400
    assert r.json()["message"] == ('strict decoding error: unknown field '
                                   '"spec.template.spec.containers[0].bogus"')
    r = await http.patch(f"/apis/apps/v1/namespaces/{ns}/deployments/upd",
                         params={"fieldValidation": "Strict"},
                         headers={"Content-Type": "application/merge-patch+json"},
                         content=json.dumps({"spec": {"foo": 1}}))
    assert r.status_code == 400
    assert r.json()["message"] == 'strict decoding error: unknown field "spec.foo"'


async def test_duplicate_json_keys(http, ns):
    raw = ('{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dupkey","name":"dupkey"},'
           '"data":{"a":"1"}}')
    url = f"/api/v1/namespaces/{ns}/configmaps"
    hdrs = {"Content-Type": "application/json"}
    r = await http.post(url, params={"fieldValidation": "Strict"}, content=raw, headers=hdrs)
    assert r.status_code == 400
    assert r.json()["message"] == 'strict decoding error: duplicate field "metadata.name"'
    r = await http.post(url, params={"fieldValidation": "Warn"}, content=raw, headers=hdrs)
    assert r.status_code == 201
    assert r.headers["warning"] == '299 - "duplicate field \\"metadata.name\\""'



async def test_field_validation_invalid_value_is_400(http, ns):
    r = await http.post(f"/api/v1/namespaces/{ns}/configmaps",
                        params={"fieldValidation": "Loud"}, json=cm("x"))
    assert r.status_code == 400
    assert r.json()["message"].startswith('fieldValidation: Unsupported value: "Loud"')


# --- status subresource --------------------------------------------------------------------


async def test_status_subresource_writes_only_status(client, ns):
    d = await client.create("deployments", deployment("st", replicas=2), ns)
    assert "status" not in d or not d["status"].get("replicas")

    d["status"] = {"replicas": 2, "readyReplicas": 1}
    d["spec"]["replicas"] = 9
    d["metadata"]["labels"] = {"sneaky": "yes"}
    out = await client.update_status("deployments", d, namespace=ns)
    assert out["status"]["replicas"] == 2 and out["status"]["readyReplicas"] == 1
    assert out["spec"]["replicas"] == 2
    assert "sneaky" not in (out["metadata"].get("labels") or {})

    out = await client.patch("deployments", "st", {"status": {"readyReplicas": 2},
                                                   "spec": {"replicas": 7}}, ns,
                             subresource="status")
    assert out["status"]["readyReplicas"] == 2 and out["spec"]["replicas"] == 2

    got = await client.get("deployments", "st", ns, subresource="status")
    assert got["kind"] == "Deployment" and got["status"]["readyReplicas"] == 2


async def test_put_of_main_resource_ignores_status(client, ns):
    d = await client.create("deployments", deployment("main"), ns)
    d = await client.patch("deployments", "main", {"status": {"replicas": 1}}, ns,
                           subresource="status")
    d["status"] = {"replicas": 99}
    d["spec"]["replicas"] = 3
    out = await client.update("deployments", d, ns)
    assert out["spec"]["replicas"] == 3
    assert out["status"]["replicas"] == 1
    out = await client.patch("deployments", "main", {"status": {"replicas": 50}}, ns)
    assert out["status"]["replicas"] == 1
    # status given on create is dropped too
    body = deployment("withstatus")
    body["status"] = {"replicas": 5}
    out = await client.create("deployments", body, ns)
    assert (out.get("status") or {}).get("replicas") in (None, 0)


# --- scale subresource ---------------------------------------------------------------------


async def test_scale_subresource(client, ns, http):
    d = await client.create("deployments", deployment("sc", replicas=2), ns)
    scale = await client.get("deployments", "sc", ns, subresource="scale")
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["metadata"]["name"] == "sc" and scale["metadata"]["namespace"] == ns
    assert scale["metadata"]["uid"] == d["metadata"]["uid"]
    assert scale["spec"] == {"replicas": 2}
    assert scale["status"]["selector"] == "app=sc"

    scale["spec"]["replicas"] = 5
    out = await client.update("deployments", scale, ns, subresource="scale")
    assert out["kind"] == "Scale" and out["spec"]["replicas"] == 5
    assert (await client.get("deployments", "sc", ns))["spec"]["replicas"] == 5

    out = await client.patch("deployments", "sc", {"spec": {"replicas": 1}}, ns,
                             subresource="scale")
    assert out["kind"] == "Scale" and out["spec"]["replicas"] == 1
    full = await client.get("deployments", "sc", ns)
    assert full["spec"]["replicas"] == 1 and full["metadata"]["generation"] == 3

    # A stale resourceVersion on the Scale is a conflict.
    with pytest.raises(Conflict):
        await client.update("deployments", scale, ns, subresource="scale")

    r = await http.put(f"/apis/apps/v1/namespaces/{ns}/deployments/sc/scale",
                       json={"apiVersion": "autoscaling/v1", "kind": "Scale",
                             "metadata": {"name": "sc", "namespace": ns},
                             "spec": {"replicas": -1}})
    assert r.status_code == 422
    st = r.json()
    assert st["reason"] == "Invalid"
    assert [c["field"] for c in st["details"]["causes"]] == ["spec.replicas"]


async def test_scale_of_missing_deployment_is_404(http, ns):
    r = await http.get(f"/apis/apps/v1/namespaces/{ns}/deployments/none/scale")
    assert r.status_code == 404
    assert r.json()["message"] == 'deployments.apps "none" not found'


# --- binding subresource -------------------------------------------------------------------


async def test_binding_sets_node_name_once(client, ns, http):
    await client.create("pods", pod("b"), ns)
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "b"},
               "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}}
    r = await http.post(f"/api/v1/namespaces/{ns}/pods/b/binding", json=binding)
    assert r.status_code == 201
    assert r.json()["status"] == "Success"
    p = await client.get("pods", "b", ns)
    assert p["spec"]["nodeName"] == "node-1"
    assert any(c["type"] == "PodScheduled" and c["status"] == "True"
               for c in p["status"]["conditions"])

    binding["target"]["name"] = "node-2"
    r = await http.post(f"/api/v1/namespaces/{ns}/pods/b/binding", json=binding)
    assert r.status_code == 409
    st = r.json()
    assert st["reason"] == "Conflict"
    assert 'already assigned to node "node-1"' in st["message"]
    assert (await client.get("pods", "b", ns))["spec"]["nodeName"] == "node-1"


async def test_binding_errors(http, client, ns):
    r = await http.post(f"/api/v1/namespaces/{ns}/pods/missing/binding",
                        json={"metadata": {"name": "missing"}, "target": {"name": "n"}})
    assert r.status_code == 404
    await client.create("pods", pod("nt"), ns)
    r = await http.post(f"/api/v1/namespaces/{ns}/pods/nt/binding",
                        json={"metadata": {"name": "nt"}, "target": {}})
    assert r.status_code == 422
    assert r.json()["details"]["causes"][0]["field"] == "target.name"


# --- concurrency ---------------------------------------------------------------------------


async def test_concurrent_updates_with_one_version_one_wins(client, ns):
    base = await client.create("configmaps", cm("race", n="0"), ns)
    results = await asyncio.gather(
        *(client.update("configmaps", {**base, "data": {"n": str(i)}}, ns) for i in range(1, 11)),
        return_exceptions=True)
    winners = [r for r in results if isinstance(r, dict)]
    losers = [r for r in results if not isinstance(r, dict)]
    assert len(winners) == 1
    assert len(losers) == 9 and all(isinstance(e, Conflict) for e in losers)
    assert (await client.get("configmaps", "race", ns))["data"] == winners[0]["data"]


async def test_concurrent_patches_all_apply(client, ns):
    await client.create("configmaps", cm("many"), ns)
    await asyncio.gather(*(client.patch("configmaps", "many", {"data": {f"k{i}": str(i)}}, ns)
                           for i in range(10)))
    got = await client.get("configmaps", "many", ns)
    assert got["data"] == {f"k{i}": str(i) for i in range(10)}


async def test_concurrent_unconditional_updates_all_succeed(client, ns):
    """A PUT without resourceVersion is unconditional: it never fails with a conflict."""
    await client.create("configmaps", cm("uncond"), ns)
    bodies = [{"metadata": {"name": "uncond"}, "data": {"n": str(i)}} for i in range(10)]
    results = await asyncio.gather(*(client.update("configmaps", b, ns) for b in bodies))
    assert sorted(r["data"]["n"] for r in results) == [str(i) for i in range(10)]
    final = await client.get("configmaps", "uncond", ns)
    assert final["metadata"]["resourceVersion"] == max(
        (r["metadata"]["resourceVersion"] for r in results), key=int)
