"""The link manager: which links a node keeps, whom it dials and whom it
refuses (PROTOCOL.md §17.1, §17.2).  One machine, driven by the node and by
simnet alike (PROTOCOL.md §18).

It holds every decision about links that used to live in the node adapter:

* **admission** (``opened``): refused peers, peers in back-off after
  misbehaviour, the slot caps and per-network-group caps of
  ``links.policy``, and two links with one peer (both dialled at once: the
  one opened by the lower peer id stays);
* **the gate** (``allows``): whether a peer may use any SMU protocol at all
  (refused or banned peers may not), asked before a handler reads a byte;
* **dialling** (``tick``): bootstrap peers while they are not linked, and
  peers learned by exchange while outbound links are few, one per network
  group (``links.policy.dial_candidates``), each held back after a failed
  dial (and after a link we dialled that the other side closed at once);
* **bans** (``ban``): a misbehaving peer is closed and not linked again
  until its back-off ends, in either direction;
* **eviction** (``opened``): when the inbound slots are full, a newcomer
  takes the place of an unprotected link (``links.eviction``);
* **idle links and bare connections** (``tick``): a link that has been
  silent for ``idle_timeout``, and a connection that never became a link and
  has been quiet for ``unlinked_grace``, are closed.

It does no I/O: the adapter carries out ``Dial`` and ``Close`` and reports
back with ``opened``, ``closed`` and ``dial_failed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from protocol.core.machine import Now
from protocol.links.addresses import DEFAULT, Classifier
from protocol.links.eviction import InboundLink, choose_eviction
from protocol.links.policy import (
    UNKNOWN_GROUP,
    LinkInfo,
    LinkLimits,
    Verdict,
    admit,
    dial_candidates,
    multiaddr_host,
    network_group,
)

#: after a failed dial of a bootstrap peer, and of a learned peer
BOOTSTRAP_RETRY = 4.0
LEARNED_RETRY = 60.0
#: a link we dialled that ends this soon after it opened was most likely
#: refused by the other side (full, or backing off from us): it counts as a
#: failed dial, so a full peer is not redialled in a loop
REFUSED_WITHIN = 1.0
#: learned peers held as dial candidates (the replication machine holds
#: more; these are the newest it reported)
MAX_CANDIDATES = 1024
#: a link silent this long is closed (replication reconciles with some
#: peer every 30 s and peer exchange runs every 5 min, so honest links talk)
IDLE_TIMEOUT = 600.0
#: a connection with no link that has been quiet this long is closed
#: (request streams last seconds; a bare connection holds a socket for free)
UNLINKED_GRACE = 30.0
#: connections without a link tracked at once; beyond it the quietest is closed
MAX_UNLINKED = 256
#: a peer whose link was evicted cannot evict another for this long: evicted
#: honest peers that redial at once would otherwise push each other out
EVICTED_HOLD = 60.0


class Refusal(Enum):
    """Why a link or a stream was not admitted (PROTOCOL.md §17.2)."""

    REFUSED = "peer is on the refused list"
    BANNED = "backing off after misbehaviour"
    FULL = Verdict.FULL.value
    INBOUND_FULL = Verdict.INBOUND_FULL.value
    GROUP_FULL = Verdict.GROUP_FULL.value
    RELAYED_FULL = Verdict.RELAYED_FULL.value
    #: a link with this peer exists and the new one loses the tie-break
    DUPLICATE = "a link with this peer exists"
    SELF = "that is this node"


_OF_VERDICT = {
    Verdict.FULL: Refusal.FULL,
    Verdict.INBOUND_FULL: Refusal.INBOUND_FULL,
    Verdict.GROUP_FULL: Refusal.GROUP_FULL,
    Verdict.RELAYED_FULL: Refusal.RELAYED_FULL,
}


@dataclass(frozen=True, slots=True)
class Dial:
    """Dial ``peer`` at ``addr`` (a multiaddr without ``/p2p/``), then report
    ``opened`` or ``dial_failed``."""

    peer: str
    addr: str
    bootstrap: bool


@dataclass(frozen=True, slots=True)
class Close:
    """Close the link with ``peer``; with ``connection``, close the peer's
    connection too (a ban, a refusal, an eviction, a bare connection)."""

    peer: str
    reason: str
    connection: bool = False


@dataclass(frozen=True, slots=True)
class Admitted:
    peer: str
    outbound: bool
    #: for a relayed link, the relay's group (§17.4)
    group: str
    relayed: bool = False


@dataclass(frozen=True, slots=True)
class Rejected:
    peer: str
    refusal: Refusal


Output = Dial | Close | Admitted | Rejected


@dataclass(slots=True)
class _Link:
    outbound: bool
    host: str
    group: str
    since: float
    heard: float
    rtt: float | None = None
    last_delivery: float | None = None
    relayed: bool = False


@dataclass(slots=True)
class LinkStats:
    admitted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    dials: int = 0
    dial_failures: int = 0
    bans: int = 0
    evicted: int = 0
    idle_closed: int = 0
    bare_closed: int = 0
    #: connections of refused or banned peers closed as they opened
    refused_connections: int = 0


class LinkManager:
    def __init__(
        self,
        self_id: str,
        limits: LinkLimits | None = None,
        secret: bytes = b"",
        classifier: Classifier = DEFAULT,
    ) -> None:
        self.self_id = self_id
        self.limits = limits or LinkLimits()
        #: which addresses are global, for network groups (§17.5)
        self.classifier = classifier
        #: keys the choice of protected groups (random bytes in a node)
        self.secret = secret
        #: connections that are not links: peer -> when last heard
        self._unlinked: dict[str, float] = {}
        self._links: dict[str, _Link] = {}
        #: learned peers being dialled: peer -> group (count as outbound)
        self._dialing: dict[str, str] = {}
        #: bootstrap peers being dialled
        self._dialing_bootstrap: set[str] = set()
        self.refused: set[str] = set()
        #: misbehaviour back-off: no link either way until then
        self._banned: dict[str, float] = {}
        #: our last dial failed: we do not dial again until then
        self._redial_after: dict[str, float] = {}
        self._bootstrap: dict[str, str] = {}  # peer -> address
        self._candidates: dict[str, str] = {}  # learned peer -> first address
        self._groups: dict[str, str] = {}  # candidate address -> network group
        #: peers evicted lately: no eviction on their behalf until then
        self._evicted: dict[str, float] = {}
        self._now = 0.0
        self.stats = LinkStats()

    # -- queries ------------------------------------------------------------

    def links(self) -> dict[str, tuple[bool, str, str]]:
        """Peer -> (outbound, remote host, group), for status and tests."""
        return {p: (lk.outbound, lk.host, lk.group) for p, lk in self._links.items()}

    def relayed(self) -> set[str]:
        """Peers whose link runs through a relay."""
        return {p for p, lk in self._links.items() if lk.relayed}

    def is_linked(self, peer: str) -> bool:
        return peer in self._links

    def banned_until(self, peer: str) -> float | None:
        until = self._banned.get(peer)
        return until if until is not None and until > self._now else None

    def allows(self, peer: str, now: Now) -> Refusal | None:
        """The admission gate for every SMU protocol (§17.2): None if
        ``peer`` may be served, else why not.  Asked before reading a byte."""
        self._now = now.mono
        if peer in self.refused:
            return Refusal.REFUSED
        if self._banned.get(peer, float("-inf")) > now.mono:
            return Refusal.BANNED
        return None

    def next_deadline(self) -> float | None:
        # A bootstrap peer we may dial is due at once; the others when their
        # hold-back ends (no periodic wake-ups).
        deadlines = [*self._redial_after.values(), *self._banned.values()]
        if any(self._may_dial(p, self._now) for p in self._bootstrap):
            deadlines.append(self._now)
        if self._links:
            deadlines.append(min(lk.heard for lk in self._links.values()) + IDLE_TIMEOUT)
        if self._unlinked:
            deadlines.append(min(self._unlinked.values()) + UNLINKED_GRACE)
        return min(deadlines) if deadlines else None

    # -- what the adapter reports -------------------------------------------

    def set_bootstrap(self, peers: dict[str, str], now: Now) -> list[Output]:
        """The bootstrap list: peer id -> address (without ``/p2p/``)."""
        self._now = now.mono
        self._bootstrap = {p: a for p, a in peers.items() if p != self.self_id}
        return self.tick(now)

    def offer_candidates(self, peers: list[tuple[str, tuple[str, ...]]], now: Now) -> list[Output]:
        """Peers learned by exchange, oldest first (not verified: the dial
        authenticates them); the newest ``MAX_CANDIDATES`` are kept."""
        self._now = now.mono
        fresh: dict[str, str] = {}
        for peer, addrs in peers[-MAX_CANDIDATES:]:
            if addrs and peer != self.self_id and multiaddr_host(addrs[0]) is not None:
                fresh[peer] = addrs[0]
        self._candidates = fresh
        out: list[Output] = []
        self._dial_learned(now.mono, out)
        return out

    def opened(
        self, peer: str, host: str, outbound: bool, now: Now, relayed: bool = False
    ) -> list[Output]:
        """A connection with ``peer`` is about to become a link (its
        replication stream opened, §17.1).  The first output says whether
        it is ``Admitted`` or ``Rejected``; a ``Close`` of an older link with
        the same peer may follow.  For a link through a relay, ``host`` is
        the relay's address and ``relayed`` is set (§17.4)."""
        self._now = now.mono
        self._dialing.pop(peer, None)
        self._dialing_bootstrap.discard(peer)
        group = network_group(host, self.classifier) if host else UNKNOWN_GROUP
        refusal = self._refusal(peer, group, outbound, now.mono, relayed)
        evict: str | None = None
        if (
            refusal in (Refusal.FULL, Refusal.INBOUND_FULL)
            and not outbound
            and self.limits.evict
            and self._evicted.get(peer, float("-inf")) <= now.mono
        ):
            evict = self._eviction()
            if evict is not None:
                refusal = None
        if refusal is not None:
            self.stats.rejected[refusal.name] = self.stats.rejected.get(refusal.name, 0) + 1
            if outbound and refusal is not Refusal.DUPLICATE:
                self._hold_back(peer, now.mono)  # our own dial: do not repeat it at once
            return [Rejected(peer, refusal)]
        out: list[Output] = [Admitted(peer, outbound, group, relayed)]
        if peer in self._links:
            why = "moved to a direct connection" if self._links[peer].relayed else None
            out.append(Close(peer, why or "superseded by a simultaneous link"))
        if evict is not None:
            del self._links[evict]
            self._evicted[evict] = now.mono + EVICTED_HOLD
            self.stats.evicted += 1
            out.append(Close(evict, "gave way to a new link", connection=True))
        self._links[peer] = _Link(outbound, host, group, now.mono, now.mono, relayed=relayed)
        self._unlinked.pop(peer, None)
        self._redial_after.pop(peer, None)
        self.stats.admitted += 1
        return out

    def _refusal(
        self, peer: str, group: str, outbound: bool, now: float, relayed: bool = False
    ) -> Refusal | None:
        if peer == self.self_id:
            return Refusal.SELF
        if peer in self.refused:
            return Refusal.REFUSED
        if self._banned.get(peer, float("-inf")) > now:
            return Refusal.BANNED
        existing = self._links.get(peer)
        if existing is not None and existing.relayed and not relayed:
            # hole punching made a direct connection: a direct link opened by
            # the side that opened the relayed one replaces it (§17.4.4)
            return None if existing.outbound == outbound else Refusal.DUPLICATE
        if existing is not None:
            # Both sides dialled at once: keep the link the lower peer id
            # opened, so both ends keep the same one (§17.1).
            initiator = self.self_id if outbound else peer
            return None if initiator == min(self.self_id, peer) else Refusal.DUPLICATE
        verdict = admit(self._infos(), group, outbound, self.limits, relayed)
        return _OF_VERDICT.get(verdict)

    def _eviction(self) -> str | None:
        inbound = [
            InboundLink(peer, lk.group, lk.since, lk.rtt, lk.last_delivery)
            for peer, lk in self._links.items()
            if not lk.outbound
        ]
        return choose_eviction(inbound, self.secret) if inbound else None

    def closed(self, peer: str, now: Now) -> list[Output]:
        self._now = now.mono
        link = self._links.pop(peer, None)
        if link is not None and link.outbound and now.mono - link.since < REFUSED_WITHIN:
            self._hold_back(peer, now.mono)
        out: list[Output] = []
        self._dial_learned(now.mono, out)
        return out

    def dial_failed(self, peer: str, now: Now) -> list[Output]:
        """Our dial of ``peer`` failed: hold our own dials back (the peer may
        still connect to us)."""
        self._now = now.mono
        self.stats.dial_failures += 1
        self._dialing.pop(peer, None)
        self._dialing_bootstrap.discard(peer)
        if peer not in self._links:
            self._hold_back(peer, now.mono)
        return []

    def _hold_back(self, peer: str, t: float) -> None:
        retry = BOOTSTRAP_RETRY if peer in self._bootstrap else LEARNED_RETRY
        self._redial_after[peer] = t + retry

    def ban(self, peer: str, until: float, now: Now) -> list[Output]:
        """``peer`` misbehaved (any protocol): no link until ``until``, and
        its connection is closed."""
        self._now = now.mono
        self.stats.bans += 1
        self._banned[peer] = max(until, self._banned.get(peer, until))
        self._unlinked.pop(peer, None)
        return [Close(peer, "misbehaved", connection=True)]

    def refuse(self, peer: str, now: Now) -> list[Output]:
        self._now = now.mono
        self.refused.add(peer)
        self._unlinked.pop(peer, None)
        return [Close(peer, "refused", connection=True)]

    # -- what the connection reports -------------------------------------------

    def connected(self, peer: str, now: Now) -> list[Output]:
        """A libp2p connection with ``peer`` opened (either direction)."""
        self._now = now.mono
        if peer in self.refused or self._banned.get(peer, float("-inf")) > now.mono:
            self.stats.refused_connections += 1
            return [Close(peer, "refused" if peer in self.refused else "banned", True)]
        if peer not in self._links:
            self._unlinked[peer] = now.mono
            if len(self._unlinked) > MAX_UNLINKED:
                quietest = min(self._unlinked, key=lambda q: (self._unlinked[q], q))
                del self._unlinked[quietest]
                self.stats.bare_closed += 1
                return [Close(quietest, "too many connections without a link", True)]
        return []

    def disconnected(self, peer: str, now: Now) -> list[Output]:
        self._now = now.mono
        self._unlinked.pop(peer, None)
        return []

    def heard(self, peer: str, now: Now) -> list[Output]:
        """Something arrived from ``peer`` (a frame, an admitted stream)."""
        self._now = now.mono
        link = self._links.get(peer)
        if link is not None:
            link.heard = now.mono
        elif peer in self._unlinked:
            self._unlinked[peer] = now.mono
        return []

    def delivered_first(self, peer: str, now: Now) -> list[Output]:
        """``peer`` delivered an event we did not have (useful work)."""
        self._now = now.mono
        link = self._links.get(peer)
        if link is not None:
            link.last_delivery = now.mono
        return []

    def round_trip(self, peer: str, seconds: float, now: Now) -> list[Output]:
        """A request to ``peer`` was answered after ``seconds``."""
        self._now = now.mono
        link = self._links.get(peer)
        if link is not None:
            # a moving average: one slow answer does not undo a near peer
            link.rtt = seconds if link.rtt is None else 0.75 * link.rtt + 0.25 * seconds
        return []

    def unrefuse(self, peer: str, now: Now) -> list[Output]:
        self._now = now.mono
        self.refused.discard(peer)
        return self.tick(now)

    def user_dial(self, peer: str, now: Now) -> None:
        """The user asked for this peer (``smu peers connect``): forget our
        own hold-back; a misbehaviour ban still applies."""
        self._now = now.mono
        self._redial_after.pop(peer, None)

    # -- the timer -------------------------------------------------------------

    def tick(self, now: Now) -> list[Output]:
        t = self._now = now.mono
        for table in (self._banned, self._redial_after, self._evicted):
            for peer in [p for p, until in table.items() if until <= t]:
                del table[peer]
        out: list[Output] = []
        for peer, link in sorted(self._links.items()):
            if t >= link.heard + IDLE_TIMEOUT:
                self.stats.idle_closed += 1
                link.heard = t  # closing: do not close again before it is gone
                out.append(Close(peer, "idle", connection=True))
        for peer, heard in sorted(self._unlinked.items()):
            if t >= heard + UNLINKED_GRACE:
                del self._unlinked[peer]
                self.stats.bare_closed += 1
                out.append(Close(peer, "a connection without a link, quiet", connection=True))
        for peer, addr in sorted(self._bootstrap.items()):
            if self._may_dial(peer, t):
                self._dialing_bootstrap.add(peer)
                self.stats.dials += 1
                out.append(Dial(peer, addr, True))
        self._dial_learned(t, out)
        return out

    def _may_dial(self, peer: str, t: float) -> bool:
        return not (
            peer in self._links
            or peer in self._dialing
            or peer in self._dialing_bootstrap
            or peer in self.refused
            or peer == self.self_id
            or self._banned.get(peer, float("-inf")) > t
            or self._redial_after.get(peer, float("-inf")) > t
        )

    def _infos(self) -> list[LinkInfo]:
        links = [LinkInfo(lk.outbound, lk.group, lk.relayed) for lk in self._links.values()]
        return links + [LinkInfo(True, group) for group in self._dialing.values()]

    def _group_of(self, addr: str) -> str | None:
        """A candidate address's network group, remembered (parsing an IP
        address for every candidate on every PEERS frame adds up)."""
        group = self._groups.get(addr)
        if group is None:
            host = multiaddr_host(addr)
            if host is None:
                return None
            group = network_group(host, self.classifier)
            if len(self._groups) >= 4 * MAX_CANDIDATES:
                self._groups.clear()
            self._groups[addr] = group
        return group

    def _dial_learned(self, t: float, out: list[Output]) -> None:
        """Peer exchange (§11.8): learned peers while outbound links are few,
        in networks not linked yet (§11.5.3)."""
        candidates: list[tuple[str, str]] = []
        for peer, addr in self._candidates.items():
            # a bootstrap peer is dialled at its own address by the bootstrap
            # loop: a learned dial of it (perhaps to an address that hangs)
            # would hold that loop back until it failed
            if peer in self._bootstrap or not self._may_dial(peer, t):
                continue
            # a circuit address starts with its relay's: the relay's group
            group = self._group_of(addr)
            if group is not None:
                candidates.append((peer, group))
        groups = dict(candidates)
        for peer in dial_candidates(self._infos(), candidates, self.limits):
            self._dialing[peer] = groups[peer]
            self.stats.dials += 1
            out.append(Dial(peer, self._candidates[peer], False))
