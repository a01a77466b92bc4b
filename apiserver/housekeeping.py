"""Upkeep a long-running cluster needs from its API server: etcd history is compacted so it
does not grow without bound (keeping one interval of history, so watches that reconnect
within it can resume), and the database is defragmented now and then to give the space
back. Event expiry needs no task: Events are written with an etcd lease.

It also keeps the ``kubernetes`` Service in ``default`` (the first address of the service
range, port 443 ``https`` to the API server's port) and its Endpoints, as Kubernetes' API
server does: created at start and put back every few seconds if deleted or changed. Each
API server records itself under ``/registry/masterleases/<ip>:<port>`` with the time it last
did so (and removes the record when it stops); the Endpoints list every server seen within
three rounds, one subset per port. Every server computes the same Endpoints from the same
records, and leaves the Service's ``targetPort`` alone while it is a live server's port, so
several API servers sharing an etcd (even on different ports) never take turns rewriting
them. Loopback addresses are listed only when no server has another: a pod reaching
10.96.0.1 is DNATed to an endpoint, and a 127.0.0.1 endpoint would be the pod's own
loopback, not the API server (under ``minik8s up`` the address is ``--advertise-address``,
the host bridge address every node routes to)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from typing import Any

from minik8s.api.errors import StatusError
from minik8s.api.registry import REGISTRY

from apiserver.config import APIServerConfig
from apiserver.storage import KeyExists, KeyMissing, RevisionMismatch, Storage

log = logging.getLogger(__name__)


class Housekeeping:
    def __init__(self, storage: Storage, config: APIServerConfig, store: Any = None):
        self.storage = storage
        self.config = config
        self.store = store  # apiserver.rest.ResourceStore, for the `kubernetes` Service
        self.last_compacted = 0

    async def compact_once(self, previous: int) -> int:
        """Compact to ``previous`` (the revision seen one interval ago); the current
        revision back, for the next round."""
        current = await self.storage.current_revision()
        if 0 < previous < current and previous > self.last_compacted:
            await self.storage.compact(previous)
            self.last_compacted = previous
            log.info("compacted etcd history up to revision %d", previous)
        return current

    async def run(self) -> None:
        interval = self.config.compaction_interval_seconds
        previous = 0
        last_defrag = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            try:
                previous = await self.compact_once(previous)
                if time.monotonic() - last_defrag >= self.config.defrag_interval_seconds:
                    await self.storage.defragment()
                    last_defrag = time.monotonic()
                    log.info("defragmented etcd")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("housekeeping: %s", exc)


    # --- the `kubernetes` Service -------------------------------------------------------------

    def _desired_service(self) -> dict:
        cluster_ip = self.store.service_alloc.first_ip
        return {"apiVersion": "v1", "kind": "Service", "metadata": {
            "name": "kubernetes", "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                     "sessionAffinity": "None", "ports": [{
                         "name": "https", "port": 443, "protocol": "TCP",
                         "targetPort": self.config.port}]}}

    def _lease_key(self) -> str:
        return f"{_MASTERLEASES}{self.config.advertise_ip}:{self.config.port}"

    async def _masters(self) -> list[tuple[str, int]]:
        """This server's address and port, recorded with the time, and every other API
        server's recorded within the last three rounds (older records are removed);
        loopback addresses only when there is nothing else."""
        me, port = self.config.advertise_ip, self.config.port
        now = time.time()
        key = self._lease_key()
        record = {"ip": me, "port": port, "renewTime": now}
        try:
            cur = await self.storage.get(key)
            await self.storage.update(key, record, cur.revision)
        except KeyMissing:
            try:
                await self.storage.create(key, record)
            except KeyExists:
                pass
        except RevisionMismatch:
            pass  # another server with our address wrote it a moment ago
        horizon = 3 * self.config.kubernetes_service_sync_seconds + 5
        live = {(me, port)}
        items, *_ = await self.storage.list(_MASTERLEASES)
        for st in items:
            ip, p, renewed = st.obj.get("ip"), st.obj.get("port"), st.obj.get("renewTime")
            if not isinstance(ip, str) or not isinstance(p, int) or \
                    not isinstance(renewed, (int, float)):
                continue
            if now - renewed <= horizon:
                live.add((ip, p))
            elif now - renewed > 2 * horizon:
                name = f"{ip}:{p}"  # records of older versions were keyed by the IP alone
                for old in (f"{_MASTERLEASES}{name}", f"{_MASTERLEASES}{ip}"):
                    try:
                        await self.storage.delete(old, st.revision)
                    except (KeyMissing, RevisionMismatch):
                        pass
        reachable = {(ip, p) for ip, p in live if not _loopback(ip)}
        return sorted(reachable or live)

    async def forget_self(self) -> None:
        """Remove this server's record (on a clean stop), so the others drop its address
        at their next round instead of three rounds later."""
        with contextlib.suppress(KeyMissing):
            await self.storage.delete(self._lease_key())

    async def sync_kubernetes_service(self) -> None:
        """Create or repair the `kubernetes` Service and its Endpoints."""
        from apiserver.rest import WriteOptions

        svc_rt, ep_rt = REGISTRY.resolve("services"), REGISTRY.resolve("endpoints")
        desired = self._desired_service()
        try:
            current = await self.store.get(svc_rt, "default", "kubernetes")
        except StatusError as err:
            if err.code != 404:
                raise
            current = None
            try:
                await self.store.create(svc_rt, "default", desired, WriteOptions())
                log.info("created the kubernetes Service (%s)", desired["spec"]["clusterIP"])
            except StatusError as exc:
                if exc.code != 409:
                    log.warning("cannot create the kubernetes Service: %s", exc.message)
        masters = await self._masters()
        if current is not None:
            spec = current.get("spec") or {}
            ports = spec.get("ports") or []
            if len(ports) == 1 and isinstance(ports[0], dict) and \
                    ports[0].get("targetPort") in {p for _, p in masters}:
                # another live server's port is as good as ours: no tug of war
                desired["spec"]["ports"][0]["targetPort"] = ports[0]["targetPort"]
            if ports != desired["spec"]["ports"] or spec.get("type") != "ClusterIP":
                fixed = {**current, "spec": {**spec, "type": "ClusterIP",
                                             "ports": desired["spec"]["ports"]}}
                for key in ("externalTrafficPolicy", "allocateLoadBalancerNodePorts"):
                    fixed["spec"].pop(key, None)
                try:
                    await self.store.update(svc_rt, "default", "kubernetes", fixed, None,
                                            WriteOptions())
                except StatusError as exc:
                    log.warning("cannot repair the kubernetes Service: %s", exc.message)
        by_port: dict[int, list[str]] = {}
        for ip, p in masters:
            by_port.setdefault(p, []).append(ip)
        subsets = [{"addresses": [{"ip": ip} for ip in sorted(ips)],
                    "ports": [{"name": "https", "port": p, "protocol": "TCP"}]}
                   for p, ips in sorted(by_port.items())]
        endpoints = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {
            "name": "kubernetes", "namespace": "default",
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": subsets}
        try:
            current = await self.store.get(ep_rt, "default", "kubernetes")
        except StatusError as err:
            if err.code != 404:
                raise
            current = None
        if current is not None and current.get("subsets") == subsets:
            return
        if current is not None:
            endpoints["metadata"] = {**current["metadata"],
                                     **{"labels": {**(current["metadata"].get("labels") or {}),
                                                   **endpoints["metadata"]["labels"]}}}
        try:
            await self.store.update(ep_rt, "default", "kubernetes", endpoints, None,
                                    WriteOptions())
        except StatusError as exc:
            if exc.code != 409:
                log.warning("cannot write the kubernetes Endpoints: %s", exc.message)

    async def run_kubernetes_service(self) -> None:
        try:
            while True:
                try:
                    await self.sync_kubernetes_service()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("kubernetes Service: %s", exc)
                await asyncio.sleep(self.config.kubernetes_service_sync_seconds)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.forget_self(), 2.0)
            raise


_MASTERLEASES = "/registry/masterleases/"


def _loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


__all__ = ["Housekeeping"]
