"""Account-wide state synced among one account's devices (PROTOCOL.md
§15.16, protocol/messaging/sync.py)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.core.errors import SchemaError, SizeLimitError, UsageError
from protocol.messaging.sync import (
    MAX_SKEW_MS,
    Edit,
    HybridClock,
    LedgerView,
    Offer,
    SyncBook,
    SyncEdits,
    SyncForgedError,
    decode_edit,
    decode_edits,
    decode_sync_edits,
    make_edit,
)

from .conftest import FAST, T0, History, hypothesis_settings


def _edit(h: History, dev: str, heads: list[str], clock: int, key: str, value: object) -> Edit:
    return make_edit(
        FAST, h.keys[dev], h.account, [h.events[x].id for x in heads], (clock, 0), key, value
    )


def _bob() -> History:
    h = History()
    h.add("a1", "d0", "d1", ["g"])
    return h


def test_edits_round_trip_and_forgeries_are_refused() -> None:
    h = _bob()
    e = _edit(h, "d1", ["a1"], T0, "contact/aa", {"name": "alice"})
    assert decode_edit(e.encode(), FAST) == e
    batch = SyncEdits.of([e, e])
    assert decode_edits(decode_sync_edits(batch.to_wire()), FAST) == (e, e)
    forged = bytearray(e.encode())
    forged[-1] ^= 1
    with pytest.raises(SyncForgedError):
        decode_edit(bytes(forged), FAST)
    with pytest.raises(UsageError):  # a value no device would accept
        _edit(h, "d1", ["a1"], T0, "k", "x" * 2000)
    with pytest.raises(SizeLimitError):
        decode_edit(b"\x00" * 3000, FAST)
    with pytest.raises(SchemaError):
        decode_edit(b"\x91\x01", FAST)


def test_the_newest_edit_wins_and_log_height_comes_before_clocks() -> None:
    h = _bob()
    ledger = h.ledger()
    log = LedgerView(ledger, h.account)
    book = SyncBook(FAST, h.account)
    old = _edit(h, "d0", ["g"], T0 + 9_000, "contact/aa", {"name": "old"})
    new = _edit(h, "d1", ["a1"], T0 + 1, "contact/aa", {"name": "new"})
    assert book.offer(old, log, T0) is Offer.MERGED
    assert book.offer(new, log, T0) is Offer.MERGED
    # made later in the log: wins though its clock is behind
    assert book.winner("contact/aa", log) == new
    # a device's own older edit is stale
    older = _edit(h, "d1", ["g"], T0, "contact/aa", {"name": "older"})
    assert book.offer(older, log, T0) is Offer.STALE


def test_a_revoked_devices_unseen_edits_are_undone() -> None:
    """Rule 4's idea: what d1 did on a branch its revocation did not see is
    undone everywhere; what it did before stays, and the winner before it
    comes back."""
    h = _bob()
    h.profile("p1", "d1", "thief branch", ["a1"])  # d1 acts, unseen by rv
    h.revoke("rv", "d0", "d1", ["a1"])
    ledger = h.ledger()
    log = LedgerView(ledger, h.account)
    book = SyncBook(FAST, h.account)
    mine = _edit(h, "d0", ["a1"], T0 + 10, "block/aa", False)
    before = _edit(h, "d1", ["a1"], T0 + 20, "contact/bb", {"name": "met before"})
    unseen = _edit(h, "d1", ["p1"], T0 + 30, "block/aa", True)
    for e in (mine, before, unseen):
        assert book.offer(e, log, T0) is Offer.MERGED
    assert book.winner("block/aa", log) == mine  # the thief's block is undone
    assert book.winner("contact/bb", log) == before  # made before: stays
    assert not book.valid(unseen, log) and book.valid(before, log)


def test_a_far_future_clock_wins_nothing_until_its_time() -> None:
    h = _bob()
    log = LedgerView(h.ledger(), h.account)
    book = SyncBook(FAST, h.account)
    now = T0 + 1_000
    honest = _edit(h, "d0", ["a1"], now, "contact/aa", {"name": "honest"})
    future = _edit(h, "d1", ["a1"], now + MAX_SKEW_MS + 1, "contact/aa", {"name": "future"})
    assert book.offer(honest, log, now) is Offer.MERGED
    assert book.offer(future, log, now) is Offer.WAITING_CLOCK
    assert book.winner("contact/aa", log) == honest
    assert book.retry(log, now) == []  # no time has passed
    assert book.retry(log, now + 2 * MAX_SKEW_MS) == [future]  # its time has come


def test_an_edit_at_heads_not_here_yet_waits_for_them() -> None:
    h = _bob()
    ledger = h.ledger(["g"])
    log = LedgerView(ledger, h.account)
    book = SyncBook(FAST, h.account)
    e = _edit(h, "d1", ["a1"], T0, "read/aa", 5)
    assert book.offer(e, log, T0) is Offer.WAITING_LOG
    ledger.ingest(h.events["a1"].raw)
    assert book.retry(log, T0) == [e]


def test_edits_for_another_account_are_refused() -> None:
    h, other = _bob(), History(name="eve")
    book = SyncBook(FAST, other.account)
    e = _edit(h, "d0", ["g"], T0, "k", 1)
    with pytest.raises(SyncForgedError):
        book.offer(e, LedgerView(h.ledger(), h.account), T0)


def test_the_hybrid_clock_never_runs_behind_and_ignores_the_far_future() -> None:
    c = HybridClock()
    assert c.next(100) == (100, 0) and c.next(100) == (100, 1) and c.next(50) == (100, 2)
    c.observe((200, 5), 150)
    assert c.next(150) == (200, 6)
    c.observe((10**13, 0), 150)  # far ahead: not adopted
    assert c.next(150) == (200, 7)


@hypothesis_settings(60)
@given(st.randoms(use_true_random=False))
def test_any_delivery_order_gives_the_same_winners(rnd: random.Random) -> None:
    """S3 for sync: the same edits in any order, on any device, merge to
    the same state."""
    h = _bob()
    h.add("a2", "d0", "d2", ["a1"])
    h.profile("p1", "d1", "branch", ["a1"])
    h.revoke("rv", "d0", "d1", ["a2"])
    labels = ["g", "a1", "a2", "p1", "rv"]
    edits = [
        _edit(
            h,
            rnd.choice(["d0", "d1", "d2"]),
            [rnd.choice(labels)],
            T0 + rnd.randrange(50),
            f"k{rnd.randrange(4)}",
            rnd.randrange(100),
        )
        for _ in range(25)
    ]
    ledger = h.ledger()
    log = LedgerView(ledger, h.account)
    results = []
    for _ in range(3):
        order = edits[:]
        rnd.shuffle(order)
        book = SyncBook(FAST, h.account)
        for e in order:
            book.offer(e, log, T0)
        results.append({k: v.encode() for k, v in book.view(log).items()})
    assert results[0] == results[1] == results[2]


def test_edits_made_on_either_side_of_a_partition_merge_to_one_result() -> None:
    """Two devices edit apart (the same keys and others), each sees only its
    own side; after the heal both hold every edit and agree on every key."""
    h = _bob()
    log = LedgerView(h.ledger(), h.account)
    left = [
        _edit(h, "d0", ["a1"], T0 + 10, "contact/aa", {"name": "ann"}),
        _edit(h, "d0", ["a1"], T0 + 11, "block/bb", True),
        _edit(h, "d0", ["a1"], T0 + 12, "verified/aa/aa", True),
    ]
    right = [
        _edit(h, "d1", ["a1"], T0 + 20, "contact/aa", {"name": "anna"}),
        _edit(h, "d1", ["a1"], T0 + 5, "block/bb", False),
        _edit(h, "d1", ["a1"], T0 + 6, "contact/cc", {"name": "carl"}),
    ]
    books = []
    for mine, theirs in ((left, right), (right, left)):
        book = SyncBook(FAST, h.account)
        for e in mine:
            assert book.offer(e, log, T0) is Offer.MERGED
        books.append((book, theirs))
    assert books[0][0].view(log) != books[1][0].view(log)  # apart, they differ
    for book, theirs in books:
        for e in theirs:
            assert book.offer(e, log, T0) is Offer.MERGED
    (a, _), (b, _) = books
    assert a.view(log) == b.view(log)
    merged = {k: e.value for k, e in a.view(log).items()}
    assert merged == {
        "contact/aa": {"name": "anna"},  # the later clock at the same log height
        "block/bb": True,
        "verified/aa/aa": True,
        "contact/cc": {"name": "carl"},
    }
