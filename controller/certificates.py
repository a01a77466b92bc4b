"""Certificates for joining nodes: the CSR approver, the signer, and the bootstrap token
cleaner (Kubernetes' csrapproving, csrsigning and tokencleaner controllers, in one module
because they share the token and CSR rules).

Approval is automatic only for the two requests ``minik8s join`` makes, each checked against
a fixed profile (Kubernetes' node-client and kubelet-serving profiles):

- ``kubernetes.io/kube-apiserver-client-kubelet`` from a bootstrap token
  (``system:bootstrap:<id>``): subject ``system:node:<name>`` / ``system:nodes``, no SANs,
  client usages only, and a token that is still valid. A single-use token is consumed here,
  by updating its Secret (guarded by its resourceVersion, so of two requests racing on one
  token only one wins) before the Approved condition is written; a request whose token was
  already used, expired or deleted is Denied with a reason the joining host prints. A node
  renewing its own client certificate (``system:node:<name>`` asking for itself) is
  approved too.
- ``kubernetes.io/kubelet-serving`` from ``system:node:<name>`` for that same name, server
  usages, DNS/IP SANs only (Kubernetes leaves these to an admin; here the node's identity
  is already proven by its client certificate, so it is approved).

Anything else stays Pending for ``mkctl certificate approve|deny``. The signer issues every
Approved request of those two signers from the cluster CA given by
``--cluster-signing-cert-file``/``--cluster-signing-key-file``; without them it stays idle.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography import x509

from minik8s.api import bootstraptoken as bt
from minik8s.api.errors import NotFound
from minik8s.api.meta import deepcopy
from minik8s.pki import identity_from_cert, sign_csr
from minik8s.runtime import Controller, Result, WorkQueue

log = logging.getLogger(__name__)

KUBELET_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
KUBELET_SERVING_SIGNER = "kubernetes.io/kubelet-serving"
NODE_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"
_CLIENT_USAGES = {"digital signature", "key encipherment", "client auth"}
_SERVING_USAGES = {"digital signature", "key encipherment", "server auth"}
_DEFAULT_DAYS = 365


def _now() -> datetime:
    return datetime.now(timezone.utc)


def conditions(csr: dict) -> set[str]:
    return {c.get("type") for c in (csr.get("status") or {}).get("conditions") or []
            if c.get("status", "True") == "True"}


def parse_request(csr: dict) -> x509.CertificateSigningRequest | None:
    try:
        return x509.load_pem_x509_csr(base64.b64decode((csr.get("spec") or {})["request"]))
    except (KeyError, ValueError, TypeError):
        return None


def _sans(req: x509.CertificateSigningRequest) -> list[x509.GeneralName]:
    try:
        return list(req.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return []


def check_profile(csr: dict) -> str | None:
    """Why ``csr`` does not fit the profile of its signer (None: it fits). The subject must
    be ``system:node:<name>`` in exactly ``system:nodes``."""
    spec = csr.get("spec") or {}
    signer = spec.get("signerName")
    req = parse_request(csr)
    if req is None:
        return "the request is not a PEM certificate request"
    try:
        user, groups = identity_from_cert(req)
    except ValueError:
        return "the request has no common name"
    if not user.startswith(NODE_PREFIX) or len(user) == len(NODE_PREFIX):
        return f"subject {user!r} is not system:node:<name>"
    if groups != [NODES_GROUP]:
        return f"organization {groups!r} is not [system:nodes]"
    usages = set(spec.get("usages") or [])
    sans = _sans(req)
    if signer == KUBELET_CLIENT_SIGNER:
        if sans:
            return "a node client certificate has no subject alternative names"
        if "client auth" not in usages or not usages <= _CLIENT_USAGES:
            return f"usages {sorted(usages)} are not a subset of {sorted(_CLIENT_USAGES)}"
        return None
    if signer == KUBELET_SERVING_SIGNER:
        if not sans or any(not isinstance(s, (x509.DNSName, x509.IPAddress)) for s in sans):
            return "a kubelet serving certificate names DNS names or IP addresses only"
        if "server auth" not in usages or not usages <= _SERVING_USAGES:
            return f"usages {sorted(usages)} are not a subset of {sorted(_SERVING_USAGES)}"
        return None
    return f"signer {signer!r} is not approved automatically"


def _condition(ctype: str, reason: str, message: str) -> dict:
    stamp = bt.rfc3339(_now())
    return {"type": ctype, "status": "True", "reason": reason, "message": message,
            "lastUpdateTime": stamp, "lastTransitionTime": stamp}


class CertificateController:
    name = "certificates"

    def __init__(self, client: Any, informers: Any, *, signing_cert: str = "",
                 signing_key: str = "", days: int = _DEFAULT_DAYS, clock: Any = None,
                 workers: int = 1):
        self.client = client
        self.days = days
        self.ca: tuple[bytes, bytes] | None = None
        if signing_cert and signing_key:
            self.ca = (Path(signing_cert).read_bytes(), Path(signing_key).read_bytes())
        self.csrs = informers.informer("certificatesigningrequests")
        kw = {"clock": clock} if clock is not None else {}
        self.controller = Controller("certificates", self, queue=WorkQueue("certificates", **kw),
                                     workers=workers)
        self.csrs.add_handler(self.controller.enqueue,
                              lambda old, new: self.controller.enqueue(new), None)

    async def start(self) -> None:
        await self.controller.start()

    async def reconcile(self, name: str) -> Result | None:
        csr = self.csrs.get(name)
        if csr is None:
            return None
        have = conditions(csr)
        if not have & {"Approved", "Denied", "Failed"}:
            csr = await self._approve(csr)
            if csr is None:
                return None
            have = conditions(csr)
        if "Approved" in have and not (csr.get("status") or {}).get("certificate"):
            await self._sign(csr)
        return None

    # --- approving ---------------------------------------------------------------------

    async def _approve(self, csr: dict) -> dict | None:
        """The CSR after an automatic decision, or None when it is left to an admin."""
        spec = csr.get("spec") or {}
        user = spec.get("username") or ""
        groups = spec.get("groups") or []
        signer = spec.get("signerName")
        problem = check_profile(csr)
        if user.startswith(bt.USER_PREFIX) and bt.GROUP in groups:
            if signer != KUBELET_CLIENT_SIGNER:
                return None
            if problem:
                return await self._decide(csr, "Denied", "NotNodeClientProfile", problem)
            refused = await self._consume_token(user[len(bt.USER_PREFIX):], csr)
            if refused:
                return await self._decide(csr, "Denied", *refused)
            return await self._decide(csr, "Approved", "AutoApproved",
                                      "node client certificate for a bootstrap token "
                                      "(minik8s join)")
        node = user[len(NODE_PREFIX):] if user.startswith(NODE_PREFIX) else ""
        if node and NODES_GROUP in groups and not problem and signer in (
                KUBELET_CLIENT_SIGNER, KUBELET_SERVING_SIGNER):
            req = parse_request(csr)
            if req is not None and identity_from_cert(req)[0] == user:
                return await self._decide(csr, "Approved", "AutoApproved",
                                          f"node {node} asked for its own certificate")
        return None

    async def _consume_token(self, token_id: str, csr: dict) -> tuple[str, str] | None:
        """(reason, message) refusing the token, or None once it is used for ``csr``."""
        name = csr["metadata"]["name"]
        try:
            secret = await self.client.get("secrets", bt.secret_name(token_id), bt.NAMESPACE)
        except NotFound:
            return "TokenInvalid", f"bootstrap token {token_id} does not exist (any more)"
        if secret.get("type") != bt.SECRET_TYPE:
            return "TokenInvalid", f"secret {bt.secret_name(token_id)} is not a bootstrap token"
        previous = bt.used_by(secret)
        if previous == name:
            return None  # consumed for this very request (an earlier attempt)
        if previous:
            return "TokenReused", (f"bootstrap token {token_id} was already used (by "
                                   f"{previous}); create a new one with `minik8s token create`")
        if bt.is_expired(secret):
            return "TokenExpired", f"bootstrap token {token_id} has expired"
        if bt.is_single_use(secret):
            # Conflict (someone else consumed it meanwhile) propagates: requeue, re-check.
            await self.client.update("secrets", bt.consumed(secret, name))
        return None

    async def _decide(self, csr: dict, ctype: str, reason: str, message: str) -> dict:
        new = deepcopy(csr)
        status = new.setdefault("status", {})
        status["conditions"] = [*(status.get("conditions") or []),
                                _condition(ctype, reason, message)]
        out = await self.client.update("certificatesigningrequests", new,
                                       subresource="approval")
        log.info("%s CSR %s (%s): %s", ctype.lower(), csr["metadata"]["name"], reason, message)
        return out

    # --- signing -----------------------------------------------------------------------

    async def _sign(self, csr: dict) -> None:
        spec = csr.get("spec") or {}
        signer = spec.get("signerName")
        if self.ca is None or signer not in (KUBELET_CLIENT_SIGNER, KUBELET_SERVING_SIGNER):
            return
        problem = check_profile(csr)
        new = deepcopy(csr)
        status = new.setdefault("status", {})
        if problem:
            status["conditions"] = [*(status.get("conditions") or []),
                                    _condition("Failed", "SignerValidationFailure", problem)]
        else:
            seconds = spec.get("expirationSeconds")
            days = max(1, int(seconds) // 86400) if seconds else self.days
            pem = sign_csr(self.ca[0], self.ca[1], base64.b64decode(spec["request"]),
                           days=days, client=signer == KUBELET_CLIENT_SIGNER,
                           server=signer == KUBELET_SERVING_SIGNER)
            status["certificate"] = base64.b64encode(pem).decode()
        # A Conflict propagates: requeued with backoff, the next attempt reads the newer object.
        await self.client.update_status("certificatesigningrequests", new)
        log.info("signed CSR %s for %s", csr["metadata"]["name"], signer)


class TokenCleaner:
    """Deletes bootstrap token Secrets once their ``expiration`` has passed."""

    name = "tokencleaner"

    def __init__(self, client: Any, informers: Any, *, clock: Any = None, workers: int = 1):
        self.client = client
        self.secrets = informers.informer("secrets", bt.NAMESPACE)
        kw = {"clock": clock} if clock is not None else {}
        self.controller = Controller("tokencleaner", self,
                                     queue=WorkQueue("tokencleaner", **kw), workers=workers)
        self.secrets.add_handler(self.controller.enqueue,
                                 lambda old, new: self.controller.enqueue(new), None)

    async def start(self) -> None:
        await self.controller.start()

    async def reconcile(self, key: str) -> Result | None:
        secret = self.secrets.get(key)
        if secret is None or secret.get("type") != bt.SECRET_TYPE:
            return None
        exp = bt.expiration(secret)
        if exp is None:
            return None
        left = (exp - _now()).total_seconds()
        if left > 0:
            return Result(requeue_after=left + 0.5)
        try:
            await self.client.delete("secrets", secret["metadata"]["name"], bt.NAMESPACE)
            log.info("deleted expired bootstrap token %s", secret["metadata"]["name"])
        except NotFound:
            pass
        return None


class _Both:
    """Both controllers as one runnable (one entry in the controller-manager's list)."""

    def __init__(self, *runnables: Any):
        self.runnables = runnables

    async def start(self) -> None:
        await asyncio.gather(*(r.start() for r in self.runnables))


def new(ctx: Any) -> Any:
    cfg = ctx.config
    return _Both(CertificateController(ctx.client, ctx.informers,
                                       signing_cert=cfg.cluster_signing_cert_file,
                                       signing_key=cfg.cluster_signing_key_file),
                 TokenCleaner(ctx.client, ctx.informers))


__all__ = ["CertificateController", "TokenCleaner", "check_profile", "new",
           "KUBELET_CLIENT_SIGNER", "KUBELET_SERVING_SIGNER"]
