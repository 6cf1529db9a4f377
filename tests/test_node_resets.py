"""Signed session resets on the node over real SQLite (PROTOCOL.md §19.15):
a receiver that lost its sessions gets texts through a mailbox it cannot
open, asks once for a reset, the sender ends that session, re-seals the
texts it still owes that device, and the receiver reads each text once;
both nodes restart between the steps."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from node.prekeys import PrekeyKeeper
from node.services.outbox_policy import DEPOSITED
from node.services.resets import KIND_RESET
from node.services.sessions import MemoryPrekeyFile
from node.storage.messages import KIND_TEXT
from protocol.core.errors import InvalidInput
from protocol.messaging.envelope import peek
from protocol.messaging.resets import SessionNotHeldError

from .conftest import FAST, T0, History
from .messaging_support import Node
from .test_node_sessions import _record, _send, _sessions, _wraps

LATER = T0 * 10


class Pair:
    """Alice's node (one device) and Bob's d0 node, with records of each
    other that advertise scheme 2; ``restart`` reopens a node on its files."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.alice, self.bob = History(name="alice"), History(name="bob")
        self.bob.add("b1", "d0", "d1", ["g"])
        self.keepers = {n: PrekeyKeeper(MemoryPrekeyFile()) for n in ("a", "b0")}
        for p in ("a", "b0"):
            (tmp_path / p).mkdir()
        self.a = self._open("a")
        self.b0 = self._open("b0")

    def _open(self, name: str) -> Node:
        me, other, device = (
            (self.alice, self.bob, "d0") if name == "a" else (self.bob, self.alice, "d0")
        )
        node = Node(self.tmp / name, me, [other], device, prekeys=self.keepers[name])
        node.clock_ms = T0
        node.contacts.add(other.account, "bob" if name == "a" else "alice")
        # the records each node would hold (kept in memory by a node)
        if name == "a":
            _record(node, self.bob, "d0", T0, self.keepers["b0"].current(T0), caps=True)
            _record(node, self.bob, "d1", T0, PrekeyKeeper(MemoryPrekeyFile()).current(T0), True)
        else:
            _record(node, self.alice, "d0", T0, self.keepers["a"].current(T0), caps=True)
        return node

    def restart(self, name: str) -> Node:
        old = self.a if name == "a" else self.b0
        old.close()
        node = self._open(name)
        if name == "a":
            self.a = node
        else:
            self.b0 = node
        return node


def _due_for(node: Node, device: bytes, kind: int = KIND_TEXT) -> list[bytes]:
    due = node.service.store.due(LATER, 100)
    return [d.envelope for d in due if d.device == device and d.kind == kind]


def _deposit(node: Node, device: bytes) -> None:
    """Run the node's delivery of every row due for ``device`` as if a
    mailbox took each (nobody hears a refusal on that path)."""

    async def deposited(*args: object) -> str:
        return DEPOSITED

    node.service.direct.attempt = deposited  # type: ignore[method-assign]
    for due in node.service.store.due(LATER, 100):
        if due.device == device:
            trio.run(node.service._deliver_one, due)


def _texts(node: Node, peer: bytes) -> list[str]:
    """The texts of the conversation with ``peer`` that ``peer`` sent."""
    return [m.text for m in node.service.store.conversation(peer, KIND_TEXT) if not m.outgoing]


def _sent(node: Node, peer: bytes) -> list[str]:
    return [m.text for m in node.service.store.conversation(peer, KIND_TEXT) if m.outgoing]


def _resets_sent(node: Node) -> int:
    rows = node.query("SELECT COUNT(*) FROM messages WHERE outgoing=1 AND kind=?", (KIND_RESET,))
    return int(rows[0][0])


def test_a_wiped_receiver_gets_its_texts_again_once_through_a_reset(tmp_path: Path) -> None:
    p = Pair(tmp_path)
    alice, bob = p.alice, p.bob
    d0, d1 = bob.keys["d0"].sign_public, bob.keys["d1"].sign_public
    p.b0.service.receive(_send(p.a, bob, "hello"))
    p.a.service.receive(_reply(p))
    lost = _send(p.a, bob, "lost one")
    assert len(_wraps(lost)[d0].data) < 300  # a ratchet message (§19.13)
    another = _send(p.a, bob, "another")
    _deposit(p.a, d0)

    # Bob's d0 is restored from a backup taken before its sessions
    p.b0.db.write([("DELETE FROM sessions", ())])
    b0 = p.restart("b0")
    for env in (lost, another):  # fetched from its mailbox: refused, deleted there
        with pytest.raises(SessionNotHeldError):
            b0.service.receive(env)
    assert _resets_sent(b0) == 1  # a flood of them costs one reset
    assert _texts(b0, alice.account) == ["hello"]
    (reset,) = _due_for(b0, alice.keys["d0"].sign_public, KIND_RESET)
    assert peek(reset, b0.ctx.params).wraps[0].scheme == 2  # a new session, sealed

    a = p.restart("a")
    before_d1 = a.query("SELECT * FROM deliveries WHERE device=? ORDER BY message", (d1,))
    ended = {bytes(r[0]) for r in _sessions(a) if bytes(r[2]) == d0}
    a.service.receive(reset)
    assert not ended & {bytes(r[0]) for r in _sessions(a)}  # that session ended
    resets = [t for _, t in a.service.notices if "was reset" in t]
    assert len(resets) == 1 and "bob's device" in resets[0]
    # the texts still owed to d0 go again, re-sealed; d1's rows are untouched
    assert a.query("SELECT COUNT(*) FROM resends WHERE device=?", (d0,))[0][0] == 3
    assert a.query("SELECT * FROM deliveries WHERE device=? ORDER BY message", (d1,)) == before_d1
    with pytest.raises(InvalidInput):  # the same reset again changes nothing
        a.service.receive(reset)
    assert len([t for _, t in a.service.notices if "was reset" in t]) == 1

    a = p.restart("a")
    b0 = p.restart("b0")
    for env in _due_for(a, d0):
        b0.service.receive(env)
    # each text once: "hello" was there already and is not stored twice
    assert sorted(_texts(b0, alice.account)) == ["another", "hello", "lost one"]
    assert sorted(_sent(a, bob.account)) == ["another", "hello", "lost one"]
    for env in _due_for(a, d0):  # delivered again: already there, still once each
        with pytest.raises(InvalidInput) as info:
            b0.service.receive(env)
        assert info.value.code in ("replay", "session_duplicate")
    assert sorted(_texts(b0, alice.account)) == ["another", "hello", "lost one"]


def _reply(p: Pair) -> bytes:
    """Bob's d0 answers, so that Alice's session with it is confirmed and
    her next texts are ratchet messages."""
    return _send(p.b0, p.alice, "hi")


def test_no_reset_to_a_stranger_or_for_a_wrap_that_names_nobody(tmp_path: Path) -> None:
    p = Pair(tmp_path)
    bob = p.bob
    p.b0.service.receive(_send(p.a, bob, "hello"))
    p.a.service.receive(_reply(p))
    lost = _send(p.a, bob, "lost one")
    p.b0.db.write([("DELETE FROM sessions", ())])
    p.b0.contacts.remove(p.alice.account)  # Alice is no contact of Bob's now
    with pytest.raises(SessionNotHeldError):
        p.b0.service.receive(lost)
    assert _resets_sent(p.b0) == 0


def test_a_refusal_that_comes_back_after_the_reset_changes_nothing(tmp_path: Path) -> None:
    """Direct delivery: the receiver's reset can arrive before the refusal
    of the text it covers.  That late refusal must neither end the reset's
    new session nor fail the re-sealed delivery."""
    p = Pair(tmp_path)
    bob, d0 = p.bob, p.bob.keys["d0"].sign_public
    p.b0.service.receive(_send(p.a, bob, "hello"))
    p.a.service.receive(_reply(p))
    lost = _send(p.a, bob, "lost one")
    (due,) = [d for d in p.a.service.store.due(LATER, 100) if d.envelope == lost and d.device == d0]
    p.b0.db.write([("DELETE FROM sessions", ())])
    with pytest.raises(SessionNotHeldError):
        p.b0.service.receive(lost)
    (reset,) = _due_for(p.b0, p.alice.keys["d0"].sign_public, KIND_RESET)
    p.a.service.receive(reset)
    sessions = _sessions(p.a)
    assert d0 in {bytes(r[2]) for r in sessions}  # the session the reset came in

    async def refused(*args: object) -> str:
        return "session_wrong: no session with this id, and not its set-up"

    p.a.service.direct.attempt = refused  # type: ignore[method-assign]
    trio.run(p.a.service._deliver_one, due)  # the old envelope's answer, late
    assert _sessions(p.a) == sessions
    state = p.a.query(
        "SELECT state FROM deliveries WHERE message=? AND device=?", (due.message, d0)
    )
    assert state == [("pending",)]
    for env in _due_for(p.a, d0):
        p.b0.service.receive(env)
    assert sorted(_texts(p.b0, p.alice.account)) == ["hello", "lost one"]


def test_the_copy_for_the_senders_other_device_goes_again_after_its_reset(tmp_path: Path) -> None:
    """A device of the own account that lost its sessions asks too; the
    sender re-seals the copies it owes it (§15.22) and the texts are stored
    once, as sent, under the texts' ids."""
    alice, bob = History(name="alice"), History(name="bob")
    alice.add("a1", "d0", "d1", ["g"])
    keepers = {d: PrekeyKeeper(MemoryPrekeyFile()) for d in ("d0", "d1")}
    nodes = {}
    for d, other in (("d0", "d1"), ("d1", "d0")):
        (tmp_path / d).mkdir()
        node = Node(tmp_path / d, alice, [bob], d, prekeys=keepers[d])
        _record(node, alice, other, T0, keepers[other].current(T0), caps=True)
        nodes[d] = node
    a0, a1 = nodes["d0"], nodes["d1"]
    d0, d1 = alice.keys["d0"].sign_public, alice.keys["d1"].sign_public

    _send(a0, bob, "first")
    (first,) = _due_for(a0, d1)
    a1.service.receive(first)
    _send(a1, bob, "mine")  # its copy confirms the session both ways
    a0.service.receive(_due_for(a1, d0)[0])
    _send(a0, bob, "second")
    (second,) = [e for e in _due_for(a0, d1) if e != first]
    a1.db.write([("DELETE FROM sessions", ())])
    a1.close()
    a1 = Node(tmp_path / "d1", alice, [bob], "d1", prekeys=keepers["d1"])  # restarted
    _record(a1, alice, "d0", T0, keepers["d0"].current(T0), caps=True)
    with pytest.raises(SessionNotHeldError):
        a1.service.receive(second)
    (reset,) = _due_for(a1, d0, KIND_RESET)
    a0.service.receive(reset)
    assert any("your device" in t for _, t in a0.service.notices)
    # both copies it still owed d1 are re-sealed, each under a new envelope id
    resent = a0.query("SELECT message, envelope FROM resends WHERE device=?", (d1,))
    assert len(resent) == 2
    assert all(peek(bytes(e), FAST).message_id != bytes(m) for m, e in resent)
    for env in _due_for(a0, d1):
        a1.service.receive(env)
    assert sorted(_sent(a1, bob.account)) == ["first", "mine", "second"]
