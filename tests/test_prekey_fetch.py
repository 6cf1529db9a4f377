"""Serving one-time prekeys (PROTOCOL.md §19.16): each key once, paid with
a contact's token; strangers and bad tokens get the signed prekey only."""

from __future__ import annotations

import hashlib

import pytest

from protocol.core.errors import InvalidInput
from protocol.messaging import prekey_fetch as pf
from protocol.messaging.prekeys import PrekeyStore, verify_proof
from protocol.messaging.session_errors import PrekeyReusedError
from protocol.messaging.tokens import TokenSigner, token_expiry

from .conftest import FAST, T0, device

DEVICE = device("opk/device")
ACCOUNT = hashlib.blake2b(b"opk/account", digest_size=32).digest()
SIGNER = TokenSigner(hashlib.blake2b(b"opk/token", digest_size=32).digest())
NODE_KEY = device("opk/node").sign_public


def _secrets(label: str, n: int = pf.OFFER_BATCH) -> list[bytes]:
    return [hashlib.blake2b(f"{label}/{i}".encode(), digest_size=32).digest() for i in range(n)]


def _tokens(n: int, mailbox_key: bytes = NODE_KEY, label: str = "t") -> list[pf.Token]:
    nonces = [hashlib.blake2b(f"{label}/{i}".encode(), digest_size=16).digest() for i in range(n)]
    return list(SIGNER.issue(FAST, mailbox_key, DEVICE.sign_public, nonces, token_expiry(T0)))


def _supply() -> tuple[PrekeyStore, pf.PrekeyOffer]:
    return pf.replenish(
        FAST, DEVICE, ACCOUNT, PrekeyStore(), pf.PrekeyOffer(), _secrets("batch"), T0
    )


def _serve(offer: pf.PrekeyOffer, token: pf.Token | None, now: int = T0 + 1):
    request = pf.decode_request(pf.FetchRequest(ACCOUNT, DEVICE.sign_public, token).encode())
    return pf.serve(FAST, offer, request, mailbox_key=NODE_KEY, token_key=SIGNER.public, now_ms=now)


def test_each_key_is_served_once_and_opens_against_the_store() -> None:
    store, offer = _supply()
    seen = set()
    for token in _tokens(pf.OFFER_BATCH):
        answer, offer = _serve(offer, token)
        assert isinstance(answer, pf.OneTimeAnswer)
        raw = pf.decode_answer(answer.encode())
        assert isinstance(raw, pf.OneTimeAnswer)
        opk = verify_proof(FAST, raw.proof, ACCOUNT, DEVICE.sign_public, T0 + 1)
        assert opk.prekey_id not in seen
        seen.add(opk.prekey_id)
        assert opk.prekey_id in store.one_time
    assert len(seen) == pf.OFFER_BATCH
    answer, after = _serve(offer, _tokens(1, label="more")[0])
    assert answer == pf.SignedOnlyAnswer(pf.SignedOnly.EXHAUSTED)
    assert after == offer  # an unserved fetch spends no token
    # the receiver's store still refuses a second use of a served key
    _, store = store.take_one_time(min(seen), T0 + 2)
    with pytest.raises(PrekeyReusedError):
        store.take_one_time(min(seen), T0 + 3)


def test_strangers_and_bad_tokens_get_the_signed_prekey_only() -> None:
    _, offer = _supply()
    cases = [
        (None, pf.SignedOnly.NO_TOKEN),
        (_tokens(1, mailbox_key=device("elsewhere").sign_public)[0], pf.SignedOnly.TOKEN_INVALID),
    ]
    for token, reason in cases:
        answer, after = _serve(offer, token)
        assert answer == pf.SignedOnlyAnswer(reason)
        assert after == offer
    token = _tokens(1)[0]
    answer, _ = _serve(offer, token, now=token.expires)
    assert answer == pf.SignedOnlyAnswer(pf.SignedOnly.TOKEN_EXPIRED)
    first, offer = _serve(offer, token)
    assert isinstance(first, pf.OneTimeAnswer)
    again, after = _serve(offer, token)
    assert again == pf.SignedOnlyAnswer(pf.SignedOnly.TOKEN_SPENT)
    assert after == offer


def test_offer_survives_encoding_and_prunes_what_expired() -> None:
    _, offer = _supply()
    _, offer = _serve(offer, _tokens(1)[0])
    raw = offer.encode(FAST)
    back = pf.PrekeyOffer.decode(FAST, raw, ACCOUNT, DEVICE.sign_public, T0 + 5)
    assert back == offer
    assert len(back.unserved(T0 + 5)) == pf.OFFER_BATCH - 1
    # in its last day a batch is no longer served, and it is dropped at expiry
    expires = offer.batches[0].expires
    assert offer.unserved(expires - pf.SERVE_MARGIN_MS) == []
    gone = pf.PrekeyOffer.decode(FAST, raw, ACCOUNT, DEVICE.sign_public, expires)
    assert gone.batches == () and gone.served == frozenset() and gone.paid == {}
    with pytest.raises(InvalidInput):
        pf.PrekeyOffer.decode(FAST, raw, ACCOUNT, device("other").sign_public, T0)


def test_replenishing_is_bounded_per_day_and_never_reuses_ids() -> None:
    store, offer = PrekeyStore(), pf.PrekeyOffer()
    ids: set[int] = set()
    made = 0
    while offer.needs_batch(T0):
        store, offer = pf.replenish(FAST, DEVICE, ACCOUNT, store, offer, _secrets(f"b{made}"), T0)
        made += 1
        offer = pf.PrekeyOffer(offer.batches, offer.served | set(offer.unserved(T0)), offer.paid)
    assert made == pf.OFFER_BATCHES_PER_DAY
    for b in offer.batches:
        new = {b.first_id + i for i in range(len(b.keys))}
        assert not new & ids
        ids |= new
    assert set(store.one_time) == ids
    assert offer.needs_batch(T0 + pf.DAY_MS)  # the next day has room again


def test_rate_bound_per_peer_and_in_total() -> None:
    limiter = pf.FetchLimiter.start(0.0)
    assert all(limiter.allow("p", 0.0) for _ in range(int(pf.PEER_BURST)))
    assert not limiter.allow("p", 0.0)
    assert limiter.allow("p", 1 / pf.PEER_RATE)  # one more after a refill
    others = [limiter.allow(f"q{i}", 10.0) for i in range(int(pf.TOTAL_BURST) + 5)]
    assert not all(others) and sum(others) <= pf.TOTAL_BURST
