"""Liveness, readiness and startup probes: one worker task per (pod, container, probe kind)
for the container instance that is running, as Kubernetes' prober workers are.

A worker turns single results into a state with the probe's thresholds and tells the pod
worker (``on_change(pod uid)``) when that state flips; the pod worker reads the state on its
next sync (readiness into ``ready`` and the pod's conditions, a failed liveness or startup
probe into a restart). A new container instance (a new id) gets new workers, so thresholds
and the initial delay start over after every restart.

Where a probe connects (httpGet, tcpSocket): to ``host`` if the probe names one, else to the
pod IP, from the kubelet's own namespace, as Kubernetes does. A pod with no IP (the ``none``
network: loopback only) is probed at 127.0.0.1 from *inside* its sandbox's network
namespace: the kubelet (root) opens the socket in a thread that has ``setns``-ed into
``/proc/<sandbox pid>/ns/net`` and returns to its own namespace at once; a socket stays in
the namespace it was created in. Without the privilege for that, httpGet falls back to
``wget`` run in the sandbox (the infra image has it) through exec.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import logging
import socket
import ssl
from dataclasses import dataclass
from typing import Any, Callable

from minik8s.api.meta import Obj
from minik8s.runtime.workqueue import REAL_CLOCK, Clock

log = logging.getLogger(__name__)

LIVENESS, READINESS, STARTUP = "liveness", "readiness", "startup"
PROBE_FIELDS = {LIVENESS: "livenessProbe", READINESS: "readinessProbe", STARTUP: "startupProbe"}
KIND_TITLE = {LIVENESS: "Liveness", READINESS: "Readiness", STARTUP: "Startup"}

_CLONE_NEWNET = 0x40000000
_netns_pool = concurrent.futures.ThreadPoolExecutor(1, "netns")


@dataclass
class ProbeTarget:
    """Where a container can be reached: its id, the pod's IP, its sandbox."""
    container_id: str
    pod_ip: str = ""
    sandbox_id: str = ""
    sandbox_pid: int = 0


def _socket_in_netns(pid: int) -> socket.socket:
    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/thread-self/ns/net") as own, open(f"/proc/{pid}/ns/net") as target:
        if libc.setns(target.fileno(), _CLONE_NEWNET) != 0:
            raise PermissionError(ctypes.get_errno(), "setns into the pod's network namespace")
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        finally:
            if libc.setns(own.fileno(), _CLONE_NEWNET) != 0:  # pragma: no cover
                log.critical("could not return the probe thread to its network namespace")
    sock.setblocking(False)
    return sock


async def _open(host: str, port: int, target: ProbeTarget, timeout: float,
                ssl_ctx: ssl.SSLContext | None = None) -> tuple[asyncio.StreamReader,
                                                                 asyncio.StreamWriter]:
    if host:
        return await asyncio.wait_for(asyncio.open_connection(
            host, port, ssl=ssl_ctx, server_hostname=host if ssl_ctx else None), timeout)
    loop = asyncio.get_running_loop()
    sock = await loop.run_in_executor(_netns_pool, _socket_in_netns, target.sandbox_pid)
    try:
        await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), timeout)
    except BaseException:
        sock.close()
        raise
    return await asyncio.wait_for(asyncio.open_connection(
        sock=sock, ssl=ssl_ctx, server_hostname="localhost" if ssl_ctx else None), timeout)


def resolve_port(port: Any, container: Obj) -> int:
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"port {port!r} not found in the container's ports")


class Prober:
    """Runs one probe once: (success, message)."""

    def __init__(self, runtime: Any):
        self.runtime = runtime

    async def run(self, probe: Obj, container: Obj, target: ProbeTarget) -> tuple[bool, str]:
        timeout = float(probe.get("timeoutSeconds") or 1)
        try:
            if "exec" in probe:
                cmd = list((probe["exec"] or {}).get("command") or [])
                res = await self.runtime.exec_run(target.container_id, cmd, timeout=timeout)
                out = res.output.decode("utf-8", "replace").strip()
                if res.exit_code == 0:
                    return True, out
                return False, out or f"command {cmd!r} exited with {res.exit_code}"
            if "httpGet" in probe:
                return await self._http(probe["httpGet"] or {}, container, target, timeout)
            if "tcpSocket" in probe:
                ts = probe["tcpSocket"] or {}
                port = resolve_port(ts.get("port"), container)
                host = ts.get("host") or target.pod_ip
                _, writer = await _open(host, port, target, timeout)
                writer.close()
                return True, ""
            if "grpc" in probe:
                return False, "grpc probes are not supported by this kubelet"
            return False, "probe has no handler"
        except asyncio.TimeoutError:
            return False, f"timeout after {timeout:g}s"
        except (OSError, ValueError, RuntimeError) as exc:
            return False, str(exc) or type(exc).__name__
        except Exception as exc:  # a runtime error (container gone, ...) is a failure
            return False, f"{type(exc).__name__}: {exc}"

    async def _http(self, hg: Obj, container: Obj, target: ProbeTarget,
                    timeout: float) -> tuple[bool, str]:
        port = resolve_port(hg.get("port"), container)
        path = hg.get("path") or "/"
        if not path.startswith("/"):
            path = "/" + path
        scheme = (hg.get("scheme") or "HTTP").upper()
        host = hg.get("host") or target.pod_ip
        ssl_ctx = None
        if scheme == "HTTPS":
            ssl_ctx = ssl.create_default_context()
            ssl_ctx.check_hostname = False
            ssl_ctx.verify_mode = ssl.CERT_NONE
        try:
            reader, writer = await _open(host, port, target, timeout, ssl_ctx)
        except PermissionError:
            return await self._http_via_exec(scheme, port, path, target, timeout)
        headers = {"Host": f"{host or 'localhost'}:{port}", "User-Agent": "kube-probe/1.32",
                   "Accept": "*/*", "Connection": "close"}
        for h in hg.get("httpHeaders") or []:
            headers[h.get("name", "")] = h.get("value", "")
        request = f"GET {path} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items() if k) + "\r\n"
        try:
            writer.write(request.encode())
            await asyncio.wait_for(writer.drain(), timeout)
            line = await asyncio.wait_for(reader.readline(), timeout)
        finally:
            writer.close()
        parts = line.decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            return False, f"bad HTTP response {line[:80]!r}"
        code = int(parts[1])
        if 200 <= code < 400:
            return True, ""
        return False, f"HTTP probe failed with statuscode: {code}"

    async def _http_via_exec(self, scheme: str, port: int, path: str, target: ProbeTarget,
                             timeout: float) -> tuple[bool, str]:
        url = f"{scheme.lower()}://127.0.0.1:{port}{path}"
        res = await self.runtime.exec_run(
            target.sandbox_id, ["wget", "-q", "-T", str(max(1, int(timeout))), "-O",
                                "/dev/null", url], timeout=timeout + 1)
        if res.exit_code == 0:
            return True, ""
        return False, res.output.decode("utf-8", "replace").strip() or "HTTP probe failed"


@dataclass
class _State:
    container_id: str
    result: bool
    message: str = ""
    failed: bool = False  # the failure threshold was reached (liveness/startup: restart)


ChangeCallback = Callable[[str], None]
EventCallback = Callable[[Obj, str, str, str], None]


class ProbeManager:
    def __init__(self, prober: Prober, *, clock: Clock = REAL_CLOCK,
                 on_change: ChangeCallback = lambda uid: None,
                 on_event: EventCallback = lambda pod, t, r, m: None):
        self.prober = prober
        self.clock = clock
        self.on_change = on_change
        self.on_event = on_event
        # (uid, container name, kind) -> (container id, task)
        self._workers: dict[tuple[str, str, str], tuple[str, asyncio.Task[None]]] = {}
        self._states: dict[tuple[str, str, str], _State] = {}

    # --- what the pod worker reads ----------------------------------------------------

    def _result(self, uid: str, name: str, kind: str, cid: str) -> _State | None:
        st = self._states.get((uid, name, kind))
        return st if st is not None and st.container_id == cid else None

    def started(self, uid: str, container: Obj, cid: str) -> bool:
        if not container.get("startupProbe"):
            return True
        st = self._result(uid, container["name"], STARTUP, cid)
        return bool(st and st.result)

    def ready(self, uid: str, container: Obj, cid: str) -> bool:
        if not self.started(uid, container, cid):
            return False
        if not container.get("readinessProbe"):
            return True
        st = self._result(uid, container["name"], READINESS, cid)
        return bool(st and st.result)

    def failure(self, uid: str, container: Obj, cid: str) -> tuple[str, str] | None:
        """(probe kind, message) if a liveness or startup probe says: restart it."""
        for kind in (STARTUP, LIVENESS):
            st = self._result(uid, container["name"], kind, cid)
            if st is not None and st.failed and container.get(PROBE_FIELDS[kind]):
                return kind, st.message
        return None

    # --- lifecycle ----------------------------------------------------------------------

    def sync(self, pod: Obj, running: dict[str, tuple[Obj, ProbeTarget]],
             was_ready: dict[str, str] | None = None) -> None:
        """Keep one worker per probe of every running container; ``running`` maps
        container name -> (spec, target). ``was_ready`` (name -> container id) lists
        containers the last status showed ready, so a restarted kubelet does not flip a
        ready container to unready before its first probe."""
        uid = pod["metadata"]["uid"]
        wanted = set()
        for name, (spec, target) in running.items():
            for kind, fld in PROBE_FIELDS.items():
                probe = spec.get(fld)
                if not probe:
                    continue
                key = (uid, name, kind)
                wanted.add(key)
                current = self._workers.get(key)
                if current is not None and current[0] == target.container_id:
                    continue
                if current is not None:
                    current[1].cancel()
                initial = {LIVENESS: True, READINESS: False, STARTUP: False}[kind]
                if kind == READINESS and (was_ready or {}).get(name) == target.container_id:
                    initial = True
                self._states[key] = _State(target.container_id, initial)
                task = asyncio.get_running_loop().create_task(
                    self._worker(pod, spec, kind, probe, target),
                    name=f"probe:{pod['metadata'].get('name')}/{name}/{kind}")
                self._workers[key] = (target.container_id, task)
        for key in [k for k in self._workers if k[0] == uid and k not in wanted]:
            self._workers.pop(key)[1].cancel()
            self._states.pop(key, None)

    def remove_pod(self, uid: str) -> None:
        for key in [k for k in self._workers if k[0] == uid]:
            self._workers.pop(key)[1].cancel()
        for key in [k for k in self._states if k[0] == uid]:
            del self._states[key]

    def stop(self) -> None:
        for _, task in self._workers.values():
            task.cancel()
        self._workers.clear()

    @property
    def workers(self) -> int:
        return len(self._workers)

    async def _worker(self, pod: Obj, spec: Obj, kind: str, probe: Obj,
                      target: ProbeTarget) -> None:
        uid = pod["metadata"]["uid"]
        name = spec["name"]
        key = (uid, name, kind)
        period = max(1.0, float(probe.get("periodSeconds") or 10))
        success_threshold = int(probe.get("successThreshold") or 1)
        failure_threshold = int(probe.get("failureThreshold") or 3)
        await self.clock.sleep(float(probe.get("initialDelaySeconds") or 0))
        last: bool | None = None
        run = 0
        while True:
            state = self._states.get(key)
            if state is None or state.container_id != target.container_id:
                return
            if kind != STARTUP and not self.started(uid, spec, target.container_id):
                await self.clock.sleep(period)
                continue
            ok, message = await self.prober.run(probe, spec, target)
            if ok == last:
                run += 1
            else:
                last, run = ok, 1
            if not ok:
                self.on_event(pod, "Warning", "Unhealthy",
                              f"{KIND_TITLE[kind]} probe failed: {message}".rstrip(": "))
            threshold = success_threshold if ok else failure_threshold
            if run >= threshold and (state.result != ok or state.failed == ok):
                state.result, state.message, state.failed = ok, message, not ok
                self.on_change(uid)
            if not ok and run >= threshold and kind in (LIVENESS, STARTUP):
                return  # the container will be restarted; its successor gets a new worker
            if ok and kind == STARTUP and state.result:
                return  # started: the startup probe is done for this instance
            await self.clock.sleep(period)


__all__ = ["Prober", "ProbeManager", "ProbeTarget", "LIVENESS", "READINESS", "STARTUP",
           "resolve_port"]
