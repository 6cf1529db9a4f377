"""Texts whose message key is gone at the receiver, over real SQLite
(PROTOCOL.md §19.5, §19.7, §19.13, §19.15): the receiver answers
``session_key_gone``, never ``session_duplicate``; over a direct stream the
sender seals that text again under a new session and it arrives exactly
once; through a mailbox the receiver asks with a reset; a true duplicate
is still taken as delivered; a stranger's session is held to the lower
skip bounds, raised once the account is a contact."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from node.services.outbox_policy import ALREADY_THERE
from node.services.resets import KIND_RESET, MAX_RESEALS
from protocol.core.errors import InvalidInput
from protocol.messaging.prekeys import OneTimePrekey
from protocol.messaging.ratchet import STRANGER_MAX_SKIP, STRANGER_MAX_SKIPPED, x25519_public
from protocol.messaging.resets import KeyGoneError
from protocol.messaging.session_errors import SessionKeyGoneError

from .messaging_support import Node
from .scheme2_support import h
from .test_node_resets import LATER, Pair, _deposit, _due_for, _reply, _resets_sent, _texts
from .test_node_sessions import _send, _sessions


def _direct(receiver: Node, seen: list[str] | None = None) -> object:
    """The sender's direct path to ``receiver``, answering as the
    ``/smu/message/1`` stream does (``DirectDelivery.attempt``)."""

    async def deliver(device: bytes, account: bytes, envelope: bytes) -> str | None:
        try:
            receiver.service.receive(envelope)
        except InvalidInput as exc:
            if seen is not None:
                seen.append(exc.code)
            return None if exc.code in ALREADY_THERE else f"{exc.code}: {exc}"
        if seen is not None:
            seen.append("accepted")
        return None

    return deliver


def _deliver(sender: Node, device: bytes, envelope: bytes) -> None:
    """One attempt of the sender's outbox row carrying ``envelope``."""
    (due,) = [
        d
        for d in sender.service.store.due(LATER, 1000)
        if d.device == device and d.envelope == envelope
    ]
    trio.run(sender.service._deliver_one, due)


def _state(node: Node, device: bytes, envelope: bytes) -> str:
    rows = node.query(
        "SELECT d.state FROM deliveries d JOIN messages m ON m.id = d.message "
        "WHERE d.device=? AND m.envelope=?",
        (device, envelope),
    )
    return str(rows[0][0])


def _stranger_pair(tmp_path: Path) -> Pair:
    """Bob's d0 does not know Alice: her texts are requests and her
    session with it a stranger's (§19.7's lower bounds)."""
    p = Pair(tmp_path)
    p.b0.contacts.remove(p.alice.account)
    assert not p.b0.contacts.is_contact(p.alice.account)
    return p


def test_a_text_whose_key_the_bound_dropped_is_sent_again_and_arrives_once(
    tmp_path: Path,
) -> None:
    p = _stranger_pair(tmp_path)
    bob, d0 = p.bob, p.bob.keys["d0"].sign_public
    seen: list[str] = []
    p.a.service.direct.attempt = _direct(p.b0, seen)  # type: ignore[method-assign]
    sent = [_send(p.a, bob, f"t{i}") for i in range(STRANGER_MAX_SKIP + 10)]
    # t0 sets up; t32 skips 31 keys; t41 skips 8 more: t1 .. t7 are dropped
    for i in (0, STRANGER_MAX_SKIP, STRANGER_MAX_SKIP + 9):
        _deliver(p.a, d0, sent[i])
    assert seen == ["accepted"] * 3
    stored = p.b0.query("SELECT state FROM sessions")
    assert len(stored) == 1
    requests = [r.text for r in p.b0.service.store.requests(0)]
    assert sorted(requests) == ["t0", "t32", "t41"]

    # t1's key went unused: refused as gone, not as "already there"
    old = {bytes(r[0]) for r in _sessions(p.a) if bytes(r[2]) == d0}
    _deliver(p.a, d0, sent[1])
    assert seen[-1] == "session_key_gone"
    new = {bytes(r[0]) for r in _sessions(p.a) if bytes(r[2]) == d0}
    assert len(old) == len(new) == 1 and not old & new  # that session ended; one set up
    # ... and sealed again under a new session for d0 only, not delivered
    assert _state(p.a, d0, sent[1]) == "pending"
    (again,) = [
        d
        for d in p.a.service.store.due(LATER, 200)
        if d.device == d0 and d.envelope != sent[1] and d.message == _message_of(p.a, sent[1])
    ]
    trio.run(p.a.service._deliver_one, again)
    assert seen[-1] == "accepted"
    requests = sorted(r.text for r in p.b0.service.store.requests(0))
    assert requests == ["t0", "t1", "t32", "t41"]  # exactly once
    state = p.a.query(
        "SELECT state FROM deliveries WHERE message=? AND device=?", (again.message, d0)
    )
    assert state == [("delivered",)]

    # a true duplicate is still "already there": t32 was stored, and its
    # answer lost on the way back (the row is tried again)
    p.a.db.write(
        [("UPDATE deliveries SET state='pending', next_try_ms=0 WHERE message=? AND device=?",
          (_message_of(p.a, sent[STRANGER_MAX_SKIP]), d0))]
    )  # fmt: skip
    _deliver(p.a, d0, sent[STRANGER_MAX_SKIP])
    assert seen[-1] == "session_duplicate"
    assert _state(p.a, d0, sent[STRANGER_MAX_SKIP]) == "delivered"
    assert sorted(r.text for r in p.b0.service.store.requests(0)) == requests


def _message_of(node: Node, envelope: bytes) -> bytes:
    rows = node.query("SELECT id FROM messages WHERE envelope=?", (envelope,))
    return bytes(rows[0][0])


def test_a_text_refused_as_gone_again_and_again_fails_typed(tmp_path: Path) -> None:
    p = _stranger_pair(tmp_path)
    d0 = p.bob.keys["d0"].sign_public
    text = _send(p.a, p.bob, "unlucky")

    async def gone(*args: object) -> str:
        return "session_key_gone: its key was dropped, or used"

    p.a.service.direct.attempt = gone  # type: ignore[method-assign]
    message = _message_of(p.a, text)
    for _ in range(MAX_RESEALS):
        (due,) = [d for d in p.a.service.store.due(LATER, 200) if d.message == message
                  and d.device == d0]  # fmt: skip
        trio.run(p.a.service._deliver_one, due)
        row = p.a.query("SELECT state FROM deliveries WHERE message=? AND device=?", (message, d0))
        assert row == [("pending",)]
    (due,) = [d for d in p.a.service.store.due(LATER, 200) if d.message == message
              and d.device == d0]  # fmt: skip
    trio.run(p.a.service._deliver_one, due)
    row = p.a.query(
        "SELECT state, last_error FROM deliveries WHERE message=? AND device=?", (message, d0)
    )
    assert row[0][0] == "failed" and str(row[0][1]).startswith("session_key_gone")


def test_a_receipt_refused_as_gone_is_never_counted_delivered(tmp_path: Path) -> None:
    """Only texts are sealed again; any other kind fails with the code."""
    from node.storage.messages import KIND_RECEIPT
    from protocol.messaging.content import Receipt, ReceiptStatus

    p = Pair(tmp_path)
    d0 = p.bob.keys["d0"].sign_public
    receipt = Receipt(ReceiptStatus.DELIVERED, (b"\x01" * 16,))
    p.a.service._seal_and_queue(p.bob.account, receipt, KIND_RECEIPT, "", only=[d0])

    async def gone(*args: object) -> str:
        return "session_key_gone: its key was dropped, or used"

    p.a.service.direct.attempt = gone  # type: ignore[method-assign]
    (due,) = [d for d in p.a.service.store.due(LATER, 200) if d.kind == KIND_RECEIPT]
    trio.run(p.a.service._deliver_one, due)
    row = p.a.query("SELECT state FROM deliveries WHERE message=?", (due.message,))
    assert row == [("failed",)]


def test_through_a_mailbox_the_receiver_asks_for_the_gone_text_with_a_reset(
    tmp_path: Path,
) -> None:
    """Nobody hears a refusal at a mailbox: the contact's device asks with
    a signed reset naming the session, and the sender re-seals what it owes."""
    p = Pair(tmp_path)
    alice, bob, d0 = p.alice, p.bob, p.bob.keys["d0"].sign_public
    p.b0.service.receive(_send(p.a, bob, "hello"))
    p.a.service.receive(_reply(p))
    # the lower bounds make the test short; a contact's are the full ones
    p.b0.service.sessions.is_contact = lambda account: False
    sent = [_send(p.a, bob, f"m{i}") for i in range(STRANGER_MAX_SKIPPED + 4)]
    _deposit(p.a, d0)
    p.b0.service.receive(sent[STRANGER_MAX_SKIPPED])  # skips m0 .. m31
    p.b0.service.receive(sent[-1])  # three more: m0 .. m2 are dropped
    with pytest.raises(KeyGoneError) as info:
        p.b0.service.receive(sent[0])
    assert isinstance(info.value, SessionKeyGoneError) and info.value.code == "session_key_gone"
    assert info.value.lost.claimed_sender == (alice.account, alice.keys["d0"].sign_public)
    assert _resets_sent(p.b0) == 1
    (reset,) = _due_for(p.b0, alice.keys["d0"].sign_public, KIND_RESET)
    p.a.service.receive(reset)
    p.b0.service.sessions.is_contact = p.b0.contacts.is_contact  # a contact's bounds again
    for env in _due_for(p.a, d0):
        try:
            p.b0.service.receive(env)
        except InvalidInput as exc:
            assert exc.code in ALREADY_THERE
    expected = sorted(["hello", *(f"m{i}" for i in range(len(sent)))])
    assert sorted(_texts(p.b0, alice.account)) == expected


def test_a_strangers_set_up_is_held_to_the_lower_bound_until_it_is_a_contact(
    tmp_path: Path,
) -> None:
    """Through the request path: a stranger's first text may skip at most
    32 keys (one request buys no 144 KB of state); once accepted as a
    contact, the same session takes the full jump."""
    p = _stranger_pair(tmp_path)
    d0 = p.bob.keys["d0"].sign_public
    seen: list[str] = []
    p.a.service.direct.attempt = _direct(p.b0, seen)  # type: ignore[method-assign]
    sent = [_send(p.a, p.bob, f"s{i}") for i in range(STRANGER_MAX_SKIP + 3)]
    _deliver(p.a, d0, sent[STRANGER_MAX_SKIP + 1])  # a set-up skipping 33 keys
    assert seen == ["session_too_far"]
    assert p.b0.query("SELECT COUNT(*) FROM sessions") == [(0,)]
    assert p.b0.service.store.requests(0) == []
    _deliver(p.a, d0, sent[STRANGER_MAX_SKIP])  # 32: within the bound
    assert seen[-1] == "accepted"
    (state,) = p.b0.query("SELECT length(state) FROM sessions")
    assert int(state[0]) < 4096  # 32 skipped keys, sealed at rest
    # accepted: alice is a contact now, and her next jump is a contact's
    p.b0.contacts.add(p.alice.account, "alice")
    more = [_send(p.a, p.bob, f"c{i}") for i in range(STRANGER_MAX_SKIP * 3)]
    _deliver(p.a, d0, more[-1])
    assert seen[-1] == "accepted"


class _Fetcher:
    """The prekey client as the node calls it (§19.16): each fetch for Bob's
    d0 yields the next one-time prekey his node would serve."""

    def __init__(self, node: Node, account: bytes, device: bytes, keys: list[tuple[int, bytes]]):
        self.node, self.account, self.device, self.keys = node, account, device, keys
        self.calls = 0

    async def prefetch(self, state: object) -> int:
        self.calls += 1
        if not self.keys:
            return 0
        prekey_id, secret = self.keys.pop(0)
        opk = OneTimePrekey(prekey_id, x25519_public(secret), 2**60)
        self.node.service.sessions.fetched_for(self.account, self.device, opk)
        return 1


def test_a_text_refused_for_a_reused_one_time_prekey_goes_again_with_a_fresh_one(
    tmp_path: Path,
) -> None:
    p = Pair(tmp_path)
    alice, bob, d0 = p.alice, p.bob, p.bob.keys["d0"].sign_public
    keeper = p.b0.service.sessions.prekeys
    secrets = [h(f"bob d0 one-time prekey {i}") for i in range(2)]
    keeper.commit(keeper.store.with_batch(100, 2**60, secrets))
    seen: list[str] = []
    p.a.service.direct.attempt = _direct(p.b0, seen)  # type: ignore[method-assign]
    served = _Fetcher(p.a, bob.account, d0, [(100, secrets[0])] * 2)  # served twice
    trio.run(served.prefetch, None)
    first = _send(p.a, bob, "first")
    _deliver(p.a, d0, first)
    assert seen == ["accepted"] and 100 in keeper.store.spent

    # both ends lose their sessions, and a server hands out key 100 again
    p.a.db.write([("DELETE FROM sessions", ())])
    p.b0.db.write([("DELETE FROM sessions", ())])
    trio.run(served.prefetch, None)
    second = _send(p.a, bob, "second")
    fetcher = _Fetcher(p.a, bob.account, d0, [(101, secrets[1])])
    p.a.service.prekey_client = fetcher  # type: ignore[assignment]
    _deliver(p.a, d0, second)
    assert seen[-1] == "prekey_reused" and fetcher.calls == 1
    assert _state(p.a, d0, second) == "pending"  # sealed again, not failed
    message = _message_of(p.a, second)
    (again,) = [d for d in p.a.service.store.due(LATER, 1000) if d.message == message
                and d.device == d0]  # fmt: skip
    assert again.envelope != second
    trio.run(p.a.service._deliver_one, again)
    assert seen[-1] == "accepted"
    assert 101 in keeper.store.spent  # the fresh bundle's key
    assert sorted(_texts(p.b0, alice.account)) == ["first", "second"]  # once each
    row = p.a.query("SELECT state FROM deliveries WHERE message=? AND device=?", (message, d0))
    assert row == [("delivered",)]
