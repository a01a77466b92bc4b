"""Watch: the chunked newline-terminated event stream, resuming from a version, the initial
synthetic ADDED events, selectors (an object leaving the selection is DELETED), bookmarks,
``timeoutSeconds``, 410 Expired after compaction, fan-out to many watchers, and clients that
go away mid-stream."""

from __future__ import annotations

import asyncio
import json
import uuid

import aetcd
import httpx
from aetcd import rpc
import pytest

from minik8s.api.errors import Gone
from minik8s.client.kubeconfig import load_kubeconfig

from cluster import start_apiserver, stop_process

# Generous bounds so a stuck stream fails the test instead of hanging it; never asserted on.
EVENT_WAIT = 20


def _http(kubeconfig, **kw) -> httpx.AsyncClient:
    cfg = load_kubeconfig(str(kubeconfig))
    return httpx.AsyncClient(base_url=cfg.server, verify=cfg.ssl_context(),
                             timeout=httpx.Timeout(60, connect=10), **kw)


@pytest.fixture
async def http(apiserver):
    async with _http(apiserver.kubeconfig, limits=httpx.Limits(max_connections=200)) as c:
        yield c


class Watch:
    """One raw watch stream; checks that every event is one newline-terminated JSON line."""

    def __init__(self, http: httpx.AsyncClient, path: str, **params):
        self.http, self.path = http, path
        self.params = {"watch": "true", **{k: str(v) for k, v in params.items()}}
        self._buf = b""

    async def __aenter__(self) -> "Watch":
        self._cm = self.http.stream("GET", self.path, params=self.params)
        self.resp = await self._cm.__aenter__()
        self._chunks = self.resp.aiter_bytes()
        return self

    async def __aexit__(self, *exc) -> None:
        await self._cm.__aexit__(*exc)

    async def _line(self) -> bytes | None:
        while b"\n" not in self._buf:
            try:
                self._buf += await self._chunks.__anext__()
            except StopAsyncIteration:
                assert self._buf == b"", f"unterminated event: {self._buf!r}"
                return None
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    async def next(self, *, skip_bookmarks: bool = True) -> dict | None:
        """The next event (None at the end of the stream)."""
        while True:
            line = await asyncio.wait_for(self._line(), EVENT_WAIT)
            if line is None:
                return None
            event = json.loads(line)
            assert set(event) == {"type", "object"}
            if skip_bookmarks and event["type"] == "BOOKMARK":
                continue
            return event

    async def take(self, n: int) -> list[tuple[str, str]]:
        out = []
        for _ in range(n):
            ev = await self.next()
            assert ev is not None, f"stream ended after {out}"
            out.append((ev["type"], ev["object"]["metadata"]["name"]))
        return out

    async def rest(self) -> list[dict]:
        """Every remaining event until the server ends the stream."""
        out = []
        while (ev := await self.next(skip_bookmarks=False)) is not None:
            out.append(ev)
        return out


def cms(ns: str) -> str:
    return f"/api/v1/namespaces/{ns}/configmaps"


def rv(obj: dict) -> int:
    return int(obj["metadata"]["resourceVersion"])


# --- the stream ----------------------------------------------------------------------------


async def test_added_modified_deleted_stream(http, client, ns):
    start = await client.list("configmaps", ns)
    async with Watch(http, cms(ns), resourceVersion=start["metadata"]["resourceVersion"]) as w:
        assert w.resp.status_code == 200
        assert w.resp.headers["content-type"] == "application/json"
        assert w.resp.headers["transfer-encoding"] == "chunked"
        created = await client.create("configmaps", {"metadata": {"name": "w"},
                                                     "data": {"v": "1"}}, ns)
        modified = await client.patch("configmaps", "w", {"data": {"v": "2"}}, ns)
        await client.delete("configmaps", "w", ns)

        ev = await w.next()
        assert ev["type"] == "ADDED" and ev["object"] == created
        ev = await w.next()
        assert ev["type"] == "MODIFIED" and ev["object"] == modified
        ev = await w.next()
        assert ev["type"] == "DELETED"
        assert ev["object"]["kind"] == "ConfigMap" and ev["object"]["apiVersion"] == "v1"
        assert ev["object"]["metadata"]["name"] == "w"
        assert ev["object"]["data"] == {"v": "2"}
        assert rv(ev["object"]) > rv(modified)


async def test_resume_from_resource_version_sees_only_later_events(http, client, ns):
    a = await client.create("configmaps", {"metadata": {"name": "a"}}, ns)
    a2 = await client.patch("configmaps", "a", {"data": {"x": "1"}}, ns)
    b = await client.create("configmaps", {"metadata": {"name": "b"}}, ns)
    async with Watch(http, cms(ns), resourceVersion=rv(a)) as w:
        ev = await w.next()
        assert (ev["type"], ev["object"]) == ("MODIFIED", a2)
        ev = await w.next()
        assert (ev["type"], ev["object"]) == ("ADDED", b)
        marker = await client.create("configmaps", {"metadata": {"name": "marker"}}, ns)
        ev = await w.next()
        assert (ev["type"], ev["object"]) == ("ADDED", marker)
    async with Watch(http, cms(ns), resourceVersion=rv(marker)) as w:
        await client.delete("configmaps", "a", ns)
        assert await w.take(1) == [("DELETED", "a")]


async def test_watch_without_version_starts_with_synthetic_added(http, client, ns):
    for name in ("x", "y", "z"):
        await client.create("configmaps", {"metadata": {"name": name}}, ns)
    await client.patch("configmaps", "y", {"data": {"k": "v"}}, ns)
    current = {i["metadata"]["name"]: i for i in (await client.list("configmaps", ns))["items"]}
    async with Watch(http, cms(ns)) as w:
        initial = [await w.next() for _ in range(3)]
        assert [e["type"] for e in initial] == ["ADDED"] * 3
        assert {e["object"]["metadata"]["name"]: e["object"] for e in initial} == current
        await client.delete("configmaps", "x", ns)
        assert await w.take(1) == [("DELETED", "x")]
    # resourceVersion=0 means the same.
    async with Watch(http, cms(ns), resourceVersion="0") as w:
        assert sorted(await w.take(2)) == [("ADDED", "y"), ("ADDED", "z")]


async def test_watch_one_object_by_name(http, client, ns):
    await client.create("configmaps", {"metadata": {"name": "one"}}, ns)
    await client.create("configmaps", {"metadata": {"name": "two"}}, ns)
    async with Watch(http, f"{cms(ns)}/one") as w:
        assert await w.take(1) == [("ADDED", "one")]
        await client.patch("configmaps", "two", {"data": {"a": "b"}}, ns)
        await client.patch("configmaps", "one", {"data": {"a": "b"}}, ns)
        assert await w.take(1) == [("MODIFIED", "one")]


async def test_watch_across_namespaces(http, client):
    a, b = f"wa-{uuid.uuid4().hex[:6]}", f"wb-{uuid.uuid4().hex[:6]}"
    for n in (a, b):
        await client.create("namespaces", {"metadata": {"name": n}})
    label = uuid.uuid4().hex[:8]
    start = await client.list("configmaps", all_namespaces=True)
    async with Watch(http, "/api/v1/configmaps", labelSelector=f"w={label}",
                     resourceVersion=start["metadata"]["resourceVersion"]) as w:
        for n in (a, b):
            await client.create("configmaps", {"metadata": {"name": "c", "labels": {"w": label}}},
                                n)
        evs = [await w.next() for _ in range(2)]
        assert [(e["type"], e["object"]["metadata"]["namespace"]) for e in evs] == \
            [("ADDED", a), ("ADDED", b)]


# --- selectors -----------------------------------------------------------------------------


async def test_label_selector_watch(http, client, ns):
    await client.create("configmaps", {"metadata": {"name": "pre", "labels": {"app": "web"}}}, ns)
    async with Watch(http, cms(ns), labelSelector="app=web") as w:
        assert await w.take(1) == [("ADDED", "pre")]
        await client.create("configmaps", {"metadata": {"name": "other",
                                                        "labels": {"app": "db"}}}, ns)
        await client.create("configmaps", {"metadata": {"name": "m",
                                                        "labels": {"app": "web"}}}, ns)
        assert await w.take(1) == [("ADDED", "m")]
        # Leaving the selection is a DELETED, entering it an ADDED.
        out = await client.patch("configmaps", "m", {"metadata": {"labels": {"app": "db"}}}, ns)
        ev = await w.next()
        assert ev["type"] == "DELETED" and ev["object"] == out
        await client.patch("configmaps", "other", {"metadata": {"labels": {"app": "db",
                                                                           "x": "1"}}}, ns)
        await client.patch("configmaps", "m", {"metadata": {"labels": {"app": "web"}}}, ns)
        assert await w.take(1) == [("ADDED", "m")]
        await client.patch("configmaps", "m", {"data": {"a": "b"}}, ns)
        assert await w.take(1) == [("MODIFIED", "m")]
        await client.delete("configmaps", "other", ns)
        await client.delete("configmaps", "m", ns)
        assert await w.take(1) == [("DELETED", "m")]


async def test_set_based_selector_watch(http, client, ns):
    async with Watch(http, cms(ns), labelSelector="tier in (a,b),!skip",
                     resourceVersion=(await client.list("configmaps", ns))["metadata"][
                         "resourceVersion"]) as w:
        await client.create("configmaps", {"metadata": {"name": "c1", "labels": {"tier": "c"}}},
                            ns)
        await client.create("configmaps", {"metadata": {"name": "s1", "labels": {
            "tier": "a", "skip": "y"}}}, ns)
        await client.create("configmaps", {"metadata": {"name": "b1", "labels": {"tier": "b"}}},
                            ns)
        assert await w.take(1) == [("ADDED", "b1")]


async def test_field_selector_watch_on_node_name(http, client, ns):
    async with Watch(http, f"/api/v1/namespaces/{ns}/pods",
                     fieldSelector="spec.nodeName=node-w") as w:
        await client.create("pods", {"metadata": {"name": "p"},
                                     "spec": {"containers": [{"name": "c", "image": "i"}]}}, ns)
        await client.create("pods", {"metadata": {"name": "q"},
                                     "spec": {"containers": [{"name": "c", "image": "i"}]}}, ns)
        await client.create("pods", {"metadata": {"name": "p"}, "target": {"name": "node-w"}},
                            ns, subresource="binding", name="p")
        ev = await w.next()
        assert ev["type"] == "ADDED" and ev["object"]["spec"]["nodeName"] == "node-w"
        await client.delete("pods", "p", ns)
        ev = await w.next()
        assert ev["type"] == "MODIFIED" and ev["object"]["metadata"]["deletionTimestamp"]
        await client.delete("pods", "p", ns, grace_period_seconds=0)
        assert await w.take(1) == [("DELETED", "p")]


async def test_field_selector_watch_on_phase(http, client, ns):
    await client.create("pods", {"metadata": {"name": "r"},
                                 "spec": {"containers": [{"name": "c", "image": "i"}]}}, ns)
    async with Watch(http, f"/api/v1/namespaces/{ns}/pods",
                     fieldSelector="status.phase=Pending") as w:
        assert await w.take(1) == [("ADDED", "r")]
        await client.patch("pods", "r", {"status": {"phase": "Running"}}, ns,
                           subresource="status")
        ev = await w.next()
        assert ev["type"] == "DELETED" and ev["object"]["status"]["phase"] == "Running"


# --- bookmarks and timeouts ----------------------------------------------------------------


async def test_bookmarks(http, client, ns):
    obj = await client.create("configmaps", {"metadata": {"name": "bm"}}, ns)
    async with Watch(http, cms(ns), resourceVersion=rv(obj), allowWatchBookmarks="true") as w:
        ev = await w.next(skip_bookmarks=False)  # the server sends one every 5 s
        assert ev["type"] == "BOOKMARK"
        assert ev["object"]["kind"] == "ConfigMap" and ev["object"]["apiVersion"] == "v1"
        assert rv(ev["object"]) >= rv(obj)
        assert set(ev["object"]["metadata"]) == {"resourceVersion"}


async def test_no_bookmarks_unless_asked(http, client, ns):
    obj = await client.create("configmaps", {"metadata": {"name": "nb"}}, ns)
    async with Watch(http, cms(ns), resourceVersion=rv(obj), timeoutSeconds=7) as w:
        # Long enough for the 5 s bookmark tick to pass.
        assert await w.rest() == []


async def test_timeout_seconds_ends_the_stream(http, client, ns):
    await client.create("configmaps", {"metadata": {"name": "t"}}, ns)
    async with Watch(http, cms(ns), timeoutSeconds=1) as w:
        events = await w.rest()
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "t")]


async def test_client_watch_helper(client, ns):
    """The minik8s client's watch over the same stream, ended by timeoutSeconds."""
    obj = await client.create("configmaps", {"metadata": {"name": "h"}}, ns)
    seen = []
    async for ev in client.watch("configmaps", ns, resource_version="0", timeout_seconds=1,
                                 allow_bookmarks=False):
        seen.append((ev["type"], ev["object"]["metadata"]["name"]))
    assert seen == [("ADDED", "h")]
    assert obj["metadata"]["name"] == "h"


# --- 410 Expired ---------------------------------------------------------------------------


async def _compacted_at(etcd_port: int, revision: int) -> None:
    c = aetcd.Client(host="127.0.0.1", port=etcd_port)
    try:
        await c.compact(revision)
    finally:
        await c.close()


async def test_watch_from_compacted_version_is_410(tmp_path, etcd, apiserver, client, ns):
    old = await client.create("configmaps", {"metadata": {"name": "old"}}, ns)
    for i in range(5):
        await client.patch("configmaps", "old", {"data": {"i": str(i)}}, ns)
    latest = await client.get("configmaps", "old", ns)
    await _compacted_at(etcd.port, rv(latest))

    fresh = await asyncio.to_thread(start_apiserver, tmp_path, etcd)
    try:
        async with _http(fresh.kubeconfig) as h:
            async with Watch(h, cms(ns), resourceVersion=rv(old)) as w:
                assert w.resp.status_code == 200
                events = await w.rest()
            assert len(events) == 1
            ev = events[0]
            assert ev["type"] == "ERROR"
            st = ev["object"]
            assert st["kind"] == "Status" and st["status"] == "Failure"
            assert st["code"] == 410 and st["reason"] == "Expired"
            assert st["message"].startswith("too old resource version: ")

            # The typed client raises Gone.
            c = fresh.client()
            try:
                with pytest.raises(Gone):
                    async for _ in c.watch("configmaps", ns, resource_version=str(rv(old))):
                        pass
            finally:
                await c.aclose()

            # A version the fresh server knows works.
            lst = (await h.get(cms(ns))).json()
            async with Watch(h, cms(ns), resourceVersion=lst["metadata"]["resourceVersion"]) as w:
                await client.patch("configmaps", "old", {"data": {"i": "x"}}, ns)
                assert await w.take(1) == [("MODIFIED", "old")]
    finally:
        await asyncio.to_thread(stop_process, fresh.proc)


async def test_compaction_interval_expires_old_versions(tmp_path, etcd, client, ns):
    """A server that compacts every second, with a small watch cache window: once enough has
    been written, a watch from an early version is answered with 410."""
    config = tmp_path / "apiserver.yaml"
    config.write_text("watch_cache_window: 10\n")
    srv = await asyncio.to_thread(start_apiserver, tmp_path, etcd, "--compaction-interval", "1",
                                  "--config", str(config))
    try:
        c = srv.client()
        try:
            first = await c.create("configmaps", {"metadata": {"name": "k0"}}, ns)
            for i in range(1, 30):
                await c.create("configmaps", {"metadata": {"name": f"k{i}"}}, ns)
            # Keep writing until the housekeeping loop has compacted past the first write.
            etcd_client = aetcd.Client(host="127.0.0.1", port=etcd.port)
            await etcd_client.connect()
            try:
                for tick in range(300):
                    try:
                        await etcd_client.kvstub.Range(
                            rpc.RangeRequest(key=b"/registry/", revision=rv(first)))
                    except rpc.AioRpcError as exc:
                        assert "compacted" in exc.details()
                        break
                    await c.patch("configmaps", "k0", {"data": {"tick": str(tick)}}, ns)
                    await asyncio.sleep(0.1)
                else:
                    pytest.fail("etcd was never compacted")
            finally:
                await etcd_client.close()
            with pytest.raises(Gone) as exc:
                async for _ in c.watch("configmaps", ns, resource_version=str(rv(first))):
                    pass
            assert exc.value.code == 410
        finally:
            await c.aclose()
    finally:
        await asyncio.to_thread(stop_process, srv.proc)


# --- fan-out and robustness ----------------------------------------------------------------


async def test_fifty_watchers_receive_the_same_events(http, client, ns):
    start = (await client.list("configmaps", ns))["metadata"]["resourceVersion"]

    async def one() -> list[tuple[str, str, str]]:
        async with Watch(http, cms(ns), resourceVersion=start) as w:
            out = []
            for _ in range(3):
                ev = await w.next()
                out.append((ev["type"], ev["object"]["metadata"]["name"],
                            ev["object"]["metadata"]["resourceVersion"]))
            return out

    watchers = [asyncio.create_task(one()) for _ in range(50)]
    a = await client.create("configmaps", {"metadata": {"name": "fan"}}, ns)
    b = await client.patch("configmaps", "fan", {"data": {"k": "v"}}, ns)
    await client.delete("configmaps", "fan", ns)
    results = await asyncio.wait_for(asyncio.gather(*watchers), 60)
    expected = results[0]
    assert [(t, n) for t, n, _ in expected] == [("ADDED", "fan"), ("MODIFIED", "fan"),
                                                ("DELETED", "fan")]
    assert expected[0][2] == a["metadata"]["resourceVersion"]
    assert expected[1][2] == b["metadata"]["resourceVersion"]
    assert all(r == expected for r in results)


async def test_clients_disconnecting_mid_watch_do_not_break_the_server(apiserver, http,
                                                                       client, ns):
    for i in range(20):
        await client.create("configmaps", {"metadata": {"name": f"d{i}"},
                                           "data": {"blob": "x" * 2000}}, ns)
    # Clients that read part of a stream and vanish, some before reading anything.
    for n in range(10):
        async with _http(apiserver.kubeconfig) as h:
            async with Watch(h, cms(ns)) as w:
                if n % 2:
                    await w.next()
            # leaving both blocks closes the connection under the server's feet
    # Ones that drop while the server is writing to them.
    quitters = []
    for _ in range(10):
        h = _http(apiserver.kubeconfig)
        w = Watch(h, cms(ns), resourceVersion="0")
        await w.__aenter__()
        quitters.append((h, w))
    for i in range(20):
        await client.patch("configmaps", f"d{i}", {"data": {"n": "1"}}, ns)
    for h, _ in quitters:
        await h.aclose()

    # The server still serves reads, writes and watches.
    r = await http.get("/readyz")
    assert r.status_code == 200 and r.text == "ok"
    async with Watch(http, cms(ns), labelSelector="after=yes") as w:
        await client.create("configmaps", {"metadata": {"name": "after",
                                                        "labels": {"after": "yes"}}}, ns)
        assert await w.take(1) == [("ADDED", "after")]
    assert len((await client.list("configmaps", ns))["items"]) == 21
    assert apiserver.proc.poll() is None


async def test_timeout_seconds_zero_means_the_default(http, client, ns):
    """Not "end at once": a watch with timeoutSeconds=0 stays open for later events."""
    async with Watch(http, cms(ns), timeoutSeconds=0,
                     resourceVersion=(await client.list("configmaps", ns))["metadata"][
                         "resourceVersion"]) as w:
        await client.create("configmaps", {"metadata": {"name": "later"}}, ns)
        assert await w.take(1) == [("ADDED", "later")]
