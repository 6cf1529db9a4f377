"""The device side of mailboxes (PROTOCOL.md §15.10-§15.12): when a device
asks for grants, fetches and backs off (``MailboxClient``), machine only."""

from __future__ import annotations

import hashlib
import random

import pytest

from protocol.core.errors import UsageError
from protocol.core.machine import Now
from protocol.messaging.mailbox import Mailbox, MailboxIdentity
from protocol.messaging.mailbox_client import (
    AskGrant,
    ClientConfig,
    ClientOutput,
    Fetch,
    GrantDropped,
    GrantsChanged,
    MailboxClient,
)
from protocol.records.grant import Grant

from .conftest import FAST, T0, device

HOUR = 3600 * 1000
DAY = 24 * HOUR
ACCOUNT = b"\xaa" * 32
OTHER_ACCOUNT = b"\xbb" * 32
ME = device("mailbox-client").sign_public
P1, P2, P3 = "12D3KooWPeerA", "12D3KooWPeerB", "12D3KooWPeerC"  # in sorted order


def at(ms: float) -> Now:
    """``ms`` milliseconds after T0, on both clocks (monotonic 0 at T0)."""
    return Now(ms / 1000, T0 + int(ms))


def grant(
    peer: str,
    *,
    issued: int = 0,
    lifetime: int = 30 * DAY,
    account: bytes = ACCOUNT,
    dev: bytes = ME,
) -> Grant:
    seed = hashlib.blake2b(peer.encode(), digest_size=32).digest()
    box = Mailbox(FAST, MailboxIdentity(seed), peer)
    return box.issue_grant(account, dev, now=at(issued), lifetime_ms=lifetime)


def asks(outs: list[ClientOutput]) -> list[str]:
    return [o.peer for o in outs if isinstance(o, AskGrant)]


def fetches(outs: list[ClientOutput]) -> list[str]:
    return [o.grant.mailbox_peer for o in outs if isinstance(o, Fetch)]


def active(**kw: object) -> MailboxClient:
    """A client active in ACCOUNT since 0 (its saved grants are being fetched)."""
    client = MailboxClient(ME, **kw)  # type: ignore[arg-type]
    client.set_active(ACCOUNT, at(0))
    return client


#: fetches out of the way, for tests of the grants
SLOW_POLL = ClientConfig(poll_interval=100 * 3600.0)


def test_an_inactive_device_asks_for_nothing() -> None:
    g = grant(P1)
    client = MailboxClient(ME, grants=[g])
    assert client.peers_changed([P1, P2, P3], at(0)) == []
    assert client.tick(at(10_000)) == [] and client.notified(P1, at(10_000)) == []
    assert client.grants == (g,)  # kept from the last run, not fetched yet
    # active: the saved grant is fetched at once, a second one asked for
    outs = client.set_active(ACCOUNT, at(20_000))
    assert outs == [AskGrant(P2), Fetch(g)]
    # leaving the account drops every grant, and asks stop
    outs = client.set_active(None, at(21_000))
    assert outs == [GrantDropped(g, "inactive"), GrantsChanged(())]
    assert client.tick(at(10**7)) == [] and client.next_deadline() is None
    assert client.granted(grant(P2), at(22_000)) == []  # an answer arriving late


def test_asks_two_distinct_peers_and_fetches_each_grant_at_once() -> None:
    client = active()
    assert client.next_deadline() is None  # no peers yet
    outs = client.peers_changed([P3, P1, P2, P1], at(0))
    assert outs == [AskGrant(P1), AskGrant(P2)]  # sorted, at most two at once
    g1, g2 = grant(P1), grant(P2)
    assert client.granted(g1, at(100)) == [GrantsChanged((g1,)), Fetch(g1)]
    assert client.granted(g2, at(200)) == [GrantsChanged((g1, g2)), Fetch(g2)]
    # full: nobody else is asked, and a grant nobody needs is ignored
    assert client.peers_changed([P1, P2, P3, "12D3KooWPeerFour"], at(300)) == []
    assert client.granted(grant(P3), at(300)) == []
    assert client.grants == (g1, g2)
    # a grant for someone else is the adapter's mistake
    with pytest.raises(UsageError):
        client.granted(grant(P3, dev=b"\x01" * 32), at(300))
    with pytest.raises(UsageError):
        client.granted(grant(P3, account=OTHER_ACCOUNT), at(300))


def test_fetch_schedule_and_back_off() -> None:
    g = grant(P1)
    client = active(grants=[g])
    assert client.peers_changed([], at(0)) == []  # fetched at set_active already
    assert client.next_deadline() == 120.0  # the fetch's answer timeout
    assert client.fetched(P1, 3, at(500)) == []
    assert client.next_deadline() == 2.5  # every 2 s
    assert client.tick(at(2499)) == []
    assert client.tick(at(2500)) == [Fetch(g)]
    # failures in a row double the wait, up to a minute
    t = 2500
    waits = []
    for _ in range(7):
        assert client.failed(P1, "unreachable", at(t)) == []
        due = client.next_deadline()
        assert due is not None
        waits.append(round(due - t / 1000, 3))
        t = int(due * 1000)
        assert client.tick(at(t)) == [Fetch(g)]
    assert waits == [4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    (status,) = client.status()
    assert status.failures == 7 and status.last_error == "unreachable"
    # one success resets it
    client.fetched(P1, 0, at(t))
    assert client.next_deadline() == t / 1000 + 2.0 and client.status()[0].failures == 0


def test_a_notice_fetches_at_once() -> None:
    g = grant(P1)
    client = active(grants=[g])
    client.failed(P1, "timeout", at(0))  # backing off for 4 s
    assert client.notified(P1, at(1000)) == [Fetch(g)]
    # a notice during a fetch: fetch again as soon as it is done
    assert client.notified(P1, at(1500)) == []
    assert client.fetched(P1, 1, at(2000)) == [Fetch(g)]
    assert client.notified("12D3KooWNotMine", at(2000)) == []


def test_grants_are_renewed_within_an_hour_of_expiry() -> None:
    client = active(config=SLOW_POLL)
    g1 = grant(P1, lifetime=3 * HOUR)
    g2 = grant(P2, lifetime=30 * DAY)
    client.peers_changed([P1, P2], at(0))
    client.granted(g1, at(0))
    client.granted(g2, at(0))
    client.fetched(P1, 0, at(0))
    client.fetched(P2, 0, at(0))
    # the renewal point is a deadline of its own
    assert client.next_deadline() == 2 * 3600.0
    assert client.tick(at(2 * HOUR - 1)) == []
    assert client.tick(at(2 * HOUR)) == [AskGrant(P1)]
    # the mailbox renews it: replaced in place, no drop
    renewed = grant(P1, issued=2 * HOUR, lifetime=30 * DAY)
    assert client.granted(renewed, at(2 * HOUR + 10)) == [GrantsChanged((renewed, g2))]
    assert client.tick(at(2 * HOUR + 1000)) == []


def test_an_expiring_grant_is_replaced_elsewhere_when_its_mailbox_refuses() -> None:
    client = active(config=SLOW_POLL)
    g1 = grant(P1, lifetime=2 * HOUR)
    g2 = grant(P2)
    client.peers_changed([P1, P2, P3], at(0))
    client.granted(g1, at(0))
    client.granted(g2, at(0))
    client.fetched(P1, 0, at(0))
    client.fetched(P2, 0, at(0))
    outs = client.tick(at(HOUR))
    assert asks(outs) == [P1]
    # P1 will not renew: the next candidate is asked at once
    assert asks(client.grant_refused(P1, at(HOUR + 10))) == [P3]
    g3 = grant(P3, issued=HOUR)
    outs = client.granted(g3, at(HOUR + 20))
    assert outs == [GrantDropped(g1, "replaced"), GrantsChanged((g2, g3)), Fetch(g3)]
    assert client.next_deadline() == pytest.approx(3600.02 + 120)  # g3's fetch's timeout


def test_an_expired_grant_is_dropped_and_another_asked_for() -> None:
    client = active(config=SLOW_POLL)
    g1 = grant(P1, lifetime=2 * HOUR)
    client.peers_changed([P1], at(0))  # P1 grants; nobody else to ask
    client.granted(g1, at(0))
    client.fetched(P1, 0, at(0))
    client.grant_refused(P1, at(HOUR))  # renewal refused, then refused again
    for _ in range(200):
        due = client.next_deadline()
        assert due is not None
        if due * 1000 >= 2 * HOUR:
            break
        for out in client.tick(at(due * 1000)):
            if isinstance(out, AskGrant):
                client.grant_refused(out.peer, at(due * 1000))
            elif isinstance(out, Fetch):
                client.fetched(P1, 0, at(due * 1000))
    outs = client.tick(at(2 * HOUR))
    assert outs[:2] == [GrantDropped(g1, "expired"), GrantsChanged(())]
    assert client.grants == ()


def test_refused_asks_back_off_per_peer() -> None:
    client = active()
    client.peers_changed([P1, P2, P3], at(0))  # asks P1 and P2
    assert asks(client.grant_refused(P1, at(10))) == [P3]  # P1 waits 4 s
    assert client.grant_refused(P3, at(20)) == []  # P3 waits 4 s; P2 is being asked
    assert client.next_deadline() == pytest.approx(4.01)
    assert client.tick(at(4009)) == []
    assert asks(client.tick(at(4010))) == [P1]
    # a peer that refused again waits twice as long
    assert asks(client.grant_refused(P1, at(4100))) == [P3]  # P3's wait is over
    assert client.next_deadline() == 120.0  # P2's ask counts as refused then
    assert client.grant_refused(P3, at(4200)) == []
    assert client.next_deadline() == pytest.approx(4.1 + 8.0)
    assert asks(client.tick(at(12_100))) == [P1]


def test_unreported_asks_and_fetches_count_as_failed() -> None:
    client = active(config=ClientConfig(answer_timeout=30.0))
    g = grant(P2)
    client.peers_changed([P1], at(0))  # ask P1, never answered
    client.granted(g, at(0))  # ...and P2 granted unasked; its fetch is never reported
    assert client.next_deadline() == 30.0
    outs = client.tick(at(30_000))
    assert outs == []  # both now back off: P1 asks again in 4 s, P2 fetches in 4 s
    assert client.status()[0].last_error == "no report"
    assert client.tick(at(34_000)) == [AskGrant(P1), Fetch(g)]


def test_the_other_account_s_grants_are_dropped() -> None:
    mine, theirs = grant(P1), grant(P2, account=OTHER_ACCOUNT)
    client = MailboxClient(ME, grants=[mine, theirs, grant(P1, issued=5), grant(P3)])
    assert client.grants == (mine, theirs)  # at most two, at distinct peers
    outs = client.set_active(ACCOUNT, at(10))
    assert outs == [GrantDropped(theirs, "account"), GrantsChanged((mine,)), Fetch(mine)]


def test_random_schedules_keep_the_invariants() -> None:
    """A client against mailboxes that grant and fail at random, over days:
    never more than two grants, always at distinct peers and unexpired,
    every deadline in the future, and the same seed gives the same run."""

    def run(seed: int) -> list[str]:
        rng = random.Random(seed)
        client = active()
        peers = [f"12D3KooWRandom{i}" for i in range(5)]
        t = 0.0
        log: list[str] = []
        pending = client.peers_changed(peers[:3], at(t))
        for _ in range(3000):
            while pending:
                out = pending.pop(0)
                log.append(type(out).__name__)
                if isinstance(out, AskGrant) and rng.random() < 0.5:
                    life = rng.choice([90 * 60 * 1000, 5 * HOUR, 2 * DAY])
                    new = grant(out.peer, issued=int(t), lifetime=life)
                    pending += client.granted(new, at(t))
                elif isinstance(out, AskGrant):
                    pending += client.grant_refused(out.peer, at(t))
                elif isinstance(out, Fetch) and rng.random() < 0.3:
                    pending += client.failed(out.grant.mailbox_peer, "boom", at(t))
                elif isinstance(out, Fetch):
                    pending += client.fetched(out.grant.mailbox_peer, 1, at(t))
            held = [g.mailbox_peer for g in client.grants]
            assert len(held) <= 2 and len(set(held)) == len(held)
            assert all(g.expires > T0 + t for g in client.grants)
            due = client.next_deadline()
            assert due is not None and due > t / 1000
            if rng.random() < 0.05:
                pending += client.peers_changed(rng.sample(peers, 3), at(t))
            if rng.random() < 0.05:
                pending += client.notified(rng.choice(peers), at(t))
            # sometimes the node sleeps through deadlines (a laptop lid)
            t = due * 1000 + (rng.choice([0, 0, 0, HOUR, 6 * HOUR]) if rng.random() < 0.1 else 0)
            pending += client.tick(at(t))
        return log

    log = run(7)
    assert log == run(7) and log != run(8)
    kinds = set(log)
    assert kinds == {"AskGrant", "Fetch", "GrantsChanged", "GrantDropped"}
