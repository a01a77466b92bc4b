"""A lean HTTP/1.1 keep-alive connection pool for the REST client's request/response calls.

Why not httpx for everything: at a few hundred requests per second httpx spent most of a
busy client's CPU in its pool bookkeeping (every request checks every pooled connection for
expiry through anyio's attribute lookups) and in its layered request/response models; the
scheduler binding pods and the benchmarks creating them were client-bound, not server-bound.
This path is an ``asyncio.Protocol`` per connection fed into the C parser uvicorn already
uses (httptools): one ``write`` per request, one future per response.

It only does what the API client needs: one request at a time per connection, bodies sized
by ``Content-Length``, chunked answers, TLS with the kubeconfig's context and server name.
Streams (watch, logs) stay on httpx: they are long-lived, so its per-request costs matter
little there. Failures are raised as httpx's transport exceptions
(``ConnectError``, ``ConnectTimeout``, ``ReadTimeout``, ``ReadError``,
``RemoteProtocolError``), so callers catch one family whichever path served them.

A pooled connection the server has closed is noticed before reuse (the protocol saw EOF);
a request that still meets a closed connection is retried once on a fresh one only if it
is idempotent or nothing of it reached the socket, as Go's net/http does.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any
from urllib.parse import urlencode, urlsplit

import httptools
import httpx

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


class Response:
    """The parts of an answer ``minik8s.client.rest`` reads (named as httpx names them)."""

    __slots__ = ("status_code", "reason_phrase", "headers", "content")

    def __init__(self, status_code: int, reason_phrase: str,
                 headers: list[tuple[bytes, bytes]], content: bytes):
        self.status_code = status_code
        self.reason_phrase = reason_phrase
        self.headers = headers
        self.content = content

    def json(self) -> Any:
        return json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def header(self, name: str) -> str | None:
        want = name.lower().encode()
        for k, v in self.headers:
            if k.lower() == want:
                return v.decode("latin-1")
        return None


class _Connection(asyncio.Protocol):
    """One keep-alive connection; ``exchange`` sends a request and awaits its answer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.closed = False
        self.received = False  # any byte of the current answer
        self.keep_alive = True
        self._waiter: asyncio.Future[Response] | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._complete = False
        self._sized = False  # Content-Length or chunked: the parser knows the end

    # --- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"invalid HTTP answer: {exc}"))
            self.close()

    def eof_received(self) -> bool:
        if self._waiter is not None and not self._complete and self.received \
                and not self._sized and self._parser.get_status_code():
            self.keep_alive = False  # a body delimited by the end of the connection
            self.on_message_complete()
        self._fail(httpx.RemoteProtocolError("Server disconnected without sending a response."
                                             if not self.received else
                                             "peer closed connection without sending "
                                             "complete message body"))
        self.closed = True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(httpx.ReadError(str(exc)) if exc else httpx.RemoteProtocolError(
            "Server disconnected without sending a response."))

    # --- httptools callbacks ------------------------------------------------------

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        low = name.lower()
        if low == b"content-length" or (low == b"transfer-encoding" and b"chunked" in
                                        value.lower()):
            self._sized = True
        self._headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._complete:
            return
        self._complete = True
        code = self._parser.get_status_code()
        if code < 200:  # an interim answer (100 Continue): the real one follows
            self._start()
            return
        self.keep_alive = self.keep_alive and self._parser.should_keep_alive()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(Response(code, self._reason.decode("latin-1"), self._headers,
                                       b"".join(self._body)))

    # --- use ----------------------------------------------------------------------

    def _start(self) -> None:
        self._reason = b""
        self._headers = []
        self._body = []
        self._complete = False
        self._sized = False

    def _fail(self, exc: Exception) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    @property
    def usable(self) -> bool:
        return (not self.closed and self.keep_alive and self.transport is not None
                and not self.transport.is_closing())

    async def exchange(self, data: bytes) -> Response:
        assert self.transport is not None
        self._start()
        self.received = False
        self._waiter = self.loop.create_future()
        self.transport.write(data)
        try:
            return await self._waiter
        finally:
            self._waiter = None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class ConnectionPool:
    """Keep-alive connections to one API server, at most ``max_connections`` in use."""

    def __init__(self, server: str, *, ssl_context: ssl.SSLContext | None,
                 server_hostname: str | None, headers: dict[str, str], timeout: float,
                 connect_timeout: float, max_connections: int, max_idle: int = 32):
        url = urlsplit(server)
        self.https = url.scheme == "https"
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or (443 if self.https else 80)
        self.prefix = url.path.rstrip("/")
        self.ssl = (ssl_context or ssl.create_default_context()) if self.https else None
        self.server_hostname = server_hostname if self.https else None
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle
        self._headers = {"Host": url.netloc, **headers}
        self._head_tail = _render(self._headers)
        self._max_connections = max_connections
        self._slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None
        self._idle: list[_Connection] = []

    @staticmethod
    def supports(server: str) -> bool:
        return urlsplit(server).scheme in ("http", "https")

    def _encode(self, method: str, path: str, params: dict[str, Any] | None,
                body: bytes | None, headers: dict[str, str] | None) -> bytes:
        target = self.prefix + path
        if params:
            query = urlencode([(k, _text(x)) for k, v in params.items()
                               for x in (v if isinstance(v, (list, tuple)) else (v,))])
            target += ("&" if "?" in target else "?") + query
        if headers:  # a request's own header replaces the default of that name
            own = {k.lower() for k in headers}
            merged = {k: v for k, v in self._headers.items() if k.lower() not in own}
            head = f"{method} {target} HTTP/1.1\r\n{_render({**merged, **headers})}"
        else:
            head = f"{method} {target} HTTP/1.1\r\n{self._head_tail}"
        if body is not None:
            head += f"Content-Length: {len(body)}\r\n\r\n"
            return head.encode() + body
        if method in ("POST", "PUT", "PATCH"):
            head += "Content-Length: 0\r\n"
        return (head + "\r\n").encode()

    async def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                      body: bytes | None = None,
                      headers: dict[str, str] | None = None) -> Response:
        data = self._encode(method, path, params, body, headers)
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots[0] is not loop:
            self._slots = (loop, asyncio.Semaphore(self._max_connections))
        async with self._slots[1]:
            for attempt in (0, 1):
                conn = self._take_idle()
                reused = conn is not None
                if conn is None:
                    conn = await self._connect()
                try:
                    async with asyncio.timeout(self.timeout):
                        resp = await conn.exchange(data)
                except TimeoutError:
                    conn.close()
                    raise httpx.ReadTimeout(f"no answer within {self.timeout:g}s") from None
                except (httpx.ReadError, httpx.RemoteProtocolError):
                    conn.close()
                    # A pooled connection the server closed under us: safe to send again if
                    # the request is idempotent (nothing of an answer came back either way).
                    if reused and attempt == 0 and not conn.received and method in IDEMPOTENT:
                        continue
                    raise
                except BaseException:
                    conn.close()  # cancelled mid-exchange: the connection's state is unknown
                    raise
                if conn.usable and len(self._idle) < self.max_idle:
                    self._idle.append(conn)
                else:
                    conn.close()
                return resp
        raise AssertionError("unreachable")

    def _take_idle(self) -> _Connection | None:
        loop = asyncio.get_running_loop()
        while self._idle:
            conn = self._idle.pop()
            if conn.usable and conn.loop is loop:
                return conn
            conn.close()
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(
                    _Connection, self.host, self.port, ssl=self.ssl,
                    server_hostname=self.server_hostname)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {self.host}:{self.port} timed out") \
                from None
        except OSError as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        return conn

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _render(headers: dict[str, str]) -> str:
    return "".join(f"{k}: {v}\r\n" for k, v in headers.items())


def _text(value: Any) -> str:
    """Query values as httpx renders them: booleans lower-case, None empty."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    return str(value)


__all__ = ["ConnectionPool", "Response", "IDEMPOTENT"]
