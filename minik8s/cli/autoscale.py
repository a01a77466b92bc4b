"""``mkctl top nodes|pods`` and ``mkctl autoscale``: kubectl's output and wording.

``top`` reads the resource metrics API (``metrics.k8s.io/v1beta1``, served by the API server
from the kubelets' stats) and prints as kubectl's ``metricsutil`` printer does: CPU in
millicores rounded up (``Quantity.MilliValue``), memory in whole MiB rounded down, node
percentages against allocatable (truncated), nodes without metrics as ``<unknown>``.
``autoscale`` creates an autoscaling/v2 HorizontalPodAutoscaler for a Deployment,
ReplicaSet or StatefulSet with kubectl's flags and checks."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from typing import Any, Callable

from minik8s.api.errors import NotFound
from minik8s.api.meta import parse_time
from minik8s.api.quantity import milli_value_of, value_of
from minik8s.api.registry import ResourceType
from minik8s.cli.errors import CliError
from minik8s.cli.printers import table_writer
from minik8s.cli.resources import resolve_type

Obj = dict[str, Any]

METRICS = "/apis/metrics.k8s.io/v1beta1"
NODE_COLUMNS = ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
POD_COLUMNS = ["NAME", "CPU(cores)", "MEMORY(bytes)"]
METRICS_CREATION_DELAY = 120.0  # kubectl's metricsCreationDelay
_AUTOSCALE_KINDS = ("Deployment", "ReplicaSet", "StatefulSet")


# --------------------------------------------------------------------------- formatting


def cpu_text(millis: int) -> str:
    return f"{millis}m"


def memory_text(value: int) -> str:
    return f"{value // (1024 * 1024)}Mi"


def _usage(usage: Obj) -> tuple[int, int]:
    """(millicores, bytes) of a metrics ``usage`` map."""
    return milli_value_of(usage.get("cpu") or "0"), value_of(usage.get("memory") or "0")


def _percent(used: int, available: int) -> str:
    return f"{int(used / available * 100)}%" if available else "0%"


def node_lines(metrics: list[Obj], available: dict[str, Obj], sort_by: str = "",
               headers: bool = True) -> str:
    """kubectl's ``PrintNodeMetrics``: nodes with metrics, then those without."""
    rows = []
    for m in metrics:
        cpu, mem = _usage(m.get("usage") or {})
        rows.append((m["metadata"]["name"], cpu, mem))
    if sort_by == "cpu":
        rows.sort(key=lambda r: -r[1])
    elif sort_by == "memory":
        rows.sort(key=lambda r: -r[2])
    else:
        rows.sort(key=lambda r: r[0])
    w = table_writer()
    if headers:
        w.write("".join(f"{c}\t" for c in NODE_COLUMNS) + "\n")
    seen = set()
    for name, cpu, mem in rows:
        seen.add(name)
        avail = available.get(name)
        cells = [name, cpu_text(cpu)]
        if avail is not None:
            cells.append(_percent(cpu, milli_value_of(avail.get("cpu") or "0")))
        cells.append(memory_text(mem))
        if avail is not None:
            cells.append(_percent(mem * 1000, milli_value_of(avail.get("memory") or "0")))
        w.write("".join(f"{c}\t" for c in cells) + "\n")
    for name in sorted(set(available) - seen):
        w.write(f"{name}\t" + "<unknown>\t" * 4 + "\n")
    return w.flush()


def pod_lines(metrics: list[Obj], *, containers: bool = False, with_namespace: bool = False,
              sort_by: str = "", headers: bool = True, total: bool = False) -> str:
    """kubectl's ``PrintPodMetrics``."""
    def pod_usage(m: Obj) -> tuple[int, int]:
        cpu = mem = 0
        for c in m.get("containers") or []:
            c_cpu, c_mem = _usage(c.get("usage") or {})
            cpu, mem = cpu + c_cpu, mem + c_mem
        return cpu, mem

    items = list(metrics)
    if sort_by in ("cpu", "memory"):
        idx = 0 if sort_by == "cpu" else 1
        items.sort(key=lambda m: -pod_usage(m)[idx])
    else:
        items.sort(key=lambda m: ((m["metadata"].get("namespace") or "") if with_namespace
                                  else "", m["metadata"]["name"]))
    columns = (["NAMESPACE"] if with_namespace else []) + (["POD"] if containers else []) \
        + POD_COLUMNS
    w = table_writer()
    if headers:
        w.write("".join(f"{c}\t" for c in columns) + "\n")
    sum_cpu = sum_mem = 0
    for m in items:
        prefix = [m["metadata"].get("namespace") or ""] if with_namespace else []
        if containers:
            cs = list(m.get("containers") or [])
            if sort_by in ("cpu", "memory"):
                idx = 0 if sort_by == "cpu" else 1
                cs.sort(key=lambda c: -_usage(c.get("usage") or {})[idx])
            for c in cs:
                cpu, mem = _usage(c.get("usage") or {})
                cells = prefix + [m["metadata"]["name"], c.get("name", ""), cpu_text(cpu),
                                  memory_text(mem)]
                w.write("".join(f"{x}\t" for x in cells) + "\n")
        else:
            cpu, mem = pod_usage(m)
            cells = prefix + [m["metadata"]["name"], cpu_text(cpu), memory_text(mem)]
            w.write("".join(f"{x}\t" for x in cells) + "\n")
        p_cpu, p_mem = pod_usage(m)
        sum_cpu, sum_mem = sum_cpu + p_cpu, sum_mem + p_mem
    if total:
        width = len(columns)
        w.write("\t" * (width - 2) + "________\t________\t\n")
        w.write("\t" * (width - 2) + f"{cpu_text(sum_cpu)}\t{memory_text(sum_mem)}\t\n")
    return w.flush()


# --------------------------------------------------------------------------- top


async def _metrics_available(s: Any) -> None:
    groups = await s.client.request("GET", "/apis")
    for g in groups.get("groups") or []:
        if g.get("name") == "metrics.k8s.io" and any(
                v.get("version") == "v1beta1" for v in g.get("versions") or []):
            return
    raise CliError("Metrics API not available")


def _out(text: str) -> None:
    from minik8s.cli.mkctl import out
    out(text)


def _err(text: str) -> None:
    from minik8s.cli.mkctl import err
    err(text)


async def run_top(s: Any, a: argparse.Namespace) -> int:
    what = a.what
    if what in ("node", "nodes", "no"):
        return await top_nodes(s, a)
    if what in ("pod", "pods", "po"):
        return await top_pods(s, a)
    raise CliError(f'unknown command "{what}" for "mkctl top" (use "node" or "pod")')


async def top_nodes(s: Any, a: argparse.Namespace) -> int:
    if a.name and a.selector:
        raise CliError("only one of NAME or --selector can be provided")
    await _metrics_available(s)
    params = {"labelSelector": a.selector} if a.selector else None
    if a.name:
        metrics = [await s.client.request("GET", f"{METRICS}/nodes/{a.name}")]
    else:
        metrics = (await s.client.request("GET", f"{METRICS}/nodes", params=params)
                   ).get("items") or []
    if not metrics:
        raise CliError("metrics not available yet")
    if a.name:
        nodes = [await s.client.get("nodes", a.name)]
    else:
        nodes = (await s.client.list("nodes", label_selector=a.selector)).get("items") or []
    key = "capacity" if a.show_capacity else "allocatable"
    available = {n["metadata"]["name"]: (n.get("status") or {}).get(key) or {} for n in nodes}
    _out(node_lines(metrics, available, a.sort_by or "", not a.no_headers))
    return 0


async def top_pods(s: Any, a: argparse.Namespace) -> int:
    if a.name and a.selector:
        raise CliError("only one of NAME or --selector can be provided")
    await _metrics_available(s)
    all_ns = bool(a.all_namespaces)
    ns = s.scope.namespace
    params = {k: v for k, v in (("labelSelector", a.selector),
                                ("fieldSelector", a.field_selector)) if v} or None
    if a.name:
        metrics = [await s.client.request("GET", f"{METRICS}/namespaces/{ns}/pods/{a.name}")]
    else:
        path = f"{METRICS}/pods" if all_ns else f"{METRICS}/namespaces/{ns}/pods"
        metrics = (await s.client.request("GET", path, params=params)).get("items") or []
    if not metrics:
        pods = (await s.client.list("pods", None if all_ns else ns, all_namespaces=all_ns,
                                    label_selector=a.selector,
                                    field_selector=a.field_selector)).get("items") or []
        now = datetime.now(timezone.utc)
        for p in pods:
            created = parse_time((p.get("metadata") or {}).get("creationTimestamp"))
            age = (now - created).total_seconds() if created else 0.0
            if age > METRICS_CREATION_DELAY:
                md = p["metadata"]
                raise CliError(f"Metrics not available for pod {md.get('namespace')}/"
                               f"{md['name']}, age: {_go_age(age)}")
        if pods:
            raise CliError("metrics not available yet")
        _err("No resources found" if all_ns else f"No resources found in {ns} namespace.")
        return 0
    _out(pod_lines(metrics, containers=a.containers, with_namespace=all_ns,
                   sort_by=a.sort_by or "", headers=not a.no_headers, total=a.sum))
    return 0


def _go_age(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    text = f"{secs:.6f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    return f"{minutes}m{text}" if minutes else text


def configure_top(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", metavar="node|pod")
    p.add_argument("name", nargs="?", default="")
    p.add_argument("-l", "--selector", default="")
    p.add_argument("--field-selector", default="")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.add_argument("--containers", action="store_true", help="print each container (pods)")
    p.add_argument("--sort-by", choices=("cpu", "memory"), default=None)
    p.add_argument("--no-headers", action="store_true")
    p.add_argument("--sum", action="store_true", help="print the sum of the pods' usage")
    p.add_argument("--show-capacity", action="store_true",
                   help="percentages against capacity instead of allocatable (nodes)")


# --------------------------------------------------------------------------- autoscale


def hpa_for(rt: ResourceType, target: Obj, name: str, min_replicas: int, max_replicas: int,
            cpu_percent: int) -> Obj:
    """The HorizontalPodAutoscaler ``kubectl autoscale`` creates (autoscaling/v2)."""
    spec: Obj = {"scaleTargetRef": {"apiVersion": rt.api_version, "kind": rt.kind,
                                    "name": target["metadata"]["name"]},
                 "maxReplicas": max_replicas}
    if min_replicas > 0:
        spec["minReplicas"] = min_replicas
    if cpu_percent >= 0:
        spec["metrics"] = [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu_percent}}}]
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name}, "spec": spec}


async def run_autoscale(s: Any, a: argparse.Namespace) -> int:
    args = a.args
    if len(args) == 1 and "/" in args[0]:
        kind, _, target_name = args[0].partition("/")
    elif len(args) == 2 and "/" not in args[0]:
        kind, target_name = args
    elif not args:
        raise CliError("required resource not specified")
    else:
        raise CliError("you must specify a resource TYPE/NAME or TYPE NAME")
    rt = resolve_type(kind)
    if rt.kind not in _AUTOSCALE_KINDS:
        raise CliError(f"cannot autoscale a {rt.kind}: no scale subresource "
                       f"(autoscale works on deployments, replicasets and statefulsets)")
    if a.max < 1:
        raise CliError(f"--max=MAXPODS is required and must be at least 1, max: {a.max}")
    if a.max < a.min:
        raise CliError(f"--max=MAXPODS must be larger or equal to --min=MINPODS, "
                       f"max: {a.max}, min: {a.min}")
    ns = s.scope.namespace
    try:
        target = await s.client.get(rt, target_name, ns)
    except NotFound:
        raise NotFound(f'{rt.qualified} "{target_name}" not found') from None
    hpa = hpa_for(rt, target, a.name or target_name, a.min, a.max, a.cpu_percent)
    created = await s.client.create("horizontalpodautoscalers", hpa, ns)
    _out(f"horizontalpodautoscaler.autoscaling/{created['metadata']['name']} autoscaled\n")
    return 0


def configure_autoscale(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="+", metavar="TYPE NAME | TYPE/NAME")
    p.add_argument("--min", type=int, default=-1,
                   help="lower limit for the number of pods (default: server's, 1)")
    p.add_argument("--max", type=int, default=-1,
                   help="upper limit for the number of pods (required)")
    p.add_argument("--cpu-percent", type=int, default=-1,
                   help="target average CPU utilization over all the pods, in percent of "
                        "their requests (default: 80)")
    p.add_argument("--name", default="", help="name of the autoscaler (default: the target's)")


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Any]] = {
    "top": ("Display resource (CPU/memory) usage of nodes or pods", configure_top, run_top),
    "autoscale": ("Auto-scale a deployment, replica set or stateful set", configure_autoscale,
                  run_autoscale),
}

__all__ = ["COMMANDS", "node_lines", "pod_lines", "hpa_for"]
