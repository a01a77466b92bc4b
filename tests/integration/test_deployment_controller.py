"""The ReplicaSet and Deployment controllers against the real API server: the
controller-manager runs in-process (as ``system:kube-controller-manager``, so its
permissions are exercised), and a small "fake kubelet" task in the test marks pods Running
and Ready through ``pods/{name}/status`` (no scheduler or Docker needed). Pods whose image
contains ``broken`` are never marked ready, which is how a rollout is made to fail."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from datetime import datetime, timezone

import pytest

from controller.manager import build
from minik8s.api.errors import NotFound
from minik8s.client import Client

pytestmark = pytest.mark.asyncio


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


async def wait_for(predicate, timeout: float = 20.0, message: str = "condition not met",
                   interval: float = 0.1):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = None
    while True:
        try:
            value = await predicate()
            if value:
                return value
        except AssertionError:
            raise
        except Exception as exc:  # noqa: BLE001
            last = exc
        if loop.time() > deadline:
            raise AssertionError(f"{message} within {timeout}s"
                                 + (f" (last error: {last})" if last else ""))
        await asyncio.sleep(interval)


class FakeKubelet:
    """Marks every pod of a namespace Running and Ready, unless its image says broken."""

    def __init__(self, client: Client, ns: str):
        self.client = client
        self.ns = ns
        self.task: asyncio.Task | None = None
        self.max_pods = 0
        self.paused = False

    async def run(self) -> None:
        while True:
            try:
                pods = (await self.client.list("pods", self.ns)).get("items") or []
                self.max_pods = max(self.max_pods, len(pods))
                for pod in pods:
                    if self.paused:
                        break
                    images = [c.get("image", "") for c in pod["spec"].get("containers") or []]
                    if any("broken" in i for i in images):
                        continue
                    conds = (pod.get("status") or {}).get("conditions") or []
                    if any(c.get("type") == "Ready" and c.get("status") == "True"
                           for c in conds):
                        continue
                    with contextlib.suppress(NotFound):
                        await self.client.patch("pods", pod["metadata"]["name"], {"status": {
                            "phase": "Running",
                            "conditions": [{"type": "Ready", "status": "True",
                                            "lastTransitionTime": _now()}]}},
                            self.ns, subresource="status")
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001  keep going
                pass
            await asyncio.sleep(0.1)


@pytest.fixture
async def cm(apiserver):
    """The ReplicaSet and Deployment controllers, running as the controller-manager user."""
    kc = apiserver.kubeconfig_for("cm-deploy", "system:kube-controller-manager")
    client = Client.from_kubeconfig(str(kc))
    manager, built = build(client, controllers=["replicaset", "deployment"])
    task = asyncio.get_running_loop().create_task(manager.start())
    yield built
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    await client.aclose()


@pytest.fixture
async def kubelet(client, ns):
    fk = FakeKubelet(client, ns)
    fk.task = asyncio.get_running_loop().create_task(fk.run())
    yield fk
    fk.task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await fk.task


def template(app: str, image: str = "busybox:1.35") -> dict:
    return {"metadata": {"labels": {"app": app}},
            "spec": {"containers": [{"name": "c", "image": image,
                                     "command": ["sleep", "3600"]}]}}


def replicaset(name: str, replicas: int, app: str | None = None) -> dict:
    app = app or name
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": app}},
                     "template": template(app)}}


def deployment(name: str, replicas: int, image: str = "busybox:1.35", **spec) -> dict:
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": template(name, image), **spec}}
    return body


async def pods_of(client, ns, app: str) -> list[dict]:
    items = (await client.list("pods", ns, label_selector=f"app={app}")).get("items") or []
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


async def rss_of(client, ns, app: str) -> list[dict]:
    return (await client.list("replicasets", ns, label_selector=f"app={app}")).get("items") or []


def rev(obj: dict) -> str | None:
    return (obj["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision")


def cond(obj: dict, type_: str) -> dict | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return c
    return None


# --------------------------------------------------------------------------- ReplicaSet


async def test_replicaset_creates_replaces_and_deletes_pods(client, ns, cm, kubelet):
    await client.create("replicasets", replicaset("web", 3), ns)

    async def n_pods(n):
        pods = await pods_of(client, ns, "web")
        return len(pods) == n and pods

    pods = await wait_for(lambda: n_pods(3), message="3 pods")
    for p in pods:
        ref = p["metadata"]["ownerReferences"][0]
        assert ref["kind"] == "ReplicaSet" and ref["name"] == "web"
        assert ref["controller"] is True and ref["blockOwnerDeletion"] is True
        assert p["metadata"]["name"].startswith("web-")

    async def status_ok(n):
        rs = await client.get("replicasets", "web", ns)
        st = rs.get("status") or {}
        return (st.get("replicas") == n and st.get("readyReplicas") == n
                and st.get("availableReplicas") == n and st.get("fullyLabeledReplicas") == n
                and st.get("observedGeneration") == rs["metadata"].get("generation"))

    await wait_for(lambda: status_ok(3), message="status 3/3")

    # a deleted pod is replaced
    victim = pods[0]["metadata"]["name"]
    await client.delete("pods", victim, ns)

    async def replaced():
        names = {p["metadata"]["name"] for p in await pods_of(client, ns, "web")}
        return len(names) == 3 and victim not in names

    await wait_for(replaced, message="replacement pod")

    # scaling down deletes extras; never more than 3 pods existed
    await client.patch("replicasets", "web", {"spec": {"replicas": 1}}, ns,
                       subresource="scale")
    await wait_for(lambda: n_pods(1), message="scaled to 1")
    await wait_for(lambda: status_ok(1), message="status 1/1")
    assert kubelet.max_pods == 3

    events = (await client.list("events", ns)).get("items") or []
    reasons = {e["reason"] for e in events if e["involvedObject"].get("name") == "web"}
    assert {"SuccessfulCreate", "SuccessfulDelete"} <= reasons


async def test_replicaset_adopts_orphans_and_releases_mismatched_pods(client, ns, cm, kubelet):
    orphan = {"metadata": {"name": "orphan", "labels": {"app": "adopt"}},
              "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]}}
    await client.create("pods", orphan, ns)
    await client.create("replicasets", replicaset("adopt", 2), ns)

    async def adopted():
        pod = await client.get("pods", "orphan", ns)
        refs = pod["metadata"].get("ownerReferences") or []
        return refs and refs[0]["name"] == "adopt" and refs[0]["controller"]

    await wait_for(adopted, message="orphan adopted")
    await wait_for(lambda: _count(client, ns, "adopt", 2), message="2 pods in all")

    # relabel the adopted pod: it is released and replaced
    await client.patch("pods", "orphan", {"metadata": {"labels": {"app": "other"}}}, ns)

    async def released():
        pod = await client.get("pods", "orphan", ns)
        return not pod["metadata"].get("ownerReferences")

    await wait_for(released, message="pod released")
    await wait_for(lambda: _count(client, ns, "adopt", 2), message="replacement created")


async def _count(client, ns, app, n):
    return len(await pods_of(client, ns, app)) == n


# --------------------------------------------------------------------------- Deployment


async def _available(client, ns, name, replicas):
    d = await client.get("deployments", name, ns)
    st = d.get("status") or {}
    return (st.get("observedGeneration") == d["metadata"]["generation"]
            and st.get("updatedReplicas") == replicas and st.get("replicas") == replicas
            and st.get("availableReplicas") == replicas) and d


async def test_deployment_creates_replicaset_and_pods(client, ns, cm, kubelet):
    await client.create("deployments", deployment("web", 3), ns)
    d = await wait_for(lambda: _available(client, ns, "web", 3), message="available")
    rss = await rss_of(client, ns, "web")
    assert len(rss) == 1
    rs = rss[0]
    h = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"web-{h}"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": h}
    assert rev(rs) == "1" and rev(d) == "1"
    for p in await pods_of(client, ns, "web"):
        assert p["metadata"]["labels"]["pod-template-hash"] == h
    assert cond(d, "Available")["status"] == "True"
    assert cond(d, "Available")["reason"] == "MinimumReplicasAvailable"
    progressing = cond(d, "Progressing")
    assert progressing["status"] == "True" and progressing["reason"] == "NewReplicaSetAvailable"

    # the scale subresource resizes it
    await client.patch("deployments", "web", {"spec": {"replicas": 5}}, ns,
                       subresource="scale")
    await wait_for(lambda: _available(client, ns, "web", 5), message="scaled to 5")
    assert len(await rss_of(client, ns, "web")) == 1


async def test_rolling_update_respects_surge_and_unavailable(client, ns, cm, kubelet):
    body = deployment("roll", 4, strategy={
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
    await client.create("deployments", body, ns)
    await wait_for(lambda: _available(client, ns, "roll", 4), message="available")
    kubelet.max_pods = 0

    samples: list[tuple[int, int]] = []

    async def sample():
        while True:
            pods = await pods_of(client, ns, "roll")
            ready = sum(1 for p in pods if cond(p, "Ready") and cond(p, "Ready")["status"] == "True")
            samples.append((len(pods), ready))
            await asyncio.sleep(0.05)

    sampler = asyncio.get_running_loop().create_task(sample())
    try:
        await client.patch("deployments", "roll", {"spec": {"template": {"spec": {
            "containers": [{"name": "c", "image": "busybox:1.36",
                            "command": ["sleep", "3600"]}]}}}}, ns)
        d = await wait_for(lambda: _available(client, ns, "roll", 4), timeout=40,
                           message="rolled out")
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    assert rev(d) == "2"
    assert max(n for n, _ in samples) <= 5, samples   # maxSurge 1
    assert kubelet.max_pods <= 5
    assert min(r for _, r in samples) >= 4, samples   # maxUnavailable 0
    pods = await pods_of(client, ns, "roll")
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {"busybox:1.36"}
    rss = await rss_of(client, ns, "roll")
    assert len(rss) == 2
    assert sorted(rs["spec"]["replicas"] for rs in rss) == [0, 4]
    events = (await client.list("events", ns)).get("items") or []
    assert any(e["reason"] == "ScalingReplicaSet" and "Scaled down" in e["message"]
               for e in events)


async def test_recreate_scales_old_to_zero_first(client, ns, cm, kubelet):
    await client.create("deployments", deployment("rec", 2, strategy={"type": "Recreate"}), ns)
    await wait_for(lambda: _available(client, ns, "rec", 2), message="available")
    seen_mixed = False

    async def watch_mix():
        nonlocal seen_mixed
        while True:
            images = {p["spec"]["containers"][0]["image"] for p in await pods_of(client, ns, "rec")}
            if len(images) > 1:
                seen_mixed = True
            await asyncio.sleep(0.03)

    t = asyncio.get_running_loop().create_task(watch_mix())
    try:
        await client.patch("deployments", "rec", {"spec": {"template": {"spec": {
            "containers": [{"name": "c", "image": "busybox:1.36"}]}}}}, ns)
        await wait_for(lambda: _available(client, ns, "rec", 2), timeout=30,
                       message="recreated")
    finally:
        t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await t
    assert not seen_mixed


async def _set_image(client, ns, name, image):
    await client.patch("deployments", name, {"spec": {"template": {"spec": {
        "containers": [{"name": "c", "image": image, "command": ["sleep", "3600"]}]}}}}, ns)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
async def test_kubectl_rollout_undo_reuses_the_old_replicaset(client, ns, cm, kubelet, kubeconfig):
    await client.create("deployments", deployment("undo", 2), ns)
    await wait_for(lambda: _available(client, ns, "undo", 2), message="available")
    first = (await rss_of(client, ns, "undo"))[0]["metadata"]["name"]
    await _set_image(client, ns, "undo", "busybox:1.36")
    await wait_for(lambda: _available(client, ns, "undo", 2), message="v2")

    async def two_revisions():
        d = await client.get("deployments", "undo", ns)
        return rev(d) == "2"

    await wait_for(two_revisions, message="revision 2")

    def kubectl(*args):
        return subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "-n", ns, *args],
                              capture_output=True, text=True, timeout=60)

    out = await asyncio.to_thread(kubectl, "rollout", "undo", "deployment/undo")
    assert out.returncode == 0, out.stderr
    assert "rolled back" in out.stdout

    async def back_on_first():
        d = await _available(client, ns, "undo", 2)
        if not d:
            return False
        rss = {rs["metadata"]["name"]: rs for rs in await rss_of(client, ns, "undo")}
        return (len(rss) == 2 and rss[first]["spec"]["replicas"] == 2
                and rev(rss[first]) == "3" and rev(d) == "3")

    await wait_for(back_on_first, timeout=30, message="old ReplicaSet reused as revision 3")
    images = {p["spec"]["containers"][0]["image"] for p in await pods_of(client, ns, "undo")}
    assert images == {"busybox:1.35"}

    hist = await asyncio.to_thread(kubectl, "rollout", "history", "deployment/undo")
    assert hist.returncode == 0, hist.stderr
    assert "REVISION" in hist.stdout and "2" in hist.stdout and "3" in hist.stdout

    status = await asyncio.to_thread(kubectl, "rollout", "status", "deployment/undo",
                                     "--timeout=20s")
    assert status.returncode == 0, status.stderr
    assert 'deployment "undo" successfully rolled out' in status.stdout


async def test_pause_blocks_rollout_but_not_scaling(client, ns, cm, kubelet):
    await client.create("deployments", deployment("pz", 2), ns)
    await wait_for(lambda: _available(client, ns, "pz", 2), message="available")
    await client.patch("deployments", "pz", {"spec": {"paused": True}}, ns)

    async def paused_cond():
        d = await client.get("deployments", "pz", ns)
        c = cond(d, "Progressing")
        return c and c["reason"] == "DeploymentPaused" and c["status"] == "Unknown"

    await wait_for(paused_cond, message="DeploymentPaused")
    await _set_image(client, ns, "pz", "busybox:1.36")
    await client.patch("deployments", "pz", {"spec": {"replicas": 3}}, ns)
    await wait_for(lambda: _count(client, ns, "pz", 3), message="scaled while paused")
    await asyncio.sleep(1.0)
    assert len(await rss_of(client, ns, "pz")) == 1
    images = {p["spec"]["containers"][0]["image"] for p in await pods_of(client, ns, "pz")}
    assert images == {"busybox:1.35"}

    await client.patch("deployments", "pz", {"spec": {"paused": False}}, ns)
    await wait_for(lambda: _available(client, ns, "pz", 3), timeout=30, message="resumed")
    images = {p["spec"]["containers"][0]["image"] for p in await pods_of(client, ns, "pz")}
    assert images == {"busybox:1.36"}


async def test_revision_history_limit_prunes_old_replicasets(client, ns, cm, kubelet):
    await client.create("deployments", deployment("hist", 1, revisionHistoryLimit=1), ns)
    await wait_for(lambda: _available(client, ns, "hist", 1), message="available")
    for tag in ("1.36", "1.37", "1.38"):
        await _set_image(client, ns, "hist", f"busybox:{tag}")
        await wait_for(lambda: _available(client, ns, "hist", 1), timeout=30,
                       message=f"rolled to {tag}")

    async def pruned():
        rss = await rss_of(client, ns, "hist")
        return len(rss) == 2 and rss

    rss = await wait_for(pruned, message="history pruned to 1 old ReplicaSet")
    assert sorted(int(rev(rs)) for rs in rss) == [3, 4]


async def test_progress_deadline_sets_condition(client, ns, cm, kubelet):
    await client.create("deployments", deployment("slow", 1, progressDeadlineSeconds=2,
                                                  image="broken:1"), ns)

    async def timed_out():
        d = await client.get("deployments", "slow", ns)
        c = cond(d, "Progressing")
        return c and c["status"] == "False" and c["reason"] == "ProgressDeadlineExceeded" and d

    d = await wait_for(timed_out, timeout=20, message="ProgressDeadlineExceeded")
    assert cond(d, "Available")["status"] == "False"
    assert cond(d, "Available")["reason"] == "MinimumReplicasUnavailable"


async def test_auto_rollback_to_last_available_revision(client, ns, cm, kubelet):
    body = deployment("auto", 2, progressDeadlineSeconds=3, strategy={
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
    body["metadata"]["annotations"] = {"minik8s.io/auto-rollback": "true"}
    await client.create("deployments", body, ns)
    await wait_for(lambda: _available(client, ns, "auto", 2), message="available")
    good = (await rss_of(client, ns, "auto"))[0]["metadata"]["name"]
    await _set_image(client, ns, "auto", "broken:2")

    async def rolled_back():
        d = await _available(client, ns, "auto", 2)
        if not d or not cond(d, "RolledBack"):
            return False
        rss = {rs["metadata"]["name"]: rs for rs in await rss_of(client, ns, "auto")}
        return rss[good]["spec"]["replicas"] == 2 and d

    d = await wait_for(rolled_back, timeout=40, message="rolled back")
    c = cond(d, "RolledBack")
    assert c["status"] == "True" and c["reason"] == "ProgressDeadlineExceeded"
    assert "from revision 2 to revision 1" in c["message"]
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1.35"
    assert rev(d) == "3"
    events = (await client.list("events", ns)).get("items") or []
    rb = [e for e in events if e["reason"] == "RolledBack"]
    assert rb and rb[0]["type"] == "Warning" and "revision 2" in rb[0]["message"]
    images = {p["spec"]["containers"][0]["image"] for p in await pods_of(client, ns, "auto")}
    assert images == {"busybox:1.35"}


# --------------------------------------------------------------------------- mkctl


def _mkctl(kubeconfig, ns, *args, timeout=60):
    import sys
    from cluster import ROOT
    return subprocess.run([sys.executable, "-m", "minik8s.cli.mkctl", "--kubeconfig",
                           str(kubeconfig), "-n", ns, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=str(ROOT))


async def mkctl(kubeconfig, ns, *args, timeout=60):
    return await asyncio.to_thread(_mkctl, kubeconfig, ns, *args, timeout=timeout)


async def test_mkctl_rollout_commands(client, ns, cm, kubelet, kubeconfig):
    await client.create("deployments", deployment("cli", 2), ns)
    out = await mkctl(kubeconfig, ns, "rollout", "status", "deployment/cli", "--timeout=30s")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith('deployment "cli" successfully rolled out')

    # the change cause goes with the template change (one write), onto the new ReplicaSet
    await client.patch("deployments", "cli", {
        "metadata": {"annotations": {"kubernetes.io/change-cause": "image 1.36"}},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:1.36",
                                                       "command": ["sleep", "3600"]}]}}}}, ns)
    out = await mkctl(kubeconfig, ns, "rollout", "status", "deploy/cli", "--timeout=30s")
    assert out.returncode == 0, out.stderr
    assert 'deployment "cli" successfully rolled out' in out.stdout

    out = await mkctl(kubeconfig, ns, "rollout", "history", "deployment/cli")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].strip() == "deployment.apps/cli"
    assert lines[1].split() == ["REVISION", "CHANGE-CAUSE"]
    assert lines[2].split() == ["1", "<none>"]
    assert lines[3].split(None, 1) == ["2", "image 1.36"]

    out = await mkctl(kubeconfig, ns, "rollout", "history", "deployment/cli", "--revision", "1")
    assert out.returncode == 0, out.stderr
    assert "deployment.apps/cli with revision #1" in out.stdout
    assert "busybox:1.35" in out.stdout and "Pod Template:" in out.stdout

    out = await mkctl(kubeconfig, ns, "rollout", "undo", "deployment/cli", "--to-revision=1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "deployment.apps/cli rolled back"
    out = await mkctl(kubeconfig, ns, "rollout", "status", "deployment/cli", "--timeout=30s")
    assert out.returncode == 0, out.stderr
    d = await client.get("deployments", "cli", ns)
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1.35"
    assert len(await rss_of(client, ns, "cli")) == 2
    out = await mkctl(kubeconfig, ns, "rollout", "undo", "deployment/cli", "--to-revision=9")
    assert out.returncode == 1
    assert "unable to find specified revision 9 in history" in out.stderr

    out = await mkctl(kubeconfig, ns, "rollout", "pause", "deployment/cli")
    assert out.stdout.strip() == "deployment.apps/cli paused", out.stderr
    out = await mkctl(kubeconfig, ns, "rollout", "pause", "deployment/cli")
    assert out.stdout.strip() == "deployment.apps/cli already paused"
    out = await mkctl(kubeconfig, ns, "rollout", "resume", "deployment/cli")
    assert out.stdout.strip() == "deployment.apps/cli resumed", out.stderr

    out = await mkctl(kubeconfig, ns, "rollout", "restart", "deployment/cli")
    assert out.stdout.strip() == "deployment.apps/cli restarted", out.stderr
    d = await client.get("deployments", "cli", ns)
    assert "kubectl.kubernetes.io/restartedAt" in d["spec"]["template"]["metadata"]["annotations"]
    out = await mkctl(kubeconfig, ns, "rollout", "status", "deployment/cli", "--timeout=30s")
    assert out.returncode == 0, out.stderr
    assert len(await rss_of(client, ns, "cli")) == 3

    out = await mkctl(kubeconfig, ns, "scale", "deployment/cli", "--replicas", "4")
    assert out.stdout.strip() == "deployment.apps/cli scaled", out.stderr
    await wait_for(lambda: _available(client, ns, "cli", 4), message="scaled to 4")
    out = await mkctl(kubeconfig, ns, "scale", "deployment", "cli", "--replicas=3",
                      "--current-replicas=2")
    assert out.returncode == 1 and "Expected replicas to be 2, was 4" in out.stderr


async def test_mkctl_rollout_status_fails_on_progress_deadline(client, ns, cm, kubelet,
                                                               kubeconfig):
    await client.create("deployments", deployment("stuck", 1, progressDeadlineSeconds=2,
                                                  image="broken:1"), ns)
    out = await mkctl(kubeconfig, ns, "rollout", "status", "deployment/stuck", "--timeout=30s")
    assert out.returncode == 1
    assert 'Waiting for deployment "stuck" rollout to finish: 0 of 1 updated replicas are ' \
           'available...' in out.stdout
    assert 'error: deployment "stuck" exceeded its progress deadline' in out.stderr
