"""ClusterIP and node-port allocation against real etcd and real API servers: defaults,
requested values, refusals with Kubernetes' wording, races between requests and between two
API server processes (etcd decides: exactly one wins), release on delete and type change,
repair at start, the `kubernetes` Service, and kubectl / the python client."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import random
import shutil
import subprocess
import uuid

import aetcd
import pytest

from cluster import eventually, start_apiserver, start_etcd, stop_process
from minik8s.api.errors import Invalid

IPS = "/registry/ranges/serviceips/"
PORTS = "/registry/ranges/servicenodeports/"
RANGE = ipaddress.ip_network("10.96.0.0/12")
KUBECTL = shutil.which("kubectl")


def svc(name: str, **spec) -> dict:
    spec.setdefault("ports", [{"port": 80}])
    return {"metadata": {"name": name}, "spec": spec}


def random_ip() -> str:
    """An address in the upper part of the range, unlikely to be picked by anyone else."""
    return str(ipaddress.ip_address(int(RANGE.network_address) + random.randint(4096,
                                                                               RANGE.num_addresses - 2)))


async def etcd_keys(url: str, prefix: str) -> dict[str, dict]:
    host, _, port = url.split("://")[1].rpartition(":")
    async with aetcd.Client(host=host, port=int(port)) as etcd:
        out = {}
        for kv in await etcd.get_prefix(prefix.encode()):
            out[kv.key.decode()[len(prefix):]] = json.loads(kv.value)
        return out


async def unclaimed_ip(url: str) -> str:
    """A random address no Service holds now. The session's etcd keeps the Services of
    earlier tests, whose dynamic picks come from the same band: a test that requests a held
    value would see every request refused, however the race between them goes."""
    held = await etcd_keys(url, IPS)
    while (ip := random_ip()) in held:
        pass
    return ip


async def unclaimed_port(url: str) -> int:
    """A random node port no Service holds now (see ``unclaimed_ip``: the node-port range
    is small, so earlier tests' picks are often in the way of a blind random one)."""
    held = await etcd_keys(url, PORTS)
    free = [p for p in range(30000, 32768) if str(p) not in held]
    assert free, "the node-port range is full"
    return random.choice(free)


async def test_defaults_and_allocation(apiserver, client, ns):
    s = await client.create("services", svc("web", selector={"app": "web"}), ns)
    spec = s["spec"]
    ip = ipaddress.ip_address(spec["clusterIP"])
    assert ip in RANGE and ip != RANGE.network_address + 1
    assert spec["clusterIPs"] == [spec["clusterIP"]]
    assert spec["ipFamilies"] == ["IPv4"] and spec["ipFamilyPolicy"] == "SingleStack"
    assert "nodePort" not in spec["ports"][0]

    np_ = await client.create("services", svc("np", type="NodePort", ports=[
        {"name": "a", "port": 80}, {"name": "b", "port": 81, "protocol": "UDP"}]), ns)
    ports = [p["nodePort"] for p in np_["spec"]["ports"]]
    assert all(30000 <= p <= 32767 for p in ports) and len(set(ports)) == 2

    headless = await client.create("services", svc("hl", clusterIP="None"), ns)
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["clusterIPs"] == ["None"]
    ext = await client.create("services", {"metadata": {"name": "ext"}, "spec": {
        "type": "ExternalName", "externalName": "db.example.org"}}, ns)
    assert "clusterIP" not in ext["spec"] and "clusterIPs" not in ext["spec"]

    # etcd holds one claim per address and port, naming its Service.
    claims = await etcd_keys(apiserver.etcd.url, IPS)
    assert claims[spec["clusterIP"]] == {"namespace": ns, "name": "web",
                                         "uid": s["metadata"]["uid"]}
    port_claims = await etcd_keys(apiserver.etcd.url, PORTS)
    assert {port_claims[str(p)]["name"] for p in ports} == {"np"}


async def test_requested_values_and_refusals(apiserver, client, ns):
    url = apiserver.etcd.url
    ip, port = await unclaimed_ip(url), await unclaimed_port(url)
    s = await client.create("services", svc("a", type="NodePort", clusterIP=ip, ports=[
        {"port": 80, "nodePort": port}]), ns)
    assert s["spec"]["clusterIP"] == ip and s["spec"]["ports"][0]["nodePort"] == port

    with pytest.raises(Invalid) as err:
        await client.create("services", svc("b", clusterIP=ip), ns)
    assert err.value.message == (f'Service "b" is invalid: spec.clusterIPs[0]: Invalid value: '
                                 f'"{ip}": failed to allocate IP {ip}: provided IP is already '
                                 f'allocated')
    assert err.value.causes[0]["field"] == "spec.clusterIPs[0]"
    with pytest.raises(Invalid) as err:
        await client.create("services", svc("c", type="NodePort", ports=[
            {"port": 80, "nodePort": port}]), ns)
    assert err.value.message == (f'Service "c" is invalid: spec.ports[0].nodePort: Invalid '
                                 f'value: {port}: provided port is already allocated')
    with pytest.raises(Invalid) as err:
        await client.create("services", svc("d", clusterIP="10.0.0.5"), ns)
    assert "failed to allocate IP 10.0.0.5: the provided IP (10.0.0.5) is not in the valid " \
           "range. The range of valid IPs is 10.96.0.0/12" in err.value.message
    # dryRun refuses the same, and claims nothing.
    with pytest.raises(Invalid):
        await client.create("services", svc("e", clusterIP=ip), ns, dry_run=True)
    free = await unclaimed_ip(url)
    dry = await client.create("services", svc("f", clusterIP=free), ns, dry_run=True)
    assert dry["spec"]["clusterIP"] == free
    assert free not in await etcd_keys(apiserver.etcd.url, IPS)
    # The refused creates left nothing behind: the names are free.
    assert [x["metadata"]["name"] for x in (await client.list("services", ns))["items"]] == ["a"]


async def test_release_on_delete_type_change_and_port_removal(apiserver, client, ns):
    s = await client.create("services", svc("rel", type="NodePort", ports=[
        {"name": "a", "port": 80}, {"name": "b", "port": 81}]), ns)
    ip = s["spec"]["clusterIP"]
    p_a, p_b = (p["nodePort"] for p in s["spec"]["ports"])
    url = apiserver.etcd.url

    # An update that leaves the allocations out keeps them.
    body = svc("rel", type="NodePort", ports=[{"name": "a", "port": 80},
                                              {"name": "b", "port": 81}])
    body["metadata"]["resourceVersion"] = s["metadata"]["resourceVersion"]
    kept = await client.update("services", body, ns)
    assert kept["spec"]["clusterIP"] == ip
    assert [p["nodePort"] for p in kept["spec"]["ports"]] == [p_a, p_b]

    # Removing a port releases its node port.
    kept["spec"]["ports"] = kept["spec"]["ports"][:1]
    one = await client.update("services", kept, ns)
    ports = await etcd_keys(url, PORTS)
    assert str(p_a) in ports and str(p_b) not in ports

    # NodePort -> ClusterIP drops and releases the node ports, keeps the address.
    one["spec"]["type"] = "ClusterIP"
    plain = await client.update("services", one, ns)
    assert "nodePort" not in plain["spec"]["ports"][0]
    assert "externalTrafficPolicy" not in plain["spec"]
    assert plain["spec"]["clusterIP"] == ip
    assert str(p_a) not in await etcd_keys(url, PORTS)

    # The released port can be requested by another Service at once.
    other = await client.create("services", svc("other", type="NodePort", ports=[
        {"port": 80, "nodePort": p_a}]), ns)
    assert other["spec"]["ports"][0]["nodePort"] == p_a

    # Delete releases the address.
    await client.delete("services", "rel", ns)
    assert ip not in await etcd_keys(url, IPS)
    again = await client.create("services", svc("again", clusterIP=ip), ns)
    assert again["spec"]["clusterIP"] == ip


async def test_hundred_services_distinct_addresses(apiserver, client, ns):
    made = await asyncio.gather(*(client.create("services", svc(f"s{i}", type="NodePort"), ns)
                                  for i in range(100)))
    ips = [m["spec"]["clusterIP"] for m in made]
    ports = [m["spec"]["ports"][0]["nodePort"] for m in made]
    assert len(set(ips)) == 100 and len(set(ports)) == 100
    claims = await etcd_keys(apiserver.etcd.url, IPS)
    assert all(claims[ip]["namespace"] == ns for ip in ips)
    # Namespace-wide: nothing else holds any of them.
    listed = (await client.list("services", all_namespaces=True))["items"]
    all_ips = [x["spec"]["clusterIP"] for x in listed if x["spec"].get("clusterIP")
               not in (None, "None")]
    assert len(all_ips) == len(set(all_ips))


async def test_concurrent_creates_race_for_one_value(apiserver, client, ns):
    url = apiserver.etcd.url
    ip, port = await unclaimed_ip(url), await unclaimed_port(url)

    async def attempt(i: int, **spec):
        try:
            return await client.create("services", svc(f"race{i}", **spec), ns)
        except Invalid as err:
            return err

    results = await asyncio.gather(*(attempt(i, clusterIP=ip) for i in range(10)))
    won = [r for r in results if isinstance(r, dict)]
    assert len(won) == 1 and won[0]["spec"]["clusterIP"] == ip
    assert all("provided IP is already allocated" in r.message for r in results
               if not isinstance(r, dict))
    results = await asyncio.gather(*(attempt(10 + i, type="NodePort", ports=[
        {"port": 80, "nodePort": port}]) for i in range(10)))
    assert sum(isinstance(r, dict) for r in results) == 1


async def test_two_api_servers_never_hand_out_one_value(apiserver, client, ns, tmp_path):
    second = start_apiserver(tmp_path, apiserver.etcd, "--compaction-interval", "3600")
    other = second.client()
    try:
        url = apiserver.etcd.url
        ip, port = await unclaimed_ip(url), await unclaimed_port(url)

        async def attempt(c, i, **spec):
            try:
                return await c.create("services", svc(f"m{i}", **spec), ns)
            except Invalid as err:
                return err

        tries = [attempt(client if i % 2 else other, i, clusterIP=ip, type="NodePort",
                         ports=[{"port": 80, "nodePort": port}]) for i in range(8)]
        results = await asyncio.gather(*tries)
        assert sum(isinstance(r, dict) for r in results) == 1
        # Dynamic picks from both servers at once: all distinct.
        made = await asyncio.gather(*(
            (client if i % 2 else other).create("services", svc(f"d{i}", type="NodePort"), ns)
            for i in range(40)))
        assert len({m["spec"]["clusterIP"] for m in made}) == 40
        assert len({m["spec"]["ports"][0]["nodePort"] for m in made}) == 40
    finally:
        await other.aclose()
        stop_process(second.proc)


async def test_repair_at_start(tmp_path):
    etcd = start_etcd(tmp_path)
    srv = start_apiserver(tmp_path, etcd)
    try:
        c = srv.client()
        try:
            s = await c.create("services", svc("keep", type="NodePort"), "default")
        finally:
            await c.aclose()
        host, _, port = etcd.url.split("://")[1].rpartition(":")
        async with aetcd.Client(host=host, port=int(port)) as raw:
            await raw.put(f"{IPS}10.100.0.7".encode(),
                          b'{"name":"gone","namespace":"default","uid":"x"}')
            await raw.put(f"{PORTS}31999".encode(),
                          b'{"name":"gone","namespace":"default","uid":"x"}')
            await raw.delete(f"{IPS}{s['spec']['clusterIP']}".encode())
            node_port = s["spec"]["ports"][0]["nodePort"]  # held under a former owner
            await raw.put(f"{PORTS}{node_port}".encode(),
                          b'{"name":"keep","namespace":"default","uid":"before"}')
        stop_process(srv.proc)
        srv = start_apiserver(tmp_path, etcd)  # the same PKI, a new process
        ips = await etcd_keys(etcd.url, IPS)
        assert "10.100.0.7" not in ips
        assert ips[s["spec"]["clusterIP"]]["uid"] == s["metadata"]["uid"]
        ports = await etcd_keys(etcd.url, PORTS)
        assert "31999" not in ports and ports[str(node_port)]["uid"] == s["metadata"]["uid"]
        assert "repair: 2 stale claim(s) removed, 2 restored" in srv.log.read_text()
    finally:
        stop_process(srv.proc)
        stop_process(etcd.proc)


async def test_kubernetes_service_and_endpoints(apiserver, client):
    async def present():
        try:
            s = await client.get("services", "kubernetes", "default")
            e = await client.get("endpoints", "kubernetes", "default")
        except Exception:
            return None
        # (Another API server of a test before may still be listed, one subset per port,
        # until its record is gone: removed when it stops, expired otherwise.)
        return (s, e) if s["spec"]["ports"][0]["targetPort"] == apiserver.port and \
            len(e.get("subsets") or []) == 1 else None

    s, e = await eventually(present, timeout=30)
    assert s["spec"]["clusterIP"] == "10.96.0.1"
    assert s["spec"]["ports"] == [{"name": "https", "port": 443, "protocol": "TCP",
                                   "targetPort": apiserver.port}]
    assert e["subsets"][0]["ports"] == [{"name": "https", "port": apiserver.port,
                                         "protocol": "TCP"}]
    assert {"ip": "127.0.0.1"} in e["subsets"][0]["addresses"]


async def test_kubernetes_service_is_repaired(tmp_path):
    etcd = start_etcd(tmp_path)
    srv = start_apiserver(tmp_path, etcd, "--advertise-address", "127.0.0.1",
                          "--config", str(_config(tmp_path)))
    c = srv.client()
    try:
        await eventually(lambda: _get(c, "services", "kubernetes"))
        await c.delete("services", "kubernetes", "default")
        await c.delete("endpoints", "kubernetes", "default")
        s = await eventually(lambda: _get(c, "services", "kubernetes"))
        assert s["spec"]["clusterIP"] == "10.96.0.1"
        e = await eventually(lambda: _get(c, "endpoints", "kubernetes"))
        assert e["subsets"][0]["addresses"] == [{"ip": "127.0.0.1"}]
    finally:
        await c.aclose()
        stop_process(srv.proc)
        stop_process(etcd.proc)


def _config(tmp_path):
    path = tmp_path / "apiserver.yaml"
    path.write_text("kubernetes_service_sync_seconds: 0.5\n")
    return path


async def _get(c, plural, name):
    try:
        return await c.get(plural, name, "default")
    except Exception:
        return None


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_kubectl_nodeport_service(kubeconfig, tmp_path):
    ns = f"kc-{uuid.uuid4().hex[:8]}"

    def kubectl(*args, stdin=None, check=True):
        r = subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir",
                            str(tmp_path / "cache"), *args], input=stdin, capture_output=True,
                           text=True, timeout=120)
        if check:
            assert r.returncode == 0, r.stderr
        return r

    kubectl("create", "namespace", ns, "--dry-run=client", "-o", "yaml")
    kubectl("apply", "-f", "-", stdin=f"apiVersion: v1\nkind: Namespace\nmetadata:\n"
                                      f"  name: {ns}\n")
    # kubectl's own generator, applied (its typed `create service` sends protobuf).
    manifest = kubectl("create", "service", "nodeport", "web", "--tcp=80:8080", "-n", ns,
                       "--dry-run=client", "-o", "yaml").stdout
    manifest = manifest.replace("  creationTimestamp: null\n", "")
    out = kubectl("apply", "-n", ns, "-f", "-", stdin=manifest)
    assert out.stdout.strip() == "service/web created"
    got = json.loads(kubectl("get", "service", "web", "-n", ns, "-o", "json").stdout)
    node_port = got["spec"]["ports"][0]["nodePort"]
    assert 30000 <= node_port <= 32767
    assert ipaddress.ip_address(got["spec"]["clusterIP"]) in RANGE
    row = kubectl("get", "service", "web", "-n", ns).stdout.splitlines()[1].split()
    assert row[:2] == ["web", "NodePort"] and row[4] == f"80:{node_port}/TCP"
    # Re-applying keeps the allocations; switching to ClusterIP drops the node port.
    assert kubectl("apply", "-n", ns, "-f", "-", stdin=manifest).stdout.strip() == \
        "service/web unchanged"
    changed = manifest.replace("type: NodePort", "type: ClusterIP")
    assert kubectl("apply", "-n", ns, "-f", "-", stdin=changed).stdout.strip() == \
        "service/web configured"
    got2 = json.loads(kubectl("get", "service", "web", "-n", ns, "-o", "json").stdout)
    assert got2["spec"]["clusterIP"] == got["spec"]["clusterIP"]
    assert "nodePort" not in got2["spec"]["ports"][0]
    taken = kubectl("apply", "-n", ns, "-f", "-", check=False, stdin=manifest.replace(
        "name: web\n", "name: web2\n", 1).replace("targetPort: 8080",
                                                  f"targetPort: 8080\n    nodePort: {node_port}"))
    assert taken.returncode == 0  # the port was released by the type change
    kubectl("delete", "namespace", ns, "--wait=false")


def test_python_client_nodeport(apiserver):
    kubernetes = pytest.importorskip("kubernetes")
    from kubernetes import client as k8s, config as k8s_config
    from kubernetes.client.rest import ApiException

    cfg = k8s.Configuration()
    k8s_config.load_kube_config(config_file=str(apiserver.kubeconfig), client_configuration=cfg)
    with k8s.ApiClient(cfg) as api:
        core = k8s.CoreV1Api(api)
        ns = f"py-{uuid.uuid4().hex[:8]}"
        core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ns)))
        body = k8s.V1Service(metadata=k8s.V1ObjectMeta(name="web"), spec=k8s.V1ServiceSpec(
            type="NodePort", selector={"app": "web"},
            ports=[k8s.V1ServicePort(port=80, target_port=8080)]))
        made = core.create_namespaced_service(ns, body)
        assert made.spec.cluster_ip == made.spec.cluster_ips[0]
        assert 30000 <= made.spec.ports[0].node_port <= 32767
        clash = k8s.V1Service(metadata=k8s.V1ObjectMeta(name="clash"), spec=k8s.V1ServiceSpec(
            cluster_ip=made.spec.cluster_ip, ports=[k8s.V1ServicePort(port=80)]))
        with pytest.raises(ApiException) as err:
            core.create_namespaced_service(ns, clash)
        assert err.value.status == 422
        assert json.loads(err.value.body)["details"]["causes"][0]["field"] == \
            "spec.clusterIPs[0]"
        core.delete_namespace(ns)
