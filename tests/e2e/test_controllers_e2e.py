"""Every controller on real Docker: two in-process kubelets (``--network none``), the
scheduler and controller-managers in-process against an API server of this module's own (so
only this module's two Nodes exist: a DaemonSet covers exactly them, and no pod lands on a
stale Node of another module).

A killed container is restarted; a Job runs to ``Complete`` and a CronJob on an accelerated
clock makes a Job that completes; a DaemonSet has one pod per node; a StatefulSet starts its
members in order and a member's volume outlives the member; of two leader-electing
controller-managers only the leader acts and the standby takes over; a rollout to a missing
image rolls itself back; and the real ``kubectl`` scales, follows, lists and undoes a
rollout of real pods (after ``mkctl set image``)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest

from cluster import ROOT, start_apiserver, start_etcd, stop_process
from controller.manager import LEASE_NAME, LEASE_NAMESPACE
from controller.manager import build as build_controller_manager
from e2e_helpers import BUSYBOX, KubeletHandle, remove_node_containers, wait_for
from kubelet.runtime.base import LABEL_KIND, LABEL_POD_UID
from minik8s.client import Client
from scheduler.main import build as build_scheduler

pytestmark = pytest.mark.e2e

SUFFIX = uuid.uuid4().hex[:6]
V2 = f"minik8s/busybox:e2e-{SUFFIX}"  # a second local tag of the busybox image


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def apiserver(tmp_path_factory):
    base = tmp_path_factory.mktemp("controllers-cluster")
    etcd = start_etcd(base)
    srv = start_apiserver(base, etcd, "--compaction-interval", "3600")
    yield srv
    stop_process(srv.proc)
    stop_process(etcd.proc)


def _docker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
async def nodes(apiserver, busybox_image, tmp_path_factory):
    """Two kubelets, ``a`` and ``b``; at the end their containers and the test volumes go."""
    handles = [KubeletHandle(apiserver, f"ctl-{x}-{SUFFIX}", tmp_path_factory.mktemp(f"k-{x}"))
               for x in "ab"]
    try:
        for h in handles:
            await h.start()
        yield handles
    finally:
        for h in handles:
            await h.stop()
            h.runtime.close()
            await asyncio.to_thread(remove_node_containers, h.name)
        volumes = _docker("volume", "ls", "-q", "--filter", f"name=minik8s-pvc-ctl-{SUFFIX}")
        for v in volumes.stdout.split():
            _docker("volume", "rm", "-f", v)


@pytest.fixture
async def client(apiserver):
    c = apiserver.client()
    yield c
    await c.aclose()


@pytest.fixture
async def ns(client) -> str:
    name = f"ctl-{SUFFIX}-{uuid.uuid4().hex[:4]}"
    await client.create("namespaces", {"metadata": {"name": name}})
    return name


@contextlib.asynccontextmanager
async def control_plane(apiserver, controllers: list[str], *, scheduler: bool = True,
                        **kw: Any):
    """The scheduler and one controller-manager running ``controllers``, stopped on exit."""
    clients, tasks = [], []
    parts: list[tuple[str, str, Any]] = []
    if scheduler:
        parts.append((f"sched-{uuid.uuid4().hex[:4]}", "system:kube-scheduler",
                      lambda c: build_scheduler(c)[0]))
    if controllers:
        parts.append((f"cm-{uuid.uuid4().hex[:4]}", "system:kube-controller-manager",
                      lambda c: build_controller_manager(c, controllers=controllers, **kw)[0]))
    for name, user, build in parts:
        c = Client.from_kubeconfig(str(apiserver.kubeconfig_for(name, user)))
        clients.append(c)
        tasks.append(asyncio.get_running_loop().create_task(build(c).start()))
    try:
        yield
    finally:
        await _stop(tasks)
        for c in clients:
            await c.aclose()


async def _stop(tasks: list[asyncio.Task]) -> None:
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await t


def _ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _condition(obj: dict, type_: str) -> dict | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or []
                 if c.get("type") == type_), None)


async def _pods(client, ns: str, selector: str | None = None) -> list[dict]:
    items = (await client.list("pods", ns, label_selector=selector)).get("items") or []
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def _spec(command: list[str] | None = None, **extra: Any) -> dict:
    return {"terminationGracePeriodSeconds": 1, **extra,
            "containers": [{"name": "main", "image": BUSYBOX,
                            "command": command or ["sleep", "3600"]}]}


def _kill(ids: list[str]) -> None:
    import docker
    api = docker.APIClient(version="auto")
    try:
        for cid in ids:
            api.kill(cid)
    finally:
        api.close()


def _logs(cid: str) -> str:
    import docker
    api = docker.APIClient(version="auto")
    try:
        return api.logs(cid).decode(errors="replace")
    finally:
        api.close()


async def _app_containers(node: KubeletHandle, pod: dict, running: bool = True) -> list:
    found = await node.containers(**{LABEL_POD_UID: pod["metadata"]["uid"], LABEL_KIND: "app"})
    return [c for c in found if c.state == "running" or not running]


# --------------------------------------------------------------------------- kubelet

async def test_killed_container_is_restarted(client, ns, nodes):
    a = nodes[0]
    await client.create("pods", {"metadata": {"name": "victim"},
                                 "spec": _spec(nodeName=a.name)}, ns)
    pod = await wait_for(lambda: _ready_pod(client, ns, "victim"), 60, "victim ready")
    [container] = await _app_containers(a, pod)
    await asyncio.to_thread(_kill, [container.id])

    async def restarted():
        p = await client.get("pods", "victim", ns)
        counts = [s.get("restartCount", 0) for s in p["status"].get("containerStatuses") or []]
        return counts and counts[0] >= 1 and _ready(p) and p
    p = await wait_for(restarted, 60, "killed container restarted")
    [again] = await _app_containers(a, p)
    assert again.id != container.id


async def _ready_pod(client, ns: str, name: str) -> dict | None:
    p = await client.get("pods", name, ns)
    return p if _ready(p) else None


# --------------------------------------------------------------------------- Job, CronJob

class FastClock:
    """Wall time from now on, running ``factor`` times faster (CronJob minutes in seconds)."""

    def __init__(self, factor: float):
        self.factor = factor
        self.t0, self.m0 = time.time(), time.monotonic()

    def now(self) -> float:
        return self.t0 + (time.monotonic() - self.m0) * self.factor

    wall = now

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.factor)


async def test_job_completes_and_cronjob_makes_a_job_that_completes(apiserver, client, ns,
                                                                    nodes):
    done = _spec(["sh", "-c", "echo done"], restartPolicy="Never")
    async with control_plane(apiserver, ["job"]), \
            control_plane(apiserver, ["cronjob"], scheduler=False, clock=FastClock(30)):
        await client.create("jobs", {"metadata": {"name": "twice"}, "spec": {
            "completions": 2, "parallelism": 2, "backoffLimit": 2,
            "template": {"spec": done}}}, ns)
        await client.create("cronjobs", {"metadata": {"name": "tick"}, "spec": {
            "schedule": "* * * * *", "concurrencyPolicy": "Forbid",
            "jobTemplate": {"spec": {"template": {"spec": done}}}}}, ns)

        async def complete(name):
            j = await client.get("jobs", name, ns)
            c = _condition(j, "Complete")
            return c is not None and c["status"] == "True" and j
        job = await wait_for(lambda: complete("twice"), 90, "job twice Complete")
        assert job["status"]["succeeded"] == 2
        pods = (await client.list("pods", ns, label_selector="job-name=twice"))["items"]
        assert len(pods) == 2
        assert {p["status"]["phase"] for p in pods} == {"Succeeded"}

        async def cron_job_complete():
            for j in (await client.list("jobs", ns))["items"]:
                owners = j["metadata"].get("ownerReferences") or []
                if any(o["kind"] == "CronJob" and o["name"] == "tick" for o in owners):
                    if await complete(j["metadata"]["name"]):
                        return j
            return None
        job = await wait_for(cron_job_complete, 90, "a Job of CronJob tick Complete")
        assert job["metadata"]["name"].startswith("tick-")
        await client.patch("cronjobs", "tick", {"spec": {"suspend": True}}, ns)
        cj = await client.get("cronjobs", "tick", ns)
        assert cj["status"].get("lastScheduleTime")


# --------------------------------------------------------------------------- DaemonSet

async def test_daemonset_one_pod_per_node(apiserver, client, ns, nodes):
    async with control_plane(apiserver, ["daemonset"]):
        await client.create("daemonsets", {"metadata": {"name": "agent"}, "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}}, "spec": _spec()}}}, ns)

        async def one_each():
            pods = await _pods(client, ns, "app=agent")
            ready = [p for p in pods if _ready(p)]
            return len(pods) == 2 and len(ready) == 2 and pods
        pods = await wait_for(one_each, 90, "one ready agent pod on each node")
        assert sorted(p["spec"]["nodeName"] for p in pods) == sorted(n.name for n in nodes)
        ds = await wait_for(lambda: _ds_ready(client, ns), 30, "DaemonSet status")
        assert ds["status"]["desiredNumberScheduled"] == 2
        await asyncio.sleep(1)
        assert len(await _pods(client, ns, "app=agent")) == 2  # and no more


async def _ds_ready(client, ns: str) -> dict | None:
    ds = await client.get("daemonsets", "agent", ns)
    return ds if (ds.get("status") or {}).get("numberReady") == 2 else None


# --------------------------------------------------------------------------- StatefulSet

STS_SCRIPT = ("if [ -f /data/stamp ]; then echo found $(cat /data/stamp); "
              "else echo $TOKEN > /data/stamp; echo created $(cat /data/stamp); fi; "
              "exec sleep 3600")


async def test_statefulset_ordered_with_persistent_volume(apiserver, client, ns, nodes):
    spec = _spec(["sh", "-c", STS_SCRIPT])
    spec["containers"][0]["env"] = [{"name": "TOKEN", "value": f"token-{SUFFIX}"}]
    spec["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    async with control_plane(apiserver, ["statefulset"]):
        await client.create("statefulsets", {"metadata": {"name": "web"}, "spec": {
            "replicas": 2, "serviceName": "web",
            "selector": {"matchLabels": {"app": "sts"}},
            "template": {"metadata": {"labels": {"app": "sts"}}, "spec": spec},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}}}}]}}, ns)

        # OrderedReady: whenever web-1 exists, web-0 is already Ready
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        while True:
            pods = {p["metadata"]["name"]: p for p in await _pods(client, ns, "app=sts")}
            assert set(pods) <= {"web-0", "web-1"}
            if "web-1" in pods:
                assert _ready(pods["web-0"]), "web-1 created before web-0 was Ready"
            if len(pods) == 2 and all(_ready(p) for p in pods.values()):
                break
            assert loop.time() < deadline, f"web-0 and web-1 not ready: {sorted(pods)}"
            await asyncio.sleep(0.1)
        web0 = pods["web-0"]
        node = next(n for n in nodes if n.name == web0["spec"]["nodeName"])
        [c] = await _app_containers(node, web0)
        assert f"created token-{SUFFIX}" in await asyncio.to_thread(_logs, c.id)
        claim = await client.get("persistentvolumeclaims", "data-web-0", ns)
        assert claim["status"]["phase"] == "Bound"

        await client.delete("pods", "web-0", ns)

        async def recreated():
            p = await client.get("pods", "web-0", ns)
            return (p["metadata"]["uid"] != web0["metadata"]["uid"] and _ready(p)
                    and not p["metadata"].get("deletionTimestamp") and p)
        new = await wait_for(recreated, 90, "web-0 recreated and ready")
        assert new["spec"]["nodeName"] == web0["spec"]["nodeName"]
        [c] = await _app_containers(node, new)
        logs = await asyncio.to_thread(_logs, c.id)
        assert f"found token-{SUFFIX}" in logs, logs


# --------------------------------------------------------------------------- leader election

async def test_two_controller_managers_one_leader_and_failover(apiserver, client, ns, nodes):
    clients, tasks = {}, {}
    try:
        for ident in ("cm-one", "cm-two"):
            c = Client.from_kubeconfig(str(apiserver.kubeconfig_for(
                f"{ident}-{SUFFIX}", "system:kube-controller-manager")))
            clients[ident] = c
            manager, _ = build_controller_manager(c, controllers=["replicaset"],
                                                  leader_elect=True, lease_duration=3.0,
                                                  identity=ident)
            tasks[ident] = asyncio.get_running_loop().create_task(manager.start())

        async def holder():
            lease = await client.get("leases", LEASE_NAME, LEASE_NAMESPACE)
            return (lease.get("spec") or {}).get("holderIdentity") in tasks and \
                lease["spec"]["holderIdentity"]
        leader = await wait_for(holder, 30, "a leader")
        standby = next(i for i in tasks if i != leader)

        # pods that never schedule: this is about who creates them, not running them
        await client.create("replicasets", {"metadata": {"name": "rs"}, "spec": {
            "replicas": 2, "selector": {"matchLabels": {"app": "rs"}},
            "template": {"metadata": {"labels": {"app": "rs"}}, "spec": _spec(
                nodeSelector={"minik8s.io/nowhere": "true"})}}}, ns)

        async def count(n):
            pods = await _pods(client, ns, "app=rs")
            return len(pods) == n and pods
        await wait_for(lambda: count(2), 30, "2 pods")
        await asyncio.sleep(1.5)  # a second manager acting would have made more
        assert len(await _pods(client, ns, "app=rs")) == 2
        events = await _creators(client, ns)
        assert events and set(events) == {leader}, events

        # the leader goes away: the standby takes over and keeps reconciling
        await _stop([tasks.pop(leader)])
        await wait_for(lambda: _is_holder(client, standby), 15, "standby took the lease")
        await client.patch("replicasets", "rs", {"spec": {"replicas": 3}}, ns)
        await wait_for(lambda: count(3), 30, "3 pods after failover")
        events = await _creators(client, ns)
        assert events.count(standby) == 1 and events.count(leader) == 2, events
    finally:
        await _stop(list(tasks.values()))
        for c in clients.values():
            await c.aclose()


async def _creators(client, ns: str) -> list[str]:
    """The reporting instance of each SuccessfulCreate event of the ReplicaSet."""
    items = (await client.list("events", ns))["items"]
    return [e.get("reportingInstance") or (e.get("source") or {}).get("host", "")
            for e in items if e.get("reason") == "SuccessfulCreate"
            and e["involvedObject"].get("name") == "rs"]


async def _is_holder(client, identity: str) -> bool:
    lease = await client.get("leases", LEASE_NAME, LEASE_NAMESPACE)
    return (lease.get("spec") or {}).get("holderIdentity") == identity


# --------------------------------------------------------------------------- auto-rollback

def _deployment(name: str, replicas: int = 2, **annotations: str) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "annotations": annotations},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": _spec()}}}


async def _available(client, ns: str, name: str, replicas: int, image: str = BUSYBOX):
    d = await client.get("deployments", name, ns)
    st, spec = d.get("status") or {}, d["spec"]
    ok = (st.get("observedGeneration", 0) >= d["metadata"]["generation"]
          and st.get("updatedReplicas") == replicas and st.get("replicas") == replicas
          and st.get("availableReplicas") == replicas
          and spec["template"]["spec"]["containers"][0]["image"] == image)
    if not ok:
        return None
    pods = await _pods(client, ns, f"app={name}")
    images = {p["spec"]["containers"][0]["image"] for p in pods}
    if len(pods) == replicas and images == {image} and all(_ready(p) for p in pods):
        return d
    return None


async def test_rollout_to_missing_image_rolls_back(apiserver, client, ns, nodes):
    body = _deployment("app", **{"minik8s.io/auto-rollback": "true"})
    body["spec"].update({"progressDeadlineSeconds": 5, "minReadySeconds": 0})
    async with control_plane(apiserver, ["replicaset", "deployment"]):
        await client.create("deployments", body, ns)
        d1 = await wait_for(lambda: _available(client, ns, "app", 2), 90,
                            "revision 1 available")
        rev1 = d1["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        template1 = d1["spec"]["template"]
        rs1 = [rs["metadata"]["name"] for rs in (await client.list("replicasets", ns))["items"]]
        assert len(rs1) == 1

        await client.patch("deployments", "app", {"spec": {"template": {"spec": {
            "containers": [{"name": "main", "image": "minik8s/does-not-exist:1"}]}}}}, ns,
            patch_type="strategic")

        async def rolled_back():
            events = [e for e in (await client.list("events", ns))["items"]
                      if e.get("reason") == "RolledBack" and e.get("type") == "Warning"]
            return events and await _available(client, ns, "app", 2)
        d = await wait_for(rolled_back, 90, "rolled back to revision 1's template and "
                                            "available")
        assert d["spec"]["template"]["spec"]["containers"] == template1["spec"]["containers"]
        assert _condition(d, "RolledBack") is not None
        # the revision-1 ReplicaSet serves again; the broken one is scaled to zero
        rss = {rs["metadata"]["name"]: rs for rs in (await client.list("replicasets", ns))[
            "items"]}
        assert rss[rs1[0]]["spec"]["replicas"] == 2
        assert all(rs["spec"]["replicas"] == 0 for n, rs in rss.items() if n != rs1[0])
        assert int(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"]) > \
            int(rev1)
        for p in await _pods(client, ns, "app=app"):
            assert p["status"]["phase"] == "Running"
            assert p["spec"]["containers"][0]["image"] == BUSYBOX


# --------------------------------------------------------------------------- kubectl

def _kubectl(kubeconfig, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), *args],
                          capture_output=True, text=True, timeout=timeout)


def _mkctl(kubeconfig, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "minik8s.cli.mkctl", "--kubeconfig",
                           str(kubeconfig), *args], capture_output=True, text=True,
                          timeout=60, cwd=str(ROOT))


@pytest.fixture
def second_tag(busybox_image):
    assert _docker("tag", busybox_image, V2).returncode == 0
    yield V2
    _docker("rmi", V2)


async def test_kubectl_scale_rollout_status_history_undo(apiserver, client, ns, nodes,
                                                         second_tag, tmp_path):
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    kc = apiserver.kubeconfig
    run = asyncio.to_thread
    async with control_plane(apiserver, ["replicaset", "deployment"]):
        await client.create("deployments", _deployment("web"), ns)
        r = await run(_kubectl, kc, "-n", ns, "rollout", "status", "deployment/web",
                      "--timeout=90s")
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[-1] == 'deployment "web" successfully rolled out'

        r = await run(_kubectl, kc, "-n", ns, "scale", "deployment/web", "--replicas=3")
        assert (r.returncode, r.stdout) == (0, "deployment.apps/web scaled\n"), r.stderr
        await wait_for(lambda: _available(client, ns, "web", 3), 90, "3 available")

        r = await run(_mkctl, kc, "-n", ns, "set", "image", "deployment/web",
                      f"main={second_tag}")
        assert (r.returncode, r.stdout) == (0, "deployment.apps/web image updated\n"), r.stderr
        r = await run(_kubectl, kc, "-n", ns, "rollout", "status", "deployment/web",
                      "--timeout=90s")
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[-1] == 'deployment "web" successfully rolled out'
        await wait_for(lambda: _available(client, ns, "web", 3, second_tag), 60,
                       "revision 2 available")

        r = await run(_kubectl, kc, "-n", ns, "rollout", "history", "deployment/web")
        assert r.returncode == 0, r.stderr
        lines = [line.split() for line in r.stdout.splitlines() if line.strip()]
        assert lines == [["deployment.apps/web"], ["REVISION", "CHANGE-CAUSE"],
                         ["1", "<none>"], ["2", "<none>"]]

        r = await run(_kubectl, kc, "-n", ns, "rollout", "undo", "deployment/web")
        assert (r.returncode, r.stdout) == (0, "deployment.apps/web rolled back\n"), r.stderr
        r = await run(_kubectl, kc, "-n", ns, "rollout", "status", "deployment/web",
                      "--timeout=90s")
        assert r.returncode == 0, r.stderr
        d = await wait_for(lambda: _available(client, ns, "web", 3), 90,
                           "back on revision 1's image")
        assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
        r = await run(_kubectl, kc, "-n", ns, "rollout", "history", "deployment/web")
        revisions = [line.split()[0] for line in r.stdout.splitlines()[2:] if line.strip()]
        assert revisions == ["2", "3"]
