"""The REST client's lean HTTP/1.1 pool against scripted loopback servers: framing (length,
chunked, until close), keep-alive reuse, a pooled connection the server closed, and errors
surfacing as httpx's transport exceptions."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from minik8s.client.http11 import ConnectionPool


class Server:
    """A loopback HTTP server answering each request with ``answer(request_head, body)``."""

    def __init__(self, answer):
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.AbstractServer | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> "Server":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        for w in self.writers:
            w.close()
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length) if length else b""
                self.requests.append(head + body)
                out, close = self.answer(head, body)
                writer.write(out)
                await writer.drain()
                if close:
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


def ok(payload: dict, extra: bytes = b"") -> bytes:
    data = json.dumps(payload).encode()
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(data)).encode() + b"\r\n" + extra + b"\r\n" + data)


def pool(port: int, **kw) -> ConnectionPool:
    return ConnectionPool(f"http://127.0.0.1:{port}", ssl_context=None, server_hostname=None,
                          headers={"Accept": "application/json"}, timeout=kw.pop("timeout", 5),
                          connect_timeout=5, max_connections=kw.pop("max_connections", 8), **kw)


async def test_keep_alive_reuses_one_connection_and_sends_the_request() -> None:
    async with Server(lambda head, body: (ok({"echo": body.decode()}), False)) as srv:
        p = pool(srv.port)
        for i in range(3):
            resp = await p.request("POST", "/api/v1/x", params={"watch": True, "n": i,
                                                                 "skip": None},
                                   body=b'{"a":1}', headers={"Content-Type": "application/json"})
            assert resp.status_code == 200 and resp.json() == {"echo": '{"a":1}'}
        await p.aclose()
    assert srv.connections == 1
    first = srv.requests[0]
    assert first.startswith(b"POST /api/v1/x?watch=true&n=0&skip= HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:" in first and b"\r\nContent-Length: 7\r\n" in first
    assert first.endswith(b'\r\n\r\n{"a":1}')


async def test_a_request_header_replaces_the_default_of_that_name() -> None:
    async with Server(lambda head, body: (ok({}), False)) as srv:
        p = pool(srv.port)
        await p.request("GET", "/t", headers={"accept": "application/json;as=Table"})
        await p.request("GET", "/u")
        await p.aclose()
    with_own, plain = srv.requests
    assert with_own.lower().count(b"\r\naccept:") == 1
    assert b"\r\naccept: application/json;as=Table\r\n" in with_own
    assert b"\r\nAccept: application/json\r\n" in plain


async def test_chunked_and_close_delimited_bodies() -> None:
    chunked = (b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n")
    async with Server(lambda head, body: (chunked, False)) as srv:
        p = pool(srv.port)
        resp = await p.request("GET", "/x")
        assert (resp.status_code, resp.reason_phrase, resp.json()) == (404, "Not Found",
                                                                       {"a": 1})
        await p.aclose()
    until_close = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it"
    async with Server(lambda head, body: (until_close, True)) as srv:
        p = pool(srv.port)
        assert (await p.request("GET", "/x")).content == b"all of it"
        assert (await p.request("GET", "/x")).content == b"all of it"  # a new connection
        await p.aclose()
    assert srv.connections == 2


async def test_connection_close_header_is_honoured() -> None:
    async with Server(lambda head, body: (ok({}, b"Connection: close\r\n"), True)) as srv:
        p = pool(srv.port)
        await p.request("GET", "/a")
        await p.request("GET", "/b")
        await p.aclose()
    assert srv.connections == 2


async def test_pooled_connection_closed_by_the_server_is_not_reused() -> None:
    async with Server(lambda head, body: (ok({"n": 1}), False)) as srv:
        p = pool(srv.port)
        await p.request("POST", "/a", body=b"{}")
        for w in srv.writers:  # the server drops its idle keep-alive connection
            w.close()
        await asyncio.sleep(0.05)
        assert (await p.request("POST", "/a", body=b"{}")).json() == {"n": 1}
        await p.aclose()
    assert srv.connections == 2
    assert len(srv.requests) == 2  # the POST was sent once, on the fresh connection


async def test_idempotent_request_is_retried_once_when_a_reused_connection_drops() -> None:
    calls = []

    def answer(head: bytes, body: bytes):
        calls.append(head)
        if len(calls) == 2:
            return b"", True  # drop the connection without answering
        return ok({"n": len(calls)}), False
    async with Server(answer) as srv:
        p = pool(srv.port)
        await p.request("GET", "/a")
        assert (await p.request("GET", "/a")).json() == {"n": 3}
        await p.aclose()
    assert srv.connections == 2


async def test_non_idempotent_request_is_not_replayed() -> None:
    calls = []

    def answer(head: bytes, body: bytes):
        calls.append(head)
        if len(calls) == 2:
            return b"", True
        return ok({}), False
    async with Server(answer) as srv:
        p = pool(srv.port)
        await p.request("POST", "/a", body=b"{}")
        with pytest.raises(httpx.RemoteProtocolError):
            await p.request("POST", "/a", body=b"{}")
        await p.aclose()
    assert len(calls) == 2


async def test_errors_are_httpx_transport_errors() -> None:
    async with Server(lambda head, body: (b"", False)) as srv:  # never answers
        port = srv.port
        p = pool(port, timeout=0.2)
        with pytest.raises(httpx.ReadTimeout):
            await p.request("GET", "/slow")
        await p.aclose()
    async with Server(lambda head, body: (b"garbage\r\n\r\n", False)) as srv:
        p = pool(srv.port)
        with pytest.raises(httpx.RemoteProtocolError):
            await p.request("GET", "/bad")
        await p.aclose()
    p = pool(port)  # nothing listens there any more
    with pytest.raises(httpx.ConnectError) as info:
        await p.request("GET", "/x")
    assert isinstance(info.value.__cause__, ConnectionRefusedError)


async def test_at_most_max_connections_at_once() -> None:
    async with Server(lambda head, body: (ok({}), False)) as srv:
        p = pool(srv.port, max_connections=3)
        await asyncio.gather(*(p.request("GET", f"/{i}") for i in range(20)))
        await p.aclose()
    assert srv.connections <= 3 and len(srv.requests) == 20


async def test_cancelled_request_does_not_return_its_connection_to_the_pool() -> None:
    async with Server(lambda head, body: (b"", False)) as srv:
        p = pool(srv.port)
        task = asyncio.ensure_future(p.request("GET", "/hang"))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert p._idle == []
        await p.aclose()

