"""Fuzzing the history-bundle decoder (PROTOCOL.md §15.4 *History proofs*)
and the check behind it (S7).

Random bytes, byte-level and field-level mutations of valid kind-4 and
kind-3 bodies must decode or raise a ``ProtocolError``; whatever decodes as
kind 4 encodes back to the same bytes (one encoding per value); and every
decoded entry goes through ``check_entry`` against a real replica without
raising, getting a verdict.
"""

from __future__ import annotations

import dataclasses

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.core.canonical import encode_flat
from protocol.messaging.content import (
    ContentKind,
    HistoryBundle,
    Text,
    decode_content,
    encode_content,
)
from protocol.messaging.envelope import ledger_lookup
from protocol.messaging.history import EntryVerdict, check_bundle

from .conftest import hypothesis_settings as _settings
from .test_envelope import World
from .test_fuzz import FAST_N, SLOW_N, any_value, assert_survives, mutated
from .test_history_proof import _from_bob

WORLD = World()


def _corpus() -> list[bytes]:
    genuine = _from_bob(WORLD, "hi alice")
    long_one = _from_bob(WORLD, "x" * 300)
    bare = dataclasses.replace(genuine, proof=None, content=Text("no proof"))
    bundle = HistoryBundle(0, 2, (genuine, long_one, bare))
    return [encode_content(bundle)[1], encode_content(HistoryBundle(1, 2, (genuine,)))[1]]


CORPUS = _corpus()
V1_CORPUS = [
    encode_flat([b[0], b[1], [e[:7] for e in b[2]]])
    for b in (msgpack.unpackb(raw, raw=False) for raw in CORPUS)
]


@st.composite
def field_mutated(draw: st.DrawFn) -> bytes:
    """A valid body with one element of an entry or of its proof replaced,
    removed or added: reaches the schema checks behind the canonical one."""
    fields = msgpack.unpackb(draw(st.sampled_from(CORPUS)), raw=False)
    entry = draw(st.sampled_from(fields[2]))
    target = entry[7] if entry[7] and draw(st.booleans()) else entry
    if target is entry[7] and draw(st.booleans()):
        target = draw(st.sampled_from(target[2]))  # one view
    op = draw(st.integers(0, 2))
    i = draw(st.integers(0, max(len(target) - 1, 0)))
    if op == 0 and target:
        target[i] = draw(any_value)
    elif op == 1 and target:
        del target[i]
    else:
        target.insert(i, draw(any_value))
    return bytes(msgpack.packb(fields, use_bin_type=True))


def check_history_decoder(kind: int, data: bytes) -> None:
    content = assert_survives(decode_content, kind, data)
    if content is None:
        return
    assert isinstance(content, HistoryBundle)
    if kind == ContentKind.HISTORY:
        assert encode_content(content) == (kind, data)
    checks = check_bundle(content, WORLD.a.account, ledger_lookup(WORLD.la), WORLD.la.account_of)
    assert len(checks) == len(content.entries)
    for entry, check in zip(content.entries, checks, strict=True):
        assert isinstance(check.verdict, EntryVerdict)
        if entry.proof is None:
            assert check.verdict is EntryVerdict.UNPROVEN


history_inputs = st.one_of(
    st.binary(max_size=800),
    mutated(CORPUS),
    mutated(V1_CORPUS),
    field_mutated(),
    st.sampled_from(CORPUS + V1_CORPUS),
)
kinds = st.sampled_from([ContentKind.HISTORY, ContentKind.HISTORY_V1])


def test_the_corpus_decodes_and_verifies() -> None:
    """The fuzz starts from valid input: the genuine entries verify."""
    for raw in CORPUS:
        bundle = decode_content(ContentKind.HISTORY, raw)
        assert isinstance(bundle, HistoryBundle)
        checks = check_bundle(bundle, WORLD.a.account, ledger_lookup(WORLD.la), WORLD.la.account_of)
        assert EntryVerdict.VERIFIED in {c.verdict for c in checks}
    for raw in V1_CORPUS:
        bundle = decode_content(ContentKind.HISTORY_V1, raw)
        assert isinstance(bundle, HistoryBundle)
        assert all(e.proof is None for e in bundle.entries)


@_settings(FAST_N)
@given(kinds, history_inputs)
def test_fuzz_history_decoder(kind: int, data: bytes) -> None:
    check_history_decoder(kind, data)


@pytest.mark.slow
@_settings(SLOW_N)
@given(kinds, history_inputs)
def test_fuzz_history_decoder_long(kind: int, data: bytes) -> None:
    check_history_decoder(kind, data)
