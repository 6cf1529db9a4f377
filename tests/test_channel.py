"""The per-link channel (protocol/links/channel.py, PROTOCOL.md §17.3).

Two machines joined by a fake link whose frames the test delivers, under a
fake clock; hostile peers are the test writing frames by hand; a
Hypothesis property runs honest pairs through any interleaving; and the
trio adapter (node/channel.py) runs over in-memory streams under trio's
MockClock, so nothing waits in real time.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from node.channel import ChannelLink
from node.transport import frame as length_prefixed
from protocol.core.canonical import encode_flat
from protocol.core.errors import (
    ChannelProtocolError,
    DecodeError,
    FlowControlError,
    InvalidInput,
    NonCanonicalError,
    SchemaError,
    SizeLimitError,
    UnsupportedVersionError,
    UsageError,
)
from protocol.core.machine import Now
from protocol.links.channel import (
    Acknowledged,
    Channel,
    ChannelConfig,
    CloseCode,
    Closed,
    Item,
    Misbehaved,
    Output,
    Queued,
    Received,
    Refusal,
    Refused,
    State,
)
from protocol.links.channel_wire import (
    ITEM_COST,
    MIN_FRAME_BYTES,
    MIN_WINDOW,
    AckFrame,
    CloseFrame,
    DataFrame,
    HelloFrame,
    PingFrame,
    encode_frame,
)

from .channel_support import (
    SMALL,
    Consumer,
    Pair,
    frames_of,
    only,
    opened,
    send_all,
    stream_pair,
    take,
)
from .conftest import hypothesis_settings

# -- framing, batching, order -------------------------------------------------------


def test_hello_first_then_items_share_a_frame_in_order() -> None:
    p = Pair()
    (hello,) = p.frames_to("b")
    assert hello == HelloFrame(1, SMALL.receive_window, SMALL.max_frame_bytes)
    assert [p.offer("a", bytes([i]) * 10, kind=i) for i in range(3)] == [
        Queued(s) for s in (1, 2, 3)
    ]
    # not sent before the peer's HELLO: its window is unknown
    p.tick_due()
    assert len(p.ends["b"].inbox) == 1
    p.deliver("a")
    (data,) = p.frames_to("b")[1:]
    assert data == DataFrame(1, tuple((i, bytes([i]) * 10) for i in range(3)))
    p.deliver("b")
    assert p.received("b") == [(i + 1, i, bytes([i]) * 10) for i in range(3)]


def test_offers_in_one_burst_go_in_one_frame_at_the_next_tick() -> None:
    p = opened(replace(SMALL, max_inflight_items=10))
    for i in range(3):
        p.offer("a", b"x" * i)
    assert p.a.next_deadline() == p.t  # due at once, not delayed
    p.tick_due()
    (data,) = p.frames_to("b")
    assert isinstance(data, DataFrame) and len(data.items) == 3
    # max_items_per_frame (3) splits a larger burst
    for _ in range(4):
        p.offer("a", b"y")
    p.tick_due()
    assert [len(f.items) for f in p.frames_to("b")] == [3, 3, 1]  # type: ignore[union-attr]


def test_frames_stay_within_the_peers_max_frame() -> None:
    big = ChannelConfig(max_inflight_bytes=8 * MIN_FRAME_BYTES)
    p = opened(big, ChannelConfig(receive_window=8 * MIN_FRAME_BYTES))
    for _ in range(3):
        p.offer("a", bytes(500_000))
    p.tick_due()
    assert [len(f.items) for f in p.frames_to("b")] == [2, 1]  # type: ignore[union-attr]
    assert all(len(raw) <= MIN_FRAME_BYTES for raw in p.ends["b"].inbox)
    p.settle()
    assert [s for s, _, _ in p.received("b")] == [1, 2, 3]


def test_both_directions_at_once() -> None:
    p = opened()
    for i in range(10):
        p.offer("a", b"a%d" % i)
        p.offer("b", b"b%d" % i)
        p.settle()
    assert [x for _, _, x in p.received("b")] == [b"a%d" % i for i in range(10)]
    assert [x for _, _, x in p.received("a")] == [b"b%d" % i for i in range(10)]
    assert p.acked("a") == p.acked("b") == list(range(1, 11))


# -- acknowledgements -------------------------------------------------------------------


def test_acks_wait_for_processed_and_are_coalesced() -> None:
    p = opened()
    for _ in range(3):
        p.offer("a", b"m")
    p.tick_due()
    p.deliver("b")
    assert p.b.next_deadline() != p.t and not p.ends["a"].inbox  # received is not processed
    for _ in range(3):
        assert frames_of(p.process("b")) == []
    assert p.b.next_deadline() == pytest.approx(p.t + SMALL.ack_delay)
    p.advance(SMALL.ack_delay)
    assert p.frames_to("a") == [AckFrame(3, SMALL.receive_window)]
    p.deliver("a")
    assert only(p.ends["a"].log, Acknowledged) == [Acknowledged(1, 3)]
    assert p.a.in_flight == (0, 0)


def test_ack_goes_at_once_when_half_the_window_waits() -> None:
    big = ChannelConfig(max_inflight_bytes=4 * MIN_WINDOW)
    p = opened(big, ChannelConfig())  # b grants the default window, 2 MiB
    half = p.b.config.receive_window // 2
    p.offer("a", bytes(half - ITEM_COST - 1))
    p.offer("a", bytes(10))
    p.tick_due()
    p.deliver("b")
    assert frames_of(p.process("b")) == []  # just under half
    (ack,) = frames_of(p.process("b"))  # now over: no delay
    assert ack == AckFrame(2, p.b.config.receive_window)


def test_processed_in_any_order_acks_the_processed_prefix() -> None:
    p = opened()
    for _ in range(3):
        p.offer("a", b"m")
    p.tick_due()
    p.deliver("b")
    p.process("b", 3)
    p.process("b", 2)
    p.advance(1.0)
    assert p.frames_to("a") == []  # item 1 holds the ack back
    p.process("b", 1)
    p.advance(1.0)
    p.deliver("a")
    assert p.acked("a") == [1, 2, 3]


def test_grant_raises_the_window_at_once() -> None:
    p = opened()
    out = p.b.grant(SMALL.receive_window + 1000, p.now())
    assert frames_of(out) == [AckFrame(0, SMALL.receive_window + 1000)]
    p.feed("b", out)
    p.deliver("a")
    assert p.a.peer_window == SMALL.receive_window + 1000
    assert p.b.grant(SMALL.receive_window + 1000, p.now()) == []
    with pytest.raises(UsageError):
        p.b.grant(SMALL.receive_window, p.now())


# -- flow control and back-pressure -------------------------------------------------------


def test_the_sender_never_exceeds_the_window_and_the_queue_pushes_back() -> None:
    sender = ChannelConfig(max_inflight_bytes=4 * MIN_WINDOW, max_queue_items=3)
    p = opened(sender, ChannelConfig())  # b grants the default window, 2 MiB
    window = p.a.peer_window
    size = window // 3  # two fit in the window, the third waits
    for _ in range(3):
        p.offer("a", bytes(size))
    p.tick_due()
    assert p.a.in_flight == (2, 2 * (size + ITEM_COST)) and p.a.queued == (1, size)
    for _ in range(2):
        assert isinstance(p.offer("a", b"small"), Queued)
    assert p.offer("a", b"one too many") == Refused(Refusal.QUEUE_FULL)
    assert not p.a.has_room()
    p.tick_due()
    assert p.a.in_flight[1] <= window
    # the receiver processes; its ACK opens the window for the rest
    p.deliver("b")
    p.process("b")
    p.advance(SMALL.ack_delay)
    p.deliver("a")
    assert p.acked("a") == [1] and p.a.queued == (0, 0) and p.a.in_flight[0] == 4
    p.settle()
    assert p.acked("a") == [1, 2, 3, 4, 5]
    assert not only(p.ends["b"].log, Misbehaved)


def test_the_senders_own_caps_bound_what_it_keeps() -> None:
    p = opened()
    for _ in range(6):
        p.offer("a", b"m")
    p.tick_due()
    assert p.a.in_flight[0] == SMALL.max_inflight_items and p.a.queued == (1, 1)
    # the queue's byte bound: 1 + 3 * 3000 fit in 12,000, one more does not
    for _ in range(3):
        assert isinstance(p.offer("a", bytes(3000)), Queued)
    assert p.offer("a", bytes(3000)) == Refused(Refusal.QUEUE_FULL)
    assert p.a.has_room(2999) and not p.a.has_room(3000)


# -- a peer that never reads, or falls silent ------------------------------------------------


def test_a_peer_that_never_processes_is_closed_after_the_stall_timeout() -> None:
    p = opened()
    for i in range(6):
        p.offer("a", b"m%d" % i)
    p.tick_due()
    p.deliver("b")  # b reads but never processes; it keeps sending PINGs
    for _ in range(7):
        p.advance(SMALL.stall_timeout / 6 - 0.01)
        p.deliver("a")
        p.deliver("b")
    assert p.a.state is State.CLOSED
    closed = p.closed("a")
    assert closed.code is CloseCode.STALLED and not closed.by_peer and closed.error is None
    assert [i.seq for i in closed.unacknowledged] == list(range(1, 7))  # in flight and queued
    assert closed.unacknowledged[0] == Item(1, 1, b"m0")
    assert p.a.unacknowledged() == closed.unacknowledged
    theirs = p.closed("b")
    assert theirs.code is CloseCode.STALLED and theirs.by_peer


def test_ack_progress_resets_the_stall_timer() -> None:
    p = opened()
    for _ in range(5):
        p.offer("a", b"m")
    p.tick_due()
    p.deliver("b")
    for _ in range(5):  # one item per 20 s: slow, but progress
        p.advance(20.0)
        p.process("b")
        p.advance(SMALL.ack_delay)
        p.deliver("a")
        p.deliver("b")
    assert p.a.state is State.OPEN and p.acked("a") == [1, 2, 3, 4, 5]


def test_no_hello_or_silence_is_a_timeout() -> None:
    p = Pair()
    p.advance(SMALL.hello_timeout)
    assert p.closed("a").code is CloseCode.TIMEOUT and "HELLO" in p.closed("a").reason
    q = opened()
    q.advance(SMALL.idle_timeout)  # nothing delivered: each hears nothing
    assert q.closed("a").code is CloseCode.TIMEOUT and "nothing received" in q.closed("a").reason


def test_keepalive_pings_keep_an_idle_link_open() -> None:
    p = opened()
    for _ in range(10):
        p.advance(SMALL.keepalive_interval)
        assert p.frames_to("b") == [PingFrame()]
        p.deliver("a")
        p.deliver("b")
    assert p.a.state is State.OPEN and p.b.state is State.OPEN
    assert p.a.stats.pings_sent == 10
    # anything sent counts: a busy link sends no PING
    p.advance(SMALL.keepalive_interval - 1)
    p.offer("a", b"m")
    p.tick_due()
    p.advance(1)
    assert [type(f) for f in p.frames_to("b")] == [DataFrame]


# -- hostile peers ----------------------------------------------------------------------------

HELLO = encode_frame(HelloFrame(1, MIN_WINDOW, MIN_FRAME_BYTES))


def victim(hello: bool = True) -> Channel:
    ch = Channel(SMALL)
    ch.start(Now.virtual(0))
    if hello:
        ch.receive(HELLO, Now.virtual(0))
    return ch


def assert_closed_for(ch: Channel, outputs: list[Output], error: type[InvalidInput]) -> None:
    (bad,) = only(outputs, Misbehaved)
    assert type(bad.error) is error, bad.error
    (close,) = [f for f in frames_of(outputs) if isinstance(f, CloseFrame)]
    assert close.code is CloseCode.PROTOCOL and close.reason.startswith(error.code)
    (closed,) = only(outputs, Closed)
    assert closed.code is CloseCode.PROTOCOL and closed.error is bad.error and not closed.by_peer
    assert ch.state is State.CLOSED and ch.next_deadline() is None
    assert ch.receive(HELLO, Now.virtual(1)) == []  # nothing more is read


def data(first: int, *payloads: bytes) -> bytes:
    return encode_frame(DataFrame(first, tuple((1, p) for p in payloads)))


@pytest.mark.parametrize(
    ("hello", "raw", "error"),
    [
        (False, data(1, b"x"), ChannelProtocolError),  # DATA before HELLO
        (False, encode_frame(PingFrame()), ChannelProtocolError),
        (True, HELLO, ChannelProtocolError),  # a second HELLO
        (True, data(2, b"x"), ChannelProtocolError),  # a gap
        (True, encode_frame(AckFrame(1, MIN_WINDOW)), ChannelProtocolError),  # never sent
        (True, encode_frame(AckFrame(0, MIN_WINDOW)), ChannelProtocolError),  # changes nothing
        (True, encode_frame(AckFrame(0, MIN_WINDOW - 1)), SchemaError),
        (True, b"\xc1garbage", DecodeError),
        (True, b"\x91\x04\x00", NonCanonicalError),  # trailing byte
        (True, encode_flat([4, 0]), SchemaError),
        (True, encode_flat([9]), SchemaError),
        (True, encode_flat([1, 0, MIN_WINDOW, MIN_FRAME_BYTES]), UnsupportedVersionError),
        (True, bytes(SMALL.max_frame_bytes + 1), SizeLimitError),
    ],
)
def test_invalid_input_closes_with_a_typed_error(
    hello: bool, raw: bytes, error: type[InvalidInput]
) -> None:
    ch = victim(hello)
    assert_closed_for(ch, ch.receive(raw, Now.virtual(1)), error)


def test_a_replayed_data_frame_is_a_sequence_error() -> None:
    ch = victim()
    assert only(ch.receive(data(1, b"x"), Now.virtual(1)), Received)
    assert_closed_for(ch, ch.receive(data(1, b"x"), Now.virtual(1)), ChannelProtocolError)


def test_sending_beyond_the_window_is_a_flow_control_error() -> None:
    ch = victim()
    chunk = bytes(SMALL.receive_window // 3)
    for seq in (1, 2):
        assert only(ch.receive(data(seq, chunk), Now.virtual(1)), Received)
    # processed but not yet acknowledged still counts: the ACK was not sent
    ch.processed(1, Now.virtual(1))
    assert_closed_for(ch, ch.receive(data(3, chunk), Now.virtual(1)), FlowControlError)


def test_once_acknowledged_the_window_opens_again() -> None:
    ch = victim()
    chunk = bytes(SMALL.receive_window // 3)
    for seq in (1, 2):
        ch.receive(data(seq, chunk), Now.virtual(1))
    ch.processed(1, Now.virtual(1))
    assert frames_of(ch.tick(Now.virtual(2))) == [AckFrame(1, SMALL.receive_window)]
    assert only(ch.receive(data(3, chunk), Now.virtual(2)), Received)


def test_acks_that_go_backwards_or_shrink_the_window() -> None:
    p = opened()
    p.offer("a", b"m")
    p.tick_due()
    ch, w = p.a, p.a.peer_window
    assert only(ch.receive(encode_frame(AckFrame(1, w + 5)), p.now()), Acknowledged)
    assert_closed_for(ch, ch.receive(encode_frame(AckFrame(1, w)), p.now()), FlowControlError)
    q = opened()
    q.offer("a", b"m")
    q.offer("a", b"m")
    q.tick_due()
    q.a.receive(encode_frame(AckFrame(2, w)), q.now())
    backwards = q.a.receive(encode_frame(AckFrame(1, w + 1)), q.now())
    assert_closed_for(q.a, backwards, ChannelProtocolError)


def test_an_oversized_length_prefix_reported_by_the_adapter() -> None:
    ch = victim()
    assert_closed_for(
        ch, ch.reject(SizeLimitError("frame too long"), Now.virtual(1)), SizeLimitError
    )


def test_a_newer_version_in_hello_speaks_ours() -> None:
    ch = victim(hello=False)
    ch.receive(encode_frame(HelloFrame(7, MIN_WINDOW, MIN_FRAME_BYTES)), Now.virtual(0))
    assert ch.version == 1 and ch.state is State.OPEN


# -- closing ------------------------------------------------------------------------------------


def test_close_sends_the_last_ack_then_close_and_reports_what_is_unacknowledged() -> None:
    p = opened()
    p.offer("b", b"to a")
    p.tick_due()
    p.deliver("a")
    p.process("a")  # its ACK is still delayed
    p.offer("a", b"unsent")
    out = p.feed("a", p.a.close(p.now(), "bye\n"))
    assert frames_of(out) == [
        AckFrame(1, SMALL.receive_window),
        CloseFrame(CloseCode.NORMAL, "bye?"),
    ]
    closed = p.closed("a")
    assert closed == Closed(CloseCode.NORMAL, "bye?", False, None, (Item(1, 1, b"unsent"),))
    p.deliver("b")
    assert p.acked("b") == [1]
    assert p.closed("b") == Closed(CloseCode.NORMAL, "bye?", True, None, ())
    # after a close everything is quiet, and nothing raises
    for ch in (p.a, p.b):
        assert ch.offer(1, b"late", p.now()) == [Refused(Refusal.CLOSED)]
        assert ch.tick(p.now()) == [] and ch.next_deadline() is None
        assert ch.close(p.now()) == [] and ch.connection_lost(p.now()) == []
        assert ch.receive(b"junk", p.now()) == []
        assert not ch.has_room()
    assert p.a.processed(99, p.now()) == []


def test_before_start_offers_wait_grants_go_in_hello_and_close_sends_nothing() -> None:
    ch = Channel(SMALL)
    assert ch.offer(1, b"early", Now.virtual(0)) == [Queued(1)]
    assert ch.grant(SMALL.receive_window + 1, Now.virtual(0)) == []
    assert frames_of(ch.start(Now.virtual(0))) == [
        HelloFrame(1, SMALL.receive_window + 1, SMALL.max_frame_bytes)
    ]
    # the peer's HELLO opens the window: what waited goes at once
    assert frames_of(ch.receive(HELLO, Now.virtual(0))) == [DataFrame(1, ((1, b"early"),))]
    never = Channel(SMALL)
    never.offer(1, b"x", Now.virtual(0))
    (closed,) = never.close(Now.virtual(0))
    assert closed == Closed(CloseCode.NORMAL, "", False, None, (Item(1, 1, b"x"),))


def test_a_lost_stream_reports_everything_unacknowledged() -> None:
    p = opened()
    p.offer("a", b"one")
    p.tick_due()
    p.offer("a", b"two")
    (closed,) = p.a.connection_lost(p.now(), "reset")
    assert closed == Closed(None, "reset", True, None, (Item(1, 1, b"one"), Item(2, 1, b"two")))


# -- local misuse ---------------------------------------------------------------------------------


def test_local_misuse_raises_usage_error() -> None:
    ch = Channel(SMALL)
    for early in (
        lambda: ch.processed(1, Now.virtual(0)),
        lambda: ch.receive(HELLO, Now.virtual(0)),
    ):
        with pytest.raises(UsageError):
            early()  # not started: nothing can have been received
    assert ch.tick(Now.virtual(0)) == [] and ch.next_deadline() is None
    ch.start(Now.virtual(0))
    with pytest.raises(UsageError):
        ch.start(Now.virtual(0))
    for kind, payload in [(-1, b""), (1 << 16, b""), (True, b""), (1, "text"), (1, bytes(3001))]:
        with pytest.raises(UsageError):
            ch.offer(kind, payload, Now.virtual(0))  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        ch.processed(1, Now.virtual(0))  # never received
    ch.receive(HELLO, Now.virtual(0))
    ch.receive(data(1, b"x"), Now.virtual(0))
    ch.processed(1, Now.virtual(0))
    with pytest.raises(UsageError):
        ch.processed(1, Now.virtual(0))  # twice
    for bad in [
        {"receive_window": MIN_WINDOW - 1},
        {"max_frame_bytes": MIN_FRAME_BYTES - 1},
        {"max_items_per_frame": 0},
        {"max_item_bytes": 3000, "max_inflight_bytes": 3000},
        {"keepalive_interval": 60.0, "idle_timeout": 60.0},
    ]:
        with pytest.raises(UsageError):
            replace(SMALL, **bad)


# -- the property: exactly once, in order, acknowledged or reported --------------------------------

SIDES = st.sampled_from(["a", "b"])
OFFER = st.tuples(st.just("offer"), SIDES, st.sampled_from([0, 100, 2000, 3000, 3000]))
DELIVER = st.tuples(st.just("deliver"), SIDES, st.integers(1, 3))
PROCESS = st.tuples(st.just("process"), SIDES, st.integers(0, 10))
ADVANCE = st.tuples(st.just("advance"), st.sampled_from([0.001, 0.03, 1.0, 12.0, 31.0]), st.just(0))
GRANT = st.tuples(st.just("grant"), SIDES, st.integers(1, 5000))
#: weighted towards traffic, so that windows fill and stalls happen before
#: a close or a lost stream ends the story
ACTIONS = st.one_of(
    OFFER, OFFER, OFFER, DELIVER, DELIVER, DELIVER, PROCESS, PROCESS, ADVANCE, GRANT
)
#: most stories run to the end; some are cut short by a close or a lost stream
ENDINGS = st.one_of(
    st.just([]),
    st.just([]),
    st.lists(st.tuples(st.integers(0, 60), st.sampled_from(["close", "lose"]), SIDES), max_size=2),
)


#: the peer's window binds rather than the sender's own caps: items up to
#: 450,000 bytes against a window of MIN_WINDOW (two or three fit)
WIDE = ChannelConfig(
    receive_window=MIN_WINDOW,
    max_item_bytes=450_000,
    max_inflight_bytes=4 * MIN_WINDOW,
    max_queue_items=6,
    max_queue_bytes=1_800_000,
)


SIDES = (("a", "b"), ("b", "a"))


def run_story(
    actions: list[tuple[str, Any, int]],
    endings: list[tuple[int, str, str]],
    config: ChannelConfig,
    scale: int,
) -> dict[str, tuple[int, int]]:
    """Play the story, check every invariant on the way; per side, how many
    items it queued and how many the other side received."""
    actions = list(actions)
    for at, action, side in endings:
        actions.insert(at, (action, side, 0))
    p = opened(config, config)
    offered: dict[str, dict[int, bytes]] = {"a": {}, "b": {}}
    counter = 0
    for action, arg, n in actions:
        if action == "offer":
            counter += 1
            size = n * scale
            payload = (counter.to_bytes(4, "big") * 4)[:size] + bytes(max(0, size - 16))
            result = p.offer(arg, payload)
            if isinstance(result, Queued):
                offered[arg][result.seq] = payload
        elif action == "deliver":
            p.deliver(arg, n)
        elif action == "process":
            end = p.ends[arg]
            if end.pending and end.ch.state is not State.CLOSED:
                p.process(arg, end.pending[n % len(end.pending)])
        elif action == "advance":
            p.advance(arg)
        elif action == "grant":
            ch = p.ends[arg].ch
            if ch.state is not State.CLOSED:
                p.feed(arg, ch.grant(ch.receive_window + n * 1000, p.now()))
        elif action == "close":
            p.feed(arg, p.ends[arg].ch.close(p.now()))
        else:  # the stream dies: both ends learn it, frames in flight are lost
            for side, end in p.ends.items():
                end.inbox.clear()
                p.feed(side, end.ch.connection_lost(p.now()))
        for end in p.ends.values():
            count, cost = end.ch.in_flight
            assert cost <= min(end.ch.peer_window, end.ch.config.max_inflight_bytes)
            assert count <= end.ch.config.max_inflight_items
    p.settle()
    for side, other in SIDES:
        mine = offered[side]
        assert not only(p.ends[side].log, Misbehaved)
        # delivered exactly once, in order, as offered
        got = p.received(other)
        assert [s for s, _, _ in got] == list(range(1, len(got) + 1))
        assert all(mine[s] == payload for s, _, payload in got)
        # acknowledged only once processed, contiguously
        acks = only(p.ends[side].log, Acknowledged)
        assert [a.first for a in acks] == [1, *(a.last + 1 for a in acks)][: len(acks)]
        acked = p.acked(side)
        processed = {s for s, _, _ in got} - set(p.ends[other].pending)
        assert set(acked) <= processed
        closed = only(p.ends[side].log, Closed)
        if closed:
            (c,) = closed
            left = [i.seq for i in c.unacknowledged]
            assert sorted(acked + left) == sorted(mine) and not set(acked) & set(left)
            assert all(mine[i.seq] == i.payload for i in c.unacknowledged)
        else:
            assert acked == sorted(mine)
    return {side: (len(offered[side]), len(p.received(other))) for side, other in SIDES}


@pytest.mark.parametrize(("config", "scale"), [(SMALL, 1), (WIDE, 150)], ids=["small", "wide"])
@hypothesis_settings(300)
@given(actions=st.lists(ACTIONS, max_size=60), endings=ENDINGS)
def test_every_accepted_item_is_delivered_once_in_order_and_acknowledged_or_reported(
    config: ChannelConfig,
    scale: int,
    actions: list[tuple[str, Any, int]],
    endings: list[tuple[int, str, str]],
) -> None:
    counts = run_story(actions, endings, config, scale)
    # nothing arrives that was not queued, and nothing twice
    assert all(received <= queued for queued, received in counts.values())


# -- the trio adapter over in-memory streams ------------------------------------------------


async def test_adapter_items_flow_both_ways(autojump_clock: trio.testing.MockClock) -> None:
    sa, sb = stream_pair()
    a, b = ChannelLink(sa, SMALL, name="b"), ChannelLink(sb, SMALL, name="a")
    to_b = [b"a%d" % i + bytes(i * 100) for i in range(30)]
    to_a = [b"b%d" % i for i in range(30)]
    at_a, at_b = Consumer(a, 30, 30), Consumer(b, 30, 30)
    async with trio.open_nursery() as nursery:
        for task in (a.run, b.run, at_a.run, at_b.run):
            nursery.start_soon(task)
        nursery.start_soon(send_all, a, to_b)
        nursery.start_soon(send_all, b, to_a)
        await at_a.done.wait()
        await at_b.done.wait()
        a.close("done")
    assert at_b.got == to_b and at_a.got == to_a
    assert a.closed is not None and a.closed.code is CloseCode.NORMAL
    assert a.closed.unacknowledged == ()
    assert b.closed is not None and b.closed.by_peer and b.closed.code is CloseCode.NORMAL
    assert not sa.reset_called and not sb.reset_called


async def test_adapter_cuts_off_a_peer_that_never_reads(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Node A has two links: B sends its HELLO and then never reads; C is
    honest.  A's items to C flow while A's writes to B are stuck, and A
    cuts B off after the stall timeout plus the close grace."""
    to_b, b_end = stream_pair(capacity=2)
    to_c, c_end = stream_pair()
    ab = ChannelLink(to_b, SMALL, name="b", close_grace=1.0)
    ac, c = ChannelLink(to_c, SMALL, name="c"), ChannelLink(c_end, SMALL, name="a")
    await b_end.write(length_prefixed(HELLO))
    at_c = Consumer(c, 40)
    cut_off = trio.Event()
    result: list[Closed] = []

    async def run_ab() -> None:
        result.append(await ab.run())
        cut_off.set()

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for task in (run_ab, ac.run, c.run, at_c.run):
            nursery.start_soon(task)
        for _ in range(6):
            assert ab.offer(1, bytes(2000)) is not None
        nursery.start_soon(send_all, ac, [b"c%d" % i for i in range(40)])
        await at_c.done.wait()
        assert max(at_c.got_at) - start < SMALL.stall_timeout  # while B was stuck
        await cut_off.wait()
        assert trio.current_time() - start == pytest.approx(SMALL.stall_timeout + 1.0)
        assert ac.channel.state is State.OPEN  # untouched by B's stall
        ac.close()
    (closed,) = result
    assert closed.code is CloseCode.STALLED and len(closed.unacknowledged) == 6
    assert to_b.reset_called  # its writes were stuck: reset, not a clean close
    assert at_c.got == [b"c%d" % i for i in range(40)]


async def test_adapter_oversized_frame_and_end_of_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sa, sb = stream_pair()
    a = ChannelLink(sa, SMALL)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.run)
        await sb.write(length_prefixed(HELLO))
        await sb.write((SMALL.max_frame_bytes + 1).to_bytes(4, "big"))
        assert type((await take(a, Misbehaved)).error) is SizeLimitError
    assert a.closed is not None and a.closed.code is CloseCode.PROTOCOL
    sc, sd = stream_pair()
    c = ChannelLink(sc, SMALL)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(c.run)
        await sd.close()
        closed = await take(c, Closed)
    assert closed.code is None and closed.by_peer and math.isfinite(trio.current_time())
