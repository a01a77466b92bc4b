"""The userspace backend, for nodes where iptables cannot be used: an asyncio TCP proxy per
service port, as Kubernetes' original userspace proxier was.

Each ClusterIP is bound as a /32 address on the service bridge, which makes it a local
address of the node: connections from pods (routed to the node), from node processes and
from the host (routed via node-1) reach a listener on ``clusterIP:port``. NodePorts listen
on every address of the node (``0.0.0.0``), loopback included. A connection is spliced to a
ready endpoint picked round robin (or the client's previous one, with ``sessionAffinity:
ClientIP``, until its timeout); an endpoint that refuses is skipped for the next one.

A service port without ready endpoints has no listener while its address stays bound, so
the kernel answers a connection with a reset at once: refused, never left hanging. UDP is
not proxied by this backend (its service ports are skipped with a warning)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Callable

from kubeproxy import netsetup
from kubeproxy.servicemap import Endpoint, ServicePort

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 3.0
BUFFER = 256 * 1024
AFFINITY_PRUNE_MIN = 64


@dataclass
class Balancer:
    """Round robin over the endpoints of one service port, with ClientIP affinity."""

    endpoints: tuple[Endpoint, ...] = ()
    affinity_timeout: int | None = None
    clock: Callable[[], float] = time.monotonic
    _next: int = 0
    _affinity: dict[str, tuple[Endpoint, float]] = field(default_factory=dict)
    _prune_at: int = AFFINITY_PRUNE_MIN

    def update(self, endpoints: tuple[Endpoint, ...], affinity_timeout: int | None) -> None:
        if endpoints != self.endpoints:
            self.endpoints = endpoints
            self._next = 0
            self._affinity = {ip: v for ip, v in self._affinity.items() if v[0] in endpoints}
        if affinity_timeout != self.affinity_timeout:
            self.affinity_timeout = affinity_timeout
            self._affinity.clear()

    def choose(self, client_ip: str) -> list[Endpoint]:
        """Endpoints to try, in order: the first is this connection's pick."""
        eps = list(self.endpoints)
        if not eps:
            return []
        now = self.clock()
        if self.affinity_timeout:
            if len(self._affinity) >= self._prune_at:
                self._prune(now)
            held = self._affinity.get(client_ip)
            if held and held[0] in eps and now - held[1] < self.affinity_timeout:
                self._affinity[client_ip] = (held[0], now)
                first = eps.index(held[0])
                return eps[first:] + eps[:first]
        first = self._next % len(eps)
        self._next = first + 1
        order = eps[first:] + eps[:first]
        if self.affinity_timeout:
            self._affinity[client_ip] = (order[0], now)
        return order

    def _prune(self, now: float) -> None:
        """Forget clients whose affinity has expired. Run when the table has doubled since
        the last pass, so each choose() pays O(1) amortised however many clients come."""
        timeout = self.affinity_timeout or 0
        self._affinity = {ip: v for ip, v in self._affinity.items() if now - v[1] < timeout}
        self._prune_at = max(AFFINITY_PRUNE_MIN, 2 * len(self._affinity))

    def connected(self, client_ip: str, endpoint: Endpoint) -> None:
        """The endpoint actually used (after skipping failed ones) keeps the client."""
        if self.affinity_timeout:
            self._affinity[client_ip] = (endpoint, self.clock())


class _Splice:
    """One proxied connection: the accepted socket, the upstream one made for it, and the
    bytes between them, driven straight by the event loop's reader and writer callbacks on
    non-blocking sockets: no transport, no task and no await per connection or chunk (a
    connection costs a few callbacks; asyncio's own server makes a task per accept).

    Each direction reads what is there and sends it on; what the receiver cannot take yet
    is kept and the sending side is not read again until it is gone (flow control). An EOF
    is passed on as a half-close (``shutdown(SHUT_WR)``), so a client that shuts down its
    sending side after a request still gets the whole answer; the pair is closed when both
    directions have ended, or at the first error."""

    __slots__ = ("listener", "loop", "client", "client_ip", "upstream", "candidates",
                 "endpoint", "timer", "pending", "ended", "closed")

    def __init__(self, listener: "_Listener", client: socket.socket, client_ip: str):
        self.listener = listener
        self.loop = listener.loop
        self.client = client
        self.client_ip = client_ip
        self.upstream: socket.socket | None = None
        self.candidates: list[Endpoint] = []
        self.endpoint: Endpoint | None = None
        self.timer: asyncio.TimerHandle | None = None
        # per direction (0: client -> upstream, 1: upstream -> client)
        self.pending: list[bytes] = [b"", b""]
        self.ended = [False, False]
        self.closed = False

    # -- connecting ----------------------------------------------------------------------

    def start(self) -> None:
        self.candidates = self.listener.balancer.choose(self.client_ip)
        self._try_next()

    def _try_next(self) -> None:
        while self.candidates and not self.closed:
            ep = self.candidates.pop(0)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            err = sock.connect_ex((ep.ip, ep.port))
            self.upstream, self.endpoint = sock, ep
            if err == 0:
                self._connected()
                return
            if err in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
                self.loop.add_writer(sock.fileno(), self._on_connect)
                self.timer = self.loop.call_later(CONNECT_TIMEOUT, self._connect_failed,
                                                  "timed out")
                return
            self._connect_failed(os.strerror(err))
            return
        self.close()  # no endpoint took it: the client sees its connection closed

    def _on_connect(self) -> None:
        sock = self.upstream
        assert sock is not None
        self.loop.remove_writer(sock.fileno())
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._connect_failed(os.strerror(err))
        else:
            self._connected()

    def _connect_failed(self, why: str) -> None:
        log.debug("%s: endpoint %s failed: %s", self.listener.key, self.endpoint, why)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.upstream is not None:
            self.loop.remove_writer(self.upstream.fileno())
            self.upstream.close()
            self.upstream = None
        self._try_next()

    def _connected(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        assert self.upstream is not None and self.endpoint is not None
        self.listener.balancer.connected(self.client_ip, self.endpoint)
        self.loop.add_reader(self.client.fileno(), self._readable, 0)
        self.loop.add_reader(self.upstream.fileno(), self._readable, 1)

    # -- moving bytes --------------------------------------------------------------------

    def _ends(self, direction: int) -> tuple[socket.socket, socket.socket]:
        assert self.upstream is not None
        return ((self.client, self.upstream) if direction == 0
                else (self.upstream, self.client))

    def _readable(self, direction: int) -> None:
        src, dst = self._ends(direction)
        try:
            data = src.recv(BUFFER)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if not data:
            self.loop.remove_reader(src.fileno())
            self._end(direction)
            return
        try:
            sent = dst.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.close()
            return
        if sent < len(data):
            self.pending[direction] = data[sent:]
            self.loop.remove_reader(src.fileno())
            self.loop.add_writer(dst.fileno(), self._writable, direction)

    def _writable(self, direction: int) -> None:
        src, dst = self._ends(direction)
        data = self.pending[direction]
        try:
            sent = dst.send(data)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        self.pending[direction] = data = data[sent:]
        if data:
            return
        self.loop.remove_writer(dst.fileno())
        if self.ended[direction]:
            self._end(direction)
        else:
            self.loop.add_reader(src.fileno(), self._readable, direction)

    def _end(self, direction: int) -> None:
        """The sender of ``direction`` has finished: pass the EOF on once its bytes are."""
        self.ended[direction] = True
        if self.pending[direction]:
            return  # _writable comes back here when they are sent
        _, dst = self._ends(direction)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
        if all(self.ended) and not any(self.pending):
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        for sock in (self.client, self.upstream):
            if sock is None or sock.fileno() < 0:
                continue
            self.loop.remove_reader(sock.fileno())
            self.loop.remove_writer(sock.fileno())
            sock.close()
        self.listener.connections.discard(self)


class _Listener:
    """A listening socket whose accepts are handled in the loop's reader callback."""

    def __init__(self, host: str, port: int, balancer: Balancer, key: str,
                 connections: set[_Splice]):
        self.host, self.port, self.balancer, self.key = host, port, balancer, key
        self.loop = asyncio.get_running_loop()
        self.sock: socket.socket | None = None
        # the backend's set: a connection outlives its listener (closed when the port's
        # endpoints went away) and is still ended by the backend's close()
        self.connections = connections

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(1024)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self.loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        assert self.sock is not None
        for _ in range(64):
            try:
                conn, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE, ECONNABORTED ...: the rest wait in the backlog
                log.warning("%s: accept on %s:%d: %s", self.key, self.host, self.port, exc)
                return
            conn.setblocking(False)
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            splice = _Splice(self, conn, addr[0])
            self.connections.add(splice)
            splice.start()

    async def close(self) -> None:
        """Stop accepting; connections already made go on."""
        if self.sock is not None:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None


class UserspaceBackend:
    """Listeners for a service map; ``sync`` adds, updates and removes them in place, so
    established connections survive endpoint changes."""

    name = "userspace"

    def __init__(self, *, bridge: str = netsetup.SERVICE_BRIDGE, node_port_address: str = "0.0.0.0",
                 manage_addresses: bool = True):
        self.bridge = bridge
        self.node_port_address = node_port_address
        self.manage_addresses = manage_addresses
        self._balancers: dict[str, Balancer] = {}
        self._listeners: dict[tuple[str, int], _Listener] = {}
        self._connections: set[_Splice] = set()  # of every listener, open or closed
        self._warned: set[str] = set()

    async def sync(self, ports: list[ServicePort]) -> None:
        tcp = []
        for sp in ports:
            if sp.protocol == "TCP":
                tcp.append(sp)
            elif sp.key not in self._warned:
                self._warned.add(sp.key)
                log.warning("%s: the userspace backend proxies TCP only, not %s", sp.key,
                            sp.protocol)
        if self.manage_addresses:
            ips = {sp.cluster_ip for sp in tcp if sp.cluster_ip}
            await asyncio.to_thread(netsetup.set_bound_addresses, ips, self.bridge)
        wanted: dict[tuple[str, int], ServicePort] = {}
        for sp in tcp:
            bal = self._balancers.setdefault(sp.key, Balancer())
            bal.update(sp.endpoints, sp.affinity_timeout)
            if not sp.endpoints:
                continue  # no listener: the kernel refuses connections at once
            if sp.cluster_ip:
                wanted[(sp.cluster_ip, sp.port)] = sp
            if sp.node_port:
                wanted[(self.node_port_address, sp.node_port)] = sp
        keys = {sp.key for sp in tcp}
        for k in [k for k in self._balancers if k not in keys]:
            del self._balancers[k]
        for addr, lst in list(self._listeners.items()):
            sp = wanted.get(addr)
            if sp is None or lst.key != sp.key:
                await lst.close()
                del self._listeners[addr]
        for addr, sp in wanted.items():
            if addr in self._listeners:
                continue
            lst = _Listener(addr[0], addr[1], self._balancers[sp.key], sp.key,
                            self._connections)
            try:
                await lst.start()
            except OSError as exc:
                log.error("%s: cannot listen on %s:%d: %s", sp.key, addr[0], addr[1], exc)
                continue
            self._listeners[addr] = lst

    @property
    def listening(self) -> list[tuple[str, int]]:
        return sorted(self._listeners)

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    async def close(self) -> None:
        for lst in self._listeners.values():
            await lst.close()
        self._listeners.clear()
        for splice in list(self._connections):
            splice.close()
        self._connections.clear()
        if self.manage_addresses:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(netsetup.set_bound_addresses, set(), self.bridge)


__all__ = ["UserspaceBackend", "Balancer"]
