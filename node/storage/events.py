"""Accepted events in SQLite (PROTOCOL.md §8).

``put`` stages an event; ``commit`` makes every staged event durable in one
transaction.  The commit is explicit: the daemon awaits it before it
forwards an event or acknowledges anything that depends on one (DESIGN §10),
so a crash never leaves a peer holding what this node lost.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from protocol.log.events import Event

if TYPE_CHECKING:
    from .db import Database

SCHEMA_V1 = [
    """CREATE TABLE IF NOT EXISTS events (
           seq INTEGER PRIMARY KEY AUTOINCREMENT,
           id BLOB NOT NULL UNIQUE,
           account BLOB NOT NULL,
           raw BLOB NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS events_account ON events(account, seq)",
]


class SqliteEventStore:
    """The ledger's ``EventStore`` over one node database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._ids: set[bytes] = {bytes(r[0]) for r in db.query("SELECT id FROM events")}
        #: puts since the last commit, written in one transaction by ``commit``
        self._staged: dict[bytes, tuple[bytes, bytes, bytes]] = {}
        #: commits so far: a waiter compares generations (``node.effects``)
        self.commits = 0
        db.before_write.append(self.commit_now)

    # -- EventStore ----------------------------------------------------------

    def contains(self, event_id: bytes) -> bool:
        return event_id in self._ids

    def get(self, event_id: bytes) -> bytes | None:
        staged = self._staged.get(event_id)
        if staged is not None:
            return staged[2]
        row = self.db.query_one("SELECT raw FROM events WHERE id=?", (event_id,))
        return bytes(row[0]) if row else None

    def put(self, event: Event) -> None:
        if event.id in self._ids:
            return
        self._staged[event.id] = (event.id, event.account_id, event.raw)
        self._ids.add(event.id)

    def iter_raw(self) -> Iterator[bytes]:
        for (raw,) in self.db.conn.execute("SELECT raw FROM events ORDER BY seq"):
            yield bytes(raw)

    def __len__(self) -> int:
        return len(self._ids)

    # -- durability ------------------------------------------------------------

    @property
    def staged(self) -> int:
        return len(self._staged)

    def commit_now(self) -> None:
        """Make every staged put durable, in one transaction.  On failure
        nothing is written and the events stay staged."""
        if not self._staged:
            return
        rows = list(self._staged.values())
        self.db.transaction(
            lambda conn: conn.executemany(
                "INSERT INTO events(id, account, raw) VALUES(?, ?, ?)", rows
            )
        )
        self._staged.clear()
        self.commits += 1

    async def commit(self) -> None:
        """``commit_now``, awaitable: the daemon awaits it before it forwards
        or acknowledges (it runs on the trio thread for now; a writer thread
        may take it over without changing callers)."""
        self.commit_now()

    def close(self) -> None:
        self.db.close()
