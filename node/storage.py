"""SQLite storage for a node (DESIGN §7; PROTOCOL.md §8).

One database per node, WAL mode, ``synchronous=FULL``.  ``put`` adds an
event to the open transaction; ``flush`` commits it.  The daemon flushes
after every call into a protocol machine and before acting on that call's
outputs, so nothing is forwarded or acknowledged before it is durable.
Derived state is never stored: it is rebuilt from the events on start.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from protocol.log.events import Event

from .errors import StoreError

SCHEMA_VERSION = 3

# Forward migrations: MIGRATIONS[v] upgrades a database from version v to v+1.
MIGRATIONS: dict[int, list[str]] = {
    0: [
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE IF NOT EXISTS events (
               seq INTEGER PRIMARY KEY AUTOINCREMENT,
               id BLOB NOT NULL UNIQUE,
               account BLOB NOT NULL,
               raw BLOB NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS events_account ON events(account, seq)",
    ],
    1: [
        # Contacts (node/contacts.py).  seen_devices is what the user last
        # acknowledged of the contact's devices: {sign_public hex: status}.
        """CREATE TABLE IF NOT EXISTS contacts (
               account BLOB PRIMARY KEY,
               name TEXT NOT NULL,
               added_ms INTEGER NOT NULL,
               verified INTEGER NOT NULL DEFAULT 0,
               verified_recovers INTEGER NOT NULL DEFAULT 0,
               seen_devices TEXT NOT NULL DEFAULT '{}',
               blocked INTEGER NOT NULL DEFAULT 0)""",
    ],
    2: [
        # Messages (node/messages.py).  One row per message id; peer is the
        # other account of the conversation.  request=1: from a non-contact.
        # A message id is chosen by its sender, so it is unique per sender
        # only: keyed by (sender_account, id), another account cannot take
        # over an id it saw in a clear header.
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
        # One row per (message, device it must reach): the outbox.
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
    ],
}


class SqliteEventStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self._migrate()
        self._ids: set[bytes] = {row[0] for row in self.db.execute("SELECT id FROM events")}
        # puts since the last flush, written in one transaction by ``flush``
        self._pending: dict[bytes, tuple[bytes, bytes, bytes]] = {}

    def _migrate(self) -> None:
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )
        row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}; this smu knows up to "
                f"{SCHEMA_VERSION}: upgrade smu"
            )
        while version < SCHEMA_VERSION:
            self.db.execute("BEGIN IMMEDIATE")
            for statement in MIGRATIONS[version]:
                self.db.execute(statement)
            version += 1
            self.db.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES('schema_version', ?)",
                (str(version),),
            )
            self.db.execute("COMMIT")

    # -- EventStore ----------------------------------------------------------

    def contains(self, event_id: bytes) -> bool:
        return event_id in self._ids

    def get(self, event_id: bytes) -> bytes | None:
        pending = self._pending.get(event_id)
        if pending is not None:
            return pending[2]
        row = self.db.execute("SELECT raw FROM events WHERE id=?", (event_id,)).fetchone()
        return bytes(row[0]) if row else None

    def put(self, event: Event) -> None:
        if event.id in self._ids:
            return
        self._pending[event.id] = (event.id, event.account_id, event.raw)
        self._ids.add(event.id)

    def flush(self) -> None:
        """Make every ``put`` so far durable, in one transaction."""
        if not self._pending:
            return
        rows = list(self._pending.values())
        try:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("INSERT INTO events(id, account, raw) VALUES(?, ?, ?)", rows)
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self.db.execute("ROLLBACK")
            raise
        self._pending.clear()

    def iter_raw(self) -> Iterator[bytes]:
        for (raw,) in self.db.execute("SELECT raw FROM events ORDER BY seq"):
            yield bytes(raw)

    def __len__(self) -> int:
        return len(self._ids)

    def close(self) -> None:
        self.flush()
        self.db.close()
