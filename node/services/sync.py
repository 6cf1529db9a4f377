"""Account-wide state on a running node (PROTOCOL.md §15.19; DESIGN §6).

The adapter for ``protocol.messaging.sync``: a change this device makes is
signed as an edit, merged here, stored, and sealed (content kind 32) to the
own account, whose envelope wraps the key for this account's other active
devices only; an edit from one of them is checked, merged and stored in the
transaction that stores its envelope's replay state.  A device linked later
gets every edit held (a snapshot), in batches, with its history.

What is synced: contacts (``contact/<account>``: ``{"name": ...}``, or an
empty map once removed), blocks (``block/<account>``: true or false),
verification marks per recovery epoch (``verified/<account>/<epoch>``),
read markers (``read/<account>``: the ``sent_ms`` read up to;
``services/reads.py``) and the trash
(``trash/<sender account>/<message id>``: when it was deleted, or 0 once
restored).  ``ContactSet`` reads contacts, blocks and marks from here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import trio

from protocol.core.canonical import Value
from protocol.core.errors import InvalidInput
from protocol.messaging.sync import (
    MAX_EDITS_PER_BATCH,
    MAX_HEADS,
    Edit,
    HybridClock,
    LedgerView,
    Offer,
    SyncBook,
    SyncEdits,
    SyncError,
    SyncForgedError,
    decode_edit,
    decode_edits,
    make_edit,
)

from ..context import NodeContext
from ..storage.db import Statement
from ..storage.sync import SyncStore
from ..tasks import TaskStatus

log = logging.getLogger("smu.sync")

#: seal a SYNC_EDITS content to the own account (only: to these devices)
SendOwn = Callable[[SyncEdits, "list[bytes] | None"], object]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class SyncService:
    def __init__(self, ctx: NodeContext, store: SyncStore) -> None:
        self.ctx = ctx
        self.store = store
        self.clock = HybridClock(store.clock())
        self.book: SyncBook | None = None
        self._log: LedgerView | None = None
        #: set by the daemon once messages can be sealed
        self.send: SendOwn | None = None
        #: told after the merged state changed (the web app, the contact set)
        self.on_changed: list[Callable[[], None]] = []
        self._wake = trio.Event()

    # -- the book, once this device has an account ------------------------

    def _ready(self) -> tuple[SyncBook, LedgerView] | None:
        account = self.ctx.account()
        if account is None or account not in self.ctx.ledger.accounts:
            return None
        if self.book is None or self.book.account != account:
            self.book = SyncBook(self.ctx.params, account)
            self._log = LedgerView(self.ctx.ledger, account)
            self._load(self.book, self._log)
        assert self._log is not None
        return self.book, self._log

    def _load(self, book: SyncBook, log_view: LedgerView) -> None:
        now = _now_ms()
        for raw in self.store.edits() + self.store.waiting():
            try:
                edit = decode_edit(raw, self.ctx.params, verify=False)  # checked before stored
                book.offer(edit, log_view, now)
            except InvalidInput as exc:
                log.warning("a stored edit no longer decodes (%s); dropped", exc.code)

    def log_changed(self) -> None:
        """The own account's log grew: edits waiting for events may merge."""
        self._wake.set()

    async def run(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Merge waiting edits when what they wait for comes: events (woken
        by ``log_changed``) or our clock reaching theirs."""
        task_status.started()
        while True:
            ready = self._ready()
            wait = float("inf")
            if ready is not None:
                book, log_view = ready
                merged = book.retry(log_view, _now_ms())
                if merged:
                    self._persist(merged, [])
                due = book.next_clock_ms()
                if due is not None:
                    wait = max(0.01, (due - _now_ms()) / 1000)
            with trio.move_on_after(wait):
                await self._wake.wait()
            self._wake = trio.Event()

    # -- changes made here ----------------------------------------------------

    def edit(self, key: str, value: Value) -> Edit | None:
        """Make, merge, store and send one edit; None before this device has
        an account (nothing to sync with)."""
        ready = self._ready()
        if ready is None:
            return None
        book, log_view = ready
        account = book.account
        # the 8 highest heads (an edit names at most MAX_HEADS, §15.19)
        heads = sorted(self.ctx.ledger.state(account).heads, key=lambda h: (log_view.height(h), h))[
            -MAX_HEADS:
        ]
        now = _now_ms()
        edit = make_edit(
            self.ctx.params, self.ctx.device, account, heads, self.clock.next(now), key, value
        )
        book.offer(edit, log_view, now)
        self._persist([edit], [])
        self._send([edit], None)
        return edit

    def _send(self, edits: list[Edit], only: list[bytes] | None) -> None:
        if self.send is None:
            return
        for i in range(0, len(edits), MAX_EDITS_PER_BATCH):
            try:
                self.send(SyncEdits.of(edits[i : i + MAX_EDITS_PER_BATCH]), only)
            except Exception as exc:  # RpcFailure: no other device yet, or not active
                log.debug("sync edits not sent: %s", exc)

    def _persist(self, merged: Iterable[Edit], waiting: Iterable[Edit]) -> None:
        self.store.db.write(
            [
                *(self.statements_for(merged, waiting)),
                SyncStore.clock_statement(self.clock.last),
            ]
        )
        for listener in self.on_changed:
            listener()

    def statements_for(self, merged: Iterable[Edit], waiting: Iterable[Edit]) -> list[Statement]:
        out: list[Statement] = []
        for e in merged:
            raw = e.encode()
            out.append(self.store.put_statement(e.key, e.device, raw))
            out.append(SyncStore.unwait_statement(raw))
        out.extend(self.store.wait_statement(e.encode()) for e in waiting)
        return out

    # -- edits from the account's other devices ---------------------------

    def receive_statements(self, batch: SyncEdits) -> tuple[list[Statement], int]:
        """Check and merge a batch that arrived in an envelope from one of
        this account's devices; the statements that store it (for the
        envelope's transaction) and how many edits merged.  Raises
        ``InvalidInput`` (a forged edit) before anything is merged."""
        ready = self._ready()
        if ready is None:
            return [], 0
        book, log_view = ready
        edits = decode_edits(batch, self.ctx.params)
        # every check that refuses the batch before any edit is merged
        if any(e.account != book.account for e in edits):
            raise SyncForgedError("an edit for another account")
        now = _now_ms()
        merged, waiting = [], []
        for e in edits:
            try:
                verdict = book.offer(e, log_view, now)
            except SyncError as exc:  # over the device's key cap: this edit only
                log.info("a sync edit dropped: %s", exc)
                continue
            self.clock.observe(e.clock, now)
            if verdict is Offer.MERGED:
                merged.append(e)
            elif verdict in (Offer.WAITING_CLOCK, Offer.WAITING_LOG):
                waiting.append(e)
        if waiting:
            self._wake.set()
        rows = self.statements_for(merged, waiting)
        rows.append(SyncStore.clock_statement(self.clock.last))
        return rows, len(merged)

    def all_edits(self) -> list[Edit]:
        """Every edit held (what a backup keeps)."""
        ready = self._ready()
        return [] if ready is None else list(ready[0].edits())

    def changed(self) -> None:
        for listener in self.on_changed:
            listener()

    def send_snapshot(self, device: bytes) -> None:
        """Everything held, to a device this one just approved."""
        ready = self._ready()
        if ready is None:
            return
        book, _ = ready
        edits = list(book.edits())
        if edits:
            self._send(edits, [device])

    # -- the merged state -------------------------------------------------------

    def value(self, key: str) -> Value | None:
        ready = self._ready()
        if ready is None:
            return None
        book, log_view = ready
        w = book.winner(key, log_view)
        return None if w is None else w.value

    def winner(self, key: str) -> Edit | None:
        ready = self._ready()
        if ready is None:
            return None
        book, log_view = ready
        return book.winner(key, log_view)

    def view(self, prefix: str) -> dict[str, Edit]:
        ready = self._ready()
        if ready is None:
            return {}
        book, log_view = ready
        return book.view(log_view, prefix)

    def status(self) -> dict[str, object]:
        ready = self._ready()
        if ready is None:
            return {"active": False}
        book, _ = ready
        return {"active": True, "edits": len(book), "waiting": book.waiting}
