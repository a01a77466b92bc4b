"""The two-tier app of the README's tour on ``minik8s up --nodes 3``, once per kube-proxy
backend: a busybox httpd Deployment behind the Service ``web``, and a client pod that finds
it by DNS name (``web`` through the search list, and ``web.default.svc.cluster.local``) with
``wget``. Applied with ``mkctl apply -f`` as a user would; every answer must come from one of
the web pods, and all of them answer. The client also reaches the API server through the
``kubernetes`` Service (10.96.0.1:443, DNATed or proxied to the host bridge address)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minik8s.cli import local
from e2e_helpers import other_node_1_kubelets

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("iptables") is None,
                       reason="node namespaces and iptables need root"),
]

# The same manifests as in README.md ("Services").
APP = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: minik8s/busybox:1.35
        command: ["sh", "-c", "mkdir -p /www && echo hello from $(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"]
        ports: [{name: http, containerPort: 80}]
        readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 2}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: client, image: minik8s/busybox:1.35, command: ["sleep", "3600"]}
"""


def run(home: Path, prog: str, *args: str, stdin: str | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "MINIK8S_HOME": str(home), "KUBECONFIG": str(home / "kubeconfig")}
    module = {"minik8s": "minik8s.cli.main", "mkctl": "minik8s.cli.mkctl"}[prog]
    return subprocess.run([sys.executable, "-m", module, *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(params=["iptables", "userspace"])
async def cluster(request, tmp_path):
    deadline = time.monotonic() + 900
    while other_node_1_kubelets():  # another local cluster's node-1 would sweep our pods
        if time.monotonic() > deadline:
            pytest.fail("another local cluster with a node-1 kubelet kept running")
        await asyncio.sleep(5)
    out = await asyncio.to_thread(run, tmp_path, "minik8s", "up", "--nodes", "3", "--port",
                                  str(local.free_port()), "--proxy-mode", request.param)
    try:
        assert out.returncode == 0, out.stdout + out.stderr
        yield tmp_path
    finally:
        down = await asyncio.to_thread(run, tmp_path, "minik8s", "down")
        assert down.returncode == 0, down.stdout + down.stderr


async def test_client_finds_web_by_dns_name(cluster):
    home = cluster
    out = run(home, "mkctl", "apply", "-f", "-", stdin=APP)
    assert out.returncode == 0, out.stderr

    async def fetch(url: str, n: int) -> list[str]:
        script = f"for i in $(seq {n}); do wget -qO- -T 3 {url} || echo ERR; done"
        res = await asyncio.to_thread(run, home, "mkctl", "exec", "client", "--", "sh", "-c",
                                      script, timeout=120)
        return [line for line in res.stdout.splitlines() if line.strip()]

    webs: set[str] = set()
    deadline = time.monotonic() + 240
    while True:  # until 3 web pods are ready and each has answered through the name
        listed = run(home, "mkctl", "get", "pods", "-l", "app=web", "-o", "json")
        pods = json.loads(listed.stdout or '{"items": []}')["items"]
        ready = {p["metadata"]["name"] for p in pods if any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (p.get("status") or {}).get("conditions") or [])}
        got = await fetch("http://web/", 12) if len(ready) == 3 else []
        webs |= {line.removeprefix("hello from ") for line in got if line != "ERR"}
        if len(ready) == 3 and got and "ERR" not in got and webs == ready:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"ready web pods {sorted(ready)}, answers {got}")
        await asyncio.sleep(2)
    full = await fetch("http://web.default.svc.cluster.local/", 6)
    assert full and all(line.removeprefix("hello from ") in ready for line in full), full
    # the API server through the `kubernetes` Service (a TCP connect: busybox's TLS client
    # cannot talk to it; the server closes after the client's EOF, and nc exits 0)
    out = run(home, "mkctl", "exec", "client", "--", "sh", "-c",
              "echo | timeout 5 nc kubernetes.default 443; echo rc=$?")
    assert "rc=0" in out.stdout, out.stdout + out.stderr
    out = run(home, "mkctl", "delete", "-f", "-", stdin=APP)
    assert out.returncode == 0, out.stderr
