"""The replication machine (PROTOCOL.md §11.4-§11.5), driven over an in-memory link.

``Net`` is a tiny deterministic driver: it delivers ``Send`` outputs to the
other machine's ``receive``, choosing among links with a seeded RNG (so
frames of different links interleave in shuffled order) while each link
stays FIFO, as a libp2p stream is.  Virtual time advances to the machines'
``next_deadline`` only when nothing is in flight.
"""

from __future__ import annotations

import itertools
import random
from collections import deque

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.core import canonical
from protocol.core.errors import BadSignatureError, NonCanonicalError, SizeLimitError
from protocol.core.machine import Now
from protocol.log.events import Event
from protocol.log.ledger import Ledger
from protocol.log.store import Escrow
from protocol.sync.reconcile import MAX_RANK, Mode, Range, listed_items
from protocol.sync.replication import (
    Delivered,
    Disconnect,
    Misbehaved,
    Output,
    Pause,
    ReplicationConfig,
    Replicator,
    Send,
)
from protocol.sync.wants import ANNOUNCED, RETRY, WantQueue
from protocol.sync.wire import (
    FLAG_OWN,
    AncestryFrame,
    AnnounceFrame,
    EventsFrame,
    ReconcileFrame,
    RequestFrame,
    decode_frame,
    encode_frame,
)

from .conftest import FAST, History, hypothesis_settings

#: virtual time t, as every machine entry point takes it
at = Now.virtual


def make_events(accounts: int, per_account: int, seed: str = "s") -> list[Event]:
    """Events of several accounts, each account's events parents first."""
    out: list[Event] = []
    for a in range(accounts):
        h = History(name=f"{seed}{a}")
        out.append(h.genesis)
        prev = "g"
        for i in range(per_account - 1):
            label = f"p{i}"
            h.profile(label, "d0", f"n{i}", [prev])
            out.append(h.events[label])
            prev = label
    return out


class Net:
    def __init__(self, seed: int = 1, config: ReplicationConfig | None = None) -> None:
        self.rng = random.Random(seed)
        self.config = config or ReplicationConfig()
        self.nodes: dict[str, Replicator] = {}
        self.links: dict[tuple[str, str], deque[bytes]] = {}
        self.now = 0.0
        self.delivered: dict[str, list[Delivered]] = {}
        self.outputs: dict[str, list[Output]] = {}

    def add(self, name: str, events: list[Event] = ()) -> Replicator:  # type: ignore[assignment]
        ledger = Ledger(FAST)
        for ev in events:
            ledger.ingest(ev.raw)
        node = Replicator(ledger, random.Random(f"{name}"), self.config)
        self.nodes[name] = node
        self.delivered[name] = []
        self.outputs[name] = []
        return node

    def handle(self, name: str, outs: list[Output]) -> None:
        for o in outs:
            self.outputs[name].append(o)
            if isinstance(o, Send):
                if (name, o.peer) in self.links:
                    self.links[(name, o.peer)].append(o.frame)
            elif isinstance(o, Disconnect):
                self.cut(name, o.peer)
            elif isinstance(o, Delivered):
                self.delivered[name].append(o)

    def connect(self, a: str, b: str) -> None:
        self.links[(a, b)] = deque()
        self.links[(b, a)] = deque()
        self.handle(a, self.nodes[a].connect(b, at(self.now)))
        self.handle(b, self.nodes[b].connect(a, at(self.now)))

    def cut(self, a: str, b: str) -> None:
        self.links.pop((a, b), None)
        self.links.pop((b, a), None)
        if b in self.nodes:
            self.handle(b, self.nodes[b].disconnect(a, at(self.now)))

    def run(self, until: float | None = None, max_steps: int = 200_000) -> None:
        """Deliver frames; when none are in flight, advance to the next timer
        (only while ``until`` allows)."""
        for _ in range(max_steps):
            busy = sorted(k for k, q in self.links.items() if q)
            if busy:
                src, dst = self.rng.choice(busy)
                frame = self.links[(src, dst)].popleft()
                if dst in self.nodes:
                    self.handle(dst, self.nodes[dst].receive(src, frame, at(self.now)))
                continue
            if until is None:
                return
            deadlines = [d for n in self.nodes.values() if (d := n.next_deadline()) is not None]
            nxt = min(deadlines, default=None)
            if nxt is None or nxt > until:
                self.now = until
                return
            self.now = max(self.now, nxt)
            for name, node in self.nodes.items():
                self.handle(name, node.tick(at(self.now)))
        raise AssertionError("the network did not settle")

    def ids(self, name: str) -> set[bytes]:
        return set(self.nodes[name].ledger.event_ids())


def test_disjoint_and_overlapping_sets_converge() -> None:
    events = make_events(6, 5)
    a_events = events[:20]
    b_events = events[:5] + events[10:]  # b lacks 5 of a's, a lacks 10 of b's
    net = Net(seed=7)
    net.add("a", a_events)
    net.add("b", b_events)
    net.connect("a", "b")
    net.run()
    everything = {e.id for e in events}
    assert net.ids("a") == net.ids("b") == everything
    # only the difference moved: each side received exactly what it lacked
    a, b = net.nodes["a"], net.nodes["b"]
    assert a.stats.events_delivered == 10 and b.stats.events_delivered == 5
    assert a.stats.duplicate_events == 0 and b.stats.duplicate_events == 0
    for acc in {e.account_id for e in events}:
        assert a.ledger.state(acc) == b.ledger.state(acc)
    assert a.stats.reconcile_completed == 1 and b.stats.reconcile_completed == 1


def test_late_joiner_catches_up_by_reconciliation_alone() -> None:
    events = make_events(20, 8)  # 160 events
    net = Net(seed=3)
    net.add("a", events)
    net.add("b", events)
    net.add("late")
    net.connect("a", "b")
    net.run()
    net.connect("late", "a")
    net.run()
    assert net.ids("late") == {e.id for e in events}
    late = net.nodes["late"]
    assert late.stats.events_delivered == len(events)
    assert late.stats.duplicate_events == 0
    # it arrived parents first: nothing had to wait in escrow
    assert late.stats.events_escrowed == 0
    assert len(late.ledger.escrow) == 0


def test_chain_of_five_propagates_a_published_event_by_push() -> None:
    h = History(name="chain")
    base = [h.genesis]
    net = Net(seed=5)
    names = [f"n{i}" for i in range(5)]
    for n in names:
        net.add(n, base)
    for x, y in itertools.pairwise(names):
        net.connect(x, y)
    net.run()
    rounds = sum(n.stats.reconcile_rounds for n in net.nodes.values())
    new = h.profile("p", "d0", "hello", ["g"])
    net.handle("n0", net.nodes["n0"].publish(new.raw, at(net.now)))
    net.run()  # no timers fire: only push can move the event
    for n in names:
        assert new.id in net.ids(n), n
    assert sum(n.stats.reconcile_rounds for n in net.nodes.values()) == rounds
    # each node got it from its upstream neighbour and delivered it once
    for up, n in itertools.pairwise(names):
        (d,) = [d for d in net.delivered[n] if d.event.id == new.id]
        assert d.source == up


def test_announce_and_request_when_not_eager() -> None:
    h = History(name="lazy")
    net = Net(seed=2, config=ReplicationConfig(eager_fanout=0))
    net.add("a", [h.genesis])
    net.add("b", [h.genesis])
    net.connect("a", "b")
    net.run()
    new = h.profile("p", "d0", "x", ["g"])
    net.handle("a", net.nodes["a"].publish(new.raw, at(net.now)))
    net.run()
    assert new.id in net.ids("b")
    assert net.nodes["a"].stats.ids_announced == 1
    assert net.nodes["b"].stats.ids_requested == 1


def test_child_first_waits_in_escrow_and_its_parent_is_requested() -> None:
    h = History(name="esc")
    h.profile("p1", "d0", "one", ["g"])
    h.profile("p2", "d0", "two", ["p1"])
    net = Net(seed=4)
    net.add("a", [h.genesis, h.events["p1"], h.events["p2"]])
    b = net.add("b", [h.genesis])
    # connect without reconciling (links only), then push the child alone
    net.links[("a", "b")] = deque()
    net.links[("b", "a")] = deque()
    for x, y in (("a", "b"), ("b", "a")):
        net.handle(x, [o for o in net.nodes[x].connect(y, at(0.0)) if not isinstance(o, Send)])
    outs = b.receive("a", encode_frame(EventsFrame((h.events["p2"].raw,))), at(0.0))
    (req,) = [o for o in outs if isinstance(o, Send)]
    # the missing parent is fetched with its ancestry, minus what b holds
    assert decode_frame(req.frame) == AncestryFrame((h.events["p1"].id,), (h.genesis.id,))
    assert h.events["p2"].id in b.ledger.escrow
    net.handle("b", outs)
    net.run()
    assert net.ids("b") == {h.genesis.id, h.events["p1"].id, h.events["p2"].id}
    assert [d.event.id for d in net.delivered["b"]] == [h.events["p1"].id, h.events["p2"].id]


# -- misbehaviour --------------------------------------------------------------


def _pair(config: ReplicationConfig | None = None) -> tuple[Replicator, History]:
    h = History(name="victim")
    ledger = Ledger(FAST)
    ledger.ingest(h.genesis.raw)
    node = Replicator(ledger, random.Random(0), config or ReplicationConfig())
    node.connect("evil", at(0.0))
    return node, h


def _disconnected(outs: list[Output]) -> Disconnect:
    (d,) = [o for o in outs if isinstance(o, Disconnect)]
    return d


def test_garbage_is_punished_with_backoff() -> None:
    node, _ = _pair()
    outs = node.receive("evil", b"\xc1garbage", at(1.0))
    assert any(isinstance(o, Misbehaved) for o in outs)
    d = _disconnected(outs)
    assert d.until > 1.0
    assert node.peers() == []
    # a redial before the back-off ends is refused; the next ban lasts longer
    assert isinstance(node.connect("evil", at(2.0))[0], Disconnect)
    assert node.connect("evil", at(d.until + 1))
    d2 = _disconnected(node.receive("evil", b"\x00", at(d.until + 2)))
    assert d2.until - (d.until + 2) > d.until - 1.0


def test_forged_event_is_not_stored_and_costs_the_peer() -> None:
    node, h = _pair()
    good = h.profile("p", "d0", "x", ["g"])
    fields = canonical.decode_flat(good.raw, 4096)
    fields[-1] = bytes(64)  # a signature that does not verify
    forged = canonical.encode_flat(fields)
    outs = node.receive("evil", encode_frame(EventsFrame((forged,))), at(1.0))
    (m,) = [o for o in outs if isinstance(o, Misbehaved)]
    assert isinstance(m.error, BadSignatureError)
    _disconnected(outs)
    assert not node.ledger.has(good.id) and good.id not in node.ledger.escrow
    assert not any(isinstance(o, Delivered) for o in outs)


def test_oversized_and_non_canonical_frames_are_refused() -> None:
    node, h = _pair(ReplicationConfig(max_frame_bytes=4096))
    good = h.profile("p", "d0", "x", ["g"])
    big = encode_frame(EventsFrame((good.raw,) * 20))
    assert len(big) > 4096
    outs = node.receive("evil", big, at(1.0))
    (m,) = [o for o in outs if isinstance(o, Misbehaved)]
    assert isinstance(m.error, SizeLimitError)
    _disconnected(outs)
    assert not node.ledger.has(good.id)

    node2, _h2 = _pair()
    # the frame [1, 3, ids] with the type written as a 16-bit integer
    bad = b"\x93\x01\xcd\x00\x03\xc4\x00"
    outs = node2.receive("evil", bad, at(1.0))
    (m,) = [o for o in outs if isinstance(o, Misbehaved)]
    assert isinstance(m.error, NonCanonicalError)


def test_repeating_valid_events_is_not_an_offence() -> None:
    node, h = _pair()
    good = h.profile("p", "d0", "x", ["g"])
    frame = encode_frame(EventsFrame((good.raw,)))
    outs: list[Output] = []
    for i in range(50):
        outs += node.receive("evil", frame, at(1.0 + i))
    assert not any(isinstance(o, Misbehaved | Disconnect) for o in outs)
    assert node.stats.duplicate_events == 49
    assert node.score("evil") > 0
    assert node.peers() == ["evil"]


def test_request_flood_is_rate_limited_then_cut() -> None:
    config = ReplicationConfig(serve_rate=10.0, serve_burst=10.0, max_queued_frames=2)
    node, h = _pair(config)
    frame = encode_frame(RequestFrame((h.genesis.id,)))
    outs: list[Output] = []
    for _ in range(10):
        outs += node.receive("evil", frame, at(0.0))
    served = [o for o in outs if isinstance(o, Send)]
    # the burst (10 ids) is served, then 2 frames wait, then floods cost score
    assert 1 <= len(served) <= 11
    assert node.next_deadline() is not None
    for _ in range(20):
        outs += node.receive("evil", frame, at(0.0))
    _disconnected(outs)


def test_queued_requests_are_served_when_the_budget_refills() -> None:
    config = ReplicationConfig(serve_rate=1.0, serve_burst=1.0, max_queued_frames=4)
    node, h = _pair(config)
    frame = encode_frame(RequestFrame((h.genesis.id,)))
    sends = [o for o in node.receive("evil", frame, at(0.0)) if isinstance(o, Send)]
    # the initial reconciliation frame plus the answer
    assert len([s for s in sends if isinstance(decode_frame(s.frame), EventsFrame)]) == 1
    assert not node.receive("evil", frame, at(0.0))
    deadline = node.next_deadline()
    assert deadline is not None and 0.0 < deadline <= 1.0
    later = node.tick(at(deadline))
    assert [decode_frame(s.frame) for s in later if isinstance(s, Send)] == [
        EventsFrame((h.genesis.raw,))
    ]


def test_periodic_reconciliation_repairs_a_missed_push() -> None:
    h = History(name="miss")
    net = Net(seed=9, config=ReplicationConfig(reconcile_interval=5.0))
    net.add("a", [h.genesis])
    net.add("b", [h.genesis])
    net.connect("a", "b")
    net.run()
    new = h.profile("p", "d0", "x", ["g"])
    # a publishes while its pushes are lost
    outs = net.nodes["a"].publish(new.raw, at(net.now))
    assert any(isinstance(o, Send) for o in outs)
    net.run(until=20.0)
    assert new.id in net.ids("b")


@pytest.mark.parametrize("seed", [11, 12])
def test_four_nodes_with_scattered_events_converge(seed: int) -> None:
    events = make_events(8, 4, seed=f"x{seed}")
    rng = random.Random(seed)
    net = Net(seed=seed)
    names = ["a", "b", "c", "d"]
    held: dict[str, list[Event]] = {n: [] for n in names}
    for n in names:
        cut = {acc: rng.randint(0, 4) for acc in {e.account_id for e in events}}
        kept: dict[bytes, int] = {}
        for ev in events:
            k = kept.get(ev.account_id, 0)
            if k < cut[ev.account_id]:
                held[n].append(ev)
                kept[ev.account_id] = k + 1
        net.add(n, held[n])
    for x, y in (("a", "b"), ("b", "c"), ("c", "d"), ("d", "a")):
        net.connect(x, y)
    net.run(until=100.0)
    everything = {e.id for n in names for e in held[n]}
    assert len(everything) > max(len(held[n]) for n in names)
    for n in names:
        assert net.ids(n) == everything, n


@pytest.mark.parametrize("failure", ["missing", "timeout", "disconnect"])
def test_a_failed_request_moves_to_another_peer_that_offered_the_id(failure: str) -> None:
    h = History(name="alt")
    new = h.profile("p", "d0", "x", ["g"])
    ledger = Ledger(FAST)
    ledger.ingest(h.genesis.raw)
    node = Replicator(ledger, random.Random(0))
    node.connect("p1", at(0.0))
    node.connect("p2", at(0.0))

    def requests(outs: list[Output]) -> list[tuple[str, object]]:
        return [
            (o.peer, decode_frame(o.frame))
            for o in outs
            if isinstance(o, Send) and isinstance(decode_frame(o.frame), RequestFrame)
        ]

    announce = encode_frame(AnnounceFrame((new.id,)))
    assert requests(node.receive("p1", announce, at(1.0))) == [("p1", RequestFrame((new.id,)))]
    assert requests(node.receive("p2", announce, at(1.0))) == []  # already asked p1
    if failure == "missing":
        outs = node.receive("p1", encode_frame(EventsFrame((), (new.id,))), at(2.0))
    elif failure == "timeout":
        deadline = node.next_deadline()
        assert deadline is not None and deadline <= 1.0 + ReplicationConfig().request_timeout
        outs = node.tick(at(deadline))
    else:
        outs = node.disconnect("p1", at(2.0))
    assert requests(outs) == [("p2", RequestFrame((new.id,)))]
    outs = node.receive("p2", encode_frame(EventsFrame((new.raw,))), at(3.0))
    assert [o.event.id for o in outs if isinstance(o, Delivered)] == [new.id]


def test_reconciliation_bytes_follow_the_difference_between_machines() -> None:
    events = make_events(60, 10, seed="big")  # 600 events
    by_account: dict[bytes, list[Event]] = {}
    for ev in events:
        by_account.setdefault(ev.account_id, []).append(ev)
    costs = {}
    for d in (1, 20):
        # b lacks the last event of d accounts: a difference of d events
        tails = {evs[-1].id for evs in list(by_account.values())[:d]}
        net = Net(seed=d)
        a = net.add("a", events)
        b = net.add("b", [e for e in events if e.id not in tails])
        net.connect("a", "b")
        net.run()
        assert net.ids("b") == net.ids("a")
        moved = sum(len(e.raw) for e in events if e.id in tails)
        costs[d] = a.stats.bytes_sent + b.stats.bytes_sent - moved
        assert b.stats.events_delivered == d and b.stats.duplicate_events == 0
    naive = 32 * len(events)
    # both sides start a session on connect; each costs a few levels of
    # fingerprints plus about 1 KB per difference
    assert costs[1] < 3_000 < naive
    assert costs[20] < 3_000 + 20 * 1_200
    assert costs[20] > costs[1]


def _late_joiner(net: Net, config: ReplicationConfig, per_source: int) -> Replicator:
    late = Replicator(Ledger(FAST, escrow=Escrow(per_source=per_source)), random.Random(1), config)
    net.nodes["late"] = late
    net.delivered["late"] = []
    net.outputs["late"] = []
    return late


def test_deep_chains_arrive_parents_first_by_rank() -> None:
    """§11.4.3: reconciliation lists ids with the peer's ranks, and ids are
    requested lowest rank first, so chains far longer than the request
    window arrive parents first: nothing waits in escrow, nothing twice.
    (``push_limit=0``: a catch-up larger than what a peer pushes at once is
    offered in HAVE and fetched like this.)"""
    events = make_events(6, 60, seed="deep")  # six chains of 60
    config = ReplicationConfig(request_window=16, push_limit=0)
    net = Net(seed=8, config=config)
    net.add("a", events)
    late = _late_joiner(net, config, per_source=30)
    net.connect("late", "a")
    net.run(until=config.reconcile_interval - 1)
    assert net.ids("late") == {e.id for e in events}
    assert late.stats.events_escrowed == 0 and late.stats.ancestry_requests == 0
    assert late.stats.events_received == len(events)
    assert late.stats.ids_requested == len(events)


class _CarelessRanks(Replicator):
    """A peer whose ranks say nothing (all 0) or lie (children first)."""

    def __init__(self, *args: object, reverse: bool, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.reverse = reverse

    def _rank(self, value: int) -> int:
        return MAX_RANK - super()._rank(value) if self.reverse else 0


@pytest.mark.parametrize("reverse", [False, True], ids=["flat", "reversed"])
@pytest.mark.parametrize("ancestry_cap", [1024, 7])
def test_deep_chains_catch_up_through_a_small_escrow(ancestry_cap: int, reverse: bool) -> None:
    """Ranks are hints: from a peer that gives useless or lying ones, ids
    come children first.  Chains deeper than the escrow's quota are then
    fetched with their ancestry (capped answers are asked again), before
    the first periodic reconciliation."""
    events = make_events(6, 60, seed="deep")
    config = ReplicationConfig(request_window=16, max_ancestry_events=ancestry_cap, push_limit=0)
    net = Net(seed=8, config=config)
    ledger = Ledger(FAST)
    for ev in events:
        ledger.ingest(ev.raw)
    net.nodes["a"] = _CarelessRanks(ledger, random.Random("a"), config, reverse=reverse)
    net.delivered["a"], net.outputs["a"] = [], []
    late = _late_joiner(net, config, per_source=30)
    net.connect("late", "a")
    net.run(until=config.reconcile_interval - 1)
    assert net.ids("late") == {e.id for e in events}
    assert late.stats.ancestry_requests > 0 and late.stats.events_escrowed > 0
    assert len(late.ledger.escrow) == 0
    # each event crossed the link about once
    assert late.stats.events_received < 1.3 * len(events)
    assert late.stats.reconcile_rounds == 1 and late.stats.offences == 0


def test_ancestry_answer_is_parents_first_minus_what_the_peer_knows() -> None:
    node, h = _pair()
    labels = ["g"]
    for i in range(5):
        h.profile(f"p{i}", "d0", f"n{i}", [labels[-1]])
        labels.append(f"p{i}")
    for label in labels[1:]:
        node.ledger.ingest(h.events[label].raw)
    ev = h.events
    ask = AncestryFrame((ev["p4"].id, bytes(32)), (ev["p1"].id,))
    outs = node.receive("evil", encode_frame(ask), at(1.0))
    (answer,) = [decode_frame(o.frame) for o in outs if isinstance(o, Send)]
    assert answer == EventsFrame((ev["p2"].raw, ev["p3"].raw, ev["p4"].raw), (bytes(32),))


def test_reconcile_now_fetches_what_a_peer_holds_without_waiting_for_timers() -> None:
    """S5: a message shows the sender saw events we lack; the node asks for
    a reconciliation at once instead of waiting for the periodic one."""
    events = make_events(2, 3)
    net = Net(seed=11)
    net.add("a", events[:3])
    net.add("b", events[:3])
    net.connect("a", "b")
    net.run()
    for ev in events[3:]:  # b learns events without telling anyone (withheld)
        net.nodes["b"].ledger.ingest(ev.raw)
    assert net.ids("a") != net.ids("b")
    net.handle("a", net.nodes["a"].reconcile_now("b", at(net.now)))
    net.run()  # no timers fire
    assert net.ids("a") == {e.id for e in events}
    assert net.nodes["a"].reconcile_now("nobody", at(net.now)) == []


# -- the fetch queue (§11.4.3) -------------------------------------------------


@pytest.mark.parametrize("slack", [0, 1024])
@hypothesis_settings(300)
@given(
    st.lists(
        st.one_of(
            st.tuples(
                st.just("add"),
                st.integers(0, 3),
                st.sampled_from([RETRY, 0, 1, 2, 3, MAX_RANK, ANNOUNCED]),
            ),
            st.tuples(st.just("pop"), st.just(0), st.just(0)),
        ),
        max_size=400,
    )
)
def test_want_queue_pops_lowest_rank_then_oldest(
    slack: int, ops: list[tuple[str, int, int]]
) -> None:
    """Against a plain model: an id is queued once, at the lowest rank it
    was offered with; pops go by rank, then by when that rank was given.
    Slack 0 makes the queue sweep its stale entries at once."""
    queue = WantQueue(slack=slack)
    model: dict[bytes, tuple[int, int]] = {}
    for step, (op, n, rank) in enumerate(ops):
        eid = bytes([n]) * 32
        if op == "add":
            queue.add(eid, rank)
            if eid not in model or rank < model[eid][0]:
                model[eid] = (rank, step)
        elif model:
            expected = min(model, key=model.__getitem__)
            assert queue.pop() == expected
            del model[expected]
        else:
            with pytest.raises(IndexError):
                queue.pop()
        assert len(queue) == len(model) and all(e in queue for e in model)


def test_want_queue_sweeps_stale_entries_and_keeps_order() -> None:
    a, b, c = (bytes([i]) * 32 for i in range(3))
    queue = WantQueue(slack=0)
    for rank in range(10, -1, -1):  # offered again and again, lower each time
        queue.add(a, rank)
    queue.add(b, 5)
    queue.add(c, 0)
    queue.add(b, 6)  # a higher rank changes nothing
    assert len(queue) == 3 and len(queue._heap) <= 2 * 3
    assert [queue.pop(), queue.pop(), queue.pop()] == [a, c, b]
    assert not queue


# -- duplicates cost a lookup (§11.5.2) ------------------------------------------


def _old_history(n: int) -> list[bytes]:
    """An account of ``n`` profile events in a chain after its genesis."""
    h = History(name="old")
    prev = "g"
    for i in range(n):
        h.profile(f"p{i}", "d0", f"n{i}", [prev])
        prev = f"p{i}"
    return [e.raw for e in h.events.values()]


def test_a_duplicate_is_neither_decoded_nor_verified() -> None:
    raws = _old_history(20)
    ledger = Ledger(FAST)
    for raw in raws:
        ledger.ingest(raw)
    calls = {"decode": 0, "verify": 0}
    real_decode, real_verify = ledger.decode, ledger.verify

    def decode(raw: bytes, params: object) -> Event:
        calls["decode"] += 1
        return real_decode(raw, params)  # type: ignore[arg-type]

    def verify(event: Event, params: object) -> None:
        calls["verify"] += 1
        real_verify(event, params)  # type: ignore[arg-type]

    ledger.decode, ledger.verify = decode, verify  # type: ignore[method-assign]
    node = Replicator(ledger, random.Random(0))
    node.connect("peer", at(0.0))
    node.receive("peer", encode_frame(EventsFrame(tuple(raws))), at(1.0))
    assert calls == {"decode": 0, "verify": 0}
    assert node.stats.duplicate_events == len(raws)
    # a forged copy (same id, other signature) is not a duplicate: it is checked
    forged = bytearray(raws[5])
    forged[-1] ^= 1
    node.receive("peer", encode_frame(EventsFrame((bytes(forged),))), at(2.0))
    assert calls["decode"] == 1


def test_a_replay_flood_is_paused_then_cut_off_but_a_few_duplicates_are_free() -> None:
    config = ReplicationConfig(recent_events=8, duplicate_rate=10.0, duplicate_burst=60.0)
    raws = _old_history(60)
    ledger = Ledger(FAST)
    for raw in raws:
        ledger.ingest(raw)
    node = Replicator(ledger, random.Random(0), config)
    node.connect("replayer", at(0.0))
    node.connect("honest", at(0.0))
    old = encode_frame(EventsFrame(tuple(raws[:50])))  # none of the newest 8
    # an honest overlap: the newest events again, any number of times
    recent = encode_frame(EventsFrame(tuple(raws[-8:])))
    for i in range(20):
        outs = node.receive("honest", recent, at(1.0 + i))
        assert not any(isinstance(o, Pause | Misbehaved | Disconnect) for o in outs)
    # within the allowance: free
    assert not any(isinstance(o, Pause) for o in node.receive("replayer", old, at(1.0)))
    # beyond it: paused until the allowance is half back, and scored
    outs = node.receive("replayer", old, at(1.1))
    (pause,) = [o for o in outs if isinstance(o, Pause)]
    assert pause.peer == "replayer" and pause.until > 1.1
    assert node.stats.duplicate_pauses == 1
    # it goes on regardless: cut off
    t = 1.2
    while "replayer" in node.peers():
        node.receive("replayer", old, at(t))
        t += 0.1
        assert t < 100, "a replay flood was never cut off"
    assert node.peers() == ["honest"]
    assert node.stats.duplicates_unsolicited > 0


def test_an_answer_larger_than_its_question_is_charged_to_the_asking_peer() -> None:
    """One FP range with a wrong fingerprint, in the round that lists, is
    answered with every id held: that answer costs the asker its ranges and
    ids (§11.5.2), so repeating the question waits for the budget instead of
    making the node list its whole set again at once."""
    config = ReplicationConfig(reconcile_rate=50.0, reconcile_burst=50.0)
    node, _ = _pair(config)
    for ev in make_events(3, 100):
        node.ledger.ingest(ev.raw)
    held = node.ledger.event_count
    question = encode_frame(ReconcileFrame(9, FLAG_OWN, (Range(b"", Mode.FP, bytes(16)),), 4))

    def answers(outs: list[Output]) -> list[ReconcileFrame]:
        frames = [decode_frame(o.frame) for o in outs if isinstance(o, Send)]
        return [f for f in frames if isinstance(f, ReconcileFrame)]

    first = answers(node.receive("evil", question, at(1.0)))
    listed = sum(listed_items(r) for f in first for r in f.ranges)
    assert listed == held > config.reconcile_burst
    assert answers(node.receive("evil", question, at(1.0))) == []  # it waits
    deadline = node.next_deadline()
    # the budget went negative by about the answer's size: refilled at
    # 50 per second, the second question waits seconds, not a tick
    assert (
        deadline is not None
        and deadline - 1.0 >= (held - config.reconcile_burst) / config.reconcile_rate
    )
    assert answers(node.tick(at(deadline))) != []
