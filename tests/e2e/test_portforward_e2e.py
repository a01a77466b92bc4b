"""Port forwarding end to end: a real kubelet (in-process, HTTPS on loopback), real Docker,
the real API server relaying ``pods/{name}/portforward``; ``mkctl port-forward``, the real
``kubectl port-forward`` (1.32: SPDY tunnelled in a WebSocket) and the official Python
client's ``portforward`` fetch from busybox httpd pods over the user's loopback, several
connections at once. The kubelet connects inside the pod's network namespace, so a server
bound only to the pod's 127.0.0.1 is reachable too."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import uuid

import pytest

from cluster import free_port
from e2e_helpers import BUSYBOX, ROOT, serving_kubelet, wait_for

pytestmark = pytest.mark.e2e

KUBECTL = shutil.which("kubectl")


@pytest.fixture(scope="module")
async def node(apiserver, busybox_image, tmp_path_factory):
    async with serving_kubelet(apiserver, "pf", tmp_path_factory) as handle:
        yield handle


def httpd(port_arg: str, text: str) -> list[str]:
    return ["sh", "-c", f"mkdir -p /www && echo {text} > /www/index.html && "
                        f"exec httpd -f -p {port_arg} -h /www"]


@pytest.fixture(scope="module")
async def web(node, apiserver):
    """A namespace with pod ``web`` (httpd on :80, port named http), pod ``local``
    (httpd on 127.0.0.1:8081 only) and Service ``websvc`` (8080 -> http)."""
    client = apiserver.client()
    ns = f"pf-{uuid.uuid4().hex[:8]}"
    await client.create("namespaces", {"metadata": {"name": ns}})
    for name, cmd, ports in (
            ("web", httpd("80", "hello-web"), [{"name": "http", "containerPort": 80}]),
            ("local", httpd("127.0.0.1:8081", "hello-local"), [])):
        await client.create("pods", {
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"nodeName": node.name, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "main", "image": BUSYBOX, "command": cmd,
                                     "ports": ports}]}}, ns)
    await client.create("services", {
        "metadata": {"name": "websvc"},
        "spec": {"selector": {"app": "web"},
                 "ports": [{"name": "web", "port": 8080, "targetPort": "http"}]}}, ns)
    for name in ("web", "local"):
        await wait_for(lambda n=name: _running(client, ns, n), 60, f"{name} running")
    yield ns
    await client.aclose()


async def _running(client, ns, name) -> bool:
    p = await client.get("pods", name, ns)
    return (p.get("status") or {}).get("phase") == "Running"


async def fetch(port: int) -> bytes:
    """One HTTP/1.0 GET over loopback; the body ("" when the connection was closed)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    try:
        writer.write(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 20)
    finally:
        writer.close()
    return data.partition(b"\r\n\r\n")[2]


class Forwarder:
    """A port-forward command run in the background, read line by line."""

    def __init__(self, argv: list[str]):
        self.argv = argv
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._tasks: list[asyncio.Task] = []

    async def __aenter__(self) -> "Forwarder":
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, cwd=str(ROOT))
        self._tasks = [asyncio.create_task(self._pump(self.proc.stdout, self.lines)),
                       asyncio.create_task(self._pump(self.proc.stderr, self.errors))]
        return self

    @staticmethod
    async def _pump(stream, sink: list[str]) -> None:
        while line := await stream.readline():
            sink.append(line.decode().rstrip("\n"))

    async def forwarding(self, remote: int, count: int = 1) -> list[int]:
        """Wait for ``Forwarding from 127.0.0.1:LOCAL -> remote``; the local ports."""
        async def ready():
            if self.proc.returncode is not None:
                raise AssertionError(f"exited {self.proc.returncode}: {self.errors}")
            found = [int(m.group(1)) for line in self.lines
                     if (m := re.fullmatch(rf"Forwarding from 127\.0\.0\.1:(\d+) -> {remote}",
                                           line))]
            return found if len(found) >= count else None
        return await wait_for(ready, 30, f"forwarding to {remote}")

    async def __aexit__(self, *exc) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def mkctl_argv(apiserver, *args: str) -> list[str]:
    return [sys.executable, "-m", "minik8s.cli.mkctl", "--kubeconfig",
            str(apiserver.kubeconfig), *args]


async def mkctl(apiserver, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *mkctl_argv(apiserver, *args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, cwd=str(ROOT))
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


# --- mkctl --------------------------------------------------------------------------------------


async def test_mkctl_pod_concurrent_connections(apiserver, web):
    local = free_port()
    async with Forwarder(mkctl_argv(apiserver, "port-forward", "-n", web, "pod/web",
                                    f"{local}:80")) as pf:
        assert await pf.forwarding(80) == [local]
        assert "Forwarding from [::1]:%d -> 80" % local in pf.lines or \
            not socket.has_ipv6
        bodies = await asyncio.gather(*(fetch(local) for _ in range(8)))
        assert bodies == [b"hello-web\n"] * 8
        bodies = [await fetch(local) for _ in range(3)]  # and one after another
        assert bodies == [b"hello-web\n"] * 3
        assert pf.lines.count(f"Handling connection for {local}") == 11
        # loopback only by default
        listening = [line for line in pf.lines if line.startswith("Forwarding from")]
        assert listening and all(line.startswith(("Forwarding from 127.0.0.1:",
                                                  "Forwarding from [::1]:"))
                                 for line in listening)


async def test_mkctl_service_and_localhost_only_server(apiserver, web):
    async with Forwarder(mkctl_argv(apiserver, "port-forward", "-n", web, "svc/websvc",
                                    ":8080")) as svc, \
            Forwarder(mkctl_argv(apiserver, "port-forward", "-n", web, "local",
                                 f"{free_port()}:8081")) as local:
        (svc_port,) = await svc.forwarding(80)  # service port 8080 -> targetPort http (80)
        (local_port,) = await local.forwarding(8081)
        got = await asyncio.gather(fetch(svc_port), fetch(svc_port), fetch(local_port),
                                   fetch(local_port))
        assert got == [b"hello-web\n"] * 2 + [b"hello-local\n"] * 2


async def test_mkctl_nothing_listening_closes_that_connection_and_goes_on(apiserver, web):
    good, bad = free_port(), free_port()
    async with Forwarder(mkctl_argv(apiserver, "port-forward", "-n", web, "web",
                                    f"{good}:80", f"{bad}:81")) as pf:
        await pf.forwarding(81)
        assert await fetch(bad) == b""  # closed without an answer
        await wait_for(lambda: _async(any("an error occurred forwarding" in e
                                          for e in pf.errors)), 10, "error printed")
        line = next(e for e in pf.errors if "an error occurred forwarding" in e)
        assert f"{bad} -> 81" in line and "connection refused" in line
        assert await fetch(good) == b"hello-web\n"  # still forwarding
        assert pf.proc.returncode is None


async def _async(value):
    return value


async def test_mkctl_clean_errors(apiserver, node, web):
    code, _, err = await mkctl(apiserver, "port-forward", "-n", web, "nope", "8080:80")
    assert code == 1 and err.strip() == 'Error from server (NotFound): pods "nope" not found'
    code, _, err = await mkctl(apiserver, "port-forward", "-n", web, "web")
    assert code == 1 and "TYPE/NAME and list of ports are required" in err
    code, _, err = await mkctl(apiserver, "port-forward", "-n", web, "svc/websvc", "9999")
    assert code == 1 and "Service websvc does not have a service port 9999" in err
    client = apiserver.client()
    try:  # a pod that never starts: its image does not exist here (and is never pulled)
        await client.create("pods", {
            "metadata": {"name": "stuck"},
            "spec": {"nodeName": node.name, "containers": [
                {"name": "c", "image": "minik8s/absent:0.0", "imagePullPolicy": "Never"}]}},
            web)
    finally:
        await client.aclose()
    code, _, err = await mkctl(apiserver, "port-forward", "-n", web, "stuck", "8080:80")
    assert code == 1
    assert "unable to forward port because pod is not running. Current status=Pending" in err


# --- kubectl ------------------------------------------------------------------------------------


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not on PATH")
async def test_kubectl_port_forward(apiserver, web):
    pod_port, svc_port, local_port = free_port(), free_port(), free_port()
    base = [KUBECTL, "--kubeconfig", str(apiserver.kubeconfig), "-n", web, "port-forward"]
    async with Forwarder(base + ["pod/web", f"{pod_port}:80"]) as pod, \
            Forwarder(base + ["svc/websvc", f"{svc_port}:8080"]) as svc, \
            Forwarder(base + ["local", f"{local_port}:8081"]) as local:
        await pod.forwarding(80)
        await svc.forwarding(80)
        await local.forwarding(8081)
        bodies = await asyncio.gather(*(fetch(pod_port) for _ in range(6)),
                                      *(fetch(svc_port) for _ in range(3)),
                                      *(fetch(local_port) for _ in range(3)))
        assert bodies == [b"hello-web\n"] * 9 + [b"hello-local\n"] * 3, \
            (pod.errors, svc.errors, local.errors)
        assert pod.proc.returncode is None and not pod.errors


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not on PATH")
async def test_kubectl_port_with_nothing_listening_reports_the_error(apiserver, web):
    port = free_port()
    base = [KUBECTL, "--kubeconfig", str(apiserver.kubeconfig), "-n", web, "port-forward"]
    async with Forwarder(base + ["web", f"{port}:81"]) as pf:
        await pf.forwarding(81)
        assert await fetch(port) == b""
        await wait_for(lambda: _async(any("connection refused" in e for e in pf.errors)), 15,
                       "kubectl reported the error")
        # kubectl 1.32 drops the tunnel after such an error and exits
        await wait_for(lambda: _async(pf.proc.returncode is not None), 15, "kubectl exits")


# --- the Python client --------------------------------------------------------------------------


def _python_portforward(kubeconfig: str, ns: str) -> bytes:
    from kubernetes import client as k8s, config as k8s_config
    from kubernetes.stream import portforward
    api = k8s.CoreV1Api(k8s_config.new_client_from_config(config_file=kubeconfig))
    pf = portforward(api.connect_get_namespaced_pod_portforward, "web", ns, ports="80")
    try:
        sock = pf.socket(80)
        sock.setblocking(True)
        sock.sendall(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        sock.settimeout(20)
        while chunk := sock.recv(4096):
            data += chunk
        sock.close()
        assert pf.error(80) is None, pf.error(80)
        return data.partition(b"\r\n\r\n")[2]
    finally:
        with contextlib.suppress(Exception):
            pf.close()


async def test_python_client_portforward(apiserver, web):
    body = await asyncio.to_thread(_python_portforward, str(apiserver.kubeconfig), web)
    assert body == b"hello-web\n"
