"""Range-based set reconciliation and the replication frames (PROTOCOL.md §11.2-§11.3)."""

from __future__ import annotations

import random
from bisect import bisect_left
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.core.canonical import encode_flat
from protocol.core.errors import InvalidInput, SchemaError, SizeLimitError, UnsupportedVersionError
from protocol.sync.reconcile import (
    EVENT_IDS,
    INF,
    MAX_RANK,
    RECORD_ITEMS,
    IdIndex,
    Mode,
    Range,
    ReconcileConfig,
    bound_value,
    chunk,
    decode_ranges,
    encode_ranges,
    fingerprint,
    get_varint,
    have_payload,
    initiate,
    parse_have,
    put_varint,
    respond,
    separating_bound,
    session_salt,
    short_id,
    shorts_to_blob,
    split_parts,
)
from protocol.sync.wire import (
    FLAG_FINAL,
    FLAG_OWN,
    FLAG_RECORDS,
    AncestryFrame,
    AnnounceFrame,
    EventsFrame,
    ReconcileFrame,
    RecordRequestFrame,
    RequestFrame,
    WireLimits,
    decode_frame,
    encode_frame,
)

from .conftest import hypothesis_settings

MAX_FRAME = 256 * 1024
SALT = session_salt(0xC0FFEE)
CFG = ReconcileConfig()


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


def test_fingerprint_is_not_xor_or_count_blind_and_is_per_set() -> None:
    rng = random.Random(3)
    a, b = rng.getrandbits(256), rng.getrandbits(256)
    # an XOR digest would not tell {a, b, a^b} from the empty set
    assert naive_fp([a, b, a ^ b]) != naive_fp([])
    # the count is covered: adding the id 0 leaves the sum unchanged
    assert naive_fp([a, 0]) != naive_fp([a])
    assert len(naive_fp([a])) == 16
    # events and record items never share a fingerprint or a short id
    assert fingerprint(a, 1, RECORD_ITEMS) != fingerprint(a, 1, EVENT_IDS)
    assert short_id(RECORD_ITEMS, SALT, a) != short_id(EVENT_IDS, SALT, a)
    # the salt is the session: another session, other short ids
    assert short_id(EVENT_IDS, session_salt(1), a) != short_id(EVENT_IDS, session_salt(2), a)


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 16_383, 16_384, 65_535, 2**32 - 1])
def test_varints_round_trip_in_their_shortest_form(value: int) -> None:
    data = put_varint(value)
    assert get_varint(data, 0, 2**32) == (value, len(data))
    assert len(data) == max(1, (value.bit_length() + 6) // 7)
    with pytest.raises(SchemaError):
        get_varint(data[:-1], 0, 2**32)  # truncated
    with pytest.raises(SchemaError):
        get_varint(data[:-1] + bytes([data[-1] | 0x80, 0]), 0, 2**32)  # padded
    if value:
        with pytest.raises(SchemaError):
            get_varint(data, 0, value - 1)  # over the limit


def test_split_rule_lists_by_the_list_round_whatever_the_size() -> None:
    """§11.3.3: the least b with b**(rounds left) * threshold >= count."""
    cfg = ReconcileConfig(list_threshold=24, list_round=4)
    assert split_parts(24, 1, cfg) == 0 and split_parts(25, 1, cfg) == 2
    assert split_parts(100_000, 1, cfg) == 17  # 16**3 * 24 < 100,000 <= 17**3 * 24
    assert split_parts(10**9, 4, cfg) == 0 and split_parts(10**9, 9, cfg) == 0
    for count in (25, 99, 1000, 100_000, 10**7):
        size, rounds = count, 1
        while (b := split_parts(size, rounds, cfg)) != 0:
            assert b >= 2 and (b - 1) ** (4 - rounds) * 24 < size <= b ** (4 - rounds) * 24
            size, rounds = -(-size // b), rounds + 1
        assert rounds <= 4


# -- sessions through the real encoder ---------------------------------------------


@dataclass
class Run:
    """What one session between two index sides did."""

    bytes: int = 0
    frames: int = 0
    last_round: int = 0
    #: ids each side learnt to fetch (HAVE) and ids pushed to it
    fetched: dict[str, list[bytes]] = field(default_factory=lambda: {"a": [], "b": []})
    pushed: dict[str, list[bytes]] = field(default_factory=lambda: {"a": [], "b": []})
    #: the last round by which each side knew all it lacks
    known: dict[str, int] = field(default_factory=lambda: {"a": 0, "b": 0})

    def got(self, side: str) -> list[bytes]:
        return self.fetched[side] + self.pushed[side]


def session(
    a: IdIndex,
    b: IdIndex,
    cfg: ReconcileConfig = CFG,
    push_limit: int = 1 << 30,
    max_frame: int = MAX_FRAME,
    max_ids: int = 8192,
) -> Run:
    """A session a -> b to the end, every message through encoded frames."""
    sides = {"a": a, "b": b}
    run = Run()
    pending = [("b", initiate(a, SALT, cfg), 1)]
    while pending:
        nxt = []
        for to, ranges, msg_round in pending:
            other = "a" if to == "b" else "b"
            run.last_round = max(run.last_round, msg_round)
            for piece in chunk(ranges, max_frame - 64, 8192, max_ids):
                data = encode_frame(ReconcileFrame(7, FLAG_OWN, piece, msg_round))
                assert len(data) <= max_frame
                run.bytes += len(data)
                run.frames += 1
                frame = decode_frame(data, WireLimits(max_frame_bytes=max_frame))
                assert isinstance(frame, ReconcileFrame)
                out = respond(
                    sides[to], frame.ranges, SALT, cfg, msg_round=frame.round, push_limit=push_limit
                )
                if out.need:
                    run.fetched[to] += out.need
                    run.known[to] = msg_round
                if out.give:
                    run.pushed[other] += out.give
                    run.known[other] = max(run.known[other], msg_round + 1)
                if out.wants_reply:
                    nxt.append((other, out.reply, frame.round + 1))
        pending = nxt
    return run


def ids_of(index: IdIndex) -> set[bytes]:
    return {v.to_bytes(32, "big") for v in index.values()}


def assert_exact(run: Run, a: IdIndex, b: IdIndex) -> None:
    """Each side gets exactly what it lacked, each id once."""
    sa, sb = ids_of(a), ids_of(b)
    for side, lacks in (("a", sb - sa), ("b", sa - sb)):
        got = run.got(side)
        assert len(got) == len(set(got)), "an id arrived twice"
        assert set(got) == lacks


def make_pair(
    n: int, d: int, rng: random.Random, layout: str
) -> tuple[IdIndex, IdIndex, set[bytes], set[bytes]]:
    ids = sorted(rng.randbytes(32) for _ in range(n + d))
    if layout == "bunched":
        start = rng.randrange(n + 1)
        diff = ids[start : start + d]
    else:
        diff = rng.sample(ids, d)
    only_a = set(diff[0::2])
    only_b = set(diff[1::2])
    a = IdIndex(i for i in ids if i not in only_b)
    b = IdIndex(i for i in ids if i not in only_a)
    return a, b, only_a, only_b


@pytest.mark.parametrize("layout", ["spread", "bunched"])
@pytest.mark.parametrize("d", [0, 1, 2, 37, 400])
def test_reconciliation_finds_exactly_the_difference(d: int, layout: str) -> None:
    rng = random.Random(d * 2 + (layout == "bunched"))
    a, b, _, _ = make_pair(20_000, d, rng, layout)
    run = session(a, b)
    assert_exact(run, a, b)
    # lists by round 4, pushes asked for in round 5, a bare answer in round 6
    assert run.last_round <= 6 and max(run.known.values()) <= 6
    assert not run.fetched["a"] and not run.fetched["b"]  # within the push limit


@pytest.mark.parametrize("na,nb", [(0, 0), (0, 500), (500, 0), (10, 40), (1, 1)])
def test_small_and_empty_sets(na: int, nb: int) -> None:
    rng = random.Random(na + nb)
    a = IdIndex(rng.randbytes(32) for _ in range(na))
    b = IdIndex(rng.randbytes(32) for _ in range(nb))
    assert_exact(session(a, b), a, b)


def test_equal_sets_cost_one_level_of_fingerprints() -> None:
    a, b, _, _ = make_pair(20_000, 0, random.Random(0), "spread")
    run = session(a, b)
    assert run.last_round == 2 and run.frames == 2
    assert run.bytes < 400  # 14 fingerprints, answered by one SKIP


def test_a_late_joiner_gets_everything_pushed_then_offered_across_frames() -> None:
    """Beyond the push limit, ids the peer lacks go in HAVE with ranks; a
    HAVE too large for a frame is cut into HAVEs over the same bounds, each
    in its own frame."""
    rng = random.Random(5)
    b = IdIndex(rng.randbytes(32) for _ in range(20_000))  # 680 KB of HAVE
    run = session(IdIndex(), b, push_limit=1000)
    assert_exact(run, IdIndex(), b)
    assert len(run.fetched["a"]) == 20_000 and not run.pushed["a"]
    assert run.frames > 3
    small = session(IdIndex(), b, push_limit=30_000, max_frame=MAX_FRAME)
    assert len(small.pushed["a"]) == 20_000 and not small.fetched["a"]


def test_both_sides_large_and_beyond_the_push_limit_still_converge() -> None:
    rng = random.Random(9)
    a, b, _, _ = make_pair(3000, 3000, rng, "bunched")
    for limit in (0, 5, 200):
        for frame in (MAX_FRAME, 4096):
            # a list must fit a frame: the machine derives this from its limits
            cfg = ReconcileConfig(max_ids_per_range=min(4096, (frame - 200) // 8))
            run = session(a, b, cfg, push_limit=limit, max_frame=frame, max_ids=300)
            assert_exact(run, a, b)


def test_bytes_follow_the_difference_not_the_set() -> None:
    """Bytes grow with d and stay far below sending the ids (32 B each)."""
    n = 20_000
    naive = 32 * n
    costs = {}
    for d in (1, 10, 100):
        rng = random.Random(d)
        a, b, _, _ = make_pair(n, d, rng, "spread")
        run = session(a, b)
        assert_exact(run, a, b)
        costs[d] = run.bytes
        # a fixed cost of three levels of fingerprints plus ~500 B per difference
        assert run.bytes <= 1_200 + 600 * d, (d, run.bytes)
    assert costs[100] < naive / 8


def test_chunked_message_means_the_same_as_the_whole() -> None:
    rng = random.Random(6)
    a, b, _, _ = make_pair(5000, 300, rng, "spread")
    reply = respond(b, initiate(a, SALT), SALT, msg_round=1).reply
    whole = respond(a, reply, SALT, msg_round=2)
    parts = [respond(a, piece, SALT, msg_round=2) for piece in chunk(reply, 600, 8192)]
    assert len(parts) > 1
    got = sorted(r.upper for p in parts for r in p.reply if r.mode is not Mode.SKIP)
    assert got == sorted(r.upper for r in whole.reply if r.mode is not Mode.SKIP)


def test_pushes_are_all_or_nothing_per_frame() -> None:
    """Two listed ranges each lack 20 ids: with a limit of 39 neither is
    pushed (a catch-up goes by rank, parents first, §11.3.3), with 40 both."""
    rng = random.Random(12)
    half = 1 << 255
    low = sorted(v for v in (rng.getrandbits(255) for _ in range(40)))
    high = sorted(half + v for v in (rng.getrandbits(255) for _ in range(40)))
    mine = IdIndex(v.to_bytes(32, "big") for v in low + high)
    listing = (
        Range(b"\x80", Mode.IDS, shorts_to_blob(short_id(EVENT_IDS, SALT, v) for v in low[:20])),
        Range(b"", Mode.IDS, shorts_to_blob(short_id(EVENT_IDS, SALT, v) for v in high[:20])),
    )
    none = respond(mine, listing, SALT, push_limit=39)
    assert not none.give and [r.mode for r in none.reply] == [Mode.HAVE, Mode.HAVE]
    assert [len(parse_have(r.payload)[0]) for r in none.reply] == [20, 20]
    both = respond(mine, listing, SALT, push_limit=40)
    assert len(both.give) == 40 and [r.mode for r in both.reply] == [Mode.SKIP]
    assert both.give == tuple(v.to_bytes(32, "big") for v in low[20:] + high[20:])


def test_pushes_up_to_the_limit_and_the_rest_is_offered() -> None:
    rng = random.Random(10)
    theirs = [rng.randbytes(32) for _ in range(10)]
    mine = IdIndex(theirs + [rng.randbytes(32) for _ in range(30)])
    listing = initiate(IdIndex(theirs), SALT)
    assert [r.mode for r in listing] == [Mode.IDS]
    pushed = respond(mine, listing, SALT, push_limit=30)
    assert len(pushed.give) == 30 and [r.mode for r in pushed.reply] == [Mode.SKIP]
    offered = respond(mine, listing, SALT, push_limit=29, rank=lambda v: v % 100_000)
    assert not offered.give and [r.mode for r in offered.reply] == [Mode.HAVE]
    entries, asked = parse_have(offered.reply[0].payload)
    assert len(entries) == 30 and not asked
    # ranks are capped
    assert all(r == min(v % 100_000, MAX_RANK) for v, r in entries)
    # the lister fetches them, lowest rank first is the caller's business
    fetched = respond(IdIndex(theirs), offered.reply, SALT, msg_round=2)
    assert len(fetched.need) == 30 and not fetched.wants_reply


def test_a_lister_pushes_what_the_answer_asks_for_by_short_id() -> None:
    rng = random.Random(11)
    shared = [rng.randbytes(32) for _ in range(5)]
    extra = [rng.randbytes(32) for _ in range(3)]
    lister, learner = IdIndex(shared + extra), IdIndex(shared)
    answer = respond(learner, initiate(lister, SALT), SALT)
    assert not answer.give and answer.wants_reply
    (have,) = answer.reply
    entries, asked = parse_have(have.payload)
    assert not entries and len(asked) == 3
    out = respond(lister, answer.reply, SALT, msg_round=2, push_limit=10)
    assert set(out.give) == set(extra) and out.wants_reply
    assert [r.mode for r in out.reply] == [Mode.SKIP]
    # another session's salt: the short ids match nothing
    assert not respond(lister, answer.reply, session_salt(1), msg_round=2, push_limit=10).give


@pytest.mark.parametrize(
    "ranges",
    [
        [Range(b"\x80", Mode.SKIP)],  # does not reach the end
        [Range(b"\x80", Mode.SKIP), Range(b"\x40", Mode.SKIP), Range(b"", Mode.SKIP)],
        [Range(b"", Mode.SKIP), Range(b"", Mode.SKIP)],
        [Range(b"\x80\x00", Mode.SKIP), Range(b"", Mode.SKIP)],  # bound ends in zero
        [Range(b"", Mode.FP, b"short")],
        [Range(b"", Mode.IDS, shorts_to_blob([b"b" * 8, b"a" * 8])[:1] + b"b" * 8 + b"a" * 8)],
        [Range(b"", Mode.IDS, b"\x02" + b"a" * 16)],  # repeated
        [Range(b"", Mode.IDS, b"\x01" + b"a" * 8 + b"x")],  # trailing byte
        [
            Range(b"\x80", Mode.HAVE, have_payload([0x90 << 248], lambda v: 0)),
            Range(b"", Mode.SKIP),
        ],
        [Range(b"", Mode.HAVE, b"\x01" + bytes(33))],  # truncated entry
        [Range(b"", Mode.HAVE, have_payload([], lambda v: 0) + b"\x00")],  # trailing byte
    ],
)
def test_malformed_ranges_are_schema_errors(ranges: list[Range]) -> None:
    with pytest.raises(SchemaError):
        respond(IdIndex([bytes(32)]), ranges, SALT)


def test_range_lists_are_checked_before_use() -> None:
    listing = (Range(b"\x40", Mode.FP, bytes(16)), Range(b"", Mode.IDS, shorts_to_blob([b"x" * 8])))
    blob = encode_ranges(listing)
    assert blob[0] == 0x41 and decode_ranges(blob, 8, 8) == listing
    for bad in (b"\x21" + b"\x01" * 33, b"\x41\x40" + bytes(15), b"\x80\x03" + bytes(16)):
        with pytest.raises(SchemaError):
            decode_ranges(bad, 8, 8)
    with pytest.raises(SizeLimitError):
        decode_ranges(blob, 1, 8)  # too many ranges
    with pytest.raises(SizeLimitError):
        decode_ranges(b"\x80\x03" + bytes(24), 8, 2)  # too many short ids
    with pytest.raises(SizeLimitError):
        decode_ranges(b"", 8, 8)


# -- properties (§11.3.3) ------------------------------------------------------------

layouts = st.sampled_from(["bunched", "spread", "a empty", "b empty", "equal", "disjoint"])


@hypothesis_settings(60)
@given(
    n=st.integers(0, 3000),
    d=st.integers(0, 400),
    layout=layouts,
    threshold=st.integers(1, 40),
    push_limit=st.sampled_from([0, 3, 50, 1 << 30]),
    seed=st.integers(0, 2**32),
)
def test_property_both_sides_learn_exactly_the_difference_within_the_bound(
    n: int, d: int, layout: str, threshold: int, push_limit: int, seed: int
) -> None:
    """Whatever the sets and the shape of their difference, a session ends
    with each side holding or fetching exactly what it lacked (each id
    once), and everything is known by round list_round + 2: three round trips."""
    rng = random.Random(seed)
    if layout in ("bunched", "spread"):
        a, b, _, _ = make_pair(n, d, rng, layout)
    else:
        ids = [rng.randbytes(32) for _ in range(n)]
        if layout == "equal":
            a, b = IdIndex(ids), IdIndex(ids)
        elif layout == "disjoint":
            a, b = IdIndex(ids[: n // 2]), IdIndex(ids[n // 2 :])
        elif layout == "a empty":
            a, b = IdIndex(), IdIndex(ids)
        else:
            a, b = IdIndex(ids), IdIndex()
    cfg = ReconcileConfig(list_threshold=threshold, list_round=4)
    run = session(a, b, cfg, push_limit)
    assert_exact(run, a, b)
    assert run.last_round <= cfg.list_round + 2
    assert max(run.known.values()) <= cfg.list_round + 2


@hypothesis_settings(40)
@given(
    st.lists(st.integers(0, 2**256 - 1), max_size=60, unique=True),
    st.lists(st.integers(0, 2**256 - 1), max_size=60, unique=True),
    st.integers(1, 5),
)
def test_property_adversarial_ids_still_reconcile(xs: list[int], ys: list[int], t: int) -> None:
    """Ids close together (shared prefixes, small numbers) split and list too."""
    near = [v >> 200 for v in xs] + [1, 2, 3]
    a = IdIndex(v.to_bytes(32, "big") for v in near + xs)
    b = IdIndex(v.to_bytes(32, "big") for v in near[:5] + ys)
    assert_exact(session(a, b, ReconcileConfig(list_threshold=t)), a, b)


# -- frames --------------------------------------------------------------------


def test_frames_round_trip() -> None:
    rng = random.Random(7)
    ids = tuple(sorted(rng.randbytes(32) for _ in range(5)))
    values = [int.from_bytes(i, "big") for i in ids]
    frames = [
        EventsFrame((b"\x01\x02", b"abc"), ids[:2]),
        EventsFrame(()),
        AnnounceFrame(ids),
        RequestFrame(ids[:1]),
        AncestryFrame(ids[:2], ids[2:]),
        AncestryFrame(ids[:1]),
        RecordRequestFrame(ids[1:]),
        ReconcileFrame(
            2**32 - 1,
            FLAG_OWN | FLAG_FINAL | FLAG_RECORDS,
            (
                Range(b"\x10", Mode.FP, bytes(16)),
                Range(b"\x80", Mode.IDS, shorts_to_blob([b"12345678"])),
                Range(b"", Mode.HAVE, have_payload(values[3:], lambda v: 7, [b"abcdefgh"])),
            ),
            255,
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
        (encode_flat([1, 4, 0, 8, 1, b"\x00"]), SchemaError),  # flag 8
        (encode_flat([1, 4, 0, 0, 0, b"\x00"]), SchemaError),  # round 0
        (encode_flat([1, 4, 0, 0, 1, [b"\x00"]]), SchemaError),  # ranges as an array
        (encode_flat([1, 4, 0, 0, 1, b""]), SizeLimitError),  # no ranges
        (encode_flat([1, 8, b""]), SizeLimitError),  # no record items
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
    with pytest.raises(SizeLimitError):
        decode_frame(encode_frame(RecordRequestFrame(ids)), limits)
    many = (*tuple(Range(bytes([i]), Mode.SKIP) for i in range(1, 4)), Range(b"", Mode.SKIP))
    with pytest.raises(SizeLimitError):
        decode_frame(encode_frame(ReconcileFrame(0, 0, many)), limits)
    listed = (Range(b"", Mode.IDS, shorts_to_blob(i[:8] for i in ids)),)
    with pytest.raises(SizeLimitError):
        decode_frame(encode_frame(ReconcileFrame(0, 0, listed)), limits)
    with pytest.raises(SizeLimitError):
        decode_frame(b"\x00" * 300, WireLimits(max_frame_bytes=200))
    small = WireLimits(max_ancestry_targets=2, max_ancestry_known=1)
    with pytest.raises(SizeLimitError):
        decode_frame(encode_frame(AncestryFrame(ids[:3])), small)
    with pytest.raises(SizeLimitError):
        decode_frame(encode_frame(AncestryFrame(ids[:1], ids[1:3])), small)
    with pytest.raises(SizeLimitError):
        decode_frame(encode_frame(AncestryFrame(())), small)
