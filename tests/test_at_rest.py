"""Values encrypted at rest in the node's store (PROTOCOL.md §15.21): the
row cipher, what the stores seal, the key check, and the migration of a
store written in the clear by the previous schema."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.errors import NodeUsageError, StoreCorruptError, StoreError
from node.storage import (
    MIGRATIONS,
    SCHEMA_VERSION,
    ContactStore,
    MessageStore,
    RowCipher,
    SyncStore,
    open_database,
    row_key,
)
from node.storage.at_rest import OVERHEAD, associated_data
from node.storage.db import Database
from node.storage.messages import KIND_TEXT, NewMessage

from .conftest import hypothesis_settings
from .messaging_support import STORAGE_KEY

ALICE, BOB = b"A" * 32, b"B" * 32
MARKER = "zebra-quokka-7781"
MARKER_BYTES = MARKER.encode()

#: the schema before texts were sealed (migration 9 -> 10 seals them)
BEFORE_SEALING = 9


def cipher(key: bytes = STORAGE_KEY) -> RowCipher:
    return RowCipher(key)


# -- the row cipher -------------------------------------------------------------


def test_a_value_opens_only_where_it_was_sealed() -> None:
    c = cipher()
    key = row_key(BOB, b"m1")
    sealed = c.seal("messages", "text", key, b"hello")
    assert len(sealed) == len(b"hello") + OVERHEAD and b"hello" not in sealed
    assert c.open("messages", "text", key, sealed) == b"hello"
    # a fresh nonce every time: the same value never seals to the same bytes
    assert c.seal("messages", "text", key, b"hello") != sealed
    for table, column, other in [
        ("messages", "text", row_key(BOB, b"m2")),  # another row
        ("messages", "proof", key),  # another column
        ("sync_edits", "text", key),  # another table
        ("messages", "text", row_key(ALICE, b"m1")),  # same id, another sender
    ]:
        with pytest.raises(StoreCorruptError, match="cannot be read"):
            c.open(table, column, other, sealed)
    with pytest.raises(StoreCorruptError):
        RowCipher(os.urandom(32)).open("messages", "text", key, sealed)


def test_damaged_values_are_a_typed_error() -> None:
    c, key = cipher(), row_key(b"k")
    sealed = c.seal("t", "c", key, b"value")
    flipped = bytearray(sealed)
    flipped[-1] ^= 1
    for bad in [bytes(flipped), sealed[:-1], b"", b"\x02" + sealed[1:], "text", None, 7]:
        with pytest.raises(StoreCorruptError):
            c.open("t", "c", key, bad)
    with pytest.raises(StoreCorruptError, match="not UTF-8"):
        c.open_text("t", "c", key, c.seal("t", "c", key, b"\xff"))


def test_row_keys_and_associated_data_are_unambiguous() -> None:
    assert row_key(b"ab", b"c") != row_key(b"a", b"bc")
    assert row_key("x", 1) == b"\x00\x01x\x00\x08" + (1).to_bytes(8, "big")
    # table, column and key each carry their length: no two splits collide
    assert associated_data("ab", "c", b"") != associated_data("a", "bc", b"")
    assert associated_data("t", "c", b"k") == (
        b"smu/at-rest/v1\x00\x00\x01t\x00\x01c\x00\x00\x00\x01k"
    )
    with pytest.raises(ValueError):
        RowCipher(b"short")
    assert repr(cipher()) == "RowCipher(<storage key>)"


@hypothesis_settings(300)
@given(st.binary(max_size=200))
def test_random_bytes_never_open_and_never_raise_anything_else(raw: bytes) -> None:
    with pytest.raises(StoreCorruptError):
        cipher().open("messages", "text", row_key(BOB, b"m"), raw)


@hypothesis_settings(300)
@given(st.integers(0, 200), st.integers(0, 7))
def test_every_single_bit_flip_is_refused(position: int, bit: int) -> None:
    c, key = cipher(), row_key(BOB, b"m")
    sealed = bytearray(c.seal("messages", "text", key, b"a text of some length"))
    sealed[position % len(sealed)] ^= 1 << bit
    with pytest.raises(StoreCorruptError):
        c.open("messages", "text", key, bytes(sealed))


# -- the stores -------------------------------------------------------------------


def text(n: int, body: str, peer: bytes = BOB, request: bool = False) -> NewMessage:
    return NewMessage(
        message_id=bytes([n]) * 16,
        peer=peer,
        outgoing=False,
        sender_account=peer,
        sender_device=peer,
        sent_ms=n,
        stored_ms=n,
        kind=KIND_TEXT,
        text=body,
        request=request,
    )


def store_bytes(path: Path) -> bytes:
    """Every byte of the database's files: the file, its -wal and -shm."""
    out = b""
    for suffix in ("", "-wal", "-shm", "-journal"):
        p = Path(str(path) + suffix)
        if p.exists():
            out += p.read_bytes()
    return out


def test_texts_names_and_edits_are_sealed_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    db = open_database(path, STORAGE_KEY)
    messages, sync, contacts = MessageStore(db), SyncStore(db), ContactStore(db)
    db.write(
        [
            messages.insert_statement(text(1, f"one {MARKER}")),
            messages.insert_statement(text(2, f"req {MARKER}", peer=ALICE, request=True)),
            sync.put_statement("contact/" + BOB.hex(), ALICE, f"edit {MARKER}".encode()),
            sync.wait_statement(f"waiting {MARKER}".encode()),
        ]
    )
    contacts.add(BOB, f"name {MARKER}", 1, {})
    assert MARKER_BYTES not in store_bytes(path)
    assert [m.text for m in messages.conversation(BOB, KIND_TEXT)] == [f"one {MARKER}"]
    assert [m.text for m in messages.requests(0)] == [f"req {MARKER}"]
    assert sync.edits() == [f"edit {MARKER}".encode()]
    assert sync.waiting() == [f"waiting {MARKER}".encode()]
    assert [c.name for c in contacts.all()] == [f"name {MARKER}"]
    assert messages.history(KIND_TEXT, 10)[0].text == f"one {MARKER}"
    db.close()
    # the same key opens everything after a restart
    again = open_database(path, STORAGE_KEY)
    assert MessageStore(again).by_id(bytes([1]) * 16, BOB).text == f"one {MARKER}"  # type: ignore[union-attr]


def test_a_text_moved_to_another_row_does_not_open(tmp_path: Path) -> None:
    db = open_database(tmp_path / "events.sqlite", STORAGE_KEY)
    store = MessageStore(db)
    db.write([store.insert_statement(text(1, "first")), store.insert_statement(text(2, "two"))])
    db.conn.execute(
        "UPDATE messages SET text=(SELECT text FROM messages WHERE sent_ms=1) WHERE sent_ms=2"
    )
    with pytest.raises(StoreCorruptError, match=r"messages\.text"):
        store.conversation(BOB, KIND_TEXT)
    # a sealed name copied into a text's column refuses too
    contacts = ContactStore(db)
    contacts.add(BOB, "bob", 1, {})
    db.conn.execute("UPDATE messages SET text=(SELECT name FROM contacts) WHERE sent_ms=1")
    with pytest.raises(StoreCorruptError):
        store.by_id(bytes([1]) * 16, BOB)


def test_another_storage_key_is_refused_at_open(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    open_database(path, STORAGE_KEY).close()
    with pytest.raises(StoreCorruptError, match="another storage key"):
        open_database(path, os.urandom(32))
    # without a key the clear tables still open (`smu log verify`, tools)...
    db = open_database(path)
    # ...but nothing that seals can be used: it would write in the clear
    with pytest.raises(NodeUsageError, match="storage key"):
        MessageStore(db)


# -- the migration from the previous schema -------------------------------------------


def clear_store(path: Path) -> None:
    """A store as the previous schema wrote it: texts, names and edits in
    the clear, and a deleted text left in SQLite's free pages."""
    db = Database(path, {v: MIGRATIONS[v] for v in range(BEFORE_SEALING)})
    rows = [(n, f"text {n} {MARKER}") for n in range(1, 40)]
    for n, body in rows:
        db.conn.execute(
            "INSERT INTO messages(id, peer, outgoing, sender_account, sender_device, sent_ms, "
            "stored_ms, kind, text, request, size) VALUES(?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?)",
            (bytes([n]) * 16, BOB, BOB, BOB, n, n, KIND_TEXT, body, int(n > 30), len(body)),
        )
    db.conn.execute(
        "INSERT INTO contacts(account, name, added_ms) VALUES(?, ?, 1)", (BOB, f"bob {MARKER}")
    )
    edit = f"signed edit {MARKER}".encode()
    db.conn.execute(
        "INSERT INTO sync_edits(key, device, raw) VALUES(?, ?, ?)",
        ("contact/" + BOB.hex(), ALICE, edit),
    )
    digest = hashlib.blake2b(edit, digest_size=16).digest()
    db.conn.execute("INSERT INTO sync_waiting(id, raw) VALUES(?, ?)", (digest, edit))
    # the old connection had no secure_delete: a purged text stays in a free page
    db.conn.execute("PRAGMA secure_delete=OFF")
    db.conn.execute("DELETE FROM messages WHERE sent_ms=39")
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.conn.close()
    assert MARKER_BYTES in store_bytes(path)


def test_a_clear_store_is_sealed_by_the_migration(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    clear_store(path)
    assert b"text 39 " + MARKER_BYTES in path.read_bytes()  # the deleted one, in free space
    db = open_database(path, STORAGE_KEY)
    assert db.query("SELECT value FROM meta WHERE key='schema_version'") == [(str(SCHEMA_VERSION),)]
    # nothing of the clear values is left in any file: sealed, then VACUUM
    assert MARKER_BYTES not in store_bytes(path)
    store = MessageStore(db)
    shown = [m.text for m in store.conversation(BOB, KIND_TEXT)]
    assert shown == [f"text {n} {MARKER}" for n in range(1, 39)]
    assert [m.text for m in store.requests(0)] == [f"text {n} {MARKER}" for n in range(31, 39)]
    assert store.request_usage(0).size == sum(len(f"text {n} {MARKER}") for n in range(31, 39))
    assert [c.name for c in ContactStore(db).all()] == [f"bob {MARKER}"]
    sync = SyncStore(db)
    assert sync.edits() == sync.waiting() == [f"signed edit {MARKER}".encode()]
    db.close()
    # reopened: still the same, and no second migration
    again = open_database(path, STORAGE_KEY)
    assert len(MessageStore(again).conversation(BOB, KIND_TEXT)) == 38


def test_a_clear_store_without_its_key_is_not_migrated(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    clear_store(path)
    with pytest.raises(StoreError, match="storage key"):
        open_database(path)
    # rolled back whole: still the previous schema, every text still there
    conn = sqlite3.connect(path)
    version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    assert version == (str(BEFORE_SEALING),)
    assert conn.execute("SELECT COUNT(*) FROM messages WHERE typeof(text)='text'").fetchone() == (
        38,
    )
    conn.close()


def test_the_migration_seals_in_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """More rows than one batch (rowid ranges, bounded memory): all sealed."""
    import node.storage.at_rest as at_rest

    monkeypatch.setattr(at_rest, "MIGRATE_BATCH", 7)
    path = tmp_path / "events.sqlite"
    clear_store(path)
    db = open_database(path, STORAGE_KEY)
    assert db.query("SELECT COUNT(*) FROM messages WHERE typeof(text)='blob'") == [(38,)]


# -- the storage key in keys.json -------------------------------------------------


def test_the_storage_key_is_kept_with_the_device_keys(tmp_path: Path) -> None:
    from dataclasses import replace

    from node.datadir import DataDir

    plain = DataDir(tmp_path / "plain")
    made = plain.init("smu-test", "laptop", None)
    assert len(made.storage_key) == 32 and made.storage_key.hex() not in repr(made)
    assert plain.load_secrets().storage_key == made.storage_key
    # with a passphrase: inside the sealed box, and a key file from before
    # the storage key gets one under the same passphrase, once
    sealed = DataDir(tmp_path / "sealed")
    secrets = sealed.init("smu-test", "laptop", "pass")
    sealed._write_secrets(replace(secrets, storage_key=b""), "pass")
    assert sealed.load_secrets("pass").storage_key == b""
    with pytest.raises(NodeUsageError, match="encrypted"):
        sealed.add_storage_key(None)
    added = sealed.add_storage_key("pass")
    assert len(added.storage_key) == 32 and added.device == secrets.device
    assert added.storage_key.hex() not in sealed.keys_path.read_text()
    assert sealed.is_encrypted()
    assert sealed.add_storage_key("pass").storage_key == added.storage_key  # kept


def test_a_daemon_stopped_by_a_damaged_store_says_why() -> None:
    from node.daemon import _store_error

    damaged = StoreCorruptError("a stored messages.text value cannot be read")
    nested = ExceptionGroup("tasks", [ExceptionGroup("inner", [damaged]), ValueError("x")])
    assert _store_error(nested) is damaged
    assert _store_error(ExceptionGroup("tasks", [ValueError("x")])) is None


def test_init_says_when_history_on_disk_is_protected(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    def init(name: str, *flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "node.cli", "init", "--data-dir", str(tmp_path / name), *flags],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "SMU_PASSPHRASE": "pass"},
        )

    bare = init("bare")
    assert bare.returncode == 0, bare.stderr
    assert "anyone who copies the data directory can read your message history" in bare.stdout
    guarded = init("guarded", "--passphrase", "--json")
    assert guarded.returncode == 0, guarded.stderr
    doc = json.loads(guarded.stdout)
    assert doc["history_protected"] is True and doc["encrypted"] is True
    keys = json.loads((tmp_path / "bare" / "keys.json").read_text())["secrets"]
    assert keys["storage_key"] not in bare.stdout + guarded.stdout
