"""Signed device records: acceptance rules of DESIGN §3 (soft state)."""

from __future__ import annotations

from typing import Any

import pytest

from protocol.core.canonical import decode_flat, encode_flat
from protocol.core.crypto import D_DEVICE_RECORD
from protocol.core.errors import (
    BadSignatureError,
    BadTimestampError,
    InvalidKeyError,
    SchemaError,
    SizeLimitError,
    UnauthorisedError,
    UnsupportedVersionError,
    UsageError,
    WrongNetworkError,
)
from protocol.core.machine import Now
from protocol.core.params import NetworkParams
from protocol.messaging.mailbox import Mailbox, MailboxIdentity
from protocol.records.device import (
    MAX_LIFETIME_MS,
    MAX_RECORD_BYTES,
    MAX_RECORD_V1_BYTES,
    MAX_SKEW_MS,
    RECORD_V1,
    RECORD_V2,
    Capability,
    Offer,
    RecordBook,
    SignedDeviceRecord,
    SignedPrekey,
    decode_record,
    make_record,
    verify_record,
)
from protocol.records.grant import (
    D_MAILBOX_GRANT,
    GRANT_V1,
    GRANT_V2,
    MAX_GRANT_BYTES,
    decode_grant,
    grant_fields,
)

from .conftest import FAST, T0, History, device

HOUR = 3600 * 1000


def _active(h: History, ledger_state_keys: frozenset[bytes]):  # type: ignore[no-untyped-def]
    return lambda account, device: account == h.account and device in ledger_state_keys


def test_newest_wins_and_revocation_drops() -> None:
    h = History()
    h.add("a1", "d0", "d1", ["g"])
    ledger = h.ledger()
    book = RecordBook(FAST)
    active = _active(h, ledger.state(h.account).active_keys)
    r1 = make_record(
        FAST,
        h.account,
        h.keys["d1"],
        timestamp=T0,
        lifetime_ms=HOUR,
        peer_ids=("12D3KooWA",),
        addrs=("/ip4/127.0.0.1/tcp/1",),
    )
    r2 = make_record(
        FAST,
        h.account,
        h.keys["d1"],
        timestamp=T0 + 10,
        lifetime_ms=HOUR,
        peer_ids=("12D3KooWB",),
        addrs=(),
    )
    assert book.offer(r2.raw, active, T0)[0] is Offer.ACCEPTED
    assert book.offer(r1.raw, active, T0)[0] is Offer.STALE
    assert book.get(h.account, h.keys["d1"].sign_public) == r2
    h.revoke("rv", "d0", "d1", ["a1"])
    ledger.ingest(h.events["rv"].raw)
    dropped = book.prune(_active(h, ledger.state(h.account).active_keys), T0)
    assert dropped == [r2] and len(book) == 0
    with pytest.raises(UnauthorisedError):
        book.offer(r2.raw, _active(h, ledger.state(h.account).active_keys), T0)


def test_rejections() -> None:
    h = History()
    active = _active(h, h.ledger().state(h.account).active_keys)
    book = RecordBook(FAST)
    future = make_record(
        FAST,
        h.account,
        h.keys["d0"],
        timestamp=T0 + MAX_SKEW_MS + 1,
        lifetime_ms=HOUR,
        peer_ids=(),
        addrs=(),
    )
    with pytest.raises(BadTimestampError):
        book.offer(future.raw, active, T0)
    old = make_record(
        FAST,
        h.account,
        h.keys["d0"],
        timestamp=T0 - 2 * HOUR,
        lifetime_ms=HOUR,
        peer_ids=(),
        addrs=(),
    )
    with pytest.raises(BadTimestampError):
        book.offer(old.raw, active, T0)
    ok = make_record(
        FAST, h.account, h.keys["d0"], timestamp=T0, lifetime_ms=HOUR, peer_ids=(), addrs=()
    )
    forged = bytearray(ok.raw)
    forged[-1] ^= 1
    with pytest.raises(BadSignatureError):
        book.offer(bytes(forged), active, T0)
    other = NetworkParams(network_id="smu-other", genesis_pow_bits=0, event_pow_bits=0)
    with pytest.raises(WrongNetworkError):
        decode_record(ok.raw, other)
    assert len(book) == 0


def test_a_record_names_only_mailbox_grants_for_its_own_device() -> None:
    from protocol.core.errors import InvalidInput, SchemaError
    from protocol.core.machine import Now
    from protocol.messaging.mailbox import Mailbox, MailboxIdentity

    h = History()
    h.add("a1", "d0", "d1", ["g"])
    box = Mailbox(FAST, MailboxIdentity(b"\x05" * 32), peer_id="12D3KooWmailbox")
    mine = box.issue_grant(h.account, h.keys["d0"].sign_public, now=Now(0.0, T0))
    other = box.issue_grant(h.account, h.keys["d1"].sign_public, now=Now(0.0, T0))

    def record(mailboxes: tuple[tuple[bytes, tuple[str, ...]], ...]) -> SignedDeviceRecord:
        return make_record(
            FAST,
            h.account,
            h.keys["d0"],
            timestamp=T0,
            lifetime_ms=HOUR,
            peer_ids=(),
            addrs=(),
            mailboxes=mailboxes,
        )

    ok = record(((mine.raw, ("/ip4/127.0.0.1/tcp/1",)),))
    assert ok.mailboxes == ((mine.raw, ("/ip4/127.0.0.1/tcp/1",)),)
    assert decode_record(ok.raw, FAST) == ok
    with pytest.raises(SchemaError):
        record(((other.raw, ()),))
    forged = bytearray(mine.raw)
    forged[-1] ^= 1
    with pytest.raises(InvalidInput):
        record(((bytes(forged), ()),))


# -- version 2 (PROTOCOL.md §16) ---------------------------------------------


def _v1_grant(account: bytes, dev: bytes) -> bytes:
    box = MailboxIdentity(b"\x06" * 32)
    fields = grant_fields(FAST, GRANT_V1, box.public, "12D3KooWold", account, dev, 1, 1, T0, T0 + 1)
    return encode_flat([*fields, box.sign(D_MAILBOX_GRANT + encode_flat(fields))])


def _v2_grant(account: bytes, dev: bytes) -> bytes:
    box = Mailbox(FAST, MailboxIdentity(b"\x07" * 32), peer_id="12D3KooWnew")
    return box.issue_grant(account, dev, now=Now.virtual(0.0)).raw


PREKEY = SignedPrekey(7, device("prekey").enc_public)


def _v2(h: History, **kw: Any) -> SignedDeviceRecord:
    args: dict[str, Any] = {
        "timestamp": T0,
        "lifetime_ms": HOUR,
        "peer_ids": ("12D3KooWA",),
        "addrs": ("/ip4/127.0.0.1/tcp/1",),
    }
    args.update(kw)
    return make_record(FAST, h.account, h.keys["d0"], **args)


def test_v2_round_trip() -> None:
    h = History()
    grant = _v2_grant(h.account, h.keys["d0"].sign_public)
    r = _v2(
        h,
        mailboxes=((grant, ("/ip4/10.0.0.1/tcp/2",)),),
        signed_prekey=PREKEY,
        relays=("12D3KooWrelay1", "12D3KooWrelay2"),
        capabilities=(1, 2, 900),
    )
    assert r.version == RECORD_V2 and r.raw[:2] == b"\x9e\x02"
    assert r.signed_prekey == PREKEY and r.relays == ("12D3KooWrelay1", "12D3KooWrelay2")
    assert r.capabilities == (1, 2, 900)  # 900 is no capability we know: kept, ignored
    assert r.has(Capability.WRAP_SCHEME_2) and r.has(Capability.LINK_CHANNEL)
    assert decode_record(r.raw, FAST) == r
    verify_record(decode_record(r.raw, FAST, verify=False))
    bare = _v2(h)
    assert (bare.signed_prekey, bare.relays, bare.capabilities) == (None, (), ())
    assert not bare.has(Capability.WRAP_SCHEME_2)
    assert decode_flat(bare.raw, MAX_RECORD_BYTES)[10:13] == [[], [], []]


def test_v1_is_still_read_and_built() -> None:
    h = History()
    grant = _v1_grant(h.account, h.keys["d0"].sign_public)
    r = _v2(h, version=RECORD_V1, mailboxes=((grant, ()),))
    assert r.version == RECORD_V1 and r.raw[:2] == b"\x9b\x01"
    assert (r.signed_prekey, r.relays, r.capabilities) == (None, (), ())
    assert decode_record(r.raw, FAST) == r
    # v1 text rule: printable characters, not only ASCII
    assert _v2(h, version=RECORD_V1, peer_ids=("pé",)).peer_ids == ("pé",)
    with pytest.raises(UsageError):
        _v2(h, version=RECORD_V1, capabilities=(1,))
    with pytest.raises(UsageError):
        _v2(h, version=RECORD_V1, signed_prekey=PREKEY)
    with pytest.raises(UsageError):
        _v2(h, version=3)


def test_each_record_version_names_only_its_own_grant_version() -> None:
    h = History()
    dev = h.keys["d0"].sign_public
    with pytest.raises(SchemaError):
        _v2(h, mailboxes=((_v1_grant(h.account, dev), ()),))
    with pytest.raises(SchemaError):
        _v2(h, version=RECORD_V1, mailboxes=((_v2_grant(h.account, dev), ()),))


def test_the_version_is_signed() -> None:
    """The same elements under the other version's header are a forgery."""
    h = History()
    v1 = _v2(h, version=RECORD_V1)
    fields = decode_flat(v1.raw, MAX_RECORD_BYTES)
    as_v2 = encode_flat([2, *fields[1:10], [], [], [], fields[10]])
    with pytest.raises(BadSignatureError):
        decode_record(as_v2, FAST)


def _resigned(
    h: History, index: int, value: object, base: SignedDeviceRecord | None = None
) -> bytes:
    """A v2 record with one element replaced, signed again: only that element is wrong."""
    fields = decode_flat(_v2(h).raw, MAX_RECORD_BYTES)[:-1]
    fields[index] = value
    return encode_flat([*fields, h.keys["d0"].sign(D_DEVICE_RECORD + encode_flat(fields))])


_SMALL_ORDER_X25519 = bytes(32)
_NOT_CANONICAL_X25519 = b"\xff" * 32


@pytest.mark.parametrize(
    ("index", "value", "error"),
    [
        (0, 3, UnsupportedVersionError),
        (0, True, UnsupportedVersionError),
        (1, 1, UnsupportedVersionError),  # the retired suite
        (2, "smu-other", WrongNetworkError),
        (7, ["p" * 161], SchemaError),
        (7, ["pé"], SchemaError),  # v2 texts are visible ASCII
        (7, ["a b"], SchemaError),
        (8, ["/ip4/1.2.3.4/tcp/1"] * 9, SchemaError),
        # signed prekey: [] or [id uint32, X25519 key passing §3.3]
        (10, [7], SchemaError),
        (10, [7, PREKEY.public, 1], SchemaError),
        (10, [-1, PREKEY.public], SchemaError),
        (10, [1 << 32, PREKEY.public], SchemaError),
        (10, [True, PREKEY.public], SchemaError),
        (10, [7, PREKEY.public[:31]], SchemaError),
        (10, [7, "key"], SchemaError),
        (10, [7, _SMALL_ORDER_X25519], InvalidKeyError),
        (10, [7, _NOT_CANONICAL_X25519], InvalidKeyError),
        (10, b"", SchemaError),
        # relays: at most 4 peer ids, the peer-id text rule
        (11, ["r"] * 5, SchemaError),
        (11, [""], SchemaError),
        (11, ["r\n"], SchemaError),
        (11, "r", SchemaError),
        # capabilities: at most 16, each below 2**16, strictly increasing
        (12, [2, 1], SchemaError),
        (12, [1, 1], SchemaError),
        (12, list(range(17)), SchemaError),
        (12, [1 << 16], SchemaError),
        (12, [-1], SchemaError),
        (12, [True], SchemaError),
        (12, [b"\x01"], SchemaError),
        (12, {}, SchemaError),
    ],
)
def test_every_bad_v2_field_is_refused_with_its_error(
    index: int, value: object, error: type[Exception]
) -> None:
    h = History()
    with pytest.raises(error):
        decode_record(_resigned(h, index, value), FAST)


def test_good_edges_of_the_v2_fields() -> None:
    h = History()
    for index, value in (
        (10, [0, PREKEY.public]),
        (10, [(1 << 32) - 1, PREKEY.public]),
        (11, ["r" * 160] * 4),
        (12, list(range(16))),
        (12, [0, (1 << 16) - 1]),
    ):
        r = decode_record(_resigned(h, index, value), FAST)
        assert r.version == RECORD_V2


def test_field_counts_and_size_limits() -> None:
    h = History()
    v2 = decode_flat(_v2(h).raw, MAX_RECORD_BYTES)
    for short in (v2[:13], [*v2[:10], v2[13]], v2[:2]):
        with pytest.raises(SchemaError):
            decode_record(encode_flat(short), FAST)
    with pytest.raises(SizeLimitError):
        decode_record(bytes(MAX_RECORD_BYTES + 1), FAST)
    # a v1 record keeps its 2048-byte limit; the same contents fit in v2
    big = ("/dns4/" + "x" * 150,) * 8
    peers = ("12D3KooW" + "p" * 152,) * 4
    with pytest.raises(SizeLimitError):
        _v2(h, version=RECORD_V1, addrs=big, peer_ids=peers)
    assert MAX_RECORD_V1_BYTES < len(_v2(h, addrs=big, peer_ids=peers).raw) <= MAX_RECORD_BYTES


def test_the_worst_case_v2_record_fits() -> None:
    """PROTOCOL.md §16 adds up the largest v2 record: 4,556 bytes on a
    network whose id has 31 bytes; this builds it."""
    params = NetworkParams(network_id="n" * 31, genesis_pow_bits=0, event_pow_bits=0)
    h = History(params)
    dev = h.keys["d0"].sign_public
    grants = []
    for i in range(2):
        box = MailboxIdentity(bytes([i]) * 32)
        # 19 ASCII and 109 two-byte characters: 237 bytes of peer id, and a
        # grant of exactly MAX_GRANT_BYTES
        peer = "p" * 19 + "é" * 109
        most = 2**64 - 1  # quotas and times at their 9-byte widest
        token = device("tokens").sign_public
        fields = grant_fields(
            params, GRANT_V2, box.public, peer, h.account, dev, most, most, 2**63, most, token
        )
        raw = encode_flat([*fields, box.sign(D_MAILBOX_GRANT + encode_flat(fields))])
        assert len(raw) == MAX_GRANT_BYTES and decode_grant(raw, params).version == GRANT_V2
        grants.append((raw, ("a" * 160, "b" * 160)))
    r = make_record(
        params,
        h.account,
        h.keys["d0"],
        timestamp=params.max_timestamp_ms - MAX_LIFETIME_MS,
        lifetime_ms=MAX_LIFETIME_MS,
        peer_ids=tuple(c * 160 for c in "ABCD"),
        addrs=tuple(c * 160 for c in "abcdefgh"),
        mailboxes=tuple(grants),
        signed_prekey=SignedPrekey((1 << 32) - 1, PREKEY.public),
        relays=tuple(c * 160 for c in "WXYZ"),
        capabilities=tuple(range((1 << 16) - 16, 1 << 16)),
    )
    assert len(r.raw) == 4556 <= MAX_RECORD_BYTES


def test_newest_wins_across_versions() -> None:
    h = History()
    book = RecordBook(FAST)
    active = _active(h, h.ledger().state(h.account).active_keys)
    old_v2 = _v2(h, timestamp=T0)
    new_v1 = _v2(h, timestamp=T0 + 1, version=RECORD_V1)
    assert book.offer(old_v2.raw, active, T0)[0] is Offer.ACCEPTED
    assert book.offer(new_v1.raw, active, T0)[0] is Offer.ACCEPTED
    assert book.offer(old_v2.raw, active, T0)[0] is Offer.STALE
    # equal timestamps: the greater encoding wins, whatever the version
    same_v2 = _v2(h, timestamp=T0 + 1)
    winner = max(new_v1, same_v2, key=lambda r: r.raw)
    book.offer(same_v2.raw, active, T0)
    assert book.get(h.account, h.keys["d0"].sign_public) == winner
