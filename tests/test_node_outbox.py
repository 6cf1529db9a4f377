"""The outbox ends (PROTOCOL.md §15.14 "The node's outbox"): every delivery
row is delivered, failed or expired within its kind's lifetime and
attempts; receipts give up sooner than texts; the delivery loop's queries
read the due index and never scan finished rows."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from node.cli import _message_line
from node.services.outbox_policy import next_delivery
from node.storage.messages import (
    DAY_MS,
    DUE_SQL,
    MACHINE_POLICY,
    NEXT_DUE_SQL,
    TEXT_POLICY,
    DeliveryState,
    DueDelivery,
)

from .conftest import History
from .messaging_support import Node, Peer


@pytest.fixture
def node(tmp_path: Path) -> Node:
    alice, bob = History(name="alice"), History(name="bob")
    n = Node(tmp_path, alice, [bob])
    n.bob = bob  # type: ignore[attr-defined]
    n.contacts.add(bob.account, "bob")
    n.service.now_ms = lambda: n.clock_ms
    return n


def states(node: Node, kind: int) -> list[str]:
    rows = node.query(
        "SELECT d.state FROM deliveries d JOIN messages m ON m.id = d.message WHERE m.kind=?",
        (kind,),
    )
    return [str(r[0]) for r in rows]


def _reads_only_the_due_index(conn: sqlite3.Connection, sql: str, args: tuple[int, ...]) -> bool:
    """Every step of the plan is a search, or an in-order walk of
    ``deliveries_due`` (active rows only, stopped by the LIMIT); no sort."""
    plan = [str(r[-1]) for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args)]
    return (
        any("deliveries_due" in step for step in plan)
        and all("USING INDEX deliveries_due" in step for step in plan if step.startswith("SCAN"))
        and not any("TEMP B-TREE" in step for step in plan)
    )


def test_the_delivery_loop_reads_the_due_index(node: Node) -> None:
    """EXPLAIN QUERY PLAN: both queries of the delivery loop read
    ``deliveries_due`` (only rows still being tried, in due order), never a
    scan of the outbox or of the messages."""
    for i in range(50):
        node.service._seal_and_queue(node.bob.account, _text(i), 1, "x")  # type: ignore[attr-defined]
    node.query("UPDATE deliveries SET state='delivered' WHERE rowid % 2 = 0")
    queries = ((DUE_SQL, (node.clock_ms, 64)), (NEXT_DUE_SQL, (33,)))
    for sql, args in queries:
        assert _reads_only_the_due_index(node.db.conn, sql, args)
    # Without the index (the migration's), the same check fails: it is the
    # index that keeps finished rows out of the loop's work.
    node.close()
    bare = sqlite3.connect(str(node.path / "events.sqlite"))
    bare.execute("DROP INDEX deliveries_due")
    for sql, args in queries:
        assert not _reads_only_the_due_index(bare, sql, args)
    bare.close()


def _text(i: int) -> Any:
    from protocol.messaging.content import Text

    return Text(f"message {i}")


async def test_texts_expire_after_their_lifetime_visibly(node: Node) -> None:
    sent = await node.service.send({"contact": "bob", "text": "are you there?"})
    mid = sent["message_id"]
    assert (await node.service.status({"ids": [mid]}))["deliveries"][mid] == {"pending": 1}
    node.clock_ms += TEXT_POLICY.lifetime_ms - 1
    assert node.service.due_now(set())  # still worth trying
    node.clock_ms += 1
    assert node.service.due_now(set()) == []  # due at its expiry: ended, untried
    assert (await node.service.status({"ids": [mid]}))["deliveries"][mid] == {"expired": 1}
    (doc,) = (await node.service.conversation({"contact": "bob"}))["messages"]
    assert doc["deliveries"] == {"expired": 1}
    assert _message_line(doc).endswith("are you there?  [1 expired]")  # smu conversation
    assert node.service.store.next_due_ms() is None  # nothing left to wake for


async def test_receipts_expire_sooner_than_texts(node: Node) -> None:
    bob = node.bob  # type: ignore[attr-defined]
    await node.service.send({"contact": "bob", "text": "mine"})
    node.service.receive(Peer(bob, node.me).seal("yours").raw)  # owes a receipt
    node.service.flush_receipts()  # the batching window passes
    assert states(node, 1) == ["pending"] and states(node, 2) == ["pending"]
    node.clock_ms += MACHINE_POLICY.lifetime_ms
    due = node.service.due_now(set())
    assert [d.kind for d in due] == [1]  # the text is still tried
    assert states(node, 2) == ["expired"] and states(node, 1) == ["pending"]
    # a day later, finished receipts are deleted (bounded disk); texts stay
    node.clock_ms += MACHINE_POLICY.lifetime_ms + 1
    node.service.housekeeping()
    assert node.query("SELECT COUNT(*) FROM messages WHERE kind=2") == [(0,)]
    assert states(node, 2) == [] and states(node, 1) == ["pending"]


def _due(kind: int, attempts: int = 0, expires: int = 10 * DAY_MS) -> DueDelivery:
    return DueDelivery(b"m" * 16, b"d" * 32, b"a" * 32, attempts, expires, kind, b"")


def test_next_delivery_never_outlives_the_row() -> None:
    now = 10 * DAY_MS - 1000
    # back-off, clamped to the expiry: the loop finds the row exactly then
    assert next_delivery(_due(1, attempts=20), "unreachable: x", now) == (
        DeliveryState.PENDING,
        10 * DAY_MS,
    )
    assert next_delivery(_due(1), "requests_full: later", 0) == (DeliveryState.PENDING, 1000)
    assert next_delivery(_due(1), None, 0) == (DeliveryState.DELIVERED, 0)
    assert next_delivery(_due(1), "decrypt: no", 0) == (DeliveryState.FAILED, 0)
    # a deposited text is tried again directly; a deposited receipt is done
    assert next_delivery(_due(1), "deposited", 0) == (DeliveryState.DEPOSITED, 300_000)
    assert next_delivery(_due(2), "deposited", 0) == (DeliveryState.DEPOSITED, 10 * DAY_MS)
    # the attempt cap holds whatever the clock says
    last = MACHINE_POLICY.max_attempts - 1
    assert next_delivery(_due(2, attempts=last), "unreachable: x", 0)[0] is DeliveryState.EXPIRED
    assert next_delivery(_due(1, attempts=last), "unreachable: x", 0)[0] is DeliveryState.PENDING


async def test_an_unreachable_receipt_ends_within_its_attempts(node: Node) -> None:
    """Drive the loop against a device that never answers: the receipt row
    ends as ``expired`` after at most its lifetime and attempts, instead of
    retrying for ever (the 2,400 rows of the stranger flood)."""
    node.service.receive(Peer(node.bob, node.me).seal("hi").raw)  # type: ignore[attr-defined]
    node.service.flush_receipts()
    start = node.clock_ms
    tries = 0
    for _ in range(2 * MACHINE_POLICY.max_attempts):  # bounded, should the row never end
        next_ms = node.service.store.next_due_ms()
        if next_ms is None:
            break
        node.clock_ms = max(node.clock_ms, next_ms)
        for due in node.service.due_now(set()):
            await node.service._deliver_one(due)  # no record: unreachable
            tries += 1
    assert states(node, 2) == ["expired"]
    assert tries <= MACHINE_POLICY.max_attempts
    assert node.clock_ms - start <= MACHINE_POLICY.lifetime_ms
