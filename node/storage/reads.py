"""What the user has read, per conversation, and the summaries the web
app's conversation list shows (DESIGN §6).

* ``read_marks``: one row per conversation (the other account): every
  incoming message stored up to ``read_ms`` has been seen on this device.
  Read state is this device's until account-wide sync carries it.

The summaries read the ``messages`` table (``messages.py``) without
changing it: the newest message of each conversation and how many incoming
ones are newer than the mark.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .db import Database

SCHEMA_V9 = [
    """CREATE TABLE IF NOT EXISTS read_marks (
           peer BLOB PRIMARY KEY,
           read_ms INTEGER NOT NULL)""",
]


@dataclass(frozen=True, slots=True)
class Summary:
    """One conversation as a list shows it."""

    peer: bytes
    last_text: str
    last_sent_ms: int
    last_stored_ms: int
    last_outgoing: bool
    unread: int


class ReadStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def mark_read(self, peer: bytes, read_ms: int) -> None:
        """Everything stored up to ``read_ms`` was seen; a mark never moves back
        (two tabs may report out of order)."""
        self.db.write(
            [
                (
                    "INSERT INTO read_marks(peer, read_ms) VALUES(?, ?) ON CONFLICT(peer) "
                    "DO UPDATE SET read_ms=MAX(read_ms, excluded.read_ms)",
                    (peer, read_ms),
                )
            ]
        )

    def summaries(self, kind: int) -> dict[bytes, Summary]:
        """Per conversation with accepted messages of ``kind``: its newest
        message and the number of unread incoming ones."""
        unread = {
            bytes(peer): int(n)
            for peer, n in self.db.query(
                "SELECT m.peer, COUNT(*) FROM messages m LEFT JOIN read_marks r ON r.peer = m.peer "
                "WHERE m.kind=? AND m.outgoing=0 AND m.request=0 "
                "AND m.stored_ms > COALESCE(r.read_ms, 0) GROUP BY m.peer",
                (kind,),
            )
        }
        # SQLite takes the other columns from the row that holds the MAX()
        rows = self.db.query(
            "SELECT peer, text, sent_ms, outgoing, MAX(stored_ms) FROM messages "
            "WHERE kind=? AND request=0 GROUP BY peer",
            (kind,),
        )
        return {
            bytes(peer): Summary(
                bytes(peer),
                str(text),
                int(sent),
                int(stored),
                bool(outgoing),
                unread.get(bytes(peer), 0),
            )
            for peer, text, sent, outgoing, stored in rows
        }
