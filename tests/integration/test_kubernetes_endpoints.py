"""The `default/kubernetes` Endpoints with two API servers on one etcd (as when a second
cluster's server is pointed at the same etcd, or in an HA pair on different ports): both
compute the same objects, so neither rewrites what the other wrote; a loopback address
(useless to pods, whose 127.0.0.1 is their own) is left out while a routable one exists; a
server that stops removes its record, and the other lists itself again."""

from __future__ import annotations

import asyncio

import aetcd

from cluster import eventually, start_apiserver, start_etcd, stop_process


async def lease_keys(etcd) -> set[str]:
    prefix = "/registry/masterleases/"
    async with aetcd.Client(host="127.0.0.1", port=etcd.port) as client:
        return {kv.key.decode()[len(prefix):] for kv in await client.get_prefix(prefix.encode())}


async def _get(c, plural):
    try:
        return await c.get(plural, "kubernetes", "default")
    except Exception:
        return None


def _subsets(port: int, ip: str) -> list[dict]:
    return [{"addresses": [{"ip": ip}],
             "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]


async def test_two_servers_agree_and_loopback_is_left_out(tmp_path):
    etcd = start_etcd(tmp_path)
    config = tmp_path / "apiserver.yaml"
    config.write_text("kubernetes_service_sync_seconds: 0.3\n")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = start_apiserver(tmp_path / "a", etcd, "--config", str(config))  # 127.0.0.1 only
    b = start_apiserver(tmp_path / "b", etcd, "--advertise-address", "10.250.9.1",
                        "--config", str(config))
    c = a.client()
    try:
        async def only_b():
            e = await _get(c, "endpoints")
            return e if e and e.get("subsets") == _subsets(b.port, "10.250.9.1") else None
        first = await eventually(only_b)
        svc = await _get(c, "services")
        assert svc["spec"]["ports"][0]["targetPort"] in (a.port, b.port)
        await asyncio.sleep(2.0)  # several rounds of both servers
        assert (await _get(c, "endpoints"))["metadata"]["resourceVersion"] == \
            first["metadata"]["resourceVersion"]
        assert (await _get(c, "services"))["metadata"]["resourceVersion"] == \
            svc["metadata"]["resourceVersion"]

        assert f"10.250.9.1:{b.port}" in await lease_keys(etcd)
        stop_process(b.proc)
        # a clean stop removes the server's own record at once
        assert f"10.250.9.1:{b.port}" not in await lease_keys(etcd)

        async def only_a():
            e, s = await _get(c, "endpoints"), await _get(c, "services")
            return (e and e.get("subsets") == _subsets(a.port, "127.0.0.1")
                    and s["spec"]["ports"][0]["targetPort"] == a.port)
        await eventually(only_a)
    finally:
        await c.aclose()
        stop_process(b.proc)
        stop_process(a.proc)
        stop_process(etcd.proc)
