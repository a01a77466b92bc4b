"""mkctl against a real API server: output must be kubectl's, errors one line with exit code
1, and client-side apply must interoperate with the real kubectl in both directions (same
last-applied annotation, fields removed from a manifest removed from the object)."""

from __future__ import annotations

import base64
import concurrent.futures
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from minik8s.cli.mkctl import main

ROOT = Path(__file__).resolve().parents[2]

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def mk(capsys, kubeconfig, monkeypatch):
    """Run ``mkctl ARGS`` in-process (in a worker thread, so its ``asyncio.run`` never meets
    the test session's event loop) and return exit code, stdout and stderr."""

    def run(*args: str, stdin: str | None = None, config: Path | None = None) -> Result:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        capsys.readouterr()
        argv = ["--kubeconfig", str(config or kubeconfig), *args]
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            code = pool.submit(main, argv).result(timeout=60)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def run_cli(kubeconfig: Path, *args: str, stdin: str | None = None) -> Result:
    """mkctl as a separate process, as users run it."""
    proc = subprocess.run([sys.executable, "-m", "minik8s.cli.mkctl", "--kubeconfig",
                           str(kubeconfig), *args], input=stdin, capture_output=True,
                          text=True, cwd=str(ROOT), timeout=60)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: c
        image: busybox:1
        ports: [{containerPort: 80}]
        env: [{name: MODE, value: "blue"}]
"""

POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: {app}}}
spec:
  containers:
  - name: c
    image: busybox:1
"""


def column_starts(line: str) -> list[int]:
    """Where each column of a kubectl table line starts (cells are separated by 3+ spaces)."""
    starts, i = [0], 0
    while i < len(line):
        if line.startswith("   ", i):
            j = i
            while j < len(line) and line[j] == " ":
                j += 1
            if j < len(line):
                starts.append(j)
            i = j
        else:
            i += 1
    return starts


def assert_aligned(table: str) -> list[str]:
    """Every cell of every row starts exactly under a header column (empty cells allowed)."""
    lines = [line for line in table.splitlines() if line]
    header = set(column_starts(lines[0]))
    for line in lines[1:]:
        assert set(column_starts(line)) <= header, (lines[0], line)
    return lines


# --------------------------------------------------------------------------- get

def test_get_table_wide_and_alignment(mk, ns, tmp_path):
    manifest = write(tmp_path, "all.yaml", DEPLOYMENT + "---\n" + POD.format(name="p1", app="p")
                     + "---\n" + POD.format(name="a-much-longer-pod-name", app="q"))
    assert mk("apply", "-f", str(manifest), "-n", ns).code == 0

    r = mk("get", "pods", "-n", ns)
    assert r.code == 0 and r.err == ""
    lines = assert_aligned(r.out)
    assert lines[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert lines[0].startswith("NAME                     READY   STATUS")
    assert {line.split()[0] for line in lines[1:]} == {"p1", "a-much-longer-pod-name"}

    wide = mk("get", "pods", "p1", "-n", ns, "-o", "wide")
    header = assert_aligned(wide.out)[0]
    assert header.split()[-6:] == ["IP", "NODE", "NOMINATED", "NODE", "READINESS", "GATES"]

    both = mk("get", "deploy,pods", "-n", ns)
    assert "deployment.apps/web" in both.out and "pod/p1" in both.out
    assert "\n\nNAME" in both.out  # one table per kind, a blank line between

    labels = mk("get", "pods", "-n", ns, "-l", "app=p", "--show-labels")
    rows = assert_aligned(labels.out)
    assert rows[0].split()[-1] == "LABELS" and len(rows) == 2 and rows[1].endswith("app=p")

    headless = mk("get", "pods", "-n", ns, "--no-headers", "-l", "app=q")
    assert headless.out.startswith("a-much-longer-pod-name   0/1")


def test_get_output_formats(mk, ns, tmp_path):
    manifest = write(tmp_path, "d.yaml", DEPLOYMENT + "---\n" + POD.format(name="p1", app="p"))
    mk("apply", "-f", str(manifest), "-n", ns)

    single = yaml.safe_load(mk("get", "deploy", "web", "-n", ns, "-o", "yaml").out)
    assert single["kind"] == "Deployment" and single["metadata"]["name"] == "web"

    listed = yaml.safe_load(mk("get", "deploy", "-n", ns, "-o", "yaml").out)
    assert listed["kind"] == "List" and listed["apiVersion"] == "v1"
    assert [i["kind"] for i in listed["items"]] == ["Deployment"]

    as_json = json.loads(mk("get", "pods", "-n", ns, "-o", "json").out)
    assert as_json["kind"] == "List" and as_json["items"][0]["metadata"]["name"] == "p1"

    names = mk("get", "deploy,pods", "-n", ns, "-o", "name")
    assert names.out == "deployment.apps/web\npod/p1\n"

    empty = mk("get", "pods", "-n", ns, "-l", "nothing=here", "-o", "json")
    assert json.loads(empty.out)["items"] == []


def test_get_all_namespaces_and_empty(mk, ns, tmp_path):
    mk("apply", "-f", str(write(tmp_path, "p.yaml", POD.format(name="p1", app="p"))), "-n", ns)
    r = mk("get", "pods", "-A", "--field-selector", f"metadata.namespace={ns}")
    lines = assert_aligned(r.out)
    assert lines[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert lines[1].split()[:2] == [ns, "p1"]

    none = mk("get", "deploy", "-n", ns)
    assert none.code == 0 and none.out == ""
    assert none.err == f"No resources found in {ns} namespace.\n"
    assert mk("get", "pods", "-A", "-l", "nothing=here").err == "No resources found\n"


def test_namespace_comes_from_the_context_and_kubeconfig_from_env(mk, kubeconfig, ns,
                                                                   tmp_path):
    mk("apply", "-f", str(write(tmp_path, "p.yaml", POD.format(name="p1", app="p"))), "-n", ns)
    doc = yaml.safe_load(kubeconfig.read_text())
    main_ctx = doc["contexts"][0]
    main_ctx["context"]["namespace"] = ns
    doc["contexts"].append({"name": "elsewhere",
                            "context": {**main_ctx["context"], "namespace": "kube-public"}})
    config = write(tmp_path, "kubeconfig", yaml.safe_dump(doc))
    r = mk("get", "pods", "-o", "name", config=config)
    assert r.out == "pod/p1\n"
    other = mk("--context", "elsewhere", "get", "pods", config=config)
    assert other.err == "No resources found in kube-public namespace.\n"
    proc = subprocess.run([sys.executable, "-m", "minik8s.cli.mkctl", "get", "pods", "-o",
                           "name"], capture_output=True, text=True, cwd=str(ROOT),
                          env={**os.environ, "KUBECONFIG": str(config)},
                          timeout=60)
    assert (proc.returncode, proc.stdout) == (0, "pod/p1\n"), proc.stderr


def test_get_watch_prints_rows_as_events_arrive(mk, kubeconfig, ns, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "minik8s.cli.mkctl", "--kubeconfig",
                             str(kubeconfig), "get", "configmaps", "-n", ns, "-w",
                             "--request-timeout=6s"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=str(ROOT))
    try:
        time.sleep(2.5)
        cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: watched}\ndata: {a: '1'}\n"
        assert mk("create", "-f", "-", "-n", ns, stdin=cm).code == 0
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "DATA", "AGE"]
    assert lines[1].split()[:2] == ["watched", "1"]


# --------------------------------------------------------------------------- describe

def test_describe_pod_with_events_and_hidden_last_applied(mk, ns, tmp_path):
    pod = POD.format(name="p1", app="p").replace(
        "  labels:", "  annotations: {team: blue}\n  labels:")
    assert mk("apply", "-f", str(write(tmp_path, "p.yaml", pod)), "-n", ns).code == 0
    event = f"""\
apiVersion: v1
kind: Event
metadata: {{name: p1.abc}}
involvedObject: {{kind: Pod, name: p1, namespace: {ns}, apiVersion: v1}}
reason: Scheduled
message: Successfully assigned {ns}/p1 to node-1
type: Normal
source: {{component: default-scheduler}}
firstTimestamp: "2026-01-01T00:00:00Z"
lastTimestamp: "2026-01-01T00:00:00Z"
count: 1
"""
    assert mk("create", "-f", str(write(tmp_path, "ev.yaml", event)), "-n", ns).code == 0

    r = mk("describe", "pod", "p1", "-n", ns)
    assert r.code == 0, r.err
    assert r.out.startswith(f"Name:             p1\nNamespace:        {ns}\n")
    assert "Annotations:      team: blue\n" in r.out
    assert "last-applied" not in r.out
    assert re.search(r"\nContainers:\n  c:\n    Image: +busybox:1\n", r.out)
    events = r.out[r.out.index("Events:"):].splitlines()
    assert events[1].split() == ["Type", "Reason", "Age", "From", "Message"]
    assert events[2].split() == ["----", "------", "----", "----", "-------"]
    assert events[3].split()[:2] == ["Normal", "Scheduled"]
    assert events[3].endswith(f"default-scheduler  Successfully assigned {ns}/p1 to node-1")

    quiet = mk("describe", "pod/p1", "-n", ns, "--show-events=false")
    assert "Events:" not in quiet.out


def test_describe_deployment_service_and_generic(mk, ns, tmp_path):
    svc = ("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n"
           "  selector: {app: web}\n  ports: [{port: 80, targetPort: 8080}]\n")
    lease = ("apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {name: lock}\n"
             "spec: {holderIdentity: me, leaseDurationSeconds: 15}\n")
    mk("apply", "-f", str(write(tmp_path, "all.yaml", "---\n".join([DEPLOYMENT, svc, lease]))),
       "-n", ns)
    deploy = mk("describe", "deployment", "web", "-n", ns).out
    assert "Replicas:               2 desired | 0 updated | 0 total | 0 available" in deploy
    assert "StrategyType:           RollingUpdate" in deploy
    assert re.search(r"\n    Environment:\n      MODE: +blue\n", deploy)
    service = mk("describe", "svc", "web", "-n", ns).out
    assert "Selector:          app=web\n" in service or "Selector:" in service
    assert "TargetPort:" in service and "8080/TCP" in service
    generic = mk("describe", "lease", "lock", "-n", ns).out
    assert "Spec:\n  Holder Identity:         me\n" in generic
    assert "Events:" in generic


def test_describe_secret_shows_sizes_not_values(mk, ns, tmp_path):
    secret = ("apiVersion: v1\nkind: Secret\nmetadata: {name: creds}\ntype: Opaque\ndata:\n"
              f"  password: {base64.b64encode(b'hunter2').decode()}\n"
              f"  user: {base64.b64encode(b'bob').decode()}\n")
    mk("apply", "-f", str(write(tmp_path, "s.yaml", secret)), "-n", ns)
    r = mk("describe", "secret", "creds", "-n", ns)
    assert r.code == 0
    assert "\nData\n====\npassword:  7 bytes\nuser:      3 bytes\n" in r.out
    assert "hunter2" not in r.out and "aHVudGVyMg" not in r.out and "last-applied" not in r.out


def test_describe_missing_and_no_match(mk, ns):
    r = mk("describe", "pod", "ghost", "-n", ns)
    assert (r.code, r.err) == (1, 'Error from server (NotFound): pods "ghost" not found\n')
    none = mk("describe", "pods", "-l", "a=b", "-n", ns)
    assert none.code == 0 and none.err == f"No resources found in {ns} namespace.\n"


# --------------------------------------------------------------------------- apply / create

def test_apply_twice_created_then_unchanged(mk, ns, tmp_path):
    path = write(tmp_path, "d.yaml", DEPLOYMENT)
    first = mk("apply", "-f", str(path), "-n", ns)
    assert (first.code, first.out) == (0, "deployment.apps/web created\n")
    second = mk("apply", "-f", str(path), "-n", ns)
    assert (second.code, second.out) == (0, "deployment.apps/web unchanged\n")

    live = json.loads(mk("get", "deploy", "web", "-n", ns, "-o", "json").out)
    recorded = live["metadata"]["annotations"][LAST_APPLIED]
    assert recorded.endswith("}\n")
    assert json.loads(recorded)["metadata"] == {"annotations": {}, "labels": {"app": "web"},
                                                "name": "web", "namespace": ns}


def test_apply_removes_field_dropped_from_manifest(mk, ns, tmp_path):
    path = write(tmp_path, "d.yaml", DEPLOYMENT)
    mk("apply", "-f", str(path), "-n", ns)
    changed = (DEPLOYMENT.replace('        env: [{name: MODE, value: "blue"}]\n', "")
               .replace("  labels: {app: web}\nspec:", "spec:")
               .replace("replicas: 2", "replicas: 3"))
    path.write_text(changed)
    r = mk("apply", "-f", str(path), "-n", ns)
    assert r.out == "deployment.apps/web configured\n"
    live = json.loads(mk("get", "deploy", "web", "-n", ns, "-o", "json").out)
    container = live["spec"]["template"]["spec"]["containers"][0]
    assert "env" not in container
    assert "labels" not in live["metadata"]
    assert live["spec"]["replicas"] == 3


def test_apply_folder_stdin_and_list(mk, ns, tmp_path):
    folder = tmp_path / "manifests"
    (folder / "nested").mkdir(parents=True)
    write(folder, "b.yaml", POD.format(name="pb", app="x"))
    write(folder, "a.yml", POD.format(name="pa", app="x") + "---\n---\n")
    write(folder, "notes.txt", "not a manifest")
    write(folder / "nested", "c.json", json.dumps(yaml.safe_load(POD.format(name="pc", app="x"))))
    r = mk("apply", "-f", str(folder), "-n", ns)
    assert r.out == "pod/pa created\npod/pb created\n"
    r = mk("apply", "-f", str(folder), "-R", "-n", ns)
    assert r.out == "pod/pa unchanged\npod/pb unchanged\npod/pc created\n"
    items = [yaml.safe_load(POD.format(name=n, app="x")) for n in ("pd", "pe")]
    listed = yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items})
    r = mk("apply", "-f", "-", "-n", ns, stdin=listed)
    assert r.out == "pod/pd created\npod/pe created\n"


def test_yaml_error_names_the_file(mk, ns, tmp_path):
    bad = write(tmp_path, "broken.yaml", "kind: Pod\nmetadata: [oops\n")
    r = mk("apply", "-f", str(bad), "-n", ns)
    assert r.code == 1 and r.out == ""
    assert r.err.startswith(f"error: error parsing {bad}: error converting YAML to JSON: yaml: ")
    assert len(r.err.splitlines()) == 1
    missing = mk("apply", "-f", str(tmp_path / "nope.yaml"))
    assert missing.err == f'error: the path "{tmp_path / "nope.yaml"}" does not exist\n'


def test_create_duplicate_is_already_exists(mk, ns, tmp_path):
    path = write(tmp_path, "d.yaml", DEPLOYMENT)
    assert mk("create", "-f", str(path), "-n", ns).out == "deployment.apps/web created\n"
    again = mk("create", "-f", str(path), "-n", ns)
    assert again.code == 1 and again.out == ""
    assert again.err == (f'Error from server (AlreadyExists): error when creating "{path}": '
                         f'deployments.apps "web" already exists\n')
    live = json.loads(mk("get", "deploy", "web", "-n", ns, "-o", "json").out)
    assert LAST_APPLIED not in (live["metadata"].get("annotations") or {})


KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not on PATH")


def kubectl(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), *args],
                          capture_output=True, text=True, timeout=120)


@needs_kubectl
def test_apply_interop_kubectl_then_mkctl(mk, kubeconfig, ns, tmp_path):
    path = write(tmp_path, "d.yaml", DEPLOYMENT)
    done = kubectl(kubeconfig, "apply", "-f", str(path), "-n", ns)
    assert done.returncode == 0, done.stderr
    assert mk("apply", "-f", str(path), "-n", ns).out == "deployment.apps/web unchanged\n"
    path.write_text(DEPLOYMENT.replace('        env: [{name: MODE, value: "blue"}]\n', ""))
    assert mk("apply", "-f", str(path), "-n", ns).out == "deployment.apps/web configured\n"
    live = json.loads(mk("get", "deploy", "web", "-n", ns, "-o", "json").out)
    assert "env" not in live["spec"]["template"]["spec"]["containers"][0]
    again = kubectl(kubeconfig, "apply", "-f", str(path), "-n", ns)
    assert again.stdout == "deployment.apps/web unchanged\n", again.stderr


@needs_kubectl
def test_apply_interop_mkctl_then_kubectl(mk, kubeconfig, ns, tmp_path):
    path = write(tmp_path, "d.yaml", DEPLOYMENT)
    assert mk("apply", "-f", str(path), "-n", ns).out == "deployment.apps/web created\n"
    same = kubectl(kubeconfig, "apply", "-f", str(path), "-n", ns)
    assert same.stdout == "deployment.apps/web unchanged\n", same.stderr
    path.write_text(DEPLOYMENT.replace("  labels: {app: web}\nspec:", "spec:"))
    changed = kubectl(kubeconfig, "apply", "-f", str(path), "-n", ns)
    assert changed.stdout == "deployment.apps/web configured\n", changed.stderr
    live = json.loads(mk("get", "deploy", "web", "-n", ns, "-o", "json").out)
    assert "labels" not in live["metadata"]
    assert mk("apply", "-f", str(path), "-n", ns).out == "deployment.apps/web unchanged\n"


@needs_kubectl
def test_kubectl_and_mkctl_store_the_same_last_applied(mk, kubeconfig, ns, tmp_path):
    other = f"{ns}-k"
    assert mk("create", "namespace", other).code == 0
    path = write(tmp_path, "d.yaml", DEPLOYMENT)
    mk("apply", "-f", str(path), "-n", ns)
    assert kubectl(kubeconfig, "apply", "-f", str(path), "-n", other).returncode == 0
    ours = json.loads(mk("get", "deploy", "web", "-n", ns, "-o", "json").out)
    theirs = json.loads(mk("get", "deploy", "web", "-n", other, "-o", "json").out)
    a = ours["metadata"]["annotations"][LAST_APPLIED].replace(f'"{ns}"', '"NS"')
    b = theirs["metadata"]["annotations"][LAST_APPLIED].replace(f'"{other}"', '"NS"')
    assert a == b
    mk("delete", "namespace", other)


# --------------------------------------------------------------------------- delete

CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels: {{app: {app}}}\n"


def test_delete_by_name_file_and_selector(mk, ns, tmp_path):
    maps = "---\n".join(CONFIGMAP.format(name=n, app=a) for n, a in
                        (("c1", "x"), ("c2", "x"), ("c3", "y"), ("c4", "z")))
    path = write(tmp_path, "maps.yaml", maps)
    mk("apply", "-f", str(path), "-n", ns)

    r = mk("delete", "configmap", "c1", "-n", ns, "--grace-period=0")
    assert (r.code, r.out) == (0, 'configmap "c1" deleted\n')
    r = mk("delete", "cm", "-l", "app=x", "-n", ns)
    assert r.out == 'configmap "c2" deleted\n'
    r = mk("delete", "configmaps/c3", "-n", ns, "--cascade=background")
    assert r.out == 'configmap "c3" deleted\n'
    r = mk("delete", "-f", str(path), "-n", ns)
    assert r.code == 1 and r.out == 'configmap "c4" deleted\n'
    assert r.err.splitlines() == [
        f'Error from server (NotFound): error when deleting "{path}": configmaps "{n}" not found'
        for n in ("c1", "c2", "c3")]
    quiet = mk("delete", "-f", str(path), "-n", ns, "--ignore-not-found")
    assert (quiet.code, quiet.out, quiet.err) == (0, "", "")
    none = mk("delete", "configmaps", "--all", "-n", ns)
    assert (none.code, none.out) == (0, "No resources found\n")
    bare = mk("delete", "configmaps", "-n", ns)
    assert bare.err == "error: resource(s) were provided, but no name was specified\n"
    pod = write(tmp_path, "p.yaml", POD.format(name="p1", app="p"))
    mk("apply", "-f", str(pod), "-n", ns)
    assert mk("delete", "pod", "p1", "-n", ns, "--grace-period=0").code == 0
    assert mk("get", "pod", "p1", "-n", ns).code == 1


# --------------------------------------------------------------------------- label / annotate

def test_label_and_annotate_with_overwrite_rules(mk, ns, tmp_path):
    mk("apply", "-f", str(write(tmp_path, "p.yaml", POD.format(name="p1", app="p"))), "-n", ns)
    assert mk("label", "pod", "p1", "tier=web", "-n", ns).out == "pod/p1 labeled\n"
    refused = mk("label", "pod", "p1", "tier=db", "-n", ns)
    assert (refused.code, refused.err) == (
        1, "error: 'tier' already has a value (web), and --overwrite is false\n")
    assert mk("label", "pod", "p1", "tier=db", "--overwrite", "-n", ns).out == "pod/p1 labeled\n"
    assert mk("label", "pod/p1", "tier=db", "-n", ns).out == "pod/p1 not labeled\n"
    assert mk("label", "pod", "p1", "tier-", "-n", ns).out == "pod/p1 unlabeled\n"
    labels = json.loads(mk("get", "pod", "p1", "-n", ns, "-o", "json").out)["metadata"]["labels"]
    assert labels == {"app": "p"}

    assert mk("annotate", "pods", "--all", "note=hi", "-n", ns).out == "pod/p1 annotated\n"
    refused = mk("annotate", "pod", "p1", "note=ho", "-n", ns)
    assert refused.err == ("error: --overwrite is false but found the following declared "
                           "annotation(s): 'note' already has a value (hi)\n")
    mk("annotate", "pod", "p1", "note=ho", "--overwrite", "-n", ns)
    live = json.loads(mk("get", "pod", "p1", "-n", ns, "-o", "json").out)
    assert live["metadata"]["annotations"]["note"] == "ho"
    assert mk("annotate", "pod", "p1", "note-", "-n", ns).code == 0
    usage = mk("label", "pod", "p1", "-n", ns)
    assert usage.err == "error: at least one label update is required\n"


# --------------------------------------------------------------------------- cluster level

def test_api_resources(mk, ns, tmp_path):
    r = mk("api-resources")
    lines = assert_aligned(r.out)
    assert lines[0].split() == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    rows: dict[str, list[list[str]]] = {}
    for line in lines[1:]:
        rows.setdefault(line.split()[0], []).append(line.split())
    # a name two groups serve is listed once per group, sorted by group as kubectl does:
    # core first, then metrics.k8s.io's (no short names)
    assert rows["pods"] == [["pods", "po", "v1", "true", "Pod"],
                            ["pods", "metrics.k8s.io/v1beta1", "true", "PodMetrics"]]
    assert rows["nodes"] == [["nodes", "no", "v1", "false", "Node"],
                             ["nodes", "metrics.k8s.io/v1beta1", "false", "NodeMetrics"]]
    assert rows["deployments"] == [["deployments", "deploy", "apps/v1", "true", "Deployment"]]
    assert rows["namespaces"][0][-2:] == ["false", "Namespace"]
    assert not any("/" in name for name in rows)
    names = mk("api-resources", "-o", "name").out.splitlines()
    assert {"deployments.apps", "pods", "pods.metrics.k8s.io", "nodes.metrics.k8s.io"} <= set(names)
    # a bare name still means the core resource, as kubectl prefers the core group
    mk("apply", "-f", str(write(tmp_path, "p.yaml", POD.format(name="p1", app="p"))), "-n", ns)
    for name in ("pods", "pod", "po"):
        got = mk("get", name, "-n", ns, "-o", "name")
        assert (got.code, got.out) == (0, "pod/p1\n"), got.err
    got = json.loads(mk("get", "pods", "p1", "-n", ns, "-o", "json").out)
    assert (got["apiVersion"], got["kind"]) == ("v1", "Pod")


def test_version_and_cluster_info(mk, apiserver):
    r = mk("version")
    lines = r.out.splitlines()
    assert r.code == 0 and lines[0].startswith("Client Version: v")
    assert lines[1].startswith("Server Version: v1.32")
    info = mk("cluster-info")
    assert info.out.startswith(f"Kubernetes control plane is running at {apiserver.url}\n")


def test_errors_are_one_line(mk, ns):
    r = mk("get", "foo")
    assert (r.code, r.out) == (1, "")
    assert r.err == 'error: the server doesn\'t have a resource type "foo"\n'
    r = mk("get", "pods", "x", "-n", ns)
    assert (r.code, r.err) == (1, 'Error from server (NotFound): pods "x" not found\n')
    r = mk("get", "pods", "-o", "table")
    assert r.err == ('error: unable to match a printer suitable for the output format "table", '
                     'allowed formats are: json,name,wide,yaml\n')


def test_unreachable_server_and_bad_kubeconfig(kubeconfig, tmp_path):
    with socket.socket() as s:  # a port nobody listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    doc = yaml.safe_load(kubeconfig.read_text())
    doc["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    closed = write(tmp_path, "kubeconfig", yaml.safe_dump(doc))
    r = run_cli(closed, "get", "pods")
    assert r.code == 1 and r.out == ""
    assert r.err == (f"The connection to the server 127.0.0.1:{port} was refused - did you "
                     f"specify the right host or port?\n")
    missing = run_cli(tmp_path / "none", "get", "pods")
    assert missing.code == 1 and missing.err.startswith("error: kubeconfig ")
    assert "Traceback" not in missing.err and len(missing.err.splitlines()) == 1


@needs_kubectl
def test_get_jsonpath_and_custom_columns_match_kubectl(mk, kubeconfig, ns, tmp_path):
    manifest = write(tmp_path, "pods.yaml", POD.format(name="jp-a", app="jp") + "---\n"
                     + POD.format(name="jp-bb", app="jp"))
    mk("apply", "-f", str(manifest), "-n", ns)
    cases = [
        ["get", "pods", "-o", 'jsonpath={range .items[*]}{.metadata.name}{"\\t"}'
                              '{.metadata.labels.app}{"\\n"}{end}'],
        ["get", "pods", "-o", "jsonpath={.items[*].metadata.name} {.items[-1].kind}"],
        ["get", "pods", "-o", 'jsonpath={.items[?(@.metadata.name=="jp-a")].metadata.name}'],
        ["get", "pod", "jp-bb", "-o", "jsonpath={.kind}/{.metadata.name} {..app}"],
        ["get", "pods", "-o", "custom-columns=NAME:.metadata.name,APP:metadata.labels.app,"
                              "NODE:.spec.nodeName,C:.spec.containers[*].name"],
        ["get", "pods", "--no-headers", "-o", "custom-columns=N:.metadata.name"],
    ]
    for args in cases:
        ours = mk(*args, "-n", ns)
        theirs = kubectl(kubeconfig, *args, "-n", ns)
        assert (ours.code, ours.out) == (theirs.returncode, theirs.stdout), args
        assert theirs.stdout.strip()
    for bad in ("jsonpath={.items[", "jsonpath={.items[9]}", "jsonpath"):
        ours = mk("get", "pods", "-n", ns, "-o", bad)
        theirs = kubectl(kubeconfig, "get", "pods", "-n", ns, "-o", bad)
        assert ours.code == theirs.returncode == 1 and ours.out == ""
        assert ours.err.splitlines()[0] == theirs.stderr.splitlines()[0], bad
