"""Ledgers for simulated nodes: a shared signature cache for honest nodes,
and the doctored ledgers attacker nodes run behind an ordinary Replicator.

Attackers reuse the real replication machine so that whatever frames it
speaks, they speak too; what they hold (and therefore offer, push and
serve) is what their ledger lets in.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator

from protocol.core.errors import InvalidInput
from protocol.core.params import NetworkParams
from protocol.log.events import Event, decode_event, verify_event
from protocol.log.ledger import IngestResult, IngestStatus, Ledger


class CachedVerifier:
    """``verify_event`` memoised across every simulated node.

    Keyed by (id, signature), not by id alone: the event id covers the core
    but not the signature, so a copy of a valid event with a forged
    signature has the *same id*; an id-keyed cache would accept it (or,
    seen first, would make every node reject the genuine event).
    """

    def __init__(self) -> None:
        self._results: dict[bytes, tuple[type[InvalidInput], str] | None] = {}
        self.hits = 0
        self.misses = 0

    def __call__(self, event: Event, params: NetworkParams) -> None:
        key = event.id + event.signature
        try:
            verdict = self._results[key]
            self.hits += 1
        except KeyError:
            self.misses += 1
            try:
                verify_event(event, params)
                verdict = None
            except InvalidInput as exc:
                verdict = (type(exc), str(exc))
            self._results[key] = verdict
        if verdict is not None:
            # a fresh instance each time: re-raising one would grow its traceback
            raise verdict[0](verdict[1])


class ForgingLedger(Ledger):
    """Holds whatever decodes, valid or not, so its Replicator gossips forgeries.

    Valid events go through the real rules (the attacker tracks the real
    heads); anything the rules refuse is kept on the side and served anyway.
    """

    def __init__(self, params: NetworkParams, verify: Callable[[Event, NetworkParams], None]):
        super().__init__(params, verify=verify)
        self.forged: dict[bytes, Event] = {}

    def ingest(self, raw: bytes, source: Hashable | None = None) -> IngestResult:
        try:
            return super().ingest(raw, source)
        except InvalidInput:
            event = decode_event(raw, self.params)  # junk that does not decode stays out
        if event.id in self.forged:
            return IngestResult(IngestStatus.DUPLICATE, event.id)
        self.forged[event.id] = event
        self.store.put(event)
        return IngestResult(IngestStatus.ACCEPTED, event.id, accepted=(event,))

    def has(self, event_id: bytes) -> bool:
        return super().has(event_id) or event_id in self.forged

    def account_of(self, event_id: bytes) -> bytes | None:
        e = self.forged.get(event_id)
        return e.account if e is not None else super().account_of(event_id)

    def raw(self, event_id: bytes) -> bytes | None:
        e = self.forged.get(event_id)
        return e.raw if e is not None else super().raw(event_id)

    def event_ids(self) -> Iterable[bytes]:
        return _Chain(list(super().event_ids()), list(self.forged))


class _Chain(Iterable[bytes]):
    def __init__(self, a: list[bytes], b: list[bytes]) -> None:
        self._items = a + b

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item: object) -> bool:
        return item in self._items


class FilteringLedger(Ledger):
    """Refuses events a predicate picks: never stores, offers or forwards them.

    Used by withholding (hide the owner's revocation) and censoring (hide
    everything) attackers.  Refusal is an ``InvalidInput`` so the replicator
    treats it as it treats any rejected event.
    """

    def __init__(
        self,
        params: NetworkParams,
        verify: Callable[[Event, NetworkParams], None],
        hide: Callable[[Event], bool],
    ):
        super().__init__(params, verify=verify)
        self.hide = hide
        self.refused = 0

    def ingest(self, raw: bytes, source: Hashable | None = None) -> IngestResult:
        event = decode_event(raw, self.params)
        if self.hide(event):
            self.refused += 1
            raise InvalidInput("withheld by the attacker")
        return super().ingest(raw, source)

    def ingest_verified(self, event: Event, source: Hashable | None = None) -> IngestResult:
        if self.hide(event):
            self.refused += 1
            raise InvalidInput("withheld by the attacker")
        return super().ingest_verified(event, source)
