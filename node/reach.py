"""Reachability on a running node (PROTOCOL.md §17.4): the probe
``/smu/reach/1`` on both sides, relay slots, and what the node advertises.

``protocol.links.reachability.Reachability`` decides (whom to probe, the
verdict, which relays to hold, what to advertise) and
``ProbeServer`` bounds what other nodes' probes cost us; this adapter
carries their outputs out over libp2p:

* a ``Probe`` opens ``/smu/reach/1`` to the peer, sends DIAL_ME and reports
  the RESULT; the dial-back arrives as a separate stream from the peer's
  *prober*, a second libp2p host with a key of its own and no listener, so
  it can never reuse the connection we opened;
* a ``Reserve`` reserves a slot at the relay (``node.relay``);
* an ``Advertise`` updates what the device record and peer exchange say.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID as HOP_PROTOCOL

from protocol.core.errors import InvalidInput
from protocol.links import reach_wire
from protocol.links.addresses import Classifier
from protocol.links.policy import network_group
from protocol.links.reachability import (
    Advertise,
    DialBackTo,
    PeerView,
    Probe,
    ProbeServer,
    Reach,
    Reachability,
    ReachConfig,
    ReachOutput,
    Refuse,
    Release,
    Reserve,
)

from .driver import MachineDriver
from .gate import remote_peer
from .relay import DialGuard, RelayDialer, is_relayed, remote_ip
from .tasks import TaskStatus
from .transport import STREAM_ERRORS, frame, make_host, parse_multiaddr, read_frame

#: what a probe, a dial-back order or a reach stream may fail with
PROBE_ERRORS: tuple[type[BaseException], ...] = (*STREAM_ERRORS, InvalidInput, trio.TooSlowError)
log = logging.getLogger("smu.reach")
REACH_PROTOCOL = reach_wire.PROTOCOL_ID
#: how long the asked side tries to dial back
DIAL_BACK_TIMEOUT = 5.0
#: how long the asking side waits for the RESULT
PROBE_TIMEOUT = 12.0
#: how often the peers' views are refreshed besides link changes
REFRESH_INTERVAL = 2.0


class ReachService:
    def __init__(
        self,
        host: Any,
        links: Any,
        dialer: RelayDialer,
        guard: DialGuard,
        classifier: Classifier,
        bootstrap: Callable[[], set[str]],
        score: Callable[[str], float],
        on_advertise: Callable[[Advertise], None],
        config: ReachConfig | None = None,
    ) -> None:
        self.host = host
        self.links = links
        self.dialer = dialer
        self.guard = guard
        self.classifier = classifier
        self.bootstrap = bootstrap
        self.score = score
        self.on_advertise = on_advertise
        self.machine = Reachability(random.Random(os.urandom(16)), config, classifier)
        self.driver = MachineDriver("reach", self.machine, self._carry_out)
        self.server = ProbeServer(classifier=classifier)
        self.server_driver = MachineDriver("reach-server", self.server, self._serve)
        self._first_seen: dict[str, float] = {}
        self._nursery: trio.Nursery | None = None
        self._prober: Any = None
        self.advertised = Advertise(Reach.UNKNOWN, (), ())
        #: relay -> its expiry (Unix s), for status
        self.slots: dict[str, float] = {}

    async def run(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._prober = make_host(os.urandom(32))
        self.guard.install(self._prober)
        async with self._prober.run([]), trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.driver.run)
            await nursery.start(self.server_driver.run)
            task_status.started()
            # what a peer offers (the relay protocol) is known only once
            # identify has run, which no event reports: look again now and
            # then (cheap: one pass over the links)
            while True:
                await trio.sleep(REFRESH_INTERVAL)
                self.refresh()

    def set_listen(self, addrs: Sequence[str]) -> None:
        self.driver.call(lambda now: self.machine.set_listen(list(addrs), now))

    def refresh(self) -> None:
        """The links changed: tell the machine who is connected."""
        mono = time.monotonic()
        views = []
        boot = self.bootstrap()
        for peer, link in self.links.links.items():
            first = self._first_seen.setdefault(peer, mono)
            relayed = bool(getattr(link, "relayed", False))
            host = link.host if not relayed else ""
            try:
                protocols = self.host.get_peerstore().get_protocols(ID.from_base58(peer))
            except Exception:  # identify has not run yet
                protocols = []
            views.append(
                PeerView(
                    peer=peer,
                    group=network_group(host, self.classifier) if host else "",
                    bootstrap=peer in boot,
                    known_for=mono - first,
                    score=float(self.score(peer)),
                    can_relay=HOP_PROTOCOL in protocols,
                    relayed=relayed,
                )
            )
        for gone in [p for p in self._first_seen if p not in self.links.links]:
            del self._first_seen[gone]
        self.driver.call(lambda now: self.machine.peers_changed(views, now))

    def relays_in_use(self) -> set[str]:
        """Relays we hold or ask for a slot at: only they may relay
        connections to us (§17.4.3)."""
        return set(self.slots) | set(self.machine.relays_asked())

    def status(self) -> dict[str, Any]:
        doc = self.machine.status()
        doc["advertised"] = list(self.advertised.addrs)
        doc["slots"] = {r: round(t - time.time()) for r, t in self.slots.items()}
        doc["probes_served"] = self.server.served
        doc["probes_refused"] = dict(self.server.refused)
        doc["stats"] = dataclasses.asdict(self.machine.stats)
        return doc

    # -- the asking side -------------------------------------------------------------

    def _carry_out(self, outputs: Sequence[ReachOutput]) -> None:
        for out in outputs:
            if isinstance(out, Probe):
                self._spawn(self._probe, out)
            elif isinstance(out, Reserve):
                self._spawn(self._reserve, out.peer)
            elif isinstance(out, Release):
                log.info("relay %s released: %s", out.peer, out.reason)
                self.slots.pop(out.peer, None)
            elif isinstance(out, Advertise):
                log.info(
                    "reachability %s; advertising %s; relays %s",
                    out.reachability.value,
                    list(out.addrs) or "no direct address",
                    list(out.relays) or "none",
                )
                self.advertised = out
                self.on_advertise(out)

    def _spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(fn, *args)

    async def _probe(self, probe: Probe) -> None:
        addr: str | None = None
        ok = False
        try:
            with trio.fail_after(PROBE_TIMEOUT):
                stream = await self.host.new_stream(
                    ID.from_base58(probe.peer), [TProtocol(REACH_PROTOCOL)]
                )
                try:
                    msg = reach_wire.DialMe(probe.nonce, probe.port)
                    await stream.write(frame(reach_wire.encode(msg)))
                    answer = reach_wire.decode(await read_frame(stream, reach_wire.MAX_FRAME))
                finally:
                    await _close(stream)
            if isinstance(answer, reach_wire.Result):
                addr, ok = answer.addr, answer.ok
            else:
                log.debug("probe refused by %s: %s", probe.peer, answer)
        except PROBE_ERRORS as exc:
            log.debug("probe of %s failed: %s", probe.peer, exc)
        except Exception as exc:  # libp2p's new_stream raises many types
            log.debug("probe of %s failed: %s", probe.peer, exc)
        self.driver.call(lambda now: self.machine.probe_answered(probe.nonce, addr, ok, now))

    async def _reserve(self, relay: str) -> None:
        expires = await self.dialer.reserve(relay)
        if expires is None:
            self.driver.call(lambda now: self.machine.reservation_failed(relay, now))
            return
        fresh = relay not in self.slots
        self.slots[relay] = expires
        if fresh:
            log.info("relay slot at %s for %.0f s", relay, expires - time.time())
        # the machine's clock: expiry in its monotonic seconds
        self.driver.call(
            lambda now: self.machine.reserved(relay, now.mono + expires - now.wall_ms / 1000, now)
        )

    def relay_used(self, relay: str, ok: bool) -> None:
        self.driver.call(lambda now: self.machine.relay_used(relay, ok, now))

    # -- both sides: the stream handler ------------------------------------------------

    async def on_stream(self, stream: Any) -> None:
        """/smu/reach/1 (behind the gate): a DIAL_ME from a peer, or the
        DIAL_BACK we asked for, from someone's prober."""
        peer = remote_peer(stream)
        try:
            with trio.fail_after(PROBE_TIMEOUT):
                msg = reach_wire.decode(await read_frame(stream, reach_wire.MAX_FRAME))
                if isinstance(msg, reach_wire.DialBack):
                    self.driver.call(lambda now: self.machine.dialled_back(msg.nonce, now))
                elif isinstance(msg, reach_wire.DialMe):
                    await self._answer(stream, peer, msg)
        except PROBE_ERRORS as exc:
            log.debug("reach stream from %s: %s", peer, exc)
        finally:
            await _close(stream)

    async def _answer(self, stream: Any, peer: str, msg: reach_wire.DialMe) -> None:
        relayed = is_relayed(stream.muxed_conn)
        host = "" if relayed else remote_ip(self.host, peer)
        (verdict,) = self.server_driver.call(
            lambda now: self.server.request(peer, host, relayed, msg.nonce, msg.port, now)
        )
        if isinstance(verdict, Refuse):
            await stream.write(frame(reach_wire.encode(reach_wire.ReachRefused(verdict.code))))
            return
        assert isinstance(verdict, DialBackTo)
        try:
            ok = await self._dial_back(verdict)
        finally:
            self.server_driver.call(lambda now: self.server.done(peer, now))
        await stream.write(frame(reach_wire.encode(reach_wire.Result(verdict.addr, ok))))

    def _serve(self, outputs: Sequence[DialBackTo | Refuse]) -> None:
        return None  # the only outputs are the answers to request(), used there

    async def _dial_back(self, order: DialBackTo) -> bool:
        """From the prober (a fresh connection, another identity): connect
        to the asker at ``order.addr`` and present the nonce."""
        prober = self._prober
        peer_id = ID.from_base58(order.peer)
        try:
            with trio.fail_after(DIAL_BACK_TIMEOUT):
                await prober.connect(PeerInfo(peer_id, [parse_multiaddr(order.addr)]))
                stream = await prober.new_stream(peer_id, [TProtocol(REACH_PROTOCOL)])
                try:
                    await stream.write(frame(reach_wire.encode(reach_wire.DialBack(order.nonce))))
                finally:
                    await _close(stream)
            return True
        except Exception as exc:  # unreachable: the answer says so
            log.debug("dial-back to %s failed: %s", order.addr, exc)
            return False
        finally:
            try:
                await prober.disconnect(peer_id)
            except Exception as exc:
                log.debug("prober disconnect: %s", exc)
            try:
                prober.get_peerstore().clear_addrs(peer_id)
            except Exception as exc:
                log.debug("prober peerstore: %s", exc)


async def _close(stream: Any) -> None:
    try:
        await stream.close()
    except Exception as exc:  # the other side may be gone
        log.debug("reach stream close: %s", exc)
