"""Reachability behind NAT (PROTOCOL.md §17.4): is this node reachable from
outside, what it advertises, and which relays it holds slots at.  Two
sans-I/O machines under the contract of §18, driven by the node and by
simnet alike.

``Reachability`` (the asking side):

* **Candidates.**  Addresses this node might be reached at: its own
  listen addresses of public scope (``set_listen``) and, for each peer that
  reports how it sees us (``observed``), that IP with our listen port.
  Candidates are *never* advertised on a peer's word: a peer that lies
  about our address can at most make us probe it (§17.4.2).
* **Probes.**  ``Probe(peer, nonce, port)`` asks a peer to dial us back at
  ``port`` of the IP our connection to it comes from, from a fresh
  connection, presenting ``nonce``.  The asked peer answers where it dialled
  (``probe_answered``); the dial-back itself arrives on our listener
  (``dialled_back``).  Only a dial-back with a nonce we issued confirms the
  address the answer names, and only if that address has the port we
  asked for; an answer without a dial-back, a refusal or silence counts
  against reachability from that peer's network group.
* **Verdict.**  ``PUBLIC`` once an address has confirmations from
  ``min_groups`` distinct non-exempt network groups, one of them not our
  own; ``PRIVATE`` once failures from ``min_groups`` groups stand and no
  confirmation does; else ``UNKNOWN``.  Each confirmation and failure
  expires after ``verdict_ttl``, so the verdict follows a changing network.
* **Relays.**  While ``PRIVATE``, the node holds slots at ``want_relays``
  relays in distinct network groups, the first of them a bootstrap peer or
  a long-known peer with a non-negative score, asks to renew each before
  it expires, and drops (and shuns for ``relay_shun``) a relay whose
  reservations or circuits keep failing.
* **Output.**  ``Advertise(reachability, addrs, relays)`` whenever what to
  advertise changes: confirmed public addresses and relay peer ids, which
  go into the device record v2 (``relays``) and peer exchange.

``ProbeServer`` (the asked side) bounds what probes cost: one probe per
peer in flight and a token bucket per peer, per network group and in
total; it dials only the IP the asker's connection comes from (so it can
never be pointed at a third party, nor into a private network the asker is
not in) and never for a relayed connection.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from protocol.core.machine import Now
from protocol.links.addresses import DEFAULT, Classifier, Scope, addr_host, parse_ip
from protocol.links.policy import EXEMPT, network_group
from protocol.links.reach_wire import NONCE_BYTES


class Reach(Enum):
    UNKNOWN = "unknown"
    PUBLIC = "public"
    PRIVATE = "private"


@dataclass(frozen=True, slots=True)
class ReachConfig:
    #: distinct network groups that must agree (one not our own)
    min_groups: int = 2
    #: a confirmation or failure counts this long (s)
    verdict_ttl: float = 1800.0
    #: a peer is asked again no sooner than this (s)
    probe_interval: float = 300.0
    #: probes in flight at once
    max_probes: int = 3
    #: an unanswered probe counts as failed after this (s)
    probe_timeout: float = 20.0
    #: relays held while private, and at most
    want_relays: int = 2
    max_relays: int = 4
    #: a peer known this long (s) with a score >= 0 may be the first relay
    long_known: float = 600.0
    #: ask to renew a reservation this long (s) before it expires
    renew_before: float = 120.0
    #: a relay with at least this many failures, more failures than
    #: successes, is dropped and shunned
    relay_failures: int = 3
    relay_shun: float = 1800.0
    #: a relay that refused a first reservation is asked again after this,
    #: doubling with each refusal up to ``relay_shun`` (it may not know our
    #: device record yet)
    relay_retry: float = 30.0
    #: a reservation asked for and not reported within this (s) failed
    reserve_timeout: float = 30.0
    #: observed addresses kept (one per observing peer, newest first)
    max_observations: int = 64


@dataclass(frozen=True, slots=True)
class PeerView:
    """A connected peer, as the adapter sees it."""

    peer: str
    #: its network group (``policy.network_group`` of its remote host)
    group: str
    bootstrap: bool
    #: seconds since we first linked with it
    known_for: float
    score: float
    #: it offers circuit relay (hop) and we reach it directly
    can_relay: bool
    #: our connection to it runs through a relay (it cannot probe us)
    relayed: bool = False


@dataclass(frozen=True, slots=True)
class Probe:
    """Ask ``peer`` to dial us back at ``port`` with ``nonce`` (§17.4.1)."""

    peer: str
    nonce: bytes
    port: int


@dataclass(frozen=True, slots=True)
class Reserve:
    """Reserve (or renew) a slot at relay ``peer``; report ``reserved`` or
    ``reservation_failed``."""

    peer: str


@dataclass(frozen=True, slots=True)
class Release:
    """Stop using relay ``peer`` (its slot lapses)."""

    peer: str
    reason: str


@dataclass(frozen=True, slots=True)
class Advertise:
    """What to advertise changed."""

    reachability: Reach
    addrs: tuple[str, ...]
    relays: tuple[str, ...]


ReachOutput = Probe | Reserve | Release | Advertise


@dataclass(slots=True)
class _Pending:
    peer: str
    group: str
    port: int
    sent: float
    dialled_back: bool = False


@dataclass(slots=True)
class _Relay:
    peer: str
    group: str
    expires: float | None = None
    asked: float | None = None
    failures: int = 0
    successes: int = 0


@dataclass(slots=True)
class ReachStats:
    probes: int = 0
    confirmed: int = 0
    failed: int = 0
    refused: int = 0
    reservations: int = 0
    reservation_failures: int = 0
    relays_dropped: int = 0
    stray_dial_backs: int = 0


@dataclass(slots=True)
class _Evidence:
    #: addr -> group -> when confirmed
    ok: dict[str, dict[str, float]] = field(default_factory=dict)
    #: group -> when it failed to reach us
    failed: dict[str, float] = field(default_factory=dict)


class Reachability:
    def __init__(
        self,
        rng: random.Random,
        config: ReachConfig | None = None,
        classifier: Classifier = DEFAULT,
        own_group: str = EXEMPT,
    ) -> None:
        self.config = config or ReachConfig()
        self.classifier = classifier
        self._rng = rng
        #: the group our own public candidates are in, once known
        self.own_group = own_group
        self._ports: tuple[int, ...] = ()
        self._listen_public: tuple[str, ...] = ()
        #: observing peer -> the IP it says it sees us at
        self._observed: dict[str, str] = {}
        self._peers: dict[str, PeerView] = {}
        self._asked: dict[str, float] = {}  # peer -> when last probed
        self._pending: dict[bytes, _Pending] = {}
        self._evidence = _Evidence()
        #: group -> the address its peer last said it dialled (a claim)
        self._seen_at: dict[str, str] = {}
        self._relays: dict[str, _Relay] = {}
        self._shunned: dict[str, float] = {}
        #: relay -> refusals in a row (for the retry back-off)
        self._strikes: dict[str, int] = {}
        self._advertised: Advertise | None = None
        self._now = 0.0
        self.stats = ReachStats()

    # -- queries -------------------------------------------------------------

    @property
    def verdict(self) -> Reach:
        return self._verdict(self._now)

    def relays_asked(self) -> tuple[str, ...]:
        """Relays we hold or have asked for a slot at."""
        return tuple(sorted(self._relays))

    def punch_addrs(self) -> tuple[str, ...]:
        """Addresses to offer a peer we hole-punch with: confirmed ones and
        those that peers of ``min_groups`` groups each reported dialling,
        so that one peer's word never decides (§17.4.2)."""
        counts: dict[str, int] = {}
        for addr in self._seen_at.values():
            counts[addr] = counts.get(addr, 0) + 1
        seen = [a for a, n in sorted(counts.items()) if n >= self.config.min_groups]
        return tuple(dict.fromkeys([*self._public_addrs(), *seen]))

    def relays(self) -> tuple[str, ...]:
        """Relays at which we hold a slot now."""
        return tuple(sorted(p for p, r in self._relays.items() if r.expires is not None))

    def status(self) -> dict[str, object]:
        return {
            "reachability": self.verdict.value,
            "confirmed": {
                a: sorted(g for g in groups) for a, groups in sorted(self._evidence.ok.items())
            },
            "failed_groups": sorted(self._evidence.failed),
            "relays": list(self.relays()),
            "observed": sorted(set(self._observed.values())),
        }

    def next_deadline(self) -> float | None:
        c = self.config
        times: list[float] = [p.sent + c.probe_timeout for p in self._pending.values()]
        for r in self._relays.values():
            if r.asked is not None:
                times.append(r.asked + c.reserve_timeout)
            elif r.expires is not None:
                times.append(r.expires - c.renew_before)
        times += [t + c.verdict_ttl for g in self._evidence.ok.values() for t in g.values()]
        times += [t + c.verdict_ttl for t in self._evidence.failed.values()]
        times += list(self._shunned.values())
        if self._probe_choices(self._now):
            times.append(self._now)
        times += [t + c.probe_interval for t in self._asked.values() if self._ports]
        return min(times) if times else None

    # -- inputs ---------------------------------------------------------------

    def set_listen(self, addrs: Iterable[str], now: Now) -> list[ReachOutput]:
        """Our listen addresses (text multiaddrs without ``/p2p/``)."""
        self._now = now.mono
        ports: list[int] = []
        public: list[str] = []
        for a in addrs:
            parts = a.split("/")
            if len(parts) >= 5 and parts[3] == "tcp" and parts[4].isdigit():
                if int(parts[4]) not in ports:
                    ports.append(int(parts[4]))
                if self.classifier.scope(a) is Scope.PUBLIC:
                    public.append(a)
        self._ports = tuple(ports[:4])
        self._listen_public = tuple(public)
        return self.tick(now)

    def peers_changed(self, peers: Sequence[PeerView], now: Now) -> list[ReachOutput]:
        """The connected peers (any order)."""
        self._now = now.mono
        self._peers = {p.peer: p for p in peers}
        for gone in [p for p in self._observed if p not in self._peers]:
            del self._observed[gone]
        return self.tick(now)

    def observed(self, peer: str, host: str, now: Now) -> list[ReachOutput]:
        """``peer`` says it sees our connection at ``host`` (a claim)."""
        self._now = now.mono
        if peer in self._peers and parse_ip(host) is not None:
            self._observed.pop(peer, None)
            self._observed[peer] = host
            while len(self._observed) > self.config.max_observations:
                del self._observed[next(iter(self._observed))]
        return self.tick(now)

    def dialled_back(self, nonce: bytes, now: Now) -> list[ReachOutput]:
        """A fresh connection presented ``nonce`` on our listener."""
        self._now = now.mono
        pending = self._pending.get(nonce)
        if pending is None:
            self.stats.stray_dial_backs += 1
        else:
            pending.dialled_back = True
        return []

    def probe_answered(
        self, nonce: bytes, addr: str | None, ok: bool, now: Now
    ) -> list[ReachOutput]:
        """The asked peer's RESULT (``addr``, ``ok``), or its refusal or a
        broken stream (``addr`` None: no evidence).  Silence until
        ``probe_timeout`` counts as a failure from the peer's group."""
        self._now = now.mono
        self._answer(nonce, addr, now.mono)
        return self.tick(now)

    def _answer(self, nonce: bytes, addr: str | None, t: float, timed_out: bool = False) -> None:
        pending = self._pending.pop(nonce, None)
        if pending is None:
            return
        if addr is None and not timed_out:
            # refused (over its limits) or broken: no evidence either way,
            # and the peer is not asked again before probe_interval
            self.stats.refused += 1
            return
        if addr is not None and self._confirms(addr, pending.port):
            self._seen_at.pop(pending.group, None)
            self._seen_at[pending.group] = addr
            while len(self._seen_at) > self.config.max_observations:
                del self._seen_at[next(iter(self._seen_at))]
        if addr is not None and pending.dialled_back and self._confirms(addr, pending.port):
            self.stats.confirmed += 1
            self._evidence.ok.setdefault(addr, {})[pending.group] = t
            self._evidence.failed.pop(pending.group, None)
            self._learn_own_group(addr)
            return
        self.stats.failed += 1
        self._evidence.failed[pending.group] = t
        # a group that cannot reach us no longer vouches for any address
        for groups in self._evidence.ok.values():
            groups.pop(pending.group, None)

    def reserved(self, peer: str, expires: float, now: Now) -> list[ReachOutput]:
        """A slot at ``peer`` until ``expires`` (monotonic)."""
        self._now = now.mono
        relay = self._relays.get(peer)
        if relay is not None:
            relay.expires, relay.asked = expires, None
            relay.successes += 1
            self.stats.reservations += 1
            self._strikes.pop(peer, None)
        return self.tick(now)

    def reservation_failed(self, peer: str, now: Now) -> list[ReachOutput]:
        self._now = now.mono
        relay = self._relays.get(peer)
        if relay is not None:
            self.stats.reservation_failures += 1
            relay.asked = None
            relay.failures += 1
            if relay.expires is None:
                strikes = self._strikes.get(peer, 0)
                self._strikes[peer] = strikes + 1
                shun = min(self.config.relay_shun, self.config.relay_retry * 2**strikes)
                return self._drop(peer, "reservation refused", now, shun)
            if relay.failures >= self.config.relay_failures:
                return self._drop(peer, "renewals keep failing", now)
        return self.tick(now)

    def relay_used(self, peer: str, ok: bool, now: Now) -> list[ReachOutput]:
        """A circuit through relay ``peer`` opened (``ok``) or failed."""
        self._now = now.mono
        relay = self._relays.get(peer)
        if relay is None:
            return []
        if ok:
            relay.successes += 1
            return []
        relay.failures += 1
        c = self.config
        if relay.failures >= c.relay_failures and relay.failures > relay.successes:
            return self._drop(peer, "circuits through it keep failing", now)
        return []

    # -- the timer --------------------------------------------------------------

    def tick(self, now: Now) -> list[ReachOutput]:
        t = self._now = now.mono
        c = self.config
        out: list[ReachOutput] = []
        for nonce, p in list(self._pending.items()):
            if t >= p.sent + c.probe_timeout:
                self._answer(nonce, None, t, timed_out=True)
        for groups in self._evidence.ok.values():
            for g in [g for g, when in groups.items() if t >= when + c.verdict_ttl]:
                del groups[g]
        self._evidence.ok = {a: g for a, g in self._evidence.ok.items() if g}
        for g in [g for g, when in self._evidence.failed.items() if t >= when + c.verdict_ttl]:
            del self._evidence.failed[g]
        for gone in [p for p, until in self._shunned.items() if t >= until]:
            del self._shunned[gone]
        for peer in self._probe_choices(t):
            nonce = self._rng.randbytes(NONCE_BYTES)
            port = self._ports[0]
            self._pending[nonce] = _Pending(peer, self._peers[peer].group, port, t)
            self._asked[peer] = t
            self.stats.probes += 1
            out.append(Probe(peer, nonce, port))
        out += self._manage_relays(t)
        out += self._advertise()
        return out

    # -- internals ----------------------------------------------------------------

    def _confirms(self, addr: str, port: int) -> bool:
        parts = addr.split("/")
        return (
            len(parts) == 5
            and parts[1] in ("ip4", "ip6")
            and parts[3] == "tcp"
            and parts[4] == str(port)
            and self.classifier.scope(addr) is Scope.PUBLIC
        )

    def _learn_own_group(self, addr: str) -> None:
        host = addr_host(addr)
        if host is not None and self.own_group == EXEMPT:
            self.own_group = network_group(host, self.classifier)

    def _probe_choices(self, t: float) -> list[str]:
        """Peers to ask now: one per group with no probe in flight, in
        groups that have not answered lately, bootstrap and older first."""
        if not self._ports:
            return []
        room = self.config.max_probes - len(self._pending)
        if room <= 0:
            return []
        busy = {p.group for p in self._pending.values()}
        # groups that answered in the first half of the verdict's life are
        # not asked again yet; later they are, so the verdict is renewed
        # before it expires
        fresh = t - self.config.verdict_ttl / 2
        answered = {g for g, when in self._evidence.failed.items() if when > fresh}
        for groups in self._evidence.ok.values():
            answered |= {g for g, when in groups.items() if when > fresh}
        chosen: list[str] = []
        order = sorted(self._peers.values(), key=lambda v: (not v.bootstrap, -v.known_for, v.peer))
        for view in order:
            if len(chosen) >= room:
                break
            if view.group == EXEMPT or view.relayed or view.group in busy:
                continue
            if view.group in answered:
                continue
            last = self._asked.get(view.peer)
            if last is not None and t < last + self.config.probe_interval:
                continue
            busy.add(view.group)
            chosen.append(view.peer)
        return chosen

    def _verdict(self, t: float) -> Reach:
        c = self.config
        for groups in self._evidence.ok.values():
            live = {g for g, when in groups.items() if t < when + c.verdict_ttl}
            if len(live) >= c.min_groups and any(g != self.own_group for g in live):
                return Reach.PUBLIC
        failed = {g for g, when in self._evidence.failed.items() if t < when + c.verdict_ttl}
        if len(failed) >= c.min_groups and not any(self._evidence.ok.values()):
            return Reach.PRIVATE
        return Reach.UNKNOWN

    def _public_addrs(self) -> tuple[str, ...]:
        c = self.config
        confirmed = [
            a
            for a, groups in sorted(self._evidence.ok.items())
            if len(groups) >= c.min_groups and any(g != self.own_group for g in groups)
        ]
        return tuple(dict.fromkeys([*self._listen_public, *confirmed]))

    def _manage_relays(self, t: float) -> list[ReachOutput]:
        c = self.config
        out: list[ReachOutput] = []
        verdict = self._verdict(t)
        # Only a PUBLIC verdict gives relays up: while evidence is being
        # renewed (UNKNOWN for a moment) the slots we hold stay.
        if verdict is Reach.PUBLIC:
            for peer in sorted(self._relays):
                out += self._release(peer, "reachable without relays")
            return out
        for peer, relay in sorted(self._relays.items()):
            if peer not in self._peers:
                out += self._release(peer, "disconnected")
            elif relay.asked is not None and t >= relay.asked + c.reserve_timeout:
                relay.asked = None
                relay.failures += 1
                if relay.expires is None:
                    out += self._release(peer, "no answer to the reservation")
                    self._shunned[peer] = t + c.relay_shun
            elif relay.expires is not None and relay.asked is None:
                if t >= relay.expires:
                    relay.expires = None
                    relay.asked = t
                    out.append(Reserve(peer))
                elif t >= relay.expires - c.renew_before:
                    relay.asked = t
                    out.append(Reserve(peer))
        if verdict is not Reach.PRIVATE:
            return out
        for view in self._relay_choices(c.want_relays - len(self._relays)):
            self._relays[view.peer] = _Relay(view.peer, view.group, asked=t)
            out.append(Reserve(view.peer))
        return out

    def _relay_choices(self, room: int) -> list[PeerView]:
        if room <= 0 or len(self._relays) >= self.config.max_relays:
            return []
        c = self.config
        taken = {r.group for r in self._relays.values()}
        usable = [
            v
            for v in self._peers.values()
            if v.can_relay
            and not v.relayed
            and v.peer not in self._relays
            and v.peer not in self._shunned
            and v.score >= 0
        ]

        def trusted(v: PeerView) -> bool:
            return v.bootstrap or v.known_for >= c.long_known

        have_trusted = any(trusted(self._peers[p]) for p in self._relays if p in self._peers)
        order = sorted(usable, key=lambda v: (not trusted(v), -v.known_for, v.peer))
        chosen: list[PeerView] = []
        for v in order:
            if len(chosen) >= room:
                break
            if v.group in taken and v.group != EXEMPT:
                continue
            if not have_trusted and not trusted(v) and any(trusted(u) for u in usable):
                continue  # the first slot goes to a trusted relay
            taken.add(v.group)
            have_trusted = have_trusted or trusted(v)
            chosen.append(v)
        return chosen

    def _release(self, peer: str, reason: str) -> list[ReachOutput]:
        if self._relays.pop(peer, None) is None:
            return []
        return [Release(peer, reason)]

    def _drop(
        self, peer: str, reason: str, now: Now, shun: float | None = None
    ) -> list[ReachOutput]:
        self.stats.relays_dropped += 1
        self._shunned[peer] = now.mono + (self.config.relay_shun if shun is None else shun)
        return self._release(peer, reason) + self.tick(now)

    def _advertise(self) -> list[ReachOutput]:
        ad = Advertise(self._verdict(self._now), self._public_addrs(), self.relays())
        if ad == self._advertised:
            return []
        self._advertised = ad
        return [ad]


# -- the asked side -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerConfig:
    #: per asking peer: one probe per this many seconds, burst 2
    peer_interval: float = 30.0
    peer_burst: float = 2.0
    #: per network group of askers
    group_interval: float = 10.0
    group_burst: float = 4.0
    #: in total
    total_interval: float = 0.5
    total_burst: float = 8.0
    #: dial-backs in flight at once
    max_in_flight: int = 4
    #: buckets remembered (least recently used dropped first)
    max_tracked: int = 1024


@dataclass(frozen=True, slots=True)
class DialBackTo:
    """Dial ``addr`` from a fresh connection and present ``nonce``; then
    call ``done(peer)``."""

    peer: str
    addr: str
    nonce: bytes


@dataclass(frozen=True, slots=True)
class Refuse:
    peer: str
    code: str


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class ProbeServer:
    def __init__(self, config: ServerConfig | None = None, classifier: Classifier = DEFAULT):
        self.config = config or ServerConfig()
        self.classifier = classifier
        self._peers: dict[str, _Bucket] = {}
        self._groups: dict[str, _Bucket] = {}
        self._total = _Bucket(self.config.total_burst, float("-inf"))
        self._in_flight: set[str] = set()
        self.served = 0
        self.refused: dict[str, int] = {}

    def next_deadline(self) -> float | None:
        return None

    def tick(self, now: Now) -> list[DialBackTo | Refuse]:
        return []

    def request(
        self, peer: str, remote_host: str, relayed: bool, nonce: bytes, port: int, now: Now
    ) -> list[DialBackTo | Refuse]:
        """``peer``, whose connection comes from ``remote_host``, asks to be
        dialled back at ``port``.  One output: the dial, or why not."""
        c = self.config
        ip = parse_ip(remote_host)
        code: str | None = None
        if relayed or ip is None:
            code = "relayed"  # the relay's address is not the asker's
        elif self.classifier.scope_of_ip(ip) is Scope.UNUSABLE:
            code = "address"
        elif peer in self._in_flight or len(self._in_flight) >= c.max_in_flight:
            code = "busy"
        if code is None:
            group = network_group(remote_host, self.classifier)
            peer_b = self._bucket(self._peers, peer, c.peer_burst)
            group_b = self._bucket(self._groups, group, c.group_burst)
            buckets = (
                (peer_b, c.peer_interval, c.peer_burst),
                (group_b, c.group_interval, c.group_burst),
                (self._total, c.total_interval, c.total_burst),
            )
            for b, interval, burst in buckets:
                b.tokens = min(burst, b.tokens + max(0.0, now.mono - b.at) / interval)
                b.at = now.mono
            if any(b.tokens < 1 for b, _, _ in buckets):
                code = "rate"
            else:
                for b, _, _ in buckets:
                    b.tokens -= 1
        if code is not None:
            self.refused[code] = self.refused.get(code, 0) + 1
            return [Refuse(peer, code)]
        assert ip is not None
        self._in_flight.add(peer)
        self.served += 1
        return [DialBackTo(peer, f"/ip{ip.version}/{ip}/tcp/{port}", nonce)]

    def done(self, peer: str, now: Now) -> list[DialBackTo | Refuse]:
        self._in_flight.discard(peer)
        return []

    def _bucket(self, table: dict[str, _Bucket], key: str, burst: float) -> _Bucket:
        b = table.pop(key, None)
        if b is None:
            b = _Bucket(burst, float("-inf"))
        table[key] = b  # most recently used last
        while len(table) > self.config.max_tracked:
            del table[next(iter(table))]
        return b
