"""The iptables backend: the service map turned into NAT rules of our own chains, named and
shaped as Kubernetes' iptables proxier names and shapes them, written in one
``iptables-restore --noflush`` batch per sync.

Why this shape:

- one batch: every chain we own is declared (``:CHAIN - [0:0]`` flushes it under
  ``--noflush``) and refilled in the same transaction, so a reader never sees half a sync,
  and chains of services that are gone are flushed and deleted (``-X``) in it too. Nothing
  outside our chains is touched by the batch;
- chains per service port (``KUBE-SVC-<hash>``) and per endpoint (``KUBE-SEP-<hash>``), with
  the hash of the service port name as Kubernetes computes it (base32 of SHA-256, 16
  characters), so a rule names what it serves;
- even spread: endpoint i of n is picked with probability 1/(n-i) (the ``statistic`` match),
  which is uniform over all n; ``sessionAffinity: ClientIP`` first checks a ``recent`` list
  per endpoint, filled by the DNAT rule;
- masquerade only where replies would otherwise not come back through this node: traffic to
  a ClusterIP from outside the cluster CIDR (a node process, the host), every NodePort
  connection (its client may be anywhere, the node's loopback included), and hairpin (a pod
  reaching itself through its Service, whose reply would never leave the pod);
- no ready endpoints: a REJECT in the ``filter`` table (``icmp-port-unreachable``), so a
  connection is refused at once instead of timing out on the service bridge;
- the CVE-2020-8558 guard (``KUBE-FIREWALL`` in ``INPUT``): ``route_localnet`` lets packets
  for 127.0.0.0/8 be routed, so anything addressed there from elsewhere that was not DNATed
  by a rule of ours (or belongs to a connection already made) is dropped.

The jumps from the built-in chains are kept first in those chains (checked on every sync),
since the kubelet's pod egress chain in ``FORWARD`` accepts traffic to the service range and
would otherwise decide before our REJECTs are seen. Rendering is pure: functions of the
service map and of ``iptables-save`` output; the ``Iptables`` runner is the only I/O."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import shlex
import shutil
from dataclasses import dataclass
from typing import Iterable, Protocol

from kubeproxy.servicemap import Endpoint, ServicePort

log = logging.getLogger(__name__)

MASQ_MARK = "0x4000"
LOOPBACK = "127.0.0.0/8"

# chains we own, by table; per-service chains are recognised by their prefixes
NAT_CHAINS = ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ")
FILTER_CHAINS = ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FIREWALL")
SERVICE_CHAIN_PREFIXES = ("KUBE-SVC-", "KUBE-SEP-", "KUBE-EXT-")


@dataclass(frozen=True)
class Jump:
    """A rule in a built-in chain that leads into one of ours."""

    table: str
    chain: str
    args: tuple[str, ...]

    @property
    def target(self) -> str:
        return self.args[self.args.index("-j") + 1]


JUMPS: tuple[Jump, ...] = (
    Jump("nat", "PREROUTING", ("-m", "comment", "--comment", "kubernetes service portals",
                               "-j", "KUBE-SERVICES")),
    Jump("nat", "OUTPUT", ("-m", "comment", "--comment", "kubernetes service portals",
                           "-j", "KUBE-SERVICES")),
    Jump("nat", "POSTROUTING", ("-m", "comment", "--comment", "kubernetes postrouting rules",
                                "-j", "KUBE-POSTROUTING")),
    Jump("filter", "INPUT", ("-m", "conntrack", "--ctstate", "NEW", "-m", "comment",
                             "--comment", "kubernetes externally-visible service portals",
                             "-j", "KUBE-EXTERNAL-SERVICES")),
    Jump("filter", "INPUT", ("-j", "KUBE-FIREWALL")),
    Jump("filter", "FORWARD", ("-m", "conntrack", "--ctstate", "NEW", "-m", "comment",
                               "--comment", "kubernetes service portals", "-j",
                               "KUBE-SERVICES")),
    Jump("filter", "OUTPUT", ("-m", "conntrack", "--ctstate", "NEW", "-m", "comment",
                              "--comment", "kubernetes service portals", "-j",
                              "KUBE-SERVICES")),
)


# --- names --------------------------------------------------------------------------------


def _hash(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


def svc_chain(sp: ServicePort) -> str:
    return "KUBE-SVC-" + _hash(sp.key + sp.proto)


def ext_chain(sp: ServicePort) -> str:
    return "KUBE-EXT-" + _hash(sp.key + sp.proto)


def sep_chain(sp: ServicePort, ep: Endpoint) -> str:
    return "KUBE-SEP-" + _hash(sp.key + sp.proto + str(ep))


def _comment(text: str) -> list[str]:
    return ["-m", "comment", "--comment", f'"{text}"']


def _probability(n: int) -> str:
    return f"{1.0 / n:0.10f}"


# --- rendering ----------------------------------------------------------------------------


def render(ports: Iterable[ServicePort], *, cluster_cidr: str, masquerade_all: bool = False,
           existing_nat_chains: Iterable[str] = ()) -> str:
    """The ``iptables-restore --noflush`` input that makes our chains exactly what ``ports``
    need. ``existing_nat_chains``: chain names now in the nat table (from
    ``chains_of(iptables-save)``); per-service chains among them that are no longer needed
    are flushed and deleted in the same batch."""
    ports = list(ports)
    nat_chains: list[str] = list(NAT_CHAINS)
    nat: list[str] = []
    filt: list[str] = []

    def a(rules: list[str], chain: str, *words: str) -> None:
        rules.append(" ".join(["-A", chain, *words]))

    a(nat, "KUBE-POSTROUTING", "-m", "mark", "!", "--mark", f"{MASQ_MARK}/{MASQ_MARK}",
      "-j", "RETURN")
    a(nat, "KUBE-POSTROUTING", "-j", "MARK", "--xor-mark", MASQ_MARK)
    a(nat, "KUBE-POSTROUTING", *_comment("kubernetes service traffic requiring SNAT"),
      "-j", "MASQUERADE")
    a(nat, "KUBE-MARK-MASQ", "-j", "MARK", "--or-mark", MASQ_MARK)

    for sp in ports:
        proto = sp.proto
        if not sp.endpoints:
            reject = ["-j", "REJECT", "--reject-with", "icmp-port-unreachable"]
            if sp.cluster_ip:
                a(filt, "KUBE-SERVICES", "-d", f"{sp.cluster_ip}/32", "-p", proto,
                  *_comment(f"{sp.key} has no endpoints"), "-m", proto, "--dport",
                  str(sp.port), *reject)
            if sp.node_port:
                a(filt, "KUBE-EXTERNAL-SERVICES", "-m", "addrtype", "--dst-type", "LOCAL",
                  "-p", proto, *_comment(f"{sp.key} has no endpoints"), "-m", proto,
                  "--dport", str(sp.node_port), *reject)
            continue
        svc = svc_chain(sp)
        nat_chains.append(svc)
        if sp.cluster_ip:
            a(nat, "KUBE-SERVICES", "-d", f"{sp.cluster_ip}/32", "-p", proto,
              *_comment(f"{sp.key} cluster IP"), "-m", proto, "--dport", str(sp.port),
              "-j", svc)
            if masquerade_all:
                a(nat, svc, *_comment(f"{sp.key} cluster IP"), "-j", "KUBE-MARK-MASQ")
            else:
                a(nat, svc, "!", "-s", cluster_cidr, "-d", f"{sp.cluster_ip}/32", "-p", proto,
                  *_comment(f"{sp.key} cluster IP"), "-m", proto, "--dport", str(sp.port),
                  "-j", "KUBE-MARK-MASQ")
        if sp.node_port:
            ext = ext_chain(sp)
            nat_chains.append(ext)
            a(nat, "KUBE-NODEPORTS", "-p", proto, *_comment(sp.key), "-m", proto,
              "--dport", str(sp.node_port), "-j", ext)
            a(nat, ext, *_comment(f"masquerade traffic for {sp.key} external destinations"),
              "-j", "KUBE-MARK-MASQ")
            a(nat, ext, "-j", svc)
        seps = [(ep, sep_chain(sp, ep)) for ep in sp.endpoints]
        if sp.affinity_timeout:
            for ep, sep in seps:
                a(nat, svc, *_comment(f"{sp.key} -> {ep}"), "-m", "recent", "--name", sep,
                  "--mask", "255.255.255.255", "--rsource", "--rcheck", "--seconds",
                  str(sp.affinity_timeout), "--reap", "-j", sep)
        n = len(seps)
        for i, (ep, sep) in enumerate(seps):
            left = n - i
            if left > 1:
                a(nat, svc, *_comment(f"{sp.key} -> {ep}"), "-m", "statistic", "--mode",
                  "random", "--probability", _probability(left), "-j", sep)
            else:
                a(nat, svc, *_comment(f"{sp.key} -> {ep}"), "-j", sep)
        for ep, sep in seps:
            nat_chains.append(sep)
            a(nat, sep, *_comment(sp.key), "-s", f"{ep.ip}/32", "-j", "KUBE-MARK-MASQ")
            recent = (["-m", "recent", "--name", sep, "--mask", "255.255.255.255", "--rsource",
                       "--set"] if sp.affinity_timeout else [])
            a(nat, sep, *_comment(sp.key), "-p", proto, *recent, "-m", proto, "-j", "DNAT",
              "--to-destination", str(ep))
    a(nat, "KUBE-SERVICES", *_comment("kubernetes service nodeports; NOTE: this must be the "
                                      "last rule in this chain"),
      "-m", "addrtype", "--dst-type", "LOCAL", "-j", "KUBE-NODEPORTS")
    a(filt, "KUBE-FIREWALL", "!", "-s", LOOPBACK, "-d", LOOPBACK,
      *_comment("block incoming localnet connections"), "-m", "conntrack", "!", "--ctstate",
      "RELATED,ESTABLISHED,DNAT", "-j", "DROP")

    wanted = dict.fromkeys(nat_chains)
    stale = sorted(c for c in existing_nat_chains
                   if c.startswith(SERVICE_CHAIN_PREFIXES) and c not in wanted)
    lines = ["*filter", *(f":{c} - [0:0]" for c in FILTER_CHAINS), *filt, "COMMIT",
             "*nat", *(f":{c} - [0:0]" for c in [*wanted, *stale]), *nat,
             *(f"-X {c}" for c in stale), "COMMIT"]
    return "\n".join(lines) + "\n"


def chains_of(saved: str) -> list[str]:
    """The chain names declared in ``iptables-save`` output of one table."""
    return [line[1:].split()[0] for line in saved.splitlines() if line.startswith(":")]


def _rules_of(saved: str, chain: str) -> list[list[str]]:
    out = []
    for line in saved.splitlines():
        if line.startswith(f"-A {chain} "):
            out.append(shlex.split(line)[2:])
    return out


def _target(rule: list[str]) -> str | None:
    return rule[rule.index("-j") + 1] if "-j" in rule and rule.index("-j") + 1 < len(rule) else None


def plan_jumps(table: str, saved: str) -> list[list[str]]:
    """``iptables`` argument lists that put our jumps first, in order, in the built-in chains
    of ``table``, given its ``iptables-save`` output; empty when they already are."""
    commands: list[list[str]] = []
    by_chain: dict[str, list[Jump]] = {}
    for j in JUMPS:
        if j.table == table:
            by_chain.setdefault(j.chain, []).append(j)
    for chain, jumps in by_chain.items():
        rules = _rules_of(saved, chain)
        head = [_target(r) for r in rules[:len(jumps)]]
        if head == [j.target for j in jumps] and all(
                _same_rule(r, j.args) for r, j in zip(rules, jumps)):
            continue
        ours = {j.target for j in jumps}
        for r in rules:
            if _target(r) in ours:
                commands.append(["-t", table, "-D", chain, *r])
        for j in reversed(jumps):
            commands.append(["-t", table, "-I", chain, "1", *j.args])
    return commands


def _same_rule(saved_rule: list[str], args: tuple[str, ...]) -> bool:
    """Whether a rule as iptables-save prints it is ``args`` (the comment and the matches)."""
    return sorted(saved_rule) == sorted(args)


def plan_cleanup(table: str, saved: str) -> tuple[list[list[str]], str | None]:
    """What removes everything of ours from ``table``: ``iptables`` commands deleting the
    jumps, then a restore batch flushing and deleting our chains (None if there are none)."""
    ours = set(NAT_CHAINS if table == "nat" else FILTER_CHAINS)
    chains = [c for c in chains_of(saved) if c in ours or c.startswith(SERVICE_CHAIN_PREFIXES)]
    commands = []
    for builtin in ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"):
        for r in _rules_of(saved, builtin):
            if _target(r) in chains:
                commands.append(["-t", table, "-D", builtin, *r])
    if not chains:
        return commands, None
    batch = [f"*{table}", *(f":{c} - [0:0]" for c in chains), *(f"-X {c}" for c in chains),
             "COMMIT"]
    return commands, "\n".join(batch) + "\n"


# --- running ------------------------------------------------------------------------------


class IptablesError(RuntimeError):
    pass


class Runner(Protocol):
    async def save(self, table: str) -> str: ...

    async def restore(self, text: str) -> None: ...

    async def run(self, args: list[str]) -> None: ...


class Iptables:
    """``iptables-save``, ``iptables-restore --noflush`` and ``iptables`` as subprocesses, in
    the network namespace this process runs in."""

    def __init__(self, binary: str = "iptables"):
        self.binary = binary

    async def _exec(self, *cmd: str, stdin: str | None = None) -> str:
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.PIPE if stdin is not None else
            asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
        if proc.returncode != 0:
            raise IptablesError(f"{' '.join(cmd[:4])}: {err.decode(errors='replace').strip()}")
        return out.decode(errors="replace")

    async def save(self, table: str) -> str:
        return await self._exec(f"{self.binary}-save", "-t", table)

    async def restore(self, text: str) -> None:
        await self._exec(f"{self.binary}-restore", "-w", "5", "--noflush", stdin=text)

    async def run(self, args: list[str]) -> None:
        await self._exec(self.binary, "-w", "5", *args)


async def usable(binary: str = "iptables") -> str | None:
    """None when the iptables backend can work here; otherwise why not."""
    for tool in (binary, f"{binary}-save", f"{binary}-restore"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    try:
        await Iptables(binary).save("nat")
    except (IptablesError, OSError) as exc:
        return f"the nat table cannot be read ({exc})"
    return None


class IptablesBackend:
    """Programs a service map into the nat and filter tables."""

    name = "iptables"

    def __init__(self, runner: Runner, *, cluster_cidr: str, masquerade_all: bool = False):
        self.runner = runner
        self.cluster_cidr = cluster_cidr
        self.masquerade_all = masquerade_all

    async def sync(self, ports: list[ServicePort]) -> None:
        nat = await self.runner.save("nat")
        text = render(ports, cluster_cidr=self.cluster_cidr,
                      masquerade_all=self.masquerade_all, existing_nat_chains=chains_of(nat))
        await self.runner.restore(text)
        # the jumps last: they lead into chains that now exist
        for table in ("nat", "filter"):
            saved = nat if table == "nat" else await self.runner.save("filter")
            for cmd in plan_jumps(table, saved):
                await self.runner.run(cmd)

    async def close(self) -> None:
        await cleanup(self.runner)


async def cleanup(runner: Runner) -> list[str]:
    """Remove every jump and chain of ours from nat and filter; what was removed."""
    removed: list[str] = []
    for table in ("nat", "filter"):
        saved = await runner.save(table)
        commands, batch = plan_cleanup(table, saved)
        for cmd in commands:
            try:
                await runner.run(cmd)
            except IptablesError as exc:  # gone meanwhile
                log.debug("%s", exc)
        if batch:
            await runner.restore(batch)
            removed += [f"{table}/{line[1:].split()[0]}" for line in batch.splitlines()
                        if line.startswith(":")]
    return removed


__all__ = ["render", "chains_of", "plan_jumps", "plan_cleanup", "svc_chain", "sep_chain",
           "ext_chain", "Iptables", "IptablesBackend", "IptablesError", "Runner", "cleanup",
           "usable", "JUMPS"]
