#!/usr/bin/env python3
"""``minik8s-compose``: the few things the compose deployment (deploy/compose.yaml) needs
besides the components themselves, installed in the minik8s image.

- ``certs``: one-shot, before anything else: the PKI, the kubeconfigs and each control
  plane component's config file, in ``$MINIK8S_DATA`` (a host folder every service mounts at
  the same path, so the host reads the admin kubeconfig and dockerd finds pod volumes there).
  Safe to run again: what exists is reused.
- ``etcd`` / ``apiserver``: exec the daemon with the settings only known in the container
  (the container's own address). etcd speaks https only, with client and peer certificates
  required, from its own CA (``pki/etcd``, as ``minik8s init`` makes it): the API server's
  client pair is the only identity it accepts.
- ``node NAME``: one worker node in this container's network namespace: the node's
  certificate for the address it has, then ``minik8s kubelet`` (with ``drain-on-exit``:
  the container going away takes its pods with it) and ``minik8s kube-proxy`` as children.
  SIGTERM/SIGINT go to both; when either ends, the other is stopped and the node exits.
- ``health etcd|apiserver|scheduler|controller-manager|node``: compose healthchecks.

Settings come from the environment compose sets: ``MINIK8S_DATA`` and ``MINIK8S_API_PORT``
(the API server's port published on the host's 127.0.0.1)."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

API_IN_CLUSTER = "https://apiserver:6443"
ETCD_URL = "https://etcd:2379"
LEASES = {"scheduler": "kube-scheduler", "controller-manager": "kube-controller-manager"}


def data_dir() -> Path:
    value = os.environ.get("MINIK8S_DATA")
    if not value or not os.path.isabs(value):
        sys.exit("minik8s-compose: MINIK8S_DATA must be an absolute path")
    return Path(value)


def own_ip() -> str:
    return socket.gethostbyname(socket.gethostname())


def write_yaml(path: Path, settings: dict) -> Path:
    import yaml
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(settings, sort_keys=False))
    tmp.replace(path)
    return path


def kubeconfig(path: Path, pki, name: str, user: str, server: str = API_IN_CLUSTER) -> Path:
    from minik8s.client import write_kubeconfig
    cert, key = pki.pair(name)
    return write_kubeconfig(path, server=server, ca_pem=pki.ca_cert.read_bytes(),
                            cert_pem=cert.read_bytes(), key_pem=key.read_bytes(),
                            user_name=user, cluster_name="minik8s-compose")


def certs() -> int:
    from minik8s.pki import ensure_pki
    from minik8s.pki.etcd import ensure_etcd_pki
    data = data_dir()
    port = int(os.environ.get("MINIK8S_API_PORT", "6443"))
    pki = ensure_pki(data / "pki", hosts=["apiserver", "localhost", "127.0.0.1"])
    etcd_pki = ensure_etcd_pki(data / "pki" / "etcd", hosts=["etcd"])
    etcd_cert, etcd_key = etcd_pki.client
    admin = kubeconfig(data / "admin.kubeconfig", pki, "admin", "kubernetes-admin",
                       server=f"https://127.0.0.1:{port}")
    conf = data / "config"
    for name in ("scheduler", "controller-manager", "kube-proxy"):
        kubeconfig(conf / f"{name}.kubeconfig", pki, name, f"system:{name}")
    write_yaml(conf / "apiserver.yaml", {
        "etcd-servers": ETCD_URL, "etcd-cafile": str(etcd_pki.ca_cert),
        "etcd-certfile": str(etcd_cert), "etcd-keyfile": str(etcd_key),
        "bind-address": "0.0.0.0", "secure-port": 6443,
        "pki-dir": str(pki.directory), "advertise-address": ["apiserver", "127.0.0.1"]})
    for name in ("scheduler", "controller-manager"):
        write_yaml(conf / f"{name}.yaml", {"kubeconfig": str(conf / f"{name}.kubeconfig"),
                                          "leader-elect": True})
    print(f"minik8s compose cluster: PKI and configs in {data}")
    print(f"admin kubeconfig: {admin}  (API server https://127.0.0.1:{port})")
    print(f"  mkctl --kubeconfig {admin} get nodes")
    return 0


def etcd() -> int:
    from minik8s.cli.local import etcd_tls_flags
    from minik8s.pki.etcd import EtcdPKI
    data = data_dir() / "etcd"
    data.mkdir(parents=True, exist_ok=True)
    tls = EtcdPKI(data_dir() / "pki" / "etcd").tls_files()
    os.execvp("etcd", ["etcd", "--name", "minik8s", "--data-dir", str(data),
                       "--listen-client-urls", "https://0.0.0.0:2379",
                       "--advertise-client-urls", ETCD_URL,
                       "--listen-peer-urls", "https://127.0.0.1:2380",
                       "--initial-advertise-peer-urls", "https://127.0.0.1:2380",
                       "--initial-cluster", "minik8s=https://127.0.0.1:2380",
                       *etcd_tls_flags(tls), "--auto-compaction-mode", "periodic",
                       "--auto-compaction-retention", "1h", "--log-level", "warn"])


def apiserver() -> int:
    config = data_dir() / "config" / "apiserver.yaml"
    # The container's address first: it is what the `kubernetes` Service's Endpoints carry.
    os.execvp("minik8s", ["minik8s", "apiserver", "--config", str(config),
                          "--advertise-address", own_ip(),
                          "--advertise-address", "apiserver",
                          "--advertise-address", "127.0.0.1"])


def kube_proxy_available() -> bool:
    """kube-proxy is started once this build has it (``minik8s kube-proxy --help`` works)."""
    try:
        return subprocess.run(["minik8s", "kube-proxy", "--help"], capture_output=True,
                              timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def node(name: str) -> int:
    from minik8s.client import write_kubeconfig
    from minik8s.pki import PKIPaths, issue_node_cert

    data = data_dir()
    pki = PKIPaths.at(data / "pki")
    ip = own_ip()
    writable_proc_sys()
    folder = data / "nodes" / name
    cert, key = issue_node_cert(pki, name, hosts=[ip, name])
    node_kubeconfig = write_kubeconfig(
        folder / "kubeconfig", server=API_IN_CLUSTER, ca_pem=pki.ca_cert.read_bytes(),
        cert_pem=cert.read_bytes(), key_pem=key.read_bytes(),
        user_name=f"system:node:{name}", cluster_name="minik8s-compose")
    kubelet_config = write_yaml(folder / "kubelet.yaml", {
        "node-name": name, "kubeconfig": str(node_kubeconfig),
        "root-dir": str(folder / "kubelet"), "node-ip": ip, "network": "bridge",
        "tls-cert-file": str(cert), "tls-private-key-file": str(key),
        "client-ca-file": str(pki.ca_cert), "drain-on-exit": True})
    commands = {"kubelet": ["minik8s", "kubelet", "--config", str(kubelet_config)]}
    if kube_proxy_available():
        commands["kube-proxy"] = ["minik8s", "kube-proxy", "--node-name", name,
                                  "--kubeconfig", str(data / "config" / "kube-proxy.kubeconfig"),
                                  "--node-ip", ip]
    else:
        print("minik8s-compose: this build has no kube-proxy; Services are not served",
              file=sys.stderr, flush=True)
    return supervise(commands)


def writable_proc_sys() -> None:
    """The kubelet and kube-proxy set sysctls of the node's network namespace (ip_forward,
    route_localnet); an unprivileged container has /proc/sys read-only, so remount it (the
    node has CAP_SYS_ADMIN, and the mount is the container's own)."""
    if not os.access("/proc/sys/net/ipv4/ip_forward", os.W_OK) or \
            "ro" in _mount_options("/proc/sys"):
        subprocess.run(["mount", "-o", "remount,rw", "/proc/sys"], check=False)


def _mount_options(target: str) -> set[str]:
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 3 and fields[1] == target:
                return set(fields[3].split(","))
    return set()


def supervise(commands: dict[str, list[str]]) -> int:
    """Run the children; a signal is passed on to each; the first one to end stops the
    rest. Exit code: 0 after a signal, else the code of the child that ended first."""
    stopping = False
    procs = {name: subprocess.Popen(argv) for name, argv in commands.items()}

    def stop_all(signum: int = signal.SIGTERM, _frame=None) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signum)

    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    first: tuple[str, int] | None = None
    while any(p.poll() is None for p in procs.values()):
        for name, proc in procs.items():
            code = proc.poll()
            if code is not None and first is None:
                first = (name, code)
                if not stopping:
                    print(f"minik8s-compose: {name} exited with code {code}; stopping the node",
                          file=sys.stderr, flush=True)
                    stop_all()
        time.sleep(0.2)
    if first is None:
        first = next(iter((n, p.returncode) for n, p in procs.items()))
    return 0 if stopping and first[1] in (0, -signal.SIGTERM) else (first[1] or 1)


def health(what: str) -> int:
    data = data_dir()
    try:
        if what == "etcd":  # with the API server's client pair: etcd accepts no other
            from minik8s.pki.etcd import EtcdPKI
            etcd_pki = EtcdPKI(data / "pki" / "etcd")
            ctx = ssl.create_default_context(cafile=str(etcd_pki.ca_cert))
            ctx.load_cert_chain(*map(str, etcd_pki.client))
            urllib.request.urlopen("https://127.0.0.1:2379/health", context=ctx,
                                   timeout=3).read()
        elif what == "apiserver":
            ctx = ssl.create_default_context(cafile=str(data / "pki" / "ca.crt"))
            urllib.request.urlopen("https://127.0.0.1:6443/readyz", context=ctx,
                                   timeout=3).read()
        elif what in LEASES:  # healthy once this replica holds its leader Lease
            import asyncio
            from minik8s.client import Client

            async def holder() -> str:
                client = Client.from_kubeconfig(str(data / "config" / f"{what}.kubeconfig"))
                try:
                    lease = await client.get("leases", LEASES[what], "kube-system")
                finally:
                    await client.aclose()
                return (lease.get("spec") or {}).get("holderIdentity") or ""
            if not asyncio.run(holder()).startswith(socket.gethostname() + "_"):
                return 1
        elif what == "node":  # the kubelet's HTTPS server answers
            socket.create_connection((own_ip(), 10250), timeout=3).close()
        else:
            print(f"unknown health check {what!r}", file=sys.stderr)
            return 2
    except Exception as exc:
        print(f"{what} not healthy: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    usage = ("usage: minik8s-compose certs | etcd | apiserver | node NAME | "
             "health etcd|apiserver|scheduler|controller-manager|node")
    if not argv or argv[0] in ("-h", "--help"):
        print(usage + "\n\n" + (__doc__ or ""))
        return 0 if argv else 2
    cmd, args = argv[0], argv[1:]
    if cmd == "certs" and not args:
        return certs()
    if cmd == "etcd" and not args:
        return etcd()
    if cmd == "apiserver" and not args:
        return apiserver()
    if cmd == "node" and len(args) == 1:
        return node(args[0])
    if cmd == "health" and len(args) == 1:
        return health(args[0])
    print(usage, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
