"""Fuzzing the delivery-answer decoder of the per-link channel (PROTOCOL.md
§15.14.1, item kind 15).

Random bytes, byte-level and field-level mutations of valid answers must
decode or raise a ``ProtocolError``; whatever decodes encodes back to the
same bytes (one encoding per value) and keeps the decoder's own bounds.
"""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.messaging.channel_delivery import (
    MAX_ANSWER_BYTES,
    MAX_CODE_CHARS,
    MAX_MESSAGE_CHARS,
    decode_channel_answer,
    encode_channel_answer,
)
from protocol.messaging.envelope import DeliveryRefused

from .conftest import hypothesis_settings as _settings
from .test_fuzz import FAST_N, SLOW_N, any_value, assert_survives, mutated

CORPUS = [
    encode_channel_answer(1, None),
    encode_channel_answer(255, None),
    encode_channel_answer((1 << 64) - 1, None),
    encode_channel_answer(7, DeliveryRefused("replay", "counter 1 was already accepted")),
    encode_channel_answer(65_536, DeliveryRefused("requests_full", "")),
    encode_channel_answer(3, DeliveryRefused("x" * MAX_CODE_CHARS, "é" * MAX_MESSAGE_CHARS)),
]


@st.composite
def field_mutated(draw: st.DrawFn) -> bytes:
    """A valid answer with one field replaced, removed or added."""
    fields = msgpack.unpackb(draw(st.sampled_from(CORPUS)), raw=False)
    op = draw(st.integers(0, 2))
    i = draw(st.integers(0, len(fields) - 1))
    if op == 0:
        fields[i] = draw(st.one_of(any_value, st.integers(0, 2**64 - 1), st.text(max_size=70)))
    elif op == 1:
        del fields[i]
    else:
        fields.insert(i, draw(any_value))
    return bytes(msgpack.packb(fields, use_bin_type=True))


def check_answer_decoder(data: bytes) -> None:
    answer = assert_survives(decode_channel_answer, data)
    if answer is None:
        return
    seq, refusal = answer
    assert len(data) <= MAX_ANSWER_BYTES and 1 <= seq < 1 << 64
    if refusal is not None:
        assert 0 < len(refusal.code) <= MAX_CODE_CHARS
        assert len(refusal.message) <= MAX_MESSAGE_CHARS
    assert encode_channel_answer(seq, refusal) == data


answer_inputs = st.one_of(
    st.binary(max_size=300), mutated(CORPUS), field_mutated(), st.sampled_from(CORPUS)
)


def test_the_corpus_decodes_and_round_trips() -> None:
    for raw in CORPUS:
        seq, refusal = decode_channel_answer(raw)
        assert encode_channel_answer(seq, refusal) == raw


@given(st.text(max_size=64, min_size=1), st.text(max_size=300))
def test_every_encoded_answer_decodes(code: str, message: str) -> None:
    """Whatever an error says, its answer fits the limit and decodes."""
    raw = encode_channel_answer(9, DeliveryRefused(code, message))
    seq, refusal = decode_channel_answer(raw)
    assert len(raw) <= MAX_ANSWER_BYTES and seq == 9 and refusal is not None
    assert refusal.code == code and message.startswith(refusal.message)
    if len(code.encode()) + len(message[:MAX_MESSAGE_CHARS].encode()) <= 1000:
        assert refusal.message == message[:MAX_MESSAGE_CHARS]  # it fitted: not cut


@_settings(FAST_N)
@given(answer_inputs)
def test_fuzz_answer_decoder(data: bytes) -> None:
    check_answer_decoder(data)


@pytest.mark.slow
@_settings(SLOW_N)
@given(answer_inputs)
def test_fuzz_answer_decoder_long(data: bytes) -> None:
    check_answer_decoder(data)
