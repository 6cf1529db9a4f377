"""The admission gate (DESIGN §10; PROTOCOL.md §17.2): every SMU protocol
handler is wrapped here, and the wrapper decides before a byte is read.

It refuses a stream when the link manager refuses the peer (refused by the
user, or in back-off after misbehaving on any protocol), or when the
protocol already has its share of open streams from that peer or in all.
A refused stream is reset without an answer: a banned peer learns nothing
and costs nothing but the stream.  Counts per protocol and reason are in
``GateStats`` for ``node status``.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from protocol.links.manager import LinkManager

from .clock import clock_now

log = logging.getLogger("smu.gate")

Handler = Callable[[Any], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class StreamCaps:
    """Concurrent inbound streams of one protocol: per peer and in all."""

    per_peer: int
    total: int


#: the replication stream is one per link (the link manager admits it);
#: the others are request/answer streams and need only a few at a time
DEFAULT_CAPS = StreamCaps(per_peer=4, total=256)


@dataclass(slots=True)
class GateStats:
    admitted: Counter[str] = field(default_factory=Counter)
    #: "protocol: reason" -> count
    refused: Counter[str] = field(default_factory=Counter)


def remote_peer(stream: Any) -> str:
    """The Noise-authenticated peer id of a libp2p stream."""
    return str(stream.muxed_conn.peer_id.to_base58())


class Gate:
    def __init__(self, links: LinkManager) -> None:
        self.links = links
        self.stats = GateStats()
        self._open: Counter[tuple[str, str]] = Counter()
        self._open_total: Counter[str] = Counter()
        #: an admitted stream: its connection is in use (not a bare one)
        self.on_admitted: Callable[[str], None] = lambda peer: None
        #: the disk budget is full: protocols that store refuse (§13.3)
        self.disk_full: Callable[[], bool] = lambda: False
        self.storing: set[str] = set()
        #: every admitted stream passes here (the metrics count it)
        self.wrap_stream: Callable[[Any, str], Any] = lambda stream, protocol: stream

    def refusal(self, protocol: str, peer: str, caps: StreamCaps) -> str | None:
        """Why ``peer`` may not open a ``protocol`` stream now, or None."""
        verdict = self.links.allows(peer, clock_now())
        if verdict is not None:
            return verdict.name.lower()
        if protocol in self.storing and self.disk_full():
            return "disk_full"
        if self._open[(protocol, peer)] >= caps.per_peer:
            return "peer_streams"
        if self._open_total[protocol] >= caps.total:
            return "streams"
        return None

    def item_refusal(self, protocol: str, peer: str) -> str | None:
        """Why ``peer`` may not have an item of ``protocol``'s kind handled
        on its channel now, or None: the verdicts a new stream would get
        (bans, refusals, the disk budget) without the stream caps, since
        the channel's window bounds what it carries (PROTOCOL.md §15.14.1)."""
        verdict = self.links.allows(peer, clock_now())
        if verdict is not None:
            return verdict.name.lower()
        if protocol in self.storing and self.disk_full():
            return "disk_full"
        return None

    def wrap(self, protocol: str, handler: Handler, caps: StreamCaps = DEFAULT_CAPS) -> Handler:
        """``handler`` behind the gate: called only for admitted streams."""

        async def gated(stream: Any) -> None:
            peer = remote_peer(stream)
            why = self.refusal(protocol, peer, caps)
            if why is not None:
                self.stats.refused[f"{protocol}: {why}"] += 1
                log.debug("refused a %s stream from %s: %s", protocol, peer, why)
                with contextlib.suppress(Exception):  # the peer may be gone already
                    await stream.reset()
                return
            self.stats.admitted[protocol] += 1
            self.on_admitted(peer)
            self._open[(protocol, peer)] += 1
            self._open_total[protocol] += 1
            try:
                await handler(self.wrap_stream(stream, protocol))
            finally:
                self._open[(protocol, peer)] -= 1
                if not self._open[(protocol, peer)]:
                    del self._open[(protocol, peer)]
                self._open_total[protocol] -= 1

        return gated
