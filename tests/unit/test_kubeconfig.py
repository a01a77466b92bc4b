"""Kubeconfig files must round-trip, be found where kubectl users expect them, accept both
embedded and file-path credentials, and fail with one clear line; the resulting SSL context
must really authenticate against a server using the cluster's PKI."""

from __future__ import annotations

import base64
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
import yaml

from minik8s.client.kubeconfig import (
    ClientConfig,
    KubeconfigError,
    find_kubeconfig,
    load_kubeconfig,
    write_kubeconfig,
)
from minik8s.pki import PKIPaths, ensure_pki, identity_from_cert

CA = b"-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n"
CERT = b"-----BEGIN CERTIFICATE-----\nCERT\n-----END CERTIFICATE-----\n"
KEY = b"-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----\n"


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> PKIPaths:
    return ensure_pki(tmp_path_factory.mktemp("pki"), hosts=[])


def _write(path: Path, **kw) -> Path:
    kw.setdefault("server", "https://127.0.0.1:6443")
    kw.setdefault("ca_pem", CA)
    return write_kubeconfig(path, **kw)


def _doc(path: Path, contexts, clusters, users, current="ctx") -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": current,
        "contexts": contexts, "clusters": clusters, "users": users}))
    return path


# --------------------------------------------------------------------------- write / load


def test_round_trip(tmp_path):
    path = _write(tmp_path / "a" / "b" / "config", cert_pem=CERT, key_pem=KEY,
                  namespace="team")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    cfg = load_kubeconfig(path)
    assert cfg == ClientConfig(server="https://127.0.0.1:6443", ca_pem=CA, cert_pem=CERT,
                               key_pem=KEY, token=None, namespace="team")


def test_written_format_is_kubectls(tmp_path):
    doc = yaml.safe_load(_write(tmp_path / "config", cert_pem=CERT, key_pem=KEY,
                                cluster_name="c1", user_name="u1").read_text())
    assert doc["apiVersion"] == "v1" and doc["kind"] == "Config"
    cluster = doc["clusters"][0]
    assert cluster["name"] == "c1"
    assert base64.b64decode(cluster["cluster"]["certificate-authority-data"]) == CA
    user = doc["users"][0]
    assert user["name"] == "u1"
    assert base64.b64decode(user["user"]["client-certificate-data"]) == CERT
    assert base64.b64decode(user["user"]["client-key-data"]) == KEY
    assert doc["contexts"][0]["context"] == {"cluster": "c1", "user": "u1"}
    assert doc["current-context"] == doc["contexts"][0]["name"]


def test_token_and_default_namespace(tmp_path):
    cfg = load_kubeconfig(_write(tmp_path / "config", token="abc.def"))
    assert cfg.token == "abc.def"
    assert cfg.cert_pem is None and cfg.key_pem is None
    assert cfg.namespace == "default"


def test_rewrite_keeps_private_mode(tmp_path):
    path = _write(tmp_path / "config", token="t1")
    path.chmod(0o644)
    _write(path, token="t2")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_kubeconfig(path).token == "t2"


# --------------------------------------------------------------------------- lookup order


def test_explicit_path_beats_env(tmp_path, monkeypatch):
    explicit = _write(tmp_path / "explicit", token="explicit")
    monkeypatch.setenv("KUBECONFIG", str(_write(tmp_path / "env", token="env")))
    assert load_kubeconfig(explicit).token == "explicit"


def test_env_first_existing_entry(tmp_path, monkeypatch):
    second = _write(tmp_path / "second", token="second")
    third = _write(tmp_path / "third", token="third")
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{second}:{third}")
    _write(Path.home() / ".minik8s" / "kubeconfig", token="home")
    assert find_kubeconfig() == second
    assert load_kubeconfig().token == "second"


def test_env_beats_home(tmp_path, monkeypatch):
    _write(Path.home() / ".minik8s" / "kubeconfig", token="home")
    monkeypatch.setenv("KUBECONFIG", str(_write(tmp_path / "env", token="env")))
    assert load_kubeconfig().token == "env"


def test_home_default(tmp_path):
    _write(Path.home() / ".minik8s" / "kubeconfig", token="home")
    assert load_kubeconfig().token == "home"


def test_env_set_but_nothing_exists_is_an_error(tmp_path, monkeypatch):
    _write(Path.home() / ".minik8s" / "kubeconfig", token="home")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nope"))
    with pytest.raises(KubeconfigError, match="KUBECONFIG"):
        load_kubeconfig()


# --------------------------------------------------------------------------- file forms


def test_file_paths_relative_to_kubeconfig(tmp_path):
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.crt").write_bytes(CA)
    (tmp_path / "certs" / "me.crt").write_bytes(CERT)
    (tmp_path / "me.key").write_bytes(KEY)
    (tmp_path / "token").write_text("tok-from-file\n")
    path = _doc(tmp_path / "config",
                contexts=[{"name": "ctx", "context": {"cluster": "c", "user": "u",
                                                      "namespace": "ns1"}}],
                clusters=[{"name": "c", "cluster": {
                    "server": "https://10.0.0.1:6443/", "certificate-authority": "certs/ca.crt",
                    "tls-server-name": "kubernetes", "insecure-skip-tls-verify": False}}],
                users=[{"name": "u", "user": {
                    "client-certificate": "certs/me.crt",
                    "client-key": str(tmp_path / "me.key"), "tokenFile": "token"}}])
    cfg = load_kubeconfig(path)
    assert (cfg.ca_pem, cfg.cert_pem, cfg.key_pem) == (CA, CERT, KEY)
    assert cfg.token == "tok-from-file"
    assert cfg.server == "https://10.0.0.1:6443"
    assert cfg.namespace == "ns1"
    assert cfg.tls_server_name == "kubernetes" and cfg.server_hostname == "kubernetes"


def test_select_context_and_insecure(tmp_path):
    path = _doc(tmp_path / "config", current="a",
                contexts=[{"name": "a", "context": {"cluster": "ca", "user": "ua"}},
                          {"name": "b", "context": {"cluster": "cb", "user": "ub"}}],
                clusters=[{"name": "ca", "cluster": {"server": "https://a:1"}},
                          {"name": "cb", "cluster": {"server": "https://b:2",
                                                     "insecure-skip-tls-verify": True}}],
                users=[{"name": "ua", "user": {"token": "ta"}},
                       {"name": "ub", "user": {"token": "tb"}}])
    assert load_kubeconfig(path).server == "https://a:1"
    b = load_kubeconfig(path, context="b")
    assert (b.server, b.token, b.insecure) == ("https://b:2", "tb", True)
    assert b.server_hostname == "b"
    ctx = b.ssl_context()
    assert ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname


# --------------------------------------------------------------------------- errors


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    assert isinstance(exc.value, ValueError)
    return message


def test_missing_explicit_file(tmp_path):
    with pytest.raises(KubeconfigError) as exc:
        load_kubeconfig(tmp_path / "nope")
    assert "not found" in _one_line(exc)


def test_missing_default_file():
    with pytest.raises(KubeconfigError) as exc:
        load_kubeconfig()
    assert ".minik8s/kubeconfig" in _one_line(exc)


def test_missing_context(tmp_path):
    path = _write(tmp_path / "config", token="t")
    with pytest.raises(KubeconfigError) as exc:
        load_kubeconfig(path, context="other")
    assert _one_line(exc) == f'context "other" not found in {path}'


def test_missing_cluster_entry(tmp_path):
    path = _doc(tmp_path / "config",
                contexts=[{"name": "ctx", "context": {"cluster": "gone", "user": "u"}}],
                clusters=[], users=[{"name": "u", "user": {}}])
    with pytest.raises(KubeconfigError, match='cluster "gone" not found'):
        load_kubeconfig(path)


def test_missing_referenced_file(tmp_path):
    path = _doc(tmp_path / "config",
                contexts=[{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
                clusters=[{"name": "c", "cluster": {"server": "https://x",
                                                    "certificate-authority": "nope.crt"}}],
                users=[{"name": "u", "user": {}}])
    with pytest.raises(KubeconfigError) as exc:
        load_kubeconfig(path)
    assert "nope.crt" in _one_line(exc)


def test_bad_base64_and_bad_yaml(tmp_path):
    path = _doc(tmp_path / "config",
                contexts=[{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
                clusters=[{"name": "c", "cluster": {
                    "server": "https://x", "certificate-authority-data": "!!not base64!!"}}],
                users=[{"name": "u", "user": {}}])
    with pytest.raises(KubeconfigError, match="base64"):
        load_kubeconfig(path)
    (tmp_path / "junk").write_text("- just\n- a list\n")
    with pytest.raises(KubeconfigError):
        load_kubeconfig(tmp_path / "junk")


# --------------------------------------------------------------------------- TLS


def test_ssl_context_authenticates_with_embedded_credentials(tmp_path, pki):
    path = write_kubeconfig(tmp_path / "admin.conf", server="https://127.0.0.1:1",
                            ca_pem=pki.ca_cert.read_bytes(),
                            cert_pem=pki.admin_cert.read_bytes(),
                            key_pem=pki.admin_key.read_bytes())
    cfg = load_kubeconfig(path)
    client_ctx = cfg.ssl_context()
    assert client_ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert list(tmp_path.iterdir()) == [path]  # no credential file left behind

    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(pki.apiserver_cert, pki.apiserver_key)
    server_ctx.load_verify_locations(cafile=pki.ca_cert)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    out: dict = {}

    def serve(listener):
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                out["peer"] = identity_from_cert(tls.getpeercert())
                tls.sendall(b"ok")
        except Exception as exc:  # noqa: BLE001
            out["error"] = exc

    with socket.create_server(("127.0.0.1", 0)) as listener:
        thread = threading.Thread(target=serve, args=(listener,))
        thread.start()
        with socket.create_connection(listener.getsockname(), timeout=5) as raw:
            with client_ctx.wrap_socket(raw, server_hostname=cfg.server_hostname) as tls:
                assert tls.recv(2) == b"ok"
        thread.join(5)
    assert out == {"peer": ("kubernetes-admin", ["system:masters"])}


def test_ssl_context_without_memfd_removes_temp_file(tmp_path, pki, monkeypatch):
    import tempfile

    from minik8s.client import kubeconfig as kc

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(kc, "_memfd", lambda data: None)
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    cfg = ClientConfig(server="https://127.0.0.1:1", ca_pem=pki.ca_cert.read_bytes(),
                       cert_pem=pki.admin_cert.read_bytes(),
                       key_pem=pki.admin_key.read_bytes())
    cfg.ssl_context()
    assert list(scratch.iterdir()) == []
