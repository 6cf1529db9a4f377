"""Messages re-sealed after a session reset (PROTOCOL.md §19.15).

``resends``: for one (message, device), the envelope that replaces the
message's own (or its copy's) on that device's delivery, sealed afresh
under the message's id after the device said it no longer holds the
session the first one used.  The delivery loop prefers it (``DUE_SQL`` in
``messages.py``); it goes with the message (the trash, the sweep).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .at_rest import RowCipher
from .db import Step
from .messages import KIND_TEXT, open_text, proof_from_column

if TYPE_CHECKING:
    from protocol.messaging.content import HistoryProof

    from .db import Database, Statement

SCHEMA_V14: list[Step] = [
    """CREATE TABLE IF NOT EXISTS resends (
           message BLOB NOT NULL,
           device BLOB NOT NULL,
           envelope BLOB NOT NULL,
           PRIMARY KEY (message, device)) WITHOUT ROWID""",
]

#: texts re-sent per reset at most: one reset costs bounded sealing (the
#: newest first; older ones stay as they were and expire)
MAX_RESENDS = 256

#: texts this device sent that ``device`` has not confirmed and that are
#: still within their lifetime
_UNDELIVERED_SQL = (
    "SELECT m.id, m.peer, m.text, m.proof, m.sent_ms FROM deliveries d "
    "JOIN messages m ON m.id = d.message AND m.outgoing = 1 "
    "WHERE d.device = ? AND d.account = ? AND m.kind = ? AND d.expires_ms > ? "
    "AND d.state IN ('pending', 'deposited', 'failed') {one}"
    "ORDER BY m.stored_ms DESC LIMIT ?"
)

#: (message id, peer, text, proof, sent ms)
OwedText = tuple[bytes, bytes, str, "HistoryProof | None", int]


def undelivered_texts(
    db: Database,
    cipher: RowCipher,
    own: bytes,
    account: bytes,
    device: bytes,
    now_ms: int,
    message: bytes | None = None,
) -> list[OwedText]:
    """(message id, peer, text, proof, sent ms) of the texts still owed to ``device``
    of ``account``, newest first, at most ``MAX_RESENDS`` (only ``message``
    if named)."""
    args: tuple[object, ...] = (device, account, KIND_TEXT, now_ms)
    sql = _UNDELIVERED_SQL.format(one="" if message is None else "AND m.id = ? ")
    if message is not None:
        args = (*args, message)
    rows: list[tuple[Any, ...]] = db.query(sql, (*args, MAX_RESENDS))
    out: list[OwedText] = []
    for mid, peer, text, proof, sent_ms in rows:
        mid = bytes(mid)
        out.append(
            (
                mid,
                bytes(peer),
                open_text(cipher, own, mid, text),
                proof_from_column(cipher, own, mid, proof),
                int(sent_ms),
            )
        )
    return out


def resend_statements(message: bytes, device: bytes, envelope: bytes) -> list[Statement]:
    """The new envelope for that delivery, which starts again now."""
    return [
        (
            "INSERT OR REPLACE INTO resends(message, device, envelope) VALUES(?, ?, ?)",
            (message, device, envelope),
        ),
        (
            "UPDATE deliveries SET state='pending', attempts=0, next_try_ms=0, last_error=NULL "
            "WHERE message=? AND device=?",
            (message, device),
        ),
    ]
