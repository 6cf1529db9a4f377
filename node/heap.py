"""The garbage collector's schedule for a long-running node.

A node holds every account of the network in memory (DESIGN §9), so its
heap is large and grows with the log.  CPython's default schedule collects
the youngest generation every 700 container allocations and, each time the
old generations grow by a quarter, walks the whole heap: the libraries and
modules of start-up included.  Measured on a catch-up of 20,000 events
(bench/catchup.py), that was about a sixth of the event loop's CPU, all of
it holding the GIL the verifying threads wait for.

The daemon collects the youngest generation less often (``space_out``)
from its start, and once it is built (modules imported, the stored log
loaded) ``settle`` moves what exists then, which lives as long as the
process, out of the collector's sight (``gc.freeze``).  Reference counting
still frees everything that is not in a cycle at once, frozen or not; a
cycle among start-up's objects is never collected (a one-time amount), and
later cyclic garbage waits at most ``YOUNG_THRESHOLD`` allocations longer.
"""

from __future__ import annotations

import gc

#: container allocations between collections of the youngest generation
#: (CPython's default: 700); the older generations keep their defaults
YOUNG_THRESHOLD = 20_000


def space_out() -> None:
    """Collect the youngest generation less often (before the log loads)."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


def settle() -> None:
    """Collect once and freeze what start-up made (after it)."""
    space_out()
    gc.collect()
    gc.freeze()
