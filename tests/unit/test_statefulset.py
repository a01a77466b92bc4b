"""StatefulSet: ordering and partition decisions (pure), and the controller over a
FakeClient (names, hostnames, claims, revisions, at most one pod per identity)."""

import asyncio
import contextlib

from controller.statefulset import (REVISION_LABEL, StatefulSetController, compute_status,
                                    ordinal_of, plan, revision_for_ordinal)
from fakes import FakeClient, eventually, settle
from minik8s.cache import InformerFactory


def sts(replicas=3, policy="OrderedReady", strategy=None, **spec):
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "web", "namespace": "default", "uid": "sts-uid",
                         "generation": 1},
            "spec": {"replicas": replicas, "podManagementPolicy": policy,
                     "serviceName": "web-svc",
                     "selector": {"matchLabels": {"app": "web"}},
                     "updateStrategy": strategy or {"type": "RollingUpdate",
                                                    "rollingUpdate": {"partition": 0}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "img:1"}]}},
                     **spec}}


def pod(i, rev="new", ready=True, phase="Running", terminating=False):
    md = {"name": f"web-{i}", "namespace": "default", "labels": {REVISION_LABEL: rev}}
    if terminating:
        md["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    return {"metadata": md, "status": {"phase": phase, "conditions": [
        {"type": "Ready", "status": "True" if ready else "False"}]}}


def test_ordinal_of():
    assert ordinal_of("web", "web-0") == 0
    assert ordinal_of("web", "web-12") == 12
    assert ordinal_of("web", "web-01") is None
    assert ordinal_of("web", "webx-1") is None
    assert ordinal_of("web", "web-a") is None


def test_ordered_ready_creates_one_at_a_time_in_order():
    assert plan(sts(), {}, "new", "new") == [("create", 0)]
    assert plan(sts(), {0: pod(0, ready=False)}, "new", "new") == []
    assert plan(sts(), {0: pod(0, phase="Pending")}, "new", "new") == []
    assert plan(sts(), {0: pod(0)}, "new", "new") == [("create", 1)]
    assert plan(sts(), {0: pod(0), 2: pod(2)}, "new", "new") == [("create", 1)]


def test_parallel_creates_all_at_once():
    assert plan(sts(policy="Parallel"), {1: pod(1, ready=False)}, "new", "new") == [
        ("create", 0), ("create", 2)]


def test_failed_pod_is_deleted_to_be_recreated():
    assert plan(sts(), {0: pod(0, phase="Failed")}, "new", "new") == [("delete", 0)]


def test_scale_down_in_reverse_one_at_a_time():
    pods = {i: pod(i) for i in range(5)}
    assert plan(sts(replicas=2), pods, "new", "new") == [("delete", 4)]
    pods[4] = pod(4, terminating=True)
    assert plan(sts(replicas=2), pods, "new", "new") == []
    assert plan(sts(replicas=2, policy="Parallel"), pods, "new", "new") == [
        ("delete", 3), ("delete", 2)]


def test_terminating_member_blocks_ordered_progress():
    pods = {0: pod(0, terminating=True)}
    assert plan(sts(), pods, "new", "new") == []


def test_rolling_update_reverse_order_one_at_a_time():
    pods = {i: pod(i, rev="old") for i in range(3)}
    assert plan(sts(), pods, "old", "new") == [("delete", 2)]
    pods[2] = pod(2, rev="new", ready=False)
    assert plan(sts(), pods, "old", "new") == []
    pods[2] = pod(2, rev="new")
    assert plan(sts(), pods, "old", "new") == [("delete", 1)]


def test_partition_stops_the_update():
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}
    pods = {0: pod(0, rev="old"), 1: pod(1, rev="old"), 2: pod(2, rev="new")}
    assert plan(sts(strategy=strategy), pods, "old", "new") == []
    s = sts(strategy=strategy)
    assert revision_for_ordinal(s, 1, "old", "new") == "old"
    assert revision_for_ordinal(s, 2, "old", "new") == "new"


def test_on_delete_never_deletes_for_an_update():
    pods = {i: pod(i, rev="old") for i in range(3)}
    s = sts(strategy={"type": "OnDelete"})
    assert plan(s, pods, "old", "new") == []
    assert revision_for_ordinal(s, 0, "old", "new") == "new"


def test_status_counts_and_completes_the_rollout():
    pods = [pod(0, rev="new"), pod(1, rev="old", ready=False)]
    st = compute_status(sts(replicas=2), pods, "old", "new")
    assert (st["replicas"], st["readyReplicas"], st["currentReplicas"],
            st["updatedReplicas"], st["currentRevision"], st["updateRevision"]) == (
        2, 1, 1, 1, "old", "new")
    st = compute_status(sts(replicas=2), [pod(0), pod(1)], "old", "new")
    assert st["currentRevision"] == "new" and st["currentReplicas"] == 2


# --- the controller over a fake API -----------------------------------------------------------

@contextlib.asynccontextmanager
async def running(client):
    informers = InformerFactory(client)
    ctl = StatefulSetController(client, informers)
    tasks = [asyncio.create_task(informers.start())]
    await informers.wait_synced(2)
    tasks.append(asyncio.create_task(ctl.start()))
    try:
        yield ctl
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def make_ready(client, name):
    p = client.stored("pods", name, "default")
    p["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    await client.update("pods", p)


async def test_controller_creates_members_with_identity_and_claims():
    client = FakeClient()
    client.seed("statefulsets", sts(replicas=2, volumeClaimTemplates=[
        {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
                                                "resources": {"requests": {"storage": "1Gi"}}}}]))
    async with running(client):
        await eventually(lambda: client.stored("pods", "web-0", "default") is not None)
        await settle()
        assert client.stored("pods", "web-1", "default") is None  # waits for web-0
        p0 = client.stored("pods", "web-0", "default")
        assert p0["spec"]["hostname"] == "web-0" and p0["spec"]["subdomain"] == "web-svc"
        assert {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-0"}} in \
            p0["spec"]["volumes"]
        assert client.stored("persistentvolumeclaims", "data-web-0", "default") is not None
        rev = p0["metadata"]["labels"][REVISION_LABEL]
        assert rev.startswith("web-")
        assert client.stored("controllerrevisions", rev, "default")["revision"] == 1
        await make_ready(client, "web-0")
        await eventually(lambda: client.stored("pods", "web-1", "default") is not None)
        await make_ready(client, "web-1")
        await eventually(lambda: (client.stored("statefulsets", "web", "default")
                                  .get("status") or {}).get("readyReplicas") == 2)
        # a deleted member comes back under the same name, with the same claim
        await client.delete("pods", "web-0", "default")
        await eventually(lambda: client.stored("pods", "web-0", "default") is not None)
        assert client.stored("persistentvolumeclaims", "data-web-0", "default") is not None


async def test_controller_never_creates_a_name_that_exists():
    client = FakeClient()
    client.seed("statefulsets", sts(replicas=1))
    stuck = pod(0, terminating=True)
    stuck["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                                             "name": "web", "uid": "sts-uid",
                                             "controller": True}]
    client.seed("pods", stuck)
    async with running(client):
        await settle(200)
        assert client.count("create") == 1  # the ControllerRevision only
        await client.delete("pods", "web-0", "default")  # the node came back / was deleted
        await eventually(lambda: client.stored("pods", "web-0", "default") is not None)
