"""Deposits and prekey fetches at a mailbox come from an identity per
mailbox, between real nodes (PROTOCOL.md §15.13.1; DESIGN §10): not the
sender's node peer id and not named in any record the mailbox holds, the
same at one mailbox and different at another; the message is still
delivered and receipted."""

from __future__ import annotations

import pytest

from node.netdemo import Demo, DemoNode
from node.services.prekey_client import node_key
from protocol.core.params import TESTNET

from .process import NotingLabNode, delivered, start_nodes, texts, wait_for
from .test_node_prekey_fetch import _query, _shelf_devices, _shelf_served, _wipe_sessions

pytestmark = pytest.mark.process


class _NoMailbox(DemoNode):
    """A node that grants nobody (``mailbox = false``, §13.3): alice's and
    bob's devices then hold grants at the two mailbox nodes only."""

    def start(self, bootstrap: list[str] | None = None) -> None:
        self.smu("init", "--network", TESTNET.network_id, "--name", self.name)
        (self.dir / "node.toml").write_text("mailbox = false\n")
        self.start_existing(bootstrap)


def test_a_mailbox_sees_its_own_identity_for_a_sender(demo: Demo) -> None:
    m1, m2 = start_nodes(demo, ["mailbox1", "mailbox2"], kind=NotingLabNode)
    assert isinstance(m1, NotingLabNode) and isinstance(m2, NotingLabNode)
    a, b = start_nodes(demo, ["alice", "bob"], kind=_NoMailbox)
    for m in (m1, m2):
        demo.connect(a, m)
        demo.connect(m, b)
    alice = a.client.call("account.create", name="alice")
    bob = b.client.call("account.create", name="bob")
    demo.wait_converged(demo.nodes)
    a.client.call("contact.add", ref=bob["account_id"], name="bob")
    b.client.call("contact.add", ref=alice["account_id"], name="alice")

    # bob's record names both mailboxes; both hold a batch of his (and
    # alice's) one-time prekeys; alice holds his tokens for both
    def bob_names_both() -> bool:
        records = a.client.call("device.records", account=bob["account_id"])["records"]
        return any({m1.peer_id, m2.peer_id} <= set(r["mailboxes"]) for r in records)

    wait_for(bob_names_both, timeout=90)
    held = "SELECT COUNT(*) FROM tokens_held WHERE mailbox_key=?"
    for m in (m1, m2):
        wait_for(lambda m=m: _shelf_devices(m.dir) == 2, timeout=90)
        wait_for(lambda m=m: _query(a.dir, held, (node_key(m.peer_id),))[0][0], timeout=60)

    # bob is away; alice, without sessions, writes: a prekey fetch and a
    # deposit at the first mailbox bob's record names
    b.stop()
    a.stop()
    _wipe_sessions(a.dir)
    a.start_existing([m1.addr, m2.addr])
    a.wait_ready()
    wait_for(bob_names_both, timeout=60)
    one = a.client.call("message.send", contact="bob", text="one")["message_id"]
    wait_for(lambda: delivered(a, one).get("deposited") == 1, timeout=60)
    first, other = (m1, m2) if m1.noted("mailbox") else (m2, m1)
    assert len(_shelf_served(first.dir)) == 1  # the key alice's set-up used came from there
    ((fetcher, fetcher_named),) = first.noted("prekey")
    ((depositor, depositor_named),) = first.noted("mailbox")
    # one identity at this mailbox, for the fetch and the deposit: not
    # alice's node, and no record the mailbox holds names it
    assert fetcher == depositor
    assert depositor not in (a.peer_id, b.peer_id, m1.peer_id, m2.peer_id)
    assert not fetcher_named and not depositor_named

    # the first mailbox goes away: the next text is deposited at the other,
    # under another identity
    first.stop()
    two = a.client.call("message.send", contact="bob", text="two")["message_id"]
    wait_for(lambda: delivered(a, two).get("deposited") == 1, timeout=60)
    ((at_other, other_named),) = other.noted("mailbox")
    assert at_other not in (depositor, a.peer_id, b.peer_id) and not other_named

    # back (at a new port): the first mailbox sees the same identity again
    first.start_existing()
    first.wait_ready()
    demo.connect(a, first)
    three = a.client.call("message.send", contact="bob", text="three")["message_id"]
    wait_for(lambda: delivered(a, three).get("deposited") == 1, timeout=60)
    assert [peer for peer, _ in first.noted("mailbox")] == [depositor, depositor]

    # bob comes back, fetches from both mailboxes, reads all three, and his
    # receipts reach alice
    b.start_existing([m1.addr, m2.addr])
    b.wait_ready()
    wait_for(lambda: sorted(texts(b, "alice")) == ["one", "three", "two"], timeout=120)
    for mid in (one, two, three):
        wait_for(lambda mid=mid: delivered(a, mid).get("delivered") == 1, timeout=60)
