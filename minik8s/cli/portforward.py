"""``mkctl port-forward TYPE/NAME [LOCAL:]REMOTE...``: listen on the user's loopback and carry
each accepted connection to a port of a pod, as kubectl does.

The pod comes from a name, ``pod/NAME``, ``svc/NAME`` or anything with a pod selector
(``deploy/NAME`` ...), preferring a running, ready, recent one; for a Service each given port
is a *service* port turned into the pod's ``targetPort`` (a number, or a container port
name), the local port staying the service port, as kubectl's
``translateServicePortToTargetPort``. The pod must be Running.

One WebSocket to ``pods/{name}/portforward`` carries one SPDY session for the whole run
(``minik8s.spdy``, subprotocol ``SPDY/3.1+portforward.k8s.io``, like kubectl 1.31+); each
local connection gets a ``requestid`` and two streams, ``error`` then ``data``. When the pod
side has nothing listening the kubelet writes its message on the error stream: the local
connection is closed, the message printed, and the forwarder goes on listening (kubectl
1.32 instead drops the whole tunnel and exits). Losing the tunnel ends the command:
``error: lost connection to pod``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import sys
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from minik8s import spdy
from minik8s.api.errors import StatusError
from minik8s.api.selectors import selector_query
from minik8s.cli.errors import CliError
from minik8s.cli.podcmds import _pod_rank
from minik8s.cli.resources import resolve_type
from minik8s.wscompat import websocket_subprotocols

Obj = dict[str, Any]


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _err(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="*", metavar="TYPE/NAME [LOCAL_PORT:]REMOTE_PORT")
    p.add_argument("--address", action="append", default=None,
                   help="addresses to listen on (comma-separated); only IP addresses or "
                        "localhost (the default: 127.0.0.1 and ::1)")
    p.add_argument("--pod-running-timeout", default="1m",
                   help="how long to wait for a pod of a Service or workload to exist")


# --------------------------------------------------------------------------- ports


def parse_ports(specs: list[str]) -> list[tuple[str, str]]:
    """``(local, remote)`` strings of ``[LOCAL:]REMOTE`` specs; local "" means "the same as
    remote" and "0" any free port (kubectl spells that ``:REMOTE`` too)."""
    out = []
    for spec in specs:
        local, sep, remote = spec.rpartition(":")
        if not sep:
            local = ""
        elif local == "":
            local = "0"
        if not remote:
            raise CliError(f"Invalid port format '{spec}'")
        if local and not _valid_number(local, allow_zero=True):
            raise CliError(f"Error parsing local port '{local}': must be a number between 0 "
                           f"and 65535")
        out.append((local, remote))
    return out


def _valid_number(text: str, *, allow_zero: bool = False) -> bool:
    return text.isdigit() and (0 if allow_zero else 1) <= int(text) <= 65535


def container_port_by_name(pod: Obj, name: str) -> int:
    for c in (pod.get("spec") or {}).get("containers") or []:
        for port in c.get("ports") or []:
            if port.get("name") == name:
                return int(port["containerPort"])
    raise CliError(f"Pod '{pod['metadata']['name']}' does not have a named port '{name}'")


def pod_ports(pod: Obj, ports: list[tuple[str, str]]) -> list[tuple[int, int]]:
    """``(local, remote)`` numbers for a pod: remote by number or container port name."""
    out = []
    for local, remote in ports:
        number = int(remote) if remote.isdigit() else container_port_by_name(pod, remote)
        if not 0 < number < 65536:
            raise CliError(f"Error parsing remote port '{remote}': must be a number between "
                           f"1 and 65535")
        out.append((int(local) if local else number, number))
    return out


def service_ports(svc: Obj, pod: Obj, ports: list[tuple[str, str]]) -> list[tuple[int, int]]:
    """Service ports to the pod's target ports; the local port stays the service port."""
    spec = svc.get("spec") or {}
    name = svc["metadata"]["name"]
    out = []
    for local, remote in ports:
        if remote.isdigit():
            number = int(remote)
        else:
            found = [p for p in spec.get("ports") or [] if p.get("name") == remote]
            if not found:
                raise CliError(f"Service '{name}' does not have a named port '{remote}'")
            number = int(found[0]["port"])
        entry = next((p for p in spec.get("ports") or [] if p.get("port") == number), None)
        if entry is None:
            raise CliError(f"Service {name} does not have a service port {number}")
        target = entry.get("targetPort")
        if spec.get("clusterIP") == "None" or target in (None, 0, ""):
            container = number
        elif isinstance(target, int) or str(target).isdigit():
            container = int(target)
        else:
            container = container_port_by_name(pod, str(target))
        out.append((int(local) if local else number, container))
    return out


# --------------------------------------------------------------------------- which pod


async def _first_pod(s: Any, selector: str, namespace: str, timeout: float) -> Obj:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        pods = (await s.client.list("pods", namespace, label_selector=selector)).get(
            "items") or []
        pods = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
        if pods:
            return max(pods, key=_pod_rank)
        if loop.time() >= deadline:
            raise CliError("timed out waiting for the condition")
        await asyncio.sleep(0.5)


async def resolve_target(s: Any, arg: str, ports: list[tuple[str, str]],
                         timeout: float) -> tuple[Obj, list[tuple[int, int]]]:
    namespace = s.scope.namespace
    kind, slash, name = arg.partition("/")
    if not slash:
        pod = await s.client.get("pods", arg, namespace)
        return pod, pod_ports(pod, ports)
    if not name:
        raise CliError("arguments in resource/name form must have a single resource and "
                       "name")
    rt = resolve_type(kind)
    if rt.kind == "Pod":
        pod = await s.client.get("pods", name, namespace)
        return pod, pod_ports(pod, ports)
    obj = await s.client.get(rt, name, namespace)
    selector = selector_query((obj.get("spec") or {}).get("selector"))
    if not selector:
        raise CliError(f"cannot attach to {rt.kind}: selector for {rt.plural}/{name} is empty")
    pod = await _first_pod(s, selector, namespace, timeout)
    if rt.kind == "Service":
        return pod, service_ports(obj, pod, ports)
    return pod, pod_ports(pod, ports)


# --------------------------------------------------------------------------- the tunnel


def portforward_url(server: str, namespace: str, pod: str) -> str:
    parts = urlsplit(server)
    scheme = "wss" if parts.scheme == "https" else "ws"
    path = f"{parts.path.rstrip('/')}/api/v1/namespaces/{namespace}/pods/{pod}/portforward"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


async def open_tunnel(config: Any, url: str) -> Any:
    import websockets
    from websockets.asyncio.client import connect

    headers = {"Authorization": f"Bearer {config.token}"} if config.token else None
    secure = url.startswith("wss://")
    try:
        return await connect(url, ssl=config.ssl_context() if secure else None,
                             server_hostname=config.server_hostname if secure else None,
                             additional_headers=headers, compression=None, max_size=None,
                             proxy=None, open_timeout=30, user_agent_header="mkctl",
                             **websocket_subprotocols([spdy.TUNNEL_PROTOCOL]))
    except websockets.InvalidStatus as exc:
        body = exc.response.body or b""
        try:
            status = json.loads(body)
        except ValueError:
            status = {"message": body.decode(errors="replace").strip()}
        raise StatusError.from_status(status if isinstance(status, dict) else {},
                                      exc.response.status_code) from None


class Forwarder:
    """Local listeners feeding one SPDY session."""

    def __init__(self, session: spdy.Session):
        self.session = session
        self._ids = itertools.count()
        self.servers: list[asyncio.base_events.Server] = []

    async def handle(self, local: int, remote: int, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        _say(f"Handling connection for {local}")
        headers = {spdy.HEADER_STREAM_TYPE: spdy.STREAM_TYPE_ERROR,
                   spdy.HEADER_PORT: str(remote), spdy.HEADER_REQUEST_ID: str(next(self._ids))}
        error_task: asyncio.Task | None = None
        try:
            error = await self.session.open_stream(headers)
            await error.close()  # we never write on it
            error_task = asyncio.create_task(error.read_all())
            data = await self.session.open_stream({**headers, spdy.HEADER_STREAM_TYPE:
                                                   spdy.STREAM_TYPE_DATA})
            await spdy.splice(data, reader, writer, close_on_remote_eof=True)
            message = await error_task
        except (ConnectionError, TimeoutError) as exc:
            if not self.session.closed:
                _err(f"error: creating streams for port {local} -> {remote}: {exc}")
            return
        finally:
            writer.close()
            if error_task is not None and not error_task.done():
                error_task.cancel()
        if message:
            _err(f"error: an error occurred forwarding {local} -> {remote}: "
                 f"{message.decode(errors='replace')}")

    async def listen(self, addresses: list[str], ports: list[tuple[int, int]]) -> None:
        failures = []
        for local, remote in ports:
            bound = 0
            for address in addresses:
                try:
                    server = await asyncio.start_server(
                        lambda r, w, lp=local, rp=remote: self.handle(lp, rp, r, w),
                        address, local, reuse_address=True)
                except OSError as exc:
                    failures.append(f"{address}:{local}: {exc.strerror or exc}")
                    continue
                self.servers.append(server)
                host, actual = server.sockets[0].getsockname()[:2]
                local = actual  # port 0: every address gets the port the first one got
                shown = f"[{host}]" if ":" in host else host
                _say(f"Forwarding from {shown}:{actual} -> {remote}")
                bound += 1
            if not bound:
                raise CliError(f"unable to listen on any of the requested ports: "
                               f"[{local}:{remote}] ({'; '.join(failures)})")

    def close(self) -> None:
        for server in self.servers:
            server.close()


def listen_addresses(values: list[str] | None) -> list[str]:
    raw = [x.strip() for v in values or ["localhost"] for x in v.split(",") if x.strip()]
    out: list[str] = []
    for value in raw:
        for address in (["127.0.0.1", "::1"] if value == "localhost" else [value]):
            if address not in out:
                out.append(address)
    return out


async def run(s: Any, a: argparse.Namespace) -> int:
    from minik8s.cli.mkctl import parse_duration

    if len(a.args) < 2:
        raise CliError("TYPE/NAME and list of ports are required for port-forward")
    ports = parse_ports(a.args[1:])
    timeout = parse_duration(a.pod_running_timeout) or 60.0
    pod, numbers = await resolve_target(s, a.args[0], ports, timeout)
    phase = (pod.get("status") or {}).get("phase")
    if phase != "Running":
        raise CliError(f"unable to forward port because pod is not running. Current "
                       f"status={phase or 'Unknown'}")
    md = pod["metadata"]
    ws = await open_tunnel(s.config, portforward_url(s.config.server, md["namespace"],
                                                     md["name"]))

    async def receive() -> bytes | None:
        try:
            message = await ws.recv()
        except Exception:  # closed, or the connection broke: the tunnel is gone
            return None
        return message if isinstance(message, bytes) else message.encode()

    session = spdy.Session(ws.send, server=False)
    reader = asyncio.create_task(session.run(receive))
    forwarder = Forwarder(session)
    try:
        await forwarder.listen(listen_addresses(a.address), numbers)
        with contextlib.suppress(spdy.ProtocolError, ConnectionError):
            await reader
    finally:
        forwarder.close()
        reader.cancel()
        with contextlib.suppress(BaseException):
            await reader
        with contextlib.suppress(Exception):
            await session.goaway()
        await ws.close()
    raise CliError("lost connection to pod")


COMMANDS: dict[str, tuple[str, Any, Any]] = {
    "port-forward": ("Forward one or more local ports to a pod", configure, run),
}

__all__ = ["COMMANDS", "parse_ports", "pod_ports", "service_ports", "listen_addresses",
           "portforward_url", "Forwarder"]
