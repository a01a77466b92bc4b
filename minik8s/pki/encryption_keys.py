"""The encryption-at-rest key file: key material, so it lives beside the PKI, and both the
API server (``--encryption-key-file``) and the commands that write the file
(``minik8s up``, ``minik8s rotate-encryption-key``) import its format from here::

    # minik8s encryption keys: the first encrypts, every one decrypts
    keys:
    - name: key-20250101-120000
      secret: <base64 of 32 random bytes>

The file is written atomically with mode 0600; names are safe to log, secrets never are.
"""

from __future__ import annotations

import base64
import os
import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import yaml

KEY_FILE_NAME = "encryption-keys.yaml"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_KEY_SIZES = (16, 24, 32)


class KeyFileError(ValueError):
    """The key file is missing, unreadable or malformed (the message says which)."""


def read_keys(path: Path | str) -> list[tuple[str, bytes]]:
    """(name, key) pairs in file order: the first one encrypts."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise KeyFileError(f"cannot read the encryption key file {path}: "
                           f"{exc.strerror or exc}") from None
    except yaml.YAMLError:
        raise KeyFileError(f"the encryption key file {path} is not valid YAML") from None
    entries = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise KeyFileError(f"the encryption key file {path} has no `keys:` list")
    keys: list[tuple[str, bytes]] = []
    for i, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        secret = entry.get("secret") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise KeyFileError(f"{path}: keys[{i}].name must be 1-63 letters, digits, '.', "
                               f"'_' or '-'")
        if any(name == n for n, _ in keys):
            raise KeyFileError(f"{path}: key name {name} appears twice")
        try:
            raw = base64.b64decode(str(secret), validate=True)
        except (ValueError, TypeError):
            raise KeyFileError(f"{path}: keys[{i}].secret ({name}) is not base64") from None
        if len(raw) not in _KEY_SIZES:
            raise KeyFileError(f"{path}: keys[{i}].secret ({name}) must be 16, 24 or 32 "
                               f"bytes, not {len(raw)}")
        keys.append((name, raw))
    return keys


def write_keys(path: Path | str, keys: list[tuple[str, bytes]]) -> None:
    """Replace the file atomically (a reader sees the old file or the new one), mode 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "# minik8s encryption keys: the first encrypts, every one decrypts\n" + yaml.safe_dump(
        {"keys": [{"name": n, "secret": base64.b64encode(k).decode()} for n, k in keys]},
        sort_keys=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def new_key(existing: list[str] = ()) -> tuple[str, bytes]:  # type: ignore[assignment]
    """A fresh 256-bit key, named after the time it was made."""
    base = "key-" + datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    name, n = base, 1
    while name in existing:
        n += 1
        name = f"{base}-{n}"
    return name, os.urandom(32)


def ensure_key_file(path: Path | str) -> bool:
    """Create the file with one key if it does not exist; whether it was created."""
    path = Path(path)
    if path.exists():
        return False
    write_keys(path, [new_key()])
    return True


__all__ = ["KEY_FILE_NAME", "KeyFileError", "read_keys", "write_keys", "new_key",
           "ensure_key_file"]
