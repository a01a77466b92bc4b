"""The signed cluster-info as pure logic: the detached JWS (checked against a signature computed
here independently from RFC 7515 with hmac and base64, and against Kubernetes' own published
vectors), which token Secrets may sign, and the bootstrap signer's reconcile over a fake
client: keys added, updated and removed, other keys kept, nothing written when nothing
changes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timedelta, timezone

import pytest

from controller.bootstrapsigner import (CONFIGMAP_KEY, BootstrapSigner, signed_data,
                                        wanted_signatures)
from minik8s.api import bootstraptoken as bt
from minik8s.api.errors import Conflict
from minik8s.pki.jws import (b64url_decode, b64url_encode, detached_signature,
                             detached_signature_valid)

from fakes import FakeClient, FakeInformers

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
KUBECONFIG = "apiVersion: v1\nclusters:\n- cluster:\n    server: https://10.0.0.1:6443\n"


def _rfc7515_detached(content: str, kid: str, key: str) -> str:
    """RFC 7515 section 7.1 compact serialization with the payload removed (Appendix F),
    written out step by step without the module under test."""
    def enc(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).decode().rstrip("=")
    protected = enc(b'{"alg":"HS256","kid":"' + kid.encode() + b'"}')
    signing_input = (protected + "." + enc(content.encode())).encode("ascii")
    # Kubernetes zero-pads the key to 32 bytes for go-jose: do that here, to show it is the
    # same HMAC as the plain 16-byte secret the module uses.
    padded = key.encode().ljust(32, b"\0")
    return protected + ".." + enc(hmac.new(padded, signing_input, hashlib.sha256).digest())


# --- the signature --------------------------------------------------------------------------


def test_known_answer_against_an_independent_rfc7515_computation():
    sig = detached_signature(KUBECONFIG, "abcdef", "0123456789abcdef")
    assert sig == _rfc7515_detached(KUBECONFIG, "abcdef", "0123456789abcdef")
    header, payload, mac = sig.split(".")
    assert payload == ""  # detached: header..signature
    assert json.loads(b64url_decode(header)) == {"alg": "HS256", "kid": "abcdef"}
    assert len(b64url_decode(mac)) == 32


def test_kubernetes_published_vectors():
    # k8s.io/cluster-bootstrap/token/jws jws_test.go: what a real kubeadm join compares with
    content = "Hello from the other side. I must have called a thousand times."
    head = "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9.."
    assert detached_signature(content, "joshua", "my voice is my passcode") == \
        head + "VShe2taLd-YTrmWuRkcL_8QTNDHYxQIEBsAYYiIj1_8"
    assert detached_signature("", "joshua", "my voice is my passcode") == \
        head + "7Ui1ALizW4jXphVUB7xUqC9vLYLL9RZeOFfVLoB7Tgk"
    assert detached_signature(content, "joshua", "") == \
        head + "UfkqvDGiIFxrMnFseDj9LYJOLNrvjW8aHhF71mvvAs8"


def test_verification_accepts_only_the_exact_signature():
    sig = detached_signature(KUBECONFIG, "abcdef", "0123456789abcdef")
    assert detached_signature_valid(sig, KUBECONFIG, "abcdef", "0123456789abcdef")
    for bad_sig, content, kid, key in (
            (sig, KUBECONFIG + " ", "abcdef", "0123456789abcdef"),      # content changed
            (sig, KUBECONFIG, "abcdef", "0123456789abcdeX"),            # another secret
            (sig, KUBECONFIG, "abcdeg", "0123456789abcdef"),            # another token id
            (sig + "foo", KUBECONFIG, "abcdef", "0123456789abcdef"),
            (sig.replace("..", "." + b64url_encode(KUBECONFIG.encode()) + "."), KUBECONFIG,
             "abcdef", "0123456789abcdef"),                             # not detached
            ("", KUBECONFIG, "abcdef", "0123456789abcdef"),
            ("ünïcode..x", KUBECONFIG, "abcdef", "0123456789abcdef")):
        assert not detached_signature_valid(bad_sig, content, kid, key), (bad_sig, kid, key)


def test_base64url_round_trip_and_errors():
    for raw in (b"", b"\xfb\xff", b"a", b"ab", b"abc", bytes(range(256))):
        text = b64url_encode(raw)
        assert "=" not in text and "+" not in text and "/" not in text
        assert b64url_decode(text) == raw
    with pytest.raises(ValueError):
        b64url_decode("a")
    with pytest.raises(ValueError):
        b64url_decode("é")


# --- which tokens sign ------------------------------------------------------------------------


def _secret(token="abcdef.0123456789abcdef", ttl=timedelta(hours=1), **data):
    s = bt.new_secret(token, ttl=ttl, now=NOW)
    for k, v in data.items():
        s["data"][k] = base64.b64encode(v.encode()).decode()
    return s


def test_tokens_made_by_init_and_token_create_may_sign():
    secret = bt.new_secret("abcdef.0123456789abcdef", ttl=timedelta(hours=24), now=NOW)
    assert bt.data_of(secret)["usage-bootstrap-signing"] == "true"
    assert bt.signing_token(secret, NOW) == ("abcdef", "0123456789abcdef")
    assert bt.signing_token(_secret(ttl=None), NOW + timedelta(days=999)) is not None


@pytest.mark.parametrize("why,secret", [
    ("not for signing", _secret(**{"usage-bootstrap-signing": "false"})),
    ("expired", _secret(ttl=timedelta(seconds=-1))),
    ("unreadable expiration", _secret(expiration="tomorrow")),
    ("wrong type", {**_secret(), "type": "Opaque"}),
    ("name does not match its id", {**_secret(), "metadata": {
        "name": "bootstrap-token-zzzzzz", "namespace": "kube-system"}}),
    ("malformed secret", _secret(**{"token-secret": "short"})),
    ("being deleted", {**_secret(), "metadata": {
        **_secret()["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"}}),
])
def test_tokens_that_do_not_sign(why, secret):
    assert bt.signing_token(secret, NOW) is None, why


def test_naive_expiration_is_read_as_utc():
    secret = _secret(expiration="2026-01-01T01:00:00")
    assert bt.signing_token(secret, NOW) is not None
    assert bt.signing_token(secret, NOW + timedelta(hours=2)) is None


def test_wanted_signatures_and_signed_data():
    secrets = [_secret("aaaaaa.0123456789abcdef", ttl=timedelta(hours=2)),
               _secret("bbbbbb.0123456789abcdef", ttl=timedelta(minutes=5)),
               _secret("cccccc.0123456789abcdef", **{"usage-bootstrap-signing": "false"})]
    wanted, soonest = wanted_signatures(KUBECONFIG, secrets, NOW)
    assert wanted == {
        "jws-kubeconfig-aaaaaa": detached_signature(KUBECONFIG, "aaaaaa", "0123456789abcdef"),
        "jws-kubeconfig-bbbbbb": detached_signature(KUBECONFIG, "bbbbbb", "0123456789abcdef")}
    assert soonest == NOW + timedelta(minutes=5)
    data = {"kubeconfig": KUBECONFIG, "clusterCIDR": "10.244.0.0/16",
            "jws-kubeconfig-gone00": "x..y", "jws-kubeconfig-aaaaaa": "stale..sig"}
    assert signed_data(data, wanted) == {"kubeconfig": KUBECONFIG,
                                         "clusterCIDR": "10.244.0.0/16", **wanted}


# --- the controller over a fake client ----------------------------------------------------------


def _cluster_info(data):
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cluster-info", "namespace": "kube-public"}, "data": data}


def _data(client):
    return client.stored("configmaps", "cluster-info", "kube-public")["data"]


async def test_signer_adds_updates_removes_and_writes_only_on_change():
    client = FakeClient()
    client.seed("configmaps", _cluster_info({"kubeconfig": KUBECONFIG, "clusterCIDR": "x",
                                             "jws-kubeconfig-gone00": "old..sig"}))
    client.seed("secrets", bt.new_secret("aaaaaa.0123456789abcdef", ttl=timedelta(hours=1)))
    client.seed("secrets", bt.new_secret("bbbbbb.0123456789abcdef", ttl=None))
    signer = BootstrapSigner(client, FakeInformers(client))
    result = await signer.reconcile(CONFIGMAP_KEY)
    assert result is not None and 3500 < result.requeue_after <= 3601  # aaaaaa's expiry
    assert _data(client) == {
        "kubeconfig": KUBECONFIG, "clusterCIDR": "x",
        "jws-kubeconfig-aaaaaa": detached_signature(KUBECONFIG, "aaaaaa", "0123456789abcdef"),
        "jws-kubeconfig-bbbbbb": detached_signature(KUBECONFIG, "bbbbbb", "0123456789abcdef")}
    writes = client.count("update")
    await signer.reconcile(CONFIGMAP_KEY)
    assert client.count("update") == writes  # nothing changed: nothing written

    cm = client.stored("configmaps", "cluster-info", "kube-public")
    await client.update("configmaps", {**cm, "data": {**cm["data"], "kubeconfig": "new"}})
    await client.delete("secrets", "bootstrap-token-aaaaaa", "kube-system")
    assert await signer.reconcile(CONFIGMAP_KEY) is None  # no expiring token left
    assert _data(client) == {
        "kubeconfig": "new", "clusterCIDR": "x",
        "jws-kubeconfig-bbbbbb": detached_signature("new", "bbbbbb", "0123456789abcdef")}


async def test_signer_leaves_a_configmap_without_kubeconfig_alone_and_conflicts_propagate():
    client = FakeClient()
    client.seed("secrets", bt.new_secret("aaaaaa.0123456789abcdef", ttl=None))
    signer = BootstrapSigner(client, FakeInformers(client))
    assert await signer.reconcile(CONFIGMAP_KEY) is None  # no ConfigMap at all
    client.seed("configmaps", _cluster_info({"other": "x"}))
    assert await signer.reconcile(CONFIGMAP_KEY) is None
    assert _data(client) == {"other": "x"} and client.count("update") == 0
    client.seed("configmaps", _cluster_info({"kubeconfig": KUBECONFIG}))
    client.fail("update", Conflict.object("configmaps", "", "cluster-info", "modified"),
                times=1)
    with pytest.raises(Conflict):  # the Controller requeues it with backoff
        await signer.reconcile(CONFIGMAP_KEY)
    await signer.reconcile(CONFIGMAP_KEY)
    assert "jws-kubeconfig-aaaaaa" in _data(client)
