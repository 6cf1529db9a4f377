"""Signed session resets on a node (PROTOCOL.md §19.15).

* Asking: an envelope whose scheme-2 wrap names a session this device does
  not hold (``SessionNotHeldError``) is refused as before; if the wrap
  names a sender that is an active device of a contact or of this
  account, that device gets a ``SessionReset`` naming the session, sealed
  and delivered like any message (mailboxes included), at most one per
  device per ``RESET_INTERVAL_MS`` (``ResetLimiter``): the name is the
  sender's unauthenticated claim, so a flood of forged or old envelopes
  costs one reset, never one each.
* Answering: a reset, signed by the device a session is with, ends the
  named sessions with that device (never another's), and the texts still
  owed to that device are sealed afresh under their ids (a new session)
  in the transaction that accepts the reset; the user gets one notice.
* Sealing again (§19.13): a text refused over a direct stream with
  ``session_key_gone`` (the bound dropped its key there) or
  ``prekey_reused`` (its one-time prekey was spent) is sealed afresh for
  that device alone, under a new session (after ``prekey_reused``, with a
  freshly fetched one-time prekey), at most ``MAX_RESEALS`` times; after
  that, or for another kind, the delivery fails with the refusal's code.
  A device that gets such a message through a mailbox asks with a reset.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from protocol.core.errors import UsageError
from protocol.log.state import AccountState
from protocol.messaging.content import Content, SentCopy, Text
from protocol.messaging.envelope import OpenedEnvelope, seal
from protocol.messaging.resets import (
    LostSession,
    ResetKind,
    ResetLimiter,
    SessionReset,
    sessions_to_end,
)
from protocol.messaging.scheme2 import WRAP_SCHEME_2, SendSessions, party_of
from protocol.messaging.sessions import SessionBook

from ..context import NodeContext
from ..control import RpcFailure
from ..storage.db import Statement
from ..storage.messages import KIND_TEXT, DueDelivery, MessageStore
from ..storage.resends import OwedText, resend_statements, undelivered_texts
from ..storage.sessions import SessionStore
from .contacts import ContactSet
from .sessions import SessionService

log = logging.getLogger("smu.messages")
KIND_RESET = int(ResetKind.SESSION_RESET)

#: seal and queue (recipient account, content, kind, text, only devices)
Queue = Callable[[bytes, Content, int, str, list[bytes]], object]
#: fetch one-time prekeys for the devices of an account that need a set-up
Prefetch = Callable[[AccountState], Awaitable[object]]
#: answers to a direct delivery after which the text is sealed again for
#: that device under a new session (§19.13)
RESEAL = frozenset({"session_key_gone", "prekey_reused"})
#: times one text is sealed again for one device: a second refusal may be a
#: race (a key served twice, a bound hit twice); beyond, it fails, typed
MAX_RESEALS = 2
#: (message, device) pairs counted, in memory (a restart allows
#: ``MAX_RESEALS`` more); beyond, the oldest are forgotten
MAX_RESEAL_ENTRIES = 4096


@dataclass(frozen=True, slots=True)
class Answered:
    """What accepting a reset writes, and what to say once it is written."""

    rows: list[Statement]
    notice: str
    resent: int


class ResetService:
    def __init__(
        self,
        ctx: NodeContext,
        sessions: SessionService,
        store: MessageStore,
        contacts: ContactSet,
        clock_ms: Callable[[], int],
        queue: Queue,
        device_name: Callable[[bytes, bytes], str],
    ) -> None:
        self.ctx = ctx
        self.sessions = sessions
        self.store = store
        self.contacts = contacts
        self.now_ms = clock_ms
        self.queue = queue
        #: a device's name as this device's replica lists it
        self.device_name = device_name
        #: in memory: a restart allows one more reset per device, no more
        self.limiter = ResetLimiter()
        #: resets sent and accepted (metrics, tests)
        self.asked = 0
        self.answered = 0
        #: (message, device) -> times sealed again after a refusal (§19.13)
        self.resealed: dict[tuple[bytes, bytes], int] = {}

    # -- asking ------------------------------------------------------------------

    def lost(self, lost: LostSession) -> None:
        """A wrap named a session this device does not hold, or one whose
        message key the bound may have dropped: ask its (claimed) sender to
        set up afresh and send again, if allowed (§19.15)."""
        claimed = lost.claimed_sender
        if claimed is None:
            return
        account, device = claimed
        own = self.ctx.own_account()
        # never to a stranger: a signed reset says this device is alive
        if account != own and not self.contacts.is_contact(account):
            return
        ledger = self.ctx.ledger
        state = ledger.state(account) if account in ledger.accounts else None
        if party_of(state, device) is None or device == self.ctx.device.sign_public:
            return
        now = self.now_ms()
        if not self.limiter.allows(claimed, now):
            return
        reset = SessionReset((lost.session_id,))
        try:
            self.queue(account, reset, KIND_RESET, "", [device])
        except RpcFailure as err:  # no way to seal to it yet: try on a later one
            log.info("no session reset sent: %s", err)
            return
        self.limiter = self.limiter.sent(claimed, now)
        self.asked += 1

    def superseded(self, due: DueDelivery) -> bool:
        """This delivery's envelope was replaced by a reset while it was on
        its way: its refusal must neither end the new session nor fail the
        row (the reset may arrive before the refusal of the text it covers)."""
        row = self.store.db.query_one(
            "SELECT envelope FROM resends WHERE message=? AND device=?", (due.message, due.device)
        )
        return row is not None and bytes(row[0]) != due.envelope

    # -- sealing one text again ------------------------------------------------------

    async def reseal(self, due: DueDelivery, code: str, prefetch: Prefetch | None) -> bool:
        """After a direct refusal in ``RESEAL`` (the caller ended the
        sessions with that device): seal the text again for that device
        alone, under a new session, and True; False when it is not a text,
        no longer owed, or sealed ``MAX_RESEALS`` times already (the caller
        then fails the delivery with the refusal)."""
        key = (due.message, due.device)
        count = self.resealed.get(key, 0)
        if code not in RESEAL or due.kind != KIND_TEXT or count >= MAX_RESEALS:
            return False
        ledger = self.ctx.ledger
        if due.account not in ledger.accounts:
            return False
        if code == "prekey_reused" and prefetch is not None:
            # a fresh bundle: the refused one-time prekey is spent (§19.3)
            await prefetch(ledger.state(due.account))
        own = self.ctx.own_account()
        texts = undelivered_texts(
            self.store.db, self.store.cipher, own, due.account, due.device, self.now_ms(),
            message=due.message,
        )  # fmt: skip
        if not texts:
            return False
        book = self.sessions.store.book_of([(due.account, due.device)])
        rows, after, resent = self._resend(due.account, due.device, book, texts)
        if not resent:
            return False
        self.store.db.write([*rows, *self.sessions.store.statements(book, after)])
        self.resealed.pop(key, None)
        self.resealed[key] = count + 1
        while len(self.resealed) > MAX_RESEAL_ENTRIES:
            del self.resealed[next(iter(self.resealed))]
        log.info("a text refused with %s was sealed again (%d)", code, count + 1)
        return True

    # -- answering ----------------------------------------------------------------

    def answer(
        self, opened: OpenedEnvelope, reset: SessionReset, read: list[SessionBook]
    ) -> Answered:
        """The rows that end the named sessions with the reset's signer and
        re-seal the texts owed to it; they replace what ``SessionService.
        received`` would write for this envelope."""
        account, device = opened.sender_account, opened.sender_device
        if opened.scheme == WRAP_SCHEME_2 and opened.book is not None and read:
            # the reset came over a new session from that device: use it
            before, book = read[-1], opened.book
            if opened.prekeys is not None:
                self.sessions.prekeys.commit(opened.prekeys)
        else:
            before = book = self.sessions.store.book_of([(account, device)])
        ended = set(sessions_to_end(book.entries, (account, device), reset))
        book = SessionBook({s: e for s, e in book.entries.items() if s not in ended}, book.seq)
        now = self.now_ms()
        own = self.ctx.own_account()
        texts = undelivered_texts(self.store.db, self.store.cipher, own, account, device, now)
        rows, book, resent = self._resend(account, device, book, texts)
        rows += self.sessions.store.statements(before, book)
        if opened.scheme == WRAP_SCHEME_2:
            rows.append(SessionStore.seen_statement(account, device))
        whose = "your" if account == self.ctx.own_account() else f"{self.contacts.label(account)}'s"
        name = self.device_name(account, device)
        notice = f"your secure session with {whose} device {name} was reset"
        if resent:
            notice += f"; {resent} message(s) not yet delivered there were sent again"
        return Answered(rows, notice, resent)

    def _resend(
        self, account: bytes, device: bytes, book: SessionBook, texts: list[OwedText]
    ) -> tuple[list[Statement], SessionBook, int]:
        """Seal ``texts``, owed to ``device``, afresh, one envelope each,
        only for it, under each text's id (a copy: under a new envelope id,
        its ``SentCopy`` naming the text's)."""
        own = self.ctx.own_account()
        ledger = self.ctx.ledger
        my_state, their_state = ledger.state(own), ledger.state(account)
        if not texts:
            return [], book, 0
        outgoing = self.sessions.for_send([their_state])
        rows: list[Statement] = list(outgoing.rows)
        counter = self.store.next_counter(account)
        resent = 0
        for mid, peer, text, proof, sent_ms in texts:
            content: Content = Text(text)
            message_id: bytes | None = mid
            if account == own and peer != own:  # the copy for our other device
                content, message_id = SentCopy(peer, mid, Text(text), proof), None
            sessions = SendSessions(book, outgoing.sessions.reach, outgoing.sessions.self_prekey)
            try:
                env = seal(
                    self.ctx.params, self.ctx.device, my_state, their_state, content,
                    counter=counter, timestamp=sent_ms, seed=os.urandom(32),
                    only_devices=[device], sessions=sessions, message_id=message_id, force=True,
                )  # fmt: skip
            except UsageError as exc:  # it stays as it was, and expires
                log.info("a text could not be sealed again after a reset: %s", exc)
                continue
            if env.book is not None:
                book = env.book
            counter += 1
            resent += 1
            rows += resend_statements(mid, device, env.raw)
        if resent:
            rows.append(MessageStore.counter_statement(account, counter))
        return rows, book, resent
