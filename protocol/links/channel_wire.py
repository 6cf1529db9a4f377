"""Frames of the per-link channel ``/smu/channel/1`` (PROTOCOL.md §17.3.2).

A frame is one canonical MessagePack array ``[type, ...fields]``; the
stream puts a 4-byte length in front of it, as on every SMU stream (§11.1).
The channel's version travels once, in HELLO, rather than in every frame:
the protocol id already names the major version (§17.3.1).

Decoding checks, in this order, the size against the receiver's own limit,
the canonical form, the type, the field count and types, and every count
and range, so nothing of an invalid frame is used (§17.3.2).  Each failure
is an ``InvalidInput``.  Whether a valid frame is allowed *now* (HELLO
first, sequence numbers, windows) is the machine's check, not this one's.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from protocol.core.canonical import decode_flat, encode_flat
from protocol.core.errors import SchemaError, SizeLimitError, UnsupportedVersionError

PROTOCOL_ID = "/smu/channel/1"
#: the highest channel version this code speaks (HELLO, §17.3.1)
CHANNEL_VERSION = 1

#: the largest payload of one item: the largest envelope (1 MiB, §15.7)
#: plus 64 KiB for whatever header a content kind puts around it.  Items
#: are never split across frames, so this fixes the minima below.
MAX_ITEM_BYTES = 1024 * 1024 + 64 * 1024
#: what one item costs in a window beyond its payload: a receiver keeps a
#: few dozen bytes of bookkeeping per unprocessed item, and the charge
#: bounds the item count of a window without a second number (§17.3.3)
ITEM_COST = 64
#: the smallest max_frame_bytes a HELLO may announce: one DATA frame with
#: one largest item (at most MAX_ITEM_BYTES + 23 bytes) always fits
MIN_FRAME_BYTES = 1024 * 1024 + 128 * 1024
#: the smallest window a HELLO or ACK may announce: one largest item fits,
#: so no sender can wait for a window that never opens
MIN_WINDOW = MIN_FRAME_BYTES
#: windows and frame sizes are unsigned 32-bit on the wire
MAX_U32 = (1 << 32) - 1
#: sequence numbers are unsigned 64-bit; the first item is 1
MAX_SEQ = (1 << 64) - 1
#: items in one DATA frame, checked before any item is looked at
MAX_ITEMS_PER_FRAME = 1024
#: content kinds are chosen by the channel's user (DESIGN §10); unsigned 16-bit
MAX_KIND = (1 << 16) - 1
#: UTF-8 bytes of a CLOSE reason
MAX_REASON_BYTES = 256

#: bounds on the encoding, for packing DATA frames without encoding twice:
#: fixarray + type + seq (u64: 9) + array header (dc + 2 for <= 1024 items)
DATA_HEADER_BOUND = 14
#: per item: fixarray + kind (u16: 3) + bin header (c6 + 4)
ITEM_FRAMING_BOUND = 9


class FrameType(IntEnum):
    HELLO = 1
    DATA = 2
    ACK = 3
    PING = 4
    CLOSE = 5


class CloseCode(IntEnum):
    """Why a side closes the channel (CLOSE, §17.3.6)."""

    #: its user is done with the link (or the node is stopping)
    NORMAL = 0
    #: the other side sent invalid input; the reason names the error code
    PROTOCOL = 1
    #: the other side acknowledged nothing for ``stall_timeout`` while
    #: items were waiting for it
    STALLED = 2
    #: nothing arrived from the other side in time (no HELLO, or silence)
    TIMEOUT = 3


@dataclass(frozen=True, slots=True)
class HelloFrame:
    #: the highest channel version the sender speaks (1)
    version: int
    #: bytes of item cost the sender lets the receiver have in flight
    window: int
    #: the largest frame the sender accepts
    max_frame: int


@dataclass(frozen=True, slots=True)
class DataFrame:
    #: the sequence number of the first item; the others follow by one
    first_seq: int
    #: ``(kind, payload)`` pairs, in sequence order
    items: tuple[tuple[int, bytes], ...]


@dataclass(frozen=True, slots=True)
class AckFrame:
    #: every item up to and including this one has been processed (0: none)
    seq: int
    #: the window the sender grants from now on (never smaller than before)
    window: int


@dataclass(frozen=True, slots=True)
class PingFrame:
    pass


@dataclass(frozen=True, slots=True)
class CloseFrame:
    code: CloseCode
    reason: str


Frame = HelloFrame | DataFrame | AckFrame | PingFrame | CloseFrame


def item_cost(payload_bytes: int) -> int:
    """What one item counts against a window (§17.3.3)."""
    return payload_bytes + ITEM_COST


def data_bound(payload_bytes: int, items: int) -> int:
    """An upper bound on the size of a DATA frame with ``items`` items
    whose payloads total ``payload_bytes``."""
    return DATA_HEADER_BOUND + items * ITEM_FRAMING_BOUND + payload_bytes


def reason_text(text: str) -> str:
    """``text`` made fit for a CLOSE reason: printable, at most
    MAX_REASON_BYTES of UTF-8 (cut on a character boundary)."""
    clean = "".join(c if c.isprintable() else "?" for c in text)
    raw = clean.encode("utf-8")[:MAX_REASON_BYTES]
    return raw.decode("utf-8", errors="ignore")


def encode_frame(frame: Frame) -> bytes:
    match frame:
        case HelloFrame(version, window, max_frame):
            return encode_flat([int(FrameType.HELLO), version, window, max_frame])
        case DataFrame(first_seq, items):
            pairs = [[kind, payload] for kind, payload in items]
            return encode_flat([int(FrameType.DATA), first_seq, pairs])
        case AckFrame(seq, window):
            return encode_flat([int(FrameType.ACK), seq, window])
        case PingFrame():
            return encode_flat([int(FrameType.PING)])
        case CloseFrame(code, reason):
            return encode_flat([int(FrameType.CLOSE), int(code), reason])
    raise TypeError(f"not a channel frame: {frame!r}")  # pragma: no cover


def _uint(value: object, low: int, high: int, what: str) -> int:
    if type(value) is not int or not low <= value <= high:
        raise SchemaError(f"{what} must be an integer from {low} to {high}")
    return value


def _fields(value: list[object], count: int, layout: str) -> None:
    if len(value) != count:
        raise SchemaError(f"{layout} must have {count} elements, not {len(value)}")


def _items(value: object, first_seq: int) -> tuple[tuple[int, bytes], ...]:
    if type(value) is not list:
        raise SchemaError("DATA items are an array")
    if not value:
        raise SchemaError("a DATA frame holds at least one item")
    if len(value) > MAX_ITEMS_PER_FRAME:
        raise SizeLimitError(f"{len(value)} items in one frame, over {MAX_ITEMS_PER_FRAME}")
    if first_seq + len(value) - 1 > MAX_SEQ:
        raise SchemaError("sequence numbers past 2^64 - 1")
    items = []
    for item in value:
        if type(item) is not list or len(item) != 2:
            raise SchemaError("an item is [kind, payload]")
        kind = _uint(item[0], 0, MAX_KIND, "an item kind")
        payload = item[1]
        if type(payload) is not bytes:
            raise SchemaError("an item payload is a bin")
        if len(payload) > MAX_ITEM_BYTES:
            raise SizeLimitError(f"an item of {len(payload)} bytes, over {MAX_ITEM_BYTES}")
        items.append((kind, payload))
    return tuple(items)


def _reason(value: object) -> str:
    if type(value) is not str:
        raise SchemaError("a CLOSE reason is a str")
    if len(value.encode("utf-8")) > MAX_REASON_BYTES:
        raise SizeLimitError(f"a CLOSE reason is at most {MAX_REASON_BYTES} bytes")
    if not value.isprintable():
        raise SchemaError("a CLOSE reason is printable text")
    return value


def decode_frame(data: bytes, max_frame_bytes: int) -> Frame:
    """Parse and check one frame against the receiver's ``max_frame_bytes``;
    every failure is an ``InvalidInput`` (§17.3.2)."""
    if len(data) > max_frame_bytes:
        raise SizeLimitError(f"frame of {len(data)} bytes, over {max_frame_bytes}")
    value = decode_flat(data, max_frame_bytes)
    if type(value) is not list or not value:
        raise SchemaError("a channel frame is an array [type, ...]")
    try:
        ftype = FrameType(_uint(value[0], 0, 255, "the frame type"))
    except ValueError as exc:
        raise SchemaError(f"unknown channel frame type {value[0]!r}") from exc
    if ftype is FrameType.HELLO:
        _fields(value, 4, "HELLO [1, version, window, max_frame]")
        version = _uint(value[1], 0, 255, "the version")
        if version == 0:
            raise UnsupportedVersionError("channel version 0")
        window = _uint(value[2], MIN_WINDOW, MAX_U32, "the window")
        max_frame = _uint(value[3], MIN_FRAME_BYTES, MAX_U32, "max_frame")
        return HelloFrame(version, window, max_frame)
    if ftype is FrameType.DATA:
        _fields(value, 3, "DATA [2, first_seq, items]")
        first_seq = _uint(value[1], 1, MAX_SEQ, "first_seq")
        return DataFrame(first_seq, _items(value[2], first_seq))
    if ftype is FrameType.ACK:
        _fields(value, 3, "ACK [3, seq, window]")
        seq = _uint(value[1], 0, MAX_SEQ, "the acknowledged seq")
        return AckFrame(seq, _uint(value[2], MIN_WINDOW, MAX_U32, "the window"))
    if ftype is FrameType.PING:
        _fields(value, 1, "PING [4]")
        return PingFrame()
    _fields(value, 3, "CLOSE [5, code, reason]")
    try:
        code = CloseCode(_uint(value[1], 0, 255, "the close code"))
    except ValueError as exc:
        raise SchemaError(f"unknown close code {value[1]!r}") from exc
    return CloseFrame(code, _reason(value[2]))
