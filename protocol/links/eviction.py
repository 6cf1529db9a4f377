"""Which inbound link gives way to a newcomer when every slot is taken
(PROTOCOL.md §17.1.1).

Refusing every newcomer once the inbound slots are full lets an attacker
lock a node out of the network with a few hundred free peer ids that
connect first and stay.  Evicting at random lets it push honest links out.
So, as Bitcoin Core does: a few links of each kind that is hard to fake are
protected, and the newcomer takes the place of the youngest link of the
network group that holds most of what is left:

* the longest-lived link of a few network groups, the groups chosen by a
  hash keyed with this node's secret (an attacker cannot tell which of its
  groups would be protected);
* the links with the lowest round-trip times (an attacker far away cannot
  fake being near);
* the links that most recently delivered an event first (useful work;
  a score earned cheaply by flooding duplicates is not);
* half of what is left, the longest-lived.

Pure: the link manager asks ``choose_eviction`` and closes what it names.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

#: links protected in each category
PROTECT_GROUPS = 4
PROTECT_LATENCY = 4
PROTECT_DELIVERY = 4


@dataclass(frozen=True, slots=True)
class InboundLink:
    peer: str
    group: str
    since: float
    #: seconds, or None if never measured
    rtt: float | None
    #: when it last delivered an event first, or None
    last_delivery: float | None


def choose_eviction(links: Sequence[InboundLink], secret: bytes) -> str | None:
    """The peer whose inbound link should give way, or None if every link
    is protected (the newcomer is then refused)."""
    left = sorted(links, key=lambda link: (link.since, link.peer))
    protected: set[str] = set()

    def protect(chosen: Sequence[InboundLink]) -> None:
        protected.update(link.peer for link in chosen)

    def remaining() -> list[InboundLink]:
        return [link for link in left if link.peer not in protected]

    # the longest-lived link (``left`` is oldest first) of a few keyed-hash groups
    oldest_of: dict[str, InboundLink] = {}
    for link in left:
        oldest_of.setdefault(link.group, link)
    keyed = sorted(oldest_of, key=lambda g: hashlib.blake2b(secret + g.encode()).digest())
    protect([oldest_of[g] for g in keyed[:PROTECT_GROUPS]])
    measured = [link for link in remaining() if link.rtt is not None]
    protect(sorted(measured, key=lambda link: (link.rtt, link.peer))[:PROTECT_LATENCY])
    useful = [link for link in remaining() if link.last_delivery is not None]
    protect(sorted(useful, key=lambda link: -(link.last_delivery or 0.0))[:PROTECT_DELIVERY])
    rest = remaining()
    protect(rest[: len(rest) // 2])  # the longer-lived half
    candidates = remaining()
    if not candidates:
        return None
    by_group = Counter(link.group for link in candidates)
    biggest = max(by_group.values())
    # the youngest link of the biggest group (ties: the group of the youngest)
    youngest = max(
        (link for link in candidates if by_group[link.group] == biggest),
        key=lambda link: (link.since, link.peer),
    )
    return youngest.peer
