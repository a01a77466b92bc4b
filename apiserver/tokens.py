"""Service-account tokens: JWTs the API server signs (RS256, with the PKI's ``sa.key``) and
later accepts as the identity of a ServiceAccount, as Kubernetes' bound service-account
tokens work.

Three parts, each usable alone: ``JWTSigner``/``JWTVerifier`` are pure (bytes in, claims out,
no server), so tampering, expiry and audience checks are unit-tested directly;
``serve_token_request`` is the ``serviceaccounts/{name}/token`` (TokenRequest) endpoint;
``ServiceAccountTokenAuthenticator`` is a token authenticator for ``apiserver.auth``'s chain.

A token names the ServiceAccount (and the Pod it is bound to) by uid, and every request looks
both up in etcd: deleting the Pod or the ServiceAccount revokes its tokens at once, with no
revocation list, exactly as Kubernetes' bound tokens behave. The JWT code is written against
``cryptography`` directly (RFC 7515/7519, one algorithm) rather than a JWT library.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from minik8s.api.errors import (BadRequest, Conflict, Invalid, NotFound,
                                ServiceUnavailable, StatusError, field_cause)
from minik8s.api.meta import Obj
from minik8s.api.registry import REGISTRY
from minik8s.pki.jws import b64url_decode, b64url_encode

from apiserver.authz import NODES_GROUP, RequestAttributes, authorize, forbidden_error

log = logging.getLogger(__name__)

DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
SA_PREFIX = "system:serviceaccount:"
SA_GROUP = "system:serviceaccounts"
MIN_EXPIRATION_SECONDS = 600          # TokenRequest validation: at least 10 minutes
MAX_EXPIRATION_SECONDS = 1 << 32
DEFAULT_EXPIRATION_SECONDS = 3600     # TokenRequestSpec defaulting
TOKEN_REQUEST_API = "authentication.k8s.io/v1"


class TokenError(Exception):
    """Why a token is not accepted (never shown to the client: it gets a plain 401)."""


_b64 = b64url_encode


def _unb64(text: str) -> bytes:
    try:
        return b64url_decode(text)
    except ValueError as exc:
        raise TokenError(str(exc)) from None


def key_id(public_key: Any) -> str:
    """Kubernetes' ``kid``: base64url(SHA-256(DER SubjectPublicKeyInfo))."""
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return _b64(hashlib.sha256(der).digest())


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class JWTSigner:
    """Signs claims as a compact JWS, RS256."""

    def __init__(self, private_key: rsa.RSAPrivateKey):
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise ValueError("the service-account signing key must be an RSA private key")
        self.key = private_key
        self.kid = key_id(private_key.public_key())

    @classmethod
    def from_pem(cls, pem: bytes) -> "JWTSigner":
        return cls(serialization.load_pem_private_key(pem, None))  # type: ignore[arg-type]

    def sign(self, claims: dict[str, Any]) -> str:
        header = {"alg": "RS256", "kid": self.kid}
        signing_input = (_b64(json.dumps(header, separators=(",", ":")).encode()) + "." +
                         _b64(json.dumps(claims, separators=(",", ":")).encode()))
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64(signature)


class JWTVerifier:
    """Checks a compact JWS against a set of RSA public keys, then the time and audience
    claims; the claims of a token that passes."""

    def __init__(self, public_keys: Iterable[Any], *, issuers: Iterable[str],
                 audiences: Iterable[str], clock: Callable[[], float] = time.time,
                 leeway: float = 60.0):
        self.keys = {key_id(k): k for k in public_keys if isinstance(k, rsa.RSAPublicKey)}
        self.issuers = set(issuers)
        self.audiences = set(audiences)
        self.clock = clock
        self.leeway = leeway

    @classmethod
    def from_pem(cls, pem: bytes, **kw: Any) -> "JWTVerifier":
        return cls(load_public_keys(pem), **kw)

    def verify(self, token: str) -> dict[str, Any]:
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenError("not a compact JWS")
        try:
            header = json.loads(_unb64(parts[0]))
        except (ValueError, RecursionError):  # RecursionError: deeply nested JSON
            raise TokenError("bad header") from None
        if not isinstance(header, dict) or header.get("alg") != "RS256":
            raise TokenError("unsupported algorithm")  # never "none", never HMAC
        kid = header.get("kid")
        keys = ([self.keys[kid]] if isinstance(kid, str) and kid in self.keys
                else list(self.keys.values()))
        signature = _unb64(parts[2])
        signing_input = f"{parts[0]}.{parts[1]}".encode()
        for key in keys:
            try:
                key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
                break
            except InvalidSignature:
                continue
        else:
            raise TokenError("invalid signature")
        try:
            claims = json.loads(_unb64(parts[1]))
        except (ValueError, RecursionError):
            raise TokenError("bad claims") from None
        if not isinstance(claims, dict):
            raise TokenError("bad claims")
        if not isinstance(claims.get("iss"), str) or claims["iss"] not in self.issuers:
            raise TokenError("unknown issuer")
        now = self.clock()
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not isinstance(exp, (int, float)) or now > exp + self.leeway:
            raise TokenError("token has expired")
        if isinstance(nbf, (int, float)) and now < nbf - self.leeway:
            raise TokenError("token is not valid yet")
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if not self.audiences.intersection(a for a in auds if isinstance(a, str)):
            raise TokenError("token audiences do not match")
        return claims


def load_public_keys(pem: bytes) -> list[Any]:
    """Every public key in a PEM file (public keys, or private keys whose public half is
    taken), as ``--service-account-key-file`` accepts."""
    keys: list[Any] = []
    text = pem.decode("ascii", "replace")
    blocks = text.split("-----BEGIN ")[1:]
    for block in blocks:
        chunk = ("-----BEGIN " + block).encode()
        end = chunk.find(b"-----END ")
        if end < 0:
            continue
        stop = chunk.find(b"-----", end + 9)
        chunk = chunk[:stop + 5] + b"\n"
        try:
            if b"PRIVATE KEY" in chunk.split(b"\n", 1)[0]:
                keys.append(serialization.load_pem_private_key(chunk, None).public_key())
            else:
                keys.append(serialization.load_pem_public_key(chunk))
        except (ValueError, TypeError):
            continue
    return keys


def bound_claims(*, issuer: str, audiences: list[str], namespace: str, sa_name: str,
                 sa_uid: str, now: float, expiration_seconds: int,
                 pod: tuple[str, str] | None = None) -> dict[str, Any]:
    """The claims of a bound token, as Kubernetes' ``serviceaccount.Claims`` builds them."""
    private: dict[str, Any] = {"namespace": namespace,
                               "serviceaccount": {"name": sa_name, "uid": sa_uid}}
    if pod is not None:
        private["pod"] = {"name": pod[0], "uid": pod[1]}
    iat = int(now)
    return {"aud": list(audiences), "exp": iat + int(expiration_seconds), "iat": iat,
            "iss": issuer, "jti": str(uuid.uuid4()), "kubernetes.io": private, "nbf": iat,
            "sub": f"{SA_PREFIX}{namespace}:{sa_name}"}


@dataclass
class TokenSettings:
    """What the TokenRequest endpoint and the authenticator share."""

    issuer: str = DEFAULT_ISSUER
    audiences: tuple[str, ...] = ()           # --api-audiences (default: the issuer)
    signing_key_file: Path | None = None
    key_file: Path | None = None

    @property
    def api_audiences(self) -> list[str]:
        return list(self.audiences) or [self.issuer]


class ServiceAccountTokens:
    """Loads the keys lazily (the PKI is created when the server starts serving)."""

    def __init__(self, settings: TokenSettings, clock: Callable[[], float] = time.time):
        self.settings = settings
        self.clock = clock
        self._signer: JWTSigner | None = None
        self._verifier: JWTVerifier | None = None

    @property
    def signer(self) -> JWTSigner:
        if self._signer is None:
            path = self.settings.signing_key_file
            try:
                self._signer = JWTSigner.from_pem(Path(path).read_bytes()) if path else None
            except (OSError, ValueError, TypeError) as exc:
                log.error("cannot load the service-account signing key %s: %s", path, exc)
            if self._signer is None:
                raise ServiceUnavailable("the API server has no service-account signing key")
        return self._signer

    @property
    def verifier(self) -> JWTVerifier | None:
        if self._verifier is None:
            path = self.settings.key_file
            try:
                keys = load_public_keys(Path(path).read_bytes()) if path else []
            except OSError as exc:
                log.error("cannot read the service-account key file %s: %s", path, exc)
                return None
            if not keys:
                return None
            self._verifier = JWTVerifier(keys, issuers=[self.settings.issuer],
                                         audiences=self.settings.api_audiences,
                                         clock=self.clock)
        return self._verifier


# --- TokenRequest ------------------------------------------------------------------------

_SA = REGISTRY.resolve("serviceaccounts")
_POD = REGISTRY.resolve("pods")


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _spec_of(body: Any, sa_name: str, namespace: str) -> Obj:
    """The TokenRequest's spec, defaulted and validated as Kubernetes does."""
    if not isinstance(body, dict):
        raise BadRequest("the body of the request must be a TokenRequest object")
    kind, api_version = body.get("kind"), body.get("apiVersion")
    if (kind and kind != "TokenRequest") or (api_version and api_version != TOKEN_REQUEST_API):
        raise BadRequest(f"expected TokenRequest ({TOKEN_REQUEST_API}), got "
                         f"{kind or '?'} ({api_version or '?'})")
    md = body.get("metadata") or {}
    causes = []
    if not isinstance(md, dict):
        md = {}
    if md.get("name") and md["name"] != sa_name:
        causes.append(field_cause("metadata.name", f'Invalid value: "{md["name"]}": must '
                                  f"match the service account name if specified"))
    if md.get("namespace") and md["namespace"] != namespace:
        causes.append(field_cause("metadata.namespace", f'Invalid value: "{md["namespace"]}":'
                                  f" must match the service account namespace if specified"))
    spec = body.get("spec") if isinstance(body.get("spec"), dict) else {}
    audiences = spec.get("audiences") or []
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        causes.append(field_cause("spec.audiences", "Invalid value: must be a list of strings"))
        audiences = []
    expiration = spec.get("expirationSeconds", DEFAULT_EXPIRATION_SECONDS)
    if expiration is None:
        expiration = DEFAULT_EXPIRATION_SECONDS
    if not isinstance(expiration, int) or isinstance(expiration, bool):
        causes.append(field_cause("spec.expirationSeconds",
                                  f"Invalid value: {expiration!r}: must be an integer"))
        expiration = DEFAULT_EXPIRATION_SECONDS
    elif expiration < MIN_EXPIRATION_SECONDS:
        causes.append(field_cause("spec.expirationSeconds", f"Invalid value: {expiration}: "
                                  f"may not specify a duration less than 10 minutes"))
    elif expiration > MAX_EXPIRATION_SECONDS:
        causes.append(field_cause("spec.expirationSeconds", f"Invalid value: {expiration}: "
                                  f"may not specify a duration larger than 2^32 seconds"))
    ref = spec.get("boundObjectRef")
    if ref is not None and not isinstance(ref, dict):
        causes.append(field_cause("spec.boundObjectRef", "Invalid value: must be an object"))
        ref = None
    if causes:
        raise Invalid.object("TokenRequest", "authentication.k8s.io", sa_name, causes)
    return {"audiences": list(audiences), "expirationSeconds": expiration,
            "boundObjectRef": ref}


async def bound_pod_node(store: Any, namespace: str, body: Any) -> str | None:
    """The ``spec.nodeName`` of the Pod a TokenRequest body binds to (for authorizing a
    node: a kubelet may only ask for tokens of pods bound to it)."""
    spec = body.get("spec") if isinstance(body, dict) else None
    ref = spec.get("boundObjectRef") if isinstance(spec, dict) else None
    if not isinstance(ref, dict) or ref.get("kind") != "Pod" or not ref.get("name"):
        return None
    try:
        pod = await store.get(_POD, namespace, str(ref["name"]))
    except NotFound:
        return None
    return (pod.get("spec") or {}).get("nodeName")


async def issue(store: Any, tokens: ServiceAccountTokens, namespace: str, sa_name: str,
                body: Any, *, dry_run: bool = False) -> Obj:
    """Create a token for ``namespace/sa_name`` as the TokenRequest ``body`` asks: the
    TokenRequest with ``status.token`` and ``status.expirationTimestamp``."""
    spec = _spec_of(body, sa_name, namespace)
    sa = await store.get(_SA, namespace, sa_name)  # NotFound: serviceaccounts "x" not found
    sa_uid = (sa.get("metadata") or {}).get("uid", "")
    audiences = spec["audiences"] or tokens.settings.api_audiences
    pod_ref: tuple[str, str] | None = None
    ref = spec["boundObjectRef"]
    out_ref = None
    if ref is not None:
        kind, api_version = ref.get("kind"), ref.get("apiVersion") or "v1"
        if kind != "Pod" or api_version != "v1":
            raise BadRequest(f"cannot bind token to object of type {api_version}, "
                             f"Kind={kind}")
        pod = await store.get(_POD, namespace, str(ref.get("name") or ""))
        pod_md = pod.get("metadata") or {}
        if (pod.get("spec") or {}).get("serviceAccountName") != sa_name:
            raise BadRequest(f'cannot bind token for serviceaccount "{sa_name}" to pod running '
                             f"with different serviceaccount name.")
        if ref.get("uid") and ref["uid"] != pod_md.get("uid"):
            raise Conflict.object("Pod", "", pod_md.get("name", ""),
                                  f"the UID in the bound object reference ({ref['uid']}) does "
                                  f"not match the UID in record. The object might have been "
                                  f"deleted and then recreated")
        pod_ref = (pod_md.get("name", ""), pod_md.get("uid", ""))
        out_ref = {"kind": "Pod", "apiVersion": "v1", "name": pod_ref[0], "uid": pod_ref[1]}
    now = tokens.clock()
    expiration = spec["expirationSeconds"]
    claims = bound_claims(issuer=tokens.settings.issuer, audiences=audiences,
                          namespace=namespace, sa_name=sa_name, sa_uid=sa_uid, now=now,
                          expiration_seconds=expiration, pod=pod_ref)
    token = "" if dry_run else tokens.signer.sign(claims)
    out_spec: Obj = {"audiences": audiences, "expirationSeconds": expiration}
    if out_ref is not None:
        out_spec["boundObjectRef"] = out_ref
    return {"kind": "TokenRequest", "apiVersion": TOKEN_REQUEST_API,
            "metadata": {"name": sa_name, "namespace": namespace,
                         "creationTimestamp": _rfc3339(now)},
            "spec": out_spec,
            "status": {"token": token, "expirationTimestamp": _rfc3339(claims["exp"])}}


# --- authentication ----------------------------------------------------------------------


class ServiceAccountTokenAuthenticator:
    """A bearer token that is one of our JWTs, still valid, for an audience this server
    serves, whose ServiceAccount (and bound Pod) still exist with the same uid:
    ``system:serviceaccount:<ns>:<name>`` in ``system:serviceaccounts`` and
    ``system:serviceaccounts:<ns>``. Anything else is not ours (None)."""

    def __init__(self, tokens: ServiceAccountTokens, store: Any):
        self.tokens = tokens
        self.store = store

    async def authenticate(self, token: str) -> Any:
        from apiserver.auth import User  # auth imports authz only; keep the cycle out
        if token.count(".") != 2:
            return None
        verifier = self.tokens.verifier
        if verifier is None:
            return None
        try:
            claims = verifier.verify(token)
            ns, name, sa_uid = self._subject(claims)
        except Exception as exc:  # noqa: BLE001 - whatever a token holds, it is a 401
            log.debug("not a service-account token: %s", exc)
            return None
        try:
            await self._still_bound(claims, ns, name, sa_uid)
        except TokenError as exc:
            log.debug("service-account token refused: %s", exc)
            return None
        return User(f"{SA_PREFIX}{ns}:{name}", (SA_GROUP, f"{SA_GROUP}:{ns}"), sa_uid)

    @staticmethod
    def _subject(claims: dict[str, Any]) -> tuple[str, str, str]:
        private = claims.get("kubernetes.io")
        sub = claims.get("sub")
        if not isinstance(private, dict) or not isinstance(sub, str):
            raise TokenError("not a service-account token")
        ns = private.get("namespace")
        sa = private.get("serviceaccount") if isinstance(private.get("serviceaccount"),
                                                        dict) else {}
        name, uid = sa.get("name"), sa.get("uid")
        if not (isinstance(ns, str) and isinstance(name, str) and ns and name) or \
                sub != f"{SA_PREFIX}{ns}:{name}":
            raise TokenError("subject does not match the service account claims")
        return ns, name, str(uid or "")

    async def _still_bound(self, claims: dict[str, Any], ns: str, name: str,
                           sa_uid: str) -> None:
        try:
            sa = await self.store.get(_SA, ns, name)
        except NotFound:
            raise TokenError(f"service account {ns}/{name} has been deleted") from None
        except StatusError as exc:
            raise TokenError(f"looking up service account {ns}/{name}: {exc}") from None
        if (sa.get("metadata") or {}).get("uid") != sa_uid:
            raise TokenError(f"service account uid of {ns}/{name} does not match")
        pod = claims["kubernetes.io"].get("pod")
        if not isinstance(pod, dict):
            return
        try:
            obj = await self.store.get(_POD, ns, str(pod.get("name") or ""))
        except NotFound:
            raise TokenError(f"pod {ns}/{pod.get('name')} has been deleted") from None
        except StatusError as exc:
            raise TokenError(f"looking up pod: {exc}") from None
        md = obj.get("metadata") or {}
        if md.get("uid") != pod.get("uid"):
            raise TokenError("pod uid does not match")
        deleted = md.get("deletionTimestamp")
        if deleted:
            try:
                when = datetime.fromisoformat(deleted.replace("Z", "+00:00")).timestamp()
            except ValueError:
                when = 0.0
            if when <= self.tokens.clock():
                raise TokenError("the bound pod is being deleted")


async def serve(store: Any, tokens: ServiceAccountTokens, user: Any, namespace: str,
                name: str, body: Any, *, dry_run: bool = False) -> Obj:
    """``POST .../serviceaccounts/{name}/token``: authorize (a node only for a pod bound to
    it, as Kubernetes' node authorizer and NodeRestriction allow), then ``issue``."""
    attrs = RequestAttributes(verb="create", resource="serviceaccounts", subresource="token",
                              namespace=namespace, name=name,
                              path=f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token")
    decision = authorize(user.name, user.groups, attrs)
    if not decision.allowed and NODES_GROUP in user.groups:
        attrs = replace(attrs, pod_node_name=await bound_pod_node(store, namespace, body))
        decision = authorize(user.name, user.groups, attrs)
    if not decision.allowed:
        raise forbidden_error(user.name, attrs)
    return await issue(store, tokens, namespace, name, body, dry_run=dry_run)


__all__ = [
    "DEFAULT_ISSUER", "JWTSigner", "JWTVerifier", "MIN_EXPIRATION_SECONDS",
    "ServiceAccountTokenAuthenticator", "ServiceAccountTokens", "TokenError", "TokenSettings",
    "bound_claims", "bound_pod_node", "issue", "key_id", "load_public_keys", "new_rsa_key",
    "serve",
]
