"""Server-side Table output for ``kubectl get``.

kubectl 1.32 prints whatever columns the server sends when it asks with
``Accept: application/json;as=Table;v=v1;g=meta.k8s.io,...``; given a plain list it can only
show NAME and AGE. The columns, their order, which are ``-o wide`` only (priority 1) and how
each cell is computed follow Kubernetes' own printers (``pkg/printers/internalversion``,
release 1.32) so that output looks the same as against a real cluster: the server always
computes the wide cells too and kubectl drops the priority-1 columns itself.

Objects are plain dicts that may lack any field, so every lookup goes through the typed
getters below and a missing (or mistyped) field yields the same placeholder Kubernetes shows
for its zero value. Where Kubernetes relies on API defaulting having filled a field
(``Service.spec.type``, a port's ``protocol``) the default is assumed here too; where a
dual-stack list field may be absent on older-style objects (``status.podIPs``,
``spec.clusterIPs``) the single-valued field is used as a fallback.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from minik8s.api.meta import human_duration, parse_time
from minik8s.api.registry import ResourceType

Obj = dict[str, Any]

TABLE_GROUP = "meta.k8s.io"
TABLE_VERSIONS = ("v1", "v1beta1")
INCLUDE_OBJECT_VALUES = ("None", "Metadata", "Object")


# --------------------------------------------------------------------------- human durations

# --------------------------------------------------------------------------- typed getters

def _walk(obj: Any, path: str) -> Any:
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _str(obj: Any, path: str) -> str:
    value = _walk(obj, path)
    return value if isinstance(value, str) else ""


def _int(obj: Any, path: str) -> int:
    value = _walk(obj, path)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _opt_int(obj: Any, path: str) -> int | None:
    value = _walk(obj, path)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _dict(obj: Any, path: str) -> dict | None:
    """The mapping at ``path``, or None where it is absent: presence matters (Go's nil)."""
    value = _walk(obj, path)
    return value if isinstance(value, dict) else None


def _map(obj: Any, path: str) -> dict:
    return _dict(obj, path) or {}


def _dicts(obj: Any, path: str) -> list[dict]:
    value = _walk(obj, path)
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _strs(obj: Any, path: str) -> list[str]:
    value = _walk(obj, path)
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _count(obj: Any, path: str) -> int:
    value = _walk(obj, path)
    return len(value) if isinstance(value, (dict, list)) else 0


def _time(obj: Any, path: str) -> datetime | None:
    return parse_time(_walk(obj, path))


def _qty(value: Any) -> str:
    """A resource.Quantity as kubectl prints it; quantities already travel as strings."""
    if value is None:
        return "<nil>"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# --------------------------------------------------------------------------- shared formats

@dataclass(frozen=True)
class _Ctx:
    now: datetime

    def since(self, when: datetime | None) -> str:
        """``translateTimestampSince``: the age of a timestamp, ``<unknown>`` when unset."""
        if when is None:
            return "<unknown>"
        return human_duration((self.now - when).total_seconds())

    def age(self, obj: Obj) -> str:
        return self.since(_time(obj, "metadata.creationTimestamp"))


def _format_labels(labels: dict | None) -> str:
    """``labels.FormatLabels``: sorted ``k=v`` pairs, ``<none>`` when empty."""
    pairs = [f"{k}={v}" for k, v in sorted((labels or {}).items())]
    return ",".join(pairs) or "<none>"


def _selector_string(selector: dict | None) -> str | None:
    """``LabelSelectorAsSelector(...).String()``; None for a selector Kubernetes rejects.

    Requirements are sorted by key; ``In``/``NotIn`` values are sorted inside the parens.
    A missing or empty selector prints as the empty string."""
    if not selector:
        return ""
    reqs: list[tuple[str, str]] = []
    for key, value in _map(selector, "matchLabels").items():
        reqs.append((str(key), f"{key}={value}"))
    for expr in _dicts(selector, "matchExpressions"):
        key, op, values = _str(expr, "key"), _str(expr, "operator"), sorted(_strs(expr, "values"))
        if op in ("In", "NotIn"):
            if not values:
                return None
            word = "in" if op == "In" else "notin"
            reqs.append((key, f"{key} {word} ({','.join(values)})"))
        elif op in ("Exists", "DoesNotExist"):
            if values:
                return None
            reqs.append((key, key if op == "Exists" else f"!{key}"))
        else:
            return None
    return ",".join(text for _, text in sorted(reqs, key=lambda r: r[0]))


def _format_label_selector(selector: dict | None) -> str:
    """``metav1.FormatLabelSelector``: ``<none>`` when empty, ``<error>`` when invalid."""
    text = _selector_string(selector)
    if text is None:
        return "<error>"
    return text or "<none>"


def _containers_and_images(containers: list[dict]) -> list[str]:
    return [",".join(_str(c, "name") for c in containers),
            ",".join(_str(c, "image") for c in containers)]


def _join_host_port(host: str, port: int) -> str:
    try:
        is_v6 = ipaddress.ip_address(host).version == 6
    except ValueError:
        is_v6 = ":" in host
    return f"[{host}]:{port}" if is_v6 else f"{host}:{port}"


def _with_more(items: list[str], total: int, limit: int, sep: str = ",") -> str:
    text = sep.join(items[:limit])
    return f"{text} + {total - limit} more..." if total > limit else text


def _bool_ptr(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    return "<unset>"


def _condition_true(conditions: list[dict], ctype: str) -> bool:
    """True when the first condition of ``ctype`` has status True (``hasJobCondition``)."""
    for cond in conditions:
        if cond.get("type") == ctype:
            return cond.get("status") == "True"
    return False


# --------------------------------------------------------------------------- columns

@dataclass(frozen=True)
class Column:
    name: str
    type: str = "string"
    description: str = ""
    priority: int = 0
    format: str = ""

    def definition(self) -> dict:
        return {"name": self.name, "type": self.type, "format": self.format,
                "description": self.description, "priority": self.priority}


_NAME = Column("Name", format="name", description="Name must be unique within a namespace.")
_AGE = Column("Age", description="CreationTimestamp is the time this object was created.")
_CONTAINERS = Column("Containers", priority=1,
                     description="Names of each container in the template.")
_IMAGES = Column("Images", priority=1,
                 description="Images referenced by each container in the template.")
_SELECTOR = Column("Selector", priority=1, description="The label selector of the object.")


def _col(name: str, description: str, type: str = "string", priority: int = 0) -> Column:
    return Column(name, type=type, description=description, priority=priority)


def _wide(name: str, description: str) -> Column:
    return Column(name, description=description, priority=1)


# --------------------------------------------------------------------------- per-kind cells

def _pod_cells(pod: Obj, ctx: _Ctx) -> list:
    spec, status = _map(pod, "spec"), _map(pod, "status")
    init_specs = _dicts(spec, "initContainers")
    sidecar_specs = [c for c in init_specs if c.get("restartPolicy") == "Always"]
    sidecars = {_str(c, "name") for c in sidecar_specs}
    total = len(_dicts(spec, "containers")) + len(sidecar_specs)
    ready = restarts = sidecar_restarts = 0
    last_restart: datetime | None = None
    last_sidecar_restart: datetime | None = None

    def later(a: datetime | None, b: datetime | None) -> datetime | None:
        return b if b is not None and (a is None or a < b) else a

    phase = _str(status, "phase")
    reason = _str(status, "reason") or phase
    for cond in _dicts(status, "conditions"):
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    initializing = False
    for index, cs in enumerate(_dicts(status, "initContainerStatuses")):
        count = _int(cs, "restartCount")
        finished = _time(cs, "lastState.terminated.finishedAt")
        restarts += count
        last_restart = later(last_restart, finished)
        is_sidecar = _str(cs, "name") in sidecars
        if is_sidecar:
            sidecar_restarts += count
            last_sidecar_restart = later(last_sidecar_restart, finished)
        terminated, waiting = _dict(cs, "state.terminated"), _dict(cs, "state.waiting")
        if terminated is not None and _int(terminated, "exitCode") == 0:
            continue
        if is_sidecar and cs.get("started") is True:
            if cs.get("ready") is True:
                ready += 1
            continue
        if terminated is not None:
            reason = "Init:" + _terminated_reason(terminated)
        elif waiting is not None and _str(waiting, "reason") not in ("", "PodInitializing"):
            reason = "Init:" + _str(waiting, "reason")
        else:
            reason = f"Init:{index}/{len(init_specs)}"
        initializing = True
        break

    if not initializing or _condition_true(_dicts(status, "conditions"), "Initialized"):
        restarts, last_restart = sidecar_restarts, last_sidecar_restart
        has_running = False
        for cs in reversed(_dicts(status, "containerStatuses")):
            restarts += _int(cs, "restartCount")
            last_restart = later(last_restart, _time(cs, "lastState.terminated.finishedAt"))
            terminated, waiting = _dict(cs, "state.terminated"), _dict(cs, "state.waiting")
            if waiting is not None and _str(waiting, "reason"):
                reason = _str(waiting, "reason")
            elif terminated is not None:
                reason = _terminated_reason(terminated)
            elif cs.get("ready") is True and _dict(cs, "state.running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            pod_ready = _condition_true(_dicts(status, "conditions"), "Ready")
            reason = "Running" if pod_ready else "NotReady"

    if _str(pod, "metadata.deletionTimestamp"):
        if _str(status, "reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"

    restarts_text = str(restarts)
    if restarts and last_restart is not None:
        restarts_text = f"{restarts} ({ctx.since(last_restart)} ago)"

    ips = _dicts(status, "podIPs")
    pod_ip = (_str(ips[0], "ip") if ips else "") or _str(status, "podIP")
    gates = _dicts(spec, "readinessGates")
    gates_text = "<none>"
    if gates:
        conditions = _dicts(status, "conditions")
        met = sum(1 for g in gates
                  if _first_condition_status(conditions, g.get("conditionType")) == "True")
        gates_text = f"{met}/{len(gates)}"
    return [_str(pod, "metadata.name"), f"{ready}/{total}", reason, restarts_text, ctx.age(pod),
            pod_ip or "<none>", _str(spec, "nodeName") or "<none>",
            _str(status, "nominatedNodeName") or "<none>", gates_text]


def _terminated_reason(terminated: dict) -> str:
    if _str(terminated, "reason"):
        return _str(terminated, "reason")
    if _int(terminated, "signal"):
        return f"Signal:{_int(terminated, 'signal')}"
    return f"ExitCode:{_int(terminated, 'exitCode')}"


def _first_condition_status(conditions: list[dict], ctype: Any) -> str:
    for cond in conditions:
        if cond.get("type") == ctype:
            return _str(cond, "status")
    return ""


def _pod_conditions(pod: Obj) -> list[dict] | None:
    """Row conditions that let clients tell finished pods apart (``podSuccessConditions``)."""
    phase = _str(pod, "status.phase")
    messages = {"Succeeded": "The pod has completed successfully.", "Failed": "The pod failed."}
    if phase not in messages:
        return None
    return [{"type": "Completed", "status": "True", "reason": phase, "message": messages[phase]}]


def _node_cells(node: Obj, ctx: _Ctx) -> list:
    conditions = {c.get("type"): c for c in _dicts(node, "status.conditions")}
    ready = conditions.get("Ready")
    states = ["Unknown"] if ready is None else [
        "Ready" if ready.get("status") == "True" else "NotReady"]
    if _walk(node, "spec.unschedulable") is True:
        states.append("SchedulingDisabled")
    roles = set()
    for key, value in _map(node, "metadata.labels").items():
        if key.startswith("node-role.kubernetes.io/") and key[len("node-role.kubernetes.io/"):]:
            roles.add(key[len("node-role.kubernetes.io/"):])
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    info = _map(node, "status.nodeInfo")

    def address(kind: str) -> str:
        for addr in _dicts(node, "status.addresses"):
            if addr.get("type") == kind:
                return _str(addr, "address")
        return "<none>"

    return [_str(node, "metadata.name"), ",".join(states), ",".join(sorted(roles)) or "<none>",
            ctx.age(node), _str(info, "kubeletVersion"), address("InternalIP"),
            address("ExternalIP"), _str(info, "osImage") or "<unknown>",
            _str(info, "kernelVersion") or "<unknown>",
            _str(info, "containerRuntimeVersion") or "<unknown>"]


def _service_external_ip(svc: Obj) -> str:
    spec = _map(svc, "spec")
    external = _strs(spec, "externalIPs")
    kind = _str(spec, "type") or "ClusterIP"
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) or "<none>"
    if kind == "LoadBalancer":
        found = {_str(i, "ip") or _str(i, "hostname")
                 for i in _dicts(svc, "status.loadBalancer.ingress")}
        balancers = sorted(found - {""})
        if external:
            return ",".join(balancers + external)
        return ",".join(balancers) or "<pending>"
    if kind == "ExternalName":
        return _str(spec, "externalName")
    return "<unknown>"


def _service_cells(svc: Obj, ctx: _Ctx) -> list:
    spec = _map(svc, "spec")
    cluster_ips = _strs(spec, "clusterIPs")
    cluster_ip = (cluster_ips[0] if cluster_ips else "") or _str(spec, "clusterIP") or "<none>"
    ports = []
    for port in _dicts(spec, "ports"):
        protocol = _str(port, "protocol") or "TCP"
        node_port = _int(port, "nodePort")
        head = f"{_int(port, 'port')}:{node_port}" if node_port > 0 else str(_int(port, "port"))
        ports.append(f"{head}/{protocol}")
    return [_str(svc, "metadata.name"), _str(spec, "type") or "ClusterIP", cluster_ip,
            _service_external_ip(svc), ",".join(ports) or "<none>", ctx.age(svc),
            _format_labels(_dict(spec, "selector"))]


def _endpoints_text(ep: Obj) -> str:
    """``formatEndpoints``: the first three ``ip:port`` pairs and how many more there are."""
    subsets = _dicts(ep, "subsets")
    if not subsets:
        return "<none>"
    limit, shown, total = 3, [], 0
    for subset in subsets:
        addresses = [_str(a, "ip") for a in _dicts(subset, "addresses")]
        ports = _dicts(subset, "ports")
        for port in ports or [None]:
            total += len(addresses)
            for ip in addresses:
                if len(shown) == limit:
                    break
                shown.append(ip if port is None else _join_host_port(ip, _int(port, "port")))
    return _with_more(shown, total, limit) if total > limit else ",".join(shown)


def _job_cells(job: Obj, ctx: _Ctx) -> list:
    spec, status = _map(job, "spec"), _map(job, "status")
    succeeded = _int(status, "succeeded")
    completions = _opt_int(spec, "completions")
    parallelism = _int(spec, "parallelism")
    if completions is not None:
        done = f"{succeeded}/{completions}"
    elif parallelism > 1:
        done = f"{succeeded}/1 of {parallelism}"
    else:
        done = f"{succeeded}/1"
    started, finished = _time(status, "startTime"), _time(status, "completionTime")
    took = ""
    if started is not None:
        end = finished if finished is not None else ctx.now
        took = human_duration((end - started).total_seconds())
    conditions = _dicts(status, "conditions")
    if _condition_true(conditions, "Complete"):
        state = "Complete"
    elif _condition_true(conditions, "Failed"):
        state = "Failed"
    elif _str(job, "metadata.deletionTimestamp"):
        state = "Terminating"
    elif _condition_true(conditions, "Suspended"):
        state = "Suspended"
    elif _condition_true(conditions, "FailureTarget"):
        state = "FailureTarget"
    else:
        state = "Running"
    return [_str(job, "metadata.name"), state, done, took, ctx.age(job),
            *_containers_and_images(_dicts(spec, "template.spec.containers")),
            _format_label_selector(_dict(spec, "selector"))]


def _cronjob_cells(cj: Obj, ctx: _Ctx) -> list:
    spec = _map(cj, "spec")
    last = _time(cj, "status.lastScheduleTime")
    return [_str(cj, "metadata.name"), _str(spec, "schedule"),
            _str(spec, "timeZone") or "<none>", _bool_ptr(spec.get("suspend")),
            _count(cj, "status.active"), ctx.since(last) if last else "<none>", ctx.age(cj),
            *_containers_and_images(_dicts(spec, "jobTemplate.spec.template.spec.containers")),
            _format_label_selector(_dict(spec, "jobTemplate.spec.selector"))]


def _deployment_cells(dep: Obj, ctx: _Ctx) -> list:
    spec, status = _map(dep, "spec"), _map(dep, "status")
    selector = _selector_string(_dict(spec, "selector"))
    return [_str(dep, "metadata.name"),
            f"{_int(status, 'readyReplicas')}/{_int(spec, 'replicas')}",
            _int(status, "updatedReplicas"), _int(status, "availableReplicas"), ctx.age(dep),
            *_containers_and_images(_dicts(spec, "template.spec.containers")),
            "<invalid>" if selector is None else selector]


def _event_cells(ev: Obj, ctx: _Ctx) -> list:
    first_time = _time(ev, "firstTimestamp")
    first = ctx.since(first_time) if first_time else ctx.since(_time(ev, "eventTime"))
    last_time = _time(ev, "lastTimestamp")
    last = ctx.since(last_time) if last_time else first
    count = _int(ev, "count")
    series = _dict(ev, "series")
    if series is not None:
        last = ctx.since(_time(series, "lastObservedTime"))
        count = _int(series, "count")
    elif count == 0:
        count = 1  # singleton events carry no count in the events.k8s.io API
    kind, name = _str(ev, "involvedObject.kind").lower(), _str(ev, "involvedObject.name")
    component = _str(ev, "source.component") or _str(ev, "reportingComponent")
    host = _str(ev, "source.host") or _str(ev, "reportingInstance")
    return [last, _str(ev, "type"), _str(ev, "reason"), f"{kind}/{name}" if name else kind,
            _str(ev, "involvedObject.fieldPath"), f"{component}, {host}" if host else component,
            _str(ev, "message").strip(), first, count, _str(ev, "metadata.name")]


_HPA_SOURCES = {"Resource": "resource", "ContainerResource": "containerResource",
                "Pods": "pods", "Object": "object", "External": "external"}


def _hpa_metric(spec: dict, status: dict | None) -> str:
    """One entry of ``formatHPAMetrics``: ``current/target`` for one metric source."""
    kind = spec.get("type")
    field = _HPA_SOURCES.get(kind) if isinstance(kind, str) else None
    if field is None:
        return "<unknown type>"
    source = _map(spec, field)
    target = _map(source, "target")
    observed = _dict(status, field) if status else None
    per_resource = kind in ("Resource", "ContainerResource")
    prefix = f"{_str(source, 'name')}: " if per_resource else ""
    if kind == "Pods" or target.get("averageValue") is not None:
        value = _walk(observed, "current.averageValue")
        strict = kind in ("External", "Object")  # these also need the value itself present
        current = "<unknown>" if observed is None or (strict and value is None) else _qty(value)
        suffix = " (avg)" if strict else ""
        return f"{prefix}{current}/{_qty(target.get('averageValue'))}{suffix}"
    if per_resource:
        used = _opt_int(observed, "current.averageUtilization")
        wanted = _opt_int(target, "averageUtilization")
        return (f"{prefix}{'<unknown>' if used is None else f'{used}%'}/"
                f"{'<auto>' if wanted is None else f'{wanted}%'}")
    current = "<unknown>" if observed is None else _qty(_walk(observed, "current.value"))
    return f"{current}/{_qty(target.get('value'))}"


def _hpa_cells(hpa: Obj, ctx: _Ctx) -> list:
    spec = _map(hpa, "spec")
    metrics, statuses = _dicts(spec, "metrics"), _dicts(hpa, "status.currentMetrics")
    shown = [_hpa_metric(m, statuses[i] if i < len(statuses) else None)
             for i, m in enumerate(metrics)]
    targets = _with_more(shown, len(shown), 2, ", ") if shown else "<none>"
    min_pods = _opt_int(spec, "minReplicas")
    return [_str(hpa, "metadata.name"),
            f"{_str(spec, 'scaleTargetRef.kind')}/{_str(spec, 'scaleTargetRef.name')}",
            targets, "<unset>" if min_pods is None else str(min_pods),
            _int(spec, "maxReplicas"), _int(hpa, "status.currentReplicas"), ctx.age(hpa)]


_ACCESS_MODE_SHORT = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX",
                      "ReadWriteOncePod": "RWOP"}


def _pvc_cells(pvc: Obj, ctx: _Ctx) -> list:
    """``printPersistentVolumeClaim``: capacity and access modes only once bound."""
    phase = _str(pvc, "status.phase")
    if _str(pvc, "metadata.deletionTimestamp"):
        phase = "Terminating"
    capacity, modes = "", ""
    if _str(pvc, "spec.volumeName"):
        storage = _map(pvc, "status.capacity").get("storage")
        capacity = _qty(storage) if storage is not None else ""
        seen: list[str] = []
        for mode in _strs(pvc, "status.accessModes"):
            short = _ACCESS_MODE_SHORT.get(mode)
            if short and short not in seen:
                seen.append(short)
        modes = ",".join(seen)
    beta_class = _map(pvc, "metadata.annotations").get("volume.beta.kubernetes.io/storage-class")
    storage_class = _str(pvc, "spec.storageClassName") or (
        beta_class if isinstance(beta_class, str) else "")
    return [_str(pvc, "metadata.name"), phase, _str(pvc, "spec.volumeName"), capacity, modes,
            storage_class, _str(pvc, "spec.volumeAttributesClassName") or "<unset>",
            ctx.age(pvc), _str(pvc, "spec.volumeMode") or "<unset>"]


def _revision_controller(rev: Obj) -> str:
    """``printControllerRevision``: ``<kind>.<group>/<name>`` of the controlling owner."""
    for ref in _dicts(rev, "metadata.ownerReferences"):
        if ref.get("controller") is True:
            group = str(ref.get("apiVersion") or "").rpartition("/")[0]
            kind = str(ref.get("kind") or "")
            qualified = f"{kind}.{group}" if group else kind
            return f"{qualified}/{ref.get('name') or ''}"
    return "<none>"


def _simple(*getters: Callable[[Obj], Any]) -> Callable[[Obj, _Ctx], list]:
    """Cells of the common shape NAME, <getters...>, AGE."""
    def cells(obj: Obj, ctx: _Ctx) -> list:
        return [_str(obj, "metadata.name"), *(g(obj) for g in getters), ctx.age(obj)]
    return cells


def _then_wide(base: Callable[[Obj, _Ctx], list],
               *wide: Callable[[Obj], list]) -> Callable[[Obj, _Ctx], list]:
    """Appends the ``-o wide`` cells; each wide getter returns a list of cells."""
    def cells(obj: Obj, ctx: _Ctx) -> list:
        return [*base(obj, ctx), *(cell for w in wide for cell in w(obj))]
    return cells


def _template_wide(obj: Obj) -> list:
    return _containers_and_images(_dicts(obj, "spec.template.spec.containers"))


def _selector_wide(obj: Obj) -> list:
    return [_format_label_selector(_dict(obj, "spec.selector"))]


# --------------------------------------------------------------------------- the printer table

@dataclass(frozen=True)
class Printer:
    columns: tuple[Column, ...]
    cells: Callable[[Obj, _Ctx], list]
    conditions: Callable[[Obj], list[dict] | None] = lambda obj: None


_WORKLOAD_WIDE = (_CONTAINERS, _IMAGES, _SELECTOR)

PRINTERS: dict[tuple[str, str], Printer] = {
    ("", "Pod"): Printer(
        (_NAME,
         _col("Ready", "The aggregate readiness state of this pod for accepting traffic."),
         _col("Status", "The aggregate status of the containers in this pod."),
         _col("Restarts", "The number of times the containers in this pod have been "
                          "restarted and when the last container in this pod has restarted."),
         _AGE,
         _wide("IP", "IP address allocated to the pod."),
         _wide("Node", "The node this pod is bound to."),
         _wide("Nominated Node", "The node the scheduler nominated for preemption."),
         _wide("Readiness Gates", "Pod readiness gates that report True, out of all.")),
        _pod_cells, _pod_conditions),
    ("", "Node"): Printer(
        (_NAME, _col("Status", "The status of the node"), _col("Roles", "The roles of the node"),
         _AGE, _col("Version", "Kubelet version reported by the node."),
         _wide("Internal-IP", "The node's InternalIP address."),
         _wide("External-IP", "The node's ExternalIP address."),
         _wide("OS-Image", "OS image reported by the node."),
         _wide("Kernel-Version", "Kernel version reported by the node."),
         _wide("Container-Runtime", "Container runtime version reported by the node.")),
        _node_cells),
    ("", "Namespace"): Printer(
        (_NAME, _col("Status", "The status of the namespace"), _AGE),
        _simple(lambda o: _str(o, "status.phase"))),
    ("", "Service"): Printer(
        (_NAME, _col("Type", "How the service is exposed."),
         _col("Cluster-IP", "The service's cluster IP."),
         _col("External-IP", "External addresses of the service."),
         _col("Port(s)", "Service ports (port:nodePort/protocol)."), _AGE,
         _wide("Selector", "Label selector of the pods behind the service.")),
        _service_cells),
    ("", "Endpoints"): Printer(
        (_NAME, _col("Endpoints", "The addresses and ports behind the service."), _AGE),
        _simple(_endpoints_text)),
    ("", "ConfigMap"): Printer(
        (_NAME, _col("Data", "Number of data and binaryData keys."), _AGE),
        _simple(lambda o: _count(o, "data") + _count(o, "binaryData"))),
    ("", "Secret"): Printer(
        (_NAME, _col("Type", "Used to facilitate programmatic handling of secret data."),
         _col("Data", "Number of data keys."), _AGE),
        _simple(lambda o: _str(o, "type"), lambda o: _count(o, "data"))),
    ("", "ServiceAccount"): Printer(
        (_NAME, _col("Secrets", "Number of secrets the service account references."), _AGE),
        _simple(lambda o: _count(o, "secrets"))),
    ("", "Event"): Printer(
        (_col("Last Seen", "The time at which the most recent occurrence was recorded."),
         _col("Type", "Type of this event (Normal, Warning)."),
         _col("Reason", "Short, machine understandable reason for the event."),
         _col("Object", "The object this event is about."),
         _wide("Subobject", "The field of the object the event is about."),
         _wide("Source", "The component reporting this event."),
         _col("Message", "A human-readable description of the event."),
         _wide("First Seen", "The time at which the event was first recorded."),
         _wide("Count", "The number of times this event has occurred."),
         Column("Name", priority=1, format="name", description="Name of the event.")),
        _event_cells),
    ("apps", "Deployment"): Printer(
        (_NAME, _col("Ready", "Number of the pod with ready state"),
         _col("Up-to-date", "Total number of pods with the desired template."),
         _col("Available", "Total number of available pods."), _AGE, *_WORKLOAD_WIDE),
        _deployment_cells),
    ("apps", "ReplicaSet"): Printer(
        (_NAME, _col("Desired", "Number of desired pods.", "integer"),
         _col("Current", "Number of pods created.", "integer"),
         _col("Ready", "Number of ready pods.", "integer"), _AGE, *_WORKLOAD_WIDE),
        _then_wide(
            _simple(lambda o: _int(o, "spec.replicas"), lambda o: _int(o, "status.replicas"),
                    lambda o: _int(o, "status.readyReplicas")),
            _template_wide, _selector_wide)),
    ("apps", "StatefulSet"): Printer(
        (_NAME, _col("Ready", "Number of the pod with ready state"), _AGE, _CONTAINERS, _IMAGES),
        _then_wide(
            _simple(lambda o: f"{_int(o, 'status.readyReplicas')}/{_int(o, 'spec.replicas')}"),
            _template_wide)),
    ("apps", "DaemonSet"): Printer(
        (_NAME, _col("Desired", "Number of nodes that should run the daemon pod.", "integer"),
         _col("Current", "Number of nodes running the daemon pod.", "integer"),
         _col("Ready", "Number of nodes with a ready daemon pod.", "integer"),
         _col("Up-to-date", "Number of nodes running the updated daemon pod.", "integer"),
         _col("Available", "Number of nodes with an available daemon pod.", "integer"),
         _col("Node Selector", "Node selector of the pod template."), _AGE, *_WORKLOAD_WIDE),
        _then_wide(
            _simple(*(lambda o, f=f: _int(o, f"status.{f}") for f in (
                "desiredNumberScheduled", "currentNumberScheduled", "numberReady",
                "updatedNumberScheduled", "numberAvailable")),
                lambda o: _format_labels(_dict(o, "spec.template.spec.nodeSelector"))),
            _template_wide, _selector_wide)),
    ("batch", "Job"): Printer(
        (_NAME, _col("Status", "Status of the job."),
         _col("Completions", "Succeeded pods out of the desired completions."),
         _col("Duration", "Time required to complete the job."), _AGE, *_WORKLOAD_WIDE),
        _job_cells),
    ("batch", "CronJob"): Printer(
        (_NAME, _col("Schedule", "The schedule in Cron format."),
         _col("Timezone", "The time zone of the schedule."),
         _col("Suspend", "Whether subsequent executions are suspended.", "boolean"),
         _col("Active", "Number of currently running jobs.", "integer"),
         _col("Last Schedule", "When the job was last successfully scheduled."), _AGE,
         *_WORKLOAD_WIDE),
        _cronjob_cells),
    ("", "PersistentVolumeClaim"): Printer(
        (_NAME, _col("Status", "The phase of the claim."),
         _col("Volume", "The volume bound to the claim."),
         _col("Capacity", "The capacity of the bound volume."),
         _col("Access Modes", "The access modes of the bound volume."),
         _col("StorageClass", "The storage class of the claim."),
         _col("VolumeAttributesClass", "The volume attributes class of the claim.", priority=1),
         _AGE, _wide("VolumeMode", "The volume mode of the claim.")),
        _pvc_cells),
    ("apps", "ControllerRevision"): Printer(
        (_NAME, _col("Controller", "The object that owns the revision."),
         _col("Revision", "The revision number.", "integer"), _AGE),
        _simple(_revision_controller, lambda o: _int(o, "revision"))),
    ("coordination.k8s.io", "Lease"): Printer(
        (_NAME, _col("Holder", "The identity of the holder of the lease."), _AGE),
        _simple(lambda o: _str(o, "spec.holderIdentity"))),
    ("autoscaling", "HorizontalPodAutoscaler"): Printer(
        (_NAME, _col("Reference", "The scaled target."),
         _col("Targets", "Current and target metric values."),
         _col("MinPods", "Lower limit for the number of pods."),
         _col("MaxPods", "Upper limit for the number of pods."),
         _col("Replicas", "Current number of replicas."), _AGE),
        _hpa_cells),
}

_DEFAULT = Printer((_NAME, _AGE), _simple())


def _csr_cells(csr: Obj, ctx: _Ctx) -> list:
    """``printCertificateSigningRequest``: the condition is Approved/Denied/Failed (or
    Pending), with ``,Issued`` once the certificate is there."""
    seen = []
    for c in _dicts(csr, "status.conditions"):
        if c.get("type") in ("Approved", "Denied", "Failed") and c.get("type") not in seen \
                and c.get("status", "True") == "True":
            seen.append(c["type"])
    condition = ",".join(seen) or "Pending"
    if _str(csr, "status.certificate"):
        condition += ",Issued"
    seconds = _opt_int(csr, "spec.expirationSeconds")
    return [_str(csr, "metadata.name"), ctx.age(csr), _str(csr, "spec.signerName"),
            _str(csr, "spec.username"),
            human_duration(seconds) if seconds is not None else "<none>", condition]


PRINTERS[("certificates.k8s.io", "CertificateSigningRequest")] = Printer(
    (_NAME, _AGE, _col("SignerName", "The signer the request is for."),
     _col("Requestor", "The user who made the request."),
     _col("RequestedDuration", "The certificate lifetime asked for."),
     _col("Condition", "Approved, Denied or Failed (Pending without), and Issued.")),
    _csr_cells)


def printer_for(rt: ResourceType) -> Printer:
    """The printer of a kind: Kubernetes' columns for known kinds, NAME and AGE otherwise."""
    return PRINTERS.get((rt.group, rt.kind), _DEFAULT)


# --------------------------------------------------------------------------- table assembly

def _row_object(rt: ResourceType, obj: Obj, include_object: str, api_version: str) -> Obj | None:
    if include_object == "None":
        return None
    if include_object == "Object":
        if obj.get("kind") and obj.get("apiVersion"):
            return obj
        return {**obj, "kind": obj.get("kind") or rt.kind,
                "apiVersion": obj.get("apiVersion") or rt.api_version}
    metadata = obj.get("metadata")
    return {"kind": "PartialObjectMetadata", "apiVersion": api_version,
            "metadata": metadata if isinstance(metadata, dict) else {}}


def to_table(rt: ResourceType, objects: Iterable[Obj], *, resource_version: str = "",
             include_object: str = "Metadata", continue_token: str = "",
             now: datetime | None = None, api_version: str = "meta.k8s.io/v1") -> dict:
    """A ``meta.k8s.io`` Table of ``objects`` (a list's items, or one object for a GET).

    ``include_object`` is the request's ``?includeObject=``: ``Metadata`` (the server
    default, also for ``""``) embeds PartialObjectMetadata, ``Object`` the full object
    (kubectl asks for it only with ``--sort-by``), ``None`` nothing. Any other value raises
    ValueError, which the API answers with 400 BadRequest as Kubernetes does.
    ``api_version`` is the Table's group/version as negotiated by ``table_api_version``."""
    mode = include_object or "Metadata"
    if mode not in INCLUDE_OBJECT_VALUES:
        raise ValueError(f'unrecognized includeObject value: "{include_object}"')
    printer = printer_for(rt)
    ctx = _Ctx(now or datetime.now(timezone.utc))
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": printer.cells(obj, ctx)}
        conditions = printer.conditions(obj)
        if conditions:
            row["conditions"] = conditions
        row["object"] = _row_object(rt, obj, mode, api_version)
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": api_version,
        "metadata": {"resourceVersion": resource_version, "continue": continue_token},
        "columnDefinitions": [c.definition() for c in printer.columns],
        "rows": rows,
    }


def _media_ranges(accept: str) -> list[tuple[str, dict[str, str]]]:
    """Media ranges with their parameters, most preferred first (q, then position)."""
    ranges = []
    for position, part in enumerate(accept.split(",")):
        media, *raw_params = (p.strip() for p in part.split(";"))
        if not media:
            continue
        params: dict[str, str] = {}
        for raw in raw_params:
            key, _, value = raw.partition("=")
            params[key.strip().lower()] = value.strip().strip('"')
        try:
            quality = float(params.pop("q", "1"))
        except ValueError:
            quality = 1.0
        if quality > 0:
            ranges.append((-quality, position, media.lower(), params))
    return [(media, params) for _, _, media, params in sorted(ranges)]


def table_api_version(accept_header: str) -> str | None:
    """The Table group/version the client prefers (``meta.k8s.io/v1``), or None when the
    Accept header asks for plain objects first.

    Media ranges are taken in order of preference (q, then position), as the API server's
    negotiation does: a Table range in an unsupported version is skipped, a plain JSON
    range decides for plain output."""
    for media, params in _media_ranges(accept_header or ""):
        if media not in ("application/json", "application/yaml", "application/*", "*/*"):
            continue
        if params.get("as") == "Table":
            if params.get("g") == TABLE_GROUP and params.get("v") in TABLE_VERSIONS:
                return f"{TABLE_GROUP}/{params['v']}"
            continue
        if "as" not in params:
            return None
    return None


def table_wanted(accept_header: str) -> bool:
    """Whether a GET/LIST should be answered with a Table (what ``kubectl get`` asks for)."""
    return table_api_version(accept_header) is not None


__all__ = ["Column", "Printer", "PRINTERS", "human_duration", "printer_for", "table_api_version",
           "table_wanted", "to_table"]
