"""The field table behind ``fieldValidation``: real manifests pass untouched, typos and wrong
types are named by their Kubernetes path, and schema.json matches its generator."""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from minik8s.api import schema
from minik8s.api.registry import REGISTRY
from minik8s.api.schema import (
    FieldIssue, check_fields, component_schemas, find_duplicate_keys,
    find_duplicate_keys_yaml, json_loads_with_duplicates, schema_for,
    strict_decoding_message, yaml_load_with_duplicates,
)

ROOT = Path(__file__).resolve().parents[2]

POD_SPEC = {
    "serviceAccountName": "web",
    "terminationGracePeriodSeconds": 30,
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 2000},
    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
        "weight": 100,
        "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchExpressions": [
                                {"key": "app", "operator": "In", "values": ["web"]}]}},
    }]}},
    "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                     "effect": "NoExecute", "tolerationSeconds": 300}],
    "initContainers": [{"name": "init", "image": "busybox:1.36",
                        "command": ["sh", "-c", "echo ready"]}],
    "containers": [{
        "name": "web",
        "image": "minik8s/httpd:1.0",
        "imagePullPolicy": "IfNotPresent",
        "args": ["httpd", "-f", "-p", "8080"],
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
        "env": [
            {"name": "MODE", "value": "production"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}},
            {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "lvl",
                                                                "optional": True}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory",
                                                               "divisor": "1Mi"}}},
        ],
        "envFrom": [{"configMapRef": {"name": "cfg"}}, {"prefix": "S_",
                                                         "secretRef": {"name": "db"}}],
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                      "limits": {"cpu": 1, "memory": "128Mi", "nvidia.com/gpu": 0.5}},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http",
                                      "httpHeaders": [{"name": "X-Probe", "value": "1"}]},
                          "initialDelaySeconds": 5, "periodSeconds": 10},
        "readinessProbe": {"tcpSocket": {"port": 8080}, "failureThreshold": 3},
        "startupProbe": {"exec": {"command": ["cat", "/tmp/ok"]}, "timeoutSeconds": 2},
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "2"]}}},
        "volumeMounts": [{"name": "data", "mountPath": "/data"},
                         {"name": "cfg", "mountPath": "/etc/cfg", "readOnly": True}],
        "securityContext": {"allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}},
    }],
    "volumes": [
        {"name": "data", "emptyDir": {"sizeLimit": "1Gi"}},
        {"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 420,
                                      "items": [{"key": "lvl", "path": "level"}]}},
        {"name": "creds", "secret": {"secretName": "db"}},
        {"name": "host", "hostPath": {"path": "/var/log", "type": "Directory"}},
        {"name": "info", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
    ],
}

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                 "annotations": {"deployment.kubernetes.io/revision": "3"}},
    "spec": {
        "replicas": 3,
        "revisionHistoryLimit": 5,
        "selector": {"matchLabels": {"app": "web"}},
        "strategy": {"type": "RollingUpdate",
                     "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": POD_SPEC},
    },
    "status": {"replicas": 3, "readyReplicas": 3, "observedGeneration": 2,
               "conditions": [{"type": "Available", "status": "True",
                               "lastTransitionTime": "2024-05-01T10:00:00Z",
                               "reason": "MinimumReplicasAvailable"}]},
}

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web-1", "namespace": "default", "uid": "0b8f",
                 "creationTimestamp": "2024-05-01T10:00:00Z",
                 "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                      "name": "web-5d9", "uid": "1c2d", "controller": True,
                                      "blockOwnerDeletion": True}]},
    "spec": dict(POD_SPEC, nodeName="node-1"),
    "status": {"phase": "Running", "podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}],
               "startTime": "2024-05-01T10:00:01Z",
               "conditions": [{"type": "Ready", "status": "True"}],
               "containerStatuses": [{"name": "web", "ready": True, "restartCount": 0,
                                      "image": "minik8s/httpd:1.0", "imageID": "sha256:ab",
                                      "state": {"running": {
                                          "startedAt": "2024-05-01T10:00:02.123456Z"}}}]},
}

SERVICE_BY_NAME = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web"},
    "spec": {"type": "NodePort", "selector": {"app": "web"}, "sessionAffinity": "None",
             "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080,
                        "protocol": "TCP"}]},
}

SERVICE_BY_NUMBER = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "db"},
    "spec": {"clusterIP": "None", "selector": {"app": "db"},
             "ports": [{"port": 5432, "targetPort": 5432}]},
}

CONFIGMAP = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "cfg"},
    "data": {"lvl": "debug", "app.properties": "a=1\nb=2\n"},
    "binaryData": {"blob": "aGVsbG8="},
    "immutable": False,
}

SECRET = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
          "type": "Opaque", "data": {"pw": "czNjcjN0"}, "stringData": {"user": "app"}}

HPA = {
    "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
    "metadata": {"name": "web"},
    "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
             "minReplicas": 1, "maxReplicas": 5,
             "metrics": [{"type": "Resource", "resource": {
                 "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}},
                         {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {
                             "type": "AverageValue", "averageValue": "1k"}}}]},
}

CRONJOB = {
    "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick"},
    "spec": {"schedule": "*/5 * * * *", "concurrencyPolicy": "Forbid",
             "jobTemplate": {"metadata": {"labels": {"job": "tick"}}, "spec": {
                 "backoffLimit": 2, "template": {"spec": {
                     "restartPolicy": "OnFailure",
                     "containers": [{"name": "t", "image": "busybox:1.36"}]}}}}},
}

LEASE = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
         "metadata": {"name": "node-1", "namespace": "kube-node-lease"},
         "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40,
                  "renewTime": "2024-05-01T10:00:00.000000Z"}}

VALID = [DEPLOYMENT, POD, SERVICE_BY_NAME, SERVICE_BY_NUMBER, CONFIGMAP, SECRET, HPA,
         CRONJOB, LEASE]


def _issues(obj):
    return check_fields(obj["apiVersion"], obj["kind"], obj)


@pytest.mark.parametrize("obj", VALID, ids=lambda o: o["kind"] + "/" + o["metadata"]["name"])
def test_realistic_manifests_have_no_issues(obj):
    assert _issues(obj) == []


def test_every_registry_kind_is_described():
    for rt in REGISTRY:
        assert schema_for(rt.api_version, rt.kind) is not None, rt.kind
        assert check_fields(rt.api_version, rt.kind,
                            {"apiVersion": rt.api_version, "kind": rt.kind,
                             "metadata": {"name": "x"}}) == []


def test_typo_deep_in_pod_template_is_reported_with_its_path():
    obj = copy.deepcopy(DEPLOYMENT)
    obj["spec"]["template"]["spec"]["containers"][0]["imagee"] = "nginx"
    obj["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/"
    issues = _issues(obj)
    assert [i.path for i in issues] == [
        ".spec.template.spec.containers[0].livenessProbe.httpGet.paht",
        ".spec.template.spec.containers[0].imagee",
    ]
    assert issues[1].message == 'unknown field "spec.template.spec.containers[0].imagee"'
    assert issues[1].field == "spec.template.spec.containers[0].imagee"
    assert {i.reason for i in issues} == {"unknown"}


def test_unknown_top_level_and_metadata_fields():
    obj = dict(CONFIGMAP, status={"x": 1}, metadata={"name": "cfg", "lables": {"a": "b"}})
    assert [i.message for i in _issues(obj)] == [
        'unknown field "metadata.lables"', 'unknown field "status"']


def test_status_is_checked_too():
    obj = copy.deepcopy(POD)
    obj["status"]["containerStatuses"][0]["restartCont"] = 1
    assert [i.path for i in _issues(obj)] == [".status.containerStatuses[0].restartCont"]


def test_wrong_types_are_reported():
    obj = copy.deepcopy(DEPLOYMENT)
    spec = obj["spec"]
    spec["replicas"] = "3"
    spec["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = True
    spec["template"]["spec"]["containers"][0]["env"][0]["value"] = 80
    spec["template"]["spec"]["initContainers"] = {"name": "init"}
    spec["strategy"]["rollingUpdate"]["maxSurge"] = 1.5
    spec["template"]["metadata"]["labels"] = {"app": 1}
    issues = _issues(obj)
    by_path = {i.path: i for i in issues}
    assert all(i.reason == "type" for i in issues)
    assert by_path[".spec.replicas"].message == "spec.replicas: expected integer, got string"
    assert by_path[".spec.template.spec.containers[0].ports[0].containerPort"].message.endswith(
        "expected integer, got boolean")
    assert by_path[".spec.template.spec.containers[0].env[0].value"].message.endswith(
        "expected string, got number")
    assert by_path[".spec.template.spec.initContainers"].message == (
        "spec.template.spec.initContainers: expected array, got object")
    assert by_path[".spec.strategy.rollingUpdate.maxSurge"].message.endswith(
        "expected integer or string, got number")
    assert ".spec.template.metadata.labels[app]" in by_path
    assert len(issues) == 6


def test_scalar_leaves_with_formats():
    obj = copy.deepcopy(POD)
    obj["spec"]["containers"][0]["resources"]["limits"]["memory"] = "128 MB"
    obj["spec"]["containers"][0]["resources"]["requests"]["cpu"] = ["1"]
    obj["metadata"]["creationTimestamp"] = "yesterday"
    assert [(i.path, i.reason) for i in _issues(obj)] == [
        (".metadata.creationTimestamp", "type"),
        (".spec.containers[0].resources.requests[cpu]", "type"),
        (".spec.containers[0].resources.limits[memory]", "type"),
    ]
    secret = dict(SECRET, data={"pw": "not base64!"})
    assert [i.path for i in _issues(secret)] == [".data[pw]"]


def test_nulls_and_free_form_objects_are_accepted():
    obj = copy.deepcopy(POD)
    obj["metadata"]["labels"] = None
    obj["metadata"]["managedFields"] = [{"manager": "kubectl", "operation": "Apply",
                                         "fieldsType": "FieldsV1",
                                         "fieldsV1": {"f:metadata": {"f:labels": {}}}}]
    assert _issues(obj) == []


def test_unknown_kinds_and_non_objects():
    assert check_fields("example.com/v1", "Widget", {"spec": {"anything": 1}}) == []
    assert check_fields("v1", "Pod", ["not", "an", "object"]) == [
        FieldIssue("", "expected object, got array", "type")]


def test_duplicate_keys_in_json():
    raw = (b'{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "name": "b"},'
           b' "spec": {"containers": [{"name": "c", "image": "x", "image": "y"}]},'
           b' "kind": "Pod"}')
    doc, dups = json_loads_with_duplicates(raw)
    assert dups == ['duplicate field "kind"', 'duplicate field "metadata.name"',
                    'duplicate field "spec.containers[0].image"']
    assert doc["metadata"]["name"] == "b"  # the last one wins, as in Go
    assert find_duplicate_keys(raw) == dups
    assert find_duplicate_keys(json.dumps(DEPLOYMENT).encode()) == []
    assert strict_decoding_message(dups[1:2]) == (
        'strict decoding error: duplicate field "metadata.name"')


def test_duplicate_keys_in_yaml():
    text = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: &labels
    app: web
  name: web2
spec:
  template:
    metadata:
      labels: *labels
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports:
        - containerPort: 80
          containerPort: 81
---
apiVersion: v1
kind: ConfigMap
kind: ConfigMap
"""
    assert find_duplicate_keys_yaml(text) == [
        'duplicate field "metadata.name"',
        'duplicate field "spec.template.spec.containers[0].ports[0].containerPort"',
        'duplicate field "kind"',
    ]
    docs, _ = yaml_load_with_duplicates(text)
    assert docs[0]["metadata"]["name"] == "web2"
    assert docs[0]["spec"]["template"]["metadata"]["labels"] == {"app": "web"}


def test_yaml_merge_keys_are_not_duplicates():
    text = "base: &b {a: 1}\nobj:\n  <<: *b\n  a: 2\n"
    assert find_duplicate_keys_yaml(text) == []


def test_openapi_schemas():
    pod = schema_for("v1", "Pod")
    assert pod["x-kubernetes-group-version-kind"] == [
        {"group": "", "kind": "Pod", "version": "v1"}]
    assert pod["properties"]["metadata"] == {
        "$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    components = component_schemas()
    spec = components["io.k8s.api.core.v1.PodSpec"]["properties"]
    assert spec["containers"] == {
        "type": "array", "items": {"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}}
    assert spec["nodeSelector"] == {"type": "object",
                                    "additionalProperties": {"type": "string"}}
    port = components["io.k8s.api.core.v1.ServicePort"]["properties"]["targetPort"]
    assert port["x-kubernetes-int-or-string"] is True
    managed = components["io.k8s.apimachinery.pkg.apis.meta.v1.ManagedFieldsEntry"]
    assert managed["properties"]["fieldsV1"]["x-kubernetes-preserve-unknown-fields"] is True
    limits = components["io.k8s.api.core.v1.ResourceRequirements"]["properties"]["limits"]
    assert limits["additionalProperties"]["anyOf"] == [{"type": "number"}, {"type": "string"}]
    refs = set()
    _refs(components, refs)
    assert refs <= set(components)  # every $ref resolves
    schema_for("v1", "Pod")["properties"].clear()  # callers get copies
    assert schema_for("v1", "Pod")["properties"]
    assert schema_for("example.com/v1", "Widget") is None


def _refs(node, out):
    if isinstance(node, dict):
        if "$ref" in node:
            out.add(node["$ref"].rsplit("/", 1)[1])
        for value in node.values():
            _refs(value, out)
    elif isinstance(node, list):
        for value in node:
            _refs(value, out)


def test_schema_json_is_small_and_sorted():
    path = ROOT / "minik8s" / "api" / "schema.json"
    assert path.stat().st_size < 300_000
    data = json.loads(path.read_text())
    assert list(data["types"]) == sorted(data["types"])


def test_schema_json_matches_its_generator():
    if importlib.util.find_spec("kubernetes") is None:
        pytest.skip("the kubernetes client is not installed")
    import kubernetes

    recorded = schema._schema()["generator"]["kubernetes-client"]
    if kubernetes.__version__ != recorded:
        pytest.skip(f"schema.json was generated with kubernetes {recorded}, "
                    f"this is {kubernetes.__version__}")
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import gen_schema
    finally:
        sys.path.remove(str(ROOT / "tools"))
    expected = (ROOT / "minik8s" / "api" / "schema.json").read_bytes()
    assert gen_schema.render(gen_schema.build_schema()).encode() == expected
