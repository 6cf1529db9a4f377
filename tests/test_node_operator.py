"""The operator's node (PROTOCOL.md §13.3, §17.6): node.toml and its flags,
the disk budget (SQLITE_FULL rolls back whole), the clock check and the
metrics endpoint, each in process; then a real node that fills its budget,
refuses, and resumes."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio

from node.config import NodeConfig, load_config
from node.errors import DiskFullError, NodeUsageError, RpcError
from node.metrics import Figures, Metrics
from node.netdemo import Demo, DemoNode
from node.services.clock import MIN_PEERS, WARN_MS, ClockService
from node.storage import open_database
from node.storage.budget import DiskBudget
from protocol.core.params import TESTNET

from .process import wait_for

MIB = 1024 * 1024


def test_node_toml_is_read_checked_and_overridden_by_flags(tmp_path: Path) -> None:
    assert load_config(tmp_path) == NodeConfig()
    (tmp_path / "node.toml").write_text(
        'listen = ["/ip4/0.0.0.0/tcp/4001"]\nmetrics_port = 9464\ndisk_budget_mb = 64\n'
    )
    c = load_config(tmp_path)
    assert c.listen == ["/ip4/0.0.0.0/tcp/4001"] and c.disk_budget_bytes == 64 * MIB
    flagged = c.with_flags(listen=["/ip4/127.0.0.1/tcp/0"], metrics_port=None)
    assert flagged.listen == ["/ip4/127.0.0.1/tcp/0"] and flagged.metrics_port == 9464
    for bad, word in (
        ("metrics_prot = 1\n", "unknown setting"),
        ('listen = "/ip4/1.2.3.4/tcp/1"\n', "listen"),
        ("disk_budget_mb = 1\n", "disk_budget_mb"),
        ("metrics_port = 70000\n", "metrics_port"),
        ("relay = [\n", "node.toml"),
    ):
        (tmp_path / "node.toml").write_text(bad)
        with pytest.raises(NodeUsageError, match=word):
            load_config(tmp_path)


def _fill(db: Any, rows: int, size: int) -> None:
    db.write([("INSERT INTO filler(b) VALUES(?)", (b"x" * size,)) for _ in range(rows)])


def test_a_full_budget_refuses_whole_and_never_corrupts(tmp_path: Path) -> None:
    db = open_database(tmp_path / "events.sqlite")
    db.write([("CREATE TABLE filler(b BLOB)", ())])
    budget = DiskBudget(db, 12 * MIB, reserve_bytes=4 * MIB)
    assert not budget.full
    _fill(db, 9, MIB)  # 9 MiB: past the budget less its reserve
    assert budget.check().full and "budget of 12 MiB is full" in str(budget.state.reason)
    # the hard limit: SQLite refuses the transaction that would pass it
    with pytest.raises(DiskFullError, match="nothing was written"):
        _fill(db, 6, MIB)
    (n,) = db.query_one("SELECT COUNT(*) FROM filler") or (0,)
    assert n == 9  # none of the refused six
    assert db.query_one("PRAGMA integrity_check") == ("ok",)
    db.write([("DELETE FROM filler", ())])
    assert not budget.check().full  # free pages count as room
    # a disk that is nearly full counts too
    nearly = DiskBudget(db, None, reserve_bytes=4 * MIB, disk_free=lambda _db: MIB)
    assert nearly.full and "the disk under" in str(nearly.state.reason)
    db.close()
    again = sqlite3.connect(tmp_path / "events.sqlite")
    assert again.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    again.close()


def test_the_clock_check_takes_the_median_of_enough_peers() -> None:
    async def never(*args: Any) -> Any:
        raise AssertionError

    clock = ClockService(never, wall_ms=lambda: 0)
    for i in range(MIN_PEERS - 1):
        clock.record(f"p{i}", 10 * WARN_MS, 0, 0)
    assert clock.median_offset() is None and not clock.status()["warning"]
    clock.record("p9", 10 * WARN_MS + 2_000, 1_000, 3_000)  # the round trip halved
    assert clock.median_offset() == 10 * WARN_MS and clock.status()["warning"]
    # one liar among honest peers moves nothing
    honest = ClockService(never, wall_ms=lambda: 0)
    for i, offset in enumerate((5, -3, 2, 10**9)):
        honest.record(f"p{i}", offset, 0, 0)
    assert abs(honest.median_offset() or 0) < 1000 and not honest.status()["warning"]


async def test_metrics_are_served_on_loopback_only_for_get_metrics() -> None:
    figures = Figures(3, 1, 0, 2, {"/smu/message/1: disk_full": 4}, {}, 10, 100, True, None)
    metrics = Metrics(lambda: figures)
    metrics.traffic.bytes_in["/smu/replication/3"] += 1234
    metrics.ingest_seconds.observe(0.02)

    async def get(port: int, request: bytes) -> bytes:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(request)
        out = b""
        while chunk := await stream.receive_some(65536):
            out += chunk
        return out

    async with trio.open_nursery() as nursery:
        port = await nursery.start(metrics.serve, 0)
        page = await get(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert page.startswith(b"HTTP/1.1 200 OK")
        for line in (
            b"smu_events 3.0",
            b"smu_disk_full 1.0",
            b'smu_streams_refused_total{protocol="/smu/message/1",reason="disk_full"} 4.0',
            b'smu_bytes_in_total{protocol="/smu/replication/3"} 1234.0',
            b"smu_ingest_seconds_count 1.0",
        ):
            assert line in page, line
        assert (await get(port, b"GET /secrets HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404")
        assert (await get(port, b"POST /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404")
        assert (await get(port, b"x" * 9000 + b"\r\n\r\n")).startswith(b"HTTP/1.1 400")
        nursery.cancel_scope.cancel()


@pytest.mark.process
def test_a_node_stops_accepting_when_its_budget_is_full_and_resumes(demo: Demo) -> None:
    node = DemoNode(demo.base, "operator")
    demo.nodes.append(node)
    node.smu("init", "--network", TESTNET.network_id, "--name", "operator")
    (node.dir / "node.toml").write_text("disk_budget_mb = 16\nmetrics_port = 0\n")
    node.start_existing()
    node.wait_ready()
    node.client.call("account.create", name="op")
    status = node.status()
    assert status["disk"]["budget_bytes"] == 16 * MIB and not status["disk"]["full"]
    assert status["metrics_port"]

    # something else fills the database past the budget less its reserve
    db = sqlite3.connect(node.dir / "events.sqlite", timeout=30)
    db.execute("CREATE TABLE filler(b BLOB)")
    for _ in range(9):
        db.execute("INSERT INTO filler(b) VALUES(?)", (b"x" * MIB,))
    db.commit()
    wait_for(lambda: node.status()["disk"]["full"], 20, "the node sees its budget full")
    with pytest.raises(RpcError, match="disk budget of 16 MiB is full"):
        node.client.call("contact.add", ref=node.status()["account"], name="me")
    db.execute("DELETE FROM filler")
    db.commit()
    db.close()
    wait_for(lambda: not node.status()["disk"]["full"], 20, "room again")
    assert node.client.call("node.status")["events"] >= 1  # it kept serving throughout


async def test_the_gate_refuses_storing_protocols_while_the_disk_is_full() -> None:
    from node.gate import DEFAULT_CAPS, Gate
    from protocol.links.manager import LinkManager

    gate = Gate(LinkManager("me"))
    gate.storing = {"/smu/message/1"}
    full = [False]
    gate.disk_full = lambda: full[0]
    assert gate.refusal("/smu/message/1", "peer", DEFAULT_CAPS) is None
    full[0] = True
    assert gate.refusal("/smu/message/1", "peer", DEFAULT_CAPS) == "disk_full"
    # what stores nothing is still served: a full node keeps answering
    assert gate.refusal("/smu/time/1", "peer", DEFAULT_CAPS) is None


@pytest.mark.parametrize(
    ("toml", "flags", "offered"),
    [("", [], True), ("relay = false\n", [], False), ("", ["--no-relay"], False)],
)
def test_the_relay_switch_of_node_toml_and_its_flag_reach_the_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str, flags: list[str], offered: bool
) -> None:
    import node.daemon
    from node.cli import main
    from node.datadir import DataDir
    from protocol.core.params import TESTNET

    dd = DataDir(tmp_path / "node")
    dd.init(TESTNET.network_id, "relay", None)
    (dd.path / "node.toml").write_text(toml)
    seen: dict[str, Any] = {}
    monkeypatch.setattr(node.daemon, "run_daemon", lambda *a, **kw: seen.update(kw))
    assert main(["node", "run", "--data-dir", str(dd.path), *flags]) == 0
    assert seen["offer_relay"] is offered


@pytest.mark.parametrize(
    ("toml", "flags", "serves"),
    [("", [], True), ("mailbox = false\n", [], False), ("", ["--no-mailbox"], False)],
)
def test_the_mailbox_switch_grants_nobody_when_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str, flags: list[str], serves: bool
) -> None:
    """``mailbox = false`` (or ``--no-mailbox``) reaches the daemon, whose
    mailbox then grants no device, however active (§13.3, §15.12)."""
    import node.daemon
    from node.cli import main
    from node.datadir import DataDir
    from protocol.core.params import TESTNET

    from .conftest import History

    dd = DataDir(tmp_path / "node")
    secrets = dd.init(TESTNET.network_id, "box", None)
    (dd.path / "node.toml").write_text(toml)
    seen: list[Any] = []
    monkeypatch.setattr(node.daemon, "run_daemon", lambda *a, **kw: seen.append(a[2]))
    assert main(["node", "run", "--data-dir", str(dd.path), *flags]) == 0
    (settings,) = seen
    assert settings.mailbox is serves
    daemon = node.daemon.Daemon(dd, secrets, ["/ip4/127.0.0.1/tcp/0"], [], settings=settings)
    try:
        someone = History(TESTNET, name="someone")
        daemon.ledger.ingest(someone.genesis.raw)
        device = someone.keys["d0"].sign_public
        assert daemon.mailbox._serves(someone.account, device) is serves
    finally:
        daemon.db.close()
