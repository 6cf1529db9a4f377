"""Read marks (node/services/reads.py, PROTOCOL.md §15.19 ``read/<account>``):
counted by ``sent_ms``, never moved back, synced account-wide, the local
table a cache of the highest mark known; a device holding a higher mark
than the synced winner says it again, once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from node.api.schema import ParamError
from node.control import RpcFailure
from node.services.reads import ReadMarks, mark_value, read_key
from node.storage import MessageStore, ReadStore, open_database
from node.storage.db import Database
from node.storage.messages import KIND_TEXT, NewMessage

from .messaging_support import STORAGE_KEY

BOB = bytes([2]) * 32
CAROL = bytes([3]) * 32
ME = bytes([1]) * 32


@dataclass
class FakeEdit:
    key: str
    value: Any


class FakeSync:
    """The merged state as a dict; ``edit`` records what was said."""

    def __init__(self) -> None:
        self.state: dict[str, FakeEdit] = {}
        self.said: list[tuple[str, Any]] = []
        self.listeners: list[Any] = []
        self.active = True

    def value(self, key: str) -> Any:
        e = self.state.get(key)
        return None if e is None else e.value

    def winner(self, key: str) -> FakeEdit | None:
        return self.state.get(key)

    def view(self, prefix: str) -> dict[str, FakeEdit]:
        return {k: e for k, e in self.state.items() if k.startswith(prefix)}

    def edit(self, key: str, value: Any) -> FakeEdit | None:
        if not self.active:
            return None
        self.said.append((key, value))
        self.state[key] = e = FakeEdit(key, value)
        for listener in self.listeners:
            listener()
        return e

    def arrive(self, key: str, value: Any) -> None:
        """Another device's edit won the key."""
        self.state[key] = FakeEdit(key, value)
        for listener in self.listeners:
            listener()


class FakeContacts:
    def is_contact(self, account: bytes) -> bool:
        return account in (BOB, CAROL)

    def label(self, account: bytes) -> str:
        return {BOB: "bob", CAROL: "carol"}[account]


class FakeCtx:
    contacts = FakeContacts()

    def resolve_account(self, ref: str | None) -> bytes:
        for account, name in ((BOB, "bob"), (CAROL, "carol")):
            if ref in (name, account.hex()):
                return account
        raise RpcFailure(2, f"no account {ref!r}")


def receive(db: Database, peer: bytes, sent_ms: int, stored_ms: int, n: int) -> None:
    db.write(
        [
            MessageStore(db).insert_statement(
                NewMessage(
                    message_id=bytes([n]) * 16,
                    peer=peer,
                    outgoing=False,
                    sender_account=peer,
                    sender_device=peer,
                    sent_ms=sent_ms,
                    stored_ms=stored_ms,
                    kind=KIND_TEXT,
                    text=f"m{n}",
                )
            )
        ]
    )


@pytest.fixture
def marks(tmp_path: Path) -> tuple[ReadMarks, FakeSync, Database]:
    db = open_database(tmp_path / "node.db", STORAGE_KEY)
    sync = FakeSync()
    reads = ReadMarks(FakeCtx(), ReadStore(db), sync)  # type: ignore[arg-type]
    sync.listeners.append(reads.synced)
    return reads, sync, db


def unread(reads: ReadMarks, peer: bytes) -> int:
    s = reads.summaries(KIND_TEXT).get(peer)
    return 0 if s is None else s.unread


def test_marks_count_by_sent_ms_and_sync(marks: tuple[ReadMarks, FakeSync, Database]) -> None:
    reads, sync, db = marks
    # stored late, sent early: the sender's time counts, the same on every device
    receive(db, BOB, sent_ms=1000, stored_ms=9000, n=1)
    receive(db, BOB, sent_ms=2000, stored_ms=9001, n=2)
    assert unread(reads, BOB) == 2
    assert reads.mark_read(BOB, 1000) == 1000
    assert unread(reads, BOB) == 1
    assert sync.said == [(read_key(BOB), 1000)]
    # never past the newest stored message, and the default is the newest
    assert reads.mark_read(BOB, 10**12) == 2000
    assert unread(reads, BOB) == 0
    # never back: an older mark is no edit
    assert reads.mark_read(BOB, 1500) == 2000
    assert sync.said == [(read_key(BOB), 1000), (read_key(BOB), 2000)]


def test_a_read_on_another_device_clears_unread_here(
    marks: tuple[ReadMarks, FakeSync, Database],
) -> None:
    reads, sync, db = marks
    told: list[int] = []
    reads.on_changed.append(lambda: told.append(1))
    receive(db, CAROL, sent_ms=500, stored_ms=600, n=3)
    receive(db, CAROL, sent_ms=700, stored_ms=800, n=4)
    sync.arrive(read_key(CAROL), 500)
    assert unread(reads, CAROL) == 1 and told == [1]
    assert ReadStore(db).mark(CAROL) == 500  # cached
    sync.arrive(read_key(CAROL), 700)
    assert unread(reads, CAROL) == 0 and told == [1, 1]
    assert sync.said == []  # taking in a mark says nothing


def test_a_lower_winner_is_answered_once(marks: tuple[ReadMarks, FakeSync, Database]) -> None:
    reads, sync, db = marks
    receive(db, BOB, sent_ms=3000, stored_ms=3000, n=5)
    reads.mark_read(BOB)
    # another device marked lower with a later clock: its edit won the key
    sync.arrive(read_key(BOB), 1000)
    assert unread(reads, BOB) == 0  # the cache never moves back
    assert sync.said[-1] == (read_key(BOB), 3000)  # said again: every device ends at 3000
    said = len(sync.said)
    sync.state[read_key(BOB)] = FakeEdit(read_key(BOB), 1000)  # our edit does not count
    sync.arrive(read_key(BOB), 1000)
    assert len(sync.said) == said  # not said again on every change


def test_no_account_yet_keeps_the_mark_here(marks: tuple[ReadMarks, FakeSync, Database]) -> None:
    reads, sync, db = marks
    sync.active = False
    receive(db, BOB, sent_ms=100, stored_ms=100, n=6)
    assert reads.mark_read(BOB) == 100 and unread(reads, BOB) == 0
    sync.active = True
    sync.arrive(read_key(CAROL), 1)  # any change: the unsynced mark is said now
    assert (read_key(BOB), 100) in sync.said


@pytest.mark.parametrize("value", [True, -1, "5", 1.5, None, [1]])
def test_a_malformed_synced_mark_is_none(value: Any) -> None:
    assert mark_value(value) == 0


def test_the_control_methods(marks: tuple[ReadMarks, FakeSync, Database]) -> None:
    reads, _, db = marks
    receive(db, BOB, sent_ms=10, stored_ms=10, n=7)
    receive(db, BOB, sent_ms=20, stored_ms=20, n=8)

    async def go() -> None:
        doc = await reads.message_unread({})
        assert doc["conversations"] == [
            {"account_id": BOB.hex(), "conversation": "bob", "unread": 2, "read_ms": 0}
        ]
        assert (await reads.message_read({"contact": "bob", "up_to_ms": 10}))["read_ms"] == 10
        # served, the params are checked against node/api first (§13: -32602)
        with pytest.raises(ParamError, match=r"'up_to_ms' must be int \| null"):
            await reads.handlers()["message.read"]({"contact": "bob", "up_to_ms": "soon"})
        assert (await reads.message_unread({}))["conversations"][0]["unread"] == 1

    trio.run(go)


def test_a_main_database_migrates_to_read_marks(tmp_path: Path) -> None:
    """A database of schema 8 (sync, the last before read marks) gains the
    read-mark cache as migration 8 -> 9, its messages unread until read."""
    from node.storage import MIGRATIONS, SCHEMA_VERSION

    path = tmp_path / "node.db"
    v8 = Database(path, {v: MIGRATIONS[v] for v in range(8)})
    # a text as schema 8 stored it: in the clear (sealed by migration 9 -> 10)
    v8.conn.execute(
        "INSERT INTO messages(id, peer, outgoing, sender_account, sender_device, sent_ms, "
        "stored_ms, kind, text, size) VALUES(?, ?, 0, ?, ?, 5, 5, ?, 'm9', 2)",
        (bytes([9]) * 16, BOB, BOB, BOB, KIND_TEXT),
    )
    assert not v8.query("SELECT name FROM sqlite_master WHERE name='read_marks'")
    v8.conn.close()
    db = open_database(path, STORAGE_KEY)
    assert SCHEMA_VERSION >= 9
    assert db.query("SELECT value FROM meta WHERE key='schema_version'") == [(str(SCHEMA_VERSION),)]
    reads = ReadMarks(FakeCtx(), ReadStore(db), FakeSync())  # type: ignore[arg-type]
    assert unread(reads, BOB) == 1
    assert reads.mark_read(BOB) == 5 and unread(reads, BOB) == 0


def test_messages_in_the_trash_are_not_counted(
    marks: tuple[ReadMarks, FakeSync, Database],
) -> None:
    reads, _, db = marks
    receive(db, BOB, sent_ms=10, stored_ms=10, n=10)
    receive(db, BOB, sent_ms=20, stored_ms=20, n=11)
    receive(db, CAROL, sent_ms=30, stored_ms=30, n=12)
    trash = {(BOB, bytes([11]) * 16)}
    reads.hidden = lambda: set(trash)
    s = reads.summaries(KIND_TEXT)
    assert s[BOB].unread == 1 and s[BOB].last_text == "m10" and s[CAROL].unread == 1
    trash.add((BOB, bytes([10]) * 16))  # every message of the conversation
    assert BOB not in reads.summaries(KIND_TEXT)
    trash.clear()  # restored
    assert reads.summaries(KIND_TEXT)[BOB].unread == 2
