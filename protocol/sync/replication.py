"""The replication machine: push and pull of events between peers (PROTOCOL.md §11).

Sans-I/O: every entry point takes the current time and returns what to do
(``Send`` a frame, ``Disconnect`` a peer, report a ``Delivered`` event or a
``Misbehaved`` peer).  The node adapter and simnet drive the same code.

* Push (§11.4.1): an event newly accepted by the ledger -- and so already
  persisted, since ``Ledger.ingest`` stores before it returns -- goes in
  full to ``eager_fanout`` random peers and as an id announcement to the
  others.  Peers request announced ids they lack.
* Pull (§11.4.2): on every new link and every ``reconcile_interval`` with
  one random peer, a reconciliation session (protocol.reconcile) finds the
  ids each side lacks; both sides request what they lack.
* Fetch (§11.4.3): requests are windowed per peer and time out; answers come
  parents first; an event whose parents are missing waits in the ledger's
  escrow and its missing parents are fetched with their ancestry
  (ANCESTRY), parents first.
* Peers (§11.5): a score per peer (protocol.peers); invalid input costs
  dearly and leads to a disconnect with back-off; duplicates are normal.
* Device records (§11.7): signed soft state (protocol.records.device) flooded to
  every peer, newest wins; a record of a device we do not yet know to be
  active waits in a small pending set until the account's events arrive.
* Peer exchange (§11.8): PEERS frames tell a node whom it may dial; the
  adapter decides whom it dials.
"""

from __future__ import annotations

import random
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from protocol.core.errors import InvalidInput, LimitExceededError, UnsupportedVersionError
from protocol.core.machine import Now
from protocol.log.events import Event, decode_event, raw_event_id
from protocol.log.ledger import IngestStatus, Ledger
from protocol.records.device import Offer, SignedDeviceRecord, decode_record
from protocol.sync.reconcile import (
    IdIndex,
    Range,
    ReconcileConfig,
    chunk,
    initiate,
    needs_reply,
    respond,
)
from protocol.sync.scores import PeerBook, PeerId, TokenBucket
from protocol.sync.softstate import Drop, PeerTable, RecordRelay
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
from protocol.sync.wants import ANNOUNCED, RETRY, WantQueue
from protocol.sync.wire import (
    FLAG_FINAL,
    FLAG_OWN,
    AncestryFrame,
    AnnounceFrame,
    EventsFrame,
    Frame,
    PeerEntry,
    PeersFrame,
    ReconcileFrame,
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

_FRAME_SLACK = 64  # bytes kept free in a frame for its header
_DEFAULT_CONFIG = ReplicationConfig()  # frozen: one instance serves every default
_MAX_ANCESTRY_WAIT = 4096  # parents waiting for an ANCESTRY frame, per peer
_MAX_SERVED_ACCOUNTS = 4096  # accounts whose records wait to be sent again, per peer


@dataclass(slots=True)
class _Session:
    started: float
    #: our frames in this session that still await their final answer
    outstanding: int


@dataclass(slots=True)
class _Peer:
    id: PeerId
    announce_budget: TokenBucket
    serve_budget: TokenBucket
    reconcile_budget: TokenBucket
    record_budget: TokenBucket
    peers_budget: TokenBucket
    #: unsolicited old duplicates (§11.5.2)
    duplicate_budget: TokenBucket
    #: ids it offered, requested lowest rank first (§11.4.3)
    want: WantQueue = field(default_factory=WantQueue)
    inflight: set[bytes] = field(default_factory=set)
    #: parents escrowed events wait for, to fetch with their ancestry: id -> account
    ancestry_wait: OrderedDict[bytes, bytes] = field(default_factory=OrderedDict)
    #: ancestry targets in flight: id -> (account, ``delivered`` when asked)
    ancestry: dict[bytes, tuple[bytes, int]] = field(default_factory=dict)
    #: events from this peer the ledger accepted
    delivered: int = 0
    queue: deque[Costly] = field(default_factory=deque)
    sessions: dict[int, _Session] = field(default_factory=dict)
    next_session: int = 0
    #: accounts of events we served this peer whose records it may have
    #: had to drop, and when to send them (§11.7.1 rule 4)
    served_accounts: set[bytes] = field(default_factory=set)
    records_due: float | None = None


Costly = RequestFrame | AncestryFrame | ReconcileFrame | RecordsFrame


def _cost(frame: Costly) -> int:
    if isinstance(frame, RequestFrame):
        return len(frame.ids)
    if isinstance(frame, AncestryFrame):
        return len(frame.targets)  # and the events sent, debited after (§11.5.2)
    if isinstance(frame, RecordsFrame):
        return len(frame.records)
    return len(frame.ranges)


def _bucket(p: _Peer, frame: Costly) -> TokenBucket:
    if isinstance(frame, ReconcileFrame):
        return p.reconcile_budget
    if isinstance(frame, RecordsFrame):
        return p.record_budget
    return p.serve_budget


class Replicator:
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
        id_budget = (config.max_frame_bytes - _FRAME_SLACK) // 40
        self.rconfig = ReconcileConfig(
            config.branching, config.ids_threshold, max(1, min(2048, id_budget))
        )
        self.window = max(1, min(config.request_window, config.max_ids_per_frame, id_budget))
        self.book = PeerBook(config.score)
        self.stats = ReplicationStats()
        ids = list(ledger.event_ids())
        #: our accepted ids, sorted, for fingerprints
        self.index = IdIndex(ids)
        #: acceptance order, which is topological: answers go parents first
        self._seq: dict[bytes, int] = {eid: i for i, eid in enumerate(ids)}
        self._peers: dict[PeerId, _Peer] = {}
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
            if p.sessions:
                first = min(s.started for s in p.sessions.values())
                deadlines.append(first + self.config.session_timeout)
            if p.queue:
                head = p.queue[0]
                bucket = _bucket(p, head)
                deadlines.append(bucket.ready_at(_cost(head), bucket.updated))
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
        p = _Peer(
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
        # soft state goes to a new link at once (§11.7.1, §11.8.2)
        self._send_records(peer, list(self.records), out)
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
        if p is not None and not p.sessions:
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
            for sid, s in list(p.sessions.items()):
                if t >= s.started + self.config.session_timeout:
                    del p.sessions[sid]
                    self.stats.reconcile_timeouts += 1
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
        self, p: _Peer, exc: InvalidInput, penalty: float, now: float, out: list[Output]
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

    def _want(self, p: _Peer, ids: tuple[bytes, ...], ranks: tuple[int, ...] | None) -> None:
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

    def _offered(self, p: _Peer, eid: bytes) -> None:
        """``p`` offers an id already requested elsewhere: remember it."""
        alternates = self._alternates.setdefault(eid, [])
        if len(alternates) < 4 and p.id not in alternates and self._inflight[eid][0] != p.id:
            alternates.append(p.id)

    def _budget_take(self, p: _Peer, f: Costly, now: float) -> bool:
        return _bucket(p, f).take(_cost(f), now)

    def _drain(self, p: _Peer, now: float, out: list[Output]) -> None:
        while p.queue and p.id in self._peers:
            if not self._budget_take(p, p.queue[0], now):
                return
            self._handle_costly(p, p.queue.popleft(), now, out)

    def _handle_costly(self, p: _Peer, f: Costly, now: float, out: list[Output]) -> None:
        if isinstance(f, RequestFrame):
            self._serve(p, f, now, out)
        elif isinstance(f, AncestryFrame):
            p.serve_budget.debit(self._serve_ancestry(p, f, now, out))
        elif isinstance(f, RecordsFrame):
            self._on_records(p, f, now, out)
        else:
            self._on_reconcile(p, f, now, out)

    # -- push and fetch (§11.4.1, §11.4.3) ---------------------------------------

    def _pack(
        self, raws: list[bytes], per_item: int, max_items: int, reserve_last: int = 0
    ) -> list[list[bytes]]:
        """Split ``raws`` into frame-sized chunks, in order; the last chunk
        (possibly empty) leaves ``reserve_last`` bytes free for the caller."""
        budget = self.config.max_frame_bytes - _FRAME_SLACK
        chunks: list[list[bytes]] = []
        cur: list[bytes] = []
        size = 0
        for raw in raws:
            cost = len(raw) + per_item
            if cur and (size + cost > budget or len(cur) >= max_items):
                chunks.append(cur)
                cur, size = [], 0
            cur.append(raw)
            size += cost
        if cur and size + reserve_last > budget:
            chunks.append(cur)
            cur = []
        chunks.append(cur)
        return chunks

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

    def _pump(self, p: _Peer, now: float, out: list[Output]) -> None:
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

    def _pump_ancestry(self, p: _Peer, now: float, out: list[Output]) -> None:
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

    def _serve_ancestry(self, p: _Peer, f: AncestryFrame, now: float, out: list[Output]) -> int:
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

    def _serve(self, p: _Peer, f: RequestFrame, now: float, out: list[Output]) -> None:
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

    def _on_announce(self, p: _Peer, f: AnnounceFrame, now: float, out: list[Output]) -> None:
        # Announcements are hints: beyond the budget they are dropped, and
        # reconciliation finds the ids later (a budget slows, never refuses).
        if not p.announce_budget.take(len(f.ids), now):
            self.stats.announced_ids_dropped += len(f.ids)
            return
        self._want(p, f.ids, None)

    def _on_events(self, p: _Peer, f: EventsFrame, now: float, out: list[Output]) -> None:
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
            # while an ancestry answer is due, everything from p counts as asked for
            solicited = bool(p.ancestry)
            solicited = self._clear_inflight(result.event_id) is not None or solicited
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

    def _duplicate_solicited(self, p: _Peer, raw: bytes) -> bool:
        """A duplicate is normal when we asked this peer for it (or for an
        ancestry, whose answer may overlap what we hold), or when it is among
        the events we accepted last (eager push from several peers)."""
        if p.ancestry:
            return True
        event_id = raw_event_id(raw)
        assert event_id is not None  # held_raw said it is an event we hold
        if self._clear_inflight(event_id) is not None:
            return True
        seq = self._seq.get(event_id)
        return seq is None or seq >= len(self._seq) - self.config.recent_events

    def _charge_duplicates(self, p: _Peer, n: int, now: float, out: list[Output]) -> None:
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

    # -- reconciliation (§11.4.2) ------------------------------------------------

    def _reconcile_frames(
        self, session: int, flags: int, ranges: tuple[Range, ...]
    ) -> list[ReconcileFrame]:
        pieces = chunk(ranges, self.config.max_frame_bytes, self.config.max_ranges_per_frame)
        frames = [ReconcileFrame(session, flags & FLAG_OWN, piece) for piece in pieces]
        if flags & FLAG_FINAL:
            last = frames[-1]
            frames[-1] = ReconcileFrame(session, last.flags | FLAG_FINAL, last.ranges)
        return frames

    def _start_session(self, p: _Peer, now: float, out: list[Output]) -> None:
        sid = p.next_session
        p.next_session = (sid + 1) % (1 << 32)
        ranges = initiate(self.index, self.rconfig, self._rank)
        frames = self._reconcile_frames(sid, FLAG_OWN, ranges)
        p.sessions[sid] = _Session(now, sum(needs_reply(f.ranges) for f in frames))
        self.stats.reconcile_rounds += 1
        for f in frames:
            self._send(p.id, f, out)

    def _on_reconcile(self, p: _Peer, f: ReconcileFrame, now: float, out: list[Output]) -> None:
        try:
            outcome = respond(self.index, f.ranges, self.rconfig, self._rank)
        except InvalidInput as exc:
            self._offence(p, exc, self.config.score.invalid_penalty, now, out)
            return
        self._want(p, outcome.need, outcome.ranks)
        mine = not f.own  # the frame answers a session we started
        frames: list[ReconcileFrame] = []
        if outcome.wants_reply:
            flags = FLAG_FINAL | (FLAG_OWN if mine else 0)
            frames = self._reconcile_frames(f.session, flags, outcome.reply)
        session = p.sessions.get(f.session) if mine else None
        if session is not None:
            session.outstanding += sum(needs_reply(fr.ranges) for fr in frames)
            if f.final:
                session.outstanding -= 1
            if session.outstanding <= 0:
                del p.sessions[f.session]
                self.stats.reconcile_completed += 1
        for fr in frames:
            self._send(p.id, fr, out)

    # -- device records (§11.7) --------------------------------------------------

    def _records_frames(self, raws: list[bytes]) -> list[RecordsFrame]:
        chunks = self._pack(raws, 3, self.limits.max_records_per_frame)
        return [RecordsFrame(tuple(c)) for c in chunks if c]

    def _send_records(
        self, peer: PeerId, records: list[SignedDeviceRecord], out: list[Output]
    ) -> None:
        for f in self._records_frames([r.raw for r in records]):
            self._send(peer, f, out)

    def _record_accepted(
        self, record: SignedDeviceRecord, source: PeerId | None, now: float, out: list[Output]
    ) -> None:
        """Newly accepted: report it and flood it to every other peer; a
        peer that holds it (or newer) forwards nothing, ending the flood."""
        self.stats.records_accepted += 1
        if self._next_prune is None:
            self._next_prune = now + self.config.record_prune_interval
        out.append(RecordAccepted(record, source))
        for q in self._peers:
            if q != source:
                self._send_records(q, [record], out)

    def _on_records(self, p: _Peer, f: RecordsFrame, now: float, out: list[Output]) -> None:
        now_ms = self._wall_ms
        for raw in f.records:
            self.stats.records_received += 1
            try:
                checked = self.relay.check(raw, now_ms)
            except UnsupportedVersionError:
                continue  # a newer record format an honest peer may relay
            except InvalidInput as exc:
                if self._offence(p, exc, self.config.score.invalid_penalty, now, out):
                    return
                continue
            if checked is Drop.IGNORED:
                self.stats.records_ignored += 1
                continue
            if checked is Drop.STALE:
                self.stats.records_stale += 1
                continue
            result = self.relay.offer(checked, p.id, now, now_ms)
            if result is None:
                # perhaps we lack the account's latest events: not an offence
                self.stats.records_pending += 1
                if self._next_prune is None:
                    self._next_prune = now + self.config.record_prune_interval
            elif result[0] is Offer.ACCEPTED:
                self._record_accepted(result[1], p.id, now, out)
            else:
                self.stats.records_stale += 1

    def _served(self, p: _Peer, accounts: list[bytes], now: float) -> None:
        """We sent ``p`` events of ``accounts``: it may have dropped their
        records, which came before the events; send them again once it has
        been quiet for ``records_resend_delay`` (§11.7.1 rule 4)."""
        with_records = [a for a in accounts if self.records.has_account(a)]
        if not with_records:
            return
        if len(p.served_accounts) < _MAX_SERVED_ACCOUNTS:
            p.served_accounts.update(with_records)
        p.records_due = now + self.config.records_resend_delay

    def _resend_records(self, p: _Peer, out: list[Output]) -> None:
        p.records_due = None
        accounts, p.served_accounts = sorted(p.served_accounts), set()
        records = [r for a in accounts for r in self.records.for_account(a)]
        self.stats.records_resent += len(records)
        self._send_records(p.id, records, out)

    def _settle(self, now: float, out: list[Output]) -> None:
        """Accounts with new events: drop records of devices no longer
        active, accept their pending records now valid (§11.7.4)."""
        if not self.relay.touched:
            return
        pruned, released = self.relay.settle(self._wall_ms)
        self.stats.records_pruned += pruned
        for record, source in released:
            self._record_accepted(record, source, now, out)

    def _sweep_records(self, now: float) -> None:
        self.stats.records_pruned += self.relay.sweep(now, self._wall_ms, self.config.pending_ttl)
        held = self.relay.held()
        self._next_prune = now + self.config.record_prune_interval if held else None

    # -- peer exchange (§11.8) ---------------------------------------------------

    def _send_peers(self, p: _Peer, out: list[Output]) -> None:
        entries = self.peer_table.sample(p.id, self.limits.max_peers_per_frame, self.rng)
        if entries:
            self._send(p.id, PeersFrame(entries), out)

    def _on_peers(self, p: _Peer, f: PeersFrame, now: float, out: list[Output]) -> None:
        # beyond the budget a valid PEERS frame is dropped, never punished:
        # peer exchange is a hint (§11.8.3)
        if not p.peers_budget.take(1, now):
            self.stats.peers_frames_dropped += 1
            return
        self.stats.peers_frames_received += 1
        news = self.peer_table.learn(f.peers, p.id)
        own = next((tuple(addrs) for peer, addrs in f.peers if peer == p.id), ())
        self.stats.peers_learned += len(news)
        if news or own:
            out.append(PeersLearned(tuple(news), p.id, own))
