"""encoding.json: canonical MessagePack (docs/PROTOCOL.md §2)."""

from __future__ import annotations

from protocol.core.canonical import MAX_DEPTH, decode, encode

from ._common import FORMAT_NOTE, Json, assert_raises, params_json, to_tagged

#: ``decode`` is called with this size limit unless a case names another.
DEFAULT_MAX_SIZE = 4096


def _nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


_VALID: list[tuple[str, object]] = [
    ("zero", 0),
    ("positive fixint max", 127),
    ("uint8 min", 128),
    ("uint8 max", 255),
    ("uint16 min", 256),
    ("uint16 max", 65535),
    ("uint32 min", 65536),
    ("uint32 max", 2**32 - 1),
    ("uint64 min", 2**32),
    ("a timestamp (uint64)", 1_767_225_600_000),
    ("uint64 max", 2**64 - 1),
    ("negative fixint -1", -1),
    ("negative fixint min", -32),
    ("int8 max negative", -33),
    ("int8 min", -128),
    ("int16 max negative", -129),
    ("int16 min", -32768),
    ("int32 max negative", -32769),
    ("int32 min", -(2**31)),
    ("int64 max negative", -(2**31) - 1),
    ("int64 min", -(2**63)),
    ("false", False),
    ("true", True),
    ("empty str", ""),
    ("fixstr", "smu-vectors"),
    ("fixstr max (31 bytes)", "a" * 31),
    ("str8 min (32 bytes)", "b" * 32),
    ("str16 min (256 bytes)", "c" * 256),
    ("str is UTF-8 (NFC, 2-byte and 4-byte chars)", "Zoë \U0001f511"),
    ("empty bin", b""),
    ("bin8 (bytes are always bin, never str)", b"abc"),
    ("bin8 of a 32-byte key", bytes(range(32))),
    ("bin16 min (256 bytes)", bytes(256)),
    ("empty array", []),
    ("mixed array", [1, "a", b"\x00", True, [-1]]),
    ("fixarray max (15)", list(range(15))),
    ("array16 min (16)", list(range(16))),
    ("empty map", {}),
    (
        "map keys sorted by their encoded bytes: the length prefix sorts 'b' before 'aa'",
        {"aa": 1, "b": 2},
    ),
    ("a str key sorts before a bin key (0xa1 < 0xc4)", {b"a": 1, "a": 2}),
    ("nested map keys sorted too", {"z": {"y": 1, "x": [{"b": 0, "a": 1}]}, "a": 0}),
    ("nesting at the maximum depth", _nested(MAX_DEPTH)),
]

# (name, hex, error class, why).  Each decodes to a value with one canonical
# encoding, which is not these bytes; or to no protocol value at all.
_REJECTED: list[tuple[str, str, str, str]] = [
    ("uint8 for a fixint", "cc05", "NonCanonicalError", "5 is the one byte 0x05"),
    ("int8 for a positive fixint", "d005", "NonCanonicalError", "5 is the one byte 0x05"),
    ("uint16 for a uint8", "cd00ff", "NonCanonicalError", "255 is cc ff"),
    ("uint64 for 1", "cf0000000000000001", "NonCanonicalError", "1 is 0x01"),
    ("int16 for an int8", "d1ff80", "NonCanonicalError", "-128 is d0 80"),
    ("int64 for -1", "d3ffffffffffffffff", "NonCanonicalError", "-1 is 0xff"),
    (
        "int64 for a positive timestamp",
        "d3" + (1_767_225_600_000).to_bytes(8, "big").hex(),
        "NonCanonicalError",
        "a positive integer is never int8..int64",
    ),
    ("str8 where fixstr fits", "d903616263", "NonCanonicalError", "'abc' is a3 61 62 63"),
    ("str16 where fixstr fits", "da000161", "NonCanonicalError", "'a' is a1 61"),
    ("bin16 where bin8 fits", "c500016a", "NonCanonicalError", "bin8 holds up to 255 bytes"),
    ("array16 where fixarray fits", "dc000101", "NonCanonicalError", "[1] is 91 01"),
    ("map16 where fixmap fits", "de0001a16101", "NonCanonicalError", "{'a':1} is 81 a1 61 01"),
    ("unsorted map keys", "82a16201a16102", "NonCanonicalError", "keys sort by encoding"),
    ("map keys sorted by text, not encoding", "82a2616101a16202", "NonCanonicalError", ""),
    ("bin key before str key", "82c4016101a16102", "NonCanonicalError", "0xa1 sorts first"),
    ("duplicate map keys", "82a16101a16102", "NonCanonicalError", "keys are unique"),
    (
        "duplicate keys in a nested map",
        "81a16182a16101a16102",
        "NonCanonicalError",
        "{'a': {'a': 1, 'a': 2}}: the inner map's keys are unique",
    ),
    ("integer map key", "810101", "DecodeError", "map keys are str or bin"),
    ("array map key", "8191010101", "DecodeError", "map keys are str or bin"),
    ("float32", "ca3f800000", "NonCanonicalError", "no floats"),
    ("float32 NaN", "ca7fc00000", "NonCanonicalError", "no floats"),
    ("float64", "cb3ff0000000000000", "NonCanonicalError", "no floats"),
    ("nil", "c0", "NonCanonicalError", "no nil"),
    ("nil inside an array", "9201c0", "NonCanonicalError", "no nil"),
    ("fixext1", "d40100", "NonCanonicalError", "no ext types"),
    ("truncated fixext2", "d50100", "DecodeError", "not MessagePack"),
    ("fixext2", "d5010000", "NonCanonicalError", "no ext types"),
    ("ext8 of length 0", "c70000", "NonCanonicalError", "no ext types"),
    ("the timestamp ext (type -1)", "d6ff00000000", "NonCanonicalError", "no ext types"),
    ("trailing bytes", "0102", "NonCanonicalError", "one value, then nothing"),
    ("trailing zero byte after an array", "910100", "NonCanonicalError", ""),
    ("truncated str", "a361", "DecodeError", "not MessagePack"),
    ("truncated array", "9201", "DecodeError", "not MessagePack"),
    ("reserved byte 0xc1", "c1", "DecodeError", "not MessagePack"),
    ("bin/str confusion: raw bytes written as str", "a2c328", "DecodeError", "str is UTF-8"),
    ("str with a lone surrogate", "a3eda080", "DecodeError", "str is UTF-8"),
    (
        "nesting deeper than the maximum",
        "91" * (MAX_DEPTH + 1) + "01",
        "NonCanonicalError",
        f"at most {MAX_DEPTH} levels below the top",
    ),
]

# Values that decode, but must not be confused: an implementation that maps
# both to one type (say, a byte string) would accept a bin where the schema
# wants a str.  Events check their schema: see events.json, "network as bin".
_DISTINCT = [("str 'abc'", "abc"), ("bin 'abc'", b"abc"), ("int 1", 1), ("bool true", True)]


def build() -> dict[str, Json]:
    valid = []
    for name, value in _VALID:
        data = encode(value)
        assert decode(data, DEFAULT_MAX_SIZE) == value, name
        valid.append({"name": name, "value": to_tagged(value), "hex": data.hex()})
    # Maps are given with their keys in *input* order (often unsorted): the
    # encoder sorts them.  Record that order for the sorting cases.
    rejected: list[dict[str, Json]] = []
    for name, hexdata, error, why in _REJECTED:
        assert_raises(error, decode, bytes.fromhex(hexdata), DEFAULT_MAX_SIZE)
        rejected.append(
            {
                "name": name,
                "hex": hexdata,
                "max_size": DEFAULT_MAX_SIZE,
                "error": error,
                "why": why,
            }
        )
    rejected.append(
        {
            "name": "larger than the caller's size limit (checked before parsing)",
            "hex": encode("abcdefgh").hex(),
            "max_size": 8,
            "error": "SizeLimitError",
            "why": "9 bytes with a limit of 8",
        }
    )
    distinct = [
        {"name": name, "value": to_tagged(v), "hex": encode(v).hex()} for name, v in _DISTINCT
    ]
    return {
        "description": "Canonical MessagePack: each value has exactly one encoding "
        "(docs/PROTOCOL.md §2). 'valid': encode(value) == hex and decode(hex) == value. "
        "'rejected': decode(hex, max_size) raises 'error'. 'distinct': values of "
        "different types whose encodings must stay apart.",
        "format": FORMAT_NOTE,
        "params": params_json(),
        "default_max_size": DEFAULT_MAX_SIZE,
        "max_depth": MAX_DEPTH,
        "valid": valid,
        "rejected": rejected,
        "distinct": distinct,
    }
