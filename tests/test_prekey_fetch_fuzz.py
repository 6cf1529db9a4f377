"""Fuzzing ``/smu/prekey/1`` (PROTOCOL.md §19.16): random bytes and
mutations of valid requests, answers and kept offers either decode or raise
an ``InvalidInput``, never another exception; a server given any request
that decodes answers it without raising and serves at most one key."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.core.errors import InvalidInput
from protocol.messaging import prekey_fetch as pf
from protocol.messaging import prekey_shelf as ps

from .conftest import FAST, T0
from .conftest import hypothesis_settings as _settings
from .test_prekey_fetch import ACCOUNT, DEVICE, NODE_KEY, SIGNER, _supply, _tokens
from .test_ratchet_fuzz import mutated

FAST_N = 400
SLOW_N = 10_000

_, OFFER = _supply()
TOKEN = _tokens(1)[0]
REQUESTS = [
    pf.FetchRequest(ACCOUNT, DEVICE.sign_public, None).encode(),
    pf.FetchRequest(ACCOUNT, DEVICE.sign_public, TOKEN).encode(),
    pf.UploadRequest(ACCOUNT, DEVICE.sign_public, OFFER.batches[0].encode(FAST)).encode(),
]
ANSWERS = [
    pf.serve(FAST, OFFER, pf.FetchRequest(ACCOUNT, DEVICE.sign_public, TOKEN),
             mailbox_key=NODE_KEY, token_key=SIGNER.public, now_ms=T0 + 1)[0].encode(),
    pf.SignedOnlyAnswer(pf.SignedOnly.NO_TOKEN).encode(),
    pf.ErrorAnswer("rate_limited", "slow down").encode(),
    pf.UploadedAnswer(64).encode(),
]  # fmt: skip
_, SHELF = ps.PrekeyShelf().upload(
    FAST, pf.UploadRequest(ACCOUNT, DEVICE.sign_public, OFFER.batches[0].encode(FAST)),
    granted=True, now_ms=T0,
)  # fmt: skip
OFFERS = [OFFER.encode(FAST), SHELF.encode(FAST)]
CORPUS = REQUESTS + ANSWERS
inputs = st.one_of(st.binary(max_size=300), mutated(CORPUS), mutated(OFFERS))


def _check(raw: bytes) -> None:
    try:
        request = pf.decode_request(raw)
    except InvalidInput:
        pass
    else:
        if isinstance(request, pf.UploadRequest):
            shelf = ps.PrekeyShelf()
            try:
                _, shelf = shelf.upload(FAST, request, granted=True, now_ms=T0 + 1)
            except InvalidInput:
                assert shelf == ps.PrekeyShelf()
            return
        answer, after = pf.serve(
            FAST, OFFER, request, mailbox_key=NODE_KEY, token_key=SIGNER.public, now_ms=T0 + 1
        )
        assert len(after.served - OFFER.served) == (
            1 if isinstance(answer, pf.OneTimeAnswer) else 0
        )
        assert after == OFFER or isinstance(answer, pf.OneTimeAnswer)
    for decode in (
        pf.decode_answer,
        lambda r: pf.PrekeyOffer.decode(FAST, r, ACCOUNT, DEVICE.sign_public, T0),
        lambda r: ps.PrekeyShelf.decode(FAST, r, T0),
    ):
        with contextlib.suppress(InvalidInput):
            decode(raw)


@_settings(FAST_N)
@given(inputs)
def test_fuzz_prekey_fetch_decoders(raw: bytes) -> None:
    _check(raw)


@pytest.mark.slow
@_settings(SLOW_N)
@given(inputs)
def test_fuzz_prekey_fetch_decoders_slow(raw: bytes) -> None:
    _check(raw)


def test_a_kept_shelf_decodes_to_itself() -> None:
    assert ps.PrekeyShelf.decode(FAST, SHELF.encode(FAST), T0) == SHELF


def test_oversized_frames_are_refused_before_parsing() -> None:
    with pytest.raises(InvalidInput):
        pf.decode_request(b"\x00" * (pf.MAX_REQUEST_BYTES + 1))
    with pytest.raises(InvalidInput):
        pf.decode_answer(b"\x00" * (pf.MAX_ANSWER_BYTES + 1))
