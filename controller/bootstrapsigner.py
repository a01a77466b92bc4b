"""The bootstrap signer (Kubernetes' ``bootstrapsigner`` controller): keeps one detached JWS per
signing bootstrap token in ConfigMap ``kube-public/cluster-info``, so ``minik8s join`` can
check that the cluster-info it read anonymously (server URL and CA) was published by someone
who knows its token, not by whoever answered on that address.

For every Secret in ``kube-system`` of type ``bootstrap.kubernetes.io/token`` that may sign
(``usage-bootstrap-signing: "true"``, not expired, see ``bootstraptoken.signing_token``) the
ConfigMap carries ``jws-kubeconfig-<token id>``: the signature of its ``kubeconfig`` value with
the token's secret (``minik8s.pki.jws``). Keys of tokens that are gone, expired or no longer
for signing are removed, and every signature is recomputed when the kubeconfig changes; the
other keys are left alone. There is one work item (the ConfigMap's key): any Secret or
ConfigMap event enqueues it, the reconcile compares the wanted ``jws-kubeconfig-*`` keys with
the cached ConfigMap and writes only when they differ (a 409 requeues with backoff). Unlike
Kubernetes, which waits for the token cleaner to delete an expired token, the reconcile also
comes back at the next expiration, so a single-use token's key goes once its short grace
after use has passed even when the cleaner is not running.

Kubernetes ships this controller disabled unless asked for (kubeadm asks); here it runs by
default, as the token cleaner does, since ``minik8s join`` requires the signature."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from minik8s.api import bootstraptoken as bt
from minik8s.api.meta import Obj
from minik8s.pki.jws import detached_signature
from minik8s.runtime import Controller, Result, WorkQueue

log = logging.getLogger(__name__)

CONFIGMAP_KEY = f"{bt.CLUSTER_INFO_NAMESPACE}/{bt.CLUSTER_INFO_NAME}"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def wanted_signatures(content: str, secrets: list[Obj],
                      now: datetime) -> tuple[dict[str, str], datetime | None]:
    """The ``jws-kubeconfig-*`` keys ``content`` should carry for ``secrets``, and the
    earliest expiration among the signing tokens (when the answer changes next)."""
    out: dict[str, str] = {}
    soonest: datetime | None = None
    for secret in sorted(secrets, key=lambda s: (s.get("metadata") or {}).get("name", "")):
        token = bt.signing_token(secret, now)
        if token is None:
            continue
        token_id, token_secret = token
        out[bt.JWS_KEY_PREFIX + token_id] = detached_signature(content, token_id, token_secret)
        exp = bt.expiration(secret)
        if exp is not None and (soonest is None or exp < soonest):
            soonest = exp
    return out, soonest


def signed_data(data: dict[str, str], wanted: dict[str, str]) -> dict[str, str]:
    """``data`` with exactly the ``wanted`` signature keys (other keys untouched)."""
    kept = {k: v for k, v in data.items() if not k.startswith(bt.JWS_KEY_PREFIX)}
    return {**kept, **wanted}


class BootstrapSigner:
    name = "bootstrapsigner"

    def __init__(self, client: Any, informers: Any, *, clock: Any = None):
        self.client = client
        self.secrets = informers.informer("secrets", bt.NAMESPACE)
        self.configmaps = informers.informer(
            "configmaps", bt.CLUSTER_INFO_NAMESPACE,
            field_selector=f"metadata.name={bt.CLUSTER_INFO_NAME}")
        kw = {"clock": clock} if clock is not None else {}
        self.controller = Controller(self.name, self, queue=WorkQueue(self.name, **kw))

        def poke(*objs: Obj) -> None:
            self.controller.enqueue_key(CONFIGMAP_KEY)

        def poke_token(*objs: Obj) -> None:
            if any(o.get("type") == bt.SECRET_TYPE for o in objs):
                poke()

        self.configmaps.add_handler(poke, poke, None)
        self.secrets.add_handler(poke_token, poke_token, poke_token)

    async def start(self) -> None:
        await self.controller.start()

    async def reconcile(self, key: str) -> Result | None:
        cm = self.configmaps.get(key)
        if cm is None:
            return None
        data = cm.get("data") or {}
        content = data.get(bt.KUBECONFIG_KEY)
        if content is None:
            return None
        now = _now()
        wanted, soonest = wanted_signatures(content, self.secrets.list(), now)
        again = (Result(requeue_after=(soonest - now).total_seconds() + 0.5)
                 if soonest is not None else None)
        new = signed_data(data, wanted)
        if new == data:
            return again
        # A Conflict (the ConfigMap changed meanwhile) propagates: requeued, re-read from the
        # cache; NotFound (deleted meanwhile) means done.
        await self.client.update("configmaps", {**cm, "data": new}, bt.CLUSTER_INFO_NAMESPACE)
        had = {k for k in data if k.startswith(bt.JWS_KEY_PREFIX)}
        log.info("signed %s for token(s) %s%s", key,
                 ", ".join(k[len(bt.JWS_KEY_PREFIX):] for k in wanted) or "none",
                 f"; removed {', '.join(sorted(had - set(wanted)))}" if had - set(wanted)
                 else "")
        return again


def new(ctx: Any) -> BootstrapSigner:
    return BootstrapSigner(ctx.client, ctx.informers, clock=ctx.clock)


__all__ = ["BootstrapSigner", "new", "wanted_signatures", "signed_data", "CONFIGMAP_KEY"]
