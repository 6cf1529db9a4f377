"""Which links a node keeps: bounded, and diverse (PROTOCOL.md §11.5.3).

An attacker who wants to eclipse a node (be all of its peers) finds
addresses cheap to get in bulk from one provider, and connecting in costs
nothing.  So, as in Bitcoin's address groups:

* addresses are grouped by network: an IPv4 /16, an IPv6 /32; all DNS
  names form one group;
* inbound links are capped, so that slots stay free for links the node
  chooses itself, and capped per group;
* the node dials peers it learned only in groups where it has no outbound
  link yet, so its own choices span different networks.

Addresses that are not global (loopback, private, link-local) are exempt:
on one machine or a LAN every peer shares a group, and an attacker there
is already inside.  (Which addresses are global is ``links.addresses``'
classifier; the NAT lab's classifier treats its shared-space prefixes as
global.)

A link through a circuit relay (PROTOCOL.md §17.4) counts in the *relay's*
group, under caps of its own: a relay operator could otherwise bring any
number of links that look diverse (each peer id behind it is free), and a
node behind NAT, whose every inbound link is relayed, would otherwise be
held to the per-group cap of one or two relays' groups.
Links the node opens itself (the bootstrap list, ``smu peers connect``,
peers chosen here) need only a free slot.

Pure: the adapter asks ``admit`` and ``dial_candidates`` and keeps the
links; nothing here does I/O.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from protocol.links.addresses import DEFAULT, Classifier, Scope

#: a link's group when the address is exempt from the group limits
EXEMPT = ""
#: every DNS name: a name says nothing about the network it points into
#: (a thousand names can point at one host), so together they are one group
DNS_GROUP = "dns"
#: a connection whose remote address the transport did not tell
UNKNOWN_GROUP = "unknown"


def network_group(host: str, classifier: Classifier = DEFAULT) -> str:
    """The group of a host (IP address in text, or a DNS name)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return DNS_GROUP
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if classifier.scope_of_ip(ip) is not Scope.PUBLIC:  # loopback, private, ...
        return EXEMPT
    prefix = 16 if ip.version == 4 else 32
    net = ipaddress.ip_network(f"{ip}/{prefix}", strict=False)
    return f"ip{ip.version}:{net}"


def multiaddr_host(addr: str) -> str | None:
    """The host of a text multiaddr (``/ip4/1.2.3.4/tcp/1``), if it names one."""
    parts = addr.split("/")
    if len(parts) >= 3 and parts[0] == "" and parts[1] in ("ip4", "ip6", "dns", "dns4", "dns6"):
        return parts[2]
    return None


def addresses_at(addrs: Iterable[str], remote_host: str) -> list[str]:
    """Of the addresses a peer claims for itself, those at the host its
    connection comes from: all it may vouch for (PROTOCOL.md §11.8.1)."""
    return [a for a in addrs if remote_host and multiaddr_host(a) == remote_host]


@dataclass(frozen=True, slots=True)
class LinkLimits:
    max_links: int = 32
    #: inbound links; the rest stay free for links this node chooses
    max_inbound: int = 24
    max_inbound_per_group: int = 4
    #: peers learned by exchange are dialled while outbound links are fewer
    outbound_target: int = 8
    #: inbound links through relays, in all and per relay group: enough for
    #: a node behind NAT (all its inbound links are relayed, through two
    #: or three relays), few enough that one relay operator's free peer ids
    #: cannot take a node's inbound slots (§17.4)
    max_inbound_relayed: int = 12
    max_relayed_per_group: int = 6
    #: a newcomer may take the place of an unprotected inbound link when the
    #: slots are full (PROTOCOL.md §17.1.1); off only to measure without it
    evict: bool = True


@dataclass(frozen=True, slots=True)
class LinkInfo:
    outbound: bool
    #: for a relayed link, the relay's group
    group: str
    relayed: bool = False


class Verdict(Enum):
    ACCEPT = "accepted"
    FULL = "all link slots are taken"
    INBOUND_FULL = "inbound slots are taken"
    GROUP_FULL = "too many inbound links from that network"
    RELAYED_FULL = "too many inbound links through relays"


def admit(
    links: Iterable[LinkInfo],
    group: str,
    outbound: bool,
    limits: LinkLimits,
    relayed: bool = False,
) -> Verdict:
    """May a new link in ``group`` be kept?  Links this node opened (its
    choice or the user's) need only a free slot.  A relayed inbound link
    (``group`` is its relay's) is held to the relayed caps instead of the
    per-group cap of direct links."""
    current = list(links)
    if len(current) >= limits.max_links:
        return Verdict.FULL
    if outbound:
        return Verdict.ACCEPT
    inbound = [link for link in current if not link.outbound]
    if len(inbound) >= limits.max_inbound:
        return Verdict.INBOUND_FULL
    if relayed:
        through = [link for link in inbound if link.relayed]
        if len(through) >= limits.max_inbound_relayed:
            return Verdict.RELAYED_FULL
        if sum(link.group == group for link in through) >= limits.max_relayed_per_group:
            return Verdict.RELAYED_FULL
        return Verdict.ACCEPT
    same_group = sum(link.group == group and not link.relayed for link in inbound)
    if group != EXEMPT and same_group >= limits.max_inbound_per_group:
        return Verdict.GROUP_FULL
    return Verdict.ACCEPT


def dial_candidates(
    links: Iterable[LinkInfo], candidates: Iterable[tuple[str, str]], limits: LinkLimits
) -> list[str]:
    """Of learned ``(peer, group)`` candidates, oldest first, the peers to
    dial now: while outbound links are under target, one per group with no
    outbound link yet (exempt groups: any number), groups with no link at
    all first."""
    current = list(links)
    outbound = [link for link in current if link.outbound]
    room = min(limits.outbound_target - len(outbound), limits.max_links - len(current))
    if room <= 0:
        return []
    linked_out = {link.group for link in outbound}
    linked_any = Counter(link.group for link in current)
    fresh: list[str] = []
    known: list[str] = []
    chosen_groups: set[str] = set()
    for peer, group in candidates:
        if group != EXEMPT and (group in linked_out or group in chosen_groups):
            continue
        chosen_groups.add(group)
        (known if group != EXEMPT and linked_any[group] else fresh).append(peer)
    return (fresh + known)[:room]
