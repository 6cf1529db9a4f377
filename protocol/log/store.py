"""Where events live (PROTOCOL.md §8): the store interface, an in-memory
store, and the bounded escrow for events that arrive before their parents."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import Protocol

from protocol.log.events import Event


class EventStore(Protocol):
    """Durable storage of accepted events.

    ``put`` must be durable when it returns: a node acknowledges or forwards
    an event only after that.  ``iter_raw`` yields events in the order they
    were put, which is a topological order (parents first).
    """

    def contains(self, event_id: bytes) -> bool: ...

    def get(self, event_id: bytes) -> bytes | None: ...

    def put(self, event: Event) -> None: ...

    def iter_raw(self) -> Iterator[bytes]: ...

    def __len__(self) -> int: ...


class MemoryEventStore:
    def __init__(self) -> None:
        self._raw: dict[bytes, bytes] = {}

    def contains(self, event_id: bytes) -> bool:
        return event_id in self._raw

    def get(self, event_id: bytes) -> bytes | None:
        return self._raw.get(event_id)

    def put(self, event: Event) -> None:
        self._raw.setdefault(event.id, event.raw)

    def iter_raw(self) -> Iterator[bytes]:
        return iter(list(self._raw.values()))

    def __len__(self) -> int:
        return len(self._raw)


@dataclass(frozen=True, slots=True)
class EscrowEntry:
    event: Event
    missing: frozenset[bytes]
    source: Hashable | None


class Escrow:
    """Events whose parents are not here yet, bounded in count and bytes.

    When full, the oldest entry is dropped: an escrowed event is only a
    hint (it was never accepted), and reconciliation fetches it again once
    its parents arrive.  ``per_source`` bounds what one peer can park here.
    """

    def __init__(self, max_events: int = 10_000, max_bytes: int = 8 << 20, per_source: int = 1_000):
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.per_source = per_source
        self._entries: OrderedDict[bytes, EscrowEntry] = OrderedDict()
        self._waiting: dict[bytes, set[bytes]] = {}  # missing parent -> child ids
        self._by_source: dict[Hashable | None, int] = {}
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, event_id: bytes) -> bool:
        return event_id in self._entries

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def holds_raw(self, event_id: bytes, raw: bytes) -> bool:
        entry = self._entries.get(event_id)
        return entry is not None and entry.event.raw == raw

    def missing(self) -> set[bytes]:
        """Parent ids that escrowed events wait for."""
        return set(self._waiting)

    def add(self, event: Event, missing: frozenset[bytes], source: Hashable | None = None) -> bool:
        """Park ``event``; False if it was refused (over the source's quota)."""
        if event.id in self._entries:
            return True
        if self._by_source.get(source, 0) >= self.per_source:
            return False
        entry = EscrowEntry(event, missing, source)
        self._entries[event.id] = entry
        self._by_source[source] = self._by_source.get(source, 0) + 1
        self._bytes += len(event.raw)
        for p in missing:
            self._waiting.setdefault(p, set()).add(event.id)
        while len(self._entries) > self.max_events or self._bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self._remove(oldest)
        return event.id in self._entries

    def _remove(self, event_id: bytes) -> EscrowEntry:
        entry = self._entries.pop(event_id)
        self._bytes -= len(entry.event.raw)
        n = self._by_source[entry.source] - 1
        if n:
            self._by_source[entry.source] = n
        else:
            del self._by_source[entry.source]
        for p in entry.missing:
            kids = self._waiting.get(p)
            if kids is not None:
                kids.discard(event_id)
                if not kids:
                    del self._waiting[p]
        return entry

    def children_of(self, parent_id: bytes) -> list[EscrowEntry]:
        """Remove and return the entries that waited for ``parent_id``."""
        ids = self._waiting.get(parent_id)
        if not ids:
            return []
        return [self._remove(i) for i in sorted(ids)]
