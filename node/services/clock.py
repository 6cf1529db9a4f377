"""Is this node's clock right?  ``/smu/time/1`` (PROTOCOL.md §17.6).

Records, edits and events carry wall-clock times that others judge with a
few minutes' skew; a node whose clock is off publishes records nobody
takes and waits on edits for no reason.  On each new link this node asks
the peer for its clock once, halves the round trip, and keeps one offset
per linked peer; the median over at least ``MIN_PEERS`` peers is compared
with ``WARN_MS``.  It is a warning only (a minority of lying peers cannot
move a median, and nothing is decided by it).
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from ..api.node import ClockStatus
from ..links import Link
from ..transport import read_exactly

log = logging.getLogger("smu.clock")

PROTOCOL_ID = "/smu/time/1"
ANSWER_BYTES = 8
ASK_SECONDS = 10
MIN_PEERS = 3
WARN_MS = 60_000

OpenStream = Callable[[str, Sequence[str], str], Awaitable[Any]]


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class ClockService:
    def __init__(self, open_stream: OpenStream, *, wall_ms: Callable[[], int] = _wall_ms) -> None:
        self.open_stream = open_stream
        self.wall_ms = wall_ms
        #: peer -> its clock minus ours (ms), for linked peers only
        self.offsets: dict[str, int] = {}
        self._warned = False
        self._asks: trio.MemorySendChannel[str]
        self._asks, self._queue = trio.open_memory_channel[str](64)

    # -- the asked side ---------------------------------------------------------

    async def on_stream(self, stream: Any) -> None:
        """Answer with our clock, 8 bytes big-endian ms; nothing is read."""
        try:
            await stream.write(self.wall_ms().to_bytes(ANSWER_BYTES, "big"))
        finally:
            await stream.close()

    # -- the asking side ----------------------------------------------------------

    def link_opened(self, link: Link) -> None:
        # many links at once: enough of them will be asked
        with contextlib.suppress(trio.WouldBlock):
            self._asks.send_nowait(link.peer)

    def link_closed(self, link: Link) -> None:
        self.offsets.pop(link.peer, None)

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            async for peer in self._queue:
                nursery.start_soon(self._ask, peer)

    async def _ask(self, peer: str) -> None:
        with trio.move_on_after(ASK_SECONDS):
            try:
                stream = await self.open_stream(peer, [], PROTOCOL_ID)
                sent = self.wall_ms()
                raw = await read_exactly(stream, ANSWER_BYTES)
                back = self.wall_ms()
                await stream.close()
            except Exception as exc:  # an older peer, or it went away
                log.debug("no clock from %s: %s", peer, exc)
                return
            self.record(peer, int.from_bytes(raw, "big"), sent, back)

    def record(self, peer: str, their_ms: int, sent_ms: int, back_ms: int) -> None:
        self.offsets[peer] = their_ms - (sent_ms + back_ms) // 2
        self._check()

    def median_offset(self) -> int | None:
        if len(self.offsets) < MIN_PEERS:
            return None
        return int(statistics.median(self.offsets.values()))

    def _check(self) -> None:
        median = self.median_offset()
        wrong = median is not None and abs(median) > WARN_MS
        if wrong and not self._warned:
            ahead = "behind" if median and median > 0 else "ahead of"
            log.warning(
                "this node's clock is %d s %s its peers' median: records and edits "
                "it signs may be refused; set the system clock (NTP)",
                abs(median or 0) // 1000,
                ahead,
            )
        elif not wrong and self._warned:
            log.info("this node's clock agrees with its peers again")
        self._warned = wrong

    def status(self) -> ClockStatus:
        median = self.median_offset()
        return {
            "peers_asked": len(self.offsets),
            "median_offset_ms": median,
            "warning": median is not None and abs(median) > WARN_MS,
        }
