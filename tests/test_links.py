"""The link manager machine (PROTOCOL.md §17.1-§17.2, protocol/links/manager.py)."""

from __future__ import annotations

from protocol.core.machine import Now
from protocol.links.eviction import InboundLink, choose_eviction
from protocol.links.manager import (
    BOOTSTRAP_RETRY,
    IDLE_TIMEOUT,
    LEARNED_RETRY,
    UNLINKED_GRACE,
    Admitted,
    Close,
    Dial,
    LinkManager,
    Refusal,
    Rejected,
)
from protocol.links.policy import LinkLimits

at = Now.virtual
ME = "12D3KooWme"


def verdict(outs: list[object]) -> Refusal | None:
    first = outs[0]
    if isinstance(first, Rejected):
        return first.refusal
    assert isinstance(first, Admitted)
    return None


def test_inbound_links_are_capped_per_network_group_and_in_all() -> None:
    m = LinkManager(ME, LinkLimits(max_links=6, max_inbound=4, max_inbound_per_group=2))
    # two from one /16 are fine, the third is refused; other groups still get in
    assert verdict(m.opened("a1", "45.33.1.1", False, at(0))) is None
    assert verdict(m.opened("a2", "45.33.9.9", False, at(0))) is None
    assert verdict(m.opened("a3", "45.33.7.7", False, at(0))) is Refusal.GROUP_FULL
    assert verdict(m.opened("b1", "80.1.1.1", False, at(0))) is None
    assert verdict(m.opened("c1", "90.1.1.1", False, at(0))) is None
    # inbound full: the newcomer takes the place of an unprotected link (the
    # oldest link of each group is protected, so a2, the second of 45.33)
    outs = m.opened("d1", "100.1.1.1", False, at(0))
    assert verdict(outs) is None and Close("a2", "gave way to a new link", True) in outs
    assert sorted(m.links()) == ["a1", "b1", "c1", "d1"]
    # every remaining inbound link is protected: the next newcomer is refused
    assert verdict(m.opened("e1", "110.1.1.1", False, at(0))) is Refusal.INBOUND_FULL
    # links we open need only a free slot
    assert verdict(m.opened("o1", "45.33.3.3", True, at(0))) is None
    assert verdict(m.opened("o2", "45.33.4.4", True, at(0))) is None
    assert verdict(m.opened("o3", "45.33.5.5", True, at(0))) is Refusal.FULL
    assert m.stats.rejected == {"GROUP_FULL": 1, "INBOUND_FULL": 1, "FULL": 1}
    assert m.stats.evicted == 1
    # a closed link frees its slot
    m.closed("a1", at(1))
    assert verdict(m.opened("a3", "45.33.7.7", False, at(1))) is None


def test_loopback_and_private_peers_are_exempt_from_group_caps() -> None:
    m = LinkManager(ME, LinkLimits(max_inbound_per_group=1))
    for i in range(5):
        assert verdict(m.opened(f"p{i}", "127.0.0.1", False, at(0))) is None


def test_refused_and_banned_peers_get_no_link_and_no_stream() -> None:
    m = LinkManager(ME)
    assert m.allows("x", at(0)) is None
    assert verdict(m.opened("x", "10.0.0.1", False, at(0))) is None
    assert m.refuse("x", at(1)) == [Close("x", "refused", connection=True)]
    m.closed("x", at(1))
    assert m.allows("x", at(1)) is Refusal.REFUSED
    assert verdict(m.opened("x", "10.0.0.1", False, at(1))) is Refusal.REFUSED
    m.unrefuse("x", at(2))
    assert m.allows("x", at(2)) is None

    assert verdict(m.opened("y", "10.0.0.2", False, at(2))) is None
    assert m.ban("y", 100.0, at(3)) == [Close("y", "misbehaved", connection=True)]
    m.closed("y", at(3))
    assert m.allows("y", at(50)) is Refusal.BANNED
    assert verdict(m.opened("y", "10.0.0.2", False, at(50))) is Refusal.BANNED
    assert m.next_deadline() == 100.0
    m.tick(at(100))
    assert m.allows("y", at(100)) is None


def test_two_links_with_one_peer_keep_the_one_the_lower_peer_id_opened() -> None:
    low, high = "12D3KooWaaa", "12D3KooWzzz"
    m_low, m_high = LinkManager(low), LinkManager(high)
    # both dial at once: each sees its own outbound link and the other's inbound
    assert verdict(m_low.opened(high, "10.0.0.2", True, at(0))) is None
    assert verdict(m_high.opened(low, "10.0.0.1", True, at(0))) is None
    # the inbound halves arrive: low keeps its own dial, high switches to it
    assert verdict(m_low.opened(high, "10.0.0.2", False, at(0))) is Refusal.DUPLICATE
    outs = m_high.opened(low, "10.0.0.1", False, at(0))
    assert verdict(outs) is None and Close(low, "superseded by a simultaneous link") in outs
    assert m_high.links()[low][0] is False and m_low.links()[high][0] is True


def test_bootstrap_peers_are_dialled_until_linked_with_a_hold_back_after_failure() -> None:
    m = LinkManager(ME)
    outs = m.set_bootstrap({"b1": "/ip4/10.0.0.1/tcp/1", ME: "/ip4/10.0.0.9/tcp/1"}, at(0))
    assert outs == [Dial("b1", "/ip4/10.0.0.1/tcp/1", True)]
    assert m.tick(at(0.5)) == []  # being dialled
    m.dial_failed("b1", at(1))
    assert m.next_deadline() == 1 + BOOTSTRAP_RETRY
    assert m.tick(at(2)) == []
    assert m.tick(at(1 + BOOTSTRAP_RETRY)) == [Dial("b1", "/ip4/10.0.0.1/tcp/1", True)]
    assert verdict(m.opened("b1", "10.0.0.1", True, at(6))) is None
    assert m.next_deadline() == 6 + IDLE_TIMEOUT and m.tick(at(7)) == []  # only the idle check
    # it goes away: redialled promptly, without a periodic poll in between
    m.closed("b1", at(8))
    assert m.next_deadline() == 8
    assert m.tick(at(8)) == [Dial("b1", "/ip4/10.0.0.1/tcp/1", True)]


def test_a_learned_address_of_a_bootstrap_peer_does_not_hold_back_its_redial() -> None:
    m = LinkManager(ME)
    m.set_bootstrap({"b1": "/ip4/10.0.0.1/tcp/1"}, at(0))
    m.dial_failed("b1", at(1))
    # peer exchange names the bootstrap peer at another address while it is
    # held back, and again once it is due: no learned dial of it, ever
    assert m.offer_candidates([("b1", ("/ip4/45.33.1.1/tcp/1",))], at(2)) == []
    due = 1 + BOOTSTRAP_RETRY
    assert m.offer_candidates([("b1", ("/ip4/45.33.1.1/tcp/1",))], at(due)) == []
    assert m.tick(at(due)) == [Dial("b1", "/ip4/10.0.0.1/tcp/1", True)]


def test_learned_peers_are_dialled_one_per_group_while_outbound_links_are_few() -> None:
    m = LinkManager(ME, LinkLimits(outbound_target=3))
    learned = [
        ("a1", ("/ip4/45.33.1.1/tcp/1",)),
        ("a2", ("/ip4/45.33.2.2/tcp/1",)),  # same /16 as a1
        ("b1", ("/ip4/80.1.1.1/tcp/1",)),
        ("c1", ("/ip4/90.1.1.1/tcp/1",)),
        ("d1", ("/ip4/100.1.1.1/tcp/1",)),
        ("bad", ("/unix/x",)),
    ]
    outs = m.offer_candidates(learned, at(0))
    assert [o.peer for o in outs if isinstance(o, Dial)] == ["a1", "b1", "c1"]
    m.dial_failed("a1", at(1))
    # a1's slot is free again: a2 (same group, but no outbound link there now)
    outs = m.tick(at(1))
    assert [o.peer for o in outs if isinstance(o, Dial)] == ["a2"]
    assert m.next_deadline() == 1 + LEARNED_RETRY  # a1 is held back


def test_outbound_dial_refused_for_lack_of_slots_is_held_back() -> None:
    m = LinkManager(ME, LinkLimits(max_links=1))
    m.opened("x", "10.0.0.1", False, at(0))
    m.set_bootstrap({"b1": "/ip4/10.0.0.2/tcp/1"}, at(0))
    assert verdict(m.opened("b1", "10.0.0.2", True, at(1))) is Refusal.FULL
    assert m.tick(at(1)) == []
    assert m.next_deadline() == 1 + BOOTSTRAP_RETRY


# -- eviction, idle links, bare connections (§17.1.1) -----------------------------


def _inbound(peer: str, group: str, since: float, **kw: float) -> InboundLink:
    return InboundLink(peer, group, since, kw.get("rtt"), kw.get("delivery"))


def test_eviction_takes_the_youngest_of_the_biggest_unprotected_group() -> None:
    honest = [_inbound(f"h{i}", f"ip4:{i}.0.0.0/16", float(i)) for i in range(4)]
    sybils = [_inbound(f"s{i}", "ip4:66.6.0.0/16", 10.0 + i) for i in range(20)]
    assert choose_eviction(honest + sybils, b"k") == "s19"
    # with every link protected, nobody is evicted (the newcomer is refused)
    assert choose_eviction(honest, b"k") is None


def test_each_protection_category_keeps_its_links() -> None:
    sybils = [_inbound(f"s{i:02}", "ip4:66.6.0.0/16", 100.0 + i) for i in range(30)]
    near = _inbound("near", "ip4:66.6.0.0/16", 200.0, rtt=0.001)
    useful = _inbound("useful", "ip4:66.6.0.0/16", 201.0, delivery=150.0)
    links = [*sybils, near, useful]
    evicted = set()
    for _ in range(20):  # evict one at a time, as newcomers arrive
        victim = choose_eviction(links, b"k")
        assert victim is not None
        evicted.add(victim)
        links = [link for link in links if link.peer != victim]
    assert "near" not in evicted and "useful" not in evicted
    assert "s00" not in evicted  # the oldest of its group
    assert evicted <= {s.peer for s in sybils}


def test_fresh_ids_cannot_lock_out_a_new_honest_node() -> None:
    """120 fresh peer ids from one network fill the inbound slots first; a
    new honest node from elsewhere still gets a link, by eviction."""
    m = LinkManager(ME, LinkLimits(max_inbound_per_group=1000), secret=b"k")
    for i in range(120):
        m.opened(f"sybil{i:03}", f"66.6.{i // 250}.{i % 250 + 1}", False, at(i * 0.01))
    assert len(m.links()) == LinkLimits().max_inbound
    outs = m.opened("honest", "80.1.2.3", False, at(5))
    assert verdict(outs) is None
    assert "honest" in m.links()
    assert any(isinstance(o, Close) and o.peer.startswith("sybil") for o in outs)


def test_idle_links_and_quiet_bare_connections_are_closed() -> None:
    m = LinkManager(ME)
    m.opened("talker", "10.0.0.1", False, at(0))
    m.opened("silent", "10.0.0.2", False, at(0))
    m.connected("bare", at(0))
    assert m.next_deadline() == UNLINKED_GRACE
    assert m.tick(at(UNLINKED_GRACE)) == [
        Close("bare", "a connection without a link, quiet", connection=True)
    ]
    m.heard("talker", at(IDLE_TIMEOUT - 1))
    outs = m.tick(at(IDLE_TIMEOUT))
    assert outs == [Close("silent", "idle", connection=True)]
    assert m.stats.idle_closed == 1 and m.stats.bare_closed == 1
    # a banned or refused peer's new connection is closed at once
    m.ban("evil", 5_000.0, at(IDLE_TIMEOUT))
    assert m.connected("evil", at(IDLE_TIMEOUT + 1)) == [Close("evil", "banned", True)]


def test_a_peer_that_closes_our_link_at_once_is_held_back_not_redialled_in_a_loop() -> None:
    """The other side refused the link (it is full, or backing off from us)
    and closed it as soon as it opened: that counts as a failed dial."""
    m = LinkManager(ME)
    assert m.set_bootstrap({"b1": "/ip4/10.0.0.1/tcp/1"}, at(0)) == [
        Dial("b1", "/ip4/10.0.0.1/tcp/1", True)
    ]
    assert verdict(m.opened("b1", "10.0.0.1", True, at(0.1))) is None
    assert m.closed("b1", at(0.2)) == []
    assert m.next_deadline() == 0.2 + BOOTSTRAP_RETRY
    assert m.tick(at(1)) == []
    assert m.tick(at(0.2 + BOOTSTRAP_RETRY)) == [Dial("b1", "/ip4/10.0.0.1/tcp/1", True)]
    # a learned peer likewise: not offered to the dialler again at once
    outs = m.offer_candidates([("c1", ("/ip4/80.1.1.1/tcp/1",))], at(10))
    assert outs == [Dial("c1", "/ip4/80.1.1.1/tcp/1", False)]
    assert verdict(m.opened("c1", "80.1.1.1", True, at(10.1))) is None
    assert m.closed("c1", at(10.1)) == []
    assert m.next_deadline() == 10.1 + LEARNED_RETRY
    # an inbound link that ends at once says nothing about our dials
    assert verdict(m.opened("d1", "90.1.1.1", False, at(20))) is None
    m.closed("d1", at(20))
    assert m.next_deadline() == 10.1 + LEARNED_RETRY
