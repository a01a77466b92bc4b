"""Regenerate ``minik8s/api/schema.json`` from the official ``kubernetes`` Python client.

The API server has to know every field of every kind to honour ``fieldValidation``, but it
must not import the client at run time (it is a test dependency, and a large one). The
client's generated models are the most complete machine-readable copy of the Kubernetes
types available offline, so this script distils them once into a small JSON table that is
committed next to the runtime module, and a unit test regenerates it to prove it is in sync.

Usage: ``python tools/gen_schema.py [--check] [--output PATH]``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from minik8s.api.registry import REGISTRY, ResourceType  # noqa: E402

OUTPUT = ROOT / "minik8s" / "api" / "schema.json"

# Python client class name: optional group prefix (``Core`` in ``CoreV1Event``, added by the
# generator only when two groups define the same name), version, Kubernetes type name.
_CLASS_RE = re.compile(
    r"^(?P<group>(?:[A-Z][a-z]+)*?)(?P<version>V\d+(?:(?:alpha|beta)\d+)?)(?P<name>[A-Z]\w*)$")
_API_RE = re.compile(
    r"^(?P<group>(?:[A-Z][a-z]+)+?)(?P<version>V\d+(?:(?:alpha|beta)\d+)?)Api$")

META_PACKAGE = "io.k8s.apimachinery.pkg.apis.meta.v1"
# Types of k8s.io/apimachinery/pkg/apis/meta/v1 the client names like any ``V1`` type; nothing
# in the client tells them apart from core/v1 types, so they are listed by name.
META_TYPES = frozenset({
    "APIGroup", "APIGroupList", "APIResource", "APIResourceList", "APIVersions", "Condition",
    "DeleteOptions", "GroupVersionForDiscovery", "LabelSelector", "LabelSelectorRequirement",
    "ListMeta", "ManagedFieldsEntry", "ObjectMeta", "OwnerReference", "Preconditions",
    "ServerAddressByClientCIDR", "Status", "StatusCause", "StatusDetails", "WatchEvent",
})
# Building blocks that a group defines for other groups to embed and that none of its own
# kinds use (batch/v1 Job embeds these from scheduling/v1alpha3): class-name prefix -> package.
SHARED_BLOCKS = {
    "V1alpha3WorkloadPodGroup": "io.k8s.api.scheduling.v1alpha3",
}
# Go package paths of the groups whose definitions do not live under ``io.k8s.api``.
PACKAGE_OVERRIDES = {
    "Apiextensions": "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions",
    "Apiregistration": "io.k8s.kube-aggregator.pkg.apis.apiregistration",
    "InternalApiserver": "io.k8s.api.apiserverinternal",
}

# resource.Quantity fields: the client types them as plain strings. Keyed by definition name
# (without package); fields whose description says "quantity" are found on top of these.
QUANTITY_FIELDS = {
    "ContainerStatus": {"allocatedResources"},
    "EmptyDirVolumeSource": {"sizeLimit"},
    "HPAScalingRules": {"tolerance"},
    "MetricTarget": {"averageValue", "value"},
    "MetricValueStatus": {"averageValue", "value"},
    "NodeStatus": {"allocatable", "capacity"},
    "PersistentVolumeClaimStatus": {"allocatedResources", "capacity"},
    "PodSpec": {"overhead"},
    "PodStatus": {"allocatedResources"},
    "ResourceFieldSelector": {"divisor"},
    "ResourceRequirements": {"limits", "requests"},
    "VolumeResourceRequirements": {"limits", "requests"},
}
# intstr.IntOrString fields, for clients older than the pydantic models (whose annotations
# say ``int | str`` and are used first). Keyed like QUANTITY_FIELDS.
INT_OR_STRING_FIELDS = {
    "HTTPGetAction": {"port"},
    "RollingUpdateDaemonSet": {"maxSurge", "maxUnavailable"},
    "RollingUpdateDeployment": {"maxSurge", "maxUnavailable"},
    "RollingUpdateStatefulSetStrategy": {"maxUnavailable"},
    "ServicePort": {"targetPort"},
    "TCPSocketAction": {"port"},
}

_LEAVES = {
    "str": "string", "int": "integer", "float": "number", "bool": "boolean",
    "datetime": "date-time", "date": "date-time", "bytearray": "bytes", "bytes": "bytes",
    "object": "object",
}
_LIST_RE = re.compile(r"^(?:List|list)\[(?P<item>.+)\]$")
_MAP_RE = re.compile(r"^(?:Dict\[str, ?(?P<a>.+)\]|dict\(str, ?(?P<b>.+)\))$")


def _client():
    import kubernetes.client as client  # development-only dependency
    return client


def _is_model(obj: Any) -> bool:
    return isinstance(obj, type) and isinstance(getattr(obj, "openapi_types", None), dict)


def _model_refs(type_string: str) -> list[str]:
    """Class names a client type string mentions (``List[V1Container]`` -> ``V1Container``)."""
    names = re.findall(r"[A-Za-z_]\w*", type_string)
    return [n for n in names if n not in ("List", "Dict", "list", "dict", "str") and n not in _LEAVES]


def _closure(client, roots: list[type]) -> set[str]:
    seen: set[str] = set()
    todo = [r.__name__ for r in roots]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        cls = getattr(client, name)
        for type_string in cls.openapi_types.values():
            todo.extend(n for n in _model_refs(type_string) if _is_model(getattr(client, n, None)))
    return seen


def _annotation_models(annotation: Any) -> list[type]:
    if _is_model(annotation):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _annotation_models(arg)]


def _api_roots(api: type) -> list[type]:
    """Model classes an API class accepts as ``body`` or returns: its kinds and their lists."""
    found: list[type] = []
    for name, fn in inspect.getmembers(api, inspect.isfunction):
        if name.startswith("_") or name.endswith(("_with_http_info", "_without_preload_content")):
            continue
        try:
            sig = inspect.signature(fn, eval_str=True)
        except Exception:  # an annotation the client cannot resolve: not one of ours
            continue
        found += _annotation_models(sig.return_annotation)
        if "body" in sig.parameters:
            found += _annotation_models(sig.parameters["body"].annotation)
    return found


def _package_of_api_group(group: str, version: str) -> str:
    words = re.findall(r"[A-Z][a-z]+", group)
    base = PACKAGE_OVERRIDES.get(group) or f"io.k8s.api.{words[0].lower()}"
    return f"{base}.{version.lower()}"


class Namer:
    """Maps client class names to Kubernetes definition names (``io.k8s.api.core.v1.Pod``).

    The client drops the Go package, so a type's package is recovered from the API groups
    whose kinds reach it: a type reached from core/v1 is core's (every group imports core,
    core imports no group); otherwise exactly one group of the same version must reach it.
    """

    def __init__(self, client):
        self.client = client
        self._reach: list[tuple[str, str, set[str]]] = []  # (package, version, closure)
        for name in sorted(dir(client)):
            m = _API_RE.match(name)
            if m and isinstance(getattr(client, name), type):
                package = _package_of_api_group(m["group"], m["version"])
                roots = _api_roots(getattr(client, name))
                self._reach.append((package, m["version"], _closure(client, roots)))

    def definition(self, class_name: str) -> str:
        m = _CLASS_RE.match(class_name)
        if not m:
            raise ValueError(f"cannot parse client class name {class_name!r}")
        version, name = m["version"], m["name"]
        if not m["group"] and version == "V1" and name in META_TYPES:
            return f"{META_PACKAGE}.{name}"
        if m["group"]:
            return f"{_package_of_api_group(m['group'], version)}.{name}"
        owners = sorted({pkg for pkg, ver, reach in self._reach
                         if ver == version and class_name in reach})
        core = [p for p in owners if p.startswith("io.k8s.api.core.")]
        if core:
            return f"{core[0]}.{name}"
        shared = [p for prefix, p in SHARED_BLOCKS.items() if class_name.startswith(prefix)]
        if not owners and shared:
            return f"{shared[0]}.{name}"
        if len(owners) != 1:
            raise ValueError(f"cannot tell the API group of {class_name}: {owners or 'none'};"
                             " add it to SHARED_BLOCKS")
        return f"{owners[0]}.{name}"


def _root_class(client, rt: ResourceType) -> type:
    version = rt.version.capitalize()
    group = "".join(w.capitalize() for w in re.split(r"[.-]", rt.group or "core")[:1])
    for name in (f"{version}{rt.kind}", f"{group}{version}{rt.kind}"):
        cls = getattr(client, name, None)
        if _is_model(cls):
            return cls
    raise LookupError(f"no client model for {rt.api_version} {rt.kind}")


def _flat_types(annotation: Any) -> set[Any]:
    """The plain types a pydantic annotation admits, through Optional/Union/Annotated."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _flat_types(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return {t for arg in typing.get_args(annotation) for t in _flat_types(arg)}
    return {origin or annotation}


def _is_int_or_string(cls: type, attr: str, short: str, json_name: str) -> bool:
    if json_name in INT_OR_STRING_FIELDS.get(short, ()):
        return True
    field = getattr(cls, "model_fields", {}).get(attr)
    return field is not None and {int, str} <= _flat_types(field.annotation)


def _is_quantity(cls: type, attr: str, short: str, json_name: str) -> bool:
    if json_name in QUANTITY_FIELDS.get(short, ()):
        return True
    field = getattr(cls, "model_fields", {}).get(attr)
    description = getattr(field, "description", None) or ""
    return re.search(r"\bquantity\b", description, re.IGNORECASE) is not None


class Builder:
    """Walks the models reachable from the registry's kinds into the schema.json table."""

    def __init__(self, client):
        self.client = client
        self.namer = Namer(client)
        self.types: dict[str, dict[str, Any]] = {}
        self._class_of: dict[str, str] = {}

    def add(self, cls: type) -> str:
        name = self.namer.definition(cls.__name__)
        if self._class_of.setdefault(name, cls.__name__) != cls.__name__:
            raise ValueError(f"{cls.__name__} and {self._class_of[name]} both map to {name}")
        if name in self.types:
            return name
        short = name.rsplit(".", 1)[1]
        fields: dict[str, Any] = {}
        self.types[name] = {"fields": fields}
        for attr, type_string in cls.openapi_types.items():
            json_name = cls.attribute_map[attr]
            fields[json_name] = self._spec(cls, attr, short, json_name, type_string.strip())
        return name

    def _spec(self, cls: type, attr: str, short: str, json_name: str, t: str) -> Any:
        m = _LIST_RE.match(t)
        if m:
            return {"list": self._spec(cls, attr, short, json_name, m["item"].strip())}
        m = _MAP_RE.match(t)
        if m:
            return {"map": self._spec(cls, attr, short, json_name, (m["a"] or m["b"]).strip())}
        if t == "str" and _is_quantity(cls, attr, short, json_name):
            return "quantity"
        if t == "object" and _is_int_or_string(cls, attr, short, json_name):
            return "int-or-string"
        if t in _LEAVES:
            return _LEAVES[t]
        model = getattr(self.client, t, None)
        if not _is_model(model):
            raise ValueError(f"{cls.__name__}.{attr}: unknown client type {t!r}")
        return self.add(model)


def build_schema() -> dict[str, Any]:
    client = _client()
    import kubernetes

    builder = Builder(client)
    kinds = {f"{rt.api_version}/{rt.kind}": builder.add(_root_class(client, rt))
             for rt in REGISTRY}
    return {
        "generator": {"kubernetes-client": kubernetes.__version__,
                      "script": "tools/gen_schema.py"},
        "kinds": kinds,
        "types": builder.types,
    }


def render(schema: dict[str, Any]) -> str:
    """Sorted keys, one type per line: stable bytes and diffs that name the changed type."""
    lines = ["{"]
    lines.append(f' "generator": {json.dumps(schema["generator"], sort_keys=True)},')
    lines.append(f' "kinds": {json.dumps(schema["kinds"], sort_keys=True, indent=1)},'
                 .replace("\n", "\n "))
    lines.append(' "types": {')
    entries = sorted(schema["types"].items())
    for i, (name, body) in enumerate(entries):
        comma = "," if i < len(entries) - 1 else ""
        lines.append(f"  {json.dumps(name)}: {json.dumps(body, sort_keys=True)}{comma}")
    lines.append(" }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the file differs from what would be generated")
    args = parser.parse_args(argv)
    text = render(build_schema())
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date; run tools/gen_schema.py", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text)
    print(f"wrote {args.output} ({len(text.encode())} bytes)")
    return 0


__all__ = ["build_schema", "render", "main", "Namer", "Builder"]

if __name__ == "__main__":
    sys.exit(main())
