"""The Deployment controller's pure arithmetic: fenceposts, one rolling-update step up and
down, proportional scaling, finding the new ReplicaSet, progress deadline, rollback helpers;
and the CLI's status messages and undo patch."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from controller.deployment import (RSState, ScaleInput, deployment_complete,
                                   deployment_timed_out, find_new_rs, go_round,
                                   max_surge, max_unavailable, new_rs_replicas,
                                   old_rs_scale_down, proportional_scale, resolve_fenceposts,
                                   rollback_annotations, rollback_template)
from minik8s.cli.errors import CliError
from minik8s.cli.rollout import history_table, pick_revision, status_message, undo_patch


def test_go_round_rounds_halves_away_from_zero():
    assert [go_round(x) for x in (0.5, 1.5, 2.5, -0.5, -2.5, 2.4)] == [1, 2, 3, -1, -3, 2]


@pytest.mark.parametrize("surge,unavailable,desired,expected", [
    ("25%", "25%", 10, (3, 2)),   # surge rounds up, unavailable down
    ("25%", "25%", 1, (1, 0)),
    (0, 0, 5, (0, 1)),            # both zero would never progress
    (1, 0, 4, (1, 0)),
    ("50%", "50%", 3, (2, 1)),
])
def test_resolve_fenceposts(surge, unavailable, desired, expected):
    assert resolve_fenceposts(surge, unavailable, desired) == expected


def _d(replicas=10, surge="25%", unavailable="25%", kind="RollingUpdate", **status):
    return {"metadata": {"name": "web", "generation": 2},
            "spec": {"replicas": replicas, "progressDeadlineSeconds": 60,
                     "strategy": {"type": kind, "rollingUpdate": {
                         "maxSurge": surge, "maxUnavailable": unavailable}}},
            "status": status}


def test_max_surge_and_unavailable_of_a_deployment():
    assert (max_surge(_d()), max_unavailable(_d())) == (3, 2)
    assert (max_surge(_d(kind="Recreate")), max_unavailable(_d(kind="Recreate"))) == (0, 0)
    assert max_unavailable(_d(replicas=2, unavailable=5)) == 2  # capped at replicas


@pytest.mark.parametrize("desired,surge,total,new,expected", [
    (10, 3, 10, 0, 3),     # first step: surge pods
    (10, 3, 13, 3, 3),     # at the cap: wait
    (10, 3, 11, 8, 10),    # never above desired in the new one
    (4, 1, 4, 0, 1),
    (4, 0, 3, 0, 1),       # old ones scaled down first made room
])
def test_new_rs_scale_up(desired, surge, total, new, expected):
    assert new_rs_replicas(desired, surge, total, new) == expected


def test_old_rs_scale_down_within_max_unavailable():
    new = RSState("new", 3, 0, "2024-01-02")
    old = [RSState("old", 10, 10, "2024-01-01")]
    assert old_rs_scale_down(10, 2, new, old) == {"old": 8}


def test_old_rs_not_scaled_down_until_new_pods_are_available():
    old = [RSState("old", 4, 4, "2024-01-01")]
    assert old_rs_scale_down(4, 0, RSState("new", 1, 0, "b"), old) == {}
    assert old_rs_scale_down(4, 0, RSState("new", 1, 1, "b"), old) == {"old": 3}


def test_unhealthy_old_pods_go_first_and_do_not_count_as_available():
    old = [RSState("old", 4, 2, "2024-01-01")]
    assert old_rs_scale_down(4, 1, RSState("new", 1, 0, "b"), old) == {"old": 3}


def test_oldest_replicaset_scaled_down_first():
    olds = [RSState("older", 2, 2, "2024-01-01"), RSState("old", 2, 2, "2024-01-02")]
    # 6 pods, all available; at least 4 - 1 = 3 must stay: 3 go, the oldest set first
    assert old_rs_scale_down(4, 1, RSState("new", 2, 2, "c"), olds) == {"older": 0, "old": 1}


def test_proportional_scale_up_and_down():
    active = [ScaleInput("new", 2, 5, "b"), ScaleInput("old", 3, 5, "a")]
    assert proportional_scale(10, 0, 5, active) == {"new": 4, "old": 6}
    active = [ScaleInput("new", 4, 10, "b"), ScaleInput("old", 6, 10, "a")]
    assert proportional_scale(5, 0, 10, active) == {"new": 2, "old": 3}


def test_proportional_scale_leftover_goes_to_the_largest():
    active = [ScaleInput("a", 2, 5, "1"), ScaleInput("b", 2, 5, "2"), ScaleInput("c", 1, 5, "3")]
    sizes = proportional_scale(7, 0, 5, active)
    assert sum(sizes.values()) == 7 and sizes["c"] == 1
    assert proportional_scale(0, 0, 5, active) == {"a": 0, "b": 0, "c": 0}


def _tmpl(image):
    return {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": image}]}}


def _rs(name, image, created, revision, hash_="h"):
    t = _tmpl(image)
    t["metadata"]["labels"]["pod-template-hash"] = hash_
    t["spec"]["restartPolicy"] = "Always"  # a server default
    return {"metadata": {"name": name, "creationTimestamp": created,
                         "annotations": {"deployment.kubernetes.io/revision": str(revision),
                                         "kubernetes.io/change-cause": f"to {image}",
                                         "deployment.kubernetes.io/desired-replicas": "3"}},
            "spec": {"template": t}}


def test_find_new_rs_compares_templates_ignoring_hash_and_defaults():
    d = {"spec": {"template": _tmpl("busybox:1.35")}}
    rss = [_rs("b", "busybox:1.35", "2024-01-02", 3), _rs("a", "busybox:1.35", "2024-01-01", 1),
           _rs("c", "busybox:1.36", "2024-01-01", 2)]
    assert find_new_rs(d, rss)["metadata"]["name"] == "a"   # the oldest match
    assert find_new_rs({"spec": {"template": _tmpl("x:1")}}, rss) is None


def test_rollback_template_and_annotations():
    rs = _rs("a", "busybox:1.35", "2024-01-01", 1)
    assert "pod-template-hash" not in rollback_template(rs)["metadata"]["labels"]
    ann = rollback_annotations({"metadata": {"annotations": {
        "deployment.kubernetes.io/revision": "2", "mine": "x"}}}, rs)
    assert ann == {"deployment.kubernetes.io/revision": "2", "mine": "x",
                   "kubernetes.io/change-cause": "to busybox:1.35"}
    patch = undo_patch({"metadata": {"annotations": {"mine": "x"}}}, rs)
    assert patch[0]["op"] == "replace" and patch[0]["path"] == "/spec/template"
    assert "pod-template-hash" not in patch[0]["value"]["metadata"]["labels"]
    assert patch[1]["value"] == {"mine": "x", "kubernetes.io/change-cause": "to busybox:1.35"}


def test_progress_deadline():
    now = datetime(2024, 1, 1, 0, 2, tzinfo=timezone.utc)
    d = _d()
    status = {"conditions": [{"type": "Progressing", "status": "True",
                              "reason": "ReplicaSetUpdated",
                              "lastUpdateTime": "2024-01-01T00:00:30Z"}]}
    assert deployment_timed_out(d, status, now)                 # 90 s > 60 s
    status["conditions"][0]["lastUpdateTime"] = "2024-01-01T00:01:30Z"
    assert not deployment_timed_out(d, status, now)
    status["conditions"][0]["reason"] = "NewReplicaSetAvailable"
    status["conditions"][0]["lastUpdateTime"] = "2024-01-01T00:00:00Z"
    assert not deployment_timed_out(d, status, now)
    done = {"updatedReplicas": 10, "replicas": 10, "availableReplicas": 10,
            "observedGeneration": 2}
    assert deployment_complete(d, done)
    assert not deployment_complete(d, {**done, "observedGeneration": 1})


# --------------------------------------------------------------------------- CLI


def _dep(generation=2, observed=2, **status):
    return {"metadata": {"name": "web", "generation": generation},
            "spec": {"replicas": 3}, "status": {"observedGeneration": observed, **status}}


def test_rollout_status_messages():
    assert status_message(_dep(observed=1)) == (
        "Waiting for deployment spec update to be observed...", False)
    assert status_message(_dep(updatedReplicas=1, replicas=4))[0] == (
        'Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been '
        'updated...')
    assert status_message(_dep(updatedReplicas=3, replicas=4))[0] == (
        'Waiting for deployment "web" rollout to finish: 1 old replicas are pending '
        'termination...')
    assert status_message(_dep(updatedReplicas=3, replicas=3, availableReplicas=1))[0] == (
        'Waiting for deployment "web" rollout to finish: 1 of 3 updated replicas are '
        'available...')
    assert status_message(_dep(updatedReplicas=3, replicas=3, availableReplicas=3)) == (
        'deployment "web" successfully rolled out', True)
    with pytest.raises(CliError, match="exceeded its progress deadline"):
        status_message(_dep(conditions=[{"type": "Progressing",
                                         "reason": "ProgressDeadlineExceeded"}]))


def test_history_table_and_revision_choice():
    revs = {1: _rs("a", "busybox:1.35", "x", 1), 3: _rs("b", "busybox:1.36", "y", 3)}
    revs[1]["metadata"]["annotations"].pop("kubernetes.io/change-cause")
    assert history_table(revs) == ("REVISION  CHANGE-CAUSE\n1         <none>\n"
                                   "3         to busybox:1.36\n")
    assert pick_revision(revs, 3, 0) is revs[1]
    assert pick_revision(revs, 3, 3) is revs[3]
    with pytest.raises(CliError, match="unable to find specified revision 2"):
        pick_revision(revs, 3, 2)
    with pytest.raises(CliError, match="no rollout history"):
        pick_revision({3: revs[3]}, 3, 0)
