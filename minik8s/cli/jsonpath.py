"""kubectl's JSONPath template dialect (client-go ``util/jsonpath``) for ``mkctl get -o
jsonpath=...`` and ``-o custom-columns=...``, written from kubectl's observed behaviour so
that scripts built on kubectl's output print the same bytes here.

A template is literal text and ``{...}`` actions. Each action's results are printed
separated by single spaces (maps and lists as compact JSON with sorted keys, scalars as Go's
``fmt`` prints them); ``{range X}...{end}`` repeats its body for each result of ``X``.
Evaluation finishes before anything is printed, so a failing template prints nothing.
Quirks kept on purpose: ``['a.b']`` is parsed as ``.a.b`` (kubectl splits on the dots; use
``a\\.b``), a missing key prints nothing unless missing keys are disallowed, and an unclosed
``{range`` simply runs to the end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from minik8s.cli.printers import compact_json


class JSONPathError(Exception):
    """A template that does not parse (``parse``) or does not apply (``execute``)."""


# --------------------------------------------------------------------------- nodes

@dataclass
class Text:
    value: str


@dataclass
class Field:
    name: str


@dataclass
class Recursive:
    pass


@dataclass
class Wildcard:
    pass


@dataclass
class Slice:
    start: int | None
    end: int | None
    step: int | None
    derived: bool = False    # ``[i]``: end is start + 1


@dataclass
class Union:
    branches: list[list[Any]]


@dataclass
class Filter:
    left: list[Any]
    op: str                  # ==, !=, <, >, <=, >= or "exists"
    right: list[Any]


@dataclass
class Literal:               # numbers and booleans in filters
    value: Any


@dataclass
class Action:                # one ``{...}``
    nodes: list[Any] = field(default_factory=list)


@dataclass
class RangeStart:
    nodes: list[Any]


@dataclass
class RangeEnd:
    pass


_TERMINATORS = set(" \t\r\n.,[]$@{}")
_SLICE = re.compile(r"^(-?\d*)(:-?\d*)?(:-?\d*)?$")
_DICT_KEY = re.compile(r"^'([^']*)'$")
_FILTER = re.compile(r"^([^!<>=]+)([!<>=]+)(.+?)$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
            "\\": "\\", "'": "'", '"': '"'}


def _unquote(text: str) -> str:
    """Go's strconv.Unquote, extended (as client-go does) to single-quoted strings."""
    body, out, i = text[1:-1], [], 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        if i + 1 >= len(body):
            raise JSONPathError("invalid syntax")
        e = body[i + 1]
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 2
        elif e in "xuU":
            n = {"x": 2, "u": 4, "U": 8}[e]
            digits = body[i + 2:i + 2 + n]
            if len(digits) != n or not re.fullmatch(r"[0-9a-fA-F]+", digits):
                raise JSONPathError("invalid syntax")
            out.append(chr(int(digits, 16)))
            i += 2 + n
        elif e in "01234567":
            digits = body[i + 1:i + 4]
            if not re.fullmatch(r"[0-7]{3}", digits):
                raise JSONPathError("invalid syntax")
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            raise JSONPathError("invalid syntax")
    return "".join(out)


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def parse_template(self) -> list[Any]:
        nodes: list[Any] = []
        while self.pos < len(self.text):
            start = self.text.find("{", self.pos)
            if start < 0:
                nodes.append(Text(self.text[self.pos:]))
                break
            if start > self.pos:
                nodes.append(Text(self.text[self.pos:start]))
            self.pos = start + 1
            action = self.parse_action(top=True)
            if len(action) == 1 and isinstance(action[0], (RangeStart, RangeEnd)):
                nodes.append(action[0])
            else:
                nodes.append(Action(action))
        return nodes

    def parse_action(self, *, top: bool) -> list[Any]:
        """Nodes up to the closing ``}`` (``top``) or the end of the text (a sub-path)."""
        cur: list[Any] = []
        while True:
            if self.text.startswith("}", self.pos) and top:
                self.pos += 1
                return cur
            c = self.peek()
            if c == "":
                if top:
                    raise JSONPathError("unclosed action")
                return cur
            if c in "\r\n":
                raise JSONPathError("unclosed action")
            if c in " @$":
                self.pos += 1
            elif self.text.startswith("..", self.pos):
                if cur and isinstance(cur[-1], Recursive):
                    raise JSONPathError("invalid multiple recursive descent")
                self.pos += 2
                cur.append(Recursive())
                if self.peek().isalnum() or self.peek() == "_":
                    self.pos -= 1
                    cur.append(self.parse_field())
            elif c == ".":
                cur.append(self.parse_field())
            elif c == "[":
                cur.extend(self.parse_array())
            elif c in "\"'":
                cur.append(self.parse_quote(c))
            elif c in "+-" or c.isdigit():
                cur.append(self.parse_number())
            elif c.isalnum() or c == "_":
                cur.append(self.parse_identifier(cur, top))
            else:
                raise JSONPathError(f"unrecognized character in action: {_go_rune(c)}")

    def parse_field(self) -> Any:
        self.pos += 1                                  # the "."
        start = self.pos
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c == "\\":
                self.pos += 2
            elif c in _TERMINATORS:
                break
            else:
                self.pos += 1
        name = self.text[start:self.pos]
        return Wildcard() if name == "*" else Field(name.replace("\\", ""))

    def parse_array(self) -> list[Any]:
        end = self.pos
        while True:
            end += 1
            if end >= len(self.text) or self.text[end] == "\n":
                raise JSONPathError("unterminated array")
            if self.text[end] == "]" and not self.text.startswith("[?(", self.pos):
                break
            if self.text[end] == "]" and self.text[end - 1] == ")":
                break
        inner = self.text[self.pos + 1:end]
        self.pos = end + 1
        if inner.startswith("?(") and inner.endswith(")"):
            return [self.parse_filter(inner[2:-1])]
        if inner == "*":
            inner = ":"
        parts = inner.split(",")
        if len(parts) > 1:
            return [Union([_Parser(f"[{p.strip()}]").parse_action(top=False) for p in parts])]
        key = _DICT_KEY.match(inner)
        if key:
            return _Parser("." + key.group(1)).parse_action(top=False)
        m = _SLICE.match(inner)
        if not m:
            raise JSONPathError(f"invalid array index {inner}")
        start = int(m.group(1)) if m.group(1) not in ("", "-") else None
        if m.group(2) is None:
            return [Slice(start, (start or 0) + 1, None, derived=True)]
        stop = m.group(2)[1:]
        step = (m.group(3) or ":")[1:]
        return [Slice(start, int(stop) if stop else None, int(step) if step else None)]

    def parse_filter(self, text: str) -> Filter:
        m = _FILTER.match(text)
        if not m:
            return Filter(_Parser(text).parse_action(top=False), "exists", [])
        left, op, right = (g.strip() for g in m.groups())
        if op not in ("==", "!=", "<", ">", "<=", ">="):
            raise JSONPathError(f"unrecognized filter operator {op}")
        return Filter(_Parser(left).parse_action(top=False), op,
                      _Parser(right).parse_action(top=False))

    def parse_quote(self, quote: str) -> Text:
        end = self.pos + 1
        while True:
            if end >= len(self.text) or self.text[end] == "\n":
                raise JSONPathError("unterminated quoted string")
            if self.text[end] == "\\":
                end += 2
                continue
            if self.text[end] == quote:
                break
            end += 1
        raw = self.text[self.pos:end + 1]
        self.pos = end + 1
        try:
            return Text(_unquote(raw))
        except JSONPathError as error:
            raise JSONPathError(f"unquote string {raw} error {error}") from None

    def parse_number(self) -> Literal:
        start = self.pos
        self.pos += 1
        while self.pos < len(self.text) and self.text[self.pos] not in _TERMINATORS:
            self.pos += 1
        text = self.text[start:self.pos]
        if not _NUMBER.match(text):
            raise JSONPathError(f"cannot parse number {text}")
        if re.fullmatch(r"[+-]?\d+", text):
            return Literal(int(text))
        return Literal(float(text))

    def parse_identifier(self, cur: list[Any], top: bool) -> Any:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _TERMINATORS:
            self.pos += 1
        word = self.text[start:self.pos]
        if word == "range" and top:
            rest = self.parse_action(top=True)
            self.pos -= 1          # let the caller see the closing brace
            cur.clear()
            return RangeStart(rest)
        if word == "end" and top:
            return RangeEnd()
        if word in ("true", "false"):
            return Literal(word == "true")
        return _Unknown(word)


@dataclass
class _Unknown:              # kubectl reports these when executing, not when parsing
    word: str


def _go_rune(c: str) -> str:
    return f"U+{ord(c):04X} '{c}'"


def parse(template: str) -> list[Any]:
    """Parse a template, raising ``JSONPathError`` with kubectl's message."""
    return _Parser(template).parse_template()


# --------------------------------------------------------------------------- evaluation

_MISSING = object()


class _Eval:
    def __init__(self, allow_missing: bool):
        self.allow_missing = allow_missing

    def path(self, values: list[Any], nodes: list[Any]) -> list[Any]:
        for node in nodes:
            values = self.step(values, node)
        return values

    def step(self, values: list[Any], node: Any) -> list[Any]:
        if isinstance(node, Text):
            return [node.value]
        if isinstance(node, Literal):
            return [node.value]
        if isinstance(node, _Unknown):
            raise JSONPathError(f"unrecognized identifier {node.word}")
        if isinstance(node, Field):
            if node.name == "":
                return []
            found = [v[node.name] for v in values
                     if isinstance(v, dict) and node.name in v and v is not None]
            if not found and values and not self.allow_missing:
                raise JSONPathError(f"{node.name} is not found")
            return found
        if isinstance(node, Wildcard):
            out: list[Any] = []
            for v in values:
                if isinstance(v, dict):
                    out += [v[k] for k in sorted(v)]
                elif isinstance(v, list):
                    out += v
            return out
        if isinstance(node, Recursive):
            return self.recursive(values)
        if isinstance(node, Slice):
            return self.slice(values, node)
        if isinstance(node, Union):
            return [r for branch in node.branches for r in self.path(values, branch)]
        if isinstance(node, Filter):
            return self.filter(values, node)
        raise JSONPathError(f"unexpected node {node}")

    def recursive(self, values: list[Any]) -> list[Any]:
        out: list[Any] = []
        for v in values:
            children = ([v[k] for k in sorted(v)] if isinstance(v, dict)
                        else list(v) if isinstance(v, list) else [])
            if children:
                out.append(v)
                out += self.recursive(children)
        return out

    def slice(self, values: list[Any], node: Slice) -> list[Any]:
        out: list[Any] = []
        for v in values:
            if v is None:
                continue
            if not isinstance(v, list):
                raise JSONPathError(f"{_go_type(v)} is not array or slice")
            n = len(v)
            start = node.start or 0
            if start < 0:
                start += n
            end = n if node.end is None else node.end
            if end < 0 or (end == 0 and node.derived):
                end += n
            if end == start:
                continue
            if start >= n or start < 0:
                raise JSONPathError(f"array index out of bounds: index {start}, length {n}")
            if end > n or end < 0:
                raise JSONPathError(f"array index out of bounds: index {end - 1}, length {n}")
            if start > end:
                raise JSONPathError(f"starting index {start} is greater than ending index "
                                    f"{end}")
            if node.step is not None and node.step <= 0:
                raise JSONPathError("step must be > 0")
            out += v[start:end:node.step or 1]
        return out

    def filter(self, values: list[Any], node: Filter) -> list[Any]:
        out: list[Any] = []
        for v in values:
            if not isinstance(v, list):
                raise JSONPathError(f"{_go_text(v)} is not array or slice and cannot be "
                                    f"filtered")
            for item in v:
                if node.op == "exists":
                    try:
                        if self.path([item], node.left):
                            out.append(item)
                    except JSONPathError:
                        pass
                    continue
                lefts = self.path([item], node.left)
                if not lefts:
                    continue
                if len(lefts) > 1:
                    raise JSONPathError("can only compare one element at a time")
                rights = self.path([item], node.right)
                if not rights:
                    continue
                if len(rights) > 1:
                    raise JSONPathError("can only compare one element at a time")
                if _compare(lefts[0], node.op, rights[0]):
                    out.append(item)
        return out


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    return "other"


def _compare(left: Any, op: str, right: Any) -> bool:
    """Go text/template's eq/ne/lt/gt: same basic kinds only."""
    lk, rk = _kind(left), _kind(right)
    if op in ("==", "!="):
        if "other" in (lk, rk):
            raise JSONPathError("invalid type for comparison")
        if lk != rk:
            raise JSONPathError("incompatible types for comparison")
        return (left == right) == (op == "==")
    if "other" in (lk, rk) or "bool" in (lk, rk):
        raise JSONPathError("invalid type for comparison")
    if lk != rk:
        raise JSONPathError("incompatible types for comparison")
    return {"<": left < right, ">": left > right, "<=": left <= right,
            ">=": left >= right}[op]


def _go_type(v: Any) -> str:
    return {"string": "string", "int": "int64", "float": "float64", "bool": "bool"}.get(
        _kind(v), "map[string]interface {}")


def _go_text(v: Any) -> str:
    """A value as Go's ``fmt.Print`` shows it."""
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e21:
            return str(int(v))
        return repr(v)
    if isinstance(v, (dict, list)):
        return compact_json(v)
    return str(v)


def execute(nodes: list[Any], data: Any, *, allow_missing: bool = True) -> str:
    """Apply parsed ``nodes`` to ``data``; raises ``JSONPathError`` (nothing is printed)."""
    ev = _Eval(allow_missing)
    pieces: list[str] = []
    _run(ev, nodes, data, pieces, depth=0)
    return "".join(pieces)


def _run(ev: _Eval, nodes: list[Any], data: Any, pieces: list[str], depth: int) -> int:
    """Run ``nodes`` on ``data``; returns how many nodes were consumed (up to an ``end``)."""
    i = 0
    while i < len(nodes):
        node = nodes[i]
        if isinstance(node, RangeEnd):
            if depth == 0:
                raise JSONPathError("not in range, nothing to end")
            return i + 1
        if isinstance(node, RangeStart):
            body = nodes[i + 1:]
            items = ev.path([data], node.nodes)
            consumed = len(body)
            if items:
                for item in items:
                    consumed = _run(ev, body, item, pieces, depth + 1)
            else:
                consumed = _run(ev, body, None, [], depth + 1)
            i += 1 + consumed
            continue
        if isinstance(node, Text):
            pieces.append(node.value)
        else:
            results = ev.path([data], node.nodes)
            pieces.append(" ".join(_go_text(r) for r in results))
        i += 1
    return i


def render(template: str, data: Any, *, allow_missing: bool = True) -> str:
    return execute(parse(template), data, allow_missing=allow_missing)


__all__ = ["JSONPathError", "execute", "parse", "render"]


# --------------------------------------------------------------------------- -o printers

def _go_value(v: Any) -> str:
    """A value as Go's ``%v`` shows it (custom-columns cells): ``map[k:v]``, ``[a b]``."""
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{_go_value(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, list):
        return "[" + " ".join(_go_value(x) for x in v) + "]"
    return _go_text(v)


def relaxed(path: str) -> str:
    """kubectl's RelaxedJSONPathExpression: ``metadata.name`` -> ``{.metadata.name}``."""
    m = re.fullmatch(r"\{?(.*?)\}?", path.strip(), re.S)
    body = m.group(1) if m else path
    if body and not body.startswith(".") and not body.startswith("@"):
        body = "." + body
    return "{" + body + "}"


@dataclass
class TemplatePrinter:
    """``-o jsonpath=...`` or ``-o custom-columns=...``, parsed once; ``print`` takes the
    object kubectl would give its printer (one object, or a ``kind: List``)."""
    kind: str                       # "jsonpath" or "custom-columns"
    template: str
    nodes: list[Any] = field(default_factory=list)
    columns: list[tuple[str, list[Any]]] = field(default_factory=list)
    allow_missing: bool = True
    no_headers: bool = False

    def print(self, doc: Any) -> str:
        if self.kind == "jsonpath":
            try:
                return execute(self.nodes, doc, allow_missing=self.allow_missing)
            except JSONPathError as error:
                # kubectl's first line; mkctl errors are one line, so without the lines
                # that follow it (the template and the object as a Go literal)
                raise JSONPathError(f'error executing jsonpath "{self.template}": Error '
                                    f"executing template: {error}. Printing more "
                                    f"information for debugging the template:") from None
        from minik8s.cli.printers import TabWriter
        writer = TabWriter(minwidth=6, padding=3)   # kubectl GetNewTabWriter
        if not self.no_headers:
            writer.write("\t".join(name for name, _ in self.columns) + "\n")
        items = doc.get("items") if doc.get("kind") == "List" else [doc]
        for item in items or []:
            cells = []
            for _, nodes in self.columns:
                values: list[str] = []
                pieces: list[Any] = []
                for node in nodes:
                    if isinstance(node, Action):
                        pieces += _Eval(True).path([item], node.nodes)
                    elif isinstance(node, Text):
                        pieces.append(node.value)
                values = [_go_value(v) for v in pieces]
                cells.append(",".join(values) if values else "<none>")
            writer.write("\t".join(cells) + "\n")
        return writer.flush()


TEMPLATE_FORMATS = ("jsonpath", "jsonpath-file", "custom-columns", "custom-columns-file")


def template_printer(output: str | None, *, allow_missing: bool = True,
                     no_headers: bool = False) -> TemplatePrinter | None:
    """The printer for a template ``-o`` value, ``None`` for any other format; bad
    templates raise ``JSONPathError`` with kubectl's message."""
    if not output:
        return None
    name, sep, arg = output.partition("=")
    if name not in TEMPLATE_FORMATS:
        return None
    if not arg:
        raise JSONPathError("template format specified but no template given"
                            if name.startswith("jsonpath")
                            else "custom-columns format specified but no custom columns "
                                 "given")
    if name.endswith("-file"):
        try:
            with open(arg, encoding="utf-8") as f:
                arg = f.read()
        except OSError as error:
            raise JSONPathError(f"error reading template {arg}, {error}") from None
    if name.startswith("jsonpath"):
        try:
            nodes = parse(arg)
        except JSONPathError as error:
            raise JSONPathError(f"error parsing jsonpath {arg}, {error}") from None
        return TemplatePrinter("jsonpath", arg, nodes=nodes, allow_missing=allow_missing)
    if name == "custom-columns":
        specs = [s for s in arg.split(",") if s != ""] if arg else []
        pairs = []
        for spec in specs:
            header, colon, path = spec.partition(":")
            if not colon:
                raise JSONPathError(f"unexpected custom-columns spec: {spec}, expected "
                                    f"<header>:<json-path-expr>")
            pairs.append((header, path))
    else:
        lines = [line for line in arg.splitlines() if line.strip()]
        if len(lines) != 2:
            raise JSONPathError(f"invalid template file, expected 2 lines, saw {len(lines)}")
        headers, paths = lines[0].split(), lines[1].split()
        if len(headers) != len(paths):
            raise JSONPathError(f"number of headers ({len(headers)}) does not match number "
                                f"of columns ({len(paths)})")
        pairs = list(zip(headers, paths))
    columns = []
    for header, path in pairs:
        expr = relaxed(path)
        try:
            columns.append((header, parse(expr)))
        except JSONPathError as error:
            raise JSONPathError(f"error parsing jsonpath {expr}, {error}") from None
    return TemplatePrinter("custom-columns", arg, columns=columns, no_headers=no_headers)


__all__ += ["TEMPLATE_FORMATS", "TemplatePrinter", "relaxed", "template_printer"]
