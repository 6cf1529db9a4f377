"""The node's replay table (PROTOCOL.md §15.6): one row per sender stream,
written in place with the message; what one message costs does not depend
on how many streams there are; the table is bounded; it survives a restart."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from node.storage import MIGRATIONS, open_database
from node.storage.db import Database
from protocol.messaging.content import ReplayError, ReplayGuard, ReplayWindow

from .conftest import History
from .messaging_support import Node, Peer, param_bytes


@pytest.fixture
def people() -> tuple[History, History]:
    return History(name="alice"), History(name="bob")


def _fill(path: Path, alice: History, bob: History, streams: int) -> None:
    """``streams`` other sender streams, each with a full 4096-bit window
    (the worst case a stream can make a node store)."""
    node = Node(path, alice, [bob])
    full = ReplayWindow(5000, (1 << 4096) - 1).encode()
    rows = [(os.urandom(32), os.urandom(32), alice.account, full, i) for i in range(streams)]
    node.db.transaction(
        lambda conn: conn.executemany("INSERT INTO replay_streams VALUES(?, ?, ?, ?, ?)", rows)
    )
    node.close()


def _one_receive_cost(path: Path, alice: History, bob: History) -> tuple[int, int, int]:
    """(statements, parameter bytes, rows changed) of the transaction that
    stores one text from a contact."""
    node = Node(path, alice, [bob])
    node.contacts.add(bob.account, "bob")
    peer = Peer(bob, alice)
    node.service.receive(peer.seal("warm-up").raw)  # bob's stream exists from now on
    node.db.writes.clear()
    before = node.db.conn.total_changes
    node.service.receive(peer.seal("measured").raw)
    node.service.flush_receipts()
    changed = node.db.conn.total_changes - before
    stored = node.db.writes[0]  # then the receipt, its own transaction
    node.close()
    return len(stored), param_bytes(stored), changed - 3  # the receipt: message, counter, row


def test_one_message_costs_the_same_at_10_and_at_50000_streams(
    tmp_path: Path, people: tuple[History, History]
) -> None:
    """The guard used to be one row rewritten whole by every message (31 MB
    at 50,000 streams); now a message writes its own stream's row only."""
    alice, bob = people
    costs = {}
    for streams in (10, 50_000):
        path = tmp_path / str(streams)
        path.mkdir()
        _fill(path, alice, bob, streams)
        costs[streams] = _one_receive_cost(path, alice, bob)
    assert costs[10] == costs[50_000]
    statements, size, changed = costs[50_000]
    # the message row and the stream's row, nothing more
    assert statements == 2 and changed == 2
    assert size < 1024


def test_streams_beyond_the_bound_evict_the_least_recently_used(tmp_path: Path) -> None:
    alice = History(name="alice")
    senders = [History(name=f"s{i}") for i in range(8)]
    node = Node(tmp_path, alice, senders, max_replay_streams=5)
    peers = [Peer(s, alice) for s in senders]
    for s in senders:
        node.contacts.add(s.account, s.genesis.body.display_name)  # type: ignore[attr-defined]
    first = [p.seal(f"first from {i}") for i, p in enumerate(peers)]
    for env in first:
        node.service.receive(env.raw)
    (rows,) = node.query("SELECT COUNT(*) FROM replay_streams")
    assert rows == (5,)
    kept = {bytes(r[0]) for r in node.query("SELECT sender_account FROM replay_streams")}
    assert kept == {s.account for s in senders[3:]}  # the three oldest went
    # What eviction costs (§15.6): stream 0's old envelope passes the replay
    # check again, but the message table knows it, so it is not shown twice
    # and earns no second receipt.
    node.service.flush_receipts()
    receipts_before = node.query("SELECT COUNT(*) FROM messages WHERE kind=2")
    node.service.receive(first[0].raw)
    node.service.flush_receipts()
    assert node.query(
        "SELECT COUNT(*) FROM messages WHERE kind=1 AND peer=?", (senders[0].account,)
    ) == [(1,)]
    assert node.query("SELECT COUNT(*) FROM messages WHERE kind=2") == receipts_before
    # a stream still kept refuses the replay as before
    with pytest.raises(ReplayError):
        node.service.receive(first[7].raw)
    assert node.query("SELECT COUNT(*) FROM replay_streams") == [(5,)]
    node.close()
    again = Node(tmp_path, alice, senders, max_replay_streams=5)  # the count is read back
    assert again.service.replay.count == 5


def test_a_replayed_envelope_is_refused_after_a_restart(
    tmp_path: Path, people: tuple[History, History]
) -> None:
    alice, bob = people
    node = Node(tmp_path, alice, [bob])
    node.contacts.add(bob.account, "bob")
    env = Peer(bob, alice).seal("only once")
    node.service.receive(env.raw)
    node.close()
    node = Node(tmp_path, alice, [bob])
    with pytest.raises(ReplayError):
        node.service.receive(env.raw)
    assert node.query("SELECT COUNT(*) FROM messages WHERE kind=1") == [(1,)]


def test_a_failed_write_leaves_the_stream_as_it_was(
    tmp_path: Path, people: tuple[History, History], monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = people
    node = Node(tmp_path, alice, [bob])
    node.contacts.add(bob.account, "bob")
    env = Peer(bob, alice).seal("retry me")

    def broken(statements: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(node.db, "write", broken)
    with pytest.raises(sqlite3.OperationalError):
        node.service.receive(env.raw)
    monkeypatch.undo()
    node.service.receive(env.raw)  # the sender's retry is not a "replay"
    assert [m.text for m in node.service.store.conversation(bob.account, 1)] == ["retry me"]


def test_the_v3_guard_row_is_split_into_stream_rows(
    tmp_path: Path, people: tuple[History, History]
) -> None:
    alice, bob = people
    env = Peer(bob, alice).seal("before the upgrade")
    old = ReplayGuard()
    old.accept((bob.account, bob.keys["d0"].sign_public, alice.account), 1)
    old.accept((os.urandom(32), os.urandom(32), alice.account), 9)
    path = tmp_path / "events.sqlite"
    v3 = Database(path, {v: MIGRATIONS[v] for v in range(3)})
    v3.conn.execute("INSERT INTO replay(id, guard) VALUES(1, ?)", (old.encode(),))
    v3.close()
    db = open_database(path)
    assert db.query("SELECT COUNT(*) FROM replay_streams") == [(2,)]
    assert not db.query("SELECT name FROM sqlite_master WHERE name='replay'")
    db.close()
    node = Node(tmp_path, alice, [bob])
    node.contacts.add(bob.account, "bob")
    with pytest.raises(ReplayError):
        node.service.receive(env.raw)  # counter 1 of bob's stream was accepted before
