"""The connection, transactions and forward migrations of a node's database.

Every table belongs to one module of this package, which declares its
schema as migration steps (SQL, or a function of the connection where SQL
alone cannot convert a stored value); ``node.storage.MIGRATIONS`` puts them
in version order.  A migration runs whole in one transaction, or not at all.
``Database.write`` is one durable transaction; before it runs, everything
staged for the event store is committed first (``before_write``), so a write
never becomes durable ahead of the events it may refer to.

A database opened with the device's storage key carries a ``RowCipher``
(``at_rest.py``, PROTOCOL.md §15.21) for the columns kept encrypted; a
``KeyedStep`` is a migration step that needs it (one that encrypts what an
older schema kept in the clear).  ``secure_delete`` is on, so a value
deleted or overwritten is zeroed in its page rather than left in free space.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DiskFullError, NodeUsageError, StoreError
from .at_rest import CHECK_META, RowCipher, check_value, verify_check


@dataclass(frozen=True, slots=True)
class KeyedStep:
    """A migration step that needs the storage key (``None`` when the store
    is opened without one: the step must then find nothing to encrypt).
    ``vacuum``: once every migration ran, rewrite the file (VACUUM) and
    empty the write-ahead log, so no page of the old clear values is left."""

    run: Callable[[sqlite3.Connection, RowCipher | None], None]
    vacuum: bool = True


#: one migration step: an SQL statement, or a function for what SQL alone
#: cannot do (decode a stored value, or encrypt it: ``KeyedStep``); each
#: runs inside the step's transaction
Step = str | Callable[[sqlite3.Connection], None] | KeyedStep
#: migrations[v] upgrades a database from version v to v + 1
Migrations = dict[int, Sequence[Step]]
Statement = tuple[str, Sequence[Any]]
WAL_LIMIT_BYTES = 4 * 1024 * 1024


class Database:
    def __init__(self, path: Path, migrations: Migrations, cipher: RowCipher | None = None) -> None:
        self.path = path
        self.migrations = migrations
        #: the storage key's cipher (§15.21); None: a store of events alone
        self.cipher = cipher
        self._vacuum = False
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        # the log's file is cut back to this after a checkpoint (§13.3)
        self.conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
        # deleted and overwritten values are zeroed, not left in free pages
        # (§15.21); VACUUM's copy stays in memory, not in a temporary file
        self.conn.execute("PRAGMA secure_delete=ON")
        self.conn.execute("PRAGMA temp_store=MEMORY")
        self._migrate()
        if self._vacuum:
            self.conn.execute("VACUUM")
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        if cipher is not None:
            self._check_key(cipher)
        #: run before every write transaction (the event store's commit)
        self.before_write: list[Callable[[], None]] = []

    def _migrate(self) -> None:
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )
        row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        version = int(row[0]) if row else 0
        latest = len(self.migrations)
        if version > latest:
            raise StoreError(
                f"{self.path} has schema version {version}; this smu knows up to "
                f"{latest}: upgrade smu"
            )
        while version < latest:
            self.transaction(functools.partial(self._step, version=version))
            version += 1

    def _step(self, conn: sqlite3.Connection, version: int) -> None:
        for step in self.migrations[version]:
            if isinstance(step, KeyedStep):
                step.run(conn, self.cipher)
                self._vacuum = self._vacuum or step.vacuum
            elif callable(step):
                step(conn)
            else:
                conn.execute(step)
        conn.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES('schema_version', ?)",
            (str(version + 1),),
        )

    def _check_key(self, cipher: RowCipher) -> None:
        """Refuse another storage key at once (its first value would not open)."""
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (CHECK_META,)).fetchone()
        if row is None:
            self.transaction(
                lambda conn: conn.execute(
                    "INSERT INTO meta(key, value) VALUES(?, ?)",
                    (CHECK_META, check_value(cipher).hex()),
                )
            )
            return
        try:
            stored: object = bytes.fromhex(str(row[0]))
        except ValueError:
            stored = None
        verify_check(cipher, stored)

    def require_cipher(self) -> RowCipher:
        """The cipher, for a table with encrypted columns: without one a
        value would be written in the clear, so that is refused."""
        if self.cipher is None:
            raise NodeUsageError(f"{self.path.name} was opened without its storage key")
        return self.cipher

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self.conn.execute(sql, args).fetchall())

    def query_one(self, sql: str, args: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        row = self.conn.execute(sql, args).fetchone()
        return tuple(row) if row is not None else None

    def write(self, statements: Iterable[Statement]) -> None:
        """One durable transaction (synchronous=FULL), whole or not at all."""
        for hook in self.before_write:
            hook()
        self.transaction(lambda conn: [conn.execute(sql, args) for sql, args in statements])

    def transaction(self, body: Callable[[sqlite3.Connection], object]) -> None:
        """Run ``body`` inside BEGIN IMMEDIATE ... COMMIT; roll back on any error."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            body(self.conn)
            self.conn.execute("COMMIT")
        except BaseException as exc:
            if self.conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                # the disk, or the node's budget (max_page_count), is full:
                # the transaction rolled back whole, nothing is half written
                raise DiskFullError(
                    f"{self.path.name}: the disk or the node's disk budget is full; "
                    "nothing was written"
                ) from exc
            raise

    # -- the disk budget (PROTOCOL.md §13.3) ------------------------------------

    def used_bytes(self) -> int:
        """The database's pages in use (free pages are reused before the file
        grows).  The write-ahead log is left out: checkpoints fold it back
        and ``journal_size_limit`` keeps its file small after them."""
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        pages -= self.conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = self.conn.execute("PRAGMA page_size").fetchone()[0]
        return int(pages) * int(size)

    def limit_bytes(self, max_bytes: int | None) -> None:
        """Let SQLite itself refuse to grow past ``max_bytes`` (SQLITE_FULL)."""
        size = int(self.conn.execute("PRAGMA page_size").fetchone()[0])
        pages = (1 << 31) - 2 if max_bytes is None else max(1, max_bytes // size)
        self.conn.execute(f"PRAGMA max_page_count = {int(pages)}")

    def truncate_log(self) -> None:
        """Fold the write-ahead log into the database and cut its file to
        zero bytes, so superseded page images (old sealed session states
        among them, §15.21) do not linger in ``-wal``.  Housekeeping and
        shutdown run it, never a message: it costs one checkpoint of at
        most a few MiB.  A checkpoint a reader blocks is left for next time."""
        for hook in self.before_write:
            hook()
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def close(self) -> None:
        for hook in self.before_write:
            hook()
        with contextlib.suppress(sqlite3.Error):
            self.truncate_log()
        self.conn.close()
