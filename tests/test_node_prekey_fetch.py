"""One-time prekeys between real nodes (PROTOCOL.md §19.16, §19.4): a
contact pays with a token and sets up with a one-time prekey, each key is
used once, a stranger gets the signed prekey only, and a replayed set-up
with a spent key is refused without changing anything."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import info_from_p2p_addr

from node.netdemo import Demo, DemoNode
from node.services.prekey_client import node_key
from node.transport import frame, make_host, parse_multiaddr, read_frame
from protocol.core.canonical import decode_flat
from protocol.messaging import prekey_fetch as pf
from protocol.messaging.prekeys import PrekeyStore

from .process import (
    alice_and_bob,
    contacts_through_a_mailbox,
    texts,
    wait_for,
)
from .test_node_message_hostile import _deliver

pytestmark = pytest.mark.process


def _store(node_dir: Path) -> PrekeyStore:
    import json

    doc = json.loads((node_dir / "prekeys.json").read_text())
    return PrekeyStore.decode(bytes.fromhex(doc["store"]))


def _served(node_dir: Path) -> set[int]:
    v = decode_flat((node_dir / "prekey-offer.bin").read_bytes(), pf.MAX_OFFER_BYTES)
    assert isinstance(v, list) and isinstance(v[2], list)
    return {int(i) for i in v[2]}  # type: ignore[call-overload]


def _query(node_dir: Path, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{node_dir}/events.sqlite?mode=ro", uri=True)
    try:
        return list(conn.execute(sql, args).fetchall())
    finally:
        conn.close()


def _wipe_sessions(node_dir: Path) -> None:
    conn = sqlite3.connect(node_dir / "events.sqlite")
    try:
        conn.execute("DELETE FROM sessions")
        conn.commit()
    finally:
        conn.close()


async def _restart_without_sessions(
    node: DemoNode, peer: str, records_of: str | None = None
) -> None:
    """Restart ``node`` with no sessions; then wait until it holds the
    records of ``records_of`` again (a fetch needs the record's peer id)."""
    await trio.to_thread.run_sync(node.stop)
    _wipe_sessions(node.dir)
    node.start_existing([peer])
    await trio.to_thread.run_sync(node.wait_ready)
    if records_of is not None:
        call = node.client.call
        await trio.to_thread.run_sync(
            lambda: wait_for(lambda: call("device.records", account=records_of)["records"])
        )


async def _fetch_as_stranger(
    addr: str, account: bytes, device: bytes, n: int = 1
) -> list[pf.Answer]:
    """``n`` fetches without a token, one stream each, from one fresh peer."""
    host = make_host(os.urandom(32))
    answers = []
    async with host.run([parse_multiaddr("/ip4/127.0.0.1/tcp/0")]):
        info = info_from_p2p_addr(parse_multiaddr(addr))
        await host.connect(info)
        for _ in range(n):
            stream = await host.new_stream(info.peer_id, [TProtocol(pf.PROTOCOL_ID)])
            await stream.write(frame(pf.FetchRequest(account, device, None).encode()))
            answers.append(pf.decode_answer(await read_frame(stream, pf.MAX_ANSWER_BYTES)))
            await stream.close()
        await host.close()
    return answers


async def test_contacts_set_up_with_one_time_prekeys(demo: Demo) -> None:
    (a, b), alice, bob = alice_and_bob(demo, ["alice", "bob"], bob_on=1)
    a.client.call("contact.add", ref=bob["account_id"], name="bob")
    b.client.call("contact.add", ref=alice["account_id"], name="alice")
    bob_node = node_key(b.peer_id)
    assert bob_node is not None
    # bob's tokens for his own node reach alice (TOKENS, §15.16)
    held = "SELECT device FROM tokens_held WHERE mailbox_key=?"
    wait_for(lambda: _query(a.dir, held, (bob_node,)) != [], timeout=60)
    bob_device = bytes(_query(a.dir, held, (bob_node,))[0][0])  # type: ignore[arg-type]
    bob_account = bytes.fromhex(bob["account_id"])

    # a stranger gets the signed prekey only, and nothing is served; one
    # peer's fetches beyond its burst are refused (§19.16's rate bound)
    burst = int(pf.PEER_BURST)
    answers = await _fetch_as_stranger(b.addr, bob_account, bob_device, burst + 1)
    assert answers[:burst] == [pf.SignedOnlyAnswer(pf.SignedOnly.NO_TOKEN)] * burst
    assert isinstance(answers[-1], pf.ErrorAnswer) and answers[-1].code == "rate_limited"
    assert _served(b.dir) == set()

    # the first set-ups came before any token (TOKENS contents both ways):
    # signed prekey only.  Alice loses her sessions; her next set-up pays a
    # token, and names the one-time prekey bob's node served (now spent)
    assert _store(b.dir).spent == {}
    await _restart_without_sessions(a, b.addr, bob["account_id"])
    receipted = (
        "SELECT COUNT(*) FROM deliveries d JOIN messages m ON m.id = d.message "
        "WHERE m.kind = 2 AND d.state = 'delivered'"
    )
    receipts_before = _query(b.dir, receipted)
    sent = a.client.call("message.send", contact="bob", text="one")
    await trio.to_thread.run_sync(lambda: wait_for(lambda: texts(b, "alice") == ["one"]))
    first = set(_store(b.dir).spent)
    assert len(first) == 1 and first == _served(b.dir)
    assert not first & set(_store(b.dir).one_time)

    # again: another key, never the same one.  First bob's receipt for "one"
    # must have reached alice: one still owed under the old session would
    # make her ask for a reset, and that reset (no text, so no fetch) would
    # set up her new session before "two" does (§19.15)
    owed = "SELECT COUNT(*) FROM deliveries WHERE state IN ('pending', 'deposited')"
    await trio.to_thread.run_sync(
        lambda: wait_for(
            lambda: _query(b.dir, receipted) != receipts_before and _query(b.dir, owed) == [(0,)]
        )
    )
    await _restart_without_sessions(a, b.addr, bob["account_id"])
    a.client.call("message.send", contact="bob", text="two")
    await trio.to_thread.run_sync(lambda: wait_for(lambda: texts(b, "alice") == ["one", "two"]))
    second = set(_store(b.dir).spent)
    assert len(second) == 2 and first < second and second == _served(b.dir)

    # a replay of the first set-up at a bob without sessions: the key is spent
    (envelope,) = _query(
        a.dir, "SELECT envelope FROM messages WHERE id=?", (bytes.fromhex(sent["message_id"]),)
    )[0]
    await _restart_without_sessions(b, a.addr)
    before = (b.dir / "prekeys.json").read_bytes()
    code = await _deliver(b.addr, bytes(envelope))  # type: ignore[arg-type]
    assert code == "prekey_reused"
    assert (b.dir / "prekeys.json").read_bytes() == before
    assert _query(b.dir, "SELECT COUNT(*) FROM sessions") == [(0,)]
    assert texts(b, "alice") == ["one", "two"]


def _shelf_served(node_dir: Path) -> set[int]:
    """The ids the mailbox's shelf has served (its table, §19.16)."""
    out: set[int] = set()
    for (raw,) in _query(node_dir, "SELECT offer FROM prekey_offers"):
        offer = decode_flat(raw, pf.MAX_OFFER_BYTES)  # type: ignore[arg-type]
        out |= {int(i) for i in offer[2]}  # type: ignore[index]
    return out


def _shelf_devices(node_dir: Path) -> int:
    return int(_query(node_dir, "SELECT COUNT(*) FROM prekey_offers")[0][0])  # type: ignore[call-overload]


def test_a_mailbox_serves_one_time_prekeys_while_the_device_is_away(demo: Demo) -> None:
    m, a, b, _, bob = contacts_through_a_mailbox(demo)
    # grants at m for both, a batch of each uploaded there, and alice
    # holding bob's tokens for m
    wait_for(lambda: _shelf_devices(m.dir) == 2, timeout=90)
    m_key = node_key(m.peer_id)
    held = "SELECT COUNT(*) FROM tokens_held WHERE mailbox_key=?"
    wait_for(lambda: _query(a.dir, held, (m_key,))[0][0] > 0, timeout=60)  # type: ignore[operator]

    b.stop()  # bob is away: his own node cannot serve
    a.stop()
    _wipe_sessions(a.dir)
    a.start_existing([m.addr])
    a.wait_ready()
    # alice has bob's record again (it names his node and m) before she writes
    wait_for(
        lambda: any(
            m.peer_id in r["mailboxes"]
            for r in a.client.call("device.records", account=bob["account_id"])["records"]
        ),
        timeout=60,
    )
    a.client.call("message.send", contact="bob", text="while away")
    # m served one key (to alice) and holds the envelope
    wait_for(lambda: len(_shelf_served(m.dir)) == 1, timeout=30)
    b.start_existing([m.addr])
    b.wait_ready()
    wait_for(lambda: texts(b, "alice") == ["while away"], timeout=90)
    # bob's set-up took the key m served: spent in his store
    assert _shelf_served(m.dir) <= set(_store(b.dir).spent)
