"""SPDY/3.1 framing (``minik8s.spdy``): every frame type through encode and decode, the shared
zlib header compression with the SPDY/3 dictionary, frames cut at any byte; sessions over an
in-memory transport (open, reply, data, FIN, reset, ping); splice to a loopback socket; the
port arithmetic of ``mkctl port-forward``; the kubelet's port-forward endpoint with a fake
dialer."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import zlib

import pytest

from minik8s import spdy
from minik8s.cli.errors import CliError
from minik8s.cli.portforward import listen_addresses, parse_ports, pod_ports, service_ports


def test_dictionary_is_the_spdy3_one():
    assert len(spdy.DICTIONARY) == 1423
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert spdy.DICTIONARY.endswith(b"utf-,*,enq=0.")


ALL_FRAMES = [
    spdy.SynStream(1, {"streamtype": "error", "port": "80", "requestid": "0"}, priority=5,
                   slot=2, associated_to=0),
    spdy.SynStream(3, {"streamtype": "data"}, flags=spdy.FLAG_FIN | spdy.FLAG_UNIDIRECTIONAL),
    spdy.SynReply(1, {}),
    spdy.SynReply(3, {"status": "200"}, flags=spdy.FLAG_FIN),
    spdy.Headers(1, {"x": "a\x00b"}, flags=spdy.FLAG_FIN),
    spdy.DataFrame(1, b"hello"),
    spdy.DataFrame(1, b"", flags=spdy.FLAG_FIN),
    spdy.RstStream(3, spdy.CANCEL),
    spdy.Settings([(1, 7, 65536), (0, 4, 100)], flags=1),
    spdy.Ping(2),
    spdy.GoAway(5, 0),
    spdy.WindowUpdate(1, 4096),
]


def test_every_frame_round_trips():
    out, into = spdy.Framer(), spdy.Framer()
    wire = b"".join(out.encode(f) for f in ALL_FRAMES)
    assert into.feed(wire) == ALL_FRAMES


def test_frames_cut_at_every_byte():
    out, into = spdy.Framer(), spdy.Framer()
    wire = b"".join(out.encode(f) for f in ALL_FRAMES)
    got = []
    for i in range(len(wire)):
        got += into.feed(wire[i:i + 1])
        if i < len(wire) - 1:
            assert len(got) < len(ALL_FRAMES)
    assert got == ALL_FRAMES


def test_wire_layout_of_control_and_data_frames():
    f = spdy.Framer()
    ping = f.encode(spdy.Ping(7))
    assert ping == b"\x80\x03\x00\x06\x00\x00\x00\x04\x00\x00\x00\x07"
    data = f.encode(spdy.DataFrame(5, b"ab", flags=spdy.FLAG_FIN))
    assert data == b"\x00\x00\x00\x05\x01\x00\x00\x02ab"
    rst = f.encode(spdy.RstStream(3, spdy.CANCEL))
    assert rst == b"\x80\x03\x00\x03\x00\x00\x00\x08\x00\x00\x00\x03\x00\x00\x00\x05"


def test_header_blocks_share_one_zlib_stream_primed_with_the_dictionary():
    f = spdy.Framer()
    headers = {"streamtype": "error", "port": "8080", "requestid": "0"}
    first = f.encode(spdy.SynStream(1, headers))
    second = f.encode(spdy.SynStream(3, headers))
    block = first[18:]
    # zlib header with FDICT set, then the dictionary's Adler-32
    assert block[1] & 0x20
    assert struct.unpack("!I", block[2:6])[0] == zlib.adler32(spdy.DICTIONARY)
    assert len(second) < len(first)  # the second block refers back to the first
    # an independent inflater with the dictionary reads the blocks back in order
    inflate = zlib.decompressobj(zdict=spdy.DICTIONARY)
    assert spdy.decode_header_block(inflate.decompress(block)) == headers
    assert spdy.decode_header_block(inflate.decompress(second[18:])) == headers
    # ... but the second block alone (a fresh inflater) cannot be read
    with pytest.raises(spdy.ProtocolError):
        spdy.Framer().feed(second)


def test_header_block_layout():
    block = spdy.encode_header_block({"Port": "80"})
    assert block == b"\x00\x00\x00\x01\x00\x00\x00\x04port\x00\x00\x00\x0280"
    assert spdy.decode_header_block(block) == {"port": "80"}
    with pytest.raises(spdy.ProtocolError):
        spdy.decode_header_block(block[:-1])
    with pytest.raises(spdy.ProtocolError):
        spdy.decode_header_block(b"\x00\x00\x00\x02" + block[4:] + block[4:])  # duplicate


def test_bad_input_is_a_protocol_error_and_unknown_control_frames_are_skipped():
    with pytest.raises(spdy.ProtocolError):  # SPDY/2
        spdy.Framer().feed(b"\x80\x02\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01")
    with pytest.raises(spdy.ProtocolError):  # garbage header block
        spdy.Framer().feed(b"\x80\x03\x00\x02\x00\x00\x00\x08\x00\x00\x00\x01junk")
    with pytest.raises(spdy.ProtocolError):  # data on stream 0
        spdy.Framer().feed(b"\x00\x00\x00\x00\x00\x00\x00\x00")
    unknown = b"\x80\x03\x00\x0a\x00\x00\x00\x02xy"
    assert spdy.Framer().feed(unknown + spdy.Framer().encode(spdy.Ping(1))) == [spdy.Ping(1)]


# --- sessions ---------------------------------------------------------------------------------


def _pipe():
    """Two byte transports joined back to back: (send, receive) for each end."""
    a_to_b: asyncio.Queue = asyncio.Queue()
    b_to_a: asyncio.Queue = asyncio.Queue()

    async def send_a(data: bytes) -> None:
        await a_to_b.put(data)

    async def send_b(data: bytes) -> None:
        await b_to_a.put(data)
    return (send_a, b_to_a.get), (send_b, a_to_b.get), (a_to_b, b_to_a)


async def test_session_streams_open_reply_data_fin_and_reset():
    (send_c, recv_c), (send_s, recv_s), queues = _pipe()
    accepted: asyncio.Queue = asyncio.Queue()

    async def on_stream(stream: spdy.Stream) -> None:
        if stream.headers.get("streamtype") == "bad":
            await stream.reset(spdy.PROTOCOL_ERROR)
            return
        await stream.reply()
        await accepted.put(stream)

    client = spdy.Session(send_c, server=False)
    server = spdy.Session(send_s, server=True, on_stream=on_stream)
    tasks = [asyncio.create_task(client.run(recv_c)), asyncio.create_task(server.run(recv_s))]
    try:
        s1 = await client.open_stream({"streamtype": "data", "port": "80"})
        assert s1.id == 1
        peer = await accepted.get()
        assert peer.id == 1 and peer.headers == {"streamtype": "data", "port": "80"}
        big = bytes(range(256)) * 1000  # more than one data frame
        await s1.write(big)
        await s1.close()
        assert await peer.read_all() == big
        await peer.write(b"pong")
        await peer.close()
        assert await s1.read_all() == b"pong"
        assert 1 not in client.streams and 1 not in server.streams  # both sides closed

        with pytest.raises(spdy.StreamReset):
            await client.open_stream({"streamtype": "bad"})

        s5 = await client.open_stream({"streamtype": "data"})
        assert s5.id == 5
        peer5 = await accepted.get()
        await s5.reset()
        assert await peer5.read() == b""
        assert peer5.reset_status == spdy.CANCEL
        with pytest.raises(spdy.StreamReset):
            await peer5.write(b"x")

        # the server echoes the client's (odd) pings, not its own
        await send_c(spdy.Framer().encode(spdy.Ping(9)))  # fresh framer: no headers used
        echoed = await asyncio.wait_for(queues[1].get(), 5)
        assert spdy.Framer().feed(echoed) == [spdy.Ping(9)]
    finally:
        await queues[0].put(None)
        await queues[1].put(None)
        await asyncio.gather(*tasks, return_exceptions=True)
    assert client.closed and server.closed


async def test_streams_end_when_the_transport_ends():
    (send_c, recv_c), (send_s, recv_s), queues = _pipe()

    async def on_stream(stream):
        await stream.reply()

    client = spdy.Session(send_c, server=False)
    server = spdy.Session(send_s, server=True, on_stream=on_stream)
    tasks = [asyncio.create_task(client.run(recv_c)), asyncio.create_task(server.run(recv_s))]
    stream = await client.open_stream({"streamtype": "data"})
    await queues[1].put(None)  # the server's side of the transport ends
    await asyncio.wait_for(tasks[0], 5)
    assert await stream.read() == b"" and stream.reset_status is not None
    with pytest.raises(ConnectionError):
        await client.open_stream({"streamtype": "data"})
    await queues[0].put(None)
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_splice_copies_both_ways_with_half_close():
    async def echo(reader, writer):
        data = await reader.read()  # until the half-close
        writer.write(data.upper())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    (send_c, recv_c), (send_s, recv_s), queues = _pipe()
    spliced: list[asyncio.Task] = []

    async def on_stream(stream):
        await stream.reply()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        spliced.append(asyncio.create_task(spdy.splice(stream, reader, writer)))

    client = spdy.Session(send_c, server=False)
    srv = spdy.Session(send_s, server=True, on_stream=on_stream)
    tasks = [asyncio.create_task(client.run(recv_c)), asyncio.create_task(srv.run(recv_s))]
    try:
        stream = await client.open_stream({"streamtype": "data"})
        await stream.write(b"hello ")
        await stream.write(b"world")
        await stream.close()
        assert await stream.read_all() == b"HELLO WORLD"
        await asyncio.wait_for(spliced[0], 5)
    finally:
        server.close()
        await queues[0].put(None)
        await queues[1].put(None)
        await asyncio.gather(*tasks, return_exceptions=True)


# --- mkctl port-forward's ports -----------------------------------------------------------------


POD = {"metadata": {"name": "web"},
       "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]}}
SVC = {"metadata": {"name": "websvc"},
       "spec": {"clusterIP": "10.96.0.20", "ports": [
           {"name": "web", "port": 80, "targetPort": "http"},
           {"name": "alt", "port": 81, "targetPort": 9090},
           {"name": "same", "port": 82}]}}


def test_port_specs():
    assert parse_ports(["8080:80", "80", ":90", "0:91"]) == [
        ("8080", "80"), ("", "80"), ("0", "90"), ("0", "91")]
    with pytest.raises(CliError):
        parse_ports(["x:80"])
    with pytest.raises(CliError):
        parse_ports(["80:"])
    assert pod_ports(POD, [("", "http"), ("9000", "80")]) == [(8080, 8080), (9000, 80)]
    with pytest.raises(CliError, match="does not have a named port 'nope'"):
        pod_ports(POD, [("", "nope")])


def test_service_ports_map_to_target_ports_and_keep_the_service_port_locally():
    assert service_ports(SVC, POD, [("", "80")]) == [(80, 8080)]
    assert service_ports(SVC, POD, [("5000", "81")]) == [(5000, 9090)]
    assert service_ports(SVC, POD, [("", "82")]) == [(82, 82)]
    assert service_ports(SVC, POD, [("", "alt")]) == [(81, 9090)]
    with pytest.raises(CliError, match="does not have a service port 83"):
        service_ports(SVC, POD, [("", "83")])


def test_listen_addresses_default_to_loopback():
    assert listen_addresses(None) == ["127.0.0.1", "::1"]
    assert listen_addresses(["127.0.0.1"]) == ["127.0.0.1"]
    assert listen_addresses(["localhost,10.0.0.1"]) == ["127.0.0.1", "::1", "10.0.0.1"]


# --- the kubelet's endpoint, over the fake runtime ----------------------------------------------


class _Upper(threading.Thread):
    """A loopback TCP server answering each connection's bytes in upper case."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]

    def run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
                conn.sendall(data.upper())


def _read_until(ws, framer, want):
    frames = []
    while not want(frames):
        frames += framer.feed(ws.receive_bytes())
    return frames


async def test_kubelet_forwards_spdy_streams_and_reports_refused_ports():
    from starlette.testclient import TestClient

    from kubelet.runtime.base import (LABEL_KIND, LABEL_NODE, LABEL_POD_NAME,
                                      LABEL_POD_NAMESPACE, LABEL_POD_UID, SANDBOX,
                                      ContainerConfig)
    from kubelet.runtime.fake import FakeRuntime
    from kubelet.server import KubeletServer

    upper = _Upper()
    upper.start()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refused_port = closed.getsockname()[1]
    closed.close()  # nothing listens there now

    rt = FakeRuntime(images={"pause": "sha256:1"})
    cid = await rt.create(ContainerConfig(name="web-sandbox", image="pause", labels={
        LABEL_NODE: "n1", LABEL_POD_NAMESPACE: "default", LABEL_POD_NAME: "web",
        LABEL_POD_UID: "u1", LABEL_KIND: SANDBOX}))
    await rt.start(cid)
    dialled = []

    async def dial(sandbox, port):
        dialled.append((sandbox.name, sandbox.uid, port))
        return await asyncio.open_connection("127.0.0.1", upper.port if port == 80
                                             else refused_port)

    app = KubeletServer("n1", rt, stats=None, dial=dial).app
    with TestClient(app) as tc:
        with pytest.raises(Exception):  # an unknown pod is refused before the upgrade
            with tc.websocket_connect("/portForward/default/nope",
                                      subprotocols=[spdy.TUNNEL_PROTOCOL]):
                pass
        with tc.websocket_connect("/portForward/default/web",
                                  subprotocols=[spdy.TUNNEL_PROTOCOL]) as ws:
            assert ws.accepted_subprotocol == spdy.TUNNEL_PROTOCOL
            out, into = spdy.Framer(), spdy.Framer()
            send = lambda f: ws.send_bytes(out.encode(f))  # noqa: E731
            head = {"port": "80", "requestid": "0"}
            send(spdy.SynStream(1, {"streamtype": "error", **head}))
            send(spdy.DataFrame(1, b"", spdy.FLAG_FIN))
            send(spdy.SynStream(3, {"streamtype": "data", **head}))
            send(spdy.DataFrame(3, b"hello"))
            send(spdy.DataFrame(3, b"", spdy.FLAG_FIN))
            frames = _read_until(ws, into, lambda fs: any(
                isinstance(f, spdy.DataFrame) and f.stream_id == 1 and f.flags & 1
                for f in fs))
            assert [f.stream_id for f in frames if isinstance(f, spdy.SynReply)] == [1, 3]
            data = b"".join(f.data for f in frames
                            if isinstance(f, spdy.DataFrame) and f.stream_id == 3)
            assert data == b"HELLO"
            assert b"".join(f.data for f in frames if isinstance(f, spdy.DataFrame)
                            and f.stream_id == 1) == b""

            # a port with nothing listening: the message comes on the error stream
            head = {"port": "81", "requestid": "1"}
            send(spdy.SynStream(5, {"streamtype": "error", **head}))
            send(spdy.SynStream(7, {"streamtype": "data", **head}))
            frames = _read_until(ws, into, lambda fs: any(
                isinstance(f, spdy.DataFrame) and f.stream_id == 5 and f.flags & 1
                for f in fs))
            message = b"".join(f.data for f in frames
                               if isinstance(f, spdy.DataFrame) and f.stream_id == 5)
            assert message.startswith(b"error forwarding port 81 to pod web, uid u1:")
            assert b"connection refused" in message

            # a stream without a port header is reset
            send(spdy.SynStream(9, {"streamtype": "data"}))
            frames = _read_until(ws, into, lambda fs: any(
                isinstance(f, spdy.RstStream) for f in fs))
            assert [f for f in frames if isinstance(f, spdy.RstStream)] == [
                spdy.RstStream(9, spdy.PROTOCOL_ERROR)]
    assert dialled == [("web", "u1", 80), ("web", "u1", 81)]
    upper.sock.close()
