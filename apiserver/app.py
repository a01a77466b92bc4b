"""The FastAPI application: HTTP in, ``ResourceStore`` calls, HTTP out.

Resource paths are not declared route by route: two catch-all routes hand the path to
``requestinfo.resolve``, which knows every kind from the registry, the way the Kubernetes API
server's handler chain works. This module owns the wire details: body decoding and size
limits, ``fieldValidation``, content negotiation (JSON or a ``meta.k8s.io`` Table), watch
streaming, and turning every error into a ``Status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any, AsyncIterator

import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from minik8s import __version__
from minik8s.api import schema
from minik8s.api.errors import (BadRequest, Gone, NotFound, RequestEntityTooLarge,
                                ServiceUnavailable, StatusError, UnsupportedMediaType)
from minik8s.api.meta import Obj
from minik8s.api.registry import REGISTRY, ResourceType

from apiserver import discovery, openapi, proxy, strategy, tables, tokens
from apiserver import metrics
from apiserver import encryption
from apiserver import protobuf
from apiserver.admission import Admission
from apiserver.allocator import ServiceAllocator
from apiserver.auth import Authenticator, AuthMiddleware, BootstrapTokens, StaticTokens, User
from apiserver.authz import RequestAttributes, authorize, forbidden_error
from apiserver.config import APIServerConfig
from apiserver.housekeeping import Housekeeping
from apiserver.nodeipam import NodeCIDRAllocator
from apiserver.requestinfo import RequestInfo, resolve
from apiserver.rest import PATCH_CONTENT_TYPES, DeleteOptions, ResourceStore, WriteOptions
from apiserver.storage import EtcdTLS, KeyExists, Storage
from apiserver.watchcache import CachedEvent, WatchCaches

log = logging.getLogger(__name__)

GIT_VERSION = "v1.32.0-minik8s"
BOOTSTRAP_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class APIServer:
    """Everything one server process holds; built once, shared by the routes."""

    def __init__(self, config: APIServerConfig, storage: Storage | None = None):
        self.config = config
        self.storage = storage or Storage(config.etcd_servers, codec=encryption.codec_for(
            config.encryption_key_file), tls=EtcdTLS.from_files(
            config.etcd_cafile, config.etcd_certfile, config.etcd_keyfile)
            if config.etcd_cafile else None)
        self.caches = WatchCaches(self.storage, list(REGISTRY), window=config.watch_cache_window)
        self.admission = Admission(self.storage, self.caches,
                                   disabled=config.disable_admission_plugins)
        self.store = ResourceStore(self.storage, self.caches, self.admission,
                                   event_ttl=config.event_ttl_seconds)
        if config.cluster_cidr:
            self.store.node_ipam = NodeCIDRAllocator(config.cluster_cidr,
                                                     config.node_cidr_mask_size,
                                                     self.caches[REGISTRY.resolve("nodes")])
        self.tokens = StaticTokens(config.token_auth_file)
        self.sa_tokens = tokens.ServiceAccountTokens(tokens.TokenSettings(
            issuer=config.service_account_issuer, audiences=tuple(config.api_audiences),
            signing_key_file=config.service_account_signing_key_file or config.pki_dir / "sa.key",
            key_file=config.service_account_key_file or config.pki_dir / "sa.pub"))
        self.authenticator = Authenticator([self.tokens, BootstrapTokens(self.storage),
                                            tokens.ServiceAccountTokenAuthenticator(
                                                self.sa_tokens, self.store)])
        self.store.service_alloc = _service_allocator(self.storage, config, self.caches)
        self.housekeeping = Housekeeping(self.storage, config, self.store)
        self._tasks: list[asyncio.Task] = []
        self.ready = False

    async def start(self) -> None:
        await self.storage.start()
        encryption.reload_on_sighup(self.storage.codec)
        await self.store.service_alloc.repair()
        await self._bootstrap()
        await self.caches.start(self.config.bookmark_interval_seconds)
        self._tasks.append(asyncio.create_task(self.housekeeping.run(), name="housekeeping"))
        self._tasks.append(asyncio.create_task(self.housekeeping.run_kubernetes_service(),
                                               name="kubernetes-service"))
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.caches.stop()
        await self.storage.close()

    async def _bootstrap(self) -> None:
        ns = REGISTRY.resolve("namespaces")
        for name in BOOTSTRAP_NAMESPACES:
            obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            try:
                await self.store.create(ns, None, obj, WriteOptions())
            except StatusError as err:
                if err.code != 409:
                    raise


def _service_allocator(storage: Storage, config: APIServerConfig,
                       caches: WatchCaches) -> ServiceAllocator:
    try:
        return ServiceAllocator(storage, config.service_cluster_ip_range,
                                config.service_node_port_range,
                                caches[REGISTRY.resolve("services")])
    except ValueError as err:
        raise SystemExit(f"error: --service-cluster-ip-range / --service-node-port-range: "
                         f"{err}") from None


def create_app(config: APIServerConfig, server: APIServer | None = None) -> Any:
    """The ASGI app (FastAPI wrapped in the authentication middleware)."""
    srv = server or APIServer(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await srv.start()
        try:
            yield
        finally:
            await srv.stop()

    app = FastAPI(title="minik8s", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.server = srv

    @app.exception_handler(StatusError)
    async def _status_error(request: Request, err: StatusError) -> Response:
        return status_response(err)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, err: HTTPException) -> Response:
        # Paths and methods no route serves (404, 405) answer with a Status like the rest.
        message = _HTTP_MESSAGES.get(err.status_code, str(err.detail))
        return status_response(StatusError.from_status({"code": err.status_code,
                                                        "message": message}))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> Response:
        log.exception("internal error serving %s %s", request.method, request.url.path)
        return status_response(StatusError(f"Internal error occurred: {type(err).__name__}"))

    _health_routes(app, srv)
    encryption.add_routes(app, srv)
    _discovery_routes(app, srv)
    proxy.add_routes(app, srv)
    _resource_routes(app, srv)
    return AuthMiddleware(ResourceDispatch(app, srv), srv.authenticator)


class ResourceDispatch:
    """Serves plain HTTP requests on resource paths without FastAPI's routing, dependency
    resolution and middleware stack (a third of a request's cost under load), exactly as the
    catch-all routes below would: same endpoint, same error handling. Everything else
    (health, discovery, OpenAPI, WebSockets, lifespan) goes on to the FastAPI app."""

    def __init__(self, app: Any, srv: APIServer):
        self.app = app
        self.srv = srv

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            target = _resource_target(scope.get("root_path", ""), scope["path"])
            if target is not None:
                await self._serve(scope, receive, send, *target)
                return
        await self.app(scope, receive, send)

    async def _serve(self, scope: dict, receive: Any, send: Any, group: str, version: str,
                     path: str) -> None:
        request = Request(scope, receive)
        try:
            if scope["method"] not in _METHODS:
                raise StatusError.from_status({"code": 405, "message": _HTTP_MESSAGES[405]})
            response = await _serve(self.srv, request, group, version, path)
        except StatusError as err:
            response = status_response(err)
        except HTTPException as err:
            response = status_response(StatusError.from_status({
                "code": err.status_code,
                "message": _HTTP_MESSAGES.get(err.status_code, str(err.detail))}))
        except Exception as err:
            log.exception("internal error serving %s %s", scope["method"], scope["path"])
            response = status_response(StatusError(f"Internal error occurred: "
                                                   f"{type(err).__name__}"))
        await response(scope, receive, send)


def _resource_target(root_path: str, path: str) -> tuple[str, str, str] | None:
    """(group, version, rest of the path) when the catch-all resource routes serve ``path``."""
    if root_path and path.startswith(root_path) and path[len(root_path):][:1] == "/":
        path = path[len(root_path):]  # as Starlette's routing matches
    if path.startswith("/api/v1/"):
        return "", "v1", path[8:]
    if path.startswith("/apis/"):
        parts = path[6:].split("/", 2)
        if len(parts) == 3 and parts[0] and parts[1]:
            return parts[0], parts[1], parts[2]
    return None


_HTTP_MESSAGES = {
    404: "the server could not find the requested resource",
    405: "the server does not allow this method on the requested resource",
}


def status_response(err: StatusError, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(err.to_status(), status_code=err.code, headers=headers)


def _success(details: Obj, code: int = 200) -> JSONResponse:
    return JSONResponse({"kind": "Status", "apiVersion": "v1", "metadata": {},
                         "status": "Success", "details": details}, status_code=code)


# --- health, version, discovery ---------------------------------------------------------


def _health_routes(app: FastAPI, srv: APIServer) -> None:
    async def _check(verbose: bool, checks: dict[str, bool]) -> Response:
        ok = all(checks.values())
        if verbose:
            lines = [f"[{'+' if v else '-'}]{k} {'ok' if v else 'failed'}"
                     for k, v in checks.items()]
            lines.append("healthz check passed" if ok else "healthz check failed")
            text = "\n".join(lines) + "\n"
        else:
            text = "ok" if ok else "not ok"
        return Response(text, status_code=200 if ok else 500, media_type="text/plain")

    async def etcd_ok() -> bool:
        try:
            await asyncio.wait_for(srv.storage.current_revision(), 2)
            return True
        except Exception:
            return False

    @app.get("/healthz")
    @app.get("/livez")
    async def healthz(request: Request) -> Response:
        return await _check("verbose" in request.query_params, {"ping": True,
                                                                "etcd": await etcd_ok()})

    @app.get("/readyz")
    async def readyz(request: Request) -> Response:
        return await _check("verbose" in request.query_params, {
            "ping": True, "etcd": await etcd_ok(), "informer-sync": srv.ready})

    @app.get("/version")
    async def version() -> Obj:
        return {"major": "1", "minor": "32", "gitVersion": GIT_VERSION,
                "gitCommit": "minik8s", "gitTreeState": "clean",
                "buildDate": "2026-11-28T00:00:00Z", "goVersion": "python",
                "compiler": "cpython", "platform": "linux/amd64"}


def _discovery_routes(app: FastAPI, srv: APIServer) -> None:
    @app.get("/api")
    async def api() -> Obj:
        return discovery.api_versions(srv.config.advertise_address)

    @app.get("/apis")
    async def apis() -> Obj:
        return metrics.with_group(discovery.api_group_list(REGISTRY))

    @app.get("/api/v1")
    async def core_v1() -> Obj:
        return discovery.api_resource_list(REGISTRY, "", "v1")

    @app.get("/apis/{group}")
    async def group(group: str) -> Obj:
        doc = discovery.api_group(REGISTRY, group) or metrics.api_group(group)
        if doc is None:
            raise NotFound("the server could not find the requested resource")
        return doc

    @app.get("/apis/{group}/{version}")
    async def group_version(group: str, version: str) -> Obj:
        doc = discovery.api_resource_list(REGISTRY, group, version) or \
            metrics.api_resource_list(group, version)
        if doc is None:
            raise NotFound("the server could not find the requested resource")
        return doc

    @app.get("/openapi/v2")
    async def openapi_v2(request: Request) -> Response:
        if "protobuf" in request.headers.get("accept", "") and \
                "json" not in request.headers.get("accept", ""):
            # kubectl 1.20 asks for protobuf first; an empty 200 tells it "no schema". The
            # media type must be one Go's mime parser accepts (no "@").
            return Response(b"", media_type="application/com.github.proto-openapi.spec.v2"
                                              ".v1.0+protobuf")
        return JSONResponse(openapi.openapi_v2(REGISTRY))

    @app.get("/openapi/v3")
    async def openapi_v3() -> Obj:
        return openapi.openapi_v3_root(REGISTRY)

    @app.get("/openapi/v3/{path:path}")
    async def openapi_v3_gv(path: str) -> Obj:
        parts = path.strip("/").split("/")
        if parts[:1] == ["api"] and len(parts) == 2:
            doc = openapi.openapi_v3_group_version(REGISTRY, "", parts[1])
        elif parts[:1] == ["apis"] and len(parts) == 3:
            doc = openapi.openapi_v3_group_version(REGISTRY, parts[1], parts[2])
        else:
            doc = None
        if doc is None:
            raise NotFound("the server could not find the requested resource")
        return doc


# --- resources ----------------------------------------------------------------------------


_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
_WATCH_BATCH = 64  # queued watch events sent in one write at most


def _resource_routes(app: FastAPI, srv: APIServer) -> None:
    @app.api_route("/api/v1/{path:path}", methods=_METHODS)
    async def core(request: Request, path: str) -> Response:
        return await _serve(srv, request, "", "v1", path)

    @app.api_route("/apis/{group}/{version}/{path:path}", methods=_METHODS)
    async def grouped(request: Request, group: str, version: str, path: str) -> Response:
        return await _serve(srv, request, group, version, path)


def _user(request: Request) -> User:
    user = request.scope.get("state", {}).get("user")
    if user is None:  # only reachable if the middleware was bypassed
        from minik8s.api.errors import Unauthorized
        raise Unauthorized("Unauthorized")
    return user


async def _authorize(srv: APIServer, request: Request, info: RequestInfo,
                     name: str | None = None) -> User:
    user = _user(request)
    attrs = RequestAttributes(
        verb=info.verb, api_group=info.rt.group, resource=info.rt.plural,
        subresource=info.subresource or "", namespace=info.namespace or "",
        name=name or info.name or "", path=request.url.path)
    decision = authorize(user.name, user.groups, attrs)
    if not decision.allowed and info.rt.kind == "Pod" and info.name and \
            any(g == "system:nodes" for g in user.groups):
        # A node may write only the pods bound to it: look the pod up and ask again.
        try:
            pod = await srv.store.get(info.rt, info.namespace, info.name)
            attrs = RequestAttributes(**{**attrs.__dict__,
                                         "pod_node_name": (pod.get("spec") or {}).get("nodeName")})
            decision = authorize(user.name, user.groups, attrs)
        except NotFound:
            pass
    if not decision.allowed:
        raise forbidden_error(user.name, attrs)
    return user


async def _serve(srv: APIServer, request: Request, group: str, version: str,
                 path: str) -> Response:
    query = dict(request.query_params)
    watch = _bool(query.get("watch"))
    if group == metrics.GROUP:  # served from the kubelets' stats, never stored
        if not srv.ready:
            raise ServiceUnavailable("the API server is starting", retry_after=1)
        return await metrics.serve(srv, request, version, path)
    info = resolve(request.method, group, version, path.split("/"), watch=watch)
    if not srv.ready:
        raise ServiceUnavailable("the API server is starting", retry_after=1)
    rt, ns, name, sub = info.rt, info.namespace, info.name, info.subresource
    if sub in ("log", "exec", "portforward"):  # relayed to the pod's kubelet
        return await proxy.serve(srv, request, info)
    store = srv.store
    verb = info.verb

    if verb in ("get", "list", "watch", "delete", "deletecollection"):
        await _authorize(srv, request, info)
    if verb == "watch":
        if name:
            query["fieldSelector"] = ",".join(
                x for x in (query.get("fieldSelector"), f"metadata.name={name}") if x)
        return _watch(srv, request, rt, ns, query)
    if verb == "list":
        result = await store.list(rt, ns, query)
        return _render_list(request, rt, result, query)
    if verb == "get":
        obj = await store.get(rt, ns, name)
        return _render_one(request, rt, strategy.view(rt, obj, sub), query)

    if verb in ("delete", "deletecollection"):
        body = await _body(srv, request, optional=True)
        opts = DeleteOptions.parse(body, query)
        wopts = WriteOptions(dry_run=opts.dry_run, user=_user(request).name)
        if verb == "deletecollection":
            return JSONResponse(await store.delete_collection(rt, ns, query, opts, wopts))
        obj, gone = await store.delete(rt, ns, name, opts, wopts)
        if gone and rt.kind != "Pod":  # Kubernetes returns the object only for pods
            md = obj.get("metadata") or {}
            return _success({"name": md.get("name"), "group": rt.group, "kind": rt.plural,
                             "uid": md.get("uid")})
        return JSONResponse(obj)

    raw = await _raw_body(srv, request)
    opts = _write_options(query, request)
    if verb == "patch":
        await _authorize(srv, request, info)
        obj = await store.patch(rt, ns, name, raw, _media_type(request), sub, opts)
        return _written(rt, obj, 200, opts, sub)
    body = _decode(raw, request, opts)
    if verb == "create" and sub == "token":  # TokenRequest (apiserver.tokens)
        return JSONResponse(await tokens.serve(store, srv.sa_tokens, _user(request), ns or "",
                                               name or "", body, dry_run=opts.dry_run), 201)
    if verb == "create" and sub == "binding":
        await _authorize(srv, request, info)
        await store.bind(rt, ns, name, body, opts)
        return _success({"name": name, "kind": "pods"}, 201)
    if verb == "create":
        if sub:
            raise NotFound("the server could not find the requested resource")
        md = body.get("metadata")
        await _authorize(srv, request, info,
                         name=md.get("name") if isinstance(md, dict) else None)
        obj = await store.create(rt, ns, body, opts)
        return _written(rt, obj, 201, opts, None)
    # update
    await _authorize(srv, request, info)
    if sub == "scale":
        current = await store.get(rt, ns, name)
        body = strategy.apply_scale(rt, current, body if isinstance(body, dict) else {})
        obj, created = await store.update(rt, ns, name, body, None, opts)
        return _written(rt, obj, 200, opts, "scale")
    obj, created = await store.update(rt, ns, name, body, sub, opts)
    return _written(rt, obj, 201 if created else 200, opts, sub)


def _written(rt: ResourceType, obj: Obj, code: int, opts: WriteOptions,
             sub: str | None) -> Response:
    headers = {"Warning": ", ".join(f'299 - {_quoted(w)}' for w in opts.warnings)} \
        if opts.warnings else None
    body = strategy.view(rt, obj, sub) if sub == "scale" else obj
    return JSONResponse(body, status_code=code, headers=headers)


def _quoted(text: str) -> str:
    """An RFC 7230 quoted-string, as the ``Warning`` header's warn-text must be."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _bool(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1", "yes")


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _write_options(query: dict[str, str], request: Request) -> WriteOptions:
    dry = query.get("dryRun")
    if dry and dry != "All":
        raise BadRequest(f'dryRun: Unsupported value: "{dry}": supported values: "All"')
    fv = query.get("fieldValidation") or "Warn"
    if fv not in ("Strict", "Warn", "Ignore"):
        raise BadRequest(f'fieldValidation: Unsupported value: "{fv}": supported values: '
                         f'"Ignore", "Strict", "Warn"')
    user = _user(request)
    return WriteOptions(dry_run=dry == "All", field_validation=fv, user=user.name,
                        groups=list(user.groups))


async def _raw_body(srv: APIServer, request: Request) -> bytes:
    limit = srv.config.max_request_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestEntityTooLarge(f"the request body is larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestEntityTooLarge(f"the request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _body(srv: APIServer, request: Request, *, optional: bool = False) -> Any:
    raw = await _raw_body(srv, request)
    if not raw.strip():
        if optional:
            return None
        raise BadRequest("the request body is empty")
    return _decode(raw, request, None)


def _decode(raw: bytes, request: Request, opts: WriteOptions | None) -> Any:
    media = _media_type(request)
    if media == protobuf.MEDIA_TYPE:  # kubectl's typed generators (create deployment, ...)
        return protobuf.decode_object(raw)
    is_yaml = media in ("application/yaml", "application/x-yaml", "text/yaml")
    if media and not is_yaml and media != "application/json" and \
            media not in PATCH_CONTENT_TYPES:
        raise UnsupportedMediaType(f"the body of the request was in an unknown format - "
                                   f"accepted media types include: application/json, "
                                   f"application/yaml, {protobuf.MEDIA_TYPE}")
    try:
        if is_yaml:
            docs, dups = schema.yaml_load_with_duplicates(raw.decode("utf-8"))
            if len(docs) != 1:
                raise BadRequest("the body of the request must hold exactly one YAML document")
            body = docs[0]
            if not _fits(body, len(raw)):
                raise BadRequest("yaml: document contains excessive aliasing")
        else:
            body, dups = schema.json_loads_with_duplicates(raw)
    except (ValueError, RecursionError, yaml.YAMLError) as exc:
        raise BadRequest(f"the body of the request could not be decoded: {exc}") from None
    if opts is not None:
        opts.report(dups)
    if not isinstance(body, dict):
        raise BadRequest("the body of the request must be a JSON or YAML object")
    return body


def _include_object(query: dict[str, str]) -> str:
    value = query.get("includeObject") or "Metadata"
    if value not in ("None", "Metadata", "Object"):
        raise BadRequest(f'includeObject: Unsupported value: "{value}": supported values: '
                         f'"None", "Metadata", "Object"')
    return value


def _fits(doc: Any, budget: int) -> bool:
    """Whether ``doc`` has at most ``budget`` values. Without aliases every value takes at
    least one byte of the body; YAML aliases can make a small body expand without bound (or
    refer to itself), which nothing after decoding could survive."""
    stack = [doc]
    while stack:
        budget -= 1
        if budget < 0:
            return False
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return True


def _render_list(request: Request, rt: ResourceType, result: Obj, query: dict[str, str]) -> Response:
    accept = request.headers.get("accept", "")
    if tables.table_wanted(accept):
        md = result.get("metadata") or {}
        return JSONResponse(tables.to_table(
            rt, result["items"], resource_version=md.get("resourceVersion", ""),
            include_object=_include_object(query),
            continue_token=md.get("continue", "")))
    return JSONResponse(result)


def _render_one(request: Request, rt: ResourceType, obj: Obj, query: dict[str, str]) -> Response:
    if obj.get("kind") == rt.kind and tables.table_wanted(request.headers.get("accept", "")):
        return JSONResponse(tables.to_table(
            rt, [obj], resource_version=(obj.get("metadata") or {}).get("resourceVersion", ""),
            include_object=_include_object(query)))
    return JSONResponse(obj)


def _watch(srv: APIServer, request: Request, rt: ResourceType, ns: str | None,
           query: dict[str, str]) -> Response:
    predicate = srv.store.predicate(rt, query)
    rv_text = query.get("resourceVersion") or ""
    try:
        rv = int(rv_text) if rv_text else 0
        if rv < 0:
            raise ValueError
    except ValueError:
        raise BadRequest(f"resourceVersion: invalid value {rv_text!r}") from None
    timeout = srv.config.watch_timeout_seconds
    if query.get("timeoutSeconds"):
        try:
            requested = int(query["timeoutSeconds"])
        except ValueError:
            raise BadRequest("timeoutSeconds: must be an integer") from None
        if requested > 0:  # 0 means the server's default, as in Kubernetes
            timeout = requested
    as_table = tables.table_wanted(request.headers.get("accept", ""))
    include = _include_object(query)
    cache = srv.caches[rt]
    try:
        watcher = cache.watch(ns, rv or None, predicate,
                              bookmarks=_bool(query.get("allowWatchBookmarks")))
    except Gone as err:
        line = json.dumps({"type": "ERROR", "object": err.to_status()}) + "\n"
        return StreamingResponse(iter([line.encode()]), media_type="application/json")

    def encode(kind: str, obj: Obj, ev: CachedEvent | None) -> bytes:
        if as_table and kind != "BOOKMARK":
            obj = tables.to_table(rt, [obj], resource_version=obj["metadata"].get(
                "resourceVersion", ""), include_object=include)
        elif ev is not None:  # the same bytes, encoded once for every watcher
            return ev.line(kind)
        return (json.dumps({"type": kind, "object": obj}, separators=(",", ":")) + "\n").encode()

    def encode_item(item: tuple[str, Any, CachedEvent | None]) -> bytes:
        kind, payload, ev = item
        if kind == "BOOKMARK":
            payload = {"kind": rt.kind, "apiVersion": rt.api_version,
                       "metadata": {"resourceVersion": str(payload)}}
        return encode(kind, payload, ev)

    async def stream() -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return
                item = await watcher.next(remaining)
                if item is None:
                    return  # closed: slow reader, cache reset or shutdown
                if item[0] == "TIMEOUT":
                    return
                # Events already queued behind this one go out in the same write.
                more, closed = watcher.ready(_WATCH_BATCH)
                if more:
                    yield b"".join([encode_item(item), *map(encode_item, more)])
                else:
                    yield encode_item(item)
                if closed:
                    return
        finally:
            watcher.close()

    return StreamingResponse(stream(), media_type="application/json",
                             headers={"Cache-Control": "no-cache, private"})


__all__ = ["APIServer", "create_app", "GIT_VERSION"]
