"""The machine contract (PROTOCOL.md §18): how every sans-I/O machine of
``protocol`` is driven.

* Every entry point takes one ``Now``: the monotonic clock (seconds, for
  timeouts, budgets and back-offs) and the wall clock (Unix ms, for signed
  timestamps and the expiry of signed things) read at the same instant.  A
  machine never reads a clock itself.
* Every entry point returns what to send and what happened, as a list of
  frozen values (the machine's ``Output`` union); nothing is reported
  through attributes or callbacks.
* One timer pair, the same names everywhere: ``next_deadline()`` is the
  monotonic time at which the machine wants ``tick(now)`` called, or None.
  A driver calls ``tick`` then (not earlier than it asks, and not on a
  polling schedule) and asks again after every call.

``node/driver.py`` runs any such machine over trio; ``simnet`` drives the
same machines under virtual time, with ``Now.virtual``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

#: machine time 0 as Unix ms under virtual time (tests and simnet): a fixed
#: date, so runs stay deterministic (2025-06-15T15:06:40Z)
SIM_EPOCH_MS = 1_750_000_000_000


@dataclass(frozen=True, slots=True)
class Now:
    """Both clocks, read at one instant."""

    #: monotonic seconds (any origin): timers, budgets, back-offs
    mono: float
    #: Unix milliseconds: signed timestamps, expiry of records and grants
    wall_ms: int

    @classmethod
    def virtual(cls, t: float, epoch_ms: int = SIM_EPOCH_MS) -> Now:
        """Virtual time ``t`` (seconds) with the wall clock ``epoch_ms + t``."""
        return cls(t, epoch_ms + int(t * 1000))

    def later(self, seconds: float) -> Now:
        """The same clocks ``seconds`` from now (for tests and tools)."""
        return Now(self.mono + seconds, self.wall_ms + int(seconds * 1000))

    def mono_at_wall(self, wall_ms: int) -> float:
        """The monotonic time at which the wall clock will read ``wall_ms``
        (for deadlines of things that expire by the wall clock)."""
        return self.mono + (wall_ms - self.wall_ms) / 1000


OutputT_co = TypeVar("OutputT_co", covariant=True)


class Machine(Protocol[OutputT_co]):
    """What every machine offers its driver: the timer pair."""

    def next_deadline(self) -> float | None:
        """Monotonic seconds at which ``tick`` is due, or None for never."""
        ...

    def tick(self, now: Now) -> Sequence[OutputT_co]:
        """Run what is due at ``now``."""
        ...
