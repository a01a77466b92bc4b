"""Defaults: Kubernetes' values land where Kubernetes puts them, never over a user's value,
and applying them twice changes nothing."""

import copy

import pytest

from minik8s.api.defaults import (JOB_CONTROLLER_UID, JOB_NAME, apply_defaults,
                                  image_pull_policy)
from minik8s.api.registry import REGISTRY


def rt(kind):
    return next(t for t in REGISTRY if t.kind == kind)


def defaulted(kind, obj):
    apply_defaults(rt(kind), obj)
    return obj


def pod_spec(image="busybox:1.36", **extra):
    return {"containers": [{"name": "app", "image": image}], **extra}


def template(**extra):
    return {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec(**extra)}


def workload(**spec):
    return {"metadata": {"name": "web", "namespace": "default", "uid": "uid-1"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template(),
                     **spec}}


# --- pods -----------------------------------------------------------------------------------

def test_pod_spec_defaults():
    pod = defaulted("Pod", {"metadata": {"name": "p"}, "spec": pod_spec()})
    spec = pod["spec"]
    assert {k: v for k, v in spec.items() if k != "containers"} == {
        "restartPolicy": "Always",
        "dnsPolicy": "ClusterFirst",
        "schedulerName": "default-scheduler",
        "terminationGracePeriodSeconds": 30,
        "securityContext": {},
        "serviceAccountName": "default",
        "enableServiceLinks": True,
        "priority": 0,
        "tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
             "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
             "effect": "NoExecute", "tolerationSeconds": 300}],
    }
    assert spec["containers"] == [{
        "name": "app", "image": "busybox:1.36", "imagePullPolicy": "IfNotPresent",
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }]


@pytest.mark.parametrize("tolerations, added", [
    ([], ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"]),
    ([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
       "tolerationSeconds": 5}], ["node.kubernetes.io/not-ready"]),
    ([{"operator": "Exists"}], []),
    ([{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoSchedule"}],
     ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"]),
])
def test_default_toleration_seconds_only_where_not_tolerated(tolerations, added):
    pod = defaulted("Pod", {"metadata": {"name": "p"},
                            "spec": pod_spec(tolerations=[dict(t) for t in tolerations])})
    tols = pod["spec"]["tolerations"]
    assert tols[:len(tolerations)] == tolerations
    assert [(t["key"], t["tolerationSeconds"]) for t in tols[len(tolerations):]] == [
        (k, 300) for k in added]
    again = defaulted("Pod", pod)
    assert again["spec"]["tolerations"] == tols


def test_templates_get_no_default_tolerations():
    dep = defaulted("Deployment", workload())
    assert "tolerations" not in dep["spec"]["template"]["spec"]


@pytest.mark.parametrize("image, policy", [
    ("busybox", "Always"),
    ("busybox:latest", "Always"),
    ("busybox:1.36", "IfNotPresent"),
    ("localhost:5000/busybox", "Always"),
    ("localhost:5000/busybox:1.36", "IfNotPresent"),
    ("localhost:5000/team/busybox:latest", "Always"),
    ("busybox@sha256:" + "a" * 64, "IfNotPresent"),
    ("minik8s/python:3.11-slim", "IfNotPresent"),
])
def test_image_pull_policy(image, policy):
    assert image_pull_policy(image) == policy
    pod = defaulted("Pod", {"spec": pod_spec(image)})
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == policy


def test_container_ports_probes_and_init_containers():
    spec = pod_spec()
    c = spec["containers"][0]
    c["ports"] = [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}]
    c["livenessProbe"] = {"httpGet": {"port": 80}}
    c["readinessProbe"] = {"tcpSocket": {"port": 80}, "periodSeconds": 2}
    c["lifecycle"] = {"preStop": {"httpGet": {"port": 80, "path": "/quit"}}}
    c["env"] = [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    spec["initContainers"] = [{"name": "init", "image": "busybox"}]
    spec["volumes"] = [{"name": "cfg", "configMap": {"name": "cfg"}},
                       {"name": "s", "secret": {"secretName": "s", "defaultMode": 0o400}}]
    spec = defaulted("Pod", {"spec": spec})["spec"]
    c = spec["containers"][0]
    assert [p["protocol"] for p in c["ports"]] == ["TCP", "UDP"]
    assert c["livenessProbe"] == {
        "httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
        "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1,
        "failureThreshold": 3}
    assert c["readinessProbe"]["periodSeconds"] == 2
    assert c["readinessProbe"]["failureThreshold"] == 3
    assert c["lifecycle"]["preStop"]["httpGet"] == {"port": 80, "path": "/quit",
                                                    "scheme": "HTTP"}
    assert c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"] == "v1"
    assert spec["initContainers"][0]["imagePullPolicy"] == "Always"
    assert spec["initContainers"][0]["terminationMessagePolicy"] == "File"
    assert spec["volumes"][0]["configMap"]["defaultMode"] == 0o644
    assert spec["volumes"][1]["secret"]["defaultMode"] == 0o400


def test_host_network_ports_get_host_port():
    spec = pod_spec(hostNetwork=True)
    spec["containers"][0]["ports"] = [{"containerPort": 8080}]
    spec = defaulted("Pod", {"spec": spec})["spec"]
    assert spec["containers"][0]["ports"][0]["hostPort"] == 8080


def test_pod_requests_default_to_limits():
    spec = pod_spec()
    spec["containers"][0]["resources"] = {"limits": {"cpu": "1", "memory": "1Gi"},
                                          "requests": {"cpu": "250m"}}
    spec = defaulted("Pod", {"spec": spec})["spec"]
    assert spec["containers"][0]["resources"]["requests"] == {"cpu": "250m",
                                                              "memory": "1Gi"}


def test_user_values_are_kept():
    spec = pod_spec(restartPolicy="Never", dnsPolicy="Default", schedulerName="mine",
                    terminationGracePeriodSeconds=0, serviceAccountName="builder",
                    enableServiceLinks=False, priority=5)
    spec["containers"][0]["imagePullPolicy"] = "Never"
    spec = defaulted("Pod", {"spec": spec})["spec"]
    assert (spec["restartPolicy"], spec["dnsPolicy"], spec["schedulerName"]) == (
        "Never", "Default", "mine")
    assert spec["terminationGracePeriodSeconds"] == 0
    assert spec["serviceAccountName"] == "builder"
    assert spec["enableServiceLinks"] is False and spec["priority"] == 5
    assert spec["containers"][0]["imagePullPolicy"] == "Never"


def test_empty_string_enums_count_as_unset():
    spec = defaulted("Pod", {"spec": pod_spec(restartPolicy="")})["spec"]
    assert spec["restartPolicy"] == "Always"


# --- workloads ------------------------------------------------------------------------------

def test_deployment_defaults():
    spec = defaulted("Deployment", workload())["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate",
                                "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    tspec = spec["template"]["spec"]
    assert tspec["restartPolicy"] == "Always"
    assert tspec["dnsPolicy"] == "ClusterFirst"
    assert tspec["terminationGracePeriodSeconds"] == 30
    assert tspec["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    # Pod-only defaults stay out of templates.
    assert "serviceAccountName" not in tspec and "priority" not in tspec


def test_deployment_recreate_gets_no_rolling_parameters():
    spec = defaulted("Deployment", workload(strategy={"type": "Recreate"}))["spec"]
    assert spec["strategy"] == {"type": "Recreate"}


def test_deployment_partial_rolling_update_is_completed():
    spec = defaulted("Deployment", workload(strategy={"rollingUpdate": {"maxSurge": 0}}))[
        "spec"]
    assert spec["strategy"] == {"type": "RollingUpdate",
                                "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "25%"}}


def test_replicaset_defaults_keep_user_replicas():
    assert defaulted("ReplicaSet", workload())["spec"]["replicas"] == 1
    assert defaulted("ReplicaSet", workload(replicas=0))["spec"]["replicas"] == 0


def test_statefulset_defaults():
    spec = defaulted("StatefulSet", workload(serviceName="web"))["spec"]
    assert spec["replicas"] == 1
    assert spec["podManagementPolicy"] == "OrderedReady"
    assert spec["updateStrategy"] == {"type": "RollingUpdate",
                                      "rollingUpdate": {"partition": 0}}
    assert spec["revisionHistoryLimit"] == 10
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain",
                                                            "whenScaled": "Retain"}
    assert spec["template"]["spec"]["schedulerName"] == "default-scheduler"


def test_daemonset_defaults():
    spec = defaulted("DaemonSet", workload())["spec"]
    assert spec["updateStrategy"] == {"type": "RollingUpdate",
                                      "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert spec["revisionHistoryLimit"] == 10
    assert "replicas" not in spec
    on_delete = defaulted("DaemonSet", workload(updateStrategy={"type": "OnDelete"}))
    assert on_delete["spec"]["updateStrategy"] == {"type": "OnDelete"}


def job(uid="uid-1", name="pi", **spec):
    meta = {"name": name, "namespace": "default"}
    if uid:
        meta["uid"] = uid
    return {"metadata": meta, "spec": {"template": {"spec": pod_spec(restartPolicy="Never")},
                                       **spec}}


def test_job_defaults():
    spec = defaulted("Job", job())["spec"]
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (1, 1, 6)
    assert spec["completionMode"] == "NonIndexed"
    assert spec["suspend"] is False
    assert spec["podReplacementPolicy"] == "TerminatingOrFailed"
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    assert spec["template"]["spec"]["dnsPolicy"] == "ClusterFirst"


def test_job_work_queue_keeps_completions_unset():
    spec = defaulted("Job", job(parallelism=3))["spec"]
    assert spec["parallelism"] == 3 and "completions" not in spec
    spec = defaulted("Job", job(completions=5))["spec"]
    assert (spec["completions"], spec["parallelism"]) == (5, 1)


def test_job_selector_generated_from_uid():
    obj = defaulted("Job", job())
    assert obj["spec"]["selector"] == {"matchLabels": {JOB_CONTROLLER_UID: "uid-1"}}
    assert obj["spec"]["template"]["metadata"]["labels"] == {
        "controller-uid": "uid-1", JOB_CONTROLLER_UID: "uid-1",
        "job-name": "pi", JOB_NAME: "pi"}
    assert "labels" not in obj["metadata"]


def test_job_generated_labels_keep_user_labels():
    obj = job()
    obj["spec"]["template"]["metadata"] = {"labels": {"app": "pi"}}
    labels = defaulted("Job", obj)["spec"]["template"]["metadata"]["labels"]
    assert labels["app"] == "pi" and labels[JOB_CONTROLLER_UID] == "uid-1"


def test_job_manual_selector_is_left_alone():
    obj = job(manualSelector=True, selector={"matchLabels": {"app": "pi"}})
    obj["spec"]["template"]["metadata"] = {"labels": {"app": "pi"}}
    spec = defaulted("Job", obj)["spec"]
    assert spec["selector"] == {"matchLabels": {"app": "pi"}}
    assert spec["template"]["metadata"]["labels"] == {"app": "pi"}


def test_job_without_uid_gets_no_selector():
    spec = defaulted("Job", job(uid=None))["spec"]
    assert "selector" not in spec
    assert "metadata" not in spec["template"]


def test_job_name_too_long_for_a_label_is_not_copied():
    name = "j" * 64
    labels = defaulted("Job", job(name=name))["spec"]["template"]["metadata"]["labels"]
    assert JOB_NAME not in labels and "job-name" not in labels
    assert labels[JOB_CONTROLLER_UID] == "uid-1"


def test_cronjob_defaults():
    obj = {"metadata": {"name": "c"}, "spec": {"schedule": "@hourly", "jobTemplate": {
        "spec": {"template": {"spec": pod_spec(restartPolicy="OnFailure")}}}}}
    spec = defaulted("CronJob", obj)["spec"]
    assert spec["concurrencyPolicy"] == "Allow"
    assert spec["suspend"] is False
    assert spec["successfulJobsHistoryLimit"] == 3
    assert spec["failedJobsHistoryLimit"] == 1
    tspec = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert tspec["restartPolicy"] == "OnFailure"
    assert tspec["terminationGracePeriodSeconds"] == 30
    # Job-level defaults come when the controller creates the Job, not in the template.
    assert "backoffLimit" not in spec["jobTemplate"]["spec"]


# --- services and the rest ----------------------------------------------------------------

def test_service_defaults():
    obj = {"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [
        {"port": 80}, {"port": 53, "protocol": "UDP", "targetPort": "dns"}]}}
    spec = defaulted("Service", obj)["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["sessionAffinity"] == "None"
    assert spec["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80},
                             {"port": 53, "protocol": "UDP", "targetPort": "dns"}]
    assert spec["ipFamilies"] == ["IPv4"]
    assert spec["ipFamilyPolicy"] == "SingleStack"
    assert spec["internalTrafficPolicy"] == "Cluster"
    assert "externalTrafficPolicy" not in spec


def test_node_port_and_load_balancer_services():
    np_spec = defaulted("Service", {"spec": {"type": "NodePort", "ports": [{"port": 80}]}})[
        "spec"]
    assert np_spec["externalTrafficPolicy"] == "Cluster"
    lb_spec = defaulted("Service", {"spec": {"type": "LoadBalancer",
                                             "ports": [{"port": 80}]}})["spec"]
    assert lb_spec["allocateLoadBalancerNodePorts"] is True


def test_client_ip_affinity_gets_timeout():
    spec = defaulted("Service", {"spec": {"sessionAffinity": "ClientIP",
                                          "ports": [{"port": 80}]}})["spec"]
    assert spec["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}


def test_external_name_service_gets_no_ip_families():
    spec = defaulted("Service", {"spec": {"type": "ExternalName",
                                          "externalName": "db.example.com"}})["spec"]
    assert spec == {"type": "ExternalName", "externalName": "db.example.com",
                    "sessionAffinity": "None"}


def test_secret_namespace_endpoints_defaults():
    assert defaulted("Secret", {"data": {}})["type"] == "Opaque"
    assert defaulted("Secret", {"type": "kubernetes.io/tls"})["type"] == "kubernetes.io/tls"
    assert defaulted("Namespace", {"metadata": {"name": "a"}})["status"] == {"phase": "Active"}
    terminating = {"metadata": {"name": "a"}, "status": {"phase": "Terminating"}}
    assert defaulted("Namespace", terminating)["status"]["phase"] == "Terminating"
    ep = defaulted("Endpoints", {"subsets": [{"ports": [{"port": 80}]}]})
    assert ep["subsets"][0]["ports"][0]["protocol"] == "TCP"


def test_hpa_defaults():
    obj = {"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"},
                    "maxReplicas": 4}}
    spec = defaulted("HorizontalPodAutoscaler", obj)["spec"]
    assert spec["minReplicas"] == 1
    assert spec["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]
    assert "behavior" not in spec


def test_hpa_behavior_is_completed_when_given():
    obj = {"spec": {"maxReplicas": 4, "minReplicas": 2,
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}}
    spec = defaulted("HorizontalPodAutoscaler", obj)["spec"]
    assert spec["minReplicas"] == 2
    assert spec["behavior"]["scaleDown"] == {
        "stabilizationWindowSeconds": 60, "selectPolicy": "Max",
        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}
    assert spec["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert spec["behavior"]["scaleUp"]["policies"][1] == {"type": "Pods", "value": 4,
                                                          "periodSeconds": 15}


def test_kinds_without_defaults_are_untouched():
    cm = {"metadata": {"name": "c"}, "data": {"a": "b"}}
    assert defaulted("ConfigMap", copy.deepcopy(cm)) == cm
    lease = {"metadata": {"name": "l"}, "spec": {}}
    assert defaulted("Lease", copy.deepcopy(lease)) == lease


# --- idempotency ------------------------------------------------------------------------------

EXAMPLES = {
    "Pod": lambda: {"metadata": {"name": "p"}, "spec": pod_spec(
        containers=[{"name": "a", "image": "b", "ports": [{"containerPort": 1}],
                     "resources": {"limits": {"cpu": "1"}},
                     "livenessProbe": {"httpGet": {"port": 1}}}])},
    "Deployment": lambda: workload(),
    "ReplicaSet": lambda: workload(),
    "StatefulSet": lambda: workload(),
    "DaemonSet": lambda: workload(),
    "Job": lambda: job(),
    "CronJob": lambda: {"spec": {"jobTemplate": {"spec": {"template": template()}}}},
    "Service": lambda: {"spec": {"sessionAffinity": "ClientIP", "type": "LoadBalancer",
                                 "ports": [{"port": 80}]}},
    "Secret": lambda: {},
    "Namespace": lambda: {},
    "HorizontalPodAutoscaler": lambda: {"spec": {"behavior": {}}},
    "Endpoints": lambda: {"subsets": [{"ports": [{"port": 1}]}]},
}


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_defaults_are_idempotent(kind):
    once = defaulted(kind, EXAMPLES[kind]())
    twice = defaulted(kind, copy.deepcopy(once))
    assert twice == once
    assert once != EXAMPLES[kind]()  # and they did something


@pytest.mark.parametrize("kind", sorted(t.kind for t in REGISTRY))
def test_every_kind_accepts_an_empty_object(kind):
    obj = {}
    apply_defaults(rt(kind), obj)
    again = copy.deepcopy(obj)
    apply_defaults(rt(kind), again)
    assert again == obj
