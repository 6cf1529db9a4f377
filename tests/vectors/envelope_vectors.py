"""envelopes.json: sealed envelopes (docs/PROTOCOL.md §15.3), what each
reader opens from them (§15.5), envelopes a reader refuses, and the frames
of direct delivery, /smu/message/1 (§15.14).

Two accounts are built from events (recorded as hex, in a valid delivery
order): alice with devices ``a1`` and ``a2``, bob with ``b1``.  ``a1``
seals to bob: the content key is wrapped for ``b1`` only (the header names
the recipient's devices only, §15.1); ``a2`` gets the text's copy
(``SentCopy``, §15.22) in an envelope to alice's own account, in which a
decoy wrap stands in for ``a1``.  ``seal`` takes all its
randomness from one 32-byte seed, so every envelope is reproduced byte for
byte from the recorded inputs.
"""

from __future__ import annotations

import dataclasses

from protocol.core.canonical import decode
from protocol.log import authoring
from protocol.log.events import Event
from protocol.log.ledger import IngestStatus, Ledger
from protocol.messaging import envelope as env
from protocol.messaging.content import (
    Content,
    HistoryBundle,
    HistoryEntry,
    Receipt,
    ReceiptStatus,
    ReplayError,
    ReplayGuard,
    SentCopy,
    Text,
    encode_content,
)
from protocol.messaging.history import EntryVerdict, check_entry, inner_of, signed_message

from ._common import (
    FORMAT_NOTE,
    PARAMS,
    T0,
    Json,
    assert_raises,
    bytes_from_label,
    device_json,
    device_keys,
    params_json,
    recovery_key,
    to_tagged,
)

DEVICES = {"a1": "envelopes/a1", "a2": "envelopes/a2", "b1": "envelopes/b1"}


def accounts() -> tuple[Ledger, bytes, bytes, list[Event]]:
    """The ledger holding alice (a1, a2) and bob (b1), both accounts' ids,
    and their events in the order they were ingested."""
    ledger = Ledger(PARAMS)
    a1, a2, b1 = (device_keys(DEVICES[d]) for d in ("a1", "a2", "b1"))
    ga = authoring.genesis(
        PARAMS,
        a1,
        recovery_key("envelopes/alice-recovery"),
        display_name="alice",
        device_name="a1",
        timestamp=T0,
    )
    add = authoring.add_device(
        PARAMS,
        ga.id,
        [ga.id],
        a1,
        authoring.introduce(PARAMS, ga.id, a2, "a2"),
        timestamp=T0 + 1000,
    )
    gb = authoring.genesis(
        PARAMS,
        b1,
        recovery_key("envelopes/bob-recovery"),
        display_name="bob",
        device_name="b1",
        timestamp=T0 + 2000,
    )
    events = [ga, add, gb]
    for e in events:
        assert ledger.ingest(e.raw).status is IngestStatus.ACCEPTED
    return ledger, ga.id, gb.id, events


def _seal(
    ledger: Ledger, alice: bytes, to: bytes, content: Content, counter: int, label: str
) -> tuple[env.SealedEnvelope, int, bytes]:
    timestamp = T0 + 10_000 + counter
    seed = bytes_from_label(f"envelopes/seed/{label}")
    sealed = env.seal(
        PARAMS,
        device_keys(DEVICES["a1"]),
        ledger.state(alice),
        ledger.state(to),
        content,
        counter=counter,
        timestamp=timestamp,
        seed=seed,
    )
    return sealed, timestamp, seed


def _opened(ledger: Ledger, raw: bytes, account: bytes, reader: str) -> env.OpenedEnvelope:
    return env.open_envelope(
        PARAMS,
        raw,
        account,
        device_keys(DEVICES[reader]),
        env.ledger_lookup(ledger),
        ReplayGuard(),
    )


def _copy_raw(ledger: Ledger, alice: bytes, bob: bytes, sealed: env.SealedEnvelope) -> bytes:
    """The text's copy for a2 exactly as the copy case seals it."""
    copy = SentCopy(bob, sealed.message_id, Text("hello bob \U0001f44b"), sealed.proof)
    name = "the text's copy for the sender's other device"
    return _seal(ledger, alice, alice, copy, 1, name)[0].raw


def _flip(raw: bytes, at: int) -> bytes:
    out = bytearray(raw)
    out[at] ^= 0x01
    return bytes(out)


def _history(ledger: Ledger, alice: bytes, bob: bytes, sealed: env.SealedEnvelope) -> Json:
    """A history bundle a2 would relay to a new device of alice (§15.4):
    the text a1 sealed to bob, with the proof a2 received in the text's copy
    (§15.22: the original's), and the same entry with its text changed (the
    proof no longer holds)."""
    copy = _opened(ledger, _copy_raw(ledger, alice, bob, sealed), alice, "a2")
    assert isinstance(copy.content, SentCopy) and copy.content.proof is not None
    entry = HistoryEntry(
        bob,
        copy.content.message_id,
        copy.sender_account,
        copy.sender_device,
        copy.timestamp,
        copy.content.content,
        copy.content.proof,
    )
    proof = entry.proof
    assert proof is not None
    bare = dataclasses.replace(entry, content=Text("unproven"), proof=None)
    kind, body = encode_content(HistoryBundle(0, 1, (entry, bare)))
    forged = dataclasses.replace(entry, content=Text("hello bob, send money"))
    verdicts = {
        "genuine": check_entry(entry, alice, env.ledger_lookup(ledger), ledger.account_of),
        "forged": check_entry(forged, alice, env.ledger_lookup(ledger), ledger.account_of),
    }
    assert verdicts["genuine"].verdict is EntryVerdict.VERIFIED
    assert verdicts["forged"].verdict is EntryVerdict.FORGED
    return {
        "note": "content kind 4: the first entry is the text above (a1 to bob) with the "
        "proof a2 received in its copy, the second an entry without a proof ([]). "
        "'inner' is the envelope's inner rebuilt from the entry's claims and its proof, "
        "'signed' what a1 signed over it (D_ENV_SIG || header_hash || H(D_ENV_INNER, "
        "inner)). Checked by alice's device against the ledger of 'events': the genuine "
        "entry is 'verified', the second 'unproven', and 'forged_text' in place of the "
        "first entry's text 'forged'.",
        "receiving_account": alice.hex(),
        "content_kind": kind,
        "content_body": body.hex(),
        "value": to_tagged(decode(body, len(body))),
        "proof": {
            "header_hash": proof.header_hash.hex(),
            "counter": proof.counter,
            "views": [[c, [h.hex() for h in heads]] for c, heads in proof.views],
            "signature": proof.signature.hex(),
        },
        "inner": inner_of(entry, proof).hex(),
        "signed": signed_message(entry, proof).hex(),
        "verdicts": ["verified", "unproven"],
        "forged_text": "hello bob, send money",
        "forged_verdict": verdicts["forged"].verdict.value,
    }


def build() -> dict[str, Json]:
    ledger, alice, bob, events = accounts()
    cases: list[Json] = []
    sealed_text = None
    text = Text("hello bob \U0001f44b")
    contents: list[tuple[str, Content, int, bytes]] = [
        ("a text", text, 1, bob),
        ("a DELIVERED receipt", Receipt(ReceiptStatus.DELIVERED, (bytes(16),)), 2, bob),
    ]
    for name, content, counter, to in contents:
        sealed, timestamp, seed = _seal(ledger, alice, to, content, counter, name)
        if sealed_text is None:
            sealed_text = sealed
            # the text's copy for a2, on alice's own stream (§15.22)
            copy = SentCopy(bob, sealed.message_id, text, sealed.proof)
            contents.append(("the text's copy for the sender's other device", copy, 1, alice))
        kind, body = encode_content(content)
        readers = []
        for reader, account in (("b1", bob), ("a2", alice)):
            if account != to:
                continue
            opened = _opened(ledger, sealed.raw, account, reader)
            assert opened.content == content and opened.counter == counter
            readers.append(
                {
                    "device": reader,
                    "account": account.hex(),
                    "sender_account": opened.sender_account.hex(),
                    "sender_device": opened.sender_device.hex(),
                    "counter": opened.counter,
                    "timestamp": opened.timestamp,
                    "message_id": opened.message_id.hex(),
                    "content_kind": kind,
                    "content_body": body.hex(),
                    "wrapped_for": [d.hex() for d in opened.wrapped_for],
                    "views_same": [v.same for v in opened.views],
                }
            )
        cases.append(
            {
                "name": name,
                "sender": "a1",
                "recipient_account": to.hex(),
                "counter": counter,
                "timestamp": timestamp,
                "seed": seed.hex(),
                "content_kind": kind,
                "content_body": body.hex(),
                "hex": sealed.raw.hex(),
                "value": to_tagged(decode(sealed.raw, len(sealed.raw))),
                "opened_by": readers,
            }
        )
    assert sealed_text is not None
    raw = sealed_text.raw
    refused: list[Json] = []
    for name, data, reader, error, code in [
        # the envelope ends with its ciphertext, whose last 16 bytes are the AEAD tag
        ("the last ciphertext byte flipped", _flip(raw, len(raw) - 1), "b1", "DecryptError",
         "decrypt"),
        ("cut short by one byte", raw[:-1], "b1", "DecodeError", "decode"),
        ("one trailing byte", raw + b"\x00", "b1", "NonCanonicalError", "non_canonical"),
        ("opened by the sender's own device, which has no wrap", raw, "a1",
         "NotForThisDeviceError", "not_for_me"),
    ]:  # fmt: skip
        account = alice if reader.startswith("a") else bob
        assert_raises(error, _opened, ledger, data, account, reader)
        refused.append(
            {"name": name, "reader": reader, "hex": data.hex(), "error": error, "code": code}
        )
    # a replay: the same envelope opened twice against one replay state
    guard = ReplayGuard()
    b1 = device_keys(DEVICES["b1"])
    env.open_envelope(PARAMS, raw, bob, b1, env.ledger_lookup(ledger), guard)
    assert_raises(
        "ReplayError", env.open_envelope, PARAMS, raw, bob, b1, env.ledger_lookup(ledger), guard
    )
    delivery = [
        {"name": "ENVELOPE", "hex": env.delivery_frame(raw[:40]).hex(), "envelope": raw[:40].hex()},
        {"name": "ACCEPTED", "hex": env.delivery_answer(None).hex()},
        {
            "name": "REFUSED: replay",
            "hex": env.delivery_answer(ReplayError("counter 1 was already accepted")).hex(),
        },
    ]
    assert env.decode_delivery(bytes.fromhex(str(delivery[0]["hex"]))) == raw[:40]
    assert env.decode_delivery_answer(bytes.fromhex(str(delivery[1]["hex"]))) is None
    delivery_rejected: list[Json] = []
    for name, hexed, error in [
        ("delivery version 2", "920201", "UnsupportedVersionError"),
        ("ENVELOPE with a str envelope", "930101a161", "SchemaError"),
        ("an answer where the envelope belongs", "920110", "SchemaError"),
        ("ENVELOPE without its envelope", "920101", "SchemaError"),
    ]:
        assert_raises(error, env.decode_delivery, bytes.fromhex(hexed))
        delivery_rejected.append({"name": name, "hex": hexed, "error": error})
    return {
        "description": "Envelopes sealed by alice's device a1 to bob's account "
        "(docs/PROTOCOL.md §15.3): ingest 'events' (hex, in order) into a ledger on "
        "'params', then seal(a1, alice's state, bob's state, content, counter, timestamp, "
        "seed) == hex, and open_envelope as each 'opened_by' device (with an empty "
        "replay state) gives exactly its fields. 'refused': open_envelope as 'reader' "
        "raises 'error'. 'delivery': frames of /smu/message/1 (§15.14); "
        "'delivery_rejected': decode_delivery raises 'error'. 'history': a history "
        "bundle whose entries prove their senders (§15.4 History proofs).",
        "format": FORMAT_NOTE,
        "params": params_json(),
        "devices": {d: device_json(label) for d, label in DEVICES.items()},
        "accounts": {"alice": alice.hex(), "bob": bob.hex()},
        "events": [e.raw.hex() for e in events],
        "envelopes": cases,
        "refused": refused,
        "replay": {
            "note": "the first envelope, opened twice by b1 against one replay state: "
            "the second open raises ReplayError",
            "error": "ReplayError",
            "code": "replay",
        },
        "delivery": delivery,
        "delivery_rejected": delivery_rejected,
        "history": _history(ledger, alice, bob, sealed_text),
    }
