"""SPDY/3.1 framing and sessions, the multiplexing under ``kubectl port-forward``.

kubectl 1.31+ opens ``pods/{name}/portforward`` as a WebSocket with the subprotocol
``SPDY/3.1+portforward.k8s.io`` and speaks SPDY/3.1 inside it, the raw bytes carried in
binary messages with no framing of their own (client-go ``tunneling_connection.go``); older
clients upgrade the HTTP connection to SPDY directly. Either way the peer is moby/spdystream,
so this module does what spdystream does and no more:

- frames as in the SPDY/3 draft: control frames (bit 31 set, version 3, a 16-bit type, flags
  and a 24-bit length) and data frames (a 31-bit stream id, flags, length);
- the name/value header blocks of SYN_STREAM, SYN_REPLY and HEADERS compressed with ONE zlib
  stream per direction for the whole connection, primed with the SPDY/3 dictionary and
  sync-flushed after each block. Because the state is shared, frames must be encoded in the
  order they are sent (``Session`` holds a lock over encode+send);
- no flow control: spdystream never sends WINDOW_UPDATE and ignores the ones it gets, so a
  sender that waited for window would stall after 64 KiB. WINDOW_UPDATE and SETTINGS are
  parsed and ignored; back-pressure comes from the transport (a bounded queue per stream);
- streams opened by the client are odd, by the server even; a stream is usable once the
  opener has the SYN_REPLY (spdystream drops data on a stream it has not replied to);
  PINGs with the peer's parity are echoed; GOAWAY stops new streams.

The port-forward conventions on top (``streamtype``/``port``/``requestid`` headers, one error
stream and one data stream per forwarded connection) live with their users:
``kubelet.server`` and ``minik8s.cli.portforward``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import zlib
from dataclasses import dataclass, field
from typing import Awaitable, Callable

log = logging.getLogger(__name__)

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS = 1, 2, 3, 4
PING, GOAWAY, HEADERS, WINDOW_UPDATE = 6, 7, 8, 9
FLAG_FIN, FLAG_UNIDIRECTIONAL = 0x01, 0x02

# RST_STREAM status codes
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM, UNSUPPORTED_VERSION = 1, 2, 3, 4
CANCEL, INTERNAL_ERROR, FLOW_CONTROL_ERROR, STREAM_IN_USE = 5, 6, 7, 8
STREAM_ALREADY_CLOSED = 9

MAX_LENGTH = (1 << 24) - 1
MAX_HEADER_BLOCK = 1 << 20  # decompressed; more is an attack, not a port-forward
CHUNK = 32 * 1024  # largest data frame we send (what Go's io.Copy writes at once)

# Port forwarding over SPDY (k8s.io/api/core/v1 constants; client-go portforward).
PORT_FORWARD_PROTOCOL = "portforward.k8s.io"
TUNNEL_PREFIX = "SPDY/3.1+"
TUNNEL_PROTOCOL = TUNNEL_PREFIX + PORT_FORWARD_PROTOCOL
HEADER_STREAM_TYPE, HEADER_PORT, HEADER_REQUEST_ID = "streamtype", "port", "requestid"
STREAM_TYPE_ERROR, STREAM_TYPE_DATA = "error", "data"


def _dictionary() -> bytes:
    """The SPDY/3 header dictionary (draft 3, section 2.6.10.1): 1423 bytes, as Go's
    ``headerDictionary`` has it (length-prefixed words, then a tail with no NUL)."""
    words = ("options head post put delete trace accept accept-charset accept-encoding "
             "accept-language accept-ranges age allow authorization cache-control connection "
             "content-base content-encoding content-language content-length content-location "
             "content-md5 content-range content-type date etag expect expires from host "
             "if-match if-modified-since if-none-match if-range if-unmodified-since "
             "last-modified location max-forwards pragma proxy-authenticate "
             "proxy-authorization range referer retry-after server te trailer "
             "transfer-encoding upgrade user-agent vary via warning www-authenticate method "
             "get status").split()
    words += ["200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive",
              "origin"]
    tail = ("100101201202205206300302303304305306307402405406407408409410411412413414415416"
            "417502504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
            "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server "
            "Error501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug "
            "Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,"
            "text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,"
            "text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8"
            "charset=iso-8859-1,utf-,*,enq=0.")
    return b"".join(struct.pack("!I", len(w)) + w.encode() for w in words) + tail.encode()


DICTIONARY = _dictionary()


class ProtocolError(Exception):
    """The peer sent something that is not SPDY/3; the session cannot go on."""


# --------------------------------------------------------------------------- frames


@dataclass
class DataFrame:
    stream_id: int
    data: bytes = b""
    flags: int = 0


@dataclass
class SynStream:
    stream_id: int
    headers: dict[str, str] = field(default_factory=dict)
    flags: int = 0
    associated_to: int = 0
    priority: int = 0  # 3 bits
    slot: int = 0


@dataclass
class SynReply:
    stream_id: int
    headers: dict[str, str] = field(default_factory=dict)
    flags: int = 0


@dataclass
class Headers:
    stream_id: int
    headers: dict[str, str] = field(default_factory=dict)
    flags: int = 0


@dataclass
class RstStream:
    stream_id: int
    status: int = CANCEL


@dataclass
class Settings:
    entries: list[tuple[int, int, int]] = field(default_factory=list)  # (flags, id, value)
    flags: int = 0


@dataclass
class Ping:
    id: int


@dataclass
class GoAway:
    last_good_stream_id: int = 0
    status: int = 0


@dataclass
class WindowUpdate:
    stream_id: int
    delta: int


Frame = (DataFrame | SynStream | SynReply | Headers | RstStream | Settings | Ping | GoAway
         | WindowUpdate)


def encode_header_block(headers: dict[str, str]) -> bytes:
    """The uncompressed name/value block: a count, then length-prefixed names (lower case)
    and values (several values of one name are joined by NUL on the wire)."""
    out = [struct.pack("!I", len(headers))]
    for name, value in headers.items():
        n, v = name.lower().encode(), str(value).encode()
        out += [struct.pack("!I", len(n)), n, struct.pack("!I", len(v)), v]
    return b"".join(out)


def decode_header_block(block: bytes) -> dict[str, str]:
    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(block):
            raise ProtocolError("truncated header block")
        chunk = block[pos:pos + n]
        pos += n
        return chunk

    pos = 0
    count, = struct.unpack("!I", take(4))
    headers: dict[str, str] = {}
    for _ in range(count):
        name = take(struct.unpack("!I", take(4))[0]).decode("utf-8", "replace").lower()
        value = take(struct.unpack("!I", take(4))[0]).decode("utf-8", "replace")
        if name in headers:
            raise ProtocolError(f"duplicate header {name!r}")
        headers[name] = value
    if pos != len(block):
        raise ProtocolError("trailing bytes after the header block")
    return headers


class Framer:
    """Encodes and decodes the frames of one connection. It keeps the two zlib streams of
    the header blocks (one per direction) and the bytes of a frame not complete yet, so
    ``feed`` takes the transport's bytes however they were cut."""

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY,
                                         DICTIONARY)
        self._inflate = zlib.decompressobj(15, DICTIONARY)
        self._buffer = bytearray()

    # --- encoding ----------------------------------------------------------------------

    def _compress(self, headers: dict[str, str]) -> bytes:
        block = encode_header_block(headers)
        return self._deflate.compress(block) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    @staticmethod
    def _control(kind: int, flags: int, payload: bytes) -> bytes:
        if len(payload) > MAX_LENGTH:
            raise ValueError("control frame too large")
        return struct.pack("!HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + \
            payload

    def encode(self, frame: Frame) -> bytes:
        if isinstance(frame, DataFrame):
            if len(frame.data) > MAX_LENGTH:
                raise ValueError("data frame too large")
            return struct.pack("!II", frame.stream_id & 0x7FFFFFFF,
                               (frame.flags << 24) | len(frame.data)) + frame.data
        if isinstance(frame, SynStream):
            head = struct.pack("!IIBB", frame.stream_id & 0x7FFFFFFF,
                               frame.associated_to & 0x7FFFFFFF, (frame.priority & 7) << 5,
                               frame.slot)
            return self._control(SYN_STREAM, frame.flags, head + self._compress(frame.headers))
        if isinstance(frame, SynReply):
            return self._control(SYN_REPLY, frame.flags, struct.pack(
                "!I", frame.stream_id & 0x7FFFFFFF) + self._compress(frame.headers))
        if isinstance(frame, Headers):
            return self._control(HEADERS, frame.flags, struct.pack(
                "!I", frame.stream_id & 0x7FFFFFFF) + self._compress(frame.headers))
        if isinstance(frame, RstStream):
            return self._control(RST_STREAM, 0, struct.pack(
                "!II", frame.stream_id & 0x7FFFFFFF, frame.status))
        if isinstance(frame, Settings):
            body = struct.pack("!I", len(frame.entries)) + b"".join(
                struct.pack("!II", ((flags & 0xFF) << 24) | (ident & 0xFFFFFF), value)
                for flags, ident, value in frame.entries)
            return self._control(SETTINGS, frame.flags, body)
        if isinstance(frame, Ping):
            return self._control(PING, 0, struct.pack("!I", frame.id))
        if isinstance(frame, GoAway):
            return self._control(GOAWAY, 0, struct.pack(
                "!II", frame.last_good_stream_id & 0x7FFFFFFF, frame.status))
        if isinstance(frame, WindowUpdate):
            return self._control(WINDOW_UPDATE, 0, struct.pack(
                "!II", frame.stream_id & 0x7FFFFFFF, frame.delta & 0x7FFFFFFF))
        raise TypeError(f"not a SPDY frame: {frame!r}")

    # --- decoding ----------------------------------------------------------------------

    def feed(self, data: bytes) -> list[Frame]:
        """Every frame the bytes so far complete (possibly none)."""
        self._buffer += data
        frames: list[Frame] = []
        while len(self._buffer) >= 8:
            length = int.from_bytes(self._buffer[5:8], "big")
            if len(self._buffer) < 8 + length:
                break
            head = bytes(self._buffer[:8])
            payload = bytes(self._buffer[8:8 + length])
            del self._buffer[:8 + length]
            frame = self._parse(head, payload)
            if frame is not None:
                frames.append(frame)
        return frames

    def _decompress(self, data: bytes) -> dict[str, str]:
        try:
            block = self._inflate.decompress(data, MAX_HEADER_BLOCK)
        except zlib.error as exc:
            raise ProtocolError(f"header block does not decompress: {exc}") from None
        if self._inflate.unconsumed_tail:
            raise ProtocolError("header block too large")
        return decode_header_block(block)

    def _parse(self, head: bytes, payload: bytes) -> Frame | None:
        first, flags = struct.unpack("!I", head[:4])[0], head[4]
        if not first & 0x80000000:
            stream_id = first & 0x7FFFFFFF
            if stream_id == 0:
                raise ProtocolError("data frame on stream 0")
            return DataFrame(stream_id, payload, flags)
        version, kind = (first >> 16) & 0x7FFF, first & 0xFFFF
        if version != VERSION:
            raise ProtocolError(f"unsupported SPDY version {version}")

        def need(n: int) -> None:
            if len(payload) < n:
                raise ProtocolError(f"control frame {kind} too short")

        if kind == SYN_STREAM:
            need(10)
            sid, assoc, pri, slot = struct.unpack("!IIBB", payload[:10])
            if not sid & 0x7FFFFFFF:
                raise ProtocolError("SYN_STREAM for stream 0")
            return SynStream(sid & 0x7FFFFFFF, self._decompress(payload[10:]), flags,
                             assoc & 0x7FFFFFFF, pri >> 5, slot)
        if kind in (SYN_REPLY, HEADERS):
            need(4)
            sid = struct.unpack("!I", payload[:4])[0] & 0x7FFFFFFF
            cls = SynReply if kind == SYN_REPLY else Headers
            return cls(sid, self._decompress(payload[4:]), flags)
        if kind == RST_STREAM:
            need(8)
            sid, status = struct.unpack("!II", payload[:8])
            return RstStream(sid & 0x7FFFFFFF, status)
        if kind == SETTINGS:
            need(4)
            count = struct.unpack("!I", payload[:4])[0]
            need(4 + 8 * count)
            entries = []
            for i in range(count):
                word, value = struct.unpack("!II", payload[4 + 8 * i:12 + 8 * i])
                entries.append((word >> 24, word & 0xFFFFFF, value))
            return Settings(entries, flags)
        if kind == PING:
            need(4)
            return Ping(struct.unpack("!I", payload[:4])[0])
        if kind == GOAWAY:
            need(4)
            last = struct.unpack("!I", payload[:4])[0] & 0x7FFFFFFF
            status = struct.unpack("!I", payload[4:8])[0] if len(payload) >= 8 else 0
            return GoAway(last, status)
        if kind == WINDOW_UPDATE:
            need(8)
            sid, delta = struct.unpack("!II", payload[:8])
            return WindowUpdate(sid & 0x7FFFFFFF, delta & 0x7FFFFFFF)
        return None  # unknown control frames are ignored (SPDY/3 section 2.2.1)


# --------------------------------------------------------------------------- sessions


class StreamReset(ConnectionError):
    """The stream was reset (by the peer, or because the session ended)."""


class Stream:
    """One bidirectional stream. ``read`` returns b"" once the peer half-closed it (FIN) or
    it was reset; ``write``/``close`` send data and our FIN."""

    def __init__(self, session: Session, stream_id: int, headers: dict[str, str]):
        self.session = session
        self.id = stream_id
        self.headers = headers
        self.remote_closed = False  # FIN or RST seen
        self.local_closed = False  # our FIN sent
        self.reset_status: int | None = None
        self.replied = asyncio.Event()
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)
        self._eof = False

    def __repr__(self) -> str:
        return f"<Stream {self.id} {self.headers}>"

    async def read(self) -> bytes:
        if self._eof:
            return b""
        chunk = await self._queue.get()
        if not chunk:
            self._eof = True
        return chunk

    async def read_all(self) -> bytes:
        out = bytearray()
        while chunk := await self.read():
            out += chunk
        return bytes(out)

    async def write(self, data: bytes) -> None:
        if self.reset_status is not None:
            raise StreamReset(f"stream {self.id} was reset")
        if self.local_closed:
            raise StreamReset(f"stream {self.id} is closed for writing")
        for i in range(0, len(data), CHUNK):
            await self.session.send(DataFrame(self.id, data[i:i + CHUNK]))

    async def close(self) -> None:
        """Half-close: no more data from us (an empty data frame with FIN)."""
        if self.local_closed or self.reset_status is not None or self.session.closed:
            return
        self.local_closed = True
        with contextlib.suppress(ConnectionError):
            await self.session.send(DataFrame(self.id, b"", FLAG_FIN))
        self.session._maybe_forget(self)

    async def reset(self, status: int = CANCEL) -> None:
        if self.reset_status is not None:
            return
        self._reset(status)
        if not self.session.closed:
            with contextlib.suppress(ConnectionError):
                await self.session.send(RstStream(self.id, status))

    async def reply(self, headers: dict[str, str] | None = None) -> None:
        """Accept a stream the peer opened (SYN_REPLY)."""
        await self.session.send(SynReply(self.id, headers or {}))
        self.replied.set()

    # --- driven by the session ---------------------------------------------------------

    async def _deliver(self, data: bytes) -> None:
        if self.remote_closed or not data:
            return
        await self._queue.put(data)

    def _finish(self) -> None:
        if not self.remote_closed:
            self.remote_closed = True
            self._push_eof()

    def _reset(self, status: int) -> None:
        self.reset_status = status
        self.local_closed = True
        self.replied.set()
        self._finish()
        self.session._maybe_forget(self)

    def _push_eof(self) -> None:
        # An EOF must never wait behind a full queue (the reader may be gone): drop what
        # nobody will read rather than block the whole session.
        while True:
            try:
                self._queue.put_nowait(b"")
                return
            except asyncio.QueueFull:
                with contextlib.suppress(asyncio.QueueEmpty):
                    self._queue.get_nowait()


Send = Callable[[bytes], Awaitable[None]]
Receive = Callable[[], Awaitable[bytes | None]]
StreamHandler = Callable[[Stream], Awaitable[None]]


class Session:
    """One SPDY connection over any byte transport: ``send(bytes)`` to write, and ``run``
    with a ``receive()`` that returns the next bytes (None at the end). ``on_stream``
    is awaited (in the reader) for each stream the peer opens; it must ``reply()`` or
    ``reset()`` quickly and hand longer work to a task."""

    def __init__(self, send: Send, *, server: bool, on_stream: StreamHandler | None = None):
        self._send_bytes = send
        self.server = server
        self.on_stream = on_stream
        self.framer = Framer()
        self.streams: dict[int, Stream] = {}
        self._next_id = 2 if server else 1
        self._last_remote_id = 0
        self._write_lock = asyncio.Lock()
        self.closed = False
        self.goaway_received = False
        self.done = asyncio.Event()

    async def send(self, frame: Frame) -> None:
        if self.closed:
            raise ConnectionError("the SPDY session is closed")
        async with self._write_lock:  # encode order == send order (shared zlib state)
            await self._send_bytes(self.framer.encode(frame))

    async def open_stream(self, headers: dict[str, str], *, timeout: float = 30.0) -> Stream:
        """Open a stream and wait for the peer's SYN_REPLY."""
        if self.closed or self.goaway_received:
            raise ConnectionError("the SPDY session is closed")
        stream_id = self._next_id
        self._next_id += 2
        stream = Stream(self, stream_id, dict(headers))
        self.streams[stream_id] = stream
        await self.send(SynStream(stream_id, stream.headers))
        try:
            await asyncio.wait_for(stream.replied.wait(), timeout)
        except asyncio.TimeoutError:
            await stream.reset(CANCEL)
            raise TimeoutError(f"timed out waiting for the reply to stream {stream_id}") \
                from None
        if stream.reset_status is not None:
            raise StreamReset(f"stream {stream_id} was refused (status "
                              f"{stream.reset_status})")
        return stream

    async def run(self, receive: Receive) -> None:
        """Read and dispatch frames until the transport ends; then every stream ends."""
        try:
            while True:
                data = await receive()
                if data is None:
                    return
                if not data:  # Go's tunnel writes empty messages for empty frame bodies
                    continue
                for frame in self.framer.feed(data):
                    await self._dispatch(frame)
        finally:
            self._shutdown()

    async def goaway(self) -> None:
        if not self.closed:
            with contextlib.suppress(ConnectionError):
                await self.send(GoAway(self._last_remote_id, 0))

    def _shutdown(self) -> None:
        self.closed = True
        for stream in list(self.streams.values()):
            stream._reset(CANCEL)
        self.streams.clear()
        self.done.set()

    def _maybe_forget(self, stream: Stream) -> None:
        if stream.local_closed and stream.remote_closed:
            self.streams.pop(stream.id, None)

    async def _dispatch(self, frame: Frame) -> None:
        if isinstance(frame, DataFrame):
            stream = self.streams.get(frame.stream_id)
            if stream is None:
                return  # gone already (reset or both sides closed)
            await stream._deliver(frame.data)
            if frame.flags & FLAG_FIN:
                stream._finish()
                self._maybe_forget(stream)
        elif isinstance(frame, SynStream):
            await self._new_stream(frame)
        elif isinstance(frame, SynReply):
            stream = self.streams.get(frame.stream_id)
            if stream is not None:
                stream.replied.set()
                if frame.flags & FLAG_FIN:
                    stream._finish()
                    self._maybe_forget(stream)
        elif isinstance(frame, Headers):
            stream = self.streams.get(frame.stream_id)
            if stream is not None and frame.flags & FLAG_FIN:
                stream._finish()
                self._maybe_forget(stream)
        elif isinstance(frame, RstStream):
            stream = self.streams.get(frame.stream_id)
            if stream is not None:
                stream._reset(frame.status)
        elif isinstance(frame, Ping):
            if (frame.id & 1) != (0 if self.server else 1):  # the peer's: echo it
                await self.send(frame)
        elif isinstance(frame, GoAway):
            self.goaway_received = True
        # SETTINGS and WINDOW_UPDATE: no flow control here (see the module docstring)

    async def _new_stream(self, frame: SynStream) -> None:
        sid = frame.stream_id
        expected_parity = 1 if self.server else 0
        if sid % 2 != expected_parity or sid <= self._last_remote_id:
            await self.send(RstStream(sid, PROTOCOL_ERROR))
            return
        self._last_remote_id = sid
        stream = Stream(self, sid, frame.headers)
        if frame.flags & FLAG_UNIDIRECTIONAL:
            stream.local_closed = True
        self.streams[sid] = stream
        if frame.flags & FLAG_FIN:
            stream._finish()
        if self.on_stream is None:
            await stream.reset(REFUSED_STREAM)
            return
        await self.on_stream(stream)




# --------------------------------------------------------------------------- stream <-> socket


async def splice(stream: Stream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 *, close_on_remote_eof: bool = False) -> None:
    """Copy both ways between a stream and a TCP connection until both directions ended
    (each end's EOF passed on as the other's half-close), or one side failed or was reset.

    ``close_on_remote_eof`` is kubectl's client behaviour: once the remote side finished
    sending, close the local connection and reset the stream instead of waiting for the
    local side to finish too."""
    async def to_socket() -> str:
        while chunk := await stream.read():
            writer.write(chunk)
            await writer.drain()
        if stream.reset_status is not None:
            return "reset"
        if close_on_remote_eof:
            return "stop"
        if writer.can_write_eof():
            with contextlib.suppress(OSError):
                writer.write_eof()
        return "eof"

    async def to_stream() -> str:
        while chunk := await reader.read(CHUNK):
            await stream.write(chunk)
        await stream.close()
        return "eof"

    tasks = {asyncio.create_task(to_socket()), asyncio.create_task(to_stream())}
    failed = False
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if any(t.exception() is not None or t.result() != "eof" for t in done):
                failed = any(t.exception() is not None or t.result() == "reset" for t in done)
                break
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    if failed or close_on_remote_eof:
        await stream.reset(CANCEL)


__all__ = ["Session", "Stream", "StreamReset", "Framer", "ProtocolError", "DICTIONARY",
           "DataFrame", "SynStream", "SynReply", "Headers", "RstStream", "Settings", "Ping",
           "GoAway", "WindowUpdate", "encode_header_block", "decode_header_block",
           "FLAG_FIN", "FLAG_UNIDIRECTIONAL", "CANCEL", "PROTOCOL_ERROR", "REFUSED_STREAM",
           "INTERNAL_ERROR", "TUNNEL_PROTOCOL", "TUNNEL_PREFIX", "PORT_FORWARD_PROTOCOL",
           "HEADER_STREAM_TYPE", "HEADER_PORT", "HEADER_REQUEST_ID", "STREAM_TYPE_ERROR",
           "STREAM_TYPE_DATA", "splice"]
