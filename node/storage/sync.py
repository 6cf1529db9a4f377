"""Account-wide state: every device's newest edit per key, the edits that
wait for a clock or for log events, and this device's hybrid clock
(PROTOCOL.md §15.19; ``protocol.messaging.sync``).

Edits are stored as the signed bytes they arrived as; the merged view is
rebuilt from them at start-up (derived state is never stored).  Those bytes
(contact names, blocks, marks, read markers, the trash) are sealed at rest
(``at_rest.py``, PROTOCOL.md §15.21): ``sync_edits.raw`` bound to (key,
device), ``sync_waiting.raw`` to its id; keys, devices and ids stay clear.
"""

from __future__ import annotations

import hashlib
import sqlite3
from typing import TYPE_CHECKING

from .at_rest import RowCipher, row_key, seal_clear_rows
from .db import KeyedStep

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


def _seal_edits(conn: sqlite3.Connection, cipher: RowCipher | None) -> None:
    seal_clear_rows(
        conn,
        cipher,
        "sync_edits",
        "raw",
        ("key", "device"),
        lambda c, k, raw: c.seal("sync_edits", "raw", row_key(str(k[0]), bytes(k[1])), raw),
    )
    seal_clear_rows(
        conn,
        cipher,
        "sync_waiting",
        "raw",
        ("id",),
        lambda c, k, raw: c.seal("sync_waiting", "raw", row_key(bytes(k[0])), raw),
    )


#: edits sealed at rest (§15.21)
SCHEMA_V10 = [KeyedStep(_seal_edits)]


class SyncStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.cipher = db.require_cipher()

    def edits(self) -> list[bytes]:
        return [
            self.cipher.open("sync_edits", "raw", row_key(str(k), bytes(d)), raw)
            for k, d, raw in self.db.query("SELECT key, device, raw FROM sync_edits ORDER BY key")
        ]

    def waiting(self) -> list[bytes]:
        return [
            self.cipher.open("sync_waiting", "raw", row_key(bytes(i)), raw)
            for i, raw in self.db.query("SELECT id, raw FROM sync_waiting")
        ]

    def clock(self) -> tuple[int, int]:
        row = self.db.query_one("SELECT ms, counter FROM sync_clock WHERE id=1")
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def put_statement(self, key: str, device: bytes, raw: bytes) -> Statement:
        sealed = self.cipher.seal("sync_edits", "raw", row_key(key, device), raw)
        return (
            "INSERT INTO sync_edits(key, device, raw) VALUES(?, ?, ?) "
            "ON CONFLICT(key, device) DO UPDATE SET raw=excluded.raw",
            (key, device, sealed),
        )

    def wait_statement(self, raw: bytes) -> Statement:
        # the id hashes the signed edit, which nobody without the device key
        # can form: it tells a reader of the file nothing about the content
        digest = hashlib.blake2b(raw, digest_size=16).digest()
        sealed = self.cipher.seal("sync_waiting", "raw", row_key(digest), raw)
        return ("INSERT OR IGNORE INTO sync_waiting(id, raw) VALUES(?, ?)", (digest, sealed))

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
