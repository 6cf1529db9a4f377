"""Rotating the recovery key between real nodes (PROTOCOL.md §6.8): the old
paper key stops working on every node, the new one recovers the account on
a fresh node, the devices stay until then, the safety number does not
change, and backups are sealed to the new backup key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.errors import RpcError
from node.netdemo import Demo, link_devices

from .process import alice_and_bob, smu, start_nodes, statuses, wait_for

pytestmark = pytest.mark.process


def test_rotate_then_recover_with_the_new_key_elsewhere(demo: Demo, tmp_path: Path) -> None:
    (a, b), alice, bob = alice_and_bob(demo, ["alice", "bob"], bob_on=1)
    account = alice["account_id"]
    b.client.call("contact.add", ref=account, name="alice")
    number = b.client.call("contact.verify", contact="alice", confirm=True)["safety_number"]
    backup_key = a.client.call("backup.status")["backup_key"]
    assert backup_key
    old = tmp_path / "old.key"
    old.write_text(alice["recovery_key"])
    new = tmp_path / "new.key"

    # --json with nowhere to put the new key is refused before anything is made
    r = smu(a, "account", "rotate-recovery", "--recovery-key-file", str(old), "--json")
    assert r.returncode != 0 and "--new-recovery-key-file" in r.stdout, r.stdout  # JSON error
    before = a.client.call("account.show")["recovery_commitment"]
    assert a.client.call("account.show")["event_count"] == 1
    # a wrong key is refused, and changes nothing
    r = smu(a, "account", "rotate-recovery", "--recovery-key-file", str(tmp_path / "x"))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    with pytest.raises(RpcError, match="not the account's current recovery key"):
        a.client.call("account.rotate_recovery", recovery_key=bob["recovery_key"])

    r = smu(
        a,
        "account",
        "rotate-recovery",
        "--recovery-key-file",
        str(old),
        "--new-recovery-key-file",
        str(new),
        "--json",
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert "recovery_key" not in doc and doc["recovery_key_file"] == str(new)
    assert new.stat().st_mode & 0o777 == 0o600
    new_key = new.read_text().strip()
    assert new_key != alice["recovery_key"] and new_key not in r.stdout
    after = a.client.call("account.show")
    assert after["recovery_commitment"] != before
    assert statuses(a, account) == {"alice": "active"}  # the device stays
    history = a.client.call("account.history")["events"]
    assert history[-1]["kind"] == "rotate_recovery" and history[-1]["void"] is None
    # backups are sealed to the new backup key from now on
    assert a.client.call("backup.status")["backup_key"] not in (None, backup_key)
    backup = tmp_path / "after.smubackup"
    a.client.call("backup.create", path=str(backup))

    demo.wait_converged(demo.nodes)
    # a rotation is no recovery: the safety number and the mark stay (§4.6)
    seen = b.client.call("contact.verify", contact="alice")
    assert seen["safety_number"] == number and seen["contact"]["verified"]
    theirs = b.client.call("account.show", account=account)
    assert theirs["recovery_commitment"] == after["recovery_commitment"]

    # on a fresh node: the old paper key is refused, the new one recovers
    (c,) = start_nodes(demo, ["fresh"])
    demo.connect(c, b)
    demo.wait_converged(demo.nodes)
    with pytest.raises(RpcError, match="not the account's current recovery key"):
        c.client.call("account.recover", account=account, recovery_key=alice["recovery_key"])
    r = smu(c, "recover", account, "--recovery-key-file", str(old))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    got = c.client.call("account.recover", account=account, recovery_key=new_key)
    assert got["status"] == "accepted"
    demo.wait_converged(demo.nodes)
    for node in (a, b, c):
        assert statuses(node, account) == {"alice": "removed_by_recovery", "fresh": "active"}
    # the backup made after the rotation opens with the new paper key only
    with pytest.raises(RpcError, match="another recovery key"):
        c.client.call("backup.restore", path=str(backup), recovery_key=alice["recovery_key"])
    restored = c.client.call("backup.restore", path=str(backup), recovery_key=new_key)
    assert restored["made_by"]["status"] == "removed_by_recovery"
    # the recovery changed the number, as it should
    assert b.client.call("contact.verify", contact="alice")["safety_number"] != number


def test_the_other_device_seals_backups_to_the_new_key(demo: Demo, tmp_path: Path) -> None:
    """The laptop rotates; the phone, the account's other device, stays
    active, learns the new backup key's certificate by sync (§15.19), and
    never seals to the old one again."""
    phone, laptop = start_nodes(demo, ["phone", "laptop"])
    demo.connect(phone, laptop)
    bob = phone.client.call("account.create", name="bob")
    link_devices(demo, phone, laptop, "laptop")
    demo.wait_converged(demo.nodes)
    old = phone.client.call("backup.status")["backup_key"]
    wait_for(lambda: laptop.client.call("backup.status")["backup_key"] == old, 30, "the cert")
    got = laptop.client.call("account.rotate_recovery", recovery_key=bob["recovery_key"])
    new = laptop.client.call("backup.status")["backup_key"]
    assert new not in (None, old)
    demo.wait_converged(demo.nodes)
    assert statuses(phone, bob["account_id"]) == {"phone": "active", "laptop": "active"}
    wait_for(lambda: phone.client.call("backup.status")["backup_key"] == new, 30, "new cert")
    path = tmp_path / "phone.smubackup"
    phone.client.call("backup.create", path=str(path))
    (fresh,) = start_nodes(demo, ["fresh"])
    demo.connect(fresh, phone)
    demo.wait_converged(demo.nodes)
    fresh.client.call(
        "account.recover", account=bob["account_id"], recovery_key=got["recovery_key"]
    )
    with pytest.raises(RpcError, match="another recovery key"):
        fresh.client.call("backup.restore", path=str(path), recovery_key=bob["recovery_key"])
    fresh.client.call("backup.restore", path=str(path), recovery_key=got["recovery_key"])
