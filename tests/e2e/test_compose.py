"""The compose deployment exactly as the README says: the image build script, then
``docker-compose -f deploy/compose.yaml up -d`` (Debian's compose v1; a project name, data
folder and API port of its own so it never meets another cluster). Two nodes become Ready,
``mkctl --kubeconfig <admin.kubeconfig>`` works from the host, a Deployment spreads over both
worker containers, its pods reach each other across them, a Service's name answers through
the node's DNS and kube-proxy, and a pod cannot reach anything outside the cluster.
``down`` leaves no container behind: neither compose's nor any pod's (the kubelets drain on
SIGTERM).

Containers are selected by labels only (compose's ``com.docker.compose.*`` and the kubelet's
cluster label), never by name."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from cluster import free_port
from e2e_helpers import BUSYBOX, ROOT, wait_for
from kubelet.runtime.base import LABEL_CLUSTER
from minik8s.cli.main import COMPONENTS
from minik8s.client import Client
from minik8s.pki import cluster_id

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="debootstrap and the nodes need root"),
]

COMPOSE_FILE = ROOT / "deploy" / "compose.yaml"


def run(*cmd: str, timeout: float = 120, env: dict | None = None,
        check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=str(ROOT))
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def containers(label: str) -> list[str]:
    out = run("docker", "ps", "-aq", "--no-trunc", "--filter", f"label={label}").stdout
    return out.split()


def ready(node: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


@pytest.fixture(scope="module")
def images() -> None:
    for tool in ("docker-compose", "debootstrap"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (bash deploy/install.sh installs it)")
    run("bash", str(ROOT / "deploy/images/build.sh"), timeout=1800)


async def test_compose_cluster_up_deployment_service_down(images, tmp_path):
    project = f"mk8stest{uuid.uuid4().hex[:8]}"
    data = tmp_path / "data"
    data.mkdir()
    env = {**os.environ, "MINIK8S_COMPOSE_DATA": str(data),
           "MINIK8S_API_PORT": str(free_port())}
    compose = ["docker-compose", "-f", str(COMPOSE_FILE), "-p", project]
    kubeconfig = data / "admin.kubeconfig"
    mkctl = [sys.executable, "-m", "minik8s.cli.mkctl", "--kubeconfig", str(kubeconfig)]
    client: Client | None = None
    cid = ""
    try:
        started = time.monotonic()
        up = run(*compose, "up", "-d", env=env, timeout=600)
        up_seconds = time.monotonic() - started
        assert f"admin kubeconfig: {kubeconfig}" in run(*compose, "logs", "certs",
                                                         env=env).stdout, up.stderr
        cid = cluster_id((data / "pki" / "ca.crt").read_bytes())
        client = Client.from_kubeconfig(str(kubeconfig))

        async def two_ready_nodes() -> bool:
            nodes = (await client.list("nodes"))["items"]
            return sorted(n["metadata"]["name"] for n in nodes if ready(n)) == \
                ["node-1", "node-2"]
        await wait_for(two_ready_nodes, 120, "two Ready nodes")
        names = run(*mkctl, "get", "nodes", "-o", "name").stdout.split()
        assert names == ["node/node-1", "node/node-2"]

        manifest = tmp_path / "web.yaml"
        manifest.write_text(WEB.replace("BUSYBOX", BUSYBOX))
        run(*mkctl, "apply", "-f", str(manifest))

        async def deployment_available() -> bool:
            d = await client.get("deployments", "web", "default")
            return (d.get("status") or {}).get("availableReplicas") == 2
        await wait_for(deployment_available, 180, "Deployment web available")
        running_seconds = time.monotonic() - started
        print(f"\ncompose: up -d returned after {up_seconds:.1f} s; Deployment with 2 "
              f"Running, Ready pods {running_seconds:.1f} s after up -d started")

        pods = (await client.list("pods", "default", label_selector="app=web"))["items"]
        assert sorted(p["spec"]["nodeName"] for p in pods) == ["node-1", "node-2"]
        ips = {p["spec"]["nodeName"]: p["status"]["podIP"] for p in pods}

        async def probe_running() -> bool:
            pod = await client.get("pods", "probe", "default")
            return (pod.get("status") or {}).get("phase") == "Running"
        await wait_for(probe_running, 60, "pod probe Running")

        def fetch(url: str, check: bool = True) -> subprocess.CompletedProcess:
            return run(*mkctl, "exec", "probe", "--", "wget", "-qO-", "-T", "5", url,
                       check=check, timeout=60)
        # pod -> pod on both nodes, one of them across the two worker containers
        for node, ip in ips.items():
            assert fetch(f"http://{ip}/").stdout.startswith("hello from web-"), node
        # a Service by name: the node's DNS (kube-proxy) and its ClusterIP rules
        if "kube-proxy" in COMPONENTS:
            answers = {fetch("http://web.default.svc.cluster.local/").stdout.strip()
                       for _ in range(8)}
            assert answers and all(a.startswith("hello from web-") for a in answers)
        # nothing outside the cluster is reachable from a pod (dropped on the node)
        assert fetch("http://192.0.2.1/", check=False).returncode != 0
        # etcd speaks mutual TLS only: the API server's pair from etcd's own CA gets in,
        # no certificate (or the cluster CA's admin pair) does not
        etcd_id = run("docker", "ps", "-q", "--filter", f"label=com.docker.compose.project="
                      f"{project}", "--filter", "label=com.docker.compose.service=etcd").stdout
        etcd_ip = run("docker", "inspect", "-f",
                      "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                      etcd_id.strip()).stdout.strip()
        etcd_pki = data / "pki" / "etcd"
        assert etcd_health(etcd_ip, etcd_pki / "ca.crt",
                           (etcd_pki / "apiserver-etcd-client.crt",
                            etcd_pki / "apiserver-etcd-client.key")) == "ok"
        assert etcd_health(etcd_ip, etcd_pki / "ca.crt", None) == "refused"
        assert etcd_health(etcd_ip, etcd_pki / "ca.crt",
                           (data / "pki" / "admin.crt", data / "pki" / "admin.key")) == "refused"
        # the kubelets label every pod container with the cluster's identity
        assert len(containers(f"{LABEL_CLUSTER}={cid}")) >= 6
    finally:
        if client is not None:
            await client.aclose()
        down = run(*compose, "down", env=env, timeout=300, check=False)
        left_compose = containers(f"com.docker.compose.project={project}")
        left_pods = containers(f"{LABEL_CLUSTER}={cid}") if cid else []
        for c in left_compose + left_pods:  # never leave anything behind, even on failure
            run("docker", "rm", "-f", c, check=False)
    assert down.returncode == 0, down.stderr
    assert left_compose == [], "compose containers left after down"
    assert left_pods == [], "pod containers left after down (the kubelets did not drain)"


def etcd_health(ip: str, ca, pair) -> str:
    """``ok`` when etcd's /health answers over TLS with this client pair, else ``refused``."""
    import ssl
    import urllib.request
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = False  # the address is the container's, not in the certificate
    if pair:
        ctx.load_cert_chain(*map(str, pair))
    try:
        urllib.request.urlopen(f"https://{ip}:2379/health", context=ctx, timeout=5).read()
        return "ok"
    except (OSError, ssl.SSLError):
        return "refused"


WEB = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 2
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {matchLabels: {app: web}}
            topologyKey: kubernetes.io/hostname
      containers:
      - name: web
        image: BUSYBOX
        command: ["sh", "-c", "echo hello from $(hostname) > /tmp/index.html; httpd -f -p 80 -h /tmp"]
        readinessProbe: {httpGet: {path: /, port: 80}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: probe}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: probe
    image: BUSYBOX
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
"""
