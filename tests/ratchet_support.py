"""Two devices with prekeys and a session between them, for the session
tests (PROTOCOL.md §19).  Everything is deterministic: secrets come from
labels, "fresh" randomness from a counter."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from protocol.core.keys import DeviceKeys
from protocol.messaging import prekeys, ratchet, sessions, x3dh
from protocol.messaging.sessions import SessionBook

from .conftest import FAST, T0, device

EXPIRES = T0 + 7 * 24 * 3600 * 1000
SPK_ID = 7
FIRST_OPK = 1000


def secret(label: str) -> bytes:
    return hashlib.blake2b(b"ratchet-test:" + label.encode(), digest_size=32).digest()


class Randomness:
    """Distinct 32- or 64-byte values from a label and a counter."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.i = 0

    def __call__(self, size: int = 32) -> bytes:
        self.i += 1
        return hashlib.blake2b(f"{self.label}/{self.i}".encode(), digest_size=size).digest()


@dataclass
class Device:
    name: str
    keys: DeviceKeys
    party: x3dh.Party
    spk_secret: bytes
    store: prekeys.PrekeyStore
    batch: prekeys.PrekeyBatch
    rand: Randomness = field(default_factory=lambda: Randomness("unused"))

    @property
    def spk(self) -> bytes:
        return ratchet.x25519_public(self.spk_secret)

    def bundle(self, index: int | None = 0) -> x3dh.Bundle:
        opk = None
        if index is not None:
            raw = self.batch.proof(index).encode(FAST)
            opk = prekeys.verify_proof(FAST, raw, self.party.account, self.keys.sign_public, T0)
        return x3dh.Bundle(self.party, SPK_ID, self.spk, opk)


def make_device(name: str, batch_size: int = 4) -> Device:
    keys = device(name)
    account = secret(f"{name}/account")
    spk_secret = secret(f"{name}/spk")
    opk_secrets = [secret(f"{name}/opk/{i}") for i in range(batch_size)]
    store = (
        prekeys.PrekeyStore()
        .with_signed(SPK_ID, spk_secret, T0)
        .with_batch(FIRST_OPK, EXPIRES, opk_secrets)
    )
    batch = prekeys.make_batch(FAST, keys, account, FIRST_OPK, EXPIRES, opk_secrets)
    return Device(
        name,
        keys,
        x3dh.Party(account, keys.sign_public, keys.enc_public),
        spk_secret,
        store,
        batch,
        Randomness(name),
    )


@dataclass
class Pair:
    alice: Device
    bob: Device
    a: ratchet.Session
    b: ratchet.Session


def start(first: bytes = b"hello", opk_index: int | None = 0) -> Pair:
    """Alice sets up a session from Bob's bundle and sends ``first``;
    Bob accepts it from his store."""
    alice, bob = make_device("alice"), make_device("bob")
    a = x3dh.initiate(
        FAST, alice.party, alice.keys.enc_secret, bob.bundle(opk_index), alice.rand(64)
    )
    raw = a.encrypt(first)
    b, plaintext, bob.store = x3dh.respond_from_store(
        FAST, alice.party, bob.party, bob.keys.enc_secret, bob.store,
        ratchet.decode_message(raw), bob.rand(), T0,
    )  # fmt: skip
    assert plaintext == first
    return Pair(alice, bob, a, b)


def next_message_key(session: ratchet.Session) -> bytes:
    """The key the session's next message will be sent under."""
    cks = session.state.cks
    assert cks is not None
    return ratchet.kdf_ck(cks)[1]


class Side:
    """A device with a session book (PROTOCOL.md §19.11)."""

    def __init__(self, device: Device) -> None:
        self.d = device
        self.book = SessionBook()

    def start(self, other: Side, opk: int | None = 0) -> bytes:
        self.book, sid = self.book.start(
            FAST, self.d.party, self.d.keys.enc_secret, other.d.bundle(opk), self.d.rand(64)
        )
        return sid

    def send(self, sid: bytes, text: bytes) -> tuple[bytes, bytes]:
        self.book, raw = self.book.encrypt(sid, text)
        return sid, raw

    def receive(self, sender: Side, wire: tuple[bytes, bytes]) -> sessions.Received:
        sid, raw = wire
        got = self.book.receive(
            FAST, self.d.party, self.d.keys.enc_secret, self.d.store, sid, sender.d.party, raw,
            self.d.rand(), T0,
        )  # fmt: skip
        self.book, self.d.store = got.book, got.store
        return got


def book_pair() -> tuple[Side, Side]:
    return Side(make_device("alice")), Side(make_device("bob"))
