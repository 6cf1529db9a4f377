"""Mailbox grants v1 and v2 as formats (PROTOCOL.md §15.11): what
``decode_grant`` accepts, and the typed error for every field it refuses."""

from __future__ import annotations

from typing import Any

import pytest

from protocol.core.canonical import decode_flat, encode_flat
from protocol.core.errors import (
    BadSignatureError,
    BadTimestampError,
    InvalidKeyError,
    NonCanonicalError,
    SchemaError,
    SizeLimitError,
    UnsupportedVersionError,
    WrongNetworkError,
)
from protocol.core.machine import Now
from protocol.messaging.mailbox import Mailbox, MailboxIdentity
from protocol.records.grant import (
    D_MAILBOX_GRANT,
    GRANT_V1,
    GRANT_V2,
    MAX_GRANT_BYTES,
    decode_grant,
    grant_fields,
)

from .conftest import FAST, T0, device

BOX = MailboxIdentity(b"g" * 32)
ACCOUNT = b"\x0a" * 32
DEVICE = device("grant").sign_public
TOKEN_KEY = device("tokens").sign_public
DAY = 24 * 3600 * 1000


def signed(version: int, token_key: bytes = b"", **change: Any) -> bytes:
    """A grant signed by ``BOX``; ``change`` replaces fields by position
    name before signing, so that only the changed field is wrong."""
    fields = grant_fields(
        FAST, version, BOX.public, "12D3KooWbox", ACCOUNT, DEVICE, 1 << 20, 100, T0, T0 + DAY
    )
    if version == GRANT_V2:
        fields[11] = token_key
    for index, value in change.items():
        i = int(index.lstrip("f"))
        if value is _DROP:
            del fields[i]
        else:
            fields[i] = value
    return encode_flat([*fields, BOX.sign(D_MAILBOX_GRANT + encode_flat(fields))])


_DROP = object()


def test_the_mailbox_issues_v2_grants() -> None:
    box = Mailbox(FAST, BOX, "12D3KooWbox")
    grant = box.issue_grant(ACCOUNT, DEVICE, now=Now.virtual(0.0))
    assert grant.version == GRANT_V2 and grant.token_key == b""
    assert decode_flat(grant.raw, MAX_GRANT_BYTES)[0] == 2
    with_key = box.issue_grant(ACCOUNT, DEVICE, now=Now.virtual(0.0), token_key=TOKEN_KEY)
    assert with_key.token_key == TOKEN_KEY and decode_grant(with_key.raw, FAST) == with_key
    assert box.grant_of(DEVICE) == with_key


def test_v1_grants_still_decode() -> None:
    raw = signed(GRANT_V1)
    grant = decode_grant(raw, FAST)
    assert (grant.version, grant.token_key, grant.raw) == (GRANT_V1, b"", raw)
    assert grant.valid_for(ACCOUNT, DEVICE, T0) and grant.mailbox_peer == "12D3KooWbox"


def test_v2_round_trip_with_and_without_a_token_key() -> None:
    for key in (b"", TOKEN_KEY):
        grant = decode_grant(signed(GRANT_V2, key), FAST)
        assert grant.version == GRANT_V2 and grant.token_key == key
        assert (grant.quota_bytes, grant.quota_count, grant.expires) == (1 << 20, 100, T0 + DAY)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        # the token key: empty or a 32-byte Ed25519 point of prime order
        (signed(GRANT_V2, b"\x01" * 16), SchemaError),
        (signed(GRANT_V2, TOKEN_KEY + b"\x00"), SchemaError),
        (signed(GRANT_V2, f11="not bytes"), SchemaError),
        (signed(GRANT_V2, (1).to_bytes(32, "little")), InvalidKeyError),  # the identity point
        (signed(GRANT_V2, b"\xff" * 32), InvalidKeyError),  # not canonical
        # one count per version: v1 has 12 elements, v2 has 13
        (signed(GRANT_V2, f11=_DROP), SchemaError),
        (signed(GRANT_V2, f0=GRANT_V1), SchemaError),
        # version and suite
        (signed(GRANT_V1, f0=3), UnsupportedVersionError),
        (signed(GRANT_V2, f1=1), UnsupportedVersionError),  # the retired suite
        (signed(GRANT_V2, f0=True), SchemaError),
        (signed(GRANT_V2, f1="1"), SchemaError),
        (encode_flat([2, 1]), SchemaError),
        # the other fields, as in version 1
        (signed(GRANT_V2, f2="smu-other"), WrongNetworkError),
        (signed(GRANT_V2, f3=b"k" * 31), SchemaError),
        (signed(GRANT_V2, f4=""), SchemaError),
        (signed(GRANT_V2, f7=-1), SchemaError),
        (signed(GRANT_V2, f10=T0), BadTimestampError),
        (signed(GRANT_V2)[:-1] + b"\x00", BadSignatureError),
        (bytes(MAX_GRANT_BYTES + 1), SizeLimitError),
    ],
)
def test_every_bad_field_has_its_error(raw: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        decode_grant(raw, FAST)


def test_the_version_is_signed() -> None:
    """A v1 grant re-labelled as v2 (with a token key added) is a forgery:
    the signature covers the version, so one format cannot pass for the
    other."""
    fields = decode_flat(signed(GRANT_V1), MAX_GRANT_BYTES)
    relabelled = encode_flat([2, *fields[1:11], b"", fields[11]])
    with pytest.raises(BadSignatureError):
        decode_grant(relabelled, FAST)
    with pytest.raises(NonCanonicalError):
        decode_grant(signed(GRANT_V2).replace(b"\x9d\x02", b"\xdc\x00\x0d\x02", 1), FAST)
