"""The resource metrics API (``metrics.k8s.io/v1beta1``: NodeMetrics ``nodes``, PodMetrics
``pods``), served by the API server itself instead of an aggregated metrics-server: there
is one process that already reaches every kubelet with its client certificate (``proxy``),
so ``kubectl top``, ``mkctl top`` and the HorizontalPodAutoscaler all read the same numbers
from the same place.

A request lists the objects it is about from the watch cache (so label and field selectors
mean what they mean for ``nodes`` and ``pods``), then asks each Ready node involved for its
``/stats/summary`` (in parallel, bounded by a timeout; a summary is reused for
``SUMMARY_TTL`` so a burst of callers costs one scrape per node). A node that does not
answer is left out, as metrics-server leaves it out: never a 500. CPU is the kubelet's rate
(``usageNanoCores``, measured over a window of its own sampling history, reported as the
``window``), memory the working set, as metrics-server reports them. The kinds are not in
the kind registry: nothing is stored, and nothing else (watch caches, the garbage collector,
the namespace controller) should ever see them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
from fastapi import Request
from fastapi.responses import JSONResponse, Response

from minik8s.api.errors import NotFound, StatusError, Unauthorized
from minik8s.api.meta import Obj
from minik8s.api.registry import REGISTRY

from apiserver import tables
from apiserver.authz import RequestAttributes, authorize, forbidden_error
from apiserver.proxy import kubelet_client, kubelet_endpoint, url_host

log = logging.getLogger(__name__)

GROUP = "metrics.k8s.io"
VERSION = "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"
SCRAPE_TIMEOUT = 5.0
SUMMARY_TTL = 1.0

_RESOURCES = [
    {"name": "nodes", "singularName": "", "namespaced": False, "kind": "NodeMetrics",
     "verbs": ["get", "list"]},
    {"name": "pods", "singularName": "", "namespaced": True, "kind": "PodMetrics",
     "verbs": ["get", "list"]},
]


# --------------------------------------------------------------------------- discovery


def _group_doc() -> Obj:
    gv = {"groupVersion": API_VERSION, "version": VERSION}
    return {"name": GROUP, "versions": [gv], "preferredVersion": gv}


def with_group(group_list: Obj) -> Obj:
    """``/apis`` with the metrics group added."""
    group_list.setdefault("groups", []).append(_group_doc())
    return group_list


def api_group(group: str) -> Obj | None:
    if group != GROUP:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_doc()}


def api_resource_list(group: str, version: str) -> Obj | None:
    if group != GROUP or version != VERSION:
        return None
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": API_VERSION,
            "resources": [dict(r) for r in _RESOURCES]}


# --------------------------------------------------------------------------- formatting


def cpu_quantity(nano_cores: int | float) -> str:
    """As metrics-server writes CPU: nanocores (``"12345678n"``), ``"0"`` for none."""
    n = int(nano_cores)
    return f"{n}n" if n else "0"


def memory_quantity(value: int | float) -> str:
    """Bytes as metrics-server writes them: ``Ki`` when they divide evenly."""
    n = int(value)
    if n and n % 1024 == 0:
        return f"{n // 1024}Ki"
    return str(n)


def go_duration(seconds: float) -> str:
    """``metav1.Duration`` text (Go's ``Duration.String``): ``15s``, ``1.5s``, ``1m0.2s``."""
    ms = int(round(seconds * 1000))
    if ms == 0:
        return "0s"
    minutes, ms = divmod(ms, 60_000)
    secs = f"{ms / 1000:.3f}".rstrip("0").rstrip(".")
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def _window(cpu: Obj) -> float:
    return float(cpu.get("windowSeconds") or 0.0)


def node_metrics(node: Obj, summary: Obj, now: str) -> Obj | None:
    """NodeMetrics from a node's summary; None when it has no CPU rate yet."""
    stats = summary.get("node") or {}
    cpu, memory = stats.get("cpu") or {}, stats.get("memory") or {}
    if cpu.get("usageNanoCores") is None or memory.get("workingSetBytes") is None:
        return None
    md = node.get("metadata") or {}
    out: Obj = {"kind": "NodeMetrics", "apiVersion": API_VERSION,
                "metadata": {"name": md.get("name"), "creationTimestamp": now},
                "timestamp": cpu.get("time") or now, "window": go_duration(_window(cpu)),
                "usage": {"cpu": cpu_quantity(cpu["usageNanoCores"]),
                          "memory": memory_quantity(memory["workingSetBytes"])}}
    if md.get("labels"):
        out["metadata"]["labels"] = dict(md["labels"])
    return out


def pod_metrics(pod: Obj, stats: Obj, now: str) -> Obj | None:
    """PodMetrics from the pod's entry of its node's summary; None unless every container
    reported has both a CPU rate and a working set (metrics-server drops partial pods)."""
    containers, windows, stamp = [], [], None
    for c in stats.get("containers") or []:
        cpu, memory = c.get("cpu") or {}, c.get("memory") or {}
        if cpu.get("usageNanoCores") is None or memory.get("workingSetBytes") is None:
            return None
        containers.append({"name": c.get("name"),
                           "usage": {"cpu": cpu_quantity(cpu["usageNanoCores"]),
                                     "memory": memory_quantity(memory["workingSetBytes"])}})
        windows.append(_window(cpu))
        stamp = stamp or cpu.get("time")
    if not containers:
        return None
    md = pod.get("metadata") or {}
    out: Obj = {"kind": "PodMetrics", "apiVersion": API_VERSION,
                "metadata": {"name": md.get("name"), "namespace": md.get("namespace"),
                             "creationTimestamp": now},
                "timestamp": stamp or now, "window": go_duration(max(windows)),
                "containers": containers}
    if md.get("labels"):
        out["metadata"]["labels"] = dict(md["labels"])
    return out


def metrics_table(kind: str, items: list[Obj], now_ts: float) -> Obj:
    """A ``meta.k8s.io/v1`` Table (what ``kubectl get podmetrics`` asks for)."""
    columns = [{"name": "Name", "type": "string", "format": "name", "priority": 0,
                "description": "Name of the object."},
               {"name": "CPU", "type": "string", "format": "", "priority": 0,
                "description": "CPU usage."},
               {"name": "Memory", "type": "string", "format": "", "priority": 0,
                "description": "Memory usage (working set)."},
               {"name": "Window", "type": "string", "format": "", "priority": 0,
                "description": "The window the CPU rate was measured over."}]
    rows = []
    for m in items:
        if kind == "NodeMetrics":
            usage = m["usage"]
            cpu, mem = usage["cpu"], usage["memory"]
        else:
            cpu = ",".join(c["usage"]["cpu"] for c in m["containers"])
            mem = ",".join(c["usage"]["memory"] for c in m["containers"])
        rows.append({"cells": [m["metadata"]["name"], cpu, mem, m["window"]],
                     "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                "metadata": m["metadata"]}})
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {},
            "columnDefinitions": columns, "rows": rows}


# --------------------------------------------------------------------------- scraping


def node_ready(node: Obj) -> bool:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def kubelet_url(node: Obj) -> str | None:
    endpoint = kubelet_endpoint(node)
    if endpoint is None:
        return None
    return f"https://{url_host(endpoint[0])}:{endpoint[1]}/stats/summary"


class Scraper:
    """Node summaries, shared between concurrent requests for ``SUMMARY_TTL``."""

    def __init__(self, srv: Any):
        self.srv = srv
        self._recent: dict[str, tuple[float, asyncio.Task]] = {}

    async def summary(self, node: Obj) -> Obj | None:
        name = (node.get("metadata") or {}).get("name") or ""
        url = kubelet_url(node)
        if url is None or not node_ready(node):
            return None
        now = time.monotonic()
        cached = self._recent.get(name)
        if cached is None or now - cached[0] > SUMMARY_TTL:
            task = asyncio.ensure_future(self._fetch(name, url))
            self._recent[name] = (now, task)
            for gone in [k for k, (t, _) in self._recent.items() if now - t > 60]:
                self._recent.pop(gone, None)
        else:
            task = cached[1]
        return await asyncio.shield(task)

    async def _fetch(self, name: str, url: str) -> Obj | None:
        http = kubelet_client(self.srv).http()
        try:
            resp = await http.get(url, timeout=SCRAPE_TIMEOUT)
            if resp.status_code != 200:
                log.info("metrics: node %s answered %d", name, resp.status_code)
                return None
            body = resp.json()
            return body if isinstance(body, dict) else None
        except (httpx.HTTPError, ValueError, OSError) as exc:
            log.info("metrics: node %s unreachable: %s", name, exc)
            return None


def scraper(srv: Any) -> Scraper:
    s = srv.__dict__.get("metrics_scraper")
    if s is None:
        s = srv.__dict__["metrics_scraper"] = Scraper(srv)
    return s


# --------------------------------------------------------------------------- serving


def _parse(path: str) -> tuple[str, str | None, str | None]:
    """(resource, namespace, name) of a path below ``/apis/metrics.k8s.io/v1beta1/``."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["nodes"] and len(parts) <= 2:
        return "nodes", None, parts[1] if len(parts) == 2 else None
    if parts[:1] == ["pods"] and len(parts) == 1:
        return "pods", None, None
    if len(parts) in (3, 4) and parts[0] == "namespaces" and parts[2] == "pods":
        return "pods", parts[1], parts[3] if len(parts) == 4 else None
    raise NotFound("the server could not find the requested resource")


def _authorize(request: Request, verb: str, resource: str, ns: str | None,
               name: str | None) -> None:
    user = (request.scope.get("state") or {}).get("user")
    if user is None:
        raise Unauthorized("Unauthorized")
    attrs = RequestAttributes(verb=verb, api_group=GROUP, resource=resource,
                              namespace=ns or "", name=name or "", path=request.url.path)
    if not authorize(user.name, user.groups, attrs).allowed:
        raise forbidden_error(user.name, attrs)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


async def serve(srv: Any, request: Request, version: str, path: str) -> Response:
    """Everything below ``/apis/metrics.k8s.io/``."""
    if version != VERSION:
        raise NotFound("the server could not find the requested resource")
    resource, ns, name = _parse(path)
    q = request.query_params
    if request.method != "GET":
        raise StatusError.from_status({
            "code": 405, "reason": "MethodNotAllowed",
            "message": "the server does not allow this method on the requested resource"})
    if (q.get("watch") or "").lower() in ("true", "1"):
        raise StatusError.from_status({
            "code": 405, "reason": "MethodNotAllowed",
            "message": "watch is not supported on metrics.k8s.io resources"})
    _authorize(request, "get" if name else "list", resource, ns, name)
    kind = "NodeMetrics" if resource == "nodes" else "PodMetrics"
    query = {"resourceVersion": "0"}
    for key in ("labelSelector", "fieldSelector"):
        if q.get(key):
            query[key] = q[key]
    if name:
        query["fieldSelector"] = ",".join(x for x in (query.get("fieldSelector"),
                                                      f"metadata.name={name}") if x)
    items = await (_nodes(srv, query) if resource == "nodes" else _pods(srv, ns, query))
    if name:
        if not items:
            shown = f"{ns}/{name}" if ns else name
            raise NotFound(f'{kind.lower()}.{GROUP} "{shown}" not found',
                           details={"name": name, "group": GROUP, "kind": resource})
        body: Obj = items[0]
    else:
        body = {"kind": f"{kind}List", "apiVersion": API_VERSION, "metadata": {},
                "items": items}
    if tables.table_wanted(request.headers.get("accept", "")):
        body = metrics_table(kind, items, time.time())
    return JSONResponse(body)


async def _summaries(srv: Any, nodes: list[Obj]) -> dict[str, Obj]:
    s = scraper(srv)
    results = await asyncio.gather(*(s.summary(n) for n in nodes), return_exceptions=True)
    out = {}
    for node, result in zip(nodes, results):
        if isinstance(result, dict):
            out[node["metadata"]["name"]] = result
    return out


async def _nodes(srv: Any, query: dict[str, str]) -> list[Obj]:
    nodes = (await srv.store.list(REGISTRY.resolve("nodes"), None, query)).get("items") or []
    summaries = await _summaries(srv, nodes)
    now, items = _now(), []
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        summary = summaries.get(node["metadata"]["name"])
        m = node_metrics(node, summary, now) if summary else None
        if m is not None:
            items.append(m)
    return items


async def _pods(srv: Any, ns: str | None, query: dict[str, str]) -> list[Obj]:
    pods = (await srv.store.list(REGISTRY.resolve("pods"), ns, query)).get("items") or []
    pods = [p for p in pods if (p.get("spec") or {}).get("nodeName")
            and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
    if not pods:
        return []
    wanted = sorted({p["spec"]["nodeName"] for p in pods})
    node_rt = REGISTRY.resolve("nodes")
    nodes = [n for n in (await srv.store.list(node_rt, None, {"resourceVersion": "0"})
                         ).get("items") or [] if n["metadata"]["name"] in wanted]
    summaries = await _summaries(srv, nodes)
    by_uid: dict[str, Obj] = {}
    for summary in summaries.values():
        for entry in summary.get("pods") or []:
            uid = (entry.get("podRef") or {}).get("uid")
            if uid:
                by_uid[uid] = entry
    now, items = _now(), []
    for pod in sorted(pods, key=lambda p: (p["metadata"].get("namespace") or "",
                                           p["metadata"]["name"])):
        entry = by_uid.get(pod["metadata"].get("uid"))
        m = pod_metrics(pod, entry, now) if entry else None
        if m is not None:
            items.append(m)
    return items


__all__ = ["GROUP", "VERSION", "API_VERSION", "serve", "with_group", "api_group",
           "api_resource_list", "node_metrics", "pod_metrics", "cpu_quantity",
           "memory_quantity", "go_duration", "Scraper"]
