"""Fuzzing every decoder of remote or typed-in input (S7).

Random bytes, random text and mutations of valid encodings (byte-level and
field-level) must either decode or raise a ``ProtocolError`` subclass:
never another exception.  Whatever ``decode_event`` accepts also goes
through ``verify_event`` and ``Ledger.ingest`` under the same rule.  The
per-link channel machine must not raise at all on remote input: it reports
it as ``Misbehaved`` and closes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.core import canonical, keys
from protocol.core.errors import InvalidInput, ProtocolError
from protocol.core.machine import Now
from protocol.links import channel_wire
from protocol.links.channel import Channel, Misbehaved
from protocol.links.channel import State as ChannelState
from protocol.log import authoring
from protocol.log.events import decode_event, verify_event
from protocol.log.ledger import Ledger

from .conftest import FAST, History, device, recovery
from .conftest import hypothesis_settings as _settings

FAST_N = 500
SLOW_N = 20_000


def assert_survives(fn: Callable[..., Any], *args: Any) -> Any:
    """Call a decoder; a ProtocolError is a fine answer, anything else fails."""
    try:
        return fn(*args)
    except ProtocolError:
        return None


# --------------------------------------------------------------------------
# A corpus of valid encodings: every event kind, and some plain values


def _corpus() -> tuple[History, list[bytes]]:
    h = History()
    h.add("a1", "d0", "d1", ["g"])
    h.add("a2", "d1", "d2", ["a1"])
    h.revoke("rv", "d0", "d1", ["a2"])
    h.profile("p", "d0", "Bob Ünicode", ["rv"])
    h.recover("rec", "d9", ["p"])
    h.events["rot"] = authoring.rotate_enc_key(
        FAST,
        h.account,
        [h.events["rec"].id],
        h.keys["d9"],
        device("rot").enc_public,
        timestamp=h.t + 1,
    )
    h.add("side", "d0", "d3", ["a1", "a2"])
    return h, [e.raw for e in h.events.values()]


HISTORY, EVENTS = _corpus()
VALUES = [
    canonical.encode(v)
    for v in (
        0,
        -1,
        2**64 - 1,
        "text",
        b"\x00" * 40,
        [1, [2, [3]], "x", b"y"],
        {"a": 1, "b": [True, False], b"k": {"n": -(2**63)}},
    )
]
TAGS = [0x80, 0x90, 0x9A, 0x9B, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xC3, *range(0xC4, 0xE0), 0xFF]


@st.composite
def mutated(draw: st.DrawFn, corpus: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(corpus)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.integers(0, 6))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == 0 and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif op == 1:
            data.insert(pos, draw(st.integers(0, 255)))
        elif op == 2 and data:
            del data[pos]
        elif op == 3:
            del data[pos:]
        elif op == 4:
            size = draw(st.integers(1, 16))
            data[pos : pos + size] = draw(st.binary(min_size=size, max_size=size))
        elif op == 5 and data:
            data[pos] = draw(st.sampled_from(TAGS))
        elif op == 6:
            data += draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


any_value = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**64 - 1),
        st.floats(),
        st.text(max_size=20),
        st.binary(max_size=70),
        st.sampled_from([b"", bytes(32), bytes(64), "smu-unit", 1, 2, 3, 4, 5, 6, 7]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)


@st.composite
def field_mutated(draw: st.DrawFn) -> bytes:
    """A valid event with one field (or one element of its body) replaced,
    removed or added, re-packed: reaches the schema checks."""
    fields = msgpack.unpackb(draw(st.sampled_from(EVENTS)), raw=False)
    target = fields
    if draw(st.booleans()):  # somewhere inside the body
        target = fields[7]
        while draw(st.booleans()):
            inner = [x for x in target if isinstance(x, list)]
            if not inner:
                break
            target = draw(st.sampled_from(inner))
    op = draw(st.integers(0, 3))
    i = draw(st.integers(0, max(len(target) - 1, 0)))
    if op <= 1 and target:
        target[i] = draw(any_value)
    elif op == 2 and target:
        del target[i]
    else:
        target.insert(i, draw(any_value))
    return bytes(msgpack.packb(fields, use_bin_type=True))


def _event_pipeline(raw: bytes, ledger: Ledger) -> None:
    event = assert_survives(decode_event, raw, FAST)
    if event is None:
        return
    assert_survives(verify_event, event, FAST)
    with contextlib.suppress(InvalidInput):
        ledger.ingest(raw)


def _ledger() -> Ledger:
    return HISTORY.ledger(["g", "a1", "a2"])


event_inputs = st.one_of(
    st.binary(max_size=400), mutated(EVENTS), field_mutated(), st.sampled_from(EVENTS)
)


def check_event_decoder(raw: bytes) -> None:
    _event_pipeline(raw, _ledger())


@_settings(FAST_N)
@given(event_inputs)
def test_fuzz_decode_event(raw: bytes) -> None:
    check_event_decoder(raw)


@pytest.mark.slow
@_settings(SLOW_N)
@given(event_inputs)
def test_fuzz_decode_event_slow(raw: bytes) -> None:
    check_event_decoder(raw)


value_inputs = st.one_of(st.binary(max_size=200), mutated(VALUES + EVENTS), st.sampled_from(VALUES))


def check_value_decoders(data: bytes, limit: int) -> None:
    for decode in (canonical.decode, canonical.decode_flat):
        value = assert_survives(decode, data, limit)
        if value is not None and decode is canonical.decode:
            assert canonical.encode(value) == data


@_settings(FAST_N)
@given(value_inputs, st.sampled_from([1 << 16, 64, 1]))
def test_fuzz_canonical_decoders(data: bytes, limit: int) -> None:
    check_value_decoders(data, limit)


@pytest.mark.slow
@_settings(SLOW_N)
@given(value_inputs, st.sampled_from([1 << 16, 64, 1]))
def test_fuzz_canonical_decoders_slow(data: bytes, limit: int) -> None:
    check_value_decoders(data, limit)


def test_deep_nesting_is_a_protocol_error() -> None:
    for depth in (17, 100, 10_000, 200_000):
        for head in (b"\x91", b"\x81\xa0"):
            data = head * depth + b"\x00"
            assert_survives(canonical.decode, data, 1 << 22)
            assert_survives(canonical.decode_flat, data, 1 << 22)
            assert_survives(decode_event, data, FAST)


# --------------------------------------------------------------------------
# Typed-in text: base32 and paper keys

PAPER = recovery("fuzz").to_paper()


@st.composite
def mutated_text(draw: st.DrawFn, base: str) -> str:
    chars = list(base)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.integers(0, 3))
        pos = draw(st.integers(0, max(len(chars) - 1, 0)))
        ch = draw(st.one_of(st.characters(), st.sampled_from(list(keys.B32_ALPHABET + "ILOU-  "))))
        if op == 0 and chars:
            chars[pos] = ch
        elif op == 1:
            chars.insert(pos, ch)
        elif op == 2 and chars:
            del chars[pos]
        else:
            chars = [c.upper() if draw(st.booleans()) else c for c in chars]
    return "".join(chars)


text_inputs = st.one_of(st.text(max_size=80), mutated_text(PAPER), st.just(PAPER))


def check_text_decoders(text: str, nbytes: int) -> None:
    assert_survives(keys.b32decode, text, nbytes)
    key = assert_survives(keys.RecoveryKey.from_paper, text)
    if key is not None:
        assert key.to_paper() == PAPER  # a typo that decodes is no typo at all


@_settings(FAST_N)
@given(text_inputs, st.integers(0, 40))
def test_fuzz_text_decoders(text: str, nbytes: int) -> None:
    check_text_decoders(text, nbytes)


@pytest.mark.slow
@_settings(SLOW_N)
@given(text_inputs, st.integers(0, 40))
def test_fuzz_text_decoders_slow(text: str, nbytes: int) -> None:
    check_text_decoders(text, nbytes)


# --------------------------------------------------------------------------
# Per-link channel frames (PROTOCOL.md §17.3.2): the decoder raises only
# InvalidInput, and the machine never raises on remote input at all

CHANNEL_FRAMES = [
    channel_wire.encode_frame(f)
    for f in (
        channel_wire.HelloFrame(1, channel_wire.MIN_WINDOW, channel_wire.MIN_FRAME_BYTES),
        channel_wire.DataFrame(1, ((1, b"payload"), (65_535, b""), (0, bytes(300)))),
        channel_wire.DataFrame(2**40, ((16, b"x"),)),
        channel_wire.AckFrame(3, channel_wire.MIN_WINDOW + 1),
        channel_wire.PingFrame(),
        channel_wire.CloseFrame(channel_wire.CloseCode.STALLED, "nothing acknowledged"),
    )
]


@st.composite
def channel_field_mutated(draw: st.DrawFn) -> bytes:
    """A valid frame with one field (or one field of one DATA item)
    replaced, removed or added, re-packed: reaches the schema checks."""
    fields = msgpack.unpackb(draw(st.sampled_from(CHANNEL_FRAMES)), raw=False)
    target = fields
    if len(fields) == 3 and isinstance(fields[2], list) and draw(st.booleans()):
        target = draw(st.sampled_from(fields[2]))  # one item of a DATA frame
    op = draw(st.integers(0, 2))
    i = draw(st.integers(0, max(len(target) - 1, 0)))
    if op == 0 and target:
        target[i] = draw(any_value)
    elif op == 1 and target:
        del target[i]
    else:
        target.insert(i, draw(any_value))
    return bytes(msgpack.packb(fields, use_bin_type=True))


channel_inputs = st.one_of(
    st.binary(max_size=200),
    mutated(CHANNEL_FRAMES),
    channel_field_mutated(),
    st.sampled_from(CHANNEL_FRAMES),
)


def check_channel_decoder(data: bytes, opened: bool) -> None:
    with contextlib.suppress(InvalidInput):  # and nothing else
        channel_wire.decode_frame(data, channel_wire.MIN_FRAME_BYTES)
    machine = Channel()
    machine.start(Now.virtual(0))
    if opened:
        machine.receive(CHANNEL_FRAMES[0], Now.virtual(0))
    outputs = machine.receive(data, Now.virtual(1))  # must not raise
    if any(isinstance(o, Misbehaved) for o in outputs):
        assert machine.state is ChannelState.CLOSED


@_settings(FAST_N)
@given(channel_inputs, st.booleans())
def test_fuzz_channel_frames(data: bytes, opened: bool) -> None:
    check_channel_decoder(data, opened)


@pytest.mark.slow
@_settings(SLOW_N)
@given(channel_inputs, st.booleans())
def test_fuzz_channel_frames_slow(data: bytes, opened: bool) -> None:
    check_channel_decoder(data, opened)
