"""Every failure is a Kubernetes ``Status`` with the right code and reason, and bad input
never produces a 500: authentication and authorization, size and media-type limits,
unknown paths and methods, validation causes, and a table of malformed requests."""

from __future__ import annotations

import json
import ssl

import httpx
import pytest

from minik8s.client.kubeconfig import load_kubeconfig


def _client(kubeconfig, **kw) -> httpx.AsyncClient:
    cfg = load_kubeconfig(str(kubeconfig))
    return httpx.AsyncClient(base_url=cfg.server, verify=cfg.ssl_context(), timeout=30, **kw)


@pytest.fixture
async def http(apiserver):
    async with _client(apiserver.kubeconfig) as c:
        yield c


@pytest.fixture
async def anonymous(apiserver):
    """TLS that trusts the server's CA, but no client certificate and no token."""
    ctx = ssl.create_default_context(cafile=str(apiserver.pki.ca_cert))
    async with httpx.AsyncClient(base_url=apiserver.url, verify=ctx, timeout=30) as c:
        yield c


def assert_status(r: httpx.Response, code: int, reason: str | None = None) -> dict:
    assert r.status_code == code, r.text
    st = r.json()
    assert st["kind"] == "Status" and st["apiVersion"] == "v1"
    assert st["status"] == "Failure" and st["code"] == code
    if reason is not None:
        assert st["reason"] == reason
    return st


def pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}


# --- authentication ------------------------------------------------------------------------


async def test_no_credentials_is_401(anonymous):
    r = await anonymous.get("/api/v1/namespaces/default/pods")
    st = assert_status(r, 401, "Unauthorized")
    assert st["message"] == "Unauthorized"
    r = await anonymous.get("/api")
    assert_status(r, 401, "Unauthorized")


async def test_bad_token_is_401(anonymous):
    r = await anonymous.get("/api/v1/namespaces", headers={"Authorization": "Bearer not-a-token"})
    assert_status(r, 401, "Unauthorized")
    # Even the anonymous health endpoints refuse a token that does not authenticate.
    r = await anonymous.get("/version", headers={"Authorization": "Bearer not-a-token"})
    assert_status(r, 401, "Unauthorized")


@pytest.mark.parametrize("path", ["/healthz", "/livez", "/readyz", "/version"])
async def test_health_and_version_need_no_credentials(anonymous, path):
    r = await anonymous.get(path)
    assert r.status_code == 200


# --- authorization -------------------------------------------------------------------------


async def test_node_cannot_patch_another_node(apiserver, client):
    for n in ("authz-a", "authz-b"):
        await client.create("nodes", {"metadata": {"name": n}})
    kc = apiserver.kubeconfig_for("node-authz-a", "system:node:authz-a", ("system:nodes",))
    async with _client(kc) as node:
        patch = {"metadata": {"labels": {"x": "y"}}}
        hdrs = {"Content-Type": "application/merge-patch+json"}
        r = await node.patch("/api/v1/nodes/authz-b", content=json.dumps(patch), headers=hdrs)
        st = assert_status(r, 403, "Forbidden")
        assert st["message"] == ('nodes "authz-b" is forbidden: User "system:node:authz-a" '
                                 'cannot patch resource "nodes" in API group "" at the '
                                 'cluster scope')
        assert st["details"] == {"name": "authz-b", "group": "", "kind": "nodes"}
        # Its own Node is fine.
        r = await node.patch("/api/v1/nodes/authz-a", content=json.dumps(patch), headers=hdrs)
        assert r.status_code == 200 and r.json()["metadata"]["labels"] == {"x": "y"}
        # It may not delete nodes at all.
        r = await node.delete("/api/v1/nodes/authz-b")
        assert_status(r, 403, "Forbidden")
    assert (await client.get("nodes", "authz-b"))["metadata"].get("labels") is None


async def test_node_writes_only_pods_bound_to_it(apiserver, client, ns):
    for p, node in (("mine", "authz-n1"), ("theirs", "authz-n2")):
        await client.create("pods", pod(p), ns)
        await client.create("pods", {"metadata": {"name": p}, "target": {"name": node}}, ns,
                            subresource="binding", name=p)
    kc = apiserver.kubeconfig_for("node-authz-n1", "system:node:authz-n1", ("system:nodes",))
    hdrs = {"Content-Type": "application/merge-patch+json"}
    body = json.dumps({"status": {"phase": "Running"}})
    async with _client(kc) as node:
        r = await node.patch(f"/api/v1/namespaces/{ns}/pods/mine/status", content=body,
                             headers=hdrs)
        assert r.status_code == 200 and r.json()["status"]["phase"] == "Running"
        r = await node.patch(f"/api/v1/namespaces/{ns}/pods/theirs/status", content=body,
                             headers=hdrs)
        st = assert_status(r, 403, "Forbidden")
        assert st["message"].startswith('pods "theirs" is forbidden: User "system:node:authz-n1" '
                                        'cannot patch resource "pods/status"')


async def test_random_user_cannot_list_secrets(apiserver, ns):
    kc = apiserver.kubeconfig_for("alice", "alice")
    async with _client(kc) as alice:
        r = await alice.get(f"/api/v1/namespaces/{ns}/secrets")
        st = assert_status(r, 403, "Forbidden")
        assert st["message"] == (f'secrets is forbidden: User "alice" cannot list resource '
                                 f'"secrets" in API group "" in the namespace "{ns}"')
        assert st["details"] == {"group": "", "kind": "secrets"}
        r = await alice.get(f"/api/v1/namespaces/{ns}/secrets", params={"watch": "1"})
        assert_status(r, 403, "Forbidden")
        r = await alice.post(f"/api/v1/namespaces/{ns}/secrets",
                             json={"metadata": {"name": "s"}})
        st = assert_status(r, 403, "Forbidden")
        assert st["message"].startswith('secrets "s" is forbidden: User "alice" cannot create')
        # Discovery is open to every authenticated user.
        r = await alice.get("/api/v1")
        assert r.status_code == 200
        r = await alice.get("/metrics")
        st = assert_status(r, 403, "Forbidden")
        assert st["message"] == 'forbidden: User "alice" cannot get path "/metrics"'


# --- limits, media types, paths, methods ---------------------------------------------------


async def test_body_over_3_mib_is_413(http, ns):
    body = {"metadata": {"name": "big"}, "data": {"blob": "x" * (3 * 1024 * 1024 + 1)}}
    r = await http.post(f"/api/v1/namespaces/{ns}/configmaps", json=body)
    assert_status(r, 413, "RequestEntityTooLarge")
    r = await http.get(f"/api/v1/namespaces/{ns}/configmaps/big")
    assert_status(r, 404, "NotFound")


async def test_body_over_limit_without_content_length_is_413(http, ns):
    async def chunks():
        for _ in range(4):
            yield b" " * (1024 * 1024)
    r = await http.post(f"/api/v1/namespaces/{ns}/configmaps", content=chunks(),
                        headers={"Content-Type": "application/json"})
    assert_status(r, 413, "RequestEntityTooLarge")


async def test_patch_with_unknown_content_type_is_415(http, client, ns):
    await client.create("configmaps", {"metadata": {"name": "m"}}, ns)
    for ctype in ("text/plain", "application/json", "application/apply-patch+yaml"):
        r = await http.patch(f"/api/v1/namespaces/{ns}/configmaps/m",
                             content=b'{"data":{"a":"b"}}', headers={"Content-Type": ctype})
        st = assert_status(r, 415, "UnsupportedMediaType")
        assert "application/merge-patch+json" in st["message"]


async def test_create_with_unknown_content_type_is_415(http, ns):
    r = await http.post(f"/api/v1/namespaces/{ns}/configmaps", content=b"name=x",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_status(r, 415, "UnsupportedMediaType")


async def test_yaml_body_is_accepted(http, ns):
    r = await http.post(f"/api/v1/namespaces/{ns}/configmaps",
                        content=b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\n"
                                b"data:\n  k: v\n",
                        headers={"Content-Type": "application/yaml"})
    assert r.status_code == 201 and r.json()["data"] == {"k": "v"}


@pytest.mark.parametrize("path", [
    "/api/v1/widgets",
    "/api/v1/namespaces/default/widgets",
    "/apis/apps/v1/namespaces/default/widgets/x",
    "/apis/nope.example.com/v1/things",
    "/apis/apps/v9/deployments",
    "/api/v1/namespaces/default/pods/x/nosuchsub",
    "/api/v1/namespaces/default/pods/x/status/extra",
    "/api/v1/pods/x",
    "/apis/nope.example.com",
    "/apis/apps/v9",
    "/api/v2",
    "/nonsense",
])
async def test_unknown_paths_are_404(http, path):
    r = await http.get(path)
    assert r.status_code == 404, r.text
    st = r.json()
    assert st["kind"] == "Status" and st["reason"] == "NotFound" and st["code"] == 404


@pytest.mark.parametrize("method,path", [
    ("PUT", "/api/v1/namespaces/default/configmaps"),
    ("PATCH", "/api/v1/namespaces/default/configmaps"),
    ("POST", "/api/v1/namespaces/default/pods/x/status"),
    ("PUT", "/api/v1/namespaces/default/pods/x/binding"),
    ("DELETE", "/api/v1/namespaces"),
    ("DELETE", "/api/v1/namespaces/default/pods/x/status"),
    ("GET", "/api/v1/namespaces/default/pods/x/binding"),
    ("GET", "/api/v1/namespaces/default/finalize"),
    ("OPTIONS", "/api/v1/namespaces/default/configmaps"),
])
async def test_unsupported_methods_are_405(http, method, path):
    r = await http.request(method, path)
    st = assert_status(r, 405, "MethodNotAllowed")
    assert st["message"]
    # Nothing was touched.
    assert (await http.get("/api/v1/namespaces/default")).json()["status"]["phase"] == "Active"


# --- validation ----------------------------------------------------------------------------


async def test_invalid_object_is_422_with_causes(http, ns):
    body = {"metadata": {"name": "Bad_Name", "labels": {"ok": "fine", "bad key": "v"}},
            "spec": {"containers": []}}
    r = await http.post(f"/api/v1/namespaces/{ns}/pods", json=body)
    st = assert_status(r, 422, "Invalid")
    fields = [c["field"] for c in st["details"]["causes"]]
    assert "metadata.name" in fields
    assert "metadata.labels" in fields
    assert "spec.containers" in fields
    assert st["details"]["name"] == "Bad_Name" and st["details"]["kind"] == "Pod"
    assert st["message"].startswith('Pod "Bad_Name" is invalid: ')
    for cause in st["details"]["causes"]:
        assert cause["reason"].startswith("Field") and cause["message"]


async def test_missing_name_is_422(http, ns):
    r = await http.post(f"/api/v1/namespaces/{ns}/configmaps", json={"data": {}})
    st = assert_status(r, 422, "Invalid")
    assert st["details"]["causes"] == [{"reason": "FieldValueRequired", "field": "metadata.name",
                                        "message": "name or generateName is required"}]


async def test_undecodable_bodies_are_400(http, ns):
    url = f"/api/v1/namespaces/{ns}/configmaps"
    r = await http.post(url, content=b'{"metadata": {"name": "x"', headers={
        "Content-Type": "application/json"})
    st = assert_status(r, 400, "BadRequest")
    assert st["message"].startswith("the body of the request could not be decoded")
    r = await http.post(url, content=b"metadata: {name: [x\n", headers={
        "Content-Type": "application/yaml"})
    assert_status(r, 400, "BadRequest")


# --- never a 500 for bad input -------------------------------------------------------------

NS = "{ns}"
JSON = "application/json"
MERGE = "application/merge-patch+json"
JSONPATCH = "application/json-patch+json"
SMP = "application/strategic-merge-patch+json"
YAML = "application/yaml"

CM = f"/api/v1/namespaces/{NS}/configmaps"
PODS = f"/api/v1/namespaces/{NS}/pods"
DEPLOY = f"/apis/apps/v1/namespaces/{NS}/deployments"

MALFORMED = [
    # (id, method, path, params, raw body, content type)
    ("array-body", "POST", CM, {}, b"[]", JSON),
    ("string-body", "POST", CM, {}, b'"configmap"', JSON),
    ("number-body", "POST", CM, {}, b"42", JSON),
    ("null-body", "POST", CM, {}, b"null", JSON),
    ("empty-body", "POST", CM, {}, b"", JSON),
    ("truncated-json", "POST", CM, {}, b'{"metadata":', JSON),
    ("not-utf8", "POST", CM, {}, b'{"metadata":{"name":"\xff\xfe"}}', JSON),
    ("nan", "POST", CM, {}, b'{"metadata":{"name":"x"},"data":{"a":NaN}}', JSON),
    ("deeply-nested", "POST", CM, {}, b"[" * 100_000 + b"]" * 100_000, JSON),
    ("nested-900-unknown-field", "POST", CM, {"fieldValidation": "Strict"},
     b'{"metadata":{"name":"n9"},"extra":' + b"[" * 900 + b"]" * 900 + b"}", JSON),
    ("nested-900-annotation", "POST", CM, {},
     b'{"metadata":{"name":"n9a","annotations":' + b'{"a":' * 900 + b'"x"' + b"}" * 901 + b"}",
     JSON),
    ("nested-900-merge-patch", "PATCH", CM + "/target", {},
     b'{"data":' + b'{"a":' * 900 + b'"x"' + b"}" * 901, MERGE),
    ("nested-100k-patch", "PATCH", CM + "/target", {}, b'{"a":' * 100_000, MERGE),
    ("nested-yaml", "POST", CM, {}, b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n", YAML),
    ("deeply-nested-object", "POST", CM, {},
     b'{"metadata":{"name":"deep"},"data":' + b'{"a":' * 50_000 + b"1" + b"}" * 50_001, JSON),
    ("metadata-string", "POST", CM, {}, b'{"metadata":"x"}', JSON),
    ("metadata-list", "POST", CM, {}, b'{"metadata":[1,2]}', JSON),
    ("name-number", "POST", CM, {}, b'{"metadata":{"name":5}}', JSON),
    ("name-uppercase", "POST", CM, {}, b'{"metadata":{"name":"UPPER"}}', JSON),
    ("name-unicode", "POST", CM, {}, '{"metadata":{"name":"caf\u00e9"}}'.encode(), JSON),
    ("name-huge", "POST", CM, {}, json.dumps({"metadata": {"name": "a" * 300}}).encode(), JSON),
    ("name-slash", "POST", CM, {}, b'{"metadata":{"name":"a/b"}}', JSON),
    ("generate-name-bad", "POST", CM, {}, b'{"metadata":{"generateName":"BAD_"}}', JSON),
    ("labels-invalid-key", "POST", CM, {},
     b'{"metadata":{"name":"lk","labels":{"bad key!":"v"}}}', JSON),
    ("labels-invalid-prefix", "POST", CM, {},
     b'{"metadata":{"name":"lp","labels":{"-x-/y":"v"}}}', JSON),
    ("labels-long-value", "POST", CM, {},
     json.dumps({"metadata": {"name": "lv", "labels": {"a": "v" * 64}}}).encode(), JSON),
    ("labels-null-value", "POST", CM, {}, b'{"metadata":{"name":"ln","labels":{"a":null}}}',
     JSON),
    ("labels-number-value", "POST", CM, {}, b'{"metadata":{"name":"l5","labels":{"a":5}}}',
     JSON),
    ("labels-list", "POST", CM, {}, b'{"metadata":{"name":"ll","labels":["a"]}}', JSON),
    ("annotations-number", "POST", CM, {}, b'{"metadata":{"name":"an","annotations":7}}', JSON),
    ("finalizers-string", "POST", CM, {}, b'{"metadata":{"name":"fs","finalizers":"x"}}', JSON),
    ("finalizers-invalid", "POST", CM, {},
     b'{"metadata":{"name":"fi","finalizers":["not valid!"]}}', JSON),
    ("data-number", "POST", CM, {}, b'{"metadata":{"name":"dn"},"data":{"a":1}}', JSON),
    ("data-bad-key", "POST", CM, {}, b'{"metadata":{"name":"dk"},"data":{"a b":"1"}}', JSON),
    ("kind-mismatch", "POST", CM, {}, b'{"kind":"Pod","apiVersion":"v1","metadata":{"name":"k"}}',
     JSON),
    ("apiversion-mismatch", "POST", CM, {},
     b'{"kind":"ConfigMap","apiVersion":"apps/v1","metadata":{"name":"k"}}', JSON),
    ("kind-number", "POST", CM, {}, b'{"kind":3,"metadata":{"name":"k3"}}', JSON),
    ("containers-string", "POST", PODS, {},
     b'{"metadata":{"name":"cs"},"spec":{"containers":"busybox"}}', JSON),
    ("containers-null-item", "POST", PODS, {},
     b'{"metadata":{"name":"cn"},"spec":{"containers":[null]}}', JSON),
    ("containers-empty-object", "POST", PODS, {},
     b'{"metadata":{"name":"ce"},"spec":{"containers":[{}]}}', JSON),
    ("containers-missing", "POST", PODS, {}, b'{"metadata":{"name":"cm"},"spec":{}}', JSON),
    ("spec-null", "POST", PODS, {}, b'{"metadata":{"name":"sn"},"spec":null}', JSON),
    ("spec-string", "POST", PODS, {}, b'{"metadata":{"name":"ss"},"spec":"x"}', JSON),
    ("port-string", "POST", PODS, {},
     b'{"metadata":{"name":"ps"},"spec":{"containers":[{"name":"c","image":"i",'
     b'"ports":[{"containerPort":"eighty"}]}]}}', JSON),
    ("port-out-of-range", "POST", PODS, {},
     b'{"metadata":{"name":"pr"},"spec":{"containers":[{"name":"c","image":"i",'
     b'"ports":[{"containerPort":70000}]}]}}', JSON),
    ("duplicate-container-names", "POST", PODS, {},
     b'{"metadata":{"name":"dc"},"spec":{"containers":[{"name":"c","image":"i"},'
     b'{"name":"c","image":"i"}]}}', JSON),
    ("bad-quantity", "POST", PODS, {},
     b'{"metadata":{"name":"bq"},"spec":{"containers":[{"name":"c","image":"i",'
     b'"resources":{"limits":{"cpu":"lots"}}}]}}', JSON),
    ("replicas-string", "POST", DEPLOY, {},
     b'{"metadata":{"name":"rs"},"spec":{"replicas":"three","selector":{"matchLabels":'
     b'{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":'
     b'[{"name":"c","image":"i"}]}}}}', JSON),
    ("replicas-negative", "POST", DEPLOY, {},
     b'{"metadata":{"name":"rn"},"spec":{"replicas":-3,"selector":{"matchLabels":'
     b'{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":'
     b'[{"name":"c","image":"i"}]}}}}', JSON),
    ("replicas-huge-float", "POST", DEPLOY, {},
     b'{"metadata":{"name":"rh"},"spec":{"replicas":1e400}}', JSON),
    ("selector-mismatch", "POST", DEPLOY, {},
     b'{"metadata":{"name":"sm"},"spec":{"selector":{"matchLabels":{"a":"b"}},'
     b'"template":{"metadata":{"labels":{"a":"c"}},"spec":{"containers":'
     b'[{"name":"c","image":"i"}]}}}}', JSON),
    ("selector-bad-operator", "POST", DEPLOY, {},
     b'{"metadata":{"name":"so"},"spec":{"selector":{"matchExpressions":[{"key":"a",'
     b'"operator":"Maybe"}]},"template":{"metadata":{"labels":{"a":"c"}},"spec":'
     b'{"containers":[{"name":"c","image":"i"}]}}}}', JSON),
    ("yaml-malformed", "POST", CM, {}, b"metadata: [unclosed\n", YAML),
    ("yaml-two-docs", "POST", CM, {}, b"metadata: {name: a}\n---\nmetadata: {name: b}\n", YAML),
    ("yaml-scalar", "POST", CM, {}, b"just a string\n", YAML),
    ("yaml-python-tag", "POST", CM, {}, b"metadata: !!python/object:os.system {}\n", YAML),
    ("yaml-recursive-alias", "POST", CM, {}, b"metadata: {name: rec}\nextra: &a [*a]\n", YAML),
    ("yaml-alias-bomb", "POST", CM, {}, b"metadata: {name: bomb}\nextra:\n  a0: &a0 [x,x,x,x,x,x,x,x,x]\n"
     + b"".join(f"  a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]\n".encode() for i in range(1, 10)),
     YAML),
    ("dry-run-bad", "POST", CM, {"dryRun": "Maybe"}, b'{"metadata":{"name":"d"}}', JSON),
    ("field-validation-bad", "POST", CM, {"fieldValidation": "x"}, b'{"metadata":{"name":"f"}}',
     JSON),
    # updates
    ("update-rv-garbage", "PUT", CM + "/target", {},
     b'{"metadata":{"name":"target","resourceVersion":"abc"}}', JSON),
    ("update-rv-negative", "PUT", CM + "/target", {},
     b'{"metadata":{"name":"target","resourceVersion":"-5"}}', JSON),
    ("update-rv-number", "PUT", CM + "/target", {},
     b'{"metadata":{"name":"target","resourceVersion":12}}', JSON),
    ("update-name-mismatch", "PUT", CM + "/target", {}, b'{"metadata":{"name":"other"}}', JSON),
    ("update-body-list", "PUT", CM + "/target", {}, b"[1]", JSON),
    ("update-status-string", "PUT", PODS + "/ptarget/status", {},
     b'{"metadata":{"name":"ptarget"},"status":"Running"}', JSON),
    # patches
    ("merge-patch-list", "PATCH", CM + "/target", {}, b"[]", MERGE),
    ("merge-patch-garbage", "PATCH", CM + "/target", {}, b"{nope", MERGE),
    ("merge-patch-metadata-string", "PATCH", CM + "/target", {}, b'{"metadata":"x"}', MERGE),
    ("merge-patch-rv-garbage", "PATCH", CM + "/target", {},
     b'{"metadata":{"resourceVersion":"zzz"}}', MERGE),
    ("merge-patch-bad-label", "PATCH", CM + "/target", {},
     b'{"metadata":{"labels":{"no way":"x"}}}', MERGE),
    ("json-patch-object", "PATCH", CM + "/target", {}, b'{"op":"add"}', JSONPATCH),
    ("json-patch-bad-op", "PATCH", CM + "/target", {}, b'[{"op":"frobnicate","path":"/a"}]',
     JSONPATCH),
    ("json-patch-bad-path", "PATCH", CM + "/target", {},
     b'[{"op":"replace","path":"/nope/deeper","value":1}]', JSONPATCH),
    ("json-patch-no-path", "PATCH", CM + "/target", {}, b'[{"op":"add","value":1}]', JSONPATCH),
    ("json-patch-item-string", "PATCH", CM + "/target", {}, b'["add"]', JSONPATCH),
    ("json-patch-root-string", "PATCH", CM + "/target", {},
     b'[{"op":"replace","path":"","value":"x"}]', JSONPATCH),
    ("json-patch-index-garbage", "PATCH", CM + "/target", {},
     b'[{"op":"add","path":"/metadata/finalizers/x","value":"a.io/b"}]', JSONPATCH),
    ("smp-list", "PATCH", CM + "/target", {}, b"[1,2]", SMP),
    ("smp-bad-directive", "PATCH", PODS + "/ptarget", {},
     b'{"spec":{"containers":[{"name":"c","$patch":"explode"}]}}', SMP),
    ("smp-containers-string", "PATCH", PODS + "/ptarget", {},
     b'{"spec":{"containers":"x"}}', SMP),
    ("patch-empty", "PATCH", CM + "/target", {}, b"", MERGE),
    ("scale-replicas-string", "PATCH", DEPLOY + "/dtarget/scale", {},
     b'{"spec":{"replicas":"many"}}', MERGE),
    ("scale-put-garbage", "PUT", DEPLOY + "/dtarget/scale", {}, b'{"spec":[]}', JSON),
    # binding
    ("binding-list", "POST", PODS + "/ptarget/binding", {}, b"[]", JSON),
    ("binding-target-string", "POST", PODS + "/ptarget/binding", {},
     b'{"metadata":{"name":"ptarget"},"target":"node"}', JSON),
    # deletes
    ("delete-grace-garbage", "DELETE", CM + "/target", {"gracePeriodSeconds": "soon"}, b"", JSON),
    ("delete-grace-body-string", "DELETE", CM + "/target", {},
     b'{"gracePeriodSeconds":"soon"}', JSON),
    ("delete-policy-bad", "DELETE", CM + "/target", {"propagationPolicy": "Everything"}, b"",
     JSON),
    ("delete-body-list", "DELETE", CM + "/target", {}, b"[]", JSON),
    ("delete-body-garbage", "DELETE", CM + "/target", {}, b"{oops", JSON),
    ("delete-preconditions-string", "DELETE", CM + "/target", {},
     b'{"preconditions":"uid"}', JSON),
    ("deletecollection-bad-selector", "DELETE", CM, {"labelSelector": "a in ("}, b"", JSON),
    # lists and watches
    ("list-rv-garbage", "GET", CM, {"resourceVersion": "abc"}, b"", None),
    ("list-rv-negative", "GET", CM, {"resourceVersion": "-1"}, b"", None),
    ("label-selector-unclosed", "GET", CM, {"labelSelector": "a in (b"}, b"", None),
    ("label-selector-op", "GET", CM, {"labelSelector": "a ~ b"}, b"", None),
    ("label-selector-bad-key", "GET", CM, {"labelSelector": "bad key!=x"}, b"", None),
    ("label-selector-bad-value", "GET", CM, {"labelSelector": "a=b c"}, b"", None),
    ("label-selector-double-bang", "GET", CM, {"labelSelector": "!!a"}, b"", None),
    ("label-selector-long-value", "GET", CM, {"labelSelector": "a=" + "v" * 100}, b"", None),
    ("field-selector-unknown", "GET", CM, {"fieldSelector": "spec.foo=bar"}, b"", None),
    ("field-selector-no-op", "GET", CM, {"fieldSelector": "metadata.name"}, b"", None),
    ("field-selector-pod-unknown", "GET", PODS, {"fieldSelector": "spec.bogus=1"}, b"", None),
    ("limit-negative", "GET", CM, {"limit": "-1"}, b"", None),
    ("limit-garbage", "GET", CM, {"limit": "ten"}, b"", None),
    ("continue-garbage", "GET", CM, {"limit": "1", "continue": "not-a-token"}, b"", None),
    ("continue-not-json", "GET", CM, {"limit": "1", "continue": "bm90IGpzb24"}, b"", None),
    ("continue-other-list", "GET", CM, {"limit": "1", "continue":
        "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MSwic3RhcnQiOiIvcmVnaXN0cnkvY29yZS9wb2RzL3gifQ"},
     b"", None),
    ("continue-future-rv", "GET", CM, {"limit": "1", "continue":
        "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6OTk5OTk5OTk5LCJzdGFydCI6Ii9yZWdpc3RyeS9jb3JlL2Nv"
        "bmZpZ21hcHMvIn0"}, b"", None),
    ("watch-rv-garbage", "GET", CM, {"watch": "true", "resourceVersion": "abc"}, b"", None),
    ("watch-rv-negative", "GET", CM, {"watch": "true", "resourceVersion": "-2"}, b"", None),
    ("watch-timeout-garbage", "GET", CM, {"watch": "true", "timeoutSeconds": "forever"}, b"",
     None),
    ("watch-bad-label-selector", "GET", CM, {"watch": "true", "labelSelector": "=x"}, b"", None),
    ("watch-bad-field-selector", "GET", CM, {"watch": "true", "fieldSelector": "nope=1"}, b"",
     None),
    ("get-name-too-long", "GET", CM + "/" + "n" * 300, {}, b"", None),
]


@pytest.fixture
async def targets(client, ns):
    await client.create("configmaps", {"metadata": {"name": "target"}, "data": {"a": "1"}}, ns)
    await client.create("pods", pod("ptarget"), ns)
    await client.create("deployments", {
        "metadata": {"name": "dtarget"},
        "spec": {"selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}},
                              "spec": {"containers": [{"name": "c", "image": "i"}]}}}}, ns)
    return ns


@pytest.mark.parametrize("case", MALFORMED, ids=[c[0] for c in MALFORMED])
async def test_malformed_requests_get_a_4xx_status(http, client, targets, case):
    _, method, path, params, body, ctype = case
    ns = targets
    headers = {"Content-Type": ctype} if ctype else {}
    r = await http.request(method, path.replace(NS, ns), params=params, content=body or None,
                           headers=headers)
    assert 400 <= r.status_code < 500, f"{r.status_code}: {r.text[:500]}"
    st = r.json()
    assert st["kind"] == "Status" and st["status"] == "Failure"
    assert st["code"] == r.status_code and st["reason"] and st["message"]
    # The targets are unharmed.
    assert (await client.get("configmaps", "target", ns))["data"] == {"a": "1"}
    assert (await client.get("pods", "ptarget", ns)).get("spec", {}).get("nodeName") is None
    assert (await client.get("deployments", "dtarget", ns))["spec"]["replicas"] == 1
