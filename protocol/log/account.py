"""One account's event DAG, checked and applied one event at a time.

``AccountLog.check`` enforces the account-level validity rules of
PROTOCOL.md §7.1 (rule 1, authorisation, and the caps of §7.3 among them)
against the state of the new event's own ancestors; ``AccountLog.append``
then adds it.  Both depend only on the event and its ancestors, never on
arrival order, so every honest node accepts exactly the same events (S3).

What each event costs does not depend on the account's shape (DESIGN §4,
"every cost bounded"): the state at an event's parents comes from the
contexts its parents keep (``context``), ancestry queries from an index
linear in the events (``ancestry``), and the verdicts of the whole account
are updated only where the new event can change them (``rules``).
``recompute`` evaluates the rules from scratch (``state.evaluate``), the
reference the property tests compare with after every event, and what
``smu log verify`` runs.
"""

from __future__ import annotations

from array import array

from protocol.core.errors import (
    BadParentsError,
    InvalidEventError,
    LimitExceededError,
    UnauthorisedError,
)
from protocol.core.keys import recovery_commitment
from protocol.core.params import NetworkParams
from protocol.log.ancestry import AncestorMasks, Ancestry
from protocol.log.context import (
    BROKEN,
    EMPTY,
    Counts,
    KeySet,
    bump,
    find,
    genesis_context,
    merge,
    recover_context,
    with_device,
    without_device,
)
from protocol.log.events import (
    AddDeviceBody,
    Event,
    EventKind,
    GenesisBody,
    RecoverBody,
    RevokeDeviceBody,
    RotateRecoveryBody,
)
from protocol.log.rules import Verdicts
from protocol.log.state import (
    AccountState,
    Evaluation,
    ancestor_masks,
    build_state,
    evaluate,
)

_REVOKE = EventKind.REVOKE_DEVICE
_RECOVER = EventKind.RECOVER
_GENESIS = EventKind.GENESIS
_ROTATE_RECOVERY = EventKind.ROTATE_RECOVERY
_INTRO_BODIES = (GenesisBody, AddDeviceBody, RecoverBody)


#: What ``check`` found at the event's parents, for ``append`` (a plain
#: tuple: one is made per event): the parents by number; the latest recover
#: among the ancestors (-1: none; ``BROKEN``: two concurrent ones, above
#: which nothing is authorised); the active devices and their counts there;
#: the signer's place among those devices (a recover: ``None``); the
#: signer's adders among the ancestors (rules 5 and 7); the latest use of
#: the recovery key among the ancestors (a recover or a rotation of it; -1:
#: none; ``BROKEN``: two concurrent ones), whose commitment is in effect.
Checked = tuple[tuple[int, ...], int, KeySet, Counts, int | None, tuple[int, ...], int]


class AccountLog:
    __slots__ = (
        "_anc",
        "_ctx",
        "_heads",
        "_kdepth",
        "_key",
        "_rdepth",
        "_rec",
        "_rules",
        "_state",
        "events",
        "index",
        "params",
    )

    def __init__(self, genesis: Event, params: NetworkParams) -> None:
        assert genesis.kind is EventKind.GENESIS
        self.params = params
        self.events: list[Event] = [genesis]
        self.index: dict[bytes, int] = {genesis.id: 0}
        self._anc = Ancestry()
        self._anc.add((), True)
        #: event -> the latest recover in it and its ancestors (-1: none)
        self._rec = array("i", (-1,))
        #: recover -> how many recovers are among its ancestors
        self._rdepth: dict[int, int] = {}
        #: event -> the latest use of the recovery key (recover or rotation)
        #: in it and its ancestors (-1: none); they form a chain (§7.2)
        self._key = array("i", (-1,))
        #: use of the recovery key -> how many uses are among its ancestors
        self._kdepth: dict[int, int] = {}
        ks, counts = genesis_context(genesis)
        #: event i -> the active devices after it ([2i]) and their counts
        #: ([2i + 1]), in one list
        self._ctx: list[KeySet | Counts] = [ks, counts]
        self._rules = Verdicts(self.events, self._anc, self._rdepth, self._kdepth)
        self._rules.add(0, genesis, -1, (), -1)
        #: the heads, as a dict of ids (the collector need not track it)
        self._heads: dict[bytes, None] = {genesis.id: None}
        self._state: AccountState | None = None

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

    # -- the shape of the history -----------------------------------------

    @property
    def ancestry(self) -> Ancestry:
        """The ancestry index (event numbers are places in ``events``)."""
        return self._anc

    def is_ancestor(self, a: bytes, b: bytes) -> bool:
        """Whether event ``a`` is a strict ancestor of event ``b`` (False if
        either is not here)."""
        ia, ib = self.index.get(a), self.index.get(b)
        return ia is not None and ib is not None and self._anc.is_ancestor(ia, ib)

    def generation(self, event_id: bytes) -> int:
        """1 + the largest generation of the event's parents (genesis 0)."""
        return self._anc.generation(self.index[event_id])

    def down_mask(self, event_ids: tuple[bytes, ...] | list[bytes]) -> int:
        """The events and all their ancestors, as a bit mask of numbers."""
        mask = 0
        for eid in event_ids:
            mask |= self._anc.down_mask(self.index[eid])
        return mask

    @property
    def anc(self) -> AncestorMasks:
        """``anc[i]``: event ``i``'s strict ancestors as a bit mask, made on
        demand (O(n / 64) words each; nothing keeps one per event)."""
        return AncestorMasks(self._anc)

    @property
    def all_mask(self) -> int:
        return (1 << len(self.events)) - 1

    @property
    def introduced(self) -> dict[bytes, tuple[int, ...]]:
        """Key -> the events that introduce it."""
        return self._rules.adders

    def context(self, i: int) -> tuple[KeySet, Counts]:
        """The active devices (keys, adders) and their counts after event ``i``."""
        return self._ks(i), self._cn(i)

    def _ks(self, i: int) -> KeySet:
        return self._ctx[2 * i]  # type: ignore[return-value]

    def _cn(self, i: int) -> Counts:
        return self._ctx[2 * i + 1]  # type: ignore[return-value]

    # -- validity ---------------------------------------------------------

    def _at(self, parents: list[int]) -> tuple[int, KeySet, Counts, int]:
        if len(parents) == 1:
            p = parents[0]
            ctx = self._ctx
            return self._rec[p], ctx[2 * p], ctx[2 * p + 1], self._key[p]  # type: ignore[return-value]
        # The uses of the recovery key at A: a chain, or two concurrent ones
        # (compromised there: no device is active and no key is committed).
        uses = {self._key[p] for p in parents}
        kdepth = self._kdepth
        top = max(uses, key=lambda u: kdepth[u] if u >= 0 else -1)
        for u in uses:
            if u != top and u >= 0 and not self._anc.is_ancestor(u, top):
                return BROKEN, EMPTY, (), BROKEN
        rules = self._rules
        rec, ks, counts = merge(
            parents,
            ancestry=self._anc,
            events=self.events,
            rec_of=self._rec,
            rdepth=self._rdepth,
            ks_of=self._ks,
            counts_of=self._cn,
            adders=rules.adders,
            revocations=rules.revocations,
            sadders=rules.sadders,
        )
        return rec, ks, counts, top

    def _commitment_at(self, key: int) -> bytes | None:
        """The recovery commitment in effect at a set whose latest use of
        the recovery key is ``key`` (rule 1, §7.4)."""
        if key == BROKEN:
            return None  # concurrent uses: nobody can recover this account again
        body = self.events[key if key >= 0 else 0].body
        assert isinstance(body, GenesisBody | RecoverBody | RotateRecoveryBody)
        return body.recovery_commitment

    def check(self, event: Event) -> Checked:
        """Raise unless ``event`` may join this log (PROTOCOL.md §7.1)."""
        kind = event.kind
        if kind is _GENESIS:
            raise InvalidEventError("an account has one genesis")
        index = self.index
        parents = []
        for p in event.parents:
            i = index.get(p)
            if i is None:
                raise BadParentsError(f"parent {p.hex()[:12]} is not in account")
            parents.append(i)
        rec, ks, counts, key_at = self._at(parents)
        n: int | None = None
        sadders: tuple[int, ...] = ()
        body = event.body
        if kind is _RECOVER:
            commitment = self._commitment_at(key_at)
            if commitment is None or recovery_commitment(event.signer) != commitment:
                raise UnauthorisedError("recover not signed by the committed recovery key")
        else:
            n = find(ks, event.signer)
            if n is None:
                raise UnauthorisedError("signer is not an active device at the event's parents")
            sadders = ks[1][n]
            if isinstance(body, RotateRecoveryBody):
                # Both keys (§6.8): an active device signs, and the recovery
                # key in force at the parents co-signs.
                commitment = self._commitment_at(key_at)
                if commitment is None or recovery_commitment(body.recovery_public) != commitment:
                    raise UnauthorisedError("rotation not co-signed by the committed recovery key")
        if isinstance(body, _INTRO_BODIES):
            key = body.device.sign_public
            prior = self._rules.adders.get(key)
            if key in ks[0] or (prior and any(self._anc.in_down_set(a, parents) for a in prior)):
                raise InvalidEventError("this device key was already added to the account")
        elif isinstance(body, RevokeDeviceBody) and body.device not in ks[0]:
            raise InvalidEventError("a revocation names a device active at its parents")
        params = self.params
        if n is not None and kind is not _REVOKE and counts[n] >= params.max_device_events:
            raise LimitExceededError("the signer's events are at the per-device cap")
        # Every event's parents hold at most max_active_devices active devices,
        # an add-device's fewer (so that none has more after it); a recover
        # leaves one.
        most = params.max_active_devices - (kind is EventKind.ADD_DEVICE)
        if kind is not _RECOVER and len(ks[0]) > most:
            raise LimitExceededError("too many devices are active at the event's parents")
        return (tuple(parents), rec, ks, counts, n, sadders, key_at)

    # -- applying ---------------------------------------------------------

    def append(self, event: Event, checked: Checked) -> None:
        """Add an event that ``check`` passed."""
        i = len(self.events)
        self.events.append(event)
        self.index[event.id] = i
        kind = event.kind
        parents, rec, ks, counts, n, sadders, key_at = checked
        self._anc.add(parents, kind is _REVOKE or kind is _RECOVER)
        body = event.body
        if kind is _RECOVER or kind is _ROTATE_RECOVERY:
            self._kdepth[i] = self._kdepth[key_at] + 1 if key_at >= 0 else 0
            self._key.append(i)
        else:
            self._key.append(key_at)
        if kind is _RECOVER:
            self._rdepth[i] = self._rdepth[rec] + 1 if rec >= 0 else 0
            self._rec.append(i)
            ks, counts = recover_context(i, event)
        else:
            self._rec.append(rec)
            assert n is not None
            if isinstance(body, AddDeviceBody):
                ks, counts = with_device(ks, counts, body.device.sign_public, i, n)
            elif isinstance(body, RevokeDeviceBody):
                ks, counts = without_device(ks, counts, body.device)
            else:
                counts = bump(counts, n)
        self._ctx.append(ks)
        self._ctx.append(counts)
        self._rules.add(i, event, rec, sadders, key_at)
        heads = self._heads
        for p in event.parents:
            heads.pop(p, None)
        heads[event.id] = None
        self._state = None

    # -- reading ----------------------------------------------------------

    def evaluation(self) -> Evaluation:
        return self._rules.evaluation()

    def state(self) -> AccountState:
        if self._state is None:
            self._state = build_state(self.events, self._anc, self._rules.evaluation())
        return self._state

    def recompute(self) -> Evaluation:
        """The rules evaluated from scratch (for tests and ``log verify``)."""
        return evaluate(self.events, ancestor_masks(self.events), self.all_mask)
