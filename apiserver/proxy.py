"""``pods/{name}/log`` and ``pods/{name}/exec``: the API server checks the request (who may,
which pod, which container, bound to which node) and then relays it to that node's kubelet
(``kubelet.server``) with its own client certificate (``apiserver-kubelet-client``, in
``system:masters``), as kube-apiserver does. Logs stream through as they come; exec is a
WebSocket relayed frame by frame, the subprotocol being whatever the client and the kubelet
agree on (``v5.channel.k8s.io`` for kubectl 1.32, ``v4`` for older clients).

Errors use Kubernetes' wording (``pkg/registry/core/pod/strategy.go``), so kubectl prints
the same lines. Exec is authorized as ``create pods/exec`` also when it arrives as a GET
WebSocket upgrade, as Kubernetes does since 1.31.

``pods/{name}/portforward`` is relayed the same way (``create pods/portforward``): kubectl
1.31+ tunnels SPDY in the WebSocket (``SPDY/3.1+portforward.k8s.io``), the Python client
speaks ``v4.channel.k8s.io`` with ``?ports=``; the kubelet speaks both, so the bytes pass
through untouched. A plain SPDY upgrade (kubectl's fallback) is not served: uvicorn cannot
hand over a non-WebSocket upgraded connection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import websockets
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response, StreamingResponse
from websockets.asyncio.client import connect as ws_connect

from minik8s.api.errors import (BadRequest, NotFound, ServiceUnavailable, StatusError,
                                Unauthorized)
from minik8s.api.meta import Obj
from minik8s.api.registry import REGISTRY
from minik8s.wscompat import websocket_subprotocols

from apiserver.authz import RequestAttributes, authorize, forbidden_error
from apiserver.requestinfo import RequestInfo

log = logging.getLogger(__name__)

LOG_PARAMS = ("follow", "previous", "tailLines", "timestamps", "sinceSeconds", "limitBytes")
EXEC_PARAMS = ("stdin", "stdout", "stderr", "tty")
_INT_PARAMS = {"tailLines": 0, "sinceSeconds": 1, "limitBytes": 1}


class KubeletClient:
    """How this API server reaches kubelets: one TLS context, one HTTP client."""

    def __init__(self, config: Any):
        pki = Path(config.pki_dir)
        self.cert = Path(config.kubelet_client_certificate or pki / "apiserver-kubelet-client.crt")
        self.key = Path(config.kubelet_client_key or pki / "apiserver-kubelet-client.key")
        self.ca = Path(config.kubelet_certificate_authority or pki / "ca.crt")
        self._ctx: ssl.SSLContext | None = None
        self._http: httpx.AsyncClient | None = None

    def ssl_context(self) -> ssl.SSLContext:
        if self._ctx is None:
            ctx = ssl.create_default_context(cafile=str(self.ca))
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(str(self.cert), str(self.key))
            self._ctx = ctx
        return self._ctx

    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(verify=self.ssl_context(), trust_env=False,
                                           timeout=httpx.Timeout(None, connect=10.0))
        return self._http


def kubelet_client(srv: Any) -> KubeletClient:
    client = srv.__dict__.get("kubelet_client")
    if client is None:
        client = srv.__dict__["kubelet_client"] = KubeletClient(srv.config)
    return client


# --------------------------------------------------------------------------- shared checks


def _check(user: Any, verb: str, namespace: str, name: str, sub: str, path: str) -> None:
    if user is None:
        raise Unauthorized("Unauthorized")
    attrs = RequestAttributes(verb=verb, api_group="", resource="pods", subresource=sub,
                              namespace=namespace, name=name, path=path)
    if not authorize(user.name, user.groups, attrs).allowed:
        raise forbidden_error(user.name, attrs)


def pick_container(pod: Obj, container: str | None) -> str:
    """The container a log/exec request means (Kubernetes' wording for every refusal)."""
    name = pod["metadata"]["name"]
    spec = pod.get("spec") or {}
    names = [c.get("name", "") for c in spec.get("containers") or []]
    init = [c.get("name", "") for c in spec.get("initContainers") or []]
    ephemeral = [c.get("name", "") for c in spec.get("ephemeralContainers") or []]
    if not container:
        if len(names) == 1:
            return names[0]
        if not names:
            raise BadRequest(f"a container name must be specified for pod {name}")
        message = (f"a container name must be specified for pod {name}, choose one of: "
                   f"[{' '.join(names)}]")
        if init:
            message += f" or one of the init containers: [{' '.join(init)}]"
        raise BadRequest(message)
    if container not in names + init + ephemeral:
        raise BadRequest(f"container {container} is not valid for pod {name}")
    return container


def kubelet_endpoint(node: Obj) -> tuple[str, int] | None:
    """Where a Node's kubelet listens, from its status (the first of InternalIP, ExternalIP,
    Hostname, and ``daemonEndpoints.kubeletEndpoint.Port``); None when it reports none."""
    status = node.get("status") or {}
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    host = addresses.get("InternalIP") or addresses.get("ExternalIP") or \
        addresses.get("Hostname")
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    if not host or not port:
        return None
    return host, int(port)


async def kubelet_location(srv: Any, pod: Obj) -> tuple[str, int]:
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        raise BadRequest(f"pod {pod['metadata']['name']} does not have a host assigned")
    node = await srv.store.get(REGISTRY.resolve("nodes"), None, node_name)
    endpoint = kubelet_endpoint(node)
    if endpoint is None:
        raise _error(500, f"node {node_name} reports no kubelet endpoint")
    return endpoint


def url_host(host: str) -> str:
    """``host`` as it goes into a URL (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host else host


async def _target(srv: Any, namespace: str, name: str,
                  container: str | None) -> tuple[Obj, str, str, int]:
    pod = await srv.store.get(REGISTRY.resolve("pods"), namespace, name)
    chosen = pick_container(pod, container)
    host, port = await kubelet_location(srv, pod)
    return pod, chosen, host, port


def _upstream_error(code: int, body: bytes, name: str) -> StatusError:
    """A kubelet refusal as kube-apiserver reports it (``GenericHttpResponseChecker``)."""
    if code == 404:
        return NotFound(f'pods "{name}" not found', details={"name": name, "kind": "pods"})
    text = body.decode(errors="replace").strip() or f"the kubelet answered {code}"
    return _error(code if code >= 400 else 500, text)


def _unreachable(url: str, exc: BaseException) -> StatusError:
    return _error(500, f'Get "{url}": {exc or type(exc).__name__}')


def _error(code: int, message: str) -> StatusError:
    return StatusError.from_status({"code": code, "message": message,
                                    "reason": "InternalError" if code == 500 else ""})


# --------------------------------------------------------------------------- HTTP


async def serve(srv: Any, request: Request, info: RequestInfo) -> Response:
    """``_serve``'s branch for the ``log`` and ``exec`` subresources."""
    user = (request.scope.get("state") or {}).get("user")
    ns, name = info.namespace or "", info.name or ""
    if info.subresource == "portforward":
        _check(user, "create", ns, name, "portforward", request.url.path)
        pod = await srv.store.get(REGISTRY.resolve("pods"), ns, name)
        await kubelet_location(srv, pod)
        raise BadRequest("Upgrade request required: port forwarding is served over a "
                         "WebSocket (SPDY/3.1+portforward.k8s.io or v4.channel.k8s.io); a "
                         "plain SPDY upgrade is not supported")
    if info.subresource == "exec":
        _check(user, "create", ns, name, "exec", request.url.path)
        await _target(srv, ns, name, request.query_params.get("container"))
        raise BadRequest("Upgrade request required: exec is served over a WebSocket "
                         "(v5.channel.k8s.io or v4.channel.k8s.io); SPDY is not supported")
    _check(user, "get", ns, name, "log", request.url.path)
    return await pod_log(srv, request, ns, name)


async def pod_log(srv: Any, request: Request, namespace: str, name: str) -> Response:
    q = request.query_params
    params: list[tuple[str, str]] = []
    for key in LOG_PARAMS:
        value = q.get(key)
        if value in (None, ""):
            continue
        if key in _INT_PARAMS:
            try:
                number = int(value)
            except ValueError:
                raise BadRequest(f"{key}: Invalid value: \"{value}\": must be an integer") \
                    from None
            if number < _INT_PARAMS[key]:
                raise BadRequest(f"{key}: Invalid value: {number}: must be greater than or "
                                 f"equal to {_INT_PARAMS[key]}")
        params.append((key, value))
    _, container, host, port = await _target(srv, namespace, name, q.get("container"))
    url = f"https://{url_host(host)}:{port}/containerLogs/{namespace}/{name}/{container}"
    if params:
        url += "?" + urlencode(params)
    http = kubelet_client(srv).http()
    try:
        resp = await http.send(http.build_request("GET", url), stream=True)
    except httpx.TransportError as exc:
        raise _unreachable(url, exc) from None
    if resp.status_code != 200:
        body = await resp.aread()
        await resp.aclose()
        raise _upstream_error(resp.status_code, body, name)

    async def relay():
        try:
            async for chunk in resp.aiter_raw():
                yield chunk
        except httpx.TransportError:
            pass
        finally:
            await resp.aclose()

    return StreamingResponse(relay(), media_type="text/plain",
                             headers={"Cache-Control": "no-cache, private"})


# --------------------------------------------------------------------------- WebSocket exec


def add_routes(app: FastAPI, srv: Any) -> None:
    @app.websocket("/api/v1/namespaces/{namespace}/pods/{name}/exec")
    async def pod_exec(ws: WebSocket, namespace: str, name: str) -> None:
        await exec_websocket(srv, ws, namespace, name)

    @app.websocket("/api/v1/namespaces/{namespace}/pods/{name}/portforward")
    async def pod_portforward(ws: WebSocket, namespace: str, name: str) -> None:
        await portforward_websocket(srv, ws, namespace, name)


async def exec_websocket(srv: Any, ws: WebSocket, namespace: str, name: str) -> None:
    q = ws.query_params
    offered = [p for p in ws.scope.get("subprotocols") or []]
    try:
        _check((ws.scope.get("state") or {}).get("user"), "create", namespace, name, "exec",
               ws.url.path)
        if not srv.ready:
            raise ServiceUnavailable("the API server is starting", retry_after=1)
        _, container, host, port = await _target(srv, namespace, name, q.get("container"))
        params = [("command", c) for c in q.getlist("command")]
        params += [(k, q[k]) for k in EXEC_PARAMS if k in q]
        url = (f"wss://{url_host(host)}:{port}/exec/{namespace}/{name}/{container}?"
               f"{urlencode(params)}")
        upstream = await _dial_kubelet(srv, url, name, subprotocols=offered or None)
    except StatusError as err:
        await ws.send_denial_response(JSONResponse(err.to_status(), status_code=err.code))
        return
    await _accept_and_relay(ws, upstream)


async def portforward_websocket(srv: Any, ws: WebSocket, namespace: str, name: str) -> None:
    offered = [p for p in ws.scope.get("subprotocols") or []]
    try:
        _check((ws.scope.get("state") or {}).get("user"), "create", namespace, name,
               "portforward", ws.url.path)
        if not srv.ready:
            raise ServiceUnavailable("the API server is starting", retry_after=1)
        pod = await srv.store.get(REGISTRY.resolve("pods"), namespace, name)
        host, port = await kubelet_location(srv, pod)
        params = [("ports", p) for p in ws.query_params.getlist("ports")]
        url = f"wss://{url_host(host)}:{port}/portForward/{namespace}/{name}"
        if params:
            url += "?" + urlencode(params)
        upstream = await _dial_kubelet(
            srv, url, name, **(websocket_subprotocols(offered) if offered else {}))
    except StatusError as err:
        await ws.send_denial_response(JSONResponse(err.to_status(), status_code=err.code))
        return
    await _accept_and_relay(ws, upstream)


async def _dial_kubelet(srv: Any, url: str, pod_name: str, **kw: Any) -> Any:
    """A WebSocket to the kubelet at ``url`` (its serving certificate checked); a refusal
    becomes the kubelet's own Status, an unreachable kubelet a 500 as Kubernetes gives."""
    try:
        return await ws_connect(url, ssl=kubelet_client(srv).ssl_context(), max_size=None,
                                compression=None, open_timeout=10, ping_interval=None,
                                proxy=None, **kw)
    except websockets.InvalidStatus as exc:
        raise _upstream_error(exc.response.status_code, exc.response.body or b"",
                              pod_name) from None
    except (OSError, asyncio.TimeoutError, websockets.InvalidHandshake) as exc:
        raise _unreachable(url, exc) from None


async def _accept_and_relay(ws: WebSocket, upstream: Any) -> None:
    try:
        await ws.accept(subprotocol=upstream.subprotocol)
        await _relay(ws, upstream)
    finally:
        await upstream.close()


async def _relay(ws: WebSocket, upstream: Any) -> None:
    async def from_client() -> None:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                await upstream.send(message["bytes"])
            elif message.get("text") is not None:
                await upstream.send(message["text"])

    async def from_kubelet() -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for message in upstream:
                if isinstance(message, bytes):
                    await ws.send_bytes(message)
                else:
                    await ws.send_text(message)

    tasks = [asyncio.create_task(from_client()), asyncio.create_task(from_kubelet())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if tasks[1] in done:  # the command finished: its Status went out, close cleanly
            with contextlib.suppress(Exception):
                await ws.close(1000)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


__all__ = ["serve", "add_routes", "portforward_websocket", "pick_container", "kubelet_location",
           "kubelet_endpoint", "url_host", "KubeletClient"]
