"""The HorizontalPodAutoscaler controller (autoscaling/v2): every sync period
(``--horizontal-pod-autoscaler-sync-period``, 15 s) each HPA reads its target's ``scale``
subresource, the pods behind the scale's selector and their resource metrics (the API
server's ``metrics.k8s.io``), proposes a replica count per metric, stabilizes and rate-limits
it, and writes the target's ``scale`` and its own ``status``.

The arithmetic is Kubernetes' (``pkg/controller/podautoscaler``) and is kept pure here,
taking plain data and returning decisions, so it is unit-tested without a server:

- ``resource_replicas`` / ``raw_resource_replicas`` are the replica calculator: usage over
  summed requests (Utilization) or the average usage (AverageValue), a tolerance band (0.1)
  within which nothing changes, and the pods that cannot be trusted: terminating and failed
  pods are ignored, pending and not-yet-ready pods are left out of a scale-up (counted as
  using nothing), and pods without metrics count as using nothing on a scale-up and their
  full request (or the target) on a scale-down; if those substitutions would flip the
  direction, nothing changes.
- ``stabilize`` keeps each HPA's recent recommendations: scale-down takes the highest over
  the scale-down window (default 300 s), scale-up the lowest over the scale-up window
  (default 0); ``behavior_limits`` applies the scaleUp/scaleDown policies (Pods/Percent per
  ``periodSeconds``, ``selectPolicy`` Max/Min/Disabled) against the scale events of the last
  periods. Without ``behavior``, Kubernetes' older rules apply: stabilization over the
  default scale-down window and a scale-up of at most ``max(2 * current, 4)``.

The status carries ``currentReplicas``, ``desiredReplicas``, ``currentMetrics``,
``lastScaleTime`` and the conditions ``AbleToScale``, ``ScalingActive``, ``ScalingLimited``
with Kubernetes' reasons; each rescale is a ``SuccessfulRescale`` Event naming the reason.
Recommendations and scale events live in memory, as in Kubernetes: a restarted controller
starts its windows afresh.
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from minik8s.api.errors import Conflict, NotFound, StatusError
from minik8s.api.meta import Obj, deepcopy, key_of, parse_time, split_key
from minik8s.api.quantity import milli_value_of
from minik8s.api.registry import REGISTRY
from minik8s.api.selectors import parse_label_selector
from minik8s.cache import NAMESPACE_INDEX, namespace_index
from minik8s.client.events import NORMAL, WARNING
from minik8s.runtime import Controller, Result

log = logging.getLogger(__name__)

RESOURCE = "horizontalpodautoscalers"
METRICS_PATH = "/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods"
SCALABLE = ("Deployment", "ReplicaSet", "StatefulSet")
# Kubernetes' defaults for --horizontal-pod-autoscaler-cpu-initialization-period and
# --horizontal-pod-autoscaler-initial-readiness-delay.
CPU_INITIALIZATION_PERIOD = 300.0
INITIAL_READINESS_DELAY = 30.0


class MetricError(Exception):
    """A metric could not give a proposal; ``reason`` is the condition/event reason."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


# --------------------------------------------------------------------------- replica calculator


@dataclass
class PodMetric:
    value: int            # milli-units (millicores, milli-bytes), as Kubernetes' metrics client
    timestamp: float = 0.0  # wall-clock seconds
    window: float = 0.0


def _pod_ready_condition(pod: Obj) -> Obj | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c
    return None


def _ts(value: Any) -> float | None:
    parsed = parse_time(value)
    return parsed.timestamp() if parsed else None


def group_pods(pods: list[Obj], metrics: dict[str, PodMetric], resource: str, now: float,
               cpu_initialization_period: float = CPU_INITIALIZATION_PERIOD,
               initial_readiness_delay: float = INITIAL_READINESS_DELAY
               ) -> tuple[int, set[str], set[str], set[str]]:
    """``groupPods``: (ready count, unready, missing metrics, ignored) pod names."""
    ready, unready, missing, ignored = 0, set(), set(), set()
    for pod in pods:
        name = pod["metadata"]["name"]
        status = pod.get("status") or {}
        if pod["metadata"].get("deletionTimestamp") or status.get("phase") == "Failed":
            ignored.add(name)
            continue
        if status.get("phase") == "Pending":
            unready.add(name)
            continue
        metric = metrics.get(name)
        if metric is None:
            missing.add(name)
            continue
        if resource == "cpu":
            cond = _pod_ready_condition(pod)
            started = _ts(status.get("startTime"))
            if cond is None or started is None:
                is_unready = True
            else:
                transition = _ts(cond.get("lastTransitionTime")) or started
                if started + cpu_initialization_period > now:
                    # within the initialisation period: unready, or the metric's window
                    # began before the pod turned ready
                    is_unready = cond.get("status") == "False" or \
                        metric.timestamp < transition + metric.window
                else:
                    # unready and never ready since it started
                    is_unready = cond.get("status") == "False" and \
                        started + initial_readiness_delay > transition
            if is_unready:
                unready.add(name)
                continue
        ready += 1
    return ready, unready, missing, ignored


def calculate_requests(pods: list[Obj], resource: str) -> dict[str, int]:
    """Each pod's summed container request for ``resource`` in milli-units."""
    out = {}
    for pod in pods:
        total = 0
        for c in (pod.get("spec") or {}).get("containers") or []:
            request = ((c.get("resources") or {}).get("requests") or {}).get(resource)
            if request is None:
                raise MetricError("FailedGetResourceMetric",
                                  f"missing request for {resource} in container "
                                  f"{c.get('name')} of Pod {pod['metadata']['name']}")
            total += milli_value_of(request)
        out[pod["metadata"]["name"]] = total
    return out


def utilization_ratio(metrics: dict[str, PodMetric], requests: dict[str, int],
                      target: int) -> tuple[float, int, int]:
    """``GetResourceUtilizationRatio``: (ratio to target, utilization %, raw average)."""
    used = requested = entries = 0
    for name, metric in metrics.items():
        if name not in requests:
            continue
        used += metric.value
        requested += requests[name]
        entries += 1
    if requested == 0:
        raise MetricError("FailedGetResourceMetric", "no metrics returned matched known pods")
    utilization = used * 100 // requested
    return utilization / target, utilization, used // entries


def _within(ratio: float, tolerance: float) -> bool:
    return abs(1.0 - ratio) <= tolerance


def _usable_metrics(pods: list[Obj], metrics: dict[str, PodMetric], resource: str,
                    now: float, cpu_initialization_period: float,
                    initial_readiness_delay: float
                    ) -> tuple[int, set[str], set[str], dict[str, PodMetric]]:
    """What both replica calculations start from: (ready count, unready, missing, the
    metrics of the pods that count: not ignored, not unready, still selected)."""
    if not pods:
        raise MetricError("FailedGetResourceMetric",
                          "no pods returned by selector while calculating replica count")
    ready, unready, missing, ignored = group_pods(pods, metrics, resource, now,
                                                  cpu_initialization_period,
                                                  initial_readiness_delay)
    names = {p["metadata"]["name"] for p in pods} - ignored - unready
    usable = {k: v for k, v in metrics.items() if k in names}
    if not usable:
        raise MetricError("FailedGetResourceMetric",
                          "did not receive metrics for targeted pods (pods might be unready)")
    return ready, unready, missing, usable


def resource_replicas(current: int, target_utilization: int, resource: str,
                      pods: list[Obj], metrics: dict[str, PodMetric], *, now: float,
                      tolerance: float = 0.1,
                      cpu_initialization_period: float = CPU_INITIALIZATION_PERIOD,
                      initial_readiness_delay: float = INITIAL_READINESS_DELAY
                      ) -> tuple[int, int, int]:
    """``GetResourceReplicas``: (replicas, utilization %, raw average milli-units)."""
    ready, unready, missing, metrics = _usable_metrics(
        pods, metrics, resource, now, cpu_initialization_period, initial_readiness_delay)
    requests = calculate_requests(pods, resource)
    ratio, utilization, raw = utilization_ratio(metrics, requests, target_utilization)
    scale_up_with_unready = bool(unready) and ratio > 1.0
    if not scale_up_with_unready and not missing:
        if _within(ratio, tolerance):
            return current, utilization, raw
        return math.ceil(ratio * ready), utilization, raw
    if missing:
        if ratio < 1.0:
            fallback = max(100, target_utilization)
            for name in missing:
                metrics[name] = PodMetric(requests[name] * fallback // 100)
        elif ratio > 1.0:
            for name in missing:
                metrics[name] = PodMetric(0)
    if scale_up_with_unready:
        for name in unready:
            metrics[name] = PodMetric(0)
    new_ratio, _, _ = utilization_ratio(metrics, requests, target_utilization)
    if _within(new_ratio, tolerance) or (ratio < 1.0 < new_ratio) or (new_ratio < 1.0 < ratio):
        return current, utilization, raw
    replicas = math.ceil(new_ratio * len(metrics))
    if (new_ratio < 1.0 and replicas > current) or (new_ratio > 1.0 and replicas < current):
        return current, utilization, raw
    return replicas, utilization, raw


def raw_resource_replicas(current: int, target_value: int, resource: str, pods: list[Obj],
                          metrics: dict[str, PodMetric], *, now: float,
                          tolerance: float = 0.1,
                          cpu_initialization_period: float = CPU_INITIALIZATION_PERIOD,
                          initial_readiness_delay: float = INITIAL_READINESS_DELAY
                          ) -> tuple[int, int]:
    """``GetRawResourceReplicas`` (AverageValue targets, milli-units): (replicas, average)."""
    ready, unready, missing, metrics = _usable_metrics(
        pods, metrics, resource, now, cpu_initialization_period, initial_readiness_delay)

    def ratio_of(ms: dict[str, PodMetric]) -> tuple[float, int]:
        average = sum(m.value for m in ms.values()) // len(ms)
        return average / target_value, average

    ratio, usage = ratio_of(metrics)
    scale_up_with_unready = bool(unready) and ratio > 1.0
    if not scale_up_with_unready and not missing:
        if _within(ratio, tolerance):
            return current, usage
        return math.ceil(ratio * ready), usage
    for name in missing:
        metrics[name] = PodMetric(target_value if ratio < 1.0 else 0)
    if scale_up_with_unready:
        for name in unready:
            metrics[name] = PodMetric(0)
    new_ratio, _ = ratio_of(metrics)
    if _within(new_ratio, tolerance) or (ratio < 1.0 < new_ratio) or (new_ratio < 1.0 < ratio):
        return current, usage
    replicas = math.ceil(new_ratio * len(metrics))
    if (new_ratio < 1.0 and replicas > current) or (new_ratio > 1.0 and replicas < current):
        return current, usage
    return replicas, usage


# --------------------------------------------------------------------------- normalization


@dataclass
class Recommendation:
    replicas: int
    at: float


@dataclass
class ScaleEvent:
    change: int
    at: float
    outdated: bool = False


@dataclass
class HPAState:
    """What Kubernetes keeps per HPA in memory."""

    recommendations: list[Recommendation] = field(default_factory=list)
    scale_up_events: list[ScaleEvent] = field(default_factory=list)
    scale_down_events: list[ScaleEvent] = field(default_factory=list)


def _record(recs: list[Recommendation], replicas: int, now: float, old_index: int | None) -> None:
    if old_index is not None:
        recs[old_index] = Recommendation(replicas, now)
    else:
        recs.append(Recommendation(replicas, now))


def stabilize_legacy(recs: list[Recommendation], desired: int, now: float,
                     window: float) -> int:
    """``stabilizeRecommendation`` (no behavior): the highest recommendation of the window."""
    best, old = desired, None
    for i, rec in enumerate(recs):
        if rec.at < now - window:
            old = i
        elif rec.replicas > best:
            best = rec.replicas
    _record(recs, desired, now, old)
    return best


def stabilize(recs: list[Recommendation], desired: int, current: int, now: float,
              up_window: float, down_window: float) -> tuple[int, str, str]:
    """``stabilizeRecommendationWithBehaviors``: scale up to at most the lowest
    recommendation of the scale-up window, down to at least the highest of the scale-down
    window. Returns (recommendation, reason, message) for the AbleToScale condition."""
    up, down, old = desired, desired, None
    up_cutoff, down_cutoff = now - up_window, now - down_window
    for i, rec in enumerate(recs):
        if rec.at > up_cutoff:
            up = min(up, rec.replicas)
        if rec.at > down_cutoff:
            down = max(down, rec.replicas)
        if rec.at < up_cutoff and rec.at < down_cutoff:
            old = i
    recommendation = max(current, up)
    recommendation = min(recommendation, down)
    _record(recs, desired, now, old)
    if desired >= current:
        return (recommendation, "ScaleUpStabilized",
                "recent recommendations were lower than current one, applying the lowest "
                "recent recommendation")
    return (recommendation, "ScaleDownStabilized",
            "recent recommendations were higher than current one, applying the highest "
            "recent recommendation")


def _changed_in_period(period: float, events: list[ScaleEvent], now: float) -> int:
    return sum(e.change for e in events if e.at > now - period and not e.outdated)


def scale_up_limit(current: int, up_events: list[ScaleEvent], down_events: list[ScaleEvent],
                   rules: Obj, now: float) -> int:
    """``calculateScaleUpLimitWithScalingRules``."""
    select = rules.get("selectPolicy") or "Max"
    if select == "Disabled":
        return current
    pick, result = (min, math.inf) if select == "Min" else (max, -math.inf)
    for policy in rules.get("policies") or []:
        period = float(policy.get("periodSeconds") or 0)
        start = current - _changed_in_period(period, up_events, now) + \
            _changed_in_period(period, down_events, now)
        value = int(policy.get("value") or 0)
        if policy.get("type") == "Pods":
            proposed = start + value
        else:
            proposed = math.ceil(start * (1 + value / 100))
        result = pick(result, proposed)
    return current if math.isinf(result) else int(result)


def scale_down_limit(current: int, up_events: list[ScaleEvent],
                     down_events: list[ScaleEvent], rules: Obj, now: float) -> int:
    """``calculateScaleDownLimitWithBehaviors``."""
    select = rules.get("selectPolicy") or "Max"
    if select == "Disabled":
        return current
    pick, result = (max, -math.inf) if select == "Min" else (min, math.inf)
    for policy in rules.get("policies") or []:
        period = float(policy.get("periodSeconds") or 0)
        start = current - _changed_in_period(period, up_events, now) + \
            _changed_in_period(period, down_events, now)
        value = int(policy.get("value") or 0)
        if policy.get("type") == "Pods":
            proposed = start - value
        else:
            proposed = int(start * (1 - value / 100))
        result = pick(result, proposed)
    return current if math.isinf(result) else int(result)


def legacy_limits(current: int, desired: int, min_replicas: int,
                  max_replicas: int) -> tuple[int, str, str]:
    """``convertDesiredReplicasWithRules``: min/max and a scale-up of at most
    ``max(2 * current, 4)``. Returns (replicas, reason, message) for ScalingLimited."""
    limit = max(2 * current, 4)
    if max_replicas > limit:
        maximum, reason, message = (limit, "ScaleUpLimit", "the desired replica count is "
                                    "increasing faster than the maximum scale rate")
    else:
        maximum, reason, message = (max_replicas, "TooManyReplicas", "the desired replica "
                                    "count is more than the maximum replica count")
    if desired < min_replicas:
        return (min_replicas, "TooFewReplicas",
                "the desired replica count is less than the minimum replica count")
    if desired > maximum:
        return maximum, reason, message
    return desired, "DesiredWithinRange", "the desired count is within the acceptable range"


def behavior_limits(current: int, desired: int, min_replicas: int, max_replicas: int,
                    behavior: Obj, state: HPAState, now: float) -> tuple[int, str, str]:
    """``convertDesiredReplicasWithBehaviorRate``."""
    if desired > current:
        limit = max(current, scale_up_limit(current, state.scale_up_events,
                                            state.scale_down_events,
                                            behavior.get("scaleUp") or {}, now))
        if max_replicas > limit:
            maximum, reason, message = (limit, "ScaleUpLimit", "the desired replica count "
                                        "is increasing faster than the maximum scale rate")
        else:
            maximum, reason, message = (max_replicas, "TooManyReplicas", "the desired "
                                        "replica count is more than the maximum replica "
                                        "count")
        if desired > maximum:
            return maximum, reason, message
    elif desired < current:
        limit = min(current, scale_down_limit(current, state.scale_up_events,
                                              state.scale_down_events,
                                              behavior.get("scaleDown") or {}, now))
        if min_replicas < limit:
            minimum, reason, message = (limit, "ScaleDownLimit", "the desired replica count "
                                        "is decreasing faster than the maximum scale rate")
        else:
            minimum, reason, message = (min_replicas, "TooFewReplicas", "the desired "
                                        "replica count is less than the minimum replica "
                                        "count")
        if desired < minimum:
            return minimum, reason, message
    return desired, "DesiredWithinRange", "the desired count is within the acceptable range"


def record_scale_event(state: HPAState, behavior: Obj, previous: int, new: int,
                       now: float) -> None:
    """``storeScaleEvent``: events older than the longest policy period are replaced."""
    if new == previous:
        return
    up = new > previous
    rules = (behavior.get("scaleUp") if up else behavior.get("scaleDown")) or {}
    longest = max([float(p.get("periodSeconds") or 0) for p in rules.get("policies") or []]
                  or [0.0])
    events = state.scale_up_events if up else state.scale_down_events
    for e in events:
        if e.at < now - longest:
            e.outdated = True
    change = ScaleEvent(abs(new - previous), now)
    for i, e in enumerate(events):
        if e.outdated:
            events[i] = change
            return
    events.append(change)


def normalize(state: HPAState, behavior: Obj | None, current: int, desired: int,
              min_replicas: int, max_replicas: int, now: float,
              default_down_window: float) -> tuple[int, list[tuple[str, str, str, str]]]:
    """The stabilized, limited replica count and the AbleToScale / ScalingLimited
    conditions as (type, status, reason, message)."""
    conditions = []
    if behavior is None:
        stabilized = stabilize_legacy(state.recommendations, desired, now, default_down_window)
        if stabilized != desired:
            conditions.append(("AbleToScale", "True", "ScaleDownStabilized",
                               "recent recommendations were higher than current one, "
                               "applying the highest recent recommendation"))
        else:
            conditions.append(("AbleToScale", "True", "ReadyForNewScale",
                               "recommended size matches current size"))
        final, reason, message = legacy_limits(current, stabilized, min_replicas, max_replicas)
    else:
        up = behavior.get("scaleUp") or {}
        down = behavior.get("scaleDown") or {}
        up_window = float(up.get("stabilizationWindowSeconds") or 0)
        down_window = down.get("stabilizationWindowSeconds")
        down_window = default_down_window if down_window is None else float(down_window)
        stabilized, reason, message = stabilize(state.recommendations, desired, current, now,
                                                up_window, down_window)
        if stabilized != desired:
            conditions.append(("AbleToScale", "True", reason, message))
        else:
            conditions.append(("AbleToScale", "True", "ReadyForNewScale",
                               "recommended size matches current size"))
        final, reason, message = behavior_limits(current, stabilized, min_replicas,
                                                 max_replicas, behavior, state, now)
    conditions.append(("ScalingLimited", "False" if final == stabilized else "True", reason,
                       message))
    return final, conditions


# --------------------------------------------------------------------------- status helpers


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(status: Obj, ctype: str, cstatus: str, reason: str, message: str,
                  now: float) -> None:
    conditions = status.setdefault("conditions", [])
    for c in conditions:
        if c.get("type") == ctype:
            if c.get("status") != cstatus:
                c["lastTransitionTime"] = _rfc3339(now)
            c.update({"status": cstatus, "reason": reason, "message": message})
            return
    conditions.append({"type": ctype, "status": cstatus, "lastTransitionTime": _rfc3339(now),
                       "reason": reason, "message": message})


def milli_quantity(milli: int) -> str:
    """``resource.NewMilliQuantity(v, DecimalSI).String()`` for the values seen here."""
    if milli % 1000 == 0:
        return str(milli // 1000)
    return f"{milli}m"


def metric_name(metric: Obj) -> str:
    """How Kubernetes names a metric in rescale reasons and conditions."""
    src = metric.get("resource") or {}
    target = src.get("target") or {}
    if target.get("type") == "Utilization":
        return f"{src.get('name')} resource utilization (percentage of request)"
    return f"{src.get('name')} resource"


# --------------------------------------------------------------------------- controller


class HPAController:
    name = "horizontalpodautoscaling"

    def __init__(self, client: Any, informers: Any, recorder: Any, *, sync_period: float = 15.0,
                 tolerance: float = 0.1, downscale_stabilization: float = 300.0,
                 workers: int = 5, wall: Callable[[], float] = time.time):
        self.client = client
        self.recorder = recorder
        self.sync_period = sync_period
        self.tolerance = tolerance
        self.downscale_stabilization = downscale_stabilization
        self.wall = wall
        self.states: dict[str, HPAState] = {}
        self.hpa_informer = informers.informer(RESOURCE)
        self.pod_informer = informers.informer("pods", indexers={
            NAMESPACE_INDEX: namespace_index})
        self.controller = Controller(self.name, self, workers=workers)
        self.hpa_informer.add_handler(self.controller.enqueue, self._hpa_updated,
                                      self._hpa_deleted)

    async def start(self) -> None:
        await self.controller.start()

    def _hpa_updated(self, old: Obj, new: Obj) -> None:
        # Our own status writes come back as updates: only a spec change is worth an
        # evaluation before the next sync period.
        if (old.get("spec") or {}) != (new.get("spec") or {}):
            self.controller.enqueue(new)

    def _hpa_deleted(self, hpa: Obj) -> None:
        self.states.pop(key_of(hpa), None)

    # --- reconcile ------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result | None:
        hpa = self.hpa_informer.get(key)
        if hpa is None:
            self.states.pop(key, None)
            return None
        if (hpa.get("metadata") or {}).get("deletionTimestamp"):
            return None
        state = self.states.setdefault(key, HPAState())
        status = deepcopy(hpa.get("status") or {})
        now = self.wall()
        try:
            await self._evaluate(hpa, state, status, now)
        finally:
            await self._write_status(hpa, status)
        return Result(requeue_after=self.sync_period)

    async def _evaluate(self, hpa: Obj, state: HPAState, status: Obj, now: float) -> None:
        ns, name = split_key(key_of(hpa))
        spec = hpa.get("spec") or {}
        ref = spec.get("scaleTargetRef") or {}
        rt = REGISTRY.by_kind(ref.get("apiVersion") or "", ref.get("kind") or "")
        target = f"{ref.get('kind')}/{ref.get('name')}"
        if rt is None or rt.kind not in SCALABLE:
            message = (f"the HPA controller was unable to get the target's current scale: "
                       f"no scale subresource for {ref.get('apiVersion')}, Kind="
                       f"{ref.get('kind')}")
            set_condition(status, "AbleToScale", "False", "FailedGetScale", message, now)
            await self.recorder.event(hpa, WARNING, "FailedGetScale", message)
            return
        try:
            scale = await self.client.get(rt, ref.get("name"), ns, subresource="scale")
        except StatusError as exc:
            message = f"the HPA controller was unable to get the target's current scale: " \
                      f"{getattr(exc, 'message', exc)}"
            set_condition(status, "AbleToScale", "False", "FailedGetScale", message, now)
            await self.recorder.event(hpa, WARNING, "FailedGetScale",
                                      getattr(exc, "message", str(exc)))
            return
        set_condition(status, "AbleToScale", "True", "SucceededGetScale",
                      "the HPA controller was able to get the target's current scale", now)
        current = int((scale.get("spec") or {}).get("replicas") or 0)
        min_r = int(spec.get("minReplicas") or 1)
        max_r = int(spec.get("maxReplicas") or 1)
        status["currentReplicas"] = current
        reason_text = ""
        if current == 0 and min_r != 0:
            desired = 0
            set_condition(status, "ScalingActive", "False", "ScalingDisabled",
                          "scaling is disabled since the replica count of the target is zero",
                          now)
        elif current > max_r:
            desired, reason_text = max_r, "Current number of replicas above Spec.MaxReplicas"
        elif current < min_r:
            desired, reason_text = min_r, "Current number of replicas below Spec.MinReplicas"
        else:
            try:
                proposal, metric, statuses = await self._compute(hpa, scale, current, now)
            except MetricError as exc:
                set_condition(status, "ScalingActive", "False", exc.reason,
                              f"the HPA was unable to compute the replica count: {exc}", now)
                await self.recorder.event(hpa, WARNING, exc.reason, str(exc))
                await self.recorder.event(hpa, WARNING, "FailedComputeMetricsReplicas",
                                          f"invalid metrics ({len(spec.get('metrics') or [])}"
                                          f" invalid out of "
                                          f"{len(spec.get('metrics') or [])}), first error "
                                          f"is: {exc}")
                status["desiredReplicas"] = current
                return
            status["currentMetrics"] = statuses
            set_condition(status, "ScalingActive", "True", "ValidMetricFound",
                          f"the HPA was able to successfully calculate a replica count from "
                          f"{metric}", now)
            desired, conditions = normalize(state, spec.get("behavior"), current, proposal,
                                            min_r, max_r, now, self.downscale_stabilization)
            for ctype, cstatus, reason, message in conditions:
                set_condition(status, ctype, cstatus, reason, message, now)
            if desired > current:
                reason_text = f"{metric} above target"
            elif desired < current:
                reason_text = "All metrics below target"
        if desired != current:
            new_scale = {"apiVersion": "autoscaling/v1", "kind": "Scale",
                         "metadata": {"name": ref.get("name"), "namespace": ns,
                                      "resourceVersion": (scale.get("metadata") or {}).get(
                                          "resourceVersion")},
                         "spec": {"replicas": desired}}
            try:
                await self.client.update(rt, new_scale, ns, subresource="scale")
            except StatusError as exc:
                message = getattr(exc, "message", str(exc))
                set_condition(status, "AbleToScale", "False", "FailedUpdateScale",
                              f"the HPA controller was unable to update the target scale: "
                              f"{message}", now)
                await self.recorder.event(hpa, WARNING, "FailedRescale",
                                          f"New size: {desired}; reason: {reason_text}; "
                                          f"error: {message}")
                status["desiredReplicas"] = current
                return
            set_condition(status, "AbleToScale", "True", "SucceededRescale",
                          f"the HPA controller was able to update the target scale to "
                          f"{desired}", now)
            await self.recorder.event(hpa, NORMAL, "SuccessfulRescale",
                                      f"New size: {desired}; reason: {reason_text}")
            log.info("hpa %s/%s: %s %d -> %d (%s)", ns, name, target, current, desired,
                     reason_text)
            if spec.get("behavior") is not None:
                record_scale_event(state, spec["behavior"], current, desired, now)
            status["lastScaleTime"] = _rfc3339(now)
        status["desiredReplicas"] = desired

    async def _compute(self, hpa: Obj, scale: Obj, current: int,
                       now: float) -> tuple[int, str, list[Obj]]:
        """``computeReplicasForMetrics``: the largest proposal over the metrics."""
        ns = (hpa.get("metadata") or {}).get("namespace") or ""
        selector_text = (scale.get("status") or {}).get("selector") or ""
        if not selector_text:
            raise MetricError("InvalidSelector", "selector is required")
        try:
            selector = parse_label_selector(selector_text)
        except StatusError as exc:
            raise MetricError("InvalidSelector",
                              f"couldn't convert selector into a corresponding internal "
                              f"selector object: {getattr(exc, 'message', exc)}") from None
        pods = [p for p in self.pod_informer.by_index(NAMESPACE_INDEX, ns)
                if selector.matches((p.get("metadata") or {}).get("labels") or {})]
        metrics_spec = (hpa.get("spec") or {}).get("metrics") or []
        best: tuple[int, str] | None = None
        statuses: list[Obj] = []
        errors: list[MetricError] = []
        usage_cache: dict[str, dict[str, PodMetric]] = {}
        for metric in metrics_spec:
            try:
                replicas, st = await self._one(metric, ns, selector_text, pods, current, now,
                                               usage_cache)
            except MetricError as exc:
                errors.append(exc)
                statuses.append({"type": metric.get("type") or ""})
                continue
            statuses.append(st)
            if best is None or replicas > best[0]:
                best = (replicas, metric_name(metric))
        if best is None or (errors and best[0] < current):
            if errors:
                raise errors[0]
            raise MetricError("FailedGetResourceMetric", "no metrics to compute")
        return best[0], best[1], statuses

    async def _one(self, metric: Obj, ns: str, selector: str, pods: list[Obj], current: int,
                   now: float, cache: dict[str, dict[str, PodMetric]]) -> tuple[int, Obj]:
        if metric.get("type") != "Resource":
            raise MetricError("InvalidMetricSourceType",
                              f"metric type {metric.get('type')} is not supported "
                              f"(only Resource metrics are)")
        src = metric.get("resource") or {}
        resource = src.get("name") or ""
        target = src.get("target") or {}
        if resource not in cache:
            cache[resource] = await self._pod_metrics(ns, selector, resource)
        usage = cache[resource]
        if not usage:
            raise MetricError("FailedGetResourceMetric",
                              f"failed to get {resource} utilization: unable to get metrics "
                              f"for resource {resource}: no metrics returned from resource "
                              f"metrics API")
        if target.get("type") == "AverageValue" or (target.get("averageValue") is not None
                                                    and target.get("type") != "Utilization"):
            try:
                wanted = milli_value_of(target.get("averageValue"))
            except (ValueError, TypeError):
                raise MetricError("FailedGetResourceMetric",
                                  f"invalid averageValue for {resource}") from None
            replicas, average = raw_resource_replicas(
                current, wanted, resource, pods, usage, now=now, tolerance=self.tolerance)
            return replicas, {"type": "Resource", "resource": {
                "name": resource, "current": {"averageValue": milli_quantity(average)}}}
        wanted = target.get("averageUtilization")
        if not isinstance(wanted, int) or wanted <= 0:
            raise MetricError("FailedGetResourceMetric",
                              f"invalid target for {resource}: averageUtilization is required")
        try:
            replicas, utilization, raw = resource_replicas(
                current, wanted, resource, pods, usage, now=now, tolerance=self.tolerance)
        except MetricError as exc:
            raise MetricError(exc.reason, f"failed to get {resource} utilization: {exc}") \
                from None
        return replicas, {"type": "Resource", "resource": {
            "name": resource, "current": {"averageUtilization": utilization,
                                          "averageValue": milli_quantity(raw)}}}

    async def _pod_metrics(self, ns: str, selector: str, resource: str) -> dict[str, PodMetric]:
        try:
            result = await self.client.request("GET", METRICS_PATH.format(ns=ns),
                                               params={"labelSelector": selector})
        except StatusError as exc:
            raise MetricError("FailedGetResourceMetric",
                              f"failed to get {resource} utilization: unable to get metrics "
                              f"for resource {resource}: unable to fetch metrics from "
                              f"resource metrics API: {getattr(exc, 'message', exc)}") from None
        out: dict[str, PodMetric] = {}
        for item in result.get("items") or []:
            total, complete = 0, True
            for c in item.get("containers") or []:
                value = (c.get("usage") or {}).get(resource)
                if value is None:
                    complete = False
                    break
                total += milli_value_of(value)
            if not complete:
                continue
            window = _duration(item.get("window"))
            out[item["metadata"]["name"]] = PodMetric(total, _ts(item.get("timestamp")) or 0.0,
                                                      window)
        return out

    async def _write_status(self, hpa: Obj, status: Obj) -> None:
        if status == (hpa.get("status") or {}):
            return
        new = deepcopy(hpa)
        new["status"] = status
        try:
            await self.client.update_status(RESOURCE, new)
        except NotFound:
            return
        except Conflict:
            # Our status grew from a cached copy that lagged behind a write of our own:
            # keep the newer scale time that write recorded rather than erase it.
            fresh = await self.client.get(RESOURCE, hpa["metadata"]["name"],
                                          hpa["metadata"].get("namespace"))
            recorded = (fresh.get("status") or {}).get("lastScaleTime")
            if recorded and recorded > (status.get("lastScaleTime") or ""):
                status["lastScaleTime"] = recorded
            fresh["status"] = status
            await self.client.update_status(RESOURCE, fresh)


def _duration(text: Any) -> float:
    """A Go duration (``15s``, ``1m0.5s``, ``500ms``) in seconds; 0 when unreadable."""
    if not isinstance(text, str) or not text:
        return 0.0
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    total = 0.0
    for number, unit in re.findall(r"([0-9.]+)(ns|us|µs|ms|s|m|h)", text):
        try:
            total += float(number) * units[unit]
        except ValueError:
            return 0.0
    return total


def new(ctx: Any) -> HPAController:
    cfg = ctx.config
    return HPAController(ctx.client, ctx.informers, ctx.recorder("horizontal-pod-autoscaler"),
                         sync_period=cfg.horizontal_pod_autoscaler_sync_period,
                         tolerance=cfg.horizontal_pod_autoscaler_tolerance,
                         downscale_stabilization=(
                             cfg.horizontal_pod_autoscaler_downscale_stabilization),
                         workers=cfg.concurrent_syncs)


__all__ = ["HPAController", "HPAState", "PodMetric", "MetricError", "group_pods",
           "resource_replicas", "raw_resource_replicas", "stabilize", "stabilize_legacy",
           "scale_up_limit", "scale_down_limit", "legacy_limits", "behavior_limits",
           "normalize", "record_scale_event", "new"]
