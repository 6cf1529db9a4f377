"""Canonical MessagePack (docs/PROTOCOL.md §2).

Every value has exactly one encoding: the shortest integer form, ``str`` for
text and ``bin`` for bytes, maps with unique keys sorted by their encoded
bytes, no floats, no nil, no ext types and no trailing bytes.  Decoding
enforces all of this by re-encoding what it read and comparing bytes, so
a second valid encoding of a value cannot exist on the wire.
"""

from __future__ import annotations

from typing import Any

import msgpack

from protocol.core.errors import DecodeError, NonCanonicalError, SizeLimitError

# Nesting deeper than this is never needed by a protocol value; refusing it
# early keeps hostile input from exhausting the decoder's stack.
MAX_DEPTH = 16

Value = Any  # int | bool | str | bytes | list[Value] | dict[str|bytes, Value]


def _ext_hook(code: int, data: bytes) -> object:
    raise NonCanonicalError("ext types are not allowed")


def _check_pairs(pairs: list[tuple[object, object]]) -> dict[object, object]:
    keys = [_encode_key(k) for k, _ in pairs]
    if keys != sorted(keys) or len(set(keys)) != len(keys):
        raise NonCanonicalError("map keys must be unique and sorted by their encoding")
    return dict(pairs)


def _encode_key(key: object) -> bytes:
    if not isinstance(key, str | bytes):
        raise NonCanonicalError("map keys must be str or bin")
    return bytes(msgpack.packb(key, use_bin_type=True))


def _normalise(value: Value, depth: int = 0) -> Value:
    """Sort maps and reject values that have no canonical form."""
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    t = type(value)
    if t is int or t is bool or t is str or t is bytes:
        if t is int and not -(2**63) <= value < 2**64:
            raise ValueError("integer out of range")
        return value
    if t is list or t is tuple:
        return [_normalise(v, depth + 1) for v in value]
    if t is dict:
        if not all(isinstance(k, str | bytes) for k in value):
            raise ValueError("map keys must be str or bytes")
        items = sorted(((_encode_key(k), k, v) for k, v in value.items()), key=lambda x: x[0])
        return {k: _normalise(v, depth + 1) for _, k, v in items}
    raise ValueError(f"type {t.__name__} has no canonical encoding")


def encode(value: Value) -> bytes:
    """Encode ``value`` canonically.  Raises ``ValueError`` on local misuse."""
    return bytes(msgpack.packb(_normalise(value), use_bin_type=True))


def encode_flat(value: list[Value] | tuple[Value, ...]) -> bytes:
    """Fast path for arrays of scalars and nested arrays (no maps).

    Used for events, whose shape the caller has already checked.
    """
    return bytes(msgpack.packb(value, use_bin_type=True))


def decode(data: bytes, max_size: int) -> Value:
    """Decode canonical bytes, enforcing ``max_size`` before parsing."""
    if len(data) > max_size:
        raise SizeLimitError(f"{len(data)} bytes is over the limit of {max_size}")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            ext_hook=_ext_hook,
            object_pairs_hook=_check_pairs,
        )
    except NonCanonicalError:
        raise
    except msgpack.ExtraData as exc:
        raise NonCanonicalError("trailing bytes after the value") from exc
    except (ValueError, TypeError, UnicodeDecodeError, msgpack.UnpackException) as exc:
        raise DecodeError(f"not valid MessagePack: {type(exc).__name__}") from exc
    except RecursionError as exc:
        raise DecodeError("value nested too deeply") from exc
    try:
        again = encode(value)
    except ValueError as exc:
        raise NonCanonicalError(str(exc)) from exc
    if again != data:
        raise NonCanonicalError("not the canonical encoding of its value")
    return value


def decode_flat(data: bytes, max_size: int) -> Value:
    """Decode bytes whose schema the caller checks field by field.

    Skips the Python-level walk of :func:`decode`; canonical form is still
    enforced by re-encoding in C and comparing.  The caller's schema check
    must reject maps, floats and nil (events never contain them).
    """
    if len(data) > max_size:
        raise SizeLimitError(f"{len(data)} bytes is over the limit of {max_size}")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            ext_hook=_ext_hook,
        )
        again = msgpack.packb(value, use_bin_type=True)
    except NonCanonicalError:
        raise
    except msgpack.ExtraData as exc:
        raise NonCanonicalError("trailing bytes after the value") from exc
    except (ValueError, TypeError, UnicodeDecodeError, msgpack.UnpackException) as exc:
        raise DecodeError(f"not valid MessagePack: {type(exc).__name__}") from exc
    except RecursionError as exc:
        raise DecodeError("value nested too deeply") from exc
    if again != data:
        raise NonCanonicalError("not the canonical encoding of its value")
    return value
