"""The kubelet server without Docker or TLS: the channel protocol's framing and Status
messages, subprotocol negotiation, exec and logs over the fake runtime, the authentication
rules, and the stats summary from a fake cgroup tree."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from kubelet.runtime.base import (APP, LABEL_CONTAINER_NAME, LABEL_KIND, LABEL_NODE,
                                  LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID, SANDBOX,
                                  ContainerConfig, ExecResult)
from kubelet.runtime.fake import FakeRuntime
from kubelet.server import (V4, V5, Authn, KubeletServer, choose_protocol, error_payload,
                            exit_status, frame, parse_frame, success_status)
from kubelet.stats import CgroupReader, StatsProvider

IMAGE = "minik8s/busybox:1.35"


# --- framing and status ---------------------------------------------------------------------


def test_frames_carry_the_channel_byte_first():
    assert frame(1, b"hi") == b"\x01hi"
    assert parse_frame(b"\x00data") == (0, b"data")
    assert parse_frame("\x00text") == (0, b"text")  # the Python client sends text frames
    assert parse_frame(b"") is None
    assert parse_frame(bytes([255, 0])) == (255, b"\x00")  # v5 close of stdin


def test_protocol_negotiation_follows_the_clients_order():
    assert choose_protocol([V5, V4]) == V5
    assert choose_protocol(["v6.channel.k8s.io", V4, V5]) == V4
    assert choose_protocol(["base64.channel.k8s.io"]) is None
    assert choose_protocol([]) is None


def test_status_messages_as_kubectl_reads_them():
    assert exit_status(0, ["true"]) == {"metadata": {}, "status": "Success"} == success_status()
    failed = exit_status(3, ["sh", "-c", "exit 3"])
    assert failed["status"] == "Failure" and failed["reason"] == "NonZeroExitCode"
    assert failed["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    assert "exit code 3" in failed["message"]
    assert json.loads(error_payload(V5, failed)) == failed
    assert error_payload("channel.k8s.io", success_status()) == b""
    assert b"exit code 3" in error_payload("channel.k8s.io", failed)


# --- the app over the fake runtime ------------------------------------------------------------


async def _pod(rt: FakeRuntime, name="web", container="main", attempt=0, uid="u1") -> str:
    labels = {LABEL_NODE: "n1", LABEL_POD_NAMESPACE: "default", LABEL_POD_NAME: name,
              LABEL_POD_UID: uid, LABEL_CONTAINER_NAME: container, LABEL_KIND: APP,
              "io.minik8s.container.attempt": str(attempt)}
    cid = await rt.create(ContainerConfig(name=f"{name}-{container}-{attempt}", image=IMAGE,
                                          labels=labels))
    await rt.start(cid)
    return cid


def _server(rt: FakeRuntime) -> KubeletServer:
    return KubeletServer("n1", rt, stats=None)


def _messages(ws) -> list[tuple[int, bytes]]:
    out = []
    while True:
        msg = ws.receive()
        if msg["type"] == "websocket.close":
            return out
        data = msg.get("bytes") or msg.get("text", "").encode()
        out.append((data[0], data[1:]))


async def test_exec_relays_output_and_the_exit_status():
    rt = FakeRuntime({IMAGE: "sha256:1"})
    await _pod(rt)
    rt.exec_handler = lambda c, cmd: ExecResult(7, b"out\n")
    with TestClient(_server(rt).app) as tc:
        with tc.websocket_connect("/exec/default/web/main?command=sh&command=-c&command=x"
                                  "&stdout=true&stderr=True", subprotocols=[V5, V4]) as ws:
            assert ws.accepted_subprotocol == V5
            msgs = _messages(ws)
    assert msgs[0] == (1, b"out\n")
    channel, payload = msgs[-1]
    status = json.loads(payload)
    assert channel == 3 and status["details"]["causes"][0]["message"] == "7"


async def test_exec_stdin_and_v5_close():
    rt = FakeRuntime({IMAGE: "sha256:1"})
    await _pod(rt)
    with TestClient(_server(rt).app) as tc:
        with tc.websocket_connect("/exec/default/web/main?command=cat&stdin=true&stdout=true",
                                  subprotocols=[V5]) as ws:
            ws.send_bytes(b"\x00hello")
            assert ws.receive_bytes() == b"\x01hello"
            ws.send_bytes(bytes([255, 0]))
            msgs = _messages(ws)
    assert msgs == [(3, json.dumps(success_status(), separators=(",", ":")).encode())]


async def test_exec_in_a_missing_container_reports_on_the_error_channel():
    rt = FakeRuntime({IMAGE: "sha256:1"})
    with TestClient(_server(rt).app) as tc:
        with tc.websocket_connect("/exec/default/nope/main?command=ls&stdout=true",
                                  subprotocols=[V4]) as ws:
            msgs = _messages(ws)
    status = json.loads(msgs[-1][1])
    assert msgs[-1][0] == 3 and status["status"] == "Failure"
    assert "waiting to start" in status["message"]


async def test_logs_pick_the_latest_or_the_previous_instance():
    rt = FakeRuntime({IMAGE: "sha256:1"})
    first = await _pod(rt, attempt=0)
    rt.exit(first, 1)
    second = await _pod(rt, attempt=1)
    seen = []

    async def logs(cid, **kw):
        seen.append((cid, kw))
        yield f"log of {cid[-1]}\n".encode()
    rt.logs = logs  # type: ignore[method-assign]
    with TestClient(_server(rt).app) as tc:
        r = tc.get("/containerLogs/default/web/main?tailLines=5&timestamps=true")
        assert r.status_code == 200 and r.text == f"log of {second[-1]}\n"
        assert seen[-1] == (second, {"follow": False, "tail": 5, "timestamps": True,
                                     "since": None})
        r = tc.get("/containerLogs/default/web/main?previous=true&limitBytes=3")
        assert r.text == "log"
        assert seen[-1][0] == first
        r = tc.get("/containerLogs/default/other/main")
        assert r.status_code == 400
        assert r.text == 'container "main" in pod "other" is waiting to start: ContainerCreating'


def _with_cert(app, cert):
    async def wrapped(scope, receive, send):
        scope.setdefault("state", {})["peercert"] = cert
        await app(scope, receive, send)
    return wrapped


def _cert(cn, *orgs):
    subject = tuple(((("organizationName", o),) for o in orgs)) + ((("commonName", cn),),)
    return {"subject": subject}


@pytest.mark.parametrize("cert,code", [
    (None, 401),
    (_cert("kube-apiserver-kubelet-client", "system:masters"), 200),
    (_cert("system:node:n1", "system:nodes"), 200),
    (_cert("system:node:n2", "system:nodes"), 403),
    (_cert("jane", "developers"), 403),
])
def test_only_masters_and_the_node_itself_get_in(cert, code):
    app = _with_cert(Authn(_server(FakeRuntime()).app, "n1"), cert)
    with TestClient(app) as tc:
        assert tc.get("/healthz").status_code == code


# --- stats ------------------------------------------------------------------------------------


async def test_stats_summary_from_cgroup_files(tmp_path):
    rt = FakeRuntime({IMAGE: "sha256:1"})
    cid = await _pod(rt)
    sandbox_labels = {LABEL_NODE: "n1", LABEL_POD_NAMESPACE: "default", LABEL_POD_NAME: "web",
                      LABEL_POD_UID: "u1", LABEL_KIND: SANDBOX}
    sid = await rt.create(ContainerConfig(name="web-sandbox", image=IMAGE, labels=sandbox_labels))
    await rt.start(sid)
    usage = {"": 10_000_000_000, cid: 1_000_000_000, sid: 0}

    def write():
        for key, ns in usage.items():
            cg = tmp_path / "cpuacct" / (f"docker/{key}" if key else "")
            cg.mkdir(parents=True, exist_ok=True)
            (cg / "cpuacct.usage").write_text(f"{ns}\n")
            mem = tmp_path / "memory" / (f"docker/{key}" if key else "")
            mem.mkdir(parents=True, exist_ok=True)
            (mem / "memory.usage_in_bytes").write_text("1000000\n")
            (mem / "memory.stat").write_text("total_inactive_file 200000\ntotal_rss 500000\n")
    write()
    now = [100.0]
    stats = StatsProvider("n1", rt, reader=CgroupReader(str(tmp_path)), clock=lambda: now[0])
    first = await stats.summary()  # no earlier sample: a second one 0.25 s later (same values)
    assert first["pods"][0]["cpu"]["usageNanoCores"] == 0
    now[0] += 2.0
    usage[cid] += 1_000_000_000  # half a core over two seconds
    usage[""] += 2_000_000_000
    write()
    summary = await stats.summary()
    [pod] = summary["pods"]
    assert pod["podRef"] == {"name": "web", "namespace": "default", "uid": "u1"}
    [c] = pod["containers"]  # the sandbox counts towards the pod, not as a container
    assert c["name"] == "main"
    assert c["cpu"]["usageNanoCores"] == 500_000_000
    assert c["cpu"]["usageCoreNanoSeconds"] == 2_000_000_000
    assert c["memory"]["workingSetBytes"] == 800_000 and c["memory"]["rssBytes"] == 500_000
    assert pod["memory"]["workingSetBytes"] == 1_600_000
    assert summary["node"]["cpu"]["usageNanoCores"] == 1_000_000_000
    assert summary["node"]["memory"]["workingSetBytes"] == 800_000
