"""`minik8s up` / `status` / `down` as a user runs them, in a temporary MINIK8S_HOME."""

import os
import subprocess
import sys

import pytest

from minik8s.cli import local
from minik8s.client import Client


def minik8s(home, *args, timeout=120):
    env = {**os.environ, "MINIK8S_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "minik8s.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def home(tmp_path):
    yield tmp_path
    minik8s(tmp_path, "down")


async def test_up_status_down(home):
    port = str(local.free_port())
    first = minik8s(home, "up", "--port", port)
    assert first.returncode == 0, first.stderr
    assert "etcd" in first.stdout and "apiserver" in first.stdout
    assert (home / "kubeconfig").exists()

    again = minik8s(home, "up", "--port", port)
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout

    status = minik8s(home, "status")
    assert status.returncode == 0
    assert "apiserver" in status.stdout and "running" in status.stdout

    client = Client.from_kubeconfig(str(home / "kubeconfig"))
    try:
        names = {n["metadata"]["name"] for n in (await client.list("namespaces"))["items"]}
        assert "kube-system" in names
    finally:
        await client.aclose()

    h = local.Home.at(str(home))
    pids = [local.running_pid(h, n) for n in ("etcd", "apiserver")]
    assert all(pids)
    down = minik8s(home, "down")
    assert down.returncode == 0
    assert "apiserver" in down.stdout and "etcd" in down.stdout
    for pid in pids:
        assert not local._alive(pid)
    assert minik8s(home, "status").returncode == 1


def _kubeconfig_port(home) -> int:
    import yaml
    config = yaml.safe_load((home / "kubeconfig").read_text())
    return int(config["clusters"][0]["cluster"]["server"].rsplit(":", 1)[1])


def test_up_remembers_its_port_and_moves_it_only_when_stopped(home):
    first, second = local.free_port(), local.free_port()
    assert minik8s(home, "up", "--nodes", "0", "--port", str(first)).returncode == 0
    h = local.Home.at(str(home))
    assert local._listens(local.running_pid(h, "apiserver"), first)

    plain = minik8s(home, "up", "--nodes", "0")  # no --port: the recorded one
    assert plain.returncode == 0 and "already running" in plain.stdout, plain.stderr
    moved = minik8s(home, "up", "--nodes", "0", "--port", str(second))
    assert moved.returncode == 1
    assert f"already runs on port {first}" in moved.stderr and "Traceback" not in moved.stderr
    assert _kubeconfig_port(home) == first

    assert minik8s(home, "down").returncode == 0
    again = minik8s(home, "up", "--nodes", "0", "--port", str(second))
    assert again.returncode == 0, again.stderr
    assert local._listens(local.running_pid(h, "apiserver"), second)
    assert _kubeconfig_port(home) == second


def test_up_reports_a_taken_port(home, apiserver):
    out = minik8s(home, "up", "--port", str(apiserver.port))
    assert out.returncode == 1
    assert "port" in out.stderr and "Traceback" not in out.stderr


async def test_up_moves_etcd_off_ports_another_program_holds(home):
    """Another program (here: a bare listener, as another cluster's etcd would be) holds the
    recorded etcd client port: `up` starts its own etcd on free ports, records them, and its
    API server stores into that etcd, never into the other program."""
    import json
    import socket

    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    other.listen(16)
    held = other.getsockname()[1]
    peer = local.free_port()
    (home / "run").mkdir(parents=True, exist_ok=True)
    (home / "run" / "cluster.json").write_text(json.dumps(
        {"etcd_client_port": held, "etcd_peer_port": peer,
         "etcd_servers": f"http://127.0.0.1:{held}"}))
    try:
        out = minik8s(home, "up", "--nodes", "0", "--port", str(local.free_port()))
        assert out.returncode == 0, out.stderr + out.stdout
        assert f"port {held} is taken" in out.stdout
        settings = json.loads((home / "run" / "cluster.json").read_text())
        client_port = settings["etcd_client_port"]
        assert client_port != held
        assert settings["etcd_servers"] == f"http://127.0.0.1:{client_port}"
        h = local.Home.at(str(home))
        assert local._listens(local.running_pid(h, "etcd"), client_port)
        client = Client.from_kubeconfig(str(home / "kubeconfig"))
        try:
            names = {n["metadata"]["name"]
                     for n in (await client.list("namespaces"))["items"]}
            assert "kube-system" in names
        finally:
            await client.aclose()
    finally:
        other.close()
