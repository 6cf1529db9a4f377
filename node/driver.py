"""The one driver of every sans-I/O machine (PROTOCOL.md §18).

``MachineDriver`` feeds a machine the clocks at every call, hands what the
call returned to the adapter's ``execute``, and re-arms the machine's own
timer from ``next_deadline()`` after every call: no polling loop, and no
clock read inside ``protocol/``.  Exceptions are not caught here: a machine
never raises for remote input (its refusals are outputs), so an exception
is a bug and stops the node loudly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import trio

from protocol.core.machine import Machine, Now

from .clock import clock_now
from .tasks import TaskStatus

O = TypeVar("O")  # noqa: E741 - the machine's output type

#: a deadline already past is run no sooner than this after the last tick,
#: so a machine that forgets to move its deadline cannot spin the loop
MIN_TICK_GAP = 0.001


class MachineDriver(Generic[O]):
    def __init__(
        self,
        name: str,
        machine: Machine[O],
        execute: Callable[[Sequence[O]], object],
        clock: Callable[[], Now] = clock_now,
    ) -> None:
        self.name = name
        self.machine = machine
        self.execute = execute
        self.clock = clock
        self._scope: trio.CancelScope | None = None
        self._last_tick = -math.inf
        self.ticks = 0

    def call(self, entry: Callable[[Now], Sequence[O]]) -> Sequence[O]:
        """Run one entry point with the clocks, carry out its outputs, re-arm."""
        outputs = entry(self.clock())
        self.execute(outputs)
        self._rearm()
        return outputs

    def rearm(self) -> None:
        """The machine changed outside ``call`` (a query that moved state)."""
        self._rearm()

    def _rearm(self) -> None:
        if self._scope is None:
            return
        deadline = self.machine.next_deadline()
        if deadline is None:
            self._scope.deadline = math.inf
        else:
            self._scope.deadline = max(deadline, self._last_tick + MIN_TICK_GAP)

    async def run(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Wake at the machine's deadline, ``tick`` it, and wait again."""
        started = False
        while True:
            with trio.CancelScope() as scope:
                self._scope = scope
                self._rearm()
                if not started:
                    started = True
                    task_status.started()
                await trio.sleep(math.inf)  # until the deadline, or for ever
            self._scope = None
            if scope.cancelled_caught:
                self._last_tick = trio.current_time()
                self.ticks += 1
                self.call(self.machine.tick)
