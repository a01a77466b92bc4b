"""Decoding ``application/vnd.kubernetes.protobuf`` request bodies into JSON-shaped dicts.

kubectl 1.32's typed generators (``create namespace|configmap|secret|deployment|job|...``)
send their object as protobuf; everything else in the API server works on the dict that the
JSON body would have produced. So this module turns the protobuf body into exactly that
dict -- what kubectl would have sent as JSON -- and the request then takes the JSON path
unchanged (defaults, validation, ``fieldValidation``, admission, storage).

The wire format is Kubernetes' envelope: the magic ``k8s\\x00``, then a ``runtime.Unknown``
(typeMeta, raw, contentEncoding, contentType) whose ``raw`` is the object's own message. The
field numbers come from ``minik8s.api.protobuf_table`` (generated from the upstream
``generated.proto`` files). Decoding follows protobuf's rules: unknown field numbers are
skipped, a repeated embedded message field is merged, packed and unpacked repeated scalars
are both accepted. JSON's ``omitempty`` is mirrored: Go writes every non-pointer scalar to
the wire, zero or not, so a zero of such a field is dropped, while a pointer field (known
from the table) keeps its zero. Any malformed input is a 400 BadRequest naming the field.

Responses stay JSON: kubectl accepts ``application/vnd.kubernetes.protobuf,application/json``
and reads whichever content type comes back.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import struct
from typing import Any

from minik8s.api.errors import BadRequest
from minik8s.api.protobuf_table import INLINED, KINDS, MESSAGES, POINTER, REPEATED

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_VARINT_TYPES = frozenset({"bool", "int32", "int64", "uint32", "uint64", "sint32", "sint64"})
_WIRE = {**{t: _VARINT for t in _VARINT_TYPES}, "double": _I64, "fixed64": _I64,
         "sfixed64": _I64, "float": _I32, "fixed32": _I32, "sfixed32": _I32}
_FIXED = {"double": "<d", "float": "<f", "fixed64": "<Q", "sfixed64": "<q",
          "fixed32": "<I", "sfixed32": "<i"}
_ZERO = (0, 0.0, False, "")
_MAX_DEPTH = 64  # the table has no recursive message; this bounds hand-made input anyway


class ProtobufError(ValueError):
    """The body is not valid protobuf for the message it claims to be."""


def decode_object(body: bytes) -> dict[str, Any]:
    """The JSON-shaped object of a Kubernetes protobuf body. Raises BadRequest."""
    try:
        return _decode_envelope(body)
    except ProtobufError as exc:
        raise BadRequest(f"the body of the request could not be decoded as "
                         f"{MEDIA_TYPE}: {exc}") from None


def _decode_envelope(body: bytes) -> dict[str, Any]:
    if not body.startswith(MAGIC):
        raise ProtobufError("it does not start with the 'k8s\\x00' prefix")
    api_version = kind = encoding = content_type = ""
    raw = b""
    for number, wire, value in _fields(body, len(MAGIC)):
        if number == 1:
            _expect(wire, _LEN, "typeMeta")
            for n, w, v in _fields(value):
                if n in (1, 2):
                    _expect(w, _LEN, "typeMeta")
                    if n == 1:
                        api_version = _text(v, "apiVersion")
                    else:
                        kind = _text(v, "kind")
        elif number == 2:
            _expect(wire, _LEN, "raw")
            raw = value
        elif number == 3:
            _expect(wire, _LEN, "contentEncoding")
            encoding = _text(value, "contentEncoding")
        elif number == 4:
            _expect(wire, _LEN, "contentType")
            content_type = _text(value, "contentType")
    if encoding:
        raise ProtobufError(f"contentEncoding {encoding!r} is not supported")
    if content_type not in ("", MEDIA_TYPE):
        raise ProtobufError(f"contentType {content_type!r} is not supported")
    if not api_version or not kind:
        raise ProtobufError("the envelope has no apiVersion and kind")
    message = KINDS.get(f"{api_version}/{kind}")
    if message is None:
        raise ProtobufError(f'no kind "{kind}" is registered for version "{api_version}"')
    obj: dict[str, Any] = {"kind": kind, "apiVersion": api_version}
    obj.update(decode_message(raw, message))
    return obj


def decode_message(buf: bytes, message: str, path: str = "", depth: int = 0) -> dict[str, Any]:
    """One message of the table as a JSON-shaped dict (ProtobufError when malformed)."""
    if depth > _MAX_DEPTH:
        raise ProtobufError(f"{path or 'the object'} is nested too deeply")
    spec = MESSAGES[message]
    out: dict[str, Any] = {}
    chunks: dict[int, list[bytes]] = {}  # non-repeated messages: merged as protobuf does
    for number, wire, value in _fields(buf):
        field = spec.get(number)
        if field is None:
            continue  # unknown to us: skipped, as any protobuf reader does
        name, typ, flags = field
        where = f"{path}.{name}" if path else name
        if typ.startswith("map:"):
            _expect(wire, _LEN, where)
            key, item = _map_entry(value, typ[4:], where, depth)
            out.setdefault(name, {})[key] = item
        elif _is_scalar(typ):
            if flags & REPEATED:
                out.setdefault(name, []).extend(_scalars(wire, value, typ, where))
            else:
                out[name] = _scalar(wire, value, typ, where)
        else:
            _expect(wire, _LEN, where)
            if flags & REPEATED:
                out.setdefault(name, []).append(
                    _value(value, typ, f"{where}[{len(out.get(name, []))}]", depth))
            else:
                chunks.setdefault(number, []).append(value)
    for number, parts in chunks.items():
        name, typ, flags = spec[number]
        where = f"{path}.{name}" if path else name
        value = _value(b"".join(parts), typ, where, depth)
        if flags & INLINED:
            out.update(value)
        else:  # None: an empty Time or RawExtension, which Go's JSON writes as null
            out[name] = value
    for number, (name, typ, flags) in spec.items():
        if (_is_scalar(typ) and not flags & (POINTER | REPEATED | INLINED)
                and name in out and out[name] in _ZERO):
            del out[name]  # Go's omitempty: a non-pointer zero is "not set"
    return out


def _is_scalar(typ: str) -> bool:
    return typ in _WIRE or typ in ("string", "bytes")


def _value(buf: bytes, typ: str, where: str, depth: int) -> Any:
    """A length-delimited value of a message type (table message or special form)."""
    if typ in MESSAGES:
        return decode_message(buf, typ, where, depth + 1)
    if typ in ("time", "microtime"):
        return _time(buf, where, micro=typ == "microtime")
    if typ == "intstr":
        return _int_or_string(buf, where)
    if typ == "quantity":
        return _single_string(buf, where)
    if typ == "rawjson":
        raw = b"".join(_bytes_field(buf, 1, where))
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise ProtobufError(f"{where}: the embedded object is not JSON") from None
    if typ == "stringlist":
        return [_text(v, where) for v in _bytes_field(buf, 1, where)]
    if typ == "duration":
        values = [v for n, w, v in _fields(buf) if n == 1 and _expect(w, _VARINT, where)]
        return _go_duration(_signed(values[-1], 64)) if values else "0s"
    raise ProtobufError(f"{where}: no decoder for type {typ}")


def _map_entry(buf: bytes, typ: str, where: str, depth: int) -> tuple[str, Any]:
    key, item, parts = "", None, []
    for number, wire, value in _fields(buf):
        if number == 1:
            _expect(wire, _LEN, where)
            key = _text(value, where)
        elif number == 2:
            if _is_scalar(typ):
                item = _scalar(wire, value, typ, f"{where}[{key}]")
            else:
                _expect(wire, _LEN, where)
                parts.append(value)
    if _is_scalar(typ):
        if item is None:
            item = "" if typ in ("string", "bytes") else False if typ == "bool" else 0
        return key, item
    return key, _value(b"".join(parts), typ, f"{where}[{key}]", depth)


def _scalar(wire: int, value: Any, typ: str, where: str) -> Any:
    if typ == "string":
        _expect(wire, _LEN, where)
        return _text(value, where)
    if typ == "bytes":
        _expect(wire, _LEN, where)
        return base64.b64encode(value).decode("ascii")
    _expect(wire, _WIRE[typ], where)
    return _convert(value, typ)


def _scalars(wire: int, value: Any, typ: str, where: str) -> list[Any]:
    """The items of one occurrence of a repeated scalar: packed (one length-delimited run)
    or not (one item)."""
    if typ in _WIRE and wire == _LEN:
        items, pos = [], 0
        size = {_I64: 8, _I32: 4}.get(_WIRE[typ])
        while pos < len(value):
            if size is None:
                item, pos = _varint(value, pos)
            else:
                if pos + size > len(value):
                    raise ProtobufError(f"{where}: truncated packed values")
                item, pos = value[pos:pos + size], pos + size
            items.append(_convert(item, typ))
        return items
    return [_scalar(wire, value, typ, where)]


def _convert(value: Any, typ: str) -> Any:
    if typ == "bool":
        return value != 0
    if typ == "int32":  # negative int32s are sign-extended to ten varint bytes
        return _signed(value, 32)
    if typ == "int64":
        return _signed(value, 64)
    if typ == "uint32":
        return value & 0xFFFFFFFF
    if typ == "uint64":
        return value
    if typ in ("sint32", "sint64"):  # zigzag
        return (value >> 1) ^ -(value & 1)
    return struct.unpack(_FIXED[typ], value)[0]


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _time(buf: bytes, where: str, *, micro: bool) -> str | None:
    """metav1.Time/MicroTime: {seconds, nanos}. An empty message is Go's zero time (null)."""
    if not buf:
        return None
    seconds = nanos = 0
    for number, wire, value in _fields(buf):
        if number == 1:
            _expect(wire, _VARINT, where)
            seconds = _signed(value, 64)
        elif number == 2:
            _expect(wire, _VARINT, where)
            nanos = _signed(value & 0xFFFFFFFF, 32)
    if not 0 <= nanos < 1_000_000_000:
        raise ProtobufError(f"{where}: nanos out of range")
    try:
        when = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc) + \
            _dt.timedelta(seconds=seconds)
    except OverflowError:
        raise ProtobufError(f"{where}: time out of range") from None
    text = (f"{when.year:04d}-{when.month:02d}-{when.day:02d}T"
            f"{when.hour:02d}:{when.minute:02d}:{when.second:02d}")
    if micro:
        text += f".{nanos // 1000:06d}"
    return text + "Z"


def _int_or_string(buf: bytes, where: str) -> int | str:
    kind, int_val, str_val = 0, 0, ""
    for number, wire, value in _fields(buf):
        if number == 1:
            _expect(wire, _VARINT, where)
            kind = _signed(value, 64)
        elif number == 2:
            _expect(wire, _VARINT, where)
            int_val = _signed(value & 0xFFFFFFFF, 32)
        elif number == 3:
            _expect(wire, _LEN, where)
            str_val = _text(value, where)
    if kind == 0:
        return int_val
    if kind == 1:
        return str_val
    raise ProtobufError(f"{where}: IntOrString of unknown type {kind}")


def _single_string(buf: bytes, where: str) -> str:
    parts = _bytes_field(buf, 1, where)
    return _text(parts[-1], where) if parts else ""


def _bytes_field(buf: bytes, number: int, where: str) -> list[bytes]:
    out = []
    for n, wire, value in _fields(buf):
        if n == number:
            _expect(wire, _LEN, where)
            out.append(value)
    return out


def _go_duration(nanos: int) -> str:
    """Go's time.Duration.String(), which metav1.Duration marshals to JSON."""
    if nanos == 0:
        return "0s"
    sign, n = ("-", -nanos) if nanos < 0 else ("", nanos)
    if n < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if n >= size:
                return sign + _trim(n / size) + unit
    hours, rest = divmod(n, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    text = f"{hours}h" if hours else ""
    if hours or minutes:
        text += f"{minutes}m"
    return sign + text + _trim(rest / 1e9) + "s"


def _trim(x: float) -> str:
    return f"{x:.9f}".rstrip("0").rstrip(".")


def _text(value: bytes, where: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtobufError(f"{where}: the string is not UTF-8") from None


def _expect(wire: int, wanted: int, where: str) -> bool:
    if wire != wanted:
        raise ProtobufError(f"{where}: wire type {wire} where {wanted} was expected")
    return True


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ProtobufError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7
        if shift >= 70:
            raise ProtobufError("varint longer than 10 bytes")


def _fields(buf: bytes, pos: int = 0):
    """(field number, wire type, value) of each field: an int for varints, bytes otherwise."""
    end = len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0 or number > 0x1FFFFFFF:
            raise ProtobufError(f"invalid field number {number}")
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
        elif wire == _LEN:
            size, pos = _varint(buf, pos)
            if size > end - pos:
                raise ProtobufError(f"field {number} runs past the end of its message")
            value, pos = buf[pos:pos + size], pos + size
        elif wire in (_I64, _I32):
            size = 8 if wire == _I64 else 4
            if size > end - pos:
                raise ProtobufError(f"field {number} runs past the end of its message")
            value, pos = buf[pos:pos + size], pos + size
        else:
            raise ProtobufError(f"field {number} has unsupported wire type {wire}")
        yield number, wire, value
