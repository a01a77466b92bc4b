"""PATCH in its three formats: JSON merge patch, JSON patch (RFC 6902, with ``test``) and
strategic merge patch on a Deployment (merge by name, ``$patch: delete``,
``$setElementOrder``, ``$retainKeys``)."""

from __future__ import annotations

import json

import pytest

from minik8s.api.errors import BadRequest, Invalid, NotFound


def deployment(name: str) -> dict:
    return {"metadata": {"name": name, "labels": {"app": name}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [
                                      {"name": "web", "image": "nginx:1.27",
                                       "env": [{"name": "A", "value": "1"},
                                               {"name": "B", "value": "2"}],
                                       "ports": [{"containerPort": 80}]},
                                      {"name": "sidecar", "image": "busybox:1.36"}]}}}}


def containers(d: dict) -> list[dict]:
    return d["spec"]["template"]["spec"]["containers"]


# --- JSON merge patch ----------------------------------------------------------------------


async def test_merge_patch(client, ns):
    await client.create("configmaps", {"metadata": {"name": "m", "labels": {"a": "1", "b": "2"}},
                                       "data": {"x": "1", "y": "2"}}, ns)
    out = await client.patch("configmaps", "m", {"metadata": {"labels": {"a": None, "c": "3"}},
                                                 "data": {"y": None, "z": "3"}}, ns)
    assert out["metadata"]["labels"] == {"b": "2", "c": "3"}
    assert out["data"] == {"x": "1", "z": "3"}


async def test_merge_patch_replaces_lists_whole(client, ns):
    await client.create("deployments", deployment("mp"), ns)
    out = await client.patch("deployments", "mp", {"spec": {"template": {"spec": {
        "containers": [{"name": "only", "image": "redis:7"}]}}}}, ns)
    assert [c["name"] for c in containers(out)] == ["only"]
    assert out["metadata"]["generation"] == 2


async def test_patch_missing_object_is_404(client, ns):
    with pytest.raises(NotFound) as exc:
        await client.patch("configmaps", "ghost", {"data": {"a": "b"}}, ns)
    assert str(exc.value) == 'configmaps "ghost" not found'


async def test_patch_cannot_rename(client, ns):
    await client.create("configmaps", {"metadata": {"name": "keep"}}, ns)
    with pytest.raises(BadRequest) as exc:
        await client.patch("configmaps", "keep", {"metadata": {"name": "other"}}, ns)
    assert str(exc.value) == "the name of the object does not match the name on the URL"


async def test_patch_result_is_validated(client, ns):
    await client.create("deployments", deployment("val"), ns)
    with pytest.raises(Invalid) as exc:
        await client.patch("deployments", "val", {"spec": {"replicas": -1}}, ns)
    assert [c["field"] for c in exc.value.causes] == ["spec.replicas"]
    assert (await client.get("deployments", "val", ns))["spec"]["replicas"] == 2


# --- JSON patch ----------------------------------------------------------------------------


async def test_json_patch_operations(client, ns):
    await client.create("configmaps", {"metadata": {"name": "j", "labels": {"a": "1"}},
                                       "data": {"x": "1", "y": "2"}}, ns)
    ops = [
        {"op": "test", "path": "/data/x", "value": "1"},
        {"op": "add", "path": "/metadata/labels/app.kubernetes.io~1name", "value": "j"},
        {"op": "replace", "path": "/data/x", "value": "10"},
        {"op": "remove", "path": "/data/y"},
        {"op": "copy", "from": "/data/x", "path": "/data/copied"},
        {"op": "move", "from": "/metadata/labels/a", "path": "/metadata/labels/moved"},
        {"op": "add", "path": "/metadata/finalizers", "value": ["x.io/one"]},
        {"op": "add", "path": "/metadata/finalizers/-", "value": "x.io/two"},
        {"op": "add", "path": "/metadata/finalizers/0", "value": "x.io/zero"},
    ]
    out = await client.patch("configmaps", "j", ops, ns, patch_type="json")
    assert out["data"] == {"x": "10", "copied": "10"}
    assert out["metadata"]["labels"] == {"app.kubernetes.io/name": "j", "moved": "1"}
    assert out["metadata"]["finalizers"] == ["x.io/zero", "x.io/one", "x.io/two"]


async def test_json_patch_failing_test_op_is_422(client, http, ns):
    before = await client.create("configmaps", {"metadata": {"name": "t"}, "data": {"x": "1"}},
                                 ns)
    r = await http.patch(f"/api/v1/namespaces/{ns}/configmaps/t",
                         headers={"Content-Type": "application/json-patch+json"},
                         content=json.dumps([
                             {"op": "replace", "path": "/data/x", "value": "2"},
                             {"op": "test", "path": "/data/x", "value": "1"}]))
    assert r.status_code == 422
    st = r.json()
    assert st["kind"] == "Status" and st["reason"] == "Invalid" and st["code"] == 422
    assert st["message"] == ("json patch: operation 1 (test): test failed: value at "
                             "'/data/x' is '2', not '1'")
    # Atomic: the first operation did not stick.
    after = await client.get("configmaps", "t", ns)
    assert after == before


async def test_json_patch_bad_path_is_422(client, ns):
    await client.create("configmaps", {"metadata": {"name": "bp"}}, ns)
    with pytest.raises(Invalid) as exc:
        await client.patch("configmaps", "bp", [{"op": "remove", "path": "/data/nope"}], ns,
                           patch_type="json")
    assert exc.value.code == 422
    assert "does not exist" in str(exc.value)


async def test_json_patch_on_deployment_containers(client, ns):
    await client.create("deployments", deployment("jd"), ns)
    out = await client.patch("deployments", "jd", [
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "nginx:1.28"},
        {"op": "remove", "path": "/spec/template/spec/containers/1"},
    ], ns, patch_type="json")
    assert [(c["name"], c["image"]) for c in containers(out)] == [("web", "nginx:1.28")]


# --- strategic merge patch -----------------------------------------------------------------


async def test_strategic_merge_adds_container_by_name(client, ns):
    await client.create("deployments", deployment("s1"), ns)
    out = await client.patch("deployments", "s1", {"spec": {"template": {"spec": {"containers": [
        {"name": "logger", "image": "fluent:1"}]}}}}, ns, patch_type="strategic")
    # Kubernetes' order: items only in the patch go before those only on the server
    # (strategicpatch.mergeSortedSlice), unless $setElementOrder says otherwise.
    assert [c["name"] for c in containers(out)] == ["logger", "web", "sidecar"]
    web = next(c for c in containers(out) if c["name"] == "web")
    assert web["image"] == "nginx:1.27" and [e["name"] for e in web["env"]] == ["A", "B"]


async def test_strategic_merge_changes_env_by_name(client, ns):
    await client.create("deployments", deployment("s2"), ns)
    out = await client.patch("deployments", "s2", {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}]}]}}}},
        ns, patch_type="strategic")
    web = containers(out)[0]
    assert web["name"] == "web" and web["image"] == "nginx:1.27"
    assert {e["name"]: e["value"] for e in web["env"]} == {"A": "1", "B": "20", "C": "3"}
    assert web["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert [c["name"] for c in containers(out)] == ["web", "sidecar"]


async def test_strategic_merge_patch_delete_directive(client, ns):
    await client.create("deployments", deployment("s3"), ns)
    out = await client.patch("deployments", "s3", {"spec": {"template": {"spec": {"containers": [
        {"name": "sidecar", "$patch": "delete"},
        {"name": "web", "env": [{"name": "A", "$patch": "delete"}]}]}}}},
        ns, patch_type="strategic")
    assert [c["name"] for c in containers(out)] == ["web"]
    assert [e["name"] for e in containers(out)[0]["env"]] == ["B"]


async def test_strategic_merge_null_deletes_field(client, ns):
    await client.create("deployments", deployment("s4"), ns)
    out = await client.patch("deployments", "s4", {"metadata": {"labels": {"app": None}},
                                                   "spec": {"template": {"spec": {"containers": [
                                                       {"name": "web", "ports": None}]}}}},
                             ns, patch_type="strategic")
    assert "app" not in (out["metadata"].get("labels") or {})
    assert "ports" not in containers(out)[0]


async def test_strategic_merge_set_element_order(client, ns):
    await client.create("deployments", deployment("s5"), ns)
    out = await client.patch("deployments", "s5", {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "new"}, {"name": "web"}],
        "containers": [{"name": "new", "image": "redis:7"}]}}}}, ns, patch_type="strategic")
    assert [c["name"] for c in containers(out)] == ["sidecar", "new", "web"]
    assert containers(out)[2]["image"] == "nginx:1.27"


async def test_strategic_merge_retain_keys_on_strategy(client, ns):
    d = await client.create("deployments", deployment("s6"), ns)
    assert d["spec"]["strategy"]["type"] == "RollingUpdate"
    assert "rollingUpdate" in d["spec"]["strategy"]
    # Without $retainKeys the old rollingUpdate stays and the result is invalid.
    with pytest.raises(Invalid) as exc:
        await client.patch("deployments", "s6", {"spec": {"strategy": {"type": "Recreate"}}}, ns,
                           patch_type="strategic")
    assert [c["field"] for c in exc.value.causes] == ["spec.strategy.rollingUpdate"]
    out = await client.patch("deployments", "s6", {"spec": {"strategy": {
        "$retainKeys": ["type"], "type": "Recreate"}}}, ns, patch_type="strategic")
    assert out["spec"]["strategy"] == {"type": "Recreate"}


async def test_strategic_merge_on_pod_status_conditions(client, ns):
    await client.create("pods", {"metadata": {"name": "p"},
                                 "spec": {"containers": [{"name": "c", "image": "i"}]}}, ns)
    await client.patch("pods", "p", {"status": {"conditions": [
        {"type": "Ready", "status": "False"}, {"type": "Initialized", "status": "True"}]}}, ns,
        subresource="status", patch_type="strategic")
    out = await client.patch("pods", "p", {"status": {"conditions": [
        {"type": "Ready", "status": "True"}]}}, ns, subresource="status", patch_type="strategic")
    assert {c["type"]: c["status"] for c in out["status"]["conditions"]} == \
        {"Ready": "True", "Initialized": "True"}


async def test_strategic_merge_finalizers_are_a_set(client, ns):
    await client.create("configmaps", {"metadata": {"name": "fs", "finalizers": ["a.io/x"]}}, ns)
    out = await client.patch("configmaps", "fs", {"metadata": {"finalizers": ["b.io/y"]}}, ns,
                             patch_type="strategic")
    assert out["metadata"]["finalizers"] == ["b.io/y", "a.io/x"]  # as mergeSortedSlice orders
    out = await client.patch("configmaps", "fs", {"metadata": {
        "$deleteFromPrimitiveList/finalizers": ["a.io/x", "b.io/y"]}}, ns, patch_type="strategic")
    assert not out["metadata"].get("finalizers")
