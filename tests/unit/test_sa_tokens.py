"""Service-account JWTs (apiserver.tokens) and the ServiceAccount admission mutation
(apiserver.serviceaccount), without a server."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from apiserver.serviceaccount import (TOKEN_MOUNT_PATH, admit_pod, mount_token,
                                      should_automount)
from apiserver.tokens import (JWTSigner, JWTVerifier, TokenError, bound_claims,
                              load_public_keys, new_rsa_key)

ISS = "https://kubernetes.default.svc.cluster.local"
NOW = 1_700_000_000.0


@pytest.fixture(scope="module")
def key():
    return new_rsa_key()


def claims(**kw):
    base = dict(issuer=ISS, audiences=[ISS], namespace="ns", sa_name="default", sa_uid="u1",
                now=NOW, expiration_seconds=3600, pod=("p", "pu"))
    base.update(kw)
    return bound_claims(**base)


def verifier(key, now=NOW, audiences=(ISS,)):
    return JWTVerifier([key.public_key()], issuers=[ISS], audiences=audiences,
                       clock=lambda: now)


def test_round_trip_has_kubernetes_claims(key):
    token = JWTSigner(key).sign(claims())
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["alg"] == "RS256" and header["kid"]
    got = verifier(key).verify(token)
    assert got["sub"] == "system:serviceaccount:ns:default"
    assert got["iss"] == ISS and got["aud"] == [ISS]
    assert got["iat"] == got["nbf"] == int(NOW) and got["exp"] == int(NOW) + 3600
    assert got["kubernetes.io"] == {"namespace": "ns",
                                    "serviceaccount": {"name": "default", "uid": "u1"},
                                    "pod": {"name": "p", "uid": "pu"}}


def test_tampered_payload_is_refused(key):
    token = JWTSigner(key).sign(claims())
    head, body, sig = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(body + "=="))
    data["sub"] = "system:serviceaccount:kube-system:admin"
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenError, match="signature"):
        verifier(key).verify(f"{head}.{forged}.{sig}")


def test_other_key_and_alg_none_are_refused(key):
    token = JWTSigner(new_rsa_key()).sign(claims())
    with pytest.raises(TokenError, match="signature"):
        verifier(key).verify(token)
    none = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    body = token.split(".")[1]
    with pytest.raises(TokenError, match="algorithm"):
        verifier(key).verify(f"{none}.{body}.")
    with pytest.raises(TokenError):
        verifier(key).verify("not-a-jwt")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


CRAFTED_HEADERS = [
    b'{"alg":"RS256","kid":["a"]}',          # unhashable kid
    b'{"alg":"RS256","kid":{"a":1}}',
    b'{"alg":"RS256","kid":' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # RecursionError
    b"[" * 100_000 + b"]" * 100_000,
    b'{"alg":"RS256"',                       # not JSON
    b"\xff\xfe",                             # not UTF-8
]


@pytest.mark.parametrize("header", CRAFTED_HEADERS, ids=range(len(CRAFTED_HEADERS)))
def test_crafted_headers_are_token_errors(key, header):
    token = JWTSigner(key).sign(claims())
    _, body, sig = token.split(".")
    with pytest.raises(TokenError):
        verifier(key).verify(f"{_b64(header)}.{body}.{sig}")


async def test_authenticator_treats_any_verify_failure_as_not_ours(key):
    """Whatever blows up inside verify, the authenticator answers None (then 401)."""
    from apiserver.tokens import ServiceAccountTokenAuthenticator

    class Boom:
        def verify(self, token):
            raise TypeError("unhashable type: 'list'")

    class Tokens:
        verifier = Boom()

    auth = ServiceAccountTokenAuthenticator(Tokens(), store=None)
    assert await auth.authenticate("a.b.c") is None
    Tokens.verifier = verifier(key)
    nested = _b64(b"[" * 100_000 + b"]" * 100_000)
    assert await auth.authenticate(f"{nested}.e30.c2ln") is None


def test_expired_and_not_yet_valid(key):
    token = JWTSigner(key).sign(claims(expiration_seconds=600))
    assert verifier(key, now=NOW + 600).verify(token)
    with pytest.raises(TokenError, match="expired"):
        verifier(key, now=NOW + 600 + 61).verify(token)
    with pytest.raises(TokenError, match="not valid yet"):
        verifier(key, now=NOW - 3600).verify(token)


def test_wrong_audience_and_issuer(key):
    token = JWTSigner(key).sign(claims(audiences=["vault"]))
    with pytest.raises(TokenError, match="audiences"):
        verifier(key).verify(token)
    assert verifier(key, audiences=("vault",)).verify(token)["aud"] == ["vault"]
    other = JWTSigner(key).sign({**claims(), "iss": "https://evil"})
    with pytest.raises(TokenError, match="issuer"):
        verifier(key).verify(other)


def test_signer_wants_rsa_and_public_keys_load_from_pem(key):
    with pytest.raises(ValueError):
        JWTSigner(ec.generate_private_key(ec.SECP256R1()))
    from cryptography.hazmat.primitives import serialization
    pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    other = new_rsa_key().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    keys = load_public_keys(pub + other)
    assert len(keys) == 2 and keys[0] == key.public_key()


# --- admission mutation -------------------------------------------------------------------


def pod(**spec):
    return {"metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": [{"name": "a"}, {"name": "b", "volumeMounts": [
                {"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]}],
                "initContainers": [{"name": "i"}], **spec}}


def test_mount_token_adds_projected_volume_and_mounts():
    p = pod()
    mount_token(p, lambda: "x2z4q")
    vols = p["spec"]["volumes"]
    assert [v["name"] for v in vols] == ["kube-api-access-x2z4q"]
    sources = vols[0]["projected"]["sources"]
    assert vols[0]["projected"]["defaultMode"] == 0o644
    assert sources[0] == {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}
    assert sources[1]["configMap"] == {"name": "kube-root-ca.crt",
                                       "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    assert sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"] == \
        "metadata.namespace"
    want = {"name": "kube-api-access-x2z4q", "readOnly": True, "mountPath": TOKEN_MOUNT_PATH}
    assert p["spec"]["containers"][0]["volumeMounts"] == [want]
    assert p["spec"]["initContainers"][0]["volumeMounts"] == [want]
    # a container with its own mount at the path keeps it
    assert p["spec"]["containers"][1]["volumeMounts"] == [{"name": "mine",
                                                           "mountPath": TOKEN_MOUNT_PATH}]
    mount_token(p, lambda: "other")  # idempotent: the existing volume is reused
    assert len(p["spec"]["volumes"]) == 1
    assert len(p["spec"]["containers"][0]["volumeMounts"]) == 1


def test_automount_pod_wins_over_service_account():
    assert should_automount({}, pod())
    assert not should_automount({"automountServiceAccountToken": False}, pod())
    assert should_automount({"automountServiceAccountToken": False},
                            pod(automountServiceAccountToken=True))
    assert not should_automount({}, pod(automountServiceAccountToken=False))
    p = pod(automountServiceAccountToken=False)
    admit_pod(p, {"imagePullSecrets": [{"name": "reg"}]})
    assert "volumes" not in p["spec"]
    assert p["spec"]["imagePullSecrets"] == [{"name": "reg"}]
