"""Message history at rest on real ``smu node`` processes (PROTOCOL.md
§15.21): after texts are sent and received, no file of either data
directory holds them, with a passphrase or without; a data directory with
a passphrase does not start without it; restarts keep every conversation
readable; the CLI says which of the two protects its history; a data
directory from before the storage key gets one on its first start."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from node.datadir import DataDir
from node.netdemo import Demo, DemoNode
from node.storage import RowCipher, row_key

from .process import smu, start_nodes, texts, wait_for

PASSPHRASE = "correct horse battery staple"
TO_BOB = "marmot-velvet-4417 for bob"
TO_ALICE = "heron-saffron-9023 for alice"
#: what bob calls alice: a contact name, synced and kept on this device only
NICKNAME = "aunt-agatha-5512"


class PassphraseNode(DemoNode):
    """A node whose keys (and so its history) a passphrase protects; the
    passphrase reaches ``smu`` through SMU_PASSPHRASE, set by the test."""

    def start(self, bootstrap: list[str] | None = None) -> None:
        self.smu("init", "--network", "smu-test", "--name", self.name, "--passphrase")
        self.start_existing(bootstrap)


def every_file(path: Path) -> dict[Path, bytes]:
    """The raw bytes of every file of a data directory (the database, its
    -wal and -shm, keys, logs, everything)."""
    return {p: p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def holding(path: Path, marker: str) -> list[str]:
    return [p.name for p, data in every_file(path).items() if marker.encode() in data]


def test_history_is_sealed_on_disk_with_and_without_a_passphrase(
    demo: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMU_PASSPHRASE", PASSPHRASE)
    (a,) = start_nodes(demo, ["a"], kind=PassphraseNode)
    (b,) = start_nodes(demo, ["b"])
    demo.connect(a, b)
    alice = a.client.call("account.create", name="alice")
    bob = b.client.call("account.create", name="bob")
    demo.wait_converged(demo.nodes)
    a.client.call("contact.add", ref=bob["account_id"], name="bob")
    b.client.call("contact.add", ref=alice["account_id"], name="alice")
    a.client.call("message.send", contact="bob", text=TO_BOB)
    wait_for(lambda: texts(b, "alice") == [TO_BOB])
    b.client.call("message.send", contact="alice", text=TO_ALICE)
    wait_for(lambda: texts(a, "bob") == [TO_BOB, TO_ALICE])

    # the files, read raw while the nodes run and after they stop
    for node in (a, b):
        assert (node.dir / "events.sqlite").exists()
        for marker in (TO_BOB, TO_ALICE):
            assert holding(node.dir, marker) == [], node.name
    # the storage key (in the clear in bob's keys.json: no passphrase) is in
    # no other file, log included, nor in what the CLI prints
    key = DataDir(b.dir).load_secrets().storage_key
    for path, data in every_file(b.dir).items():
        if path.name != "keys.json":
            assert key not in data and key.hex().encode() not in data, path.name
    exported = smu(b, "export")
    assert exported.returncode == 0 and TO_BOB in exported.stdout  # the user asked for it
    assert key.hex() not in exported.stdout
    status = {n.name: json.loads(smu(n, "node", "status", "--json").stdout) for n in (a, b)}
    assert all(key.hex() not in json.dumps(doc) for doc in status.values())
    assert status["a"]["history_protected"] is True
    assert status["b"]["history_protected"] is False
    plain = smu(b, "node", "status").stdout
    assert "anyone who copies the data directory can read your message history" in plain
    assert "encrypted under your passphrase" in smu(a, "node", "status").stdout
    a.stop()
    b.stop()
    for node in (a, b):
        for marker in (TO_BOB, TO_ALICE):
            assert holding(node.dir, marker) == [], node.name

    # without the passphrase alice's data directory does not open: neither
    # the daemon nor its keys, so neither its storage key nor its store
    env = {k: v for k, v in os.environ.items() if k != "SMU_PASSPHRASE"}
    refused = subprocess.run(
        [sys.executable, "-m", "node.cli", "node", "run", "--data-dir", str(a.dir)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    assert refused.returncode == 1 and "the keys are encrypted" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert "storage_key" not in (a.dir / "keys.json").read_text()  # sealed in the box

    # restarted, both read every conversation again
    a.start_existing()
    b.start_existing()
    a.wait_ready()
    b.wait_ready()
    assert texts(a, "bob") == [TO_BOB, TO_ALICE]
    assert texts(b, "alice") == [TO_BOB, TO_ALICE]


def unseal_to_previous_schema(path: Path, storage_key: bytes) -> None:
    """Turn a store back into what the previous schema wrote: every sealed
    value in the clear, no key check, schema version one lower."""
    cipher = RowCipher(storage_key)
    conn = sqlite3.connect(path)
    for sa, mid, t in conn.execute("SELECT sender_account, id, text FROM messages").fetchall():
        clear = cipher.open_text("messages", "text", row_key(sa, mid), t)
        conn.execute("UPDATE messages SET text=? WHERE sender_account=? AND id=?", (clear, sa, mid))
    for account, name in conn.execute("SELECT account, name FROM contacts").fetchall():
        clear = cipher.open_text("contacts", "name", row_key(account), name)
        conn.execute("UPDATE contacts SET name=? WHERE account=?", (clear, account))
    for key, device, raw in conn.execute("SELECT key, device, raw FROM sync_edits").fetchall():
        clear_raw = cipher.open("sync_edits", "raw", row_key(key, device), raw)
        conn.execute(
            "UPDATE sync_edits SET raw=? WHERE key=? AND device=?", (clear_raw, key, device)
        )
    for wid, raw in conn.execute("SELECT id, raw FROM sync_waiting").fetchall():
        clear_raw = cipher.open("sync_waiting", "raw", row_key(wid), raw)
        conn.execute("UPDATE sync_waiting SET raw=? WHERE id=?", (clear_raw, wid))
    conn.execute("DELETE FROM meta WHERE key='at_rest_check'")
    # schema 9, the last before sealing: later migrations' columns go too
    conn.execute("ALTER TABLE messages DROP COLUMN proof")
    conn.execute("ALTER TABLE messages DROP COLUMN relayed_by")
    conn.execute("UPDATE meta SET value='9' WHERE key='schema_version'")
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def test_a_store_from_before_the_storage_key_is_sealed_at_its_first_start(
    demo: Demo,
) -> None:
    """The upgrade: keys.json without a storage key and a store of the
    previous schema with texts in the clear.  The first start makes the key,
    seals every value with it (no clear copy left in any file) and shows
    the same conversation; a damaged text is then a clear error, once."""
    a, b = start_nodes(demo, ["a", "b"])
    demo.connect(a, b)
    alice = a.client.call("account.create", name="alice")
    bob = b.client.call("account.create", name="bob")
    demo.wait_converged(demo.nodes)
    a.client.call("contact.add", ref=bob["account_id"], name="bob")
    b.client.call("contact.add", ref=alice["account_id"], name=NICKNAME)
    a.client.call("message.send", contact="bob", text=TO_BOB)
    wait_for(lambda: texts(b, NICKNAME) == [TO_BOB])
    b.stop()
    old = DataDir(b.dir).load_secrets().storage_key
    unseal_to_previous_schema(b.dir / "events.sqlite", old)
    keys = json.loads((b.dir / "keys.json").read_text())
    del keys["secrets"]["storage_key"]
    (b.dir / "keys.json").write_text(json.dumps(keys))
    # as the previous version left it
    assert holding(b.dir, TO_BOB) == holding(b.dir, NICKNAME) == ["events.sqlite"]

    b.start_existing()
    b.wait_ready()
    new = DataDir(b.dir).load_secrets().storage_key
    assert len(new) == 32 and new != old
    assert texts(b, NICKNAME) == [TO_BOB]
    assert holding(b.dir, TO_BOB) == []
    assert holding(b.dir, NICKNAME) == []  # the contact's name, sealed too
    b.stop()
    # the key is kept: the next start opens what it sealed
    assert DataDir(b.dir).load_secrets().storage_key == new

    # one damaged text: its conversation is refused with the reason, the
    # daemon runs on and logs no traceback
    conn = sqlite3.connect(b.dir / "events.sqlite")
    conn.execute("UPDATE messages SET text = zeroblob(60) WHERE kind=1")
    conn.commit()
    conn.close()
    b.start_existing()
    b.wait_ready()
    r = smu(b, "conversation", NICKNAME)
    assert r.returncode == 1
    assert "messages.text value cannot be read" in r.stderr and "Traceback" not in r.stderr
    assert b.client.call("node.status")["events"] > 0  # still serving
    assert "Traceback" not in (b.dir / "node.log").read_text()
