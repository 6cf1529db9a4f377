"""Envelopes and their answers on the per-link channel (PROTOCOL.md
§15.14.1; DESIGN §10).

Sending: when this node has an open channel with the node a recipient
device's record names, ``deliver`` offers the envelope as a ``DELIVERY``
item and waits for the ``DELIVERY_ANSWER`` that names the item's sequence
number; the caller (the outbox, ``messages.py``) applies that answer exactly
as it applies a stream's.  Several deliveries in flight at once share
frames (the channel packs what is queued).  When the channel's queue is
full (back-pressure) ``deliver`` waits for room, within the caller's bound
on the whole delivery: a channel still full then ends the attempt as a
stream that does not answer does, and the row stays in the outbox for its
next try.  ``deliver`` says instead of an answer:

* ``NO_CHANNEL``: none is open (or it closed before taking the item):
  deliver on a stream, as before;
* ``LOST``: the channel closed before the answer came: the delivery is still
  owed, and the caller tries a stream at once.  The receiver may have stored
  the message; the retry is then answered ``replay`` (or
  ``session_duplicate``), which the outbox counts as delivered, and the
  message is on screen once (§15.6, §15.14 *Message ids are the sender's*).

Receiving: a ``DELIVERY`` item runs exactly the stream handler's path: the
gate's verdict on the peer (``refusal``; a refused peer is answered
``gate_refused``, which its outbox treats as the reset stream it would
have got), then ``admit`` (``MessageService.receive`` with its stranger
caps, replay guard and one write).  The answer is
queued before the item is marked processed, so the channel acknowledges it
only once the message is stored and its answer is on its way.  When our
queue is full the handler waits for room: the peer's window stays closed
meanwhile, so a peer that never reads our answers cannot make us keep more
than one channel's queue of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

import trio

from protocol.core.errors import InvalidInput
from protocol.links.channel import Closed
from protocol.messaging.channel_delivery import (
    DELIVERY,
    DELIVERY_ANSWER,
    MAX_ANSWER_BYTES,
    decode_channel_answer,
    encode_channel_answer,
)
from protocol.messaging.envelope import DeliveryRefused, decode_delivery, delivery_frame

from ..channel import ChannelLink
from ..channels import ChannelService

log = logging.getLogger("smu.messages.channel")


class NotSent(Enum):
    NO_CHANNEL = "no channel with that peer"
    LOST = "the channel closed before the answer"


NO_CHANNEL, LOST = NotSent.NO_CHANNEL, NotSent.LOST

#: None: the receiver stored it; a refusal; or why it was not answered
Outcome = DeliveryRefused | NotSent | None
#: runs the stream handler's path on an envelope from ``peer``: None once
#: stored, else the typed refusal (it never raises ``InvalidInput``)
Admit = Callable[[str, bytes], InvalidInput | None]
#: the gate's verdict on a peer's item (``Gate.item_refusal``): None or why
Refusal = Callable[[str], str | None]
#: the code of a refusal by the gate: the sender treats it as a reset stream
GATE_REFUSED = "gate_refused"


@dataclass(slots=True)
class _Waiting:
    done: trio.Event = field(default_factory=trio.Event)
    outcome: Outcome = LOST


@dataclass(slots=True)
class ChannelDeliveryStats:
    sent: int = 0
    answered: int = 0
    lost: int = 0
    #: offers the queue refused (each then waited for room)
    busy: int = 0
    received: int = 0
    #: answers that named nothing we wait for (late, repeated, or made up)
    unmatched: int = 0
    #: answer items that did not decode
    bad_answers: int = 0


class ChannelDelivery:
    def __init__(self, channels: ChannelService, admit: Admit, refusal: Refusal) -> None:
        self.channels = channels
        self.admit = admit
        self.refusal = refusal
        self.stats = ChannelDeliveryStats()
        #: per channel, the deliveries waiting for an answer, by item seq;
        #: bounded by the outbox's deliveries in flight (MAX_IN_FLIGHT)
        self._waiting: dict[ChannelLink, dict[int, _Waiting]] = {}
        channels.handle_link(DELIVERY, self._on_delivery)
        channels.handle_link(DELIVERY_ANSWER, self._on_answer)
        channels.on_closed.append(self._closed)
        channels.delivery_counts = self.status

    # -- sending -------------------------------------------------------------------

    async def deliver(self, peer: str, envelope: bytes) -> Outcome:
        """Offer ``envelope`` to ``peer`` on its channel and wait for the
        answer (the caller bounds the wait, as it bounds a stream's)."""
        link = self.channels.channel(peer)
        if link is None:
            return NO_CHANNEL
        payload = delivery_frame(envelope)
        while (seq := link.offer(DELIVERY, payload)) is None:
            if link.closed is not None:
                return NO_CHANNEL
            self.stats.busy += 1
            await link.wait_room(len(payload))
        self.stats.sent += 1
        waiting = _Waiting()
        self._waiting.setdefault(link, {})[seq] = waiting
        try:
            await waiting.done.wait()
        finally:
            on_link = self._waiting.get(link)
            if on_link is not None:
                on_link.pop(seq, None)
                if not on_link:
                    del self._waiting[link]
        if waiting.outcome is LOST:
            self.stats.lost += 1
        else:
            self.stats.answered += 1
        return waiting.outcome

    async def _on_answer(self, peer: str, link: ChannelLink, seq: int, payload: bytes) -> None:
        try:
            answered, refusal = decode_channel_answer(payload)
        except InvalidInput as exc:
            self.stats.bad_answers += 1
            log.debug("bad delivery answer from %s: %s", peer, exc)
            return
        waiting = self._waiting.get(link, {}).get(answered)
        if waiting is None or waiting.done.is_set():
            self.stats.unmatched += 1
            return
        waiting.outcome = refusal
        waiting.done.set()

    def _closed(self, peer: str, link: ChannelLink, closed: Closed) -> None:
        """Every delivery still waiting on ``link`` is owed: LOST."""
        for waiting in self._waiting.pop(link, {}).values():
            waiting.done.set()  # outcome stays LOST

    # -- receiving -----------------------------------------------------------------

    async def _on_delivery(self, peer: str, link: ChannelLink, seq: int, payload: bytes) -> None:
        self.stats.received += 1
        error: InvalidInput | DeliveryRefused | None
        why = self.refusal(peer)
        if why is not None:
            error = DeliveryRefused(GATE_REFUSED, why)
        else:
            try:
                envelope = decode_delivery(payload)
            except InvalidInput as exc:
                error = exc
            else:
                error = self.admit(peer, envelope)
        answer = encode_channel_answer(seq, error)
        assert len(answer) <= MAX_ANSWER_BYTES
        await link.wait_room(len(answer))
        # None: the channel closed; the sender tries again and learns
        # ``replay`` if this was stored
        link.offer(DELIVERY_ANSWER, answer)

    def status(self) -> dict[str, int]:
        s = self.stats
        return {
            "sent": s.sent,
            "answered": s.answered,
            "lost": s.lost,
            "busy": s.busy,
            "received": s.received,
            "unmatched_answers": s.unmatched,
            "bad_answers": s.bad_answers,
        }
