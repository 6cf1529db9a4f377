"""One per-link channel for every link (PROTOCOL.md §17.3; DESIGN §10).

When a link is admitted, the side that dialled it opens ``/smu/channel/1``
to the same peer; the other side accepts a channel stream only from a peer
it is linked with, and a second channel from one peer replaces the older.
When the link ends, its channel closes.  What travels on a channel is
chosen by content kind (DESIGN §10's ranges): a service registers a handler
for the kinds it owns; items of a kind nobody handles are acknowledged and
dropped, so a newer peer's additions cost nothing.

Registered kinds: 49, a mailbox's push notice (``node.push``, PROTOCOL.md
§15.12.1); 14 and 15, envelopes (messages and receipts) and their answers
(``services/channel_delivery.py``, §15.14.1).  Items are handled one at a
time, in order; an item is acknowledged once its handler returns, so a
handler that waits (for room to answer) holds back the peer's window.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from protocol.links.channel import ChannelConfig, Closed, Received
from protocol.links.channel_wire import PROTOCOL_ID

from .api.node import ChannelStatus
from .channel import ChannelLink
from .errors import PeerUnreachable
from .gate import remote_peer
from .links import Link, LinkService
from .tasks import TaskStatus

log = logging.getLogger("smu.channels")
CHANNEL_PROTOCOL = PROTOCOL_ID

#: handles one received item: (peer, payload) -> None; the item is
#: acknowledged when the handler returns (so it must have persisted it)
ItemHandler = Callable[[str, bytes], None]
#: the same with the channel and the item's sequence number, awaited
LinkItemHandler = Callable[[str, ChannelLink, int, bytes], Awaitable[None]]
#: told when a channel has ended (after it left ``channels``)
ClosedListener = Callable[[str, ChannelLink, Closed], None]


class ChannelService:
    def __init__(self, links: LinkService, config: ChannelConfig | None = None) -> None:
        self.links = links
        #: every channel's limits and timers (None: the §17.3.7 defaults)
        self.config = config
        self.channels: dict[str, ChannelLink] = {}
        self.handlers: dict[int, ItemHandler] = {}
        self.link_handlers: dict[int, LinkItemHandler] = {}
        self.unhandled = 0
        self._nursery: trio.Nursery | None = None
        #: told when a channel with a peer starts (items offered now go out
        #: as soon as the peer's HELLO arrives)
        self.on_open: list[Callable[[str], None]] = []
        self.on_closed: list[ClosedListener] = []
        #: the counters of the deliveries on channels (§15.14.1)
        self.delivery_counts: Callable[[], dict[str, int]] = dict

    async def run(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def handle(self, kind: int, handler: ItemHandler) -> None:
        """``handler`` receives every item of ``kind`` (one owner per kind)."""
        assert kind not in self.handlers | self.link_handlers, f"kind {kind} has an owner"
        self.handlers[kind] = handler

    def handle_link(self, kind: int, handler: LinkItemHandler) -> None:
        """``handler`` receives every item of ``kind`` with its channel and
        sequence number, and is awaited before the next item."""
        assert kind not in self.handlers | self.link_handlers, f"kind {kind} has an owner"
        self.link_handlers[kind] = handler

    def channel(self, peer: str) -> ChannelLink | None:
        """The open channel with ``peer``, if any."""
        channel = self.channels.get(peer)
        return channel if channel is not None and channel.closed is None else None

    def offer(self, peer: str, kind: int, payload: bytes) -> int | None:
        """Queue an item for ``peer``: its sequence number, or None when there
        is no channel or it is full (the caller keeps the item and retries)."""
        channel = self.channels.get(peer)
        return channel.offer(kind, payload) if channel is not None else None

    # -- the links' side ---------------------------------------------------------

    def link_opened(self, link: Link) -> None:
        """The dialler of a link opens its channel."""
        if link.outbound and self._nursery is not None:
            self._nursery.start_soon(self._open, link.peer)

    def link_closed(self, link: Link) -> None:
        channel = self.channels.get(link.peer)
        if channel is not None:
            channel.close("the link ended")

    async def _open(self, peer: str) -> None:
        try:
            stream = await self.links.open_stream(peer, (), CHANNEL_PROTOCOL)
        except PeerUnreachable as exc:
            log.debug("no channel to %s: %s", peer, exc)
            return
        await self._serve(peer, stream)

    async def on_stream(self, stream: Any) -> None:
        """A peer opened a channel (behind the gate): only a linked peer may."""
        peer = remote_peer(stream)
        if peer not in self.links.links:
            log.debug("channel from %s refused: no link", peer)
            await stream.reset()
            return
        await self._serve(peer, stream)

    async def _serve(self, peer: str, stream: Any) -> None:
        channel = ChannelLink(stream, self.config, name=peer)
        old = self.channels.get(peer)
        if old is not None:
            old.close("replaced by a newer channel")
        self.channels[peer] = channel
        for opened in self.on_open:
            opened(peer)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._events, peer, channel)
                closed = await channel.run()  # logs what was left unacknowledged
                nursery.cancel_scope.cancel()
        finally:
            if self.channels.get(peer) is channel:
                del self.channels[peer]
        for listener in self.on_closed:
            listener(peer, channel, closed)

    async def _events(self, peer: str, channel: ChannelLink) -> None:
        async for event in channel.events:
            if isinstance(event, Received):
                handler = self.handlers.get(event.kind)
                link_handler = self.link_handlers.get(event.kind)
                if handler is not None:
                    handler(peer, event.payload)
                elif link_handler is not None:
                    await link_handler(peer, channel, event.seq, event.payload)
                else:
                    self.unhandled += 1
                channel.processed(event.seq)
            elif isinstance(event, Closed):
                return

    def status(self) -> ChannelStatus:
        return {
            "open": sorted(self.channels),
            "unhandled_items": self.unhandled,
            "deliveries": self.delivery_counts(),
        }
