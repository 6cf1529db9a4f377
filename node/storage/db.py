"""The connection, transactions and forward migrations of a node's database.

Every table belongs to one module of this package, which declares its
schema as migration steps (SQL, or a function of the connection where SQL
alone cannot convert a stored value); ``node.storage.MIGRATIONS`` puts them
in version order.  A migration runs whole in one transaction, or not at all.
``Database.write`` is one durable transaction; before it runs, everything
staged for the event store is committed first (``before_write``), so a write
never becomes durable ahead of the events it may refer to.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ..errors import DiskFullError, StoreError

#: one migration step: an SQL statement, or a function for what SQL alone
#: cannot do (decode a stored value); each runs inside the step's transaction
Step = str | Callable[[sqlite3.Connection], None]
#: migrations[v] upgrades a database from version v to v + 1
Migrations = dict[int, Sequence[Step]]
Statement = tuple[str, Sequence[Any]]
WAL_LIMIT_BYTES = 4 * 1024 * 1024


class Database:
    def __init__(self, path: Path, migrations: Migrations) -> None:
        self.path = path
        self.migrations = migrations
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        # the log's file is cut back to this after a checkpoint (§13.3)
        self.conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
        self._migrate()
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
            if callable(step):
                step(conn)
            else:
                conn.execute(step)
        conn.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES('schema_version', ?)",
            (str(version + 1),),
        )

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

    def close(self) -> None:
        for hook in self.before_write:
            hook()
        self.conn.close()
