"""Messaging between real nodes over loopback (issue: Messaging, Tests)."""

from __future__ import annotations

import time

import pytest

from node.errors import RpcError
from node.netdemo import Demo, link_devices

from .process import alice_and_bob, delivered, start_nodes, texts, wait_for

pytestmark = pytest.mark.process


def test_conversation_across_devices_history_and_revocation(demo: Demo) -> None:
    a1, a2, b1, b2, b3 = start_nodes(demo, ["alice1", "alice2", "bob1", "bob2", "bob3"])
    for x, y in ((a1, a2), (a2, b1), (b1, b2), (b2, b3)):
        demo.connect(x, y)
    alice = a1.client.call("account.create", name="alice")
    b1.client.call("account.create", name="bob")
    link_devices(demo, a1, a2, "alice2")
    link_devices(demo, b1, b2, "bob2")
    demo.wait_converged(demo.nodes)

    inv = b1.client.call("invite.create")
    a1.client.call("contact.add", ref=inv["invite"], name="bob")
    b1.client.call("contact.add", ref=alice["account_id"], name="alice")
    b2.client.call("contact.add", ref=alice["account_id"], name="alice")
    a2.client.call("contact.add", ref=inv["invite"], name="bob")
    number = a1.client.call("contact.verify", contact="bob", confirm=True)["safety_number"]
    assert number == b1.client.call("contact.verify", contact="alice")["safety_number"]

    sent = a1.client.call("message.send", contact="bob", text="hello bob")
    assert sent["devices"] == 3  # bob1, bob2 and alice's other device
    for node in (b1, b2):
        wait_for(lambda n=node: texts(n, "alice") == ["hello bob"])
    wait_for(lambda: texts(a2, "bob") == ["hello bob"])
    wait_for(lambda: delivered(a1, sent["message_id"]).get("delivered") == 3)

    reply = b2.client.call("message.send", contact="alice", text="hi alice")
    for node in (a1, a2, b1):
        wait_for(
            lambda n=node: "hi alice" in texts(n, "alice" if n.name.startswith("bob") else "bob")
        )
    inbox = a1.client.call("message.inbox")["messages"]
    assert [m["text"] for m in inbox] == ["hi alice"] and inbox[0]["from_device"] == "bob2"
    # The recipients store it before the sender records their answers.
    wait_for(lambda: delivered(b2, reply["message_id"]).get("delivered") == 3)

    # A newly linked device gets the earlier history from its approver.
    link_devices(demo, b1, b3, "bob3")
    b3.client.call("contact.add", ref=alice["account_id"], name="alice")
    wait_for(lambda: texts(b3, "alice") == ["hello bob", "hi alice"])

    # After bob revokes bob2, the next message is not wrapped for it.
    b1.client.call("device.revoke", device="bob2")
    demo.wait_converged(demo.nodes)
    after = a1.client.call("message.send", contact="bob", text="bob2 must not read this")
    assert after["devices"] == 3  # bob1, bob3, alice2
    wait_for(lambda: "bob2 must not read this" in texts(b3, "alice"))
    wait_for(lambda: delivered(a1, after["message_id"]).get("delivered") == 3)
    assert "bob2 must not read this" not in texts(b2, "alice")


def test_disputed_recipient_needs_force_and_strangers_wait_in_requests(demo: Demo) -> None:
    (a, b, c), alice, bob = alice_and_bob(demo, ["alice", "bob", "bob-laptop"], bob_on=1)

    # bob is not alice's contact: his message waits in alice's requests.
    b.client.call("contact.add", ref=alice["account_id"], name="alice")
    b.client.call("message.send", contact="alice", text="it's bob")
    wait_for(lambda: a.client.call("message.requests")["requests"])
    assert a.client.call("message.inbox")["messages"] == []
    a.client.call("requests.accept", account=bob["account_id"])
    assert [m["text"] for m in a.client.call("message.inbox")["messages"]] == ["it's bob"]

    # bob's account becomes disputed: sending needs --force.
    link_devices(demo, b, c, "laptop")
    demo.partition([b], [a, c])
    b.client.call("device.revoke", device="laptop")
    c.client.call("device.revoke", device="bob", confirm_last=True)
    demo.heal([b], [a, c])
    demo.wait_converged(demo.nodes)
    with pytest.raises(RpcError, match="force"):
        a.client.call("message.send", contact=bob["account_id"], text="are you ok?")


def test_mailbox_carries_a_message_when_sender_and_recipient_are_never_online_together(
    demo: Demo,
) -> None:
    (a, m, b), alice, bob = alice_and_bob(demo, ["alice", "mailbox", "bob"], bob_on=2)
    a.client.call("contact.add", ref=bob["account_id"], name="bob")
    b.client.call("contact.add", ref=alice["account_id"], name="alice")
    # bob's device names the mailbox node in its signed record (and maybe
    # alice's node, which peer exchange linked it to: a sender tries its
    # own node last), and alice learns it.
    wait_for(
        lambda: any(
            m.peer_id in r["mailboxes"]
            for r in a.client.call("device.records", account=bob["account_id"])["records"]
        ),
        timeout=60,
    )

    b.stop()
    sent = a.client.call("message.send", contact="bob", text="left at the mailbox")
    wait_for(lambda: delivered(a, sent["message_id"]).get("deposited") == 1)
    a.stop()  # the sender is gone before the recipient comes back

    b.start_existing()  # no bootstrap, no links: its saved grants lead it to m
    b.wait_ready()
    assert (b.dir / "mailboxes.json").stat().st_mode & 0o777 == 0o600
    wait_for(lambda: texts(b, "alice") == ["left at the mailbox"], timeout=60)
    inbox = b.client.call("message.inbox")["messages"]
    assert [x["text"] for x in inbox] == ["left at the mailbox"]
    assert inbox[0]["from"] == "alice"


def test_a_message_from_a_newer_view_is_noticed_and_fetched(demo: Demo) -> None:
    """S5: the envelope carries the sender's view of the heads; a receiver
    that lacks them says so and reconciles at once.  Alice's node is offline
    while bob renames himself and writes to her; it comes back with no links
    (a refusal would not do: it covers every protocol), fetches the message
    from its mailbox, notices the newer view, and fetches the change as soon
    as it has a peer."""
    from protocol.core.params import TESTNET
    from protocol.log import authoring

    (a, c, b), alice, bob = alice_and_bob(demo, ["alice", "relay", "bob"], bob_on=2)
    a.client.call("contact.add", ref=bob["account_id"], name="bob")
    b.client.call("contact.add", ref=alice["account_id"], name="alice")
    wait_for(lambda: b.client.call("device.records", account=alice["account_id"])["records"])
    wait_for(
        lambda: all(
            r["mailboxes"]
            for r in b.client.call("device.records", account=alice["account_id"])["records"]
        ),
        what="alice's record names her mailboxes",
    )
    a.stop()
    account = bytes.fromhex(bob["account_id"])
    heads = [bytes.fromhex(h) for h in b.client.call("account.show")["heads"]]
    change = authoring.profile(
        TESTNET, account, heads, b.device(), display_name="bobby", timestamp=int(time.time() * 1000)
    )
    b.submit(change)
    sent = b.client.call("message.send", contact="alice", text="I renamed myself")
    wait_for(lambda: delivered(b, sent["message_id"]).get("deposited") == 1, what="a deposit")

    a.start_existing()  # no bootstrap: its saved grants lead it to its mailboxes
    a.wait_ready()
    wait_for(lambda: texts(a, "bob") == ["I renamed myself"], timeout=60)
    assert not a.client.call("event.has", ids=[change.id.hex()])["present"]
    notices = a.client.call("message.inbox")["notices"]
    assert notices and "had not given you yet" in notices[0]["text"]

    demo.connect(a, c)
    wait_for(lambda: a.client.call("event.has", ids=[change.id.hex()])["present"])
