"""The container runtime boundary of the kubelet: a small Protocol the pod workers drive, with
a Docker implementation (``kubelet.runtime.docker``) and an in-memory fake for unit tests
(``kubelet.runtime.fake``). Everything the kubelet knows about a container comes back as a
``ContainerInfo`` built from the container's labels and state, so a restarted kubelet can
rebuild its view of every pod from the runtime alone."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import AsyncIterator, Protocol

# Labels on every container the kubelet creates; they are the kubelet's only memory.
LABEL_POD_UID = "io.minik8s.pod.uid"
LABEL_POD_NAME = "io.minik8s.pod.name"
LABEL_POD_NAMESPACE = "io.minik8s.pod.namespace"
LABEL_CONTAINER_NAME = "io.minik8s.container.name"
LABEL_NODE = "io.minik8s.node"
# The cluster a container belongs to (a digest of the cluster CA), so that two clusters on
# one machine that both have a "node-1" never take each other's containers for orphans.
LABEL_CLUSTER = "io.minik8s.cluster"
LABEL_KIND = "io.minik8s.kind"  # "sandbox" | "init" | "app"
LABEL_ATTEMPT = "io.minik8s.container.attempt"  # restart count of this container name
LABEL_HASH = "io.minik8s.container.hash"  # hash of the container spec it was made from

SANDBOX = "sandbox"
INIT = "init"
APP = "app"


@dataclass
class ContainerInfo:
    id: str
    name: str  # runtime name
    labels: dict[str, str]
    state: str  # "created" | "running" | "exited" | "unknown"
    image: str = ""
    image_id: str = ""
    exit_code: int | None = None
    oom_killed: bool = False
    error: str = ""
    started_at: str | None = None  # RFC 3339
    finished_at: str | None = None
    created_at: str | None = None
    pid: int = 0

    @property
    def pod_uid(self) -> str:
        return self.labels.get(LABEL_POD_UID, "")

    @property
    def container_name(self) -> str:
        return self.labels.get(LABEL_CONTAINER_NAME, "")

    @property
    def kind(self) -> str:
        return self.labels.get(LABEL_KIND, "")

    @property
    def attempt(self) -> int:
        try:
            return int(self.labels.get(LABEL_ATTEMPT, "0"))
        except ValueError:
            return 0


@dataclass
class ImageInfo:
    id: str
    tags: list[str] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)  # repo@sha256:..., for a pulled image


@dataclass
class Mount:
    host_path: str
    container_path: str
    read_only: bool = False


@dataclass
class ContainerConfig:
    """What the runtime needs to create one container (sandbox or not)."""

    name: str  # runtime name, unique on the engine
    image: str
    labels: dict[str, str]
    command: list[str] | None = None  # entrypoint override (Kubernetes ``command``)
    args: list[str] | None = None  # Kubernetes ``args``
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    mounts: list[Mount] = field(default_factory=list)
    # "none" for a sandbox; "container:<sandbox id>" for containers joining it.
    network_mode: str = "none"
    ipc_mode: str | None = None
    pid_mode: str | None = None
    hostname: str | None = None
    dns_file: str | None = None  # a resolv.conf bind-mounted at /etc/resolv.conf
    hosts_file: str | None = None  # an /etc/hosts bind-mounted
    memory_limit: int | None = None  # bytes
    cpu_quota: int | None = None  # microseconds per cpu_period
    cpu_period: int = 100_000
    cpu_shares: int | None = None
    tty: bool = False
    stdin: bool = False
    init: bool = True  # a tiny init as PID 1 so SIGTERM is honoured
    privileged: bool = False
    log_max_size: str = "10m"
    log_max_files: int = 3


@dataclass
class ExecResult:
    exit_code: int
    output: bytes = b""


class ExecStream(Protocol):
    """One interactive exec: the process's output as ``(1|2, bytes)`` chunks (stdout,
    stderr; a tty has only stdout), its stdin, its terminal size, and its exit code."""

    async def read(self) -> tuple[int, bytes] | None:
        """The next output chunk; None once the process closed its output."""

    async def write(self, data: bytes) -> None: ...

    async def close_stdin(self) -> None: ...

    async def resize(self, width: int, height: int) -> None: ...

    async def exit_code(self) -> int:
        """After ``read`` returned None: the exit code (-1 when unknown)."""

    async def close(self) -> None: ...


class ContainerRuntime(Protocol):
    async def version(self) -> str: ...

    async def list_containers(self, labels: dict[str, str] | None = None) -> list[ContainerInfo]:
        """All containers (running or not) carrying every given label."""

    async def inspect(self, container_id: str) -> ContainerInfo | None: ...

    async def image(self, ref: str) -> ImageInfo | None:
        """The local image for a reference, or None. Never pulls."""

    async def pull(self, ref: str) -> ImageInfo: ...

    async def create(self, config: ContainerConfig) -> str:
        """Create (not start) a container; its id. Never pulls a missing image."""

    async def start(self, container_id: str) -> None: ...

    async def stop(self, container_id: str, timeout: float) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""

    async def remove(self, container_id: str) -> None: ...

    async def logs(self, container_id: str, *, follow: bool = False, tail: int | None = None,
                   timestamps: bool = False, since: float | None = None) -> AsyncIterator[bytes]: ...

    async def exec_run(self, container_id: str, command: list[str],
                       timeout: float | None = None) -> ExecResult:
        """Run a command to completion (exec probes); output capped."""

    async def exec_stream(self, container_id: str, command: list[str], *, stdin: bool = False,
                          tty: bool = False) -> ExecStream:
        """Start a command with its streams attached (``kubectl exec``)."""


__all__ = ["ContainerRuntime", "ContainerInfo", "ContainerConfig", "ImageInfo", "Mount",
           "ExecResult", "ExecStream", "LABEL_POD_UID", "LABEL_POD_NAME", "LABEL_POD_NAMESPACE",
           "LABEL_CONTAINER_NAME", "LABEL_NODE", "LABEL_CLUSTER", "LABEL_KIND", "LABEL_ATTEMPT", "LABEL_HASH",
           "SANDBOX", "INIT", "APP"]
