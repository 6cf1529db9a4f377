"""Superseded session states do not linger in SQLite's write-ahead log
(PROTOCOL.md §15.21): ``secure_delete`` zeroes freed space in the
database's pages but not the old page images in ``-wal``, so housekeeping
and shutdown fold the log in and cut its file to zero bytes."""

from __future__ import annotations

from pathlib import Path

from .messaging_support import Node
from .test_node_resets import Pair, _reply
from .test_node_sessions import _send


def _states(node: Node) -> list[bytes]:
    return [bytes(r[0]) for r in node.query("SELECT state FROM sessions")]


def _wal(node: Node) -> Path:
    return node.db.path.with_name(node.db.path.name + "-wal")


def test_housekeeping_leaves_no_old_session_state_in_the_log(tmp_path: Path) -> None:
    p = Pair(tmp_path)
    p.b0.service.receive(_send(p.a, p.bob, "hello"))
    p.a.service.receive(_reply(p))
    (old,) = _states(p.b0)
    for i in range(3):  # each message rewrites the session's row
        p.b0.service.receive(_send(p.a, p.bob, f"m{i}"))
    (new,) = _states(p.b0)
    assert new != old
    assert old in _wal(p.b0).read_bytes()  # the superseded state, still on disk
    p.b0.service.housekeeping()
    assert _wal(p.b0).stat().st_size == 0
    assert old not in p.b0.db.path.read_bytes()  # nor in the database's pages
    assert _states(p.b0) == [new]  # nothing of the current state was lost
    p.b0.service.receive(_send(p.a, p.bob, "after"))  # and the store goes on


def test_closing_the_store_empties_the_log(tmp_path: Path) -> None:
    p = Pair(tmp_path)
    p.b0.service.receive(_send(p.a, p.bob, "hello"))
    (old,) = _states(p.b0)
    p.b0.service.receive(_send(p.a, p.bob, "again"))
    assert old in _wal(p.b0).read_bytes()
    wal = _wal(p.b0)
    p.b0.close()
    assert not wal.exists() or wal.stat().st_size == 0
