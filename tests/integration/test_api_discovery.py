"""Discovery, version, health, OpenAPI and server-side Table output: what kubectl and the
official client read before they send anything."""

from __future__ import annotations

import json

import pytest


TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


def by_name(resource_list: dict) -> dict[str, dict]:
    return {r["name"]: r for r in resource_list["resources"]}


async def test_api_versions(http, apiserver):
    r = await http.get("/api")
    assert r.status_code == 200
    doc = r.json()
    assert doc["kind"] == "APIVersions" and doc["versions"] == ["v1"]
    assert doc["serverAddressByClientCIDRs"][0]["clientCIDR"] == "0.0.0.0/0"


async def test_api_group_list(http):
    doc = (await http.get("/apis")).json()
    assert doc["kind"] == "APIGroupList" and doc["apiVersion"] == "v1"
    groups = {g["name"]: g for g in doc["groups"]}
    assert {"apps", "batch", "coordination.k8s.io", "autoscaling"} <= set(groups)
    assert "" not in groups
    assert groups["apps"]["preferredVersion"] == {"groupVersion": "apps/v1", "version": "v1"}
    assert {"groupVersion": "autoscaling/v2", "version": "v2"} in groups["autoscaling"]["versions"]

    one = (await http.get("/apis/apps")).json()
    assert one["kind"] == "APIGroup" and one["name"] == "apps"


async def test_core_v1_resources(http):
    doc = (await http.get("/api/v1")).json()
    assert doc["kind"] == "APIResourceList" and doc["groupVersion"] == "v1"
    res = by_name(doc)
    pods = res["pods"]
    assert pods["kind"] == "Pod" and pods["namespaced"] is True and pods["singularName"] == "pod"
    assert pods["shortNames"] == ["po"]
    assert sorted(pods["verbs"]) == ["create", "delete", "deletecollection", "get", "list",
                                     "patch", "update", "watch"]
    assert res["pods/status"]["verbs"] == ["get", "patch", "update"]
    assert res["pods/binding"]["verbs"] == ["create"] and res["pods/binding"]["kind"] == "Binding"
    ns = res["namespaces"]
    assert ns["namespaced"] is False and ns["shortNames"] == ["ns"]
    assert "deletecollection" not in ns["verbs"]
    assert res["namespaces/finalize"]["verbs"] == ["update"]
    assert res["nodes"]["namespaced"] is False
    assert res["services"]["shortNames"] == ["svc"]
    assert res["configmaps"]["shortNames"] == ["cm"]
    assert res["events"]["shortNames"] == ["ev"]
    assert res["endpoints"]["singularName"] == "endpoints"


async def test_apps_v1_resources(http):
    doc = (await http.get("/apis/apps/v1")).json()
    assert doc["kind"] == "APIResourceList" and doc["groupVersion"] == "apps/v1"
    res = by_name(doc)
    d = res["deployments"]
    assert d["kind"] == "Deployment" and d["namespaced"] is True
    assert d["shortNames"] == ["deploy"] and d["categories"] == ["all"]
    assert sorted(d["verbs"]) == ["create", "delete", "deletecollection", "get", "list",
                                  "patch", "update", "watch"]
    scale = res["deployments/scale"]
    assert scale == {"name": "deployments/scale", "singularName": "", "namespaced": True,
                     "kind": "Scale", "verbs": ["get", "patch", "update"],
                     "group": "autoscaling", "version": "v1"}
    assert res["deployments/status"]["kind"] == "Deployment"
    assert {"replicasets", "statefulsets", "daemonsets", "replicasets/scale"} <= set(res)


async def test_unknown_group_versions_are_404(http):
    for path in ("/apis/nope", "/apis/apps/v7"):
        r = await http.get(path)
        assert r.status_code == 404
        assert r.json()["reason"] == "NotFound"


async def test_version(http):
    doc = (await http.get("/version")).json()
    assert doc["gitVersion"].startswith("v1.32")
    assert doc["major"] == "1" and doc["minor"] == "32"
    assert doc["platform"]


@pytest.mark.parametrize("path", ["/healthz", "/livez", "/readyz"])
async def test_health(http, path):
    r = await http.get(path)
    assert r.status_code == 200 and r.text == "ok"
    r = await http.get(path, params={"verbose": "1"})
    assert r.status_code == 200
    assert "[+]etcd ok" in r.text and r.text.rstrip().endswith("check passed")


async def test_openapi_v3(http):
    r = await http.get("/openapi/v3")
    assert r.status_code == 200
    paths = r.json()["paths"]
    assert "api/v1" in paths and "apis/apps/v1" in paths
    url = paths["apis/apps/v1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/apps/v1")
    doc = (await http.get(url)).json()
    assert doc["openapi"].startswith("3.")
    schemas = doc["components"]["schemas"]
    deployment = schemas["io.k8s.api.apps.v1.Deployment"]
    assert {"apiVersion", "kind", "metadata", "spec", "status"} <= set(deployment["properties"])
    assert deployment["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "version": "v1", "kind": "Deployment"}]
    r = await http.get("/openapi/v3/apis/nope/v1")
    assert r.status_code == 404 and r.json()["reason"] == "NotFound"


async def test_openapi_v2(http):
    r = await http.get("/openapi/v2", headers={"Accept": "application/json"})
    assert r.status_code == 200
    doc = r.json()
    assert doc["swagger"] == "2.0"
    assert "io.k8s.api.core.v1.Pod" in doc["definitions"]
    # kubectl 1.20 asks for protobuf first; an empty 200 satisfies it.
    r = await http.get("/openapi/v2", headers={
        "Accept": "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"})
    assert r.status_code == 200 and r.content == b""


# --- Table output --------------------------------------------------------------------------


async def test_table_for_pod_list_and_get(http, client, ns):
    await client.create("pods", {"metadata": {"name": "tp", "labels": {"a": "b"}},
                                 "spec": {"containers": [{"name": "c", "image": "i"},
                                                         {"name": "d", "image": "i"}]}}, ns)
    r = await http.get(f"/api/v1/namespaces/{ns}/pods", headers={"Accept": TABLE_ACCEPT})
    assert r.status_code == 200
    t = r.json()
    assert t["kind"] == "Table" and t["apiVersion"] == "meta.k8s.io/v1"
    assert int(t["metadata"]["resourceVersion"]) > 0
    cols = [c["name"] for c in t["columnDefinitions"]]
    assert cols[:5] == ["Name", "Ready", "Status", "Restarts", "Age"]
    assert t["columnDefinitions"][0]["format"] == "name"
    assert len(t["rows"]) == 1
    row = t["rows"][0]
    assert row["cells"][:4] == ["tp", "0/2", "Pending", "0"]
    assert row["object"]["kind"] == "PartialObjectMetadata"
    assert row["object"]["metadata"]["name"] == "tp"
    assert row["object"]["metadata"]["labels"] == {"a": "b"}

    r = await http.get(f"/api/v1/namespaces/{ns}/pods/tp", headers={"Accept": TABLE_ACCEPT},
                       params={"includeObject": "Object"})
    t = r.json()
    assert t["kind"] == "Table" and [row["cells"][0] for row in t["rows"]] == ["tp"]
    assert t["rows"][0]["object"]["kind"] == "Pod"
    assert t["rows"][0]["object"]["spec"]["containers"][0]["name"] == "c"
    assert t["metadata"]["resourceVersion"] == t["rows"][0]["object"]["metadata"][
        "resourceVersion"]


async def test_table_for_deployments_and_namespaces(http, client, ns):
    await client.create("deployments", {
        "metadata": {"name": "td"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}},
                              "spec": {"containers": [{"name": "c", "image": "i"}]}}}}, ns)
    t = (await http.get(f"/apis/apps/v1/namespaces/{ns}/deployments",
                        headers={"Accept": TABLE_ACCEPT})).json()
    assert [c["name"] for c in t["columnDefinitions"]][:5] == \
        ["Name", "Ready", "Up-to-date", "Available", "Age"]
    assert t["rows"][0]["cells"][:4] == ["td", "0/3", 0, 0]

    t = (await http.get(f"/api/v1/namespaces/{ns}", headers={"Accept": TABLE_ACCEPT})).json()
    assert [c["name"] for c in t["columnDefinitions"]] == ["Name", "Status", "Age"]
    assert t["rows"][0]["cells"][:2] == [ns, "Active"]


async def test_table_paging_carries_continue(http, client, ns):
    for i in range(3):
        await client.create("configmaps", {"metadata": {"name": f"c{i}"}}, ns)
    t = (await http.get(f"/api/v1/namespaces/{ns}/configmaps", params={"limit": "2"},
                        headers={"Accept": TABLE_ACCEPT})).json()
    assert len(t["rows"]) == 2 and t["metadata"]["continue"]


async def test_plain_json_when_table_not_asked(http, client, ns):
    r = await http.get(f"/api/v1/namespaces/{ns}/pods", headers={"Accept": "application/json"})
    assert r.json()["kind"] == "PodList"
    r = await http.get(f"/api/v1/namespaces/{ns}/pods",
                       headers={"Accept": "application/json;as=Table;v=v9;g=meta.k8s.io,"
                                          "application/json"})
    assert r.json()["kind"] == "PodList"


async def test_table_with_bad_include_object_is_400(http, ns):
    r = await http.get(f"/api/v1/namespaces/{ns}/pods", params={"includeObject": "Everything"},
                       headers={"Accept": TABLE_ACCEPT})
    assert r.status_code == 400
    assert r.json()["reason"] == "BadRequest"


async def test_watch_as_table(http, client, ns):
    start = (await client.list("configmaps", ns))["metadata"]["resourceVersion"]
    async with http.stream("GET", f"/api/v1/namespaces/{ns}/configmaps",
                           params={"watch": "true", "resourceVersion": start},
                           headers={"Accept": TABLE_ACCEPT}) as resp:
        lines = resp.aiter_lines()
        await client.create("configmaps", {"metadata": {"name": "tw"}, "data": {"a": "1"}}, ns)
        event = json.loads(await lines.__anext__())
    assert event["type"] == "ADDED"
    t = event["object"]
    assert t["kind"] == "Table" and t["apiVersion"] == "meta.k8s.io/v1"
    assert [c["name"] for c in t["columnDefinitions"]] == ["Name", "Data", "Age"]
    assert t["rows"][0]["cells"][:2] == ["tw", 1]
    assert t["rows"][0]["object"]["metadata"]["name"] == "tw"
