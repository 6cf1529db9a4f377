"""The skipped-key bounds (PROTOCOL.md §19.5, §19.7, §19.8): a message whose
key the bound dropped is told apart from a true duplicate
(``session_key_gone``, never ``session_duplicate``), the lower bounds of a
stranger's session, and the marks of dropped keys in the stored state,
version 1 states included."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.core import errors
from protocol.core.canonical import decode_flat, encode_flat
from protocol.messaging import ratchet
from protocol.messaging.ratchet import (
    ALL_GONE,
    STRANGER_LIMITS,
    STRANGER_MAX_SKIP,
    STRANGER_MAX_SKIPPED,
    RatchetLimits,
    Session,
    decode_state,
    encode_state,
)
from protocol.messaging.session_errors import (
    DuplicateMessageError,
    SessionKeyGoneError,
    TooFarAheadError,
)

from .conftest import FAST, T0, hypothesis_settings
from .ratchet_support import Randomness, book_pair, start

SMALL = RatchetLimits(max_skip=8, max_skipped=4)


def _refused(session: Session, raw: bytes, error: type[Exception], limits: RatchetLimits) -> None:
    before = session.to_bytes()
    with pytest.raises(error):
        session.decrypt(raw, b"\x05" * 32, limits)
    assert session.to_bytes() == before


def test_a_dropped_key_is_gone_and_a_used_one_a_duplicate_on_the_current_chain() -> None:
    p = start()
    rand = Randomness("t")
    sent = [p.a.encrypt(b"m%d" % i) for i in range(8)]  # n = 1 .. 8 (0 was the set-up)
    assert p.b.decrypt(sent[6], rand(), SMALL) == b"m6"  # skips n 1 .. 6: 1 and 2 dropped
    assert len(p.b.state.skipped) == SMALL.max_skipped
    dh = ratchet.decode_message(sent[0]).header.dh
    assert p.b.state.gone == {dh: 3}
    for lost in sent[:2]:
        _refused(p.b, lost, SessionKeyGoneError, SMALL)
    assert p.b.decrypt(sent[2], rand(), SMALL) == b"m2"  # still held
    _refused(p.b, sent[2], DuplicateMessageError, SMALL)  # used: a true duplicate
    _refused(p.b, sent[6], DuplicateMessageError, SMALL)  # opened in order, above the mark
    assert p.b.decrypt(sent[7], rand(), SMALL) == b"m7"
    _refused(p.b, sent[7], DuplicateMessageError, SMALL)


def test_a_dropped_key_of_an_earlier_chain_is_gone() -> None:
    p = start()
    rand = Randomness("t")
    old = [p.a.encrypt(b"o%d" % i) for i in range(4)]
    assert p.b.decrypt(old[3], rand(), SMALL) == b"o3"  # n 1, 2, 3 skipped
    assert p.a.decrypt(p.b.encrypt(b"r"), rand(), SMALL) == b"r"
    new = [p.a.encrypt(b"n%d" % i) for i in range(4)]
    assert p.b.decrypt(new[3], rand(), SMALL) == b"n3"  # three more: 0 and 1 of old go
    old_dh = ratchet.decode_message(old[0]).header.dh
    assert old_dh in p.b.state.old_dhr and p.b.state.gone[old_dh] == 3
    for lost in old[:2]:
        _refused(p.b, lost, SessionKeyGoneError, SMALL)
    assert p.b.decrypt(old[2], rand(), SMALL) == b"o2"
    _refused(p.b, old[2], DuplicateMessageError, SMALL)
    _refused(p.b, old[3], DuplicateMessageError, SMALL)
    assert p.b.decrypt(new[0], rand(), SMALL) == b"n0"


def test_marks_are_kept_only_for_chains_a_message_can_be_matched_to() -> None:
    p = start()
    rand = Randomness("t")
    for turn in range(ratchet.MAX_OLD_CHAINS + 3):
        sent = [p.a.encrypt(b"x") for _ in range(6)]
        p.b.decrypt(sent[5], rand(), SMALL)
        p.a.decrypt(p.b.encrypt(b"r"), rand(), SMALL)
        chains = {*p.b.state.old_dhr, p.b.state.dhr}
        assert set(p.b.state.gone) <= chains, turn
        assert len(p.b.state.gone) <= ratchet.MAX_OLD_CHAINS + 1
    # and they survive the stored form
    assert decode_state(p.b.to_bytes()) == p.b.state


def test_a_key_dropped_from_a_chain_that_left_old_leaves_no_mark() -> None:
    """Skipped keys outlive their chain's place in ``OLD``; dropping one
    then must not mark a chain the state no longer knows (the stored form
    would be refused)."""
    p = start()
    rand = Randomness("t")
    first = [p.a.encrypt(b"f%d" % i) for i in range(3)]
    p.b.decrypt(first[2], rand(), SMALL)  # n 1 and 2 skipped
    for _ in range(ratchet.MAX_OLD_CHAINS + 1):  # the first chain leaves OLD
        p.a.decrypt(p.b.encrypt(b"r"), rand(), SMALL)
        p.b.decrypt(p.a.encrypt(b"x"), rand(), SMALL)
    first_dh = ratchet.decode_message(first[0]).header.dh
    assert first_dh not in p.b.state.old_dhr and len(p.b.state.skipped) == 2
    gap = [p.a.encrypt(b"g%d" % i) for i in range(4)]
    p.b.decrypt(gap[3], rand(), SMALL)  # three more on the current chain: one of first's goes
    assert len(p.b.state.skipped) == SMALL.max_skipped
    assert first_dh not in p.b.state.gone
    assert decode_state(p.b.to_bytes()) == p.b.state
    # its other key is still held and opens
    assert p.b.decrypt(first[1], rand(), SMALL) == b"f1"


def test_a_strangers_session_is_held_to_the_lower_bounds() -> None:
    p = start()
    rand = Randomness("t")
    sent = [p.a.encrypt(b"s%d" % i) for i in range(STRANGER_MAX_SKIP + 2)]
    _refused(p.b, sent[STRANGER_MAX_SKIP + 1], TooFarAheadError, STRANGER_LIMITS)
    assert p.b.decrypt(sent[STRANGER_MAX_SKIP], rand(), STRANGER_LIMITS)  # exactly the bound
    assert len(p.b.state.skipped) == STRANGER_MAX_SKIPPED
    # the same jump is fine for a contact (the caller's choice per message)
    q = start()
    more = [q.a.encrypt(b"c") for _ in range(STRANGER_MAX_SKIP + 50)]
    assert q.b.decrypt(more[-1], rand())
    assert len(q.b.state.skipped) == STRANGER_MAX_SKIP + 49


def test_a_stranger_becoming_a_contact_keeps_its_keys_and_a_contact_lapsing_sheds_them() -> None:
    p = start()
    rand = Randomness("t")
    sent = [p.a.encrypt(b"k%d" % i) for i in range(200)]
    assert p.b.decrypt(sent[100], rand())  # a contact: 100 skipped
    assert len(p.b.state.skipped) == 100
    assert p.b.decrypt(sent[101], rand(), STRANGER_LIMITS)  # no longer: trimmed to 32
    assert len(p.b.state.skipped) == STRANGER_MAX_SKIPPED
    _refused(p.b, sent[0], SessionKeyGoneError, STRANGER_LIMITS)
    assert p.b.decrypt(sent[99], rand(), STRANGER_LIMITS) == b"k99"


def test_the_set_up_of_a_stranger_is_bounded_too() -> None:
    a, b = book_pair()
    sid = a.start(b)
    for _ in range(STRANGER_MAX_SKIP + 1):
        a.send(sid, b"unsent")
    wire = a.send(sid, b"far")
    store = b.d.store
    with pytest.raises(TooFarAheadError):
        b.book.receive(
            FAST, b.d.party, b.d.keys.enc_secret, store, wire[0], a.d.party, wire[1],
            b.d.rand(), T0, STRANGER_LIMITS,
        )  # fmt: skip
    got = b.receive(a, wire)  # full bounds: a contact's set-up
    assert got.new_session and got.plaintext == b"far"


def _as_version_1(raw: bytes) -> bytes:
    v = decode_flat(raw, ratchet.MAX_STATE_BYTES)
    assert isinstance(v, list) and v[0] == 2 and len(v) == 15
    return encode_flat([1, *v[1:14]])


def test_a_version_1_state_is_read_with_every_unheld_key_possibly_gone() -> None:
    p = start()
    rand = Randomness("t")
    old = [p.a.encrypt(b"o%d" % i) for i in range(3)]
    p.b.decrypt(old[2], rand())
    p.a.decrypt(p.b.encrypt(b"r"), rand())
    new = [p.a.encrypt(b"n%d" % i) for i in range(3)]
    p.b.decrypt(new[1], rand())
    migrated = Session.from_bytes(_as_version_1(p.b.to_bytes()))
    old_dh = ratchet.decode_message(old[0]).header.dh
    new_dh = ratchet.decode_message(new[0]).header.dh
    assert migrated.state.gone == {old_dh: ALL_GONE, new_dh: 2}
    # it cannot tell a used key from a dropped one: never "already there"
    _refused(migrated, old[2], SessionKeyGoneError, ratchet.FULL_LIMITS)
    _refused(migrated, new[1], SessionKeyGoneError, ratchet.FULL_LIMITS)
    assert migrated.decrypt(old[0], rand()) == b"o0"  # held keys still open
    assert migrated.decrypt(new[2], rand()) == b"n2"
    assert migrated.to_bytes()[:1] != _as_version_1(p.b.to_bytes())[:1]  # written as v2


def test_bad_marks_are_refused() -> None:
    p = start()
    p.b.decrypt(p.a.encrypt(b"x"), b"\x01" * 32)
    v = decode_flat(p.b.to_bytes(), ratchet.MAX_STATE_BYTES)
    assert isinstance(v, list)
    dhr = p.b.state.dhr
    assert dhr is not None
    for marks in (
        [[b"\x09" * 32, 1]],  # a chain the state does not know
        [[dhr, ALL_GONE + 1]],
        [[dhr, 1], [dhr, 2]],  # not ascending
        [[dhr]],
        [[dhr, 1]] * (ratchet.MAX_OLD_CHAINS + 2),
        {},
    ):
        with pytest.raises(errors.SchemaError):
            decode_state(encode_flat([*v[:14], marks]))
    with pytest.raises(errors.SchemaError):
        decode_state(encode_flat([2, *v[1:14]]))  # version 2 needs its marks
    assert decode_state(encode_flat([*v[:14], [[dhr, 5]]])).gone == {dhr: 5}


@hypothesis_settings(100)
@given(st.binary(max_size=600))
def test_fuzz_decode_state(raw: bytes) -> None:
    try:
        state = decode_state(raw)
    except errors.InvalidInput:
        return
    assert decode_state(encode_state(state)) == state


@hypothesis_settings(100)
@given(st.lists(st.integers(0, 11), min_size=1, max_size=12, unique=True))
def test_every_refusal_of_an_unheld_key_is_gone_or_a_used_one(order: list[int]) -> None:
    """Whatever order messages arrive in under tight bounds: a message that
    opened is only ever a duplicate afterwards unless its mark says its key
    may be gone; one that never opened is never a duplicate."""
    p = start()
    rand = Randomness("h")
    sent = [p.a.encrypt(b"%d" % i) for i in range(12)]
    opened: set[int] = set()
    for i in order:
        try:
            assert p.b.decrypt(sent[i], rand(), SMALL) == b"%d" % i
            opened.add(i)
        except SessionKeyGoneError:
            pass
        except TooFarAheadError:
            pass
    for i in range(12):
        if i in opened:
            continue
        try:
            p.b.decrypt(sent[i], rand(), SMALL)
            opened.add(i)
        except DuplicateMessageError:
            raise AssertionError(f"message {i} never opened, yet a duplicate") from None
        except (SessionKeyGoneError, TooFarAheadError):
            pass


@hypothesis_settings(100)
@given(st.integers(0, 10_000), st.integers(1, 255))
def test_fuzz_decode_state_mutated(position: int, xor: int) -> None:
    p = start()
    p.b.decrypt(p.a.encrypt(b"x"), b"\x01" * 32, SMALL)
    raw = bytearray(p.b.to_bytes())
    raw[position % len(raw)] ^= xor
    try:
        state = decode_state(bytes(raw))
    except errors.InvalidInput:
        return
    assert decode_state(encode_state(state)) == state
