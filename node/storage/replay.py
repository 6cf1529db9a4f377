"""The receive-side replay state, one row per stream (PROTOCOL.md §15.6).

* ``replay_streams``: one row per (sender account, sender device, recipient
  account), the stream's ``ReplayWindow`` (``window``: its canonical
  encoding) and ``touched``, a sequence number that grows with every
  accepted envelope, so the least recently used stream is the lowest.

Receiving an envelope reads its stream's row by primary key and writes it
back in place, in the transaction that stores the message: the cost of one
message does not depend on how many streams there are.  At most
``max_streams`` rows are kept; the transaction that adds a stream beyond
that deletes the least recently used one (§15.6 "Eviction" says what that
costs).  Nothing is held in memory but the row count and the last ``touched``.

The version-3 layout kept the whole guard in one row of ``replay``, which
every message rewrote (31 MB at 50,000 streams); the migration splits it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import TYPE_CHECKING

from protocol.core.errors import InvalidInput
from protocol.messaging.content import (
    MAX_REPLAY_STREAMS,
    ReplayGuard,
    ReplayKey,
    ReplayWindow,
)

from .db import Step

if TYPE_CHECKING:
    from .db import Database, Statement


def _split_guard(conn: sqlite3.Connection) -> None:
    """Migration step: the version-3 one-row guard becomes one row per stream
    (least recently used unknown: key order; only the newest ``MAX`` kept)."""
    row = conn.execute("SELECT guard FROM replay WHERE id=1").fetchone()
    if row is None:
        return
    try:
        guard = ReplayGuard.decode(bytes(row[0]))
    except InvalidInput:
        return  # unreadable: start empty (the messages table still refuses duplicates)
    windows = list(guard.windows().items())[-MAX_REPLAY_STREAMS:]
    conn.executemany(
        "INSERT INTO replay_streams(sender_account, sender_device, recipient_account, window, "
        "touched) VALUES(?, ?, ?, ?, ?)",
        [(k[0], k[1], k[2], w.encode(), i) for i, (k, w) in enumerate(windows, 1)],
    )


SCHEMA_V5: list[Step] = [
    """CREATE TABLE IF NOT EXISTS replay_streams (
           sender_account BLOB NOT NULL,
           sender_device BLOB NOT NULL,
           recipient_account BLOB NOT NULL,
           window BLOB NOT NULL,
           touched INTEGER NOT NULL,
           PRIMARY KEY (sender_account, sender_device, recipient_account)) WITHOUT ROWID""",
    # eviction takes the lowest ``touched``; the count at start-up reads it too
    "CREATE UNIQUE INDEX IF NOT EXISTS replay_streams_touched ON replay_streams(touched)",
    _split_guard,
    "DROP TABLE IF EXISTS replay",
]

_KEY = "sender_account=? AND sender_device=? AND recipient_account=?"


class ReplayStore:
    """The replay table: read one stream, and the statements that store the
    streams an envelope changed (``PendingReplay.changes``)."""

    def __init__(self, db: Database, max_streams: int = MAX_REPLAY_STREAMS) -> None:
        if max_streams < 1:
            raise ValueError("max_streams must be at least 1")
        self.db = db
        self.max_streams = max_streams
        # Start-up reads two numbers, never the rows (COUNT walks the small index).
        row = db.query_one("SELECT COUNT(*), MAX(touched) FROM replay_streams")
        self.count = int(row[0]) if row else 0
        self.touched = int(row[1] or 0) if row else 0

    def window(self, key: ReplayKey) -> ReplayWindow | None:
        """The stream's window: one row read by primary key."""
        row = self.db.query_one(f"SELECT window FROM replay_streams WHERE {_KEY}", key)
        return ReplayWindow.decode(bytes(row[0])) if row else None

    def statements(
        self, changes: Mapping[ReplayKey, ReplayWindow], new: int
    ) -> tuple[list[Statement], int]:
        """The statements that store ``changes`` (``new`` of them are streams
        without a row yet), and the ``touched`` they end at; pass that to
        ``written`` once the transaction is durable."""
        out: list[Statement] = []
        touched = self.touched
        for key, w in changes.items():
            touched += 1
            out.append(
                (
                    "INSERT INTO replay_streams(sender_account, sender_device, recipient_account, "
                    "window, touched) VALUES(?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
                    "window=excluded.window, touched=excluded.touched",
                    (*key, w.encode(), touched),
                )
            )
        over = self.count + new - self.max_streams
        if over > 0:
            # The rows just written have the highest ``touched``: never these.
            out.append(
                (
                    "DELETE FROM replay_streams WHERE touched IN "
                    "(SELECT touched FROM replay_streams ORDER BY touched LIMIT ?)",
                    (over,),
                )
            )
        return out, touched

    def written(self, new: int, touched: int) -> None:
        self.count = min(self.max_streams, self.count + new)
        self.touched = touched
