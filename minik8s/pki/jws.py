"""Detached JWS signatures over ``cluster-info``, as Kubernetes' ``cluster-bootstrap/token/jws``
makes them, so a joining host can tell that the ConfigMap it read anonymously was published
by someone who knows its bootstrap token.

The controller-manager's bootstrap signer writes one per signing token into the ConfigMap
(key ``jws-kubeconfig-<token id>``); ``minik8s join`` recomputes it from the token it was
given and compares. The format is RFC 7515 compact serialization with the payload left out
(Appendix F): ``base64url(header) + ".." + base64url(HMAC-SHA256(key, signing input))``,
where the header is ``{"alg":"HS256","kid":"<token id>"}`` (keys in that order, no spaces,
as go-jose writes it), the signing input is ``base64url(header) + "." +
base64url(content)``, and the key is the token's 16-character secret. Kubernetes pads that
key with zero bytes to 32 (go-jose wants HS256 keys that long); HMAC zero-pads any key
shorter than its 64-byte block anyway, so the plain secret gives the same signature.

The base64url helpers (no padding) are shared with the API server's service account JWTs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json


def b64url_encode(data: bytes) -> str:
    """base64url without ``=`` padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    """The inverse of ``b64url_encode``; ``ValueError`` on bad input."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"bad base64url: {exc}") from None


def detached_signature(content: str, token_id: str, token_secret: str) -> str:
    """The detached JWS (``header..signature``) of ``content`` for a bootstrap token."""
    header = b64url_encode(json.dumps({"alg": "HS256", "kid": token_id},
                                      separators=(",", ":")).encode())
    signing_input = f"{header}.{b64url_encode(content.encode())}".encode()
    mac = hmac.new(token_secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}..{b64url_encode(mac)}"


def detached_signature_valid(signature: str, content: str, token_id: str,
                             token_secret: str) -> bool:
    """Whether ``signature`` is exactly the one ``token_id.token_secret`` makes over
    ``content`` (compared in constant time)."""
    want = detached_signature(content, token_id, token_secret)
    return hmac.compare_digest(want.encode(), (signature or "").encode("utf-8", "replace"))


__all__ = ["b64url_encode", "b64url_decode", "detached_signature", "detached_signature_valid"]
