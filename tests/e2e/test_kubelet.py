"""The kubelet end to end: real Docker, the real API server, pods bound straight to this
module's node (no scheduler). Every wait is bounded; nothing asserts on timing."""

from __future__ import annotations

import base64
import uuid

import pytest

from kubelet.runtime.base import LABEL_KIND, LABEL_POD_UID
from minik8s.api.errors import NotFound
from e2e_helpers import BUSYBOX, wait_for

pytestmark = pytest.mark.e2e


def pod(node, name: str, containers: list[dict], **spec) -> dict:
    for c in containers:
        c.setdefault("image", BUSYBOX)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node.name, "terminationGracePeriodSeconds": 1,
                     "containers": containers, **spec}}


def sleeper(name: str = "main", **kw) -> dict:
    return {"name": name, "command": ["sleep", "3600"], **kw}


async def create(client, ns, manifest) -> dict:
    return await client.create("pods", manifest, ns)


async def wait_pod(client, ns, name, predicate, timeout=60.0, message="pod condition"):
    async def check():
        p = await client.get("pods", name, ns)
        return p if predicate(p) else None
    return await wait_for(check, timeout, f"{ns}/{name}: {message}")


def phase_is(phase):
    return lambda p: (p.get("status") or {}).get("phase") == phase


def cstatus(p, name, init=False):
    key = "initContainerStatuses" if init else "containerStatuses"
    for st in (p.get("status") or {}).get(key) or []:
        if st["name"] == name:
            return st
    return None


def condition(p, type_):
    for c in (p.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return c["status"]
    return None


async def events_for(client, ns, name):
    items = (await client.list("events", ns))["items"]
    return [e for e in items if (e.get("involvedObject") or {}).get("name") == name]


async def exec_in(node, p, container, cmd):
    st = cstatus(p, container)
    cid = st["containerID"].removeprefix("docker://")
    return await node.runtime.exec_run(cid, cmd, timeout=10)


# --- node -----------------------------------------------------------------------------------


async def test_node_registered_ready_with_lease(node, client):
    n = await wait_for(lambda: client.get("nodes", node.name), 30, "node registered")
    assert n["metadata"]["labels"]["kubernetes.io/hostname"] == node.name
    assert n["metadata"]["labels"]["kubernetes.io/os"] == "linux"
    st = n["status"]
    assert {"cpu", "memory", "pods"} <= set(st["capacity"])
    assert {"type": "InternalIP", "address": "127.0.0.1"} in st["addresses"]
    ready = [c for c in st["conditions"] if c["type"] == "Ready"][0]
    assert ready["status"] == "True" and ready["reason"] == "KubeletReady"
    assert st["nodeInfo"]["kubeletVersion"] == "v1.32.0-minik8s"
    assert st["nodeInfo"]["containerRuntimeVersion"].startswith("docker://")
    lease = await wait_for(lambda: client.get("leases", node.name, "kube-node-lease"), 30,
                           "lease")
    assert lease["spec"]["holderIdentity"] == node.name
    first = lease["spec"]["renewTime"]
    await wait_for(lambda: _renewed(client, node.name, first), 30, "lease renewed")


async def _renewed(client, name, first):
    lease = await client.get("leases", name, "kube-node-lease")
    return lease["spec"]["renewTime"] != first


# --- lifecycle and status -------------------------------------------------------------------


async def test_pod_runs_with_status_fields(node, client, ns):
    await create(client, ns, pod(node, "web", [sleeper()]))
    p = await wait_pod(client, ns, "web", lambda p: condition(p, "Ready") == "True",
                       message="Ready")
    st = p["status"]
    assert st["phase"] == "Running"
    assert st["hostIP"] == "127.0.0.1" and st["startTime"]
    for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready"):
        assert condition(p, t) == "True", t
    cs = cstatus(p, "main")
    assert cs["ready"] is True and cs["started"] is True and cs["restartCount"] == 0
    assert "startedAt" in cs["state"]["running"]
    assert cs["containerID"].startswith("docker://")
    assert cs["imageID"].startswith(("docker://sha256:", "docker-pullable://"))
    assert cs["image"] == BUSYBOX
    reasons = {e["reason"] for e in await events_for(client, ns, "web")}
    assert {"Pulled", "Created", "Started"} <= reasons


async def test_two_containers_talk_over_localhost(node, client, ns):
    server = {"name": "server", "command": ["sh", "-c",
                                            "mkdir -p /www && echo hello > /www/index.html && "
                                            "exec httpd -f -p 8080 -h /www"]}
    probe = {"name": "client", "command": ["sh", "-c",
                                           "for i in $(seq 1 50); do "
                                           "[ \"$(wget -q -O - http://127.0.0.1:8080/)\" = hello ]"
                                           " && exit 0; sleep 0.2; done; exit 1"]}
    await create(client, ns, pod(node, "duo", [server, probe], restartPolicy="Never"))
    p = await wait_pod(client, ns, "duo", lambda p: "terminated" in (
        (cstatus(p, "client") or {}).get("state") or {}), message="client finished")
    term = cstatus(p, "client")["state"]["terminated"]
    assert term["exitCode"] == 0 and term["reason"] == "Completed"
    assert "running" in cstatus(p, "server")["state"]


async def test_restart_policy_never_fails(node, client, ns):
    await create(client, ns, pod(node, "fail", [{"name": "main", "command": ["sh", "-c", "exit 3"]}],
                                 restartPolicy="Never"))
    p = await wait_pod(client, ns, "fail", phase_is("Failed"), message="Failed")
    term = cstatus(p, "main")["state"]["terminated"]
    assert term["exitCode"] == 3 and term["reason"] == "Error"
    assert cstatus(p, "main")["restartCount"] == 0


async def test_restart_policy_on_failure_succeeds(node, client, ns):
    await create(client, ns, pod(node, "ok", [{"name": "main", "command": ["true"]}],
                                 restartPolicy="OnFailure"))
    p = await wait_pod(client, ns, "ok", phase_is("Succeeded"), message="Succeeded")
    term = cstatus(p, "main")["state"]["terminated"]
    assert term["exitCode"] == 0 and term["reason"] == "Completed"
    assert condition(p, "Ready") == "False"


async def test_restart_policy_on_failure_restarts(node, client, ns):
    # fails on its first run, succeeds on the second (the emptyDir survives restarts)
    cmd = "if [ -e /data/ran ]; then exit 0; fi; touch /data/ran; exit 1"
    await create(client, ns, pod(node, "retry", [{
        "name": "main", "command": ["sh", "-c", cmd],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
        restartPolicy="OnFailure", volumes=[{"name": "data", "emptyDir": {}}]))
    p = await wait_pod(client, ns, "retry", phase_is("Succeeded"), message="Succeeded")
    cs = cstatus(p, "main")
    assert cs["restartCount"] == 1
    assert cs["lastState"]["terminated"]["exitCode"] == 1


async def test_always_crash_loop_backoff(node, client, ns):
    await create(client, ns, pod(node, "crash", [{"name": "main", "command": ["sh", "-c", "exit 2"]}]))

    def backing_off(p):
        cs = cstatus(p, "main") or {}
        w = (cs.get("state") or {}).get("waiting") or {}
        return w.get("reason") == "CrashLoopBackOff" and cs.get("restartCount", 0) >= 2
    p = await wait_pod(client, ns, "crash", backing_off, message="CrashLoopBackOff")
    cs = cstatus(p, "main")
    assert cs["state"]["waiting"]["message"].startswith("back-off ")
    assert f"restarting failed container=main pod=crash_{ns}(" in cs["state"]["waiting"]["message"]
    assert cs["lastState"]["terminated"]["exitCode"] == 2
    assert p["status"]["phase"] == "Running"
    assert "BackOff" in {e["reason"] for e in await events_for(client, ns, "crash")}
    # old attempts are garbage-collected: at most the latest two per container
    uid = p["metadata"]["uid"]
    apps = await node.containers(**{LABEL_POD_UID: uid, LABEL_KIND: "app"})
    assert len(apps) <= 2


async def test_init_containers_run_in_order(node, client, ns):
    vol = [{"name": "work", "mountPath": "/work"}]
    manifest = pod(node, "init", [sleeper(command=["sh", "-c",
                                                    '[ "$(cat /work/order)" = "12" ] || exit 7; '
                                                    "exec sleep 3600"], volumeMounts=vol)],
                   initContainers=[
                       {"name": "one", "image": BUSYBOX, "command": ["sh", "-c", "printf 1 >> /work/order"],
                        "volumeMounts": vol},
                       {"name": "two", "image": BUSYBOX, "command": ["sh", "-c", "printf 2 >> /work/order"],
                        "volumeMounts": vol}],
                   restartPolicy="Never", volumes=[{"name": "work", "emptyDir": {}}])
    await create(client, ns, manifest)
    p = await wait_pod(client, ns, "init", lambda p: condition(p, "Ready") == "True",
                       message="Ready")
    assert condition(p, "Initialized") == "True"
    for name in ("one", "two"):
        term = cstatus(p, name, init=True)["state"]["terminated"]
        assert term["exitCode"] == 0 and term["reason"] == "Completed"


async def test_failing_init_container_fails_pod_with_never(node, client, ns):
    manifest = pod(node, "badinit", [sleeper()], restartPolicy="Never",
                   initContainers=[{"name": "boom", "image": BUSYBOX, "command": ["false"]}])
    await create(client, ns, manifest)
    p = await wait_pod(client, ns, "badinit", phase_is("Failed"), message="Failed")
    assert cstatus(p, "boom", init=True)["state"]["terminated"]["exitCode"] == 1
    assert condition(p, "Initialized") == "False"
    assert cstatus(p, "main")["state"]["waiting"]["reason"] == "PodInitializing"


# --- probes ---------------------------------------------------------------------------------


async def test_exec_readiness_probe_false_then_true(node, client, ns):
    await create(client, ns, pod(node, "ready", [sleeper(readinessProbe={
        "exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1})]))
    p = await wait_pod(client, ns, "ready", lambda p: "running" in (
        (cstatus(p, "main") or {}).get("state") or {}), message="running")
    assert cstatus(p, "main")["ready"] is False
    assert condition(p, "Ready") == "False" and condition(p, "ContainersReady") == "False"
    assert (await exec_in(node, p, "main", ["touch", "/tmp/ready"])).exit_code == 0
    p = await wait_pod(client, ns, "ready", lambda p: condition(p, "Ready") == "True",
                       message="Ready after the file appeared")
    assert cstatus(p, "main")["ready"] is True


async def test_http_readiness_and_tcp_liveness(node, client, ns):
    web = {"name": "web", "command": ["sh", "-c", "mkdir -p /www && exec httpd -f -p 8080 -h /www"],
           "ports": [{"name": "http", "containerPort": 8080}],
           "readinessProbe": {"httpGet": {"path": "/ok.html", "port": "http"},
                              "periodSeconds": 1},
           "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1,
                             "failureThreshold": 2}}
    await create(client, ns, pod(node, "http", [web]))
    p = await wait_pod(client, ns, "http", lambda p: "running" in (
        (cstatus(p, "web") or {}).get("state") or {}), message="running")
    assert cstatus(p, "web")["ready"] is False  # /ok.html is a 404 so far
    assert (await exec_in(node, p, "web", ["sh", "-c", "echo ok > /www/ok.html"])).exit_code == 0
    p = await wait_pod(client, ns, "http", lambda p: condition(p, "Ready") == "True",
                       message="Ready after /ok.html appeared")
    assert cstatus(p, "web")["restartCount"] == 0  # the tcp liveness probe passes


async def test_failed_liveness_probe_restarts_container(node, client, ns):
    await create(client, ns, pod(node, "live", [sleeper(
        command=["sh", "-c", "touch /tmp/alive; exec sleep 3600"],
        livenessProbe={"exec": {"command": ["cat", "/tmp/alive"]}, "periodSeconds": 1,
                       "failureThreshold": 1})]))
    p = await wait_pod(client, ns, "live", lambda p: (cstatus(p, "main") or {}).get("ready"),
                       message="ready")
    assert (await exec_in(node, p, "main", ["rm", "/tmp/alive"])).exit_code == 0
    p = await wait_pod(client, ns, "live", lambda p: (cstatus(p, "main") or {}).get(
        "restartCount", 0) >= 1 and "running" in cstatus(p, "main")["state"],
        message="restarted")
    reasons = {e["reason"] for e in await events_for(client, ns, "live")}
    assert {"Unhealthy", "Killing"} <= reasons


async def test_memory_limit_oom_killed(node, client, ns):
    await create(client, ns, pod(node, "oom", [{
        "name": "main", "command": ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
        "resources": {"limits": {"memory": "16Mi"}}}], restartPolicy="Never"))
    p = await wait_pod(client, ns, "oom", phase_is("Failed"), message="Failed")
    term = cstatus(p, "main")["state"]["terminated"]
    assert term["reason"] == "OOMKilled"
    assert term["exitCode"] == 137


# --- images, config, volumes ----------------------------------------------------------------


async def test_missing_image_err_image_never_pull(node, client, ns):
    image = f"minik8s/not-here-{uuid.uuid4().hex[:6]}:1.0"
    await create(client, ns, pod(node, "noimg", [{"name": "main", "image": image,
                                                  "command": ["true"]}]))
    p = await wait_pod(client, ns, "noimg", lambda p: ((cstatus(p, "main") or {}).get(
        "state", {}).get("waiting") or {}).get("reason") == "ErrImageNeverPull",
        message="ErrImageNeverPull")
    assert cstatus(p, "main")["state"]["waiting"]["message"] == (
        f'Container image "{image}" is not present with pull policy of Never')
    assert p["status"]["phase"] == "Pending"
    ev = await wait_for(lambda: _has_event(client, ns, "noimg", "ErrImageNeverPull"), 10,
                        "event")
    assert ev["type"] == "Warning"
    assert await node.runtime.image(image) is None  # and nothing was pulled


async def _has_event(client, ns, name, reason):
    for e in await events_for(client, ns, name):
        if e["reason"] == reason:
            return e
    return None


async def test_configmap_and_secret_volumes_and_env(node, client, ns):
    await client.create("configmaps", {"metadata": {"name": "cfg"},
                                       "data": {"color": "blue", "size": "xl"}}, ns)
    await client.create("secrets", {"metadata": {"name": "sec"}, "type": "Opaque",
                                    "data": {"pw": base64.b64encode(b"s3cret").decode()}}, ns)
    script = " && ".join([
        '[ "$COLOR" = blue ]', '[ "$PW" = s3cret ]', '[ "$CFG_size" = xl ]',
        '[ "$ME" = env ]', f'[ "$NS" = {ns} ]', f'[ "$NODE" = {node.name} ]',
        '[ "$GREETING" = "blue-sky" ]',
        '[ "$(cat /etc/cfg/color)" = blue ]', '[ "$(cat /etc/sec/password)" = s3cret ]',
        '[ ! -e /etc/sec/pw ]', '[ "$(stat -L -c %a /etc/sec/password)" = 400 ]',
        "grep -q 'search " + ns + ".svc.cluster.local' /etc/resolv.conf",
        "grep -q 'nameserver 10.96.0.10' /etc/resolv.conf",
        '[ "$(hostname)" = env ]',
    ]) + " || exit 9"
    c = {"name": "main", "command": ["sh", "-c", script],
         "env": [
             {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "color"}}},
             {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "pw"}}},
             {"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
             {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
             {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
             {"name": "GREETING", "value": "$(COLOR)-sky"},
             {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "x",
                                                            "optional": True}}}],
         "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
         "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"},
                          {"name": "sec", "mountPath": "/etc/sec", "readOnly": True}]}
    await create(client, ns, pod(node, "env", [c], restartPolicy="Never", volumes=[
        {"name": "cfg", "configMap": {"name": "cfg"}},
        {"name": "sec", "secret": {"secretName": "sec", "defaultMode": 0o400,
                                   "items": [{"key": "pw", "path": "password"}]}}]))
    p = await wait_pod(client, ns, "env", lambda p: p["status"].get("phase") in (
        "Succeeded", "Failed"), message="finished")
    assert p["status"]["phase"] == "Succeeded", cstatus(p, "main")


async def test_missing_configmap_is_create_container_config_error(node, client, ns):
    await create(client, ns, pod(node, "nocm", [sleeper(env=[{"name": "X", "valueFrom": {
        "configMapKeyRef": {"name": "absent", "key": "k"}}}])]))
    p = await wait_pod(client, ns, "nocm", lambda p: ((cstatus(p, "main") or {}).get(
        "state", {}).get("waiting") or {}).get("reason") == "CreateContainerConfigError",
        message="CreateContainerConfigError")
    assert cstatus(p, "main")["state"]["waiting"]["message"] == 'configmap "absent" not found'


# --- deletion and restarts ------------------------------------------------------------------


async def test_graceful_deletion_removes_containers_then_pod(node, client, ns):
    p = await create(client, ns, pod(node, "bye", [sleeper()]))
    uid = p["metadata"]["uid"]
    await wait_pod(client, ns, "bye", phase_is("Running"), message="Running")
    assert await node.containers(**{LABEL_POD_UID: uid})
    await client.delete("pods", "bye", ns)

    async def gone():
        try:
            await client.get("pods", "bye", ns)
            return False
        except NotFound:
            return True
    await wait_for(gone, 30, "pod object removed")
    assert await node.containers(**{LABEL_POD_UID: uid}) == []


async def test_force_deleted_pod_is_cleaned_from_docker(node, client, ns):
    p = await create(client, ns, pod(node, "force", [sleeper()]))
    uid = p["metadata"]["uid"]
    await wait_pod(client, ns, "force", phase_is("Running"), message="Running")
    await client.delete("pods", "force", ns, grace_period_seconds=0)

    async def cleaned():
        return await node.containers(**{LABEL_POD_UID: uid}) == []
    await wait_for(cleaned, 30, "containers removed")


async def test_kubelet_restart_creates_no_duplicates(node, client, ns):
    p = await create(client, ns, pod(node, "keep", [sleeper(), sleeper("side")]))
    uid = p["metadata"]["uid"]
    await wait_pod(client, ns, "keep", lambda p: condition(p, "Ready") == "True",
                   message="Ready")
    before = sorted((c.id, c.state) for c in await node.containers(**{LABEL_POD_UID: uid}))
    assert len(before) == 3  # sandbox + two app containers
    await node.restart()
    await wait_for(lambda: _synced(node, uid), 30, "pod synced by the new kubelet")
    after = sorted((c.id, c.state) for c in await node.containers(**{LABEL_POD_UID: uid}))
    assert after == before
    p = await client.get("pods", "keep", ns)
    assert p["status"]["phase"] == "Running"
    assert all(cs["restartCount"] == 0 for cs in p["status"]["containerStatuses"])


async def _synced(node, uid):
    return uid in node.kubelet.pods.last_status


# --- the command ----------------------------------------------------------------------------


async def test_kubelet_command_runs_pods_and_leaves_them_on_sigterm(apiserver, busybox_image,
                                                                   client, ns, tmp_path):
    import asyncio
    import signal
    import subprocess
    import sys

    from e2e_helpers import ROOT, remove_node_containers
    name = f"cli-{uuid.uuid4().hex[:6]}"
    kubeconfig = apiserver.kubeconfig_for(f"node-{name}", f"system:node:{name}",
                                          ("system:nodes",))
    log = open(tmp_path / "kubelet.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "minik8s.cli.main", "kubelet", "--node-name", name,
         "--kubeconfig", str(kubeconfig), "--root-dir", str(tmp_path / "root"),
         "--network", "none", "--node-ip", "127.0.0.1", "--node-status-update-period", "2"],
        stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT))
    try:
        await wait_for(lambda: client.get("nodes", name), 30, "node registered")
        await client.create("pods", {"metadata": {"name": "cli"}, "spec": {
            "nodeName": name, "terminationGracePeriodSeconds": 1,
            "containers": [sleeper(image=BUSYBOX)]}}, ns)
        await wait_pod(client, ns, "cli", phase_is("Running"), message="Running")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0
        from kubelet.runtime.docker import DockerRuntime
        rt = DockerRuntime()
        try:
            left = await rt.list_containers({"io.minik8s.node": name})
        finally:
            rt.close()
        assert left and all(c.state == "running" for c in left)  # pods outlive the kubelet
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        await asyncio.to_thread(remove_node_containers, name)
