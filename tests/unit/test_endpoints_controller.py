"""The Endpoints controller's pure logic (which pods, which addresses, which ports, how they
are packed into subsets) and its reconcile over a FakeClient."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from controller.endpoints import (TRIGGER_TIME_ANNOTATION, EndpointsController,
                                  desired_labels, desired_subsets, find_port,
                                  pod_in_endpoints)
from fakes import FakeClient, eventually
from minik8s.cache import InformerFactory


def svc(name="web", selector=None, ports=None, **spec):
    s = {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": name, "namespace": "ns", "labels": {"tier": "front"}},
         "spec": {"selector": {"app": "web"} if selector is None else selector,
                  "ports": [{"name": "http", "port": 80, "targetPort": 8080,
                             "protocol": "TCP"}] if ports is None else ports, **spec}}
    return s


def pod(name, ip="10.244.0.5", ready=True, labels=None, phase="Running", node="n1",
        ports=None, **spec):
    p = {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}",
                      "labels": {"app": "web"} if labels is None else labels},
         "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x",
                                                    "ports": ports or []}], **spec},
         "status": {"phase": phase,
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}
    if ip:
        p["status"]["podIP"] = ip
    return p


def ref(name):
    return {"kind": "Pod", "namespace": "ns", "name": name, "uid": f"uid-{name}"}


# --------------------------------------------------------------------------- pure logic


def test_ready_and_unready_pods_and_ports():
    subsets = desired_subsets(svc(), [pod("b", "10.244.0.10"), pod("a", "10.244.0.9"),
                                      pod("c", "10.244.0.2", ready=False)])
    assert subsets == [{
        "addresses": [{"ip": "10.244.0.9", "nodeName": "n1", "targetRef": ref("a")},
                      {"ip": "10.244.0.10", "nodeName": "n1", "targetRef": ref("b")}],
        "notReadyAddresses": [{"ip": "10.244.0.2", "nodeName": "n1", "targetRef": ref("c")}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]


def test_left_out_no_ip_terminating_finished_and_unselected():
    terminating = pod("t", "10.244.0.4")
    terminating["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    pods = [pod("noip", ip=""), terminating, pod("done", "10.244.0.6", phase="Succeeded"),
            pod("failed", "10.244.0.7", phase="Failed"),
            pod("other", "10.244.0.8", labels={"app": "db"})]
    assert desired_subsets(svc(), pods) == []
    assert not pod_in_endpoints(terminating, include_terminating=False)
    assert pod_in_endpoints(terminating, include_terminating=True)


def test_publish_not_ready_addresses_puts_unready_pods_in_addresses():
    subsets = desired_subsets(svc(publishNotReadyAddresses=True),
                              [pod("a", "10.244.0.9", ready=False)])
    assert [a["ip"] for a in subsets[0]["addresses"]] == ["10.244.0.9"]
    assert "notReadyAddresses" not in subsets[0]


def test_named_target_port_resolved_per_pod_splits_subsets():
    service = svc(ports=[{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"},
                         {"name": "metrics", "port": 9090, "targetPort": 9090,
                          "protocol": "TCP"}])
    a = pod("a", "10.244.0.1", ports=[{"name": "web", "containerPort": 8080}])
    b = pod("b", "10.244.0.2", ports=[{"name": "web", "containerPort": 8081}])
    c = pod("c", "10.244.0.3", ports=[{"name": "web", "containerPort": 8080}])
    d = pod("d", "10.244.0.4")  # no port named "web": only in the metrics port's subset
    subsets = desired_subsets(service, [a, b, c, d])
    shapes = [([p["port"] for p in s["ports"]], [x["ip"] for x in s["addresses"]])
              for s in subsets]
    assert sorted(shapes) == sorted([
        ([8080], ["10.244.0.1", "10.244.0.3"]),
        ([8081], ["10.244.0.2"]),
        ([9090], ["10.244.0.1", "10.244.0.2", "10.244.0.3", "10.244.0.4"])])
    assert find_port(a, {"port": 80}) == 80  # no targetPort: the port itself


def test_same_addresses_share_one_subset_with_both_ports():
    service = svc(ports=[{"name": "b", "port": 81, "targetPort": 81, "protocol": "TCP"},
                         {"name": "a", "port": 80, "targetPort": 80, "protocol": "TCP"}])
    [subset] = desired_subsets(service, [pod("a", "10.244.0.1")])
    assert [p["name"] for p in subset["ports"]] == ["a", "b"]


def test_named_port_protocol_must_match():
    p = pod("a", ports=[{"name": "dns", "containerPort": 53, "protocol": "UDP"}])
    with pytest.raises(Exception):
        find_port(p, {"port": 53, "targetPort": "dns", "protocol": "TCP"})
    assert find_port(p, {"port": 53, "targetPort": "dns", "protocol": "UDP"}) == 53


def test_hostname_when_subdomain_names_the_service_and_headless_without_ports():
    service = svc(name="db", ports=[], clusterIP="None")
    p = pod("db-0", "10.244.0.3", hostname="db-0", subdomain="db")
    q = pod("x", "10.244.0.4", hostname="x", subdomain="other")
    [subset] = desired_subsets(service, [p, q])
    assert subset == {"addresses": [
        {"ip": "10.244.0.3", "hostname": "db-0", "nodeName": "n1", "targetRef": ref("db-0")},
        {"ip": "10.244.0.4", "nodeName": "n1", "targetRef": ref("x")}]}
    assert desired_labels(service) == {"tier": "front", "service.kubernetes.io/headless": ""}
    # a ClusterIP Service without ports has no endpoints
    assert desired_subsets(svc(ports=[]), [p]) == []


# --------------------------------------------------------------------------- controller


@contextlib.asynccontextmanager
async def running(client):
    informers = InformerFactory(client)
    ctl = EndpointsController(client, informers, workers=1)
    tasks = [asyncio.create_task(informers.start()), asyncio.create_task(ctl.start())]
    try:
        await informers.wait_synced(5)
        yield ctl
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_controller_follows_pods_and_deletes_with_service():
    client = FakeClient()
    client.seed("services", svc())
    client.seed("pods", pod("a", "10.244.0.1"))
    client.seed("services", svc(name="manual", selector={}))
    client.seed("endpoints", {"metadata": {"name": "manual", "namespace": "ns"},
                              "subsets": [{"addresses": [{"ip": "192.0.2.1"}]}]})
    async with running(client):
        def ips():
            ep = client.stored("endpoints", "web", "ns")
            return ep and [a["ip"] for s in ep.get("subsets") or []
                           for a in s.get("addresses") or []]
        await eventually(lambda: ips() == ["10.244.0.1"])
        ep = client.stored("endpoints", "web", "ns")
        assert TRIGGER_TIME_ANNOTATION in ep["metadata"]["annotations"]
        assert ep["metadata"]["labels"] == {"tier": "front"}
        writes = client.count("update") + client.count("create")

        await client.create("pods", pod("b", "10.244.0.2"), "ns")
        await eventually(lambda: ips() == ["10.244.0.1", "10.244.0.2"])
        # relabelled away: dropped
        moved = client.stored("pods", "a", "ns")
        moved["metadata"]["labels"] = {"app": "db"}
        await client.update("pods", moved, "ns")
        await eventually(lambda: ips() == ["10.244.0.2"])
        # an unrelated pod change writes nothing
        before = client.count("update")
        await client.create("pods", pod("z", "10.244.0.9", labels={"app": "db"}), "ns")
        await asyncio.sleep(0.05)
        assert client.count("update") == before
        assert client.count("update") + client.count("create") > writes
        # a user-managed Endpoints (Service without selector) is never touched
        assert client.stored("endpoints", "manual", "ns")["subsets"] == [
            {"addresses": [{"ip": "192.0.2.1"}]}]

        await client.delete("services", "web", "ns")
        await eventually(lambda: client.stored("endpoints", "web", "ns") is None)
        assert client.stored("endpoints", "manual", "ns") is not None


async def test_reserved_kubernetes_endpoints_untouched():
    client = FakeClient()
    kube = svc(name="kubernetes", selector={"component": "apiserver"})
    kube["metadata"]["namespace"] = "default"
    client.seed("services", kube)
    async with running(client) as ctl:
        await ctl.reconcile("default/kubernetes")
        assert client.stored("endpoints", "kubernetes", "default") is None
