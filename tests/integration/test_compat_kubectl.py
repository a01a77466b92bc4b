"""The real ``kubectl`` (1.32) against our API server: discovery, server-side tables,
client-side apply (create, unchanged, configured with a removed field), strict field
validation, scale, label, patch, delete and raw paths."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


@pytest.fixture
def kubectl(kubeconfig, tmp_path):
    cache = tmp_path / "kube-cache"

    def run(*args: str, stdin: str | None = None, check: bool = True
            ) -> subprocess.CompletedProcess:
        r = subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache),
                            *args], input=stdin, capture_output=True, text=True, timeout=120)
        if check:
            assert r.returncode == 0, f"kubectl {' '.join(args)}: {r.stderr}"
        return r

    return run


@pytest.fixture
def kns(kubectl) -> str:
    name = f"kc-{uuid.uuid4().hex[:8]}"
    out = kubectl("create", "-f", "-", stdin=f"apiVersion: v1\nkind: Namespace\n"
                                              f"metadata:\n  name: {name}\n")
    assert out.stdout.strip() == f"namespace/{name} created"
    return name


def configmap(kubectl, ns: str, name: str, **data: str) -> None:
    """A ConfigMap created from JSON (``kubectl create configmap`` sends protobuf: see
    test_compat_kubectl_protobuf.py)."""
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": data}
    out = kubectl("create", "-n", ns, "-f", "-", stdin=json.dumps(body))
    assert out.stdout.strip() == f"configmap/{name} created"


def header(output: str) -> list[str]:
    return output.splitlines()[0].split()


def rows(output: str) -> list[list[str]]:
    return [line.split() for line in output.splitlines()[1:]]


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
    team: blue
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx:1.27
        env:
        - name: MODE
          value: a
        - name: DEBUG
          value: "1"
        ports:
        - containerPort: 80
"""


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# --- read-only ---------------------------------------------------------------------------


def test_get_raw_version(kubectl):
    doc = json.loads(kubectl("get", "--raw", "/version").stdout)
    assert doc["gitVersion"].startswith("v1.32")


def test_get_raw_resource_path(kubectl):
    doc = json.loads(kubectl("get", "--raw", "/api/v1/namespaces/default").stdout)
    assert doc["kind"] == "Namespace" and doc["metadata"]["name"] == "default"


def test_api_resources(kubectl):
    out = kubectl("api-resources").stdout
    assert header(out) == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    table: dict[str, list[str]] = {}
    for r in rows(out):  # the first of a name (metrics.k8s.io has "nodes" and "pods" too)
        table.setdefault(r[0], r)
    assert table["deployments"] == ["deployments", "deploy", "apps/v1", "true", "Deployment"]
    assert table["pods"] == ["pods", "po", "v1", "true", "Pod"]
    assert table["namespaces"] == ["namespaces", "ns", "v1", "false", "Namespace"]
    assert table["leases"] == ["leases", "coordination.k8s.io/v1", "true", "Lease"]
    out = kubectl("api-resources", "--namespaced=false", "-o", "name").stdout.split()
    assert "namespaces" in out and "nodes" in out and "pods" not in out


def test_get_tables_have_kubernetes_columns(kubectl, kns, tmp_path):
    kubectl("apply", "-n", kns, "-f", write(tmp_path, "d.yaml", DEPLOYMENT))
    kubectl("run", "-n", kns, "solo", "--image=busybox:1.36", "--labels=run=solo")

    out = kubectl("get", "pods", "-n", kns).stdout
    assert header(out) == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert rows(out)[0][:4] == ["solo", "0/1", "Pending", "0"]

    out = kubectl("get", "deployments", "-n", kns).stdout
    assert header(out) == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert rows(out)[0][:4] == ["web", "0/2", "0", "0"]

    out = kubectl("get", "namespaces").stdout
    assert header(out) == ["NAME", "STATUS", "AGE"]
    table = {r[0]: r for r in rows(out)}
    assert table[kns][1] == "Active" and table["default"][1] == "Active"

    out = kubectl("get", "pods", "-n", kns, "-o", "wide").stdout
    assert header(out)[:7] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]

    out = kubectl("get", "pods", "-n", kns, "--show-labels").stdout
    assert header(out)[-1] == "LABELS" and rows(out)[0][-1] == "run=solo"

    out = kubectl("get", "pods", "-n", kns, "-l", "run=nobody").stdout + \
        kubectl("get", "pods", "-n", kns, "-l", "run=nobody").stderr
    assert "No resources found" in out


def test_get_missing_is_not_found(kubectl, kns):
    r = kubectl("get", "pod", "missing", "-n", kns, check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == 'Error from server (NotFound): pods "missing" not found'


# --- writes ------------------------------------------------------------------------------


def test_apply_twice_then_modified(kubectl, kns, tmp_path):
    path = write(tmp_path, "d.yaml", DEPLOYMENT)
    assert kubectl("apply", "-n", kns, "-f", path).stdout.strip() == \
        "deployment.apps/web created"
    assert kubectl("apply", "-n", kns, "-f", path).stdout.strip() == \
        "deployment.apps/web unchanged"

    modified = DEPLOYMENT.replace("    team: blue\n", "").replace(
        "        - name: DEBUG\n          value: \"1\"\n", "").replace("replicas: 2", "replicas: 3")
    assert modified != DEPLOYMENT
    path = write(tmp_path, "d2.yaml", modified)
    assert kubectl("apply", "-n", kns, "-f", path).stdout.strip() == \
        "deployment.apps/web configured"

    obj = yaml.safe_load(kubectl("get", "deployment", "web", "-n", kns, "-o", "yaml").stdout)
    assert obj["kind"] == "Deployment" and obj["apiVersion"] == "apps/v1"
    assert obj["metadata"]["labels"] == {"app": "web"}
    assert obj["spec"]["replicas"] == 3
    env = obj["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "MODE", "value": "a"}]
    assert obj["metadata"]["generation"] == 2
    last = json.loads(obj["metadata"]["annotations"][
        "kubectl.kubernetes.io/last-applied-configuration"])
    assert last["spec"]["replicas"] == 3

    assert kubectl("apply", "-n", kns, "-f", path).stdout.strip() == \
        "deployment.apps/web unchanged"


def test_get_output_yaml_and_json(kubectl, kns):
    configmap(kubectl, kns, "cfg", k="v")
    obj = yaml.safe_load(kubectl("get", "configmap", "cfg", "-n", kns, "-o", "yaml").stdout)
    assert obj["kind"] == "ConfigMap" and obj["data"] == {"k": "v"}
    assert obj["metadata"]["namespace"] == kns and obj["metadata"]["uid"]
    lst = json.loads(kubectl("get", "configmaps", "-n", kns, "-o", "json").stdout)
    assert lst["kind"] == "List" and [i["metadata"]["name"] for i in lst["items"]] == ["cfg"]
    name = kubectl("get", "configmap", "cfg", "-n", kns, "-o",
                   "jsonpath={.data.k}").stdout
    assert name == "v"


def test_create_with_unknown_field_fails_strict_validation(kubectl, kns, tmp_path):
    bad = DEPLOYMENT.replace("  replicas: 2\n", "  replicas: 2\n  foo: bar\n")
    r = kubectl("create", "-n", kns, "-f", write(tmp_path, "bad.yaml", bad), check=False)
    assert r.returncode == 1
    assert 'unknown field "spec.foo"' in r.stderr
    assert "Error from server (BadRequest)" in r.stderr
    r = kubectl("get", "deployment", "web", "-n", kns, check=False)
    assert "NotFound" in r.stderr

    r = kubectl("apply", "-n", kns, "-f", write(tmp_path, "bad2.yaml", bad), check=False)
    assert r.returncode == 1 and 'unknown field "spec.foo"' in r.stderr

    # Without validation it goes through, with a warning for the field.
    r = kubectl("create", "-n", kns, "--validate=false", "-f",
                write(tmp_path, "bad3.yaml", bad))
    assert r.stdout.strip() == "deployment.apps/web created"


def test_server_field_validation_through_raw_create(kubectl, kns, tmp_path):
    """kubectl turns YAML into JSON itself, so duplicate keys reach the server only in a raw
    body; its Warning headers are parsed and printed by kubectl."""
    path = write(tmp_path, "dup.json", '{"apiVersion":"v1","kind":"ConfigMap","metadata":'
                                       '{"name":"dj","name":"dj"},"spec":{"x":1}}')
    url = f"/api/v1/namespaces/{kns}/configmaps"
    r = kubectl("create", "--raw", url + "?fieldValidation=Strict", "-f", path, check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == ('Error from server (BadRequest): strict decoding error: '
                                'duplicate field "metadata.name"')
    r = kubectl("create", "--raw", url + "?fieldValidation=Warn", "-f", path)
    assert json.loads(r.stdout)["metadata"]["name"] == "dj"
    assert r.stderr.splitlines() == ['Warning: duplicate field "metadata.name"',
                                     'Warning: unknown field "spec"']


def test_scale_deployment(kubectl, kns, tmp_path):
    kubectl("apply", "-n", kns, "-f", write(tmp_path, "d.yaml", DEPLOYMENT))
    assert kubectl("scale", "deployment", "web", "-n", kns, "--replicas=5").stdout.strip() == \
        "deployment.apps/web scaled"
    out = kubectl("get", "deployment", "web", "-n", kns, "-o", "jsonpath={.spec.replicas}")
    assert out.stdout == "5"
    r = kubectl("scale", "deployment", "web", "-n", kns, "--replicas=1",
                "--current-replicas=4", check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == "error: Expected replicas to be 4, was 5"


def test_label(kubectl, kns):
    kubectl("run", "-n", kns, "p", "--image=busybox:1.36")
    assert kubectl("label", "pod", "p", "-n", kns, "env=prod").stdout.strip() == "pod/p labeled"
    labels = json.loads(kubectl("get", "pod", "p", "-n", kns, "-o",
                                "jsonpath={.metadata.labels}").stdout)
    assert labels == {"run": "p", "env": "prod"}
    r = kubectl("label", "pod", "p", "-n", kns, "env=dev", check=False)
    assert r.returncode == 1 and "already has a value (prod)" in r.stderr
    kubectl("label", "pod", "p", "-n", kns, "env=dev", "--overwrite")
    assert kubectl("label", "pod", "p", "-n", kns, "env-").stdout.strip() == "pod/p unlabeled"
    labels = json.loads(kubectl("get", "pod", "p", "-n", kns, "-o",
                                "jsonpath={.metadata.labels}").stdout)
    assert labels == {"run": "p"}
    r = kubectl("label", "pod", "p", "-n", kns, "bad key=x", check=False)
    assert r.returncode == 1


def test_patch_json_merge_and_strategic(kubectl, kns, tmp_path):
    kubectl("apply", "-n", kns, "-f", write(tmp_path, "d.yaml", DEPLOYMENT))
    out = kubectl("patch", "deployment", "web", "-n", kns, "--type=json", "-p",
                  '[{"op":"replace","path":"/spec/template/spec/containers/0/image",'
                  '"value":"nginx:1.28"}]')
    assert out.stdout.strip() == "deployment.apps/web patched"
    out = kubectl("patch", "deployment", "web", "-n", kns, "--type=merge", "-p",
                  '{"metadata":{"labels":{"team":null}}}')
    assert out.stdout.strip() == "deployment.apps/web patched"
    out = kubectl("patch", "deployment", "web", "-n", kns, "-p",
                  '{"spec":{"template":{"spec":{"containers":[{"name":"web","env":'
                  '[{"name":"MODE","value":"b"}]}]}}}}')
    assert out.stdout.strip() == "deployment.apps/web patched"
    obj = json.loads(kubectl("get", "deployment", "web", "-n", kns, "-o", "json").stdout)
    c = obj["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "nginx:1.28"
    assert c["env"] == [{"name": "MODE", "value": "b"}, {"name": "DEBUG", "value": "1"}]
    assert obj["metadata"]["labels"] == {"app": "web"}
    out = kubectl("patch", "deployment", "web", "-n", kns, "--type=merge", "-p",
                  '{"metadata":{"labels":{"app":"web"}}}')
    assert out.stdout.strip() == "deployment.apps/web patched (no change)"
    r = kubectl("patch", "deployment", "web", "-n", kns, "--type=json", "-p",
                '[{"op":"test","path":"/spec/replicas","value":9}]', check=False)
    assert r.returncode == 1 and "test failed" in r.stderr


def test_delete(kubectl, kns, tmp_path):
    path = write(tmp_path, "d.yaml", DEPLOYMENT)
    kubectl("apply", "-n", kns, "-f", path)
    configmap(kubectl, kns, "c1")
    assert kubectl("delete", "-n", kns, "-f", path).stdout.strip() == \
        'deployment.apps "web" deleted'
    assert kubectl("delete", "configmap", "c1", "-n", kns).stdout.strip() == \
        'configmap "c1" deleted'
    r = kubectl("get", "deployment", "web", "-n", kns, check=False)
    assert 'deployments.apps "web" not found' in r.stderr
    r = kubectl("delete", "configmap", "c1", "-n", kns, check=False)
    assert r.returncode == 1 and 'configmaps "c1" not found' in r.stderr
    # An unbound pod goes at once, so --wait returns.
    kubectl("run", "-n", kns, "gone", "--image=busybox:1.36")
    assert kubectl("delete", "pod", "gone", "-n", kns, "--timeout=30s").stdout.strip() == \
        'pod "gone" deleted'


def test_delete_by_label_selector(kubectl, kns):
    for name, tier in (("a", "x"), ("b", "x"), ("c", "y")):
        configmap(kubectl, kns, name)
        kubectl("label", "configmap", name, "-n", kns, f"tier={tier}")
    out = kubectl("delete", "configmaps", "-n", kns, "-l", "tier=x").stdout
    assert sorted(out.splitlines()) == ['configmap "a" deleted', 'configmap "b" deleted']
    out = kubectl("get", "configmaps", "-n", kns, "-o", "name").stdout.split()
    assert out == ["configmap/c"]


def test_create_in_terminating_namespace_is_forbidden(kubectl, kns):
    out = kubectl("delete", "namespace", kns, "--wait=false").stdout.strip()
    assert out == f'namespace "{kns}" deleted'
    r = kubectl("create", "-n", kns, "-f", "-", check=False,
                stdin='{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"late"}}')
    assert r.returncode == 1
    assert "Error from server (Forbidden)" in r.stderr
    assert "because it is being terminated" in r.stderr
    out = kubectl("get", "namespace", kns).stdout
    assert rows(out)[0][:2] == [kns, "Terminating"]


@pytest.mark.parametrize("args", [("namespace", "NAME"), ("configmap", "NAME", "-n", "default"),
                                  ("secret", "generic", "NAME", "-n", "default",
                                   "--from-literal=a=b")])
def test_imperative_create_commands(kubectl, args):
    name = f"imp-{uuid.uuid4().hex[:6]}"
    args = [name if a == "NAME" else a for a in args]
    r = kubectl("create", *args, check=False)
    assert r.returncode == 0, r.stderr


def test_get_watch_prints_rows_for_events(kubectl, kubeconfig, kns, tmp_path):
    """``kubectl get -w`` lists (as a Table), then watches from the list's version and prints
    one row per event; the server-side Table columns carry through the watch."""
    configmap(kubectl, kns, "before", a="1")
    proc = subprocess.Popen(
        [KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "w-cache"),
         "get", "configmaps", "-n", kns, "-w", "--request-timeout=60s"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().split() == ["NAME", "DATA", "AGE"]
        assert proc.stdout.readline().split()[:2] == ["before", "1"]
        configmap(kubectl, kns, "during", x="1", y="2")
        assert proc.stdout.readline().split()[:2] == ["during", "2"]
        kubectl("delete", "configmap", "during", "-n", kns)
        assert proc.stdout.readline().split()[:2] == ["during", "2"]
    finally:
        proc.terminate()
        proc.wait(10)
