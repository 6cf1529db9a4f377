"""The node's machine driver and commit barrier (PROTOCOL.md §18; DESIGN §10),
under trio's mock clock: nothing here waits in real time."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import ClassVar

import pytest
import trio
import trio.testing

from node.driver import MachineDriver
from node.effects import CommitFailed, Effects
from node.replication import ReplicationService
from node.storage import SqliteEventStore, open_database
from protocol.core.machine import Now
from protocol.log.ledger import Ledger
from protocol.sync.replication import Replicator, Send

from .conftest import FAST, History


class Countdown:
    """A toy machine: due at the times it was given, one output per tick."""

    def __init__(self, times: list[float]) -> None:
        self.times = sorted(times)
        self.ticked: list[float] = []

    def next_deadline(self) -> float | None:
        return self.times[0] if self.times else None

    def tick(self, now: Now) -> list[str]:
        out = []
        while self.times and self.times[0] <= now.mono:
            self.times.pop(0)
            self.ticked.append(now.mono)
            out.append(f"tick@{now.mono:g}")
        return out

    def add(self, t: float, now: Now) -> list[str]:
        self.times = sorted([*self.times, t])
        return []


def _clock() -> Now:
    return Now(trio.current_time(), 0)


async def test_the_driver_wakes_at_the_machines_deadlines_and_no_more(
    autojump_clock: trio.testing.MockClock,
) -> None:
    machine = Countdown([5.0, 12.0])
    done: list[str] = []
    driver = MachineDriver("toy", machine, done.extend, clock=_clock)
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run)
        await trio.sleep(6)
        assert done == ["tick@5"]
        # a call that moves the deadline earlier re-arms the timer at once
        driver.call(lambda now: machine.add(now.mono + 1, now))
        await trio.sleep(1.5)
        assert done == ["tick@5", "tick@7"]
        await trio.sleep(100)
        nursery.cancel_scope.cancel()
    assert done == ["tick@5", "tick@7", "tick@12"]
    assert driver.ticks == 3  # no polling: one wake-up per deadline


async def test_outputs_wait_for_their_commit_and_go_out_in_order() -> None:
    log: list[str] = []

    async def commit() -> None:
        log.append("commit")

    effects: Effects[str] = Effects(commit, lambda outs: log.extend(outs))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(effects.run)
        effects.submit(["a1", "a2"])
        effects.submit(["b1"])
        assert log == []  # nothing is carried out before the commit
        await effects.durable()
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    # one commit covered both batches (group commit), then both in order
    assert log == ["commit", "a1", "a2", "b1"]
    assert effects.commits == 1


async def test_a_failing_commit_forwards_and_acknowledges_nothing() -> None:
    sent: list[str] = []

    async def commit() -> None:
        raise OSError("disk full")

    effects: Effects[str] = Effects(commit, lambda outs: sent.extend(outs))
    with pytest.RaisesGroup(pytest.RaisesExc(OSError, match="disk full"), flatten_subgroups=True):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(effects.run)
            effects.submit(["forward event"])
            with pytest.raises(CommitFailed):
                await effects.durable()  # the RPC waiting on it gets an error
    assert sent == []
    with pytest.raises(CommitFailed):
        effects.submit(["later"])


async def test_a_replicated_event_is_forwarded_only_after_its_commit(
    tmp_path: object,
) -> None:
    """The real replication service over a real SQLite store whose commit
    fails: the event is in memory, but no frame that forwards it leaves,
    and the publishing caller is told."""
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    h = History()
    store = SqliteEventStore(open_database(tmp_path / "events.sqlite"))
    ledger = Ledger(FAST, store=store)

    class NoLinks:
        links: ClassVar[dict[str, object]] = {}
        on_closed: ClassVar[list[object]] = []
        on_dialled = None

    service = ReplicationService(ledger, store, NoLinks())  # type: ignore[arg-type]
    service.replicator = Replicator(ledger, random.Random(1))
    sent: list[Send] = []

    def carry_out(outputs: Sequence[object]) -> None:
        sent.extend(o for o in outputs if isinstance(o, Send))

    def failing_commit() -> None:
        raise OSError("disk full")

    store.commit_now = failing_commit  # type: ignore[method-assign]
    service.effects = Effects(store.commit, carry_out)
    service.driver = MachineDriver("replication", service.replicator, service.effects.submit)
    # a linked peer, so that the event would be pushed to it
    service.driver.call(lambda now: service.replicator.connect("peer", now))
    sent.clear()
    with pytest.RaisesGroup(OSError, flatten_subgroups=True):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(service.effects.run)
            with pytest.raises(CommitFailed):
                await service.publish(h.genesis.raw)
    assert ledger.has(h.genesis.id)  # in memory...
    assert sent == []  # ...but never forwarded
    assert store.staged == 1  # and still waiting for a commit


def test_a_batch_credits_each_deliverer_once_and_tells_of_every_event(tmp_path: object) -> None:
    """Eviction keeps the links that most recently delivered an event first
    (§17.1.1): one credit per peer and batch of outputs says that; every
    delivered event is still told to the subscribers, in order."""
    from pathlib import Path

    from protocol.sync.types import Delivered

    assert isinstance(tmp_path, Path)
    store = SqliteEventStore(open_database(tmp_path / "events.sqlite"))
    ledger = Ledger(FAST, store=store)
    credited: list[str] = []

    class CountingLinks:
        links: ClassVar[dict[str, object]] = {}
        on_closed: ClassVar[list[object]] = []
        on_dialled = None

        def delivered_first(self, peer: str) -> None:
            credited.append(peer)

    service = ReplicationService(ledger, store, CountingLinks())  # type: ignore[arg-type]
    told: list[object] = []
    service.on_delivered = lambda note: told.append(note["event_id"])
    h = History()
    events = [h.genesis, h.add("a1", "d0", "d1", ["g"]), h.add("a2", "d0", "d2", ["g"])]
    sources = ["alice", "alice", "bob"]
    service._carry_out([Delivered(e, s) for e, s in zip(events, sources, strict=True)])
    assert credited == ["alice", "bob"]
    assert told == [e.id.hex() for e in events]
    service._carry_out([Delivered(events[0], "alice"), Delivered(events[1], None)])
    assert credited == ["alice", "bob", "alice"]  # a new batch: credited again
    store.close()
