"""Authentication as raw ASGI middleware, so WebSocket upgrades pass through it too (FastAPI's
``@app.middleware("http")`` never sees them). The client certificate comes from the TLS
connection (``apiserver.server`` puts ``getpeercert()`` into the connection state, since
uvicorn does not); bearer tokens are checked by a chain of token authenticators that later
features (service accounts, bootstrap tokens) extend. Anonymous requests reach only the
health and version endpoints; non-resource paths are authorized here, resource requests by
the handlers, which know the object."""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Protocol

from minik8s.api.errors import StatusError, Unauthorized
from minik8s.pki import identity_from_cert

from apiserver.authz import (ANONYMOUS_USER, AUTHENTICATED_GROUP, UNAUTHENTICATED_GROUP,
                             RequestAttributes, authorize, forbidden_error)

log = logging.getLogger(__name__)

ANONYMOUS_PATHS = ("/healthz", "/livez", "/readyz", "/version")
# The one resource anonymous clients may read (kubeadm's discovery: the CA and server URL,
# checked by the joining host against its pinned CA hash); the authorizer allows only GET.
CLUSTER_INFO_PATH = "/api/v1/namespaces/kube-public/configmaps/cluster-info"


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...]
    uid: str = ""


class TokenAuthenticator(Protocol):
    async def authenticate(self, token: str) -> User | None: ...


class StaticTokens:
    """Kubernetes' ``--token-auth-file``: ``token,user,uid,"group1,group2"`` per line."""

    def __init__(self, path: Path | None):
        self.tokens: dict[str, User] = {}
        if path and Path(path).exists():
            with open(path, newline="") as fh:
                for row in csv.reader(fh):
                    if len(row) < 2 or row[0].startswith("#"):
                        continue
                    groups = tuple(g for g in (row[3] if len(row) > 3 else "").split(",") if g)
                    self.tokens[row[0]] = User(row[1], groups, row[2] if len(row) > 2 else "")

    def add(self, token: str, user: User) -> None:
        self.tokens[token] = user

    async def authenticate(self, token: str) -> User | None:
        return self.tokens.get(token)


class BootstrapTokens:
    """Bootstrap tokens (``<id>.<secret>``) checked against their Secret in kube-system,
    read from etcd at each request (they are used a few times per joining node)."""

    def __init__(self, storage: Any):
        self.storage = storage

    async def authenticate(self, token: str) -> User | None:
        from minik8s.api import bootstraptoken as bt
        from minik8s.api.registry import REGISTRY

        try:
            token_id, token_secret = bt.parse(token)
        except bt.TokenFormatError:
            return None
        key = REGISTRY.resolve("secrets").storage_key(bt.NAMESPACE, bt.secret_name(token_id))
        try:
            secret = (await self.storage.get(key)).obj
        except Exception:  # missing (KeyMissing) or etcd trouble: not authenticated
            return None
        found = bt.authenticate(secret, token_id, token_secret)
        return User(found[0], found[1]) if found else None


class Authenticator:
    def __init__(self, token_authenticators: list[TokenAuthenticator] | None = None):
        self.token_authenticators = list(token_authenticators or [])

    async def authenticate(self, scope: dict[str, Any]) -> User | None:
        cert = (scope.get("state") or {}).get("peercert")
        if cert:
            name, groups = identity_from_cert(cert)
            if name:
                return User(name, tuple(groups) + (AUTHENTICATED_GROUP,))
        token = _bearer(scope)
        if token:
            for auth in self.token_authenticators:
                user = await auth.authenticate(token)
                if user is not None:
                    return User(user.name, user.groups + (AUTHENTICATED_GROUP,), user.uid)
            raise Unauthorized("Unauthorized")
        return None


def _bearer(scope: dict[str, Any]) -> str | None:
    for key, value in scope.get("headers") or []:
        if key == b"authorization":
            kind, _, token = value.decode("latin-1").partition(" ")
            if kind.lower() == "bearer" and token.strip():
                return token.strip()
    return None


ASGIApp = Callable[[dict, Callable, Callable], Awaitable[None]]


class AuthMiddleware:
    def __init__(self, app: ASGIApp, authenticator: Authenticator):
        self.app = app
        self.authenticator = authenticator

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        try:
            user = await self.authenticator.authenticate(scope)
            if user is None and path == CLUSTER_INFO_PATH and scope["type"] == "http":
                user = User(ANONYMOUS_USER, (UNAUTHENTICATED_GROUP,))
            if user is None and path not in ANONYMOUS_PATHS:
                raise Unauthorized("Unauthorized")
            if user is not None and not _is_resource_path(path):
                attrs = RequestAttributes(verb=_http_verb(scope.get("method", "GET")),
                                          path=path)
                if not authorize(user.name, user.groups, attrs).allowed:
                    raise forbidden_error(user.name, attrs)
        except StatusError as err:
            return await _reject(scope, receive, send, err)
        scope.setdefault("state", {})["user"] = user
        await self.app(scope, receive, send)


def _is_resource_path(path: str) -> bool:
    parts = [p for p in path.split("/") if p]
    return (len(parts) >= 3 and parts[0] == "api") or (len(parts) >= 4 and parts[0] == "apis")


def _http_verb(method: str) -> str:
    return {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update",
            "PATCH": "patch", "DELETE": "delete"}.get(method, method.lower())


async def _reject(scope: dict, receive: Callable, send: Callable, err: StatusError) -> None:
    body = json.dumps(err.to_status()).encode()
    if scope["type"] == "websocket":
        # Refusing the handshake answers with HTTP 403; kubectl reports the failure.
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "http.response.start", "status": err.code,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


__all__ = ["AuthMiddleware", "Authenticator", "BootstrapTokens", "StaticTokens", "User",
           "TokenAuthenticator", "ANONYMOUS_PATHS", "CLUSTER_INFO_PATH"]
