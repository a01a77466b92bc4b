"""The kubelet's one settings object: built once from the command line (or by a test), then
injected into every part, so no module reads flags or the environment on its own and a test
overrides a setting by building a different ``KubeletConfig``.

Each field's ``metadata`` carries its flag help; ``kubelet.main`` derives the argument parser
from these fields, so a new setting is one line here."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from kubelet.runtime.base import LABEL_CLUSTER, LABEL_NODE

DEFAULT_INFRA_IMAGE = "minik8s/busybox:1.35"
KUBELET_VERSION = "v1.32.0-minik8s"


def _f(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class KubeletConfig:
    node_name: str = _f("", "name of this node (required)")
    cluster_id: str = _f("", "identity of the cluster on this node's containers (default: "
                             "derived from the kubeconfig's CA)")
    kubeconfig: str = _f("", "kubeconfig with this node's identity (system:node:NAME)")
    root_dir: str = _f("/var/lib/minik8s/kubelet", "state directory: pod dirs and volumes")
    node_ip: str = _f("", "InternalIP to report (default: address of the default route's "
                      "interface, else 127.0.0.1)")
    network: str = _f("none", "pod network: none (loopback only) or bridge",
                      choices=("none", "bridge"))
    cluster_dns: str = _f("", "cluster DNS address written into pods' resolv.conf")
    cluster_cidr: str = _f("10.244.0.0/16", "the range all nodes' pod ranges come from")
    service_cidr: str = _f("10.96.0.0/12", "the range Service ClusterIPs come from")
    pod_cidr: str = _f("", "this node's pod range (overrides the Node's spec.podCIDR)")
    register_with_taints: str = _f(
        "", "taints the Node is created with, comma-separated key[=value]:Effect (Effect: "
        "NoSchedule, PreferNoSchedule or NoExecute); a Node that already exists keeps its "
        "own taints")
    node_labels: str = _f(
        "", "labels the Node is created with, comma-separated key=value; in the kubernetes.io "
        "and k8s.io namespaces only the ones a kubelet may set on itself (node-role "
        "labels are an admin's: mkctl label node)")
    allow_image_pull: bool = _f(False, "let the kubelet ask the engine to pull images for "
                                "IfNotPresent/Always (off: local images only)")
    cpu: str = _f("", "CPU capacity to report (default: os.cpu_count())")
    memory: str = _f("", "memory capacity in bytes (or a quantity) to report "
                     "(default: MemTotal from /proc/meminfo)")
    max_pods: int = _f(110, "pods capacity to report")
    crash_loop_backoff_base: float = _f(10.0, "first CrashLoopBackOff delay, seconds")
    crash_loop_backoff_max: float = _f(300.0, "longest CrashLoopBackOff delay, seconds")
    crash_loop_backoff_reset: float = _f(600.0, "a container that ran this long resets "
                                         "its back-off, seconds")
    node_status_update_period: float = _f(10.0, "seconds between Node status heartbeats")
    lease_renew_interval: float = _f(10.0, "seconds between node Lease renewals")
    lease_duration_seconds: int = _f(40, "leaseDurationSeconds of the node Lease")
    sync_frequency: float = _f(30.0, "seconds between periodic resyncs of every pod "
                               "(volume refresh, missed events)")
    orphan_cleanup_period: float = _f(30.0, "seconds between sweeps for containers of "
                                      "unknown pods")
    docker_url: str = _f("unix:///var/run/docker.sock", "Docker engine address")
    pod_infra_image: str = _f(DEFAULT_INFRA_IMAGE, "image of the pod infra (sandbox) "
                              "container; must be local and have sleep, wget")
    port: int = _f(10250, "port of the kubelet's HTTPS server (reported in the Node's "
                   "daemonEndpoints)")
    address: str = _f("", "address of the kubelet's HTTPS server (default: the node IP, "
                      "else 0.0.0.0)")
    tls_cert_file: str = _f("", "serving certificate of the kubelet's HTTPS server (without "
                            "it the server is off)")
    tls_private_key_file: str = _f("", "key of --tls-cert-file")
    client_ca_file: str = _f("", "CA that signs the client certificates the server accepts")
    pod_workers: int = _f(32, "pods synced at once")
    drain_on_exit: bool = _f(False, "remove every pod's containers when the kubelet stops "
                             "(for a node that goes away with it, as a compose worker does); "
                             "off: a stopped or restarted kubelet leaves its pods running")
    container_log_max_size: str = _f("10m", "json-file log max-size per container")
    container_log_max_files: int = _f(3, "json-file log max-file per container")
    verbose: bool = _f(False, "debug logging", flag="-v")

    @property
    def pods_dir(self) -> Path:
        return Path(self.root_dir) / "pods"

    def pod_dir(self, uid: str) -> Path:
        return self.pods_dir / uid

    @property
    def container_labels(self) -> dict[str, str]:
        """The labels that mark a container as this node's (and this cluster's)."""
        labels = {LABEL_NODE: self.node_name}
        if self.cluster_id:
            labels[LABEL_CLUSTER] = self.cluster_id
        return labels

    def replace(self, **changes) -> "KubeletConfig":
        return dataclasses.replace(self, **changes)


__all__ = ["KubeletConfig", "DEFAULT_INFRA_IMAGE", "KUBELET_VERSION"]
