"""The metrics API on the real API server without a kubelet that answers: discovery lists
``metrics.k8s.io``, a Ready node whose kubelet cannot be reached is left out (an empty list,
not a 500), a missing pod's metrics are a 404, and writes are refused."""

from __future__ import annotations

import uuid

from cluster import free_port

from minik8s.api.errors import NotFound, StatusError

BASE = "/apis/metrics.k8s.io/v1beta1"


async def test_metrics_api_without_answering_kubelets(client, ns):
    groups = await client.request("GET", "/apis")
    assert any(g["name"] == "metrics.k8s.io" for g in groups["groups"])
    doc = await client.request("GET", BASE)
    assert {r["name"] for r in doc["resources"]} == {"nodes", "pods"}

    name = f"ghost-{uuid.uuid4().hex[:6]}"
    await client.create("nodes", {"apiVersion": "v1", "kind": "Node",
                                  "metadata": {"name": name, "labels": {"ghost": "yes"}}})
    await client.patch("nodes", name, {"status": {
        "conditions": [{"type": "Ready", "status": "True"}],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": free_port()}}}},
        subresource="status")
    await client.create("pods", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                                 "spec": {"nodeName": name, "containers": [
                                     {"name": "c", "image": "minik8s/busybox:1.35"}]}}, ns)
    nodes = await client.request("GET", f"{BASE}/nodes", params={"labelSelector": "ghost=yes"})
    assert nodes["kind"] == "NodeMetricsList" and nodes["items"] == []
    pods = await client.request("GET", f"{BASE}/namespaces/{ns}/pods")
    assert pods["kind"] == "PodMetricsList" and pods["items"] == []
    try:
        await client.request("GET", f"{BASE}/namespaces/{ns}/pods/p")
        raise AssertionError("expected NotFound")
    except NotFound as exc:
        assert exc.message == f'podmetrics.metrics.k8s.io "{ns}/p" not found'
    try:
        await client.request("POST", f"{BASE}/namespaces/{ns}/pods", body={})
        raise AssertionError("expected 405")
    except StatusError as exc:
        assert exc.code == 405
    await client.delete("nodes", name)
