"""Signed device records: acceptance rules of DESIGN §3 (soft state)."""

from __future__ import annotations

import pytest

from protocol.core.errors import (
    BadSignatureError,
    BadTimestampError,
    UnauthorisedError,
    WrongNetworkError,
)
from protocol.core.params import NetworkParams
from protocol.records.device import (
    MAX_SKEW_MS,
    Offer,
    RecordBook,
    SignedDeviceRecord,
    decode_record,
    make_record,
)

from .conftest import FAST, T0, History

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
