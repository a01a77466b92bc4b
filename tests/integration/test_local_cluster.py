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


def test_up_reports_a_taken_port(home, apiserver):
    out = minik8s(home, "up", "--port", str(apiserver.port))
    assert out.returncode == 1
    assert "port" in out.stderr and "Traceback" not in out.stderr
