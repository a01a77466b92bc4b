"""End-to-end fixtures: the busybox test image (built once per session, never pulled), and a
kubelet for a node of its own run in-process on the session's event loop, against the real
API server and the real Docker engine.

Every container the kubelet makes carries its node's name in a label, and each test module
gets a fresh node name, so cleanup removes exactly this module's containers (by that label,
never by a broad pattern), whatever state a failed test left them in."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from pathlib import Path

import pytest

from e2e_helpers import BUSYBOX, ROOT, KubeletHandle, remove_node_containers


@pytest.fixture(scope="session")
def busybox_image() -> str:
    try:
        subprocess.run(["docker", "info"], check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        pytest.fail("the Docker engine is not running (docker info failed)")
    subprocess.run(["bash", str(ROOT / "deploy/images/build-busybox.sh"), BUSYBOX], check=True,
                   timeout=300)
    return BUSYBOX


@pytest.fixture(scope="module")
async def node(apiserver, busybox_image, tmp_path_factory, request):
    """A running kubelet for a node named after the test module."""
    stem = Path(str(request.fspath)).stem.replace("_", "-")[:20]
    name = f"{stem}-{uuid.uuid4().hex[:6]}"
    handle = KubeletHandle(apiserver, name, tmp_path_factory.mktemp(f"kubelet-{name}"))
    try:
        await handle.start()
        yield handle
    finally:
        await handle.stop()
        handle.runtime.close()
        await asyncio.to_thread(remove_node_containers, name)
