"""The node's disk budget (PROTOCOL.md §13.3).

Two limits, checked together: the budget the operator set for the database
(``disk_budget_mb``; SQLite itself refuses to grow past it, with
SQLITE_FULL), and the free space of the disk under the data directory.
The node stops *accepting* (new events, messages, deposits from the
network; sends from the user) once what is left under either limit is
below a reserve, so that what is already in flight still commits; it keeps
serving what it holds.  A write that hits the limit anyway rolls back
whole (``DiskFullError``): nothing is ever half written.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass

from .db import Database

#: kept free under either limit for what is already in flight
RESERVE_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class BudgetState:
    used_bytes: int
    budget_bytes: int | None
    disk_free_bytes: int
    full: bool
    reason: str | None


def _disk_free(db: Database) -> int:
    return shutil.disk_usage(db.path.parent).free


class DiskBudget:
    def __init__(
        self,
        db: Database,
        budget_bytes: int | None,
        *,
        reserve_bytes: int = RESERVE_BYTES,
        disk_free: Callable[[Database], int] = _disk_free,
    ) -> None:
        if budget_bytes is not None and budget_bytes <= reserve_bytes:
            raise ValueError(f"a disk budget must exceed the reserve of {reserve_bytes} bytes")
        self.db = db
        self.budget_bytes = budget_bytes
        self.reserve_bytes = reserve_bytes
        self._disk_free = disk_free
        db.limit_bytes(budget_bytes)
        self.state = self.check()

    def check(self) -> BudgetState:
        used = self.db.used_bytes()
        free = self._disk_free(self.db)
        reason = None
        if self.budget_bytes is not None and used >= self.budget_bytes - self.reserve_bytes:
            reason = (
                f"the node's disk budget of {self.budget_bytes // (1024 * 1024)} MiB is full "
                f"({used // (1024 * 1024)} MiB used)"
            )
        elif free < self.reserve_bytes:
            reason = f"the disk under {self.db.path.parent} is full ({free // 1024} KiB free)"
        self.state = BudgetState(used, self.budget_bytes, free, reason is not None, reason)
        return self.state

    @property
    def full(self) -> bool:
        return self.state.full
