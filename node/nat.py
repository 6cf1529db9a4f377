"""The node's NAT side in one place: dial hygiene, the relay it offers and
the relays it uses, hole punching, its own reachability probe, and which
addresses it advertises (PROTOCOL.md §17.4, §17.5).

``NatWiring`` builds these parts on the node's libp2p host and joins them to
the link service; the daemon asks it what to advertise and how to reach a
peer, and shows its ``status`` in ``smu node status``.  The policies are
machines in ``protocol/links`` (reachability, addresses); this module only
connects them to libp2p (``node.relay``, ``node.reach``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from protocol.links.addresses import Classifier, Scope, addr_host, may_dial, usable_by
from protocol.links.reachability import Advertise, Reach, ReachConfig
from protocol.records.device import SignedDeviceRecord

from .links import LinkService
from .reach import ReachService
from .relay import (
    DialGuard,
    GatedRelay,
    GuardedDCUtR,
    RelayDialer,
    own_networks,
    relay_of,
    remote_ip,
)


class NatWiring:
    def __init__(
        self,
        host: Any,
        links: LinkService,
        classifier: Classifier,
        *,
        offer_relay: bool,
        circuit_bytes: int,
        reach_config: ReachConfig | None,
        records: Callable[[], Iterable[SignedDeviceRecord]],
        bootstrap: Callable[[], list[str]],
        score: Callable[[str], float],
        on_advertise: Callable[[], None],
    ) -> None:
        """``records``: the valid device records this node holds (a relay
        slot only for a peer they name); ``on_advertise``: what to advertise
        changed (republish the record and the peer-exchange entry)."""
        self.host = host
        self.links = links
        self.classifier = classifier
        self._records = records
        self._bootstrap = bootstrap
        #: the networks of our interfaces: private addresses we may dial (§17.5)
        self.own_nets = own_networks()
        self.guard = DialGuard(lambda: self.own_nets, classifier)
        self.guard.install(host)
        self.relay = GatedRelay(
            host,
            offer=offer_relay,
            may_reserve=self._may_reserve,
            relays_we_use=lambda: self.reach.relays_in_use(),
            circuit_bytes=circuit_bytes,
        )
        self.dialer = RelayDialer(host, self.relay)
        self.dcutr = GuardedDCUtR(
            host,
            may_dial=lambda addr: may_dial(addr, None, self.own_nets, classifier),
            our_addrs=lambda: self.reach.machine.punch_addrs(),
        )

        def advertise_changed(_: Advertise) -> None:
            on_advertise()

        self.reach = ReachService(
            host,
            links,
            self.dialer,
            self.guard,
            classifier,
            bootstrap=lambda: {a.rsplit("/p2p/", 1)[-1] for a in bootstrap()},
            score=score,
            on_advertise=advertise_changed,
            config=reach_config,
        )
        links.circuit_dial = self._circuit_dial
        links.relay_of = relay_of
        links.host_of = lambda peer: remote_ip(host, peer)
        links.dialable = lambda peer, addrs, source: [
            a for a in addrs if may_dial(a, source, self.own_nets, classifier)
        ]

    async def _circuit_dial(self, relay: str, peer: str) -> Any:
        try:
            conn = await self.dialer.dial(relay, peer)
        except Exception:
            self.reach.relay_used(relay, False)
            raise
        self.reach.relay_used(relay, True)
        return conn

    def _may_reserve(self, peer: str) -> bool:
        """A relay slot only for a peer id that a valid device record of an
        active device names (§17.4.3): the book holds only such records."""
        if self.reach.machine.verdict is not Reach.PUBLIC:
            return False  # a relay must be reachable itself
        now_ms = int(time.time() * 1000)
        return any(peer in r.peer_ids and r.expires > now_ms for r in self._records())

    def relays_of(self, peer: str) -> tuple[str, ...]:
        """The relays named by the newest record that names ``peer``."""
        best: tuple[int, tuple[str, ...]] = (-1, ())
        for r in self._records():
            if peer in r.peer_ids and r.timestamp > best[0]:
                best = (r.timestamp, r.relays)
        return best[1]

    def status(self) -> dict[str, object]:
        doc = self.reach.status()
        doc["relay"] = {
            "offered": self.relay.allow_hop,
            "reservations": self.relay.reservations(),
            **self.relay.stats,
        }
        doc["dials"] = {"refused_by_hygiene": self.guard.refused, "failed": self.guard.failed}
        doc["hole_punch_refused_addrs"] = self.dcutr.refused
        return doc

    def advertised_addrs(self, listen: list[str]) -> list[str]:
        """Our addresses as records and peer exchange carry them (§17.5):
        public ones (listened on, or confirmed by probes); private and
        loopback ones only while every peer we are linked with (or, with no
        link yet, every bootstrap peer) can use them."""
        public = [a for a in listen if self.classifier.scope(a) is Scope.PUBLIC]
        public += [a for a in self.reach.advertised.addrs if a not in public]
        local = [a for a in listen if a not in public]
        viewers = [lk.host for lk in self.links.links.values() if not lk.relayed]
        if not self.links.links:
            viewers = [addr_host(b) or "" for b in self._bootstrap()]
        shared = [
            a
            for a in local
            if all(usable_by(a, v, self.own_nets, self.classifier) for v in viewers)
        ]
        if self.reach.advertised.relays or any(self.classifier.is_public(v) for v in viewers):
            shared = [a for a in shared if self.classifier.scope(a) is not Scope.LOOPBACK]
        return public + shared
