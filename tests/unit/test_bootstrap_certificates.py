"""Bootstrap tokens, the join policy and the certificates controller, as pure logic: the
token Secret format, who may do what before and after joining, which CSRs are approved or
denied automatically and what the signer issues."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from apiserver import strategy, tables
from apiserver.authz import RequestAttributes, authorize
from controller.certificates import (KUBELET_CLIENT_SIGNER, KUBELET_SERVING_SIGNER,
                                     CertificateController, TokenCleaner, check_profile)
from minik8s.api import bootstraptoken as bt
from minik8s.api.registry import REGISTRY
from minik8s.api.validation import validate
from minik8s.cli.cluster import parse_duration
from minik8s.cli.local import ClusterError
from minik8s.pki import create_ca, make_csr

from fakes import FakeClient, FakeInformers

CSR = REGISTRY.resolve("csr")
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
CLIENT_USAGES = ["digital signature", "key encipherment", "client auth"]
SERVING_USAGES = ["digital signature", "key encipherment", "server auth"]


# --- tokens -------------------------------------------------------------------------------


def test_generated_tokens_have_the_kubernetes_format():
    for _ in range(20):
        token = bt.generate()
        assert bt.TOKEN_RE.match(token)
        assert bt.parse(token) == tuple(token.split("."))


@pytest.mark.parametrize("bad", ["", "abcdef", "ABCDEF.0123456789abcdef", "abcde.0123456789abcdef",
                                 "abcdef.0123456789abcde", "abcdef:0123456789abcdef"])
def test_malformed_tokens_are_refused(bad):
    with pytest.raises(bt.TokenFormatError):
        bt.parse(bad)


def test_token_secret_and_authentication():
    secret = bt.new_secret("abcdef.0123456789abcdef", ttl=timedelta(hours=24), now=NOW)
    assert secret["metadata"] == {"name": "bootstrap-token-abcdef", "namespace": "kube-system",
                                  "annotations": {bt.SINGLE_USE: "true"}}
    assert secret["type"] == "bootstrap.kubernetes.io/token"
    data = bt.data_of(secret)
    assert data["token-id"] == "abcdef" and data["token-secret"] == "0123456789abcdef"
    assert data["expiration"] == "2026-01-02T00:00:00Z"
    assert data["usage-bootstrap-authentication"] == "true"
    assert data["usage-bootstrap-signing"] == "true"
    user = bt.authenticate(secret, "abcdef", "0123456789abcdef", now=NOW)
    assert user == ("system:bootstrap:abcdef",
                    ("system:bootstrappers", "system:bootstrappers:kubeadm:default-node-token"))
    assert bt.authenticate(secret, "abcdef", "0123456789abcdeX", now=NOW) is None
    assert bt.authenticate(secret, "abcdef", "0123456789abcdef",
                           now=NOW + timedelta(hours=25)) is None
    assert bt.authenticate({**secret, "type": "Opaque"}, "abcdef", "0123456789abcdef",
                           now=NOW) is None
    no_auth = bt.new_secret("abcdef.0123456789abcdef", ttl=None, now=NOW)
    no_auth["data"]["usage-bootstrap-authentication"] = base64.b64encode(b"false").decode()
    assert bt.authenticate(no_auth, "abcdef", "0123456789abcdef", now=NOW) is None
    odd = bt.new_secret("abcdef.0123456789abcdef", ttl=None, groups=("system:masters",))
    assert bt.authenticate(odd, "abcdef", "0123456789abcdef")[1] == ("system:bootstrappers",)


def test_reusable_tokens_and_consumption():
    reusable = bt.new_secret("abcdef.0123456789abcdef", ttl=None, reusable=True)
    assert not bt.is_single_use(reusable) and bt.expiration(reusable) is None
    once = bt.new_secret("abcdef.0123456789abcdef", ttl=timedelta(hours=1), now=NOW)
    used = bt.consumed(once, "node-csr-abcdef-1", now=NOW)
    assert bt.used_by(used) == "node-csr-abcdef-1" and bt.used_by(once) is None
    assert bt.expiration(used) == NOW + bt.CONSUMED_GRACE
    assert bt.is_expired(used, NOW + bt.CONSUMED_GRACE + timedelta(seconds=1))


def test_durations():
    assert parse_duration("24h") == timedelta(hours=24)
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("90") == timedelta(seconds=90)
    assert parse_duration("0") is None
    for bad in ("", "1d", "h", "5m3"):
        with pytest.raises(ClusterError):
            parse_duration(bad)


# --- who may do what --------------------------------------------------------------------------

BOOT = ("system:bootstrap:abcdef", ("system:bootstrappers", "system:authenticated"))
NODE = ("system:node:w1", ("system:nodes", "system:authenticated"))
ANON = ("system:anonymous", ("system:unauthenticated",))


def _csr_attrs(verb, name=""):
    return RequestAttributes(verb=verb, api_group="certificates.k8s.io",
                             resource="certificatesigningrequests", name=name)


def test_bootstrap_token_may_only_handle_its_own_csrs():
    assert authorize(*BOOT, _csr_attrs("create", "node-csr-abcdef-1234")).allowed
    assert authorize(*BOOT, _csr_attrs("get", "node-csr-abcdef-1234")).allowed
    assert authorize(*BOOT, _csr_attrs("watch", "node-csr-abcdef-1234")).allowed
    assert not authorize(*BOOT, _csr_attrs("get", "node-csr-zzzzzz-1234")).allowed
    assert not authorize(*BOOT, _csr_attrs("list")).allowed
    assert not authorize(*BOOT, _csr_attrs("update", "node-csr-abcdef-1234")).allowed
    assert not authorize(*BOOT, RequestAttributes(
        verb="update", api_group="certificates.k8s.io",
        resource="certificatesigningrequests", subresource="approval",
        name="node-csr-abcdef-1234")).allowed
    assert not authorize(*BOOT, RequestAttributes(verb="list", resource="pods",
                                                  namespace="default")).allowed
    assert not authorize(*BOOT, RequestAttributes(verb="get", resource="secrets",
                                                  namespace="kube-system",
                                                  name="bootstrap-token-abcdef")).allowed


def test_cluster_info_is_the_only_anonymous_resource():
    info = RequestAttributes(verb="get", resource="configmaps", namespace="kube-public",
                             name="cluster-info")
    assert authorize(*ANON, info).allowed and authorize(*BOOT, info).allowed
    for other in (RequestAttributes(verb="get", resource="configmaps", namespace="kube-public",
                                    name="other"),
                  RequestAttributes(verb="list", resource="configmaps", namespace="kube-public"),
                  RequestAttributes(verb="update", resource="configmaps",
                                    namespace="kube-public", name="cluster-info"),
                  RequestAttributes(verb="get", resource="configmaps", namespace="kube-system",
                                    name="cluster-info")):
        assert not authorize(*ANON, other).allowed, other


def test_nodes_ask_for_their_own_serving_certificates():
    assert authorize(*NODE, _csr_attrs("create", "kubelet-serving-w1-abcd")).allowed
    assert authorize(*NODE, _csr_attrs("get", "kubelet-serving-w1-abcd")).allowed
    assert not authorize(*NODE, _csr_attrs("get", "kubelet-serving-w2-abcd")).allowed
    cm = ("system:kube-controller-manager", ("system:authenticated",))
    assert authorize(*cm, RequestAttributes(
        verb="update", api_group="certificates.k8s.io", resource="certificatesigningrequests",
        subresource="approval", name="x")).allowed
    assert authorize(*cm, RequestAttributes(
        verb="update", api_group="certificates.k8s.io", resource="certificatesigningrequests",
        subresource="status", name="x")).allowed


# --- the CSR kind -----------------------------------------------------------------------------


def csr_obj(name: str, user: str, groups: list[str], signer: str, usages: list[str],
            cn: str = "system:node:w1", orgs=("system:nodes",), hosts=()) -> dict:
    pem, _ = make_csr(cn, list(orgs), hosts=list(hosts))
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": name},
            "spec": {"request": base64.b64encode(pem).decode(), "signerName": signer,
                     "usages": usages, "username": user, "groups": groups}}


def test_csr_validation():
    good = csr_obj("a", *BOOT[:1], list(BOOT[1]), KUBELET_CLIENT_SIGNER, CLIENT_USAGES)
    assert validate(CSR, good) == []
    bad = {**good, "spec": {**good["spec"], "request": "bm90IGEgY3Ny",
                            "signerName": "nodomain", "usages": ["fly"]}}
    fields = {c["field"] for c in validate(CSR, bad)}
    assert fields == {"spec.request", "spec.signerName", "spec.usages[0]"}
    both = {**good, "status": {"conditions": [{"type": "Approved"}, {"type": "Denied"}]}}
    assert [c["field"] for c in validate(CSR, both)] == ["status.conditions"]
    changed = {**good, "metadata": {"name": "a"},
               "spec": {**good["spec"], "signerName": "example.com/x"}}
    assert any(c["field"] == "spec" for c in validate(CSR, changed, good))


def test_approval_subresource_writes_only_conditions():
    old = csr_obj("a", "u", [], KUBELET_CLIENT_SIGNER, CLIENT_USAGES)
    old["metadata"]["resourceVersion"] = "5"
    new = {**old, "spec": {**old["spec"], "signerName": "example.com/x"},
           "status": {"conditions": [{"type": "Approved", "status": "True"}],
                      "certificate": "Zm9v"}}
    out = strategy.prepare_update(CSR, new, old, "approval")
    assert out["spec"] == old["spec"]
    assert out["status"] == {"conditions": [{"type": "Approved", "status": "True"}]}
    stamped = csr_obj("a", "liar", ["system:masters"], KUBELET_CLIENT_SIGNER, CLIENT_USAGES)
    strategy.stamp_requester(CSR, stamped, "system:bootstrap:abcdef", ["system:bootstrappers"])
    assert stamped["spec"]["username"] == "system:bootstrap:abcdef"
    assert stamped["spec"]["groups"] == ["system:bootstrappers"]


def test_csr_table_row():
    csr = csr_obj("node-csr-x", "system:bootstrap:abcdef", [], KUBELET_CLIENT_SIGNER,
                  CLIENT_USAGES)
    csr["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    table = tables.to_table(CSR, [csr])
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name", "Age", "SignerName", "Requestor", "RequestedDuration", "Condition"]
    assert table["rows"][0]["cells"][2:] == [KUBELET_CLIENT_SIGNER, "system:bootstrap:abcdef",
                                             "<none>", "Pending"]
    csr["status"] = {"conditions": [{"type": "Approved", "status": "True"}],
                     "certificate": "Zm9v"}
    assert tables.to_table(CSR, [csr])["rows"][0]["cells"][-1] == "Approved,Issued"


def test_profiles():
    client = csr_obj("a", "u", [], KUBELET_CLIENT_SIGNER, CLIENT_USAGES)
    assert check_profile(client) is None
    assert "organization" in check_profile(csr_obj("a", "u", [], KUBELET_CLIENT_SIGNER,
                                                   CLIENT_USAGES, orgs=("system:masters",)))
    assert "system:node:<name>" in check_profile(csr_obj(
        "a", "u", [], KUBELET_CLIENT_SIGNER, CLIENT_USAGES, cn="kubernetes-admin"))
    assert "no subject alternative names" in check_profile(csr_obj(
        "a", "u", [], KUBELET_CLIENT_SIGNER, CLIENT_USAGES, hosts=["10.0.0.1"]))
    assert "usages" in check_profile(csr_obj("a", "u", [], KUBELET_CLIENT_SIGNER,
                                             ["client auth", "server auth"]))
    serving = csr_obj("a", "u", [], KUBELET_SERVING_SIGNER, SERVING_USAGES,
                      hosts=["10.0.0.1", "w1"])
    assert check_profile(serving) is None
    assert "DNS names or IP" in check_profile(csr_obj("a", "u", [], KUBELET_SERVING_SIGNER,
                                                      SERVING_USAGES))
    assert "not approved automatically" in check_profile(csr_obj(
        "a", "u", [], "example.com/x", CLIENT_USAGES))


# --- the controller -----------------------------------------------------------------------------


@pytest.fixture
def ca(tmp_path):
    cert, key = create_ca()
    (tmp_path / "ca.crt").write_bytes(cert)
    (tmp_path / "ca.key").write_bytes(key)
    return tmp_path / "ca.crt", tmp_path / "ca.key"


def _controller(client, ca):
    return CertificateController(client, FakeInformers(client), signing_cert=str(ca[0]),
                                 signing_key=str(ca[1]))


def _conditions(obj):
    return [(c["type"], c.get("reason")) for c in (obj.get("status") or {}).get("conditions")
            or []]


async def test_bootstrap_csr_is_approved_signed_and_consumes_a_single_use_token(ca):
    client = FakeClient()
    client.seed("secrets", bt.new_secret("abcdef.0123456789abcdef", ttl=timedelta(hours=1)))
    ctl = _controller(client, ca)
    client.seed("csr", csr_obj("node-csr-abcdef-1", *BOOT[:1], list(BOOT[1]),
                               KUBELET_CLIENT_SIGNER, CLIENT_USAGES))
    await ctl.reconcile("node-csr-abcdef-1")
    done = client.stored("csr", "node-csr-abcdef-1")
    assert _conditions(done) == [("Approved", "AutoApproved")]
    cert = x509.load_pem_x509_certificate(base64.b64decode(done["status"]["certificate"]))
    assert cert.subject.rfc4514_string() == "CN=system:node:w1,O=system:nodes"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    secret = client.stored("secrets", "bootstrap-token-abcdef", "kube-system")
    assert bt.used_by(secret) == "node-csr-abcdef-1"
    assert bt.expiration(secret) <= datetime.now(timezone.utc) + bt.CONSUMED_GRACE
    # the same request again (a retried reconcile) is fine; another one is denied
    await ctl.reconcile("node-csr-abcdef-1")
    client.seed("csr", csr_obj("node-csr-abcdef-2", *BOOT[:1], list(BOOT[1]),
                               KUBELET_CLIENT_SIGNER, CLIENT_USAGES, cn="system:node:w2"))
    await ctl.reconcile("node-csr-abcdef-2")
    again = client.stored("csr", "node-csr-abcdef-2")
    assert _conditions(again) == [("Denied", "TokenReused")]
    assert "certificate" not in (again.get("status") or {})


async def test_reusable_expired_and_missing_tokens(ca):
    client = FakeClient()
    client.seed("secrets", bt.new_secret("aaaaaa.0123456789abcdef", ttl=None, reusable=True))
    client.seed("secrets", bt.new_secret("bbbbbb.0123456789abcdef", ttl=timedelta(hours=1),
                                         now=NOW))
    ctl = _controller(client, ca)
    for i in (1, 2):
        client.seed("csr", csr_obj(f"node-csr-aaaaaa-{i}", "system:bootstrap:aaaaaa",
                                   ["system:bootstrappers"], KUBELET_CLIENT_SIGNER,
                                   CLIENT_USAGES, cn=f"system:node:w{i}"))
        await ctl.reconcile(f"node-csr-aaaaaa-{i}")
        assert _conditions(client.stored("csr", f"node-csr-aaaaaa-{i}")) == [
            ("Approved", "AutoApproved")]
    assert bt.used_by(client.stored("secrets", "bootstrap-token-aaaaaa", "kube-system")) is None
    for token_id, reason in (("bbbbbb", "TokenExpired"), ("cccccc", "TokenInvalid")):
        name = f"node-csr-{token_id}-1"
        client.seed("csr", csr_obj(name, f"system:bootstrap:{token_id}",
                                   ["system:bootstrappers"], KUBELET_CLIENT_SIGNER,
                                   CLIENT_USAGES))
        await ctl.reconcile(name)
        assert _conditions(client.stored("csr", name)) == [("Denied", reason)]


async def test_node_serving_csr_and_what_stays_pending(ca):
    client = FakeClient()
    ctl = _controller(client, ca)
    client.seed("csr", csr_obj("kubelet-serving-w1-1", *NODE[:1], list(NODE[1]),
                               KUBELET_SERVING_SIGNER, SERVING_USAGES,
                               hosts=["10.0.0.7", "w1"]))
    await ctl.reconcile("kubelet-serving-w1-1")
    done = client.stored("csr", "kubelet-serving-w1-1")
    cert = x509.load_pem_x509_certificate(base64.b64decode(done["status"]["certificate"]))
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(s.value) for s in sans] == ["10.0.0.7", "w1"]
    # a node asking for another node's name, a bootstrap token asking for a serving
    # certificate, an unknown signer: left for an admin
    for name, user, groups, signer, usages, cn, hosts in (
            ("kubelet-serving-w1-2", *NODE[:1], list(NODE[1]), KUBELET_SERVING_SIGNER,
             SERVING_USAGES, "system:node:w2", ["10.0.0.8"]),
            ("node-csr-abcdef-9", *BOOT[:1], list(BOOT[1]), KUBELET_SERVING_SIGNER,
             SERVING_USAGES, "system:node:w1", ["10.0.0.7"]),
            ("other", "alice", ["system:authenticated"], "example.com/x", CLIENT_USAGES,
             "alice", [])):
        client.seed("csr", csr_obj(name, user, groups, signer, usages, cn=cn, hosts=hosts))
        await ctl.reconcile(name)
        assert _conditions(client.stored("csr", name)) == [], name


async def test_token_cleaner_deletes_expired_tokens_only():
    client = FakeClient()
    client.seed("secrets", bt.new_secret("aaaaaa.0123456789abcdef", ttl=timedelta(hours=1),
                                         now=NOW))
    client.seed("secrets", bt.new_secret("bbbbbb.0123456789abcdef", ttl=timedelta(hours=1)))
    client.seed("secrets", {"metadata": {"name": "plain", "namespace": "kube-system"},
                            "type": "Opaque"})
    cleaner = TokenCleaner(client, FakeInformers(client))
    assert await cleaner.reconcile("kube-system/bootstrap-token-aaaaaa") is None
    result = await cleaner.reconcile("kube-system/bootstrap-token-bbbbbb")
    assert result is not None and 3500 < result.requeue_after <= 3601
    assert await cleaner.reconcile("kube-system/plain") is None
    assert client.stored("secrets", "bootstrap-token-aaaaaa", "kube-system") is None
    assert client.stored("secrets", "bootstrap-token-bbbbbb", "kube-system") is not None
    assert client.stored("secrets", "plain", "kube-system") is not None
