"""Reachability, relays and address hygiene as pure machines (PROTOCOL.md
§17.4, §17.5): the classifier and its lab setting, what is advertised to
whom and what may be dialled, relayed links in the link policy, the probe
machine on both sides, and the probe's frames."""

from __future__ import annotations

import ipaddress
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.core.errors import InvalidInput
from protocol.core.machine import Now
from protocol.links import reach_wire
from protocol.links.addresses import (
    DEFAULT,
    Classifier,
    LabConfigError,
    Scope,
    advertise_to,
    guard,
    lab_classifier,
    may_dial,
)
from protocol.links.manager import Admitted, LinkManager, Refusal, Rejected
from protocol.links.policy import EXEMPT, LinkInfo, LinkLimits, Verdict, admit, network_group
from protocol.links.reachability import (
    Advertise,
    PeerView,
    Probe,
    ProbeServer,
    Reach,
    Reachability,
    ReachConfig,
    Release,
    Reserve,
    ServerConfig,
)

LAB = lab_classifier("smu-test", "# the lab's public prefixes\n100.64.0.0/12\n")
OWN = [ipaddress.ip_network("192.168.1.0/24"), ipaddress.ip_network("127.0.0.0/8")]


def now(t: float) -> Now:
    return Now.virtual(t)


# -- the classifier -------------------------------------------------------------


def test_scopes() -> None:
    assert DEFAULT.scope("/ip4/8.8.8.8/tcp/1") is Scope.PUBLIC
    assert DEFAULT.scope("/ip4/127.0.0.1/tcp/1") is Scope.LOOPBACK
    assert DEFAULT.scope("/ip4/192.168.1.5/tcp/1") is Scope.PRIVATE
    assert DEFAULT.scope("/ip4/100.64.1.2/tcp/1") is Scope.PRIVATE  # shared space
    assert DEFAULT.scope("/ip4/0.0.0.0/tcp/1") is Scope.UNUSABLE
    assert DEFAULT.scope("/ip4/192.0.2.1/tcp/1") is Scope.UNUSABLE  # documentation
    assert DEFAULT.scope("/ip6/fe80::1/tcp/1") is Scope.PRIVATE
    assert DEFAULT.scope("/dns4/example.org/tcp/1") is Scope.NAME
    assert DEFAULT.scope("/ip4/8.8.8.8/tcp/1/p2p/Qm/p2p-circuit") is Scope.RELAY
    assert DEFAULT.scope("/ip6/::ffff:10.0.0.1/tcp/1") is Scope.PRIVATE


def test_lab_classifier_makes_its_prefixes_public_and_nothing_else() -> None:
    assert LAB.scope("/ip4/100.65.0.2/tcp/1") is Scope.PUBLIC
    assert LAB.scope("/ip4/100.80.0.2/tcp/1") is Scope.PRIVATE  # outside the file's prefix
    assert LAB.scope("/ip4/192.168.1.2/tcp/1") is Scope.PRIVATE
    assert network_group("100.65.0.2") == EXEMPT
    assert network_group("100.65.0.2", LAB) == "ip4:100.65.0.0/16"


@pytest.mark.parametrize(
    ("network", "text"),
    [
        ("smu-main", "100.64.0.0/12"),  # never on the main network
        ("smu-test", ""),  # an empty file is a mistake
        ("smu-test", "10.0.0.0/8"),  # a real private range
        ("smu-test", "8.8.0.0/16"),  # a real public range
        ("smu-test", "100.0.0.0/8"),  # wider than the shared space
        ("smu-test", "100.64.0.1/12"),  # host bits set
        ("smu-test", "not a prefix"),
        ("smu-test", "fd00::/8"),
    ],
)
def test_lab_classifier_refused(network: str, text: str) -> None:
    with pytest.raises(LabConfigError):
        lab_classifier(network, text)


def test_default_classifier_is_not_the_lab() -> None:
    assert Classifier() == DEFAULT
    assert DEFAULT.lab_public == ()


# -- advertising and dialling ----------------------------------------------------


def test_advertise_only_what_the_viewer_can_use() -> None:
    ours = [
        "/ip4/127.0.0.1/tcp/4001",
        "/ip4/192.168.1.2/tcp/4001",
        "/ip4/8.8.4.4/tcp/4001",
        "/ip4/8.8.8.8/tcp/1/p2p/QmRelay/p2p-circuit",
    ]
    public, relay = ours[2], ours[3]
    assert advertise_to(ours, "9.9.9.9", OWN) == [public, relay]
    assert advertise_to(ours, "192.168.1.7", OWN) == [ours[1], public, relay]
    assert advertise_to(ours, "192.168.2.7", OWN) == [public, relay]  # another LAN
    assert advertise_to(ours, "127.0.0.1", OWN) == [ours[0], public, relay]
    assert advertise_to(ours, "", OWN) == [public, relay]


def test_never_dial_a_private_address_learned_from_outside() -> None:
    lan = "/ip4/192.168.1.9/tcp/1"
    assert may_dial(lan, "192.168.1.7", OWN)  # told from inside our LAN
    assert may_dial(lan, None, OWN)  # the user or the bootstrap list
    assert not may_dial(lan, "9.9.9.9", OWN)  # told from the internet
    assert not may_dial("/ip4/192.168.2.9/tcp/1", "192.168.2.7", OWN)  # not our network
    assert not may_dial("/ip4/127.0.0.1/tcp/1", "9.9.9.9", OWN)
    assert may_dial("/ip4/127.0.0.1/tcp/1", "127.0.0.1", OWN)
    assert may_dial("/ip4/8.8.8.8/tcp/1", "9.9.9.9", OWN)
    assert not may_dial("/ip4/0.0.0.0/tcp/1", None, OWN)
    assert not may_dial("/ip4/192.168.1.9/tcp/1", "some.name", OWN)


def test_guard_after_resolution() -> None:
    ip = ipaddress.ip_address
    assert guard(ip("8.8.8.8"), OWN)
    assert guard(ip("127.0.0.1"), OWN)
    assert guard(ip("192.168.1.3"), OWN)
    assert not guard(ip("192.168.7.3"), OWN)
    assert not guard(ip("10.1.1.1"), OWN)
    assert not guard(ip("0.0.0.0"), OWN)
    assert not guard(ip("224.0.0.1"), OWN)
    assert guard(ip("100.64.0.2"), [], LAB)
    assert not guard(ip("100.64.0.2"), [])


# -- relayed links in the policy ---------------------------------------------------


def test_relayed_links_have_their_own_caps() -> None:
    limits = LinkLimits(max_inbound_per_group=2, max_inbound_relayed=3, max_relayed_per_group=2)
    relay_a = "ip4:1.2.0.0/16"
    links = [LinkInfo(False, relay_a, relayed=True)] * 2
    # a third link through the same relay's group is refused ...
    assert admit(links, relay_a, False, limits, relayed=True) is Verdict.RELAYED_FULL
    # ... but direct links from that group are counted apart
    assert admit(links, relay_a, False, limits) is Verdict.ACCEPT
    more = [*links, LinkInfo(False, "ip4:5.6.0.0/16", relayed=True)]
    assert admit(more, "ip4:9.9.0.0/16", False, limits, relayed=True) is Verdict.RELAYED_FULL
    # more relayed inbound links than the direct per-group cap allows
    assert admit(links[:1], relay_a, False, limits, relayed=True) is Verdict.ACCEPT


def test_manager_counts_a_relayed_link_in_the_relays_group() -> None:
    m = LinkManager("self", LinkLimits(max_relayed_per_group=2), classifier=LAB)
    outs = [m.opened(f"p{i}", "100.65.0.2", False, now(i), relayed=True)[0] for i in range(3)]
    assert isinstance(outs[0], Admitted) and outs[0].relayed
    assert outs[0].group == "ip4:100.65.0.0/16"
    assert isinstance(outs[2], Rejected) and outs[2].refusal is Refusal.RELAYED_FULL
    assert m.relayed() == {"p0", "p1"}


# -- the reachability machine -------------------------------------------------------


def view(peer: str, group: str, **kw: object) -> PeerView:
    args: dict[str, object] = {
        "bootstrap": False,
        "known_for": 0.0,
        "score": 0.0,
        "can_relay": True,
    }
    args.update(kw)
    return PeerView(peer, group, **args)  # type: ignore[arg-type]


GROUPS = {"a": "ip4:100.64.0.0/16", "b": "ip4:100.65.0.0/16", "c": "ip4:100.66.0.0/16"}


def machine() -> tuple[Reachability, list[object]]:
    r = Reachability(random.Random(1), ReachConfig(), classifier=LAB)
    outs: list[object] = list(r.set_listen(["/ip4/192.168.1.2/tcp/4001"], now(0)))
    views = [view(p, g, bootstrap=p == "a") for p, g in GROUPS.items()]
    outs += r.peers_changed(views, now(0))
    return r, outs


def probes(outs: list[object]) -> list[Probe]:
    return [o for o in outs if isinstance(o, Probe)]


def test_probes_one_peer_per_group() -> None:
    _r, outs = machine()
    ps = probes(outs)
    assert sorted(p.peer for p in ps) == ["a", "b", "c"]
    assert all(p.port == 4001 for p in ps)
    assert len({p.nonce for p in ps}) == 3


def test_behind_nat_reserves_two_relays_trusted_first_and_advertises_them() -> None:
    r, outs = machine()
    for p in probes(outs):
        r.probe_answered(p.nonce, "/ip4/100.70.0.2/tcp/4001", False, now(1))
    assert r.verdict is Reach.PRIVATE
    later = r.tick(now(2))
    reserves = [o.peer for o in [*later] if isinstance(o, Reserve)]
    reserves += [
        o.peer
        for o in r.peers_changed(
            [view(p, g, bootstrap=p == "a") for p, g in GROUPS.items()], now(2)
        )
        if isinstance(o, Reserve)
    ]
    assert r.relays() == ()
    asked = sorted(p for p in r._relays)
    assert len(asked) == 2 and "a" in asked  # the bootstrap peer is one of them
    out = r.reserved("a", 3600, now(3))
    out += r.reserved(asked[1], 3600, now(3))
    ads = [o for o in out if isinstance(o, Advertise)]
    assert ads[-1].reachability is Reach.PRIVATE and ads[-1].relays == tuple(sorted(asked))
    assert ads[-1].addrs == ()  # nothing of ours is reachable directly
    # renewal before expiry
    renew = r.tick(now(3600 - 119))
    assert sorted(o.peer for o in renew if isinstance(o, Reserve)) == asked


def test_a_relay_that_keeps_failing_is_replaced() -> None:
    r, outs = machine()
    for p in probes(outs):
        r.probe_answered(p.nonce, None, False, now(5))  # refusals: no evidence
    assert r.verdict is Reach.UNKNOWN
    r2, outs2 = machine()
    for p in probes(outs2):
        r2.probe_answered(p.nonce, "/ip4/100.70.0.2/tcp/4001", False, now(1))
    r2.tick(now(2))
    held = sorted(r2._relays)
    for peer in held:
        r2.reserved(peer, 3600, now(3))
    bad = held[0]
    out: list[object] = []
    for i in range(3):
        out += r2.relay_used(bad, False, now(4 + i))
    assert any(isinstance(o, Release) and o.peer == bad for o in out)
    assert bad not in r2._relays
    replacement = [o.peer for o in out if isinstance(o, Reserve)]
    assert replacement and bad not in replacement


def test_public_needs_dial_backs_from_two_groups() -> None:
    r, outs = machine()
    addr = "/ip4/100.70.0.2/tcp/4001"
    ps = probes(outs)
    r.dialled_back(ps[0].nonce, now(1))
    r.probe_answered(ps[0].nonce, addr, True, now(1))
    assert r.verdict is Reach.UNKNOWN  # one group is not enough
    r.dialled_back(ps[1].nonce, now(1))
    out = r.probe_answered(ps[1].nonce, addr, True, now(1))
    assert r.verdict is Reach.PUBLIC
    ads = [o for o in out if isinstance(o, Advertise)]
    assert ads and ads[-1].addrs == (addr,)
    # verdicts expire
    r.tick(now(1 + 1800))
    assert r.verdict is not Reach.PUBLIC


def test_a_liar_cannot_make_us_advertise_an_address() -> None:
    r, outs = machine()
    fake = "/ip4/100.99.9.9/tcp/4001"
    r.observed("a", "100.99.9.9", now(0))
    ps = probes(outs)
    out: list[object] = []
    # every asked peer claims success at the fake address, none dials back
    for p in ps:
        out += r.probe_answered(p.nonce, fake, True, now(1))
    # a dial-back for a nonce we never issued confirms nothing
    r.dialled_back(b"\x00" * 16, now(1))
    assert r.stats.stray_dial_backs == 1
    assert r.verdict is Reach.PRIVATE
    assert all(fake not in o.addrs for o in out if isinstance(o, Advertise))
    # nor does a dial-back at another port than the one asked for
    r3, outs3 = machine()
    for p in probes(outs3):
        r3.dialled_back(p.nonce, now(1))
        r3.probe_answered(p.nonce, "/ip4/100.70.0.2/tcp/9999", True, now(1))
    assert r3.verdict is not Reach.PUBLIC


def test_silence_counts_as_failure() -> None:
    r, _ = machine()
    r.tick(now(21))
    assert r.verdict is Reach.PRIVATE


def test_loopback_peers_decide_nothing() -> None:
    r = Reachability(random.Random(1))
    r.set_listen(["/ip4/127.0.0.1/tcp/4001"], now(0))
    out = r.peers_changed([view("a", EXEMPT), view("b", EXEMPT)], now(0))
    assert not probes(out)
    assert r.verdict is Reach.UNKNOWN


# -- the asked side ------------------------------------------------------------------


def test_server_dials_only_the_askers_own_address_and_never_through_a_relay() -> None:
    s = ProbeServer(classifier=LAB)
    (out,) = s.request("p", "100.70.0.2", False, b"n" * 16, 4001, now(0))
    assert out.addr == "/ip4/100.70.0.2/tcp/4001"  # type: ignore[union-attr]
    (refused,) = s.request("q", "100.71.0.2", True, b"n" * 16, 4001, now(0))
    assert refused.code == "relayed"  # type: ignore[union-attr]
    (busy,) = s.request("p", "100.70.0.2", False, b"n" * 16, 4001, now(0))
    assert busy.code == "busy"  # type: ignore[union-attr]


def test_server_rate_limits_per_peer_group_and_total() -> None:
    s = ProbeServer(ServerConfig(max_in_flight=100), classifier=LAB)
    codes = []
    for i in range(4):
        (o,) = s.request("p", "100.70.0.2", False, b"n" * 16, 4001, now(i * 0.01))
        s.done("p", now(i * 0.01))
        codes.append(getattr(o, "code", "ok"))
    assert codes == ["ok", "ok", "rate", "rate"]  # burst 2 per peer
    # many peer ids from one group: the group's bucket
    codes = []
    for i in range(8):
        (o,) = s.request(f"x{i}", "100.80.0.2", False, b"n" * 16, 4001, now(1))
        s.done(f"x{i}", now(1))
        codes.append(getattr(o, "code", "ok"))
    assert codes.count("ok") == 4
    # and a free peer id per request from many groups: the total bucket
    total = 0
    for i in range(40):
        (o,) = s.request(f"y{i}", f"100.{64 + i}.0.2", False, b"n" * 16, 1, now(2))
        s.done(f"y{i}", now(2))
        total += not hasattr(o, "code")
    assert total <= 8


# -- the probe's frames ---------------------------------------------------------------


def test_frames_round_trip() -> None:
    for msg in (
        reach_wire.DialMe(b"x" * 16, 4001),
        reach_wire.Result("/ip4/1.2.3.4/tcp/4001", True),
        reach_wire.DialBack(b"y" * 16),
        reach_wire.ReachRefused("rate"),
    ):
        assert reach_wire.decode(reach_wire.encode(msg)) == msg


@given(st.binary(max_size=600))
def test_hostile_frames_raise_only_invalid_input(raw: bytes) -> None:
    try:
        msg = reach_wire.decode(raw)
    except InvalidInput:
        return
    # what decodes is canonical: it encodes back to the very bytes
    assert reach_wire.encode(msg) == raw


@pytest.mark.parametrize(
    "value",
    [
        [1, 1, b"short", 4001],
        [1, 1, b"x" * 16, 0],
        [1, 1, b"x" * 16, 70000],
        [2, 1, b"x" * 16, 4001],
        [1, 2, "has space", True],
        [1, 2, "/ip4/1.2.3.4/tcp/1", 1],
        [1, 9],
    ],
)
def test_bad_frames(value: list[object]) -> None:
    from protocol.core.canonical import encode

    with pytest.raises(InvalidInput):
        reach_wire.decode(encode(value))  # type: ignore[arg-type]


def test_a_direct_link_replaces_a_relayed_one_opened_by_the_same_side() -> None:
    for me, other in (("a", "b"), ("b", "a")):
        m = LinkManager(me)
        assert isinstance(m.opened(other, "", True, now(0), relayed=True)[0], Admitted)
        # the other side cannot take over with an inbound direct link ...
        assert isinstance(m.opened(other, "", False, now(1))[0], Rejected)
        # ... but ours replaces our relayed link, whichever id is lower
        outs = m.opened(other, "", True, now(2))
        assert isinstance(outs[0], Admitted) and not outs[0].relayed
        assert m.relayed() == set()


def test_punch_addresses_need_two_groups() -> None:
    r, outs = machine()
    ps = probes(outs)
    r.probe_answered(ps[0].nonce, "/ip4/100.70.0.2/tcp/4001", False, now(1))
    assert r.punch_addrs() == ()  # one peer's word
    r.probe_answered(ps[1].nonce, "/ip4/100.70.0.2/tcp/4001", False, now(1))
    assert r.punch_addrs() == ("/ip4/100.70.0.2/tcp/4001",)
