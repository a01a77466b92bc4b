"""The README's "Binary install with systemd", end to end, on two "hosts" made of network
namespaces (``minik8s.cli.netns.NodeNetworks``): a master running etcd, the API server, the
scheduler and the controller-manager from the shipped unit files and configs, and the worker
``worker-1`` running the kubelet and kube-proxy from theirs.

The walk-through is followed as literally as one machine allows. The shipped files are
changed only as the README tells a user to ("change the addresses with sed"), plus what two
hosts on one filesystem need: ``/etc/minik8s`` and ``/var/lib/minik8s`` become folders of
each host under the test's tmp folder, and ``/usr/local/bin/minik8s`` the installed
``minik8s`` script. Nothing under the real /etc, /usr/local/bin or /etc/systemd is touched.

There is no systemd here (not PID 1), so ``MiniSystemd`` stands in for it: it reads the
unit files (``[Service]`` ExecStart, Type, Restart, RestartSec, KillMode; ``After=`` for
the order of one ``systemctl enable --now``), runs ExecStart inside the host's namespace
(``ip netns exec``) with its output in a log file, waits for ``READY=1`` on a
``NOTIFY_SOCKET`` for ``Type=notify`` (etcd), restarts an exited service after RestartSec
(``Restart=always``), and stops by PID (SIGTERM, then SIGKILL). Then, as a user would:
``mkctl get nodes`` shows worker-1 Ready; a Deployment and a Service applied with ``mkctl``
run on worker-1 and the Service answers from a pod by ClusterIP and by DNS name. A restart
of the kubelet unit (``KillMode=process``) leaves the pods' containers running and the new
kubelet adopts them. The time from the first ``systemctl start`` of the master units to the
Deployment Running is printed (no timing assertion).

Not covered: the package install and symlink steps, Debian's own etcd unit, the scp (a
copy here), and real systemd (boot ordering, start limits, cgroups)."""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest

from e2e_helpers import ROOT, pod_running, wait_for
from kubelet.runtime.base import LABEL_CLUSTER, LABEL_NODE
from minik8s.cli.netns import NodeNetworks
from minik8s.client import Client
from minik8s.pki import cluster_id

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="hosts are network namespaces: needs root"),
]

SYSTEMD = ROOT / "deploy" / "systemd"
NODE = "worker-1"  # the README's worker; containers are also told apart by the cluster label
# Not test_multihost's 1, 2, 3 (nor `minik8s up`'s 1..N): "<slot prefix>7" and "...8".
MASTER_INDEX, WORKER_INDEX = 7, 8
BIN = Path(sys.executable).parent


def installed(script: str) -> list[str]:
    """The installed console script next to this Python (a pyenv shim would not run under
    ``ip netns exec``), else ``python -m``."""
    path = BIN / script
    if path.is_file() and os.access(path, os.X_OK):
        return [str(path)]
    module = {"minik8s": "minik8s.cli.main", "mkctl": "minik8s.cli.mkctl"}[script]
    return [sys.executable, "-m", module]


# --- the hosts ---------------------------------------------------------------------------


@dataclass
class Host:
    name: str
    namespace: str
    ip: str
    root: Path

    @property
    def etc(self) -> Path:  # the host's /etc/minik8s
        return self.root / "etc" / "minik8s"

    @property
    def var(self) -> Path:  # the host's /var/lib/minik8s
        return self.root / "var" / "lib" / "minik8s"

    @property
    def units(self) -> Path:  # the host's /etc/systemd/system
        return self.root / "etc" / "systemd" / "system"

    @property
    def checkout(self) -> Path:  # the host's copy of deploy/systemd, after the sed
        return self.root / "src" / "deploy" / "systemd"

    def run(self, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.namespace, *cmd],
                              capture_output=True, text=True, timeout=timeout, cwd=str(ROOT))


def sed_checkout(host: Host, master: Host, worker: Host) -> None:
    """deploy/systemd as the host's user has it after the README's sed: the example
    addresses replaced by the real ones; and, because two hosts share one filesystem here,
    /etc/minik8s, /var/lib/minik8s and /usr/local/bin/minik8s moved to this host's own."""
    rewrite = (("10.0.0.1", master.ip), ("10.0.0.2", worker.ip),
               ("/etc/minik8s", str(host.etc)), ("/var/lib/minik8s", str(host.var)),
               ("/usr/local/bin/minik8s", shlex.join(installed("minik8s"))))
    for src in [*SYSTEMD.glob("*.service"), *(SYSTEMD / "config").glob("*.yaml")]:
        text = src.read_text()
        for old, new in rewrite:
            text = text.replace(old, new)
        dst = host.checkout / src.relative_to(SYSTEMD)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(text)
    # A host has /etc/systemd/system; /etc/minik8s and /var/lib/minik8s are left to the
    # walk-through (the PKI helper, the copy, etcd and the kubelet make them).
    host.units.mkdir(parents=True, exist_ok=True)


def cp(host: Host, names: list[str], pattern: str, dst: Path) -> None:
    """``cp deploy/systemd/<pattern with {name}> DST/`` for each name, from the host's copy."""
    for name in names:
        shutil.copy2(host.checkout / pattern.format(name), dst)


# --- a systemd stand-in ------------------------------------------------------------------


@dataclass
class Unit:
    name: str
    exec_start: list[str]
    type: str = "simple"
    after: list[str] = field(default_factory=list)
    wants: list[str] = field(default_factory=list)
    restart: str = "no"
    restart_sec: float = 0.1
    kill_mode: str = "control-group"


def parse_unit(path: Path) -> Unit:
    values: dict[tuple[str, str], list[str]] = {}
    section = ""
    pending = ""
    for raw in path.read_text().splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not a key=value line: {line!r}"
        values.setdefault((section, key.strip()), []).append(value.strip())

    def one(key: str, default: str = "") -> str:
        return (values.get(("Service", key)) or [default])[-1]

    def words(key: str) -> list[str]:
        return [w for v in values.get(("Unit", key), []) for w in v.split()]

    exec_start = values.get(("Service", "ExecStart"))
    assert exec_start and len(exec_start) == 1, f"{path}: one ExecStart= expected"
    argv = shlex.split(exec_start[0])
    assert Path(argv[0]).is_absolute(), f"{path}: ExecStart needs an absolute path"
    return Unit(name=path.stem, exec_start=argv, type=one("Type", "simple"),
                after=words("After"), wants=words("Wants"), restart=one("Restart", "no"),
                restart_sec=float(one("RestartSec", "0.1")),
                kill_mode=one("KillMode", "control-group"))


@dataclass
class Service:
    unit: Unit
    proc: subprocess.Popen | None = None
    stopping: bool = False
    restart_at: float | None = None
    exits: list[int] = field(default_factory=list)
    starts: int = 0


class MiniSystemd:
    """``systemctl daemon-reload / enable --now / restart / stop`` for the units in one
    host's unit folder, each service run in the host's network namespace."""

    def __init__(self, host: Host, logs: Path):
        self.host = host
        self.logs = logs
        self.logs.mkdir(parents=True, exist_ok=True)
        self.units: dict[str, Unit] = {}
        self.services: dict[str, Service] = {}
        self.order: list[str] = []  # start order, for stopping in reverse
        self._lock = threading.RLock()
        self._done = threading.Event()
        self._monitor = threading.Thread(target=self._watch, daemon=True,
                                         name=f"systemd-{host.name}")
        self._monitor.start()

    def daemon_reload(self) -> None:
        self.units = {p.stem: parse_unit(p) for p in sorted(self.host.units.glob("*.service"))}

    def enable_now(self, *names: str) -> None:
        """One transaction: the named units (and what they want, if installed) started in
        After= order; a Type=notify service counts as started at READY=1."""
        wanted: list[str] = []

        def pull(name: str) -> None:
            if name in wanted:
                return
            assert name in self.units, f"unit {name}.service not installed on {self.host.name}"
            wanted.append(name)
            for w in self.units[name].wants:
                if w.endswith(".service") and w[:-8] in self.units:
                    pull(w[:-8])
        for name in names:
            pull(name)
        for name in self._ordered(wanted):
            svc = self.services.get(name)
            if svc is None or svc.stopping:  # not active
                self._start(name)

    def _ordered(self, names: list[str]) -> list[str]:
        done: list[str] = []
        visiting: set[str] = set()

        def visit(name: str) -> None:
            if name in done:
                return
            assert name not in visiting, f"ordering cycle at {name}"
            visiting.add(name)
            for a in self.units[name].after:
                if a.endswith(".service") and a[:-8] in names:
                    visit(a[:-8])
            visiting.discard(name)
            done.append(name)
        for name in names:
            visit(name)
        return done

    def _start(self, name: str) -> None:
        with self._lock:
            svc = self.services.setdefault(name, Service(self.units[name]))
            if name not in self.order:
                self.order.append(name)
            svc.stopping = False
            svc.restart_at = None
            self._spawn(svc)

    def _spawn(self, svc: Service) -> None:
        unit = svc.unit
        env = dict(os.environ)
        sock = None
        if unit.type == "notify":
            # A path socket (abstract ones belong to one network namespace) with a short path.
            folder = tempfile.mkdtemp(prefix="mk8s-notify-")
            path = os.path.join(folder, "notify")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(path)
            env["NOTIFY_SOCKET"] = path
        log = open(self.logs / f"{self.host.name}-{unit.name}.log", "ab")
        log.write(f"--- start {time.strftime('%H:%M:%S')}: {shlex.join(unit.exec_start)}\n"
                  .encode())
        log.flush()
        try:
            svc.proc = subprocess.Popen(["ip", "netns", "exec", self.host.namespace,
                                         *unit.exec_start], stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=env, start_new_session=True)
        finally:
            log.close()
        svc.starts += 1
        if sock is not None:
            try:
                self._wait_ready(svc, sock)
            finally:
                sock.close()
                shutil.rmtree(os.path.dirname(env["NOTIFY_SOCKET"]), ignore_errors=True)

    def _wait_ready(self, svc: Service, sock: socket.socket, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        sock.settimeout(0.5)
        while time.monotonic() < deadline:
            try:
                if b"READY=1" in sock.recv(4096):
                    return
            except socket.timeout:
                pass
            if svc.proc.poll() is not None:
                raise AssertionError(f"{svc.unit.name} exited ({svc.proc.returncode}) before "
                                     f"READY=1:\n{self.log_tail(svc.unit.name)}")
        raise AssertionError(f"{svc.unit.name}: no READY=1 within {timeout:.0f}s:\n"
                             f"{self.log_tail(svc.unit.name)}")

    def _watch(self) -> None:
        """Restart=always: an exited service comes back after RestartSec."""
        while not self._done.wait(0.2):
            with self._lock:
                for svc in self.services.values():
                    if svc.stopping or svc.proc is None:
                        continue
                    if svc.restart_at is None and svc.proc.poll() is not None:
                        svc.exits.append(svc.proc.returncode)
                        if svc.unit.restart in ("always", "on-failure") and (
                                svc.unit.restart == "always" or svc.proc.returncode != 0):
                            svc.restart_at = time.monotonic() + svc.unit.restart_sec
                        else:
                            svc.stopping = True
                    elif svc.restart_at is not None and time.monotonic() >= svc.restart_at:
                        svc.restart_at = None
                        self._spawn(svc)

    def main_pid(self, name: str) -> int:
        return self.services[name].proc.pid

    def stop(self, name: str, timeout: float = 20) -> None:
        """SIGTERM to the main process (all KillMode values send it there; control-group
        would also signal the rest of the cgroup, and these services fork nothing), then
        SIGKILL after the timeout."""
        with self._lock:
            svc = self.services.get(name)
            if svc is None:
                return
            svc.stopping = True
            svc.restart_at = None
            proc = svc.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def restart(self, name: str) -> None:
        self.stop(name)
        self._start(name)

    def stop_all(self) -> None:
        for name in reversed(self.order):
            try:
                self.stop(name)
            except Exception as exc:  # noqa: BLE001 - stop the others anyway
                print(f"stopping {name}: {exc}", file=sys.stderr)
        self._done.set()
        self._monitor.join(5)

    def restarts(self) -> dict[str, list[int]]:
        """Exit codes of services that ended on their own (Restart= brought them back)."""
        return {n: s.exits for n, s in self.services.items() if s.exits}

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.logs / f"{self.host.name}-{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


# --- helpers -----------------------------------------------------------------------------


def heartbeat(node: dict) -> datetime | None:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready" and c.get("lastHeartbeatTime"):
            return datetime.fromisoformat(c["lastHeartbeatTime"].replace("Z", "+00:00"))
    return None


def node_containers(cluster: str) -> dict[str, str]:
    """This cluster's containers of worker-1: id -> state."""
    out = subprocess.run(["docker", "ps", "-a", "--no-trunc", "--format",
                          "{{.ID}} {{.State}}", "--filter", f"label={LABEL_NODE}={NODE}",
                          "--filter", f"label={LABEL_CLUSTER}={cluster}"],
                         capture_output=True, text=True, check=True, timeout=60)
    return dict(line.split(" ", 1) for line in out.stdout.splitlines() if line.strip())


def remove_containers(cluster: str) -> None:
    ids = list(node_containers(cluster))
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, text=True,
                       timeout=120)


MANIFEST = """\
apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: {image}
        command: [sh, -c, "echo hello-$(hostname) > /tmp/index.html; exec httpd -f -p 8080 -h /tmp"]
        ports: [{{containerPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {ns}}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
"""


# --- the test ----------------------------------------------------------------------------


@pytest.fixture
def hosts(tmp_path):
    """(network, master, worker): two namespaces on a bridge; removed afterwards."""
    net = NodeNetworks(tmp_path / "netns.json")
    try:
        made = []
        for index, name in ((MASTER_INDEX, "master"), (WORKER_INDEX, NODE)):
            namespace, ip = net.create_node_namespace(index)
            made.append(Host(name, namespace, ip, tmp_path / name))
        yield net, made[0], made[1]
    finally:
        net.teardown()


async def test_readme_binary_install_on_two_hosts(hosts, busybox_image, tmp_path):
    if shutil.which("etcd") is None:
        pytest.fail("etcd is not installed (apt-get install -y etcd-server)")
    net, master, worker = hosts
    for h in (master, worker):
        sed_checkout(h, master, worker)
    logs = tmp_path / "logs"
    systemd = {h.name: MiniSystemd(h, logs) for h in (master, worker)}
    admin = master.etc / "admin.kubeconfig"
    cluster = ""
    ns = f"bi-{uuid.uuid4().hex[:6]}"
    client: Client | None = None
    pki = [sys.executable, str(SYSTEMD / "minik8s-pki.py")]

    def mkctl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        # on the master, with the admin kubeconfig, as the README's last line
        return master.run(*installed("mkctl"), "--kubeconfig", str(admin), *args,
                          timeout=timeout)

    async def waiting(predicate, timeout: float, what: str):
        """wait_for, with the services' logs as they are when it gives up."""
        try:
            return await wait_for(predicate, timeout, what, interval=0.5)
        except AssertionError as exc:
            logs = "\n".join(f"=== {h}/{n}\n{s.log_tail(n, 1500)}"
                             for h, s in systemd.items() for n in s.services)
            raise AssertionError(f"{exc}\n{logs}") from None
    try:
        # --- master: PKI, configs, units, enable --now ----------------------------------
        t = time.monotonic()
        out = master.run(*pki, "master", master.ip, "--dir", str(master.etc))
        assert out.returncode == 0, out.stdout + out.stderr
        pki_master = time.monotonic() - t
        cluster = cluster_id((master.etc / "pki" / "ca.crt").read_bytes())
        cp(master, ["etcd", "apiserver", "scheduler", "controller-manager"],
           "config/{}.yaml", master.etc)
        cp(master, ["etcd", "apiserver", "scheduler", "controller-manager"],
           "minik8s-{}.service", master.units)
        systemd["master"].daemon_reload()
        started = time.monotonic()
        systemd["master"].enable_now("minik8s-etcd", "minik8s-apiserver", "minik8s-scheduler",
                                     "minik8s-controller-manager")
        assert systemd["master"].order == ["minik8s-etcd", "minik8s-apiserver",
                                           "minik8s-scheduler", "minik8s-controller-manager"]

        # --- master: the worker's files; the "scp" -------------------------------------
        bundle = master.root / "tmp" / NODE
        t = time.monotonic()
        out = master.run(*pki, "node", NODE, worker.ip, "--master", master.ip,
                         "--dir", str(master.etc), "--out", str(bundle))
        assert out.returncode == 0, out.stdout + out.stderr
        pki_node = time.monotonic() - t
        shutil.copytree(bundle, worker.etc, dirs_exist_ok=True)  # scp -r /tmp/worker-1/. ...

        # --- worker ---------------------------------------------------------------------
        # the pod infra image (a no-op here: the busybox_image fixture built it already on
        # the one Docker engine both "hosts" share)
        out = worker.run("bash", str(ROOT / "deploy" / "images" / "build-busybox.sh"))
        assert out.returncode == 0, out.stdout + out.stderr
        cp(worker, ["kubelet", "kube-proxy"], "config/{}.yaml", worker.etc)
        cp(worker, ["kubelet", "kube-proxy"], "minik8s-{}.service", worker.units)
        systemd[NODE].daemon_reload()
        systemd[NODE].enable_now("minik8s-kubelet", "minik8s-kube-proxy")
        assert systemd[NODE].order == ["minik8s-kubelet", "minik8s-kube-proxy"]

        # --- master: mkctl get nodes ----------------------------------------------------
        async def node_listed_ready():
            out = await asyncio.to_thread(mkctl, "get", "nodes")
            rows = [line.split() for line in out.stdout.splitlines()[1:]]
            return out if [NODE, "Ready"] in [r[:2] for r in rows] else None
        out = await waiting(node_listed_ready, 120, f"`mkctl get nodes` showing {NODE} Ready")
        ready_at = time.monotonic() - started
        print(f"\n{out.stdout}")

        # --- a Deployment and a Service, applied with mkctl -----------------------------
        manifest = master.root / "web.yaml"
        manifest.write_text(MANIFEST.format(ns=ns, image=busybox_image))
        out = mkctl("apply", "-f", str(manifest))
        assert out.returncode == 0, out.stdout + out.stderr
        client = Client.from_kubeconfig(str(admin))  # from the host, over the node bridge

        async def web_running():
            pods = (await client.list("pods", ns, label_selector="app=web"))["items"]
            ok = len(pods) == 2 and all(pod_running(p) and p["spec"].get("nodeName") == NODE
                                        for p in pods)
            return pods if ok else None
        pods = await waiting(web_running, 180, f"both web pods Running on {NODE}")
        to_running = time.monotonic() - started
        print(f"\nPKI: master {pki_master:.1f}s, node {pki_node:.1f}s; first systemctl start "
              f"of the master units -> {NODE} Ready (mkctl get nodes) {ready_at:.1f}s, -> "
              f"Deployment Running {to_running:.1f}s")
        out = mkctl("get", "pods", "-n", ns, "-o", "wide")
        print(out.stdout)

        # --- the Service from a pod: ClusterIP, then DNS --------------------------------
        svc = await client.get("services", "web", ns)
        cluster_ip = svc["spec"]["clusterIP"]
        names = {p["metadata"]["name"] for p in pods}
        src = sorted(names)[0]
        seen: set[str] = set()

        async def both_backends():
            out = await asyncio.to_thread(mkctl, "exec", "-n", ns, src, "--", "wget", "-q",
                                          "-T", "3", "-O", "-", f"http://{cluster_ip}/")
            seen.update(n for n in names if f"hello-{n}" in out.stdout)
            return seen == names
        await waiting(both_backends, 90, f"both pods answering on {cluster_ip}")

        async def by_name():
            # no -T: Debian's busybox wget crashes with it on a name (test_dns_e2e)
            out = await asyncio.to_thread(mkctl, "exec", "-n", ns, src, "--", "wget", "-q",
                                          "-O", "-", f"http://web.{ns}.svc.cluster.local/")
            return any(f"hello-{n}" in out.stdout for n in names)
        await waiting(by_name, 60, f"web.{ns}.svc.cluster.local answering")

        # --- systemctl restart minik8s-kubelet: the pods stay, the new kubelet adopts ---
        before = node_containers(cluster)
        # two pods, each an infra and an app container
        assert len(before) == 4 and set(before.values()) == {"running"}, before
        status_ids = {p["metadata"]["name"]: [c["containerID"] for c in
                                               p["status"]["containerStatuses"]] for p in pods}
        old_pid = systemd[NODE].main_pid("minik8s-kubelet")
        systemd[NODE].stop("minik8s-kubelet")
        assert node_containers(cluster) == before  # KillMode=process: nothing else went
        stopped_at = datetime.now(timezone.utc)
        systemd[NODE].enable_now("minik8s-kubelet")
        assert systemd[NODE].main_pid("minik8s-kubelet") != old_pid

        async def heartbeat_after_restart():
            hb = heartbeat(await client.get("nodes", NODE))
            return hb is not None and hb > stopped_at
        await waiting(heartbeat_after_restart, 60, "a heartbeat of the restarted kubelet")
        after = await waiting(web_running, 60, "the web pods Running after the restart")
        assert {p["metadata"]["name"]: [c["containerID"] for c in
                                        p["status"]["containerStatuses"]]
                for p in after} == status_ids
        assert all(c.get("restartCount", 0) == 0 for p in after
                   for c in p["status"]["containerStatuses"])
        assert node_containers(cluster) == before
        out = await asyncio.to_thread(mkctl, "exec", "-n", ns, src, "--", "wget", "-q", "-T",
                                      "3", "-O", "-", f"http://{cluster_ip}/")
        assert "hello-" in out.stdout, out.stdout + out.stderr
        print(f"services that exited on their own: {systemd['master'].restarts()} "
              f"{systemd[NODE].restarts()}")
    finally:
        if client is not None:
            await client.aclose()
        systemd[NODE].stop_all()
        # a stopped kube-proxy leaves no rule in its node's namespace
        rules = [line for line in worker.run("iptables-save", timeout=60).stdout.splitlines()
                 if "KUBE" in line]
        # what `kube-proxy --cleanup` removes, in the worker's namespace (its SIGTERM
        # removed the rules already; this also takes the service bridge)
        out = worker.run(*installed("minik8s"), "kube-proxy", "--cleanup", timeout=60)
        print(f"kube-proxy --cleanup: {out.stdout.strip()} {out.stderr.strip()}")
        if cluster:
            await asyncio.to_thread(remove_containers, cluster)
        systemd["master"].stop_all()
        left = {h.namespace: subprocess.run(["ip", "netns", "pids", h.namespace],
                                            capture_output=True, text=True).stdout.split()
                for h in (master, worker)}

    assert not any(left.values()), f"processes left in the hosts' namespaces: {left}"
    assert not rules, rules
    assert not node_containers(cluster)
