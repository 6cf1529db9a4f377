"""Mailbox tokens on a running node (PROTOCOL.md §15.16; DESIGN §5, §10).

Issuing: this device hands each contact's account one-time tokens for each
mailbox that holds a grant naming this device's token key, in TOKENS
contents (kind 48) sealed like any message, and a few in every invite.
The quota per contact is ``protocol.messaging.tokens``'s: at most
``TOKENS_PER_DAY`` a day per mailbox, a new batch when the contact is
estimated to run low or its newest tokens are past half their life.  Only
contacts get refills, so blocking one stops them (its last tokens die with
their expiry, within a week).  "Is this a contact" is the contact set's
answer (DESIGN §10).

Holding: tokens other devices handed this one are kept (bounded,
``node/storage/tokens.py``) and spent by ``MailboxService.deposit``: one
per deposit, in an order of their own per device (``_order``) so that two
devices of this account holding the same batch rarely pick the same token
first; a token the mailbox calls spent or invalid is dropped, one it never
saw (unreachable, quota) is kept.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence

import trio

from protocol.core.invite import Invite
from protocol.messaging.tokens import (
    BATCH,
    INVITE_TOKENS,
    INVITE_TOKENS_PER_DAY,
    Supply,
    Token,
    TokenBatch,
    TokenSigner,
    after_refill,
    from_invite,
    needs_refill,
    token_expiry,
)
from protocol.records.grant import Grant

from ..context import NodeContext
from ..control import RpcFailure
from ..storage.db import Statement
from ..storage.tokens import INVITES, TokenStore
from .contacts import ContactSet

log = logging.getLogger("smu.tokens")
#: how often every contact's supply is looked at (refills before expiry)
SWEEP_INTERVAL = 600.0
#: a held token this close to its expiry is not used (the mailbox's clock)
EXPIRY_MARGIN_MS = 60_000

#: seal a TOKENS content to an account (raises RpcFailure if it cannot yet)
SendBatch = Callable[[bytes, TokenBatch], object]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class TokenService:
    def __init__(
        self,
        ctx: NodeContext,
        store: TokenStore,
        signer: TokenSigner,
        contacts: ContactSet,
        grants: Callable[[], Sequence[Grant]],
    ) -> None:
        self.ctx = ctx
        self.store = store
        self.signer = signer
        self.contacts = contacts
        #: this device's grants (the mailbox client's)
        self.grants = grants
        #: set by the daemon once the message service exists
        self.send: SendBatch | None = None
        #: held tokens being tried right now: not handed to a second deposit
        self._reserved: set[tuple[bytes, bytes, bytes]] = set()
        #: the contacts at the last look: a sync change refills only the new
        #: ones (one supply read each), not every contact again
        self._known: set[bytes] = set()
        #: this node's own key: its prekey fetches are paid with tokens that
        #: name it (§19.16), so contacts get batches for it too
        self.own_mailbox_key: bytes | None = None

    # -- issuing --------------------------------------------------------------

    def _keyed_grants(self) -> list[Grant]:
        """Our grants whose mailbox checks tokens of our token key."""
        return [g for g in self.grants() if g.token_key == self.signer.public]

    def _token_mailboxes(self) -> list[bytes]:
        """The keys contacts get tokens for: our keyed mailboxes, and this
        node, which serves our one-time prekeys (§19.16)."""
        keys = [g.mailbox_key for g in self._keyed_grants()]
        if self.own_mailbox_key is not None and self.own_mailbox_key not in keys:
            keys.append(self.own_mailbox_key)
        return keys

    def _batch(self, mailbox_key: bytes, count: int, now_ms: int) -> TokenBatch:
        nonces = [os.urandom(16) for _ in range(count)]
        device = self.ctx.device.sign_public
        tokens = self.signer.issue(
            self.ctx.params, mailbox_key, device, nonces, token_expiry(now_ms)
        )
        return TokenBatch(device, mailbox_key, tokens)

    def refill(self, contact: bytes) -> int:
        """Send ``contact`` a batch for each mailbox where it runs low, if
        its quota allows; the number of tokens sent."""
        if self.send is None or not self.contacts.is_contact(contact):
            return 0
        if contact == self.ctx.account() or contact not in self.ctx.ledger.accounts:
            return 0
        now_ms = _now_ms()
        sent = 0
        for mailbox_key in self._token_mailboxes():
            supply = self.store.supply(contact, mailbox_key)
            if not needs_refill(supply, now_ms):
                continue
            batch = self._batch(mailbox_key, BATCH, now_ms)
            try:
                self.send(contact, batch)
            except RpcFailure as exc:
                log.debug("no tokens for %s yet: %s", contact.hex()[:12], exc)
                return sent
            new = after_refill(supply, now_ms, BATCH, batch.tokens[0].expires)
            self.store.db.write([TokenStore.supply_statement(contact, mailbox_key, new)])
            sent += BATCH
        return sent

    def refill_all(self) -> None:
        """Every contact (the periodic sweep, a change of our grants)."""
        accounts = {c.account for c in self.contacts.all()}
        self._known = accounts
        for account in sorted(accounts):
            self.refill(account)

    def contacts_changed(self) -> None:
        """The account-wide state changed (perhaps on another device): a
        contact added or unblocked there gets its first tokens from this
        device too; the others were served already and wait for the sweep."""
        accounts = {c.account for c in self.contacts.all()}
        new, self._known = accounts - self._known, accounts
        for account in sorted(new):
            self.refill(account)

    def message_from(self, account: bytes) -> None:
        """A message from ``account`` was stored: count a token spent, and
        refill if it runs low."""
        if not self.contacts.is_contact(account):
            return
        self.store.db.write([TokenStore.spent_one_statement(account)])
        self.refill(account)

    def invite_batches(self) -> tuple[TokenBatch, ...]:
        """A few tokens per mailbox for an invite, within the day's invite
        quota (none once it is used up: the invite still works)."""
        now_ms = _now_ms()
        out = []
        rows: list[Statement] = []
        for grant in self._keyed_grants():
            supply = self.store.supply(INVITES, grant.mailbox_key).at(now_ms)
            if supply.issued_today + INVITE_TOKENS > INVITE_TOKENS_PER_DAY:
                continue
            batch = self._batch(grant.mailbox_key, INVITE_TOKENS, now_ms)
            out.append(batch)
            s = Supply(supply.day_start, supply.issued_today + INVITE_TOKENS, 0, supply.expires)
            rows.append(TokenStore.supply_statement(INVITES, grant.mailbox_key, s))
        if rows:
            self.store.db.write(rows)
        return tuple(out)

    async def run(self) -> None:
        """Refill before tokens expire; forget expired held tokens."""
        while True:
            await trio.sleep(SWEEP_INTERVAL)
            self.store.prune(_now_ms())
            self.refill_all()

    # -- holding --------------------------------------------------------------

    def hold_statements(self, sender: bytes, batch: TokenBatch) -> list[Statement]:
        """Keep tokens a device of ``sender`` handed us (the envelope opener
        checked that the batch is for its sender device), unless ``sender``
        is blocked; statements for the receiving transaction."""
        if self.contacts.is_blocked(sender) or sender == self.ctx.account():
            return []
        return self.store.hold_statements(sender, batch, _now_ms())

    def hold_invite(self, invite: Invite) -> int:
        rows: list[Statement] = []
        for batch in from_invite(invite):
            rows.extend(self.store.hold_statements(invite.account, batch, _now_ms()))
        if rows:
            self.store.db.write(rows)
        return len(rows)

    def _order(self, token: Token) -> bytes:
        return hashlib.blake2b(self.ctx.device.sign_public + token.nonce, digest_size=8).digest()

    def take(self, device: bytes, mailbox_key: bytes, limit: int = 3) -> list[Token]:
        """Up to ``limit`` held tokens for a deposit to ``device`` at that
        mailbox, reserved until ``release``d or ``spent``."""
        usable = self.store.held(device, mailbox_key, _now_ms() + EXPIRY_MARGIN_MS)
        out = []
        for t in sorted(usable, key=self._order):
            key = (device, mailbox_key, t.nonce)
            if key in self._reserved:
                continue
            self._reserved.add(key)
            out.append(t)
            if len(out) >= limit:
                break
        return out

    def release(self, device: bytes, mailbox_key: bytes, tokens: Sequence[Token]) -> None:
        for t in tokens:
            self._reserved.discard((device, mailbox_key, t.nonce))

    def spent(self, device: bytes, mailbox_key: bytes, token: Token) -> None:
        """The mailbox took it, or says it is spent or invalid: drop it."""
        self.store.drop(device, mailbox_key, token.nonce)
        self._reserved.discard((device, mailbox_key, token.nonce))
