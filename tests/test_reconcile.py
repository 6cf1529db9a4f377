"""Range-based set reconciliation and the replication frames (PROTOCOL.md §11.2-§11.3)."""

from __future__ import annotations

import random
from bisect import bisect_left

import pytest

from protocol.core.errors import InvalidInput, SchemaError, SizeLimitError, UnsupportedVersionError
from protocol.sync.reconcile import (
    ENTRY_BYTES,
    INF,
    MAX_RANK,
    IdIndex,
    Mode,
    Range,
    bound_value,
    chunk,
    fingerprint,
    initiate,
    respond,
    separating_bound,
)
from protocol.sync.wire import (
    FLAG_FINAL,
    FLAG_OWN,
    AncestryFrame,
    AnnounceFrame,
    EventsFrame,
    ReconcileFrame,
    RequestFrame,
    WireLimits,
    decode_frame,
    encode_frame,
)

MAX_FRAME = 256 * 1024


def naive_fp(values: list[int]) -> bytes:
    return fingerprint(sum(values), len(values))


def test_index_matches_a_naive_sorted_list() -> None:
    rng = random.Random(1)
    index = IdIndex(rng.randbytes(32) for _ in range(700))
    values = sorted(index.values())
    for _ in range(1500):  # enough inserts to split blocks
        v = rng.randbytes(32)
        assert index.add(v) is (int.from_bytes(v, "big") not in values)
        values.insert(bisect_left(values, int.from_bytes(v, "big")), int.from_bytes(v, "big"))
        assert not index.add(v)
    assert list(index.values()) == values and len(index) == len(values)
    for _ in range(200):
        x = rng.getrandbits(256)
        assert index.rank(x) == bisect_left(values, x)
        lo, hi = sorted(rng.sample(range(len(values) + 1), 2))
        assert index.fingerprint(lo, hi) == naive_fp(values[lo:hi])
        assert list(index.slice(lo, hi)) == values[lo:hi]
        assert index.at(lo) == values[lo]
        assert index.contains_int(values[lo]) and (x in values) == index.contains_int(x)
    assert index.rank(INF) == len(values)


def test_separating_bound_is_shortest_and_between() -> None:
    rng = random.Random(2)
    for _ in range(500):
        a = rng.getrandbits(256 - rng.randrange(0, 256, 8))
        b = a + 1 if rng.random() < 0.3 else a + 1 + rng.getrandbits(rng.randrange(1, 256))
        if b >= 1 << 256:
            continue
        bound = separating_bound(a, b)
        assert a < bound_value(bound) <= b
        assert bound[-1] != 0
        assert len(bound) == 1 or bound_value(bound[:-1]) <= a


def test_fingerprint_is_not_xor_or_count_blind() -> None:
    rng = random.Random(3)
    a, b = rng.getrandbits(256), rng.getrandbits(256)
    # an XOR digest would not tell {a, b, a^b} from the empty set
    assert naive_fp([a, b, a ^ b]) != naive_fp([])
    # the count is covered: adding the id 0 leaves the sum unchanged
    assert naive_fp([a, 0]) != naive_fp([a])
    assert len(naive_fp([a])) == 16


def exchange(
    a: IdIndex, b: IdIndex, max_frame: int = MAX_FRAME
) -> tuple[int, int, set[bytes], set[bytes]]:
    """Run a reconciliation a -> b to the end through encoded frames.

    Returns (bytes on the wire, messages, ids a needs, ids b needs).
    """
    sides = {"a": a, "b": b}
    needs: dict[str, set[bytes]] = {"a": set(), "b": set()}
    pending = [("b", initiate(a))]
    total = messages = 0
    while pending:
        messages += 1
        nxt = []
        for to, ranges in pending:
            for piece in chunk(ranges, max_frame, 8192):
                data = encode_frame(ReconcileFrame(7, FLAG_OWN, piece))
                assert len(data) <= max_frame
                total += len(data)
                frame = decode_frame(data)
                assert isinstance(frame, ReconcileFrame)
                out = respond(sides[to], frame.ranges)
                needs[to].update(out.need)
                if out.wants_reply:
                    nxt.append(("a" if to == "b" else "b", out.reply))
        pending = nxt
    return total, messages, needs["a"], needs["b"]


def make_pair(
    n: int, d: int, rng: random.Random, bunched: bool
) -> tuple[IdIndex, IdIndex, set[bytes], set[bytes]]:
    ids = sorted(rng.randbytes(32) for _ in range(n + d))
    if bunched:
        start = rng.randrange(n)
        diff = ids[start : start + d]
    else:
        diff = rng.sample(ids, d)
    only_a = set(diff[0::2])
    only_b = set(diff[1::2])
    a = IdIndex(i for i in ids if i not in only_b)
    b = IdIndex(i for i in ids if i not in only_a)
    return a, b, only_a, only_b


@pytest.mark.parametrize("bunched", [False, True])
@pytest.mark.parametrize("d", [0, 1, 2, 37])
def test_reconciliation_finds_exactly_the_difference(d: int, bunched: bool) -> None:
    rng = random.Random(d * 2 + bunched)
    a, b, only_a, only_b = make_pair(3000, d, rng, bunched)
    _, messages, need_a, need_b = exchange(a, b)
    assert need_a == only_b and need_b == only_a
    assert messages <= 5


@pytest.mark.parametrize("na,nb", [(0, 0), (0, 500), (500, 0), (10, 40)])
def test_small_and_empty_sets(na: int, nb: int) -> None:
    rng = random.Random(na + nb)
    a = IdIndex(rng.randbytes(32) for _ in range(na))
    b = IdIndex(rng.randbytes(32) for _ in range(nb))
    _, _, need_a, need_b = exchange(a, b)
    bs = {v.to_bytes(32, "big") for v in b.values()}
    as_ = {v.to_bytes(32, "big") for v in a.values()}
    assert need_a == bs - as_ and need_b == as_ - bs


def test_a_late_joiner_gets_every_id_across_several_frames() -> None:
    rng = random.Random(5)
    b = IdIndex(rng.randbytes(32) for _ in range(20_000))  # 640 KB of ids
    _, _, need_a, need_b = exchange(IdIndex(), b)
    assert len(need_a) == 20_000 and not need_b


def test_bytes_follow_the_difference_not_the_set() -> None:
    """Bytes grow with d and stay far below sending the ids (32 B each)."""
    n = 20_000
    naive = 32 * n
    costs = {}
    for d in (1, 10, 100):
        rng = random.Random(d)
        a, b, only_a, only_b = make_pair(n, d, rng, bunched=False)
        total, _, need_a, need_b = exchange(a, b)
        assert need_a == only_b and need_b == only_a
        costs[d] = total
        # a fixed cost of a few fingerprint levels plus ~1 KB per difference
        assert total <= 2_000 + 1_200 * d, (d, total)
    assert costs[100] < naive / 4
    same, _, _, _ = exchange(*make_pair(n, 0, random.Random(0), bunched=False)[:2])
    assert same < 600  # equal sets: one level of fingerprints, all equal


def test_chunked_message_means_the_same_as_the_whole() -> None:
    rng = random.Random(6)
    a, b, _, _ = make_pair(5000, 300, rng, bunched=False)
    reply = respond(b, initiate(a)).reply
    whole = respond(a, reply)
    parts = [respond(a, piece) for piece in chunk(reply, 600, 8192)]
    assert len(parts) > 1
    assert set(whole.need) == {i for p in parts for i in p.need}
    got = sorted(r.upper for p in parts for r in p.reply if r.mode is not Mode.SKIP)
    assert got == sorted(r.upper for r in whole.reply if r.mode is not Mode.SKIP)


@pytest.mark.parametrize(
    "ranges",
    [
        [Range(b"\x80", Mode.SKIP)],  # does not reach the end
        [Range(b"\x80", Mode.SKIP), Range(b"\x40", Mode.SKIP), Range(b"", Mode.SKIP)],
        [Range(b"", Mode.SKIP), Range(b"", Mode.SKIP)],
        [Range(b"\x80\x00", Mode.SKIP), Range(b"", Mode.SKIP)],  # bound ends in zero
        [Range(b"", Mode.FP, b"short")],
        [Range(b"\x80", Mode.IDS, b"\x90" + bytes(33)), Range(b"", Mode.SKIP)],  # out of range
        [Range(b"", Mode.IDS, b"\x90" + bytes(33) + b"\x10" + bytes(33))],  # descending
        [Range(b"", Mode.IDS, b"\x10" + bytes(33) + b"\x10" + bytes(33))],  # repeated
        [Range(b"", Mode.HAVE, b"\x90" * 33)],  # not whole entries
        [Range(b"", Mode.HAVE, b"\x90" * 32)],  # ids without ranks
    ],
)
def test_malformed_ranges_are_schema_errors(ranges: list[Range]) -> None:
    with pytest.raises(SchemaError):
        respond(IdIndex([bytes(32)]), ranges)


def test_listed_ids_carry_the_senders_ranks() -> None:
    """§11.3.1: each listed id carries its sender's rank, capped at 65,535,
    and the receiver gets the rank of every id it needs."""
    rng = random.Random(8)
    theirs = [rng.randbytes(32) for _ in range(40)]
    rank_of = {int.from_bytes(e, "big"): i * 3000 for i, e in enumerate(theirs)}
    a, b = IdIndex(theirs[:10]), IdIndex(theirs)  # a lacks 30 of b's ids
    reply = respond(b, initiate(a), rank=rank_of.__getitem__).reply
    out = respond(a, reply)
    assert set(out.need) == set(theirs[10:])
    assert len(out.ranks) == len(out.need)
    for eid, rank in zip(out.need, out.ranks, strict=True):
        assert rank == min(rank_of[int.from_bytes(eid, "big")], MAX_RANK)
    assert MAX_RANK in out.ranks  # 39 * 3000 was capped
    # the small side lists its ids in the first message, with ranks too
    entries = [r for r in initiate(a, rank=lambda v: 7) if r.mode is Mode.IDS]
    assert entries and all(len(r.payload) % ENTRY_BYTES == 0 for r in entries)
    assert all(
        r.payload[i + 32 : i + 34] == b"\x00\x07"
        for r in entries
        for i in range(0, len(r.payload), ENTRY_BYTES)
    )


# -- frames --------------------------------------------------------------------


def test_frames_round_trip() -> None:
    rng = random.Random(7)
    ids = tuple(sorted(rng.randbytes(32) for _ in range(5)))
    frames = [
        EventsFrame((b"\x01\x02", b"abc"), ids[:2]),
        EventsFrame(()),
        AnnounceFrame(ids),
        RequestFrame(ids[:1]),
        AncestryFrame(ids[:2], ids[2:]),
        AncestryFrame(ids[:1]),
        ReconcileFrame(
            2**32 - 1,
            FLAG_OWN | FLAG_FINAL,
            (
                Range(b"\x10", Mode.FP, bytes(16)),
                Range(b"", Mode.IDS, b"".join(i + b"\x00\x07" for i in ids[3:])),
            ),
        ),
    ]
    for f in frames:
        assert decode_frame(encode_frame(f)) == f


@pytest.mark.parametrize(
    "data,error",
    [
        (b"\x92\x02\x02", UnsupportedVersionError),
        (b"\x93\x01\x09\xc4\x00", SchemaError),  # unknown type
        (b"\x93\x01\x02\xc4\x01\x00", SchemaError),  # ids not a multiple of 32
        (b"\x93\x01\x02\xa0", SchemaError),  # ids as str
        (b"\x94\x01\x01\x90\xc0", SchemaError),  # nil
        (b"\x95\x01\x04\x00\x04\x91\x93\xc4\x00\x00\xc4\x00", SchemaError),  # flag 4
        (b"\x95\x01\x04\x00\x00\x90", SizeLimitError),  # no ranges
        (b"\x93\x01\x02\xc4\x00\x00", InvalidInput),  # trailing byte
    ],
)
def test_bad_frames_are_refused(data: bytes, error: type[InvalidInput]) -> None:
    with pytest.raises(error):
        decode_frame(data)


def test_counts_are_bounded_before_use() -> None:
    limits = WireLimits(max_events_per_frame=2, max_ids_per_frame=3, max_ranges_per_frame=2)
    ids = tuple(bytes([i]) * 32 for i in range(1, 5))
    with pytest.raises(SizeLimitError):
        decode_frame(encode_frame(EventsFrame((b"a", b"b", b"c"))), limits)
    with pytest.raises(SizeLimitError):
        decode_frame(encode_frame(AnnounceFrame(ids)), limits)
    many = (*tuple(Range(bytes([i]), Mode.SKIP) for i in range(1, 4)), Range(b"", Mode.SKIP))
    with pytest.raises(SizeLimitError):
        decode_frame(encode_frame(ReconcileFrame(0, 0, many)), limits)
    with pytest.raises(SizeLimitError):
        decode_frame(b"\x00" * 300, WireLimits(max_frame_bytes=200))
    small = WireLimits(max_ancestry_targets=2, max_ancestry_known=1)
    with pytest.raises(SizeLimitError):
        decode_frame(encode_frame(AncestryFrame(ids[:3])), small)
    with pytest.raises(SizeLimitError):
        decode_frame(encode_frame(AncestryFrame(ids[:1], ids[1:3])), small)
    with pytest.raises(SizeLimitError):
        decode_frame(encode_frame(AncestryFrame(())), small)
