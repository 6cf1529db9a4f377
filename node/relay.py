"""libp2p plumbing for reaching nodes behind NAT (PROTOCOL.md §17.4, §17.5):
the circuit relay this node offers, the circuits it dials, hole punching,
which of two connections to a peer stays, and the last address check before
a socket opens.

py-libp2p ships all the mechanisms (``libp2p.relay.circuit_v2``); this
module bends them to SMU's rules:

* ``GatedRelay`` serves the relay (hop) role with SMU's limits, grants a
  reservation only to the peer that asks for itself (py-libp2p takes the
  peer id from the request, so anyone could reserve for anyone) and only if
  a valid device record of an active device names that peer id; so the
  relay is not a free generic relay.  It accepts relayed connections (stop)
  only from relays this node reserved at.
* ``RelayDialer`` reserves slots and dials ``/p2p/<relay>/p2p-circuit``
  addresses itself: ``host.connect`` drops every circuit address.
* ``GuardedDCUtR`` is py-libp2p's hole punching with two changes: it dials
  only addresses that pass address hygiene, and it tells the other side
  only the addresses our reachability machine derived from several groups'
  reports (never one peer's word, §17.4.2).
* ``prefer_direct`` replaces the swarm's per-peer trimmer: with
  ``max_connections_per_peer=1`` a direct connection always wins over a
  relayed one (py-libp2p would keep the one with more streams: the relayed
  one), and the relayed one is closed after ``RELAY_GRACE`` so the link
  can move first.
* ``DialGuard`` wraps the TCP transport's last step after DNS resolution:
  no socket opens to a destination ``addresses.guard`` refuses, and a
  failed dial is logged once per address, readably (py-libp2p logs every
  failure at ERROR as ``Failed to open TCP stream``; that logger is
  silenced).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

import multiaddr
import trio
from libp2p.peer.id import ID
from libp2p.relay.circuit_v2.config import RelayConfig, RelayRole
from libp2p.relay.circuit_v2.dcutr import DCUtRProtocol
from libp2p.relay.circuit_v2.pb.circuit_pb2 import HopMessage
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID as HOP_PROTOCOL
from libp2p.relay.circuit_v2.protocol import CircuitV2Protocol
from libp2p.relay.circuit_v2.protocol_buffer import StatusCode, to_proto_status
from libp2p.relay.circuit_v2.resources import RelayLimits
from libp2p.relay.circuit_v2.transport import CircuitV2Transport
from libp2p.relay.circuit_v2.utils import write_delimited_msg
from libp2p.transport.exceptions import OpenConnectionError

from protocol.links.addresses import Classifier, IPNetwork, guard, parse_ip

log = logging.getLogger("smu.relay")

#: Relay limits (PROTOCOL.md §17.4.3).  go-libp2p's defaults (128 KiB and
#: 2 minutes a circuit) are sized for coordinating a hole punch only; a
#: messaging relay must carry a conversation and a catch-up (10,000 events
#: are about 6 MB of frames) for the third of pairs whose NATs cannot be
#: punched.  py-libp2p's defaults (1 GiB, 1 hour) would let one client use
#: a relay as a free tunnel.
CIRCUIT_SECONDS = 30 * 60
CIRCUIT_BYTES = 64 * 1024 * 1024
#: circuits at once to one reserved peer (a link and a few requests)
CIRCUITS_PER_RESERVATION = 8
RESERVATIONS = 128
RESERVATION_TTL = 3600
#: circuits at once opened by one source peer, and in all
CIRCUITS_PER_SOURCE = 4
CIRCUITS_TOTAL = 256
#: a relayed connection lives this long after a direct one replaced it
RELAY_GRACE = 3.0
DIAL_TIMEOUT = 10.0


def relay_limits(circuit_bytes: int = CIRCUIT_BYTES) -> RelayLimits:
    return RelayLimits(
        duration=CIRCUIT_SECONDS,
        data=circuit_bytes,
        max_circuit_conns=CIRCUITS_PER_RESERVATION,
        max_reservations=RESERVATIONS,
        reservation_ttl=RESERVATION_TTL,
    )


def is_relayed(conn: Any) -> bool:
    """Whether a swarm connection (or a stream's muxed connection) runs
    through a circuit relay."""
    try:
        addrs = conn.get_transport_addresses() or []
    except Exception:  # not every connection type reports addresses
        return False
    return any("/p2p-circuit" in str(a) for a in addrs)


def relay_of(conn: Any) -> str | None:
    """The relay's peer id of a relayed connection: the peer at the other
    end of the stream the circuit runs in.  (py-libp2p names the relay in
    the circuit's address, but on the receiving side it writes our own id
    there, which counted every inbound relayed link in one group.)"""
    try:
        addrs = conn.get_transport_addresses() or []
    except Exception:
        return None
    for a in addrs:
        text = str(a)
        if "/p2p-circuit" in text:
            carrier = _carrier_peer(conn)
            if carrier is not None:
                return carrier
            head = text.split("/p2p-circuit")[0]
            if "/p2p/" in head:
                return head.rsplit("/p2p/", 1)[1]
    return None


def _carrier_peer(conn: Any) -> str | None:
    """The peer of the stream under a connection (muxer, security session,
    its reader, the raw connection of a circuit and its stream), if any."""
    obj = conn
    for _ in range(8):
        stream = getattr(obj, "stream", None)
        if stream is not None:
            peer = getattr(getattr(stream, "muxed_conn", None), "peer_id", None)
            return peer.to_base58() if peer is not None else None
        obj = getattr(obj, "secured_conn", None) or getattr(obj, "conn", None)
        if obj is None:
            return None
    return None


def remote_ip(host: Any, peer: str) -> str:
    """The remote IP of our direct connection to ``peer``, or ''."""
    try:
        conns = host.get_network().connections.get(ID.from_base58(peer), [])
    except Exception:
        return ""
    for conn in conns if isinstance(conns, list) else [conns]:
        if is_relayed(conn):
            continue
        try:
            remote = conn.muxed_conn.get_remote_address()
        except Exception:
            continue
        if remote:
            return str(remote[0])
    return ""


class GatedRelay(CircuitV2Protocol):
    def __init__(
        self,
        host: Any,
        *,
        offer: bool,
        may_reserve: Callable[[str], bool],
        relays_we_use: Callable[[], Collection[str]],
        circuit_bytes: int = CIRCUIT_BYTES,
    ) -> None:
        super().__init__(host, limits=relay_limits(circuit_bytes), allow_hop=offer)
        self.may_reserve = may_reserve
        self.relays_we_use = relays_we_use
        self._per_source: dict[str, int] = {}
        self._circuits = 0
        self.stats: dict[str, int] = {
            "reservations_refused": 0,
            "circuits": 0,
            "circuits_refused": 0,
            "stop_refused": 0,
            "circuits_cut": 0,
        }

    async def _deny(self, stream: Any, code: StatusCode) -> None:
        try:
            msg = HopMessage(type=HopMessage.STATUS, status=to_proto_status(code))
            await write_delimited_msg(stream, msg)
        except Exception as exc:  # the client may be gone already
            log.debug("relay refusal not sent: %s", exc)

    async def _send_status(
        self, stream: Any, code: StatusCode, message: str, limit: Any = None
    ) -> None:
        if code == StatusCode.RESOURCE_LIMIT_EXCEEDED and "limit exceeded" in message:
            self.stats["circuits_cut"] += 1  # a circuit over its data or time limit
            log.info("relay circuit cut: %s", message)
        await super()._send_status(stream, code, message, limit)

    async def _handle_reserve(self, stream: Any, msg: Any) -> None:
        peer = stream.muxed_conn.peer_id
        if not self.may_reserve(peer.to_base58()):
            self.stats["reservations_refused"] += 1
            log.info("relay reservation refused: %s is named by no active device", peer)
            await self._deny(stream, StatusCode.PERMISSION_DENIED)
            return
        msg.ClearField("peer")  # a peer reserves for itself, never for another
        await super()._handle_reserve(stream, msg)

    async def _handle_connect(self, stream: Any, msg: Any) -> None:
        source = stream.muxed_conn.peer_id.to_base58()
        if (
            self._per_source.get(source, 0) >= CIRCUITS_PER_SOURCE
            or self._circuits >= CIRCUITS_TOTAL
        ):
            self.stats["circuits_refused"] += 1
            await self._deny(stream, StatusCode.RESOURCE_LIMIT_EXCEEDED)
            await stream.reset()
            return
        self._per_source[source] = self._per_source.get(source, 0) + 1
        self._circuits += 1
        self.stats["circuits"] += 1
        try:
            await super()._handle_connect(stream, msg)
        finally:
            self._circuits -= 1
            left = self._per_source.get(source, 1) - 1
            if left:
                self._per_source[source] = left
            else:
                self._per_source.pop(source, None)

    async def _handle_stop_stream(self, stream: Any) -> None:
        relay = stream.muxed_conn.peer_id.to_base58()
        if relay not in self.relays_we_use():
            self.stats["stop_refused"] += 1
            await stream.reset()
            return
        await super()._handle_stop_stream(stream)

    def reservations(self) -> int:
        return len(self.resource_manager._reservations)


class RelayDialer:
    """Reservations at relays, and dials through them."""

    def __init__(self, host: Any, protocol: GatedRelay) -> None:
        self.host = host
        # the client role is carried out by reserve() below: a dial must not
        # make a reservation on its own (py-libp2p's client role does)
        self.transport = CircuitV2Transport(host, protocol, RelayConfig(roles=RelayRole.STOP))

    async def reserve(self, relay: str) -> float | None:
        """A slot at ``relay``: its expiry (Unix seconds), or None."""
        relay_id = ID.from_base58(relay)
        try:
            with trio.fail_after(DIAL_TIMEOUT):
                stream = await self.host.new_stream(relay_id, [HOP_PROTOCOL])
                try:
                    ok = await self.transport._make_reservation(stream, relay_id)
                finally:
                    try:
                        await stream.close()
                    except Exception as exc:
                        log.debug("reservation stream close: %s", exc)
        except Exception as exc:  # libp2p raises many unrelated types
            log.info("no reservation at relay %s: %s", relay, exc)
            return None
        if not ok:
            return None
        expires = self.transport._reservations.get(relay_id)
        return float(expires) if expires else time.time() + RESERVATION_TTL

    async def dial(self, relay: str, peer: str) -> Any:
        """A connection to ``peer`` through ``relay`` (raises on failure)."""
        ma = multiaddr.Multiaddr(f"/p2p/{relay}/p2p-circuit/p2p/{peer}")
        with trio.fail_after(DIAL_TIMEOUT):
            return await self.transport.dial(ma)


class GuardedDCUtR(DCUtRProtocol):
    def __init__(
        self,
        host: Any,
        may_dial: Callable[[str], bool],
        our_addrs: Callable[[], Sequence[str]],
    ) -> None:
        super().__init__(host)
        self.may_dial = may_dial
        self.our_addrs = our_addrs
        self.refused = 0

    async def _dial_peer(
        self,
        peer_id: Any,
        addr: Any,
        source: tuple[str, int] | None = None,
        as_responder: bool = False,
    ) -> None:
        if not self.may_dial(str(addr)):
            self.refused += 1
            return
        await super()._dial_peer(peer_id, addr, source, as_responder)

    async def _get_observed_addrs(self) -> list[bytes]:
        out = []
        for text in self.our_addrs()[:8]:
            try:
                out.append(multiaddr.Multiaddr(text).to_bytes())
            except Exception:  # an address we cannot encode is left out
                continue
        return out


def prefer_direct(host: Any, nursery: trio.Nursery, on_direct: Callable[[str], None]) -> None:
    """Install a per-peer trimmer on the swarm that keeps the newest direct
    connection over relayed ones, and closes those after ``RELAY_GRACE``."""
    swarm = host.get_network()
    original = type(swarm)._trim_connections

    async def close_later(conn: Any) -> None:
        await trio.sleep(RELAY_GRACE)
        try:
            await conn.close()
        except Exception as exc:  # it may have gone already
            log.debug("closing a replaced relayed connection: %s", exc)

    def trim(peer_id: Any) -> None:
        conns = list(swarm.connections.get(peer_id, []))
        direct = [c for c in conns if not is_relayed(c)]
        relayed = [c for c in conns if is_relayed(c)]
        if not (direct and relayed):
            original(swarm, peer_id)
            return
        keep = direct[-1]
        # new streams go to the direct connection at once; the relayed one
        # keeps its streams until it closes
        swarm.connections[peer_id] = [keep]
        for conn in conns:
            if conn is not keep:
                nursery.start_soon(close_later, conn)
        log.info("peer %s: direct connection, the relayed one closes", peer_id)
        on_direct(peer_id.to_base58())

    swarm._trim_connections = trim


class DialGuard:
    """The last check before a TCP socket opens, after DNS (§17.5)."""

    def __init__(self, own: Callable[[], Sequence[IPNetwork]], classifier: Classifier) -> None:
        self.own = own
        self.classifier = classifier
        self.refused = 0
        self.failed = 0
        #: address -> failures in a row (logged at the first only)
        self._failures: dict[str, int] = {}

    def install(self, host: Any) -> None:
        logging.getLogger("libp2p.transport.tcp.tcp").setLevel(logging.CRITICAL)
        for transport in host.get_network().transport_manager.get_transports():
            original = getattr(transport, "_dial_resolved", None)
            if original is not None:
                transport._dial_resolved = self._wrap(original)

    def _wrap(self, original: Callable[..., Any]) -> Callable[..., Any]:
        async def dial(maddr: Any, source: tuple[str, int] | None = None) -> Any:
            text = str(maddr)
            host = None
            for proto in ("ip4", "ip6"):
                try:
                    host = maddr.value_for_protocol(proto)
                    break
                except Exception:  # not this family
                    continue
            ip = parse_ip(str(host)) if host else None
            if ip is None or not guard(ip, self.own(), self.classifier):
                self.refused += 1
                raise OpenConnectionError(f"not dialling {text}: address hygiene")
            try:
                conn = await original(maddr, source=source)
            except OpenConnectionError as exc:
                self.failed += 1
                n = self._failures.get(text, 0) + 1
                self._failures[text] = n
                if len(self._failures) > 4096:
                    del self._failures[next(iter(self._failures))]
                if n == 1:
                    reason = exc.__cause__ or exc
                    log.info("cannot reach %s: %s", text, getattr(reason, "strerror", reason))
                raise
            self._failures.pop(text, None)
            return conn

        return dial


def own_networks() -> list[IPNetwork]:
    """The networks of this host's interfaces (Linux), and loopback."""
    import fcntl
    import socket
    import struct

    nets: list[IPNetwork] = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _, name in socket.if_nameindex():
            req = struct.pack("256s", name.encode()[:15])
            try:
                addr = fcntl.ioctl(sock.fileno(), 0x8915, req)[20:24]  # SIOCGIFADDR
                mask = fcntl.ioctl(sock.fileno(), 0x891B, req)[20:24]  # SIOCGIFNETMASK
            except OSError:
                continue
            net = ipaddress.ip_network(
                f"{socket.inet_ntoa(addr)}/{socket.inet_ntoa(mask)}", strict=False
            )
            if net not in nets:
                nets.append(net)
    finally:
        sock.close()
    try:
        with open("/proc/net/if_inet6") as f:
            for line in f:
                fields = line.split()
                raw, plen = fields[0], int(fields[2], 16)
                text = ":".join(raw[i : i + 4] for i in range(0, 32, 4))
                net6 = ipaddress.ip_network(f"{text}/{plen}", strict=False)
                if net6 not in nets:
                    nets.append(net6)
    except (OSError, ValueError, IndexError):
        pass
    return nets
