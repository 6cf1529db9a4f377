"""Mailbox tokens on this device (PROTOCOL.md §15.16).

* ``tokens_held``: tokens other devices handed this one (in TOKENS
  contents or invites), to deposit for them at their mailboxes: per
  (their device, mailbox key) at most ``HELD_PER_MAILBOX`` and at most
  ``HELD_TOTAL`` in all, dropped once spent, refused or expired.
* ``tokens_issued``: what this device handed each contact per mailbox (its
  ``Supply``): the day's count, the estimated unspent tokens and the
  newest batch's expiry; the quota per contact and the refill rule are
  ``protocol.messaging.tokens``'s.  The row of ``INVITES`` counts the
  tokens put in invites.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from protocol.messaging.tokens import Supply, Token, TokenBatch

if TYPE_CHECKING:
    from .db import Database, Statement

SCHEMA_V7 = [
    """CREATE TABLE IF NOT EXISTS tokens_held (
           device BLOB NOT NULL,
           mailbox_key BLOB NOT NULL,
           nonce BLOB NOT NULL,
           expires INTEGER NOT NULL,
           signature BLOB NOT NULL,
           account BLOB NOT NULL,
           received_ms INTEGER NOT NULL,
           PRIMARY KEY (device, mailbox_key, nonce))""",
    "CREATE INDEX IF NOT EXISTS tokens_held_expires ON tokens_held(expires)",
    """CREATE TABLE IF NOT EXISTS tokens_issued (
           contact BLOB NOT NULL,
           mailbox_key BLOB NOT NULL,
           day_start INTEGER NOT NULL,
           issued_today INTEGER NOT NULL,
           outstanding INTEGER NOT NULL,
           expires INTEGER NOT NULL,
           PRIMARY KEY (contact, mailbox_key))""",
]

#: tokens kept for one (device, mailbox): a few batches
HELD_PER_MAILBOX = 128
#: tokens kept in all: bounds what other devices can make this one store
HELD_TOTAL = 20_000
#: the ``contact`` of the row that counts invite tokens
INVITES = b"\x00" * 32


@dataclass(frozen=True, slots=True)
class HeldToken:
    device: bytes
    mailbox_key: bytes
    token: Token


class TokenStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- held ---------------------------------------------------------------

    def hold_statements(self, account: bytes, batch: TokenBatch, now_ms: int) -> list[Statement]:
        """Keep a batch's unexpired tokens, within the caps (the rest are
        dropped), as statements for the caller's transaction."""
        row = self.db.query_one(
            "SELECT COUNT(*) FROM tokens_held WHERE device=? AND mailbox_key=?",
            (batch.device, batch.mailbox_key),
        )
        total = self.db.query_one("SELECT COUNT(*) FROM tokens_held")
        room = min(
            HELD_PER_MAILBOX - (int(row[0]) if row else 0),
            HELD_TOTAL - (int(total[0]) if total else 0),
        )
        fresh = [t for t in batch.tokens if t.expires > now_ms][: max(0, room)]
        return [
            (
                "INSERT OR IGNORE INTO tokens_held(device, mailbox_key, nonce, expires, "
                "signature, account, received_ms) VALUES(?, ?, ?, ?, ?, ?, ?)",
                (batch.device, batch.mailbox_key, t.nonce, t.expires, t.signature, account, now_ms),
            )
            for t in fresh
        ]

    def held(self, device: bytes, mailbox_key: bytes, now_ms: int) -> list[Token]:
        rows = self.db.query(
            "SELECT nonce, expires, signature FROM tokens_held "
            "WHERE device=? AND mailbox_key=? AND expires > ?",
            (device, mailbox_key, now_ms),
        )
        return [Token(bytes(n), int(e), bytes(s)) for n, e, s in rows]

    def held_count(self, device: bytes | None = None) -> int:
        if device is None:
            row = self.db.query_one("SELECT COUNT(*) FROM tokens_held")
        else:
            row = self.db.query_one("SELECT COUNT(*) FROM tokens_held WHERE device=?", (device,))
        return int(row[0]) if row else 0

    def drop(self, device: bytes, mailbox_key: bytes, nonce: bytes) -> None:
        self.db.write(
            [
                (
                    "DELETE FROM tokens_held WHERE device=? AND mailbox_key=? AND nonce=?",
                    (device, mailbox_key, nonce),
                )
            ]
        )

    def prune(self, now_ms: int) -> None:
        self.db.write([("DELETE FROM tokens_held WHERE expires <= ?", (now_ms,))])

    # -- issued -------------------------------------------------------------

    def supply(self, contact: bytes, mailbox_key: bytes) -> Supply:
        row = self.db.query_one(
            "SELECT day_start, issued_today, outstanding, expires FROM tokens_issued "
            "WHERE contact=? AND mailbox_key=?",
            (contact, mailbox_key),
        )
        return Supply(*(int(v) for v in row)) if row else Supply()

    @staticmethod
    def supply_statement(contact: bytes, mailbox_key: bytes, s: Supply) -> Statement:
        return (
            "INSERT INTO tokens_issued(contact, mailbox_key, day_start, issued_today, "
            "outstanding, expires) VALUES(?, ?, ?, ?, ?, ?) ON CONFLICT(contact, mailbox_key) "
            "DO UPDATE SET day_start=excluded.day_start, issued_today=excluded.issued_today, "
            "outstanding=excluded.outstanding, expires=excluded.expires",
            (contact, mailbox_key, s.day_start, s.issued_today, s.outstanding, s.expires),
        )

    @staticmethod
    def spent_one_statement(contact: bytes) -> Statement:
        """A message came from ``contact``: count one token spent at each
        mailbox (it used at most one, somewhere; an overestimate)."""
        return (
            "UPDATE tokens_issued SET outstanding = MAX(outstanding - 1, 0) WHERE contact=?",
            (contact,),
        )
