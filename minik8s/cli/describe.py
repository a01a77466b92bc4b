"""``mkctl describe``: kubectl's describers (``k8s.io/kubectl/pkg/describe``) over plain
dicts, so a human reading either tool sees the same sections, labels and alignment.

Rendering is pure (``render(kind, obj, related, now)``) and separate from fetching the few
related objects a description needs (events, the pods of a controller, a deployment's
replica sets, a node's lease and pods), which ``describe_object`` gathers with the client.
Objects may lack any field, so every access goes through small tolerant getters; where
Kubernetes' API defaulting would have filled a field, the default is shown.

Two things differ from kubectl on purpose: Secret values are never shown (kubectl prints a
service-account token), and the Events of an object are found by kind, name and namespace
(kubectl adds the uid), so events recorded without a uid still show.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fractions import Fraction
from typing import Any, Callable

from minik8s.api.errors import NotFound, StatusError
from minik8s.api.quantity import parse_quantity
from minik8s.api.registry import ResourceType
from minik8s.api.selectors import selector_from_dict
from minik8s.api.meta import human_duration, parse_time
from minik8s.cli.printers import LAST_APPLIED, describe_writer, format_labels

Obj = dict[str, Any]

LEVEL_0, LEVEL_1, LEVEL_2, LEVEL_3 = 0, 1, 2, 3
MAX_ANNOTATION_LEN = 140


# --------------------------------------------------------------------------- writer

class PrefixWriter:
    """kubectl's ``PrefixWriter``: two spaces per level, into a describe tab writer."""

    def __init__(self) -> None:
        self._tw = describe_writer()
        self._out: list[str] = []

    def write(self, level: int, text: str) -> None:
        self._tw.write("  " * level + text)

    def line(self, *parts: Any) -> None:
        """``WriteLine``: the parts joined by spaces, then a newline."""
        self._tw.write(" ".join(str(p) for p in parts) + "\n")

    def flush(self) -> None:
        self._out.append(self._tw.flush())

    def text(self) -> str:
        self.flush()
        return "".join(self._out)


# --------------------------------------------------------------------------- getters

def _get(obj: Any, path: str, default: Any = None) -> Any:
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return default
        cur = cur[part]
    return default if cur is None else cur


def _s(obj: Any, path: str) -> str:
    value = _get(obj, path, "")
    return value if isinstance(value, str) else _go(value)


def _i(obj: Any, path: str, default: int = 0) -> int:
    value = _get(obj, path)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _list(obj: Any, path: str) -> list:
    value = _get(obj, path)
    return value if isinstance(value, list) else []


def _dicts(obj: Any, path: str) -> list[dict]:
    return [v for v in _list(obj, path) if isinstance(v, dict)]


def _map(obj: Any, path: str) -> dict:
    value = _get(obj, path)
    return value if isinstance(value, dict) else {}


def _go(value: Any) -> str:
    """``fmt.Sprint`` of a decoded JSON value (``%v``)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    if isinstance(value, list):
        return "[" + " ".join(_go(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go(v)}" for k, v in sorted(value.items())) + "]"
    return str(value)


def _bool_text(value: Any) -> str:
    return "True" if value is True else "False"


def _intstr(value: Any) -> str:
    return "" if value is None else _go(value)


def rfc1123z(value: Any) -> str:
    """Go's ``time.RFC1123Z`` in local time; Go's zero time for a missing timestamp."""
    when = parse_time(value)
    if when is None:
        return "Mon, 01 Jan 0001 00:00:00 +0000"
    return when.astimezone().strftime("%a, %d %b %Y %H:%M:%S %z")


def _since(value: Any, now: datetime) -> str:
    when = parse_time(value)
    if when is None:
        return "<unknown>"
    return human_duration((now - when).total_seconds())


def _selector_text(selector: Any) -> str:
    """``LabelSelectorAsSelector(s).String()``."""
    if not isinstance(selector, dict):
        return ""
    try:
        return str(selector_from_dict(selector))
    except StatusError as err:
        return f"<error: {err}>"


def _format_selector(selector: Any) -> str:
    """``metav1.FormatLabelSelector``: ``<none>`` for an empty selector."""
    if not isinstance(selector, dict) or not selector:
        return "<none>"
    try:
        return str(selector_from_dict(selector)) or "<none>"
    except StatusError:
        return "<error>"


def _controller(obj: Obj) -> str:
    for ref in _dicts(obj, "metadata.ownerReferences"):
        if ref.get("controller"):
            return f"{ref.get('kind', '')}/{ref.get('name', '')}"
    return ""


# --------------------------------------------------------------------------- quantities

_BINARY = (("Ei", 2 ** 60), ("Pi", 2 ** 50), ("Ti", 2 ** 40), ("Gi", 2 ** 30), ("Mi", 2 ** 20),
           ("Ki", 2 ** 10))
_DECIMAL = (("E", 10 ** 18), ("P", 10 ** 15), ("T", 10 ** 12), ("G", 10 ** 9), ("M", 10 ** 6),
            ("k", 10 ** 3))


@dataclass
class Quantity:
    """A sum of quantities printed the way ``resource.Quantity.String()`` canonicalises it."""

    value: Fraction = Fraction(0)
    binary: bool | None = None

    def add(self, raw: Any) -> None:
        try:
            self.value += parse_quantity(raw)
        except ValueError:
            return
        if self.binary is None:
            self.binary = isinstance(raw, str) and raw.rstrip("0123456789").endswith("i")

    def __str__(self) -> str:
        value = self.value
        if value == 0:
            return "0"
        if value.denominator == 1:
            n = int(value)
            for suffix, mult in (_BINARY if self.binary else _DECIMAL):
                if n % mult == 0:
                    return f"{n // mult}{suffix}"
            return str(n)
        for suffix, mult in (("m", 1000), ("u", 10 ** 6), ("n", 10 ** 9)):
            scaled = value * mult
            if scaled.denominator == 1:
                return f"{int(scaled)}{suffix}"
        return f"{-(-value.numerator * 10 ** 9 // value.denominator)}n"


def _quantity(raw: Any) -> str:
    q = Quantity()
    q.add(raw)
    return str(q) if q.binary is not None else _go(raw)


# --------------------------------------------------------------------------- shared sections

def print_labels(w: PrefixWriter, title: str, labels: Any, initial: str = "",
                 inner: str = "\t") -> None:
    """``printLabelsMultilineWithIndent``."""
    w.write(LEVEL_0, f"{initial}{title}:{inner}")
    labels = labels if isinstance(labels, dict) else {}
    if not labels:
        w.line("<none>")
        return
    for i, key in enumerate(sorted(labels)):
        if i:
            w.write(LEVEL_0, initial)
            w.write(LEVEL_0, inner)
        w.write(LEVEL_0, f"{key}={_go(labels[key])}\n")


def _shorten(text: str, limit: int) -> str:
    return text[:limit] + "..." if len(text) > limit else text


def print_annotations(w: PrefixWriter, title: str, annotations: Any) -> None:
    """``printAnnotationsMultiline``: never the last-applied configuration."""
    w.write(LEVEL_0, f"{title}:\t")
    annotations = annotations if isinstance(annotations, dict) else {}
    keys = sorted(k for k in annotations if k != LAST_APPLIED)
    if not keys:
        w.line("<none>")
        return
    for i, key in enumerate(keys):
        if i:
            w.write(LEVEL_0, "\t")
        value = _go(annotations[key])
        if value.endswith("\n"):
            value = value[:-1]
        if len(value) + len(key) + 2 > MAX_ANNOTATION_LEN or "\n" in value:
            w.write(LEVEL_0, f"{key}:\n")
            for part in value.split("\n"):
                w.write(LEVEL_0, f"\t  {_shorten(part, MAX_ANNOTATION_LEN - 2)}\n")
        else:
            w.write(LEVEL_0, f"{key}: {value}\n")


def print_tolerations(w: PrefixWriter, title: str, tolerations: list[dict],
                      initial: str = "") -> None:
    w.write(LEVEL_0, f"{initial}{title}:\t")
    if not tolerations:
        w.line("<none>")
        return
    for i, t in enumerate(sorted(tolerations, key=lambda t: str(t.get("key") or ""))):
        if i:
            w.write(LEVEL_0, initial)
            w.write(LEVEL_0, "\t")
        key, value, effect = (str(t.get(k) or "") for k in ("key", "value", "effect"))
        text = key + (f"={value}" if value else "") + (f":{effect}" if effect else "")
        if t.get("operator") == "Exists" and not value:
            text += " op=Exists" if key or effect else "op=Exists"
        if isinstance(t.get("tolerationSeconds"), int):
            text += f" for {t['tolerationSeconds']}s"
        w.write(LEVEL_0, text + "\n")


def print_taints(w: PrefixWriter, title: str, taints: list[dict]) -> None:
    w.write(LEVEL_0, f"{title}:\t")
    if not taints:
        w.line("<none>")
        return
    ordered = sorted(taints, key=lambda t: f"{t.get('effect') or ''},{t.get('key') or ''}")
    for i, t in enumerate(ordered):
        if i:
            w.write(LEVEL_0, "\t")
        text = str(t.get("key") or "")
        if t.get("value"):
            text += f"={t['value']}"
        text += f":{t.get('effect') or ''}"
        w.write(LEVEL_0, text + "\n")


def describe_events(w: PrefixWriter, events: list[Obj], now: datetime) -> None:
    """``DescribeEvents``: a table sorted by last timestamp, or ``<none>``."""
    if not events:
        w.write(LEVEL_0, "Events:\t<none>\n")
        return
    w.flush()
    oldest = datetime.min.replace(tzinfo=timezone.utc)
    ordered = sorted(events, key=lambda e: parse_time(e.get("lastTimestamp")) or oldest)
    w.write(LEVEL_0, "Events:\n  Type\tReason\tAge\tFrom\tMessage\n")
    w.write(LEVEL_1, "----\t------\t----\t----\t-------\n")
    for e in ordered:
        first = (_since(e.get("eventTime"), now) if e.get("eventTime")
                 else _since(e.get("firstTimestamp"), now))
        series = _map(e, "series")
        count = _i(e, "count")
        if series:
            interval = (f"{_since(series.get('lastObservedTime'), now)} "
                        f"(x{_i(series, 'count')} over {first})")
        elif count > 1:
            interval = f"{_since(e.get('lastTimestamp'), now)} (x{count} over {first})"
        else:
            interval = first
        source = _s(e, "source.component") or _s(e, "reportingComponent")
        message = _s(e, "message").strip()
        if _s(e, "involvedObject.fieldPath"):
            message = f"{_s(e, 'involvedObject.fieldPath')}: {message}"
        w.write(LEVEL_1, f"{_s(e, 'type')}\t{_s(e, 'reason')}\t{interval}\t{source}\t"
                         f"{message}\n")


# --------------------------------------------------------------------------- containers

def _ports(ports: list[dict], field_name: str) -> str:
    out = []
    for p in ports:
        out.append(f"{_i(p, field_name)}/{_s(p, 'protocol') or 'TCP'}")
    return ", ".join(out)


def _probe(probe: dict) -> str:
    attrs = (f"delay={_i(probe, 'initialDelaySeconds')}s "
             f"timeout={_i(probe, 'timeoutSeconds', 1)}s "
             f"period={_i(probe, 'periodSeconds', 10)}s "
             f"#success={_i(probe, 'successThreshold', 1)} "
             f"#failure={_i(probe, 'failureThreshold', 3)}")
    if isinstance(probe.get("exec"), dict):
        return f"exec {_go(_list(probe, 'exec.command'))} {attrs}"
    if isinstance(probe.get("httpGet"), dict):
        get = probe["httpGet"]
        scheme = (_s(get, "scheme") or "HTTP").lower()
        host, port = _s(get, "host"), _intstr(get.get("port"))
        netloc = (f"[{host}]:{port}" if ":" in host else f"{host}:{port}") if port else host
        return f"http-get {scheme}://{netloc}{_s(get, 'path')} {attrs}"
    if isinstance(probe.get("tcpSocket"), dict):
        sock = probe["tcpSocket"]
        return f"tcp-socket {_s(sock, 'host')}:{_intstr(sock.get('port'))} {attrs}"
    if isinstance(probe.get("grpc"), dict):
        return f"grpc <pod>:{_i(probe, 'grpc.port')} {_s(probe, 'grpc.service')} {attrs}"
    return f"unknown {attrs}"


_FIELD_REF = re.compile(r"metadata\.(labels|annotations)\['(.*)'\]")


def _field_ref_value(pod: Obj | None, path: str) -> str:
    if pod is None:
        return ""
    m = _FIELD_REF.fullmatch(path)
    if m:
        return _go(_map(pod, f"metadata.{m.group(1)}").get(m.group(2), ""))
    simple = {"status.podIP": "status.podIP", "status.hostIP": "status.hostIP",
              "spec.nodeName": "spec.nodeName", "metadata.name": "metadata.name",
              "metadata.namespace": "metadata.namespace", "metadata.uid": "metadata.uid",
              "spec.serviceAccountName": "spec.serviceAccountName"}
    return _s(pod, simple[path]) if path in simple else ""


def _state(w: PrefixWriter, title: str, state: dict) -> None:
    if isinstance(state.get("running"), dict):
        w.write(LEVEL_2, f"{title}:\tRunning\n")
        w.write(LEVEL_3, f"Started:\t{rfc1123z(_get(state, 'running.startedAt'))}\n")
    elif isinstance(state.get("waiting"), dict):
        w.write(LEVEL_2, f"{title}:\tWaiting\n")
        if _s(state, "waiting.reason"):
            w.write(LEVEL_3, f"Reason:\t{_s(state, 'waiting.reason')}\n")
    elif isinstance(state.get("terminated"), dict):
        t = state["terminated"]
        w.write(LEVEL_2, f"{title}:\tTerminated\n")
        if _s(t, "reason"):
            w.write(LEVEL_3, f"Reason:\t{_s(t, 'reason')}\n")
        if _s(t, "message"):
            w.write(LEVEL_3, f"Message:\t{_s(t, 'message')}\n")
        w.write(LEVEL_3, f"Exit Code:\t{_i(t, 'exitCode')}\n")
        if _i(t, "signal") > 0:
            w.write(LEVEL_3, f"Signal:\t{_i(t, 'signal')}\n")
        w.write(LEVEL_3, f"Started:\t{rfc1123z(t.get('startedAt'))}\n")
        w.write(LEVEL_3, f"Finished:\t{rfc1123z(t.get('finishedAt'))}\n")
    else:
        w.write(LEVEL_2, f"{title}:\tWaiting\n")


def _resources(w: PrefixWriter, resources: dict, level: int) -> None:
    for title, key in (("Limits", "limits"), ("Requests", "requests")):
        values = _map(resources, key)
        if values:
            w.write(level, f"{title}:\n")
        for name in sorted(values):
            w.write(level + 1, f"{name}:\t{_quantity(values[name])}\n")


def describe_containers(w: PrefixWriter, label: str, containers: list[dict],
                        statuses: list[dict] | None, pod: Obj | None, space: str) -> None:
    by_name = {s.get("name"): s for s in statuses or []}
    w.write(LEVEL_0, f"{space}{label}:{'' if containers else ' <none>'}\n")
    name_indent = " " if space else ""
    for c in containers:
        status = by_name.get(c.get("name"))
        w.write(LEVEL_1, f"{name_indent}{_s(c, 'name')}:\n")
        if status is not None:
            w.write(LEVEL_2, f"Container ID:\t{_s(status, 'containerID')}\n")
        w.write(LEVEL_2, f"Image:\t{_s(c, 'image')}\n")
        if status is not None:
            w.write(LEVEL_2, f"Image ID:\t{_s(status, 'imageID')}\n")
        ports = _dicts(c, "ports")
        for title, key in (("Port", "containerPort"), ("Host Port", "hostPort")):
            text = _ports(ports, key)
            if "," in text:
                w.write(LEVEL_2, f"{title}s:\t{text}\n")
            else:
                w.write(LEVEL_2, f"{title}:\t{text or '<none>'}\n")
        for title, key in (("Command", "command"), ("Args", "args")):
            values = _list(c, key)
            if values:
                w.write(LEVEL_2, f"{title}:\n")
                for value in values:
                    for part in _go(value).split("\n"):
                        w.write(LEVEL_3, f"{part}\n")
        if status is not None:
            _state(w, "State", _map(status, "state"))
            if isinstance(_get(status, "lastState.terminated"), dict):
                _state(w, "Last State", _map(status, "lastState"))
            w.write(LEVEL_2, f"Ready:\t{_bool_text(status.get('ready'))}\n")
            w.write(LEVEL_2, f"Restart Count:\t{_i(status, 'restartCount')}\n")
        _resources(w, _map(c, "resources"), LEVEL_2)
        for title, key in (("Liveness", "livenessProbe"), ("Readiness", "readinessProbe"),
                           ("Startup", "startupProbe")):
            if isinstance(c.get(key), dict):
                w.write(LEVEL_2, f"{title}:\t{_probe(c[key])}\n")
        env_from = _dicts(c, "envFrom")
        if env_from:
            w.write(LEVEL_2, "Environment Variables from:\n")
            for e in env_from:
                kind, ref = ("ConfigMap", _map(e, "configMapRef")) if "configMapRef" in e \
                    else ("Secret", _map(e, "secretRef"))
                optional = "true" if ref.get("optional") is True else "false"
                source = f"{kind} with prefix '{e['prefix']}'" if e.get("prefix") else kind
                w.write(LEVEL_3, f"{_s(ref, 'name')}\t{source}\tOptional: {optional}\n")
        _env(w, c, pod)
        _mounts(w, c)


def _env(w: PrefixWriter, c: dict, pod: Obj | None) -> None:
    env = _dicts(c, "env")
    w.write(LEVEL_2, "Environment:" + ("" if env else "\t<none>") + "\n")
    for e in env:
        name = _s(e, "name")
        source = _map(e, "valueFrom")
        if not source:
            for i, part in enumerate(_s(e, "value").split("\n")):
                w.write(LEVEL_3, f"{name}:\t{part}\n" if i == 0 else f"\t{part}\n")
            continue
        if "fieldRef" in source:
            ref = _map(source, "fieldRef")
            value = _field_ref_value(pod, _s(ref, "fieldPath"))
            w.write(LEVEL_3, f"{name}:\t{value} ({_s(ref, 'apiVersion')}:"
                             f"{_s(ref, 'fieldPath')})\n")
        elif "resourceFieldRef" in source:
            resource = _s(source, "resourceFieldRef.resource")
            kind, _, res = resource.partition(".")
            value = _map(c, f"resources.{kind}").get(res)
            text = _quantity(value) if value is not None else (
                "node allocatable" if kind == "limits" else "0")
            w.write(LEVEL_3, f"{name}:\t{text} ({resource})\n")
        elif "secretKeyRef" in source:
            ref = _map(source, "secretKeyRef")
            optional = "true" if ref.get("optional") is True else "false"
            w.write(LEVEL_3, f"{name}:\t<set to the key '{_s(ref, 'key')}' in secret "
                             f"'{_s(ref, 'name')}'>\tOptional: {optional}\n")
        elif "configMapKeyRef" in source:
            ref = _map(source, "configMapKeyRef")
            optional = "true" if ref.get("optional") is True else "false"
            w.write(LEVEL_3, f"{name}:\t<set to the key '{_s(ref, 'key')}' of config map "
                             f"'{_s(ref, 'name')}'>\tOptional: {optional}\n")


def _mounts(w: PrefixWriter, c: dict) -> None:
    mounts = _dicts(c, "volumeMounts")
    w.write(LEVEL_2, "Mounts:" + ("" if mounts else "\t<none>") + "\n")
    for m in sorted(mounts, key=lambda m: _s(m, "mountPath")):
        flags = ["ro" if m.get("readOnly") is True else "rw"]
        if _s(m, "subPath"):
            flags.append(f'path="{_s(m, "subPath")}"')
        w.write(LEVEL_3, f"{_s(m, 'mountPath')} from {_s(m, 'name')} ({','.join(flags)})\n")


def _host_path_type(volume: dict) -> str:
    kind = _get(volume, "hostPath.type")
    return "<none>" if kind is None else _go(kind)


def describe_volumes(w: PrefixWriter, volumes: list[dict], space: str) -> None:
    if not volumes:
        w.write(LEVEL_0, f"{space}Volumes:\t<none>\n")
        return
    w.write(LEVEL_0, f"{space}Volumes:\n")
    for v in volumes:
        w.write(LEVEL_1, f"{' ' if space else ''}{_s(v, 'name')}:\n")
        if isinstance(v.get("hostPath"), dict):
            w.write(LEVEL_2, "Type:\tHostPath (bare host directory volume)\n"
                             f"    Path:\t{_s(v, 'hostPath.path')}\n"
                             f"    HostPathType:\t{_host_path_type(v)}\n")
        elif isinstance(v.get("emptyDir"), dict):
            size = _get(v, "emptyDir.sizeLimit")
            w.write(LEVEL_2, "Type:\tEmptyDir (a temporary directory that shares a pod's "
                             "lifetime)\n"
                             f"    Medium:\t{_s(v, 'emptyDir.medium')}\n"
                             f"    SizeLimit:\t{_quantity(size) if size else '<unset>'}\n")
        elif isinstance(v.get("secret"), dict):
            optional = "true" if _get(v, "secret.optional") is True else "false"
            w.write(LEVEL_2, "Type:\tSecret (a volume populated by a Secret)\n"
                             f"    SecretName:\t{_s(v, 'secret.secretName')}\n"
                             f"    Optional:\t{optional}\n")
        elif isinstance(v.get("configMap"), dict):
            optional = "true" if _get(v, "configMap.optional") is True else "false"
            w.write(LEVEL_2, "Type:\tConfigMap (a volume populated by a ConfigMap)\n"
                             f"    Name:\t{_s(v, 'configMap.name')}\n"
                             f"    Optional:\t{optional}\n")
        elif isinstance(v.get("persistentVolumeClaim"), dict):
            read_only = "true" if _get(v, "persistentVolumeClaim.readOnly") is True else "false"
            w.write(LEVEL_2, "Type:\tPersistentVolumeClaim (a reference to a "
                             "PersistentVolumeClaim in the same namespace)\n"
                             f"    ClaimName:\t{_s(v, 'persistentVolumeClaim.claimName')}\n"
                             f"    ReadOnly:\t{read_only}\n")
        elif isinstance(v.get("downwardAPI"), dict):
            w.write(LEVEL_2, "Type:\tDownwardAPI (a volume populated by information about "
                             "the pod)\n    Items:\n")
            for item in _dicts(v, "downwardAPI.items"):
                source = _s(item, "fieldRef.fieldPath") or _s(item, "resourceFieldRef.resource")
                w.write(LEVEL_3, f"{source} -> {_s(item, 'path')}\n")
        elif isinstance(v.get("projected"), dict):
            w.write(LEVEL_2, "Type:\tProjected (a volume that contains injected data from "
                             "multiple sources)\n")
            for src in _dicts(v, "projected.sources"):
                if isinstance(src.get("secret"), dict):
                    optional = "true" if _get(src, "secret.optional") is True else "false"
                    w.write(LEVEL_2, f"SecretName:\t{_s(src, 'secret.name')}\n"
                                     f"    Optional:\t{optional}\n")
                elif isinstance(src.get("downwardAPI"), dict):
                    w.write(LEVEL_2, "DownwardAPI:\ttrue\n")
                elif isinstance(src.get("configMap"), dict):
                    optional = "true" if _get(src, "configMap.optional") is True else "false"
                    w.write(LEVEL_2, f"ConfigMapName:\t{_s(src, 'configMap.name')}\n"
                                     f"    Optional:\t{optional}\n")
                elif isinstance(src.get("serviceAccountToken"), dict):
                    seconds = _i(src, "serviceAccountToken.expirationSeconds", 3607)
                    w.write(LEVEL_2, f"TokenExpirationSeconds:\t{seconds}\n")
        else:
            w.write(LEVEL_1, "<unknown>\n")


def describe_pod_template(w: PrefixWriter, template: Any) -> None:
    w.write(LEVEL_0, "Pod Template:\n")
    if not isinstance(template, dict):
        w.write(LEVEL_1, "<unset>")
        return
    print_labels(w, "  Labels", _map(template, "metadata.labels"))
    annotations = _map(template, "metadata.annotations")
    if annotations:
        print_annotations(w, "  Annotations", annotations)
    spec = _map(template, "spec")
    if _s(spec, "serviceAccountName"):
        w.write(LEVEL_1, f"Service Account:\t{_s(spec, 'serviceAccountName')}\n")
    if _dicts(spec, "initContainers"):
        describe_containers(w, "Init Containers", _dicts(spec, "initContainers"), None, None,
                            "  ")
    describe_containers(w, "Containers", _dicts(spec, "containers"), None, None, "  ")
    describe_volumes(w, _dicts(spec, "volumes"), "  ")
    if _s(spec, "priorityClassName"):
        w.write(LEVEL_1, f"Priority Class Name:\t{_s(spec, 'priorityClassName')}\n")
    print_labels(w, "  Node-Selectors", _map(spec, "nodeSelector"))
    print_tolerations(w, "  Tolerations", _dicts(spec, "tolerations"))


def _header(w: PrefixWriter, obj: Obj, *, namespace: bool = True) -> None:
    w.write(LEVEL_0, f"Name:\t{_s(obj, 'metadata.name')}\n")
    if namespace:
        w.write(LEVEL_0, f"Namespace:\t{_s(obj, 'metadata.namespace')}\n")


def _meta(w: PrefixWriter, obj: Obj) -> None:
    print_labels(w, "Labels", _map(obj, "metadata.labels"))
    print_annotations(w, "Annotations", _map(obj, "metadata.annotations"))


def _conditions_with_reason(w: PrefixWriter, obj: Obj) -> None:
    conditions = _dicts(obj, "status.conditions")
    if conditions:
        w.write(LEVEL_0, "Conditions:\n  Type\tStatus\tReason\n")
        w.write(LEVEL_1, "----\t------\t------\n")
        for c in conditions:
            w.write(LEVEL_1, f"{_s(c, 'type')} \t{_s(c, 'status')}\t{_s(c, 'reason')}\n")


def _events(w: PrefixWriter, related: "Related", now: datetime) -> None:
    if related.events is not None:
        describe_events(w, related.events, now)


def _pods_status(pods: list[Obj]) -> str:
    counts = {"Running": 0, "Pending": 0, "Succeeded": 0, "Failed": 0}
    for pod in pods:
        phase = _s(pod, "status.phase")
        if phase in counts:
            counts[phase] += 1
    return (f"{counts['Running']} Running / {counts['Pending']} Waiting / "
            f"{counts['Succeeded']} Succeeded / {counts['Failed']} Failed")


# --------------------------------------------------------------------------- per kind

@dataclass
class Related:
    """What a description shows besides the object itself (None: not fetched/not shown)."""

    events: list[Obj] | None = None
    pods: list[Obj] | None = None          # a controller's pods, or a node's pods
    replica_sets: list[Obj] | None = None  # a deployment's
    lease: Obj | None = None
    lease_error: str = ""
    endpoints: Obj | None = None           # a service's
    extra: dict[str, Any] = field(default_factory=dict)


def _qos(pod: Obj) -> str:
    """``qos.GetPodQOS``."""
    requests: dict[str, Fraction] = {}
    limits: dict[str, Fraction] = {}
    guaranteed = True
    spec = _map(pod, "spec")
    for c in _dicts(spec, "containers") + _dicts(spec, "initContainers"):
        for kind, acc in (("requests", requests), ("limits", limits)):
            for name, raw in _map(c, f"resources.{kind}").items():
                if name not in ("cpu", "memory"):
                    continue
                try:
                    value = parse_quantity(raw)
                except ValueError:
                    continue
                if value != 0:
                    acc[name] = acc.get(name, Fraction(0)) + value
        container_limits = _map(c, "resources.limits")
        if not ("cpu" in container_limits and "memory" in container_limits):
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and all(requests.get(k) == v for k, v in limits.items()) \
            and set(requests) <= set(limits):
        return "Guaranteed"
    return "Burstable"


def describe_pod(pod: Obj, related: Related, now: datetime) -> str:
    w = PrefixWriter()
    spec, status = _map(pod, "spec"), _map(pod, "status")
    _header(w, pod)
    if isinstance(spec.get("priority"), int):
        w.write(LEVEL_0, f"Priority:\t{spec['priority']}\n")
    if _s(spec, "priorityClassName"):
        w.write(LEVEL_0, f"Priority Class Name:\t{_s(spec, 'priorityClassName')}\n")
    if _s(spec, "runtimeClassName"):
        w.write(LEVEL_0, f"Runtime Class Name:\t{_s(spec, 'runtimeClassName')}\n")
    if _s(spec, "serviceAccountName"):
        w.write(LEVEL_0, f"Service Account:\t{_s(spec, 'serviceAccountName')}\n")
    if _s(spec, "nodeName"):
        w.write(LEVEL_0, f"Node:\t{_s(spec, 'nodeName')}/{_s(status, 'hostIP')}\n")
    else:
        w.write(LEVEL_0, "Node:\t<none>\n")
    if status.get("startTime"):
        w.write(LEVEL_0, f"Start Time:\t{rfc1123z(status['startTime'])}\n")
    _meta(w, pod)
    phase = _s(status, "phase")
    if _s(pod, "metadata.deletionTimestamp") and phase not in ("Failed", "Succeeded"):
        w.write(LEVEL_0, f"Status:\tTerminating (lasts "
                         f"{_since(_get(pod, 'metadata.deletionTimestamp'), now)})\n")
        w.write(LEVEL_0, f"Termination Grace Period:\t"
                         f"{_i(pod, 'metadata.deletionGracePeriodSeconds')}s\n")
    else:
        w.write(LEVEL_0, f"Status:\t{phase}\n")
    if _s(status, "reason"):
        w.write(LEVEL_0, f"Reason:\t{_s(status, 'reason')}\n")
    if _s(status, "message"):
        w.write(LEVEL_0, f"Message:\t{_s(status, 'message')}\n")
    w.write(LEVEL_0, f"IP:\t{_s(status, 'podIP')}\n")
    ips = _dicts(status, "podIPs")
    if not ips:
        w.write(LEVEL_0, "IPs:\t<none>\n")
    else:
        w.write(LEVEL_0, "IPs:\n")
        for ip in ips:
            w.write(LEVEL_1, f"IP:\t{_s(ip, 'ip')}\n")
    if _controller(pod):
        w.write(LEVEL_0, f"Controlled By:\t{_controller(pod)}\n")
    if _s(status, "nominatedNodeName"):
        w.write(LEVEL_0, f"NominatedNodeName:\t{_s(status, 'nominatedNodeName')}\n")
    if _dicts(spec, "initContainers"):
        describe_containers(w, "Init Containers", _dicts(spec, "initContainers"),
                            _dicts(status, "initContainerStatuses"), pod, "")
    describe_containers(w, "Containers", _dicts(spec, "containers"),
                        _dicts(status, "containerStatuses"), pod, "")
    gates = _dicts(spec, "readinessGates")
    if gates:
        w.write(LEVEL_0, "Readiness Gates:\n  Type\tStatus\n")
        for g in gates:
            value = next((_s(c, "status") for c in _dicts(status, "conditions")
                          if c.get("type") == g.get("conditionType")), "<none>")
            w.write(LEVEL_1, f"{_s(g, 'conditionType')} \t{value} \n")
    conditions = _dicts(status, "conditions")
    if conditions:
        w.write(LEVEL_0, "Conditions:\n  Type\tStatus\n")
        for c in conditions:
            w.write(LEVEL_1, f"{_s(c, 'type')} \t{_s(c, 'status')} \n")
    describe_volumes(w, _dicts(spec, "volumes"), "")
    w.write(LEVEL_0, f"QoS Class:\t{_s(status, 'qosClass') or _qos(pod)}\n")
    print_labels(w, "Node-Selectors", _map(spec, "nodeSelector"))
    print_tolerations(w, "Tolerations", _dicts(spec, "tolerations"))
    _events(w, related, now)
    return w.text()


def _template_without_hash(template: Any) -> Any:
    if not isinstance(template, dict):
        return template
    labels = dict(_map(template, "metadata.labels"))
    labels.pop("pod-template-hash", None)
    metadata = {**_map(template, "metadata"), "labels": labels}
    return {**template, "metadata": metadata}


def _replica_sets_text(sets: list[Obj]) -> str:
    parts = [f"{_s(rs, 'metadata.name')} ({_i(rs, 'status.replicas')}/"
             f"{_i(rs, 'spec.replicas', 1)} replicas created)" for rs in sets]
    return ", ".join(parts) or "<none>"


def describe_deployment(d: Obj, related: Related, now: datetime) -> str:
    w = PrefixWriter()
    _header(w, d)
    w.write(LEVEL_0, f"CreationTimestamp:\t{rfc1123z(_get(d, 'metadata.creationTimestamp'))}\n")
    _meta(w, d)
    w.write(LEVEL_0, f"Selector:\t{_selector_text(_get(d, 'spec.selector'))}\n")
    w.write(LEVEL_0, f"Replicas:\t{_i(d, 'spec.replicas', 1)} desired | "
                     f"{_i(d, 'status.updatedReplicas')} updated | "
                     f"{_i(d, 'status.replicas')} total | "
                     f"{_i(d, 'status.availableReplicas')} available | "
                     f"{_i(d, 'status.unavailableReplicas')} unavailable\n")
    w.write(LEVEL_0, f"StrategyType:\t{_s(d, 'spec.strategy.type')}\n")
    w.write(LEVEL_0, f"MinReadySeconds:\t{_i(d, 'spec.minReadySeconds')}\n")
    rolling = _get(d, "spec.strategy.rollingUpdate")
    if isinstance(rolling, dict):
        w.write(LEVEL_0, f"RollingUpdateStrategy:\t{_intstr(rolling.get('maxUnavailable'))} "
                         f"max unavailable, {_intstr(rolling.get('maxSurge'))} max surge\n")
    describe_pod_template(w, _get(d, "spec.template"))
    _conditions_with_reason(w, d)
    if related.replica_sets:
        wanted = _template_without_hash(_get(d, "spec.template"))
        new = [rs for rs in related.replica_sets
               if _template_without_hash(_get(rs, "spec.template")) == wanted][:1]
        old = [rs for rs in related.replica_sets if rs not in new]
        w.write(LEVEL_0, f"OldReplicaSets:\t{_replica_sets_text(old)}\n")
        w.write(LEVEL_0, f"NewReplicaSet:\t{_replica_sets_text(new)}\n")
    _events(w, related, now)
    return w.text()


def describe_replica_set(rs: Obj, related: Related, now: datetime) -> str:
    w = PrefixWriter()
    _header(w, rs)
    w.write(LEVEL_0, f"Selector:\t{_format_selector(_get(rs, 'spec.selector'))}\n")
    _meta(w, rs)
    if _controller(rs):
        w.write(LEVEL_0, f"Controlled By:\t{_controller(rs)}\n")
    w.write(LEVEL_0, f"Replicas:\t{_i(rs, 'status.replicas')} current / "
                     f"{_i(rs, 'spec.replicas', 1)} desired\n")
    w.write(LEVEL_0, f"Pods Status:\t{_pods_status(related.pods or [])}\n")
    describe_pod_template(w, _get(rs, "spec.template"))
    _conditions_with_reason(w, rs)
    _events(w, related, now)
    return w.text()


def describe_stateful_set(ss: Obj, related: Related, now: datetime) -> str:
    w = PrefixWriter()
    _header(w, ss)
    w.write(LEVEL_0, f"CreationTimestamp:\t{rfc1123z(_get(ss, 'metadata.creationTimestamp'))}\n")
    w.write(LEVEL_0, f"Selector:\t{_selector_text(_get(ss, 'spec.selector'))}\n")
    _meta(w, ss)
    w.write(LEVEL_0, f"Replicas:\t{_i(ss, 'spec.replicas', 1)} desired | "
                     f"{_i(ss, 'status.replicas')} total\n")
    w.write(LEVEL_0, f"Update Strategy:\t{_s(ss, 'spec.updateStrategy.type')}\n")
    rolling = _get(ss, "spec.updateStrategy.rollingUpdate")
    if isinstance(rolling, dict) and isinstance(rolling.get("partition"), int):
        w.write(LEVEL_1, f"Partition:\t{rolling['partition']}\n")
        if rolling.get("maxUnavailable") is not None:
            w.write(LEVEL_1, f"MaxUnavailable:\t{_intstr(rolling['maxUnavailable'])}\n")
    w.write(LEVEL_0, f"Pods Status:\t{_pods_status(related.pods or [])}\n")
    describe_pod_template(w, _get(ss, "spec.template"))
    claims = _dicts(ss, "spec.volumeClaimTemplates")
    if not claims:
        w.write(LEVEL_0, "Volume Claims:\t<none>\n")
    else:
        w.write(LEVEL_0, "Volume Claims:\n")
        for pvc in claims:
            w.write(LEVEL_1, f"Name:\t{_s(pvc, 'metadata.name')}\n")
            w.write(LEVEL_1, f"StorageClass:\t{_s(pvc, 'spec.storageClassName')}\n")
            print_labels(w, "Labels", _map(pvc, "metadata.labels"), initial="  ")
            print_labels(w, "Annotations", _map(pvc, "metadata.annotations"), initial="  ")
            capacity = _get(pvc, "spec.resources.requests.storage")
            w.write(LEVEL_1, f"Capacity:\t{_quantity(capacity) if capacity else '<default>'}\n")
            w.write(LEVEL_1, f"Access Modes:\t{_go(_list(pvc, 'spec.accessModes'))}\n")
    _events(w, related, now)
    return w.text()


def describe_daemon_set(ds: Obj, related: Related, now: datetime) -> str:
    w = PrefixWriter()
    _header(w, ds, namespace=False)
    w.write(LEVEL_0, f"Selector:\t{_selector_text(_get(ds, 'spec.selector'))}\n")
    node_selector = _map(ds, "spec.template.spec.nodeSelector")
    w.write(LEVEL_0, f"Node-Selector:\t{format_labels(node_selector) if node_selector else ''}\n")
    _meta(w, ds)
    for title, key in (("Desired Number of Nodes Scheduled", "desiredNumberScheduled"),
                       ("Current Number of Nodes Scheduled", "currentNumberScheduled"),
                       ("Number of Nodes Scheduled with Up-to-date Pods",
                        "updatedNumberScheduled"),
                       ("Number of Nodes Scheduled with Available Pods", "numberAvailable"),
                       ("Number of Nodes Misscheduled", "numberMisscheduled")):
        w.write(LEVEL_0, f"{title}: {_i(ds, 'status.' + key)}\n")
    w.write(LEVEL_0, f"Pods Status:\t{_pods_status(related.pods or [])}\n")
    describe_pod_template(w, _get(ds, "spec.template"))
    _events(w, related, now)
    return w.text()


def describe_job(job: Obj, related: Related, now: datetime) -> str:
    w = PrefixWriter()
    spec, status = _map(job, "spec"), _map(job, "status")
    _header(w, job)
    w.write(LEVEL_0, f"Selector:\t{_selector_text(spec.get('selector'))}\n")
    _meta(w, job)
    if _controller(job):
        w.write(LEVEL_0, f"Controlled By:\t{_controller(job)}\n")
    if isinstance(spec.get("parallelism"), int):
        w.write(LEVEL_0, f"Parallelism:\t{spec['parallelism']}\n")
    completions = spec.get("completions")
    completions = completions if isinstance(completions, int) else "<unset>"
    w.write(LEVEL_0, f"Completions:\t{completions}\n")
    if _s(spec, "completionMode"):
        w.write(LEVEL_0, f"Completion Mode:\t{_s(spec, 'completionMode')}\n")
    if isinstance(spec.get("suspend"), bool):
        w.write(LEVEL_0, f"Suspend:\t{_go(spec['suspend'])}\n")
    if isinstance(spec.get("backoffLimit"), int):
        w.write(LEVEL_0, f"Backoff Limit:\t{spec['backoffLimit']}\n")
    if isinstance(spec.get("ttlSecondsAfterFinished"), int):
        w.write(LEVEL_0, f"TTL Seconds After Finished:\t{spec['ttlSecondsAfterFinished']}\n")
    if status.get("startTime"):
        w.write(LEVEL_0, f"Start Time:\t{rfc1123z(status['startTime'])}\n")
    if status.get("completionTime"):
        w.write(LEVEL_0, f"Completed At:\t{rfc1123z(status['completionTime'])}\n")
    start, end = parse_time(status.get("startTime")), parse_time(status.get("completionTime"))
    if start and end:
        w.write(LEVEL_0, f"Duration:\t{human_duration((end - start).total_seconds())}\n")
    if isinstance(spec.get("activeDeadlineSeconds"), int):
        w.write(LEVEL_0, f"Active Deadline Seconds:\t{spec['activeDeadlineSeconds']}s\n")
    counts = f"{_i(status, 'active')} Active"
    if isinstance(status.get("ready"), int):
        counts += f" ({status['ready']} Ready)"
    w.write(LEVEL_0, f"Pods Statuses:\t{counts} / {_i(status, 'succeeded')} Succeeded / "
                     f"{_i(status, 'failed')} Failed\n")
    describe_pod_template(w, spec.get("template"))
    _events(w, related, now)
    return w.text()


def describe_cron_job(cj: Obj, related: Related, now: datetime) -> str:
    w = PrefixWriter()
    spec = _map(cj, "spec")
    _header(w, cj)
    _meta(w, cj)
    w.write(LEVEL_0, f"Schedule:\t{_s(spec, 'schedule')}\n")
    w.write(LEVEL_0, f"Concurrency Policy:\t{_s(spec, 'concurrencyPolicy')}\n")
    suspend = spec.get("suspend")
    suspend = _bool_text(suspend) if isinstance(suspend, bool) else "<unset>"
    w.write(LEVEL_0, f"Suspend:\t{suspend}\n")
    if _s(spec, "timeZone"):
        w.write(LEVEL_0, f"Time Zone:\t{_s(spec, 'timeZone')}\n")
    for title, key, unit in (("Successful Job History Limit", "successfulJobsHistoryLimit", ""),
                             ("Failed Job History Limit", "failedJobsHistoryLimit", ""),
                             ("Starting Deadline Seconds", "startingDeadlineSeconds", "s")):
        value = spec.get(key)
        w.write(LEVEL_0, f"{title}:\t{f'{_go(value)}{unit}' if value is not None else '<unset>'}\n")
    job_spec = _map(spec, "jobTemplate.spec")
    selector = job_spec.get("selector")
    w.write(LEVEL_0, f"Selector:\t{_selector_text(selector) if selector else '<unset>'}\n")
    for title, key in (("Parallelism", "parallelism"), ("Completions", "completions")):
        value = job_spec.get(key)
        w.write(LEVEL_0, f"{title}:\t{value if isinstance(value, int) else '<unset>'}\n")
    if isinstance(job_spec.get("activeDeadlineSeconds"), int):
        w.write(LEVEL_0, f"Active Deadline Seconds:\t{job_spec['activeDeadlineSeconds']}s\n")
    describe_pod_template(w, job_spec.get("template"))
    last = _get(cj, "status.lastScheduleTime")
    w.write(LEVEL_0, f"Last Schedule Time:\t{rfc1123z(last) if last else '<unset>'}\n")
    active = [_s(ref, "name") for ref in _dicts(cj, "status.active")]
    w.write(LEVEL_0, "Active Jobs:\t")
    w.line(", ".join(active) if active else "<none>")
    _events(w, related, now)
    return w.text()


def _endpoints_for_port(endpoints: Obj | None, port_name: str) -> str:
    """The ready ``ip:port`` pairs behind one service port, at most three shown."""
    if not endpoints:
        return "<none>"
    found: list[str] = []
    for subset in _dicts(endpoints, "subsets"):
        for port in _dicts(subset, "ports"):
            if _s(port, "name") != port_name:
                continue
            for addr in _dicts(subset, "addresses"):
                ip = _s(addr, "ip")
                found.append(f"[{ip}]:{_i(port, 'port')}" if ":" in ip
                             else f"{ip}:{_i(port, 'port')}")
    if not found:
        return "<none>"
    if len(found) > 3:
        return ",".join(found[:3]) + f" + {len(found) - 3} more..."
    return ",".join(found)


def describe_service(svc: Obj, related: Related, now: datetime) -> str:
    w = PrefixWriter()
    spec = _map(svc, "spec")
    _header(w, svc)
    _meta(w, svc)
    selector = _map(spec, "selector")
    w.write(LEVEL_0, f"Selector:\t{format_labels(selector) if selector else ''}\n")
    w.write(LEVEL_0, f"Type:\t{_s(spec, 'type') or 'ClusterIP'}\n")
    if _s(spec, "ipFamilyPolicy"):
        w.write(LEVEL_0, f"IP Family Policy:\t{_s(spec, 'ipFamilyPolicy')}\n")
    families = [str(f) for f in _list(spec, "ipFamilies")]
    w.write(LEVEL_0, f"IP Families:\t{','.join(families) or '<none>'}\n")
    w.write(LEVEL_0, f"IP:\t{_s(spec, 'clusterIP')}\n")
    ips = [str(ip) for ip in _list(spec, "clusterIPs")]
    w.write(LEVEL_0, f"IPs:\t{','.join(ips) or '<none>'}\n")
    if _list(spec, "externalIPs"):
        w.write(LEVEL_0, f"External IPs:\t{','.join(map(str, _list(spec, 'externalIPs')))}\n")
    if _s(spec, "loadBalancerIP"):
        w.write(LEVEL_0, f"Desired LoadBalancer IP:\t{_s(spec, 'loadBalancerIP')}\n")
    if _s(spec, "externalName"):
        w.write(LEVEL_0, f"External Name:\t{_s(spec, 'externalName')}\n")
    ingress = _dicts(svc, "status.loadBalancer.ingress")
    if ingress:
        text = ", ".join(_s(i, "ip") or _s(i, "hostname") for i in ingress)
        w.write(LEVEL_0, f"LoadBalancer Ingress:\t{text}\n")
    for port in _dicts(spec, "ports"):
        name = _s(port, "name") or "<unset>"
        protocol = _s(port, "protocol") or "TCP"
        w.write(LEVEL_0, f"Port:\t{name}\t{_i(port, 'port')}/{protocol}\n")
        target = port.get("targetPort", port.get("port"))
        w.write(LEVEL_0, f"TargetPort:\t{_intstr(target)}/{protocol}\n")
        if _s(port, "appProtocol"):
            w.write(LEVEL_0, f"AppProtocol:\t{_s(port, 'appProtocol')}\n")
        if _i(port, "nodePort"):
            w.write(LEVEL_0, f"NodePort:\t{name}\t{_i(port, 'nodePort')}/{protocol}\n")
        endpoints = _endpoints_for_port(related.endpoints, _s(port, "name"))
        w.write(LEVEL_0, f"Endpoints:\t{endpoints}\n")
    w.write(LEVEL_0, f"Session Affinity:\t{_s(spec, 'sessionAffinity') or 'None'}\n")
    if _s(spec, "externalTrafficPolicy"):
        w.write(LEVEL_0, f"External Traffic Policy:\t{_s(spec, 'externalTrafficPolicy')}\n")
    if _s(spec, "internalTrafficPolicy"):
        w.write(LEVEL_0, f"Internal Traffic Policy:\t{_s(spec, 'internalTrafficPolicy')}\n")
    if _i(spec, "healthCheckNodePort"):
        w.write(LEVEL_0, f"HealthCheck NodePort:\t{_i(spec, 'healthCheckNodePort')}\n")
    if _list(spec, "loadBalancerSourceRanges"):
        ranges = ",".join(map(str, _list(spec, "loadBalancerSourceRanges")))
        w.write(LEVEL_0, f"LoadBalancer Source Ranges:\t{ranges}\n")
    _events(w, related, now)
    return w.text()


def _node_roles(node: Obj) -> list[str]:
    roles = set()
    for key, value in _map(node, "metadata.labels").items():
        if key.startswith("node-role.kubernetes.io/") and key[len("node-role.kubernetes.io/"):]:
            roles.add(key[len("node-role.kubernetes.io/"):])
        elif key == "kubernetes.io/role" and value:
            roles.add(str(value))
    return sorted(roles)


def _pod_requests_and_limits(pod: Obj) -> tuple[dict[str, Quantity], dict[str, Quantity]]:
    """``PodRequestsAndLimits``: containers summed, each init container a floor."""
    reqs: dict[str, Quantity] = {}
    limits: dict[str, Quantity] = {}
    spec = _map(pod, "spec")
    for c in _dicts(spec, "containers"):
        for kind, acc in (("requests", reqs), ("limits", limits)):
            for name, raw in _map(c, f"resources.{kind}").items():
                acc.setdefault(name, Quantity()).add(raw)
    for c in _dicts(spec, "initContainers"):
        for kind, acc in (("requests", reqs), ("limits", limits)):
            for name, raw in _map(c, f"resources.{kind}").items():
                one = Quantity()
                one.add(raw)
                if name not in acc or acc[name].value < one.value:
                    acc[name] = one
    return reqs, limits


def _percent(part: Quantity | None, whole: Fraction, milli: bool) -> int:
    if part is None or whole == 0:
        return 0
    scale = 1000 if milli else 1
    return int(float(-(-part.value * scale // 1)) / float(-(-whole * scale // 1)) * 100)


def _node_resources(w: PrefixWriter, node: Obj, pods: list[Obj], now: datetime) -> None:
    allocatable = _map(node, "status.allocatable") or _map(node, "status.capacity")

    def total(name: str) -> Fraction:
        q = Quantity()
        q.add(allocatable.get(name, 0))
        return q.value

    w.write(LEVEL_0, f"Non-terminated Pods:\t({len(pods)} in total)\n")
    w.write(LEVEL_1, "Namespace\tName\t\tCPU Requests\tCPU Limits\tMemory Requests\t"
                     "Memory Limits\tAge\n")
    w.write(LEVEL_1, "---------\t----\t\t------------\t----------\t---------------\t"
                     "-------------\t---\n")
    all_reqs: dict[str, Quantity] = {}
    all_limits: dict[str, Quantity] = {}
    for pod in pods:
        reqs, limits = _pod_requests_and_limits(pod)
        for acc, values in ((all_reqs, reqs), (all_limits, limits)):
            for name, q in values.items():
                into = acc.setdefault(name, Quantity())
                into.value += q.value
                into.binary = into.binary if into.binary is not None else q.binary
        cells = []
        for values in (reqs, limits):
            q = values.get("cpu") or Quantity()
            cells.append(f"{q} ({_percent(q, total('cpu'), True)}%)")
        for values in (reqs, limits):
            q = values.get("memory") or Quantity()
            cells.append(f"{q} ({_percent(q, total('memory'), False)}%)")
        w.write(LEVEL_1, f"{_s(pod, 'metadata.namespace')}\t{_s(pod, 'metadata.name')}\t\t"
                         f"{cells[0]}\t{cells[1]}\t{cells[2]}\t{cells[3]}\t"
                         f"{_since(_get(pod, 'metadata.creationTimestamp'), now)}\n")
    w.write(LEVEL_0, "Allocated resources:\n  (Total limits may be over 100 percent, i.e., "
                     "overcommitted.)\n")
    w.write(LEVEL_1, "Resource\tRequests\tLimits\n")
    w.write(LEVEL_1, "--------\t--------\t------\n")
    for name, milli in (("cpu", True), ("memory", False), ("ephemeral-storage", False)):
        req, lim = all_reqs.get(name) or Quantity(), all_limits.get(name) or Quantity()
        w.write(LEVEL_1, f"{name}\t{req} ({_percent(req, total(name), milli)}%)\t"
                         f"{lim} ({_percent(lim, total(name), milli)}%)\n")


def describe_node(node: Obj, related: Related, now: datetime) -> str:
    w = PrefixWriter()
    spec, status = _map(node, "spec"), _map(node, "status")
    _header(w, node, namespace=False)
    w.write(LEVEL_0, f"Roles:\t{','.join(_node_roles(node)) or '<none>'}\n")
    _meta(w, node)
    w.write(LEVEL_0, f"CreationTimestamp:\t{rfc1123z(_get(node, 'metadata.creationTimestamp'))}\n")
    print_taints(w, "Taints", _dicts(spec, "taints"))
    w.write(LEVEL_0, f"Unschedulable:\t{_go(spec.get('unschedulable') is True)}\n")
    if related.lease is not None:
        lease = related.lease
        w.write(LEVEL_0, "Lease:\n")
        w.write(LEVEL_1, f"HolderIdentity:\t{_s(lease, 'spec.holderIdentity') or '<unset>'}\n")
        for title, key in (("AcquireTime", "acquireTime"), ("RenewTime", "renewTime")):
            value = _get(lease, f"spec.{key}")
            w.write(LEVEL_1, f"{title}:\t{rfc1123z(value) if value else '<unset>'}\n")
    elif related.lease_error:
        w.write(LEVEL_0, f"Lease:\tFailed to get lease: {related.lease_error}\n")
    conditions = _dicts(status, "conditions")
    if conditions:
        w.write(LEVEL_0, "Conditions:\n  Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\t"
                         "Reason\tMessage\n")
        w.write(LEVEL_1, "----\t------\t-----------------\t------------------\t------\t"
                         "-------\n")
        for c in conditions:
            w.write(LEVEL_1, f"{_s(c, 'type')} \t{_s(c, 'status')} \t"
                             f"{rfc1123z(c.get('lastHeartbeatTime'))} \t"
                             f"{rfc1123z(c.get('lastTransitionTime'))} \t{_s(c, 'reason')} \t"
                             f"{_s(c, 'message')}\n")
    w.write(LEVEL_0, "Addresses:\n")
    for address in _dicts(status, "addresses"):
        w.write(LEVEL_1, f"{_s(address, 'type')}:\t{_s(address, 'address')}\n")
    for title, key in (("Capacity", "capacity"), ("Allocatable", "allocatable")):
        values = _map(status, key)
        if values:
            w.write(LEVEL_0, f"{title}:\n")
            for name in sorted(values):
                w.write(LEVEL_0, f"  {name}:\t{_quantity(values[name])}\n")
    info = _map(status, "nodeInfo")
    w.write(LEVEL_0, "System Info:\n")
    for title, key in (("Machine ID", "machineID"), ("System UUID", "systemUUID"),
                       ("Boot ID", "bootID"), ("Kernel Version", "kernelVersion"),
                       ("OS Image", "osImage"), ("Operating System", "operatingSystem"),
                       ("Architecture", "architecture"),
                       ("Container Runtime Version", "containerRuntimeVersion"),
                       ("Kubelet Version", "kubeletVersion"),
                       ("Kube-Proxy Version", "kubeProxyVersion")):
        w.write(LEVEL_0, f"  {title}:\t{_s(info, key)}\n")
    if _s(spec, "podCIDR"):
        w.write(LEVEL_0, f"PodCIDR:\t{_s(spec, 'podCIDR')}\n")
    if _list(spec, "podCIDRs"):
        w.write(LEVEL_0, f"PodCIDRs:\t{','.join(map(str, _list(spec, 'podCIDRs')))}\n")
    if _s(spec, "providerID"):
        w.write(LEVEL_0, f"ProviderID:\t{_s(spec, 'providerID')}\n")
    if related.pods is not None:
        _node_resources(w, node, related.pods, now)
    else:
        w.write(LEVEL_0, "Pods:\tnot authorized\n")
    _events(w, related, now)
    return w.text()


def _decoded_length(value: Any) -> int:
    try:
        return len(base64.b64decode(str(value), validate=True))
    except (binascii.Error, ValueError):
        return len(str(value).encode())


def describe_secret(secret: Obj, related: Related, now: datetime) -> str:
    """Key names and sizes only: a description must be safe to paste anywhere."""
    w = PrefixWriter()
    _header(w, secret)
    _meta(w, secret)
    w.write(LEVEL_0, f"\nType:\t{_s(secret, 'type')}\n")
    w.write(LEVEL_0, "\nData\n====\n")
    sizes = {k: _decoded_length(v) for k, v in _map(secret, "data").items()}
    for key, value in _map(secret, "stringData").items():
        sizes.setdefault(key, len(_go(value).encode()))
    for key in sorted(sizes):
        w.write(LEVEL_0, f"{key}:\t{sizes[key]} bytes\n")
    return w.text()


def describe_config_map(cm: Obj, related: Related, now: datetime) -> str:
    w = PrefixWriter()
    _header(w, cm)
    _meta(w, cm)
    w.write(LEVEL_0, "\nData\n====\n")
    data = _map(cm, "data")
    for key in sorted(data):
        w.write(LEVEL_0, f"{key}:\n----\n")
        w.write(LEVEL_0, f"{_go(data[key])}\n")
        w.write(LEVEL_0, "\n")
    w.write(LEVEL_0, "\nBinaryData\n====\n")
    binary = _map(cm, "binaryData")
    for key in sorted(binary):
        w.write(LEVEL_0, f"{key}: {_decoded_length(binary[key])} bytes\n")
    w.write(LEVEL_0, "\n")
    _events(w, related, now)
    return w.text()


def describe_namespace(ns: Obj, related: Related, now: datetime) -> str:
    w = PrefixWriter()
    _header(w, ns, namespace=False)
    _meta(w, ns)
    w.write(LEVEL_0, f"Status:\t{_s(ns, 'status.phase')}\n")
    conditions = _dicts(ns, "status.conditions")
    if conditions:
        w.write(LEVEL_0, "Conditions:\n")
        w.write(LEVEL_1, "Type\tStatus\tLastTransitionTime\tReason\tMessage\n")
        w.write(LEVEL_1, "----\t------\t------------------\t------\t-------\n")
        for c in conditions:
            w.write(LEVEL_1, f"{_s(c, 'type')}\t{_s(c, 'status')}\t"
                             f"{rfc1123z(c.get('lastTransitionTime'))}\t{_s(c, 'reason')}\t"
                             f"{_s(c, 'message')}\n")
    return w.text()


def describe_endpoints(ep: Obj, related: Related, now: datetime) -> str:
    w = PrefixWriter()
    _header(w, ep)
    _meta(w, ep)
    w.write(LEVEL_0, "Subsets:\n")
    for subset in _dicts(ep, "subsets"):
        ready = ",".join(_s(a, "ip") for a in _dicts(subset, "addresses")) or "<none>"
        not_ready = ",".join(_s(a, "ip") for a in _dicts(subset, "notReadyAddresses"))
        w.write(LEVEL_1, f"Addresses:\t{ready}\n")
        w.write(LEVEL_1, f"NotReadyAddresses:\t{not_ready or '<none>'}\n")
        ports = _dicts(subset, "ports")
        if ports:
            w.write(LEVEL_1, "Ports:\n")
            w.write(LEVEL_2, "Name\tPort\tProtocol\n")
            w.write(LEVEL_2, "----\t----\t--------\n")
            for port in ports:
                w.write(LEVEL_2, f"{_s(port, 'name') or '<unset>'}\t{_i(port, 'port')}\t"
                                 f"{_s(port, 'protocol') or 'TCP'}\n")
        w.write(LEVEL_0, "\n")
    _events(w, related, now)
    return w.text()


def describe_service_account(sa: Obj, related: Related, now: datetime) -> str:
    w = PrefixWriter()
    _header(w, sa)
    _meta(w, sa)
    secrets = related.extra.get("secrets")
    existing = {_s(x, "metadata.name") for x in secrets} if secrets is not None else None
    name = _s(sa, "metadata.name")
    tokens = [_s(x, "metadata.name") for x in secrets or []
              if _s(x, "type") == "kubernetes.io/service-account-token"
              and _map(x, "metadata.annotations").get("kubernetes.io/service-account.name")
              == name]
    sections = (("Image pull secrets:", [_s(x, "name") for x in _dicts(sa, "imagePullSecrets")]),
                ("Mountable secrets: ", [_s(x, "name") for x in _dicts(sa, "secrets")]),
                ("Tokens:            ", tokens))
    for header, names in sections:
        if not names:
            w.write(LEVEL_0, f"{header}\t<none>\n")
        for i, secret in enumerate(names):
            missing = " (not found)" if existing is not None and secret not in existing else ""
            w.write(LEVEL_0, f"{header if i == 0 else ' ' * 19}\t{secret}{missing}\n")
    _events(w, related, now)
    return w.text()


def _hpa_metric(w: PrefixWriter, index: int, metric: dict, current: list[dict]) -> None:
    kind = _s(metric, "type")
    now_metric = current[index] if index < len(current) else {}

    def resource_line(source: str, label: str) -> None:
        target = _map(metric, f"{source}.target")
        w.write(LEVEL_1, label)
        cur = _map(now_metric, f"{source}.current") if now_metric.get(source) else {}
        if target.get("averageValue") is not None:
            value = _quantity(cur["averageValue"]) if cur.get("averageValue") is not None \
                else "<unknown>"
            w.write(LEVEL_0, f":\t{value} / {_quantity(target['averageValue'])}\n")
            return
        value = "<unknown>"
        if isinstance(cur.get("averageUtilization"), int):
            value = f"{cur['averageUtilization']}% ({_quantity(cur.get('averageValue', 0))})"
        goal = (f"{target['averageUtilization']}%"
                if isinstance(target.get("averageUtilization"), int) else "<auto>")
        w.write(LEVEL_1, f"(as a percentage of request):\t{value} / {goal}\n")

    if kind == "Resource":
        resource_line("resource", f"resource {_s(metric, 'resource.name')} on pods")
    elif kind == "ContainerResource":
        resource_line("containerResource",
                      f"resource {_s(metric, 'containerResource.name')} of container "
                      f'"{_s(metric, "containerResource.container")}" on pods')
    elif kind == "Pods":
        value = _get(now_metric, "pods.current.averageValue")
        w.write(LEVEL_1, f'"{_s(metric, "pods.metric.name")}" on pods:\t'
                         f'{_quantity(value) if value is not None else "<unknown>"} / '
                         f'{_quantity(_get(metric, "pods.target.averageValue", 0))}\n')
    elif kind == "Object":
        w.write(LEVEL_1, f'"{_s(metric, "object.metric.name")}" on '
                         f'{_s(metric, "object.describedObject.kind")}/'
                         f'{_s(metric, "object.describedObject.name")} ')
        field_name = ("averageValue" if _s(metric, "object.target.type") == "AverageValue"
                      else "value")
        value = _get(now_metric, f"object.current.{field_name}")
        title = "target average value" if field_name == "averageValue" else "target value"
        w.write(LEVEL_0, f"({title}):\t{_quantity(value) if value is not None else '<unknown>'}"
                         f" / {_quantity(_get(metric, f'object.target.{field_name}', 0))}\n")
    elif kind == "External":
        average = _get(metric, "external.target.averageValue") is not None
        field_name = "averageValue" if average else "value"
        value = _get(now_metric, f"external.current.{field_name}")
        title = "target average value" if average else "target value"
        w.write(LEVEL_1, f'"{_s(metric, "external.metric.name")}" ({title}):\t'
                         f'{_quantity(value) if value is not None else "<unknown>"} / '
                         f'{_quantity(_get(metric, f"external.target.{field_name}", 0))}\n')
    else:
        w.write(LEVEL_1, f'<unknown metric type "{kind}">\n')


def describe_hpa(hpa: Obj, related: Related, now: datetime) -> str:
    w = PrefixWriter()
    spec, status = _map(hpa, "spec"), _map(hpa, "status")
    _header(w, hpa)
    _meta(w, hpa)
    w.write(LEVEL_0, f"CreationTimestamp:\t{rfc1123z(_get(hpa, 'metadata.creationTimestamp'))}\n")
    w.write(LEVEL_0, f"Reference:\t{_s(spec, 'scaleTargetRef.kind')}/"
                     f"{_s(spec, 'scaleTargetRef.name')}\n")
    w.write(LEVEL_0, "Metrics:\t( current / target )\n")
    current = _dicts(status, "currentMetrics")
    for index, metric in enumerate(_dicts(spec, "metrics")):
        _hpa_metric(w, index, metric, current)
    minimum = spec.get("minReplicas")
    w.write(LEVEL_0, f"Min replicas:\t{minimum if isinstance(minimum, int) else '<unset>'}\n")
    w.write(LEVEL_0, f"Max replicas:\t{_i(spec, 'maxReplicas')}\n")
    behavior = _map(spec, "behavior")
    if behavior:
        w.write(LEVEL_0, "Behavior:\n")
        for title, key in (("Scale Up", "scaleUp"), ("Scale Down", "scaleDown")):
            rules = _map(behavior, key)
            if not rules:
                continue
            w.write(LEVEL_1, f"{title}:\n")
            if isinstance(rules.get("stabilizationWindowSeconds"), int):
                w.write(LEVEL_2, f"Stabilization Window: {rules['stabilizationWindowSeconds']} "
                                 f"seconds\n")
            policies = _dicts(rules, "policies")
            if policies:
                w.write(LEVEL_2, f"Select Policy: {_s(rules, 'selectPolicy') or 'Max'}\n")
                w.write(LEVEL_2, "Policies:\n")
                for pol in policies:
                    w.write(LEVEL_3, f"- Type: {_s(pol, 'type')}\tValue: {_i(pol, 'value')}\t"
                                     f"Period: {_i(pol, 'periodSeconds')} seconds\n")
    w.write(LEVEL_0, f"{_s(spec, 'scaleTargetRef.kind')} pods:\t")
    w.write(LEVEL_0, f"{_i(status, 'currentReplicas')} current / "
                     f"{_i(status, 'desiredReplicas')} desired\n")
    conditions = _dicts(status, "conditions")
    if conditions:
        w.write(LEVEL_0, "Conditions:\n")
        w.write(LEVEL_1, "Type\tStatus\tReason\tMessage\n")
        w.write(LEVEL_1, "----\t------\t------\t-------\n")
        for c in conditions:
            w.write(LEVEL_1, f"{_s(c, 'type')}\t{_s(c, 'status')}\t{_s(c, 'reason')}\t"
                             f"{_s(c, 'message')}\n")
    _events(w, related, now)
    return w.text()


# --------------------------------------------------------------------------- generic

def _camel_split(text: str) -> list[str]:
    """``github.com/fatih/camelcase.Split``."""
    runs: list[list[str]] = []
    last = None
    for ch in text:
        kind = 0 if ch.islower() else 1 if ch.isupper() else 2 if ch.isdigit() else 3
        if kind == last:
            runs[-1].append(ch)
        else:
            runs.append([ch])
        last = kind
    for i in range(len(runs) - 1):
        if runs[i] and runs[i][0].isupper() and runs[i + 1] and runs[i + 1][0].islower():
            runs[i + 1].insert(0, runs[i].pop())
    return ["".join(r) for r in runs if r]


def smart_label(name: str) -> str:
    """``smartLabelFor``: ``apiVersion`` -> ``API Version``, ``holderIdentity`` ->
    ``Holder Identity``; names with characters other than letters and ``-`` stay as is."""
    if any(not (ch.isalpha() or ch == "-") for ch in name):
        return name
    parts = _camel_split(name)
    merged: list[str] = []
    i = 0
    while i < len(parts):
        part = parts[i]
        if (i < len(parts) - 1 and len(part) >= 2 and part.isupper()
                and parts[i + 1][:1].isupper()):
            merged.append(part + parts[i + 1])
            i += 2
            continue
        merged.append(part)
        i += 1
    out = []
    for part in merged:
        if part == "_":
            continue
        if part.upper() in ("API", "URL", "UID", "GUID"):
            part = part.upper()
        elif part.lower() == part:
            part = part[:1].upper() + part[1:]
        out.append(part)
    return " ".join(out)


_GENERIC_SKIP = (".metadata.managedFields", ".metadata.name", ".metadata.namespace",
                 ".metadata.labels", ".metadata.annotations")


def _unstructured(w: PrefixWriter, level: int, content: dict, prefix: str) -> None:
    for key in sorted(content):
        value = content[key]
        path = f"{prefix}.{key}"
        if path in _GENERIC_SKIP:
            continue
        if isinstance(value, dict):
            w.write(level, f"{smart_label(key)}:\n")
            _unstructured(w, level + 1, value, path)
        elif isinstance(value, list):
            w.write(level, f"{smart_label(key)}:\n")
            for child in value:
                if isinstance(child, dict):
                    _unstructured(w, level + 1, child, path)
                else:
                    w.write(level + 1, f"{_go(child)}\n")
        else:
            w.write(level, f"{smart_label(key)}:\t{_go(value)}\n")


def describe_generic(obj: Obj, related: Related, now: datetime) -> str:
    w = PrefixWriter()
    _header(w, obj)
    _meta(w, obj)
    _unstructured(w, LEVEL_0, obj, "")
    _events(w, related, now)
    return w.text()


Describer = Callable[[Obj, Related, datetime], str]

DESCRIBERS: dict[tuple[str, str], Describer] = {
    ("", "Pod"): describe_pod,
    ("", "Service"): describe_service,
    ("", "Node"): describe_node,
    ("", "Secret"): describe_secret,
    ("", "ConfigMap"): describe_config_map,
    ("", "Namespace"): describe_namespace,
    ("", "Endpoints"): describe_endpoints,
    ("", "ServiceAccount"): describe_service_account,
    ("apps", "Deployment"): describe_deployment,
    ("apps", "ReplicaSet"): describe_replica_set,
    ("apps", "StatefulSet"): describe_stateful_set,
    ("apps", "DaemonSet"): describe_daemon_set,
    ("batch", "Job"): describe_job,
    ("batch", "CronJob"): describe_cron_job,
    ("autoscaling", "HorizontalPodAutoscaler"): describe_hpa,
}

# Kinds whose describer shows no Events section (as in kubectl).
_NO_EVENTS = {("", "Secret"), ("", "Namespace")}


def render(rt: ResourceType, obj: Obj, related: Related, now: datetime | None = None) -> str:
    describer = DESCRIBERS.get((rt.group, rt.kind), describe_generic)
    return describer(obj, related, now or datetime.now(timezone.utc))


# --------------------------------------------------------------------------- fetching

async def _owned_pods(client: Any, obj: Obj, selector: Any) -> list[Obj]:
    if not isinstance(selector, dict):
        return []
    text = _selector_text(selector)
    uid = _s(obj, "metadata.uid")
    pods = await client.list_all("pods", _s(obj, "metadata.namespace"), label_selector=text)
    return [p for p in pods.get("items") or []
            if any(r.get("controller") and r.get("uid") == uid
                   for r in _dicts(p, "metadata.ownerReferences"))]


async def find_events(client: Any, rt: ResourceType, obj: Obj) -> list[Obj]:
    """Events whose ``involvedObject`` is ``obj`` (by kind, name and namespace)."""
    name, namespace = _s(obj, "metadata.name"), _s(obj, "metadata.namespace")
    terms = [f"involvedObject.name={name}"]
    if rt.namespaced:
        terms.append(f"involvedObject.namespace={namespace}")
    terms.append(f"involvedObject.kind={rt.kind}")
    found = await client.list_all("events", namespace or None,
                                  all_namespaces=not rt.namespaced,
                                  field_selector=",".join(terms))
    return list(found.get("items") or [])


async def gather_related(client: Any, rt: ResourceType, obj: Obj,
                         show_events: bool = True) -> Related:
    """Fetch what the describer of ``rt`` shows besides ``obj``."""
    related = Related()
    key = (rt.group, rt.kind)
    namespace = _s(obj, "metadata.namespace")
    if show_events and key not in _NO_EVENTS:
        try:
            related.events = await find_events(client, rt, obj)
        except StatusError:
            related.events = None
    if key in (("apps", "ReplicaSet"), ("apps", "StatefulSet"), ("apps", "DaemonSet")):
        related.pods = await _owned_pods(client, obj, _get(obj, "spec.selector"))
    elif key == ("apps", "Deployment"):
        selector = _get(obj, "spec.selector")
        if isinstance(selector, dict):
            sets = await client.list_all("replicasets", namespace,
                                         label_selector=_selector_text(selector))
            uid = _s(obj, "metadata.uid")
            related.replica_sets = [
                rs for rs in sets.get("items") or []
                if any(r.get("controller") and r.get("uid") == uid
                       for r in _dicts(rs, "metadata.ownerReferences"))]
    elif key == ("", "Service"):
        try:
            related.endpoints = await client.get("endpoints", _s(obj, "metadata.name"),
                                                 namespace)
        except NotFound:
            related.endpoints = None
    elif key == ("", "ServiceAccount"):
        try:
            secrets = await client.list_all("secrets", namespace)
            related.extra["secrets"] = list(secrets.get("items") or [])
        except StatusError:
            pass
    elif key == ("", "Node"):
        name = _s(obj, "metadata.name")
        try:
            related.lease = await client.get("leases", name, "kube-node-lease")
        except StatusError as err:
            related.lease_error = str(err)
        try:
            pods = await client.list_all("pods", all_namespaces=True,
                                         field_selector=f"spec.nodeName={name},"
                                                        "status.phase!=Succeeded,"
                                                        "status.phase!=Failed")
            related.pods = list(pods.get("items") or [])
        except StatusError:
            related.pods = None
    return related


async def describe_object(client: Any, rt: ResourceType, obj: Obj,
                          show_events: bool = True) -> str:
    related = await gather_related(client, rt, obj, show_events)
    return render(rt, obj, related)


__all__ = ["DESCRIBERS", "PrefixWriter", "Quantity", "Related", "describe_events",
           "describe_object", "find_events", "gather_related", "render", "rfc1123z",
           "smart_label"]
