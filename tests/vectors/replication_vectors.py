"""replication.json: frames, fingerprints, short ids and one reconciliation
(docs/PROTOCOL.md §11.2-§11.3)."""

from __future__ import annotations

from protocol.core.canonical import decode, encode_flat
from protocol.sync.reconcile import (
    EVENT_IDS,
    FP_BYTES,
    RECORD_ITEMS,
    IdIndex,
    Mode,
    Range,
    ReconcileConfig,
    fingerprint,
    have_payload,
    initiate,
    respond,
    session_salt,
    short_id,
    shorts_to_blob,
)
from protocol.sync.wire import (
    FLAG_FINAL,
    FLAG_OWN,
    FLAG_RECORDS,
    AncestryFrame,
    AnnounceFrame,
    EventsFrame,
    Frame,
    PeersFrame,
    ReconcileFrame,
    RecordRequestFrame,
    RecordsFrame,
    RequestFrame,
    decode_frame,
    encode_frame,
)

from ._common import FORMAT_NOTE, Json, assert_raises, bytes_from_label, to_tagged

#: the exchange below uses a small list threshold so it splits twice, and
#: a push limit small enough that one answer's ids go in HAVE, not pushed
CONFIG = ReconcileConfig(list_threshold=8)
PUSH_LIMIT = 12
SESSION = 0x0A0B0C0D


def _ids(prefix: str, n: int) -> list[bytes]:
    return sorted(bytes_from_label(f"replication/{prefix}{i}") for i in range(n))


def _frames() -> list[tuple[str, Frame]]:
    ids = _ids("id", 4)
    rank_of = {int.from_bytes(e, "big"): r for e, r in zip(ids, [3, 0, 700, 65_535], strict=True)}
    values = [int.from_bytes(e, "big") for e in ids]
    salt = session_salt(SESSION)
    shorts = [short_id(EVENT_IDS, salt, v) for v in values]
    return [
        (
            "EVENTS: two (opaque) events, one id missing",
            EventsFrame((b"\x01", b"\x02\x03"), tuple(ids[3:])),
        ),
        ("EVENTS: a push", EventsFrame((b"\x04",))),
        ("ANNOUNCE", AnnounceFrame(tuple(ids))),
        ("REQUEST", RequestFrame(tuple(ids[:2]))),
        ("ANCESTRY", AncestryFrame(tuple(ids[:1]), tuple(ids[1:3]))),
        (
            "RECONCILE round 1: SKIP, FP, then IDS of three short ids to the end",
            ReconcileFrame(
                SESSION,
                FLAG_OWN,
                (
                    Range(b"\x20", Mode.SKIP),
                    Range(b"\x80\x01", Mode.FP, bytes(range(FP_BYTES))),
                    Range(b"", Mode.IDS, shorts_to_blob(shorts[:3])),
                ),
                1,
            ),
        ),
        (
            "RECONCILE round 2, a final answer: HAVE of three ranked ids asking for one push",
            ReconcileFrame(
                SESSION,
                FLAG_FINAL,
                (Range(b"", Mode.HAVE, have_payload(values[:3], rank_of.__getitem__, shorts[3:])),),
                2,
            ),
        ),
        (
            "RECONCILE of device-record items, round 3",
            ReconcileFrame(SESSION, FLAG_OWN | FLAG_RECORDS, (Range(b"", Mode.SKIP),), 3),
        ),
        ("RECORDS", RecordsFrame((b"record bytes",))),
        ("PEERS", PeersFrame((("12D3KooWexample", ("/ip4/127.0.0.1/tcp/4001",)),))),
        ("RECORD_REQUEST", RecordRequestFrame(tuple(ids[:2]))),
    ]


def _reconcile_hex(flags: int, msg_round: int, ranges: bytes) -> str:
    return encode_flat([1, 4, 0, flags, msg_round, ranges]).hex()


_REJECTED: list[tuple[str, str, str]] = [
    ("frame version 2", "920202", "UnsupportedVersionError"),
    ("unknown frame type 9", "930109c400", "SchemaError"),
    ("ANNOUNCE id list not a multiple of 32 bytes", "930102c40100", "SchemaError"),
    ("RECONCILE flag bit 3", _reconcile_hex(8, 1, b"\x00"), "SchemaError"),
    ("RECONCILE round 0", _reconcile_hex(0, 0, b"\x00"), "SchemaError"),
    ("RECONCILE without ranges", _reconcile_hex(0, 1, b""), "SizeLimitError"),
    (
        "RECONCILE: a bound ending in a zero byte",
        _reconcile_hex(0, 1, b"\x02\x80\x00\x00"),
        "SchemaError",
    ),
    (
        "RECONCILE: a fingerprint cut short",
        _reconcile_hex(0, 1, b"\x40" + bytes(15)),
        "SchemaError",
    ),
    (
        "RECONCILE: IDS of two short ids holding one",
        _reconcile_hex(0, 1, b"\x80\x02" + bytes(8)),
        "SchemaError",
    ),
    (
        "RECONCILE: a count not in its shortest form",
        _reconcile_hex(0, 1, b"\x80\x80\x00"),
        "SchemaError",
    ),
    ("RECORD_REQUEST without items", encode_flat([1, 8, b""]).hex(), "SizeLimitError"),
    ("trailing byte", "930102c40000", "NonCanonicalError"),
]


def _reconcile_rejected() -> list[tuple[str, ReconcileFrame]]:
    """RECONCILE frames that decode (§11.2) but that processing them
    (§11.3.3) refuses whole, as ``SchemaError``."""
    ids = _ids("id", 4)  # 06bf..., 52cd..., 6774..., 6e3f...
    low = have_payload([int.from_bytes(ids[0], "big")], lambda _: 0)
    high = have_payload([int.from_bytes(ids[3], "big")], lambda _: 0)
    fp = bytes(range(FP_BYTES))
    short = short_id(EVENT_IDS, session_salt(1), int.from_bytes(ids[0], "big"))
    cases = [
        (
            "a HAVE id below its range's lower bound",
            (Range(b"\x10", Mode.SKIP), Range(b"", Mode.HAVE, low)),
        ),
        (
            "a HAVE id above its range's upper bound (an upper bound is exclusive)",
            (Range(ids[3][:1], Mode.HAVE, high), Range(b"", Mode.SKIP)),
        ),
        (
            "an IDS list with a short id twice (lists are strictly ascending)",
            (Range(b"", Mode.IDS, b"\x02" + short + short),),
        ),
        ("bounds that do not increase", (Range(b"\x40", Mode.FP, fp), Range(b"\x40", Mode.SKIP))),
        ("a range after the end of the id space", (Range(b"", Mode.FP, fp), Range(b"", Mode.SKIP))),
        ("ranges that stop before the end of the id space", (Range(b"\x40", Mode.FP, fp),)),
    ]
    return [(name, ReconcileFrame(1, FLAG_OWN, ranges)) for name, ranges in cases]


def _exchange() -> dict[str, Json]:
    """Two sets sharing 60 ids; A has 5 more, B 30 more.  The ranks a side
    gives are each id's position in that side's sorted list (a stand-in
    for an account's acceptance order).  Each message records what its
    receiver learns: ids to fetch (with ranks) and ids to push."""
    shared, only_a, only_b = _ids("shared", 60), _ids("a", 5), _ids("b", 30)
    sets = {"A": sorted(shared + only_a), "B": sorted(shared + only_b)}
    index = {side: IdIndex(ids) for side, ids in sets.items()}

    def ranker(side: str) -> dict[int, int]:
        return {int.from_bytes(e, "big"): i for i, e in enumerate(sets[side])}

    ranks = {side: ranker(side) for side in sets}
    salt = session_salt(SESSION)
    messages: list[Json] = []
    got: dict[str, set[bytes]] = {"A": set(), "B": set()}
    pending = [("A", "B", ReconcileFrame(SESSION, FLAG_OWN, initiate(index["A"], salt, CONFIG)))]
    while pending:
        sender, receiver, frame = pending.pop(0)
        out = respond(
            index[receiver],
            frame.ranges,
            salt,
            CONFIG,
            ranks[receiver].__getitem__,
            frame.round,
            PUSH_LIMIT,
        )
        messages.append(
            {
                "from": sender,
                "hex": encode_frame(frame).hex(),
                "fetch": [[e.hex(), r] for e, r in zip(out.need, out.ranks, strict=True)],
                "push": [e.hex() for e in out.give],
            }
        )
        got[receiver] |= set(out.need)
        got[sender] |= set(out.give)
        if out.wants_reply:
            flags = FLAG_FINAL | (frame.flags & FLAG_OWN ^ FLAG_OWN)
            reply = ReconcileFrame(SESSION, flags, out.reply, frame.round + 1)
            pending.append((receiver, sender, reply))
    assert got["A"] == set(only_b) and got["B"] == set(only_a)
    return {
        "list_threshold": CONFIG.list_threshold,
        "list_round": CONFIG.list_round,
        "max_ids_per_range": CONFIG.max_ids_per_range,
        "push_limit": PUSH_LIMIT,
        "session": SESSION,
        "ids": {side: [e.hex() for e in ids] for side, ids in sets.items()},
        "messages": messages,
    }


def _short_ids() -> list[Json]:
    """Short ids of one id in both sets and two sessions (§11.3.2)."""
    (value,) = (int.from_bytes(e, "big") for e in _ids("short", 1))
    return [
        {
            "set": name,
            "session": session,
            "id": value.to_bytes(32, "big").hex(),
            "short_id": short_id(kind, session_salt(session), value).hex(),
        }
        for name, kind in (("events", EVENT_IDS), ("records", RECORD_ITEMS))
        for session in (0, SESSION)
    ]


def build() -> dict[str, Json]:
    frames = []
    for name, frame in _frames():
        raw = encode_frame(frame)
        assert decode_frame(raw) == frame
        frames.append({"name": name, "value": to_tagged(decode(raw, len(raw))), "hex": raw.hex()})
    rejected = []
    for name, hexed, error in _REJECTED:
        assert_raises(error, decode_frame, bytes.fromhex(hexed))
        rejected.append({"name": name, "hex": hexed, "error": error})
    reconcile_rejected = []
    for name, frame in _reconcile_rejected():
        raw = encode_frame(frame)
        assert decode_frame(raw) == frame
        index = IdIndex(_ids("id", 4))
        assert_raises("SchemaError", respond, index, frame.ranges, session_salt(1), CONFIG)
        reconcile_rejected.append({"name": name, "hex": raw.hex(), "error": "SchemaError"})
    fp_sets = {"empty": [], "one": _ids("fp", 1), "three": _ids("fp", 3)}
    fingerprints = [
        {
            "name": name,
            "ids": [e.hex() for e in ids],
            "fingerprint": fingerprint(sum(int.from_bytes(e, "big") for e in ids), len(ids)).hex(),
            "record_fingerprint": fingerprint(
                sum(int.from_bytes(e, "big") for e in ids), len(ids), RECORD_ITEMS
            ).hex(),
        }
        for name, ids in fp_sets.items()
    ]
    return {
        "format": FORMAT_NOTE,
        "frames": frames,
        "rejected": rejected,
        "reconcile_rejected": reconcile_rejected,
        "fingerprints": fingerprints,
        "short_ids": _short_ids(),
        "exchange": _exchange(),
    }
