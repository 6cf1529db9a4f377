"""The node's one-time prekey supply (PROTOCOL.md §19.16, node/prekeys.py):
made when low, served once, and what was served survives a restart."""

from __future__ import annotations

from node.prekeys import PrekeyKeeper
from node.services.sessions import MemoryPrekeyFile
from protocol.messaging import prekey_fetch as pf
from protocol.messaging.prekeys import verify_proof

from .conftest import FAST, T0
from .test_prekey_fetch import ACCOUNT, DEVICE, NODE_KEY, SIGNER, _tokens


def _fetch(keeper: PrekeyKeeper, token: pf.Token | None, now: int) -> pf.Answer:
    return keeper.serve(
        FAST, DEVICE, ACCOUNT, pf.FetchRequest(ACCOUNT, DEVICE.sign_public, token),
        mailbox_key=NODE_KEY, token_key=SIGNER.public, now_ms=now,
    )  # fmt: skip


def test_served_keys_stay_served_across_a_restart() -> None:
    file = MemoryPrekeyFile()
    keeper = PrekeyKeeper(file)
    first = _fetch(keeper, _tokens(1, label="a")[0], T0)
    assert isinstance(first, pf.OneTimeAnswer)
    a = verify_proof(FAST, first.proof, ACCOUNT, DEVICE.sign_public, T0)
    assert a.prekey_id in keeper.store.one_time  # the secret was kept first
    restarted = PrekeyKeeper(file)
    second = _fetch(restarted, _tokens(1, label="b")[0], T0 + 1)
    assert isinstance(second, pf.OneTimeAnswer)
    b = verify_proof(FAST, second.proof, ACCOUNT, DEVICE.sign_public, T0 + 1)
    assert b.prekey_id != a.prekey_id
    # the token that paid is remembered across the restart too
    again = _fetch(PrekeyKeeper(file), _tokens(1, label="a")[0], T0 + 2)
    assert again == pf.SignedOnlyAnswer(pf.SignedOnly.TOKEN_SPENT)
    assert _fetch(restarted, None, T0 + 2) == pf.SignedOnlyAnswer(pf.SignedOnly.NO_TOKEN)


def test_a_new_batch_comes_when_few_keys_remain() -> None:
    keeper = PrekeyKeeper(MemoryPrekeyFile())
    tokens = _tokens(pf.OFFER_BATCH, label="many")
    ids = set()
    for t in tokens[: pf.OFFER_BATCH - pf.OFFER_LOW_WATER + 1]:
        answer = _fetch(keeper, t, T0)
        assert isinstance(answer, pf.OneTimeAnswer)
        ids.add(verify_proof(FAST, answer.proof, ACCOUNT, DEVICE.sign_public, T0).prekey_id)
    offer = keeper.offer(FAST, ACCOUNT, DEVICE.sign_public, T0)
    assert len(offer.batches) == 1
    keeper.replenish(FAST, DEVICE, ACCOUNT, T0)  # fewer than 16 left: a second batch
    offer = keeper.offer(FAST, ACCOUNT, DEVICE.sign_public, T0)
    assert len(offer.batches) == 2
    assert len(offer.unserved(T0)) == 2 * pf.OFFER_BATCH - len(ids)
    assert len(keeper.store.one_time) == 2 * pf.OFFER_BATCH


def test_a_damaged_offer_file_starts_afresh_without_reusing_ids() -> None:
    file = MemoryPrekeyFile()
    keeper = PrekeyKeeper(file)
    first = _fetch(keeper, _tokens(1, label="before")[0], T0)
    assert isinstance(first, pf.OneTimeAnswer)
    used = verify_proof(FAST, first.proof, ACCOUNT, DEVICE.sign_public, T0).prekey_id
    assert file.offer is not None
    file.offer = file.offer[:-7]  # a torn or foreign file
    restarted = PrekeyKeeper(file)
    answer = _fetch(restarted, _tokens(1, label="after")[0], T0 + 1)
    assert isinstance(answer, pf.OneTimeAnswer)
    fresh = verify_proof(FAST, answer.proof, ACCOUNT, DEVICE.sign_public, T0 + 1).prekey_id
    assert fresh > used + pf.OFFER_BATCH - 1  # a new batch, above every id held
