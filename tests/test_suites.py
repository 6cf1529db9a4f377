"""The suite id is the network's rules version (PROTOCOL.md §12, DESIGN §10
"Rule changes are versioned").

Every encoder writes ``params.suite`` and every decoder accepts exactly that
suite.  ``OLD`` is a test-only network: the same id as ``FAST`` but the
retired suite 1, as a node of the old rules would run it, so that every
refusal below comes from the suite alone (never from the network check).
Its events are built by this code's encoders; no code computes suite-1
rules any more, and no real network uses suite 1.
"""

from __future__ import annotations

import dataclasses
import random

import pytest

from protocol.core.errors import UnsupportedVersionError
from protocol.core.machine import Now
from protocol.core.params import (
    KNOWN_SUITES,
    MAINNET,
    SUITE_V1,
    SUITE_V2,
    SUITE_V3,
    TESTNET,
    check_suite,
    network_by_id,
    suite_known,
)
from protocol.log.events import decode_event
from protocol.log.ledger import Ledger
from protocol.messaging.content import ReplayGuard, Text
from protocol.messaging.envelope import ledger_lookup, open_envelope, peek, seal
from protocol.messaging.mailbox import Mailbox, MailboxIdentity
from protocol.records.device import RECORD_V1, RECORD_V2, decode_record, make_record
from protocol.records.grant import decode_grant
from protocol.sync.replication import Misbehaved, Replicator
from protocol.sync.wire import EventsFrame, RecordsFrame, encode_frame

from .conftest import FAST, T0, History

OLD = dataclasses.replace(FAST, suite=SUITE_V1)
HOUR = 3_600_000


def test_real_networks_speak_a_known_suite() -> None:
    # suite 1 is retired (its rules are gone); suite 2 is kept beside 3 (§12.2)
    assert {SUITE_V2, SUITE_V3} == KNOWN_SUITES
    for params in (MAINNET, TESTNET, FAST):
        assert params.suite == SUITE_V3 and params.suite in KNOWN_SUITES
    for params in (MAINNET, TESTNET):
        assert network_by_id(params.network_id) is params


def test_one_network_accepts_its_own_suite_only() -> None:
    assert suite_known(FAST, 3) and not suite_known(FAST, 1) and not suite_known(FAST, 2)
    assert not suite_known(FAST, 4)
    assert suite_known(OLD, 1) and not suite_known(OLD, 2)
    assert not suite_known(FAST, True)  # a bool is no integer on the wire
    assert check_suite(OLD, 1, "x") == 1
    with pytest.raises(UnsupportedVersionError):
        check_suite(FAST, 1, "x")


def _pair() -> tuple[History, History]:
    return History(FAST, name="one"), History(OLD, name="two")


def test_events_of_the_other_suite_are_unsupported() -> None:
    one, two = _pair()
    one.add("a1", "d0", "d1", ["g"])
    two.add("a1", "d0", "d1", ["g"])
    for e in two.events.values():
        assert e.suite == 1 and decode_event(e.raw, OLD) == e
        with pytest.raises(UnsupportedVersionError):
            decode_event(e.raw, FAST)
    for e in one.events.values():
        assert e.suite == SUITE_V3
        with pytest.raises(UnsupportedVersionError):
            decode_event(e.raw, OLD)
    # the same keys, names and times: only the suite differs, and it is
    # part of what the id hashes and the signature covers
    same, other = History(FAST, name="same"), History(OLD, name="same")
    assert (same.genesis.raw[2], other.genesis.raw[2]) == (SUITE_V3, 1)  # after the header, version
    assert same.genesis.id != other.genesis.id


def test_records_grants_and_envelopes_of_the_other_suite_are_unsupported() -> None:
    one, two = _pair()
    for h, mine, other in ((one, FAST, OLD), (two, OLD, FAST)):
        for version in (RECORD_V1, RECORD_V2):
            rec = make_record(
                mine,
                h.account,
                h.keys["d0"],
                timestamp=T0,
                lifetime_ms=HOUR,
                peer_ids=(),
                addrs=(),
                version=version,
            )
            assert decode_record(rec.raw, mine) == rec
            with pytest.raises(UnsupportedVersionError):
                decode_record(rec.raw, other)
        box = Mailbox(mine, MailboxIdentity(b"s" * 32), "12D3KooWbox")
        grant = box.issue_grant(h.account, h.keys["d0"].sign_public, now=Now.virtual(0.0))
        assert decode_grant(grant.raw, mine) == grant
        with pytest.raises(UnsupportedVersionError):
            decode_grant(grant.raw, other)

    for mine, other in ((FAST, OLD), (OLD, FAST)):
        alice, bob = History(mine, name="alice"), History(mine, name="bob")
        ledger = Ledger(mine)
        for e in (alice.genesis, bob.genesis):
            ledger.ingest(e.raw)
        env = seal(
            mine,
            alice.keys["d0"],
            ledger.state(alice.account),
            ledger.state(bob.account),
            Text("hi"),
            counter=1,
            timestamp=T0,
            seed=b"\x07" * 32,
        )
        opened = open_envelope(
            mine, env.raw, bob.account, bob.keys["d0"], ledger_lookup(ledger), ReplayGuard()
        )
        assert opened.content == Text("hi")
        with pytest.raises(UnsupportedVersionError):
            peek(env.raw, other)


def test_replication_skips_another_suite_without_blame() -> None:
    """DESIGN §9: a node of another rules version is not an attacker; its
    events and records are skipped, and the peer keeps its score."""
    _, two = _pair()
    rec = make_record(
        OLD, two.account, two.keys["d0"], timestamp=T0, lifetime_ms=HOUR, peer_ids=(), addrs=()
    )
    node = Replicator(Ledger(FAST), random.Random(0))
    node.connect("newer", Now.virtual(0.0))
    outs = node.receive("newer", encode_frame(EventsFrame((two.genesis.raw,))), Now.virtual(0.0))
    outs += node.receive("newer", encode_frame(RecordsFrame((rec.raw,))), Now.virtual(0.0))
    assert not [o for o in outs if isinstance(o, Misbehaved)]
    assert node.score("newer") == 0 and node.stats.offences == 0
    assert not node.ledger.accounts and len(node.records) == 0
