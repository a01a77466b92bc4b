"""Validation: valid objects pass, and each rule reports Kubernetes' field path and reason."""

import base64
import copy
from fractions import Fraction

import pytest

from minik8s.api.defaults import apply_defaults
from minik8s.api.errors import Invalid
from minik8s.api.quantity import milli_value_of, parse_quantity, value_of
from minik8s.api.registry import REGISTRY
from minik8s.pki import make_csr
from minik8s.api.validation import (DUPLICATE, FORBIDDEN, INVALID, NOT_FOUND, NOT_SUPPORTED,
                                    REQUIRED, TOO_LONG, parse_cron, validate)

DELETE = object()


def rt(kind):
    return next(t for t in REGISTRY if t.kind == kind)


def put(obj, path, value):
    """Set (or with DELETE remove) a field addressed as ``spec.containers.0.image``, or as a
    tuple of steps when a key holds dots (``("data", "tls.key")``); index len(list) appends."""
    steps = path.split(".") if isinstance(path, str) else list(path)
    parts = [int(p) if p.isdigit() else p for p in steps]
    cur = obj
    for p in parts[:-1]:
        if isinstance(p, str) and p not in cur:
            cur[p] = {}
        cur = cur[p]
    last = parts[-1]
    if value is DELETE:
        del cur[last]
    elif isinstance(last, int) and last == len(cur):
        cur.append(value)
    else:
        cur[last] = value
    return obj


def meta(name="web", ns="default", **extra):
    return {"name": name, "namespace": ns, **extra}


def container(name="app", image="busybox:1.36", **extra):
    return {"name": name, "image": image, **extra}


def pod_spec():
    return {
        "containers": [container(
            ports=[{"containerPort": 80, "name": "http", "protocol": "TCP"}],
            env=[{"name": "MODE", "value": "prod"},
                 {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
            resources={"requests": {"cpu": "100m", "memory": "64Mi"},
                       "limits": {"cpu": "1", "memory": "128Mi"}},
            volumeMounts=[{"name": "data", "mountPath": "/data"}],
            readinessProbe={"httpGet": {"path": "/", "port": "http"}},
            livenessProbe={"tcpSocket": {"port": 80}, "periodSeconds": 5})],
        "initContainers": [container("setup", command=["sh", "-c", "true"])],
        "volumes": [{"name": "data", "emptyDir": {}},
                    {"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 420}}],
        "restartPolicy": "Always",
        "nodeSelector": {"disk": "ssd"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "web",
                         "effect": "NoSchedule"}],
    }


def template(labels=None, restart="Always"):
    spec = pod_spec()
    spec["restartPolicy"] = restart
    return {"metadata": {"labels": labels or {"app": "web"}}, "spec": spec}


def workload(**spec):
    return {"metadata": meta(), "spec": {"selector": {"matchLabels": {"app": "web"}},
                                         "template": template(), **spec}}


def job_spec():
    return {"template": template(restart="Never"), "backoffLimit": 2}


_CSR_PEM = base64.b64encode(make_csr("system:node:w1", ["system:nodes"])[0]).decode()

VALID = {
    "Pod": lambda: {"metadata": meta(labels={"app": "web"}), "spec": pod_spec()},
    "Deployment": lambda: workload(replicas=3, strategy={
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}}),
    "ReplicaSet": lambda: workload(replicas=2),
    "StatefulSet": lambda: put(workload(serviceName="web", volumeClaimTemplates=[
        {"metadata": {"name": "pvc"}, "spec": {}}]),
        "spec.template.spec.containers.0.volumeMounts",
        [{"name": "pvc", "mountPath": "/var/lib"}]),
    "DaemonSet": lambda: workload(),
    "Job": lambda: {"metadata": meta("pi"), "spec": job_spec()},
    "CronJob": lambda: {"metadata": meta("nightly"), "spec": {
        "schedule": "*/5 9-17 * JAN,MAR MON-FRI", "concurrencyPolicy": "Forbid",
        "jobTemplate": {"spec": job_spec()}}},
    "Service": lambda: {"metadata": meta(), "spec": {
        "selector": {"app": "web"}, "type": "NodePort",
        "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080},
                  {"name": "metrics", "port": 9090, "targetPort": 9090}]}},
    "ConfigMap": lambda: {"metadata": meta("cfg"), "data": {"app.conf": "x=1", "KEY_2": ""},
                          "binaryData": {"blob.bin": "AAEC"}},
    "Secret": lambda: {"metadata": meta("tls"), "type": "kubernetes.io/tls",
                       "data": {"tls.crt": "Y2VydA==", "tls.key": "a2V5"}},
    "Lease": lambda: {"metadata": meta("kube-scheduler", "kube-system"), "spec": {
        "holderIdentity": "master-1", "leaseDurationSeconds": 15, "leaseTransitions": 2}},
    "Namespace": lambda: {"metadata": {"name": "team-a"}, "spec": {"finalizers":
                                                                   ["kubernetes"]}},
    "Node": lambda: {"metadata": {"name": "node-1.example"}, "spec": {
        "podCIDR": "10.244.1.0/24",
        "taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}},
    "Event": lambda: {"metadata": meta("web.1"), "reason": "Scheduled", "type": "Normal",
                      "involvedObject": {"kind": "Pod", "name": "web", "namespace":
                                         "default"}},
    "Endpoints": lambda: {"metadata": meta(), "subsets": [{
        "addresses": [{"ip": "10.244.1.5"}], "ports": [{"name": "http", "port": 80}]}]},
    "ServiceAccount": lambda: {"metadata": meta("default")},
    "PersistentVolumeClaim": lambda: {"metadata": meta("data-web-0"), "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}},
    "ControllerRevision": lambda: {"metadata": meta("web-5d4f8b"), "revision": 2,
                                   "data": {"spec": {"template": {}}}},
    "HorizontalPodAutoscaler": lambda: {"metadata": meta(), "spec": {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "minReplicas": 1, "maxReplicas": 5,
        "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": 60}}}]}},
    "CertificateSigningRequest": lambda: {"metadata": {"name": "node-csr-abcdef-1"}, "spec": {
        "request": _CSR_PEM, "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
        "usages": ["digital signature", "key encipherment", "client auth"]}},
}


def test_every_registered_kind_has_a_valid_example():
    assert {t.kind for t in REGISTRY} == set(VALID)


@pytest.mark.parametrize("kind", sorted(VALID))
def test_valid_object_has_no_causes(kind):
    assert validate(rt(kind), VALID[kind]()) == []


@pytest.mark.parametrize("kind", sorted(VALID))
def test_valid_object_stays_valid_after_defaults(kind):
    obj = VALID[kind]()
    obj["metadata"]["uid"] = "0d5f3c1e-uid"
    apply_defaults(rt(kind), obj)
    assert validate(rt(kind), obj) == []


@pytest.mark.parametrize("kind", sorted(VALID))
def test_unchanged_update_has_no_causes(kind):
    obj = VALID[kind]()
    assert validate(rt(kind), copy.deepcopy(obj), old=obj) == []


def causes_for(kind, edits, base=None):
    obj = (base or VALID[kind])()
    for path, value in edits:
        put(obj, path, value)
    return validate(rt(kind), obj)


def assert_cause(causes, field, reason):
    assert any(c["field"] == field and c["reason"] == reason for c in causes), causes


LONG = "a" * 64

# (kind, edits as (path, value), expected field, expected reason)
CASES = [
    # metadata
    ("Pod", [("metadata.name", DELETE)], "metadata.name", REQUIRED),
    ("Pod", [("metadata.name", "Web_1")], "metadata.name", INVALID),
    ("Pod", [("metadata.name", "a" * 254)], "metadata.name", INVALID),
    ("Pod", [("metadata.name", DELETE), ("metadata.generateName", "Web-")],
     "metadata.generateName", INVALID),
    ("Pod", [("metadata.namespace", "Bad_NS")], "metadata.namespace", INVALID),
    ("Namespace", [("metadata.name", "a.b")], "metadata.name", INVALID),
    ("Namespace", [("metadata.name", LONG)], "metadata.name", INVALID),
    ("Service", [("metadata.name", "1web")], "metadata.name", INVALID),
    ("CronJob", [("metadata.name", "a" * 53)], "metadata.name", INVALID),
    ("HorizontalPodAutoscaler", [("metadata.name", "a/b")], "metadata.name", INVALID),
    ("Node", [("metadata.namespace", "default")], "metadata.namespace", FORBIDDEN),
    ("Pod", [("metadata.labels", {"-app": "web"})], "metadata.labels", INVALID),
    ("Pod", [("metadata.labels", {"Example.com/app": "web"})], "metadata.labels", INVALID),
    ("Pod", [("metadata.labels", {LONG: "web"})], "metadata.labels", INVALID),
    ("Pod", [("metadata.labels", {"app": "web app"})], "metadata.labels", INVALID),
    ("Pod", [("metadata.labels", {"app": LONG})], "metadata.labels", INVALID),
    ("Pod", [("metadata.annotations", {"a b": "x"})], "metadata.annotations", INVALID),
    ("Pod", [("metadata.annotations", {"big": "x" * (256 * 1024)})],
     "metadata.annotations", TOO_LONG),
    ("Pod", [("metadata.finalizers", ["bad finalizer"])], "metadata.finalizers[0]", INVALID),
    ("Pod", [("metadata.ownerReferences", [{"apiVersion": "v1", "kind": "X", "name": "x"}])],
     "metadata.ownerReferences[0].uid", REQUIRED),
    # pods
    ("Pod", [("spec.containers", [])], "spec.containers", REQUIRED),
    ("Pod", [("spec.containers.0.name", "App")], "spec.containers[0].name", INVALID),
    ("Pod", [("spec.containers.0.name", DELETE)], "spec.containers[0].name", REQUIRED),
    ("Pod", [("spec.containers.0.name", "setup")], "spec.containers[0].name", DUPLICATE),
    ("Pod", [("spec.containers.0.image", DELETE)], "spec.containers[0].image", REQUIRED),
    ("Pod", [("spec.containers.0.image", " busybox")], "spec.containers[0].image", INVALID),
    ("Pod", [("spec.initContainers.0.image", "")], "spec.initContainers[0].image", REQUIRED),
    ("Pod", [("spec.containers.0.ports.0.containerPort", 70000)],
     "spec.containers[0].ports[0].containerPort", INVALID),
    ("Pod", [("spec.containers.0.ports.0.containerPort", 0)],
     "spec.containers[0].ports[0].containerPort", REQUIRED),
    ("Pod", [("spec.containers.0.ports.0.hostPort", 65536)],
     "spec.containers[0].ports[0].hostPort", INVALID),
    ("Pod", [("spec.containers.0.ports.0.protocol", "tcp")],
     "spec.containers[0].ports[0].protocol", NOT_SUPPORTED),
    ("Pod", [("spec.containers.0.ports.0.name", "HTTP_port")],
     "spec.containers[0].ports[0].name", INVALID),
    ("Pod", [("spec.containers.0.ports.1", {"containerPort": 81, "name": "http"})],
     "spec.containers[0].ports[1].name", DUPLICATE),
    ("Pod", [("spec.restartPolicy", "Sometimes")], "spec.restartPolicy", NOT_SUPPORTED),
    ("Pod", [("spec.dnsPolicy", "Google")], "spec.dnsPolicy", NOT_SUPPORTED),
    ("Pod", [("spec.containers.0.imagePullPolicy", "Sometimes")],
     "spec.containers[0].imagePullPolicy", NOT_SUPPORTED),
    ("Pod", [("spec.containers.0.resources.limits.cpu", "lots")],
     "spec.containers[0].resources.limits[cpu]", INVALID),
    ("Pod", [("spec.containers.0.resources.requests.memory", "-1Mi")],
     "spec.containers[0].resources.requests[memory]", INVALID),
    ("Pod", [("spec.containers.0.resources.requests.cpu", "2")],
     "spec.containers[0].resources.requests[cpu]", INVALID),
    ("Pod", [("spec.containers.0.resources.limits.gpu", "1")],
     "spec.containers[0].resources.limits[gpu]", INVALID),
    ("Pod", [("spec.containers.0.env.0.name", "1MODE")], "spec.containers[0].env[0].name",
     INVALID),
    ("Pod", [("spec.containers.0.env.0.name", "")], "spec.containers[0].env[0].name",
     REQUIRED),
    ("Pod", [("spec.containers.0.env.1.valueFrom", {})],
     "spec.containers[0].env[1].valueFrom", INVALID),
    ("Pod", [("spec.containers.0.env.1.valueFrom", {"secretKeyRef": {"name": "s"}})],
     "spec.containers[0].env[1].valueFrom.secretKeyRef.key", REQUIRED),
    ("Pod", [("spec.volumes.1.name", "data")], "spec.volumes[1].name", DUPLICATE),
    ("Pod", [("spec.volumes.1.name", "Data")], "spec.volumes[1].name", INVALID),
    ("Pod", [("spec.volumes.1", {"name": "cfg"})], "spec.volumes[1]", REQUIRED),
    ("Pod", [("spec.volumes.0.hostPath", {"path": "/tmp"})], "spec.volumes[0].hostPath",
     FORBIDDEN),
    ("Pod", [("spec.volumes.1", {"name": "h", "hostPath": {}})],
     "spec.volumes[1].hostPath.path", REQUIRED),
    ("Pod", [("spec.volumes.1.configMap.defaultMode", 0o1000)],
     "spec.volumes[1].configMap.defaultMode", INVALID),
    ("Pod", [("spec.volumes.1.configMap.items", [{"key": "k", "path": "k", "mode": 0o4755}])],
     "spec.volumes[1].configMap.items[0].mode", INVALID),
    ("Pod", [("spec.volumes.1.configMap.items", [{"key": "k", "path": "k", "mode": -1}])],
     "spec.volumes[1].configMap.items[0].mode", INVALID),
    ("Pod", [("spec.volumes.1.configMap.items", [{"key": "k", "path": "..data"}])],
     "spec.volumes[1].configMap.items[0].path", INVALID),
    ("Pod", [("spec.volumes.1.configMap.items", [{"key": "k", "path": "a/../../b"}])],
     "spec.volumes[1].configMap.items[0].path", INVALID),
    ("Pod", [("spec.volumes.1", {"name": "cfg", "secret": {
        "secretName": "s", "items": [{"key": "k", "path": "/etc/passwd"}]}})],
     "spec.volumes[1].secret.items[0].path", INVALID),
    ("Pod", [("spec.volumes.1", {"name": "cfg", "downwardAPI": {"items": [
        {"path": "n", "mode": 0o2755, "fieldRef": {"fieldPath": "metadata.name"}}]}})],
     "spec.volumes[1].downwardAPI.items[0].mode", INVALID),
    ("Pod", [("spec.volumes.1", {"name": "cfg", "projected": {"sources": [
        {"secret": {"name": "s", "items": [{"key": "k", "path": "k", "mode": 0o4755}]}}]}})],
     "spec.volumes[1].projected.sources[0].secret.items[0].mode", INVALID),
    ("Pod", [("spec.volumes.1", {"name": "cfg", "projected": {"sources": [
        {"configMap": {"name": "c", "items": [{"key": "k", "path": "../k"}]}}]}})],
     "spec.volumes[1].projected.sources[0].configMap.items[0].path", INVALID),
    ("Pod", [("spec.volumes.1", {"name": "cfg", "projected": {"sources": [
        {"downwardAPI": {"items": [{"path": "/abs", "fieldRef": {
            "fieldPath": "metadata.name"}}]}}]}})],
     "spec.volumes[1].projected.sources[0].downwardAPI.items[0].path", INVALID),
    ("Pod", [("spec.volumes.1", {"name": "cfg", "projected": {"sources": [
        {"serviceAccountToken": {"path": "../../token"}}]}})],
     "spec.volumes[1].projected.sources[0].serviceAccountToken.path", INVALID),
    ("Pod", [("spec.volumes.1", {"name": "cfg", "projected": {"sources": [
        {"serviceAccountToken": {"expirationSeconds": 3600}}]}})],
     "spec.volumes[1].projected.sources[0].serviceAccountToken.path", REQUIRED),
    ("Pod", [("spec.volumes.1", {"name": "cfg", "projected": {"sources": [
        {"serviceAccountToken": {"path": "t", "expirationSeconds": 60}}]}})],
     "spec.volumes[1].projected.sources[0].serviceAccountToken.expirationSeconds", INVALID),
    ("Pod", [("spec.volumes.1", {"name": "cfg", "projected": {"defaultMode": 0o4755,
                                                              "sources": []}})],
     "spec.volumes[1].projected.defaultMode", INVALID),
    ("Pod", [("spec.volumes.1", {"name": "cfg", "projected": {"sources": [
        {"secret": {"name": "s", "items": [{"key": "a", "path": "x"}]}},
        {"configMap": {"name": "c", "items": [{"key": "b", "path": "x"}]}}]}})],
     "spec.volumes[1].projected.sources[1].configMap", INVALID),
    ("Pod", [("spec.containers.0.volumeMounts.0.subPath", "../../etc")],
     "spec.containers[0].volumeMounts[0].subPath", INVALID),
    ("Pod", [("spec.containers.0.volumeMounts.0.subPath", "/etc")],
     "spec.containers[0].volumeMounts[0].subPath", INVALID),
    ("Pod", [("spec.containers.0.volumeMounts.0.name", "missing")],
     "spec.containers[0].volumeMounts[0].name", NOT_FOUND),
    ("Pod", [("spec.containers.0.volumeMounts.0.mountPath", "")],
     "spec.containers[0].volumeMounts[0].mountPath", REQUIRED),
    ("Pod", [("spec.containers.0.readinessProbe", {"periodSeconds": 3})],
     "spec.containers[0].readinessProbe", REQUIRED),
    ("Pod", [("spec.containers.0.readinessProbe.tcpSocket", {"port": 80})],
     "spec.containers[0].readinessProbe.tcpSocket", FORBIDDEN),
    ("Pod", [("spec.containers.0.livenessProbe.successThreshold", 2)],
     "spec.containers[0].livenessProbe.successThreshold", INVALID),
    ("Pod", [("spec.containers.0.livenessProbe.periodSeconds", -1)],
     "spec.containers[0].livenessProbe.periodSeconds", INVALID),
    ("Pod", [("spec.containers.0.livenessProbe.tcpSocket.port", "Bad_Name")],
     "spec.containers[0].livenessProbe.tcpSocket.port", INVALID),
    ("Pod", [("spec.containers.0.livenessProbe", {"exec": {}})],
     "spec.containers[0].livenessProbe.exec.command", REQUIRED),
    ("Pod", [("spec.initContainers.0.readinessProbe", {"exec": {"command": ["true"]}})],
     "spec.initContainers[0].readinessProbe", FORBIDDEN),
    ("Pod", [("spec.activeDeadlineSeconds", 0)], "spec.activeDeadlineSeconds", INVALID),
    ("Pod", [("spec.terminationGracePeriodSeconds", -5)],
     "spec.terminationGracePeriodSeconds", INVALID),
    ("Pod", [("spec.nodeSelector", {"disk": "very fast"})], "spec.nodeSelector", INVALID),
    ("Pod", [("spec.nodeName", "Node_1")], "spec.nodeName", INVALID),
    ("Pod", [("spec.tolerations.0.operator", "Exists")], "spec.tolerations[0].operator",
     INVALID),
    ("Pod", [("spec.tolerations.0.effect", "Sometimes")], "spec.tolerations[0].effect",
     NOT_SUPPORTED),
    ("Pod", [("spec.tolerations.0.tolerationSeconds", 30)], "spec.tolerations[0].effect",
     INVALID),
    ("Pod", [("spec.hostNetwork", True), ("spec.containers.0.ports.0.hostPort", 8080)],
     "spec.containers[0].ports[0].hostPort", INVALID),
    ("Pod", [("spec.dnsPolicy", "None")], "spec.dnsConfig", REQUIRED),
    # workloads
    ("Deployment", [("spec.selector", DELETE)], "spec.selector", REQUIRED),
    ("Deployment", [("spec.selector", {})], "spec.selector", INVALID),
    ("Deployment", [("spec.selector.matchLabels.app", "api")],
     "spec.template.metadata.labels", INVALID),
    ("Deployment", [("spec.selector.matchExpressions",
                     [{"key": "app", "operator": "Equals", "values": ["web"]}])],
     "spec.selector.matchExpressions[0].operator", INVALID),
    ("Deployment", [("spec.selector.matchExpressions", [{"key": "app", "operator": "In"}])],
     "spec.selector.matchExpressions[0].values", REQUIRED),
    ("Deployment", [("spec.selector.matchExpressions",
                     [{"key": "app", "operator": "Exists", "values": ["x"]}])],
     "spec.selector.matchExpressions[0].values", FORBIDDEN),
    ("Deployment", [("spec.replicas", -1)], "spec.replicas", INVALID),
    ("Deployment", [("spec.revisionHistoryLimit", -1)], "spec.revisionHistoryLimit", INVALID),
    ("Deployment", [("spec.template.spec.containers.0.image", "")],
     "spec.template.spec.containers[0].image", REQUIRED),
    ("Deployment", [("spec.template.spec.containers.1", container(
        "sidecar", ports=[{"containerPort": 0}]))],
     "spec.template.spec.containers[1].ports[0].containerPort", REQUIRED),
    ("Deployment", [("spec.template.spec.restartPolicy", "Never")],
     "spec.template.spec.restartPolicy", NOT_SUPPORTED),
    ("Deployment", [("spec.template.spec.activeDeadlineSeconds", 10)],
     "spec.template.spec.activeDeadlineSeconds", FORBIDDEN),
    ("Deployment", [("spec.template.metadata.labels.bad key", "x")],
     "spec.template.metadata.labels", INVALID),
    ("Deployment", [("spec.strategy.type", "BlueGreen")], "spec.strategy.type",
     NOT_SUPPORTED),
    ("Deployment", [("spec.strategy.rollingUpdate", {"maxSurge": 0, "maxUnavailable": "0%"})],
     "spec.strategy.rollingUpdate.maxUnavailable", INVALID),
    ("Deployment", [("spec.strategy.rollingUpdate.maxUnavailable", "110%")],
     "spec.strategy.rollingUpdate.maxUnavailable", INVALID),
    ("Deployment", [("spec.strategy.rollingUpdate.maxSurge", "lots")],
     "spec.strategy.rollingUpdate.maxSurge", INVALID),
    ("Deployment", [("spec.strategy.rollingUpdate.maxSurge", -1)],
     "spec.strategy.rollingUpdate.maxSurge", INVALID),
    ("Deployment", [("spec.strategy.type", "Recreate")], "spec.strategy.rollingUpdate",
     FORBIDDEN),
    ("Deployment", [("spec.minReadySeconds", 30), ("spec.progressDeadlineSeconds", 10)],
     "spec.progressDeadlineSeconds", INVALID),
    ("ReplicaSet", [("spec.selector", DELETE)], "spec.selector", REQUIRED),
    ("ReplicaSet", [("spec.replicas", -2)], "spec.replicas", INVALID),
    ("StatefulSet", [("spec.podManagementPolicy", "Random")], "spec.podManagementPolicy",
     NOT_SUPPORTED),
    ("StatefulSet", [("spec.updateStrategy", {"type": "RollingUpdate",
                                              "rollingUpdate": {"partition": -1}})],
     "spec.updateStrategy.rollingUpdate.partition", INVALID),
    ("StatefulSet", [("spec.template.spec.containers.0.volumeMounts.0.name", "other")],
     "spec.template.spec.containers[0].volumeMounts[0].name", NOT_FOUND),
    ("DaemonSet", [("spec.updateStrategy.type", "Surge")], "spec.updateStrategy.type",
     NOT_SUPPORTED),
    ("DaemonSet", [("spec.selector", DELETE)], "spec.selector", REQUIRED),
    ("Job", [("spec.template.spec.restartPolicy", "Always")],
     "spec.template.spec.restartPolicy", NOT_SUPPORTED),
    ("Job", [("spec.template.spec.restartPolicy", DELETE)],
     "spec.template.spec.restartPolicy", REQUIRED),
    ("Job", [("spec.completions", -1)], "spec.completions", INVALID),
    ("Job", [("spec.parallelism", -1)], "spec.parallelism", INVALID),
    ("Job", [("spec.backoffLimit", -1)], "spec.backoffLimit", INVALID),
    ("Job", [("spec.activeDeadlineSeconds", 0)], "spec.activeDeadlineSeconds", INVALID),
    ("Job", [("spec.completionMode", "Sometimes")], "spec.completionMode", NOT_SUPPORTED),
    ("Job", [("spec.completionMode", "Indexed")], "spec.completions", REQUIRED),
    ("Job", [("spec.manualSelector", True)], "spec.selector", REQUIRED),
    ("Job", [("spec.selector", {"matchLabels": {"app": "other"}})],
     "spec.template.metadata.labels", INVALID),
    ("Job", [("spec.template.spec.containers.0.name", "Bad")],
     "spec.template.spec.containers[0].name", INVALID),
    # cronjobs
    ("CronJob", [("spec.schedule", DELETE)], "spec.schedule", REQUIRED),
    ("CronJob", [("spec.schedule", "61 * * * *")], "spec.schedule", INVALID),
    ("CronJob", [("spec.schedule", "* * *")], "spec.schedule", INVALID),
    ("CronJob", [("spec.schedule", "*/0 * * * *")], "spec.schedule", INVALID),
    ("CronJob", [("spec.schedule", "* * * FOO *")], "spec.schedule", INVALID),
    ("CronJob", [("spec.schedule", "@fortnightly")], "spec.schedule", INVALID),
    ("CronJob", [("spec.schedule", "TZ=UTC 0 * * * *")], "spec.schedule", INVALID),
    ("CronJob", [("spec.timeZone", "Mars/Olympus")], "spec.timeZone", INVALID),
    ("CronJob", [("spec.concurrencyPolicy", "Sometimes")], "spec.concurrencyPolicy",
     NOT_SUPPORTED),
    ("CronJob", [("spec.startingDeadlineSeconds", -1)], "spec.startingDeadlineSeconds",
     INVALID),
    ("CronJob", [("spec.successfulJobsHistoryLimit", -1)], "spec.successfulJobsHistoryLimit",
     INVALID),
    ("CronJob", [("spec.jobTemplate.spec.template.spec.restartPolicy", "Always")],
     "spec.jobTemplate.spec.template.spec.restartPolicy", NOT_SUPPORTED),
    ("CronJob", [("spec.jobTemplate.spec.template.spec.containers.0.image", "")],
     "spec.jobTemplate.spec.template.spec.containers[0].image", REQUIRED),
    # services
    ("Service", [("spec.ports", [])], "spec.ports", REQUIRED),
    ("Service", [("spec.ports.0.port", 0)], "spec.ports[0].port", INVALID),
    ("Service", [("spec.ports.0.port", 65536)], "spec.ports[0].port", INVALID),
    ("Service", [("spec.ports.1.name", DELETE)], "spec.ports[1].name", REQUIRED),
    ("Service", [("spec.ports.1.name", "http")], "spec.ports[1].name", DUPLICATE),
    ("Service", [("spec.ports.1.name", "Metrics")], "spec.ports[1].name", INVALID),
    ("Service", [("spec.ports.1.port", 80)], "spec.ports[1]", DUPLICATE),
    ("Service", [("spec.ports.0.protocol", "ICMP")], "spec.ports[0].protocol", NOT_SUPPORTED),
    ("Service", [("spec.ports.1.targetPort", 70000)], "spec.ports[1].targetPort", INVALID),
    ("Service", [("spec.ports.0.targetPort", "http_port")], "spec.ports[0].targetPort",
     INVALID),
    ("Service", [("spec.ports.0.targetPort", "verylongportname")],
     "spec.ports[0].targetPort", INVALID),
    ("Service", [("spec.type", "ClusterIP")], "spec.ports[0].nodePort", FORBIDDEN),
    ("Service", [("spec.ports.0.nodePort", 80)], "spec.ports[0].nodePort", INVALID),
    ("Service", [("spec.ports.1.nodePort", 30080)], "spec.ports[1].nodePort", DUPLICATE),
    ("Service", [("spec.type", "Ingress")], "spec.type", NOT_SUPPORTED),
    ("Service", [("spec.sessionAffinity", "Sticky")], "spec.sessionAffinity", NOT_SUPPORTED),
    ("Service", [("spec.clusterIP", "300.1.2.3")], "spec.clusterIP", INVALID),
    ("Service", [("spec.clusterIP", "None")], "spec.clusterIP", INVALID),  # on a NodePort
    ("Service", [("spec.type", "ExternalName"), ("spec.ports.0.nodePort", DELETE)],
     "spec.externalName", REQUIRED),
    ("Service", [("spec.type", "ExternalName"), ("spec.externalName", "db.example.com"),
                 ("spec.clusterIP", "10.96.0.10")], "spec.clusterIP", FORBIDDEN),
    ("Service", [("spec.selector", {"app": "a b"})], "spec.selector", INVALID),
    ("Service", [("spec.type", "ClusterIP"), ("spec.ports.0.nodePort", DELETE),
                 ("spec.externalTrafficPolicy", "Local")], "spec.externalTrafficPolicy",
     INVALID),
    ("Service", [("spec.ipFamilies", ["IPv5"])], "spec.ipFamilies[0]", NOT_SUPPORTED),
    # configmaps and secrets
    ("ConfigMap", [("data.a b", "x")], "data[a b]", INVALID),
    ("ConfigMap", [("data." + "k" * 254, "x")], "data[" + "k" * 254 + "]", INVALID),
    ("ConfigMap", [(("data", ".."), "x")], "data[..]", INVALID),
    ("ConfigMap", [("data.n", 5)], "data[n]", INVALID),
    ("ConfigMap", [(("binaryData", "blob.bin"), "not base64!")], "binaryData[blob.bin]", INVALID),
    ("ConfigMap", [(("binaryData", "app.conf"), "AA==")], "binaryData[app.conf]", DUPLICATE),
    ("ConfigMap", [("data.big", "x" * (1024 * 1024 + 1))], "data", TOO_LONG),
    ("Secret", [(("data", "tls.key"), "%%%")], "data[tls.key]", INVALID),
    ("Secret", [("data.a:b", "YQ==")], "data[a:b]", INVALID),
    ("Secret", [(("data", "tls.key"), DELETE)], "data[tls.key]", REQUIRED),
    ("Secret", [("type", "kubernetes.io/service-account-token")],
     "metadata.annotations[kubernetes.io/service-account.name]", REQUIRED),
    # the smaller kinds
    ("Lease", [("spec.leaseDurationSeconds", 0)], "spec.leaseDurationSeconds", INVALID),
    ("Lease", [("spec.leaseTransitions", -1)], "spec.leaseTransitions", INVALID),
    ("PersistentVolumeClaim", [("spec.accessModes", DELETE)], "spec.accessModes", REQUIRED),
    ("PersistentVolumeClaim", [("spec.accessModes", ["Sometimes"])], "spec.accessModes[0]",
     NOT_SUPPORTED),
    ("PersistentVolumeClaim", [("spec.resources", DELETE)], "spec.resources[storage]", REQUIRED),
    ("ControllerRevision", [("revision", DELETE)], "revision", REQUIRED),
    ("ControllerRevision", [("revision", -1)], "revision", INVALID),
    ("Namespace", [("spec.finalizers", ["bad finalizer"])], "spec.finalizers[0]", INVALID),
    ("Node", [("spec.podCIDR", "10.244.1.0/33")], "spec.podCIDR", INVALID),
    ("Node", [("spec.taints.0.effect", "Sometimes")], "spec.taints[0].effect",
     NOT_SUPPORTED),
    ("Node", [("spec.taints.0.key", DELETE)], "spec.taints[0].key", REQUIRED),
    ("Node", [("spec.taints.1", {"key": "dedicated", "effect": "NoSchedule"})],
     "spec.taints[1]", DUPLICATE),
    ("Event", [("involvedObject", DELETE)], "involvedObject", REQUIRED),
    ("Event", [("involvedObject.namespace", "other")], "involvedObject.namespace", INVALID),
    ("Event", [("type", "Info")], "type", NOT_SUPPORTED),
    ("Endpoints", [("subsets.0.addresses.0.ip", "nope")], "subsets[0].addresses[0].ip",
     INVALID),
    ("Endpoints", [("subsets.0.ports.0.port", 0)], "subsets[0].ports[0].port", INVALID),
    ("HorizontalPodAutoscaler", [("spec.scaleTargetRef.name", DELETE)],
     "spec.scaleTargetRef.name", REQUIRED),
    ("HorizontalPodAutoscaler", [("spec.scaleTargetRef.kind", "")],
     "spec.scaleTargetRef.kind", REQUIRED),
    ("HorizontalPodAutoscaler", [("spec.maxReplicas", 0)], "spec.maxReplicas", INVALID),
    ("HorizontalPodAutoscaler", [("spec.maxReplicas", DELETE)], "spec.maxReplicas",
     REQUIRED),
    ("HorizontalPodAutoscaler", [("spec.minReplicas", 0)], "spec.minReplicas", INVALID),
    ("HorizontalPodAutoscaler", [("spec.minReplicas", 6)], "spec.maxReplicas", INVALID),
    ("HorizontalPodAutoscaler", [("spec.metrics.0.type", "Magic")], "spec.metrics[0].type",
     NOT_SUPPORTED),
    ("HorizontalPodAutoscaler", [("spec.metrics.0.resource.target",
                                  {"type": "Utilization"})],
     "spec.metrics[0].resource.target.averageUtilization", REQUIRED),
    ("HorizontalPodAutoscaler", [("spec.metrics.0.resource.name", "")],
     "spec.metrics[0].resource.name", REQUIRED),
]


@pytest.mark.parametrize("kind, edits, field, reason", CASES,
                         ids=[f"{c[0]}:{c[2]}:{c[3]}" for c in CASES])
def test_rule_reports_field_and_reason(kind, edits, field, reason):
    assert_cause(causes_for(kind, edits), field, reason)


def test_volume_file_modes_and_paths_as_kubernetes_words_them():
    causes = causes_for("Pod", [("spec.volumes.1", {"name": "cfg", "projected": {"sources": [
        {"configMap": {"name": "c", "items": [{"key": "k", "path": "../x", "mode": 0o4755}]}},
        {"serviceAccountToken": {"path": "..token"}}]}})])
    by_field = {c["field"]: c["message"] for c in causes}
    base = "spec.volumes[1].projected.sources"
    assert by_field[f"{base}[0].configMap.items[0].mode"] == (
        "Invalid value: 2541: must be a number between 0 and 0777 (octal), both inclusive")
    assert by_field[f"{base}[0].configMap.items[0].path"] == (
        "Invalid value: \"../x\": must not contain '..'")
    assert by_field[f"{base}[1].serviceAccountToken.path"] == (
        "Invalid value: \"..token\": must not start with '..'")


def test_valid_projected_volume_and_subpath_pass():
    causes = causes_for("Pod", [
        ("spec.volumes.1", {"name": "cfg", "projected": {"defaultMode": 0o644, "sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [
                {"key": "ca.crt", "path": "ca.crt", "mode": 0o400}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                "fieldPath": "metadata.namespace"}}]}}]}}),
        ("spec.containers.0.volumeMounts.0.subPath", "a/b..c/d")])
    assert causes == []


# --- wording ------------------------------------------------------------------------------

def test_messages_use_kubernetes_wording():
    causes = causes_for("Pod", [("spec.containers.0.image", DELETE),
                                ("spec.restartPolicy", "Sometimes"),
                                ("spec.containers.0.ports.0.containerPort", 70000),
                                ("metadata.name", "Web")])
    by_field = {c["field"]: c["message"] for c in causes}
    assert by_field["spec.containers[0].image"] == "Required value"
    assert by_field["spec.restartPolicy"] == (
        'Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"')
    assert by_field["spec.containers[0].ports[0].containerPort"] == (
        "Invalid value: 70000: must be between 1 and 65535, inclusive")
    assert by_field["metadata.name"].startswith(
        'Invalid value: "Web": a lowercase RFC 1123 subdomain must consist of lower case')


def test_name_or_generate_name_required_message():
    causes = causes_for("ConfigMap", [("metadata.name", DELETE)])
    assert causes == [{"reason": REQUIRED, "field": "metadata.name",
                       "message": "Required value: name or generateName is required"}]


def test_generate_name_alone_is_enough():
    assert causes_for("Pod", [("metadata.name", DELETE),
                              ("metadata.generateName", "web-")]) == []


def test_causes_feed_invalid_status():
    causes = causes_for("Deployment", [("spec.selector.matchLabels.app", "api")])
    err = Invalid.object("Deployment", "apps", "web", causes)
    assert err.code == 422
    assert err.message == (
        'Deployment.apps "web" is invalid: spec.template.metadata.labels: Invalid value: '
        '{"app":"web"}: `selector` does not match template `labels`')


def test_wrong_shapes_become_causes_not_exceptions():
    causes = validate(rt("Pod"), {"metadata": meta(), "spec": {
        "containers": "nginx", "volumes": [5], "nodeSelector": ["x"]}})
    fields = {c["field"] for c in causes}
    assert {"spec.containers", "spec.volumes[0]", "spec.nodeSelector"} <= fields
    assert validate(rt("Deployment"), {"metadata": meta(), "spec": {
        "selector": "app=web", "template": []}})


def test_headless_and_external_name_services_need_no_ports():
    headless = causes_for("Service", [("spec.type", "ClusterIP"), ("spec.clusterIP", "None"),
                                      ("spec.ports", [])])
    external = causes_for("Service", [("spec.type", "ExternalName"), ("spec.ports", []),
                                      ("spec.externalName", "db.example.com.")])
    assert headless == [] and external == []


def test_single_service_port_needs_no_name_and_target_port_may_be_a_name():
    assert causes_for("Service", [("spec.ports", [{"port": 80, "targetPort": "web"}])]) == []


def test_job_without_selector_is_valid_since_it_is_generated():
    obj = VALID["Job"]()
    assert "selector" not in obj["spec"]
    assert validate(rt("Job"), obj) == []


def test_kinds_without_rules_still_get_metadata_checks():
    assert_cause(causes_for("ServiceAccount", [("metadata.name", "Bad Name")]),
                 "metadata.name", INVALID)


# --- updates ------------------------------------------------------------------------------

def updated(kind, edits, old_edits=()):
    old = VALID[kind]()
    for path, value in old_edits:
        put(old, path, value)
    new = copy.deepcopy(old)
    for path, value in edits:
        put(new, path, value)
    return validate(rt(kind), new, old=old)


def test_pod_update_may_change_images():
    assert updated("Pod", [("spec.containers.0.image", "busybox:1.37"),
                           ("spec.initContainers.0.image", "alpine:3")]) == []


def test_pod_update_may_add_tolerations_and_labels():
    assert updated("Pod", [("spec.tolerations.1", {"operator": "Exists"}),
                           ("metadata.labels.extra", "yes")]) == []


def test_pod_update_may_not_change_other_fields():
    causes = updated("Pod", [("spec.containers.0.command", ["sleep", "1"])])
    assert len(causes) == 1
    assert causes[0]["field"] == "spec" and causes[0]["reason"] == FORBIDDEN
    assert causes[0]["message"].startswith(
        "Forbidden: pod updates may not change fields other than `spec.containers[*].image`")
    assert "spec.containers" in causes[0]["message"]


@pytest.mark.parametrize("edits", [
    [("spec.tolerations", [])],  # removing a toleration
    [("spec.nodeName", "node-b")],
    [("spec.restartPolicy", "Never")],
    [("spec.containers.1", container("second"))],
])
def test_pod_update_forbidden_changes(edits):
    assert_cause(updated("Pod", edits), "spec", FORBIDDEN)


def test_pod_update_active_deadline_may_only_shrink():
    assert updated("Pod", [("spec.activeDeadlineSeconds", 30)],
                   [("spec.activeDeadlineSeconds", 60)]) == []
    assert updated("Pod", [("spec.activeDeadlineSeconds", 30)]) == []
    assert_cause(updated("Pod", [("spec.activeDeadlineSeconds", 90)],
                         [("spec.activeDeadlineSeconds", 60)]),
                 "spec.activeDeadlineSeconds", INVALID)
    assert_cause(updated("Pod", [("spec.activeDeadlineSeconds", DELETE)],
                         [("spec.activeDeadlineSeconds", 60)]),
                 "spec.activeDeadlineSeconds", INVALID)


def test_pod_update_grace_period_from_negative_to_one():
    assert updated("Pod", [("spec.terminationGracePeriodSeconds", 1)],
                   [("spec.terminationGracePeriodSeconds", -1)]) == []


@pytest.mark.parametrize("kind", ["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"])
def test_workload_selector_is_immutable(kind):
    causes = updated(kind, [("spec.selector.matchLabels.tier", "fe"),
                            ("spec.template.metadata.labels.tier", "fe")])
    assert_cause(causes, "spec.selector", INVALID)
    assert any("field is immutable" in c["message"] for c in causes)


def test_workload_template_and_replicas_may_change():
    assert updated("Deployment", [("spec.replicas", 5),
                                  ("spec.template.spec.containers.0.image", "b:2")]) == []
    assert updated("StatefulSet", [("spec.replicas", 5),
                                   ("spec.template.spec.containers.0.image", "b:2")]) == []


def test_statefulset_update_forbids_other_spec_fields():
    causes = updated("StatefulSet", [("spec.serviceName", "other")])
    assert_cause(causes, "spec", FORBIDDEN)
    assert "updates to statefulset spec for fields other than 'replicas'" in \
        causes[0]["message"]


def test_job_update_immutable_fields():
    assert_cause(updated("Job", [("spec.completions", 3)]), "spec.completions", INVALID)
    assert_cause(updated("Job", [("spec.template.spec.containers.0.image", "b:2")]),
                 "spec.template", INVALID)
    assert updated("Job", [("spec.template.spec.containers.0.image", "b:2"),
                           ("spec.suspend", True)], [("spec.suspend", True)]) == []
    assert updated("Job", [("spec.parallelism", 4)]) == []


def test_service_cluster_ip_is_immutable_once_set():
    old = [("spec.clusterIP", "10.96.0.10")]
    assert_cause(updated("Service", [("spec.clusterIP", "10.96.0.11")], old),
                 "spec.clusterIP", INVALID)
    assert_cause(updated("Service", [("spec.clusterIP", "")], old), "spec.clusterIP",
                 INVALID)
    assert updated("Service", [("spec.clusterIP", "10.96.0.10"), ("spec.ports.0.port", 81)],
                   old) == []
    assert updated("Service", [("spec.clusterIP", "10.96.0.10")]) == []  # first allocation


@pytest.mark.parametrize("kind, field", [("ConfigMap", "data"), ("Secret", "data")])
def test_immutable_data_may_not_change(kind, field):
    old = [("immutable", True)]
    causes = updated(kind, [(f"{field}.new-key", "YQ==")], old)
    assert causes == [{"field": field, "reason": FORBIDDEN, "message":
                       "Forbidden: field is immutable when `immutable` is set"}]
    assert_cause(updated(kind, [("immutable", False)], old), "immutable", FORBIDDEN)
    assert updated(kind, [("metadata.labels", {"a": "b"})], old) == []
    assert updated(kind, [(f"{field}.new-key", "YQ==")]) == []  # mutable while not immutable


def test_secret_type_is_immutable():
    assert_cause(updated("Secret", [("type", "Opaque")]), "type", INVALID)


def test_metadata_name_is_immutable():
    assert_cause(updated("ConfigMap", [("metadata.name", "other")]), "metadata.name", INVALID)
    assert_cause(updated("ConfigMap", [("metadata.uid", "b")], [("metadata.uid", "a")]),
                 "metadata.uid", INVALID)


# --- cron ---------------------------------------------------------------------------------

@pytest.mark.parametrize("schedule", [
    "* * * * *", "*/5 * * * *", "0 9-17 * * MON-FRI", "0 0 1,15 * *", "30 2 * JAN,jul sun",
    "0 0 1-31/2 * 1,3,5", "5/15 * * * *", "0 0 ? * *", "@hourly", "@daily", "@midnight",
    "@weekly", "@monthly", "@yearly", "@annually", "59 23 31 12 6",
])
def test_cron_accepts_standard_syntax(schedule):
    parse_cron(schedule)
    assert causes_for("CronJob", [("spec.schedule", schedule)]) == []


def test_cron_parses_to_value_sets():
    s = parse_cron("*/15 9-11 * JAN,MAR MON-FRI")
    assert s.minutes == {0, 15, 30, 45}
    assert s.hours == {9, 10, 11}
    assert s.days_of_month == frozenset(range(1, 32)) and s.dom_star
    assert s.months == {1, 3}
    assert s.days_of_week == {1, 2, 3, 4, 5} and not s.dow_star
    assert parse_cron("5/20 * * * *").minutes == {5, 25, 45}
    assert parse_cron("@hourly") == parse_cron("0 * * * *")


@pytest.mark.parametrize("schedule, message", [
    ("60 * * * *", "end of range (60) above maximum (59)"),
    ("0 0 0 * *", "beginning of range (0) below minimum (1)"),
    ("0 0 * * 7", "end of range (7) above maximum (6)"),
    ("5-1 * * * *", "beginning of range (5) beyond end of range (1)"),
    ("*/0 * * * *", "step of range should be a positive number"),
    ("* * * *", "expected exactly 5 fields, found 4"),
    ("x * * * *", "failed to parse int from x"),
    ("1-2-3 * * * *", "too many hyphens"),
    ("*/2/3 * * * *", "too many slashes"),
    ("@every 5m", "unrecognized descriptor"),
])
def test_cron_rejects_bad_schedules(schedule, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_cron(schedule)


# --- quantities -----------------------------------------------------------------------------

@pytest.mark.parametrize("text, value", [
    ("100m", Fraction(1, 10)), ("1.5", Fraction(3, 2)), ("128Mi", 128 * 2 ** 20),
    ("1G", 10 ** 9), ("2e3", 2000), ("1E-3", Fraction(1, 1000)), ("1Ki", 1024),
    ("500u", Fraction(1, 2000)), ("3n", Fraction(3, 10 ** 9)), ("0.5Gi", 2 ** 29),
    (".5", Fraction(1, 2)), ("+1", 1), ("-250m", Fraction(-1, 4)), ("2k", 2000),
    ("1Ei", 2 ** 60), ("7", 7), (2, 2), (0.25, Fraction(1, 4)),
])
def test_parse_quantity(text, value):
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "abc", "1 ", " 1", "1Kb", "1.2.3", ".", "1e", "m",
                                  "1ki", "1KI", "--1", "1m\n", True, None])
def test_parse_quantity_rejects(text):
    with pytest.raises(ValueError):
        parse_quantity(text)


def test_quantity_rounding_matches_kubernetes():
    assert milli_value_of("100m") == 100
    assert milli_value_of("0.0001") == 1  # rounds up
    assert value_of("1.5") == 2
    assert value_of("128Mi") == 134217728


# --- robustness ---------------------------------------------------------------------------

def _paths(obj, prefix=()):
    yield prefix
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) \
        if isinstance(obj, list) else ()
    for k, v in items:
        yield from _paths(v, prefix + (k,))


@pytest.mark.parametrize("kind", sorted(VALID))
def test_any_wrong_shape_yields_causes_never_an_exception(kind):
    garbage = [None, 7, "x", [], {}, ["x"], True]
    for path in list(_paths(VALID[kind]()))[1:]:
        for value in garbage:
            obj = VALID[kind]()
            put(obj, tuple(str(p) for p in path), copy.deepcopy(value))
            assert isinstance(validate(rt(kind), obj), list)
            assert isinstance(validate(rt(kind), obj, old=VALID[kind]()), list)
            assert isinstance(validate(rt(kind), VALID[kind](), old=obj), list)
            apply_defaults(rt(kind), obj)
