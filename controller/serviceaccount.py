"""Two small controllers every namespace depends on, as in Kubernetes' controller-manager:

- ``serviceaccount``: a ``default`` ServiceAccount in every active namespace (recreated if
  deleted). Pods name it implicitly; the API server's ServiceAccount admission refuses pods
  whose ServiceAccount does not exist.
- ``root-ca-cert-publisher``: a ConfigMap ``kube-root-ca.crt`` (key ``ca.crt``) in every
  active namespace holding the cluster CA (``--root-ca-file``, else the CA the
  controller-manager's own kubeconfig trusts), rewritten if someone changes it. Pods mount
  it through their ``kube-api-access-*`` projected volume to verify the API server.

Both key their work queue by namespace: a namespace event, or an event on the object they
keep, enqueues the namespace; ``reconcile(namespace)`` creates or repairs the one object.
A Terminating namespace is left alone (the API server would refuse the write anyway)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from minik8s.api.errors import AlreadyExists, Forbidden, NotFound
from minik8s.api.meta import Obj
from minik8s.runtime import Controller, Result, WorkQueue

log = logging.getLogger(__name__)

DEFAULT_SERVICE_ACCOUNT = "default"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
ROOT_CA_KEY = "ca.crt"
DESCRIPTION_ANNOTATION = "kubernetes.io/description"
ROOT_CA_DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver "
                       "when using internal endpoints such as the internal service IP or "
                       "kubernetes.default.svc. No other usage is guaranteed across "
                       "distributions of Kubernetes clusters.")


def _active(ns: Obj | None) -> bool:
    if ns is None:
        return False
    md, status = ns.get("metadata") or {}, ns.get("status") or {}
    return not md.get("deletionTimestamp") and status.get("phase", "Active") == "Active"


def _ns_of(obj: Obj) -> str:
    return (obj.get("metadata") or {}).get("namespace") or ""


class _PerNamespace:
    """A controller keyed by namespace name, woken by namespaces and by one kind of object."""

    name = ""

    def __init__(self, client: Any, informers: Any, clock: Any, kind: str,
                 field_selector: str | None = None, workers: int = 1):
        self.client = client
        self.namespaces = informers.informer("namespaces")
        self.objects = informers.informer(kind, field_selector=field_selector)
        self.controller = Controller(self.name, self,
                                     queue=WorkQueue(self.name, clock=clock), workers=workers)
        enqueue = self.controller.enqueue_key
        self.namespaces.add_handler(lambda ns: enqueue(ns["metadata"]["name"]),
                                    lambda old, new: enqueue(new["metadata"]["name"]), None)
        self.objects.add_handler(None, lambda old, new: enqueue(_ns_of(new)),
                                 lambda obj: enqueue(_ns_of(obj)))

    async def start(self) -> None:
        await self.controller.start()

    async def _create(self, kind: str, namespace: str, obj: Obj) -> None:
        try:
            await self.client.create(kind, obj, namespace)
            log.info("%s: created %s %s/%s", self.name, kind, namespace,
                     obj["metadata"]["name"])
        except AlreadyExists:
            pass  # the cache lags; the next event brings it
        except (Forbidden, NotFound):
            pass  # the namespace is being deleted or is gone


class ServiceAccountsController(_PerNamespace):
    name = "serviceaccount"

    def __init__(self, client: Any, informers: Any, clock: Any):
        super().__init__(client, informers, clock, "serviceaccounts")

    async def reconcile(self, namespace: str) -> Result | None:
        if not namespace or not _active(self.namespaces.get(namespace)):
            return None
        if self.objects.get(f"{namespace}/{DEFAULT_SERVICE_ACCOUNT}") is not None:
            return None
        await self._create("serviceaccounts", namespace, {
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": DEFAULT_SERVICE_ACCOUNT, "namespace": namespace}})
        return None


class RootCACertPublisher(_PerNamespace):
    name = "root-ca-cert-publisher"

    def __init__(self, client: Any, informers: Any, clock: Any, ca_pem: str):
        super().__init__(client, informers, clock, "configmaps",
                         field_selector=f"metadata.name={ROOT_CA_CONFIGMAP}")
        self.ca_pem = ca_pem

    async def reconcile(self, namespace: str) -> Result | None:
        if not namespace or not self.ca_pem or not _active(self.namespaces.get(namespace)):
            return None
        current = self.objects.get(f"{namespace}/{ROOT_CA_CONFIGMAP}")
        if current is None:
            await self._create("configmaps", namespace, {
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": ROOT_CA_CONFIGMAP, "namespace": namespace,
                             "annotations": {DESCRIPTION_ANNOTATION: ROOT_CA_DESCRIPTION}},
                "data": {ROOT_CA_KEY: self.ca_pem}})
            return None
        annotations = (current.get("metadata") or {}).get("annotations") or {}
        if (current.get("data") == {ROOT_CA_KEY: self.ca_pem} and not current.get("binaryData")
                and annotations.get(DESCRIPTION_ANNOTATION) == ROOT_CA_DESCRIPTION):
            return None
        fixed = {**current, "data": {ROOT_CA_KEY: self.ca_pem}}
        fixed.pop("binaryData", None)
        fixed["metadata"] = {**current["metadata"],
                             "annotations": {**annotations,
                                             DESCRIPTION_ANNOTATION: ROOT_CA_DESCRIPTION}}
        try:
            await self.client.update("configmaps", fixed, namespace)  # 409: requeued
        except NotFound:
            pass
        return None


def root_ca(ctx: Any) -> str:
    """The CA bundle to publish: ``--root-ca-file``, else the CA of our kubeconfig."""
    path = getattr(ctx.config, "root_ca_file", "") or ""
    if path:
        return Path(path).expanduser().read_text()
    ca = getattr(getattr(ctx.client, "config", None), "ca_pem", None)
    return ca.decode() if isinstance(ca, bytes) else (ca or "")


def new(ctx: Any) -> ServiceAccountsController:
    return ServiceAccountsController(ctx.client, ctx.informers, ctx.clock)


def new_root_ca_publisher(ctx: Any) -> RootCACertPublisher:
    ca = root_ca(ctx)
    if not ca:
        log.warning("root-ca-cert-publisher: no CA (--root-ca-file) to publish")
    return RootCACertPublisher(ctx.client, ctx.informers, ctx.clock, ca)


__all__ = ["ServiceAccountsController", "RootCACertPublisher", "new", "new_root_ca_publisher",
           "root_ca", "ROOT_CA_CONFIGMAP", "DEFAULT_SERVICE_ACCOUNT"]
