"""What the user has read, per conversation, and the summaries the web
app's conversation list shows (DESIGN §6).

* ``read_marks``: one row per conversation (the other account): every
  incoming message sent up to ``read_ms`` (its ``sent_ms``, the sender's
  timestamp, the same on every device) has been read.  A cache of the
  account-wide marks (``read/<account>``, PROTOCOL.md §15.19) that
  ``services/reads.py`` keeps: the highest mark this device knows of.

The summaries read the ``messages`` table (``messages.py``) without
changing it: the newest message of each conversation and how many incoming
ones were sent after the mark (its text opened with the store's storage
key, PROTOCOL.md §15.21).
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .messages import open_text

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
        self.cipher = db.require_cipher()

    def mark_read(self, peer: bytes, read_ms: int) -> None:
        """Everything sent up to ``read_ms`` was read; a mark never moves back
        (two tabs, or two devices, may report out of order)."""
        self.mark_all({peer: read_ms})

    def mark_all(self, marks: dict[bytes, int]) -> None:
        self.db.write(
            [
                (
                    "INSERT INTO read_marks(peer, read_ms) VALUES(?, ?) ON CONFLICT(peer) "
                    "DO UPDATE SET read_ms=MAX(read_ms, excluded.read_ms)",
                    (peer, read_ms),
                )
                for peer, read_ms in sorted(marks.items())
            ]
        )

    def mark(self, peer: bytes) -> int:
        rows = self.db.query("SELECT read_ms FROM read_marks WHERE peer=?", (peer,))
        return int(rows[0][0]) if rows else 0

    def marks(self) -> dict[bytes, int]:
        return {
            bytes(p): int(ms) for p, ms in self.db.query("SELECT peer, read_ms FROM read_marks")
        }

    def newest_incoming(self, peer: bytes) -> int:
        """The ``sent_ms`` of the newest incoming message from ``peer`` (0: none)."""
        rows = self.db.query(
            "SELECT MAX(sent_ms) FROM messages WHERE peer=? AND outgoing=0 AND request=0", (peer,)
        )
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0

    def summaries(
        self, kind: int, hidden: Set[tuple[bytes, bytes]] = frozenset()
    ) -> dict[bytes, Summary]:
        """Per conversation with accepted messages of ``kind``: its newest
        message and the number of unread incoming ones, leaving out the
        ``hidden`` ones (sender account, message id: the trash)."""
        unread = {
            bytes(peer): int(n)
            for peer, n in self.db.query(
                "SELECT m.peer, COUNT(*) FROM messages m LEFT JOIN read_marks r ON r.peer = m.peer "
                "WHERE m.kind=? AND m.outgoing=0 AND m.request=0 "
                "AND m.sent_ms > COALESCE(r.read_ms, 0) GROUP BY m.peer",
                (kind,),
            )
        }
        # SQLite takes the other columns from the row that holds the MAX()
        rows = self.db.query(
            "SELECT peer, sender_account, id, text, sent_ms, outgoing, MAX(stored_ms) "
            "FROM messages WHERE kind=? AND request=0 GROUP BY peer",
            (kind,),
        )
        out = {
            bytes(peer): Summary(
                bytes(peer),
                open_text(self.cipher, sender, mid, text),
                int(sent),
                int(stored),
                bool(outgoing),
                unread.get(bytes(peer), 0),
            )
            for peer, sender, mid, text, sent, outgoing, stored in rows
        }
        for peer in self._peers_of(hidden):
            out.pop(peer, None)
            again = self._summary(peer, kind, hidden)
            if again is not None:
                out[peer] = again
        return out

    def _peers_of(self, hidden: Set[tuple[bytes, bytes]]) -> set[bytes]:
        peers: set[bytes] = set()
        for sender, mid in hidden:
            row = self.db.query_one(
                "SELECT peer FROM messages WHERE id=? AND sender_account=?", (mid, sender)
            )
            if row is not None:
                peers.add(bytes(row[0]))
        return peers

    def _summary(self, peer: bytes, kind: int, hidden: Set[tuple[bytes, bytes]]) -> Summary | None:
        """One conversation's summary without its hidden messages (read in
        full: only for the few conversations with messages in the trash)."""
        mark = self.mark(peer)
        newest: tuple[int, bytes, bytes, object, int, bool] | None = None
        unread = 0
        for mid, sender, text, sent, stored, outgoing in self.db.query(
            "SELECT id, sender_account, text, sent_ms, stored_ms, outgoing FROM messages "
            "WHERE peer=? AND kind=? AND request=0",
            (peer, kind),
        ):
            if (bytes(sender), bytes(mid)) in hidden:
                continue
            if not outgoing and int(sent) > mark:
                unread += 1
            if newest is None or int(stored) > newest[0]:
                newest = (int(stored), bytes(sender), bytes(mid), text, int(sent), bool(outgoing))
        if newest is None:
            return None
        # only the text shown is opened (§15.21), not every one of the conversation
        stored, sender, mid, sealed, sent, outgoing = newest
        text = open_text(self.cipher, sender, mid, sealed)
        return Summary(peer, text, sent, stored, outgoing, unread)
