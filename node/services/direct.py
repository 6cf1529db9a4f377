"""One attempt at delivering one outbox row (PROTOCOL.md §15.14, §15.14.1).

To the node the device's signed record names first: on the per-link
channel with it when one is open (``channel_delivery.py``), else, or when
that channel closed before it answered, on a new ``/smu/message/1`` stream;
when the node cannot be reached, at a mailbox the record names.  The answer
comes back as the error text the outbox policy reads (``outbox_policy.py``):
None when the device's node stored the envelope (or had it already).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence

import trio

from protocol.core.errors import InvalidInput
from protocol.messaging.envelope import (
    MESSAGE_PROTOCOL_ID,
    DeliveryRefused,
    decode_delivery_answer,
    delivery_frame,
)
from protocol.records.device import SignedDeviceRecord

from ..context import NodeContext
from ..errors import PeerUnreachable
from ..transport import REQUEST_ERRORS, frame, read_frame
from .channel_delivery import GATE_REFUSED, ChannelDelivery, NotSent
from .outbox_policy import ALREADY_THERE, DELIVERY_TIMEOUT, DEPOSITED

#: leave an envelope at a mailbox a device's record names: True if one took it
Deposit = Callable[[SignedDeviceRecord, bytes, bytes], Awaitable[bool]]
#: the stream's answer is at most this long (§15.14)
MAX_ANSWER_BYTES = 1024


class DirectDelivery:
    def __init__(self, ctx: NodeContext, deposit: Deposit) -> None:
        self.ctx = ctx
        self.deposit = deposit
        #: deliveries on the per-link channel (§15.14.1); set by the daemon
        self.channel: ChannelDelivery | None = None
        #: envelopes sent on a new stream (the channel's are in its stats)
        self.streams = 0

    async def attempt(self, device: bytes, account: bytes, envelope: bytes) -> str | None:
        record = self.ctx.records.get(account, device)
        if record is None or not record.peer_ids:
            return "unreachable: no device record names where this device is"
        error = await self._direct(record, envelope)
        if (
            error is not None
            and error.startswith("unreachable")
            and await self.deposit(record, device, envelope)
        ):
            return DEPOSITED
        return error

    async def _direct(self, record: SignedDeviceRecord, envelope: bytes) -> str | None:
        peer = record.peer_ids[0]
        answer: DeliveryRefused | NotSent | None = NotSent.NO_CHANNEL
        try:
            with trio.fail_after(DELIVERY_TIMEOUT):
                if self.channel is not None:
                    answer = await self.channel.deliver(peer, envelope)
                if isinstance(answer, NotSent):  # no channel, or it closed unanswered
                    answer = await self._on_stream(peer, record.addrs, envelope)
        except InvalidInput as exc:
            return f"{exc.code}: {exc}"
        except (PeerUnreachable, trio.TooSlowError) as exc:
            return f"unreachable: {type(exc).__name__}"
        except REQUEST_ERRORS as exc:
            return f"unreachable: {type(exc).__name__}"
        if answer is None or answer.code in ALREADY_THERE:  # it has this message already
            return None
        if answer.code == GATE_REFUSED:  # what a stream the gate reset means
            return f"unreachable: {answer.code} ({answer.message})"
        return f"{answer.code}: {answer.message}"

    async def _on_stream(
        self, peer: str, addrs: Sequence[str], envelope: bytes
    ) -> DeliveryRefused | None:
        stream = await self.ctx.open_stream(peer, addrs, MESSAGE_PROTOCOL_ID)
        self.streams += 1
        try:
            await stream.write(frame(delivery_frame(envelope)))
            return decode_delivery_answer(await read_frame(stream, MAX_ANSWER_BYTES))
        finally:
            with contextlib.suppress(Exception):
                await stream.close()
