"""Serving the app over HTTPS only, with client certificates.

uvicorn does not put the TLS peer certificate into the ASGI scope. ``PeerCertHttpToolsProtocol``
copies ``getpeercert()`` into the per-connection state at ``connection_made``, which uvicorn
then copies into every request's ``scope["state"]`` (WebSocket upgrades included, since the
upgrade hands the same state on). That relies on uvicorn internals, hence the pinned version
in pyproject.toml. TLS asks for a client certificate without requiring one
(``CERT_OPTIONAL``) so token clients can still connect; TLS 1.2 is the minimum.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import ssl
import sys
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from minik8s.pki import ensure_pki
from minik8s.wscompat import LenientWebSocketProtocol
from minik8s.runtime import configfile

from apiserver.app import create_app
from apiserver.config import APIServerConfig

log = logging.getLogger("apiserver")


class PeerCertHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        cert = ssl_object.getpeercert() if ssl_object is not None else None
        self.app_state = {**self.app_state, "peercert": cert or None}


def server_ssl_context(config: APIServerConfig) -> ssl.SSLContext:
    hosts = config.advertise_hosts + [config.bind_address] + config.extra_bind_addresses
    pki = ensure_pki(config.pki_dir, hosts=[h for h in hosts if h not in ("0.0.0.0", "::")])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(pki.apiserver_cert, pki.apiserver_key)
    ctx.load_verify_locations(cafile=str(pki.ca_cert))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def uvicorn_config(config: APIServerConfig, app: Any | None = None) -> uvicorn.Config:
    ctx = server_ssl_context(config)
    return uvicorn.Config(
        app or create_app(config), host=config.bind_address, port=config.port,
        http=PeerCertHttpToolsProtocol, loop="uvloop", ssl_context_factory=lambda _cfg, _default: ctx,
        ws=LenientWebSocketProtocol,  # kubectl's port-forward subprotocol is not a token
        ssl_certfile=None, lifespan="on", log_level="warning", access_log=False,
        timeout_keep_alive=90, timeout_graceful_shutdown=3)


def parse_args(argv: list[str] | None) -> APIServerConfig:
    p = argparse.ArgumentParser(prog="minik8s apiserver",
                                description="The minik8s API server (HTTPS, backed by etcd).")
    p.add_argument("--config", type=Path, help="YAML file whose keys are the flag names "
                   "below (or APIServerConfig fields in snake_case); flags given on the "
                   "command line win")
    p.add_argument("--etcd-servers", help="comma-separated etcd client URLs")
    p.add_argument("--etcd-cafile", type=Path, help="CA of https:// etcd members")
    p.add_argument("--etcd-certfile", type=Path, help="client certificate for etcd")
    p.add_argument("--etcd-keyfile", type=Path, help="key of --etcd-certfile")
    p.add_argument("--bind-address")
    p.add_argument("--secure-port", type=int)
    p.add_argument("--pki-dir", type=Path)
    p.add_argument("--advertise-address", action="append", default=None,
                   help="address or name to put in the serving certificate (repeatable); "
                        "the first IP is also the address of the `kubernetes` Endpoints "
                        "(default: the first non-loopback address bound, or 127.0.0.1)")
    p.add_argument("--service-cluster-ip-range", help="range ClusterIPs are allocated from "
                   "(default 10.96.0.0/12)")
    p.add_argument("--service-node-port-range", help="range node ports are allocated from "
                   "(default 30000-32767)")
    p.add_argument("--encryption-key-file", type=Path, help="keys that encrypt Secrets at "
                   "rest (written by `minik8s up`; re-read when it changes)")
    p.add_argument("--token-auth-file", type=Path)
    p.add_argument("--event-ttl", type=int, help="seconds an Event is kept")
    p.add_argument("--compaction-interval", type=float, help="seconds between compactions")
    p.add_argument("--cluster-cidr", help="range the nodes' pod ranges come from "
                   "(default 10.244.0.0/16; empty: no allocation)")
    p.add_argument("--node-cidr-mask-size", type=int, help="prefix length of a node's pod "
                   "range (default 24)")
    p.add_argument("--extra-bind-address", action="append", default=None,
                   help="another address to listen on besides --bind-address (repeatable)")
    p.add_argument("--kubelet-client-certificate", type=Path,
                   help="client certificate for kubelets (default: apiserver-kubelet-client)")
    p.add_argument("--kubelet-client-key", type=Path)
    p.add_argument("--kubelet-certificate-authority", type=Path,
                   help="CA of the kubelets' serving certificates (default: the cluster CA)")
    p.add_argument("--service-account-signing-key-file", type=Path,
                   help="RSA key that signs service-account tokens (default: PKI sa.key)")
    p.add_argument("--service-account-key-file", type=Path,
                   help="PEM public key(s) that verify service-account tokens "
                        "(default: PKI sa.pub)")
    p.add_argument("--service-account-issuer", help="iss of service-account tokens "
                   "(default https://kubernetes.default.svc.cluster.local)")
    p.add_argument("--api-audiences", help="comma-separated audiences tokens must name "
                   "(default: the issuer)")
    p.add_argument("--disable-admission-plugins", help="comma-separated admission plugins "
                   "to turn off (ServiceAccount)")
    p.add_argument("-v", "--verbose", action="store_true")
    a = configfile.parse_args(p, argv, extra_keys=APIServerConfig.__dataclass_fields__)
    settings: dict[str, Any] = dict(a.config_extras)
    overrides = {
        "etcd_servers": a.etcd_servers.split(",") if a.etcd_servers else None,
        "etcd_cafile": a.etcd_cafile, "etcd_certfile": a.etcd_certfile,
        "etcd_keyfile": a.etcd_keyfile,
        "bind_address": a.bind_address, "port": a.secure_port, "pki_dir": a.pki_dir,
        "advertise_hosts": a.advertise_address, "token_auth_file": a.token_auth_file,
        "event_ttl_seconds": a.event_ttl, "compaction_interval_seconds": a.compaction_interval,
        "cluster_cidr": a.cluster_cidr, "node_cidr_mask_size": a.node_cidr_mask_size,
        "extra_bind_addresses": a.extra_bind_address,
        "kubelet_client_certificate": a.kubelet_client_certificate,
        "kubelet_client_key": a.kubelet_client_key,
        "kubelet_certificate_authority": a.kubelet_certificate_authority,
        "service_cluster_ip_range": a.service_cluster_ip_range,
        "service_node_port_range": a.service_node_port_range,
        "encryption_key_file": a.encryption_key_file,
        "service_account_signing_key_file": a.service_account_signing_key_file,
        "service_account_key_file": a.service_account_key_file,
        "service_account_issuer": a.service_account_issuer,
        "api_audiences": a.api_audiences.split(",") if a.api_audiences else None,
        "disable_admission_plugins": (a.disable_admission_plugins.split(",")
                                      if a.disable_admission_plugins else None),
    }
    settings.update({k: v for k, v in overrides.items() if v is not None})
    for k in ("pki_dir", "token_auth_file", "kubelet_client_certificate", "kubelet_client_key",
              "kubelet_certificate_authority", "etcd_cafile", "etcd_certfile", "etcd_keyfile",
              "service_account_signing_key_file", "service_account_key_file",
              "encryption_key_file"):
        if isinstance(settings.get(k), str):
            settings[k] = Path(settings[k]).expanduser()
    unknown_plugins = set(settings.get("disable_admission_plugins") or []) - {"ServiceAccount"}
    if unknown_plugins:
        p.error(f"--disable-admission-plugins: unknown plugins {', '.join(sorted(unknown_plugins))}"
                f" (known: ServiceAccount)")
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return APIServerConfig(**settings)


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    server = uvicorn.Server(uvicorn_config(config))
    hosts = [config.bind_address] + [h for h in config.extra_bind_addresses
                                     if h != config.bind_address]
    log.info("serving on %s (etcd %s)", ", ".join(f"https://{h}:{config.port}" for h in hosts),
             ",".join(config.etcd_servers))
    try:
        server.run(sockets=[_listen(h, config.port) for h in hosts] if len(hosts) > 1 else None)
    except KeyboardInterrupt:
        pass
    return 0 if server.started else 1


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["main", "uvicorn_config", "server_ssl_context", "PeerCertHttpToolsProtocol"]
