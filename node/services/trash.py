"""The account's trash: deleting and restoring messages on every device
(PROTOCOL.md §15.19, key ``trash/<sender account>/<message id>``).

A delete is a synced edit, so it hides the message on every device of the
account; it is purged only ``TRASH_DAYS`` after it was deleted.  Until then
it can be restored, and if the deleting device is revoked before its edit
was seen by the revocation, the edit is undone (sync validity follows the
log) and the message is back: a stolen device cannot wipe the history
everywhere at once, only hide it for as long as the owner takes to revoke
it (up to ``TRASH_DAYS``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

import trio

from protocol.core.canonical import Value
from protocol.messaging.sync import Edit

from .. import control
from ..api import message as api
from ..api.schema import Empty
from ..control import RpcFailure
from ..storage.messages import MessageStore

log = logging.getLogger("smu.trash")

TRASH_DAYS = 30
TRASH_MS = TRASH_DAYS * 24 * 3600 * 1000
#: ids in one delete or restore call
MAX_IDS_PER_CALL = 500
PREFIX = "trash/"


def trash_key(sender_account: bytes, message_id: bytes) -> str:
    return f"{PREFIX}{sender_account.hex()}/{message_id.hex()}"


def _parse_key(key: str) -> tuple[bytes, bytes] | None:
    try:
        sender, mid = key[len(PREFIX) :].split("/")
        return bytes.fromhex(sender), bytes.fromhex(mid)
    except ValueError:
        return None  # an unknown form from a newer device: kept, ignored


class Sync(Protocol):
    def view(self, prefix: str) -> dict[str, Edit]: ...

    def edit(self, key: str, value: Value) -> Edit | None: ...


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class TrashService:
    def __init__(
        self,
        store: MessageStore,
        sync: Sync,
        *,
        clock_ms: Callable[[], int] = _now_ms,
    ) -> None:
        self.store = store
        self.sync = sync
        self.now_ms = clock_ms
        self._wake = trio.Event()

    def handlers(self) -> dict[str, control.Handler]:
        return {
            "message.delete": api.MESSAGE_DELETE.bind(self.delete),
            "message.restore": api.MESSAGE_RESTORE.bind(self.restore),
            "message.trash": api.MESSAGE_TRASH.bind(self.list_trash),
        }

    def trashed(self) -> dict[tuple[bytes, bytes], int]:
        """(sender account, message id) -> when it was deleted (ms)."""
        out = {}
        for key, edit in self.sync.view(PREFIX).items():
            parsed = _parse_key(key)
            value = edit.value
            if parsed is not None and type(value) is int and value > 0:
                out[parsed] = value
        return out

    def hidden(self) -> set[tuple[bytes, bytes]]:
        return set(self.trashed())

    def changed(self) -> None:
        """The synced state changed: a purge may be due sooner."""
        self._wake.set()

    def _ids(self, params: api.IdsParams) -> list[bytes]:
        raw = params["ids"]
        if not 0 < len(raw) <= MAX_IDS_PER_CALL:
            raise RpcFailure(control.USAGE, f"give 1 to {MAX_IDS_PER_CALL} message ids")
        try:
            return [bytes.fromhex(i) for i in raw]
        except ValueError as exc:
            raise RpcFailure(control.USAGE, "a message id is hex") from exc

    def _edit(self, sender: bytes, message_id: bytes, value: int) -> None:
        if self.sync.edit(trash_key(sender, message_id), value) is None:
            raise RpcFailure(control.USAGE, "this device has no account yet")

    async def delete(self, params: api.IdsParams) -> api.Deleted:
        ids = self._ids(params)
        now = self.now_ms()
        done, unknown = [], []
        for mid in ids:
            row = self.store.by_id(mid)
            if row is None:
                unknown.append(mid.hex())
                continue
            self._edit(row.sender_account, mid, now)
            done.append(mid.hex())
        self._wake.set()
        return {"deleted": done, "unknown": unknown, "purged_after_days": TRASH_DAYS}

    async def restore(self, params: api.IdsParams) -> api.Restored:
        ids = set(self._ids(params))
        restored = []
        for (sender, mid), _ in self.trashed().items():
            if mid in ids:
                self._edit(sender, mid, 0)
                restored.append(mid.hex())
        return {
            "restored": sorted(restored),
            "unknown": sorted(m.hex() for m in ids if m.hex() not in restored),
        }

    async def list_trash(self, params: Empty) -> api.Trash:
        out: list[api.TrashItem] = []
        for (sender, mid), deleted_ms in sorted(self.trashed().items(), key=lambda kv: kv[1]):
            row = self.store.by_id(mid, sender)
            out.append(
                {
                    "message_id": mid.hex(),
                    "sender_account": sender.hex(),
                    "deleted_ms": deleted_ms,
                    "purge_ms": deleted_ms + TRASH_MS,
                    # None once purged here (or never received by this device)
                    "text": None if row is None else row.text,
                }
            )
        return {"trash": out}

    def purge_due(self) -> int | None:
        """Purge what has been in the trash for ``TRASH_DAYS``; when the next
        purge is due (ms), or None."""
        now = self.now_ms()
        due = []
        next_ms = None
        for (sender, mid), deleted_ms in self.trashed().items():
            at = deleted_ms + TRASH_MS
            if at <= now:
                if self.store.by_id(mid, sender) is not None:
                    due.append((sender, mid))
            else:
                next_ms = at if next_ms is None else min(next_ms, at)
        if due:
            self.store.db.write([s for key in due for s in MessageStore.purge_statements(*key)])
            log.info("purged %d messages from the trash", len(due))
        return next_ms

    async def run(self) -> None:
        while True:
            next_ms = self.purge_due()
            wait = 3600.0 if next_ms is None else max(1.0, (next_ms - self.now_ms()) / 1000)
            with trio.move_on_after(min(wait, 3600.0)):
                await self._wake.wait()
            self._wake = trio.Event()
