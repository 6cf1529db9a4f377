"""A bounded in-memory history of the node's replication counters, for the
Node screen's charts of the last hour.  The counters only grow (§11.6);
the page draws the differences between samples."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import trio

#: the counters the charts draw (PROTOCOL.md §11.6 names)
KEYS = (
    "bytes_sent",
    "bytes_received",
    "frames_sent",
    "frames_received",
    "events_received",
    "events_delivered",
    "duplicate_events",
    "records_accepted",
)
INTERVAL_S = 10.0
WINDOW_S = 3600.0


@dataclass(frozen=True, slots=True)
class Sample:
    at_ms: int
    values: tuple[int, ...]


class CounterHistory:
    def __init__(
        self,
        read: Callable[[], Mapping[str, int]],
        *,
        interval_s: float = INTERVAL_S,
        window_s: float = WINDOW_S,
    ) -> None:
        self.read = read
        self.interval_s = interval_s
        #: one more than fits the window, so the oldest difference spans it
        self.samples: deque[Sample] = deque(maxlen=int(window_s / interval_s) + 1)

    def sample(self, at_ms: int | None = None) -> None:
        counters = self.read()
        self.samples.append(
            Sample(
                int(time.time() * 1000) if at_ms is None else at_ms,
                tuple(counters.get(k, 0) for k in KEYS),
            )
        )

    async def run(self) -> None:
        while True:
            self.sample()
            await trio.sleep(self.interval_s)

    def doc(self) -> dict[str, object]:
        """The samples so far plus the current values, so a chart is never
        empty and its last point is fresh."""
        samples = list(self.samples)
        counters = self.read()
        now = Sample(int(time.time() * 1000), tuple(counters.get(k, 0) for k in KEYS))
        return {
            "interval_s": self.interval_s,
            "keys": list(KEYS),
            "samples": [[s.at_ms, *s.values] for s in [*samples, now]],
        }
