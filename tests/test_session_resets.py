"""Signed session resets at the envelope level (PROTOCOL.md §19.15): what a
device learns from a wrap whose session it does not hold, the reset
content, which sessions a reset ends, the limiter, and the messages that
must never lead to a reset (replays, old messages)."""

from __future__ import annotations

import pytest

from protocol.core.canonical import encode_flat
from protocol.core.errors import InvalidInput, SchemaError, UsageError
from protocol.messaging.content import ContentKind, Text, decode_content, encode_content
from protocol.messaging.resets import (
    MAX_RESET_IDS,
    MAX_RESET_PEERS,
    RESET_INTERVAL_MS,
    KeyGoneError,
    LostSession,
    ResetLimiter,
    SessionNotHeldError,
    SessionReset,
    sessions_to_end,
)
from protocol.messaging.sessions import SessionBook

from .scheme2_support import Dev, World2


def _sid_with(dev: Dev, peer: Dev) -> bytes:
    (sid,) = [s for s, e in dev.book.entries.items() if e.peer.device == peer.keys.sign_public]
    return sid


def _established(w: World2) -> tuple[Dev, Dev]:
    """ad0 and bd0 with one confirmed session (a message each way)."""
    a0, b0 = w["ad0"], w["bd0"]
    b0.open(a0.send(w.b.account, Text("hello")).raw)
    a0.open(b0.send(w.a.account, Text("hi")).raw)
    return a0, b0


def test_the_reset_content_round_trips_and_its_decoder_refuses_bad_bodies() -> None:
    ids = tuple(bytes([i]) * 32 for i in range(1, 4))
    kind, body = encode_content(SessionReset(ids))
    assert kind == ContentKind.SESSION_RESET == 16
    assert body == encode_flat([list(ids)])
    assert decode_content(kind, body) == SessionReset(ids)
    too_many = [bytes([i]) * 32 for i in range(1, MAX_RESET_IDS + 2)]
    for bad in ([], [[]], [too_many], [[ids[1], ids[0]]], [[ids[0], ids[0]]], [[b"x" * 31]], 7):
        with pytest.raises(SchemaError):
            decode_content(16, encode_flat(bad))
    with pytest.raises(UsageError):  # a sender cannot seal one its receivers refuse
        encode_content(SessionReset(()))


def test_a_wrap_whose_session_is_not_held_names_the_session_and_its_claimed_sender() -> None:
    w = World2()
    a0, b0 = _established(w)
    env = a0.send(w.b.account, Text("lost"))  # a ratchet message now
    sid = _sid_with(a0, b0)
    b0.book = SessionBook()  # its state restored from before the session
    before = b0.snapshot()
    with pytest.raises(SessionNotHeldError) as info:
        b0.open(env.raw)
    assert info.value.code == "session_wrong"
    assert info.value.lost == LostSession(sid, (w.a.account, a0.keys.sign_public))
    assert b0.snapshot() == before  # refused, nothing recorded


def test_a_reset_from_the_sessions_peer_ends_exactly_its_sessions() -> None:
    w = World2()
    a0, b0 = _established(w)
    b1 = w["bd1"]
    b1.open(a0.send(w.b.account, Text("to all")).raw)
    mine, other = _sid_with(a0, b0), _sid_with(a0, b1)
    b0.book = SessionBook()  # lost: it sets up afresh to send the reset
    reset = b0.send(w.a.account, SessionReset(tuple(sorted((mine, other)))),
                    only_devices=[a0.keys.sign_public])  # fmt: skip
    opened = a0.open(reset.raw)
    assert opened.content == SessionReset(tuple(sorted((mine, other))))
    signer = (opened.sender_account, opened.sender_device)
    # bd1's session is not bd0's to end, even when bd0's signed reset names it
    assert sessions_to_end(a0.book.entries, signer, opened.content) == (mine,)
    # a reset from another device naming bd0's session ends nothing
    forged = b1.send(w.a.account, SessionReset((mine,)), only_devices=[a0.keys.sign_public])
    opened = a0.open(forged.raw)
    assert isinstance(opened.content, SessionReset)
    signer = (opened.sender_account, opened.sender_device)
    assert sessions_to_end(a0.book.entries, signer, opened.content) == ()
    # and the same reset again is refused before it could end anything
    before = a0.snapshot()
    with pytest.raises(InvalidInput):
        a0.open(reset.raw)
    assert a0.snapshot() == before


def test_replayed_prekey_messages_and_old_messages_never_ask_for_a_reset() -> None:
    w = World2()
    a0, b0 = w["ad0"], w["bd0"]
    first = a0.send(w.b.account, Text("set-up"))
    held = a0.send(w.b.account, Text("held back"))  # still a prekey message
    b0.open(first.raw)
    a0.open(b0.send(w.a.account, Text("hi")).raw)
    before = b0.snapshot()
    with pytest.raises(InvalidInput) as info:  # the session holds it: a duplicate
        b0.open(first.raw)
    assert not isinstance(info.value, SessionNotHeldError)
    assert b0.snapshot() == before
    # lost state: the replayed prekey message would set up again, and its
    # counter is refused; no reset is asked for and nothing changes
    guard_only = b0.book
    b0.book = SessionBook()
    before = b0.snapshot()
    with pytest.raises(InvalidInput) as info:
        b0.open(first.raw)
    assert not isinstance(info.value, SessionNotHeldError)
    assert b0.snapshot() == before
    b0.book = guard_only
    assert b0.open(held.raw).content == Text("held back")  # late, within bounds


def test_a_valid_old_message_beyond_the_skipped_keys_is_gone_not_a_duplicate() -> None:
    """Its key was dropped (more than ``MAX_SKIPPED`` keys after it): the
    session is held, so it is not ``SessionNotHeldError``; the refusal is
    ``session_key_gone`` naming the session and its peer (who may be asked
    to send it again, §19.15), never ``session_duplicate``."""
    from protocol.messaging.ratchet import MAX_SKIPPED

    w = World2(bob_devices=1, alice_devices=1)
    a0, b0 = _established(w)
    held = a0.send(w.b.account, Text("held back"))
    later = [a0.send(w.b.account, Text(f"m{i}")) for i in range(MAX_SKIPPED + 2)]
    b0.open(later[MAX_SKIPPED // 2 - 1].raw)  # skips held and the ones before
    b0.open(later[-1].raw)  # now more than MAX_SKIPPED keys skipped: held's goes
    before = b0.snapshot()
    with pytest.raises(InvalidInput) as info:
        b0.open(held.raw)
    assert not isinstance(info.value, SessionNotHeldError)
    assert isinstance(info.value, KeyGoneError) and info.value.code == "session_key_gone"
    assert info.value.lost.claimed_sender == (w.a.account, w.a.keys["d0"].sign_public)
    assert b0.snapshot() == before


def test_the_limiter_allows_one_reset_per_device_per_interval_in_a_bounded_table() -> None:
    a, b = (b"a" * 32, b"1" * 32), (b"a" * 32, b"2" * 32)
    lim = ResetLimiter()
    assert lim.allows(a, 1000)
    lim = lim.sent(a, 1000)
    assert not lim.allows(a, 1000 + RESET_INTERVAL_MS - 1)
    assert lim.allows(b, 1001)  # per device
    assert lim.allows(a, 1000 + RESET_INTERVAL_MS)
    assert lim.allows(a, 999)  # a clock set back does not silence it for ever
    for i in range(MAX_RESET_PEERS + 10):
        lim = lim.sent((b"x" * 32, i.to_bytes(32, "big")), 2000 + i)
    assert len(lim.last) == MAX_RESET_PEERS
    assert lim.allows(a, 1001)  # the oldest were forgotten
