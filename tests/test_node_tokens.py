"""The node's token service without processes (PROTOCOL.md §15.16): a
contact gets batches within its daily quota and a blocked one gets none;
invites carry a few tokens within their own quota; tokens handed to us are
capped; the ones a deposit tries are reserved, and dropped once spent."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from node.services.tokens import TokenService
from node.storage import TokenStore, open_database
from node.storage import tokens as token_storage
from protocol.core.machine import Now
from protocol.log.ledger import Ledger
from protocol.messaging import tokens as tk
from protocol.messaging.mailbox import Mailbox, MailboxIdentity
from protocol.messaging.tokens import TokenBatch, TokenSigner

from .conftest import FAST, History, device
from .messaging_support import STORAGE_KEY, contacts_for


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.me = History(name="me")
        self.them = History(name="them")
        ledger = Ledger(FAST)
        for h in (self.me, self.them):
            ledger.ingest(h.genesis.raw)
        db = open_database(tmp_path / "events.sqlite", STORAGE_KEY)
        self.signer = TokenSigner(b"s" * 32)
        key = self.me.keys["d0"]
        box = Mailbox(FAST, MailboxIdentity(b"b" * 32), "12D3KooWTokens")
        now = Now(0.0, int(time.time() * 1000))
        self.grant = box.issue_grant(
            self.me.account, key.sign_public, now=now, token_key=self.signer.public
        )
        ctx = SimpleNamespace(
            params=FAST, device=key, ledger=ledger, account=lambda: self.me.account
        )
        self.contacts = contacts_for(ctx, db)
        self.service = TokenService(
            ctx,  # type: ignore[arg-type]
            TokenStore(db),
            self.signer,
            self.contacts,
            grants=lambda: [self.grant],
        )
        self.sent: list[tuple[bytes, TokenBatch]] = []
        self.service.send = lambda account, batch: self.sent.append((account, batch))
        self.contacts.on_added.append(self.service.refill)


@pytest.fixture
def s(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


def test_a_new_contact_gets_a_batch_and_its_refills_stop_at_the_daily_quota(s: Setup) -> None:
    s.contacts.add(s.them.account, "them")
    (account, batch), *_ = s.sent
    assert account == s.them.account and len(batch.tokens) == tk.BATCH
    assert batch.device == s.me.keys["d0"].sign_public
    assert batch.mailbox_key == s.grant.mailbox_key
    for t in batch.tokens:  # the mailbox will take them
        tk.verify_token(FAST, s.grant.mailbox_key, batch.device, s.signer.public, t, t.expires - 1)
    for _ in range(200):  # a contact that writes a lot
        s.service.message_from(s.them.account)
    assert sum(len(b.tokens) for _, b in s.sent) == tk.TOKENS_PER_DAY


def test_a_blocked_contact_gets_no_refills(s: Setup) -> None:
    s.contacts.add(s.them.account, "them")
    s.contacts.block(s.them.account)
    before = len(s.sent)
    for _ in range(20):
        s.service.message_from(s.them.account)
    s.service.refill_all()
    assert len(s.sent) == before
    # nor do tokens from a blocked account get kept
    batch = s.sent[0][1]
    assert s.service.hold_statements(s.them.account, batch) == []


def test_no_tokens_for_strangers_or_grants_without_our_key(s: Setup) -> None:
    assert s.service.refill(s.them.account) == 0  # not a contact
    s.grant = Mailbox(FAST, MailboxIdentity(b"c" * 32), "p").issue_grant(
        s.me.account, s.me.keys["d0"].sign_public, now=Now(0.0, int(time.time() * 1000))
    )
    s.contacts.add(s.them.account, "them")
    assert s.sent == []


def test_invites_carry_a_few_tokens_within_their_own_quota(s: Setup) -> None:
    counts = [sum(len(b.tokens) for b in s.service.invite_batches()) for _ in range(12)]
    assert counts[0] == tk.INVITE_TOKENS
    assert sum(counts) == tk.INVITE_TOKENS_PER_DAY  # then invites come without tokens
    assert counts[-1] == 0


def test_tokens_held_are_reserved_while_tried_and_capped_in_all(
    s: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = device("holder")
    signer = TokenSigner(b"o" * 32)
    expires = tk.token_expiry(int(time.time() * 1000))
    nonces = [bytes([i]) * 16 for i in range(10)]
    batch = TokenBatch(
        other.sign_public,
        b"m" * 32,
        signer.issue(FAST, b"m" * 32, other.sign_public, nonces, expires),
    )
    s.service.store.db.write(s.service.hold_statements(s.them.account, batch))
    first = s.service.take(other.sign_public, b"m" * 32, 3)
    second = s.service.take(other.sign_public, b"m" * 32, 3)
    assert len(first) == 3 and not {t.nonce for t in first} & {t.nonce for t in second}
    s.service.spent(other.sign_public, b"m" * 32, first[0])
    s.service.release(other.sign_public, b"m" * 32, first[1:])
    assert s.service.store.held_count(other.sign_public) == 9
    # the cap over all mailboxes holds too
    monkeypatch.setattr(token_storage, "HELD_TOTAL", 12)
    more: Any = TokenBatch(
        other.sign_public,
        b"n" * 32,
        signer.issue(FAST, b"n" * 32, other.sign_public, nonces, expires),
    )
    s.service.store.db.write(s.service.hold_statements(s.them.account, more))
    assert s.service.store.held_count() == 12


def test_a_deposit_spends_one_token_drops_dead_ones_and_else_goes_as_a_stranger(
    s: Setup,
) -> None:
    import trio

    from node.driver import MachineDriver
    from node.services.mailbox import MailboxService
    from protocol.messaging.mailbox_store import MemoryMailboxStore

    from .mailbox_support import junk_envelope

    recipient = device("recipient").sign_public
    their_key = TokenSigner(b"r" * 32)
    ctx = SimpleNamespace(node_seed=b"\x05" * 32, peer_id="12D3KooWOwnNode", params=FAST)
    service = MailboxService(
        ctx,  # type: ignore[arg-type]
        receive=lambda e: None,
        store=MemoryMailboxStore(),
        tokens=s.service,
    )
    box = Mailbox(FAST, service.identity, ctx.peer_id, store=service.store)
    service.box = box
    service.box_driver = MachineDriver("mailbox", box, lambda outs: None)
    now = Now(0.0, int(time.time() * 1000))
    grant = box.issue_grant(s.them.account, recipient, now=now, token_key=their_key.public)
    record: Any = SimpleNamespace(mailboxes=[(grant.raw, ())])
    expires = tk.token_expiry(now.wall_ms)

    def hold(signer: TokenSigner, first: int, n: int) -> None:
        nonces = [bytes([first + i]) * 16 for i in range(n)]
        tokens = signer.issue(FAST, grant.mailbox_key, recipient, nonces, expires)
        batch = TokenBatch(recipient, grant.mailbox_key, tokens)
        s.service.store.db.write(s.service.hold_statements(s.them.account, batch))

    def deposit(tag: str) -> bool:
        env = junk_envelope(FAST, recipient, tag)
        return bool(trio.run(service.deposit, record, recipient, env))

    # a forged token is refused (token_invalid) and dropped; none left: a stranger's deposit
    hold(TokenSigner(b"f" * 32), 1, 1)
    assert deposit("first")
    assert s.service.store.held_count(recipient) == 0
    assert box.held_by_strangers(recipient)[1] == 1
    # a good token pays: a contact's deposit, and the token is gone
    hold(their_key, 10, 2)
    assert deposit("second")
    assert box.held_by_strangers(recipient)[1] == 1 and box.held(recipient)[1] == 2
    assert s.service.store.held_count(recipient) == 1
    # no room: the deposit fails (the outbox keeps the envelope), the token is kept
    box.issue_grant(s.them.account, recipient, now=now, quota_count=2, token_key=their_key.public)
    assert not deposit("third")
    assert s.service.store.held_count(recipient) == 1


def test_a_sync_change_refills_only_the_contacts_it_added(
    s: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    # contacts that arrive by sync from another device: no on_added hook here
    s.contacts.on_added.clear()
    others = [History(name=f"o{i}") for i in range(3)]
    for h in others:
        s.service.ctx.ledger.ingest(h.genesis.raw)
    s.contacts.add(others[0].account, "o0")
    s.contacts.add(others[1].account, "o1")
    s.service.contacts_changed()
    assert sorted(a for a, _ in s.sent) == sorted([others[0].account, others[1].account])
    looked_up: list[bytes] = []
    supply = s.service.store.supply
    monkeypatch.setattr(
        s.service.store,
        "supply",
        lambda account, key: looked_up.append(account) or supply(account, key),
    )
    s.contacts.add(others[2].account, "o2")
    s.service.contacts_changed()
    assert looked_up == [others[2].account]  # the two served already are not read again
    assert s.sent[-1][0] == others[2].account
    s.service.contacts_changed()  # nothing new: nothing read, nothing sent
    assert looked_up == [others[2].account] and len(s.sent) == 3
