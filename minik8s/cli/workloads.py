"""``mkctl set image``, ``mkctl create deployment|job`` and ``mkctl get events`` sorted by
time: the imperative workload commands, with kubectl's objects, output lines and errors.

``create`` and ``get`` keep every shape ``mkctl`` already had and only add these: a
``create`` whose first argument is ``deployment`` or ``job`` builds the object kubectl's
generator builds (labels ``app: NAME``, container named after the image, a Job with
``restartPolicy: Never`` or copied from a CronJob's ``jobTemplate`` with the
``cronjob.kubernetes.io/instantiate: manual`` annotation), and a ``get`` of the events
collection prints the server's Table rows in time order, as
``kubectl get events --sort-by=.lastTimestamp`` does (the Table is asked for with
``includeObject=Object`` so each row carries the timestamps to sort by). ``set image`` sends
one strategic merge patch of the pod template's containers, merged by name.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import sys
from datetime import datetime, timezone
from typing import Any, Callable

from minik8s.api.errors import NotFound, StatusError
from minik8s.api.meta import parse_time
from minik8s.api.registry import ResourceType
from minik8s.cli.errors import CliError
from minik8s.cli.printers import object_name
from minik8s.cli.resources import resolve_type

Obj = dict[str, Any]

INSTANTIATE = "cronjob.kubernetes.io/instantiate"
_EPOCH = datetime.min.replace(tzinfo=timezone.utc)


def _print(line: str) -> None:
    sys.stdout.write(line.rstrip("\n") + "\n")
    sys.stdout.flush()


def _mkctl() -> Any:
    # mkctl imports this module at its bottom: reach its helpers lazily.
    from minik8s.cli import mkctl
    return mkctl


# --------------------------------------------------------------------------- set image

# Where each kind keeps its pod spec.
_POD_SPEC_PATH: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}


def pod_spec_of(obj: Obj) -> Obj:
    node: Any = obj
    for key in _POD_SPEC_PATH.get(str(obj.get("kind") or ""), ("spec", "template", "spec")):
        node = (node or {}).get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def parse_images(pairs: list[str]) -> dict[str, str]:
    """``CONTAINER=IMAGE`` arguments (``*`` for every container), in order."""
    images: dict[str, str] = {}
    for pair in pairs:
        name, _, image = pair.partition("=")
        if not name or not image:
            raise CliError(f"invalid image argument: {pair!r}, expected CONTAINER=IMAGE")
        images[name] = image
    return images


def image_patch(obj: Obj, images: dict[str, str]) -> tuple[Obj, list[str]]:
    """The strategic merge patch setting ``images`` in ``obj``'s pod spec (empty when
    nothing changes) and the container names that were not found (kubectl's errors)."""
    spec = pod_spec_of(obj)
    changed: dict[str, list[Obj]] = {}
    missing: list[str] = []
    for name, image in images.items():
        found = False
        for field in ("initContainers", "containers"):
            for c in spec.get(field) or []:
                if name == "*" or c.get("name") == name:
                    found = True
                    if c.get("image") != image:
                        changed.setdefault(field, []).append({"name": c.get("name"),
                                                              "image": image})
        if not found:
            missing.append(name)
    if not changed:
        return {}, missing
    patch: Obj = dict(changed)
    for key in reversed(_POD_SPEC_PATH.get(str(obj.get("kind") or ""),
                                           ("spec", "template", "spec"))):
        patch = {key: patch}
    return patch, missing


def configure_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", metavar="image", choices=["image"],
                   help="what to set (only 'image')")
    p.add_argument("args", nargs="+", metavar="TYPE/NAME... CONTAINER=IMAGE...")
    p.add_argument("-l", "--selector", help="label selector of the objects to update")
    p.add_argument("--all", action="store_true", help="every object of the type")
    p.add_argument("-o", "--output", help="name")


async def run_set(s: Any, a: argparse.Namespace) -> int:
    mk = _mkctl()
    mk.check_output(a.output, ("name",))
    resources = [x for x in a.args if "=" not in x]
    images = parse_images([x for x in a.args if "=" in x])
    if not images:
        raise CliError("at least one image update is required")
    if not resources:
        raise CliError("one or more resources must be specified as <resource> <name> or "
                       "<resource>/<name>")
    targets: list[tuple[ResourceType, Obj]] = []
    if all("/" in r for r in resources):
        for r in resources:
            kind, _, name = r.partition("/")
            rt = resolve_type(kind)
            targets.append((rt, await _get(s, rt, name)))
    else:
        rt = resolve_type(resources[0])
        names = resources[1:]
        if names:
            for name in names:
                targets.append((rt, await _get(s, rt, name)))
        elif a.selector or a.all:
            ns = None if s.scope.all_namespaces else s.scope.namespace
            for obj in await s.client.list_objects(rt, ns, label_selector=a.selector):
                targets.append((rt, obj))
        else:
            raise CliError("resource(s) were provided, but no name was specified")
    failed = False
    for rt, obj in targets:
        if rt.kind not in _POD_SPEC_PATH:
            mk.err(f"error: {rt.plural}/{obj['metadata'].get('name')} the object is not a "
                   f"pod or does not have a pod template")
            failed = True
            continue
        obj = {"kind": rt.kind, **obj}
        patch, missing = image_patch(obj, images)
        for name in missing:
            mk.err(f'error: unable to find container named "{name}"')
            failed = True
        if not patch:
            continue
        md = obj["metadata"]
        try:
            await s.client.patch(rt, md["name"], patch, md.get("namespace") or None,
                                 patch_type="strategic")
        except StatusError as error:
            mk.err(mk.status_line(error))
            failed = True
            continue
        _print(object_name(rt, obj) if a.output == "name"
               else f"{object_name(rt, obj)} image updated")
    return 1 if failed else 0


async def _get(s: Any, rt: ResourceType, name: str) -> Obj:
    try:
        return await s.client.get(rt, name, s.scope.of(rt))
    except NotFound:
        raise CliError(f'{rt.plural}{"." + rt.group if rt.group else ""} "{name}" not found') \
            from None


# --------------------------------------------------------------------------- create

def container_name(image: str) -> str:
    """kubectl's ``parseImageName``: the last path element without tag or digest."""
    base = image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]
    return base.replace("_", "-").lower() or "container"


def deployment_object(name: str, images: list[str], *, replicas: int = 1, port: int = -1,
                      command: list[str] | None = None) -> Obj:
    """The Deployment ``kubectl create deployment`` builds."""
    labels = {"app": name}
    containers: list[Obj] = []
    seen: set[str] = set()
    for image in images:
        cname = container_name(image)
        if cname in seen:
            cname = f"{cname}-{len(containers)}"
        seen.add(cname)
        c: Obj = {"name": cname, "image": image, "resources": {}}
        if command:
            c["command"] = list(command)
        containers.append(c)
    if port >= 0 and containers:
        containers[0]["ports"] = [{"containerPort": port}]
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": dict(labels)},
            "spec": {"replicas": replicas, "selector": {"matchLabels": dict(labels)},
                     "strategy": {},
                     "template": {"metadata": {"labels": dict(labels)},
                                  "spec": {"containers": containers}}}}


def job_object(name: str, image: str, command: list[str] | None = None) -> Obj:
    """The Job ``kubectl create job NAME --image`` builds."""
    c: Obj = {"name": name, "image": image, "resources": {}}
    if command:
        c["command"] = list(command)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"template": {"metadata": {},
                                  "spec": {"containers": [c], "restartPolicy": "Never"}}}}


def job_from_cronjob(name: str, cj: Obj) -> Obj:
    """The Job ``kubectl create job NAME --from=cronjob/CJ`` builds."""
    template = copy.deepcopy((cj.get("spec") or {}).get("jobTemplate") or {})
    tmd = template.get("metadata") or {}
    md = cj.get("metadata") or {}
    annotations = {INSTANTIATE: "manual", **(tmd.get("annotations") or {})}
    job_md: Obj = {"name": name, "annotations": annotations,
                   "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob",
                                        "name": md.get("name", ""), "uid": md.get("uid", ""),
                                        "controller": True}]}
    if tmd.get("labels"):
        job_md["labels"] = dict(tmd["labels"])
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": job_md,
            "spec": template.get("spec") or {}}


def configure_create(p: argparse.ArgumentParser) -> None:
    _mkctl().configure_create(p)
    p.add_argument("--image", action="append", default=[], metavar="IMAGE",
                   help="create deployment|job: the image (deployment: repeatable)")
    p.add_argument("--replicas", type=int, default=1,
                   help="create deployment: the number of replicas (default 1)")
    p.add_argument("--port", type=int, default=-1,
                   help="create deployment: the port the first container exposes")
    p.add_argument("--from", dest="from_", metavar="cronjob/NAME",
                   help="create job: copy the job template of this CronJob")


async def run_create(s: Any, a: argparse.Namespace) -> int:
    mk = _mkctl()
    kind = a.args[0] if a.args else ""
    if kind in ("deployment", "deploy", "deployments"):
        return await _create_deployment(s, a)
    if kind in ("job", "jobs"):
        return await _create_job(s, a)
    if a.image or a.from_:
        raise CliError("--image and --from are only valid with 'create deployment' and "
                       "'create job'")
    return await mk.run_create(s, a)


def _name_and_command(a: argparse.Namespace, what: str) -> tuple[str, list[str]]:
    if a.filename:
        raise CliError(f"create {what} takes no -f")
    if len(a.args) < 2:
        raise CliError("NAME is required")
    return a.args[1], a.args[2:]


async def _create(s: Any, a: argparse.Namespace, rt: ResourceType, obj: Obj) -> int:
    mk = _mkctl()
    mk.check_output(a.output, ("name",))
    if a.save_config:
        obj = mk.with_last_applied(obj, mk.last_applied(obj))
    await s.client.create(rt, obj, s.scope.namespace, field_validation="Strict")
    name = object_name(rt, obj)
    _print(name if a.output == "name" else f"{name} created")
    return 0


async def _create_deployment(s: Any, a: argparse.Namespace) -> int:
    name, command = _name_and_command(a, "deployment")
    if not a.image:
        raise CliError("required flag(s) \"image\" not set")
    if command and len(a.image) > 1:
        raise CliError("cannot specify multiple --image options and command")
    if a.replicas < 0:
        raise CliError("--replicas must be greater than or equal to 0")
    obj = deployment_object(name, a.image, replicas=a.replicas, port=a.port, command=command)
    return await _create(s, a, resolve_type("deployments"), obj)


async def _create_job(s: Any, a: argparse.Namespace) -> int:
    name, command = _name_and_command(a, "job")
    if a.from_ and a.image:
        raise CliError("either --image or --from must be specified")
    if a.from_:
        if command:
            raise CliError("cannot specify --from and command")
        kind, _, source = a.from_.partition("/")
        if not source or resolve_type(kind).kind != "CronJob":
            raise CliError(f"from must be an existing cronjob: {a.from_}")
        rt = resolve_type("cronjobs")
        try:
            cj = await s.client.get(rt, source, s.scope.namespace)
        except NotFound:
            raise CliError(f'cronjobs.batch "{source}" not found') from None
        obj = job_from_cronjob(name, cj)
    elif a.image:
        if len(a.image) > 1:
            raise CliError("only one --image can be given to create job")
        obj = job_object(name, a.image[0], command)
    else:
        raise CliError("either --image or --from must be specified")
    return await _create(s, a, resolve_type("jobs"), obj)


# --------------------------------------------------------------------------- get events

def event_time(ev: Obj) -> datetime:
    """When an event last happened: ``lastTimestamp``, else the series' last observation,
    ``eventTime``, ``firstTimestamp``, the creation time."""
    md = ev.get("metadata") or {}
    for value in (ev.get("lastTimestamp"), (ev.get("series") or {}).get("lastObservedTime"),
                  ev.get("eventTime"), ev.get("firstTimestamp"), md.get("creationTimestamp")):
        when = parse_time(value)
        if when is not None:
            return when
    return _EPOCH


def sort_rows(table: Obj) -> Obj:
    """A Table of events with its rows in time order, oldest first (stable for ties)."""
    rows = list(table.get("rows") or [])
    rows.sort(key=lambda row: event_time(row.get("object") or {}))
    table["rows"] = rows
    return table


def _is_events(a: argparse.Namespace) -> bool:
    if a.filename or len(a.args) != 1 or "/" in a.args[0] or "," in a.args[0]:
        return False
    try:
        rt = resolve_type(a.args[0])
    except CliError:
        return False
    return rt.kind == "Event" and rt.group == ""


async def list_events_table(s: Any, rt: ResourceType, namespace: str | None, *,
                            label_selector: str | None,
                            field_selector: str | None) -> Obj:
    mk = _mkctl()
    params: dict[str, Any] = {"labelSelector": label_selector,
                              "fieldSelector": field_selector, "limit": mk.PAGE_SIZE,
                              "includeObject": "Object"}
    table: Obj | None = None
    while True:
        try:
            page = await s.client.request("GET", rt.path(namespace), params=params,
                                          headers={"Accept": mk.TABLE_ACCEPT})
        except StatusError as error:
            if error.code in (400, 404):
                raise mk.enhance_list_error(error, rt, label_selector, field_selector) \
                    from None
            raise
        if table is None:
            table = page
        else:
            table.setdefault("rows", []).extend(page.get("rows") or [])
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return sort_rows(table)
        params["continue"] = token


async def run_get(s: Any, a: argparse.Namespace) -> int:
    mk = _mkctl()
    if not _is_events(a):
        return await mk.run_get(s, a)
    output = mk.check_output(a.output, ("wide", "yaml", "json", "name"))
    rt = resolve_type(a.args[0])
    namespace = None if s.scope.all_namespaces else s.scope.namespace
    opts = mk._table_options(a, rt, a.show_kind)
    table = output in (None, "wide")
    if table:
        first = await list_events_table(s, rt, namespace, label_selector=a.selector,
                                        field_selector=a.field_selector)
    else:
        first = await s.client.list_all(rt, namespace, all_namespaces=namespace is None,
                                        label_selector=a.selector,
                                        field_selector=a.field_selector)
        first["items"] = sorted(first.get("items") or [], key=event_time)
    if not a.watch:
        if table:
            text = mk.print_tables([mk.table_view(rt, first, opts)], a.no_headers)
            mk.out(text)
            if not text and not a.ignore_not_found:
                mk.err(mk._no_resources(s, [rt]))
        else:
            mk.out(mk.print_objects([(rt, o) for o in first["items"]], output or "yaml",
                                    as_single=False))
        return 0
    return await _watch_events(s, a, rt, namespace, first, output, opts)


async def _watch_events(s: Any, a: argparse.Namespace, rt: ResourceType,
                        namespace: str | None, first: Obj, output: str | None,
                        opts: Any) -> int:
    """``get events -w``: the sorted list, then a row per event as it is recorded."""
    mk = _mkctl()
    table = output in (None, "wide")
    writer = mk.table_writer(remember_widths=True)
    state = {"header": a.no_headers, "count": 0}

    def show_table(obj: Obj) -> None:
        view = mk.table_view(rt, obj, opts)
        if not view.rows:
            return
        writer.write(mk.render_rows(view, header=not state["header"]))
        state["header"] = True
        mk.out(writer.flush())

    def show_object(obj: Obj) -> None:
        if output == "name":
            mk.out(object_name(rt, obj) + "\n")
        elif output == "json":
            mk.out(mk.to_json(mk.with_type(rt, obj)))
        else:
            mk.out(("---\n" if state["count"] else "") + mk.to_yaml(mk.with_type(rt, obj)))
        state["count"] += 1

    async def run() -> None:
        if table:
            show_table(first)
        else:
            for item in first.get("items") or []:
                show_object(item)
        version = (first.get("metadata") or {}).get("resourceVersion") or "0"
        while True:
            async for event in s.client.watch_events(rt, namespace, resource_version=version,
                                                     table=table, label_selector=a.selector,
                                                     field_selector=a.field_selector):
                obj = event.get("object") or {}
                version = (obj.get("metadata") or {}).get("resourceVersion") or version
                if event.get("type") == "BOOKMARK":
                    continue
                if table:
                    show_table(obj)
                else:
                    show_object(obj)

    try:
        await asyncio.wait_for(run(), s.timeout)
    except asyncio.TimeoutError:
        pass
    return 0


def configure_get(p: argparse.ArgumentParser) -> None:
    _mkctl().configure_get(p)


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Any]] = {
    "get": ("Display one or many resources", configure_get, run_get),
    "create": ("Create a resource from a file or from stdin", configure_create, run_create),
    "set": ("Set specific features on objects (set image)", configure_set, run_set),
}

__all__ = ["COMMANDS", "container_name", "deployment_object", "event_time", "image_patch",
           "job_from_cronjob", "job_object", "parse_images", "sort_rows"]
