"""The sealed layer of wrap scheme 2 (PROTOCOL.md §19.13): what a wrap
for one recipient device carries, sealed to that device so that nothing in
the clear names or links the sender (issue 13, item 2).

    data  = E ‖ AEAD(kek, nonce = 0^24, aad = D_WRAP2 ‖ device ‖ X, inner)
    kek   = H(D_WRAP2, DH(e, X) ‖ E ‖ X)
    inner = enc([session_id bin(32), [] | [account bin(32), device bin(32)],
                 session_message bin])

``X`` is the key the wrap is sealed to: the recipient's signed prekey (from
its record v2; forward secret once the prekey is retired) or, without one,
its encryption key; the wrap's key field names it, so the receiver knows
which secret to use without trying.  ``e`` is fresh per wrap (the caller
derives it from the envelope's seed, as scheme 1 does).  Inside: the
session id (the initiation id, §19.11), the initiator's account and device
next to a prekey message (the responder needs them to set the session up,
§19.13), and the session message, whose plaintext is the envelope's
content key.

This module only seals and opens; envelopes use it through ``scheme2.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import nacl.bindings as sodium
import nacl.exceptions

from protocol.core import crypto
from protocol.core.canonical import decode_flat, encode_flat
from protocol.core.errors import SchemaError
from protocol.core.fields import fixed_bin as _bin
from protocol.messaging.ratchet import KEY, MAX_MESSAGE_BYTES, dh, x25519_public
from protocol.messaging.session_errors import SessionDecryptError, SessionUsageError

D_WRAP2 = b"smu/wrap2/v1\x00"
WRAP_SCHEME_2 = 2
_ZERO_NONCE = bytes(24)
#: the inner's fixed part: array, session id, initiator, message header
_INNER_OVERHEAD = 1 + 34 + 1 + 2 * 34 + 3
MAX_INNER_BYTES = MAX_MESSAGE_BYTES + _INNER_OVERHEAD
#: a wrap's data, checked before anything else
MAX_DATA_BYTES = KEY + MAX_INNER_BYTES + 16


@dataclass(frozen=True, slots=True)
class Wrap2Inner:
    session_id: bytes
    #: (account, device) of the initiator, next to a prekey message
    initiator: tuple[bytes, bytes] | None
    message: bytes

    def encode(self) -> bytes:
        who: list[object] = [] if self.initiator is None else list(self.initiator)
        return encode_flat([self.session_id, who, self.message])


def _kek(shared: bytes, e_public: bytes, key: bytes) -> bytes:
    return crypto.hash32(D_WRAP2, shared + e_public + key)


def seal(device: bytes, key: bytes, e_secret: bytes, inner: Wrap2Inner) -> bytes:
    """The wrap data for ``device``, sealed to its X25519 ``key``."""
    if len(e_secret) != KEY or len(device) != 32 or len(inner.session_id) != 32:
        raise SessionUsageError("a wrap needs 32-byte secret, device and session id")
    if len(inner.message) > MAX_MESSAGE_BYTES:
        raise SessionUsageError("the session message is over its limit")
    crypto.check_x25519_public(key)
    e_public = x25519_public(e_secret)
    kek = _kek(dh(e_secret, key), e_public, key)
    boxed = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
        inner.encode(), D_WRAP2 + device + key, _ZERO_NONCE, kek
    )
    return e_public + bytes(boxed)


def open_wrap(device: bytes, key: bytes, secret: bytes, data: bytes) -> Wrap2Inner:
    """Open the wrap data sealed to ``key`` (whose ``secret`` this device
    holds).  Remote input: size first, then the ephemeral key, the AEAD,
    then the inner field by field."""
    if not KEY + 16 <= len(data) <= MAX_DATA_BYTES:
        raise SessionDecryptError("a wrap's data is out of bounds")
    e_public = data[:KEY]
    crypto.check_x25519_public(e_public)
    kek = _kek(dh(secret, e_public), e_public, key)
    try:
        raw = bytes(
            sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
                data[KEY:], D_WRAP2 + device + key, _ZERO_NONCE, kek
            )
        )
    except nacl.exceptions.CryptoError as exc:
        raise SessionDecryptError("the wrap does not open under this key") from exc
    return decode_inner(raw)


def decode_inner(raw: bytes) -> Wrap2Inner:
    v = decode_flat(raw, MAX_INNER_BYTES)
    if type(v) is not list or len(v) != 3:
        raise SchemaError("a wrap's inner is [session_id, initiator, message]")
    who = v[1]
    if type(who) is not list or len(who) not in (0, 2):
        raise SchemaError("the initiator is [] or [account, device]")
    if type(v[2]) is not bytes or not v[2]:
        raise SchemaError("the session message is a non-empty bin")
    initiator = (_bin(who[0], 32, "account"), _bin(who[1], 32, "device")) if who else None
    return Wrap2Inner(_bin(v[0], 32, "session id"), initiator, v[2])


__all__ = [
    "D_WRAP2",
    "MAX_DATA_BYTES",
    "WRAP_SCHEME_2",
    "Wrap2Inner",
    "decode_inner",
    "open_wrap",
    "seal",
]
