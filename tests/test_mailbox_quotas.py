"""Mailbox quotas that a new peer id does not renew (PROTOCOL.md §15.16-§15.18):
one-time tokens and their spent set, the strangers' pool per network group,
the caps per device, account and mailbox, and the store behind the machine.
Each bound has a test here that fails when the bound is removed."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.core.errors import BadSignatureError, InvalidKeyError, SchemaError
from protocol.core.invite import Invite
from protocol.core.machine import Misbehaved, Now, Send
from protocol.messaging import tokens as tk
from protocol.messaging.content import decode_content, encode_content
from protocol.messaging.mailbox import (
    Deposited,
    Expired,
    GrantRefusedError,
    Items,
    Mailbox,
    MailboxFullError,
    MailboxIdentity,
    MailboxLimits,
    NoGrantError,
    QuotaExceededError,
    Refused,
    StrangerPoolFullError,
    challenge_request,
    decode_answer,
    deposit_request,
    fetch_request,
    grant_request,
    item_id_of,
)
from protocol.messaging.mailbox_store import MemoryMailboxStore, StoreChange
from protocol.messaging.mailbox_wire import (
    DepositRequest,
    FetchRequest,
    GrantRequest,
    decode_request,
)
from protocol.messaging.tokens import (
    Token,
    TokenBatch,
    TokenExpiredError,
    TokenInvalidError,
    TokenSigner,
    TokenSpentError,
)

from .conftest import FAST, T0, device
from .mailbox_support import junk_envelope

DAY = 24 * 3600 * 1000
BOB = device("quota-bob")
CAROL = device("quota-carol")
ACCOUNT = b"\xbb" * 32


def at(ms: int) -> Now:
    return Now(ms / 1000, T0 + ms)


NOW = at(0)


def nonce(i: int) -> bytes:
    return hashlib.blake2b(b"n%d" % i, digest_size=16).digest()


class Box:
    """A mailbox holding a grant for BOB (and CAROL), with BOB's token key."""

    def __init__(self, store: MemoryMailboxStore | None = None, **limits: Any) -> None:
        self.store = store if store is not None else MemoryMailboxStore()
        self.limits = MailboxLimits(**limits)
        self.box = Mailbox(
            FAST, MailboxIdentity(b"q" * 32), "12D3KooWQuota", self.limits, store=self.store
        )
        self.signer = TokenSigner(b"s" * 32)
        if store is None:
            for d in (BOB, CAROL):
                self.box.issue_grant(ACCOUNT, d.sign_public, now=NOW, token_key=self.signer.public)
        self.n = 0

    def token(self, i: int, expires: int = T0 + DAY, dev: Any = BOB, mailbox: bytes = b"") -> Token:
        (t,) = self.signer.issue(
            FAST, mailbox or self.box.identity.public, dev.sign_public, [nonce(i)], expires
        )
        return t

    def env(self, pad: int = 16, dev: Any = BOB) -> bytes:
        self.n += 1
        return junk_envelope(FAST, dev.sign_public, f"e{self.n}", pad)

    def stranger(self, group: str, now: Now = NOW, pad: int = 16, dev: Any = BOB) -> bytes:
        return self.box.deposit(dev.sign_public, self.env(pad, dev), group=group, now=now)

    def contact(self, i: int, now: Now = NOW, pad: int = 16, dev: Any = BOB) -> bytes:
        return self.box.deposit(
            dev.sign_public, self.env(pad, dev), group="x", now=now, token=self.token(i, dev=dev)
        )


# -- tokens -------------------------------------------------------------------


def test_a_token_pays_for_one_deposit_and_is_kept_spent_until_it_expires() -> None:
    b = Box()
    t = b.token(1)
    env = b.env()
    item = b.box.deposit(BOB.sign_public, env, group="g", now=NOW, token=t)
    assert b.box.held_by_strangers(BOB.sign_public) == (0, 0)  # a contact's deposit
    # the same envelope again costs nothing and spends nothing more
    assert b.box.deposit(BOB.sign_public, env, group="g", now=NOW, token=t) == item
    with pytest.raises(TokenSpentError):
        b.box.deposit(BOB.sign_public, b.env(), group="g", now=NOW, token=t)
    # spent survives the deletion of the item, and a restart of the mailbox
    again = Box(b.store)
    assert again.box.spent_count == 1
    with pytest.raises(TokenSpentError):
        again.box.deposit(BOB.sign_public, b.env(), group="g", now=NOW, token=t)
    # at the token's expiry the spent entry goes (memory and disk): the token
    # is refused as expired from then on anyway
    assert again.box.next_deadline() is not None
    again.box.tick(at(DAY))
    assert again.box.spent_count == 0 and b.store.spent == {}
    with pytest.raises(TokenExpiredError):
        again.box.deposit(BOB.sign_public, b.env(), group="g", now=at(DAY), token=t)


def test_bad_tokens_are_refused_with_their_code() -> None:
    b = Box()
    other = TokenSigner(b"o" * 32)
    (forged,) = other.issue(FAST, b.box.identity.public, BOB.sign_public, [nonce(9)], T0 + DAY)
    cases: list[tuple[Token, Any, type[Exception]]] = [
        (forged, BOB, TokenInvalidError),  # not the grant's token key
        (b.token(2, mailbox=b"m" * 32), BOB, TokenInvalidError),  # for another mailbox
        (b.token(3, dev=CAROL), BOB, TokenInvalidError),  # for another device
        (b.token(4, expires=T0), BOB, TokenExpiredError),
        (b.token(5, expires=T0 + tk.MAX_TOKEN_LIFETIME_MS + 1), BOB, TokenInvalidError),
    ]
    for token, dev, err in cases:
        with pytest.raises(err):
            b.box.deposit(dev.sign_public, b.env(dev=dev), group="g", now=NOW, token=token)
    # a grant without a token key takes no tokens
    b.box.issue_grant(ACCOUNT, BOB.sign_public, now=NOW)
    with pytest.raises(TokenInvalidError):
        b.box.deposit(BOB.sign_public, b.env(), group="g", now=NOW, token=b.token(6))
    assert b.box.total == (0, 0) and b.box.spent_count == 0


def test_the_spent_set_is_capped_per_device_and_in_all() -> None:
    b = Box(spent_per_device=2, max_spent=3)
    b.contact(1)
    b.contact(2)
    with pytest.raises(QuotaExceededError):
        b.contact(3)  # BOB spent 2
    b.contact(4, dev=CAROL)
    with pytest.raises(QuotaExceededError):
        b.contact(5, dev=CAROL)  # 3 in all
    # without the caps, the spent set grows with every deposit
    free = Box()
    for i in range(5):
        free.contact(i)
    assert free.box.spent_count == 5


def test_a_refused_token_deposit_does_not_spend_the_token() -> None:
    b = Box()
    b.box.issue_grant(ACCOUNT, BOB.sign_public, now=NOW, quota_count=1, token_key=b.signer.public)
    b.contact(1)
    t = b.token(2)
    with pytest.raises(QuotaExceededError):
        b.box.deposit(BOB.sign_public, b.env(), group="g", now=NOW, token=t)
    assert b.box.spent_count == 1  # token 2 can pay once room is made


def test_token_batches_travel_as_content_kind_48_and_in_invites() -> None:
    b = Box()
    two = tuple(sorted((b.token(1), b.token(2)), key=lambda t: t.nonce))
    batch = TokenBatch(BOB.sign_public, b.box.identity.public, two)
    kind, body = encode_content(batch)
    assert kind == 48 and decode_content(kind, body) == batch
    with pytest.raises(SchemaError):  # not ascending: one encoding per batch
        decode_content(48, encode_content(batch)[1].replace(two[0].nonce, b"\xff" * 16))
    inv = Invite(FAST.network_id, ACCOUNT, "bob", (), tk.for_invite([batch]))
    parsed = Invite.parse(inv.to_text(), FAST)
    assert tk.from_invite(parsed) == (batch,)
    plain = Invite(FAST.network_id, ACCOUNT, "bob", ())
    assert plain.to_text().startswith("smu1inv") and Invite.parse(plain.to_text(), FAST) == plain
    five = tuple(sorted((b.token(i) for i in range(5)), key=lambda t: t.nonce))
    too_many = tk.for_invite([replace(batch, tokens=five)])
    with pytest.raises(SchemaError):
        Invite.parse(Invite(FAST.network_id, ACCOUNT, "bob", (), too_many).to_text(), FAST)


def test_the_issuers_quota_per_contact() -> None:
    s = tk.Supply()
    assert tk.needs_refill(s, T0)
    sent = 0
    for hour in range(48):
        now = T0 + hour * 3600 * 1000
        if hour == 24:  # a new day: the quota is renewed
            assert sent == tk.TOKENS_PER_DAY
        while tk.needs_refill(s, now):
            s = tk.after_refill(s, now, tk.BATCH, tk.token_expiry(now))
            sent += tk.BATCH
        for _ in range(tk.BATCH):  # the contact writes a lot: every message spends one
            s = s.spent_one()
    assert sent == 2 * tk.TOKENS_PER_DAY
    # a contact that holds enough fresh tokens gets none
    full = tk.after_refill(tk.Supply(), T0, tk.BATCH, tk.token_expiry(T0))
    assert not tk.needs_refill(full, T0 + 1000)
    # ... until its newest tokens are past half their life
    assert tk.needs_refill(full, T0 + tk.TOKEN_LIFETIME_MS // 2 + 3600 * 1000)


# -- the strangers' pool ------------------------------------------------------


def test_strangers_are_capped_per_group_in_a_devices_pool() -> None:
    b = Box(group_device_count=3)
    for _ in range(3):
        b.stranger("ip4:198.51.0.0/16")
    with pytest.raises(StrangerPoolFullError):
        b.stranger("ip4:198.51.0.0/16")
    b.stranger("ip4:203.0.0.0/16")  # another network has its own share
    b.contact(1)  # and contacts are not in the pool at all
    assert b.box.held_by_strangers(BOB.sign_public)[1] == 4


def test_a_full_pool_makes_room_for_a_smaller_group() -> None:
    b = Box(stranger_count=4, group_device_count=4)
    first = [b.stranger("big") for _ in range(3)]
    b.stranger("small")
    assert b.box.held_by_strangers(BOB.sign_public)[1] == 4
    # full: "small" (1 item) pushes out the oldest item of "big" (3 items)
    b.stranger("small")
    assert b.box.held_by_strangers(BOB.sign_public)[1] == 4
    assert (BOB.sign_public, first[0]) not in b.store.items
    # the biggest group cannot push anyone out
    with pytest.raises(StrangerPoolFullError):
        b.stranger("big")
    # nor can a group as big as the biggest ("small" and "big" hold 2 each)
    with pytest.raises(StrangerPoolFullError):
        b.stranger("small")
    b.stranger("third")  # but a third network can
    # without fairness, a full pool refuses every newcomer
    unfair = Box(stranger_count=4, group_device_count=4)
    for _ in range(4):
        unfair.stranger("big")
    assert unfair.box.held_by_strangers(BOB.sign_public)[1] == 4


def test_the_pool_is_capped_in_bytes_too() -> None:
    b = Box(stranger_bytes=3000)
    b.stranger("a", pad=1000)
    b.stranger("b", pad=1000)
    with pytest.raises(StrangerPoolFullError):
        b.stranger("b", pad=1000)  # "b" holds as many as the biggest
    b.stranger("c", pad=1000)  # pushes out "a"'s item (the oldest of the biggest)
    assert b.box.held_by_strangers(BOB.sign_public)[0] < 3000


def test_a_group_is_capped_over_the_whole_mailbox() -> None:
    b = Box(group_count=3)
    b.stranger("g", dev=BOB)
    b.stranger("g", dev=BOB)
    b.stranger("g", dev=CAROL)
    with pytest.raises(StrangerPoolFullError):
        b.stranger("g", dev=CAROL)  # one network cannot spray every device
    b.stranger("h", dev=CAROL)
    bb = Box(group_bytes=2000)
    bb.stranger("g", pad=1000)
    with pytest.raises(StrangerPoolFullError):
        bb.stranger("g", pad=1000, dev=CAROL)


def test_all_strangers_together_are_capped() -> None:
    b = Box(strangers_count=3)
    b.stranger("a")
    b.stranger("b", dev=CAROL)
    b.stranger("c")
    with pytest.raises(StrangerPoolFullError):
        b.stranger("d", dev=CAROL)
    b.contact(1, dev=CAROL)  # contacts are outside the strangers' pool


def test_a_groups_deposits_are_rate_limited_and_the_rate_refills() -> None:
    b = Box(group_rate=0.5, group_burst=3, group_device_count=100)
    for _ in range(3):
        b.stranger("g")
    with pytest.raises(StrangerPoolFullError):
        b.stranger("g")  # the burst is spent
    b.stranger("h")  # another network's bucket is full
    b.stranger("g", now=at(2000))  # 2 s at 0.5/s: one more
    with pytest.raises(StrangerPoolFullError):
        b.stranger("g", now=at(2000))
    # junk counts against the rate too: a group cannot make us parse for free
    with pytest.raises(StrangerPoolFullError):
        b.box.deposit(BOB.sign_public, b"junk", group="g", now=at(2000))


def test_remembered_groups_are_bounded() -> None:
    b = Box(max_groups=4, group_burst=2, group_rate=0.001, stranger_count=100)
    for g in "abcd":
        b.stranger(g)
    with pytest.raises(StrangerPoolFullError):
        b.stranger("e")  # every bucket is still in use
    b.box.tick(at(3600 * 1000))
    b.stranger("e", now=at(3600 * 1000))  # the others have refilled and are forgotten


def test_stranger_items_live_a_day_and_contact_items_two_weeks() -> None:
    b = Box()
    b.stranger("g")
    b.contact(1)
    assert b.box.tick(at(DAY - 1)) == []
    assert b.box.tick(at(DAY)) == [Expired(items=1, grants=0)]
    assert b.box.held(BOB.sign_public)[1] == 1
    assert b.box.tick(at(14 * DAY)) == [Expired(items=1, grants=0)]
    assert b.store.items == {}


# -- caps per device, account and mailbox ----------------------------------------


def test_the_account_and_the_mailbox_are_capped() -> None:
    b = Box(account_count=3, quota_count=100)
    b.contact(1)
    b.contact(2)
    b.contact(3, dev=CAROL)
    with pytest.raises(QuotaExceededError):
        b.contact(4, dev=CAROL)  # BOB and CAROL are devices of one account
    g = Box(max_items=2)
    g.contact(1)
    g.stranger("s", dev=CAROL)
    with pytest.raises(MailboxFullError):
        g.contact(2, dev=CAROL)
    m = Box(max_bytes=2000)
    m.contact(1, pad=1000)
    with pytest.raises(MailboxFullError):
        m.contact(2, pad=1000, dev=CAROL)


def test_grants_are_capped_per_account_and_in_all() -> None:
    def ask(box: Mailbox, dev: Any, account: bytes) -> Any:
        req = grant_request(FAST, dev, account, box.identity.public, T0)
        return box.request_grant(decode_request(req), NOW)  # type: ignore[arg-type]

    box = Mailbox(
        FAST,
        MailboxIdentity(b"g" * 32),
        "p",
        MailboxLimits(account_grants=2, max_grants=3),
        grant_policy=lambda a, d: True,
    )
    ask(box, device("g1"), b"\x01" * 32)
    ask(box, device("g2"), b"\x01" * 32)
    with pytest.raises(GrantRefusedError):
        ask(box, device("g3"), b"\x01" * 32)
    ask(box, device("g4"), b"\x02" * 32)
    with pytest.raises(GrantRefusedError):
        ask(box, device("g5"), b"\x03" * 32)
    ask(box, device("g1"), b"\x01" * 32)  # a held device may always renew


def test_grant_requests_carry_the_token_key() -> None:
    signer = TokenSigner(b"k" * 32)
    box = Mailbox(FAST, MailboxIdentity(b"r" * 32), "p", grant_policy=lambda a, d: True)
    key = box.identity.public
    old = decode_request(grant_request(FAST, BOB, ACCOUNT, key, T0))
    assert isinstance(old, GrantRequest) and old.token_key is None
    assert box.request_grant(old, NOW).token_key == b""
    keyed = grant_request(FAST, BOB, ACCOUNT, key, T0, signer.public)
    g = box.request_grant(decode_request(keyed), NOW)  # type: ignore[arg-type]
    assert g.token_key == signer.public and g.version == 2
    # the device's signature covers the token key
    swapped = keyed.replace(signer.public, TokenSigner(b"z" * 32).public)
    with pytest.raises(BadSignatureError):
        box.request_grant(decode_request(swapped), NOW)  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyError):  # a key a grant could not name
        bad = decode_request(grant_request(FAST, CAROL, ACCOUNT, key, T0, b"\x00" * 32))
        box.request_grant(bad, NOW)  # type: ignore[arg-type]


# -- the wire -----------------------------------------------------------------


def test_handle_counts_strangers_by_group_never_by_peer() -> None:
    b = Box(group_device_count=2)
    env = [b.env() for _ in range(4)]

    def dep(frame: bytes, peer: str, group: str) -> Any:
        outs = b.box.handle(frame, peer=peer, group=group, now=NOW, random16=nonce(0))
        assert isinstance(outs[0], Send)
        return decode_answer(outs[0].frame), outs[1:]

    for i in range(2):  # two fresh peer ids, one network
        assert isinstance(dep(deposit_request(BOB.sign_public, env[i]), f"p{i}", "g")[0], Deposited)
    ans, rest = dep(deposit_request(BOB.sign_public, env[2]), "p-fresh", "g")
    assert ans == Refused("stranger_pool_full", ans.message)
    assert isinstance(rest[0], Misbehaved) and rest[0].peer == "p-fresh"
    token_frame = deposit_request(BOB.sign_public, env[3], b.token(7))
    assert isinstance(decode_request(token_frame), DepositRequest)
    assert isinstance(dep(token_frame, "p-fresh", "g")[0], Deposited)  # a contact
    assert dep(token_frame.replace(env[3], b.env()), "p", "g")[0].code == "token_spent"


# -- the store ------------------------------------------------------------------


def test_a_restart_keeps_grants_items_and_order() -> None:
    b = Box()
    ids = [b.stranger("g"), b.contact(1), b.stranger("h")]
    restarted = Box(b.store)
    assert restarted.box.grant_of(BOB.sign_public) == b.box.grant_of(BOB.sign_public)
    assert restarted.box.held(BOB.sign_public) == b.box.held(BOB.sign_public)
    assert restarted.box.held_by_strangers(BOB.sign_public) == (
        b.box.held_by_strangers(BOB.sign_public)
    )
    restarted.box.challenge(BOB.sign_public, nonce(1), NOW)
    key = restarted.box.identity.public
    req = decode_request(fetch_request(FAST, BOB, key, nonce(1), 10))
    assert isinstance(req, FetchRequest)
    items = restarted.box.fetch(BOB.sign_public, nonce(1), 10, req.signature, NOW)
    assert [i.item_id for i in items] == ids
    # a new deposit continues the order after the loaded ones
    restarted.n = 100  # new envelopes (the same one again would be the same item)
    later = restarted.contact(2)
    assert restarted.store.items[(BOB.sign_public, later)][0].seq > max(
        m.seq for m, _ in b.store.items.values() if m.item_id != later
    )


def test_nothing_is_counted_or_answered_if_the_store_fails() -> None:
    class Failing(MemoryMailboxStore):
        def apply(self, change: StoreChange) -> None:
            if change.put_items:
                raise OSError("disk full")
            super().apply(change)

    b = Box()
    failing = Box(Failing(grants=dict(b.store.grants)))
    with pytest.raises(OSError):
        failing.contact(1)
    assert failing.box.total == (0, 0) and failing.box.spent_count == 0
    # the driver lets it through (a failed write stops the node): no answer
    with pytest.raises(OSError):
        failing.box.handle(
            deposit_request(BOB.sign_public, b.env()), peer="p", group="g", now=NOW,
            random16=nonce(0),
        )  # fmt: skip


def test_items_of_devices_without_a_grant_are_dropped_on_load() -> None:
    b = Box()
    b.stranger("g")
    del b.store.grants[BOB.sign_public]
    again = Box(b.store)
    assert again.box.total == (0, 0) and b.store.items == {}


# -- properties -------------------------------------------------------------------

_dev, _size = st.integers(0, 1), st.integers(16, 900)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("stranger"), st.sampled_from("abcd"), _dev, _size),
        st.tuples(st.just("contact"), st.integers(0, 40), _dev, _size),
        st.tuples(st.just("delete"), st.integers(0, 30), _dev, st.just(0)),
        st.tuples(st.just("tick"), st.integers(0, 3 * 3600), st.just(0), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_every_cap_holds_and_the_counts_match_the_store(steps: list[tuple[Any, ...]]) -> None:
    lim = dict(
        quota_count=20, quota_bytes=9000, account_count=30, account_bytes=14000, max_items=35,
        max_bytes=20000, stranger_count=6, stranger_bytes=3000, group_device_count=3,
        group_count=5, group_bytes=2500, strangers_count=9, strangers_bytes=5000,
        group_rate=1.0, group_burst=4, spent_per_device=25, max_spent=40,
    )  # fmt: skip
    b = Box(**lim)
    b.box.issue_grant(ACCOUNT, BOB.sign_public, now=NOW, quota_count=20, quota_bytes=9000,
                      token_key=b.signer.public)  # fmt: skip
    b.box.issue_grant(ACCOUNT, CAROL.sign_public, now=NOW, quota_count=20, quota_bytes=9000,
                      token_key=b.signer.public)  # fmt: skip
    t = 0
    for op, x, d, size in steps:
        dev = (BOB, CAROL)[d]
        now = at(t)
        try:
            if op == "stranger":
                b.stranger(str(x), now=now, pad=size, dev=dev)
            elif op == "contact":
                b.box.deposit(dev.sign_public, b.env(size, dev), group="", now=now,
                              token=b.token(x, expires=T0 + t + DAY, dev=dev))  # fmt: skip
            elif op == "delete":
                held = [k for k in b.store.items if k[0] == dev.sign_public]
                if held:
                    box = b.box._boxes[dev.sign_public]
                    b.box._drop(box, [box.get(held[x % len(held)][1])])  # type: ignore[list-item]
            else:
                t += x * 1000
                b.box.tick(at(t))
        except (StrangerPoolFullError, QuotaExceededError, MailboxFullError, TokenSpentError,
                TokenExpiredError, NoGrantError):  # fmt: skip
            pass
        metas = [m for m, _ in b.store.items.values()]
        assert b.box.total == (sum(m.size for m in metas), len(metas))
        assert len(metas) <= 35 and sum(m.size for m in metas) <= 20000
        strangers = [m for m in metas if m.stranger]
        assert len(strangers) <= 9 and sum(m.size for m in strangers) <= 5000
        for dv in (BOB, CAROL):
            mine = [m for m in metas if m.device == dv.sign_public]
            assert len(mine) <= 20 and sum(m.size for m in mine) <= 9000
            assert b.box.held(dv.sign_public) == (sum(m.size for m in mine), len(mine))
            pool = [m for m in mine if m.stranger]
            assert len(pool) <= 6 and sum(m.size for m in pool) <= 3000
            for g in "abcd":
                assert sum(1 for m in pool if m.group == g) <= 3
        for g in "abcd":
            theirs = [m for m in strangers if m.group == g]
            assert len(theirs) <= 5 and sum(m.size for m in theirs) <= 2500
        assert b.box.spent_count == len(b.store.spent) <= 40
        # the same state comes back from the store
        again = Box(b.store, **lim)
        assert again.box.total == b.box.total


def test_fetch_returns_what_was_deposited_in_order() -> None:
    b = Box()
    ids = [b.contact(1), b.stranger("g"), b.contact(2)]
    b.box.challenge(BOB.sign_public, nonce(5), NOW)
    frame = fetch_request(FAST, BOB, b.box.identity.public, nonce(5), 10)
    out = b.box.handle(frame, peer="bob", group="g", now=NOW, random16=nonce(6))
    ans = decode_answer(out[0].frame)  # type: ignore[union-attr]
    assert isinstance(ans, Items) and [i.item_id for i in ans.items] == ids
    assert ans.items[0].item_id == item_id_of(BOB.sign_public, ans.items[0].envelope)
    assert isinstance(
        decode_answer(
            b.box.handle(challenge_request(BOB.sign_public), peer="bob", group="g", now=NOW,
                         random16=nonce(7))[0].frame  # type: ignore[union-attr]
        ),
        type(b.box.challenge(BOB.sign_public, nonce(8), NOW)),
    )  # fmt: skip


def test_decoders_bound_batches_and_invites() -> None:
    b = Box()
    many = tuple(sorted((b.token(i) for i in range(tk.MAX_BATCH + 1)), key=lambda t: t.nonce))
    body = encode_content(TokenBatch(BOB.sign_public, b.box.identity.public, many[:-1]))[1]
    assert len(decode_content(48, body).tokens) == tk.MAX_BATCH  # type: ignore[union-attr]
    over = TokenBatch(BOB.sign_public, b.box.identity.public, many).to_wire()
    from protocol.core.canonical import encode_flat

    with pytest.raises(SchemaError):
        decode_content(48, encode_flat(over))
    one = TokenBatch(BOB.sign_public, b.box.identity.public, many[:1])
    three = tk.for_invite([one, one, one])  # more (device, mailbox) pairs than an invite holds
    with pytest.raises(SchemaError):
        Invite.parse(Invite(FAST.network_id, ACCOUNT, "bob", (), three).to_text(), FAST)
