"""A text refused for a reused one-time prekey goes again, between real
nodes (PROTOCOL.md §19.4, §19.13): bob's node hands the same key out twice
(its offer restored from before it served it), alice's set-up with it is
refused ``prekey_reused``, and her node seals that text again with a
freshly fetched key; bob reads it once."""

from __future__ import annotations

import pytest
import trio

from node.netdemo import Demo
from node.services.prekey_client import node_key

from .process import alice_and_bob, texts, wait_for
from .test_node_prekey_fetch import _query, _restart_without_sessions, _served, _store

pytestmark = pytest.mark.process


async def test_a_text_refused_for_a_reused_prekey_is_sealed_again_and_arrives_once(
    demo: Demo,
) -> None:
    (a, b), alice, bob = alice_and_bob(demo, ["alice", "bob"], bob_on=1)
    a.client.call("contact.add", ref=bob["account_id"], name="bob")
    b.client.call("contact.add", ref=alice["account_id"], name="alice")
    bob_node = node_key(b.peer_id)
    held = "SELECT COUNT(*) FROM tokens_held WHERE mailbox_key=?"
    wait_for(lambda: _query(a.dir, held, (bob_node,))[0][0] >= 2, timeout=60)  # type: ignore[operator]

    # nothing owed either way (a message to a device without its session
    # would make it ask for a reset, which sets up without a fetch, §19.15)
    owed = "SELECT COUNT(*) FROM deliveries WHERE state IN ('pending', 'deposited')"
    await trio.to_thread.run_sync(
        lambda: wait_for(lambda: _query(b.dir, owed) == [(0,)] and _query(a.dir, owed) == [(0,)])
    )
    # alice loses her sessions: "one" pays a token and sets up with key K
    await _restart_without_sessions(a, b.addr, bob["account_id"])
    offer = (b.dir / "prekey-offer.bin").read_bytes()  # K not yet served
    a.client.call("message.send", contact="bob", text="one")
    await trio.to_thread.run_sync(lambda: wait_for(lambda: texts(b, "alice") == ["one"]))
    (key,) = set(_store(b.dir).spent)
    # bob's receipt for "one" has reached alice and nothing else is owed:
    # a retry of it reaching the alice without sessions below would make her
    # ask for a reset, whose set-up (no text: no fetch) would take the place
    # of the one under test (§19.15)
    receipted = (
        "SELECT COUNT(*) FROM deliveries d JOIN messages m ON m.id = d.message "
        "WHERE m.kind = 2 AND d.state = 'delivered'"
    )
    await trio.to_thread.run_sync(
        lambda: wait_for(
            lambda: (
                _query(b.dir, receipted) == [(1,)]
                and _query(b.dir, owed) == [(0,)]
                and _query(a.dir, owed) == [(0,)]
            )
        )
    )

    # bob's node forgets that it served K: it will hand K out again
    await trio.to_thread.run_sync(b.stop)
    (b.dir / "prekey-offer.bin").write_bytes(offer)
    b.start_existing([a.addr])
    await trio.to_thread.run_sync(b.wait_ready)
    assert key not in _served(b.dir)
    await _restart_without_sessions(a, b.addr, bob["account_id"])
    # linked again, so that alice's fetch reaches bob's node (else she sets
    # up from the signed prekey, and no key is served twice)
    linked = lambda: all(n.client.call("node.status")["peers"] for n in (a, b))  # noqa: E731
    await trio.to_thread.run_sync(lambda: wait_for(linked))
    sent = a.client.call("message.send", contact="bob", text="two")
    await trio.to_thread.run_sync(
        lambda: wait_for(lambda: texts(b, "alice") == ["one", "two"], timeout=60)
    )
    # refused with K, then set up with a fresh key: two spent, both served
    spent = set(_store(b.dir).spent)
    assert key in spent and len(spent) == 2 and spent <= _served(b.dir)
    message = bytes.fromhex(sent["message_id"])
    assert _query(a.dir, "SELECT COUNT(*) FROM resends WHERE message=?", (message,)) == [(1,)]
    delivered = "SELECT state FROM deliveries WHERE message=? AND device=?"
    bob_devices = {bytes(r[0]) for r in _query(a.dir, "SELECT device FROM resends")}  # type: ignore[arg-type]
    (device,) = bob_devices
    await trio.to_thread.run_sync(
        lambda: wait_for(lambda: _query(a.dir, delivered, (message, device)) == [("delivered",)])
    )
    assert texts(b, "alice") == ["one", "two"]  # once
