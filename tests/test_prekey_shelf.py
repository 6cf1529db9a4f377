"""One-time prekeys at a mailbox (PROTOCOL.md §19.16, *At mailboxes*):
uploads authenticated by the batch's signature, each key served once under
the token rule, stale batches refused, caps per device and in total."""

from __future__ import annotations

import dataclasses

import pytest

from protocol.core.errors import InvalidInput
from protocol.messaging import prekey_fetch as pf
from protocol.messaging import prekey_shelf as ps
from protocol.messaging.prekeys import PrekeyStore, make_batch, verify_proof
from protocol.messaging.tokens import TokenSpentError

from .conftest import FAST, T0, device
from .test_prekey_fetch import ACCOUNT, DEVICE, SIGNER, _secrets, _tokens

MAILBOX = device("opk/mailbox").sign_public


def _upload(
    shelf: ps.PrekeyShelf, first_id: int, *, granted: bool = True, label: str = "up"
) -> tuple[pf.Answer, ps.PrekeyShelf]:
    batch = make_batch(FAST, DEVICE, ACCOUNT, first_id, T0 + pf.OFFER_LIFETIME_MS,
                       _secrets(f"{label}/{first_id}"))  # fmt: skip
    raw = pf.UploadRequest(ACCOUNT, DEVICE.sign_public, batch.encode(FAST)).encode()
    request = pf.decode_request(raw)
    assert isinstance(request, pf.UploadRequest)
    return shelf.upload(FAST, request, granted=granted, now_ms=T0)


def _fetch(shelf: ps.PrekeyShelf, token: pf.Token | None) -> tuple[pf.Answer, ps.PrekeyShelf]:
    request = pf.FetchRequest(ACCOUNT, DEVICE.sign_public, token)
    return shelf.fetch(FAST, request, mailbox_key=MAILBOX, token_key=SIGNER.public, now_ms=T0 + 1)


def test_a_mailbox_serves_each_uploaded_key_once() -> None:
    answer, shelf = _upload(ps.PrekeyShelf(), 1000)
    assert answer == pf.UploadedAnswer(pf.OFFER_BATCH)
    ids = set()
    for token in _tokens(pf.OFFER_BATCH, mailbox_key=MAILBOX, label="mb"):
        answer, shelf = _fetch(shelf, token)
        assert isinstance(answer, pf.OneTimeAnswer)
        ids.add(verify_proof(FAST, answer.proof, ACCOUNT, DEVICE.sign_public, T0 + 1).prekey_id)
    assert ids == set(range(1000, 1000 + pf.OFFER_BATCH))
    answer, after = _fetch(shelf, _tokens(1, mailbox_key=MAILBOX, label="late")[0])
    assert answer == pf.SignedOnlyAnswer(pf.SignedOnly.EXHAUSTED) and after == shelf
    # the same token twice, a stranger, a token for the device's own node
    _, fresh = _upload(ps.PrekeyShelf(), 1000)
    token = _tokens(1, mailbox_key=MAILBOX, label="twice")[0]
    _, once = _fetch(fresh, token)
    assert _fetch(once, token)[0] == pf.SignedOnlyAnswer(pf.SignedOnly.TOKEN_SPENT)
    assert _fetch(fresh, None) == (pf.SignedOnlyAnswer(pf.SignedOnly.NO_TOKEN), fresh)
    other = _tokens(1, label="own node")[0]
    assert _fetch(fresh, other) == (pf.SignedOnlyAnswer(pf.SignedOnly.TOKEN_INVALID), fresh)


def test_a_replayed_or_stale_batch_is_refused_and_changes_nothing() -> None:
    _, shelf = _upload(ps.PrekeyShelf(), 1000)
    for first_id in (1000, 1000 + pf.OFFER_BATCH - 1, 10):
        with pytest.raises(ps.PrekeyStaleError):
            _upload(shelf, first_id)
    # even after its keys are gone from the shelf (expired, or its grant dropped)
    dropped = shelf.drop_device(DEVICE.sign_public)
    with pytest.raises(ps.PrekeyStaleError):
        _upload(dropped, 1000)
    with pytest.raises(ps.PrekeyShelfError):
        _upload(ps.PrekeyShelf(), 1000, granted=False)
    # a batch of another device, or altered, is refused by its signature check
    batch = make_batch(FAST, DEVICE, ACCOUNT, 5000, T0 + 1000, _secrets("x"))
    bad = dataclasses.replace(batch, signature=bytes(64))
    request = pf.UploadRequest(ACCOUNT, DEVICE.sign_public, bad.encode(FAST))
    with pytest.raises(InvalidInput):
        shelf.upload(FAST, request, granted=True, now_ms=T0)


def test_caps_per_device_and_in_total(monkeypatch: pytest.MonkeyPatch) -> None:
    shelf = ps.PrekeyShelf()
    for i in range(ps.DEVICE_BATCHES):
        _, shelf = _upload(shelf, 1000 + i * pf.OFFER_BATCH)
    with pytest.raises(ps.ShelfFullError):
        _upload(shelf, 1000 + ps.DEVICE_BATCHES * pf.OFFER_BATCH)
    monkeypatch.setattr(ps, "TOTAL_BATCHES", 2)
    _, small = _upload(ps.PrekeyShelf(), 1000)
    _, small = _upload(small, 2000)
    with pytest.raises(ps.ShelfFullError):
        _upload(small, 3000)
    # expiry makes room again
    assert ps.PrekeyShelf().batches() == 0
    assert small.pruned(T0 + pf.OFFER_LIFETIME_MS).batches() == 0


def test_the_device_makes_separate_batches_for_each_server() -> None:
    """A key held at two servers could be served twice: the own node's
    offer and a mailbox's batch never share an id."""
    store, offer = pf.replenish(FAST, DEVICE, ACCOUNT, PrekeyStore(), pf.PrekeyOffer(),
                                _secrets("node"), T0)  # fmt: skip
    store, second = pf.replenish(FAST, DEVICE, ACCOUNT, store, pf.PrekeyOffer(),
                                 _secrets("mailbox"), T0)  # fmt: skip
    node_ids = {offer.batches[0].first_id + i for i in range(pf.OFFER_BATCH)}
    mailbox_ids = {second.batches[0].first_id + i for i in range(pf.OFFER_BATCH)}
    assert not node_ids & mailbox_ids
    assert node_ids | mailbox_ids == set(store.one_time)


def test_one_spent_set_for_deposits_and_prekey_fetches() -> None:
    """A token pays once at a mailbox, for a deposit or a fetch (§15.16)."""
    from .test_mailbox_quotas import BOB, NOW, Box

    b = Box()
    fetch_token, deposit_token = b.token(1), b.token(2)
    assert not b.box.token_spent(BOB.sign_public, fetch_token.nonce)
    b.box.spend_token(BOB.sign_public, fetch_token)  # it paid for a prekey
    assert b.box.token_spent(BOB.sign_public, fetch_token.nonce)
    with pytest.raises(TokenSpentError):
        b.box.deposit(BOB.sign_public, b.env(), group="g", now=NOW, token=fetch_token)
    b.box.deposit(BOB.sign_public, b.env(), group="g", now=NOW, token=deposit_token)
    assert b.box.token_spent(BOB.sign_public, deposit_token.nonce)
    # durable: a restarted mailbox still knows both
    again = Box(b.store)
    assert again.box.token_spent(BOB.sign_public, fetch_token.nonce)
    assert again.box.spent_count == 2
