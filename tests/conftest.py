"""Shared fixtures: a real etcd and a real API server over HTTPS, started once per test
session in a temporary folder on free ports, and stopped by pid at the end.

Unit tests never touch them (they are lazy session fixtures); integration and e2e tests ask
for ``apiserver`` / ``client`` / ``kubeconfig``."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from cluster import ROOT, start_apiserver, start_etcd, stop_process


@pytest.fixture(scope="session")
def etcd(tmp_path_factory):
    base = tmp_path_factory.mktemp("etcd")
    e = start_etcd(base)
    yield e
    stop_process(e.proc)


@pytest.fixture(scope="session")
def apiserver(tmp_path_factory, etcd):
    base = tmp_path_factory.mktemp("apiserver")
    srv = start_apiserver(base, etcd, "--compaction-interval", "3600")
    yield srv
    stop_process(srv.proc)


@pytest.fixture(scope="session")
def kubeconfig(apiserver) -> Path:
    return apiserver.kubeconfig


@pytest.fixture
async def client(apiserver):
    c = apiserver.client()
    yield c
    await c.aclose()


@pytest.fixture
async def ns(client) -> str:
    """A fresh namespace for one test."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    await client.create("namespaces", {"metadata": {"name": name}})
    return name


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    # Traffic stays on loopback: never route test requests through a proxy.
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def pytest_collection_modifyitems(config, items):
    for item in items:
        rel = Path(str(item.fspath)).relative_to(ROOT / "tests").parts[0]
        if rel in ("integration", "e2e"):
            item.add_marker(getattr(pytest.mark, rel))
