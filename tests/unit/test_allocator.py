"""Service allocation and encryption-at-rest logic without etcd: picks stay in range and
off the `kubernetes` address, refusals name the field, a taken pick is re-picked, an update
takes and releases only what changed; the codec round-trips, binds a value to its key and
knows which values are stale; the repair writes each claim in one guarded transaction."""

from __future__ import annotations

import ipaddress
import json

import pytest

from apiserver.allocator import (IP_PREFIX, Plan, ServiceAllocator, owner_of,
                                 parse_port_range)
from apiserver.storage import Stored
from apiserver.encryption import EncryptingCodec, KeyRing
from apiserver.strategy import _keep_allocations
from minik8s.api.errors import Invalid, InternalError
from minik8s.pki.encryption_keys import new_key, write_keys


class Cache:
    def __init__(self, *services):
        self.objects = {f"default/{s['metadata']['name']}": s for s in services}


def service(name="web", **spec):
    spec.setdefault("ports", [{"port": 80}])
    return {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
            "spec": spec}


def alloc(cidr="10.96.0.0/28", ports="30000-30002", *services):
    return ServiceAllocator(None, cidr, ports, Cache(*services))


async def test_picks_stay_in_range_and_off_the_first_address():
    a = alloc()
    seen = set()
    for _ in range(200):
        ip = a.pick_ip(set())
        assert ipaddress.ip_address(ip) in ipaddress.ip_network("10.96.0.0/28")
        assert ip not in ("10.96.0.0", "10.96.0.1", "10.96.0.15")
        seen.add(ip)
    assert len(seen) == 13  # .2 .. .14
    assert a.first_ip == "10.96.0.1"


async def test_full_ranges_are_refused_with_the_field():
    taken = [service(f"s{i}", type="NodePort", clusterIP=f"10.96.0.{i}",
                     ports=[{"port": 80, "nodePort": 30000 + i}]) for i in range(3)]
    a = alloc("10.96.0.0/28", "30000-30002", *taken)
    with pytest.raises(Invalid) as err:
        await a.admit_create(service("x", type="NodePort"))
    assert "failed to allocate a nodePort: range is full" in err.value.message


async def test_requested_values_are_checked():
    a = alloc()
    with pytest.raises(Invalid) as err:
        await a.admit_create(service(clusterIP="10.96.0.15"))  # broadcast
    assert err.value.causes[0]["field"] == "spec.clusterIPs[0]"
    with pytest.raises(Invalid) as err:
        await a.admit_create(service(type="NodePort", ports=[{"port": 80, "nodePort": 31000}]))
    assert err.value.causes[0]["message"] == ("Invalid value: 31000: provided port is not in "
                                              "the valid range. The range of valid ports is "
                                              "30000-30002")
    with pytest.raises(Invalid):
        await a.admit_create(service(clusterIPs=["10.96.0.5", "fd00::5"]))


async def test_a_taken_pick_is_repicked_a_taken_request_refused():
    a = alloc("10.96.0.0/24", "30000-32767")
    obj = service(type="NodePort")
    plan = await a.admit_create(obj)
    ip, port = obj["spec"]["clusterIP"], obj["spec"]["ports"][0]["nodePort"]
    claims = plan.claims()
    assert claims.take == {f"/registry/ranges/serviceips/{ip}": owner_of(obj),
                           f"/registry/ranges/servicenodeports/{port}": owner_of(obj)}
    plan.retry([f"/registry/ranges/serviceips/{ip}"])
    assert obj["spec"]["clusterIP"] != ip and obj["spec"]["clusterIPs"] == [obj["spec"]["clusterIP"]]
    assert obj["spec"]["ports"][0]["nodePort"] == port

    asked = service("b", clusterIP="10.96.0.9")
    plan = await a.admit_create(asked)
    with pytest.raises(Invalid) as err:
        plan.retry(["/registry/ranges/serviceips/10.96.0.9"])
    assert err.value.message == ('Service "b" is invalid: spec.clusterIPs[0]: Invalid value: '
                                 '"10.96.0.9": failed to allocate IP 10.96.0.9: provided IP is '
                                 'already allocated')


async def test_update_takes_and_releases_only_changes():
    a = alloc("10.96.0.0/24", "30000-32767")
    old = service(type="NodePort", clusterIP="10.96.0.9", clusterIPs=["10.96.0.9"],
                  ports=[{"name": "a", "port": 80, "nodePort": 30080},
                         {"name": "b", "port": 81, "nodePort": 30081}])
    new = json.loads(json.dumps(old))
    new["spec"]["ports"] = [{"name": "a", "port": 80}, {"name": "c", "port": 82}]
    _keep_allocations(new, old)
    assert new["spec"]["ports"][0]["nodePort"] == 30080
    plan = await a.admit_update(new, old)
    claims = plan.claims()
    fresh = new["spec"]["ports"][1]["nodePort"]
    assert set(claims.take) == {f"/registry/ranges/servicenodeports/{fresh}"}
    assert set(claims.release) == {"/registry/ranges/servicenodeports/30081"}

    to_cluster_ip = json.loads(json.dumps(old))
    to_cluster_ip["spec"]["type"] = "ClusterIP"
    to_cluster_ip["spec"]["externalTrafficPolicy"] = "Cluster"
    old["spec"]["externalTrafficPolicy"] = "Cluster"
    _keep_allocations(to_cluster_ip, old)
    assert all("nodePort" not in p for p in to_cluster_ip["spec"]["ports"])
    assert "externalTrafficPolicy" not in to_cluster_ip["spec"]
    claims = (await a.admit_update(to_cluster_ip, old)).claims()
    assert not claims.take and len(claims.release) == 2

    to_external = json.loads(json.dumps(old))
    to_external["spec"].update(type="ExternalName", externalName="db.example.org")
    _keep_allocations(to_external, old)
    assert "clusterIP" not in to_external["spec"]


class FakeEtcd:
    """Keys with mod revisions and the two things the repair uses: a paged object list and
    raw ranges at a revision, and ``write_if`` (one transaction). ``before_write`` runs once,
    before the first transaction: another API server acting in between."""

    def __init__(self):
        self.kv: dict[str, tuple[bytes, int]] = {}
        self.rev = 0
        self.txns: list[tuple[dict, dict, list]] = []
        self.before_write = None

    def put(self, key: str, value: bytes) -> None:
        self.rev += 1
        self.kv[key] = (value, self.rev)

    async def list(self, prefix, *, start_after=None, limit=0, revision=0):
        items = [Stored(json.loads(v), mod) for k, (v, mod) in sorted(self.kv.items())
                 if k.startswith(prefix)]
        return items, self.rev, False, None

    async def raw_range(self, prefix, *, revision=0, page=500):
        for k, (v, mod) in sorted(self.kv.items()):
            if k.startswith(prefix):
                yield k, v, mod

    async def write_if(self, expect, *, put=None, delete=()):
        if self.before_write is not None:
            hook, self.before_write = self.before_write, None
            hook()
        self.txns.append((dict(expect), dict(put or {}), list(delete)))
        if any(self.kv.get(k, (b"", 0))[1] != rev for k, rev in expect.items()):
            return False
        for k, v in (put or {}).items():
            self.put(k, v)
        for k in delete:
            self.kv.pop(k, None)
        return True


SVC_KEY = "/registry/core/services/default/web"


def _stored_service(etcd: FakeEtcd, uid: str) -> dict:
    obj = service("web", clusterIP="10.96.0.20")
    obj["metadata"]["uid"] = uid
    etcd.put(SVC_KEY, json.dumps(obj).encode())
    return obj


async def test_repair_rewrites_a_wrong_owner_claim_in_one_guarded_transaction():
    etcd = FakeEtcd()
    old = _stored_service(etcd, "old-uid")
    claim = IP_PREFIX + "10.96.0.20"
    etcd.put(claim, owner_of(old))
    new = _stored_service(etcd, "new-uid")  # recreated under the same name
    got = await ServiceAllocator(etcd, "10.96.0.0/24").repair()
    assert got == {"removed": 0, "added": 1, "conflicts": 0}
    assert etcd.kv[claim][0] == owner_of(new)
    [(expect, put, delete)] = etcd.txns
    assert set(expect) == {claim, SVC_KEY} and put == {claim: owner_of(new)} and not delete


async def test_repair_leaves_a_claim_alone_when_the_service_changed_meanwhile():
    """The Service moved on after the repair read it: the old owner's claim is not deleted
    first and lost (two transactions), it stays until the next repair."""
    etcd = FakeEtcd()
    old = _stored_service(etcd, "old-uid")
    claim = IP_PREFIX + "10.96.0.20"
    etcd.put(claim, owner_of(old))
    _stored_service(etcd, "new-uid")
    etcd.before_write = lambda: _stored_service(etcd, "newer-uid")
    got = await ServiceAllocator(etcd, "10.96.0.0/24").repair()
    assert got["added"] == 0 and etcd.kv[claim][0] == owner_of(old)


async def test_repair_drops_unheld_and_restores_missing_claims():
    etcd = FakeEtcd()
    svc = _stored_service(etcd, "u")
    stale = IP_PREFIX + "10.96.0.99"
    etcd.put(stale, b'{"name":"gone"}')
    got = await ServiceAllocator(etcd, "10.96.0.0/24").repair()
    assert got == {"removed": 1, "added": 1, "conflicts": 0}
    assert stale not in etcd.kv and etcd.kv[IP_PREFIX + "10.96.0.20"][0] == owner_of(svc)


def test_port_range_parsing():
    assert parse_port_range("30000-32767") == (30000, 32767)
    assert parse_port_range("31000") == (31000, 31000)
    for bad in ("x", "2-1", "0-5", "1-70000"):
        with pytest.raises(ValueError):
            parse_port_range(bad)


def test_codec_round_trip_binding_and_staleness(tmp_path):
    path = tmp_path / "keys.yaml"
    k1 = new_key()
    write_keys(path, [k1])
    codec = EncryptingCodec(KeyRing(path))
    key = "/registry/core/secrets/default/s"
    obj = {"metadata": {"name": "s", "resourceVersion": "5"}, "data": {"a": "aGk="}}
    raw = codec.encode(key, obj)
    assert raw.startswith(b"k8s:enc:aesgcm:v1:" + k1[0].encode() + b":") and b"aGk=" not in raw
    assert codec.decode(key, raw, 9)["data"] == {"a": "aGk="}
    assert not codec.stale(key, raw)
    with pytest.raises(InternalError):  # a value copied under another key does not decrypt
        codec.decode("/registry/core/secrets/default/other", raw, 9)
    plain = json.dumps(obj).encode()
    assert codec.decode(key, plain, 9)["data"] == {"a": "aGk="} and codec.stale(key, plain)
    # Other kinds are not touched.
    assert codec.encode("/registry/core/configmaps/default/c", obj).startswith(b"{")
    # A new primary key: old values read, and are stale.
    k2 = new_key([k1[0]])
    write_keys(path, [k2, k1])
    codec.keyring.reload()
    assert codec.keyring.names == [k2[0], k1[0]]
    assert codec.stale(key, raw) and codec.decode(key, raw, 9)["data"] == {"a": "aGk="}
    assert codec.encode(key, obj).startswith(b"k8s:enc:aesgcm:v1:" + k2[0].encode())
    # The old key gone: its values cannot be read, and the error names only the key.
    write_keys(path, [k2])
    codec.keyring.reload()
    with pytest.raises(InternalError) as err:
        codec.decode(key, raw, 9)
    assert k1[0] in err.value.message and "aGk=" not in err.value.message
    # A broken file keeps the keys in use.
    path.write_text("keys: []\n")
    codec.keyring.reload()
    assert codec.keyring.names == [k2[0]]
