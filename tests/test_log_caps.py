"""The caps of PROTOCOL.md §7.3 (suite 2), the extra work on revocations,
recovers and merges (§3.4), and the cost of ingest whatever the account's
shape (§8): worked examples.  The properties are in test_properties.py."""

from __future__ import annotations

import dataclasses
import time

import pytest

from protocol.core.errors import (
    InsufficientWorkError,
    InvalidEventError,
    LimitExceededError,
)
from protocol.log import authoring
from protocol.log.events import Event
from protocol.log.ledger import IngestStatus, Ledger
from protocol.log.state import AccountStatus

from .conftest import FAST, T0, History

#: a device may sign 4 events along a path; 3 devices may be active
CAPPED = dataclasses.replace(FAST, max_device_events=4, max_active_devices=3)


def ingest_all(ledger: Ledger, *events: Event) -> None:
    for e in events:
        assert ledger.ingest(e.raw).status is IngestStatus.ACCEPTED, e


def test_device_cap_counts_the_devices_own_events_only() -> None:
    h = History(CAPPED)
    a1 = h.add("a1", "d0", "d1", ["g"])  # d0: genesis, a1
    p1 = h.profile("p1", "d0", "x", ["a1"])
    p2 = h.profile("p2", "d0", "y", ["p1"])  # d0: 4, its cap
    ledger = h.ledger()
    with pytest.raises(LimitExceededError):
        ledger.ingest(h.profile("over", "d0", "z", ["p2"]).raw)
    # d1's count is its own; a side branch counts its own path
    ingest_all(ledger, h.profile("d1p", "d1", "w", ["p2"]), h.profile("side", "d0", "s", ["a1"]))
    # revocations and recovers are not counted: the owner can always use them
    ingest_all(ledger, h.revoke("rv", "d0", "d1", ["d1p"]))
    ingest_all(ledger, h.recover("rec", "d9", ["rv", "side"]))
    ingest_all(
        ledger,
        *(h.profile(f"n{i}", "d9", f"n{i}", [f"n{i - 1}" if i else "rec"]) for i in range(4)),
    )
    with pytest.raises(LimitExceededError):  # d9 started from 0 and signed 4
        ledger.ingest(h.profile("n4", "d9", "n4", ["n3"]).raw)
    assert {a1.id, p1.id, p2.id} <= set(ledger.event_ids())


def test_spam_from_a_revoked_key_blocks_nobody() -> None:
    """PROTOCOL.md Appendix B item 1 (suite 1): one stolen key filled the
    ancestor cap for good.  Now it only fills its own count, and once it is
    revoked its events weigh on nobody: the owner merges them, adds a device
    and changes the name."""
    h = History(CAPPED)
    h.add("a1", "d0", "d1", ["g"])
    spam = ["a1"]
    for i in range(4):  # d1's cap
        h.profile(f"s{i}", "d1", f"spam {i}", [spam[-1]])
        spam.append(f"s{i}")
    h.add("race", "d1", "t", ["a1"])
    for i in range(3):  # width: siblings, each with few ancestors
        h.profile(f"w{i}", "d1", f"wide {i}", ["a1"])
    ledger = h.ledger()
    with pytest.raises(LimitExceededError):
        ledger.ingest(h.profile("s9", "d1", "spam 9", ["s3"]).raw)
    rv = h.revoke("rv", "d0", "d1", ["a1"])
    merge = h.profile("merge", "d0", "Bob", ["race", "rv", "s3", "w0", "w1", "w2"])
    add = h.add("a2", "d0", "d2", ["merge"])
    name = h.profile("name", "d2", "Bob 2", ["a2"])
    ingest_all(ledger, rv, merge, add, name)
    state = ledger.state(h.account)
    assert state.display_name == "Bob 2" and state.status is AccountStatus.OK
    assert h.status(ledger) == {"d0": "active", "d1": "revoked", "d2": "active", "t": "void"}
    assert state.heads == (name.id,)


def test_active_device_cap_holds_at_every_event() -> None:
    h = History(CAPPED)
    h.add("a1", "d0", "d1", ["g"])
    h.add("a2", "d0", "d2", ["a1"])  # 3 active
    h.add("side", "d1", "d4", ["a1"])  # 3 active on this branch
    ledger = h.ledger()
    with pytest.raises(LimitExceededError):  # an add needs fewer than 3 active
        ledger.ingest(h.add("a3", "d1", "d3", ["a2"]).raw)
    with pytest.raises(LimitExceededError):  # the union has 4
        ledger.ingest(h.profile("merge", "d0", "m", ["a2", "side"]).raw)
    ingest_all(ledger, h.revoke("rv", "d0", "d2", ["a2"]))
    ingest_all(ledger, h.profile("merged", "d0", "m", ["rv", "side"]))
    assert len(ledger.state(h.account).active_keys) == 3


def test_a_revocation_names_a_device_active_at_its_parents() -> None:
    h = History()
    h.add("a1", "d0", "d1", ["g"])
    h.revoke("rv", "d0", "d1", ["a1"])
    ledger = h.ledger()
    with pytest.raises(InvalidEventError):  # revoked already: it revokes nothing
        ledger.ingest(h.revoke("again", "d0", "d1", ["rv"]).raw)
    # concurrent revocations of one device are each valid where they are
    ingest_all(ledger, h.revoke("also", "d0", "d1", ["a1"]))


def test_revocations_recovers_and_merges_carry_more_work() -> None:
    work = dataclasses.replace(FAST, special_pow_bits=12)
    for params in (work, FAST):  # the same account, built with the work and without
        h = History(params)
        h.add("a1", "d0", "d1", ["g"])
        h.profile("p", "d0", "x", ["g"])
        h.revoke("rv", "d0", "d1", ["a1"])
        h.profile("m", "d0", "y", ["a1", "p"])
        h.recover("rec", "d9", ["m"])
        ledger = Ledger(work)
        ingest_all(ledger, *(h.events[x] for x in ("g", "a1", "p")))  # ordinary: no work
        for label in ("rv", "m", "rec"):
            if params is work:
                ingest_all(ledger, h.events[label])
            else:
                with pytest.raises(InsufficientWorkError):
                    ledger.ingest(h.events[label].raw)


# --------------------------------------------------------------------------
# Ingest cost whatever the shape (PROTOCOL.md §8).  Under suite 1, an event
# that did not extend the heads re-evaluated the whole account: 8,000
# siblings of the genesis took over a minute (13 ms an event at 6,000).


def _fan_and_chain(n: int) -> tuple[History, list[Event], list[Event]]:
    h = History(name="wide")
    fan = [
        authoring.profile(
            FAST, h.account, [h.genesis.id], h.keys["d0"], display_name=f"f{i}", timestamp=T0 + i
        )
        for i in range(n)
    ]
    chain: list[Event] = []
    prev = h.genesis.id
    for i in range(n):
        e = authoring.profile(
            FAST, h.account, [prev], h.keys["d0"], display_name=f"c{i}", timestamp=T0 + n + i
        )
        chain.append(e)
        prev = e.id
    return h, fan, chain


def _ingest_timed(ledger: Ledger, events: list[Event]) -> list[float]:
    decode = ledger.decode
    out = []
    for e in events:
        ev = decode(e.raw, ledger.params)
        t = time.perf_counter()
        assert ledger.ingest_verified(ev).status is IngestStatus.ACCEPTED
        out.append(time.perf_counter() - t)
    return out


def test_wide_and_deep_accounts_cost_the_same_per_event() -> None:
    n = 8_000
    h, fan, chain = _fan_and_chain(n)
    ledger = Ledger(FAST)
    ledger.ingest(h.genesis.raw)
    t0 = time.perf_counter()
    fan_times = _ingest_timed(ledger, fan)
    chain_times = _ingest_timed(ledger, chain)
    total = time.perf_counter() - t0
    assert total < 30, total  # minutes under suite 1

    def cost(times: list[float]) -> float:
        return sorted(times)[len(times) // 2]  # a median: the machine is shared

    for times in (fan_times, chain_times):
        first, last = cost(times[:1000]), cost(times[-1000:])
        assert last < 4 * first + 20e-6, (first, last)
    state = ledger.state(h.account)
    assert state.event_count == 2 * n + 1 and len(state.heads) == n + 1
    assert state.display_name == f"c{n - 1}"
    # Start-up replays the store without any quadratic path.
    t = time.perf_counter()
    again = Ledger(FAST, store=ledger.store, verify_signatures_on_load=False)
    assert time.perf_counter() - t < 30
    assert again.state(h.account).digest == state.digest
