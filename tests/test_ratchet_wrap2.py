"""The sealed layer of wrap scheme 2 (PROTOCOL.md §19.13): a content key
travels from a device's session book, sealed to the recipient's signed
prekey (or its encryption key), and comes out only at that device, under
that key; the session is found by the id inside, the initiator of a new
session is named inside, and any change to the data is refused."""

from __future__ import annotations

import pytest

from protocol.core import errors
from protocol.core.canonical import encode_flat
from protocol.messaging import wrap2
from protocol.messaging.session_errors import SessionDecryptError, SessionUsageError
from protocol.messaging.wrap2 import Wrap2Inner

from .conftest import T0
from .ratchet_support import SPK_ID, Side, book_pair, secret

CK = secret("content key")


def _first_wrap() -> tuple[Side, Side, bytes, bytes]:
    a, b = book_pair()
    sid = a.start(b)
    _, message = a.send(sid, CK)
    inner = Wrap2Inner(sid, (a.d.party.account, a.d.party.device), message)
    data = wrap2.seal(b.d.party.device, b.d.spk, secret("e/1"), inner)
    return a, b, sid, data


def test_a_content_key_both_ways_through_sealed_wraps() -> None:
    a, b, sid, data = _first_wrap()
    # bob: the key field names his signed prekey, so he knows which secret opens it
    inner = wrap2.open_wrap(b.d.party.device, b.d.spk, b.d.store.signed_secret(SPK_ID, T0), data)
    assert inner.initiator == (a.d.party.account, a.d.party.device)
    got = b.receive(a, (inner.session_id, inner.message))  # a looks alice up in his replica
    assert got.plaintext == CK and got.new_session
    # the reply is sealed to alice's encryption key (bob has no record of hers here)
    _, reply = b.send(sid, secret("ck2"))
    data = wrap2.seal(a.d.party.device, a.d.party.ik, secret("e/2"),
                      Wrap2Inner(sid, None, reply))  # fmt: skip
    inner = wrap2.open_wrap(a.d.party.device, a.d.party.ik, a.d.keys.enc_secret, data)
    assert inner.initiator is None
    assert a.receive(b, (inner.session_id, inner.message)).plaintext == secret("ck2")


def test_a_wrap_opens_only_for_its_device_and_key() -> None:
    a, b, _, data = _first_wrap()
    spk_secret = b.d.store.signed_secret(SPK_ID, T0)
    device = b.d.party.device
    with pytest.raises(SessionDecryptError):  # another device named (the aad)
        wrap2.open_wrap(a.d.party.device, b.d.spk, spk_secret, data)
    with pytest.raises(SessionDecryptError):  # the wrong secret
        wrap2.open_wrap(device, b.d.spk, b.d.keys.enc_secret, data)
    with pytest.raises(SessionDecryptError):  # another key named
        wrap2.open_wrap(device, b.d.party.ik, spk_secret, data)
    for i in range(len(data)):
        flipped = data[:i] + bytes([data[i] ^ 0x40]) + data[i + 1 :]
        with pytest.raises(errors.InvalidInput):
            wrap2.open_wrap(device, b.d.spk, spk_secret, flipped)
    with pytest.raises(errors.InvalidKeyError):  # a small-order ephemeral key
        wrap2.open_wrap(device, b.d.spk, spk_secret, bytes(32) + data[32:])
    for size in (47, wrap2.MAX_DATA_BYTES + 1):
        with pytest.raises(SessionDecryptError):
            wrap2.open_wrap(device, b.d.spk, spk_secret, bytes(size))
    with pytest.raises(SessionUsageError):
        wrap2.seal(device, b.d.spk, b"short", Wrap2Inner(bytes(32), None, b"x"))


def test_the_inner_is_checked_field_by_field() -> None:
    good = Wrap2Inner(bytes(32), (bytes(32), bytes(32)), b"m")
    assert wrap2.decode_inner(good.encode()) == good
    for value in (
        [bytes(32), [], b""],
        [bytes(31), [], b"m"],
        [bytes(32), [bytes(32)], b"m"],
        [bytes(32), [], "m"],
        [bytes(32), []],
    ):
        with pytest.raises(errors.SchemaError):
            wrap2.decode_inner(encode_flat(value))
    with pytest.raises(errors.SizeLimitError):
        wrap2.decode_inner(b"\x90" * (wrap2.MAX_INNER_BYTES + 1))
