"""An independent model of the account rules (DESIGN §3, PROTOCOL.md §7),
for the property tests.

It is written from the text, not from ``protocol/log``: events are sets
of ids with explicit ancestor sets, every rule is a loop over events in the
order the text gives, and the validity checks of §7.1 and the caps of §7.3
(suite 2) are evaluated on the event's ancestors from scratch.  It is slow
(quadratic in the events, and worse) and meant for histories of a few dozen
events.  ``protocol.log.state.evaluate`` (the reference) and the ledger's
incremental evaluation must both agree with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from protocol.core import errors
from protocol.core.keys import recovery_commitment
from protocol.core.params import NetworkParams
from protocol.log.events import (
    AddDeviceBody,
    Event,
    EventKind,
    GenesisBody,
    RecoverBody,
    RevokeDeviceBody,
    RotateRecoveryBody,
)

G, ADD, REV, REC, ROT = (
    EventKind.GENESIS,
    EventKind.ADD_DEVICE,
    EventKind.REVOKE_DEVICE,
    EventKind.RECOVER,
    EventKind.ROTATE_RECOVERY,
)
#: the uses of the recovery key (suite 3: recovers and rotations of it)
KEY_USES = (REC, ROT)


def introduces(e: Event) -> bytes | None:
    if isinstance(e.body, GenesisBody | AddDeviceBody | RecoverBody):
        return e.body.device.sign_public
    return None


@dataclass(frozen=True)
class ModelState:
    #: event id -> (reason, cause id)
    void: dict[bytes, tuple[str, bytes]]
    active: frozenset[bytes]
    #: key -> id of the lowest-id final revocation naming it
    revoked: dict[bytes, bytes]
    #: key -> id of the recover recorded as removing it
    removed: dict[bytes, bytes]
    disputes: frozenset[tuple[bytes, bytes]]
    compromised: bool
    #: the commitment in effect for a recover on top of the whole set
    commitment: bytes | None


def ancestor_sets(events: Sequence[Event]) -> dict[bytes, frozenset[bytes]]:
    anc: dict[bytes, frozenset[bytes]] = {}
    for e in events:
        s: set[bytes] = set()
        for p in e.parents:
            s |= anc[p] | {p}
        anc[e.id] = frozenset(s)
    return anc


def model(events: Sequence[Event], anc: dict[bytes, frozenset[bytes]] | None = None) -> ModelState:
    """The rules on a down-closed list of one account's events (parents first)."""
    anc = ancestor_sets(events) if anc is None else anc
    ids = {e.id for e in events}

    def concurrent(a: bytes, b: bytes) -> bool:
        return a != b and a not in anc[b] and b not in anc[a]

    by_id = sorted(events, key=lambda e: e.id)
    recovers = [e for e in by_id if e.kind is REC]
    void: dict[bytes, tuple[str, bytes]] = {}
    # Rule 2: a recover voids every event concurrent with it, recovers too.
    for r in recovers:
        for e in events:
            if concurrent(e.id, r.id):
                void.setdefault(e.id, ("concurrent_with_recover", r.id))
    # Rule 2 for rotations (suite 3): a rotation voids the uses of the
    # recovery key concurrent with it (and nothing else); any two concurrent
    # uses compromise the account.
    uses = [e for e in by_id if e.kind in KEY_USES]
    for t in (e for e in uses if e.kind is ROT):
        for u in uses:
            if concurrent(u.id, t.id):
                void.setdefault(u.id, ("concurrent_with_rotation", t.id))
    compromised = any(concurrent(a.id, b.id) for a in uses for b in uses)
    # Rule 3: a revocation is final unless rule 2 voids it.
    final = [e for e in by_id if e.kind is REV and e.id not in void]
    # Rule 4: a final revocation of D voids what D signed that it did not see.
    for v in final:
        assert isinstance(v.body, RevokeDeviceBody)
        for e in events:
            if e.signer != v.body.device or e.kind in (REV, REC, ROT) or e.id == v.id:
                continue
            if e.id not in anc[v.id]:
                void.setdefault(e.id, ("signer_revoked", v.id))
    # Rule 5: an add, rotation or profile whose signer's every adder among
    # its ancestors is void, is void (parents first, so it cascades).
    for e in events:
        if e.id in void or e.kind in (G, REC, REV, ROT):
            continue
        adders = [a.id for a in events if introduces(a) == e.signer and a.id in anc[e.id]]
        if adders and all(a in void for a in adders):
            void[e.id] = ("signer_add_void", min(adders))
    # Rule 6: active = keys with a non-void adder, minus final revocation
    # targets, minus the keys added among the ancestors of any recover (void
    # or not: suite 2) but its own.
    depth = {r.id: sum(1 for o in recovers if o.id in anc[r.id]) for r in recovers}
    removed: dict[bytes, bytes] = {}
    for r in sorted(recovers, key=lambda r: (depth[r.id], r.id)):
        own = introduces(r)
        for a in events:
            k = introduces(a)
            if k is not None and k != own and a.id in anc[r.id]:
                removed.setdefault(k, r.id)
    revoked: dict[bytes, bytes] = {}
    for v in final:
        assert isinstance(v.body, RevokeDeviceBody)
        revoked.setdefault(v.body.device, v.id)
    keys = {k for e in events if (k := introduces(e)) is not None}
    active = frozenset(
        k
        for k in keys
        if not compromised  # suite 3 says so; two recovers left none anyway
        and k not in revoked
        and k not in removed
        and any(introduces(e) == k and e.id not in void for e in events)
    )
    # Rule 7.
    nonvoid_recovers = [r for r in recovers if r.id not in void]

    def settled(a: bytes, b: bytes) -> bool:
        return any(a in anc[r.id] and b in anc[r.id] for r in nonvoid_recovers)

    disputes: set[tuple[bytes, bytes]] = set()
    for v1 in final:
        for v2 in final:
            assert isinstance(v2.body, RevokeDeviceBody)
            if (
                v1.id != v2.id
                and v2.body.device == v1.signer
                and concurrent(v1.id, v2.id)
                and not settled(v1.id, v2.id)
            ):
                disputes.add((v1.id, v2.id))
    for v in final:
        adders = [a.id for a in events if introduces(a) == v.signer and a.id in anc[v.id]]
        if adders and all(a in void for a in adders) and not settled(v.id, min(adders)):
            disputes.add((v.id, min(adders)))
    # The commitment in effect: from the uses of the key no other use follows.
    latest = [r for r in uses if not any(r.id in anc[o.id] for o in uses)]
    commitment: bytes | None
    if len(latest) > 1:
        commitment = None
    elif latest:
        assert isinstance(latest[0].body, RecoverBody | RotateRecoveryBody)
        commitment = latest[0].body.recovery_commitment
    else:
        genesis = next(e for e in events if e.kind is G)
        assert isinstance(genesis.body, GenesisBody)
        commitment = genesis.body.recovery_commitment
    assert ids >= set(void)
    return ModelState(void, active, revoked, removed, frozenset(disputes), compromised, commitment)


class ModelLog:
    """One account's events as the model sees them: the state after each
    event and each active device's count there (§7.3), memoised."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.by_id: dict[bytes, Event] = {}
        self.anc: dict[bytes, frozenset[bytes]] = {}
        #: event id -> (state of it and its ancestors, device -> count there)
        self._after: dict[bytes, tuple[ModelState, dict[bytes, int]]] = {}

    def add(self, e: Event) -> None:
        s: set[bytes] = set()
        for p in e.parents:
            s |= self.anc[p] | {p}
        self.anc[e.id] = frozenset(s)
        self.events.append(e)
        self.by_id[e.id] = e

    def down_set(self, tops: Sequence[bytes]) -> list[Event]:
        want: set[bytes] = set()
        for t in tops:
            want |= self.anc[t] | {t}
        return [e for e in self.events if e.id in want]

    def state_at(self, tops: Sequence[bytes]) -> ModelState:
        return model(self.down_set(tops), self.anc)

    def after(self, eid: bytes) -> tuple[ModelState, dict[bytes, int]]:
        """The state of ``eid`` and its ancestors, and the count of each
        device active there: its own events (but revocations and recovers)
        on the longest path through points where it is active."""
        got = self._after.get(eid)
        if got is None:
            e = self.by_id[eid]
            st = self.state_at([eid])
            counts = {
                k: self.count_at(k, list(e.parents)) + (k == e.signer and e.kind not in (REV, REC))
                for k in st.active
            }
            got = self._after[eid] = (st, counts)
        return got

    def count_at(self, key: bytes, parents: Sequence[bytes]) -> int:
        best = 0
        for p in parents:
            st, counts = self.after(p)
            if key in st.active:
                best = max(best, counts[key])
        return best


def expected_error(
    log: ModelLog, e: Event, params: NetworkParams
) -> type[errors.InvalidInput] | None:
    """What §7.1 (suite 2) says of ``e`` joining ``log``, in the checks' order."""
    if e.kind is G:
        return errors.InvalidEventError
    if any(p not in log.by_id for p in e.parents):
        return errors.BadParentsError
    at = log.state_at(list(e.parents))
    if e.kind is REC:
        if at.commitment is None or recovery_commitment(e.signer) != at.commitment:
            return errors.UnauthorisedError
    elif e.signer not in at.active or (
        isinstance(e.body, RotateRecoveryBody)
        and (at.commitment is None or recovery_commitment(e.body.recovery_public) != at.commitment)
    ):
        return errors.UnauthorisedError
    key = introduces(e)
    below = log.down_set(list(e.parents))
    if key is not None and any(introduces(a) == key for a in below):
        return errors.InvalidEventError
    if isinstance(e.body, RevokeDeviceBody) and e.body.device not in at.active:
        return errors.InvalidEventError
    if (
        e.kind not in (REV, REC)
        and log.count_at(e.signer, list(e.parents)) >= params.max_device_events
    ):
        return errors.LimitExceededError
    if e.kind is not REC and len(at.active) > params.max_active_devices - (e.kind is ADD):
        return errors.LimitExceededError
    return None
