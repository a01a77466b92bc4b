"""``mkctl rollout status|history|undo|pause|resume|restart`` and ``mkctl scale``, with
kubectl's arguments, output lines and exit codes.

Everything here is a client-side view of what the Deployment controller records: a
Deployment's revisions are its ReplicaSets (``deployment.kubernetes.io/revision``, change
cause in ``kubernetes.io/change-cause``); ``undo`` writes an old ReplicaSet's template back
into the Deployment with the JSON patch kubectl sends, and the controller then scales that
ReplicaSet up again; ``status`` follows kubectl's ``DeploymentStatusViewer`` messages and
fails (exit 1) once the Deployment reports ``ProgressDeadlineExceeded``.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import sys
from datetime import datetime, timezone
from typing import Any, Callable

from minik8s.api.defaults import default_pod_spec
from minik8s.api.errors import NotFound
from minik8s.api.registry import ResourceType
from minik8s.api.selectors import selector_query
from minik8s.cli.errors import CliError
from minik8s.cli.resources import resolve_type

Obj = dict[str, Any]

REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
HASH_LABEL = "pod-template-hash"
# Annotations a rollback never copies from the ReplicaSet (kubectl's annotationsToSkip).
_SKIP = {"kubectl.kubernetes.io/last-applied-configuration", REVISION,
         "deployment.kubernetes.io/revision-history", "deployment.kubernetes.io/desired-replicas",
         "deployment.kubernetes.io/max-replicas", "deprecated.deployment.rollback.to"}

_ROLLOUT_KINDS = ("Deployment",)
_SCALE_KINDS = ("Deployment", "ReplicaSet", "StatefulSet")


def _print(line: str) -> None:
    sys.stdout.write(line.rstrip("\n") + "\n")
    sys.stdout.flush()


def _prefix(rt: ResourceType) -> str:
    return f"{rt.kind.lower()}.{rt.group}" if rt.group else rt.kind.lower()


def parse_target(args: list[str], kinds: tuple[str, ...]) -> tuple[ResourceType, str]:
    """``TYPE/NAME`` or ``TYPE NAME``."""
    if len(args) == 1 and "/" in args[0]:
        kind, _, name = args[0].partition("/")
    elif len(args) == 2 and "/" not in args[0]:
        kind, name = args
    elif not args:
        raise CliError("required resource not specified")
    else:
        raise CliError("you must specify a resource TYPE/NAME or TYPE NAME")
    rt = resolve_type(kind)
    if rt.kind not in kinds:
        raise CliError(f"no {'rollbacker' if kinds == _ROLLOUT_KINDS else 'scaler'} has been "
                       f"implemented for {{{rt.group!r} {rt.kind!r}}}"
                       .replace("'", '"'))
    if not name:
        raise CliError("arguments in resource/name form must have a single resource and name")
    return rt, name


# --------------------------------------------------------------------------- history


def revision_of(obj: Obj) -> int:
    try:
        return int(((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION) or 0)
    except ValueError:
        return 0


async def replica_sets_of(client: Any, d: Obj) -> list[Obj]:
    """The ReplicaSets the Deployment controls."""
    md = d["metadata"]
    selector = selector_query((d.get("spec") or {}).get("selector"))
    items = (await client.list("replicasets", md.get("namespace"),
                               label_selector=selector)).get("items") or []
    out = []
    for rs in items:
        refs = (rs.get("metadata") or {}).get("ownerReferences") or []
        if any(r.get("controller") and r.get("uid") == md.get("uid") for r in refs):
            out.append(rs)
    return out


def history(rss: list[Obj]) -> dict[int, Obj]:
    """Revision -> ReplicaSet."""
    return {revision_of(rs): rs for rs in rss if revision_of(rs) > 0}


def history_table(revisions: dict[int, Obj]) -> str:
    rows = [("REVISION", "CHANGE-CAUSE")]
    for r in sorted(revisions):
        cause = ((revisions[r].get("metadata") or {}).get("annotations") or {}).get(CHANGE_CAUSE)
        rows.append((str(r), cause or "<none>"))
    width = max(len(a) for a, _ in rows) + 2
    return "".join(f"{a.ljust(width)}{b}\n" for a, b in rows)


def template_without_hash(template: Obj | None) -> Obj:
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    return t


def describe_template(template: Obj) -> str:
    from minik8s.cli.describe import PrefixWriter, describe_pod_template
    w = PrefixWriter()
    describe_pod_template(w, template)
    return w.text()


# --------------------------------------------------------------------------- status


def status_message(d: Obj, revision: int = 0) -> tuple[str, bool]:
    """kubectl's ``DeploymentStatusViewer.Status``: (message, done). Raises ``CliError``
    when the rollout failed."""
    md, spec, st = d["metadata"], d.get("spec") or {}, d.get("status") or {}
    name = md["name"]
    if revision > 0 and revision_of(d) != revision:
        raise CliError(f"desired revision ({revision}) is different from the running "
                       f"revision ({revision_of(d)})")
    if int(md.get("generation") or 0) <= int(st.get("observedGeneration") or 0):
        for c in st.get("conditions") or []:
            if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded":
                raise CliError(f'deployment "{name}" exceeded its progress deadline')
        replicas = spec.get("replicas", 1)
        updated = int(st.get("updatedReplicas") or 0)
        total = int(st.get("replicas") or 0)
        available = int(st.get("availableReplicas") or 0)
        if replicas is not None and updated < replicas:
            return (f'Waiting for deployment "{name}" rollout to finish: {updated} out of '
                    f"{replicas} new replicas have been updated...", False)
        if total > updated:
            return (f'Waiting for deployment "{name}" rollout to finish: {total - updated} '
                    f"old replicas are pending termination...", False)
        if available < updated:
            return (f'Waiting for deployment "{name}" rollout to finish: {available} of '
                    f"{updated} updated replicas are available...", False)
        return f'deployment "{name}" successfully rolled out', True
    return "Waiting for deployment spec update to be observed...", False


# --------------------------------------------------------------------------- commands


def configure_rollout(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["status", "history", "undo", "pause", "resume",
                                      "restart"], metavar="ACTION",
                   help="status|history|undo|pause|resume|restart")
    p.add_argument("args", nargs="+", metavar="TYPE/NAME")
    p.add_argument("--revision", type=int, default=0,
                   help="history: show this revision's template; status: wait for it")
    p.add_argument("--to-revision", type=int, default=0,
                   help="undo: the revision to roll back to (0: the previous one)")
    p.add_argument("-w", "--watch", nargs="?", const="true", default="true",
                   help="status: watch until the rollout finishes (default true)")
    p.add_argument("--timeout", default="0s",
                   help="status: how long to wait before giving up (0: forever)")
    p.add_argument("--dry-run", nargs="?", const="client", default="none")


async def run_rollout(s: Any, a: argparse.Namespace) -> int:
    rt, name = parse_target(a.args, _ROLLOUT_KINDS)
    ns = s.scope.namespace
    action: Callable[..., Any] = {
        "status": _status, "history": _history, "undo": _undo, "pause": _pause,
        "resume": _resume, "restart": _restart}[a.action]
    return await action(s.client, rt, name, ns, a)


async def _get(client: Any, rt: ResourceType, name: str, ns: str) -> Obj:
    try:
        return await client.get(rt, name, ns)
    except NotFound:
        raise CliError(f'{rt.plural}{"." + rt.group if rt.group else ""} "{name}" not found') \
            from None


async def _status(client: Any, rt: ResourceType, name: str, ns: str,
                  a: argparse.Namespace) -> int:
    from minik8s.cli.mkctl import parse_duration
    timeout = parse_duration(a.timeout) if a.timeout not in ("0", "0s") else None
    watch = str(a.watch).lower() not in ("false", "0", "no")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout if timeout else None
    last = None
    while True:
        d = await _get(client, rt, name, ns)
        message, done = status_message(d, a.revision)
        if message != last:
            _print(message)
            last = message
        if done or not watch:
            return 0
        if deadline is not None and loop.time() > deadline:
            raise CliError("timed out waiting for the condition")
        await asyncio.sleep(0.5)


async def _history(client: Any, rt: ResourceType, name: str, ns: str,
                   a: argparse.Namespace) -> int:
    d = await _get(client, rt, name, ns)
    revisions = history(await replica_sets_of(client, d))
    if a.revision > 0:
        rs = revisions.get(a.revision)
        if rs is None:
            raise CliError("unable to find the specified revision")
        _print(f"{_prefix(rt)}/{name} with revision #{a.revision}")
        sys.stdout.write(describe_template(template_without_hash(
            (rs.get("spec") or {}).get("template"))) + "\n")
        return 0
    if not revisions:
        _print(f"No rollout history found in {_prefix(rt)} \"{name}\"")
        return 0
    _print(f"{_prefix(rt)}/{name} ")
    sys.stdout.write(history_table(revisions) + "\n")
    sys.stdout.flush()
    return 0


def undo_patch(d: Obj, rs: Obj) -> list[Obj]:
    """The JSON patch ``kubectl rollout undo`` sends: the ReplicaSet's template (without
    the hash label) and the Deployment's annotations with the ReplicaSet's copyable ones."""
    annotations = dict((d["metadata"].get("annotations") or {}))
    for k, v in ((rs.get("metadata") or {}).get("annotations") or {}).items():
        if k not in _SKIP:
            annotations[k] = v
    return [{"op": "replace", "path": "/spec/template",
             "value": template_without_hash((rs.get("spec") or {}).get("template"))},
            {"op": "replace", "path": "/metadata/annotations", "value": annotations}]


def pick_revision(revisions: dict[int, Obj], current: int, to_revision: int) -> Obj:
    if to_revision > 0:
        rs = revisions.get(to_revision)
        if rs is None:
            raise CliError(f"unable to find specified revision {to_revision} in history")
        return rs
    previous = sorted(r for r in revisions if r != current)
    if not previous:
        raise CliError("no rollout history found")
    return revisions[previous[-1]]


async def _undo(client: Any, rt: ResourceType, name: str, ns: str,
                a: argparse.Namespace) -> int:
    d = await _get(client, rt, name, ns)
    if (d.get("spec") or {}).get("paused"):
        raise CliError("you cannot rollback a paused deployment; resume it first with "
                       "'kubectl rollout resume' and try again")
    revisions = history(await replica_sets_of(client, d))
    if not revisions:
        raise CliError(f'no rollout history found for deployment "{name}"')
    rs = pick_revision(revisions, revision_of(d), a.to_revision)
    if _same_template((rs.get("spec") or {}).get("template"),
                      (d.get("spec") or {}).get("template")):
        _print(f"{_prefix(rt)}/{name} skipped rollback (current template already matches "
               f"revision {revision_of(rs)})")
        return 0
    dry = a.dry_run not in ("none", None)
    await client.patch(rt, name, undo_patch(d, rs), ns, patch_type="json",
                       dry_run=dry == "server")
    _print(f"{_prefix(rt)}/{name} rolled back" + (" (dry run)" if dry else ""))
    return 0


def _normalized(template: Obj | None) -> Any:
    """A template as it means (defaults applied, hash label and empty values dropped); the
    controller compares templates the same way."""
    t = template_without_hash(template)
    spec = t.setdefault("spec", {})
    if isinstance(spec, dict):
        default_pod_spec(spec)
    (t.get("metadata") or {}).pop("creationTimestamp", None)
    return _prune(t)


def _prune(value: Any) -> Any:
    if isinstance(value, dict):
        out = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, "", {}, [])}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def _same_template(a: Obj | None, b: Obj | None) -> bool:
    return _normalized(a) == _normalized(b)


async def _patch_spec(client: Any, rt: ResourceType, name: str, ns: str, patch: Obj,
                      a: argparse.Namespace, verb: str) -> None:
    dry = a.dry_run not in ("none", None)
    await client.patch(rt, name, patch, ns, patch_type="strategic", dry_run=dry == "server")
    _print(f"{_prefix(rt)}/{name} {verb}" + (" (dry run)" if dry else ""))


async def _pause(client: Any, rt: ResourceType, name: str, ns: str,
                 a: argparse.Namespace) -> int:
    d = await _get(client, rt, name, ns)
    if (d.get("spec") or {}).get("paused"):
        _print(f"{_prefix(rt)}/{name} already paused")
        return 0
    await _patch_spec(client, rt, name, ns, {"spec": {"paused": True}}, a, "paused")
    return 0


async def _resume(client: Any, rt: ResourceType, name: str, ns: str,
                  a: argparse.Namespace) -> int:
    d = await _get(client, rt, name, ns)
    if not (d.get("spec") or {}).get("paused"):
        _print(f"{_prefix(rt)}/{name} already resumed")
        return 0
    await _patch_spec(client, rt, name, ns, {"spec": {"paused": None}}, a, "resumed")
    return 0


async def _restart(client: Any, rt: ResourceType, name: str, ns: str,
                   a: argparse.Namespace) -> int:
    d = await _get(client, rt, name, ns)
    if (d.get("spec") or {}).get("paused"):
        raise CliError("can't restart paused deployment (run rollout resume first)")
    stamp = datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")
    await _patch_spec(client, rt, name, ns, {"spec": {"template": {"metadata": {
        "annotations": {RESTARTED_AT: stamp}}}}}, a, "restarted")
    return 0


def configure_scale(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="+", metavar="TYPE/NAME")
    p.add_argument("--replicas", type=int, required=True, help="the new number of replicas")
    p.add_argument("--current-replicas", type=int, default=-1,
                   help="precondition: only scale if the current size is this")
    p.add_argument("--resource-version", default="",
                   help="precondition: only scale if the resourceVersion is this")


async def run_scale(s: Any, a: argparse.Namespace) -> int:
    if a.replicas < 0:
        raise CliError("The --replicas=COUNT flag is required, and COUNT must be greater "
                       "than or equal to 0")
    ns = s.scope.namespace
    targets: list[tuple[ResourceType, str]]
    if len(a.args) >= 1 and all("/" in x for x in a.args):
        targets = [parse_target([x], _SCALE_KINDS) for x in a.args]
    else:
        rt = resolve_type(a.args[0])
        if rt.kind not in _SCALE_KINDS:
            parse_target([f"{a.args[0]}/x"], _SCALE_KINDS)
        targets = [(rt, n) for n in a.args[1:]]
        if not targets:
            raise CliError("resource(s) were provided, but no name was specified")
    for rt, name in targets:
        patch: Obj = {"spec": {"replicas": a.replicas}}
        if a.current_replicas >= 0 or a.resource_version:
            scale = await s.client.get(rt, name, ns, subresource="scale")
            current = (scale.get("spec") or {}).get("replicas", 0)
            if a.current_replicas >= 0 and current != a.current_replicas:
                raise CliError(f"Expected replicas to be {a.current_replicas}, was {current}")
            if a.resource_version:
                patch["metadata"] = {"resourceVersion": a.resource_version}
        try:
            await s.client.patch(rt, name, patch, ns, subresource="scale")
        except NotFound:
            raise CliError(f'{rt.plural}{"." + rt.group if rt.group else ""} "{name}" '
                           f"not found") from None
        _print(f"{_prefix(rt)}/{name} scaled")
    return 0


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Any]] = {
    "rollout": ("Manage the rollout of a resource (status, history, undo, pause, resume, "
                "restart)", configure_rollout, run_rollout),
    "scale": ("Set a new size for a deployment, replica set or stateful set", configure_scale,
              run_scale),
}

__all__ = ["COMMANDS", "status_message", "history_table", "undo_patch", "pick_revision",
           "parse_target"]
