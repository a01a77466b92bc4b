"""OpenAPI documents: what kubectl's fieldValidation check, client-side apply and explain read.

Several tests replay kubectl's own lookups (cli-runtime ``supportsQueryParamV3``, kubectl
``gvkSupportsPatchOpenAPIV3`` and the ``explain`` plaintext template) over the documents."""

from __future__ import annotations

import json
import re

import pytest

from apiserver.openapi import (PATCH_BODY_TYPES, openapi_v2, openapi_v3_group_version,
                               openapi_v3_hash, openapi_v3_root, schema_name)
from minik8s.api.registry import REGISTRY, RESOURCE_TYPES, Registry, ResourceType

METHODS = ("get", "put", "post", "patch", "delete")


def gv_doc(rt: ResourceType) -> dict:
    doc = openapi_v3_group_version(REGISTRY, rt.group, rt.version)
    assert doc is not None
    return doc


def gvk(rt: ResourceType) -> dict:
    return {"group": rt.group, "version": rt.version, "kind": rt.kind}


def operations(doc: dict):
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def param_names(op: dict) -> set[str]:
    return {p["name"] for p in op.get("parameters", [])}


# --------------------------------------------------------------------------- v3 root

def test_root_lists_every_group_version_with_a_hashed_url():
    root = openapi_v3_root(REGISTRY)
    expected = {f"apis/{g}/{v}" if g else f"api/{v}"
                for g, versions in REGISTRY.groups().items() for v in versions}
    assert set(root["paths"]) == expected
    for (group, versions) in REGISTRY.groups().items():
        for version in versions:
            key = f"apis/{group}/{version}" if group else f"api/{version}"
            url = root["paths"][key]["serverRelativeURL"]
            digest = openapi_v3_hash(REGISTRY, group, version)
            assert url == f"/openapi/v3/{key}?hash={digest}"
            assert re.fullmatch(r"[0-9A-F]{128}", digest)


def test_documents_are_cached_and_hashes_stable_across_registries():
    assert openapi_v3_root(REGISTRY) is openapi_v3_root(REGISTRY)
    assert openapi_v2(REGISTRY) is openapi_v2(REGISTRY)
    twin = Registry(RESOURCE_TYPES)
    assert openapi_v3_root(twin) == openapi_v3_root(REGISTRY)
    assert openapi_v3_group_version(twin, "apps", "v1") == \
        openapi_v3_group_version(REGISTRY, "apps", "v1")


def test_hash_changes_with_the_registry():
    smaller = Registry(tuple(t for t in RESOURCE_TYPES if t.kind != "StatefulSet"))
    assert openapi_v3_hash(smaller, "apps", "v1") != openapi_v3_hash(REGISTRY, "apps", "v1")
    assert openapi_v3_hash(smaller, "", "v1") == openapi_v3_hash(REGISTRY, "", "v1")


def test_unknown_group_version_is_none():
    assert openapi_v3_group_version(REGISTRY, "apps", "v2") is None
    assert openapi_v3_group_version(REGISTRY, "nope.io", "v1") is None
    assert openapi_v3_hash(REGISTRY, "nope.io", "v1") is None


# --------------------------------------------------------------------------- v3 documents

def test_apps_v1_create_deployment_declares_write_parameters():
    doc = openapi_v3_group_version(REGISTRY, "apps", "v1")
    assert doc["openapi"].startswith("3.0")
    post = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["post"]
    assert {"fieldValidation", "dryRun", "fieldManager"} <= param_names(post)
    assert post["x-kubernetes-group-version-kind"] == {
        "group": "apps", "version": "v1", "kind": "Deployment"}
    assert post["x-kubernetes-action"] == "post"
    assert post["operationId"] == "createAppsV1NamespacedDeployment"
    ref = post["requestBody"]["content"]["*/*"]["schema"]["$ref"]
    assert ref == "#/components/schemas/io.k8s.api.apps.v1.Deployment"
    assert set(post["responses"]) >= {"200", "201"}


@pytest.mark.parametrize("rt", list(REGISTRY), ids=lambda t: t.kind)
def test_field_validation_is_found_the_way_kubectl_looks_for_it(rt):
    """cli-runtime returns at the first PATCH operation carrying the GVK, whichever path
    the map yields first, so every such operation must list fieldValidation itself."""
    patches = [op for _, method, op in operations(gv_doc(rt))
               if method == "patch" and op.get("x-kubernetes-group-version-kind") == gvk(rt)]
    assert patches, f"no PATCH operation for {rt.kind}"
    for op in patches:
        assert {"fieldValidation", "dryRun", "fieldManager", "force"} <= param_names(op)
        assert all(p["in"] == "query" and "name" in p for p in op["parameters"])


@pytest.mark.parametrize("rt", list(REGISTRY), ids=lambda t: t.kind)
def test_every_write_operation_declares_write_parameters(rt):
    for path, method, op in operations(gv_doc(rt)):
        if method in ("post", "put", "patch") and op["x-kubernetes-action"] != "connect":
            assert {"fieldValidation", "dryRun", "fieldManager"} <= param_names(op), (path, method)


def test_every_operation_carries_action_and_gvk():
    for group, versions in REGISTRY.groups().items():
        for version in versions:
            doc = openapi_v3_group_version(REGISTRY, group, version)
            for path, method, op in operations(doc):
                assert op["x-kubernetes-action"] in (
                    "get", "list", "post", "put", "patch", "delete", "deletecollection",
                    "connect"), (path, method)
                assert set(op["x-kubernetes-group-version-kind"]) == {"group", "version", "kind"}
                assert op["operationId"]


def test_patch_accepts_merge_and_json_patch_but_does_not_advertise_strategic_merge():
    """kubectl would otherwise build strategic merge patches from these loose schemas
    (no merge keys); without it kubectl uses its compiled-in patch metadata."""
    for rt in REGISTRY:
        for _, method, op in operations(gv_doc(rt)):
            if method == "patch":
                content = op["requestBody"]["content"]
                assert tuple(content) == PATCH_BODY_TYPES
                assert "application/strategic-merge-patch+json" not in content


@pytest.mark.parametrize("rt", list(REGISTRY), ids=lambda t: t.kind)
def test_paths_follow_scope_and_verbs(rt):
    doc = gv_doc(rt)
    base = rt.group_version_path
    collection = (f"{base}/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced
                  else f"{base}/{rt.plural}")
    item = doc["paths"][collection]
    assert ("get" in item) == ("list" in rt.verbs)
    assert ("post" in item) == ("create" in rt.verbs)
    assert ("delete" in item) == ("deletecollection" in rt.verbs)
    obj = doc["paths"][f"{collection}/{{name}}"]
    assert {m for m in METHODS if m in obj} == {"get", "put", "patch", "delete"}
    expected_params = ["namespace", "name"] if rt.namespaced else ["name"]
    assert [p["name"] for p in obj["parameters"] if p["in"] == "path"] == expected_params
    assert all(p["required"] for p in obj["parameters"] if p["in"] == "path")
    if rt.namespaced:
        every = doc["paths"][f"{base}/{rt.plural}"]["get"]
        assert every["x-kubernetes-action"] == "list" and "watch" in param_names(every)
    else:
        assert not any(f"{{namespace}}/{rt.plural}" in p for p in doc["paths"])


def test_namespace_has_no_deletecollection():
    doc = openapi_v3_group_version(REGISTRY, "", "v1")
    assert "delete" not in doc["paths"]["/api/v1/namespaces"]
    assert "delete" in doc["paths"]["/api/v1/namespaces/{name}"]


def test_subresources_follow_kubernetes_gvks():
    doc = openapi_v3_group_version(REGISTRY, "apps", "v1")
    status = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status"]
    assert {m for m in METHODS if m in status} == {"get", "put", "patch"}
    assert status["patch"]["x-kubernetes-group-version-kind"]["kind"] == "Deployment"
    scale = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]
    assert scale["put"]["x-kubernetes-group-version-kind"] == {
        "group": "autoscaling", "version": "v1", "kind": "Scale"}
    assert "io.k8s.api.autoscaling.v1.Scale" in doc["components"]["schemas"]
    core = openapi_v3_group_version(REGISTRY, "", "v1")
    binding = core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/binding"]["post"]
    assert binding["x-kubernetes-group-version-kind"]["kind"] == "Binding"
    assert "fieldValidation" in param_names(binding)


def test_connect_subresources_have_no_write_parameters():
    pods = ResourceType("", "v1", "Pod", "pods",
                        subresources=("status", "log", "exec", "portforward", "eviction"))
    nodes = ResourceType("", "v1", "Node", "nodes", namespaced=False, subresources=("proxy",))
    doc = openapi_v3_group_version(Registry((pods, nodes)), "", "v1")
    exec_ = doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/exec"]
    assert exec_["post"]["x-kubernetes-action"] == "connect"
    assert {"command", "stdin", "tty"} <= param_names(exec_["get"])
    assert "fieldValidation" not in param_names(exec_["post"])
    assert "requestBody" not in exec_["post"]
    log = doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/log"]["get"]
    assert "text/plain" in log["responses"]["200"]["content"]
    assert {"follow", "container", "tailLines"} <= param_names(log)
    eviction = doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/eviction"]["post"]
    assert eviction["x-kubernetes-group-version-kind"] == {
        "group": "policy", "version": "v1", "kind": "Eviction"}
    proxy = doc["paths"]["/api/v1/nodes/{name}/proxy"]
    assert proxy["patch"]["x-kubernetes-group-version-kind"]["kind"] == "NodeProxyOptions"
    ids = [op["operationId"] for _, _, op in operations(doc)]
    assert len(ids) == len(set(ids))


# --------------------------------------------------------------------------- schemas

@pytest.mark.parametrize("rt", list(REGISTRY), ids=lambda t: t.kind)
def test_every_kind_has_a_loose_schema_with_its_gvk(rt):
    schemas = gv_doc(rt)["components"]["schemas"]
    name = schema_name((rt.group, rt.version, rt.kind))
    assert name.startswith("io.k8s.api.") and name.endswith(f".{rt.version}.{rt.kind}")
    schema = schemas[name]
    assert schema["type"] == "object"
    assert schema["x-kubernetes-preserve-unknown-fields"] is True
    assert schema["x-kubernetes-group-version-kind"] == [gvk(rt)]
    assert {"apiVersion", "kind", "metadata"} <= set(schema["properties"])
    listed = schemas[name + "List"]
    assert listed["x-kubernetes-group-version-kind"] == [{**gvk(rt), "kind": rt.list_kind}]
    assert listed["properties"]["items"]["items"] == {"$ref": f"#/components/schemas/{name}"}


def test_schema_names_match_kubernetes_packages():
    assert schema_name(("", "v1", "Pod")) == "io.k8s.api.core.v1.Pod"
    assert schema_name(("apps", "v1", "Deployment")) == "io.k8s.api.apps.v1.Deployment"
    assert schema_name(("coordination.k8s.io", "v1", "Lease")) == \
        "io.k8s.api.coordination.v1.Lease"
    assert schema_name(("autoscaling", "v2", "HorizontalPodAutoscaler")) == \
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler"


def test_spec_and_status_are_open_objects():
    schemas = openapi_v3_group_version(REGISTRY, "apps", "v1")["components"]["schemas"]
    props = schemas["io.k8s.api.apps.v1.Deployment"]["properties"]
    for field in ("spec", "status"):
        assert props[field]["type"] == "object"
        assert props[field]["x-kubernetes-preserve-unknown-fields"] is True
    core = openapi_v3_group_version(REGISTRY, "", "v1")["components"]["schemas"]
    assert "spec" not in core["io.k8s.api.core.v1.ConfigMap"]["properties"]
    assert "data" in core["io.k8s.api.core.v1.ConfigMap"]["properties"]
    leases = openapi_v3_group_version(REGISTRY, "coordination.k8s.io", "v1")
    lease = leases["components"]["schemas"]["io.k8s.api.coordination.v1.Lease"]["properties"]
    assert "spec" in lease and "status" not in lease  # has_status=False


def refs(node) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def test_every_reference_resolves():
    for group, versions in REGISTRY.groups().items():
        for version in versions:
            doc = openapi_v3_group_version(REGISTRY, group, version)
            for ref in refs(doc):
                assert ref.startswith("#/components/schemas/")
                assert ref.removeprefix("#/components/schemas/") in doc["components"]["schemas"]
    v2 = openapi_v2(REGISTRY)
    for ref in refs(v2):
        assert ref.startswith("#/definitions/")
        assert ref.removeprefix("#/definitions/") in v2["definitions"]


@pytest.mark.parametrize("rt", list(REGISTRY), ids=lambda t: t.kind)
def test_explain_finds_the_kind(rt):
    """Replays kubectl explain's template: a GVK from an operation on one of four paths,
    then the schema whose GVK list contains it."""
    doc = gv_doc(rt)
    prefix = f"/apis/{rt.group}" if rt.group else "/api"
    searched = [f"{prefix}/{rt.version}/{rt.plural}", f"{prefix}/{rt.version}/{rt.plural}/{{name}}",
                f"{prefix}/{rt.version}/namespaces/{{namespace}}/{rt.plural}",
                f"{prefix}/{rt.version}/namespaces/{{namespace}}/{rt.plural}/{{name}}"]
    found = next(op["x-kubernetes-group-version-kind"] for path in searched
                 for method in METHODS if method in doc["paths"].get(path, {})
                 for op in [doc["paths"][path][method]])
    assert found == gvk(rt)
    matches = [s for s in doc["components"]["schemas"].values()
               if found in s.get("x-kubernetes-group-version-kind", [])]
    assert len(matches) == 1
    assert "description" in matches[0]


def test_documents_are_plain_json():
    for group, versions in REGISTRY.groups().items():
        for version in versions:
            doc = openapi_v3_group_version(REGISTRY, group, version)
            assert json.loads(json.dumps(doc)) == doc
    assert json.loads(json.dumps(openapi_v2(REGISTRY))) == openapi_v2(REGISTRY)


def test_v3_documents_are_valid_openapi_3():
    validator = pytest.importorskip("openapi_spec_validator")
    for group, versions in REGISTRY.groups().items():
        for version in versions:
            validator.validate(openapi_v3_group_version(REGISTRY, group, version))


# --------------------------------------------------------------------------- v2

def test_v2_is_swagger_with_the_same_information():
    doc = openapi_v2(REGISTRY)
    assert doc["swagger"] == "2.0"
    for rt in REGISTRY:
        name = schema_name((rt.group, rt.version, rt.kind))
        assert doc["definitions"][name]["x-kubernetes-group-version-kind"] == [gvk(rt)]
    v3_paths = {p for g, vs in REGISTRY.groups().items() for v in vs
                for p in openapi_v3_group_version(REGISTRY, g, v)["paths"]}
    assert set(doc["paths"]) == v3_paths


def test_v2_patch_operations_match_the_legacy_query_param_verifier():
    """kubectl's v2 verifier: a PATCH op with the GVK whose parameters (query sub-schema)
    name fieldValidation; apply reads ``consumes`` to pick the patch type."""
    doc = openapi_v2(REGISTRY)
    deployments = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]
    patch = deployments["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": "apps", "version": "v1", "kind": "Deployment"}
    query = {p["name"]: p for p in patch["parameters"] if p["in"] == "query"}
    assert {"fieldValidation", "dryRun", "fieldManager", "force"} <= set(query)
    assert query["fieldValidation"]["type"] == "string"
    body = [p for p in patch["parameters"] if p["in"] == "body"]
    assert body[0]["schema"] == {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}
    assert patch["consumes"] == list(PATCH_BODY_TYPES)
    create = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["post"]
    assert "fieldValidation" in param_names(create)
    assert create["responses"]["201"]["schema"] == {
        "$ref": "#/definitions/io.k8s.api.apps.v1.Deployment"}


def test_v2_is_valid_swagger():
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(openapi_v2(REGISTRY))
