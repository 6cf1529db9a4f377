"""What this node's mailbox holds for other devices (PROTOCOL.md §15.18):
``SqliteMailboxStore`` backs ``protocol.messaging.mailbox.Mailbox``.

* ``mailbox_grants``: the grants this mailbox issued, one per device.
* ``mailbox_items``: the envelopes held, with what the machine decides on
  (deposit order ``seq``, time, size, stranger or contact, the depositor's
  network group).  The machine keeps the small columns in memory and reads
  ``envelope`` only to answer a fetch.
* ``mailbox_spent``: tokens spent here, kept until they expire, so none
  pays twice (§15.16).

Every ``apply`` is one durable transaction (``synchronous=FULL``): the
mailbox answers DEPOSITED only after it returns, and a restart keeps
everything.  The caps that bound these tables are the machine's
(``MailboxLimits``: 1 GiB and 100,000 items in all, 200,000 spent tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from protocol.messaging.mailbox_store import ItemMeta, SpentToken, StoreChange, StoreSnapshot

if TYPE_CHECKING:
    from .db import Database, Statement

SCHEMA_V6 = [
    """CREATE TABLE IF NOT EXISTS mailbox_grants (
           device BLOB PRIMARY KEY,
           grant_raw BLOB NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS mailbox_items (
           device BLOB NOT NULL,
           item_id BLOB NOT NULL,
           seq INTEGER NOT NULL,
           deposited_at INTEGER NOT NULL,
           size INTEGER NOT NULL,
           stranger INTEGER NOT NULL,
           grp TEXT NOT NULL,
           envelope BLOB NOT NULL,
           PRIMARY KEY (device, item_id))""",
    "CREATE INDEX IF NOT EXISTS mailbox_items_seq ON mailbox_items(seq)",
    """CREATE TABLE IF NOT EXISTS mailbox_spent (
           device BLOB NOT NULL,
           nonce BLOB NOT NULL,
           expires INTEGER NOT NULL,
           PRIMARY KEY (device, nonce))""",
]


class SqliteMailboxStore:
    """``protocol.messaging.mailbox_store.MailboxStore`` over the node's database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def load(self) -> StoreSnapshot:
        grants = tuple(bytes(r[0]) for r in self.db.query("SELECT grant_raw FROM mailbox_grants"))
        items = tuple(
            ItemMeta(bytes(d), bytes(i), int(seq), int(at), int(size), bool(s), str(g))
            for d, i, seq, at, size, s, g in self.db.query(
                "SELECT device, item_id, seq, deposited_at, size, stranger, grp "
                "FROM mailbox_items ORDER BY seq"
            )
        )
        spent = tuple(
            SpentToken(bytes(d), bytes(n), int(e))
            for d, n, e in self.db.query("SELECT device, nonce, expires FROM mailbox_spent")
        )
        return StoreSnapshot(grants, items, spent)

    def apply(self, change: StoreChange) -> None:
        rows: list[Statement] = []
        for device, item_id in change.drop_items:
            rows.append(
                ("DELETE FROM mailbox_items WHERE device=? AND item_id=?", (device, item_id))
            )
        for m, envelope in change.put_items:
            rows.append(
                (
                    "INSERT OR REPLACE INTO mailbox_items(device, item_id, seq, deposited_at, "
                    "size, stranger, grp, envelope) VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        m.device,
                        m.item_id,
                        m.seq,
                        m.deposited_at,
                        m.size,
                        int(m.stranger),
                        m.group,
                        envelope,
                    ),
                )
            )
        for device, nonce in change.drop_spent:
            rows.append(("DELETE FROM mailbox_spent WHERE device=? AND nonce=?", (device, nonce)))
        for s in change.put_spent:
            rows.append(
                (
                    "INSERT OR REPLACE INTO mailbox_spent(device, nonce, expires) VALUES(?, ?, ?)",
                    (s.device, s.nonce, s.expires),
                )
            )
        for device in change.drop_grants:
            rows.append(("DELETE FROM mailbox_grants WHERE device=?", (device,)))
        for device, raw in change.put_grants:
            rows.append(
                (
                    "INSERT OR REPLACE INTO mailbox_grants(device, grant_raw) VALUES(?, ?)",
                    (device, raw),
                )
            )
        if rows:
            self.db.write(rows)

    def read(self, device: bytes, item_ids: Sequence[bytes]) -> list[bytes]:
        out = []
        for item_id in item_ids:
            row = self.db.query_one(
                "SELECT envelope FROM mailbox_items WHERE device=? AND item_id=?", (device, item_id)
            )
            if row is None:
                raise KeyError("the mailbox's memory and its table disagree")
            out.append(bytes(row[0]))
        return out

    def stored_bytes(self) -> int:
        row = self.db.query_one("SELECT COALESCE(SUM(size), 0) FROM mailbox_items")
        return int(row[0]) if row else 0
