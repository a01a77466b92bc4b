"""The cluster's connection settings live in Kubernetes' own kubeconfig format, so one file
serves mkctl, every minik8s daemon, the real ``kubectl`` and the official Python client.
Lookup follows kubectl (explicit path, then ``KUBECONFIG``, then a default file), except that
the default is ``~/.minik8s/kubeconfig`` so a real cluster's ``~/.kube/config`` is never
picked up by accident. Only what a client-certificate or token cluster needs is supported;
``exec`` and ``auth-provider`` plugins are ignored.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import ssl
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

DEFAULT_KUBECONFIG = "~/.minik8s/kubeconfig"


class KubeconfigError(ValueError):
    """A kubeconfig that cannot be found or used; the message is a single line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


@dataclass
class ClientConfig:
    """Everything a client needs to reach and authenticate to one API server."""

    server: str
    ca_pem: bytes | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    token: str | None = None
    namespace: str = "default"
    insecure: bool = False
    tls_server_name: str | None = None

    @property
    def server_hostname(self) -> str | None:
        """The name to send as SNI and check the server certificate against.

        An ``SSLContext`` cannot carry it: pass it to ``wrap_socket(server_hostname=...)``,
        or to httpx as the ``sni_hostname`` request extension.
        """
        return self.tls_server_name or urlsplit(self.server).hostname

    def ssl_context(self) -> ssl.SSLContext:
        """A TLS >= 1.2 client context trusting ``ca_pem`` and presenting the client cert."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.ca_pem:
            ctx.load_verify_locations(cadata=self.ca_pem.decode("ascii"))
        else:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
        if self.cert_pem and self.key_pem:
            _load_client_pair(ctx, self.cert_pem, self.key_pem)
        return ctx


# --------------------------------------------------------------------------- TLS helpers


def _load_client_pair(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """``load_cert_chain`` only reads files: hand it an anonymous in-memory file when the
    platform has one, and a 0600 temporary file (removed at once) otherwise."""
    data = cert_pem.rstrip(b"\n") + b"\n" + key_pem
    with _pem_file(data) as path:
        ctx.load_cert_chain(path)


@contextlib.contextmanager
def _pem_file(data: bytes) -> Iterator[str]:
    fd = _memfd(data)
    if fd is not None:
        try:
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    fd, path = tempfile.mkstemp(prefix="minik8s-client-", suffix=".pem")
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.close(fd)
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _memfd(data: bytes) -> int | None:
    if not hasattr(os, "memfd_create") or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        fd = os.memfd_create("minik8s-client-pem", os.MFD_CLOEXEC)
    except OSError:
        return None
    os.write(fd, data)
    return fd


# --------------------------------------------------------------------------- writing


def _text(pem: bytes | str) -> bytes:
    return pem.encode() if isinstance(pem, str) else pem


def _b64(pem: bytes | str) -> str:
    return base64.b64encode(_text(pem)).decode("ascii")


def _user_entry(cert_pem: bytes | str | None, key_pem: bytes | str | None,
                token: str | None) -> dict[str, str]:
    user: dict[str, str] = {}
    if cert_pem:
        user["client-certificate-data"] = _b64(cert_pem)
    if key_pem:
        user["client-key-data"] = _b64(key_pem)
    if token:
        user["token"] = token
    return user


def write_kubeconfig(path: Path | str, *, server: str, ca_pem: bytes | str,
                     cert_pem: bytes | str | None = None, key_pem: bytes | str | None = None,
                     token: str | None = None, cluster_name: str = "minik8s",
                     user_name: str = "admin", namespace: str | None = None,
                     context_name: str | None = None) -> Path:
    """Write a self-contained kubeconfig (credentials embedded as ``*-data``), mode 0600."""
    context_name = context_name or f"{user_name}@{cluster_name}"
    context: dict[str, str] = {"cluster": cluster_name, "user": user_name}
    if namespace:
        context["namespace"] = namespace
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": {
            "server": server, "certificate-authority-data": _b64(ca_pem)}}],
        "users": [{"name": user_name, "user": _user_entry(cert_pem, key_pem, token)}],
        "contexts": [{"name": context_name, "context": context}],
        "current-context": context_name,
        "preferences": {},
    }
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write_private(path, yaml.safe_dump(doc, sort_keys=False).encode())
    return path


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- loading


def find_kubeconfig(path: Path | str | None = None) -> Path:
    """The file to use: ``path``, else the first existing ``KUBECONFIG`` entry, else the
    default. Like kubectl, a set ``KUBECONFIG`` is authoritative (no fallback past it)."""
    if path:
        candidate = Path(path).expanduser()
        if not candidate.is_file():
            raise KubeconfigError(f"kubeconfig {candidate} not found")
        return candidate
    env = os.environ.get("KUBECONFIG", "")
    if env.strip():
        entries = [Path(p).expanduser() for p in env.split(os.pathsep) if p]
        for entry in entries:
            if entry.is_file():
                return entry
        raise KubeconfigError(f"no kubeconfig found in KUBECONFIG={env}")
    default = Path(os.path.expanduser(DEFAULT_KUBECONFIG))
    if not default.is_file():
        raise KubeconfigError(
            f"kubeconfig {default} not found (set KUBECONFIG or pass --kubeconfig)")
    return default


def load_kubeconfig(path: Path | str | None = None,
                    context: str | None = None) -> ClientConfig:
    """The ``ClientConfig`` of ``context`` (default: ``current-context``)."""
    file = find_kubeconfig(path)
    doc = _parse(file)
    name = context or doc.get("current-context") or _only_context(doc, file)
    ctx = _named(doc, "contexts", "context", name, file)
    cluster = _named(doc, "clusters", "cluster", ctx.get("cluster"), file)
    user = _named(doc, "users", "user", ctx["user"], file) if ctx.get("user") else {}
    return _client_config(file.parent, cluster, user, ctx, file)


def _parse(file: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise KubeconfigError(f"cannot read kubeconfig {file}: {exc}") from None
    if not isinstance(doc, dict):
        raise KubeconfigError(f"kubeconfig {file} is not a mapping")
    return doc


def _only_context(doc: Mapping[str, Any], file: Path) -> str:
    contexts = doc.get("contexts") or []
    if len(contexts) == 1 and isinstance(contexts[0], dict) and contexts[0].get("name"):
        return contexts[0]["name"]
    raise KubeconfigError(f"no current-context set in {file}")


def _named(doc: Mapping[str, Any], section: str, field: str, name: str | None,
           file: Path) -> dict[str, Any]:
    singular = section[:-1]
    if not name:
        raise KubeconfigError(f"{singular} name missing in {file}")
    for entry in doc.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry.get(field) or {}
    raise KubeconfigError(f'{singular} "{name}" not found in {file}')


def _client_config(base: Path, cluster: Mapping[str, Any], user: Mapping[str, Any],
                   ctx: Mapping[str, Any], file: Path) -> ClientConfig:
    server = cluster.get("server")
    if not server:
        raise KubeconfigError(f"cluster in {file} has no server")
    return ClientConfig(
        server=str(server).rstrip("/"),
        ca_pem=_material(cluster, "certificate-authority", base),
        cert_pem=_material(user, "client-certificate", base),
        key_pem=_material(user, "client-key", base),
        token=_token(user, base),
        namespace=ctx.get("namespace") or "default",
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
        tls_server_name=cluster.get("tls-server-name") or None,
    )


def _material(entry: Mapping[str, Any], key: str, base: Path) -> bytes | None:
    """``<key>-data`` (base64) wins over ``<key>`` (a path relative to the kubeconfig)."""
    data = entry.get(f"{key}-data")
    if data:
        try:
            return base64.b64decode("".join(str(data).split()), validate=True)
        except (binascii.Error, ValueError):
            raise KubeconfigError(f"{key}-data is not valid base64") from None
    if entry.get(key):
        return _read_relative(base, entry[key])
    return None


def _read_relative(base: Path, name: str) -> bytes:
    path = (base / Path(name).expanduser())
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KubeconfigError(f"cannot read {path}: {exc.strerror or exc}") from None


def _token(user: Mapping[str, Any], base: Path) -> str | None:
    if user.get("token"):
        return str(user["token"])
    if user.get("tokenFile"):
        return _read_relative(base, user["tokenFile"]).decode().strip() or None
    return None


__all__ = [
    "ClientConfig", "DEFAULT_KUBECONFIG", "KubeconfigError", "find_kubeconfig",
    "load_kubeconfig", "write_kubeconfig",
]
