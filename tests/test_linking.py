"""The device-linking handshake (docs/PROTOCOL.md §14), machines only.

Frames travel through a fake in-memory link: the test hands each machine's
``Send`` outputs to the other, so every byte the node would send is
exercised (``linking_support``).  Remote input never raises: a refusal is
an output (``refusal`` and ``failure`` read it).  Hostile frames and the
link string are in ``test_linking_wire``.
"""

from __future__ import annotations

import dataclasses

import pytest

from protocol.core.errors import (
    DecodeError,
    NotActiveError,
    UsageError,
)
from protocol.core.keys import fingerprint
from protocol.core.machine import Now
from protocol.linking import approver as approver_module
from protocol.linking import machines as lk
from protocol.linking.offers import KEEP_FINISHED_MS, OfferForgotten, OfferOutput, Offers
from protocol.log import authoring
from protocol.log.ledger import IngestStatus
from protocol.log.state import DeviceStatus

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
    failure,
    link,
    make_approver,
    make_joiner,
    only,
    refusal,
    st,
)

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

    ap, jn = confirmed(history, ledger)
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
    ap, _ = confirmed(history, ledger)
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
    ap, _, _ = claim(history, ledger, "new2")
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
    ap, jn = confirmed(history, ledger)
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
    ap, jn, out = claim(history, ledger)
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
    ap, _, _ = claim(history, ledger)
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
    ap, jn, out = claim(history, ledger)
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
    ap, jn = confirmed(history, ledger)
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
    _, jn, out = claim(history, ledger)
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
