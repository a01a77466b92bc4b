"""Server-side Table output: the columns and cells kubectl 1.32 shows for each kind."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from apiserver.tables import PRINTERS, human_duration, table_api_version, table_wanted, to_table
from minik8s.api.registry import REGISTRY, ResourceType

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
KUBECTL_ACCEPT = ("application/json;as=Table;v=v1;g=meta.k8s.io,"
                  "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json")


def ago(seconds: float) -> str:
    return (NOW - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def rt(name: str) -> ResourceType:
    found = REGISTRY.resolve(name)
    assert found is not None, name
    return found


def row(resource: str, obj: dict) -> dict[str, object]:
    """The cells of one object, keyed by column name."""
    table = to_table(rt(resource), [obj], now=NOW)
    names = [c["name"] for c in table["columnDefinitions"]]
    cells = table["rows"][0]["cells"]
    assert len(cells) == len(names)
    return dict(zip(names, cells))


# --------------------------------------------------------------------------- human_duration

@pytest.mark.parametrize("seconds, text", [
    (-5, "<invalid>"), (-1.5, "0s"), (0, "0s"), (5, "5s"), (10.9, "10s"), (119, "119s"),
    (120, "2m"), (182, "3m2s"), (599, "9m59s"), (600, "10m"), (179 * 60 + 59, "179m"),
    (3 * 3600, "3h"), (4 * 3600 + 30 * 60, "4h30m"), (8 * 3600 + 59 * 60, "8h"),
    (47 * 3600, "47h"), (48 * 3600, "2d"), (51 * 3600, "2d3h"), (8 * 86400, "8d"),
    (45 * 86400, "45d"), (729 * 86400, "729d"), (730 * 86400, "2y"),
    (760 * 86400, "2y30d"), (8 * 365 * 86400, "8y"), (20 * 365 * 86400, "20y"),
])
def test_human_duration_follows_kubernetes_rules(seconds, text):
    assert human_duration(seconds) == text


# --------------------------------------------------------------------------- Accept handling

@pytest.mark.parametrize("accept, version", [
    (KUBECTL_ACCEPT, "meta.k8s.io/v1"),
    ("application/json;as=Table;v=v1beta1;g=meta.k8s.io", "meta.k8s.io/v1beta1"),
    ("application/json; as=Table; g=meta.k8s.io; v=v1", "meta.k8s.io/v1"),
    ("application/json;as=Table;v=v2;g=meta.k8s.io,application/json", None),
    ("application/json;as=Table;v=v1;g=other.io", None),
    ("application/json", None),
    ("application/json,application/json;as=Table;v=v1;g=meta.k8s.io", None),
    ("application/json;q=0.5,application/json;as=Table;v=v1;g=meta.k8s.io", "meta.k8s.io/v1"),
    ("application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io", None),
    ("", None),
])
def test_table_negotiation(accept, version):
    assert table_api_version(accept) == version
    assert table_wanted(accept) is (version is not None)


# --------------------------------------------------------------------------- table shape

POD = {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                    "resourceVersion": "7", "creationTimestamp": ago(300)},
       "spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Pending"}}


def test_table_envelope_and_partial_metadata_by_default():
    table = to_table(rt("pods"), [POD], resource_version="42", continue_token="abc", now=NOW)
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert table["metadata"] == {"resourceVersion": "42", "continue": "abc"}
    first = table["columnDefinitions"][0]
    assert first["name"] == "Name" and first["format"] == "name" and first["priority"] == 0
    assert set(first) == {"name", "type", "format", "description", "priority"}
    assert table["rows"][0]["object"] == {"kind": "PartialObjectMetadata",
                                          "apiVersion": "meta.k8s.io/v1",
                                          "metadata": POD["metadata"]}


@pytest.mark.parametrize("mode", ["Object", "Metadata", "None", ""])
def test_include_object_modes(mode):
    obj = to_table(rt("pods"), [POD], include_object=mode, now=NOW)["rows"][0]["object"]
    if mode == "Object":
        assert obj is POD
    elif mode == "None":
        assert obj is None
    else:
        assert obj["kind"] == "PartialObjectMetadata"


def test_include_object_fills_type_meta_and_rejects_unknown_values():
    bare = {"metadata": {"name": "x"}}
    obj = to_table(rt("deployments"), [bare], include_object="Object", now=NOW)["rows"][0]["object"]
    assert (obj["kind"], obj["apiVersion"]) == ("Deployment", "apps/v1")
    assert "kind" not in bare
    with pytest.raises(ValueError, match="includeObject"):
        to_table(rt("pods"), [POD], include_object="Everything")


def test_table_api_version_is_used_for_partial_metadata():
    table = to_table(rt("pods"), [POD], api_version="meta.k8s.io/v1beta1", now=NOW)
    assert table["apiVersion"] == "meta.k8s.io/v1beta1"
    assert table["rows"][0]["object"]["apiVersion"] == "meta.k8s.io/v1beta1"


WIDE = object()  # marker: the column is priority 1

COLUMNS = {
    "Pod": ["Name", "Ready", "Status", "Restarts", "Age", ("IP", WIDE), ("Node", WIDE),
            ("Nominated Node", WIDE), ("Readiness Gates", WIDE)],
    "Node": ["Name", "Status", "Roles", "Age", "Version", ("Internal-IP", WIDE),
             ("External-IP", WIDE), ("OS-Image", WIDE), ("Kernel-Version", WIDE),
             ("Container-Runtime", WIDE)],
    "Namespace": ["Name", "Status", "Age"],
    "Service": ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age",
                ("Selector", WIDE)],
    "Endpoints": ["Name", "Endpoints", "Age"],
    "ConfigMap": ["Name", "Data", "Age"],
    "Secret": ["Name", "Type", "Data", "Age"],
    "ServiceAccount": ["Name", "Secrets", "Age"],
    "Event": ["Last Seen", "Type", "Reason", "Object", ("Subobject", WIDE), ("Source", WIDE),
              "Message", ("First Seen", WIDE), ("Count", WIDE), ("Name", WIDE)],
    "Deployment": ["Name", "Ready", "Up-to-date", "Available", "Age", ("Containers", WIDE),
                   ("Images", WIDE), ("Selector", WIDE)],
    "ReplicaSet": ["Name", "Desired", "Current", "Ready", "Age", ("Containers", WIDE),
                   ("Images", WIDE), ("Selector", WIDE)],
    "StatefulSet": ["Name", "Ready", "Age", ("Containers", WIDE), ("Images", WIDE)],
    "DaemonSet": ["Name", "Desired", "Current", "Ready", "Up-to-date", "Available",
                  "Node Selector", "Age", ("Containers", WIDE), ("Images", WIDE),
                  ("Selector", WIDE)],
    "Job": ["Name", "Status", "Completions", "Duration", "Age", ("Containers", WIDE),
            ("Images", WIDE), ("Selector", WIDE)],
    "CronJob": ["Name", "Schedule", "Timezone", "Suspend", "Active", "Last Schedule", "Age",
                ("Containers", WIDE), ("Images", WIDE), ("Selector", WIDE)],
    "Lease": ["Name", "Holder", "Age"],
    "CertificateSigningRequest": ["Name", "Age", "SignerName", "Requestor",
                                  "RequestedDuration", "Condition"],
    "PersistentVolumeClaim": ["Name", "Status", "Volume", "Capacity", "Access Modes",
                              "StorageClass", ("VolumeAttributesClass", WIDE), "Age",
                              ("VolumeMode", WIDE)],
    "ControllerRevision": ["Name", "Controller", "Revision", "Age"],
    "HorizontalPodAutoscaler": ["Name", "Reference", "Targets", "MinPods", "MaxPods",
                                "Replicas", "Age"],
}


@pytest.mark.parametrize("resource", list(REGISTRY), ids=lambda t: t.kind)
def test_columns_match_kubernetes_printers(resource):
    expected = [(c[0], 1) if isinstance(c, tuple) else (c, 0) for c in COLUMNS[resource.kind]]
    table = to_table(resource, [], now=NOW)
    assert [(c["name"], c["priority"]) for c in table["columnDefinitions"]] == expected
    named = [c for c in table["columnDefinitions"] if c["format"] == "name"]
    assert [c["name"] for c in named] == ["Name"]


def test_every_registry_kind_has_a_printer_and_unknown_kinds_get_name_and_age():
    assert {(t.group, t.kind) for t in REGISTRY} <= set(PRINTERS)
    widget = ResourceType("example.com", "v1", "Widget", "widgets")
    table = to_table(widget, [{"metadata": {"name": "w", "creationTimestamp": ago(5)}}],
                     now=NOW)
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Age"]
    assert table["rows"][0]["cells"] == ["w", "5s"]


MALFORMED = [{}, {"metadata": None, "spec": "x", "status": 5},
             {"metadata": {"name": 3, "creationTimestamp": "yesterday", "labels": []},
              "spec": {"containers": "none", "selector": [], "replicas": "3", "ports": [1]},
              "status": {"conditions": [None, "x"], "containerStatuses": [{"state": 1}],
                         "currentMetrics": "x"},
              "subsets": [{"addresses": None}], "data": "abc"}]


@pytest.mark.parametrize("resource", list(REGISTRY), ids=lambda t: t.kind)
def test_missing_or_mistyped_fields_never_raise(resource):
    table = to_table(resource, MALFORMED, now=NOW)
    width = len(table["columnDefinitions"])
    assert all(len(r["cells"]) == width for r in table["rows"])


def test_missing_timestamp_reads_unknown():
    assert row("configmaps", {"metadata": {"name": "c"}})["Age"] == "<unknown>"


# --------------------------------------------------------------------------- pods

def status(name, **state):
    return {"name": name, "ready": state.pop("ready", False),
            "restartCount": state.pop("restarts", 0), **state}


RUNNING = {"running": {"startedAt": ago(100)}}

POD_CASES = [
    ("running", {"spec": {"containers": [{"name": "a"}, {"name": "b"}]},
                 "status": {"phase": "Running", "containerStatuses": [
                     status("a", ready=True, state=RUNNING),
                     status("b", ready=True, state=RUNNING)]}},
     "2/2", "Running", "0"),
    ("crashloop with last restart", {
        "spec": {"containers": [{"name": "a"}]},
        "status": {"phase": "Running", "containerStatuses": [status(
            "a", restarts=5, state={"waiting": {"reason": "CrashLoopBackOff"}},
            lastState={"terminated": {"finishedAt": ago(300), "exitCode": 1}})]}},
     "0/1", "CrashLoopBackOff", "5 (5m ago)"),
    ("pending without statuses", {"spec": {"containers": [{"name": "a"}]},
                                  "status": {"phase": "Pending"}},
     "0/1", "Pending", "0"),
    ("first init container running", {
        "spec": {"initContainers": [{"name": "i1"}, {"name": "i2"}],
                 "containers": [{"name": "a"}]},
        "status": {"phase": "Pending", "initContainerStatuses": [
            status("i1", state=RUNNING), status("i2", state={"waiting": {
                "reason": "PodInitializing"}})]}},
     "0/1", "Init:0/2", "0"),
    ("init container crashlooping", {
        "spec": {"initContainers": [{"name": "i1"}], "containers": [{"name": "a"}]},
        "status": {"phase": "Pending", "initContainerStatuses": [status(
            "i1", restarts=2, state={"waiting": {"reason": "CrashLoopBackOff"}})]}},
     "0/1", "Init:CrashLoopBackOff", "2"),
    ("init container failed without reason", {
        "spec": {"initContainers": [{"name": "i1"}], "containers": [{"name": "a"}]},
        "status": {"phase": "Pending", "initContainerStatuses": [status(
            "i1", state={"terminated": {"exitCode": 3}})]}},
     "0/1", "Init:ExitCode:3", "0"),
    ("completed", {"spec": {"containers": [{"name": "a"}]},
                   "status": {"phase": "Succeeded", "containerStatuses": [status(
                       "a", state={"terminated": {"exitCode": 0, "reason": "Completed"}})]}},
     "0/1", "Completed", "0"),
    ("killed by signal", {"spec": {"containers": [{"name": "a"}]},
                          "status": {"phase": "Failed", "containerStatuses": [status(
                              "a", state={"terminated": {"exitCode": 137, "signal": 9}})]}},
     "0/1", "Signal:9", "0"),
    ("terminated without reason", {"spec": {"containers": [{"name": "a"}]},
                                   "status": {"phase": "Failed", "containerStatuses": [status(
                                       "a", state={"terminated": {"exitCode": 2}})]}},
     "0/1", "ExitCode:2", "0"),
    ("one container done, one running, pod not ready", {
        "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
                   "containerStatuses": [
                       status("a", ready=True, state=RUNNING),
                       status("b", state={"terminated": {"exitCode": 0,
                                                         "reason": "Completed"}})]}},
     "1/2", "NotReady", "0"),
    ("one container done, one running, pod ready", {
        "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                   "containerStatuses": [
                       status("a", ready=True, state=RUNNING),
                       status("b", state={"terminated": {"exitCode": 0,
                                                         "reason": "Completed"}})]}},
     "1/2", "Running", "0"),
    ("terminating", {"metadata": {"deletionTimestamp": ago(1)},
                     "spec": {"containers": [{"name": "a"}]},
                     "status": {"phase": "Running", "containerStatuses": [
                         status("a", ready=True, state=RUNNING)]}},
     "1/1", "Terminating", "0"),
    ("deleted on a lost node", {"metadata": {"deletionTimestamp": ago(1)},
                                "spec": {"containers": [{"name": "a"}]},
                                "status": {"phase": "Running", "reason": "NodeLost"}},
     "0/1", "Unknown", "0"),
    ("finished pods are not terminating", {"metadata": {"deletionTimestamp": ago(1)},
                                           "spec": {"containers": [{"name": "a"}]},
                                           "status": {"phase": "Succeeded"}},
     "0/1", "Succeeded", "0"),
    ("scheduling gated", {"spec": {"containers": [{"name": "a"}]},
                          "status": {"phase": "Pending", "conditions": [
                              {"type": "PodScheduled", "status": "False",
                               "reason": "SchedulingGated"}]}},
     "0/1", "SchedulingGated", "0"),
    ("pod-level reason wins over phase", {"spec": {"containers": [{"name": "a"}]},
                                          "status": {"phase": "Failed", "reason": "Evicted"}},
     "0/1", "Evicted", "0"),
    ("sidecar init container counts as a container", {
        "spec": {"initContainers": [{"name": "s", "restartPolicy": "Always"}],
                 "containers": [{"name": "a"}]},
        "status": {"phase": "Running",
                   "conditions": [{"type": "Initialized", "status": "True"}],
                   "initContainerStatuses": [status(
                       "s", ready=True, started=True, restarts=1, state=RUNNING,
                       lastState={"terminated": {"finishedAt": ago(30)}})],
                   "containerStatuses": [status("a", ready=True, state=RUNNING)]}},
     "2/2", "Running", "1 (30s ago)"),
]


@pytest.mark.parametrize("pod, ready, reason, restarts",
                         [c[1:] for c in POD_CASES], ids=[c[0] for c in POD_CASES])
def test_pod_ready_status_and_restarts(pod, ready, reason, restarts):
    pod = {**pod, "metadata": {"name": "p", "creationTimestamp": ago(3600),
                               **pod.get("metadata", {})}}
    cells = row("pods", pod)
    assert (cells["Ready"], cells["Status"], cells["Restarts"]) == (ready, reason, restarts)
    assert cells["Name"] == "p" and cells["Age"] == "60m"


def test_pod_wide_columns_and_completion_conditions():
    pod = {"metadata": {"name": "p"},
           "spec": {"nodeName": "n1", "containers": [{"name": "a"}],
                    "readinessGates": [{"conditionType": "x/one"}, {"conditionType": "x/two"}]},
           "status": {"phase": "Succeeded", "podIPs": [{"ip": "10.0.0.9"}], "podIP": "1.1.1.1",
                      "nominatedNodeName": "n2",
                      "conditions": [{"type": "x/one", "status": "True"},
                                     {"type": "x/two", "status": "False"}]}}
    cells = row("pods", pod)
    assert [cells[c] for c in ("IP", "Node", "Nominated Node", "Readiness Gates")] == [
        "10.0.0.9", "n1", "n2", "1/2"]
    table = to_table(rt("pods"), [pod], now=NOW)
    assert table["rows"][0]["conditions"] == [{
        "type": "Completed", "status": "True", "reason": "Succeeded",
        "message": "The pod has completed successfully."}]
    assert "conditions" not in to_table(rt("pods"), [POD], now=NOW)["rows"][0]
    legacy = row("pods", {"status": {"podIP": "10.1.1.1"}})
    assert (legacy["IP"], legacy["Node"], legacy["Readiness Gates"]) == (
        "10.1.1.1", "<none>", "<none>")


# --------------------------------------------------------------------------- nodes

@pytest.mark.parametrize("node, expected", [
    ({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}, "Ready"),
    ({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}, "NotReady"),
    ({"status": {"conditions": [{"type": "MemoryPressure", "status": "False"}]}}, "Unknown"),
    ({"spec": {"unschedulable": True},
      "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
     "Ready,SchedulingDisabled"),
])
def test_node_status(node, expected):
    assert row("nodes", node)["Status"] == expected


def test_node_roles_version_and_wide_columns():
    node = {"metadata": {"name": "n1", "creationTimestamp": ago(86400 * 3 + 3600),
                         "labels": {"node-role.kubernetes.io/worker": "",
                                    "node-role.kubernetes.io/control-plane": "",
                                    "node-role.kubernetes.io/": "", "kubernetes.io/role": "edge"}},
            "status": {"nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian 12",
                                    "kernelVersion": "6.1",
                                    "containerRuntimeVersion": "docker://24"},
                       "addresses": [{"type": "Hostname", "address": "n1"},
                                     {"type": "InternalIP", "address": "10.0.0.1"}]}}
    cells = row("nodes", node)
    assert cells["Roles"] == "control-plane,edge,worker"
    assert (cells["Age"], cells["Version"]) == ("3d1h", "v1.32.0")
    assert [cells[c] for c in ("Internal-IP", "External-IP", "OS-Image", "Kernel-Version",
                               "Container-Runtime")] == [
        "10.0.0.1", "<none>", "Debian 12", "6.1", "docker://24"]
    assert row("nodes", {})["Roles"] == "<none>"


# --------------------------------------------------------------------------- services

@pytest.mark.parametrize("spec, status, cluster_ip, external, ports", [
    ({"type": "ClusterIP", "clusterIPs": ["10.96.0.1"], "clusterIP": "10.96.0.1",
      "ports": [{"port": 443, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]},
     {}, "10.96.0.1", "<none>", "443/TCP,53/UDP"),
    ({"type": "NodePort", "clusterIP": "10.96.0.2", "externalIPs": ["1.2.3.4"],
      "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]},
     {}, "10.96.0.2", "1.2.3.4", "80:30080/TCP"),
    ({"type": "LoadBalancer", "clusterIP": "10.96.0.3", "ports": [{"port": 80}]},
     {}, "10.96.0.3", "<pending>", "80/TCP"),
    ({"type": "LoadBalancer", "clusterIP": "10.96.0.3", "externalIPs": ["9.9.9.9"]},
     {"loadBalancer": {"ingress": [{"ip": "5.5.5.5"}, {"hostname": "lb.example"}]}},
     "10.96.0.3", "5.5.5.5,lb.example,9.9.9.9", "<none>"),
    ({"type": "ExternalName", "externalName": "db.example"}, {}, "<none>", "db.example",
     "<none>"),
    ({"clusterIP": "None"}, {}, "None", "<none>", "<none>"),
])
def test_service_cells(spec, status, cluster_ip, external, ports):
    cells = row("services", {"spec": spec, "status": status})
    assert (cells["Cluster-IP"], cells["External-IP"], cells["Port(s)"]) == (
        cluster_ip, external, ports)


def test_service_type_and_selector():
    cells = row("services", {"spec": {"selector": {"b": "2", "a": "1"}}})
    assert (cells["Type"], cells["Selector"]) == ("ClusterIP", "a=1,b=2")
    assert row("services", {"spec": {"type": "NodePort"}})["Selector"] == "<none>"


# --------------------------------------------------------------------------- endpoints

@pytest.mark.parametrize("subsets, text", [
    (None, "<none>"),
    ([{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}], "10.0.0.1:80"),
    ([{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
       "ports": [{"port": 80}, {"port": 443}]}],
     "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more..."),
    ([{"addresses": [{"ip": f"10.0.0.{i}"} for i in range(1, 6)]}],
     "10.0.0.1,10.0.0.2,10.0.0.3 + 2 more..."),
    ([{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 8080}]}], "[fd00::1]:8080"),
    ([{"notReadyAddresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}], ""),
])
def test_endpoints_cell(subsets, text):
    assert row("endpoints", {"subsets": subsets} if subsets else {})["Endpoints"] == text


# --------------------------------------------------------------------------- workloads

TEMPLATE = {"spec": {"containers": [{"name": "app", "image": "busybox:1"},
                                    {"name": "side", "image": "pause:3"}]}}


def test_deployment_cells():
    cells = row("deployments", {
        "metadata": {"name": "web", "creationTimestamp": ago(90)},
        "spec": {"replicas": 3, "template": TEMPLATE,
                 "selector": {"matchLabels": {"app": "web"}, "matchExpressions": [
                     {"key": "tier", "operator": "In", "values": ["front", "api"]},
                     {"key": "canary", "operator": "DoesNotExist"}]}},
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}})
    assert cells == {"Name": "web", "Ready": "2/3", "Up-to-date": 3, "Available": 2,
                     "Age": "90s", "Containers": "app,side", "Images": "busybox:1,pause:3",
                     "Selector": "app=web,!canary,tier in (api,front)"}
    assert row("deployments", {"spec": {"selector": {"matchExpressions": [
        {"key": "a", "operator": "Bogus"}]}}})["Selector"] == "<invalid>"


def test_replicaset_cells():
    cells = row("replicasets", {"spec": {"replicas": 2, "template": TEMPLATE,
                                         "selector": {"matchLabels": {"app": "web"}}},
                                "status": {"replicas": 2, "readyReplicas": 1}})
    assert [cells[c] for c in ("Desired", "Current", "Ready", "Containers", "Selector")] == [
        2, 2, 1, "app,side", "app=web"]
    assert row("replicasets", {})["Selector"] == "<none>"


def test_statefulset_cells():
    cells = row("statefulsets", {"spec": {"replicas": 3, "template": TEMPLATE},
                                 "status": {"readyReplicas": 3}})
    assert [cells[c] for c in ("Ready", "Containers", "Images")] == [
        "3/3", "app,side", "busybox:1,pause:3"]


def test_daemonset_cells():
    cells = row("daemonsets", {
        "spec": {"template": {"spec": {**TEMPLATE["spec"],
                                       "nodeSelector": {"kubernetes.io/os": "linux"}}},
                 "selector": {"matchLabels": {"app": "agent"}}},
        "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                   "updatedNumberScheduled": 3, "numberAvailable": 2}})
    assert [cells[c] for c in ("Desired", "Current", "Ready", "Up-to-date", "Available",
                               "Node Selector", "Selector")] == [
        3, 3, 2, 3, 2, "kubernetes.io/os=linux", "app=agent"]
    assert row("daemonsets", {})["Node Selector"] == "<none>"


@pytest.mark.parametrize("job, state, completions, duration", [
    ({"spec": {"completions": 3}, "status": {"succeeded": 1, "startTime": ago(125)}},
     "Running", "1/3", "2m5s"),
    ({"spec": {"parallelism": 4}, "status": {}}, "Running", "0/1 of 4", ""),
    ({"spec": {}, "status": {"succeeded": 1, "startTime": ago(600), "completionTime": ago(590),
                             "conditions": [{"type": "Complete", "status": "True"}]}},
     "Complete", "1/1", "10s"),
    ({"status": {"conditions": [{"type": "Failed", "status": "True"}]}}, "Failed", "0/1", ""),
    ({"metadata": {"deletionTimestamp": ago(1)}}, "Terminating", "0/1", ""),
    ({"status": {"conditions": [{"type": "Suspended", "status": "True"}]}}, "Suspended",
     "0/1", ""),
    ({"status": {"conditions": [{"type": "FailureTarget", "status": "True"}]}},
     "FailureTarget", "0/1", ""),
    ({"status": {"conditions": [{"type": "Complete", "status": "False"}]}}, "Running", "0/1",
     ""),
])
def test_job_cells(job, state, completions, duration):
    cells = row("jobs", job)
    assert (cells["Status"], cells["Completions"], cells["Duration"]) == (
        state, completions, duration)


def test_cronjob_cells():
    cells = row("cronjobs", {
        "spec": {"schedule": "*/5 * * * *", "suspend": False,
                 "jobTemplate": {"spec": {"template": TEMPLATE}}},
        "status": {"active": [{"name": "j1"}], "lastScheduleTime": ago(240)}})
    assert [cells[c] for c in ("Schedule", "Timezone", "Suspend", "Active", "Last Schedule",
                               "Containers", "Selector")] == [
        "*/5 * * * *", "<none>", "False", 1, "4m", "app,side", "<none>"]
    unset = row("cronjobs", {"spec": {"timeZone": "Etc/UTC"}})
    assert (unset["Timezone"], unset["Suspend"], unset["Last Schedule"]) == (
        "Etc/UTC", "<unset>", "<none>")


# --------------------------------------------------------------------------- config & misc

def test_configmap_secret_serviceaccount_lease():
    assert row("configmaps", {"data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}})[
        "Data"] == 3
    secret = row("secrets", {"type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}})
    assert (secret["Type"], secret["Data"]) == ("kubernetes.io/tls", 2)
    assert row("serviceaccounts", {"secrets": [{"name": "t"}]})["Secrets"] == 1
    assert row("namespaces", {"status": {"phase": "Terminating"}})["Status"] == "Terminating"
    assert row("leases", {"spec": {"holderIdentity": "node-1"}})["Holder"] == "node-1"
    assert row("leases", {"spec": {"holderIdentity": None}})["Holder"] == ""


def test_event_cells():
    cells = row("events", {
        "metadata": {"name": "web.17a"}, "type": "Warning", "reason": "BackOff",
        "message": "  Back-off restarting failed container \n",
        "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{app}"},
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": ago(3600), "lastTimestamp": ago(30), "count": 12})
    assert cells == {"Last Seen": "30s", "Type": "Warning", "Reason": "BackOff",
                     "Object": "pod/web", "Subobject": "spec.containers{app}",
                     "Source": "kubelet, node-1",
                     "Message": "Back-off restarting failed container",
                     "First Seen": "60m", "Count": 12, "Name": "web.17a"}


def test_event_from_events_api_uses_event_time_series_and_reporting_fields():
    cells = row("events", {
        "eventTime": "2025-03-01T11:59:00.123456Z", "reportingComponent": "scheduler",
        "involvedObject": {"kind": "Node"}, "series": {"count": 4,
                                                      "lastObservedTime": ago(10)}})
    assert (cells["Last Seen"], cells["First Seen"], cells["Count"]) == ("10s", "59s", 4)  # 59.88s
    assert (cells["Object"], cells["Source"]) == ("node", "scheduler")
    single = row("events", {"firstTimestamp": ago(7)})
    assert (single["Last Seen"], single["Count"]) == ("7s", 1)


def test_hpa_cells():
    hpa = {"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"},
                    "minReplicas": 2, "maxReplicas": 10, "metrics": [
                        {"type": "Resource", "resource": {"name": "cpu", "target": {
                            "type": "Utilization", "averageUtilization": 80}}},
                        {"type": "Resource", "resource": {"name": "memory", "target": {
                            "type": "AverageValue", "averageValue": "200Mi"}}},
                        {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {
                            "type": "AverageValue", "averageValue": "10"}}}]},
           "status": {"currentReplicas": 3, "currentMetrics": [
               {"type": "Resource", "resource": {"name": "cpu", "current": {
                   "averageUtilization": 45, "averageValue": "90m"}}}]}}
    cells = row("horizontalpodautoscalers", hpa)
    assert cells["Reference"] == "Deployment/web"
    assert cells["Targets"] == "cpu: 45%/80%, memory: <unknown>/200Mi + 1 more..."
    assert (cells["MinPods"], cells["MaxPods"], cells["Replicas"]) == ("2", 10, 3)
    bare = row("horizontalpodautoscalers", {"spec": {"metrics": [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization"}}},
        {"type": "External", "external": {"target": {"type": "Value", "value": "5"}}}]}})
    assert bare["Targets"] == "cpu: <unknown>/<auto>, <unknown>/5"
    assert (bare["MinPods"], row("horizontalpodautoscalers", {})["Targets"]) == (
        "<unset>", "<none>")
