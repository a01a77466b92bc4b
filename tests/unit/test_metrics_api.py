"""The metrics API's pure parts (quantities, windows, NodeMetrics/PodMetrics from a kubelet
summary), the kubelet's choice of the earlier CPU sample, and ``mkctl top``'s printing."""

from __future__ import annotations

from apiserver.metrics import (api_group, api_resource_list, cpu_quantity, go_duration,
                               memory_quantity, node_metrics, pod_metrics, with_group)
from kubelet.stats import CpuSample, reference
from minik8s.cli.autoscale import hpa_for, node_lines, pod_lines
from minik8s.api.registry import REGISTRY


def test_quantities_and_durations():
    assert cpu_quantity(12_345_678) == "12345678n" and cpu_quantity(0) == "0"
    assert memory_quantity(10 * 1024 * 1024) == "10240Ki" and memory_quantity(1000) == "1000"
    assert go_duration(15) == "15s" and go_duration(5.0123) == "5.012s"
    assert go_duration(60.5) == "1m0.5s" and go_duration(0) == "0s"


def test_discovery_documents():
    groups = with_group({"groups": []})["groups"]
    assert groups[0]["name"] == "metrics.k8s.io"
    assert groups[0]["preferredVersion"]["groupVersion"] == "metrics.k8s.io/v1beta1"
    assert api_group("apps") is None and api_group("metrics.k8s.io")["kind"] == "APIGroup"
    kinds = {r["name"]: r["kind"] for r in api_resource_list("metrics.k8s.io", "v1beta1")[
        "resources"]}
    assert kinds == {"nodes": "NodeMetrics", "pods": "PodMetrics"}


def test_node_and_pod_metrics_from_summary():
    node = {"metadata": {"name": "n1", "labels": {"a": "b"}}}
    summary = {"node": {"cpu": {"time": "2024-01-01T00:00:10Z", "usageNanoCores": 250_000_000,
                                "windowSeconds": 5.0},
                        "memory": {"workingSetBytes": 512 * 1024 * 1024}}}
    m = node_metrics(node, summary, "2024-01-01T00:00:11Z")
    assert m["usage"] == {"cpu": "250000000n", "memory": "524288Ki"}
    assert m["window"] == "5s" and m["timestamp"] == "2024-01-01T00:00:10Z"
    assert m["metadata"]["labels"] == {"a": "b"}
    assert node_metrics(node, {"node": {"cpu": {}, "memory": {}}}, "t") is None

    pod = {"metadata": {"name": "p", "namespace": "ns"}}
    entry = {"containers": [
        {"name": "a", "cpu": {"usageNanoCores": 1_000_000, "windowSeconds": 4.5},
         "memory": {"workingSetBytes": 2048}},
        {"name": "b", "cpu": {"usageNanoCores": 0, "windowSeconds": 5},
         "memory": {"workingSetBytes": 1000}}]}
    pm = pod_metrics(pod, entry, "t")
    assert [c["usage"] for c in pm["containers"]] == [{"cpu": "1000000n", "memory": "2Ki"},
                                                       {"cpu": "0", "memory": "1000"}]
    assert pm["window"] == "5s"
    entry["containers"][1]["cpu"].pop("usageNanoCores")  # a partial pod is left out
    assert pod_metrics(pod, entry, "t") is None


def test_kubelet_reference_sample_prefers_a_window():
    history = [CpuSample(100.0, 10), CpuSample(103.0, 20), CpuSample(109.0, 30),
               CpuSample(109.9, 40)]
    now = CpuSample(110.0, 50)
    assert reference(history, now).at == 103.0   # the newest at least 5 s old
    assert reference(history[2:], now).at == 109.0  # none that old: the oldest usable
    assert reference([CpuSample(109.95, 1)], now) is None  # too close
    assert reference([CpuSample(105.0, 60)], now) is None  # counter went back: recreated


def test_top_printing_as_kubectl():
    metrics = [{"metadata": {"name": "n2"}, "usage": {"cpu": "1500001n", "memory": "2Gi"}},
               {"metadata": {"name": "n1"}, "usage": {"cpu": "250m", "memory": "1536Ki"}}]
    text = node_lines(metrics, {"n1": {"cpu": "2", "memory": "4Gi"},
                                "n2": {"cpu": "2", "memory": "4Gi"}, "n3": {"cpu": "1"}})
    rows = [line.split() for line in text.splitlines()]
    assert rows == [["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"],
                    ["n1", "250m", "12%", "1Mi", "0%"],
                    ["n2", "2m", "0%", "2048Mi", "50%"],
                    ["n3", "<unknown>", "<unknown>", "<unknown>", "<unknown>"]]
    pods = [{"metadata": {"name": "b", "namespace": "x"},
             "containers": [{"name": "c1", "usage": {"cpu": "10m", "memory": "3Mi"}},
                            {"name": "c2", "usage": {"cpu": "5m", "memory": "1Mi"}}]},
            {"metadata": {"name": "a", "namespace": "y"},
             "containers": [{"name": "c", "usage": {"cpu": "1n", "memory": "0"}}]}]
    rows = [line.split() for line in pod_lines(pods).splitlines()]
    assert rows == [["NAME", "CPU(cores)", "MEMORY(bytes)"], ["a", "1m", "0Mi"],
                    ["b", "15m", "4Mi"]]
    rows = [line.split() for line in pod_lines(pods, containers=True,
                                               with_namespace=True).splitlines()]
    assert rows[0] == ["NAMESPACE", "POD", "NAME", "CPU(cores)", "MEMORY(bytes)"]
    assert rows[1:] == [["x", "b", "c1", "10m", "3Mi"], ["x", "b", "c2", "5m", "1Mi"],
                        ["y", "a", "c", "1m", "0Mi"]]


def test_autoscale_object():
    rt = REGISTRY.resolve("deployments")
    hpa = hpa_for(rt, {"metadata": {"name": "web"}}, "web", 2, 5, 50)
    assert hpa["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "maxReplicas": 5, "minReplicas": 2,
        "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": 50}}}]}
    assert "metrics" not in hpa_for(rt, {"metadata": {"name": "w"}}, "w", -1, 3, -1)["spec"]
