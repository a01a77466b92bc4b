"""The userspace proxy's splice on loopback sockets (no namespace, no rules): a NodePort
listener on 127.0.0.1 in front of two TCP servers. Checked: a large request and answer pass
whole both ways under flow control; a client that half-closes after its request still gets
the answer; connections go round robin and skip an endpoint that refuses; a port without
endpoints has no listener; closing the backend ends open connections."""

from __future__ import annotations

import asyncio
import socket

from kubeproxy.servicemap import Endpoint, ServicePort
from kubeproxy.userspace import Balancer, UserspaceBackend

BIG = 3 * 1024 * 1024 + 17


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def server(name: str):
    """Reads until EOF, answers its name, the byte count and the bytes back."""
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        data = await r.read()
        w.write(f"{name} {len(data)}\n".encode() + data)
        await w.drain()
        w.close()
    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    return srv, srv.sockets[0].getsockname()[1]


def port_map(node_port: int, eps: list[int]) -> list[ServicePort]:
    return [ServicePort(namespace="default", name="web", port_name="", protocol="TCP",
                        cluster_ip=None, port=80, node_port=node_port,
                        endpoints=tuple(Endpoint("127.0.0.1", p) for p in eps))]


async def ask(port: int, payload: bytes) -> tuple[str, bytes]:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(payload)
    await w.drain()
    w.write_eof()  # half-close: the answer must still come back
    data = await asyncio.wait_for(r.read(), 30)
    w.close()
    head, _, body = data.partition(b"\n")
    return head.decode(), body


async def test_splice_round_robin_refused_endpoint_and_close():
    a, pa = await server("a")
    b, pb = await server("b")
    dead = free_port()  # nothing listens: refused, skipped
    node_port = free_port()
    backend = UserspaceBackend(node_port_address="127.0.0.1", manage_addresses=False)
    try:
        await backend.sync(port_map(node_port, [pa, pb, dead]))
        assert backend.listening == [("127.0.0.1", node_port)]
        payload = bytes(range(256)) * (BIG // 256) + b"x" * (BIG % 256)
        head, body = await ask(node_port, payload)
        assert head.split()[1] == str(BIG) and body == payload
        names = [(await ask(node_port, b"hi"))[0].split()[0] for _ in range(6)]
        assert set(names) == {"a", "b"}, names  # the refusing endpoint never answers
        # several at once
        got = await asyncio.gather(*(ask(node_port, b"y" * 1000) for _ in range(20)))
        assert all(h.split()[1] == "1000" and body == b"y" * 1000 for h, body in got)

        # no endpoints: no listener, connections are refused
        await backend.sync(port_map(node_port, []))
        assert backend.listening == []
        try:
            await asyncio.open_connection("127.0.0.1", node_port)
        except ConnectionRefusedError:
            pass
        else:
            raise AssertionError("a port without endpoints accepted a connection")

        # an open connection ends when the backend closes
        await backend.sync(port_map(node_port, [pa]))
        r, w = await asyncio.open_connection("127.0.0.1", node_port)
        w.write(b"partial")
        await w.drain()
        await asyncio.sleep(0.1)
    finally:
        await backend.close()
    assert await asyncio.wait_for(r.read(), 10) == b""
    w.close()
    for s in (a, b):
        s.close()
        await s.wait_closed()


async def test_close_ends_connections_of_a_listener_already_gone():
    """Endpoints went to zero: the listener closes, its open connection goes on, and the
    backend's close() still ends it."""
    a, pa = await server("a")
    node_port = free_port()
    backend = UserspaceBackend(node_port_address="127.0.0.1", manage_addresses=False)
    try:
        await backend.sync(port_map(node_port, [pa]))
        r, w = await asyncio.open_connection("127.0.0.1", node_port)
        w.write(b"partial")
        await w.drain()
        for _ in range(200):  # accepted and connected upstream
            if backend.connection_count:
                break
            await asyncio.sleep(0.01)
        assert backend.connection_count == 1
        await backend.sync(port_map(node_port, []))
        assert backend.listening == []
        assert backend.connection_count == 1  # established connections survive the change
    finally:
        await backend.close()
    assert backend.connection_count == 0
    try:
        assert await asyncio.wait_for(r.read(), 10) == b""
    except ConnectionResetError:
        pass  # ended either way: closed with the client's bytes unread is a reset
    w.close()
    a.close()
    await a.wait_closed()


def test_expired_affinity_entries_are_dropped_as_clients_come():
    now = [0.0]
    eps = (Endpoint("10.0.0.1", 80), Endpoint("10.0.0.2", 80))
    bal = Balancer(clock=lambda: now[0])
    bal.update(eps, 10)
    for i in range(1000):
        bal.choose(f"10.1.{i // 256}.{i % 256}")
    assert len(bal._affinity) == 1000  # all within their timeout: all kept
    now[0] = 11.0
    for i in range(1000):  # new clients, the old ones expired meanwhile
        bal.choose(f"10.2.{i // 256}.{i % 256}")
    assert len(bal._affinity) <= 1000 + 1
    assert not any(ip.startswith("10.1.") for ip in bal._affinity)
    # a client still within its timeout keeps its endpoint through a pruning pass
    first = bal.choose("10.3.0.1")[0]
    now[0] = 15.0
    for i in range(5000):
        bal.choose(f"10.4.{i // 256}.{i % 256}")
    assert bal.choose("10.3.0.1")[0] == first
