"""The account's contacts (DESIGN §6, §10 "Contacts belong to the account").

One row per contact account: the name the user gave it, what the user last
acknowledged of its devices (``seen_devices``: {sign_public hex: status}),
the verification mark and the number of recovers it was made at, and the
block flag.  ``node.services.contacts.ContactSet`` is the one place that
answers "is this account a contact"; nothing else reads this table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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


def _row(r: tuple[Any, ...]) -> ContactRow:
    account, name, added, verified, recovers, seen, blocked = r
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

    def get(self, account: bytes) -> ContactRow | None:
        r = self.db.query_one(f"SELECT {_COLUMNS} FROM contacts WHERE account=?", (account,))
        return _row(r) if r is not None else None

    def all(self, *, blocked: bool | None = False) -> list[ContactRow]:
        """Contacts by name; ``blocked=None`` includes blocked ones."""
        if blocked is None:
            rows = self.db.query(f"SELECT {_COLUMNS} FROM contacts ORDER BY name")
        else:
            rows = self.db.query(
                f"SELECT {_COLUMNS} FROM contacts WHERE blocked=? ORDER BY name", (int(blocked),)
            )
        return [_row(r) for r in rows]

    def add(self, account: bytes, name: str, added_ms: int, seen: dict[str, str]) -> None:
        """Add a contact, or rename it if it is one (a block stays)."""
        self.db.write(
            [
                (
                    "INSERT INTO contacts(account, name, added_ms, seen_devices) "
                    "VALUES(?, ?, ?, ?) ON CONFLICT(account) DO UPDATE SET name=excluded.name",
                    (account, name, added_ms, json.dumps(seen)),
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

    @staticmethod
    def block_statement(account: bytes, fallback_name: str, now_ms: int) -> Statement:
        """Block ``account`` (adding it as a blocked contact if it is none),
        as a statement for the caller's transaction."""
        return (
            "INSERT INTO contacts(account, name, added_ms, blocked) VALUES(?, ?, ?, 1) "
            "ON CONFLICT(account) DO UPDATE SET blocked=1",
            (account, fallback_name, now_ms),
        )
