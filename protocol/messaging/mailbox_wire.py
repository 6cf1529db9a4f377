"""Mailbox frames on ``/smu/mailbox/1`` (PROTOCOL.md §15.13), the device
authentication they carry (§15.12) and the mailbox's typed refusals.

One request and one answer per stream, each a canonical array
``[1, type, ...fields]``.  Requests decode to frozen values
(``decode_request``), answers too (``decode_answer``); both decoders raise
only ``InvalidInput``.  Two request types were added beside the first
five rather than changing them, so a node of the first version still gets
the answer it always got:

* ``DEPOSIT_TOKEN`` (6) = DEPOSIT plus a one-time token (§15.16): a
  contact's deposit.  DEPOSIT (1) is still answered, as a *stranger's*
  deposit, from the small pool of §15.17.
* ``GRANT_REQUEST_KEYED`` (7) = GRANT_REQUEST plus the device's token key,
  which the grant (v2) then names.  GRANT_REQUEST (5) still gets a grant,
  with an empty token key.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import nacl.bindings as sodium

from protocol.core import crypto
from protocol.core.canonical import decode_flat, encode_flat
from protocol.core.errors import (
    InvalidInput,
    LimitExceededError,
    SchemaError,
    UnsupportedVersionError,
    UsageError,
)
from protocol.core.fields import fixed_bin as _bin
from protocol.core.fields import uint as _uint
from protocol.core.keys import DeviceKeys
from protocol.core.params import NetworkParams
from protocol.messaging.envelope import MAX_ENVELOPE_BYTES
from protocol.messaging.tokens import TOKEN_KEY_BYTES, Token, decode_token
from protocol.records.grant import MAX_GRANT_BYTES

PROTOCOL_ID = "/smu/mailbox/1"
WIRE_VERSION = 1

D_MAILBOX_AUTH = b"smu/mailbox-auth/v1\x00"
D_MAILBOX_ITEM = b"smu/mailbox-item/v1\x00"

ITEM_ID_BYTES = 16
NONCE_BYTES = 16
#: a request frame: one envelope plus a little framing (a token is 94 bytes)
MAX_REQUEST_BYTES = MAX_ENVELOPE_BYTES + 256
MAX_FETCH = 256
#: an ITEMS answer stops adding envelopes past this (it holds at least one)
MAX_ANSWER_BYTES = 8 * 1024 * 1024
MAX_ANSWER_FRAME = MAX_ANSWER_BYTES + MAX_ENVELOPE_BYTES + 64 * 1024
MAX_DELETE = 1024


# --------------------------------------------------------------------------
# Refusals (§15.8).  Each has a stable code that travels in ERROR frames.


class MailboxError(InvalidInput):
    code = "mailbox"


class NoGrantError(MailboxError):
    """No (unexpired) grant for that device here."""

    code = "no_grant"


class QuotaExceededError(LimitExceededError):
    """The device's (its grant's) or its account's share is full, or the
    device has spent too many tokens here lately."""

    code = "quota"


class MailboxFullError(LimitExceededError):
    """The mailbox as a whole holds as much as it will (its global caps)."""

    code = "mailbox_full"


class StrangerPoolFullError(LimitExceededError):
    """A deposit without a token found no room in the strangers' pool: the
    pool of the device, of the depositor's network group, or the group's
    rate (§15.17)."""

    code = "stranger_pool_full"


class GrantRefusedError(MailboxError):
    """This mailbox's policy does not serve that device."""

    code = "grant_refused"


class ChallengeError(MailboxError):
    """Unknown, expired, already used, or issued for another device."""

    code = "challenge"


class MailboxIdentity:
    """The mailbox's dedicated Ed25519 key (not the node's libp2p key)."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise UsageError("a mailbox seed is 32 bytes")
        pk, sk = sodium.crypto_sign_seed_keypair(seed)
        self.public = bytes(pk)
        self._secret = bytes(sk)

    def sign(self, message: bytes) -> bytes:
        return crypto.sign(self._secret, message)


# --------------------------------------------------------------------------
# Device authentication (§15.12)


class Op(IntEnum):
    FETCH = 1
    DELETE = 2
    GRANT = 3


def auth_message(
    network: str, mailbox_key: bytes, op: Op, device: bytes, nonce: bytes, args: list[object]
) -> bytes:
    """What a device signs to fetch, delete or ask for a grant: bound to the
    mailbox, the operation and the nonce."""
    return D_MAILBOX_AUTH + encode_flat([network, mailbox_key, int(op), device, nonce, args])


def grant_args(account: bytes, timestamp: int, token_key: bytes | None) -> list[object]:
    """The signed ``args`` of a grant request: ``[account, timestamp]``, or
    with the token key ``[account, timestamp, token_key]`` (type 7)."""
    return [account, timestamp] if token_key is None else [account, timestamp, token_key]


# --------------------------------------------------------------------------
# Frames: [version, type, ...fields]


class Frame(IntEnum):
    DEPOSIT = 1  # [device, envelope]: a stranger's deposit
    CHALLENGE_REQUEST = 2  # [device]
    FETCH = 3  # [device, nonce, limit, signature]
    DELETE = 4  # [device, nonce, [item ids], signature]
    GRANT_REQUEST = 5  # [account, device, timestamp, signature]
    DEPOSIT_TOKEN = 6  # [device, envelope, token]: a contact's deposit
    GRANT_REQUEST_KEYED = 7  # [account, device, timestamp, token_key, signature]
    DEPOSITED = 16  # [item id]
    CHALLENGE = 17  # [nonce, expires]
    ITEMS = 18  # [[item id, deposited at, envelope], ...]
    DELETED = 19  # [count]
    GRANTED = 20  # [grant]
    ERROR = 31  # [code, message]


@dataclass(frozen=True, slots=True)
class DepositRequest:
    device: bytes
    envelope: bytes
    #: None: a stranger's deposit (DEPOSIT); else DEPOSIT_TOKEN
    token: Token | None = None


@dataclass(frozen=True, slots=True)
class ChallengeRequest:
    device: bytes


@dataclass(frozen=True, slots=True)
class FetchRequest:
    device: bytes
    nonce: bytes
    limit: int
    signature: bytes


@dataclass(frozen=True, slots=True)
class DeleteRequest:
    device: bytes
    nonce: bytes
    item_ids: tuple[bytes, ...]
    signature: bytes


@dataclass(frozen=True, slots=True)
class GrantRequest:
    account: bytes
    device: bytes
    timestamp: int
    signature: bytes
    #: None: GRANT_REQUEST (5), no token key; else GRANT_REQUEST_KEYED (7)
    token_key: bytes | None = None


Request = DepositRequest | ChallengeRequest | FetchRequest | DeleteRequest | GrantRequest


@dataclass(frozen=True, slots=True)
class Item:
    item_id: bytes
    deposited_at: int
    envelope: bytes


@dataclass(frozen=True, slots=True)
class Deposited:
    item_id: bytes


@dataclass(frozen=True, slots=True)
class ChallengeIssued:
    nonce: bytes
    expires: int


@dataclass(frozen=True, slots=True)
class Items:
    items: tuple[Item, ...]


@dataclass(frozen=True, slots=True)
class Deleted:
    count: int


@dataclass(frozen=True, slots=True)
class Granted:
    #: check with ``decode_grant`` and ``Grant.valid_for`` before use
    grant: bytes


@dataclass(frozen=True, slots=True)
class Refused:
    code: str
    message: str


Answer = Deposited | ChallengeIssued | Items | Deleted | Granted | Refused


def frame_of(t: Frame, *fields: object) -> bytes:
    return encode_flat([WIRE_VERSION, int(t), *fields])


def deposit_request(device: bytes, envelope: bytes, token: Token | None = None) -> bytes:
    """DEPOSIT (a stranger), or DEPOSIT_TOKEN with ``token`` (a contact)."""
    if token is None:
        return frame_of(Frame.DEPOSIT, device, envelope)
    return frame_of(Frame.DEPOSIT_TOKEN, device, envelope, token.to_wire())


def challenge_request(device: bytes) -> bytes:
    return frame_of(Frame.CHALLENGE_REQUEST, device)


def fetch_request(
    params: NetworkParams, me: DeviceKeys, mailbox_key: bytes, nonce: bytes, limit: int
) -> bytes:
    msg = auth_message(params.network_id, mailbox_key, Op.FETCH, me.sign_public, nonce, [limit])
    return frame_of(Frame.FETCH, me.sign_public, nonce, limit, me.sign(msg))


def delete_request(
    params: NetworkParams,
    me: DeviceKeys,
    mailbox_key: bytes,
    nonce: bytes,
    item_ids: list[bytes],
) -> bytes:
    ids = sorted(set(item_ids))
    msg = auth_message(params.network_id, mailbox_key, Op.DELETE, me.sign_public, nonce, [ids])
    return frame_of(Frame.DELETE, me.sign_public, nonce, ids, me.sign(msg))


def grant_request(
    params: NetworkParams,
    me: DeviceKeys,
    account: bytes,
    mailbox_key: bytes,
    now_ms: int,
    token_key: bytes | None = None,
) -> bytes:
    """Ask a mailbox for a grant; proves possession of the device key.  With
    ``token_key`` (32 bytes) the grant will name it (GRANT_REQUEST_KEYED)."""
    args = grant_args(account, now_ms, token_key)
    msg = auth_message(params.network_id, mailbox_key, Op.GRANT, me.sign_public, b"", args)
    if token_key is None:
        return frame_of(Frame.GRANT_REQUEST, account, me.sign_public, now_ms, me.sign(msg))
    if len(token_key) != TOKEN_KEY_BYTES:
        raise UsageError(f"a token key is {TOKEN_KEY_BYTES} bytes")
    return frame_of(
        Frame.GRANT_REQUEST_KEYED, account, me.sign_public, now_ms, token_key, me.sign(msg)
    )


def error_frame(exc: InvalidInput) -> bytes:
    return frame_of(Frame.ERROR, exc.code, str(exc)[:200])


def _split(raw: bytes, max_size: int) -> tuple[Frame, list[object]]:
    f = decode_flat(raw, max_size)
    if type(f) is not list or len(f) < 2 or type(f[0]) is not int or type(f[1]) is not int:
        raise SchemaError("a frame is [version, type, ...]")
    if f[0] != WIRE_VERSION:
        raise UnsupportedVersionError(f"mailbox wire version {f[0]} is not known here")
    try:
        return Frame(f[1]), f[2:]
    except ValueError as exc:
        raise SchemaError(f"unknown frame type {f[1]}") from exc


def _arity(fields: list[object], n: int, what: str) -> None:
    if len(fields) != n:
        raise SchemaError(f"{what} has {n} fields")


def _envelope(v: object) -> bytes:
    if type(v) is not bytes:
        raise SchemaError("envelope must be bin")
    return v


def decode_request(raw: bytes) -> Request:
    """The mailbox's decoder of a request frame (sizes and types only:
    grants, tokens and signatures are the machine's to check)."""
    t, f = _split(raw, MAX_REQUEST_BYTES)
    if t is Frame.DEPOSIT:
        _arity(f, 2, "deposit")
        return DepositRequest(_bin(f[0], 32, "device"), _envelope(f[1]))
    if t is Frame.DEPOSIT_TOKEN:
        _arity(f, 3, "deposit with a token")
        return DepositRequest(_bin(f[0], 32, "device"), _envelope(f[1]), decode_token(f[2]))
    if t is Frame.CHALLENGE_REQUEST:
        _arity(f, 1, "challenge request")
        return ChallengeRequest(_bin(f[0], 32, "device"))
    if t is Frame.FETCH:
        _arity(f, 4, "fetch")
        return FetchRequest(
            _bin(f[0], 32, "device"),
            _bin(f[1], NONCE_BYTES, "nonce"),
            _uint(f[2], "limit"),
            _bin(f[3], 64, "signature"),
        )
    if t is Frame.DELETE:
        _arity(f, 4, "delete")
        ids = f[2]
        if type(ids) is not list or len(ids) > MAX_DELETE:
            raise SchemaError(f"at most {MAX_DELETE} ids")
        return DeleteRequest(
            _bin(f[0], 32, "device"),
            _bin(f[1], NONCE_BYTES, "nonce"),
            tuple(_bin(i, ITEM_ID_BYTES, "item id") for i in ids),
            _bin(f[3], 64, "signature"),
        )
    if t is Frame.GRANT_REQUEST:
        _arity(f, 4, "grant request")
        return GrantRequest(
            _bin(f[0], 32, "account"),
            _bin(f[1], 32, "device"),
            _uint(f[2], "timestamp"),
            _bin(f[3], 64, "signature"),
        )
    if t is Frame.GRANT_REQUEST_KEYED:
        _arity(f, 5, "grant request with a token key")
        return GrantRequest(
            _bin(f[0], 32, "account"),
            _bin(f[1], 32, "device"),
            _uint(f[2], "timestamp"),
            _bin(f[4], 64, "signature"),
            _bin(f[3], TOKEN_KEY_BYTES, "token key"),
        )
    raise SchemaError(f"{t.name} is not a request")


def decode_answer(raw: bytes) -> Answer:
    """The client's decoder of a mailbox's answer."""
    t, f = _split(raw, MAX_ANSWER_FRAME)
    if t is Frame.DEPOSITED:
        _arity(f, 1, "deposited")
        return Deposited(_bin(f[0], ITEM_ID_BYTES, "item id"))
    if t is Frame.CHALLENGE:
        _arity(f, 2, "challenge")
        return ChallengeIssued(_bin(f[0], NONCE_BYTES, "nonce"), _uint(f[1], "expires"))
    if t is Frame.ITEMS:
        _arity(f, 1, "items")
        rows = f[0]
        if type(rows) is not list or len(rows) > MAX_FETCH:
            raise SchemaError(f"at most {MAX_FETCH} items")
        items = []
        for r in rows:
            if type(r) is not list or len(r) != 3 or type(r[2]) is not bytes:
                raise SchemaError("an item is [id, deposited at, envelope]")
            if len(r[2]) > MAX_ENVELOPE_BYTES:
                raise SchemaError("item larger than an envelope")
            items.append(Item(_bin(r[0], ITEM_ID_BYTES, "item id"), _uint(r[1], "time"), r[2]))
        return Items(tuple(items))
    if t is Frame.DELETED:
        _arity(f, 1, "deleted")
        return Deleted(_uint(f[0], "count"))
    if t is Frame.GRANTED:
        _arity(f, 1, "granted")
        if type(f[0]) is not bytes or len(f[0]) > MAX_GRANT_BYTES:
            raise SchemaError("a grant is bin")
        return Granted(f[0])
    if t is Frame.ERROR:
        _arity(f, 2, "error")
        if type(f[0]) is not str or type(f[1]) is not str or len(f[0]) + len(f[1]) > 512:
            raise SchemaError("an error is [code, message]")
        return Refused(f[0], f[1])
    raise SchemaError(f"{t.name} is not an answer")


def item_id_of(device: bytes, envelope: bytes) -> bytes:
    """The id a mailbox gives an envelope held for ``device`` (§15.12)."""
    return crypto.hash_with(D_MAILBOX_ITEM, device + envelope, ITEM_ID_BYTES)
