"""Wrap scheme 2 in the node's message service over real SQLite
(PROTOCOL.md §15.9, §19.11, §19.13): sticky scheme 2, refusals that leave
the stored sessions byte-identical, sessions ending with a revocation."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.errors import DiskFullError
from node.prekeys import PrekeyKeeper
from node.services.sessions import MemoryPrekeyFile
from node.storage.messages import KIND_RECEIPT, KIND_TEXT
from protocol.core.errors import InvalidInput
from protocol.messaging.content import HistoryEntry, Receipt, ReceiptStatus, SentCopy, Text
from protocol.messaging.envelope import (
    WRAP_SCHEME_2,
    WRAP_STATIC_X25519,
    Wrap,
    ledger_lookup,
    peek,
    seal,
)
from protocol.messaging.history import EntryVerdict, check_entry
from protocol.messaging.prekeys import OneTimePrekey
from protocol.messaging.ratchet import x25519_public
from protocol.messaging.scheme2 import Reach2, SendSessions, party_of
from protocol.messaging.sessions import SessionBook
from protocol.messaging.x3dh import Bundle
from protocol.records.device import Capability, SignedPrekey, make_record

from .conftest import FAST, T0, History
from .messaging_support import Node
from .scheme2_support import h


def _people() -> tuple[History, History]:
    alice = History(name="alice")
    bob = History(name="bob")
    bob.add("b1", "d0", "d1", ["g"])
    return alice, bob


def _record(
    node: Node, who: History, device: str, ts: int, prekey: SignedPrekey | None, caps: bool
) -> None:
    rec = make_record(
        FAST, who.account, who.keys[device], timestamp=ts, lifetime_ms=3600_000,
        peer_ids=("12D3KooWpeer",), addrs=(), signed_prekey=prekey,
        capabilities=(int(Capability.WRAP_SCHEME_2),) if caps else (),
    )  # fmt: skip
    node.ctx.records.admit(rec, lambda a, d: True, ts)


def _send(node: Node, to: History, text: str) -> bytes:
    node.service._seal_and_queue(to.account, Text(text), KIND_TEXT, text)
    rows = node.query("SELECT envelope FROM messages WHERE outgoing=1 ORDER BY rowid DESC LIMIT 1")
    return bytes(rows[0][0])


def _wraps(raw: bytes) -> dict[bytes, Wrap]:
    return {w.device: w for w in peek(raw, FAST).wraps}


def _sessions(node: Node) -> list[tuple[object, ...]]:
    return node.query("SELECT * FROM sessions ORDER BY session_id")


def _bob_nodes(tmp_path: Path) -> tuple[History, History, Node, Node, Node]:
    for p in ("a", "b0", "b1", "c"):
        (tmp_path / p).mkdir()
    alice, bob = _people()
    a = Node(tmp_path / "a", alice, [bob])
    keepers = {d: PrekeyKeeper(MemoryPrekeyFile()) for d in ("d0", "d1")}
    b0 = Node(tmp_path / "b0", bob, [alice], "d0", prekeys=keepers["d0"])
    b1 = Node(tmp_path / "b1", bob, [alice], "d1", prekeys=keepers["d1"])
    for d, keeper in keepers.items():
        _record(a, bob, d, T0, keeper.current(T0), caps=True)
    return alice, bob, a, b0, b1


def test_sticky_scheme_2_survives_withheld_and_aged_records(tmp_path: Path) -> None:
    alice, bob, a, b0, b1 = _bob_nodes(tmp_path)
    d0, d1 = bob.keys["d0"], bob.keys["d1"]
    spk0 = b0.service.sessions.prekeys.current(T0).public

    first = _send(a, bob, "first")
    w = _wraps(first)
    assert w[d0.sign_public].scheme == WRAP_SCHEME_2 and w[d0.sign_public].enc_public == spk0
    for node in (b0, b1):
        assert node.service.receive(first).content == Text("first")

    # a newer record that withholds the capability and the prekey
    _record(a, bob, "d0", T0 + 1000, None, caps=False)
    second = _send(a, bob, "second")
    w = _wraps(second)
    assert w[d0.sign_public].scheme == WRAP_SCHEME_2
    assert w[d0.sign_public].enc_public == d0.enc_public  # sealed to the encryption key
    assert b0.service.receive(second).content == Text("second")

    # every record aged out: still scheme 2, for both devices
    a.ctx.records.prune(lambda acc, dev: True, T0 + 10 * 3600_000)
    assert a.ctx.records.get(bob.account, d1.sign_public) is None
    third = _send(a, bob, "third")
    assert {x.scheme for x in _wraps(third).values()} == {WRAP_SCHEME_2}
    for node in (b0, b1):
        assert node.service.receive(third).content == Text("third")

    # a device never seen with scheme 2 gets scheme 1 (control: the test can fail)
    c = Node(tmp_path / "c", alice, [bob])
    assert {x.scheme for x in _wraps(_send(c, bob, "plain")).values()} == {WRAP_STATIC_X25519}


def test_refused_scheme_2_envelopes_leave_stored_sessions_byte_identical(tmp_path: Path) -> None:
    _alice, bob, a, b0, _b1 = _bob_nodes(tmp_path)
    b0.service.receive(_send(a, bob, "one"))
    env = _send(a, bob, "two")
    before = _sessions(b0)
    assert before
    tampered = bytearray(env)
    tampered[-40] ^= 1  # inside the content ciphertext
    with pytest.raises(InvalidInput):
        b0.service.receive(bytes(tampered))
    d0 = bob.keys["d0"].sign_public
    data = _wraps(env)[d0].data
    with pytest.raises(InvalidInput):  # the wrap itself, tampered
        b0.service.receive(env.replace(data, data[:-1] + bytes([data[-1] ^ 1])))
    assert _sessions(b0) == before
    b0.service.receive(env)
    after = _sessions(b0)
    assert after != before
    with pytest.raises(InvalidInput):  # replayed
        b0.service.receive(env)
    assert _sessions(b0) == after


def test_a_revoked_device_gets_no_wrap_and_its_sessions_end(tmp_path: Path) -> None:
    _alice, bob, a, _b0, b1 = _bob_nodes(tmp_path)
    d1 = bob.keys["d1"]
    b1.service.receive(_send(a, bob, "before"))
    peers = {bytes(r[2]) for r in _sessions(a)}
    assert d1.sign_public in peers
    revoke = bob.revoke("r1", "d0", "d1", ["b1"])
    a.ledger.ingest(revoke.raw)
    a.service.sessions.log_changed(bob.account)
    assert d1.sign_public not in {bytes(r[2]) for r in _sessions(a)}
    assert d1.sign_public not in _wraps(_send(a, bob, "after"))


def test_a_main_database_migrates_to_sessions_and_copies(tmp_path: Path) -> None:
    """A database of schema 11 (history proofs, the last before scheme 2)
    gains the session tables (11 -> 12), the copies (12 -> 13) and the
    re-sent envelopes of session resets (13 -> 14, §19.15), messages
    kept; a session's state is stored sealed (§15.21), not as its encoding."""
    import os

    from node.storage import MIGRATIONS, SCHEMA_VERSION, open_database
    from node.storage.at_rest import RowCipher
    from node.storage.db import Database

    key = os.urandom(32)
    path = tmp_path / "node.db"
    v11 = Database(path, {v: MIGRATIONS[v] for v in range(11)}, RowCipher(key))
    v11.write([("INSERT INTO counters(account, next) VALUES(?, ?)", (bytes(32), 7))])
    v11.conn.close()
    db = open_database(path, key)
    assert SCHEMA_VERSION >= 14  # later migrations follow (the prekey shelf, 14 -> 15)
    names = {r[0] for r in db.query("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"sessions", "session_seq", "scheme2_devices", "copies", "resends"} <= names
    assert db.query("SELECT next FROM counters") == [(7,)]


def test_prekeys_are_kept_like_the_device_keys(tmp_path: Path) -> None:
    """prekeys.json is 0600 and, with a passphrase, sealed: no secret in the
    clear; the keeper rotates after ROTATE_MS and keeps the old one in grace."""
    import stat

    from node.datadir import DataDir
    from node.prekeys import ROTATE_MS

    dd = DataDir(tmp_path / "dd")
    dd.init("smu-test", "laptop", "correct horse")
    keeper = PrekeyKeeper(dd)
    first = keeper.current(T0)
    secret = keeper.store.signed[first.prekey_id][0]
    raw = (tmp_path / "dd" / "prekeys.json").read_bytes()
    assert stat.S_IMODE((tmp_path / "dd" / "prekeys.json").stat().st_mode) == 0o600
    assert secret.hex() not in raw.decode() and b"store" not in raw
    again = DataDir(tmp_path / "dd")
    again.load_secrets("correct horse")
    assert PrekeyKeeper(again).current(T0 + 1000) == first  # the same, not rotated
    later = PrekeyKeeper(again).current(T0 + ROTATE_MS)
    assert later.prekey_id > first.prekey_id
    store = PrekeyKeeper(again).store
    assert store.signed_secret(first.prekey_id, T0 + ROTATE_MS) == secret  # in its grace


def test_a_record_seen_once_is_sticky_before_any_message(tmp_path: Path) -> None:
    """A contact's record advertising scheme 2 is remembered when it
    arrives (§15.9): aged out before the first message, it still cannot
    downgrade that device; a stranger's record is not remembered."""
    _alice, bob, a, b0, _ = _bob_nodes(tmp_path)
    a.ctx.records = type(a.ctx.records)(FAST)  # nothing held yet
    prekey = b0.service.sessions.prekeys.current(T0)
    rec = make_record(
        FAST, bob.account, bob.keys["d0"], timestamp=T0, lifetime_ms=3600_000,
        peer_ids=("12D3KooWpeer",), addrs=(), signed_prekey=prekey,
        capabilities=(int(Capability.WRAP_SCHEME_2),),
    )  # fmt: skip
    a.service.record_arrived(rec)  # bob is no contact of alice's yet
    assert not a.query("SELECT * FROM scheme2_devices")
    a.contacts.add(bob.account, "bob")
    a.service.record_arrived(rec)
    assert a.query("SELECT spk_id FROM scheme2_devices") == [(prekey.prekey_id,)]
    # the record never reaches the record book (withheld, or aged): scheme 2 still
    wraps = _wraps(_send(a, bob, "sticky"))
    d0 = bob.keys["d0"].sign_public
    assert wraps[d0].scheme == WRAP_SCHEME_2
    assert wraps[bob.keys["d1"].sign_public].scheme == WRAP_STATIC_X25519  # never seen
    assert b0.service.receive(_send(a, bob, "again")).content == Text("again")


def test_a_text_reaches_the_senders_other_device_as_a_copy(tmp_path: Path) -> None:
    """The outbox row of the sender's other device carries the copy's
    envelope (its own id and keys), under the text's id; that device stores
    the text as sent, in the conversation with bob, under the same id (§15.22)."""
    for p in ("a0", "a1"):
        (tmp_path / p).mkdir()
    alice, bob = _people()
    alice.add("a1", "d0", "d1", ["g"])
    a0 = Node(tmp_path / "a0", alice, [bob], "d0")
    a1 = Node(tmp_path / "a1", alice, [bob], "d1")
    message_id, devices = a0.service._seal_and_queue(bob.account, Text("hi"), KIND_TEXT, "hi")
    assert devices == 3  # bob's two devices and alice's d1
    due = {d.device: d for d in a0.service.store.due(T0 * 10, 10)}
    copy = due[alice.keys["d1"].sign_public]
    assert copy.message == message_id and copy.account == alice.account
    header = peek(copy.envelope, FAST)
    assert header.recipient_account == alice.account and header.message_id != message_id
    assert set(header.devices) == {alice.keys["d0"].sign_public, alice.keys["d1"].sign_public}
    original = peek(due[bob.keys["d0"].sign_public].envelope, FAST)
    assert set(original.devices) == {bob.keys["d0"].sign_public, bob.keys["d1"].sign_public}
    a1.service.receive(copy.envelope)
    (row,) = a1.service.store.conversation(bob.account, KIND_TEXT)
    assert (row.message_id, row.outgoing, row.text) == (message_id, True, "hi")
    assert row.sender_device == alice.keys["d0"].sign_public
    # with the original's proof: a1's history relays it as proven by d0 (§15.22)
    (held,) = a1.service.store.history(KIND_TEXT, 10)
    entry = HistoryEntry(
        held.peer, held.message_id, held.sender_account, held.sender_device,
        held.sent_ms, Text(held.text), held.proof,
    )  # fmt: skip
    lookup = ledger_lookup(a1.ctx.ledger)
    assert check_entry(entry, alice.account, lookup, a1.ctx.ledger.account_of).verdict is (
        EntryVerdict.VERIFIED
    )


def test_a_device_that_cannot_open_our_session_gets_a_new_one(tmp_path: Path) -> None:
    """Refused with prekey_unknown (its signed prekey is retired): the
    sender's sessions with that device end, its next message sets up anew."""
    import trio

    _, bob, a, _, _ = _bob_nodes(tmp_path)
    d0 = bob.keys["d0"].sign_public
    first = _send(a, bob, "first")
    assert len(_wraps(first)[d0].data) > 300  # a set-up (§19.13; a ratchet message: 242)
    (due,) = [d for d in a.service.store.due(T0 * 10, 10) if d.device == d0]

    async def refused(*args: object) -> str:
        return "prekey_unknown: no such signed prekey (or retired)"

    a.service.direct.attempt = refused  # type: ignore[method-assign]
    trio.run(a.service._deliver_one, due)
    assert d0 not in {bytes(r[2]) for r in _sessions(a)}
    assert bob.keys["d1"].sign_public in {bytes(r[2]) for r in _sessions(a)}
    again = _wraps(_send(a, bob, "again"))
    assert len(again[d0].data) > 300  # a new set-up
    assert [bytes(r[2]) for r in _sessions(a)].count(d0) == 1  # the new one only


def test_session_state_is_sealed_at_rest_to_its_row(tmp_path: Path) -> None:
    """The ratchet's secrets are in the store only sealed (§15.21), each
    state bound to its session id: a state moved to another row does not
    open, and the clear encoding appears nowhere in the database file."""
    from node.errors import StoreCorruptError
    from node.storage.sessions import decode_state_blob
    from protocol.messaging.ratchet import encode_state

    _, bob, a, b0, _ = _bob_nodes(tmp_path)
    first = _send(a, bob, "first")
    assert b0.service.receive(first).content == Text("first")
    for node, where in ((a, tmp_path / "a"), (b0, tmp_path / "b0")):
        rows = node.query("SELECT session_id, state FROM sessions")
        assert rows
        cipher = node.service.store.db.require_cipher()
        files = b"".join(f.read_bytes() for f in where.iterdir() if f.is_file())
        for sid, blob in rows:
            clear = encode_state(decode_state_blob(cipher, bytes(sid), blob))
            assert clear not in files
            with pytest.raises(StoreCorruptError):
                decode_state_blob(cipher, b"\x00" * len(bytes(sid)), blob)


def test_a_copy_whose_proof_does_not_hold_is_kept_without_it(tmp_path: Path) -> None:
    """A stolen device of the account sends a copy with a proof its text does
    not match: the copy is its own device's word (stored as sent), but the
    proof is not kept, so this device never relays it as proven, nor does a
    new device it approves get told that *this* device forged it (§15.22)."""
    for p in ("a0", "a1"):
        (tmp_path / p).mkdir()
    alice, bob = _people()
    alice.add("a1", "d0", "d1", ["g"])
    a0 = Node(tmp_path / "a0", alice, [bob], "d0")
    a1 = Node(tmp_path / "a1", alice, [bob], "d1")
    genuine, _ = a0.service._seal_and_queue(bob.account, Text("hi"), KIND_TEXT, "hi")
    (sent,) = [r for r in a0.service.store.history(KIND_TEXT, 10) if r.message_id == genuine]
    assert sent.proof is not None
    fake = SentCopy(bob.account, b"\x05" * 16, Text("pay carol"), sent.proof)
    a0.service._seal_and_queue(alice.account, fake, KIND_TEXT, "")
    (copy,) = [
        d for d in a0.service.store.due(T0 * 10, 20)
        if d.device == alice.keys["d1"].sign_public and d.message != genuine
    ]  # fmt: skip
    a1.service.receive(copy.envelope)
    (row,) = [r for r in a1.service.store.history(KIND_TEXT, 10) if r.message_id == b"\x05" * 16]
    assert (row.text, row.sender_account, row.peer) == ("pay carol", alice.account, bob.account)
    assert row.proof is None


def test_a_failed_write_leaves_the_one_time_prekey_unspent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A set-up with a one-time prekey whose message cannot be stored (the
    disk budget is full): the prekey stays unspent, so the sender's retry
    of the same envelope opens once there is room (persist before
    acknowledging, and a refusal changes nothing, §19.8, §19.13)."""
    alice, bob, a, b0, _ = _bob_nodes(tmp_path)
    keeper = b0.service.sessions.prekeys
    otk = h("bob d0 one-time prekey")
    keeper.commit(keeper.store.with_batch(100, 2**60, [otk]))
    spk = keeper.current(T0)
    d0 = bob.keys["d0"].sign_public
    mine, theirs = a.ledger.state(alice.account), a.ledger.state(bob.account)
    me, peer = party_of(mine, alice.keys["d0"].sign_public), party_of(theirs, d0)
    assert me is not None and peer is not None
    bundle = Bundle(peer, spk.prekey_id, spk.public, OneTimePrekey(100, x25519_public(otk), 2**60))
    book, _ = SessionBook().start(FAST, me, alice.keys["d0"].enc_secret, bundle, h("x3dh", 64))
    env = seal(
        FAST, alice.keys["d0"], mine, theirs, Text("through a full disk"), counter=1,
        timestamp=T0 + 1, seed=h("seed"), only_devices=[d0],
        sessions=SendSessions(book, {d0: Reach2(spk.prekey_id, spk.public, True)}),
    )  # fmt: skip

    def full(rows: object) -> None:
        raise DiskFullError("the node's disk budget is full")

    with monkeypatch.context() as m:
        m.setattr(b0.db, "write", full)
        with pytest.raises(DiskFullError):
            b0.service.receive(env.raw)
    assert 100 in keeper.store.one_time
    assert keeper.file.load_prekeys() == keeper.store.encode()  # and so on disk
    b0.service.receive(env.raw)  # the retry
    assert [r.text for r in b0.service.store.conversation(alice.account, KIND_TEXT)] == [
        "through a full disk"
    ]
    assert 100 not in keeper.store.one_time and 100 in keeper.store.spent


def test_a_strangers_set_up_is_kept_only_with_a_request_it_earned(tmp_path: Path) -> None:
    """A device of an account that is no contact sets up a session with a
    receipt (no request caps apply to one): the envelope is taken, the
    session not kept, so fresh devices cannot fill this device's session
    table and disk (a set-up can carry ~140 KB of skipped keys, §19.11);
    its text, admitted as a request, keeps one."""
    alice, bob, a, b0, _ = _bob_nodes(tmp_path)
    d0 = bob.keys["d0"].sign_public
    assert not b0.contacts.is_contact(alice.account)
    receipt = Receipt(ReceiptStatus.DELIVERED, (b"\x01" * 16,))
    a.service._seal_and_queue(bob.account, receipt, KIND_RECEIPT, "", only=[d0])
    (due,) = [d for d in a.service.store.due(T0 * 10, 10) if d.device == d0]
    assert _wraps(due.envelope)[d0].scheme == WRAP_SCHEME_2
    b0.service.receive(due.envelope)
    assert _sessions(b0) == []
    b0.service.receive(_send(a, bob, "a request"))
    assert len(_sessions(b0)) == 1
    assert [r.text for r in b0.service.store.requests(0)] == ["a request"]


def test_a_strangers_sessions_end_once_its_requests_are_gone(tmp_path: Path) -> None:
    """A stranger's text is a request, and its set-up a session; when the
    request expires unaccepted the session goes with it (it must not outlive
    what let it in, §19.11), while a contact's session stays."""
    from node.services.requests import RequestLimits

    _, bob, a, b0, _ = _bob_nodes(tmp_path)
    now = [T0]
    b0.service.now_ms = lambda: now[0]
    # alice is no contact of bob's: her text is a request, kept with its session
    assert b0.service.receive(_send(a, bob, "hello?")).content == Text("hello?")
    assert b0.service.store.requests(0) and _sessions(b0)
    b0.service.housekeeping()
    assert _sessions(b0)  # her request is still held
    now[0] = T0 + RequestLimits().lifetime_ms + 1
    b0.service.housekeeping()
    assert b0.service.store.requests(0) == [] and _sessions(b0) == []

    # a contact's session outlives every message of theirs
    b0.contacts.add(a.me.account, "alice")
    assert b0.service.receive(_send(a, bob, "again")).content == Text("again")
    b0.db.write([("DELETE FROM messages", ())])
    b0.service.housekeeping()
    assert _sessions(b0)
    # a node whose device has no account yet sweeps too (a mailbox's node)
    b0.ctx.account = lambda: None  # type: ignore[method-assign]
    b0.service.housekeeping()


def test_has_session_reads_the_active_sessions_key_without_its_state(tmp_path: Path) -> None:
    """What prekey fetching asks before every text (§19.16): a session with
    this device under this identity key, read from the row, not the state."""
    from protocol.messaging.x3dh import Party

    _, bob, a, _, _ = _bob_nodes(tmp_path)
    d0 = bob.keys["d0"]
    party = Party(bob.account, d0.sign_public, d0.enc_public)
    assert not a.service.sessions.has_session(party)
    _send(a, bob, "first")
    assert a.service.sessions.has_session(party)
    assert not a.service.sessions.has_session(Party(bob.account, d0.sign_public, bytes(32)))
    # a damaged state does not matter to the question (it is never opened)
    a.db.write([("UPDATE sessions SET state = x'00'", ())])
    assert a.service.sessions.has_session(party)
