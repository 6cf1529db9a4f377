"""Messages stored in the same millisecond keep the order they arrived in
(their ids are random: ordering by id shuffled them, a race seen in a test
that stores three messages at once)."""

from __future__ import annotations

import os
from pathlib import Path

from node.storage import MessageStore, open_database
from node.storage.messages import KIND_TEXT, NewMessage

BOB = b"b" * 32


def test_messages_stored_in_one_millisecond_keep_their_arrival_order(tmp_path: Path) -> None:
    store = MessageStore(open_database(tmp_path / "s.sqlite", os.urandom(32)))
    ids = [b"\xff" * 16, b"\x80" * 16, b"\x01" * 16]  # arriving in descending id order
    for n, mid in enumerate(ids):
        m = NewMessage(mid, BOB, False, BOB, BOB, 7, 7, KIND_TEXT, f"m{n}", request=n == 2)
        store.db.write([store.insert_statement(m)])
    assert [r.text for r in store.inbox(KIND_TEXT, 0)] == ["m0", "m1"]
    assert [r.text for r in store.conversation(BOB, KIND_TEXT)] == ["m0", "m1", "m2"]
    assert [r.text for r in store.requests(0)] == ["m2"]
    assert [h.text for h in store.history(KIND_TEXT, 10)] == ["m0", "m1"]
