"""Typed async REST client for the minik8s (and Kubernetes) API.

Plain calls go through a lean keep-alive HTTP/1.1 pool (``minik8s.client.http11``: httpx's
pool bookkeeping was most of a busy client's CPU); watches and other streams through one
``httpx.AsyncClient`` per ``Client``, holding a connection each, so its pool is sized for
many (a test may give it a transport of its own, which then serves every call). Every
non-2xx answer is decoded from its ``Status`` body into the matching typed exception of
``minik8s.api.errors``, so callers write ``except NotFound`` instead of inspecting codes.
Resources are named by a ``ResourceType`` or anything ``REGISTRY.resolve`` understands
(``"pods"``, ``"deploy"``, ``"leases.coordination.k8s.io"``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, AsyncIterator

import httpx

from minik8s.api.errors import BadRequest, Gone, StatusError
from minik8s.api.meta import Obj, key_of
from minik8s.api.meta import resource_version as version_of
from minik8s.api.registry import REGISTRY, ResourceType
from minik8s.client.http11 import ConnectionPool, Response
from minik8s.client.kubeconfig import ClientConfig, load_kubeconfig

log = logging.getLogger(__name__)

PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}

class Client:
    def __init__(self, config: ClientConfig, *, transport: httpx.AsyncBaseTransport | None = None,
                 timeout: float = 30.0, max_connections: int = 256):
        self.config = config
        self.namespace = config.namespace or "default"
        kwargs: dict[str, Any] = {}
        ctx = None
        if transport is not None:
            kwargs["transport"] = transport
        else:
            ctx = config.ssl_context()
            kwargs["verify"] = ctx
        headers = {"Accept": "application/json", "User-Agent": "minik8s-client/0.1"}
        if config.token:
            headers["Authorization"] = f"Bearer {config.token}"
        # Streams (watch, logs) go through httpx; plain calls through the lean pool unless
        # a test transport replaces the network.
        self._http = httpx.AsyncClient(
            base_url=config.server, headers=headers,
            timeout=httpx.Timeout(timeout, connect=10.0),
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=32),
            **kwargs)
        self._pool = ConnectionPool(
            config.server, ssl_context=ctx, server_hostname=config.server_hostname,
            headers=headers, timeout=timeout, connect_timeout=10.0,
            max_connections=max_connections) \
            if transport is None and ConnectionPool.supports(config.server) else None

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, context: str | None = None,
                        **kw: Any) -> "Client":
        return cls(load_kubeconfig(path, context), **kw)

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
        await self._http.aclose()

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    # --- plumbing -------------------------------------------------------------------

    @staticmethod
    def resource(ref: ResourceType | str) -> ResourceType:
        if isinstance(ref, ResourceType):
            return ref
        rt = REGISTRY.resolve(ref)
        if rt is None:
            raise BadRequest(f'the server doesn\'t have a resource type "{ref}"')
        return rt

    def _ns(self, rt: ResourceType, namespace: str | None) -> str | None:
        if not rt.namespaced:
            return None
        return namespace or self.namespace

    async def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                      body: Any = None, content_type: str = "application/json",
                      headers: dict[str, str] | None = None) -> Any:
        """One API call; the decoded JSON answer, or a typed ``StatusError``."""
        hdrs = dict(headers or {})
        content = None
        if body is not None:
            content = json.dumps(body, separators=(",", ":")).encode()
            hdrs["Content-Type"] = content_type
        if self._pool is not None:
            return _decode(await self._pool.request(method, path, params=_clean(params),
                                                    body=content, headers=hdrs))
        resp = await self._http.request(method, path, params=_clean(params), content=content,
                                        headers=hdrs)
        return _decode(resp)

    # --- verbs ----------------------------------------------------------------------

    async def get(self, ref: ResourceType | str, name: str, namespace: str | None = None, *,
                  subresource: str | None = None) -> Obj:
        rt = self.resource(ref)
        return await self.request("GET", rt.path(self._ns(rt, namespace), name, subresource))

    async def list(self, ref: ResourceType | str, namespace: str | None = None, *,
                   all_namespaces: bool = False, label_selector: str | None = None,
                   field_selector: str | None = None, limit: int | None = None,
                   continue_: str | None = None, resource_version: str | None = None) -> Obj:
        rt = self.resource(ref)
        ns = None if all_namespaces else self._ns(rt, namespace)
        params = {"labelSelector": label_selector, "fieldSelector": field_selector,
                  "limit": limit, "continue": continue_, "resourceVersion": resource_version}
        return await self.request("GET", rt.path(ns), params=params)

    async def list_all(self, ref: ResourceType | str, namespace: str | None = None, *,
                       page_size: int = 500, **kw: Any) -> Obj:
        """A whole list fetched in pages of ``page_size``; one List object back."""
        first = await self.list(ref, namespace, limit=page_size, **kw)
        items = list(first.get("items") or [])
        token = (first.get("metadata") or {}).get("continue")
        while token:
            page = await self.list(ref, namespace, limit=page_size, continue_=token, **kw)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
        first["items"] = items
        first.setdefault("metadata", {}).pop("continue", None)
        return first

    async def create(self, ref: ResourceType | str, obj: Obj, namespace: str | None = None, *,
                     subresource: str | None = None, name: str | None = None,
                     dry_run: bool = False, field_validation: str | None = None) -> Obj:
        rt = self.resource(ref)
        ns = self._ns(rt, namespace or (obj.get("metadata") or {}).get("namespace"))
        path = rt.path(ns, name, subresource) if subresource else rt.path(ns)
        return await self.request("POST", path, body=obj,
                                  params=_write_params(dry_run, field_validation))

    async def update(self, ref: ResourceType | str, obj: Obj, namespace: str | None = None, *,
                     subresource: str | None = None, dry_run: bool = False,
                     field_validation: str | None = None) -> Obj:
        rt = self.resource(ref)
        md = obj.get("metadata") or {}
        ns = self._ns(rt, namespace or md.get("namespace"))
        return await self.request("PUT", rt.path(ns, md.get("name"), subresource), body=obj,
                                  params=_write_params(dry_run, field_validation))

    async def update_status(self, ref: ResourceType | str, obj: Obj, **kw: Any) -> Obj:
        return await self.update(ref, obj, subresource="status", **kw)

    async def patch(self, ref: ResourceType | str, name: str, patch: Any,
                    namespace: str | None = None, *, patch_type: str = "merge",
                    subresource: str | None = None, dry_run: bool = False,
                    field_validation: str | None = None) -> Obj:
        rt = self.resource(ref)
        return await self.request(
            "PATCH", rt.path(self._ns(rt, namespace), name, subresource), body=patch,
            content_type=PATCH_TYPES.get(patch_type, patch_type),
            params=_write_params(dry_run, field_validation))

    async def delete(self, ref: ResourceType | str, name: str, namespace: str | None = None, *,
                     grace_period_seconds: int | None = None,
                     propagation_policy: str | None = None, dry_run: bool = False,
                     preconditions: dict[str, str] | None = None) -> Obj:
        rt = self.resource(ref)
        body = _delete_options(grace_period_seconds, propagation_policy, dry_run, preconditions)
        return await self.request("DELETE", rt.path(self._ns(rt, namespace), name), body=body)

    async def delete_collection(self, ref: ResourceType | str, namespace: str | None = None, *,
                                label_selector: str | None = None,
                                field_selector: str | None = None,
                                propagation_policy: str | None = None) -> Obj:
        rt = self.resource(ref)
        params = {"labelSelector": label_selector, "fieldSelector": field_selector}
        body = _delete_options(None, propagation_policy, False, None)
        return await self.request("DELETE", rt.path(self._ns(rt, namespace)), params=params,
                                  body=body)

    # --- watch ----------------------------------------------------------------------

    async def watch(self, ref: ResourceType | str, namespace: str | None = None, *,
                    all_namespaces: bool = False, resource_version: str | None = None,
                    label_selector: str | None = None, field_selector: str | None = None,
                    timeout_seconds: int | None = None,
                    allow_bookmarks: bool = True) -> AsyncIterator[Obj]:
        """One watch stream: yields ``{"type", "object"}`` until the server closes it.
        An ERROR event is raised as its typed error (``Gone`` for an expired version)."""
        rt = self.resource(ref)
        ns = None if all_namespaces else self._ns(rt, namespace)
        params = _clean({"watch": "true", "resourceVersion": resource_version,
                         "labelSelector": label_selector, "fieldSelector": field_selector,
                         "timeoutSeconds": timeout_seconds,
                         "allowWatchBookmarks": "true" if allow_bookmarks else None})
        timeout = httpx.Timeout(None if timeout_seconds is None else timeout_seconds + 30,
                                connect=10.0)
        async with self._http.stream("GET", rt.path(ns), params=params,
                                     timeout=timeout) as resp:
            if resp.status_code >= 300:
                await resp.aread()
                _decode(resp)
            async for line in resp.aiter_lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    raise StatusError.from_status(event.get("object") or {})
                yield event

    async def watch_forever(self, ref: ResourceType | str, namespace: str | None = None, *,
                            all_namespaces: bool = False, label_selector: str | None = None,
                            field_selector: str | None = None, resource_version: str | None = None,
                            timeout_seconds: int = 300,
                            retry_delay: float = 1.0) -> AsyncIterator[Obj]:
        """An endless, self-healing event stream of one collection.

        Without ``resource_version`` it starts with a list: one ADDED per object, then a
        ``{"type": "SYNCED"}`` marker. It resumes after a dropped connection from the last
        version seen, and on 410 Gone it lists again and yields the difference (ADDED,
        MODIFIED, DELETED) against what it had delivered, then SYNCED once more, so a
        consumer's view never silently diverges."""
        known: dict[str, Obj] = {}
        sel = dict(label_selector=label_selector, field_selector=field_selector)
        rv = resource_version
        need_list = rv is None
        while True:
            try:
                if need_list:
                    lst = await self.list_all(ref, namespace, all_namespaces=all_namespaces, **sel)
                    rv = (lst.get("metadata") or {}).get("resourceVersion") or "0"
                    for event in _diff_relist(known, lst.get("items") or []):
                        yield event
                    yield {"type": "SYNCED", "object": {"metadata": {"resourceVersion": rv}}}
                    need_list = False
                async for event in self.watch(ref, namespace, all_namespaces=all_namespaces,
                                              resource_version=rv,
                                              timeout_seconds=timeout_seconds, **sel):
                    obj = event.get("object") or {}
                    rv = version_of(obj) or rv
                    if event["type"] == "BOOKMARK":
                        continue
                    if event["type"] == "DELETED":
                        known.pop(key_of(obj), None)
                    else:
                        known[key_of(obj)] = obj
                    yield event
            except Gone:
                need_list = True
            except (httpx.TransportError, httpx.StreamError, StatusError, ValueError) as exc:
                if isinstance(exc, StatusError) and exc.code in (401, 403, 404):
                    raise
                log.debug("watch of %s interrupted: %s; resuming", ref, exc)
                await asyncio.sleep(retry_delay)


def _diff_relist(known: dict[str, Obj], items: list[Obj]) -> list[Obj]:
    events = []
    fresh = {key_of(o): o for o in items}
    for key, obj in list(known.items()):
        if key not in fresh:
            events.append({"type": "DELETED", "object": obj})
            del known[key]
    for key, obj in fresh.items():
        old = known.get(key)
        if old is None:
            events.append({"type": "ADDED", "object": obj})
        elif version_of(old) != version_of(obj):
            events.append({"type": "MODIFIED", "object": obj})
        known[key] = obj
    return events


def _clean(params: dict[str, Any] | None) -> dict[str, Any] | None:
    if not params:
        return None
    return {k: v for k, v in params.items() if v is not None and v != ""}


def _write_params(dry_run: bool, field_validation: str | None) -> dict[str, Any]:
    return {"dryRun": "All" if dry_run else None, "fieldValidation": field_validation}


def _delete_options(grace: int | None, policy: str | None, dry_run: bool,
                    preconditions: dict[str, str] | None) -> Obj | None:
    opts: Obj = {}
    if grace is not None:
        opts["gracePeriodSeconds"] = grace
    if policy:
        opts["propagationPolicy"] = policy
    if dry_run:
        opts["dryRun"] = ["All"]
    if preconditions:
        opts["preconditions"] = preconditions
    if not opts:
        return None
    return {"kind": "DeleteOptions", "apiVersion": "v1", **opts}


def _decode(resp: httpx.Response | Response) -> Any:
    try:
        data = resp.json() if resp.content else {}
    except ValueError:
        data = None
    if resp.status_code < 300:
        return data
    if isinstance(data, dict) and data.get("kind") == "Status":
        raise StatusError.from_status(data, resp.status_code)
    text = resp.text.strip() or resp.reason_phrase
    raise StatusError.from_status({"message": text, "code": resp.status_code}, resp.status_code)


__all__ = ["Client", "PATCH_TYPES"]
