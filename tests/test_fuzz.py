"""Fuzzing every decoder of remote or typed-in input (S7), and the machines
that take remote bytes.

Random bytes, random text and mutations of valid encodings (byte-level and
field-level) must either decode or raise a ``ProtocolError`` subclass:
never another exception.  Whatever ``decode_event`` accepts also goes
through ``verify_event`` and ``Ledger.ingest`` under the same rule.  The
machines that read remote frames (``Approver.receive``, ``Joiner.receive``,
``Mailbox.handle``) answer any bytes with outputs, never an exception.
Whatever ``decode_record`` accepts unverified goes through ``verify_record``.
The per-link channel machine must not raise at all on remote input: it reports
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
from protocol.core.invite import Invite
from protocol.core.machine import Hangup, Misbehaved, Now, Send
from protocol.linking import machines as lk
from protocol.links import channel_wire
from protocol.links.channel import Channel
from protocol.links.channel import Misbehaved as ChannelMisbehaved
from protocol.links.channel import State as ChannelState
from protocol.log import authoring
from protocol.log.events import decode_event, verify_event
from protocol.log.ledger import Ledger
from protocol.messaging import mailbox as mb
from protocol.messaging.content import decode_content, encode_content
from protocol.messaging.mailbox import Mailbox, MailboxIdentity
from protocol.messaging.mailbox_wire import decode_request
from protocol.messaging.tokens import TokenBatch, TokenSigner, for_invite, from_invite
from protocol.records.device import (
    RECORD_V1,
    SignedPrekey,
    decode_record,
    make_record,
    verify_record,
)
from protocol.records.grant import D_MAILBOX_GRANT, GRANT_V1, decode_grant, grant_fields

from .conftest import FAST, T0, History, device, recovery
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
    # rotations of the recovery key (§6.8): one the fuzzing ledger can take
    # (at a2), one co-signed by the recover's next key
    h.rotate("rk1", "d1", ["a2"])
    h.rotate("rk2", "d9", ["rec"], rk=h.next_key("rec"))
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
# Machines fed remote bytes: outputs only, never an exception (§18):
# Approver.receive, Joiner.receive, Mailbox.handle

LINK_NOW = Now.virtual(1.0)
PA, PJ = "12D3KooWFuzzApprover", "12D3KooWFuzzJoiner"


def _approver() -> lk.Approver:
    return lk.Approver(
        FAST, HISTORY.account, peer_id=PA, addrs=("/ip4/192.0.2.1/tcp/1",),
        link_id=bytes(8), secret=bytes(range(16)), now=Now.virtual(0.0),
    )  # fmt: skip


def _sent(outs: list[lk.LinkOutput]) -> bytes:
    (frame,) = [o.frame for o in outs if isinstance(o, Send)]
    return frame


def _joiner() -> tuple[lk.Joiner, bytes]:
    """A joiner that has sent JOIN, and that frame."""
    ap = _approver()
    jn = lk.Joiner(
        FAST, ap.offer, device("fuzz-new"), "new", own_peer=PJ, remote_peer=PA, now=LINK_NOW
    )
    return jn, _sent(jn.start(LINK_NOW))


def _claimed(ledger: Ledger) -> tuple[lk.Approver, lk.Joiner, bytes, bytes]:
    """An offer claimed by a joiner, its JOIN and the ACCEPT frame it got."""
    ap, (jn, join) = _approver(), _joiner()
    return ap, jn, join, _sent(ap.receive(join, remote_peer=PJ, now=LINK_NOW, ledger=ledger))


def _link_corpus() -> list[bytes]:
    _, _, join, accept = _claimed(_ledger())
    others = [lk.ConfirmFrame(), lk.DoneFrame(), lk.ErrorFrame("link_declined")]
    approved = lk.ApprovedFrame(tuple(EVENTS[:3]))
    return [join, accept, lk.encode_frame(approved), *(lk.encode_frame(f) for f in others)]


LINK_FRAMES = _link_corpus()
link_inputs = st.one_of(
    st.binary(max_size=1200), mutated(LINK_FRAMES), st.sampled_from(LINK_FRAMES)
)


def _approver_answer(outs: list[lk.LinkOutput], peer: str) -> None:
    """A refusal is exactly ERROR, Misbehaved, Hangup for the sender."""
    bad = [o for o in outs if isinstance(o, Misbehaved)]
    if bad:
        (m,) = bad
        assert outs == [Send(peer, lk.error_frame(m.error)), m, Hangup(peer)]


def _joiner_answer(jn: lk.Joiner, outs: list[lk.LinkOutput]) -> None:
    """A failure is JoinFailed, maybe Misbehaved, then Hangup; nothing sent."""
    assert outs
    if isinstance(outs[0], lk.JoinFailed):
        assert outs[-1] == Hangup(PA) and jn.state is lk.JoinerState.FAILED
        assert not any(isinstance(o, Send) for o in outs)


def check_link_machines(data: bytes) -> None:
    ledger = _ledger()
    count = ledger.event_count
    _approver_answer(_approver().receive(data, remote_peer=PJ, now=LINK_NOW, ledger=ledger), PJ)
    ap, requested, _, accept = _claimed(ledger)
    ap.receive(lk.encode_frame(lk.ConfirmFrame()), remote_peer=PJ, now=LINK_NOW, ledger=ledger)
    for peer in (PJ, "12D3KooWStranger"):
        _approver_answer(ap.receive(data, remote_peer=peer, now=LINK_NOW, ledger=ledger), peer)
    assert ledger.event_count == count
    _joiner_answer(requested, requested.receive(data, LINK_NOW))
    waiting, _ = _joiner()
    waiting.receive(accept, LINK_NOW)
    waiting.confirm(LINK_NOW)
    _joiner_answer(waiting, waiting.receive(data, LINK_NOW))


@_settings(300)
@given(link_inputs)
def test_fuzz_link_machines(data: bytes) -> None:
    check_link_machines(data)


@pytest.mark.slow
@_settings(SLOW_N // 10)
@given(link_inputs)
def test_fuzz_link_machines_slow(data: bytes) -> None:
    check_link_machines(data)


MB_KEYS = device("fuzz-mailbox-device")
MB_IDENTITY = mb.MailboxIdentity(b"m" * 32)
MB_SIGNER = TokenSigner(b"t" * 32)
MB_TOKENS = MB_SIGNER.issue(
    FAST, MB_IDENTITY.public, MB_KEYS.sign_public, [bytes([i]) * 16 for i in range(3)],
    LINK_NOW.wall_ms + 3600_000,
)  # fmt: skip
MB_FRAMES = [
    mb.deposit_request(MB_KEYS.sign_public, EVENTS[0]),
    mb.challenge_request(MB_KEYS.sign_public),
    mb.fetch_request(FAST, MB_KEYS, MB_IDENTITY.public, bytes(16), 5),
    mb.delete_request(FAST, MB_KEYS, MB_IDENTITY.public, bytes(16), [bytes(16)]),
    mb.grant_request(FAST, MB_KEYS, HISTORY.account, MB_IDENTITY.public, LINK_NOW.wall_ms),
    mb.grant_request(
        FAST, MB_KEYS, HISTORY.account, MB_IDENTITY.public, LINK_NOW.wall_ms, MB_SIGNER.public
    ),
    mb.deposit_request(MB_KEYS.sign_public, EVENTS[0], MB_TOKENS[0]),
]
mailbox_inputs = st.one_of(st.binary(max_size=600), mutated(MB_FRAMES), st.sampled_from(MB_FRAMES))


def check_mailbox_handle(data: bytes) -> None:
    box = mb.Mailbox(FAST, MB_IDENTITY, "12D3KooWFuzzBox", grant_policy=lambda a, d: True)
    box.issue_grant(HISTORY.account, MB_KEYS.sign_public, now=LINK_NOW, token_key=MB_SIGNER.public)
    box.challenge(MB_KEYS.sign_public, bytes(16), LINK_NOW)
    outs = box.handle(data, peer="peer", group="g", now=LINK_NOW, random16=b"n" * 16)
    send, *rest = outs
    assert isinstance(send, Send) and send.peer == "peer"
    answer = mb.decode_answer(send.frame)  # always a well-formed answer
    if isinstance(answer, mb.Refused):
        assert len(rest) == 1 and isinstance(rest[0], Misbehaved)
        assert rest[0].error.code == answer.code
    else:
        assert rest == []


@_settings(FAST_N)
@given(mailbox_inputs)
def test_fuzz_mailbox_handle(data: bytes) -> None:
    check_mailbox_handle(data)


@pytest.mark.slow
@_settings(SLOW_N // 10)
@given(mailbox_inputs)
def test_fuzz_mailbox_handle_slow(data: bytes) -> None:
    check_mailbox_handle(data)


# Device records (v1, v2) and mailbox grants (v1, v2): PROTOCOL.md §16, §15.11


def _soft_state_corpus() -> list[bytes]:
    h = HISTORY
    dev = h.keys["d0"]
    box = MailboxIdentity(b"\x09" * 32)
    v1_fields = grant_fields(
        FAST, GRANT_V1, box.public, "12D3KooWv1", h.account, dev.sign_public, 9, 9, 1, 2
    )
    v1_grant = canonical.encode_flat(
        [*v1_fields, box.sign(D_MAILBOX_GRANT + canonical.encode_flat(v1_fields))]
    )
    mailbox = Mailbox(FAST, box, "12D3KooWv2")
    v2_grant = mailbox.issue_grant(h.account, dev.sign_public, now=Now.virtual(0.0)).raw
    keyed = mailbox.issue_grant(
        h.account, dev.sign_public, now=Now.virtual(0.0), token_key=device("tok").sign_public
    ).raw
    common: dict[str, Any] = {"timestamp": T0, "lifetime_ms": 3_600_000}
    records = [
        make_record(
            FAST, h.account, dev, peer_ids=("12D3KooWa",), addrs=("/ip4/1.2.3.4/tcp/1",),
            mailboxes=((v1_grant, ("/ip4/5.6.7.8/tcp/2",)),), version=RECORD_V1, **common,
        ),
        make_record(
            FAST, h.account, dev, peer_ids=("12D3KooWa",), addrs=("/ip4/1.2.3.4/tcp/1",),
            mailboxes=((v2_grant, ("/ip4/5.6.7.8/tcp/2",)), (keyed, ())),
            signed_prekey=SignedPrekey(3, device("pre").enc_public),
            relays=("12D3KooWrelay",), capabilities=(1, 2, 77), **common,
        ),
        make_record(FAST, h.account, dev, peer_ids=(), addrs=(), **common),
    ]  # fmt: skip
    return [r.raw for r in records] + [v1_grant, v2_grant, keyed]


SOFT_STATE = _soft_state_corpus()


@st.composite
def soft_state_field_mutated(draw: st.DrawFn) -> bytes:
    """A record or grant with one element (or one element of a nested
    array: a grant entry, the prekey, the capabilities) replaced, removed or
    added: reaches every field check behind the canonical form."""
    fields = msgpack.unpackb(draw(st.sampled_from(SOFT_STATE)), raw=False)
    target = fields
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


soft_state_inputs = st.one_of(
    st.binary(max_size=600),
    mutated(SOFT_STATE),
    soft_state_field_mutated(),
    st.sampled_from(SOFT_STATE),
)


def check_soft_state_decoders(raw: bytes) -> None:
    assert_survives(decode_grant, raw, FAST)
    assert_survives(decode_record, raw, FAST)
    unverified = assert_survives(lambda r: decode_record(r, FAST, verify=False), raw)
    if unverified is not None:
        # the relay's path (§11.7.2): structure first, the signature later
        assert_survives(verify_record, unverified)
        assert unverified.raw == raw


@_settings(FAST_N)
@given(soft_state_inputs)
def test_fuzz_record_and_grant_decoders(raw: bytes) -> None:
    check_soft_state_decoders(raw)


@pytest.mark.slow
@_settings(SLOW_N)
@given(soft_state_inputs)
def test_fuzz_record_and_grant_decoders_slow(raw: bytes) -> None:
    check_soft_state_decoders(raw)


def test_the_soft_state_corpus_is_valid() -> None:
    records, grants = SOFT_STATE[:3], SOFT_STATE[3:]
    assert [decode_record(r, FAST).version for r in records] == [1, 2, 2]
    assert [decode_grant(g, FAST).version for g in grants] == [1, 2, 2]


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
    if any(isinstance(o, ChannelMisbehaved) for o in outputs):
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


# Mailbox tokens (PROTOCOL.md §15.16): the request decoder, token batches
# (content kind 48) and invites that carry tokens (§4.7 version 2)


def _token_corpus() -> list[bytes]:
    batch = TokenBatch(MB_KEYS.sign_public, MB_IDENTITY.public, MB_TOKENS)
    return [encode_content(batch)[1], *MB_FRAMES]


TOKEN_CORPUS = _token_corpus()
INVITE_TEXT = Invite(
    FAST.network_id, HISTORY.account, "bob", ("/ip4/192.0.2.1/tcp/1",),
    for_invite([TokenBatch(MB_KEYS.sign_public, MB_IDENTITY.public, MB_TOKENS[:2])]),
).to_text()  # fmt: skip
token_inputs = st.one_of(
    st.binary(max_size=600), mutated(TOKEN_CORPUS), st.sampled_from(TOKEN_CORPUS)
)


def check_token_decoders(data: bytes, text: str) -> None:
    assert_survives(decode_request, data)
    content = assert_survives(decode_content, 48, data)
    if content is not None:  # what decodes encodes to the same bytes
        assert encode_content(content) == (48, data)
    invite = assert_survives(Invite.parse, text, FAST)
    if invite is not None:
        assert_survives(from_invite, invite)


@_settings(FAST_N)
@given(token_inputs, st.one_of(mutated_text(INVITE_TEXT), st.just(INVITE_TEXT)))
def test_fuzz_token_decoders(data: bytes, text: str) -> None:
    check_token_decoders(data, text)


@pytest.mark.slow
@_settings(SLOW_N // 10)
@given(token_inputs, st.one_of(mutated_text(INVITE_TEXT), st.just(INVITE_TEXT)))
def test_fuzz_token_decoders_slow(data: bytes, text: str) -> None:
    check_token_decoders(data, text)
