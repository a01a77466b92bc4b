"""``mkctl certificate approve|deny NAME...``: write an Approved or Denied condition through a
CertificateSigningRequest's ``approval`` subresource, as kubectl does (a request that already
carries the condition is left alone unless ``--force``; the opposite decision is an error),
for requests the certificates controller leaves to an admin."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from typing import Any, Callable

from minik8s.api.errors import NotFound
from minik8s.cli.errors import CliError

_OPPOSITE = {"Approved": "Denied", "Denied": "Approved"}


def decided(csr: dict, decision: str, reason: str, message: str, force: bool) -> dict | None:
    """The CSR with the condition added, or None when it already has it (and not ``force``)."""
    conditions = list((csr.get("status") or {}).get("conditions") or [])
    types = {c.get("type") for c in conditions}
    if _OPPOSITE[decision] in types:
        raise CliError(f'certificatesigningrequest "{csr["metadata"]["name"]}" is already '
                       f'{_OPPOSITE[decision].lower()}')
    if decision in types and not force:
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    conditions = [c for c in conditions if c.get("type") != decision]
    conditions.append({"type": decision, "status": "True", "reason": reason,
                       "message": message, "lastUpdateTime": stamp,
                       "lastTransitionTime": stamp})
    return {**csr, "status": {**(csr.get("status") or {}), "conditions": conditions}}


async def run_certificate(s: Any, a: argparse.Namespace) -> int:
    decision = {"approve": "Approved", "deny": "Denied"}[a.action]
    reason = "KubectlApprove" if decision == "Approved" else "KubectlDeny"
    message = a.message or f"This CSR was {decision.lower()} by mkctl certificate {a.action}."
    status = 0
    for name in a.names:
        try:
            csr = await s.client.get("certificatesigningrequests", name)
        except NotFound:
            print(f'Error from server (NotFound): certificatesigningrequests.certificates.k8s.io '
                  f'"{name}" not found', file=sys.stderr)
            status = 1
            continue
        new = decided(csr, decision, reason, message, a.force)
        if new is not None:
            await s.client.update("certificatesigningrequests", new, subresource="approval")
        print(f"certificatesigningrequest.certificates.k8s.io/{name} {decision.lower()}")
    return status


def configure_certificate(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("approve", "deny"))
    p.add_argument("names", nargs="+", metavar="CSR_NAME")
    p.add_argument("--force", action="store_true",
                   help="update the CSR even if it is already approved or denied")
    p.add_argument("--message", default="", help="the condition's message")


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Any]] = {
    "certificate": ("Approve or deny certificate signing requests", configure_certificate,
                    run_certificate),
}

__all__ = ["COMMANDS", "decided", "run_certificate"]
