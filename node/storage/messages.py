"""Messages, the outbox of deliveries and send counters (PROTOCOL.md §15;
DESIGN §5).  The receive-side replay state is ``replay.py``'s.

* ``messages``: one row per message, keyed by (sender account, message id):
  a message id is chosen by its sender, so it is unique per sender only, and
  another account cannot take over an id it saw in a clear header.  ``peer``
  is the other account of the conversation; ``request`` = 1: from a
  non-contact, waiting for the user's decision (§15.14 "Message requests");
  ``size``: UTF-8 bytes of the text, so the request caps are summed from an
  index alone.
* ``deliveries``: one row per (message, device it must reach): the outbox.
  ``state`` is a ``DeliveryState``; ``expires_ms`` is when the outbox stops
  trying (``DeliveryPolicy`` of the message's kind); the partial index
  ``deliveries_due`` holds only rows still being tried, ordered by when
  they are due, so the delivery loop never scans finished rows.
* ``counters``: the next send counter per recipient account (§15.6).

``proof``: the ``HistoryProof`` of the envelope a text came in (or went out
in), so that this device can relay it as history that proves its sender
(§15.4 *History proofs*), sealed at rest like the text (with the signature
and a guessed text, anyone holding the disk could confirm the guess); read
and written only through ``proof_column`` and ``proof_from_column``.
``relayed_by``: the device that relayed a history entry without a proof
(shown as "relayed by <device>", never as the claimed sender's).

A message's ``text`` is sealed at rest (``at_rest.py``, PROTOCOL.md §15.21:
table ``messages``, column ``text``, row key (sender account, id)); every
other column stays clear, as the queries order, group and cap by them.
``envelope`` is already ciphertext (§15.3).

Each method that changes something is one transaction, or returns the
statements for the caller's transaction (``*_statement``), so a message and
the state that goes with it are durable together.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from protocol.core.canonical import decode_flat, encode_flat
from protocol.core.errors import InvalidInput
from protocol.messaging.content import HistoryProof, decode_proof

from .at_rest import RowCipher, row_key, seal_clear_rows
from .db import KeyedStep

if TYPE_CHECKING:
    from .db import Database, Statement

#: content kinds (§15.4) of the rows: history bundles sent are kind 4 since proofs
KIND_TEXT, KIND_RECEIPT, KIND_HISTORY = 1, 2, 4
#: account-wide edits (§15.19): kept trying as long as a text, since a
#: device that misses one shows stale contacts until the next edit of the key
KIND_SYNC = 32
DAY_MS = 24 * 3600 * 1000


class DeliveryState(StrEnum):
    """Where one delivery of a message to one device stands (§15.14, §13)."""

    #: being tried directly, with back-off
    PENDING = "pending"
    #: left at a mailbox the device names; a user message is still tried
    #: directly until the device's DELIVERED receipt
    DEPOSITED = "deposited"
    #: the device stored it (its node said so, or its receipt did): final
    DELIVERED = "delivered"
    #: refused for good by the device's node (it can never be opened there)
    FAILED = "failed"
    #: not confirmed within its lifetime or attempts: the outbox gave up
    EXPIRED = "expired"


#: states still being tried: the only rows in the due index
ACTIVE_STATES = (DeliveryState.PENDING, DeliveryState.DEPOSITED)


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How long, and how often, the outbox tries one kind of send (§15.14)."""

    #: from the moment the message is stored until it ends as ``expired``
    lifetime_ms: int
    #: attempts after which it ends as ``expired`` even if the clock says
    #: otherwise (a wall clock set back must not make a row live for ever)
    max_attempts: int
    #: once deposited at a mailbox, keep trying directly every this often
    #: (None: a deposit is all it gets; nothing would ever confirm it)
    deposited_retry_ms: int | None


#: A user's text lives as long as a mailbox keeps a deposit (14 days,
#: §15.12): past that no copy is anywhere, so trying on only costs.  At the
#: 5-minute back-off ceiling 14 days are about 4,000 attempts.  Receipts and
#: history are machine-generated: worth a day, 300 attempts (a day at the
#: ceiling); no receipt ever confirms them, so a deposit is their last try.
TEXT_POLICY = DeliveryPolicy(14 * DAY_MS, 5_000, 5 * 60 * 1000)
MACHINE_POLICY = DeliveryPolicy(DAY_MS, 300, None)


def delivery_policy(kind: int) -> DeliveryPolicy:
    return TEXT_POLICY if kind in (KIND_TEXT, KIND_SYNC) else MACHINE_POLICY


SCHEMA_V3 = [
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
    # the whole replay guard in one row; version 5 splits it (replay.py)
    """CREATE TABLE IF NOT EXISTS replay (
           id INTEGER PRIMARY KEY CHECK (id = 1),
           guard BLOB NOT NULL)""",
]

SCHEMA_V4 = [
    # Outbox expiry (§15.14): rows from before it get their lifetime from
    # the message they carry.
    "ALTER TABLE deliveries ADD COLUMN expires_ms INTEGER NOT NULL DEFAULT 0",
    f"""UPDATE deliveries SET expires_ms = COALESCE((
           SELECT m.stored_ms + CASE m.kind WHEN {KIND_TEXT} THEN {TEXT_POLICY.lifetime_ms}
                                ELSE {MACHINE_POLICY.lifetime_ms} END
           FROM messages m WHERE m.id = deliveries.message AND m.outgoing = 1), 0)""",
    # Only rows still being tried, in the order they are due (the delivery
    # loop's two queries; finished rows cost nothing however many there are).
    """CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(next_try_ms)
           WHERE state IN ('pending', 'deposited')""",
    # Message requests (§15.14): their caps are sums over this index alone.
    "ALTER TABLE messages ADD COLUMN size INTEGER NOT NULL DEFAULT 0",
    "UPDATE messages SET size = length(CAST(text AS BLOB))",
    """CREATE INDEX IF NOT EXISTS messages_requests ON messages(peer, stored_ms, size)
           WHERE request = 1""",
    # Finished receipts and history are deleted after their lifetime.
    f"""CREATE INDEX IF NOT EXISTS messages_machine ON messages(stored_ms)
           WHERE outgoing = 1 AND kind <> {KIND_TEXT}""",
]


def text_key(sender_account: bytes, message_id: bytes) -> bytes:
    """The row key a message's sealed text is bound to (§15.21)."""
    return row_key(sender_account, message_id)


def seal_text(cipher: RowCipher, sender_account: bytes, message_id: bytes, text: str) -> bytes:
    return cipher.seal_text("messages", "text", text_key(sender_account, message_id), text)


def open_text(cipher: RowCipher, sender_account: bytes, message_id: bytes, sealed: object) -> str:
    return cipher.open_text("messages", "text", text_key(sender_account, message_id), sealed)


def _seal_texts(conn: sqlite3.Connection, cipher: RowCipher | None) -> None:
    seal_clear_rows(
        conn,
        cipher,
        "messages",
        "text",
        ("sender_account", "id"),
        lambda c, k, text: seal_text(c, bytes(k[0]), bytes(k[1]), str(text)),
    )


#: texts sealed at rest (§15.21): every stored text, then VACUUM
SCHEMA_V10 = [KeyedStep(_seal_texts)]

SCHEMA_V11 = [
    # History that proves itself (§15.4): the proof kept with each text
    # (sealed, ``proof_column``), and the relaying device of a history entry
    # that came without one.
    "ALTER TABLE messages ADD COLUMN proof BLOB",
    "ALTER TABLE messages ADD COLUMN relayed_by BLOB",
]

#: a stored proof is at most this big (two views of 32 heads: about 2.3 KB)
MAX_PROOF_BYTES = 4096


def proof_column(
    cipher: RowCipher, sender_account: bytes, message_id: bytes, proof: HistoryProof | None
) -> bytes | None:
    """The ``messages.proof`` value of ``proof``: its canonical wire form
    (§15.4), sealed to the message's row (§15.21).  Every write of the
    column goes through here."""
    if proof is None:
        return None
    key = text_key(sender_account, message_id)
    return cipher.seal("messages", "proof", key, encode_flat(proof.to_wire()))


def proof_from_column(
    cipher: RowCipher, sender_account: bytes, message_id: bytes, stored: object
) -> HistoryProof | None:
    """The proof a ``messages.proof`` value holds; every read goes through
    here.  A value that opens but does not decode is no proof: the entry is
    then relayed unproven, never shown as proven (a value that does not
    open is a damaged store, as for the text)."""
    if stored is None:
        return None
    raw = cipher.open("messages", "proof", text_key(sender_account, message_id), stored)
    try:
        return decode_proof(decode_flat(raw, MAX_PROOF_BYTES))
    except InvalidInput:
        return None


SCHEMA_V13 = [
    # a sent text's copy for the account's other devices (§15.22), one
    # envelope per text, delivered under the text's id
    """CREATE TABLE IF NOT EXISTS copies (
           message BLOB PRIMARY KEY,
           envelope BLOB NOT NULL) WITHOUT ROWID""",
]

#: the delivery loop's queries; both use ``deliveries_due`` (a test shows
#: it with EXPLAIN QUERY PLAN)
DUE_SQL = (
    # a delivery to the sender's own account carries the message's copy
    # (§15.22), any other the message's envelope (so does a row queued
    # before copies existed); a delivery re-sealed after a session reset
    # carries its new envelope (§19.15, ``resends.py``)
    "SELECT d.message, d.device, d.account, d.attempts, d.expires_ms, m.kind, "
    "COALESCE(r.envelope, CASE WHEN d.account = m.sender_account "
    "AND m.peer != m.sender_account THEN c.envelope END, m.envelope) "
    "FROM deliveries d JOIN messages m ON m.id = d.message AND m.outgoing = 1 "
    "LEFT JOIN copies c ON c.message = d.message "
    "LEFT JOIN resends r ON r.message = d.message AND r.device = d.device "
    "WHERE d.state IN ('pending', 'deposited') AND d.next_try_ms <= ? "
    "ORDER BY d.next_try_ms LIMIT ?"
)
NEXT_DUE_SQL = (
    "SELECT message, device, next_try_ms FROM deliveries "
    "WHERE state IN ('pending', 'deposited') ORDER BY next_try_ms LIMIT ?"
)


@dataclass(frozen=True, slots=True)
class MessageRow:
    message_id: bytes
    peer: bytes
    outgoing: bool
    sender_account: bytes
    sender_device: bytes
    sent_ms: int
    stored_ms: int
    text: str
    request: bool
    #: the device that relayed it as an unproven history entry (§15.4)
    relayed_by: bytes | None = None


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """A stored text as ``send_history`` relays it (§15.4)."""

    peer: bytes
    message_id: bytes
    sender_account: bytes
    sender_device: bytes
    sent_ms: int
    text: str
    proof: HistoryProof | None


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to store (sent, received, or from a history bundle)."""

    message_id: bytes
    peer: bytes
    outgoing: bool
    sender_account: bytes
    sender_device: bytes
    sent_ms: int
    stored_ms: int
    kind: int
    text: str
    request: bool = False
    envelope: bytes | None = None
    #: the proof of its sender that history relays (§15.4); None: none kept
    proof: HistoryProof | None = None
    #: set for a history entry stored unproven: the device that relayed it
    relayed_by: bytes | None = None

    @property
    def size(self) -> int:
        return len(self.text.encode())


@dataclass(frozen=True, slots=True)
class DueDelivery:
    message: bytes
    device: bytes
    account: bytes
    attempts: int
    expires_ms: int
    #: content kind of the message: which ``DeliveryPolicy`` applies
    kind: int
    envelope: bytes

    @property
    def policy(self) -> DeliveryPolicy:
        return delivery_policy(self.kind)


@dataclass(frozen=True, slots=True)
class Usage:
    """Stored requests: how many, and their UTF-8 bytes."""

    count: int
    size: int


_COLUMNS = (
    "id, peer, outgoing, sender_account, sender_device, sent_ms, stored_ms, text, request, "
    "relayed_by"
)


def _message(cipher: RowCipher, r: tuple[Any, ...]) -> MessageRow:
    mid, peer, outgoing, sa, sd, sent, stored, text, request, relayed_by = r
    return MessageRow(
        bytes(mid),
        bytes(peer),
        bool(outgoing),
        bytes(sa),
        bytes(sd),
        int(sent),
        int(stored),
        open_text(cipher, bytes(sa), bytes(mid), text),
        bool(request),
        None if relayed_by is None else bytes(relayed_by),
    )


class MessageStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.cipher = db.require_cipher()

    # -- statements for the caller's transaction ---------------------------------

    def insert_statement(self, m: NewMessage, *, ignore_duplicate: bool = True) -> Statement:
        """Store a message; a duplicate (sender account, id) is ignored (a
        received copy) or an error (our own, whose id we just drew).  One
        exception: a copy with a proof of its sender replaces a row held only
        as relayed (§15.4 *History proofs*), so an unproven claim planted
        under a real message's id cannot keep the real one out."""
        columns = (
            "id, peer, outgoing, sender_account, sender_device, sent_ms, stored_ms, kind, text, "
            "request, envelope, size, proof, relayed_by"
        )
        sql = f"INSERT INTO messages({columns}) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        if ignore_duplicate:
            replaced = [c for c in columns.split(", ") if c not in ("id", "sender_account")]
            sql += (
                " ON CONFLICT(sender_account, id) DO UPDATE SET "
                + ", ".join(f"{c}=excluded.{c}" for c in replaced)
                + " WHERE messages.relayed_by IS NOT NULL AND excluded.proof IS NOT NULL"
            )
        return (
            sql,
            (
                m.message_id,
                m.peer,
                int(m.outgoing),
                m.sender_account,
                m.sender_device,
                m.sent_ms,
                m.stored_ms,
                m.kind,
                seal_text(self.cipher, m.sender_account, m.message_id, m.text),
                int(m.request),
                m.envelope,
                m.size,
                proof_column(self.cipher, m.sender_account, m.message_id, m.proof),
                m.relayed_by,
            ),
        )

    @staticmethod
    def delivery_statement(
        message: bytes, device: bytes, account: bytes, expires_ms: int
    ) -> Statement:
        return (
            "INSERT INTO deliveries(message, device, account, state, expires_ms) "
            "VALUES(?, ?, ?, ?, ?)",
            (message, device, account, DeliveryState.PENDING.value, expires_ms),
        )

    @staticmethod
    def delivered_statement(message: bytes, device: bytes) -> Statement:
        return (
            "UPDATE deliveries SET state='delivered' WHERE message=? AND device=?",
            (message, device),
        )

    @staticmethod
    def copy_statement(message: bytes, envelope: bytes) -> Statement:
        """The envelope that carries a sent text's copy to this account's
        other devices (§15.22), delivered under the text's id."""
        return ("INSERT INTO copies(message, envelope) VALUES(?, ?)", (message, envelope))

    @staticmethod
    def counter_statement(account: bytes, next_counter: int) -> Statement:
        return (
            "INSERT INTO counters(account, next) VALUES(?, ?) ON CONFLICT(account) "
            "DO UPDATE SET next=excluded.next",
            (account, next_counter),
        )

    @staticmethod
    def delete_requests_statement(peer: bytes) -> Statement:
        return ("DELETE FROM messages WHERE peer=? AND request=1", (peer,))

    @staticmethod
    def purge_statements(sender_account: bytes, message_id: bytes) -> list[Statement]:
        """A message and its outbox rows, gone for good (the trash, §15.19)."""
        return [
            (
                "DELETE FROM deliveries WHERE message=? AND EXISTS (SELECT 1 FROM messages "
                "WHERE id=? AND sender_account=?)",
                (message_id, message_id, sender_account),
            ),
            (
                "DELETE FROM resends WHERE message=? AND EXISTS (SELECT 1 FROM messages "
                "WHERE id=? AND sender_account=?)",
                (message_id, message_id, sender_account),
            ),
            (
                "DELETE FROM messages WHERE sender_account=? AND id=?",
                (sender_account, message_id),
            ),
        ]

    @staticmethod
    def expire_requests_statement(before_ms: int) -> Statement:
        """Requests nobody accepted, stored before ``before_ms``."""
        return ("DELETE FROM messages WHERE request=1 AND stored_ms < ?", (before_ms,))

    @staticmethod
    def purge_machine_statements(before_ms: int) -> list[Statement]:
        """Receipts and history we sent before ``before_ms`` whose deliveries
        are all finished: they are never shown, and nothing resends them."""
        machine = (
            "SELECT id FROM messages WHERE outgoing=1 AND kind<>? AND stored_ms < ? "
            "AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message = messages.id "
            "AND d.state IN ('pending', 'deposited'))"
        )
        args = (KIND_TEXT, before_ms)
        copied = (
            "SELECT id FROM messages WHERE outgoing=1 AND stored_ms < ? "
            "AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message = messages.id "
            "AND d.state IN ('pending', 'deposited'))"
        )
        return [
            (f"DELETE FROM deliveries WHERE message IN ({machine})", args),
            (f"DELETE FROM messages WHERE outgoing=1 AND id IN ({machine})", args),
            # a copy whose deliveries all ended is never sent again
            (f"DELETE FROM copies WHERE message IN ({copied})", (before_ms,)),
            (f"DELETE FROM resends WHERE message IN ({copied})", (before_ms,)),
        ]

    # -- writes -------------------------------------------------------------------

    def set_delivery(
        self,
        message: bytes,
        device: bytes,
        *,
        state: str,
        attempts: int,
        next_try_ms: int,
        error: str | None,
    ) -> None:
        self.db.write(
            [
                (
                    # a receipt may have marked it delivered meanwhile: keep that
                    "UPDATE deliveries SET state=?, attempts=?, next_try_ms=?, last_error=? "
                    "WHERE message=? AND device=? AND state IN ('pending', 'deposited')",
                    (state, attempts, next_try_ms, error, message, device),
                )
            ]
        )

    def expire_deliveries(self, keys: Collection[tuple[bytes, bytes]]) -> None:
        """End these (message, device) rows as ``expired``, if still active."""
        if keys:
            self.db.write(
                [
                    (
                        "UPDATE deliveries SET state=? WHERE message=? AND device=? "
                        "AND state IN ('pending', 'deposited')",
                        (DeliveryState.EXPIRED.value, m, d),
                    )
                    for m, d in keys
                ]
            )

    @staticmethod
    def accept_requests_statement(peer: bytes) -> Statement:
        return ("UPDATE messages SET request=0 WHERE peer=? AND request=1", (peer,))

    # -- reads ----------------------------------------------------------------------

    def by_id(self, message_id: bytes, sender_account: bytes | None = None) -> MessageRow | None:
        """A stored message by its id (and sender: ids are unique per sender)."""
        sql = f"SELECT {_COLUMNS} FROM messages WHERE id=?"
        args: tuple[object, ...] = (message_id,)
        if sender_account is not None:
            sql, args = sql + " AND sender_account=?", (message_id, sender_account)
        row = self.db.query_one(sql + " ORDER BY stored_ms LIMIT 1", args)
        return None if row is None else _message(self.cipher, row)

    def count_texts(self) -> int:
        row = self.db.query_one("SELECT COUNT(*) FROM messages WHERE kind=?", (KIND_TEXT,))
        return int(row[0]) if row else 0

    def has_message(self, sender_account: bytes, message_id: bytes) -> bool:
        """Stored already, and not only as relayed history (which a proven
        copy replaces, ``insert_statement``)."""
        row = self.db.query_one(
            "SELECT 1 FROM messages WHERE sender_account=? AND id=? AND relayed_by IS NULL",
            (sender_account, message_id),
        )
        return row is not None

    def next_counter(self, account: bytes) -> int:
        row = self.db.query_one("SELECT next FROM counters WHERE account=?", (account,))
        return int(row[0]) if row else 1

    def due(self, now_ms: int, limit: int) -> list[DueDelivery]:
        rows = self.db.query(DUE_SQL, (now_ms, limit))
        return [
            DueDelivery(bytes(m), bytes(d), bytes(a), int(n), int(x), int(k), bytes(e or b""))
            for m, d, a, n, x, k, e in rows
        ]

    def next_due_ms(self, exclude: Collection[tuple[bytes, bytes]] = ()) -> int | None:
        """When the earliest delivery still being tried is due, leaving out
        the (message, device) pairs in ``exclude`` (those being tried now)."""
        rows = self.db.query(NEXT_DUE_SQL, (len(exclude) + 1,))
        for message, device, next_try in rows:
            if (bytes(message), bytes(device)) not in exclude:
                return int(next_try)
        return None

    def delivery_counts(self, message: bytes) -> dict[str, int]:
        rows = self.db.query(
            "SELECT state, COUNT(*) FROM deliveries WHERE message=? GROUP BY state", (message,)
        )
        return {str(s): int(n) for s, n in rows}

    def delivery_devices(self, message: bytes) -> list[tuple[bytes, bytes, str]]:
        """Each device a message must reach: (device, its account, state)."""
        rows = self.db.query(
            "SELECT device, account, state FROM deliveries WHERE message=? "
            "ORDER BY account, device",
            (message,),
        )
        return [(bytes(d), bytes(a), str(s)) for d, a, s in rows]

    def history(self, kind: int, limit: int) -> list[HistoryRow]:
        """The newest ``limit`` accepted messages of ``kind``, oldest first,
        each with its proof (None for one stored before proofs were kept,
        or relayed to this device unproven)."""
        rows = self.db.query(
            "SELECT peer, id, sender_account, sender_device, sent_ms, text, proof FROM messages "
            "WHERE kind=? AND request=0 ORDER BY stored_ms DESC, rowid DESC LIMIT ?",
            (kind, limit),
        )
        out = []
        for p, i, sa, sd, ts, t, pr in reversed(rows):
            sa, i = bytes(sa), bytes(i)
            out.append(
                HistoryRow(
                    bytes(p),
                    i,
                    sa,
                    bytes(sd),
                    int(ts),
                    open_text(self.cipher, sa, i, t),
                    proof_from_column(self.cipher, sa, i, pr),
                )
            )
        return out

    def inbox(self, kind: int, since_ms: int, limit: int = 500) -> list[MessageRow]:
        rows = self.db.query(
            f"SELECT {_COLUMNS} FROM messages WHERE kind=? AND outgoing=0 AND request=0 "
            "AND stored_ms > ? ORDER BY stored_ms, rowid LIMIT ?",
            (kind, since_ms, limit),
        )
        return [_message(self.cipher, r) for r in rows]

    def conversation(self, peer: bytes, kind: int) -> list[MessageRow]:
        rows = self.db.query(
            f"SELECT {_COLUMNS} FROM messages WHERE peer=? AND kind=? ORDER BY sent_ms, rowid",
            (peer, kind),
        )
        return [_message(self.cipher, r) for r in rows]

    # Requests: every query reads ``messages_requests`` (only request rows,
    # bounded by the caps), and leaves out requests stored before ``since_ms``
    # (expired, not yet swept).

    def requests(self, since_ms: int) -> list[MessageRow]:
        rows = self.db.query(
            f"SELECT {_COLUMNS} FROM messages WHERE request=1 AND stored_ms >= ? "
            "ORDER BY stored_ms, rowid",
            (since_ms,),
        )
        return [_message(self.cipher, r) for r in rows]

    def request_peers(self) -> list[bytes]:
        """Accounts with requests held (any age)."""
        rows = self.db.query("SELECT DISTINCT peer FROM messages WHERE request=1")
        return [bytes(r[0]) for r in rows]

    def request_senders(self, since_ms: int) -> int:
        row = self.db.query_one(
            "SELECT COUNT(DISTINCT peer) FROM messages WHERE request=1 AND stored_ms >= ?",
            (since_ms,),
        )
        return int(row[0]) if row else 0

    def request_usage(self, since_ms: int, peer: bytes | None = None) -> Usage:
        """Requests stored since ``since_ms``: from ``peer``, or from anyone."""
        args: tuple[object, ...] = (since_ms,) if peer is None else (since_ms, peer)
        sql = "" if peer is None else " AND peer=?"
        row = self.db.query_one(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM messages INDEXED BY messages_requests "
            f"WHERE request=1 AND stored_ms >= ?{sql}",
            args,
        )
        return Usage(int(row[0]), int(row[1])) if row else Usage(0, 0)

    def request_ids_by_device(self, peer: bytes) -> dict[bytes, list[bytes]]:
        """``peer``'s waiting requests by the device that sent them (receipts)."""
        out: dict[bytes, list[bytes]] = {}
        for mid, device in self.db.query(
            "SELECT id, sender_device FROM messages WHERE peer=? AND request=1 AND outgoing=0 "
            "ORDER BY id",
            (peer,),
        ):
            out.setdefault(bytes(device), []).append(bytes(mid))
        return out
