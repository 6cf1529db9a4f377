"""One account's event DAG, checked and applied one event at a time.

``AccountLog.check`` enforces the account-level validity rules of
PROTOCOL.md §7.1 (rule 1, authorisation, among them) against the state of
the new event's own ancestors; ``AccountLog.append`` then adds it.  Both
depend only on the event and its ancestors, never on arrival order, so
every honest node accepts exactly the same events (S3).

Incrementality: an event whose parents are exactly the current heads is
concurrent with nothing, so it cannot void anything already here; the
verdicts are updated in place.  Any other event triggers a full
re-evaluation of the rules (``state.evaluate``), which the property tests
compare with the incremental result.
"""

from __future__ import annotations

from collections import OrderedDict

from protocol.core.errors import (
    BadParentsError,
    InvalidEventError,
    LimitExceededError,
    UnauthorisedError,
)
from protocol.core.keys import recovery_commitment
from protocol.core.params import NetworkParams
from protocol.log.events import (
    AddDeviceBody,
    DeviceIntro,
    Event,
    EventKind,
    GenesisBody,
    RecoverBody,
    RevokeDeviceBody,
)
from protocol.log.state import AccountState, Evaluation, build_state, evaluate

# Evaluations of ancestor sets that are not the whole log, by parent tuple.
_ANCESTOR_CACHE_SIZE = 32

_REVOKE = EventKind.REVOKE_DEVICE
_RECOVER = EventKind.RECOVER
_GENESIS = EventKind.GENESIS
_INTRO_BODIES = (GenesisBody, AddDeviceBody, RecoverBody)


def _introduced(event: Event) -> DeviceIntro | None:
    """``event.introduced_device`` without the property's call overhead."""
    body = event.body
    return body.device if isinstance(body, _INTRO_BODIES) else None


class AccountLog:
    __slots__ = (
        "_anc_cache",
        "_ev",
        "_heads",
        "_state",
        "all_mask",
        "anc",
        "events",
        "index",
        "introduced",
        "params",
    )

    def __init__(self, genesis: Event, params: NetworkParams) -> None:
        assert genesis.kind is EventKind.GENESIS
        self.params = params
        self.events: list[Event] = [genesis]
        self.index: dict[bytes, int] = {genesis.id: 0}
        self.anc: list[int] = [0]
        self.all_mask = 1
        body = genesis.body
        assert isinstance(body, GenesisBody)
        # Tuples, not lists: the collector stops tracking a tuple of ints, and
        # a ledger holds several per account (ingest benchmark, bench/ingest.py).
        self.introduced: dict[bytes, tuple[int, ...]] = {body.device.sign_public: (0,)}
        self._heads: set[bytes] = {genesis.id}
        self._ev = Evaluation([0], {}, {body.device.sign_public}, {}, {}, [], False)
        self._state: AccountState | None = None
        # Made on first use: most accounts never leave the fast path.
        self._anc_cache: OrderedDict[tuple[bytes, ...], Evaluation] | None = None

    @property
    def account_id(self) -> bytes:
        return self.events[0].id

    @property
    def heads(self) -> tuple[bytes, ...]:
        return tuple(sorted(self._heads))

    def __len__(self) -> int:
        return len(self.events)

    def __contains__(self, event_id: bytes) -> bool:
        return event_id in self.index

    def is_ancestor(self, a: bytes, b: bytes) -> bool:
        """``a`` is a strict ancestor of ``b`` (False if either is not here)."""
        ia, ib = self.index.get(a), self.index.get(b)
        return ia is not None and ib is not None and (self.anc[ib] >> ia) & 1 == 1

    # -- validity ---------------------------------------------------------

    def _ancestor_mask(self, parents: tuple[bytes, ...]) -> int:
        mask = 0
        index = self.index
        anc = self.anc
        for p in parents:
            i = index.get(p)
            if i is None:
                raise BadParentsError(f"parent {p.hex()[:12]} is not in account")
            mask |= anc[i] | (1 << i)
        return mask

    def _evaluation_at(self, parents: tuple[bytes, ...], mask: int) -> Evaluation:
        if mask == self.all_mask:
            return self._ev
        cache = self._anc_cache
        if cache is None:
            cache = self._anc_cache = OrderedDict()
        cached = cache.get(parents)
        if cached is None:
            cached = evaluate(self.events, self.anc, mask)
            cache[parents] = cached
            if len(cache) > _ANCESTOR_CACHE_SIZE:
                cache.popitem(last=False)
        else:
            cache.move_to_end(parents)
        return cached

    def _introduced_in(self, key: bytes, mask: int) -> bool:
        return any((mask >> a) & 1 for a in self.introduced.get(key, ()))

    def _commitment_at(self, mask: int, ev: Evaluation) -> bytes | None:
        """The recovery commitment in effect at an ancestor set (rule 1)."""
        recovers = [i for i in ev.members if self.events[i].kind is EventKind.RECOVER]
        latest = [r for r in recovers if not any((self.anc[o] >> r) & 1 for o in recovers)]
        if len(latest) > 1:
            return None  # concurrent recovers: nobody can recover this account again
        body = self.events[latest[0] if latest else 0].body
        assert isinstance(body, GenesisBody | RecoverBody)
        return body.recovery_commitment

    def check(self, event: Event) -> int:
        """Raise unless ``event`` may join this log; return its ancestor mask."""
        kind = event.kind
        if kind is _GENESIS:
            raise InvalidEventError("an account has one genesis")
        parents = event.parents
        mask = self._ancestor_mask(parents)
        exempt = kind is _REVOKE or kind is _RECOVER
        if not exempt and mask.bit_count() > self.params.max_ancestors:
            raise LimitExceededError("the account's history is at its cap")
        # The usual case, parents == heads, needs no evaluation of its own.
        ev = self._ev if mask == self.all_mask else self._evaluation_at(parents, mask)
        if kind is _RECOVER:
            commitment = self._commitment_at(mask, ev)
            if commitment is None or recovery_commitment(event.signer) != commitment:
                raise UnauthorisedError("recover not signed by the committed recovery key")
        elif event.signer not in ev.active:
            raise UnauthorisedError("signer is not an active device at the event's parents")
        body = event.body
        if isinstance(body, _INTRO_BODIES):
            added = self.introduced.get(body.device.sign_public)
            if added is not None and any((mask >> a) & 1 for a in added):
                raise InvalidEventError("this device key was already added to the account")
        elif isinstance(body, RevokeDeviceBody) and not self._introduced_in(body.device, mask):
            raise InvalidEventError("a revocation names only a device added among its ancestors")
        return mask

    # -- applying ---------------------------------------------------------

    def append(self, event: Event, mask: int) -> None:
        """Add a checked event (``mask`` from ``check``)."""
        events = self.events
        i = len(events)
        fast = mask == self.all_mask
        events.append(event)
        event_id = event.id
        self.index[event_id] = i
        self.anc.append(mask)
        self.all_mask |= 1 << i
        dev = _introduced(event)
        if dev is not None:
            key = dev.sign_public
            self.introduced[key] = (*self.introduced.get(key, ()), i)
        heads = self._heads
        heads.difference_update(event.parents)
        heads.add(event_id)
        self._state = None
        if fast:
            self._apply_fast(i, event, dev)
        else:
            self._anc_cache = None
            self._ev = evaluate(events, self.anc, self.all_mask)

    def _apply_fast(self, i: int, event: Event, dev: DeviceIntro | None) -> None:
        """The new event descends from every other: see the module docstring.

        ``dev`` is the device ``event`` introduces, if any."""
        ev = self._ev
        ev.members.append(i)
        body = event.body
        if event.kind is _RECOVER:
            assert isinstance(body, RecoverBody)
            for key in self.introduced:
                if key != body.device.sign_public:
                    ev.removed_by_recovery.setdefault(key, i)
            ev.active = {body.device.sign_public}
            ev.disputes = []  # a recover descending from both settles each race
        elif isinstance(body, RevokeDeviceBody):
            ev.active.discard(body.device)
            earlier = ev.revoked.get(body.device)
            if earlier is None or event.id < self.events[earlier].id:
                ev.revoked[body.device] = i
        elif dev is not None:
            ev.active.add(dev.sign_public)

    def evaluation(self) -> Evaluation:
        return self._ev

    def state(self) -> AccountState:
        if self._state is None:
            self._state = build_state(self.events, self.anc, self._ev)
        return self._state

    def recompute(self) -> Evaluation:
        """The rules evaluated from scratch (for tests and ``log verify``)."""
        return evaluate(self.events, self.anc, self.all_mask)
