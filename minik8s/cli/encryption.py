"""``minik8s rotate-encryption-key``: replace the key that encrypts Secrets at rest.

The key file's format lives in ``minik8s.pki.encryption_keys`` (the API server reads it
too); this module only drives a rotation.

Rotation follows Kubernetes' documented procedure for its aesgcm provider, done by one
command: a new key is put first (the API server notices the changed file and encrypts with
it from then on), every Secret is written back through the API so it is stored under the new
key (the server rewrites a Secret stored under an older key even when the object is
unchanged), the server is asked to confirm that nothing is stored under an old key any more
(``GET /encryption/status?check=secrets``, for system:masters only), and only then are the
old keys dropped. Stopping half-way is safe: until the last step the file still holds every
key that anything may be stored under.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from minik8s.pki.encryption_keys import (KEY_FILE_NAME, KeyFileError, ensure_key_file,
                                         new_key, read_keys, write_keys)

# The API server's key report (apiserver.encryption); system:masters only.
STATUS_PATH = "/encryption/status"


class RotationError(RuntimeError):
    """Rotation stopped; the message says where and what state the key file is in."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser("rotate-encryption-key",
                       help="put a new key first, re-encrypt every Secret, drop the old keys")
    p.add_argument("--home", help="the cluster's folder (default $MINIK8S_HOME or ~/.minik8s)")
    p.add_argument("--kubeconfig", help="admin kubeconfig (default: the one in the home)")
    p.add_argument("--key-file", help=f"the API server's --encryption-key-file (default: "
                                      f"{KEY_FILE_NAME} in the home)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds to wait for the API server to take up a key (default 60)")


def run(args: argparse.Namespace, home_root: Path) -> int:
    key_file = Path(args.key_file).expanduser() if args.key_file else home_root / KEY_FILE_NAME
    kubeconfig = args.kubeconfig or str(home_root / "kubeconfig")
    try:
        asyncio.run(rotate(key_file, kubeconfig, timeout=args.timeout))
    except (RotationError, KeyFileError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


async def rotate(key_file: Path, kubeconfig: str, *, timeout: float = 60.0,
                 out: Any = None) -> str:
    """The whole rotation; the new key's name."""
    from minik8s.api.errors import Conflict, NotFound, StatusError
    from minik8s.client import Client

    out = out or sys.stdout
    keys = read_keys(key_file)
    old = [n for n, _ in keys]
    name, secret = new_key(old)
    try:
        client = Client.from_kubeconfig(kubeconfig)
    except Exception as exc:
        raise RotationError(f"cannot load the kubeconfig {kubeconfig}: {exc}") from None
    async with client:
        await _status(client)  # fails early if the server has no key file, before any change
        write_keys(key_file, [(name, secret), *keys])
        print(f"added key {name} as the primary key in {key_file} (kept: {', '.join(old)})",
              file=out)
        await _wait_for(client, timeout, lambda st: st.get("primaryKey") == name,
                        f"the API server to encrypt with {name}")
        print(f"the API server encrypts with {name}", file=out)

        secrets = (await client.list_all("secrets", all_namespaces=True)).get("items") or []
        rewritten = 0
        for item in secrets:
            md = item.get("metadata") or {}
            for _ in range(10):
                try:
                    await client.update("secrets", item)
                    rewritten += 1
                    break
                except NotFound:
                    break  # deleted meanwhile: nothing to rewrite
                except Conflict:
                    try:
                        item = await client.get("secrets", md.get("name"), md.get("namespace"))
                    except NotFound:
                        break
                except StatusError as err:
                    raise RotationError(f"rewriting secret {md.get('namespace')}/"
                                        f"{md.get('name')} failed: {err}; the old keys are "
                                        f"kept in {key_file}") from None
            else:
                raise RotationError(f"secret {md.get('namespace')}/{md.get('name')} kept "
                                    f"changing; the old keys are kept in {key_file}")
        print(f"rewrote {rewritten} secret(s) under {name}", file=out)

        status = await _status(client, check=True)
        if status.get("staleSecrets"):
            raise RotationError(f"{status['staleSecrets']} secret(s) are still stored under "
                                f"an old key; the old keys are kept in {key_file}")
        write_keys(key_file, [(name, secret)])
        await _wait_for(client, timeout, lambda st: st.get("keys") == [name],
                        f"the API server to drop the old keys")
        print(f"dropped the old key(s) {', '.join(old)}; {name} is the only key", file=out)
    return name


async def _status(client: Any, check: bool = False) -> dict:
    from minik8s.api.errors import StatusError

    try:
        status = await client.request("GET", STATUS_PATH,
                                      params={"check": "secrets"} if check else None)
    except StatusError as err:
        raise RotationError(f"the API server cannot report its encryption keys: {err}") from None
    except Exception as exc:  # connection refused, TLS ...
        raise RotationError(f"cannot reach the API server: {exc}") from None
    if not isinstance(status, dict) or not status.get("enabled"):
        raise RotationError("the API server runs without --encryption-key-file")
    return status


async def _wait_for(client: Any, timeout: float, done: Any, what: str) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = await _status(client)
        if done(status):
            return status
        if time.monotonic() > deadline:
            raise RotationError(f"timed out waiting for {what} (it reports primary key "
                                f"{status.get('primaryKey')}, keys {status.get('keys')})")
        await asyncio.sleep(0.3)


# KEY_FILE_NAME and ensure_key_file are re-exported for ``minik8s up`` (minik8s.cli.local).
__all__ = ["KEY_FILE_NAME", "STATUS_PATH", "RotationError", "ensure_key_file", "add_parser",
           "run", "rotate"]
