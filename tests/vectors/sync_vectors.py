"""sync.json: account-wide edits (docs/PROTOCOL.md §15.19): an account's
log, edits signed by its devices (their signing input and bytes), a batch
(content kind 32), edits a receiver must refuse, and which edit wins each
key once everything merged, including a revoked device's unseen edit."""

from __future__ import annotations

from protocol.core.canonical import Value, encode
from protocol.messaging import sync
from protocol.messaging.sync import Edit, LedgerView, SyncBook, SyncEdits, make_edit

from ._common import FORMAT_NOTE, PARAMS, T0, Json, assert_raises, params_json, to_tagged
from .history_vectors import Story


def _story() -> Story:
    s = Story("sync", "d0 adds d1; d1 acts on a branch its revocation does not see")
    s.add("a1", "d0", "d1", ["g"])
    s.profile("p1", "d1", "thief branch", ["a1"])
    s.revoke("rv", "d0", "d1", ["a1"])
    return s


def _edit(
    s: Story, dev: str, heads: list[str], clock: tuple[int, int], key: str, value: Value
) -> Edit:
    ids = [s.events[h].id for h in heads]
    return make_edit(PARAMS, s.dev(dev), s.account, ids, clock, key, value)


def _edit_json(label: str, s: Story, e: Edit, heads: list[str]) -> dict[str, Json]:
    return {
        "label": label,
        "device_label": next(k for k in s.dev_labels if s.dev(k).sign_public == e.device),
        "heads": heads,
        "clock": list(e.clock),
        "key": e.key,
        "value": to_tagged(e.value),
        "signing_input_hex": sync._signed_message(PARAMS, e.unsigned()).hex(),
        "signature_hex": e.signature.hex(),
        "edit_hex": e.encode().hex(),
    }


def _rejected(good: Edit) -> list[dict[str, Json]]:
    forged = bytearray(good.encode())
    forged[-1] ^= 1
    f = good.to_wire()
    heads = list(good.heads)
    cases: list[tuple[str, bytes, str]] = [
        ("signature does not verify", bytes(forged), "SyncForgedError"),
        ("version 2", encode([2, *f[1:]]), "SchemaError"),
        ("no heads", encode([*f[:3], [], *f[4:]]), "SchemaError"),
        ("a head twice", encode([*f[:3], heads * 2, *f[4:]]), "SchemaError"),
        ("key not printable", encode([*f[:5], "a\nb", *f[6:]]), "SchemaError"),
        ("7 elements", encode(f[:7]), "SchemaError"),
        ("over 2048 bytes", b"\x00" * (sync.MAX_EDIT_BYTES + 1), "SizeLimitError"),
    ]
    for _, blob, error in cases:
        assert_raises(error, sync.decode_edit, blob, PARAMS)
    return [{"label": lbl, "edit_hex": b.hex(), "error": err} for lbl, b, err in cases]


def build() -> dict[str, Json]:
    s = _story()
    log = LedgerView(s.ledger, s.account)
    edits = [
        (
            "d0 names alice",
            _edit(s, "d0", ["g"], (T0 + 9_000, 0), "contact/aa", {"name": "alice"}),
            ["g"],
        ),
        (
            "d1 renames her later in the log",
            _edit(s, "d1", ["a1"], (T0 + 1, 0), "contact/aa", {"name": "Alice"}),
            ["a1"],
        ),
        ("d0 blocks nobody", _edit(s, "d0", ["a1"], (T0 + 10, 0), "block/bb", False), ["a1"]),
        (
            "d1 blocks, unseen by its revocation",
            _edit(s, "d1", ["p1"], (T0 + 30, 0), "block/bb", True),
            ["p1"],
        ),
        (
            "the same clock: the device key decides",
            _edit(s, "d0", ["a1"], (T0 + 5, 1), "read/cc", 7),
            ["a1"],
        ),
        (
            "the same clock, the other device",
            _edit(s, "d1", ["a1"], (T0 + 5, 1), "read/cc", 9),
            ["a1"],
        ),
    ]
    book = SyncBook(PARAMS, s.account)
    for _, e, _ in edits:
        book.offer(e, log, T0)
    winners = {}
    for key in book.keys(""):
        w = book.winner(key, log)
        winners[key] = None if w is None else next(lbl for lbl, e, _ in edits if e == w)
    batch = SyncEdits.of([edits[0][1], edits[1][1]])
    return {
        "format": FORMAT_NOTE,
        "params": params_json(),
        "domain_hex": sync.D_SYNC_EDIT.hex(),
        "limits": {
            "max_key_chars": sync.MAX_KEY_CHARS,
            "max_value_bytes": sync.MAX_VALUE_BYTES,
            "max_edit_bytes": sync.MAX_EDIT_BYTES,
            "max_heads": sync.MAX_HEADS,
            "max_edits_per_batch": sync.MAX_EDITS_PER_BATCH,
            "max_skew_ms": sync.MAX_SKEW_MS,
        },
        "account_hex": s.account.hex(),
        "devices": {label: s.dev(label).sign_public.hex() for label in s.dev_labels},
        "device_seed_labels": dict(s.dev_labels),
        "events": [{"label": lbl, "raw_hex": s.events[lbl].raw.hex()} for lbl in s.order],
        "edits": [_edit_json(lbl, s, e, heads) for lbl, e, heads in edits],
        "batch": {
            "content_kind": sync.SYNC_EDITS_KIND,
            "content_hex": encode(batch.to_wire()).hex(),
            "edits": [edits[0][0], edits[1][0]],
        },
        "rejected": _rejected(edits[0][1]),
        "winners": winners,
    }
