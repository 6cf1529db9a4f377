"""Two accounts whose devices speak wrap scheme 2 (PROTOCOL.md §19.13),
each device with its own replica, prekey store, session book and replay
guard, for the protocol-level envelope tests.  Deterministic: seeds and
fresh bytes come from labels and counters.  ``restart`` encodes and decodes
every device's state, as a node does between two messages."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from protocol.core.keys import DeviceKeys
from protocol.log.ledger import Ledger
from protocol.messaging.content import Content, ReplayGuard, Text
from protocol.messaging.envelope import (
    OpenedEnvelope,
    SealedEnvelope,
    ledger_lookup,
    open_envelope,
    seal,
)
from protocol.messaging.prekeys import PrekeyStore
from protocol.messaging.ratchet import decode_state, encode_state, x25519_public
from protocol.messaging.scheme2 import Reach2, ReceiveSessions, SendSessions
from protocol.messaging.sessions import SessionBook, SessionEntry

from .conftest import FAST, T0, History

SPK_ID = 5


def h(label: str, size: int = 32) -> bytes:
    return hashlib.blake2b(label.encode(), digest_size=size).digest()


@dataclass
class Dev:
    label: str
    account: bytes
    keys: DeviceKeys
    ledger: Ledger
    store: PrekeyStore
    book: SessionBook = field(default_factory=SessionBook)
    guard: ReplayGuard = field(default_factory=ReplayGuard)
    counters: dict[bytes, int] = field(default_factory=dict)
    n: int = 0
    #: devices this one treats as scheme 2, and how (what its node would
    #: read from records and its sticky set)
    reach: dict[bytes, Reach2] = field(default_factory=dict)

    def fresh(self, what: str, size: int = 32) -> bytes:
        self.n += 1
        return h(f"{self.label}/{what}/{self.n}", size)

    @property
    def spk(self) -> bytes:
        return x25519_public(self.store.signed[SPK_ID][0])

    def send(self, to: bytes, content: Content | None = None, **kw: Any) -> SealedEnvelope:
        c = self.counters.get(to, 0) + 1
        self.counters[to] = c
        env = seal(
            FAST,
            self.keys,
            self.ledger.state(self.account),
            self.ledger.state(to),
            content if content is not None else Text(f"{self.label} #{c}"),
            counter=c,
            timestamp=T0 + c,
            seed=self.fresh("seed"),
            sessions=SendSessions(self.book, self.reach, self.spk),
            **kw,
        )
        assert env.book is not None
        self.book = env.book
        return env

    def inputs(self) -> ReceiveSessions:
        book = self.book
        return ReceiveSessions(lambda sid, who: book, self.store, T0 + 1000, self.fresh("fresh"))

    def open(self, raw: bytes, commit: bool = True) -> OpenedEnvelope:
        guard = ReplayGuard.decode(self.guard.encode())
        opened = open_envelope(
            FAST, raw, self.account, self.keys, ledger_lookup(self.ledger), guard, self.inputs()
        )
        if commit:
            self.guard = guard
            if opened.book is not None:
                self.book = opened.book
            if opened.prekeys is not None:
                self.store = opened.prekeys
        return opened

    def snapshot(self) -> tuple[bytes, ...]:
        """Everything of this device's state, encoded (for "changes nothing")."""
        return (self.store.encode(), self.guard.encode(), *encode_book(self.book))

    def restart(self) -> None:
        self.store = PrekeyStore.decode(self.store.encode())
        self.guard = ReplayGuard.decode(self.guard.encode())
        self.book = decode_book(encode_book(self.book), self.book)


def encode_book(book: SessionBook) -> tuple[bytes, ...]:
    return tuple(sid + encode_state(e.state) for sid, e in sorted(book.entries.items()))


def decode_book(rows: tuple[bytes, ...], like: SessionBook) -> SessionBook:
    entries = {}
    for row in rows:
        sid = row[:32]
        old = like.entries[sid]
        entries[sid] = SessionEntry(old.peer, decode_state(row[32:]), old.used)
    return SessionBook(entries, like.seq)


class World2:
    """Alice (d0, d1) and Bob (d0, d1, d2), every device advertising scheme 2."""

    def __init__(self, bob_devices: int = 3, alice_devices: int = 2, prekeys: str = "") -> None:
        # ``prekeys``: a prefix of the signed prekeys' labels, for a test that
        # must hold secrets no other test's objects hold
        self.a = History(name="alice")
        for i in range(1, alice_devices):
            self.a.add(f"a{i}", "d0", f"d{i}", ["g" if i == 1 else f"a{i - 1}"])
        self.b = History(name="bob")
        for i in range(1, bob_devices):
            self.b.add(f"b{i}", "d0", f"d{i}", ["g" if i == 1 else f"b{i - 1}"])
        self.devs: dict[str, Dev] = {}
        for who, hist in (("a", self.a), ("b", self.b)):
            for name, keys in hist.keys.items():
                if name.startswith("d"):
                    label = f"{who}{name}"
                    store = PrekeyStore().with_signed(SPK_ID, h(f"{prekeys}{label}/spk"), T0)
                    self.devs[label] = Dev(label, hist.account, keys, self.replica(), store)
        for d in self.devs.values():
            for other in self.devs.values():
                if other is not d:
                    d.reach[other.keys.sign_public] = Reach2(SPK_ID, other.spk, True)

    def replica(self) -> Ledger:
        ledger = Ledger(FAST)
        for hist in (self.a, self.b):
            for e in hist.events.values():
                ledger.ingest(e.raw)
        return ledger

    def __getitem__(self, label: str) -> Dev:
        return self.devs[label]

    def restart_all(self) -> None:
        for d in self.devs.values():
            d.restart()
