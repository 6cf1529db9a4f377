"""Frames of the reachability probe ``/smu/reach/1`` (PROTOCOL.md §17.4.1).

Every frame is a canonical MessagePack array ``[1, type, ...]`` behind the
4-byte length of §11.1, one request and one answer per stream:

* ``DIAL_ME [1, 1, nonce bin(16), port uint]``: the asker asks to be
  dialled back at ``port`` of the address its connection comes from;
* ``RESULT [1, 2, addr str, ok bool]``: the asked peer says where it
  dialled and whether the dial connected (a claim: the asker believes only
  the dial-back itself);
* ``REFUSED [1, 31, code str]``: over the asked peer's limits, or a
  request it will not serve (a relayed connection, a bad port);
* ``DIAL_BACK [1, 3, nonce bin(16)]``: sent by the asked peer on a
  *fresh* connection (a separate identity of its own), so a connection the
  asker opened cannot pass for reachability.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from protocol.core.canonical import decode_flat, encode_flat
from protocol.core.errors import SchemaError, UnsupportedVersionError

PROTOCOL_ID = "/smu/reach/1"
VERSION = 1
NONCE_BYTES = 16
#: every reach frame is small: a multiaddr and a few integers
MAX_FRAME = 512
MAX_ADDR_CHARS = 160
MAX_CODE_CHARS = 64


class ReachFrame(IntEnum):
    DIAL_ME = 1
    RESULT = 2
    DIAL_BACK = 3
    REFUSED = 31


@dataclass(frozen=True, slots=True)
class DialMe:
    nonce: bytes
    port: int


@dataclass(frozen=True, slots=True)
class Result:
    addr: str
    ok: bool


@dataclass(frozen=True, slots=True)
class DialBack:
    nonce: bytes


@dataclass(frozen=True, slots=True)
class ReachRefused:
    code: str


ReachMessage = DialMe | Result | DialBack | ReachRefused


def encode(msg: ReachMessage) -> bytes:
    if isinstance(msg, DialMe):
        return encode_flat([VERSION, int(ReachFrame.DIAL_ME), msg.nonce, msg.port])
    if isinstance(msg, Result):
        return encode_flat([VERSION, int(ReachFrame.RESULT), msg.addr, msg.ok])
    if isinstance(msg, DialBack):
        return encode_flat([VERSION, int(ReachFrame.DIAL_BACK), msg.nonce])
    return encode_flat([VERSION, int(ReachFrame.REFUSED), msg.code])


def _text(v: object, limit: int, what: str) -> str:
    if type(v) is not str or not 0 < len(v) <= limit or not all(0x21 <= ord(c) <= 0x7E for c in v):
        raise SchemaError(f"{what}: 1 to {limit} visible ASCII characters")
    return v


def _nonce(v: object) -> bytes:
    if type(v) is not bytes or len(v) != NONCE_BYTES:
        raise SchemaError(f"nonce must be bin({NONCE_BYTES})")
    return v


def decode(raw: bytes) -> ReachMessage:
    """One frame; raises ``InvalidInput`` for anything else."""
    value = decode_flat(raw, MAX_FRAME)
    if type(value) is not list or len(value) < 2:
        raise SchemaError("a reach frame is an array [version, type, ...]")
    if type(value[0]) is not int or value[0] != VERSION:
        raise UnsupportedVersionError(f"reach version {value[0]!r}")
    kind, fields = value[1], value[2:]
    if kind == ReachFrame.DIAL_ME and len(fields) == 2:
        port = fields[1]
        if type(port) is not int or not 0 < port < 65536:
            raise SchemaError("port must be 1 to 65535")
        return DialMe(_nonce(fields[0]), port)
    if kind == ReachFrame.RESULT and len(fields) == 2:
        if type(fields[1]) is not bool:
            raise SchemaError("ok must be a boolean")
        return Result(_text(fields[0], MAX_ADDR_CHARS, "addr"), fields[1])
    if kind == ReachFrame.DIAL_BACK and len(fields) == 1:
        return DialBack(_nonce(fields[0]))
    if kind == ReachFrame.REFUSED and len(fields) == 1:
        return ReachRefused(_text(fields[0], MAX_CODE_CHARS, "code"))
    raise SchemaError(f"not a reach frame: type {kind!r} with {len(fields)} fields")
