"""Range-based set reconciliation over event ids (PROTOCOL.md §11.3).

Two nodes compare their sets of accepted event ids by exchanging *ranges*
of the sorted 256-bit id space.  For each range a message carries one of

* ``SKIP``  – nothing to do here;
* ``FP``    – the sender's fingerprint of its ids in the range;
* ``IDS``   – the sender's complete list of ids in the range;
* ``HAVE``  – ids in the range that the sender holds and the receiver
  lacks (the answer to ``IDS``).

Listed ids carry a *rank*, the event's position in the sender's account
log, so the receiver can fetch what it lacks parents first (§11.3.1).

A receiver compares fingerprints and splits ranges that differ into
``branching`` sub-ranges, until a range holds few enough ids to list, so the
bytes exchanged follow the size of the difference, not of the set (the idea
of negentropy, simplified to a symmetric, stateless exchange).

The fingerprint of a range is BLAKE2b-128 over a domain label, the sum of
the ids (as big-endian integers) modulo 2^256 and the count (§11.3.2).  It
is not XOR and not a sum of few bits, and ids are themselves hashes that an
attacker would have to grind with proof-of-work, so two different sets with
the same fingerprint are out of reach.

Everything here is pure: ``IdIndex`` is the sorted structure, ``initiate``
and ``respond`` turn ranges into ranges.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import IntEnum

from protocol.core import crypto
from protocol.core.errors import SchemaError

ID_BYTES = 32
FP_BYTES = 16
#: a listed id: 32-byte id, then its rank as 2 bytes big-endian (§11.3.1)
RANK_BYTES = 2
ENTRY_BYTES = ID_BYTES + RANK_BYTES
MAX_RANK = (1 << (8 * RANK_BYTES)) - 1
MOD = 1 << 256
#: exclusive upper end of the id space; encoded as the empty bound
INF = MOD
D_RECONCILE_FP = b"smu/reconcile-fp/v1\x00"

# Ids are kept in blocks of at most 2*_BLOCK sorted integers, each block
# with its sum; prefix sums over blocks are rebuilt lazily after inserts, so
# a range fingerprint costs O(blocks) once and O(_BLOCK) per query after.
_BLOCK = 256


class Mode(IntEnum):
    SKIP = 0
    FP = 1
    IDS = 2
    HAVE = 3


@dataclass(frozen=True, slots=True)
class Range:
    """One range of a reconciliation message: ``[previous upper, upper)``.

    ``upper`` is a bound as sent on the wire (§11.3.1): 1–32 bytes whose
    last byte is not zero, read as a big-endian number right-padded with
    zeros to 32 bytes; the empty bound is the end of the id space.
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


def fingerprint(total: int, count: int) -> bytes:
    """§11.3.2: BLAKE2b-128(label || sum mod 2^256 (32 bytes LE) || count (8 bytes LE))."""
    data = (total % MOD).to_bytes(32, "little") + count.to_bytes(8, "little")
    return crypto.hash_with(D_RECONCILE_FP, data, FP_BYTES)


#: the rank of an id: its position in the sender's account log (§11.3.1)
Ranker = Callable[[int], int]


def no_rank(_: int) -> int:
    """For sets without a DAG behind them (tests, benchmarks)."""
    return 0


def entries_to_blob(ids: Iterable[int], rank: Ranker) -> bytes:
    """A ranked id list: each id, then its rank capped at ``MAX_RANK``."""
    return b"".join(
        i.to_bytes(ID_BYTES, "big") + min(rank(i), MAX_RANK).to_bytes(RANK_BYTES, "big")
        for i in ids
    )


def blob_to_entries(blob: bytes, lower: int = 0, upper: int = INF) -> list[tuple[int, int]]:
    """Parse a ranked id list into (id, rank); the ids must be ascending,
    unique and inside the range."""
    if len(blob) % ENTRY_BYTES:
        raise SchemaError(f"a ranked id list is a multiple of {ENTRY_BYTES} bytes")
    out = [
        (
            int.from_bytes(blob[i : i + ID_BYTES], "big"),
            int.from_bytes(blob[i + ID_BYTES : i + ENTRY_BYTES], "big"),
        )
        for i in range(0, len(blob), ENTRY_BYTES)
    ]
    prev = lower - 1
    for v, _ in out:
        if v <= prev:
            raise SchemaError("ids must be ascending and unique")
        prev = v
    if out and out[-1][0] >= upper:
        raise SchemaError("an id lies outside its range")
    return out


class IdIndex:
    """A sorted set of 256-bit ids with fast range counts and sums."""

    def __init__(self, ids: Iterable[bytes] = ()) -> None:
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
        return fingerprint(self.prefix_sum(hi) - self.prefix_sum(lo), hi - lo)

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


@dataclass(frozen=True, slots=True)
class ReconcileConfig:
    #: sub-ranges a differing range is split into
    branching: int = 16
    #: a differing range with at most this many ids is answered by listing them
    ids_threshold: int = 16
    #: ids listed in one IDS/HAVE range; longer lists are cut into several ranges
    max_ids_per_range: int = 2048


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one incoming message leads to."""

    reply: tuple[Range, ...]
    #: ids the peer holds and we lack: fetch them
    need: tuple[bytes, ...]
    #: the rank the peer gave each id of ``need`` (same order): fetch the
    #: lowest first, and parents come before their children
    ranks: tuple[int, ...]
    #: whether the message had to be answered (it carried FP or IDS)
    wants_reply: bool


def needs_reply(ranges: Iterable[Range]) -> bool:
    return any(r.mode in (Mode.FP, Mode.IDS) for r in ranges)


class _Builder:
    """Accumulates output ranges, merging adjacent SKIPs."""

    def __init__(self) -> None:
        self.out: list[Range] = []

    def skip(self, upper: bytes) -> None:
        if self.out and self.out[-1].mode is Mode.SKIP:
            self.out[-1] = Range(upper, Mode.SKIP)
        else:
            self.out.append(Range(upper, Mode.SKIP))

    def add(self, r: Range) -> None:
        if r.mode is Mode.SKIP:
            self.skip(r.upper)
        else:
            self.out.append(r)

    def ranges(self) -> tuple[Range, ...]:
        return tuple(self.out)


def _list_ids(
    b: _Builder,
    index_ids: list[int],
    upper: bytes,
    mode: Mode,
    cfg: ReconcileConfig,
    rank: Ranker,
) -> None:
    """Emit ``index_ids`` (ascending, all within the current range) as
    ``mode`` ranges ending at ``upper``, cut so no range lists too many."""
    step = cfg.max_ids_per_range
    for start in range(0, max(len(index_ids), 1), step):
        chunk = index_ids[start : start + step]
        end = start + step
        if end < len(index_ids):
            sub_upper = separating_bound(index_ids[end - 1], index_ids[end])
        else:
            sub_upper = upper
        b.add(Range(sub_upper, mode, entries_to_blob(chunk, rank)))


def _split(
    b: _Builder, index: IdIndex, lo: int, hi: int, upper: bytes, cfg: ReconcileConfig
) -> None:
    """Split the ids of ranks [lo, hi) into ``branching`` FP ranges."""
    count = hi - lo
    parts = min(cfg.branching, count)
    cuts = [lo + count * k // parts for k in range(parts + 1)]
    for k in range(parts):
        a, z = cuts[k], cuts[k + 1]
        sub_upper = separating_bound(index.at(z - 1), index.at(z)) if k + 1 < parts else upper
        b.add(Range(sub_upper, Mode.FP, index.fingerprint(a, z)))


def _describe(
    b: _Builder,
    index: IdIndex,
    lo: int,
    hi: int,
    upper: bytes,
    cfg: ReconcileConfig,
    rank: Ranker,
) -> None:
    """Describe our ids of ranks [lo, hi): list them if few, else split."""
    if hi - lo <= cfg.ids_threshold:
        _list_ids(b, list(index.slice(lo, hi)), upper, Mode.IDS, cfg, rank)
    else:
        _split(b, index, lo, hi, upper, cfg)


def initiate(
    index: IdIndex, cfg: ReconcileConfig = ReconcileConfig(), rank: Ranker = no_rank
) -> tuple[Range, ...]:
    """The first message of a reconciliation: our whole set, described."""
    b = _Builder()
    _describe(b, index, 0, len(index), b"", cfg, rank)
    return b.ranges()


def respond(
    index: IdIndex,
    ranges: Iterable[Range],
    cfg: ReconcileConfig = ReconcileConfig(),
    rank: Ranker = no_rank,
) -> Outcome:
    """Process one message (§11.3.3).  The ranges must cover the id space in
    order and end with the empty bound; ``SchemaError`` otherwise.  ``rank``
    ranks the ids we list (§11.3.1)."""
    b = _Builder()
    need: list[tuple[int, int]] = []
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
        if r.mode is Mode.SKIP:
            if r.payload:
                raise SchemaError("a SKIP range has no payload")
            b.skip(r.upper)
        elif r.mode is Mode.FP:
            wants = True
            if len(r.payload) != FP_BYTES:
                raise SchemaError("a fingerprint is 16 bytes")
            if index.fingerprint(lo, hi) == r.payload:
                b.skip(r.upper)
            else:
                _describe(b, index, lo, hi, r.upper, cfg, rank)
        elif r.mode is Mode.IDS:
            wants = True
            theirs = blob_to_entries(r.payload, lower, upper)
            their_set = {v for v, _ in theirs}
            mine = list(index.slice(lo, hi))
            need.extend(e for e in theirs if not index.contains_int(e[0]))
            lacking = [v for v in mine if v not in their_set]
            if lacking:
                _list_ids(b, lacking, r.upper, Mode.HAVE, cfg, rank)
            else:
                b.skip(r.upper)
        else:  # HAVE
            theirs = blob_to_entries(r.payload, lower, upper)
            need.extend(e for e in theirs if not index.contains_int(e[0]))
            b.skip(r.upper)
        lower = upper
        last_upper = r.upper
    if last_upper != b"":
        raise SchemaError("ranges must end with the end of the id space")
    return Outcome(
        b.ranges(),
        tuple(v.to_bytes(ID_BYTES, "big") for v, _ in need),
        tuple(r for _, r in need),
        wants,
    )


def range_cost(r: Range) -> int:
    """An upper bound of a range's encoded size (§11.2.4)."""
    return len(r.upper) + len(r.payload) + 10


def chunk(ranges: tuple[Range, ...], max_bytes: int, max_ranges: int) -> list[tuple[Range, ...]]:
    """Cut a message into several that each cover the whole id space.

    Each piece keeps a run of the original ranges and SKIPs the rest, so the
    receiver handles pieces independently and in any order (§11.3.4).
    """
    if not ranges:
        return [(Range(b"", Mode.SKIP),)]
    pieces: list[tuple[Range, ...]] = []
    start = 0
    while start < len(ranges):
        budget = max_bytes - 64
        end = start
        while end < len(ranges) and end - start < max_ranges - 2:
            cost = range_cost(ranges[end])
            if end > start and cost > budget:
                break
            budget -= cost
            end += 1
        piece: list[Range] = []
        if start > 0:
            piece.append(Range(ranges[start - 1].upper, Mode.SKIP))
        piece.extend(ranges[start:end])
        if end < len(ranges):
            piece.append(Range(b"", Mode.SKIP))
        b = _Builder()
        for r in piece:
            b.add(r)
        pieces.append(b.ranges())
        start = end
    return pieces
