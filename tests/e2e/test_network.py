"""Pod networking across two node namespaces, without a kubelet: ``minik8s.cli.netns``
makes two "hosts" on a project bridge, ``BridgeNetwork`` runs inside each (a small helper
process under ``ip netns exec``, as the kubelet would run there), and two
``network_mode="none"`` containers of the local busybox image are wired one per node. Then:
pod -> pod across nodes (ping, TCP with nc, HTTP with wget), host <-> pod (HTTP, ping), the
isolation of node namespaces (no default route, the egress chain), and a teardown that
leaves no namespace, link, route or rule behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

from minik8s.cli.netns import NodeNetworks, list_namespaces

IMAGE = "minik8s/busybox:1.35"
LABEL = "io.minik8s.test"

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                                reason="needs root and iproute2")

# Runs inside a node namespace: one BridgeNetwork operation, result as JSON on stdout.
HELPER = """
import asyncio, json, sys
from kubelet.network.bridge import BridgeNetwork
args = json.loads(sys.argv[1])
async def main():
    net = BridgeNetwork(node_name=args["node"], root_dir=args["root"], node_ip=args["ip"],
                        cluster_cidr=args["cluster"])
    out = None
    if args.get("pod_cidr"):
        await net.setup(args["pod_cidr"])
    if args.get("nodes") is not None:
        await net.sync_routes(args["nodes"])
    if args.get("attach"):
        out = await net.attach(args["attach"]["uid"], args["attach"]["pid"])
    if args.get("detach"):
        await net.detach(args["detach"])
    print(json.dumps({"ip": out, "dns": net.dns_ip}))
asyncio.run(main())
"""


def run(*cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} -> {proc.returncode}: {proc.stderr}{proc.stdout}")
    return proc


def in_node(namespace: str, **args) -> dict:
    out = run("ip", "netns", "exec", namespace, sys.executable, "-c", HELPER, json.dumps(args))
    return json.loads(out.stdout.strip().splitlines()[-1])


def node_obj(name: str, ip: str, pod_cidr: str) -> dict:
    return {"metadata": {"name": name}, "spec": {"podCIDR": pod_cidr},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}


@pytest.fixture
def docker_api():
    docker = pytest.importorskip("docker")
    try:
        api = docker.APIClient(timeout=60)
        api.ping()
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"no Docker engine: {exc}")
    try:
        api.inspect_image(IMAGE)
    except docker.errors.ImageNotFound:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        run("bash", os.path.join(root, "deploy/images/build-busybox.sh"), timeout=120)
    yield api
    api.close()


def start_pod(api, run_id: str, name: str, command: list[str]) -> tuple[str, int]:
    host_config = api.create_host_config(network_mode="none", init=True)
    created = api.create_container(IMAGE, command=command, host_config=host_config,
                                   labels={LABEL: run_id}, name=f"mk8s-nettest-{run_id}-{name}")
    api.start(created["Id"])
    pid = api.inspect_container(created["Id"])["State"]["Pid"]
    assert pid > 0
    return created["Id"], pid


def pexec(api, container: str, *cmd: str) -> tuple[int, str]:
    ex = api.exec_create(container, list(cmd))
    out = api.exec_start(ex["Id"]).decode(errors="replace")
    return api.exec_inspect(ex["Id"])["ExitCode"], out


def wait_for(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


def test_pods_reach_each_other_across_node_namespaces(tmp_path, docker_api):
    api = docker_api
    run_id = uuid.uuid4().hex[:8]
    nets = NodeNetworks(tmp_path / "run" / "netns.json")
    s = nets.settings
    cluster = s.cluster_cidr
    base = cluster.split(".")[:2]
    pod_cidrs = {1: f"{base[0]}.{base[1]}.1.0/24", 2: f"{base[0]}.{base[1]}.2.0/24"}
    containers: list[str] = []
    nodes: dict[int, tuple[str, str]] = {}
    try:
        for i in (1, 2):
            nodes[i] = nets.create_node_namespace(i)
        objs = [node_obj(f"node-{i}", nodes[i][1], pod_cidrs[i]) for i in (1, 2)]
        # Host -> pod routes and node -> node routes exist before anything is sent.
        nets.sync_pod_routes({pod_cidrs[i]: nodes[i][1] for i in (1, 2)})
        pods = {}
        for i in (1, 2):
            ns, ip = nodes[i]
            root = str(tmp_path / f"node-{i}")
            in_node(ns, node=f"node-{i}", root=root, ip=ip, cluster=cluster,
                    pod_cidr=pod_cidrs[i], nodes=objs)
            cmd = (["httpd", "-f", "-p", "8080", "-h", "/etc"] if i == 2
                   else ["sleep", "3600"])
            cid, pid = start_pod(api, run_id, f"p{i}", cmd)
            containers.append(cid)
            uid = str(uuid.uuid4())
            got = in_node(ns, node=f"node-{i}", root=root, ip=ip, cluster=cluster,
                          pod_cidr=pod_cidrs[i], attach={"uid": uid, "pid": pid})
            assert got["dns"] == ip  # the node's own address answers DNS by default
            pods[i] = {"id": cid, "uid": uid, "ip": got["ip"], "root": root}
            # Attaching again (a restarted kubelet) gives the same address, wiring untouched.
            again = in_node(ns, node=f"node-{i}", root=root, ip=ip, cluster=cluster,
                            pod_cidr=pod_cidrs[i], attach={"uid": uid, "pid": pid})
            assert again["ip"] == got["ip"]
        p1, p2 = pods[1], pods[2]
        assert p1["ip"] == pod_cidrs[1].replace(".0/24", ".2")
        assert p2["ip"] == pod_cidrs[2].replace(".0/24", ".2")

        code, out = pexec(api, p1["id"], "ip", "-4", "-o", "addr", "show", "dev", "eth0")
        assert code == 0 and f"{p1['ip']}/24" in out
        code, out = pexec(api, p1["id"], "ip", "route")
        assert f"default via {pod_cidrs[1].replace('.0/24', '.1')}" in out

        # pod -> pod across nodes: ICMP, TCP, HTTP.
        code, out = pexec(api, p1["id"], "ping", "-c", "2", "-W", "2", p2["ip"])
        assert code == 0, out
        code, out = wait_for(lambda: (lambda r: r if r[0] == 0 else None)(
            pexec(api, p1["id"], "timeout", "5", "wget", "-q", "-O", "-",
                  f"http://{p2['ip']}:8080/passwd")), 10) or (1, "wget failed")
        assert code == 0 and "root:x:0:0" in out, out
        code, out = pexec(api, p1["id"], "sh", "-c", "printf 'GET /group HTTP/1.0\\r\\n\\r\\n' | "
                                                  f"nc -w 3 {p2['ip']} 8080")
        assert code == 0 and "200 OK" in out and "root:x:0:" in out, out
        # pod -> its own node and the other node (node addresses are allowed).
        code, out = pexec(api, p1["id"], "ping", "-c", "1", "-W", "2", nodes[2][1])
        assert code == 0, out

        # host -> pod: HTTP to the pod on node 2, ping from the pod on node 1 to the host's
        # address on the node range (the answer has to come back).
        code, out = pexec(api, p1["id"], "ping", "-c", "1", "-W", "2", s.bridge_ip)
        assert code == 0, out
        with urllib.request.urlopen(f"http://{p2['ip']}:8080/passwd", timeout=5) as resp:
            assert b"root:x:0:0" in resp.read()

        # Isolation: a node namespace has no default route, pod egress is restricted and the
        # cluster range is unreachable where no node holds it.
        for i in (1, 2):
            routes = run("ip", "-n", nodes[i][0], "route", "show").stdout
            assert "default" not in routes
            assert f"unreachable {cluster}" in routes
            other = 3 - i
            assert f"{pod_cidrs[other]} via {nodes[other][1]}" in routes
            chain = run("ip", "netns", "exec", nodes[i][0], "iptables", "-S",
                        "MK8S-POD-EGRESS").stdout
            assert f"-d {cluster} -j ACCEPT" in chain and chain.rstrip().endswith("-j DROP")
            fwd = run("ip", "netns", "exec", nodes[i][0], "iptables", "-S", "FORWARD").stdout
            assert "-i mk8s-pods -j MK8S-POD-EGRESS" in fwd

        # Removing a node from the route set removes its route; detach frees the address.
        in_node(nodes[1][0], node="node-1", root=p1["root"], ip=nodes[1][1], cluster=cluster,
                nodes=[objs[0]])
        routes = run("ip", "-n", nodes[1][0], "route", "show").stdout
        assert pod_cidrs[2] not in routes and f"unreachable {cluster}" in routes
        in_node(nodes[1][0], node="node-1", root=p1["root"], ip=nodes[1][1], cluster=cluster,
                pod_cidr=pod_cidrs[1], detach=p1["uid"])
        links = run("ip", "-n", nodes[1][0], "-o", "link", "show").stdout
        assert "vmk" not in links
        assert not any(f.name[0].isdigit()
                       for f in (tmp_path / "node-1" / "network" / "ipam").iterdir())
    finally:
        for cid in containers:
            api.remove_container(cid, force=True)
        removed = nets.teardown()

    # Nothing is left: no namespace, link, route, rule, container.
    assert all(nodes[i][0] not in list_namespaces() for i in nodes)
    assert run("ip", "link", "show", "dev", s.bridge, check=False).returncode != 0
    assert any(r.startswith("bridge") for r in removed)
    host_routes = run("ip", "route", "show", "table", "all").stdout
    assert cluster not in host_routes
    assert all(c not in host_routes for c in pod_cidrs.values())
    assert s.node_range not in host_routes
    if shutil.which("iptables"):
        rules = run("iptables", "-S", check=False).stdout
        assert f"-i {s.bridge} -o {s.bridge}" not in rules
    assert not api.containers(all=True, filters={"label": f"{LABEL}={run_id}"})
    assert not (tmp_path / "run" / "netns.json").exists()
