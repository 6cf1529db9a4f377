"""Encrypted backups between real nodes (PROTOCOL.md §15.20): a backup made
on alice's device restores onto her account recovered on a fresh node, with
the paper key only; no device can open one; a damaged file changes nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from node.errors import RpcError
from node.netdemo import Demo

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
