"""Mailbox grants (PROTOCOL.md §15.11): a mailbox's signed promise to hold
envelopes for one device.  A format of the records layer, because a device
record names its mailboxes by their grants (§16).

Two versions, told apart by their first element:

    v1: [1, suite, network, mailbox_key, mailbox_peer, account, device,
         quota_bytes, quota_count, issued, expires, signature]
    v2: [2, suite, network, mailbox_key, mailbox_peer, account, device,
         quota_bytes, quota_count, issued, expires, token_key, signature]

``token_key`` (v2) is empty, or the Ed25519 key that verifies the one-time
deposit tokens the device hands its contacts (DESIGN §5: quotas are earned,
not claimed).  The signature is the mailbox's, over ``D_MAILBOX_GRANT`` and
the canonical encoding of every element but the last; the version inside
keeps the two formats' signed bytes apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.core import crypto
from protocol.core.canonical import decode_flat, encode_flat
from protocol.core.errors import (
    BadTimestampError,
    SchemaError,
    UnsupportedVersionError,
    WrongNetworkError,
)
from protocol.core.fields import MAX_PEER_ID_CHARS
from protocol.core.fields import fixed_bin as _bin
from protocol.core.fields import uint as _uint
from protocol.core.params import NetworkParams, check_suite

D_MAILBOX_GRANT = b"smu/mailbox-grant/v1\x00"
MAX_GRANT_BYTES = 512
MAX_PEER_ID = MAX_PEER_ID_CHARS
GRANT_V1 = 1
GRANT_V2 = 2
#: elements of each version's array, signature included
GRANT_FIELDS = 12
GRANT_V2_FIELDS = 13
_FIELDS = {GRANT_V1: GRANT_FIELDS, GRANT_V2: GRANT_V2_FIELDS}
TOKEN_KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class Grant:
    network: str
    mailbox_key: bytes
    mailbox_peer: str
    account: bytes
    device: bytes
    quota_bytes: int
    quota_count: int
    issued: int
    expires: int
    signature: bytes
    raw: bytes
    version: int = GRANT_V1
    #: v2: the deposit-token verification key, or empty (not set yet); v1: empty
    token_key: bytes = b""

    def valid_for(self, account: bytes, device: bytes, now_ms: int) -> bool:
        return self.account == account and self.device == device and now_ms < self.expires


def check_peer_id(v: object) -> str:
    if type(v) is not str or not 0 < len(v) <= MAX_PEER_ID or not v.isprintable():
        raise SchemaError("a peer id is printable text")
    return v


def _token_key(v: object) -> bytes:
    """Empty, or a full Ed25519 point check: no signature of the token key
    covers it here, and every depositor will verify tokens against it."""
    if type(v) is not bytes or len(v) not in (0, TOKEN_KEY_BYTES):
        raise SchemaError(f"a token key is empty or {TOKEN_KEY_BYTES} bytes")
    if v:
        crypto.check_ed25519_public(v)
    return v


def grant_fields(
    params: NetworkParams,
    version: int,
    mailbox_key: bytes,
    mailbox_peer: str,
    account: bytes,
    device: bytes,
    quota_bytes: int,
    quota_count: int,
    issued: int,
    expires: int,
    token_key: bytes = b"",
) -> list[object]:
    """The signed elements of a grant of ``version`` (everything but the
    signature), for the mailbox that signs it."""
    fields: list[object] = [
        version,
        params.suite,
        params.network_id,
        mailbox_key,
        mailbox_peer,
        account,
        device,
        quota_bytes,
        quota_count,
        issued,
        expires,
    ]
    if version == GRANT_V2:
        fields.append(token_key)
    return fields


def decode_grant(raw: bytes, params: NetworkParams) -> Grant:
    """Structure and the mailbox's signature (expiry is the caller's check)."""
    f = decode_flat(raw, MAX_GRANT_BYTES)
    # The version first, so that a later format may change every field
    # after [version, suite, network] (§12); then, for a known version,
    # exactly the checks version 1 always made, in its order.
    if type(f) is not list or len(f) < 3 or type(f[0]) is not int:
        raise SchemaError("a grant is an array [version, suite, network, ...]")
    version = f[0]
    if version not in _FIELDS:
        raise UnsupportedVersionError(f"grant format {version} is not known here")
    if len(f) != _FIELDS[version]:
        raise SchemaError(f"a version-{version} grant is an array of {_FIELDS[version]}")
    if type(f[1]) is not int:
        raise SchemaError("version and suite are integers")
    check_suite(params, f[1], "a grant")
    if f[2] != params.network_id:
        raise WrongNetworkError("grant is for another network")
    grant = Grant(
        params.network_id,
        _bin(f[3], 32, "mailbox key"),
        check_peer_id(f[4]),
        _bin(f[5], 32, "account"),
        _bin(f[6], 32, "device"),
        _uint(f[7], "quota bytes"),
        _uint(f[8], "quota count"),
        _uint(f[9], "issued"),
        _uint(f[10], "expires"),
        _bin(f[-1], 64, "signature"),
        raw,
        version,
        _token_key(f[11]) if version == GRANT_V2 else b"",
    )
    if grant.expires <= grant.issued:
        raise BadTimestampError("a grant expires after it is issued")
    crypto.verify(grant.mailbox_key, D_MAILBOX_GRANT + encode_flat(f[:-1]), grant.signature)
    return grant
