"""Wrap scheme 2 between real nodes (PROTOCOL.md §19.13, §15.9): two
accounts talk both ways under forward-secret sessions, across a restart."""

from __future__ import annotations

import sqlite3
import stat

import pytest

from node.netdemo import Demo
from protocol.core.params import TESTNET
from protocol.messaging.envelope import WRAP_SCHEME_2, peek

from .process import alice_and_bob, delivered, texts, wait_for

pytestmark = pytest.mark.process


def _outbox_schemes(node_dir: object) -> list[set[int]]:
    """The wrap schemes of every envelope a node stored as sent."""
    conn = sqlite3.connect(f"file:{node_dir}/events.sqlite?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT envelope FROM messages WHERE outgoing=1 AND envelope IS NOT NULL "
            "ORDER BY stored_ms"
        ).fetchall()
    finally:
        conn.close()
    return [{w.scheme for w in peek(bytes(r[0]), TESTNET).wraps} for r in rows]


def _session_rows(node_dir: object) -> int:
    conn = sqlite3.connect(f"file:{node_dir}/events.sqlite?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0])
    finally:
        conn.close()


def _advertises_scheme2(node: object, account: str) -> bool:
    records = node.client.call("device.records", account=account)["records"]  # type: ignore[attr-defined]
    return bool(records) and all(
        1 in r["capabilities"] and r["signed_prekey_id"] is not None for r in records
    )


def test_two_accounts_talk_with_scheme_2_across_a_restart(demo: Demo) -> None:
    (a, b), alice, bob = alice_and_bob(demo, ["alice", "bob"], bob_on=1)
    a.client.call("contact.add", ref=bob["account_id"], name="bob")
    b.client.call("contact.add", ref=alice["account_id"], name="alice")
    # each device publishes its signed prekey and WRAP_SCHEME_2 (§16.5)
    wait_for(lambda: _advertises_scheme2(a, bob["account_id"]))
    wait_for(lambda: _advertises_scheme2(b, alice["account_id"]))
    mode = stat.S_IMODE((a.dir / "prekeys.json").stat().st_mode)
    assert mode == 0o600

    a.client.call("message.send", contact="bob", text="one")
    wait_for(lambda: texts(b, "alice") == ["one"])
    b.client.call("message.send", contact="alice", text="two")
    wait_for(lambda: texts(a, "bob") == ["one", "two"])

    # bob's node restarts in the middle: its sessions come back from disk
    b.stop()
    b.start_existing([a.addr])
    b.wait_ready()
    a.client.call("message.send", contact="bob", text="three")
    wait_for(lambda: texts(b, "alice") == ["one", "two", "three"], timeout=60)
    b.client.call("message.send", contact="alice", text="four")
    wait_for(lambda: texts(a, "bob") == ["one", "two", "three", "four"], timeout=60)

    # every text and receipt on the wire was scheme 2, and nothing else
    for node in (a, b):
        schemes = _outbox_schemes(node.dir)
        assert len(schemes) >= 2
        assert all(s == {WRAP_SCHEME_2} for s in schemes), schemes
        assert _session_rows(node.dir) >= 1


def test_a_device_that_lost_its_sessions_gets_the_text_again_once(demo: Demo) -> None:
    """Bob's node comes back without its sessions (restored from a backup):
    alice's next text names a session it does not hold; it asks for a
    signed reset (§19.15), alice's node ends that session, re-seals the
    text under its id, and bob reads it once; alice is told once."""
    (a, b), alice, bob = alice_and_bob(demo, ["alice", "bob"], bob_on=1)
    a.client.call("contact.add", ref=bob["account_id"], name="bob")
    b.client.call("contact.add", ref=alice["account_id"], name="alice")
    wait_for(lambda: _advertises_scheme2(a, bob["account_id"]))
    wait_for(lambda: _advertises_scheme2(b, alice["account_id"]))
    a.client.call("message.send", contact="bob", text="one")
    wait_for(lambda: texts(b, "alice") == ["one"])
    b.client.call("message.send", contact="alice", text="two")
    wait_for(lambda: texts(a, "bob") == ["one", "two"])

    b.stop()
    conn = sqlite3.connect(f"{b.dir}/events.sqlite")
    with conn:
        conn.execute("DELETE FROM sessions")
    conn.close()
    b.start_existing([a.addr])
    b.wait_ready()
    a.client.call("message.send", contact="bob", text="three")
    wait_for(lambda: texts(b, "alice") == ["one", "two", "three"], timeout=60)

    def resets() -> list[str]:
        notices = a.client.call("message.inbox")["notices"]
        return [n["text"] for n in notices if "was reset" in n["text"]]

    wait_for(lambda: len(resets()) == 1)
    assert "bob's device" in resets()[0]
    assert texts(a, "bob") == ["one", "two", "three"]
    assert texts(b, "alice") == ["one", "two", "three"]


def test_a_text_left_at_a_mailbox_for_lost_sessions_arrives_after_a_reset(demo: Demo) -> None:
    """The mailbox path, where nobody hears a refusal: bob's node is down,
    alice's text waits at bob's mailbox; bob comes back without its
    sessions, fetches it, cannot open it, and asks for a reset, which
    reaches alice like any message; she re-seals the text and bob reads it
    once (§19.15)."""
    (a, m, b), alice, bob = alice_and_bob(demo, ["alice", "mailbox", "bob"], bob_on=2)
    a.client.call("contact.add", ref=bob["account_id"], name="bob")
    b.client.call("contact.add", ref=alice["account_id"], name="alice")
    wait_for(lambda: _advertises_scheme2(a, bob["account_id"]))
    wait_for(lambda: _advertises_scheme2(b, alice["account_id"]))
    wait_for(
        lambda: any(
            m.peer_id in r["mailboxes"]
            for r in a.client.call("device.records", account=bob["account_id"])["records"]
        ),
        timeout=60,
    )
    a.client.call("message.send", contact="bob", text="one")
    wait_for(lambda: texts(b, "alice") == ["one"])
    b.client.call("message.send", contact="alice", text="two")
    wait_for(lambda: texts(a, "bob") == ["one", "two"])

    b.stop()
    sent = a.client.call("message.send", contact="bob", text="three")
    wait_for(lambda: delivered(a, sent["message_id"]).get("deposited") == 1)
    conn = sqlite3.connect(f"{b.dir}/events.sqlite")
    with conn:
        conn.execute("DELETE FROM sessions")  # restored from before the session
    conn.close()
    b.start_existing([m.addr])  # its saved grants lead it to its mailbox
    b.wait_ready()
    wait_for(lambda: texts(b, "alice") == ["one", "two", "three"], timeout=90)
    wait_for(lambda: delivered(a, sent["message_id"]).get("delivered") == 1, timeout=60)
    notices = [n["text"] for n in a.client.call("message.inbox")["notices"]]
    assert len([n for n in notices if "was reset" in n]) == 1
    assert texts(a, "bob") == ["one", "two", "three"]
