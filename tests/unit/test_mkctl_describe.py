"""``mkctl describe`` renders kubectl's describers from plain dicts; the golden texts below
were printed by the real kubectl 1.32 for the same objects. Secrets never show values."""

from __future__ import annotations

from datetime import datetime, timezone

from minik8s.api.registry import REGISTRY
from minik8s.cli.describe import Quantity, Related, render, smart_label

NOW = datetime(2026, 11, 28, 13, 0, 0, tzinfo=timezone.utc)

POD = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "p1", "namespace": "default", "labels": {"app": "p"},
                 "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}\n"}},
    "spec": {"priority": 0, "serviceAccountName": "default",
             "containers": [{"name": "c", "image": "busybox:1", "command": ["sleep", "1000"]}]},
    "status": {"phase": "Pending"},
}

KUBECTL_POD = """\
Name:             p1
Namespace:        default
Priority:         0
Service Account:  default
Node:             <none>
Labels:           app=p
Annotations:      <none>
Status:           Pending
IP:               
IPs:              <none>
Containers:
  c:
    Image:      busybox:1
    Port:       <none>
    Host Port:  <none>
    Command:
      sleep
      1000
    Environment:  <none>
    Mounts:       <none>
Volumes:          <none>
QoS Class:        BestEffort
Node-Selectors:   <none>
Tolerations:      <none>
Events:
  Type     Reason     Age                  From               Message
  ----     ------     ----                 ----               -------
  Warning  BackOff    24s                  kubelet            Back-off pulling image
  Normal   Scheduled  84s (x3 over 9m24s)  default-scheduler  Successfully assigned default/p1 to node1
"""

EVENTS = [
    {"type": "Normal", "reason": "Scheduled",
     "message": "Successfully assigned default/p1 to node1",
     "source": {"component": "default-scheduler"}, "count": 3,
     "firstTimestamp": "2026-11-28T12:50:36Z", "lastTimestamp": "2026-11-28T12:58:36Z"},
    {"type": "Warning", "reason": "BackOff", "message": "Back-off pulling image",
     "source": {"component": "kubelet", "host": "node1"},
     "eventTime": "2026-11-28T12:59:36.000000Z", "reportingComponent": "kubelet"},
]


def test_pod_matches_kubectl_and_hides_last_applied():
    text = render(REGISTRY.resolve("pods"), POD, Related(events=EVENTS), NOW)
    assert text == KUBECTL_POD


def test_events_none_and_not_fetched():
    text = render(REGISTRY.resolve("pods"), POD, Related(events=[]), NOW)
    assert text.endswith("Tolerations:      <none>\nEvents:           <none>\n")
    assert "Events" not in render(REGISTRY.resolve("pods"), POD, Related(), NOW)


def test_secret_shows_sizes_never_values():
    secret = {"metadata": {"name": "s1", "namespace": "default"}, "type": "Opaque",
              "data": {"password": "aHVudGVyMg==", "token": "dG9rZW4tdmFsdWU="}}
    text = render(REGISTRY.resolve("secrets"), secret, Related(events=[]), NOW)
    assert text == ("Name:         s1\nNamespace:    default\nLabels:       <none>\n"
                    "Annotations:  <none>\n\nType:  Opaque\n\nData\n====\n"
                    "password:  7 bytes\ntoken:     11 bytes\n")


def test_long_and_multiline_annotations():
    obj = {"metadata": {"name": "x", "namespace": "ns", "annotations": {
        "short": "v", "long": "x" * 150, "multi": "a\nb\n"}}}
    text = render(REGISTRY.resolve("leases"), obj, Related(), NOW)
    assert ("Annotations:  long:\n" + " " * 16 + "x" * 138 + "...\n") in text
    assert "              multi:\n                a\n                b\n" in text
    assert "              short: v\n" in text


def test_generic_description_labels_fields():
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": "l", "namespace": "ns", "uid": "u-1"},
             "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15}}
    text = render(REGISTRY.resolve("leases"), lease, Related(events=[]), NOW)
    assert text == ("Name:         l\nNamespace:    ns\nLabels:       <none>\n"
                    "Annotations:  <none>\nAPI Version:  coordination.k8s.io/v1\n"
                    "Kind:         Lease\nMetadata:\n  UID:  u-1\nSpec:\n"
                    "  Holder Identity:         me\n  Lease Duration Seconds:  15\n"
                    "Events:                    <none>\n")


def test_smart_labels_and_quantities():
    assert smart_label("apiVersion") == "API Version"
    assert smart_label("creationTimestamp") == "Creation Timestamp"
    assert smart_label("uid") == "UID"
    assert smart_label("k8s.io/thing") == "k8s.io/thing"
    q = Quantity()
    for raw in ("100m", "0.4", "1500m"):
        q.add(raw)
    assert str(q) == "2"
    mem = Quantity()
    mem.add("512Mi")
    mem.add("512Mi")
    assert str(mem) == "1Gi"
    assert str(Quantity()) == "0"
