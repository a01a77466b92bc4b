"""``minik8s kubelet``: flags (derived from ``KubeletConfig``, or the same keys in a
``--config`` file), logging, the runtime and network chosen by flag, and a clean stop on
SIGTERM/SIGINT that leaves the pods running (or removes them with ``--drain-on-exit``)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import logging
import sys
from typing import Any

from kubelet.config import KubeletConfig
from minik8s.runtime import configfile
from minik8s.runtime.process import configure_logging, run_until_signalled

log = logging.getLogger("kubelet")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minik8s kubelet",
                                description="the minik8s node agent: runs the pods bound to "
                                            "this node as Docker containers")
    for f in dataclasses.fields(KubeletConfig):
        flag = "--" + f.name.replace("_", "-")
        names = [flag] + ([f.metadata["flag"]] if "flag" in f.metadata else [])
        kw: dict[str, Any] = {"dest": f.name, "help": f.metadata.get("help", "")}
        if f.type in (bool, "bool"):
            p.add_argument(*names, action="store_true", **kw)
            continue
        typ = {"int": int, "float": float}.get(str(f.type), str)
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        p.add_argument(*names, type=typ, default=f.default, **kw)
    return p


def parse_args(argv: list[str] | None) -> KubeletConfig:
    p = build_parser()
    a = vars(configfile.parse_args(p, argv))
    config = KubeletConfig(**{f.name: a[f.name] for f in dataclasses.fields(KubeletConfig)})
    if not config.node_name:
        p.error("--node-name is required")
    if not config.kubeconfig:
        p.error("--kubeconfig is required")
    if config.tls_cert_file and not (config.tls_private_key_file and config.client_ca_file):
        p.error("--tls-cert-file needs --tls-private-key-file and --client-ca-file")
    from kubelet.node import parse_node_labels, parse_taints
    for flag, parse, value in (("--register-with-taints", parse_taints,
                                config.register_with_taints),
                               ("--node-labels", parse_node_labels, config.node_labels)):
        try:
            parse(value)
        except ValueError as exc:
            p.error(f"{flag}: {exc}")
    return config


class NetworkUnavailable(RuntimeError):
    pass


def make_network(config: KubeletConfig, node_ip: str) -> Any:
    if config.network == "none":
        from kubelet.network import NoNetwork
        return NoNetwork(config.cluster_dns or "127.0.0.53")
    try:
        module = importlib.import_module("kubelet.network.bridge")
    except ModuleNotFoundError as exc:
        if exc.name == "kubelet.network.bridge":
            raise NetworkUnavailable(
                "--network bridge needs kubelet/network/bridge.py, which is not in this "
                "build; use --network none") from None
        raise
    return module.BridgeNetwork(node_name=config.node_name, root_dir=config.root_dir,
                                node_ip=node_ip, cluster_dns=config.cluster_dns or None,
                                cluster_cidr=config.cluster_cidr,
                                service_cidr=config.service_cidr)


async def run(config: KubeletConfig) -> int:
    from kubelet.kubelet import Kubelet
    from kubelet.node import default_route_ip
    from kubelet.runtime.docker import DockerRuntime
    from minik8s.client import Client
    from minik8s.pki import cluster_id

    node_ip = config.node_ip or default_route_ip()
    config = config.replace(node_ip=node_ip)
    network = make_network(config, node_ip)
    runtime = DockerRuntime(config.docker_url)
    client = Client.from_kubeconfig(config.kubeconfig)
    if not config.cluster_id and client.config.ca_pem:
        config = config.replace(cluster_id=cluster_id(client.config.ca_pem))
    kubelet = Kubelet(config, client, runtime, network)

    async def cleanup() -> None:  # pods keep running: a kubelet restart must not kill them
        try:
            if config.drain_on_exit:
                await kubelet.drain()
        finally:
            await client.aclose()
            runtime.close()

    log.info("kubelet for node %s starting (ip %s, network %s, root %s)", config.node_name,
             node_ip, config.network, config.root_dir)
    return await run_until_signalled(kubelet.start, log, cleanup)


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    configure_logging(config.verbose)
    try:
        return asyncio.run(run(config))
    except NetworkUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["main", "parse_args", "build_parser", "make_network"]
