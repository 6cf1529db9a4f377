"""Padding of an envelope's plaintext to size buckets (PROTOCOL.md §15.3
step 7, §15.5 step 5): what an observer sees of a content's length.

The plaintext is ``enc([inner bin, signature bin(64), pad bin])``; ``pad``
is all zeros, and its length is fixed by the rest: the largest ``n`` for
which the plaintext is at most ``bucket(base)`` bytes, ``base`` being the
plaintext's length with an empty pad.  One length per plaintext, so the
receiver recomputes it and refuses anything else (canonical padding).

Buckets: at least ``MIN_BUCKET`` = 1,024 bytes, so that every short text,
receipt and copy looks alike (a text envelope's plaintext is about 300
bytes plus the text); above that, Padmé (Nikitin et al., PETS 2019):
round the length up so that only its top ``floor(log2 E) + 1`` bits may be
non-zero, ``E = floor(log2 L)``, which costs at most 12 % and leaks
O(log log L) bits of the length.  Plaintexts over ``MAX_PADDED`` are not
padded (no envelope could carry them padded).
"""

from __future__ import annotations

from protocol.core.canonical import encode_flat
from protocol.core.errors import SchemaError

MIN_BUCKET = 1024
#: the largest content plus the inner's fields; beyond, no padding
MAX_PADDED = 960 * 1024 + 8 * 1024


def bucket(length: int) -> int:
    """The size a plaintext of ``length`` bytes is padded up to."""
    if length <= MIN_BUCKET:
        return MIN_BUCKET
    if length > MAX_PADDED:
        return length
    e = length.bit_length() - 1
    s = e.bit_length()
    mask = (1 << (e - s)) - 1
    return min((length + mask) & ~mask, MAX_PADDED)


def _size(inner_raw: bytes, signature: bytes, n: int) -> int:
    # only the bin header of the pad depends on n (2, 3 or 5 bytes, §2.1)
    header = 2 if n < 1 << 8 else 3 if n < 1 << 16 else 5
    return len(encode_flat([inner_raw, signature, b""])) - 2 + header + n


def pad_length(inner_raw: bytes, signature: bytes) -> int:
    base = _size(inner_raw, signature, 0)
    target = bucket(base)
    n = target - base
    while n > 0 and _size(inner_raw, signature, n) > target:
        n -= 1
    return n


def padded_plaintext(inner_raw: bytes, signature: bytes) -> bytes:
    return encode_flat([inner_raw, signature, bytes(pad_length(inner_raw, signature))])


def check_pad(inner_raw: bytes, signature: bytes, pad: object) -> None:
    """``SchemaError`` unless ``pad`` is the one padding of this plaintext."""
    if type(pad) is not bytes or len(pad) != pad_length(inner_raw, signature):
        raise SchemaError("the padding is not the plaintext's canonical padding")
    if pad.count(0) != len(pad):
        raise SchemaError("the padding is not the plaintext's canonical padding")


__all__ = ["MAX_PADDED", "MIN_BUCKET", "bucket", "check_pad", "pad_length", "padded_plaintext"]
