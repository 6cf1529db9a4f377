"""Range-based set reconciliation over 256-bit ids (PROTOCOL.md §11.3).

Two nodes compare their sets of accepted event ids (or of device-record
items, §11.7.5) by exchanging *ranges* of the sorted id space.  For each
range a message carries one of

* ``SKIP`` – nothing to do here;
* ``FP``   – the sender's fingerprint of its ids in the range;
* ``IDS``  – the *short ids* of all the sender's ids in the range;
* ``HAVE`` – ids the sender holds and the receiver lacks, for the receiver
  to fetch, and short ids of the receiver's that the sender lacks, for the
  receiver to push (the answer to ``IDS``).

A receiver compares fingerprints and splits ranges that differ, until a
range holds few enough ids to list, so the bytes exchanged follow the size
of the difference, not of the set (the idea of negentropy).

*When to list, and into how many parts to split* (§11.3.3): every message
of a session has a *round*, 1 for the first.  A differing range is listed
once its sender holds at most ``list_threshold`` ids in it, and always in
round ``list_round``; before that it is split into the fewest equal parts
that let the rounds left bring each part down to ``list_threshold`` ids.
So lists arrive by round ``list_round`` (4) whatever the sizes.

*Who sends what* (§11.3.3): a short id is 8 bytes of a keyed hash of the
id, salted with the session, so a list costs a quarter of the ids and no
collision can be ground in advance.  The receiver of a list learns the
difference in that range in both directions: it pushes what the lister
lacks, and answers with the short ids it lacks, which the lister pushes.
A frame's pushes happen only if they fit a limit, all of them; else
they all travel as full ids with ranks in a HAVE (the event's position in
the sender's account log, so the receiver of a large difference, a
catch-up, fetches parents first, §11.3.1).  Pushes inside a range a session
left open are solicited (§11.5.2).

The fingerprint of a range is BLAKE2b-128 over a domain label, the sum of
the ids (as big-endian integers) modulo 2^256 and the count (§11.3.2).  It
is not XOR and not a sum of few bits, and ids are themselves hashes that an
attacker would have to grind with proof-of-work, so two different sets with
the same fingerprint are out of reach.

Everything here is pure: ``IdIndex`` is the sorted structure, ``initiate``
and ``respond`` turn ranges into ranges, ``encode_ranges`` and
``decode_ranges`` are their wire form (§11.2.1).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import IntEnum

from protocol.core import crypto
from protocol.core.errors import SchemaError, SizeLimitError

ID_BYTES = 32
FP_BYTES = 16
SHORT_BYTES = 8
#: a HAVE entry: 32-byte id, then its rank as 2 bytes big-endian (§11.3.1)
RANK_BYTES = 2
ENTRY_BYTES = ID_BYTES + RANK_BYTES
MAX_RANK = (1 << (8 * RANK_BYTES)) - 1
MOD = 1 << 256
#: exclusive upper end of the id space; encoded as the empty bound
INF = MOD
#: the largest round; an answer to a message of this round keeps it
MAX_ROUND = 255

# Ids are kept in blocks of at most 2*_BLOCK sorted integers, each block
# with its sum; prefix sums over blocks are rebuilt lazily after inserts, so
# a range fingerprint costs O(blocks) once and O(_BLOCK) per query after.
_BLOCK = 256


@dataclass(frozen=True, slots=True)
class SetKind:
    """The labels of one reconciled set: its fingerprints and short ids
    (§11.3.2) are domain-separated from every other set's."""

    fp_label: bytes
    short_label: bytes


EVENT_IDS = SetKind(b"smu/reconcile-fp/v1\x00", b"smu/reconcile-short/v1\x00")
RECORD_ITEMS = SetKind(b"smu/record-fp/v1\x00", b"smu/record-short/v1\x00")


class Mode(IntEnum):
    SKIP = 0
    FP = 1
    IDS = 2
    HAVE = 3


@dataclass(frozen=True, slots=True)
class Range:
    """One range of a reconciliation message: ``[previous upper, upper)``.

    ``upper`` is a bound as sent on the wire (§11.3.1): 0–32 bytes whose
    last byte is not zero, read as a big-endian number right-padded with
    zeros to 32 bytes; the empty bound is the end of the id space.
    ``payload`` is the range's payload as on the wire (§11.2.1).
    """

    upper: bytes
    mode: Mode
    payload: bytes = b""


def bound_value(bound: bytes) -> int:
    if not bound:
        return INF
    return int.from_bytes(bound.ljust(ID_BYTES, b"\x00"), "big")


def check_bound(bound: bytes) -> None:
    if len(bound) > ID_BYTES or (bound and bound[-1] == 0):
        raise SchemaError("a range bound is 0-32 bytes and does not end in a zero byte")


def separating_bound(below: int, above: int) -> bytes:
    """The shortest bound ``b`` with ``below < value(b) <= above``."""
    a = below.to_bytes(ID_BYTES, "big")
    b = above.to_bytes(ID_BYTES, "big")
    n = 0
    while a[n] == b[n]:
        n += 1
    return b[: n + 1]


def fingerprint(total: int, count: int, kind: SetKind = EVENT_IDS) -> bytes:
    """§11.3.2: BLAKE2b-128(label || sum mod 2^256 (32 bytes LE) || count (8 bytes LE))."""
    data = (total % MOD).to_bytes(32, "little") + count.to_bytes(8, "little")
    return crypto.hash_with(kind.fp_label, data, FP_BYTES)


def session_salt(session: int) -> bytes:
    """The salt of a session's short ids: its id, 4 bytes big-endian."""
    return session.to_bytes(4, "big")


def short_id(kind: SetKind, salt: bytes, value: int) -> bytes:
    """§11.3.2: BLAKE2b-64(short label || salt || id)."""
    data = kind.short_label + salt + value.to_bytes(ID_BYTES, "big")
    return hashlib.blake2b(data, digest_size=SHORT_BYTES).digest()


# -- varints and payloads (§11.2.1) ------------------------------------------------


def put_varint(value: int) -> bytes:
    """Unsigned LEB128: 7 bits per byte, least significant first."""
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def get_varint(data: bytes, pos: int, limit: int) -> tuple[int, int]:
    """Read a varint at ``pos``; (value, position after it).  Truncated,
    longer than its shortest form, or over ``limit``: ``SchemaError``."""
    value = shift = 0
    start = pos
    while True:
        if pos >= len(data) or pos - start >= 5:
            raise SchemaError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if byte == 0 and pos - start > 1:
                raise SchemaError("varint not in its shortest form")
            if value > limit:
                raise SchemaError(f"varint {value} over {limit}")
            return value, pos
        shift += 7


#: the rank of an id: its position in the sender's account log (§11.3.1)
Ranker = Callable[[int], int]


def no_rank(_: int) -> int:
    """For sets without a DAG behind them (records, tests, benchmarks)."""
    return 0


def shorts_to_blob(shorts: Iterable[bytes]) -> bytes:
    """A short-id list: the count, then the 8-byte short ids ascending."""
    items = sorted(set(shorts))
    return put_varint(len(items)) + b"".join(items)


def entries_to_blob(ids: Iterable[int], rank: Ranker) -> bytes:
    """A ranked id list: the count, then each id and its rank capped at
    ``MAX_RANK`` as 2 bytes big-endian."""
    items = list(ids)
    body = b"".join(
        i.to_bytes(ID_BYTES, "big") + min(rank(i), MAX_RANK).to_bytes(RANK_BYTES, "big")
        for i in items
    )
    return put_varint(len(items)) + body


def have_payload(ids: Iterable[int], rank: Ranker, shorts: Iterable[bytes] = ()) -> bytes:
    """HAVE: ranked ids the sender holds for the receiver to fetch, then
    short ids of the receiver's that the sender lacks."""
    return entries_to_blob(ids, rank) + shorts_to_blob(shorts)


def _list_end(data: bytes, pos: int, size: int, max_items: int) -> tuple[int, int]:
    """A counted list of ``size``-byte items at ``pos``: (count, end);
    more than ``max_items`` is a ``SizeLimitError`` before any is read."""
    count, pos = get_varint(data, pos, len(data))
    if count > max_items:
        raise SizeLimitError(f"{count} listed ids over the frame's limit")
    end = pos + count * size
    if end > len(data):
        raise SchemaError("truncated id list")
    return count, end


def parse_shorts(blob: bytes, pos: int = 0) -> tuple[list[bytes], int]:
    """A short-id list at ``pos``: the ids (strictly ascending) and the end."""
    count, end = _list_end(blob, pos, SHORT_BYTES, len(blob))
    start = end - count * SHORT_BYTES
    shorts = [blob[i : i + SHORT_BYTES] for i in range(start, end, SHORT_BYTES)]
    for i in range(1, len(shorts)):
        if shorts[i - 1] >= shorts[i]:
            raise SchemaError("short ids must be ascending and unique")
    return shorts, end


def parse_entries(
    blob: bytes, pos: int = 0, lower: int = 0, upper: int = INF
) -> tuple[list[tuple[int, int]], int]:
    """A ranked id list at ``pos``: (id, rank) pairs and the end; the ids
    must be ascending, unique and inside ``[lower, upper)``."""
    count, end = _list_end(blob, pos, ENTRY_BYTES, len(blob))
    out: list[tuple[int, int]] = []
    prev = lower - 1
    for i in range(end - count * ENTRY_BYTES, end, ENTRY_BYTES):
        v = int.from_bytes(blob[i : i + ID_BYTES], "big")
        if v <= prev:
            raise SchemaError("ids must be ascending and unique")
        prev = v
        out.append((v, int.from_bytes(blob[i + ID_BYTES : i + ENTRY_BYTES], "big")))
    if out and out[-1][0] >= upper:
        raise SchemaError("an id lies outside its range")
    return out, end


def parse_have(
    blob: bytes, lower: int = 0, upper: int = INF
) -> tuple[list[tuple[int, int]], list[bytes]]:
    entries, pos = parse_entries(blob, 0, lower, upper)
    shorts, pos = parse_shorts(blob, pos)
    if pos != len(blob):
        raise SchemaError("bytes after a HAVE payload")
    return entries, shorts


def parse_ids(blob: bytes) -> list[bytes]:
    shorts, pos = parse_shorts(blob)
    if pos != len(blob):
        raise SchemaError("bytes after a short-id list")
    return shorts


# -- wire form of a range list (§11.2.1) ----------------------------------------


def encode_ranges(ranges: Iterable[Range]) -> bytes:
    """Each range: one byte ``mode << 6 | len(bound)``, the bound, the payload."""
    return b"".join(bytes([r.mode << 6 | len(r.upper)]) + r.upper + r.payload for r in ranges)


def decode_ranges(data: bytes, max_ranges: int, max_ids: int) -> tuple[Range, ...]:
    """Parse a range list; checks every bound and payload size and the
    counts before anything is used (``SchemaError``, ``SizeLimitError``).
    Order of bounds and order inside lists are checked by ``respond``."""
    ranges: list[Range] = []
    pos = 0
    budget = max_ids
    while pos < len(data):
        if len(ranges) >= max_ranges:
            raise SizeLimitError(f"more than {max_ranges} ranges in one frame")
        head = data[pos]
        mode, size = Mode(head >> 6), head & 0x3F
        pos += 1
        upper = data[pos : pos + size]
        if len(upper) != size:
            raise SchemaError("truncated range bound")
        check_bound(upper)
        pos += size
        if mode is Mode.SKIP:
            end = pos
        elif mode is Mode.FP:
            end = pos + FP_BYTES
            if end > len(data):
                raise SchemaError("a fingerprint is 16 bytes")
        elif mode is Mode.IDS:
            count, end = _list_end(data, pos, SHORT_BYTES, budget)
            budget -= count
        else:
            count, mid = _list_end(data, pos, ENTRY_BYTES, budget)
            budget -= count
            count, end = _list_end(data, mid, SHORT_BYTES, budget)
            budget -= count
        ranges.append(Range(upper, mode, data[pos:end]))
        pos = end
    if not ranges:
        raise SizeLimitError("a reconciliation message has at least one range")
    return tuple(ranges)


def range_cost(r: Range) -> int:
    """A range's encoded size (§11.2.1)."""
    return 1 + len(r.upper) + len(r.payload)


# -- the sorted index ------------------------------------------------------------


class IdIndex:
    """A sorted set of 256-bit ids with fast range counts and sums."""

    def __init__(self, ids: Iterable[bytes] = (), kind: SetKind = EVENT_IDS) -> None:
        self.kind = kind
        values = sorted({int.from_bytes(i, "big") for i in ids})
        self._blocks: list[list[int]] = [
            values[i : i + _BLOCK] for i in range(0, len(values), _BLOCK)
        ]
        self._sums: list[int] = [sum(b) for b in self._blocks]
        self._maxes: list[int] = [b[-1] for b in self._blocks]
        self._len = len(values)
        self._pcount: list[int] | None = None
        self._psum: list[int] | None = None

    def __len__(self) -> int:
        return self._len

    def __contains__(self, event_id: bytes) -> bool:
        return self.contains_int(int.from_bytes(event_id, "big"))

    def contains_int(self, v: int) -> bool:
        bi = bisect_left(self._maxes, v)
        if bi == len(self._blocks):
            return False
        block = self._blocks[bi]
        j = bisect_left(block, v)
        return j < len(block) and block[j] == v

    def add(self, event_id: bytes) -> bool:
        """Insert; False if already present."""
        v = int.from_bytes(event_id, "big")
        if not self._blocks:
            self._blocks.append([v])
            self._sums.append(v)
            self._maxes.append(v)
        else:
            bi = min(bisect_left(self._maxes, v), len(self._blocks) - 1)
            block = self._blocks[bi]
            j = bisect_left(block, v)
            if j < len(block) and block[j] == v:
                return False
            insort(block, v)
            self._sums[bi] += v
            self._maxes[bi] = block[-1]
            if len(block) > 2 * _BLOCK:
                half = block[_BLOCK:]
                del block[_BLOCK:]
                self._blocks.insert(bi + 1, half)
                self._sums[bi] = sum(block)
                self._sums.insert(bi + 1, sum(half))
                self._maxes[bi] = block[-1]
                self._maxes.insert(bi + 1, half[-1])
        self._len += 1
        self._pcount = self._psum = None
        return True

    def _prefix(self) -> tuple[list[int], list[int]]:
        if self._pcount is None or self._psum is None:
            pc, ps = [0], [0]
            for block, s in zip(self._blocks, self._sums, strict=True):
                pc.append(pc[-1] + len(block))
                ps.append(ps[-1] + s)
            self._pcount, self._psum = pc, ps
        return self._pcount, self._psum

    def rank(self, v: int) -> int:
        """Number of ids strictly below ``v``."""
        if v >= INF:
            return self._len
        pc, _ = self._prefix()
        bi = bisect_left(self._maxes, v)
        if bi == len(self._blocks):
            return self._len
        return pc[bi] + bisect_left(self._blocks[bi], v)

    def _locate(self, r: int) -> tuple[int, int]:
        pc, _ = self._prefix()
        bi = bisect_right(pc, r) - 1
        return bi, r - pc[bi]

    def at(self, r: int) -> int:
        bi, off = self._locate(r)
        return self._blocks[bi][off]

    def prefix_sum(self, r: int) -> int:
        if r <= 0:
            return 0
        _, ps = self._prefix()
        if r >= self._len:
            return ps[-1]
        bi, off = self._locate(r)
        return ps[bi] + sum(self._blocks[bi][:off])

    def fingerprint(self, lo: int, hi: int) -> bytes:
        """Fingerprint of the ids of rank ``lo`` to ``hi`` (exclusive)."""
        return fingerprint(self.prefix_sum(hi) - self.prefix_sum(lo), hi - lo, self.kind)

    def slice(self, lo: int, hi: int) -> Iterator[int]:
        if lo >= hi:
            return
        bi, off = self._locate(lo)
        left = hi - lo
        while left > 0:
            block = self._blocks[bi]
            part = block[off : off + left]
            yield from part
            left -= len(part)
            bi += 1
            off = 0

    def values(self) -> Iterator[int]:
        for block in self._blocks:
            yield from block


# -- the rule: list or split (§11.3.3) -------------------------------------------


@dataclass(frozen=True, slots=True)
class ReconcileConfig:
    #: a differing range is listed once its sender holds at most this many
    #: ids in it; splits aim at parts of this size by round ``list_round``
    list_threshold: int = 32
    #: the round in which every differing range is listed (§11.3.3)
    list_round: int = 4
    #: most parts one range is split into
    max_branching: int = 1024
    #: short ids listed in one IDS range; longer lists are cut into several ranges
    max_ids_per_range: int = 4096


def split_parts(count: int, msg_round: int, cfg: ReconcileConfig) -> int:
    """How the sender of a message of round ``msg_round`` describes a
    differing range where it holds ``count`` ids: 0 to list them, else the
    number of equal parts to split it into -- the least ``b >= 2`` with
    ``b ** (list_round - msg_round) * list_threshold >= count`` (§11.3.3)."""
    if count <= cfg.list_threshold or msg_round >= cfg.list_round:
        return 0
    left = cfg.list_round - msg_round
    b = 2
    while b**left * cfg.list_threshold < count and b < cfg.max_branching:
        b += 1
    return min(b, count)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one incoming message leads to."""

    reply: tuple[Range, ...]
    #: ids the peer holds and we lack: fetch them
    need: tuple[bytes, ...]
    #: the rank the peer gave each id of ``need`` (same order): fetch the
    #: lowest first, and parents come before their children
    ranks: tuple[int, ...]
    #: whether the message had to be answered (FP, IDS, or HAVE with short ids)
    wants_reply: bool
    #: ids we hold that the peer lacks: push them now (§11.3.3); ascending
    give: tuple[bytes, ...] = ()


def needs_reply(ranges: Iterable[Range]) -> bool:
    """FP and IDS ranges, and HAVE ranges that ask for pushes, are answered."""
    return any(r.mode in (Mode.FP, Mode.IDS) or _asks(r) for r in ranges)


def _asks(r: Range) -> bool:
    """A HAVE whose short-id list is not empty: it asks for pushes."""
    if r.mode is not Mode.HAVE:
        return False
    try:
        count, pos = get_varint(r.payload, 0, len(r.payload))
        asked, _ = get_varint(r.payload, pos + count * ENTRY_BYTES, len(r.payload))
    except SchemaError:
        return False
    return asked > 0


def open_spans(ranges: Iterable[Range]) -> list[tuple[int, int]]:
    """The ``[lower, upper)`` of every range of a message that invites the
    peer's pushes (IDS, and HAVE with short ids): open until the message's
    final answer arrives (§11.5.2)."""
    spans: list[tuple[int, int]] = []
    lower = 0
    for r in ranges:
        upper = bound_value(r.upper)
        if r.mode is Mode.IDS or _asks(r):
            spans.append((lower, upper))
        lower = upper
    return spans


class _Builder:
    """Accumulates output ranges, merging adjacent SKIPs and adjacent IDS
    lists (the short ids of all our ids in two neighbouring ranges are those
    of all our ids in their union)."""

    def __init__(self, cfg: ReconcileConfig, kind: SetKind, salt: bytes) -> None:
        self.cfg = cfg
        self.kind = kind
        self.salt = salt
        self.out: list[Range] = []
        # the IDS list being built: its short ids and its upper bound
        self._ids: tuple[list[bytes], bytes] | None = None

    def _flush(self) -> None:
        if self._ids is not None:
            shorts, upper = self._ids
            self.out.append(Range(upper, Mode.IDS, shorts_to_blob(shorts)))
            self._ids = None

    def add(self, r: Range) -> None:
        self._flush()
        if r.mode is Mode.SKIP and self.out and self.out[-1].mode is Mode.SKIP:
            self.out[-1] = r
        else:
            self.out.append(r)

    def skip(self, upper: bytes) -> None:
        self.add(Range(upper, Mode.SKIP))

    def listing(self, ids: list[int], upper: bytes) -> None:
        """The short ids of ``ids`` (ascending, all in the current range) as
        IDS ranges ending at ``upper``, cut so none lists more than the maximum."""
        step = self.cfg.max_ids_per_range
        shorts = [short_id(self.kind, self.salt, v) for v in ids]
        if self._ids is not None and len(self._ids[0]) + len(ids) <= step:
            self._ids = (self._ids[0] + shorts, upper)
            return
        self._flush()
        for start in range(0, max(len(ids), 1), step):
            end = start + step
            if end < len(ids):
                sub_upper = separating_bound(ids[end - 1], ids[end])
                self.out.append(Range(sub_upper, Mode.IDS, shorts_to_blob(shorts[start:end])))
            else:
                self._ids = (shorts[start:], upper)

    def ranges(self) -> tuple[Range, ...]:
        self._flush()
        return tuple(self.out)


def _split(b: _Builder, index: IdIndex, lo: int, hi: int, upper: bytes, parts: int) -> None:
    """Split the ids of ranks [lo, hi) into ``parts`` FP ranges of equal count."""
    count = hi - lo
    cuts = [lo + count * k // parts for k in range(parts + 1)]
    for k in range(parts):
        a, z = cuts[k], cuts[k + 1]
        sub_upper = separating_bound(index.at(z - 1), index.at(z)) if k + 1 < parts else upper
        b.add(Range(sub_upper, Mode.FP, index.fingerprint(a, z)))


def _describe(b: _Builder, index: IdIndex, lo: int, hi: int, upper: bytes, msg_round: int) -> None:
    """Describe our ids of ranks [lo, hi) in a message of ``msg_round``."""
    parts = split_parts(hi - lo, msg_round, b.cfg)
    if parts == 0:
        b.listing(list(index.slice(lo, hi)), upper)
    else:
        _split(b, index, lo, hi, upper, parts)


def initiate(
    index: IdIndex, salt: bytes, cfg: ReconcileConfig = ReconcileConfig()
) -> tuple[Range, ...]:
    """The first message of a session (round 1): our whole set, described."""
    b = _Builder(cfg, index.kind, salt)
    _describe(b, index, 0, len(index), b"", 1)
    return b.ranges()


def respond(
    index: IdIndex,
    ranges: Iterable[Range],
    salt: bytes,
    cfg: ReconcileConfig = ReconcileConfig(),
    rank: Ranker = no_rank,
    msg_round: int = 1,
    push_limit: int = 0,
) -> Outcome:
    """Process one message of round ``msg_round`` (§11.3.3); the reply is of
    the next round.  The ranges must cover the id space in order and end
    with the empty bound; ``SchemaError`` otherwise.  ``salt`` is the
    session's (short ids); ``rank`` ranks the ids we put in HAVE (§11.3.1).
    Ids the peer lacks are ``give``n if they are at most ``push_limit`` in
    all; else none is, and all go in HAVE for the peer to fetch by rank."""
    reply_round = min(msg_round + 1, MAX_ROUND)
    kind = index.kind
    # first the differences, range by range; then the reply, once we know
    # whether everything the peer lacks fits the push limit
    plan: list[tuple[Range, int, int, list[int], set[bytes]]] = []
    need: list[tuple[int, int]] = []
    lacking_total = 0
    lower = 0
    wants = False
    last_upper: bytes | None = None
    for r in ranges:
        if last_upper == b"":
            raise SchemaError("a range follows the end of the id space")
        check_bound(r.upper)
        upper = bound_value(r.upper)
        if upper <= lower:
            raise SchemaError("range bounds must increase")
        lo, hi = index.rank(lower), index.rank(upper)
        lacking: list[int] = []
        wanted: set[bytes] = set()
        if r.mode is Mode.SKIP:
            if r.payload:
                raise SchemaError("a SKIP range has no payload")
        elif r.mode is Mode.FP:
            wants = True
            if len(r.payload) != FP_BYTES:
                raise SchemaError("a fingerprint is 16 bytes")
        elif r.mode is Mode.IDS:
            # their short ids: push ours they lack, ask for theirs we lack
            wants = True
            wanted = set(parse_ids(r.payload))
            matched: set[bytes] = set()
            for v in index.slice(lo, hi):
                short = short_id(kind, salt, v)
                if short in wanted:
                    matched.add(short)
                else:
                    lacking.append(v)
            wanted -= matched
        else:  # HAVE: fetch its ids, push ours it asks for by short id
            entries, asked = parse_have(r.payload, lower, upper)
            need.extend(e for e in entries if not index.contains_int(e[0]))
            if asked:
                wants = True
                asked_set = set(asked)
                lacking = [v for v in index.slice(lo, hi) if short_id(kind, salt, v) in asked_set]
        lacking_total += len(lacking)
        plan.append((r, lo, hi, lacking, wanted))
        lower = upper
        last_upper = r.upper
    if last_upper != b"":
        raise SchemaError("ranges must end with the end of the id space")
    push = lacking_total <= push_limit
    b = _Builder(cfg, kind, salt)
    given: list[int] = []
    for r, lo, hi, lacking, wanted in plan:
        if r.mode is Mode.FP and index.fingerprint(lo, hi) != r.payload:
            _describe(b, index, lo, hi, r.upper, reply_round)
            continue
        if push:
            given.extend(lacking)
            lacking = []
        if lacking or wanted:
            b.add(Range(r.upper, Mode.HAVE, have_payload(lacking, rank, wanted)))
        else:
            b.skip(r.upper)
    return Outcome(
        b.ranges(),
        tuple(v.to_bytes(ID_BYTES, "big") for v, _ in need),
        tuple(r for _, r in need),
        wants,
        tuple(v.to_bytes(ID_BYTES, "big") for v in sorted(given)),
    )


def _cut_have(r: Range, budget: int, max_ids: int) -> list[Range]:
    """A HAVE too large for one frame, as HAVEs over the same bounds that
    each fit one (§11.3.4): its ids in parts, then its short ids alone."""
    entries, pos = parse_entries(r.payload)
    asked, _ = parse_shorts(r.payload, pos)
    per = max(1, min(max_ids, (budget - 64) // ENTRY_BYTES))
    parts = []
    for start in range(0, len(entries), per):
        part = entries[start : start + per]
        body = entries_to_blob((v for v, _ in part), dict(part).__getitem__)
        parts.append(Range(r.upper, Mode.HAVE, body + b"\x00"))
    if asked:
        parts.append(Range(r.upper, Mode.HAVE, b"\x00" + shorts_to_blob(asked)))
    return parts


def listed_items(r: Range) -> int:
    """Ids and short ids a range lists (counted against ``max_ids_per_frame``)."""
    if r.mode is Mode.IDS:
        return get_varint(r.payload, 0, len(r.payload))[0]
    if r.mode is Mode.HAVE:
        count, pos = get_varint(r.payload, 0, len(r.payload))
        return count + get_varint(r.payload, pos + count * ENTRY_BYTES, len(r.payload))[0]
    return 0


def chunk(
    ranges: tuple[Range, ...], max_bytes: int, max_ranges: int, max_ids: int = 1 << 62
) -> list[tuple[Range, ...]]:
    """Cut a message into several that each cover the whole id space.

    Each piece keeps a run of the original ranges and SKIPs the rest, so the
    receiver handles pieces independently and in any order (§11.3.4).
    ``max_bytes`` bounds a piece's encoded ranges, ``max_ids`` the ids and
    short ids it lists.  A HAVE too large for a piece of its own is cut into
    HAVEs over the same bounds, each in a piece of its own.
    """
    if not ranges:
        return [(Range(b"", Mode.SKIP),)]
    # room for the SKIPs around a run: a head byte and a bound each
    budget0 = max_bytes - 2 * (1 + ID_BYTES)
    flat: list[Range] = []
    for r in ranges:
        if r.mode is Mode.HAVE and (range_cost(r) > budget0 or listed_items(r) > max_ids):
            flat.extend(_cut_have(r, budget0, max_ids))
        else:
            flat.append(r)
    pieces: list[tuple[Range, ...]] = []
    start = 0
    while start < len(flat):
        budget, ids = budget0, max_ids
        end = start
        while end < len(flat) and end - start < max_ranges - 2:
            cost, n = range_cost(flat[end]), listed_items(flat[end])
            if end > start and (cost > budget or n > ids or flat[end].upper == flat[end - 1].upper):
                break
            budget -= cost
            ids -= n
            end += 1
        piece: list[Range] = []
        if start > 0 and flat[start - 1].upper != flat[start].upper:
            piece.append(Range(flat[start - 1].upper, Mode.SKIP))
        elif start > 0:
            # a cut HAVE: the range before it ends where the one before that did
            k = start - 1
            while k >= 0 and flat[k].upper == flat[start].upper:
                k -= 1
            if k >= 0:
                piece.append(Range(flat[k].upper, Mode.SKIP))
        piece.extend(flat[start:end])
        if end < len(flat) and piece[-1].upper != b"":
            piece.append(Range(b"", Mode.SKIP))
        merged: list[Range] = []
        for r in piece:
            if r.mode is Mode.SKIP and merged and merged[-1].mode is Mode.SKIP:
                merged[-1] = r
            else:
                merged.append(r)
        pieces.append(tuple(merged))
        start = end
    return pieces
