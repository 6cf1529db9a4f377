"""Account-wide state: every device's newest edit per key, the edits that
wait for a clock or for log events, and this device's hybrid clock
(PROTOCOL.md §15.19; ``protocol.messaging.sync``).

Edits are stored as the signed bytes they arrived as; the merged view is
rebuilt from them at start-up (derived state is never stored).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .db import Database, Statement

SCHEMA_V8 = [
    """CREATE TABLE IF NOT EXISTS sync_edits (
           key TEXT NOT NULL,
           device BLOB NOT NULL,
           raw BLOB NOT NULL,
           PRIMARY KEY (key, device))""",
    """CREATE TABLE IF NOT EXISTS sync_waiting (
           id BLOB PRIMARY KEY,
           raw BLOB NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS sync_clock (
           id INTEGER PRIMARY KEY CHECK (id = 1),
           ms INTEGER NOT NULL,
           counter INTEGER NOT NULL)""",
]


class SyncStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def edits(self) -> list[bytes]:
        return [bytes(r[0]) for r in self.db.query("SELECT raw FROM sync_edits ORDER BY key")]

    def waiting(self) -> list[bytes]:
        return [bytes(r[0]) for r in self.db.query("SELECT raw FROM sync_waiting")]

    def clock(self) -> tuple[int, int]:
        row = self.db.query_one("SELECT ms, counter FROM sync_clock WHERE id=1")
        return (int(row[0]), int(row[1])) if row else (0, 0)

    @staticmethod
    def put_statement(key: str, device: bytes, raw: bytes) -> Statement:
        return (
            "INSERT INTO sync_edits(key, device, raw) VALUES(?, ?, ?) "
            "ON CONFLICT(key, device) DO UPDATE SET raw=excluded.raw",
            (key, device, raw),
        )

    @staticmethod
    def wait_statement(raw: bytes) -> Statement:
        digest = hashlib.blake2b(raw, digest_size=16).digest()
        return ("INSERT OR IGNORE INTO sync_waiting(id, raw) VALUES(?, ?)", (digest, raw))

    @staticmethod
    def unwait_statement(raw: bytes) -> Statement:
        digest = hashlib.blake2b(raw, digest_size=16).digest()
        return ("DELETE FROM sync_waiting WHERE id=?", (digest,))

    @staticmethod
    def clock_statement(clock: tuple[int, int]) -> Statement:
        return (
            "INSERT INTO sync_clock(id, ms, counter) VALUES(1, ?, ?) ON CONFLICT(id) "
            "DO UPDATE SET ms=excluded.ms, counter=excluded.counter",
            clock,
        )
