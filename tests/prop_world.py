"""The generator of random account histories behind the property tests
(``test_properties.py``, ``test_property_mutants.py``), and the checks that
compare the ledger's incremental verdicts and contexts with the reference
(``state.evaluate``) and with the rule model (``rule_model.py``) after every
event."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

from hypothesis import event as hyp_event
from hypothesis import strategies as st

import protocol.core.canonical
import protocol.core.crypto
import protocol.log.account
import protocol.log.context
import protocol.log.rules
import protocol.log.state
from protocol.core.errors import InvalidInput
from protocol.core.keys import DeviceKeys, RecoveryKey
from protocol.log import authoring
from protocol.log.account import AccountLog
from protocol.log.events import Event, GenesisBody, RecoverBody, RotateRecoveryBody
from protocol.log.ledger import IngestStatus, Ledger
from protocol.log.state import AccountState, Evaluation, ancestor_masks

from . import rule_model
from .conftest import FAST, T0

# --------------------------------------------------------------------------
# Deterministic keys


@functools.cache
def dev(label: str) -> DeviceKeys:
    return DeviceKeys.from_random(hashlib.blake2b(b"prop-device:" + label.encode()).digest())


@functools.cache
def rec(label: str) -> RecoveryKey:
    return RecoveryKey(hashlib.blake2b(b"prop-recovery:" + label.encode(), digest_size=32).digest())


# --------------------------------------------------------------------------
# The universe of one account's events


Op = tuple[int, int, int]
op_st = st.tuples(st.integers(0, 255), st.integers(0, 2**16 - 1), st.integers(0, 2**16 - 1))


class World:
    """Every valid event made so far for one account, in a universe ledger."""

    def __init__(self, params: Any = FAST) -> None:
        self.params = params
        self.t = T0
        self.n = 0
        self.keys: dict[bytes, DeviceKeys] = {}
        self.recovery_by_commitment: dict[bytes, RecoveryKey] = {}
        d0 = self.new_key("d")
        rk = rec("r0")
        self.recovery_by_commitment[rk.commitment] = rk
        g = authoring.genesis(
            params, d0, rk, display_name="owner", device_name="d0", timestamp=self.t
        )
        self.ledger = Ledger(params)
        self.ledger.ingest(g.raw)
        self.account = g.id
        self.genesis = g
        self.events: list[Event] = [g]  # acceptance order: topological
        self.rejected = 0
        #: the independent model's view of the same events: every verdict
        #: the ledger gives (accept, or the error) must be the model's
        self.model = rule_model.ModelLog()
        self.model.add(g)
        self._masks: list[int] = []

    # -- helpers ------------------------------------------------------------

    def ts(self) -> int:
        self.t += 1
        return self.t

    def new_key(self, who: str) -> DeviceKeys:
        self.n += 1
        k = dev(f"{who}{self.n}")
        self.keys[k.sign_public] = k
        return k

    @property
    def log(self) -> AccountLog:
        return self.ledger.log(self.account)

    def idx(self, event_id: bytes) -> int:
        return self.log.index[event_id]

    def masks(self) -> list[int]:
        """Reference ancestor masks (``state.ancestor_masks``) of the events."""
        log = self.log
        if len(self._masks) != len(log.events):
            self._masks = ancestor_masks(log.events)
        return self._masks

    def mask_of(self, ids: list[bytes] | tuple[bytes, ...]) -> int:
        log = self.log
        anc = self.masks()
        mask = 0
        for p in ids:
            i = log.index[p]
            mask |= anc[i] | (1 << i)
        return mask

    def evaluation_at(self, parents: list[bytes]) -> Evaluation:
        log = self.log
        return protocol.log.state.evaluate(log.events, self.masks(), self.mask_of(parents))

    def introduced_at(self, parents: list[bytes]) -> list[bytes]:
        log = self.log
        mask = self.mask_of(parents)
        return sorted(
            k for k, adders in log.introduced.items() if any(mask >> a & 1 for a in adders)
        )

    def heads_of(self, mask: int) -> list[bytes]:
        log = self.log
        anc = self.masks()
        below = 0
        for i in _bits(mask):
            below |= anc[i]
        return sorted(log.events[i].id for i in _bits(mask & ~below))

    def commitment_at(self, parents: list[bytes]) -> bytes | None:
        log = self.log
        anc = self.masks()
        mask = self.mask_of(parents)
        recs = [i for i in _bits(mask) if log.events[i].kind in rule_model.KEY_USES]
        latest = [r for r in recs if not any(anc[o] >> r & 1 for o in recs)]
        if len(latest) > 1:
            return None
        if not latest:
            assert isinstance(self.genesis.body, GenesisBody)
            return self.genesis.body.recovery_commitment
        body = log.events[latest[0]].body
        assert isinstance(body, RecoverBody | RotateRecoveryBody)
        return body.recovery_commitment

    def submit(self, event: Event) -> bool:
        expected = rule_model.expected_error(self.model, event, self.params)
        try:
            r = self.ledger.ingest(event.raw)
        except InvalidInput as exc:
            assert type(exc) is expected, f"the model says {expected}, the ledger {exc!r}"
            self.rejected += 1
            hyp_event(f"rejected: {type(exc).__name__}")
            return False
        assert expected is None, f"the model refuses with {expected.__name__}, the ledger accepts"
        assert r.status is IngestStatus.ACCEPTED, r
        self.events.append(event)
        self.model.add(event)
        return True

    def state(self) -> AccountState:
        return self.ledger.state(self.account)

    def pick_parents(
        self, pool_mask: int, c: int, extra: list[list[bytes]] | None = None
    ) -> list[bytes]:
        """Parents among the events of ``pool_mask`` (or one of ``extra``)."""
        pool = [self.log.events[i].id for i in _bits(pool_mask)]
        mode = c % 8
        r = c >> 3
        if extra and mode == 7:
            return sorted(extra[r % len(extra)])
        if mode <= 2:
            heads = self.heads_of(pool_mask)
            if len(heads) > self.params.max_parents:
                heads = [self.log.events[i].id for i in sorted(self.idx(h) for h in heads)]
                heads = sorted(heads[-self.params.max_parents :])
            return heads
        if mode == 3:
            return [pool[r % len(pool)]]
        if mode == 4:
            return sorted({pool[r % len(pool)], pool[(r >> 5) % len(pool)]})
        if mode == 5:
            return [pool[0]]  # a long-range fork from the genesis
        return [pool[-1]]

    # -- making events ------------------------------------------------------

    def make(
        self,
        kind: int,
        a: int,
        parents: list[bytes],
        signers: set[bytes],
        who: str,
        *,
        recover_ok: bool = False,
        force: bool = False,
        dry: bool = False,
        paper: dict[bytes, RecoveryKey] | None = None,
    ) -> tuple[Event | None, bytes | None]:
        """One event of ``kind`` (mod 8) at ``parents`` signed by one of
        ``signers`` active there.  Returns (event if accepted, new key).

        With ``paper`` (the recovery keys this side holds, by commitment; the
        keys it makes are added), kind 5 with bit 8 set is a rotation of the
        recovery key (suite 3) and recovers use those keys: a side that does
        not hold the key in force tries a key of its own when ``force``."""
        if paper is not None and kind % 8 == 5 and kind & 8:
            return self._rotation(a, parents, signers, who, paper, force=force)
        if paper is not None and kind % 8 == 6 and kind & 8 and recover_ok:
            return self._recovery(parents, who, paper, force=force)
        active = sorted(self.evaluation_at(parents).active & signers)
        if not active:
            if not force or not signers:
                return None, None
            active = sorted(signers)  # try anyway: the ledger must refuse it
        signer = self.keys[active[a % len(active)]]
        k = kind % 8
        acc = self.account
        new: bytes | None = None
        e: Event
        if k == 6 and recover_ok and kind & 8:
            commitment = self.commitment_at(parents)
            rk = self.recovery_by_commitment.get(commitment or b"")
            if rk is None:
                return None, None
            nd = self.new_key(who)
            nxt = rec(f"r{self.n}")
            self.recovery_by_commitment[nxt.commitment] = nxt
            e = authoring.recover(
                self.params, acc, parents, rk, nd, nxt, device_name="rec", timestamp=self.ts()
            )
            new = nd.sign_public
        elif k in (0, 1, 2, 6):
            nd = self.new_key(who)
            intro = authoring.introduce(self.params, acc, nd, f"{who}{self.n}")
            e = authoring.add_device(self.params, acc, parents, signer, intro, timestamp=self.ts())
            new = nd.sign_public
        elif k in (3, 7):
            # Mostly a device active there (races between revocations are
            # what rule 7 is about), sometimes any device added before.
            # (a revocation of a device not active there is refused: suite 2)
            pool = active if k == 3 or dry else self.introduced_at(parents)
            targets = [t for t in pool if t != signer.sign_public]
            if not targets:
                return None, None
            target = targets[(a >> 4) % len(targets)]
            e = authoring.revoke_device(
                self.params, acc, parents, signer, target, timestamp=self.ts()
            )
        elif k == 5:
            e = authoring.rotate_enc_key(
                self.params, acc, parents, signer, dev(f"enc{a}").enc_public, timestamp=self.ts()
            )
        else:
            e = authoring.profile(
                self.params, acc, parents, signer, display_name=f"{who}{a % 7}", timestamp=self.ts()
            )
        if dry:
            return e, new
        if not self.submit(e):
            return None, None
        return e, new

    def _rotation(
        self,
        a: int,
        parents: list[bytes],
        signers: set[bytes],
        who: str,
        paper: dict[bytes, RecoveryKey],
        *,
        force: bool,
    ) -> tuple[Event | None, bytes | None]:
        active = sorted(self.evaluation_at(parents).active & signers)
        if not active:
            if not force or not signers:
                return None, None
            active = sorted(signers)  # a device alone, or a revoked one
        rk = paper.get(self.commitment_at(parents) or b"")
        if rk is None:
            if not force:
                return None, None
            rk = rec(f"guess{a}")  # not the key in force: must be refused
        nxt = rec(f"{who}-r{self.ts()}")
        paper[nxt.commitment] = nxt
        signer = self.keys[active[a % len(active)]]
        e = authoring.rotate_recovery(
            self.params, self.account, parents, signer, rk, nxt, timestamp=self.ts()
        )
        return (e, None) if self.submit(e) else (None, None)

    def _recovery(
        self, parents: list[bytes], who: str, paper: dict[bytes, RecoveryKey], *, force: bool
    ) -> tuple[Event | None, bytes | None]:
        rk = paper.get(self.commitment_at(parents) or b"")
        if rk is None:
            if not force or not paper:
                return None, None
            rk = sorted(paper.values(), key=lambda k: k.public)[0]  # an old key
        nd = self.new_key(who)
        nxt = rec(f"{who}-r{self.ts()}")
        paper[nxt.commitment] = nxt
        e = authoring.recover(
            self.params, self.account, parents, rk, nd, nxt, device_name="rec", timestamp=self.ts()
        )
        return (e, nd.sign_public) if self.submit(e) else (None, None)


def _bits(mask: int) -> list[int]:
    out = []
    i = 0
    while mask:
        if mask & 1:
            out.append(i)
        mask >>= 1
        i += 1
    return out


def all_mask(w: World) -> int:
    return w.log.all_mask


def build_honest(
    w: World, ops: list[Op], *, recover_ok: bool, honest: set[bytes] | None = None
) -> set[bytes]:
    """A random honest history; returns the honest keys."""
    honest = {w.genesis.signer} if honest is None else honest
    for kind, a, c in ops:
        parents = w.pick_parents(all_mask(w), c)
        if kind % 8 == 7 and kind & 8 == 0:
            mutual_revocation(w, a, parents)
            continue
        _, new = w.make(kind, a, parents, honest | _recovered(w), "h", recover_ok=recover_ok)
        if new is not None:
            honest.add(new)
    return honest


def mutual_revocation(w: World, a: int, parents: list[bytes]) -> None:
    """Two devices active at ``parents`` revoke each other there (rule 7)."""
    active = sorted(w.evaluation_at(parents).active)
    if len(active) < 2:
        return
    d1 = active[a % len(active)]
    d2 = active[(a // len(active) + 1 + a % len(active)) % len(active)]
    if d1 == d2:
        return
    for n, (signer, target) in enumerate(((d1, d2), (d2, d1))):
        e = authoring.revoke_device(
            w.params, w.account, parents, w.keys[signer], target, timestamp=w.ts()
        )
        # Refused only if too many devices are active at a merge of heads
        # (the active-device cap): then both are, for the same reason.
        if not w.submit(e):
            assert n == 0, "the second revocation must be accepted if the first is"
            return


def _recovered(w: World) -> set[bytes]:
    return {e.body.device.sign_public for e in w.events if isinstance(e.body, RecoverBody)}


# --------------------------------------------------------------------------
# Comparing the incremental path with a full re-evaluation


def assert_same_evaluation(fast: Evaluation, full: Evaluation) -> None:
    assert fast.members == full.members
    assert fast.active == full.active, "active set differs from recompute()"
    assert fast.void == full.void, "void map differs from recompute()"
    assert sorted(fast.disputes) == sorted(full.disputes), "disputes differ"
    assert fast.revoked == full.revoked, "revoked map differs from recompute()"
    assert fast.removed_by_recovery == full.removed_by_recovery, "removals differ"
    assert fast.compromised == full.compromised, "compromised flag differs"


def assert_model_agrees(log: AccountLog, ev: Evaluation) -> None:
    """The independent model (tests/rule_model.py) gives the same verdicts."""
    events = log.events
    m = rule_model.model(events)
    ids = [e.id for e in events]
    assert {ids[i]: (r.value, ids[c]) for i, (r, c) in ev.void.items()} == m.void, "void"
    assert ev.active == m.active, "active set differs from the model"
    assert {k: ids[v] for k, v in ev.revoked.items()} == m.revoked, "revoked"
    assert {k: ids[v] for k, v in ev.removed_by_recovery.items()} == m.removed, "removed"
    assert {(ids[a], ids[b]) for a, b in ev.disputes} == m.disputes, "disputes"
    assert ev.compromised == m.compromised, "compromised"


def assert_context_agrees(log: AccountLog, mirror: rule_model.ModelLog, i: int) -> None:
    """The context the log keeps after event ``i`` (active devices, their
    adders and counts: what rule 1 and the caps read) is the model's state
    of ``i`` and its ancestors."""
    (keys, key_adders), counts = log.context(i)
    st, model_counts = mirror.after(log.events[i].id)
    assert set(keys) == st.active, "context: active devices differ from the model"
    assert dict(zip(keys, counts, strict=True)) == model_counts, "context: counts differ"
    for key, adders in zip(keys, key_adders, strict=True):
        below = mirror.anc[log.events[i].id] | {log.events[i].id}
        want = sorted(
            j for j, e in enumerate(log.events) if e.id in below and rule_model.introduces(e) == key
        )
        assert sorted(adders) == want, "context: a device's adders differ"


@contextmanager
def checking_incremental(model: bool = True) -> Iterator[list[int]]:
    """After every single ``AccountLog.append``, compare the incremental
    verdicts with ``recompute()`` (the reference), and, with ``model``, the
    verdicts and the new event's context with the independent model."""
    original = AccountLog.append
    count = [0]
    mirrors: dict[int, tuple[AccountLog, rule_model.ModelLog]] = {}

    def append(self: AccountLog, event: Event, checked: Any) -> None:
        original(self, event, checked)
        count[0] += 1
        ev = self.evaluation()
        assert_same_evaluation(ev, self.recompute())
        if not model:
            return
        entry = mirrors.get(id(self))
        if entry is None or entry[0] is not self:
            mirror = rule_model.ModelLog()
            for e in self.events:
                mirror.add(e)
            mirrors[id(self)] = (self, mirror)
        else:
            mirror = entry[1]
            mirror.add(event)
        assert_context_agrees(self, mirror, len(self.events) - 1)
        assert_model_agrees(self, ev)

    with mock.patch.object(AccountLog, "append", append):
        yield count


@contextmanager
def _counting() -> Iterator[list[int]]:
    original = AccountLog.append
    count = [0]

    def append(self: AccountLog, event: Event, checked: Any) -> None:
        original(self, event, checked)
        count[0] += 1

    with mock.patch.object(AccountLog, "append", append):
        yield count
