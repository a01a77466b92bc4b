"""The Endpoints controller against the real API server and etcd: pods whose status the test
patches (IP, Ready) move between ``addresses`` and ``notReadyAddresses``, a terminating pod
leaves, a deleted Service takes its Endpoints along, a Service without a selector keeps the
Endpoints its user wrote; and the real kubectl 1.32 prints ``kubectl get endpoints``."""

from __future__ import annotations

import asyncio
import shutil
import subprocess


from cluster import eventually, running_controllers
from minik8s.api.errors import NotFound

KUBECTL = shutil.which("kubectl")


def pod(name: str, labels: dict[str, str], **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "minik8s/busybox:1.35",
                                     "ports": [{"name": "web", "containerPort": 8080}]}],
                     "terminationGracePeriodSeconds": 30, **spec}}


async def set_status(client, ns: str, name: str, ip: str, ready: bool) -> None:
    await client.patch("pods", name, {"status": {
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}},
        ns, subresource="status")


async def endpoints_of(client, ns: str, name: str) -> dict | None:
    try:
        return await client.get("endpoints", name, ns)
    except NotFound:
        return None


def ips(ep: dict | None, field: str = "addresses") -> list[str]:
    return [a["ip"] for s in (ep or {}).get("subsets") or [] for a in s.get(field) or []]


async def test_endpoints_follow_pod_readiness_and_service(client, ns, kubeconfig, tmp_path):
    await client.create("services", {"apiVersion": "v1", "kind": "Service",
                                     "metadata": {"name": "web"},
                                     "spec": {"selector": {"app": "web"},
                                              "ports": [{"name": "http", "port": 80,
                                                         "targetPort": "web"}]}}, ns)
    await client.create("services", {"apiVersion": "v1", "kind": "Service",
                                     "metadata": {"name": "manual"},
                                     "spec": {"ports": [{"port": 80}]}}, ns)
    await client.create("endpoints", {"apiVersion": "v1", "kind": "Endpoints",
                                      "metadata": {"name": "manual"},
                                      "subsets": [{"addresses": [{"ip": "192.0.2.7"}],
                                                   "ports": [{"port": 80}]}]}, ns)
    for name in ("a", "b", "c"):
        await client.create("pods", pod(name, {"app": "web"}, nodeName="n1"), ns)
    await client.create("pods", pod("other", {"app": "db"}, nodeName="n1"), ns)
    await set_status(client, ns, "a", "10.244.9.1", True)
    await set_status(client, ns, "b", "10.244.9.2", False)
    await set_status(client, ns, "other", "10.244.9.9", True)
    # "c" has no IP yet: left out

    async with running_controllers(client, ["endpoints"]):
        async def settled():
            ep = await endpoints_of(client, ns, "web")
            return ep if (ips(ep), ips(ep, "notReadyAddresses")) == \
                (["10.244.9.1"], ["10.244.9.2"]) else None
        ep = await eventually(settled, message="endpoints of web")
        [subset] = ep["subsets"]
        assert subset["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
        a = subset["addresses"][0]
        pod_a = await client.get("pods", "a", ns)
        assert a["nodeName"] == "n1" and a["targetRef"] == {
            "kind": "Pod", "namespace": ns, "name": "a", "uid": pod_a["metadata"]["uid"]}

        if KUBECTL:
            out = subprocess.run(
                [KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir",
                 str(tmp_path / "cache"), "get", "endpoints", "-n", ns],
                capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
            lines = [line.split() for line in out.stdout.splitlines()]
            assert lines[0] == ["NAME", "ENDPOINTS", "AGE"]
            assert ["manual", "192.0.2.7:80"] == lines[1][:2]
            assert ["web", "10.244.9.1:8080"] == lines[2][:2]

        # b turns ready, c gets an IP, a turns unready
        await set_status(client, ns, "b", "10.244.9.2", True)
        await set_status(client, ns, "c", "10.244.9.3", True)
        await set_status(client, ns, "a", "10.244.9.1", False)
        await eventually(lambda: _expect(client, ns, ["10.244.9.2", "10.244.9.3"],
                                         ["10.244.9.1"]), message="after readiness changes")
        rv = (await client.get("endpoints", "web", ns))["metadata"]["resourceVersion"]

        # a graceful delete of a bound pod leaves it terminating: out of the endpoints
        await client.delete("pods", "c", ns)
        await eventually(lambda: _expect(client, ns, ["10.244.9.2"], ["10.244.9.1"]),
                         message="terminating pod removed")
        rv2 = (await client.get("endpoints", "web", ns))["metadata"]["resourceVersion"]
        assert int(rv2) > int(rv)
        # changes no endpoint depends on write nothing (a selected pod's annotation, an
        # unselected pod's readiness)
        await client.patch("pods", "b", {"metadata": {"annotations": {"k": "v"}}}, ns)
        await set_status(client, ns, "other", "10.244.9.9", False)
        await asyncio.sleep(0.5)
        assert (await client.get("endpoints", "web", ns))["metadata"]["resourceVersion"] == rv2

        # the user-managed Endpoints were never touched
        manual = await client.get("endpoints", "manual", ns)
        assert ips(manual) == ["192.0.2.7"]

        await client.delete("services", "web", ns)
        await eventually(lambda: _gone(client, ns, "web"), message="endpoints deleted")
        assert await endpoints_of(client, ns, "manual") is not None


async def _expect(client, ns, ready, unready) -> bool:
    ep = await endpoints_of(client, ns, "web")
    return ips(ep) == ready and ips(ep, "notReadyAddresses") == unready


async def _gone(client, ns, name) -> bool:
    return await endpoints_of(client, ns, name) is None
