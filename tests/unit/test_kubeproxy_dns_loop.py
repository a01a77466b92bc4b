"""kube-proxy's cluster DNS loop: a taken port (or no node address) is logged and retried
with a growing delay, and the server comes up once the port is free; the node address is
``--node-ip`` or the Node's InternalIP, never a guess."""

from __future__ import annotations

import argparse
import asyncio
import socket

import pytest

from kubeproxy.dns import ClusterDNS
from kubeproxy.main import NodeIPUnknown, _node_ip, run_dns
from minik8s.cache.store import Store
from minik8s.client import NotFound


async def test_a_taken_port_is_retried_until_it_is_free():
    held = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    held.bind(("127.0.0.1", 0))
    port = held.getsockname()[1]
    made: list[ClusterDNS] = []
    delays: list[float] = []

    async def make() -> ClusterDNS:
        made.append(ClusterDNS(Store(), Store(), listen="127.0.0.1", port=port))
        return made[-1]

    async def sleep(delay: float) -> None:
        delays.append(delay)
        if len(delays) == 3:
            held.close()  # the other program goes away

    task = asyncio.get_running_loop().create_task(
        run_dns(make, sleep=sleep, first_delay=1, max_delay=3))
    try:
        for _ in range(500):
            if made and made[-1].ready.is_set():
                break
            await asyncio.sleep(0.01)
        assert made[-1].ready.is_set()
        assert len(made) == 4 and delays == [1, 2, 3]
        assert not task.done()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        held.close()


async def test_any_failure_is_retried_and_only_cancel_ends_the_loop():
    calls = 0
    delays: list[float] = []

    async def make():
        nonlocal calls
        calls += 1
        if calls == 1:
            raise NodeIPUnknown("no address")
        raise RuntimeError("boom")

    async def sleep(delay: float) -> None:
        delays.append(delay)
        if len(delays) == 5:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await run_dns(make, sleep=sleep, first_delay=1, max_delay=4)
    assert calls == 5 and delays == [1, 2, 4, 4, 4]


class FakeClient:
    def __init__(self, node: dict | None):
        self.node = node

    async def get(self, ref, name, namespace=None, **_):
        assert (ref, name) == ("nodes", "n1")
        if self.node is None:
            raise NotFound("nodes \"n1\" not found")
        return self.node


def args(node_ip: str = "") -> argparse.Namespace:
    return argparse.Namespace(node_ip=node_ip, node_name="n1")


async def test_node_ip_is_the_flag_or_the_internal_ip_never_a_guess(monkeypatch):
    def no_lookup(*_):
        raise AssertionError("the host name was looked up")
    monkeypatch.setattr(socket, "gethostbyname", no_lookup)
    node = {"status": {"addresses": [{"type": "Hostname", "address": "n1"},
                                     {"type": "InternalIP", "address": "10.200.0.2"}]}}
    assert await _node_ip(FakeClient(node), args("10.9.9.9")) == "10.9.9.9"
    assert await _node_ip(FakeClient(node), args()) == "10.200.0.2"
    with pytest.raises(NodeIPUnknown, match="no InternalIP.*--node-ip"):
        await _node_ip(FakeClient({"status": {"addresses": []}}), args())
    with pytest.raises(NodeIPUnknown, match="not registered.*--node-ip"):
        await _node_ip(FakeClient(None), args())
