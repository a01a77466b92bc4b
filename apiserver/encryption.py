"""Secrets encrypted at rest, as Kubernetes' ``aesgcm`` provider stores them.

The whole stored object is encrypted, not only ``data``: the last-applied-configuration
annotation ``kubectl apply`` writes repeats every value. A stored value reads
``k8s:enc:aesgcm:v1:<key name>:`` + 12-byte nonce + AES-GCM ciphertext, with the etcd key
as associated data (a value copied under another key does not decrypt). The first key of
the key file encrypts; every key decrypts; a value without the prefix is plaintext written
before encryption was turned on and still reads. A value not under the first key is
"stale", so a write of an unchanged Secret still rewrites it (key rotation relies on that).

The key file (format: ``minik8s.pki.encryption_keys``) is re-read when it changes (checked
at most once a second, on use, and on SIGHUP), so a rotation needs no restart. Only key
names are ever logged. ``GET /encryption/status`` reports them to system:masters only (it is
not under ``/healthz``, which every authenticated identity, pods included, may read): its
``?check=secrets`` reads every Secret's stored form from etcd.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi import Request

from minik8s.api.errors import InternalError
from minik8s.api.meta import Obj
from minik8s.pki.encryption_keys import KeyFileError, read_keys

from apiserver.storage import Codec

log = logging.getLogger(__name__)

PREFIX = b"k8s:enc:aesgcm:v1:"
NONCE_SIZE = 12
# What is encrypted: Secrets (their etcd prefix, as ResourceType.storage_prefix makes it).
ENCRYPTED_PREFIXES = ("/registry/core/secrets/",)
_CHECK_SECONDS = 1.0


class KeyRing:
    """The keys of the key file, reloaded when the file changes."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._keys: list[tuple[str, AESGCM]] = []
        self._by_name: dict[str, AESGCM] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self.reload(strict=True)

    @property
    def primary(self) -> str:
        return self._keys[0][0]

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self._keys]

    def reload(self, *, strict: bool = False) -> bool:
        """Read the file if it changed; whether the keys changed. A bad file keeps the keys
        in use (and is an error at start, ``strict``)."""
        with self._lock:
            self._checked = time.monotonic()
            try:
                st = os.stat(self.path)
                stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            except OSError as exc:
                if strict:
                    raise KeyFileError(f"cannot read the encryption key file {self.path}: "
                                       f"{exc.strerror}") from None
                log.error("encryption key file %s: %s; keeping keys %s", self.path,
                          exc.strerror, ", ".join(self.names))
                return False
            if stamp == self._stamp:
                return False
            try:
                keys = read_keys(self.path)
            except KeyFileError as err:
                if strict:
                    raise
                log.error("%s; keeping keys %s", err, ", ".join(self.names))
                self._stamp = stamp  # report it once, not on every check
                return False
            self._stamp = stamp
            before = self.names
            self._keys = [(n, AESGCM(k)) for n, k in keys]
            self._by_name = dict(self._keys)
            if self.names != before:
                log.info("encryption keys from %s: primary %s%s", self.path, self.primary,
                         f", also {', '.join(self.names[1:])}" if len(self._keys) > 1 else "")
            return self.names != before

    def refresh(self) -> None:
        """Re-read the file if it changed and the last check is over a second old."""
        if time.monotonic() - self._checked >= _CHECK_SECONDS:
            self.reload()

    def encrypt(self, key: str, plaintext: bytes) -> bytes:
        name, aead = self._keys[0]
        nonce = os.urandom(NONCE_SIZE)
        return PREFIX + name.encode() + b":" + nonce + aead.encrypt(nonce, plaintext,
                                                                     key.encode())

    def decrypt(self, key: str, raw: bytes) -> bytes:
        name, sep, rest = raw[len(PREFIX):].partition(b":")
        aead = self._by_name.get(name.decode(errors="replace")) if sep else None
        if aead is None:
            self.reload()  # a key added a moment ago
            aead = self._by_name.get(name.decode(errors="replace")) if sep else None
        if aead is None:
            raise InternalError(f"{key}: stored under encryption key "
                                f"{name.decode(errors='replace')!r}, which is not in "
                                f"{self.path}")
        try:
            return aead.decrypt(rest[:NONCE_SIZE], rest[NONCE_SIZE:], key.encode())
        except (InvalidTag, ValueError):
            raise InternalError(f"{key}: the stored value does not decrypt with key "
                                f"{name.decode(errors='replace')!r}") from None

    def key_of(self, raw: bytes) -> str | None:
        """The name of the key ``raw`` is stored under (None: plaintext)."""
        if not raw.startswith(PREFIX):
            return None
        return raw[len(PREFIX):].partition(b":")[0].decode(errors="replace")


class EncryptingCodec(Codec):
    """The storage codec with the objects under ``prefixes`` encrypted."""

    def __init__(self, keyring: KeyRing, prefixes: tuple[str, ...] = ENCRYPTED_PREFIXES):
        self.keyring = keyring
        self.prefixes = prefixes

    def _covers(self, key: str) -> bool:
        return key.startswith(self.prefixes)

    def encode(self, key: str, obj: Obj) -> bytes:
        raw = super().encode(key, obj)
        if not self._covers(key):
            return raw
        self.keyring.refresh()
        return self.keyring.encrypt(key, raw)

    def decode(self, key: str, raw: bytes, revision: int) -> Obj:
        if raw.startswith(PREFIX):
            raw = self.keyring.decrypt(key, raw)
        return super().decode(key, raw, revision)

    def stale(self, key: str, raw: bytes) -> bool:
        if not self._covers(key):
            return False
        self.keyring.refresh()
        return self.keyring.key_of(raw) != self.keyring.primary


async def count_stale(storage: Any, codec: EncryptingCodec) -> dict[str, int]:
    """How many stored objects under the encrypted prefixes are not under the primary key,
    by the key they are under ("plaintext" for none): read straight from etcd."""
    counts: dict[str, int] = {}
    for prefix in codec.prefixes:
        async for key, value, _ in storage.raw_range(prefix):
            if codec.stale(key, value):
                name = codec.keyring.key_of(value) or "plaintext"
                counts[name] = counts.get(name, 0) + 1
    return counts


STATUS_PATH = "/encryption/status"  # non-resource: the authorizer lets only masters in


def add_routes(app: Any, srv: Any) -> None:
    """``GET /encryption/status``: which keys the server uses (names only), and with
    ``?check=secrets`` how many Secrets are still stored under another key."""
    @app.get(STATUS_PATH)
    async def encryption_status(request: Request) -> Obj:
        codec = srv.storage.codec
        if not isinstance(codec, EncryptingCodec):
            return {"enabled": False}
        codec.keyring.reload()
        out: Obj = {"enabled": True, "primaryKey": codec.keyring.primary,
                    "keys": codec.keyring.names}
        if request.query_params.get("check") == "secrets":
            stale = await count_stale(srv.storage, codec)
            out["staleSecrets"] = sum(stale.values())
            out["staleByKey"] = stale
        return out


def codec_for(path: Path | None) -> EncryptingCodec | None:
    """The storage codec for ``--encryption-key-file`` (None without one); a key file that
    cannot be used stops the server with a one-line reason."""
    if path is None:
        return None
    try:
        return EncryptingCodec(KeyRing(path))
    except KeyFileError as err:
        raise SystemExit(f"error: {err}") from None


def reload_on_sighup(codec: Any) -> None:
    """SIGHUP re-reads the key file at once (the file is also checked on use)."""
    if not isinstance(codec, EncryptingCodec):
        return
    import asyncio
    import signal

    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, codec.keyring.reload)
    except (NotImplementedError, RuntimeError, ValueError):
        pass  # not the main thread (an in-process test server): the mtime check remains


__all__ = ["KeyRing", "EncryptingCodec", "PREFIX", "ENCRYPTED_PREFIXES", "STATUS_PATH",
           "count_stale", "add_routes", "codec_for", "reload_on_sighup"]
