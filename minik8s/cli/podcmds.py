"""``mkctl logs``, ``mkctl exec``, ``mkctl cordon|uncordon|drain``: the commands that act on
running pods and on nodes, with kubectl's flags, output lines and exit codes.

``logs`` streams ``pods/{name}/log`` as it arrives. ``exec`` opens ``pods/{name}/exec`` as a
WebSocket speaking ``v5.channel.k8s.io`` (``v4`` as a fallback): one channel byte then data,
0 stdin, 1 stdout, 2 stderr, 3 the final Status, 4 terminal size, and in v5 (255, 0) to
close stdin; the remote exit code, read from the Status, becomes mkctl's. ``drain`` cordons
the node, refuses what kubectl refuses (unmanaged pods without ``--force``, DaemonSet pods
without ``--ignore-daemonsets``, emptyDir without ``--delete-emptydir-data``), then deletes
the rest with their grace period and waits until they are gone (minik8s has no eviction
subresource, so there are no disruption budgets to respect)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
from typing import Any, Callable
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx

from minik8s.api.errors import NotFound, StatusError
from minik8s.api.selectors import selector_query
from minik8s.cli.errors import CliError
from minik8s.cli.resources import resolve_type

Obj = dict[str, Any]

V5, V4 = "v5.channel.k8s.io", "v4.channel.k8s.io"
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"


def _out(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _err(line: str) -> None:
    sys.stderr.write(line.rstrip("\n") + "\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------- which pod, which container


def _pod_rank(pod: Obj) -> tuple:
    """kubectl's preference among a controller's pods: running and ready first, then the
    most recently created."""
    st = pod.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                for c in st.get("conditions") or [])
    return (st.get("phase") == "Running", ready,
            (pod.get("metadata") or {}).get("creationTimestamp") or "")


async def resolve_pod(s: Any, arg: str) -> Obj:
    """``NAME``, ``pod/NAME`` or ``TYPE/NAME`` of anything with a pod selector."""
    namespace = s.scope.namespace
    if "/" not in arg:
        return await s.client.get("pods", arg, namespace)
    kind, _, name = arg.partition("/")
    rt = resolve_type(kind)
    if rt.kind == "Pod":
        return await s.client.get("pods", name, namespace)
    obj = await s.client.get(rt, name, namespace)
    selector = selector_query((obj.get("spec") or {}).get("selector"))
    if not selector:
        raise CliError(f"cannot attach to {rt.kind}: selector for {rt.plural}/{name} is empty")
    pods = (await s.client.list("pods", namespace, label_selector=selector)).get("items") or []
    if not pods:
        raise CliError(f"no pods found for {rt.singular or rt.kind.lower()}/{name}"
                       if rt.singular else "timed out waiting for the condition")
    pods.sort(key=_pod_rank, reverse=True)
    if len(pods) > 1:
        _err(f"Found {len(pods)} pods, using pod/{pods[0]['metadata']['name']}")
    return pods[0]


def pick_container(pod: Obj, requested: str | None) -> str:
    """The container a command means: ``-c``, else the default-container annotation, else
    the first (saying so when there was a choice), as kubectl does."""
    spec = pod.get("spec") or {}
    names = [c["name"] for c in spec.get("containers") or []]
    init = [c["name"] for c in spec.get("initContainers") or []]
    if requested:
        return requested
    annotated = ((pod.get("metadata") or {}).get("annotations") or {}).get(
        DEFAULT_CONTAINER_ANNOTATION)
    if annotated and annotated in names + init:
        return annotated
    if not names:
        raise CliError(f"pod {pod['metadata']['name']} does not have a container")
    if len(names) + len(init) > 1:
        others = ", ".join(names + [f"{n} (init)" for n in init])
        _err(f'Defaulted container "{names[0]}" out of: {others}')
    return names[0]


async def _raise_for(resp: httpx.Response) -> None:
    body = await resp.aread()
    try:
        status = json.loads(body)
    except ValueError:
        status = {"message": body.decode(errors="replace").strip()}
    raise StatusError.from_status(status if isinstance(status, dict) else {}, resp.status_code)


# --------------------------------------------------------------------------- logs


def configure_logs(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="+", metavar="POD|TYPE/NAME [CONTAINER]")
    p.add_argument("-c", "--container", help="the container to print the logs of")
    p.add_argument("-f", "--follow", action="store_true", help="stream the logs")
    p.add_argument("--tail", type=int, default=-1, metavar="N",
                   help="lines of recent log to show (-1: all)")
    p.add_argument("-p", "--previous", action="store_true",
                   help="the logs of the previous, terminated instance of the container")
    p.add_argument("--timestamps", action="store_true", help="prefix lines with timestamps")
    p.add_argument("--since", metavar="DURATION", help="only logs newer than this (5s, 2m, 3h)")
    p.add_argument("--limit-bytes", type=int, default=0, metavar="N",
                   help="stop after this many bytes")


def log_params(a: argparse.Namespace, container: str) -> dict[str, str]:
    params = {"container": container}
    if a.follow:
        params["follow"] = "true"
    if a.previous:
        params["previous"] = "true"
    if a.timestamps:
        params["timestamps"] = "true"
    if a.tail is not None and a.tail >= 0:
        params["tailLines"] = str(a.tail)
    if a.limit_bytes and a.limit_bytes > 0:
        params["limitBytes"] = str(a.limit_bytes)
    if a.since:
        from minik8s.cli.mkctl import parse_duration
        seconds = parse_duration(a.since)
        if seconds:
            params["sinceSeconds"] = str(max(1, int(seconds)))
    return params


async def run_logs(s: Any, a: argparse.Namespace) -> int:
    if len(a.args) > 2:
        raise CliError("expected POD_NAME [CONTAINER_NAME] (see 'mkctl logs --help')")
    pod = await resolve_pod(s, a.args[0])
    container = pick_container(pod, a.container or (a.args[1] if len(a.args) > 1 else None))
    md = pod["metadata"]
    path = f"/api/v1/namespaces/{md['namespace']}/pods/{md['name']}/log"
    async with s.client._http.stream("GET", path, params=log_params(a, container),
                                     headers={"Accept": "*/*"},
                                     timeout=httpx.Timeout(None, connect=10.0)) as resp:
        if resp.status_code >= 300:
            await _raise_for(resp)
        async for chunk in resp.aiter_raw():
            _out(chunk)
    return 0


# --------------------------------------------------------------------------- exec


def configure_exec(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="*", metavar="POD|TYPE/NAME -- COMMAND [ARGS...]")
    p.add_argument("-c", "--container", help="the container to run the command in")
    p.add_argument("-i", "--stdin", action="store_true", help="pass stdin to the command")
    p.add_argument("-t", "--tty", action="store_true", help="stdin is a terminal")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the command's output")


def exec_url(server: str, namespace: str, pod: str, container: str, command: list[str], *,
             stdin: bool, tty: bool) -> str:
    parts = urlsplit(server)
    scheme = "wss" if parts.scheme == "https" else "ws"
    query = [("command", c) for c in command] + [("container", container)]
    query += [("stdin", "true" if stdin else "false"), ("stdout", "true"),
              ("stderr", "false" if tty else "true"), ("tty", "true" if tty else "false")]
    path = f"{parts.path.rstrip('/')}/api/v1/namespaces/{namespace}/pods/{pod}/exec"
    return urlunsplit((scheme, parts.netloc, path, urlencode(query), ""))


def exit_code_of(status_payload: bytes) -> tuple[int, str | None]:
    """``(exit code, error message)`` from the error channel: empty or Success is 0; a
    NonZeroExitCode Status carries the code; any other failure is 1 with its message."""
    text = status_payload.strip()
    if not text:
        return 0, None
    try:
        status = json.loads(text)
    except ValueError:
        return 1, text.decode(errors="replace")
    if status.get("status") == "Success":
        return 0, None
    if status.get("reason") == "NonZeroExitCode":
        for cause in (status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode":
                try:
                    return int(cause.get("message")), None
                except (TypeError, ValueError):
                    break
    return 1, str(status.get("message") or "error executing command")


class _StdinPump:
    """Reads stdin in a daemon thread (a blocked read must never keep mkctl from exiting)
    and hands the chunks to the loop; None marks the end."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int):
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.loop, self.fd = loop, fd
        threading.Thread(target=self._run, name="stdin", daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 32 * 1024)
            except OSError:
                data = b""
            self.loop.call_soon_threadsafe(self.queue.put_nowait, data or None)
            if not data:
                return


async def run_exec(s: Any, a: argparse.Namespace) -> int:
    if not a.args:
        raise CliError("pod or type/name must be specified")
    if len(a.args) < 2:
        raise CliError("you must specify at least one command for the container")
    pod = await resolve_pod(s, a.args[0])
    command = a.args[1:]
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        raise CliError(f"cannot exec into a container in a completed pod; current phase is "
                       f"{phase}")
    container = a.container or (_quiet_container(pod) if a.quiet else pick_container(pod, None))
    stdin_fd = sys.stdin.fileno() if a.stdin else None
    tty = bool(a.tty and a.stdin)
    if tty and not os.isatty(stdin_fd):  # type: ignore[arg-type]
        tty = False
        if not a.quiet:
            _err("Unable to use a TTY - input is not a terminal or the right kind of file")
    md = pod["metadata"]
    url = exec_url(s.config.server, md["namespace"], md["name"], container, command,
                   stdin=a.stdin, tty=tty)
    return await stream_exec(s.config, url, stdin_fd=stdin_fd, tty=tty)


def _quiet_container(pod: Obj) -> str:
    names = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
    if not names:
        raise CliError(f"pod {pod['metadata']['name']} does not have a container")
    return names[0]


def _terminal_size() -> tuple[int, int]:
    size = os.get_terminal_size(sys.stdout.fileno() if os.isatty(sys.stdout.fileno()) else 0)
    return size.columns, size.lines


async def stream_exec(config: Any, url: str, *, stdin_fd: int | None, tty: bool,
                      write_out: Callable[[bytes], None] | None = None,
                      write_err: Callable[[bytes], None] | None = None) -> int:
    """One exec session over the WebSocket; the remote command's exit code."""
    import websockets
    from websockets.asyncio.client import connect

    write_out = write_out or _out
    write_err = write_err or (lambda b: (sys.stderr.buffer.write(b), sys.stderr.buffer.flush()))
    headers = {"Authorization": f"Bearer {config.token}"} if config.token else None
    secure = url.startswith("wss://")
    try:
        ws = await connect(url, ssl=config.ssl_context() if secure else None,
                           server_hostname=config.server_hostname if secure else None,
                           subprotocols=[V5, V4], additional_headers=headers,
                           compression=None, max_size=None, proxy=None, open_timeout=30,
                           user_agent_header="mkctl")
    except websockets.InvalidStatus as exc:
        body = exc.response.body or b""
        try:
            status = json.loads(body)
        except ValueError:
            status = {"message": body.decode(errors="replace").strip()}
        raise StatusError.from_status(status if isinstance(status, dict) else {},
                                      exc.response.status_code) from None
    protocol = ws.subprotocol
    loop = asyncio.get_running_loop()
    restore: Callable[[], None] | None = None
    pump_task: asyncio.Task | None = None
    error = b""
    try:
        if tty and stdin_fd is not None:
            restore = _raw_mode(stdin_fd)
            width, height = _terminal_size()
            await ws.send(bytes([RESIZE]) + json.dumps({"Width": width, "Height": height})
                          .encode())

            def on_resize() -> None:
                w, h = _terminal_size()
                loop.create_task(ws.send(bytes([RESIZE]) + json.dumps(
                    {"Width": w, "Height": h}).encode()))
            with contextlib.suppress(ValueError, RuntimeError):
                loop.add_signal_handler(signal.SIGWINCH, on_resize)
        if stdin_fd is not None:
            pump = _StdinPump(loop, stdin_fd)

            async def send_stdin() -> None:
                while (data := await pump.queue.get()) is not None:
                    await ws.send(bytes([STDIN]) + data)
                if protocol == V5:
                    await ws.send(bytes([CLOSE, STDIN]))
            pump_task = loop.create_task(send_stdin())
        with contextlib.suppress(websockets.ConnectionClosed):
            async for message in ws:
                if isinstance(message, str):
                    message = message.encode()
                if not message:
                    continue
                channel, data = message[0], message[1:]
                if channel == STDOUT:
                    write_out(data)
                elif channel == STDERR:
                    write_err(data)
                elif channel == ERROR:
                    error += data
    finally:
        if pump_task is not None:
            pump_task.cancel()
            with contextlib.suppress(BaseException):
                await pump_task
        if restore is not None:
            restore()
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signal.SIGWINCH)
        await ws.close()
    code, message = exit_code_of(error)
    if message is not None:
        raise CliError(message)
    if code != 0:
        _err(f"command terminated with exit code {code}")
    return code


def _raw_mode(fd: int) -> Callable[[], None]:
    import termios
    import tty as tty_mod
    saved = termios.tcgetattr(fd)
    tty_mod.setraw(fd)
    return lambda: termios.tcsetattr(fd, termios.TCSADRAIN, saved)


# --------------------------------------------------------------------------- cordon / uncordon


def configure_node(p: argparse.ArgumentParser) -> None:
    p.add_argument("node", metavar="NODE")
    p.add_argument("--dry-run", nargs="?", const="client", default="none",
                   help="none|client|server")


async def set_unschedulable(s: Any, name: str, value: bool, dry_run: bool = False) -> str:
    node = await s.client.get("nodes", name)
    verb = "cordoned" if value else "uncordoned"
    if bool((node.get("spec") or {}).get("unschedulable")) == value:
        return f"node/{name} already {verb}"
    if not dry_run:
        await s.client.patch("nodes", name, {"spec": {"unschedulable": True if value else None}})
    return f"node/{name} {verb}" + (" (dry run)" if dry_run else "")


async def run_cordon(s: Any, a: argparse.Namespace) -> int:
    print(await set_unschedulable(s, a.node, True, a.dry_run != "none"), flush=True)
    return 0


async def run_uncordon(s: Any, a: argparse.Namespace) -> int:
    print(await set_unschedulable(s, a.node, False, a.dry_run != "none"), flush=True)
    return 0


# --------------------------------------------------------------------------- drain


def configure_drain(p: argparse.ArgumentParser) -> None:
    p.add_argument("node", metavar="NODE")
    p.add_argument("--ignore-daemonsets", action="store_true",
                   help="leave DaemonSet-managed pods alone")
    p.add_argument("--delete-emptydir-data", action="store_true",
                   help="also delete pods with emptyDir volumes (their data is lost)")
    p.add_argument("--force", action="store_true",
                   help="also delete pods that no controller manages")
    p.add_argument("--grace-period", type=int, default=-1, metavar="SECONDS",
                   help="termination grace period of each pod (-1: its own)")
    p.add_argument("--timeout", default="0s", metavar="DURATION",
                   help="give up after this long (0: wait forever)")
    p.add_argument("--dry-run", nargs="?", const="client", default="none",
                   help="none|client|server")


def classify(pods: list[Obj], *, force: bool, ignore_daemonsets: bool,
             delete_emptydir: bool) -> tuple[list[Obj], list[str], list[str]]:
    """``(to delete, warnings, errors)`` for a node's pods, with kubectl drain's filters:
    finished pods go without question; mirror pods stay; DaemonSet pods stay (an error
    without ``--ignore-daemonsets``); unmanaged pods need ``--force``; emptyDir needs
    ``--delete-emptydir-data``."""
    delete: list[Obj] = []
    refused: dict[str, list[str]] = {}
    warned: dict[str, list[str]] = {}

    def key(p: Obj) -> str:
        return f"{p['metadata'].get('namespace', '')}/{p['metadata']['name']}"

    for p in pods:
        md = p.get("metadata") or {}
        if md.get("deletionTimestamp"):
            continue
        if (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            delete.append(p)
            continue
        if "kubernetes.io/config.mirror" in (md.get("annotations") or {}):
            continue
        owner = next((o for o in md.get("ownerReferences") or [] if o.get("controller")), None)
        if owner is not None and owner.get("kind") == "DaemonSet":
            bucket = warned if ignore_daemonsets else refused
            bucket.setdefault(_DS_IGNORED if ignore_daemonsets else _DS_REFUSED,
                              []).append(key(p))
            continue
        ok = True
        if owner is None:
            if force:
                warned.setdefault(_UNMANAGED_WARN, []).append(key(p))
            else:
                refused.setdefault(_UNMANAGED_REFUSED, []).append(key(p))
                ok = False
        if any("emptyDir" in v for v in (p.get("spec") or {}).get("volumes") or []):
            if delete_emptydir:
                warned.setdefault(_EMPTYDIR_WARN, []).append(key(p))
            else:
                refused.setdefault(_EMPTYDIR_REFUSED, []).append(key(p))
                ok = False
        if ok:
            delete.append(p)
    errors = [f"{what}: {', '.join(names)}" for what, names in refused.items()]
    warnings = [f"{what}: {', '.join(names)}" for what, names in warned.items()]
    return delete, warnings, errors


_DS_REFUSED = "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)"
_DS_IGNORED = "ignoring DaemonSet-managed Pods"
_UNMANAGED_REFUSED = "cannot delete Pods that declare no controller (use --force to override)"
_UNMANAGED_WARN = "deleting Pods that declare no controller"
_EMPTYDIR_REFUSED = ("cannot delete Pods with local storage (use --delete-emptydir-data to "
                     "override)")
_EMPTYDIR_WARN = "deleting Pods with local storage"


async def run_drain(s: Any, a: argparse.Namespace) -> int:
    from minik8s.cli.mkctl import parse_duration
    timeout = parse_duration(a.timeout) if a.timeout else None
    dry_run = a.dry_run != "none"
    print(await set_unschedulable(s, a.node, True, dry_run), flush=True)
    pods = (await s.client.list_all("pods", None, all_namespaces=True,
                                    field_selector=f"spec.nodeName={a.node}")).get("items") or []
    delete, warnings, errors = classify(pods, force=a.force,
                                        ignore_daemonsets=a.ignore_daemonsets,
                                        delete_emptydir=a.delete_emptydir_data)
    if errors:
        joined = "; ".join(errors)
        _err(f'error: unable to drain node "{a.node}" due to error: {joined}, continuing '
             f'command...')
        _err("There are pending nodes to be drained:")
        _err(f" {a.node}")
        for e in errors:
            _err(e)
        return 1
    for w in warnings:
        _err(f"Warning: {w}")
    if dry_run:
        for p in delete:
            print(f"evicting pod {p['metadata']['namespace']}/{p['metadata']['name']} "
                  f"(dry run)", flush=True)
        print(f"node/{a.node} drained (dry run)", flush=True)
        return 0
    try:
        await asyncio.wait_for(_evict_all(s, delete, a.grace_period), timeout)
    except asyncio.TimeoutError:
        _err(f'error: unable to drain node "{a.node}" due to error: global timeout reached: '
             f'{a.timeout}, continuing command...')
        _err("There are pending nodes to be drained:")
        _err(f" {a.node}")
        return 1
    print(f"node/{a.node} drained", flush=True)
    return 0


async def _evict_all(s: Any, pods: list[Obj], grace: int) -> None:
    async def one(p: Obj) -> None:
        md = p["metadata"]
        print(f"evicting pod {md['namespace']}/{md['name']}", flush=True)
        try:
            await s.client.delete("pods", md["name"], md["namespace"],
                                  grace_period_seconds=grace if grace >= 0 else None)
        except NotFound:
            pass
        while True:  # gone, or replaced by a pod of the same name
            try:
                current = await s.client.get("pods", md["name"], md["namespace"])
            except NotFound:
                break
            if current["metadata"].get("uid") != md.get("uid"):
                break
            await asyncio.sleep(0.5)
        print(f"pod/{md['name']} evicted", flush=True)

    await asyncio.gather(*(one(p) for p in pods))


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Any]] = {
    "logs": ("Print the logs for a container in a pod", configure_logs, run_logs),
    "exec": ("Execute a command in a container", configure_exec, run_exec),
    "cordon": ("Mark node as unschedulable", configure_node, run_cordon),
    "uncordon": ("Mark node as schedulable", configure_node, run_uncordon),
    "drain": ("Drain node in preparation for maintenance", configure_drain, run_drain),
}

__all__ = ["COMMANDS", "classify", "exec_url", "exit_code_of", "pick_container",
           "resolve_pod", "stream_exec"]
