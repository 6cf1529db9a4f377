"""Messages, the outbox of deliveries, send counters and replay state
(PROTOCOL.md §15; DESIGN §5).

* ``messages``: one row per message, keyed by (sender account, message id):
  a message id is chosen by its sender, so it is unique per sender only, and
  another account cannot take over an id it saw in a clear header.  ``peer``
  is the other account of the conversation; ``request`` = 1: from a
  non-contact, waiting for the user's decision.
* ``deliveries``: one row per (message, device it must reach): the outbox.
* ``counters``: the next send counter per recipient account (§15.6).
* ``replay``: the receive-side replay guard (§15.6), one row.

Each method that changes something is one transaction, or returns the
statements for the caller's transaction (``*_statement``), so a message and
the state that goes with it are durable together.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .db import Database, Statement

SCHEMA_V3 = [
    """CREATE TABLE IF NOT EXISTS messages (
           id BLOB NOT NULL,
           peer BLOB NOT NULL,
           outgoing INTEGER NOT NULL,
           sender_account BLOB NOT NULL,
           sender_device BLOB NOT NULL,
           sent_ms INTEGER NOT NULL,
           stored_ms INTEGER NOT NULL,
           kind INTEGER NOT NULL,
           text TEXT NOT NULL,
           request INTEGER NOT NULL DEFAULT 0,
           envelope BLOB,
           PRIMARY KEY (sender_account, id))""",
    "CREATE INDEX IF NOT EXISTS messages_id ON messages(id)",
    "CREATE INDEX IF NOT EXISTS messages_peer ON messages(peer, stored_ms)",
    "CREATE INDEX IF NOT EXISTS messages_stored ON messages(stored_ms)",
    """CREATE TABLE IF NOT EXISTS deliveries (
           message BLOB NOT NULL,
           device BLOB NOT NULL,
           account BLOB NOT NULL,
           state TEXT NOT NULL,
           attempts INTEGER NOT NULL DEFAULT 0,
           next_try_ms INTEGER NOT NULL DEFAULT 0,
           last_error TEXT,
           PRIMARY KEY (message, device))""",
    "CREATE TABLE IF NOT EXISTS counters (account BLOB PRIMARY KEY, next INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS replay (
           id INTEGER PRIMARY KEY CHECK (id = 1),
           guard BLOB NOT NULL)""",
]

#: delivery states that are still being tried
ACTIVE_STATES = ("pending", "deposited")


@dataclass(frozen=True, slots=True)
class MessageRow:
    message_id: bytes
    peer: bytes
    outgoing: bool
    sender_account: bytes
    sender_device: bytes
    sent_ms: int
    stored_ms: int
    text: str
    request: bool


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to store (sent, received, or from a history bundle)."""

    message_id: bytes
    peer: bytes
    outgoing: bool
    sender_account: bytes
    sender_device: bytes
    sent_ms: int
    stored_ms: int
    kind: int
    text: str
    request: bool = False
    envelope: bytes | None = None


@dataclass(frozen=True, slots=True)
class DueDelivery:
    message: bytes
    device: bytes
    account: bytes
    attempts: int
    envelope: bytes


_COLUMNS = "id, peer, outgoing, sender_account, sender_device, sent_ms, stored_ms, text, request"


def _message(r: tuple[Any, ...]) -> MessageRow:
    mid, peer, outgoing, sa, sd, sent, stored, text, request = r
    return MessageRow(
        bytes(mid),
        bytes(peer),
        bool(outgoing),
        bytes(sa),
        bytes(sd),
        int(sent),
        int(stored),
        str(text),
        bool(request),
    )


class MessageStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- statements for the caller's transaction ---------------------------------

    @staticmethod
    def insert_statement(m: NewMessage, *, ignore_duplicate: bool = True) -> Statement:
        """Store a message; a duplicate (sender account, id) is ignored (a
        received copy) or an error (our own, whose id we just drew)."""
        verb = "INSERT OR IGNORE" if ignore_duplicate else "INSERT"
        return (
            f"{verb} INTO messages(id, peer, outgoing, sender_account, sender_device, sent_ms, "
            "stored_ms, kind, text, request, envelope) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                m.message_id,
                m.peer,
                int(m.outgoing),
                m.sender_account,
                m.sender_device,
                m.sent_ms,
                m.stored_ms,
                m.kind,
                m.text,
                int(m.request),
                m.envelope,
            ),
        )

    @staticmethod
    def delivery_statement(message: bytes, device: bytes, account: bytes) -> Statement:
        return (
            "INSERT INTO deliveries(message, device, account, state) VALUES(?, ?, ?, 'pending')",
            (message, device, account),
        )

    @staticmethod
    def delivered_statement(message: bytes, device: bytes) -> Statement:
        return (
            "UPDATE deliveries SET state='delivered' WHERE message=? AND device=?",
            (message, device),
        )

    @staticmethod
    def replay_statement(guard: bytes) -> Statement:
        return (
            "INSERT INTO replay(id, guard) VALUES(1, ?) ON CONFLICT(id) DO UPDATE SET "
            "guard=excluded.guard",
            (guard,),
        )

    @staticmethod
    def counter_statement(account: bytes, next_counter: int) -> Statement:
        return (
            "INSERT INTO counters(account, next) VALUES(?, ?) ON CONFLICT(account) "
            "DO UPDATE SET next=excluded.next",
            (account, next_counter),
        )

    @staticmethod
    def delete_requests_statement(peer: bytes) -> Statement:
        return ("DELETE FROM messages WHERE peer=? AND request=1", (peer,))

    # -- writes -------------------------------------------------------------------

    def set_delivery(
        self,
        message: bytes,
        device: bytes,
        *,
        state: str,
        attempts: int,
        next_try_ms: int,
        error: str | None,
    ) -> None:
        self.db.write(
            [
                (
                    "UPDATE deliveries SET state=?, attempts=?, next_try_ms=?, last_error=? "
                    "WHERE message=? AND device=?",
                    (state, attempts, next_try_ms, error, message, device),
                )
            ]
        )

    def accept_requests(self, peer: bytes) -> None:
        self.db.write([("UPDATE messages SET request=0 WHERE peer=?", (peer,))])

    # -- reads ----------------------------------------------------------------------

    def replay_guard(self) -> bytes | None:
        row = self.db.query_one("SELECT guard FROM replay WHERE id=1")
        return bytes(row[0]) if row else None

    def next_counter(self, account: bytes) -> int:
        row = self.db.query_one("SELECT next FROM counters WHERE account=?", (account,))
        return int(row[0]) if row else 1

    def due(self, now_ms: int, limit: int) -> list[DueDelivery]:
        rows = self.db.query(
            "SELECT d.message, d.device, d.account, d.attempts, m.envelope "
            "FROM deliveries d JOIN messages m ON m.id = d.message AND m.outgoing = 1 "
            "WHERE d.state IN ('pending', 'deposited') AND d.next_try_ms <= ? "
            "ORDER BY d.next_try_ms LIMIT ?",
            (now_ms, limit),
        )
        return [
            DueDelivery(bytes(m), bytes(d), bytes(a), int(n), bytes(e)) for m, d, a, n, e in rows
        ]

    def next_due_ms(self, exclude: Collection[tuple[bytes, bytes]] = ()) -> int | None:
        """When the earliest delivery still being tried is due, leaving out
        the (message, device) pairs in ``exclude`` (those being tried now)."""
        rows = self.db.query(
            "SELECT message, device, next_try_ms FROM deliveries "
            "WHERE state IN ('pending', 'deposited') ORDER BY next_try_ms LIMIT ?",
            (len(exclude) + 1,),
        )
        for message, device, next_try in rows:
            if (bytes(message), bytes(device)) not in exclude:
                return int(next_try)
        return None

    def delivery_counts(self, message: bytes) -> dict[str, int]:
        rows = self.db.query(
            "SELECT state, COUNT(*) FROM deliveries WHERE message=? GROUP BY state", (message,)
        )
        return {str(s): int(n) for s, n in rows}

    def delivery_devices(self, message: bytes) -> list[tuple[bytes, bytes, str]]:
        """Each device a message must reach: (device, its account, state)."""
        rows = self.db.query(
            "SELECT device, account, state FROM deliveries WHERE message=? "
            "ORDER BY account, device",
            (message,),
        )
        return [(bytes(d), bytes(a), str(s)) for d, a, s in rows]

    def history(self, kind: int, limit: int) -> list[tuple[bytes, bytes, bytes, bytes, int, str]]:
        """The newest ``limit`` accepted messages of ``kind``, oldest first:
        (peer, id, sender account, sender device, sent_ms, text)."""
        rows = self.db.query(
            "SELECT peer, id, sender_account, sender_device, sent_ms, text FROM messages "
            "WHERE kind=? AND request=0 ORDER BY stored_ms DESC LIMIT ?",
            (kind, limit),
        )
        return [
            (bytes(p), bytes(i), bytes(sa), bytes(sd), int(ts), str(t))
            for p, i, sa, sd, ts, t in reversed(rows)
        ]

    def inbox(self, kind: int, since_ms: int, limit: int = 500) -> list[MessageRow]:
        rows = self.db.query(
            f"SELECT {_COLUMNS} FROM messages WHERE kind=? AND outgoing=0 AND request=0 "
            "AND stored_ms > ? ORDER BY stored_ms, id LIMIT ?",
            (kind, since_ms, limit),
        )
        return [_message(r) for r in rows]

    def conversation(self, peer: bytes, kind: int) -> list[MessageRow]:
        rows = self.db.query(
            f"SELECT {_COLUMNS} FROM messages WHERE peer=? AND kind=? ORDER BY sent_ms, id",
            (peer, kind),
        )
        return [_message(r) for r in rows]

    def requests(self) -> list[MessageRow]:
        rows = self.db.query(f"SELECT {_COLUMNS} FROM messages WHERE request=1 ORDER BY stored_ms")
        return [_message(r) for r in rows]

    def request_senders(self) -> int:
        row = self.db.query_one("SELECT COUNT(DISTINCT peer) FROM messages WHERE request=1")
        return int(row[0]) if row else 0
