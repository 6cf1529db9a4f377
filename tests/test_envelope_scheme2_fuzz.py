"""Fuzzing scheme-2 envelopes (PROTOCOL.md §15.5, §19.13): random bytes and
mutations of valid scheme-2 envelopes (a set-up and a ratchet message)
either open or raise an ``InvalidInput``, never another exception, and a
refusal leaves the receiver's sessions, prekeys and replay state as they
were."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.core.errors import InvalidInput
from protocol.messaging.content import Text

from .conftest import hypothesis_settings as _settings
from .scheme2_support import World2
from .test_ratchet_fuzz import mutated

FAST_N = 300
SLOW_N = 10_000


def _corpus() -> tuple[World2, list[bytes]]:
    w = World2(bob_devices=1, alice_devices=1)
    a0, b0 = w["ad0"], w["bd0"]
    setup = a0.send(w.b.account, Text("set-up"))
    b0.open(setup.raw)
    reply = b0.send(w.a.account, Text("reply"))
    a0.open(reply.raw)
    later = a0.send(w.b.account, Text("ratchet"))  # not yet opened by b0
    return w, [setup.raw, later.raw, a0.send(w.b.account, Text("x" * 300)).raw]


WORLD, CORPUS = _corpus()


def _check(raw: bytes) -> None:
    b0 = WORLD["bd0"]
    before = b0.snapshot()
    with contextlib.suppress(InvalidInput):
        b0.open(raw, commit=False)
    assert b0.snapshot() == before  # commit=False: and the inputs are untouched values


inputs = st.one_of(st.binary(max_size=600), mutated(CORPUS))


@_settings(FAST_N)
@given(inputs)
def test_fuzz_scheme2_envelopes(raw: bytes) -> None:
    _check(raw)


@pytest.mark.slow
@_settings(SLOW_N)
@given(inputs)
def test_fuzz_scheme2_envelopes_slow(raw: bytes) -> None:
    _check(raw)
