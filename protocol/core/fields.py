"""Field checks shared by every decoder (PROTOCOL.md §2).

Each takes a value straight from ``canonical.decode`` and either returns it
with its type narrowed or raises ``SchemaError`` naming the field.  ``type(x)
is int`` rather than ``isinstance``: ``True`` is not an integer on the wire.
"""

from __future__ import annotations

from protocol.core.errors import SchemaError

#: the longest libp2p peer id (base58 text) any frame, grant or record may
#: carry (PROTOCOL.md §1): one limit everywhere.  Ed25519 peer ids are 52.
MAX_PEER_ID_CHARS = 160


def fixed_bin(value: object, size: int, what: str) -> bytes:
    if type(value) is not bytes or len(value) != size:
        raise SchemaError(f"{what} must be {size} bytes")
    return value


def integer(value: object, what: str) -> int:
    if type(value) is not int:
        raise SchemaError(f"{what} must be an integer")
    return value


def uint(value: object, what: str) -> int:
    """An unsigned integer (the canonical encoding already bounds it to 64 bits)."""
    if type(value) is not int or value < 0:
        raise SchemaError(f"{what} must be a non-negative integer")
    return value
