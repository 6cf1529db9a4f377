"""One-time prekeys at this node's mailbox, and this device's uploads to its
own mailboxes (PROTOCOL.md §19.16, *At mailboxes*).

Holding: devices this node's mailbox holds a grant for upload batches on
``/smu/prekey/1`` (UPLOAD); the shelf (``protocol.messaging.prekey_shelf``)
checks them and serves each key once, paid with a token naming this
node's key, checked under the token key the device's grant names.  The
shelf lives in SQLite, one row per device (``node.storage.prekey_shelf``),
written before an answer that changed it; a request prunes only its own
device's offer, and the whole shelf is pruned hourly.

Uploading: every ``UPLOAD_INTERVAL`` this device looks at its grants; a
mailbox it has not uploaded to since the node started, or whose last
answer left fewer than ``OFFER_LOW_WATER`` keys unserved and was a while
ago, gets a new batch of its own (ids never held elsewhere).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import trio

from protocol.core.errors import InvalidInput
from protocol.messaging.prekey_fetch import (
    MAX_ANSWER_BYTES,
    OFFER_LOW_WATER,
    PROTOCOL_ID,
    Answer,
    ErrorAnswer,
    FetchRequest,
    OneTimeAnswer,
    SignedOnly,
    SignedOnlyAnswer,
    UploadedAnswer,
    UploadRequest,
    decode_answer,
)
from protocol.messaging.prekey_shelf import PrekeyShelf
from protocol.messaging.tokens import Token
from protocol.records.grant import Grant

from ..context import NodeContext
from ..prekeys import PrekeyKeeper
from ..transport import frame, read_frame

log = logging.getLogger("smu.prekeys")
#: how often this device looks at its grants (an in-memory check: a new
#: grant gets its first batch within this)
UPLOAD_INTERVAL = 10.0
#: a mailbox running low gets a new batch at most this often
REUPLOAD_MS = 6 * 3600 * 1000
REQUEST_TIMEOUT = 10.0


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


#: how often every device's expired batches and tokens are dropped
PRUNE_INTERVAL_MS = 3600 * 1000


class ShelfStore(Protocol):
    def load(self, now_ms: int) -> PrekeyShelf: ...

    def save(self, old: PrekeyShelf, new: PrekeyShelf) -> None: ...


class MailboxPrekeys:
    def __init__(
        self,
        ctx: NodeContext,
        store: ShelfStore,
        mailbox_key: bytes,
        grant_of: Callable[[bytes], Grant | None],
        spent: Callable[[bytes, bytes], bool] = lambda device, nonce: False,
        spend: Callable[[bytes, Token], None] = lambda device, token: None,
    ) -> None:
        self.ctx = ctx
        self.store = store
        self.mailbox_key = mailbox_key
        #: this node's mailbox's grant for a device, if it holds one
        self.grant_of = grant_of
        #: the mailbox's spent set for deposits: a fetch checks and adds to it
        self.spent = spent
        self.spend = spend
        self._shelf: PrekeyShelf | None = None
        self._pruned_ms = 0
        #: mailbox peer -> (when we last uploaded, the keys it then held)
        self.uploaded: dict[str, tuple[int, int]] = {}

    def shelf(self) -> PrekeyShelf:
        if self._shelf is None:
            self._shelf = self.store.load(_now_ms())
            self._pruned_ms = _now_ms()
        return self._shelf

    def _keep(self, shelf: PrekeyShelf) -> None:
        old = self.shelf()
        if shelf is not old:
            self.store.save(old, shelf)
            self._shelf = shelf

    def prune(self, now_ms: int) -> None:
        """Every device's expired batches and tokens, once an interval."""
        if now_ms - self._pruned_ms >= PRUNE_INTERVAL_MS:
            self._keep(self.shelf().pruned(now_ms))
            self._pruned_ms = now_ms

    def answer(self, request: FetchRequest | UploadRequest) -> Answer:
        """An upload or a fetch for a device this mailbox holds a grant for."""
        grant = self.grant_of(request.device)
        granted = grant is not None and grant.account == request.account
        now = _now_ms()
        shelf = self.shelf().pruned_device(request.device, now)
        if isinstance(request, UploadRequest):
            try:
                answer, shelf = shelf.upload(self.ctx.params, request, granted=granted, now_ms=now)
            except InvalidInput as exc:
                return ErrorAnswer(exc.code, str(exc))
        else:
            if grant is None or not granted:
                return ErrorAnswer("not_here", "this node serves no such device")
            token = request.token
            # one spent set with the mailbox's deposits (§15.16)
            if token is not None and self.spent(request.device, token.nonce):
                return SignedOnlyAnswer(SignedOnly.TOKEN_SPENT)
            answer, shelf = shelf.fetch(
                self.ctx.params, request, mailbox_key=self.mailbox_key,
                token_key=grant.token_key, now_ms=now,
            )  # fmt: skip
            if token is not None and isinstance(answer, OneTimeAnswer):
                # the key served first, then the token spent: a crash between
                # lets the token pay once more, never a key go out twice
                self._keep(shelf)
                self.spend(request.device, token)
        self._keep(shelf)  # on disk before the answer leaves
        return answer

    # -- uploading ours -------------------------------------------------------------

    async def run_uploads(
        self,
        keeper: PrekeyKeeper,
        grants: Callable[[], Sequence[tuple[Grant, Sequence[str]]]],
    ) -> None:
        while True:
            await trio.sleep(UPLOAD_INTERVAL)
            self.prune(_now_ms())
            account = self.ctx.account()
            if account is not None:
                for grant, addrs in grants():
                    if grant.mailbox_peer != self.ctx.peer_id and self._due(grant, _now_ms()):
                        await self._upload(keeper, account, grant, tuple(addrs))

    def _due(self, grant: Grant, now: int) -> bool:
        last = self.uploaded.get(grant.mailbox_peer)
        return last is None or (last[1] < OFFER_LOW_WATER and now - last[0] >= REUPLOAD_MS)

    async def _upload(
        self, keeper: PrekeyKeeper, account: bytes, grant: Grant, addrs: tuple[str, ...]
    ) -> None:
        now = _now_ms()
        batch = keeper.batch_for(self.ctx.params, self.ctx.device, account, now)
        request = UploadRequest(account, self.ctx.device.sign_public, batch).encode()
        answer: Answer | None = None
        try:
            with trio.fail_after(REQUEST_TIMEOUT):
                stream = await self.ctx.open_stream(grant.mailbox_peer, addrs, PROTOCOL_ID)
                try:
                    await stream.write(frame(request))
                    answer = decode_answer(await read_frame(stream, MAX_ANSWER_BYTES))
                finally:
                    with contextlib.suppress(Exception):
                        await stream.close()
        except Exception as exc:  # the batch's keys stay unused and expire
            log.debug("prekey upload to %s failed: %s", grant.mailbox_peer, exc)
        unserved = answer.unserved if isinstance(answer, UploadedAnswer) else 0
        # a refusal counts as an attempt too: retried after REUPLOAD_MS
        self.uploaded[grant.mailbox_peer] = (now, unserved)
