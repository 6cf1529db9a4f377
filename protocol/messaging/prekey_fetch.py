"""Serving and fetching one-time prekeys: ``/smu/prekey/1`` (PROTOCOL.md §19.16).

A device's node (and each of its mailboxes, ``prekey_shelf``) holds the device's signed
one-time prekey batches (§19.2) as a ``PrekeyOffer``: the public batches,
the ids already handed out and the tokens that paid for them.  A fetch
names the device and carries one of its mailbox tokens for the serving
node (§15.16: only contacts hold them); it is answered with one unused
key's proof, and that key is marked served in the same new offer, which
the caller makes durable before it answers.  A fetch without a valid
token (a stranger) is answered ``SIGNED_ONLY``: set up from the record's
signed prekey (§19.4).  The offer holds no secret, so a mailbox can hold
one too.

One request and one answer per stream, each ``[1, type, ...]``:

    FETCH         [1, 1, account bin(32), device bin(32)]            a stranger
    FETCH_TOKEN   [1, 2, account bin(32), device bin(32), token]     a contact
    UPLOAD        [1, 3, account bin(32), device bin(32), batch bin] to a mailbox
    ONE_TIME      [1, 16, proof bin]        (§19.2's proof encoding)
    SIGNED_ONLY   [1, 17, reason str]
    UPLOADED      [1, 18, unserved uint]
    ERROR         [1, 31, code str, message str]

Pure: time is a parameter; the rate bound (``FetchLimiter``) keeps its
buckets in the value the caller holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import IntEnum

from protocol.core.canonical import decode_flat, encode_flat
from protocol.core.errors import (
    InvalidInput,
    LimitExceededError,
    SchemaError,
    UnsupportedVersionError,
)
from protocol.core.fields import fixed_bin as _bin
from protocol.core.fields import uint as _uint
from protocol.core.keys import DeviceKeys
from protocol.core.params import NetworkParams
from protocol.messaging.prekeys import (
    MAX_BATCH_BYTES,
    MAX_PROOF_BYTES,
    PrekeyBatch,
    PrekeyStore,
    decode_batch,
    make_batch,
)
from protocol.messaging.session_errors import PrekeyExpiredError, SessionUsageError
from protocol.messaging.tokens import (
    Token,
    TokenExpiredError,
    TokenInvalidError,
    decode_token,
    verify_token,
)

PROTOCOL_ID = "/smu/prekey/1"
WIRE_VERSION = 1
#: a request: a fetch is two 32-byte ids and a 94-byte token; an upload
#: carries one batch (at most 4,800 bytes), with framing (§19.16)
MAX_REQUEST_BYTES = MAX_BATCH_BYTES + 320
#: an answer: one proof (at most 640 bytes) with framing
MAX_ANSWER_BYTES = MAX_PROOF_BYTES + 64

#: the supply a device keeps (§19.16, "counts"): a batch of 64 (a 6-hash
#: proof each), a new one when fewer than 16 unserved keys remain, at most
#: 4 batches a day; batches live 14 days and are not served in their last
OFFER_BATCH = 64
OFFER_LOW_WATER = 16
OFFER_BATCHES_PER_DAY = 4
OFFER_LIFETIME_MS = 14 * 24 * 3600 * 1000
SERVE_MARGIN_MS = 24 * 3600 * 1000
DAY_MS = 24 * 3600 * 1000
#: live batches an offer keeps (4 a day for 14 days), and tokens it keeps
#: spent: each paid fetch serves one key, so at most 256 a day for a
#: token's 8-day life
MAX_OFFER_BATCHES = OFFER_BATCHES_PER_DAY * 14
MAX_PAID = 4096
OFFER_VERSION = 1
MAX_OFFER_BYTES = MAX_OFFER_BATCHES * 4800 + (MAX_PAID + MAX_OFFER_BATCHES * 128) * 40 + 64

#: rate bound per fetching peer and over all peers (fetches a second, burst)
PEER_RATE, PEER_BURST = 0.1, 10.0
TOTAL_RATE, TOTAL_BURST = 4.0, 64.0
MAX_PEERS = 4096


class FrameType(IntEnum):
    FETCH = 1
    FETCH_TOKEN = 2
    UPLOAD = 3
    ONE_TIME = 16
    SIGNED_ONLY = 17
    UPLOADED = 18
    ERROR = 31


class SignedOnly:
    """Why an answer carries no one-time prekey (§19.16)."""

    NO_TOKEN = "no_token"
    TOKEN_INVALID = "token_invalid"
    TOKEN_EXPIRED = "token_expired"
    TOKEN_SPENT = "token_spent"
    EXHAUSTED = "exhausted"
    ALL = frozenset({NO_TOKEN, TOKEN_INVALID, TOKEN_EXPIRED, TOKEN_SPENT, EXHAUSTED})


class PrekeyFetchError(InvalidInput):
    """A serving node's refusal (ERROR answer) or a bad frame."""

    code = "prekey_fetch"


class PrekeyRateError(LimitExceededError):
    code = "rate_limited"


@dataclass(frozen=True, slots=True)
class FetchRequest:
    account: bytes
    device: bytes
    token: Token | None

    def encode(self) -> bytes:
        head: list[object] = [WIRE_VERSION]
        if self.token is None:
            return encode_flat([*head, FrameType.FETCH, self.account, self.device])
        return encode_flat(
            [*head, FrameType.FETCH_TOKEN, self.account, self.device, self.token.to_wire()]
        )


@dataclass(frozen=True, slots=True)
class UploadRequest:
    """A device's batch for a mailbox to serve (§19.16, *At mailboxes*);
    the batch's own signature authenticates it."""

    account: bytes
    device: bytes
    batch: bytes

    def encode(self) -> bytes:
        return encode_flat([WIRE_VERSION, FrameType.UPLOAD, self.account, self.device, self.batch])


@dataclass(frozen=True, slots=True)
class UploadedAnswer:
    #: keys the mailbox now holds unserved for the device
    unserved: int

    def encode(self) -> bytes:
        return encode_flat([WIRE_VERSION, FrameType.UPLOADED, self.unserved])


@dataclass(frozen=True, slots=True)
class OneTimeAnswer:
    proof: bytes

    def encode(self) -> bytes:
        return encode_flat([WIRE_VERSION, FrameType.ONE_TIME, self.proof])


@dataclass(frozen=True, slots=True)
class SignedOnlyAnswer:
    reason: str

    def encode(self) -> bytes:
        return encode_flat([WIRE_VERSION, FrameType.SIGNED_ONLY, self.reason])


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    code: str
    message: str

    def encode(self) -> bytes:
        return encode_flat([WIRE_VERSION, FrameType.ERROR, self.code, self.message])


Answer = OneTimeAnswer | SignedOnlyAnswer | UploadedAnswer | ErrorAnswer


def _head(raw: bytes, limit: int) -> list[object]:
    if len(raw) > limit:
        raise LimitExceededError(f"a prekey frame is at most {limit} bytes")
    v = decode_flat(raw, limit)
    if type(v) is not list or len(v) < 2 or type(v[0]) is not int or type(v[1]) is not int:
        raise SchemaError("a prekey frame is [version, type, ...]")
    if v[0] != WIRE_VERSION:
        raise UnsupportedVersionError("unknown prekey frame version")
    return v


def _size(v: list[object], n: int) -> None:
    if len(v) != n:
        raise SchemaError(f"this prekey frame has {n} elements")


def decode_request(raw: bytes) -> FetchRequest | UploadRequest:
    """A fetch, checked for sizes and types only (§19.16)."""
    v = _head(raw, MAX_REQUEST_BYTES)
    if v[1] == FrameType.FETCH:
        _size(v, 4)
        return FetchRequest(_bin(v[2], 32, "account"), _bin(v[3], 32, "device"), None)
    if v[1] == FrameType.FETCH_TOKEN:
        _size(v, 5)
        return FetchRequest(_bin(v[2], 32, "account"), _bin(v[3], 32, "device"), decode_token(v[4]))
    if v[1] == FrameType.UPLOAD:
        _size(v, 5)
        if type(v[4]) is not bytes or not 0 < len(v[4]) <= MAX_BATCH_BYTES:
            raise SchemaError(f"a batch is 1 to {MAX_BATCH_BYTES} bytes")
        return UploadRequest(_bin(v[2], 32, "account"), _bin(v[3], 32, "device"), v[4])
    raise SchemaError("unknown prekey request type")


def _text(value: object, what: str, limit: int = 256) -> str:
    if type(value) is not str or len(value) > limit:
        raise SchemaError(f"{what} is a string of at most {limit} characters")
    return value


def decode_answer(raw: bytes) -> Answer:
    """An answer, checked for sizes and types (the proof is checked by
    ``prekeys.verify_proof`` against the device the fetcher expects)."""
    v = _head(raw, MAX_ANSWER_BYTES)
    if v[1] == FrameType.ONE_TIME:
        _size(v, 3)
        if type(v[2]) is not bytes or not 0 < len(v[2]) <= MAX_PROOF_BYTES:
            raise SchemaError(f"a proof is 1 to {MAX_PROOF_BYTES} bytes")
        return OneTimeAnswer(v[2])
    if v[1] == FrameType.SIGNED_ONLY:
        _size(v, 3)
        reason = _text(v[2], "the reason")
        if reason not in SignedOnly.ALL:
            raise SchemaError("unknown signed-only reason")
        return SignedOnlyAnswer(reason)
    if v[1] == FrameType.UPLOADED:
        _size(v, 3)
        return UploadedAnswer(_uint(v[2], "unserved"))
    if v[1] == FrameType.ERROR:
        _size(v, 4)
        return ErrorAnswer(_text(v[2], "the code", 64), _text(v[3], "the message"))
    raise SchemaError("unknown prekey answer type")


# -- the offer: what a server holds for one device ---------------------------------


@dataclass(frozen=True, slots=True)
class PrekeyOffer:
    """One device's public one-time prekeys as a server holds them.  Never
    changed in place: ``serve`` returns the offer with the key served."""

    batches: tuple[PrekeyBatch, ...] = ()
    #: one-time prekey ids handed out (each at most once)
    served: frozenset[int] = frozenset()
    #: token nonce -> expires: tokens that paid for a key here
    paid: Mapping[bytes, int] = field(default_factory=dict)

    def unserved(self, now_ms: int) -> list[int]:
        """Ids still to hand out, lowest first, in batches that are not in
        their last ``SERVE_MARGIN_MS``."""
        return sorted(
            b.first_id + i
            for b in self.batches
            if b.expires > now_ms + SERVE_MARGIN_MS
            for i in range(len(b.keys))
            if b.first_id + i not in self.served
        )

    def needs_batch(self, now_ms: int) -> bool:
        """Fewer than ``OFFER_LOW_WATER`` keys to hand out, and the day's
        batch quota has room (§19.16)."""
        made_today = sum(1 for b in self.batches if b.expires - OFFER_LIFETIME_MS > now_ms - DAY_MS)
        return (
            len(self.unserved(now_ms)) < OFFER_LOW_WATER
            and made_today < OFFER_BATCHES_PER_DAY
            and len(self.batches) < MAX_OFFER_BATCHES
        )

    def next_id(self, now_ms: int) -> int:
        """The first id of a new batch: never an id used before (at least the
        unix second, above every id held)."""
        top = max((b.first_id + len(b.keys) for b in self.batches), default=0)
        return max(now_ms // 1000, top)

    def with_batch(self, batch: PrekeyBatch) -> PrekeyOffer:
        if len(self.batches) >= MAX_OFFER_BATCHES:
            raise PrekeyFetchError("the offer holds as many batches as it may")
        return replace(self, batches=(*self.batches, batch))

    def pruned(self, now_ms: int) -> PrekeyOffer:
        """Without expired batches, their served ids, or expired tokens."""
        batches = tuple(b for b in self.batches if b.expires > now_ms)
        live = {b.first_id + i for b in batches for i in range(len(b.keys))}
        return PrekeyOffer(
            batches,
            frozenset(self.served & live),
            {n: t for n, t in self.paid.items() if t > now_ms},
        )

    def encode(self, params: NetworkParams) -> bytes:
        """As a server keeps it (local, §19.16): batches in order made, ids
        and nonces sorted."""
        return encode_flat(
            [OFFER_VERSION, [b.encode(params) for b in self.batches], sorted(self.served),
             [[n, t] for n, t in sorted(self.paid.items())]]
        )  # fmt: skip

    @classmethod
    def decode(
        cls, params: NetworkParams, raw: bytes, account: bytes, device: bytes, now_ms: int
    ) -> PrekeyOffer:
        """A kept offer; batches that expired meanwhile are dropped."""
        v = decode_flat(raw, MAX_OFFER_BYTES)
        if type(v) is not list or len(v) != 4 or v[0] != OFFER_VERSION:
            raise SchemaError("a prekey offer is [1, batches, served, paid]")
        if type(v[1]) is not list or len(v[1]) > MAX_OFFER_BATCHES:
            raise SchemaError("an offer's batches are bounded")
        if type(v[2]) is not list or type(v[3]) is not list or len(v[3]) > MAX_PAID:
            raise SchemaError("an offer's lists are bounded")
        batches = []
        for b in v[1]:
            if type(b) is not bytes:
                raise SchemaError("a kept batch is bytes")
            try:
                batches.append(decode_batch(params, b, account, device, now_ms))
            except PrekeyExpiredError:
                continue
        served = frozenset(_uint(i, "served id") for i in v[2])
        paid: dict[bytes, int] = {}
        for e in v[3]:
            if type(e) is not list or len(e) != 2:
                raise SchemaError("a paid token is [nonce, expires]")
            paid[_bin(e[0], 16, "nonce")] = _uint(e[1], "expires")
        return cls(tuple(batches), served, paid).pruned(now_ms)


def replenish(
    params: NetworkParams,
    keys: DeviceKeys,
    account: bytes,
    store: PrekeyStore,
    offer: PrekeyOffer,
    secrets: Sequence[bytes],
    now_ms: int,
) -> tuple[PrekeyStore, PrekeyOffer]:
    """A new batch from ``OFFER_BATCH`` fresh secrets: the store with its
    secrets (keep it first) and the offer with its public batch (§19.16)."""
    if len(secrets) != OFFER_BATCH:
        raise SessionUsageError(f"a new batch takes {OFFER_BATCH} secrets")
    held = [*store.one_time, *store.spent]
    first_id = max(offer.next_id(now_ms), max(held, default=-1) + 1)
    expires = now_ms + OFFER_LIFETIME_MS
    batch = make_batch(params, keys, account, first_id, expires, secrets)
    return store.with_batch(first_id, expires, secrets), offer.with_batch(batch)


def serve(
    params: NetworkParams,
    offer: PrekeyOffer,
    request: FetchRequest,
    *,
    mailbox_key: bytes,
    token_key: bytes,
    now_ms: int,
) -> tuple[Answer, PrekeyOffer]:
    """The answer to a fetch for the offer's device, and the offer to keep
    (durably, before answering).  Checks in §19.16's order; a token is
    spent only when a key is served."""
    token = request.token
    if token is None:
        return SignedOnlyAnswer(SignedOnly.NO_TOKEN), offer
    if token.nonce in offer.paid:
        return SignedOnlyAnswer(SignedOnly.TOKEN_SPENT), offer
    try:
        verify_token(params, mailbox_key, request.device, token_key, token, now_ms)
    except TokenExpiredError:
        return SignedOnlyAnswer(SignedOnly.TOKEN_EXPIRED), offer
    except TokenInvalidError:
        return SignedOnlyAnswer(SignedOnly.TOKEN_INVALID), offer
    ids = offer.unserved(now_ms)
    if not ids or len(offer.paid) >= MAX_PAID:
        return SignedOnlyAnswer(SignedOnly.EXHAUSTED), offer
    chosen = ids[0]
    batch = next(b for b in offer.batches if b.first_id <= chosen < b.first_id + len(b.keys))
    proof = batch.proof(chosen - batch.first_id).encode(params)
    new = replace(
        offer,
        served=offer.served | {chosen},
        paid={**offer.paid, token.nonce: token.expires},
    )
    return OneTimeAnswer(proof), new


# -- the rate bound ------------------------------------------------------------------


@dataclass(slots=True)
class _Bucket:
    """``rate`` fetches a second, at most ``burst`` in hand (time in s)."""

    rate: float
    burst: float
    tokens: float
    updated: float

    def level(self, now: float) -> float:
        return min(self.burst, self.tokens + max(0.0, now - self.updated) * self.rate)

    def take(self, now: float) -> bool:
        self.tokens, self.updated = self.level(now), max(now, self.updated)
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass(slots=True)
class FetchLimiter:
    """Fetches a server answers: ``PEER_RATE`` a second per peer (bursts of
    ``PEER_BURST``) and ``TOTAL_RATE`` over all (§19.16).  A peer whose
    bucket refilled is forgotten; with ``MAX_PEERS`` remembered, a new
    peer waits until one refills.  Time in seconds, passed in."""

    total: _Bucket
    peers: dict[str, _Bucket] = field(default_factory=dict)

    @classmethod
    def start(cls, now: float) -> FetchLimiter:
        return cls(_Bucket(TOTAL_RATE, TOTAL_BURST, TOTAL_BURST, now))

    def allow(self, peer: str, now: float) -> bool:
        bucket = self.peers.get(peer)
        if bucket is None:
            if len(self.peers) >= MAX_PEERS:
                self._forget_full(now)
            if len(self.peers) >= MAX_PEERS:
                return False
            bucket = _Bucket(PEER_RATE, PEER_BURST, PEER_BURST, now)
        self.peers[peer] = bucket
        if bucket.level(now) < 1:
            return False
        return self.total.take(now) and bucket.take(now)

    def _forget_full(self, now: float) -> None:
        for peer in [p for p, b in self.peers.items() if b.level(now) >= b.burst]:
            del self.peers[peer]


__all__ = [
    "MAX_ANSWER_BYTES",
    "MAX_REQUEST_BYTES",
    "OFFER_BATCH",
    "PROTOCOL_ID",
    "Answer",
    "ErrorAnswer",
    "FetchLimiter",
    "FetchRequest",
    "FrameType",
    "OneTimeAnswer",
    "PrekeyFetchError",
    "PrekeyOffer",
    "SignedOnly",
    "SignedOnlyAnswer",
    "UploadRequest",
    "UploadedAnswer",
    "decode_answer",
    "decode_request",
    "replenish",
    "serve",
]
