"""Divergence on receiving (S5, DESIGN §9; PROTOCOL.md §15.5): a sender's
views name heads this node lacks, so it reconciles with every peer, at
most every ``DIVERGENCE_INTERVAL`` per account, and tells the user."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import trio

from protocol.messaging.envelope import HeadsView

from ..context import NodeContext
from .contacts import ContactSet

DIVERGENCE_INTERVAL = 10.0
#: S5 notices kept for the inbox, newest last
MAX_NOTICES = 100


class Divergence:
    def __init__(
        self,
        ctx: NodeContext,
        contacts: ContactSet,
        reconcile_all: Callable[[], None],
        notices: list[tuple[int, str]],
        clock_ms: Callable[[], int],
    ) -> None:
        self.ctx = ctx
        self.contacts = contacts
        #: start a reconciliation with every linked peer
        self.reconcile_all = reconcile_all
        #: the inbox's notices (shared with the message service)
        self.notices = notices
        self.now_ms = clock_ms
        #: per account (b"" for "any"), when it last caused a reconciliation
        self.last: dict[bytes, float] = {}

    def catch_up(self) -> None:
        """Reconcile now, at most every DIVERGENCE_INTERVAL (anyone can do this)."""
        now = trio.current_time()
        if now - self.last.get(b"", -1e9) >= DIVERGENCE_INTERVAL:
            self.last[b""] = now
            self.reconcile_all()

    def diverged(self, views: Sequence[HeadsView]) -> None:
        """The sender saw heads of an account that we lack (S5): reconcile with
        every peer now, at most every DIVERGENCE_INTERVAL per account, and
        tell the user.  Only accounts this node holds count: the views may
        come from a sender we cannot authenticate yet, so made-up account ids
        must cost nothing."""
        now = trio.current_time()
        ledger = self.ctx.ledger
        for view in views:
            if view.account not in ledger.accounts:
                continue
            lacking = [h for h in view.foreign_heads if not ledger.has(h)]
            if not lacking:
                continue
            if now - self.last.get(view.account, -1e9) < DIVERGENCE_INTERVAL:
                continue
            self.last[view.account] = now
            self.reconcile_all()
            self.notices.append(
                (
                    self.now_ms(),
                    (
                        f"a message showed {len(lacking)} event(s) of "
                        f"{self.contacts.label(view.account)}'s account that your peers had not "
                        "given you yet; this node is fetching them (if it keeps happening, your "
                        "peers may be withholding them)"
                    ),
                )
            )
            del self.notices[:-MAX_NOTICES]
