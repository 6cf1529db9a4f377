"""Envelopes and their answers on the per-link channel (PROTOCOL.md
§15.14.1), node side, over in-memory streams and virtual time: two
``ChannelService`` ends with a ``ChannelDelivery`` each, and the one attempt
the outbox makes (``DirectDelivery``) on top.  The receiver's ``admit``
stands for ``MessageService.admit``: it stores an envelope once and answers
a repeat ``replay``, as the replay guard does (the real path is tested on
real nodes in tests/test_node_channel_messages.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import pytest
import trio
import trio.testing

from node.channels import ChannelService
from node.context import NodeContext
from node.errors import PeerUnreachable
from node.services.channel_delivery import (
    GATE_REFUSED,
    LOST,
    NO_CHANNEL,
    ChannelDelivery,
)
from node.services.direct import DirectDelivery
from node.services.outbox_policy import DELIVERY_TIMEOUT
from node.transport import frame as length_prefixed
from protocol.core.errors import InvalidInput
from protocol.links.channel import CloseCode
from protocol.links.channel_wire import HelloFrame, encode_frame
from protocol.messaging.channel_delivery import DELIVERY, DELIVERY_ANSWER, encode_channel_answer
from protocol.messaging.content import ReplayError
from protocol.messaging.envelope import DeliveryRefused, RequestsFullError

from .channel_support import SMALL, stream_pair

DEVICE, ACCOUNT = b"d" * 32, b"a" * 32


class Receiver:
    """Stores each envelope once; a repeat is a replay; ``then`` runs after
    each store (to break the channel at a chosen point)."""

    def __init__(self, refuse: InvalidInput | None = None) -> None:
        self.stored: list[bytes] = []
        self.calls = 0
        self.refuse = refuse
        self.then: Any = lambda: None

    def admit(self, peer: str, envelope: bytes) -> InvalidInput | None:
        self.calls += 1
        if self.refuse is not None:
            return self.refuse
        if envelope in self.stored:
            return ReplayError("already accepted")
        self.stored.append(envelope)
        self.then()
        return None


@dataclass
class Record:
    peer_ids: tuple[str, ...] = ("B",)
    addrs: tuple[str, ...] = ()


@dataclass
class FakeNode:
    """What ``DirectDelivery`` asks of the node: a record, and streams
    (none can be opened here: only the channel carries anything)."""

    streams: int = 0
    records: Any = field(default=None)

    def __post_init__(self) -> None:
        self.records = self

    def get(self, account: bytes, device: bytes) -> Record:
        return Record()

    async def open_stream(self, peer: str, addrs: Any, protocol: str) -> Any:
        self.streams += 1
        raise PeerUnreachable("no streams in this test")


class Side:
    def __init__(self, receiver: Receiver, refusal: str | None = None) -> None:
        self.service = ChannelService(cast(Any, None), SMALL)
        self.receiver = receiver
        self.delivery = ChannelDelivery(self.service, receiver.admit, lambda peer: refusal)
        self.node = FakeNode()
        self.direct = DirectDelivery(cast(NodeContext, self.node), self._no_mailbox)
        self.direct.channel = self.delivery

    @staticmethod
    async def _no_mailbox(record: Any, device: bytes, envelope: bytes) -> bool:
        return False


async def link(nursery: trio.Nursery, a: Side, b: Side) -> None:
    """A channel between ``a`` (peer "B" to it) and ``b`` (peer "A"), open
    once both HELLOs are in."""
    sa, sb = stream_pair(capacity=64)
    nursery.start_soon(a.service._serve, "B", sa)
    nursery.start_soon(b.service._serve, "A", sb)
    while True:
        await trio.sleep(0.001)
        ab, ba = a.service.channel("B"), b.service.channel("A")
        if ab and ba and ab.channel.peer_window and ba.channel.peer_window:
            return


def envelopes(n: int) -> list[bytes]:
    return [b"envelope %d " % i + bytes(100) for i in range(n)]


async def attempt_all(side: Side, items: list[bytes]) -> list[str | None]:
    results: list[str | None] = [None] * len(items)

    async def one(i: int) -> None:
        results[i] = await side.direct.attempt(DEVICE, ACCOUNT, items[i])

    async with trio.open_nursery() as nursery:
        for i in range(len(items)):
            nursery.start_soon(one, i)
    return results


async def test_envelopes_go_on_the_channel_share_frames_and_are_answered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a, b = Side(Receiver()), Side(Receiver())
    items = envelopes(12)
    async with trio.open_nursery() as nursery:
        await link(nursery, a, b)
        channel = a.service.channel("B")
        assert channel is not None
        frames_before = channel.channel.stats.frames_sent
        assert await attempt_all(a, items) == [None] * 12  # all stored: delivered
        data_frames = channel.channel.stats.frames_sent - frames_before
        nursery.cancel_scope.cancel()
    assert sorted(b.receiver.stored) == sorted(items)  # once each
    assert a.node.streams == 0  # no stream was needed
    # 12 items at most 3 to a frame (SMALL), plus ACKs for B's answers
    assert channel.channel.stats.items_sent == 12 and data_frames <= 4 + 3
    assert a.delivery.status()["answered"] == 12 and b.delivery.status()["received"] == 12


async def test_a_refusal_comes_back_typed_and_the_gate_is_asked_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a, b = Side(Receiver()), Side(Receiver(RequestsFullError("too many requests")))
    async with trio.open_nursery() as nursery:
        await link(nursery, a, b)
        (error,) = await attempt_all(a, envelopes(1))
        nursery.cancel_scope.cancel()
    assert error == "requests_full: too many requests"  # what the stream answers
    banned_receiver = Receiver()
    a, b = Side(Receiver()), Side(banned_receiver, refusal="banned")
    async with trio.open_nursery() as nursery:
        await link(nursery, a, b)
        (error,) = await attempt_all(a, envelopes(1))
        nursery.cancel_scope.cancel()
    # a refused peer: as if the gate had reset its stream; nothing opened
    assert error == f"unreachable: {GATE_REFUSED} (banned)"
    assert banned_receiver.calls == 0


async def test_a_channel_lost_mid_batch_leaves_the_rest_owed_and_a_retry_stores_each_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """B breaks its channel right after storing the 4th envelope, before
    answering it: A gets answers for at most the first 3, the others are
    owed (A tried a stream, which cannot be opened here).  On the next
    channel the outbox's retries are stored once; those stored already are
    answered ``replay``, which counts as delivered."""
    receiver = Receiver()
    a, b = Side(Receiver()), Side(receiver)
    items = envelopes(10)

    def break_after_fourth() -> None:
        if len(receiver.stored) == 4:
            channel = b.service.channel("A")
            assert channel is not None
            channel.close("breaks mid-batch")

    receiver.then = break_after_fourth
    async with trio.open_nursery() as nursery:
        await link(nursery, a, b)
        first = await attempt_all(a, items)
        assert a.service.channel("B") is None and b.service.channel("A") is None
        owed = [items[i] for i, error in enumerate(first) if error is not None]
        stored_first = list(receiver.stored)
        # (items that came in the same frame as the 4th are stored too)
        assert 4 <= len(stored_first) < 10 and len(owed) >= 7
        assert stored_first[3] in owed  # stored, but its answer never went
        assert all(e == "unreachable: PeerUnreachable" for e in first if e is not None)
        assert a.node.streams == len(owed)  # each lost one tried a stream at once
        assert a.delivery.status()["lost"] >= 1
        receiver.then = lambda: None
        await link(nursery, a, b)
        assert await attempt_all(a, owed) == [None] * len(owed)
        nursery.cancel_scope.cancel()
    assert sorted(receiver.stored) == sorted(items)  # every one stored exactly once
    # those stored before the break whose answers were lost came twice:
    # the second time as a replay, stored nowhere
    assert receiver.calls == 10 + len(set(owed) & set(stored_first))


async def test_a_peer_that_never_reads_is_bounded_by_the_window_and_the_queue(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """B sends its HELLO and then reads nothing.  A's deliveries fill B's
    window and A's queue, the rest wait for room; each attempt ends within
    the delivery timeout as a stream that does not answer would, nothing is
    kept beyond the caps, and the channel is closed as STALLED."""
    a = Side(Receiver())
    sa, sb = stream_pair(capacity=2)
    await sb.write(length_prefixed(encode_frame(HelloFrame(1, SMALL.receive_window, 1 << 21))))
    peak = [0, 0]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.service._serve, "B", sa)
        await trio.sleep(0.01)
        channel = a.service.channel("B")
        assert channel is not None

        async def watch() -> None:
            while channel.closed is None:
                peak[0] = max(peak[0], channel.channel.queued[0])
                peak[1] = max(peak[1], channel.channel.in_flight[1])
                await trio.sleep(0.01)

        nursery.start_soon(watch)
        start = trio.current_time()
        errors = await attempt_all(a, [bytes(2000) + bytes([i]) for i in range(40)])
        assert trio.current_time() - start <= DELIVERY_TIMEOUT + 0.1
        assert set(errors) == {"unreachable: TooSlowError"}
        await trio.sleep(SMALL.stall_timeout + SMALL.hello_timeout)
        assert channel.closed is not None and channel.closed.code is CloseCode.STALLED
        nursery.cancel_scope.cancel()
    assert peak[0] <= SMALL.max_queue_items and peak[1] <= SMALL.max_inflight_bytes
    assert a.delivery.status()["busy"] >= 1 and a.delivery._waiting == {}


async def test_answers_that_name_nothing_or_do_not_decode_change_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    receiver = Receiver()
    a, b = Side(Receiver()), Side(receiver)
    async with trio.open_nursery() as nursery:
        await link(nursery, a, b)
        towards_a = b.service.channel("A")
        assert towards_a is not None
        # before any delivery: an answer to an item A never sent, a repeat
        # of it, garbage, and an answer naming an item of another kind
        for payload in (
            encode_channel_answer(1, None),
            encode_channel_answer(1, DeliveryRefused("replay", "")),
            b"\xc1",
        ):
            assert towards_a.offer(DELIVERY_ANSWER, payload) is not None
        await trio.sleep(1)
        status = a.delivery.status()
        assert (status["unmatched_answers"], status["bad_answers"]) == (2, 1)
        # a real delivery afterwards is answered as usual
        assert await attempt_all(a, envelopes(1)) == [None]
        nursery.cancel_scope.cancel()
    assert len(receiver.stored) == 1


async def test_without_a_channel_the_stream_path_is_taken(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a = Side(Receiver())
    assert await a.delivery.deliver("B", b"x") is NO_CHANNEL
    assert await attempt_all(a, envelopes(2)) == ["unreachable: PeerUnreachable"] * 2
    assert a.node.streams == 2 and a.delivery.status()["sent"] == 0
    assert LOST is not NO_CHANNEL and DELIVERY != DELIVERY_ANSWER


@pytest.mark.parametrize("payload", [b"", b"\x93\x01\x01", b"\x93\x01\x02\xc4\x00"])
async def test_a_delivery_item_that_does_not_decode_is_answered_schema(
    payload: bytes, autojump_clock: trio.testing.MockClock
) -> None:
    """Refused with a typed code (as on the stream); nothing is admitted."""
    receiver = Receiver()
    a, b = Side(Receiver()), Side(receiver)
    got: list[bytes] = []

    async def catch(peer: str, link_: Any, seq: int, raw: bytes) -> None:
        got.append(raw)

    async with trio.open_nursery() as nursery:
        await link(nursery, a, b)
        a.service.link_handlers[DELIVERY_ANSWER] = catch  # read the raw answer
        towards_b = a.service.channel("B")
        assert towards_b is not None
        seq = towards_b.offer(DELIVERY, payload)
        while not got:
            await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    from protocol.messaging.channel_delivery import decode_channel_answer

    answered, refusal = decode_channel_answer(got[0])
    assert answered == seq and refusal is not None
    assert refusal.code in {"schema", "non_canonical", "unsupported_version", "decode"}
    assert receiver.calls == 0
