"""The cluster DNS on real sockets: ``ClusterDNS`` serving on 127.0.0.1 (a free port, the
same for UDP and TCP), asked by a small client over UDP and TCP and by ``dig`` (Debian's
bind9-dnsutils) as an independent, strict reader of the wire format. Loopback only."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import struct
import subprocess

import pytest

from kubeproxy.dns import SRV, ClusterDNS
from minik8s.cache.store import Store
from test_dns import decode, eps, query, svc


@pytest.fixture
async def running():
    services, endpoints = Store(), Store()
    services.add(svc("web", ip="10.96.0.10"))
    endpoints.add(eps("web", ["10.244.1.2"]))
    services.add(svc("db", ip="None", ports=(("pg", 5432, "TCP"),)))
    endpoints.add(eps("db", [{"ip": "10.244.1.5", "hostname": "db-0"}],
                      ports=(("pg", 5432, "TCP"),)))
    services.add(svc("big", ip="None"))
    endpoints.add(eps("big", [f"10.244.{i // 200}.{i % 200 + 1}" for i in range(120)]))
    server = ClusterDNS(services, endpoints, listen="127.0.0.1", port=0)
    task = asyncio.get_running_loop().create_task(server.start())
    await asyncio.wait_for(server.ready.wait(), 10)
    try:
        yield server, services
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def udp_ask(port: int, msg: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(msg, ("127.0.0.1", port))
        return s.recv(65535)


def tcp_ask(port: int, *msgs: bytes) -> list[bytes]:
    """Several queries on one connection, pipelined; their answers in order."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"".join(struct.pack("!H", len(m)) + m for m in msgs))
        out = []
        f = s.makefile("rb")
        for _ in msgs:
            (n,) = struct.unpack("!H", f.read(2))
            out.append(f.read(n))
        return out


async def test_udp_and_tcp_on_the_same_port(running):
    server, _ = running
    r = decode(await asyncio.to_thread(udp_ask, server.port,
                                       query("web.default.svc.cluster.local", qid=11)))
    assert (r["id"], r["aa"], r["ra"], [x["data"] for x in r["answer"]]) == \
        (11, True, False, ["10.96.0.10"])
    got = await asyncio.to_thread(tcp_ask, server.port,
                                  query("web.default.svc.cluster.local", qid=1),
                                  query("nope.default.svc.cluster.local", qid=2),
                                  query("_pg._tcp.db.default.svc.cluster.local", SRV, qid=3))
    a, b, c = (decode(x) for x in got)
    assert (a["id"], [x["data"] for x in a["answer"]]) == (1, ["10.96.0.10"])
    assert (b["id"], b["rcode"]) == (2, 3)
    assert c["answer"][0]["data"] == (0, 100, 5432, "db-0.db.default.svc.cluster.local")


async def test_garbage_does_not_stop_the_server(running):
    server, _ = running

    def garbage_then_query() -> bytes:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for junk in (b"", b"\x00", b"\xff" * 40, query("web")[:15]):
                s.sendto(junk, ("127.0.0.1", server.port))
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(b"\x00\x05abc")  # a length prefix longer than what follows, then EOF
        return udp_ask(server.port, query("web.default.svc.cluster.local", qid=99))

    r = decode(await asyncio.to_thread(garbage_then_query))
    assert r["id"] == 99 and r["answer"][0]["data"] == "10.96.0.10"


async def test_a_truncated_udp_answer_is_complete_over_tcp(running):
    server, _ = running
    udp = decode(await asyncio.to_thread(udp_ask, server.port,
                                         query("big.default.svc.cluster.local")))
    assert udp["tc"] and len(udp["answer"]) < 120
    (tcp,) = await asyncio.to_thread(tcp_ask, server.port, query("big.default.svc.cluster.local"))
    tcp = decode(tcp)
    assert not tcp["tc"] and len(tcp["answer"]) == 120


async def test_cancel_closes_both_sockets():
    server = ClusterDNS(Store(), Store(), listen="127.0.0.1", port=0)
    task = asyncio.get_running_loop().create_task(server.start())
    await asyncio.wait_for(server.ready.wait(), 10)
    port = server.port
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    # the port can be taken again at once, for UDP and TCP
    again = ClusterDNS(Store(), Store(), listen="127.0.0.1", port=port)
    task = asyncio.get_running_loop().create_task(again.start())
    await asyncio.wait_for(again.ready.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_taken_port_is_an_error():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        server = ClusterDNS(Store(), Store(), listen="127.0.0.1", port=s.getsockname()[1])
        with pytest.raises(OSError):
            await asyncio.wait_for(server.start(), 10)


# --- dig ------------------------------------------------------------------------------------

needs_dig = pytest.mark.skipif(shutil.which("dig") is None,
                               reason="dig is not installed (apt-get install bind9-dnsutils)")


def dig(port: int, *args: str) -> str:
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+time=3", "+tries=1", *args],
                         capture_output=True, text=True, timeout=30)
    assert "WARNING: Message parser reports malformed message" not in out.stdout, out.stdout
    assert ";; Warning" not in out.stdout, out.stdout
    return out.stdout


@needs_dig
async def test_dig_reads_our_answers(running):
    server, services = running
    p = server.port
    out = await asyncio.to_thread(dig, p, "web.default.svc.cluster.local", "A", "+norec")
    assert "status: NOERROR" in out and "flags: qr aa;" in out
    assert re.search(r"^web\.default\.svc\.cluster\.local\.\s+5\s+IN\s+A\s+10\.96\.0\.10$",
                     out, re.M), out
    short = await asyncio.to_thread(dig, p, "+short", "_pg._tcp.db.default.svc.cluster.local",
                                    "SRV")
    assert short.split() == ["0", "100", "5432", "db-0.db.default.svc.cluster.local."]
    out = await asyncio.to_thread(dig, p, "WEB.default.svc.cluster.local", "AAAA")
    assert "status: NOERROR" in out and "ANSWER: 0, AUTHORITY: 1" in out
    assert re.search(r"^cluster\.local\.\s+5\s+IN\s+SOA\s+ns\.dns\.cluster\.local\. "
                     r"hostmaster\.cluster\.local\. \d+ 7200 1800 86400 5$", out, re.M), out
    out = await asyncio.to_thread(dig, p, "nope.default.svc.cluster.local")
    assert "status: NXDOMAIN" in out and "flags: qr aa rd;" in out
    out = await asyncio.to_thread(dig, p, "example.com")
    assert "status: NXDOMAIN" in out and "AUTHORITY: 0" in out
    out = await asyncio.to_thread(dig, p, "+short", "-x", "10.96.0.10")
    assert out.split() == ["web.default.svc.cluster.local."]
    out = await asyncio.to_thread(dig, p, "+tcp", "+short", "db-0.db.default.svc.cluster.local")
    assert out.split() == ["10.244.1.5"]
    # a new Service answers at once
    services.add(svc("late", ip="10.96.7.7"))
    out = await asyncio.to_thread(dig, p, "+short", "late.default.svc.cluster.local")
    assert out.split() == ["10.96.7.7"]


@needs_dig
async def test_dig_retries_a_truncated_answer_over_tcp(running):
    server, _ = running
    out = await asyncio.to_thread(dig, server.port, "+noedns", "big.default.svc.cluster.local")
    assert "Truncated, retrying in TCP mode." in out
    assert "ANSWER: 120," in out and "(TCP)" in out
    out = await asyncio.to_thread(dig, server.port, "+edns=1", "web.default.svc.cluster.local")
    assert "BADVERS, retrying with EDNS version 0." in out and "status: NOERROR" in out
