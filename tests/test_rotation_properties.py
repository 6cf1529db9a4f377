"""The attack model of ``test_properties.py`` extended with rotations of the
recovery key (PROTOCOL.md §6.8, §7.2 "Rotations of the recovery key",
suite 3).

The same generator (``prop_world.World``) and the same checks after every
single ``AccountLog.append``: the incremental verdicts against
``recompute()`` (the reference) and both against the independent model
(``rule_model.py``), every verdict at ingest against the model's.  The
properties:

1. any delivery order of a history in which the owner rotates and recovers
   gives the same state (S3);
2. a thief holding only a stolen device, only the old paper key, or both,
   takes nothing over once the owner has revoked what it sees and rotated
   the key: no key of the thief's is ever active, and the recovery key in
   force is never one the thief made, wherever and whenever it attaches
   events.  A thief with only a device cannot even touch the key in force;
3. a recover by the legitimate holder ends the thief's power: with the new
   key (after the rotation) the thief's later events change nothing a user
   relies on (device-only thief) or leave nothing of its active (a thief
   with the old paper key, which can at worst compromise the account); and
   when the thief has taken the key in force (rotated it in the owner's
   view), the owner's recover with the old key at the genesis still leaves
   no key of the thief's active.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import event as hyp_event
from hypothesis import given
from hypothesis import strategies as st

from protocol.core.keys import RecoveryKey
from protocol.log import authoring
from protocol.log.account import AccountLog
from protocol.log.events import Event, EventKind
from protocol.log.ledger import Ledger
from protocol.log.state import AccountState, AccountStatus

from .conftest import FAST
from .conftest import hypothesis_settings as _settings
from .prop_world import Op, World, _bits, all_mask, checking_incremental, op_st, rec
from .test_properties import effective
from .test_property_mutants import RULES, expect_caught, mutant

FAST_N = 150
SLOW_N = 3000

#: op kinds: bit 8 with kind 5 is a rotation of the recovery key, with kind
#: 6 a recover (1 op in 16 of ``op_st``); these bias the draw towards them
_uses = st.tuples(
    st.sampled_from([13, 14, 29, 30]), st.integers(0, 2**16 - 1), st.integers(0, 2**16 - 1)
)
rot_op = st.one_of(op_st, _uses)
#: fewer uses of the key: an owner whose history is already compromised
#: has nothing left to steal
rare_rot_op = st.integers(0, 4).flatmap(lambda n: _uses if n == 0 else op_st)
#: for long histories, rarer still (most would be compromised otherwise)
rarest_rot_op = st.integers(0, 9).flatmap(lambda n: _uses if n == 0 else op_st)


def _owner_paper(w: World) -> dict[bytes, RecoveryKey]:
    return w.recovery_by_commitment


def build(
    w: World,
    ops: list[Op],
    signers: set[bytes],
    paper: dict[bytes, RecoveryKey],
    who: str,
    recover_ok: bool = True,
) -> None:
    for kind, a, c in ops:
        parents = w.pick_parents(all_mask(w), c)
        _, new = w.make(kind, a, parents, signers, who, recover_ok=recover_ok, paper=paper)
        if new is not None:
            signers.add(new)


# --------------------------------------------------------------------------
# Property 1


def check_rotations_converge(ops: list[Op], data: st.DataObject) -> None:
    with checking_incremental():
        w = World()
        build(w, ops, {w.genesis.signer}, _owner_paper(w), "h")
        reference = w.state()
        perm = data.draw(st.permutations(range(len(w.events))), label="delivery order")
        ledger = Ledger(FAST)
        for i in perm:
            ledger.ingest(w.events[i].raw)
    assert ledger.state(w.account).encode() == reference.encode()
    rotations = sum(e.kind is EventKind.ROTATE_RECOVERY for e in w.events)
    hyp_event(f"rotations: {min(rotations, 3)}+; status {reference.status.value}")


@_settings(FAST_N)
@given(st.lists(rare_rot_op, min_size=6, max_size=24), st.data())
def test_rotations_converge_in_any_order(ops: list[Op], data: st.DataObject) -> None:
    check_rotations_converge(ops, data)


@pytest.mark.slow
@_settings(SLOW_N)
@given(st.lists(rarest_rot_op, min_size=10, max_size=60), st.data())
def test_rotations_converge_in_any_order_slow(ops: list[Op], data: st.DataObject) -> None:
    check_rotations_converge(ops, data)


# --------------------------------------------------------------------------
# Properties 2 and 3


@dataclass(frozen=True)
class TheftCase:
    honest: list[Op]
    mode: int  # 0: a stolen device; 1: the paper key only; 2: both
    mid: list[Op]
    view: int
    recover: bool
    post: list[Op]


def theft_cases_of(scale: int) -> st.SearchStrategy[TheftCase]:
    return st.builds(
        TheftCase,
        st.lists(rare_rot_op, max_size=6 * scale),
        st.integers(0, 2),
        st.lists(rot_op, min_size=1, max_size=8 * scale),
        st.integers(0, 2**32 - 1),
        st.booleans(),
        st.lists(rot_op, min_size=2, max_size=10 * scale),
    )


@dataclass
class Thief:
    held: set[bytes]  # stolen devices and every device it made
    paper: dict[bytes, RecoveryKey]  # the paper keys it saw or made
    made: set[bytes]  # the events it made


def thief_step(w: World, t: Thief, op: Op, extra: list[list[bytes]]) -> Event | None:
    kind, a, c = op
    parents = w.pick_parents(all_mask(w), c, extra)
    e, new = w.make(kind, a, parents, t.held, "x", recover_ok=True, force=a % 5 == 0, paper=t.paper)
    if new is not None:
        t.held.add(new)
    if e is not None:
        t.made.add(e.id)
    return e


def thief_active(w: World, t: Thief, honest: set[bytes], state: AccountState) -> set[bytes]:
    return set(state.active_keys & (t.held - honest))


def check_theft(case: TheftCase) -> None:
    w = World()
    owner_paper = _owner_paper(w)
    _, second = w.make(0, 0, [w.genesis.id], {w.genesis.signer}, "h")
    assert second is not None
    honest = {w.genesis.signer, second}
    build(w, case.honest, honest, owner_paper, "h", recover_ok=False)
    heads = w.heads_of(all_mask(w))
    devices = sorted(w.evaluation_at(heads).active & honest)
    in_force = owner_paper.get(w.commitment_at(heads) or b"")
    if len(devices) < 2 or in_force is None:
        hyp_event("nothing to steal from")
        return
    stolen = {devices[case.view % len(devices)]} if case.mode != 1 else set()
    t = Thief(set(stolen), {in_force.commitment: in_force} if case.mode else {}, set())
    honest_signers = honest - stolen
    for op in case.mid:
        if op[0] & 16:
            thief_step(w, t, op, [])
        else:
            kind, a, c = op
            parents = w.pick_parents(all_mask(w), c)
            _, new = w.make(kind, a, parents, honest_signers, "h", paper=owner_paper)
            if new is not None:
                honest.add(new)
                honest_signers.add(new)
    seed = 0
    log = w.log
    for j, e in enumerate(w.events):
        if e.id not in t.made or case.view >> (j % 32) & 1:
            seed |= 1 << log.index[e.id]
    view = w.heads_of(w.mask_of([log.events[i].id for i in _bits(seed)]))
    if len(view) > FAST.max_parents:
        hyp_event("owner's view has too many heads")
        return
    owners = sorted(w.evaluation_at(view).active & (honest - stolen))
    key = owner_paper.get(w.commitment_at(view) or b"")
    if not owners or key is None:
        # The thief took the key in force (or every device) in the owner's
        # view: the owner's answer is the old key at the genesis.
        hyp_event("the thief holds the key in force in the owner's view")
        r = authoring.recover(
            FAST,
            w.account,
            [w.genesis.id],
            rec("r0"),  # the genesis key (prop_world.World)
            w.new_key("h"),
            rec("owner-last"),
            device_name="last",
            timestamp=w.ts(),
        )
        assert w.submit(r)
        assert not thief_active(w, t, honest, w.state())
        return
    # The owner's answer: revoke the stolen device and what the thief added
    # that it sees, then rotate the key (co-signed by the owner's device).
    owner = w.keys[owners[case.view % len(owners)]]
    visible = set(w.introduced_at(view))
    parents = view
    answer: list[Event] = []
    for target in sorted(stolen | (t.held & visible - honest)):
        if target not in w.evaluation_at(parents).active or target == owner.sign_public:
            continue
        e = authoring.revoke_device(FAST, w.account, parents, owner, target, timestamp=w.ts())
        assert w.submit(e), "the owner's revocation must be accepted"
        answer.append(e)
        parents = [e.id]
    new_key = rec(f"owner-rot{w.ts()}")
    owner_paper[new_key.commitment] = new_key
    rot = authoring.rotate_recovery(FAST, w.account, parents, owner, key, new_key, timestamp=w.ts())
    assert w.submit(rot), "the owner's rotation must be accepted"
    answer.append(rot)
    nxt = new_key
    if case.recover:
        fresh = w.new_key("h")
        honest.add(fresh.sign_public)
        nxt = rec(f"owner-rec{w.ts()}")
        owner_paper[nxt.commitment] = nxt
        r = authoring.recover(
            FAST, w.account, [rot.id], new_key, fresh, nxt, device_name="new", timestamp=w.ts()
        )
        assert w.submit(r), "the owner's recover with the new key must be accepted"
        answer.append(r)
    state = w.state()
    assert not thief_active(w, t, honest, state), "thief key active after the answer"
    before = effective(state)
    races = [list(e.parents) for e in answer]
    for op in case.post:
        e = thief_step(w, t, op, races)
        if e is None:
            continue
        state = w.state()
        assert not thief_active(w, t, honest, state), "thief key active"
        assert state.recovery_commitment is None or state.recovery_commitment not in t.paper
        if e.kind in (EventKind.RECOVER, EventKind.ROTATE_RECOVERY):
            hyp_event("the thief used an old paper key after the rotation")
            assert state.status is AccountStatus.COMPROMISED
        if case.mode == 0:
            # a device alone never touches the recovery key
            assert state.recovery_commitment == nxt.commitment
            if case.recover:
                assert effective(state) == before, "a thief event changed the state"
    hyp_event(f"mode {case.mode}, recover {case.recover}")


@_settings(FAST_N)
@given(theft_cases_of(1))
def test_rotation_leaves_a_thief_nothing(case: TheftCase) -> None:
    with checking_incremental():
        check_theft(case)


@pytest.mark.slow
@_settings(SLOW_N)
@given(theft_cases_of(2))
def test_rotation_leaves_a_thief_nothing_slow(case: TheftCase) -> None:
    with checking_incremental():
        check_theft(case)


# --------------------------------------------------------------------------
# The properties catch broken rotation rules (as ``test_property_mutants``).


def test_theft_property_catches_an_old_key_still_in_force() -> None:
    # Recovers judged by the latest recover only, as before rotations: the
    # old paper key recovers above the owner's rotation.
    with mutant(
        AccountLog,
        "check",
        "recovery_commitment(event.signer) != commitment",
        "recovery_commitment(event.signer) != self._commitment_at(rec)",
    ):
        expect_caught(check_theft, theft_cases_of(1), 500)


def test_theft_property_catches_a_rotation_that_voids_no_recover() -> None:
    # The ledger's rule 2 for rotations gone: the thief's recover below the
    # owner's rotation wins, and the rotation is void.
    with mutant(RULES, "_key_use", "if seen < len(ids):", "if False:"):
        expect_caught(check_theft, theft_cases_of(1), 500)


def test_theft_property_catches_a_rotation_without_the_paper_key() -> None:
    # The co-signature's key not checked against the commitment in effect.
    with mutant(
        AccountLog,
        "check",
        "if commitment is None or recovery_commitment(body.recovery_public) != commitment:",
        "if commitment is None:",
    ):
        expect_caught(check_theft, theft_cases_of(1), 500)
