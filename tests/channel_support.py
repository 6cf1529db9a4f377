"""What the channel tests share: a pair of machines joined by a fake link,
and in-memory streams for the trio adapter (tests/test_channel.py)."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from node.channel import ChannelLink
from protocol.core.machine import Now
from protocol.links.channel import (
    Acknowledged,
    Channel,
    ChannelConfig,
    Closed,
    Output,
    Received,
    Send,
    State,
)
from protocol.links.channel_wire import Frame, decode_frame

#: small sender-side caps, so that windows and queues fill with small items
SMALL = ChannelConfig(
    max_item_bytes=3000,
    max_inflight_bytes=8000,
    max_inflight_items=5,
    max_queue_items=6,
    max_queue_bytes=12_000,
    max_items_per_frame=3,
)


def frames_of(outputs: Sequence[Output]) -> list[Frame]:
    return [decode_frame(o.frame, 1 << 32) for o in outputs if isinstance(o, Send)]


def only(outputs: Sequence[Output], cls: type[Any]) -> list[Any]:
    return [o for o in outputs if isinstance(o, cls)]


@dataclass
class End:
    ch: Channel
    #: frames in flight towards this end, oldest first
    inbox: deque[bytes] = field(default_factory=deque)
    #: every output of this end except Send
    log: list[Output] = field(default_factory=list)
    #: Received items not yet processed
    pending: list[int] = field(default_factory=list)


class Pair:
    """Two channels joined by a fake link; the test moves frames and time."""

    def __init__(self, a: ChannelConfig = SMALL, b: ChannelConfig = SMALL) -> None:
        self.t = 0.0
        self.ends = {"a": End(Channel(a)), "b": End(Channel(b))}
        for side, end in self.ends.items():
            self.feed(side, end.ch.start(self.now()))

    @property
    def a(self) -> Channel:
        return self.ends["a"].ch

    @property
    def b(self) -> Channel:
        return self.ends["b"].ch

    def now(self) -> Now:
        return Now.virtual(self.t)

    def feed(self, side: str, outputs: Sequence[Output]) -> list[Output]:
        other = self.ends["b" if side == "a" else "a"]
        for o in outputs:
            if isinstance(o, Send):
                other.inbox.append(o.frame)
            else:
                self.ends[side].log.append(o)
                if isinstance(o, Received):
                    self.ends[side].pending.append(o.seq)
        return list(outputs)

    def deliver(self, side: str, n: int | None = None) -> list[Output]:
        """Hand ``n`` (default all) frames in flight to ``side``."""
        end = self.ends[side]
        out: list[Output] = []
        while end.inbox and (n is None or n > 0):
            out += self.feed(side, end.ch.receive(end.inbox.popleft(), self.now()))
            n = None if n is None else n - 1
        return out

    def offer(self, side: str, payload: bytes, kind: int = 1) -> Output:
        (result,) = self.feed(side, self.ends[side].ch.offer(kind, payload, self.now()))
        return result

    def process(self, side: str, seq: int | None = None) -> list[Output]:
        end = self.ends[side]
        seq = end.pending[0] if seq is None else seq
        end.pending.remove(seq)
        return self.feed(side, end.ch.processed(seq, self.now()))

    def tick_due(self) -> None:
        for side, end in self.ends.items():
            d = end.ch.next_deadline()
            if d is not None and d <= self.t:
                self.feed(side, end.ch.tick(self.now()))

    def advance(self, dt: float) -> None:
        """Move the clock, firing each timer at its own time on the way."""
        target = self.t + dt
        while True:
            due = [d for e in self.ends.values() if (d := e.ch.next_deadline()) is not None]
            if not due or min(due) > target:
                break
            self.t = max(self.t, min(due))
            self.tick_due()
        self.t = target

    def settle(self) -> None:
        """Deliver and process everything, and let delayed acks go, until
        nothing moves."""
        for _ in range(1000):
            moved = False
            for side, end in self.ends.items():
                moved |= bool(end.inbox)
                self.deliver(side)
                while end.pending and end.ch.state is not State.CLOSED:
                    self.process(side)
                    moved = True
            if not moved:
                self.advance(self.a.config.ack_delay)
                if not any(e.inbox for e in self.ends.values()):
                    return
        raise AssertionError("the pair did not settle")

    def frames_to(self, side: str) -> list[Frame]:
        """The frames in flight towards ``side``, decoded."""
        return [decode_frame(raw, 1 << 32) for raw in self.ends[side].inbox]

    def received(self, side: str) -> list[tuple[int, int, bytes]]:
        return [(o.seq, o.kind, o.payload) for o in self.ends[side].log if isinstance(o, Received)]

    def acked(self, side: str) -> list[int]:
        return [s for o in self.ends[side].log if isinstance(o, Acknowledged) for s in o.seqs]

    def closed(self, side: str) -> Closed:
        (c,) = only(self.ends[side].log, Closed)
        return c


def opened(a: ChannelConfig = SMALL, b: ChannelConfig = SMALL) -> Pair:
    p = Pair(a, b)
    p.deliver("a")
    p.deliver("b")
    assert p.a.state is State.OPEN and p.b.state is State.OPEN
    return p


class FakeStream:
    """One end of an in-memory stream; ``write`` blocks when the other
    end's buffer (a few writes) is full, as a stream whose peer stopped
    reading does."""

    def __init__(
        self, send: trio.MemorySendChannel[bytes], recv: trio.MemoryReceiveChannel[bytes]
    ) -> None:
        self._send, self._recv, self._buf = send, recv, b""
        self.reset_called = False

    async def read(self, n: int) -> bytes:
        if not self._buf:
            try:
                self._buf = await self._recv.receive()
            except trio.EndOfChannel:
                return b""
        chunk, self._buf = self._buf[:n], self._buf[n:]
        return chunk

    async def write(self, data: bytes) -> None:
        await self._send.send(data)

    async def close(self) -> None:
        await self._send.aclose()

    async def reset(self) -> None:
        self.reset_called = True
        await self._send.aclose()
        await self._recv.aclose()


def stream_pair(capacity: int = 4) -> tuple[FakeStream, FakeStream]:
    ab_send, ab_recv = trio.open_memory_channel[bytes](capacity)
    ba_send, ba_recv = trio.open_memory_channel[bytes](capacity)
    return FakeStream(ab_send, ba_recv), FakeStream(ba_send, ab_recv)


async def take(link: ChannelLink, cls: type[Any]) -> Any:
    while True:
        event = await link.events.receive()
        if isinstance(event, cls):
            return event


async def send_all(link: ChannelLink, payloads: list[bytes]) -> None:
    for payload in payloads:
        while link.offer(1, payload) is None:  # back-pressure: wait, then offer again
            assert link.closed is None
            await link.wait_room(len(payload))


class Consumer:
    """The one reader of a link's events: processes every item it gets and
    notes acks; ``done`` once it has ``received`` items and ``acked`` acks."""

    def __init__(self, link: ChannelLink, received: int = 0, acked: int = 0) -> None:
        self.link, self.want = link, (received, acked)
        self.got: list[bytes] = []
        self.got_at: list[float] = []
        self.acked = 0
        self.done = trio.Event()

    async def run(self) -> None:
        async for event in self.link.events:
            if isinstance(event, Received):
                self.got.append(event.payload)
                self.got_at.append(trio.current_time())
                self.link.processed(event.seq)
            elif isinstance(event, Acknowledged):
                self.acked = event.last
            elif isinstance(event, Closed):
                return
            if len(self.got) >= self.want[0] and self.acked >= self.want[1]:
                self.done.set()
