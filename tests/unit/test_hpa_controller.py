"""The HorizontalPodAutoscaler's arithmetic (replica calculator, stabilization, behavior
policies, limits) on plain data, with Kubernetes' numbers."""

from __future__ import annotations

import pytest

from controller.hpa import (HPAState, MetricError, PodMetric, Recommendation, ScaleEvent,
                            legacy_limits, normalize, raw_resource_replicas,
                            record_scale_event, resource_replicas, scale_down_limit,
                            scale_up_limit, stabilize, stabilize_legacy)

NOW = 1_700_000_000.0


def ts(seconds_ago: float) -> str:
    from datetime import datetime, timezone
    return datetime.fromtimestamp(NOW - seconds_ago, timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def pod(name, cpu="100m", phase="Running", ready=True, started_ago=1000.0,
        ready_ago=1000.0, terminating=False):
    p = {"metadata": {"name": name},
         "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]},
         "status": {"phase": phase, "startTime": ts(started_ago),
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                    "lastTransitionTime": ts(ready_ago)}]}}
    if terminating:
        p["metadata"]["deletionTimestamp"] = ts(1)
    return p


def m(millis, ago=1.0, window=5.0):
    return PodMetric(millis, NOW - ago, window)


def calc(current, target, pods, metrics, **kw):
    return resource_replicas(current, target, "cpu", pods, metrics, now=NOW, **kw)


# --------------------------------------------------------------------------- calculator


def test_scale_up_on_utilization_against_summed_requests():
    pods = [pod("a"), pod("b")]
    replicas, utilization, raw = calc(2, 50, pods, {"a": m(200), "b": m(200)})
    assert (replicas, utilization, raw) == (8, 200, 200)


def test_within_tolerance_keeps_current():
    pods = [pod("a"), pod("b")]
    assert calc(2, 50, pods, {"a": m(52), "b": m(53)})[0] == 2  # 52% vs 50%: inside 10%
    assert calc(2, 50, pods, {"a": m(56), "b": m(56)})[0] == 3  # 56%: ratio 1.12


def test_missing_metrics_count_as_zero_on_scale_up():
    pods = [pod("a"), pod("b"), pod("c")]
    # a, b at 100% of 50%; c has no metrics: counted as 0 -> 66% -> ceil(1.32 * 3) = 4
    assert calc(3, 50, pods, {"a": m(100), "b": m(100)})[0] == 4


def test_missing_metrics_count_as_full_request_on_scale_down():
    pods = [pod("a"), pod("b"), pod("c")]
    # 10% each against 80%; c missing counts as 100% -> 40% -> ceil(0.5 * 3) = 2
    assert calc(3, 80, pods, {"a": m(10), "b": m(10)})[0] == 2


def test_unready_pods_ignored_on_scale_up_and_direction_flip_keeps_current():
    pods = [pod("a"), pod("b", ready=False, started_ago=10, ready_ago=10),
            pod("c", phase="Pending")]
    # one ready pod at 100% of 50% would say 2; the unready ones at 0% give 33%: the
    # direction flips, so nothing changes
    assert calc(3, 50, pods, {"a": m(100), "b": m(100)})[0] == 3


def test_unready_pods_left_out_of_scale_down_and_terminating_ignored():
    pods = [pod("a"), pod("b"), pod("c", ready=False, started_ago=10, ready_ago=10),
            pod("d", terminating=True), pod("e", phase="Failed")]
    metrics = {n: m(10) for n in "abcde"}
    assert calc(5, 50, pods, metrics)[0] == 1  # ceil(0.2 * 2 ready)


def test_newly_ready_pod_whose_window_predates_readiness_is_unready():
    # started 20 s ago (inside the CPU initialisation period), ready 3 s ago, metric
    # window of 5 s ending 1 s ago: the sample began before readiness
    fresh = pod("b", started_ago=20, ready_ago=3)
    pods = [pod("a"), fresh]
    replicas, _, _ = calc(2, 50, pods, {"a": m(100), "b": m(100)})
    # b counted as 0 on the scale-up: (100 + 0) / 200 = 50% -> within tolerance
    assert replicas == 2


def test_errors_missing_request_and_no_metrics():
    with pytest.raises(MetricError, match="missing request for cpu in container c of Pod a"):
        calc(1, 50, [pod("a", cpu=None)], {"a": m(10)})
    with pytest.raises(MetricError, match="did not receive metrics"):
        calc(1, 50, [pod("a", phase="Pending")], {})
    with pytest.raises(MetricError, match="no pods returned by selector"):
        calc(1, 50, [], {})


def test_average_value_target():
    pods = [pod("a"), pod("b")]
    assert raw_resource_replicas(2, 100, "cpu", pods, {"a": m(300), "b": m(300)},
                                 now=NOW) == (6, 300)
    assert raw_resource_replicas(2, 100, "cpu", pods, {"a": m(105), "b": m(100)},
                                 now=NOW)[0] == 2
    # memory: no readiness rules, a missing pod counts as the target on a scale-down
    pods = [pod("a"), pod("b"), pod("c")]
    assert raw_resource_replicas(3, 1000, "memory", pods, {"a": m(100), "b": m(100)},
                                 now=NOW)[0] == 2  # (100 + 100 + 1000) / 3 / 1000 = 0.4


# --------------------------------------------------------------------------- stabilization


def test_scale_down_stabilization_window_keeps_highest_recent():
    recs = [Recommendation(5, NOW - 100)]
    assert stabilize_legacy(recs, 2, NOW, 300) == 5
    assert stabilize_legacy(recs, 2, NOW + 400, 300) == 2  # both samples now older


def test_behavior_stabilization_both_directions():
    recs = [Recommendation(3, NOW - 10)]
    # scale-up window 60 s: the lowest recent recommendation (3) caps a jump to 8
    assert stabilize(recs, 8, 2, NOW, 60, 0)[:2] == (3, "ScaleUpStabilized")
    # scale-down window 0: straight down
    recs = [Recommendation(6, NOW - 10)]
    assert stabilize(recs, 2, 6, NOW, 0, 0)[0] == 2
    recs = [Recommendation(6, NOW - 10)]
    assert stabilize(recs, 2, 6, NOW, 0, 30)[:2] == (6, "ScaleDownStabilized")


def test_scale_up_policies_and_select_policy():
    rules = {"selectPolicy": "Max", "policies": [
        {"type": "Pods", "value": 4, "periodSeconds": 15},
        {"type": "Percent", "value": 100, "periodSeconds": 15}]}
    assert scale_up_limit(2, [], [], rules, NOW) == 6
    assert scale_up_limit(10, [], [], rules, NOW) == 20
    assert scale_up_limit(2, [], [], {**rules, "selectPolicy": "Min"}, NOW) == 4
    assert scale_up_limit(2, [], [], {**rules, "selectPolicy": "Disabled"}, NOW) == 2
    # 2 -> 4 five seconds ago: the period started at 2
    assert scale_up_limit(4, [ScaleEvent(2, NOW - 5)], [], rules, NOW) == 6
    assert scale_up_limit(4, [ScaleEvent(2, NOW - 20)], [], rules, NOW) == 8  # period over


def test_scale_down_policies():
    rules = {"selectPolicy": "Max", "policies": [
        {"type": "Percent", "value": 50, "periodSeconds": 60},
        {"type": "Pods", "value": 2, "periodSeconds": 60}]}
    assert scale_down_limit(10, [], [], rules, NOW) == 5  # the bigger change
    assert scale_down_limit(10, [], [], {**rules, "selectPolicy": "Min"}, NOW) == 8
    assert scale_down_limit(8, [], [ScaleEvent(2, NOW - 30)], rules, NOW) == 5


def test_legacy_limits_and_conditions():
    assert legacy_limits(1, 10, 1, 20) == (4, "ScaleUpLimit", "the desired replica count is "
                                           "increasing faster than the maximum scale rate")
    assert legacy_limits(3, 10, 1, 5)[:2] == (5, "TooManyReplicas")
    assert legacy_limits(3, 0, 2, 5)[:2] == (2, "TooFewReplicas")
    assert legacy_limits(3, 4, 1, 5)[:2] == (4, "DesiredWithinRange")


def test_normalize_with_behavior_records_events_and_limits_rate():
    behavior = {"scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]},
                "scaleDown": {"stabilizationWindowSeconds": 5, "selectPolicy": "Max",
                              "policies": [{"type": "Percent", "value": 100,
                                            "periodSeconds": 15}]}}
    state = HPAState()
    desired, conds = normalize(state, behavior, 1, 5, 1, 10, NOW, 300)
    assert desired == 2
    assert ("ScalingLimited", "True", "ScaleUpLimit") in [c[:3] for c in conds]
    record_scale_event(state, behavior, 1, 2, NOW)
    desired, _ = normalize(state, behavior, 2, 5, 1, 10, NOW + 10, 300)
    assert desired == 2  # one pod per minute, already used
    desired, conds = normalize(state, behavior, 2, 5, 1, 10, NOW + 70, 300)
    assert desired == 3
    # scale-down within its 5 s window of a recommendation of 5: held
    desired, conds = normalize(state, behavior, 3, 1, 1, 10, NOW + 72, 300)
    assert desired == 3 and ("AbleToScale", "True", "ScaleDownStabilized") in \
        [c[:3] for c in conds]
    desired, _ = normalize(state, behavior, 3, 1, 1, 10, NOW + 80, 300)
    assert desired == 1


def test_normalize_without_behavior_uses_default_window():
    state = HPAState()
    assert normalize(state, None, 4, 4, 1, 10, NOW, 300)[0] == 4
    desired, conds = normalize(state, None, 4, 1, 1, 10, NOW + 10, 300)
    assert desired == 4 and conds[0][2] == "ScaleDownStabilized"
    assert normalize(state, None, 4, 1, 1, 10, NOW + 320, 300)[0] == 1


async def test_status_write_after_a_conflict_keeps_the_newer_scale_time():
    """A status computed from a lagging cache must not erase the lastScaleTime that a
    newer write of the controller's own recorded (the 409 retry path)."""
    from minik8s.api.errors import Conflict
    from controller.hpa import HPAController

    stored = {"metadata": {"name": "h", "namespace": "n", "resourceVersion": "7"},
              "status": {"currentReplicas": 3, "desiredReplicas": 3,
                         "lastScaleTime": ts(5)}}
    written = []

    class Client:
        async def update_status(self, resource, obj):
            if obj["metadata"]["resourceVersion"] != "7":
                raise Conflict("the object has been modified")
            written.append(obj)

        async def get(self, resource, name, namespace):
            import copy
            return copy.deepcopy(stored)

    class Stub:
        client = Client()

    cached = {"metadata": {"name": "h", "namespace": "n", "resourceVersion": "5"},
              "status": {"currentReplicas": 1, "desiredReplicas": 1}}
    await HPAController._write_status(Stub(), cached, {"currentReplicas": 3,
                                                       "desiredReplicas": 3})
    assert written[-1]["status"]["lastScaleTime"] == ts(5)
