"""What every controller that makes pods (ReplicaSet, Deployment, StatefulSet, DaemonSet, Job)
needs and should not re-derive: expectations, pod template hashing and comparison, pods made
from templates with a controlling ownerReference, claiming (adopting and releasing) objects by
selector, and the order in which pods are least worth keeping.

Expectations exist because informer caches lag the API server: a controller that created two
pods and reconciles again before their ADDED events arrive would see too few pods and create
two more. So a controller records what it asked for (``expect_creations`` / ``expect_deletions``),
the pod event handlers tick them off (``creation_observed`` / ``deletion_observed``), and the
controller only acts on a key whose expectations are satisfied (or expired, in case an event was
lost). This mirrors ``k8s.io/kubernetes/pkg/controller`` (``ControllerExpectations``,
``UIDTrackingControllerExpectations``, ``ControllerRefManager``, ``ActivePods``).

Template hashing is over a *normalised* template (defaults applied, empty values dropped, the
``pod-template-hash`` label removed), so two templates that mean the same pod hash the same:
that is what lets a Deployment find an old ReplicaSet again after ``kubectl rollout undo``
sends back a template in Go's serialisation (``creationTimestamp: null``, ``resources: {}``).
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Iterable

from minik8s.api.defaults import default_pod_spec
from minik8s.api.errors import NotFound
from minik8s.api.meta import Obj, controller_of, labels_of, parse_time

POD_TEMPLATE_HASH_LABEL = "pod-template-hash"
CONTROLLER_UID_INDEX = "controllerUID"

# Kubernetes' ``ExpectationsTimeout``: stale expectations stop blocking after this long.
EXPECTATIONS_TIMEOUT = 5 * 60.0
# Kubernetes' ``SlowStartInitialBatchSize``.
SLOW_START_INITIAL_BATCH = 1


# --------------------------------------------------------------------------- indexes


def controller_uid_index(obj: Obj) -> list[str]:
    """Index an object by the uid of its controlling owner (register it under
    ``CONTROLLER_UID_INDEX`` on a shared informer: the same function object, so every
    controller can add it)."""
    ref = controller_of(obj)
    uid = ref.get("uid") if ref else None
    return [uid] if uid else []


# --------------------------------------------------------------------------- expectations


class _Clock:
    def now(self) -> float:
        return time.monotonic()


@dataclass
class _Expectation:
    add: int = 0
    deletes: set[str] = field(default_factory=set)
    timestamp: float = 0.0

    def fulfilled(self) -> bool:
        return self.add <= 0 and not self.deletes


class Expectations:
    """Creations and deletions a controller is waiting to see, per controller key.

    Creations are counted (a created pod's name is unknown until the server answers, and
    ``generateName`` pods are all alike); deletions are tracked by pod key, so a pod whose
    DELETED event arrives twice (a watch relist) is not counted twice."""

    def __init__(self, clock: Any = None, timeout: float = EXPECTATIONS_TIMEOUT):
        self.clock = clock or _Clock()
        self.timeout = timeout
        self._items: dict[str, _Expectation] = {}

    def satisfied(self, key: str) -> bool:
        """True when the controller may act on ``key``: nothing is expected, everything
        expected was observed, or the expectations are older than the timeout."""
        exp = self._items.get(key)
        if exp is None:
            return True
        if exp.fulfilled():
            return True
        return self.clock.now() - exp.timestamp > self.timeout

    def expect_creations(self, key: str, count: int) -> None:
        exp = self._items.setdefault(key, _Expectation())
        exp.add = max(0, exp.add) + count
        exp.timestamp = self.clock.now()

    def expect_deletions(self, key: str, pod_keys: Iterable[str]) -> None:
        exp = self._items.setdefault(key, _Expectation())
        exp.deletes |= set(pod_keys)
        exp.timestamp = self.clock.now()

    def creation_observed(self, key: str) -> None:
        exp = self._items.get(key)
        if exp is not None and exp.add > 0:
            exp.add -= 1

    def lower_creations(self, key: str, count: int) -> None:
        """Creations that will never be observed (they failed or were skipped)."""
        exp = self._items.get(key)
        if exp is not None:
            exp.add = max(0, exp.add - count)

    def deletion_observed(self, key: str, pod_key: str) -> None:
        exp = self._items.get(key)
        if exp is not None:
            exp.deletes.discard(pod_key)

    def pending(self, key: str) -> tuple[int, int]:
        """(creations, deletions) still expected for ``key``."""
        exp = self._items.get(key)
        return (0, 0) if exp is None else (max(0, exp.add), len(exp.deletes))

    def forget(self, key: str) -> None:
        self._items.pop(key, None)


# --------------------------------------------------------------------------- templates


def _prune(value: Any) -> Any:
    """Drop nulls, empty strings, maps and lists, recursively (Go's ``omitempty`` view)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            v = _prune(v)
            if v is None or v == "" or v == {} or v == []:
                continue
            out[k] = v
        return out
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def normalize_template(template: Obj | None) -> Obj:
    """The template as it means: pod spec defaults applied, the ``pod-template-hash``
    label removed, empty values dropped. Compare and hash this, never the raw template."""
    t = copy.deepcopy(template or {})
    if not isinstance(t.get("spec"), dict):
        t["spec"] = {}
    default_pod_spec(t["spec"])
    md = t.get("metadata")
    if isinstance(md, dict):
        md.pop("creationTimestamp", None)
        labels = md.get("labels")
        if isinstance(labels, dict):
            labels.pop(POD_TEMPLATE_HASH_LABEL, None)
    return _prune(t)


def templates_equal(a: Obj | None, b: Obj | None) -> bool:
    """Whether two pod templates describe the same pod, ignoring ``pod-template-hash``,
    server defaults and empty fields (Kubernetes' ``EqualIgnoreHash``)."""
    return normalize_template(a) == normalize_template(b)


_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery rand.SafeEncodeString


def _fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def safe_encode(text: str) -> str:
    """apimachinery's ``rand.SafeEncodeString``: no vowels, no look-alike characters."""
    return "".join(_SAFE_ALPHABET[ord(ch) % len(_SAFE_ALPHABET)] for ch in text)


def compute_hash(template: Obj | None, collision_count: int | None = None) -> str:
    """The ``pod-template-hash`` of a template: FNV-32a over the normalised template (plus
    the collision count, when set), encoded as Kubernetes does, so it is a valid label value
    and a stable name suffix."""
    data = json.dumps(normalize_template(template), sort_keys=True,
                      separators=(",", ":")).encode()
    if collision_count:
        data += str(int(collision_count)).encode()
    return safe_encode(str(_fnv32a(data)))


# --------------------------------------------------------------------------- ownership


def owner_reference(owner: Obj, *, block_owner_deletion: bool = True) -> Obj:
    """A controlling ownerReference to ``owner``."""
    md = owner.get("metadata") or {}
    return {"apiVersion": owner.get("apiVersion"), "kind": owner.get("kind"),
            "name": md.get("name"), "uid": md.get("uid"), "controller": True,
            "blockOwnerDeletion": block_owner_deletion}


def is_controlled_by(obj: Obj, owner: Obj) -> bool:
    ref = controller_of(obj)
    return bool(ref) and ref.get("uid") == (owner.get("metadata") or {}).get("uid")


def pod_from_template(template: Obj, owner: Obj, *, generate_name: str | None = None,
                      name: str | None = None, namespace: str | None = None,
                      extra_labels: dict[str, str] | None = None) -> Obj:
    """A pod built from ``template`` (labels, annotations, finalizers, spec), controlled by
    ``owner``; named ``name`` or ``generate_name`` + a server-chosen suffix
    (default ``<owner>-``)."""
    tmd = (template or {}).get("metadata") or {}
    omd = owner.get("metadata") or {}
    md: Obj = {"namespace": namespace or omd.get("namespace"),
               "labels": {**dict(tmd.get("labels") or {}), **(extra_labels or {})},
               "ownerReferences": [owner_reference(owner)]}
    if tmd.get("annotations"):
        md["annotations"] = dict(tmd["annotations"])
    if tmd.get("finalizers"):
        md["finalizers"] = list(tmd["finalizers"])
    if name:
        md["name"] = name
    else:
        md["generateName"] = generate_name or f"{omd.get('name')}-"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md,
            "spec": copy.deepcopy((template or {}).get("spec") or {})}


@dataclass
class BatchResult:
    succeeded: int
    attempted: int
    error: BaseException | None = None

    @property
    def skipped(self) -> int:
        """Calls never made (after the batch that failed)."""
        return self.total - self.attempted

    total: int = 0


async def slow_start_batch(count: int, fn: Callable[[], Awaitable[Any]],
                           initial_batch: int = SLOW_START_INITIAL_BATCH) -> BatchResult:
    """Call ``fn`` ``count`` times in batches of 1, 2, 4, ... (each batch concurrently),
    stopping after the first batch with a failure, so a template that cannot be created
    (quota, a bad field) costs one call rather than ``count`` (Kubernetes'
    ``slowStartBatch``)."""
    remaining, succeeded, attempted = count, 0, 0
    batch = min(count, max(1, initial_batch))
    while batch > 0:
        results = await asyncio.gather(*(fn() for _ in range(batch)), return_exceptions=True)
        attempted += batch
        errors = [r for r in results if isinstance(r, BaseException)]
        succeeded += batch - len(errors)
        for e in errors:
            if isinstance(e, asyncio.CancelledError):
                raise e
        if errors:
            return BatchResult(succeeded, attempted, errors[0], count)
        remaining -= batch
        batch = min(2 * batch, remaining)
    return BatchResult(succeeded, attempted, None, count)


@dataclass
class Claimed:
    """What ``claim`` decided: the objects the owner controls (after adoption), and the
    ones adopted or released on the way."""

    owned: list[Obj]
    adopted: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)


async def claim(client: Any, resource: str, owner: Obj, selector: Any, candidates: list[Obj],
                *, can_adopt: Callable[[], Awaitable[bool]] | None = None) -> Claimed:
    """Kubernetes' ``ControllerRefManager.Claim``: of ``candidates`` (objects in the
    owner's namespace), keep those ``owner`` controls and still matches, release those it
    controls but no longer matches, adopt matching orphans. Writes are merge patches pinned
    to the object's resourceVersion, so a concurrent change makes them 409 (skipped here;
    the next reconcile sees the new state). ``can_adopt`` is checked once before the first
    adoption (e.g. an uncached read that the owner still exists with the same uid)."""
    omd = owner.get("metadata") or {}
    uid = omd.get("uid")
    result = Claimed([])
    adopt_checked: bool | None = None
    for obj in candidates:
        md = obj.get("metadata") or {}
        ref = controller_of(obj)
        matches = selector.matches(labels_of(obj))
        if ref is not None:
            if ref.get("uid") != uid:
                continue  # someone else's
            if matches:
                result.owned.append(obj)
                continue
            if omd.get("deletionTimestamp") or md.get("deletionTimestamp"):
                continue
            refs = [r for r in md.get("ownerReferences") or [] if r.get("uid") != uid]
            try:
                await client.patch(resource, md["name"], {"metadata": {
                    "ownerReferences": refs or None,
                    "resourceVersion": md.get("resourceVersion")}}, md.get("namespace"))
                result.released.append(md["name"])
            except NotFound:
                pass
            continue
        if not matches or omd.get("deletionTimestamp") or md.get("deletionTimestamp"):
            continue
        if adopt_checked is None:
            adopt_checked = True if can_adopt is None else await can_adopt()
        if not adopt_checked:
            continue
        refs = list(md.get("ownerReferences") or []) + [owner_reference(owner)]
        try:
            adopted = await client.patch(resource, md["name"], {"metadata": {
                "ownerReferences": refs, "resourceVersion": md.get("resourceVersion")}},
                md.get("namespace"))
        except NotFound:
            continue
        result.adopted.append(md["name"])
        result.owned.append(adopted)
    return result


# --------------------------------------------------------------------------- pod state


def is_terminating(obj: Obj) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def is_pod_active(pod: Obj) -> bool:
    """Not finished and not being deleted (Kubernetes' ``IsPodActive``)."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not is_terminating(pod)


def _ready_condition(pod: Obj) -> Obj | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c
    return None


def is_pod_ready(pod: Obj) -> bool:
    c = _ready_condition(pod)
    return bool(c) and c.get("status") == "True"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def is_pod_available(pod: Obj, min_ready_seconds: int | float, now: datetime | None = None
                     ) -> bool:
    """Ready for at least ``min_ready_seconds`` (from the Ready condition's transition)."""
    if not is_pod_ready(pod):
        return False
    if not min_ready_seconds:
        return True
    since = parse_time((_ready_condition(pod) or {}).get("lastTransitionTime"))
    if since is None:
        return False
    return ((now or utcnow()) - since).total_seconds() >= min_ready_seconds


def seconds_until_available(pod: Obj, min_ready_seconds: int | float,
                            now: datetime | None = None) -> float | None:
    """For a ready pod not yet available: seconds until it will be; else None."""
    if not min_ready_seconds or not is_pod_ready(pod):
        return None
    since = parse_time((_ready_condition(pod) or {}).get("lastTransitionTime"))
    if since is None:
        return None
    left = min_ready_seconds - ((now or utcnow()) - since).total_seconds()
    return left if left > 0 else None


def restart_count(pod: Obj) -> int:
    return max((int(c.get("restartCount") or 0)
                for c in (pod.get("status") or {}).get("containerStatuses") or []), default=0)


_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def deletion_rank(pod: Obj) -> tuple:
    """Sort key: pods least worth keeping first (Kubernetes' ``ActivePods`` order):
    unscheduled < scheduled; Pending < Unknown < Running; not ready < ready; ready for
    less time first; more restarts first; newer first."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    ready = is_pod_ready(pod)
    ready_since = parse_time((_ready_condition(pod) or {}).get("lastTransitionTime"))
    created = parse_time((pod.get("metadata") or {}).get("creationTimestamp"))
    ts = lambda d: d.timestamp() if d else 0.0  # noqa: E731
    return (
        1 if spec.get("nodeName") else 0,
        _PHASE_RANK.get(status.get("phase") or "Pending", 0),
        1 if ready else 0,
        -ts(ready_since) if ready else 0.0,      # ready more recently goes first
        -restart_count(pod),                     # more restarts goes first
        -ts(created),                            # newer goes first
        (pod.get("metadata") or {}).get("name") or "",
    )


def pods_to_delete(pods: list[Obj], count: int) -> list[Obj]:
    """The ``count`` pods least worth keeping."""
    if count <= 0:
        return []
    return sorted(pods, key=deletion_rank)[:count]


# --------------------------------------------------------------------------- conditions


def now_rfc3339() -> str:
    return utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")


def get_condition(status: Obj | None, type_: str) -> Obj | None:
    for c in (status or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None


def set_condition(status: Obj, cond: Obj) -> None:
    """Set ``cond`` in ``status.conditions``, keeping ``lastTransitionTime`` when the status
    did not change."""
    conds = status.setdefault("conditions", [])
    for i, c in enumerate(conds):
        if c.get("type") == cond.get("type"):
            if c.get("status") == cond.get("status") and c.get("lastTransitionTime"):
                cond = {**cond, "lastTransitionTime": c["lastTransitionTime"]}
            conds[i] = cond
            return
    conds.append(cond)


def remove_condition(status: Obj, type_: str) -> None:
    conds = [c for c in status.get("conditions") or [] if c.get("type") != type_]
    if conds:
        status["conditions"] = conds
    else:
        status.pop("conditions", None)


def int_or_percent(value: Any, total: int, round_up: bool) -> int:
    """An ``IntOrString`` (``3`` or ``"25%"``) scaled against ``total``
    (``intstr.GetScaledValueFromIntOrPercent``)."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise ValueError(f"invalid value {value!r}")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.endswith("%"):
        pct = int(text[:-1])
        scaled = pct * total
        return -(-scaled // 100) if round_up else scaled // 100
    return int(text)


__all__ = ["POD_TEMPLATE_HASH_LABEL", "CONTROLLER_UID_INDEX", "EXPECTATIONS_TIMEOUT",
           "controller_uid_index", "Expectations", "normalize_template", "templates_equal",
           "compute_hash", "safe_encode", "owner_reference", "is_controlled_by",
           "pod_from_template", "slow_start_batch", "BatchResult", "Claimed", "claim", "is_terminating",
           "is_pod_active", "is_pod_ready", "is_pod_available", "seconds_until_available",
           "restart_count", "deletion_rank", "pods_to_delete", "utcnow", "now_rfc3339",
           "get_condition", "set_condition", "remove_condition", "int_or_percent"]
