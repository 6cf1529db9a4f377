"""Contacts over real nodes: invite, safety number, changes shown, recovery
asks for re-verification (issue: Messaging, Contacts and verification)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from node.netdemo import Demo
from protocol.core.keys import DeviceKeys
from protocol.core.params import TESTNET
from protocol.log import authoring

from .process import alice_and_bob, start_nodes

pytestmark = pytest.mark.process


def test_contact_lifecycle(demo: Demo) -> None:
    (a, b, c), alice, bob = alice_and_bob(demo, ["alice", "bob", "spare"], bob_on=1)

    inv = a.client.call("invite.create")
    added = b.client.call("contact.add", ref=inv["invite"])
    assert added["synced"] and added["account_id"] == alice["account_id"]
    a.client.call("contact.add", ref=bob["account_id"], name="Bobby")
    n_ab = a.client.call("contact.verify", contact="Bobby")["safety_number"]
    n_ba = b.client.call("contact.verify", contact="alice")["safety_number"]
    assert n_ab == n_ba and len(n_ab.replace(" ", "")) == 60
    b.client.call("contact.verify", contact="alice", confirm=True)
    (mine,) = b.client.call("contact.list")["contacts"]
    assert mine["verified"] and mine["changes"] == []

    # Alice links a laptop: bob sees it with its approver; still verified.
    laptop = DeviceKeys.from_random(os.urandom(64))
    acc = bytes.fromhex(alice["account_id"])
    head = bytes.fromhex(a.client.call("account.show")["heads"][0])
    add = authoring.add_device(
        TESTNET,
        acc,
        [head],
        a.device(),
        authoring.introduce(TESTNET, acc, laptop, "laptop"),
        timestamp=int(time.time() * 1000),
    )
    a.submit(add)
    demo.wait_converged(demo.nodes)
    (mine,) = b.client.call("contact.list")["contacts"]
    assert mine["verified"]
    assert any("'laptop'" in ch and "approved by alice" in ch for ch in mine["changes"])
    b.client.call("contact.ack", contact="alice")
    assert b.client.call("contact.list")["contacts"][0]["changes"] == []

    # Alice recovers on a fresh node: bob must verify again.
    c.client.call(
        "account.recover", account=alice["account_id"], recovery_key=alice["recovery_key"]
    )
    demo.wait_converged(demo.nodes)
    (mine,) = b.client.call("contact.list")["contacts"]
    assert not mine["verified"]
    assert any("verify the safety number again" in ch for ch in mine["changes"])

    r = subprocess.run(
        [sys.executable, "-m", "node.cli", "verify", "alice", "--data-dir", str(b.dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # the number covers alice's recovery epoch (PROTOCOL.md §4.6): a new one
    assert r.returncode == 0 and "not verified" in r.stdout
    assert n_ab.split()[0] not in r.stdout


def test_contact_errors(demo: Demo) -> None:
    (a,) = start_nodes(demo, ["solo"])
    r = subprocess.run(
        [sys.executable, "-m", "node.cli", "invite", "--data-dir", str(a.dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "account create" in r.stderr
    a.client.call("account.create", name="solo")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "node.cli",
            "contact",
            "add",
            "smu1invxxxx",
            "--data-dir",
            str(a.dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "invite" in r.stderr
