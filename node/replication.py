"""Replication on a running node (DESIGN §4; PROTOCOL.md §11): the
``Replicator`` over libp2p links, with the commit barrier before anything
it decides is carried out.

Each link's reader checks frames of events in worker threads (decoding and
signatures; libsodium releases the GIL) and feeds them to the machine
strictly in arrival order; the machine's outputs go through ``Effects``, so
frames that forward an event leave only after the commit that holds it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
from collections.abc import Callable, Sequence
from functools import partial

import trio

from protocol.links.policy import addresses_at
from protocol.log.events import decode_event
from protocol.log.ledger import IngestStatus, Ledger
from protocol.records.device import SignedDeviceRecord
from protocol.sync.replication import (
    Delivered,
    Disconnect,
    Misbehaved,
    Output,
    Pause,
    PeersLearned,
    RecordAccepted,
    ReplicationConfig,
    Replicator,
    RoundTrip,
    Send,
)
from protocol.sync.wire import WireLimits

from .context import Published
from .driver import MachineDriver
from .effects import Effects
from .errors import PeerError
from .links import Link, LinkService
from .preverify import VerifiedCache
from .storage.events import SqliteEventStore
from .tasks import TaskStatus
from .transport import frame, read_frame

log = logging.getLogger("smu.replication")

#: frames a link's reader and checker may run ahead of the applier
READ_AHEAD = 8
#: worker threads checking signatures (libsodium releases the GIL)
VERIFY_THREADS = 2
#: a peer that breaks the framing rules is not linked again for this long
FRAMING_BACKOFF = 60.0


class ReplicationService:
    def __init__(
        self,
        ledger: Ledger,
        store: SqliteEventStore,
        links: LinkService,
        config: ReplicationConfig | None = None,
    ) -> None:
        self.ledger = ledger
        self.store = store
        self.links = links
        self.replicator = Replicator(
            ledger, random.Random(os.urandom(16)), config or ReplicationConfig()
        )
        self.effects: Effects[Output] = Effects(store.commit, self._carry_out)
        self.driver = MachineDriver("replication", self.replicator, self.effects.submit)
        self.verified = VerifiedCache(ledger.params, WireLimits(), held=ledger.held_raw)
        ledger.verify = self.verified.verify
        ledger.decode = self.verified.decode
        self._verifiers = trio.CapacityLimiter(VERIFY_THREADS)
        #: told of every newly accepted event (control-API subscribers)
        self.on_delivered: Callable[[dict[str, object]], None] = lambda note: None
        #: a device record arrived: deliveries may have waited for it
        self.on_record: Callable[[SignedDeviceRecord], None] = lambda record: None
        links.on_closed.append(self._link_closed)
        #: False while the disk budget is full: frames wait unread, so their
        #: senders wait too (PROTOCOL.md §13.3)
        self.accepting = True
        #: seconds from a frame read to its ingest (the metrics)
        self.on_ingested: Callable[[float], None] = lambda seconds: None
        self._accepting_changed = trio.Event()
        links.on_dialled = self.replicator.note_addresses

    def set_accepting(self, accepting: bool) -> None:
        if accepting != self.accepting:
            self.accepting = accepting
            self._accepting_changed.set()
            self._accepting_changed = trio.Event()

    async def run(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.effects.run)
            await nursery.start(self.driver.run)
            task_status.started()

    # -- local input ----------------------------------------------------------

    async def publish(self, raw: bytes) -> Published:
        """Ingest a local event; return once it is committed (its forwarding
        follows the commit).  Raises the ledger's ``InvalidInput``."""
        before = self.ledger.event_count
        self.driver.call(lambda now: self.replicator.publish(raw, now))
        await self.effects.durable()
        event = decode_event(raw, self.ledger.params)
        if self.ledger.has(event.id):
            accepted = self.ledger.event_count > before
            status = IngestStatus.ACCEPTED if accepted else IngestStatus.DUPLICATE
        else:
            status = IngestStatus.ESCROWED
        return Published(status.value, event.id.hex())

    async def publish_record(self, raw: bytes) -> None:
        self.driver.call(lambda now: self.replicator.publish_record(raw, now))
        await self.effects.durable()

    def reconcile_all(self) -> None:
        for peer in list(self.links.links):
            self.driver.call(partial(self.replicator.reconcile_now, peer))

    def set_self(self, peer_id: str, addrs: list[str]) -> None:
        self.replicator.set_self(peer_id, addrs)

    def set_digest(self) -> str:
        """The §11.3 fingerprint of the whole event set: equal digests, equal
        sets; kept up to date by the reconciliation index, so O(1)."""
        index = self.replicator.index
        return index.fingerprint(0, len(index)).hex()

    def stats(self) -> dict[str, int]:
        return dataclasses.asdict(self.replicator.stats)

    # -- links ------------------------------------------------------------------

    async def serve_link(self, link: Link) -> None:
        """Run one admitted link: the machine hears of it, then its frames."""
        self.driver.call(lambda now: self.replicator.connect(link.peer, now))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._writer, link)
            await self._reader(link)
            nursery.cancel_scope.cancel()

    def _link_closed(self, link: Link) -> None:
        self.driver.call(lambda now: self.replicator.disconnect(link.peer, now))

    async def _reader(self, link: Link) -> None:
        """Read frames, check each in a worker thread, and apply them
        strictly in the order they arrived."""
        ordered_send, ordered_recv = trio.open_memory_channel[tuple[bytes, trio.Event, float]](
            READ_AHEAD
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read_frames, link, ordered_send, nursery)
            async for data, checked, read_at in ordered_recv:
                await checked.wait()
                self.driver.call(partial(self.replicator.receive, link.peer, data))
                self.on_ingested(trio.current_time() - read_at)
            nursery.cancel_scope.cancel()

    async def _read_frames(
        self,
        link: Link,
        out: trio.MemorySendChannel[tuple[bytes, trio.Event, float]],
        nursery: trio.Nursery,
    ) -> None:
        limit = self.replicator.config.max_frame_bytes
        async with out:
            while True:
                while not self.accepting:
                    await self._accepting_changed.wait()
                if link.paused_until > trio.current_time():
                    await trio.sleep_until(link.paused_until)  # its sender waits too
                try:
                    data = await read_frame(link.stream, limit)
                except PeerError as exc:
                    log.warning("peer %s: %s; disconnecting", link.peer, exc)
                    self.links.ban(link.peer, trio.current_time() + FRAMING_BACKOFF)
                    return
                except Exception as exc:  # stream reset, EOF, libp2p errors
                    log.debug("peer %s: link ended: %s", link.peer, exc)
                    return
                self.links.heard(link.peer)
                checked = trio.Event()
                nursery.start_soon(self._check, data, checked)
                await out.send((data, checked, trio.current_time()))

    async def _check(self, data: bytes, checked: trio.Event) -> None:
        try:
            await trio.to_thread.run_sync(self.verified.preverify, data, limiter=self._verifiers)
        finally:
            checked.set()

    async def _writer(self, link: Link) -> None:
        async for data in link.recv:
            try:
                await link.stream.write(frame(data))
            except Exception as exc:  # the stream broke: the link ends
                log.debug("peer %s: write failed: %s", link.peer, exc)
                link.cancel.cancel()
                return

    # -- carrying out the machine's outputs (after their commit) -------------

    def _carry_out(self, outputs: Sequence[Output]) -> None:
        # Eviction protects the links that most recently delivered an event
        # first (PROTOCOL.md §17.1.1): the time of one delivery per peer and
        # batch says that, and a catch-up's batch holds hundreds from one
        credited: set[str] = set()
        for out in outputs:
            if isinstance(out, Send):
                link = self.links.links.get(out.peer)
                if link is None:
                    continue
                try:
                    link.send.send_nowait(out.frame)
                except trio.WouldBlock:
                    log.warning("peer %s is not reading; disconnecting", out.peer)
                    link.cancel.cancel()
            elif isinstance(out, Pause):
                link = self.links.links.get(out.peer)
                if link is not None:
                    link.paused_until = max(link.paused_until, out.until)
            elif isinstance(out, Disconnect):
                log.warning("disconnecting peer %s: %s", out.peer, out.reason)
                self.links.ban(out.peer, out.until)
            elif isinstance(out, RoundTrip):
                self.links.round_trip(out.peer, out.seconds)
            elif isinstance(out, Delivered):
                source = out.source
                if source is not None and source not in credited:
                    credited.add(source)
                    self.links.delivered_first(source)
                self.on_delivered(
                    {
                        "event_id": out.event.id.hex(),
                        "account": out.event.account_id.hex(),
                        "kind": out.event.kind.name.lower(),
                        "from": out.source,
                    }
                )
            elif isinstance(out, RecordAccepted):
                self.on_record(out.record)
            elif isinstance(out, PeersLearned):
                self._vouch_for_sender(out)
                self.links.learned(self._dialable_learned())
            elif isinstance(out, Misbehaved):
                log.warning(
                    "peer %s sent invalid input: %s (%s)", out.peer, out.error.code, out.error
                )

    def _dialable_learned(self) -> list[tuple[str, tuple[str, ...]]]:
        """The learned peers, each with only the addresses we may dial given
        who told them (PROTOCOL.md §17.5): a private or loopback address
        from a peer outside that network is never a dial candidate."""
        out = []
        for pid, (addrs, source) in self.replicator.peer_table.learned.items():
            link = self.links.links.get(str(source))
            told_from = link.host if link is not None and not link.relayed else ""
            usable = self.links.dialable(pid, addrs, told_from)
            if usable:
                out.append((pid, tuple(usable)))
        return out

    def _vouch_for_sender(self, learned: PeersLearned) -> None:
        """A peer's own entry, at the host its connection comes from, is
        shared onwards (PROTOCOL.md §11.8.1): it can vouch for itself only
        where it is, so nobody can make us advertise someone else."""
        link = self.links.links.get(str(learned.source))
        if link is None:
            return
        here = addresses_at(learned.sender_addrs, link.host)
        if here:
            self.replicator.note_addresses(link.peer, here)
