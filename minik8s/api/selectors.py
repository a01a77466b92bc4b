"""Label and field selectors, parsed once and matched many times.

The API server filters lists and watches with them, controllers find the pods they own with
them, and the scheduler evaluates affinity with them; all of these must agree with what
``kubectl -l`` and ``--field-selector`` mean in Kubernetes, so the grammar, the matching
rules (``!=``/``notin`` also match objects without the label) and the error wording follow
``k8s.io/apimachinery/pkg/labels`` and ``pkg/fields``.

The label key/value syntax checks live here because a selector has to reject exactly what an
object may not carry as a label; ``validation`` reuses them for ``metadata.labels``.

Selector semantics for the two "empty" cases follow ``metav1.LabelSelectorAsSelector``: an
empty selector (``{}`` or ``""``) matches everything, a missing one (``None``) matches
nothing. A Service's plain ``spec.selector`` map goes through ``selector_from_set``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from minik8s.api.errors import BadRequest
from minik8s.api.registry import ResourceType

# --- label syntax -------------------------------------------------------------------------

_QUALIFIED_NAME_MAX = 63
_LABEL_VALUE_MAX = 63
_DNS1123_SUBDOMAIN_MAX = 253

_QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QUALIFIED_NAME_RE = re.compile(f"(?:{_QUALIFIED_NAME_FMT})\\Z")
_LABEL_VALUE_FMT = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"
_LABEL_VALUE_RE = re.compile(f"(?:{_LABEL_VALUE_FMT})\\Z")
_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = f"{_DNS1123_LABEL_FMT}(\\.{_DNS1123_LABEL_FMT})*"
_DNS1123_SUBDOMAIN_RE = re.compile(f"(?:{_DNS1123_SUBDOMAIN_FMT})\\Z")


def regex_error(message: str, fmt: str, *examples: str) -> str:
    """Kubernetes' wording for a value that fails a syntax regex (``validation.RegexError``)."""
    if examples:
        shown = ",  or ".join(f"'{e}'" for e in examples)
        message += f" (e.g. {shown}, regex used for validation is '{fmt}')"
    else:
        message += f" (regex used for validation is '{fmt}')"
    return message


def dns1123_subdomain_errors(value: str) -> list[str]:
    """Why ``value`` is not a lowercase RFC 1123 subdomain (empty when it is one)."""
    errs = []
    if len(value) > _DNS1123_SUBDOMAIN_MAX:
        errs.append(f"must be no more than {_DNS1123_SUBDOMAIN_MAX} characters")
    if not _DNS1123_SUBDOMAIN_RE.match(value):
        errs.append(regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
            "characters, '-' or '.', and must start and end with an alphanumeric character",
            _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def qualified_name_errors(value: str) -> list[str]:
    """Why ``value`` is not ``[prefix/]name`` as label keys and annotation keys must be."""
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
        errs: list[str] = []
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs = ["prefix part must be non-empty"]
        else:
            errs = [f"prefix part {e}" for e in dns1123_subdomain_errors(prefix)]
    else:
        return [regex_error(
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and "
            "must start and end with an alphanumeric character", _QUALIFIED_NAME_FMT,
            "MyName", "my.name", "123-abc") + " with an optional DNS subdomain prefix and "
            "'/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > _QUALIFIED_NAME_MAX:
        errs.append(f"name part must be no more than {_QUALIFIED_NAME_MAX} characters")
    if name and not _QUALIFIED_NAME_RE.match(name):
        errs.append(regex_error(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character", _QUALIFIED_NAME_FMT,
            "MyName", "my.name", "123-abc"))
    return errs


def label_key_errors(key: str) -> list[str]:
    return qualified_name_errors(key)


def label_value_errors(value: str) -> list[str]:
    errs = []
    if len(value) > _LABEL_VALUE_MAX:
        errs.append(f"must be no more than {_LABEL_VALUE_MAX} characters")
    if not _LABEL_VALUE_RE.match(value):
        errs.append(regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, "
            "'-', '_' or '.', and must start and end with an alphanumeric character",
            _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


# --- label selectors ----------------------------------------------------------------------

EQUALS, NOT_EQUALS, IN, NOT_IN, EXISTS, DOES_NOT_EXIST = "=", "!=", "in", "notin", "exists", "!"

# metav1.LabelSelectorRequirement operators -> ours.
_DICT_OPERATORS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}


def _bad(detail: str) -> BadRequest:
    return BadRequest(f"unable to parse requirement: {detail}")


def _quote(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Requirement:
    """One ``key op values`` term; ``values`` is sorted so equal requirements compare equal."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    @classmethod
    def new(cls, key: str, operator: str, values: Iterable[str] = ()) -> "Requirement":
        """A checked requirement; ``BadRequest`` for a bad key, value or value count."""
        values = list(values)
        if not isinstance(key, str) or not all(isinstance(v, str) for v in values):
            raise _bad(f"keys and values must be strings: {key!r} {values!r}")
        if operator not in (EQUALS, NOT_EQUALS, IN, NOT_IN, EXISTS, DOES_NOT_EXIST):
            raise _bad(f"operator: Unsupported value: {_quote(str(operator))}")
        for err in label_key_errors(key):
            raise _bad(f"key: Invalid value: {_quote(key)}: {err}")
        vals = tuple(sorted(set(values)))
        if operator in (EQUALS, NOT_EQUALS) and len(vals) != 1:
            raise _bad("exact-match compatibility requires one single value")
        if operator in (IN, NOT_IN) and not vals:
            raise _bad("for 'in', 'notin' operators, values set can't be empty")
        if operator in (EXISTS, DOES_NOT_EXIST) and vals:
            raise _bad("values set must be empty for exists and does not exist")
        for i, v in enumerate(vals):
            for err in label_value_errors(v):
                raise _bad(f"values[{i}][{key}]: Invalid value: {_quote(v)}: {err}")
        return cls(key, operator, vals)

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == EXISTS:
            return present
        if self.operator == DOES_NOT_EXIST:
            return not present
        hit = present and labels[self.key] in self.values
        return hit if self.operator in (EQUALS, IN) else not hit

    def __str__(self) -> str:
        if self.operator == EXISTS:
            return self.key
        if self.operator == DOES_NOT_EXIST:
            return f"!{self.key}"
        if self.operator in (EQUALS, NOT_EQUALS):
            return f"{self.key}{self.operator}{self.values[0]}"
        return f"{self.key} {self.operator} ({','.join(self.values)})"


@dataclass(frozen=True)
class LabelSelector:
    """An AND of requirements. ``nothing`` marks the selector built from ``None``."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    @property
    def empty(self) -> bool:
        """True when it matches every object (no requirement, not the ``None`` selector)."""
        return not self.requirements and not self.nothing

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.nothing:
            return False
        if not isinstance(labels, Mapping):
            labels = {}
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        """Query syntax, requirements sorted by key; the ``None`` selector renders as ``""``
        too (as in Kubernetes), so check ``nothing`` before sending it anywhere."""
        return ",".join(str(r) for r in self.requirements)


EVERYTHING = LabelSelector()
NOTHING = LabelSelector(nothing=True)


def _make(requirements: Iterable[Requirement]) -> LabelSelector:
    return LabelSelector(tuple(sorted(requirements, key=lambda r: (r.key, r.operator))))


# The lexer: Kubernetes' tokens are the characters below, identifiers everything else.
_SPECIAL = "=!(),"
_TOKEN_RE = re.compile(r"\s*(?:(?P<op>==|!=|[=!(),])|(?P<ident>[^\s=!(),]+))")


def _tokenize(text: str) -> list[str]:
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m:  # only trailing whitespace could fail, and it was stripped
            raise _bad(f"unexpected character at {pos} in {text!r}")
        tokens.append(m.group("op") or m.group("ident"))
        pos = m.end()
    return tokens


def _is_ident(tok: str | None) -> bool:
    return tok is not None and tok[0] not in _SPECIAL


class _Parser:
    """Recursive descent over ``requirement (',' requirement)*``."""

    def __init__(self, text: str):
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str | None:
        tok = self.peek()
        self.pos += 1
        return tok

    def expect(self, what: str, ok: Callable[[str | None], bool]) -> str:
        tok = self.take()
        if not ok(tok):
            found = "end of string" if tok is None else tok
            raise _bad(f"found '{found}', expected: {what}")
        return tok  # type: ignore[return-value]

    def parse(self) -> list[Requirement]:
        if self.peek() is None:
            return []
        reqs = [self.requirement()]
        while self.peek() is not None:
            self.expect("',' or 'end of string'", lambda t: t == ",")
            reqs.append(self.requirement())
        return reqs

    def requirement(self) -> Requirement:
        if self.peek() == "!":
            self.take()
            key = self.expect("identifier", _is_ident)
            return Requirement.new(key, DOES_NOT_EXIST)
        key = self.expect("identifier", lambda t: _is_ident(t) and t not in ("in", "notin"))
        op = self.peek()
        if op is None or op == ",":
            return Requirement.new(key, EXISTS)
        self.take()
        if op in ("=", "==", "!="):
            return Requirement.new(key, NOT_EQUALS if op == "!=" else EQUALS,
                                   [self.exact_value()])
        if op in ("in", "notin"):
            return Requirement.new(key, op, self.value_set())
        raise _bad(f"found '{op}', expected: in, notin, =, ==, !=, or end of string")

    def exact_value(self) -> str:
        tok = self.peek()
        if tok is None or tok == ",":
            return ""
        return self.expect("identifier", _is_ident)

    def value_set(self) -> list[str]:
        self.expect("'('", lambda t: t == "(")
        values, current = [], ""
        while True:
            tok = self.take()
            if tok == ")":
                values.append(current)
                return values
            if tok == ",":
                values.append(current)
                current = ""
            elif _is_ident(tok) and not current:
                current = tok  # type: ignore[assignment]
            else:
                found = "end of string" if tok is None else tok
                raise _bad(f"found '{found}', expected: ',', ')' or identifier")


def parse_label_selector(text: str | None) -> LabelSelector:
    """A selector from query syntax (``app=web,tier in (a,b),!canary``); ``""`` selects all."""
    return _make(_Parser(text or "").parse())


def selector_from_set(labels: Mapping[str, str] | None) -> LabelSelector:
    """``key=value`` for each entry (a Service's or ReplicationController's selector map)."""
    return _make(Requirement.new(k, EQUALS, [v]) for k, v in (labels or {}).items())


def selector_query(sel: Mapping[str, Any] | None) -> str:
    """The query-string form of a selector object: a ``metav1.LabelSelector``, or a plain
    ``key: value`` map as Services and ReplicationControllers carry; "" for none."""
    if not sel:
        return ""
    if "matchLabels" in sel or "matchExpressions" in sel:
        return str(selector_from_dict(sel))
    return str(selector_from_set(sel))


def selector_from_dict(sel: Mapping[str, Any] | None) -> LabelSelector:
    """A ``metav1.LabelSelector``: ``None`` matches nothing, ``{}`` matches everything."""
    if sel is None:
        return NOTHING
    reqs = [Requirement.new(k, EQUALS, [v])
            for k, v in (sel.get("matchLabels") or {}).items()]
    for expr in sel.get("matchExpressions") or []:
        op = expr.get("operator")
        if op not in _DICT_OPERATORS:
            raise _bad(f'{op!r} is not a valid label selector operator')
        reqs.append(Requirement.new(expr.get("key") or "", _DICT_OPERATORS[op],
                                    expr.get("values") or []))
    return _make(reqs)


# --- field selectors ----------------------------------------------------------------------

def _get(obj: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def _text(*path: str) -> Callable[[dict], str]:
    def get(obj: dict) -> str:
        v = _get(obj, *path)
        return "" if v is None else str(v)
    return get


def _bool(*path: str) -> Callable[[dict], str]:
    return lambda obj: "true" if _get(obj, *path) else "false"


def _int(*path: str) -> Callable[[dict], str]:
    return lambda obj: str(int(_get(obj, *path) or 0))


def _pod_ip(obj: dict) -> str:
    return _text("status", "podIP")(obj) or next(
        (p.get("ip", "") for p in _get(obj, "status", "podIPs") or []), "")


def _event_source(obj: dict) -> str:
    return _text("source", "component")(obj) or _text("reportingComponent")(obj)


_COMMON_FIELDS: dict[str, Callable[[dict], str]] = {
    "metadata.name": _text("metadata", "name"),
    "metadata.namespace": _text("metadata", "namespace"),
}

# Per kind, the fields Kubernetes indexes for selection, and how each renders as a string:
# booleans and counters render like Go's strconv, so ``spec.unschedulable=false`` matches a
# node that never set the field.
FIELD_GETTERS: dict[str, dict[str, Callable[[dict], str]]] = {
    "Pod": {
        "spec.nodeName": _text("spec", "nodeName"),
        "spec.restartPolicy": _text("spec", "restartPolicy"),
        "spec.schedulerName": _text("spec", "schedulerName"),
        "spec.serviceAccountName": _text("spec", "serviceAccountName"),
        "spec.hostNetwork": _bool("spec", "hostNetwork"),
        "status.phase": _text("status", "phase"),
        "status.podIP": _pod_ip,
        "status.nominatedNodeName": _text("status", "nominatedNodeName"),
    },
    "Event": {
        **{f"involvedObject.{f}": _text("involvedObject", f) for f in (
            "kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")},
        "reason": _text("reason"),
        "reportingComponent": _text("reportingComponent"),
        "source": _event_source,
        "type": _text("type"),
    },
    "Secret": {"type": _text("type")},
    "Node": {"spec.unschedulable": _bool("spec", "unschedulable")},
    "Namespace": {"status.phase": _text("status", "phase")},
    "ReplicaSet": {"status.replicas": _int("status", "replicas")},
    "Job": {"status.successful": _int("status", "succeeded")},
}


def supported_fields(rt: ResourceType) -> list[str]:
    return [*_COMMON_FIELDS, *FIELD_GETTERS.get(rt.kind, {})]


def field_value(rt: ResourceType, obj: dict, field: str) -> str:
    """The string a field selector compares for ``field`` (``""`` when it is missing)."""
    getter = FIELD_GETTERS.get(rt.kind, {}).get(field) or _COMMON_FIELDS.get(field)
    if getter is None:
        raise BadRequest(f"field label not supported: {field}")
    return getter(obj)


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    operator: str  # "=" or "!="
    value: str

    def __str__(self) -> str:
        escaped = (self.value.replace("\\", "\\\\").replace(",", "\\,")
                   .replace("=", "\\="))
        return f"{self.field}{self.operator}{escaped}"


@dataclass(frozen=True)
class FieldSelector:
    rt: ResourceType
    requirements: tuple[FieldRequirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, obj: dict) -> bool:
        for r in self.requirements:
            equal = field_value(self.rt, obj, r.field) == r.value
            if equal != (r.operator == "="):
                return False
        return True

    def exact(self, field: str) -> str | None:
        """The value ``field`` must equal, if the selector pins it (for indexed lookups)."""
        return next((r.value for r in self.requirements
                     if r.field == field and r.operator == "="), None)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, current, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i:i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def _unescape(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        ch = value[i]
        if ch == "\\":
            nxt = value[i + 1] if i + 1 < len(value) else ""
            if nxt not in ("\\", ",", "="):
                raise BadRequest(f"invalid field selector: invalid escape sequence: "
                                 f"\\{nxt}")
            out.append(nxt)
            i += 2
            continue
        if ch in ",=":
            raise BadRequest(f"invalid field selector: unescaped {ch!r} in value {value!r}")
        out.append(ch)
        i += 1
    return "".join(out)


def _split_term(term: str) -> tuple[str, str, str] | None:
    """``(field, op, raw value)`` at the first unescaped operator, or None."""
    i = 0
    while i < len(term):
        if term[i] == "\\":
            i += 2
            continue
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op):]
        i += 1
    return None


def parse_field_selector(text: str | None, rt: ResourceType) -> FieldSelector:
    """A field selector for ``rt`` (``spec.nodeName=n1,status.phase!=Failed``)."""
    reqs = []
    for term in _split_unescaped(text or "", ","):
        if not term.strip():
            continue
        split = _split_term(term)
        if split is None:
            raise BadRequest(f"invalid selector: '{text}'; can't understand '{term}'")
        field, op, raw = split
        field = field.strip()
        if field not in _COMMON_FIELDS and field not in FIELD_GETTERS.get(rt.kind, {}):
            raise BadRequest(f"field label not supported: {field}")
        reqs.append(FieldRequirement(field, "!=" if op == "!=" else "=", _unescape(raw)))
    return FieldSelector(rt, tuple(reqs))


__all__ = [
    "Requirement", "LabelSelector", "EVERYTHING", "NOTHING", "parse_label_selector",
    "selector_from_dict", "selector_from_set", "selector_query",
    "FieldRequirement", "FieldSelector", "FIELD_GETTERS", "parse_field_selector",
    "field_value", "supported_fields",
    "EQUALS", "NOT_EQUALS", "IN", "NOT_IN", "EXISTS", "DOES_NOT_EXIST",
    "regex_error", "dns1123_subdomain_errors", "qualified_name_errors", "label_key_errors",
    "label_value_errors",
]
