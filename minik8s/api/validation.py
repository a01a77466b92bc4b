"""Server-side validation with Kubernetes' field paths, reasons and wording.

kubectl, the Python client and users' CI scripts read ``details.causes`` of a 422 answer:
they print ``spec.containers[0].image: Required value`` and match on ``FieldValueRequired``.
Reporting the same paths and reasons as Kubernetes keeps those tools and habits working, so
each check here mirrors one in ``pkg/apis/*/validation`` (not all of them: the ones users run
into). Every check reports instead of raising, so one answer lists every problem at once.

Validation runs after defaulting. Fields that ``defaults.apply_defaults`` fills in (restart
policy, protocols, pull policy, strategy types, ...) are checked only when present, so an
object validated without defaults is judged on what the user wrote and nothing more.

The checks are arranged as one table of kinds (name rule, create check, update check), with
the pod spec check shared by Pods and every pod template under its own path prefix."""

from __future__ import annotations

import base64
import binascii
import copy
import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from minik8s.api.errors import BadRequest, field_cause
from minik8s.api.quantity import parse_quantity
from minik8s.api.registry import ResourceType
from minik8s.api.selectors import (dns1123_subdomain_errors, label_key_errors,
                                   label_value_errors, qualified_name_errors, regex_error,
                                   selector_from_dict)

Cause = dict[str, str]
Causes = list[Cause]

REQUIRED = "FieldValueRequired"
INVALID = "FieldValueInvalid"
DUPLICATE = "FieldValueDuplicate"
NOT_SUPPORTED = "FieldValueNotSupported"
FORBIDDEN = "FieldValueForbidden"
TOO_LONG = "FieldValueTooLong"
NOT_FOUND = "FieldValueNotFound"

# --- causes, worded like k8s.io/apimachinery/pkg/util/validation/field -------------------


def _render(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if value is None:
        return "null"
    return json.dumps(value, separators=(",", ":"), sort_keys=isinstance(value, dict))


def required(path: str, detail: str = "") -> Cause:
    return field_cause(path, f"Required value: {detail}" if detail else "Required value",
                       REQUIRED)


def invalid(path: str, value: Any, detail: str) -> Cause:
    return field_cause(path, f"Invalid value: {_render(value)}: {detail}", INVALID)


def not_supported(path: str, value: Any, allowed: Iterable[str]) -> Cause:
    shown = ", ".join(f'"{a}"' for a in allowed)
    return field_cause(path, f"Unsupported value: {_render(value)}: supported values: {shown}",
                       NOT_SUPPORTED)


def duplicate(path: str, value: Any) -> Cause:
    return field_cause(path, f"Duplicate value: {_render(value)}", DUPLICATE)


def forbidden(path: str, detail: str) -> Cause:
    return field_cause(path, f"Forbidden: {detail}", FORBIDDEN)


def too_long(path: str, limit: int) -> Cause:
    return field_cause(path, f"Too long: may not be more than {limit} bytes", TOO_LONG)


def not_found(path: str, value: Any) -> Cause:
    return field_cause(path, f"Not found: {_render(value)}", NOT_FOUND)


def _at(base: str, *parts: str | int) -> str:
    """``_at("spec", "containers", 0, "image")`` -> ``spec.containers[0].image``."""
    out = base
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out = f"{out}.{p}" if out else p
    return out


def _key(base: str, key: str) -> str:
    return f"{base}[{key}]"


# --- defensive accessors: bad shapes become causes, never exceptions ----------------------

def _dict(obj: Any, key: str, path: str, causes: Causes) -> dict:
    value = obj.get(key) if isinstance(obj, dict) else None
    if value is None:
        return {}
    if not isinstance(value, dict):
        causes.append(invalid(path, value, "must be an object"))
        return {}
    return value


def _list(obj: Any, key: str, path: str, causes: Causes) -> list[tuple[int, dict]]:
    """``(index, item)`` for each object item; other items are reported."""
    value = obj.get(key) if isinstance(obj, dict) else None
    if value is None:
        return []
    if not isinstance(value, list):
        causes.append(invalid(path, value, "must be a list"))
        return []
    out = []
    for i, item in enumerate(value):
        if isinstance(item, dict):
            out.append((i, item))
        else:
            causes.append(invalid(_at(path, i), item, "must be an object"))
    return out


def _m(value: Any) -> dict:
    """``value`` when it is an object, else ``{}`` (its shape is reported elsewhere)."""
    return value if isinstance(value, dict) else {}


def _ls(value: Any) -> list:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int_at_least(obj: dict, key: str, path: str, minimum: int,
                  detail: str | None = None) -> Causes:
    v = obj.get(key)
    if v is None:
        return []
    if not _is_int(v):
        return [invalid(path, v, "must be an integer")]
    if v < minimum:
        default = ("must be greater than or equal to 0" if minimum == 0 else
                   "must be greater than 0" if minimum == 1 else
                   f"must be greater than or equal to {minimum}")
        return [invalid(path, v, detail or default)]
    return []


def _enum(obj: dict, key: str, path: str, allowed: tuple[str, ...],
          needed: bool = False) -> Causes:
    v = obj.get(key)
    if v is None or v == "":
        return [required(path)] if needed else []
    return [] if v in allowed else [not_supported(path, v, allowed)]


def _str_list(obj: dict, key: str) -> list[str]:
    v = obj.get(key)
    return [x for x in v if isinstance(x, str)] if isinstance(v, list) else []


# --- syntax checks shared by many fields ------------------------------------------------

_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL_RE = re.compile(f"(?:{_DNS1123_LABEL_FMT})\\Z")
_DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_DNS1035_LABEL_RE = re.compile(f"(?:{_DNS1035_LABEL_FMT})\\Z")
_ENV_NAME_FMT = "[-._a-zA-Z][-._a-zA-Z0-9]*"
_ENV_NAME_RE = re.compile(f"(?:{_ENV_NAME_FMT})\\Z")
_CONFIG_KEY_FMT = "[-._a-zA-Z0-9]+"
_CONFIG_KEY_RE = re.compile(f"(?:{_CONFIG_KEY_FMT})\\Z")
_PERCENT_FMT = "[0-9]+%"
_PERCENT_RE = re.compile(f"(?:{_PERCENT_FMT})\\Z")
_PORT_NAME_CHARS_RE = re.compile(r"[-a-z0-9]+\Z")


def dns1123_label_errors(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _DNS1123_LABEL_RE.match(value):
        errs.append(regex_error(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
            "or '-', and must start and end with an alphanumeric character",
            _DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def dns1035_label_errors(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _DNS1035_LABEL_RE.match(value):
        errs.append(regex_error(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
            "start with an alphabetic character, and end with an alphanumeric character",
            _DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def path_segment_errors(value: str) -> list[str]:
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in value]


def port_name_errors(value: str) -> list[str]:
    """An IANA service name, as container port names and named target ports must be."""
    errs = []
    if len(value) > 15:
        errs.append("must be no more than 15 characters")
    if not _PORT_NAME_CHARS_RE.match(value):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in value:
        errs.append("must not contain consecutive hyphens")
    if not re.search("[a-z]", value):
        errs.append("must contain at least one letter (a-z)")
    if value.startswith("-") or value.endswith("-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def env_name_errors(value: str) -> list[str]:
    if _ENV_NAME_RE.match(value):
        return []
    return [regex_error(
        "a valid environment variable name must consist of alphabetic characters, digits, "
        "'_', '-', or '.', and must not start with a digit", _ENV_NAME_FMT,
        "my.env-name", "MY_ENV.NAME", "MyEnvName1")]


def config_key_errors(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append("must be no more than 253 characters")
    if not _CONFIG_KEY_RE.match(value):
        errs.append(regex_error(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            _CONFIG_KEY_FMT, "key.name", "KEY_NAME", "key-name"))
    if value == ".":
        errs.append("must not be '.'")
    elif value == "..":
        errs.append("must not be '..'")
    elif value.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def _syntax(path: str, value: Any, check: Callable[[str], list[str]]) -> Causes:
    if not isinstance(value, str):
        return [invalid(path, value, "must be a string")]
    return [invalid(path, value, msg) for msg in check(value)]


def _port_number(path: str, value: Any, allow_zero: bool = False) -> Causes:
    if allow_zero and value in (None, 0):
        return []
    if not _is_int(value) or not 1 <= value <= 65535:
        return [invalid(path, value, "must be between 1 and 65535, inclusive")]
    return []


def _int_or_port_name(path: str, value: Any) -> Causes:
    """A port given as a number or as the name of a container port (probes, targetPort)."""
    if isinstance(value, str) and not value.isdigit():
        return _syntax(path, value, port_name_errors)
    if isinstance(value, str):
        value = int(value)
    return _port_number(path, value)


def _labels(labels: Any, path: str) -> Causes:
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [invalid(path, labels, "must be a map of string keys to string values")]
    causes: Causes = []
    for k, v in labels.items():
        causes += [invalid(path, k, m) for m in label_key_errors(k)]
        causes += _syntax(path, v, label_value_errors)
    return causes


# --- metadata ------------------------------------------------------------------------------

NameCheck = Callable[[str], list[str]]
_ANNOTATIONS_MAX = 256 * 1024


def _generate_name_errors(check: NameCheck) -> NameCheck:
    """A prefix is judged as a name whose trailing dash is about to be followed by more."""
    return lambda prefix: check(prefix[:-1] + "a" if prefix.endswith("-") else prefix)


def _annotations(annotations: Any, path: str) -> Causes:
    if annotations is None:
        return []
    if not isinstance(annotations, dict):
        return [invalid(path, annotations, "must be a map of string keys to string values")]
    causes: Causes = []
    total = 0
    for k, v in annotations.items():
        causes += [invalid(path, k, m) for m in qualified_name_errors(str(k).lower())]
        if not isinstance(v, str):
            causes.append(invalid(_key(path, k), v, "must be a string"))
            continue
        total += len(k) + len(v)
    if total > _ANNOTATIONS_MAX:
        causes.append(too_long(path, _ANNOTATIONS_MAX))
    return causes


def _owner_references(meta: dict, path: str) -> Causes:
    causes: Causes = []
    controllers = 0
    for i, ref in _list(meta, "ownerReferences", path, causes):
        for key in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(key):
                causes.append(required(_at(path, i, key)))
        controllers += bool(ref.get("controller"))
    if controllers > 1:
        causes.append(invalid(path, meta.get("ownerReferences"),
                              "Only one reference can have Controller set to true"))
    return causes


def validate_object_meta(rt: ResourceType, obj: dict, name_check: NameCheck) -> Causes:
    causes: Causes = []
    meta = _dict(obj, "metadata", "metadata", causes)
    name, generate = meta.get("name"), meta.get("generateName")
    if not name and not generate:
        causes.append(required("metadata.name", "name or generateName is required"))
    if name:
        causes += _syntax("metadata.name", name, name_check)
    if generate:
        causes += _syntax("metadata.generateName", generate, _generate_name_errors(name_check))
    ns = meta.get("namespace")
    if ns and not rt.namespaced:
        causes.append(forbidden("metadata.namespace", "not allowed on this type"))
    elif ns:
        causes += _syntax("metadata.namespace", ns, dns1123_label_errors)
    causes += _labels(meta.get("labels"), "metadata.labels")
    causes += _annotations(meta.get("annotations"), "metadata.annotations")
    for i, fin in enumerate(_str_list(meta, "finalizers")):
        causes += _syntax(_at("metadata.finalizers", i), fin, qualified_name_errors)
    causes += _owner_references(meta, "metadata.ownerReferences")
    return causes


def _immutable(path: str, new: Any, old: Any) -> Causes:
    return [] if new == old else [invalid(path, new, "field is immutable")]


def validate_object_meta_update(obj: dict, old: dict) -> Causes:
    new_meta, old_meta = _m(obj.get("metadata")), _m(old.get("metadata"))
    causes: Causes = []
    for key in ("name", "namespace", "uid"):
        if new_meta.get(key) and old_meta.get(key):
            causes += _immutable(f"metadata.{key}", new_meta[key], old_meta[key])
    return causes


# --- label selectors (metav1.LabelSelector) ------------------------------------------------

_SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def validate_label_selector(sel: Any, path: str) -> Causes:
    if not isinstance(sel, dict):
        return [invalid(path, sel, "must be an object")]
    causes = _labels(sel.get("matchLabels"), _at(path, "matchLabels"))
    for i, expr in _list(sel, "matchExpressions", _at(path, "matchExpressions"), causes):
        p = _at(path, "matchExpressions", i)
        causes += _syntax(_at(p, "key"), expr.get("key", ""), label_key_errors)
        op, values = expr.get("operator"), expr.get("values") or []
        if op not in _SELECTOR_OPERATORS:
            causes.append(invalid(_at(p, "operator"), op, "not a valid selector operator"))
        elif op in ("In", "NotIn") and not values:
            causes.append(required(_at(p, "values"),
                                   "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist") and values:
            causes.append(forbidden(
                _at(p, "values"), "may not be specified when `operator` is 'Exists' or "
                "'DoesNotExist'"))
        if isinstance(values, list):
            for j, v in enumerate(values):
                causes += _syntax(_at(p, "values", j), v, label_value_errors)
    return causes


# --- pod spec ------------------------------------------------------------------------------

RESTART_POLICIES = ("Always", "OnFailure", "Never")
PROTOCOLS = ("SCTP", "TCP", "UDP")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")
TAINT_EFFECTS = ("NoExecute", "NoSchedule", "PreferNoSchedule")
_PROBE_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")
_LIFECYCLE_HANDLERS = ("exec", "httpGet", "tcpSocket", "sleep")
_ENV_SOURCES = ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef")
_STANDARD_CONTAINER_RESOURCES = ("cpu", "memory", "ephemeral-storage")
_MAX_INT32 = 2 ** 31 - 1


@dataclass
class _PodContext:
    """What checks of one container need to know about the whole pod."""

    volumes: set[str]
    host_network: bool
    container_names: set[str] = field(default_factory=set)


def _handler(obj: dict, path: str, handlers: tuple[str, ...]) -> Causes:
    present = [h for h in handlers if obj.get(h) is not None]
    if not present:
        return [required(path, "must specify a handler type")]
    causes = [forbidden(_at(path, h), "may not specify more than 1 handler type")
              for h in present[1:]]
    for h in present[:1]:
        body = obj[h] if isinstance(obj[h], dict) else {}
        if h == "exec" and not body.get("command"):
            causes.append(required(_at(path, h, "command")))
        if h in ("httpGet", "tcpSocket", "grpc"):
            port = body.get("port")
            if port is None:
                causes.append(required(_at(path, h, "port")))
            elif h == "grpc":
                causes += _port_number(_at(path, h, "port"), port)
            else:
                causes += _int_or_port_name(_at(path, h, "port"), port)
        if h == "httpGet":
            causes += _enum(body, "scheme", _at(path, h, "scheme"), ("HTTP", "HTTPS"))
        if h == "sleep":
            causes += _int_at_least(body, "seconds", _at(path, h, "seconds"), 0)
    return causes


def _probe(probe: dict, path: str, one_success: bool) -> Causes:
    causes = _handler(probe, path, _PROBE_HANDLERS)
    for key in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds",
                "successThreshold", "failureThreshold", "terminationGracePeriodSeconds"):
        causes += _int_at_least(probe, key, _at(path, key), 0)
    st = probe.get("successThreshold")
    if one_success and _is_int(st) and st != 1:
        causes.append(invalid(_at(path, "successThreshold"), st, "must be 1"))
    return causes


def _resource_name_errors(name: str) -> list[str]:
    if name in _STANDARD_CONTAINER_RESOURCES or name.startswith("hugepages-"):
        return []
    if "/" in name:
        return qualified_name_errors(name)
    return ["must be a standard resource for containers"]


def _resource_list(resources: dict, key: str, path: str, causes: Causes) -> dict:
    parsed = {}
    for name, q in _dict(resources, key, _at(path, key), causes).items():
        p = _key(_at(path, key), name)
        causes += [invalid(p, name, m) for m in _resource_name_errors(str(name))]
        try:
            value = parse_quantity(q)
        except ValueError:
            causes.append(invalid(p, q, "must be a valid quantity"))
            continue
        if value < 0:
            causes.append(invalid(p, q, "must be greater than or equal to 0"))
        parsed[name] = (q, value)
    return parsed


def _resources(container: dict, path: str) -> Causes:
    causes: Causes = []
    resources = _dict(container, "resources", path, causes)
    limits = _resource_list(resources, "limits", path, causes)
    requests = _resource_list(resources, "requests", path, causes)
    for name, (raw, value) in requests.items():
        if name in limits and value > limits[name][1]:
            causes.append(invalid(_key(_at(path, "requests"), name), raw,
                                  f"must be less than or equal to {name} limit of "
                                  f"{limits[name][0]}"))
    return causes


def _env(container: dict, path: str) -> Causes:
    causes: Causes = []
    for i, var in _list(container, "env", _at(path, "env"), causes):
        p = _at(path, "env", i)
        name = var.get("name")
        causes += [required(_at(p, "name"))] if not name else _syntax(
            _at(p, "name"), name, env_name_errors)
        source = var.get("valueFrom")
        if source is None:
            continue
        if var.get("value"):
            causes.append(invalid(_at(p, "valueFrom"), "",
                                  "may not be specified when `value` is not empty"))
        present = [s for s in _ENV_SOURCES if s in _m(source)]
        if not present:
            causes.append(invalid(_at(p, "valueFrom"), "", "must specify one of: "
                                  "`fieldRef`, `resourceFieldRef`, `configMapKeyRef` or "
                                  "`secretKeyRef`"))
        elif len(present) > 1:
            causes.append(invalid(_at(p, "valueFrom"), "", "may not have more than one "
                                  "field specified at a time"))
        for s in present[:1]:
            need = {"fieldRef": "fieldPath", "resourceFieldRef": "resource"}.get(s, "key")
            if not _m(source[s]).get(need):
                causes.append(required(_at(p, "valueFrom", s, need)))
    for i, src in _list(container, "envFrom", _at(path, "envFrom"), causes):
        p = _at(path, "envFrom", i)
        refs = [r for r in ("configMapRef", "secretRef") if src.get(r) is not None]
        if len(refs) != 1:
            causes.append(invalid(p, "", "must specify one of: `configMapRef` or `secretRef`"))
        if src.get("prefix"):
            causes += _syntax(_at(p, "prefix"), src["prefix"], env_name_errors)
    return causes


def _ports(container: dict, path: str, ctx: _PodContext) -> Causes:
    causes: Causes = []
    names: set[str] = set()
    for i, port in _list(container, "ports", _at(path, "ports"), causes):
        p = _at(path, "ports", i)
        cp = port.get("containerPort")
        causes += ([required(_at(p, "containerPort"))] if cp in (None, 0)
                   else _port_number(_at(p, "containerPort"), cp))
        causes += _port_number(_at(p, "hostPort"), port.get("hostPort"), allow_zero=True)
        causes += _enum(port, "protocol", _at(p, "protocol"), PROTOCOLS)
        hp = port.get("hostPort")
        if ctx.host_network and hp not in (None, 0) and hp != cp:
            causes.append(invalid(_at(p, "hostPort"), hp,
                                  "must match `containerPort` when `hostNetwork` is true"))
        name = port.get("name")
        if name:
            causes += _syntax(_at(p, "name"), name, port_name_errors)
            if _str(name) in names:
                causes.append(duplicate(_at(p, "name"), name))
            elif _str(name):
                names.add(name)
    return causes


def _volume_mounts(container: dict, path: str, ctx: _PodContext) -> Causes:
    causes: Causes = []
    seen: set[str] = set()
    for i, mount in _list(container, "volumeMounts", _at(path, "volumeMounts"), causes):
        p = _at(path, "volumeMounts", i)
        name, mount_path = mount.get("name"), mount.get("mountPath")
        if not name:
            causes.append(required(_at(p, "name")))
        elif _str(name) not in ctx.volumes:
            causes.append(not_found(_at(p, "name"), name))
        if not mount_path:
            causes.append(required(_at(p, "mountPath")))
        elif not isinstance(mount_path, str):
            causes.append(invalid(_at(p, "mountPath"), mount_path, "must be a string"))
        elif mount_path in seen:
            causes.append(invalid(_at(p, "mountPath"), mount_path, "must be unique"))
        else:
            seen.add(mount_path)
        sub = mount.get("subPath")
        if sub:
            causes += _syntax(_at(p, "subPath"), sub, local_descending_path_errors)
    return causes


def _container(c: dict, path: str, ctx: _PodContext, init: bool) -> Causes:
    causes: Causes = []
    name = c.get("name")
    if not name:
        causes.append(required(_at(path, "name")))
    else:
        causes += _syntax(_at(path, "name"), name, dns1123_label_errors)
        if _str(name) in ctx.container_names:
            causes.append(duplicate(_at(path, "name"), name))
        elif _str(name):
            ctx.container_names.add(name)
    image = c.get("image")
    if not image:
        causes.append(required(_at(path, "image")))
    elif not isinstance(image, str) or image.strip() != image:
        causes.append(invalid(_at(path, "image"), image,
                              "must not have leading or trailing whitespace"))
    causes += _enum(c, "imagePullPolicy", _at(path, "imagePullPolicy"), PULL_POLICIES)
    causes += _enum(c, "terminationMessagePolicy", _at(path, "terminationMessagePolicy"),
                    ("File", "FallbackToLogsOnError"))
    causes += _ports(c, path, ctx)
    causes += _env(c, path)
    causes += _resources(c, _at(path, "resources"))
    causes += _volume_mounts(c, path, ctx)
    sidecar = init and c.get("restartPolicy") == "Always"
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = c.get(kind)
        if probe is None:
            continue
        if init and not sidecar:
            causes.append(forbidden(_at(path, kind), "may not be set for init containers"))
        elif isinstance(probe, dict):
            causes += _probe(probe, _at(path, kind), kind != "readinessProbe")
    lifecycle = _dict(c, "lifecycle", _at(path, "lifecycle"), causes)
    for hook in ("postStart", "preStop"):
        if isinstance(lifecycle.get(hook), dict):
            causes += _handler(lifecycle[hook], _at(path, "lifecycle", hook),
                               _LIFECYCLE_HANDLERS)
    return causes


_VOLUME_REQUIRED_KEYS = {"hostPath": "path", "secret": "secretName",
                         "persistentVolumeClaim": "claimName", "nfs": "path"}


_FILE_MODE_MESSAGE = "must be a number between 0 and 0777 (octal), both inclusive"
_PROJECTIONS = ("secret", "configMap", "downwardAPI", "serviceAccountToken")


def _file_mode(obj: dict, key: str, path: str) -> Causes:
    """``defaultMode``/``mode`` of volume files: permission bits only (the kubelet writes
    them on the node: no setuid, setgid or sticky bit)."""
    mode = obj.get(key)
    if mode is not None and (not _is_int(mode) or not 0 <= mode <= 0o777):
        return [invalid(_at(path, key), mode, _FILE_MODE_MESSAGE)]
    return []


def local_descending_path_errors(value: str) -> list[str]:
    """Kubernetes' ``validateLocalDescendingPath``: relative, with no ``..`` element."""
    errs = ["must be a relative path"] if value.startswith("/") else []
    if ".." in value.split("/"):
        errs.append("must not contain '..'")
    return errs


def local_non_reserved_path_errors(value: str) -> list[str]:
    """``ValidateLocalNonReservedPath``: a descending path not starting with ``..`` (the
    kubelet's atomic writer keeps its own entries under such names)."""
    errs = local_descending_path_errors(value)
    if value.startswith("..") and not value.startswith("../"):
        errs.append("must not start with '..'")
    return errs


def _file_path(obj: dict, key: str, path: str) -> Causes:
    value = obj.get(key)
    if not value:
        return [required(_at(path, key))]
    if not isinstance(value, str):
        return [invalid(_at(path, key), value, "must be a string")]
    return _syntax(_at(path, key), value, local_non_reserved_path_errors)


def _volume_items(kind: str, source: dict, path: str, causes: Causes) -> list[str]:
    """``items`` of a configMap/secret/downwardAPI source (volume or projection): each a
    valid relative path and mode, a key for ConfigMaps and Secrets; the paths."""
    paths: list[str] = []
    for i, item in _list(source, "items", _at(path, "items"), causes):
        p = _at(path, "items", i)
        if not item.get("key") and kind in ("configMap", "secret"):
            causes.append(required(_at(p, "key")))
        causes += _file_path(item, "path", p)
        causes += _file_mode(item, "mode", p)
        if isinstance(item.get("path"), str):
            paths.append(item["path"])
    return paths


def _projected(source: dict, path: str) -> Causes:
    """``projected.sources``: one projection each, their items and token paths as in the
    volume kinds, and no path written twice."""
    causes: Causes = []
    seen: set[str] = set()
    for i, src in _list(source, "sources", _at(path, "sources"), causes):
        p = _at(path, "sources", i)
        kinds = [k for k in _PROJECTIONS if src.get(k) is not None]
        if len(kinds) != 1:
            causes.append(forbidden(p, "may not specify more than 1 volume type per source")
                          if kinds else required(p, "must specify exactly 1 volume type"))
        for kind in kinds[:1]:
            proj, pp = src[kind], _at(p, kind)
            if not isinstance(proj, dict):
                causes.append(invalid(pp, proj, "must be an object"))
                continue
            if kind == "serviceAccountToken":
                causes += _file_path(proj, "path", pp)
                seconds = proj.get("expirationSeconds")
                causes += _int_at_least(proj, "expirationSeconds", _at(pp, "expirationSeconds"),
                                        600, "may not specify a duration less than 10 minutes")
                if _is_int(seconds) and seconds > 1 << 32:
                    causes.append(invalid(_at(pp, "expirationSeconds"), seconds,
                                          "may not specify a duration larger than 2^32 seconds"))
                paths = [proj["path"]] if isinstance(proj.get("path"), str) else []
            else:
                if kind == "secret" and not proj.get("name"):
                    causes.append(required(_at(pp, "name")))
                paths = _volume_items(kind, proj, pp, causes)
            for value in paths:
                if value in seen:
                    causes.append(invalid(pp, value, "conflicting duplicate paths"))
                seen.add(value)
    return causes


def _volume_source(kind: str, source: Any, path: str) -> Causes:
    if not isinstance(source, dict):
        return [invalid(path, source, "must be an object")]
    causes: Causes = []
    need = _VOLUME_REQUIRED_KEYS.get(kind)
    if need and not source.get(need):
        causes.append(required(_at(path, need)))
    causes += _file_mode(source, "defaultMode", path)
    if kind == "emptyDir" and source.get("sizeLimit") is not None:
        try:
            parse_quantity(source["sizeLimit"])
        except ValueError:
            causes.append(invalid(_at(path, "sizeLimit"), source["sizeLimit"],
                                  "must be a valid quantity"))
    if kind in ("configMap", "secret", "downwardAPI"):
        _volume_items(kind, source, path, causes)
    if kind == "projected":
        causes += _projected(source, path)
    return causes


def _volumes(spec: dict, path: str, causes: Causes) -> set[str]:
    names: set[str] = set()
    for i, vol in _list(spec, "volumes", _at(path, "volumes"), causes):
        p = _at(path, "volumes", i)
        name = vol.get("name")
        if not name:
            causes.append(required(_at(p, "name")))
        else:
            causes += _syntax(_at(p, "name"), name, dns1123_label_errors)
            if _str(name) in names:
                causes.append(duplicate(_at(p, "name"), name))
            elif _str(name):
                names.add(name)
        sources = [k for k in vol if k != "name" and vol[k] is not None]
        if not sources:
            causes.append(required(p, "must specify a volume type"))
        causes += [forbidden(_at(p, k), "may not specify more than 1 volume type")
                   for k in sources[1:]]
        for k in sources[:1]:
            causes += _volume_source(k, vol[k], _at(p, k))
    return names


def _tolerations(spec: dict, path: str) -> Causes:
    causes: Causes = []
    for i, t in _list(spec, "tolerations", _at(path, "tolerations"), causes):
        p = _at(path, "tolerations", i)
        key, op = t.get("key") or "", t.get("operator") or "Equal"
        if key:
            causes += _syntax(_at(p, "key"), key, label_key_errors)
        elif op != "Exists":
            causes.append(invalid(_at(p, "operator"), op, "operator must be Exists when "
                                  "`key` is empty, which means \"match all values and all "
                                  "keys\""))
        causes += _enum(t, "operator", _at(p, "operator"), ("Equal", "Exists"))
        if op == "Exists" and t.get("value"):
            causes.append(invalid(_at(p, "operator"), op,
                                  "value must be empty when `operator` is 'Exists'"))
        causes += _enum(t, "effect", _at(p, "effect"), TAINT_EFFECTS)
        if t.get("tolerationSeconds") is not None and t.get("effect") != "NoExecute":
            causes.append(invalid(_at(p, "effect"), t.get("effect") or "",
                                  "effect must be 'NoExecute' when `tolerationSeconds` is set"))
    return causes


def validate_pod_spec(spec: Any, path: str = "spec", extra_volumes: Iterable[str] = (),
                      restart_policies: tuple[str, ...] = RESTART_POLICIES,
                      restart_required: bool = False) -> Causes:
    """Checks of one pod spec at ``path`` (``spec`` for a Pod, ``spec.template.spec`` for
    workloads); ``extra_volumes`` are names mounted without a volume (volumeClaimTemplates)."""
    if not isinstance(spec, dict):
        return [invalid(path, spec, "must be an object")]
    causes: Causes = []
    ctx = _PodContext(_volumes(spec, path, causes) | {v for v in extra_volumes if _str(v)},
                      bool(spec.get("hostNetwork")))
    if not spec.get("containers"):
        causes.append(required(_at(path, "containers")))
    for key, init in (("initContainers", True), ("containers", False)):
        for i, c in _list(spec, key, _at(path, key), causes):
            causes += _container(c, _at(path, key, i), ctx, init)
    policy = spec.get("restartPolicy")
    if restart_required and not policy:
        shown = ", ".join(f'"{p}"' for p in restart_policies)
        causes.append(required(_at(path, "restartPolicy"), f"valid values: {shown}"))
    causes += _enum(spec, "restartPolicy", _at(path, "restartPolicy"), restart_policies)
    causes += _enum(spec, "dnsPolicy", _at(path, "dnsPolicy"), DNS_POLICIES)
    if spec.get("dnsPolicy") == "None" and not spec.get("dnsConfig"):
        causes.append(required(_at(path, "dnsConfig"),
                               "must provide `dnsConfig` when `dnsPolicy` is None"))
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and (not _is_int(deadline) or not 1 <= deadline <= _MAX_INT32):
        causes.append(invalid(_at(path, "activeDeadlineSeconds"), deadline,
                              f"must be between 1 and {_MAX_INT32}, inclusive"))
    causes += _int_at_least(spec, "terminationGracePeriodSeconds",
                            _at(path, "terminationGracePeriodSeconds"), 0)
    causes += _labels(spec.get("nodeSelector"), _at(path, "nodeSelector"))
    for key, check in (("nodeName", dns1123_subdomain_errors),
                       ("serviceAccountName", dns1123_subdomain_errors),
                       ("hostname", dns1123_label_errors), ("subdomain", dns1123_label_errors)):
        if spec.get(key):
            causes += _syntax(_at(path, key), spec[key], check)
    causes += _tolerations(spec, path)
    return causes


_POD_UPDATE_MESSAGE = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only "
    "additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be "
    "set to 1 if it was previously negative)")


def _pod_update(obj: dict, old: dict) -> Causes:
    new_spec, old_spec = _m(obj.get("spec")), _m(old.get("spec"))
    causes: Causes = []
    mutated = copy.deepcopy(new_spec)  # rewritten below to undo the allowed changes
    for key in ("containers", "initContainers"):
        new_cs, old_cs = _ls(mutated.get(key)), _ls(old_spec.get(key))
        if len(new_cs) == len(old_cs):
            for nc, oc in zip(new_cs, old_cs):
                if isinstance(nc, dict) and isinstance(oc, dict) and "image" in oc:
                    nc["image"] = oc["image"]
    new_ads, old_ads = new_spec.get("activeDeadlineSeconds"), old_spec.get(
        "activeDeadlineSeconds")
    if old_ads is not None and new_ads is None:
        causes.append(invalid("spec.activeDeadlineSeconds", None,
                              "must not update from a positive integer to nil value"))
    elif old_ads is not None and _is_int(new_ads) and new_ads > old_ads:
        causes.append(invalid("spec.activeDeadlineSeconds", new_ads,
                              "must be less than or equal to previous value"))
    _restore(mutated, old_spec, "activeDeadlineSeconds")
    if all(t in _ls(new_spec.get("tolerations")) for t in _ls(old_spec.get("tolerations"))):
        _restore(mutated, old_spec, "tolerations")
    old_grace = old_spec.get("terminationGracePeriodSeconds")
    if _is_int(old_grace) and old_grace < 0 and new_spec.get(
            "terminationGracePeriodSeconds") == 1:
        _restore(mutated, old_spec, "terminationGracePeriodSeconds")
    if mutated != old_spec:
        changed = sorted(k for k in set(mutated) | set(old_spec)
                         if mutated.get(k) != old_spec.get(k))
        causes.append(forbidden("spec", f"{_POD_UPDATE_MESSAGE}; changed: "
                                + ", ".join(f"spec.{k}" for k in changed)))
    return causes


def _restore(target: dict, source: dict, key: str) -> None:
    if key in source:
        target[key] = source[key]
    else:
        target.pop(key, None)


# --- workloads -----------------------------------------------------------------------------

def _int_or_percent(value: Any, path: str, cap_percent: bool) -> tuple[Causes, bool]:
    """Causes for an IntOrString count, and whether it is zero."""
    if value is None:
        return [], False
    if _is_int(value):
        if value < 0:
            return [invalid(path, value, "must be greater than or equal to 0")], False
        return [], value == 0
    if isinstance(value, str) and _PERCENT_RE.match(value):
        pct = int(value[:-1])
        if cap_percent and pct > 100:
            return [invalid(path, value, "must not be greater than 100%")], False
        return [], pct == 0
    return [invalid(path, value, regex_error(
        "a valid percent string must be a numeric string followed by an ending '%'",
        _PERCENT_FMT, "1%", "93%"))], False


def _rolling_update(ru: dict, path: str) -> Causes:
    surge_causes, surge_zero = _int_or_percent(ru.get("maxSurge"), _at(path, "maxSurge"),
                                               False)
    unavail_causes, unavail_zero = _int_or_percent(
        ru.get("maxUnavailable"), _at(path, "maxUnavailable"), True)
    causes = surge_causes + unavail_causes
    if surge_zero and unavail_zero:
        causes.append(invalid(_at(path, "maxUnavailable"), ru.get("maxUnavailable"),
                              "may not be 0 when `maxSurge` is 0"))
    return causes


def _update_strategy(spec: dict, key: str, path: str, types: tuple[str, ...],
                     check: Callable[[dict, str], Causes]) -> Causes:
    causes: Causes = []
    strategy = _dict(spec, key, _at(path, key), causes)
    causes += _enum(strategy, "type", _at(path, key, "type"), types)
    ru = _dict(strategy, "rollingUpdate", _at(path, key, "rollingUpdate"), causes)
    kind = strategy.get("type") or "RollingUpdate"
    if strategy.get("rollingUpdate") is not None and kind != "RollingUpdate":
        causes.append(forbidden(_at(path, key, "rollingUpdate"),
                                f"may not be specified when strategy `type` is '{kind}'"))
    elif ru:
        causes += check(ru, _at(path, key, "rollingUpdate"))
    return causes


def _partition(ru: dict, path: str) -> Causes:
    causes = _int_at_least(ru, "partition", _at(path, "partition"), 0)
    return causes + _int_at_least(ru, "maxUnavailable", _at(path, "maxUnavailable"), 1)


def _deployment_extra(spec: dict, path: str, kind: str) -> Causes:
    causes = _update_strategy(spec, "strategy", path, ("Recreate", "RollingUpdate"),
                              _rolling_update)
    causes += _int_at_least(spec, "progressDeadlineSeconds",
                            _at(path, "progressDeadlineSeconds"), 0)
    pds, mrs = spec.get("progressDeadlineSeconds"), spec.get("minReadySeconds") or 0
    if _is_int(pds) and _is_int(mrs) and pds <= mrs:
        causes.append(invalid(_at(path, "progressDeadlineSeconds"), pds,
                              "must be greater than minReadySeconds"))
    return causes


def _statefulset_extra(spec: dict, path: str, kind: str) -> Causes:
    causes = _enum(spec, "podManagementPolicy", _at(path, "podManagementPolicy"),
                   ("OrderedReady", "Parallel"))
    causes += _update_strategy(spec, "updateStrategy", path, ("OnDelete", "RollingUpdate"),
                               _partition)
    for i, claim in _list(spec, "volumeClaimTemplates", _at(path, "volumeClaimTemplates"),
                          causes):
        name = _m(claim.get("metadata")).get("name")
        if not name:
            causes.append(required(_at(path, "volumeClaimTemplates", i, "metadata", "name")))
    return causes


def _daemonset_extra(spec: dict, path: str, kind: str) -> Causes:
    return _update_strategy(spec, "updateStrategy", path, ("OnDelete", "RollingUpdate"),
                            _rolling_update)


def _job_extra(spec: dict, path: str, kind: str) -> Causes:
    causes: Causes = []
    for key in ("parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished"):
        causes += _int_at_least(spec, key, _at(path, key), 0)
    causes += _int_at_least(spec, "activeDeadlineSeconds", _at(path, "activeDeadlineSeconds"),
                            1)
    causes += _enum(spec, "completionMode", _at(path, "completionMode"),
                    ("Indexed", "NonIndexed"))
    if spec.get("completionMode") == "Indexed" and spec.get("completions") is None:
        causes.append(required(_at(path, "completions"), "when completion mode is Indexed"))
    if spec.get("manualSelector") is True and spec.get("selector") is None:
        causes.append(required(_at(path, "selector")))
    return causes


@dataclass(frozen=True)
class _Workload:
    restart_policies: tuple[str, ...] = ("Always",)
    selector_required: bool = True
    allow_deadline: bool = False
    replicas: bool = True
    extra: Callable[[dict, str, str], Causes] | None = None
    # Spec fields an update may change; None means "all but the selector".
    mutable: tuple[str, ...] | None = None


_WORKLOADS: dict[str, _Workload] = {
    "Deployment": _Workload(extra=_deployment_extra),
    "ReplicaSet": _Workload(),
    "StatefulSet": _Workload(extra=_statefulset_extra, mutable=(
        "replicas", "ordinals", "template", "updateStrategy",
        "persistentVolumeClaimRetentionPolicy", "minReadySeconds")),
    "DaemonSet": _Workload(replicas=False, extra=_daemonset_extra),
    "Job": _Workload(("OnFailure", "Never"), selector_required=False, allow_deadline=True,
                     replicas=False, extra=_job_extra),
}


def _selector_matches_template(sel: dict, spec: dict, path: str) -> Causes:
    labels = _m(_m(_m(spec.get("template")).get("metadata")).get("labels"))
    try:
        matched = selector_from_dict(sel).matches(labels)
    except BadRequest:  # the selector's own problems are reported by validate_label_selector
        return []
    if matched:
        return []
    return [invalid(_at(path, "template", "metadata", "labels"), labels,
                    "`selector` does not match template `labels`")]


def validate_workload_spec(kind: str, spec: Any, path: str = "spec") -> Causes:
    """A Deployment/ReplicaSet/StatefulSet/DaemonSet/Job spec at ``path``."""
    rules = _WORKLOADS[kind]
    if not isinstance(spec, dict):
        return [invalid(path, spec, "must be an object")]
    causes: Causes = []
    sel = spec.get("selector")
    if sel is None:
        if rules.selector_required:
            causes.append(required(_at(path, "selector")))
    else:
        sel_causes = validate_label_selector(sel, _at(path, "selector"))
        causes += sel_causes
        if isinstance(sel, dict) and not sel.get("matchLabels") and not sel.get(
                "matchExpressions"):
            causes.append(invalid(_at(path, "selector"), sel,
                                  f"empty selector is invalid for {kind.lower()}"))
        elif not sel_causes:
            causes += _selector_matches_template(sel, spec, path)
    if rules.replicas:
        causes += _int_at_least(spec, "replicas", _at(path, "replicas"), 0)
    for key in ("minReadySeconds", "revisionHistoryLimit"):
        causes += _int_at_least(spec, key, _at(path, key), 0)
    causes += _pod_template(spec, path, rules, kind)
    if rules.extra:
        causes += rules.extra(spec, path, kind)
    return causes


def _pod_template(spec: dict, path: str, rules: _Workload, kind: str) -> Causes:
    causes: Causes = []
    tpath = _at(path, "template")
    template = _dict(spec, "template", tpath, causes)
    meta = _dict(template, "metadata", _at(tpath, "metadata"), causes)
    causes += _labels(meta.get("labels"), _at(tpath, "metadata", "labels"))
    causes += _annotations(meta.get("annotations"), _at(tpath, "metadata", "annotations"))
    claims = [_str(_m(_m(c).get("metadata")).get("name"))
              for c in _ls(spec.get("volumeClaimTemplates"))]
    pod_spec = template.get("spec")
    causes += validate_pod_spec({} if pod_spec is None else pod_spec, _at(tpath, "spec"),
                                [c for c in claims if c], rules.restart_policies,
                                restart_required=kind == "Job")
    if not rules.allow_deadline and isinstance(pod_spec, dict) and pod_spec.get(
            "activeDeadlineSeconds") is not None:
        causes.append(forbidden(_at(tpath, "spec", "activeDeadlineSeconds"),
                                f"activeDeadlineSeconds in {kind} is not Supported"))
    return causes


def _workload_update(kind: str) -> Callable[[dict, dict], Causes]:
    rules = _WORKLOADS[kind]

    def check(obj: dict, old: dict) -> Causes:
        new_spec, old_spec = _m(obj.get("spec")), _m(old.get("spec"))
        causes = _immutable("spec.selector", new_spec.get("selector"),
                            old_spec.get("selector"))
        if rules.mutable is not None:
            changed = sorted(k for k in set(new_spec) | set(old_spec)
                             if k not in rules.mutable and k != "selector"
                             and new_spec.get(k) != old_spec.get(k))
            if changed:
                allowed = ", ".join(f"'{m}'" for m in rules.mutable[:-1])
                causes.append(forbidden("spec", f"updates to {kind.lower()} spec for fields "
                                        f"other than {allowed} and '{rules.mutable[-1]}' are "
                                        "forbidden"))
        if kind == "Job":
            for key in ("completions", "completionMode"):
                causes += _immutable(f"spec.{key}", new_spec.get(key), old_spec.get(key))
            if not (new_spec.get("suspend") or old_spec.get("suspend")):
                causes += _immutable("spec.template", new_spec.get("template"),
                                     old_spec.get("template"))
        return causes
    return check


# --- CronJob schedules --------------------------------------------------------------------

_MONTHS = {m: i + 1 for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}
_DAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_CRON_FIELDS = (("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}),
                ("month", 1, 12, _MONTHS), ("day of week", 0, 6, _DAYS))
_CRON_MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
                "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
                "@hourly": "0 * * * *"}


@dataclass(frozen=True)
class CronSchedule:
    """A parsed five-field schedule: the allowed values of each field. ``dom_star`` and
    ``dow_star`` record a ``*`` in those fields, which decides whether a day must match
    both (either was ``*``) or just one of them (both restricted), as in cron."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]
    dom_star: bool
    dow_star: bool


def _cron_number(text: str, names: Mapping[str, int]) -> int:
    if text.lower() in names:
        return names[text.lower()]
    if not text.isdigit():
        raise ValueError(f"failed to parse int from {text}")
    return int(text)


def _cron_part(part: str, lo: int, hi: int, names: Mapping[str, int]) -> set[int]:
    rng, slash, step_text = part.partition("/")
    if "/" in step_text:
        raise ValueError(f"too many slashes: {part}")
    if rng in ("*", "?"):
        start, end = lo, hi
    else:
        a, dash, b = rng.partition("-")
        if "-" in b:
            raise ValueError(f"too many hyphens: {rng}")
        start = _cron_number(a, names)
        end = _cron_number(b, names) if dash else (hi if slash else start)
    step = 1
    if slash:
        if not step_text.isdigit() or int(step_text) == 0:
            raise ValueError(f"step of range should be a positive number: {part}")
        step = int(step_text)
    if start < lo:
        raise ValueError(f"beginning of range ({start}) below minimum ({lo}): {part}")
    if end > hi:
        raise ValueError(f"end of range ({end}) above maximum ({hi}): {part}")
    if start > end:
        raise ValueError(f"beginning of range ({start}) beyond end of range ({end}): {part}")
    return set(range(start, end + 1, step))


def parse_cron(schedule: str) -> CronSchedule:
    """A standard cron schedule (``*/5 9-17 * JAN,MAR MON-FRI``, ``@daily``); ValueError
    with a robfig/cron-style message when it does not parse."""
    text = schedule.strip()
    if text.startswith("@"):
        if text not in _CRON_MACROS:
            raise ValueError(f"unrecognized descriptor: {text}")
        text = _CRON_MACROS[text]
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(f"expected exactly 5 fields, found {len(fields)}: {schedule}")
    sets = []
    for value, (_, lo, hi, names) in zip(fields, _CRON_FIELDS):
        allowed: set[int] = set()
        for part in value.split(","):
            allowed |= _cron_part(part, lo, hi, names)
        sets.append(frozenset(allowed))
    return CronSchedule(*sets, dom_star=fields[2][0] in "*?", dow_star=fields[4][0] in "*?")


def _schedule(spec: dict, path: str) -> Causes:
    schedule = spec.get("schedule")
    if not schedule:
        return [required(path)]
    if not isinstance(schedule, str):
        return [invalid(path, schedule, "must be a string")]
    if re.search(r"\b(CRON_)?TZ=", schedule):
        return [invalid(path, schedule, "cannot use TZ or CRON_TZ in schedule, use timeZone "
                        "field instead")]
    try:
        parse_cron(schedule)
    except ValueError as err:
        return [invalid(path, schedule, str(err))]
    return []


def _time_zone(spec: dict, path: str) -> Causes:
    tz = spec.get("timeZone")
    if tz is None:
        return []
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        return [invalid(path, tz, f"unknown time zone {tz}")]
    return []


def _cronjob(obj: dict) -> Causes:
    causes: Causes = []
    spec = _dict(obj, "spec", "spec", causes)
    causes += _schedule(spec, "spec.schedule")
    causes += _time_zone(spec, "spec.timeZone")
    causes += _enum(spec, "concurrencyPolicy", "spec.concurrencyPolicy",
                    ("Allow", "Forbid", "Replace"))
    for key in ("startingDeadlineSeconds", "successfulJobsHistoryLimit",
                "failedJobsHistoryLimit"):
        causes += _int_at_least(spec, key, f"spec.{key}", 0)
    template = _dict(spec, "jobTemplate", "spec.jobTemplate", causes)
    meta = _dict(template, "metadata", "spec.jobTemplate.metadata", causes)
    causes += _labels(meta.get("labels"), "spec.jobTemplate.metadata.labels")
    causes += validate_workload_spec("Job", template.get("spec") or {}, "spec.jobTemplate.spec")
    return causes


# --- Services ------------------------------------------------------------------------------

SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
NODE_PORT_RANGE = (30000, 32767)


def _valid_ip(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _service_port(port: dict, p: str, svc_type: str, several: bool) -> Causes:
    causes: Causes = []
    name = port.get("name")
    if name:
        causes += _syntax(_at(p, "name"), name, dns1123_label_errors)
    elif several:
        causes.append(required(_at(p, "name")))
    causes += _port_number(_at(p, "port"), port.get("port"))
    causes += _enum(port, "protocol", _at(p, "protocol"), PROTOCOLS)
    target = port.get("targetPort")
    if target not in (None, 0, ""):
        causes += _int_or_port_name(_at(p, "targetPort"), target)
    node_port = port.get("nodePort")
    if node_port not in (None, 0):
        lo, hi = NODE_PORT_RANGE
        if svc_type not in ("NodePort", "LoadBalancer"):
            causes.append(forbidden(_at(p, "nodePort"),
                                    f"may not be used when `type` is '{svc_type}'"))
        elif not _is_int(node_port) or not lo <= node_port <= hi:
            causes.append(invalid(_at(p, "nodePort"), node_port,
                                  "provided port is not in the valid range. The range of "
                                  f"valid ports is {lo}-{hi}"))
    return causes


def _service_ports(spec: dict, svc_type: str, needed: bool) -> Causes:
    causes: Causes = []
    ports = _list(spec, "ports", "spec.ports", causes)
    if not ports and needed:
        causes.append(required("spec.ports"))
    names: set[str] = set()
    node_ports: set[int] = set()
    keys = set()
    for i, port in ports:
        p = _at("spec.ports", i)
        causes += _service_port(port, p, svc_type, len(ports) > 1)
        name = _str(port.get("name"))
        if name and name in names:
            causes.append(duplicate(_at(p, "name"), name))
        names.add(name or "")
        number, protocol = port.get("port"), port.get("protocol") or "TCP"
        key = (_render(number), _render(protocol))
        if key in keys:
            causes.append(duplicate(p, {"port": number, "protocol": protocol}))
        keys.add(key)
        np_ = port.get("nodePort")
        if _is_int(np_) and np_ != 0 and np_ in node_ports:
            causes.append(duplicate(_at(p, "nodePort"), np_))
        node_ports.add(np_ if _is_int(np_) else 0)
    return causes


def _service_cluster_ip(spec: dict, svc_type: str) -> Causes:
    ip = spec.get("clusterIP")
    if ip in (None, ""):
        return []
    if svc_type == "ExternalName":
        return [forbidden("spec.clusterIP", "may not be set for ExternalName services")]
    if ip == "None":
        if svc_type in ("NodePort", "LoadBalancer"):
            return [invalid("spec.clusterIP", ip,
                            f"may not be set to 'None' for {svc_type} services")]
        return []
    if not _valid_ip(ip):
        return [invalid("spec.clusterIP", ip, "must be empty, 'None', or a valid IP address")]
    return []


def _service(obj: dict) -> Causes:
    causes: Causes = []
    spec = _dict(obj, "spec", "spec", causes)
    svc_type = spec.get("type") or "ClusterIP"
    causes += _enum(spec, "type", "spec.type", SERVICE_TYPES)
    if svc_type == "ExternalName":
        name = spec.get("externalName")
        causes += ([required("spec.externalName")] if not name else
                   _syntax("spec.externalName", name.rstrip(".") if isinstance(name, str)
                           else name, dns1123_subdomain_errors))
    headless = spec.get("clusterIP") == "None"
    causes += _service_ports(spec, svc_type, not headless and svc_type != "ExternalName")
    causes += _service_cluster_ip(spec, svc_type)
    causes += _enum(spec, "sessionAffinity", "spec.sessionAffinity", ("ClientIP", "None"))
    timeout = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get(
        "timeoutSeconds")
    if timeout is not None and (not _is_int(timeout) or not 0 < timeout <= 86400):
        causes.append(invalid("spec.sessionAffinityConfig.clientIP.timeoutSeconds", timeout,
                              "must be greater than 0 and less than 86400"))
    causes += _labels(spec.get("selector"), "spec.selector")
    causes += _enum(spec, "internalTrafficPolicy", "spec.internalTrafficPolicy",
                    ("Cluster", "Local"))
    causes += _enum(spec, "externalTrafficPolicy", "spec.externalTrafficPolicy",
                    ("Cluster", "Local"))
    if spec.get("externalTrafficPolicy") and svc_type not in ("NodePort", "LoadBalancer"):
        causes.append(invalid("spec.externalTrafficPolicy", spec["externalTrafficPolicy"],
                              "may only be set when `type` is 'NodePort' or 'LoadBalancer'"))
    causes += _enum(spec, "ipFamilyPolicy", "spec.ipFamilyPolicy",
                    ("PreferDualStack", "RequireDualStack", "SingleStack"))
    for i, fam in enumerate(_str_list(spec, "ipFamilies")):
        if fam not in ("IPv4", "IPv6"):
            causes.append(not_supported(_at("spec.ipFamilies", i), fam, ("IPv4", "IPv6")))
    return causes


def _service_update(obj: dict, old: dict) -> Causes:
    new_spec, old_spec = _m(obj.get("spec")), _m(old.get("spec"))
    old_ip = old_spec.get("clusterIP")
    if not old_ip or new_spec.get("type") == "ExternalName":
        return []
    return _immutable("spec.clusterIP", new_spec.get("clusterIP"), old_ip)


# --- ConfigMaps and Secrets -------------------------------------------------------------

_DATA_MAX = 1024 * 1024
_IMMUTABLE_DATA = "field is immutable when `immutable` is set"
_SECRET_REQUIRED_KEYS = {
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
}


def _data_map(obj: dict, key: str, causes: Causes, decode: bool) -> dict[str, int]:
    """Key -> size in bytes for one data map, reporting bad keys and values."""
    sizes: dict[str, int] = {}
    for k, v in _dict(obj, key, key, causes).items():
        p = _key(key, k)
        causes += [invalid(p, k, m) for m in config_key_errors(str(k))]
        if not isinstance(v, str):
            causes.append(invalid(p, v, "must be a string"))
            continue
        if decode:
            try:
                sizes[k] = len(base64.b64decode(v, validate=True))
            except (binascii.Error, ValueError):
                causes.append(invalid(p, "<value omitted>", "illegal base64 data"))
        else:
            sizes[k] = len(v.encode())
    return sizes


def _data_maps(obj: dict, maps: tuple[tuple[str, bool], ...]) -> tuple[Causes, set[str]]:
    causes: Causes = []
    seen: dict[str, str] = {}
    total = 0
    for key, decode in maps:
        for k, size in _data_map(obj, key, causes, decode).items():
            if k in seen and {seen[k], key} != {"data", "stringData"}:
                causes.append(duplicate(_key(key, k), k))
            seen[k] = key
            total += size
    if total > _DATA_MAX:
        causes.append(too_long(maps[0][0], _DATA_MAX))
    return causes, set(seen)


def _configmap(obj: dict) -> Causes:
    return _data_maps(obj, (("data", False), ("binaryData", True)))[0]


def _secret(obj: dict) -> Causes:
    causes, keys = _data_maps(obj, (("data", True), ("stringData", False)))
    stype = _str(obj.get("type")) or "Opaque"
    for key in _SECRET_REQUIRED_KEYS.get(stype, ()):
        if key not in keys:
            causes.append(required(_key("data", key)))
    if stype == "kubernetes.io/service-account-token":
        annotations = _m(_m(obj.get("metadata")).get("annotations"))
        if not annotations.get("kubernetes.io/service-account.name"):
            causes.append(required(
                "metadata.annotations[kubernetes.io/service-account.name]"))
    return causes


def _immutable_data(fields: tuple[str, ...]) -> Callable[[dict, dict], Causes]:
    def check(obj: dict, old: dict) -> Causes:
        if not old.get("immutable"):
            return []
        causes = [forbidden(f, _IMMUTABLE_DATA) for f in fields
                  if (obj.get(f) or {}) != (old.get(f) or {})]
        if not obj.get("immutable"):
            causes.append(forbidden("immutable", _IMMUTABLE_DATA))
        return causes
    return check


def _secret_update(obj: dict, old: dict) -> Causes:
    causes = _immutable("type", obj.get("type") or "Opaque", old.get("type") or "Opaque")
    return causes + _immutable_data(("data",))(obj, old)


# --- the smaller kinds ----------------------------------------------------------------------

def _spec_of(obj: dict, causes: Causes) -> dict:
    return _dict(obj, "spec", "spec", causes)


def _pod(obj: dict) -> Causes:
    return validate_pod_spec(obj.get("spec") or {}, "spec")


def _workload(kind: str) -> Callable[[dict], Causes]:
    return lambda obj: validate_workload_spec(kind, obj.get("spec") or {}, "spec")


def _lease(obj: dict) -> Causes:
    causes: Causes = []
    spec = _spec_of(obj, causes)
    causes += _int_at_least(spec, "leaseDurationSeconds", "spec.leaseDurationSeconds", 1)
    causes += _int_at_least(spec, "leaseTransitions", "spec.leaseTransitions", 0)
    holder = spec.get("holderIdentity")
    if holder is not None and not isinstance(holder, str):
        causes.append(invalid("spec.holderIdentity", holder, "must be a string"))
    return causes


def _namespace(obj: dict) -> Causes:
    causes: Causes = []
    spec = _spec_of(obj, causes)
    for i, fin in enumerate(_str_list(spec, "finalizers")):
        causes += _syntax(_at("spec.finalizers", i), fin, qualified_name_errors)
    return causes


def _node(obj: dict) -> Causes:
    causes: Causes = []
    spec = _spec_of(obj, causes)
    cidrs = ([spec["podCIDR"]] if spec.get("podCIDR") else []) + _str_list(spec, "podCIDRs")
    for cidr in cidrs:
        try:
            if not isinstance(cidr, str):
                raise ValueError(cidr)
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            causes.append(invalid("spec.podCIDR", cidr, "must be a valid CIDR"))
    seen: set[tuple] = set()
    for i, taint in _list(spec, "taints", "spec.taints", causes):
        p = _at("spec.taints", i)
        key = taint.get("key")
        causes += [required(_at(p, "key"))] if not key else _syntax(
            _at(p, "key"), key, qualified_name_errors)
        if taint.get("value"):
            causes += _syntax(_at(p, "value"), taint["value"], label_value_errors)
        causes += _enum(taint, "effect", _at(p, "effect"), TAINT_EFFECTS, needed=True)
        pair = (_render(key), _render(taint.get("effect")))
        if pair in seen:
            causes.append(duplicate(p, {"key": key, "effect": taint.get("effect")}))
        seen.add(pair)
    return causes


def _event(obj: dict) -> Causes:
    causes: Causes = []
    involved = _dict(obj, "involvedObject", "involvedObject", causes)
    if not involved:
        return causes + [required("involvedObject")]
    ns = _m(obj.get("metadata")).get("namespace") or ""
    involved_ns = involved.get("namespace") or ""
    if involved_ns != ns and not (not involved_ns and ns == "default"):
        causes.append(invalid("involvedObject.namespace", involved_ns,
                              "does not match event.namespace"))
    causes += _enum(obj, "type", "type", ("Normal", "Warning"))
    return causes


def _endpoints(obj: dict) -> Causes:
    causes: Causes = []
    for i, subset in _list(obj, "subsets", "subsets", causes):
        p = _at("subsets", i)
        for key in ("addresses", "notReadyAddresses"):
            for j, addr in _list(subset, key, _at(p, key), causes):
                if not _valid_ip(addr.get("ip")):
                    causes.append(invalid(_at(p, key, j, "ip"), addr.get("ip"),
                                          "must be a valid IP address"))
        for j, port in _list(subset, "ports", _at(p, "ports"), causes):
            causes += _port_number(_at(p, "ports", j, "port"), port.get("port"))
            causes += _enum(port, "protocol", _at(p, "ports", j, "protocol"), PROTOCOLS)
            if port.get("name"):
                causes += _syntax(_at(p, "ports", j, "name"), port["name"],
                                  dns1123_label_errors)
    return causes


_METRIC_TYPES = ("ContainerResource", "External", "Object", "Pods", "Resource")
_METRIC_SOURCE_KEY = {"ContainerResource": "containerResource", "External": "external",
                      "Object": "object", "Pods": "pods", "Resource": "resource"}


def _metric_target(target: Any, path: str) -> Causes:
    if not isinstance(target, dict) or not target.get("type"):
        return [required(_at(path, "type"))]
    causes = _enum(target, "type", _at(path, "type"), ("AverageValue", "Utilization", "Value"))
    needed = {"Utilization": "averageUtilization", "AverageValue": "averageValue",
              "Value": "value"}.get(_str(target["type"]) or "")
    if needed and target.get(needed) is None:
        causes.append(required(_at(path, needed),
                               "must populate information for the given metric source"))
    if needed == "averageUtilization":
        causes += _int_at_least(target, needed, _at(path, needed), 1)
    elif needed and target.get(needed) is not None:
        try:
            if parse_quantity(target[needed]) <= 0:
                causes.append(invalid(_at(path, needed), target[needed],
                                      "must be positive"))
        except ValueError:
            causes.append(invalid(_at(path, needed), target[needed],
                                  "must be a valid quantity"))
    return causes


def _hpa(obj: dict) -> Causes:
    causes: Causes = []
    spec = _spec_of(obj, causes)
    ref = _dict(spec, "scaleTargetRef", "spec.scaleTargetRef", causes)
    for key, check in (("kind", path_segment_errors), ("name", path_segment_errors)):
        p = f"spec.scaleTargetRef.{key}"
        causes += [required(p)] if not ref.get(key) else _syntax(p, ref[key], check)
    max_r, min_r = spec.get("maxReplicas"), spec.get("minReplicas")
    if max_r is None:
        causes.append(required("spec.maxReplicas"))
    else:
        causes += _int_at_least(spec, "maxReplicas", "spec.maxReplicas", 1)
    causes += _int_at_least(spec, "minReplicas", "spec.minReplicas", 1,
                            "must be greater than or equal to 1")
    if _is_int(max_r) and _is_int(min_r) and max_r < min_r:
        causes.append(invalid("spec.maxReplicas", max_r,
                              "must be greater than or equal to `minReplicas`"))
    for i, metric in _list(spec, "metrics", "spec.metrics", causes):
        p = _at("spec.metrics", i)
        mtype = metric.get("type")
        causes += _enum(metric, "type", _at(p, "type"), _METRIC_TYPES, needed=True)
        source_key = _METRIC_SOURCE_KEY.get(_str(mtype) or "")
        if not source_key:
            continue
        source = metric.get(source_key)
        if not isinstance(source, dict):
            causes.append(required(_at(p, source_key),
                                   "must populate information for the given metric source"))
            continue
        if mtype in ("Resource", "ContainerResource") and not source.get("name"):
            causes.append(required(_at(p, source_key, "name")))
        causes += _metric_target(source.get("target"), _at(p, source_key, "target"))
    return causes


_ACCESS_MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")


def _pvc(obj: dict) -> Causes:
    causes: Causes = []
    spec = _spec_of(obj, causes)
    modes = spec.get("accessModes")
    if not modes:
        causes.append(required("spec.accessModes", "at least 1 access mode is required"))
    for i, mode in enumerate(_ls(modes)):
        if mode not in _ACCESS_MODES:
            causes.append(not_supported(_at("spec.accessModes", i), mode, _ACCESS_MODES))
    requests = _m(_m(spec.get("resources")).get("requests"))
    if "storage" not in requests:
        causes.append(required("spec.resources[storage]"))
    else:
        try:
            parse_quantity(requests["storage"])
        except ValueError:
            causes.append(invalid("spec.resources[storage]", requests["storage"],
                                  "must be a valid quantity"))
    causes += _enum(spec, "volumeMode", "spec.volumeMode", ("Block", "Filesystem"))
    return causes


def _pvc_update(obj: dict, old: dict) -> Causes:
    """Only the requested storage may change (growing), as Kubernetes allows."""
    new_spec, old_spec = copy.deepcopy(_m(obj.get("spec"))), _m(old.get("spec"))
    new_req = _m(_m(new_spec.get("resources")).get("requests"))
    old_req = _m(_m(old_spec.get("resources")).get("requests"))
    if "storage" in old_req and "storage" in new_req:
        new_req["storage"] = old_req["storage"]
    if not old_spec.get("volumeName") and new_spec.get("volumeName"):
        new_spec.pop("volumeName")  # binding sets it once
    if new_spec != old_spec:
        return [forbidden("spec", "spec is immutable after creation except "
                                  "resources.requests and volumeAttributesClassName for "
                                  "bound claims")]
    return []


def _controller_revision(obj: dict) -> Causes:
    if obj.get("revision") is None:
        return [required("revision")]
    return _int_at_least(obj, "revision", "revision", 0)


def _controller_revision_update(obj: dict, old: dict) -> Causes:
    return _immutable("data", obj.get("data"), old.get("data"))


# --- the table of kinds ------------------------------------------------------------------


def _cronjob_name_errors(name: str) -> list[str]:
    errs = dns1123_subdomain_errors(name)
    return errs + (["must be no more than 52 characters"] if len(name) > 52 else [])


_CSR_USAGES = ("signing", "digital signature", "content commitment", "key encipherment",
               "key agreement", "data encipherment", "cert sign", "crl sign", "encipher only",
               "decipher only", "any", "server auth", "client auth", "code signing",
               "email protection", "s/mime", "ipsec end system", "ipsec tunnel", "ipsec user",
               "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc")
_CSR_CONDITIONS = ("Approved", "Denied", "Failed")


def _csr(obj: dict) -> Causes:
    """certificates.k8s.io/v1 CertificateSigningRequest: a PEM CSR with a valid signature,
    a signer name ``domain/path``, known usages, conditions of known types."""
    import base64

    from cryptography import x509

    causes: Causes = []
    spec = _m(obj.get("spec"))
    request = spec.get("request")
    if not request:
        causes.append(required("spec.request"))
    else:
        try:
            csr = x509.load_pem_x509_csr(base64.b64decode(request, validate=True))
            if not csr.is_signature_valid:
                causes.append(invalid("spec.request", "<omitted>",
                                      "the request's signature does not verify"))
        except (ValueError, TypeError):
            causes.append(invalid("spec.request", "<omitted>",
                                  "must be a base64-encoded PEM CERTIFICATE REQUEST"))
    signer = spec.get("signerName")
    if not signer:
        causes.append(required("spec.signerName"))
    elif not isinstance(signer, str) or "/" not in signer or signer.startswith("/"):
        causes.append(invalid("spec.signerName", signer,
                              "must be a fully qualified domain and path of the form "
                              "'example.com/signer-name'"))
    for i, usage in enumerate(_ls(spec.get("usages"))):
        if usage not in _CSR_USAGES:
            causes.append(not_supported(f"spec.usages[{i}]", usage, _CSR_USAGES))
    seconds = spec.get("expirationSeconds")
    if seconds is not None and (not _is_int(seconds) or seconds < 600):
        causes.append(invalid("spec.expirationSeconds", seconds,
                              "may not specify a duration less than 600 seconds (10 minutes)"))
    types = []
    for i, cond in enumerate(_ls(_m(obj.get("status")).get("conditions"))):
        ctype = _m(cond).get("type")
        if ctype not in _CSR_CONDITIONS:
            causes.append(not_supported(f"status.conditions[{i}].type", ctype,
                                        _CSR_CONDITIONS))
        types.append(ctype)
    if "Approved" in types and "Denied" in types:
        causes.append(invalid("status.conditions", "Approved,Denied",
                              "Approved and Denied conditions are mutually exclusive"))
    return causes


def _csr_update(obj: dict, old: dict) -> Causes:
    causes: Causes = []
    if obj.get("spec") != old.get("spec"):
        causes.append(forbidden("spec", "field is immutable"))
    old_types = {_m(c).get("type") for c in _ls(_m(old.get("status")).get("conditions"))}
    new_types = {_m(c).get("type") for c in _ls(_m(obj.get("status")).get("conditions"))}
    for ctype in ("Approved", "Denied"):
        if ctype in old_types and ctype not in new_types:
            causes.append(forbidden("status.conditions", f"updates may not remove a "
                                    f"condition of type {ctype!r}"))
    if _m(old.get("status")).get("certificate") and \
            _m(obj.get("status")).get("certificate") != _m(old.get("status")).get("certificate"):
        causes.append(forbidden("status.certificate", "updates may not modify existing "
                                "certificate content"))
    return causes


@dataclass(frozen=True)
class KindRules:
    name: NameCheck = dns1123_subdomain_errors
    create: Callable[[dict], Causes] | None = None
    update: Callable[[dict, dict], Causes] | None = None


KINDS: dict[str, KindRules] = {
    "Namespace": KindRules(dns1123_label_errors, _namespace),
    "Pod": KindRules(create=_pod, update=_pod_update),
    "Node": KindRules(create=_node),
    "Event": KindRules(create=_event),
    "ConfigMap": KindRules(create=_configmap,
                           update=_immutable_data(("data", "binaryData"))),
    "Secret": KindRules(create=_secret, update=_secret_update),
    "Service": KindRules(dns1035_label_errors, _service, _service_update),
    "Endpoints": KindRules(create=_endpoints),
    "ServiceAccount": KindRules(),
    **{kind: KindRules(create=_workload(kind), update=_workload_update(kind))
       for kind in _WORKLOADS},
    "CronJob": KindRules(_cronjob_name_errors, _cronjob),
    "Lease": KindRules(create=_lease),
    "PersistentVolumeClaim": KindRules(create=_pvc, update=_pvc_update),
    "ControllerRevision": KindRules(create=_controller_revision,
                                    update=_controller_revision_update),
    "HorizontalPodAutoscaler": KindRules(path_segment_errors, _hpa),
    "CertificateSigningRequest": KindRules(create=_csr, update=_csr_update),
}


def validate(rt: ResourceType, obj: dict, old: dict | None = None) -> Causes:
    """Every problem with ``obj`` (a create, or an update of ``old``) as Status causes;
    an empty list means valid. Kinds without rules get the metadata checks only."""
    if not isinstance(obj, dict):
        return [invalid("", obj, "must be an object")]
    rules = KINDS.get(rt.kind, KindRules())
    causes = validate_object_meta(rt, obj, rules.name)
    if rules.create:
        causes += rules.create(obj)
    if old is not None:
        causes += validate_object_meta_update(obj, old)
        if rules.update:
            causes += rules.update(obj, old)
    return causes


__all__ = [
    "validate", "validate_object_meta", "validate_object_meta_update", "validate_pod_spec",
    "validate_workload_spec", "validate_label_selector", "parse_cron", "CronSchedule",
    "KINDS", "KindRules", "parse_quantity",
    "required", "invalid", "not_supported", "duplicate", "forbidden", "too_long",
    "not_found", "dns1123_label_errors", "dns1035_label_errors", "path_segment_errors",
    "port_name_errors", "env_name_errors", "config_key_errors",
    "REQUIRED", "INVALID", "DUPLICATE", "NOT_SUPPORTED", "FORBIDDEN", "TOO_LONG", "NOT_FOUND",
]
