"""Rotating the recovery key without resetting devices (PROTOCOL.md §6.8,
§7.2 "Rotations of the recovery key", suite 3).

Every case is checked in every delivery order, and the incremental verdicts
are compared with ``recompute()`` (the reference) each time.
"""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from protocol.core.canonical import decode_flat, encode
from protocol.core.errors import (
    BadSignatureError,
    LimitExceededError,
    SchemaError,
    UnauthorisedError,
)
from protocol.core.params import SUITE_V2
from protocol.log.events import EventKind, decode_event, is_special, verify_event
from protocol.log.ledger import Ledger
from protocol.log.state import AccountState, AccountStatus, VoidReason

from .conftest import FAST, History
from .prop_world import assert_same_evaluation


def _states(h: History, labels: list[str], fixed: int = 1) -> AccountState:
    """The state after every order of ``labels[fixed:]`` (the first
    ``fixed`` go first); all must be byte-identical."""
    digests = set()
    state = None
    for order in itertools.permutations(labels[fixed:]):
        ledger = Ledger(h.params)
        for label in [*labels[:fixed], *order]:
            ledger.ingest(h.events[label].raw)
        log = ledger.log(h.account)
        assert_same_evaluation(log.evaluation(), log.recompute())
        state = ledger.state(h.account)
        digests.add(state.digest)
    assert state is not None and len(digests) == 1
    return state


def _void(state: AccountState) -> dict[bytes, VoidReason]:
    return {v.event_id: v.reason for v in state.voided}


def test_a_rotation_replaces_the_key_and_keeps_the_devices(history: History) -> None:
    h = history
    h.add("a1", "d0", "d1", ["g"])
    h.rotate("rot", "d1", ["a1"])
    h.add("a2", "d0", "d2", ["rot"])
    ledger = h.ledger()
    state = ledger.state(h.account)
    assert h.status(ledger) == {"d0": "active", "d1": "active", "d2": "active"}
    assert state.status is AccountStatus.OK and not state.voided
    assert state.recovery_commitment == h.next_key("rot").commitment
    # the recovery epoch (§4.6) moves on recovery only: a rotation keeps it
    assert ledger.recovery_epoch(h.account) == h.account
    # the new key recovers; the old one no longer does, anywhere above it
    h.recover("old", "d8", ["a2"])
    with pytest.raises(UnauthorisedError):
        ledger.ingest(h.events["old"].raw)
    h.recover("new", "d9", ["a2"], rk=h.next_key("rot"))
    ledger.ingest(h.events["new"].raw)
    assert h.status(ledger)["d9"] == "active" and h.status(ledger)["d1"] == "removed_by_recovery"
    assert ledger.recovery_epoch(h.account) == h.events["new"].id


def test_the_next_rotation_needs_the_key_in_force(history: History) -> None:
    h = history
    h.rotate("rot1", "d0", ["g"])
    ledger = h.ledger()
    h.rotate("stale", "d0", ["rot1"])  # co-signed by the genesis key again
    with pytest.raises(UnauthorisedError):
        ledger.ingest(h.events["stale"].raw)
    h.rotate("rot2", "d0", ["rot1"], rk=h.next_key("rot1"))
    ledger.ingest(h.events["rot2"].raw)
    assert ledger.state(h.account).recovery_commitment == h.next_key("rot2").commitment
    # after a recover, the key in force is the recover's next key
    h.recover("rec", "d9", ["rot2"], rk=h.next_key("rot2"))
    h.rotate("rot3", "d9", ["rec"], rk=h.next_key("rot2"))
    h.rotate("rot4", "d9", ["rec"], rk=h.next_key("rec"))
    ledger.ingest(h.events["rec"].raw)
    with pytest.raises(UnauthorisedError):
        ledger.ingest(h.events["rot3"].raw)
    ledger.ingest(h.events["rot4"].raw)
    assert ledger.state(h.account).recovery_commitment == h.next_key("rot4").commitment


def test_a_rotation_needs_an_active_device_and_the_recovery_key(history: History) -> None:
    h = history
    h.add("a1", "d0", "d1", ["g"])
    h.revoke("rv", "d0", "d1", ["a1"])
    ledger = h.ledger()
    h.rotate("by_revoked", "d1", ["rv"])  # the paper key, with a revoked device
    with pytest.raises(UnauthorisedError):
        ledger.ingest(h.events["by_revoked"].raw)
    # a device alone: it signs the co-signature with a key of its own
    h.rotate("by_device", "d0", ["rv"], rk=h.next_key("forged"))
    with pytest.raises(UnauthorisedError):
        ledger.ingest(h.events["by_device"].raw)
    assert ledger.state(h.account).recovery_commitment == h.rk.commitment


def test_a_co_signature_cannot_be_moved() -> None:
    """The recovery key signs the parents and the device (§6.8): the same
    body under other parents or another signer fails verify_event."""
    h = History()
    h.add("a1", "d0", "d1", ["g"])
    rot = h.rotate("rot", "d0", ["a1"])
    verify_event(rot, FAST)
    from protocol.log.events import build_event

    for parents, signer in (([h.account], "d0"), ([h.events["a1"].id], "d1")):
        moved = build_event(
            FAST,
            account=h.account,
            parents=parents,
            timestamp=rot.timestamp,
            body=rot.body,
            signer_public=h.keys[signer].sign_public,
            sign=h.keys[signer].sign,
        )
        with pytest.raises(BadSignatureError):
            verify_event(moved, FAST)


def test_rotation_concurrent_with_a_recover_compromises(history: History) -> None:
    """Two uses of one recovery key that did not see each other: the key is
    in two hands, and neither use wins, in every order."""
    h = history
    h.add("a1", "d0", "d1", ["g"])
    h.rotate("rot", "d1", ["a1"])
    h.recover("rec", "d9", ["a1"])
    h.add("late", "d0", "d2", ["rot"])
    state = _states(h, ["g", "a1", "rot", "rec", "late"], fixed=2)
    assert state.status is AccountStatus.COMPROMISED
    assert state.recovery_commitment is None and state.active_keys == frozenset()
    void = _void(state)
    assert void[h.events["rot"].id] is VoidReason.CONCURRENT_WITH_RECOVER
    assert void[h.events["rec"].id] is VoidReason.CONCURRENT_WITH_ROTATION
    ledger = h.ledger(["g", "a1", "rot", "rec"])
    h.recover("again", "d7", ["rec", "rot"], rk=h.next_key("rot"))
    h.add("above", "d0", "d3", ["rec", "rot"])
    for label in ("again", "above"):  # nothing is authorised above both
        with pytest.raises(UnauthorisedError):
            ledger.ingest(h.events[label].raw)


def test_two_concurrent_rotations_compromise(history: History) -> None:
    h = history
    h.add("a1", "d0", "d1", ["g"])
    h.rotate("rot0", "d0", ["a1"])
    h.rotate("rot1", "d1", ["a1"])
    h.profile("p", "d0", "still here", ["rot0"])
    state = _states(h, ["g", "a1", "rot0", "rot1", "p"], fixed=2)
    assert state.status is AccountStatus.COMPROMISED
    assert state.recovery_commitment is None and state.active_keys == frozenset()
    void = _void(state)
    assert void[h.events["rot0"].id] is VoidReason.CONCURRENT_WITH_ROTATION
    assert void[h.events["rot1"].id] is VoidReason.CONCURRENT_WITH_ROTATION
    assert h.events["p"].id not in void  # a rotation voids only uses of the key
    ledger = h.ledger(["g", "a1", "rot0", "rot1"])
    h.add("above", "d0", "d3", ["rot0", "rot1"])
    with pytest.raises(UnauthorisedError):
        ledger.ingest(h.events["above"].raw)


def test_old_paper_key_cannot_take_over_after_a_rotation(history: History) -> None:
    """A thief who saw the old paper key: above the rotation it authorises
    nothing; attached below it, it is a recover concurrent with the rotation,
    which compromises the account (the cost of §7.2) but activates nothing."""
    h = history
    h.add("a1", "d0", "d1", ["g"])
    h.rotate("rot", "d0", ["a1"])
    h.recover("thief", "t", ["a1"])
    h.add("t2", "t", "t2", ["thief"])
    ledger = h.ledger(["g", "a1", "rot"])
    h.recover("above", "t", ["rot"])
    with pytest.raises(UnauthorisedError):
        ledger.ingest(h.events["above"].raw)
    state = _states(h, ["g", "a1", "rot", "thief", "t2"], fixed=2)
    assert state.active_keys == frozenset() and state.status is AccountStatus.COMPROMISED
    assert h.status(h.ledger(["g", "a1", "rot", "thief", "t2"]))["t"] == "void"


def test_rotation_stands_against_a_revocation_of_its_device(history: History) -> None:
    """Rule 4 leaves a rotation alone, as it leaves a recover: the recovery
    key co-signed it.  The device is revoked; the new key is in force."""
    h = history
    h.add("a1", "d0", "d1", ["g"])
    h.rotate("rot", "d1", ["a1"])
    h.revoke("rv", "d0", "d1", ["a1"])
    h.profile("pf", "d1", "mallory", ["a1"])
    state = _states(h, ["g", "a1", "rot", "rv", "pf"], fixed=2)
    assert state.status is AccountStatus.OK
    assert state.recovery_commitment == h.next_key("rot").commitment
    void = _void(state)
    assert h.events["rot"].id not in void
    assert void[h.events["pf"].id] is VoidReason.SIGNER_REVOKED
    ledger = h.ledger(["g", "a1", "rot", "rv"])
    assert h.status(ledger) == {"d0": "active", "d1": "revoked"}
    h.recover("rec", "d9", ["rot", "rv"], rk=h.next_key("rot"))
    ledger.ingest(h.events["rec"].raw)
    assert h.status(ledger)["d9"] == "active"


def test_recover_with_the_new_key_ends_a_device_thief(history: History) -> None:
    """The owner rotated; a thief holding a device keeps signing at old
    points; the owner's recover with the new key ends it."""
    h = history
    h.add("a1", "d0", "t", ["g"])
    h.rotate("rot", "d0", ["a1"])
    h.recover("rec", "d9", ["rot"], rk=h.next_key("rot"))
    h.add("theft", "t", "x", ["a1"])
    h.add("theft2", "t", "y", ["rot"])
    state = _states(h, ["g", "a1", "rot", "rec", "theft", "theft2"], fixed=3)
    assert state.status is AccountStatus.OK
    assert state.active_keys == frozenset({h.keys["d9"].sign_public})
    assert state.recovery_commitment == h.next_key("rec").commitment


def test_a_rotation_counts_against_its_device(history: History) -> None:
    h = History(dataclasses.replace(FAST, max_device_events=3))
    h.profile("p1", "d0", "a", ["g"])
    h.rotate("rot", "d0", ["p1"])
    ledger = h.ledger()
    h.profile("p2", "d0", "b", ["rot"])  # the genesis, p1 and rot: the cap
    with pytest.raises(LimitExceededError):
        ledger.ingest(h.events["p2"].raw)
    assert is_special(EventKind.ROTATE_RECOVERY, 1)


def test_suite_2_knows_no_rotation(history: History) -> None:
    """Kind 7 exists from suite 3 on (§12.1): the same fields under suite 2
    are an unknown kind."""
    rot = history.rotate("rot", "d0", ["g"])
    fields = decode_flat(rot.raw, 2048)
    assert isinstance(fields, list) and fields[3] == EventKind.ROTATE_RECOVERY
    fields[1] = SUITE_V2
    with pytest.raises(SchemaError, match="unknown event kind"):
        decode_event(encode(fields), dataclasses.replace(FAST, suite=SUITE_V2))


def test_a_rotation_to_the_same_key_is_refused(history: History) -> None:
    h = history
    rot = h.rotate("rot", "d0", ["g"])
    assert rot.kind is EventKind.ROTATE_RECOVERY
    from protocol.log.events import RotateRecoveryBody, build_event, rotation_message

    msg = rotation_message(
        FAST.network_id, h.account, (h.account,), h.keys["d0"].sign_public, h.rk.commitment
    )
    body = RotateRecoveryBody(h.rk.public, h.rk.commitment, h.rk.sign(msg))
    from protocol.core.errors import UsageError

    with pytest.raises(UsageError, match="another recovery key"):
        build_event(
            FAST,
            account=h.account,
            parents=[h.account],
            timestamp=rot.timestamp,
            body=body,
            signer_public=h.keys["d0"].sign_public,
            sign=h.keys["d0"].sign,
        )


def test_a_rotation_by_a_device_that_a_concurrent_recover_voids(history: History) -> None:
    """d2 was added concurrently with a recover (so its add is void), and
    rotates on its branch: two concurrent uses of the key, so the account is
    compromised; neither the rotation's key nor the recover's device wins."""
    h = history
    h.add("a1", "d0", "d1", ["g"])
    h.add("a2", "d0", "d2", ["a1"])
    h.rotate("t", "d2", ["a2"])
    h.recover("rec", "d9", ["a1"])
    state = _states(h, ["g", "a1", "a2", "t", "rec"], fixed=2)
    assert state.status is AccountStatus.COMPROMISED and state.active_keys == frozenset()
    void = _void(state)
    assert void[h.events["a2"].id] is VoidReason.CONCURRENT_WITH_RECOVER
    assert void[h.events["t"].id] is VoidReason.CONCURRENT_WITH_RECOVER
    assert void[h.events["rec"].id] is VoidReason.CONCURRENT_WITH_ROTATION
    assert h.status(h.ledger()) == {
        "d0": "removed_by_recovery",
        "d1": "removed_by_recovery",
        "d2": "void",
        "d9": "void",
    }


def test_a_rotation_above_a_recover_uses_the_recovers_key(history: History) -> None:
    h = history
    h.recover("rec", "d9", ["g"])
    h.rotate("t", "d9", ["rec"], rk=h.next_key("rec"))
    state = _states(h, ["g", "rec", "t"], fixed=3)
    assert state.status is AccountStatus.OK and not state.voided
    assert state.recovery_commitment == h.next_key("t").commitment
    assert h.status(h.ledger()) == {"d0": "removed_by_recovery", "d9": "active"}
