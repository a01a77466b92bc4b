"""ServiceAccounts against a real API server over HTTPS, with the ServiceAccount admission
plugin on and the serviceaccount / root-ca-cert-publisher controllers running: defaults,
TokenRequest, and tokens as identities (authentication, authorization, revocation)."""

from __future__ import annotations

import base64
import json
import ssl
import uuid

import httpx
import pytest

from cluster import eventually, running_controllers, start_apiserver, start_etcd, stop_process
from minik8s.api.errors import StatusError
from minik8s.client import Client

pytestmark = pytest.mark.integration

MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory):
    base = tmp_path_factory.mktemp("sa-cluster")
    etcd = start_etcd(base)
    srv = start_apiserver(base, etcd, "--compaction-interval", "3600", service_accounts=True)
    yield srv
    stop_process(srv.proc)
    stop_process(etcd.proc)


@pytest.fixture
async def sa_ns(client):
    """A fresh namespace with the controllers running, once its default SA exists."""
    name = f"sa-{uuid.uuid4().hex[:8]}"
    async with running_controllers(client, ["serviceaccount", "root-ca-cert-publisher"]):
        await client.create("namespaces", {"metadata": {"name": name}})
        await eventually(lambda: _exists(client, "serviceaccounts", "default", name))
        await eventually(lambda: _exists(client, "configmaps", "kube-root-ca.crt", name))
        yield name


async def _exists(client, kind, name, ns):
    try:
        return await client.get(kind, name, ns)
    except StatusError:
        return None


def pod(name, **spec):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "minik8s/busybox:1.35"}], **spec}}


def token_request(pod_obj=None, audiences=None, seconds=None):
    spec: dict = {}
    if audiences is not None:
        spec["audiences"] = audiences
    if seconds is not None:
        spec["expirationSeconds"] = seconds
    if pod_obj is not None:
        spec["boundObjectRef"] = {"kind": "Pod", "apiVersion": "v1",
                                  "name": pod_obj["metadata"]["name"],
                                  "uid": pod_obj["metadata"]["uid"]}
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}


def bearer(apiserver, token):
    return httpx.AsyncClient(base_url=apiserver.url,
                             verify=ssl.create_default_context(cafile=str(apiserver.pki.ca_cert)),
                             headers={"Authorization": f"Bearer {token}"}, timeout=30)


async def test_controllers_keep_default_sa_and_root_ca(apiserver, client, sa_ns):
    cm = await client.get("configmaps", "kube-root-ca.crt", sa_ns)
    assert cm["data"] == {"ca.crt": apiserver.pki.ca_cert.read_text()}
    async with running_controllers(client, ["serviceaccount", "root-ca-cert-publisher"]):
        old = await client.get("serviceaccounts", "default", sa_ns)
        await client.delete("serviceaccounts", "default", sa_ns)
        await client.patch("configmaps", "kube-root-ca.crt", {"data": {"ca.crt": "bogus"}},
                           sa_ns)

        async def repaired():
            sa = await _exists(client, "serviceaccounts", "default", sa_ns)
            cm = await client.get("configmaps", "kube-root-ca.crt", sa_ns)
            return (sa is not None and sa["metadata"]["uid"] != old["metadata"]["uid"]
                    and cm["data"]["ca.crt"] == apiserver.pki.ca_cert.read_text())
        await eventually(repaired, message="default SA recreated and CA ConfigMap repaired")


async def test_admission_defaults_and_token_volume(client, sa_ns):
    p = await client.create("pods", {**pod("p"), "spec": {
        **pod("p")["spec"], "initContainers": [{"name": "i", "image": "minik8s/busybox:1.35"}]}},
        sa_ns)
    spec = p["spec"]
    assert spec["serviceAccountName"] == "default"
    [vol] = spec["volumes"]
    assert vol["name"].startswith("kube-api-access-") and len(vol["name"]) == 21
    assert [list(s) for s in vol["projected"]["sources"]] == [
        ["serviceAccountToken"], ["configMap"], ["downwardAPI"]]
    assert vol["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"] == 3607
    for c in spec["containers"] + spec["initContainers"]:
        assert c["volumeMounts"] == [{"name": vol["name"], "readOnly": True,
                                      "mountPath": MOUNT}]


async def test_automount_false_and_missing_service_account(client, sa_ns):
    p = await client.create("pods", pod("off", automountServiceAccountToken=False), sa_ns)
    assert "volumes" not in p["spec"] and "volumeMounts" not in p["spec"]["containers"][0]
    await client.create("serviceaccounts", {"metadata": {"name": "quiet"},
                                            "automountServiceAccountToken": False}, sa_ns)
    p = await client.create("pods", pod("quiet", serviceAccountName="quiet"), sa_ns)
    assert "volumes" not in p["spec"]
    p = await client.create("pods", pod("loud", serviceAccountName="quiet",
                                        automountServiceAccountToken=True), sa_ns)
    assert p["spec"]["volumes"][0]["name"].startswith("kube-api-access-")
    with pytest.raises(StatusError) as exc:
        await client.create("pods", pod("nope", serviceAccountName="nope"), sa_ns)
    assert exc.value.code == 403 and exc.value.reason == "Forbidden"
    assert str(exc.value) == (f'pods "nope" is forbidden: error looking up service account '
                              f'{sa_ns}/nope: serviceaccount "nope" not found')


async def test_token_request_shape_and_errors(apiserver, client, sa_ns):
    p = await client.create("pods", pod("tp"), sa_ns)
    tr = await client.create("serviceaccounts", token_request(p, seconds=600), sa_ns,
                             subresource="token", name="default")
    assert tr["kind"] == "TokenRequest" and tr["apiVersion"] == "authentication.k8s.io/v1"
    assert tr["spec"]["audiences"] == ["https://kubernetes.default.svc.cluster.local"]
    assert tr["spec"]["boundObjectRef"]["uid"] == p["metadata"]["uid"]
    payload = tr["status"]["token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    sa = await client.get("serviceaccounts", "default", sa_ns)
    assert claims["sub"] == f"system:serviceaccount:{sa_ns}:default"
    assert claims["exp"] - claims["iat"] == 600
    assert claims["kubernetes.io"] == {
        "namespace": sa_ns, "serviceaccount": {"name": "default", "uid": sa["metadata"]["uid"]},
        "pod": {"name": "tp", "uid": p["metadata"]["uid"]}}
    for body, code, text in [
        (token_request(seconds=599), 422, "may not specify a duration less than 10 minutes"),
        ({"kind": "TokenRequest", "spec": {"boundObjectRef": {"kind": "Secret", "name": "x"}}},
         400, "cannot bind token to object of type"),
    ]:
        with pytest.raises(StatusError) as exc:
            await client.create("serviceaccounts", body, sa_ns, subresource="token",
                                name="default")
        assert exc.value.code == code and text in str(exc.value)
    with pytest.raises(StatusError) as exc:
        await client.create("serviceaccounts", token_request(), sa_ns, subresource="token",
                            name="ghost")
    assert exc.value.code == 404 and str(exc.value) == 'serviceaccounts "ghost" not found'
    await client.create("serviceaccounts", {"metadata": {"name": "other"}}, sa_ns)
    with pytest.raises(StatusError) as exc:
        await client.create("serviceaccounts", token_request(p), sa_ns, subresource="token",
                            name="other")
    assert exc.value.code == 400 and "different serviceaccount name" in str(exc.value)


async def test_token_authenticates_and_is_authorized_read_only(apiserver, client, sa_ns):
    p = await client.create("pods", pod("who"), sa_ns)
    tr = await client.create("serviceaccounts", token_request(p), sa_ns, subresource="token",
                             name="default")
    user = f"system:serviceaccount:{sa_ns}:default"
    async with bearer(apiserver, tr["status"]["token"]) as http:
        r = await http.get(f"/api/v1/namespaces/{sa_ns}/pods")
        assert r.status_code == 200
        assert [i["metadata"]["name"] for i in r.json()["items"]] == ["who"]
        assert (await http.get("/api")).status_code == 200  # discovery
        r = await http.get("/api/v1/namespaces/default/pods")
        assert r.status_code == 403
        body = r.json()
        assert body["kind"] == "Status" and body["reason"] == "Forbidden"
        assert body["message"] == (f'pods is forbidden: User "{user}" cannot list resource '
                                   f'"pods" in API group "" in the namespace "default"')
        r = await http.get(f"/api/v1/namespaces/{sa_ns}/secrets")
        assert r.status_code == 403 and r.json()["details"]["kind"] == "secrets"
        r = await http.post(f"/api/v1/namespaces/{sa_ns}/configmaps",
                            json={"metadata": {"name": "x"}})
        assert r.status_code == 403
    # other audiences are not this server's; a tampered token is nobody
    tr_vault = await client.create("serviceaccounts", token_request(p, audiences=["vault"]),
                                   sa_ns, subresource="token", name="default")
    head, body_b64, sig = tr["status"]["token"].split(".")
    for bad in (tr_vault["status"]["token"], f"{head}.{body_b64}.{sig[:-4]}AAAA"):
        async with bearer(apiserver, bad) as http:
            r = await http.get(f"/api/v1/namespaces/{sa_ns}/pods")
            assert r.status_code == 401 and r.json()["reason"] == "Unauthorized"


async def test_service_account_never_reaches_secrets_or_pod_subresources(apiserver, client,
                                                                        sa_ns):
    """The policy as README states it: get/list/watch in its own namespace of every kind but
    Secrets; every Secret path, every verb, every scope refused, and no exec, log,
    port-forward, token or key report either."""
    p = await client.create("pods", pod("who"), sa_ns)
    await client.create("secrets", {"metadata": {"name": "s"}, "stringData": {"k": "v"}}, sa_ns)
    tr = await client.create("serviceaccounts", token_request(p), sa_ns, subresource="token",
                             name="default")
    ns_path = f"/api/v1/namespaces/{sa_ns}"
    async with bearer(apiserver, tr["status"]["token"]) as http:
        for path in (f"{ns_path}/configmaps", f"{ns_path}/configmaps?watch=true&"
                     f"timeoutSeconds=1", f"{ns_path}/pods/who", f"{ns_path}/serviceaccounts"):
            r = await http.get(path)
            assert r.status_code == 200, (path, r.text)
        refused = [("GET", f"{ns_path}/secrets"), ("GET", f"{ns_path}/secrets/s"),
                   ("GET", f"{ns_path}/secrets?watch=true"),
                   ("GET", f"{ns_path}/secrets/s?watch=1"),
                   ("GET", "/api/v1/secrets"), ("GET", "/api/v1/secrets?watch=true"),
                   ("GET", "/api/v1/namespaces/default/secrets"),
                   ("GET", "/api/v1/pods"), ("GET", "/api/v1/pods?watch=true"),
                   ("POST", f"{ns_path}/secrets"), ("PUT", f"{ns_path}/secrets/s"),
                   ("PATCH", f"{ns_path}/secrets/s"), ("DELETE", f"{ns_path}/secrets/s"),
                   ("DELETE", f"{ns_path}/secrets"),
                   ("GET", f"{ns_path}/pods/who/log"),
                   ("GET", f"{ns_path}/pods/who/exec?command=ls"),
                   ("POST", f"{ns_path}/pods/who/exec?command=ls"),
                   ("POST", f"{ns_path}/pods/who/portforward"),
                   ("POST", f"{ns_path}/serviceaccounts/default/token"),
                   ("GET", "/encryption/status")]
        for method, path in refused:
            body = {"metadata": {"name": "s"}} if method in ("POST", "PUT") else None
            headers = {"Content-Type": "application/merge-patch+json"} \
                if method == "PATCH" else {}
            r = await http.request(method, path, json=body if body else None,
                                   content=b"{}" if method == "PATCH" else None,
                                   headers=headers)
            assert r.status_code == 403, (method, path, r.status_code, r.text)
            assert r.json()["reason"] == "Forbidden"
    assert (await client.get("secrets", "s", sa_ns))["data"] == {"k": "dg=="}


async def test_crafted_tokens_are_401_never_500(apiserver, sa_ns):
    """Unauthenticated requests with JWT-shaped garbage: a kid that is a list or an object,
    a header nested past Python's recursion limit, broken base64 and JSON; each is a 401
    Status, as any bad token."""
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    body = b64(b'{"iss":"x"}')
    headers = [b'{"alg":"RS256","kid":["a"]}', b'{"alg":"RS256","kid":{"a":1}}',
               b'{"alg":"RS256","kid":' + b"[" * 3000 + b"]" * 3000 + b"}",
               b"[" * 3000 + b"]" * 3000, b'{"alg":"RS256"', b"\xff"]
    tokens = [f"{b64(h)}.{body}.{b64(b'sig')}" for h in headers] + ["a.b.c", "..", "!.!.!"]
    for token in tokens:
        async with bearer(apiserver, token) as http:
            r = await http.get(f"/api/v1/namespaces/{sa_ns}/pods")
            assert r.status_code == 401, (token[:60], r.text)
            assert r.json()["kind"] == "Status" and r.json()["reason"] == "Unauthorized"


async def test_tokens_die_with_their_pod_or_service_account(apiserver, client, sa_ns):
    p = await client.create("pods", pod("short"), sa_ns)
    bound = (await client.create("serviceaccounts", token_request(p), sa_ns,
                                 subresource="token", name="default"))["status"]["token"]
    await client.create("serviceaccounts", {"metadata": {"name": "temp"}}, sa_ns)
    free = (await client.create("serviceaccounts", token_request(), sa_ns,
                                subresource="token", name="temp"))["status"]["token"]
    path = f"/api/v1/namespaces/{sa_ns}/pods"
    for token in (bound, free):
        async with bearer(apiserver, token) as http:
            assert (await http.get(path)).status_code == 200
    await client.delete("pods", "short", sa_ns)
    await client.delete("serviceaccounts", "temp", sa_ns)
    await client.create("serviceaccounts", {"metadata": {"name": "temp"}}, sa_ns)  # new uid
    for token in (bound, free):
        async with bearer(apiserver, token) as http:
            r = await http.get(path)
            assert r.status_code == 401


async def test_node_gets_tokens_only_for_its_pods(apiserver, client, sa_ns):
    kc = apiserver.kubeconfig_for("node-sa-a", "system:node:sa-a", ("system:nodes",))
    mine = await client.create("pods", pod("mine", nodeName="sa-a"), sa_ns)
    theirs = await client.create("pods", pod("theirs", nodeName="sa-b"), sa_ns)
    async with Client.from_kubeconfig(str(kc)) as node:
        tr = await node.create("serviceaccounts", token_request(mine), sa_ns,
                               subresource="token", name="default")
        assert tr["status"]["token"]
        for body in (token_request(theirs), token_request()):
            with pytest.raises(StatusError) as exc:
                await node.create("serviceaccounts", body, sa_ns, subresource="token",
                                  name="default")
            assert exc.value.code == 403
            assert str(exc.value) == ('serviceaccounts "default" is forbidden: User '
                                      '"system:node:sa-a" cannot create resource '
                                      '"serviceaccounts/token" in API group "" in the '
                                      f'namespace "{sa_ns}"')
