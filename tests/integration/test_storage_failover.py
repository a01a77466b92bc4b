"""Storage failing over between etcd members while calls are in flight: every call made
during a switch runs on a connected member (never on a client whose channel is not open yet
or was torn down), reads are resent, writes are resent only when they never left and
otherwise end in a 503.

The first member is a TCP forwarder to the real etcd that the test stops, closing every
connection it carries, which is what a member going away looks like to the API server."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from apiserver.storage import KeyExists, Storage
from cluster import free_port
from minik8s.api.errors import ServiceUnavailable

pytestmark = pytest.mark.integration


class Forwarder:
    """A loopback TCP proxy to ``port`` that can be stopped with its connections."""

    def __init__(self, port: int):
        self.target = port
        self.port = free_port()
        self.server: asyncio.AbstractServer | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self.writers |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()
        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in list(self.writers):
            w.transport.abort()
        await self.server.wait_closed()


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


async def test_reads_and_a_never_sent_write_go_to_the_next_member(etcd):
    """The first member refuses connections: the switch happens on the first call, and the
    calls made right after it (many at once) run on the next member."""
    storage = Storage([dead_url(), etcd.url], timeout=5)
    await storage.start()
    key = f"/registry/failover/{uuid.uuid4().hex}"
    try:
        # a write that was refused a connection never left: resent, applied once
        created = await storage.create(key, {"metadata": {"name": "a"}, "data": {"k": "v"}})
        assert storage.current_endpoint == etcd.url
        got = await asyncio.gather(*(storage.get(key) for _ in range(50)))
        assert {g.revision for g in got} == {created.revision}
        with pytest.raises(KeyExists):
            await storage.create(key, {"metadata": {"name": "a"}})
    finally:
        await storage.close()


async def test_concurrent_reads_during_a_switch(etcd):
    """Many reads queued when the first member dies: none fails, none meets a client
    whose stubs are not there."""
    storage = Storage([dead_url(), etcd.url], timeout=5)
    await storage.start()
    key = f"/registry/failover/{uuid.uuid4().hex}"
    try:
        results = await asyncio.gather(*(storage.get(key) for _ in range(100)),
                                       storage.list("/registry/failover/"),
                                       storage.count("/registry/failover/"),
                                       storage.current_revision(), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)
                  and type(r).__name__ != "KeyMissing"]
        assert errors == []
    finally:
        await storage.close()


async def test_member_lost_under_load(etcd):
    """Reads and writes keep flowing while the member in use goes away: every read
    succeeds, every write either succeeds or answers 503 (it may have left: the caller
    retries), nothing else; and the store works on the next member afterwards."""
    fwd = Forwarder(etcd.port)
    await fwd.start()
    storage = Storage([fwd.url, etcd.url], timeout=5)
    await storage.start()
    prefix = f"/registry/failover/{uuid.uuid4().hex}/"
    unexpected: list[BaseException] = []
    written: set[str] = set()
    stop = asyncio.Event()

    async def reader() -> int:
        n = 0
        while not stop.is_set():
            try:
                await storage.list(prefix)
                n += 1
            except BaseException as exc:  # noqa: BLE001 - any error is a failure here
                unexpected.append(exc)
                return n
        return n

    async def writer(w: int) -> int:
        n = 0
        while not stop.is_set():
            key = f"{prefix}{w}-{n}"
            try:
                await storage.create(key, {"metadata": {"name": key}})
                written.add(key)
            except ServiceUnavailable:
                pass
            except BaseException as exc:  # noqa: BLE001
                unexpected.append(exc)
                return n
            n += 1
        return n

    try:
        start = await storage.current_revision()
        tasks = [asyncio.create_task(reader()) for _ in range(8)]
        tasks += [asyncio.create_task(writer(w)) for w in range(4)]
        await asyncio.sleep(0.5)
        await fwd.stop()
        await asyncio.sleep(1.0)
        stop.set()
        counts = await asyncio.gather(*tasks)
        assert unexpected == [], [repr(e) for e in unexpected]
        assert storage.current_endpoint == etcd.url
        assert all(counts)
        items, _, _, _ = await storage.list(prefix)
        assert written <= {s.obj["metadata"]["name"] for s in items}
        # a watch opened after the switch sees what was written before and after it
        seen: set[str] = set()
        await storage.create(f"{prefix}last", {"metadata": {"name": f"{prefix}last"}})

        async def watch() -> None:
            async for ev in storage.watch(prefix, start):
                seen.add(ev.key)
                if ev.key == f"{prefix}last":
                    return
        await asyncio.wait_for(watch(), 30)
        assert written | {f"{prefix}last"} <= seen
    finally:
        stop.set()
        await storage.close()
        if fwd.server is not None and fwd.server.is_serving():
            await fwd.stop()
