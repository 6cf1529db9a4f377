"""scheme2.json (PROTOCOL.md §15.3, §15.5, §19.13): a conversation in wrap
scheme 2, reproduced step by step from its recorded inputs alone."""

from __future__ import annotations

from typing import Any

import pytest

from protocol.core import keys
from protocol.core.canonical import decode
from protocol.log.ledger import IngestStatus, Ledger
from protocol.messaging import envelope, session_errors
from protocol.messaging.content import ReplayGuard, decode_content, encode_content
from protocol.messaging.prekeys import PrekeyStore
from protocol.messaging.ratchet import encode_state
from protocol.messaging.scheme2 import Reach2, ReceiveSessions, SendSessions
from protocol.messaging.sessions import SessionBook
from tests.vectors._common import T0, from_tagged

from .vector_support import load, params_of


def _device(data: dict[str, Any], name: str) -> keys.DeviceKeys:
    return keys.DeviceKeys.from_random(bytes.fromhex(data["devices"][name]["seed"]))


def test_scheme2_conversation_step_by_step() -> None:
    data = load("scheme2.json")
    params = params_of(data)
    ledger = Ledger(params)
    for raw in data["events"]:
        assert ledger.ingest(bytes.fromhex(raw)).status is IngestStatus.ACCEPTED
    accounts = {a: bytes.fromhex(h) for a, h in data["accounts"].items()}
    account_of = {d: accounts["alice" if d.startswith("a") else "bob"] for d in data["devices"]}
    dev = {d: _device(data, d) for d in data["devices"]}
    pk = data["prekeys"]
    stores = {
        d: PrekeyStore().with_signed(p["id"], bytes.fromhex(p["secret"]), T0) for d, p in pk.items()
    }
    books = {d: SessionBook() for d in dev}
    raws = []
    assert [s["name"] for s in data["steps"]]
    for s in data["steps"]:
        sender = s["sender"]
        reach = {
            dev[d].sign_public: Reach2(pk[d]["id"], bytes.fromhex(pk[d]["public"]), True)
            for d in s["scheme2_for"]
        }
        own = bytes.fromhex(pk[sender]["public"]) if sender in pk else None
        to = bytes.fromhex(s["recipient_account"])
        content = decode_content(s["content_kind"], bytes.fromhex(s["content_body"]))
        lost = s["sender_book"] == "empty"  # a device that lost its sessions (§19.15)
        sealed = envelope.seal(
            params, dev[sender], ledger.state(account_of[sender]), ledger.state(to), content,
            counter=s["counter"], timestamp=s["timestamp"], seed=bytes.fromhex(s["seed"]),
            sessions=SendSessions(SessionBook() if lost else books[sender], reach, own),
        )  # fmt: skip
        assert sealed.raw.hex() == s["hex"], s["name"]
        assert decode(sealed.raw, len(sealed.raw)) == from_tagged(s["value"])
        assert sealed.book is not None
        if not lost:
            books[sender] = sealed.book
        raws.append(sealed.raw)
        for r in s["opened_by"]:
            d = r["device"]
            book = books[d]
            inputs = ReceiveSessions(
                lambda sid, who, b=book: b, stores.get(d, PrekeyStore()), data["now_ms"],
                bytes.fromhex(r["fresh"]),
            )  # fmt: skip
            opened = envelope.open_envelope(
                params, sealed.raw, to, dev[d], envelope.ledger_lookup(ledger), ReplayGuard(),
                inputs,
            )  # fmt: skip
            kind, body = encode_content(opened.content)
            got: dict[str, Any] = {
                "device": d,
                "fresh": r["fresh"],
                "scheme": opened.scheme,
                "sender_device": opened.sender_device.hex(),
                "content_kind": kind,
                "content_body": body.hex(),
            }
            if opened.book is not None and opened.session_id is not None:
                books[d] = opened.book
                got["session_id"] = opened.session_id.hex()
                got["state_after"] = encode_state(
                    opened.book.entries[opened.session_id].state
                ).hex()
            assert got == r, (s["name"], d)
    assert {r["scheme"] for s in data["steps"] for r in s["opened_by"]} == {1, 2}
    for case in data["refused"]:
        d = case["reader"]
        book = SessionBook() if case["book"] == "empty" else books[d]
        inputs = ReceiveSessions(lambda sid, who, b=book: b, stores[d], data["now_ms"], bytes(32))
        with pytest.raises(session_errors.SessionError) as info:
            envelope.open_envelope(
                params, raws[case["step"]], account_of[d], dev[d],
                envelope.ledger_lookup(ledger), ReplayGuard(), inputs,
            )  # fmt: skip
        assert type(info.value).__name__ == case["error"]
        assert info.value.code == case["code"]
