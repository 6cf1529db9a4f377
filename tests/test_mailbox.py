"""Mailboxes (PROTOCOL.md §15.10-§15.13): grants, quotas, challenges, and a
hostile mailbox against the envelope's replay protection."""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.core.canonical import encode_flat
from protocol.core.errors import (
    BadSignatureError,
    InvalidInput,
    SchemaError,
    WrongNetworkError,
)
from protocol.core.machine import Misbehaved, Now, Send
from protocol.core.params import NetworkParams
from protocol.messaging.content import ReplayError, ReplayGuard, Text
from protocol.messaging.envelope import DecryptError, ledger_lookup, open_envelope
from protocol.messaging.mailbox import (
    CHALLENGE_TTL_MS,
    ChallengeError,
    ChallengeIssued,
    Deleted,
    Deposited,
    Expired,
    Granted,
    Items,
    Mailbox,
    MailboxError,
    MailboxIdentity,
    MailboxLimits,
    NoGrantError,
    QuotaExceededError,
    Refused,
    StrangerPoolFullError,
    challenge_request,
    decode_answer,
    decode_grant,
    delete_request,
    deposit_request,
    fetch_request,
    grant_request,
    item_id_of,
)
from protocol.messaging.tokens import Token, TokenSigner

from .conftest import FAST, T0
from .test_envelope import World, _settings

DAY = 24 * 3600 * 1000


def at(ms: int) -> Now:
    """``ms`` milliseconds after T0, on both clocks (monotonic 0 at T0)."""
    return Now(ms / 1000, T0 + ms)


NOW = at(0)


def _nonce(i: int) -> bytes:
    return hashlib.blake2b(b"nonce%d" % i, digest_size=16).digest()


def answer_of(outs: list[Any], peer: str) -> tuple[Any, InvalidInput | None]:
    """The decoded answer in ``handle``'s outputs and the refusal's error,
    checking their shape: the answer for ``peer``, then ``Misbehaved``
    exactly when the answer is a refusal."""
    send, *rest = outs
    assert isinstance(send, Send) and send.peer == peer
    ans = decode_answer(send.frame)
    if not isinstance(ans, Refused):
        assert rest == []
        return ans, None
    (bad,) = rest
    assert isinstance(bad, Misbehaved) and bad.peer == peer and bad.error.code == ans.code
    return ans, bad.error


def answer(box: Mailbox, frame: bytes, peer: str, now: Now, random16: bytes) -> Any:
    return answer_of(box.handle(frame, peer=peer, group="g", now=now, random16=random16), peer)[0]


class Setup:
    def __init__(self, limits: MailboxLimits | None = None) -> None:
        self.w = World()
        self.box = Mailbox(FAST, MailboxIdentity(b"m" * 32), "12D3KooWMailbox", limits)
        self.bob = self.w.b.keys["d0"]
        #: bob's token key: he hands its tokens to his contacts (§15.16)
        self.signer = TokenSigner(b"t" * 32)
        self.grant = self.box.issue_grant(
            self.w.b.account,
            self.bob.sign_public,
            now=NOW,
            quota_count=5,
            token_key=self.signer.public,
        )
        self.n = 0
        self.now = NOW
        #: what the last call's refusal reported (None if it was answered)
        self.misbehaved: InvalidInput | None = None

    def call(self, frame: bytes, peer: str = "peerA", group: str = "g") -> Any:
        self.n += 1
        outs = self.box.handle(frame, peer=peer, group=group, now=self.now, random16=_nonce(self.n))
        ans, self.misbehaved = answer_of(outs, peer)
        return ans

    def token(self, i: int, expires: int = T0 + DAY) -> Token:
        """Bob's token number ``i`` for this mailbox."""
        (t,) = self.signer.issue(FAST, self.box.identity.public, self.bob.sign_public,
                                 [_nonce(1000 + i)], expires)  # fmt: skip
        return t

    def challenge(self, dev: Any = None) -> bytes:
        ans = self.call(challenge_request((dev or self.bob).sign_public))
        assert isinstance(ans, ChallengeIssued)
        return ans.nonce

    def fetch(self, limit: int = 100) -> Any:
        nonce = self.challenge()
        return self.call(fetch_request(FAST, self.bob, self.box.identity.public, nonce, limit))

    def delete(self, ids: list[bytes]) -> Any:
        nonce = self.challenge()
        return self.call(delete_request(FAST, self.bob, self.box.identity.public, nonce, ids))


@pytest.fixture
def s() -> Setup:
    return Setup()


def test_grant_is_signed_by_the_mailbox(s: Setup) -> None:
    g = decode_grant(s.grant.raw, FAST)
    assert g == s.grant and g.mailbox_key == s.box.identity.public
    assert g.valid_for(s.w.b.account, s.bob.sign_public, T0)
    assert not g.valid_for(s.w.b.account, s.bob.sign_public, g.expires)
    forged = bytearray(s.grant.raw)
    forged[-1] ^= 1
    with pytest.raises(BadSignatureError):
        decode_grant(bytes(forged), FAST)
    other = NetworkParams(network_id="smu-other", genesis_pow_bits=0, event_pow_bits=0)
    with pytest.raises(WrongNetworkError):
        decode_grant(s.grant.raw, other)


def test_deposit_fetch_delete_round_trip(s: Setup) -> None:
    env = s.w.send(Text("while you were out"))
    ans = s.call(deposit_request(s.bob.sign_public, env.raw), peer="alice-node")
    assert ans == Deposited(item_id_of(s.bob.sign_public, env.raw))
    # the same envelope again is idempotent: no second copy, no quota used
    assert s.call(deposit_request(s.bob.sign_public, env.raw)) == ans
    assert s.box.held(s.bob.sign_public) == (len(env.raw), 1)
    items = s.fetch()
    assert isinstance(items, Items) and [i.envelope for i in items.items] == [env.raw]
    opened = s.w.open_bob(items.items[0].envelope)
    assert opened.content == Text("while you were out")
    assert s.delete([ans.item_id]) == Deleted(1)
    assert s.fetch() == Items(())


def test_deposit_refusals(s: Setup) -> None:
    env = s.w.send()
    carol = s.w.b.keys["d1"]  # no grant here
    ans = s.call(deposit_request(carol.sign_public, env.raw))
    assert isinstance(ans, Refused) and ans.code == "no_grant"
    assert isinstance(s.misbehaved, NoGrantError)
    # an envelope with no wrap for the device
    stranger = s.w.send(only_devices=[s.w.b.keys["d1"].sign_public])
    with pytest.raises(MailboxError):
        s.box.deposit(s.bob.sign_public, stranger.raw, group="p", now=NOW)
    with pytest.raises(InvalidInput):
        s.box.deposit(s.bob.sign_public, b"junk", group="p", now=NOW)
    # after the grant expires, no deposits
    with pytest.raises(NoGrantError):
        s.box.deposit(s.bob.sign_public, env.raw, group="p", now=at(s.grant.expires - T0))


def test_quotas_per_device_never_per_peer() -> None:
    s = Setup(MailboxLimits(group_device_count=3))
    envs = [s.w.send() for _ in range(7)]
    dev = s.bob.sign_public
    for e in envs[:3]:
        s.box.deposit(dev, e.raw, group="noisy", now=NOW)
    with pytest.raises(StrangerPoolFullError):
        s.box.deposit(dev, envs[3].raw, group="noisy", now=NOW)  # that network's share
    # a new peer id renews nothing: only the group is passed in, and counted
    s.box.deposit(dev, envs[3].raw, group="other", now=NOW)
    s.box.deposit(dev, envs[4].raw, group="third", now=NOW)
    with pytest.raises(QuotaExceededError):
        s.box.deposit(dev, envs[5].raw, group="fourth", now=NOW)  # the grant's 5 items
    assert s.box.held(dev)[1] == 5
    # a deletion frees both quotas
    first = item_id_of(dev, envs[0].raw)
    assert s.delete([first]) == Deleted(1)
    s.box.deposit(dev, envs[5].raw, group="noisy", now=NOW)
    # byte quota
    small = Setup()
    small.box.issue_grant(
        small.w.b.account, small.bob.sign_public, now=NOW, quota_bytes=len(envs[0].raw)
    )
    small.box.deposit(small.bob.sign_public, envs[0].raw, group="p", now=NOW)
    with pytest.raises(QuotaExceededError):
        small.box.deposit(small.bob.sign_public, envs[1].raw, group="p", now=NOW)


def test_items_and_grants_expire(s: Setup) -> None:
    env = s.w.send()
    s.box.deposit(s.bob.sign_public, env.raw, group="p", now=NOW)
    # the item goes first (a stranger's lives a day); the grant only holds
    # the box once it is empty
    assert s.box.next_deadline() == DAY / 1000
    assert s.box.tick(at(DAY - 1)) == []
    assert s.box.tick(at(DAY)) == [Expired(items=1, grants=0)]
    assert s.box.held(s.bob.sign_public) == (0, 0)
    assert s.box.grant_of(s.bob.sign_public) is not None
    assert s.box.next_deadline() == (s.grant.expires - T0) / 1000
    assert s.box.tick(at(s.grant.expires - T0)) == [Expired(items=0, grants=1)]
    assert s.box.grant_of(s.bob.sign_public) is None and s.box.next_deadline() is None


def test_next_deadline_is_monotonic_time_through_the_last_now(s: Setup) -> None:
    # an open challenge expires first; its wall-clock expiry is turned into
    # monotonic time through the latest Now the machine was given
    s.now = Now(1000.0, T0)
    s.challenge()
    assert s.box.next_deadline() == 1000.0 + CHALLENGE_TTL_MS / 1000
    assert s.box.tick(Now(1010.0, T0 + 5_000)) == []  # the wall clock lags by 5 s
    assert s.box.next_deadline() == 1010.0 + (CHALLENGE_TTL_MS - 5_000) / 1000
    s.box.tick(Now(1100.0, T0 + CHALLENGE_TTL_MS))  # challenges go silently
    assert s.box.next_deadline() == 1100.0 + (s.grant.expires - T0 - CHALLENGE_TTL_MS) / 1000


def test_a_box_with_items_under_an_expired_grant_needs_no_tick_until_they_go(s: Setup) -> None:
    env = s.w.send()
    s.box.issue_grant(
        s.w.b.account, s.bob.sign_public, now=NOW, lifetime_ms=DAY, token_key=s.signer.public
    )
    s.box.deposit(s.bob.sign_public, env.raw, group="p", now=NOW, token=s.token(0))
    s.box.tick(at(2 * DAY))  # the grant expired; the item stays
    assert s.box.grant_of(s.bob.sign_public) is not None
    assert s.box.next_deadline() == 14 * DAY / 1000  # not the past grant expiry
    # an expired grant still allows fetch and delete; then the box can go
    s.now = at(2 * DAY)
    (item,) = s.fetch().items
    assert s.delete([item.item_id]) == Deleted(1)
    # empty now, under a grant that expired a day ago: due at once
    assert s.box.next_deadline() == DAY / 1000
    assert s.box.tick(s.now) == [Expired(items=0, grants=1)]
    assert s.box.grant_of(s.bob.sign_public) is None


def test_challenges_are_single_use_bound_and_expiring(s: Setup) -> None:
    key = s.box.identity.public
    nonce = s.challenge()
    req = fetch_request(FAST, s.bob, key, nonce, 10)
    assert isinstance(s.call(req), Items)
    replayed = s.call(req)  # the same signed request again
    assert isinstance(replayed, Refused) and replayed.code == "challenge"
    assert isinstance(s.misbehaved, ChallengeError)
    # expired
    nonce = s.challenge()
    s.now = at(CHALLENGE_TTL_MS)
    assert s.call(fetch_request(FAST, s.bob, key, nonce, 10)).code == "challenge"
    # issued for another device
    other = s.w.b.keys["d1"]
    s.box.issue_grant(s.w.b.account, other.sign_public, now=s.now)
    nonce = s.challenge(other)
    assert s.call(fetch_request(FAST, s.bob, key, nonce, 10)).code == "challenge"
    # signed by a key that is not the device's
    nonce = s.challenge()
    forged = fetch_request(FAST, other, key, nonce, 10)
    forged = forged.replace(other.sign_public, s.bob.sign_public)
    assert s.call(forged).code == "bad_signature"
    # bound to this mailbox's identity: a signature for another mailbox fails
    nonce = s.challenge()
    assert s.call(fetch_request(FAST, s.bob, b"x" * 32, nonce, 10)).code == "bad_signature"
    # bound to the operation: a fetch signature does not delete
    nonce = s.challenge()
    fetch = fetch_request(FAST, s.bob, key, nonce, 0)
    sig = fetch[-64:]
    delete = encode_flat([1, 4, s.bob.sign_public, nonce, [], sig])
    assert s.call(delete).code == "bad_signature"
    # and every failed attempt burnt its nonce
    assert s.call(fetch_request(FAST, s.bob, key, nonce, 0)).code == "challenge"


def test_a_hostile_mailbox_cannot_duplicate_or_forge(s: Setup) -> None:
    envs = [s.w.send(Text(f"m{i}")) for i in range(4)]
    for e in envs:
        s.box.deposit(s.bob.sign_public, e.raw, group="alice-node", now=NOW)
    items = s.fetch().items
    # The mailbox serves everything twice, out of order, and drops m1.
    served = [items[3], items[0], items[2], items[0], items[3], items[2]]
    guard = ReplayGuard()
    shown: list[str] = []
    rejected = 0
    lookup = ledger_lookup(s.w.lb)
    for item in served:
        try:
            o = open_envelope(FAST, item.envelope, s.w.b.account, s.bob, lookup, guard)
        except ReplayError:
            rejected += 1
            continue
        assert o.sender_account == s.w.a.account
        shown.append(o.content.text)  # type: ignore[union-attr]
    assert shown == ["m3", "m0", "m2"] and rejected == 3
    # Later, m1 arrives after all: still inside the window, accepted once.
    o = open_envelope(FAST, items[1].envelope, s.w.b.account, s.bob, lookup, guard)
    assert o.content == Text("m1")
    # It cannot pass one sender's envelope off as another's or alter it.
    raw = bytearray(items[2].envelope)
    raw[-5] ^= 0x10
    with pytest.raises(DecryptError):
        open_envelope(FAST, bytes(raw), s.w.b.account, s.bob, lookup, ReplayGuard())


def test_handle_answers_every_bad_frame_with_an_error(s: Setup) -> None:
    for frame in (
        b"",
        b"\x93\x01\x10\x00",
        encode_flat([1, 99]),
        encode_flat([2, 1]),
        encode_flat([1, 1, b"x"]),
        encode_flat([1, 4, b"d" * 32, b"n" * 16, [b"x"], b"s" * 64]),
    ):
        ans = s.call(frame)
        assert isinstance(ans, Refused)
    with pytest.raises(SchemaError):
        decode_answer(encode_flat([1, 1, b"x" * 32, b"e"]))  # a request is no answer


@_settings(300)
@given(st.binary(max_size=512))
def test_fuzz_mailbox_decoders(data: bytes) -> None:
    box = Mailbox(FAST, MailboxIdentity(b"m" * 32), "p")
    ans = answer(box, data, "peer", NOW, b"n" * 16)
    assert isinstance(ans, Refused | Items | Deleted | Deposited | ChallengeIssued)
    for fn in (decode_answer, lambda d: decode_grant(d, FAST)):
        with contextlib.suppress(InvalidInput):
            fn(data)


def test_grant_requests_need_the_device_key_and_the_policy() -> None:
    w = World()
    allowed = {w.b.keys["d1"].sign_public}
    box = Mailbox(
        FAST, MailboxIdentity(b"q" * 32), "p", grant_policy=lambda acc, dev: dev in allowed
    )
    key = box.identity.public
    d1, d2 = w.b.keys["d1"], w.b.keys["d2"]
    ans = answer(box, grant_request(FAST, d1, w.b.account, key, T0), "x", NOW, _nonce(0))
    assert isinstance(ans, Granted)
    grant = decode_grant(ans.grant, FAST)
    assert grant.valid_for(w.b.account, d1.sign_public, T0) and grant.mailbox_peer == "p"
    # asked again soon: the same grant, not a new one
    again = answer(box, grant_request(FAST, d1, w.b.account, key, T0 + 5), "x", at(5), _nonce(1))
    assert again == ans
    refused = answer(box, grant_request(FAST, d2, w.b.account, key, T0), "x", NOW, _nonce(2))
    assert isinstance(refused, Refused) and refused.code == "grant_refused"
    # proof of possession: another key's signature, or a stale timestamp, fails
    forged = grant_request(FAST, d2, w.b.account, key, T0).replace(d2.sign_public, d1.sign_public)
    assert answer(box, forged, "x", NOW, _nonce(3)).code == "bad_signature"
    stale = grant_request(FAST, d1, w.b.account, key, T0 - 10 * 60 * 1000)
    assert answer(box, stale, "x", NOW, _nonce(4)).code == "bad_timestamp"
    # a mailbox without a policy grants nothing over the wire
    closed = Mailbox(FAST, MailboxIdentity(b"r" * 32), "p")
    req = grant_request(FAST, d1, w.b.account, closed.identity.public, T0)
    assert answer(closed, req, "x", NOW, _nonce(5)).code == "grant_refused"


def test_challenges_per_device_are_capped(s: Setup) -> None:
    nonces = [s.challenge() for _ in range(6)]
    key = s.box.identity.public
    # the two oldest were pushed out by newer ones
    for n in nonces[:2]:
        assert s.call(fetch_request(FAST, s.bob, key, n, 1)).code == "challenge"
    for n in nonces[2:]:
        assert isinstance(s.call(fetch_request(FAST, s.bob, key, n, 1)), Items)
    with pytest.raises(NoGrantError):  # no grant, no challenge
        s.box.challenge(s.w.b.keys["d2"].sign_public, _nonce(99), NOW)


def test_an_items_answer_is_bounded_in_bytes(s: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    import protocol.messaging.mailbox as mb

    envs = [s.w.send() for _ in range(3)]
    for e in envs:
        s.box.deposit(s.bob.sign_public, e.raw, group="p", now=NOW)
    monkeypatch.setattr(mb, "MAX_ANSWER_BYTES", len(envs[0].raw) + len(envs[1].raw))
    assert len(s.fetch().items) == 2
    monkeypatch.setattr(mb, "MAX_ANSWER_BYTES", 1)
    assert len(s.fetch().items) == 1  # always at least one


_S = Setup()
_ENV = _S.w.send().raw
_KEY = _S.box.identity.public
_FRAMES = [
    deposit_request(_S.bob.sign_public, _ENV),
    challenge_request(_S.bob.sign_public),
    fetch_request(FAST, _S.bob, _KEY, _nonce(1), 5),
    delete_request(FAST, _S.bob, _KEY, _nonce(1), [item_id_of(_S.bob.sign_public, _ENV)]),
    grant_request(FAST, _S.bob, _S.w.b.account, _KEY, T0),
]


@_settings(300)
@given(st.sampled_from(_FRAMES), st.data())
def test_fuzz_mutated_requests_get_an_answer(frame: bytes, data: st.DataObject) -> None:
    raw = bytearray(frame)
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        if data.draw(st.booleans()):
            raw[pos] ^= 1 << data.draw(st.integers(0, 7))
        else:
            del raw[pos : pos + data.draw(st.integers(1, 4))]
        if not raw:
            break
    box = Mailbox(FAST, MailboxIdentity(b"m" * 32), "p", grant_policy=lambda a, d: True)
    box.issue_grant(_S.w.b.account, _S.bob.sign_public, now=NOW)
    box.challenge(_S.bob.sign_public, _nonce(1), NOW)
    outs = box.handle(bytes(raw), peer="peer", group="g", now=NOW, random16=_nonce(2))
    # one answer to the asker, and a Misbehaved exactly when it is a refusal
    assert isinstance(outs[0], Send) and outs[0].peer == "peer"
    refused = isinstance(decode_answer(outs[0].frame), Refused)
    assert [type(o) for o in outs[1:]] == ([Misbehaved] if refused else [])
