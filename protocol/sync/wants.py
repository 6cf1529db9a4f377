"""Ids a peer offered, waiting to be requested from it (PROTOCOL.md §11.4.3).

Reconciliation hands over missing ids in id order, which says nothing about
the DAG; fetched in that order, about a third of a large catch-up would
arrive before its parents and wait in the escrow.  So each listed id comes
with the peer's *rank* for it (its position in the peer's account log,
§11.3.1), and ids are requested lowest rank first: every parent is then
asked for no later than its children, and the answer to one request is
itself in acceptance order.

Ids that were only announced have no rank; they go after every ranked id.
An id whose request failed elsewhere goes first.
"""

from __future__ import annotations

import heapq

from protocol.sync.reconcile import MAX_RANK

#: announced ids: after everything a reconciliation listed
ANNOUNCED = MAX_RANK + 1
#: a request that failed at another peer: before everything
RETRY = -1


class WantQueue:
    """A set of ids popped lowest rank first, then first come first."""

    __slots__ = ("_added", "_heap", "_key", "_slack")

    def __init__(self, slack: int = 1024) -> None:
        #: stale heap entries allowed beyond one per queued id before a sweep
        self._slack = slack
        #: id -> (rank, arrival): the one heap entry that counts for it
        self._key: dict[bytes, tuple[int, int]] = {}
        # (rank, arrival, id); an entry that is not its id's key is stale
        # (the id was popped or ranked lower since) and is skipped
        self._heap: list[tuple[int, int, bytes]] = []
        self._added = 0

    def __len__(self) -> int:
        return len(self._key)

    def __bool__(self) -> bool:
        return bool(self._key)

    def __contains__(self, event_id: bytes) -> bool:
        return event_id in self._key

    def add(self, event_id: bytes, rank: int) -> None:
        """Queue an id; an id already queued keeps the lower rank."""
        old = self._key.get(event_id)
        if old is not None and old[0] <= rank:
            return
        self._key[event_id] = (rank, self._added)
        heapq.heappush(self._heap, (rank, self._added, event_id))
        self._added += 1
        if len(self._heap) > 2 * len(self._key) + self._slack:
            self._heap = [e for e in self._heap if self._key.get(e[2]) == e[:2]]
            heapq.heapify(self._heap)

    def pop(self) -> bytes:
        """The id to request next; ``IndexError`` if empty."""
        while True:
            rank, added, event_id = heapq.heappop(self._heap)
            if self._key.get(event_id) == (rank, added):
                del self._key[event_id]
                return event_id
