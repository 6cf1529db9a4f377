"""Signature checks off the trio thread (issue: Node, catch-up benchmark).

The stateless checks of an event (``protocol.events.verify_event``) depend
on the event alone.  The cache is keyed by (id, signature), never by id
alone: the id does not cover the signature (PROTOCOL.md §5.2), so a forged
copy of a genuine event has the genuine id.  A link's reader hands each frame of full events to a
worker thread that runs them first; cffi releases the GIL inside libsodium,
so this thread verifies the next frame while the trio thread applies the
current one, and both cores work during a catch-up.  The ledger then skips
the checks for ids found here.  A failure here is not reported: the ledger
runs the checks again, finds the same failure, and the Replicator scores
the peer for it — one place for every verdict.
"""

from __future__ import annotations

from collections import OrderedDict

from protocol.errors import InvalidInput
from protocol.events import Event, decode_event, verify_event
from protocol.params import NetworkParams
from protocol.wire import EventsFrame, WireLimits, decode_frame


class VerifiedCache:
    """Events (id, signature) whose stateless checks passed; bounded, oldest first."""

    def __init__(self, params: NetworkParams, limits: WireLimits, max_ids: int = 65_536) -> None:
        self.params = params
        self.limits = limits
        self.max_ids = max_ids
        self._ids: OrderedDict[tuple[bytes, bytes], None] = OrderedDict()

    def preverify(self, frame: bytes) -> int:
        """Run in a worker thread: check every event in an events frame."""
        try:
            decoded = decode_frame(frame, self.limits)
        except InvalidInput:
            return 0
        if not isinstance(decoded, EventsFrame):
            return 0
        done = 0
        for raw in decoded.events:
            try:
                event = decode_event(raw, self.params)
                verify_event(event, self.params)
            except InvalidInput:
                continue
            self._ids[(event.id, event.signature)] = None
            done += 1
        while len(self._ids) > self.max_ids:
            self._ids.popitem(last=False)
        return done

    def verify(self, event: Event, params: NetworkParams) -> None:
        """The ledger's verifier: trust exact events checked here, check the rest."""
        if self._ids.pop((event.id, event.signature), 0) is None:
            return
        verify_event(event, params)
