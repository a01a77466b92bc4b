"""The binary install's files work as written: deploy/systemd/minik8s-pki.py makes the PKI and
kubeconfigs, then etcd runs from the example etcd.yaml (mutual TLS, etcd's own CA) and the
API server from the example apiserver.yaml, exactly as their units start them, with only the
paths, address and ports moved into a scratch folder; the admin kubeconfig then lists
namespaces. A worker bundle holds what the worker's /etc/minik8s needs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from cluster import free_port, stop_process
from minik8s.api.errors import StatusError
from minik8s.client import Client

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "deploy" / "systemd"


def localized(name: str, tmp: Path, ports: dict[str, int]) -> Path:
    """The example config with /etc/minik8s, /var/lib/minik8s, the master address and the
    standard ports moved to this test's own."""
    text = (SYSTEMD / "config" / name).read_text()
    for old, new in (("/etc/minik8s", str(tmp / "etc")), ("/var/lib/minik8s", str(tmp / "var")),
                     ("10.0.0.1", "127.0.0.1"), (":2379", f":{ports['client']}"),
                     (":2380", f":{ports['peer']}"), ("6443", str(ports["api"]))):
        text = text.replace(old, new)
    path = tmp / name
    path.write_text(text)
    return path


async def test_pki_helper_etcd_and_apiserver_from_the_example_configs(tmp_path):
    if shutil.which("etcd") is None:
        pytest.fail("etcd is not installed (apt-get install -y etcd-server)")
    helper = [sys.executable, str(SYSTEMD / "minik8s-pki.py")]
    run = dict(capture_output=True, text=True, timeout=60, cwd=str(ROOT), check=True)
    subprocess.run([*helper, "master", "127.0.0.1", "--dir", str(tmp_path / "etc")], **run)
    bundle = tmp_path / "worker"
    subprocess.run([*helper, "node", "worker-1", "10.0.0.2", "--master", "127.0.0.1",
                    "--dir", str(tmp_path / "etc"), "--out", str(bundle)], **run)
    assert sorted(p.name for p in bundle.rglob("*") if p.is_file()) == [
        "ca.crt", "kube-proxy.kubeconfig", "kubelet.kubeconfig", "node-worker-1.crt",
        "node-worker-1.key"]
    bad = subprocess.run([*helper, "node", "w", "10.0.0.3", "--master", "127.0.0.1", "--dir",
                          str(tmp_path / "nothing"), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert bad.returncode == 1 and "run `master` first" in bad.stderr

    ports = {"client": free_port(), "peer": free_port(), "api": free_port()}
    etcd_log = open(tmp_path / "etcd.log", "wb")
    etcd = subprocess.Popen(["etcd", "--config-file", str(localized("etcd.yaml", tmp_path,
                                                                     ports))],
                            stdout=etcd_log, stderr=subprocess.STDOUT)
    api_log = open(tmp_path / "apiserver.log", "wb")
    apiserver = subprocess.Popen(
        [sys.executable, "-m", "minik8s.cli.main", "apiserver", "--config",
         str(localized("apiserver.yaml", tmp_path, ports))],
        stdout=api_log, stderr=subprocess.STDOUT, cwd=str(ROOT))
    text = (tmp_path / "etc" / "admin.kubeconfig").read_text()
    (tmp_path / "admin.kubeconfig").write_text(text.replace(":6443", f":{ports['api']}"))
    client = Client.from_kubeconfig(str(tmp_path / "admin.kubeconfig"))
    try:
        from cluster import eventually

        async def namespaces() -> list[str]:
            if apiserver.poll() is not None or etcd.poll() is not None:
                raise AssertionError("etcd or the API server exited:\n"
                                     + (tmp_path / "etcd.log").read_text()[-2000:]
                                     + (tmp_path / "apiserver.log").read_text()[-2000:])
            try:
                items = (await client.list("namespaces"))["items"]
            except (OSError, httpx.HTTPError, StatusError):
                return []
            return [n["metadata"]["name"] for n in items]
        names = await eventually(namespaces, timeout=60, interval=0.3,
                                 message="API server over TLS etcd did not answer")
        assert "kube-system" in names
        # etcd speaks only mutual TLS: plain http is refused
        import urllib.request
        with pytest.raises(Exception):
            urllib.request.urlopen(f"http://127.0.0.1:{ports['client']}/health", timeout=3)
    finally:
        await client.aclose()
        stop_process(apiserver)
        stop_process(etcd)
        etcd_log.close()
        api_log.close()
