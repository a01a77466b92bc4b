"""``mkctl``: the kubectl of minik8s, built so that anyone who knows kubectl needs nothing
new: the same commands, flags, output and error lines, and manifests applied by one tool can
be re-applied by the other (the last-applied annotation is byte-for-byte kubectl's).

Each command is an ``async`` function over one ``Session`` (client, namespace scope,
timeout) run with ``asyncio.run``; argument shapes are resolved by ``resources``, files by
``manifests``, output by ``printers`` and ``describe``. Every failure, including a server
that cannot be reached, ends as one line on stderr and exit code 1; ``MKCTL_DEBUG=1``
re-raises instead, for a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import platform
import re
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

import httpx

from minik8s import __version__
from minik8s.api.errors import (BadRequest, Conflict, Invalid, NotFound, StatusError,
                                Unauthorized)
from minik8s.api.patch import create_three_way_patch
from minik8s.api.registry import ResourceType
from minik8s.cli import describe as describers
from minik8s.cli.errors import CliError
from minik8s.cli.jsonpath import JSONPathError, template_printer
from minik8s.cli.manifests import read_manifests
from minik8s.cli.printers import (LAST_APPLIED, TableOptions, TableView, compact_json,
                                  kind_prefix, object_name, print_objects, print_tables,
                                  render_rows, table_view, table_writer, to_json, to_yaml,
                                  with_type)
from minik8s.cli.resources import Ref, Scope, Selection, manifest_ref, select
from minik8s.client.kubeconfig import ClientConfig, KubeconfigError, load_kubeconfig
from minik8s.client.rest import Client

Obj = dict[str, Any]

TABLE_ACCEPT = ("application/json;as=Table;v=v1;g=meta.k8s.io,"
                "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json")
PAGE_SIZE = 500
DEFAULT_TIMEOUT = 60.0


# --------------------------------------------------------------------------- output

def out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def err(line: str) -> None:
    """One line on stderr, whatever the message holds."""
    sys.stderr.write(" ".join(line.rstrip("\n").split("\n")) + "\n")
    sys.stderr.flush()


class Unreachable(Exception):
    """A transport failure, already worded with the server it was talking to."""


def status_line(error: StatusError, *, action: str = "", source: str | None = None) -> str:
    """A server error in kubectl's words (``StandardErrorMessage`` and its Invalid case)."""
    if isinstance(error, Unauthorized):
        return f"error: You must be logged in to the server ({error.message})"
    if isinstance(error, Invalid):
        details = error.details or {}
        if details.get("kind") or details.get("name"):
            head = f'The {details.get("kind", "")} "{details.get("name", "")}" is invalid'
            causes = []
            for cause in error.causes:
                text = f'{cause.get("field", "")}: {cause.get("message", "")}'
                if text not in causes:
                    causes.append(text)
            if len(causes) == 1:
                return f"{head}: {causes[0]}"
            if causes:
                return f"{head}: [{', '.join(causes)}]"
            return head
    message = error.message
    if source:
        message = f'error when {action} "{source}": {message}'
    reason = getattr(error, "reason", "")
    return f"Error from server ({reason}): {message}" if reason else f"Error from server: {message}"


def error_line(exc: BaseException, server: str | None = None) -> str:
    """The one line every failure is reported as."""
    if isinstance(exc, (CliError, KubeconfigError)):
        return f"error: {exc}"
    if isinstance(exc, Unreachable):
        return str(exc)
    if isinstance(exc, StatusError):
        return status_line(exc)
    if isinstance(exc, httpx.ConnectError) and _refused(exc):
        host = urlsplit(server).netloc if server else "the server"
        return (f"The connection to the server {host} was refused - did you specify the right "
                f"host or port?")
    if isinstance(exc, httpx.TimeoutException):
        return f"Unable to connect to the server: {exc or 'timed out'}"
    if isinstance(exc, httpx.TransportError):
        return f"Unable to connect to the server: {_transport_reason(exc)}"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"error: {text}"


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in chain:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    return chain


def _refused(exc: BaseException) -> bool:
    return any(isinstance(c, ConnectionRefusedError) or "refused" in str(c).lower()
               for c in _causes(exc))


def _transport_reason(exc: BaseException) -> str:
    cause: BaseException | None = exc
    while cause is not None and cause.__cause__ is not None and not str(cause):
        cause = cause.__cause__
    return " ".join(str(cause or exc).split()) or type(exc).__name__


# --------------------------------------------------------------------------- client

class CliClient(Client):
    """The REST client plus the two things only a CLI needs: Tables, and watches whose
    events carry Tables (what ``kubectl get -w`` asks for)."""

    async def get_table(self, rt: ResourceType, name: str, namespace: str | None) -> Obj:
        return await self.request("GET", rt.path(namespace, name),
                                  headers={"Accept": TABLE_ACCEPT})

    async def list_table(self, rt: ResourceType, namespace: str | None, *,
                         label_selector: str | None = None,
                         field_selector: str | None = None) -> Obj:
        """A whole collection as one Table (pages of ``PAGE_SIZE`` merged), with list
        errors worded as kubectl's ``EnhanceListError``."""
        params: dict[str, Any] = {"labelSelector": label_selector,
                                  "fieldSelector": field_selector, "limit": PAGE_SIZE}
        table: Obj | None = None
        while True:
            try:
                page = await self.request("GET", rt.path(namespace), params=params,
                                          headers={"Accept": TABLE_ACCEPT})
            except (BadRequest, NotFound) as error:
                raise enhance_list_error(error, rt, label_selector, field_selector) from None
            if table is None:
                table = page
            else:
                table.setdefault("rows", []).extend(page.get("rows") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return table
            params["continue"] = token

    async def list_objects(self, rt: ResourceType, namespace: str | None, *,
                           label_selector: str | None = None,
                           field_selector: str | None = None) -> list[Obj]:
        """A collection's items (``namespace=None``: every namespace), list errors worded
        as kubectl's."""
        try:
            result = await self.list_all(rt, namespace, all_namespaces=namespace is None,
                                         label_selector=label_selector,
                                         field_selector=field_selector)
        except (BadRequest, NotFound) as error:
            raise enhance_list_error(error, rt, label_selector, field_selector) from None
        return list(result.get("items") or [])

    async def watch_events(self, rt: ResourceType, namespace: str | None, *,
                           resource_version: str, table: bool,
                           label_selector: str | None = None,
                           field_selector: str | None = None) -> AsyncIterator[Obj]:
        """One watch stream; ERROR events are raised as their typed error."""
        params = {"watch": "true", "resourceVersion": resource_version,
                  "allowWatchBookmarks": "true", "labelSelector": label_selector,
                  "fieldSelector": field_selector}
        headers = {"Accept": TABLE_ACCEPT} if table else {}
        params = {k: v for k, v in params.items() if v}
        async with self._http.stream("GET", rt.path(namespace), params=params,
                                     headers=headers,
                                     timeout=httpx.Timeout(None, connect=10.0)) as resp:
            if resp.status_code >= 300:
                body = await resp.aread()
                try:
                    status = json.loads(body)
                except ValueError:
                    status = {"message": body.decode(errors="replace").strip()}
                raise StatusError.from_status(status if isinstance(status, dict) else {},
                                              resp.status_code)
            async for line in resp.aiter_lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    raise StatusError.from_status(event.get("object") or {})
                yield event


def enhance_list_error(error: StatusError, rt: ResourceType, label_selector: str | None,
                       field_selector: str | None) -> StatusError:
    subject = f"{rt.api_version if rt.group else '/' + rt.version}, Resource={rt.plural}"
    if label_selector or field_selector:
        error.message = (f'Unable to find "{subject}" that match label selector '
                         f'"{label_selector or ""}", field selector "{field_selector or ""}": '
                         f'{error.message}')
    else:
        error.message = f'Unable to list "{subject}": {error.message}'
    return error


@dataclass
class Session:
    """What every command runs with: the client, the namespace scope, the timeout."""

    client: CliClient
    config: ClientConfig
    scope: Scope
    timeout: float | None


@asynccontextmanager
async def open_session(a: argparse.Namespace) -> AsyncIterator[Session]:
    config = load_kubeconfig(a.kubeconfig, a.context)
    namespace = a.namespace or config.namespace or "default"
    scope = Scope(namespace, explicit=a.namespace is not None,
                  all_namespaces=bool(getattr(a, "all_namespaces", False)))
    client = CliClient(config, timeout=a.request_timeout or DEFAULT_TIMEOUT)
    try:
        yield Session(client, config, scope, a.request_timeout)
    except httpx.TransportError as exc:
        raise Unreachable(error_line(exc, config.server)) from exc
    finally:
        await client.aclose()


def parse_duration(text: str) -> float | None:
    """``--request-timeout``: Go durations (``1m30s``, ``500ms``) or bare seconds; 0 is
    no timeout."""
    text = text.strip()
    if re.fullmatch(r"\d+", text):
        return float(text) or None
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d*)?)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise CliError("Invalid timeout value. Timeout must be a single integer in seconds, or "
                       "an integer followed by a corresponding time unit (e.g. 1s | 2m | 3h)")
    return sum(float(n) * units[u] for n, u in parts) or None


def check_output(value: str | None, allowed: tuple[str, ...]) -> str | None:
    if value is None or value in allowed:
        return value
    raise CliError(f'unable to match a printer suitable for the output format "{value}", '
                   f'allowed formats are: {",".join(sorted(allowed))}')


# --------------------------------------------------------------------------- get

def _groups(sel: Selection) -> list[tuple[ResourceType, list[Ref] | None, Any]]:
    """What to fetch, in order: a collection, or a run of named objects of one type."""
    groups: list[tuple[ResourceType, list[Ref] | None, Any]] = []
    for c in sel.collections:
        groups.append((c.rt, None, c))
    for ref in sel.refs:
        if groups and groups[-1][1] is not None and groups[-1][0] == ref.rt:
            groups[-1][1].append(ref)
        else:
            groups.append((ref.rt, [ref], None))
    return groups


async def fetch_named(s: Session, ref: Ref, *, table: bool) -> Obj:
    if table:
        return await s.client.get_table(ref.rt, ref.name, ref.namespace)
    return await s.client.get(ref.rt, ref.name, ref.namespace)


def _table_options(a: argparse.Namespace, rt: ResourceType, with_kind: bool) -> TableOptions:
    return TableOptions(wide=a.output == "wide", no_headers=a.no_headers,
                        with_namespace=bool(a.all_namespaces) and rt.namespaced,
                        with_kind=with_kind, show_labels=a.show_labels,
                        label_columns=[c for arg in a.label_columns for c in arg.split(",")
                                       if c])


def _no_resources(s: Session, types: list[ResourceType]) -> str:
    if not s.scope.all_namespaces and types and all(t.namespaced for t in types):
        return f"No resources found in {s.scope.namespace} namespace."
    return "No resources found"


async def run_get(s: Session, a: argparse.Namespace) -> int:
    try:
        template = template_printer(a.output, no_headers=a.no_headers,
                                    allow_missing=a.allow_missing_template_keys != "false")
    except JSONPathError as error:
        raise CliError(str(error)) from None
    if template is not None and a.watch:
        raise CliError("--watch is not supported with -o jsonpath or custom-columns")
    output = "json" if template else check_output(a.output, ("wide", "yaml", "json", "name"))
    sel = select(a.args, s.scope, filenames=a.filename, recursive=a.recursive,
                 selector=bool(a.selector),
                 missing='You must specify the type of resource to get. Use "mkctl '
                         'api-resources" for a complete list of supported resources.')
    if a.watch:
        return await watch_get(s, a, sel, output)
    table = output in (None, "wide")
    errors: list[str] = []
    views: list[TableView] = []
    objects: list[tuple[ResourceType, Obj]] = []
    with_kind = len(sel.types) > 1 or a.show_kind
    for rt, refs, collection in _groups(sel):
        if refs is None:
            if table:
                result = await s.client.list_table(rt, collection.namespace,
                                                   label_selector=a.selector,
                                                   field_selector=a.field_selector)
                views.append(table_view(rt, result, _table_options(a, rt, with_kind)))
            else:
                items = await s.client.list_objects(rt, collection.namespace,
                                                    label_selector=a.selector,
                                                    field_selector=a.field_selector)
                objects += [(rt, o) for o in items]
            continue
        merged: Obj | None = None
        for ref in refs:
            try:
                got = await fetch_named(s, ref, table=table)
            except NotFound as error:
                if not a.ignore_not_found:
                    errors.append(status_line(error))
                continue
            if not table:
                objects.append((rt, got))
            elif merged is None:
                merged = got
            else:
                merged.setdefault("rows", []).extend(got.get("rows") or [])
        if merged is not None:
            views.append(table_view(rt, merged, _table_options(a, rt, with_kind)))
    if table:
        text = print_tables(views, a.no_headers)
        out(text)
        if not text and not errors and not a.ignore_not_found:
            err(_no_resources(s, sel.types))
    elif objects or (output != "name" and not (errors and sel.single_object)):
        # An empty list still prints as an empty List, but a missing object prints nothing.
        if template is None:
            out(print_objects(objects, output or "yaml", as_single=sel.single_object))
        else:
            doc = json.loads(print_objects(objects, "json", as_single=sel.single_object))
            try:
                out(template.print(doc))
            except JSONPathError as error:
                raise CliError(str(error)) from None
    for line in errors:
        err(line)
    return 1 if errors else 0


async def watch_get(s: Session, a: argparse.Namespace, sel: Selection,
                    output: str | None) -> int:
    """``get -w``: the current state, then one row (or object) per event until Ctrl-C or
    ``--request-timeout``; a watch the server ends is resumed from the last version."""
    if len(sel.types) != 1:
        raise CliError("you may only specify a single resource type")
    rt = sel.types[0]
    if len(sel.refs) > 1:
        raise CliError(f"watch is only supported on individual resources and resource "
                       f"collections, but {len(sel.refs)} resources were found")
    field_selector = a.field_selector
    if sel.refs:
        namespace = sel.refs[0].namespace
        await s.client.get(rt, sel.refs[0].name, namespace)
        term = f"metadata.name={sel.refs[0].name}"
        field_selector = f"{field_selector},{term}" if field_selector else term
    else:
        namespace = sel.collections[0].namespace
    table = output in (None, "wide")
    opts = _table_options(a, rt, a.show_kind)
    writer = table_writer(remember_widths=True)
    state = {"header": a.no_headers, "count": 0}

    def show(obj: Obj) -> None:
        if table:
            view = table_view(rt, obj, opts)
            if not view.rows:
                return
            writer.write(render_rows(view, header=not state["header"]))
            state["header"] = True
            out(writer.flush())
        elif output == "name":
            out(object_name(rt, obj) + "\n")
        elif output == "json":
            out(to_json(with_type(rt, obj)))
        else:
            out(("---\n" if state["count"] else "") + to_yaml(with_type(rt, obj)))
        state["count"] += 1

    async def run() -> None:
        if table:
            first = await s.client.list_table(rt, namespace, label_selector=a.selector,
                                              field_selector=field_selector)
            show(first)
            version = (first.get("metadata") or {}).get("resourceVersion") or "0"
        else:
            first = await s.client.list_all(rt, namespace, all_namespaces=namespace is None,
                                            label_selector=a.selector,
                                            field_selector=field_selector)
            for item in first.get("items") or []:
                show(item)
            version = (first.get("metadata") or {}).get("resourceVersion") or "0"
        # Resume after every server-side timeout from the last version seen.
        while True:
            async for event in s.client.watch_events(rt, namespace, resource_version=version,
                                                     table=table, label_selector=a.selector,
                                                     field_selector=field_selector):
                obj = event.get("object") or {}
                version = (obj.get("metadata") or {}).get("resourceVersion") or version
                if event.get("type") != "BOOKMARK":
                    show(obj)

    try:
        await asyncio.wait_for(run(), s.timeout)
    except asyncio.TimeoutError:
        pass
    return 0


# --------------------------------------------------------------------------- describe

async def objects_of(s: Session, sel: Selection, a: argparse.Namespace, *,
                     prefix_match: bool = False) -> tuple[list[Found], list[str]]:
    """The live objects a selection names (collections listed with ``-l``/
    ``--field-selector``), and an error line per missing one. With ``prefix_match`` a name
    that is not found matches every object whose name starts with it (kubectl describe)."""
    found: list[Found] = []
    errors: list[str] = []
    selector = getattr(a, "selector", None)
    field_selector = getattr(a, "field_selector", None)
    for c in sel.collections:
        items = await s.client.list_objects(c.rt, c.namespace, label_selector=selector,
                                            field_selector=field_selector)
        found += [Found(c.rt, obj) for obj in items]
    for ref in sel.refs:
        try:
            found.append(Found(ref.rt, await s.client.get(ref.rt, ref.name, ref.namespace)))
        except NotFound as error:
            matches: list[Obj] = []
            if prefix_match:
                listed = await s.client.list_all(ref.rt, ref.namespace)
                matches = [o for o in listed.get("items") or []
                           if (o.get("metadata") or {}).get("name", "").startswith(ref.name)]
            if matches:
                found += [Found(ref.rt, o, by_prefix=True) for o in matches]
            elif not getattr(a, "ignore_not_found", False):
                errors.append(status_line(error, action=_ACTION.get(a.command, ""),
                                          source=ref.source))
    return found, errors


@dataclass(frozen=True)
class Found:
    rt: ResourceType
    obj: Obj
    by_prefix: bool = False


_ACTION = {"delete": "deleting", "describe": "retrieving", "label": "retrieving",
           "annotate": "retrieving"}


async def run_describe(s: Session, a: argparse.Namespace) -> int:
    sel = select(a.args, s.scope, filenames=a.filename, recursive=a.recursive,
                 selector=bool(a.selector),
                 missing='You must specify the type of resource to describe. Use "mkctl '
                         'api-resources" for a complete list of supported resources.')
    found, errors = await objects_of(s, sel, a, prefix_match=True)
    first = True
    for f in found:
        text = await describers.describe_object(s.client, f.rt, f.obj, a.show_events)
        # kubectl separates descriptions with a blank line, and ends each one found by
        # name prefix with one more newline.
        out((text if first or f.by_prefix else "\n\n" + text) + ("\n" if f.by_prefix else ""))
        first = False
    if not found and not errors:
        err(_no_resources(s, sel.types))
    for line in errors:
        err(line)
    return 1 if errors else 0


# --------------------------------------------------------------------------- apply / create

def last_applied(obj: Obj) -> str:
    """kubectl's ``GetModifiedConfiguration(obj, false)``: the object without its own
    last-applied annotation (an empty ``annotations`` map stays), as compact JSON."""
    clean = copy.deepcopy(obj)
    metadata = clean.setdefault("metadata", {})
    annotations = dict(metadata.get("annotations") or {})
    annotations.pop(LAST_APPLIED, None)
    metadata["annotations"] = annotations
    return compact_json(clean) + "\n"


def with_last_applied(obj: Obj, text: str) -> Obj:
    annotated = copy.deepcopy(obj)
    metadata = annotated.setdefault("metadata", {})
    metadata["annotations"] = {**(metadata.get("annotations") or {}), LAST_APPLIED: text}
    return annotated


def _manifest_object(ref: Ref) -> Obj:
    obj = copy.deepcopy(ref.manifest.obj if ref.manifest else {})
    if ref.namespace:
        obj.setdefault("metadata", {})["namespace"] = ref.namespace
    return obj


async def apply_one(s: Session, ref: Ref) -> str:
    """Client-side apply of one manifest: create it with its last-applied annotation, or
    send the three-way strategic merge patch (last applied, manifest, live object)."""
    obj = _manifest_object(ref)
    config = last_applied(obj)
    try:
        live = await s.client.get(ref.rt, ref.name, ref.namespace)
    except NotFound:
        await s.client.create(ref.rt, with_last_applied(obj, config), ref.namespace,
                              field_validation="Strict")
        return "created"
    modified = with_last_applied(obj, config)
    for attempt in range(5):
        recorded = ((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
        if recorded is None and attempt == 0:
            err(f"Warning: resource {ref.rt.qualified}/{ref.name} is missing the "
                f"{LAST_APPLIED} annotation which is required by mkctl apply. mkctl apply "
                f"should only be used on resources created declaratively by either mkctl "
                f"create --save-config or mkctl apply. The missing annotation will be "
                f"patched automatically.")
        try:
            original = json.loads(recorded) if recorded else None
        except ValueError:
            original = None
        patch = create_three_way_patch(original if isinstance(original, dict) else None,
                                       modified, live, ref.rt.kind)
        if not patch:
            return "unchanged"
        try:
            await s.client.patch(ref.rt, ref.name, patch, ref.namespace,
                                 patch_type="strategic", field_validation="Strict")
            return "configured"
        except Conflict:
            live = await s.client.get(ref.rt, ref.name, ref.namespace)
    raise Conflict(f'Operation cannot be fulfilled on {ref.rt.qualified} "{ref.name}": '
                   f"the object has been modified; please apply your changes to the latest "
                   f"version and try again")


async def create_one(s: Session, ref: Ref, save_config: bool) -> str:
    obj = _manifest_object(ref)
    if save_config:
        obj = with_last_applied(obj, last_applied(obj))
    await s.client.create(ref.rt, obj, ref.namespace, field_validation="Strict")
    return "created"


async def for_each_manifest(s: Session, a: argparse.Namespace, verb: str, action: str,
                            step: Callable[[Ref], Awaitable[str]]) -> int:
    """Run ``step`` on every object of ``-f``, printing ``kind/name <result>`` or one
    error line per object, and going on with the rest."""
    manifests = read_manifests(a.filename, a.recursive)
    if not manifests:
        raise CliError(f"no objects passed to {verb}")
    failed = False
    for manifest in manifests:
        try:
            ref = manifest_ref(manifest, s.scope)
        except CliError as error:
            err(f"error: {error}")
            failed = True
            continue
        try:
            result = await step(ref)
        except StatusError as error:
            err(status_line(error, action=action, source=ref.source))
            failed = True
            continue
        if a.output == "name":
            out(object_name(ref.rt, ref.manifest.obj) + "\n")
        else:
            out(f"{object_name(ref.rt, ref.manifest.obj)} {result}\n")
    return 1 if failed else 0


async def run_apply(s: Session, a: argparse.Namespace) -> int:
    check_output(a.output, ("name",))
    return await for_each_manifest(s, a, "apply", "applying", lambda ref: apply_one(s, ref))


async def run_create(s: Session, a: argparse.Namespace) -> int:
    check_output(a.output, ("name",))
    if a.args:
        return await create_namespace(s, a)
    if not a.filename:
        raise CliError("must specify one of -f and -k")
    return await for_each_manifest(s, a, "create", "creating",
                                   lambda ref: create_one(s, ref, a.save_config))


async def create_namespace(s: Session, a: argparse.Namespace) -> int:
    if a.filename or len(a.args) != 2 or a.args[0] not in ("namespace", "ns"):
        raise CliError(f"unknown command \"{' '.join(a.args)}\" for \"mkctl create\" "
                       f"(only 'create -f PATH' and 'create namespace NAME' are supported)")
    await s.client.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                         "metadata": {"name": a.args[1]}})
    out(f"namespace/{a.args[1]} created\n")
    return 0


# --------------------------------------------------------------------------- delete

_CASCADE = {"background": "Background", "true": "Background", "foreground": "Foreground",
            "orphan": "Orphan", "false": "Orphan"}


async def run_delete(s: Session, a: argparse.Namespace) -> int:
    policy = _CASCADE.get(a.cascade.lower())
    if policy is None:
        raise CliError(f'invalid cascade value ({a.cascade}). Must be "background", '
                       f'"foreground", or "orphan".')
    grace = a.grace_period if a.grace_period is not None and a.grace_period >= 0 else None
    if a.now:
        grace = 1
    if a.force:
        err("Warning: Immediate deletion does not wait for confirmation that the running "
            "resource has been terminated. The resource may continue to run on the cluster "
            "indefinitely.")
        grace = 0 if grace is None else grace
    sel = select(a.args, s.scope, filenames=a.filename, recursive=a.recursive,
                 selector=bool(a.selector), select_all=a.all, need_names=True,
                 missing="You must provide one or more resources by argument or filename.")
    refs = list(sel.refs)
    for c in sel.collections:
        for obj in await s.client.list_objects(c.rt, c.namespace, label_selector=a.selector,
                                               field_selector=a.field_selector):
            md = obj.get("metadata") or {}
            refs.append(Ref(c.rt, md.get("name", ""), md.get("namespace") or None))
    if not refs:
        out("No resources found\n")
        return 0
    if s.scope.explicit and any(not ref.rt.namespaced for ref in refs):
        err("Warning: deleting cluster-scoped resources, not scoped to the provided namespace")
    failed = False
    for ref in refs:
        try:
            await s.client.delete(ref.rt, ref.name, ref.namespace, grace_period_seconds=grace,
                                  propagation_policy=policy)
        except NotFound as error:
            if not a.ignore_not_found:
                err(status_line(error, action="deleting", source=ref.source))
                failed = True
            continue
        except StatusError as error:
            err(status_line(error, action="deleting", source=ref.source))
            failed = True
            continue
        if a.output == "name":
            out(f"{kind_prefix(ref.rt)}/{ref.name}\n")
        else:
            out(f'{kind_prefix(ref.rt)} "{ref.name}" deleted\n')
    return 1 if failed else 0


# --------------------------------------------------------------------------- label / annotate

def split_changes(args: list[str], what: str) -> tuple[list[str], dict[str, str], list[str]]:
    """Resource arguments, then ``k=v`` settings and ``k-`` removals (kubectl's rules)."""
    resources: list[str] = []
    sets: dict[str, str] = {}
    removals: list[str] = []
    for arg in args:
        if "=" in arg:
            key, _, value = arg.partition("=")
            if not key:
                raise CliError(f"invalid {what}: {arg!r}")
            sets[key] = value
        elif arg.endswith("-") and len(arg) > 1:
            removals.append(arg[:-1])
        elif sets or removals:
            raise CliError(f"all resources must be specified before {what} changes: {arg}")
        else:
            resources.append(arg)
    if not sets and not removals:
        raise CliError(f"at least one {what} update is required")
    article = "a" if what == "label" else "an"
    if any(key in sets for key in removals):
        raise CliError(f"can not both modify and remove {article} {what} in the same command")
    return resources, sets, removals


def overwrite_conflicts(current: dict[str, str], sets: dict[str, str], what: str) -> str:
    clashes = [(k, current[k]) for k, v in sets.items() if k in current and current[k] != v]
    if not clashes:
        return ""
    if what == "label":
        return ", ".join(f"'{k}' already has a value ({v}), and --overwrite is false"
                         for k, v in clashes)
    return ("--overwrite is false but found the following declared annotation(s): " +
            "; ".join(f"'{k}' already has a value ({v})" for k, v in clashes))


async def run_label(s: Session, a: argparse.Namespace) -> int:
    return await update_metadata(s, a, "label", "labels")


async def run_annotate(s: Session, a: argparse.Namespace) -> int:
    return await update_metadata(s, a, "annotation", "annotations")


async def update_metadata(s: Session, a: argparse.Namespace, what: str, key: str) -> int:
    """``label`` and ``annotate``: one JSON merge patch of ``metadata.<key>`` per object."""
    resource_args, sets, removals = split_changes(a.args, what)
    sel = select(resource_args, s.scope, filenames=a.filename, recursive=a.recursive,
                 selector=bool(a.selector), select_all=a.all, need_names=True,
                 missing="You must provide one or more resources by argument or filename.")
    found, errors = await objects_of(s, sel, a)
    failed = bool(errors)
    for line in errors:
        err(line)
    for f in found:
        rt, obj = f.rt, f.obj
        current = dict(((obj.get("metadata") or {}).get(key) or {}))
        if not a.overwrite:
            clash = overwrite_conflicts(current, sets, what)
            if clash:
                err(f"error: {clash}")
                failed = True
                continue
        updated = {**current, **sets}
        for name in removals:
            if name in updated:
                del updated[name]
            elif what == "label":
                out(f'label "{name}" not found.\n')
        name = object_name(rt, obj)
        if updated != current:
            patch = {"metadata": {key: {**{k: v for k, v in sets.items() if current.get(k) != v},
                                        **{k: None for k in removals if k in current}}}}
            md = obj.get("metadata") or {}
            try:
                await s.client.patch(rt, md.get("name", ""), patch, md.get("namespace") or None)
            except StatusError as error:
                err(status_line(error))
                failed = True
                continue
        if what == "annotation":
            verb = "annotated"
        elif updated == current:
            verb = "not labeled"
        elif not a.overwrite and len(compact_json(updated)) < len(compact_json(current)):
            verb = "unlabeled"
        else:
            verb = "labeled"
        out(f"{name} {verb}\n")
    return 1 if failed else 0


# --------------------------------------------------------------------------- discovery

async def api_resources(s: Session) -> list[dict[str, Any]]:
    """Every top-level resource the server's discovery documents list."""
    group_versions: list[tuple[str, str]] = []
    core = await s.client.request("GET", "/api")
    group_versions += [("", v) for v in core.get("versions") or []]
    groups = await s.client.request("GET", "/apis")
    for group in groups.get("groups") or []:
        preferred = (group.get("preferredVersion") or {}).get("groupVersion")
        if preferred:
            group_versions.append((group.get("name", ""), preferred))
    rows = []
    for group, gv in group_versions:
        path = f"/api/{gv}" if not group else f"/apis/{gv}"
        listing = await s.client.request("GET", path)
        for res in listing.get("resources") or []:
            if "/" in res.get("name", ""):
                continue
            rows.append({"name": res.get("name", ""), "group": group,
                         "shortNames": res.get("shortNames") or [],
                         "apiVersion": listing.get("groupVersion") or gv,
                         "namespaced": bool(res.get("namespaced")), "kind": res.get("kind", ""),
                         "verbs": res.get("verbs") or [],
                         "categories": res.get("categories") or []})
    rows.sort(key=lambda r: (r["group"], r["name"]))
    return rows


async def run_api_resources(s: Session, a: argparse.Namespace) -> int:
    output = check_output(a.output, ("wide", "name"))
    rows = await api_resources(s)
    if a.namespaced is not None:
        wanted = a.namespaced.lower() in ("true", "1", "yes")
        rows = [r for r in rows if r["namespaced"] == wanted]
    if a.api_group is not None:
        rows = [r for r in rows if r["group"] == a.api_group]
    if output == "name":
        out("".join(f"{r['name']}.{r['group']}\n" if r["group"] else f"{r['name']}\n"
                    for r in rows))
        return 0
    writer = table_writer()
    headers = ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    if output == "wide":
        headers += ["VERBS", "CATEGORIES"]
    if not a.no_headers:
        writer.write("\t".join(headers) + "\n")
    for r in rows:
        cells = [r["name"], ",".join(r["shortNames"]), r["apiVersion"],
                 "true" if r["namespaced"] else "false", r["kind"]]
        if output == "wide":
            cells += [",".join(sorted(r["verbs"])), ",".join(r["categories"])]
        writer.write("\t".join(cells) + "\n")
    out(writer.flush())
    return 0


def client_version() -> dict[str, str]:
    major, minor = (__version__.split(".") + ["0"])[:2]
    return {"major": major, "minor": minor, "gitVersion": f"v{__version__}",
            "gitCommit": "", "gitTreeState": "", "buildDate": "",
            "goVersion": f"python{platform.python_version()}",
            "compiler": platform.python_implementation().lower(),
            "platform": f"{platform.system().lower()}/{_arch()}"}


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


async def run_version(a: argparse.Namespace) -> int:
    output = check_output(a.output, ("json", "yaml"))
    info: dict[str, Any] = {"clientVersion": client_version()}
    failure: BaseException | None = None
    if not a.client:
        try:
            async with open_session(a) as s:
                info["serverVersion"] = await s.client.request("GET", "/version")
        except (StatusError, Unreachable, KubeconfigError) as exc:
            failure = exc
    if output == "json":
        out(json.dumps(info, indent=2) + "\n")
    elif output == "yaml":
        out(to_yaml(info))
    else:
        out(f"Client Version: {info['clientVersion']['gitVersion']}\n")
        if "serverVersion" in info:
            out(f"Server Version: {info['serverVersion'].get('gitVersion', '')}\n")
    if failure is not None:
        err(error_line(failure))
        return 1
    return 0


async def run_cluster_info(s: Session, a: argparse.Namespace) -> int:
    server = s.config.server
    services = await s.client.list_all("services", "kube-system",
                                       label_selector="kubernetes.io/cluster-service=true")
    lines = [f"Kubernetes control plane is running at {server}"]
    for svc in services.get("items") or []:
        md = svc.get("metadata") or {}
        name = (md.get("labels") or {}).get("kubernetes.io/name") or md.get("name", "")
        ports = (svc.get("spec") or {}).get("ports") or []
        target = md.get("name", "")
        if ports and ports[0].get("name"):
            target = f"{target}:{ports[0]['name']}"
        lines.append(f"{name} is running at {server}/api/v1/namespaces/kube-system/services/"
                     f"{target}/proxy")
    out("\n".join(lines) + "\n\nTo further debug and diagnose cluster problems, use "
                           "'mkctl describe' and 'mkctl get events -A'.\n")
    return 0


# --------------------------------------------------------------------------- arguments

class ArgParser(argparse.ArgumentParser):
    """argparse that reports misuse as a ``CliError`` (one line, exit 1) like kubectl."""

    def error(self, message: str) -> None:  # type: ignore[override]
        unknown = message.removeprefix("unrecognized arguments: ")
        if unknown != message and unknown.startswith("-"):
            message = f"unknown flag: {unknown.split()[0]}"
        raise CliError(f"{message} (see '{self.prog} --help')")


GLOBAL_WITH_VALUE = ("--kubeconfig", "--context", "-n", "--namespace", "--request-timeout")


def add_global_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("global options")
    g.add_argument("--kubeconfig", help="path to the kubeconfig file (default: $KUBECONFIG, "
                                        "then ~/.minik8s/kubeconfig)")
    g.add_argument("--context", help="the kubeconfig context to use")
    g.add_argument("-n", "--namespace", help="the namespace scope of this request")
    g.add_argument("--request-timeout", default="0", metavar="DURATION",
                   help="how long to wait for a request (and for -w) before giving up; "
                        "0 means no limit")


def _files(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("-f", "--filename", action="append", required=required, metavar="PATH",
                   help="a file, a folder or - for stdin (repeatable)")
    p.add_argument("-R", "--recursive", action="store_true",
                   help="process folders given with -f recursively")


def _selection(p: argparse.ArgumentParser) -> None:
    p.add_argument("-l", "--selector", help="label selector (e.g. app=web,tier!=db)")
    p.add_argument("--field-selector", help="field selector (e.g. metadata.name=web)")
    p.add_argument("-A", "--all-namespaces", action="store_true",
                   help="act on objects of every namespace")


def configure_get(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="*", metavar="TYPE[/NAME] [NAME...]")
    p.add_argument("-o", "--output", help="wide|yaml|json|name|jsonpath=...|"
                                          "custom-columns=...")
    p.add_argument("--allow-missing-template-keys", default="true", choices=("true", "false"),
                   help="ignore missing keys in -o jsonpath templates")
    _selection(p)
    _files(p)
    p.add_argument("-w", "--watch", action="store_true", help="print changes as they happen")
    p.add_argument("--show-labels", action="store_true", help="add a LABELS column")
    p.add_argument("-L", "--label-columns", action="append", default=[], metavar="KEY",
                   help="add a column with the value of this label")
    p.add_argument("--show-kind", action="store_true", help="prefix names with their kind")
    p.add_argument("--no-headers", action="store_true", help="omit the header line")
    p.add_argument("--ignore-not-found", action="store_true",
                   help="do not report objects that do not exist")


def configure_describe(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="*", metavar="TYPE[/NAME] [NAME...]")
    _selection(p)
    _files(p)
    p.add_argument("--show-events", type=_bool_flag, default=True, metavar="BOOL",
                   help="list the events of each object (default true)")


def _bool_flag(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f'invalid boolean "{text}"')


def configure_apply(p: argparse.ArgumentParser) -> None:
    _files(p, required=True)
    p.add_argument("-o", "--output", help="name")


def configure_create(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="*", metavar="namespace NAME")
    _files(p)
    p.add_argument("-o", "--output", help="name")
    p.add_argument("--save-config", action="store_true",
                   help="record the manifest as the last-applied configuration")


def configure_delete(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="*", metavar="TYPE[/NAME] [NAME...]")
    _selection(p)
    _files(p)
    p.add_argument("--all", action="store_true", help="delete every object of the types")
    p.add_argument("--grace-period", type=int, default=-1, metavar="SECONDS",
                   help="seconds to let the object terminate (-1: its own default)")
    p.add_argument("--now", action="store_true", help="same as --grace-period=1")
    p.add_argument("--force", action="store_true", help="delete immediately (grace 0)")
    p.add_argument("--cascade", default="background",
                   help="background|foreground|orphan (default background)")
    p.add_argument("--ignore-not-found", action="store_true",
                   help="do not report objects that do not exist")
    p.add_argument("--wait", type=_bool_flag, default=False, metavar="BOOL",
                   help="accepted for kubectl compatibility; mkctl does not wait")
    p.add_argument("-o", "--output", help="name")


def configure_metadata(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="*", metavar="TYPE NAME KEY=VAL KEY-")
    _selection(p)
    _files(p)
    p.add_argument("--all", action="store_true", help="every object of the type")
    p.add_argument("--overwrite", action="store_true", help="allow changing existing values")


def configure_api_resources(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", help="wide|name")
    p.add_argument("--namespaced", help="true: only namespaced kinds; false: only "
                                        "cluster-scoped ones")
    p.add_argument("--api-group", help="only this API group ('' for core)")
    p.add_argument("--no-headers", action="store_true", help="omit the header line")


def configure_version(p: argparse.ArgumentParser) -> None:
    p.add_argument("--client", action="store_true", help="only the client version")
    p.add_argument("-o", "--output", help="json|yaml")


def configure_none(p: argparse.ArgumentParser) -> None:
    return None


Runner = Callable[[Session, argparse.Namespace], Awaitable[int]]

COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Any]] = {
    "get": ("Display one or many resources", configure_get, run_get),
    "describe": ("Show details of a resource or group of resources", configure_describe,
                 run_describe),
    "apply": ("Apply a configuration to a resource by file name or stdin", configure_apply,
              run_apply),
    "create": ("Create a resource from a file or from stdin", configure_create, run_create),
    "delete": ("Delete resources by file names, stdin, resources and names, or by "
               "resources and label selector", configure_delete, run_delete),
    "label": ("Update the labels on a resource", configure_metadata, run_label),
    "annotate": ("Update the annotations on a resource", configure_metadata, run_annotate),
    "api-resources": ("Print the supported API resources on the server",
                      configure_api_resources, run_api_resources),
    "version": ("Print the client and server version information", configure_version, None),
    "cluster-info": ("Display cluster information", configure_none, run_cluster_info),
}

from minik8s.cli import podcmds as _podcmds  # noqa: E402  logs, exec, cordon, uncordon, drain

COMMANDS.update(_podcmds.COMMANDS)

from minik8s.cli import rollout as _rollout  # noqa: E402  rollout ..., scale

COMMANDS.update(_rollout.COMMANDS)

from minik8s.cli import workloads as _workloads  # noqa: E402  set image, create deploy|job, events

COMMANDS.update(_workloads.COMMANDS)

from minik8s.cli import autoscale as _autoscale  # noqa: E402  top, autoscale

COMMANDS.update(_autoscale.COMMANDS)

from minik8s.cli import portforward as _portforward  # noqa: E402  port-forward

COMMANDS.update(_portforward.COMMANDS)

from minik8s.cli import certificate as _certificate  # noqa: E402  certificate approve|deny

COMMANDS.update(_certificate.COMMANDS)


def _split_command(argv: list[str]) -> tuple[str | None, list[str]]:
    """The command word (kubectl lets global flags come first) and the remaining args."""
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            break
        if token.startswith("-"):
            i += 2 if token in GLOBAL_WITH_VALUE else 1
            continue
        return token, argv[:i] + argv[i + 1:]
    return None, argv


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["mkctl controls the minik8s cluster manager (kubectl's commands and output).",
             "", "Commands:"]
    lines += [f"  {name.ljust(width)}   {help_text}"
              for name, (help_text, _, _) in COMMANDS.items()]
    lines += ["", "Global options: --kubeconfig PATH, --context NAME, -n/--namespace NS, "
                  "--request-timeout DURATION", "",
              "Use \"mkctl <command> --help\" for more information about a given command."]
    return "\n".join(lines) + "\n"


def parse(argv: list[str]) -> argparse.Namespace:
    command, rest = _split_command(argv)
    if command is None:
        if any(t in ("-h", "--help") for t in argv) or not argv:
            out(usage())
            raise SystemExit(0)
        raise CliError("no command given (see 'mkctl --help')")
    if command not in COMMANDS:
        raise CliError(f'unknown command "{command}" for "mkctl"')
    help_text, configure, _ = COMMANDS[command]
    p = ArgParser(prog=f"mkctl {command}", description=help_text)
    configure(p)
    add_global_options(p)
    a = p.parse_intermixed_args(rest)
    a.command = command
    a.request_timeout = parse_duration(a.request_timeout)
    return a


async def dispatch(a: argparse.Namespace) -> int:
    if a.command == "version":
        return await run_version(a)
    runner: Runner = COMMANDS[a.command][2]
    async with open_session(a) as s:
        return await runner(s, a)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        a = parse(argv)
        return asyncio.run(dispatch(a))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:  # every failure becomes one line; MKCTL_DEBUG shows it
        if os.environ.get("MKCTL_DEBUG") == "1":
            raise
        err(error_line(exc))
        return 1


__all__ = ["CliClient", "COMMANDS", "Session", "apply_one", "error_line", "last_applied",
           "main", "parse", "parse_duration", "status_line"]


if __name__ == "__main__":
    sys.exit(main())
