"""Replay state as values (PROTOCOL.md §15.6): one window per stream, a
bounded in-memory guard, and the per-envelope view over a store."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.core.canonical import encode_flat
from protocol.core.errors import InvalidInput, SchemaError
from protocol.messaging.content import (
    REPLAY_WINDOW,
    PendingReplay,
    ReplayError,
    ReplayGuard,
    ReplayKey,
    ReplayWindow,
)

from .conftest import hypothesis_settings


def key(i: int) -> ReplayKey:
    return (bytes([i]) * 32, bytes(32), bytes(32))


@hypothesis_settings(200)
@given(st.lists(st.integers(1, 10_000), max_size=60))
def test_a_window_round_trips_canonically(counters: list[int]) -> None:
    w = ReplayWindow()
    for c in counters:
        with contextlib.suppress(ReplayError):
            w = w.accepted(c)
        assert ReplayWindow.decode(w.encode()) == w
        assert len(w.encode()) <= 9 + 3 + REPLAY_WINDOW // 8


def test_window_decoding_refuses_what_it_never_writes() -> None:
    for bad in (
        encode_flat([5, b"\x00\x01"]),  # a leading zero byte: two encodings of one value
        encode_flat([5, b"\x01" + bytes(REPLAY_WINDOW // 8)]),  # wider than the window
        encode_flat([5]),
        encode_flat([-1, b""]),
        b"\x92\x05",
    ):
        with pytest.raises(InvalidInput):
            ReplayWindow.decode(bad)
    with pytest.raises(SchemaError):
        ReplayWindow.decode(encode_flat([3, b"\x08"]), window=3)  # bit 3 of a 3-bit window


def test_the_guard_keeps_at_most_max_streams_least_recently_used_out_first() -> None:
    guard = ReplayGuard(max_streams=3)
    for i in range(3):
        guard.accept(key(i), 1)
    guard.accept(key(0), 2)  # stream 0 is now the most recently used
    guard.accept(key(3), 1)  # a fourth stream: stream 1 goes
    assert guard.stream_count == 3
    assert list(guard.windows()) == [key(2), key(0), key(3)]
    # The cost of eviction (§15.6): an evicted stream's old counter passes
    # the guard again; the node's message table is what catches the copy.
    guard.accept(key(1), 1)
    assert guard.stream_count == 3 and key(2) not in guard.windows()
    with pytest.raises(ReplayError):
        guard.accept(key(0), 2)  # a stream still kept refuses as before


def test_a_refused_counter_leaves_the_guard_and_its_order_unchanged() -> None:
    guard = ReplayGuard(max_streams=2)
    guard.accept(key(0), 1)
    guard.accept(key(1), 1)
    with pytest.raises(ReplayError):
        guard.accept(key(0), 1)
    assert list(guard.windows()) == [key(0), key(1)]


def test_without_the_bound_the_guard_grows_with_every_stream() -> None:
    """The bound is what keeps memory flat: the same traffic with a large
    bound keeps every stream."""
    small, large = ReplayGuard(max_streams=10), ReplayGuard(max_streams=10_000)
    for i in range(200):
        k = (i.to_bytes(32, "big"), bytes(32), bytes(32))
        small.accept(k, 1)
        large.accept(k, 1)
    assert small.stream_count == 10
    assert large.stream_count == 200


def test_pending_replay_reads_one_window_and_changes_one() -> None:
    stored = {key(0): ReplayWindow().accepted(1).accepted(3)}
    reads: list[ReplayKey] = []

    def lookup(k: ReplayKey) -> ReplayWindow | None:
        reads.append(k)
        return stored.get(k)

    pending = PendingReplay(lookup)
    with pytest.raises(ReplayError):
        pending.accept(key(0), 3)
    assert pending.changes == {}  # a refusal changes nothing
    pending.accept(key(0), 2)
    assert pending.changes == {key(0): stored[key(0)].accepted(2)}
    assert reads == [key(0)] * 2 and pending.new == set()  # one read per accept
    pending = PendingReplay(lookup)
    pending.accept(key(1), 7)
    assert pending.new == {key(1)} and pending.changes[key(1)].highest == 7


@hypothesis_settings(200)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 60)), max_size=80))
def test_pending_replay_over_a_store_decides_as_the_guard_does(
    events: list[tuple[int, int]],
) -> None:
    guard = ReplayGuard(window=16)
    table: dict[ReplayKey, bytes] = {}
    for stream, counter in events:
        k = key(stream)
        pending = PendingReplay(
            lambda k: ReplayWindow.decode(table[k], 16) if k in table else None, window=16
        )
        try:
            guard.accept(k, counter)
            expected = True
        except ReplayError:
            expected = False
        try:
            pending.accept(k, counter)
            got = True
        except ReplayError:
            got = False
        assert got == expected
        for ck, w in pending.changes.items():
            table[ck] = w.encode()
    assert {k: ReplayWindow.decode(v, 16) for k, v in table.items()} == guard.windows()
