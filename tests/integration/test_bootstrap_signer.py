"""The signed cluster-info against the real API server: the bootstrap signer (run in-process,
as the controller-manager's identity) keeps ``jws-kubeconfig-<id>`` in
``kube-public/cluster-info`` in step with the token Secrets (added, re-signed, removed), and
``minik8s join`` refuses a cluster-info whose signature does not verify before it ever uses
the token.

The API server is shared by the session, so every test publishes cluster-info afresh and
looks only at the keys of the tokens it made."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest

from cluster import ROOT, eventually, running_controllers
from minik8s.api import bootstraptoken as bt
from minik8s.cli import cluster as cli
from minik8s.cli.local import ClusterError
from minik8s.client import Client
from minik8s.client.kubeconfig import load_kubeconfig
from minik8s.pki import ca_public_key_hash
from minik8s.pki.jws import detached_signature, detached_signature_valid

pytestmark = pytest.mark.integration


def _admin(apiserver) -> cli.Api:
    return cli.Api.from_config(load_kubeconfig(apiserver.kubeconfig))


def _publish(apiserver) -> None:
    cli.publish_cluster_info(_admin(apiserver), apiserver.url,
                             apiserver.pki.ca_cert.read_bytes(), "10.244.0.0/16")


def _data(apiserver) -> dict:
    return _admin(apiserver).call("GET", cli.CLUSTER_INFO).get("data") or {}


@pytest.fixture
async def cm_client(apiserver):
    """A client with the controller-manager's identity, so the fixed authz table is what
    lets the signer watch the token Secrets and update cluster-info."""
    path = apiserver.kubeconfig_for("bootstrapsigner", "system:kube-controller-manager")
    c = Client.from_kubeconfig(str(path))
    yield c
    await c.aclose()


def _signed_by(data: dict, token: str) -> bool:
    token_id, secret = bt.parse(token)
    sig = data.get(bt.JWS_KEY_PREFIX + token_id)
    return bool(sig) and detached_signature_valid(sig, data["kubeconfig"], token_id, secret)


async def test_signer_keeps_signatures_in_step_with_tokens(apiserver, cm_client):
    admin = _admin(apiserver)
    _publish(apiserver)
    plain = bt.generate()
    body = bt.new_secret(plain, ttl=timedelta(hours=1))
    body["data"]["usage-bootstrap-signing"] = base64.b64encode(b"false").decode()
    admin.call("POST", cli.SECRETS_PATH, body)  # first: its event precedes the next token's
    async with running_controllers(cm_client, ["bootstrapsigner"]):
        # a token as `minik8s token create` makes it: its key appears, valid
        token = cli.create_token(admin, ttl=timedelta(hours=1))
        token_id = token.split(".")[0]
        data = await eventually(lambda: _signed(apiserver, token),
                                message="signature for the new token")
        assert bt.JWS_KEY_PREFIX + plain.split(".")[0] not in data  # not for signing
        assert data["clusterCIDR"] == "10.244.0.0/16"  # other keys kept

        # the kubeconfig changes (the old signature kept alongside): re-signed
        cm = admin.call("GET", cli.CLUSTER_INFO)
        old_sig = cm["data"][bt.JWS_KEY_PREFIX + token_id]
        cm["data"]["kubeconfig"] = cm["data"]["kubeconfig"] + "# moved\n"
        admin.call("PUT", cli.CLUSTER_INFO, cm)
        data = await eventually(lambda: _signed(apiserver, token),
                                message="re-signed after the kubeconfig changed")
        assert data[bt.JWS_KEY_PREFIX + token_id] != old_sig
        assert data["kubeconfig"].endswith("# moved\n")

        # a token expiring: its key goes when it expires (no token cleaner running here)
        short = cli.create_token(admin, ttl=timedelta(seconds=3))
        await eventually(lambda: _signed(apiserver, short),
                         message="signature for the short-lived token")
        await eventually(lambda: _unsigned(apiserver, short),
                         message="key of the expired token removed")
        assert _signed_by(_data(apiserver), token)

        # a token deleted: its key goes
        admin.call("DELETE", f"{cli.SECRETS_PATH}/{bt.secret_name(token_id)}")
        await eventually(lambda: _unsigned(apiserver, token),
                         message="key of the deleted token removed")

        # a token made to expire by an update (as a consumed single-use token is): key goes
        other = cli.create_token(admin, ttl=timedelta(hours=1))
        await eventually(lambda: _signed(apiserver, other),
                         message="signature for another token")
        secret = admin.call("GET", f"{cli.SECRETS_PATH}/{bt.secret_name(other[:6])}")
        secret["data"]["expiration"] = base64.b64encode(b"2020-01-01T00:00:00Z").decode()
        admin.call("PUT", f"{cli.SECRETS_PATH}/{bt.secret_name(other[:6])}", secret)
        await eventually(lambda: _unsigned(apiserver, other),
                         message="key of the token expired by an update removed")
    admin.call("DELETE", f"{cli.SECRETS_PATH}/{bt.secret_name(plain[:6])}")
    admin.call("DELETE", f"{cli.SECRETS_PATH}/{bt.secret_name(other[:6])}")


async def _signed(apiserver, token: str) -> dict | None:
    """cluster-info's data once it carries a valid signature for ``token``."""
    data = await asyncio.to_thread(_data, apiserver)
    return data if _signed_by(data, token) else None


async def _unsigned(apiserver, token: str) -> bool:
    """Whether cluster-info carries no key for ``token`` (any more)."""
    data = await asyncio.to_thread(_data, apiserver)
    return bt.JWS_KEY_PREFIX + token[:6] not in data


def _join(apiserver, tmp_path, token: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "minik8s.cli.main", "join", f"127.0.0.1:{apiserver.port}",
         "--token", token, "--home", str(tmp_path / "home"), "--node-name",
         f"signed-{uuid.uuid4().hex[:6]}", *extra],
        capture_output=True, text=True, timeout=120, cwd=str(ROOT))


def test_join_refuses_a_tampered_cluster_info_before_using_the_token(apiserver, tmp_path):
    admin = _admin(apiserver)
    _publish(apiserver)
    token = cli.create_token(admin, ttl=timedelta(hours=1))
    token_id = token.split(".")[0]
    # no signer here: the key is written by hand, signed with some other secret
    cm = admin.call("GET", cli.CLUSTER_INFO)
    cm["data"][bt.JWS_KEY_PREFIX + token_id] = detached_signature(
        cm["data"]["kubeconfig"], token_id, "x" * 16)
    admin.call("PUT", cli.CLUSTER_INFO, cm)
    ca_hash = ca_public_key_hash(apiserver.pki.ca_cert.read_bytes())
    out = _join(apiserver, tmp_path, token, "--discovery-token-ca-cert-hash", ca_hash)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "error: the JWS signature (jws-kubeconfig-" in out.stderr, out.stderr
    assert "does not verify with this token" in out.stderr and "Traceback" not in out.stderr
    # the same with the CA not pinned
    out = _join(apiserver, tmp_path, token, "--discovery-token-unsafe-skip-ca-verification")
    assert out.returncode == 1 and "does not verify with this token" in out.stderr, out.stderr
    # the token was never used: no certificate request of it, the Secret untouched
    csrs = admin.call("GET", cli.CSR_PATH).get("items") or []
    assert not [c for c in csrs if c["metadata"]["name"].startswith(f"node-csr-{token_id}-")]
    assert bt.used_by(admin.call("GET", f"{cli.SECRETS_PATH}/{bt.secret_name(token_id)}")) \
        is None
    # neither a hash nor the unsafe flag: refused with a message, before any request
    out = _join(apiserver, tmp_path, token)
    assert out.returncode == 1 and "--discovery-token-unsafe-skip-ca-verification" in \
        out.stderr, out.stderr
    admin.call("DELETE", f"{cli.SECRETS_PATH}/{bt.secret_name(token_id)}")


async def test_discovery_needs_the_signature_of_its_token(apiserver, cm_client):
    admin = _admin(apiserver)
    _publish(apiserver)
    ca = apiserver.pki.ca_cert.read_bytes()
    pinned = ca_public_key_hash(ca)
    # a token the signer may not use: it authenticates, but cluster-info is never signed for
    # it, so discovery gives up after its wait with a message naming the missing key
    unsigned = bt.generate()
    body = bt.new_secret(unsigned, ttl=timedelta(hours=1))
    del body["data"]["usage-bootstrap-signing"]
    admin.call("POST", cli.SECRETS_PATH, body)
    token = cli.create_token(admin, ttl=timedelta(hours=1))
    try:
        async with running_controllers(cm_client, ["bootstrapsigner"]):
            server, got, data = await asyncio.to_thread(
                cli.discover, "127.0.0.1", apiserver.port, pinned, token)
            assert (server, got, data["clusterCIDR"]) == (apiserver.url, ca, "10.244.0.0/16")
            # the CA not pinned: the signature alone authenticates cluster-info
            assert (await asyncio.to_thread(cli.discover, "127.0.0.1", apiserver.port, None,
                                            token))[:2] == (apiserver.url, ca)
            with pytest.raises(ClusterError, match=f"no JWS signature for token id "
                                                   f"'{unsigned[:6]}'.*after 2s"):
                await asyncio.to_thread(cli.discover, "127.0.0.1", apiserver.port, pinned,
                                        unsigned, wait=2)
            # an unknown token: no key, and the (pinned) master refuses it: no waiting
            with pytest.raises(ClusterError, match="refused the bootstrap token"):
                await asyncio.to_thread(cli.discover, "127.0.0.1", apiserver.port, pinned,
                                        "zzzzzz.0123456789abcdef", wait=60)
            with pytest.raises(ClusterError, match="does not match the pinned hash"):
                await asyncio.to_thread(cli.discover, "127.0.0.1", apiserver.port,
                                        "sha256:" + "1" * 64, token)
    finally:
        for t in (unsigned, token):
            admin.call("DELETE", f"{cli.SECRETS_PATH}/{bt.secret_name(t[:6])}")
