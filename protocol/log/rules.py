"""The seven rules on a whole account, kept up to date one event at a time
(PROTOCOL.md §7.2, "Incremental evaluation").

``state.evaluate`` is the reference: it reads the rules straight from the
text, from scratch.  ``Verdicts`` keeps the same answer while events arrive,
touching only what the new event can change:

- an ordinary event (add-device, rotation, profile) is void if a recover it
  does not descend from exists (rule 2), if its signer has a final
  revocation (rule 4; a new event is no revocation's ancestor), or if every
  adder of its signer among its ancestors is void (rule 5).  Nothing else
  changes, and that costs a few dictionary look-ups whatever the account;
- a final revocation of D voids what D signed outside its ancestors (rule 4),
  a scan of D's events;
- a recover voids everything outside its ancestors (rule 2), may void
  revocations (which undoes their rule-4 voids), and removes the keys added
  among its ancestors (rule 6), a scan of the account.

Revocations and recovers carry more proof-of-work for that reason (§3.4).
A change of an adder's verdict spreads to what its key signed (rule 5),
always towards descendants, so one pass in acceptance order settles it.

Ties are broken as the reference breaks them: a void event's cause is the
lowest-id recover concurrent with it, else the lowest-id final revocation of
its signer that did not see it, else its signer's lowest-id adder.
"""

from __future__ import annotations

import heapq
from bisect import insort
from collections.abc import Iterable, Sequence

from protocol.log.ancestry import Ancestry
from protocol.log.events import (
    AddDeviceBody,
    Event,
    EventKind,
    GenesisBody,
    RecoverBody,
    RevokeDeviceBody,
)
from protocol.log.state import Evaluation, VoidReason

_GENESIS = EventKind.GENESIS
_ADD = EventKind.ADD_DEVICE
_REVOKE = EventKind.REVOKE_DEVICE
_RECOVER = EventKind.RECOVER
_ROTATE_RECOVERY = EventKind.ROTATE_RECOVERY
#: rule 4 never voids these: revocations and the uses of the recovery key
#: (recovers, rotations of it), which only rule 2 voids
_RULE4_EXEMPT = frozenset({_REVOKE, _RECOVER, _ROTATE_RECOVERY})
#: rule 5 applies to these (genesis, revocations and recovers are exempt)
_RULE5 = frozenset({EventKind.ADD_DEVICE, EventKind.ROTATE_ENC_KEY, EventKind.PROFILE})
_INTRO_BODIES = (GenesisBody, AddDeviceBody, RecoverBody)

_CONC = VoidReason.CONCURRENT_WITH_RECOVER
_REVOKED = VoidReason.SIGNER_REVOKED
_ADD_VOID = VoidReason.SIGNER_ADD_VOID
_CONC_ROT = VoidReason.CONCURRENT_WITH_ROTATION


def _bits(mask: int) -> list[int]:
    out = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return out


class Verdicts:
    """Rules 2-7 over every event of one account (``AccountLog`` feeds it)."""

    __slots__ = (
        "_anc",
        "_dependents",
        "_events",
        "_final",
        "_kdepth",
        "_key_ids",
        "_r2",
        "_r4",
        "_rdepth",
        "_rec_ids",
        "_rk",
        "_signed_by",
        "active",
        "adders",
        "compromised",
        "removed",
        "revocations",
        "revoked",
        "sadders",
        "void",
    )

    def __init__(
        self,
        events: Sequence[Event],
        ancestry: Ancestry,
        rdepth: dict[int, int],
        kdepth: dict[int, int],
    ):
        self._events = events
        self._anc = ancestry
        #: recover -> how many recovers are among its ancestors
        self._rdepth = rdepth
        #: use of the recovery key -> how many uses are among its ancestors
        self._kdepth = kdepth
        #: the uses of the recovery key (recovers and rotations), as (id,
        #: number) ascending by id; None until the first
        self._key_ids: list[tuple[bytes, int]] | None = None
        #: use of the recovery key -> the lowest-id rotation concurrent with
        #: it (rule 2 for rotations, suite 3)
        self._rk: dict[int, int] = {}
        self.void: dict[int, tuple[VoidReason, int]] = {}
        #: the lowest-id recover concurrent with an event (rule 2)
        self._r2: dict[int, int] = {}
        #: the lowest-id final revocation of an event's signer that is not
        #: its descendant (rule 4), for events other than revocations and
        #: recovers
        self._r4: dict[int, int] = {}
        #: key -> final revocations of it, ascending by id (rule 3)
        self._final: dict[bytes, tuple[int, ...]] = {}
        #: key -> every revocation naming it
        self.revocations: dict[bytes, tuple[int, ...]] = {}
        #: signer -> its events that rule 4 can void (made at the first
        #: final revocation: most accounts never need it)
        self._signed_by: dict[bytes, list[int]] | None = None
        #: key -> the events that introduce it
        self.adders: dict[bytes, tuple[int, ...]] = {}
        #: event -> its signer's adders among its ancestors (rules 5 and 7);
        #: None for the genesis and recovers
        self.sadders: list[tuple[int, ...] | None] = []
        #: adder -> the events whose ``sadders`` include it (made when an
        #: adder's verdict first changes)
        self._dependents: dict[int, list[int]] | None = None
        #: the recovers, as (id, number) ascending by id
        self._rec_ids: list[tuple[bytes, int]] | None = None
        self.removed: dict[bytes, int] = {}
        self.revoked: dict[bytes, int] = {}
        #: the active keys (a dict of keys: the collector need not track it)
        self.active: dict[bytes, None] = {}
        self.compromised = False

    # -- adding ------------------------------------------------------------

    def add(self, i: int, event: Event, rec_at: int, sadders: tuple[int, ...], key_at: int) -> None:
        """Take event number ``i`` (already in the ancestry index) into
        account; ``rec_at`` is the latest recover among its ancestors (-1:
        none), ``sadders`` its signer's adders among them and ``key_at``
        the latest use of the recovery key among them (-1: none)."""
        kind = event.kind
        body = event.body
        exempt = kind is _REVOKE or kind is _RECOVER
        signed_by = self._signed_by
        if signed_by is not None and kind not in _RULE4_EXEMPT:
            signed_by.setdefault(event.signer, []).append(i)
        if sadders:
            self.sadders.append(sadders)
            dependents = self._dependents
            if dependents is not None:
                for a in sadders:
                    dependents.setdefault(a, []).append(i)
        else:
            self.sadders.append(None)
        key: bytes | None = None
        if isinstance(body, _INTRO_BODIES):
            key = body.device.sign_public
            adders = self.adders
            adders[key] = (*adders.get(key, ()), i)
        if self._rec_ids:
            r = self._first_concurrent_recover(rec_at)
            if r is not None:
                self._r2[i] = r
        key_use = kind is _RECOVER or kind is _ROTATE_RECOVERY
        if exempt or key_use or self._final:
            dirty = [i]
            keys: set[bytes] = set() if key is None else {key}
            if key_use:
                self._key_use(i, event, key_at, dirty)
            if kind is _RECOVER:
                self._recover(i, event, dirty, keys)
            elif isinstance(body, RevokeDeviceBody):
                self.revocations[body.device] = (*self.revocations.get(body.device, ()), i)
                if i not in self._r2:
                    self._final_revocation(i, event, body.device, dirty, keys)
            elif kind is not _GENESIS and kind is not _ROTATE_RECOVERY:
                final = self._final.get(event.signer)
                if final:
                    self._r4[i] = final[0]  # a new event is no revocation's ancestor
            if len(dirty) > 1:
                self._settle(dirty, keys)
                return
            key = None
            if keys:
                self._verdict_of_newest(i)
                self._activity(keys)
                return
        # The usual case: only the new event's own verdict changes (nothing
        # signed by a key it introduces exists yet), then the activity of the
        # key it introduces.
        self._verdict_of_newest(i)
        if key is not None:
            self._activity((key,))

    def _verdict_of_newest(self, i: int) -> None:
        verdict = self._verdict(i)
        if verdict is not None:
            self.void[i] = verdict

    @property
    def recovers(self) -> list[int]:
        return [r for _, r in self._rec_ids or ()]

    def _signed(self) -> dict[bytes, list[int]]:
        """Signer -> its events rule 4 can void (everything but revocations
        and recovers), made on first use."""
        if self._signed_by is None:
            signed_by: dict[bytes, list[int]] = {}
            for j, e in enumerate(self._events):
                if e.kind not in _RULE4_EXEMPT:
                    signed_by.setdefault(e.signer, []).append(j)
            self._signed_by = signed_by
        return self._signed_by

    def _dependents_of(self, adder: int) -> list[int]:
        """The events whose signer's adders include ``adder``."""
        if self._dependents is None:
            dependents: dict[int, list[int]] = {}
            for j, sadders in enumerate(self.sadders):
                for a in sadders or ():
                    dependents.setdefault(a, []).append(j)
            self._dependents = dependents
        return self._dependents.get(adder, [])

    def _first_concurrent_recover(self, rec_at: int) -> int | None:
        """The lowest-id recover that is not among the ancestors of a new
        event whose latest recover ancestor is ``rec_at``."""
        # The recovers among any event's ancestors form a chain (§7.2, rule
        # 6), so counting them says whether one is missing.
        rec_ids = self._rec_ids
        assert rec_ids is not None
        seen = self._rdepth[rec_at] + 1 if rec_at >= 0 else 0
        if seen == len(rec_ids):
            return None
        anc = self._anc
        for _, r in rec_ids:
            if r != rec_at and (rec_at < 0 or not anc.is_ancestor(r, rec_at)):
                return r
        return None  # pragma: no cover - the count says one exists

    def _key_use(self, i: int, event: Event, key_at: int, dirty: list[int]) -> None:
        """Rule 2 for rotations (suite 3): a use of the recovery key (a
        recover or a rotation) concurrent with another is void, and the
        account compromised.  The uses among any event's ancestors form a
        chain, so counting them says whether one is missing; only then are
        they scanned."""
        ids = self._key_ids
        if ids is None:
            ids = self._key_ids = []
        seen = self._kdepth[key_at] + 1 if key_at >= 0 else 0
        if seen < len(ids):
            events = self._events
            anc = self._anc
            rk = self._rk
            rotation = event.kind is _ROTATE_RECOVERY
            eid = event.id
            for xid, x in ids:
                if x == key_at or (key_at >= 0 and anc.is_ancestor(x, key_at)):
                    continue
                self.compromised = True
                if rotation:
                    old = rk.get(x)
                    if old is None or eid < events[old].id:
                        rk[x] = i
                        dirty.append(x)
                if events[x].kind is _ROTATE_RECOVERY:
                    old = rk.get(i)
                    if old is None or xid < events[old].id:
                        rk[i] = x
        insort(ids, (event.id, i))

    def _recover(self, i: int, event: Event, dirty: list[int], keys: set[bytes]) -> None:
        events = self._events
        r2 = self._r2
        anc_mask = self._anc.mask(i)
        eid = event.id
        if i in r2:
            self.compromised = True
        # Rule 2: everything accepted before it and not among its ancestors
        # is concurrent with it.
        for x in _bits(((1 << i) - 1) & ~anc_mask):
            old = r2.get(x)
            if old is not None and events[old].id < eid:
                continue
            r2[x] = i
            dirty.append(x)
            xe = events[x]
            if xe.kind is _RECOVER or xe.kind is _ROTATE_RECOVERY:
                self.compromised = True
            elif old is None and isinstance(xe.body, RevokeDeviceBody):
                self._lose_finality(x, xe.body.device, dirty, keys)
        if self._rec_ids is None:
            self._rec_ids = []
        insort(self._rec_ids, (eid, i))
        # Rule 6: a recover, void or not, removes every key introduced among
        # its ancestors but its own; the first in causal order is recorded.
        body = event.body
        assert isinstance(body, RecoverBody)
        own = body.device.sign_public
        rank = (self._rdepth[i], eid)
        removed = self.removed
        rdepth = self._rdepth
        for key, adders in self.adders.items():
            if key == own or not any(anc_mask >> a & 1 for a in adders):
                continue
            cur = removed.get(key)
            if cur is None or rank < (rdepth[cur], events[cur].id):
                removed[key] = i
                keys.add(key)

    def _final_revocation(
        self, i: int, event: Event, target: bytes, dirty: list[int], keys: set[bytes]
    ) -> None:
        events = self._events
        eid = event.id
        final = self._final.get(target, ())
        # ascending by id: the lowest-id final revocation is recorded (rule 3)
        final = tuple(sorted((*final, i), key=lambda v: events[v].id))
        self._final[target] = final
        self.revoked[target] = final[0]
        keys.add(target)
        # Rule 4: what the target signed outside this revocation's ancestors.
        anc_mask = self._anc.mask(i)
        r4 = self._r4
        for y in self._signed().get(target, ()):
            if anc_mask >> y & 1:
                continue
            old = r4.get(y)
            if old is None or eid < events[old].id:
                r4[y] = i
                dirty.append(y)

    def _lose_finality(self, v: int, target: bytes, dirty: list[int], keys: set[bytes]) -> None:
        """Revocation ``v`` was final and a recover voided it (rule 3)."""
        final = tuple(w for w in self._final[target] if w != v)
        keys.add(target)
        if final:
            self._final[target] = final
            self.revoked[target] = final[0]
        else:
            del self.revoked[target]
            del self._final[target]
        anc = self._anc
        r4 = self._r4
        for y in self._signed().get(target, ()):
            if r4.get(y) != v:
                continue
            nxt = next((w for w in final if not anc.is_ancestor(y, w)), None)
            if nxt is None:
                del r4[y]
            else:
                r4[y] = nxt
            dirty.append(y)

    def _verdict(self, x: int) -> tuple[VoidReason, int] | None:
        r = self._r2.get(x)
        if r is not None:
            return (_CONC, r)
        r = self._rk.get(x)
        if r is not None:
            return (_CONC_ROT, r)
        r = self._r4.get(x)
        if r is not None:
            return (_REVOKED, r)
        void = self.void
        if not void:
            return None
        sadders = self.sadders[x]
        if sadders and self._events[x].kind in _RULE5:
            for a in sadders:
                if a not in void:
                    return None
            events = self._events
            return (_ADD_VOID, min(sadders, key=lambda a: events[a].id))
        return None

    def _settle(self, dirty: list[int], keys: set[bytes]) -> None:
        """Re-judge ``dirty`` events in acceptance order, spreading a change
        of an adder's verdict to the events its key signed (rule 5); then
        the activity of ``keys`` and of every key whose adder changed."""
        void = self.void
        events = self._events
        newest = len(events) - 1
        heap = sorted(set(dirty))
        done: set[int] = set()
        while heap:
            x = heapq.heappop(heap)
            if x in done:
                continue
            done.add(x)
            new = self._verdict(x)
            old = void.get(x)
            if new == old:
                continue
            if new is None:
                del void[x]
            else:
                void[x] = new
            if (old is None) == (new is None):
                continue  # another cause, same verdict
            body = events[x].body
            if isinstance(body, _INTRO_BODIES):
                keys.add(body.device.sign_public)
                if x != newest:  # the newest event has no dependents yet
                    for y in self._dependents_of(x):
                        heapq.heappush(heap, y)
        self._activity(keys)

    def _activity(self, keys: Iterable[bytes]) -> None:
        """Rule 6 for ``keys``, from the verdicts as they stand."""
        void = self.void
        active = self.active
        for key in keys:
            if (
                key not in self.revoked
                and key not in self.removed
                and any(a not in void for a in self.adders[key])
            ):
                active[key] = None
            else:
                active.pop(key, None)

    # -- reading -----------------------------------------------------------

    def disputes(self) -> list[tuple[int, int]]:
        """Rule 7, from the final revocations as they stand."""
        anc = self._anc
        events = self._events
        r2 = self._r2
        rk = self._rk
        nonvoid = [r for r in self.recovers if r not in r2 and r not in rk]
        settle = anc.mask(max(nonvoid, key=self._rdepth.__getitem__)) if nonvoid else 0

        def settled(a: int, b: int) -> bool:
            return bool(settle >> a & 1 and settle >> b & 1)

        finals = [v for lst in self._final.values() for v in lst]
        by_signer: dict[bytes, list[int]] = {}
        for v in finals:
            by_signer.setdefault(events[v].signer, []).append(v)
        out: list[tuple[int, int]] = []
        for target, lst in self._final.items():
            for v2 in lst:
                for v1 in by_signer.get(target, ()):
                    if v1 == v2 or anc.is_ancestor(v1, v2) or anc.is_ancestor(v2, v1):
                        continue
                    if not settled(v1, v2):
                        out.append((v1, v2))
        void = self.void
        for v in finals:
            sadders = self.sadders[v]
            if sadders and all(a in void for a in sadders):
                cause = min(sadders, key=lambda a: events[a].id)
                if not settled(v, cause):
                    out.append((v, cause))
        return out

    def evaluation(self) -> Evaluation:
        return Evaluation(
            list(range(len(self._events))),
            dict(self.void),
            set() if self.compromised else set(self.active),
            dict(self.removed),
            dict(self.revoked),
            self.disputes(),
            self.compromised,
        )
