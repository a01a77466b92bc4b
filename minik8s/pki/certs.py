"""Certificates are the cluster's identities: every daemon and every node authenticates to the
API server with a client certificate whose CN is the user and whose O entries are the groups,
exactly as Kubernetes' x509 authenticator reads them, so the real ``kubectl`` and the official
Python client work with the same files. The CA is made once and then reused: re-creating it
would silently invalidate every node that already joined, so the layout code below only ever
fills in what is missing, renews what is expiring, and refuses to guess when half a CA is
on disk. EC P-256 keeps key generation cheap enough to run at every start of a test cluster.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import hashlib
import ipaddress
import os
import re
import socket
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Certificates start slightly in the past so a peer whose clock lags a little accepts them.
_CLOCK_SKEW = _dt.timedelta(minutes=5)
# A certificate is renewed once less than this share of its lifetime is left.
_RENEW_FRACTION = 0.1

_KUBERNETES_SERVICE_NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)

# name on disk -> (CN, O...): the identities the control plane's own clients use.
CLIENT_IDENTITIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "admin": ("kubernetes-admin", ("system:masters",)),
    "scheduler": ("system:kube-scheduler", ()),
    "controller-manager": ("system:kube-controller-manager", ()),
    "kube-proxy": ("system:kube-proxy", ("system:node-proxier",)),
    # the API server's identity towards kubelets (logs, exec), as kubeadm issues it
    "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", ("system:masters",)),
}

_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


class PKIError(RuntimeError):
    """The PKI directory is in a state that cannot be repaired without losing the CA."""


# --------------------------------------------------------------------------- primitives


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: Any) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _public_pem(key: Any) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _load_cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def _load_key(pem: bytes) -> Any:
    return serialization.load_pem_private_key(pem, password=None)


def _spki_der(public_key: Any) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def _name(common_name: str, organizations: Iterable[str] = ()) -> x509.Name:
    # Go's pkix.Name puts O before CN; keep the same order so `openssl x509 -subject`
    # output looks like kubeadm's.
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _general_names(hosts: Iterable[str]) -> list[x509.GeneralName]:
    """IP literals become IPAddress SANs, everything else a (lower-cased) DNSName."""
    out: list[x509.GeneralName] = []
    for host in hosts:
        host = host.strip().strip("[]")
        if not host:
            continue
        try:
            name: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            name = x509.DNSName(host.lower())
        if name not in out:
            out.append(name)
    return out


def _validity(builder: x509.CertificateBuilder, days: int) -> x509.CertificateBuilder:
    now = _now()
    return builder.not_valid_before(now - _CLOCK_SKEW).not_valid_after(
        now + _dt.timedelta(days=days))


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False,
                         key_encipherment=not cert_sign, data_encipherment=False,
                         key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign,
                         encipher_only=False, decipher_only=False)


def _extended_usage(server: bool, client: bool) -> x509.ExtendedKeyUsage:
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    if not usages:
        raise ValueError("a certificate must be for server or client use (or both)")
    return x509.ExtendedKeyUsage(usages)


def _sign_leaf(ca_cert: x509.Certificate, ca_key: Any, public_key: Any, subject: x509.Name,
               sans: Sequence[x509.GeneralName], *, server: bool, client: bool,
               days: int) -> x509.Certificate:
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(_extended_usage(server, client), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return _validity(builder, days).sign(ca_key, hashes.SHA256())


# --------------------------------------------------------------------------- public API


def create_ca(common_name: str = "minik8s-ca", days: int = 3650) -> tuple[bytes, bytes]:
    """A self-signed CA: ``(cert_pem, key_pem)``."""
    key = _new_key()
    name = _name(common_name)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
    )
    cert = _validity(builder, days).sign(key, hashes.SHA256())
    return _cert_pem(cert), _key_pem(key)


def issue_cert(ca_cert_pem: bytes, ca_key_pem: bytes, *, common_name: str,
               organizations: Sequence[str] = (), dns_names: Sequence[str] = (),
               ip_addresses: Sequence[str] = (), server: bool = False, client: bool = True,
               days: int = 365, key_pem: bytes | None = None) -> tuple[bytes, bytes]:
    """A leaf certificate signed by the CA: ``(cert_pem, key_pem)``.

    ``key_pem`` reuses an existing key (a renewal then only replaces the certificate file,
    so a reader never sees a certificate paired with the wrong key).
    """
    key = _load_key(key_pem) if key_pem else _new_key()
    sans = [x509.DNSName(d.lower()) for d in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(str(ip).strip("[]"))) for ip in ip_addresses]
    cert = _sign_leaf(_load_cert(ca_cert_pem), _load_key(ca_key_pem), key.public_key(),
                      _name(common_name, organizations), sans, server=server, client=client,
                      days=days)
    return _cert_pem(cert), _key_pem(key)


def make_csr(common_name: str, organizations: Sequence[str] = (),
             hosts: Sequence[str] = ()) -> tuple[bytes, bytes]:
    """A certificate signing request and its new key: ``(csr_pem, key_pem)``; ``hosts``
    become its subject alternative names (IP literals as IP addresses)."""
    key = _new_key()
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        _name(common_name, organizations))
    if hosts:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(_general_names(hosts)), critical=False)
    csr = builder.sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def sign_csr(ca_cert_pem: bytes, ca_key_pem: bytes, csr_pem: bytes, *, days: int = 365,
             client: bool = True, server: bool = False) -> bytes:
    """Sign a CSR's CN and O entries (and, for server use, its SANs) into a certificate.

    The caller decides whether the requested identity is acceptable (``minik8s join``
    checks that the CN is the joining node's ``system:node:<name>``); this only signs.
    """
    csr = x509.load_pem_x509_csr(csr_pem)
    if not csr.is_signature_valid:
        raise ValueError("certificate signing request has an invalid signature")
    user, groups = identity_from_cert(csr)
    sans: list[x509.GeneralName] = []
    if server:
        try:
            sans = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
        except x509.ExtensionNotFound:
            pass
    cert = _sign_leaf(_load_cert(ca_cert_pem), _load_key(ca_key_pem), csr.public_key(),
                      _name(user, groups), sans, server=server, client=client, days=days)
    return _cert_pem(cert)


def ca_public_key_hash(ca_cert_pem: bytes) -> str:
    """kubeadm's ``--discovery-token-ca-cert-hash``: SHA-256 of the CA's DER SPKI."""
    der = _spki_der(_load_cert(ca_cert_pem).public_key())
    return "sha256:" + hashlib.sha256(der).hexdigest()


def cluster_id(ca_cert_pem: bytes) -> str:
    """A short, stable identity of a cluster (the start of its CA public key digest): kubelets
    label their containers with it so that two local clusters never touch each other's."""
    return ca_public_key_hash(ca_cert_pem).split(":", 1)[1][:16]


def identity_from_cert(cert: Mapping[str, Any] | bytes | x509.Certificate
                       | x509.CertificateSigningRequest) -> tuple[str, list[str]]:
    """``(user, groups)`` from a peer certificate: CN is the user, each O a group.

    Accepts ``SSLSocket.getpeercert()``'s dict, DER or PEM bytes (``getpeercert(True)``),
    or a parsed certificate. Where several CNs exist the last wins, as in Go's crypto/x509.
    """
    if isinstance(cert, Mapping):
        user, groups = _identity_from_peercert(cert)
    else:
        if isinstance(cert, (bytes, bytearray, memoryview)):
            data = bytes(cert)
            cert = (_load_cert(data) if data.lstrip().startswith(b"-----BEGIN")
                    else x509.load_der_x509_certificate(data))
        user, groups = _identity_from_name(cert.subject)
    if not user:
        raise ValueError("certificate subject has no common name")
    return user, groups


def _identity_from_peercert(cert: Mapping[str, Any]) -> tuple[str, list[str]]:
    user, groups = "", []
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                user = value
            elif key == "organizationName":
                groups.append(value)
    return user, groups


def _identity_from_name(name: x509.Name) -> tuple[str, list[str]]:
    cns = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return (str(cns[-1].value) if cns else ""), [str(o.value) for o in orgs]


# --------------------------------------------------------------------------- on-disk layout


@dataclass(frozen=True)
class PKIPaths:
    """Where ``ensure_pki`` keeps each file; build one for a directory with ``at``."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    apiserver_cert: Path
    apiserver_key: Path
    sa_key: Path
    sa_pub: Path
    admin_cert: Path
    admin_key: Path
    scheduler_cert: Path
    scheduler_key: Path
    controller_manager_cert: Path
    controller_manager_key: Path
    kube_proxy_cert: Path
    kube_proxy_key: Path

    @classmethod
    def at(cls, directory: Path | str) -> "PKIPaths":
        d = Path(directory)
        return cls(
            directory=d, ca_cert=d / "ca.crt", ca_key=d / "ca.key",
            apiserver_cert=d / "apiserver.crt", apiserver_key=d / "apiserver.key",
            sa_key=d / "sa.key", sa_pub=d / "sa.pub",
            admin_cert=d / "admin.crt", admin_key=d / "admin.key",
            scheduler_cert=d / "scheduler.crt", scheduler_key=d / "scheduler.key",
            controller_manager_cert=d / "controller-manager.crt",
            controller_manager_key=d / "controller-manager.key",
            kube_proxy_cert=d / "kube-proxy.crt", kube_proxy_key=d / "kube-proxy.key",
        )

    def pair(self, name: str) -> tuple[Path, Path]:
        """``(cert, key)`` for ``ca``, ``apiserver`` or a name of ``CLIENT_IDENTITIES``."""
        return self.directory / f"{name}.crt", self.directory / f"{name}.key"

    def node(self, node_name: str) -> tuple[Path, Path]:
        """``(cert, key)`` of a node's client certificate."""
        return self.pair(f"node-{node_name}")


def _write(path: Path, data: bytes, mode: int) -> None:
    """Atomic replace with the final mode set before any byte is written."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _write_pair(cert_path: Path, key_path: Path, cert_pem: bytes, key_pem: bytes) -> None:
    if not (key_path.exists() and key_path.read_bytes() == key_pem):
        _write(key_path, key_pem, 0o600)
    _write(cert_path, cert_pem, 0o644)


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialise concurrent ``ensure_pki`` calls (several daemons starting at once)."""
    with open(directory / ".lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _same_key(cert: x509.Certificate, key: Any) -> bool:
    return _spki_der(cert.public_key()) == _spki_der(key.public_key())


def _ensure_ca(paths: PKIPaths) -> tuple[bytes, bytes, bool]:
    """``(cert_pem, key_pem, created)``; never replaces an existing CA."""
    have_cert, have_key = paths.ca_cert.exists(), paths.ca_key.exists()
    if have_cert != have_key:
        present = paths.ca_cert if have_cert else paths.ca_key
        raise PKIError(f"{present} exists without its pair; restore it or remove both")
    if have_cert:
        cert_pem, key_pem = paths.ca_cert.read_bytes(), paths.ca_key.read_bytes()
        if not _same_key(_load_cert(cert_pem), _load_key(key_pem)):
            raise PKIError(f"{paths.ca_key} does not belong to {paths.ca_cert}")
        return cert_pem, key_pem, False
    cert_pem, key_pem = create_ca()
    _write_pair(paths.ca_cert, paths.ca_key, cert_pem, key_pem)
    return cert_pem, key_pem, True


def _read_pair(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, Any] | None:
    try:
        return _load_cert(cert_path.read_bytes()), _load_key(key_path.read_bytes())
    except (OSError, ValueError, TypeError):
        return None


def _reusable_key(key_path: Path) -> bytes | None:
    try:
        pem = key_path.read_bytes()
        _load_key(pem)
        return pem
    except (OSError, ValueError, TypeError):
        return None


def _expiring(cert: x509.Certificate) -> bool:
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return end - _now() < (end - start) * _RENEW_FRACTION


def _signed_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca_cert)
        return True
    except Exception:  # noqa: BLE001 - InvalidSignature, ValueError, TypeError all mean "no"
        return False


def _sans(cert: x509.Certificate) -> list[x509.GeneralName]:
    try:
        return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return []


def _is_current(pair: tuple[x509.Certificate, Any] | None, ca_cert: x509.Certificate, *,
                common_name: str, organizations: Sequence[str],
                sans: Sequence[x509.GeneralName] = ()) -> bool:
    """Whether an on-disk pair can be kept: same CA, same identity, all SANs, not expiring."""
    if pair is None:
        return False
    cert, key = pair
    existing = _sans(cert)
    return (_same_key(cert, key) and _signed_by(cert, ca_cert) and not _expiring(cert)
            and identity_from_cert(cert) == (common_name, list(organizations))
            and all(s in existing for s in sans))


def _apiserver_hosts(hosts: Sequence[str]) -> list[str]:
    return ["127.0.0.1", "localhost", socket.gethostname(), "::1", *hosts,
            *_KUBERNETES_SERVICE_NAMES]


def _ensure_apiserver(paths: PKIPaths, ca_cert_pem: bytes, ca_key_pem: bytes,
                      hosts: Sequence[str]) -> None:
    ca_cert = _load_cert(ca_cert_pem)
    wanted = _general_names(_apiserver_hosts(hosts))
    pair = _read_pair(paths.apiserver_cert, paths.apiserver_key)
    if _is_current(pair, ca_cert, common_name="kube-apiserver", organizations=(), sans=wanted):
        return
    # Keep names an older certificate answered to, so clients that used them keep working.
    previous = _sans(pair[0]) if pair and _signed_by(pair[0], ca_cert) else []
    sans = wanted + [s for s in previous if s not in wanted]
    key = _reusable_key(paths.apiserver_key)
    key_obj = _load_key(key) if key else _new_key()
    cert = _sign_leaf(ca_cert, _load_key(ca_key_pem), key_obj.public_key(),
                      _name("kube-apiserver"), sans, server=True, client=False, days=365)
    _write_pair(paths.apiserver_cert, paths.apiserver_key, _cert_pem(cert), _key_pem(key_obj))


def _ensure_client(cert_path: Path, key_path: Path, ca_cert_pem: bytes, ca_key_pem: bytes, *,
                   common_name: str, organizations: Sequence[str],
                   hosts: Sequence[str] = ()) -> None:
    sans = _general_names(hosts)
    pair = _read_pair(cert_path, key_path)
    if _is_current(pair, _load_cert(ca_cert_pem), common_name=common_name,
                   organizations=organizations, sans=sans):
        return
    cert_pem, key_pem = issue_cert(
        ca_cert_pem, ca_key_pem, common_name=common_name, organizations=organizations,
        dns_names=[s.value for s in sans if isinstance(s, x509.DNSName)],
        ip_addresses=[str(s.value) for s in sans if isinstance(s, x509.IPAddress)],
        server=bool(hosts), client=True, key_pem=_reusable_key(key_path))
    _write_pair(cert_path, key_path, cert_pem, key_pem)


def _ensure_sa_key(paths: PKIPaths) -> None:
    """The service-account token signing key (RSA 2048: RS256 JWTs, as kube-apiserver signs
    them) and its public half. A key of another type (older PKIs had an unused EC key) is
    replaced: no token was ever signed with it."""
    key_pem = _reusable_key(paths.sa_key)
    if key_pem is None or not isinstance(_load_key(key_pem), rsa.RSAPrivateKey):
        key_pem = _key_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        _write(paths.sa_key, key_pem, 0o600)
    pub_pem = _public_pem(_load_key(key_pem))
    if not (paths.sa_pub.exists() and paths.sa_pub.read_bytes() == pub_pem):
        _write(paths.sa_pub, pub_pem, 0o644)


def ensure_pki(directory: Path | str, *, hosts: Sequence[str] = ()) -> PKIPaths:
    """Create the cluster's PKI on first start and reuse it afterwards.

    Leaf certificates are (re-)issued only when missing, unreadable, signed by another CA,
    close to expiry, or (for the API server) lacking one of the requested host names.
    ``hosts`` are extra API server names/addresses (node IP, the ``kubernetes`` Service's
    ClusterIP, ...); IP literals become IP SANs, the rest DNS SANs.
    """
    paths = PKIPaths.at(directory)
    paths.directory.mkdir(parents=True, exist_ok=True)
    with _locked(paths.directory):
        ca_cert_pem, ca_key_pem, _ = _ensure_ca(paths)
        _ensure_apiserver(paths, ca_cert_pem, ca_key_pem, hosts)
        _ensure_sa_key(paths)
        for name, (common_name, organizations) in CLIENT_IDENTITIES.items():
            _ensure_client(*paths.pair(name), ca_cert_pem, ca_key_pem,
                           common_name=common_name, organizations=organizations)
    return paths


def issue_node_cert(pki: PKIPaths | Path | str, node_name: str, *,
                    hosts: Sequence[str] = ()) -> tuple[Path, Path]:
    """The node's ``system:node:<name>`` / ``system:nodes`` client certificate: ``(cert, key)``.

    Reused while still valid. With ``hosts`` it is also a serving certificate for them
    (the kubelet's own HTTPS endpoint).
    """
    if not _NODE_NAME.match(node_name) or len(node_name) > 253:
        raise ValueError(f"invalid node name {node_name!r}")
    paths = pki if isinstance(pki, PKIPaths) else PKIPaths.at(pki)
    if not (paths.ca_cert.is_file() and paths.ca_key.is_file()):
        raise PKIError(f"no CA in {paths.directory}; run ensure_pki first")
    with _locked(paths.directory):
        ca_cert_pem, ca_key_pem = paths.ca_cert.read_bytes(), paths.ca_key.read_bytes()
        cert_path, key_path = paths.node(node_name)
        _ensure_client(cert_path, key_path, ca_cert_pem, ca_key_pem,
                       common_name=f"system:node:{node_name}",
                       organizations=("system:nodes",), hosts=hosts)
    return cert_path, key_path


__all__ = [
    "CLIENT_IDENTITIES", "PKIError", "PKIPaths", "ca_public_key_hash", "create_ca",
    "ensure_pki", "identity_from_cert", "issue_cert", "issue_node_cert", "make_csr", "sign_csr",
]
