"""The replica of every account's log on one node (PROTOCOL.md §8).

``Ledger.ingest`` is the single entry point for events from anywhere.  In
order: size limit, canonical decoding, id and duplicate check, proof-of-work
and signatures, parents present (else escrow), the account rules, then the
store, and only then the in-memory state.  Nothing that fails a check is
stored, and every error is an ``InvalidInput`` subclass.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from enum import Enum

from protocol.core.errors import BadParentsError, InvalidInput, UnknownAccountError
from protocol.core.params import NetworkParams
from protocol.log.account import AccountLog
from protocol.log.events import Event, EventKind, decode_event, raw_event_id, verify_event
from protocol.log.state import AccountState
from protocol.log.store import Escrow, EventStore, MemoryEventStore


class IngestStatus(Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    ESCROWED = "escrowed"
    #: its parents are missing and the escrow refused it (over the sender's
    #: quota, PROTOCOL.md §8): nothing was kept; it will be fetched again
    DROPPED = "dropped"


@dataclass(frozen=True, slots=True)
class IngestResult:
    status: IngestStatus
    event_id: bytes
    #: every event accepted by this call, in order: this one and any
    #: escrowed descendants it released
    accepted: tuple[Event, ...] = ()
    #: parent ids the event waits for (ESCROWED)
    missing: tuple[bytes, ...] = ()
    #: escrowed descendants released by this call that turned out invalid
    #: (event id, error, the source that sent it)
    rejected: tuple[tuple[bytes, InvalidInput, Hashable | None], ...] = field(default=())


class Ledger:
    def __init__(
        self,
        params: NetworkParams,
        store: EventStore | None = None,
        escrow: Escrow | None = None,
        verify_signatures_on_load: bool = True,
        verify: Callable[[Event, NetworkParams], None] = verify_event,
    ) -> None:
        self.params = params
        #: the stateless checks (``events.verify_event``); a simulator may
        #: pass a cached version, since validity depends on the event alone;
        #: key such a cache by (id, signature), never by id alone: the id does
        #: not cover the signature (PROTOCOL.md §5.2)
        self.verify = verify
        #: the decoder (``events.decode_event``); a node that decoded and
        #: verified an event in a worker thread hands the result over here
        self.decode: Callable[[bytes, NetworkParams], Event] = decode_event
        self.store: EventStore = store if store is not None else MemoryEventStore()
        self.escrow = escrow if escrow is not None else Escrow()
        self.accounts: dict[bytes, AccountLog] = {}
        self._account_of: dict[bytes, AccountLog] = {}
        self.event_count = 0
        for raw in list(self.store.iter_raw()):
            event = decode_event(raw, params)
            if verify_signatures_on_load:
                verify(event, params)
            self._check_and_apply(event, persist=False)

    # -- queries ------------------------------------------------------------

    def has(self, event_id: bytes) -> bool:
        return event_id in self._account_of

    def raw(self, event_id: bytes) -> bytes | None:
        """An accepted event's bytes, from memory (no store read)."""
        log = self._account_of.get(event_id)
        if log is None:
            return None
        return log.events[log.index[event_id]].raw

    def held_raw(self, raw: bytes) -> bool:
        """Is exactly this encoding accepted or escrowed here already?  One
        hash and one lookup, no decoding and no signature check: a replayed
        event costs this and nothing more (PROTOCOL.md §8).  A different
        encoding with the same id (a forged signature, say) is not held and
        goes through ``ingest``."""
        event_id = raw_event_id(raw)
        if event_id is None:
            return False
        log = self._account_of.get(event_id)
        if log is not None:
            return bool(log.events[log.index[event_id]].raw == raw)
        return self.escrow.holds_raw(event_id, raw)

    def position(self, event_id: bytes) -> int | None:
        """An accepted event's 0-based place in its account's acceptance
        order; each parent's is smaller (its rank, PROTOCOL.md §11.3.1)."""
        log = self._account_of.get(event_id)
        return log.index[event_id] if log is not None else None

    def account_of(self, event_id: bytes) -> bytes | None:
        log = self._account_of.get(event_id)
        return log.account_id if log is not None else None

    def state(self, account_id: bytes) -> AccountState:
        log = self.accounts.get(account_id)
        if log is None:
            raise UnknownAccountError(account_id.hex())
        return log.state()

    def recovery_epoch(self, account_id: bytes) -> bytes:
        """The id of the account's latest non-void recover, else its genesis
        (PROTOCOL.md §4.6): what a safety number covers besides the id.
        Non-void recovers form a chain (rule 2), so "latest" is well defined."""
        log = self.log(account_id)
        state = log.state()
        void = {v.event_id for v in state.voided}
        recovers = [e.id for e in log.events if e.kind is EventKind.RECOVER and e.id not in void]
        latest = [r for r in recovers if not any(log.is_ancestor(r, o) for o in recovers)]
        return latest[0] if len(latest) == 1 else log.account_id

    def log(self, account_id: bytes) -> AccountLog:
        log = self.accounts.get(account_id)
        if log is None:
            raise UnknownAccountError(account_id.hex())
        return log

    def event_ids(self) -> Iterable[bytes]:
        return self._account_of.keys()

    # -- ingest -------------------------------------------------------------

    def ingest(self, raw: bytes, source: Hashable | None = None) -> IngestResult:
        """Validate and store one event; raise ``InvalidInput`` if it is bad."""
        params = self.params
        event = self.decode(raw, params)
        event_id = event.id
        if event_id in self._account_of:
            return IngestResult(IngestStatus.DUPLICATE, event_id)
        if event_id in self.escrow:
            return IngestResult(IngestStatus.ESCROWED, event_id)
        self.verify(event, params)
        return self.ingest_verified(event, source)

    def ingest_verified(self, event: Event, source: Hashable | None = None) -> IngestResult:
        """Ingest an event whose ``verify_event`` already passed (e.g. in a
        worker process, or cached by (id, signature))."""
        account_of = self._account_of
        event_id = event.id
        if event_id in account_of:
            return IngestResult(IngestStatus.DUPLICATE, event_id)
        for p in event.parents:
            if p not in account_of:
                missing = frozenset(p for p in event.parents if p not in account_of)
                kept = self.escrow.add(event, missing, source)
                status = IngestStatus.ESCROWED if kept else IngestStatus.DROPPED
                return IngestResult(status, event_id, missing=tuple(sorted(missing)))
        self._check_and_apply(event, persist=True)
        if not self.escrow:
            # Nothing waits, so nothing can be released (the usual case).
            return IngestResult(IngestStatus.ACCEPTED, event_id, (event,), (), ())
        accepted = [event]
        rejected: list[tuple[bytes, InvalidInput, Hashable | None]] = []
        queue = [event_id]
        while queue:
            for entry in self.escrow.children_of(queue.pop()):
                child = entry.event
                still = frozenset(p for p in child.parents if p not in self._account_of)
                if still:
                    self.escrow.add(child, still, entry.source)
                    continue
                try:
                    self._check_and_apply(child, persist=True)
                except InvalidInput as exc:
                    rejected.append((child.id, exc, entry.source))
                    continue
                accepted.append(child)
                queue.append(child.id)
        return IngestResult(
            IngestStatus.ACCEPTED, event.id, accepted=tuple(accepted), rejected=tuple(rejected)
        )

    def _check_and_apply(self, event: Event, persist: bool) -> None:
        if event.kind is EventKind.GENESIS:
            log = AccountLog(event, self.params)
            if persist:
                self.store.put(event)
            self.accounts[event.id] = log
        else:
            log_or_none = self.accounts.get(event.account)
            if log_or_none is None:
                raise BadParentsError("the event's account is not here")
            log = log_or_none
            mask = log.check(event)
            if persist:
                self.store.put(event)  # persist before anyone hears of it
            log.append(event, mask)
        self._account_of[event.id] = log
        self.event_count += 1
