"""The kubelet's HTTPS server (port 10250): container logs, interactive exec and the stats
summary, for the API server (which proxies ``pods/{name}/log``, ``pods/{name}/exec`` and
``pods/{name}/portforward`` here with its ``system:masters`` client certificate) and for the
node itself.

TLS asks for a client certificate without requiring one, so that a caller without one gets
an HTTP 401 rather than a failed handshake; a presented certificate is verified against
``--client-ca-file``. Exec speaks the Kubernetes WebSocket channel protocol: every message
is one channel byte then data (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize); the error
channel carries the final ``Status`` (with the exit code) just before the close; ``v5`` adds
a close message (255, channel) so a client can end stdin.

Port forwarding (``/portForward/{namespace}/{pod}``) connects to 127.0.0.1:PORT *inside* the
pod's network namespace, as Kubernetes runtimes do, so a server bound only to the pod's
loopback is reachable too: the socket is made by a thread that entered the sandbox's
namespace (``kubelet.probes``). Two WebSocket protocols: ``SPDY/3.1+portforward.k8s.io``
(kubectl 1.31+: SPDY inside the WebSocket, one error and one data stream per forwarded
connection, ``minik8s.spdy``) and ``v4.channel.k8s.io`` with ``?ports=`` (the Python client:
channels 2i data and 2i+1 error for the i-th port, each opened by the port number as two
little-endian bytes).

uvicorn does not put the TLS peer certificate into the ASGI scope; the protocol subclass
below copies it into the connection state, as the API server's does (same pinned uvicorn)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from kubelet.runtime.base import (APP, INIT, LABEL_CONTAINER_NAME, LABEL_KIND, LABEL_NODE,
                                  LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID, SANDBOX,
                                  ContainerInfo)
from minik8s import spdy
from minik8s.pki import identity_from_cert
from minik8s.wscompat import LenientWebSocketProtocol

log = logging.getLogger(__name__)

MASTERS_GROUP = "system:masters"

# --------------------------------------------------------------------------- channel protocol

V5, V4, V3, V2, V1 = ("v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io",
                      "v2.channel.k8s.io", "channel.k8s.io")
PROTOCOLS = (V5, V4, V3, V2, V1)
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255


def choose_protocol(offered: list[str]) -> str | None:
    """The first protocol the client offered that this server speaks (the client's order,
    as Kubernetes' wsstream negotiates); None when it offered none of them."""
    for p in offered:
        if p.strip() in PROTOCOLS:
            return p.strip()
    return None


def frame(channel: int, data: bytes) -> bytes:
    return bytes([channel]) + data


def parse_frame(message: bytes | str) -> tuple[int, bytes] | None:
    """``(channel, data)`` of one client message (text frames too: the Python client sends
    stdin as text); None for an empty message."""
    raw = message.encode("utf-8") if isinstance(message, str) else message
    if not raw:
        return None
    return raw[0], raw[1:]


def success_status() -> dict[str, Any]:
    return {"metadata": {}, "status": "Success"}


def exit_status(code: int, command: list[str]) -> dict[str, Any]:
    """The error-channel Status for a finished command, as the kubelet writes it and as
    kubectl and the Python client read the exit code back (``details.causes[ExitCode]``)."""
    if code == 0:
        return success_status()
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: error executing command "
                       f"[{' '.join(command)}], exit code {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def error_status(message: str, code: int = 500) -> dict[str, Any]:
    return {"metadata": {}, "status": "Failure", "message": message,
            "reason": "InternalError", "code": code,
            "details": {"causes": [{"message": message}]}}


def error_payload(protocol: str, status: dict[str, Any]) -> bytes:
    """v4 and v5 send the Status as JSON; the older protocols only a failure's message."""
    if protocol in (V5, V4):
        return json.dumps(status, separators=(",", ":")).encode()
    return b"" if status.get("status") == "Success" else str(status.get("message", "")).encode()


def parse_bool(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1", "yes")


# --------------------------------------------------------------------------- the server


class HTTPError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class KubeletServer:
    """The app and its runnable. ``pod_uid`` maps (namespace, name) to the uid of the pod
    the kubelet runs under that name now, so a recreated pod's old containers are not
    mistaken for its own."""

    def __init__(self, node_name: str, runtime: Any, stats: Any, *,
                 pod_uid: Callable[[str, str], str | None] | None = None,
                 dial: Callable[[PodSandbox, int], Awaitable[tuple[asyncio.StreamReader,
                                                                   asyncio.StreamWriter]]]
                 | None = None):
        self.node_name = node_name
        self.runtime = runtime
        self.stats = stats
        self.pod_uid = pod_uid or (lambda ns, name: None)
        self.dial = dial or dial_in_pod
        self.app = Starlette(routes=[
            Route("/containerLogs/{namespace}/{pod}/{container}", self.container_logs),
            WebSocketRoute("/exec/{namespace}/{pod}/{container}", self.exec),
            WebSocketRoute("/portForward/{namespace}/{pod}", self.port_forward),
            Route("/stats/summary", self.stats_summary),
            Route("/healthz", lambda r: PlainTextResponse("ok")),
        ])

    # --- finding the container ---------------------------------------------------------

    async def containers(self, namespace: str, pod: str, container: str) -> list[ContainerInfo]:
        """The container's instances, oldest first."""
        infos = await self.runtime.list_containers({
            LABEL_NODE: self.node_name, LABEL_POD_NAMESPACE: namespace, LABEL_POD_NAME: pod,
            LABEL_CONTAINER_NAME: container})
        infos = [i for i in infos if i.kind in (APP, INIT)]
        uid = self.pod_uid(namespace, pod)
        if uid:
            infos = [i for i in infos if i.labels.get(LABEL_POD_UID) == uid]
        elif infos:  # not known (yet): the newest pod of that name
            newest = max(infos, key=lambda i: i.created_at or "").labels.get(LABEL_POD_UID)
            infos = [i for i in infos if i.labels.get(LABEL_POD_UID) == newest]
        return sorted(infos, key=lambda i: (i.attempt, i.created_at or ""))

    async def find(self, namespace: str, pod: str, container: str, *,
                   previous: bool = False) -> ContainerInfo:
        history = await self.containers(namespace, pod, container)
        if previous:
            if len(history) < 2:
                raise HTTPError(400, f'previous terminated container "{container}" in pod '
                                     f'"{pod}" not found')
            return history[-2]
        if not history:
            raise HTTPError(400, f'container "{container}" in pod "{pod}" is waiting to '
                                 f'start: ContainerCreating')
        return history[-1]

    # --- logs ----------------------------------------------------------------------------

    async def container_logs(self, request: Request) -> Response:
        p, q = request.path_params, request.query_params
        try:
            info = await self.find(p["namespace"], p["pod"], p["container"],
                                   previous=parse_bool(q.get("previous")))
            tail = _int(q.get("tailLines"), "tailLines")
            since_seconds = _int(q.get("sinceSeconds"), "sinceSeconds")
            limit = _int(q.get("limitBytes"), "limitBytes")
        except HTTPError as exc:
            return PlainTextResponse(exc.message, status_code=exc.code)
        since = time.time() - since_seconds if since_seconds and since_seconds > 0 else None
        chunks = self.runtime.logs(info.id, follow=parse_bool(q.get("follow")),
                                   tail=tail if tail is not None and tail >= 0 else None,
                                   timestamps=parse_bool(q.get("timestamps")), since=since)
        return StreamingResponse(_limited(chunks, limit), media_type="text/plain")

    # --- stats ---------------------------------------------------------------------------

    async def stats_summary(self, request: Request) -> Response:
        return JSONResponse(await self.stats.summary())

    # --- exec ----------------------------------------------------------------------------

    async def exec(self, ws: WebSocket) -> None:
        p, q = ws.path_params, ws.query_params
        protocol = choose_protocol(list(ws.scope.get("subprotocols") or []))
        if protocol is None and ws.scope.get("subprotocols"):
            await ws.send_denial_response(PlainTextResponse(
                f"none of the offered subprotocols is supported; use one of "
                f"{', '.join(PROTOCOLS)}", status_code=400))
            return
        command = q.getlist("command")
        stdin, tty = parse_bool(q.get("stdin")), parse_bool(q.get("tty"))
        want = {STDOUT: parse_bool(q.get("stdout")), STDERR: parse_bool(q.get("stderr"))}
        await ws.accept(subprotocol=protocol)
        protocol = protocol or V1
        log.debug("exec in %s/%s/%s over %s: %s (stdin %s, tty %s)", p["namespace"], p["pod"],
                  p["container"], protocol, command, stdin, tty)
        stream = None
        try:
            if not command:
                raise HTTPError(400, "you must specify at least one command for the container")
            info = await self.find(p["namespace"], p["pod"], p["container"])
            if info.state != "running":
                raise HTTPError(400, f'container "{p["container"]}" in pod "{p["pod"]}" is '
                                     f'not running')
            stream = await self.runtime.exec_stream(info.id, command, stdin=stdin, tty=tty)
            status = await self._relay(ws, stream, protocol, stdin=stdin, want=want, tty=tty,
                                       command=command)
        except HTTPError as exc:
            status = error_status(exc.message, exc.code)
        except WebSocketDisconnect:
            return
        except Exception as exc:  # the runtime refused (no such command, gone container)
            log.info("exec in %s/%s failed: %s", p["namespace"], p["pod"], exc)
            status = error_status(str(exc))
        finally:
            if stream is not None:
                await stream.close()
        with contextlib.suppress(Exception):
            await ws.send_bytes(frame(ERROR, error_payload(protocol, status)))
            await ws.close(1000)

    async def _relay(self, ws: WebSocket, stream: Any, protocol: str, *, stdin: bool,
                     want: dict[int, bool], tty: bool, command: list[str]) -> dict[str, Any]:
        async def incoming() -> None:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    raise WebSocketDisconnect(message.get("code", 1000))
                parsed = parse_frame(message.get("bytes") or message.get("text") or b"")
                if parsed is None:
                    continue
                channel, data = parsed
                if channel == STDIN and stdin:
                    if data:
                        await stream.write(data)
                elif channel == RESIZE and tty:
                    with contextlib.suppress(ValueError, TypeError, AttributeError):
                        size = json.loads(data)
                        await stream.resize(int(size.get("Width", 0)),
                                            int(size.get("Height", 0)))
                elif channel == CLOSE and protocol == V5 and data[:1] == bytes([STDIN]):
                    await stream.close_stdin()

        async def outgoing() -> None:
            while (chunk := await stream.read()) is not None:
                channel, data = chunk
                if tty:
                    channel = STDOUT
                if want.get(channel, False):
                    await ws.send_bytes(frame(channel, data))

        reader = asyncio.create_task(incoming())
        writer = asyncio.create_task(outgoing())
        try:
            done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
            if writer not in done:  # the client went away (or failed) first
                reader.result()
                raise WebSocketDisconnect(1000)
            writer.result()
        finally:
            for t in (reader, writer):
                t.cancel()
            await asyncio.gather(reader, writer, return_exceptions=True)
        return exit_status(await stream.exit_code(), command)

    # --- port forward --------------------------------------------------------------------

    async def sandbox(self, namespace: str, pod: str) -> PodSandbox:
        """The pod's running infra container (its network namespace)."""
        infos = await self.runtime.list_containers({
            LABEL_NODE: self.node_name, LABEL_POD_NAMESPACE: namespace, LABEL_POD_NAME: pod,
            LABEL_KIND: SANDBOX})
        uid = self.pod_uid(namespace, pod)
        if uid:
            infos = [i for i in infos if i.labels.get(LABEL_POD_UID) == uid]
        if not infos:
            raise HTTPError(404, f'pod "{pod}" not found')
        running = [i for i in infos if i.state == "running"]
        if not running:
            raise HTTPError(400, f'pod "{pod}" is not running (its sandbox is '
                                 f'{infos[-1].state})')
        newest = max(running, key=lambda i: i.created_at or "")
        info = await self.runtime.inspect(newest.id)
        if info is None or info.state != "running":
            raise HTTPError(400, f'pod "{pod}" is not running')
        return PodSandbox(namespace, pod, newest.pod_uid, info.pid)

    async def port_forward(self, ws: WebSocket) -> None:
        p, q = ws.path_params, ws.query_params
        offered = [o.strip() for o in ws.scope.get("subprotocols") or []]
        ports: list[int] = []
        try:
            if spdy.TUNNEL_PROTOCOL in offered:
                protocol = spdy.TUNNEL_PROTOCOL
            elif V4 in offered:
                protocol = V4
                raw = [x for v in q.getlist("ports") for x in v.split(",") if x.strip()]
                if not raw:
                    raise HTTPError(400, 'query parameter "ports" is required')
                for value in raw:
                    port = parse_port(value.strip())
                    if port is None:
                        raise HTTPError(400, f'unable to parse "{value}" as a port')
                    ports.append(port)
            else:
                raise HTTPError(400, f"port forwarding needs the subprotocol "
                                     f"{spdy.TUNNEL_PROTOCOL} or {V4}")
            sandbox = await self.sandbox(p["namespace"], p["pod"])
        except HTTPError as exc:
            await ws.send_denial_response(PlainTextResponse(exc.message,
                                                            status_code=exc.code))
            return
        await ws.accept(subprotocol=protocol)
        log.debug("port forward to %s/%s over %s", p["namespace"], p["pod"], protocol)
        if protocol == V4:
            await self._forward_channels(ws, sandbox, ports)
        else:
            await self._forward_spdy(ws, sandbox)

    async def _forward_spdy(self, ws: WebSocket, sandbox: PodSandbox,
                            stream_timeout: float = 30.0) -> None:
        pairs: dict[str, _StreamPair] = {}
        tasks: set[asyncio.Task] = set()

        def spawn(coro: Awaitable[None]) -> None:
            task = asyncio.ensure_future(coro)
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        async def on_stream(stream: spdy.Stream) -> None:
            kind = stream.headers.get(spdy.HEADER_STREAM_TYPE)
            if parse_port(stream.headers.get(spdy.HEADER_PORT)) is None or \
                    kind not in (spdy.STREAM_TYPE_ERROR, spdy.STREAM_TYPE_DATA):
                await stream.reset(spdy.PROTOCOL_ERROR)  # as Kubernetes' stream handler
                return
            await stream.reply()
            request_id = stream.headers.get(spdy.HEADER_REQUEST_ID) or str(
                stream.id if kind == spdy.STREAM_TYPE_ERROR else stream.id - 2)
            pair = pairs.get(request_id)
            if pair is None:
                pair = pairs[request_id] = _StreamPair(request_id)
                spawn(monitor(pair))
            if getattr(pair, kind) is not None:
                await self._fail(pair.error or stream, f"error processing stream for request "
                                 f"{request_id}: {kind} stream already assigned")
                return
            setattr(pair, kind, stream)
            if pair.data is not None and pair.error is not None:
                pair.complete.set()
                spawn(self._forward_pair(sandbox, pair.data, pair.error))

        async def monitor(pair: _StreamPair) -> None:
            try:
                await asyncio.wait_for(pair.complete.wait(), stream_timeout)
            except asyncio.TimeoutError:
                if pair.error is not None:
                    await self._fail(pair.error, f"timed out waiting for streams of request "
                                                 f"{pair.request_id}")
                if pair.data is not None:
                    await pair.data.reset()
            finally:
                pairs.pop(pair.request_id, None)

        async def receive() -> bytes | None:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return None
            if message.get("bytes") is not None:
                return message["bytes"]
            return (message.get("text") or "").encode()

        session = spdy.Session(ws.send_bytes, server=True, on_stream=on_stream)
        try:
            await session.run(receive)
        except (spdy.ProtocolError, WebSocketDisconnect, ConnectionError) as exc:
            log.info("port forward to %s/%s ended: %s", sandbox.namespace, sandbox.name, exc)
        finally:
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await ws.close(1000)

    @staticmethod
    async def _fail(stream: spdy.Stream, message: str) -> None:
        with contextlib.suppress(ConnectionError):
            await stream.write(message.encode())
            await stream.close()

    async def _forward_pair(self, sandbox: PodSandbox, data: spdy.Stream,
                            error: spdy.Stream) -> None:
        port = int(data.headers[spdy.HEADER_PORT])
        try:
            try:
                reader, writer = await asyncio.wait_for(self.dial(sandbox, port), 15)
            except (OSError, asyncio.TimeoutError) as exc:
                message = forward_error(sandbox, port, exc)
                log.info("%s", message)
                await self._fail(error, message)
                return
            await spdy.splice(data, reader, writer)
        except ConnectionError:
            pass  # the tunnel went away
        finally:
            with contextlib.suppress(ConnectionError):
                await data.close()
                await error.close()

    async def _forward_channels(self, ws: WebSocket, sandbox: PodSandbox,
                                ports: list[int]) -> None:
        """The ``v4.channel.k8s.io`` flavour: one connection per requested port for the
        life of the WebSocket."""
        send_lock = asyncio.Lock()

        async def send(channel: int, data: bytes) -> None:
            async with send_lock:
                await ws.send_bytes(frame(channel, data))

        writers: dict[int, asyncio.StreamWriter] = {}

        async def pump(i: int, reader: asyncio.StreamReader) -> None:
            try:
                while chunk := await reader.read(spdy.CHUNK):
                    await send(2 * i, chunk)
            except ConnectionError:
                pass
            finally:
                writer = writers.pop(i, None)
                if writer is not None:
                    writer.close()

        async def incoming() -> None:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                parsed = parse_frame(message.get("bytes") or message.get("text") or b"")
                if parsed is None or parsed[0] % 2 or parsed[0] // 2 >= len(ports):
                    continue
                writer = writers.get(parsed[0] // 2)
                if writer is not None and parsed[1]:
                    writer.write(parsed[1])
                    with contextlib.suppress(ConnectionError):
                        await writer.drain()

        readers: dict[int, asyncio.StreamReader] = {}
        try:
            for i, port in enumerate(ports):
                prefix = port.to_bytes(2, "little")
                await send(2 * i, prefix)
                await send(2 * i + 1, prefix)
            # every port dialled before the first client message is read: nothing is lost
            for i, port in enumerate(ports):
                try:
                    readers[i], writers[i] = await asyncio.wait_for(
                        self.dial(sandbox, port), 15)
                except (OSError, asyncio.TimeoutError) as exc:
                    await send(2 * i + 1, forward_error(sandbox, port, exc).encode())
        except Exception:
            for writer in writers.values():
                writer.close()
            return
        pumps = [asyncio.create_task(pump(i, r)) for i, r in readers.items()]
        reader = asyncio.create_task(incoming())
        try:
            await asyncio.wait([reader, asyncio.ensure_future(asyncio.gather(*pumps))],
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in [reader, *pumps]:
                t.cancel()
            await asyncio.gather(reader, *pumps, return_exceptions=True)
            for writer in writers.values():
                writer.close()
            with contextlib.suppress(Exception):
                await ws.close(1000)


# --------------------------------------------------------------------------- port forward


@dataclass
class PodSandbox:
    namespace: str
    name: str
    uid: str
    pid: int  # the infra container's process: its network namespace is the pod's


async def dial_in_pod(sandbox: PodSandbox, port: int) -> tuple[asyncio.StreamReader,
                                                              asyncio.StreamWriter]:
    """A connection to 127.0.0.1:port in the pod's network namespace."""
    from kubelet.probes import _netns_pool, _socket_in_netns
    loop = asyncio.get_running_loop()
    sock = await loop.run_in_executor(_netns_pool, _socket_in_netns, sandbox.pid)
    try:
        await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), 10)
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock)


def forward_error(sandbox: PodSandbox, port: int, exc: BaseException) -> str:
    """What goes on the error stream when the pod's port cannot be reached (the kubelet's
    ``error forwarding port`` wrapper around the runtime's dial error)."""
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        reason = "i/o timeout"
    elif isinstance(exc, OSError) and exc.errno:
        reason = os.strerror(exc.errno).lower()
    else:
        reason = str(exc)
    return (f"error forwarding port {port} to pod {sandbox.name}, uid {sandbox.uid}: failed to "
            f"connect to localhost:{port} inside namespace of pod "
            f"{sandbox.namespace}/{sandbox.name}: dial tcp4 127.0.0.1:{port}: connect: {reason}")


def parse_port(value: str | None) -> int | None:
    if not value or not value.isdigit():
        return None
    port = int(value)
    return port if 0 < port < 65536 else None


class _StreamPair:
    def __init__(self, request_id: str):
        self.request_id = request_id
        self.data: spdy.Stream | None = None
        self.error: spdy.Stream | None = None
        self.complete = asyncio.Event()


def _int(value: str | None, name: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise HTTPError(400, f"{name}: invalid value {value!r}") from None


async def _limited(chunks: AsyncIterator[bytes], limit: int | None) -> AsyncIterator[bytes]:
    sent = 0
    try:
        async for chunk in chunks:
            if limit is not None and limit > 0:
                chunk = chunk[:limit - sent]
                sent += len(chunk)
            if chunk:
                yield chunk
            if limit is not None and 0 < limit <= sent:
                return
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


# --------------------------------------------------------------------------- authentication


class Authn:
    """Client certificates only: none -> 401; the API server (``system:masters``) or this
    node's own identity -> through; anyone else -> 403."""

    def __init__(self, app: Any, node_name: str):
        self.app = app
        self.node_user = f"system:node:{node_name}"

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        cert = (scope.get("state") or {}).get("peercert")
        user, groups = "", []
        if cert:
            with contextlib.suppress(ValueError):
                user, groups = identity_from_cert(cert)
        if not user:
            return await _deny(scope, send, 401, "Unauthorized")
        if MASTERS_GROUP not in groups and user != self.node_user:
            return await _deny(scope, send, 403, f'Forbidden (user={user}, verb='
                                                 f'{scope.get("method", "GET").lower()}, '
                                                 f'path={scope.get("path", "")})')
        await self.app(scope, receive, send)


async def _deny(scope: dict, send: Callable, code: int, message: str) -> None:
    body = message.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"),
               (b"content-length", str(len(body)).encode())]
    prefix = "websocket.http.response" if scope["type"] == "websocket" else "http.response"
    await send({"type": f"{prefix}.start", "status": code, "headers": headers})
    await send({"type": f"{prefix}.body", "body": body})


class PeerCertHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        cert = ssl_object.getpeercert() if ssl_object is not None else None
        self.app_state = {**self.app_state, "peercert": cert or None}


def server_ssl_context(cert_file: str, key_file: str, client_ca_file: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    ctx.load_verify_locations(cafile=client_ca_file)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


async def serve(server: KubeletServer, host: str, port: int, ssl_context: ssl.SSLContext,
                started: asyncio.Event | None = None) -> None:
    """Serve until cancelled (uvicorn's startup/main loop/shutdown, without ``serve()``'s
    signal handlers: the kubelet owns SIGTERM)."""
    config = uvicorn.Config(
        Authn(server.app, server.node_name), host=host, port=port,
        http=PeerCertHttpToolsProtocol, ws=LenientWebSocketProtocol, lifespan="off",
        ssl_context_factory=lambda _cfg, _default: ssl_context, log_config=None,
        access_log=False, timeout_graceful_shutdown=1)
    config.load()
    # Our own socket: a bind failure raises here (uvicorn's own bind calls sys.exit).
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    srv = uvicorn.Server(config)
    srv.lifespan = config.lifespan_class(config)
    await srv.startup(sockets=[sock])
    log.info("kubelet server listening on https://%s:%d", host, port)
    if started is not None:
        started.set()
    try:
        await srv.main_loop()
    finally:
        srv.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.shield(srv.shutdown(sockets=[sock]))


__all__ = ["KubeletServer", "PodSandbox", "dial_in_pod", "forward_error", "Authn", "serve", "server_ssl_context", "choose_protocol", "frame",
           "parse_frame", "exit_status", "success_status", "error_status", "error_payload",
           "PROTOCOLS", "V4", "V5"]
