"""The device-linking handshake (docs/PROTOCOL.md §14) against hostile
input: what the MACs bind, tampered and malformed frames, the link string
and its checksum, and the spec's vector.  Machines only, joined by the fake
link of ``linking_support``."""

from __future__ import annotations

import dataclasses
import random

import msgpack
import pytest

from protocol.core import crypto
from protocol.core.canonical import encode
from protocol.core.errors import (
    BadNameError,
    BadSignatureError,
    ChecksumError,
    DecodeError,
    InvalidEventError,
    InvalidInput,
    NonCanonicalError,
    SchemaError,
    SizeLimitError,
    UnsupportedVersionError,
    UsageError,
    WrongNetworkError,
)
from protocol.core.keys import B32_ALPHABET, DeviceKeys, b32encode
from protocol.linking import machines as lk
from protocol.linking import reports, wire
from protocol.log.events import DeviceIntro

from .conftest import FAST, T0, History, device
from .linking_support import (
    ADDRS,
    LINK_ID,
    PA,
    PJ,
    SECRET,
    at,
    claim,
    confirmed,
    events,
    failure,
    make_approver,
    make_joiner,
    only,
    refusal,
    st,
)

# --------------------------------------------------------------------------
# Binding and tampering


def _join_fields(jn: lk.Joiner) -> list[object]:
    frame = lk.decode_frame(only(jn.start(at(1))), FAST, lk.APPROVER_BOUND_MAX_BYTES)
    assert isinstance(frame, lk.JoinFrame)
    return [1, 1, frame.link_id, frame.intro.to_wire(), frame.mac]


def test_join_mac_binds_peer_ids_and_intro(history: History) -> None:
    ledger = history.ledger()
    # a joiner whose own peer id differs from what Noise authenticated
    ap = make_approver(history.account)
    jn = make_joiner(ap.offer, device("new"), own="12D3KooWClaimedPeer")
    out = ap.receive(only(jn.start(at(1))), remote_peer=PJ, now=at(1), ledger=ledger)
    assert isinstance(refusal(out), lk.LinkMacError)
    # an approver reached under another peer id than the link's
    other = make_approver(history.account, peer="12D3KooWOtherApprover")
    jn = make_joiner(ap.offer, device("new"))
    out = other.receive(only(jn.start(at(1))), remote_peer=PJ, now=at(1), ledger=ledger)
    assert isinstance(refusal(out), lk.LinkMacError)
    # a renamed device (the MAC covers the intro)
    ap = make_approver(history.account)
    fields = _join_fields(make_joiner(ap.offer, device("new")))
    fields[3][2] = "evil laptop"  # type: ignore[index]
    out = ap.receive(encode(fields), remote_peer=PJ, now=at(1), ledger=ledger)
    assert isinstance(refusal(out), lk.LinkMacError)
    # a flipped MAC byte
    fields = _join_fields(make_joiner(ap.offer, device("new")))
    fields[4] = bytes([fields[4][0] ^ 1]) + fields[4][1:]  # type: ignore[index]
    out = ap.receive(encode(fields), remote_peer=PJ, now=at(1), ledger=ledger)
    assert isinstance(refusal(out), lk.LinkMacError)
    assert ap.failures == 2


def test_valid_mac_with_forged_pop_is_refused(history: History) -> None:
    ledger = history.ledger()
    ap = make_approver(history.account)
    new = device("new")
    intro = DeviceIntro(new.sign_public, new.enc_public, "laptop", bytes(64))
    transcript = reports._transcript(FAST.network_id, history.account, PA, PJ, LINK_ID, intro)
    mac = wire._keyed(SECRET, lk.D_LINK_JOIN, transcript)
    data = lk.encode_frame(lk.JoinFrame(LINK_ID, intro, mac))
    out = ap.receive(data, remote_peer=PJ, now=at(1), ledger=ledger)
    assert isinstance(refusal(out), BadSignatureError)
    assert out[0] == lk.Send(PJ, lk.encode_frame(lk.ErrorFrame("link_aborted")))
    assert ap.failures == 1


def test_malformed_frames_are_refused_with_typed_errors_and_not_counted(
    history: History,
) -> None:
    ledger = history.ledger()
    ap = make_approver(history.account)
    good = _join_fields(make_joiner(ap.offer, device("new")))
    raw = encode(good)

    def bad_name(name: str) -> bytes:
        f = list(good)
        f[3] = [*good[3][:2], name, good[3][3]]  # type: ignore[index]
        return encode(f)

    cases: list[tuple[bytes, type[InvalidInput]]] = [
        (raw + b"\x00", NonCanonicalError),  # trailing byte
        (msgpack.packb([1, 1, *good[2:]], use_bin_type=True)[:-1], DecodeError),  # truncated
        (raw.replace(b"\x95\x01\x01", b"\x95\xd0\x01\x01", 1), NonCanonicalError),
        (encode([2, *good[1:]]), UnsupportedVersionError),
        (encode([1, 99, *good[2:]]), SchemaError),
        (encode([1, 1, *good[2:4]]), SchemaError),  # missing MAC
        (encode([1, 1, b"short", *good[3:]]), SchemaError),
        (bad_name("lap\u202etop"), BadNameError),
        (bad_name(""), BadNameError),
        (encode([1, 3, "x"]), SchemaError),  # CONFIRM has no fields
        (encode([1, 6, "bad code"]), SchemaError),
        (bytes(lk.APPROVER_BOUND_MAX_BYTES + 1), SizeLimitError),
        (encode({"v": 1}), SchemaError),
    ]
    for data, expected in cases:
        err = refusal(ap.receive(data, remote_peer=PJ, now=at(1), ledger=ledger))
        assert isinstance(err, expected), (data, err)
    assert ap.failures == 0 and st(ap) is lk.ApproverState.OFFERED
    out = ap.receive(encode([1, 1, bytes(8), *good[3:]]), remote_peer=PJ, now=at(0), ledger=ledger)
    assert isinstance(refusal(out), lk.UnknownLinkError)
    assert lk.link_id_of(raw, FAST) == LINK_ID
    with pytest.raises(lk.UnexpectedFrameError):
        lk.link_id_of(lk.encode_frame(lk.DoneFrame()), FAST)


def test_random_mutations_are_only_refused(history: History) -> None:
    """Mutated frames fed to both machines: refused as outputs, never an
    exception, and the ledger is untouched."""
    ledger = history.ledger()
    ap = make_approver(history.account)
    join = only(make_joiner(ap.offer, device("new")).start(at(1)))
    accept = only(ap.receive(join, remote_peer=PJ, now=at(1), ledger=ledger))
    rng = random.Random(1)
    refused = 0
    for _ in range(200):
        for frame in (join, accept):
            data = bytearray(frame)
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            fresh = make_approver(history.account)
            jn = make_joiner(fresh.offer, device("new"))
            jn.start(at(1))
            if frame is join:
                out = fresh.receive(bytes(data), remote_peer=PJ, now=at(1), ledger=ledger)
                if isinstance(out[-1], lk.Hangup):
                    refusal(out)
                    refused += 1
            else:
                out = jn.receive(bytes(data), at(1))
                if isinstance(out[0], lk.JoinFailed):
                    failure(jn, out)
                    refused += 1
    # a mutation may hit the name or land on the same byte: most are refused
    assert refused > 300
    assert ledger.event_count == 1


def test_tampered_accept_is_caught_by_the_joiner(history: History) -> None:
    ledger = history.ledger()
    _, jn, out = claim(history, ledger)
    frame = lk.decode_frame(only(out), FAST, 1 << 20)
    assert isinstance(frame, lk.AcceptFrame)
    # another account's events, under a MAC that does not cover them
    other = History(name="mallory")
    forged = lk.AcceptFrame((other.genesis.raw,), frame.mac)
    assert isinstance(failure(jn, jn.receive(lk.encode_frame(forged), at(2))), lk.LinkMacError)

    # even with a valid MAC (a malicious approver knows the secret), the
    # events must be the link's account
    _, jn, _ = claim(history, ledger)
    mac = reports._accept_mac(SECRET, jn._th, [other.genesis.raw])
    out = jn.receive(lk.encode_frame(lk.AcceptFrame((other.genesis.raw,), mac)), at(2))
    assert isinstance(failure(jn, out), SchemaError)


def test_tampered_approved_is_caught_by_the_joiner(history: History) -> None:
    ledger = history.ledger()
    ap, jn = confirmed(history, ledger)
    approval = ap.approve(history.keys["d0"], ledger, timestamp_ms=T0 + 3, now=at(3))
    frame = lk.decode_frame(only(approval.outputs), FAST, 1 << 20)
    assert isinstance(frame, lk.ApprovedFrame)
    *head, add = frame.events
    broken = add[:-1] + bytes([add[-1] ^ 1])  # the signature's last byte
    out = jn.receive(lk.encode_frame(lk.ApprovedFrame((*head, broken))), at(4))
    assert isinstance(failure(jn, out), BadSignatureError)

    # an APPROVED without the add-device event does not make the joiner active
    _, jn = confirmed(history, ledger)
    out = jn.receive(lk.encode_frame(lk.ApprovedFrame(tuple(head))), at(4))
    assert isinstance(failure(jn, out), InvalidEventError)


def test_out_of_order_frames_are_refused(history: History) -> None:
    ledger = history.ledger()
    ap, jn, _ = claim(history, ledger)
    out = ap.receive(lk.encode_frame(lk.DoneFrame()), remote_peer=PJ, now=at(2), ledger=ledger)
    assert isinstance(refusal(out), lk.UnexpectedFrameError)
    with pytest.raises(UsageError):
        jn.confirm(at(2))  # nothing to confirm before ACCEPT
    out = jn.receive(lk.encode_frame(lk.ApprovedFrame((history.genesis.raw,))), at(2))
    assert isinstance(failure(jn, out), lk.UnexpectedFrameError)
    with pytest.raises(UsageError):
        jn.start(at(3))  # already started
    fresh = make_approver(history.account)
    out = fresh.receive(
        lk.encode_frame(lk.ConfirmFrame()), remote_peer=PJ, now=at(0), ledger=ledger
    )
    assert isinstance(refusal(out), lk.UnexpectedFrameError)


def test_joiner_checks_network_and_peer(history: History) -> None:
    offer = make_approver(history.account).offer
    with pytest.raises(WrongNetworkError):
        make_joiner(dataclasses.replace(offer, network_id="smu-main"), device("new"))
    with pytest.raises(lk.WrongPeerError):
        lk.Joiner(FAST, offer, device("n"), "x", own_peer=PJ, remote_peer="12D3KooWX", now=at(0))
    with pytest.raises(UsageError):
        make_joiner(offer, device("new"), name="bad\nname")


def test_unknown_error_code_is_a_generic_link_error() -> None:
    err = lk.error_from_code("from_the_future")
    assert type(err) is lk.LinkError
    assert lk.error_frame(SchemaError("x")) == lk.encode_frame(lk.ErrorFrame("link_aborted"))
    assert type(lk.error_from_code("link_timeout")) is lk.LinkTimeoutError


# --------------------------------------------------------------------------
# The link string


def test_link_string_round_trips_in_both_forms(history: History) -> None:
    offer = make_approver(history.account).offer
    text, uri = offer.to_text(), offer.to_uri()
    assert text.startswith("smu1link") and uri.startswith("smu://link/")
    assert text[len("smu1link") :] == uri[len("smu://link/") :]
    for form in (text, uri, text.upper(), uri.upper(), f"  {text}\n"):
        assert lk.LinkOffer.parse(form) == offer
    assert offer.addrs == ADDRS and offer.peer_id == PA
    assert len(offer.secret) * 8 >= 128


def test_link_string_typo_is_caught_by_the_checksum(history: History) -> None:
    text = make_approver(history.account).offer.to_text()
    start = len(lk.TEXT_PREFIX)
    checked = 0
    for i in range(start, len(text) - 2, 5):
        for shift in (1, 7):
            wrong = B32_ALPHABET[(B32_ALPHABET.index(text[i]) + shift) % 32]
            with pytest.raises(ChecksumError):
                lk.LinkOffer.parse(text[:i] + wrong + text[i + 1 :])
            checked += 1
    assert checked > 50
    # a dropped character or a foreign one is a decode error
    with pytest.raises(DecodeError):
        lk.LinkOffer.parse(text[:20] + text[21:])
    with pytest.raises(DecodeError):
        lk.LinkOffer.parse(text[:20] + "u" + text[21:])
    with pytest.raises(DecodeError):
        lk.LinkOffer.parse("smu2link" + text[start:])
    with pytest.raises(SizeLimitError):
        lk.LinkOffer.parse(text * 10)


def test_link_with_unknown_version_or_bad_fields(history: History) -> None:
    def wrap(fields: list[object]) -> str:
        payload = encode(fields)
        check = crypto.hash_with(lk.D_LINK_CHECKSUM, payload, lk.CHECKSUM_BYTES)
        return lk.TEXT_PREFIX + b32encode(payload + check)

    base: list[object] = [1, "smu-unit", history.account, LINK_ID, SECRET, PA, list(ADDRS), T0]
    assert lk.LinkOffer.parse(wrap(base)).account_id == history.account
    with pytest.raises(UnsupportedVersionError):
        lk.LinkOffer.parse(wrap([2, *base[1:]]))
    with pytest.raises(SchemaError):
        lk.LinkOffer.parse(wrap([*base[:4], bytes(8), *base[5:]]))  # 64-bit secret
    with pytest.raises(SchemaError):
        lk.LinkOffer.parse(wrap([*base[:6], ["/ip4/1.2.3.4/tcp/1"] * 9, T0]))
    with pytest.raises(SchemaError):
        lk.LinkOffer.parse(wrap([*base[:5], "peer\x1b[2J", *base[6:]]))


def test_secrets_stay_out_of_repr(history: History) -> None:
    ledger = history.ledger()
    ap, jn, out = claim(history, ledger)
    (requested,) = events(out)
    text = ap.offer.to_text()
    body = text[len(lk.TEXT_PREFIX) :]
    for obj in (ap.offer, ap, jn, requested, lk.LinkOffer.parse(text)):
        shown = repr(obj)
        assert SECRET.hex() not in shown and repr(SECRET) not in shown
        assert body[:40] not in shown
    with pytest.raises(UsageError):
        lk.Approver(
            FAST, history.account, peer_id=PA, addrs=(), link_id=LINK_ID, secret=bytes(8),
            now=at(0),
        )  # fmt: skip
    with pytest.raises(UsageError):
        lk.Approver(
            FAST, history.account, peer_id="has space", addrs=(), link_id=LINK_ID,
            secret=SECRET, now=at(0),
        )  # fmt: skip


def test_joiner_refuses_to_join_with_a_key_already_in_the_account(history: History) -> None:
    # An approver that skipped its own check (it knows the secret, so its MAC
    # is valid) cannot get a joiner to re-join with a key the account has.
    history.add("a1", "d0", "d1", ["g"])
    events = [history.genesis.raw, history.events["a1"].raw]
    jn = make_joiner(make_approver(history.account).offer, history.keys["d1"])
    jn.start(at(1))
    mac = reports._accept_mac(SECRET, jn._th, events)
    out = jn.receive(lk.encode_frame(lk.AcceptFrame(tuple(events), mac)), at(2))
    assert isinstance(failure(jn, out), lk.DeviceKnownError)


def test_spec_vector() -> None:
    """docs/PROTOCOL.md §14.11, byte for byte."""
    params = dataclasses.replace(FAST, network_id="smu-test")
    offer = lk.LinkOffer(
        "smu-test",
        bytes([0x11]) * 32,
        bytes(range(8)),
        bytes(range(0x40, 0x50)),
        "12D3KooWExampleApprover",
        ("/ip4/192.0.2.7/tcp/4001",),
        1_750_000_600_000,
    )
    text = offer.to_text()
    assert text == (
        "smu1linkk00tgwvdempq8sbkek22048h248h248h248h248h248h248h248h248h248h248h248h248h"
        "rg4000820c20a1g7rg840ga28d24ahj7914mmjtc9n74zdsh69236jvfdxbmay31dnr6rsa1e1r74vvpcn"
        "s93dsfd5r38bsh74s2wc1e68q3ebvmcdr2yd1g60rwy00006bq8ag3r1wppmpz"
    )
    assert lk.LinkOffer.parse(text) == offer
    keys = DeviceKeys(sign_seed=bytes([1]) * 32, enc_secret=bytes([2]) * 32)
    jn = lk.Joiner(
        params, offer, keys, "laptop", own_peer="12D3KooWExampleJoiner",
        remote_peer=offer.peer_id, now=at(0),
    )  # fmt: skip
    assert keys.sign_public.hex() == (
        "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c"
    )
    frame = lk.decode_frame(only(jn.start(at(0))), params, lk.APPROVER_BOUND_MAX_BYTES)
    assert isinstance(frame, lk.JoinFrame)
    assert frame.intro.pop.hex() == (
        "f6720a020f612ec9278c2c1660b218f4c0848d8cba4f151b928ed944d8ac30ec"
        "f9f1e061f23fdceb517df3af8019a541f86941f26f6986db6e309b4340560903"
    )
    assert frame.mac.hex() == "55ff09bf4e272a73756b9d7275372586d6f38796499ce7dfa20d67e94e0f7cd7"
    assert jn._th.hex() == "37d977a27165324c470dcaf0a6eb505f847cb938075babdc8aad4dd6aaa0b117"
    assert jn.code == "221948"
