"""The cluster DNS without sockets: record resolution over Stores filled with Service and
Endpoints objects (``ClusterRecords.resolve``), and whole messages through
``ClusterDNS.handle`` built and decoded by the small independent codec below."""

from __future__ import annotations

import random
import struct

import pytest

from kubeproxy import dns
from kubeproxy.dns import (A, AAAA, ANY, CNAME, NS, PTR, SOA, SRV, TXT, ClusterDNS,
                           ClusterRecords, FormatError, read_name)
from minik8s.cache.store import Store

D = "cluster.local"


def svc(name, ns="default", ip="10.96.0.10", ports=(("http", 80, "TCP"),), **spec):
    s = {"clusterIP": ip, "ports": [{"name": n, "port": p, "protocol": proto}
                                    for n, p, proto in ports], **spec}
    return {"metadata": {"name": name, "namespace": ns}, "spec": s}


def eps(name, addresses, ns="default", ports=(("http", 8080, "TCP"),), not_ready=()):
    return {"metadata": {"name": name, "namespace": ns}, "subsets": [{
        "addresses": [a if isinstance(a, dict) else {"ip": a} for a in addresses],
        "notReadyAddresses": [{"ip": a} for a in not_ready],
        "ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports]}]}


@pytest.fixture
def stores():
    services, endpoints = Store(), Store()
    services.add(svc("web", ports=(("http", 80, "TCP"), ("", 81, "TCP"))))
    endpoints.add(eps("web", ["10.244.1.2", "10.244.2.3"]))
    services.add(svc("db", ip="None", ports=(("pg", 5432, "TCP"), ("metrics", 9100, "UDP"))))
    endpoints.add(eps("db", [{"ip": "10.244.1.5", "hostname": "db-0"},
                             {"ip": "10.244.2.6", "hostname": "db-1"}, "10.244.2.7"],
                      ports=(("pg", 15432, "TCP"), ("metrics", 9100, "UDP")),
                      not_ready=["10.244.3.9"]))
    services.add(svc("other", ns="team-a", ip="10.96.5.5", ports=(("dns", 53, "UDP"),)))
    services.add({"metadata": {"name": "ext", "namespace": "default"},
                  "spec": {"type": "ExternalName",
                           "externalName": "web.default.svc.cluster.local"}})
    services.add({"metadata": {"name": "outside", "namespace": "default"},
                  "spec": {"type": "ExternalName", "externalName": "db.example.com."}})
    return services, endpoints


@pytest.fixture
def records(stores):
    return ClusterRecords(*stores, domain=D, ns_address="10.250.0.11", serial=42)


def data(answer, rtype=None):
    return [r.data for r in answer.answers if rtype is None or r.rtype == rtype]


# --- records ------------------------------------------------------------------------------


def test_service_a_record_is_the_cluster_ip(records):
    a = records.resolve("web.default.svc.cluster.local", A)
    assert (a.rcode, a.authoritative, data(a)) == (dns.NOERROR, True, ["10.96.0.10"])
    assert a.answers[0].name == "web.default.svc.cluster.local"
    assert 5 <= a.answers[0].ttl <= 30
    # case-insensitive, trailing dot optional
    assert data(records.resolve("WEB.Default.SVC.Cluster.Local.", A)) == ["10.96.0.10"]


def test_aaaa_of_an_existing_name_is_nodata_with_soa(records):
    a = records.resolve("web.default.svc.cluster.local", AAAA)
    assert (a.rcode, a.authoritative, a.answers) == (dns.NOERROR, True, [])
    assert [r.rtype for r in a.authority] == [SOA]
    mname, rname, serial, *_rest, minimum = a.authority[0].data
    assert (mname, rname, serial) == ("ns.dns.cluster.local", "hostmaster.cluster.local", 42)
    assert 5 <= minimum <= 30
    # other types the name has no records of: the same
    assert records.resolve("web.default.svc.cluster.local", TXT).authority[0].rtype == SOA


def test_unknown_names_in_the_zone_are_nxdomain_with_soa(records):
    for name in ("nope.default.svc.cluster.local", "web.nope.svc.cluster.local",
                 "web.svc.cluster.local", "web.cluster.local", "x.web.default.svc.cluster.local",
                 "a.b.c.d.e.f.svc.cluster.local", "foo.cluster.local"):
        a = records.resolve(name, A)
        assert (a.rcode, a.authoritative, a.answers) == (dns.NXDOMAIN, True, []), name
        assert [r.rtype for r in a.authority] == [SOA], name


def test_names_outside_the_zone_are_nxdomain_without_authority(records):
    for name in ("example.com", "web.default.svc.cluster.local.example.com", "local",
                 "cluster.local.evil", ""):
        a = records.resolve(name, A)
        assert (a.rcode, a.authoritative, a.answers, a.authority) == \
            (dns.NXDOMAIN, False, [], []), name


def test_names_with_only_names_below_them_exist(records):
    for name in ("svc.cluster.local", "default.svc.cluster.local", "team-a.svc.cluster.local",
                 "pod.cluster.local", "default.pod.cluster.local",
                 "_tcp.web.default.svc.cluster.local", "_udp.db.default.svc.cluster.local"):
        a = records.resolve(name, A)
        assert (a.rcode, a.answers) == (dns.NOERROR, []), name
    # a namespace without Services, and a protocol without named ports, do not exist
    assert records.resolve("kube-public.svc.cluster.local", A).rcode == dns.NXDOMAIN
    assert records.resolve("_udp.web.default.svc.cluster.local", A).rcode == dns.NXDOMAIN


def test_apex_soa_and_ns(records):
    assert records.resolve("cluster.local", SOA).answers[0].rtype == SOA
    assert data(records.resolve("cluster.local", NS)) == ["ns.dns.cluster.local"]
    assert data(records.resolve("ns.dns.cluster.local", A)) == ["10.250.0.11"]
    unbound = ClusterRecords(Store(), Store(), ns_address="0.0.0.0")
    assert unbound.resolve("ns.dns.cluster.local", A).answers == []


def test_headless_service_answers_ready_endpoint_addresses(records):
    a = records.resolve("db.default.svc.cluster.local", A)
    assert data(a) == ["10.244.1.5", "10.244.2.6", "10.244.2.7"]  # not the unready 10.244.3.9
    assert all(r.name == "db.default.svc.cluster.local" for r in a.answers)


def test_headless_service_without_endpoints_is_nodata(stores):
    services, endpoints = stores
    services.add(svc("lonely", ip="None"))
    a = ClusterRecords(services, endpoints).resolve("lonely.default.svc.cluster.local", A)
    assert (a.rcode, a.answers, [r.rtype for r in a.authority]) == (dns.NOERROR, [], [SOA])


def test_endpoint_hostnames_and_dashed_addresses(records):
    assert data(records.resolve("db-0.db.default.svc.cluster.local", A)) == ["10.244.1.5"]
    assert data(records.resolve("DB-1.db.default.svc.cluster.local", A)) == ["10.244.2.6"]
    assert data(records.resolve("10-244-2-7.db.default.svc.cluster.local", A)) == ["10.244.2.7"]
    assert data(records.resolve("10-244-1-2.web.default.svc.cluster.local", A)) == ["10.244.1.2"]
    # a named address is not also under its dashed IP; unready addresses have no name
    assert records.resolve("10-244-1-5.db.default.svc.cluster.local", A).rcode == dns.NXDOMAIN
    assert records.resolve("10-244-3-9.db.default.svc.cluster.local", A).rcode == dns.NXDOMAIN
    assert records.resolve("db-9.db.default.svc.cluster.local", A).rcode == dns.NXDOMAIN


def test_srv_of_a_cluster_ip_service_targets_the_service(records):
    a = records.resolve("_http._tcp.web.default.svc.cluster.local", SRV)
    assert data(a) == [(0, 100, 80, "web.default.svc.cluster.local")]
    assert [(r.name, r.data) for r in a.additional] == \
        [("web.default.svc.cluster.local", "10.96.0.10")]
    # the name exists, so A is NODATA; unnamed ports, wrong protocols and bad labels are not
    assert records.resolve("_http._tcp.web.default.svc.cluster.local", A).rcode == dns.NOERROR
    for name in ("_http._udp.web.default.svc.cluster.local",
                 "_nope._tcp.web.default.svc.cluster.local",
                 "_http._icmp.web.default.svc.cluster.local",
                 "_._tcp.web.default.svc.cluster.local"):
        assert records.resolve(name, SRV).rcode == dns.NXDOMAIN, name


def test_srv_of_a_headless_service_targets_each_endpoint(records):
    a = records.resolve("_pg._tcp.db.default.svc.cluster.local", SRV)
    assert sorted((port, target) for _, _, port, target in data(a)) == [
        (15432, "10-244-2-7.db.default.svc.cluster.local"),
        (15432, "db-0.db.default.svc.cluster.local"),
        (15432, "db-1.db.default.svc.cluster.local")]
    assert {(r.name, r.data) for r in a.additional} == {
        ("10-244-2-7.db.default.svc.cluster.local", "10.244.2.7"),
        ("db-0.db.default.svc.cluster.local", "10.244.1.5"),
        ("db-1.db.default.svc.cluster.local", "10.244.2.6")}
    udp = records.resolve("_metrics._udp.db.default.svc.cluster.local", SRV)
    assert len(udp.answers) == 3 and {d[2] for d in data(udp)} == {9100}


def test_ptr_for_cluster_ips_and_endpoint_addresses(records):
    assert data(records.resolve("10.0.96.10.in-addr.arpa", PTR)) == \
        ["web.default.svc.cluster.local"]
    assert data(records.resolve("5.1.244.10.in-addr.arpa.", PTR)) == \
        ["db-0.db.default.svc.cluster.local"]
    assert data(records.resolve("2.1.244.10.in-addr.arpa", PTR)) == \
        ["10-244-1-2.web.default.svc.cluster.local"]
    for name in ("9.3.244.10.in-addr.arpa", "1.1.1.1.in-addr.arpa", "10.in-addr.arpa",
                 "300.0.96.10.in-addr.arpa", "x.0.96.10.in-addr.arpa", "in-addr.arpa"):
        a = records.resolve(name, PTR)
        assert (a.rcode, a.answers) == (dns.NXDOMAIN, []), name


def test_pod_records_answer_the_dashed_address(records):
    assert data(records.resolve("10-244-1-7.default.pod.cluster.local", A)) == ["10.244.1.7"]
    assert data(records.resolve("10-244-1-7.any-ns.pod.cluster.local", A)) == ["10.244.1.7"]
    assert records.resolve("10-244-1-7.default.pod.cluster.local", AAAA).answers == []
    for name in ("10-244-1.default.pod.cluster.local", "10-244-1-300.default.pod.cluster.local",
                 "a-b-c-d.default.pod.cluster.local", "x.10-244-1-7.default.pod.cluster.local"):
        assert records.resolve(name, A).rcode == dns.NXDOMAIN, name


def test_external_name_is_a_cname_followed_inside_the_zone(records):
    a = records.resolve("ext.default.svc.cluster.local", A)
    assert [(r.rtype, r.data) for r in a.answers] == [
        (CNAME, "web.default.svc.cluster.local"), (A, "10.96.0.10")]
    out = records.resolve("outside.default.svc.cluster.local", A)
    assert [(r.rtype, r.data) for r in out.answers] == [(CNAME, "db.example.com")]
    assert data(records.resolve("ext.default.svc.cluster.local", CNAME)) == \
        ["web.default.svc.cluster.local"]


def test_cname_loops_end(stores):
    services, endpoints = stores
    for a, b in (("l1", "l2"), ("l2", "l1")):
        services.add({"metadata": {"name": a, "namespace": "default"}, "spec": {
            "type": "ExternalName", "externalName": f"{b}.default.svc.cluster.local"}})
    ans = ClusterRecords(services, endpoints).resolve("l1.default.svc.cluster.local", A)
    assert [r.data for r in ans.answers] == ["l2.default.svc.cluster.local",
                                             "l1.default.svc.cluster.local"]


def test_any_returns_every_record_of_the_name(records):
    assert data(records.resolve("web.default.svc.cluster.local", ANY)) == ["10.96.0.10"]


def test_answers_follow_the_stores(stores):
    services, endpoints = stores
    r = ClusterRecords(services, endpoints)
    services.delete("default/web")
    assert r.resolve("web.default.svc.cluster.local", A).rcode == dns.NXDOMAIN
    services.add(svc("web", ip="10.96.0.99"))
    assert data(r.resolve("web.default.svc.cluster.local", A)) == ["10.96.0.99"]
    assert data(r.resolve("99.0.96.10.in-addr.arpa", PTR)) == ["web.default.svc.cluster.local"]
    assert r.resolve("10.0.96.10.in-addr.arpa", PTR).rcode == dns.NXDOMAIN
    endpoints.add(eps("db", ["10.244.9.9"]))
    assert data(r.resolve("db.default.svc.cluster.local", A)) == ["10.244.9.9"]
    assert data(r.resolve("9.9.244.10.in-addr.arpa", PTR)) == \
        ["10-244-9-9.db.default.svc.cluster.local"]
    assert r.resolve("5.1.244.10.in-addr.arpa", PTR).rcode == dns.NXDOMAIN
    services.delete("team-a/other")
    services.add(svc("other", ns="team-b"))
    assert r.resolve("team-a.svc.cluster.local", A).rcode == dns.NXDOMAIN
    assert r.resolve("team-b.svc.cluster.local", A).rcode == dns.NOERROR
    # a second resolver over the same stores (the indexes are shared, not added twice)
    assert data(ClusterRecords(services, endpoints).resolve("99.0.96.10.in-addr.arpa", PTR))


def test_search_list_of_a_pod_finds_short_names(records):
    """What a resolver with ``search <ns>.svc.cluster.local svc.cluster.local cluster.local``
    and ``ndots:5`` does: the first NOERROR answer with records wins."""
    search = ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"]

    def lookup(short):
        for domain in search + [""]:
            name = f"{short}.{domain}".rstrip(".")
            a = records.resolve(name, A)
            if a.rcode == dns.NOERROR and a.answers:
                return name, data(a)
            assert a.rcode in (dns.NXDOMAIN, dns.NOERROR)
        return None

    assert lookup("web") == ("web.default.svc.cluster.local", ["10.96.0.10"])
    assert lookup("other.team-a") == ("other.team-a.svc.cluster.local", ["10.96.5.5"])
    assert lookup("web.default.svc") == ("web.default.svc.cluster.local", ["10.96.0.10"])
    assert lookup("example.com") is None


def test_odd_objects_in_the_stores_do_not_break_lookups():
    services, endpoints = Store(), Store()
    services.add({"metadata": {"name": "bad", "namespace": "default"},
                  "spec": {"clusterIP": "not-an-ip", "ports": [None, {"name": 5},
                                                                {"name": "x", "port": "80"}]}})
    endpoints.add({"metadata": {"name": "bad", "namespace": "default"},
                   "subsets": [None, {"addresses": [None, {"ip": "zzz"}, {"ip": "10.1.1.1",
                                                                          "hostname": "a.b"}]}]})
    services.add({"metadata": {"name": "six", "namespace": "default"},
                  "spec": {"clusterIP": "fd00::10"}})
    r = ClusterRecords(services, endpoints)
    assert r.resolve("bad.default.svc.cluster.local", A).answers == []
    assert r.resolve("_x._tcp.bad.default.svc.cluster.local", SRV).answers == []
    assert data(r.resolve("10-1-1-1.bad.default.svc.cluster.local", A)) == ["10.1.1.1"]
    assert data(r.resolve("six.default.svc.cluster.local", AAAA)) == ["fd00::10"]
    assert r.resolve("six.default.svc.cluster.local", A).answers == []


def test_another_cluster_domain():
    services = Store()
    services.add(svc("web"))
    r = ClusterRecords(services, Store(), domain="Corp.Example.")
    assert data(r.resolve("web.default.svc.corp.example", A)) == ["10.96.0.10"]
    assert r.resolve("web.default.svc.cluster.local", A).authoritative is False


# --- messages -----------------------------------------------------------------------------
# An encoder/decoder written apart from the module's, so the two check each other.

def encode_name(name: str) -> bytes:
    out = b""
    for label in name.strip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def query(name, qtype=A, qid=0x1234, flags=0x0100, edns=None, qclass=1):
    """``edns``: None, or (payload size, version)."""
    msg = struct.pack("!6H", qid, flags, 1, 0, 0, 1 if edns else 0)
    msg += encode_name(name) + struct.pack("!2H", qtype, qclass)
    if edns:
        size, version = edns
        msg += b"\0" + struct.pack("!HHIH", 41, size, version << 16, 0)
    return msg


def decode_name(msg: bytes, pos: int) -> tuple[str, int]:
    labels, end, hops = [], None, 0
    while True:
        n = msg[pos]
        if n >= 0xC0:
            end = end or pos + 2
            pos = ((n & 0x3F) << 8) | msg[pos + 1]
            hops += 1
            assert hops < 50
            continue
        if n == 0:
            return ".".join(labels), end or pos + 1
        labels.append(msg[pos + 1:pos + 1 + n].decode("latin-1"))
        pos += 1 + n


def decode(msg: bytes) -> dict:
    qid, flags, qd, an, ns, ar = struct.unpack_from("!6H", msg)
    pos = 12
    questions = []
    for _ in range(qd):
        name, pos = decode_name(msg, pos)
        questions.append((name,) + struct.unpack_from("!2H", msg, pos))
        pos += 4
    sections = []
    for count in (an, ns, ar):
        rrs = []
        for _ in range(count):
            name, pos = decode_name(msg, pos)
            rtype, rclass, ttl, rdlen = struct.unpack_from("!HHIH", msg, pos)
            pos += 10
            rdata = msg[pos:pos + rdlen]
            if rtype == A:
                value = ".".join(str(b) for b in rdata)
            elif rtype in (CNAME, PTR, NS):
                value = decode_name(msg, pos)[0]
            elif rtype == SRV:
                value = struct.unpack_from("!3H", msg, pos) + (decode_name(msg, pos + 6)[0],)
            else:
                value = rdata
            rrs.append({"name": name, "type": rtype, "class": rclass, "ttl": ttl,
                        "data": value})
            pos += rdlen
        sections.append(rrs)
    assert pos == len(msg), "trailing bytes"
    return {"id": qid, "qr": bool(flags & 0x8000), "opcode": (flags >> 11) & 0xF,
            "aa": bool(flags & 0x0400), "tc": bool(flags & 0x0200), "rd": bool(flags & 0x0100),
            "ra": bool(flags & 0x0080), "rcode": flags & 0xF, "question": questions,
            "answer": sections[0], "authority": sections[1], "additional": sections[2]}


@pytest.fixture
def server(stores):
    return ClusterDNS(*stores, listen="10.250.0.11", port=0)


def ask(server, msg, tcp=False):
    out = server.handle(msg, tcp=tcp)
    return None if out is None else decode(out)


def test_answer_flags_and_question_echo(server):
    r = ask(server, query("Web.Default.svc.cluster.local", qid=0xBEEF))
    assert (r["id"], r["qr"], r["aa"], r["ra"], r["rd"], r["tc"], r["rcode"]) == \
        (0xBEEF, True, True, False, True, False, 0)
    assert r["question"] == [("Web.Default.svc.cluster.local", A, 1)]  # case kept
    assert [(x["name"].lower(), x["type"], x["class"], x["data"]) for x in r["answer"]] == \
        [("web.default.svc.cluster.local", A, 1, "10.96.0.10")]
    assert 5 <= r["answer"][0]["ttl"] <= 30
    norec = ask(server, query("web.default.svc.cluster.local", flags=0))
    assert not norec["rd"] and norec["aa"]


def test_nxdomain_and_nodata_messages(server):
    r = ask(server, query("nope.default.svc.cluster.local"))
    assert (r["rcode"], r["aa"], r["answer"]) == (dns.NXDOMAIN, True, [])
    assert [(x["name"], x["type"]) for x in r["authority"]] == [("cluster.local", SOA)]
    r = ask(server, query("web.default.svc.cluster.local", AAAA))
    assert (r["rcode"], r["aa"], r["answer"], len(r["authority"])) == (0, True, [], 1)
    r = ask(server, query("example.com"))
    assert (r["rcode"], r["aa"], r["ra"], r["authority"]) == (dns.NXDOMAIN, False, False, [])


def test_srv_message_carries_glue(server):
    r = ask(server, query("_pg._tcp.db.default.svc.cluster.local", SRV))
    assert len(r["answer"]) == 3 and len(r["additional"]) == 3
    assert {x["data"][3] for x in r["answer"]} == {x["name"] for x in r["additional"]}


def test_edns_is_answered_with_opt(server):
    r = ask(server, query("web.default.svc.cluster.local", edns=(4096, 0)))
    opt = [x for x in r["additional"] if x["type"] == 41]
    assert r["rcode"] == 0 and len(opt) == 1 and opt[0]["class"] == 1232
    assert len(r["answer"]) == 1
    bad = ask(server, query("web.default.svc.cluster.local", edns=(4096, 1)))
    opt = [x for x in bad["additional"] if x["type"] == 41]
    assert bad["answer"] == [] and (opt[0]["ttl"] >> 24) == 1  # BADVERS = 16 = 1 << 4 | 0
    assert bad["rcode"] == 0


def test_large_answers_are_truncated_over_udp_and_whole_over_tcp(stores):
    services, endpoints = stores
    services.add(svc("big", ip="None"))
    endpoints.add(eps("big", [f"10.244.{i // 200}.{i % 200 + 1}" for i in range(150)]))
    server = ClusterDNS(services, endpoints, listen="127.0.0.1", port=0)
    udp = server.handle(query("big.default.svc.cluster.local"), tcp=False)
    r = decode(udp)
    assert len(udp) <= 512 and r["tc"] and 0 < len(r["answer"]) < 150
    edns = server.handle(query("big.default.svc.cluster.local", edns=(65000, 0)), tcp=False)
    r = decode(edns)
    assert len(edns) <= 1232 and r["tc"] and len(r["answer"]) < 150
    assert [x["type"] for x in r["additional"]] == [41]  # the OPT survives truncation
    r = decode(server.handle(query("big.default.svc.cluster.local"), tcp=True))
    assert not r["tc"] and len(r["answer"]) == 150
    # names are compressed: 150 records of one owner fit in about 16 bytes each
    assert len(server.handle(query("big.default.svc.cluster.local"), tcp=True)) < 150 * 17 + 80


def test_other_opcodes_classes_and_transfers(server):
    r = ask(server, query("web.default.svc.cluster.local", flags=(2 << 11)))  # STATUS
    assert (r["rcode"], r["opcode"]) == (dns.NOTIMP, 2)
    assert ask(server, query("version.bind", TXT, qclass=3))["rcode"] == dns.REFUSED  # CH
    assert ask(server, query("cluster.local", 252))["rcode"] == dns.REFUSED  # AXFR
    assert ask(server, query("web.default.svc.cluster.local", 41))["rcode"] == dns.FORMERR
    r = ask(server, query("web.default.svc.cluster.local", qclass=255))
    assert r["answer"][0]["data"] == "10.96.0.10"


def test_reverse_lookup_message(server):
    r = ask(server, query("10.0.96.10.in-addr.arpa", PTR))
    assert [x["data"] for x in r["answer"]] == ["web.default.svc.cluster.local"]


MALFORMED = {
    "question cut short": query("web.default.svc.cluster.local")[:20],
    "no type and class": query("web")[:-4],
    "no question": struct.pack("!6H", 7, 0x0100, 0, 0, 0, 0),
    "two questions": struct.pack("!6H", 7, 0x0100, 2, 0, 0, 0)
    + (encode_name("a") + b"\0\1\0\1") * 2,
    "pointer loop": struct.pack("!6H", 7, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\0\1\0\1",
    "forward pointer": struct.pack("!6H", 7, 0x0100, 1, 0, 0, 0) + b"\xc0\x20\0\1\0\1" + bytes(30),
    "extended label type": struct.pack("!6H", 7, 0x0100, 1, 0, 0, 0) + b"\x41abc\0\0\1\0\1",
    "name over 255 bytes": struct.pack("!6H", 7, 0x0100, 1, 0, 0, 0)
    + (b"\x3f" + b"a" * 63) * 5 + b"\0\0\1\0\1",
    "label past the end": struct.pack("!6H", 7, 0x0100, 1, 0, 0, 0) + b"\x3fabc",
    "counted additional record missing": query("web")[:4] + b"\0\1\0\0\0\0\0\1" + query("web")[12:],
    "two OPT records": query("web", edns=(1232, 0))[:10] + b"\0\2"
    + query("web", edns=(1232, 0))[12:] + b"\0" + struct.pack("!HHIH", 41, 512, 0, 0),
    "OPT with a name": query("web")[:10] + b"\0\1" + query("web")[12:] + encode_name("x")
    + struct.pack("!HHIH", 41, 512, 0, 0),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_queries_get_formerr(server, case):
    msg = MALFORMED[case]
    for tcp in (False, True):
        out = server.handle(msg, tcp=tcp)
        assert out is not None, case
        qid, flags, qd, an, ns, ar = struct.unpack_from("!6H", out)
        assert (qid, flags & 0x8000, flags & 0xF) == (7 if msg[:2] == b"\0\7" else 0x1234,
                                                      0x8000, dns.FORMERR), case
        assert (qd, an, ns, ar) == (0, 0, 0, 0)


def test_packets_not_worth_an_answer_are_dropped(server):
    assert server.handle(b"", tcp=False) is None
    assert server.handle(b"\x12\x34\x01", tcp=False) is None
    response = server.handle(query("web.default.svc.cluster.local"), tcp=False)
    assert server.handle(response, tcp=False) is None  # never answer an answer


def test_read_name_follows_backward_pointers():
    msg = bytes(12) + encode_name("svc.cluster.local") + b"\3web\7default" + b"\xc0\x0c"
    labels, end = read_name(msg, 12 + len(encode_name("svc.cluster.local")))
    assert [lb.decode() for lb in labels] == ["web", "default", "svc", "cluster", "local"]
    assert end == len(msg)
    # a pointer to a pointer that points forward again is a loop
    loop = bytes(12) + b"\xc0\x0e" + b"\xc0\x0c"
    with pytest.raises(FormatError):
        read_name(loop, 14)
    with pytest.raises(FormatError):
        read_name(bytes(12) + b"\x01a\xc0", 12)


def test_labels_with_dots_or_odd_bytes_match_nothing(server):
    # one label "web.default" + svc.cluster.local must not be read as two labels
    msg = struct.pack("!6H", 9, 0x0100, 1, 0, 0, 0) + b"\x0bweb.default" \
        + encode_name("svc.cluster.local") + b"\0\1\0\1"
    r = decode(server.handle(msg, tcp=False))
    assert (r["rcode"], r["answer"]) == (dns.NXDOMAIN, [])
    msg = struct.pack("!6H", 9, 0x0100, 1, 0, 0, 0) + b"\x03w\xffb" \
        + encode_name("default.svc.cluster.local") + b"\0\1\0\1"
    assert decode(server.handle(msg, tcp=False))["rcode"] == dns.NXDOMAIN


def test_random_and_mutated_packets_never_raise(server):
    rng = random.Random(1234)
    base = [query("web.default.svc.cluster.local"), query("_pg._tcp.db.default.svc.cluster.local",
                                                          SRV, edns=(1232, 0)),
            query("10.0.96.10.in-addr.arpa", PTR)]
    answered = 0
    for i in range(3000):
        if i % 3 == 0:
            msg = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 80)))
        else:
            msg = bytearray(rng.choice(base))
            for _ in range(rng.randrange(1, 6)):
                msg[rng.randrange(len(msg))] = rng.randrange(256)
            msg = bytes(msg[:rng.randrange(len(msg) + 1)] if i % 3 == 2 else msg)
        out = server.handle(msg, tcp=bool(i % 2))
        if out is not None:
            answered += 1
            r = decode(out)
            assert r["qr"] and r["id"] == struct.unpack_from("!H", msg)[0]
    assert answered > 1000
