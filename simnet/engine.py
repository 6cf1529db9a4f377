"""The discrete-event core: virtual time, links, node job queues.

One heap keyed by (time, sequence number) orders everything, and one seeded
``random.Random`` draws everything (latency, loss, topology, workload, the
replicators' own choices), so a scenario and a seed fix the whole trace.

Each node is a single virtual CPU: frames, timer ticks, link changes and
local actions are jobs run one at a time, each costing virtual time
(``Cpu``); what a job emits leaves when the job ends.  Links are FIFO per
direction (a libp2p stream), with serialisation delay when a bandwidth is
set and a latency drawn per frame.
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
from protocol.log.ledger import Ledger
from protocol.sync.replication import (
    Delivered,
    Disconnect,
    Misbehaved,
    ReplicationConfig,
    Replicator,
    Send,
)

from . import topology as topo
from .ledgers import CachedVerifier
from .scenario import Scenario

# heap entry kinds
_ARRIVE, _RUN, _TICK, _CALL = 0, 1, 2, 3
# job kinds
J_FRAME, J_PUBLISH, J_TICK, J_CONNECT, J_DISCONNECT, J_CALL = range(6)

Job = tuple[Any, ...]
Edge = tuple[int, int]


@dataclass(slots=True)
class Link:
    connected: bool = False
    epoch: int = 0
    blocked_until: float = 0.0
    # per direction: 0 is low index -> high index
    free_at0: float = 0.0
    free_at1: float = 0.0
    last0: float = 0.0
    last1: float = 0.0


class SimNode:
    """One simulated node: a Ledger and a Replicator plus its job queue."""

    def __init__(self, idx: int, honest: bool, ledger: Ledger) -> None:
        self.idx = idx
        self.pid = f"n{idx:04d}"
        self.honest = honest
        self.role = "honest" if honest else "attacker"
        self.ledger = ledger
        self.rep: Any = None
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
        #: stats of replication machines this node ran before a restart
        self.retired: list[Any] = []

    def now(self, t: float) -> Now:
        """Virtual time ``t`` as this node's machines see it: its wall clock
        is off by its ``skew`` (seconds)."""
        return Now(t, SIM_EPOCH_MS + int((t + self.skew) * 1000))


class Engine:
    def __init__(self, scenario: Scenario, observer: Any) -> None:
        self.sc = scenario
        self.rng = random.Random(scenario.seed)
        self.params = NetworkParams(
            network_id=scenario.network_id, genesis_pow_bits=0, event_pow_bits=0
        )
        self.verify = CachedVerifier()
        self.config = ReplicationConfig(**scenario.replication)
        self.obs = observer
        self.now = 0.0
        self._heap: list[tuple[Any, ...]] = []
        self._seq = 0
        self.nodes: list[SimNode] = []
        self.edges: set[Edge] = set()
        self.adj: dict[int, set[int]] = {}
        self.links: dict[Edge, Link] = {}
        self.cuts: list[tuple[list[int], bool]] = []  # (group of each node, asymmetric)
        self._lat = topo.sampler(scenario.latency, self.rng)
        self.heap_events = 0
        self.frames_dropped = 0
        self.retransmissions = 0

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
            else:
                a(t)
        self.now = until

    # -- nodes and jobs -----------------------------------------------------

    def add_node(self, honest: bool, ledger: Ledger | None = None) -> SimNode:
        led = ledger if ledger is not None else Ledger(self.params, store=None, verify=self.verify)
        node = SimNode(len(self.nodes), honest, led)
        node.rep = Replicator(led, self.rng, self.config)
        self.nodes.append(node)
        return node

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
        elif kind == J_CONNECT:
            outs = rep.connect(self.nodes[job[1]].pid, node.now(t))
        elif kind == J_DISCONNECT:
            outs = rep.disconnect(self.nodes[job[1]].pid, node.now(t))
        else:
            outs = job[1](node, t)
        for o in outs:
            if type(o) is not Send:
                cost += cpu.per_event
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

    def _outputs(self, node: SimNode, outs: list[Any], t: float) -> None:
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
                dst = self._pid_index(o.peer)
                if dst is not None:
                    self.close_link(node.idx, dst, t, initiator=node.idx, until=o.until)
            elif tp is Misbehaved:
                node.misbehaved_reports += 1
                obs.misbehaved(node, o.peer, o.error, t)

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

    def add_edge(self, a: int, b: int, t: float) -> None:
        e = _key(a, b)
        self.edges.add(e)
        self.adj.setdefault(a, set()).add(b)
        self.adj.setdefault(b, set()).add(a)
        self.links.setdefault(e, Link())
        self.open_link(a, b, t)

    def remove_edge(self, a: int, b: int, t: float) -> None:
        e = _key(a, b)
        self.edges.discard(e)
        self.adj.get(a, set()).discard(b)
        self.adj.get(b, set()).discard(a)
        self.close_link(a, b, t)

    def open_link(self, a: int, b: int, t: float) -> None:
        e = _key(a, b)
        link = self.links.get(e)
        na, nb = self.nodes[a], self.nodes[b]
        if link is None or link.connected or e not in self.edges or not (na.up and nb.up):
            return
        if link.blocked_until > t or (self.cuts and (self.cut(a, b) and self.cut(b, a))):
            return
        link.connected = True
        link.epoch += 1
        self.enqueue(na, (J_CONNECT, b), t)
        self.enqueue(nb, (J_CONNECT, a), t)

    def close_link(
        self, a: int, b: int, t: float, initiator: int | None = None, until: float = 0.0
    ) -> None:
        link = self.links.get(_key(a, b))
        if link is None:
            return
        if until > link.blocked_until:
            link.blocked_until = until
            self.at(until, lambda now: self.open_link(a, b, now))
        if not link.connected:
            return
        link.connected = False
        link.epoch += 1
        for i, j in ((a, b), (b, a)):
            if i != initiator and self.nodes[i].up:
                self.enqueue(self.nodes[i], (J_DISCONNECT, j), t)

    def neighbours(self, i: int) -> list[int]:
        return sorted(self.adj.get(i, ()))

    def connected_peers(self, i: int) -> list[int]:
        out = []
        for j in sorted(self.adj.get(i, ())):
            link = self.links.get(_key(i, j))
            if link is not None and link.connected:
                out.append(j)
        return out

    def node_down(self, i: int, t: float) -> None:
        node = self.nodes[i]
        if not node.up:
            return
        for j in self.neighbours(i):
            self.close_link(i, j, t, initiator=i)
        node.up = False
        node.jobs.clear()
        node.busy = False
        node.epoch += 1
        node.tick_at = None

    def node_up(self, i: int, t: float) -> None:
        """A restart: same store, fresh replication machine."""
        node = self.nodes[i]
        if node.up:
            return
        node.up = True
        node.retired.append(node.rep.stats)
        node.rep = Replicator(node.ledger, self.rng, self.config)
        for j in self.neighbours(i):
            self.open_link(i, j, t)

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
