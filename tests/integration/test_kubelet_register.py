"""A kubelet (in-process, fake container runtime, node credentials) registering with the real
API server: ``--register-with-taints`` and ``--node-labels`` shape the Node it creates, the
admin's control-plane label (``minik8s init``'s mark-control-plane step) shows as the node's
role, and a restarted kubelet leaves a taint and a label an admin removed removed."""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid

from cluster import eventually
from kubelet.kubelet import Kubelet
from kubelet.main import parse_args
from kubelet.network import NoNetwork
from kubelet.runtime.fake import FakeRuntime
from minik8s.api.errors import NotFound
from minik8s.cli import cluster as cli
from minik8s.cli.mkctl import main as mkctl_main
from minik8s.client import Client
from minik8s.client.kubeconfig import load_kubeconfig

CP = cli.CONTROL_PLANE_LABEL
PREFER = {"key": "example.com/dedicated", "value": "db", "effect": "PreferNoSchedule"}


async def _start(config) -> tuple[Kubelet, asyncio.Task, Client]:
    client = Client.from_kubeconfig(config.kubeconfig)
    kubelet = Kubelet(config, client, FakeRuntime(), NoNetwork())
    return kubelet, asyncio.create_task(kubelet.start()), client


async def _stop(task: asyncio.Task, client: Client) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await client.aclose()


def _mkctl(capsys, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # mkctl runs its own event loop
        code = pool.submit(mkctl_main, list(argv)).result(timeout=60)
    return code, capsys.readouterr().out


async def test_registration_taints_labels_and_the_admins_role(apiserver, client, tmp_path,
                                                               capsys):
    name = f"reg-{uuid.uuid4().hex[:6]}"
    node_kubeconfig = apiserver.kubeconfig_for(name, f"system:node:{name}", ("system:nodes",))
    config = parse_args([
        "--node-name", name, "--kubeconfig", str(node_kubeconfig), "--root-dir", str(tmp_path),
        "--node-ip", "10.9.0.1", "--node-status-update-period", "0.5",
        "--register-with-taints", f"{cli.CONTROL_PLANE_TAINT},example.com/dedicated=db:"
                                  f"PreferNoSchedule",
        "--node-labels", "disk=ssd,topology.kubernetes.io/zone=z1"])
    kubelet, task, node_client = await _start(config)
    try:
        async def registered():
            try:
                return await client.get("nodes", name)
            except NotFound:
                return None
        node = await eventually(registered, 20, message=f"node {name} registered")
        assert node["spec"]["taints"] == [{"key": CP, "effect": "NoSchedule"}, PREFER]
        labels = node["metadata"]["labels"]
        assert labels["disk"] == "ssd" and labels["topology.kubernetes.io/zone"] == "z1"
        assert labels["kubernetes.io/hostname"] == name and CP not in labels

        # no role until the admin gives it one (twice: the second patch changes nothing)
        code, out = _mkctl(capsys, "--kubeconfig", str(apiserver.kubeconfig), "get", "node",
                           name)
        assert code == 0 and out.split("\n")[0].split()[:3] == ["NAME", "STATUS", "ROLES"]
        assert out.split("\n")[1].split()[:3] == [name, "Ready", "<none>"], out
        admin = cli.Api.from_config(load_kubeconfig(apiserver.kubeconfig))
        for _ in range(2):
            marked = await asyncio.to_thread(cli.mark_control_plane, admin, name)
            assert marked["metadata"]["labels"][CP] == ""
        code, out = _mkctl(capsys, "--kubeconfig", str(apiserver.kubeconfig), "get", "node",
                           name)
        assert out.split("\n")[1].split()[:3] == [name, "Ready", "control-plane"], out
        await _stop(task, node_client)

        # the admin lifts the NoSchedule taint and drops a label; the kubelet restarts
        await client.patch("nodes", name, {"spec": {"taints": [PREFER]},
                                           "metadata": {"labels": {"disk": None}}},
                           patch_type="merge")
        kubelet, task, node_client = await _start(config)
        await asyncio.wait_for(kubelet.node.registered.wait(), 20)  # found its Node: updated
        node = await client.get("nodes", name)
        assert node["spec"]["taints"] == [PREFER]
        assert "disk" not in node["metadata"]["labels"] and node["metadata"]["labels"][CP] == ""
        assert node["metadata"]["labels"]["kubernetes.io/hostname"] == name
    finally:
        await _stop(task, node_client)
        try:
            await client.delete("nodes", name)
        except NotFound:
            pass
