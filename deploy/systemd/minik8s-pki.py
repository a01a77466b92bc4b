#!/usr/bin/env python3
"""Certificates and kubeconfigs for a manual install under systemd (README "Binary install
with systemd"), made with the same library calls ``minik8s init`` uses, but without starting
anything: the units do that.

  minik8s-pki.py master ADDRESS [--dir /etc/minik8s]
      on the master: the cluster CA, the API server's serving certificate (ADDRESS, 127.0.0.1
      and the `kubernetes` Service names), the component and admin client certificates,
      etcd's separate CA with server, peer and API-server-client pairs, and the kubeconfigs
      admin (server https://ADDRESS:6443), scheduler and controller-manager (loopback).
  minik8s-pki.py node NAME ADDRESS --master ADDRESS [--dir /etc/minik8s] --out FOLDER
      on the master, for one worker: FOLDER gets what the worker's /etc/minik8s needs (the
      CA certificate, the node's client+serving pair for ADDRESS and NAME, kubelet and
      kube-proxy kubeconfigs); copy it over. (`minik8s join` does the same with a token and
      a CSR, so the node key never leaves the worker.)

Existing valid files are reused, so running it again is safe."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from minik8s.client import write_kubeconfig
from minik8s.pki import PKIPaths, ensure_pki, issue_node_cert
from minik8s.pki.etcd import ensure_etcd_pki


def master(address: str, root: Path) -> int:
    pki = ensure_pki(root / "pki", hosts=[address, "127.0.0.1", "localhost"])
    ensure_etcd_pki(root / "pki" / "etcd", hosts=[address])
    ca = pki.ca_cert.read_bytes()
    for name, user, server in (
            ("admin", "kubernetes-admin", f"https://{address}:6443"),
            ("scheduler", "system:kube-scheduler", "https://127.0.0.1:6443"),
            ("controller-manager", "system:kube-controller-manager", "https://127.0.0.1:6443")):
        cert, key = pki.pair(name)
        write_kubeconfig(root / f"{name}.kubeconfig", server=server, ca_pem=ca,
                         cert_pem=cert.read_bytes(), key_pem=key.read_bytes(), user_name=user)
    print(f"PKI in {root / 'pki'} (etcd's in {root / 'pki' / 'etcd'}); kubeconfigs "
          f"{root}/{{admin,scheduler,controller-manager}}.kubeconfig")
    return 0


def node(name: str, address: str, master_address: str, root: Path, out: Path) -> int:
    pki = PKIPaths.at(root / "pki")
    if not pki.ca_key.is_file():
        raise ValueError(f"no cluster CA in {pki.directory}: run `master` first")
    cert, key = issue_node_cert(pki, name, hosts=[address, name])
    server = f"https://{master_address}:6443"
    ca = pki.ca_cert.read_bytes()
    (out / "pki").mkdir(parents=True, exist_ok=True)
    out.chmod(0o700)
    shutil.copy2(pki.ca_cert, out / "pki" / "ca.crt")
    shutil.copy2(cert, out / "pki" / cert.name)
    shutil.copy2(key, out / "pki" / key.name)
    write_kubeconfig(out / "kubelet.kubeconfig", server=server, ca_pem=ca,
                     cert_pem=cert.read_bytes(), key_pem=key.read_bytes(),
                     user_name=f"system:node:{name}")
    proxy_cert, proxy_key = pki.pair("kube-proxy")
    write_kubeconfig(out / "kube-proxy.kubeconfig", server=server, ca_pem=ca,
                     cert_pem=proxy_cert.read_bytes(), key_pem=proxy_key.read_bytes(),
                     user_name="system:kube-proxy")
    print(f"node {name}: copy {out}/ to the worker's /etc/minik8s/")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="minik8s-pki.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("master")
    m.add_argument("address")
    m.add_argument("--dir", type=Path, default=Path("/etc/minik8s"))
    n = sub.add_parser("node")
    n.add_argument("name")
    n.add_argument("address")
    n.add_argument("--master", required=True)
    n.add_argument("--dir", type=Path, default=Path("/etc/minik8s"))
    n.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    try:
        if a.cmd == "master":
            return master(a.address, a.dir)
        return node(a.name, a.address, a.master, a.dir, a.out)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
