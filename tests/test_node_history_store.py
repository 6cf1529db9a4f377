"""The node keeps each text's history proof and judges the history it
receives (PROTOCOL.md §15.4 *History proofs*), over a real database: a
message service without the network (``messaging_support``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.services.history import history_bundles
from node.storage.messages import KIND_TEXT
from protocol.messaging.content import HistoryBundle, Text
from protocol.messaging.envelope import ledger_lookup
from protocol.messaging.history import EntryVerdict, HistoryBehindError, check_bundle

from .conftest import History
from .messaging_support import Node, Peer


def _rows(node: Node, peer: bytes) -> list[tuple[str, bytes, bytes | None, bool]]:
    """(text, sender account, relayed by, has a proof) of each stored text
    of the conversation, read through the store (texts and proofs are
    sealed at rest, §15.21)."""
    store = node.service.store
    proofs = {(r.sender_account, r.message_id): r.proof for r in store.history(KIND_TEXT, 100)}
    return sorted(
        (r.text, r.sender_account, r.relayed_by, proofs[r.sender_account, r.message_id] is not None)
        for r in store.conversation(peer, KIND_TEXT)
    )


@pytest.fixture
def accounts() -> tuple[History, History]:
    alice = History(name="alice")
    alice.add("a1", "d0", "d1", ["g"])
    return alice, History(name="bob")


@pytest.fixture
def nodes(tmp_path: Path, accounts: tuple[History, History]) -> Iterator[tuple[Node, Node]]:
    alice, bob = accounts
    (tmp_path / "d0").mkdir()
    (tmp_path / "d1").mkdir()
    ticks = iter(range(10**6))
    # a clock that moves on every reading: what is signed and what is stored
    # must come from one reading
    d0 = Node(tmp_path / "d0", alice, [bob], clock_ms=lambda: 1_767_225_600_000 + next(ticks))
    d1 = Node(tmp_path / "d1", alice, [bob], device="d1")
    yield d0, d1
    d0.close()
    d1.close()


def test_sent_and_received_texts_keep_proofs_that_verify(
    nodes: tuple[Node, Node], accounts: tuple[History, History]
) -> None:
    d0, _ = nodes
    alice, bob = accounts
    d0.contacts.add(bob.account, "bob")
    d0.service.receive(Peer(bob, alice).seal("hi alice").raw)
    d0.service._seal_and_queue(bob.account, Text("hi bob"), 1, "hi bob")
    assert _rows(d0, bob.account) == [
        ("hi alice", bob.account, None, True),
        ("hi bob", alice.account, None, True),
    ]
    (bundle,) = history_bundles(d0.service.store, set())
    checks = check_bundle(bundle, alice.account, ledger_lookup(d0.ledger), d0.ledger.account_of)
    assert [c.verdict for c in checks] == [EntryVerdict.VERIFIED] * 2


def test_received_history_is_stored_as_its_checks_say(
    nodes: tuple[Node, Node], accounts: tuple[History, History]
) -> None:
    d0, d1 = nodes
    alice, bob = accounts
    d0.contacts.add(bob.account, "bob")
    d0.service.receive(Peer(bob, alice).seal("hi alice").raw)
    (bundle,) = history_bundles(d0.service.store, set())
    genuine = bundle.entries[0]
    forged = dataclasses.replace(genuine, content=Text("send money"), message_id=bytes(16))
    bare = dataclasses.replace(genuine, content=Text("a claim"), proof=None, message_id=b"\1" * 16)
    sent = Peer(alice, alice, "d0").seal(HistoryBundle(0, 1, (genuine, forged, bare)))
    d1.service.receive(sent.raw)
    assert _rows(d1, bob.account) == [
        ("a claim", bob.account, alice.keys["d0"].sign_public, False),
        ("hi alice", bob.account, None, True),
    ]
    assert d1.service.history_refused == 1
    assert any("1 message(s)" in text for _, text in d1.service.notices)


def test_history_naming_an_account_not_here_yet_is_refused_until_it_is(
    tmp_path: Path, accounts: tuple[History, History], nodes: tuple[Node, Node]
) -> None:
    d0, _ = nodes
    alice, bob = accounts
    d0.contacts.add(bob.account, "bob")
    d0.service.receive(Peer(bob, alice).seal("hi alice").raw)
    (bundle,) = history_bundles(d0.service.store, set())
    (tmp_path / "new").mkdir()
    new = Node(tmp_path / "new", alice, [], device="d1")  # bob's log is not here yet
    try:
        raw = Peer(alice, alice, "d0").seal(bundle).raw
        with pytest.raises(HistoryBehindError) as info:
            new.service.receive(raw)
        assert info.value.views[0].account == bob.account
        assert new.query("SELECT COUNT(*) FROM messages") == [(0,)]
        assert new.query("SELECT COUNT(*) FROM replay_streams") == [(0,)]
        for e in bob.events.values():
            new.ledger.ingest(e.raw)
        new.service.receive(raw)  # the sender's retry: not a replay
        assert _rows(new, bob.account) == [("hi alice", bob.account, None, True)]
    finally:
        new.close()


def test_a_proven_copy_replaces_a_relayed_claim_never_the_other_way(
    nodes: tuple[Node, Node], accounts: tuple[History, History]
) -> None:
    """A thief's unproven claim under a real message's id (it saw the id)
    must not keep the real message out, live or as history."""
    d0, d1 = nodes
    alice, bob = accounts
    d0.contacts.add(bob.account, "bob")
    d1.contacts.add(bob.account, "bob")
    live = Peer(bob, alice).seal("the real text")
    d0.service.receive(live.raw)
    (bundle,) = history_bundles(d0.service.store, set())
    genuine = bundle.entries[0]
    claim = dataclasses.replace(genuine, content=Text("a planted text"), proof=None)
    thief = Peer(alice, alice, "d0")
    d1.service.receive(thief.seal(HistoryBundle(0, 1, (claim,))).raw)
    relayer = alice.keys["d0"].sign_public
    assert _rows(d1, bob.account) == [("a planted text", bob.account, relayer, False)]
    d1.service.receive(live.raw)  # the real one arrives live: it replaces the claim
    assert _rows(d1, bob.account) == [("the real text", bob.account, None, True)]
    d1.service.receive(thief.seal(HistoryBundle(0, 1, (claim,))).raw)  # and stays
    assert _rows(d1, bob.account) == [("the real text", bob.account, None, True)]
