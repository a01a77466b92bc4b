"""Fixtures for talking to the API server over raw HTTPS (status codes, headers, bodies the
typed client would refuse to send)."""

import httpx
import pytest

from minik8s.client.kubeconfig import load_kubeconfig


def https_client(kubeconfig, **kw) -> httpx.AsyncClient:
    """An httpx client with the kubeconfig's server, CA and client certificate."""
    cfg = load_kubeconfig(str(kubeconfig))
    return httpx.AsyncClient(base_url=cfg.server, verify=cfg.ssl_context(),
                             timeout=kw.pop("timeout", 30), **kw)


@pytest.fixture
async def http(apiserver):
    async with https_client(apiserver.kubeconfig) as c:
        yield c
