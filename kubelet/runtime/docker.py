"""``ContainerRuntime`` over the Docker engine, through docker-py's low-level ``APIClient``.

The high-level ``containers.run()`` pulls an image it cannot find, and this cluster must
never make dockerd pull unless the kubelet was told it may: so containers are made with
``create_container`` + ``create_host_config``, and the only pull is ``pull()``, which the
kubelet calls only with pulls allowed. docker-py blocks, so every call runs in a worker
thread; a pool of our own (not the loop's default one, six threads on two cores) keeps a
few long graceful stops from starving status reads and starts."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import json
import threading
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Callable, TypeVar

import docker
from docker import errors as docker_errors
from docker.types import LogConfig

from kubelet.runtime.base import ContainerConfig, ContainerInfo, ExecResult, ImageInfo

log = logging.getLogger(__name__)

T = TypeVar("T")
EXEC_OUTPUT_CAP = 10 * 1024
_ZERO_TIME = "0001-01-01T00:00:00Z"


def docker_time(value: str | None) -> str | None:
    """Docker's nanosecond timestamps as RFC 3339 seconds (the API's precision); None for
    Docker's zero time."""
    if not value or value.startswith("0001-01-01"):
        return None
    head = value.split(".")[0].rstrip("Z")
    if "+" in head[10:]:
        head = head[:10] + head[10:].split("+")[0]
    try:
        dt = datetime.fromisoformat(head).replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


class DockerRuntime:
    def __init__(self, base_url: str = "unix:///var/run/docker.sock", *,
                 threads: int = 32, timeout: int = 120):
        self.base_url = base_url
        self.timeout = timeout
        self._api: docker.APIClient | None = None
        self._api_lock = threading.Lock()
        self._threads = threads
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, "docker")

    # --- plumbing -------------------------------------------------------------------

    def api(self) -> docker.APIClient:
        with self._api_lock:
            if self._api is None:
                # one pooled connection per worker thread: with docker-py's default of
                # 10, calls beyond 10 at once each open and drop a connection of their own
                self._api = docker.APIClient(base_url=self.base_url, version="auto",
                                             timeout=self.timeout, max_pool_size=self._threads)
            return self._api

    async def _call(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kw))

    async def _api_call(self, method: str, *args: Any, **kw: Any) -> Any:
        def run() -> Any:
            return getattr(self.api(), method)(*args, **kw)
        return await self._call(run)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._api is not None:
            self._api.close()

    # --- protocol -------------------------------------------------------------------

    async def version(self) -> str:
        info = await self._api_call("version")
        return str(info.get("Version", "unknown"))

    async def list_containers(self, labels: dict[str, str] | None = None) -> list[ContainerInfo]:
        filters = {"label": [f"{k}={v}" for k, v in (labels or {}).items()]}
        rows = await self._api_call("containers", all=True, filters=filters)
        out = []
        for row in rows:
            names = row.get("Names") or [""]
            out.append(ContainerInfo(
                id=row["Id"], name=names[0].lstrip("/"), labels=row.get("Labels") or {},
                state=_state(row.get("State", "")), image=row.get("Image", ""),
                image_id=row.get("ImageID", ""),
                created_at=datetime.fromtimestamp(row.get("Created", 0), timezone.utc)
                .strftime("%Y-%m-%dT%H:%M:%SZ")))
        return out

    async def inspect(self, container_id: str) -> ContainerInfo | None:
        try:
            data = await self._api_call("inspect_container", container_id)
        except docker_errors.NotFound:
            return None
        st = data.get("State") or {}
        cfg = data.get("Config") or {}
        status = _state(st.get("Status", ""))
        return ContainerInfo(
            id=data["Id"], name=(data.get("Name") or "").lstrip("/"),
            labels=cfg.get("Labels") or {}, state=status, image=cfg.get("Image", ""),
            image_id=data.get("Image", ""),
            exit_code=st.get("ExitCode") if status == "exited" else None,
            oom_killed=bool(st.get("OOMKilled")), error=st.get("Error") or "",
            started_at=docker_time(st.get("StartedAt")),
            finished_at=docker_time(st.get("FinishedAt")),
            created_at=docker_time(data.get("Created")), pid=int(st.get("Pid") or 0))

    async def image(self, ref: str) -> ImageInfo | None:
        try:
            data = await self._api_call("inspect_image", ref)
        except docker_errors.NotFound:
            return None
        except docker_errors.APIError as exc:  # an invalid reference is simply not here
            if exc.status_code in (400, 404):
                return None
            raise
        return ImageInfo(id=data["Id"], tags=list(data.get("RepoTags") or []),
                         digests=list(data.get("RepoDigests") or []))

    async def pull(self, ref: str) -> ImageInfo:
        repo, tag = _split_ref(ref)
        await self._api_call("pull", repo, tag=tag)
        info = await self.image(ref)
        if info is None:
            raise RuntimeError(f"image {ref} missing after pull")
        return info

    async def create(self, config: ContainerConfig) -> str:
        def run() -> str:
            api = self.api()
            binds = [f"{m.host_path}:{m.container_path}:{'ro' if m.read_only else 'rw'}"
                     for m in config.mounts]
            if config.dns_file:
                binds.append(f"{config.dns_file}:/etc/resolv.conf:ro")
            if config.hosts_file:
                binds.append(f"{config.hosts_file}:/etc/hosts:ro")
            host_config = api.create_host_config(
                binds=binds or None, network_mode=config.network_mode,
                ipc_mode=config.ipc_mode, pid_mode=config.pid_mode,
                mem_limit=config.memory_limit,
                memswap_limit=config.memory_limit,  # no swap on top: the limit is the limit
                cpu_quota=config.cpu_quota, cpu_period=config.cpu_period if config.cpu_quota
                else None, cpu_shares=config.cpu_shares, init=config.init,
                privileged=config.privileged,
                log_config=LogConfig(type="json-file", config={
                    "max-size": config.log_max_size, "max-file": str(config.log_max_files)}))
            kwargs: dict[str, Any] = {}
            # Docker refuses a hostname for a container sharing another's network
            if config.hostname and not config.network_mode.startswith("container:"):
                kwargs["hostname"] = config.hostname
            created = api.create_container(
                image=config.image, command=config.args, entrypoint=config.command,
                environment=[f"{k}={v}" for k, v in config.env.items()],
                working_dir=config.working_dir or None, labels=config.labels,
                name=config.name, host_config=host_config, tty=config.tty,
                stdin_open=config.stdin, detach=True, **kwargs)
            return created["Id"]
        return await self._call(run)

    async def start(self, container_id: str) -> None:
        await self._api_call("start", container_id)

    async def stop(self, container_id: str, timeout: float) -> None:
        try:
            await self._api_call("stop", container_id, timeout=max(0, int(round(timeout))))
        except docker_errors.NotFound:
            pass
        except docker_errors.APIError as exc:
            if exc.status_code != 304:  # already stopped
                raise

    async def remove(self, container_id: str) -> None:
        try:
            await self._api_call("remove_container", container_id, force=True, v=True)
        except docker_errors.NotFound:
            pass
        except docker_errors.APIError as exc:
            if exc.status_code == 409 and "already in progress" in str(exc):
                return
            raise

    async def logs(self, container_id: str, *, follow: bool = False, tail: int | None = None,
                   timestamps: bool = False, since: float | None = None) -> AsyncIterator[bytes]:
        kw: dict[str, Any] = {"stdout": True, "stderr": True, "timestamps": timestamps,
                              "tail": "all" if tail is None else tail}
        if since is not None:
            kw["since"] = since
        if not follow:
            data = await self._api_call("logs", container_id, stream=False, **kw)
            if data:
                yield data
            return
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=256)
        loop = asyncio.get_running_loop()
        stop = threading.Event()

        def pump() -> None:
            try:
                stream = self.api().logs(container_id, stream=True, follow=True, **kw)
                for chunk in stream:
                    if stop.is_set():
                        break
                    asyncio.run_coroutine_threadsafe(queue.put(chunk), loop).result()
            except Exception as exc:  # the stream's end, however it ends
                log.debug("log stream of %s ended: %s", container_id[:12], exc)
            finally:
                try:
                    asyncio.run_coroutine_threadsafe(queue.put(None), loop)
                except RuntimeError:
                    pass

        thread = threading.Thread(target=pump, name=f"logs-{container_id[:12]}", daemon=True)
        thread.start()
        try:
            while True:
                chunk = await queue.get()
                if chunk is None:
                    return
                yield chunk
        finally:
            stop.set()

    async def exec_run(self, container_id: str, command: list[str],
                       timeout: float | None = None) -> ExecResult:
        def run() -> ExecResult:
            api = self.api()
            ex = api.exec_create(container_id, command, stdout=True, stderr=True)
            output = api.exec_start(ex["Id"], stream=False, demux=False) or b""
            code = api.exec_inspect(ex["Id"]).get("ExitCode")
            return ExecResult(exit_code=-1 if code is None else int(code),
                              output=output[:EXEC_OUTPUT_CAP])
        fut = self._call(run)
        if timeout is None:
            return await fut
        return await asyncio.wait_for(fut, timeout)

    async def exec_stream(self, container_id: str, command: list[str], *, stdin: bool = False,
                          tty: bool = False) -> "DockerExecStream":
        """``exec_create`` through docker-py, then the start request made here on a
        connection of our own, hijacked after the 101 answer: docker-py's
        ``exec_start(socket=True)`` hands over a socket whose HTTP reader may already have
        buffered the first output, and blocks; an asyncio stream has neither problem."""
        created = await self._api_call("exec_create", container_id, command, stdin=stdin,
                                       tty=tty, stdout=True, stderr=True)
        exec_id = created["Id"]
        version = await self._call(lambda: self.api().api_version)
        if self.base_url.startswith("unix://"):
            reader, writer = await asyncio.open_unix_connection(self.base_url[len("unix://"):])
        else:
            host, _, port = self.base_url.split("://", 1)[-1].rstrip("/").rpartition(":")
            reader, writer = await asyncio.open_connection(host, int(port))
        body = json.dumps({"Detach": False, "Tty": tty}).encode()
        writer.write((f"POST /v{version}/exec/{exec_id}/start HTTP/1.1\r\nHost: docker\r\n"
                      f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                      f"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n").encode() + body)
        await writer.drain()
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            if status not in (101, 200):
                detail = await asyncio.wait_for(reader.read(4096), 5)
                raise RuntimeError(f"exec start failed ({status}): "
                                   f"{detail.decode(errors='replace').strip()}")
        except BaseException:
            writer.close()
            raise
        return DockerExecStream(self, exec_id, reader, writer, tty)


class DockerExecStream:
    """The hijacked exec connection: raw bytes with a tty, else Docker's multiplexed frames
    (8-byte header: stream type, 3 zero bytes, big-endian length)."""

    def __init__(self, runtime: DockerRuntime, exec_id: str, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, tty: bool):
        self.runtime = runtime
        self.exec_id = exec_id
        self.reader = reader
        self.writer = writer
        self.tty = tty

    async def read(self) -> tuple[int, bytes] | None:
        try:
            while True:
                if self.tty:
                    data = await self.reader.read(65536)
                    return (1, data) if data else None
                header = await self.reader.readexactly(8)
                size = int.from_bytes(header[4:8], "big")
                data = await self.reader.readexactly(size) if size else b""
                if data:
                    return (2 if header[0] == 2 else 1, data)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    async def write(self, data: bytes) -> None:
        if self.writer.is_closing():
            return
        self.writer.write(data)
        await self.writer.drain()

    async def close_stdin(self) -> None:
        if not self.writer.is_closing() and self.writer.can_write_eof():
            self.writer.write_eof()

    async def resize(self, width: int, height: int) -> None:
        try:
            await self.runtime._api_call("exec_resize", self.exec_id, height=height,
                                         width=width)
        except docker_errors.APIError as exc:  # not running (yet, or any more)
            log.debug("exec resize failed: %s", exc)

    async def exit_code(self) -> int:
        for _ in range(50):  # the output can close a moment before the process is reaped
            info = await self.runtime._api_call("exec_inspect", self.exec_id)
            if not info.get("Running"):
                code = info.get("ExitCode")
                return -1 if code is None else int(code)
            await asyncio.sleep(0.05)
        return -1

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


def _state(status: str) -> str:
    if status in ("running", "paused", "restarting"):
        return "running"
    if status in ("exited", "dead"):
        return "exited"
    if status == "created":
        return "created"
    return "unknown"


def _split_ref(ref: str) -> tuple[str, str | None]:
    if "@" in ref:
        return ref, None
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        repo, _, tag = ref.rpartition(":")
        return repo, tag
    return ref, "latest"


__all__ = ["DockerRuntime", "DockerExecStream", "docker_time"]
