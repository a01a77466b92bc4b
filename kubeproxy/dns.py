"""The node's cluster DNS: answers for the cluster domain out of kube-proxy's Service and
Endpoints caches, on the node address that pods' resolv.conf already names.

Why it lives here and not in a separate server: kube-proxy already holds a watch-fed cache of
exactly the objects the names come from, and runs on every node, so each node answers its own
pods with no extra process, no extra watch and no hop to another machine. It is authoritative
for the cluster domain and nothing else, and it never recurses or forwards: the cluster is
offline, and a name outside the domain is answered NXDOMAIN at once, so a resolver walking
its search list (``ndots:5`` makes it try every search domain first) moves on without waiting
for a timeout. ``REFUSED`` would make glibc try the next server, stop walking the search
list and report a temporary failure (EAI_AGAIN) instead of "not found".

The wire format is written here (RFC 1035, EDNS0 from RFC 6891) because the subset an
authoritative-only server needs is small: queries are parsed defensively (compression
pointers may only point backwards, so they cannot loop; any malformed packet gets FORMERR or
is dropped, never an exception), answers carry AA and RA=0 (a NOERROR answer with no records,
AA=0 and RA=0 looks like a referral to glibc, which then tries the next server), NODATA and
NXDOMAIN carry the zone's SOA for negative caching, and a UDP answer larger than the client's
buffer is truncated with TC so the resolver asks again over TCP.

The records follow Kubernetes' DNS specification (``kubernetes/dns`` docs/specification.md)
as CoreDNS's ``kubernetes`` plugin implements it: ``<svc>.<ns>.svc.<zone>`` A (the ClusterIP,
or the ready endpoint addresses of a headless Service, or a CNAME for ExternalName);
``<hostname>.<svc>.<ns>.svc.<zone>`` for endpoint addresses (their ``hostname``, else the
dashed IP); SRV ``_<port>._<proto>.<svc>.<ns>.svc.<zone>`` for named ports; PTR for
ClusterIPs and endpoint addresses; ``<a-b-c-d>.<ns>.pod.<zone>`` A for any address, as the
"pods insecure" mode of kube-dns does. Every lookup reads the caches as they are at that
moment, so an answer is never staler than the informers; the TTL is short for the same reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from minik8s.cache.store import Store, namespace_index

log = logging.getLogger(__name__)

Obj = dict[str, Any]

# record types and classes
A, NS, CNAME, SOA, PTR, MX, TXT, AAAA, SRV, OPT = 1, 2, 5, 6, 12, 15, 16, 28, 33, 41
IXFR, AXFR, ANY = 251, 252, 255
CLASS_IN, CLASS_ANY = 1, 255
# response codes (BADVERS is an extended rcode, carried partly in the OPT record)
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED, BADVERS = 0, 1, 2, 3, 4, 5, 16

TTL = 5  # seconds: answers come from a live cache, so let clients come back soon
UDP_PLAIN = 512  # the UDP payload a client without EDNS0 accepts
UDP_EDNS_MAX = 1232  # what we offer with EDNS0 (DNS flag day 2020: no IP fragmentation)
TCP_MAX = 65535
TCP_IDLE = 10.0  # seconds a TCP client may stay idle between queries
PROTOCOLS = ("tcp", "udp", "sctp")
TYPE_NAMES = {A: "A", NS: "NS", CNAME: "CNAME", SOA: "SOA", PTR: "PTR", MX: "MX", TXT: "TXT",
              AAAA: "AAAA", SRV: "SRV", OPT: "OPT", IXFR: "IXFR", AXFR: "AXFR", ANY: "ANY"}


# --- the records (pure logic over the caches) ------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One resource record. ``name`` is lowercase without the trailing dot. ``data`` is an
    address for A/AAAA, a name for PTR/CNAME/NS, ``(priority, weight, port, target)`` for SRV,
    ``(mname, rname, serial, refresh, retry, expire, minimum)`` for SOA."""

    name: str
    rtype: int
    data: Any
    ttl: int = TTL


@dataclass
class Answer:
    rcode: int = NOERROR
    authoritative: bool = True
    answers: list[Record] = field(default_factory=list)
    authority: list[Record] = field(default_factory=list)
    additional: list[Record] = field(default_factory=list)


def _ip(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not isinstance(value, str) or not value or value == "None":
        return None
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _addr_record(name: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Record:
    return Record(name, A if ip.version == 4 else AAAA, str(ip))


def _dashed(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return str(ip).replace(".", "-").replace(":", "-")


def _reverse_ip(labels: list[str]) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address of a full ``d.c.b.a.in-addr.arpa`` or 32-nibble ``ip6.arpa`` name."""
    try:
        if labels[-2:] == ["in-addr", "arpa"] and len(labels) == 6:
            octets = labels[:4][::-1]
            if all(o.isdigit() and len(o) <= 3 and int(o) < 256 for o in octets):
                return ipaddress.IPv4Address(".".join(str(int(o)) for o in octets))
        if labels[-2:] == ["ip6", "arpa"] and len(labels) == 34:
            nibbles = "".join(labels[:32][::-1])
            if all(len(n) == 1 for n in labels[:32]):
                return ipaddress.IPv6Address(int(nibbles, 16))
    except ValueError:
        return None
    return None


class ClusterRecords:
    """The cluster domain's records, computed on each lookup from the Service and Endpoints
    stores. ``resolve(name, qtype)`` is the whole DNS logic; the server only does the wire."""

    def __init__(self, services: Store, endpoints: Store, *, domain: str = "cluster.local",
                 ns_address: str | None = None, serial: int | None = None):
        self.services = services
        self.endpoints = endpoints
        # reverse lookups and "does this namespace have Services" without a scan per query
        services.add_indexers({_NS_INDEX: namespace_index, _IP_INDEX: _cluster_ip_index})
        endpoints.add_indexers({_IP_INDEX: _endpoint_ip_index})
        self.domain = domain.strip(".").lower()
        self._zone = self.domain.split(".")
        self.ns_name = f"ns.dns.{self.domain}"
        addr = _ip(ns_address)
        self.ns_address = addr if addr is not None and not addr.is_unspecified else None
        self.serial = (int(time.time()) if serial is None else serial) & 0xFFFFFFFF

    # --- entry point -----------------------------------------------------------------

    def soa(self) -> Record:
        return Record(self.domain, SOA, (self.ns_name, f"hostmaster.{self.domain}",
                                         self.serial, 7200, 1800, 86400, TTL))

    def resolve(self, name: str, qtype: int) -> Answer:
        """The answer for ``name`` (any case, trailing dot optional) and record type."""
        name = name.strip(".").lower()
        labels = name.split(".") if name else []
        if labels[-2:] in (["in-addr", "arpa"], ["ip6", "arpa"]):
            return self._reverse(name, labels, qtype)
        n = len(self._zone)
        if len(labels) < n or labels[len(labels) - n:] != self._zone:
            # not ours, and nothing is forwarded: "no such name", not authoritative
            return Answer(NXDOMAIN, authoritative=False)
        if qtype in (AXFR, IXFR):  # no zone transfers
            return Answer(REFUSED, authoritative=False)
        records = self._records(labels[:len(labels) - n], name)
        if records is None:
            return Answer(NXDOMAIN, authority=[self.soa()])
        answer = Answer()
        cnames = [r for r in records if r.rtype == CNAME]
        if cnames and qtype not in (CNAME, ANY):
            self._chase(answer, cnames[0], qtype)
            return answer
        answer.answers = [r for r in records if qtype == ANY or r.rtype == qtype]
        if not answer.answers:
            answer.authority = [self.soa()]  # NODATA: the name exists, the type does not
        answer.additional = self._glue(answer.answers)
        return answer

    def _chase(self, answer: Answer, cname: Record, qtype: int) -> None:
        """Follow CNAMEs (ExternalName Services) as far as they stay inside the zone."""
        seen = {cname.name}
        answer.answers.append(cname)
        target = cname.data
        for _ in range(8):
            if target in seen or not (target == self.domain
                                      or target.endswith("." + self.domain)):
                return
            seen.add(target)
            records = self._records(target.split(".")[:-len(self._zone)], target)
            if not records:
                return
            nxt = [r for r in records if r.rtype == CNAME]
            if nxt:
                answer.answers.append(nxt[0])
                target = nxt[0].data
                continue
            answer.answers += [r for r in records if qtype == ANY or r.rtype == qtype]
            answer.additional = self._glue(answer.answers)
            return

    def _glue(self, answers: list[Record]) -> list[Record]:
        """Addresses of SRV targets inside the zone, so clients need no second query."""
        extra: list[Record] = []
        seen: set[str] = set()
        for r in answers:
            if r.rtype != SRV or r.data[3] in seen:
                continue
            target = r.data[3]
            seen.add(target)
            records = self._records(target.split(".")[:-len(self._zone)], target) or []
            extra += [x for x in records if x.rtype in (A, AAAA)]
        return extra

    # --- names inside the zone ----------------------------------------------------------

    def _records(self, rel: list[str], name: str) -> list[Record] | None:
        """Every record at ``name`` (``rel`` is its labels without the zone): ``None`` when the
        name does not exist, ``[]`` for a name that exists only because names below it do."""
        r = rel[::-1]  # from the zone downwards
        if not r:
            out = [self.soa(), Record(name, NS, self.ns_name)]
            return out
        if r[0] == "dns":
            if len(r) == 1:
                return []
            if r[1:] == ["ns"]:
                return [_addr_record(name, self.ns_address)] if self.ns_address else []
            return None
        if r[0] == "svc":
            return self._svc_records(r[1:], name)
        if r[0] == "pod":
            if len(r) == 1:
                return []
            if not _is_label(r[1]):
                return None
            if len(r) == 2:
                return []
            if len(r) == 3:
                ip = _dashed_ip(r[2])
                return [_addr_record(name, ip)] if ip is not None else None
        return None

    def _svc_records(self, r: list[str], name: str) -> list[Record] | None:
        if not r:
            return []
        ns = r[0]
        if len(r) == 1:  # <ns>.svc: exists while the namespace has a Service
            return [] if self.services.index_keys(_NS_INDEX, ns) else None
        svc = self.services.get_by_key(f"{ns}/{r[1]}")
        if svc is None:
            return None
        spec = svc.get("spec") or {}
        base = f"{r[1]}.{ns}.svc.{self.domain}"
        if len(r) == 2:
            return self._service_records(svc, spec, ns, r[1], name)
        if len(r) == 3:
            if r[2] in (f"_{p}" for p in PROTOCOLS):
                proto = r[2][1:]
                return [] if any(_named(p) and _proto(p) == proto for p in spec.get("ports") or []
                                 if isinstance(p, dict)) else None
            found = [_addr_record(name, ip) for label, ip in self._endpoint_hosts(ns, r[1])
                     if label == r[2]]
            return found or None
        if len(r) == 4 and r[2].startswith("_") and r[3].startswith("_"):
            return self._srv_records(svc, spec, ns, r[1], r[3][1:], r[2][1:], name, base)
        return None

    def _service_records(self, svc: Obj, spec: Obj, ns: str, svc_name: str,
                         name: str) -> list[Record]:
        if spec.get("type") == "ExternalName":
            target = str(spec.get("externalName") or "").strip(".").lower()
            return [Record(name, CNAME, target)] if target else []
        if _headless(spec):
            return [_addr_record(name, ip) for ip in sorted(
                {ip for _, ip in self._endpoint_hosts(ns, svc_name)},
                key=lambda a: (a.version, a))]
        ips = [_ip(x) for x in (spec.get("clusterIPs") or [spec.get("clusterIP")])]
        return [_addr_record(name, ip) for ip in ips if ip is not None]

    def _srv_records(self, svc: Obj, spec: Obj, ns: str, svc_name: str, port_name: str,
                     proto: str, name: str, base: str) -> list[Record] | None:
        if proto not in PROTOCOLS or spec.get("type") == "ExternalName":
            return None
        ports = [p for p in spec.get("ports") or [] if isinstance(p, dict) and _named(p)
                 and p["name"].lower() == port_name and _proto(p) == proto]
        if not ports:
            return None
        if not _headless(spec):
            return [Record(name, SRV, (0, 100, int(p["port"]), base)) for p in ports
                    if _port(p.get("port"))]
        # headless: one SRV per ready endpoint, at its hostname and its own port number
        targets: list[tuple[int, str]] = []
        for subset, addr, ip in self._endpoint_addresses(ns, svc_name):
            for p in subset.get("ports") or []:
                if isinstance(p, dict) and str(p.get("name") or "").lower() == port_name \
                        and _proto(p) == proto and _port(p.get("port")):
                    targets.append((int(p["port"]), f"{_host_label(addr, ip)}.{base}"))
        targets = sorted(set(targets), key=lambda t: (t[1], t[0]))
        weight = max(1, 100 // len(targets)) if targets else 100
        return [Record(name, SRV, (0, weight, port, target)) for port, target in targets]

    # --- endpoints --------------------------------------------------------------------

    def _endpoint_addresses(self, ns: str, svc_name: str) -> Iterable[tuple[Obj, Obj, Any]]:
        """(subset, address, ip) for each ready address of the Service's Endpoints (the
        endpoints controller already lists not-ready pods as ready with
        ``publishNotReadyAddresses``)."""
        eps = self.endpoints.get_by_key(f"{ns}/{svc_name}")
        for subset in (eps or {}).get("subsets") or []:
            if not isinstance(subset, dict):
                continue
            for addr in subset.get("addresses") or []:
                if isinstance(addr, dict):
                    ip = _ip(addr.get("ip"))
                    if ip is not None:
                        yield subset, addr, ip

    def _endpoint_hosts(self, ns: str, svc_name: str) -> list[tuple[str, Any]]:
        """(first label, ip) of each ready endpoint address, without duplicates."""
        return sorted({(_host_label(addr, ip), ip) for _, addr, ip in
                       self._endpoint_addresses(ns, svc_name)}, key=lambda t: (t[0], str(t[1])))

    # --- reverse ------------------------------------------------------------------------

    def _reverse(self, name: str, labels: list[str], qtype: int) -> Answer:
        ip = _reverse_ip(labels)
        if ip is None:
            return Answer(NXDOMAIN, authoritative=False)
        targets = self.ptr_targets(ip)
        if not targets:
            return Answer(NXDOMAIN, authoritative=False)
        if qtype not in (PTR, ANY):
            return Answer(NOERROR)  # NODATA, authoritative for what we know
        return Answer(answers=[Record(name, PTR, t) for t in targets])

    def ptr_targets(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[str]:
        """The names an address has: the Services with that ClusterIP, and the endpoint
        names (hostname or dashed IP) under every Service that lists it as ready."""
        out: list[str] = []
        for svc in self.services.by_index(_IP_INDEX, str(ip)):
            md = svc.get("metadata") or {}
            if md.get("name"):
                out.append(f"{md['name']}.{md.get('namespace') or 'default'}.svc.{self.domain}")
        for eps in self.endpoints.by_index(_IP_INDEX, str(ip)):
            md = eps.get("metadata") or {}
            ns, svc_name = md.get("namespace") or "default", md.get("name")
            svc = self.services.get_by_key(f"{ns}/{svc_name}")
            if not svc_name or svc is None or (svc.get("spec") or {}).get("type") == \
                    "ExternalName":
                continue
            base = f"{svc_name}.{ns}.svc.{self.domain}"
            for _, addr, addr_ip in self._endpoint_addresses(ns, svc_name):
                if addr_ip == ip:
                    out.append(f"{_host_label(addr, addr_ip)}.{base}")
        return sorted(set(out))


_NS_INDEX = "dns.namespace"
_IP_INDEX = "dns.ip"


def _cluster_ip_index(svc: Obj) -> list[str]:
    """The Service's virtual addresses (none for headless and ExternalName Services)."""
    spec = svc.get("spec") or {}
    if _headless(spec) or spec.get("type") == "ExternalName":
        return []
    ips = (_ip(x) for x in (spec.get("clusterIPs") or [spec.get("clusterIP")]))
    return sorted({str(ip) for ip in ips if ip is not None})


def _endpoint_ip_index(eps: Obj) -> list[str]:
    """The ready addresses listed in an Endpoints object."""
    out = set()
    for subset in eps.get("subsets") or []:
        if isinstance(subset, dict):
            for addr in subset.get("addresses") or []:
                ip = _ip(addr.get("ip")) if isinstance(addr, dict) else None
                if ip is not None:
                    out.add(str(ip))
    return sorted(out)


def _is_label(label: str) -> bool:
    return 0 < len(label) <= 63 and all(c.isalnum() or c == "-" for c in label) \
        and label.isascii()


def _dashed_ip(label: str) -> ipaddress.IPv4Address | None:
    parts = label.split("-")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 and int(p) < 256 for p in parts):
        return None
    return ipaddress.IPv4Address(".".join(str(int(p)) for p in parts))


def _host_label(addr: Obj, ip: Any) -> str:
    hostname = addr.get("hostname")
    if isinstance(hostname, str) and _is_label(hostname.lower()):
        return hostname.lower()
    return _dashed(ip)


def _headless(spec: Obj) -> bool:
    return spec.get("clusterIP") == "None"


def _named(port: Obj) -> bool:
    return isinstance(port.get("name"), str) and bool(port.get("name"))


def _proto(port: Obj) -> str:
    return str(port.get("protocol") or "TCP").lower()


def _port(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536


# --- the wire format ------------------------------------------------------------------------


class FormatError(Exception):
    """The packet is not a well-formed DNS message."""


@dataclass
class Query:
    id: int
    flags: int
    labels: list[bytes]  # the question name as sent (case kept)
    qtype: int
    qclass: int
    edns: bool = False
    edns_size: int = UDP_PLAIN
    edns_version: int = 0

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF

    @property
    def name(self) -> str:
        """The question name for lookups: lowercase, and a label holding a dot or a byte
        outside ASCII can match nothing (escaped as in presentation format)."""
        return ".".join(_label_text(lb) for lb in self.labels)


def _label_text(label: bytes) -> str:
    out = []
    for b in label.lower():
        c = chr(b)
        out.append(f"\\{c}" if c in ".\\" else c if 0x21 <= b < 0x7F else f"\\{b:03d}")
    return "".join(out)


def read_name(msg: bytes, offset: int) -> tuple[list[bytes], int]:
    """The labels of the name at ``offset`` and the offset after it. Compression pointers
    must point strictly backwards from the pointer itself, so they cannot loop; a name of
    more than 255 bytes, a label type other than 0/0xC0, or a name running past the end
    is a ``FormatError``."""
    labels: list[bytes] = []
    end = None
    pos = offset
    total = 1
    limit = pos  # a pointer must go before the lowest position visited so far
    while True:
        if pos >= len(msg):
            raise FormatError("name runs past the end of the message")
        length = msg[pos]
        if length & 0xC0 == 0xC0:
            if pos + 1 >= len(msg):
                raise FormatError("truncated compression pointer")
            target = ((length & 0x3F) << 8) | msg[pos + 1]
            if end is None:
                end = pos + 2
            if target >= limit:
                raise FormatError("compression pointer does not point backwards")
            limit = target
            pos = target
            continue
        if length & 0xC0:
            raise FormatError("unsupported label type")
        if length == 0:
            return labels, (end if end is not None else pos + 1)
        total += length + 1
        if total > 255:
            raise FormatError("name longer than 255 bytes")
        if pos + 1 + length > len(msg):
            raise FormatError("label runs past the end of the message")
        labels.append(msg[pos + 1:pos + 1 + length])
        pos += 1 + length


def parse_query(msg: bytes) -> Query:
    """The question and EDNS0 options of a query. Raises ``FormatError`` for anything
    malformed (after the 12-byte header, which the caller checks, so FORMERR can echo the ID)."""
    if len(msg) < 12:
        raise FormatError("shorter than a header")
    qid, flags, qd, an, ns, ar = struct.unpack_from("!6H", msg)
    if qd != 1:
        raise FormatError(f"{qd} questions")
    labels, pos = read_name(msg, 12)
    if pos + 4 > len(msg):
        raise FormatError("truncated question")
    qtype, qclass = struct.unpack_from("!2H", msg, pos)
    pos += 4
    query = Query(qid, flags, labels, qtype, qclass)
    for index in range(an + ns + ar):
        rr_labels, pos = read_name(msg, pos)
        if pos + 10 > len(msg):
            raise FormatError("truncated resource record")
        rtype, rclass, ttl, rdlen = struct.unpack_from("!HHIH", msg, pos)
        pos += 10
        if pos + rdlen > len(msg):
            raise FormatError("resource record data runs past the end")
        pos += rdlen
        if rtype == OPT:
            if index < an + ns or query.edns or rr_labels:
                raise FormatError("misplaced or repeated OPT record")
            query.edns = True
            query.edns_size = max(UDP_PLAIN, rclass)
            query.edns_version = (ttl >> 16) & 0xFF
    return query


class _Writer:
    """A message being written, with name compression and rollback for truncation."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.names: dict[tuple[bytes, ...], int] = {}

    def name(self, labels: Iterable[bytes]) -> None:
        labels = list(labels)
        for i in range(len(labels)):
            key = tuple(lb.lower() for lb in labels[i:])
            ptr = self.names.get(key)
            if ptr is not None:
                self.buf += struct.pack("!H", 0xC000 | ptr)
                return
            if len(self.buf) < 0x4000:
                self.names[key] = len(self.buf)
            self.buf += bytes([len(labels[i])]) + labels[i]
        self.buf.append(0)

    def record(self, r: Record) -> None:
        self.name(_labels(r.name))
        self.buf += struct.pack("!HHI", r.rtype, CLASS_IN, r.ttl)
        at = len(self.buf)
        self.buf += b"\0\0"
        if r.rtype == A:
            self.buf += ipaddress.IPv4Address(r.data).packed
        elif r.rtype == AAAA:
            self.buf += ipaddress.IPv6Address(r.data).packed
        elif r.rtype in (CNAME, PTR, NS):
            self.name(_labels(r.data))
        elif r.rtype == SRV:
            self.buf += struct.pack("!3H", *r.data[:3])
            self.name(_labels(r.data[3]))
        elif r.rtype == SOA:
            self.name(_labels(r.data[0]))
            self.name(_labels(r.data[1]))
            self.buf += struct.pack("!5I", *r.data[2:])
        else:
            raise ValueError(f"cannot encode record type {r.rtype}")
        struct.pack_into("!H", self.buf, at, len(self.buf) - at - 2)

    def mark(self) -> int:
        return len(self.buf)

    def rollback(self, size: int) -> None:
        del self.buf[size:]
        self.names = {k: v for k, v in self.names.items() if v < size}


def _labels(name: str) -> list[bytes]:
    return [lb.encode("ascii") for lb in name.split(".") if lb]


def _opt_record(rcode: int) -> bytes:
    # root name, type OPT, class = our UDP payload size, TTL = extended rcode/version/flags
    return b"\0" + struct.pack("!HHIH", OPT, UDP_EDNS_MAX, (rcode >> 4) << 24, 0)


def build_response(query: Query, answer: Answer, limit: int) -> bytes:
    """The response message, at most ``limit`` bytes: records that do not fit are left out
    (whole records only, additional first, then authority, then answers) and TC is set."""
    w = _Writer()
    w.buf += bytes(12)
    w.name(query.labels)
    w.buf += struct.pack("!2H", query.qtype, query.qclass)
    opt = _opt_record(answer.rcode) if query.edns else b""
    budget = limit - len(opt)
    counts = [0, 0, 0]
    truncated = False
    for section, records in enumerate((answer.answers, answer.authority, answer.additional)):
        for r in records:
            mark = w.mark()
            w.record(r)
            if len(w.buf) > budget:
                w.rollback(mark)
                truncated = section < 2  # missing additional records need no TC
                break
            counts[section] += 1
        else:
            continue
        break
    w.buf += opt
    flags = 0x8000 | (query.flags & 0x7900)  # QR, and the query's opcode and RD
    flags |= query.flags & 0x0010  # CD
    if answer.authoritative:
        flags |= 0x0400
    if truncated:
        flags |= 0x0200
    flags |= answer.rcode & 0xF
    struct.pack_into("!6H", w.buf, 0, query.id, flags, 1, counts[0], counts[1],
                     counts[2] + (1 if opt else 0))
    return bytes(w.buf)


def error_response(msg: bytes, rcode: int) -> bytes | None:
    """A bare error answer (no question) echoing the ID, opcode and RD of ``msg``; ``None``
    when it is too short to answer or is itself a response (never answer answers)."""
    if len(msg) < 12:
        return None
    qid, flags = struct.unpack_from("!2H", msg)
    if flags & 0x8000:
        return None
    return struct.pack("!6H", qid, 0x8000 | (flags & 0x7900) | rcode, 0, 0, 0, 0)


# --- the server -----------------------------------------------------------------------------


class ClusterDNS:
    """The cluster DNS of one node: UDP and TCP on ``(listen, port)`` until cancelled.
    ``port=0`` picks a free port (the same one for UDP and TCP), readable from ``port``
    once ``ready`` is set."""

    def __init__(self, services: Store, endpoints: Store, *, listen: str, port: int = 53,
                 domain: str = "cluster.local"):
        self.listen = listen
        self.port = port
        self.domain = domain.strip(".").lower()
        self.records = ClusterRecords(services, endpoints, domain=self.domain,
                                      ns_address=listen)
        self.ready = asyncio.Event()
        self._tcp_tasks: set[asyncio.Task] = set()

    # --- one message in, one out --------------------------------------------------------

    def handle(self, msg: bytes, *, tcp: bool) -> bytes | None:
        """The response to one query message (``None``: drop it)."""
        if len(msg) < 12 or msg[2] & 0x80:  # too short to answer, or itself a response
            return None
        try:
            query = parse_query(msg)
        except FormatError as exc:
            log.debug("malformed DNS query: %s", exc)
            return error_response(msg, FORMERR)
        try:
            answer = self._answer(query)
            if query.edns:
                limit = TCP_MAX if tcp else min(query.edns_size, UDP_EDNS_MAX)
            else:
                limit = TCP_MAX if tcp else UDP_PLAIN
            response = build_response(query, answer, limit)
        except Exception:
            log.exception("DNS query for %r type %d failed", query.name, query.qtype)
            return error_response(msg, SERVFAIL)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s %s -> rcode %d, %d answers", "tcp" if tcp else "udp",
                      query.name, TYPE_NAMES.get(query.qtype, query.qtype), answer.rcode,
                      len(answer.answers))
        return response

    def _answer(self, query: Query) -> Answer:
        if query.opcode != 0:
            return Answer(NOTIMP, authoritative=False)
        if query.edns and query.edns_version > 0:
            return Answer(BADVERS, authoritative=False)
        if query.qclass not in (CLASS_IN, CLASS_ANY):
            return Answer(REFUSED, authoritative=False)
        if query.qtype == OPT:
            return Answer(FORMERR, authoritative=False)
        return self.records.resolve(query.name, query.qtype)

    # --- serving --------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        udp, tcp = await self._bind(loop)
        self.ready.set()
        log.info("cluster DNS for %s serving on %s port %d (UDP and TCP)", self.domain,
                 self.listen, self.port)
        try:
            await asyncio.Future()
        finally:
            udp.close()
            tcp.close()
            for task in list(self._tcp_tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.gather(*self._tcp_tasks, return_exceptions=True)
                # bounded: from Python 3.12 it also waits for every accepted connection
                await asyncio.wait_for(tcp.wait_closed(), 5)
            self.ready.clear()

    async def _bind(self, loop: asyncio.AbstractEventLoop) -> tuple[Any, asyncio.Server]:
        attempts = 20 if self.port == 0 else 1
        for attempt in range(attempts):
            udp, _ = await loop.create_datagram_endpoint(
                lambda: _UDPProtocol(self), local_addr=(self.listen, self.port))
            port = udp.get_extra_info("sockname")[1]
            try:
                tcp = await asyncio.start_server(self._serve_tcp, self.listen, port)
            except OSError:
                udp.close()
                if attempt + 1 == attempts:
                    raise
                continue
            self.port = port
            return udp, tcp
        raise AssertionError("unreachable")

    async def _serve_tcp(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tcp_tasks.add(task)
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE)
                    (length,) = struct.unpack("!H", head)
                    msg = await asyncio.wait_for(reader.readexactly(length), TCP_IDLE)
                except (asyncio.IncompleteReadError, asyncio.TimeoutError, OSError):
                    return
                response = self.handle(msg, tcp=True)
                if response is None:
                    return
                writer.write(struct.pack("!H", len(response)) + response)
                await writer.drain()
        except (ConnectionError, OSError):
            return
        finally:
            if task is not None:
                self._tcp_tasks.discard(task)
            writer.close()


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: ClusterDNS):
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            response = self.server.handle(data, tcp=False)
            if response is not None and self.transport is not None:
                self.transport.sendto(response, addr)
        except Exception:  # never let one packet stop the server
            log.exception("DNS packet from %s failed", addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("DNS UDP socket error: %s", exc)


__all__ = ["ClusterDNS", "ClusterRecords", "Record", "Answer", "Query", "FormatError",
           "parse_query", "build_response", "read_name", "TTL",
           "A", "AAAA", "CNAME", "NS", "PTR", "SOA", "SRV", "TXT", "MX", "OPT", "ANY",
           "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS"]
