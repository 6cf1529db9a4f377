"""The replication machine: push and pull of events between peers (PROTOCOL.md §11).

Sans-I/O: every entry point takes the current time and returns what to do
(``Send`` a frame, ``Disconnect`` a peer, report a ``Delivered`` event or a
``Misbehaved`` peer).  The node adapter and simnet drive the same code.

* Push (§11.4.1): an event newly accepted by the ledger -- and so already
  persisted, since ``Ledger.ingest`` stores before it returns -- goes in
  full to ``eager_fanout`` random peers and as an id announcement to the
  others.  Peers request announced ids they lack.
* Pull (§11.4.2): on every new link and every ``reconcile_interval`` with
  one random peer, a reconciliation session (protocol.sync.reconcile) finds
  the ids each side lacks; the side that learns a difference pushes what
  the other lacks and asks for the rest (protocol.sync.sessions keeps the
  ranges left open, whose pushes are solicited).
* Fetch (§11.4.3): requests are windowed per peer and time out; answers come
  parents first; an event whose parents are missing waits in the ledger's
  escrow and its missing parents are fetched with their ancestry
  (ANCESTRY), parents first.
* Peers (§11.5): a score per peer (protocol.peers); invalid input costs
  dearly and leads to a disconnect with back-off; duplicates are normal.
* Device records (§11.7): signed soft state (protocol.records.device) flooded to
  every peer, newest wins; a record of a device we do not yet know to be
  active waits in a small pending set until the account's events arrive.
  A new link gets them in full while they are few, else they reconcile by
  items like events (§11.7.5).
* Peer exchange (§11.8): PEERS frames tell a node whom it may dial; the
  adapter decides whom it dials.

Sessions, records and peer exchange live in the base class
``protocol.sync.exchange.Exchange``; what is kept per peer in
``protocol.sync.peer``.
"""

from __future__ import annotations

import random

from protocol.core.errors import InvalidInput, LimitExceededError, UnsupportedVersionError
from protocol.core.machine import Now
from protocol.log.events import Event, decode_event, raw_event_id
from protocol.log.ledger import IngestStatus, Ledger
from protocol.records.device import Offer, decode_record
from protocol.sync.exchange import FRAME_SLACK, Exchange
from protocol.sync.peer import MAX_LATE, Costly, Peer, frame_bucket, frame_cost
from protocol.sync.reconcile import (
    SHORT_BYTES,
    IdIndex,
    ReconcileConfig,
)
from protocol.sync.scores import PeerBook, PeerId, TokenBucket
from protocol.sync.softstate import PeerTable, RecordRelay
from protocol.sync.types import (
    Delivered,
    Disconnect,
    Misbehaved,
    Output,
    Pause,
    PeersLearned,
    RecordAccepted,
    ReplicationConfig,
    ReplicationStats,
    RoundTrip,
    Send,
)
from protocol.sync.wants import ANNOUNCED, RETRY
from protocol.sync.wire import (
    AncestryFrame,
    AnnounceFrame,
    EventsFrame,
    Frame,
    PeerEntry,
    PeersFrame,
    RecordRequestFrame,
    RecordsFrame,
    RequestFrame,
    WireLimits,
    decode_frame,
    encode_frame,
)

__all__ = [
    "Delivered",
    "Disconnect",
    "Misbehaved",
    "Output",
    "Pause",
    "PeerId",
    "PeersLearned",
    "RecordAccepted",
    "ReplicationConfig",
    "ReplicationStats",
    "Replicator",
    "RoundTrip",
    "Send",
]

_DEFAULT_CONFIG = ReplicationConfig()  # frozen: one instance serves every default
_MAX_ANCESTRY_WAIT = 4096  # parents waiting for an ANCESTRY frame, per peer


class Replicator(Exchange):
    def __init__(
        self,
        ledger: Ledger,
        rng: random.Random,
        config: ReplicationConfig = _DEFAULT_CONFIG,
    ) -> None:
        self.ledger = ledger
        self.rng = rng
        self.config = config
        self.limits = WireLimits(
            config.max_frame_bytes,
            config.max_events_per_frame,
            config.max_ids_per_frame,
            config.max_ranges_per_frame,
            max_records_per_frame=config.max_records_per_frame,
            max_peers_per_frame=config.max_peers_per_frame,
        )
        id_budget = (config.max_frame_bytes - FRAME_SLACK) // 40
        self.rconfig = ReconcileConfig(
            config.list_threshold,
            config.list_round,
            # a list of short ids fits one frame, with room for its neighbours
            max_ids_per_range=max(
                1, min(4096, config.max_ids_per_frame, (id_budget * 40 - 128) // SHORT_BYTES)
            ),
        )
        self.window = max(1, min(config.request_window, config.max_ids_per_frame, id_budget))
        self.book = PeerBook(config.score)
        self.stats = ReplicationStats()
        ids = list(ledger.event_ids())
        #: our accepted ids, sorted, for fingerprints
        self.index = IdIndex(ids)
        #: acceptance order, which is topological: answers go parents first
        self._seq: dict[bytes, int] = {eid: i for i, eid in enumerate(ids)}
        self._peers: dict[PeerId, Peer] = {}
        #: id -> (peer asked, deadline); one peer at a time per id
        self._inflight: dict[bytes, tuple[PeerId, float]] = {}
        #: other peers that offered an id in flight, to ask if the first fails
        self._alternates: dict[bytes, list[PeerId]] = {}
        self._next_reconcile: float | None = None
        self._now = 0.0
        #: the wall clock of the current call (records are judged by it, §11.7.2)
        self._wall_ms = 0
        #: device records (§11.7) and their pending set
        self.relay = RecordRelay(
            ledger, config.max_records, config.max_pending_records, config.max_pending_per_peer
        )
        #: the newest valid record per device: where a device is reachable
        self.records = self.relay.book
        self._next_prune: float | None = None
        #: peer exchange (§11.8)
        self.peer_table = PeerTable(
            config.max_known_peers, config.max_learned_peers, config.max_learned_per_source
        )
        self._next_peers: float | None = None

    # -- queries -------------------------------------------------------------

    def score(self, peer: PeerId) -> float:
        return self.book.score(peer, self._now)

    def peers(self) -> list[PeerId]:
        return list(self._peers)

    def next_deadline(self) -> float | None:
        deadlines: list[float] = []
        if self._peers and self._next_reconcile is not None:
            deadlines.append(self._next_reconcile)
        if self._inflight:
            deadlines.append(min(d for _, d in self._inflight.values()))
        for p in self._peers.values():
            first = p.sessions.first_started()
            if first is not None:
                deadlines.append(first + self.config.session_timeout)
            if p.queue:
                head = p.queue[0]
                bucket = frame_bucket(p, head)
                deadlines.append(bucket.ready_at(frame_cost(head), bucket.updated))
            if p.records_due is not None:
                deadlines.append(p.records_due)
        if self._next_prune is not None and self.relay.held():
            deadlines.append(self._next_prune)
        if self._peers and self._next_peers is not None and self.peer_table.shareable():
            deadlines.append(self._next_peers)
        return min(deadlines) if deadlines else None

    def learned_peers(self) -> list[PeerEntry]:
        """Peers PEERS frames named, oldest first (not verified)."""
        return [(pid, addrs) for pid, (addrs, _) in self.peer_table.learned.items()]

    # -- entry points ----------------------------------------------------------

    def connect(self, peer: PeerId, now: Now) -> list[Output]:
        """A new link: start a reconciliation with it (§11.4.2)."""
        t = self._enter(now)
        until = self.book.banned_until(peer, t)
        if until is not None:
            return [Disconnect(peer, "backing off after misbehaviour", until)]
        if peer in self._peers:
            return []
        c = self.config
        p = Peer(
            peer,
            TokenBucket.full(c.announce_rate, c.announce_burst, t),
            TokenBucket.full(c.serve_rate, c.serve_burst, t),
            TokenBucket.full(c.reconcile_rate, c.reconcile_burst, t),
            TokenBucket.full(c.record_rate, c.record_burst, t),
            TokenBucket.full(c.peers_rate, c.peers_burst, t),
            TokenBucket.full(c.duplicate_rate, c.duplicate_burst, t),
        )
        out: list[Output] = []
        # records of devices revoked meanwhile are dropped before we send ours
        self._settle(t, out)
        self._peers[peer] = p
        if self._next_reconcile is None:
            self._next_reconcile = t + c.reconcile_interval
        if self._next_peers is None:
            self._next_peers = t + c.peers_interval
        self._start_session(p, t, out)
        # soft state goes to a new link at once (§11.7.1, §11.8.2): records in
        # full while they are few, else by a record reconciliation (§11.7.5)
        records = list(self.records)
        if sum(len(r.raw) for r in records) <= c.records_full_bytes:
            self._send_records(peer, records, out)
        else:
            self._start_session(p, t, out, records=True)
        self._send_peers(p, out)
        return out

    def disconnect(self, peer: PeerId, now: Now) -> list[Output]:
        t = self._enter(now)
        out: list[Output] = []
        self._drop(peer, t, out)
        return out

    def publish(self, raw_event: bytes, now: Now) -> list[Output]:
        """Ingest a local event, then push it.  Invalid input raises the
        ledger's ``InvalidInput`` to the local caller."""
        t = self._enter(now)
        result = self.ledger.ingest(raw_event, source=None)
        out: list[Output] = []
        if result.status is IngestStatus.ACCEPTED:
            for ev in result.accepted:
                self._accepted(ev, None, out)
            self._push(list(result.accepted), True, None, out)
        self._settle(t, out)
        return out

    def publish_record(self, raw: bytes, now: Now) -> list[Output]:
        """Accept the node's own device record and flood it (§11.7.1).
        Raises ``InvalidInput`` if it is invalid, not yet valid, expired or
        signed by a device not active here; a record no newer than the one
        held is a no-op."""
        t = self._enter(now)
        record = decode_record(raw, self.ledger.params)
        offer, record = self.relay.admit(record, self._wall_ms)
        out: list[Output] = []
        if offer is Offer.ACCEPTED:
            self._record_accepted(record, None, t, out)
        self._settle(t, out)
        return out

    def set_self(self, peer_id: str, addrs: list[str] | tuple[str, ...]) -> None:
        """Our own peer id and listen addresses, shared in PEERS frames."""
        self.peer_table.set_self(peer_id, addrs)

    def note_addresses(self, peer: PeerId, addrs: list[str] | tuple[str, ...]) -> None:
        """Addresses the adapter knows ``peer`` listens on (it dialled them,
        or they came from the bootstrap list); only such peers are shared in
        PEERS frames.  Addresses that cannot travel in PEERS are skipped; no
        address left forgets the peer."""
        self.peer_table.note(peer, addrs)

    def receive(self, peer: PeerId, frame: bytes, now: Now) -> list[Output]:
        t = self._enter(now)
        p = self._peers.get(peer)
        if p is None:
            return []  # a frame still in flight from a link we dropped
        self.stats.frames_received += 1
        self.stats.bytes_received += len(frame)
        out: list[Output] = []
        try:
            f: Frame = decode_frame(frame, self.limits)
        except InvalidInput as exc:
            self._offence(p, exc, self.config.score.invalid_penalty, t, out)
            return out
        if isinstance(f, EventsFrame):
            self._on_events(p, f, t, out)
        elif isinstance(f, AnnounceFrame):
            self._on_announce(p, f, t, out)
        elif isinstance(f, PeersFrame):
            self._on_peers(p, f, t, out)
        else:
            # requests and reconciliation cost us work: they wait for the
            # peer's budget, in order (§11.5.2)
            if p.queue or not self._budget_take(p, f, t):
                if len(p.queue) >= self.config.max_queued_frames:
                    flood = LimitExceededError("too many frames beyond the peer's budget")
                    self._offence(p, flood, self.config.score.flood_penalty, t, out)
                    return out
                p.queue.append(f)
            else:
                self._handle_costly(p, f, t, out)
        self._pump(p, t, out)
        self._settle(t, out)
        return out

    def reconcile_now(self, peer: PeerId, now: Now) -> list[Output]:
        """Start a reconciliation with ``peer`` at once, unless one we started
        is still open (§11.3).  The node calls it when a message shows that
        its sender saw events we lack (S5); the node rate-limits the calls."""
        t = self._enter(now)
        p = self._peers.get(peer)
        out: list[Output] = []
        if p is not None and not p.sessions.has_own(records=False):
            self._start_session(p, t, out)
        return out

    def tick(self, now: Now) -> list[Output]:
        t = self._enter(now)
        out: list[Output] = []
        for p in list(self._peers.values()):
            self._drain(p, t, out)
        expired = [eid for eid, (_, d) in self._inflight.items() if d <= t]
        for eid in expired:
            self._clear_inflight(eid)
            self.stats.request_timeouts += 1
            self._retry(eid, t, out)
        for p in self._peers.values():
            self.stats.reconcile_timeouts += p.sessions.expire(t, self.config.session_timeout)
        if self._next_reconcile is not None and t >= self._next_reconcile:
            idle = [p for p in self._peers.values() if not p.sessions]
            if idle:
                self._start_session(self.rng.choice(idle), t, out)
            self._next_reconcile = t + self.config.reconcile_interval
        if self._next_peers is not None and t >= self._next_peers:
            if self._peers and self.peer_table.shareable():
                self._send_peers(self._peers[self.rng.choice(list(self._peers))], out)
            self._next_peers = t + self.config.peers_interval
        for p in list(self._peers.values()):
            if p.records_due is not None and t >= p.records_due:
                self._resend_records(p, out)
        if self._next_prune is not None and t >= self._next_prune:
            self._sweep_records(t)
        for p in list(self._peers.values()):
            self._pump(p, t, out)
        self._settle(t, out)
        return out

    # -- bookkeeping -----------------------------------------------------------

    def _enter(self, now: Now) -> float:
        """Every entry point starts here: note the clocks, and catch up with
        events another adapter ingested; the monotonic time, for the body."""
        self._now = now.mono
        self._wall_ms = now.wall_ms
        # Someone else may have ingested into the ledger (the node adapter
        # does for events from other protocols): catch up, in acceptance order.
        if len(self._seq) < self.ledger.event_count:
            for eid in self.ledger.event_ids():
                if eid not in self._seq:
                    self._seq[eid] = len(self._seq)
                    self.index.add(eid)
                    account = self.ledger.account_of(eid)
                    if account is not None:
                        self.relay.touch(account)
        return now.mono

    def _send(self, peer: PeerId, frame: Frame, out: list[Output]) -> None:
        data = encode_frame(frame)
        self.stats.frames_sent += 1
        self.stats.bytes_sent += len(data)
        out.append(Send(peer, data))

    def _drop(self, peer: PeerId, now: float, out: list[Output]) -> None:
        p = self._peers.pop(peer, None)
        if p is None:
            return
        # sorted: a set's order follows the hash seed, and simnet reports
        # must not (S3's determinism, for the simulator)
        for eid in sorted(p.inflight):
            self._inflight.pop(eid, None)
        for eid in sorted(p.inflight):
            self._retry(eid, now, out)

    def _retry(self, eid: bytes, now: float, out: list[Output]) -> None:
        """An id's request failed: ask the next peer that offered it."""
        for peer in self._alternates.pop(eid, []):
            q = self._peers.get(peer)
            if q is not None and self._lacks(eid):
                q.want.add(eid, RETRY)
                self._pump(q, now, out)
                return

    def _offence(
        self, p: Peer, exc: InvalidInput, penalty: float, now: float, out: list[Output]
    ) -> bool:
        """Score an offence; True if the peer is now disconnected."""
        self.stats.offences += 1
        out.append(Misbehaved(p.id, exc))
        until = self.book.penalise(p.id, penalty, now)
        if until is None:
            return False
        self._drop(p.id, now, out)
        self.stats.disconnects += 1
        out.append(Disconnect(p.id, f"misbehaved: {exc.code}", until))
        return True

    def _accepted(self, ev: Event, source: PeerId | None, out: list[Output]) -> None:
        self._seq[ev.id] = len(self._seq)
        self.index.add(ev.id)
        self.stats.events_delivered += 1
        out.append(Delivered(ev, source))
        self.relay.touch(ev.account_id)

    def _clear_inflight(self, eid: bytes) -> PeerId | None:
        """The id is answered (or given up): forget the request."""
        entry = self._inflight.pop(eid, None)
        if entry is None:
            return None
        p = self._peers.get(entry[0])
        if p is not None:
            p.inflight.discard(eid)
            p.ancestry.pop(eid, None)
        return entry[0]

    def _rank(self, value: int) -> int:
        """The rank we give an id we list in reconciliation (§11.3.1)."""
        position = self.ledger.position(value.to_bytes(32, "big"))
        return 0 if position is None else position

    def _lacks(self, eid: bytes) -> bool:
        return not (self.ledger.has(eid) or eid in self.ledger.escrow or eid in self._inflight)

    def _want(self, p: Peer, ids: tuple[bytes, ...], ranks: tuple[int, ...] | None) -> None:
        """Queue ids ``p`` offered, with its ranks (``None``: announced)."""
        for i, eid in enumerate(ids):
            if self.ledger.has(eid) or eid in self.ledger.escrow:
                continue
            if eid in self._inflight:
                self._offered(p, eid)
                continue
            if eid not in p.want and len(p.want) >= self.config.max_wanted_per_peer:
                break  # reconciliation finds the rest later
            p.want.add(eid, ANNOUNCED if ranks is None else ranks[i])

    def _offered(self, p: Peer, eid: bytes) -> None:
        """``p`` offers an id already requested elsewhere: remember it."""
        alternates = self._alternates.setdefault(eid, [])
        if len(alternates) < 4 and p.id not in alternates and self._inflight[eid][0] != p.id:
            alternates.append(p.id)

    def _budget_take(self, p: Peer, f: Costly, now: float) -> bool:
        return frame_bucket(p, f).take(frame_cost(f), now)

    def _drain(self, p: Peer, now: float, out: list[Output]) -> None:
        while p.queue and p.id in self._peers:
            if not self._budget_take(p, p.queue[0], now):
                return
            self._handle_costly(p, p.queue.popleft(), now, out)

    def _handle_costly(self, p: Peer, f: Costly, now: float, out: list[Output]) -> None:
        if isinstance(f, RequestFrame):
            self._serve(p, f, now, out)
        elif isinstance(f, AncestryFrame):
            p.serve_budget.debit(self._serve_ancestry(p, f, now, out))
        elif isinstance(f, RecordsFrame):
            self._on_records(p, f, now, out)
        elif isinstance(f, RecordRequestFrame):
            self._serve_records(p, f, out)
        else:
            self._on_reconcile(p, f, now, out)

    # -- push and fetch (§11.4.1, §11.4.3) ---------------------------------------

    def _events_frames(self, raws: list[bytes], missing: list[bytes]) -> list[EventsFrame]:
        chunks = self._pack(raws, 5, self.config.max_events_per_frame, 32 * len(missing))
        frames = [EventsFrame(tuple(c)) for c in chunks[:-1]]
        if missing:
            frames.append(EventsFrame(tuple(chunks[-1]), tuple(missing)))
        elif chunks[-1]:
            frames.append(EventsFrame(tuple(chunks[-1])))
        return frames

    def _push(
        self, events: list[Event], eager: bool, exclude: PeerId | None, out: list[Output]
    ) -> None:
        """Eager push to a few peers and id announcements to the rest."""
        if not events:
            return
        targets = [q for q in self._peers if q != exclude]
        chosen: set[PeerId] = set()
        if eager:
            chosen = set(self.rng.sample(targets, min(self.config.eager_fanout, len(targets))))
        raws = [ev.raw for ev in events]
        ids = [ev.id for ev in events]
        step = self.config.max_ids_per_frame
        for q in targets:
            if q in chosen:
                for f in self._events_frames(raws, []):
                    self._send(q, f, out)
            else:
                self.stats.ids_announced += len(ids)
                for i in range(0, len(ids), step):
                    self._send(q, AnnounceFrame(tuple(ids[i : i + step])), out)

    def _pump(self, p: Peer, now: float, out: list[Output]) -> None:
        """Request wanted ids from ``p`` while its window has room."""
        if p.id not in self._peers:
            return
        room = self.window - len(p.inflight)
        self._pump_ancestry(p, now, out)
        # Ranks put parents first, but a lying peer, announced ids and ids
        # fetched from several peers can still fill the escrow.  While it is
        # half full, only a trickle of new ids is fetched, so the ancestry
        # answers can release what waits before it starts dropping (§11.4.3).
        escrow = self.ledger.escrow
        if len(escrow) >= max(1, min(escrow.per_source, escrow.max_events) // 2):
            room = min(room, max(1, self.window // 16) - len(p.inflight))
        batch: list[bytes] = []
        while room > 0 and p.want:
            eid = p.want.pop()
            if self._lacks(eid):
                batch.append(eid)
                room -= 1
            elif eid in self._inflight and not self.ledger.has(eid):
                self._offered(p, eid)
        if not batch:
            return
        deadline = now + self.config.request_timeout
        for eid in batch:
            self._inflight[eid] = (p.id, deadline)
            p.inflight.add(eid)
        self.stats.ids_requested += len(batch)
        self._send(p.id, RequestFrame(tuple(batch)), out)

    def _pump_ancestry(self, p: Peer, now: float, out: list[Output]) -> None:
        """One ANCESTRY frame in flight per peer (§11.4.3)."""
        if p.ancestry or not p.ancestry_wait:
            return
        targets: list[bytes] = []
        accounts: dict[bytes, None] = {}
        while p.ancestry_wait and len(targets) < self.limits.max_ancestry_targets:
            eid, account = p.ancestry_wait.popitem(last=False)
            if self._lacks(eid):
                targets.append(eid)
                accounts[account] = None
                p.ancestry[eid] = (account, p.delivered)
        if not targets:
            return
        known: list[bytes] = []
        for account in accounts:
            log = self.ledger.accounts.get(account)
            if log is not None:
                known.extend(log.heads)
        deadline = now + self.config.request_timeout
        for eid in targets:
            self._inflight[eid] = (p.id, deadline)
            p.inflight.add(eid)
        self.stats.ancestry_requests += 1
        frame = AncestryFrame(tuple(targets), tuple(known[: self.limits.max_ancestry_known]))
        self._send(p.id, frame, out)

    def _serve_ancestry(self, p: Peer, f: AncestryFrame, now: float, out: list[Output]) -> int:
        """Send the targets' ancestry minus what the peer knows, parents first;
        the number of events sent."""
        masks: dict[bytes, int] = {}
        missing: list[bytes] = []
        for eid in f.targets:
            account = self.ledger.account_of(eid)
            if account is None:
                missing.append(eid)
                continue
            log = self.ledger.log(account)
            i = log.index[eid]
            masks[account] = masks.get(account, 0) | log.anc[i] | (1 << i)
        for eid in f.known:
            account = self.ledger.account_of(eid)
            if account is not None and account in masks:
                log = self.ledger.log(account)
                j = log.index[eid]
                masks[account] &= ~(log.anc[j] | (1 << j))
        raws: list[bytes] = []
        sent: set[bytes] = set()
        budget = self.config.max_ancestry_events
        for account, mask in masks.items():
            events = self.ledger.log(account).events
            while mask and len(raws) < budget:
                low = mask & -mask
                ev = events[low.bit_length() - 1]  # account order: parents first
                raws.append(ev.raw)
                sent.add(ev.id)
                mask ^= low
        # targets not sent (over the budget) are listed too: the peer asks again
        missing.extend(t for t in f.targets if t not in sent and t not in missing)
        self.stats.ids_served += len(raws)
        for frame in self._events_frames(raws, missing):
            self._send(p.id, frame, out)
        if raws:
            self._served(p, list(masks), now)
        return len(raws)

    def _serve(self, p: Peer, f: RequestFrame, now: float, out: list[Output]) -> None:
        found: list[tuple[int, bytes]] = []
        missing: list[bytes] = []
        served: list[bytes] = []
        for eid in f.ids:
            seq = self._seq.get(eid)
            raw = self.ledger.raw(eid) if seq is not None else None
            if seq is None or raw is None:
                missing.append(eid)
            else:
                found.append((seq, raw))
                served.append(eid)
        found.sort()  # acceptance order: parents before children
        self.stats.ids_served += len(found)
        for frame in self._events_frames([raw for _, raw in found], missing):
            self._send(p.id, frame, out)
        if served and len(self.records):
            self._served(p, [a for eid in served if (a := self.ledger.account_of(eid))], now)

    def _on_announce(self, p: Peer, f: AnnounceFrame, now: float, out: list[Output]) -> None:
        # Announcements are hints: beyond the budget they are dropped, and
        # reconciliation finds the ids later (a budget slows, never refuses).
        if not p.announce_budget.take(len(f.ids), now):
            self.stats.announced_ids_dropped += len(f.ids)
            return
        self._want(p, f.ids, None)

    def _on_events(self, p: Peer, f: EventsFrame, now: float, out: list[Output]) -> None:
        pushed: list[Event] = []
        pulled: list[Event] = []
        unsolicited = 0
        rtt: float | None = None
        for raw in f.events:
            self.stats.events_received += 1
            if self.ledger.held_raw(raw):
                # a duplicate costs a lookup, not a decoding or a signature
                # check (§11.5.2); old ones nobody asked for are counted
                self.stats.duplicate_events += 1
                if not self._duplicate_solicited(p, raw):
                    unsolicited += 1
                continue
            try:
                result = self.ledger.ingest(raw, source=p.id)
            except UnsupportedVersionError:
                # a newer honest peer may relay formats we cannot read yet
                continue
            except InvalidInput as exc:
                if self._offence(p, exc, self.config.score.invalid_penalty, now, out):
                    break
                continue
            request = self._inflight.get(result.event_id)
            if rtt is None and request is not None and request[0] == p.id:
                rtt = now - (request[1] - self.config.request_timeout)
            # while an ancestry answer is due, everything from p counts as
            # asked for, and so does a push inside a range a reconciliation
            # session left open (§11.5.2)
            in_session = p.sessions.solicited(int.from_bytes(result.event_id, "big"))
            asker = self._clear_inflight(result.event_id)
            if asker is not None and (asker != p.id or in_session):
                self._expect_late(asker, result.event_id)
            solicited = bool(p.ancestry) or in_session or asker is not None
            self._alternates.pop(result.event_id, None)
            if result.status is IngestStatus.DUPLICATE:
                self.stats.duplicate_events += 1
            elif result.status is IngestStatus.DROPPED:
                self.stats.events_dropped += 1  # escrow full or over p's quota: asked again later
            elif result.status is IngestStatus.ESCROWED:
                self.stats.events_escrowed += 1
                if result.missing and len(p.ancestry_wait) < _MAX_ANCESTRY_WAIT:
                    account = decode_event(raw, self.ledger.params).account_id
                    for parent in result.missing:
                        p.ancestry_wait[parent] = account
            else:
                p.delivered += 1
                self.book.reward(p.id, self.config.score.delivery_reward, now)
                for i, ev in enumerate(result.accepted):
                    self._accepted(ev, p.id if i == 0 else None, out)
                (pulled if solicited else pushed).extend(result.accepted)
        for eid in f.missing:
            if eid in p.inflight and p.id in self._peers:
                asked = p.ancestry.get(eid)
                self._clear_inflight(eid)
                if asked is not None and p.delivered > asked[1]:
                    # a cut ancestry answer that made progress: ask again
                    if self._lacks(eid):
                        p.ancestry_wait[eid] = asked[0]
                    continue
                self._retry(eid, now, out)
                # honest nodes never lose an accepted event: offering one
                # and then not having it is a (small) offence
                lie = InvalidInput("offered an id it does not have")
                self._offence(p, lie, self.config.score.undelivered_penalty, now, out)
        # Events we asked for are old news to most peers: announce them only.
        # Events pushed to us are fresh: push them on eagerly.
        self._push(pushed, True, p.id, out)
        self._push(pulled, False, p.id, out)
        if unsolicited:
            self._charge_duplicates(p, unsolicited, now, out)
        if rtt is not None:
            out.append(RoundTrip(p.id, rtt))

    def _duplicate_solicited(self, p: Peer, raw: bytes) -> bool:
        """A duplicate is normal when we asked this peer for it (or for an
        ancestry, whose answer may overlap what we hold), when it lies in a
        range a reconciliation session left open (the peer pushed what the
        session showed we lacked, and it reached us meanwhile from elsewhere),
        or when it is among the events we accepted last (eager push from
        several peers), or when it answers a request of ours that the event
        had overtaken."""
        if p.ancestry:
            return True
        event_id = raw_event_id(raw)
        assert event_id is not None  # held_raw said it is an event we hold
        if self._clear_inflight(event_id) is not None:
            return True
        if event_id in p.late:
            del p.late[event_id]
            return True
        if p.sessions.solicited(int.from_bytes(event_id, "big")):
            return True
        seq = self._seq.get(event_id)
        return seq is None or seq >= len(self._seq) - self.config.recent_events

    def _expect_late(self, peer: PeerId, event_id: bytes) -> None:
        """We had asked ``peer`` for an event that came another way (a push,
        or another peer): its answer will bring it again, and that copy is
        solicited (§11.5.2)."""
        q = self._peers.get(peer)
        if q is not None:
            q.late[event_id] = None
            while len(q.late) > MAX_LATE:
                q.late.popitem(last=False)

    def _charge_duplicates(self, p: Peer, n: int, now: float, out: list[Output]) -> None:
        """Spend ``n`` from the peer's duplicate allowance; beyond it, pause
        its stream until the allowance is back, and score it (a few frames
        never get anyone banned; a replay flood does)."""
        self.stats.duplicates_unsolicited += n
        budget = p.duplicate_budget
        if budget.take(n, now):
            return
        budget.debit(n)
        self.stats.duplicate_pauses += 1
        out.append(Pause(p.id, budget.ready_at(budget.burst / 2, now)))
        flood = LimitExceededError("events we hold already, beyond the peer's allowance")
        self._offence(p, flood, self.config.duplicate_penalty, now, out)
