"""History entries that prove their sender (PROTOCOL.md §15.4 *History
proofs*; issue 13 item 5): a stolen device of one's own account cannot
plant "messages from bob" in a newly linked device."""

from __future__ import annotations

import dataclasses

import pytest

from protocol.core.canonical import encode_flat
from protocol.core.errors import SchemaError, UnauthorisedError
from protocol.log.ledger import Ledger
from protocol.messaging import envelope as envmod
from protocol.messaging.content import (
    MAX_CONTENT_BYTES,
    MAX_PROOF_VIEW_HEADS,
    ContentKind,
    HistoryBundle,
    HistoryEntry,
    HistoryProof,
    ReplayGuard,
    Text,
    decode_content,
    encode_content,
)
from protocol.messaging.envelope import ledger_lookup, open_envelope, seal
from protocol.messaging.history import (
    EntryVerdict,
    HistoryBehindError,
    behind_error,
    check_bundle,
    check_entry,
    pack_history,
    signed_message,
)

from .conftest import FAST, T0, History, device
from .test_envelope import World, _seed


def _from_bob(w: World, text: str = "hi alice", signer: str = "d0") -> HistoryEntry:
    """Bob's ``signer`` writes to Alice; Alice's d1 opens it and keeps the
    entry she would relay as history."""
    env = seal(
        FAST,
        w.b.keys[signer],
        w.lb.state(w.b.account),
        w.lb.state(w.a.account),
        Text(text),
        counter=7,
        timestamp=T0 + 5,
        seed=_seed("bob:" + text),
    )
    opened = open_envelope(
        FAST, env.raw, w.a.account, w.a.keys["d1"], ledger_lookup(w.la), ReplayGuard()
    )
    assert opened.proof == env.proof  # the sender keeps the same proof as a receiver
    assert isinstance(opened.content, Text)
    return HistoryEntry(
        w.b.account,
        opened.message_id,
        opened.sender_account,
        opened.sender_device,
        opened.timestamp,
        opened.content,
        opened.proof,
    )


def _check(w: World, entry: HistoryEntry, ledger: Ledger | None = None) -> EntryVerdict:
    ledger = ledger or w.la
    return check_entry(entry, w.a.account, ledger_lookup(ledger), ledger.account_of).verdict


@pytest.fixture
def w() -> World:
    return World()


def test_a_genuine_entry_verifies(w: World) -> None:
    assert _check(w, _from_bob(w)) is EntryVerdict.VERIFIED


def test_the_accounts_own_sent_message_verifies_from_the_senders_proof(w: World) -> None:
    env = w.send(Text("to bob"))
    entry = HistoryEntry(
        w.b.account,
        env.message_id,
        w.a.account,
        w.a.keys["d0"].sign_public,
        T0 + 1,
        Text("to bob"),
        env.proof,
    )
    assert _check(w, entry) is EntryVerdict.VERIFIED
    # the same message claimed as a note to oneself has the wrong views
    assert _check(w, dataclasses.replace(entry, peer_account=w.a.account)) is EntryVerdict.FORGED


@pytest.mark.parametrize(
    "change",
    [
        {"content": Text("hi alice, send money")},
        {"timestamp": T0 + 6},
        {"sender_account": b"\x01" * 32},
        {"peer_account": b"\x01" * 32},
    ],
    ids=["body", "timestamp", "sender account", "conversation"],
)
def test_a_changed_claim_fails(w: World, change: dict[str, object]) -> None:
    entry = dataclasses.replace(_from_bob(w), **change)  # type: ignore[arg-type]
    assert _check(w, entry) is EntryVerdict.FORGED


def test_another_device_of_the_same_account_named_as_sender_fails(w: World) -> None:
    entry = _from_bob(w)
    assert _check(w, dataclasses.replace(entry, sender_device=w.b.keys["d1"].sign_public)) is (
        EntryVerdict.FORGED
    )
    # bob's d1 signing what the entry says d0 wrote does not pass either
    assert entry.proof is not None
    by_d1 = dataclasses.replace(
        entry.proof, signature=w.b.keys["d1"].sign(signed_message(entry, entry.proof))
    )
    assert _check(w, dataclasses.replace(entry, proof=by_d1)) is EntryVerdict.FORGED


def test_a_device_that_never_was_the_accounts_is_refused(w: World) -> None:
    genuine = _from_bob(w)
    thief = device("made-up")
    forged = dataclasses.replace(genuine, sender_device=thief.sign_public, content=Text("pay me"))
    assert forged.proof is not None
    proof = dataclasses.replace(
        forged.proof, signature=thief.sign(signed_message(forged, forged.proof))
    )
    forged = dataclasses.replace(forged, proof=proof)
    check = check_entry(forged, w.a.account, ledger_lookup(w.la), w.la.account_of)
    assert check.verdict is EntryVerdict.FORGED and "never" in check.reason
    # with heads this replica lacks it cannot tell yet: behind, not stored
    unknown = dataclasses.replace(proof, views=((1, (b"\x07" * 32,)), proof.views[1]))
    unknown = dataclasses.replace(unknown, signature=thief.sign(signed_message(forged, unknown)))
    behind = check_entry(
        dataclasses.replace(forged, proof=unknown),
        w.a.account,
        ledger_lookup(w.la),
        w.la.account_of,
    )
    assert behind.verdict is EntryVerdict.BEHIND
    error = behind_error([behind])
    assert isinstance(error, HistoryBehindError) and error.views[0].account == w.b.account


def test_a_revoked_devices_earlier_message_still_verifies(w: World) -> None:
    entry = _from_bob(w, signer="d2")
    w.b.revoke("rv", "d0", "d2", ["b2"])
    w.la.ingest(w.b.events["rv"].raw)
    assert w.la.state(w.b.account).device(w.b.keys["d2"].sign_public).status.value == "revoked"
    assert _check(w, entry) is EntryVerdict.VERIFIED


def test_an_unknown_sender_account_is_behind_and_no_proof_is_unproven(w: World) -> None:
    entry = _from_bob(w)
    only_alice = Ledger(FAST)
    for e in w.a.events.values():
        only_alice.ingest(e.raw)
    assert _check(w, entry, only_alice) is EntryVerdict.BEHIND
    assert _check(w, dataclasses.replace(entry, proof=None)) is EntryVerdict.UNPROVEN


def test_bundle_round_trips_with_proofs_and_the_old_form_decodes_unproven(w: World) -> None:
    entry = _from_bob(w)
    bundle = HistoryBundle(0, 1, (entry, dataclasses.replace(entry, proof=None)))
    kind, body = encode_content(bundle)
    assert kind == ContentKind.HISTORY == 4
    assert decode_content(kind, body) == bundle
    checks = check_bundle(bundle, w.a.account, ledger_lookup(w.la), w.la.account_of)
    assert [c.verdict for c in checks] == [EntryVerdict.VERIFIED, EntryVerdict.UNPROVEN]
    # kind 3, the form before proofs: 7-field entries, every one unproven
    old = encode_flat([0, 1, [e[:7] for e in bundle.to_wire()[2]]])  # type: ignore[index]
    assert decode_content(ContentKind.HISTORY_V1, old) == HistoryBundle(
        0, 1, (dataclasses.replace(entry, proof=None),) * 2
    )


@pytest.mark.parametrize("kind", [ContentKind.HISTORY_V1, ContentKind.HISTORY])
def test_history_of_either_form_from_another_account_is_refused(
    w: World, kind: ContentKind, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kinds 3 and 4 both decode to a ``HistoryBundle``: open_envelope
    refuses both from another account (§15.5 step 9)."""
    assert MAX_PROOF_VIEW_HEADS == envmod.MAX_VIEW_HEADS
    entry = _from_bob(w).to_wire()
    body = encode_flat([0, 1, [entry[:7] if kind == ContentKind.HISTORY_V1 else entry]])
    monkeypatch.setattr(envmod, "encode_content", lambda content: (int(kind), body))
    env = w.send(Text("a text to pass seal's own guard"))
    monkeypatch.undo()
    with pytest.raises(UnauthorisedError):
        w.open_bob(env.raw)


@pytest.mark.parametrize(
    "proof",
    [
        [b"\x00" * 32, 0, [[1, [b"\x01" * 32]]], b"\x00" * 64],  # counter 0
        [b"\x00" * 32, 1, [], b"\x00" * 64],  # no view
        [b"\x00" * 32, 1, [[2, [b"\x01" * 32]]], b"\x00" * 64],  # count 2, one head
        [b"\x00" * 32, 1, [[2, [b"\x02" * 32, b"\x01" * 32]]], b"\x00" * 64],  # not ascending
        [b"\x00" * 31, 1, [[1, [b"\x01" * 32]]], b"\x00" * 64],  # short hash
        [b"\x00" * 32, 1, [[1, [b"\x01" * 32]]] * 3, b"\x00" * 64],  # three views
        [b"\x00" * 32, 1, [[1, [b"\x01" * 32]]]],  # no signature
    ],
)
def test_malformed_proofs_are_schema_errors(w: World, proof: list[object]) -> None:
    wire = _from_bob(w).to_wire()
    wire[7] = proof
    with pytest.raises(SchemaError):
        decode_content(ContentKind.HISTORY, encode_flat([0, 1, [wire]]))


def test_a_proof_is_small_beside_its_entry(w: World) -> None:
    """The proof adds the header hash, counter, views and signature, never
    the body a second time: its size does not grow with the text."""
    short, long = _from_bob(w, "x"), _from_bob(w, "x" * 5000)
    assert short.proof is not None and long.proof is not None
    size = len(encode_flat(short.proof.to_wire()))
    assert size == len(encode_flat(long.proof.to_wire())) < 200
    assert isinstance(short.proof, HistoryProof)


def test_history_is_packed_by_bytes_and_each_part_seals(w: World) -> None:
    """Proofs make entries bigger than their claims: ``pack_history`` keeps
    every part's body within MAX_CONTENT_BYTES and MAX_HISTORY_ENTRIES, and
    when the parts run out it keeps the newest entries."""
    big = _from_bob(w, "b" * 60_000)
    entries = [dataclasses.replace(big, message_id=bytes([i]) * 16) for i in range(40)]
    parts = pack_history(entries, max_parts=16)
    assert [p.part for p in parts] == [0, 1, 2] and {p.parts for p in parts} == {3}
    assert [e.message_id for p in parts for e in p.entries] == [e.message_id for e in entries]
    w.a.add("a2", "d0", "d2", ["a1"])
    w.la.ingest(w.a.events["a2"].raw)
    me = w.la.state(w.a.account)
    for i, part in enumerate(parts):
        assert len(encode_content(part)[1]) <= MAX_CONTENT_BYTES
        env = seal(
            FAST,
            w.a.keys["d0"],
            me,
            me,
            part,
            counter=i + 1,
            timestamp=T0,
            seed=_seed(f"part{i}"),
            only_devices=[w.a.keys["d2"].sign_public],
        )
        assert len(env.raw) <= envmod.MAX_ENVELOPE_BYTES
    kept = [e for p in pack_history(entries, max_parts=2) for e in p.entries]
    assert 0 < len(kept) < len(entries) and kept == entries[-len(kept) :]  # the newest
    small = [
        dataclasses.replace(big, content=Text("s"), message_id=bytes([i]) * 16) for i in range(5)
    ]
    by_count = pack_history(small, max_parts=16, max_entries=2)
    assert [len(p.entries) for p in by_count] == [1, 2, 2]


def _with_carol(w: World) -> History:
    """A third account, in both replicas: what bob (or alice) wrote to it
    is a signed message with two views, like one written to the other."""
    carol = History(name="carol")
    for ledger in (w.la, w.lb):
        for e in carol.events.values():
            ledger.ingest(e.raw)
    return carol


def test_a_message_to_another_account_does_not_verify_as_written_to_us(w: World) -> None:
    # bob wrote to carol; a stolen device of alice's, given it by carol,
    # relays it as written to alice: the proof's second view is carol's
    # heads, not alice's (PROTOCOL.md §15.4 step 5)
    carol = _with_carol(w)
    text = Text("carol, it is over")
    env = seal(
        FAST, w.b.keys["d0"], w.lb.state(w.b.account), w.lb.state(carol.account), text,
        counter=3, timestamp=T0 + 9, seed=_seed("bob:carol"),
    )  # fmt: skip
    entry = HistoryEntry(
        w.b.account, env.message_id, w.b.account, w.b.keys["d0"].sign_public, T0 + 9, text,
        env.proof,
    )  # fmt: skip
    check = check_entry(entry, w.a.account, ledger_lookup(w.la), w.la.account_of)
    assert check.verdict is EntryVerdict.FORGED and "recipient" in check.reason
    assert _check(w, _from_bob(w)) is EntryVerdict.VERIFIED  # one written to alice still is


def test_an_own_text_cannot_move_to_another_conversation(w: World) -> None:
    # alice wrote to carol; the relaying device files it under bob
    carol = _with_carol(w)
    env = w.send(Text("to carol"), recipient_state=w.la.state(carol.account))
    entry = HistoryEntry(
        w.b.account, env.message_id, w.a.account, w.a.keys["d0"].sign_public, T0 + 1,
        Text("to carol"), env.proof,
    )  # fmt: skip
    assert _check(w, entry) is EntryVerdict.FORGED
    assert _check(w, dataclasses.replace(entry, peer_account=carol.account)) is (
        EntryVerdict.VERIFIED
    )


def test_a_recipient_view_this_replica_lacks_is_behind(w: World) -> None:
    carol = _with_carol(w)
    env = w.send(Text("to carol"), recipient_state=w.la.state(carol.account))
    entry = HistoryEntry(
        carol.account, env.message_id, w.a.account, w.a.keys["d0"].sign_public, T0 + 1,
        Text("to carol"), env.proof,
    )  # fmt: skip
    without_carol = Ledger(FAST)
    for h in (w.a, w.b):
        for e in h.events.values():
            without_carol.ingest(e.raw)
    of = without_carol.account_of
    # carol's log is not followed here at all: relayed, nothing to wait for
    assert check_entry(entry, w.a.account, ledger_lookup(without_carol), of).verdict is (
        EntryVerdict.UNPROVEN
    )
    # carol's log is here, but not the events alice had seen: behind
    carol.add("c1", "d0", "d1", ["g"])  # an event of carol's alice's d0 saw, w.la lacks
    later = w.send(Text("later"), recipient_state=_replica_with(w, carol).state(carol.account))
    entry = HistoryEntry(
        carol.account, later.message_id, w.a.account, w.a.keys["d0"].sign_public,
        T0 + w.counter, Text("later"), later.proof,
    )  # fmt: skip
    check = check_entry(entry, w.a.account, ledger_lookup(w.la), w.la.account_of)
    assert check.verdict is EntryVerdict.BEHIND
    error = behind_error([check])
    assert error is not None and [v.account for v in error.views] == [carol.account]


def _replica_with(w: World, *extra: History) -> Ledger:
    ledger = Ledger(FAST)
    for h in (w.a, w.b, *extra):
        for e in h.events.values():
            ledger.ingest(e.raw)
    return ledger
