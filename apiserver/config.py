"""The API server's settings: built once from flags (or a config file), then injected into the
app, so tests build their own instead of patching globals."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class APIServerConfig:
    etcd_servers: list[str] = field(default_factory=lambda: ["http://127.0.0.1:2379"])
    bind_address: str = "127.0.0.1"
    port: int = 6443
    # Where the PKI lives (ca.crt, apiserver.crt/.key, sa.key ...); created when missing.
    pki_dir: Path = field(default_factory=lambda: Path.home() / ".minik8s" / "pki")
    # Extra names and addresses for the serving certificate.
    advertise_hosts: list[str] = field(default_factory=list)
    # Static bearer tokens (Kubernetes' --token-auth-file CSV: token,user,uid,"g1,g2").
    token_auth_file: Path | None = None
    max_request_bytes: int = 3 * 1024 * 1024
    event_ttl_seconds: int = 3600
    # etcd history kept for watches, and how often compaction / defragmentation run.
    compaction_interval_seconds: float = 300.0
    defrag_interval_seconds: float = 3600.0
    watch_cache_window: int = 10_000
    watch_timeout_seconds: int = 1800
    bookmark_interval_seconds: float = 5.0
    # Pod ranges: each Node registered without spec.podCIDR gets the lowest free
    # /node_cidr_mask_size of cluster_cidr (empty cluster_cidr: no allocation).
    cluster_cidr: str = "10.244.0.0/16"
    node_cidr_mask_size: int = 24
    # Further addresses to listen on besides bind_address (the node bridge of `minik8s up`).
    extra_bind_addresses: list[str] = field(default_factory=list)
    # Talking to kubelets (pods/log, pods/exec): our client certificate (default: the PKI's
    # apiserver-kubelet-client pair) and the CA their serving certificates are checked
    # against (default: the cluster CA).
    kubelet_client_certificate: Path | None = None
    kubelet_client_key: Path | None = None
    kubelet_certificate_authority: Path | None = None

    @property
    def advertise_address(self) -> str:
        host = self.advertise_hosts[0] if self.advertise_hosts else self.bind_address
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"{host}:{self.port}"


__all__ = ["APIServerConfig"]
