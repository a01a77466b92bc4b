"""Host-local IPAM, as the CNI ``host-local`` plugin keeps it: one file per address in use,
named by the address and holding the pod uid, so a restarted kubelet finds every allocation
it made and hands a pod that already has an address the same one back. Addresses are
chosen round-robin after the last one reserved (kept in ``last_reserved_ip``), so a freed
address is not reused at once while a peer may still hold connections to it. The network
address, the gateway (first host address) and the broadcast address are never handed out.

All methods are synchronous file operations, cheap enough to call from the event loop; a
``flock`` on the folder keeps two processes sharing it consistent."""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
from pathlib import Path
from typing import Iterator

_LAST = "last_reserved_ip"
_LOCK = ".lock"


class IPAMExhausted(RuntimeError):
    """Every address of the range is in use."""


class HostLocalIPAM:
    def __init__(self, directory: Path | str, cidr: str):
        self.directory = Path(directory)
        self.network = ipaddress.ip_network(cidr, strict=False)
        if self.network.num_addresses < 4:
            raise ValueError(f"pod range {cidr} is too small")
        self.gateway = self.network.network_address + 1

    # --- queries ------------------------------------------------------------------------

    def allocations(self) -> dict[str, str]:
        """ip -> pod uid, for the addresses of this range in use."""
        out: dict[str, str] = {}
        if not self.directory.is_dir():
            return out
        for path in self.directory.iterdir():
            try:
                ip = ipaddress.ip_address(path.name)
            except ValueError:
                continue
            if ip in self.network:
                try:
                    out[str(ip)] = path.read_text().strip()
                except OSError:
                    continue
        return out

    def lookup(self, uid: str) -> str | None:
        return next((ip for ip, owner in self.allocations().items() if owner == uid), None)

    # --- changes ------------------------------------------------------------------------

    def allocate(self, uid: str) -> str:
        """The pod's address: the one it already has, or the next free one."""
        with self._locked():
            held = self.allocations()
            for ip, owner in held.items():
                if owner == uid:
                    return ip
            for ip in self._candidates():
                if str(ip) in held:
                    continue
                try:
                    fd = os.open(self.directory / str(ip), os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                                 0o644)
                except FileExistsError:
                    continue
                with os.fdopen(fd, "w") as f:
                    f.write(uid)
                    f.flush()
                    os.fsync(f.fileno())
                _write_atomic(self.directory / _LAST, str(ip))
                return str(ip)
        raise IPAMExhausted(f"no free address left in {self.network}")

    def release(self, uid: str) -> list[str]:
        """Free every address held by ``uid`` (idempotent); the addresses freed."""
        freed = []
        with self._locked():
            for ip, owner in self.allocations().items():
                if owner == uid:
                    with contextlib.suppress(FileNotFoundError):
                        (self.directory / ip).unlink()
                    freed.append(ip)
        return freed

    # --- helpers ------------------------------------------------------------------------

    def _usable(self) -> tuple[int, int]:
        first = int(self.network.network_address) + 2  # after the gateway
        last = int(self.network.broadcast_address) - (1 if self.network.version == 4 else 0)
        return first, last

    def _candidates(self) -> Iterator[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        first, last = self._usable()
        start = first
        try:
            prev = int(ipaddress.ip_address((self.directory / _LAST).read_text().strip()))
            if first <= prev <= last:
                start = prev + 1 if prev < last else first
        except (OSError, ValueError):
            pass
        for n in range(start, last + 1):
            yield ipaddress.ip_address(n)
        for n in range(first, start):
            yield ipaddress.ip_address(n)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


__all__ = ["HostLocalIPAM", "IPAMExhausted"]
