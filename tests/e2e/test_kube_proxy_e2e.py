"""Services through kube-proxy on ``minik8s up --nodes 3`` (a subprocess in a temporary
MINIK8S_HOME), once per backend (``--proxy-mode iptables`` and ``userspace``): a 3-replica
busybox httpd Deployment serving its hostname behind a NodePort Service, its Endpoints
written by the endpoints controller, and a client pod.

Checked, with real iptables (or real listeners) in the node namespaces: responses through the
ClusterIP spread over all 3 pods (from a pod and from the host, through the host's route to
node-1); the NodePort answers on every node's address and on each node's own loopback; a pod
reaches itself through its Service (hairpin); a Service with no endpoints refuses at once
(``Connection refused``, not a timeout); a pod turning unready stops getting traffic;
scaling up and down is followed; ClientIP affinity pins a client; SIGTERM removes the rules
(or listeners) and ``minik8s kube-proxy --cleanup`` also the service bridge."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from minik8s.cli import local
from minik8s.client import Client
from e2e_helpers import other_node_1_kubelets

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("iptables") is None,
                       reason="node namespaces and iptables need root"),
]

NS = "default"
WEB_IP, EMPTY_IP = "10.96.100.10", "10.96.100.11"
WEB_NODE_PORT, EMPTY_NODE_PORT = 30080, 30081
BUSY_WAIT = 900.0

WEB_CMD = ("mkdir -p /www && hostname > /www/index.html && touch /tmp/ready && "
           "exec httpd -f -p 80 -h /www")


def minik8s(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "MINIK8S_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "minik8s.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def sh(*cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def container_of(pod: str) -> str:
    out = sh("docker", "ps", "-q", "--filter", f"label=io.minik8s.pod.name={pod}",
             "--filter", "label=io.minik8s.kind=app", "--filter",
             f"label=io.minik8s.pod.namespace={NS}").stdout.split()
    assert len(out) == 1, f"containers of {pod}: {out}"
    return out[0]


def in_pod(pod: str, script: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return sh("docker", "exec", container_of(pod), "sh", "-c", script, timeout=timeout)


def fetch_many(pod: str, url: str, n: int = 30) -> list[str]:
    """``n`` GETs from inside ``pod``, one line each: the body, or ``ERR``."""
    out = in_pod(pod, f"for i in $(seq {n}); do wget -qO- -T 3 {url} || echo ERR; done")
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def host_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read().decode().strip()


async def wait(pred, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            got = await pred()
        except AssertionError:
            raise
        except Exception as exc:  # e.g. a container not there yet
            got, last = None, exc
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}"
                                 + (f" (last error: {last})" if last else ""))
        await asyncio.sleep(interval)


def web_deployment(replicas: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                         "terminationGracePeriodSeconds": 1,
                         "containers": [{
                             "name": "web", "image": "minik8s/busybox:1.35",
                             "command": ["sh", "-c", WEB_CMD],
                             "ports": [{"name": "http", "containerPort": 80}],
                             "readinessProbe": {"exec": {"command": ["test", "-f",
                                                                     "/tmp/ready"]},
                                                "periodSeconds": 1, "failureThreshold": 1},
                             "resources": {"requests": {"cpu": "10m", "memory": "8Mi"}}}]}}}}


def service(name: str, ip: str, node_port: int, app: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
            "spec": {"type": "NodePort", "clusterIP": ip, "selector": {"app": app},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http",
                                "nodePort": node_port}]}}


class Cluster:
    def __init__(self, home: Path, mode: str, client: Client):
        self.home, self.mode, self.client = home, mode, client
        net = json.loads((home / "run" / "netns.json").read_text())
        s = net["settings"]
        base = s["node_range"].rsplit(".", 1)[0]
        self.nodes = {f"node-{i}": (f"{s['ns_prefix']}{i}", f"{base}.{10 + i}")
                      for i in sorted(net["namespaces"].values())}

    async def web_pods(self, ready_only: bool = True) -> list[dict]:
        pods = (await self.client.list("pods", NS, label_selector="app=web"))["items"]
        return [p for p in pods if not p["metadata"].get("deletionTimestamp") and (
            not ready_only or any(c.get("type") == "Ready" and c.get("status") == "True"
                                  for c in (p.get("status") or {}).get("conditions") or []))]

    async def endpoint_ips(self, name: str = "web") -> set[str]:
        ep = await self.client.get("endpoints", name, NS)
        return {a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or []}

    async def wait_web(self, n: int) -> list[str]:
        """Wait for exactly ``n`` ready web pods, all in the Endpoints; their names."""
        async def ok():
            pods = await self.web_pods()
            all_pods = await self.web_pods(ready_only=False)
            ips = {p["status"].get("podIP") for p in pods}
            return (len(pods) == n and len(all_pods) == n
                    and await self.endpoint_ips() == ips and pods)
        pods = await wait(ok, 180, f"{n} ready web pods in the Endpoints")
        return sorted(p["metadata"]["name"] for p in pods)


@pytest.fixture(scope="module", params=["iptables", "userspace"])
async def cluster(request, tmp_path_factory):
    deadline = time.monotonic() + BUSY_WAIT
    while other_node_1_kubelets():
        if time.monotonic() > deadline:
            pytest.fail("another local cluster with a node-1 kubelet kept running")
        await asyncio.sleep(5)
    mode = request.param
    home = tmp_path_factory.mktemp(f"kp-{mode}")
    out = await asyncio.to_thread(minik8s, home, "up", "--nodes", "3", "--port",
                                  str(local.free_port()), "--proxy-mode", mode)
    client = None
    try:
        assert out.returncode == 0, out.stdout + out.stderr
        client = Client.from_kubeconfig(str(home / "kubeconfig"))
        c = Cluster(home, mode, client)
        await client.create("deployments", web_deployment(3), NS)
        await client.create("services", service("web", WEB_IP, WEB_NODE_PORT, "web"), NS)
        await client.create("services", service("empty", EMPTY_IP, EMPTY_NODE_PORT, "none"),
                            NS)
        await client.create("pods", {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "namespace": NS},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                "name": "client", "image": "minik8s/busybox:1.35",
                "command": ["sleep", "3600"]}]}}, NS)

        async def client_running():
            p = await client.get("pods", "client", NS)
            return (p.get("status") or {}).get("phase") == "Running"
        await wait(client_running, 120, "the client pod Running")
        await c.wait_web(3)
        yield c
    finally:
        if client is not None:
            await client.aclose()
        down = await asyncio.to_thread(minik8s, home, "down")
        assert down.returncode == 0, down.stdout + down.stderr
        assert sh("ip", "route", "show", "exact", "10.96.0.0/12").stdout.strip() == ""


async def spread(c: Cluster, url: str, want: set[str], pod: str = "client") -> list[str]:
    """Fetch until every name in ``want`` answered and nothing else did; the last batch."""
    async def ok():
        got = await asyncio.to_thread(fetch_many, pod, url)
        return got if set(got) == want else None
    return await wait(ok, 60, f"responses from exactly {sorted(want)} through {url}", 1)


async def test_cluster_ip_spreads_over_all_pods(cluster):
    c = cluster
    names = await c.wait_web(3)
    got = await spread(c, f"http://{WEB_IP}/", set(names))
    assert "ERR" not in got
    # the named service port also resolves through the kube-proxy's service map by name
    # from the host: the service CIDR is routed via node-1, which masquerades the host
    seen = set()
    for _ in range(30):
        seen.add(await asyncio.to_thread(host_get, f"http://{WEB_IP}/"))
    assert seen == set(names), seen


async def test_node_port_on_every_node_address_and_loopback(cluster):
    c = cluster
    names = set(await c.wait_web(3))
    for node, (netns, ip) in c.nodes.items():
        body = await asyncio.to_thread(host_get, f"http://{ip}:{WEB_NODE_PORT}/")
        assert body in names, (node, body)
        probe = sh("ip", "netns", "exec", netns, sys.executable, "-c",
                   "import urllib.request, sys; print(urllib.request.urlopen("
                   f"'http://127.0.0.1:{WEB_NODE_PORT}/', timeout=5).read().decode())")
        assert probe.returncode == 0 and probe.stdout.strip() in names, (node, probe.stderr)
    # a pod reaches the NodePort on another node's address too
    other = c.nodes["node-2"][1]
    got = await asyncio.to_thread(fetch_many, "client", f"http://{other}:{WEB_NODE_PORT}/", 5)
    assert set(got) <= names and got, got


async def test_pod_reaches_itself_through_its_service(cluster):
    c = cluster
    names = await c.wait_web(3)
    me = names[0]
    got = await spread(c, f"http://{WEB_IP}/", set(names), pod=me)
    assert me in got


async def test_service_without_endpoints_refuses_at_once(cluster):
    c = cluster
    assert await c.endpoint_ips("empty") == set()
    out = in_pod("client", f"wget -qO- -T 20 http://{EMPTY_IP}/; echo rc=$?")
    assert "rc=1" in out.stdout
    assert "Connection refused" in out.stderr, out.stderr  # a timeout would say so
    for ip, port in [(EMPTY_IP, 80), (c.nodes["node-3"][1], EMPTY_NODE_PORT)]:
        with socket.socket() as s:
            s.settimeout(20)
            with pytest.raises(ConnectionRefusedError):
                s.connect((ip, port))


async def test_unready_pod_stops_getting_traffic(cluster):
    c = cluster
    names = await c.wait_web(3)
    victim = names[1]
    in_pod(victim, "rm /tmp/ready")
    try:
        async def out_of_endpoints():
            pods = await c.web_pods()
            return len(pods) == 2 and len(await c.endpoint_ips()) == 2
        await wait(out_of_endpoints, 60, f"{victim} unready and out of the Endpoints")
        got = await spread(c, f"http://{WEB_IP}/", set(names) - {victim})
        assert victim not in got
    finally:
        in_pod(victim, "touch /tmp/ready")
    await c.wait_web(3)


async def test_scale_up_and_down_is_followed(cluster):
    c = cluster
    await c.client.patch("deployments", "web", {"spec": {"replicas": 4}}, NS)
    names = await c.wait_web(4)
    await spread(c, f"http://{WEB_IP}/", set(names))
    await c.client.patch("deployments", "web", {"spec": {"replicas": 2}}, NS)
    names = await c.wait_web(2)
    got = await spread(c, f"http://{WEB_IP}/", set(names))
    assert "ERR" not in got
    await c.client.patch("deployments", "web", {"spec": {"replicas": 3}}, NS)
    await c.wait_web(3)


async def test_client_ip_affinity_pins_a_client(cluster):
    c = cluster
    names = await c.wait_web(3)
    await c.client.patch("services", "web", {"spec": {"sessionAffinity": "ClientIP"}}, NS)
    try:
        async def pinned():
            got = await asyncio.to_thread(fetch_many, "client", f"http://{WEB_IP}/", 15)
            return got if len(set(got)) == 1 and got[0] in names else None
        await wait(pinned, 60, "all responses from one pod")
    finally:
        await c.client.patch("services", "web", {"spec": {"sessionAffinity": "None"}}, NS)


def node_state(netns: str) -> tuple[str, str, str]:
    rules = sh("ip", "netns", "exec", netns, "iptables-save").stdout
    link = sh("ip", "-n", netns, "-o", "addr", "show", "dev", "mk8s-svc")
    return rules, link.stdout if link.returncode == 0 else "", str(link.returncode)


async def test_sigterm_and_cleanup_remove_everything(cluster):
    """Last in the module: node-3's kube-proxy is stopped for good."""
    c = cluster
    netns, _ = c.nodes["node-3"]
    rules, addrs, _ = node_state(netns)
    if c.mode == "iptables":
        assert ":KUBE-SERVICES" in rules and "KUBE-SVC-" in rules
        assert "block incoming localnet connections" in rules
        assert "REJECT" in rules and "--probability 0.33333" in rules
    else:
        assert f"{WEB_IP}/32" in addrs and "KUBE-" not in rules
    assert await asyncio.to_thread(local.stop, local.Home(c.home), "kube-proxy-node-3")
    rules, addrs, rc = node_state(netns)
    assert "KUBE-" not in rules, rules
    assert rc == "0" and "10.96." not in addrs  # the bridge stays, with nothing bound
    out = sh("ip", "netns", "exec", netns, sys.executable, "-m", "minik8s.cli.main",
             "kube-proxy", "--cleanup")
    assert out.returncode == 0, out.stderr
    assert "bridge mk8s-svc" in out.stdout
    rules, _, rc = node_state(netns)
    assert "KUBE-" not in rules and rc != "0"
    assert "10.96.0.0/12" not in sh("ip", "-n", netns, "route").stdout
