"""One peer-id length limit (PROTOCOL.md §1): a peer id of 160 characters
passes everywhere the wire carries one (PEERS frames, grants, device
records, link strings) and one of 161 is refused everywhere."""

from __future__ import annotations

import pytest

from protocol.core.canonical import encode_flat
from protocol.core.errors import SchemaError
from protocol.core.fields import MAX_PEER_ID_CHARS
from protocol.linking.wire import LinkOffer
from protocol.messaging.mailbox import MailboxIdentity
from protocol.records.device import decode_record, make_record
from protocol.records.grant import D_MAILBOX_GRANT, GRANT_V2, decode_grant, grant_fields
from protocol.sync.wire import PeersFrame, decode_frame, encode_frame

from .conftest import FAST, T0, device

BOX = MailboxIdentity(b"p" * 32)
ACCOUNT = b"\x0b" * 32
DAY = 24 * 3600 * 1000
LONGEST = "1" * MAX_PEER_ID_CHARS
TOO_LONG = LONGEST + "2"


def test_the_limit_is_160() -> None:
    assert MAX_PEER_ID_CHARS == 160


def _peers(peer: str) -> bytes:
    # built by hand: encode_frame does not check what it writes
    return encode_flat([1, 7, [[peer, ["/ip4/192.0.2.1/tcp/4001"]]]])


def test_peers_frame() -> None:
    frame = decode_frame(_peers(LONGEST))
    assert isinstance(frame, PeersFrame) and frame.peers[0][0] == LONGEST
    assert encode_frame(frame) == _peers(LONGEST)
    with pytest.raises(SchemaError):
        decode_frame(_peers(TOO_LONG))


def _grant(peer: str) -> bytes:
    fields = grant_fields(
        FAST, GRANT_V2, BOX.public, peer, ACCOUNT, device("pid").sign_public, 1 << 20, 10, T0,
        T0 + DAY,
    )  # fmt: skip
    fields[11] = b""
    return encode_flat([*fields, BOX.sign(D_MAILBOX_GRANT + encode_flat(fields))])


def test_grant() -> None:
    assert decode_grant(_grant(LONGEST), FAST).mailbox_peer == LONGEST
    with pytest.raises(SchemaError):
        decode_grant(_grant(TOO_LONG), FAST)


def test_device_record() -> None:
    keys = device("pid")
    for peer, ok in ((LONGEST, True), (TOO_LONG, False)):
        if ok:
            record = make_record(
                FAST, ACCOUNT, keys, timestamp=T0, lifetime_ms=DAY, peer_ids=(peer,), addrs=()
            )
            assert decode_record(record.raw, FAST).peer_ids == (peer,)
        else:
            with pytest.raises(SchemaError):
                make_record(
                    FAST, ACCOUNT, keys, timestamp=T0, lifetime_ms=DAY, peer_ids=(peer,), addrs=()
                )


def test_link_string() -> None:
    def offer(peer: str) -> LinkOffer:
        return LinkOffer(FAST.network_id, ACCOUNT, bytes(8), bytes(16), peer, (), T0 + DAY)

    assert LinkOffer.parse(offer(LONGEST).to_text()).peer_id == LONGEST
    with pytest.raises(SchemaError):
        LinkOffer.parse(offer(TOO_LONG).to_text())
