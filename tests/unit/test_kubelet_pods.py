"""The pod worker's decisions, against an in-memory runtime and API: sandbox then
containers, restart policies and the CrashLoopBackOff schedule, init container ordering,
image policy, config errors, deletion, orphan cleanup and rebuilding after a restart."""

from __future__ import annotations

import asyncio
import copy

import pytest

from fakes import FakeClient, FakeClock, advance, eventually, settle
from kubelet.config import KubeletConfig
from kubelet.kubelet import Kubelet
from kubelet.network import NoNetwork
from kubelet.pods import PodWorkers, fmt_duration
from kubelet.runtime.base import (APP, INIT, LABEL_CLUSTER, LABEL_KIND, LABEL_NODE,
                                  LABEL_POD_UID, SANDBOX, ContainerConfig)
from kubelet.runtime.fake import FakeRuntime
from minik8s.client.events import EventRecorder

INFRA = "minik8s/busybox:1.35"
IMAGE = "busybox:1.35"
NODE = "n1"


class RecordingNetwork(NoNetwork):
    def __init__(self):
        super().__init__("10.96.0.10")
        self.attached: list[tuple[str, int]] = []
        self.detached: list[str] = []
        self.cidrs: list[str] = []

    async def setup(self, pod_cidr):
        self.cidrs.append(pod_cidr)

    async def attach(self, pod_uid, sandbox_pid):
        self.attached.append((pod_uid, sandbox_pid))
        return "10.244.1.5"

    async def detach(self, pod_uid):
        self.detached.append(pod_uid)


class KubeletFakeClient(FakeClient):
    """Records delete options (the kubelet deletes with grace 0 and a uid precondition)."""

    def __init__(self):
        super().__init__()
        self.deletes: list[dict] = []

    async def delete(self, ref, name, namespace=None, **kw):
        self.deletes.append({"name": name, **kw})
        return await super().delete(ref, name, namespace)


class Harness:
    def __init__(self, tmp_path, **config):
        self.clock = FakeClock(1_700_000_000.0)
        self.runtime = FakeRuntime(images={INFRA: "sha256:infra", IMAGE: "sha256:bb"},
                                   now=self.clock.now)
        self.client = KubeletFakeClient()
        self.network = RecordingNetwork()
        self.config = KubeletConfig(node_name=NODE, root_dir=str(tmp_path), **config)
        self.recorder = EventRecorder(self.client, "kubelet", NODE)
        self.tmp_path = tmp_path
        self.workers = self.new_workers()

    def new_workers(self) -> PodWorkers:
        w = PodWorkers(self.config, self.client, self.runtime, self.network, self.recorder,
                       clock=self.clock, host_ip="192.168.1.10")
        w.synced.set()
        return w

    def add(self, containers, name="p", init=None, **spec) -> str:
        for c in containers + (init or []):
            c.setdefault("image", IMAGE)
        manifest = {"metadata": {"name": name, "namespace": "default"},
                    "spec": {"nodeName": NODE, "restartPolicy": "Always",
                             "terminationGracePeriodSeconds": 5, "containers": containers,
                             **({"initContainers": init} if init else {}), **spec},
                    "status": {"phase": "Pending"}}
        pod = self.client.seed("pods", manifest)
        self.workers.pod_added(pod)
        return pod["metadata"]["uid"]

    def pod(self, name="p"):
        return self.client.stored("pods", name)

    async def sync(self, uid, name="p"):
        stored = self.pod(name)
        if stored is not None:
            self.workers.pods[uid] = copy.deepcopy(stored)  # what the informer would deliver
        after = await self.workers.sync(uid)
        await self.workers.flush_events()
        return after

    def app(self, name="c", uid=None):
        cs = [c for c in self.runtime.by_name(name, uid) if c.config.labels[LABEL_KIND] == APP]
        return cs[-1] if cs else None

    def status(self, cname="c", name="p", init=False):
        key = "initContainerStatuses" if init else "containerStatuses"
        for st in (self.pod(name).get("status") or {}).get(key) or []:
            if st["name"] == cname:
                return st
        return None

    def phase(self, name="p"):
        return self.pod(name)["status"]["phase"]

    def condition(self, type_, name="p"):
        for c in self.pod(name)["status"].get("conditions") or []:
            if c["type"] == type_:
                return c
        return None

    def events(self, reason=None):
        evs = list(self.client.objects.get("events", {}).values())
        return [e for e in evs if reason is None or e["reason"] == reason]


@pytest.fixture
def h(tmp_path):
    return Harness(tmp_path)


def sleeper(name="c", **kw):
    return {"name": name, "command": ["sleep", "3600"], **kw}


# --- the happy path -------------------------------------------------------------------------


async def test_sync_starts_sandbox_then_app_and_reports_running(h):
    uid = h.add([sleeper()])
    assert await h.sync(uid) is None
    kinds = sorted(c.config.labels[LABEL_KIND] for c in h.runtime.containers.values())
    assert kinds == [APP, SANDBOX]
    sandbox = next(c for c in h.runtime.containers.values()
                   if c.config.labels[LABEL_KIND] == SANDBOX)
    assert sandbox.config.network_mode == "none" and sandbox.config.init
    assert sandbox.config.hostname == "p"
    app = h.app()
    assert app.config.network_mode == f"container:{sandbox.id}"
    assert app.config.ipc_mode == f"container:{sandbox.id}"
    assert app.config.labels[LABEL_NODE] == NODE
    assert h.network.attached == [(uid, sandbox.pid)]
    st = h.pod()["status"]
    assert st["phase"] == "Running"
    assert st["podIP"] == "10.244.1.5" and st["podIPs"] == [{"ip": "10.244.1.5"}]
    assert st["hostIP"] == "192.168.1.10" and st["startTime"]
    for t in ("Initialized", "ContainersReady", "Ready", "PodScheduled"):
        assert h.condition(t)["status"] == "True"
    cs = h.status()
    assert cs["ready"] and cs["started"] and cs["restartCount"] == 0
    assert cs["containerID"] == f"docker://{app.id}"
    assert cs["imageID"] == "docker://sha256:bb"
    assert {e["reason"] for e in h.events()} >= {"Pulled", "Created", "Started"}
    resolv = (h.tmp_path / "pods" / uid / "resolv.conf").read_text()
    assert "nameserver 10.96.0.10" in resolv
    assert "search default.svc.cluster.local svc.cluster.local cluster.local" in resolv
    assert "options ndots:5" in resolv
    assert "10.244.1.5\tp" in (h.tmp_path / "pods" / uid / "hosts").read_text()
    assert app.config.dns_file.endswith("resolv.conf")


async def test_resync_is_idempotent_and_status_written_only_when_changed(h):
    uid = h.add([sleeper()])
    await h.sync(uid)
    creates, patches = h.runtime.count("create"), h.client.count("patch")
    for _ in range(3):
        await h.sync(uid)
    assert h.runtime.count("create") == creates
    status_patches = [c for c in h.client.calls if c[0] == "patch" and c[1] == "pods"]
    assert len(status_patches) == 1
    assert h.client.count("patch") - patches == 0


async def test_env_command_and_resources_reach_the_runtime(h):
    h.client.seed("configmaps", {"metadata": {"name": "cfg", "namespace": "default"},
                                 "data": {"mode": "fast"}})
    uid = h.add([{"name": "c", "command": ["run", "$(MODE)"], "args": ["--pod=$(ME)", "$$(X)"],
                  "workingDir": "/w",
                  "env": [{"name": "MODE", "valueFrom": {"configMapKeyRef": {
                      "name": "cfg", "key": "mode"}}},
                          {"name": "ME", "valueFrom": {"fieldRef": {
                              "fieldPath": "metadata.name"}}},
                          {"name": "IP", "valueFrom": {"fieldRef": {
                              "fieldPath": "status.podIP"}}}],
                  "resources": {"limits": {"memory": "64Mi", "cpu": "500m"},
                                "requests": {"cpu": "250m"}}}])
    await h.sync(uid)
    cfg: ContainerConfig = h.app().config
    assert cfg.command == ["run", "fast"] and cfg.args == ["--pod=p", "$(X)"]
    assert cfg.env == {"MODE": "fast", "ME": "p", "IP": "10.244.1.5"}
    assert cfg.working_dir == "/w"
    assert cfg.memory_limit == 64 * 2 ** 20
    assert cfg.cpu_quota == 50_000 and cfg.cpu_period == 100_000
    assert cfg.cpu_shares == 256
    assert h.pod()["status"]["qosClass"] == "Burstable"


# --- restart policies and back-off ------------------------------------------------------------


async def test_never_policy_failed_and_sandbox_stopped(h):
    uid = h.add([sleeper()], restartPolicy="Never")
    await h.sync(uid)
    h.runtime.exit(h.app().id, 3)
    await h.sync(uid)
    assert h.phase() == "Failed"
    term = h.status()["state"]["terminated"]
    assert term["exitCode"] == 3 and term["reason"] == "Error"
    assert h.runtime.count("create") == 2  # no restart
    assert h.runtime.running() == []  # the sandbox is stopped for a finished pod
    assert uid in h.network.detached


async def test_on_failure_succeeds_on_zero_and_restarts_on_error(h):
    uid = h.add([sleeper()], restartPolicy="OnFailure")
    await h.sync(uid)
    h.runtime.exit(h.app().id, 1)
    await h.sync(uid)
    assert h.app().config.labels["io.minik8s.container.attempt"] == "1"
    assert h.status()["restartCount"] == 1
    assert h.status()["lastState"]["terminated"]["exitCode"] == 1
    h.runtime.exit(h.app().id, 0)
    await h.sync(uid)
    assert h.phase() == "Succeeded"
    assert h.status()["state"]["terminated"]["reason"] == "Completed"
    assert h.condition("Ready")["reason"] == "PodCompleted"


async def test_oom_killed_reason(h):
    uid = h.add([sleeper()], restartPolicy="Never")
    await h.sync(uid)
    h.runtime.exit(h.app().id, 137, oom=True)
    await h.sync(uid)
    assert h.status()["state"]["terminated"]["reason"] == "OOMKilled"


async def test_crash_loop_backoff_schedule_doubles_to_the_cap(tmp_path):
    h = Harness(tmp_path, crash_loop_backoff_base=10, crash_loop_backoff_max=40)
    uid = h.add([sleeper()])
    await h.sync(uid)
    h.runtime.exit(h.app().id, 1)
    assert await h.sync(uid) is None  # the first restart is immediate
    assert h.status()["restartCount"] == 1
    delays = []
    for _ in range(4):
        h.runtime.exit(h.app().id, 1)
        after = await h.sync(uid)
        st = h.status()
        assert st["state"]["waiting"]["reason"] == "CrashLoopBackOff"
        assert st["lastState"]["terminated"]["exitCode"] == 1
        assert h.phase() == "Running"
        delays.append(after)
        msg = st["state"]["waiting"]["message"]
        assert msg == (f"back-off {fmt_duration(after)} restarting failed container=c "
                       f"pod=p_default({uid})")
        before = h.runtime.count("create")
        h.clock.advance(after - 1)
        assert await h.sync(uid) == pytest.approx(1)  # still backing off
        assert h.runtime.count("create") == before
        h.clock.advance(1)
        await h.sync(uid)
        assert h.runtime.count("create") == before + 1
    assert delays == [10, 20, 40, 40]
    assert h.events("BackOff")


async def test_backoff_resets_after_a_long_run(tmp_path):
    h = Harness(tmp_path, crash_loop_backoff_base=10, crash_loop_backoff_max=300)
    uid = h.add([sleeper()])
    await h.sync(uid)
    for _ in range(2):  # immediate restart, then a 10s back-off
        h.runtime.exit(h.app().id, 1)
        after = await h.sync(uid)
    assert after == 10
    h.clock.advance(10)
    await h.sync(uid)
    h.clock.advance(601)  # this instance runs for ten minutes
    h.runtime.exit(h.app().id, 1)
    assert await h.sync(uid) is None  # restarted at once: the back-off was reset
    assert "running" in h.status()["state"]


async def test_container_that_fails_to_start_backs_off(h):
    h.runtime.fail_start["c"] = "exec: \"nope\": executable file not found"
    uid = h.add([sleeper()])
    after = await h.sync(uid)
    st = h.status()
    assert st["state"]["waiting"]["reason"] == "RunContainerError"
    assert after is not None
    await h.sync(uid)
    assert h.status()["state"]["waiting"]["reason"] in ("CrashLoopBackOff", "RunContainerError")


# --- init containers ----------------------------------------------------------------------------


async def test_init_containers_run_one_at_a_time_in_order(h):
    uid = h.add([sleeper()], init=[sleeper("i1"), sleeper("i2")])
    await h.sync(uid)
    assert [c.config.labels["io.minik8s.container.name"] for c in h.runtime.containers.values()
            if c.config.labels[LABEL_KIND] == INIT] == ["i1"]
    assert h.app() is None
    assert h.phase() == "Pending"
    assert h.condition("Initialized")["status"] == "False"
    assert h.condition("Initialized")["message"] == "containers with incomplete status: [i1 i2]"
    assert h.status("c")["state"]["waiting"]["reason"] == "PodInitializing"
    await h.sync(uid)  # i1 still running: nothing new
    assert len(h.runtime.by_name("i2")) == 0
    h.runtime.exit(h.runtime.by_name("i1")[0].id, 0)
    await h.sync(uid)
    assert len(h.runtime.by_name("i2")) == 1 and h.app() is None
    h.runtime.exit(h.runtime.by_name("i2")[0].id, 0)
    await h.sync(uid)
    assert h.app() is not None
    assert h.condition("Initialized")["status"] == "True"
    assert h.status("i1", init=True)["state"]["terminated"]["reason"] == "Completed"
    assert h.phase() == "Running"
    await h.sync(uid)
    assert len(h.runtime.by_name("i1")) == 1  # init containers do not run again


async def test_failed_init_container_retries_or_fails_the_pod(h):
    uid = h.add([sleeper()], init=[sleeper("i1")], restartPolicy="OnFailure")
    await h.sync(uid)
    h.runtime.exit(h.runtime.by_name("i1")[0].id, 1)
    await h.sync(uid)
    assert len(h.runtime.by_name("i1")) == 2  # retried
    assert h.phase() == "Pending"
    uid2 = h.add([sleeper()], name="q", init=[sleeper("i1")], restartPolicy="Never")
    await h.sync(uid2, "q")
    h.runtime.exit(h.runtime.by_name("i1", uid2)[0].id, 1)
    await h.sync(uid2, "q")
    assert h.phase("q") == "Failed"
    assert len(h.runtime.by_name("i1", uid2)) == 1


# --- images -----------------------------------------------------------------------------------


async def test_missing_image_err_image_never_pull_without_pulling(h):
    h.runtime.pullable["ghost:1.0"] = "sha256:ghost"
    uid = h.add([sleeper(image="ghost:1.0", imagePullPolicy="IfNotPresent")])
    await h.sync(uid)
    w = h.status()["state"]["waiting"]
    assert w == {"reason": "ErrImageNeverPull", "message":
                 'Container image "ghost:1.0" is not present with pull policy of Never'}
    assert h.runtime.count("pull") == 0
    assert h.events("ErrImageNeverPull")[0]["type"] == "Warning"
    assert h.phase() == "Pending"


async def test_always_or_untagged_uses_the_local_image_when_pulls_are_off(h):
    h.runtime.images["web"] = "sha256:web"
    uid = h.add([sleeper(image="web", imagePullPolicy="Always")])
    await h.sync(uid)
    assert h.app() is not None and h.runtime.count("pull") == 0


async def test_allow_image_pull_pulls_missing_images(tmp_path):
    h = Harness(tmp_path, allow_image_pull=True)
    h.runtime.pullable["ghost:1.0"] = "sha256:ghost"
    uid = h.add([sleeper(image="ghost:1.0", imagePullPolicy="IfNotPresent"),
                 sleeper("never", image="other:1.0", imagePullPolicy="Never")])
    await h.sync(uid)
    assert ("pull", "ghost:1.0") in h.runtime.calls
    assert ("pull", "other:1.0") not in h.runtime.calls
    assert h.app() is not None
    assert h.status("never")["state"]["waiting"]["reason"] == "ErrImageNeverPull"


async def test_missing_configmap_is_create_container_config_error(h):
    uid = h.add([sleeper(env=[{"name": "X", "valueFrom": {"configMapKeyRef": {
        "name": "gone", "key": "k"}}}])])
    await h.sync(uid)
    assert h.status()["state"]["waiting"] == {"reason": "CreateContainerConfigError",
                                              "message": 'configmap "gone" not found'}
    assert h.app() is None


async def test_subpath_escaping_the_volume_waits_and_pods_dir_is_private(h):
    """A symlink planted in an emptyDir (as a container could) makes a subPath mount of it
    CreateContainerConfigError, never a bind of the host path; the pods dir is 0700."""
    uid = h.add([sleeper(volumeMounts=[{"name": "scratch", "mountPath": "/m",
                                        "subPath": "evil"}])],
                volumes=[{"name": "scratch", "emptyDir": {}}])
    scratch = h.config.pod_dir(uid) / "volumes" / "scratch"
    scratch.mkdir(parents=True)
    (scratch / "evil").symlink_to("/etc")
    await h.sync(uid)
    assert h.status()["state"]["waiting"] == {
        "reason": "CreateContainerConfigError",
        "message": 'subPath "evil" of volumeMount "scratch" escapes the volume'}
    assert h.app() is None
    assert h.config.pods_dir.stat().st_mode & 0o777 == 0o700


# --- deletion, orphans, rebuild -------------------------------------------------------------------


async def test_graceful_deletion_stops_removes_then_deletes_with_grace_zero(h):
    uid = h.add([sleeper()])
    await h.sync(uid)
    pod = h.pod()
    pod["metadata"]["deletionTimestamp"] = "2023-11-14T22:14:00Z"
    pod["metadata"]["deletionGracePeriodSeconds"] = 7
    h.client.objects["pods"]["default/p"] = pod
    app_id = h.app().id
    await h.sync(uid)
    assert h.runtime.containers == {}
    assert any(c[0] == "stop" and c[1] == app_id for c in h.runtime.calls)
    assert h.client.deletes == [{"name": "p", "grace_period_seconds": 0,
                                 "preconditions": {"uid": uid}}]
    assert h.pod() is None
    assert uid in h.network.detached
    assert not (h.tmp_path / "pods" / uid).exists()
    assert h.events("Killing")


async def test_pod_gone_from_api_and_orphans_are_cleaned(h):
    uid = h.add([sleeper()])
    await h.sync(uid)
    # a container of a pod the kubelet never heard of
    stray = await h.runtime.create(ContainerConfig(
        name="stray", image=IMAGE, labels={LABEL_POD_UID: "ghost", LABEL_NODE: NODE,
                                           LABEL_KIND: APP}))
    await h.runtime.start(stray)
    assert await h.workers.find_orphans() == {"ghost"}
    await h.workers.sync("ghost")
    assert stray not in h.runtime.containers
    # now the pod itself disappears from the API (a force delete)
    pod = h.pod()
    del h.client.objects["pods"]["default/p"]
    h.workers.pod_deleted(pod)
    await h.workers.sync(uid)
    assert h.runtime.containers == {}


async def test_another_clusters_containers_on_a_same_named_node_are_left_alone(tmp_path):
    h = Harness(tmp_path, cluster_id="ours")
    uid = h.add([sleeper()])
    await h.sync(uid)
    assert all(c.config.labels[LABEL_CLUSTER] == "ours" for c in h.runtime.containers.values())
    theirs = await h.runtime.create(ContainerConfig(
        name="theirs", image=IMAGE, labels={LABEL_POD_UID: "other-cluster-pod", LABEL_NODE: NODE,
                                            LABEL_CLUSTER: "theirs", LABEL_KIND: APP}))
    await h.runtime.start(theirs)
    assert await h.workers.find_orphans() == set()
    assert theirs in h.runtime.containers


async def test_rebuild_after_restart_creates_nothing_and_keeps_attempts(h):
    uid = h.add([sleeper(), sleeper("d")])
    await h.sync(uid)
    h.runtime.exit(h.app("d").id, 1)
    await h.sync(uid)  # d restarted: attempt 1
    before = set(h.runtime.containers)
    h.workers = h.new_workers()  # a new kubelet: empty memory
    h.workers.pod_added(h.pod())
    await h.sync(uid)
    assert set(h.runtime.containers) == before
    assert h.runtime.count("stop") == 0
    h.runtime.exit(h.app("d").id, 1)
    await h.sync(uid)
    assert h.app("d").config.labels["io.minik8s.container.attempt"] == "2"
    assert h.status("d")["restartCount"] == 2


async def test_old_dead_containers_are_garbage_collected(h):
    uid = h.add([sleeper()], restartPolicy="OnFailure")
    await h.sync(uid)
    for _ in range(5):
        h.runtime.exit(h.app().id, 1)
        h.clock.advance(400)
        await h.sync(uid)
    await h.sync(uid)
    assert len(h.runtime.by_name("c")) <= 2
    assert h.status()["restartCount"] == 5


# --- probes through the pod worker ----------------------------------------------------------------


async def test_readiness_and_liveness_drive_status_and_restarts(h):
    results = {"ready": 1, "alive": 0}

    def handler(container, cmd):
        return results[cmd[0]]
    h.runtime.exec_handler = handler
    uid = h.add([sleeper(readinessProbe={"exec": {"command": ["ready"]}, "periodSeconds": 1,
                                         "failureThreshold": 1, "successThreshold": 1},
                         livenessProbe={"exec": {"command": ["alive"]}, "periodSeconds": 1,
                                        "initialDelaySeconds": 2, "failureThreshold": 2})])
    await h.sync(uid)
    assert h.status()["ready"] is False  # readiness starts false
    assert h.condition("Ready")["status"] == "False"
    assert h.condition("ContainersReady")["reason"] == "ContainersNotReady"
    results["ready"] = 0
    await advance(h.clock, 1.5)
    await h.sync(uid)
    assert h.status()["ready"] is True and h.condition("Ready")["status"] == "True"
    assert h.workers.queue.len() >= 1  # the probe change queued the pod
    first = h.app().id
    results["alive"] = 1
    await advance(h.clock, 4)
    await h.sync(uid)
    assert h.app().id != first
    assert h.status()["restartCount"] == 1
    assert h.events("Unhealthy") and h.events("Killing")


# --- the composed kubelet -------------------------------------------------------------------------


async def test_kubelet_registers_node_and_runs_bound_pods(tmp_path):
    client = KubeletFakeClient()
    runtime = FakeRuntime(images={INFRA: "sha256:infra", IMAGE: "sha256:bb"})
    network = RecordingNetwork()
    config = KubeletConfig(node_name=NODE, root_dir=str(tmp_path), node_ip="10.0.0.7",
                           cpu="4", memory="8Gi", max_pods=20, node_status_update_period=0.05,
                           lease_renew_interval=0.05)
    client.seed("nodes", {"metadata": {"name": NODE}, "spec": {"podCIDR": "10.244.3.0/24"}})
    kubelet = Kubelet(config, client, runtime, network, relist_period=0.05)
    task = asyncio.create_task(kubelet.start())
    try:
        await eventually(lambda: kubelet.pods.synced.is_set(), 5)
        node = client.stored("nodes", NODE)
        assert node["status"]["capacity"] == {"cpu": "4", "memory": "8388608Ki", "pods": "20"}
        assert {"type": "InternalIP", "address": "10.0.0.7"} in node["status"]["addresses"]
        assert node["metadata"]["labels"]["kubernetes.io/hostname"] == NODE
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"][0]
        assert ready["status"] == "True" and ready["reason"] == "KubeletReady"
        assert network.cidrs == ["10.244.3.0/24"]
        await eventually(lambda: client.stored("leases", NODE, "kube-node-lease") is not None, 5)
        lease = client.stored("leases", NODE, "kube-node-lease")
        assert lease["spec"]["holderIdentity"] == NODE
        assert lease["spec"]["leaseDurationSeconds"] == 40
        client.seed("pods", {"metadata": {"name": "other", "namespace": "default"},
                             "spec": {"nodeName": "n2", "containers": [sleeper(image=IMAGE)]}})
        pod = client.seed("pods", {"metadata": {"name": "mine", "namespace": "default"},
                                   "spec": {"nodeName": NODE, "restartPolicy": "Always",
                                            "containers": [sleeper(image=IMAGE)]}})
        await eventually(lambda: (client.stored("pods", "mine").get("status") or {}).get(
            "phase") == "Running", 5)
        assert {c.config.labels[LABEL_POD_UID] for c in runtime.containers.values()} == {
            pod["metadata"]["uid"]}
        # a container exit is noticed by the relist, without any API event
        app = next(c for c in runtime.containers.values() if c.config.labels[LABEL_KIND] == APP)
        runtime.exit(app.id, 1)
        await eventually(lambda: len([c for c in runtime.containers.values()
                                      if c.config.labels[LABEL_KIND] == APP]) == 2, 5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # cancelling the kubelet leaves the pod's containers running
    assert any(c.state == "running" for c in runtime.containers.values())
    await settle()
