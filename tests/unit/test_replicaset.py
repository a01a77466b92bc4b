"""The pod-controller helpers (controller.util) and the ReplicaSet controller over a
FakeClient: expectations, hashing, ranking, slow start, and reconcile arithmetic."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from controller.replicaset import ReplicaSetController, calculate_status
from controller.util import (Expectations, compute_hash, deletion_rank, int_or_percent,
                             pod_from_template, pods_to_delete, slow_start_batch,
                             templates_equal)
from fakes import FakeClient, FakeClock, settle
from minik8s.api.errors import Invalid
from minik8s.cache import InformerFactory


class Recorder:
    def __init__(self):
        self.events = []

    async def event(self, obj, type_, reason, message):
        self.events.append((type_, reason, message))


# --------------------------------------------------------------------------- expectations


def test_expectations_count_creations_and_track_deletions():
    clock = FakeClock()
    e = Expectations(clock, timeout=300)
    assert e.satisfied("ns/a")
    e.expect_creations("ns/a", 2)
    assert not e.satisfied("ns/a")
    e.creation_observed("ns/a")
    assert not e.satisfied("ns/a")
    e.creation_observed("ns/a")
    assert e.satisfied("ns/a")
    e.expect_deletions("ns/a", ["ns/p1", "ns/p2"])
    e.deletion_observed("ns/a", "ns/p1")
    e.deletion_observed("ns/a", "ns/p1")  # a repeated event does not count twice
    assert not e.satisfied("ns/a") and e.pending("ns/a") == (0, 1)
    e.deletion_observed("ns/a", "ns/p2")
    assert e.satisfied("ns/a")


def test_expectations_expire_and_can_be_lowered():
    clock = FakeClock()
    e = Expectations(clock, timeout=10)
    e.expect_creations("k", 3)
    e.lower_creations("k", 2)
    assert e.pending("k") == (1, 0)
    clock.advance(11)
    assert e.satisfied("k")
    e.forget("k")
    assert e.pending("k") == (0, 0)


# --------------------------------------------------------------------------- templates


def _tmpl(image="busybox:1.35", **extra_labels):
    return {"metadata": {"labels": {"app": "web", **extra_labels}},
            "spec": {"containers": [{"name": "c", "image": image}]}}


def test_hash_ignores_hash_label_defaults_and_empty_fields():
    a = _tmpl()
    b = _tmpl(**{"pod-template-hash": "abc"})
    b["metadata"]["creationTimestamp"] = None
    b["spec"]["containers"][0]["resources"] = {}
    b["spec"]["restartPolicy"] = "Always"
    b["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent"
    assert templates_equal(a, b)
    assert compute_hash(a) == compute_hash(b)
    assert compute_hash(a) != compute_hash(_tmpl("busybox:1.36"))
    assert compute_hash(a) != compute_hash(a, collision_count=1)
    h = compute_hash(a)
    assert h.isalnum() and len(h) <= 10 and not set(h) & set("aeiou013")


def test_pod_from_template_sets_a_controlling_owner_reference():
    owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
             "metadata": {"name": "web", "namespace": "ns", "uid": "u1"}}
    pod = pod_from_template(_tmpl(), owner)
    assert pod["metadata"]["generateName"] == "web-"
    assert pod["metadata"]["labels"] == {"app": "web"}
    assert pod["metadata"]["ownerReferences"] == [{
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "u1",
        "controller": True, "blockOwnerDeletion": True}]


def test_int_or_percent_rounding():
    assert int_or_percent("25%", 10, True) == 3
    assert int_or_percent("25%", 10, False) == 2
    assert int_or_percent(2, 10, False) == 2
    assert int_or_percent("3", 10, False) == 3


# --------------------------------------------------------------------------- ranking


def _pod(name, *, node=True, phase="Running", ready=True, restarts=0,
         created="2024-01-01T00:00:00Z", ready_since="2024-01-01T00:00:10Z"):
    status = {"phase": phase, "containerStatuses": [{"restartCount": restarts}]}
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": "True" if ready else "False",
                                 "lastTransitionTime": ready_since}]
    return {"metadata": {"name": name, "namespace": "ns", "creationTimestamp": created},
            "spec": {"nodeName": "n1"} if node else {}, "status": status}


def test_deletion_rank_prefers_least_useful_pods():
    pods = [
        _pod("ready-old"),
        _pod("ready-new", created="2024-01-02T00:00:00Z"),
        _pod("restarts", restarts=5),
        _pod("not-ready", ready=False),
        _pod("unknown", phase="Unknown"),
        _pod("pending", phase="Pending", ready=None),
        _pod("unscheduled", node=False, phase="Pending", ready=None),
    ]
    order = [p["metadata"]["name"] for p in sorted(pods, key=deletion_rank)]
    assert order == ["unscheduled", "pending", "unknown", "not-ready", "restarts",
                     "ready-new", "ready-old"]
    assert [p["metadata"]["name"] for p in pods_to_delete(pods, 2)] == ["unscheduled",
                                                                        "pending"]


# --------------------------------------------------------------------------- slow start


async def test_slow_start_batches_double_and_stop_at_the_first_failure():
    calls = []

    async def ok():
        calls.append(1)

    r = await slow_start_batch(10, ok)
    assert (r.succeeded, r.attempted, r.error, r.skipped) == (10, 10, None, 0)

    n = 0

    async def fails_after_three():
        nonlocal n
        n += 1
        if n > 3:
            raise Invalid("bad")

    r = await slow_start_batch(10, fails_after_three)
    # batches 1, 2 succeed; the batch of 4 has failures; 3 calls are never made
    assert (r.succeeded, r.attempted, r.skipped) == (3, 7, 3)
    assert isinstance(r.error, Invalid)


# --------------------------------------------------------------------------- controller


def _rs(replicas=3, min_ready=0):
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web", "namespace": "ns", "generation": 1},
            "spec": {"replicas": replicas, "minReadySeconds": min_ready,
                     "selector": {"matchLabels": {"app": "web"}}, "template": _tmpl()}}


@pytest.fixture
async def setup():
    client = FakeClient("ns")
    informers = InformerFactory(client)
    rec = Recorder()
    rc = ReplicaSetController(client, informers, rec)
    task = asyncio.get_running_loop().create_task(informers.start())
    await informers.wait_synced(5)
    yield client, rc, rec
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _rs_synced(rc, client):
    for _ in range(200):
        await settle()
        cached = rc.rs_informer.get("ns/web")
        if cached and cached["metadata"]["resourceVersion"] == \
                client.stored("replicasets", "web", "ns")["metadata"]["resourceVersion"]:
            return


def _pods(client):
    return list(client.objects.get("pods", {}).values())


async def _sync_cache(rc, client):
    for _ in range(200):
        await settle()
        if len(rc.pod_informer.list()) == len(_pods(client)) and \
                len(rc.rs_informer.list()) == len(client.objects.get(
                    "replicasets.apps", {})):
            return


async def test_reconcile_creates_missing_pods_once_despite_a_lagging_cache(setup):
    client, rc, rec = setup
    client.seed("replicasets", _rs(3))
    await _sync_cache(rc, client)
    # stop the pod informer from seeing anything: the cache lags
    rc.pod_informer._handlers.clear()
    real_apply = rc.pod_informer._apply
    rc.pod_informer._apply = lambda event: None
    await rc.reconcile("ns/web")
    assert len(_pods(client)) == 3
    await _rs_synced(rc, client)
    await rc.reconcile("ns/web")  # expectations: no duplicates while the cache lags
    assert len(_pods(client)) == 3
    assert [r for _, r, _ in rec.events].count("SuccessfulCreate") == 3
    rc.pod_informer._apply = real_apply
    for pod in _pods(client):
        rc.pod_informer.store.add(pod)
        rc._pod_added(pod)
    assert rc.expectations.satisfied("ns/web")
    await _rs_synced(rc, client)
    await rc.reconcile("ns/web")
    assert len(_pods(client)) == 3
    for pod in _pods(client):
        assert pod["metadata"]["ownerReferences"][0]["name"] == "web"


async def test_reconcile_deletes_the_least_useful_extras_and_writes_status(setup):
    client, rc, rec = setup
    rs = client.seed("replicasets", _rs(2))
    uid = rs["metadata"]["uid"]
    owner = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": uid,
              "controller": True}]
    for name, ready in (("a", True), ("b", False), ("c", True)):
        pod = _pod(name, ready=ready)
        pod["metadata"].update(labels={"app": "web"}, ownerReferences=owner)
        client.seed("pods", pod)
    await _sync_cache(rc, client)
    await rc.reconcile("ns/web")
    names = sorted(p["metadata"]["name"] for p in _pods(client))
    assert names == ["a", "c"]
    assert ("Normal", "SuccessfulDelete", "Deleted pod: b") in rec.events
    await _sync_cache(rc, client)
    await rc.reconcile("ns/web")
    st = client.stored("replicasets", "web", "ns")["status"]
    assert st == {"replicas": 2, "fullyLabeledReplicas": 2, "readyReplicas": 2,
                  "availableReplicas": 2, "observedGeneration": 1}


async def test_create_failure_sets_replica_failure_and_lowers_expectations(setup):
    client, rc, rec = setup
    client.seed("replicasets", _rs(4))
    await _sync_cache(rc, client)
    client.fail("create", Invalid("pods is forbidden: quota"), times=1)
    with pytest.raises(Exception):
        await rc.reconcile("ns/web")
    assert rc.expectations.satisfied("ns/web")  # the failed and skipped creates lowered
    assert ("Warning", "FailedCreate", "Error creating: pods is forbidden: quota") in rec.events
    st = client.stored("replicasets", "web", "ns")["status"]
    failure = st["conditions"][0]
    assert failure["type"] == "ReplicaFailure" and failure["reason"] == "FailedCreate"
    await _rs_synced(rc, client)
    await rc.reconcile("ns/web")
    assert len(_pods(client)) == 4
    await _sync_cache(rc, client)
    await rc.reconcile("ns/web")
    assert "conditions" not in client.stored("replicasets", "web", "ns")["status"]


def test_available_replicas_honour_min_ready_seconds():
    from datetime import datetime, timezone
    rs = _rs(2, min_ready=30)
    now = datetime(2024, 1, 1, 0, 0, 30, tzinfo=timezone.utc)
    pods = [_pod("a", ready_since="2024-01-01T00:00:00Z"),
            _pod("b", ready_since="2024-01-01T00:00:20Z")]
    for p in pods:
        p["metadata"]["labels"] = {"app": "web"}
    st = calculate_status(rs, pods, None, now)
    assert st["readyReplicas"] == 2 and st["availableReplicas"] == 1
