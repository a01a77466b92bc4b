"""Service benchmark: HTTP requests/s and p50/p99 latency through a ClusterIP, with
kube-proxy's iptables backend and with its userspace backend, each beside requests straight
to a pod IP and through Docker's own published port, all measured in the same run.

    python bench/service.py [--duration 10] [--rounds 3] [--connections 8] [--from pod|node]

Starts a throw-away cluster with ``minik8s up --nodes 2 --proxy-mode iptables`` in a
temporary folder, and runs, with ``wrk`` (Debian's package; ``deploy/install.sh`` installs
it), one thread, ``--connections`` connections, ``--duration`` seconds per measurement:

- the server is busybox ``httpd`` (the pods' image, ``minik8s/busybox:1.35``) serving a
  small file. It closes the connection after each response, so every request is a new TCP
  connection: the proxy's costly case (a new conntrack entry and NAT decision, or for the
  userspace proxy an accept, an upstream connect and two copy loops), never amortised over
  keep-alive;
- where wrk runs: in the network namespace of a client pod on node-1 (``nsenter -t <pid of
  the pod's container> -n wrk ...``; the host's wrk binary, the pod's network), one client
  pod per target. A pod is what talks to a ClusterIP, and its traffic is only DNATed.
  ``--from node`` runs wrk in node-1's own namespace (``ip netns exec mk8s-node-1``)
  instead; a node's connection to a ClusterIP is also masqueraded (as Kubernetes does for
  sources outside the cluster CIDR), and with this server, which closes first, that path
  showed SYNs rejected against the server's TIME_WAIT entries (``TcpExtPAWSTimewait``) and
  retried a second later: the figure (about 0.3x) measured those stalls, not the proxy.
  One client pod per target (distinct source addresses) keeps the targets out of each
  other's TIME_WAIT entries as a precaution: Linux picks a TCP timestamp offset per
  source/destination pair, so one pod reaching a server by its pod IP and by a ClusterIP
  would look to it like two clients with different clocks;
- the client namespaces get ``tcp_tw_reuse=1`` and the full ephemeral port range: wrk
  closes first, so its side keeps each connection's TIME_WAIT, and without reuse (which
  Linux grants loopback by default, i.e. the Docker baseline) 28k ports / 60 s cap any
  target near 470 connections/s after a few seconds;
- the server pods request 900m CPU: a pod without a request runs with cpu.shares 2 and
  starves on a busy machine beside the Docker container's default 1024;
- ``pod IP``: straight to the pod ``solo`` (on node-1): the baseline;
- ``ClusterIP, 1 pod``: the Service ``solo`` over that same pod: like for like with the
  baseline, the difference is the proxy alone;
- ``ClusterIP, 3 pods``: the Service ``web`` over a 3-replica Deployment spread over both
  nodes (what a Service is for: busybox httpd forks per connection, and three servers
  spread that work; on a two-core machine that wrk, the servers and the proxy share, more
  pods do not add much capacity);
- ``docker -p``: ``docker run -p 127.0.0.1:PORT:80`` of the same image and command, from
  the host's loopback (Docker's own published-port path).

Then the kube-proxies are stopped (their rules go with them) and started again with
``--proxy-mode userspace`` on the same cluster and the same pods, and every figure is
measured again. The rounds interleave the targets, so a burst of load elsewhere on the
machine hits all of them alike; each figure is the median of ``--rounds``. Ratios are
against the pod-IP figure of the same backend's phase. Everything is removed at the end:
the Docker container (by its name) and the cluster (``down``). The machine's load average
is printed at the start and the end."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CpuMeter, other_node_1_kubelets  # noqa: E402
from minik8s.api.errors import NotFound  # noqa: E402
from minik8s.cli import local  # noqa: E402
from minik8s.client import Client  # noqa: E402

IMAGE = "minik8s/busybox:1.35"
NS = "default"
CLIENT_NODE, CLIENT_NETNS = "node-1", "mk8s-node-1"
CLIENTS = ("pod", "solo", "web")  # one client pod per in-cluster target
BODY = "x" * 64
# A pod without a CPU request gets cpu.shares 2 (BestEffort), and on a busy machine starves
# beside anything at Docker's default of 1024 (the published-port container): the servers
# request 900m (shares 921), and 4 of them fit the 2 + 2 cores of the two nodes.
SERVER_CPU = "900m"
SERVE = f"mkdir -p /www && echo {BODY} > /www/index.html && exec httpd -f -p 80 -h /www"


def sh(*cmd: str, check: bool = True, timeout: float = 120) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {(out.stderr or out.stdout).strip()}")
    return out.stdout


# --- wrk ------------------------------------------------------------------------------------


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> Result:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    if not (rps and p50 and p99):
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    errors = 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        # busybox httpd closes after each response: wrk may count that close as a read error
        # on a connection it reuses; connect errors and timeouts are the failures that count
        errors += int(sock.group(1)) + int(sock.group(4))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += int(non2xx.group(1))
    return Result(float(rps.group(1)), _ms(p50.group(1)), _ms(p99.group(1)), errors)


def in_netns(netns: str | None, cmd: list[str]) -> list[str]:
    """``cmd`` in a node's namespace (``mk8s-node-1``), a pod's (``pid:1234``, by one of
    its containers' PID) or the host's (None)."""
    if netns is None:
        return cmd
    if netns.startswith("pid:"):
        return ["nsenter", "-t", netns[4:], "-n", *cmd]
    return ["ip", "netns", "exec", netns, *cmd]


def wrk(url: str, args: argparse.Namespace, netns: str | None, duration: float | None = None
        ) -> Result:
    cmd = ["wrk", "-t1", f"-c{args.connections}", f"-d{int(duration or args.duration)}s",
           "--timeout", "5s", "--latency", url]
    return parse_wrk(sh(*in_netns(netns, cmd), timeout=(duration or args.duration) + 60))


# --- the cluster side -----------------------------------------------------------------------


def pod_spec(node: str | None = None) -> dict:
    spec: dict = {"terminationGracePeriodSeconds": 1, "containers": [{
        "name": "httpd", "image": IMAGE, "command": ["sh", "-c", SERVE],
        "ports": [{"name": "http", "containerPort": 80}],
        "resources": {"requests": {"cpu": SERVER_CPU}},
        "readinessProbe": {"httpGet": {"path": "/", "port": 80}, "periodSeconds": 1}}]}
    if node:
        spec["nodeName"] = node
    return spec


def service(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
            "spec": {"selector": {"app": name},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}


async def deploy(client: Client, replicas: int) -> dict[str, str]:
    """The pods and Services; the URLs of the targets once every endpoint is in."""
    await client.create("pods", {"apiVersion": "v1", "kind": "Pod",
                                 "metadata": {"name": "solo", "namespace": NS,
                                              "labels": {"app": "solo"}},
                                 "spec": pod_spec(CLIENT_NODE)}, NS)
    for target in CLIENTS:
        await client.create("pods", {"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": f"client-{target}", "namespace": NS}, "spec": {
            "terminationGracePeriodSeconds": 1, "nodeName": CLIENT_NODE, "containers": [{
                "name": "sleep", "image": IMAGE, "command": ["sleep", "36000"]}]}}, NS)
    await client.create("deployments", {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec()}}},
        NS)
    for name in ("solo", "web"):
        await client.create("services", service(name), NS)
    deadline = time.monotonic() + 180
    while True:
        eps = {}
        for name in ("solo", "web"):
            try:
                ep = await client.get("endpoints", name, NS)
            except NotFound:  # not written yet
                ep = {}
            eps[name] = [a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses")
                         or []]
        running = [(await client.get("pods", f"client-{t}", NS)).get("status", {})
                   .get("phase") == "Running" for t in CLIENTS]
        if len(eps["solo"]) == 1 and len(eps["web"]) == replicas and all(running):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"endpoints not ready in time: {eps}")
        await asyncio.sleep(0.5)
    web = await client.list("pods", NS, label_selector="app=web")
    nodes = sorted((p["spec"].get("nodeName") or "?") for p in web["items"])
    ips = {name: (await client.get("services", name, NS))["spec"]["clusterIP"]
           for name in ("solo", "web")}
    return {"pod": f"http://{eps['solo'][0]}/", "solo": f"http://{ips['solo']}/",
            "web": f"http://{ips['web']}/", "web_nodes": ", ".join(nodes)}


async def in_cluster(home: local.Home, replicas: int) -> dict[str, str]:
    client = Client.from_kubeconfig(str(home.kubeconfig))
    try:
        deadline = time.monotonic() + 60
        while True:  # the default ServiceAccount (admission needs it) and the nodes
            try:
                await client.get("serviceaccounts", "default", NS)
                nodes = (await client.list("nodes"))["items"]
                if len(nodes) >= 2 and all((n.get("spec") or {}).get("podCIDR")
                                           for n in nodes):
                    break
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not get ready")
            await asyncio.sleep(0.5)
        return await deploy(client, replicas)
    finally:
        await client.aclose()


def client_netns(args: argparse.Namespace) -> dict[str, str]:
    """Where wrk runs for each in-cluster target."""
    if args.source == "node":
        return {t: CLIENT_NETNS for t in CLIENTS}
    out = {}
    for t in CLIENTS:
        ids = sh("docker", "ps", "-q", "--filter", f"label=io.minik8s.pod.name=client-{t}",
                 "--filter", f"label=io.minik8s.pod.namespace={NS}",
                 "--filter", "label=io.minik8s.kind=app").split()
        if len(ids) != 1:
            raise RuntimeError(f"containers of pod client-{t}: {ids}")
        out[t] = "pid:" + sh("docker", "inspect", "-f", "{{.State.Pid}}", ids[0]).strip()
    return out


CLIENT_SYSCTLS = {"net.ipv4.tcp_tw_reuse": "1", "net.ipv4.ip_local_port_range": "1024 65535"}


def tune_clients(namespaces: set[str]) -> None:
    """wrk closes each connection itself once the answer is in, so its side keeps the
    TIME_WAIT: 28k ephemeral ports / 60 s caps it near 470 new connections/s, unless TIME_WAIT
    ports may be reused, which Linux allows by default on loopback only (where the Docker
    baseline runs). The same allowance in the client namespaces (the cluster's own, thrown
    away with it) keeps all targets on an equal footing."""
    for ns in namespaces:
        for key, value in CLIENT_SYSCTLS.items():
            sh(*in_netns(ns, ["sysctl", "-q", "-w", f"{key}={value}"]))


def reachable(url: str, netns: str | None, timeout: float = 60) -> None:
    """Wait until one GET of ``url`` succeeds (rules synced, listeners up)."""
    probe = in_netns(netns, [sys.executable, "-c", "import urllib.request, sys; "
                             f"urllib.request.urlopen({url!r}, timeout=2).read()"])
    deadline = time.monotonic() + timeout
    while subprocess.run(probe, capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")
        time.sleep(0.3)


def switch_to_userspace(home: local.Home, port: int) -> None:
    """Stop every kube-proxy (SIGTERM removes its rules) and start them again in
    userspace mode on the same cluster."""
    for pidfile in sorted(home.run.glob("kube-proxy-*.pid")):
        local.stop(home, pidfile.stem)
    with open(os.devnull, "w") as quiet:
        stdout, sys.stdout = sys.stdout, quiet
        try:
            local.up(home, nodes=2, port=port, proxy_mode="userspace")
        finally:
            sys.stdout = stdout


# --- the Docker baseline --------------------------------------------------------------------


class DockerBaseline:
    def __init__(self) -> None:
        self.name = f"mk8s-bench-svc-{uuid.uuid4().hex[:8]}"
        self.port = local.free_port()
        self.started = False

    def start(self) -> str:
        sh("docker", "run", "-d", "--pull", "never", "--init", "--name", self.name,
           "-p", f"127.0.0.1:{self.port}:80", IMAGE, "sh", "-c", SERVE)
        self.started = True
        url = f"http://127.0.0.1:{self.port}/"
        reachable(url, None)
        return url

    def close(self) -> None:
        if self.started:
            sh("docker", "rm", "-f", self.name, check=False)


# --- running --------------------------------------------------------------------------------


TARGETS = [  # key, label
    ("pod", "pod IP (baseline)"),
    ("solo", "ClusterIP, 1 pod (the same pod)"),
    ("web", "ClusterIP, {replicas} pods"),
    ("docker", "docker -p 127.0.0.1:PORT:80"),
]


def phase(mode: str, urls: dict[str, str], args: argparse.Namespace,
          proxy_pid: int | None) -> tuple[dict[str, Result], dict[str, float]]:
    where = {**client_netns(args), "docker": None}
    tune_clients({ns for ns in where.values() if ns})
    for key, _ in TARGETS:
        netns = where[key]
        reachable(urls[key], netns)
        wrk(urls[key], args, netns, duration=2)  # warm-up, not counted
    runs: dict[str, list[Result]] = {key: [] for key, _ in TARGETS}
    cpu: dict[str, list[float]] = {}
    for r in range(args.rounds):
        for key, _ in TARGETS:
            netns = where[key]
            meter = CpuMeter({"kube-proxy": proxy_pid}).start() if proxy_pid else None
            res = wrk(urls[key], args, netns)
            if meter is not None:
                used = meter.stop()["kube-proxy"]
                cpu.setdefault(key, []).append(1e6 * used / max(1.0, res.rps * args.duration))
            runs[key].append(res)
            print(f"  {mode:<9} round {r + 1}: {key:<6} {res.rps:8.0f} req/s  p50 "
                  f"{res.p50_ms:6.2f} ms  p99 {res.p99_ms:6.2f} ms  errors {res.errors}",
                  file=sys.stderr)
    med = {key: Result(statistics.median(x.rps for x in rs),
                       statistics.median(x.p50_ms for x in rs),
                       statistics.median(x.p99_ms for x in rs), sum(x.errors for x in rs))
           for key, rs in runs.items()}
    return med, {key: statistics.median(v) for key, v in cpu.items()}


def report(args: argparse.Namespace, urls: dict[str, str],
           phases: dict[str, tuple[dict[str, Result], dict[str, float]]],
           load: tuple[tuple[float, ...], tuple[float, ...]]) -> None:
    print(f"\nservice benchmark: busybox httpd, a new connection per request; wrk -t1 "
          f"-c{args.connections}, {args.duration:.0f} s x {args.rounds} rounds (median)")
    where = (f"node-1's namespace ({CLIENT_NETNS}; masqueraded to ClusterIPs)"
             if args.source == "node" else
             "the namespace of a client pod on node-1 (nsenter -n), one pod per target")
    print(f"ClusterIP and pod IP: wrk in {where}; pod 'solo' on {CLIENT_NODE}; web pods on "
          f"{urls['web_nodes']}")
    print("docker -p: wrk on the host's loopback, to Docker's published port")
    print("client namespaces: " + ", ".join(f"{k}={v}" for k, v in CLIENT_SYSCTLS.items())
          + " (TIME_WAIT reuse, which loopback has by default)")
    print(f"{'backend':<10} {'target':<34} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'errors':>6} {'ratio':>6} {'proxy us/req':>12}")
    for mode, (res, cpu) in phases.items():
        base = res["pod"].rps
        for key, label in TARGETS:
            r = res[key]
            c = f"{cpu[key]:.0f}" if key in cpu and key in ("solo", "web") else ""
            print(f"{mode:<10} {label.format(replicas=args.replicas):<34} {r.rps:>8.0f} "
                  f"{r.p50_ms:>7.2f} {r.p99_ms:>7.2f} {r.errors:>6} {r.rps / base:>6.2f} "
                  f"{c:>12}")
    print("ratio = req/s / pod IP req/s of the same phase; proxy us/req: kube-proxy CPU "
          "(userspace backend only)")
    for mode, target in (("iptables", 0.9), ("userspace", 0.5)):
        if mode in phases:
            res = phases[mode][0]
            print(f"{mode}: ClusterIP 1 pod / pod IP = {res['solo'].rps / res['pod'].rps:.2f}, "
                  f"{args.replicas} pods / pod IP = {res['web'].rps / res['pod'].rps:.2f}  "
                  f"(target >= {target})")
    print(f"load average at start {' '.join(f'{x:.2f}' for x in load[0])}, at the end "
          f"{' '.join(f'{x:.2f}' for x in load[1])} (2 cores)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    p.add_argument("--rounds", type=int, default=3, help="measurements per target and backend")
    p.add_argument("--connections", type=int, default=8,
                   help="wrk connections (default 8: busybox httpd listens with a backlog of "
                        "9; more connects at once overflow it, and each dropped SYN costs "
                        "a 1 s retransmit)")
    p.add_argument("--replicas", type=int, default=3, help="pods of the 'web' Deployment")
    p.add_argument("--from", dest="source", choices=("pod", "node"), default="pod",
                   help="where wrk runs for in-cluster targets (default: client pods)")
    p.add_argument("--modes", default="iptables,userspace",
                   help="backends, in order (default iptables,userspace)")
    p.add_argument("--keep-home", metavar="DIR", help="run the cluster in DIR (kept)")
    p.add_argument("--wait-free", type=float, default=900.0,
                   help="seconds to wait for another cluster's node-1 kubelet to go away")
    args = p.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    if modes not in (["iptables", "userspace"], ["iptables"], ["userspace"]):
        p.error("--modes: iptables,userspace, iptables or userspace")
    if shutil.which("wrk") is None:
        print("error: wrk is not installed (apt-get install wrk, or bash deploy/install.sh)",
              file=sys.stderr)
        return 1
    if os.geteuid() != 0:
        print("error: node namespaces need root", file=sys.stderr)
        return 1
    deadline = time.monotonic() + args.wait_free
    while others := other_node_1_kubelets():
        if time.monotonic() > deadline:
            print(f"error: another cluster's kubelet for node-1 runs (pid {others[0]}): "
                  "run this alone", file=sys.stderr)
            return 1
        print(f"waiting for another cluster's node-1 kubelet (pid {others[0]}) to stop ...",
              file=sys.stderr)
        time.sleep(10)
    load_start = os.getloadavg()
    phases: dict[str, tuple[dict[str, Result], dict[str, float]]] = {}
    baseline = DockerBaseline()
    with tempfile.TemporaryDirectory(prefix="minik8s-bench-svc-") as tmp:
        home = local.Home.at(args.keep_home or tmp)
        port = local.free_port()
        try:
            local.up(home, nodes=2, port=port, proxy_mode=modes[0])
            urls = asyncio.run(in_cluster(home, args.replicas))
            urls["docker"] = baseline.start()
            for i, mode in enumerate(modes):
                if i:
                    switch_to_userspace(home, port)
                pid = local.running_pid(home, "kube-proxy-node-1") \
                    if mode == "userspace" else None
                phases[mode] = phase(mode, urls, args, pid)
        finally:
            try:
                baseline.close()
            finally:
                local.down(home)
    report(args, urls, phases, (load_start, os.getloadavg()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
