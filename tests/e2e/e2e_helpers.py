"""Helpers shared by the end-to-end tests: polling with a bound, and an in-process kubelet
that a test can restart."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable

from kubelet.config import KubeletConfig
from kubelet.kubelet import Kubelet
from kubelet.network import NoNetwork
from kubelet.runtime.base import LABEL_NODE
from kubelet.runtime.docker import DockerRuntime
from minik8s.client import Client

ROOT = Path(__file__).resolve().parents[2]
BUSYBOX = "minik8s/busybox:1.35"


def remove_node_containers(node_name: str) -> None:
    import docker
    api = docker.APIClient(version="auto")
    try:
        for c in api.containers(all=True, filters={"label": f"{LABEL_NODE}={node_name}"}):
            try:
                api.remove_container(c["Id"], force=True, v=True)
            except docker.errors.NotFound:
                pass
    finally:
        api.close()


class KubeletHandle:
    """One in-process kubelet that a test can stop and start again."""

    def __init__(self, apiserver: Any, name: str, root: Path, **overrides: Any):
        self.name = name
        self.kubeconfig = apiserver.kubeconfig_for(f"node-{name}", f"system:node:{name}",
                                                   ("system:nodes",))
        self.config = KubeletConfig(
            node_name=name, kubeconfig=str(self.kubeconfig), root_dir=str(root),
            node_ip="127.0.0.1", crash_loop_backoff_base=1.0, crash_loop_backoff_max=4.0,
            node_status_update_period=2.0, lease_renew_interval=2.0, sync_frequency=5.0,
            orphan_cleanup_period=5.0, **overrides)
        self.runtime = DockerRuntime(self.config.docker_url)
        self.kubelet: Kubelet | None = None
        self.client: Client | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.client = Client.from_kubeconfig(str(self.kubeconfig))
        self.kubelet = Kubelet(self.config, self.client, self.runtime, NoNetwork("10.96.0.10"))
        self.task = asyncio.get_running_loop().create_task(self.kubelet.start(),
                                                           name=f"kubelet-{self.name}")
        await wait_for(lambda: self._ready(), 30, "kubelet did not sync")

    async def _ready(self) -> bool:
        if self.task is not None and self.task.done():
            self.task.result()  # raises what ended it
            raise AssertionError("kubelet ended")
        return self.kubelet is not None and self.kubelet.pods.synced.is_set()

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
            self.task = None
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def containers(self, **labels: str) -> list[Any]:
        return await self.runtime.list_containers({LABEL_NODE: self.name, **labels})


async def wait_for(predicate: Callable[[], Awaitable[Any]], timeout: float = 30.0,
                   message: str = "condition not met", interval: float = 0.2) -> Any:
    """Poll ``predicate`` (async) until it returns something truthy; that value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = await predicate()
            if value:
                return value
        except AssertionError:
            raise
        except Exception as exc:  # e.g. NotFound while an object appears
            last_exc = exc
        if loop.time() > deadline:
            raise AssertionError(f"{message} within {timeout}s"
                                 + (f" (last error: {last_exc})" if last_exc else ""))
        await asyncio.sleep(interval)




@contextlib.asynccontextmanager
async def serving_kubelet(apiserver, prefix: str, tmp_path_factory):
    """An in-process kubelet with its HTTPS server on loopback (logs, exec, port-forward,
    stats), holding a node certificate of the test CA so the API server can reach it; its
    containers are removed afterwards."""
    from cluster import free_port
    from minik8s.pki import issue_node_cert

    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    cert, key = issue_node_cert(apiserver.pki, name, hosts=["127.0.0.1"])
    handle = KubeletHandle(apiserver, name, tmp_path_factory.mktemp(f"kubelet-{name}"),
                           port=free_port(), address="127.0.0.1", tls_cert_file=str(cert),
                           tls_private_key_file=str(key),
                           client_ca_file=str(apiserver.pki.ca_cert))
    try:
        await handle.start()
        yield handle
    finally:
        await handle.stop()
        handle.runtime.close()
        await asyncio.to_thread(remove_node_containers, name)


def other_node_1_kubelets() -> list[int]:
    """Kubelets of another local cluster named ``node-1`` (the check the benchmarks use):
    tests that run ``minik8s up`` wait until none is left."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from bench.common import other_node_1_kubelets as others
    return others()


def node_ready(node: dict) -> str:
    """The Node's Ready condition status: ``True``, ``False`` or ``Unknown``."""
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") or "Unknown"
    return "Unknown"


def pod_running(pod: dict) -> bool:
    """Running, not being deleted, and every container ready."""
    st = pod.get("status") or {}
    return (st.get("phase") == "Running" and not pod["metadata"].get("deletionTimestamp")
            and all(s.get("ready") for s in st.get("containerStatuses") or [{}]))
