"""deploy/systemd: the unit files pass ``systemd-analyze verify`` (against a scratch root that
has the host's system units and stand-ins for the binaries, since these machines do not run
systemd), start each component as ``minik8s <component> --config /etc/minik8s/<component>.yaml``,
and every example config file is accepted by its daemon's own parser."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
CONFIGS = UNITS / "config"
COMPONENTS = ["apiserver", "scheduler", "controller-manager", "kubelet", "kube-proxy"]


def verify(tmp_path: Path, units: list[Path]) -> subprocess.CompletedProcess:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing (apt-get install -y systemd; deploy/install.sh)")
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    for binary in ("usr/local/bin/minik8s", "usr/bin/etcd"):
        path = root / binary
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    target = root / "etc/systemd/system"
    target.mkdir(parents=True)
    for unit in units:
        shutil.copy(unit, target / unit.name)
    return subprocess.run([analyze, "verify", f"--root={root}",
                           *[str(target / u.name) for u in units]],
                          capture_output=True, text=True, timeout=120)


def test_units_verify(tmp_path):
    units = sorted(UNITS.glob("*.service"))
    assert [u.name for u in units] == sorted(
        f"minik8s-{c}.service" for c in [*COMPONENTS, "etcd"])
    result = verify(tmp_path, units)
    assert result.returncode == 0 and result.stdout + result.stderr == "", \
        result.stdout + result.stderr


def test_verify_reports_a_broken_unit(tmp_path):
    broken = tmp_path / "minik8s-kubelet.service"
    broken.write_text((UNITS / "minik8s-kubelet.service").read_text()
                      .replace("KillMode=process", "KillMode=sometimes"))
    result = verify(tmp_path, [broken])
    assert "kill mode" in (result.stdout + result.stderr).lower()


def unit(name: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment]
    cp.read(UNITS / f"minik8s-{name}.service")
    return cp


@pytest.mark.parametrize("component", COMPONENTS)
def test_each_component_runs_from_its_config_file(component):
    service = unit(component)["Service"]
    assert service["ExecStart"] == (f"/usr/local/bin/minik8s {component} "
                                    f"--config /etc/minik8s/{component}.yaml")
    assert service["Restart"] == "always"
    # Only the kubelet keeps what it started (the pods) across its own restarts.
    assert service.get("KillMode") == ("process" if component == "kubelet" else None)


def test_start_order():
    assert "minik8s-etcd.service" in unit("apiserver")["Unit"]["After"]
    for c in ("scheduler", "controller-manager"):
        assert "minik8s-apiserver.service" in unit(c)["Unit"]["After"]
    assert "docker.service" in unit("kubelet")["Unit"]["After"]


def test_example_configs_parse_with_each_daemon():
    from apiserver.server import parse_args as apiserver_args
    from controller.manager import parse_args as cm_args
    from kubelet.main import parse_args as kubelet_args
    from kubeproxy.main import parse_args as proxy_args
    from scheduler.main import parse_args as scheduler_args

    def cfg(name: str) -> list[str]:
        return ["--config", str(CONFIGS / f"{name}.yaml")]

    api = apiserver_args(cfg("apiserver"))
    assert api.etcd_servers == ["https://127.0.0.1:2379"] and api.port == 6443
    assert str(api.etcd_certfile).endswith("apiserver-etcd-client.crt")
    assert scheduler_args(cfg("scheduler")).leader_elect
    cm = cm_args(cfg("controller-manager"))
    assert cm.kubeconfig == "/etc/minik8s/controller-manager.kubeconfig" and cm.leader_elect
    kubelet = kubelet_args(cfg("kubelet"))
    assert (kubelet.node_name, kubelet.network, kubelet.drain_on_exit) == \
        ("worker-1", "bridge", False)
    proxy = proxy_args(cfg("kube-proxy"))
    assert (proxy.node_name, proxy.node_ip) == ("worker-1", "10.0.0.2")
