"""A device's session book (PROTOCOL.md §19.11): messages find their
session by id, a repeated prekey message goes to its session, a message
for a session of another device is refused, simultaneous set-ups settle on
one session, and sessions end with their device."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.messaging import sessions
from protocol.messaging.session_errors import (
    PrekeyReusedError,
    SessionError,
    WrongSessionError,
)
from protocol.messaging.sessions import SessionBook

from .conftest import hypothesis_settings
from .ratchet_support import Side, book_pair, make_device


def test_a_conversation_through_the_books() -> None:
    a, b = book_pair()
    sid = a.start(b)
    got = b.receive(a, a.send(sid, b"hello"))
    assert (got.plaintext, got.new_session, got.session_id) == (b"hello", True, sid)
    again = b.receive(a, a.send(sid, b"still the set-up"))  # a prekey message again
    assert not again.new_session and b.book.sessions_of(a.d.party) == [sid]
    assert b.book.active(a.d.party) == sid
    assert a.receive(b, b.send(sid, b"reply")).plaintext == b"reply"
    assert b.receive(a, a.send(sid, b"after")).plaintext == b"after"


def test_refusals_change_no_book() -> None:
    a, b = book_pair()
    carol = Side(make_device("carol"))
    sid = a.start(b)
    first = a.send(sid, b"hello")
    b.receive(a, first)
    book, store = b.book, b.d.store
    with pytest.raises(WrongSessionError):  # alice's session, claimed by carol
        b.receive(carol, a.send(sid, b"x"))
    with pytest.raises(WrongSessionError):  # a ratchet message for no session
        b.receive(a, (b"\x01" * 32, b.book.encrypt(sid, b"x")[1]))
    with pytest.raises(WrongSessionError):  # a set-up under another id
        b.receive(a, (b"\x02" * 32, first[1]))
    b.book = SessionBook()  # bob lost his sessions: the replay finds its prekey spent
    with pytest.raises(PrekeyReusedError):
        b.receive(a, first)
    assert book.sessions_of(a.d.party) == [sid] and b.d.store == store


def test_simultaneous_set_ups_settle_on_one_session() -> None:
    a, b = book_pair()
    sa, sb = a.start(b, 0), b.start(a, 0)
    b.receive(a, a.send(sa, b"from alice"))
    a.receive(b, b.send(sb, b"from bob"))
    assert len(a.book.sessions_of(b.d.party)) == len(b.book.sessions_of(a.d.party)) == 2
    # each sends on its active session; once the exchange is sequential both agree
    for _ in range(3):
        sid = a.book.active(b.d.party)
        assert sid is not None
        b.receive(a, a.send(sid, b"a"))
        sid = b.book.active(a.d.party)
        assert sid is not None
        a.receive(b, b.send(sid, b"b"))
    assert a.book.active(b.d.party) == b.book.active(a.d.party)


def test_at_most_a_few_sessions_per_peer_and_they_end_with_the_device() -> None:
    a, b = book_pair()
    ids = []
    for opk in range(4):
        sid = a.start(b, opk)
        b.receive(a, a.send(sid, b"x"))
        ids.append(sid)
    late = a.send(ids[0], b"late")
    sid = a.start(b, None)
    got = b.receive(a, a.send(sid, b"fifth"))
    assert got.ended == (ids[0],)
    assert len(b.book.sessions_of(a.d.party)) == sessions.MAX_SESSIONS_PER_PEER
    assert a.book.sessions_of(b.d.party) == b.book.sessions_of(a.d.party)
    with pytest.raises(SessionError):  # the ended session's messages find nothing
        b.receive(a, late)
    assert b.book.end_peer(a.d.party).sessions_of(a.d.party) == []
    assert b.book.keep_only(lambda p: p.ik != a.d.party.ik).entries == {}


@hypothesis_settings(40)
@given(
    st.lists(
        st.tuples(st.sampled_from(["start", "send", "deliver"]), st.booleans(), st.integers(0, 50)),
        max_size=30,
    )
)
def test_any_interleaving_of_set_ups_and_deliveries(
    actions: list[tuple[str, bool, int]],
) -> None:
    """Both ends may start sessions at any time and messages arrive in any
    order: every message opens exactly once, and after one exchange in
    turn both ends send on the same session."""
    a, b = book_pair()
    starts = {True: 0, False: 0}
    inflight: list[tuple[bool, tuple[bytes, bytes], bytes]] = []
    sent = 0

    def deliver(i: int) -> None:
        from_a, wire, text = inflight.pop(i)
        receiver, sender = (b, a) if from_a else (a, b)
        assert receiver.receive(sender, wire).plaintext == text

    for action, from_a, n in actions:
        me, other = (a, b) if from_a else (b, a)
        if action == "start" and starts[from_a] < 2:
            me.start(other, starts[from_a])
            starts[from_a] += 1
        elif action == "send" and (sid := me.book.active(other.d.party)) is not None:
            sent += 1
            inflight.append((from_a, me.send(sid, b"%d" % sent), b"%d" % sent))
        elif action == "deliver" and inflight:
            deliver(n % len(inflight))
    while inflight:
        deliver(0)
    if a.book.active(b.d.party) is None:
        a.start(b, None)
    for _ in range(2):
        sid = a.book.active(b.d.party)
        assert sid is not None
        b.receive(a, a.send(sid, b"a"))
        sid = b.book.active(a.d.party)
        assert sid is not None
        a.receive(b, b.send(sid, b"b"))
    assert a.book.active(b.d.party) == b.book.active(a.d.party)
