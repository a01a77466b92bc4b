"""An in-memory ``ContainerRuntime`` for unit tests: containers "run" as soon as they start
and stay running until a test makes them exit (with a code, or OOM-killed), so the pod
worker's decisions can be checked without Docker and without waiting."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import AsyncIterator, Callable

from kubelet.runtime.base import ContainerConfig, ContainerInfo, ExecResult, ImageInfo


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FakeContainer:
    id: str
    config: ContainerConfig
    state: str = "created"
    exit_code: int | None = None
    oom_killed: bool = False
    started_at: float | None = None
    finished_at: float | None = None
    created_at: float = 0.0
    pid: int = 0
    image_id: str = ""
    stop_timeouts: list[float] = field(default_factory=list)


ExecHandler = Callable[[FakeContainer, list[str]], "ExecResult | int"]


class FakeRuntime:
    def __init__(self, images: dict[str, str] | None = None,
                 now: Callable[[], float] = time.time):
        # image reference -> image id
        self.images: dict[str, str] = dict(images or {})
        self.pullable: dict[str, str] = {}  # what pull() can fetch
        self.now = now
        self.containers: dict[str, FakeContainer] = {}
        self.calls: list[tuple[str, str]] = []
        self.exec_handler: ExecHandler | None = None
        self.fail_start: dict[str, str] = {}  # container name label -> error message
        self._ids = itertools.count(1)
        self._pids = itertools.count(1000)

    # --- test controls --------------------------------------------------------------

    def exit(self, container_id: str, code: int = 0, *, oom: bool = False) -> None:
        c = self.containers[container_id]
        c.state, c.exit_code, c.oom_killed = "exited", code, oom
        c.finished_at = self.now()
        c.pid = 0

    def by_name(self, container_name: str, pod_uid: str | None = None) -> list[FakeContainer]:
        """Containers for a Kubernetes container name, oldest first."""
        from kubelet.runtime.base import LABEL_CONTAINER_NAME, LABEL_POD_UID
        return [c for c in self.containers.values()
                if c.config.labels.get(LABEL_CONTAINER_NAME) == container_name
                and (pod_uid is None or c.config.labels.get(LABEL_POD_UID) == pod_uid)]

    def running(self) -> list[FakeContainer]:
        return [c for c in self.containers.values() if c.state == "running"]

    def count(self, verb: str) -> int:
        return sum(1 for v, _ in self.calls if v == verb)

    # --- protocol -------------------------------------------------------------------

    async def version(self) -> str:
        return "fake-1.0"

    def _info(self, c: FakeContainer) -> ContainerInfo:
        return ContainerInfo(
            id=c.id, name=c.config.name, labels=dict(c.config.labels), state=c.state,
            image=c.config.image, image_id=c.image_id,
            exit_code=c.exit_code if c.state == "exited" else None, oom_killed=c.oom_killed,
            started_at=_rfc3339(c.started_at) if c.started_at is not None else None,
            finished_at=_rfc3339(c.finished_at) if c.finished_at is not None else None,
            created_at=_rfc3339(c.created_at), pid=c.pid)

    async def list_containers(self, labels: dict[str, str] | None = None) -> list[ContainerInfo]:
        self.calls.append(("list", ""))
        want = labels or {}
        return [self._info(c) for c in self.containers.values()
                if all(c.config.labels.get(k) == v for k, v in want.items())]

    async def inspect(self, container_id: str) -> ContainerInfo | None:
        c = self.containers.get(container_id)
        return None if c is None else self._info(c)

    async def image(self, ref: str) -> ImageInfo | None:
        image_id = self.images.get(ref)
        return None if image_id is None else ImageInfo(id=image_id, tags=[ref])

    async def pull(self, ref: str) -> ImageInfo:
        self.calls.append(("pull", ref))
        if ref not in self.pullable:
            raise RuntimeError(f"pull access denied for {ref}")
        self.images[ref] = self.pullable[ref]
        return ImageInfo(id=self.images[ref], tags=[ref])

    async def create(self, config: ContainerConfig) -> str:
        self.calls.append(("create", config.name))
        if config.image not in self.images:
            raise RuntimeError(f"No such image: {config.image}")
        if any(c.config.name == config.name for c in self.containers.values()):
            raise RuntimeError(f"Conflict. The container name {config.name} is already in use")
        cid = f"c{next(self._ids):063d}"
        self.containers[cid] = FakeContainer(cid, config, created_at=self.now(),
                                             image_id=self.images[config.image])
        return cid

    async def start(self, container_id: str) -> None:
        self.calls.append(("start", container_id))
        c = self.containers[container_id]
        from kubelet.runtime.base import LABEL_CONTAINER_NAME
        # as Docker: ``container:`` modes are resolved at start, against a running container
        for mode in (c.config.network_mode, c.config.ipc_mode):
            if mode and mode.startswith("container:"):
                other = self.containers.get(mode[len("container:"):])
                if other is None or other.state != "running":
                    raise RuntimeError(f"cannot join network of a non running container: "
                                       f"{mode[len('container:'):]}")
        err = self.fail_start.get(c.config.labels.get(LABEL_CONTAINER_NAME, ""))
        if err:
            c.state, c.exit_code, c.finished_at = "exited", 128, self.now()
            raise RuntimeError(err)
        c.state, c.started_at, c.pid = "running", self.now(), next(self._pids)

    async def stop(self, container_id: str, timeout: float) -> None:
        self.calls.append(("stop", container_id))
        c = self.containers.get(container_id)
        if c is None:
            return
        c.stop_timeouts.append(timeout)
        if c.state == "running":
            self.exit(container_id, 137 if timeout <= 0 else 143)

    async def remove(self, container_id: str) -> None:
        self.calls.append(("remove", container_id))
        self.containers.pop(container_id, None)

    async def logs(self, container_id: str, *, follow: bool = False, tail: int | None = None,
                   timestamps: bool = False, since: float | None = None) -> AsyncIterator[bytes]:
        if False:  # pragma: no cover - an empty async generator
            yield b""

    async def exec_run(self, container_id: str, command: list[str],
                       timeout: float | None = None) -> ExecResult:
        self.calls.append(("exec", container_id))
        c = self.containers[container_id]
        if c.state != "running":
            raise RuntimeError(f"container {container_id} is not running")
        if self.exec_handler is None:
            return ExecResult(0)
        result = self.exec_handler(c, command)
        return result if isinstance(result, ExecResult) else ExecResult(int(result))

    async def exec_stream(self, container_id: str, command: list[str], *, stdin: bool = False,
                          tty: bool = False) -> "FakeExecStream":
        """The exec handler's output on stdout, then its exit code; with ``stdin`` and no
        handler, ``cat``: what is written comes back until stdin closes."""
        self.calls.append(("exec_stream", container_id))
        c = self.containers.get(container_id)
        if c is None or c.state != "running":
            raise RuntimeError(f"container {container_id} is not running")
        stream = FakeExecStream(command, tty)
        if self.exec_handler is not None:
            result = self.exec_handler(c, command)
            result = result if isinstance(result, ExecResult) else ExecResult(int(result))
            if result.output:
                stream.queue.put_nowait((1, result.output))
            stream.code = result.exit_code
            stream.queue.put_nowait(None)
        elif not stdin:
            stream.queue.put_nowait(None)
        return stream


class FakeExecStream:
    def __init__(self, command: list[str], tty: bool):
        import asyncio
        self.command = command
        self.tty = tty
        self.queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        self.stdin = b""
        self.stdin_closed = False
        self.sizes: list[tuple[int, int]] = []
        self.code = 0
        self.closed = False

    async def read(self) -> tuple[int, bytes] | None:
        return await self.queue.get()

    async def write(self, data: bytes) -> None:
        self.stdin += data
        self.queue.put_nowait((1, data))

    async def close_stdin(self) -> None:
        self.stdin_closed = True
        self.queue.put_nowait(None)

    async def resize(self, width: int, height: int) -> None:
        self.sizes.append((width, height))

    async def exit_code(self) -> int:
        return self.code

    async def close(self) -> None:
        self.closed = True


__all__ = ["FakeRuntime", "FakeContainer", "FakeExecStream"]
