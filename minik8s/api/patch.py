"""PATCH bodies in the three flavours Kubernetes clients send, plus the patch `kubectl apply`
computes.

JSON merge patch and JSON patch are generic, but strategic merge patch is not: whether a list
is merged element by element (and by which key) or replaced whole is metadata Kubernetes keeps
in Go struct tags, which plain dicts do not carry. The ``_KINDS`` table below is that metadata
for the kinds minik8s serves, so that `kubectl apply`, `kubectl patch` and controllers that
PATCH status get the same result here as against a real API server. Everything is pure and
copies its inputs: the caller's objects (often straight out of a cache) are never mutated.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from minik8s.api.errors import BadRequest, Invalid

__all__ = [
    "apply_merge_patch",
    "create_merge_patch",
    "apply_json_patch",
    "apply_strategic_merge_patch",
    "create_three_way_patch",
]

_PATCH = "$patch"
_RETAIN_KEYS = "$retainKeys"
_ORDER_PREFIX = "$setElementOrder/"
_DELETE_PREFIX = "$deleteFromPrimitiveList/"
_MISSING = object()


# ---------------------------------------------------------------------------------------------
# JSON values
# ---------------------------------------------------------------------------------------------

def _json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON sees it: ``true`` is not ``1``, but ``1`` is ``1.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _identity(value: Any) -> tuple[str, Any]:
    """A hashable stand-in for a JSON value that agrees with ``_json_equal``."""
    if value is None or isinstance(value, bool):
        return ("literal", value)
    if isinstance(value, float) and value.is_integer():
        return ("number", int(value))
    if isinstance(value, (int, float)):
        return ("number", value)
    if isinstance(value, str):
        return ("string", value)
    return ("json", json.dumps(value, sort_keys=True, default=str))


def _dedupe(values: list[Any]) -> list[Any]:
    seen: set[tuple[str, Any]] = set()
    out = []
    for value in values:
        ident = _identity(value)
        if ident not in seen:
            seen.add(ident)
            out.append(value)
    return out


# ---------------------------------------------------------------------------------------------
# RFC 7386 JSON merge patch
# ---------------------------------------------------------------------------------------------

def apply_merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 merge patch: objects merge, ``null`` deletes, anything else replaces."""
    return _merge_patch(copy.deepcopy(target), patch)


def _merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = target if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


def create_merge_patch(original: dict | None, modified: dict) -> dict:
    """The RFC 7386 patch that turns ``original`` into ``modified``.

    A ``null`` inside ``modified`` cannot be expressed (merge patch reads it as "delete")."""
    if not isinstance(modified, dict):
        raise BadRequest("merge patch: the modified object must be a JSON object")
    return _merge_diff(original if isinstance(original, dict) else {}, modified)


def _merge_diff(original: dict, modified: dict) -> dict:
    patch: dict[str, Any] = {key: None for key in original if key not in modified}
    for key, new in modified.items():
        old = original.get(key, _MISSING)
        if isinstance(old, dict) and isinstance(new, dict):
            sub = _merge_diff(old, new)
            if sub:
                patch[key] = sub
        elif old is _MISSING or not _json_equal(old, new):
            patch[key] = copy.deepcopy(new)
    return patch


# ---------------------------------------------------------------------------------------------
# RFC 6902 JSON patch
# ---------------------------------------------------------------------------------------------

def apply_json_patch(target: Any, ops: list) -> Any:
    """Apply an RFC 6902 patch; the whole patch fails if any operation does."""
    if not isinstance(ops, list):
        raise BadRequest("json patch: the patch must be a JSON array of operations")
    doc = copy.deepcopy(target)
    for index, op in enumerate(ops):
        if not isinstance(op, dict):
            raise BadRequest(f"json patch: operation {index} is not a JSON object")
        name = op.get("op")
        if "op" not in op:
            raise BadRequest(f"json patch: operation {index} has no 'op'")
        handler = _JSON_PATCH_OPS.get(name) if isinstance(name, str) else None
        if handler is None:
            raise BadRequest(f"json patch: op {name!r} is not supported")
        doc = handler(doc, _Op(op, index))
    return doc


@dataclass(frozen=True)
class _Op:
    raw: dict
    index: int

    @property
    def name(self) -> str:
        return self.raw["op"]

    def fail(self, message: str) -> Invalid:
        return Invalid(f"json patch: operation {self.index} ({self.name}): {message}")

    def value(self) -> Any:
        if "value" not in self.raw:
            raise self.fail("missing 'value'")
        return copy.deepcopy(self.raw["value"])

    def pointer(self, member: str = "path") -> list[str]:
        if member not in self.raw:
            raise self.fail(f"missing {member!r}")
        pointer = self.raw[member]
        if not isinstance(pointer, str):
            raise self.fail(f"{member!r} must be a string, not {pointer!r}")
        return _parse_pointer(pointer, self)


def _parse_pointer(pointer: str, op: _Op) -> list[str]:
    """RFC 6901: '/'-separated tokens; ``~1`` is '/' and ``~0`` is '~' (decoded in that order)."""
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise op.fail(f"JSON pointer {pointer!r} must be empty or start with '/'")
    tokens = pointer[1:].split("/")
    for token in tokens:
        rest = token.replace("~0", "").replace("~1", "")
        if "~" in rest:
            raise op.fail(f"JSON pointer {pointer!r} has an invalid '~' escape")
    return [t.replace("~1", "/").replace("~0", "~") for t in tokens]


def _pointer_text(tokens: list[str]) -> str:
    return "".join("/" + t.replace("~", "~0").replace("/", "~1") for t in tokens)


def _array_index(token: str, upper: int, tokens: list[str], op: _Op) -> int:
    """An array index token: decimal digits, no leading zero, at most ``upper``."""
    if not token.isdigit() or not token.isascii() or (len(token) > 1 and token[0] == "0"):
        raise op.fail(f"path {_pointer_text(tokens)!r}: {token!r} is not a valid array index")
    index = int(token)
    if index > upper:
        raise op.fail(f"path {_pointer_text(tokens)!r}: index {index} is out of bounds")
    return index


def _resolve(doc: Any, tokens: list[str], op: _Op) -> Any:
    node = doc
    for depth, token in enumerate(tokens):
        here = tokens[:depth + 1]
        if isinstance(node, dict):
            if token not in node:
                raise op.fail(f"path {_pointer_text(here)!r} does not exist")
            node = node[token]
        elif isinstance(node, list):
            node = node[_array_index(token, len(node) - 1, here, op)]
        else:
            raise op.fail(f"path {_pointer_text(here)!r} does not exist "
                          f"({_pointer_text(tokens[:depth]) or 'the document'} is a scalar)")
    return node


def _container(doc: Any, tokens: list[str], op: _Op) -> Any:
    parent = _resolve(doc, tokens[:-1], op)
    if not isinstance(parent, (dict, list)):
        raise op.fail(f"path {_pointer_text(tokens)!r}: parent is not an object or array")
    return parent


def _add(doc: Any, tokens: list[str], value: Any, op: _Op) -> Any:
    if not tokens:
        return value
    parent, last = _container(doc, tokens, op), tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif last == "-":
        parent.append(value)
    else:
        parent.insert(_array_index(last, len(parent), tokens, op), value)
    return doc


def _remove(doc: Any, tokens: list[str], op: _Op) -> Any:
    """Remove the value at ``tokens`` and return it (the document is changed in place)."""
    if not tokens:
        raise op.fail("cannot remove the whole document")
    parent, last = _container(doc, tokens, op), tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise op.fail(f"path {_pointer_text(tokens)!r} does not exist")
        return parent.pop(last)
    return parent.pop(_array_index(last, len(parent) - 1, tokens, op))


def _op_add(doc: Any, op: _Op) -> Any:
    return _add(doc, op.pointer(), op.value(), op)


def _op_remove(doc: Any, op: _Op) -> Any:
    _remove(doc, op.pointer(), op)
    return doc


def _op_replace(doc: Any, op: _Op) -> Any:
    tokens, value = op.pointer(), op.value()
    if not tokens:
        return value
    _resolve(doc, tokens, op)  # the target must exist
    parent, last = _container(doc, tokens, op), tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    else:
        parent[_array_index(last, len(parent) - 1, tokens, op)] = value
    return doc


def _op_move(doc: Any, op: _Op) -> Any:
    source, target = op.pointer("from"), op.pointer()
    if target[:len(source)] == source and len(target) > len(source):
        raise op.fail(f"cannot move {_pointer_text(source)!r} into its own child "
                      f"{_pointer_text(target)!r}")
    if source == target:
        _resolve(doc, source, op)
        return doc
    return _add(doc, target, _remove(doc, source, op), op)


def _op_copy(doc: Any, op: _Op) -> Any:
    value = copy.deepcopy(_resolve(doc, op.pointer("from"), op))
    return _add(doc, op.pointer(), value, op)


def _op_test(doc: Any, op: _Op) -> Any:
    tokens, expected = op.pointer(), op.value()
    actual = _resolve(doc, tokens, op)
    if not _json_equal(actual, expected):
        raise op.fail(f"test failed: value at {_pointer_text(tokens)!r} is {actual!r}, "
                      f"not {expected!r}")
    return doc


_JSON_PATCH_OPS: dict[str, Callable[[Any, _Op], Any]] = {
    "add": _op_add, "remove": _op_remove, "replace": _op_replace,
    "move": _op_move, "copy": _op_copy, "test": _op_test,
}


# ---------------------------------------------------------------------------------------------
# Strategic merge patch: the per-kind patch metadata
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Field:
    """How one field patches: what Kubernetes says with ``patchStrategy``/``patchMergeKey``.

    ``schema`` describes the field's value (or each element, for a list). A list with neither
    ``merge_key`` nor ``primitive_set`` is atomic: a patch replaces it whole."""

    schema: Mapping[str, "_Field"] = field(default_factory=dict)
    merge_key: str | None = None
    primitive_set: bool = False
    retain_keys: bool = False

    @property
    def merges_list(self) -> bool:
        return self.merge_key is not None or self.primitive_set


_ANY = _Field()


def _struct(retain_keys: bool = False, **fields: _Field) -> _Field:
    return _Field(schema=fields, retain_keys=retain_keys)


def _keyed(merge_key: str, retain_keys: bool = False, **fields: _Field) -> _Field:
    return _Field(schema=fields, merge_key=merge_key, retain_keys=retain_keys)


_SET = _Field(primitive_set=True)
_CONDITIONS = _keyed("type")
_META = _struct(finalizers=_SET, ownerReferences=_keyed("uid"))
_CONTAINER = {
    "ports": _keyed("containerPort"),
    "env": _keyed("name"),
    "volumeMounts": _keyed("mountPath"),
    "volumeDevices": _keyed("devicePath"),
}
_POD_SPEC = _struct(
    containers=_keyed("name", **_CONTAINER),
    initContainers=_keyed("name", **_CONTAINER),
    ephemeralContainers=_keyed("name", **_CONTAINER),
    volumes=_keyed("name", retain_keys=True),
    imagePullSecrets=_keyed("name"),
    hostAliases=_keyed("ip"),
    topologySpreadConstraints=_keyed("topologyKey"),
    resourceClaims=_keyed("name", retain_keys=True),
    schedulingGates=_keyed("name"),
)
_POD_TEMPLATE = _struct(metadata=_META, spec=_POD_SPEC)
_WITH_CONDITIONS = _struct(conditions=_CONDITIONS)


def _kind(**fields: _Field) -> Mapping[str, _Field]:
    return {"metadata": _META, **fields}


def _workload(**spec: _Field) -> Mapping[str, _Field]:
    return _kind(spec=_struct(template=_POD_TEMPLATE, **spec), status=_WITH_CONDITIONS)


_KINDS: dict[str, Mapping[str, _Field]] = {
    "Pod": _kind(spec=_POD_SPEC, status=_struct(
        conditions=_CONDITIONS, podIPs=_keyed("ip"), hostIPs=_keyed("ip"),
        resourceClaimStatuses=_keyed("name", retain_keys=True))),
    "PodTemplate": _kind(template=_POD_TEMPLATE),
    "ReplicationController": _workload(),
    "ReplicaSet": _workload(),
    "Deployment": _workload(strategy=_struct(retain_keys=True)),
    "StatefulSet": _workload(),
    "DaemonSet": _workload(),
    "Job": _workload(),
    "CronJob": _kind(spec=_struct(jobTemplate=_struct(
        metadata=_META, spec=_struct(template=_POD_TEMPLATE)))),
    "Service": _kind(spec=_struct(ports=_keyed("port")), status=_WITH_CONDITIONS),
    "Node": _kind(spec=_struct(podCIDRs=_SET),
                  status=_struct(conditions=_CONDITIONS, addresses=_keyed("type"))),
    "Namespace": _kind(status=_WITH_CONDITIONS),
    "PersistentVolumeClaim": _kind(status=_WITH_CONDITIONS),
    "HorizontalPodAutoscaler": _kind(status=_WITH_CONDITIONS),
}
_DEFAULT_KIND = _kind()


def _schema_for(kind: str) -> Mapping[str, _Field]:
    return _KINDS.get(kind, _DEFAULT_KIND)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _smp_error(cls: type, path: str, message: str) -> Exception:
    return cls(f"strategic merge patch: {path or 'the object'}: {message}")


# ---------------------------------------------------------------------------------------------
# Strategic merge patch: applying
# ---------------------------------------------------------------------------------------------

def apply_strategic_merge_patch(target: dict, patch: dict, kind: str) -> dict:
    """Apply a strategic merge patch to an object of the given Kind."""
    if not isinstance(patch, dict):
        raise BadRequest("strategic merge patch: the patch must be a JSON object")
    if not isinstance(target, dict):
        raise BadRequest("strategic merge patch: the target must be a JSON object")
    return _merge_map(copy.deepcopy(target), copy.deepcopy(patch), _schema_for(kind), "")


def _merge_map(original: dict, patch: dict, schema: Mapping[str, _Field], path: str) -> dict:
    """Merge ``patch`` into ``original``; both are private copies and may be changed."""
    directive = patch.pop(_PATCH, "merge")
    if directive == "replace":
        return _merge_map({}, patch, schema, path)
    if directive == "delete":
        return {}
    if directive != "merge":
        raise _smp_error(BadRequest, path, f"unknown $patch directive {directive!r} in a map")
    _apply_retain_keys(original, patch, path)
    orders, deletions, fields = _split_directives(patch, path)
    for key, value in fields.items():
        spec = schema.get(key, _ANY)
        _merge_field(original, key, value, spec, orders.pop(key, None), _join(path, key))
    for key, order in orders.items():
        _reorder_only(original, key, order, schema.get(key, _ANY), _join(path, key))
    for key, values in deletions.items():
        if isinstance(original.get(key), list):
            doomed = {_identity(v) for v in values}
            original[key] = [v for v in original[key] if _identity(v) not in doomed]
    return original


def _apply_retain_keys(original: dict, patch: dict, path: str) -> None:
    """``$retainKeys``: clear every key of ``original`` the list does not name."""
    if _RETAIN_KEYS not in patch:
        return
    keys = patch.pop(_RETAIN_KEYS)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise _smp_error(BadRequest, path, "$retainKeys must be a list of field names")
    retained = set(keys)
    for key, value in patch.items():
        if value is None or key.startswith((_ORDER_PREFIX, _DELETE_PREFIX)):
            continue
        if key not in retained:
            raise _smp_error(Invalid, path, f"field {key!r} is in the patch but not in $retainKeys")
    for key in [k for k in original if k not in retained]:
        del original[key]


def _split_directives(patch: dict, path: str) -> tuple[dict, dict, dict]:
    """Separate ``$setElementOrder/x`` and ``$deleteFromPrimitiveList/x`` from plain fields."""
    orders: dict[str, list] = {}
    deletions: dict[str, list] = {}
    fields: dict[str, Any] = {}
    for key, value in patch.items():
        for prefix, bucket in ((_ORDER_PREFIX, orders), (_DELETE_PREFIX, deletions)):
            if key.startswith(prefix):
                name = key[len(prefix):]
                if not name or not isinstance(value, list):
                    raise _smp_error(BadRequest, path, f"{key!r} must name a field and be a list")
                bucket[name] = value
                break
        else:
            fields[key] = value
    return orders, deletions, fields


def _merge_field(original: dict, key: str, value: Any, spec: _Field,
                 order: list | None, path: str) -> None:
    if value is None:
        original.pop(key, None)
        return
    current = original.get(key)
    if isinstance(value, dict):
        base = current if isinstance(current, dict) else {}
        original[key] = _merge_map(base, value, spec.schema, path)
    elif isinstance(value, list) and spec.merges_list:
        base = current if isinstance(current, list) else []
        original[key] = _merge_list(base, value, spec, order, path)
    else:
        original[key] = value


def _merge_list(original: list, patch: list, spec: _Field, order: list | None,
                path: str) -> list:
    if spec.merge_key is not None:
        merged, plain, replaced = _merge_keyed_list(original, patch, spec, path)
    else:
        merged, plain, replaced = _merge_primitive_list(original, patch, path)
    if replaced:
        return merged
    ident = _list_identity(spec)
    if order is None:
        order_ids = [ident(item) for item in plain]
    else:
        order_ids = _order_ids(order, spec, path)
        _check_subsequence([ident(item) for item in plain], order_ids, path)
    return _ordered(merged, original, order_ids, ident)


def _merge_keyed_list(original: list, patch: list, spec: _Field,
                      path: str) -> tuple[list, list, bool]:
    """Merge list elements by ``spec.merge_key``; returns (merged, plain patch items, replaced)."""
    key = spec.merge_key
    plain, doomed, replaced = [], set(), False
    for index, item in enumerate(patch):
        where = f"{path}[{index}]"
        if not isinstance(item, dict):
            raise _smp_error(Invalid, where, f"expected an object with merge key {key!r}")
        directive = item.get(_PATCH, "merge")
        if directive == "delete":
            if key not in item:
                raise _smp_error(Invalid, where, f"$patch: delete needs the merge key {key!r}")
            doomed.add(_identity(item[key]))
        elif directive == "replace":
            replaced = True
        elif directive != "merge":
            raise _smp_error(BadRequest, where, f"unknown $patch directive {directive!r} in a list")
        elif item != {_PATCH: "merge"}:  # a lone {"$patch": "merge"} only restates the default
            if key not in item:
                raise _smp_error(Invalid, where, f"element has no merge key {key!r}")
            plain.append(item)
    if replaced:
        fresh = [_merge_map({}, item, spec.schema, path) for item in plain]
        return fresh, plain, True
    ident = _list_identity(spec)
    merged = [item for item in original if ident(item)[1] not in doomed]
    for item in plain:
        where = f"{path}[{key}={item[key]}]"
        position = next((i for i, old in enumerate(merged) if ident(old) == ident(item)), None)
        if position is None:
            merged.append(_merge_map({}, item, spec.schema, where))
        else:
            merged[position] = _merge_map(merged[position], item, spec.schema, where)
    return merged, plain, False


def _merge_primitive_list(original: list, patch: list, path: str) -> tuple[list, list, bool]:
    """A set of scalars: the union, keeping the first occurrence of each value."""
    plain, replaced = [], False
    for index, item in enumerate(patch):
        if isinstance(item, dict) and item.get(_PATCH) == "replace" and len(item) == 1:
            replaced = True
        elif isinstance(item, (dict, list)):
            raise _smp_error(Invalid, f"{path}[{index}]", "expected a scalar in a list of scalars")
        else:
            plain.append(item)
    if replaced:
        return _dedupe(plain), plain, True
    return _dedupe(original + plain), plain, False


def _list_identity(spec: _Field) -> Callable[[Any], tuple]:
    if spec.merge_key is None:
        return lambda item: ("value", _identity(item))
    key = spec.merge_key
    return lambda item: ("key", _identity(item.get(key)) if isinstance(item, dict)
                         else ("element", id(item)))


def _order_ids(order: list, spec: _Field, path: str) -> list[tuple]:
    key = spec.merge_key
    if key is not None and not all(isinstance(o, dict) and key in o for o in order):
        raise _smp_error(BadRequest, path,
                         f"$setElementOrder entries must be objects holding the merge key {key!r}")
    ident = _list_identity(spec)
    return [ident(item) for item in order]


def _check_subsequence(patch_ids: list, order_ids: list, path: str) -> None:
    """The patch list must follow ``$setElementOrder`` (kubectl always sends it that way)."""
    remaining = iter(order_ids)
    if not all(any(ident == o for o in remaining) for ident in patch_ids):
        raise _smp_error(BadRequest, path, "the order of the patch list does not match "
                                           "its $setElementOrder list")


def _ordered(merged: list, server: list, order_ids: list, ident: Callable) -> list:
    """Order ``merged``: items the patch names follow the patch order; the rest (server-only
    items) keep their relative live order and are interleaved where the live list had them."""
    wanted = {}
    for position, item_id in enumerate(order_ids):
        wanted.setdefault(item_id, position)
    live = {}
    for position, item in enumerate(server):
        live.setdefault(ident(item), position)
    named = sorted((i for i in merged if ident(i) in wanted), key=lambda i: wanted[ident(i)])
    others = sorted((i for i in merged if ident(i) not in wanted),
                    key=lambda i: live.get(ident(i), len(server)))
    out, n, o = [], 0, 0
    while n < len(named) and o < len(others):
        left, right = live.get(ident(others[o])), live.get(ident(named[n]))
        if left is not None and right is not None and left < right:
            out.append(others[o])
            o += 1
        else:
            out.append(named[n])
            n += 1
    return out + named[n:] + others[o:]


def _reorder_only(original: dict, key: str, order: list, spec: _Field, path: str) -> None:
    """``$setElementOrder/x`` without ``x`` in the patch: only the live list's order changes."""
    current = original.get(key)
    if not isinstance(current, list) or not spec.merges_list:
        return
    ident = _list_identity(spec)
    original[key] = _ordered(current, current, _order_ids(order, spec, path), ident)


# ---------------------------------------------------------------------------------------------
# Strategic merge patch: the three-way patch of `kubectl apply`
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _DiffMode:
    ignore_deletions: bool = False
    ignore_changes: bool = False
    retain_keys: bool = False


def create_three_way_patch(original: dict | None, modified: dict, current: dict,
                           kind: str) -> dict:
    """The strategic merge patch `kubectl apply` sends.

    Additions and changes come from ``current`` -> ``modified``; deletions only from
    ``original`` (the last-applied configuration) -> ``modified``, so fields other actors set
    on the live object are left alone."""
    if not isinstance(modified, dict) or not isinstance(current, dict):
        raise BadRequest("three-way patch: modified and current must be JSON objects")
    if original is not None and not isinstance(original, dict):
        raise BadRequest("three-way patch: original must be a JSON object or None")
    schema = _schema_for(kind)
    changes = _diff_maps(current, modified, schema, _DiffMode(ignore_deletions=True))
    deletions = _diff_maps(original or {}, modified, schema, _DiffMode(ignore_changes=True))
    return _combine_patches(deletions, changes, schema)


def _diff_maps(old: dict, new: dict, schema: Mapping[str, _Field], mode: _DiffMode) -> dict:
    patch: dict[str, Any] = {}
    for key, new_value in new.items():
        spec = schema.get(key, _ANY)
        if key not in old:
            if not mode.ignore_changes:
                patch[key] = copy.deepcopy(new_value)
            continue
        old_value = old[key]
        if isinstance(old_value, dict) and isinstance(new_value, dict):
            sub = _diff_maps(old_value, new_value, spec.schema,
                             replace(mode, retain_keys=spec.retain_keys))
            if sub:
                patch[key] = sub
        elif isinstance(old_value, list) and isinstance(new_value, list) and spec.merges_list:
            patch.update(_diff_lists(key, old_value, new_value, spec, mode))
        elif not mode.ignore_changes and not _json_equal(old_value, new_value):
            patch[key] = copy.deepcopy(new_value)
    if not mode.ignore_deletions:
        patch.update({key: None for key in old if key not in new})
    if mode.retain_keys:
        retained = sorted(k for k, v in new.items() if v is not None)
        dropped = any(v is not None and k not in new for k, v in old.items())
        if retained and (patch or dropped):
            patch[_RETAIN_KEYS] = retained
    return patch


def _diff_lists(key: str, old: list, new: list, spec: _Field, mode: _DiffMode) -> dict:
    if spec.merge_key is not None:
        return _diff_keyed_lists(key, old, new, spec, mode)
    return _diff_primitive_lists(key, old, new, mode)


def _require_merge_key(items: list, key: str, path: str) -> None:
    for index, item in enumerate(items):
        if not isinstance(item, dict) or key not in item:
            raise _smp_error(Invalid, f"{path}[{index}]", f"element has no merge key {key!r}")


def _diff_keyed_lists(key: str, old: list, new: list, spec: _Field, mode: _DiffMode) -> dict:
    merge_key = spec.merge_key
    _require_merge_key(old, merge_key, key)
    _require_merge_key(new, merge_key, key)
    old_by_id = {}
    for item in old:
        old_by_id.setdefault(_identity(item[merge_key]), item)
    new_ids = {_identity(item[merge_key]) for item in new}
    element_mode = replace(mode, retain_keys=spec.retain_keys)
    items: list[dict] = []
    for item in new:
        before = old_by_id.get(_identity(item[merge_key]))
        if before is None:
            if not mode.ignore_changes:
                items.append(copy.deepcopy(item))
            continue
        sub = _diff_maps(before, item, spec.schema, element_mode)
        if sub:
            items.append({merge_key: item[merge_key], **sub})
    if not mode.ignore_deletions:
        items += [{merge_key: old_by_id[i][merge_key], _PATCH: "delete"}
                  for i in old_by_id if i not in new_ids]
    out: dict[str, Any] = {key: items} if items else {}
    same_order = [_identity(i[merge_key]) for i in old] == [_identity(i[merge_key]) for i in new]
    if items or (not mode.ignore_changes and not same_order):
        out[_ORDER_PREFIX + key] = [{merge_key: copy.deepcopy(i[merge_key])} for i in new]
    return out


def _diff_primitive_lists(key: str, old: list, new: list, mode: _DiffMode) -> dict:
    old_ids = {_identity(v) for v in old}
    new_ids = {_identity(v) for v in new}
    added = [] if mode.ignore_changes else _dedupe([v for v in new if _identity(v) not in old_ids])
    removed = [] if mode.ignore_deletions else _dedupe(
        [v for v in old if _identity(v) not in new_ids])
    out: dict[str, Any] = {}
    if added:
        out[key] = copy.deepcopy(added)
    if removed:
        out[_DELETE_PREFIX + key] = copy.deepcopy(removed)
    if removed or (not mode.ignore_changes and not _json_equal(old, new)):
        out[_ORDER_PREFIX + key] = copy.deepcopy(new)
    return out


def _combine_patches(base: dict, extra: dict, schema: Mapping[str, _Field]) -> dict:
    """Union of two patches that touch disjoint things (deletions and changes)."""
    out = dict(base)
    for key, value in extra.items():
        mine = out.get(key, _MISSING)
        spec = schema.get(key, _ANY)
        if isinstance(mine, dict) and isinstance(value, dict):
            out[key] = _combine_patches(mine, value, spec.schema)
        elif isinstance(mine, list) and isinstance(value, list) and spec.merge_key is not None:
            out[key] = _combine_keyed(mine, value, spec)
        elif isinstance(mine, list) and isinstance(value, list) and not key.startswith("$"):
            out[key] = _dedupe(mine + value)
        else:
            out[key] = value
    for key, value in list(out.items()):
        spec = schema.get(key, _ANY)
        order = out.get(_ORDER_PREFIX + key)
        if spec.merge_key is not None and isinstance(value, list) and isinstance(order, list):
            out[key] = _follow_order(value, order, spec.merge_key)
    return out


def _combine_keyed(first: list, second: list, spec: _Field) -> list:
    by_id: dict[tuple, dict] = {}
    for item in first + second:
        item_id = _identity(item.get(spec.merge_key))
        earlier = by_id.get(item_id)
        if earlier is not None and _PATCH not in earlier and _PATCH not in item:
            by_id[item_id] = _combine_patches(earlier, item, spec.schema)
        else:
            by_id[item_id] = item
    return list(by_id.values())


def _follow_order(items: list, order: list, merge_key: str) -> list:
    """Patch elements in ``$setElementOrder`` order, ``$patch: delete`` elements last."""
    rank = {}
    for position, entry in enumerate(order):
        if isinstance(entry, dict):
            rank.setdefault(_identity(entry.get(merge_key)), position)

    def sort_key(item: dict) -> tuple[int, int]:
        if item.get(_PATCH) == "delete":
            return (1, 0)
        return (0, rank.get(_identity(item.get(merge_key)), len(order)))

    return sorted(items, key=sort_key)
