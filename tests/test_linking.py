"""The device-linking handshake (docs/PROTOCOL.md §14), machines only.

Frames travel through a fake in-memory link: the test hands each machine's
``Send`` outputs to the other, so every byte the node would send is
exercised.  Remote input never raises: a refusal is an output (``refusal``
and ``failure`` below read it).
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
from protocol.core.machine import Now
from protocol.core.params import NetworkParams
from protocol.linking import approver as approver_module
from protocol.linking import machines as lk
from protocol.linking import reports, wire
from protocol.linking.offers import KEEP_FINISHED_MS, OfferForgotten, OfferOutput, Offers
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


def at(ms: int) -> Now:
    """``ms`` milliseconds after T0, on both clocks (monotonic 0 at T0)."""
    return Now(ms / 1000, T0 + ms)


def make_approver(
    account: bytes,
    *,
    peer: str = PA,
    now: Now | None = None,
    secret: bytes = SECRET,
    params: NetworkParams = FAST,
) -> lk.Approver:
    return lk.Approver(
        params,
        account,
        peer_id=peer,
        addrs=ADDRS,
        link_id=LINK_ID,
        secret=secret,
        now=now or at(0),
    )


def make_joiner(
    offer: lk.LinkOffer,
    keys: DeviceKeys,
    name: str = "laptop",
    *,
    own: str = PJ,
    now: Now | None = None,
) -> lk.Joiner:
    return lk.Joiner(
        FAST, offer, keys, name, own_peer=own, remote_peer=offer.peer_id, now=now or at(1000)
    )


def st(machine: lk.Approver | lk.Joiner) -> lk.ApproverState | lk.JoinerState:
    """The machine's state, read through a call so that mypy does not narrow it."""
    return machine.state


def frames(outputs: list[lk.LinkOutput] | tuple[lk.LinkOutput, ...]) -> list[bytes]:
    """The frames of the ``Send`` outputs, in order."""
    return [o.frame for o in outputs if isinstance(o, lk.Send)]


def only(outputs: list[lk.LinkOutput] | tuple[lk.LinkOutput, ...]) -> bytes:
    (frame,) = frames(outputs)
    return frame


def events(outputs: list[lk.LinkOutput]) -> list[lk.LinkOutput]:
    """The outputs that are neither ``Send``, ``Misbehaved`` nor ``Hangup``."""
    return [o for o in outputs if not isinstance(o, lk.Send | lk.Misbehaved | lk.Hangup)]


def refusal(outputs: list[lk.LinkOutput], peer: str = PJ) -> InvalidInput:
    """The error of an approver's refusal, checking its shape: the ERROR
    frame for it, ``Misbehaved`` and ``Hangup``, all for ``peer``."""
    assert len(outputs) == 3, outputs
    send, bad, hangup = outputs
    assert isinstance(send, lk.Send) and isinstance(bad, lk.Misbehaved)
    assert hangup == lk.Hangup(peer) and send.peer == bad.peer == peer
    assert send.frame == lk.error_frame(bad.error)
    return bad.error


def failure(
    jn: lk.Joiner, outputs: list[lk.LinkOutput], *, misbehaved: bool = True
) -> InvalidInput:
    """The error of a joiner's ``JoinFailed``, checking its shape: nothing
    sent, ``Misbehaved`` unless the approver sent ERROR, ``Hangup``."""
    assert st(jn) is lk.JoinerState.FAILED and jn.next_deadline() is None
    failed, *rest = outputs
    assert isinstance(failed, lk.JoinFailed)
    peer = jn.approver_peer
    expected = [lk.Misbehaved(peer, failed.error)] if misbehaved else []
    assert rest == [*expected, lk.Hangup(peer)]
    return failed.error


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
    t: int = 0,
) -> Linked:
    """The whole happy path through the fake link, asserting each output."""
    ap = make_approver(account, peer=approver_peer, now=at(t))
    offer = lk.LinkOffer.parse(ap.offer.to_text())
    jn = make_joiner(offer, new_keys, name, own=joiner_peer, now=at(t + 1000))

    join = jn.start(at(t + 1000))
    assert join == [lk.Send(approver_peer, only(join))]
    out = ap.receive(only(join), remote_peer=joiner_peer, now=at(t + 2000), ledger=ledger)
    assert st(ap) is lk.ApproverState.PENDING_APPROVAL
    send, requested = out
    assert isinstance(send, lk.Send) and send.peer == joiner_peer
    assert isinstance(requested, lk.JoinRequested)

    (confirm,) = jn.receive(only(out), at(t + 2500))
    assert isinstance(confirm, lk.ConfirmRequired) and st(jn) is lk.JoinerState.CONFIRMING

    out = ap.receive(
        only(jn.confirm(at(t + 3000))), remote_peer=joiner_peer, now=at(t + 3000), ledger=ledger
    )
    assert out == [lk.ApprovalRequested(requested.request)]

    approval = ap.approve(approver_keys, ledger, timestamp_ms=T0 + t + 4000, now=at(t + 4000))
    assert st(ap) is lk.ApproverState.APPROVED
    assert ledger.ingest(approval.event.raw).status is IngestStatus.ACCEPTED
    assert [type(o) for o in approval.outputs] == [lk.Send]

    jout = jn.receive(only(approval.outputs), at(t + 4500))
    joined, done, hangup = jout
    assert isinstance(joined, lk.Joined) and st(jn) is lk.JoinerState.JOINED
    assert joined.add_device_id == approval.event.id
    assert done == lk.Send(approver_peer, lk.encode_frame(lk.DoneFrame()))
    assert hangup == lk.Hangup(approver_peer) and jn.next_deadline() is None

    out = ap.receive(only(jout), remote_peer=joiner_peer, now=at(t + 5000), ledger=ledger)
    assert out == [
        lk.LinkCompleted(new_keys.sign_public, new_keys.enc_public, joiner_peer),
        lk.Hangup(joiner_peer),
    ]
    assert st(ap) is lk.ApproverState.USED and ap.next_deadline() is None

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
        t=60_000,
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
) -> tuple[lk.Approver, lk.Joiner, list[lk.LinkOutput]]:
    ap = make_approver(history.account)
    jn = make_joiner(ap.offer, device(new))
    out = ap.receive(only(jn.start(at(1))), remote_peer=PJ, now=at(1), ledger=ledger)
    return ap, jn, out


def _confirmed(history: History, ledger: Ledger, new: str = "new") -> tuple[lk.Approver, lk.Joiner]:
    """A claimed offer whose joiner has confirmed (at 2 ms)."""
    ap, jn, out = _claim(history, ledger, new)
    jn.receive(only(out), at(2))
    ap.receive(only(jn.confirm(at(2))), remote_peer=PJ, now=at(2), ledger=ledger)
    return ap, jn


def test_wrong_secret_is_counted_and_burns_after_three(history: History) -> None:
    ledger = history.ledger()
    count = ledger.event_count
    ap = make_approver(history.account)
    bad = dataclasses.replace(ap.offer, secret=bytes(16))
    for attempt in range(1, 4):
        jn = make_joiner(bad, device(f"guess{attempt}"))
        expected = lk.LinkMacError if attempt < 3 else lk.LinkBurntError
        out = ap.receive(
            only(jn.start(at(attempt))), remote_peer=PJ, now=at(attempt), ledger=ledger
        )
        assert isinstance(refusal(out), expected)
        assert ap.failures == attempt
        # the joiner learns why, as a typed error: the approver's decision
        assert isinstance(
            failure(jn, jn.receive(only(out), at(attempt)), misbehaved=False), expected
        )
    assert st(ap) is lk.ApproverState.BURNT
    # burnt: even the right secret is refused now
    good = make_joiner(ap.offer, device("new"))
    out = ap.receive(only(good.start(at(10))), remote_peer=PJ, now=at(10), ledger=ledger)
    assert isinstance(refusal(out), lk.LinkBurntError)
    assert ap.next_deadline() is None and ap.tick(at(10**9)) == []
    assert ledger.event_count == count


def test_expired_link_is_refused(history: History) -> None:
    ledger = history.ledger()
    ap = make_approver(history.account)
    expires = ap.offer.expires_at_ms
    assert expires == T0 + lk.LINK_TTL_MS
    jn = make_joiner(ap.offer, device("new"), now=at(lk.LINK_TTL_MS - 1))
    join = only(jn.start(at(lk.LINK_TTL_MS)))
    out = ap.receive(join, remote_peer=PJ, now=at(lk.LINK_TTL_MS), ledger=ledger)
    assert isinstance(refusal(out), lk.LinkExpiredError)
    assert st(ap) is lk.ApproverState.EXPIRED and ap.failures == 0
    # the joiner refuses a link well past its expiry by its own clock
    with pytest.raises(lk.LinkExpiredError):
        make_joiner(ap.offer, device("new"), now=at(lk.LINK_TTL_MS + lk.CLOCK_SKEW_MS + 1))


def test_tick_expires_offer_and_pending_request(history: History) -> None:
    ledger = history.ledger()
    ap = make_approver(history.account)
    assert ap.next_deadline() == lk.LINK_TTL_MS / 1000
    assert ap.tick(at(lk.LINK_TTL_MS - 1)) == []
    assert ap.tick(at(lk.LINK_TTL_MS)) == [lk.LinkExpired()]
    assert ap.next_deadline() is None

    ap, jn = _confirmed(history, ledger)
    window = 1 + lk.APPROVAL_WINDOW_MS
    assert ap.next_deadline() == pytest.approx(window / 1000)
    # a stranger arriving after the window learns only that the link is used;
    # the expiry goes to the claiming joiner, through tick
    rival = make_joiner(ap.offer, device("rival"), own="12D3KooWRival")
    out = ap.receive(
        only(rival.start(at(window))), remote_peer="12D3KooWRival", now=at(window), ledger=ledger
    )
    assert isinstance(refusal(out, "12D3KooWRival"), lk.LinkUsedError)
    out = ap.tick(at(window))
    expired = lk.encode_frame(lk.ErrorFrame(lk.LinkExpiredError.code))
    assert out == [lk.Send(PJ, expired), lk.Hangup(PJ), lk.LinkExpired()]
    assert st(ap) is lk.ApproverState.EXPIRED and ap.next_deadline() is None
    err = failure(jn, jn.receive(only(out), at(window)), misbehaved=False)
    assert isinstance(err, lk.LinkExpiredError)
    with pytest.raises(lk.LinkExpiredError):
        ap.approve(history.keys["d0"], ledger, timestamp_ms=T0 + 9, now=at(9))


def test_deadlines_follow_the_wall_clock_through_the_last_now(history: History) -> None:
    # The offer's expiry is wall-clock time; the deadline is monotonic time
    # computed through the latest Now the machine saw.
    ap = lk.Approver(
        FAST, history.account, peer_id=PA, addrs=ADDRS, link_id=LINK_ID, secret=SECRET,
        now=Now(500.0, T0),
    )  # fmt: skip
    assert ap.next_deadline() == 500.0 + lk.LINK_TTL_MS / 1000
    # the wall clock jumped back by 10 s since: the expiry is 10 s further away
    assert ap.tick(Now(600.0, T0 + 90_000)) == []
    assert ap.next_deadline() == 600.0 + (lk.LINK_TTL_MS - 90_000) / 1000
    # the tick at the deadline expires it, however late the monotonic clock is
    assert ap.tick(Now(2000.0, T0 + lk.LINK_TTL_MS)) == [lk.LinkExpired()]


def test_approve_after_the_window_is_refused(history: History) -> None:
    ledger = history.ledger()
    ap, _ = _confirmed(history, ledger)
    late = 1 + lk.APPROVAL_WINDOW_MS
    with pytest.raises(lk.LinkExpiredError):
        ap.approve(history.keys["d0"], ledger, timestamp_ms=T0 + late, now=at(late))
    assert ledger.event_count == 1


def test_link_is_single_use(history: History) -> None:
    ledger = history.ledger()
    got = link(ledger, history.account, history.keys["d0"], device("new"), "laptop")
    again = make_joiner(got.approver.offer, device("other"))
    out = got.approver.receive(only(again.start(at(9))), remote_peer=PJ, now=at(9), ledger=ledger)
    assert isinstance(refusal(out), lk.LinkUsedError)

    # a pending offer refuses a second joiner too, even with the right secret
    ap, _, _ = _claim(history, ledger, "new2")
    rival = make_joiner(ap.offer, device("rival"), own="12D3KooWRival")
    out = ap.receive(
        only(rival.start(at(2))), remote_peer="12D3KooWRival", now=at(2), ledger=ledger
    )
    assert isinstance(refusal(out, "12D3KooWRival"), lk.LinkUsedError)
    # and the rival cannot speak for the claiming joiner
    out = ap.receive(
        lk.encode_frame(lk.ConfirmFrame()), remote_peer="12D3KooWRival", now=at(3), ledger=ledger
    )
    assert isinstance(refusal(out, "12D3KooWRival"), lk.UnexpectedFrameError)
    assert not ap.joiner_confirmed


def test_rejected_request_changes_nothing(history: History) -> None:
    ledger = history.ledger()
    ap, jn = _confirmed(history, ledger)
    reply = ap.reject(at(3))
    assert reply == [lk.Send(PJ, lk.encode_frame(lk.ErrorFrame("link_rejected"))), lk.Hangup(PJ)]
    assert st(ap) is lk.ApproverState.REJECTED
    assert isinstance(
        failure(jn, jn.receive(only(reply), at(3)), misbehaved=False), lk.LinkRejectedError
    )
    with pytest.raises(UsageError):
        ap.approve(history.keys["d0"], ledger, timestamp_ms=T0 + 4, now=at(4))
    with pytest.raises(UsageError):
        ap.reject(at(4))
    again = make_joiner(ap.offer, device("new"))
    out = ap.receive(only(again.start(at(5))), remote_peer=PJ, now=at(5), ledger=ledger)
    assert isinstance(refusal(out), lk.LinkUsedError)
    assert ledger.event_count == 1


def test_joiner_declines_and_approver_stops(history: History) -> None:
    ledger = history.ledger()
    ap, jn, out = _claim(history, ledger)
    jn.receive(only(out), at(2))
    declined = jn.decline(at(2))
    assert declined == [
        lk.Send(PA, lk.encode_frame(lk.ErrorFrame(lk.LinkDeclinedError.code))),
        lk.Hangup(PA),
    ]
    out = ap.receive(only(declined), remote_peer=PJ, now=at(2), ledger=ledger)
    assert out == [lk.JoinAborted(lk.LinkDeclinedError.code), lk.Hangup(PJ)]
    assert st(ap) is lk.ApproverState.REJECTED and st(jn) is lk.JoinerState.DECLINED
    assert jn.next_deadline() is None
    with pytest.raises(UsageError):
        jn.decline(at(3))


def test_connection_lost_ends_a_pending_request(history: History) -> None:
    ledger = history.ledger()
    ap, _, _ = _claim(history, ledger)
    assert ap.connection_lost("12D3KooWSomeoneElse", at(2)) == []
    assert st(ap) is lk.ApproverState.PENDING_APPROVAL
    assert ap.connection_lost(PJ, at(2)) == [lk.JoinAborted(lk.LinkError.code)]
    assert st(ap) is lk.ApproverState.REJECTED and ap.next_deadline() is None


def test_cancelled_offer_refuses_joins(history: History) -> None:
    ledger = history.ledger()
    ap = make_approver(history.account)
    assert ap.reject(at(1)) == []
    jn = make_joiner(ap.offer, device("new"))
    out = ap.receive(only(jn.start(at(2))), remote_peer=PJ, now=at(2), ledger=ledger)
    assert isinstance(refusal(out), lk.LinkUsedError)
    # rejecting an expired offer says why
    late = make_approver(history.account)
    with pytest.raises(lk.LinkExpiredError):
        late.reject(at(lk.LINK_TTL_MS))


def test_approve_needs_both_confirmations_and_an_active_device(history: History) -> None:
    ledger = history.ledger()
    ap, jn, out = _claim(history, ledger)
    with pytest.raises(UsageError, match="not confirmed"):
        ap.approve(history.keys["d0"], ledger, timestamp_ms=T0 + 2, now=at(2))
    jn.receive(only(out), at(2))
    ap.receive(only(jn.confirm(at(2))), remote_peer=PJ, now=at(2), ledger=ledger)
    with pytest.raises(NotActiveError):
        ap.approve(device("stranger"), ledger, timestamp_ms=T0 + 3, now=at(3))
    assert st(ap) is lk.ApproverState.PENDING_APPROVAL


def test_known_device_is_refused_and_counted(history: History) -> None:
    ledger = history.ledger()
    ap = make_approver(history.account)
    jn = make_joiner(ap.offer, history.keys["d0"])
    out = ap.receive(only(jn.start(at(1))), remote_peer=PJ, now=at(1), ledger=ledger)
    assert isinstance(refusal(out), lk.DeviceKnownError)
    assert ap.failures == 1 and st(ap) is lk.ApproverState.OFFERED


def test_device_added_meanwhile_is_refused_at_approval(history: History) -> None:
    ledger = history.ledger()
    ap, jn = _confirmed(history, ledger)
    # another device of the account added the same key in the meantime
    parents = [history.genesis.id]
    meanwhile = authoring.add_device(
        FAST, history.account, parents, history.keys["d0"], jn.intro, timestamp=T0 + 3
    )
    ledger.ingest(meanwhile.raw)
    with pytest.raises(lk.DeviceKnownError):
        ap.approve(history.keys["d0"], ledger, timestamp_ms=T0 + 4, now=at(4))
    assert st(ap) is lk.ApproverState.REJECTED


def test_an_account_too_long_to_link_is_refused_without_blame(
    history: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(approver_module, "MAX_LINK_EVENTS", 1)  # where the approver reads it
    ledger = history.ledger()
    ap = make_approver(history.account)
    jn = make_joiner(ap.offer, device("new"))
    out = ap.receive(only(jn.start(at(1))), remote_peer=PJ, now=at(1), ledger=ledger)
    assert out == [lk.Send(PJ, lk.encode_frame(lk.ErrorFrame("link_aborted"))), lk.Hangup(PJ)]
    assert st(ap) is lk.ApproverState.OFFERED and ap.failures == 0


# --------------------------------------------------------------------------
# The joiner's own timers


def test_joiner_gives_up_when_the_approver_does_not_answer(history: History) -> None:
    jn = make_joiner(make_approver(history.account).offer, device("new"))
    assert jn.next_deadline() is None and jn.tick(at(10**9)) == []
    jn.start(Now(100.0, T0))
    assert jn.next_deadline() == 100.0 + lk.ANSWER_TIMEOUT_MS / 1000 == 130.0
    assert jn.tick(Now(129.999, T0)) == []
    err = failure(jn, jn.tick(Now(130.0, T0)), misbehaved=False)
    assert isinstance(err, lk.LinkTimeoutError) and err.code == "link_timeout"
    assert jn.tick(Now(200.0, T0)) == []
    # an answer arriving after that is refused
    assert isinstance(jn.receive(lk.encode_frame(lk.ConfirmFrame()), at(0))[0], lk.JoinFailed)


def test_joiner_waits_for_the_user_then_for_approval(history: History) -> None:
    ledger = history.ledger()
    _, jn, out = _claim(history, ledger)
    assert jn.next_deadline() == 0.001 + 30.0
    jn.receive(only(out), Now(10.0, T0))
    assert jn.next_deadline() is None  # the user takes their time
    jn.confirm(Now(1000.0, T0))
    window = (lk.APPROVAL_WINDOW_MS + lk.CLOCK_SKEW_MS) / 1000
    assert lk.APPROVAL_TIMEOUT_MS == 6 * 60 * 1000
    assert jn.next_deadline() == 1000.0 + window
    assert jn.tick(Now(1000.0 + window - 0.5, T0)) == []
    err = failure(jn, jn.tick(Now(1000.0 + window, T0)), misbehaved=False)
    assert isinstance(err, lk.LinkTimeoutError)


def test_joiner_timer_stops_once_joined(history: History) -> None:
    got = link(history.ledger(), history.account, history.keys["d0"], device("new"), "laptop")
    assert got.joiner.next_deadline() is None and got.joiner.tick(at(10**9)) == []


# --------------------------------------------------------------------------
# Offers: routing, cap, expiry and forgetting


def _offers(history: History, n: int, *, max_offers: int = 64) -> tuple[Offers, list[lk.Approver]]:
    offers = Offers(FAST, max_offers=max_offers)
    aps = [
        offers.create(
            history.account,
            peer_id=PA,
            addrs=ADDRS,
            link_id=bytes([i]) * 8,
            secret=SECRET,
            now=at(i * 1000),
            ttl_ms=60_000,
        )
        for i in range(n)
    ]
    return offers, aps


def test_offers_route_the_first_frame_to_its_offer(history: History) -> None:
    ledger = history.ledger()
    offers, aps = _offers(history, 3)
    assert list(offers) == aps and len(offers) == 3
    jn = make_joiner(aps[1].offer, device("new"))
    join = only(jn.start(at(5)))
    assert offers.route(join, PJ, at(5)) is aps[1]
    out = aps[1].receive(join, remote_peer=PJ, now=at(5), ledger=ledger)
    assert isinstance(out[1], lk.JoinRequested)
    # an unknown link id: told so, and no blame (a stale or mistyped link)
    stranger = make_joiner(make_approver(history.account).offer, device("x"))
    unknown = offers.route(only(stranger.start(at(5))), PJ, at(5))
    assert unknown == [
        lk.Send(PJ, lk.encode_frame(lk.ErrorFrame("link_unknown"))),
        lk.Hangup(PJ),
    ]
    # a malformed first frame, or one that is not JOIN: refused
    for bad, expected in (
        (b"\xc1", DecodeError),
        (lk.encode_frame(lk.DoneFrame()), lk.UnexpectedFrameError),
    ):
        routed = offers.route(bad, PJ, at(5))
        assert isinstance(routed, list) and isinstance(refusal(routed), expected)
    # lookups
    assert offers.get(bytes([2]) * 8) is aps[2] and offers.get(bytes(8)) is aps[0]
    assert offers.get(b"\x09" * 8) is None
    assert offers.find("0101") is aps[1] and offers.find("0202020202020202") is aps[2]
    assert offers.find("") is None  # ambiguous
    assert offers.find("ff") is None


def test_offers_are_capped(history: History) -> None:
    offers, _ = _offers(history, 3, max_offers=3)
    with pytest.raises(UsageError, match="3 link offers"):
        offers.create(
            history.account, peer_id=PA, addrs=ADDRS, link_id=b"\x07" * 8, secret=SECRET,
            now=at(5000),
        )  # fmt: skip
    with pytest.raises(UsageError, match="in use"):
        _offers(history, 1)[0].create(
            history.account, peer_id=PA, addrs=ADDRS, link_id=bytes(8), secret=SECRET, now=at(0)
        )
    # once the oldest is past its keeping time, create forgets it and has room
    late = at(60_000 + KEEP_FINISHED_MS)
    assert offers.tick(at(62_000))  # all three expire
    ap = offers.create(
        history.account, peer_id=PA, addrs=ADDRS, link_id=b"\x07" * 8, secret=SECRET, now=late
    )
    assert offers.get(bytes(8)) is None and len(offers) == 3 and list(offers)[-1] is ap
    # the forgetting is reported by the next tick, due at once
    assert offers.next_deadline() == late.mono
    assert offers.tick(late) == [OfferForgotten(bytes(8))]


def test_offers_tick_expires_and_later_forgets(history: History) -> None:
    ledger = history.ledger()
    offers, aps = _offers(history, 2)
    assert offers.next_deadline() == 60.0  # the first offer's expiry
    jn = make_joiner(aps[1].offer, device("new"))
    aps[1].receive(only(jn.start(at(2000))), remote_peer=PJ, now=at(2000), ledger=ledger)
    assert offers.tick(at(59_999)) == []
    assert offers.tick(at(60_000)) == [OfferOutput(bytes(8), lk.LinkExpired())]
    # the pending one expires with its approval window, its joiner told why
    window = 2000 + lk.APPROVAL_WINDOW_MS
    assert offers.next_deadline() == window / 1000
    expired = lk.encode_frame(lk.ErrorFrame("link_expired"))
    assert offers.tick(at(window)) == [
        OfferOutput(b"\x01" * 8, lk.Send(PJ, expired)),
        OfferOutput(b"\x01" * 8, lk.Hangup(PJ)),
        OfferOutput(b"\x01" * 8, lk.LinkExpired()),
    ]
    # finished offers stay an hour past their expiry, so a late joiner hears why
    keep = 60_000 + KEEP_FINISHED_MS
    assert offers.next_deadline() == keep / 1000
    late = make_joiner(aps[0].offer, device("late"), now=at(60_000))
    join = only(late.start(at(keep - 1)))
    assert offers.route(join, PJ, at(keep - 1)) is aps[0]
    out = aps[0].receive(join, remote_peer=PJ, now=at(keep - 1), ledger=ledger)
    assert isinstance(refusal(out), lk.LinkExpiredError)
    assert offers.tick(at(keep)) == [OfferForgotten(bytes(8))]
    assert offers.next_deadline() == (keep + 1000) / 1000
    assert offers.tick(at(keep + 1000)) == [OfferForgotten(b"\x01" * 8)]
    assert len(offers) == 0 and offers.next_deadline() is None
    # and now the link is unknown
    routed = offers.route(join, PJ, at(10**8))
    assert isinstance(routed, list) and routed[0] == lk.Send(
        PJ, lk.encode_frame(lk.ErrorFrame("link_unknown"))
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
    _, jn, out = _claim(history, ledger)
    frame = lk.decode_frame(only(out), FAST, 1 << 20)
    assert isinstance(frame, lk.AcceptFrame)
    # another account's events, under a MAC that does not cover them
    other = History(name="mallory")
    forged = lk.AcceptFrame((other.genesis.raw,), frame.mac)
    assert isinstance(failure(jn, jn.receive(lk.encode_frame(forged), at(2))), lk.LinkMacError)

    # even with a valid MAC (a malicious approver knows the secret), the
    # events must be the link's account
    _, jn, _ = _claim(history, ledger)
    mac = reports._accept_mac(SECRET, jn._th, [other.genesis.raw])
    out = jn.receive(lk.encode_frame(lk.AcceptFrame((other.genesis.raw,), mac)), at(2))
    assert isinstance(failure(jn, out), SchemaError)


def test_tampered_approved_is_caught_by_the_joiner(history: History) -> None:
    ledger = history.ledger()
    ap, jn = _confirmed(history, ledger)
    approval = ap.approve(history.keys["d0"], ledger, timestamp_ms=T0 + 3, now=at(3))
    frame = lk.decode_frame(only(approval.outputs), FAST, 1 << 20)
    assert isinstance(frame, lk.ApprovedFrame)
    *head, add = frame.events
    broken = add[:-1] + bytes([add[-1] ^ 1])  # the signature's last byte
    out = jn.receive(lk.encode_frame(lk.ApprovedFrame((*head, broken))), at(4))
    assert isinstance(failure(jn, out), BadSignatureError)

    # an APPROVED without the add-device event does not make the joiner active
    _, jn = _confirmed(history, ledger)
    out = jn.receive(lk.encode_frame(lk.ApprovedFrame(tuple(head))), at(4))
    assert isinstance(failure(jn, out), InvalidEventError)


def test_out_of_order_frames_are_refused(history: History) -> None:
    ledger = history.ledger()
    ap, jn, _ = _claim(history, ledger)
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
    ap, jn, out = _claim(history, ledger)
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
