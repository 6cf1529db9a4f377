"""The Double Ratchet and the X3DH set-up (PROTOCOL.md §19.4-§19.8):
messages both ways, out of order, lost within the bounds, refused beyond
them; every refusal leaves the session exactly as it was; forward secrecy
and post-compromise security as properties of the state."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.core import errors
from protocol.core.canonical import encode_flat
from protocol.messaging import ratchet, x3dh
from protocol.messaging.ratchet import MAX_SKIP, Session, decode_message
from protocol.messaging.session_errors import (
    DuplicateMessageError,
    IdentityMismatchError,
    SessionDecryptError,
    SessionError,
    SessionKeyGoneError,
    SessionUsageError,
    TooFarAheadError,
    WrongSessionError,
)

from .conftest import FAST, T0, hypothesis_settings
from .ratchet_support import Randomness, make_device, next_message_key, start


def _refused(session: Session, raw: bytes, error: type[Exception], fresh: bytes) -> None:
    """``raw`` is refused with ``error`` and the session is unchanged."""
    before = session.to_bytes()
    with pytest.raises(error):
        session.decrypt(raw, fresh)
    assert session.to_bytes() == before


def test_messages_both_ways_and_the_prekey_header_until_a_reply() -> None:
    p = start()
    rand = Randomness("t")
    m2 = p.a.encrypt(b"second")
    assert decode_message(m2).prekey is not None  # no reply yet
    assert p.b.decrypt(m2, rand()) == b"second"
    r1 = p.b.encrypt(b"reply")
    assert decode_message(r1).prekey is None
    assert p.a.decrypt(r1, rand()) == b"reply"
    m3 = p.a.encrypt(b"third")
    assert decode_message(m3).prekey is None  # the reply ended the set-up
    assert p.b.decrypt(m3, rand()) == b"third"
    # a new ratchet key each turn
    keys = {decode_message(m).header.dh for m in (m2, r1, m3)}
    assert len(keys) == 3


def test_set_up_without_a_one_time_prekey() -> None:
    p = start(opk_index=None)
    assert p.bob.store.spent == {}
    r = p.b.encrypt(b"hi")
    assert p.a.decrypt(r, b"\x01" * 32) == b"hi"


def test_out_of_order_within_and_across_chains() -> None:
    p = start()
    rand = Randomness("t")
    first = [p.a.encrypt(b"a%d" % i) for i in range(5)]
    for i in (3, 1, 4):
        assert p.b.decrypt(first[i], rand()) == b"a%d" % i
    assert len(p.b.state.skipped) == 2  # 0 and 2 wait
    assert p.a.decrypt(p.b.encrypt(b"r"), rand()) == b"r"
    later = [p.a.encrypt(b"c%d" % i) for i in range(3)]
    assert p.b.decrypt(later[2], rand()) == b"c2"
    # the old chain's messages still open, after the new chain began
    assert p.b.decrypt(first[0], rand()) == b"a0"
    assert p.b.decrypt(first[2], rand()) == b"a2"
    assert p.b.decrypt(later[0], rand()) == b"c0"
    assert p.b.decrypt(later[1], rand()) == b"c1"
    assert p.b.state.skipped == {}


def test_a_new_chain_keeps_the_unreceived_tail_of_the_previous_one() -> None:
    p = start()
    rand = Randomness("t")
    assert p.a.decrypt(p.b.encrypt(b"r"), rand()) == b"r"
    lost = [p.a.encrypt(b"x%d" % i) for i in range(3)]  # never arrive in time
    assert p.b.decrypt(lost[0], rand()) == b"x0"
    assert p.a.decrypt(p.b.encrypt(b"r2"), rand()) == b"r2"
    new = p.a.encrypt(b"new")
    assert decode_message(new).header.pn == 3
    assert p.b.decrypt(new, rand()) == b"new"
    assert len(p.b.state.skipped) == 2
    assert p.b.decrypt(lost[2], rand()) == b"x2"
    assert p.b.decrypt(lost[1], rand()) == b"x1"


def test_lost_messages_up_to_the_bound_are_skipped() -> None:
    p = start()
    sent = [p.a.encrypt(b"m%d" % i) for i in range(MAX_SKIP + 1)]
    # respond opened n = 0, so sent[i] is n = i + 1; n = MAX_SKIP + 1 is the
    # furthest Bob may jump: MAX_SKIP keys skipped, then the one used
    assert p.b.decrypt(sent[MAX_SKIP], b"\x02" * 32) == b"m%d" % MAX_SKIP
    assert len(p.b.state.skipped) == MAX_SKIP
    assert p.b.decrypt(sent[5], b"\x03" * 32) == b"m5"


def test_a_jump_beyond_the_bound_is_refused_without_state_change() -> None:
    p = start()
    sent = [p.a.encrypt(b"m%d" % i) for i in range(MAX_SKIP + 2)]
    _refused(p.b, sent[MAX_SKIP + 1], TooFarAheadError, b"\x02" * 32)
    assert p.b.decrypt(sent[1], b"\x02" * 32) == b"m1"  # nothing was lost


def test_a_new_chain_whose_tail_and_gap_exceed_the_bound_is_refused() -> None:
    p = start()
    rand = Randomness("t")
    assert p.a.decrypt(p.b.encrypt(b"r"), rand()) == b"r"
    tail = [p.a.encrypt(b"t") for _ in range(MAX_SKIP)]
    assert p.b.decrypt(tail[0], rand()) == b"t"
    assert p.a.decrypt(p.b.encrypt(b"r2"), rand()) == b"r2"
    new = [p.a.encrypt(b"n%d" % i) for i in range(3)]
    # tail: MAX_SKIP - 1 unreceived, plus n = 2 in the new chain
    _refused(p.b, new[2], TooFarAheadError, rand())
    assert p.b.decrypt(new[0], rand()) == b"n0"  # tail + 0 is within the bound


def test_the_oldest_skipped_keys_go_first_and_their_messages_are_told_gone() -> None:
    p = start()
    rand = Randomness("t")
    first = [p.a.encrypt(b"f%d" % i) for i in range(MAX_SKIP + 1)]
    p.b.decrypt(first[-1], rand())  # skips n = 1 .. MAX_SKIP
    assert len(p.b.state.skipped) == ratchet.MAX_SKIPPED
    p.a.decrypt(p.b.encrypt(b"r"), rand())
    second = [p.a.encrypt(b"s%d" % i) for i in range(11)]
    p.b.decrypt(second[10], rand())  # ten more skipped: the ten oldest go
    assert len(p.b.state.skipped) == ratchet.MAX_SKIPPED
    # dropped unused: not a duplicate, which its sender would count delivered
    for gone in first[:10]:
        _refused(p.b, gone, SessionKeyGoneError, rand())
    assert p.b.decrypt(first[10], rand()) == b"f10"
    assert p.b.decrypt(second[0], rand()) == b"s0"


def _flip(raw: bytes, index: int) -> bytes:
    return raw[:index] + bytes([raw[index] ^ 0x01]) + raw[index + 1 :]


def test_tampered_messages_are_refused_without_state_change() -> None:
    p = start()
    rand = Randomness("t")
    p.b.decrypt(p.a.encrypt(b"warm-up"), rand())
    raw = p.a.encrypt(b"secret text")
    m = decode_message(raw)
    for i in range(len(raw) - len(m.ciphertext), len(raw)):  # every ciphertext byte
        _refused(p.b, _flip(raw, i), SessionDecryptError, rand())
    h = m.header
    for header in (
        ratchet.Header(h.dh, h.pn, h.n + 1),  # another counter: another key
        ratchet.Header(h.dh, h.pn + 1, h.n),  # the AD covers pn
        ratchet.Header(p.a.state.dhs_public[:31] + b"\x00", h.pn, h.n),
    ):
        forged = ratchet.RatchetMessage(header, m.ciphertext, m.prekey).encode()
        _refused(p.b, forged, errors.InvalidInput, rand())
    truncated = ratchet.RatchetMessage(h, m.ciphertext[:-1], m.prekey).encode()
    _refused(p.b, truncated, SessionDecryptError, rand())
    assert p.b.decrypt(raw, rand()) == b"secret text"


def test_a_tampered_message_that_would_start_a_chain_changes_nothing() -> None:
    p = start()
    rand = Randomness("t")
    raw = p.b.encrypt(b"reply")
    _refused(p.a, _flip(raw, len(raw) - 1), SessionDecryptError, rand())
    assert p.a.state.pending is not None  # still sending prekey messages
    assert p.a.decrypt(raw, rand()) == b"reply"


def test_replays_are_refused_without_state_change() -> None:
    p = start()
    rand = Randomness("t")
    ms = [p.a.encrypt(b"m%d" % i) for i in range(3)]
    p.b.decrypt(ms[2], rand())
    _refused(p.b, ms[2], DuplicateMessageError, rand())
    p.b.decrypt(ms[0], rand())  # a skipped key, used once
    _refused(p.b, ms[0], DuplicateMessageError, rand())
    p.a.decrypt(p.b.encrypt(b"r"), rand())
    p.b.decrypt(p.a.encrypt(b"new chain"), rand())
    _refused(p.b, ms[2], DuplicateMessageError, rand())  # an earlier chain
    assert p.b.decrypt(ms[1], rand()) == b"m1"


def test_a_replayed_prekey_message_never_resets_anything() -> None:
    p = start()
    rand = Randomness("t")
    first = p.a.encrypt(b"again")  # a prekey message of the same set-up
    assert p.b.decrypt(first, rand()) == b"again"
    _refused(p.b, first, DuplicateMessageError, rand())
    # a different set-up's prekey message is not this session's
    other = x3dh.initiate(FAST, p.alice.party, p.alice.keys.enc_secret, p.bob.bundle(1), rand(64))
    _refused(p.b, other.encrypt(b"x"), WrongSessionError, rand())
    # and the session goes on as before, both ways: nothing was reset
    assert p.b.decrypt(p.a.encrypt(b"after"), rand()) == b"after"
    assert p.a.decrypt(p.b.encrypt(b"reply"), rand()) == b"reply"


def test_the_responder_checks_the_initiators_identity_key() -> None:
    alice, bob = make_device("alice"), make_device("bob")
    a = x3dh.initiate(FAST, alice.party, alice.keys.enc_secret, bob.bundle(0), alice.rand(64))
    m = decode_message(a.encrypt(b"hi"))
    stale = x3dh.Party(alice.party.account, alice.party.device, bob.keys.enc_public)
    _, spent = bob.store.take_one_time(m.prekey.opk_id or 0, T0)  # type: ignore[union-attr]
    for store in (bob.store, spent):  # the identity first, before the store is asked
        with pytest.raises(IdentityMismatchError):
            x3dh.respond_from_store(
                FAST, stale, bob.party, bob.keys.enc_secret, store, m, bob.rand(), T0
            )
    # another account's binding: the AD differs, nothing authenticates
    other = x3dh.Party(b"\x09" * 32, alice.party.device, alice.party.ik)
    with pytest.raises(SessionDecryptError):
        x3dh.respond_from_store(
            FAST, other, bob.party, bob.keys.enc_secret, bob.store, m, bob.rand(), T0
        )
    with pytest.raises(SessionUsageError):
        x3dh.initiate(FAST, alice.party, bob.keys.enc_secret, bob.bundle(0), alice.rand(64))


def test_forward_secrecy_the_current_state_opens_no_earlier_message() -> None:
    """Record every message and the key it went under; then give the
    attacker Bob's whole state (and long-term secrets): none of the
    recorded messages opens, and no recorded key is in or ahead of the
    state's chains."""
    p = start()
    rand = Randomness("t")
    recorded: list[tuple[bytes, bytes]] = []
    for turn in range(6):
        sender, receiver = (p.a, p.b) if turn % 2 == 0 else (p.b, p.a)
        for i in range(3):
            mk = next_message_key(sender)
            raw = sender.encrypt(b"turn %d/%d" % (turn, i))
            recorded.append((raw, mk))
            receiver.decrypt(raw, rand())
    stolen = p.b.to_bytes()
    for raw, _ in recorded:
        attacker = Session.from_bytes(stolen)
        with pytest.raises(SessionError):
            attacker.decrypt(raw, rand())
    state = Session.from_bytes(stolen).state
    for chain in (state.ckr, state.cks):
        assert chain is not None
        ck, ahead = chain, set()
        for _ in range(2 * MAX_SKIP):
            ck, mk = ratchet.kdf_ck(ck)
            ahead.add(mk)
        assert ahead.isdisjoint(mk for _, mk in recorded)
    for _, mk in recorded:
        assert mk not in stolen
    assert state.skipped == {}


def test_post_compromise_one_round_trip_locks_the_attacker_out() -> None:
    p = start()
    rand = Randomness("t")
    p.a.decrypt(p.b.encrypt(b"r0"), rand())
    stolen = p.b.to_bytes()  # the attacker copies Bob's state at T
    # the copy reads what Alice sends until Bob has sent under a fresh key
    before = p.a.encrypt(b"before")
    assert Session.from_bytes(stolen).decrypt(before, rand()) == b"before"
    p.b.decrypt(before, rand())
    # a round trip: Bob replies (fresh ratchet key), Alice answers
    p.a.decrypt(p.b.encrypt(b"r1"), rand())
    after = p.a.encrypt(b"after the round trip")
    assert p.b.decrypt(after, rand()) == b"after the round trip"
    with pytest.raises(SessionError):
        Session.from_bytes(stolen).decrypt(after, rand())


def test_state_encoding_round_trips_and_is_bounded() -> None:
    p = start()
    ms = [p.a.encrypt(b"x") for _ in range(20)]
    p.b.decrypt(ms[-1], b"\x05" * 32)
    for s in (p.a, p.b):
        raw = s.to_bytes()
        assert Session.from_bytes(raw).state == s.state
        assert Session.from_bytes(raw).to_bytes() == raw
    with pytest.raises(errors.SizeLimitError):
        Session.from_bytes(b"\x90" * (ratchet.MAX_STATE_BYTES + 1))
    with pytest.raises(errors.SchemaError):
        Session.from_bytes(encode_flat([2]))


def test_decoding_refuses_bad_messages_before_any_crypto() -> None:
    p = start()
    raw = p.b.encrypt(b"x")
    m = decode_message(raw)
    h = m.header
    with pytest.raises(errors.SizeLimitError):
        decode_message(b"\x00" * (ratchet.MAX_MESSAGE_BYTES + 1))
    with pytest.raises(errors.NonCanonicalError):
        decode_message(raw + b"\x00")
    with pytest.raises(errors.UnsupportedVersionError):
        decode_message(encode_flat([3, h.dh, h.pn, h.n, m.ciphertext]))
    with pytest.raises(errors.SchemaError):
        decode_message(encode_flat([1, h.dh, h.pn, 2**32, m.ciphertext]))
    with pytest.raises(errors.SchemaError):
        decode_message(encode_flat([1, h.dh, h.pn, True, m.ciphertext]))
    with pytest.raises(errors.SchemaError):
        decode_message(encode_flat([1, h.dh, h.pn, h.n, b"\x00" * 15]))
    with pytest.raises(errors.InvalidKeyError):
        decode_message(encode_flat([1, b"\x00" * 32, h.pn, h.n, m.ciphertext]))
    with pytest.raises(errors.SchemaError):
        decode_message(encode_flat([2, h.dh, h.dh, 1, [1, 2], h.dh, 0, 0, m.ciphertext]))
    with pytest.raises(SessionUsageError):
        p.a.encrypt(b"x" * (ratchet.MAX_PLAINTEXT + 1))
    with pytest.raises(SessionUsageError):
        p.a.decrypt(raw, b"short")


@hypothesis_settings(60)
@given(
    st.lists(st.tuples(st.booleans(), st.integers(1, 4)), min_size=1, max_size=8),
    st.randoms(use_true_random=False),
    st.floats(0, 0.3),
)
def test_any_delivery_order_opens_every_message_exactly_once(
    turns: list[tuple[bool, int]], rng: random.Random, dup_rate: float
) -> None:
    """Whatever order messages arrive in (both directions, with
    duplicates, restarts from the stored state between turns), every
    message opens once to its plaintext, a duplicate is refused with no
    state change, and both sides end in step."""
    p = start()
    rand = Randomness("h")
    inflight: list[tuple[bool, bytes, bytes]] = []  # (to_bob, raw, plaintext)
    opened: set[bytes] = set()
    for k, (from_alice, count) in enumerate(turns):
        s = p.a if from_alice else p.b
        if not from_alice and s.state.cks is None:
            continue
        for i in range(count):
            pt = b"%d/%d" % (k, i)
            inflight.append((from_alice, s.encrypt(pt), pt))
        # deliver a random part of what is in flight, in random order
        rng.shuffle(inflight)
        keep = rng.randint(0, len(inflight))
        if rng.random() < 0.5:  # a restart: both sides reload their stored state
            p.a, p.b = Session.from_bytes(p.a.to_bytes()), Session.from_bytes(p.b.to_bytes())
        for to_bob, raw, pt in inflight[keep:]:
            r = p.b if to_bob else p.a
            assert r.decrypt(raw, rand()) == pt
            opened.add(pt)
            if rng.random() < dup_rate:
                _refused(r, raw, DuplicateMessageError, rand())
        del inflight[keep:]
    for to_bob, raw, pt in inflight:
        assert (p.b if to_bob else p.a).decrypt(raw, rand()) == pt
        opened.add(pt)
    assert p.a.state.skipped == {} and p.b.state.skipped == {}
