"""Serving this device's one-time prekeys on ``/smu/prekey/1`` (PROTOCOL.md
§19.16).

One request, one answer per stream.  The rate bound is taken before the
frame is read (a refused peer costs no parsing); the frame is size-checked
before it is decoded.  A fetch for this device paid with a token for this
node (``mailbox_key`` = the node's identity key, the key every mailbox
token of this node names) gets one unused key; the served key and the
spent token are written to ``prekey-offer.bin`` before the answer is
written (persist before acknowledging).  Anything else gets the answer
``serve`` gives (SIGNED_ONLY with its reason) or an ERROR.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import trio

from protocol.core.errors import InvalidInput
from protocol.messaging.prekey_fetch import (
    MAX_REQUEST_BYTES,
    ErrorAnswer,
    FetchLimiter,
    FetchRequest,
    decode_request,
)

from ..context import NodeContext
from ..gate import remote_peer
from ..prekeys import PrekeyKeeper
from ..transport import frame, read_frame
from .prekey_shelf import MailboxPrekeys

log = logging.getLogger("smu.prekeys")
REQUEST_TIMEOUT = 10.0


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class PrekeyServeService:
    def __init__(
        self, ctx: NodeContext, keeper: PrekeyKeeper, mailbox_key: bytes, token_key: bytes
    ) -> None:
        self.ctx = ctx
        self.keeper = keeper
        #: the key this node's tokens name (its identity key, §15.11)
        self.mailbox_key = mailbox_key
        self.token_key = token_key
        self.limiter = FetchLimiter.start(time.monotonic())
        #: the mailbox side: other devices' batches (set by the daemon)
        self.mailbox: MailboxPrekeys | None = None

    def answer(self, data: bytes, peer: str) -> bytes:
        """The answer frame to one request (never raises on bad input)."""
        try:
            request = decode_request(data)
        except InvalidInput as exc:
            return ErrorAnswer(exc.code, str(exc)).encode()
        account = self.ctx.account()
        device = self.ctx.device
        ours = account is not None and (request.account, request.device) == (
            account,
            device.sign_public,
        )
        if not ours or not isinstance(request, FetchRequest):
            if self.mailbox is None:
                return ErrorAnswer("not_here", "this node serves no such device").encode()
            # a device this node's mailbox holds a grant for (§19.16, At mailboxes)
            return self.mailbox.answer(request).encode()
        assert account is not None
        answer = self.keeper.serve(
            self.ctx.params,
            device,
            account,
            request,
            mailbox_key=self.mailbox_key,
            token_key=self.token_key,
            now_ms=_now_ms(),
        )
        return answer.encode()

    def replenish(self) -> None:
        """Keep a supply to serve (at start, and after each answer)."""
        account = self.ctx.account()
        if account is not None:
            self.keeper.replenish(self.ctx.params, self.ctx.device, account, _now_ms())

    async def on_stream(self, stream: Any) -> None:
        peer = remote_peer(stream)
        try:
            with trio.fail_after(REQUEST_TIMEOUT):
                if not self.limiter.allow(peer, time.monotonic()):
                    refusal = ErrorAnswer("rate_limited", "too many prekey fetches")
                    await stream.write(frame(refusal.encode()))
                    return
                data = await read_frame(stream, MAX_REQUEST_BYTES)
                await stream.write(frame(self.answer(data, peer)))
        except Exception as exc:  # the fetcher's stream is its business
            log.debug("prekey stream from %s ended: %s", peer, exc)
        finally:
            try:
                await stream.close()
            except Exception as exc:
                log.debug("prekey stream from %s: close failed: %s", peer, exc)
