"""Logs, exec and stats end to end: a real kubelet (in-process, its HTTPS server on loopback
with a serving certificate from the test PKI), real Docker, the real API server proxying
``pods/log`` and ``pods/exec`` to it; driven through mkctl, the real kubectl and the official
Python client. Also cordon/uncordon/drain. Every client that blocks runs in a thread or a
subprocess: the kubelet shares this event loop."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import sys
import uuid

import httpx
import pytest

from minik8s.pki import issue_cert
from e2e_helpers import BUSYBOX, ROOT, serving_kubelet, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def node(apiserver, busybox_image, tmp_path_factory):
    async with serving_kubelet(apiserver, "logs-exec", tmp_path_factory) as handle:
        url = f"https://127.0.0.1:{handle.config.port}/healthz"
        await wait_for(lambda: _kubelet_get(apiserver, url, admin=True), 20,
                       "kubelet server up")
        yield handle


async def _kubelet_get(apiserver, url: str, *, admin: bool) -> httpx.Response:
    ctx = ssl.create_default_context(cafile=str(apiserver.pki.ca_cert))
    if admin:
        ctx.load_cert_chain(str(apiserver.pki.admin_cert), str(apiserver.pki.admin_key))
    async with httpx.AsyncClient(verify=ctx, trust_env=False, timeout=10) as c:
        return await c.get(url)


def pod(node, name: str, containers: list[dict], **spec) -> dict:
    for c in containers:
        c.setdefault("image", BUSYBOX)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node.name, "terminationGracePeriodSeconds": 1,
                     "containers": containers, **spec}}


async def running(client, ns, name, timeout=60.0, restarts: int = 0) -> dict:
    async def check():
        p = await client.get("pods", name, ns)
        st = p.get("status") or {}
        cs = st.get("containerStatuses") or []
        if st.get("phase") == "Running" and cs and all("running" in (c.get("state") or {})
                                                       for c in cs) and \
                all(c.get("restartCount", 0) >= restarts for c in cs):
            return p
        return None
    return await wait_for(check, timeout, f"{ns}/{name} running")


async def mkctl(apiserver, *args: str, stdin: bytes | None = None,
                timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "minik8s.cli.mkctl", "--kubeconfig", str(apiserver.kubeconfig),
        *args, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(ROOT))
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    return proc.returncode, out.decode(), err.decode()


SLEEP = ["sh", "-c", "echo line-1; echo line-2; echo line-3; exec sleep 3600"]


@pytest.fixture(scope="module")
async def talker(node, apiserver):
    """A namespace with a pod that wrote three lines and keeps running."""
    client = apiserver.client()
    ns = f"t-{uuid.uuid4().hex[:8]}"
    await client.create("namespaces", {"metadata": {"name": ns}})
    await client.create("pods", pod(node, "talker", [{"name": "main", "command": SLEEP}]), ns)
    await running(client, ns, "talker")
    await wait_for(lambda: _has_logs(apiserver, ns), 20, "first log lines")
    yield ns
    await client.aclose()


async def _has_logs(apiserver, ns) -> bool:
    code, out, _ = await mkctl(apiserver, "logs", "talker", "-n", ns)
    return code == 0 and "line-3" in out


# --- mkctl logs ------------------------------------------------------------------------------


async def test_mkctl_logs_plain_tail_timestamps(apiserver, talker):
    code, out, err = await mkctl(apiserver, "logs", "talker", "-n", talker)
    assert code == 0, err
    assert out.splitlines() == ["line-1", "line-2", "line-3"]
    code, out, _ = await mkctl(apiserver, "logs", "pod/talker", "-n", talker, "--tail", "1")
    assert out == "line-3\n"
    code, out, _ = await mkctl(apiserver, "logs", "talker", "-n", talker, "--tail=2",
                               "--timestamps")
    lines = out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("20") and lines[0].endswith(" line-2")


async def test_mkctl_logs_follow_sees_new_line(apiserver, node, client, ns):
    script = ("echo first; while true; do if [ -f /tmp/go ]; then echo second; rm /tmp/go; "
              "fi; sleep 0.2; done")
    await client.create("pods", pod(node, "follow", [{"name": "main",
                                                      "command": ["sh", "-c", script]}]), ns)
    p = await running(client, ns, "follow")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "minik8s.cli.mkctl", "--kubeconfig", str(apiserver.kubeconfig),
        "logs", "-f", "follow", "-n", ns, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        cwd=str(ROOT))
    try:
        assert (await asyncio.wait_for(proc.stdout.readline(), 30)) == b"first\n"
        cid = p["status"]["containerStatuses"][0]["containerID"].removeprefix("docker://")
        assert (await node.runtime.exec_run(cid, ["touch", "/tmp/go"], timeout=10)).exit_code == 0
        assert (await asyncio.wait_for(proc.stdout.readline(), 30)) == b"second\n"
        assert proc.returncode is None  # still following
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_mkctl_logs_previous_after_restart(apiserver, node, client, ns):
    script = ('n=$(cat /data/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /data/n; '
              'echo attempt-$n; if [ $n -eq 1 ]; then exit 1; fi; exec sleep 3600')
    manifest = pod(node, "restarter", [{"name": "main", "command": ["sh", "-c", script],
                                        "volumeMounts": [{"name": "d", "mountPath": "/data"}]}],
                   volumes=[{"name": "d", "emptyDir": {}}])
    await client.create("pods", manifest, ns)
    await running(client, ns, "restarter", restarts=1)
    code, out, err = await mkctl(apiserver, "logs", "restarter", "-n", ns)
    assert (code, out) == (0, "attempt-2\n"), err
    code, out, err = await mkctl(apiserver, "logs", "restarter", "-n", ns, "--previous")
    assert (code, out) == (0, "attempt-1\n"), err


async def test_logs_errors_in_kubernetes_words(apiserver, node, client, ns):
    two = pod(node, "two", [{"name": "a", "command": ["sleep", "3600"]},
                            {"name": "b", "command": ["sleep", "3600"]}])
    await client.create("pods", two, ns)
    unbound = pod(node, "unbound", [{"name": "a", "command": ["sleep", "3600"]}])
    del unbound["spec"]["nodeName"]
    await client.create("pods", unbound, ns)
    with pytest.raises(Exception) as exc:
        await client.request("GET", f"/api/v1/namespaces/{ns}/pods/two/log")
    assert exc.value.code == 400
    assert exc.value.message == ("a container name must be specified for pod two, choose one "
                                 "of: [a b]")
    with pytest.raises(Exception) as exc:
        await client.request("GET", f"/api/v1/namespaces/{ns}/pods/two/log",
                             params={"container": "zz"})
    assert exc.value.message == "container zz is not valid for pod two"
    with pytest.raises(Exception) as exc:
        await client.request("GET", f"/api/v1/namespaces/{ns}/pods/unbound/log")
    assert (exc.value.code, exc.value.message) == (400, "pod unbound does not have a host "
                                                         "assigned")
    await running(client, ns, "two")
    code, out, err = await mkctl(apiserver, "logs", "two", "-n", ns)
    assert code == 0 and 'Defaulted container "a" out of: a, b' in err


# --- mkctl exec ------------------------------------------------------------------------------


async def test_mkctl_exec_output_and_exit_code(apiserver, talker):
    code, out, err = await mkctl(apiserver, "exec", "talker", "-n", talker, "--", "sh", "-c",
                                 "echo out; echo err >&2; exit 3")
    assert code == 3
    assert out == "out\n"
    assert "err\n" in err and "command terminated with exit code 3" in err
    code, out, err = await mkctl(apiserver, "exec", "talker", "-n", talker, "--", "hostname")
    assert code == 0 and out.strip(), err


async def test_mkctl_exec_stdin(apiserver, talker):
    code, out, err = await mkctl(apiserver, "exec", "-i", "talker", "-n", talker, "--", "sh",
                                 "-c", "read x; echo got-$x", stdin=b"hello\n")
    assert (code, out) == (0, "got-hello\n"), err
    # the end of stdin reaches the command (v5 close): cat and wc finish
    code, out, err = await mkctl(apiserver, "exec", "-i", "talker", "-n", talker, "--", "wc",
                                 "-l", stdin=b"a\nb\nc\n")
    assert (code, out.strip()) == (0, "3"), err
    # -t without a terminal: kubectl's warning, then no tty
    code, out, err = await mkctl(apiserver, "exec", "-it", "talker", "-n", talker, "--", "cat",
                                 stdin=b"x\n")
    assert (code, out) == (0, "x\n")
    assert "Unable to use a TTY" in err


# --- kubectl ---------------------------------------------------------------------------------


KUBECTL = shutil.which("kubectl")


def kubectl(apiserver, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([KUBECTL, "--kubeconfig", str(apiserver.kubeconfig), *args],
                          input=stdin, capture_output=True, timeout=90)


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not on PATH")
async def test_kubectl_logs_and_exec(apiserver, talker):
    r = await asyncio.to_thread(kubectl, apiserver, "-n", talker, "logs", "talker")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == ["line-1", "line-2", "line-3"]
    r = await asyncio.to_thread(kubectl, apiserver, "-n", talker, "logs", "talker",
                                "--tail=1")
    assert r.stdout == b"line-3\n"
    r = await asyncio.to_thread(kubectl, apiserver, "-n", talker, "exec", "talker", "--",
                                "sh", "-c", "echo hi; echo oops >&2; exit 4")
    assert r.returncode == 4, r.stderr
    assert r.stdout == b"hi\n" and b"oops" in r.stderr
    r = await asyncio.to_thread(kubectl, apiserver, "-n", talker, "exec", "-i", "talker", "--",
                                "wc", "-l", stdin=b"1\n2\n")
    assert (r.returncode, r.stdout.strip()) == (0, b"2"), r.stderr


# --- the official Python client --------------------------------------------------------------


def _python_client(apiserver):
    from kubernetes import client as k8s, config as k8s_config
    api_client = k8s_config.new_client_from_config(config_file=str(apiserver.kubeconfig))
    return k8s.CoreV1Api(api_client)


async def test_python_client_log_and_stream_exec(apiserver, talker):
    from kubernetes.stream import stream

    def run():
        api = _python_client(apiserver)
        log = api.read_namespaced_pod_log("talker", talker, tail_lines=2)
        out = stream(api.connect_get_namespaced_pod_exec, "talker", talker,
                     command=["sh", "-c", "echo from-python"], stderr=True, stdin=False,
                     stdout=True, tty=False)
        resp = stream(api.connect_get_namespaced_pod_exec, "talker", talker,
                      command=["sh", "-c", "exit 5"], stderr=True, stdin=False, stdout=True,
                      tty=False, _preload_content=False)
        resp.run_forever(timeout=20)
        code = resp.returncode
        resp.close()
        inter = stream(api.connect_get_namespaced_pod_exec, "talker", talker,
                       command=["sh", "-c", "read x; echo py-$x"], stderr=True, stdin=True,
                       stdout=True, tty=False, _preload_content=False)
        inter.write_stdin("abc\n")
        inter.run_forever(timeout=20)
        echoed = inter.read_stdout()
        inter.close()
        api.api_client.close()
        return log, out, code, echoed

    log, out, code, echoed = await asyncio.to_thread(run)
    assert log == "line-2\nline-3\n"
    assert out == "from-python\n"
    assert code == 5
    assert echoed == "py-abc\n"


# --- the kubelet's own endpoints -------------------------------------------------------------


async def test_stats_summary_nonzero_for_busy_pod(apiserver, node, client, ns):
    await client.create("pods", pod(node, "busy", [
        {"name": "spin", "command": ["sh", "-c", "while true; do :; done"]}]), ns)
    p = await running(client, ns, "busy")
    url = f"https://127.0.0.1:{node.config.port}/stats/summary"

    async def sample():
        r = await _kubelet_get(apiserver, url, admin=True)
        assert r.status_code == 200, r.text
        summary = r.json()
        mine = [x for x in summary["pods"] if x["podRef"]["uid"] == p["metadata"]["uid"]]
        if mine and mine[0]["cpu"].get("usageNanoCores", 0) > 0:
            return summary, mine[0]
        return None

    summary, busy = await wait_for(sample, 30, "busy pod cpu sampled")
    assert busy["podRef"] == {"name": "busy", "namespace": ns, "uid": p["metadata"]["uid"]}
    assert busy["cpu"]["usageNanoCores"] > 50_000_000  # a spinning shell: well over 5% of a core
    assert busy["cpu"]["usageCoreNanoSeconds"] > 0
    assert busy["memory"]["workingSetBytes"] > 0
    [spin] = busy["containers"]
    assert spin["name"] == "spin" and spin["cpu"]["usageNanoCores"] > 0
    assert spin["memory"]["workingSetBytes"] > 0
    n = summary["node"]
    assert n["nodeName"] == node.name
    assert n["cpu"]["usageNanoCores"] > 0 and n["cpu"]["usageCoreNanoSeconds"] > 0
    assert n["memory"]["workingSetBytes"] > 0
    await client.delete("pods", "busy", ns, grace_period_seconds=0)


async def test_kubelet_refuses_anonymous_and_strangers(apiserver, node, talker):
    base = f"https://127.0.0.1:{node.config.port}"
    for path in ("/stats/summary", f"/containerLogs/{talker}/talker/main", "/healthz"):
        r = await _kubelet_get(apiserver, base + path, admin=False)
        assert r.status_code == 401, path
    cert, key = issue_cert(apiserver.pki.ca_cert.read_bytes(), apiserver.pki.ca_key.read_bytes(),
                           common_name="someone", organizations=("developers",))
    folder = apiserver.pki.directory.parent
    (folder / "someone.crt").write_bytes(cert)
    (folder / "someone.key").write_bytes(key)
    ctx = ssl.create_default_context(cafile=str(apiserver.pki.ca_cert))
    ctx.load_cert_chain(str(folder / "someone.crt"), str(folder / "someone.key"))
    async with httpx.AsyncClient(verify=ctx, trust_env=False, timeout=10) as c:
        assert (await c.get(base + "/stats/summary")).status_code == 403
    # the exec WebSocket too
    from websockets.asyncio.client import connect
    import websockets
    anon = ssl.create_default_context(cafile=str(apiserver.pki.ca_cert))
    with pytest.raises(websockets.InvalidStatus) as exc:
        async with connect(f"wss://127.0.0.1:{node.config.port}/exec/{talker}/talker/main"
                           f"?command=true&stdout=true", ssl=anon, proxy=None,
                           subprotocols=["v5.channel.k8s.io"]):
            pass
    assert exc.value.response.status_code == 401


# --- cordon, uncordon, drain -----------------------------------------------------------------


async def test_cordon_uncordon(apiserver, node, client):
    code, out, err = await mkctl(apiserver, "cordon", node.name)
    assert (code, out) == (0, f"node/{node.name} cordoned\n"), err
    assert (await client.get("nodes", node.name))["spec"]["unschedulable"] is True
    code, out, _ = await mkctl(apiserver, "cordon", node.name)
    assert out == f"node/{node.name} already cordoned\n"
    code, out, _ = await mkctl(apiserver, "uncordon", node.name)
    assert (code, out) == (0, f"node/{node.name} uncordoned\n")
    assert not (await client.get("nodes", node.name))["spec"].get("unschedulable")


async def test_drain(apiserver, node, client, ns):
    await client.create("pods", pod(node, "bare", [{"name": "a",
                                                    "command": ["sleep", "3600"]}]), ns)
    managed = pod(node, "managed", [{"name": "a", "command": ["sleep", "3600"]}])
    managed["metadata"]["ownerReferences"] = [{
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": str(uuid.uuid4()),
        "controller": True}]
    await client.create("pods", managed, ns)
    await running(client, ns, "bare")
    await running(client, ns, "managed")
    try:
        code, out, err = await mkctl(apiserver, "drain", node.name, "--ignore-daemonsets")
        assert code == 1
        assert out == f"node/{node.name} cordoned\n"
        first = err.splitlines()[0]
        assert first.startswith(f'error: unable to drain node "{node.name}" due to error: '
                                f'cannot delete Pods that declare no controller (use --force '
                                f'to override): ')
        assert f"{ns}/bare" in first and f"{ns}/managed" not in first
        assert (await client.get("pods", "bare", ns))["metadata"]["name"] == "bare"

        code, out, err = await mkctl(apiserver, "drain", node.name, "--ignore-daemonsets",
                                     "--force", "--delete-emptydir-data", "--timeout", "90s",
                                     timeout=120)
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0] == f"node/{node.name} already cordoned"
        assert "Warning: deleting Pods that declare no controller: " in err and \
            f"{ns}/bare" in err
        # every pod of the node goes, this test's and the module's others
        for name in ("bare", "managed"):
            assert f"evicting pod {ns}/{name}" in lines
            assert f"pod/{name} evicted" in lines
        assert lines[-1] == f"node/{node.name} drained"
        left = await client.list_all("pods", None, all_namespaces=True,
                                     field_selector=f"spec.nodeName={node.name}")
        assert [p["metadata"]["name"] for p in left["items"]] == []
    finally:
        await mkctl(apiserver, "uncordon", node.name)
