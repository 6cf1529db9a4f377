"""Canonical MessagePack (PROTOCOL.md §2): one encoding per value.

Property 6: ``decode(encode(x)) == x`` for generated values, and every other
byte string for a value — built here by an independent encoder that picks a
wider-than-needed form, another key order, a duplicate key, a float, nil, an
ext type or trailing bytes — is refused with ``NonCanonicalError``.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

import protocol.core.canonical as canonical
from protocol.core.errors import DecodeError, NonCanonicalError, SizeLimitError

from .conftest import hypothesis_settings as _settings
from .test_property_mutants import expect_caught, mutant

BIG = 1 << 20

# --------------------------------------------------------------------------
# Values


def depth(v: Any) -> int:
    if isinstance(v, list):
        return 1 + max((depth(x) for x in v), default=0)
    if isinstance(v, dict):
        return 1 + max((depth(x) for x in v.values()), default=0)
    return 0


ints = st.one_of(
    st.integers(-40, 300),
    st.integers(-(2**63), 2**64 - 1),
    st.sampled_from(
        [
            -(2**63),
            -(2**31) - 1,
            -(2**31),
            -(2**15) - 1,
            -(2**15),
            -129,
            -128,
            -33,
            -32,
            127,
            128,
            255,
            256,
            2**16 - 1,
            2**16,
            2**32 - 1,
            2**32,
            2**63,
            2**64 - 1,
        ]
    ),
)
scalars = st.one_of(
    ints,
    st.booleans(),
    st.text(max_size=40),
    st.text(min_size=250, max_size=300),
    st.binary(max_size=40),
    st.binary(min_size=250, max_size=300),
)
map_keys = st.one_of(st.text(max_size=8), st.binary(max_size=8))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=20), st.dictionaries(map_keys, inner, max_size=18)
    ),
    max_leaves=40,
).filter(lambda v: depth(v) <= canonical.MAX_DEPTH)


def same(a: Any, b: Any) -> bool:
    """Equality that tells True from 1 and bytes from str."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


# --------------------------------------------------------------------------
# An independent encoder with a choice of forms


def _int_forms(v: int) -> list[bytes]:
    """Every encoding of ``v``; the first is the canonical (shortest) one."""
    forms = []
    if 0 <= v < 128:
        forms.append(struct.pack("B", v))
    if -32 <= v < 0:
        forms.append(struct.pack("b", v))
    for tag, fmt, lo, hi in (
        (0xCC, ">B", 0, 2**8),
        (0xCD, ">H", 0, 2**16),
        (0xCE, ">I", 0, 2**32),
        (0xCF, ">Q", 0, 2**64),
    ):
        if lo <= v < hi:
            forms.append(bytes([tag]) + struct.pack(fmt, v))
    for tag, fmt, lo, hi in (
        (0xD0, ">b", -(2**7), 2**7),
        (0xD1, ">h", -(2**15), 2**15),
        (0xD2, ">i", -(2**31), 2**31),
        (0xD3, ">q", -(2**63), 2**63),
    ):
        if lo <= v < hi:
            forms.append(bytes([tag]) + struct.pack(fmt, v))
    # Canonical: unsigned forms for v >= 0, signed forms for v < 0, shortest.
    canonical_first = min(
        (f for f in forms if (v >= 0) == (f[0] < 0x80 or 0xCC <= f[0] <= 0xCF)), key=len
    )
    return [canonical_first] + [f for f in forms if f != canonical_first]


def _len_forms(n: int, fix: int | None, fix_max: int, wide: list[tuple[int, str]]) -> list[bytes]:
    forms = []
    if fix is not None and n <= fix_max:
        forms.append(bytes([fix | n]))
    for tag, fmt in wide:
        if n < 2 ** (8 * struct.calcsize(fmt)):
            forms.append(bytes([tag]) + struct.pack(fmt, n))
    return forms


def _head_forms(v: Any) -> list[bytes]:
    if isinstance(v, str):
        n = len(v.encode())
        return _len_forms(n, 0xA0, 31, [(0xD9, ">B"), (0xDA, ">H"), (0xDB, ">I")])
    if isinstance(v, bytes):
        return _len_forms(len(v), None, 0, [(0xC4, ">B"), (0xC5, ">H"), (0xC6, ">I")])
    if isinstance(v, list):
        return _len_forms(len(v), 0x90, 15, [(0xDC, ">H"), (0xDD, ">I")])
    assert isinstance(v, dict)
    return _len_forms(len(v), 0x80, 15, [(0xDE, ">H"), (0xDF, ">I")])


def _sorted_items(v: dict[Any, Any]) -> list[tuple[Any, Any]]:
    return sorted(v.items(), key=lambda kv: bytes(msgpack.packb(kv[0], use_bin_type=True)))


def _nodes(v: Any) -> int:
    if isinstance(v, list):
        return 1 + sum(_nodes(x) for x in v)
    if isinstance(v, dict):
        return 1 + sum(_nodes(k) + _nodes(x) for k, x in v.items())
    return 1


class Encoder:
    """Encodes canonically except at node number ``victim`` (preorder),
    which gets the non-canonical form ``choice`` picks among its options."""

    def __init__(self, victim: int = -1, choice: int = 0) -> None:
        self.victim = victim
        self.choice = choice
        self.n = -1
        self.deviated = False

    def enc(self, v: Any, is_key: bool = False) -> bytes:
        self.n += 1
        bad = self.n == self.victim
        if type(v) is bool:
            if bad:  # a bool has one form: put a float 0.0/1.0 in its place
                self.deviated = True
                return b"\xcb" + struct.pack(">d", float(v))
            return b"\xc3" if v else b"\xc2"
        if type(v) is int:
            forms = _int_forms(v)
            if bad:
                wrong = [*forms[1:], b"\xcb" + struct.pack(">d", float(v)), b"\xc0"]
                self.deviated = True
                return wrong[self.choice % len(wrong)]
            return forms[0]
        heads = _head_forms(v)
        head = heads[0]
        options = heads[1:]
        if isinstance(v, str | bytes):
            payload = v.encode() if isinstance(v, str) else v
            if bad:
                self.deviated = True
                if self.choice % (len(options) + 1) == len(options) and not is_key:
                    return b"\xc0"  # nil in its place (a nil key is a schema error)
                head = options[self.choice % len(options)]
            return head + payload
        if isinstance(v, list):
            if bad:
                self.deviated = True
                if self.choice % 3 == 2 or not options:  # an ext value appended
                    h = _head_forms([*v, 0])[0]
                    return h + b"".join(self.enc(x) for x in v) + b"\xd4\x01\x00"
                head = options[self.choice % len(options)]
            return head + b"".join(self.enc(x) for x in v)
        items = _sorted_items(v)
        if bad:
            self.deviated = True
            mode = self.choice % 3
            if mode == 0 and len(items) >= 2:  # out of order
                k = 1 + (self.choice >> 2) % (len(items) - 1)
                items[0], items[k] = items[k], items[0]
            elif mode == 1 and items:  # a duplicate key
                items.insert(1 + (self.choice >> 2) % len(items), items[0])
                head = _head_forms({**v, "\0dup\0": 0})[0]  # count + 1
            elif options:
                head = options[(self.choice >> 2) % len(options)]
            else:
                self.deviated = False
        out = [head]
        for k, x in items:
            out.append(self.enc(k, is_key=True))
            out.append(self.enc(x))
        return b"".join(out)


# --------------------------------------------------------------------------
# Property 6


def check_round_trip(v: Any) -> None:
    data = canonical.encode(v)
    assert Encoder().enc(v) == data, "the reference encoder disagrees on the canonical form"
    back = canonical.decode(data, BIG)
    assert same(back, v)
    assert canonical.encode(back) == data


@_settings(200)
@given(values)
def test_round_trip(v: Any) -> None:
    check_round_trip(v)


@pytest.mark.slow
@_settings(3_000)
@given(values)
def test_round_trip_slow(v: Any) -> None:
    check_round_trip(v)


def check_non_canonical(v: Any, victim: int, choice: int, trailing: bytes) -> None:
    enc = Encoder(victim % _nodes(v), choice)
    bad = enc.enc(v)
    if not enc.deviated or trailing:
        bad += trailing or b"\x00"
    assert bad != canonical.encode(v)
    try:
        canonical.decode(bad, BIG)
    except NonCanonicalError:
        return
    raise AssertionError(f"accepted a non-canonical encoding {bad.hex()}")


@_settings(200)
@given(values, st.integers(0, 10_000), st.integers(0, 1000), st.sampled_from([b"", b"", b"\x00"]))
def test_non_canonical_rejected(v: Any, victim: int, choice: int, trailing: bytes) -> None:
    check_non_canonical(v, victim, choice, trailing)


@pytest.mark.slow
@_settings(3_000)
@given(values, st.integers(0, 10_000), st.integers(0, 1000), st.sampled_from([b"", b"", b"\x00"]))
def test_non_canonical_rejected_slow(v: Any, victim: int, choice: int, trailing: bytes) -> None:
    check_non_canonical(v, victim, choice, trailing)


flat_values = st.recursive(
    st.one_of(ints, st.booleans(), st.text(max_size=40), st.binary(max_size=300)),
    lambda inner: st.lists(inner, max_size=20),
    max_leaves=30,
).filter(lambda v: depth(v) <= canonical.MAX_DEPTH)


@_settings(200)
@given(flat_values, st.integers(0, 10_000), st.integers(0, 1000))
def test_decode_flat_rejects_wider_forms(v: Any, victim: int, choice: int) -> None:
    """decode_flat leaves maps, floats and nil to the caller's schema check,
    but refuses every other non-minimal form like decode does."""
    data = canonical.encode_flat(v) if isinstance(v, list) else canonical.encode(v)
    assert same(canonical.decode_flat(data, BIG), v)
    enc = Encoder(victim % _nodes(v), choice)
    bad = enc.enc(v)
    assert enc.deviated
    try:
        got = canonical.decode_flat(bad, BIG)
    except NonCanonicalError:
        return
    # Only a float or nil substitution inside may pass decode_flat.
    assert not same(got, v), "a second encoding of the same value was accepted"


# --------------------------------------------------------------------------
# The property catches a broken decoder


def test_non_canonical_property_catches_missing_reencode_check() -> None:
    with mutant(canonical, "decode", "if again != data:", "if False:"):
        expect_caught(
            lambda args: check_non_canonical(*args),
            st.tuples(values, st.integers(0, 10_000), st.integers(0, 1000), st.just(b"")),
            300,
        )


def test_non_canonical_property_catches_float_acceptance() -> None:
    # (Key order is checked twice, by the pairs hook and by re-encoding, so
    # breaking one of the two is not observable; floats are checked once.)
    with mutant(
        canonical,
        "_normalise",
        'raise ValueError(f"type {t.__name__} has no canonical encoding")',
        "return value",
    ):
        expect_caught(
            lambda args: check_non_canonical(*args),
            st.tuples(values, st.integers(0, 10_000), st.integers(0, 1000), st.just(b"")),
            300,
        )


# --------------------------------------------------------------------------
# Examples


@pytest.mark.parametrize(
    "data",
    [
        b"\xcc\x05",  # 5 as uint8
        b"\xd0\x05",  # 5 as int8
        b"\xd1\xff\xff",  # -1 as int16
        b"\xd9\x01a",  # "a" as str8
        b"\xc5\x00\x01a",  # b"a" as bin16
        b"\xdc\x00\x00",  # [] as array16
        b"\xde\x00\x00",  # {} as map16
        b"\x82\xa1b\x01\xa1a\x02",  # {"b": 1, "a": 2}: keys out of order
        b"\x82\xa1a\x01\xa1a\x02",  # duplicate key
        b"\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00",  # 1.0
        b"\xca\x3f\x80\x00\x00",  # 1.0 as float32
        b"\xc0",  # nil
        b"\xd4\x01\x00",  # ext
        b"\x91\xd4\x01\x00",  # ext inside an array
        b"\x01\x02",  # trailing bytes
    ],
)
def test_non_canonical_examples(data: bytes) -> None:
    with pytest.raises(NonCanonicalError):
        canonical.decode(data, BIG)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x92\x01", b"\xa3ab", b"\xc1", b"\xa1\xff", b"\x81\x01\x02", b"\x81\x90\x01"],
)
def test_malformed_is_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        canonical.decode(data, BIG)
    with pytest.raises(DecodeError):
        canonical.decode_flat(data, BIG)


def test_size_limit_is_checked_before_parsing() -> None:
    with pytest.raises(SizeLimitError):
        canonical.decode(b"\xc1" * 11, 10)  # not MessagePack at all
    with pytest.raises(SizeLimitError):
        canonical.decode_flat(b"\xc1" * 11, 10)
    assert canonical.decode(b"\x90", 1) == []


def test_nesting_limit() -> None:
    ok: Any = 0
    for _ in range(canonical.MAX_DEPTH):
        ok = [ok]
    assert canonical.decode(canonical.encode(ok), BIG) == ok
    too_deep = b"\x91" * (canonical.MAX_DEPTH + 1) + b"\x00"
    with pytest.raises(NonCanonicalError):
        canonical.decode(too_deep, BIG)
    with pytest.raises(DecodeError):
        canonical.decode(b"\x91" * 100_000 + b"\x00", 1 << 20)


@pytest.mark.parametrize(
    "value",
    [
        1.5,
        None,
        2**64,
        -(2**63) - 1,
        object(),
        {1: 2},
    ],
)
def test_encode_refuses_values_without_canonical_form(value: Any) -> None:
    with pytest.raises(ValueError):
        canonical.encode(value)


def test_map_keys_sorted_by_encoding() -> None:
    # Sorted by encoded bytes: str keys (0xa.) before bin keys (0xc4),
    # shorter fixstr before longer.
    v = {b"a": 1, "bb": 2, "a": 3}
    assert canonical.encode(v) == b"\x83\xa1a\x03\xa2bb\x02\xc4\x01a\x01"
