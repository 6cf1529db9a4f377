"""scheme2.json: whole envelopes with wrap scheme 2 (docs/PROTOCOL.md §15.3,
§15.5, §19.13), a conversation replayed step by step.

The accounts of envelopes.json (alice: ``a1``, ``a2``; bob: ``b1``).  ``b1``
and ``a1`` each hold one signed prekey (recorded secret and id, as their
records would name them).  Step 1: ``a1`` seals a text to bob, setting a
session up with ``b1`` from ``b1``'s signed prekey (no one-time prekey,
§19.4), the wrap sealed to that prekey.  Step 2: ``b1`` answers on that
session; alice's ``a2`` advertises nothing, so it gets scheme 1 in the same
envelope (mixed schemes).  Step 3: ``a1`` again, now a plain ratchet
message.  Step 4: ``b1``, its sessions lost (restored from a backup), seals
a session reset (kind 16, §19.15) naming step 1's session from an empty
book: a new set-up with ``a1``; its result is not kept, so the refusals
below still see ``b1``'s book after step 3.  Every seal and every open is
reproduced from the recorded inputs; each reader's session state after opening is recorded
(``Session.to_bytes``, §19.8).
"""

from __future__ import annotations

from protocol.core.canonical import decode
from protocol.messaging import envelope as env
from protocol.messaging.content import Content, ReplayGuard, Text, encode_content
from protocol.messaging.prekeys import PrekeyStore
from protocol.messaging.ratchet import encode_state, x25519_public
from protocol.messaging.resets import SessionReset
from protocol.messaging.scheme2 import Reach2, ReceiveSessions, SendSessions
from protocol.messaging.sessions import SessionBook

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
    to_tagged,
)
from .envelope_vectors import DEVICES, accounts

PREKEYS = {"a1": (9, "scheme2/a1-spk"), "b1": (7, "scheme2/b1-spk")}
NOW_MS = T0 + 60_000


def build() -> dict[str, Json]:
    ledger, alice, bob, events = accounts()
    account_of = {"a1": alice, "a2": alice, "b1": bob}
    keys = {d: device_keys(label) for d, label in DEVICES.items()}
    secrets = {d: bytes_from_label(label) for d, (_, label) in PREKEYS.items()}
    spk = {d: x25519_public(s) for d, s in secrets.items()}
    stores = {d: PrekeyStore().with_signed(i, secrets[d], T0) for d, (i, _) in PREKEYS.items()}
    books = {d: SessionBook() for d in DEVICES}
    steps: list[Json] = []
    raws: list[bytes] = []

    def step(
        name: str, sender: str, to: bytes, content: Content, counter: int, lost: bool = False
    ) -> None:
        reach = {
            keys[d].sign_public: Reach2(PREKEYS[d][0], spk[d], True) for d in PREKEYS if d != sender
        }
        seed = bytes_from_label(f"scheme2/seed/{name}")
        timestamp = T0 + 20_000 + len(steps)
        sealed = env.seal(
            PARAMS,
            keys[sender],
            ledger.state(account_of[sender]),
            ledger.state(to),
            content,
            counter=counter,
            timestamp=timestamp,
            seed=seed,
            sessions=SendSessions(SessionBook() if lost else books[sender], reach, spk.get(sender)),
        )
        assert sealed.book is not None
        if not lost:
            books[sender] = sealed.book
        kind, body = encode_content(content)
        header = env.peek(sealed.raw, PARAMS)
        readers: list[Json] = []
        for reader, k in keys.items():
            if k.sign_public not in sealed.wrapped_for:
                continue
            fresh = bytes_from_label(f"scheme2/fresh/{name}/{reader}")
            book = books[reader]
            store = stores.get(reader, PrekeyStore())
            inputs = ReceiveSessions(lambda sid, who, b=book: b, store, NOW_MS, fresh)
            opened = env.open_envelope(
                PARAMS, sealed.raw, to, k, env.ledger_lookup(ledger), ReplayGuard(), inputs
            )
            assert opened.content == content
            entry: dict[str, Json] = {
                "device": reader,
                "fresh": fresh.hex(),
                "scheme": opened.scheme,
                "sender_device": opened.sender_device.hex(),
                "content_kind": kind,
                "content_body": body.hex(),
            }
            if opened.book is not None and opened.session_id is not None:
                books[reader] = opened.book
                entry["session_id"] = opened.session_id.hex()
                state = opened.book.entries[opened.session_id].state
                entry["state_after"] = encode_state(state).hex()
            readers.append(entry)
        raws.append(sealed.raw)
        steps.append(
            {
                "name": name,
                "sender": sender,
                "recipient_account": to.hex(),
                "counter": counter,
                "timestamp": timestamp,
                "seed": seed.hex(),
                "content_kind": kind,
                "content_body": body.hex(),
                "scheme2_for": sorted(d for d in PREKEYS if d != sender),
                "sender_book": "empty" if lost else "kept",
                "wraps": [
                    {
                        "device": w.device.hex(),
                        "scheme": w.scheme,
                        "key": w.enc_public.hex(),
                        "data_bytes": len(w.data),
                    }
                    for w in header.wraps
                ],
                "hex": sealed.raw.hex(),
                "value": to_tagged(decode(sealed.raw, len(sealed.raw))),
                "opened_by": readers,
            }
        )

    step("a set-up from b1's signed prekey", "a1", bob, Text("hello on a session"), 1)
    step("b1's answer, a2 in scheme 1", "b1", alice, Text("hello back"), 1)
    step("a1 again: a ratchet message", "a1", bob, Text("and again"), 2)
    (first,) = books["b1"].entries
    step("b1, its sessions lost, asks for a reset", "b1", alice, SessionReset((first,)), 2, True)

    # b1, after the three steps, refuses the first again: its key is spent
    b1 = keys["b1"]
    book = books["b1"]
    again = ReceiveSessions(lambda sid, who: book, stores["b1"], NOW_MS, bytes(32))
    assert_raises(
        "DuplicateMessageError", env.open_envelope, PARAMS, raws[0], bob, b1,
        env.ledger_lookup(ledger), ReplayGuard(), again,
    )  # fmt: skip
    # b1 without that session: step 3 names a session it does not hold (§19.15)
    lost = ReceiveSessions(lambda sid, who: SessionBook(), stores["b1"], NOW_MS, bytes(32))
    assert_raises(
        "SessionNotHeldError", env.open_envelope, PARAMS, raws[2], bob, b1,
        env.ledger_lookup(ledger), ReplayGuard(), lost,
    )  # fmt: skip
    return {
        "description": "A conversation in wrap scheme 2 (docs/PROTOCOL.md §15.3, §15.5, "
        "§19.13): ingest 'events' into a ledger on 'params'; give each device of 'prekeys' "
        "a PrekeyStore holding its signed prekey (current) and every device an empty "
        "SessionBook; then, step by step, seal(sender, its state, the recipient's state, "
        "content, counter, timestamp, seed) with scheme 2 for the devices in "
        "'scheme2_for' (Reach2(spk_id, spk, sealed to the prekey)) and the sender's own "
        "signed prekey, keep the sender's new book (with 'sender_book' 'empty': seal from "
        "an empty book and keep nothing, a device that lost its sessions, §19.15), and "
        "check hex; each 'opened_by' "
        "device opens it with its book, store, now_ms and 'fresh', keeps the new book, "
        "and gets exactly its fields ('state_after': the session's state, §19.8). "
        "'refused': b1 opening step 1 again after step 3, and step 3 with an empty book "
        "(the wrap names a session it does not hold: what a reset is asked for on).",
        "format": FORMAT_NOTE,
        "params": params_json(),
        "devices": {d: device_json(label) for d, label in DEVICES.items()},
        "accounts": {"alice": alice.hex(), "bob": bob.hex()},
        "events": [e.raw.hex() for e in events],
        "prekeys": {
            d: {"id": i, "secret": secrets[d].hex(), "public": spk[d].hex()}
            for d, (i, _) in PREKEYS.items()
        },
        "now_ms": NOW_MS,
        "steps": steps,
        "refused": [
            {
                "name": "step 1 opened again by b1 after step 3",
                "reader": "b1",
                "step": 0,
                "error": "DuplicateMessageError",
                "code": "session_duplicate",
                "book": "kept",
            },
            {
                "name": "step 3 opened by b1 without its sessions",
                "reader": "b1",
                "step": 2,
                "error": "SessionNotHeldError",
                "code": "session_wrong",
                "book": "empty",
            },
        ],
    }
