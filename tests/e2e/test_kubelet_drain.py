"""A kubelet process stopped with SIGTERM leaves its pods running, and the next kubelet adopts
them untouched; with ``--drain-on-exit`` (how a compose worker runs) it removes every pod
container before it exits. The kubelet runs as the real ``minik8s kubelet --config FILE``."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid

from cluster import stop_process
from e2e_helpers import BUSYBOX, ROOT, remove_node_containers, wait_for
from kubelet.runtime.base import LABEL_NODE


def container_ids(node: str) -> dict[str, str]:
    import docker
    api = docker.APIClient(version="auto")
    try:
        return {c["Id"]: c["State"] for c in
                api.containers(all=True, filters={"label": f"{LABEL_NODE}={node}"})}
    finally:
        api.close()


async def test_sigterm_keeps_pods_and_drain_on_exit_removes_them(apiserver, busybox_image,
                                                                 client, ns, tmp_path):
    node = f"drain-{uuid.uuid4().hex[:6]}"
    kubeconfig = apiserver.kubeconfig_for(node, f"system:node:{node}", ("system:nodes",))
    config = tmp_path / "kubelet.yaml"
    config.write_text(f"node-name: {node}\nkubeconfig: {kubeconfig}\n"
                      f"root-dir: {tmp_path / 'root'}\nnode-ip: 127.0.0.1\nnetwork: none\n"
                      "drain-on-exit: false\nnode-status-update-period: 2\n")
    logs: list[object] = []

    def start(*extra: str) -> subprocess.Popen:
        log = open(tmp_path / f"kubelet-{len(logs)}.log", "wb")
        logs.append(log)
        return subprocess.Popen([sys.executable, "-m", "minik8s.cli.main", "kubelet",
                                 "--config", str(config), *extra],
                                stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT))

    def log_text(i: int) -> str:
        return (tmp_path / f"kubelet-{i}.log").read_text()

    first = second = None
    try:
        first = start()
        await client.create("pods", {
            "metadata": {"name": "keep"},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 2, "containers": [{
                "name": "main", "image": BUSYBOX,
                "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]}]}},
            ns)

        async def running() -> bool:
            pod = await client.get("pods", "keep", ns)
            return (pod.get("status") or {}).get("phase") == "Running"
        await wait_for(running, 60, "pod did not run")
        before = await asyncio.to_thread(container_ids, node)
        assert len(before) == 2 and set(before.values()) == {"running"}

        # A plain stop (what a restart under systemd sends): the pods stay.
        first.terminate()
        assert await asyncio.to_thread(first.wait, 30) == 0, log_text(0)
        assert await asyncio.to_thread(container_ids, node) == before

        # The next kubelet (drain switched on by a flag over the file) adopts them as they are.
        second = start("--drain-on-exit")
        await wait_for(lambda: asyncio.to_thread(lambda: "pods bound here" in log_text(1)),
                       60, "second kubelet did not sync")
        await asyncio.sleep(2)  # a few relists and syncs: nothing may be restarted
        assert await asyncio.to_thread(container_ids, node) == before
        assert await running()

        # Stopping it drains: no container of the node is left.
        second.terminate()
        assert await asyncio.to_thread(second.wait, 60) == 0, log_text(1)
        assert await asyncio.to_thread(container_ids, node) == {}
        assert "drained 1 pods" in log_text(1)
    finally:
        for proc in (first, second):
            if proc is not None:
                await asyncio.to_thread(stop_process, proc)
        for log in logs:
            log.close()  # type: ignore[attr-defined]
        await asyncio.to_thread(remove_node_containers, node)
        try:
            await client.delete("nodes", node)
        except Exception:
            pass
