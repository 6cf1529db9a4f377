"""Fuzzing the decoders of the own-account copy and of the padding
(PROTOCOL.md §15.22, §15.3 step 7): a ``SentCopy`` body decodes or raises
an ``InvalidInput``; a pad passes only if it is the one canonical pad."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.core.canonical import encode_flat
from protocol.core.errors import InvalidInput, SchemaError
from protocol.messaging.content import ContentKind, SentCopy, Text, decode_content, encode_content
from protocol.messaging.padding import MIN_BUCKET, bucket, check_pad, pad_length, padded_plaintext

from .conftest import hypothesis_settings as _settings
from .test_ratchet_fuzz import mutated

_, COPY = encode_content(SentCopy(bytes(range(32)), bytes(16), Text("a copy")))
CORPUS = [COPY, encode_flat([bytes(32), bytes(16), 1, ["x" * 300]])]


def _decode(raw: bytes) -> object:
    """What decoding ``raw`` as a SENT_COPY body gives: the content, or
    the typed refusal (anything else escapes and fails the test)."""
    try:
        return decode_content(int(ContentKind.SENT_COPY), raw)
    except InvalidInput as exc:
        return exc


@_settings(300)
@given(st.one_of(st.binary(max_size=200), mutated(CORPUS)))
def test_fuzz_sent_copy(raw: bytes) -> None:
    got = _decode(raw)
    # a typed refusal, or a copy whose encoding is exactly the input
    assert isinstance(got, InvalidInput) or (
        isinstance(got, SentCopy) and encode_content(got)[1] == raw
    )


@pytest.mark.slow
@_settings(10_000)
@given(st.one_of(st.binary(max_size=200), mutated(CORPUS)))
def test_fuzz_sent_copy_slow(raw: bytes) -> None:
    got = _decode(raw)
    assert isinstance(got, InvalidInput) or (
        isinstance(got, SentCopy) and encode_content(got)[1] == raw
    )


def test_the_copy_corpus_decodes() -> None:
    # the fuzzers start from real copies: the corpus itself must decode
    assert isinstance(_decode(COPY), SentCopy)


@_settings(300)
@given(st.binary(max_size=3000), st.binary(min_size=64, max_size=64), st.binary(max_size=2200))
def test_fuzz_padding(inner: bytes, signature: bytes, pad: bytes) -> None:
    n = pad_length(inner, signature)
    plain = padded_plaintext(inner, signature)
    assert len(plain) <= bucket(len(encode_flat([inner, signature, b""])))
    assert len(plain) >= MIN_BUCKET - 2  # the pad's header may cost a byte or two
    check_pad(inner, signature, bytes(n))
    if pad != bytes(n):
        with pytest.raises(SchemaError):
            check_pad(inner, signature, pad)


def test_buckets_grow_by_at_most_an_eighth() -> None:
    for n in (1025, 1100, 5000, 65_537, 500_000):
        assert n <= bucket(n) <= n * 1.125
    assert bucket(1) == bucket(1024) == 1024
