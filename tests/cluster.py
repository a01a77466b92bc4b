"""Starting a real etcd and a real API server for tests: used by the session fixtures in
``conftest.py`` and by tests that need a server of their own (``from cluster import ...``)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from minik8s.client import Client
from minik8s.client.kubeconfig import write_kubeconfig
from minik8s.pki import PKIPaths, ensure_pki, issue_cert

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Etcd:
    url: str
    port: int
    proc: subprocess.Popen
    data: Path


def start_etcd(base: Path) -> Etcd:
    binary = shutil.which("etcd")
    if binary is None:
        pytest.fail("etcd is not installed (apt-get install -y etcd-server); .ci/run installs it")
    port, peer = free_port(), free_port()
    data = base / "etcd"
    url = f"http://127.0.0.1:{port}"
    log = open(base / "etcd.log", "wb")
    proc = subprocess.Popen(
        [binary, "--name", "test", "--data-dir", str(data), "--listen-client-urls", url,
         "--advertise-client-urls", url, "--listen-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-cluster", f"test=http://127.0.0.1:{peer}", "--log-level", "error"],
        stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"etcd exited: {(base / 'etcd.log').read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return Etcd(url, port, proc, data)
        time.sleep(0.05)
    stop_process(proc)
    pytest.fail("etcd did not start")


@dataclass
class APIServerProcess:
    url: str
    port: int
    pki: PKIPaths
    kubeconfig: Path
    proc: subprocess.Popen
    log: Path
    etcd: Etcd

    def client(self, **kw) -> Client:
        return Client.from_kubeconfig(str(self.kubeconfig), **kw)

    def kubeconfig_for(self, name: str, user: str, groups: tuple[str, ...] = ()) -> Path:
        """A kubeconfig with a client certificate for ``user`` in ``groups``."""
        cert, key = issue_cert(self.pki.ca_cert.read_bytes(), self.pki.ca_key.read_bytes(),
                               common_name=user, organizations=groups, client=True)
        path = self.pki.directory.parent / f"kubeconfig-{name}"
        write_kubeconfig(path, server=self.url, ca_pem=self.pki.ca_cert.read_bytes(),
                         cert_pem=cert, key_pem=key, user_name=user)
        return path


def start_apiserver(base: Path, etcd: Etcd, *extra: str,
                    service_accounts: bool = False) -> APIServerProcess:
    """``service_accounts``: keep the ServiceAccount admission plugin on (pods then need
    their ServiceAccount to exist: run the serviceaccount controllers too). Off by default,
    since most tests run no controller-manager."""
    if not service_accounts:
        extra = (*extra, "--disable-admission-plugins", "ServiceAccount")
    port = free_port()
    pki = ensure_pki(base / "pki", hosts=[])
    kubeconfig = base / "kubeconfig"
    write_kubeconfig(kubeconfig, server=f"https://127.0.0.1:{port}",
                     ca_pem=pki.ca_cert.read_bytes(), cert_pem=pki.admin_cert.read_bytes(),
                     key_pem=pki.admin_key.read_bytes(), user_name="kubernetes-admin")
    log = base / f"apiserver-{port}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "minik8s.cli.main", "apiserver", "--etcd-servers", etcd.url,
         "--secure-port", str(port), "--pki-dir", str(pki.directory), *extra],
        stdout=open(log, "wb"), stderr=subprocess.STDOUT, cwd=str(ROOT))
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"apiserver exited: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/readyz", context=ctx,
                                        timeout=2) as r:
                if r.status == 200:
                    return APIServerProcess(f"https://127.0.0.1:{port}", port, pki, kubeconfig,
                                            proc, log, etcd)
        except Exception:
            pass
        time.sleep(0.1)
    stop_process(proc)
    pytest.fail(f"apiserver did not become ready: {log.read_text()[-3000:]}")


@contextlib.asynccontextmanager
async def running_controllers(client, names, clock=None):
    """The named controllers of the controller-manager, run in-process until the block ends;
    the built controllers are yielded once their informers have synced."""
    from controller.manager import build

    manager, built = build(client, controllers=names, clock=clock)
    task = asyncio.create_task(manager.start())
    try:
        assert await manager.informers.wait_synced(10)
        yield built
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def eventually(fn, timeout=15.0, interval=0.1, message="condition not met"):
    """Poll the async ``fn`` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await fn()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"{message} (last: {last!r})")


__all__ = ["running_controllers", "eventually", "free_port", "stop_process", "Etcd", "start_etcd", "APIServerProcess",
           "start_apiserver", "ROOT"]
