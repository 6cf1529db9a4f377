"""What mailbox tests share: envelopes that only have to pass a mailbox's
checks (``envelope.peek``: shape, size, a wrap for the device), made in
microseconds, as a flooding stranger would make them."""

from __future__ import annotations

import hashlib

from protocol.core.canonical import encode_flat
from protocol.core.params import FORMAT_VERSION, NetworkParams
from protocol.messaging.envelope import WRAP_BYTES, WRAP_STATIC_X25519


def junk_envelope(params: NetworkParams, device: bytes, tag: bytes | str, pad: int = 16) -> bytes:
    """A structurally valid envelope for ``device`` that no one can open;
    distinct per ``tag``, ``pad`` bytes of "ciphertext" (at least 16)."""
    if isinstance(tag, str):
        tag = tag.encode()
    mid = hashlib.blake2b(tag, digest_size=16).digest()
    wrap = [device, WRAP_STATIC_X25519, b"k" * 32, b"w" * WRAP_BYTES]
    return encode_flat(
        [FORMAT_VERSION, params.suite, params.network_id, b"r" * 32, mid, [wrap], b"n" * 24,
         b"c" * max(16, pad)]
    )  # fmt: skip
