"""Admission: the checks between decoding a write and storing it. Mutating steps (defaults)
run before validating ones, as in Kubernetes, so validation sees the object that will be
stored. Namespace lifecycle lives here: writes into a missing or Terminating namespace are
refused, and the system namespaces cannot be deleted. Pods also go through the
ServiceAccount plugin (``apiserver.serviceaccount``) unless it is disabled."""

from __future__ import annotations

from typing import Any

from minik8s.api.defaults import apply_defaults
from minik8s.api.errors import Forbidden, Invalid, NotFound
from minik8s.api.meta import Obj
from minik8s.api.registry import REGISTRY, ResourceType
from minik8s.api.validation import validate

from apiserver.serviceaccount import PLUGIN_NAME as SERVICE_ACCOUNT_PLUGIN
from apiserver.serviceaccount import ServiceAccountAdmission
from apiserver.storage import KeyMissing, Storage
from apiserver.strategy import stamp_requester

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-node-lease", "kube-public")
_NAMESPACE = REGISTRY.resolve("namespaces")
_SERVICE_ACCOUNT = REGISTRY.resolve("serviceaccounts")


class Admission:
    def __init__(self, storage: Storage, caches: Any, disabled: Any = ()):
        self.storage = storage
        self.caches = caches
        self.service_accounts = (None if SERVICE_ACCOUNT_PLUGIN in set(disabled or ())
                                 else ServiceAccountAdmission(caches, self._service_account))

    async def _service_account(self, namespace: str, name: str) -> Obj:
        try:
            return (await self.storage.get(_SERVICE_ACCOUNT.storage_key(namespace, name))).obj
        except KeyMissing:
            raise NotFound.object("serviceaccounts", "", name) from None

    async def _namespace(self, name: str) -> Obj | None:
        cached = self.caches[_NAMESPACE].objects.get(name)
        if cached is not None:
            return cached
        try:  # the cache may lag a namespace created a moment ago
            return (await self.storage.get(_NAMESPACE.storage_key(None, name))).obj
        except KeyMissing:
            return None

    async def _namespace_lifecycle(self, rt: ResourceType, obj: Obj) -> None:
        if not rt.namespaced:
            return
        name = obj["metadata"].get("namespace")
        ns = await self._namespace(name)
        if ns is None:
            raise NotFound.object("namespaces", "", name)
        if (ns.get("status") or {}).get("phase") == "Terminating" and rt.kind != "Event":
            raise Forbidden(f'{rt.plural} "{obj["metadata"].get("name")}" is forbidden: '
                            f"unable to create new content in namespace {name} because it "
                            f"is being terminated",
                            details={"name": obj["metadata"].get("name"), "kind": rt.plural,
                                     "causes": [{"reason": "NamespaceTerminating",
                                                 "field": "metadata.namespace",
                                                 "message": f"namespace {name} is being "
                                                            f"terminated"}]})

    async def admit_create(self, rt: ResourceType, obj: Obj, opts: Any) -> None:
        await self._namespace_lifecycle(rt, obj)
        stamp_requester(rt, obj, getattr(opts, "user", ""), list(getattr(opts, "groups", [])))
        apply_defaults(rt, obj)
        if rt.kind == "Pod" and rt.group == "" and self.service_accounts is not None:
            await self.service_accounts.admit(obj)
        self._validate(rt, obj, None)

    async def admit_update(self, rt: ResourceType, new: Obj, old: Obj, opts: Any,
                           sub: str | None) -> None:
        if sub is None:
            apply_defaults(rt, new)
        self._validate(rt, new, old)

    async def admit_delete(self, rt: ResourceType, obj: Obj, opts: Any) -> None:
        name = obj["metadata"]["name"]
        if rt is _NAMESPACE and name in SYSTEM_NAMESPACES:
            raise Forbidden(f'namespaces "{name}" is forbidden: this namespace may not be '
                            f"deleted", details={"name": name, "kind": "namespaces"})

    @staticmethod
    def _validate(rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        causes = validate(rt, obj, old)
        if causes:
            raise Invalid.object(rt.kind, rt.group, obj["metadata"].get("name", ""), causes)


__all__ = ["Admission", "SYSTEM_NAMESPACES"]
