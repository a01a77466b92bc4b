"""Events as components record them (client-go's EventRecorder): one ``core/v1`` Event per
distinct (object, type, reason, message), and a repeat within the aggregation window bumps
its ``count`` and ``lastTimestamp`` instead of creating another object. Recording never
raises: an event that cannot be written is logged and dropped, since it must not fail the
work it describes."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from minik8s.api.errors import NotFound
from minik8s.api.meta import Obj, now_rfc3339

log = logging.getLogger(__name__)

NORMAL = "Normal"
WARNING = "Warning"


class EventRecorder:
    def __init__(self, client: Any, component: str, host: str = "", *,
                 window_seconds: float = 600.0):
        self.client = client
        self.component = component
        self.host = host
        self.window = window_seconds
        # (uid/ns/name, type, reason, message) -> (namespace, event name, count, first seen)
        self._seen: dict[tuple[str, ...], tuple[str, str, int, float]] = {}
        self._lock = asyncio.Lock()

    async def event(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        try:
            await self._record(obj, type_, reason, message)
        except Exception as exc:  # never fail the caller
            log.debug("could not record event %s for %s: %s", reason,
                      (obj.get("metadata") or {}).get("name"), exc)

    async def _record(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        md = obj.get("metadata") or {}
        ns = md.get("namespace") or "default"
        ident = md.get("uid") or f"{ns}/{md.get('name')}"
        key = (ident, type_, reason, message)
        now = now_rfc3339()
        async with self._lock:
            seen = self._seen.get(key)
            if seen and time.monotonic() - seen[3] < self.window:
                ev_ns, ev_name, count, first = seen
                try:
                    await self.client.patch("events", ev_name, {
                        "count": count + 1, "lastTimestamp": now}, ev_ns, patch_type="merge")
                    self._seen[key] = (ev_ns, ev_name, count + 1, first)
                    return
                except NotFound:
                    pass  # expired meanwhile: write a new one
            name = f"{md.get('name')}.{uuid.uuid4().hex[:16]}"
            event = {
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": name, "namespace": ns},
                "involvedObject": {k: v for k, v in {
                    "kind": obj.get("kind"), "apiVersion": obj.get("apiVersion"),
                    "namespace": md.get("namespace"), "name": md.get("name"),
                    "uid": md.get("uid"), "resourceVersion": md.get("resourceVersion"),
                }.items() if v},
                "reason": reason, "message": message, "type": type_,
                "source": {"component": self.component, **({"host": self.host} if self.host else {})},
                "firstTimestamp": now, "lastTimestamp": now, "count": 1,
                "reportingComponent": self.component, "reportingInstance": self.host or "",
            }
            await self.client.create("events", event, ns)
            self._seen[key] = (ns, name, 1, time.monotonic())
            if len(self._seen) > 4096:
                self._forget_old()

    def _forget_old(self) -> None:
        cutoff = time.monotonic() - self.window
        for k in [k for k, v in self._seen.items() if v[3] < cutoff]:
            del self._seen[k]


__all__ = ["EventRecorder", "NORMAL", "WARNING"]
