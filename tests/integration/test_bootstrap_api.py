"""Joining through the real API server: anonymous discovery of ``cluster-info`` (and of
nothing else), bootstrap tokens authenticated from their Secret, limited to their own CSRs,
the requester stamped into the CSR, then approval and signing by the certificates
controller run in-process with the cluster CA."""

from __future__ import annotations

import base64
import uuid
from datetime import timedelta

import pytest

from cluster import running_controllers
from minik8s.api import bootstraptoken as bt
from minik8s.cli import cluster as cli
from minik8s.cli.local import ClusterError
from minik8s.client.kubeconfig import ClientConfig
from minik8s.pki import ca_public_key_hash, make_csr
from minik8s.pki.jws import detached_signature

pytestmark = pytest.mark.integration


def _api(apiserver, token=None):
    ctx = ClientConfig(server=apiserver.url, ca_pem=apiserver.pki.ca_cert.read_bytes()) \
        .ssl_context()
    return cli.Api(apiserver.url, ctx, token=token)


def _admin(apiserver):
    from minik8s.client.kubeconfig import load_kubeconfig
    return cli.Api.from_config(load_kubeconfig(apiserver.kubeconfig))


def _csr_body(name: str, signer=cli.CLIENT_SIGNER, cn="system:node:bootstrap-it"):
    pem, _ = make_csr(cn, ["system:nodes"])
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": name},
            "spec": {"request": base64.b64encode(pem).decode(), "signerName": signer,
                     "usages": ["digital signature", "key encipherment", "client auth"],
                     "username": "system:admin", "groups": ["system:masters"]}}


def test_anonymous_clients_read_cluster_info_and_nothing_else(apiserver):
    admin = _admin(apiserver)
    ca = apiserver.pki.ca_cert.read_bytes()
    cli.publish_cluster_info(admin, apiserver.url, ca)
    cli.publish_cluster_info(admin, apiserver.url, ca, "10.244.0.0/16")  # again: updated
    token = cli.create_token(admin, ttl=timedelta(hours=1))
    cm = admin.call("GET", cli.CLUSTER_INFO)  # signed by hand, as the bootstrap signer does
    cm["data"][bt.JWS_KEY_PREFIX + token[:6]] = detached_signature(
        cm["data"]["kubeconfig"], *bt.parse(token))
    admin.call("PUT", cli.CLUSTER_INFO, cm)
    server, got, data = cli.discover("127.0.0.1", apiserver.port, ca_public_key_hash(ca),
                                     token)
    assert (server, got) == (apiserver.url, ca)
    assert data["clusterCIDR"] == "10.244.0.0/16"
    with pytest.raises(ClusterError, match="does not match the pinned hash"):
        cli.discover("127.0.0.1", apiserver.port, "sha256:" + "1" * 64, token)
    admin.call("DELETE", f"{cli.SECRETS_PATH}/{bt.secret_name(token[:6])}")
    anonymous = _api(apiserver)
    with pytest.raises(cli.ApiError) as err:
        anonymous.call("GET", "/api/v1/namespaces/kube-public/configmaps")
    assert err.value.code == 401
    with pytest.raises(cli.ApiError) as err:
        anonymous.call("PUT", cli.CLUSTER_INFO, {"metadata": {"name": "cluster-info"}})
    assert err.value.code == 403


def test_bootstrap_tokens_authenticate_from_their_secret(apiserver):
    admin = _admin(apiserver)
    token = cli.create_token(admin, ttl=timedelta(hours=1))
    token_id = token.split(".")[0]
    boot = _api(apiserver, token)
    name = f"node-csr-{token_id}-{uuid.uuid4().hex[:6]}"
    created = boot.call("POST", cli.CSR_PATH, _csr_body(name))
    # who asked comes from the authentication, not from the body
    assert created["spec"]["username"] == f"system:bootstrap:{token_id}"
    assert "system:bootstrappers" in created["spec"]["groups"]
    assert "system:masters" not in created["spec"]["groups"]
    assert boot.call("GET", f"{cli.CSR_PATH}/{name}")["metadata"]["name"] == name
    for method, path, body in (("GET", cli.CSR_PATH, None),
                               ("POST", cli.CSR_PATH, _csr_body("node-csr-zzzzzz-1")),
                               ("GET", "/api/v1/namespaces/kube-system/secrets", None)):
        with pytest.raises(cli.ApiError) as err:
            boot.call(method, path, body)
        assert err.value.code == 403, (method, path)
    wrong = _api(apiserver, f"{token_id}.0000000000000000")
    with pytest.raises(cli.ApiError) as err:
        wrong.call("GET", f"{cli.CSR_PATH}/{name}")
    assert err.value.code == 401
    admin.call("DELETE", f"{cli.SECRETS_PATH}/{bt.secret_name(token_id)}")
    with pytest.raises(cli.ApiError) as err:
        boot.call("GET", f"{cli.CSR_PATH}/{name}")
    assert err.value.code == 401


def test_invalid_csrs_are_refused_with_field_causes(apiserver):
    admin = _admin(apiserver)
    body = _csr_body(f"bad-{uuid.uuid4().hex[:6]}")
    body["spec"]["request"] = base64.b64encode(b"not a csr").decode()
    body["spec"]["signerName"] = ""
    with pytest.raises(cli.ApiError) as err:
        admin.call("POST", cli.CSR_PATH, body)
    assert err.value.code == 422
    assert "spec.request" in err.value.message and "spec.signerName" in err.value.message


async def test_controller_approves_and_signs_for_a_valid_token(apiserver, tmp_path):
    admin = _admin(apiserver)
    token = cli.create_token(admin, ttl=timedelta(hours=1))
    token_id = token.split(".")[0]
    boot = _api(apiserver, token)
    client = apiserver.client()
    try:
        async with running_controllers(client, ["certificates"]) as built:
            ctl = built["certificates"].runnables[0]
            ctl.ca = (apiserver.pki.ca_cert.read_bytes(), apiserver.pki.ca_key.read_bytes())
            import asyncio

            def request(suffix: str):
                return cli._request_certificate(
                    boot, f"node-csr-{token_id}-{suffix}",
                    make_csr("system:node:bootstrap-it", ["system:nodes"])[0],
                    cli.CLIENT_SIGNER, ["digital signature", "key encipherment",
                                        "client auth"], 30)
            cert = await asyncio.to_thread(request, uuid.uuid4().hex[:6])
            assert b"BEGIN CERTIFICATE" in cert
            with pytest.raises(ClusterError, match="TokenReused"):
                await asyncio.to_thread(request, uuid.uuid4().hex[:6])
    finally:
        await client.aclose()


def test_mkctl_certificate_approve_and_deny(apiserver):
    import subprocess
    import sys

    admin = _admin(apiserver)
    names = [f"manual-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    for name in names:
        admin.call("POST", cli.CSR_PATH, _csr_body(name, signer="example.com/manual"))

    def mkctl(*args):
        return subprocess.run([sys.executable, "-m", "minik8s.cli.mkctl", "--kubeconfig",
                               str(apiserver.kubeconfig), *args], capture_output=True,
                              text=True, timeout=60)
    out = mkctl("certificate", "approve", names[0])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"certificatesigningrequest.certificates.k8s.io/{names[0]} " \
                                 f"approved"
    csr = admin.call("GET", f"{cli.CSR_PATH}/{names[0]}")
    assert [(c["type"], c["reason"]) for c in csr["status"]["conditions"]] == [
        ("Approved", "KubectlApprove")]
    out = mkctl("certificate", "deny", names[0])
    assert out.returncode == 1 and "is already approved" in out.stderr, out.stderr
    out = mkctl("certificate", "deny", names[1], "nosuch")
    assert out.returncode == 1 and '"nosuch" not found' in out.stderr
    csr = admin.call("GET", f"{cli.CSR_PATH}/{names[1]}")
    assert [c["type"] for c in csr["status"]["conditions"]] == ["Denied"]
