"""The one-command local cluster: ``minik8s up`` / ``down`` / ``status``.

Everything lives under one folder (``$MINIK8S_HOME`` or ``~/.minik8s``): etcd data, PKI,
logs, the admin kubeconfig, and a pid file per process started. ``down`` stops exactly the
processes recorded there, each checked against its recorded command line before it is
signalled, so a recycled pid is never killed. ``up`` is idempotent: what already runs is
left alone, what is missing is started."""

from __future__ import annotations

import json
import os
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

from minik8s.client.kubeconfig import write_kubeconfig
from minik8s.pki import ensure_pki


class ClusterError(RuntimeError):
    """A failure `up`/`down` explain in one line."""


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def at(cls, path: str | None = None) -> "Home":
        root = Path(path or os.environ.get("MINIK8S_HOME") or Path.home() / ".minik8s")
        return cls(root.expanduser().resolve())

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def settings(self) -> Path:
        return self.run / "cluster.json"

    def pidfile(self, name: str) -> Path:
        return self.run / f"{name}.pid"


# --- processes ----------------------------------------------------------------------------


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [p.decode(errors="replace") for p in raw.split(b"\0") if p]


def _recorded(home: Home, name: str) -> tuple[int, list[str]] | None:
    try:
        data = json.loads(home.pidfile(name).read_text())
        return int(data["pid"]), list(data["cmd"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def running_pid(home: Home, name: str) -> int | None:
    """The pid of ``name`` if the process recorded for it still runs the recorded command."""
    rec = _recorded(home, name)
    if rec is None:
        return None
    pid, cmd = rec
    return pid if _cmdline(pid) == cmd else None


def spawn(home: Home, name: str, cmd: list[str], env: dict[str, str] | None = None) -> int:
    home.logs.mkdir(parents=True, exist_ok=True)
    home.run.mkdir(parents=True, exist_ok=True)
    log = open(home.logs / f"{name}.log", "ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, env={**os.environ, **(env or {})},
                            cwd=str(home.root))
    log.close()
    # Record the command as /proc shows it, to recognise the process later.
    deadline = time.monotonic() + 2
    shown = _cmdline(proc.pid)
    while not shown and time.monotonic() < deadline:
        time.sleep(0.01)
        shown = _cmdline(proc.pid)
    home.pidfile(name).write_text(json.dumps({"pid": proc.pid, "cmd": shown or cmd}))
    return proc.pid


def stop(home: Home, name: str, timeout: float = 10.0) -> bool:
    pid = running_pid(home, name)
    home_pid = home.pidfile(name)
    if pid is None:
        home_pid.unlink(missing_ok=True)
        return False
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    home_pid.unlink(missing_ok=True)
    return True


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1]
    except OSError:
        return False
    return state not in ("Z", "X")


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- components -----------------------------------------------------------------------------


def etcd_command(data_dir: Path, client_port: int, peer_port: int, name: str = "minik8s") -> list[str]:
    binary = shutil.which("etcd")
    if binary is None:
        raise ClusterError("etcd is not installed (Debian: apt-get install -y etcd-server), "
                           "or pass --etcd-servers")
    client = f"http://127.0.0.1:{client_port}"
    peer = f"http://127.0.0.1:{peer_port}"
    return [binary, "--name", name, "--data-dir", str(data_dir),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"{name}={peer}",
            "--auto-compaction-mode", "periodic", "--auto-compaction-retention", "1h",
            "--quota-backend-bytes", str(4 * 1024 ** 3), "--log-level", "warn"]


def _wait_ready(url: str, ca: Path, timeout: float, what: str, home: Home, name: str) -> None:
    ctx = ssl.create_default_context(cafile=str(ca)) if url.startswith("https") else None
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if running_pid(home, name) is None:
            raise ClusterError(f"{what} exited; see {home.logs / (name + '.log')}")
        try:
            with urllib.request.urlopen(url, context=ctx, timeout=2) as resp:
                if resp.status == 200:
                    return
        except Exception as exc:  # not up yet
            last = str(exc)
        time.sleep(0.2)
    raise ClusterError(f"{what} did not become ready within {timeout:.0f}s ({last}); "
                       f"see {home.logs / (name + '.log')}")


def _python_component(component: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "minik8s.cli.main", component, *args]


def up(home: Home, *, nodes: int = 1, etcd_servers: str | None = None, port: int = 6443) -> int:
    for d in (home.root, home.logs, home.run):
        d.mkdir(parents=True, exist_ok=True)
    settings = _load_settings(home)
    started: list[str] = []

    if etcd_servers:
        settings["etcd_servers"] = etcd_servers
        settings.pop("etcd_client_port", None)
    elif "etcd_servers" not in settings or settings.get("etcd_client_port"):
        client_port = settings.get("etcd_client_port") or (2379 if _port_free("127.0.0.1", 2379)
                                                           else free_port())
        peer_port = settings.get("etcd_peer_port") or (2380 if _port_free("127.0.0.1", 2380)
                                                       else free_port())
        settings.update(etcd_client_port=client_port, etcd_peer_port=peer_port,
                        etcd_servers=f"http://127.0.0.1:{client_port}")
        if running_pid(home, "etcd") is None:
            home.etcd_data.mkdir(parents=True, exist_ok=True)
            os.chmod(home.etcd_data, 0o700)
            spawn(home, "etcd", etcd_command(home.etcd_data, client_port, peer_port))
            started.append(f"etcd       http://127.0.0.1:{client_port}  (data {home.etcd_data})")
        _wait_tcp("127.0.0.1", client_port, 30, home, "etcd")

    port = settings.get("port", port)
    settings["port"] = port
    _save_settings(home, settings)
    pki = ensure_pki(home.pki, hosts=[])
    server = f"https://127.0.0.1:{port}"
    write_kubeconfig(home.kubeconfig, server=server, ca_pem=pki.ca_cert.read_bytes(),
                     cert_pem=pki.admin_cert.read_bytes(), key_pem=pki.admin_key.read_bytes(),
                     user_name="kubernetes-admin", cluster_name="minik8s")
    if running_pid(home, "apiserver") is None:
        if not _port_free("127.0.0.1", port):
            raise ClusterError(f"port {port} is taken by another program; use --port")
        spawn(home, "apiserver", _python_component(
            "apiserver", "--etcd-servers", settings["etcd_servers"], "--secure-port", str(port),
            "--pki-dir", str(home.pki)))
        started.append(f"apiserver  {server}")
    _wait_ready(f"{server}/readyz", pki.ca_cert, 60, "the API server", home, "apiserver")

    if started:
        print("started:")
        for line in started:
            print(f"  {line}")
    else:
        print("the cluster is already running")
    print(f"\nkubeconfig: {home.kubeconfig}")
    print(f"  mkctl --kubeconfig {home.kubeconfig} get namespaces")
    print(f"  export KUBECONFIG={home.kubeconfig}; kubectl get namespaces")
    print("stop it with: minik8s down")
    return 0


def _wait_tcp(host: str, port: int, timeout: float, home: Home, name: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running_pid(home, name) is None:
            raise ClusterError(f"{name} exited; see {home.logs / (name + '.log')}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.1)
    raise ClusterError(f"{name} did not listen on {host}:{port} within {timeout:.0f}s")


# Stop order: dependents first.
_ORDER = ["apiserver", "etcd"]


def down(home: Home, *, purge: bool = False) -> int:
    names = sorted((p.stem for p in home.run.glob("*.pid")),
                   key=lambda n: _ORDER.index(n) if n in _ORDER else -1) if home.run.exists() else []
    stopped = [n for n in names if stop(home, n)]
    print("stopped: " + ", ".join(stopped) if stopped else "nothing was running")
    if purge:
        for path in (home.etcd_data, home.pki, home.kubeconfig, home.settings):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        print(f"removed the cluster's data under {home.root}")
    return 0


def status(home: Home) -> int:
    names = sorted(p.stem for p in home.run.glob("*.pid")) if home.run.exists() else []
    if not names:
        print("no local cluster (start one with: minik8s up)")
        return 1
    ok = True
    for name in names:
        pid = running_pid(home, name)
        ok &= pid is not None
        print(f"{name:<12} {'running (pid %d)' % pid if pid else 'stopped'}")
    settings = _load_settings(home)
    if settings.get("port"):
        print(f"api server   https://127.0.0.1:{settings['port']}  kubeconfig {home.kubeconfig}")
    return 0 if ok else 1


def _load_settings(home: Home) -> dict:
    try:
        return json.loads(home.settings.read_text())
    except (OSError, ValueError):
        return {}


def _save_settings(home: Home, settings: dict) -> None:
    home.settings.write_text(json.dumps(settings, indent=2))


__all__ = ["Home", "ClusterError", "up", "down", "status", "spawn", "stop", "running_pid",
           "etcd_command", "free_port"]
