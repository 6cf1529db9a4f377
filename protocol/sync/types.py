"""Configuration, outputs and statistics of the replication machine
(PROTOCOL.md §11.4-§11.8), apart from ``protocol.sync.replication`` to keep each
file readable; import them from there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The outputs every machine shares (PROTOCOL.md §18), re-exported.
from protocol.core.machine import Misbehaved as Misbehaved
from protocol.core.machine import Send as Send
from protocol.log.events import Event
from protocol.records.device import SignedDeviceRecord
from protocol.sync.scores import PeerId, ScoreConfig
from protocol.sync.wire import PeerEntry


@dataclass(frozen=True, slots=True)
class ReplicationConfig:
    #: peers that get a new event in full at once; the others get its id
    eager_fanout: int = 3
    #: seconds between reconciliations with one random peer
    reconcile_interval: float = 30.0
    #: the transport refuses longer frames before reading them (§11.2.1)
    max_frame_bytes: int = 256 * 1024
    max_events_per_frame: int = 256
    max_ids_per_frame: int = 8192
    max_ranges_per_frame: int = 8192
    #: reconciliation (§11.3.3): a differing range is listed once its
    #: sender holds at most ``list_threshold`` ids in it, and always in
    #: round ``list_round``; splits aim at that size by then
    list_threshold: int = 24
    list_round: int = 4
    #: events (records) pushed in answer to one reconciliation frame; the
    #: rest are offered in HAVE for the peer to fetch
    push_limit: int = 2048
    record_push_limit: int = 4096
    #: requested ids in flight per peer, and how long an answer may take
    request_window: int = 2048
    request_timeout: float = 10.0
    #: events in the answer to one ANCESTRY frame (the oldest first)
    max_ancestry_events: int = 1024
    #: a reconciliation session we started is forgotten after this long
    session_timeout: float = 60.0
    #: ids a peer told us about that wait to be requested from it
    max_wanted_per_peer: int = 1 << 18
    #: budgets (per peer): announced ids, requested ids served, ranges
    #: reconciled, per second and in one burst
    announce_rate: float = 2_000.0
    announce_burst: float = 20_000.0
    serve_rate: float = 25_000.0
    serve_burst: float = 50_000.0
    reconcile_rate: float = 20_000.0
    reconcile_burst: float = 40_000.0
    #: frames waiting for a budget; more is a flood
    max_queued_frames: int = 32
    #: duplicates (§11.5.2): events we hold already cost a lookup, and are
    #: free when asked for or among the newest ``recent_events`` we accepted
    #: (gossip overlaps); other duplicates spend this per-peer allowance
    #: (per second, burst), and a frame beyond it pauses the peer's stream
    #: and costs ``duplicate_penalty``
    recent_events: int = 1024
    duplicate_rate: float = 200.0
    duplicate_burst: float = 4096.0
    duplicate_penalty: float = 1.0
    score: ScoreConfig = field(default_factory=ScoreConfig)
    #: device records (§11.7): per RECORDS frame; records checked per
    #: second and in one burst, per peer; records held
    max_records_per_frame: int = 64
    record_rate: float = 1_000.0
    record_burst: float = 20_000.0
    max_records: int = 100_000
    #: records of devices not (yet) active here, waiting for events
    max_pending_records: int = 256
    max_pending_per_peer: int = 32
    pending_ttl: float = 600.0
    #: seconds between sweeps for expired records
    record_prune_interval: float = 60.0
    #: quiet seconds after we served a peer events before we send it the
    #: records of their accounts again (§11.7.1)
    records_resend_delay: float = 2.0
    #: a new link gets our records in full while they take at most this
    #: many bytes, and a record reconciliation (§11.7.5) beyond
    records_full_bytes: int = 8192
    #: peer exchange (§11.8): entries per PEERS frame; seconds between
    #: PEERS frames to one random peer; PEERS frames accepted per peer
    #: (rate per second, burst); learned peers held, and per sending peer
    max_peers_per_frame: int = 32
    peers_interval: float = 300.0
    peers_rate: float = 1.0 / 60.0
    peers_burst: float = 4.0
    max_known_peers: int = 1024
    max_learned_peers: int = 1024
    max_learned_per_source: int = 64


@dataclass(frozen=True, slots=True)
class Disconnect:
    peer: PeerId
    reason: str
    until: float  # do not redial before this time


@dataclass(frozen=True, slots=True)
class Pause:
    """Read nothing more from ``peer`` until ``until`` (monotonic): it sends
    events we hold already beyond its allowance (§11.5.2)."""

    peer: PeerId
    until: float


@dataclass(frozen=True, slots=True)
class RoundTrip:
    """``peer`` answered a request of ours after ``seconds`` (for the link
    manager's latency protection, §17.1.1)."""

    peer: PeerId
    seconds: float


@dataclass(frozen=True, slots=True)
class Delivered:
    #: newly accepted, already persisted by the ledger's store
    event: Event
    #: the peer whose frame delivered it; None for local events and for
    #: escrowed events released by a parent's arrival
    source: PeerId | None


@dataclass(frozen=True, slots=True)
class RecordAccepted:
    """A device record newly accepted into ``Replicator.records`` (§11.7)."""

    record: SignedDeviceRecord
    #: the peer that sent it; None for ``publish_record``
    source: PeerId | None


@dataclass(frozen=True, slots=True)
class PeersLearned:
    """Peers a PEERS frame named that the node may dial (§11.8); new or
    with changed addresses.  Not verified: the adapter dials and checks."""

    peers: tuple[PeerEntry, ...]
    source: PeerId = ""
    #: the addresses the sender gave for itself in this frame, new or not
    #: (the adapter may vouch for them, §11.8.1)
    sender_addrs: tuple[str, ...] = ()


Output = (
    Send | Disconnect | Pause | RoundTrip | Delivered | Misbehaved | RecordAccepted | PeersLearned
)


@dataclass(slots=True)
class ReplicationStats:
    frames_sent: int = 0
    bytes_sent: int = 0
    frames_received: int = 0
    bytes_received: int = 0
    #: full events received that were already here (normal with eager push)
    duplicate_events: int = 0
    #: of those, old ones nobody asked for (they spend the peer's allowance)
    duplicates_unsolicited: int = 0
    #: times a peer was paused for sending duplicates beyond its allowance
    duplicate_pauses: int = 0
    events_received: int = 0
    events_delivered: int = 0
    events_escrowed: int = 0
    #: refused by the escrow (full, or over the sender's quota)
    events_dropped: int = 0
    ids_announced: int = 0
    ids_requested: int = 0
    ids_served: int = 0
    ancestry_requests: int = 0
    announced_ids_dropped: int = 0
    reconcile_rounds: int = 0
    reconcile_completed: int = 0
    reconcile_timeouts: int = 0
    #: events we pushed because a reconciliation showed the peer lacks them
    reconcile_pushed: int = 0
    request_timeouts: int = 0
    offences: int = 0
    disconnects: int = 0
    #: device records (§11.7)
    records_received: int = 0
    records_accepted: int = 0
    records_stale: int = 0
    records_ignored: int = 0
    records_pending: int = 0
    records_pruned: int = 0
    records_resent: int = 0
    #: record reconciliation (§11.7.5): sessions started, records pushed
    #: and items requested because of one
    record_sessions: int = 0
    records_pushed: int = 0
    record_items_requested: int = 0
    #: peer exchange (§11.8)
    peers_frames_received: int = 0
    peers_frames_dropped: int = 0
    peers_learned: int = 0
