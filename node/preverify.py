"""Decoding and signature checks off the trio thread (issue: Node, catch-up).

The stateless checks of an event (``protocol.events.verify_event``) depend
on the event alone.  A link's reader hands each frame of full events to a
worker thread that decodes and checks them first; cffi releases the GIL
inside libsodium, so this thread works on the next frame while the trio
thread applies the current one, and both cores work during a catch-up.  The
ledger then takes the decoded event and skips the checks for exactly those
bytes.  A failure here is not reported: the ledger runs the checks again,
finds the same failure, and the Replicator scores the peer for it — one
place for every verdict.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from protocol.core.errors import InvalidInput
from protocol.core.params import NetworkParams
from protocol.log.events import Event, decode_event, verify_event
from protocol.sync.wire import EventsFrame, WireLimits, decode_frame


class VerifiedCache:
    """Events decoded and verified in a worker thread, keyed by their exact
    bytes; bounded, oldest dropped first.  Keying by the bytes (not the id,
    which does not cover the signature, PROTOCOL.md §5.2) means a forged copy
    of a genuine event never finds the genuine one's verdict."""

    def __init__(
        self,
        params: NetworkParams,
        limits: WireLimits,
        max_events: int = 65_536,
        held: Callable[[bytes], bool] = lambda raw: False,
    ) -> None:
        self.params = params
        self.limits = limits
        #: events held already are skipped: a duplicate costs a lookup, not a
        #: signature check (PROTOCOL.md §11.5.2); reading the ledger's dicts
        #: from a worker thread is safe, and a stale answer only costs work
        self.held = held
        self.max_events = max_events
        self._events: OrderedDict[bytes, Event] = OrderedDict()

    def preverify(self, frame: bytes) -> int:
        """Run in a worker thread: decode and check every event of a frame."""
        try:
            decoded = decode_frame(frame, self.limits)
        except InvalidInput:
            return 0
        if not isinstance(decoded, EventsFrame):
            return 0
        done = 0
        for raw in decoded.events:
            if self.held(raw):
                continue
            try:
                event = decode_event(raw, self.params)
                verify_event(event, self.params)
            except InvalidInput:
                continue
            self._events[raw] = event
            done += 1
        while len(self._events) > self.max_events:
            self._events.popitem(last=False)
        return done

    def decode(self, raw: bytes, params: NetworkParams) -> Event:
        """The ledger's decoder: the worker's result if it has one."""
        event = self._events.get(raw)
        return event if event is not None else decode_event(raw, params)

    def verify(self, event: Event, params: NetworkParams) -> None:
        """The ledger's verifier: trust exactly what the worker checked."""
        if self._events.pop(event.raw, None) is event:
            return
        verify_event(event, params)
