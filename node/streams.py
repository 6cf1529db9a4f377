"""One request stream, as the machines' outputs see it (PROTOCOL.md §18).

A machine's ``Send`` and ``Hangup`` outputs are carried out synchronously by
its driver; ``StreamPort`` turns them into writes on a libp2p stream from a
single writer task, in order, and closes the stream once everything queued
before a hang-up has been written.  Frames are length-prefixed
(``node/transport.py``); reads check the length against a limit first.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import trio

from .errors import PeerError
from .transport import STREAM_ERRORS, frame, read_frame

log = logging.getLogger("smu.streams")

#: frames waiting to be written on one stream; a peer that lets them pile
#: up is not reading, and its stream is closed
MAX_QUEUED = 64


class StreamPort:
    def __init__(self, stream: Any, peer: str) -> None:
        self.stream = stream
        self.peer = peer
        self._send, self._recv = trio.open_memory_channel[bytes | None](MAX_QUEUED)
        self.closed = trio.Event()

    def send(self, data: bytes) -> None:
        """Queue a frame; a peer that is not reading loses its stream."""
        if self.closed.is_set():
            return
        try:
            self._send.send_nowait(data)
        except trio.WouldBlock:
            log.info("stream to %s: not reading; closing it", self.peer)
            self.hangup()
        except trio.ClosedResourceError:
            pass

    def hangup(self) -> None:
        """Close the stream after the frames queued so far."""
        with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
            self._send.send_nowait(None)
        self._send.close()

    async def run(self) -> None:
        """The writer: until a hang-up, or until the stream breaks."""
        try:
            async for data in self._recv:
                if data is None:
                    break
                await self.stream.write(frame(data))
        except STREAM_ERRORS as exc:
            log.debug("stream to %s: write failed: %s", self.peer, exc)
        finally:
            self.closed.set()
            with trio.CancelScope(shield=True), contextlib.suppress(Exception):
                await self.stream.close()

    async def read(self, max_bytes: int) -> bytes | None:
        """The next frame, or None once the stream ended or broke the
        framing rules (a length over ``max_bytes``)."""
        try:
            return await read_frame(self.stream, max_bytes)
        except PeerError as exc:
            log.info("stream from %s: %s", self.peer, exc)
            return None
        except STREAM_ERRORS:  # EOF, reset: the stream is gone
            return None
