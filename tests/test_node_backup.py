"""Encrypted backups between real nodes (PROTOCOL.md §15.20): a backup made
on alice's device restores onto her account recovered on a fresh node, with
the paper key only; no device can open one; a damaged file changes nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from node.datadir import DataDir
from node.errors import RpcError
from node.netdemo import Demo
from protocol.core.keys import RecoveryKey
from protocol.core.params import network_by_id
from protocol.messaging.backup import make_cert, seal_backup

from .process import alice_and_bob, smu, start_nodes, texts, wait_for

pytestmark = pytest.mark.process


def test_a_backup_restores_onto_the_recovered_account_with_the_paper_key(
    demo: Demo, tmp_path: Path
) -> None:
    (a, b), alice, bob = alice_and_bob(demo, ["alice", "bob"], bob_on=1)
    a.client.call("contact.add", ref=bob["account_id"], name="bob")
    b.client.call("contact.add", ref=alice["account_id"], name="alice")
    a.client.call("message.send", contact="bob", text="before the loss")
    b.client.call("message.send", contact="alice", text="a reply")
    wait_for(lambda: texts(a, "bob") == ["before the loss", "a reply"], 30, "both texts")
    a.client.call("contact.verify", contact="bob", confirm=True)
    assert a.client.call("backup.status")["backup_key"]  # made at account creation
    # (and, on the way, /smu/time/1: each linked node asked the other its clock)
    wait_for(lambda: a.status()["clock"]["peers_asked"] == 1, 20, "the clock question")

    plain, locked = tmp_path / "plain.smubackup", tmp_path / "locked.smubackup"
    made = a.client.call("backup.create", path=str(plain))
    assert made["messages"] == 2 and made["edits"] >= 2
    a.client.call("backup.create", path=str(locked), passphrase="river stone")
    assert plain.stat().st_mode & 0o777 == 0o600
    data = plain.read_bytes()
    assert b"before the loss" not in data and alice["recovery_key"].encode() not in data

    # alice loses her device and recovers on a fresh node
    (c,) = start_nodes(demo, ["fresh"])
    demo.connect(c, b)
    demo.wait_converged(demo.nodes)
    c.client.call(
        "account.recover", account=alice["account_id"], recovery_key=alice["recovery_key"]
    )
    demo.wait_converged(demo.nodes)
    assert c.client.call("backup.status")["backup_key"]  # vouched for by the new paper key

    # a missing or wrong passphrase does not open it, nor does a damaged file
    for params in (
        {"path": str(locked), "recovery_key": alice["recovery_key"]},
        {"path": str(locked), "recovery_key": alice["recovery_key"], "passphrase": "wrong"},
    ):
        with pytest.raises(RpcError):
            c.client.call("backup.restore", **params)
    damaged = tmp_path / "damaged.smubackup"
    damaged.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(RpcError, match="not restored"):
        c.client.call("backup.restore", path=str(damaged), recovery_key=alice["recovery_key"])
    assert c.client.call("contact.list")["contacts"] == []

    restored = c.client.call(
        "backup.restore",
        path=str(locked),
        recovery_key=alice["recovery_key"],
        passphrase="river stone",
    )
    assert restored["messages"] == 2 and restored["made_by"]["status"] == "removed_by_recovery"
    assert texts(c, "bob") == ["before the loss", "a reply"]
    # each with the proof of its sender: restored as its sender's, not relayed
    restored_docs = c.client.call("message.conversation", contact="bob")["messages"]
    assert [m["relayed_by"] for m in restored_docs] == [None, None]
    (mine,) = c.client.call("contact.list")["contacts"]
    assert mine["name"] == "bob" and mine["verified"]  # the mark predates the recovery: it holds
    # restoring twice adds nothing
    again = c.client.call("backup.restore", path=str(plain), recovery_key=alice["recovery_key"])
    assert again["messages"] == 0


def test_a_backup_of_another_account_or_with_a_wrong_key_is_refused(
    demo: Demo, tmp_path: Path
) -> None:
    (a, b), alice, bob = alice_and_bob(demo, ["alice", "bob"], bob_on=1)
    path = tmp_path / "alice.smubackup"
    a.client.call("backup.create", path=str(path))
    with pytest.raises(RpcError, match="another recovery key"):
        a.client.call("backup.restore", path=str(path), recovery_key=bob["recovery_key"])
    with pytest.raises(RpcError, match="another account"):
        b.client.call("backup.restore", path=str(path), recovery_key=alice["recovery_key"])
    with pytest.raises(RpcError, match="recovery key"):
        a.client.call("backup.key", recovery_key=bob["recovery_key"])
    # the same from the command line
    keyfile = tmp_path / "alice.key"
    keyfile.write_text(alice["recovery_key"])
    r = smu(a, "backup", "create", str(tmp_path / "cli.smubackup"))
    assert r.returncode == 0 and "backed up 0 messages" in r.stdout, r.stderr
    r = smu(
        a, "backup", "restore", str(tmp_path / "cli.smubackup"), "--recovery-key-file", str(keyfile)
    )
    assert r.returncode == 0 and "restored 0 new messages" in r.stdout, r.stderr
    r = smu(a, "backup", "restore", str(path), "--recovery-key-file", str(tmp_path / "missing"))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "the trash is empty" in smu(a, "trash").stdout
    # automatic backups: the first is written at once, then every hour
    auto = tmp_path / "auto.smubackup"
    with pytest.raises(RpcError, match="at most one backup every"):
        a.client.call("backup.auto", path=str(auto), every_hours=0)
    assert a.client.call("backup.auto", path=str(auto), every_hours=1)["auto"]["every_hours"] == 1
    # the settings record the backup after its file is in place
    wait_for(lambda: a.client.call("backup.status")["auto"]["last_ms"] > 0, 20, "auto backup")
    assert auto.exists() and auto.stat().st_mode & 0o777 == 0o600
    assert a.client.call("backup.auto", off=True)["auto"] is None
    big = tmp_path / "noise"
    big.write_bytes(os.urandom(4096))
    with pytest.raises(RpcError, match="not restored"):
        a.client.call("backup.restore", path=str(big), recovery_key=alice["recovery_key"])


def test_a_backup_a_stolen_device_writes_cannot_put_words_in_a_contacts_mouth(
    demo: Demo, tmp_path: Path
) -> None:
    """A backup is its making device's word (§15.20): a message of bob's in
    it without a proof that holds is restored as relayed by that device, one
    whose proof fails not at all, as history is judged (§15.4)."""
    (a, b), alice, bob = alice_and_bob(demo, ["alice", "bob"], bob_on=1)
    a.client.call("contact.add", ref=bob["account_id"], name="bob")
    b.client.call("contact.add", ref=alice["account_id"], name="alice")
    b.client.call("message.send", contact="alice", text="a real one")
    wait_for(lambda: texts(a, "bob") == ["a real one"], 30, "bob's text")
    real = a.client.call("message.conversation", contact="bob")["messages"][0]
    # the device's keys and the paper key: what a thief of both holds
    device = DataDir(a.dir).load_secrets().device
    params = network_by_id(a.status()["network"])
    account, peer = bytes.fromhex(alice["account_id"]), bytes.fromhex(bob["account_id"])
    cert = make_cert(params, account, RecoveryKey.from_paper(alice["recovery_key"]))
    bob_device = bytes.fromhex(
        a.client.call("device.list", account="bob")["devices"][0]["sign_public"]
    )
    claim = ["msg", peer, b"\x01" * 16, False, peer, bob_device, 1_000, "send it to carol"]
    forged = [
        *claim[:2],
        b"\x02" * 16,
        *claim[3:7],
        "and now",
        [b"\x00" * 32, 1, [[1, [b"\x00" * 32]], [1, [b"\x01" * 32]]], b"\x00" * 64],
    ]

    def write(name: str, items: list[object]) -> str:
        path = tmp_path / name
        path.write_bytes(
            b"".join(
                seal_backup(
                    params, cert, device, items, created_ms=2_000,  # type: ignore[arg-type]
                    file_key=os.urandom(32), eph_secret=os.urandom(32),
                )
            )
        )  # fmt: skip
        return str(path)

    # the form before proofs (8 fields): a claim only
    done = a.client.call(
        "backup.restore", path=write("planted", [claim]), recovery_key=alice["recovery_key"]
    )
    assert done["messages"] == 1
    docs = {m["text"]: m for m in a.client.call("message.conversation", contact="bob")["messages"]}
    assert set(docs) == {"a real one", "send it to carol"}
    assert docs["send it to carol"]["relayed_by"] is not None
    # a proof that does not hold: not restored
    done = a.client.call(
        "backup.restore", path=write("forged", [forged]), recovery_key=alice["recovery_key"]
    )
    assert (done["messages"], done["messages_in_backup"]) == (0, 1)
    assert docs["a real one"] == real
