"""One row per policy rule, in both directions, so a change to the table that widens or
narrows someone's access shows up as a named failing case."""

from __future__ import annotations

import pytest

from apiserver.authz import (
    RULES,
    Decision,
    RequestAttributes,
    authorize,
    forbidden_error,
    forbidden_message,
)
from minik8s.api.errors import Forbidden

ADMIN = ("kubernetes-admin", ["system:masters"])
ALICE = ("alice", ["dev"])
SCHED = ("system:kube-scheduler", [])
CM = ("system:kube-controller-manager", [])
PROXY = ("system:kube-proxy", ["system:node-proxier"])
PROXIER_GROUP = ("someone-else", ["system:node-proxier"])
NODE_A = ("system:node:a", ["system:nodes"])
NODE_A_NO_GROUP = ("system:node:a", [])
SA = ("system:serviceaccount:team:builder", ["system:serviceaccounts",
                                             "system:serviceaccounts:team"])
ANON = ("system:anonymous", ["system:unauthenticated"])
BOOTSTRAP = ("system:bootstrap:abcdef", ["system:bootstrappers", "system:authenticated"])


def R(verb, resource, namespace="", name="", group="", sub="", node=None):  # noqa: N802
    return RequestAttributes(verb=verb, api_group=group, resource=resource, subresource=sub,
                             namespace=namespace, name=name, pod_node_name=node)


def P(path, verb="get"):  # noqa: N802
    return RequestAttributes(verb=verb, path=path)


CASES = [
    # --- system:masters
    ("admin deletes a node", ADMIN, R("delete", "nodes", name="x"), True),
    ("admin creates a deployment", ADMIN, R("create", "deployments", "d", group="apps"), True),
    ("admin execs", ADMIN, R("create", "pods", "d", "p", sub="exec"), True),
    ("admin any path", ADMIN, P("/metrics"), True),
    # --- discovery for every authenticated user
    ("user healthz", ALICE, P("/healthz"), True),
    ("user livez check", ALICE, P("/livez/ping"), True),
    ("user readyz", ALICE, P("/readyz"), True),
    ("user version", ALICE, P("/version"), True),
    ("user api", ALICE, P("/api"), True),
    ("user api/v1 discovery", ALICE, P("/api/v1"), True),
    ("user apis", ALICE, P("/apis/apps/v1"), True),
    ("user openapi", ALICE, P("/openapi/v3"), True),
    ("user openapi v2", ALICE, P("/openapi/v2"), True),
    ("user cannot post to healthz", ALICE, P("/healthz", verb="post"), False),
    ("user other path", ALICE, P("/metrics"), False),
    ("user lookalike path", ALICE, P("/healthzfoo"), False),
    ("anonymous healthz", ANON, P("/healthz"), False),
    ("user reads pods", ALICE, R("list", "pods", "default"), False),
    # --- scheduler
    ("sched watch pods", SCHED, R("watch", "pods"), True),
    ("sched list nodes", SCHED, R("list", "nodes"), True),
    ("sched list services", SCHED, R("list", "services"), True),
    ("sched list namespaces", SCHED, R("list", "namespaces"), True),
    ("sched list pvcs", SCHED, R("list", "persistentvolumeclaims"), True),
    ("sched list replicasets", SCHED, R("list", "replicasets", group="apps"), True),
    ("sched list statefulsets", SCHED, R("list", "statefulsets", group="apps"), True),
    ("sched bind", SCHED, R("create", "pods", "default", "p", sub="binding"), True),
    ("sched patch pod status", SCHED, R("patch", "pods", "default", "p", sub="status"), True),
    ("sched update pod status", SCHED, R("update", "pods", "default", "p", sub="status"), True),
    ("sched create event", SCHED, R("create", "events", "default"), True),
    ("sched patch event", SCHED, R("patch", "events", "default", "e"), True),
    ("sched new-style event", SCHED, R("create", "events", "default", group="events.k8s.io"),
     True),
    ("sched get lease", SCHED, R("get", "leases", "kube-system", "kube-scheduler",
                                 group="coordination.k8s.io"), True),
    ("sched create lease", SCHED, R("create", "leases", "kube-system", "kube-scheduler",
                                    group="coordination.k8s.io"), True),
    ("sched update lease", SCHED, R("update", "leases", "kube-system", "kube-scheduler",
                                    group="coordination.k8s.io"), True),
    ("sched other lease", SCHED, R("update", "leases", "kube-system",
                                   "kube-controller-manager", group="coordination.k8s.io"),
     False),
    ("sched lease other ns", SCHED, R("update", "leases", "default", "kube-scheduler",
                                      group="coordination.k8s.io"), False),
    ("sched lists pdbs", SCHED, R("list", "poddisruptionbudgets", group="policy"), True),
    ("sched lists storageclasses", SCHED, R("list", "storageclasses",
                                            group="storage.k8s.io"), True),
    ("sched cannot create pods", SCHED, R("create", "pods", "default"), False),
    ("sched cannot update pod spec", SCHED, R("update", "pods", "default", "p"), False),
    ("sched cannot delete pods", SCHED, R("delete", "pods", "default", "p"), False),
    ("sched cannot read secrets", SCHED, R("get", "secrets", "default", "s"), False),
    ("sched cannot patch nodes", SCHED, R("patch", "nodes", name="n"), False),
    # --- controller-manager
    ("cm reads anything", CM, R("list", "secrets"), True),
    ("cm reads leases", CM, R("watch", "leases", group="coordination.k8s.io"), True),
    ("cm reads pod status", CM, R("get", "pods", "d", "p", sub="status"), True),
    ("cm creates replicasets", CM, R("create", "replicasets", "d", group="apps"), True),
    ("cm updates deployments", CM, R("update", "deployments", "d", "x", group="apps"), True),
    ("cm creates jobs", CM, R("create", "jobs", "d", group="batch"), True),
    ("cm creates pods", CM, R("create", "pods", "d"), True),
    ("cm deletes pods", CM, R("delete", "pods", "d", "p"), True),
    ("cm creates events", CM, R("create", "events", "d"), True),
    ("cm updates endpoints", CM, R("update", "endpoints", "d", "svc"), True),
    ("cm service status", CM, R("update", "services", "d", "svc", sub="status"), True),
    ("cm creates serviceaccounts", CM, R("create", "serviceaccounts", "d"), True),
    ("cm creates secrets", CM, R("create", "secrets", "d"), True),
    ("cm deletes namespaces", CM, R("delete", "namespaces", name="ns"), True),
    ("cm finalizes namespaces", CM, R("update", "namespaces", name="ns", sub="finalize"),
     True),
    ("cm deletes any kind (namespace cleanup)", CM,
     R("deletecollection", "services", "d"), True),
    ("cm deletes leases (namespace cleanup)", CM,
     R("delete", "leases", "d", "l", group="coordination.k8s.io"), True),
    ("cm writes endpointslices", CM,
     R("create", "endpointslices", "d", group="discovery.k8s.io"), True),
    ("cm new-style events", CM, R("create", "events", "d", group="events.k8s.io"), True),
    ("cm updates autoscalers", CM,
     R("update", "horizontalpodautoscalers", "d", "h", group="autoscaling"), True),
    ("cm lease", CM, R("update", "leases", "kube-system", "kube-controller-manager",
                       group="coordination.k8s.io"), True),
    ("cm wrong lease", CM, R("update", "leases", "kube-system", "kube-scheduler",
                             group="coordination.k8s.io"), False),
    ("cm node status", CM, R("patch", "nodes", name="n", sub="status"), True),
    ("cm node taints", CM, R("update", "nodes", name="n"), True),
    ("cm deployment scale", CM, R("update", "deployments", "d", "x", group="apps",
                                  sub="scale"), True),
    ("cm job status", CM, R("patch", "jobs", "d", "j", group="batch", sub="status"), True),
    ("cm cannot create nodes", CM, R("create", "nodes", name="n"), False),
    ("cm orphans a service (garbage collector)", CM, R("update", "services", "d", "svc"), True),
    ("cm cannot create services", CM, R("create", "services", "d", "svc"), False),
    ("cm cannot exec", CM, R("create", "pods", "d", "p", sub="exec"), False),
    ("cm cannot get exec", CM, R("get", "pods", "d", "p", sub="exec"), False),
    ("cm cannot read node proxy", CM, R("get", "nodes", name="n", sub="proxy"), False),
    ("cm cannot bind", CM, R("create", "pods", "d", "p", sub="binding"), False),
    # --- kube-proxy (user and group)
    ("proxy watches services", PROXY, R("watch", "services"), True),
    ("proxy lists endpoints", PROXY, R("list", "endpoints"), True),
    ("proxy gets its node", PROXY, R("get", "nodes", name="a"), True),
    ("proxy creates events", PROXY, R("create", "events", "default"), True),
    ("node-proxier group watches services", PROXIER_GROUP, R("watch", "services"), True),
    ("proxy watches endpointslices", PROXY,
     R("watch", "endpointslices", group="discovery.k8s.io"), True),
    ("proxy cannot list pods", PROXY, R("list", "pods"), False),
    ("proxy cannot read secrets", PROXY, R("list", "secrets"), False),
    ("proxy cannot update services", PROXY, R("update", "services", "d", "s"), False),
    # --- nodes
    ("node lists all pods", NODE_A, R("list", "pods"), True),
    ("node watches pods", NODE_A, R("watch", "pods"), True),
    ("node gets a pod", NODE_A, R("get", "pods", "d", "p"), True),
    ("node lists services", NODE_A, R("list", "services"), True),
    ("node lists endpoints", NODE_A, R("list", "endpoints"), True),
    ("node lists nodes", NODE_A, R("list", "nodes"), True),
    ("node reads configmaps", NODE_A, R("get", "configmaps", "d", "c"), True),
    ("node reads secrets (any)", NODE_A, R("get", "secrets", "d", "s"), True),
    ("node binds a claim", NODE_A, R("patch", "persistentvolumeclaims", "d", "c"), True),
    ("node marks a claim Bound", NODE_A,
     R("patch", "persistentvolumeclaims", "d", "c", sub="status"), True),
    ("node cannot delete claims", NODE_A, R("delete", "persistentvolumeclaims", "d", "c"),
     False),
    ("node creates own Node", NODE_A, R("create", "nodes", name="a"), True),
    ("node updates own Node", NODE_A, R("update", "nodes", name="a"), True),
    ("node patches own Node status", NODE_A, R("patch", "nodes", name="a", sub="status"),
     True),
    ("node A cannot patch node B", NODE_A, R("patch", "nodes", name="b"), False),
    ("node A cannot patch node B status", NODE_A, R("patch", "nodes", name="b", sub="status"),
     False),
    ("node A cannot create node B", NODE_A, R("create", "nodes", name="b"), False),
    ("node cannot create nameless Node", NODE_A, R("create", "nodes"), False),
    ("node cannot delete own Node", NODE_A, R("delete", "nodes", name="a"), False),
    ("node gets own lease", NODE_A, R("get", "leases", "kube-node-lease", "a",
                                      group="coordination.k8s.io"), True),
    ("node creates own lease", NODE_A, R("create", "leases", "kube-node-lease", "a",
                                         group="coordination.k8s.io"), True),
    ("node updates own lease", NODE_A, R("update", "leases", "kube-node-lease", "a",
                                         group="coordination.k8s.io"), True),
    ("node patches own lease", NODE_A, R("patch", "leases", "kube-node-lease", "a",
                                         group="coordination.k8s.io"), True),
    ("node A cannot update lease B", NODE_A, R("update", "leases", "kube-node-lease", "b",
                                               group="coordination.k8s.io"), False),
    ("node lease in other ns", NODE_A, R("update", "leases", "kube-system", "a",
                                         group="coordination.k8s.io"), False),
    ("node patches its pod status", NODE_A,
     R("patch", "pods", "d", "p", sub="status", node="a"), True),
    ("node updates its pod status", NODE_A,
     R("update", "pods", "d", "p", sub="status", node="a"), True),
    ("node A cannot patch pod on B", NODE_A,
     R("patch", "pods", "d", "p", sub="status", node="b"), False),
    ("node cannot patch unbound pod", NODE_A,
     R("patch", "pods", "d", "p", sub="status", node=None), False),
    ("node deletes its pod", NODE_A, R("delete", "pods", "d", "p", node="a"), True),
    ("node A cannot delete pod on B", NODE_A, R("delete", "pods", "d", "p", node="b"), False),
    ("node cannot update pod spec", NODE_A, R("update", "pods", "d", "p", node="a"), False),
    ("node cannot create (mirror) pods", NODE_A, R("create", "pods", "d", "p", node="a"),
     False),
    ("node creates events", NODE_A, R("create", "events", "d"), True),
    ("node patches events", NODE_A, R("patch", "events", "d", "e"), True),
    ("node cannot write secrets", NODE_A, R("update", "secrets", "d", "s"), False),
    ("node cannot read deployments", NODE_A, R("list", "deployments", group="apps"), False),
    ("node gets a token for its pod", NODE_A,
     R("create", "serviceaccounts", "d", "default", sub="token", node="a"), True),
    ("node no token for a pod on B", NODE_A,
     R("create", "serviceaccounts", "d", "default", sub="token", node="b"), False),
    ("node no unbound token", NODE_A,
     R("create", "serviceaccounts", "d", "default", sub="token"), False),
    ("node cannot read serviceaccounts", NODE_A, R("get", "serviceaccounts", "d", "x"), False),
    ("sa cannot create tokens", SA, R("create", "serviceaccounts", "team", "builder",
                                      sub="token"), False),
    ("sa cannot exec in its namespace", SA, R("create", "pods", "team", "p", sub="exec"),
     False),
    ("node name without nodes group", NODE_A_NO_GROUP, R("patch", "nodes", name="a"), False),
    ("node name without group reads", NODE_A_NO_GROUP, R("list", "pods"), False),
    # --- service accounts
    ("sa lists pods in own ns", SA, R("list", "pods", "team"), True),
    ("sa gets configmap in own ns", SA, R("get", "configmaps", "team", "c"), True),
    ("sa watches deployments in own ns", SA, R("watch", "deployments", "team",
                                               group="apps"), True),
    ("sa cannot read secrets", SA, R("get", "secrets", "team", "s"), False),
    ("sa cannot list other ns", SA, R("list", "pods", "other"), False),
    ("sa cannot list cluster-wide", SA, R("list", "pods"), False),
    ("sa cannot write", SA, R("create", "configmaps", "team"), False),
    # Secrets: no verb, no scope, no way round through a subresource
    *[(f"sa cannot {verb} secrets{where}", SA, R(verb, "secrets", ns, name), False)
      for verb in ("get", "list", "watch", "create", "update", "patch", "delete",
                   "deletecollection")
      for where, ns, name in ((" in own ns", "team", "s" if verb not in (
          "list", "watch", "deletecollection") else ""), (" in other ns", "other", ""),
                              (" cluster-wide", "", ""))],
    ("sa cannot get pods/log", SA, R("get", "pods", "team", "p", sub="log"), False),
    ("sa cannot get pods/exec", SA, R("get", "pods", "team", "p", sub="exec"), False),
    ("sa cannot portforward", SA, R("create", "pods", "team", "p", sub="portforward"),
     False),
    ("sa cannot get portforward", SA, R("get", "pods", "team", "p", sub="portforward"),
     False),
    ("sa cannot get own token", SA, R("create", "serviceaccounts", "team", "builder",
                                      sub="token"), False),
    ("sa cannot proxy to pods", SA, R("get", "pods", "team", "p", sub="proxy"), False),
    ("sa cannot proxy to nodes", SA, R("get", "nodes", name="n", sub="proxy"), False),
    ("sa cannot read pod status", SA, R("get", "pods", "team", "p", sub="status"), False),
    ("sa cannot read nodes", SA, R("list", "nodes"), False),
    ("sa cannot watch all namespaces", SA, R("watch", "pods"), False),
    ("sa cannot list namespaces", SA, R("list", "namespaces"), False),
    ("sa cannot read encryption status", SA, P("/encryption/status"), False),
    ("sa cannot read metrics path", SA, P("/metrics"), False),
    ("sa reads serviceaccounts in own ns", SA, R("get", "serviceaccounts", "team", "b"), True),
    ("sa reads apps in own ns", SA, R("get", "deployments", "team", "d", group="apps"), True),
    ("user cannot read encryption status", ALICE, P("/encryption/status"), False),
    ("node cannot read encryption status", NODE_A, P("/encryption/status"), False),
    ("admin reads encryption status", ADMIN, P("/encryption/status"), True),
    # --- joining hosts (minik8s join): discovery, bootstrap tokens, their CSRs
    ("anonymous reads cluster-info", ANON,
     R("get", "configmaps", "kube-public", "cluster-info"), True),
    ("anonymous no other configmap", ANON, R("get", "configmaps", "kube-public", "x"), False),
    ("anonymous cannot write cluster-info", ANON,
     R("update", "configmaps", "kube-public", "cluster-info"), False),
    # the bootstrap signer (controller-manager) watches token Secrets and signs cluster-info
    ("cm watches token secrets", CM, R("watch", "secrets", "kube-system"), True),
    ("cm watches cluster-info", CM, R("watch", "configmaps", "kube-public"), True),
    ("cm signs cluster-info", CM, R("update", "configmaps", "kube-public", "cluster-info"),
     True),
    ("node cannot sign cluster-info", NODE_A,
     R("update", "configmaps", "kube-public", "cluster-info"), False),
    ("bootstrapper cannot sign cluster-info", BOOTSTRAP,
     R("update", "configmaps", "kube-public", "cluster-info"), False),
    ("bootstrapper reads its CSR name (join's token check)", BOOTSTRAP,
     R("get", "certificatesigningrequests", name="node-csr-abcdef-probe",
       group="certificates.k8s.io"), True),
    ("bootstrapper creates its CSR", BOOTSTRAP,
     R("create", "certificatesigningrequests", name="node-csr-abcdef-1",
       group="certificates.k8s.io"), True),
    ("bootstrapper no other's CSR", BOOTSTRAP,
     R("get", "certificatesigningrequests", name="node-csr-zzzzzz-1",
       group="certificates.k8s.io"), False),
    ("bootstrapper cannot list CSRs", BOOTSTRAP,
     R("list", "certificatesigningrequests", group="certificates.k8s.io"), False),
    ("bootstrapper cannot read pods", BOOTSTRAP, R("list", "pods", "default"), False),
    ("node creates its serving CSR", NODE_A,
     R("create", "certificatesigningrequests", name="kubelet-serving-a-1",
       group="certificates.k8s.io"), True),
    ("node no serving CSR of B", NODE_A,
     R("get", "certificatesigningrequests", name="kubelet-serving-b-1",
       group="certificates.k8s.io"), False),
    ("cm approves CSRs", CM, R("update", "certificatesigningrequests", name="x",
                               group="certificates.k8s.io", sub="approval"), True),
    ("user cannot approve CSRs", ALICE, R("update", "certificatesigningrequests", name="x",
                                          group="certificates.k8s.io", sub="approval"), False),
    ("sa cannot read logs", SA, R("get", "pods", "team", "p", sub="log"), False),
    ("sa healthz", SA, P("/healthz"), True),
    # --- strangers
    ("user with no role", ALICE, R("get", "pods", "default", "p"), False),
    ("anonymous", ANON, R("get", "pods", "default", "p"), False),
]


@pytest.mark.parametrize("who,attrs,allowed", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_policy(who, attrs, allowed):
    decision = authorize(*who, attrs)
    assert isinstance(decision, Decision)
    assert decision.allowed is allowed, decision.reason
    if not allowed:
        assert decision.reason == forbidden_message(who[0], attrs)


def test_every_rule_is_exercised():
    """A row added to the table without a test case fails here."""
    used = set()
    for _, who, attrs, allowed in CASES:
        decision = authorize(*who, attrs)
        if allowed:
            used.add(decision.reason)
    described = {f"allowed by rule {r.description!r}" for r in RULES}
    missing = described - used
    assert not missing, missing


def test_forbidden_message_namespaced():
    attrs = R("list", "pods", "default")
    assert forbidden_message("bob", attrs) == (
        'User "bob" cannot list resource "pods" in API group "" in the namespace "default"')


def test_forbidden_message_cluster_scope_and_subresource():
    attrs = R("patch", "nodes", name="b", sub="status")
    assert forbidden_message("system:node:a", attrs) == (
        'User "system:node:a" cannot patch resource "nodes/status" in API group "" '
        'at the cluster scope')


def test_forbidden_message_group_and_path():
    attrs = R("create", "deployments", "ns1", group="apps")
    assert forbidden_message("bob", attrs) == (
        'User "bob" cannot create resource "deployments" in API group "apps" '
        'in the namespace "ns1"')
    assert forbidden_message("bob", P("/metrics")) == 'User "bob" cannot get path "/metrics"'


def test_forbidden_error_is_a_kubernetes_status():
    err = forbidden_error("bob", R("get", "deployments", "ns1", "web", group="apps"))
    assert isinstance(err, Forbidden)
    status = err.to_status()
    assert status["code"] == 403 and status["reason"] == "Forbidden"
    assert status["message"] == (
        'deployments.apps "web" is forbidden: User "bob" cannot get resource "deployments" '
        'in API group "apps" in the namespace "ns1"')
    assert status["details"] == {"group": "apps", "kind": "deployments", "name": "web"}
    assert forbidden_error("bob", R("list", "pods", "d")).message.startswith(
        "pods is forbidden: ")
    assert forbidden_error("bob", P("/metrics")).message == (
        'forbidden: User "bob" cannot get path "/metrics"')
