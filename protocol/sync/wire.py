"""Frames of the replication protocol ``/smu/replication/3`` (PROTOCOL.md §11.2).

A frame is one canonical MessagePack array ``[version, type, ...fields]``.
The transport puts a length prefix in front of each frame and refuses a
length over ``max_frame_bytes`` before reading the body (§11.2.1); this
module checks the size again, then the canonical form, then every field and
every count, so nothing of an invalid frame is used.

Id lists travel as one ``bin`` of concatenated 32-byte ids, ascending and
unique: compact, canonical by construction and cheap to parse.  The ranges
of a RECONCILE frame travel as one ``bin`` too (``reconcile.encode_ranges``):
a msgpack array per range would cost five bytes more each, which is a
quarter of a fingerprint range (§11.3.6).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from enum import IntEnum

from protocol.core.canonical import decode_flat, encode_flat
from protocol.core.errors import SchemaError, SizeLimitError, UnsupportedVersionError
from protocol.core.fields import MAX_PEER_ID_CHARS
from protocol.records.device import MAX_RECORD_BYTES
from protocol.sync.reconcile import (
    ID_BYTES,
    MAX_ROUND,
    Range,
    decode_ranges,
    encode_ranges,
)

PROTOCOL_ID = "/smu/replication/3"
WIRE_VERSION = 1


class FrameType(IntEnum):
    EVENTS = 1
    ANNOUNCE = 2
    REQUEST = 3
    RECONCILE = 4
    ANCESTRY = 5
    RECORDS = 6
    PEERS = 7
    RECORD_REQUEST = 8


#: ReconcileFrame.flags
FLAG_OWN = 1  # the sender started this session (else the receiver did)
FLAG_FINAL = 2  # the last frame of the answer to one frame
FLAG_RECORDS = 4  # the session reconciles device-record items (§11.7.5), not event ids
_FLAG_BITS = 3


@dataclass(frozen=True, slots=True)
class WireLimits:
    max_frame_bytes: int = 256 * 1024
    max_events_per_frame: int = 256
    max_ids_per_frame: int = 8192
    max_ranges_per_frame: int = 8192
    max_ancestry_targets: int = 64
    max_ancestry_known: int = 256
    #: signed device records in one RECORDS frame (§11.7.1)
    max_records_per_frame: int = 64
    #: (peer, addresses) entries in one PEERS frame (§11.8.1)
    max_peers_per_frame: int = 32


@dataclass(frozen=True, slots=True)
class EventsFrame:
    """Full events, parents before children; ``missing`` lists requested
    ids the sender does not hold (only in answers to a request)."""

    events: tuple[bytes, ...]
    missing: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class AnnounceFrame:
    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class RequestFrame:
    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class ReconcileFrame:
    session: int
    flags: int
    ranges: tuple[Range, ...]
    #: the message's round in its session: 1 for the first (§11.3.3)
    round: int = 1

    @property
    def own(self) -> bool:
        return bool(self.flags & FLAG_OWN)

    @property
    def final(self) -> bool:
        return bool(self.flags & FLAG_FINAL)

    @property
    def records(self) -> bool:
        return bool(self.flags & FLAG_RECORDS)


@dataclass(frozen=True, slots=True)
class AncestryFrame:
    """ "Send me ``targets`` and their ancestors, except those that are
    ancestors of ``known`` (ids I hold), parents first" (§11.4.3)."""

    targets: tuple[bytes, ...]
    known: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class RecordsFrame:
    """Signed device records, raw (PROTOCOL.md §16; §11.7)."""

    records: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class RecordRequestFrame:
    """ "Send me the records of these items" (§11.7.5): 32-byte record
    items, ascending."""

    items: tuple[bytes, ...]


#: one PEERS entry: a libp2p peer id and multiaddrs it listens on
PeerEntry = tuple[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class PeersFrame:
    """Peers the sender knows to be reachable, peer ids ascending (§11.8)."""

    peers: tuple[PeerEntry, ...]


Frame = (
    EventsFrame
    | AnnounceFrame
    | RequestFrame
    | ReconcileFrame
    | AncestryFrame
    | RecordsFrame
    | PeersFrame
    | RecordRequestFrame
)

#: a PEERS peer id or address: printable, 1 to 160 characters
MAX_PEER_TEXT = MAX_PEER_ID_CHARS
#: addresses per PEERS entry
MAX_PEER_ADDRS = 8


def _blob(ids: tuple[bytes, ...]) -> bytes:
    return b"".join(sorted(set(ids)))


def encode_frame(frame: Frame) -> bytes:
    match frame:
        case EventsFrame(events, missing):
            return encode_flat([WIRE_VERSION, int(FrameType.EVENTS), list(events), _blob(missing)])
        case AnnounceFrame(ids):
            return encode_flat([WIRE_VERSION, int(FrameType.ANNOUNCE), _blob(ids)])
        case RequestFrame(ids):
            return encode_flat([WIRE_VERSION, int(FrameType.REQUEST), _blob(ids)])
        case AncestryFrame(targets, known):
            return encode_flat(
                [WIRE_VERSION, int(FrameType.ANCESTRY), _blob(targets), _blob(known)]
            )
        case RecordsFrame(records):
            return encode_flat([WIRE_VERSION, int(FrameType.RECORDS), list(records)])
        case RecordRequestFrame(items):
            return encode_flat([WIRE_VERSION, int(FrameType.RECORD_REQUEST), _blob(items)])
        case PeersFrame(peers):
            entries = [[pid, list(addrs)] for pid, addrs in sorted(peers)]
            return encode_flat([WIRE_VERSION, int(FrameType.PEERS), entries])
        case ReconcileFrame(session, flags, ranges, msg_round):
            rs = encode_ranges(ranges)
            return encode_flat(
                [WIRE_VERSION, int(FrameType.RECONCILE), session, flags, msg_round, rs]
            )
    raise TypeError(f"not a frame: {frame!r}")  # pragma: no cover


def _ids(value: object, limits: WireLimits) -> tuple[bytes, ...]:
    if type(value) is not bytes or len(value) % ID_BYTES:
        raise SchemaError("an id list is a bin of 32-byte ids")
    n = len(value) // ID_BYTES
    if n > limits.max_ids_per_frame:
        raise SizeLimitError(f"{n} ids in one frame")
    ids = tuple(value[i * ID_BYTES : (i + 1) * ID_BYTES] for i in range(n))
    for a, b in itertools.pairwise(ids):
        if a >= b:
            raise SchemaError("ids must be ascending and unique")
    return ids


def _uint(value: object, bits: int, what: str) -> int:
    if type(value) is not int or not 0 <= value < (1 << bits):
        raise SchemaError(f"{what} must be an unsigned {bits}-bit integer")
    return value


def _text(value: object, what: str) -> str:
    if type(value) is not str or not 0 < len(value) <= MAX_PEER_TEXT or not value.isprintable():
        raise SchemaError(f"{what}: printable text of 1 to {MAX_PEER_TEXT} characters")
    return value


def _peers(value: object, limits: WireLimits) -> PeersFrame:
    if type(value) is not list:
        raise SchemaError("PEERS is [1, 7, [[peer id, [addr...]]...]]")
    if not value or len(value) > limits.max_peers_per_frame:
        raise SizeLimitError(f"{len(value)} entries in one PEERS frame")
    peers: list[PeerEntry] = []
    for item in value:
        if type(item) is not list or len(item) != 2 or type(item[1]) is not list:
            raise SchemaError("a PEERS entry is [peer id, [addr...]]")
        pid = _text(item[0], "peer id")
        raw_addrs = item[1]
        if not raw_addrs or len(raw_addrs) > MAX_PEER_ADDRS:
            raise SizeLimitError(f"{len(raw_addrs)} addresses in one PEERS entry")
        addrs = tuple(_text(a, "address") for a in raw_addrs)
        if len(set(addrs)) != len(addrs) or any(not a.startswith("/") for a in addrs):
            raise SchemaError("PEERS addresses are unique multiaddrs")
        peers.append((pid, addrs))
    for a, b in itertools.pairwise(peers):
        if a[0] >= b[0]:
            raise SchemaError("PEERS peer ids must be ascending and unique")
    return PeersFrame(tuple(peers))


def decode_frame(data: bytes, limits: WireLimits = WireLimits()) -> Frame:
    """Parse and check one frame; every failure is an ``InvalidInput``."""
    if len(data) > limits.max_frame_bytes:
        raise SizeLimitError(f"frame of {len(data)} bytes over {limits.max_frame_bytes}")
    value = decode_flat(data, limits.max_frame_bytes)
    if type(value) is not list or len(value) < 2:
        raise SchemaError("a frame is an array [version, type, ...]")
    if value[0] != WIRE_VERSION or type(value[0]) is not int:
        raise UnsupportedVersionError(f"frame version {value[0]!r}")
    try:
        ftype = FrameType(_uint(value[1], 8, "frame type"))
    except ValueError as exc:
        raise SchemaError(f"unknown frame type {value[1]!r}") from exc
    if ftype is FrameType.EVENTS:
        if len(value) != 4 or type(value[2]) is not list:
            raise SchemaError("EVENTS is [1, 1, [event...], missing]")
        events = value[2]
        if len(events) > limits.max_events_per_frame:
            raise SizeLimitError(f"{len(events)} events in one frame")
        if any(type(e) is not bytes for e in events):
            raise SchemaError("an event is a bin")
        return EventsFrame(tuple(events), _ids(value[3], limits))
    if ftype is FrameType.ANNOUNCE or ftype is FrameType.REQUEST:
        if len(value) != 3:
            raise SchemaError("ANNOUNCE and REQUEST are [1, type, ids]")
        ids = _ids(value[2], limits)
        return AnnounceFrame(ids) if ftype is FrameType.ANNOUNCE else RequestFrame(ids)
    if ftype is FrameType.ANCESTRY:
        if len(value) != 4:
            raise SchemaError("ANCESTRY is [1, 5, targets, known]")
        targets = _ids(value[2], limits)
        known = _ids(value[3], limits)
        if not targets or len(targets) > limits.max_ancestry_targets:
            raise SizeLimitError(f"{len(targets)} ancestry targets")
        if len(known) > limits.max_ancestry_known:
            raise SizeLimitError(f"{len(known)} known ids")
        return AncestryFrame(targets, known)
    if ftype is FrameType.RECORDS:
        if len(value) != 3 or type(value[2]) is not list:
            raise SchemaError("RECORDS is [1, 6, [record bin...]]")
        records = value[2]
        if not records or len(records) > limits.max_records_per_frame:
            raise SizeLimitError(f"{len(records)} records in one frame")
        if any(type(r) is not bytes for r in records):
            raise SchemaError("a record is a bin")
        if any(len(r) > MAX_RECORD_BYTES for r in records):
            raise SizeLimitError(f"a device record is at most {MAX_RECORD_BYTES} bytes")
        return RecordsFrame(tuple(records))
    if ftype is FrameType.PEERS:
        if len(value) != 3:
            raise SchemaError("PEERS is [1, 7, [[peer id, [addr...]]...]]")
        return _peers(value[2], limits)
    if ftype is FrameType.RECORD_REQUEST:
        if len(value) != 3:
            raise SchemaError("RECORD_REQUEST is [1, 8, items]")
        items = _ids(value[2], limits)
        if not items:
            raise SizeLimitError("a RECORD_REQUEST names at least one item")
        return RecordRequestFrame(items)
    if len(value) != 6 or type(value[5]) is not bytes:
        raise SchemaError("RECONCILE is [1, 4, session, flags, round, ranges]")
    session = _uint(value[2], 32, "session")
    flags = _uint(value[3], _FLAG_BITS, "flags")
    msg_round = _uint(value[4], 8, "round")
    if not 1 <= msg_round <= MAX_ROUND:
        raise SchemaError("a round is 1 to 255")
    ranges = decode_ranges(value[5], limits.max_ranges_per_frame, limits.max_ids_per_frame)
    return ReconcileFrame(session, flags, ranges, msg_round)
