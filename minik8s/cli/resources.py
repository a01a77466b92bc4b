"""What the arguments of a command point at, worked out once for every command.

kubectl accepts the same shapes everywhere (``TYPE``, ``TYPE1,TYPE2``, ``all``,
``TYPE NAME...``, ``TYPE/NAME...``, ``-f PATH``, with ``-l``/``--all``/``-A``) and refuses
the same mixtures with the same words; resolving them here keeps get, describe, delete,
label and annotate from each growing their own variant. Types are resolved through the kind
registry, the same table the API server and the client build their paths from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from minik8s.api.registry import REGISTRY, ResourceType
from minik8s.cli.errors import CliError
from minik8s.cli.manifests import Manifest, read_manifests

Obj = dict[str, Any]

def resolve_type(name: str) -> ResourceType:
    rt = REGISTRY.resolve(name)
    if rt is None and "." in name:
        # kubectl also accepts a short name qualified by its group: ``deploy.apps``.
        short, _, group = name.partition(".")
        candidate = REGISTRY.resolve(short)
        if candidate is not None and group.lower() in (
                candidate.group, f"{candidate.version}.{candidate.group}"):
            rt = candidate
    if rt is None:
        raise CliError(f'the server doesn\'t have a resource type "{name}"')
    return rt


def expand_types(arg: str) -> list[ResourceType]:
    """``pods,svc`` or ``all`` as resource types, duplicates removed, order kept."""
    out: list[ResourceType] = []
    for part in arg.split(","):
        part = part.strip()
        if not part:
            continue
        if part.lower() == "all":
            # kubectl expands a category in discovery order, which is the registry's.
            out += [t for t in REGISTRY if "all" in t.categories]
        else:
            out.append(resolve_type(part))
    unique: list[ResourceType] = []
    for rt in out:
        if rt not in unique:
            unique.append(rt)
    return unique


def kind_type(obj: Obj, source: str) -> ResourceType:
    """The resource type of a manifest object, or kubectl's mapping error."""
    api_version, kind = str(obj.get("apiVersion") or ""), str(obj.get("kind") or "")
    rt = REGISTRY.by_kind(api_version, kind)
    if rt is None:
        md = obj.get("metadata") or {}
        raise CliError(f'resource mapping not found for name: "{md.get("name", "")}" '
                       f'namespace: "{md.get("namespace", "")}" from "{source}": no matches '
                       f'for kind "{kind}" in version "{api_version}"')
    return rt


@dataclass(frozen=True)
class Ref:
    """One object a command acts on: its type, name, namespace (None when cluster-scoped)
    and, for ``-f``, the manifest it came from."""

    rt: ResourceType
    name: str
    namespace: str | None
    manifest: Manifest | None = None

    @property
    def source(self) -> str | None:
        return self.manifest.source if self.manifest else None


@dataclass(frozen=True)
class Collection:
    """A whole collection of one type: one namespace, or all of them (``namespace=None``)."""

    rt: ResourceType
    namespace: str | None


@dataclass
class Selection:
    refs: list[Ref] = field(default_factory=list)
    collections: list[Collection] = field(default_factory=list)
    from_files: bool = False

    @property
    def types(self) -> list[ResourceType]:
        seen: list[ResourceType] = []
        for rt in [r.rt for r in self.refs] + [c.rt for c in self.collections]:
            if rt not in seen:
                seen.append(rt)
        return seen

    @property
    def single_object(self) -> bool:
        """Exactly one object asked for by name (``-o yaml`` prints it without a List)."""
        return len(self.refs) == 1 and not self.collections


@dataclass
class Scope:
    """The namespace settings of one command."""

    namespace: str
    explicit: bool = False       # -n was given: a manifest's namespace must agree
    all_namespaces: bool = False

    def of(self, rt: ResourceType) -> str | None:
        """The namespace of a named object of type ``rt`` (None when cluster-scoped)."""
        return self.namespace if rt.namespaced else None


def manifest_ref(manifest: Manifest, scope: Scope) -> Ref:
    """The object a manifest names, with kubectl's namespace rules: a namespace in the file
    wins unless ``-n`` says otherwise, in which case they must agree."""
    obj, source = manifest.obj, manifest.source
    rt = kind_type(obj, source)
    md = obj.get("metadata") or {}
    name = md.get("name")
    if not name:
        raise CliError(f'error when retrieving current configuration of "{source}": '
                       f'resource name may not be empty')
    namespace = None
    if rt.namespaced:
        own = md.get("namespace")
        if own and scope.explicit and own != scope.namespace:
            raise CliError(f'the namespace from the provided object "{own}" does not match '
                           f'the namespace "{scope.namespace}". You must pass '
                           f"'--namespace={own}' to perform this operation.")
        namespace = own or scope.namespace
    return Ref(rt, str(name), namespace, manifest)


def select(args: list[str], scope: Scope, *, filenames: list[str] | None = None,
           recursive: bool = False, selector: bool = False, select_all: bool = False,
           need_names: bool = False, missing: str = "") -> Selection:
    """Resolve ``args``/``-f`` into named objects and whole collections.

    ``selector``/``select_all`` say whether ``-l``/``--all`` was given (they turn a bare type
    into a collection for commands that otherwise need names, and forbid names);
    ``need_names`` makes a bare type without them an error, as for delete and label;
    ``missing`` is the error when nothing at all was named."""
    if filenames:
        if args:
            raise CliError("when paths, URLs, or stdin is provided as input, you may not specify "
                           "resource arguments as well")
        return Selection(refs=[manifest_ref(m, scope) for m in
                               read_manifests(filenames, recursive)], from_files=True)
    if not args:
        raise CliError(missing or "You must provide one or more resources by argument or "
                       "filename.")
    if any("/" in a for a in args):
        return Selection(refs=[_slash_ref(a, scope, args) for a in args])
    types, names = expand_types(args[0]), args[1:]
    if names:
        if selector:
            raise CliError("name cannot be provided when a selector is specified")
        if scope.all_namespaces:
            raise CliError("a resource cannot be retrieved by name across all namespaces")
        return Selection(refs=[Ref(rt, n, scope.of(rt)) for rt in types for n in names])
    if need_names and not (selector or select_all):
        raise CliError("resource(s) were provided, but no name was specified")
    namespace = None if scope.all_namespaces else scope.namespace
    return Selection(collections=[
        Collection(rt, namespace if rt.namespaced else None) for rt in types])


def _slash_ref(arg: str, scope: Scope, args: list[str]) -> Ref:
    kind, _, name = arg.partition("/")
    if not kind or not name or "/" not in arg:
        raise CliError("there is no need to specify a resource type as a separate argument "
                       "when passing arguments in resource/name form (e.g. 'mkctl get "
                       "resource/<resource_name>' instead of 'mkctl get resource "
                       "resource/<resource_name>'")
    if scope.all_namespaces:
        raise CliError("a resource cannot be retrieved by name across all namespaces")
    types = expand_types(kind)
    if len(types) != 1:
        raise CliError(f'arguments in resource/name form must have a single resource and '
                       f'name: "{arg}"')
    return Ref(types[0], name, scope.of(types[0]))


__all__ = ["Collection", "Ref", "Scope", "Selection", "expand_types", "kind_type",
           "manifest_ref", "resolve_type", "select"]
