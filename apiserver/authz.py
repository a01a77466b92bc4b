"""Who may do what, as one table a reviewer can read top to bottom. The identities are the
ones Kubernetes' bootstrap RBAC policy and node authorizer know (``system:masters``,
``system:kube-scheduler``, ``system:node:<name>``...), so certificates and habits carry over;
but there are no Role objects to edit: the policy is fixed, and it is a pure function so every
row can be unit-tested without a server.

Resource patterns are stricter than RBAC's: ``pods`` matches only the main resource,
``pods/status`` one subresource, ``*/status`` that subresource of anything, ``*`` any main
resource and ``*/*`` anything at all. So no read rule silently grants ``pods/exec`` or
``nodes/proxy``.

What the caller fills in: ``name`` also for ``create`` (from the body's ``metadata.name``),
and ``pod_node_name`` (the stored pod's ``spec.nodeName``) for pod writes by nodes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from minik8s.api.errors import Forbidden

READ = ("get", "list", "watch")
WRITE = ("create", "update", "patch", "delete", "deletecollection")
ANY = ("*",)

CORE, APPS, BATCH = "", "apps", "batch"
CERTIFICATES = "certificates.k8s.io"
COORDINATION, EVENTS, DISCOVERY = "coordination.k8s.io", "events.k8s.io", "discovery.k8s.io"

MASTERS_GROUP = "system:masters"
AUTHENTICATED_GROUP = "system:authenticated"
NODES_GROUP = "system:nodes"
NODE_USER_PREFIX = "system:node:"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
ANONYMOUS_USER = "system:anonymous"
UNAUTHENTICATED_GROUP = "system:unauthenticated"
BOOTSTRAPPERS_GROUP = "system:bootstrappers"
BOOTSTRAP_USER_PREFIX = "system:bootstrap:"

# Leader-election Lease names in kube-system (Kubernetes' defaults).
SCHEDULER_LEASE = "kube-scheduler"
CONTROLLER_MANAGER_LEASE = "kube-controller-manager"
NODE_LEASE_NAMESPACE = "kube-node-lease"


@dataclass(frozen=True)
class RequestAttributes:
    """One request as the authorizer sees it. ``resource`` empty means a non-resource
    request for ``path``; ``namespace`` empty means cluster scope."""

    verb: str
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str | None = ""
    name: str | None = ""
    path: str = ""
    pod_node_name: str | None = None

    @property
    def is_resource_request(self) -> bool:
        return bool(self.resource)

    @property
    def full_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


@dataclass(frozen=True)
class Subject:
    """The requester, with what its name implies (its node, its service account's namespace)."""

    user: str
    groups: frozenset[str]
    node_name: str | None = None
    sa_namespace: str | None = None


def subject_of(user: str, groups: Iterable[str]) -> Subject:
    """Every authenticated user is in ``system:authenticated``, as Kubernetes' authenticators
    add it; a node needs both its ``system:node:`` name and the ``system:nodes`` group."""
    group_set = set(groups)
    if user and user != ANONYMOUS_USER and UNAUTHENTICATED_GROUP not in group_set:
        group_set.add(AUTHENTICATED_GROUP)
    node = None
    if user.startswith(NODE_USER_PREFIX) and NODES_GROUP in group_set:
        node = user[len(NODE_USER_PREFIX):] or None
    sa_ns = None
    if user.startswith(SERVICE_ACCOUNT_PREFIX):
        ns, sep, name = user[len(SERVICE_ACCOUNT_PREFIX):].partition(":")
        sa_ns = ns if sep and ns and name else None
    return Subject(user, frozenset(group_set), node, sa_ns)


# --------------------------------------------------------------------------- who


@dataclass(frozen=True)
class Who:
    """Matches a subject by user name, group, or kind (``node``, ``serviceaccount``)."""

    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    kind: str = ""

    def matches(self, s: Subject) -> bool:
        if self.kind == "node":
            return s.node_name is not None
        if self.kind == "serviceaccount":
            return s.sa_namespace is not None
        return s.user in self.users or not s.groups.isdisjoint(self.groups)


MASTERS = Who(groups=(MASTERS_GROUP,))
AUTHENTICATED = Who(groups=(AUTHENTICATED_GROUP,))
SCHEDULER = Who(users=("system:kube-scheduler",))
CONTROLLER_MANAGER = Who(users=("system:kube-controller-manager",))
KUBE_PROXY = Who(users=("system:kube-proxy",), groups=("system:node-proxier",))
NODE = Who(kind="node")
BOOTSTRAPPER = Who(groups=(BOOTSTRAPPERS_GROUP,))
EVERYONE = Who(users=(ANONYMOUS_USER,), groups=(AUTHENTICATED_GROUP, UNAUTHENTICATED_GROUP))
SERVICE_ACCOUNT = Who(kind="serviceaccount")

# --------------------------------------------------------------------------- conditions

Condition = Callable[[Subject, RequestAttributes], bool]


def own_node_object(s: Subject, a: RequestAttributes) -> bool:
    """The object is named after the requesting node (its Node, its Lease)."""
    return bool(a.name) and a.name == s.node_name


def pod_bound_to_node(s: Subject, a: RequestAttributes) -> bool:
    return a.pod_node_name is not None and a.pod_node_name == s.node_name


def own_csr(s: Subject, a: RequestAttributes) -> bool:
    """A CertificateSigningRequest named after its requester: ``node-csr-<token id>-...``
    for a bootstrap token (``minik8s join``), ``kubelet-serving-<node>-...`` for a node."""
    if s.user.startswith(BOOTSTRAP_USER_PREFIX):
        prefix = f"node-csr-{s.user[len(BOOTSTRAP_USER_PREFIX):]}-"
    elif s.node_name:
        prefix = f"kubelet-serving-{s.node_name}-"
    else:
        return False
    return bool(a.name) and a.name.startswith(prefix)


def own_namespace(s: Subject, a: RequestAttributes) -> bool:
    return bool(a.namespace) and a.namespace == s.sa_namespace


# --------------------------------------------------------------------------- rules


def _matches(patterns: Iterable[str], value: str) -> bool:
    return any(p == "*" or p == value for p in patterns)


def _resource_matches(pattern: str, resource: str, subresource: str) -> bool:
    if pattern == "*/*":
        return True
    main, _, sub = pattern.partition("/")
    if main not in ("*", resource):
        return False
    return sub == subresource


def _path_matches(pattern: str, path: str) -> bool:
    if pattern.endswith("/*"):
        return path.startswith(pattern[:-1])
    return pattern in ("*", path)


@dataclass(frozen=True)
class Rule:
    """One row: ``who`` may do ``verbs`` on ``resources`` of ``api_groups`` (or, for a
    non-resource rule, on ``paths``), optionally limited to ``namespaces``, ``names`` and a
    ``where`` condition; ``except_resources`` carves exceptions out of wildcards."""

    description: str
    who: Who
    verbs: tuple[str, ...]
    resources: tuple[str, ...] = ()
    api_groups: tuple[str, ...] = (CORE,)
    namespaces: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    except_resources: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    where: Condition | None = field(default=None, compare=False)

    def permits(self, s: Subject, a: RequestAttributes) -> bool:
        if not self.who.matches(s) or not _matches(self.verbs, a.verb):
            return False
        if not a.is_resource_request:
            return any(_path_matches(p, a.path) for p in self.paths)
        return (self._covers_resource(a)
                and (not self.namespaces or (a.namespace or "") in self.namespaces)
                and (not self.names or (a.name or "") in self.names)
                and (self.where is None or self.where(s, a)))

    def _covers_resource(self, a: RequestAttributes) -> bool:
        if not _matches(self.api_groups, a.api_group):
            return False
        if any(_resource_matches(p, a.resource, a.subresource) for p in self.except_resources):
            return False
        return any(_resource_matches(p, a.resource, a.subresource) for p in self.resources)


def allow(description: str, who: Who, verbs: Iterable[str], resources: Iterable[str],
          api_groups: Iterable[str] = (CORE,), **limits) -> Rule:
    return Rule(description, who, tuple(verbs), tuple(resources), tuple(api_groups), **limits)


def allow_paths(description: str, who: Who, verbs: Iterable[str], paths: Iterable[str]) -> Rule:
    return Rule(description, who, tuple(verbs), paths=tuple(paths))


EVENT_WRITE = ("create", "update", "patch")
EVENT_GROUPS = (CORE, EVENTS)
DISCOVERY_PATHS = ("/healthz", "/healthz/*", "/livez", "/livez/*", "/readyz", "/readyz/*",
                   "/version", "/version/", "/api", "/api/*", "/apis", "/apis/*",
                   "/openapi", "/openapi/*")
LEASE_VERBS = ("get", "create", "update", "patch")

_CM_WRITABLE_CORE = ("pods", "replicationcontrollers", "endpoints", "events", "serviceaccounts",
                     "secrets", "configmaps", "persistentvolumeclaims")
_CM_WRITABLE_APPS = ("deployments", "replicasets", "statefulsets", "daemonsets",
                     "controllerrevisions")

RULES: tuple[Rule, ...] = (
    # --- cluster admins
    allow("system:masters: everything", MASTERS, ANY, ("*/*",), ANY),
    allow_paths("system:masters: every path", MASTERS, ANY, ("*",)),
    # --- everyone authenticated: health and discovery
    allow_paths("discovery", AUTHENTICATED, ("get", "head"), DISCOVERY_PATHS),
    # --- scheduler
    allow("scheduler: read", SCHEDULER, READ,
          ("pods", "nodes", "services", "namespaces", "persistentvolumeclaims",
           "persistentvolumes", "replicationcontrollers", "events")),
    allow("scheduler: read apps", SCHEDULER, READ, ("replicasets", "statefulsets"), (APPS,)),
    allow("scheduler: read policy", SCHEDULER, READ, ("poddisruptionbudgets",), ("policy",)),
    allow("scheduler: read storage", SCHEDULER, READ,
          ("storageclasses", "csinodes", "csidrivers", "csistoragecapacities"),
          ("storage.k8s.io",)),
    allow("scheduler: bind", SCHEDULER, ("create",), ("pods/binding", "bindings")),
    allow("scheduler: pod status", SCHEDULER, ("update", "patch"), ("pods/status",)),
    allow("scheduler: events", SCHEDULER, EVENT_WRITE, ("events",), EVENT_GROUPS),
    allow("scheduler: leader lease", SCHEDULER, LEASE_VERBS, ("leases",), (COORDINATION,),
          namespaces=("kube-system",), names=(SCHEDULER_LEASE,)),
    # --- controller-manager
    allow("controller-manager: read", CONTROLLER_MANAGER, READ, ("*", "*/status", "*/scale"),
          ANY),
    allow("controller-manager: write core", CONTROLLER_MANAGER, WRITE, _CM_WRITABLE_CORE),
    allow("controller-manager: write apps", CONTROLLER_MANAGER, WRITE, _CM_WRITABLE_APPS,
          (APPS,)),
    allow("controller-manager: write batch", CONTROLLER_MANAGER, WRITE, ("jobs", "cronjobs"),
          (BATCH,)),
    allow("controller-manager: write endpointslices", CONTROLLER_MANAGER, WRITE,
          ("endpointslices",), (DISCOVERY,)),
    allow("controller-manager: events", CONTROLLER_MANAGER, WRITE, ("events",), (EVENTS,)),
    allow("controller-manager: autoscalers", CONTROLLER_MANAGER, ("update", "patch"),
          ("horizontalpodautoscalers",), ("autoscaling",)),
    allow("controller-manager: status and scale", CONTROLLER_MANAGER, ("update", "patch"),
          ("*/status", "*/scale"), ANY),
    allow("controller-manager: namespaces", CONTROLLER_MANAGER, ("delete", "update", "patch"),
          ("namespaces", "namespaces/finalize")),
    allow("controller-manager: nodes", CONTROLLER_MANAGER, ("update", "patch"), ("nodes",)),
    # The namespace controller empties a namespace of every kind; the garbage collector
    # deletes dependents of any kind, and orphans them: a Service's ownerReferences are
    # rewritten too (the other dependent kinds are writable above).
    allow("controller-manager: delete any", CONTROLLER_MANAGER, ("delete", "deletecollection"),
          ("*",), ANY),
    allow("controller-manager: orphan services", CONTROLLER_MANAGER, ("update", "patch"),
          ("services",)),
    allow("controller-manager: leader lease", CONTROLLER_MANAGER, LEASE_VERBS, ("leases",),
          (COORDINATION,), namespaces=("kube-system",), names=(CONTROLLER_MANAGER_LEASE,)),
    # --- kube-proxy (and its DNS responder)
    allow("kube-proxy: read", KUBE_PROXY, READ, ("services", "endpoints", "nodes")),
    allow("kube-proxy: read endpointslices", KUBE_PROXY, READ, ("endpointslices",),
          (DISCOVERY,)),
    allow("kube-proxy: events", KUBE_PROXY, EVENT_WRITE, ("events",), EVENT_GROUPS),
    # --- nodes (kubelets). Reads are cluster-wide: unlike Kubernetes' node authorizer there
    # is no graph of which secrets/configmaps a node's pods reference, so any node can read
    # any Secret.
    allow("node: read", NODE, READ,
          ("pods", "services", "endpoints", "nodes", "configmaps", "secrets",
           "persistentvolumeclaims", "persistentvolumes")),
    allow("node: own Node", NODE, ("create", "update", "patch"), ("nodes", "nodes/status"),
          where=own_node_object),
    allow("node: own Lease", NODE, LEASE_VERBS, ("leases",), (COORDINATION,),
          namespaces=(NODE_LEASE_NAMESPACE,), where=own_node_object),
    allow("node: status of its pods", NODE, ("update", "patch"), ("pods/status",),
          where=pod_bound_to_node),
    allow("node: delete its pods", NODE, ("delete",), ("pods",), where=pod_bound_to_node),
    # A claim is bound to the node whose kubelet first mounts it (a Docker named volume lives
    # on one node): the kubelet writes the binding annotation, volumeName and Bound status.
    allow("node: bind claims", NODE, ("update", "patch"),
          ("persistentvolumeclaims", "persistentvolumeclaims/status")),
    allow("node: events", NODE, EVENT_WRITE, ("events",), EVENT_GROUPS),
    # Projected serviceAccountToken volumes: a TokenRequest bound to a pod bound to this node
    # (the caller fills pod_node_name from the request's boundObjectRef; apiserver.tokens
    # also checks the pod runs as that ServiceAccount). No other token, no SA reads.
    allow("node: tokens of its pods", NODE, ("create",), ("serviceaccounts/token",),
          where=pod_bound_to_node),
    # --- joining hosts: discovery (anonymous), then their own certificate requests
    allow("everyone: cluster-info", EVERYONE, ("get",), ("configmaps",),
          namespaces=("kube-public",), names=("cluster-info",)),
    allow("bootstrapper: its CSRs", BOOTSTRAPPER, ("create", "get", "watch"),
          ("certificatesigningrequests",), (CERTIFICATES,), where=own_csr),
    allow("node: its serving CSRs", NODE, ("create", "get", "watch"),
          ("certificatesigningrequests",), (CERTIFICATES,), where=own_csr),
    allow("controller-manager: approve CSRs", CONTROLLER_MANAGER, ("update", "patch"),
          ("certificatesigningrequests/approval",), (CERTIFICATES,)),
    # --- service accounts (pods' identities; there is no RBAC to grant more): read-only
    # get/list/watch of every kind in their own namespace except Secrets, plus discovery
    # (above); no writes, no subresources (so no exec, logs or tokens), nothing cluster-wide.
    allow("serviceaccount: read own namespace", SERVICE_ACCOUNT, READ, ("*",), ANY,
          except_resources=("secrets",), where=own_namespace),
)


def authorize(user: str, groups: Iterable[str], attrs: RequestAttributes,
              rules: Iterable[Rule] = RULES) -> Decision:
    """Allowed by the first rule that permits the request, else Forbidden."""
    subject = subject_of(user, groups)
    for rule in rules:
        if rule.permits(subject, attrs):
            return Decision(True, f"allowed by rule {rule.description!r}")
    return Decision(False, forbidden_message(user, attrs))


def forbidden_message(user: str, attrs: RequestAttributes) -> str:
    """Kubernetes' wording (``forbiddenMessage`` in apiserver/pkg/endpoints/handlers)."""
    if not attrs.is_resource_request:
        return f'User "{user}" cannot {attrs.verb} path "{attrs.path}"'
    head = (f'User "{user}" cannot {attrs.verb} resource "{attrs.full_resource}" '
            f'in API group "{attrs.api_group}"')
    if attrs.namespace:
        return f'{head} in the namespace "{attrs.namespace}"'
    return f"{head} at the cluster scope"


def forbidden_error(user: str, attrs: RequestAttributes) -> Forbidden:
    """The 403 Status exactly as kube-apiserver words it:
    ``pods "x" is forbidden: User ...``, ``pods is forbidden: ...`` or ``forbidden: ...``."""
    message = forbidden_message(user, attrs)
    if not attrs.is_resource_request:
        return Forbidden(f"forbidden: {message}")
    qualified = f"{attrs.resource}.{attrs.api_group}" if attrs.api_group else attrs.resource
    prefix = f'{qualified} "{attrs.name}"' if attrs.name else qualified
    details = {"group": attrs.api_group, "kind": attrs.resource}
    if attrs.name:
        details["name"] = attrs.name
    return Forbidden(f"{prefix} is forbidden: {message}", details=details)


__all__ = [
    "AUTHENTICATED_GROUP", "CONTROLLER_MANAGER_LEASE", "Decision", "MASTERS_GROUP",
    "NODE_LEASE_NAMESPACE", "NODES_GROUP", "RULES", "RequestAttributes", "Rule",
    "SCHEDULER_LEASE", "Subject", "Who", "allow", "allow_paths", "authorize",
    "forbidden_error", "forbidden_message", "subject_of",
]
