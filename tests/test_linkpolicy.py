"""Bounded, diverse links (PROTOCOL.md §11.5.3, protocol/links/policy.py)."""

from __future__ import annotations

import pytest

from protocol.links.policy import (
    EXEMPT,
    LinkInfo,
    LinkLimits,
    Verdict,
    addresses_at,
    admit,
    dial_candidates,
    multiaddr_host,
    network_group,
)

LIMITS = LinkLimits()


@pytest.mark.parametrize(
    "a,b,same",
    [
        ("45.33.113.5", "45.33.200.9", True),  # one IPv4 /16
        ("45.33.113.5", "45.34.113.5", False),
        ("2a00:1450:1::1", "2a00:1450:ffff::2", True),  # one IPv6 /32
        ("2a00:1450::1", "2a00:1451::1", False),
        ("::ffff:45.33.113.5", "45.33.1.1", True),  # v4-mapped is its v4 address
        ("seed.example.org", "n7.evil.example", True),  # names: one group
        ("seed.example.org", "45.33.1.1", False),
    ],
)
def test_network_groups(a: str, b: str, same: bool) -> None:
    assert (network_group(a) == network_group(b)) is same
    assert network_group(a) != EXEMPT


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "::1", "10.1.2.3", "192.168.0.7", "172.16.5.4", "fe80::1", "fd00::1", "0.0.0.0"],
)
def test_local_addresses_are_exempt(host: str) -> None:
    assert network_group(host) == EXEMPT


def test_multiaddr_host() -> None:
    assert multiaddr_host("/ip4/203.0.113.5/tcp/4001") == "203.0.113.5"
    assert multiaddr_host("/ip6/2001:db8::1/tcp/4001") == "2001:db8::1"
    assert multiaddr_host("/dns4/seed.example.org/tcp/4001") == "seed.example.org"
    assert multiaddr_host("/unix/tmp/x") is None
    assert multiaddr_host("garbage") is None


def test_a_peer_vouches_only_for_addresses_where_it_connects_from() -> None:
    claimed = ["/ip4/45.33.1.2/tcp/4001", "/ip4/80.1.2.3/tcp/4001", "/ip6/::1/tcp/9"]
    assert addresses_at(claimed, "45.33.1.2") == ["/ip4/45.33.1.2/tcp/4001"]
    assert addresses_at(claimed, "45.33.1.3") == []  # same network is not enough
    assert addresses_at(claimed, "") == []


def _inbound(groups: list[str]) -> list[LinkInfo]:
    return [LinkInfo(False, g) for g in groups]


def test_inbound_links_are_capped_per_group_and_in_all() -> None:
    same = _inbound(["ip4:198.51.0.0/16"] * 4)
    assert admit(same, "ip4:198.51.0.0/16", False, LIMITS) is Verdict.GROUP_FULL
    assert admit(same, "ip4:203.0.0.0/16", False, LIMITS) is Verdict.ACCEPT
    # exempt (local) addresses are limited by the slots only
    assert admit(_inbound([EXEMPT] * 10), EXEMPT, False, LIMITS) is Verdict.ACCEPT
    spread = _inbound([f"ip4:10.{i}.0.0/16" for i in range(LIMITS.max_inbound)])
    assert admit(spread, "ip4:203.0.0.0/16", False, LIMITS) is Verdict.INBOUND_FULL
    # ... while the node's own dials still find a slot
    assert admit(spread, "ip4:203.0.0.0/16", True, LIMITS) is Verdict.ACCEPT
    full = spread + [LinkInfo(True, EXEMPT)] * (LIMITS.max_links - LIMITS.max_inbound)
    assert admit(full, "ip4:203.0.0.0/16", True, LIMITS) is Verdict.FULL


def test_an_attacker_in_a_few_networks_cannot_take_every_slot() -> None:
    """Eclipse attempt: 100 inbound connections from addresses in two /16s.
    At most 2 x 4 are kept, and every outbound slot stays free."""
    links: list[LinkInfo] = []
    for i in range(100):
        group = network_group(f"45.{i % 2}.7.{i}")
        if admit(links, group, False, LIMITS) is Verdict.ACCEPT:
            links.append(LinkInfo(False, group))
    assert len(links) == 2 * LIMITS.max_inbound_per_group
    honest = [(f"peer{i}", network_group(f"80.{i}.0.1")) for i in range(20)]
    chosen = dial_candidates(links, honest, LIMITS)
    assert len(chosen) == LIMITS.outbound_target


def test_dials_spread_over_networks_unlinked_ones_first() -> None:
    links = [LinkInfo(True, "ip4:1.1.0.0/16"), LinkInfo(False, "ip4:2.2.0.0/16")]
    candidates = [
        ("a", "ip4:1.1.0.0/16"),  # we already chose a peer in that network
        ("b", "ip4:2.2.0.0/16"),  # linked, but only inbound: allowed, after fresh ones
        ("c", "ip4:3.3.0.0/16"),
        ("d", "ip4:3.3.0.0/16"),  # one per network per round
        ("e", EXEMPT),
        ("f", EXEMPT),  # local peers: any number
        ("g", "ip4:4.4.0.0/16"),
    ]
    assert dial_candidates(links, candidates, LIMITS) == ["c", "e", "f", "g", "b"]
    small = LinkLimits(outbound_target=3)
    assert dial_candidates(links, candidates, small) == ["c", "e"]
    at_target = [LinkInfo(True, f"ip4:9.{i}.0.0/16") for i in range(LIMITS.outbound_target)]
    assert dial_candidates(at_target, candidates, LIMITS) == []


def test_many_names_pointing_anywhere_get_one_dial() -> None:
    """A thousand DNS names can point at one host: learned names share one
    group, so they cannot fill the outbound slots."""
    names = [(f"peer{i}", network_group(f"n{i}.evil.example")) for i in range(20)]
    honest = [(f"honest{i}", network_group(f"80.{i}.0.1")) for i in range(3)]
    chosen = dial_candidates([], names + honest, LIMITS)
    assert chosen == ["peer0", "honest0", "honest1", "honest2"]
