"""What the replication machine keeps per linked peer (PROTOCOL.md §11.4,
§11.5.2): budgets, wanted and requested ids, ancestry bookkeeping, frames
waiting for a budget, reconciliation sessions and records due again.
Pure data; ``protocol.sync.replication.Replicator`` decides."""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from protocol.sync.scores import PeerId, TokenBucket
from protocol.sync.sessions import SessionTable
from protocol.sync.wants import WantQueue
from protocol.sync.wire import (
    AncestryFrame,
    ReconcileFrame,
    RecordRequestFrame,
    RecordsFrame,
    RequestFrame,
)

#: requested ids answered another way first, remembered per peer
MAX_LATE = 4096


@dataclass(slots=True)
class Peer:
    """What the replication machine keeps per linked peer."""

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
    #: ids we asked this peer for that came another way first: its answer
    #: brings them again, solicited (§11.5.2); at most ``MAX_LATE``
    late: OrderedDict[bytes, None] = field(default_factory=OrderedDict)
    #: reconciliation sessions, ours and the peer's (§11.3.5)
    sessions: SessionTable = field(default_factory=SessionTable)
    #: accounts of events we served this peer whose records it may have
    #: had to drop, and when to send them (§11.7.1 rule 4)
    served_accounts: set[bytes] = field(default_factory=set)
    records_due: float | None = None


Costly = RequestFrame | AncestryFrame | ReconcileFrame | RecordsFrame | RecordRequestFrame


def frame_cost(frame: Costly) -> int:
    if isinstance(frame, RequestFrame):
        return len(frame.ids)
    if isinstance(frame, RecordRequestFrame):
        return len(frame.items)
    if isinstance(frame, AncestryFrame):
        return len(frame.targets)  # and the events sent, debited after (§11.5.2)
    if isinstance(frame, RecordsFrame):
        return len(frame.records)
    return len(frame.ranges)


def frame_bucket(p: Peer, frame: Costly) -> TokenBucket:
    if isinstance(frame, ReconcileFrame):
        return p.reconcile_budget
    if isinstance(frame, RecordsFrame):
        return p.record_budget
    return p.serve_budget
