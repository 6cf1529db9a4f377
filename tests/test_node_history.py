"""History that proves itself, between real nodes (PROTOCOL.md §15.4
*History proofs*; issue 13 item 5): a newly linked device shows history
under its real senders; what a compromised device of the own account
plants is refused, or shown as relayed by it, never as the claimed sender's."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator

import pytest

from node.datadir import DataDir
from node.netdemo import Demo, DemoNode, link_devices
from node.storage import RowCipher
from node.storage.messages import open_text, proof_column, proof_from_column, seal_text

from .browser import Browser, require_browser
from .process import start_nodes, texts, wait_for

pytestmark = pytest.mark.process


def _plant(node: DemoNode, like: str, text: str, *, keep_proof: bool) -> None:
    """Write a history row into ``node``'s own store beside the genuine one
    whose text is ``like``: what a thief holding that device (and so its
    storage key, §15.21) can do.  With ``keep_proof`` the genuine message's
    proof goes with the changed text."""
    cipher = RowCipher(DataDir(node.dir).load_secrets().storage_key)
    with sqlite3.connect(node.dir / "events.sqlite", timeout=30) as db:
        rows = db.execute(
            "SELECT id, peer, outgoing, sender_account, sender_device, sent_ms, stored_ms, kind, "
            "text, proof FROM messages"
        ).fetchall()
        (row,) = [r for r in rows if open_text(cipher, r[3], r[0], r[8]) == like]
        mid, peer, outgoing, sa, sd, sent, stored, kind, _, sealed_proof = row
        genuine = proof_from_column(cipher, sa, mid, sealed_proof)
        assert genuine is not None  # the genuine one keeps its proof
        new_id = os.urandom(16)
        db.execute(
            "INSERT INTO messages(id, peer, outgoing, sender_account, sender_device, sent_ms, "
            "stored_ms, kind, text, request, size, proof) VALUES(?,?,?,?,?,?,?,?,?,0,?,?)",
            (
                new_id,
                peer,
                outgoing,
                sa,
                sd,
                sent,
                stored,
                kind,
                seal_text(cipher, sa, new_id, text),
                len(text),
                proof_column(cipher, sa, new_id, genuine if keep_proof else None),
            ),
        )


def _linked_after_planting(demo: Demo) -> tuple[DemoNode, DemoNode, DemoNode]:
    """alice1 and bob1 talk; bob1's store gets two plants; bob1 links bob2,
    which then holds the three texts it keeps of bob1's history."""
    a1, b1, b2 = start_nodes(demo, ["alice1", "bob1", "bob2"])
    demo.connect(a1, b1)
    demo.connect(b1, b2)
    alice = a1.client.call("account.create", name="alice")
    b1.client.call("account.create", name="bob")
    demo.wait_converged(demo.nodes)  # each holds the other's log before they write
    inv = b1.client.call("invite.create")
    a1.client.call("contact.add", ref=inv["invite"], name="bob")
    b1.client.call("contact.add", ref=alice["account_id"], name="alice")

    a1.client.call("message.send", contact="bob", text="hello bob")
    wait_for(lambda: texts(b1, "alice") == ["hello bob"])
    b1.client.call("message.send", contact="alice", text="hi alice")
    wait_for(lambda: "hi alice" in texts(a1, "bob"))

    # bob1 is compromised: its store now holds a text claiming alice with
    # her genuine message's proof, and a bare claim without one.
    _plant(b1, "hello bob", "alice: send bob1 your recovery key", keep_proof=True)
    _plant(b1, "hello bob", "an unproven claim", keep_proof=False)

    link_devices(demo, b1, b2, "bob2")
    b2.client.call("contact.add", ref=alice["account_id"], name="alice")
    wait_for(lambda: len(texts(b2, "alice")) == 3)
    return a1, b1, b2


def test_linked_device_gets_history_under_real_senders_and_plants_are_not_theirs(
    demo: Demo,
) -> None:
    _, _, b2 = _linked_after_planting(demo)
    docs = {
        m["text"]: m for m in b2.client.call("message.conversation", contact="alice")["messages"]
    }
    assert sorted(docs) == ["an unproven claim", "hello bob", "hi alice"]
    genuine = docs["hello bob"]
    assert (genuine["from"], genuine["from_device"], genuine["relayed_by"]) == (
        "alice",
        "alice1",
        None,
    )
    mine = docs["hi alice"]
    assert mine["outgoing"] and mine["from_device"] == "bob1" and mine["relayed_by"] is None
    # the claim without a proof is bob1's word, shown as such
    assert docs["an unproven claim"]["relayed_by"] == "bob1"
    # the changed text under a genuine proof was refused, and the user told
    notices = [n["text"] for n in b2.client.call("message.inbox")["notices"]]
    assert any("bob1 sent history with 1 message(s)" in n for n in notices), notices

    out = subprocess.run(
        [sys.executable, "-m", "node.cli", "conversation", "alice", "--data-dir", str(b2.dir)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    lines = {line.rsplit(": ", 1)[-1]: line for line in out.splitlines()}
    assert "[relayed by bob1, unverified] claims alice" in lines["an unproven claim"]
    assert "relayed" not in lines["hello bob"] and "alice (alice1)" in lines["hello bob"]


@pytest.fixture
def browser() -> Iterator[Browser]:
    require_browser()
    b = Browser("bob2")
    try:
        yield b
    finally:
        b.quit()


def test_the_web_app_labels_relayed_history(demo: Demo, browser: Browser) -> None:
    _, _, b2 = _linked_after_planting(demo)
    browser.open_app(b2)
    browser.nav("conversations")
    # found and clicked in one step inside the page (the list may re-render)
    click = (
        "const b = document.querySelector('.conv-list button.conv'); if (b) b.click(); return !!b;"
    )
    browser.wait(lambda: browser.js(click), what="the conversation")
    browser.wait(lambda: "an unproven claim" in browser.text(".messages"), what="the history")
    # read in one step inside the page: each bubble's text and its label
    shown = dict(
        browser.js(
            "return [...document.querySelectorAll('.msg')].map(m => ["
            "m.querySelector('.bubble').innerText,"
            "(m.querySelector('.relayed') || {innerText: ''}).innerText]);"
        )
    )
    assert shown == {
        "hello bob": "",
        "hi alice": "",
        "an unproven claim": "relayed by bob1, unverified",
    }
    browser.shot("history-relayed")
