"""The ratchet against an independent implementation: the ``doubleratchet``
package (Syndace, test-only, pinned in the dev extras), configured with
the KDF parameters both support (PROTOCOL.md §19.5): HKDF-SHA-256 with the
root key as salt and ``INFO_ROOT`` as info for the root chain, separate
HMAC-SHA-256 of ``0x01`` / ``0x02`` for the message chains.

Three levels: the root KDF and the chain KDF step for step; then whole
conversations in which one side is ours and the other is doubleratchet's
Diffie-Hellman ratchet (its message keys, our AEAD and wire form), both
ways round, with a gap; and the X3DH secret recomputed with another HKDF
(the ``cryptography`` package's)."""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Coroutine
from typing import Any, ClassVar, TypeVar

import nacl.bindings as sodium
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from protocol.messaging import ratchet, x3dh
from protocol.messaging.ratchet import Header, RatchetMessage, Session, decode_message

from .conftest import FAST, T0
from .ratchet_support import Randomness, make_device

pytest.importorskip("doubleratchet")
from doubleratchet import Header as DRHeader
from doubleratchet.kdf_chain import KDFChain
from doubleratchet.recommended import HashFunction, kdf_hkdf, kdf_separate_hmacs
from doubleratchet.recommended.diffie_hellman_ratchet_curve25519 import (
    DiffieHellmanRatchet as Curve25519Ratchet,
)

T = TypeVar("T")
#: doubleratchet's message-chain constant: HMAC(ck, 0x02) becomes the next
#: chain key (the first 32 bytes of the step), HMAC(ck, 0x01) the message key
CHAIN_CONSTANT = b"\x02\x01"


def run(coro: Coroutine[Any, Any, T]) -> T:
    """doubleratchet's API is async but never waits on a loop."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    raise AssertionError("doubleratchet awaited an event loop")


class RootKDF(kdf_hkdf.KDF):
    @staticmethod
    def _get_hash_function() -> HashFunction:
        return HashFunction.SHA_256

    @staticmethod
    def _get_info() -> bytes:
        return ratchet.INFO_ROOT


class ChainKDF(kdf_separate_hmacs.KDF):
    @staticmethod
    def _get_hash_function() -> HashFunction:
        return HashFunction.SHA_256


class InjectedRatchet(Curve25519Ratchet):
    """Takes its "fresh" ratchet secrets from a queue the test fills."""

    secrets: ClassVar[deque[bytes]] = deque()

    @staticmethod
    def _generate_priv() -> bytes:
        return InjectedRatchet.secrets.popleft()


def _bytes(label: str, n: int = 32) -> bytes:
    return hashlib.blake2b(label.encode(), digest_size=n).digest()


def test_root_and_chain_kdfs_match_step_for_step() -> None:
    for i in range(20):
        rk, dh_out, ck = _bytes(f"rk{i}"), _bytes(f"dh{i}"), _bytes(f"ck{i}")
        chain = KDFChain.create(RootKDF, rk)
        new_ck = run(chain.step(dh_out, 32))
        assert (chain.model.key, new_ck) == ratchet.kdf_rk(rk, dh_out)
        mchain = KDFChain.create(ChainKDF, ck)
        ours = ck
        for _ in range(5):
            mk = run(mchain.step(CHAIN_CONSTANT, 32))
            ours, our_mk = ratchet.kdf_ck(ours)
            assert (mchain.model.key, mk) == (ours, our_mk)


def _seal(mk: bytes, ad: bytes, h: DRHeader, plaintext: bytes) -> bytes:
    """A message under doubleratchet's key and header, in our AEAD and form."""
    header = Header(h.ratchet_pub, h.previous_sending_chain_length, h.sending_chain_length)
    key, nonce = ratchet.message_aead_keys(mk)
    ct = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
        plaintext, ad + header.encode(), nonce, key
    )
    return RatchetMessage(header, bytes(ct)).encode()


def _dr_header(raw: bytes) -> tuple[DRHeader, RatchetMessage]:
    m = decode_message(raw)
    return DRHeader(ratchet_pub=m.header.dh, previous_sending_chain_length=m.header.pn,
                    sending_chain_length=m.header.n), m  # fmt: skip


def _dr_open(theirs: Any, raw: bytes, ad: bytes) -> tuple[bytes, dict[Any, bytes]]:
    h, m = _dr_header(raw)
    mk, skipped = run(theirs.next_decryption_key(h))
    return ratchet._open(mk, ad, m.header, m.ciphertext), dict(skipped)


TURNS = [3, 1, 4, 1, 5, 2]


def test_our_initiator_talks_to_their_responder() -> None:
    """Our Alice (X3DH initiator) and doubleratchet as Bob, seeded with the
    same root key and Bob's signed prekey as his first ratchet key."""
    alice, bob = make_device("alice"), make_device("bob")
    rand = Randomness("x")
    a = x3dh.initiate(FAST, alice.party, alice.keys.enc_secret, bob.bundle(0), alice.rand(64))
    ad = a.state.ad
    first = a.encrypt(b"m0")
    sk = _x3dh_secret_independently(alice, bob, decode_message(first))
    InjectedRatchet.secrets.clear()
    InjectedRatchet.secrets.extend(rand() for _ in range(20))
    theirs = run(InjectedRatchet.create(
        bob.spk_secret, decode_message(first).header.dh, RootKDF, sk, ChainKDF, CHAIN_CONSTANT, 100,
    ))  # fmt: skip
    assert _dr_open(theirs, first, ad) == (b"m0", {})
    for turn, count in enumerate(TURNS):
        for i in range(count):
            text = b"t%d/%d" % (turn, i)
            if turn % 2 == 0:
                assert _dr_open(theirs, a.encrypt(text), ad)[0] == text
            else:
                mk, h = run(theirs.next_encryption_key())
                assert a.decrypt(_seal(mk, ad, h, text), rand()) == text
    assert a.state.pending is None


def _x3dh_secret_independently(alice: Any, bob: Any, m: RatchetMessage) -> bytes:
    """SK from §19.4 with the ``cryptography`` package's HKDF and X25519."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

    def exchange(secret: bytes, public: bytes) -> bytes:
        return X25519PrivateKey.from_private_bytes(secret).exchange(
            X25519PublicKey.from_public_bytes(public)
        )

    p = m.prekey
    assert p is not None and p.opk_id is not None
    opk_secret = bob.store.one_time[p.opk_id][0]
    ikm = b"\xff" * 32 + b"".join(
        [exchange(bob.spk_secret, p.ik), exchange(bob.keys.enc_secret, p.ek),
         exchange(bob.spk_secret, p.ek), exchange(opk_secret, p.ek)]
    )  # fmt: skip
    ad = x3dh.session_ad(FAST, alice.party, bob.party)
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=bytes(32), info=x3dh.INFO_X3DH + ad)
    return hkdf.derive(ikm)


def test_their_initiator_talks_to_our_responder_with_gaps() -> None:
    """doubleratchet as Alice (root key = the X3DH secret, Bob's signed
    prekey as the remote key), our Bob; messages skipped in a chain open
    later from both sides' stored keys."""
    alice, bob = make_device("alice"), make_device("bob")
    rand = Randomness("y")
    # our Alice only to produce the prekey header and the X3DH secret
    a = x3dh.initiate(FAST, alice.party, alice.keys.enc_secret, bob.bundle(0), alice.rand(64))
    pre = decode_message(a.encrypt(b"ignored"))
    sk = _x3dh_secret_independently(alice, bob, pre)
    ad = x3dh.session_ad(FAST, alice.party, bob.party)
    InjectedRatchet.secrets.clear()
    InjectedRatchet.secrets.extend(rand() for _ in range(20))
    theirs = run(InjectedRatchet.create(None, bob.spk, RootKDF, sk, ChainKDF, CHAIN_CONSTANT, 100))
    mk, h = run(theirs.next_encryption_key())
    first = decode_message(_seal(mk, ad, h, b"first"))
    first = RatchetMessage(first.header, first.ciphertext, pre.prekey)
    b, pt, _ = x3dh.respond_from_store(
        FAST, alice.party, bob.party, bob.keys.enc_secret, bob.store, first, rand(), T0
    )
    assert pt == b"first"
    held: list[bytes] = []
    for turn, count in enumerate(TURNS):
        for i in range(count):
            text = b"u%d/%d" % (turn, i)
            if turn % 2 == 0:
                mk, h = run(theirs.next_encryption_key())
                raw = _seal(mk, ad, h, text)
                if i == 0 and count > 1:
                    held.append(raw)  # arrives after the rest of its chain
                else:
                    assert b.decrypt(raw, rand()) == text
            else:
                assert _dr_open(theirs, b.encrypt(text), ad)[0] == text
    for raw in held:
        assert b.decrypt(raw, rand()).startswith(b"u")
    assert isinstance(b, Session) and b.state.skipped == {}
