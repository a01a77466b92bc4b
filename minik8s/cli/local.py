"""The one-command local cluster: ``minik8s up`` / ``down`` / ``status``.

Everything lives under one folder (``$MINIK8S_HOME`` or ``~/.minik8s``): etcd data, PKI,
logs, the admin kubeconfig, and a pid file per process started. ``down`` stops exactly the
processes recorded there, each checked against its recorded command line before it is
signalled, so a recycled pid is never killed. ``up`` is idempotent: what already runs is
left alone, what is missing is started.

Nodes (``--nodes N``) are network namespaces made by ``minik8s.cli.netns``, each running its
kubelet under ``ip netns exec``; the API server then also listens on the node bridge's
address. The namespaces, bridge, routes and iptables rule are recorded in ``run/netns.json``
and ``down`` removes exactly those, after the pods' containers."""

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

from minik8s.cli import encryption
from minik8s.client.kubeconfig import write_kubeconfig
from minik8s.pki import PKIPaths, cluster_id, ensure_pki, issue_node_cert


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

    @property
    def nodes(self) -> Path:
        return self.root / "nodes"

    @property
    def netns_state(self) -> Path:
        return self.run / "netns.json"


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


def spawn(home: Home, name: str, cmd: list[str], env: dict[str, str] | None = None,
          shows: list[str] | None = None) -> int:
    """Start ``cmd`` in the background and record it. ``shows``: the command line the process
    will have once a wrapper that execs (``ip netns exec NS python ...``) has run; recorded
    as it is, since /proc may still show the wrapper for a moment."""
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
    home.pidfile(name).write_text(json.dumps({"pid": proc.pid, "cmd": shows or shown or cmd}))
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


def _listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a listening TCP socket on ``port`` (any address): a
    connect that succeeds may reach another program, such as another cluster's etcd."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{f[9]}]")
    if not inodes:
        return False
    fds = Path(f"/proc/{pid}/fd")
    try:
        return any(os.readlink(fd) in inodes for fd in fds.iterdir())
    except OSError:
        return False


def _etcd_ports(settings: dict) -> tuple[int, int]:
    """Client and peer port for our etcd: the recorded ones (else 2379 and 2380) when free,
    a free one instead of each that another program holds."""
    ports = []
    for key, default in (("etcd_client_port", 2379), ("etcd_peer_port", 2380)):
        want = settings.get(key) or default
        if _port_free("127.0.0.1", want) and want not in ports:
            ports.append(want)
            continue
        other = free_port()
        print(f"etcd: port {want} is taken by another program; using {other}")
        ports.append(other)
    return ports[0], ports[1]


# --- components -----------------------------------------------------------------------------


def etcd_tls_flags(tls: dict[str, Path]) -> list[str]:
    """etcd's flags for https with client and peer certificates required and checked
    against ``tls["ca"]`` (keys as ``EtcdPKI.tls_files`` gives them)."""
    return ["--cert-file", str(tls["cert"]), "--key-file", str(tls["key"]),
            "--client-cert-auth", "--trusted-ca-file", str(tls["ca"]),
            "--peer-cert-file", str(tls["peer_cert"]), "--peer-key-file", str(tls["peer_key"]),
            "--peer-client-cert-auth", "--peer-trusted-ca-file", str(tls["ca"])]


def etcd_command(data_dir: Path, client_port: int, peer_port: int, name: str = "minik8s", *,
                 host: str = "127.0.0.1", tls: dict[str, Path] | None = None,
                 initial_cluster: str | None = None) -> list[str]:
    """etcd on ``host`` (and loopback). With ``tls`` (keys ``ca``, ``cert``, ``key``,
    ``peer_cert``, ``peer_key``) it speaks https only, client and peer certificates
    required and checked against ``ca``. ``initial_cluster``: ``name=peerURL,...`` of
    every member (default: this one alone)."""
    binary = shutil.which("etcd")
    if binary is None:
        raise ClusterError("etcd is not installed (Debian: apt-get install -y etcd-server), "
                           "or pass --etcd-servers")
    scheme = "https" if tls else "http"
    client = f"{scheme}://{host}:{client_port}"
    listen = client if host == "127.0.0.1" else f"{client},{scheme}://127.0.0.1:{client_port}"
    peer = f"{scheme}://{host}:{peer_port}"
    secure = etcd_tls_flags(tls) if tls else []
    return [binary, "--name", name, "--data-dir", str(data_dir),
            "--listen-client-urls", listen, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", initial_cluster or f"{name}={peer}",
            "--auto-compaction-mode", "periodic", "--auto-compaction-retention", "1h",
            "--quota-backend-bytes", str(4 * 1024 ** 3), "--log-level", "warn", *secure]


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


def up(home: Home, *, nodes: int = 1, etcd_servers: str | None = None, port: int | None = None,
       controller_manager_args: list[str] | None = None, proxy_mode: str | None = None) -> int:
    """``controller_manager_args``: extra flags for the controller-manager (such as
    ``--node-monitor-grace-period=10``), used when ``up`` starts it. ``proxy_mode``:
    kube-proxy's backend (iptables or userspace; default: its automatic choice). ``port``:
    the API server's port; default the one recorded by an earlier ``up``, else 6443. A
    different port while the API server runs is an error (it cannot move under its
    clients)."""
    for d in (home.root, home.logs, home.run):
        d.mkdir(parents=True, exist_ok=True)
    settings = _load_settings(home)
    started: list[str] = []

    if etcd_servers:
        settings["etcd_servers"] = etcd_servers
        settings.pop("etcd_client_port", None)
    elif "etcd_servers" not in settings or settings.get("etcd_client_port"):
        _ensure_etcd(home, settings, started)

    recorded = settings.get("port")
    if port is None:
        port = recorded or 6443
    elif recorded and port != recorded and running_pid(home, "apiserver"):
        raise ClusterError(f"the API server already runs on port {recorded}; run `minik8s "
                           f"down` first to move it to {port}")
    settings["port"] = port
    _save_settings(home, settings)
    pki = ensure_pki(home.pki, hosts=[])
    server = f"https://127.0.0.1:{port}"
    write_kubeconfig(home.kubeconfig, server=server, ca_pem=pki.ca_cert.read_bytes(),
                     cert_pem=pki.admin_cert.read_bytes(), key_pem=pki.admin_key.read_bytes(),
                     user_name="kubernetes-admin", cluster_name="minik8s")
    net = _node_network(home, nodes)
    node_args: list[str] = []
    if net is not None:
        s = net.settings
        node_args = ["--extra-bind-address", s.bridge_ip, "--advertise-address", s.bridge_ip,
                     "--cluster-cidr", s.cluster_cidr]
    spawned_apiserver = running_pid(home, "apiserver") is None
    if spawned_apiserver:
        if not _port_free("127.0.0.1", port):
            raise ClusterError(f"the API server's port {port} is taken by another program; "
                               "use --port")
        key_file = home.root / encryption.KEY_FILE_NAME  # Secrets at rest; mode 0600
        encryption.ensure_key_file(key_file)
        spawn(home, "apiserver", _python_component(
            "apiserver", "--etcd-servers", settings["etcd_servers"], "--secure-port", str(port),
            "--pki-dir", str(home.pki), "--encryption-key-file", str(key_file), *node_args))
        settings["apiserver_node_args"] = node_args
        _save_settings(home, settings)
        started.append(f"apiserver  {server}")
    elif net is not None and settings.get("apiserver_node_args") != node_args:
        raise ClusterError("the running API server was started without nodes and does not "
                           "listen on the node bridge; run `minik8s down` first")
    try:  # our CA only: another cluster's API server on the port never passes as ours
        _wait_ready(f"{server}/readyz", pki.ca_cert, 60, "the API server", home, "apiserver")
    except ClusterError:
        if spawned_apiserver and running_pid(home, "apiserver") is None \
                and not _port_free("127.0.0.1", port):
            raise ClusterError(f"the API server's port {port} was taken by another program "
                               "meanwhile; use --port") from None
        raise

    kubelets: list[str] = []
    restarted: list[str] = []  # node components started before that had exited
    if net is not None:
        _ensure_docker(home, started)
        _ensure_images()
        kubelets = _start_nodes(home, net, pki, port, nodes, started, restarted)
        _start_kube_proxies(home, net, pki, port, started, restarted, proxy_mode)
    _start_control_plane(home, pki, server, started, restarted,
                         {"controller-manager": ["--root-ca-file", str(pki.ca_cert),
                                                 *(controller_manager_args or [])]})
    if net is not None:
        _sync_host_routes(home, net, pki, server, wait_for=kubelets)
        _ensure_service_route(home, net)

    if started:
        print("started:")
        for line in started + restarted:
            print(f"  {line}")
    else:
        print("the cluster is already running")
        if restarted:
            print("restarted: " + ", ".join(restarted))
    print(f"\nkubeconfig: {home.kubeconfig}")
    print(f"  mkctl --kubeconfig {home.kubeconfig} get namespaces")
    print(f"  export KUBECONFIG={home.kubeconfig}; kubectl get namespaces")
    print("stop it with: minik8s down")
    return 0


# --- nodes --------------------------------------------------------------------------------


def _docker_ready() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True,
                              timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _ensure_docker(home: Home, started: list[str]) -> None:
    """The nodes' container engine: the host's Docker, started here when none runs (and
    then stopped again by ``down``)."""
    if _docker_ready():
        return
    if running_pid(home, "dockerd") is None:
        binary = shutil.which("dockerd")
        if binary is None or shutil.which("docker") is None:
            raise ClusterError("Docker is not installed (Debian: apt-get install -y docker.io)")
        spawn(home, "dockerd", [binary])
        started.append("dockerd    (no Docker engine was running)")
    deadline = time.monotonic() + 60
    while not _docker_ready():
        if running_pid(home, "dockerd") is None or time.monotonic() > deadline:
            raise ClusterError(f"dockerd did not start; see {home.logs / 'dockerd.log'}")
        time.sleep(0.5)


# The images pods start from are built locally: no registry is ever asked.
_IMAGE_SCRIPTS = ("build-busybox.sh",)


def _ensure_images() -> None:
    images = Path(__file__).resolve().parents[2] / "deploy" / "images"
    for name in _IMAGE_SCRIPTS:
        script = images / name
        if not script.exists():
            continue  # an installed package without the repository's deploy/ folder
        out = subprocess.run(["bash", str(script)], capture_output=True, text=True)
        if out.returncode != 0:
            raise ClusterError(f"building images with {script} failed: "
                               f"{(out.stderr or out.stdout).strip()[-300:]}")


def _component_available(name: str) -> bool:
    """Whether ``minik8s <name>`` exists in this build (components are being added)."""
    import importlib.util

    from minik8s.cli.main import COMPONENTS

    target = COMPONENTS.get(name)
    if target is None:
        return False
    try:
        return importlib.util.find_spec(target.partition(":")[0]) is not None
    except ModuleNotFoundError:
        return False


def _node_network(home: Home, nodes: int):
    """The cluster's node namespaces (host side made), or None without nodes."""
    if nodes <= 0:
        return None
    if os.geteuid() != 0 or shutil.which("ip") is None:
        raise ClusterError("nodes are network namespaces: `minik8s up --nodes N` needs root "
                           "and iproute2 (or use --nodes 0 for the control plane alone)")
    from minik8s.cli.netns import NetnsError, NodeNetworks

    net = NodeNetworks(home.netns_state)
    try:
        net.ensure_host()
    except NetnsError as exc:
        raise ClusterError(f"cannot make the node network: {exc}") from None
    return net


def _node_name(index: int) -> str:
    return f"node-{index}"


def _start_nodes(home: Home, net, pki: PKIPaths, port: int, nodes: int,
                 started: list[str], restarted: list[str]) -> list[str]:
    """Namespaces, certificates, kubeconfigs and kubelets of node-1..node-N; the names of
    the nodes whose kubelet runs."""
    from minik8s.cli.netns import NetnsError

    s = net.settings
    server = f"https://{s.bridge_ip}:{port}"
    with_kubelet = _component_available("kubelet")
    running: list[str] = []
    for i in range(1, nodes + 1):
        name = _node_name(i)
        new = i not in net.node_indices()
        try:
            namespace, ip = net.create_node_namespace(i)
        except NetnsError as exc:
            raise ClusterError(f"cannot make node {name}: {exc}") from None
        folder = home.nodes / name
        folder.mkdir(parents=True, exist_ok=True)
        cert, key = issue_node_cert(pki, name, hosts=[ip, name])
        kubeconfig = write_kubeconfig(
            folder / "kubeconfig", server=server, ca_pem=pki.ca_cert.read_bytes(),
            cert_pem=cert.read_bytes(), key_pem=key.read_bytes(),
            user_name=f"system:node:{name}", cluster_name="minik8s")
        if not with_kubelet:
            if new:
                started.append(f"{name:<10} {ip} (namespace {namespace}; no kubelet in this "
                               f"build)")
            continue
        proc = f"kubelet-{name}"
        if running_pid(home, proc) is None:
            before = home.pidfile(proc).exists()
            kubelet = _python_component(
                "kubelet", "--node-name", name, "--kubeconfig", str(kubeconfig),
                "--root-dir", str(folder), "--node-ip", ip, "--network", "bridge",
                "--cluster-cidr", s.cluster_cidr,
                # the node certificate also serves the kubelet's HTTPS endpoint (its SANs
                # are the node's address and name)
                "--tls-cert-file", str(cert), "--tls-private-key-file", str(key),
                "--client-ca-file", str(pki.ca_cert))
            spawn(home, proc, ["ip", "netns", "exec", namespace, *kubelet], shows=kubelet)
            line = f"{name:<10} {ip} (namespace {namespace}, kubelet)"
            (restarted if before and not new else started).append(line)
        running.append(name)
    return running


# --- kube-proxy ---------------------------------------------------------------------------

SERVICE_CIDR = "10.96.0.0/12"


def _start_kube_proxies(home: Home, net, pki: PKIPaths, port: int, started: list[str],
                        restarted: list[str], proxy_mode: str | None) -> None:
    """One kube-proxy per node, in the node's namespace next to its kubelet, with the
    kube-proxy identity. The mode asked for is remembered for later ``up`` runs."""
    if not _component_available("kube-proxy"):
        return
    settings = _load_settings(home)
    if proxy_mode:
        settings["proxy_mode"] = proxy_mode
        _save_settings(home, settings)
    mode = settings.get("proxy_mode")
    s = net.settings
    cert, key = pki.pair("kube-proxy")
    kubeconfig = write_kubeconfig(
        home.root / "components" / "kube-proxy.kubeconfig",
        server=f"https://{s.bridge_ip}:{port}", ca_pem=pki.ca_cert.read_bytes(),
        cert_pem=cert.read_bytes(), key_pem=key.read_bytes(), user_name="system:kube-proxy",
        cluster_name="minik8s")
    for i in net.node_indices():
        name, ip, namespace = _node_name(i), s.node_ip(i), s.namespace(i)
        proc = f"kube-proxy-{name}"
        if running_pid(home, proc) is not None:
            continue
        before = home.pidfile(proc).exists()
        cmd = _python_component(
            "kube-proxy", "--node-name", name, "--kubeconfig", str(kubeconfig),
            "--node-ip", ip, "--cluster-cidr", s.cluster_cidr, "--service-cidr", SERVICE_CIDR,
            *(["--proxy-mode", mode] if mode else []))
        spawn(home, proc, ["ip", "netns", "exec", namespace, *cmd], shows=cmd)
        (restarted if before else started).append(
            f"{'kube-proxy':<10} {name} ({mode or 'automatic'} mode)")


def _ensure_service_route(home: Home, net) -> None:
    """Host -> ClusterIP: the service CIDR via node-1, whose kube-proxy masquerades the
    host's connections, so replies come back the same way. Recorded, removed by ``down``;
    a route another cluster on this machine holds is left alone."""
    indices = net.node_indices()
    if not indices or not _component_available("kube-proxy"):
        return
    s = net.settings
    via = s.node_ip(indices[0])
    settings = _load_settings(home)
    have = subprocess.run(["ip", "-4", "route", "show", "exact", SERVICE_CIDR],
                          capture_output=True, text=True).stdout.strip()
    if have and settings.get("service_route", {}).get("via") != via:
        print(f"warning: the host already routes {SERVICE_CIDR} ({have}); ClusterIPs of this "
              f"cluster are not reachable from the host", file=sys.stderr)
        return
    settings["service_route"] = {"cidr": SERVICE_CIDR, "via": via, "dev": s.bridge}
    _save_settings(home, settings)
    out = subprocess.run(["ip", "route", "replace", SERVICE_CIDR, "via", via, "dev", s.bridge,
                          "proto", "77"], capture_output=True, text=True)
    if out.returncode != 0:
        print(f"warning: routing {SERVICE_CIDR} via {via}: {out.stderr.strip()}",
              file=sys.stderr)


def _remove_service_route(home: Home) -> str | None:
    settings = _load_settings(home)
    route = settings.pop("service_route", None)
    if not route:
        return None
    subprocess.run(["ip", "route", "del", route["cidr"], "via", route["via"], "dev",
                    route["dev"], "proto", "77"], capture_output=True)
    _save_settings(home, settings)
    return f"route {route['cidr']}"


# Control-plane components `up` runs beside the API server: name -> (PKI identity, user).
_CONTROL_PLANE = {
    "scheduler": ("scheduler", "system:kube-scheduler"),
    "controller-manager": ("controller-manager", "system:kube-controller-manager"),
}


def _start_control_plane(home: Home, pki: PKIPaths, server: str, started: list[str],
                         restarted: list[str],
                         extra_args: dict[str, list[str]] | None = None) -> None:
    for name, (identity, user) in _CONTROL_PLANE.items():
        if not _component_available(name) or running_pid(home, name) is not None:
            continue
        cert, key = pki.pair(identity)
        kubeconfig = write_kubeconfig(
            home.root / "components" / f"{name}.kubeconfig", server=server,
            ca_pem=pki.ca_cert.read_bytes(), cert_pem=cert.read_bytes(),
            key_pem=key.read_bytes(), user_name=user, cluster_name="minik8s")
        before = home.pidfile(name).exists()
        spawn(home, name, _python_component(name, "--kubeconfig", str(kubeconfig),
                                            "--leader-elect",
                                            *(extra_args or {}).get(name, [])))
        (restarted if before else started).append(name)


def _api_get(pki: PKIPaths, url: str, timeout: float = 5) -> dict:
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    ctx.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
    with urllib.request.urlopen(url, context=ctx, timeout=timeout) as resp:
        return json.loads(resp.read())


def _node_objects(pki: PKIPaths, server: str) -> dict[str, dict]:
    try:
        listed = _api_get(pki, f"{server}/api/v1/nodes")
    except Exception:
        return {}
    return {n["metadata"]["name"]: n for n in listed.get("items") or []}


def _sync_host_routes(home: Home, net, pki: PKIPaths, server: str, *,
                      wait_for: list[str], timeout: float = 30) -> None:
    """Host -> pod routes: each of our nodes' podCIDR via its address, once registered."""
    s = net.settings
    ours = {_node_name(i): s.node_ip(i) for i in net.node_indices()}
    deadline = time.monotonic() + (timeout if wait_for else 0)
    exited: list[str] = []
    while True:
        objs = _node_objects(pki, server)
        cidrs = {name: (objs.get(name, {}).get("spec") or {}).get("podCIDR") for name in ours}
        exited += [n for n in wait_for if not cidrs.get(n) and n not in exited
                   and running_pid(home, f"kubelet-{n}") is None]
        missing = [n for n in wait_for if not cidrs.get(n) and n not in exited]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    for n in exited:
        print(f"warning: the kubelet of {n} exited; see {home.logs / f'kubelet-{n}.log'}",
              file=sys.stderr)
    net.sync_pod_routes({cidr: ours[name] for name, cidr in cidrs.items() if cidr})
    if missing:
        print(f"warning: {', '.join(missing)} did not register within {timeout:.0f}s; host -> "
              f"pod routes for them are missing (run `minik8s up` again)", file=sys.stderr)


def _remove_pod_containers(home: Home, net, pki: PKIPaths, server: str | None) -> int:
    """Remove the containers of this cluster's pods (labelled with one of our node names);
    with the API server reachable, only those of pods it knows, so another cluster on this
    machine that also has a ``node-1`` keeps its containers."""
    docker = shutil.which("docker")
    if docker is None or net is None:
        return 0
    uids = None
    if server:
        try:
            pods = _api_get(pki, f"{server}/api/v1/pods", timeout=10)
            uids = {p["metadata"]["uid"] for p in pods.get("items") or []}
        except Exception:
            uids = None
    ids: list[str] = []
    cluster = cluster_id(pki.ca_cert.read_bytes())
    for i in net.node_indices():
        out = subprocess.run(
            [docker, "ps", "-a", "--filter", f"label=io.minik8s.node={_node_name(i)}",
             "--filter", f"label=io.minik8s.cluster={cluster}",
             "--format", '{{.ID}} {{.Label "io.minik8s.pod.uid"}}'],
            capture_output=True, text=True)
        for line in out.stdout.splitlines():
            cid, _, uid = line.partition(" ")
            if cid and (uids is None or uid.strip() in uids):
                ids.append(cid)
    if ids:
        subprocess.run([docker, "rm", "-f", *ids], capture_output=True, text=True)
    return len(ids)


def _ensure_etcd(home: Home, settings: dict, started: list[str]) -> None:
    """Our own etcd, recorded in ``settings``. Ports another program holds are replaced by
    free ones; ready means *our* process listens (not just anything on the port), and if
    another program took a port between the check and etcd's bind (two ``up`` at once),
    etcd exits and is started again on other ports."""
    pid = running_pid(home, "etcd")
    for attempt in range(3):
        spawned = pid is None
        if spawned:
            client_port, peer_port = _etcd_ports(settings)
            settings.update(etcd_client_port=client_port, etcd_peer_port=peer_port,
                            etcd_servers=f"http://127.0.0.1:{client_port}")
            home.etcd_data.mkdir(parents=True, exist_ok=True)
            os.chmod(home.etcd_data, 0o700)
            pid = spawn(home, "etcd", etcd_command(home.etcd_data, client_port, peer_port))
            started.append(f"etcd       http://127.0.0.1:{client_port}  (data {home.etcd_data})")
        client_port = settings["etcd_client_port"]
        try:
            _wait_tcp("127.0.0.1", client_port, 30, home, "etcd", pid=pid)
            return
        except ClusterError:
            taken = [p for p in (client_port, settings["etcd_peer_port"])
                     if not _port_free("127.0.0.1", p)]
            if not spawned or running_pid(home, "etcd") is not None or not taken \
                    or attempt == 2:
                raise
            print(f"etcd: port {taken[0]} was taken by another program meanwhile; retrying")
            started.pop()
            pid = None


def _wait_tcp(host: str, port: int, timeout: float, home: Home, name: str, *,
              pid: int | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running_pid(home, name) is None:
            raise ClusterError(f"{name} exited; see {home.logs / (name + '.log')}")
        if pid is not None:
            if _listens(pid, port):
                return
        else:
            with socket.socket() as s:
                s.settimeout(0.5)
                if s.connect_ex((host, port)) == 0:
                    return
        time.sleep(0.1)
    if pid is not None and not _port_free(host, port):
        raise ClusterError(f"port {port} on {host} is held by another program, not by {name} "
                           f"(pid {pid}); see {home.logs / (name + '.log')}")
    raise ClusterError(f"{name} did not listen on {host}:{port} within {timeout:.0f}s")


# Stop order: dependents first.
_ORDER = ["controller-manager", "scheduler", "apiserver", "etcd", "dockerd"]


def down(home: Home, *, purge: bool = False) -> int:
    names = sorted((p.stem for p in home.run.glob("*.pid")),
                   key=lambda n: _ORDER.index(n) if n in _ORDER else -1) if home.run.exists() else []
    # Kubelets first (they would restart what is removed), then the pods' containers while
    # the API server can still tell which pods are this cluster's, then the rest.
    stopped = [n for n in names if n.startswith("kubelet-") and stop(home, n)]
    net = None
    if home.netns_state.exists():
        from minik8s.cli.netns import NodeNetworks
        net = NodeNetworks(home.netns_state)
        settings = _load_settings(home)
        server = (f"https://127.0.0.1:{settings['port']}"
                  if settings.get("port") and running_pid(home, "apiserver") else None)
        removed = _remove_pod_containers(home, net, PKIPaths.at(home.pki), server)
        if removed:
            print(f"removed {removed} pod container(s)")
    stopped += [n for n in names if not n.startswith("kubelet-") and stop(home, n)]
    print("stopped: " + ", ".join(stopped) if stopped else "nothing was running")
    if net is not None:
        from minik8s.cli.netns import NetnsError
        try:
            gone = [r for r in [_remove_service_route(home)] if r] + net.teardown()
        except NetnsError as exc:
            print(f"error: removing the node network: {exc}", file=sys.stderr)
            return 1
        if gone:
            print("removed: " + ", ".join(gone))
    if purge:
        for path in (home.etcd_data, home.pki, home.kubeconfig, home.settings, home.nodes,
                     home.root / "components"):
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
        print(f"{name:<16} {'running (pid %d)' % pid if pid else 'stopped'}")
    settings = _load_settings(home)
    if settings.get("port"):
        print(f"api server       https://127.0.0.1:{settings['port']}  kubeconfig "
              f"{home.kubeconfig}")
    if home.netns_state.exists():
        from minik8s.cli.netns import NodeNetworks
        net = NodeNetworks(home.netns_state)
        s = net.settings
        objs = (_node_objects(PKIPaths.at(home.pki), f"https://127.0.0.1:{settings['port']}")
                if settings.get("port") and running_pid(home, "apiserver") else {})
        print(f"nodes            bridge {s.bridge} {s.bridge_ip}, node range {s.node_range}, "
              f"cluster CIDR {s.cluster_cidr}")
        for i in net.node_indices():
            name = _node_name(i)
            obj = objs.get(name) or {}
            ready = next((c.get("status") for c in (obj.get("status") or {}).get("conditions")
                          or [] if c.get("type") == "Ready"), None)
            pod_cidr = (obj.get("spec") or {}).get("podCIDR") or "-"
            state = ("Ready" if ready == "True" else "NotReady") if obj else "not registered"
            print(f"  {name:<10} {s.node_ip(i):<13} {s.namespace(i):<14} podCIDR {pod_cidr:<15} "
                  f"{state}")
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
