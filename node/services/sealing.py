"""Sealing on a node (PROTOCOL.md §15.3, §15.22): one envelope with the
rows that must be written in its transaction (the counter it used, the
sessions it advanced, sticky marks), and the copy of a text for the
sender's own other devices, in an envelope of its own.

The copy has its own content key, ciphertext, envelope message id and
counter (the own-account stream), so nothing in the clear pairs it with
the original (§15.1); the ``SentCopy`` inside names the original's message
id, which is the id the other devices store the text under.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from protocol.core.errors import UsageError
from protocol.log.ledger import Ledger
from protocol.log.state import AccountState, DeviceStatus
from protocol.messaging.content import Content, HistoryEntry, SentCopy, Text
from protocol.messaging.envelope import OpenedEnvelope, SealedEnvelope, ledger_lookup, seal
from protocol.messaging.history import EntryVerdict, check_entry

from ..context import NodeContext
from ..storage.db import Statement
from ..storage.messages import KIND_TEXT, MessageStore, NewMessage
from .sessions import SessionService

log = logging.getLogger("smu.messages")


@dataclass(frozen=True, slots=True)
class Sealed:
    env: SealedEnvelope
    #: the counter used up and the sessions advanced: written with the message
    rows: list[Statement]


def seal_counted(
    ctx: NodeContext,
    sessions: SessionService,
    store: MessageStore,
    my_state: AccountState,
    their_state: AccountState,
    content: Content,
    *,
    timestamp: int,
    force: bool = False,
    only: list[bytes] | None = None,
) -> Sealed:
    """Seal with the next counter of the recipient account's stream and the
    sessions of its devices (raises what ``seal`` raises)."""
    recipient = their_state.account_id
    counter = store.next_counter(recipient)
    outgoing = sessions.for_send([their_state])
    env = seal(
        ctx.params,
        ctx.device,
        my_state,
        their_state,
        content,
        counter=counter,
        timestamp=timestamp,
        seed=os.urandom(32),
        force=force,
        only_devices=only,
        sessions=outgoing.sessions,
    )
    rows = [
        # the counter is used up in the transaction that stores the message:
        # never reused, never skipped silently (§15.6)
        MessageStore.counter_statement(recipient, counter + 1),
        # the sessions this envelope advanced, before it can leave
        *outgoing.statements(env.book),
    ]
    return Sealed(env, rows)


def own_copy(
    ctx: NodeContext,
    sessions: SessionService,
    store: MessageStore,
    my_state: AccountState,
    original: SealedEnvelope,
    text: Text,
    timestamp: int,
) -> Sealed | None:
    """The copy of ``text`` for this account's other active devices, or None
    when it has none."""
    me = ctx.device.sign_public
    if not any(d.status is DeviceStatus.ACTIVE and d.sign_public != me for d in my_state.devices):
        return None
    # the original's proof rides along: the other devices' history then
    # relays this text as proven by its signature (§15.4)
    copy = SentCopy(original.recipient_account, original.message_id, text, original.proof)
    try:
        return seal_counted(ctx, sessions, store, my_state, my_state, copy, timestamp=timestamp)
    except UsageError as exc:  # no own device reachable: the original still goes
        log.info("no copy for this account's other devices: %s", exc)
        return None


def copy_message(
    opened: OpenedEnvelope, copy: SentCopy, own: bytes, now: int, ledger: Ledger
) -> NewMessage:
    """The text another device of this account sent, as this device stores
    it: outgoing, under the original's message id (§15.22).  Its proof is
    kept only if it holds (§15.4): this device relays kept proofs as proven,
    and a new device it approves blames it for any that do not."""
    entry = HistoryEntry(
        copy.recipient_account, copy.message_id, own, opened.sender_device,
        opened.timestamp, copy.content, copy.proof,
    )  # fmt: skip
    check = check_entry(entry, own, ledger_lookup(ledger), ledger.account_of)
    proven = check.verdict is EntryVerdict.VERIFIED
    if copy.proof is not None and not proven:
        log.warning("a copy from this account's device came with a proof that does not hold")
    return NewMessage(
        message_id=copy.message_id,
        peer=copy.recipient_account,
        outgoing=True,
        sender_account=own,
        sender_device=opened.sender_device,
        sent_ms=opened.timestamp,
        stored_ms=now,
        kind=KIND_TEXT,
        text=copy.content.text,
        proof=copy.proof if proven else None,
    )
