"""Persist before forwarding or acknowledging (DESIGN §2, §10).

A machine call may stage events in the store and return frames that
forward them.  ``Effects`` holds such outputs, in order, until a commit that
covers everything staged before them has finished, then carries them out.
One commit covers every batch waiting at that moment (group commit).  If a
commit fails, nothing waiting is carried out, ever: the error stops the
node, whose memory is then ahead of its disk, and a restart loads what is
stored and fetches the rest again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import trio

O = TypeVar("O")  # noqa: E741 - the outputs carried out


class CommitFailed(Exception):
    """The store could not commit; nothing that depended on it was done."""


class Effects(Generic[O]):
    def __init__(
        self,
        commit: Callable[[], Awaitable[None]],
        execute: Callable[[Sequence[O]], None],
    ) -> None:
        self._commit = commit
        self._execute = execute
        self._waiting: deque[Sequence[O]] = deque()
        self._wake = trio.Event()
        #: batches handed in, and batches whose commit is done
        self._submitted = 0
        self._durable = 0
        self._durable_changed = trio.Event()
        self.failed: BaseException | None = None
        self.commits = 0

    def submit(self, outputs: Sequence[O]) -> int:
        """Queue outputs until their commit; the ticket to ``durable``."""
        if self.failed is not None:
            raise CommitFailed("the store failed; the node is stopping") from self.failed
        self._submitted += 1
        self._waiting.append(outputs)
        self._wake.set()
        return self._submitted

    async def durable(self, ticket: int | None = None) -> None:
        """Return once everything submitted up to ``ticket`` (default: so
        far) is committed; raise ``CommitFailed`` if the commit failed."""
        target = self._submitted if ticket is None else ticket
        if target > self._durable:
            # a ticket with nothing queued behind it still needs a commit
            self._wake.set()
        while self._durable < target:
            if self.failed is not None:
                raise CommitFailed("the store failed; nothing was acknowledged") from self.failed
            await self._durable_changed.wait()
        if self.failed is not None and self._durable < target:
            raise CommitFailed("the store failed") from self.failed

    async def run(self) -> None:
        """Commit, then carry out what waited for it, in order."""
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            batches = list(self._waiting)
            self._waiting.clear()
            target = self._submitted
            try:
                await self._commit()
            except BaseException as exc:
                self.failed = exc
                self._waiting.clear()
                self._durable_changed.set()
                raise
            self.commits += 1
            self._durable = max(self._durable, target)
            changed, self._durable_changed = self._durable_changed, trio.Event()
            changed.set()
            for outputs in batches:
                self._execute(outputs)
