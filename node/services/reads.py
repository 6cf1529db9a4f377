"""What the user has read: read marks, account-wide (PROTOCOL.md §15.19).

A read mark says that a conversation was read up to a message's
``sent_ms`` (the sender's timestamp, the same on every device, where the
time a device stored it is not).  Marking a conversation read signs the
sync edit ``read/<account hex>`` (``services/sync.py``), so a read on one
device clears the unread count on the account's other devices.  The local
``read_marks`` table (``storage/reads.py``) is a cache of the highest mark
this device knows of, its own or a synced one: a mark never moves back, so
that an edit that loses a key's order (two devices marking at once, the
lower mark with the later clock) never makes read messages unread again.

A device that holds a higher mark than the synced winner says so again
(one edit), so every device ends at the highest mark made anywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from protocol.core.canonical import Value
from protocol.messaging.sync import Edit

from .. import control
from ..api import message as api
from ..api.schema import Empty
from ..context import NodeContext
from ..storage.messages import KIND_TEXT
from ..storage.reads import ReadStore, Summary
from .contacts import Sync

log = logging.getLogger("smu.reads")

READ_PREFIX = "read/"


def read_key(account: bytes) -> str:
    return f"{READ_PREFIX}{account.hex()}"


def mark_value(value: Value | None) -> int:
    """A synced mark's value: a uint, anything else none (an unknown or
    malformed value from a newer version is ignored, never an error)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return 0


class ReadMarks:
    def __init__(self, ctx: NodeContext, store: ReadStore, sync: Sync) -> None:
        self.ctx = ctx
        self.store = store
        self.sync = sync
        #: (sender account, message id) in the account's trash: not counted
        self.hidden: Callable[[], set[tuple[bytes, bytes]]] = set
        #: told after a mark moved (the web app's open pages refresh counts)
        self.on_changed: list[Callable[[], None]] = []
        self._reasserting = False
        #: the marks said again, per conversation (each at most once)
        self._said: dict[bytes, int] = {}

    def handlers(self) -> dict[str, control.Handler]:
        return {
            "message.read": api.MESSAGE_READ.bind(self.message_read),
            "message.unread": api.MESSAGE_UNREAD.bind(self.message_unread),
        }

    def mark(self, peer: bytes) -> int:
        return max(self.store.mark(peer), mark_value(self.sync.value(read_key(peer))))

    def mark_read(self, peer: bytes, up_to_ms: int | None = None) -> int:
        """Mark the conversation with ``peer`` read up to ``up_to_ms`` (a
        ``sent_ms``; default: its newest incoming message), on every device
        of the account; the mark now in force."""
        newest = self.store.newest_incoming(peer)
        target = newest if up_to_ms is None else min(up_to_ms, newest)
        current = self.mark(peer)
        if target <= current:
            return current
        self.store.mark_read(peer, target)
        self._edit(peer, target)
        self._tell()
        return target

    def _edit(self, peer: bytes, value: int) -> Edit | None:
        # None: no account log yet (nothing to sync with); the cache holds it
        return self.sync.edit(read_key(peer), value)

    def synced(self) -> None:
        """The account-wide state changed (the sync service's listener):
        take in higher marks, and say again a higher one this device holds
        (once per mark: an edit of a device that no longer counts never
        wins, and must not be said again on every change)."""
        if self._reasserting:
            return
        synced: dict[bytes, int] = {}
        for key, edit in self.sync.view(READ_PREFIX).items():
            try:
                peer = bytes.fromhex(key[len(READ_PREFIX) :])
            except ValueError:
                continue
            if len(peer) == 32:
                synced[peer] = mark_value(edit.value)
        cached = self.store.marks()
        higher = {p: v for p, v in synced.items() if v > cached.get(p, 0)}
        if higher:
            self.store.mark_all(higher)
        for peer, mine in cached.items():
            if mine > synced.get(peer, 0) and self._said.get(peer) != mine:
                self._said[peer] = mine
                self._reasserting = True  # our own edit calls ``synced`` again
                try:
                    self._edit(peer, mine)
                finally:
                    self._reasserting = False
        if higher:
            self._tell()

    def _tell(self) -> None:
        for listener in self.on_changed:
            try:
                listener()
            except Exception:
                log.exception("a read-mark listener failed")

    def summaries(self, kind: int) -> dict[bytes, Summary]:
        return self.store.summaries(kind, self.hidden())

    async def message_read(self, params: api.ReadParams) -> api.ReadMark:
        """``message.read``: ``contact`` (name, handle or account id) and
        ``up_to_ms`` (optional): the mark in force afterwards."""
        account = self.ctx.resolve_account(params["contact"])
        up_to = params.get("up_to_ms")
        return {"account_id": account.hex(), "read_ms": self.mark_read(account, up_to)}

    async def message_unread(self, params: Empty) -> api.Unread:
        """``message.unread``: per conversation with messages, the unread
        count and the mark in force (contacts only: requests are apart)."""
        out: list[api.UnreadConversation] = []
        for peer, s in sorted(self.summaries(KIND_TEXT).items()):
            if self.ctx.contacts.is_contact(peer):
                out.append(
                    {
                        "account_id": peer.hex(),
                        "conversation": self.ctx.contacts.label(peer),
                        "unread": s.unread,
                        "read_ms": self.mark(peer),
                    }
                )
        return {"conversations": out}
