"""Field-level knowledge of the Kubernetes types, for ``fieldValidation`` and OpenAPI.

Objects stay plain dicts everywhere else; only at the API server's door does anything need to
know which fields a kind has. kubectl 1.32 validates through the server
(``fieldValidation=Strict``), so a typo such as ``imagee`` must come back as
``unknown field "spec.containers[0].imagee"`` instead of being silently dropped. The table
comes from ``schema.json``, which ``tools/gen_schema.py`` distils from the official client's
models; reading a JSON file keeps the client a test dependency only. It is loaded once, on
first use, because most processes importing ``minik8s.api`` never validate anything.

Issues carry a ``reason``: ``unknown`` fields and ``duplicate`` keys are what
``fieldValidation`` governs (Strict fails, Warn warns, Ignore drops); a ``type`` mismatch is a
decoding error that Kubernetes rejects with 400 whatever ``fieldValidation`` says.
"""

from __future__ import annotations

import base64
import binascii
import copy
import functools
import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

SCHEMA_RESOURCE = "schema.json"
_REF_PREFIX = "#/components/schemas/"

LEAF_TYPES = frozenset({"string", "integer", "number", "boolean", "date-time", "bytes",
                        "quantity", "int-or-string", "object"})

# resource.Quantity's grammar: a signed decimal, then an exponent or one SI/binary suffix.
_QUANTITY_RE = re.compile(
    r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
_QUANTITY_MESSAGE = ("quantities must match the regular expression "
                     "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
# metav1.Time and MicroTime decode with Go's time.RFC3339 layout.
_RFC3339_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$")


@dataclass(frozen=True)
class FieldIssue:
    """One problem with one field. ``path`` is Kubernetes-style (``.spec.replicas``)."""

    path: str
    message: str
    reason: str = "unknown"  # "unknown" | "duplicate" | "type"

    @property
    def field(self) -> str:
        """The path without its leading dot, as Kubernetes prints it in messages."""
        return self.path[1:] if self.path.startswith(".") else self.path


# --------------------------------------------------------------------------- the table


@functools.cache
def _schema() -> dict[str, Any]:
    text = resources.files(__package__).joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    return json.loads(text)


def _types() -> dict[str, dict[str, Any]]:
    return _schema()["types"]


def _root_type(api_version: str, kind: str) -> str | None:
    return _schema()["kinds"].get(f"{api_version}/{kind}")


def known_kinds() -> list[tuple[str, str]]:
    """The ``(apiVersion, kind)`` pairs the schema describes."""
    return [tuple(key.rsplit("/", 1)) for key in sorted(_schema()["kinds"])]  # type: ignore[misc]


# --------------------------------------------------------------------------- check_fields


def check_fields(api_version: str, kind: str, obj: Any, *,
                 prune: bool = False) -> list[FieldIssue]:
    """Unknown fields and mistyped values of ``obj``, in document order. With ``prune``,
    unknown fields are also removed from ``obj``, as Kubernetes' decoder drops them when
    validation is not strict.

    A kind the schema does not describe yields no issues: there is nothing to check it against.
    """
    root = _root_type(api_version, kind)
    if root is None:
        return []
    issues: list[FieldIssue] = []
    _check(root, obj, "", issues, prune)
    return issues


def _check(spec: Any, value: Any, path: str, out: list[FieldIssue], prune: bool) -> None:
    if value is None:  # JSON null decodes to the zero value of any Go field
        return
    if isinstance(spec, dict):
        if "list" in spec:
            _check_list(spec["list"], value, path, out, prune)
        else:
            _check_map(spec["map"], value, path, out, prune)
    elif spec in LEAF_TYPES:
        problem = _leaf_problem(spec, value)
        if problem:
            out.append(_type_issue(path, problem))
    else:
        _check_object(spec, value, path, out, prune)


def _check_object(type_name: str, value: Any, path: str, out: list[FieldIssue],
                  prune: bool) -> None:
    if not isinstance(value, dict):
        out.append(_type_issue(path, f"expected object, got {_json_type(value)}"))
        return
    fields = _types()[type_name]["fields"]
    unknown = []
    for key, item in value.items():
        child = f"{path}.{key}"
        spec = fields.get(key)
        if spec is None:
            out.append(FieldIssue(child, f'unknown field "{child[1:]}"', "unknown"))
            unknown.append(key)
        else:
            _check(spec, item, child, out, prune)
    if prune:
        for key in unknown:
            del value[key]


def _check_list(item_spec: Any, value: Any, path: str, out: list[FieldIssue],
                prune: bool) -> None:
    if not isinstance(value, list):
        out.append(_type_issue(path, f"expected array, got {_json_type(value)}"))
        return
    for i, item in enumerate(value):
        _check(item_spec, item, f"{path}[{i}]", out, prune)


def _check_map(item_spec: Any, value: Any, path: str, out: list[FieldIssue],
               prune: bool) -> None:
    if not isinstance(value, dict):
        out.append(_type_issue(path, f"expected object, got {_json_type(value)}"))
        return
    for key, item in value.items():  # map entries are keyed like field.Path.Key does
        _check(item_spec, item, f"{path}[{key}]", out, prune)


def _type_issue(path: str, problem: str) -> FieldIssue:
    return FieldIssue(path, f"{path[1:]}: {problem}" if path else problem, "type")


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _is_integer(value: Any) -> bool:
    # An integral float (2.0) is accepted: YAML and some JSON encoders produce them for ints.
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _leaf_problem(leaf: str, value: Any) -> str | None:
    """Why ``value`` cannot decode into ``leaf``, or None if it can."""
    checker = _LEAF_CHECKS.get(leaf)
    return checker(value) if checker else None


def _expect(ok: bool, wanted: str, value: Any) -> str | None:
    return None if ok else f"expected {wanted}, got {_json_type(value)}"


def _check_quantity(value: Any) -> str | None:
    if _is_number(value):
        return None
    if not isinstance(value, str):
        return f"expected quantity (string or number), got {_json_type(value)}"
    return None if _QUANTITY_RE.match(value) else _QUANTITY_MESSAGE


def _check_date_time(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"expected date-time string, got {_json_type(value)}"
    return None if _RFC3339_RE.match(value) else f"expected an RFC 3339 date-time, got {value!r}"


def _check_bytes(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"expected base64 string, got {_json_type(value)}"
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return "illegal base64 data"
    return None


_LEAF_CHECKS = {
    "string": lambda v: _expect(isinstance(v, str), "string", v),
    "integer": lambda v: _expect(_is_integer(v), "integer", v),
    "number": lambda v: _expect(_is_number(v), "number", v),
    "boolean": lambda v: _expect(isinstance(v, bool), "boolean", v),
    "int-or-string": lambda v: _expect(isinstance(v, str) or _is_integer(v),
                                       "integer or string", v),
    "quantity": _check_quantity,
    "date-time": _check_date_time,
    "bytes": _check_bytes,
}


# --------------------------------------------------------------------------- duplicate keys


def json_loads_with_duplicates(raw: bytes | str) -> tuple[Any, list[str]]:
    """Decode JSON once and report duplicate keys (``duplicate field "metadata.name"``).

    Like Go's decoder, the last duplicate wins. Raises ``ValueError`` on malformed JSON.
    """
    dups: dict[int, tuple[dict, list[str]]] = {}

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)  # in C; the same dict as assigning each pair in turn
        if len(obj) == len(pairs):
            return obj
        seen: set[str] = set()
        repeated: list[str] = []
        for key, _ in pairs:
            if key in seen and key not in repeated:
                repeated.append(key)
            seen.add(key)
        dups[id(obj)] = (obj, repeated)  # holding obj keeps its id unique
        return obj

    doc = json.loads(raw, object_pairs_hook=hook)
    if not dups:
        return doc, []
    messages: list[str] = []
    _collect_json_duplicates(doc, "", dups, messages)
    return doc, messages


def find_duplicate_keys(raw: bytes | str) -> list[str]:
    """Messages for every duplicate key of a JSON body, with its path."""
    return json_loads_with_duplicates(raw)[1]


def _collect_json_duplicates(node: Any, path: str, dups: dict, out: list[str]) -> None:
    if isinstance(node, list):
        for i, item in enumerate(node):
            _collect_json_duplicates(item, f"{path}[{i}]", dups, out)
    elif isinstance(node, dict):
        repeated = dups.get(id(node), (None, ()))[1]
        for key, value in node.items():
            child = f"{path}.{key}" if path else key
            if key in repeated:
                out.append(duplicate_message(child))
            _collect_json_duplicates(value, child, dups, out)


def duplicate_message(field_path: str) -> str:
    return f'duplicate field "{field_path}"'


class DuplicateKeyLoader(yaml.CSafeLoader if hasattr(yaml, "CSafeLoader")
                         else yaml.SafeLoader):  # type: ignore[misc]
    """A safe loader that notes repeated mapping keys, with their paths, while loading.

    Duplicates are found on the composed node tree (where paths are known) before each
    document is constructed, so the caller gets the data and the report from one parse.
    """

    def load_all_checked(self) -> tuple[list[Any], list[str]]:
        docs: list[Any] = []
        messages: list[str] = []
        while self.check_node():
            node = self.get_node()
            _collect_yaml_duplicates(node, "", set(), messages)
            docs.append(self.construct_document(node))
        return docs, messages


def yaml_load_with_duplicates(text: str) -> tuple[list[Any], list[str]]:
    """All documents of a YAML stream, and duplicate-key messages for all of them."""
    loader = DuplicateKeyLoader(text)
    try:
        return loader.load_all_checked()
    finally:
        loader.dispose()


def find_duplicate_keys_yaml(text: str) -> list[str]:
    """Messages for every duplicate mapping key of a YAML body, with its path."""
    return yaml_load_with_duplicates(text)[1]


def _collect_yaml_duplicates(node: yaml.Node, path: str, seen: set[int],
                             out: list[str]) -> None:
    if id(node) in seen:  # an alias: already walked (and possibly recursive)
        return
    seen.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _collect_yaml_duplicates(item, f"{path}[{i}]", seen, out)
    elif isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = key_node.value
            child = f"{path}.{key}" if path else key
            if key in keys:
                out.append(duplicate_message(child))
            keys.add(key)
            _collect_yaml_duplicates(value_node, child, seen, out)


def strict_decoding_message(messages: list[str]) -> str:
    """The message of the 400 that ``fieldValidation=Strict`` answers with."""
    return "strict decoding error: " + ", ".join(messages)


# --------------------------------------------------------------------------- OpenAPI


_LEAF_OPENAPI: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "integer": {"type": "integer"},
    "number": {"type": "number"},
    "boolean": {"type": "boolean"},
    "date-time": {"type": "string", "format": "date-time"},
    "bytes": {"type": "string", "format": "byte"},
    "quantity": {"anyOf": [{"type": "number"}, {"type": "string"}], "format": "quantity"},
    "int-or-string": {"anyOf": [{"type": "integer"}, {"type": "string"}],
                      "x-kubernetes-int-or-string": True},
    "object": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
}


def _openapi(spec: Any) -> dict[str, Any]:
    if isinstance(spec, dict):
        if "list" in spec:
            return {"type": "array", "items": _openapi(spec["list"])}
        return {"type": "object", "additionalProperties": _openapi(spec["map"])}
    if spec in _LEAF_OPENAPI:
        return copy.deepcopy(_LEAF_OPENAPI[spec])
    return {"$ref": _REF_PREFIX + spec}


def _gvk_of_roots() -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for key, type_name in _schema()["kinds"].items():
        api_version, kind = key.rsplit("/", 1)
        group, _, version = api_version.rpartition("/")
        out.setdefault(type_name, []).append({"group": group, "kind": kind, "version": version})
    return out


@functools.cache
def _components() -> dict[str, dict[str, Any]]:
    roots = _gvk_of_roots()
    out: dict[str, dict[str, Any]] = {}
    for name, body in sorted(_types().items()):
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {f: _openapi(s) for f, s in sorted(body["fields"].items())},
        }
        if name in roots:
            schema["x-kubernetes-group-version-kind"] = roots[name]
        out[name] = schema
    return out


def component_schemas() -> dict[str, dict[str, Any]]:
    """Every named type as an OpenAPI v3 schema, for ``components.schemas`` (a fresh copy)."""
    return copy.deepcopy(_components())


def schema_for(api_version: str, kind: str) -> dict[str, Any] | None:
    """The OpenAPI v3 schema of a kind; nested types are ``$ref``s into component_schemas()."""
    root = _root_type(api_version, kind)
    return copy.deepcopy(_components()[root]) if root else None


def schema_name(api_version: str, kind: str) -> str | None:
    """The component name of a kind (``io.k8s.api.core.v1.Pod``), for a ``$ref``."""
    return _root_type(api_version, kind)


__all__ = [
    "FieldIssue", "check_fields", "known_kinds",
    "find_duplicate_keys", "json_loads_with_duplicates",
    "find_duplicate_keys_yaml", "yaml_load_with_duplicates", "DuplicateKeyLoader",
    "duplicate_message", "strict_decoding_message",
    "schema_for", "schema_name", "component_schemas", "LEAF_TYPES",
]
