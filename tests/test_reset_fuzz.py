"""Fuzzing the session-reset decoder (PROTOCOL.md §19.15, content kind 16).

Random bytes, byte-level and field-level mutations of valid bodies must
decode or raise a ``ProtocolError``; whatever decodes encodes back to the
same bytes (one encoding per value) and keeps the decoder's own bounds.
"""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.messaging.content import ContentKind, decode_content, encode_content
from protocol.messaging.resets import MAX_RESET_IDS, SessionReset

from .conftest import hypothesis_settings as _settings
from .test_fuzz import FAST_N, SLOW_N, any_value, assert_survives, mutated

CORPUS = [
    encode_content(SessionReset(tuple(bytes([i]) * 32 for i in range(1, n + 1))))[1]
    for n in range(1, MAX_RESET_IDS + 1)
]


@st.composite
def field_mutated(draw: st.DrawFn) -> bytes:
    """A valid body with one session id replaced, removed or added."""
    fields = msgpack.unpackb(draw(st.sampled_from(CORPUS)), raw=False)
    ids = fields[0]
    op = draw(st.integers(0, 2))
    i = draw(st.integers(0, len(ids) - 1))
    if op == 0:
        ids[i] = draw(st.one_of(any_value, st.binary(min_size=32, max_size=32)))
    elif op == 1:
        del ids[i]
    else:
        ids.insert(i, draw(st.one_of(any_value, st.binary(min_size=32, max_size=32))))
    return bytes(msgpack.packb(fields, use_bin_type=True))


def check_reset_decoder(data: bytes) -> None:
    content = assert_survives(decode_content, ContentKind.SESSION_RESET, data)
    if content is None:
        return
    assert isinstance(content, SessionReset)
    assert 1 <= len(content.session_ids) <= MAX_RESET_IDS
    assert list(content.session_ids) == sorted(set(content.session_ids))
    assert encode_content(content) == (ContentKind.SESSION_RESET, data)


reset_inputs = st.one_of(
    st.binary(max_size=300), mutated(CORPUS), field_mutated(), st.sampled_from(CORPUS)
)


def test_the_corpus_decodes() -> None:
    for raw in CORPUS:
        assert isinstance(decode_content(ContentKind.SESSION_RESET, raw), SessionReset)


@_settings(FAST_N)
@given(reset_inputs)
def test_fuzz_reset_decoder(data: bytes) -> None:
    check_reset_decoder(data)


@pytest.mark.slow
@_settings(SLOW_N)
@given(reset_inputs)
def test_fuzz_reset_decoder_long(data: bytes) -> None:
    check_reset_decoder(data)
