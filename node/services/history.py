"""History for a newly linked device, both ways (PROTOCOL.md §14.9, §15.4
*History bundles* and *History proofs*).

Sending: the newest texts with the proof of its sender each was stored
with, packed by bytes into bundles that seal within the envelope limits.
Receiving: every entry checked against this node's own replica; proven
entries are stored as their senders', unproven ones as relayed by the
device that sent the bundle, forged ones not at all.
"""

from __future__ import annotations

from protocol.log.ledger import Ledger
from protocol.messaging.content import HistoryBundle, HistoryEntry, Text
from protocol.messaging.envelope import ledger_lookup
from protocol.messaging.history import EntryVerdict, behind_error, check_bundle, pack_history

from ..storage.messages import KIND_TEXT, MessageStore, NewMessage

#: texts a new device gets from its approver
HISTORY_LIMIT = 1000
#: a history of large texts goes in at most this many bundles: the newest
#: texts are kept, up to about 15 MiB
MAX_HISTORY_PARTS = 16


def history_bundles(
    store: MessageStore, hidden: set[tuple[bytes, bytes]]
) -> tuple[HistoryBundle, ...]:
    """The bundles to send, leaving out the account's trash (``hidden``)."""
    entries = [
        HistoryEntry(
            r.peer,
            r.message_id,
            r.sender_account,
            r.sender_device,
            r.sent_ms,
            Text(r.text),
            r.proof,
        )
        for r in store.history(KIND_TEXT, HISTORY_LIMIT)
        if (r.sender_account, r.message_id) not in hidden
    ]
    return pack_history(entries, MAX_HISTORY_PARTS)


def received_history(
    ledger: Ledger, own: bytes, relayer: bytes, bundle: HistoryBundle, now_ms: int
) -> tuple[list[NewMessage], int]:
    """The texts of a bundle that ``relayer``, a device of the own account,
    sent, and how many entries were forged.  Raises ``HistoryBehindError``
    (nothing is stored, the sender retries) if this replica cannot decide yet."""
    checks = check_bundle(bundle, own, ledger_lookup(ledger), ledger.account_of)
    behind = behind_error(checks)
    if behind is not None:
        raise behind
    out: list[NewMessage] = []
    forged = 0
    for e, check in zip(bundle.entries, checks, strict=True):
        if check.verdict is EntryVerdict.FORGED:
            forged += 1
            continue
        if not isinstance(e.content, Text):
            continue
        proven = check.verdict is EntryVerdict.VERIFIED
        out.append(
            NewMessage(
                message_id=e.message_id,
                peer=e.peer_account,
                outgoing=e.sender_account == own,
                sender_account=e.sender_account,
                sender_device=e.sender_device,
                sent_ms=e.timestamp,
                stored_ms=now_ms,
                kind=KIND_TEXT,
                text=e.content.text,
                proof=e.proof if proven else None,
                relayed_by=None if proven else relayer,
            )
        )
    return out, forged
