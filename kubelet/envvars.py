"""A container's environment as Kubernetes builds it: ``envFrom`` sources first (in order,
with their prefix), then ``env`` (later entries win), each value expanded against what was
defined before it, and ``command``/``args`` expanded against the result.

``$(VAR)`` expansion follows Kubernetes' ``third_party/forked/golang/expansion`` exactly:
an unknown variable stays as written, ``$$`` is an escaped ``$``, and any other ``$`` is
literal, so manifests written for Kubernetes behave the same here."""

from __future__ import annotations

import base64
import re
from typing import Awaitable, Callable

from minik8s.api.meta import Obj

# (kind: "configmaps" | "secrets", namespace, name) -> the object, or None when missing
ObjectGetter = Callable[[str, str, str], Awaitable["Obj | None"]]

_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


class ContainerConfigError(Exception):
    """The container cannot be created from its spec as it stands (a missing ConfigMap,
    Secret or key): the container waits with ``CreateContainerConfigError``."""


def expand(value: str, lookup: Callable[[str], str | None]) -> str:
    buf: list[str] = []
    checkpoint = 0
    i = 0
    n = len(value)
    while i < n:
        if value[i] == "$" and i + 1 < n:
            buf.append(value[checkpoint:i])
            read, is_var, advance = _read_variable(value[i + 1:])
            if is_var:
                found = lookup(read)
                buf.append(found if found is not None else f"$({read})")
            else:
                buf.append(read)
            i += advance
            checkpoint = i + 1
        i += 1
    return "".join(buf) + value[checkpoint:]


def _read_variable(rest: str) -> tuple[str, bool, int]:
    c = rest[0]
    if c == "$":
        return "$", False, 1
    if c == "(":
        for j in range(1, len(rest)):
            if rest[j] == ")":
                return rest[1:j], True, j + 1
        return "$(", False, 1
    return "$" + c, False, 1


def field_ref_value(pod: Obj, path: str, pod_ip: str, host_ip: str) -> str:
    md = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return str((md.get(m[1]) or {}).get(m[2], ""))
    simple = {
        "metadata.name": md.get("name"), "metadata.namespace": md.get("namespace"),
        "metadata.uid": md.get("uid"), "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": pod_ip, "status.podIPs": pod_ip, "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
    }
    if path not in simple:
        raise ContainerConfigError(f"unsupported fieldRef {path!r}")
    return str(simple[path] or "")


def _data(obj: Obj, secret: bool) -> dict[str, str]:
    out: dict[str, str] = {}
    if secret:
        for k, v in (obj.get("data") or {}).items():
            try:
                out[k] = base64.b64decode(v).decode("utf-8", "replace")
            except (ValueError, TypeError):
                out[k] = ""
        for k, v in (obj.get("stringData") or {}).items():
            out[k] = str(v)
    else:
        for k, v in (obj.get("binaryData") or {}).items():
            try:
                out[k] = base64.b64decode(v).decode("utf-8", "replace")
            except (ValueError, TypeError):
                out[k] = ""
        out.update({k: str(v) for k, v in (obj.get("data") or {}).items()})
    return out


async def _source(get: ObjectGetter, kind: str, ns: str, name: str,
                  optional: bool) -> dict[str, str] | None:
    obj = await get(kind, ns, name)
    if obj is None:
        if optional:
            return None
        word = "configmap" if kind == "configmaps" else "secret"
        raise ContainerConfigError(f'{word} "{name}" not found')
    return _data(obj, kind == "secrets")


# Services whose variables every pod gets, from the default namespace, whatever its
# enableServiceLinks says (Kubernetes' "master services").
MASTER_SERVICES = ("kubernetes",)


def _env_name(name: str) -> str:
    return name.upper().replace("-", "_")


def service_env(services: list[Obj], namespace: str, enable_service_links: bool = True
                ) -> dict[str, str]:
    """The ``{SVC}_SERVICE_HOST``/``_PORT`` and Docker-links variables Kubernetes' kubelet
    sets (``getServiceEnvVarMap`` + ``envvars.FromServices``): for each Service of the pod's
    namespace with a ClusterIP (when ``enableServiceLinks``), and for ``kubernetes`` in
    ``default`` always (a same-named Service of the pod's own namespace wins)."""
    chosen: dict[str, Obj] = {}
    for svc in services:
        md, spec = svc.get("metadata") or {}, svc.get("spec") or {}
        ip = spec.get("clusterIP")
        if not ip or ip == "None" or not spec.get("ports"):
            continue
        name, ns = md.get("name") or "", md.get("namespace") or ""
        if ns == "default" and name in MASTER_SERVICES:
            chosen.setdefault(name, svc)
        elif ns == namespace and enable_service_links:
            chosen[name] = svc
    out: dict[str, str] = {}
    for name in sorted(chosen):
        spec = chosen[name]["spec"]
        ip, ports = spec["clusterIP"], [p for p in spec["ports"] if isinstance(p, dict)]
        prefix = _env_name(name)
        out[f"{prefix}_SERVICE_HOST"] = ip
        out[f"{prefix}_SERVICE_PORT"] = str(ports[0].get("port"))
        for port in ports:
            if port.get("name"):
                out[f"{prefix}_SERVICE_PORT_{_env_name(port['name'])}"] = str(port.get("port"))
        host = f"[{ip}]" if ":" in ip else ip
        for i, port in enumerate(ports):
            proto = (port.get("protocol") or "TCP").upper()
            url = f"{proto.lower()}://{host}:{port.get('port')}"
            if i == 0:
                out[f"{prefix}_PORT"] = url  # Docker special-cases the first port
            base = f"{prefix}_PORT_{port.get('port')}_{proto}"
            out[base] = url
            out[f"{base}_PROTO"] = proto.lower()
            out[f"{base}_PORT"] = str(port.get("port"))
            out[f"{base}_ADDR"] = ip
    return out


async def build_env(container: Obj, pod: Obj, get: ObjectGetter, *, pod_ip: str = "",
                    host_ip: str = "", services: dict[str, str] | None = None
                    ) -> dict[str, str]:
    """The container's environment, in definition order; ``ContainerConfigError`` for a
    reference that cannot be resolved. ``services`` (from ``service_env``) are visible to
    ``$(VAR)`` expansion and added after the container's own variables, which win, as the
    kubelet's ``makeEnvironmentVariables`` does."""
    ns = (pod.get("metadata") or {}).get("namespace") or "default"
    env: dict[str, str] = {}
    service_vars = services or {}

    def lookup(name: str) -> str | None:
        found = env.get(name)
        return found if found is not None else service_vars.get(name)
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix") or ""
        for kind, key in (("configmaps", "configMapRef"), ("secrets", "secretRef")):
            ref = src.get(key)
            if not isinstance(ref, dict):
                continue
            data = await _source(get, kind, ns, ref.get("name", ""), bool(ref.get("optional")))
            for k, v in (data or {}).items():
                name = prefix + k
                if _ENV_NAME.match(name):  # Kubernetes skips (and reports) invalid names
                    env[name] = v
    for var in container.get("env") or []:
        name = var.get("name")
        if not name:
            continue
        if "value" in var or not var.get("valueFrom"):
            env.pop(name, None)  # a redefinition moves to the end, like Kubernetes' list
            env[name] = expand(str(var.get("value") or ""), lookup)
            continue
        vf = var["valueFrom"]
        value: str | None
        if "fieldRef" in vf:
            value = field_ref_value(pod, (vf["fieldRef"] or {}).get("fieldPath", ""),
                                    pod_ip, host_ip)
        elif "configMapKeyRef" in vf or "secretKeyRef" in vf:
            kind, ref = (("configmaps", vf["configMapKeyRef"]) if "configMapKeyRef" in vf
                         else ("secrets", vf["secretKeyRef"]))
            optional = bool(ref.get("optional"))
            data = await _source(get, kind, ns, ref.get("name", ""), optional)
            if data is None:
                continue
            if ref.get("key") not in data:
                if optional:
                    continue
                word = "ConfigMap" if kind == "configmaps" else "Secret"
                raise ContainerConfigError(
                    f"couldn't find key {ref.get('key')} in {word} {ns}/{ref.get('name')}")
            value = data[ref["key"]]
        elif "resourceFieldRef" in vf:
            value = resource_field_value(container, vf["resourceFieldRef"] or {})
        else:
            value = ""
        env.pop(name, None)
        env[name] = value
    for name, value in service_vars.items():
        env.setdefault(name, value)
    return env


def resource_field_value(container: Obj, ref: Obj) -> str:
    from minik8s.api.quantity import parse_quantity
    import math
    resource = ref.get("resource", "")
    kind, _, res = resource.partition(".")
    value = ((container.get("resources") or {}).get(kind) or {}).get(res)
    if value is None:
        return "0"
    divisor = parse_quantity(ref.get("divisor") or "1")
    return str(math.ceil(parse_quantity(value) / divisor))


def expand_command(words: list[str] | None, env: dict[str, str]) -> list[str] | None:
    if words is None:
        return None
    return [expand(str(w), env.get) for w in words]


__all__ = ["expand", "build_env", "expand_command", "field_ref_value", "ContainerConfigError",
           "ObjectGetter", "service_env", "MASTER_SERVICES"]
