"""The account's contacts (DESIGN §6, §10 "Contacts belong to the account").

One row per contact account: the name the user gave it, what the user last
acknowledged of its devices (``seen_devices``: {sign_public hex: status}),
the verification mark and the number of recovers it was made at, and the
block flag.  ``node.services.contacts.ContactSet`` is the one place that
answers "is this account a contact"; nothing else reads this table.  The
name is sealed at rest (``at_rest.py``, PROTOCOL.md §15.21, bound to the
account), so lists are sorted here rather than by SQL.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .at_rest import RowCipher, row_key, seal_clear_rows
from .db import KeyedStep

if TYPE_CHECKING:
    from .db import Database, Statement

SCHEMA_V2 = [
    """CREATE TABLE IF NOT EXISTS contacts (
           account BLOB PRIMARY KEY,
           name TEXT NOT NULL,
           added_ms INTEGER NOT NULL,
           verified INTEGER NOT NULL DEFAULT 0,
           verified_recovers INTEGER NOT NULL DEFAULT 0,
           seen_devices TEXT NOT NULL DEFAULT '{}',
           blocked INTEGER NOT NULL DEFAULT 0)""",
]


def _seal_name(cipher: RowCipher, account: bytes, name: str) -> bytes:
    return cipher.seal_text("contacts", "name", row_key(account), name)


def _seal_names(conn: sqlite3.Connection, cipher: RowCipher | None) -> None:
    seal_clear_rows(
        conn,
        cipher,
        "contacts",
        "name",
        ("account",),
        lambda c, k, name: _seal_name(c, bytes(k[0]), str(name)),
    )


#: names sealed at rest (§15.21)
SCHEMA_V10 = [KeyedStep(_seal_names)]


@dataclass(frozen=True, slots=True)
class ContactRow:
    account: bytes
    name: str
    added_ms: int
    verified: bool
    verified_recovers: int
    seen_devices: dict[str, str]
    blocked: bool


_COLUMNS = "account, name, added_ms, verified, verified_recovers, seen_devices, blocked"


def _row(cipher: RowCipher, r: tuple[Any, ...]) -> ContactRow:
    account, sealed, added, verified, recovers, seen, blocked = r
    name = cipher.open_text("contacts", "name", row_key(bytes(account)), sealed)
    try:
        seen_map = json.loads(seen)
    except ValueError:
        seen_map = {}
    return ContactRow(
        bytes(account),
        str(name),
        int(added),
        bool(verified),
        int(recovers),
        seen_map if isinstance(seen_map, dict) else {},
        bool(blocked),
    )


class ContactStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.cipher = db.require_cipher()

    def get(self, account: bytes) -> ContactRow | None:
        r = self.db.query_one(f"SELECT {_COLUMNS} FROM contacts WHERE account=?", (account,))
        return _row(self.cipher, r) if r is not None else None

    def all(self, *, blocked: bool | None = False) -> list[ContactRow]:
        """Contacts by name; ``blocked=None`` includes blocked ones."""
        if blocked is None:
            rows = self.db.query(f"SELECT {_COLUMNS} FROM contacts")
        else:
            rows = self.db.query(
                f"SELECT {_COLUMNS} FROM contacts WHERE blocked=?", (int(blocked),)
            )
        return sorted((_row(self.cipher, r) for r in rows), key=lambda c: (c.name, c.account))

    def add(self, account: bytes, name: str, added_ms: int, seen: dict[str, str]) -> None:
        """Add a contact, or rename it if it is one (a block stays)."""
        self.db.write(
            [
                (
                    "INSERT INTO contacts(account, name, added_ms, seen_devices) "
                    "VALUES(?, ?, ?, ?) ON CONFLICT(account) DO UPDATE SET name=excluded.name",
                    (account, _seal_name(self.cipher, account, name), added_ms, json.dumps(seen)),
                )
            ]
        )

    def set_seen(self, account: bytes, seen: dict[str, str]) -> None:
        self.db.write(
            [("UPDATE contacts SET seen_devices=? WHERE account=?", (json.dumps(seen), account))]
        )

    def set_verified(self, account: bytes, recovers: int) -> None:
        self.db.write(
            [
                (
                    "UPDATE contacts SET verified=1, verified_recovers=? WHERE account=?",
                    (recovers, account),
                )
            ]
        )

    def block_statement(self, account: bytes, fallback_name: str, now_ms: int) -> Statement:
        """Block ``account`` (adding it as a blocked contact if it is none),
        as a statement for the caller's transaction."""
        return (
            "INSERT INTO contacts(account, name, added_ms, blocked) VALUES(?, ?, ?, 1) "
            "ON CONFLICT(account) DO UPDATE SET blocked=1",
            (account, _seal_name(self.cipher, account, fallback_name), now_ms),
        )
