"""Bootstrap tokens as Kubernetes keeps them: ``<id>.<secret>`` (``[a-z0-9]{6}.[a-z0-9]{16}``),
stored as Secret ``kube-system/bootstrap-token-<id>`` of type ``bootstrap.kubernetes.io/token``.
The API server authenticates them, the certificates controller consumes them, the token
cleaner deletes expired ones, the bootstrap signer signs ``kube-public/cluster-info`` with
them and ``minik8s token`` writes them: all read the Secret through this one module so they
agree on every field.

One addition to Kubernetes: a token is single-use unless created ``--reusable``. The Secret
then carries the annotation ``minik8s.io/single-use: "true"``; once a node client certificate
has been issued for it the controller records ``minik8s.io/used-by`` and shortens the
expiration to a short grace period (long enough for the joining host to fetch its
certificate with the token), after which the cleaner removes it."""

from __future__ import annotations

import base64
import re
import secrets
import string
from datetime import datetime, timedelta, timezone
from typing import Any

TOKEN_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
SECRET_TYPE = "bootstrap.kubernetes.io/token"
SECRET_PREFIX = "bootstrap-token-"
NAMESPACE = "kube-system"
USER_PREFIX = "system:bootstrap:"
GROUP = "system:bootstrappers"
DEFAULT_GROUP = "system:bootstrappers:kubeadm:default-node-token"
SINGLE_USE = "minik8s.io/single-use"
USED_BY = "minik8s.io/used-by"
# How long a consumed single-use token still authenticates (to fetch the certificate).
CONSUMED_GRACE = timedelta(minutes=2)
# The ConfigMap joining hosts read anonymously, and its keys (Kubernetes' bootstrapapi names).
CLUSTER_INFO_NAMESPACE = "kube-public"
CLUSTER_INFO_NAME = "cluster-info"
KUBECONFIG_KEY = "kubeconfig"
JWS_KEY_PREFIX = "jws-kubeconfig-"

_ALPHABET = string.ascii_lowercase + string.digits


class TokenFormatError(ValueError):
    pass


def generate() -> str:
    pick = lambda n: "".join(secrets.choice(_ALPHABET) for _ in range(n))  # noqa: E731
    return f"{pick(6)}.{pick(16)}"


def parse(token: str) -> tuple[str, str]:
    """``(id, secret)``, or ``TokenFormatError``."""
    m = TOKEN_RE.match(token or "")
    if not m:
        raise TokenFormatError(f"token {token!r} does not match [a-z0-9]{{6}}.[a-z0-9]{{16}}")
    return m.group(1), m.group(2)


def secret_name(token_id: str) -> str:
    return SECRET_PREFIX + token_id


def rfc3339(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> datetime | None:
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)  # comparable with aware times


def new_secret(token: str, *, ttl: timedelta | None, description: str = "",
               reusable: bool = False, groups: tuple[str, ...] = (DEFAULT_GROUP,),
               now: datetime | None = None) -> dict[str, Any]:
    """The Secret for ``token``; ``ttl`` None or zero: it never expires."""
    token_id, token_secret = parse(token)
    now = now or datetime.now(timezone.utc)
    data = {"token-id": token_id, "token-secret": token_secret,
            "usage-bootstrap-authentication": "true", "usage-bootstrap-signing": "true",
            "auth-extra-groups": ",".join(groups)}
    if ttl:
        data["expiration"] = rfc3339(now + ttl)
    if description:
        data["description"] = description
    md: dict[str, Any] = {"name": secret_name(token_id), "namespace": NAMESPACE}
    if not reusable:
        md["annotations"] = {SINGLE_USE: "true"}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": md, "type": SECRET_TYPE,
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def data_of(secret: dict[str, Any]) -> dict[str, str]:
    out = {}
    for k, v in (secret.get("data") or {}).items():
        try:
            out[k] = base64.b64decode(v).decode()
        except (ValueError, TypeError):
            continue
    return out


def expiration(secret: dict[str, Any]) -> datetime | None:
    text = data_of(secret).get("expiration")
    return _parse_time(text) if text else None


def is_expired(secret: dict[str, Any], now: datetime | None = None) -> bool:
    exp = expiration(secret)
    return exp is not None and exp <= (now or datetime.now(timezone.utc))


def _lapsed(data: dict[str, str], now: datetime | None) -> bool:
    """Whether decoded token ``data`` may no longer be used: its ``expiration`` has passed
    or cannot be read (as Kubernetes treats it; ``is_expired`` keeps an unreadable one)."""
    text = data.get("expiration")
    if not text:
        return False
    t = _parse_time(text)
    return t is None or t <= (now or datetime.now(timezone.utc))


def is_single_use(secret: dict[str, Any]) -> bool:
    return ((secret.get("metadata") or {}).get("annotations") or {}).get(SINGLE_USE) == "true"


def used_by(secret: dict[str, Any]) -> str | None:
    return ((secret.get("metadata") or {}).get("annotations") or {}).get(USED_BY)


def authenticate(secret: dict[str, Any] | None, token_id: str, token_secret: str,
                 now: datetime | None = None) -> tuple[str, tuple[str, ...]] | None:
    """``(user, groups)`` when ``secret`` makes the token valid for authentication now."""
    if not secret or secret.get("type") != SECRET_TYPE:
        return None
    if (secret.get("metadata") or {}).get("deletionTimestamp"):
        return None
    data = data_of(secret)
    if data.get("token-id") != token_id or not secrets.compare_digest(
            data.get("token-secret", ""), token_secret):
        return None
    if data.get("usage-bootstrap-authentication") != "true" or _lapsed(data, now):
        return None
    extra = tuple(g for g in data.get("auth-extra-groups", "").split(",")
                  if g.startswith(GROUP + ":"))
    return USER_PREFIX + token_id, (GROUP, *extra)


def signing_token(secret: dict[str, Any], now: datetime | None = None
                  ) -> tuple[str, str] | None:
    """``(id, secret)`` when ``secret`` is a bootstrap token that may sign cluster-info now:
    its type and name match its ``token-id``, ``usage-bootstrap-signing`` is ``"true"``, it
    is not being deleted and has not expired (an unreadable ``expiration`` counts as
    expired, as in Kubernetes)."""
    if secret.get("type") != SECRET_TYPE:
        return None
    md = secret.get("metadata") or {}
    if md.get("deletionTimestamp"):
        return None
    data = data_of(secret)
    token_id, token_secret = data.get("token-id", ""), data.get("token-secret", "")
    if md.get("name") != secret_name(token_id) or not TOKEN_RE.match(
            f"{token_id}.{token_secret}"):
        return None
    if data.get("usage-bootstrap-signing") != "true" or _lapsed(data, now):
        return None
    return token_id, token_secret


def consumed(secret: dict[str, Any], csr_name: str, now: datetime | None = None) -> dict[str, Any]:
    """The Secret after its single use (for ``csr_name``): marked, expiring soon."""
    now = now or datetime.now(timezone.utc)
    out = {**secret, "metadata": {**secret["metadata"]}, "data": dict(secret.get("data") or {})}
    out["metadata"]["annotations"] = {**(secret["metadata"].get("annotations") or {}),
                                      USED_BY: csr_name}
    exp = expiration(secret)
    grace = now + CONSUMED_GRACE
    if exp is None or exp > grace:
        out["data"]["expiration"] = base64.b64encode(rfc3339(grace).encode()).decode()
    return out


__all__ = ["TOKEN_RE", "SECRET_TYPE", "SECRET_PREFIX", "NAMESPACE", "USER_PREFIX", "GROUP",
           "DEFAULT_GROUP", "SINGLE_USE", "USED_BY", "CONSUMED_GRACE", "TokenFormatError",
           "generate", "parse", "secret_name", "new_secret", "data_of", "expiration",
           "is_expired", "is_single_use", "used_by", "authenticate", "consumed", "rfc3339",
           "signing_token", "CLUSTER_INFO_NAMESPACE", "CLUSTER_INFO_NAME", "KUBECONFIG_KEY",
           "JWS_KEY_PREFIX"]
