"""Account-wide state between real nodes (issue: One account, equal devices;
PROTOCOL.md §15.19): a contact, a verification and a block made on one
device hold on the account's other devices; a snapshot reaches a device
linked later; a revoked device is cut off."""

from __future__ import annotations

from typing import Any

import pytest

from node.netdemo import Demo, DemoNode, link_devices

from .process import alice_and_bob, start_nodes, texts, wait_for

pytestmark = pytest.mark.process


def contacts(node: DemoNode) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in node.client.call("contact.list")["contacts"]}


def test_a_linked_device_is_an_equal(demo: Demo) -> None:
    (a, phone, laptop), alice, bob = alice_and_bob(demo, ["alice", "phone", "laptop"], bob_on=1)
    a.client.call("contact.add", ref=bob["account_id"], name="bob")
    link_devices(demo, phone, laptop, "laptop")

    # Added on the phone, usable on the laptop within seconds: no `contact add` there.
    phone.client.call("contact.add", ref=alice["account_id"], name="alice")
    wait_for(lambda: "alice" in contacts(laptop), 20, "alice in the laptop's contacts")
    a.client.call("message.send", contact="bob", text="hello bob")
    for device in (phone, laptop):
        wait_for(lambda d=device: "hello bob" in texts(d, "alice"), 30, "hello on both devices")
    # a contact's message is no request on the second device
    assert laptop.client.call("message.inbox")["requests"] == 0
    laptop.client.call("message.send", contact="alice", text="from the laptop")
    wait_for(lambda: "from the laptop" in texts(a, "bob"), 30, "the laptop's reply")

    # Deleted on the phone: gone from the laptop too, in the trash on both,
    # and restored from the laptop (PROTOCOL.md §15.19, the trash).
    (hello,) = [
        m
        for m in phone.client.call("message.conversation", contact="alice")["messages"]
        if m["text"] == "hello bob"
    ]
    gone = phone.client.call("message.delete", ids=[hello["message_id"], "00" * 16])
    assert gone["deleted"] == [hello["message_id"]] and gone["unknown"] == ["00" * 16]
    assert "hello bob" not in texts(phone, "alice")
    wait_for(lambda: "hello bob" not in texts(laptop, "alice"), 20, "the delete synced")
    (binned,) = laptop.client.call("message.trash")["trash"]
    assert binned["message_id"] == hello["message_id"] and binned["text"] == "hello bob"
    assert binned["purge_ms"] - binned["deleted_ms"] == 30 * 24 * 3600 * 1000
    laptop.client.call("message.restore", ids=[hello["message_id"]])
    wait_for(lambda: "hello bob" in texts(phone, "alice"), 20, "the restore synced")
    assert phone.client.call("message.trash")["trash"] == []

    # Verified on the laptop: shown on the phone, with who verified it.
    assert not contacts(phone)["alice"]["verified"]
    laptop.client.call("contact.verify", contact="alice", confirm=True)
    mark = wait_for(lambda: contacts(phone)["alice"].get("verified_by"), 20, "the mark synced")
    assert mark == {"device": "laptop", "status": "active"}
    assert contacts(phone)["alice"]["verified"]

    # A device linked later gets the state in a snapshot.
    (tablet,) = start_nodes(demo, ["tablet"])
    demo.connect(tablet, phone)
    link_devices(demo, phone, tablet, "tablet")
    doc = wait_for(lambda: contacts(tablet).get("alice"), 30, "the snapshot on the tablet")
    assert doc["verified"] and doc["verified_by"]["device"] == "laptop"

    # The laptop is revoked: its mark shows as made by a revoked device (it
    # was made before the revocation, so it stays), and it gets nothing more.
    phone.client.call("device.revoke", device="laptop")
    demo.wait_converged(demo.nodes)
    wait_for(
        lambda: contacts(phone)["alice"]["verified_by"]["status"] == "revoked", 20, "revoked mark"
    )
    assert laptop.client.call("node.status")["device_status"] == "revoked"
    phone.client.call("contact.block", contact="alice")
    wait_for(lambda: contacts(tablet)["alice"]["blocked"], 20, "the block on the tablet")
    assert not contacts(laptop)["alice"]["blocked"]


def test_blocked_on_one_device_is_blocked_on_all(demo: Demo) -> None:
    (_, phone, laptop), alice, _ = alice_and_bob(demo, ["alice", "phone", "laptop"], bob_on=1)
    link_devices(demo, phone, laptop, "laptop")
    phone.client.call("contact.add", ref=alice["account_id"], name="alice")
    wait_for(lambda: "alice" in contacts(laptop), 20)
    laptop.client.call("contact.block", contact="alice")
    assert contacts(laptop)["alice"]["blocked"]
    wait_for(lambda: contacts(phone)["alice"]["blocked"], 20, "the block on the phone")
    assert contacts(phone)["alice"]["blocked"] and contacts(laptop)["alice"]["blocked"]
    laptop.client.call("contact.block", contact="alice", unblock=True)
    wait_for(lambda: not contacts(phone)["alice"]["blocked"], 20, "the unblock on the phone")
    assert not contacts(phone)["alice"]["blocked"] and not contacts(laptop)["alice"]["blocked"]
    laptop.client.call("contact.remove", contact="alice")
    wait_for(lambda: "alice" not in contacts(phone), 20, "the removal on the phone")
    assert "alice" not in contacts(phone) and "alice" not in contacts(laptop)
