"""Keys as people see them (PROTOCOL.md §4): paper recovery keys, fingerprints,
safety numbers, handles and the base32 they are written in."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.core import keys
from protocol.core.errors import ChecksumError, DecodeError, UsageError
from protocol.core.keys import B32_ALPHABET, DeviceKeys, RecoveryKey

from .conftest import device
from .conftest import hypothesis_settings as _settings

seeds = st.binary(min_size=32, max_size=32)
ids = st.binary(min_size=32, max_size=32)
# What a typed character means: Crockford's aliases read as the digit they
# resemble, and case does not matter.
VALUE = {c: i for i, c in enumerate(B32_ALPHABET)} | {"i": 1, "l": 1, "o": 0}
TYPED = sorted(set(B32_ALPHABET + "ilo" + B32_ALPHABET.upper() + "ILOU") | set("u!#é"))

# --------------------------------------------------------------------------
# Paper keys


@_settings(200)
@given(seeds)
def test_paper_key_round_trip(seed: bytes) -> None:
    paper = RecoveryKey(seed).to_paper()
    assert re.fullmatch(r"([0-9a-hjkmnp-tv-z]{4}-){13}[0-9a-hjkmnp-tv-z]{4}", paper)
    assert RecoveryKey.from_paper(paper).seed == seed
    # Forgiving about what does not matter: case, dashes, spaces.
    assert RecoveryKey.from_paper(paper.upper()).seed == seed
    assert RecoveryKey.from_paper(paper.replace("-", "")).seed == seed
    assert RecoveryKey.from_paper("  " + paper.replace("-", " ") + "\n").seed == seed


def check_single_character_changes(seed: bytes) -> None:
    paper = RecoveryKey(seed).to_paper()
    for pos, old in enumerate(paper):
        if old == "-":
            continue
        for new in TYPED:
            typo = paper[:pos] + new + paper[pos + 1 :]
            if VALUE.get(new.lower()) == VALUE[old]:
                assert RecoveryKey.from_paper(typo).seed == seed  # the same value
                continue
            with pytest.raises((ChecksumError, DecodeError)):
                RecoveryKey.from_paper(typo)


@_settings(10)
@given(seeds)
def test_every_single_character_typo_is_caught(seed: bytes) -> None:
    check_single_character_changes(seed)


@pytest.mark.slow
@_settings(500)
@given(seeds)
def test_every_single_character_typo_is_caught_slow(seed: bytes) -> None:
    check_single_character_changes(seed)


@_settings(50)
@given(seeds, st.integers(0, 55))
def test_dropped_doubled_and_swapped_characters_are_caught(seed: bytes, pos: int) -> None:
    plain = RecoveryKey(seed).to_paper().replace("-", "")
    with pytest.raises(DecodeError):
        RecoveryKey.from_paper(plain[:pos] + plain[pos + 1 :])
    with pytest.raises(DecodeError):
        RecoveryKey.from_paper(plain[:pos] + plain[pos] + plain[pos:])
    if pos < 55 and plain[pos] != plain[pos + 1]:
        swapped = plain[:pos] + plain[pos + 1] + plain[pos] + plain[pos + 2 :]
        with pytest.raises(ChecksumError):
            RecoveryKey.from_paper(swapped)


def test_paper_key_vector() -> None:
    seed = bytes(range(32))
    paper = RecoveryKey(seed).to_paper()
    assert paper == RecoveryKey.from_paper(paper).to_paper()
    assert len(paper.replace("-", "")) == 56
    # The checksum is the last 24 bits: changing the final character always
    # leaves the seed intact and breaks the checksum.
    last = paper[-1]
    for c in B32_ALPHABET:
        if c != last:
            with pytest.raises(ChecksumError):
                RecoveryKey.from_paper(paper[:-1] + c)


def test_recovery_key_commitment_is_not_the_public_key() -> None:
    rk = RecoveryKey(bytes(32))
    assert len(rk.commitment) == 32 and rk.commitment != rk.public
    assert rk.commitment == keys.recovery_commitment(rk.public)
    assert "seed" not in repr(rk) or bytes(32).hex() not in repr(rk)


# --------------------------------------------------------------------------
# Fingerprints and safety numbers

VECTOR_KEY = bytes.fromhex("32a88883ae17d51296869a7655925a18b85a70c47ff944f2c99d88c25bab1d76")


def test_fingerprint_is_stable() -> None:
    # A golden value: fingerprints are shown to people and compared across
    # versions, so a change here is a protocol change.
    assert keys.fingerprint(VECTOR_KEY) == "sj2m 93c1 9vc6 k6d9"


@_settings(100)
@given(seeds)
def test_fingerprint_form(seed: bytes) -> None:
    d = DeviceKeys(seed, seed)
    fp = d.fingerprint
    assert re.fullmatch(r"([0-9a-hjkmnp-tv-z]{4} ){3}[0-9a-hjkmnp-tv-z]{4}", fp)
    assert fp == keys.fingerprint(d.sign_public) == keys.fingerprint(bytes(d.sign_public))


def test_fingerprints_differ() -> None:
    fps = {device(f"fp{i}").fingerprint for i in range(200)}
    assert len(fps) == 200


def test_safety_number_vector() -> None:
    a, b = bytes(range(32)), bytes(range(1, 33))
    assert keys.safety_number(a, a, b, b) == keys.safety_number(b, b, a, a)
    assert re.fullmatch(r"(\d{5} ){11}\d{5}", keys.safety_number(a, a, b, b))


@_settings(200)
@given(ids, ids, ids, ids)
def test_safety_number_symmetric_and_60_digits(a: bytes, ea: bytes, b: bytes, eb: bytes) -> None:
    n = keys.safety_number(a, ea, b, eb)
    assert n == keys.safety_number(b, eb, a, ea)
    assert re.fullmatch(r"(\d{5} ){11}\d{5}", n)
    assert len(n.replace(" ", "")) == 60


@_settings(100)
@given(ids, ids, ids)
def test_safety_number_depends_on_both_accounts_and_epochs(a: bytes, b: bytes, c: bytes) -> None:
    if c not in (a, b):
        assert keys.safety_number(a, a, b, b) != keys.safety_number(a, a, c, c)
        # a recovery (a new epoch) changes the number
        assert keys.safety_number(a, a, b, b) != keys.safety_number(a, a, b, c)


# --------------------------------------------------------------------------
# Handles

HANDLE = re.compile(r"[a-z0-9_-]{1,32}\.[0-9a-hjkmnp-tv-z]{10}")


def test_handle_vector() -> None:
    assert keys.handle("Bob Smith", bytes(range(32))) == "bob-smith.000g40r40m"


@_settings(300)
@given(st.text(min_size=1, max_size=64), ids)
def test_handle_form(name: str, account: bytes) -> None:
    h = keys.handle(name, account)
    assert HANDLE.fullmatch(h), h
    slug, suffix = h.rsplit(".", 1)
    assert suffix == keys.account_suffix(account) == keys.b32encode(account)[:10]
    assert len(suffix) >= keys.HANDLE_SUFFIX_CHARS
    assert not slug.startswith("-") and not slug.endswith("-")


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Bob", "bob"),
        ("José Ñúñez", "jose-nunez"),
        ("日本語", "user"),
        ("  --  ", "user"),
        ("a\u202eb", "ab"),
        ("x" * 50, "x" * 32),
    ],
)
def test_handle_slug(name: str, slug: str) -> None:
    assert keys.handle(name, bytes(32)).split(".")[0] == slug


def test_handle_slug_is_lowercase_for_compatibility_capitals() -> None:
    assert keys.handle("\U0001d400lice", bytes(32)).split(".")[0] == "alice"


# --------------------------------------------------------------------------
# Base32


@_settings(300)
@given(st.binary(max_size=64))
def test_b32_round_trip(data: bytes) -> None:
    text = keys.b32encode(data)
    assert set(text) <= set(B32_ALPHABET)
    assert len(text) == (len(data) * 8 + 4) // 5
    assert keys.b32decode(text, len(data)) == data
    assert keys.b32decode(text.upper(), len(data)) == data


def test_b32_aliases_and_rejections() -> None:
    assert keys.b32decode("1ilL1ILl", 5) == keys.b32decode("11111111", 5)
    assert keys.b32decode("0o0O0oO0", 5) == bytes(5)
    with pytest.raises(DecodeError):
        keys.b32decode("uuuu", 2)  # 'u' is left out on purpose
    with pytest.raises(DecodeError):
        keys.b32decode("000", 2)  # wrong length
    with pytest.raises(DecodeError):
        keys.b32decode("0001", 2)  # 16 bits in 20: the last 4 must be zero


def test_key_constructors_refuse_wrong_lengths() -> None:
    with pytest.raises(UsageError):
        DeviceKeys(bytes(31), bytes(32))
    with pytest.raises(UsageError):
        DeviceKeys.from_random(bytes(63))
    with pytest.raises(UsageError):
        RecoveryKey(bytes(33))
