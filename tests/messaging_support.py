"""A message service without the network, for unit tests of the node's
messaging (requests, receipts, the outbox, the replay table).

``Node`` builds a real ``MessageService`` over a real database in a
directory, a ``Ledger`` holding the accounts it is given, and a context
that has no network: nothing is delivered unless a test drives it.
``Peer`` seals envelopes from an account's device to the node's account.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from node.services.contacts import ContactSet
from node.services.messages import MessageService
from node.services.sync import SyncService
from node.storage import ContactStore, MessageStore, SyncStore
from node.storage.db import Database, Statement
from protocol.log.ledger import Ledger
from protocol.messaging.content import Content, Text
from protocol.messaging.envelope import SealedEnvelope, seal
from protocol.records.device import RecordBook

from .conftest import FAST, T0, History


class Context:
    """The parts of ``NodeContext`` the message service uses, no network."""

    def __init__(self, ledger: Ledger, me: History, device: str) -> None:
        self.params = FAST
        self.ledger = ledger
        self.device = me.keys[device]
        self.records = RecordBook(FAST)
        self._account = me.account

    def account(self) -> bytes:
        return self._account

    def own_account(self) -> bytes:
        return self._account

    def resolve_account(self, ref: str | None) -> bytes:
        return bytes.fromhex(ref) if ref else self._account

    async def open_stream(self, *args: Any) -> Any:
        raise OSError("no network in unit tests")


def contacts_for(ctx: Any, db: Database) -> ContactSet:
    """A real contact set over real account-wide sync (nothing is sent:
    the service has no ``send`` until a test gives it one)."""
    return ContactSet(ContactStore(db), ctx.ledger, SyncService(ctx, SyncStore(db)))


#: the storage key of the test stores (PROTOCOL.md §15.21)
STORAGE_KEY = bytes(range(32))


class CountingDatabase(Database):
    """Records what each ``write`` transaction carried: statements and the
    bytes of their parameters (the size of what one write asks for)."""

    def __init__(self, path: Path) -> None:
        from node.storage import MIGRATIONS, RowCipher

        super().__init__(path, MIGRATIONS, RowCipher(STORAGE_KEY))
        self.writes: list[list[Statement]] = []

    def write(self, statements: Any) -> None:
        statements = list(statements)
        self.writes.append(statements)
        super().write(statements)


def param_bytes(statements: list[Statement]) -> int:
    total = 0
    for _, args in statements:
        for a in args:
            total += len(a) if isinstance(a, bytes | str) else 8
    return total


class Node:
    """One device's message service over a database in ``path``."""

    def __init__(
        self, path: Path, me: History, accounts: list[History], device: str = "d0", **kw: Any
    ) -> None:
        self.path = path
        self.me = me
        self.ledger = Ledger(FAST)
        for h in [me, *accounts]:
            for e in h.events.values():
                self.ledger.ingest(e.raw)
        self.db = CountingDatabase(path / "events.sqlite")
        self.ctx = Context(self.ledger, me, device)
        self.contacts = contacts_for(self.ctx, self.db)
        self.ctx.contacts = self.contacts
        self.clock_ms = T0
        self.service = MessageService(
            self.ctx,  # type: ignore[arg-type]
            MessageStore(self.db),
            self.contacts,
            deposit=self._no_deposit,
            reconcile_all=lambda: None,
            contact_changes=lambda: [],
            **kw,
        )

    async def _no_deposit(self, *args: Any) -> bool:
        return False

    def close(self) -> None:
        self.db.close()

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self.db.query(sql, args)


class Peer:
    """Seals envelopes from one device of ``who`` to ``to``'s account."""

    def __init__(self, who: History, to: History, device: str = "d0") -> None:
        self.who, self.to, self.keys = who, to, who.keys[device]
        self.ledger = Ledger(FAST)
        for h in (who, to):
            for e in h.events.values():
                self.ledger.ingest(e.raw)
        self.counter = 0

    def seal(self, content: Content | str, counter: int | None = None) -> SealedEnvelope:
        if isinstance(content, str):
            content = Text(content)
        if counter is None:
            self.counter += 1
            counter = self.counter
        return seal(
            FAST,
            self.keys,
            self.ledger.state(self.who.account),
            self.ledger.state(self.to.account),
            content,
            counter=counter,
            timestamp=T0,
            seed=os.urandom(32),
        )
