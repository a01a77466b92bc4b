"""Metrics and autoscaling end to end: a kubelet (in-process, HTTPS server on loopback) runs
real busybox containers, the API server serves ``metrics.k8s.io`` from its stats summary, and
the HPA controller (1 s sync period, 2 s scale-down window) scales a CPU-burning Deployment up,
then, once its template turns idle, back down. ``mkctl top`` and the real ``kubectl top`` read
the same metrics. Pods are bound by ``nodeName`` (no scheduler needed); every blocking client
runs in a thread, since the kubelet shares this event loop."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys

import pytest

from controller.manager import ControllerManagerConfig, build as build_controller_manager
from e2e_helpers import BUSYBOX, ROOT, serving_kubelet, wait_for
from minik8s.client import Client

pytestmark = pytest.mark.e2e
KUBECTL = shutil.which("kubectl")


@pytest.fixture(scope="module")
async def node(apiserver, busybox_image, tmp_path_factory):
    async with serving_kubelet(apiserver, "hpa", tmp_path_factory) as handle:
        yield handle


@pytest.fixture
async def controllers(apiserver, node):
    client = Client.from_kubeconfig(str(apiserver.kubeconfig_for(
        "cm-e2e-hpa", "system:kube-controller-manager")))
    config = ControllerManagerConfig(horizontal_pod_autoscaler_sync_period=1.0)
    manager, _ = build_controller_manager(
        client, controllers=["replicaset", "deployment", "horizontalpodautoscaling"],
        config=config)
    task = asyncio.get_running_loop().create_task(manager.start())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    await client.aclose()


def run(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=str(ROOT), **kw)


async def mkctl(apiserver, *args: str) -> subprocess.CompletedProcess:
    return await asyncio.to_thread(run, [sys.executable, "-m", "minik8s.cli.mkctl",
                                         "--kubeconfig", str(apiserver.kubeconfig), *args])


async def kubectl(apiserver, tmp_path, *args: str) -> subprocess.CompletedProcess:
    return await asyncio.to_thread(run, [KUBECTL, "--kubeconfig", str(apiserver.kubeconfig),
                                         "--cache-dir", str(tmp_path / "kube-cache"), *args])


def template(node, command: str) -> dict:
    return {"metadata": {"labels": {"app": "burn"}}, "spec": {
        "nodeName": node.name, "terminationGracePeriodSeconds": 0,
        "containers": [{"name": "main", "image": BUSYBOX, "command": ["sh", "-c", command],
                        "resources": {"requests": {"cpu": "100m"},
                                      "limits": {"cpu": "200m"}}}]}}


async def test_hpa_scales_cpu_burner_up_and_down(apiserver, client, ns, node, controllers,
                                                 tmp_path):
    await client.create("deployments", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "burn"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "burn"}},
                 "template": template(node, "while :; do :; done")}}, ns)
    out = await mkctl(apiserver, "-n", ns, "autoscale", "deployment", "burn", "--min", "1",
                      "--max", "3", "--cpu-percent", "50")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "horizontalpodautoscaler.autoscaling/burn autoscaled\n"
    # short windows for the test: scale down after 2 s of lower recommendations
    await client.patch("horizontalpodautoscalers", "burn", {"spec": {"behavior": {
        "scaleDown": {"stabilizationWindowSeconds": 2}}}}, ns)

    async def scaled_to(n: int):
        hpa = await client.get("horizontalpodautoscalers", "burn", ns)
        d = await client.get("deployments", "burn", ns)
        st = hpa.get("status") or {}
        return hpa if d["spec"]["replicas"] == n and st.get("desiredReplicas") == n else None

    hpa = await wait_for(lambda: scaled_to(3), 60, "scaled up to 3")
    st = hpa["status"]
    [current] = st["currentMetrics"]
    assert current["resource"]["name"] == "cpu"
    assert current["resource"]["current"]["averageUtilization"] > 50
    conditions = {c["type"]: c for c in st["conditions"]}
    assert conditions["AbleToScale"]["status"] == "True"
    assert conditions["ScalingActive"]["reason"] == "ValidMetricFound"
    assert "lastScaleTime" in st

    # the same numbers through mkctl top, kubectl top and the metrics API
    async def pod_metrics():
        result = await client.request("GET", f"/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods",
                                      params={"labelSelector": "app=burn"})
        return result if result["items"] else None
    metrics = await wait_for(pod_metrics, 30, "pod metrics")
    item = metrics["items"][0]
    assert item["kind"] == "PodMetrics" and item["window"].endswith("s")
    assert item["containers"][0]["name"] == "main"

    top = await mkctl(apiserver, "-n", ns, "top", "pods", "-l", "app=burn")
    assert top.returncode == 0, top.stderr
    lines = top.stdout.splitlines()
    assert lines[0].split() == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    assert all(line.split()[1].endswith("m") and line.split()[2].endswith("Mi")
               for line in lines[1:]) and len(lines) >= 2
    nodes = await mkctl(apiserver, "top", "nodes", node.name)
    assert nodes.returncode == 0, nodes.stderr
    header, row = nodes.stdout.splitlines()
    assert header.split() == ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
    assert row.split()[0] == node.name and row.split()[2].endswith("%")
    if KUBECTL:
        kc = await kubectl(apiserver, tmp_path, "top", "pod", "-n", ns, "-l", "app=burn")
        assert kc.returncode == 0, kc.stderr
        assert kc.stdout.splitlines()[0].split() == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
        kc = await kubectl(apiserver, tmp_path, "top", "node", node.name)
        assert kc.returncode == 0, kc.stderr
        kc_header, kc_row = kc.stdout.splitlines()
        assert kc_header.split() == header.split()  # kubectl 1.32's columns, as mkctl's
        assert kc_row.split()[0] == node.name and kc_row.split()[2].endswith("%")
        kc = await kubectl(apiserver, tmp_path, "get", "hpa", "-n", ns)
        assert kc.returncode == 0, kc.stderr
        head, hrow = kc.stdout.splitlines()[:2]
        assert head.split() == ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS",
                                "REPLICAS", "AGE"]
        assert hrow.split()[:3] == ["burn", "Deployment/burn", "cpu:"]

    # idle template: back down to 1
    await client.patch("deployments", "burn", {"spec": {"template": template(
        node, "exec sleep 3600")}}, ns)
    hpa = await wait_for(lambda: scaled_to(1), 90, "scaled back down to 1")
    events = (await client.list("events", ns, field_selector=(
        "involvedObject.kind=HorizontalPodAutoscaler,involvedObject.name=burn"))).get("items")
    messages = [e["message"] for e in events if e["reason"] == "SuccessfulRescale"]
    assert "New size: 3; reason: cpu resource utilization (percentage of request) above " \
           "target" in messages
    assert "New size: 1; reason: All metrics below target" in messages or \
        any(m.startswith("New size: 1;") for m in messages)
