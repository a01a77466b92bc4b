"""A node cut off from the cluster, through the real product path: ``minik8s up --nodes 3``
(as a subprocess, in a temporary MINIK8S_HOME) with the controller-manager's grace period
and default eviction time set to a few seconds, a Deployment of 4 replicas spread over the
nodes and a StatefulSet of 1.

The node holding the StatefulSet pod loses its link (the host side of its veth set down):
within the grace period and the toleration it is ``Ready=Unknown`` and tainted unreachable,
its Deployment pods are replaced and Running on the other nodes (the time from the cut to
that is printed), and the StatefulSet pod is not replaced while its name is still held by the
pod on the lost node: no second copy of it runs anywhere. The link comes back: the node is
Ready again without the taints, and every pod runs on exactly one node, checked on the Docker
containers themselves by the kubelet's labels. ``minik8s down`` then leaves no namespace and
no pod container behind.

The kubelets ``up`` starts renew their Lease every 10 s, so the grace period must be longer
than that; 16 s leaves room for a busy machine."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from minik8s.cli import local
from minik8s.client import Client
from e2e_helpers import other_node_1_kubelets

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="node namespaces need root"),
]

GRACE = 16.0
EVICTION = 2.0
UNREACHABLE = "node.kubernetes.io/unreachable"
BUSY_WAIT = 900.0  # seconds to wait for another local cluster with a node-1 to go away


def minik8s(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "MINIK8S_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "minik8s.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def running_pods_by_node(namespace: str) -> dict[str, set[str]]:
    """pod name -> the nodes where a container of it runs, from Docker's labels."""
    out = subprocess.run(
        ["docker", "ps", "--filter", f"label=io.minik8s.pod.namespace={namespace}",
         "--format", '{{.Label "io.minik8s.pod.name"}} {{.Label "io.minik8s.node"}}'],
        capture_output=True, text=True, timeout=60, check=True).stdout
    where: dict[str, set[str]] = {}
    for line in out.splitlines():
        pod, _, node = line.partition(" ")
        if pod:
            where.setdefault(pod, set()).add(node.strip())
    return where


def all_containers(namespace: str) -> list[str]:
    return subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=io.minik8s.pod.namespace={namespace}"],
        capture_output=True, text=True, timeout=60, check=True).stdout.split()


def is_running(pod: dict) -> bool:
    st = pod.get("status") or {}
    statuses = st.get("containerStatuses") or []
    return (st.get("phase") == "Running" and bool(statuses)
            and all(s.get("ready") for s in statuses)
            and not pod["metadata"].get("deletionTimestamp"))


def ready(node: dict) -> str:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") or "Unknown"
    return "Unknown"


def taint_keys(node: dict) -> set[str]:
    return {t.get("key") for t in (node.get("spec") or {}).get("taints") or []}


def pod_template(app: str) -> dict:
    return {"metadata": {"labels": {"app": app}},
            "spec": {"terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "app", "image": "minik8s/busybox:1.35",
                                     "command": ["sleep", "3600"],
                                     "resources": {"requests": {"cpu": "10m",
                                                                "memory": "8Mi"}}}]}}


@pytest.fixture
def cluster(tmp_path):
    """``minik8s up --nodes 3`` in a temporary home; ``down`` again whatever happens."""
    deadline = time.monotonic() + BUSY_WAIT
    while other_node_1_kubelets():
        if time.monotonic() > deadline:
            pytest.fail("another local cluster with a node-1 kubelet kept running")
        time.sleep(5)
    home = tmp_path / "home"
    out = minik8s(home, "up", "--nodes", "3", "--port", str(local.free_port()),
                  f"--controller-manager-arg=--node-monitor-grace-period={GRACE}",
                  f"--controller-manager-arg=--default-eviction-seconds={EVICTION}")
    try:
        assert out.returncode == 0, out.stdout + out.stderr
        yield home
    finally:
        state = home / "run" / "netns.json"
        if state.exists():  # a failed test may have left a link down: down removes it anyway
            minik8s(home, "down")


async def wait(pred, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        got = await pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(interval)


async def test_node_cut_off_replaces_deployment_pods_and_never_duplicates(cluster):
    home: Path = cluster
    net = json.loads((home / "run" / "netns.json").read_text())
    settings = net["settings"]
    ns = f"nodefail-{uuid.uuid4().hex[:6]}"
    client = Client.from_kubeconfig(str(home / "kubeconfig"))
    try:
        async def three_ready():
            nodes = (await client.list("nodes"))["items"]
            return len([n for n in nodes if ready(n) == "True"]) == 3
        await wait(three_ready, 90, "three Ready nodes")

        await client.create("namespaces", {"metadata": {"name": ns}})
        await client.create("deployments", {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                     "template": pod_template("web")}}, ns)
        await client.create("statefulsets", {
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": ns},
            "spec": {"replicas": 1, "serviceName": "db",
                     "selector": {"matchLabels": {"app": "db"}},
                     "template": pod_template("db")}}, ns)

        async def pods() -> list[dict]:
            return (await client.list("pods", ns))["items"]

        async def all_running():
            ps = await pods()
            return ps if len(ps) == 5 and all(is_running(p) for p in ps) else None
        placed = await wait(all_running, 120, "4 web pods and db-0 Running")
        node_of = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in placed}
        lost = node_of["db-0"]
        lost_web = sorted(n for n, node in node_of.items() if n != "db-0" and node == lost)
        web_nodes = {node for n, node in node_of.items() if n != "db-0"}
        assert web_nodes == {"node-1", "node-2", "node-3"}, f"not spread: {node_of}"
        index = int(lost.rsplit("-", 1)[1])
        veth = f"{settings['bridge']}-n{index}"

        # --- cut the node off -------------------------------------------------------------
        subprocess.run(["ip", "link", "set", veth, "down"], check=True)
        cut = time.monotonic()
        t_unknown = t_replaced = None
        try:
            while time.monotonic() - cut < GRACE + EVICTION + 90:
                now = time.monotonic()
                node = await client.get("nodes", lost)
                if t_unknown is None and ready(node) == "Unknown" and \
                        UNREACHABLE in taint_keys(node):
                    t_unknown = now - cut
                ps = await pods()
                web = [p for p in ps if p["metadata"]["name"].startswith("web-")
                       and is_running(p) and p["spec"]["nodeName"] != lost]
                if t_replaced is None and len(web) == 4:
                    t_replaced = now - cut
                # The StatefulSet pod: one object, still bound to the lost node, and no
                # container of it running anywhere else.
                db = [p for p in ps if p["metadata"]["name"] == "db-0"]
                assert len(db) == 1 and db[0]["spec"]["nodeName"] == lost, db
                where = running_pods_by_node(ns)
                assert where.get("db-0", {lost}) <= {lost}, f"db-0 runs on {where['db-0']}"
                assert all(len(nodes) == 1 for nodes in where.values()), where
                if t_unknown is not None and t_replaced is not None and \
                        now - cut > t_replaced + 5:
                    break  # and still no second db-0 a while after the replacements
                await asyncio.sleep(0.5)
            assert t_unknown is not None, f"{lost} never became Unknown/unreachable"
            assert t_replaced is not None, "the web pods of the lost node were not replaced"
            assert t_unknown <= GRACE + 15, t_unknown
            ps = await pods()
            # The evicted pods are marked for deletion, kept (Terminating) until the node
            # confirms; their replacements run on the two other nodes.
            for name in lost_web:
                old = next((p for p in ps if p["metadata"]["name"] == name), None)
                assert old is None or old["metadata"].get("deletionTimestamp"), old
            print(f"\nnode {lost} cut off: Unknown+tainted after {t_unknown:.1f}s, its "
                  f"{len(lost_web)} web pod(s) replaced and Running elsewhere after "
                  f"{t_replaced:.1f}s (grace {GRACE:.0f}s, eviction {EVICTION:.0f}s)")
        finally:
            subprocess.run(["ip", "link", "set", veth, "up"], check=True)
        back = time.monotonic()

        # --- the link comes back ----------------------------------------------------------
        async def node_back():
            node = await client.get("nodes", lost)
            return ready(node) == "True" and not (taint_keys(node) & {
                UNREACHABLE, "node.kubernetes.io/not-ready"})
        await wait(node_back, GRACE + 90, f"{lost} Ready again without taints")
        t_ready = time.monotonic() - back

        async def settled():
            ps = await pods()
            where = running_pods_by_node(ns)
            assert all(len(nodes) == 1 for nodes in where.values()), f"twice: {where}"
            names = {p["metadata"]["name"] for p in ps}
            ok = (len(ps) == 5 and all(is_running(p) for p in ps)
                  and not (names & set(lost_web))
                  and set(where) == names
                  and all(where[p["metadata"]["name"]] == {p["spec"]["nodeName"]}
                          for p in ps))
            return ok
        await wait(settled, 150, "every pod Running on exactly one node, evicted ones gone",
                   interval=1.0)
        print(f"link back: {lost} Ready without taints after {t_ready:.1f}s, every pod on "
              f"exactly one node after {time.monotonic() - back:.1f}s")
    finally:
        await client.aclose()

    # --- down leaves nothing ----------------------------------------------------------------
    out = minik8s(home, "down")
    assert out.returncode == 0, out.stdout + out.stderr
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert settings["ns_prefix"] not in left, left
    assert not all_containers(ns)
    assert subprocess.run(["ip", "link", "show", "dev", settings["bridge"]],
                          capture_output=True).returncode != 0
