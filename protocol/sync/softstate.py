"""Soft state the replication machine carries beside the log (PROTOCOL.md
§11.7, §11.8): device records with their pending set and their items for
reconciliation, and the peer table of peer exchange.

These classes hold state and decide; ``protocol.sync.replication.Replicator``
sends frames, scores peers and counts.  Sans-I/O and deterministic like it.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum

from protocol.core import crypto
from protocol.core.errors import BadTimestampError
from protocol.log.ledger import Ledger
from protocol.records.device import (
    MAX_SKEW_MS,
    Offer,
    RecordBook,
    SignedDeviceRecord,
    decode_record,
    verify_record,
)
from protocol.sync.reconcile import RECORD_ITEMS, IdIndex
from protocol.sync.scores import PeerId
from protocol.sync.wire import MAX_PEER_ADDRS, MAX_PEER_TEXT, PeerEntry

Key = tuple[bytes, bytes]

#: the labels of a record item's two hashes (§11.7.5)
D_RECORD_KEY = b"smu/record-key/v1\x00"
D_RECORD_BODY = b"smu/record-body/v1\x00"


def record_item(record: SignedDeviceRecord) -> bytes:
    """The 32-byte item a record is reconciled by (§11.7.5): 16 bytes of
    the hash of its key (account, device), its timestamp as 8 bytes big-
    endian, 8 bytes of the hash of its encoding.  Items sort by key, then
    by version, and two nodes hold the same item exactly when they hold the
    same record."""
    key = crypto.hash_with(D_RECORD_KEY, record.account + record.device, 16)
    body = crypto.hash_with(D_RECORD_BODY, record.raw, 8)
    return key + record.timestamp.to_bytes(8, "big") + body


class RecordItems:
    """The items of a set of records, indexed for reconciliation."""

    def __init__(self, records: list[SignedDeviceRecord]) -> None:
        self.by_item: dict[bytes, SignedDeviceRecord] = {record_item(r): r for r in records}
        self.index = IdIndex(self.by_item, RECORD_ITEMS)


class Drop(Enum):
    """Why a received record was dropped without blame (§11.7.2)."""

    IGNORED = "ignored"  # expired, or a little ahead of our clock
    STALE = "stale"  # we hold or wait on this record or a newer one


@dataclass(slots=True)
class Pending:
    """A record of a device not active here (yet), waiting for events."""

    record: SignedDeviceRecord
    source: PeerId
    added: float


def _newer(a: SignedDeviceRecord, b: SignedDeviceRecord) -> bool:
    """``a`` wins over ``b``: newest ``(timestamp, encoding)`` (§16)."""
    return (a.timestamp, a.raw) > (b.timestamp, b.raw)


class RecordRelay:
    """The record book, the bounded pending set, and the accounts whose
    records must be re-checked (§11.7.4)."""

    def __init__(
        self, ledger: Ledger, max_records: int, max_pending: int, max_pending_per_peer: int
    ) -> None:
        self.ledger = ledger
        self.book = RecordBook(ledger.params, max_records)
        self.max_pending = max_pending
        self.max_pending_per_peer = max_pending_per_peer
        self.pending: OrderedDict[Key, Pending] = OrderedDict()
        self._pending_by_account: dict[bytes, set[Key]] = {}
        #: accounts with newly accepted events, settled before an entry
        #: point of the machine returns
        self.touched: set[bytes] = set()
        #: the book's items (§11.7.5), built when asked for after a change
        self._items: RecordItems | None = None

    def items(self) -> RecordItems:
        if self._items is None:
            self._items = RecordItems(list(self.book))
        return self._items

    def held(self) -> bool:
        return bool(self.pending) or len(self.book) > 0

    def is_active(self, account: bytes, device: bytes) -> bool:
        log = self.ledger.accounts.get(account)
        return log is not None and device in log.state().active_keys

    def touch(self, account: bytes) -> None:
        if self.held():
            self.touched.add(account)

    def check(self, raw: bytes, now_ms: int) -> SignedDeviceRecord | Drop:
        """Steps 1-5 of §11.7.2; raises ``InvalidInput`` for an offence."""
        # the signature last: stale copies, which flooding makes common,
        # cost no verification
        record = decode_record(raw, self.ledger.params, verify=False)
        if record.timestamp > now_ms + 2 * MAX_SKEW_MS:
            # no honest node whose clock is within the skew of ours accepted it
            raise BadTimestampError("record timestamp far ahead of our clock")
        if record.timestamp > now_ms + MAX_SKEW_MS or record.expires <= now_ms:
            return Drop.IGNORED
        waiting = self.pending.get(record.key)
        if self.book.is_stale(record) or (
            waiting is not None and not _newer(record, waiting.record)
        ):
            return Drop.STALE
        verify_record(record)
        return record

    def offer(
        self, record: SignedDeviceRecord, source: PeerId, now: float, now_ms: int
    ) -> tuple[Offer, SignedDeviceRecord] | None:
        """Steps 6-7 of §11.7.2 for a checked record; None if it now waits."""
        if not self.is_active(record.account, record.device):
            self._add_pending(record, source, now)
            return None
        return self.admit(record, now_ms)

    def admit(self, record: SignedDeviceRecord, now_ms: int) -> tuple[Offer, SignedDeviceRecord]:
        """The acceptance rules; raises ``InvalidInput`` if they fail."""
        offer, record = self.book.admit(record, self.is_active, now_ms)
        if offer is Offer.ACCEPTED:
            self._items = None
            waiting = self.pending.get(record.key)
            if waiting is not None and not _newer(waiting.record, record):
                self._remove_pending(record.key)
        return offer, record

    def _add_pending(self, record: SignedDeviceRecord, source: PeerId, now: float) -> None:
        if self.max_pending <= 0 or self.max_pending_per_peer <= 0:
            return
        if record.key in self.pending:
            self._remove_pending(record.key)  # ``check`` saw that this one is newer
        mine = [k for k, e in self.pending.items() if e.source == source]
        if len(mine) >= self.max_pending_per_peer:
            self._remove_pending(mine[0])  # one peer cannot fill the set
        if len(self.pending) >= self.max_pending:
            self._remove_pending(next(iter(self.pending)))
        self.pending[record.key] = Pending(record, source, now)
        self._pending_by_account.setdefault(record.account, set()).add(record.key)

    def _remove_pending(self, key: Key) -> None:
        del self.pending[key]
        keys = self._pending_by_account[key[0]]
        keys.discard(key)
        if not keys:
            del self._pending_by_account[key[0]]

    def settle(self, now_ms: int) -> tuple[int, list[tuple[SignedDeviceRecord, PeerId]]]:
        """For each touched account: drop records of devices no longer active
        (or expired), accept pending records of devices now active.  The
        number dropped, and the records newly accepted with their sender."""
        accounts = sorted(self.touched)
        self.touched.clear()
        pruned = 0
        released: list[tuple[SignedDeviceRecord, PeerId]] = []
        for account in accounts:
            pruned += len(self.book.prune_account(account, self.is_active, now_ms))
            for key in sorted(self._pending_by_account.get(account, ())):
                entry = self.pending[key]
                record = entry.record
                if record.expires <= now_ms:
                    self._remove_pending(key)
                elif self.is_active(record.account, record.device):
                    self._remove_pending(key)
                    offer, record = self.book.admit(record, self.is_active, now_ms)
                    if offer is Offer.ACCEPTED:
                        released.append((record, entry.source))
        if pruned or released:
            self._items = None
        return pruned, released

    def sweep(self, now: float, now_ms: int, pending_ttl: float) -> int:
        """Drop expired records, and pending ones expired or too old; the
        number of records dropped from the book."""
        pruned = len(self.book.prune(self.is_active, now_ms))
        if pruned:
            self._items = None
        for key, entry in list(self.pending.items()):
            if entry.record.expires <= now_ms or now - entry.added >= pending_ttl:
                self._remove_pending(key)
        return pruned


# -- peer exchange (§11.8) ------------------------------------------------------


def addresses(addrs: object) -> tuple[str, ...]:
    """The addresses that can travel in a PEERS entry (§11.2.1)."""
    if isinstance(addrs, str) or not isinstance(addrs, list | tuple):
        return ()
    good: list[str] = []
    for a in addrs:
        if (
            type(a) is str
            and 0 < len(a) <= MAX_PEER_TEXT
            and a.isprintable()
            and a.startswith("/")
            and a not in good
        ):
            good.append(a)
    return tuple(good[:MAX_PEER_ADDRS])


def peer_id_ok(peer: object) -> bool:
    return type(peer) is str and 0 < len(peer) <= MAX_PEER_TEXT and peer.isprintable()


class PeerTable:
    """Ourselves, the peers the adapter vouches for, and what PEERS frames
    claimed (§11.8.1, §11.8.3)."""

    def __init__(self, max_known: int, max_learned: int, max_per_source: int) -> None:
        self.max_known = max_known
        self.max_learned = max_learned
        self.max_per_source = max_per_source
        self.self_id: str | None = None
        self.self_addrs: tuple[str, ...] = ()
        self.known: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        #: peer id -> (addresses, the peer that told us)
        self.learned: OrderedDict[str, tuple[tuple[str, ...], PeerId]] = OrderedDict()
        self._per_source: dict[PeerId, int] = {}

    def set_self(self, peer_id: str, addrs: object) -> None:
        if peer_id_ok(peer_id):
            self.self_id = peer_id
            self.self_addrs = addresses(addrs)
            self.known.pop(peer_id, None)
            self._unlearn(peer_id)

    def note(self, peer: str, addrs: object) -> None:
        if not peer_id_ok(peer) or peer == self.self_id:
            return
        good = addresses(addrs)
        self.known.pop(peer, None)
        if not good:
            return
        self.known[peer] = good
        self._unlearn(peer)
        while len(self.known) > self.max_known:
            self.known.popitem(last=False)

    def shareable(self) -> bool:
        return bool(self.known) or bool(self.self_id and self.self_addrs)

    def sample(self, exclude: PeerId, limit: int, rng: random.Random) -> tuple[PeerEntry, ...]:
        """Ourselves and a random sample of the noted peers, never ``exclude``,
        sorted by peer id (§11.8.2).  ``rng`` is used only when the noted
        peers do not all fit."""
        entries: list[PeerEntry] = []
        if self.self_id is not None and self.self_addrs:
            entries.append((self.self_id, self.self_addrs))
        others = [(pid, addrs) for pid, addrs in self.known.items() if pid != exclude]
        room = max(0, limit - len(entries))
        if len(others) > room:
            others = rng.sample(others, room)
        entries.extend(others)
        return tuple(sorted(entries))

    def _unlearn(self, peer: str) -> None:
        old = self.learned.pop(peer, None)
        if old is not None:
            n = self._per_source[old[1]] - 1
            if n:
                self._per_source[old[1]] = n
            else:
                del self._per_source[old[1]]

    def learn(self, entries: tuple[PeerEntry, ...], source: PeerId) -> list[PeerEntry]:
        """Enter what a PEERS frame claims; the entries that are news."""
        news: list[PeerEntry] = []
        if self.max_learned <= 0 or self.max_per_source <= 0:
            return news
        for pid, addrs in entries:
            if pid == self.self_id or self.known.get(pid) == addrs:
                continue
            old = self.learned.get(pid)
            if old is not None and old[0] == addrs:
                continue
            self._unlearn(pid)
            if self._per_source.get(source, 0) >= self.max_per_source:
                # one peer cannot fill the table: its oldest entry goes
                self._unlearn(next(k for k, v in self.learned.items() if v[1] == source))
            if len(self.learned) >= self.max_learned:
                self._unlearn(next(iter(self.learned)))
            self.learned[pid] = (addrs, source)
            self._per_source[source] = self._per_source.get(source, 0) + 1
            news.append((pid, addrs))
        return news
