"""Cluster DNS with real resolvers.

First in a container of the pods' image (``minik8s/busybox:1.35``, network ``none``) with the
resolv.conf the kubelet writes, against ``ClusterDNS`` started inside that container's network
namespace on 127.0.0.1:53: busybox's own resolver (``nslookup``) and static glibc's
(``wget``, through the search list and ``ndots:5``), and ``wget -T`` that Debian's busybox
build crashes on. Then on ``minik8s up --nodes 2`` (a subprocess in a temporary MINIK8S_HOME,
where kube-proxy serves DNS on each node's address): a pod on each node finds a Service by
short and full name through its own node's DNS, a headless Service by its pods' addresses,
and unknown names fail at once."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from e2e_helpers import BUSYBOX, ROOT, other_node_1_kubelets
from minik8s.cli import local
from minik8s.client import Client

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("nsenter") is None,
                       reason="network namespaces need root and nsenter"),
]

NS = "default"
SEARCH = "search default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"


def sh(*cmd: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


# --- the image's resolvers against ClusterDNS in the container's namespace -----------------

SERVER = """
import asyncio, json, sys
from kubeproxy.dns import ClusterDNS
from minik8s.cache.store import Store
services, endpoints = Store(), Store()
for obj in json.loads(sys.argv[1]):
    (services if obj["kind"] == "Service" else endpoints).add(obj)
async def main():
    dns = ClusterDNS(services, endpoints, listen="127.0.0.1", port=53)
    task = asyncio.get_running_loop().create_task(dns.start())
    await dns.ready.wait()
    print("ready", flush=True)
    await task
asyncio.run(main())
"""

OBJECTS = [
    {"kind": "Service", "metadata": {"name": "web", "namespace": NS},
     # the ClusterIP is the container's own loopback: httpd in the container answers
     "spec": {"clusterIP": "127.0.0.1", "ports": [{"name": "http", "port": 80}]}},
    {"kind": "Service", "metadata": {"name": "db", "namespace": NS},
     "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}},
    {"kind": "Endpoints", "metadata": {"name": "db", "namespace": NS}, "subsets": [{
        "addresses": [{"ip": "10.244.1.5", "hostname": "db-0"}, {"ip": "10.244.2.6"}],
        "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}]},
]


@pytest.fixture(scope="module")
def dns_container(busybox_image, tmp_path_factory):
    folder = tmp_path_factory.mktemp("dns-image")
    resolv = folder / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\n" + SEARCH)
    name = f"minik8s-dns-e2e-{uuid.uuid4().hex[:8]}"
    server = None
    try:
        run = sh("docker", "run", "-d", "--pull", "never", "--init", "--network", "none",
                 "--name", name, "-v", f"{resolv}:/etc/resolv.conf:ro", busybox_image, "sh",
                 "-c", "mkdir /www && echo hello > /www/index.html && httpd -p 80 -h /www "
                       "&& exec sleep 600")
        assert run.returncode == 0, run.stderr
        pid = sh("docker", "inspect", "-f", "{{.State.Pid}}", name).stdout.strip()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        server = subprocess.Popen(
            ["nsenter", "-t", pid, "-n", sys.executable, "-c", SERVER, json.dumps(OBJECTS)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line = server.stdout.readline()
        assert line.strip() == "ready", server.stderr.read() if server.poll() is not None else line
        yield name
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        sh("docker", "rm", "-f", name)


def in_container(name: str, script: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return sh("docker", "exec", name, "sh", "-c", script, timeout=timeout)


def test_busybox_nslookup_finds_short_and_full_names(dns_container):
    out = in_container(dns_container, "nslookup web")
    # busybox's nslookup asks every search domain and reports the misses (exit status 1)
    assert "Name:\tweb.default.svc.cluster.local\nAddress: 127.0.0.1" in out.stdout, out
    out = in_container(dns_container, "nslookup db.default.svc.cluster.local")
    assert out.stdout.count("Name:\tdb.default.svc.cluster.local") == 2, out
    assert "Address: 10.244.1.5" in out.stdout and "Address: 10.244.2.6" in out.stdout
    out = in_container(dns_container,
                       "nslookup -type=srv _pg._tcp.db.default.svc.cluster.local")
    assert "db-0.db.default.svc.cluster.local" in out.stdout, out
    assert "10-244-2-6.db.default.svc.cluster.local" in out.stdout, out
    out = in_container(dns_container, "nslookup nope.default.svc.cluster.local")
    assert out.returncode != 0 and "NXDOMAIN" in out.stdout, out


def test_glibc_resolver_in_wget_follows_the_search_list(dns_container):
    for url in ("http://web/", "http://web.default/", "http://web.default.svc.cluster.local/",
                "http://WEB.Default.SVC.cluster.local./"):
        out = in_container(dns_container, f"wget -qO- -T 5 {url}")
        assert (out.returncode, out.stdout.strip()) == (0, "hello"), (url, out)
    # unknown names and names outside the domain fail at once, not after a timeout
    for host in ("nope", "nope.example.com", "example.com"):
        start = time.monotonic()
        out = in_container(dns_container, f"wget -qO- -T 10 http://{host}/")
        assert out.returncode == 1 and f"bad address '{host}'" in out.stderr, (host, out)
        assert time.monotonic() - start < 5, host
    # /etc/hosts first (hosts: files dns): no query for localhost
    out = in_container(dns_container, "wget -qO- http://localhost/")
    assert out.stdout.strip() == "hello", out


def test_wget_timeout_option_works(dns_container):
    """Debian's busybox wget segfaults on -T; the image's wrapper runs it under timeout."""
    out = in_container(dns_container, "wget -q -T 2 -O - http://127.0.0.1/; echo rc=$?")
    assert out.stdout.split() == ["hello", "rc=0"], out
    out = in_container(dns_container, "(sleep 20 | nc -l -p 8081 &) ; sleep 0.3; "
                                      "wget -q -T 1 -O - http://127.0.0.1:8081/; echo rc=$?")
    assert "rc=143" in out.stdout, out  # ended by the timeout, not a crash (139)


# --- through kube-proxy on minik8s up --nodes 2 ------------------------------------------


def minik8s(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    # the daemons it starts import this tree whatever the installed copy points at
    path = os.pathsep.join(x for x in (str(ROOT), os.environ.get("PYTHONPATH")) if x)
    env = {**os.environ, "MINIK8S_HOME": str(home), "PYTHONPATH": path}
    return subprocess.run([sys.executable, "-m", "minik8s.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


async def wait(pred, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            got = await pred()
        except AssertionError:
            raise
        except Exception as exc:
            got, last = None, exc
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}"
                                 + (f" (last error: {last})" if last else ""))
        await asyncio.sleep(interval)


def pod_exec(pod: str, script: str, timeout: float = 60) -> subprocess.CompletedProcess:
    ids = sh("docker", "ps", "-q", "--filter", f"label=io.minik8s.pod.name={pod}",
             "--filter", "label=io.minik8s.kind=app", "--filter",
             f"label=io.minik8s.pod.namespace={NS}").stdout.split()
    assert len(ids) == 1, f"containers of {pod}: {ids}"
    return sh("docker", "exec", ids[0], "sh", "-c", script, timeout=timeout)


WEB = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": NS},
       "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "web", "image": BUSYBOX, "command": [
                        "sh", "-c", "mkdir -p /www && hostname > /www/index.html && "
                                    "exec httpd -f -p 80 -h /www"],
                        "ports": [{"name": "http", "containerPort": 80}]}]}}}}


def service(name: str, cluster_ip: str | None = None) -> dict:
    spec = {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80,
                                                  "targetPort": "http"}]}
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
            "spec": spec}


def client_pod(name: str, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1, "containers": [
                {"name": "c", "image": BUSYBOX, "command": ["sleep", "3600"]}]}}


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory, busybox_image):
    deadline = time.monotonic() + 900
    while other_node_1_kubelets():
        if time.monotonic() > deadline:
            pytest.fail("another local cluster with a node-1 kubelet kept running")
        await asyncio.sleep(5)
    home = tmp_path_factory.mktemp("dns-up")
    out = await asyncio.to_thread(minik8s, home, "up", "--nodes", "2", "--port",
                                  str(local.free_port()))
    client = None
    try:
        assert out.returncode == 0, out.stdout + out.stderr
        client = Client.from_kubeconfig(str(home / "kubeconfig"))
        net = json.loads((home / "run" / "netns.json").read_text())
        s = net["settings"]
        base = s["node_range"].rsplit(".", 1)[0]
        node_ips = {f"node-{i}": f"{base}.{10 + i}" for i in sorted(net["namespaces"].values())}
        await client.create("deployments", WEB, NS)
        await client.create("services", service("web"), NS)
        await client.create("services", service("web-headless", "None"), NS)
        for node in node_ips:
            await client.create("pods", client_pod(f"client-{node}", node), NS)

        async def ready():
            pods = (await client.list("pods", NS))["items"]
            running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
            if len(running) != len(pods) or len(pods) != 2 + len(node_ips):
                return None
            ep = await client.get("endpoints", "web-headless", NS)
            ips = {a["ip"] for sub in ep.get("subsets") or [] for a in sub.get("addresses") or []}
            return ips if len(ips) == 2 else None
        await wait(ready, 180, "web pods in the Endpoints and the client pods running")
        yield client, node_ips
    finally:
        if client is not None:
            await client.aclose()
        down = await asyncio.to_thread(minik8s, home, "down")
        assert down.returncode == 0, down.stdout + down.stderr


async def test_pods_resolve_services_through_their_nodes_dns(cluster):
    client, node_ips = cluster
    web = await client.get("services", "web", NS)
    cluster_ip = web["spec"]["clusterIP"]
    pods = (await client.list("pods", NS, label_selector="app=web"))["items"]
    names = {p["metadata"]["name"] for p in pods}
    pod_ips = {p["status"]["podIP"] for p in pods}
    for node, node_ip in node_ips.items():
        pod = f"client-{node}"
        resolv = pod_exec(pod, "cat /etc/resolv.conf").stdout
        assert f"nameserver {node_ip}\n" in resolv and "ndots:5" in resolv, resolv

        async def short_and_full():
            got = set()
            for host in ("web", "web.default", "web.default.svc.cluster.local"):
                out = await asyncio.to_thread(pod_exec, pod, f"wget -qO- -T 5 http://{host}/")
                if out.returncode != 0:
                    return None
                got.add(out.stdout.strip())
            return got
        got = await wait(short_and_full, 60, f"{pod} reaching web by name")
        assert got <= names, got
        out = await asyncio.to_thread(pod_exec, pod, "nslookup web")
        assert f"Name:\tweb.default.svc.cluster.local\nAddress: {cluster_ip}" in out.stdout, out
        out = await asyncio.to_thread(pod_exec, pod, "nslookup web-headless")
        found = {line.split()[-1] for line in out.stdout.splitlines()
                 if line.startswith("Address:") and "#" not in line and ":53" not in line}
        assert found == pod_ips, out.stdout
        out = await asyncio.to_thread(pod_exec, pod, "nslookup -type=srv "
                                      "_http._tcp.web.default.svc.cluster.local")
        assert "web.default.svc.cluster.local" in out.stdout and " 80 " in out.stdout, out
        start = time.monotonic()
        out = await asyncio.to_thread(pod_exec, pod, "wget -qO- -T 10 http://nope/")
        assert "bad address 'nope'" in out.stderr and time.monotonic() - start < 5, out
    # from the host, through the bridge, over UDP and TCP
    for node_ip in node_ips.values():
        if shutil.which("dig"):
            for proto in ("+notcp", "+tcp"):
                out = sh("dig", f"@{node_ip}", "+short", "+time=3", "+tries=1", proto,
                         "web.default.svc.cluster.local")
                assert out.stdout.split() == [cluster_ip], (node_ip, proto, out)
        else:
            with socket.create_connection((node_ip, 53), timeout=5):
                pass
