"""The kind registry: every API resource is declared once here, and the API server's routes,
discovery documents, storage keys, the client's path building and mkctl's name resolution
are all derived from these declarations. Adding a kind is adding one ``ResourceType``."""

from __future__ import annotations

from dataclasses import dataclass, field

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    categories: tuple[str, ...] = ()
    # Whether the kind splits ``spec`` (users) from ``status`` (controllers): writes to the
    # main resource keep the stored status, and only they bump ``generation``.
    has_status: bool = True
    singular: str = field(default="")

    def __post_init__(self) -> None:
        if not self.singular:
            object.__setattr__(self, "singular", self.kind.lower())

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def qualified(self) -> str:
        """``pods`` or ``deployments.apps``: the name kubectl prints in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def group_version_path(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def storage_prefix(self, namespace: str | None = None) -> str:
        """etcd prefix for all objects of this type, or of one namespace (trailing slash)."""
        base = f"/registry/{self.group or 'core'}/{self.plural}/"
        if namespace and self.namespaced:
            return f"{base}{namespace}/"
        return base

    def storage_key(self, namespace: str | None, name: str) -> str:
        if self.namespaced:
            return f"/registry/{self.group or 'core'}/{self.plural}/{namespace}/{name}"
        return f"/registry/{self.group or 'core'}/{self.plural}/{name}"

    def path(self, namespace: str | None = None, name: str | None = None,
             subresource: str | None = None) -> str:
        """The REST path of a collection, an object or a subresource."""
        parts = [self.group_version_path]
        if self.namespaced and namespace:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name:
            parts.append(name)
            if subresource:
                parts.append(subresource)
        return "/".join(parts)


def _rt(group: str, version: str, kind: str, plural: str, **kw) -> ResourceType:
    return ResourceType(group, version, kind, plural, **kw)


_WORKLOAD = ("status", "scale")

RESOURCE_TYPES: tuple[ResourceType, ...] = (
    _rt("", "v1", "Namespace", "namespaces", namespaced=False, short_names=("ns",),
        subresources=("status", "finalize"),
        verbs=("create", "delete", "get", "list", "patch", "update", "watch")),
    _rt("", "v1", "Pod", "pods", short_names=("po",), categories=("all",),
        subresources=("status", "binding", "log", "exec", "portforward")),
    _rt("", "v1", "Node", "nodes", namespaced=False, short_names=("no",),
        subresources=("status",)),
    _rt("", "v1", "Event", "events", short_names=("ev",), has_status=False),
    _rt("", "v1", "ConfigMap", "configmaps", short_names=("cm",), has_status=False),
    _rt("", "v1", "Secret", "secrets", has_status=False),
    _rt("", "v1", "Service", "services", short_names=("svc",), categories=("all",),
        subresources=("status",)),
    _rt("", "v1", "Endpoints", "endpoints", short_names=("ep",), has_status=False,
        singular="endpoints"),
    _rt("", "v1", "ServiceAccount", "serviceaccounts", short_names=("sa",), has_status=False,
        subresources=("token",)),
    _rt("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", short_names=("pvc",),
        subresources=("status",)),
    _rt("apps", "v1", "Deployment", "deployments", short_names=("deploy",),
        categories=("all",), subresources=_WORKLOAD),
    _rt("apps", "v1", "ReplicaSet", "replicasets", short_names=("rs",), categories=("all",),
        subresources=_WORKLOAD),
    _rt("apps", "v1", "StatefulSet", "statefulsets", short_names=("sts",),
        categories=("all",), subresources=_WORKLOAD),
    _rt("apps", "v1", "DaemonSet", "daemonsets", short_names=("ds",), categories=("all",),
        subresources=("status",)),
    _rt("apps", "v1", "ControllerRevision", "controllerrevisions", has_status=False),
    _rt("batch", "v1", "Job", "jobs", categories=("all",), subresources=("status",)),
    _rt("batch", "v1", "CronJob", "cronjobs", short_names=("cj",), categories=("all",),
        subresources=("status",)),
    _rt("coordination.k8s.io", "v1", "Lease", "leases", has_status=False),
    _rt("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers",
        short_names=("hpa",), categories=("all",), subresources=("status",)),
    _rt("certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests",
        namespaced=False, short_names=("csr",), subresources=("status", "approval")),
)


class Registry:
    """Lookup of resource types by path segments, kind, or any name a user may type."""

    def __init__(self, types: tuple[ResourceType, ...] = RESOURCE_TYPES):
        self.types = types
        self._by_gvr = {(t.group, t.version, t.plural): t for t in types}
        self._by_gvk = {(t.group, t.version, t.kind): t for t in types}
        self._by_name: dict[str, list[ResourceType]] = {}
        for t in types:
            names = {t.plural, t.singular, t.kind.lower(), *t.short_names}
            if t.group:
                names |= {f"{n}.{t.group}" for n in (t.plural, t.singular, t.kind.lower())}
                names |= {f"{n}.{t.version}.{t.group}" for n in (t.plural, t.singular)}
            for n in names:
                self._by_name.setdefault(n, []).append(t)

    def __iter__(self):
        return iter(self.types)

    def by_path(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_gvr.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        return self._by_gvk.get((group, version, kind))

    def resolve(self, name: str) -> ResourceType | None:
        """A resource from what a user types: ``po``, ``pods``, ``Pod``, ``deploy.apps``."""
        found = self._by_name.get(name.lower())
        return found[0] if found else None

    def groups(self) -> dict[str, list[str]]:
        """group -> versions, core ("") included, in declaration order."""
        out: dict[str, list[str]] = {}
        for t in self.types:
            versions = out.setdefault(t.group, [])
            if t.version not in versions:
                versions.append(t.version)
        return out

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [t for t in self.types if t.group == group and t.version == version]


REGISTRY = Registry()

__all__ = ["ResourceType", "Registry", "REGISTRY", "RESOURCE_TYPES", "ALL_VERBS"]
