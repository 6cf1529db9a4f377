"""Reconciliation sessions of one peer (PROTOCOL.md §11.3.5, §11.5.2).

The replication machine keeps, per peer, the sessions it started and the
sessions of the peer's that it answered with frames that need an answer.
For each it remembers its frames still waiting for their final answer,
oldest first, and the ranges each left *open*: IDS ranges (the peer will
push what we lack in them) and HAVE ranges that ask for pushes by short id.
The peer answers our frames in the order we sent them, on one ordered
stream, and sends its pushes before its answer, so a range closes when the
final answer to its frame arrives, or when the session times out.

An event pushed inside an open range is *solicited* (DESIGN.md §10): it is
old news the session found missing, so it is announced and not eagerly
pushed on, and a copy we hold already costs nothing from the peer's
duplicate allowance.  Pure bookkeeping; the machine does the rest.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from protocol.sync.reconcile import Range, needs_reply, open_spans

#: sessions of a peer's that we track at once (the oldest is forgotten)
MAX_ANSWERED = 8
#: ids (and record items) we pushed to the peer that we remember
MAX_GIVEN = 1 << 14
#: per session: frames awaiting their answer, and open spans over them; the
#: oldest are forgotten beyond (an honest session stays far below: pushes
#: in a forgotten span only lose the solicited mark, §11.5.2)
MAX_AWAITING = 256
MAX_OPEN_SPANS = 8192


@dataclass(slots=True)
class _Awaiting:
    """One of our frames that awaits its final answer, and the spans it
    left open (disjoint, ascending)."""

    starts: list[int]
    ends: list[int]

    def covers(self, v: int) -> bool:
        i = bisect_right(self.starts, v) - 1
        return i >= 0 and v < self.ends[i]


@dataclass(slots=True)
class Session:
    started: float
    #: the session reconciles device-record items (§11.7.5), not event ids
    records: bool
    awaiting: deque[_Awaiting] = field(default_factory=deque)
    #: open spans over ``awaiting``
    spans: int = 0

    def sent(self, ranges: tuple[Range, ...]) -> None:
        """We sent a frame of this session with these ranges."""
        if needs_reply(ranges):
            spans = open_spans(ranges)[:MAX_OPEN_SPANS]
            self.awaiting.append(_Awaiting([a for a, _ in spans], [z for _, z in spans]))
            self.spans += len(spans)
            while len(self.awaiting) > MAX_AWAITING or self.spans > MAX_OPEN_SPANS:
                self.answered()

    def answered(self) -> None:
        """The final answer to our oldest awaiting frame arrived."""
        if self.awaiting:
            self.spans -= len(self.awaiting.popleft().starts)

    def covers(self, v: int) -> bool:
        return any(a.covers(v) for a in self.awaiting)


class SessionTable:
    """Our sessions with one peer (by session id) and the peer's sessions
    we answer (by session id and kind)."""

    def __init__(self) -> None:
        self.ours: dict[int, Session] = {}
        self.theirs: dict[tuple[int, bool], Session] = {}
        #: what we pushed to the peer because a session showed it lacked
        #: it, and when: both peers start a session on a new link, and the
        #: two find the same difference
        self._given: OrderedDict[bytes, float] = OrderedDict()

    def fresh(self, ids: tuple[bytes, ...], now: float, timeout: float) -> list[bytes]:
        """Of ``ids`` the peer lacks, those we did not push it within
        ``timeout`` (the others are on their way); noted as pushed now."""
        given = self._given
        while given and next(iter(given.values())) <= now - timeout:
            given.popitem(last=False)
        out = [i for i in ids if i not in given]
        for i in out:
            given[i] = now
        while len(given) > MAX_GIVEN:
            given.popitem(last=False)
        return out

    def __bool__(self) -> bool:
        return bool(self.ours)

    def new_id(self, rng: random.Random) -> int:
        """A random session id, unused among ours: it salts the session's
        short ids (§11.3.2), so a collision cannot be ground in advance."""
        while True:
            sid = rng.getrandbits(32)
            if sid not in self.ours:
                return sid

    def start(self, sid: int, records: bool, now: float) -> Session:
        s = Session(now, records)
        self.ours[sid] = s
        return s

    def has_own(self, records: bool) -> bool:
        return any(s.records == records for s in self.ours.values())

    def answering(self, sid: int, records: bool, now: float) -> Session:
        """The peer's session ``sid``, tracked from our first frame in it
        that needs an answer; at most ``MAX_ANSWERED`` at once."""
        key = (sid, records)
        s = self.theirs.get(key)
        if s is None:
            if len(self.theirs) >= MAX_ANSWERED:
                del self.theirs[next(iter(self.theirs))]
            s = self.theirs[key] = Session(now, records)
        return s

    def settle_theirs(self, sid: int, records: bool) -> None:
        s = self.theirs.get((sid, records))
        if s is not None and not s.awaiting:
            del self.theirs[(sid, records)]

    def solicited(self, v: int) -> bool:
        """Does ``v`` lie in an event range one of our frames left open?"""
        return any(
            s.covers(v)
            for table in (self.ours, self.theirs)
            for s in table.values()
            if not s.records and s.awaiting
        )

    def first_started(self) -> float | None:
        times = [s.started for t in (self.ours, self.theirs) for s in t.values()]
        return min(times, default=None)

    def expire(self, now: float, timeout: float) -> int:
        """Forget sessions older than ``timeout``; how many of ours."""
        late = [sid for sid, s in self.ours.items() if now >= s.started + timeout]
        for sid in late:
            del self.ours[sid]
        for key in [k for k, s in self.theirs.items() if now >= s.started + timeout]:
            del self.theirs[key]
        return len(late)
