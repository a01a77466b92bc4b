"""etcd's own PKI, kept apart from the cluster CA as kubeadm keeps it (``pki/etcd/``): a CA
that only etcd trusts, so a node certificate signed by the cluster CA can never talk to
etcd. The server and peer certificates serve and authenticate (etcd members dial each other
with the peer pair); the API server's client certificate is the only other identity."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from minik8s.pki.certs import PKIPaths, _ensure_ca, _ensure_client, _locked


@dataclass(frozen=True)
class EtcdPKI:
    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    def pair(self, name: str) -> tuple[Path, Path]:
        """``(cert, key)`` of ``server``, ``peer``, ``apiserver-etcd-client`` (or a member's
        ``server-<name>`` / ``peer-<name>`` when several run on one machine)."""
        return self.directory / f"{name}.crt", self.directory / f"{name}.key"

    def tls_files(self, member: str = "") -> dict[str, Path]:
        """What ``etcd_command(tls=...)`` takes for this member."""
        suffix = f"-{member}" if member else ""
        cert, key = self.pair(f"server{suffix}")
        peer_cert, peer_key = self.pair(f"peer{suffix}")
        return {"ca": self.ca_cert, "cert": cert, "key": key, "peer_cert": peer_cert,
                "peer_key": peer_key}

    @property
    def client(self) -> tuple[Path, Path]:
        return self.pair("apiserver-etcd-client")


def ensure_etcd_pki(directory: Path | str, hosts: Sequence[str] = (),
                    members: Sequence[str] = ("",)) -> EtcdPKI:
    """Create (or complete) etcd's CA, a server and a peer pair per member (``""``: the
    single member, files ``server.crt``/``peer.crt``) for ``hosts`` plus loopback, and the
    API server's client pair. Existing valid files are kept, as ``ensure_pki`` does."""
    pki = EtcdPKI(Path(directory))
    pki.directory.mkdir(parents=True, exist_ok=True)
    names = ["localhost", "127.0.0.1", "::1", socket.gethostname(), *hosts]
    with _locked(pki.directory):
        ca_cert, ca_key, _ = _ensure_ca(PKIPaths.at(pki.directory))
        for member in members:
            suffix = f"-{member}" if member else ""
            _ensure_client(*pki.pair(f"server{suffix}"), ca_cert, ca_key,
                           common_name=f"kube-etcd{suffix}", organizations=(), hosts=names)
            _ensure_client(*pki.pair(f"peer{suffix}"), ca_cert, ca_key,
                           common_name=f"kube-etcd-peer{suffix}", organizations=(),
                           hosts=names)
        _ensure_client(*pki.client, ca_cert, ca_key,
                       common_name="kube-apiserver-etcd-client",
                       organizations=("system:masters",))
    return pki


__all__ = ["EtcdPKI", "ensure_etcd_pki"]
