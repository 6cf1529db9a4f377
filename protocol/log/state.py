"""Account state as a pure function of a set of events (PROTOCOL.md §7).

``evaluate`` applies the seven rules of DESIGN.md §3 / PROTOCOL.md §7.2
(suite 3; suite 2 is the same without rotations) to a down-closed set of an
account's events, from scratch:
recovers first, then revocations, then adds.  It is the reference: the
ledger keeps the same verdicts up to date one event at a time
(``protocol.log.rules``), and the property tests compare the two.
``build_state`` turns verdicts into the user-facing state.  Everything is
sorted by ids or keys, never by arrival, so two nodes holding the same set
produce byte-identical states (S3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from protocol.core import crypto
from protocol.core.canonical import encode
from protocol.core.keys import fingerprint
from protocol.log.events import (
    AddDeviceBody,
    Event,
    EventKind,
    GenesisBody,
    ProfileBody,
    RecoverBody,
    RevokeDeviceBody,
    RotateEncKeyBody,
    RotateRecoveryBody,
)

_ROTATE_RECOVERY = EventKind.ROTATE_RECOVERY
#: what rule 4 never voids: revocations, and the uses of the recovery key
#: (recovers and, in suite 3, rotations of it), which rule 2 alone voids
_RULE4_EXEMPT = (EventKind.REVOKE_DEVICE, EventKind.RECOVER, EventKind.ROTATE_RECOVERY)


class AccountStatus(Enum):
    OK = "ok"
    #: rule 7: a revoked device's revocation races its own revocation;
    #: settled by a recover that descends from both
    DISPUTED = "disputed"
    #: rule 2: two concurrent uses of the recovery key (recovers, or in
    #: suite 3 rotations of it) — the recovery key is in two hands
    COMPROMISED = "compromised"


class DeviceStatus(Enum):
    ACTIVE = "active"
    REVOKED = "revoked"
    VOID = "void"
    REMOVED_BY_RECOVERY = "removed_by_recovery"
    #: suite 3: a device that nothing revoked or removed, in an account that
    #: two concurrent uses of the recovery key (one a rotation) compromised
    COMPROMISED = "compromised"


class VoidReason(Enum):
    """Why an event has no effect (PROTOCOL.md §7.2, rules 2, 4 and 5)."""

    CONCURRENT_WITH_RECOVER = "concurrent_with_recover"
    SIGNER_REVOKED = "signer_revoked"
    SIGNER_ADD_VOID = "signer_add_void"
    #: rule 2 for rotations (suite 3): a use of the recovery key concurrent
    #: with a rotation of it
    CONCURRENT_WITH_ROTATION = "concurrent_with_rotation"


@dataclass(frozen=True, slots=True)
class VoidedEvent:
    event_id: bytes
    kind: EventKind
    reason: VoidReason
    #: the event that voids it (the recover, the revocation, or an adder)
    cause: bytes

    def explain(self) -> str:
        c = self.cause.hex()[:12]
        return {
            VoidReason.CONCURRENT_WITH_RECOVER: f"concurrent with recover {c}",
            VoidReason.SIGNER_REVOKED: f"its signer was revoked by {c} without having seen it",
            VoidReason.SIGNER_ADD_VOID: f"its signer was added only by void events ({c})",
            VoidReason.CONCURRENT_WITH_ROTATION: f"concurrent with recovery-key rotation {c}",
        }[self.reason]


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    sign_public: bytes
    enc_public: bytes
    name: str
    status: DeviceStatus
    added_by: bytes  # event id
    #: the key that signed the adding event (the approver; for a genesis the
    #: device itself, for a recover the recovery key)
    approver: bytes
    added_kind: EventKind
    added_at: int  # signer's clock, ms
    #: the revocation or recover that ended it, if any
    ended_by: bytes | None
    ended_at: int | None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.sign_public)

    def to_wire(self) -> list[object]:
        return [
            self.sign_public,
            self.enc_public,
            self.name,
            self.status.value,
            self.added_by,
            self.approver,
            int(self.added_kind),
            self.added_at,
            self.ended_by or b"",
            self.ended_at or 0,
        ]


@dataclass(frozen=True, slots=True)
class AccountState:
    account_id: bytes
    display_name: str
    status: AccountStatus
    devices: tuple[DeviceRecord, ...]  # sorted by (added_at, key)
    heads: tuple[bytes, ...]  # sorted
    #: commitment to the recovery key in effect; None once compromised
    recovery_commitment: bytes | None
    event_count: int
    voided: tuple[VoidedEvent, ...]  # sorted by id
    #: rule-7 races: (revocation signed by D, revocation of D) pairs, unsettled
    disputes: tuple[tuple[bytes, bytes], ...]

    @property
    def active_keys(self) -> frozenset[bytes]:
        return frozenset(d.sign_public for d in self.devices if d.status is DeviceStatus.ACTIVE)

    def device(self, sign_public: bytes) -> DeviceRecord | None:
        for d in self.devices:
            if d.sign_public == sign_public:
                return d
        return None

    def to_wire(self) -> list[object]:
        return [
            self.account_id,
            self.display_name,
            self.status.value,
            [d.to_wire() for d in self.devices],
            list(self.heads),
            self.recovery_commitment or b"",
            self.event_count,
            [[v.event_id, int(v.kind), v.reason.value, v.cause] for v in self.voided],
            [list(p) for p in self.disputes],
        ]

    def encode(self) -> bytes:
        return encode(self.to_wire())

    @property
    def digest(self) -> bytes:
        return crypto.hash32(crypto.D_STATE_DIGEST, self.encode())


def _bits(mask: int) -> list[int]:
    out = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return out


@dataclass(slots=True)
class Evaluation:
    """The rules' verdict on every event of a down-closed set, by index."""

    members: list[int]
    void: dict[int, tuple[VoidReason, int]]
    active: set[bytes]
    removed_by_recovery: dict[bytes, int]
    revoked: dict[bytes, int]  # key -> index of a final revocation
    disputes: list[tuple[int, int]]
    compromised: bool


def ancestor_masks(events: Sequence[Event]) -> list[int]:
    """``anc[i]``: the strict ancestors of ``events[i]`` as a bit mask, for
    one account's events in a topological order.  Quadratic in memory: this
    is for ``evaluate``, the reference, not for the ledger."""
    index = {e.id: i for i, e in enumerate(events)}
    anc: list[int] = []
    for e in events:
        mask = 0
        for p in e.parents:
            j = index[p]
            mask |= anc[j] | (1 << j)
        anc.append(mask)
    return anc


def evaluate(events: Sequence[Event], anc: Sequence[int], member_mask: int) -> Evaluation:
    """Apply rules 2-7 to the events whose indices are set in ``member_mask``.

    The reference: a plain reading of PROTOCOL.md §7.2 (suite 2), from
    scratch.  ``AccountLog`` keeps the same result up to date one event at a
    time, and the property tests compare the two after every event.

    ``events`` is in a topological order and ``anc[i]`` is the bit mask of
    the strict ancestors of ``events[i]`` (``ancestor_masks``);
    ``member_mask`` must be down-closed.  Rule 1 (authorisation) and the
    caps were checked at ingest.
    """
    members = _bits(member_mask)
    # Sorted by id so that the cause recorded for each void is the same on
    # every node, whatever the arrival order.
    by_id = sorted(members, key=lambda i: events[i].id)
    recovers = [i for i in by_id if events[i].kind is EventKind.RECOVER]
    rotations = [i for i in by_id if events[i].kind is _ROTATE_RECOVERY]
    revocations = [i for i in by_id if events[i].kind is EventKind.REVOKE_DEVICE]
    void: dict[int, tuple[VoidReason, int]] = {}

    def descendants(i: int) -> int:
        bit = 1 << i
        d = 0
        for j in members:
            if anc[j] & bit:
                d |= 1 << j
        return d

    # Rule 2: every recover voids what is concurrent with it, recovers too.
    compromised = False
    recover_desc: dict[int, int] = {}
    for r in recovers:
        recover_desc[r] = descendants(r)
        concurrent = member_mask & ~(anc[r] | recover_desc[r] | (1 << r))
        for j in _bits(concurrent):
            void.setdefault(j, (VoidReason.CONCURRENT_WITH_RECOVER, r))
            if events[j].kind is EventKind.RECOVER or events[j].kind is _ROTATE_RECOVERY:
                compromised = True
    # Rule 2 for rotations (suite 3): a rotation is a use of the recovery
    # key too, so two concurrent uses (rotation and recover, or two
    # rotations) are both void and the account is compromised.  A rotation
    # voids nothing else: it changes no device.
    for t in rotations:
        t_desc = descendants(t)
        for j in _bits(member_mask & ~(anc[t] | t_desc | (1 << t))):
            if events[j].kind is EventKind.RECOVER or events[j].kind is _ROTATE_RECOVERY:
                void.setdefault(j, (VoidReason.CONCURRENT_WITH_ROTATION, t))
                compromised = True

    # Rule 3: a revocation not voided by rule 2 is final.
    final = [v for v in revocations if v not in void]
    signed_by: dict[bytes, list[int]] = {}
    introduced: dict[bytes, list[int]] = {}
    for i in members:
        e = events[i]
        signed_by.setdefault(e.signer, []).append(i)
        dev = e.introduced_device
        if dev is not None:
            introduced.setdefault(dev.sign_public, []).append(i)

    # Rule 4: a final revocation of D voids what D signed without it being
    # an ancestor of the revocation (revocations and recovers excepted).
    revoked: dict[bytes, int] = {}
    for v in final:
        body = events[v].body
        assert isinstance(body, RevokeDeviceBody)
        target = body.device
        revoked.setdefault(target, v)  # the final revocation with the lowest id
        for j in signed_by.get(target, ()):
            if events[j].kind in _RULE4_EXEMPT or j == v:
                continue
            if not (anc[v] >> j) & 1:
                void.setdefault(j, (VoidReason.SIGNER_REVOKED, v))

    # Rule 5 (for every non-revocation event a device signs): void if each
    # event that added its signer among its ancestors is void.
    for i in members:
        e = events[i]
        if i in void or e.kind is EventKind.GENESIS or e.kind in _RULE4_EXEMPT:
            continue
        adders = [a for a in introduced.get(e.signer, ()) if (anc[i] >> a) & 1]
        if adders and all(a in void for a in adders):
            void[i] = (VoidReason.SIGNER_ADD_VOID, min(adders, key=lambda a: events[a].id))

    # Rule 6: active = non-void adds, minus final revocations, minus what
    # any authorised recover removed: every recover of the set was
    # authorised at ingest, and a void one removes too (suite 2), so that
    # two concurrent recovers leave no device of before them active.  Each
    # key is recorded as removed by the first recover in causal order that
    # removes it (fewest recovers among its ancestors, then lowest id).
    depth = {r: sum(1 for o in recovers if (anc[r] >> o) & 1) for r in recovers}
    removed: dict[bytes, int] = {}
    for r in sorted(recovers, key=lambda r: (depth[r], events[r].id)):
        own = events[r].body.device.sign_public  # type: ignore[union-attr]
        for key, adders in introduced.items():
            if key != own and any((anc[r] >> a) & 1 for a in adders):
                removed.setdefault(key, r)
    # A compromised account has no active device: after two concurrent
    # recovers that already follows from the removals; after a rotation
    # concurrent with another use of the key it is said here, so that
    # nothing can be appended above both (the uses of the recovery key
    # among any event's ancestors form a chain).
    active = (
        set()
        if compromised
        else {
            key
            for key, adders in introduced.items()
            if key not in revoked and key not in removed and any(a not in void for a in adders)
        }
    )

    # Rule 7: a final revocation signed by D concurrent with a final
    # revocation of D disputes the account until a recover descends from both.
    disputes: list[tuple[int, int]] = []
    for v1 in final:
        d = events[v1].signer
        for v2 in final:
            if v2 == v1 or events[v2].body.device != d:  # type: ignore[union-attr]
                continue
            if (anc[v1] >> v2) & 1 or (anc[v2] >> v1) & 1:
                continue
            both = (1 << v1) | (1 << v2)
            if not any(r not in void and anc[r] & both == both for r in recovers):
                disputes.append((v1, v2))
    # Rule 7, one step removed: a final revocation signed by a device whose
    # every adder among its ancestors is void is the same attack made
    # through a device the thief added in the race.  It disputes the account
    # in the same way, until a recover descends from both.
    for v in final:
        adders = [a for a in introduced.get(events[v].signer, ()) if (anc[v] >> a) & 1]
        if adders and all(a in void for a in adders):
            cause = min(adders, key=lambda a: events[a].id)
            both = (1 << v) | (1 << cause)
            if not any(r not in void and anc[r] & both == both for r in recovers):
                disputes.append((v, cause))

    return Evaluation(members, void, active, removed, revoked, disputes, compromised)


class AncestryView(Protocol):
    """What ``build_state`` asks of the history's shape."""

    def is_ancestor(self, x: int, y: int) -> bool: ...

    def parents(self, i: int) -> tuple[int, ...]: ...


class MaskAncestry:
    """An ``AncestryView`` over per-event ancestor masks (the reference)."""

    __slots__ = ("_anc", "_parents")

    def __init__(self, events: Sequence[Event], anc: Sequence[int]) -> None:
        self._anc = anc
        index = {e.id: i for i, e in enumerate(events)}
        self._parents = [tuple(index[p] for p in e.parents) for e in events]

    def is_ancestor(self, x: int, y: int) -> bool:
        return bool(self._anc[y] >> x & 1)

    def parents(self, i: int) -> tuple[int, ...]:
        return self._parents[i]


#: Below this many candidates, ``_latest`` compares them pairwise; above, it
#: sweeps the history once (so a flood of profile events costs O(n), not O(n²)).
_PAIRWISE = 16


def _latest(events: Sequence[Event], shape: AncestryView, candidates: list[int]) -> int:
    """Among candidates, those no other candidate descends from; then the
    highest (timestamp, id) wins (DESIGN §9, profiles)."""
    if len(candidates) <= _PAIRWISE:
        maximal = [
            c for c in candidates if not any(shape.is_ancestor(c, o) for o in candidates if o != c)
        ]
    else:
        # One sweep from the newest candidate down: mark every event that
        # has a candidate among its descendants (numbers are topological).
        cands = set(candidates)
        below: set[int] = set()
        lo = min(candidates)
        for x in range(max(candidates), lo - 1, -1):
            if x in cands or x in below:
                below.update(p for p in shape.parents(x) if p >= lo)
        maximal = [c for c in candidates if c not in below]
    return max(maximal, key=lambda i: (events[i].timestamp, events[i].id))


def build_state(events: Sequence[Event], shape: AncestryView, ev: Evaluation) -> AccountState:
    """Turn an evaluation into the user-facing, arrival-independent state."""
    members = ev.members
    void = ev.void
    genesis = events[members[0]]
    assert genesis.kind is EventKind.GENESIS

    profile = [
        i
        for i in members
        if events[i].kind in (EventKind.GENESIS, EventKind.PROFILE) and i not in void
    ]
    p = events[_latest(events, shape, profile)].body
    display_name = p.display_name if isinstance(p, GenesisBody | ProfileBody) else ""

    adders: dict[bytes, list[int]] = {}
    rotations: dict[bytes, list[int]] = {}
    key_uses: list[int] = []  # recovers and recovery-key rotations
    for i in members:
        e = events[i]
        dev = e.introduced_device
        if dev is not None:
            adders.setdefault(dev.sign_public, []).append(i)
            if e.kind is EventKind.RECOVER:
                key_uses.append(i)
        elif e.kind is _ROTATE_RECOVERY:
            key_uses.append(i)
        elif isinstance(e.body, RotateEncKeyBody) and i not in void:
            rotations.setdefault(e.signer, []).append(i)

    devices = []
    for key, adds in adders.items():
        live = [a for a in adds if a not in void]
        chosen = _latest(events, shape, live) if live else min(adds, key=lambda i: events[i].id)
        add_event = events[chosen]
        dev = add_event.introduced_device
        assert dev is not None
        enc = dev.enc_public
        rot = rotations.get(key, []) + live
        if rot:
            latest = events[_latest(events, shape, rot)]
            if isinstance(latest.body, RotateEncKeyBody):
                enc = latest.body.enc_public
        ended: int | None = None
        if key in ev.active:
            dstatus = DeviceStatus.ACTIVE
        elif key in ev.revoked:
            dstatus, ended = DeviceStatus.REVOKED, ev.revoked[key]
        elif not live:
            dstatus = DeviceStatus.VOID
        elif key not in ev.removed_by_recovery:
            assert ev.compromised  # otherwise rule 6 would have it active
            dstatus = DeviceStatus.COMPROMISED
        else:
            dstatus, ended = DeviceStatus.REMOVED_BY_RECOVERY, ev.removed_by_recovery[key]
        devices.append(
            DeviceRecord(
                sign_public=key,
                enc_public=enc,
                name=dev.name,
                status=dstatus,
                added_by=add_event.id,
                approver=add_event.signer,
                added_kind=add_event.kind,
                added_at=add_event.timestamp,
                ended_by=events[ended].id if ended is not None else None,
                ended_at=events[ended].timestamp if ended is not None else None,
            )
        )
    devices.sort(key=lambda d: (d.added_at, d.sign_public))

    parents_of_someone: set[int] = set()
    for i in members:
        parents_of_someone.update(shape.parents(i))
    heads = sorted(events[i].id for i in members if i not in parents_of_someone)

    commitment: bytes | None
    if ev.compromised:
        commitment = None
    elif key_uses:
        # Not compromised: the uses of the recovery key form a chain, and
        # the last one's commitment is in effect (§7.4).
        last = [u for u in key_uses if not any(shape.is_ancestor(u, o) for o in key_uses)]
        body = events[last[0]].body
        assert isinstance(body, RecoverBody | RotateRecoveryBody)
        commitment = body.recovery_commitment
    else:
        assert isinstance(genesis.body, GenesisBody)
        commitment = genesis.body.recovery_commitment

    voided = sorted(
        (
            VoidedEvent(events[i].id, events[i].kind, reason, events[c].id)
            for i, (reason, c) in void.items()
        ),
        key=lambda v: v.event_id,
    )
    disputes = sorted((events[a].id, events[b].id) for a, b in ev.disputes)
    status = (
        AccountStatus.COMPROMISED
        if ev.compromised
        else AccountStatus.DISPUTED
        if disputes
        else AccountStatus.OK
    )
    return AccountState(
        account_id=genesis.id,
        display_name=display_name,
        status=status,
        devices=tuple(devices),
        heads=tuple(heads),
        recovery_commitment=commitment,
        event_count=len(members),
        voided=tuple(voided),
        disputes=tuple(disputes),
    )


__all__ = [
    "AccountState",
    "AccountStatus",
    "AddDeviceBody",
    "AncestryView",
    "DeviceRecord",
    "DeviceStatus",
    "Evaluation",
    "MaskAncestry",
    "RevokeDeviceBody",
    "VoidReason",
    "VoidedEvent",
    "ancestor_masks",
    "build_state",
    "evaluate",
]
