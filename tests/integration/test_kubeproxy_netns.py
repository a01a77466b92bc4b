"""Both kube-proxy backends against the real kernel, in a throwaway network namespace (made
and deleted here; no Docker, no API server): a veth pair inside it carries two "endpoints"
(TCP servers answering their name), and a client in the same namespace connects to a
ClusterIP. Checked: the service bridge and route come first; connections spread over both
endpoints; a Service with no endpoints refuses at once; an endpoint removed stops getting
connections; ``cleanup`` (``--cleanup``) leaves no chain, no jump, no address and no bridge.

Run under the e2e lock (it changes iptables), as every test of this kind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("iptables") is None,
    reason="needs root, iproute2 and iptables")

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import asyncio, json, socket, sys
from kubeproxy import netsetup, iptables
from kubeproxy.servicemap import build_service_map
from kubeproxy.userspace import UserspaceBackend

mode = sys.argv[1]
EPS = [("10.123.0.1", 8001), ("10.123.0.2", 8002)]

def svc(name, ip):
    return {"metadata": {"namespace": "default", "name": name},
            "spec": {"type": "NodePort", "clusterIP": ip,
                     "ports": [{"name": "http", "port": 80,
                                "nodePort": 30099 if name == "web" else 30098}]}}

def eps(addrs):
    return {"metadata": {"namespace": "default", "name": "web"},
            "subsets": [{"addresses": [{"ip": ip}], "ports": [{"name": "http", "port": port}]}
                        for ip, port in addrs]}

async def serve(ip, port):
    async def handle(r, w):
        w.write(f"{ip}:{port}".encode()); await w.drain(); w.close()
    return await asyncio.start_server(handle, ip, port)

async def connect(ip, port):
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(ip, port), 5)
    except ConnectionRefusedError:
        return "refused"
    except asyncio.TimeoutError:
        return "timeout"
    data = await asyncio.wait_for(r.read(), 5)
    w.close()
    return data.decode() or "empty"

async def main():
    out = {}
    await asyncio.to_thread(netsetup.ensure_service_bridge, "10.96.0.0/12")
    out["route"] = open("/proc/net/route").read()
    servers = [await serve(ip, port) for ip, port in EPS]
    services = [svc("web", "10.96.0.50"), svc("empty", "10.96.0.51")]
    if mode == "iptables":
        backend = iptables.IptablesBackend(iptables.Iptables(), cluster_cidr="10.244.0.0/16")
    else:
        backend = UserspaceBackend()
    await backend.sync(build_service_map(services, [eps(EPS)]))
    await backend.sync(build_service_map(services, [eps(EPS)]))  # idempotent
    out["both"] = [await connect("10.96.0.50", 80) for _ in range(40)]
    out["nodeport"] = await connect("10.123.0.1", 30099)
    out["empty"] = await connect("10.96.0.51", 80)
    out["empty_nodeport"] = await connect("10.123.0.2", 30098)
    await backend.sync(build_service_map(services, [eps(EPS[1:])]))
    out["one"] = [await connect("10.96.0.50", 80) for _ in range(10)]
    if mode == "iptables":
        ipt = iptables.Iptables()
        out["saved"] = await ipt.save("nat") + await ipt.save("filter")
    await backend.close()
    out["removed"] = await iptables.cleanup(iptables.Iptables())
    out["after"] = await iptables.Iptables().save("nat") + await iptables.Iptables().save("filter")
    out["addresses"] = sorted(await asyncio.to_thread(netsetup.bound_addresses))
    out["bridge_removed"] = await asyncio.to_thread(netsetup.teardown_service_bridge)
    for s in servers:
        s.close()
    print(json.dumps(out))

asyncio.run(main())
"""


@pytest.fixture
def netns():
    name = f"mk8s-kptest-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for cmd in (["link", "set", "lo", "up"],
                    ["link", "add", "kpa", "type", "veth", "peer", "name", "kpb"],
                    ["addr", "add", "10.123.0.1/24", "dev", "kpa"],
                    ["addr", "add", "10.123.0.2/24", "dev", "kpb"],
                    ["link", "set", "kpa", "up"], ["link", "set", "kpb", "up"]):
            subprocess.run(["ip", "-n", name, *cmd], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


@pytest.mark.parametrize("mode", ["iptables", "userspace"])
def test_backend_in_a_throwaway_namespace(netns, mode):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", SCRIPT, mode],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # the service CIDR (0A60 0000 /12, little-endian in /proc) routed to the bridge
    assert any(line.startswith("mk8s-svc\t0000600A") for line in out["route"].splitlines())
    assert set(out["both"]) == {"10.123.0.1:8001", "10.123.0.2:8002"}, out["both"]
    assert out["nodeport"] in ("10.123.0.1:8001", "10.123.0.2:8002")
    assert out["empty"] == "refused" and out["empty_nodeport"] == "refused"
    assert set(out["one"]) == {"10.123.0.2:8002"}
    if mode == "iptables":
        assert "KUBE-SVC-" in out["saved"] and "-j KUBE-SERVICES" in out["saved"]
    assert "KUBE-" not in out["after"], out["after"]
    assert out["addresses"] == [] and out["bridge_removed"] is True
