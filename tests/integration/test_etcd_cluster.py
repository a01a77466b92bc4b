"""``minik8s init --etcd-servers`` against an external etcd cluster of three members, each
speaking only TLS with client and peer certificates required: the API server works, and
keeps working when the member it talks to is stopped (reads are resent to the next member,
watches resume there)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from cluster import eventually
from minik8s.api.errors import ServiceUnavailable
from minik8s.cli import local
from minik8s.client import Client
from minik8s.pki.etcd import ensure_etcd_pki

pytestmark = pytest.mark.integration


def minik8s(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "minik8s.cli.main", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def etcd_cluster(tmp_path):
    """Three TLS-only etcd members on loopback: (client URLs, etcd PKI, processes)."""
    pki = ensure_etcd_pki(tmp_path / "etcd-pki", members=("m1", "m2", "m3"))
    ports = {m: (local.free_port(), local.free_port()) for m in ("m1", "m2", "m3")}
    initial = ",".join(f"{m}=https://127.0.0.1:{peer}" for m, (_, peer) in ports.items())
    procs: dict[str, subprocess.Popen] = {}
    try:
        for m, (client, peer) in ports.items():
            cmd = local.etcd_command(tmp_path / f"data-{m}", client, peer, name=m,
                                     tls=pki.tls_files(m), initial_cluster=initial)
            procs[m] = subprocess.Popen(cmd, stdout=open(tmp_path / f"{m}.log", "wb"),
                                        stderr=subprocess.STDOUT)
        urls = [f"https://127.0.0.1:{ports[m][0]}" for m in ("m1", "m2", "m3")]
        cert, key = pki.client
        deadline = time.monotonic() + 60
        while True:
            health = subprocess.run(
                ["etcdctl", "--endpoints", ",".join(urls), "--cacert", str(pki.ca_cert),
                 "--cert", str(cert), "--key", str(key), "endpoint", "health"],
                capture_output=True, text=True, env={"ETCDCTL_API": "3", "PATH": "/usr/bin"})
            if health.returncode == 0:
                break
            assert time.monotonic() < deadline, health.stdout + health.stderr
            time.sleep(0.3)
        yield urls, pki, procs
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
                p.wait(10)


def test_init_refuses_https_etcd_without_certificates(tmp_path):
    out = minik8s("init", "--home", str(tmp_path / "h"), "--advertise-address", "127.0.0.1",
                  "--port", str(local.free_port()), "--etcd-servers", "https://127.0.0.1:1",
                  "--skip-node")
    assert out.returncode == 1
    assert "need --etcd-cafile, --etcd-certfile and --etcd-keyfile" in out.stderr


async def test_api_survives_a_stopped_etcd_member(tmp_path, etcd_cluster):
    urls, pki, procs = etcd_cluster
    home = tmp_path / "master"
    cert, key = pki.client
    out = minik8s("init", "--home", str(home), "--advertise-address", "127.0.0.1",
                  "--port", str(local.free_port()), "--etcd-servers", ",".join(urls),
                  "--etcd-cafile", str(pki.ca_cert), "--etcd-certfile", str(cert),
                  "--etcd-keyfile", str(key), "--skip-node")  # the control plane only
    client = None
    try:
        assert out.returncode == 0, out.stdout + out.stderr
        assert not (home / "etcd").exists()  # no etcd of its own
        client = Client.from_kubeconfig(str(home / "kubeconfig"))
        await client.create("configmaps", {"metadata": {"name": "before"},
                                           "data": {"k": "v"}}, "default")
        seen: list[str] = []

        async def watch():
            async for ev in client.watch("configmaps", "default"):
                if ev.get("type") in ("ADDED", "MODIFIED"):
                    seen.append(ev["object"]["metadata"]["name"])
        watcher = asyncio.create_task(watch())

        # reads in flight while the member goes away: each one is resent to the next
        # member or asks for a retry (503), never fails otherwise (a call meeting the
        # switch half done was a 500)
        reads: list[int] = []
        errors: list[BaseException] = []
        stop = asyncio.Event()

        async def reader() -> None:
            while not stop.is_set():
                try:
                    got = await client.get("configmaps", "before", "default")
                    assert got["data"] == {"k": "v"}
                    reads.append(1)
                except ServiceUnavailable:
                    pass
                except Exception as exc:  # noqa: BLE001 - any other error fails the test
                    errors.append(exc)
                    return
        async def reads_past(n: int) -> bool:
            return len(reads) >= n or bool(errors)
        readers = [asyncio.create_task(reader()) for _ in range(16)]
        await eventually(lambda: reads_past(16), timeout=60)

        procs["m1"].terminate()  # the member the API server talks to first
        await asyncio.to_thread(procs["m1"].wait, 10)
        # reads go on, served by another member
        got = await client.get("configmaps", "before", "default")
        assert got["data"] == {"k": "v"}
        after = len(reads)
        await eventually(lambda: reads_past(after + 16), timeout=60)
        stop.set()
        await asyncio.gather(*readers)
        assert errors == [], [repr(e) for e in errors]
        # writes too (one may meet the failover with a 503 that asks for a retry)
        for i in range(5):
            for attempt in range(20):
                try:
                    await client.create("configmaps", {"metadata": {"name": f"after-{i}"}},
                                        "default")
                    break
                except ServiceUnavailable:
                    await asyncio.sleep(0.5)
            else:
                pytest.fail("writes kept failing after one etcd member stopped")
        names = {c["metadata"]["name"] for c in
                 (await client.list("configmaps", "default"))["items"]}
        assert {"before", *(f"after-{i}" for i in range(5))} <= names
        async def watched_all() -> bool:
            return {f"after-{i}" for i in range(5)} <= set(seen)
        await eventually(watched_all, timeout=60,
                         message="the watch stopped after the failover")
        watcher.cancel()
        log = (home / "logs" / "apiserver.log").read_text()
        assert "unreachable; using" in log
    finally:
        if client is not None:
            await client.aclose()
        minik8s("reset", "--home", str(home))
