"""The cluster's certificate authority, kept in one place so that the API server, every
daemon, ``minik8s join`` and kubeconfig generation agree on file names and identities."""

from minik8s.pki.certs import (
    CLIENT_IDENTITIES,
    PKIError,
    PKIPaths,
    ca_public_key_hash,
    cluster_id,
    create_ca,
    ensure_pki,
    identity_from_cert,
    issue_cert,
    issue_node_cert,
    make_csr,
    sign_csr,
)

__all__ = [
    "CLIENT_IDENTITIES", "PKIError", "PKIPaths", "ca_public_key_hash", "cluster_id", "create_ca",
    "ensure_pki", "identity_from_cert", "issue_cert", "issue_node_cert", "make_csr", "sign_csr",
]
