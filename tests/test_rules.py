"""Worked examples of the account rules (PROTOCOL.md §7.2), one per rule."""

from __future__ import annotations

import itertools

import pytest

from protocol.core.errors import InvalidEventError, UnauthorisedError
from protocol.log.ledger import IngestStatus, Ledger
from protocol.log.state import AccountStatus

from .conftest import History


def test_genesis_device_is_active(history: History) -> None:
    ledger = history.ledger()
    assert history.status(ledger) == {"d0": "active"}
    assert ledger.state(history.account).status is AccountStatus.OK


def test_rule1_unauthorised_signer_is_rejected(history: History) -> None:
    history.add("a1", "d0", "d1", ["g"])
    history.add("a2", "d1", "d2", ["g"])  # d1 is not active at g
    ledger = history.ledger(["g", "a1"])
    with pytest.raises(UnauthorisedError):
        ledger.ingest(history.events["a2"].raw)
    assert not ledger.has(history.events["a2"].id)


def test_rule4_stolen_device_race_is_lost_by_the_thief(history: History) -> None:
    history.add("a1", "d0", "d1", ["g"])
    history.add("theft", "d1", "thief", ["a1"])
    history.revoke("rv", "d0", "d1", ["a1"])
    history.add("theft2", "thief", "thief2", ["theft"])
    for order in itertools.permutations(["theft", "rv", "theft2"]):
        ledger = history.ledger(["g", "a1", *order])
        status = history.status(ledger)
        assert status == {"d0": "active", "d1": "revoked", "thief": "void", "thief2": "void"}


def test_rule2_recover_voids_concurrent_events(history: History) -> None:
    history.add("a1", "d0", "d1", ["g"])
    history.add("side", "d0", "d2", ["a1"])
    history.recover("rec", "d9", ["a1"])
    ledger = history.ledger()
    assert history.status(ledger) == {
        "d0": "removed_by_recovery",
        "d1": "removed_by_recovery",
        "d2": "void",
        "d9": "active",
    }


def test_rule7_mutual_revocation_disputes_until_recover(history: History) -> None:
    history.add("a1", "d0", "d1", ["g"])
    history.revoke("r0", "d0", "d1", ["a1"])
    history.revoke("r1", "d1", "d0", ["a1"])
    ledger = history.ledger()
    assert ledger.state(history.account).status is AccountStatus.DISPUTED
    history.recover("rec", "d9", ["r0", "r1"])
    ledger.ingest(history.events["rec"].raw)
    assert ledger.state(history.account).status is AccountStatus.OK
    assert history.status(ledger)["d9"] == "active"


def test_concurrent_recovers_compromise_the_account(history: History) -> None:
    """Rule 6 (suite 2): a void recover removes too, so with the recovery key
    in two hands no device is active, neither from before nor either new one."""
    history.recover("rec1", "d8", ["g"])
    history.recover("rec2", "d9", ["g"])
    history.add("merge", "d0", "dx", ["rec1", "rec2"])
    history.add("late", "d0", "dy", ["g"])
    ledger = history.ledger(["g", "rec1", "rec2"])
    state = ledger.state(history.account)
    assert state.status is AccountStatus.COMPROMISED
    assert state.active_keys == frozenset()
    assert history.status(ledger) == {"d0": "removed_by_recovery", "d8": "void", "d9": "void"}
    assert state.recovery_commitment is None
    with pytest.raises(UnauthorisedError):  # nobody is active above both
        ledger.ingest(history.events["merge"].raw)
    # d0 is still active at g, where no recover is among the ancestors: a
    # long-range event is accepted, and void.
    ledger.ingest(history.events["late"].raw)
    assert history.status(ledger)["dy"] == "void"
    assert ledger.state(history.account).active_keys == frozenset()


def test_revocation_of_unknown_key_is_invalid(history: History) -> None:
    history.add("a1", "d0", "d1", ["g"])
    history.revoke("rv", "d0", "d1", ["g"])  # d1 not added among its ancestors
    ledger = history.ledger(["g", "a1"])
    with pytest.raises(InvalidEventError):
        ledger.ingest(history.events["rv"].raw)


def test_out_of_order_delivery_uses_escrow(history: History) -> None:
    history.add("a1", "d0", "d1", ["g"])
    history.add("a2", "d1", "d2", ["a1"])
    ledger = Ledger(history.params)
    r = ledger.ingest(history.events["a2"].raw)
    assert r.status is IngestStatus.ESCROWED
    assert ledger.ingest(history.events["a1"].raw).status is IngestStatus.ESCROWED
    r = ledger.ingest(history.events["g"].raw)
    assert [e.id for e in r.accepted] == [history.events[x].id for x in ("g", "a1", "a2")]
    assert history.status(ledger) == {"d0": "active", "d1": "active", "d2": "active"}


def test_rule7_revocation_through_a_void_device_disputes(history: History) -> None:
    """The thief's device t adds x in a race with t's revocation; x's
    revocation of an honest device is final, and the account is disputed."""
    history.add("a1", "d0", "t", ["g"])
    history.add("a2", "d0", "d2", ["a1"])
    history.add("theft", "t", "x", ["a2"])
    history.revoke("rv", "d0", "t", ["a2"])
    history.revoke("xr", "x", "d2", ["theft"])
    ledger = history.ledger()
    state = ledger.state(history.account)
    assert history.status(ledger)["x"] == "void"
    assert history.status(ledger)["d2"] == "revoked"
    assert state.status is AccountStatus.DISPUTED
    history.recover("rec", "d9", ["xr", "rv"])
    ledger.ingest(history.events["rec"].raw)
    assert ledger.state(history.account).status is AccountStatus.OK


def test_escrow_refusal_is_reported_as_dropped(history: History) -> None:
    from protocol.log.store import Escrow

    history.profile("p1", "d0", "a", ["g"])
    history.profile("p2", "d0", "b", ["p1"])
    ledger = Ledger(history.params, escrow=Escrow(per_source=0))
    ledger.ingest(history.genesis.raw)
    result = ledger.ingest(history.events["p2"].raw, source="peer")
    assert result.status is IngestStatus.DROPPED
    assert history.events["p2"].id not in ledger.escrow
