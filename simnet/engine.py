"""The discrete-event core: virtual time, links, node job queues.

One heap keyed by (time, sequence number) orders everything, and one seeded
``random.Random`` draws everything (latency, loss, topology, addresses,
workload, the replicators' own choices), so a scenario and a seed fix the
whole trace.

Each node is a single virtual CPU: frames, timer ticks, link changes and
local actions are jobs run one at a time, each costing virtual time
(``Cpu``); what a job emits leaves when the job ends.  Links are FIFO per
direction (a libp2p stream), with serialisation delay when a bandwidth is
set and a latency drawn per frame.

Which links exist is decided by each node's ``protocol.links.manager.
LinkManager``, the machine the real node runs, driven as the node adapter
drives it: every node has an IPv4 address (a string; nothing here touches a
network), the manager's ``Dial`` outputs become connection attempts that
take one round trip to set up and fail if the peer is down, partitioned
away or not at that address; a connection becomes a link only if the
managers at both ends admit it (``opened``), else it is closed at once and
the replicators never hear of it; ``Close`` outputs and the replicators'
``Disconnect`` (a ban, ``LinkManager.ban``) close links; ``PeersLearned``
feeds ``offer_candidates``.  Admission runs when the connection comes up,
outside the nodes' CPUs (a few dictionary operations); the manager's timer
ticks are jobs like the replicator's.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from protocol.core.machine import SIM_EPOCH_MS, Now
from protocol.core.params import NetworkParams
from protocol.links.manager import Admitted, Close, Dial, LinkManager, LinkStats
from protocol.links.policy import LinkLimits, addresses_at, multiaddr_host
from protocol.log.ledger import Ledger
from protocol.sync.replication import (
    Delivered,
    Disconnect,
    Misbehaved,
    PeersLearned,
    ReplicationConfig,
    Replicator,
    Send,
)

from . import cpu as cpu_mod
from . import topology as topo
from .cpu import Meter, MeteredLedger, MeteredVerifier
from .ledgers import CachedVerifier
from .scenario import Scenario

# heap entry kinds
_ARRIVE, _RUN, _TICK, _CALL, _LTICK, _DIAL = range(6)
# job kinds
J_FRAME, J_PUBLISH, J_TICK, J_CONNECT, J_DISCONNECT, J_CALL, J_LTICK = range(7)

#: the TCP port every simulated node listens on (addresses are strings only)
PORT = 4001

Job = tuple[Any, ...]
Edge = tuple[int, int]


@dataclass(slots=True)
class LinkCounts:
    """The links a node holds now."""

    inbound: int = 0
    outbound: int = 0
    honest: int = 0
    attacker: int = 0
    attacker_inbound: int = 0


@dataclass(slots=True)
class Link:
    """The connection between two nodes, if any (one at a time per pair)."""

    connected: bool = False
    epoch: int = 0
    #: the node that dialled the connection now up
    dialler: int = -1
    # per direction: 0 is low index -> high index
    free_at0: float = 0.0
    free_at1: float = 0.0
    last0: float = 0.0
    last1: float = 0.0


class SimNode:
    """One simulated node: a Ledger, a Replicator and a LinkManager, plus its
    job queue."""

    def __init__(self, idx: int, honest: bool, ledger: Ledger, limits: LinkLimits) -> None:
        self.idx = idx
        self.pid = f"n{idx:04d}"
        self.honest = honest
        self.role = "honest" if honest else "attacker"
        self.ledger = ledger
        self.rep: Any = None
        #: the work its ledger did (honest nodes: ``simnet.cpu``)
        self.meter = Meter()
        #: virtual CPU seconds a job asked for beyond the model's counts
        #: (e.g. opening an envelope), charged when the job ends
        self.extra = 0.0
        self.limits = limits
        self.links = LinkManager(self.pid, limits)
        #: the IPv4 address it listens on, and as a multiaddr (no /p2p/)
        self.host = ""
        self.addr = ""
        #: the nodes it dials on its own: its bootstrap list (topology edges
        #: it dials, and the scenario's bootstrap nodes)
        self.bootstrap: set[int] = set()
        #: nodes it holds a link with now, and ever did
        self.peers: set[int] = set()
        self.ever: set[int] = set()
        #: attackers: which peers their replicator may name in PEERS frames
        #: (None: whoever the adapter would vouch for)
        self.shares: Callable[[int], bool] | None = None
        self.ltick_at: float | None = None
        self.ltick_token = 0
        self.up = True
        self.skew = 0.0
        self.jobs: deque[Job] = deque()
        self.busy = False
        self.epoch = 0  # bumped on restart: stale RUN and TICK entries die
        self.tick_at: float | None = None
        self.tick_token = 0
        #: attackers: drop an outgoing frame when this returns False
        self.send_filter: Callable[[int, bytes], bool] | None = None
        #: attackers: see every frame received (replay recorder)
        self.on_frame: Callable[[int, bytes, float], None] | None = None
        self.frames_sent = 0
        self.bytes_sent = 0
        self.frames_received = 0
        self.bytes_received = 0
        self.misbehaved_reports = 0
        #: stats of replication and link machines it ran before a restart
        self.retired: list[Any] = []
        self.retired_links: list[LinkStats] = []

    def link_stats(self) -> list[LinkStats]:
        return [*self.retired_links, self.links.stats]

    def now(self, t: float) -> Now:
        """Virtual time ``t`` as this node's machines see it: its wall clock
        is off by its ``skew`` (seconds)."""
        return Now(t, SIM_EPOCH_MS + int((t + self.skew) * 1000))


class Engine:
    def __init__(self, scenario: Scenario, observer: Any) -> None:
        self.sc = scenario
        self.rng = random.Random(scenario.seed)
        self.params = NetworkParams(
            network_id=scenario.network_id,
            genesis_pow_bits=0,
            event_pow_bits=0,
            **scenario.params,
        )
        self.verify = CachedVerifier()
        replication = dict(scenario.replication)
        if not scenario.defences.duplicate_allowance:
            replication.update(duplicate_rate=1e12, duplicate_burst=1e12)
        self.config = ReplicationConfig(**replication)
        cpu_mod.install()
        self.obs = observer
        self.now = 0.0
        self._heap: list[tuple[Any, ...]] = []
        self._seq = 0
        self.nodes: list[SimNode] = []
        #: the topology: pairs one of which dials the other (its bootstrap list)
        self.edges: set[Edge] = set()
        self.links: dict[Edge, Link] = {}
        self.by_host: dict[str, int] = {}
        self.cuts: list[tuple[list[int], bool]] = []  # (group of each node, asymmetric)
        self._lat = topo.sampler(scenario.latency, self.rng)
        #: set once the nodes were given their bootstrap lists
        self.started = False
        self.heap_events = 0
        self.frames_dropped = 0
        self.retransmissions = 0
        self.dials = 0
        self.dials_failed = 0

    # -- scheduling ---------------------------------------------------------

    def _push(self, t: float, kind: int, a: Any = None, b: Any = None, c: Any = None) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, a, b, c))

    def at(self, t: float, fn: Callable[[float], None]) -> None:
        """Run ``fn(t)`` at virtual time ``t`` (outside any node's CPU)."""
        self._push(max(t, self.now), _CALL, fn)

    def run(self, until: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= until:
            t, _, kind, a, b, c = heapq.heappop(heap)
            self.now = t
            self.heap_events += 1
            if kind == _ARRIVE:
                self._arrive(a, b, c, t)
            elif kind == _RUN:
                node = self.nodes[a]
                if node.epoch == b and node.up:
                    self._run_job(node, t)
            elif kind == _TICK:
                node = self.nodes[a]
                if node.up and node.epoch == b and node.tick_token == c:
                    node.tick_at = None
                    self.enqueue(node, (J_TICK,), t)
            elif kind == _LTICK:
                node = self.nodes[a]
                if node.up and node.epoch == b and node.ltick_token == c:
                    node.ltick_at = None
                    self.enqueue(node, (J_LTICK,), t)
            elif kind == _DIAL:
                self._dial_done(a, b, c, t)
            else:
                a(t)
        self.now = until

    # -- nodes and jobs -----------------------------------------------------

    def add_node(self, honest: bool, ledger: Ledger | None = None) -> SimNode:
        meter = Meter()
        led: Ledger
        if ledger is not None:
            led = ledger
        else:
            verify = MeteredVerifier(self.verify, meter) if honest else self.verify
            dedup = self.sc.defences.dedup_before_verify
            led = MeteredLedger(self.params, verify, meter, dedup=dedup)
        node = SimNode(len(self.nodes), honest, led, self.sc.link_limits)
        node.meter = meter
        node.rep = Replicator(led, self.rng, self.config)
        self.nodes.append(node)
        return node

    def set_address(self, node: SimNode, host: str) -> None:
        """Where ``node`` listens; its replicator shares it in PEERS frames."""
        node.host = host
        node.addr = f"/ip4/{host}/tcp/{PORT}"
        self.by_host[host] = node.idx
        node.rep.set_self(node.pid, [node.addr])

    def enqueue(self, node: SimNode, job: Job, t: float) -> None:
        if not node.up:
            return
        node.jobs.append(job)
        if not node.busy:
            node.busy = True
            self._push(t, _RUN, node.idx, node.epoch)

    def _run_job(self, node: SimNode, t: float) -> None:
        cpu = self.sc.cpu
        job = node.jobs.popleft()
        kind = job[0]
        rep = node.rep
        cost = cpu.per_frame
        meter = node.meter
        sigs, evals, visited = meter.signatures, meter.evaluations, cpu_mod.evaluated_events()
        outs: list[Any]
        if kind == J_FRAME:
            src, frame, epoch = job[1], job[2], job[3]
            link = self.links.get(_key(node.idx, src))
            if link is None or not link.connected or link.epoch != epoch:
                outs = []
            else:
                node.frames_received += 1
                node.bytes_received += len(frame)
                if node.on_frame is not None:
                    node.on_frame(src, frame, t)
                outs = rep.receive(self.nodes[src].pid, frame, node.now(t))
                cost += cpu.per_byte * len(frame)
        elif kind == J_PUBLISH:
            outs = rep.publish(job[1], node.now(t))
        elif kind == J_TICK:
            outs = rep.tick(node.now(t))
        elif kind == J_LTICK:
            outs = node.links.tick(node.now(t))
            self._arm_links(node, t)
        elif kind == J_CONNECT:
            outs = rep.connect(self.nodes[job[1]].pid, node.now(t))
        elif kind == J_DISCONNECT:
            outs = rep.disconnect(self.nodes[job[1]].pid, node.now(t))
        else:
            outs = job[1](node, t)
        for o in outs:
            if type(o) is not Send:
                cost += cpu.per_event
        if node.honest:
            cost += (
                cpu.per_signature * (meter.signatures - sigs)
                + cpu.per_evaluation * (meter.evaluations - evals)
                + cpu.per_evaluated_event * (cpu_mod.evaluated_events() - visited)
            )
        cost += node.extra
        node.extra = 0.0
        done = t + cost
        self._outputs(node, outs, done)
        if node.jobs:
            self._push(done, _RUN, node.idx, node.epoch)
        else:
            node.busy = False
        self._schedule_tick(node, done)

    def _schedule_tick(self, node: SimNode, now: float) -> None:
        d = node.rep.next_deadline()
        if d is None:
            return
        d = max(d, now + 1e-3)  # a deadline in the past must not spin
        if node.tick_at is not None and node.tick_at <= d:
            return
        node.tick_at = d
        node.tick_token += 1
        self._push(d, _TICK, node.idx, node.epoch, node.tick_token)

    def _arm_links(self, node: SimNode, now: float) -> None:
        """The link manager's timer, asked again after every call of it."""
        if not node.up:
            return
        d = node.links.next_deadline()
        if d is None:
            return
        d = max(d, now + 1e-3)
        if node.ltick_at is not None and node.ltick_at <= d:
            return
        node.ltick_at = d
        node.ltick_token += 1
        self._push(d, _LTICK, node.idx, node.epoch, node.ltick_token)

    def _outputs(self, node: SimNode, outs: list[Any], t: float) -> None:
        """Carry out what a machine of ``node`` returned (either machine)."""
        obs = self.obs
        for o in outs:
            tp = type(o)
            if tp is Send:
                dst = self._pid_index(o.peer)
                if dst is None:
                    continue
                if node.send_filter is not None and not node.send_filter(dst, o.frame):
                    continue
                self.transmit(node, dst, o.frame, t)
            elif tp is Delivered:
                obs.delivered(node, o.event, o.source, t)
            elif tp is Disconnect:
                # the replicator dropped the peer; the manager bans it and
                # closes the link (PROTOCOL.md §11.5.1: a ban covers every
                # protocol, and no link either way until it ends)
                dst = self._pid_index(o.peer)
                for c in node.links.ban(o.peer, o.until, node.now(t)):
                    if type(c) is Close and dst is not None:
                        self.close_link(node.idx, dst, t, initiator=node.idx)
                self._arm_links(node, t)
            elif tp is Misbehaved:
                node.misbehaved_reports += 1
                obs.misbehaved(node, o.peer, o.error, t)
            elif tp is PeersLearned:
                self._learned(node, o, t)
            elif tp is Dial:
                self.dial(node, o.peer, o.addr, t)
            elif tp is Close:
                dst = self._pid_index(o.peer)
                if dst is not None:
                    self.close_link(node.idx, dst, t)

    def _learned(self, node: SimNode, o: PeersLearned, t: float) -> None:
        """A PEERS frame: vouch for the sender's own entry at the host its
        connection comes from (PROTOCOL.md §11.8.1), then offer every learned
        peer to the link manager, which dials some (§11.5.3)."""
        src = self._pid_index(o.source)
        if src is not None and src in node.peers and self._may_share(node, src):
            here = addresses_at(o.sender_addrs, self.nodes[src].host)
            if here:
                node.rep.note_addresses(o.source, here)
        self._outputs(node, node.links.offer_candidates(node.rep.learned_peers(), node.now(t)), t)
        self._arm_links(node, t)

    @staticmethod
    def _may_share(node: SimNode, peer: int) -> bool:
        return node.shares is None or node.shares(peer)

    @staticmethod
    def _pid_index(pid: str) -> int | None:
        try:
            return int(pid[1:])
        except ValueError:
            return None

    # -- network ------------------------------------------------------------

    def cut(self, a: int, b: int) -> bool:
        """Is the direction a -> b blocked by a partition now?

        A symmetric partition closes the links it cuts; an asymmetric one
        leaves them open and loses what crosses it one way, until the heal
        resets them (a stream whose data never arrives times out).
        """
        for group_of, asymmetric in self.cuts:
            ga, gb = group_of[a], group_of[b]
            if ga != gb and (not asymmetric or ga < gb):
                return True
        return False

    def transmit(self, src: SimNode, dst: int, frame: bytes, t: float) -> None:
        link = self.links.get(_key(src.idx, dst))
        n = len(frame)
        src.frames_sent += 1
        src.bytes_sent += n
        if link is None or not link.connected:
            self.frames_dropped += 1
            return
        if self.cuts and self.cut(src.idx, dst):
            self.frames_dropped += 1
            return
        bw = self.sc.bandwidth
        lat = topo.sample(self._lat, self.rng)
        if self.sc.loss:
            # Links are reliable streams (TCP under libp2p): a lost packet
            # costs a retransmission timeout, doubling each time, not the frame.
            rto = max(0.2, 2 * lat)
            while self.rng.random() < self.sc.loss:
                lat += rto
                rto *= 2
                self.retransmissions += 1
        if src.idx < dst:
            start = max(t, link.free_at0)
            end = start + (n / bw if bw else 0.0)
            link.free_at0 = end
            arr = max(end + lat, link.last0)
            link.last0 = arr
        else:
            start = max(t, link.free_at1)
            end = start + (n / bw if bw else 0.0)
            link.free_at1 = end
            arr = max(end + lat, link.last1)
            link.last1 = arr
        self._push(arr, _ARRIVE, dst, (src.idx, frame), link.epoch)

    def _arrive(self, dst: int, payload: tuple[int, bytes], epoch: int, t: float) -> None:
        src, frame = payload
        node = self.nodes[dst]
        link = self.links.get(_key(src, dst))
        if not node.up or link is None or link.epoch != epoch or not link.connected:
            self.frames_dropped += 1
            return
        self.enqueue(node, (J_FRAME, src, frame, epoch), t)

    # -- the topology: whom each node dials on its own ----------------------------

    def add_edge(self, a: int, b: int, t: float) -> None:
        """``a`` dials ``b`` (puts it on its bootstrap list)."""
        self.edges.add(_key(a, b))
        self.nodes[a].bootstrap.add(b)
        if self.started:
            self._set_bootstrap(self.nodes[a], t)

    def remove_edge(self, a: int, b: int, t: float) -> None:
        """Neither dials the other any more; a link between them closes."""
        self.edges.discard(_key(a, b))
        for i, j in ((a, b), (b, a)):
            node = self.nodes[i]
            if j in node.bootstrap:
                node.bootstrap.discard(j)
                if self.started:
                    self._set_bootstrap(node, t)
        self.close_link(a, b, t)

    def start(self, t: float) -> None:
        """Every node gets its bootstrap list, and its manager dials it."""
        self.started = True
        for node in self.nodes:
            if node.up:
                self._set_bootstrap(node, t)

    def _set_bootstrap(self, node: SimNode, t: float) -> None:
        if not node.up:
            return
        peers = {self.nodes[j].pid: self.nodes[j].addr for j in sorted(node.bootstrap)}
        self._outputs(node, node.links.set_bootstrap(peers, node.now(t)), t)
        self._arm_links(node, t)

    # -- connections --------------------------------------------------------------

    def dial(
        self, node: SimNode, peer: str, addr: str, t: float, setup: float | None = None
    ) -> None:
        """``node`` dials ``peer`` at ``addr``: the connection is set up one
        round trip later (``setup`` overrides it), then admitted or refused
        at both ends."""
        if setup is None:
            setup = topo.sample(self._lat, self.rng) + topo.sample(self._lat, self.rng)
        self.dials += 1
        self._push(t + setup, _DIAL, node.idx, node.epoch, (peer, addr))

    def connect(self, a: int, b: int, t: float, setup: float | None = None) -> None:
        """``a`` dials ``b`` by hand (``smu peers connect``), not through its
        manager; the manager still admits the link when it comes up."""
        nb = self.nodes[b]
        self.dial(self.nodes[a], nb.pid, nb.addr, t, setup)

    def _dial_done(self, i: int, epoch: int, target: tuple[str, str], t: float) -> None:
        na = self.nodes[i]
        if not na.up or na.epoch != epoch:
            return  # the dialler restarted: its manager is not the one that asked
        peer, addr = target
        host = multiaddr_host(addr)
        j = self.by_host.get(host) if host is not None else None
        nb = self.nodes[j] if j is not None else None
        if (
            j is None
            or nb is None
            or nb.pid != peer  # the handshake proves another peer id
            or not nb.up
            or (self.cuts and self.cut(i, j) and self.cut(j, i))
        ):
            self.dials_failed += 1
            self._outputs(na, na.links.dial_failed(peer, na.now(t)), t)
            self._arm_links(na, t)
            return
        self._admit(i, j, t)

    def _admit(self, a: int, b: int, t: float) -> None:
        """A connection ``a`` dialled to ``b`` is up: both managers decide
        whether it becomes a link (the dialler's with outbound=True)."""
        na, nb = self.nodes[a], self.nodes[b]
        e = _key(a, b)
        link = self.links.setdefault(e, Link())
        out_a = na.links.opened(nb.pid, nb.host, True, na.now(t))
        out_b = nb.links.opened(na.pid, na.host, False, nb.now(t))
        ok_a, ok_b = type(out_a[0]) is Admitted, type(out_b[0]) is Admitted
        # what else admission decided: an eviction closes another link (a
        # Close of this very peer is the simultaneous-dial case below)
        for node, outs, other in ((na, out_a, nb), (nb, out_b, na)):
            rest = [o for o in outs[1:] if not (type(o) is Close and o.peer == other.pid)]
            self._outputs(node, rest, t)
        if ok_a and ok_b:
            if link.connected:
                # both dialled at once and both ends keep this one (the lower
                # peer id's): the older connection goes, the managers already
                # replaced it; the replicators see a new stream
                self._drop_connection(link, a, b, t)
            link.connected = True
            link.epoch += 1
            link.dialler = a
            na.peers.add(b)
            nb.peers.add(a)
            na.ever.add(b)
            nb.ever.add(a)
            if self._may_share(na, b):
                na.rep.note_addresses(nb.pid, [nb.addr])  # we dialled it there
            self.enqueue(na, (J_CONNECT, b), t)
            self.enqueue(nb, (J_CONNECT, a), t)
        elif link.connected:
            if ok_a or ok_b:
                # one end swapped to the new connection, the other refused it:
                # nothing consistent is left of the old link, close it
                self.close_link(a, b, t)
        else:
            # refused at one end: closed at once, never a link
            for node, ok, other in ((na, ok_a, nb), (nb, ok_b, na)):
                if ok:
                    self._outputs(node, node.links.closed(other.pid, node.now(t)), t)
        self._arm_links(na, t)
        self._arm_links(nb, t)

    def _drop_connection(self, link: Link, a: int, b: int, t: float) -> None:
        link.connected = False
        link.epoch += 1
        self.enqueue(self.nodes[a], (J_DISCONNECT, b), t)
        self.enqueue(self.nodes[b], (J_DISCONNECT, a), t)

    def close_link(self, a: int, b: int, t: float, initiator: int | None = None) -> None:
        """Close the link between ``a`` and ``b``; both managers hear of it
        (and may dial others).  The ``initiator``'s replicator already
        dropped the peer."""
        link = self.links.get(_key(a, b))
        if link is None or not link.connected:
            return
        link.connected = False
        link.epoch += 1
        self.nodes[a].peers.discard(b)
        self.nodes[b].peers.discard(a)
        for i, j in ((a, b), (b, a)):
            node = self.nodes[i]
            if not node.up:
                continue
            if i != initiator:
                self.enqueue(node, (J_DISCONNECT, j), t)
            self._outputs(node, node.links.closed(self.nodes[j].pid, node.now(t)), t)
            self._arm_links(node, t)

    def neighbours(self, i: int) -> list[int]:
        """Nodes ``i`` dials on its own, or that dial it (the topology)."""
        mine = self.nodes[i].bootstrap
        return [n.idx for n in self.nodes if n.idx in mine or i in n.bootstrap]

    def connected_peers(self, i: int) -> list[int]:
        return sorted(self.nodes[i].peers)

    def dialled_by(self, a: int, b: int) -> bool:
        """Is the link between ``a`` and ``b`` up, and one ``a`` dialled?"""
        link = self.links.get(_key(a, b))
        return link is not None and link.connected and link.dialler == a

    def link_counts(self, i: int) -> LinkCounts:
        node = self.nodes[i]
        c = LinkCounts()
        for j in node.peers:
            inbound = self.links[_key(i, j)].dialler != i
            honest = self.nodes[j].honest
            c.inbound += inbound
            c.outbound += not inbound
            c.honest += honest
            c.attacker += not honest
            c.attacker_inbound += inbound and not honest
        return c

    def node_down(self, i: int, t: float) -> None:
        node = self.nodes[i]
        if not node.up:
            return
        node.up = False
        for j in sorted(node.peers):
            self.close_link(i, j, t, initiator=i)
        node.jobs.clear()
        node.busy = False
        node.epoch += 1
        node.tick_at = None
        node.ltick_at = None

    def node_up(self, i: int, t: float) -> None:
        """A restart: same store, fresh replication and link machines (both
        hold their state in memory), which dial the bootstrap list again."""
        node = self.nodes[i]
        if node.up:
            return
        node.up = True
        node.retired.append(node.rep.stats)
        node.retired_links.append(node.links.stats)
        node.rep = Replicator(node.ledger, self.rng, self.config)
        node.rep.set_self(node.pid, [node.addr])
        node.links = LinkManager(node.pid, node.limits)
        if self.started:
            self._set_bootstrap(node, t)

    def publish(self, node: SimNode, raw: bytes, t: float) -> None:
        self._enqueue_at(node, (J_PUBLISH, raw), t)

    def call_on(self, node: SimNode, fn: Callable[[SimNode, float], list[Any]], t: float) -> None:
        """Run ``fn`` as a job on ``node``'s CPU at ``t`` (workload and
        attacker actions)."""
        self._enqueue_at(node, (J_CALL, fn), t)

    def _enqueue_at(self, node: SimNode, job: Job, t: float) -> None:
        # A job for later joins the queue at its time: queued now, it would
        # either run early (behind other jobs) or hold the idle CPU until
        # then, with every frame that arrives meanwhile waiting behind it.
        if t > self.now:
            self.at(t, lambda now: self.enqueue(node, job, now))
        else:
            self.enqueue(node, job, t)


def _key(a: int, b: int) -> Edge:
    return (a, b) if a < b else (b, a)
