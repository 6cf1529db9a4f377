"""Mailbox grants (PROTOCOL.md §15.11): a mailbox's signed promise to hold
envelopes for one device.  A format of the records layer, because a device
record names its mailboxes by their grants (§16)."""

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
from protocol.core.fields import fixed_bin as _bin
from protocol.core.fields import uint as _uint
from protocol.core.params import FORMAT_VERSION, SUITE_V1, NetworkParams

D_MAILBOX_GRANT = b"smu/mailbox-grant/v1\x00"
MAX_GRANT_BYTES = 512
MAX_PEER_ID = 128
GRANT_FIELDS = 12


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

    def valid_for(self, account: bytes, device: bytes, now_ms: int) -> bool:
        return self.account == account and self.device == device and now_ms < self.expires


def check_peer_id(v: object) -> str:
    if type(v) is not str or not 0 < len(v) <= MAX_PEER_ID or not v.isprintable():
        raise SchemaError("a peer id is printable text")
    return v


def decode_grant(raw: bytes, params: NetworkParams) -> Grant:
    """Structure and the mailbox's signature (expiry is the caller's check)."""
    f = decode_flat(raw, MAX_GRANT_BYTES)
    if type(f) is not list or len(f) != GRANT_FIELDS:
        raise SchemaError(f"a grant is an array of {GRANT_FIELDS}")
    if type(f[0]) is not int or type(f[1]) is not int:
        raise SchemaError("version and suite are integers")
    if f[0] != FORMAT_VERSION or f[1] != SUITE_V1:
        raise UnsupportedVersionError("grant format is not known here")
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
        _bin(f[11], 64, "signature"),
        raw,
    )
    if grant.expires <= grant.issued:
        raise BadTimestampError("a grant expires after it is issued")
    crypto.verify(grant.mailbox_key, D_MAILBOX_GRANT + encode_flat(f[:-1]), grant.signature)
    return grant
