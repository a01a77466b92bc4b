"""kubectl 1.32's typed generators (``kubectl create deployment|job|configmap|...``) send
``application/vnd.kubernetes.protobuf`` bodies. Each one here is checked twice: what the
server stored holds everything kubectl's own JSON rendering of the object
(``--dry-run=client -o json``) holds, and it is the object the same JSON, sent as JSON,
makes: protobuf bodies take exactly the JSON path once decoded."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid

import pytest

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")

IMAGE = "--image=minik8s/busybox:1.35"


@pytest.fixture
def kubectl(kubeconfig, tmp_path):
    def run(*args: str, stdin: str | None = None, check: bool = True
            ) -> subprocess.CompletedProcess:
        r = subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir",
                            str(tmp_path / "kube-cache"), *args],
                           input=stdin, capture_output=True, text=True, timeout=120)
        if check:
            assert r.returncode == 0, f"kubectl {' '.join(args)}: {r.stderr}"
        return r
    return run


@pytest.fixture
def ns(kubectl):
    name = f"pb-{uuid.uuid4().hex[:8]}"
    kubectl("create", "-f", "-", stdin=json.dumps(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


# (resource for `get`, the `kubectl create` arguments with NAME for the object's name)
GENERATORS = [
    ("namespace", ("namespace", "NAME")),
    ("configmap", ("configmap", "NAME", "--from-literal=a=b", "--from-literal=empty=")),
    ("secret", ("secret", "generic", "NAME", "--from-literal=a=b", "--from-literal=c=d")),
    ("service", ("service", "clusterip", "NAME", "--tcp=80:8080")),
    ("deployment", ("deployment", "NAME", IMAGE, "--replicas=2")),
    ("job", ("job", "NAME", IMAGE, "--", "sleep", "1")),
    ("cronjob", ("cronjob", "NAME", IMAGE, "--schedule=*/5 * * * *", "--", "echo", "hi")),
    ("serviceaccount", ("serviceaccount", "NAME")),
]


def contains(actual, expected, path="") -> list[str]:
    """Where ``actual`` lacks or differs from something ``expected`` has (nulls and empty
    objects, which JSON's omitempty makes the same as absent, are skipped)."""
    if expected == {} and actual is None:
        return []
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: {actual!r} is not an object"]
        return [p for k, v in expected.items() if v is not None
                for p in contains(actual.get(k), v, f"{path}.{k}")]
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{path}: {actual!r} != {expected!r}"]
        return [p for i, (a, e) in enumerate(zip(actual, expected))
                for p in contains(a, e, f"{path}[{i}]")]
    return [] if actual == expected else [f"{path}: {actual!r} != {expected!r}"]


def normalized(obj: dict) -> str:
    """The object with what differs between two creations of it taken out."""
    obj = json.loads(json.dumps(obj))
    md = obj["metadata"]
    name, uid = md["name"], md["uid"]
    for key in ("uid", "resourceVersion", "creationTimestamp", "managedFields"):
        md.pop(key, None)
    for key in ("clusterIP", "clusterIPs"):  # allocated per Service
        obj.get("spec", {}).pop(key, None)
    return json.dumps(obj, sort_keys=True).replace(uid, "UID").replace(name, "NAME")


@pytest.mark.parametrize("resource, args", GENERATORS, ids=[g[0] for g in GENERATORS])
def test_typed_create_matches_kubectls_json(kubectl, ns, resource, args):
    suffix = uuid.uuid4().hex[:6]
    name, twin = f"proto-{suffix}", f"json-{suffix}"
    where = () if resource == "namespace" else ("-n", ns)
    args = tuple(name if a == "NAME" else a for a in args)
    head, tail = (args[:args.index("--")], args[args.index("--"):]) if "--" in args \
        else (args, ())

    def create(*flags: str) -> subprocess.CompletedProcess:  # flags before a command's "--"
        return kubectl("create", *head, *where, *flags, *tail)

    rendered = json.loads(create("--dry-run=client", "-o", "json").stdout)
    r = create("-v=8")
    assert "Content-Type: application/vnd.kubernetes.protobuf" in r.stderr  # the body format
    assert r.stdout.strip().endswith(f"/{name} created")
    stored = json.loads(kubectl("get", resource, name, *where, "-o", "json").stdout)
    assert contains(stored, rendered) == []

    as_json = json.loads(json.dumps(rendered).replace(name, twin))
    kubectl("create", *where, "-f", "-", stdin=json.dumps(as_json))
    stored_twin = json.loads(kubectl("get", resource, twin, *where, "-o", "json").stdout)
    assert normalized(stored) == normalized(stored_twin)
    if resource == "namespace":
        kubectl("delete", "namespace", name, twin, "--wait=false")


def test_explicit_zero_of_a_pointer_field_survives(kubectl, ns):
    kubectl("create", "deployment", "zero", IMAGE, "--replicas=0", "-n", ns)
    out = kubectl("get", "deployment", "zero", "-n", ns, "-o", "jsonpath={.spec.replicas}")
    assert out.stdout == "0"  # dropped, it would have defaulted to 1


def test_create_token_sends_a_protobuf_token_request(kubectl, ns):
    kubectl("create", "serviceaccount", "robot", "-n", ns)
    r = kubectl("create", "token", "robot", "-n", ns, "--duration=10m")
    header, payload, signature = r.stdout.strip().split(".")
    assert header and payload and signature
