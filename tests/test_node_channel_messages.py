"""Messages and receipts on the per-link channel between real nodes
(PROTOCOL.md §15.14.1; DESIGN §10): no ``/smu/message/1`` stream between
linked peers, and exactly once on screen across a channel lost mid-batch
and a second copy sent on purpose."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from node.netdemo import Demo, DemoNode

from .process import delivered, start_nodes, texts, wait_for

pytestmark = pytest.mark.process

MESSAGE_STREAMS = "/smu/message/1"


def linked_contacts(demo: Demo) -> tuple[DemoNode, DemoNode]:
    """alice and bob on two linked nodes with a channel, contacts both ways."""
    a, b = start_nodes(demo, ["alice", "bob"])
    demo.connect(a, b)
    for x, y in ((a, b), (b, a)):
        wait_for(
            lambda x=x, y=y: x.status()["channels"]["open"] == [y.peer_id],
            what=f"{x.name}'s channel with {y.name}",
        )
    alice = a.client.call("account.create", name="alice")
    bob = b.client.call("account.create", name="bob")
    demo.wait_converged(demo.nodes)
    a.client.call("contact.add", ref=bob["account_id"], name="bob")
    b.client.call("contact.add", ref=alice["account_id"], name="alice")
    return a, b


def channel_counts(node: DemoNode) -> dict[str, int]:
    counts: dict[str, int] = node.status()["channels"]["deliveries"]
    return counts


def message_streams(node: DemoNode) -> int:
    admitted: dict[str, int] = node.status()["gate"]["admitted"]
    return admitted.get(MESSAGE_STREAMS, 0)


def all_delivered(node: DemoNode, ids: list[str], devices: int = 1) -> bool:
    got: dict[str, Any] = node.client.call("message.status", ids=ids)["deliveries"]
    return all(got[m].get("delivered", 0) == devices for m in ids)


def test_messages_and_receipts_travel_on_the_channel_not_on_streams(demo: Demo) -> None:
    a, b = linked_contacts(demo)
    to_bob = [a.client.call("message.send", contact="bob", text=f"hi {i}") for i in range(20)]
    to_alice = [b.client.call("message.send", contact="alice", text=f"yo {i}") for i in range(5)]
    every = sorted([f"hi {i}" for i in range(20)] + [f"yo {i}" for i in range(5)])
    wait_for(lambda: sorted(texts(b, "alice")) == every)
    wait_for(lambda: sorted(texts(a, "bob")) == every)
    # the senders learn their answers on the channel: stored, so delivered
    wait_for(lambda: all_delivered(a, [m["message_id"] for m in to_bob]))
    wait_for(lambda: all_delivered(b, [m["message_id"] for m in to_alice]))
    # and each recipient's receipts reach the other side on the channel too
    wait_for(lambda: channel_counts(a)["received"] >= 5 + 1 and channel_counts(b)["sent"] >= 5 + 1)
    wait_for(lambda: channel_counts(b)["received"] >= 20 + 1)
    for node in (a, b):
        assert message_streams(node) == 0, node.status()["gate"]
        counts = channel_counts(node)
        assert counts["answered"] == counts["sent"] and counts["lost"] == 0
        assert counts["unmatched_answers"] == counts["bad_answers"] == 0


def test_exactly_once_on_screen_across_a_channel_lost_mid_batch(demo: Demo) -> None:
    """The link (so the channel) ends while alice's burst is on its way:
    what was not answered stays owed in her outbox (tried on a stream, then
    left at a mailbox) and goes again once the link is back; bob shows every
    text once.  Then one delivery that bob answered is made owed again by
    hand: it goes on the channel, bob answers ``replay`` (which the outbox
    counts as delivered), and it is on screen once."""
    a, b = linked_contacts(demo)
    sent = [
        a.client.call("message.send", contact="bob", text=f"m{i}")["message_id"] for i in range(30)
    ]
    demo.partition([a], [b])  # the link and its channel end mid-batch
    sent += [
        a.client.call("message.send", contact="bob", text=f"m{i}")["message_id"]
        for i in range(30, 45)
    ]
    wait_for(lambda: a.status()["channels"]["open"] == [], what="alice: channel gone")
    assert not all_delivered(a, sent)  # the second half could not go
    demo.heal([a], [b])
    # each text reaches bob once: directly, or through the mailbox it was
    # left at while the link was down (§15.14), then answered or receipted
    want = sorted(f"m{i}" for i in range(45))
    wait_for(lambda: sorted(texts(b, "alice")) == want, timeout=90, what="all 45 texts, once")
    assert b.client.call("message.requests")["requests"] == []

    # A second copy, on purpose: the first text's row is owed again.
    first = bytes.fromhex(sent[0])
    db = sqlite3.connect(a.dir / "events.sqlite", timeout=10)
    with db:
        db.execute("UPDATE deliveries SET state='pending', next_try_ms=0 WHERE message=?", (first,))
    db.close()
    wait_for(lambda: a.status()["channels"]["open"] == [b.peer_id], what="channel back")
    before, streams = channel_counts(b)["received"], message_streams(b)
    wake = a.client.call("message.send", contact="bob", text="wake the outbox")["message_id"]
    wait_for(
        lambda: all_delivered(a, [sent[0], wake]) and channel_counts(b)["received"] >= before + 2
    )
    wait_for(lambda: "wake the outbox" in texts(b, "alice"))
    assert len(texts(b, "alice")) == 46 and texts(b, "alice").count("m0") == 1
    assert delivered(a, sent[0]) == {"delivered": 1}
    assert message_streams(b) == streams  # both went on the channel
