"""Address hygiene (PROTOCOL.md §17.5): what an address is, whom a node may
tell it to, and whether a node may dial an address it was told.

Three rules, each a pure function here so that simnet and the tests check
the same code the node runs:

* **Classify.**  An IP address is *loopback*, *private* (RFC 1918, shared
  address space 100.64/10, link-local, unique-local IPv6), *public* (global)
  or *unusable* (unspecified, multicast, documentation, reserved).  A
  ``/p2p-circuit`` address is a *relay* address; a DNS name is a *name*.
* **Advertise** (``usable_by``): a peer is told only addresses it can use:
  public, relay and name addresses to everyone; a private address only to a
  peer whose connection comes from the same private network (a network of
  one of our own interfaces that holds both); loopback only to a peer on
  loopback.
* **Dial** (``may_dial``): a learned public address may be dialled; a
  learned private address only if it lies in a network of one of our own
  interfaces *and* the peer that told it is in that network too (or the
  user or the bootstrap list gave it); loopback only if told over loopback
  (or by the user).  So a node outside a network can never make us send a
  SYN into it, and a node on the internet cannot make us scan our LAN.
  ``guard`` is the last check before a socket is opened, after any DNS
  resolution: it refuses unusable destinations and private ones that no
  interface of ours reaches.

**The lab classifier.**  The NAT lab (``tests/lab/netlab.py``) has no real
internet, so its "public" segment uses the shared address space 100.64/10,
which is not global.  ``Classifier.lab(...)`` treats named prefixes inside
100.64/10 as public; it is accepted only on a test network and only from
an explicit file (``lab_classifier``), so it cannot be switched on by
accident, and never on the main network.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from protocol.core.errors import UsageError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: the only range lab prefixes may come from: shared address space (RFC
#: 6598), never routed on the internet, so a lab file cannot make a real
#: private network or a real public one look like something else
LAB_RANGE = ipaddress.IPv4Network("100.64.0.0/10")
#: the main network never takes a lab classifier
MAIN_NETWORK_ID = "smu-main"
#: at most this many prefixes in a lab file
MAX_LAB_PREFIXES = 64


class LabConfigError(UsageError):
    """A lab classifier file that may not be used (wrong network, bad prefix)."""


class Scope(Enum):
    LOOPBACK = "loopback"
    PRIVATE = "private"
    PUBLIC = "public"
    RELAY = "relay"
    NAME = "name"
    UNUSABLE = "unusable"


def parse_ip(host: str) -> IPAddress | None:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


#: networks a node may share with its neighbours: RFC 1918, shared space
#: (RFC 6598), link-local, unique-local IPv6
PRIVATE_NETS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "169.254.0.0/16",
        "fc00::/7",
        "fe80::/10",
    )
)


def _private(ip: IPAddress) -> bool:
    return any(ip in net for net in PRIVATE_NETS)


@dataclass(frozen=True, slots=True)
class Classifier:
    """Classifies IP addresses; ``lab_public`` are lab prefixes treated as
    public (build one with ``lab_classifier``, never by hand in a node)."""

    lab_public: tuple[IPNetwork, ...] = ()

    def scope_of_ip(self, ip: IPAddress) -> Scope:
        if any(ip in net for net in self.lab_public):
            return Scope.PUBLIC
        if ip.is_loopback:
            return Scope.LOOPBACK
        if ip.is_unspecified or ip.is_multicast:
            return Scope.UNUSABLE
        if _private(ip):
            return Scope.PRIVATE
        if ip.is_global:
            return Scope.PUBLIC
        return Scope.UNUSABLE  # documentation, benchmarking, reserved

    def scope_of_host(self, host: str) -> Scope:
        ip = parse_ip(host)
        return Scope.NAME if ip is None else self.scope_of_ip(ip)

    def scope(self, addr: str) -> Scope:
        """The scope of a text multiaddr."""
        if "/p2p-circuit" in addr:
            return Scope.RELAY
        host = addr_host(addr)
        if host is None:
            return Scope.UNUSABLE
        parts = addr.split("/")
        if parts[1].startswith("dns"):
            return Scope.NAME
        return self.scope_of_host(host)

    def is_public(self, host: str) -> bool:
        return self.scope_of_host(host) is Scope.PUBLIC


#: the classifier of every real node
DEFAULT = Classifier()


def lab_classifier(network_id: str, text: str) -> Classifier:
    """A classifier from a lab file: one prefix per line (``#`` comments),
    each inside 100.64/10.  Refused on the main network (``LabConfigError``)."""
    if network_id == MAIN_NETWORK_ID:
        raise LabConfigError("a lab classifier is never accepted on the main network")
    nets: list[IPNetwork] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            net = ipaddress.ip_network(line, strict=True)
        except ValueError as exc:
            raise LabConfigError(f"not a prefix: {line!r}") from exc
        if not isinstance(net, ipaddress.IPv4Network) or not net.subnet_of(LAB_RANGE):
            raise LabConfigError(f"lab prefixes must lie inside {LAB_RANGE}: {line}")
        nets.append(net)
    if not nets:
        raise LabConfigError("the lab file names no prefix")
    if len(nets) > MAX_LAB_PREFIXES:
        raise LabConfigError(f"at most {MAX_LAB_PREFIXES} lab prefixes")
    return Classifier(tuple(nets))


def addr_host(addr: str) -> str | None:
    """The host of a text multiaddr (``/ip4/1.2.3.4/tcp/1``), if it names one."""
    parts = addr.split("/")
    if len(parts) >= 3 and parts[0] == "" and parts[1] in ("ip4", "ip6", "dns", "dns4", "dns6"):
        return parts[2]
    return None


def _same_network(a: IPAddress, b: IPAddress, own: Sequence[IPNetwork]) -> bool:
    return any(a in net and b in net for net in own)


def usable_by(
    addr: str, viewer_host: str, own: Sequence[IPNetwork], classifier: Classifier = DEFAULT
) -> bool:
    """May ``addr`` (one of ours) be told to a peer whose connection comes
    from ``viewer_host``?"""
    scope = classifier.scope(addr)
    if scope in (Scope.PUBLIC, Scope.RELAY, Scope.NAME):
        return True
    viewer = parse_ip(viewer_host)
    if viewer is None:
        return False
    if scope is Scope.LOOPBACK:
        return viewer.is_loopback
    if scope is Scope.PRIVATE:
        ip = parse_ip(addr_host(addr) or "")
        return (
            ip is not None
            and classifier.scope_of_ip(viewer) is Scope.PRIVATE
            and _same_network(ip, viewer, own)
        )
    return False


def advertise_to(
    addrs: Iterable[str],
    viewer_host: str,
    own: Sequence[IPNetwork],
    classifier: Classifier = DEFAULT,
) -> list[str]:
    return [a for a in addrs if usable_by(a, viewer_host, own, classifier)]


def may_dial(
    addr: str,
    source_host: str | None,
    own: Sequence[IPNetwork],
    classifier: Classifier = DEFAULT,
) -> bool:
    """May we dial ``addr``, told by a peer whose connection comes from
    ``source_host`` (None: the user or the bootstrap list told it)?"""
    scope = classifier.scope(addr)
    if scope in (Scope.PUBLIC, Scope.RELAY):
        return True
    if scope is Scope.NAME:
        return True  # checked by ``guard`` once resolved
    ip = parse_ip(addr_host(addr) or "")
    if ip is None or scope is Scope.UNUSABLE:
        return False
    source = None if source_host is None else parse_ip(source_host)
    if source_host is not None and source is None:
        return False  # a peer behind a name vouches for no private address
    if scope is Scope.LOOPBACK:
        return source is None or source.is_loopback
    # private: only into a network we are in, told from inside it
    if not any(ip in net for net in own):
        return False
    return source is None or _same_network(ip, source, own)


def guard(ip: IPAddress, own: Sequence[IPNetwork], classifier: Classifier = DEFAULT) -> bool:
    """The last check before a socket opens to ``ip`` (after DNS): never an
    unusable destination, never a private one no interface of ours reaches."""
    scope = classifier.scope_of_ip(ip)
    if scope in (Scope.PUBLIC, Scope.LOOPBACK):
        return True
    if scope is Scope.PRIVATE:
        return any(ip in net for net in own)
    return False
