"""Links with peers: the libp2p side of the link manager (PROTOCOL.md §17).

``protocol.links.manager.LinkManager`` decides (admission, bans, refusals,
whom to dial); this adapter carries its decisions out over libp2p and tells
it what happened.  A *link* is one replication stream ``/smu/replication/3``
with a peer; ``LinkHandler.serve_link`` (the replication service) runs it
for as long as it lasts.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio
from libp2p.abc import INotifee
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.peer.peerstore import PeerStoreError

from protocol.core.machine import Now
from protocol.links.addresses import DEFAULT, Classifier
from protocol.links.manager import (
    Admitted,
    Close,
    Dial,
    LinkManager,
    Output,
    Rejected,
)
from protocol.links.policy import LinkLimits

from .driver import MachineDriver
from .errors import NodeUsageError, PeerUnreachable
from .tasks import TaskStatus
from .transport import parse_multiaddr

log = logging.getLogger("smu.links")

#: frames queued for one link's writer; a peer that lets it fill is cut off
LINK_QUEUE = 1024
#: after a failed explicit dial, how long the other side's simultaneous
#: dial may take to register
DIAL_RACE_WAIT = 2.0


@dataclass
class Link:
    peer: str
    stream: Any
    outbound: bool
    #: the remote host of the connection, and its network group
    host: str
    group: str
    send: trio.MemorySendChannel[bytes]
    recv: trio.MemoryReceiveChannel[bytes]
    cancel: trio.CancelScope = field(default_factory=trio.CancelScope)
    #: read nothing more from this link before then (trio time): the
    #: replication machine's Pause for a peer sending what we hold
    paused_until: float = 0.0
    #: the link runs through this circuit relay (§17.4), else None
    relay: str | None = None

    @property
    def relayed(self) -> bool:
        return self.relay is not None


#: runs one admitted link until it ends (the replication service)
ServeLink = Callable[[Link], Awaitable[None]]


def dial_error_text(exc: BaseException) -> str:
    """Why a dial failed, in a few words, from libp2p's chain of wrapped
    errors (no libp2p internals: the root cause, e.g. "connection refused")."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    found: list[BaseException] = []
    while todo:
        x = todo.pop(0)
        if id(x) in seen:
            continue
        seen.add(id(x))
        found.append(x)
        subs = [x.__cause__, x.__context__]
        subs += [*getattr(x, "errors", ()), *getattr(x, "exceptions", ())]
        todo += [sub for sub in subs if isinstance(sub, BaseException)]
    for x in found:
        number = getattr(x, "errno", None)
        if isinstance(number, int) and number:
            return os.strerror(number).lower()
    for x in found:
        if isinstance(x, trio.TooSlowError | TimeoutError):
            return "timed out"
    names = " ".join(type(x).__name__.lower() for x in found)
    if "handshake" in names or "noise" in names or "security" in names:
        return "the secure handshake failed (not an SMU node, or another peer id)"
    if "protocol" in names or "negotiat" in names:
        return "it does not speak the SMU protocols"
    return "no answer"


def _remote_host(stream: Any) -> str:
    remote = stream.get_remote_address()
    return str(remote[0]) if remote else ""


def _circuit(addr: str) -> tuple[str, str] | None:
    """(relay, peer) of ``.../p2p/<relay>/p2p-circuit/p2p/<peer>``."""
    if "/p2p-circuit/p2p/" not in addr:
        return None
    head, peer = addr.split("/p2p-circuit/p2p/", 1)
    if "/p2p/" not in head or "/" in peer:
        return None
    return head.rsplit("/p2p/", 1)[1], peer


async def close_quietly(stream: Any) -> None:
    """Reset a stream whose peer may already be gone."""
    try:
        await stream.reset()
    except Exception:
        with contextlib.suppress(Exception):
            await stream.close()


class LinkService:
    def __init__(
        self,
        host: Any,
        peer_id: str,
        replication_protocol: str,
        limits: LinkLimits | None = None,
        classifier: Classifier = DEFAULT,
    ) -> None:
        self.host = host
        self.peer_id = peer_id
        self.protocol = replication_protocol
        self.manager = LinkManager(peer_id, limits, secret=os.urandom(16), classifier=classifier)
        #: dials through a relay: (relay, peer) -> connection (node.relay)
        self.circuit_dial: Callable[[str, str], Awaitable[Any]] | None = None
        #: a relayed connection: the relay's peer id (node.relay.relay_of)
        self.relay_of: Callable[[Any], str | None] = lambda conn: None
        #: the relay's remote host, for the link's network group
        self.host_of: Callable[[str], str] = lambda peer: ""
        #: (peer, addrs, source host) -> the addresses we may dial (§17.5)
        self.dialable: Callable[[str, Sequence[str], str | None], list[str]] = (
            lambda peer, addrs, source: list(addrs)
        )
        self.driver = MachineDriver("links", self.manager, self._carry_out)
        self.links: dict[str, Link] = {}
        self._serve_link: ServeLink | None = None
        self._nursery: trio.Nursery | None = None
        #: set when a link with that peer is registered
        self._link_waiters: dict[str, set[trio.Event]] = {}
        #: one dial per peer at a time: a delivery and the manager dialling
        #: a peer at once made two circuits and two links, and closing one
        #: left a relayed link half open at the other end
        self._dial_locks: dict[str, trio.Lock] = {}
        #: addresses of peers we dialled, for the replication machine's
        #: peer exchange (it shares only peers someone vouched for)
        self.on_dialled: Callable[[str, list[str]], None] = lambda peer, addrs: None
        #: told of each link admitted, before it is served
        self.on_opened: list[Callable[[Link], None]] = []
        #: every stream this node opens passes here (the metrics count it)
        self.wrap_stream: Callable[[Any, str], Any] = lambda stream, protocol: stream
        #: told when a link stops being *the* link with its peer (closed or
        #: replaced), at once, before any new link with that peer is served
        self.on_closed: list[Callable[[Link], None]] = []
        #: the set of linked peers changed
        self.on_changed: Callable[[], None] = lambda: None
        #: peers whose failed dial was logged: logged again only once they
        #: were reached (one line per outage, not one per retry)
        self._unreachable: set[str] = set()

    async def run(
        self,
        serve_link: ServeLink,
        bootstrap: Sequence[str],
        task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self._serve_link = serve_link
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.driver.run)
            self.host.get_network().register_notifee(_ConnectionWatcher(self))
            peers: dict[str, str] = {}
            for addr in bootstrap:
                if "/p2p/" in addr:
                    base, peer = addr.rsplit("/p2p/", 1)
                    peers[peer] = base
                else:
                    log.warning("bootstrap address without /p2p/<peer id> ignored: %s", addr)
            self.driver.call(lambda now: self.manager.set_bootstrap(peers, now))
            task_status.started()
            await trio.sleep_forever()

    def stop(self) -> None:
        for link in list(self.links.values()):
            link.cancel.cancel()

    # -- carrying out the manager's decisions --------------------------------

    def _carry_out(self, outputs: Sequence[Output]) -> None:
        for out in outputs:
            if isinstance(out, Dial):
                if self._nursery is not None:
                    self._nursery.start_soon(self._dial_for_manager, out)
            elif isinstance(out, Close):
                link = self.links.get(out.peer)
                if link is not None:
                    log.info("closing the link with %s: %s", out.peer, out.reason)
                    link.cancel.cancel()
                if out.connection and self._nursery is not None:
                    self._nursery.start_soon(self._close_connection, out.peer)
            elif isinstance(out, Rejected):
                log.info("refusing a link with %s: %s", out.peer, out.refusal.value)

    async def _close_connection(self, peer: str) -> None:
        try:
            await self.host.disconnect(ID.from_base58(peer))
        except Exception as exc:  # the connection may be gone already
            log.debug("closing the connection of %s: %s", peer, exc)

    async def _dial_for_manager(self, dial: Dial) -> None:
        addr = f"{dial.addr}/p2p/{dial.peer}"
        if dial.bootstrap:
            # libp2p refuses for a minute to redial a peer that failed; the
            # manager's own hold-back decides when a bootstrap peer is due
            with contextlib.suppress(Exception):
                self.host.get_network().unblock_peer(ID.from_base58(dial.peer))
        try:
            await self.dial(addr)
        except (PeerUnreachable, NodeUsageError) as exc:
            if dial.bootstrap and dial.peer not in self._unreachable:
                self._unreachable.add(dial.peer)
                log.warning("bootstrap peer unreachable, retrying in the background: %s", exc)
            else:
                log.debug("dial %s failed: %s", addr, exc)
            self.driver.call(lambda now: self.manager.dial_failed(dial.peer, now))
            return
        if dial.peer in self._unreachable:
            self._unreachable.discard(dial.peer)
            log.warning("bootstrap peer %s reached again", dial.peer)

    # -- dialling ----------------------------------------------------------------

    async def dial(self, addr: str) -> str:
        """Open a link with the peer at ``addr`` (ending in ``/p2p/<id>``;
        a circuit address ``/p2p/<relay>/p2p-circuit/p2p/<id>`` dials
        through that relay)."""
        circuit = _circuit(addr)
        if circuit is not None:
            return await self._dial_circuit(*circuit)
        try:
            info = info_from_p2p_addr(parse_multiaddr(addr))
        except Exception as exc:  # multiaddr raises several unrelated types
            raise NodeUsageError(f"not a peer address ({exc}): {addr}") from exc
        peer = info.peer_id.to_base58()
        if peer == self.peer_id:
            raise NodeUsageError("that address is this node")
        if peer in self.manager.refused:
            raise NodeUsageError(f"peer {peer} is on the refused list")
        if peer in self.links:
            return peer
        if not self.dialable(peer, [str(a) for a in info.addrs], None):
            raise PeerUnreachable(f"not dialling {addr}: address hygiene (§17.5)")
        async with self._one_dial(peer):
            if peer in self.links:  # the dial we waited for linked it
                return peer
            self._addresses_first(info.peer_id, list(info.addrs))
            try:
                await self.host.connect(info)
                stream = self.wrap_stream(
                    await self.host.new_stream(info.peer_id, [self.protocol]), self.protocol
                )
            except Exception as exc:  # libp2p raises many unrelated types on a failed dial
                raise PeerUnreachable(
                    f"could not connect to {addr}: {dial_error_text(exc)}"
                ) from exc
            self.on_dialled(peer, [str(a) for a in info.addrs])
            assert self._nursery is not None
            await self._nursery.start(self.run_link, peer, stream, True)
        return peer

    @contextlib.asynccontextmanager
    async def _one_dial(self, peer: str) -> AsyncIterator[None]:
        """Dials of one peer one after the other; each returns once its link
        is registered (or refused), so the next sees it in ``links``."""
        lock = self._dial_locks.setdefault(peer, trio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._dial_locks.pop(peer, None)

    async def _dial_circuit(self, relay: str, peer: str) -> str:
        if peer == self.peer_id:
            raise NodeUsageError("that address is this node")
        if peer in self.links:
            return peer
        if self.circuit_dial is None:
            raise PeerUnreachable("this node dials no circuits")
        async with self._one_dial(peer):
            if peer in self.links:  # the dial we waited for linked it
                return peer
            try:
                if not self._connected(peer):
                    await self.circuit_dial(relay, peer)
                stream = self.wrap_stream(
                    await self.host.new_stream(ID.from_base58(peer), [self.protocol]),
                    self.protocol,
                )
            except Exception as exc:  # libp2p raises many unrelated types
                raise PeerUnreachable(
                    f"could not reach {peer} through {relay}: {dial_error_text(exc)}"
                ) from exc
            assert self._nursery is not None
            await self._nursery.start(self.run_link, peer, stream, True)
        return peer

    def _connected(self, peer: str) -> bool:
        try:
            return bool(self.host.get_network().connections.get(ID.from_base58(peer)))
        except Exception:  # a malformed id is connected to nobody
            return False

    def direct_now(self, peer: str) -> None:
        """A direct connection to ``peer`` replaced a relayed one (hole
        punching, §17.4.4): the side that opened the relayed link opens the
        link again; new streams take the direct connection, and the manager
        lets a direct link replace the relayed one."""
        link = self.links.get(peer)
        if link is None or not link.relayed or not link.outbound or self._nursery is None:
            return
        self._nursery.start_soon(self._relink, peer)

    async def _relink(self, peer: str) -> None:
        try:
            stream = self.wrap_stream(
                await self.host.new_stream(ID.from_base58(peer), [self.protocol]), self.protocol
            )
        except Exception as exc:  # the direct connection went again
            log.info("moving the link with %s to the direct connection failed: %s", peer, exc)
            return
        await self.run_link(peer, stream, True)

    async def connect(self, addr: str) -> tuple[str, bool]:
        """``smu peers connect``: dial even if libp2p or we held the peer
        back; wait until the link is registered."""
        try:
            info = info_from_p2p_addr(parse_multiaddr(addr))
        except Exception as exc:
            raise NodeUsageError(f"not a peer address ({exc}): {addr}") from exc
        peer = info.peer_id.to_base58()
        self.driver.call(lambda now: _user_dial(self.manager, peer, now))
        # libp2p refuses dials to a peer that failed lately, for a minute
        network = self.host.get_network()
        network.unblock_peer(info.peer_id)
        try:
            peer = await self.dial(addr)
        except PeerUnreachable as exc:
            # The peer may have dialled us at the same moment: libp2p keeps
            # one connection per peer and can close both.  Its own dial then
            # backs off, so either the link it opened stands, or a second
            # dial of ours meets no race.
            if not await self.wait_linked(peer, DIAL_RACE_WAIT):
                log.info("dial %s failed (%s); trying once more", addr, exc)
                network.unblock_peer(info.peer_id)
                await self.dial(addr)
        return peer, await self.wait_linked(peer, 5.0)

    async def wait_linked(self, peer: str, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a link with ``peer``."""
        if peer in self.links:
            return True
        waiter = trio.Event()
        waiters = self._link_waiters.setdefault(peer, set())
        waiters.add(waiter)
        try:
            with trio.move_on_after(timeout):
                await waiter.wait()
        finally:
            waiters.discard(waiter)
            if not waiters and self._link_waiters.get(peer) is waiters:
                del self._link_waiters[peer]
        return peer in self.links

    async def open_stream(
        self, peer: str, addrs: Sequence[str], protocol: str, relays: Sequence[str] = ()
    ) -> Any:
        """A request stream to ``peer`` (not a link), dialling if needed:
        its direct addresses first, then through each of ``relays``."""
        try:
            peer_id = ID.from_base58(peer)
        except Exception as exc:
            raise PeerUnreachable(f"{peer}: not a peer id") from exc
        errors: list[str] = []
        direct = self.dialable(peer, [a for a in addrs if "/p2p-circuit" not in a], None)
        if self._connected(peer) or not (direct or relays):
            try:
                return self.wrap_stream(await self.host.new_stream(peer_id, [protocol]), protocol)
            except Exception as exc:  # libp2p raises many unrelated types
                raise PeerUnreachable(f"could not reach {peer}: {dial_error_text(exc)}") from exc
        if direct:
            try:
                maddrs = [parse_multiaddr(a) for a in direct]
                self._addresses_first(peer_id, maddrs)
                await self.host.connect(PeerInfo(peer_id, maddrs))
                return self.wrap_stream(await self.host.new_stream(peer_id, [protocol]), protocol)
            except Exception as exc:  # libp2p raises many unrelated types
                errors.append(dial_error_text(exc))
        for relay in relays:
            if self.circuit_dial is None:
                break
            try:
                await self.circuit_dial(relay, peer)
                stream = self.wrap_stream(await self.host.new_stream(peer_id, [protocol]), protocol)
            except Exception as exc:  # libp2p raises many unrelated types
                errors.append(f"through {relay}: {dial_error_text(exc)}")
                continue
            # a device we reach only through a relay: keep a link with it,
            # which hole punching may then make direct (§17.4.4)
            if peer not in self.links and self._nursery is not None:
                self._nursery.start_soon(self._link_quietly, f"/p2p/{relay}/p2p-circuit/p2p/{peer}")
            return stream
        raise PeerUnreachable(f"{peer}: " + "; ".join(errors or ["no address"]))

    async def _link_quietly(self, addr: str) -> None:
        try:
            await self.dial(addr)
        except (PeerUnreachable, NodeUsageError) as exc:
            log.debug("no link through %s: %s", addr, exc)

    def _addresses_first(self, peer_id: Any, addrs: list[Any]) -> None:
        """Put ``addrs`` before what the peerstore remembers of ``peer_id``.
        libp2p dials only the first address of each transport it knows, so
        an address from before the peer restarted would shadow the one just
        given (a dial that can never succeed)."""
        store = self.host.get_peerstore()
        try:
            known = list(store.addrs(peer_id))
        except PeerStoreError:  # nothing known yet, or only expired addresses
            known = []
        # addresses past their TTL are cleared, then clear_addrs raises
        with contextlib.suppress(PeerStoreError):
            store.clear_addrs(peer_id)
        store.add_addrs(peer_id, addrs + [a for a in known if a not in addrs])

    def peer_addresses(self, peer: str) -> list[str]:
        try:
            return [str(a) for a in self.host.get_peerstore().addrs(ID.from_base58(peer))]
        except Exception:  # an unknown or malformed peer id has no addresses
            return []

    # -- links ----------------------------------------------------------------

    async def on_inbound(self, stream: Any) -> None:
        """A peer opened the replication stream (behind the gate)."""
        peer = stream.muxed_conn.peer_id.to_base58()
        await self.run_link(peer, stream, False)

    async def run_link(
        self,
        peer: str,
        stream: Any,
        outbound: bool,
        task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve one link; ``task_status`` is told once it is registered or
        refused."""
        relay = self.relay_of(stream.muxed_conn)
        # a relayed link counts in its relay's network group (§17.4)
        host = self.host_of(relay) if relay is not None else _remote_host(stream)
        relayed = relay is not None
        outs = self.driver.call(
            lambda now: self.manager.opened(peer, host, outbound, now, relayed=relayed)
        )
        verdict = outs[0]
        if not isinstance(verdict, Admitted):
            task_status.started()
            await close_quietly(stream)
            return
        send, recv = trio.open_memory_channel[bytes](LINK_QUEUE)
        link = Link(peer, stream, outbound, host, verdict.group, send, recv, relay=relay)
        old = self.links.pop(peer, None)
        if old is not None:  # both sides dialled at once; the manager kept this one
            old.cancel.cancel()
            for listener in self.on_closed:
                listener(old)
        self.links[peer] = link
        for opened in self.on_opened:
            opened(link)
        for waiter in self._link_waiters.pop(peer, ()):
            waiter.set()
        log.info(
            "peer %s connected (%s%s)",
            peer,
            "outbound" if outbound else "inbound",
            f", through relay {relay}" if relay else "",
        )
        self.on_changed()
        task_status.started()
        try:
            with link.cancel:
                assert self._serve_link is not None
                await self._serve_link(link)
        finally:
            if self.links.get(peer) is link:
                del self.links[peer]
                log.info("peer %s disconnected", peer)
                for listener in self.on_closed:
                    listener(link)
                self.driver.call(lambda now: self.manager.closed(peer, now))
                self.on_changed()
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await close_quietly(stream)

    async def disconnect(self, peer: str) -> None:
        link = self.links.get(peer)
        if link is None:
            raise NodeUsageError(f"not connected to {peer}")
        await self._cancel_and_wait(link)

    async def _cancel_and_wait(self, link: Link) -> None:
        link.cancel.cancel()
        with trio.move_on_after(5):
            while self.links.get(link.peer) is link:
                await trio.sleep(0.01)

    async def refuse(self, peer: str) -> None:
        link = self.links.get(peer)
        self.driver.call(lambda now: self.manager.refuse(peer, now))
        if link is not None:
            await self._cancel_and_wait(link)

    def unrefuse(self, peer: str) -> None:
        self.driver.call(lambda now: self.manager.unrefuse(peer, now))

    def ban(self, peer: str, until: float) -> None:
        """Misbehaviour on any protocol: close the link, no link until then."""
        self.driver.call(lambda now: self.manager.ban(peer, until, now))

    def heard(self, peer: str) -> None:
        """Something arrived from ``peer``: its link (or bare connection) is
        not idle."""
        self.driver.call(lambda now: self.manager.heard(peer, now))

    def delivered_first(self, peer: str) -> None:
        self.driver.call(lambda now: self.manager.delivered_first(peer, now))

    def round_trip(self, peer: str, seconds: float) -> None:
        self.driver.call(lambda now: self.manager.round_trip(peer, seconds, now))

    def learned(self, peers: list[tuple[str, tuple[str, ...]]]) -> None:
        """Peers PEERS frames named, with addresses we may dial given who
        told them (§11.8, §17.5): dial candidates."""
        self.driver.call(lambda now: self.manager.offer_candidates(peers, now))


class _ConnectionWatcher(INotifee):
    """Tells the link manager of libp2p connections opening and closing, so
    that it can close the connections of banned peers and bare connections
    nobody uses (§17.1)."""

    def __init__(self, service: LinkService) -> None:
        self.service = service

    async def connected(self, network: Any, conn: Any) -> None:
        peer = conn.muxed_conn.peer_id.to_base58()
        manager = self.service.manager
        self.service.driver.call(lambda now: manager.connected(peer, now))

    async def disconnected(self, network: Any, conn: Any) -> None:
        peer = conn.muxed_conn.peer_id.to_base58()
        manager = self.service.manager
        self.service.driver.call(lambda now: manager.disconnected(peer, now))

    async def opened_stream(self, network: Any, stream: Any) -> None:
        return None

    async def closed_stream(self, network: Any, stream: Any) -> None:
        return None

    async def listen(self, network: Any, multiaddr: Any) -> None:
        return None

    async def listen_close(self, network: Any, multiaddr: Any) -> None:
        return None


def _user_dial(manager: LinkManager, peer: str, now: Now) -> list[Output]:
    manager.user_dial(peer, now)
    return []
