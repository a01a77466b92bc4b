"""The PKI is checked the way its consumers use it: chains verify, SANs are there, the
discovery hash matches kubeadm's definition, restarts keep files, and a real TLS handshake
with a client certificate yields the identity the authorizer expects."""

from __future__ import annotations

import hashlib
import ipaddress
import re
import shutil
import socket
import ssl
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from minik8s.pki import (
    PKIError,
    PKIPaths,
    ca_public_key_hash,
    create_ca,
    ensure_pki,
    identity_from_cert,
    issue_cert,
    issue_node_cert,
    make_csr,
    sign_csr,
)


def _cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def _sans(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def _eku(cert: x509.Certificate) -> list:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


@pytest.fixture(scope="module")
def ca() -> tuple[bytes, bytes]:
    return create_ca()


@pytest.fixture
def pki(tmp_path: Path) -> PKIPaths:
    return ensure_pki(tmp_path / "pki", hosts=["10.1.2.3", "master.example"])


def _snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(directory.iterdir()) if not p.name.startswith(".")}


# --------------------------------------------------------------------------- primitives


def test_ca_extensions(ca):
    cert = _cert(ca[0])
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "minik8s-ca"
    cert.verify_directly_issued_by(cert)


def test_server_cert_chain_and_sans(ca):
    cert_pem, key_pem = issue_cert(*ca, common_name="srv", dns_names=["api.example"],
                                   ip_addresses=["192.0.2.7", "::1"], server=True,
                                   client=False)
    cert = _cert(cert_pem)
    cert.verify_directly_issued_by(_cert(ca[0]))
    sans = _sans(cert)
    assert sans.get_values_for_type(x509.DNSName) == ["api.example"]
    assert sans.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("192.0.2.7"), ipaddress.ip_address("::1")]
    assert _eku(cert) == [ExtendedKeyUsageOID.SERVER_AUTH]
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = _cert(ca[0]).extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    key = serialization.load_pem_private_key(key_pem, None)
    assert key.public_key() == cert.public_key()


def test_client_cert_identity(ca):
    cert_pem, _ = issue_cert(*ca, common_name="alice", organizations=["dev", "ops"])
    assert _eku(_cert(cert_pem)) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert identity_from_cert(cert_pem) == ("alice", ["dev", "ops"])
    der = _cert(cert_pem).public_bytes(serialization.Encoding.DER)
    assert identity_from_cert(der) == ("alice", ["dev", "ops"])


def test_cert_needs_a_purpose(ca):
    with pytest.raises(ValueError):
        issue_cert(*ca, common_name="x", server=False, client=False)


def test_make_and_sign_csr(ca):
    csr_pem, key_pem = make_csr("system:node:n1", ["system:nodes"])
    cert = _cert(sign_csr(*ca, csr_pem, days=30))
    cert.verify_directly_issued_by(_cert(ca[0]))
    assert identity_from_cert(cert) == ("system:node:n1", ["system:nodes"])
    key = serialization.load_pem_private_key(key_pem, None)
    assert key.public_key() == cert.public_key()
    assert _eku(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 29 < lifetime.days <= 30


def _der_element(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER element at ``pos``."""
    tag, length, pos = data[pos], data[pos + 1], pos + 2
    if length & 0x80:
        count = length & 0x7F
        length, pos = int.from_bytes(data[pos:pos + count], "big"), pos + count
    return tag, pos, pos + length


def _spki_from_cert_der(der: bytes) -> bytes:
    """The 7th element of TBSCertificate (after [0] version, serial, sigalg, issuer,
    validity, subject), found by walking the DER by hand."""
    _, cert_start, _ = _der_element(der, 0)
    _, tbs_start, _ = _der_element(der, cert_start)
    pos = tbs_start
    for _ in range(6):
        pos = _der_element(der, pos)[2]
    tag, _, end = _der_element(der, pos)
    assert tag == 0x30
    return der[pos:end]


def test_ca_hash_matches_independent_computation(ca):
    got = ca_public_key_hash(ca[0])
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", got)
    der = _cert(ca[0]).public_bytes(serialization.Encoding.DER)
    assert got == "sha256:" + hashlib.sha256(_spki_from_cert_der(der)).hexdigest()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl binary")
def test_ca_hash_matches_kubeadm_recipe(ca, tmp_path):
    # kubeadm's documented recipe:
    # openssl x509 -pubkey -in ca.crt | openssl pkey -pubin -outform der | sha256sum
    (tmp_path / "ca.crt").write_bytes(ca[0])
    pub = subprocess.run(["openssl", "x509", "-pubkey", "-noout", "-in", tmp_path / "ca.crt"],
                         check=True, capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub,
                         check=True, capture_output=True).stdout
    assert ca_public_key_hash(ca[0]) == "sha256:" + hashlib.sha256(der).hexdigest()


def test_identity_from_empty_peercert_is_an_error():
    with pytest.raises(ValueError):
        identity_from_cert({})


# --------------------------------------------------------------------------- layout


def test_ensure_pki_layout(pki: PKIPaths):
    names = {p.name for p in pki.directory.iterdir() if not p.name.startswith(".")}
    assert names == {
        "ca.crt", "ca.key", "apiserver.crt", "apiserver.key", "sa.key", "sa.pub",
        "admin.crt", "admin.key", "scheduler.crt", "scheduler.key",
        "controller-manager.crt", "controller-manager.key", "kube-proxy.crt", "kube-proxy.key",
        "apiserver-kubelet-client.crt", "apiserver-kubelet-client.key"}
    for p in pki.directory.glob("*.key"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    ca_cert = _cert(pki.ca_cert.read_bytes())
    for cert_path, expected in [
        (pki.admin_cert, ("kubernetes-admin", ["system:masters"])),
        (pki.scheduler_cert, ("system:kube-scheduler", [])),
        (pki.controller_manager_cert, ("system:kube-controller-manager", [])),
        (pki.kube_proxy_cert, ("system:kube-proxy", ["system:node-proxier"])),
        (pki.pair("apiserver-kubelet-client")[0],
         ("kube-apiserver-kubelet-client", ["system:masters"])),
    ]:
        cert = _cert(cert_path.read_bytes())
        cert.verify_directly_issued_by(ca_cert)
        assert identity_from_cert(cert) == expected


def test_apiserver_sans(pki: PKIPaths):
    sans = _sans(_cert(pki.apiserver_cert.read_bytes()))
    dns = set(sans.get_values_for_type(x509.DNSName))
    ips = {str(i) for i in sans.get_values_for_type(x509.IPAddress)}
    assert {"127.0.0.1", "::1", "10.1.2.3"} <= ips
    assert {"localhost", socket.gethostname().lower(), "master.example", "kubernetes",
            "kubernetes.default", "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local"} <= dns


def test_sa_key_pair(pki: PKIPaths):
    key = serialization.load_pem_private_key(pki.sa_key.read_bytes(), None)
    pub = serialization.load_pem_public_key(pki.sa_pub.read_bytes())
    assert key.public_key() == pub


def test_ensure_pki_is_idempotent(pki: PKIPaths):
    before = _snapshot(pki.directory)
    again = ensure_pki(pki.directory, hosts=["10.1.2.3", "master.example"])
    assert again == pki
    assert _snapshot(pki.directory) == before


def test_new_host_reissues_only_apiserver_cert(pki: PKIPaths):
    before = _snapshot(pki.directory)
    ensure_pki(pki.directory, hosts=["10.1.2.3", "master.example", "10.9.9.9"])
    after = _snapshot(pki.directory)
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"apiserver.crt"}
    cert = _cert(pki.apiserver_cert.read_bytes())
    ips = {str(i) for i in _sans(cert).get_values_for_type(x509.IPAddress)}
    assert {"10.9.9.9", "10.1.2.3"} <= ips
    cert.verify_directly_issued_by(_cert(pki.ca_cert.read_bytes()))
    # The key was kept, so the pair on disk stays consistent.
    key = serialization.load_pem_private_key(pki.apiserver_key.read_bytes(), None)
    assert key.public_key() == cert.public_key()


def test_missing_client_cert_is_recreated_alone(pki: PKIPaths):
    pki.scheduler_cert.unlink()
    before = _snapshot(pki.directory)
    ensure_pki(pki.directory, hosts=["10.1.2.3", "master.example"])
    after = _snapshot(pki.directory)
    assert {n for n in after if before.get(n) != after[n]} == {"scheduler.crt"}


def test_half_a_ca_is_refused(pki: PKIPaths):
    pki.ca_key.unlink()
    with pytest.raises(PKIError):
        ensure_pki(pki.directory, hosts=[])


def test_node_cert(pki: PKIPaths):
    cert_path, key_path = issue_node_cert(pki, "worker-1")
    cert = _cert(cert_path.read_bytes())
    cert.verify_directly_issued_by(_cert(pki.ca_cert.read_bytes()))
    assert identity_from_cert(cert) == ("system:node:worker-1", ["system:nodes"])
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    mtime = cert_path.stat().st_mtime_ns
    assert issue_node_cert(pki.directory, "worker-1") == (cert_path, key_path)
    assert cert_path.stat().st_mtime_ns == mtime
    with pytest.raises(ValueError):
        issue_node_cert(pki, "../evil")


# --------------------------------------------------------------------------- TLS


def _serve_once(server_ctx: ssl.SSLContext, listener: socket.socket, out: dict) -> None:
    conn, _ = listener.accept()
    try:
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            out["peercert"] = tls.getpeercert()
            out["peercert_der"] = tls.getpeercert(binary_form=True)
            tls.sendall(tls.recv(16).upper())
    except Exception as exc:  # noqa: BLE001 - surfaced by the test thread
        out["error"] = exc


def test_tls_handshake_with_client_cert(pki: PKIPaths):
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(pki.apiserver_cert, pki.apiserver_key)
    server_ctx.load_verify_locations(cafile=pki.ca_cert)
    server_ctx.verify_mode = ssl.CERT_REQUIRED

    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(cafile=pki.ca_cert)
    client_ctx.load_cert_chain(pki.admin_cert, pki.admin_key)

    out: dict = {}
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        thread = threading.Thread(target=_serve_once, args=(server_ctx, listener, out))
        thread.start()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"ping")
                assert tls.recv(16) == b"PING"
        thread.join(5)
    assert "error" not in out, out.get("error")
    assert identity_from_cert(out["peercert"]) == ("kubernetes-admin", ["system:masters"])
    assert identity_from_cert(out["peercert_der"]) == ("kubernetes-admin", ["system:masters"])


def test_tls_rejects_foreign_ca(pki: PKIPaths, ca):
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(cadata=ca[0].decode())  # a different CA
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(pki.apiserver_cert, pki.apiserver_key)
    a, b = socket.socketpair()
    out: dict = {}

    def serve():
        try:
            with server_ctx.wrap_socket(a, server_side=True):
                pass
        except (ssl.SSLError, OSError) as exc:
            out["error"] = exc

    thread = threading.Thread(target=serve)
    thread.start()
    with pytest.raises(ssl.SSLCertVerificationError):
        client_ctx.wrap_socket(b, server_hostname="localhost")
    b.close()
    thread.join(5)
