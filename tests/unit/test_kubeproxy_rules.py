"""kube-proxy's pure parts: the service map built from Services and Endpoints, the iptables
rules rendered from it, the jump and cleanup plans read from ``iptables-save`` output, the
userspace balancer, and the debounced sync loop over fake informers' events."""

from __future__ import annotations

import asyncio
import shlex

import pytest

from kubeproxy import iptables as ipt
from kubeproxy.servicemap import Endpoint, ServicePort, build_service_map
from kubeproxy.userspace import Balancer

CLUSTER = "10.244.0.0/16"


def svc(name="web", ip="10.96.0.20", ports=None, type_="ClusterIP", ns="default", **spec):
    return {"metadata": {"namespace": ns, "name": name},
            "spec": {"type": type_, "clusterIP": ip,
                     "ports": ports or [{"name": "http", "port": 80, "protocol": "TCP"}],
                     **spec}}


def eps(name="web", ips=("10.244.0.2", "10.244.0.3", "10.244.1.2"), port=80, port_name="http",
        not_ready=(), ns="default"):
    return {"metadata": {"namespace": ns, "name": name},
            "subsets": [{"addresses": [{"ip": i} for i in ips],
                         "notReadyAddresses": [{"ip": i} for i in not_ready],
                         "ports": [{"name": port_name, "port": port, "protocol": "TCP"}]}]}


def rules_of(text: str, chain: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(f"-A {chain} ")]


# --- service map --------------------------------------------------------------------------


def test_service_map_matches_endpoints_by_port_name_and_skips_unready():
    services = [svc(ports=[{"name": "http", "port": 80}, {"name": "metrics", "port": 9090}])]
    endpoints = [{"metadata": {"namespace": "default", "name": "web"}, "subsets": [
        {"addresses": [{"ip": "10.244.0.3"}, {"ip": "10.244.0.2"}],
         "notReadyAddresses": [{"ip": "10.244.0.9"}],
         "ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9100}]}]}]
    m = build_service_map(services, endpoints)
    assert [(sp.key, sp.port, sp.endpoints) for sp in m] == [
        ("default/web:http", 80, (Endpoint("10.244.0.2", 8080), Endpoint("10.244.0.3", 8080))),
        ("default/web:metrics", 9090,
         (Endpoint("10.244.0.2", 9100), Endpoint("10.244.0.3", 9100)))]


def test_service_map_unnamed_port_key_and_types():
    services = [svc("a", ports=[{"port": 53, "protocol": "UDP"}]),
                svc("headless", ip="None"),
                svc("ext", type_="ExternalName", ip=None),
                svc("np", type_="NodePort", ports=[{"port": 80, "nodePort": 30080}],
                    sessionAffinity="ClientIP",
                    sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})]
    m = {sp.key: sp for sp in build_service_map(services, [])}
    assert set(m) == {"default/a", "default/np"}
    assert m["default/a"].protocol == "UDP" and m["default/a"].endpoints == ()
    assert m["default/np"].node_port == 30080 and m["default/np"].affinity_timeout == 60
    # a nodePort on a ClusterIP Service is not programmed
    m2 = build_service_map([svc(ports=[{"name": "http", "port": 80, "nodePort": 30001}])], [])
    assert m2[0].node_port is None


# --- rendering ----------------------------------------------------------------------------


def render(services, endpoints, **kw):
    return ipt.render(build_service_map(services, endpoints), cluster_cidr=CLUSTER, **kw)


def test_even_spread_over_three_endpoints():
    text = render([svc()], [eps()])
    sp = build_service_map([svc()], [eps()])[0]
    chain = ipt.svc_chain(sp)
    assert chain.startswith("KUBE-SVC-") and len(chain) == len("KUBE-SVC-") + 16
    rules = rules_of(text, chain)
    assert f"! -s {CLUSTER} -d 10.96.0.20/32" in rules[0] and rules[0].endswith("KUBE-MARK-MASQ")
    picks = rules[1:]
    assert "--probability 0.3333333333" in picks[0]
    assert "--probability 0.5000000000" in picks[1]
    assert "statistic" not in picks[2]
    seps = [r.split("-j ")[-1] for r in picks]
    assert seps == [ipt.sep_chain(sp, ep) for ep in sp.endpoints]
    for ep, sep in zip(sp.endpoints, seps):
        sep_rules = rules_of(text, sep)
        assert f"-s {ep.ip}/32" in sep_rules[0] and sep_rules[0].endswith("KUBE-MARK-MASQ")
        assert sep_rules[1].endswith(f"-j DNAT --to-destination {ep}")
    entry = rules_of(text, "KUBE-SERVICES")
    assert "-d 10.96.0.20/32 -p tcp" in entry[0] and entry[0].endswith(f"-j {chain}")
    assert "addrtype --dst-type LOCAL -j KUBE-NODEPORTS" in entry[-1]  # last, always


def test_every_restore_line_is_well_formed_for_iptables():
    text = render([svc(type_="NodePort", ports=[{"name": "http", "port": 80,
                                                 "nodePort": 30080}])], [eps()])
    for line in text.splitlines():
        if line.startswith("-A"):
            words = shlex.split(line)
            assert "-j" in words
            assert all(w for w in words)
    assert text.count("COMMIT") == 2 and text.startswith("*filter\n")


def test_no_endpoints_rejects_in_filter_and_has_no_nat_chain():
    s = svc(type_="NodePort", ports=[{"name": "http", "port": 80, "nodePort": 30080}])
    text = render([s], [eps(ips=(), not_ready=("10.244.0.5",))])
    assert "KUBE-SVC-" not in text
    (reject,) = rules_of(text, "KUBE-SERVICES")[:1]
    assert "-d 10.96.0.20/32" in reject and "--dport 80" in reject
    assert reject.endswith("-j REJECT --reject-with icmp-port-unreachable")
    (ext,) = rules_of(text, "KUBE-EXTERNAL-SERVICES")
    assert "--dst-type LOCAL" in ext and "--dport 30080" in ext and "REJECT" in ext


def test_node_port_marks_for_masquerade_then_joins_the_service_chain():
    s = svc(type_="NodePort", ports=[{"name": "http", "port": 80, "nodePort": 30080}])
    text = render([s], [eps(ips=("10.244.0.2",))])
    sp = build_service_map([s], [])[0]
    ext = ipt.ext_chain(sp)
    (np,) = rules_of(text, "KUBE-NODEPORTS")
    assert "--dport 30080" in np and np.endswith(f"-j {ext}")
    assert [r.split("-j ")[-1] for r in rules_of(text, ext)] == ["KUBE-MARK-MASQ",
                                                                 ipt.svc_chain(sp)]
    assert rules_of(text, "KUBE-POSTROUTING")[-1].endswith("-j MASQUERADE")


def test_client_ip_affinity_uses_recent_lists_named_after_endpoints():
    s = svc(sessionAffinity="ClientIP")
    text = render([s], [eps(ips=("10.244.0.2", "10.244.0.3"))])
    sp = build_service_map([s], [])[0]
    rules = rules_of(text, ipt.svc_chain(sp))
    checks = [r for r in rules if "--rcheck" in r]
    assert len(checks) == 2 and all("--seconds 10800 --reap" in r for r in checks)
    for r in checks:
        sep = r.split("-j ")[-1]
        assert f"--name {sep}" in r
        (dnat,) = [x for x in rules_of(text, sep) if "DNAT" in x]
        assert f"--name {sep}" in dnat and "--set" in dnat
    # checks come before the random picks
    assert rules.index(checks[-1]) < min(i for i, r in enumerate(rules) if "statistic" in r)


def test_masquerade_all_marks_every_cluster_ip_connection():
    text = render([svc()], [eps()], masquerade_all=True)
    first = rules_of(text, ipt.svc_chain(build_service_map([svc()], [])[0]))[0]
    assert "! -s" not in first and first.endswith("-j KUBE-MARK-MASQ")


def test_localnet_guard_rule():
    (guard,) = rules_of(render([], []), "KUBE-FIREWALL")
    assert "! -s 127.0.0.0/8 -d 127.0.0.0/8" in guard
    assert "! --ctstate RELATED,ESTABLISHED,DNAT -j DROP" in guard


def test_stale_service_chains_are_flushed_and_deleted_in_the_same_batch():
    text = render([svc()], [eps()], existing_nat_chains=[
        "PREROUTING", "KUBE-SERVICES", "KUBE-SVC-GONEGONEGONEGONE", "KUBE-SEP-OLD", "DOCKER"])
    assert ":KUBE-SVC-GONEGONEGONEGONE - [0:0]" in text and "-X KUBE-SVC-GONEGONEGONEGONE" in text
    assert "-X KUBE-SEP-OLD" in text
    assert "DOCKER" not in text and "-X KUBE-SERVICES" not in text
    assert text.index("-X KUBE-SEP-OLD") > text.index("*nat")


# --- jumps and cleanup --------------------------------------------------------------------

SAVED_NAT = """*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SVC-AAAA - [0:0]
:OTHER - [0:0]
-A PREROUTING -j OTHER
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-SERVICES -d 10.96.0.20/32 -j KUBE-SVC-AAAA
COMMIT
"""


def test_jumps_are_moved_first_only_when_they_are_not():
    cmds = ipt.plan_jumps("nat", SAVED_NAT)
    assert cmds == [
        ["-t", "nat", "-D", "PREROUTING", "-m", "comment", "--comment",
         "kubernetes service portals", "-j", "KUBE-SERVICES"],
        ["-t", "nat", "-I", "PREROUTING", "1", "-m", "comment", "--comment",
         "kubernetes service portals", "-j", "KUBE-SERVICES"]]
    fixed = SAVED_NAT.replace("-A PREROUTING -j OTHER\n", "")
    assert ipt.plan_jumps("nat", fixed) == []
    # a missing jump is inserted (filter: two INPUT jumps, in order)
    cmds = ipt.plan_jumps("filter", "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n")
    inserts = [c for c in cmds if c[2] == "-I" and c[3] == "INPUT"]
    assert [c[-1] for c in inserts] == ["KUBE-FIREWALL", "KUBE-EXTERNAL-SERVICES"]


def test_cleanup_plan_removes_jumps_and_only_our_chains():
    cmds, batch = ipt.plan_cleanup("nat", SAVED_NAT)
    assert all(c[2] == "-D" for c in cmds) and len(cmds) == 3
    assert not any("OTHER" in c for c in cmds)
    assert batch is not None
    assert "-X KUBE-SVC-AAAA" in batch and "-X KUBE-SERVICES" in batch
    assert "OTHER" not in batch
    assert ipt.plan_cleanup("nat", "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n") == ([], None)


class FakeRunner:
    """iptables in memory, enough for the backend: restore batches are recorded and the
    chains they declare (minus the ones they delete) become the saved state."""

    def __init__(self):
        self.chains = {"nat": set(), "filter": set()}
        self.batches: list[str] = []
        self.commands: list[list[str]] = []

    async def save(self, table):
        return "".join(f":{c} - [0:0]\n" for c in sorted(self.chains[table]))

    async def restore(self, text):
        self.batches.append(text)
        table = None
        for line in text.splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":"):
                self.chains[table].add(line[1:].split()[0])
            elif line.startswith("-X "):
                self.chains[table].discard(line.split()[1])

    async def run(self, args):
        self.commands.append(args)


async def test_backend_sync_replaces_chains_and_cleanup_removes_them():
    runner = FakeRunner()
    backend = ipt.IptablesBackend(runner, cluster_cidr=CLUSTER)
    m1 = build_service_map([svc(), svc("api", ip="10.96.0.30")], [eps(), eps("api")])
    await backend.sync(m1)
    svc_chains = {c for c in runner.chains["nat"] if c.startswith("KUBE-SVC-")}
    assert len(svc_chains) == 2
    assert any(c[2] == "-I" for c in runner.commands)
    await backend.sync(build_service_map([svc()], [eps()]))
    assert len({c for c in runner.chains["nat"] if c.startswith("KUBE-SVC-")}) == 1
    await backend.close()
    assert runner.chains == {"nat": set(), "filter": set()}


# --- userspace balancer -------------------------------------------------------------------


def test_balancer_round_robin_and_affinity():
    e = (Endpoint("10.244.0.2", 80), Endpoint("10.244.0.3", 80), Endpoint("10.244.1.2", 80))
    now = [0.0]
    b = Balancer(clock=lambda: now[0])
    b.update(e, None)
    assert [b.choose("1.1.1.1")[0] for _ in range(6)] == list(e) * 2
    assert b.choose("1.1.1.1")[1:] == [e[1], e[2]]  # the others, as fallbacks
    b.update(e, 10)
    first = b.choose("1.1.1.1")[0]
    assert all(b.choose("1.1.1.1")[0] == first for _ in range(5))
    assert b.choose("2.2.2.2")[0] != first
    now[0] = 100.0  # affinity expired: round robin again
    assert b.choose("1.1.1.1")[0] == e[(e.index(first) + 2) % 3]
    b.update(e[1:], 10)  # the pinned endpoint may be gone
    assert b.choose("1.1.1.1")[0] in e[1:]
    b.update((), 10)
    assert b.choose("1.1.1.1") == []


# --- the sync loop ------------------------------------------------------------------------


class FakeClient:
    """list+watch for the informers: the initial lists, then events pushed by the test."""

    def __init__(self, services, endpoints):
        self.objs = {"services": services, "endpoints": endpoints}
        self.queues = {"services": asyncio.Queue(), "endpoints": asyncio.Queue()}

    async def watch_forever(self, resource, namespace=None, **kw):
        name = resource if isinstance(resource, str) else resource.plural
        for obj in self.objs[name]:
            yield {"type": "ADDED", "object": obj}
        yield {"type": "SYNCED", "object": {}}
        while True:
            yield await self.queues[name].get()


class RecordingBackend:
    name = "fake"

    def __init__(self):
        self.maps: list[list[ServicePort]] = []
        self.changed = asyncio.Event()

    async def sync(self, ports):
        self.maps.append(ports)
        self.changed.set()

    async def close(self):
        pass


async def test_proxier_syncs_once_per_burst_of_changes():
    from kubeproxy.proxier import Proxier

    client = FakeClient([svc()], [eps(ips=("10.244.0.2",))])
    backend = RecordingBackend()
    proxier = Proxier(client, backend, min_sync_period=0.2, debounce=0.1, sync_period=60)
    task = asyncio.get_running_loop().create_task(proxier.start())
    try:
        await asyncio.wait_for(proxier.synced.wait(), 5)
        assert [sp.endpoints for sp in backend.maps[-1]] == [(Endpoint("10.244.0.2", 80),)]
        before = len(backend.maps)
        backend.changed.clear()
        for n in range(2, 6):  # a burst: one sync afterwards, with the final state
            ips = tuple(f"10.244.0.{i}" for i in range(2, n + 1))
            client.queues["endpoints"].put_nowait({"type": "MODIFIED", "object": eps(ips=ips)})
        await asyncio.wait_for(backend.changed.wait(), 5)
        await asyncio.sleep(0.5)
        assert len(backend.maps) - before == 1
        assert len(backend.maps[-1][0].endpoints) == 4
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
