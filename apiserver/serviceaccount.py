"""The ServiceAccount admission plugin, as Kubernetes' (plugin/pkg/admission/serviceaccount):
on pod create, ``serviceAccountName`` defaults to ``default``, the ServiceAccount must exist
(403 ``error looking up service account ns/name: serviceaccount "name" not found``), and,
unless the pod or the ServiceAccount sets ``automountServiceAccountToken: false``, a
projected volume ``kube-api-access-<5 chars>`` (a bound token, the cluster CA from the
``kube-root-ca.crt`` ConfigMap, the namespace) is mounted read-only at
``/var/run/secrets/kubernetes.io/serviceaccount`` in every container that has nothing
mounted there. The kubelet fills the volume (``kubelet.volumes``).

The ``default`` ServiceAccount is created by the controller-manager
(``controller.serviceaccount``) right after its namespace, so a pod created in the same
moment may race it: as in Kubernetes, a missing ``default`` is looked up again a few times
before the pod is refused. The mutation itself is a pure function of the pod, the
ServiceAccount and a name generator, unit-tested without a server."""

from __future__ import annotations

import asyncio
import copy
import random
from typing import Any, Callable

from minik8s.api.errors import Forbidden, NotFound
from minik8s.api.meta import Obj
from minik8s.api.registry import REGISTRY

PLUGIN_NAME = "ServiceAccount"
DEFAULT_SERVICE_ACCOUNT = "default"
TOKEN_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
VOLUME_PREFIX = "kube-api-access-"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
TOKEN_EXPIRATION_SECONDS = 3607  # Kubernetes' WarnOnlyBoundTokenExpirationSeconds
MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"
# Kubernetes' SimpleNameGenerator alphabet (no vowels, no confusable digits).
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

_SA = REGISTRY.resolve("serviceaccounts")


def random_suffix(n: int = 5, rng: random.Random | None = None) -> str:
    r = rng or random
    return "".join(r.choice(_ALPHABET) for _ in range(n))


def token_volume(name: str) -> Obj:
    """``TokenVolumeSource()``: token, CA bundle and namespace in one projected volume."""
    return {"name": name, "projected": {"defaultMode": 0o644, "sources": [
        {"serviceAccountToken": {"path": "token",
                                 "expirationSeconds": TOKEN_EXPIRATION_SECONDS}},
        {"configMap": {"name": ROOT_CA_CONFIGMAP,
                       "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
            "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]}}


def should_automount(sa: Obj, pod: Obj) -> bool:
    """The pod's preference wins, then the ServiceAccount's, then true."""
    pod_says = (pod.get("spec") or {}).get("automountServiceAccountToken")
    if isinstance(pod_says, bool):
        return pod_says
    sa_says = sa.get("automountServiceAccountToken")
    if isinstance(sa_says, bool):
        return sa_says
    return True


def mount_token(pod: Obj, suffix: Callable[[], str] = random_suffix) -> None:
    """Add the token volume (unless one named ``kube-api-access-*`` exists) and mount it in
    every init and app container with nothing at the mount path."""
    spec = pod.setdefault("spec", {})
    volumes = spec.get("volumes") if isinstance(spec.get("volumes"), list) else []
    name = next((v.get("name") for v in volumes if isinstance(v, dict)
                 and str(v.get("name") or "").startswith(VOLUME_PREFIX)), None)
    has_volume = name is not None
    if name is None:
        taken = {v.get("name") for v in volumes if isinstance(v, dict)}
        name = VOLUME_PREFIX + suffix()
        while name in taken:
            name = VOLUME_PREFIX + suffix()
    needs_volume = False
    for key in ("initContainers", "containers"):
        for c in spec.get(key) or []:
            if not isinstance(c, dict):
                continue
            mounts = c.get("volumeMounts")
            if not isinstance(mounts, list):
                mounts = []
            if any(isinstance(m, dict) and m.get("mountPath") == TOKEN_MOUNT_PATH
                   for m in mounts):
                continue
            c["volumeMounts"] = mounts + [{"name": name, "readOnly": True,
                                           "mountPath": TOKEN_MOUNT_PATH}]
            needs_volume = True
    if needs_volume and not has_volume:
        spec["volumes"] = volumes + [token_volume(name)]


def admit_pod(pod: Obj, sa: Obj, suffix: Callable[[], str] = random_suffix) -> None:
    """The mutation once the ServiceAccount is known (also copies its imagePullSecrets)."""
    spec = pod.setdefault("spec", {})
    if should_automount(sa, pod):
        mount_token(pod, suffix)
    if not spec.get("imagePullSecrets") and sa.get("imagePullSecrets"):
        spec["imagePullSecrets"] = [{"name": s.get("name")} for s in sa["imagePullSecrets"]
                                    if isinstance(s, dict)]


def forbidden(pod: Obj, message: str) -> Forbidden:
    """``admission.NewForbidden``: ``pods "name" is forbidden: <why>``."""
    md = pod.get("metadata") or {}
    name = md.get("name") or md.get("generateName") or ""
    prefix = f'pods "{name}"' if name else "pods"
    return Forbidden(f"{prefix} is forbidden: {message}",
                     details={"name": name, "kind": "pods"} if name else {"kind": "pods"})


class ServiceAccountAdmission:
    """Looks the ServiceAccount up (watch cache, then the store) and mutates the pod."""

    def __init__(self, caches: Any, get: Callable[[str, str], Any], *,
                 default_attempts: int = 10, retry_interval: Callable[[], float] | None = None):
        self.caches = caches
        self.get = get  # async (namespace, name) -> ServiceAccount, NotFound when missing
        self.default_attempts = default_attempts
        self.retry_interval = retry_interval or (lambda: random.uniform(0.1, 0.2))

    async def service_account(self, namespace: str, name: str) -> Obj:
        cached = self._cached(namespace, name)
        if cached is not None:
            return cached
        attempts = self.default_attempts if name == DEFAULT_SERVICE_ACCOUNT else 1
        for i in range(attempts):
            if i:
                await asyncio.sleep(self.retry_interval())
            try:
                return await self.get(namespace, name)
            except NotFound:
                continue
        raise NotFound(f'serviceaccount "{name}" not found')

    def _cached(self, namespace: str, name: str) -> Obj | None:
        try:
            cache = self.caches[_SA]
        except (KeyError, TypeError):
            return None
        objects = getattr(cache, "objects", None)
        if not isinstance(objects, dict):
            return None
        return objects.get(f"{namespace}/{name}")

    async def admit(self, pod: Obj) -> None:
        md = pod.get("metadata") or {}
        spec = pod.setdefault("spec", {})
        if MIRROR_POD_ANNOTATION in (md.get("annotations") or {}):
            return
        if not spec.get("serviceAccountName"):
            spec["serviceAccountName"] = spec.get("serviceAccount") or DEFAULT_SERVICE_ACCOUNT
        ns = md.get("namespace") or "default"
        name = spec["serviceAccountName"]
        try:
            sa = await self.service_account(ns, name)
        except NotFound as exc:
            raise forbidden(pod, f"error looking up service account {ns}/{name}: {exc}") \
                from None
        admit_pod(pod, copy.deepcopy(sa))


__all__ = ["ServiceAccountAdmission", "admit_pod", "mount_token", "should_automount",
           "token_volume", "PLUGIN_NAME", "TOKEN_MOUNT_PATH", "ROOT_CA_CONFIGMAP",
           "VOLUME_PREFIX", "TOKEN_EXPIRATION_SECONDS"]
