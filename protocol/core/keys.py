"""Keys, fingerprints, handles and safety numbers (PROTOCOL.md §4).

Secrets come in as bytes (the caller draws them from the OS); nothing here
generates randomness.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import nacl.bindings as sodium

from protocol.core import crypto
from protocol.core.errors import ChecksumError, DecodeError, UsageError
from protocol.core.names import slug

# Crockford's base32: no i, l, o or u, so a hand-copied code survives.
B32_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_B32_DECODE = {c: i for i, c in enumerate(B32_ALPHABET)}
_B32_DECODE.update({"i": 1, "l": 1, "o": 0})

HANDLE_SUFFIX_CHARS = 10
PAPER_KEY_CHECKSUM_BYTES = 3


def b32encode(data: bytes) -> str:
    bits = int.from_bytes(data, "big")
    n = (len(data) * 8 + 4) // 5
    bits <<= n * 5 - len(data) * 8
    return "".join(B32_ALPHABET[(bits >> (5 * (n - 1 - i))) & 31] for i in range(n))


def b32decode(text: str, nbytes: int) -> bytes:
    clean = text.lower().replace("-", "").replace(" ", "")
    n = (nbytes * 8 + 4) // 5
    if len(clean) != n:
        raise DecodeError(f"expected {n} base32 characters, got {len(clean)}")
    bits = 0
    for ch in clean:
        if ch not in _B32_DECODE:
            raise DecodeError(f"{ch!r} is not a base32 character")
        bits = (bits << 5) | _B32_DECODE[ch]
    extra = n * 5 - nbytes * 8
    if bits & ((1 << extra) - 1):
        raise DecodeError("non-zero padding bits")
    return (bits >> extra).to_bytes(nbytes, "big")


def fingerprint(sign_public: bytes) -> str:
    """A device's fingerprint: 80 bits of its key's hash, in 4 groups."""
    text = b32encode(crypto.hash_with(crypto.D_FINGERPRINT, sign_public, 10))
    return " ".join(text[i : i + 4] for i in range(0, 16, 4))


def account_suffix(account_id: bytes, chars: int = HANDLE_SUFFIX_CHARS) -> str:
    return b32encode(account_id)[:chars]


def handle(display_name: str, account_id: bytes) -> str:
    """``name.suffix``; only the suffix identifies, and only weakly (§4.5)."""
    return f"{slug(display_name)}.{account_suffix(account_id)}"


def safety_number(account_a: bytes, epoch_a: bytes, account_b: bytes, epoch_b: bytes) -> str:
    """60 digits, the same on both sides: depends on the unordered pair of
    (account, recovery epoch) (PROTOCOL.md §4.6).  A device change never
    changes it; a recovery always does, so "verify again after a recovery"
    compares something new."""
    lo, hi = sorted(((account_a, epoch_a), (account_b, epoch_b)))
    digest = crypto.hash_with(crypto.D_SAFETY_NUMBER, lo[0] + lo[1] + hi[0] + hi[1], 60)
    groups = [int.from_bytes(digest[i : i + 5], "big") % 100_000 for i in range(0, 60, 5)]
    return " ".join(f"{g:05d}" for g in groups)


def recovery_commitment(recovery_public: bytes) -> bytes:
    return crypto.hash32(crypto.D_RECOVERY_COMMIT, recovery_public)


@dataclass(frozen=True, slots=True)
class DeviceKeys:
    """A device's secrets: an Ed25519 signing seed and an X25519 secret."""

    sign_seed: bytes = field(repr=False)
    enc_secret: bytes = field(repr=False)
    sign_public: bytes = field(init=False)
    sign_secret: bytes = field(init=False, repr=False)
    enc_public: bytes = field(init=False)

    def __post_init__(self) -> None:
        if len(self.sign_seed) != 32 or len(self.enc_secret) != 32:
            raise UsageError("device secrets are two 32-byte values")
        pk, sk = sodium.crypto_sign_seed_keypair(self.sign_seed)
        object.__setattr__(self, "sign_public", bytes(pk))
        object.__setattr__(self, "sign_secret", bytes(sk))
        object.__setattr__(
            self, "enc_public", bytes(sodium.crypto_scalarmult_base(self.enc_secret))
        )

    @classmethod
    def from_random(cls, random64: bytes) -> DeviceKeys:
        if len(random64) != 64:
            raise UsageError("need 64 random bytes")
        return cls(sign_seed=random64[:32], enc_secret=random64[32:])

    def sign(self, message: bytes) -> bytes:
        return crypto.sign(self.sign_secret, message)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.sign_public)


@dataclass(frozen=True, slots=True)
class RecoveryKey:
    """The account's recovery (paper) key: an Ed25519 seed shown once."""

    seed: bytes = field(repr=False)
    public: bytes = field(init=False)
    secret: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.seed) != 32:
            raise UsageError("a recovery seed is 32 bytes")
        pk, sk = sodium.crypto_sign_seed_keypair(self.seed)
        object.__setattr__(self, "public", bytes(pk))
        object.__setattr__(self, "secret", bytes(sk))

    @property
    def commitment(self) -> bytes:
        return recovery_commitment(self.public)

    def sign(self, message: bytes) -> bytes:
        return crypto.sign(self.secret, message)

    def to_paper(self) -> str:
        """56 base32 characters in groups of 4; the last 24 bits are a checksum."""
        check = crypto.hash_with(crypto.D_PAPER_KEY, self.seed, PAPER_KEY_CHECKSUM_BYTES)
        text = b32encode(self.seed + check)
        return "-".join(text[i : i + 4] for i in range(0, len(text), 4))

    @classmethod
    def from_paper(cls, text: str) -> RecoveryKey:
        raw = b32decode(text.strip(), 32 + PAPER_KEY_CHECKSUM_BYTES)
        seed, check = raw[:32], raw[32:]
        if crypto.hash_with(crypto.D_PAPER_KEY, seed, PAPER_KEY_CHECKSUM_BYTES) != check:
            raise ChecksumError("the recovery key has a typo: its checksum does not match")
        return cls(seed=seed)
