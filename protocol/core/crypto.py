"""Hashes, signatures and key checks, composed from libsodium (PROTOCOL.md §3).

Every hash and signature is domain-separated: its input starts with an ASCII
label ending in a NUL byte, so no two purposes share an input.
"""

from __future__ import annotations

import hashlib

import nacl.bindings as sodium
import nacl.exceptions

from protocol.core.errors import BadSignatureError, InvalidKeyError

ED25519_PUBLIC_BYTES = 32
ED25519_SIGNATURE_BYTES = 64
X25519_PUBLIC_BYTES = 32
HASH_BYTES = 32

# Domain labels (PROTOCOL.md §3.1).  Changing one is a protocol change.
D_EVENT_ID = b"smu/event-id/v1\x00"
D_EVENT_SIG = b"smu/event-sig/v1\x00"
D_POW = b"smu/pow/v1\x00"
D_POP = b"smu/pop/v1\x00"
D_RECOVERY_COMMIT = b"smu/recovery-commit/v1\x00"
D_FINGERPRINT = b"smu/fingerprint/v1\x00"
D_SAFETY_NUMBER = b"smu/safety-number/v2\x00"
D_STATE_DIGEST = b"smu/state-digest/v1\x00"
D_PAPER_KEY = b"smu/paper-key/v1\x00"
D_DEVICE_RECORD = b"smu/device-record/v1\x00"
D_INVITE_CHECKSUM = b"smu/invite-checksum/v1\x00"


def hash32(domain: bytes, data: bytes) -> bytes:
    """BLAKE2b-256 (unkeyed) of ``domain || data``."""
    return hashlib.blake2b(domain + data, digest_size=32).digest()


def hash_with(domain: bytes, data: bytes, size: int) -> bytes:
    return hashlib.blake2b(domain + data, digest_size=size).digest()


def verify(public_key: bytes, message: bytes, signature: bytes) -> None:
    """libsodium's strict Ed25519 verification; raises ``BadSignatureError``.

    libsodium rejects non-canonical and small-order public keys and R values
    and non-reduced S, so each (key, message) pair has signatures that only
    the key holder can make.
    """
    if len(public_key) != ED25519_PUBLIC_BYTES or len(signature) != ED25519_SIGNATURE_BYTES:
        raise BadSignatureError("wrong key or signature length")
    try:
        sodium.crypto_sign_open(signature + message, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError) as exc:
        raise BadSignatureError("signature does not verify") from exc


def sign(secret_key: bytes, message: bytes) -> bytes:
    """Ed25519 signature (64 bytes) with a libsodium secret key (64 bytes)."""
    return bytes(sodium.crypto_sign(message, secret_key)[:ED25519_SIGNATURE_BYTES])


# Curve25519 u-coordinates of small order (PROTOCOL.md §3.3).  A canonical
# encoding (u < p, top bit clear) of any other value is a usable X25519 key.
_P = 2**255 - 19
_SMALL_ORDER_U = frozenset(
    u.to_bytes(32, "little")
    for u in (
        0,
        1,
        325606250916557431795983626356110631294008115727848805560023387167927233504,
        39382357235489614581723060781553021112529911719440698176882885853963445705823,
        _P - 1,
    )
)


def check_x25519_public(key: bytes) -> None:
    if len(key) != X25519_PUBLIC_BYTES:
        raise InvalidKeyError("an X25519 key is 32 bytes")
    if int.from_bytes(key, "little") >= _P:
        raise InvalidKeyError("X25519 key is not canonically encoded")
    if key in _SMALL_ORDER_U:
        raise InvalidKeyError("X25519 key has small order")


def check_ed25519_public(key: bytes) -> None:
    """Full check of an Ed25519 public key (used where no signature covers it)."""
    if len(key) != ED25519_PUBLIC_BYTES:
        raise InvalidKeyError("an Ed25519 key is 32 bytes")
    if not sodium.crypto_core_ed25519_is_valid_point(key):
        raise InvalidKeyError("Ed25519 key is not a valid point of prime order")


def leading_zero_bits_ok(digest: bytes, bits: int) -> bool:
    """True when the big-endian number ``digest`` has ``bits`` leading zeros."""
    if bits == 0:
        return True
    return (
        int.from_bytes(digest[:8], "big") >> (64 - bits) == 0
        if bits <= 64
        else (int.from_bytes(digest, "big") >> (256 - bits) == 0)
    )


def pow_hasher(prefix: bytes) -> hashlib.blake2b:
    """A BLAKE2b-256 state that has absorbed ``D_POW || prefix``; copy it per try."""
    h = hashlib.blake2b(digest_size=32)
    h.update(D_POW + prefix)
    return h
