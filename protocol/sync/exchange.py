"""The parts of the replication machine that exchange sets and soft state
(PROTOCOL.md §11.3.5, §11.4.2, §11.7, §11.8): reconciliation sessions and
what they push, device records (flooded, re-sent, reconciled by item) and
peer exchange.

``Exchange`` is a base class of ``protocol.sync.replication.Replicator``,
which owns the state named here and the helpers declared under
``TYPE_CHECKING``.  Sans-I/O and deterministic like it.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from protocol.core.errors import InvalidInput, UnsupportedVersionError
from protocol.log.ledger import Ledger
from protocol.records.device import Offer, RecordBook, SignedDeviceRecord
from protocol.sync.peer import Peer
from protocol.sync.reconcile import (
    MAX_ROUND,
    IdIndex,
    Range,
    Ranker,
    ReconcileConfig,
    chunk,
    initiate,
    listed_items,
    needs_reply,
    no_rank,
    respond,
    session_salt,
)
from protocol.sync.scores import PeerId
from protocol.sync.sessions import Session
from protocol.sync.softstate import Drop, PeerTable, RecordRelay
from protocol.sync.types import (
    Output,
    PeersLearned,
    RecordAccepted,
    ReplicationConfig,
    ReplicationStats,
)
from protocol.sync.wire import (
    FLAG_FINAL,
    FLAG_OWN,
    FLAG_RECORDS,
    EventsFrame,
    Frame,
    PeersFrame,
    ReconcileFrame,
    RecordRequestFrame,
    RecordsFrame,
    WireLimits,
)

#: bytes kept free in a frame for its header
FRAME_SLACK = 64
#: accounts whose records wait to be sent again, per peer
MAX_SERVED_ACCOUNTS = 4096


class Exchange:
    """Reconciliation sessions, device records and peer exchange."""

    config: ReplicationConfig
    limits: WireLimits
    stats: ReplicationStats
    rng: random.Random
    ledger: Ledger
    index: IdIndex
    rconfig: ReconcileConfig
    relay: RecordRelay
    records: RecordBook
    peer_table: PeerTable
    _peers: dict[PeerId, Peer]
    _seq: dict[bytes, int]
    _next_prune: float | None
    _wall_ms: int

    if TYPE_CHECKING:

        def _send(self, peer: PeerId, frame: Frame, out: list[Output]) -> None: ...

        def _offence(
            self, p: Peer, exc: InvalidInput, penalty: float, now: float, out: list[Output]
        ) -> bool: ...

        def _rank(self, value: int) -> int: ...

        def _want(self, p: Peer, ids: tuple[bytes, ...], ranks: tuple[int, ...] | None) -> None: ...

        def _events_frames(self, raws: list[bytes], missing: list[bytes]) -> list[EventsFrame]: ...

    def _pack(
        self, raws: list[bytes], per_item: int, max_items: int, reserve_last: int = 0
    ) -> list[list[bytes]]:
        """Split ``raws`` into frame-sized chunks, in order; the last chunk
        (possibly empty) leaves ``reserve_last`` bytes free for the caller."""
        budget = self.config.max_frame_bytes - FRAME_SLACK
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

    # -- reconciliation (§11.4.2, §11.3.5) ----------------------------------------

    def _reconcile_frames(
        self, session: int, flags: int, msg_round: int, ranges: tuple[Range, ...]
    ) -> list[ReconcileFrame]:
        c = self.config
        pieces = chunk(
            ranges, c.max_frame_bytes - FRAME_SLACK, c.max_ranges_per_frame, c.max_ids_per_frame
        )
        each = flags & ~FLAG_FINAL
        frames = [ReconcileFrame(session, each, piece, msg_round) for piece in pieces]
        if flags & FLAG_FINAL:
            last = frames[-1]
            frames[-1] = ReconcileFrame(session, last.flags | FLAG_FINAL, last.ranges, msg_round)
        return frames

    def _start_session(self, p: Peer, now: float, out: list[Output], records: bool = False) -> None:
        sid = p.sessions.new_id(self.rng)
        index = self.relay.items().index if records else self.index
        ranges = initiate(index, session_salt(sid), self.rconfig)
        flags = FLAG_OWN | (FLAG_RECORDS if records else 0)
        session = p.sessions.start(sid, records, now)
        if records:
            self.stats.record_sessions += 1
        else:
            self.stats.reconcile_rounds += 1
        for f in self._reconcile_frames(sid, flags, 1, ranges):
            session.sent(f.ranges)
            self._send(p.id, f, out)

    def _on_reconcile(self, p: Peer, f: ReconcileFrame, now: float, out: list[Output]) -> None:
        records = f.records
        rank: Ranker = no_rank if records else self._rank
        index = self.relay.items().index if records else self.index
        limit = self.config.record_push_limit if records else self.config.push_limit
        salt = session_salt(f.session)
        try:
            outcome = respond(index, f.ranges, salt, self.rconfig, rank, f.round, limit)
        except InvalidInput as exc:
            self._offence(p, exc, self.config.score.invalid_penalty, now, out)
            return
        # An answer can be far larger than the frame that asked for it (one
        # FP range answered by a list of every id we hold): the answer's
        # ranges and ids beyond the frame's own ranges are charged to the
        # peer's reconciliation budget, after the fact (§11.5.2).
        answer_cost = sum(1 + listed_items(r) for r in outcome.reply)
        p.reconcile_budget.debit(max(0, answer_cost - len(f.ranges)))
        mine = not f.own  # the frame answers a session we started
        key = (f.session, records)
        session: Session | None = p.sessions.ours.get(f.session) if mine else None
        if session is not None and session.records != records:
            session = None
        if not mine:
            session = p.sessions.theirs.get(key)
        if session is not None and f.final:
            # it answers our oldest frame still waiting: that frame's open
            # ranges close; the peer's pushes for it came before (§11.5.2)
            session.answered()
        # what the peer lacks goes first, so it is there before our answer
        # closes the ranges that made it solicited
        give = tuple(p.sessions.fresh(outcome.give, now, self.config.session_timeout))
        if records:
            self._give_records(p, give, out)
            step = self.limits.max_ids_per_frame
            self.stats.record_items_requested += len(outcome.need)
            for i in range(0, len(outcome.need), step):
                self._send(p.id, RecordRequestFrame(outcome.need[i : i + step]), out)
        else:
            self._give_events(p, give, now, out)
            self._want(p, outcome.need, outcome.ranks)
        if outcome.wants_reply:
            flags = FLAG_FINAL | (FLAG_OWN if mine else 0) | (FLAG_RECORDS if records else 0)
            frames = self._reconcile_frames(
                f.session, flags, min(f.round + 1, MAX_ROUND), outcome.reply
            )
            if session is None and not mine and any(needs_reply(fr.ranges) for fr in frames):
                session = p.sessions.answering(f.session, records, now)
            for fr in frames:
                if session is not None:
                    session.sent(fr.ranges)
                self._send(p.id, fr, out)
        if session is not None and not session.awaiting:
            if mine:
                del p.sessions.ours[f.session]
                if not records:
                    self.stats.reconcile_completed += 1
            else:
                p.sessions.theirs.pop(key, None)

    def _give_events(self, p: Peer, ids: tuple[bytes, ...], now: float, out: list[Output]) -> None:
        """Push events a reconciliation showed the peer lacks, parents first;
        they cost our serving budget for the peer like an answer (§11.5.2)."""
        if not ids:
            return
        found = sorted((self._seq[eid], raw) for eid in ids if (raw := self.ledger.raw(eid)))
        self.stats.reconcile_pushed += len(found)
        p.serve_budget.debit(len(found))
        for frame in self._events_frames([raw for _, raw in found], []):
            self._send(p.id, frame, out)
        if found and len(self.records):
            self._served(p, [a for eid in ids if (a := self.ledger.account_of(eid))], now)

    # -- device records (§11.7) --------------------------------------------------

    def _give_records(self, p: Peer, items: tuple[bytes, ...], out: list[Output]) -> None:
        """Push the records of ``items`` (a record reconciliation showed the
        peer lacks them, §11.7.5)."""
        by_item = self.relay.items().by_item
        records = [r for i in items if (r := by_item.get(i)) is not None]
        self.stats.records_pushed += len(records)
        self._send_records(p.id, records, out)

    def _serve_records(self, p: Peer, f: RecordRequestFrame, out: list[Output]) -> None:
        """Records asked for by item (§11.7.5); items we no longer hold are
        skipped: records are soft state, the next session catches up."""
        self._give_records(p, f.items, out)

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

    def _on_records(self, p: Peer, f: RecordsFrame, now: float, out: list[Output]) -> None:
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

    def _served(self, p: Peer, accounts: list[bytes], now: float) -> None:
        """We sent ``p`` events of ``accounts``: it may have dropped their
        records, which came before the events; send them again once it has
        been quiet for ``records_resend_delay`` (§11.7.1 rule 4)."""
        with_records = [a for a in accounts if self.records.has_account(a)]
        if not with_records:
            return
        if len(p.served_accounts) < MAX_SERVED_ACCOUNTS:
            p.served_accounts.update(with_records)
        p.records_due = now + self.config.records_resend_delay

    def _resend_records(self, p: Peer, out: list[Output]) -> None:
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

    def _send_peers(self, p: Peer, out: list[Output]) -> None:
        entries = self.peer_table.sample(p.id, self.limits.max_peers_per_frame, self.rng)
        if entries:
            self._send(p.id, PeersFrame(entries), out)

    def _on_peers(self, p: Peer, f: PeersFrame, now: float, out: list[Output]) -> None:
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
