"""Kubernetes' defaults, applied by the API server before validation and storage.

Controllers, the scheduler and the kubelet read stored objects and must not each re-derive
what an unset field means: storing the defaults makes ``restartPolicy``, probe periods or a
Deployment's surge explicit once, exactly as ``kubectl get -o yaml`` shows them on a real
cluster, and lets validation check one complete object.

Every default only fills a field that is missing (or an empty string for enum-like string
fields), so applying defaults twice changes nothing, and a value the user wrote always wins.

Which defaults land where follows Kubernetes: pod spec and container defaults apply to Pods
and to every pod template; the ones Kubernetes sets only on Pods (``enableServiceLinks``,
``priority``, ``serviceAccountName`` from admission, requests copied from limits) are not
written into templates, so a template compares equal to what the user applied."""

from __future__ import annotations

import copy
from typing import Any, Callable

from minik8s.api.registry import ResourceType
from minik8s.api.selectors import label_value_errors

JOB_CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
JOB_NAME = "batch.kubernetes.io/job-name"
LEGACY_CONTROLLER_UID = "controller-uid"
LEGACY_JOB_NAME = "job-name"

# DefaultTolerationSeconds admission: every pod tolerates a not-ready or unreachable node for
# this long before the node lifecycle controller evicts it (kube-apiserver's
# --default-not-ready-toleration-seconds / --default-unreachable-toleration-seconds).
DEFAULT_TOLERATION_SECONDS = 300
TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"


def _default(obj: dict, key: str, value: Any) -> Any:
    """Set ``obj[key]`` to ``value`` when unset; return the (possibly existing) value."""
    current = obj.get(key)
    if current is None or (current == "" and isinstance(value, str)):
        obj[key] = copy.deepcopy(value)
    return obj[key]


def _child(obj: dict, key: str) -> dict:
    """The dict at ``obj[key]``, created when missing; a non-dict is left for validation."""
    value = obj.get(key)
    if value is None:
        value = obj[key] = {}
    return value if isinstance(value, dict) else {}


def _items(obj: dict, key: str) -> list[dict]:
    value = obj.get(key)
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


# --- containers and pod specs --------------------------------------------------------------

def image_pull_policy(image: str) -> str:
    """``Always`` for ``:latest`` or an untagged image, ``IfNotPresent`` otherwise."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.partition(":")[2]
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _http_get(handler: Any) -> None:
    if isinstance(handler, dict) and isinstance(handler.get("httpGet"), dict):
        _default(handler["httpGet"], "path", "/")
        _default(handler["httpGet"], "scheme", "HTTP")


_PROBE_DEFAULTS = {"timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1,
                   "failureThreshold": 3}


def _probe(probe: Any) -> None:
    if not isinstance(probe, dict):
        return
    for key, value in _PROBE_DEFAULTS.items():
        _default(probe, key, value)
    _http_get(probe)


def _container(c: dict, host_network: bool) -> None:
    if isinstance(c.get("image"), str) and c["image"]:
        _default(c, "imagePullPolicy", image_pull_policy(c["image"]))
    _default(c, "terminationMessagePath", "/dev/termination-log")
    _default(c, "terminationMessagePolicy", "File")
    for port in _items(c, "ports"):
        _default(port, "protocol", "TCP")
        if host_network and port.get("containerPort"):
            _default(port, "hostPort", port["containerPort"])
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        _probe(c.get(kind))
    lifecycle = c.get("lifecycle")
    if isinstance(lifecycle, dict):
        for hook in ("postStart", "preStop"):
            _http_get(lifecycle.get(hook))
    for var in _items(c, "env"):
        value_from = var.get("valueFrom")
        field_ref = value_from.get("fieldRef") if isinstance(value_from, dict) else None
        if isinstance(field_ref, dict):
            _default(field_ref, "apiVersion", "v1")


_MODE_SOURCES = ("configMap", "secret", "downwardAPI", "projected")


def _volume(volume: dict) -> None:
    for source in _MODE_SOURCES:
        if isinstance(volume.get(source), dict):
            _default(volume[source], "defaultMode", 0o644)
    if isinstance(volume.get("hostPath"), dict):
        _default(volume["hostPath"], "type", "")


def default_pod_spec(spec: dict) -> None:
    """The defaults of ``SetDefaults_PodSpec`` and its containers (Pods and templates)."""
    _default(spec, "restartPolicy", "Always")
    _default(spec, "dnsPolicy", "ClusterFirst")
    _default(spec, "schedulerName", "default-scheduler")
    _default(spec, "terminationGracePeriodSeconds", 30)
    _default(spec, "securityContext", {})
    host_network = bool(spec.get("hostNetwork"))
    for key in ("initContainers", "containers"):
        for c in _items(spec, key):
            _container(c, host_network)
    for volume in _items(spec, "volumes"):
        _volume(volume)


def _pod(obj: dict) -> None:
    spec = _child(obj, "spec")
    default_pod_spec(spec)
    _default(spec, "serviceAccountName", "default")
    _default(spec, "enableServiceLinks", True)
    _default(spec, "priority", 0)
    for key in ("initContainers", "containers"):
        for c in _items(spec, key):
            _requests_from_limits(c)
    _default_tolerations(spec)


def _default_tolerations(spec: dict) -> None:
    """Kubernetes' DefaultTolerationSeconds: tolerate ``not-ready`` and ``unreachable``
    NoExecute taints for ``DEFAULT_TOLERATION_SECONDS`` unless some toleration already
    covers that taint key (an empty key) with NoExecute (or any effect)."""
    tolerations = spec.get("tolerations")
    if tolerations is None:
        tolerations = []
    if not isinstance(tolerations, list):
        return
    for key in (TAINT_NOT_READY, TAINT_UNREACHABLE):
        if any(isinstance(t, dict) and (t.get("key") or "") in ("", key)
               and (t.get("effect") or "") in ("", "NoExecute") for t in tolerations):
            continue
        tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                            "tolerationSeconds": DEFAULT_TOLERATION_SECONDS})
    if tolerations:
        spec["tolerations"] = tolerations


def _requests_from_limits(c: dict) -> None:
    resources = c.get("resources")
    if not isinstance(resources, dict) or not isinstance(resources.get("limits"), dict):
        return
    if not resources["limits"]:
        return
    requests = _child(resources, "requests")
    for name, value in resources["limits"].items():
        requests.setdefault(name, value)


def _template(spec: dict) -> dict:
    """The pod template under a workload spec, with pod spec defaults applied."""
    template = _child(spec, "template")
    default_pod_spec(_child(template, "spec"))
    return template


# --- workloads -----------------------------------------------------------------------------

def _rolling(strategy: dict, **values: Any) -> None:
    """Fill ``type`` and, for RollingUpdate, the ``rollingUpdate`` parameters."""
    if _default(strategy, "type", "RollingUpdate") != "RollingUpdate":
        return
    rolling = _child(strategy, "rollingUpdate")
    for key, value in values.items():
        _default(rolling, key, value)


def _deployment(obj: dict) -> None:
    spec = _child(obj, "spec")
    _default(spec, "replicas", 1)
    _rolling(_child(spec, "strategy"), maxUnavailable="25%", maxSurge="25%")
    _default(spec, "revisionHistoryLimit", 10)
    _default(spec, "progressDeadlineSeconds", 600)
    _template(spec)


def _replicaset(obj: dict) -> None:
    spec = _child(obj, "spec")
    _default(spec, "replicas", 1)
    _template(spec)


def _statefulset(obj: dict) -> None:
    spec = _child(obj, "spec")
    _default(spec, "replicas", 1)
    _default(spec, "podManagementPolicy", "OrderedReady")
    _rolling(_child(spec, "updateStrategy"), partition=0)
    _default(spec, "revisionHistoryLimit", 10)
    retention = _child(spec, "persistentVolumeClaimRetentionPolicy")
    _default(retention, "whenDeleted", "Retain")
    _default(retention, "whenScaled", "Retain")
    _template(spec)


def _daemonset(obj: dict) -> None:
    spec = _child(obj, "spec")
    _rolling(_child(spec, "updateStrategy"), maxUnavailable=1, maxSurge=0)
    _default(spec, "revisionHistoryLimit", 10)
    _template(spec)


def _job(obj: dict) -> None:
    spec = _child(obj, "spec")
    # A Job with only ``parallelism`` is a work queue: completions stays unset.
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    _default(spec, "parallelism", 1)
    _default(spec, "backoffLimit", 6)
    _default(spec, "completionMode", "NonIndexed")
    _default(spec, "suspend", False)
    _default(spec, "podReplacementPolicy",
             "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed")
    template = _template(spec)
    _job_selector(obj, spec, template)


def _job_selector(obj: dict, spec: dict, template: dict) -> None:
    """Select the Job's pods by its uid, as Kubernetes does unless ``manualSelector``."""
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    uid, name = meta.get("uid"), meta.get("name")
    if not isinstance(uid, str) or not uid or spec.get("manualSelector") is True:
        return
    labels = _child(_child(template, "metadata"), "labels")
    labels.setdefault(LEGACY_CONTROLLER_UID, uid)
    labels.setdefault(JOB_CONTROLLER_UID, uid)
    if isinstance(name, str) and name and not label_value_errors(name):
        labels.setdefault(LEGACY_JOB_NAME, name)
        labels.setdefault(JOB_NAME, name)
    match_labels = _child(_child(spec, "selector"), "matchLabels")
    match_labels.setdefault(JOB_CONTROLLER_UID, uid)


def _cronjob(obj: dict) -> None:
    spec = _child(obj, "spec")
    _default(spec, "concurrencyPolicy", "Allow")
    _default(spec, "suspend", False)
    _default(spec, "successfulJobsHistoryLimit", 3)
    _default(spec, "failedJobsHistoryLimit", 1)
    _template(_child(_child(spec, "jobTemplate"), "spec"))


# --- services and the rest ----------------------------------------------------------------

def _service(obj: dict) -> None:
    spec = _child(obj, "spec")
    svc_type = _default(spec, "type", "ClusterIP")
    if _default(spec, "sessionAffinity", "None") == "ClientIP":
        client_ip = _child(_child(spec, "sessionAffinityConfig"), "clientIP")
        _default(client_ip, "timeoutSeconds", 10800)
    for port in _items(spec, "ports"):
        _default(port, "protocol", "TCP")
        if port.get("targetPort") in (None, 0, "") and port.get("port") is not None:
            port["targetPort"] = port["port"]
    if svc_type == "ExternalName":
        return
    _default(spec, "ipFamilies", ["IPv4"])
    _default(spec, "ipFamilyPolicy", "SingleStack")
    _default(spec, "internalTrafficPolicy", "Cluster")
    if svc_type in ("NodePort", "LoadBalancer"):
        _default(spec, "externalTrafficPolicy", "Cluster")
    if svc_type == "LoadBalancer":
        _default(spec, "allocateLoadBalancerNodePorts", True)


def _endpoints(obj: dict) -> None:
    for subset in _items(obj, "subsets"):
        for port in _items(subset, "ports"):
            _default(port, "protocol", "TCP")


def _secret(obj: dict) -> None:
    _default(obj, "type", "Opaque")


def _pvc(obj: dict) -> None:
    _default(_child(obj, "spec"), "volumeMode", "Filesystem")
    _default(_child(obj, "status"), "phase", "Pending")


def _namespace(obj: dict) -> None:
    _default(_child(obj, "status"), "phase", "Active")


_SCALE_UP = {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
    {"type": "Percent", "value": 100, "periodSeconds": 15},
    {"type": "Pods", "value": 4, "periodSeconds": 15}]}
_SCALE_DOWN = {"selectPolicy": "Max", "policies": [
    {"type": "Percent", "value": 100, "periodSeconds": 15}]}


def _hpa(obj: dict) -> None:
    spec = _child(obj, "spec")
    _default(spec, "minReplicas", 1)
    if not spec.get("metrics"):
        spec["metrics"] = [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]
    behavior = spec.get("behavior")
    if isinstance(behavior, dict):
        # scaleDown's window is left unset: the controller falls back to its
        # --horizontal-pod-autoscaler-downscale-stabilization flag (300s), as in Kubernetes.
        for key, rules in (("scaleUp", _SCALE_UP), ("scaleDown", _SCALE_DOWN)):
            target = _child(behavior, key)
            for field, value in rules.items():
                _default(target, field, value)


DEFAULTERS: dict[str, Callable[[dict], None]] = {
    "Pod": _pod,
    "Deployment": _deployment,
    "ReplicaSet": _replicaset,
    "StatefulSet": _statefulset,
    "DaemonSet": _daemonset,
    "Job": _job,
    "CronJob": _cronjob,
    "Service": _service,
    "Endpoints": _endpoints,
    "Secret": _secret,
    "Namespace": _namespace,
    "PersistentVolumeClaim": _pvc,
    "HorizontalPodAutoscaler": _hpa,
}


def apply_defaults(rt: ResourceType, obj: dict) -> None:
    """Fill ``obj``'s unset fields in place with Kubernetes' defaults for ``rt.kind``.

    Give a Job its ``metadata.uid`` first: its selector and pod labels are derived from it."""
    defaulter = DEFAULTERS.get(rt.kind)
    if defaulter is not None and isinstance(obj, dict):
        defaulter(obj)


__all__ = ["apply_defaults", "default_pod_spec", "image_pull_policy", "DEFAULTERS",
           "DEFAULT_TOLERATION_SECONDS", "TAINT_NOT_READY", "TAINT_UNREACHABLE",
           "JOB_CONTROLLER_UID", "JOB_NAME", "LEGACY_CONTROLLER_UID", "LEGACY_JOB_NAME"]
