"""Codes people copy by hand or scan (PROTOCOL.md §4.7).

A code is a prefix plus Crockford base32 of ``payload || checksum``, where
the payload is canonical MessagePack and the checksum is the first 4 bytes
of a domain-separated hash of the payload, so a typo is caught before
anything is decoded.  The same body also travels as a URI (``smu://KIND/``),
which upper-cased fits a QR code's alphanumeric mode.  Parsing ignores
whitespace, hyphens and letter case.
"""

from __future__ import annotations

from protocol.core import crypto
from protocol.core.canonical import Value, decode, encode
from protocol.core.errors import ChecksumError, DecodeError, SizeLimitError
from protocol.core.keys import b32decode, b32encode

CHECKSUM_BYTES = 4
MAX_CODE_CHARS = 2048


def to_code(prefix: str, payload: Value, checksum_domain: bytes) -> str:
    raw = encode(payload)
    return prefix + b32encode(raw + crypto.hash_with(checksum_domain, raw, CHECKSUM_BYTES))


def from_code(text: str, prefixes: tuple[str, ...], checksum_domain: bytes, what: str) -> Value:
    """The payload of a code with one of ``prefixes``; typed errors otherwise."""
    if len(text) > MAX_CODE_CHARS:
        raise SizeLimitError(f"{what} is at most {MAX_CODE_CHARS} characters")
    clean = "".join(text.split()).lower()
    for prefix in prefixes:
        if clean.startswith(prefix):
            body = clean[len(prefix) :].replace("-", "")
            break
    else:
        raise DecodeError(f"{what} starts with {' or '.join(repr(p) for p in prefixes)}")
    nbytes = len(body) * 5 // 8
    if nbytes <= CHECKSUM_BYTES:
        raise DecodeError(f"{what} is too short")
    raw = b32decode(body, nbytes)
    payload, check = raw[:-CHECKSUM_BYTES], raw[-CHECKSUM_BYTES:]
    if crypto.hash_with(checksum_domain, payload, CHECKSUM_BYTES) != check:
        raise ChecksumError(f"{what} has a typo: its checksum does not match")
    return decode(payload, MAX_CODE_CHARS)
