"""replication.json: frames, fingerprints and one reconciliation
(docs/PROTOCOL.md §11.2-§11.3)."""

from __future__ import annotations

from protocol.core.canonical import decode
from protocol.sync.reconcile import (
    FP_BYTES,
    IdIndex,
    Mode,
    Range,
    ReconcileConfig,
    entries_to_blob,
    fingerprint,
    initiate,
    respond,
)
from protocol.sync.wire import (
    FLAG_FINAL,
    FLAG_OWN,
    AncestryFrame,
    AnnounceFrame,
    EventsFrame,
    Frame,
    PeersFrame,
    ReconcileFrame,
    RecordsFrame,
    RequestFrame,
    decode_frame,
    encode_frame,
)

from ._common import FORMAT_NOTE, Json, assert_raises, bytes_from_label, to_tagged

#: the exchange below uses the default split (16 sub-ranges, lists of <= 16)
CONFIG = ReconcileConfig()


def _ids(prefix: str, n: int) -> list[bytes]:
    return sorted(bytes_from_label(f"replication/{prefix}{i}") for i in range(n))


def _frames() -> list[tuple[str, Frame]]:
    ids = _ids("id", 4)
    rank_of = {int.from_bytes(e, "big"): r for e, r in zip(ids, [3, 0, 700, 65_535], strict=True)}
    ranked = entries_to_blob((int.from_bytes(e, "big") for e in ids[:3]), rank_of.__getitem__)
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
            "RECONCILE: SKIP, FP, then IDS of three ranked ids to the end",
            ReconcileFrame(
                7,
                FLAG_OWN,
                (
                    # the IDS range [0x0401..., end) holds its three ids
                    Range(b"\x02", Mode.SKIP),
                    Range(b"\x04\x01", Mode.FP, bytes(range(FP_BYTES))),
                    Range(b"", Mode.IDS, ranked),
                ),
            ),
        ),
        (
            "RECONCILE: a final answer with HAVE",
            ReconcileFrame(7, FLAG_FINAL, (Range(b"", Mode.HAVE, ranked),)),
        ),
        ("RECORDS", RecordsFrame((b"record bytes",))),
        ("PEERS", PeersFrame((("12D3KooWexample", ("/ip4/127.0.0.1/tcp/4001",)),))),
    ]


_REJECTED: list[tuple[str, str, str]] = [
    ("frame version 2", "920202", "UnsupportedVersionError"),
    ("unknown frame type 9", "930109c400", "SchemaError"),
    ("ANNOUNCE id list not a multiple of 32 bytes", "930102c40100", "SchemaError"),
    ("RECONCILE flag bit 2", "95010400049193c40000c400", "SchemaError"),
    ("RECONCILE without ranges", "950104000090", "SizeLimitError"),
    # an IDS range whose payload is one bare 32-byte id (no rank)
    (
        "RECONCILE: ranked id list not a multiple of 34 bytes",
        "95010400009193c40002c420" + "11" * 32,
        "SchemaError",
    ),
    ("trailing byte", "930102c40000", "NonCanonicalError"),
]


def _reconcile_rejected() -> list[tuple[str, ReconcileFrame]]:
    """RECONCILE frames that decode (§11.2) but that processing them
    (§11.3.3) refuses whole, as ``SchemaError``."""
    ids = _ids("id", 4)  # 06bf..., 52cd..., 6774..., 6e3f...
    low = entries_to_blob([int.from_bytes(ids[0], "big")], lambda _: 0)
    high = entries_to_blob([int.from_bytes(ids[3], "big")], lambda _: 0)
    fp = bytes(range(FP_BYTES))
    cases = [
        (
            "an IDS id below its range's lower bound",
            (Range(b"\x10", Mode.SKIP), Range(b"", Mode.IDS, low)),
        ),
        (
            "a HAVE id above its range's upper bound (an upper bound is exclusive)",
            (Range(ids[3][:1], Mode.HAVE, high), Range(b"", Mode.SKIP)),
        ),
        ("bounds that do not increase", (Range(b"\x40", Mode.FP, fp), Range(b"\x40", Mode.SKIP))),
        ("a range after the end of the id space", (Range(b"", Mode.FP, fp), Range(b"", Mode.SKIP))),
        ("ranges that stop before the end of the id space", (Range(b"\x40", Mode.FP, fp),)),
    ]
    return [(name, ReconcileFrame(1, FLAG_OWN, ranges)) for name, ranges in cases]


def _exchange() -> dict[str, Json]:
    """Two sets sharing 60 ids; A has 5 more, B 30 more.  The ranks a side
    gives are each id's position in that side's sorted list (a stand-in
    for an account's acceptance order)."""
    shared, only_a, only_b = _ids("shared", 60), _ids("a", 5), _ids("b", 30)
    sets = {"A": sorted(shared + only_a), "B": sorted(shared + only_b)}
    index = {side: IdIndex(ids) for side, ids in sets.items()}

    def ranker(side: str) -> dict[int, int]:
        return {int.from_bytes(e, "big"): i for i, e in enumerate(sets[side])}

    ranks = {side: ranker(side) for side in sets}
    messages: list[Json] = []
    needs: dict[str, list[Json]] = {"A": [], "B": []}
    pending = [
        (
            "A",
            "B",
            ReconcileFrame(0, FLAG_OWN, initiate(index["A"], CONFIG, ranks["A"].__getitem__)),
        )
    ]
    while pending:
        sender, receiver, frame = pending.pop(0)
        messages.append({"from": sender, "hex": encode_frame(frame).hex()})
        out = respond(index[receiver], frame.ranges, CONFIG, ranks[receiver].__getitem__)
        needs[receiver] += [[e.hex(), r] for e, r in zip(out.need, out.ranks, strict=True)]
        if out.wants_reply:
            flags = FLAG_FINAL | (0 if frame.flags & FLAG_OWN else FLAG_OWN)
            pending.append((receiver, sender, ReconcileFrame(0, flags, out.reply)))
    assert {bytes.fromhex(e) for e, _ in needs["A"]} == set(only_b)
    assert {bytes.fromhex(e) for e, _ in needs["B"]} == set(only_a)
    return {
        "branching": CONFIG.branching,
        "ids_threshold": CONFIG.ids_threshold,
        "max_ids_per_range": CONFIG.max_ids_per_range,
        "ids": {side: [e.hex() for e in ids] for side, ids in sets.items()},
        "messages": messages,
        "needs": needs,
    }


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
        assert_raises("SchemaError", respond, IdIndex(_ids("id", 4)), frame.ranges, CONFIG)
        reconcile_rejected.append({"name": name, "hex": raw.hex(), "error": "SchemaError"})
    fp_sets = {"empty": [], "one": _ids("fp", 1), "three": _ids("fp", 3)}
    fingerprints = [
        {
            "name": name,
            "ids": [e.hex() for e in ids],
            "fingerprint": fingerprint(sum(int.from_bytes(e, "big") for e in ids), len(ids)).hex(),
        }
        for name, ids in fp_sets.items()
    ]
    return {
        "format": FORMAT_NOTE,
        "frames": frames,
        "rejected": rejected,
        "reconcile_rejected": reconcile_rejected,
        "fingerprints": fingerprints,
        "exchange": _exchange(),
    }
