"""The device-linking handshake (docs/PROTOCOL.md §14), machines only.

Frames travel through a fake in-memory link: the test hands each machine's
output frames to the other, so every byte the node would send is exercised.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

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
    NotActiveError,
    SchemaError,
    SizeLimitError,
    UnsupportedVersionError,
    UsageError,
    WrongNetworkError,
)
from protocol.core.keys import B32_ALPHABET, DeviceKeys, b32encode, fingerprint
from protocol.core.params import NetworkParams
from protocol.linking import machines as lk
from protocol.log import authoring
from protocol.log.events import DeviceIntro
from protocol.log.ledger import IngestStatus, Ledger
from protocol.log.state import DeviceStatus

from .conftest import FAST, T0, History, device

PA = "12D3KooWApproverPeerAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
PJ = "12D3KooWJoinerPeerJJJJJJJJJJJJJJJJJJJJJJJJJJJJJJJJJJ"
ADDRS = ("/ip4/192.0.2.7/tcp/4001", "/ip6/2001:db8::7/tcp/4001")
LINK_ID = bytes(range(8))
SECRET = bytes(range(100, 116))


def make_approver(
    account: bytes,
    *,
    peer: str = PA,
    now: int = T0,
    secret: bytes = SECRET,
    params: NetworkParams = FAST,
) -> lk.Approver:
    return lk.Approver(
        params, account, peer_id=peer, addrs=ADDRS, link_id=LINK_ID, secret=secret, now_ms=now
    )


def make_joiner(
    offer: lk.LinkOffer,
    keys: DeviceKeys,
    name: str = "laptop",
    *,
    own: str = PJ,
    now: int = T0 + 1000,
) -> lk.Joiner:
    return lk.Joiner(FAST, offer, keys, name, own_peer=own, remote_peer=offer.peer_id, now_ms=now)


def st(machine: lk.Approver | lk.Joiner) -> lk.ApproverState | lk.JoinerState:
    """The machine's state, read through a call so that mypy does not narrow it."""
    return machine.state


def only(step: lk.Step) -> bytes:
    assert len(step.frames) == 1
    return step.frames[0]


@dataclass
class Linked:
    approver: lk.Approver
    joiner: lk.Joiner
    confirm: lk.ConfirmRequired
    request: lk.JoinRequest
    joined: lk.Joined
    ledger: Ledger  # the new device's, fed from Joined.events


def link(
    ledger: Ledger,
    account: bytes,
    approver_keys: DeviceKeys,
    new_keys: DeviceKeys,
    name: str,
    *,
    approver_peer: str = PA,
    joiner_peer: str = PJ,
    now: int = T0,
) -> Linked:
    """The whole happy path through the fake link, asserting each step."""
    ap = make_approver(account, peer=approver_peer, now=now)
    offer = lk.LinkOffer.parse(ap.offer.to_text())
    jn = make_joiner(offer, new_keys, name, own=joiner_peer, now=now + 1000)

    step = ap.receive(only(jn.start()), remote_peer=joiner_peer, now_ms=now + 2000, ledger=ledger)
    assert st(ap) is lk.ApproverState.PENDING_APPROVAL
    (requested,) = step.events
    assert isinstance(requested, lk.JoinRequested)

    jstep = jn.receive(only(step))
    (confirm,) = jstep.events
    assert isinstance(confirm, lk.ConfirmRequired) and st(jn) is lk.JoinerState.CONFIRMING

    step = ap.receive(only(jn.confirm()), remote_peer=joiner_peer, now_ms=now + 3000, ledger=ledger)
    assert step.events == (lk.ApprovalRequested(requested.request),)

    approval = ap.approve(approver_keys, ledger, timestamp_ms=now + 4000, now_ms=now + 4000)
    assert st(ap) is lk.ApproverState.APPROVED
    assert ledger.ingest(approval.event.raw).status is IngestStatus.ACCEPTED

    jstep = jn.receive(only(approval.step))
    (joined,) = jstep.events
    assert isinstance(joined, lk.Joined) and st(jn) is lk.JoinerState.JOINED
    assert joined.add_device_id == approval.event.id

    step = ap.receive(only(jstep), remote_peer=joiner_peer, now_ms=now + 5000, ledger=ledger)
    assert step.events == (
        lk.LinkCompleted(new_keys.sign_public, new_keys.enc_public, joiner_peer),
    )
    assert st(ap) is lk.ApproverState.USED

    new_ledger = Ledger(FAST)
    for raw in joined.events:
        assert new_ledger.ingest(raw).status is IngestStatus.ACCEPTED
    return Linked(ap, jn, confirm, requested.request, joined, new_ledger)


# --------------------------------------------------------------------------
# Happy paths


def test_happy_path_joiner_ends_up_with_the_account(history: History) -> None:
    ledger = history.ledger()
    new = device("new")
    got = link(ledger, history.account, history.keys["d0"], new, "laptop")

    # the approver saw the new device's name and fingerprint
    assert got.request.device_name == "laptop"
    assert got.request.fingerprint == fingerprint(new.sign_public)
    assert got.request.joiner_peer == PJ
    # the joiner saw the account it joins, computed from verified events
    info = got.confirm.account
    assert info.account_id == history.account
    assert info.display_name == "bob"
    assert info.handle.startswith("bob.")
    assert [d.fingerprint for d in info.devices] == [history.keys["d0"].fingerprint]
    # both devices show the same code
    assert got.confirm.code == got.request.code == got.joiner.code
    assert len(got.confirm.code) == 6 and got.confirm.code.isdigit()

    # the new device's ledger holds the account with itself active ...
    state = got.ledger.state(history.account)
    record = state.device(new.sign_public)
    assert record is not None and record.status is DeviceStatus.ACTIVE
    assert record.name == "laptop" and record.approver == history.keys["d0"].sign_public
    # ... and is the same state as the approver's
    assert state.digest == ledger.state(history.account).digest
    assert {d.sign_public for d in got.joined.account.devices} == {
        history.keys["d0"].sign_public,
        new.sign_public,
    }


def test_third_device_linked_by_the_second(history: History) -> None:
    ledger_a = history.ledger()
    second, third = device("second"), device("third")
    first = link(ledger_a, history.account, history.keys["d0"], second, "laptop")
    ledger_b = first.ledger

    got = link(
        ledger_b,
        history.account,
        second,
        third,
        "phone",
        approver_peer="12D3KooWSecondDevice",
        joiner_peer="12D3KooWThirdDevice",
        now=T0 + 60_000,
    )
    # the first device hears of the new event by replication
    assert ledger_a.ingest(got.joined.events[-1]).status is IngestStatus.ACCEPTED
    for ledger in (ledger_a, ledger_b, got.ledger):
        state = ledger.state(history.account)
        assert state.active_keys == {
            history.keys["d0"].sign_public,
            second.sign_public,
            third.sign_public,
        }
        rec = state.device(third.sign_public)
        assert rec is not None and rec.approver == second.sign_public
    # the third device was shown both existing devices
    assert len(got.confirm.account.devices) == 2


def test_account_with_concurrent_heads_links_on_all_heads(history: History) -> None:
    history.add("a1", "d0", "d1", ["g"])
    history.profile("p", "d0", "robert", ["g"])
    ledger = history.ledger()
    assert len(ledger.state(history.account).heads) == 2
    got = link(ledger, history.account, history.keys["d1"], device("new"), "tablet")
    assert got.confirm.account.display_name == "robert"
    add = got.ledger.log(history.account).events[-1]
    assert set(add.parents) == {history.events["a1"].id, history.events["p"].id}
    assert len(ledger.state(history.account).heads) == 1


# --------------------------------------------------------------------------
# The code binds the new key and the channel


def test_confirmation_code_differs_for_another_key_or_peer(history: History) -> None:
    offer = make_approver(history.account).offer
    codes = {
        make_joiner(offer, device("a")).code,
        make_joiner(offer, device("b")).code,
        make_joiner(offer, device("a"), own="12D3KooWSomeoneElse").code,
    }
    assert len(codes) == 3
    # deterministic: the same inputs give the same code
    assert make_joiner(offer, device("a")).code == make_joiner(offer, device("a")).code


# --------------------------------------------------------------------------
# Wrong secret, expiry, single use, rejection


def _claim(
    history: History, ledger: Ledger, new: str = "new"
) -> tuple[lk.Approver, lk.Joiner, lk.Step]:
    ap = make_approver(history.account)
    jn = make_joiner(ap.offer, device(new))
    step = ap.receive(only(jn.start()), remote_peer=PJ, now_ms=T0 + 1, ledger=ledger)
    return ap, jn, step


def test_wrong_secret_is_counted_and_burns_after_three(history: History) -> None:
    ledger = history.ledger()
    count = ledger.event_count
    ap = make_approver(history.account)
    bad = dataclasses.replace(ap.offer, secret=bytes(16))
    for attempt in range(1, 4):
        jn = make_joiner(bad, device(f"guess{attempt}"))
        expected = lk.LinkMacError if attempt < 3 else lk.LinkBurntError
        with pytest.raises(expected) as info:
            ap.receive(only(jn.start()), remote_peer=PJ, now_ms=T0 + attempt, ledger=ledger)
        assert ap.failures == attempt
        # the joiner learns why, as a typed error
        with pytest.raises(expected):
            jn.receive(lk.error_frame(info.value))
        assert st(jn) is lk.JoinerState.FAILED
    assert st(ap) is lk.ApproverState.BURNT
    # burnt: even the right secret is refused now
    good = make_joiner(ap.offer, device("new"))
    with pytest.raises(lk.LinkBurntError):
        ap.receive(only(good.start()), remote_peer=PJ, now_ms=T0 + 10, ledger=ledger)
    assert ap.deadline_ms is None and ap.tick(T0 + 10**9) == lk.Step()
    assert ledger.event_count == count


def test_expired_link_is_refused(history: History) -> None:
    ledger = history.ledger()
    ap = make_approver(history.account)
    expires = ap.offer.expires_at_ms
    assert expires == T0 + lk.LINK_TTL_MS
    jn = make_joiner(ap.offer, device("new"), now=expires - 1)
    with pytest.raises(lk.LinkExpiredError):
        ap.receive(only(jn.start()), remote_peer=PJ, now_ms=expires, ledger=ledger)
    assert st(ap) is lk.ApproverState.EXPIRED and ap.failures == 0
    # the joiner refuses a link well past its expiry by its own clock
    with pytest.raises(lk.LinkExpiredError):
        make_joiner(ap.offer, device("new"), now=expires + lk.CLOCK_SKEW_MS + 1)


def test_tick_expires_offer_and_pending_request(history: History) -> None:
    ledger = history.ledger()
    ap = make_approver(history.account)
    assert ap.tick(ap.offer.expires_at_ms - 1) == lk.Step()
    assert ap.tick(ap.offer.expires_at_ms) == lk.Step(events=(lk.LinkExpired(),))

    ap, jn, step = _claim(history, ledger)
    jn.receive(only(step))
    ap.receive(only(jn.confirm()), remote_peer=PJ, now_ms=T0 + 2, ledger=ledger)
    assert ap.deadline_ms == T0 + 1 + lk.APPROVAL_WINDOW_MS
    # a stranger arriving after the window learns only that the link is used;
    # the expiry goes to the claiming joiner, through tick
    rival = make_joiner(ap.offer, device("rival"), own="12D3KooWRival")
    with pytest.raises(lk.LinkUsedError):
        ap.receive(
            only(rival.start()),
            remote_peer="12D3KooWRival",
            now_ms=T0 + 1 + lk.APPROVAL_WINDOW_MS,
            ledger=ledger,
        )
    step = ap.tick(T0 + 1 + lk.APPROVAL_WINDOW_MS)
    assert step.events == (lk.LinkExpired(),) and st(ap) is lk.ApproverState.EXPIRED
    with pytest.raises(lk.LinkExpiredError):
        jn.receive(only(step))
    with pytest.raises(lk.LinkExpiredError):
        ap.approve(history.keys["d0"], ledger, timestamp_ms=T0 + 9, now_ms=T0 + 9)


def test_approve_after_the_window_is_refused(history: History) -> None:
    ledger = history.ledger()
    ap, jn, step = _claim(history, ledger)
    jn.receive(only(step))
    ap.receive(only(jn.confirm()), remote_peer=PJ, now_ms=T0 + 2, ledger=ledger)
    late = T0 + 1 + lk.APPROVAL_WINDOW_MS
    with pytest.raises(lk.LinkExpiredError):
        ap.approve(history.keys["d0"], ledger, timestamp_ms=late, now_ms=late)
    assert ledger.event_count == 1


def test_link_is_single_use(history: History) -> None:
    ledger = history.ledger()
    got = link(ledger, history.account, history.keys["d0"], device("new"), "laptop")
    again = make_joiner(got.approver.offer, device("other"))
    with pytest.raises(lk.LinkUsedError):
        got.approver.receive(only(again.start()), remote_peer=PJ, now_ms=T0 + 9, ledger=ledger)

    # a pending offer refuses a second joiner too, even with the right secret
    ap, _, _ = _claim(history, ledger, "new2")
    rival = make_joiner(ap.offer, device("rival"), own="12D3KooWRival")
    with pytest.raises(lk.LinkUsedError):
        ap.receive(only(rival.start()), remote_peer="12D3KooWRival", now_ms=T0 + 2, ledger=ledger)
    # and the rival cannot speak for the claiming joiner
    with pytest.raises(lk.UnexpectedFrameError):
        ap.receive(
            lk.encode_frame(lk.ConfirmFrame()),
            remote_peer="12D3KooWRival",
            now_ms=T0 + 3,
            ledger=ledger,
        )
    assert not ap.joiner_confirmed


def test_rejected_request_changes_nothing(history: History) -> None:
    ledger = history.ledger()
    ap, jn, step = _claim(history, ledger)
    jn.receive(only(step))
    ap.receive(only(jn.confirm()), remote_peer=PJ, now_ms=T0 + 2, ledger=ledger)
    reply = ap.reject(T0 + 3)
    assert st(ap) is lk.ApproverState.REJECTED
    with pytest.raises(lk.LinkRejectedError):
        jn.receive(only(reply))
    with pytest.raises(UsageError):
        ap.approve(history.keys["d0"], ledger, timestamp_ms=T0 + 4, now_ms=T0 + 4)
    again = make_joiner(ap.offer, device("new"))
    with pytest.raises(lk.LinkUsedError):
        ap.receive(only(again.start()), remote_peer=PJ, now_ms=T0 + 5, ledger=ledger)
    assert ledger.event_count == 1


def test_joiner_declines_and_approver_stops(history: History) -> None:
    ledger = history.ledger()
    ap, jn, step = _claim(history, ledger)
    jn.receive(only(step))
    step = ap.receive(only(jn.decline()), remote_peer=PJ, now_ms=T0 + 2, ledger=ledger)
    assert step.events == (lk.JoinAborted(lk.LinkDeclinedError.code),)
    assert st(ap) is lk.ApproverState.REJECTED and st(jn) is lk.JoinerState.DECLINED


def test_connection_lost_ends_a_pending_request(history: History) -> None:
    ledger = history.ledger()
    ap, _, _ = _claim(history, ledger)
    assert ap.connection_lost("12D3KooWSomeoneElse") == lk.Step()
    assert st(ap) is lk.ApproverState.PENDING_APPROVAL
    step = ap.connection_lost(PJ)
    assert step.events == (lk.JoinAborted(lk.LinkError.code),)
    assert st(ap) is lk.ApproverState.REJECTED


def test_cancelled_offer_refuses_joins(history: History) -> None:
    ledger = history.ledger()
    ap = make_approver(history.account)
    assert ap.reject(T0 + 1) == lk.Step()
    jn = make_joiner(ap.offer, device("new"))
    with pytest.raises(lk.LinkUsedError):
        ap.receive(only(jn.start()), remote_peer=PJ, now_ms=T0 + 2, ledger=ledger)


def test_approve_needs_both_confirmations_and_an_active_device(history: History) -> None:
    ledger = history.ledger()
    ap, jn, step = _claim(history, ledger)
    with pytest.raises(UsageError, match="not confirmed"):
        ap.approve(history.keys["d0"], ledger, timestamp_ms=T0 + 2, now_ms=T0 + 2)
    jn.receive(only(step))
    ap.receive(only(jn.confirm()), remote_peer=PJ, now_ms=T0 + 2, ledger=ledger)
    with pytest.raises(NotActiveError):
        ap.approve(device("stranger"), ledger, timestamp_ms=T0 + 3, now_ms=T0 + 3)
    assert st(ap) is lk.ApproverState.PENDING_APPROVAL


def test_known_device_is_refused_and_counted(history: History) -> None:
    ledger = history.ledger()
    ap = make_approver(history.account)
    jn = make_joiner(ap.offer, history.keys["d0"])
    with pytest.raises(lk.DeviceKnownError):
        ap.receive(only(jn.start()), remote_peer=PJ, now_ms=T0 + 1, ledger=ledger)
    assert ap.failures == 1 and st(ap) is lk.ApproverState.OFFERED


def test_device_added_meanwhile_is_refused_at_approval(history: History) -> None:
    ledger = history.ledger()
    new = device("new")
    ap = make_approver(history.account)
    jn = make_joiner(ap.offer, new)
    step = ap.receive(only(jn.start()), remote_peer=PJ, now_ms=T0 + 1, ledger=ledger)
    jn.receive(only(step))
    ap.receive(only(jn.confirm()), remote_peer=PJ, now_ms=T0 + 2, ledger=ledger)
    # another device of the account added the same key in the meantime
    parents = [history.genesis.id]
    meanwhile = authoring.add_device(
        FAST, history.account, parents, history.keys["d0"], jn.intro, timestamp=T0 + 3
    )
    ledger.ingest(meanwhile.raw)
    with pytest.raises(lk.DeviceKnownError):
        ap.approve(history.keys["d0"], ledger, timestamp_ms=T0 + 4, now_ms=T0 + 4)
    assert st(ap) is lk.ApproverState.REJECTED


# --------------------------------------------------------------------------
# Binding and tampering


def _join_fields(jn: lk.Joiner) -> list[object]:
    frame = lk.decode_frame(only(jn.start()), FAST, lk.APPROVER_BOUND_MAX_BYTES)
    assert isinstance(frame, lk.JoinFrame)
    return [1, 1, frame.link_id, frame.intro.to_wire(), frame.mac]


def test_join_mac_binds_peer_ids_and_intro(history: History) -> None:
    ledger = history.ledger()
    # a joiner whose own peer id differs from what Noise authenticated
    ap = make_approver(history.account)
    jn = make_joiner(ap.offer, device("new"), own="12D3KooWClaimedPeer")
    with pytest.raises(lk.LinkMacError):
        ap.receive(only(jn.start()), remote_peer=PJ, now_ms=T0 + 1, ledger=ledger)
    # an approver reached under another peer id than the link's
    other = make_approver(history.account, peer="12D3KooWOtherApprover")
    jn = make_joiner(ap.offer, device("new"))
    with pytest.raises(lk.LinkMacError):
        other.receive(only(jn.start()), remote_peer=PJ, now_ms=T0 + 1, ledger=ledger)
    # a renamed device (the MAC covers the intro)
    ap = make_approver(history.account)
    fields = _join_fields(make_joiner(ap.offer, device("new")))
    fields[3][2] = "evil laptop"  # type: ignore[index]
    with pytest.raises(lk.LinkMacError):
        ap.receive(encode(fields), remote_peer=PJ, now_ms=T0 + 1, ledger=ledger)
    # a flipped MAC byte
    fields = _join_fields(make_joiner(ap.offer, device("new")))
    fields[4] = bytes([fields[4][0] ^ 1]) + fields[4][1:]  # type: ignore[index]
    with pytest.raises(lk.LinkMacError):
        ap.receive(encode(fields), remote_peer=PJ, now_ms=T0 + 1, ledger=ledger)
    assert ap.failures == 2


def test_valid_mac_with_forged_pop_is_refused(history: History) -> None:
    ledger = history.ledger()
    ap = make_approver(history.account)
    new = device("new")
    intro = DeviceIntro(new.sign_public, new.enc_public, "laptop", bytes(64))
    transcript = lk._transcript(FAST.network_id, history.account, PA, PJ, LINK_ID, intro)
    mac = lk._keyed(SECRET, lk.D_LINK_JOIN, transcript)
    data = lk.encode_frame(lk.JoinFrame(LINK_ID, intro, mac))
    with pytest.raises(BadSignatureError):
        ap.receive(data, remote_peer=PJ, now_ms=T0 + 1, ledger=ledger)
    assert ap.failures == 1


def test_malformed_frames_raise_typed_errors_and_are_not_counted(history: History) -> None:
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
        with pytest.raises(expected):
            ap.receive(data, remote_peer=PJ, now_ms=T0 + 1, ledger=ledger)
    assert ap.failures == 0 and st(ap) is lk.ApproverState.OFFERED
    with pytest.raises(lk.UnknownLinkError):
        ap.receive(encode([1, 1, bytes(8), *good[3:]]), remote_peer=PJ, now_ms=T0, ledger=ledger)
    assert lk.link_id_of(raw, FAST) == LINK_ID
    with pytest.raises(lk.UnexpectedFrameError):
        lk.link_id_of(lk.encode_frame(lk.DoneFrame()), FAST)


def test_random_mutations_only_raise_typed_errors(history: History) -> None:
    """Mutated frames fed to both machines: refused with an InvalidInput, never
    another exception, and the ledger is untouched."""
    ledger = history.ledger()
    ap = make_approver(history.account)
    join = only(make_joiner(ap.offer, device("new")).start())
    accept = only(ap.receive(join, remote_peer=PJ, now_ms=T0 + 1, ledger=ledger))
    rng = random.Random(1)
    refused = 0
    for _ in range(200):
        for frame in (join, accept):
            data = bytearray(frame)
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            fresh = make_approver(history.account)
            jn = make_joiner(fresh.offer, device("new"))
            jn.start()
            try:
                if frame is join:
                    fresh.receive(bytes(data), remote_peer=PJ, now_ms=T0 + 1, ledger=ledger)
                else:
                    jn.receive(bytes(data))
            except InvalidInput:
                refused += 1
    # a mutation may hit the name or land on the same byte: most are refused
    assert refused > 300
    assert ledger.event_count == 1


def test_tampered_accept_is_caught_by_the_joiner(history: History) -> None:
    ledger = history.ledger()
    _, jn, step = _claim(history, ledger)
    frame = lk.decode_frame(only(step), FAST, 1 << 20)
    assert isinstance(frame, lk.AcceptFrame)
    # another account's events, under a MAC that does not cover them
    other = History(name="mallory")
    forged = lk.AcceptFrame((other.genesis.raw,), frame.mac)
    with pytest.raises(lk.LinkMacError):
        jn.receive(lk.encode_frame(forged))
    assert st(jn) is lk.JoinerState.FAILED

    # even with a valid MAC (a malicious approver knows the secret), the
    # events must be the link's account
    _, jn, _ = _claim(history, ledger)
    mac = lk._accept_mac(SECRET, jn._th, [other.genesis.raw])
    with pytest.raises(SchemaError):
        jn.receive(lk.encode_frame(lk.AcceptFrame((other.genesis.raw,), mac)))


def test_tampered_approved_is_caught_by_the_joiner(history: History) -> None:
    ledger = history.ledger()
    ap, jn, step = _claim(history, ledger)
    jn.receive(only(step))
    ap.receive(only(jn.confirm()), remote_peer=PJ, now_ms=T0 + 2, ledger=ledger)
    approval = ap.approve(history.keys["d0"], ledger, timestamp_ms=T0 + 3, now_ms=T0 + 3)
    frame = lk.decode_frame(only(approval.step), FAST, 1 << 20)
    assert isinstance(frame, lk.ApprovedFrame)
    *head, add = frame.events
    broken = add[:-1] + bytes([add[-1] ^ 1])  # the signature's last byte
    with pytest.raises(BadSignatureError):
        jn.receive(lk.encode_frame(lk.ApprovedFrame((*head, broken))))
    assert st(jn) is lk.JoinerState.FAILED

    # an APPROVED without the add-device event does not make the joiner active
    ap, jn, step = _claim(history, ledger)
    jn.receive(only(step))
    jn.confirm()
    with pytest.raises(InvalidEventError):
        jn.receive(lk.encode_frame(lk.ApprovedFrame(tuple(head))))


def test_out_of_order_frames_are_refused(history: History) -> None:
    ledger = history.ledger()
    ap, jn, _ = _claim(history, ledger)
    with pytest.raises(lk.UnexpectedFrameError):
        ap.receive(lk.encode_frame(lk.DoneFrame()), remote_peer=PJ, now_ms=T0 + 2, ledger=ledger)
    with pytest.raises(UsageError):
        jn.confirm()  # nothing to confirm before ACCEPT
    with pytest.raises(lk.UnexpectedFrameError):
        jn.receive(lk.encode_frame(lk.ApprovedFrame((history.genesis.raw,))))
    fresh = make_approver(history.account)
    with pytest.raises(lk.UnexpectedFrameError):
        fresh.receive(lk.encode_frame(lk.ConfirmFrame()), remote_peer=PJ, now_ms=T0, ledger=ledger)


def test_joiner_checks_network_and_peer(history: History) -> None:
    offer = make_approver(history.account).offer
    with pytest.raises(WrongNetworkError):
        make_joiner(dataclasses.replace(offer, network_id="smu-main"), device("new"))
    with pytest.raises(lk.WrongPeerError):
        lk.Joiner(FAST, offer, device("n"), "x", own_peer=PJ, remote_peer="12D3KooWX", now_ms=T0)
    with pytest.raises(UsageError):
        make_joiner(offer, device("new"), name="bad\nname")


def test_unknown_error_code_is_a_generic_link_error() -> None:
    err = lk.error_from_code("from_the_future")
    assert type(err) is lk.LinkError
    assert lk.error_frame(SchemaError("x")) == lk.encode_frame(lk.ErrorFrame("link_aborted"))


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
    ap, jn, step = _claim(history, ledger)
    (requested,) = step.events
    text = ap.offer.to_text()
    body = text[len(lk.TEXT_PREFIX) :]
    for obj in (ap.offer, ap, jn, requested, lk.LinkOffer.parse(text)):
        shown = repr(obj)
        assert SECRET.hex() not in shown and repr(SECRET) not in shown
        assert body[:40] not in shown
    with pytest.raises(UsageError):
        lk.Approver(
            FAST, history.account, peer_id=PA, addrs=(), link_id=LINK_ID, secret=bytes(8),
            now_ms=T0,
        )  # fmt: skip
    with pytest.raises(UsageError):
        lk.Approver(
            FAST, history.account, peer_id="has space", addrs=(), link_id=LINK_ID,
            secret=SECRET, now_ms=T0,
        )  # fmt: skip


def test_joiner_refuses_to_join_with_a_key_already_in_the_account(history: History) -> None:
    # An approver that skipped its own check (it knows the secret, so its MAC
    # is valid) cannot get a joiner to re-join with a key the account has.
    history.add("a1", "d0", "d1", ["g"])
    events = [history.genesis.raw, history.events["a1"].raw]
    jn = make_joiner(make_approver(history.account).offer, history.keys["d1"])
    jn.start()
    mac = lk._accept_mac(SECRET, jn._th, events)
    with pytest.raises(lk.DeviceKnownError):
        jn.receive(lk.encode_frame(lk.AcceptFrame(tuple(events), mac)))
    assert st(jn) is lk.JoinerState.FAILED


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
        remote_peer=offer.peer_id, now_ms=T0,
    )  # fmt: skip
    assert keys.sign_public.hex() == (
        "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c"
    )
    frame = lk.decode_frame(only(jn.start()), params, lk.APPROVER_BOUND_MAX_BYTES)
    assert isinstance(frame, lk.JoinFrame)
    assert frame.intro.pop.hex() == (
        "f6720a020f612ec9278c2c1660b218f4c0848d8cba4f151b928ed944d8ac30ec"
        "f9f1e061f23fdceb517df3af8019a541f86941f26f6986db6e309b4340560903"
    )
    assert frame.mac.hex() == "55ff09bf4e272a73756b9d7275372586d6f38796499ce7dfa20d67e94e0f7cd7"
    assert jn._th.hex() == "37d977a27165324c470dcaf0a6eb505f847cb938075babdc8aad4dd6aaa0b117"
    assert jn.code == "221948"
