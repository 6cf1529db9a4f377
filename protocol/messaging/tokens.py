"""One-time mailbox tokens (PROTOCOL.md §15.16; DESIGN §5 "Mailbox quotas
are earned, not claimed", §9 *Mailboxes*).

A recipient device lets its contacts deposit at its mailboxes by handing
them tokens: each is the device's signature, under a dedicated Ed25519
*token key* (not the device key: a token must not be able to pass for
anything the device key signs), over one mailbox, one device, a fresh
nonce and an expiry::

    token  = [nonce bin(16), expires uint, signature bin(64)]
    signed = D_MAILBOX_TOKEN ‖ enc([network, mailbox_key, device, nonce, expires])

The mailbox learns the token key from the device's grant (grant v2's
``token_key``, §15.11), checks the signature and keeps the nonce in a spent
set until the token expires, so each token pays for one deposit.  The same
token is meant to pay for one fetch of a one-time prekey when those exist:
it names no operation, and a mailbox keeps one spent set per device for
every use, so a token spent on one cannot be spent on the other.

A device hands tokens out in ``TokenBatch`` contents (kind 48, in the
mailbox-token range 48-63 of §15.4) inside ordinary envelopes to each
contact's account, and a few in every invite (``core.invite`` version 2).
The contact-side quota is the issuer's: it gives each contact at most
``TOKENS_PER_DAY`` tokens per mailbox a day, in batches of ``BATCH``, and
refills when its estimate of the contact's supply falls to ``LOW_WATER``
(``needs_refill``); a blocked contact gets no refills.

Pure: randomness (nonces) comes in as bytes, time as a parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import nacl.bindings as sodium

from protocol.core import crypto
from protocol.core.canonical import encode_flat
from protocol.core.errors import BadSignatureError, InvalidInput, SchemaError, UsageError
from protocol.core.fields import fixed_bin as _bin
from protocol.core.fields import uint as _uint
from protocol.core.invite import Invite, InviteBatch
from protocol.core.params import NetworkParams

D_MAILBOX_TOKEN = b"smu/mailbox-token/v1\x00"
NONCE_BYTES = 16
TOKEN_KEY_BYTES = 32

#: how long an issued token is good for.  A week: a contact that writes
#: rarely still holds usable tokens, and a blocked contact's last tokens
#: are dead within a week.
TOKEN_LIFETIME_MS = 7 * 24 * 3600 * 1000
#: a mailbox refuses tokens that claim to live longer than this: it keeps a
#: spent token until its expiry, so the expiry bounds the spent set
MAX_TOKEN_LIFETIME_MS = 8 * 24 * 3600 * 1000
#: expiries are rounded up to the hour, so tokens issued to different
#: contacts in the same hour look alike (§15.16, what a mailbox learns)
EXPIRY_GRANULE_MS = 3600 * 1000
#: tokens per batch, and the largest batch a receiver decodes
BATCH = 16
MAX_BATCH = 64
#: refill when a contact is estimated to hold this many or fewer
LOW_WATER = 4
#: tokens one contact gets per mailbox per day (its quota: a contact can
#: be a spammer too).  4 batches: a busy contact refills a few times a day.
TOKENS_PER_DAY = 4 * BATCH
DAY_MS = 24 * 3600 * 1000
#: tokens per mailbox put in one invite, and per day in all invites
INVITE_TOKENS = 2
INVITE_TOKENS_PER_DAY = 16


class TokenInvalidError(InvalidInput):
    """A token that is malformed, not signed by the grant's token key, for
    another mailbox or device, or claiming too long a life; or a device
    whose grant has no token key."""

    code = "token_invalid"


class TokenExpiredError(TokenInvalidError):
    code = "token_expired"


class TokenSpentError(InvalidInput):
    """This token already paid for a deposit (or a prekey fetch) here."""

    code = "token_spent"


@dataclass(frozen=True, slots=True)
class Token:
    nonce: bytes
    expires: int
    signature: bytes

    def to_wire(self) -> list[object]:
        return [self.nonce, self.expires, self.signature]


def token_message(
    network: str, mailbox_key: bytes, device: bytes, nonce: bytes, expires: int
) -> bytes:
    """What the token key signs (§15.16)."""
    return D_MAILBOX_TOKEN + encode_flat([network, mailbox_key, device, nonce, expires])


def decode_token(value: object) -> Token:
    """A token from its decoded array ``[nonce, expires, signature]``."""
    if type(value) is not list or len(value) != 3:
        raise SchemaError("a token is [nonce, expires, signature]")
    return Token(
        _bin(value[0], NONCE_BYTES, "token nonce"),
        _uint(value[1], "token expiry"),
        _bin(value[2], 64, "token signature"),
    )


def token_expiry(now_ms: int, lifetime_ms: int = TOKEN_LIFETIME_MS) -> int:
    """``now + lifetime`` rounded up to a whole hour."""
    end = now_ms + lifetime_ms
    return -(-end // EXPIRY_GRANULE_MS) * EXPIRY_GRANULE_MS


class TokenSigner:
    """A device's token key (kept with its secrets; its public half goes
    into the grants it asks for)."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise UsageError("a token key seed is 32 bytes")
        pk, sk = sodium.crypto_sign_seed_keypair(seed)
        self.public = bytes(pk)
        self._secret = bytes(sk)

    def issue(
        self,
        params: NetworkParams,
        mailbox_key: bytes,
        device: bytes,
        nonces: Sequence[bytes],
        expires: int,
    ) -> tuple[Token, ...]:
        """One token per nonce (fresh random bytes from the caller), sorted
        by nonce, as a batch carries them."""
        if any(len(n) != NONCE_BYTES for n in nonces) or len(set(nonces)) != len(nonces):
            raise UsageError(f"nonces are distinct {NONCE_BYTES}-byte strings")
        return tuple(
            Token(
                n,
                expires,
                crypto.sign(
                    self._secret, token_message(params.network_id, mailbox_key, device, n, expires)
                ),
            )
            for n in sorted(nonces)
        )


def verify_token(
    params: NetworkParams,
    mailbox_key: bytes,
    device: bytes,
    token_key: bytes,
    token: Token,
    now_ms: int,
    max_lifetime_ms: int = MAX_TOKEN_LIFETIME_MS,
) -> None:
    """Expiry first (free), then the signature; raises ``TokenInvalidError``
    or ``TokenExpiredError``.  The spent set is the mailbox's business."""
    if token.expires <= now_ms:
        raise TokenExpiredError("the token has expired")
    if token.expires > now_ms + max_lifetime_ms:
        raise TokenInvalidError("the token claims to live longer than a mailbox keeps tokens")
    if len(token_key) != TOKEN_KEY_BYTES:
        raise TokenInvalidError("the device's grant names no token key")
    msg = token_message(params.network_id, mailbox_key, device, token.nonce, token.expires)
    try:
        crypto.verify(token_key, msg, token.signature)
    except BadSignatureError as exc:
        raise TokenInvalidError("the token is not signed by the device's token key") from exc


# --------------------------------------------------------------------------
# Batches: how tokens travel (content kind 48, §15.4; invites, §4.7)


@dataclass(frozen=True, slots=True)
class TokenBatch:
    """Tokens for depositing to ``device`` at the mailbox ``mailbox_key``.
    In an envelope, ``device`` MUST be the envelope's sender device (a
    device hands out tokens only for itself)."""

    device: bytes
    mailbox_key: bytes
    tokens: tuple[Token, ...]

    #: ``content.ContentKind.TOKENS`` (this module sits below content.py)
    kind = 48

    def to_wire(self) -> list[object]:
        return [self.device, self.mailbox_key, [t.to_wire() for t in self.tokens]]


def decode_batch(value: object, max_tokens: int = MAX_BATCH) -> TokenBatch:
    """``[device, mailbox_key, [token...]]``: 1 to ``max_tokens`` tokens,
    strictly ascending by nonce (one encoding per batch, no duplicates)."""
    if type(value) is not list or len(value) != 3 or type(value[2]) is not list:
        raise SchemaError("a token batch is [device, mailbox_key, [tokens]]")
    if not 0 < len(value[2]) <= max_tokens:
        raise SchemaError(f"a token batch holds 1 to {max_tokens} tokens")
    tokens = tuple(decode_token(t) for t in value[2])
    if any(a.nonce >= b.nonce for a, b in pairwise(tokens)):
        raise SchemaError("a batch's tokens are ascending by nonce and unique")
    return TokenBatch(_bin(value[0], 32, "device"), _bin(value[1], 32, "mailbox key"), tokens)


def from_invite(invite: Invite) -> tuple[TokenBatch, ...]:
    """The token batches an invite (version 2) carries."""
    return tuple(
        TokenBatch(device, mailbox_key, tuple(Token(*t) for t in tokens))
        for device, mailbox_key, tokens in invite.tokens
    )


def for_invite(batches: Sequence[TokenBatch]) -> tuple[InviteBatch, ...]:
    """Batches as ``Invite.tokens`` holds them."""
    return tuple(
        (b.device, b.mailbox_key, tuple((t.nonce, t.expires, t.signature) for t in b.tokens))
        for b in batches
    )


# --------------------------------------------------------------------------
# The issuer's quota per contact (a pure rule; the node keeps the numbers)


@dataclass(frozen=True, slots=True)
class Supply:
    """What a device knows of one contact's tokens for one mailbox."""

    #: start of the current day window, and tokens issued in it
    day_start: int = 0
    issued_today: int = 0
    #: estimated unspent tokens the contact holds (every message received
    #: from it counts as one spent: an overestimate of its spending)
    outstanding: int = 0
    #: expiry of the newest batch (0: none)
    expires: int = 0

    def at(self, now_ms: int) -> Supply:
        """The same supply seen at ``now_ms``: a new day, expired tokens."""
        s = self
        if now_ms >= s.day_start + DAY_MS:
            s = Supply(now_ms, 0, s.outstanding, s.expires)
        if now_ms >= s.expires:
            s = Supply(s.day_start, s.issued_today, 0, s.expires)
        return s

    def spent_one(self) -> Supply:
        return Supply(self.day_start, self.issued_today, max(0, self.outstanding - 1), self.expires)


def needs_refill(supply: Supply, now_ms: int, batch: int = BATCH) -> bool:
    """A new batch is due: the contact runs low, or its newest tokens are
    past half their life; and the day's quota has room for a whole batch."""
    s = supply.at(now_ms)
    low = s.outstanding <= LOW_WATER or s.expires - now_ms < TOKEN_LIFETIME_MS // 2
    return low and s.issued_today + batch <= TOKENS_PER_DAY


def after_refill(supply: Supply, now_ms: int, batch: int, expires: int) -> Supply:
    s = supply.at(now_ms)
    return Supply(s.day_start, s.issued_today + batch, s.outstanding + batch, expires)


__all__ = [
    "BATCH",
    "D_MAILBOX_TOKEN",
    "MAX_TOKEN_LIFETIME_MS",
    "Supply",
    "Token",
    "TokenBatch",
    "TokenExpiredError",
    "TokenInvalidError",
    "TokenSigner",
    "TokenSpentError",
    "after_refill",
    "decode_batch",
    "decode_token",
    "for_invite",
    "from_invite",
    "needs_refill",
    "token_expiry",
    "token_message",
    "verify_token",
]
