"""Reading ``-f`` arguments the way kubectl does: files, folders (their ``.yaml``, ``.yml``
and ``.json`` files in sorted order, sub-folders only with ``-R``), ``-`` for stdin,
multi-document YAML with empty documents skipped, and ``kind: List`` expanded.

YAML is decoded as Kubernetes' ``sigs.k8s.io/yaml`` does: plain dates stay strings (PyYAML
would hand out ``datetime`` objects, which the API never accepts), keys become strings and
whole floats become integers, so that the object sent, and the last-applied annotation
computed from it, match what kubectl produces from the same file.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, TextIO

import yaml

from minik8s.cli.errors import CliError

Obj = dict[str, Any]

EXTENSIONS = (".yaml", ".yml", ".json")
STDIN = "-"


class _Loader(yaml.SafeLoader):
    """SafeLoader without the timestamp resolver."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True)
class Manifest:
    """One object from a file, and where it came from (``STDIN`` for ``-``), for messages."""

    obj: Obj
    source: str


def _normalize(value: Any) -> Any:
    if isinstance(value, dict):
        return {_key(k): _normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2 ** 63:
        return int(value)
    return value


def _key(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return key if isinstance(key, str) else str(key)


def parse_documents(text: str, source: str) -> list[Manifest]:
    """The objects of one YAML (or JSON) stream, ``List`` kinds expanded."""
    try:
        docs = list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as exc:
        raise CliError(f"error parsing {source}: error converting YAML to JSON: "
                       f"{_yaml_problem(exc)}") from None
    out: list[Manifest] = []
    for doc in docs:
        if doc is None or doc == {}:
            continue
        if not isinstance(doc, dict):
            raise CliError(f"error parsing {source}: a manifest must be a mapping, "
                           f"not {type(doc).__name__}")
        out += _expand(_normalize(doc), source)
    return out


def _expand(doc: Obj, source: str) -> list[Manifest]:
    kind = doc.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(doc.get("items"), list):
        out: list[Manifest] = []
        for item in doc["items"]:
            if isinstance(item, dict) and item:
                out += _expand(item, source)
        return out
    missing = [f"{field} not set" for field in ("apiVersion", "kind") if not doc.get(field)]
    if missing:
        raise CliError(f'error validating "{source}": error validating data: '
                       f'[{", ".join(missing)}]')
    return [Manifest(doc, source)]


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"yaml: line {mark.line + 1}: {problem}"
    return f"yaml: {problem}"


def expand_paths(paths: Iterable[str], recursive: bool = False) -> list[str]:
    """The files named by ``-f`` arguments, in kubectl's order; ``-`` is kept as is."""
    files: list[str] = []
    for path in paths:
        if path == STDIN:
            files.append(STDIN)
            continue
        p = Path(path)
        if p.is_dir():
            found = _walk(p, recursive)
            if not found:
                raise CliError(f"error reading [{path}]: recognized file extensions are "
                               f"[{' '.join(sorted(EXTENSIONS))}]")
            files += found
        elif p.exists():
            files.append(path)
        else:
            raise CliError(f'the path "{path}" does not exist')
    return files


def _walk(folder: Path, recursive: bool) -> list[str]:
    found: list[str] = []
    for entry in sorted(os.listdir(folder)):
        child = folder / entry
        if child.is_dir():
            if recursive:
                found += _walk(child, recursive)
        elif child.suffix in EXTENSIONS:
            found.append(str(child))
    return found


def read_manifests(paths: Iterable[str], recursive: bool = False,
                   stdin: TextIO | None = None) -> list[Manifest]:
    """Every object named by ``-f`` arguments."""
    out: list[Manifest] = []
    for file in expand_paths(paths, recursive):
        if file == STDIN:
            text, source = (stdin or sys.stdin).read(), "STDIN"
        else:
            try:
                text = Path(file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise CliError(f"error reading {file}: {exc}") from None
            source = file
        out += parse_documents(text, source)
    return out


__all__ = ["EXTENSIONS", "Manifest", "STDIN", "expand_paths", "parse_documents",
           "read_manifests"]
