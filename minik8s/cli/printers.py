"""Output of mkctl in the exact shape kubectl gives, so that scripts, habits and eyes trained
on kubectl work unchanged.

kubectl aligns everything with Go's ``text/tabwriter`` (its column blocks end at any line
without a tab, which is why describe output re-aligns after every sub-list), so the writer
below reproduces that algorithm rather than padding columns by hand. Tables are the
server's ``meta.k8s.io`` Tables, printed as kubectl's table printer does (upper-case headers,
priority-1 columns only with ``-o wide``, ``kind/`` prefixes when several kinds are shown);
YAML and JSON follow Go's encoders (sorted keys, double quotes, ``|`` blocks, HTML-escaped
JSON) so that output diffs cleanly against kubectl's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

import yaml

from minik8s.api.registry import ResourceType

Obj = dict[str, Any]

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


# --------------------------------------------------------------------------- Go's tabwriter

class TabWriter:
    """Go's ``text/tabwriter`` with space padding and left alignment.

    Text is buffered until ``flush``; a cell is text terminated by a tab, and consecutive
    lines having a cell in the same column form a block padded to one width
    (``max(minwidth, widest cell + padding)``); the last cell of a line is never padded.
    ``remember_widths`` is the flag of Kubernetes' fork that keeps widths from earlier
    flushes, so rows printed one at a time (``get -w``) stay under their header."""

    def __init__(self, minwidth: int = 0, padding: int = 1, remember_widths: bool = False):
        self.minwidth = minwidth
        self.padding = padding
        self._remembered: list[int] | None = [] if remember_widths else None
        self._buf: list[str] = []

    def write(self, text: str) -> None:
        self._buf.append(text)

    def flush(self) -> str:
        text = "".join(self._buf)
        self._buf = []
        if not text:
            return ""
        lines = [line.split("\t") for line in text.split("\n")]
        out: list[str] = [""] * len(lines)
        self._format(lines, 0, len(lines), [], out)
        return "\n".join(out)

    def _format(self, lines: list[list[str]], line0: int, line1: int, widths: list[int],
                out: list[str]) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            self._write_lines(lines, line0, this, widths, out)
            line0 = this
            width = self.minwidth
            while this < line1 and column < len(lines[this]) - 1:
                width = max(width, len(lines[this][column]) + self.padding)
                this += 1
            if self._remembered is not None:
                if column < len(self._remembered):
                    width = max(width, self._remembered[column])
                    self._remembered[column] = width
                else:
                    self._remembered.append(width)
            self._format(lines, line0, this, widths + [width], out)
            line0 = this
        self._write_lines(lines, line0, line1, widths, out)

    @staticmethod
    def _write_lines(lines: list[list[str]], line0: int, line1: int, widths: list[int],
                     out: list[str]) -> None:
        for i in range(line0, line1):
            cells = lines[i]
            parts = []
            for j, cell in enumerate(cells):
                if j < len(widths) and j < len(cells) - 1:
                    parts.append(cell + " " * (widths[j] - len(cell)))
                else:
                    parts.append(cell)
            out[i] = "".join(parts)


def table_writer(remember_widths: bool = False) -> TabWriter:
    """The writer of ``kubectl get`` (``printers.GetNewTabWriter``: minwidth 6, padding 3)."""
    return TabWriter(minwidth=6, padding=3, remember_widths=remember_widths)


def describe_writer() -> TabWriter:
    """The writer of ``kubectl describe`` (``tabbedString``: minwidth 0, padding 2)."""
    return TabWriter(minwidth=0, padding=2)


# --------------------------------------------------------------------------- durations

# --------------------------------------------------------------------------- names

def kind_prefix(rt: ResourceType) -> str:
    """``pod`` or ``deployment.apps``: how kubectl names a kind in ``kind/name`` output."""
    return f"{rt.kind.lower()}.{rt.group}" if rt.group else rt.kind.lower()


def object_name(rt: ResourceType, obj: Obj) -> str:
    """``-o name`` of one object: ``deployment.apps/web``."""
    return f"{kind_prefix(rt)}/{(obj.get('metadata') or {}).get('name', '')}"


# --------------------------------------------------------------------------- tables

def format_labels(labels: dict | None) -> str:
    """``labels.FormatLabels``: sorted ``k=v`` pairs, ``<none>`` when empty."""
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items())) or "<none>"


def _cell_text(value: Any) -> str:
    """A cell as Go's ``fmt.Sprint`` renders the decoded JSON value, cut at a line break."""
    if value is None:
        text = "<nil>"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        text = str(int(value))
    elif isinstance(value, list):
        text = "[" + " ".join(_cell_text(v) for v in value) + "]"
    elif isinstance(value, dict):
        text = "map[" + " ".join(f"{k}:{_cell_text(v)}" for k, v in sorted(value.items())) + "]"
    else:
        text = str(value)
    for index, char in enumerate(text):
        if char in "\f\n\r":
            return text[:index] + "..."
    return text.replace("\t", " ")


@dataclass
class TableOptions:
    wide: bool = False
    no_headers: bool = False
    with_namespace: bool = False
    with_kind: bool = False
    show_labels: bool = False
    label_columns: list[str] = field(default_factory=list)


@dataclass
class TableView:
    """One Table as kubectl lays it out: the visible columns and each row's cells."""

    headers: list[str]
    rows: list[list[str]]


def table_view(rt: ResourceType, table: Obj, opts: TableOptions) -> TableView:
    """Columns and cells of a server Table after kubectl's decorations (namespace column,
    ``kind/`` name prefix, label columns) and with priority-1 columns dropped unless wide."""
    columns = list(table.get("columnDefinitions") or [])
    visible = [i for i, c in enumerate(columns) if opts.wide or not c.get("priority")]
    name_col = -1
    if opts.with_kind:
        for i, c in enumerate(columns):
            if c.get("format") == "name" and c.get("type", "string") == "string":
                name_col = i
                break
    headers = [str(columns[i].get("name", "")).upper() for i in visible]
    if opts.with_namespace:
        headers.insert(0, "NAMESPACE")
    headers += [key.rsplit("/", 1)[-1].upper() for key in opts.label_columns]
    if opts.show_labels:
        headers.append("LABELS")
    prefix = kind_prefix(rt)
    rows = []
    for row in table.get("rows") or []:
        cells = list(row.get("cells") or [])
        meta = ((row.get("object") or {}).get("metadata") or {})
        out = []
        for i in visible:
            value = cells[i] if i < len(cells) else None
            text = _cell_text(value)
            if i == name_col:
                text = f"{prefix}/{text}"
            out.append(text)
        if opts.with_namespace:
            out.insert(0, meta.get("namespace") or "")
        labels = meta.get("labels") or {}
        out += [labels.get(key, "") for key in opts.label_columns]
        if opts.show_labels:
            out.append(format_labels(labels))
        rows.append(out)
    return TableView(headers, rows)


def render_rows(view: TableView, *, header: bool) -> str:
    """The tab-separated lines of a table (to feed a ``TabWriter``)."""
    lines = []
    if header:
        lines.append("\t".join(view.headers) + "\n")
    lines += ["\t".join(row) + "\n" for row in view.rows]
    return "".join(lines)


def print_tables(views: Iterable[TableView], no_headers: bool = False) -> str:
    """Several kinds' tables one after the other as ``kubectl get`` prints them: each
    aligned on its own, separated by a blank line unless headerless; empty ones omitted."""
    parts: list[str] = []
    for view in views:
        if not view.rows:
            continue
        if parts and not no_headers:
            parts.append("\n")
        writer = table_writer()
        writer.write(render_rows(view, header=not no_headers))
        parts.append(writer.flush())
    return "".join(parts)


# --------------------------------------------------------------------------- YAML / JSON

class _GoStyleEmitter(yaml.emitter.Emitter):
    """Quote as Go's YAML encoder does: double quotes wherever a plain scalar won't do."""

    def choose_scalar_style(self):  # type: ignore[override]
        style = super().choose_scalar_style()
        return '"' if style == "'" else style


class _GoStyleDumper(_GoStyleEmitter, yaml.serializer.Serializer,
                     yaml.representer.SafeRepresenter, yaml.resolver.Resolver):
    def __init__(self, stream, default_style=None, default_flow_style=False, canonical=None,
                 indent=None, width=None, allow_unicode=None, line_break=None, encoding=None,
                 explicit_start=None, explicit_end=None, version=None, tags=None,
                 sort_keys=True):
        _GoStyleEmitter.__init__(self, stream, canonical=canonical, indent=indent, width=width,
                                 allow_unicode=allow_unicode, line_break=line_break)
        yaml.serializer.Serializer.__init__(self, encoding=encoding,
                                            explicit_start=explicit_start,
                                            explicit_end=explicit_end, version=version,
                                            tags=tags)
        yaml.representer.SafeRepresenter.__init__(self, default_style=default_style,
                                                  default_flow_style=default_flow_style,
                                                  sort_keys=sort_keys)
        yaml.resolver.Resolver.__init__(self)


def _represent_str(dumper: yaml.representer.SafeRepresenter, value: str) -> yaml.Node:
    if "\n" in value:  # a literal block, unless the emitter finds it cannot be one
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_GoStyleDumper.add_representer(str, _represent_str)
# Go's YAML 1.1 resolver also reads y/n as booleans, so it quotes them.
_GoStyleDumper.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:y|Y|n|N)$"),
                                     list("yYnN"))


def to_yaml(obj: Any) -> str:
    """YAML as ``kubectl get -o yaml`` prints it."""
    return yaml.dump(obj, Dumper=_GoStyleDumper, sort_keys=True, allow_unicode=True,
                     default_flow_style=False)


def to_json(obj: Any) -> str:
    """JSON as ``kubectl get -o json`` prints it (Go's MarshalIndent: four spaces, sorted
    keys, ``<``, ``>`` and ``&`` escaped)."""
    return _go_escape(json.dumps(obj, indent=4, sort_keys=True, ensure_ascii=False)) + "\n"


def compact_json(obj: Any) -> str:
    """Compact JSON as Go's ``json.Marshal`` writes it (used for last-applied annotations)."""
    return _go_escape(json.dumps(obj, sort_keys=True, separators=(",", ":"),
                                 ensure_ascii=False))


def _go_escape(text: str) -> str:
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def as_list(items: list[Obj]) -> Obj:
    """The ``kind: List`` kubectl prints for several objects in ``-o yaml|json``."""
    return {"apiVersion": "v1", "items": items, "kind": "List",
            "metadata": {"resourceVersion": ""}}


def with_type(rt: ResourceType, obj: Obj) -> Obj:
    """``obj`` with ``kind`` and ``apiVersion`` filled in (list items may lack them)."""
    if obj.get("kind") and obj.get("apiVersion"):
        return obj
    return {"apiVersion": rt.api_version, "kind": rt.kind, **obj}


def print_objects(objects: list[tuple[ResourceType, Obj]], output: str, *,
                  as_single: bool) -> str:
    """``-o yaml|json|name`` of fetched objects; a single object stands alone only when it
    was asked for by name (kubectl prints a List for any list request)."""
    if output == "name":
        return "".join(object_name(rt, obj) + "\n" for rt, obj in objects)
    items = [with_type(rt, obj) for rt, obj in objects]
    doc = items[0] if as_single and len(items) == 1 else as_list(items)
    return to_yaml(doc) if output == "yaml" else to_json(doc)


__all__ = [
    "LAST_APPLIED", "TabWriter", "TableOptions", "TableView", "as_list", "compact_json",
    "describe_writer", "format_labels", "kind_prefix", "object_name",
    "print_objects", "print_tables", "render_rows", "table_view", "table_writer", "to_json",
    "to_yaml", "with_type",
]
