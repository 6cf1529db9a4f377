"""One per-link channel over one stream, under trio (PROTOCOL.md §17.3).

``ChannelLink`` runs a ``protocol.links.channel.Channel`` over anything that
offers a libp2p stream's ``read(n)``, ``write(data)``, ``close()`` and
``reset()``, so tests run it over in-memory streams:

* one reader task: length-prefixed frames (``transport.read_frame`` checks
  the length against ``max_frame_bytes`` before it reads the body), each
  handed to the machine;
* one writer task: the machine's ``Send`` outputs, in order, from an
  unbounded queue (the machine bounds what it emits: DATA by the windows,
  the rest by its timers);
* the machine driver (``node/driver.py``): every call into the machine goes
  through it, and it re-arms the machine's timer from ``next_deadline()``
  after each, so ``tick`` runs exactly when due and nothing polls.

The caller reads ``events`` (``Received``, ``Acknowledged``, ``Misbehaved``
and finally ``Closed``), calls ``processed`` once a received item is safe,
and offers items with ``offer`` (``None`` means refused: keep the item and
offer it again after ``wait_room``).  ``run`` returns the ``Closed`` value,
whose ``unacknowledged`` items belong on the next stream.

Stream errors are caught by type at the two places that touch the stream
and logged once.  ``node/channels.py`` runs one per link.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Sequence
from functools import partial
from typing import Protocol

import trio

from protocol.core.errors import SizeLimitError
from protocol.core.machine import Now
from protocol.links.channel import (
    Acknowledged,
    Channel,
    ChannelConfig,
    Closed,
    Misbehaved,
    Output,
    Queued,
    Received,
    Refused,
    Send,
    State,
)

from .driver import MachineDriver
from .errors import PeerError
from .transport import STREAM_ERRORS, frame, read_frame

log = logging.getLogger("smu.channel")

#: seconds the last frames (a final ACK, the CLOSE) get to go out after a
#: close before the stream is reset instead: a peer that does not read
#: must not hold the link open
CLOSE_GRACE = 2.0

Event = Received | Acknowledged | Misbehaved | Closed


class Stream(Protocol):
    async def read(self, n: int) -> bytes: ...

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...

    async def reset(self) -> None: ...


class ChannelLink:
    def __init__(
        self,
        stream: Stream,
        config: ChannelConfig | None = None,
        *,
        name: str = "peer",
        close_grace: float = CLOSE_GRACE,
    ) -> None:
        self.stream = stream
        self.channel = Channel(config) if config is not None else Channel()
        self.name = name
        self.close_grace = close_grace
        # unbounded, because the machine bounds them: Received by our
        # window, Acknowledged by our own items, one Closed
        self._events_send, self.events = trio.open_memory_channel[Event](math.inf)
        self._frames_send, self._frames = trio.open_memory_channel[bytes](math.inf)
        self.driver = MachineDriver(f"channel {name}", self.channel, self._apply)
        self._done = trio.Event()
        self._written = trio.Event()  # the writer sent everything, or gave up
        self._broken = False  # the stream failed: reset it rather than close it
        self._room = trio.Event()

    @property
    def closed(self) -> Closed | None:
        return self.channel.closed

    # -- what the caller calls -------------------------------------------------

    async def run(self) -> Closed:
        """Run until the channel closes; then close the stream (or reset it,
        if it failed or the last frames did not go out in time)."""
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.driver.run)
                self.driver.call(self.channel.start)
                nursery.start_soon(self._read_loop)
                nursery.start_soon(self._write_loop)
                await self._done.wait()
                with trio.move_on_after(self.close_grace):
                    await self._written.wait()
                nursery.cancel_scope.cancel()
        finally:
            await self._end_stream(self._written.is_set() and not self._broken)
        assert self.channel.closed is not None
        return self.channel.closed

    def offer(self, kind: int, payload: bytes) -> int | None:
        """Queue an item; its sequence number, or None if the channel
        refused it (queue full, or closed)."""
        outputs = self.driver.call(lambda now: self.channel.offer(kind, payload, now))
        return next((o.seq for o in outputs if isinstance(o, Queued)), None)

    async def wait_room(self, payload_bytes: int = 0) -> None:
        """Until ``offer`` would take an item of this size, or the channel
        is closed."""
        await trio.lowlevel.checkpoint()
        while self.channel.state is not State.CLOSED and not self.channel.has_room(payload_bytes):
            if self._room.is_set():
                self._room = trio.Event()
            await self._room.wait()

    def processed(self, seq: int) -> None:
        self.driver.call(lambda now: self.channel.processed(seq, now))

    def grant(self, window: int) -> None:
        self.driver.call(lambda now: self.channel.grant(window, now))

    def close(self, reason: str = "") -> None:
        self.driver.call(lambda now: self.channel.close(now, reason))

    # -- tasks -------------------------------------------------------------------

    async def _read_loop(self) -> None:
        limit = self.channel.config.max_frame_bytes
        while self.channel.state is not State.CLOSED:
            try:
                data = await read_frame(self.stream, limit)
            except PeerError as exc:  # a length over the limit, unread
                self.driver.call(partial(self._reject, SizeLimitError(str(exc))))
                return
            except STREAM_ERRORS as exc:
                self._lost(f"read: {type(exc).__name__}: {exc}")
                return
            self.driver.call(partial(self._receive, data))

    async def _write_loop(self) -> None:
        async for data in self._frames:
            try:
                await self.stream.write(frame(data))
            except STREAM_ERRORS as exc:
                self._broken = True
                self._lost(f"write: {type(exc).__name__}: {exc}")
                break
        self._written.set()

    # -- carrying out the machine's outputs ----------------------------------------

    def _receive(self, data: bytes, now: Now) -> list[Output]:
        return self.channel.receive(data, now)

    def _reject(self, error: SizeLimitError, now: Now) -> list[Output]:
        return self.channel.reject(error, now)

    def _apply(self, outputs: Sequence[Output]) -> None:
        room = False
        for out in outputs:
            if isinstance(out, Send):
                self._frames_send.send_nowait(out.frame)
                room = True
            elif isinstance(out, Queued | Refused):
                continue  # answers to ``offer``, which reads them itself
            else:
                if isinstance(out, Misbehaved):
                    log.warning("channel with %s: invalid input: %s", self.name, out.error)
                elif isinstance(out, Closed):
                    self._on_closed(out)
                    room = True
                # a caller that stopped listening does not stop the machine
                with contextlib.suppress(trio.BrokenResourceError):
                    self._events_send.send_nowait(out)
        if room:
            self._room.set()

    def _on_closed(self, closed: Closed) -> None:
        who = "peer" if closed.by_peer else "we"
        code = closed.code.name if closed.code is not None else "none"
        log.info(
            "channel with %s closed (%s, %s): %s; %d items unacknowledged",
            self.name,
            who,
            code,
            closed.reason,
            len(closed.unacknowledged),
        )
        self._frames_send.close()  # the writer sends what is queued, then ends
        self._done.set()

    def _lost(self, what: str) -> None:
        if self.channel.state is not State.CLOSED:
            log.debug("channel with %s: stream ended (%s)", self.name, what)
        self.driver.call(lambda now: self.channel.connection_lost(now, what))

    async def _end_stream(self, clean: bool) -> None:
        with trio.CancelScope(shield=True):
            if clean:
                with trio.move_on_after(self.close_grace):
                    try:
                        await self.stream.close()
                        return
                    except STREAM_ERRORS as exc:
                        log.debug("channel with %s: close failed: %s", self.name, exc)
            try:
                await self.stream.reset()
            except STREAM_ERRORS as exc:
                log.debug("channel with %s: reset failed: %s", self.name, exc)
