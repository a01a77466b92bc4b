"""The ``Kubelet`` runnable: node registration, status and lease, the pod informer feeding
the pod workers, a relist of the node's containers that notices exits, periodic resyncs and
the orphan sweep, all started by ``start()`` and cancelled together.

Cancelling the kubelet stops only the kubelet: containers keep running, because a kubelet
restart (an upgrade, a crash) must not take the node's pods down; the next kubelet adopts
them from their labels. Only a node that goes away with its kubelet (a compose worker being
removed) asks for ``drain()`` on exit (``--drain-on-exit``), so no container outlives it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kubelet.config import KubeletConfig
from kubelet.node import NodeAgent
from kubelet.pods import PodWorkers, WallClock
from minik8s.cache.informer import Informer
from minik8s.client.events import EventRecorder

log = logging.getLogger(__name__)

PLEG_RELIST_PERIOD = 1.0


class Kubelet:
    name = "kubelet"

    def __init__(self, config: KubeletConfig, client: Any, runtime: Any, network: Any, *,
                 recorder: Any | None = None, clock: Any | None = None,
                 relist_period: float = PLEG_RELIST_PERIOD):
        if not config.node_name:
            raise ValueError("the kubelet needs a node name")
        self.config = config
        self.client = client
        self.runtime = runtime
        self.network = network
        self.relist_period = relist_period
        self.node = NodeAgent(config, client, network, runtime)
        self.recorder = recorder if recorder is not None else EventRecorder(
            client, "kubelet", config.node_name)
        self.pods = PodWorkers(config, client, runtime, network, self.recorder,
                               clock=clock or WallClock(), host_ip=self.node.node_ip)
        self.pod_informer = Informer(client, "pods",
                                     field_selector=f"spec.nodeName={config.node_name}")
        self.pod_informer.add_handler(self.pods.pod_added, self.pods.pod_updated,
                                      self.pods.pod_deleted)
        self.node_informer = Informer(client, "nodes")
        # Services, read-only, for the {SVC}_SERVICE_HOST/_PORT variables of new containers.
        self.service_informer = Informer(client, "services")
        self.pods.services = self.service_informer.list
        self._nodes_changed = asyncio.Event()
        self.node_informer.add_handler(lambda n: self._nodes_changed.set(),
                                       lambda o, n: self._nodes_changed.set(),
                                       lambda n: self._nodes_changed.set())
        self._seen: dict[str, tuple[str, str]] = {}  # container id -> (state, pod uid)

    async def start(self) -> None:
        tasks: list[asyncio.Task[Any]] = []
        loop = asyncio.get_running_loop()
        try:
            await self._register()
            tasks.append(loop.create_task(self.node.run_status(), name="node-status"))
            tasks.append(loop.create_task(self.node.run_lease(), name="node-lease"))
            tasks.append(loop.create_task(self.pod_informer.start(), name="pod-informer"))
            tasks.append(loop.create_task(self.node_informer.start(), name="node-informer"))
            tasks.append(loop.create_task(self.service_informer.start(),
                                          name="service-informer"))
            if self.config.tls_cert_file:
                tasks.append(loop.create_task(self._serve(), name="server"))
            while not (await self.pod_informer.wait_synced(1.0)
                       and await self.service_informer.wait_synced(1.0)):
                self._raise_failed(tasks)
            self.pods.synced.set()
            log.info("kubelet %s: %d pods bound here", self.config.node_name,
                     len(self.pods.pods))
            await self.pods.find_orphans()
            for coro, name in ((self.pods.run(), "pod-workers"), (self._relist(), "pleg"),
                               (self._resync(), "resync"), (self._orphans(), "orphans"),
                               (self._routes(), "routes")):
                tasks.append(loop.create_task(coro, name=name))
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            self._raise_failed(list(done))
            raise RuntimeError("a kubelet task ended")
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.pods.probes.stop()

    async def drain(self) -> int:
        """Stop and remove every pod container of this node (each pod's grace period, capped
        as for a pod gone from the API), its network attachment and pod directory; called
        after ``start()`` ended. Returns how many pods were removed."""
        infos = await self.runtime.list_containers(self.config.container_labels)
        uids = {i.pod_uid for i in infos if i.pod_uid}
        if self.config.pods_dir.exists():
            uids |= {p.name for p in self.config.pods_dir.iterdir() if p.is_dir()}
        for uid, pod in self.pods.pods.items():
            self.pods.last_known.setdefault(uid, pod)
        uids = sorted(uids)
        results = await asyncio.gather(*(self.pods.cleanup_pod(u) for u in uids),
                                       return_exceptions=True)
        for uid, result in zip(uids, results):
            if isinstance(result, BaseException):
                log.warning("draining pod %s failed: %s", uid, result)
        log.info("drained %d pods from node %s", len(uids), self.config.node_name)
        return len(uids)

    async def _serve(self) -> None:
        """The logs/exec/stats server (``kubelet.server``) on --address:--port."""
        from kubelet import server
        from kubelet.stats import StatsProvider
        from kubelet.node import host_memory_bytes

        def pod_uid(namespace: str, name: str) -> str | None:
            for uid, pod in list(self.pods.pods.items()):
                md = pod.get("metadata") or {}
                if md.get("namespace") == namespace and md.get("name") == name:
                    return uid
            return None

        app = server.KubeletServer(
            self.config.node_name, self.runtime,
            StatsProvider(self.config.node_name, self.runtime, memory_total=host_memory_bytes),
            pod_uid=pod_uid)
        ctx = server.server_ssl_context(self.config.tls_cert_file,
                                        self.config.tls_private_key_file,
                                        self.config.client_ca_file)
        host = self.config.address or self.node.node_ip or "0.0.0.0"
        await server.serve(app, host, self.config.port, ctx)

    @staticmethod
    def _raise_failed(tasks: list[asyncio.Task[Any]]) -> None:
        for t in tasks:
            if t.done() and not t.cancelled() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]

    async def _register(self) -> None:
        delay = 0.5
        while True:
            try:
                await self.node.register()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("registering node %s failed: %s", self.config.node_name, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def relist_once(self) -> None:
        """Compare the node's containers with the last look; queue pods whose containers
        appeared, changed state or vanished (Kubernetes' PLEG)."""
        infos = await self.runtime.list_containers(self.config.container_labels)
        now = {i.id: (i.state, i.pod_uid) for i in infos}
        changed = {uid for cid, (st, uid) in now.items() if self._seen.get(cid, ("",))[0] != st}
        changed |= {uid for cid, (_, uid) in self._seen.items() if cid not in now}
        self._seen = now
        for uid in changed:
            if uid and not self.pods.saw_already(
                    uid, {cid: st for cid, (st, u) in now.items() if u == uid}):
                self.pods.enqueue(uid)

    async def _relist(self) -> None:
        while True:
            try:
                await self.relist_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("container relist failed: %s", exc)
            await asyncio.sleep(self.relist_period)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.config.sync_frequency)
            for uid in list(self.pods.pods):
                self.pods.enqueue(uid)

    async def _orphans(self) -> None:
        while True:
            await asyncio.sleep(self.config.orphan_cleanup_period)
            try:
                await self.pods.find_orphans()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("orphan sweep failed: %s", exc)

    async def _routes(self) -> None:
        while True:
            await self._nodes_changed.wait()
            self._nodes_changed.clear()
            try:
                await self.node.sync_routes(self.node_informer.list())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("route sync failed: %s", exc)
                await asyncio.sleep(2.0)
                self._nodes_changed.set()


__all__ = ["Kubelet"]
