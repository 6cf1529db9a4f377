"""Message requests on a node (PROTOCOL.md §15.14 "Message requests"):
capped per sender and in total, refused with ``requests_full`` before
anything is written, expiring, and never answered with a receipt until the
user accepts them.  Every decision asks the contact set."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.services.requests import RequestLimits
from node.storage.messages import DAY_MS
from protocol.messaging.content import Receipt, ReceiptStatus, ReplayGuard
from protocol.messaging.envelope import RequestsFullError, ledger_lookup, open_envelope, peek

from .conftest import FAST, History
from .messaging_support import Node, Peer

BIG = "x" * (60 * 1024)


def receipts_to(node: Node, account: bytes) -> list[bytes]:
    """Envelopes of the receipts this node queued for ``account`` (once
    the batching window has passed)."""
    node.service.flush_receipts()
    rows = node.query(
        "SELECT envelope FROM messages WHERE outgoing=1 AND kind=2 AND peer=?", (account,)
    )
    return [bytes(r[0]) for r in rows]


def stored_requests(node: Node) -> int:
    (n,) = node.query("SELECT COUNT(*) FROM messages WHERE request=1")[0]
    return int(n)


@pytest.fixture
def world(tmp_path: Path) -> tuple[Node, History, History, list[History]]:
    alice, bob = History(name="alice"), History(name="bob")
    strangers = [History(name=f"stranger{i}") for i in range(4)]
    return _node(tmp_path, alice, bob, strangers, RequestLimits())


def _node(
    path: Path, alice: History, bob: History, strangers: list[History], limits: RequestLimits
) -> tuple[Node, History, History, list[History]]:
    node = Node(path, alice, [bob, *strangers], request_limits=limits)
    node.contacts.add(bob.account, "bob")
    return node, alice, bob, strangers


def test_a_stranger_is_capped_by_count_and_by_bytes(
    world: tuple[Node, History, History, list[History]],
) -> None:
    node, alice, _, (s0, s1, *_) = world
    by_count = Peer(s0, alice)
    for i in range(10):
        node.service.receive(by_count.seal(f"hello {i}").raw)
    over = by_count.seal("one too many")
    with pytest.raises(RequestsFullError) as refused:
        node.service.receive(over.raw)
    assert refused.value.code == "requests_full"
    by_bytes = Peer(s1, alice)
    for _ in range(4):  # 4 x 60 KiB fit in 256 KiB; a fifth does not
        node.service.receive(by_bytes.seal(BIG).raw)
    with pytest.raises(RequestsFullError):
        node.service.receive(by_bytes.seal(BIG).raw)
    assert stored_requests(node) == 14
    # A refusal writes nothing, its replay counter included: once the user
    # accepts, the sender's retry of the very same envelope is stored.
    node.contacts.add(s0.account, "s0")
    node.service.receive(over.raw)
    assert node.query("SELECT COUNT(*) FROM messages WHERE kind=1 AND peer=?", (s0.account,)) == [
        (11,)
    ]


async def test_the_total_is_capped_while_contacts_still_get_through(
    world: tuple[Node, History, History, list[History]], tmp_path: Path
) -> None:
    _, alice, bob, strangers = world
    (tmp_path / "small").mkdir()
    node, *_ = _node(tmp_path / "small", alice, bob, strangers, RequestLimits(total_count=12))
    peers = [Peer(s, alice) for s in strangers]
    for p in peers[:2]:
        for i in range(6):
            node.service.receive(p.seal(f"spam {i}").raw)
    assert stored_requests(node) == 12
    with pytest.raises(RequestsFullError):
        node.service.receive(peers[2].seal("a new stranger waits").raw)
    node.service.receive(Peer(bob, alice).seal("a contact never waits").raw)
    inbox = await node.service.inbox({})
    assert [m["text"] for m in inbox["messages"]] == ["a contact never waits"]
    assert inbox["requests"] == 2
    assert stored_requests(node) == 12


def test_the_total_is_capped_by_bytes(tmp_path: Path) -> None:
    alice = History(name="alice")
    strangers = [History(name=f"s{i}") for i in range(3)]
    node = Node(tmp_path, alice, strangers, request_limits=RequestLimits(total_bytes=280 * 1024))
    for s in strangers[:1]:
        p = Peer(s, alice)
        for _ in range(4):
            node.service.receive(p.seal(BIG).raw)
    with pytest.raises(RequestsFullError):
        node.service.receive(Peer(strangers[1], alice).seal(BIG).raw)  # 5 x 60 KiB > 280 KiB
    node.service.receive(Peer(strangers[2], alice).seal("short").raw)
    assert stored_requests(node) == 5


async def test_no_receipt_goes_to_a_stranger_until_the_request_is_accepted(
    world: tuple[Node, History, History, list[History]],
) -> None:
    node, alice, bob, (s0, *_) = world
    node.service.receive(Peer(bob, alice).seal("from a contact").raw)
    assert len(receipts_to(node, bob.account)) == 1  # contacts get one
    stranger = Peer(s0, alice)
    ids = []
    for i in range(3):
        env = stranger.seal(f"who am I {i}")
        node.service.receive(env.raw)
        ids.append(env.message_id)
    assert receipts_to(node, s0.account) == []
    assert node.query("SELECT COUNT(*) FROM deliveries WHERE account=?", (s0.account,)) == [(0,)]

    await node.service.accept_request({"account": s0.account.hex()})
    (receipt,) = receipts_to(node, s0.account)
    # The receipt, as s0 opens it, names every waiting message, once.
    opened = open_envelope(
        FAST, receipt, s0.account, s0.keys["d0"], ledger_lookup(node.ledger), ReplayGuard()
    )
    assert opened.content == Receipt(ReceiptStatus.DELIVERED, tuple(sorted(ids)))
    assert node.query("SELECT COUNT(*) FROM deliveries WHERE account=?", (s0.account,)) == [(1,)]
    assert stored_requests(node) == 0
    assert len((await node.service.inbox({}))["messages"]) == 4
    # From now on s0 is a contact: its next message earns a receipt at once.
    node.service.receive(stranger.seal("thanks").raw)
    assert len(receipts_to(node, s0.account)) == 2


async def test_requests_expire_unaccepted(
    world: tuple[Node, History, History, list[History]],
) -> None:
    node, alice, _, (s0, *_) = world
    stranger = Peer(s0, alice)
    for i in range(10):
        node.service.receive(stranger.seal(f"old {i}").raw)
    with pytest.raises(RequestsFullError):
        node.service.receive(stranger.seal("full").raw)
    later = node.service.now_ms() + 14 * DAY_MS + 1
    node.service.now_ms = lambda: later
    assert (await node.service.requests({}))["requests"] == []  # expired: never shown
    assert (await node.service.inbox({}))["requests"] == 0
    node.service.receive(stranger.seal("new").raw)  # expired ones no longer count
    node.service.housekeeping()
    assert [m.text for m in node.service.store.requests(0)] == ["new"]


async def test_a_blocked_sender_is_stored_nowhere_and_gets_no_receipt(
    world: tuple[Node, History, History, list[History]],
) -> None:
    node, alice, _, (s0, *_) = world
    stranger = Peer(s0, alice)
    node.service.receive(stranger.seal("first").raw)
    await node.service.block_request({"account": s0.account.hex()})
    node.service.receive(stranger.seal("after the block").raw)
    assert node.query("SELECT COUNT(*) FROM messages WHERE peer=?", (s0.account,)) == [(0,)]
    assert receipts_to(node, s0.account) == []


def test_every_decision_asks_the_contact_set(
    world: tuple[Node, History, History, list[History]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether a text is a request and whether it earns a receipt come from
    ``ContactSet`` alone: make it call bob a stranger, and bob's text is a
    request with no receipt, whatever the contacts table says."""
    node, alice, bob, _ = world
    monkeypatch.setattr(node.contacts, "is_contact", lambda account: False)
    node.service.receive(Peer(bob, alice).seal("am I a stranger now?").raw)
    assert stored_requests(node) == 1
    assert receipts_to(node, bob.account) == []


async def test_receipts_are_batched_per_sending_device_and_wrapped_for_it_alone(
    tmp_path: Path,
) -> None:
    alice, bob = History(name="alice"), History(name="bob")
    bob.add("a1", "d0", "d1", ["g"])  # bob has two devices
    node = Node(tmp_path, alice, [bob])
    node.contacts.add(bob.account, "bob")
    from_d0, from_d1 = Peer(bob, alice, "d0"), Peer(bob, alice, "d1")
    sent = [from_d0.seal(f"burst {i}") for i in range(5)] + [from_d1.seal("from the laptop")]
    for env in sent:
        node.service.receive(env.raw)
    assert node.query("SELECT COUNT(*) FROM messages WHERE kind=2") == [(0,)]  # in the window
    receipts = receipts_to(node, bob.account)
    assert len(receipts) == 2  # one per sending device, not one per message
    for device, ids in (("d0", sent[:5]), ("d1", sent[5:])):
        opened = [
            open_envelope(
                FAST, r, bob.account, bob.keys[device], ledger_lookup(node.ledger), ReplayGuard()
            )
            for r in receipts
            if bob.keys[device].sign_public in peek(r, FAST).devices
        ]
        (only,) = opened
        assert only.content == Receipt(
            ReceiptStatus.DELIVERED, tuple(sorted(e.message_id for e in ids))
        )
    # each envelope is wrapped for its sending device only
    assert sorted(len(peek(r, FAST).devices) for r in receipts) == [1, 1]
