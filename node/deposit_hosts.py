"""Deposits and prekey fetches at a mailbox under an identity of their own
(DESIGN §10 *Delivery identity*; PROTOCOL.md §15.13.1).

The node's libp2p identity is in its device record (``peer_ids``), so a
deposit made under it tells the mailbox which device deposited.  Instead,
for each mailbox this node deposits at, it derives one Ed25519 libp2p key
(``deposit_seed``): BLAKE2b keyed with the node's identity seed over the
mailbox's peer id.  The key is never stored and no record names it; it is
the same for one mailbox on every run (so that mailbox's per-peer budgets
see one peer, as before) and different for every mailbox (so two mailboxes
cannot pair their depositors by peer id).

``DepositHosts`` keeps a few dial-only libp2p hosts, one per such identity
in use, built as the node's host is (``transport.make_host``: Noise, Yamux,
one connection per peer) with the node's dial hygiene (``DialGuard``); a
host unused for ``IDLE_AFTER`` seconds is closed, at most ``MAX_HOSTS`` are
open, and all are closed before the daemon leaves its run block.  A host
dials direct addresses only: a mailbox reachable only through a relay is
not deposited at (§15.13.1), and nothing here ever falls back to the
node's own identity.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.peer.peerstore import PeerStoreError
from nacl.encoding import RawEncoder
from nacl.hash import blake2b

from .errors import NodeUsageError, PeerUnreachable
from .relay import DialGuard
from .tasks import TaskStatus
from .transport import make_host, parse_multiaddr

log = logging.getLogger("smu.deposits")

#: BLAKE2b personalisation of the derivation (§15.13.1): no other hash
#: keyed with the node seed uses it
DEPOSIT_PERSON = b"smu-deposit-id1"
#: hosts open at once; a node deposits at few mailboxes at a time (each
#: recipient device names at most two), and a host costs a few sockets
MAX_HOSTS = 16
#: a host unused this long is closed (a mailbox closes a bare connection
#: after 30 s anyway, §17.1)
IDLE_AFTER = 60.0
#: how long closing one host may take
CLOSE_TIMEOUT = 5.0
#: how long a dial to one address may take, and how many addresses are tried
DIAL_TIMEOUT = 5.0
MAX_DIAL_ADDRS = 6

#: which of a peer's addresses this node may dial (``LinkService.dialable``)
Dialable = Callable[[str, list[str]], list[str]]


def deposit_seed(node_seed: bytes, mailbox_peer: str) -> bytes:
    """The Ed25519 seed of this node's identity at ``mailbox_peer``:
    BLAKE2b-256 keyed with the node's 32-byte identity seed, personalised
    ``DEPOSIT_PERSON``, over the mailbox's peer id bytes (§15.13.1)."""
    if len(node_seed) != 32:
        raise NodeUsageError("a node seed is 32 bytes")
    try:
        peer = ID.from_base58(mailbox_peer).to_bytes()
    except Exception as exc:  # base58 and multihash raise several types
        raise PeerUnreachable(f"{mailbox_peer!r}: not a peer id") from exc
    return bytes(
        blake2b(peer, digest_size=32, key=node_seed, person=DEPOSIT_PERSON, encoder=RawEncoder)
    )


def deposit_peer_id(node_seed: bytes, mailbox_peer: str) -> str:
    """The peer id ``mailbox_peer`` sees this node's deposits come from."""
    key_pair = create_new_key_pair(deposit_seed(node_seed, mailbox_peer))
    return str(ID.from_pubkey(key_pair.public_key).to_base58())


@dataclass(slots=True, eq=False)
class _Host:
    mailbox_peer: str
    host: Any
    #: streams open on it now
    in_use: int = 0
    last_used: float = 0.0
    closing: trio.Event = field(default_factory=trio.Event)
    closed: trio.Event = field(default_factory=trio.Event)


class DepositHosts:
    def __init__(
        self,
        node_seed: bytes,
        guard: DialGuard,
        dialable: Dialable,
        *,
        max_hosts: int = MAX_HOSTS,
        idle_after: float = IDLE_AFTER,
    ) -> None:
        self._seed = node_seed
        self.guard = guard
        self.dialable = dialable
        self.max_hosts = max_hosts
        self.idle_after = idle_after
        self._hosts: dict[str, _Host] = {}
        #: retired hosts still closing
        self._retiring: set[_Host] = set()
        self._nursery: trio.Nursery | None = None
        self._lock = trio.Lock()
        #: hosts opened and closed since start (``node status``, tests)
        self.opened = 0
        self.closed = 0

    def status(self) -> dict[str, int]:
        return {"open": len(self._hosts), "opened": self.opened, "closed": self.closed}

    async def run(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hold the hosts, and close those left idle."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                while True:
                    await trio.sleep(self.idle_after / 2)
                    self.close_idle(trio.current_time())
            finally:
                self._nursery = None
                for entry in list(self._hosts.values()):
                    self._retire(entry)

    def close_idle(self, now: float) -> None:
        for entry in list(self._hosts.values()):
            if entry.in_use == 0 and now - entry.last_used >= self.idle_after:
                self._retire(entry)

    async def close_all(self) -> None:
        """Close every host and wait until each is closed (the daemon, before
        it leaves its run block)."""
        for entry in list(self._hosts.values()):
            self._retire(entry)
        with trio.move_on_after(CLOSE_TIMEOUT):
            for entry in list(self._retiring):
                await entry.closed.wait()

    def _retire(self, entry: _Host) -> None:
        if self._hosts.get(entry.mailbox_peer) is entry:
            del self._hosts[entry.mailbox_peer]
        if not entry.closed.is_set():
            self._retiring.add(entry)
        entry.closing.set()

    async def _keep(self, entry: _Host, task_status: TaskStatus[None]) -> None:
        """One host's life: running (no listener) until it is retired.  Its
        failure ends this host only, never the node."""
        try:
            async with entry.host.run([]):
                task_status.started()
                try:
                    await entry.closing.wait()
                finally:
                    # closed even when the run is cancelled, or sockets leak
                    with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT):
                        await entry.host.close()
        except Exception as exc:  # libp2p raises many unrelated types
            why = f"{type(exc).__name__}: {exc}"
            log.info("deposit host for %s failed: %s", entry.mailbox_peer, why)
            self._retire(entry)
        finally:
            self.closed += 1
            self._retiring.discard(entry)
            entry.closed.set()

    async def _host_for(self, mailbox_peer: str) -> _Host:
        """The host of the identity at ``mailbox_peer``, counted in use."""
        async with self._lock:
            entry = self._hosts.get(mailbox_peer)
            if entry is not None:
                entry.in_use += 1
                return entry
            if self._nursery is None:
                raise PeerUnreachable("deposits are not running")
            if len(self._hosts) >= self.max_hosts:
                idle = [e for e in self._hosts.values() if e.in_use == 0]
                if not idle:
                    raise PeerUnreachable(f"{mailbox_peer}: every deposit identity is in use")
                self._retire(min(idle, key=lambda e: e.last_used))
            host = make_host(deposit_seed(self._seed, mailbox_peer))
            self.guard.install(host)
            entry = _Host(mailbox_peer, host, last_used=trio.current_time())
            try:
                await self._nursery.start(self._keep, entry)
            except RuntimeError as exc:  # it failed before it started (logged)
                raise PeerUnreachable(f"{mailbox_peer}: no deposit host") from exc
            self._hosts[mailbox_peer] = entry
            self.opened += 1
            entry.in_use += 1
            return entry

    @asynccontextmanager
    async def stream(
        self, mailbox_peer: str, addrs: Sequence[str], protocol: str
    ) -> AsyncIterator[Any]:
        """A stream to ``mailbox_peer`` on ``protocol`` from this node's
        identity at that mailbox, dialling one of ``addrs`` (direct ones
        only) if its host is not connected; closed on leaving.  Raises
        ``PeerUnreachable``."""
        entry = await self._host_for(mailbox_peer)
        try:
            stream = await self._open(entry, mailbox_peer, addrs, protocol)
            try:
                yield stream
            finally:
                with contextlib.suppress(Exception):  # the mailbox may be gone already
                    await stream.close()
        finally:
            entry.in_use -= 1
            entry.last_used = trio.current_time()

    async def _open(self, entry: _Host, peer: str, addrs: Sequence[str], protocol: str) -> Any:
        host = entry.host
        peer_id = ID.from_base58(peer)  # checked by deposit_seed already
        try:
            if not host.get_network().connections.get(peer_id):
                # no circuit: a relay would be one more party that sees the
                # deposit, and the pool holds no relay transport (§15.13.1)
                direct = self.dialable(peer, [a for a in addrs if "/p2p-circuit" not in a])
                if not direct:
                    raise PeerUnreachable(f"{peer}: no direct address to deposit at")
                await self._dial(host, peer_id, direct[:MAX_DIAL_ADDRS])
            return await host.new_stream(peer_id, [TProtocol(protocol)])
        except PeerUnreachable:
            raise
        except Exception as exc:  # libp2p raises many unrelated types
            raise PeerUnreachable(f"could not reach {peer}: {type(exc).__name__}: {exc}") from exc

    async def _dial(self, host: Any, peer_id: ID, addrs: list[str]) -> None:
        """Each address in turn: libp2p dials only the first it knows per
        transport, and a record's may be older than what the link learned."""
        errors = []
        network = host.get_network()
        for addr in addrs:
            # py-libp2p refuses to dial a peer for 60 s after a failed dial;
            # the callers' own schedules (outbox, retries) decide here, and
            # a mailbox back at a new address must not wait for that
            network.unblock_peer(peer_id)
            with contextlib.suppress(PeerStoreError):  # nothing known yet
                host.get_peerstore().clear_addrs(peer_id)
            try:
                with trio.fail_after(DIAL_TIMEOUT):
                    await host.connect(PeerInfo(peer_id, [parse_multiaddr(addr)]))
                return
            except Exception as exc:  # libp2p raises many unrelated types
                errors.append(f"{addr}: {type(exc).__name__}")
        raise PeerUnreachable(f"could not reach {peer_id}: " + "; ".join(errors))
