"""The API server's settings: built once from flags (or a config file), then injected into the
app, so tests build their own instead of patching globals."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class APIServerConfig:
    etcd_servers: list[str] = field(default_factory=lambda: ["http://127.0.0.1:2379"])
    # TLS towards https:// etcd members: their CA, and our client certificate and key.
    etcd_cafile: Path | None = None
    etcd_certfile: Path | None = None
    etcd_keyfile: Path | None = None
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
    # Services: ClusterIPs come from this range (its first address is the `kubernetes`
    # Service's), node ports from this one.
    service_cluster_ip_range: str = "10.96.0.0/12"
    service_node_port_range: str = "30000-32767"
    # How often the `kubernetes` Service and its Endpoints are checked and repaired.
    kubernetes_service_sync_seconds: float = 10.0
    # Keys for encrypting Secrets at rest (minik8s.pki.encryption_keys' format); None: stored
    # as plaintext.
    encryption_key_file: Path | None = None
    # Service-account tokens (apiserver.tokens): the RSA key that signs them (default: the
    # PKI's sa.key), the public key(s) that verify them (default: sa.pub), the issuer
    # (``iss``) and the audiences this server accepts (default: the issuer).
    service_account_signing_key_file: Path | None = None
    service_account_key_file: Path | None = None
    service_account_issuer: str = "https://kubernetes.default.svc.cluster.local"
    api_audiences: list[str] = field(default_factory=list)
    # Admission plugins turned off (Kubernetes' --disable-admission-plugins); only
    # "ServiceAccount" can be, for servers that run no serviceaccount controller.
    disable_admission_plugins: list[str] = field(default_factory=list)

    @property
    def advertise_ip(self) -> str:
        """The address the `kubernetes` Endpoints list: the first IP among
        ``advertise_hosts``, else the first non-loopback address the server binds, else
        127.0.0.1."""
        def parsed(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
            try:
                return ipaddress.ip_address(host)
            except ValueError:
                return None
        for host in self.advertise_hosts:
            ip = parsed(host)
            if ip is not None and not ip.is_unspecified:
                return str(ip)
        for host in [self.bind_address, *self.extra_bind_addresses]:
            ip = parsed(host)
            if ip is not None and not ip.is_unspecified and not ip.is_loopback:
                return str(ip)
        return "127.0.0.1"

    @property
    def advertise_address(self) -> str:
        host = self.advertise_hosts[0] if self.advertise_hosts else self.bind_address
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"{host}:{self.port}"


__all__ = ["APIServerConfig"]
