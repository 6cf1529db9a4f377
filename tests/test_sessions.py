"""Reconciliation sessions in the replication machine (PROTOCOL.md §11.3.5,
§11.5.2, §11.7.5): open ranges and solicited pushes, the bounds per peer,
and device records reconciled by item."""

from __future__ import annotations

import random

from protocol.core.machine import Now
from protocol.sync.reconcile import Mode, Range, shorts_to_blob
from protocol.sync.replication import ReplicationConfig, Send
from protocol.sync.sessions import (
    MAX_ANSWERED,
    MAX_AWAITING,
    MAX_GIVEN,
    MAX_OPEN_SPANS,
    Session,
    SessionTable,
)
from protocol.sync.softstate import record_item
from protocol.sync.wire import (
    AnnounceFrame,
    EventsFrame,
    RecordsFrame,
    RequestFrame,
    decode_frame,
    encode_frame,
)

from .conftest import History
from .test_replication import Net, make_events
from .test_replication_records import record

at = Now.virtual


def _ids_ranges(uppers: list[int]) -> tuple[Range, ...]:
    """IDS ranges (one short id each) ending at ``uppers``, then a SKIP to the end."""
    out = [
        Range(u.to_bytes(32, "big").rstrip(b"\x00"), Mode.IDS, shorts_to_blob([b"\x01" * 8]))
        for u in uppers
    ]
    return (*out, Range(b"", Mode.SKIP))


def test_open_ranges_close_with_their_final_answer() -> None:
    s = Session(0.0, records=False)
    s.sent(_ids_ranges([1 << 255]))  # [0, 2^255) open
    s.sent((Range(b"", Mode.SKIP),))  # needs no answer: nothing awaits
    assert len(s.awaiting) == 1 and s.spans == 1
    assert s.covers(5) and not s.covers(1 << 255)
    s.answered()
    assert not s.covers(5) and s.spans == 0
    table = SessionTable()
    table.start(7, records=True, now=0.0).sent(_ids_ranges([1 << 255]))
    assert not table.solicited(5)  # record ranges never make events solicited


def test_a_session_and_a_peers_sessions_are_bounded() -> None:
    s = Session(0.0, records=False)
    wide = [(k + 1) << 200 for k in range(MAX_OPEN_SPANS // 2)]
    for _ in range(MAX_AWAITING * 2):
        s.sent(_ids_ranges([1 << 250]))
    assert len(s.awaiting) == MAX_AWAITING
    for _ in range(5):
        s.sent(_ids_ranges(wide))
    assert s.spans <= MAX_OPEN_SPANS
    assert s.spans == sum(len(a.starts) for a in s.awaiting)
    table = SessionTable()
    for sid in range(MAX_ANSWERED + 5):
        table.answering(sid, records=False, now=0.0)
    assert len(table.theirs) == MAX_ANSWERED
    ids = tuple(i.to_bytes(32, "big") for i in range(MAX_GIVEN + 100))
    assert len(table.fresh(ids, 0.0, 60.0)) == len(ids)
    assert table.fresh(ids[-10:], 1.0, 60.0) == []  # pushed already
    assert table.fresh(ids[-10:], 61.0, 60.0) == list(ids[-10:])  # long ago


def test_pushes_a_session_found_missing_are_announced_not_pushed_on() -> None:
    """A late joiner gets the events by push inside ranges its session left
    open; it passes them on to its other peer by ANNOUNCE, as old news, and
    no copy of them counts as unsolicited."""
    events = make_events(3, 4, seed="push")
    net = Net(seed=5)
    net.add("a", events)
    late = net.add("late")
    net.add("c")
    net.connect("late", "c")
    net.run()
    net.connect("late", "a")
    net.run()
    ids = {ev.id for ev in events}
    assert net.ids("late") == ids == net.ids("c")
    assert net.nodes["a"].stats.reconcile_pushed + late.stats.reconcile_pushed >= len(ids)
    assert late.stats.ids_requested == 0  # nothing had to be fetched
    to_c = [
        decode_frame(o.frame) for o in net.outputs["late"] if isinstance(o, Send) and o.peer == "c"
    ]
    carrying = [f for f in to_c if isinstance(f, AnnounceFrame | EventsFrame)]
    assert isinstance(carrying[0], AnnounceFrame)
    assert all(n.stats.duplicates_unsolicited == 0 for n in net.nodes.values())
    assert all(n.stats.offences == 0 for n in net.nodes.values())


def test_records_reconcile_by_item_once_a_full_exchange_costs_more() -> None:
    """§11.7.5: beyond ``records_full_bytes`` a new link reconciles record
    items; each side ends with the newer record of every device, and only
    the records that differ travel."""
    histories = [History(name=f"rec{i}") for i in range(40)]
    net = Net(seed=9, config=ReplicationConfig(records_full_bytes=0))
    a = net.add("a", [h.genesis for h in histories])
    b = net.add("b", [h.genesis for h in histories])
    for i, h in enumerate(histories):
        if i != 0:
            a.publish_record(record(h).raw, at(0.0))
        if i != 1:
            newer = 1000 if i in (2, 3, 4) else 0
            b.publish_record(record(h, ts=record(h).timestamp + newer).raw, at(0.0))
    net.connect("a", "b")
    net.run()
    items_a = sorted(record_item(r) for r in a.records)
    items_b = sorted(record_item(r) for r in b.records)
    assert items_a == items_b and len(items_a) == 40
    for i in (2, 3, 4):
        key = (histories[i].account, histories[i].keys["d0"].sign_public)
        assert (
            a.records.get(*key)
            == b.records.get(*key)
            == record(histories[i], ts=record(histories[i]).timestamp + 1000)
        )
    assert a.stats.record_sessions == b.stats.record_sessions == 1
    sent = [
        len(f.records)
        for n in ("a", "b")
        for o in net.outputs[n]
        if isinstance(o, Send) and isinstance(f := decode_frame(o.frame), RecordsFrame)
    ]
    # both sessions find the same five differences; each record goes once
    # per direction at most (a's stale copies of 2-4 may cross b's newer)
    assert 5 <= sum(sent) <= 8
    assert all(n.stats.offences == 0 for n in net.nodes.values())


def test_records_go_in_full_while_they_are_few() -> None:
    h = History(name="few")
    net = Net(seed=2)
    a = net.add("a", [h.genesis])
    net.add("b", [h.genesis])
    a.publish_record(record(h).raw, at(0.0))
    net.connect("a", "b")
    net.run()
    assert len(net.nodes["b"].records) == 1
    assert a.stats.record_sessions == 0


def test_session_ids_are_random_and_unique_per_peer() -> None:
    table = SessionTable()
    rng = random.Random(1)
    sids = set()
    for _ in range(50):
        sid = table.new_id(rng)
        table.start(sid, records=False, now=0.0)
        sids.add(sid)
    assert len(sids) == 50 and max(sids) > 1 << 16


def test_an_answer_overtaken_by_another_copy_is_solicited() -> None:
    """We asked a for an event; it came from b first.  a's answer brings it
    again: that copy costs a nothing, while an old copy nobody asked for does."""
    old, new = make_events(1, 2, seed="late")
    config = ReplicationConfig(recent_events=0, session_timeout=0.5)
    net = Net(seed=3, config=config)
    node = net.add("n", [old])
    for peer in ("a", "b"):
        node.connect(peer, at(0.0))
    node.tick(at(0.6))  # the sessions of the links, never answered, are over
    assert node.stats.reconcile_timeouts == 2
    outs = node.receive("a", encode_frame(AnnounceFrame((new.id,))), at(1.0))
    asked = [decode_frame(o.frame) for o in outs if isinstance(o, Send) and o.peer == "a"]
    assert any(isinstance(f, RequestFrame) and new.id in f.ids for f in asked)
    node.receive("b", encode_frame(EventsFrame((new.raw,))), at(1.1))
    node.receive("a", encode_frame(EventsFrame((new.raw,))), at(1.2))
    assert node.stats.duplicate_events == 1 and node.stats.duplicates_unsolicited == 0
    node.receive("a", encode_frame(EventsFrame((new.raw,))), at(1.3))  # asked once only
    assert node.stats.duplicates_unsolicited == 1
