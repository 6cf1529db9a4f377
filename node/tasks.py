"""``TaskStatus`` for annotations.  libp2p depends on trio-typing, whose
``trio-stubs`` shadow trio's own inline types for mypy and have no
``trio.TaskStatus``; at run time trio's own class is used."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trio_typing import TaskStatus as TaskStatus
else:
    from trio import TaskStatus as TaskStatus

__all__ = ["TaskStatus"]
