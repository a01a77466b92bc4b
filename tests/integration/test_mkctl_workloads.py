"""``mkctl set image``, ``create deployment|job`` and ``get events`` against a real API
server: the objects kubectl's generators build, kubectl's output lines, and events in time
order."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from minik8s.cli.mkctl import main

ROOT = Path(__file__).resolve().parents[2]
BUSYBOX = "minik8s/busybox:1.35"


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def mk(capsys, kubeconfig):
    def run(*args: str) -> Result:
        capsys.readouterr()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            code = pool.submit(main, ["--kubeconfig", str(kubeconfig), *args]).result(
                timeout=60)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def get_json(mk, *args: str) -> dict:
    r = mk("get", *args, "-o", "json")
    assert r.code == 0, r.err
    return json.loads(r.out)


def create_from(mk, tmp_path: Path, obj: dict, ns: str) -> None:
    path = tmp_path / f"{obj['kind']}-{obj['metadata']['name']}.json"
    path.write_text(json.dumps(obj))
    r = mk("create", "-f", str(path), "-n", ns)
    assert r.code == 0, r.err


# --------------------------------------------------------------------------- create

def test_create_deployment_like_kubectl(mk, ns):
    r = mk("create", "deployment", "web", f"--image={BUSYBOX}", "--replicas", "3",
           "--port", "8080", "-n", ns, "--", "sleep", "3600")
    assert (r.code, r.out, r.err) == (0, "deployment.apps/web created\n", "")
    d = get_json(mk, "deployment", "web", "-n", ns)
    assert d["metadata"]["labels"] == {"app": "web"}
    assert d["spec"]["replicas"] == 3
    assert d["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    assert d["spec"]["template"]["metadata"]["labels"] == {"app": "web"}
    [c] = d["spec"]["template"]["spec"]["containers"]
    assert (c["name"], c["image"], c["command"]) == ("busybox", BUSYBOX, ["sleep", "3600"])
    assert c["ports"][0]["containerPort"] == 8080
    r = mk("create", "deployment", "web", f"--image={BUSYBOX}", "-n", ns)
    assert r.code == 1
    assert r.err == ('Error from server (AlreadyExists): deployments.apps "web" already '
                     'exists\n')
    r = mk("create", "deploy", "other", f"--image={BUSYBOX}", "-n", ns, "-o", "name")
    assert (r.code, r.out) == (0, "deployment.apps/other\n")
    r = mk("create", "deployment", "noimage", "-n", ns)
    assert (r.code, r.err) == (1, 'error: required flag(s) "image" not set\n')


def test_create_job_with_image_and_from_cronjob(mk, ns, tmp_path):
    r = mk("create", "job", "once", f"--image={BUSYBOX}", "-n", ns, "--", "echo", "hi")
    assert (r.code, r.out) == (0, "job.batch/once created\n"), r.err
    job = get_json(mk, "job", "once", "-n", ns)
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["containers"][0]["name"] == "once"
    assert spec["containers"][0]["command"] == ["echo", "hi"]

    cj = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
          "spec": {"schedule": "0 3 * * *", "jobTemplate": {
              "metadata": {"labels": {"team": "a"}},
              "spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [
                  {"name": "c", "image": BUSYBOX, "command": ["true"]}]}}}}}}
    create_from(mk, tmp_path, cj, ns)
    r = mk("create", "job", "manual-1", "--from=cronjob/nightly", "-n", ns)
    assert (r.code, r.out) == (0, "job.batch/manual-1 created\n"), r.err
    job = get_json(mk, "job", "manual-1", "-n", ns)
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    assert job["metadata"]["labels"]["team"] == "a"
    [owner] = job["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("CronJob", "nightly", True)
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["true"]
    r = mk("create", "job", "x", "--from=cronjob/missing", "-n", ns)
    assert (r.code, r.err) == (1, 'error: cronjobs.batch "missing" not found\n')


def test_create_namespace_and_files_still_work(mk):
    name = f"wl-{int(time.time() * 1000) % 10**8}"
    r = mk("create", "namespace", name)
    assert (r.code, r.out) == (0, f"namespace/{name} created\n")
    assert mk("delete", "namespace", name).code == 0


# --------------------------------------------------------------------------- set image

def test_set_image_deployment_and_pod(mk, ns, tmp_path):
    assert mk("create", "deployment", "web", f"--image={BUSYBOX}", "-n", ns).code == 0
    r = mk("set", "image", "deployment/web", "busybox=minik8s/busybox:9", "-n", ns)
    assert (r.code, r.out, r.err) == (0, "deployment.apps/web image updated\n", "")
    d = get_json(mk, "deployment", "web", "-n", ns)
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "minik8s/busybox:9"
    assert d["metadata"]["labels"] == {"app": "web"}
    # nothing to change: kubectl prints nothing
    r = mk("set", "image", "deployments", "web", "busybox=minik8s/busybox:9", "-n", ns)
    assert (r.code, r.out) == (0, "")
    r = mk("set", "image", "deployment/web", "nope=x:1", "-n", ns)
    assert (r.code, r.err) == (1, 'error: unable to find container named "nope"\n')
    r = mk("set", "image", "deployment/missing", "a=b:1", "-n", ns)
    assert (r.code, r.err) == (1, 'error: deployments.apps "missing" not found\n')

    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "a", "image": BUSYBOX},
                                   {"name": "b", "image": BUSYBOX}]}}
    create_from(mk, tmp_path, pod, ns)
    r = mk("set", "image", "pod/p", "b=minik8s/busybox:2", "-n", ns)
    assert (r.code, r.out) == (0, "pod/p image updated\n"), r.err
    got = get_json(mk, "pod", "p", "-n", ns)
    assert [c["image"] for c in got["spec"]["containers"]] == [BUSYBOX, "minik8s/busybox:2"]


def test_set_image_statefulset_and_daemonset_all_containers(mk, ns, tmp_path):
    for kind, extra in (("StatefulSet", {"serviceName": "db"}), ("DaemonSet", {})):
        obj = {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "w"},
               "spec": {**extra, "selector": {"matchLabels": {"app": "w"}},
                        "template": {"metadata": {"labels": {"app": "w"}}, "spec": {
                            "containers": [{"name": "a", "image": BUSYBOX},
                                           {"name": "b", "image": BUSYBOX}]}}}}
        create_from(mk, tmp_path, obj, ns)
        r = mk("set", "image", f"{kind.lower()}/w", "*=minik8s/busybox:3", "-n", ns)
        assert (r.code, r.out) == (0, f"{kind.lower()}.apps/w image updated\n"), r.err
        got = get_json(mk, kind.lower(), "w", "-n", ns)
        assert {c["image"] for c in got["spec"]["template"]["spec"]["containers"]} == {
            "minik8s/busybox:3"}


# --------------------------------------------------------------------------- events

def _event(name: str, reason: str, last: str, *, ns: str, kind: str = "Pod",
           obj: str = "p", etype: str = "Normal") -> dict:
    return {"apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": ns},
            "involvedObject": {"kind": kind, "name": obj, "namespace": ns},
            "reason": reason, "message": f"{reason} happened", "type": etype,
            "source": {"component": "test"}, "firstTimestamp": last, "lastTimestamp": last,
            "count": 1}


async def _make_events(client, ns: str) -> None:
    # names in the opposite order of time, so a name-ordered list would be wrong
    for name, reason, last, etype in (
            ("a-third", "Third", "2024-05-01T10:00:30Z", "Normal"),
            ("b-first", "First", "2024-05-01T10:00:10Z", "Warning"),
            ("c-second", "Second", "2024-05-01T10:00:20Z", "Normal")):
        await client.create("events", _event(name, reason, last, ns=ns, etype=etype), ns)


async def test_get_events_sorted_by_time(mk, client, ns):
    await _make_events(client, ns)
    loop_run = asyncio.to_thread
    r = await loop_run(mk, "get", "events", "-n", ns)
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert [line.split()[2] for line in lines[1:]] == ["First", "Second", "Third"]
    assert lines[1].split()[1:] == ["Warning", "First", "pod/p", "First", "happened"]
    # -o name follows the same order
    r = await loop_run(mk, "get", "ev", "-n", ns, "-o", "name")
    assert r.out.splitlines() == ["event/b-first", "event/c-second", "event/a-third"]
    # --field-selector
    r = await loop_run(mk, "get", "events", "-n", ns, "--field-selector", "type=Warning")
    assert [line.split()[2] for line in r.out.splitlines()[1:]] == ["First"]
    # -A adds the NAMESPACE column; this namespace's rows keep their order
    r = await loop_run(mk, "get", "events", "-A")
    assert r.out.splitlines()[0].split()[:3] == ["NAMESPACE", "LAST", "SEEN"]
    mine = [line.split()[3] for line in r.out.splitlines()[1:] if line.split()[0] == ns]
    assert mine == ["First", "Second", "Third"]
    # -o wide adds the wide columns
    r = await loop_run(mk, "get", "events", "-n", ns, "-o", "wide")
    assert "SUBOBJECT" in r.out.splitlines()[0] and "FIRST SEEN" in r.out.splitlines()[0]


async def test_get_events_empty_namespace(mk, ns):
    r = await asyncio.to_thread(mk, "get", "events", "-n", ns)
    assert (r.code, r.out, r.err) == (0, "", f"No resources found in {ns} namespace.\n")


async def test_get_events_watch(client, kubeconfig, ns):
    await _make_events(client, ns)
    proc = subprocess.Popen([sys.executable, "-m", "minik8s.cli.mkctl", "--kubeconfig",
                             str(kubeconfig), "get", "events", "-n", ns, "-w",
                             "--request-timeout=6s"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=str(ROOT))
    try:
        await asyncio.sleep(2.5)
        await client.create("events", _event("d-new", "Fourth", "2024-05-01T09:00:00Z",
                                              ns=ns), ns)
        out, err = await asyncio.to_thread(proc.communicate, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["LAST", "SEEN"]
    assert [line.split()[2] for line in lines[1:]] == ["First", "Second", "Third", "Fourth"]
