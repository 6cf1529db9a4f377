"""The node's clocks, read in one place (PROTOCOL.md §18).

Machines never read a clock: the node reads both here and passes them in.
libp2p's own services (Noise, Yamux, identify, ping) keep their own clocks;
nothing of theirs reaches a protocol machine.
"""

from __future__ import annotations

import time

import trio

from protocol.core.machine import Now


def clock_now() -> Now:
    """trio's monotonic clock (so deadlines match ``trio.sleep_until``) and
    the wall clock, read together."""
    return Now(trio.current_time(), time.time_ns() // 1_000_000)
