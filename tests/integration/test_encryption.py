"""Secrets encrypted at rest, checked against raw etcd: nothing of a value (nor the
last-applied annotation that repeats it) is readable there; every read path (get, list,
watch) decrypts; values stored before encryption still read; `minik8s rotate-encryption-key`
moves every Secret to a new key with the API server running; values never reach the log;
`immutable` Secrets and ConfigMaps refuse changes; only system:masters see the key report."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import stat
import subprocess
import sys

import aetcd
import pytest

from cluster import ROOT, eventually, start_apiserver, start_etcd, stop_process
from minik8s.api.errors import Invalid
from minik8s.cli.encryption import rotate
from minik8s.client import Client
from minik8s.pki.encryption_keys import ensure_key_file, read_keys

VALUE = "s3cr3t-Value-42"  # distinctive enough to grep for
B64 = base64.b64encode(VALUE.encode()).decode()
PREFIX = b"k8s:enc:aesgcm:v1:"


def secret(name: str, **extra) -> dict:
    body = {"metadata": {"name": name, "annotations": {
        "kubectl.kubernetes.io/last-applied-configuration": json.dumps(
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
             "stringData": {"token": VALUE}})}},
        "stringData": {"token": VALUE}}
    body.update(extra)
    return body


async def raw_get(url: str, key: str) -> bytes:
    host, _, port = url.split("://")[1].rpartition(":")
    async with aetcd.Client(host=host, port=int(port)) as etcd:
        got = await etcd.get(key.encode())
        return got.value if got else b""


@pytest.fixture
def cluster(tmp_path):
    etcd = start_etcd(tmp_path)
    procs: list = []

    def start(*args: str):
        srv = start_apiserver(tmp_path, etcd, *args)
        procs.append(srv)
        return srv

    yield etcd, start
    for p in procs:
        stop_process(p.proc)
    stop_process(etcd.proc)


async def test_encrypted_at_rest_read_paths_and_rotation(cluster, tmp_path):
    etcd, start = cluster
    # A Secret written before encryption was turned on.
    plain = start()
    c = plain.client()
    await c.create("secrets", secret("before"), "default")
    await c.aclose()
    assert VALUE.encode() in await raw_get(etcd.url, "/registry/core/secrets/default/before")
    stop_process(plain.proc)

    key_file = tmp_path / "keys.yaml"
    assert ensure_key_file(key_file)
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    first = read_keys(key_file)[0][0]
    srv = start("--encryption-key-file", str(key_file))
    c = srv.client()
    try:
        # Values stored in plaintext still read.
        before = await c.get("secrets", "before", "default")
        assert base64.b64decode(before["data"]["token"]).decode() == VALUE

        # A watch started now sees a new Secret decrypted.
        events: list = []

        async def watch():
            async for ev in c.watch("secrets", "default", timeout_seconds=10):
                if ev["type"] != "BOOKMARK":
                    events.append(ev)
                if ev["object"]["metadata"].get("name") == "after":
                    return
        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.3)
        made = await c.create("secrets", secret("after"), "default")
        await asyncio.wait_for(watcher, 15)
        assert base64.b64decode(events[-1]["object"]["data"]["token"]).decode() == VALUE

        raw = await raw_get(etcd.url, "/registry/core/secrets/default/after")
        assert raw.startswith(PREFIX + first.encode() + b":")
        for needle in (VALUE, B64, "last-applied", "token", "after"):
            assert needle.encode() not in raw
        got = await c.get("secrets", "after", "default")
        assert got["data"]["token"] == B64
        assert got["metadata"]["uid"] == made["metadata"]["uid"]
        listed = (await c.list("secrets", "default"))["items"]
        assert {x["metadata"]["name"]: x["data"]["token"] for x in listed} == {
            "before": B64, "after": B64}
        cached = await c.list("secrets", "default", resource_version="0")  # the watch cache
        assert {x["data"]["token"] for x in cached["items"]} == {B64}

        status = await c.request("GET", "/encryption/status", params={"check": "secrets"})
        assert status["primaryKey"] == first and status["staleByKey"] == {"plaintext": 1}

        # An unchanged write of a Secret stored in an old form rewrites it.
        same = await c.update("secrets", before)
        assert int(same["metadata"]["resourceVersion"]) > \
            int(before["metadata"]["resourceVersion"])
        assert (await raw_get(etcd.url, "/registry/core/secrets/default/before")).startswith(
            PREFIX + first.encode())
        # ... while an unchanged write of an up-to-date one is still no write at all.
        again = await c.update("secrets", same)
        assert again["metadata"]["resourceVersion"] == same["metadata"]["resourceVersion"]

        # Rotation with the server running: new key first, rewrite, old key dropped.
        for i in range(5):
            await c.create("secrets", secret(f"more{i}"), "default")
        out = io.StringIO()
        new = await rotate(key_file, str(srv.kubeconfig), timeout=30, out=out)
        assert new != first
        assert [n for n, _ in read_keys(key_file)] == [new]
        assert "rewrote 7 secret(s)" in out.getvalue()
        for name in ("before", "after", *(f"more{i}" for i in range(5))):
            raw = await raw_get(etcd.url, f"/registry/core/secrets/default/{name}")
            assert raw.startswith(PREFIX + new.encode() + b":"), name
            got = await c.get("secrets", name, "default")
            assert got["data"]["token"] == B64
        status = await c.request("GET", "/encryption/status", params={"check": "secrets"})
        assert status == {"enabled": True, "primaryKey": new, "keys": [new],
                          "staleSecrets": 0, "staleByKey": {}}
    finally:
        await c.aclose()

    # After a restart the single new key still reads everything.
    stop_process(srv.proc)
    srv = start("--encryption-key-file", str(key_file))
    c = srv.client()
    try:
        listed = (await c.list("secrets", "default"))["items"]
        assert len(listed) == 7 and {x["data"]["token"] for x in listed} == {B64}
    finally:
        await c.aclose()


async def test_values_stay_out_of_logs_and_errors(cluster, tmp_path):
    etcd, start = cluster
    key_file = tmp_path / "keys.yaml"
    ensure_key_file(key_file)
    srv = start("--encryption-key-file", str(key_file), "-v")
    c = srv.client()
    try:
        await c.create("secrets", secret("s", immutable=True), "default")
        cur = await c.get("secrets", "s", "default")
        bad = dict(cur, data={"token": base64.b64encode(b"other-" + VALUE.encode()).decode()})
        with pytest.raises(Invalid) as err:
            await c.update("secrets", bad)
        assert err.value.causes[0] == {
            "reason": "FieldValueForbidden", "field": "data",
            "message": "Forbidden: field is immutable when `immutable` is set"}
        with pytest.raises(Invalid) as err:
            await c.update("secrets", dict(cur, immutable=False))
        assert err.value.causes[0]["field"] == "immutable"
        for body in ({"metadata": {"name": "b1"}, "data": {"token": VALUE + "!"}},  # not base64
                     {"metadata": {"name": "b2"}, "data": {"token": 5}},
                     {"metadata": {"name": "b3"}, "stringData": {"bad key!": VALUE}}):
            with pytest.raises(Exception) as err:
                await c.create("secrets", body, "default")
            assert VALUE not in str(err.value)
        # ConfigMaps: the same rule.
        await c.create("configmaps", {"metadata": {"name": "cm"}, "data": {"a": "1"},
                                      "immutable": True}, "default")
        cm = await c.get("configmaps", "cm", "default")
        with pytest.raises(Invalid) as err:
            await c.update("configmaps", dict(cm, data={"a": "2"}))
        assert "field is immutable when `immutable` is set" in err.value.message
        # `mkctl describe` shows sizes, no value, no annotation.
        r = subprocess.run([sys.executable, "-c", "import sys; from minik8s.cli.mkctl import "
                            "main; sys.exit(main(sys.argv[1:]))", "--kubeconfig",
                            str(srv.kubeconfig), "describe", "secret", "s"],
                           capture_output=True, text=True, cwd=str(ROOT), timeout=60)
        assert r.returncode == 0, r.stderr
        assert f"token:  {len(VALUE)} bytes" in r.stdout
        assert VALUE not in r.stdout and B64 not in r.stdout and "last-applied" not in r.stdout
    finally:
        await c.aclose()
    stop_process(srv.proc)
    text = srv.log.read_bytes()
    assert VALUE.encode() not in text and B64.encode() not in text
    assert b"encryption keys from" in text  # key names are logged ...
    assert base64.b64encode(read_keys(key_file)[0][1]) not in text  # ... key material not


async def test_key_report_is_for_masters_only(cluster, tmp_path):
    """``/encryption/status?check=secrets`` reads every Secret from etcd: not something for
    every authenticated identity (``/healthz/*`` is open to all of them, pods included)."""
    etcd, start = cluster
    key_file = tmp_path / "keys.yaml"
    ensure_key_file(key_file)
    srv = start("--encryption-key-file", str(key_file))
    for name, user, groups in (("alice", "alice", ()),
                               ("node", "system:node:n1", ("system:nodes",)),
                               ("sa", "system:serviceaccount:default:default",
                                ("system:serviceaccounts",))):
        async with Client.from_kubeconfig(str(srv.kubeconfig_for(name, user, groups))) as c:
            for path in ("/encryption/status", "/healthz/encryption"):
                with pytest.raises(Exception) as err:
                    await c.request("GET", path, params={"check": "secrets"})
                assert getattr(err.value, "code", None) == (403 if path.startswith(
                    "/encryption") else 404), (user, path, err.value)
            await c.request("GET", "/healthz")  # health stays open (a 403 would raise)
    c = srv.client()
    try:
        status = await c.request("GET", "/encryption/status")
        assert status["enabled"] is True and "staleSecrets" not in status
    finally:
        await c.aclose()


async def test_bad_key_file_stops_the_server_with_a_reason(tmp_path):
    bad = tmp_path / "keys.yaml"
    bad.write_text("keys:\n- name: k1\n  secret: c2hvcnQ=\n")
    r = subprocess.run([sys.executable, "-m", "minik8s.cli.main", "apiserver",
                        "--etcd-servers", "http://127.0.0.1:1", "--secure-port", "1",
                        "--pki-dir", str(tmp_path / "pki"), "--encryption-key-file", str(bad)],
                       capture_output=True, text=True, cwd=str(ROOT), timeout=60)
    assert r.returncode == 1
    assert "keys[0].secret (k1) must be 16, 24 or 32 bytes, not 5" in r.stderr
    assert "Traceback" not in r.stderr


async def test_rotation_refuses_a_server_without_encryption(cluster, tmp_path):
    etcd, start = cluster
    srv = start()
    key_file = tmp_path / "keys.yaml"
    ensure_key_file(key_file)
    before = key_file.read_text()
    r = subprocess.run([sys.executable, "-m", "minik8s.cli.main", "rotate-encryption-key",
                        "--key-file", str(key_file), "--kubeconfig", str(srv.kubeconfig)],
                       capture_output=True, text=True, cwd=str(ROOT), timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip() == "error: the API server runs without --encryption-key-file"
    assert key_file.read_text() == before  # nothing changed
