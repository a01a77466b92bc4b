"""``minik8s up --nodes 2`` makes two node namespaces on the project bridge, each able to
reach the API server at the bridge address with its own node certificate (and nothing
outside: no default route); ``down`` removes every namespace, link, route and rule it made.
The kubelets themselves are other tests' business: this one does not depend on them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from minik8s.cli import local
from minik8s.cli.netns import list_namespaces

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                                reason="needs root and iproute2")

PROBE = """
import json, ssl, sys, urllib.request
url, ca, cert, key = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)
with urllib.request.urlopen(url, context=ctx, timeout=10) as r:
    print(json.dumps({"status": r.status, "body": json.loads(r.read())}))
"""


def minik8s(home, *args, timeout=180):
    env = {**os.environ, "MINIK8S_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "minik8s.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def home(tmp_path):
    yield tmp_path
    minik8s(tmp_path, "down")


def test_up_makes_node_namespaces_and_down_removes_them(home):
    port = str(local.free_port())
    out = minik8s(home, "up", "--nodes", "2", "--port", port)
    assert out.returncode == 0, out.stderr + out.stdout
    state = json.loads((home / "run" / "netns.json").read_text())
    s = state["settings"]
    namespaces = sorted(state["namespaces"])
    assert namespaces == [f"{s['ns_prefix']}1", f"{s['ns_prefix']}2"]
    assert all(ns in list_namespaces() for ns in namespaces)
    base = s["node_range"].rsplit(".", 1)[0]
    bridge_ip = f"{base}.1"

    for i, ns in enumerate(namespaces, start=1):
        addrs = subprocess.run(["ip", "-n", ns, "-4", "-o", "addr"], capture_output=True,
                               text=True).stdout
        assert f"{base}.{10 + i}/24" in addrs
        routes = subprocess.run(["ip", "-n", ns, "route"], capture_output=True, text=True).stdout
        assert "default" not in routes
        # The node's kubeconfig points at the bridge address; its certificate is accepted.
        kubeconfig = (home / "nodes" / f"node-{i}" / "kubeconfig").read_text()
        assert f"https://{bridge_ip}:{port}" in kubeconfig
        pki = home / "pki"
        probe = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", PROBE,
             f"https://{bridge_ip}:{port}/api/v1/nodes", str(pki / "ca.crt"),
             str(pki / f"node-node-{i}.crt"), str(pki / f"node-node-{i}.key")],
            capture_output=True, text=True, timeout=30)
        assert probe.returncode == 0, probe.stderr
        assert json.loads(probe.stdout)["status"] == 200

    status = minik8s(home, "status")
    assert "node-1" in status.stdout and "node-2" in status.stdout

    down = minik8s(home, "down")
    assert down.returncode == 0, down.stderr
    assert f"bridge {s['bridge']}" in down.stdout
    assert all(ns not in list_namespaces() for ns in namespaces)
    assert subprocess.run(["ip", "link", "show", "dev", s["bridge"]],
                          capture_output=True).returncode != 0
    host_routes = subprocess.run(["ip", "route", "show", "table", "all"], capture_output=True,
                                 text=True).stdout
    assert s["cluster_cidr"] not in host_routes and s["node_range"] not in host_routes
    assert s["cluster_cidr"].rsplit(".", 2)[0] + "." not in host_routes
    if shutil.which("iptables"):
        rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
        assert f"-i {s['bridge']} -o {s['bridge']}" not in rules
    assert not (home / "run" / "netns.json").exists()
