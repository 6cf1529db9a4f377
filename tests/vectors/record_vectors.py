"""records.json: device records v1 and v2 and mailbox grants v1 and v2
(docs/PROTOCOL.md §16, §15.11).

Every value is built field by field here, signed with a real key, and only
then checked against the code (``decode_record``, ``decode_grant``,
``make_record``), so the file spells out the wire form rather than
echoing the code.  Each invalid case carries exactly one defect under a
valid signature, unless the defect is the signature.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from protocol.core import crypto
from protocol.core.canonical import encode_flat
from protocol.messaging.mailbox import MailboxIdentity
from protocol.records.device import (
    MAX_LIFETIME_MS,
    MAX_RECORD_BYTES,
    MAX_RECORD_V1_BYTES,
    SignedPrekey,
    decode_record,
    make_record,
)
from protocol.records.grant import D_MAILBOX_GRANT, MAX_GRANT_BYTES, decode_grant

from ._common import (
    FORMAT_NOTE,
    PARAMS,
    T0,
    Json,
    assert_raises,
    bytes_from_label,
    device_json,
    device_keys,
    params_json,
)

ACCOUNT = bytes_from_label("records/account")
DEVICE = device_keys("records/device")
OTHER_DEVICE = device_keys("records/other-device")
#: the X25519 key of this device is the signed prekey below
PREKEY_KEYS = device_keys("records/prekey")
#: the Ed25519 key of this device is the token key of a v2 grant
TOKEN_KEYS = device_keys("records/token")
MAILBOX_SEEDS = {
    "mailbox_a": bytes_from_label("records/mailbox-a"),
    "mailbox_b": bytes_from_label("records/mailbox-b"),
}
MAILBOXES = {name: MailboxIdentity(seed) for name, seed in MAILBOX_SEEDS.items()}
PEER = {"mailbox_a": "12D3KooWMailboxA", "mailbox_b": "12D3KooWMailboxB"}
DAY = 24 * 3600 * 1000
PREKEY = SignedPrekey(41, PREKEY_KEYS.enc_public)

# Curve25519 u = 0 (small order) and p = 2**255 - 19 (not canonical): §3.3
X25519_ZERO = bytes(32)
X25519_P = (2**255 - 19).to_bytes(32, "little")
#: the Ed25519 identity point (y = 1): on the curve, but of order 1
ED25519_IDENTITY = (1).to_bytes(32, "little")


# -- grants (§15.11) ------------------------------------------------------------

GRANT_NAMES = [
    "version",
    "suite",
    "network",
    "mailbox_key",
    "mailbox_peer",
    "account",
    "device",
    "quota_bytes",
    "quota_count",
    "issued",
    "expires",
    "token_key",
]


def grant_fields(layout: int, mailbox: str = "mailbox_a", **change: object) -> list[object]:
    """The signed elements in the layout of version ``layout``; ``change``
    may give any of them, the version included, another value."""
    values: dict[str, object] = {
        "version": layout,
        "suite": PARAMS.suite,
        "network": PARAMS.network_id,
        "mailbox_key": MAILBOXES[mailbox].public,
        "mailbox_peer": PEER[mailbox],
        "account": ACCOUNT,
        "device": DEVICE.sign_public,
        "quota_bytes": 64 * 1024 * 1024,
        "quota_count": 1000,
        "issued": T0,
        "expires": T0 + 7 * DAY,
        "token_key": b"",
    }
    values.update(change)
    names = GRANT_NAMES if layout == 2 else GRANT_NAMES[:11]
    return [values[n] for n in names]


def sign_grant(fields: list[object], mailbox: str = "mailbox_a") -> bytes:
    return encode_flat([*fields, MAILBOXES[mailbox].sign(D_MAILBOX_GRANT + encode_flat(fields))])


GRANT_V1 = sign_grant(grant_fields(1))
GRANT_V2 = sign_grant(grant_fields(2))
GRANT_V2_TOKEN = sign_grant(
    grant_fields(2, "mailbox_b", token_key=TOKEN_KEYS.sign_public), "mailbox_b"
)
GRANTS = {"grant_v1": GRANT_V1, "grant_v2": GRANT_V2, "grant_v2_token": GRANT_V2_TOKEN}


def _grant_json(name: str, why: str, raw: bytes) -> dict[str, Json]:
    g = decode_grant(raw, PARAMS)
    named: dict[str, object] = {
        "version": g.version,
        "suite": PARAMS.suite,
        "network": g.network,
        "mailbox_key": g.mailbox_key,
        "mailbox_peer": g.mailbox_peer,
        "account": g.account,
        "device": g.device,
        "quota_bytes": g.quota_bytes,
        "quota_count": g.quota_count,
        "issued": g.issued,
        "expires": g.expires,
    }
    if g.version == 2:
        named["token_key"] = g.token_key
    signed = list(named.values())
    assert encode_flat([*signed, g.signature]) == raw, name
    return {
        "name": name,
        "why": why,
        "fields": {k: _plain(v) for k, v in named.items()},
        "signing_input_hex": (D_MAILBOX_GRANT + encode_flat(signed)).hex(),
        "signature": g.signature.hex(),
        "raw_hex": raw.hex(),
    }


def _invalid_grants() -> list[tuple[str, str, bytes, str]]:
    def drop_last(fields: list[object]) -> list[object]:
        return fields[:-1]

    return [
        (
            "grant_token_key_short",
            "a v2 token key is empty or 32 bytes",
            sign_grant(grant_fields(2, token_key=b"\x01" * 16)),
            "SchemaError",
        ),
        (
            "grant_token_key_not_a_point",
            "a 32-byte token key must be an Ed25519 point of prime order (here the identity)",
            sign_grant(grant_fields(2, token_key=ED25519_IDENTITY)),
            "InvalidKeyError",
        ),
        (
            "grant_v2_without_token_key",
            "version 2 has 13 elements (12 signed)",
            sign_grant(drop_last(grant_fields(2))),
            "SchemaError",
        ),
        (
            "grant_v1_with_token_key",
            "version 1 has 12 elements: a v2 layout labelled 1",
            sign_grant(grant_fields(2, version=1)),
            "SchemaError",
        ),
        (
            "grant_version_3",
            "an unknown grant version",
            sign_grant(grant_fields(2, version=3)),
            "UnsupportedVersionError",
        ),
        (
            "grant_suite_1",
            "a suite other than the network's: the retired suite 1 (§12)",
            sign_grant(grant_fields(2, suite=1)),
            "UnsupportedVersionError",
        ),
        (
            "grant_wrong_network",
            "a grant of another network",
            sign_grant(grant_fields(2, network="smu-main")),
            "WrongNetworkError",
        ),
        (
            "grant_expires_at_issue",
            "expires must be after issued",
            sign_grant(grant_fields(2, expires=T0)),
            "BadTimestampError",
        ),
        (
            "grant_signed_by_another_mailbox",
            "mailbox_a's fields under mailbox_b's signature",
            sign_grant(grant_fields(2), "mailbox_b"),
            "BadSignatureError",
        ),
        (
            "grant_oversized",
            f"over {MAX_GRANT_BYTES} bytes, refused before parsing",
            bytes(MAX_GRANT_BYTES + 1),
            "SizeLimitError",
        ),
    ]


# -- records (§16) ----------------------------------------------------------------

RECORD_NAMES = [
    "version",
    "suite",
    "network",
    "account",
    "device",
    "timestamp",
    "expires",
    "peer_ids",
    "addrs",
    "mailboxes",
    "signed_prekey",
    "relays",
    "capabilities",
]


def record_fields(layout: int, **change: object) -> list[object]:
    """As ``grant_fields``: version 1's layout, or version 2's for any other."""
    values: dict[str, object] = {
        "version": layout,
        "suite": PARAMS.suite,
        "network": PARAMS.network_id,
        "account": ACCOUNT,
        "device": DEVICE.sign_public,
        "timestamp": T0,
        "expires": T0 + DAY,
        "peer_ids": ["12D3KooWDevicePeer"],
        "addrs": ["/ip4/192.0.2.7/tcp/4001", "/dns4/node.example/tcp/4001"],
        "mailboxes": [],
        "signed_prekey": [],
        "relays": [],
        "capabilities": [],
    }
    values.update(change)
    names = RECORD_NAMES if layout != 1 else RECORD_NAMES[:10]
    return [values[n] for n in names]


def sign_record(fields: list[object], sign: Callable[[bytes], bytes] = DEVICE.sign) -> bytes:
    return encode_flat([*fields, sign(crypto.D_DEVICE_RECORD + encode_flat(fields))])


def _valid_records() -> list[tuple[str, str, list[object]]]:
    return [
        ("record_v1_bare", "version 1, no mailboxes", record_fields(1)),
        (
            "record_v1_mailbox",
            "version 1 naming a v1 grant with one address; a v1 text may be any printable "
            "characters",
            record_fields(
                1,
                peer_ids=["12D3KooWDevicePeer", "p\u00e9er"],
                mailboxes=[[GRANT_V1, ["/ip4/192.0.2.9/tcp/4001"]]],
            ),
        ),
        ("record_v2_bare", "version 2, every new field empty", record_fields(2)),
        (
            "record_v2_full",
            "version 2 with two v2 grants, a signed prekey, two relays and capabilities 1 "
            "(wrap scheme 2), 2 (per-link channel) and 300 (unassigned: kept, ignored); a "
            "day later than the others",
            record_fields(
                2,
                timestamp=T0 + DAY,
                expires=T0 + 2 * DAY,
                mailboxes=[
                    [GRANT_V2, ["/ip4/192.0.2.9/tcp/4001"]],
                    [GRANT_V2_TOKEN, ["/ip4/192.0.2.10/tcp/4001", "/ip6/2001:db8::1/tcp/4001"]],
                ],
                signed_prekey=[PREKEY.prekey_id, PREKEY.public],
                relays=["12D3KooWRelayOne", "12D3KooWRelayTwo"],
                capabilities=[1, 2, 300],
            ),
        ),
    ]


def _invalid_records() -> list[tuple[str, str, bytes, str]]:
    long_addrs = ["/dns4/" + "a" * 145 + f"{i}/tcp/1" for i in range(8)]
    long_peers = ["12D3KooW" + "p" * 151 + f"{i}" for i in range(4)]
    # valid fields: only the v1 limit is exceeded
    decode_record(sign_record(record_fields(2, addrs=long_addrs, peer_ids=long_peers)), PARAMS)
    v1 = record_fields(1)
    return [
        (
            "record_oversized",
            f"over MAX_RECORD_BYTES ({MAX_RECORD_BYTES}), refused before parsing",
            sign_record(record_fields(2, peer_ids=["x" * MAX_RECORD_BYTES])),
            "SizeLimitError",
        ),
        (
            "record_v1_oversized",
            f"a v1 record over its own limit ({MAX_RECORD_V1_BYTES}); the same fields fit in v2",
            sign_record(record_fields(1, addrs=long_addrs, peer_ids=long_peers)),
            "SizeLimitError",
        ),
        (
            "record_version_3",
            "an unknown record version: dropped without blame by a relay",
            sign_record(record_fields(3)),
            "UnsupportedVersionError",
        ),
        (
            "record_suite_1",
            "a suite other than the network's: the retired suite 1 (§12)",
            sign_record(record_fields(2, suite=1)),
            "UnsupportedVersionError",
        ),
        (
            "record_wrong_network",
            "a record of another network",
            sign_record(record_fields(2, network="smu-main")),
            "WrongNetworkError",
        ),
        (
            "record_v2_short",
            "version 2 has 14 elements: a v1 layout labelled 2",
            sign_record([2, *v1[1:]]),
            "SchemaError",
        ),
        (
            "record_v1_long",
            "version 1 has 11 elements: a v2 layout labelled 1",
            sign_record(record_fields(2, version=1)),
            "SchemaError",
        ),
        (
            "record_capabilities_unordered",
            "capabilities must be strictly increasing",
            sign_record(record_fields(2, capabilities=[2, 1])),
            "SchemaError",
        ),
        (
            "record_capabilities_repeated",
            "strictly increasing: no value twice",
            sign_record(record_fields(2, capabilities=[1, 1])),
            "SchemaError",
        ),
        (
            "record_capability_too_large",
            "every capability is below 2**16",
            sign_record(record_fields(2, capabilities=[1 << 16])),
            "SchemaError",
        ),
        (
            "record_capabilities_too_many",
            "at most 16 capabilities",
            sign_record(record_fields(2, capabilities=list(range(17)))),
            "SchemaError",
        ),
        (
            "record_prekey_small_order",
            "the signed prekey fails §3.3: u = 0",
            sign_record(record_fields(2, signed_prekey=[1, X25519_ZERO])),
            "InvalidKeyError",
        ),
        (
            "record_prekey_not_canonical",
            "the signed prekey fails §3.3: u = p",
            sign_record(record_fields(2, signed_prekey=[1, X25519_P])),
            "InvalidKeyError",
        ),
        (
            "record_prekey_id_too_large",
            "a prekey id is below 2**32",
            sign_record(record_fields(2, signed_prekey=[1 << 32, PREKEY.public])),
            "SchemaError",
        ),
        (
            "record_prekey_without_key",
            "a signed prekey is [] or [id, key]",
            sign_record(record_fields(2, signed_prekey=[1])),
            "SchemaError",
        ),
        (
            "record_too_many_relays",
            "at most 4 relays",
            sign_record(record_fields(2, relays=[f"12D3KooWRelay{i}" for i in range(5)])),
            "SchemaError",
        ),
        (
            "record_v2_text_not_ascii",
            "a v2 text is visible ASCII (the v1 record_v1_mailbox may carry this peer id)",
            sign_record(record_fields(2, peer_ids=["p\u00e9er"])),
            "SchemaError",
        ),
        (
            "record_v2_text_with_space",
            "a v2 text has no space",
            sign_record(record_fields(2, addrs=["/ip4/192.0.2.7/tcp/4001 "])),
            "SchemaError",
        ),
        (
            "record_v2_names_v1_grant",
            "a v2 record names only v2 grants",
            sign_record(record_fields(2, mailboxes=[[GRANT_V1, []]])),
            "SchemaError",
        ),
        (
            "record_v1_names_v2_grant",
            "a v1 record names only v1 grants",
            sign_record(record_fields(1, mailboxes=[[GRANT_V2, []]])),
            "SchemaError",
        ),
        (
            "record_grant_for_another_device",
            "a grant must name the record's own account and device",
            sign_record(
                record_fields(
                    2,
                    mailboxes=[[sign_grant(grant_fields(2, device=OTHER_DEVICE.sign_public)), []]],
                )
            ),
            "SchemaError",
        ),
        (
            "record_expires_at_start",
            "expires must be after timestamp",
            sign_record(record_fields(2, expires=T0)),
            "BadTimestampError",
        ),
        (
            "record_lifetime_too_long",
            "expires at most 30 days after timestamp",
            sign_record(record_fields(2, expires=T0 + MAX_LIFETIME_MS + 1)),
            "BadTimestampError",
        ),
        (
            "record_signed_by_another_device",
            "the fields of this device under another device's signature",
            sign_record(record_fields(2), OTHER_DEVICE.sign),
            "BadSignatureError",
        ),
        (
            "record_v1_relabelled_v2",
            "a signed v1 record re-labelled as v2 with empty new fields: the version is signed",
            _relabelled(),
            "BadSignatureError",
        ),
        (
            "record_non_canonical",
            "capability 1 as a uint8 (cc 01) instead of a fixint",
            _non_canonical(),
            "NonCanonicalError",
        ),
    ]


def _relabelled() -> bytes:
    v1 = sign_record(record_fields(1))
    body, sig = v1[1:-66], v1[-64:]
    # 9b 01 ... -> 9e 02 ... [] [] [] sig: 14 elements, the v1 signature kept
    return b"\x9e\x02" + body[1:] + b"\x90\x90\x90" + b"\xc4\x40" + sig


def _non_canonical() -> bytes:
    raw = sign_record(record_fields(2, capabilities=[1]))
    fixed = b"\x91\x01\xc4\x40"
    assert raw.count(fixed) == 1
    return raw.replace(fixed, b"\x91\xcc\x01\xc4\x40")


def _plain(value: object) -> Json:
    if type(value) is bytes:
        return value.hex()
    if type(value) is list:
        return [_plain(v) for v in value]
    return value


def _record_json(name: str, why: str, fields: list[object]) -> dict[str, Json]:
    raw = sign_record(fields)
    r = decode_record(raw, PARAMS)
    assert r.version == fields[0]
    # the code's builder writes the very same bytes
    built = make_record(
        PARAMS,
        ACCOUNT,
        DEVICE,
        timestamp=r.timestamp,
        lifetime_ms=r.expires - r.timestamp,
        peer_ids=r.peer_ids,
        addrs=r.addrs,
        mailboxes=r.mailboxes,
        signed_prekey=r.signed_prekey,
        relays=r.relays,
        capabilities=r.capabilities,
        version=r.version,
    )
    assert built.raw == raw, name
    named: dict[str, Any] = dict(zip(RECORD_NAMES, (_plain(f) for f in fields), strict=False))
    named["mailboxes"] = [
        {"grant": next(n for n, g in GRANTS.items() if g == grant), "addrs": addrs}
        for grant, addrs in fields[9]  # type: ignore[attr-defined]
    ]
    return {
        "name": name,
        "why": why,
        "fields": named,
        "signing_input_hex": (crypto.D_DEVICE_RECORD + encode_flat(fields)).hex(),
        "signature": r.signature.hex(),
        "raw_hex": raw.hex(),
    }


def build() -> dict[str, Json]:
    grants = [
        _grant_json("grant_v1", "a version-1 grant from mailbox_a", GRANT_V1),
        _grant_json("grant_v2", "a version-2 grant from mailbox_a, no token key yet", GRANT_V2),
        _grant_json(
            "grant_v2_token",
            "a version-2 grant from mailbox_b with the device's token key",
            GRANT_V2_TOKEN,
        ),
    ]
    invalid_grants = []
    for name, why, raw, error in _invalid_grants():
        assert_raises(error, decode_grant, raw, PARAMS)
        invalid_grants.append({"name": name, "why": why, "error": error, "raw_hex": raw.hex()})
    records = [_record_json(*row) for row in _valid_records()]
    invalid_records = []
    for name, why, raw, error in _invalid_records():
        assert_raises(error, decode_record, raw, PARAMS)
        invalid_records.append({"name": name, "why": why, "error": error, "raw_hex": raw.hex()})
    # newest wins, across versions: by (timestamp, encoding), ascending
    order = sorted(records, key=lambda r: (r["fields"]["timestamp"], bytes.fromhex(r["raw_hex"])))
    return {
        "description": "Device records (docs/PROTOCOL.md §16) and mailbox grants (§15.11), "
        "both versions of each. 'valid' values decode to their 'fields' and verify over "
        "'signing_input_hex'; 'invalid' ones fail decode_record / decode_grant with 'error'. "
        "'newest_last': the valid records of the one device, ordered by (timestamp, "
        "encoding): the last one wins.",
        "format": FORMAT_NOTE,
        "params": params_json(),
        "domains": {
            "D_DEVICE_RECORD": crypto.D_DEVICE_RECORD.hex(),
            "D_MAILBOX_GRANT": D_MAILBOX_GRANT.hex(),
        },
        "limits": {
            "max_record_bytes": MAX_RECORD_BYTES,
            "max_record_v1_bytes": MAX_RECORD_V1_BYTES,
            "max_grant_bytes": MAX_GRANT_BYTES,
            "max_lifetime_ms": MAX_LIFETIME_MS,
        },
        "keys": {
            "account": ACCOUNT.hex(),
            "device": device_json("records/device"),
            "other_device": device_json("records/other-device"),
            "prekey": {**device_json("records/prekey"), "use": "enc_public is the signed prekey"},
            "token": {**device_json("records/token"), "use": "sign_public is the token key"},
            **{
                name: {"seed": seed.hex(), "public": MAILBOXES[name].public.hex()}
                for name, seed in MAILBOX_SEEDS.items()
            },
        },
        "grants": {"valid": grants, "invalid": invalid_grants},
        "records": {"valid": records, "invalid": invalid_records},
        "newest_last": [r["name"] for r in order],
    }
