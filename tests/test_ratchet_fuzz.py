"""Fuzzing the session layer's decoders and its receiving side (PROTOCOL.md
§19, the sealed wrap layer of §19.13 included): random bytes and mutations
of valid messages, batches, proofs and states either decode or raise a
``ProtocolError``, never another exception; a session or a store given
any bytes that it refuses is left exactly as it was."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.core.errors import InvalidInput, ProtocolError
from protocol.messaging import prekeys, ratchet, wrap2, x3dh
from protocol.messaging.ratchet import Session
from protocol.messaging.sessions import SessionBook

from .conftest import FAST, T0
from .conftest import hypothesis_settings as _settings
from .ratchet_support import Pair, start

FAST_N = 300
SLOW_N = 10_000


def _corpus() -> tuple[Pair, list[bytes], list[bytes]]:
    p = start()
    messages = [p.a.encrypt(b"prekey form"), p.b.encrypt(b"ratchet form")]
    others = [
        p.bob.batch.encode(FAST),
        p.bob.batch.proof(3).encode(FAST),
        p.a.to_bytes(),
        p.b.to_bytes(),
    ]
    return p, messages, others


PAIR, MESSAGES, OTHERS = _corpus()


@st.composite
def mutated(draw: st.DrawFn, corpus: list[bytes]) -> bytes:
    raw = bytearray(draw(st.sampled_from(corpus)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.integers(0, 3))
        i = draw(st.integers(0, max(0, len(raw) - 1)))
        if op == 0 and raw:
            raw[i] ^= 1 << draw(st.integers(0, 7))
        elif op == 1:
            raw.insert(i, draw(st.integers(0, 255)))
        elif op == 2 and raw:
            del raw[i]
        else:
            raw = raw[: draw(st.integers(0, len(raw)))]
    return bytes(raw)


inputs = st.one_of(
    st.binary(max_size=300), mutated(MESSAGES), mutated(OTHERS), st.sampled_from(MESSAGES)
)


def _survives(fn: object, *args: object) -> bool:
    try:
        fn(*args)  # type: ignore[operator]
    except ProtocolError:
        return False
    return True


def check(raw: bytes) -> None:
    _survives(ratchet.decode_message, raw)
    _survives(wrap2.decode_inner, raw)
    _survives(wrap2.open_wrap, PAIR.bob.party.device, PAIR.bob.spk, PAIR.bob.spk_secret, raw)
    _survives(Session.from_bytes, raw)
    bob = PAIR.bob
    _survives(prekeys.decode_batch, FAST, raw, bob.party.account, bob.keys.sign_public, T0)
    _survives(prekeys.verify_proof, FAST, raw, bob.party.account, bob.keys.sign_public, T0)
    for session in (Session.from_bytes(PAIR.a.to_bytes()), Session.from_bytes(PAIR.b.to_bytes())):
        before = session.to_bytes()
        try:
            session.decrypt(raw, b"\x07" * 32)
        except InvalidInput:
            assert session.to_bytes() == before
    try:
        m = ratchet.decode_message(raw)
    except InvalidInput:
        return
    book = SessionBook()
    book, _ = book.start(FAST, bob.party, bob.keys.enc_secret, PAIR.alice.bundle(0), b"\x09" * 64)
    for sid in (PAIR.a.state.initiation, *book.entries):
        _survives(
            book.receive,
            FAST, bob.party, bob.keys.enc_secret, bob.store, sid, PAIR.alice.party, raw,
            b"\x0a" * 32, T0,
        )  # fmt: skip
    store = bob.store
    snapshot = (dict(store.signed), dict(store.one_time), dict(store.spent))
    _survives(
        x3dh.respond_from_store,
        FAST, PAIR.alice.party, bob.party, bob.keys.enc_secret, store, m, b"\x08" * 32, T0,
    )  # fmt: skip
    assert (dict(store.signed), dict(store.one_time), dict(store.spent)) == snapshot


@_settings(FAST_N)
@given(inputs)
def test_fuzz_session_decoders_and_receivers(raw: bytes) -> None:
    check(raw)


@pytest.mark.slow
@_settings(SLOW_N)
@given(inputs)
def test_fuzz_session_decoders_and_receivers_slow(raw: bytes) -> None:
    check(raw)
