"""The kubelet's pure parts: ``$(VAR)`` expansion and env resolution, phase and conditions,
probe state machines on a fake clock, volume files, the Node and Lease it writes, flags."""

from __future__ import annotations

import base64
import os

import pytest

from fakes import FakeClient, FakeClock, advance, settle
from kubelet.config import KubeletConfig
from kubelet.envvars import ContainerConfigError, build_env, expand
from kubelet.main import make_network, parse_args
from kubelet.network import NoNetwork
from kubelet.node import NodeAgent
from kubelet.pods import Backoff, fmt_duration
from kubelet.probes import ProbeManager, ProbeTarget
from kubelet.runtime.base import ContainerInfo
from kubelet.runtime.fake import FakeRuntime
from kubelet.status import (ContainerView, conditions, container_status, get_phase, pod_status,
                            qos_class, status_patch)
from kubelet.volumes import container_mounts, setup_volumes

# --- env ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("text,expected", [
    ("$(A)", "a"), ("x-$(A)-$(B)", "x-a-b"), ("$(MISSING)", "$(MISSING)"),
    ("$$(A)", "$(A)"), ("$$", "$"), ("$A", "$A"), ("$(A", "$(A"), ("a$", "a$"),
    ("$(A)$(A)", "aa"), ("", ""), ("$()", "$()"),
])
def test_expand_follows_kubernetes(text, expected):
    assert expand(text, {"A": "a", "B": "b"}.get) == expected


def _getter(objects):
    async def get(kind, ns, name):
        return objects.get((kind, ns, name))
    return get


POD = {"metadata": {"name": "web", "namespace": "prod", "uid": "u1", "labels": {"app": "x"}},
       "spec": {"nodeName": "n1", "serviceAccountName": "default"}}


async def test_env_order_value_from_and_env_from():
    objects = {
        ("configmaps", "prod", "cfg"): {"data": {"color": "blue", "bad key": "x", "A": "cm"}},
        ("secrets", "prod", "sec"): {"data": {"pw": base64.b64encode(b"hunter2").decode()}},
    }
    container = {
        "envFrom": [{"configMapRef": {"name": "cfg"}}, {"secretRef": {"name": "sec"},
                                                        "prefix": "S_"}],
        "env": [
            {"name": "A", "value": "literal"},
            {"name": "REF", "value": "$(A)/$(color)/$(NOPE)"},
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "pw"}}},
            {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "none", "key": "k",
                                                           "optional": True}}},
            {"name": "OPTKEY", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "zz",
                                                                 "optional": True}}},
        ]}
    env = await build_env(container, POD, _getter(objects), pod_ip="10.1.1.1",
                          host_ip="192.168.0.1")
    assert env["A"] == "literal"  # env overrides envFrom
    assert env["REF"] == "literal/blue/$(NOPE)"
    assert env["color"] == "blue" and "bad key" not in env
    assert env["S_pw"] == "hunter2" and env["PW"] == "hunter2"
    assert (env["NAME"], env["NS"], env["NODE"]) == ("web", "prod", "n1")
    assert (env["IP"], env["HOST"], env["APP"]) == ("10.1.1.1", "192.168.0.1", "x")
    assert "OPT" not in env and "OPTKEY" not in env


@pytest.mark.parametrize("var,message", [
    ({"configMapKeyRef": {"name": "nope", "key": "k"}}, 'configmap "nope" not found'),
    ({"secretKeyRef": {"name": "nope", "key": "k"}}, 'secret "nope" not found'),
    ({"configMapKeyRef": {"name": "cfg", "key": "k"}}, "couldn't find key k in ConfigMap prod/cfg"),
])
async def test_env_missing_references(var, message):
    objects = {("configmaps", "prod", "cfg"): {"data": {}}}
    with pytest.raises(ContainerConfigError) as exc:
        await build_env({"env": [{"name": "X", "valueFrom": var}]}, POD, _getter(objects))
    assert str(exc.value) == message


# --- status -------------------------------------------------------------------------------------


def info(state, code=None, attempt=0, oom=False, cid="abc"):
    return ContainerInfo(id=cid, name="n", labels={"io.minik8s.container.attempt": str(attempt)},
                         state=state, exit_code=code, oom_killed=oom,
                         started_at="2024-01-01T00:00:00Z",
                         finished_at="2024-01-01T00:00:05Z" if state == "exited" else None)


def st(view):
    return container_status(view)


RUN = {"state": {"running": {}}, "lastState": {}}
WAIT = {"state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {}}
CRASH = {"state": {"waiting": {"reason": "CrashLoopBackOff"}},
         "lastState": {"terminated": {"exitCode": 1}}}
OK = {"state": {"terminated": {"exitCode": 0}}, "lastState": {}}
ERR = {"state": {"terminated": {"exitCode": 2}}, "lastState": {}}


@pytest.mark.parametrize("policy,init,apps,phase", [
    ("Always", [], [WAIT], "Pending"),
    ("Always", [], [RUN, WAIT], "Pending"),
    ("Always", [], [RUN, RUN], "Running"),
    ("Always", [], [CRASH], "Running"),
    ("Always", [], [OK], "Running"),
    ("OnFailure", [], [OK, OK], "Succeeded"),
    ("OnFailure", [], [ERR], "Running"),
    ("Never", [], [OK, ERR], "Failed"),
    ("Never", [], [OK, RUN], "Running"),
    ("Never", [], [OK], "Succeeded"),
    ("Always", [RUN], [WAIT], "Pending"),
    ("Never", [ERR], [WAIT], "Failed"),
    ("OnFailure", [CRASH], [WAIT], "Pending"),
    ("Always", [OK], [RUN], "Running"),
])
def test_get_phase(policy, init, apps, phase):
    assert get_phase({"restartPolicy": policy}, init, apps) == phase


def test_container_status_shapes():
    running = st(ContainerView("c", "img", latest=info("running", attempt=2),
                               previous=info("exited", 1, attempt=1, cid="old"), ready=True,
                               started=True, image_id="docker://sha256:1"))
    assert running["state"] == {"running": {"startedAt": "2024-01-01T00:00:00Z"}}
    assert running["lastState"]["terminated"]["containerID"] == "docker://old"
    assert running["lastState"]["terminated"]["reason"] == "Error"
    assert running["restartCount"] == 2 and running["ready"] and running["started"]
    oom = st(ContainerView("c", "img", latest=info("exited", 137, oom=True)))
    assert oom["state"]["terminated"]["reason"] == "OOMKilled"
    assert oom["state"]["terminated"]["finishedAt"] == "2024-01-01T00:00:05Z"
    done = st(ContainerView("c", "img", latest=info("exited", 0)))
    assert done["state"]["terminated"]["reason"] == "Completed"
    crash = st(ContainerView("c", "img", latest=info("exited", 1, attempt=3),
                             waiting=("CrashLoopBackOff", "back-off 40s ...")))
    assert crash["state"] == {"waiting": {"reason": "CrashLoopBackOff",
                                          "message": "back-off 40s ..."}}
    assert crash["lastState"]["terminated"]["exitCode"] == 1 and crash["restartCount"] == 3
    fresh = st(ContainerView("c", "img"))
    assert fresh["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert fresh["restartCount"] == 0 and "containerID" not in fresh


def test_conditions_keep_transition_times_while_unchanged():
    ready = [{"name": "a", "ready": True, "state": {"running": {}}}]
    unready = [{"name": "a", "ready": False, "state": {"running": {}}}]
    first = conditions({}, "Running", [], unready, "T1")
    by = {c["type"]: c for c in first}
    assert by["Ready"]["status"] == "False" and by["Ready"]["reason"] == "ContainersNotReady"
    assert by["Ready"]["message"] == "containers with unready status: [a]"
    second = {c["type"]: c for c in conditions({"conditions": first}, "Running", [], unready,
                                               "T2")}
    assert second["Ready"]["lastTransitionTime"] == "T1"
    third = {c["type"]: c for c in conditions({"conditions": first}, "Running", [], ready, "T3")}
    assert third["Ready"]["status"] == "True" and third["Ready"]["lastTransitionTime"] == "T3"
    assert third["Initialized"]["lastTransitionTime"] == "T1"
    assert third["PodScheduled"]["status"] == "True"


def test_terminal_phase_is_sticky_and_patch_removes_stale_keys():
    pod = {"metadata": {}, "spec": {"restartPolicy": "Always", "containers": [{"name": "c"}]},
           "status": {"phase": "Failed", "podIP": "1.2.3.4"}}
    new = pod_status(pod, [], [ContainerView("c", "img", latest=info("running"))], now="T",
                     host_ip="h", pod_ip="", initialized=True)
    assert new["phase"] == "Failed"
    patch = status_patch(pod["status"], new)
    assert patch["podIP"] is None and "phase" not in patch


@pytest.mark.parametrize("resources,qos", [
    ({}, "BestEffort"),
    ({"requests": {"cpu": "100m"}}, "Burstable"),
    ({"limits": {"cpu": "1", "memory": "1Gi"}}, "Guaranteed"),
    ({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}, "Burstable"),
])
def test_qos_class(resources, qos):
    assert qos_class({"containers": [{"name": "c", "resources": resources}]}) == qos


def test_backoff_and_duration_text():
    assert [fmt_duration(s) for s in (10, 80, 300, 3725)] == ["10s", "1m20s", "5m0s", "1h2m5s"]
    b = Backoff(10, 300, 600)
    key = ("u", "c")
    dead = ContainerInfo(id="x", name="x", labels={}, state="exited", exit_code=1,
                         started_at="2024-01-01T00:00:00Z", finished_at="2024-01-01T00:00:01Z")
    finished = 1704067201.0
    assert b.remaining(key, dead, finished) == 0  # first restart: at once
    delays = []
    for _ in range(7):
        b.next(key)
        delays.append(b.delay(key))
    assert delays == [10, 20, 40, 80, 160, 300, 300]
    assert b.remaining(key, dead, finished + 100) == 200
    long_run = ContainerInfo(id="x", name="x", labels={}, state="exited", exit_code=1,
                             started_at="2024-01-01T00:00:00Z",
                             finished_at="2024-01-01T00:10:00Z")
    assert b.remaining(key, long_run, finished) == 0  # ran ten minutes: reset
    b.next(key)
    assert b.delay(key) == 10


# --- probes -------------------------------------------------------------------------------------


class ScriptedProber:
    def __init__(self):
        self.results: list[bool] = []
        self.default = True
        self.calls = 0

    async def run(self, probe, container, target):
        self.calls += 1
        ok = self.results.pop(0) if self.results else self.default
        return ok, "" if ok else "boom"


POD_P = {"metadata": {"uid": "u", "name": "p", "namespace": "d"}}


def manager(prober, clock):
    changes, events = [], []
    m = ProbeManager(prober, clock=clock, on_change=changes.append,
                     on_event=lambda pod, t, r, msg: events.append((r, msg)))
    return m, changes, events


async def test_readiness_thresholds_and_initial_delay():
    clock, prober = FakeClock(), ScriptedProber()
    m, changes, events = manager(prober, clock)
    spec = {"name": "c", "readinessProbe": {"exec": {}, "initialDelaySeconds": 5,
                                            "periodSeconds": 2, "successThreshold": 2,
                                            "failureThreshold": 2}}
    m.sync(POD_P, {"c": (spec, ProbeTarget("id1"))})
    await settle()
    assert not m.ready("u", spec, "id1") and prober.calls == 0
    await advance(clock, 5)
    assert prober.calls == 1 and not m.ready("u", spec, "id1")  # 1 of 2 successes
    await advance(clock, 2)
    assert m.ready("u", spec, "id1") and changes == ["u"]
    prober.default = False
    await advance(clock, 2)
    assert m.ready("u", spec, "id1")  # 1 of 2 failures
    await advance(clock, 2)
    assert not m.ready("u", spec, "id1")
    assert events[0] == ("Unhealthy", "Readiness probe failed: boom")
    assert m.failure("u", spec, "id1") is None  # readiness never restarts
    assert not m.ready("u", spec, "other-id")
    m.stop()


async def test_liveness_failure_and_startup_gate():
    clock, prober = FakeClock(), ScriptedProber()
    m, changes, _ = manager(prober, clock)
    spec = {"name": "c",
            "startupProbe": {"exec": {}, "periodSeconds": 1, "failureThreshold": 3},
            "livenessProbe": {"exec": {}, "periodSeconds": 1, "failureThreshold": 1}}
    prober.results = [False, True]  # startup: fail once, then succeed
    m.sync(POD_P, {"c": (spec, ProbeTarget("id1"))})
    await settle()
    assert not m.started("u", spec, "id1")
    await advance(clock, 1.5)
    assert m.started("u", spec, "id1")
    assert m.ready("u", spec, "id1")  # no readiness probe: ready once started
    prober.default = False
    await advance(clock, 1.5)
    assert m.failure("u", spec, "id1")[0] == "liveness"
    # a new instance starts with fresh probe state
    prober.default = True
    m.sync(POD_P, {"c": (spec, ProbeTarget("id2"))})
    await settle()
    assert m.failure("u", spec, "id2") is None
    m.remove_pod("u")
    assert m.workers == 0


async def test_startup_probe_failure_means_restart():
    clock, prober = FakeClock(), ScriptedProber()
    m, _, _ = manager(prober, clock)
    prober.default = False
    spec = {"name": "c", "startupProbe": {"exec": {}, "periodSeconds": 1,
                                          "failureThreshold": 2}}
    m.sync(POD_P, {"c": (spec, ProbeTarget("id1"))})
    await advance(clock, 2.5)
    assert m.failure("u", spec, "id1")[0] == "startup"
    m.stop()


async def test_prober_exec_and_tcp_and_http_against_real_sockets():
    import asyncio
    from kubelet.probes import Prober
    runtime = FakeRuntime(images={"i": "sha256:i"})
    runtime.exec_handler = lambda c, cmd: 0 if cmd == ["ok"] else 1
    from kubelet.runtime.base import ContainerConfig
    cid = await runtime.create(ContainerConfig(name="x", image="i", labels={}))
    await runtime.start(cid)
    p = Prober(runtime)
    assert (await p.run({"exec": {"command": ["ok"]}}, {}, ProbeTarget(cid)))[0]
    assert not (await p.run({"exec": {"command": ["no"]}}, {}, ProbeTarget(cid)))[0]

    async def handle(reader, writer):
        line = await reader.readline()
        code = 200 if b"/ok" in line else 503
        writer.write(f"HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    target = ProbeTarget(cid, pod_ip="127.0.0.1")
    try:
        assert (await p.run({"tcpSocket": {"port": port}}, {}, target))[0]
        assert (await p.run({"httpGet": {"path": "/ok", "port": "web"}},
                            {"ports": [{"name": "web", "containerPort": port}]}, target))[0]
        ok, msg = await p.run({"httpGet": {"path": "/bad", "port": port}}, {}, target)
        assert not ok and msg == "HTTP probe failed with statuscode: 503"
    finally:
        server.close()
        await server.wait_closed()
    ok, _ = await p.run({"tcpSocket": {"port": port}, "timeoutSeconds": 1}, {}, target)
    assert not ok


# --- volumes ------------------------------------------------------------------------------------


async def test_configmap_secret_emptydir_and_host_path_volumes(tmp_path):
    objects = {
        ("configmaps", "prod", "cfg"): {"data": {"a": "1", "b": "2"}},
        ("secrets", "prod", "sec"): {"data": {"pw": base64.b64encode(b"x").decode()}},
    }
    host = tmp_path / "host"
    pod = {"metadata": {"namespace": "prod"}, "spec": {"volumes": [
        {"name": "cfg", "configMap": {"name": "cfg"}},
        {"name": "some", "configMap": {"name": "cfg", "items": [{"key": "b", "path": "sub/bee"}],
                                       "defaultMode": 0o600}},
        {"name": "sec", "secret": {"secretName": "sec", "defaultMode": 0o400}},
        {"name": "opt", "secret": {"secretName": "missing", "optional": True}},
        {"name": "scratch", "emptyDir": {"medium": "Memory"}},
        {"name": "h", "hostPath": {"path": str(host), "type": "DirectoryOrCreate"}},
    ]}}
    pod_dir = tmp_path / "pod"
    paths = await setup_volumes(pod, pod_dir, _getter(objects))
    assert (pod_dir / "volumes/cfg/a").read_text() == "1"
    # the atomic writer's layout: visible names are symlinks through ..data
    assert sorted(n for n in os.listdir(pod_dir / "volumes/some")
                  if not n.startswith("..")) == ["sub"]
    assert os.readlink(pod_dir / "volumes/some/sub") == "..data/sub"
    bee = pod_dir / "volumes/some/sub/bee"
    assert bee.read_text() == "2" and oct(bee.stat().st_mode & 0o777) == "0o600"
    assert (pod_dir / "volumes/sec/pw").read_bytes() == b"x"
    assert (pod_dir / "volumes/scratch").is_dir() and host.is_dir()
    assert paths["h"] == str(host)
    # a change to the ConfigMap reaches the files on the next sync; removed keys go
    objects[("configmaps", "prod", "cfg")] = {"data": {"a": "changed"}}
    with pytest.raises(ContainerConfigError):
        await setup_volumes(pod, pod_dir, _getter(objects))  # item "b" is gone now
    pod["spec"]["volumes"] = pod["spec"]["volumes"][:1]
    await setup_volumes(pod, pod_dir, _getter(objects))
    assert (pod_dir / "volumes/cfg/a").read_text() == "changed"
    assert not (pod_dir / "volumes/cfg/b").exists()
    mounts = container_mounts({"volumeMounts": [{"name": "cfg", "mountPath": "/etc/c",
                                                 "readOnly": True}]}, paths)
    assert (mounts[0].container_path, mounts[0].read_only) == ("/etc/c", True)
    with pytest.raises(ContainerConfigError):
        container_mounts({"name": "c", "volumeMounts": [{"name": "zzz", "mountPath": "/"}]},
                         paths)


async def test_missing_configmap_volume_is_an_error(tmp_path):
    pod = {"metadata": {"namespace": "d"},
           "spec": {"volumes": [{"name": "v", "configMap": {"name": "gone"}}]}}
    with pytest.raises(ContainerConfigError, match='configmap "gone" not found'):
        await setup_volumes(pod, tmp_path, _getter({}))


# --- node, lease, flags -------------------------------------------------------------------------


async def test_node_registration_status_and_lease(tmp_path):
    client = FakeClient()

    class Net(NoNetwork):
        cidrs: list[str] = []

        async def setup(self, cidr):
            self.cidrs.append(cidr)
    net = Net()
    config = KubeletConfig(node_name="n9", root_dir=str(tmp_path), node_ip="10.1.0.9",
                           max_pods=7, port=10555)
    agent = NodeAgent(config, client, net, FakeRuntime())
    node = await agent.register()
    st = node["status"]
    assert st["capacity"]["pods"] == "7" and st["allocatable"] == st["capacity"]
    assert int(st["capacity"]["cpu"]) == os.cpu_count()
    assert st["capacity"]["memory"].endswith("Ki")
    assert st["addresses"] == [{"type": "InternalIP", "address": "10.1.0.9"},
                               {"type": "Hostname", "address": "n9"}]
    assert st["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10555}}
    info = st["nodeInfo"]
    assert info["kubeletVersion"] == "v1.32.0-minik8s"
    assert info["containerRuntimeVersion"] == "docker://fake-1.0"
    types = {c["type"]: c for c in st["conditions"]}
    assert types["Ready"]["status"] == "True" and types["Ready"]["reason"] == "KubeletReady"
    assert all(types[t]["status"] == "False" for t in ("MemoryPressure", "DiskPressure",
                                                       "PIDPressure"))
    assert net.cidrs == []  # no podCIDR yet
    stored = client.stored("nodes", "n9")
    stored["spec"]["podCIDR"] = "10.244.9.0/24"
    updated = await agent.update_status()
    await agent.observe(updated)
    assert net.cidrs == ["10.244.9.0/24"]
    again = {c["type"]: c for c in updated["status"]["conditions"]}
    assert again["Ready"]["lastTransitionTime"] == types["Ready"]["lastTransitionTime"]
    lease = await agent.renew_lease()
    assert lease["spec"]["holderIdentity"] == "n9"
    assert lease["metadata"]["ownerReferences"][0]["name"] == "n9"
    renewed = await agent.renew_lease()
    assert renewed["metadata"]["resourceVersion"] != lease["metadata"]["resourceVersion"]


def test_flags_build_the_config(tmp_path):
    c = parse_args(["--node-name", "n1", "--kubeconfig", "k", "--root-dir", str(tmp_path),
                    "--allow-image-pull", "--crash-loop-backoff-base", "2", "--max-pods", "9",
                    "--network", "none", "--cluster-dns", "10.96.0.10", "-v"])
    assert c.node_name == "n1" and c.allow_image_pull and c.verbose
    assert c.crash_loop_backoff_base == 2.0 and c.max_pods == 9
    assert c.crash_loop_backoff_max == 300.0 and c.pod_infra_image == "minik8s/busybox:1.35"
    net = make_network(c, "127.0.0.1")
    assert isinstance(net, NoNetwork) and net.dns_ip == "10.96.0.10"
    with pytest.raises(SystemExit):
        parse_args(["--kubeconfig", "k"])
