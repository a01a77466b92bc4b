"""ServiceAccount files, service environment variables and ConfigMap volumes end to end:
real Docker, an in-process kubelet, a real API server with the ServiceAccount admission
plugin on and the serviceaccount / root-ca-cert-publisher controllers running.

What the SA test proves: the kubelet-mounted files are read from inside the container
(``docker exec cat``), then that very token and CA bundle are used from the test process
against https://127.0.0.1:<port> (the pods of this node have no network to reach it): the
CA verifies the API server's certificate, the token lists the pod's namespace, is refused
elsewhere, and is refused (401) once the pod is deleted."""

from __future__ import annotations

import asyncio
import random
import ssl
import uuid

import httpx
import pytest

from cluster import running_controllers, start_apiserver, start_etcd, stop_process
from e2e_helpers import BUSYBOX, wait_for
from minik8s.api.errors import StatusError

pytestmark = pytest.mark.e2e

MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory):
    base = tmp_path_factory.mktemp("sa-e2e")
    etcd = start_etcd(base)
    srv = start_apiserver(base, etcd, "--compaction-interval", "3600", service_accounts=True)
    yield srv
    stop_process(srv.proc)
    stop_process(etcd.proc)


@pytest.fixture
async def sa_ns(client):
    name = f"sae-{uuid.uuid4().hex[:8]}"
    async with running_controllers(client, ["serviceaccount", "root-ca-cert-publisher"]):
        await client.create("namespaces", {"metadata": {"name": name}})

        async def ready():
            try:
                await client.get("serviceaccounts", "default", name)
                return await client.get("configmaps", "kube-root-ca.crt", name)
            except StatusError:
                return None
        await wait_for(ready, 20, "default SA and kube-root-ca.crt")
        yield name


def pod(node, name, **spec):
    containers = spec.pop("containers", None) or [
        {"name": "main", "image": BUSYBOX, "command": ["sleep", "3600"]}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node.name, "terminationGracePeriodSeconds": 1,
                     "containers": containers, **spec}}


async def running(client, ns, name):
    async def check():
        p = await client.get("pods", name, ns)
        sts = (p.get("status") or {}).get("containerStatuses") or []
        return p if sts and all("running" in (s.get("state") or {}) for s in sts) else None
    return await wait_for(check, 60, f"{ns}/{name} running")


async def sh(node, p, script, container="main"):
    st = next(s for s in p["status"]["containerStatuses"] if s["name"] == container)
    res = await node.runtime.exec_run(st["containerID"].removeprefix("docker://"),
                                      ["sh", "-c", script], timeout=10)
    out = res.output.decode() if isinstance(res.output, bytes) else str(res.output)
    assert res.exit_code == 0, (script, out)
    return out


async def test_mounted_service_account_files_work_against_the_api(node, client, sa_ns,
                                                                  apiserver):
    await client.create("pods", pod(node, "sa"), sa_ns)
    p = await running(client, sa_ns, "sa")
    token = await sh(node, p, f"cat {MOUNT}/token")
    ca = await sh(node, p, f"cat {MOUNT}/ca.crt")
    assert await sh(node, p, f"cat {MOUNT}/namespace") == sa_ns
    assert ca == apiserver.pki.ca_cert.read_text() and token.count(".") == 2
    listing = await sh(node, p, f"ls -a {MOUNT}; stat -L -c %a {MOUNT}/token; "
                                f"readlink {MOUNT}/token; grep {MOUNT} /proc/mounts")
    assert "..data" in listing and "\n644\n" in listing and "..data/token" in listing
    assert " ro," in listing  # mounted read-only
    ctx = ssl.create_default_context(cadata=ca)  # the pod's CA verifies the server
    async with httpx.AsyncClient(base_url=apiserver.url, verify=ctx, timeout=30,
                                 headers={"Authorization": f"Bearer {token}"}) as http:
        r = await http.get(f"/api/v1/namespaces/{sa_ns}/pods")
        assert r.status_code == 200, r.text
        assert [i["metadata"]["name"] for i in r.json()["items"]] == ["sa"]
        r = await http.get("/api/v1/namespaces/kube-system/pods")
        assert r.status_code == 403 and f"system:serviceaccount:{sa_ns}:default" in r.text
        await client.delete("pods", "sa", sa_ns)

        async def refused():
            return (await http.get(f"/api/v1/namespaces/{sa_ns}/pods")).status_code == 401
        await wait_for(refused, 30, "token of a deleted pod refused")


async def test_service_environment_variables(node, client, sa_ns):
    ip = f"10.96.{random.randint(100, 250)}.{random.randint(2, 250)}"
    await client.create("services", {"metadata": {"name": "web-db"}, "spec": {
        "clusterIP": ip, "selector": {"app": "db"},
        "ports": [{"name": "pg", "port": 5432, "targetPort": 5432}]}}, sa_ns)
    await wait_for(lambda: asyncio.sleep(0, node.kubelet.service_informer.get(
        f"{sa_ns}/web-db")), 20, "the kubelet's Services informer has the Service")
    c = {"name": "main", "image": BUSYBOX, "command": ["sleep", "3600"],
         "env": [{"name": "WEB_DB_SERVICE_PORT", "value": "mine"},
                 {"name": "URL", "value": "pg://$(WEB_DB_SERVICE_HOST):5432"}]}
    await client.create("pods", pod(node, "env", containers=[c],
                                    automountServiceAccountToken=False), sa_ns)
    p = await running(client, sa_ns, "env")
    env = dict(line.split("=", 1) for line in (await sh(node, p, "env")).splitlines()
               if "=" in line)
    assert env["WEB_DB_SERVICE_HOST"] == ip
    assert env["WEB_DB_SERVICE_PORT"] == "mine"  # the container's own value wins
    assert env["WEB_DB_SERVICE_PORT_PG"] == "5432"
    assert env["WEB_DB_PORT"] == f"tcp://{ip}:5432"
    assert env["WEB_DB_PORT_5432_TCP_ADDR"] == ip and env["WEB_DB_PORT_5432_TCP_PROTO"] == "tcp"
    assert env["URL"] == f"pg://{ip}:5432"
    # enableServiceLinks: false leaves them out
    await client.create("pods", pod(node, "nolinks", enableServiceLinks=False,
                                    automountServiceAccountToken=False), sa_ns)
    p = await running(client, sa_ns, "nolinks")
    assert "WEB_DB_" not in await sh(node, p, "env")


async def test_configmap_volume_items_modes_and_updates(node, client, sa_ns):
    await client.create("configmaps", {"metadata": {"name": "cfg"},
                                       "data": {"color": "blue", "size": "xl"}}, sa_ns)
    c = {"name": "main", "image": BUSYBOX, "command": ["sleep", "3600"], "volumeMounts": [
        {"name": "cfg", "mountPath": "/etc/cfg"},
        {"name": "all", "mountPath": "/etc/all"},
        {"name": "all", "mountPath": "/etc/color", "subPath": "color"}]}
    await client.create("pods", pod(node, "cm", containers=[c], volumes=[
        {"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 0o600, "items": [
            {"key": "color", "path": "c/colour", "mode": 0o400}, {"key": "size", "path": "s"}]}},
        {"name": "all", "configMap": {"name": "cfg"}}]), sa_ns)
    p = await running(client, sa_ns, "cm")
    out = await sh(node, p, "cat /etc/cfg/c/colour; echo; stat -L -c %a /etc/cfg/c/colour "
                            "/etc/cfg/s; ls /etc/all; cat /etc/color")
    assert out.split("\n") == ["blue", "400", "600", "color", "size", "blue"]
    await client.patch("configmaps", "cfg", {"data": {"color": "green", "size": "xl"}}, sa_ns)

    async def updated():
        text = await sh(node, p, "cat /etc/cfg/c/colour /etc/all/color")
        return text == "greengreen"
    await wait_for(updated, 60, "ConfigMap change reaches the mounted files")
    assert await sh(node, p, "cat /etc/color") == "blue"  # subPath: no updates
