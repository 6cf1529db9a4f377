"""A stranger flood against a real node (issue: Survive a hostile network;
PROTOCOL.md §15.14 "Message requests").

Strangers made in the test process (accounts the node holds, envelopes
sealed here, delivered over ``/smu/message/1`` from a bare libp2p host)
send 60 KiB texts: each is capped at 256 KiB of requests, all of them
together at 8 MiB, the rest refused with ``requests_full``; none gets a
receipt; a contact's message gets through meanwhile; and a real stranger's
node gets its receipt once the user accepts its request.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import info_from_p2p_addr

from node.netdemo import Demo, DemoNode
from node.services.requests import RequestLimits
from node.transport import frame, make_host, parse_multiaddr, read_frame
from protocol.core.keys import DeviceKeys, RecoveryKey
from protocol.core.params import TESTNET
from protocol.log import authoring
from protocol.log.ledger import Ledger
from protocol.messaging.content import Text
from protocol.messaging.envelope import (
    MESSAGE_PROTOCOL_ID,
    decode_delivery_answer,
    delivery_frame,
    seal,
)

from .process import alice_and_bob, delivered, texts, wait_for

pytestmark = pytest.mark.process

TEXT = "x" * (60 * 1024)
LIMITS = RequestLimits()  # the node's defaults: what this test floods against


class Stranger:
    """An account of its own, made here: one genesis, one device."""

    def __init__(self, i: int) -> None:
        seed = hashlib.blake2b(b"flood stranger %d" % i).digest()
        self.keys = DeviceKeys.from_random(seed)
        recovery = RecoveryKey(hashlib.blake2b(seed, digest_size=32).digest())
        self.genesis = authoring.genesis(
            TESTNET,
            self.keys,
            recovery,
            display_name=f"stranger{i}",
            device_name="d0",
            timestamp=int(time.time() * 1000),
        )
        self.account = self.genesis.id
        self.counter = 0

    def text(self, ledger: Ledger, to: bytes) -> bytes:
        self.counter += 1
        return seal(
            TESTNET,
            self.keys,
            ledger.state(self.account),
            ledger.state(to),
            Text(TEXT),
            counter=self.counter,
            timestamp=int(time.time() * 1000),
            seed=os.urandom(32),
        ).raw


def _db(node: DemoNode) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{node.dir / 'events.sqlite'}?mode=ro", uri=True)


def _ledger_of(node: DemoNode) -> Ledger:
    """Every event the node holds, in a ledger of the test's own."""
    ledger = Ledger(TESTNET)
    db = _db(node)
    for (raw,) in db.execute("SELECT raw FROM events ORDER BY seq"):
        ledger.ingest(bytes(raw))
    db.close()
    return ledger


def _receipts(node: DemoNode, peer: bytes) -> list[str]:
    """States of the deliveries of every receipt ``node`` sent to ``peer``."""
    db = _db(node)
    rows = db.execute(
        "SELECT d.state FROM messages m JOIN deliveries d ON d.message = m.id "
        "WHERE m.outgoing=1 AND m.kind=2 AND m.peer=?",
        (peer,),
    ).fetchall()
    db.close()
    return [str(r[0]) for r in rows]


@asynccontextmanager
async def deliverer(addr: str) -> AsyncIterator[Callable[[bytes], Awaitable[str | None]]]:
    """Deliver envelopes over ``/smu/message/1`` from a bare libp2p host:
    the refusal's code, or None for ACCEPTED."""
    host = make_host(os.urandom(32))
    async with host.run([parse_multiaddr("/ip4/127.0.0.1/tcp/0")]):
        info = info_from_p2p_addr(parse_multiaddr(addr))
        await host.connect(info)

        async def deliver(envelope: bytes) -> str | None:
            stream = await host.new_stream(info.peer_id, [TProtocol(MESSAGE_PROTOCOL_ID)])
            await stream.write(frame(delivery_frame(envelope)))
            answer = decode_delivery_answer(await read_frame(stream, 1024))
            await stream.close()
            return None if answer is None else answer.code

        try:
            yield deliver
        finally:
            await host.close()


async def test_a_stranger_flood_is_capped_unanswered_and_contacts_get_through(
    demo: Demo,
) -> None:
    (a, b, c), alice, bob = await trio.to_thread.run_sync(
        lambda: alice_and_bob(demo, ["alice", "bob", "carol"], bob_on=1)
    )

    def setup() -> dict[str, Any]:
        carol = c.client.call("account.create", name="carol")
        demo.wait_converged(demo.nodes)
        a.client.call("contact.add", ref=bob["account_id"], name="bob")
        b.client.call("contact.add", ref=alice["account_id"], name="alice")
        c.client.call("contact.add", ref=alice["account_id"], name="alice")
        # carol, a stranger to alice with a node of her own, asks first
        sent = c.client.call("message.send", contact="alice", text="hi, it's carol")
        wait_for(lambda: a.client.call("message.inbox")["requests"] == 1)
        wait_for(lambda: delivered(c, sent["message_id"]).get("delivered") == 1)
        return dict(carol)

    carol = await trio.to_thread.run_sync(setup)
    carol_id = bytes.fromhex(carol["account_id"])
    alice_id = bytes.fromhex(alice["account_id"])

    # 36 strangers the node holds; stranger 0 sends 12 texts, the others 4
    strangers = [Stranger(i) for i in range(36)]
    for s in strangers:
        await trio.to_thread.run_sync(a.submit, s.genesis)
    ledger = await trio.to_thread.run_sync(_ledger_of, a)
    assert all(s.account in ledger.accounts for s in strangers)

    answers: dict[int, list[str | None]] = {}

    async def flood() -> None:
        async with deliverer(a.addr) as deliver:
            for i, s in enumerate(strangers):
                for _ in range(12 if i == 0 else 4):
                    answers.setdefault(i, []).append(await deliver(s.text(ledger, alice_id)))

    def contact_meanwhile() -> None:
        b.client.call("message.send", contact="alice", text="a contact, during the flood")
        wait_for(lambda: texts(a, "bob") == ["a contact, during the flood"], timeout=60)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(flood)
        nursery.start_soon(trio.to_thread.run_sync, contact_meanwhile)

    # Per sender: 4 texts of 60 KiB fit in 256 KiB; the rest is refused.
    assert answers[0] == [None] * 4 + ["requests_full"] * 8
    stored = sum(code is None for codes in answers.values() for code in codes)
    refused = [code for codes in answers.values() for code in codes if code is not None]
    assert set(refused) == {"requests_full"}
    # In total: 8 MiB of requests (carol's short one among them) and no more.
    assert stored == (LIMITS.total_bytes - len("hi, it's carol")) // len(TEXT) == 136
    assert answers[35] == ["requests_full"] * 4  # the total was full when it came
    db = _db(a)
    count, size = db.execute("SELECT COUNT(*), SUM(size) FROM messages WHERE request=1").fetchone()
    # No receipt to any stranger, not even an outbox row for one.
    strangers_rows = db.execute(
        f"SELECT COUNT(*) FROM deliveries WHERE account IN ({','.join('?' * 37)})",
        [s.account for s in strangers] + [carol_id],
    ).fetchone()
    db.close()
    assert count == 137 and size <= LIMITS.total_bytes
    assert strangers_rows == (0,)
    assert await trio.to_thread.run_sync(_receipts, a, bytes.fromhex(bob["account_id"]))
    assert (await trio.to_thread.run_sync(a.client.call, "message.inbox"))["requests"] == 35

    # Accepting carol releases the receipt held back, and it reaches her node.
    await trio.to_thread.run_sync(
        lambda: a.client.call("requests.accept", account=carol["account_id"])
    )
    await trio.to_thread.run_sync(
        lambda: wait_for(lambda: _receipts(a, carol_id) == ["delivered"], timeout=60)
    )
