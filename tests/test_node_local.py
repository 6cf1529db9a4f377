"""The node's local parts without the network: store, data directory, CLI errors."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from node.datadir import DataDir
from node.errors import NodeUsageError, StoreError
from node.storage import SqliteEventStore, open_database
from node.verify import verify_store
from protocol.log.ledger import Ledger

from .conftest import FAST, History


def store_at(path: Path) -> SqliteEventStore:
    return SqliteEventStore(open_database(path / "events.sqlite"))


def test_sqlite_store_survives_reopen_and_rebuilds_state(tmp_path: Path) -> None:
    h = History()
    h.add("a1", "d0", "d1", ["g"])
    h.revoke("rv", "d0", "d1", ["a1"])
    store = store_at(tmp_path)
    ledger = Ledger(FAST, store=store)
    for e in h.events.values():
        ledger.ingest(e.raw)
    store.commit_now()
    digest = ledger.state(h.account).digest
    store.close()
    again = Ledger(FAST, store=store_at(tmp_path))
    assert again.state(h.account).digest == digest
    assert again.event_count == 3


def test_uncommitted_events_are_not_durable(tmp_path: Path) -> None:
    h = History()
    store = store_at(tmp_path)
    Ledger(FAST, store=store).ingest(h.genesis.raw)
    # A second connection sees only committed data: nothing until the commit.
    other = store_at(tmp_path)
    assert len(other) == 0
    store.commit_now()
    assert len(store_at(tmp_path)) == 1


def test_a_failed_commit_keeps_its_events_and_no_transaction_open(tmp_path: Path) -> None:
    """A write that fails (here: a row another writer put there) rolls back
    whole; the events stay pending, the connection stays usable, and the
    next commit writes them."""
    h = History()
    h.add("a1", "d0", "d1", ["g"])
    store = store_at(tmp_path)
    ledger = Ledger(FAST, store=store)
    ledger.ingest(h.genesis.raw)
    ledger.ingest(h.events["a1"].raw)
    other = store_at(tmp_path)
    other.db.conn.execute(
        "INSERT INTO events(id, account, raw) VALUES(?, ?, ?)",
        (h.events["a1"].id, h.account, b"in the way"),
    )
    with pytest.raises(sqlite3.IntegrityError):
        store.commit_now()
    assert not store.db.conn.in_transaction
    assert len(store_at(tmp_path)) == 1  # only the intruder
    other.db.conn.execute("DELETE FROM events")
    store.commit_now()
    assert sorted(store_at(tmp_path).iter_raw()) == sorted([h.genesis.raw, h.events["a1"].raw])


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    store.db.conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    store.close()
    with pytest.raises(StoreError, match="upgrade smu"):
        store_at(tmp_path)


def test_log_verify_finds_tampering(tmp_path: Path) -> None:
    h = History()
    h.add("a1", "d0", "d1", ["g"])
    store = store_at(tmp_path)
    ledger = Ledger(FAST, store=store)
    for e in h.events.values():
        ledger.ingest(e.raw)
    store.close()
    assert verify_store(tmp_path / "events.sqlite", FAST).ok
    raw = bytearray(h.events["a1"].raw)
    raw[-1] ^= 1  # break the signature
    db = store_at(tmp_path).db.conn
    db.execute("UPDATE events SET raw=? WHERE id=?", (bytes(raw), h.events["a1"].id))
    report = verify_store(tmp_path / "events.sqlite", FAST)
    assert not report.ok
    assert report.problems[0]["error"] == "bad_signature"


def test_datadir_modes_and_passphrase(tmp_path: Path) -> None:
    dd = DataDir(tmp_path / "node")
    secrets = dd.init("smu-test", "laptop", passphrase="correct horse")
    assert stat.S_IMODE(dd.path.stat().st_mode) == 0o700
    assert stat.S_IMODE(dd.keys_path.stat().st_mode) == 0o600
    assert secrets.device.sign_seed.hex() not in dd.keys_path.read_text()
    assert dd.load_secrets("correct horse").device.sign_public == secrets.device.sign_public
    with pytest.raises(NodeUsageError, match="wrong passphrase"):
        dd.load_secrets("wrong")
    os.chmod(dd.keys_path, 0o644)
    with pytest.raises(NodeUsageError, match="chmod 600"):
        dd.load_secrets("correct horse")


def _smu(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    r = _smu("node", "status", "--data-dir", str(tmp_path))
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "smu node run" in r.stderr
    r = _smu("account", "show", "--data-dir", str(tmp_path / "nothing"))
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    r = _smu("node", "run", "--bogus")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--help" in r.stderr
    r = _smu("node", "run", "--data-dir", str(tmp_path / "uninitialised"))
    assert r.returncode == 1 and "smu init" in r.stderr and r.stderr.count("\n") == 1


def test_init_json_has_no_secrets(tmp_path: Path) -> None:
    r = _smu("init", "--data-dir", str(tmp_path / "n"), "--network", "smu-test", "--json")
    assert r.returncode == 0, r.stderr
    secrets = DataDir(tmp_path / "n").load_secrets()
    assert secrets.device.sign_seed.hex() not in r.stdout
    assert secrets.node_seed.hex() not in r.stdout


def test_saved_mailbox_grants_are_checked_when_loaded(tmp_path: Path) -> None:
    """mailboxes.json is ours but may be damaged or stale: only grants for
    this very device, unexpired, v2 (what a v2 record may name), at
    different mailboxes, at most two, with record-sized addresses come
    back; garbage costs only new grants."""
    import json
    import time
    from types import SimpleNamespace

    from node.services.mailbox import MailboxService
    from protocol.core.canonical import encode_flat
    from protocol.core.keys import DeviceKeys
    from protocol.core.machine import Now
    from protocol.messaging.mailbox import Mailbox, MailboxIdentity
    from protocol.messaging.mailbox_store import MemoryMailboxStore
    from protocol.messaging.tokens import TokenSigner
    from protocol.records.grant import D_MAILBOX_GRANT, GRANT_V1, grant_fields

    me, other = DeviceKeys.from_random(b"\x01" * 64), DeviceKeys.from_random(b"\x02" * 64)
    account = b"\xaa" * 32
    now = int(time.time() * 1000)
    boxes = [Mailbox(FAST, MailboxIdentity(bytes([i]) * 32), f"12D3KooWBox{i}") for i in range(4)]
    ctx = SimpleNamespace(
        account=lambda: account, params=FAST, data_path=tmp_path, device=me, node_seed=b"\x09" * 32
    )
    signer = TokenSigner(b"\x07" * 32)
    tokens = SimpleNamespace(signer=signer)
    service = MailboxService(
        ctx,  # type: ignore[arg-type]
        receive=lambda envelope: None,
        store=MemoryMailboxStore(),
        tokens=tokens,  # type: ignore[arg-type]
    )

    def entry(
        box: Mailbox, device: bytes = me.sign_public, key: bytes = signer.public, **kw: int
    ) -> dict[str, object]:
        grant = box.issue_grant(account, device, now=Now(0.0, kw.get("at", now)), token_key=key)
        return {"grant": grant.raw.hex(), "addrs": ["/ip4/127.0.0.1/tcp/1"]}

    def v1_entry(box: Mailbox) -> dict[str, object]:
        """A v1 grant, as an older version saved it: a v2 record cannot name it."""
        fields = grant_fields(
            FAST, GRANT_V1, box.identity.public, box.peer_id, account, me.sign_public, 1, 1, now,
            now + 3600_000,
        )  # fmt: skip
        raw = encode_flat([*fields, box.identity.sign(D_MAILBOX_GRANT + encode_flat(fields))])
        return {"grant": raw.hex(), "addrs": ["/ip4/127.0.0.1/tcp/1"]}

    good = entry(boxes[0])
    saved = [
        v1_entry(boxes[3]),
        entry(boxes[1], other.sign_public),  # another device's grant
        entry(boxes[2], at=now - 40 * 24 * 3600 * 1000),  # expired
        entry(boxes[2], key=b""),  # no token key: contacts could get no tokens for it
        entry(boxes[2], key=TokenSigner(b"\x08" * 32).public),  # another token key
        {**entry(boxes[3]), "addrs": ["x" * 500]},  # an address no record may carry
        good,
        good,  # the same mailbox twice
        entry(boxes[1]),
        entry(boxes[2]),  # a third mailbox
    ]
    (tmp_path / "mailboxes.json").write_text(json.dumps(saved))
    loaded = service._load_grants()
    assert [g.mailbox_peer for g, _ in loaded] == ["12D3KooWBox0", "12D3KooWBox1"]
    for damaged in ("not json", '{"grant": 1}', '[{"grant": "zz", "addrs": []}]', "[1]"):
        (tmp_path / "mailboxes.json").write_text(damaged)
        assert service._load_grants() == []


def test_dial_addresses_replace_expired_ones_in_libp2p_peerstore() -> None:
    # A peer whose addresses outlived their TTL: py-libp2p's clear_addrs
    # clears them and then raises (it re-reads them for the signed record).
    # A dial to that peer once ended the daemon.
    from types import SimpleNamespace

    from libp2p.peer.id import ID
    from libp2p.peer.peerstore import PeerStore
    from multiaddr import Multiaddr

    from node.links import LinkService

    store = PeerStore()
    peer = ID.from_base58("12D3KooWAryLGnBY8mLnyeLJic65wxvQVwsL9J9AcUf7yY6wSLz6")
    store.add_addrs(peer, [Multiaddr("/ip4/100.64.0.9/tcp/4001")], ttl=1)
    store.peer_data_map[peer].last_identified -= 10  # expired
    store.peer_record_map[peer] = SimpleNamespace()  # a signed record is held
    fresh = Multiaddr("/ip4/100.65.0.9/tcp/4001")
    links = SimpleNamespace(host=SimpleNamespace(get_peerstore=lambda: store))
    LinkService._addresses_first(links, peer, [fresh])  # type: ignore[arg-type]
    assert store.addrs(peer) == [fresh]


async def test_two_dials_of_one_peer_at_once_make_one_connection_and_one_link() -> None:
    # A delivery through a relay and the link manager dialled a peer at
    # once: two circuits, two links, and closing one left the other end
    # with a link on a dead circuit.  The second dial now waits for the
    # first and finds its link.
    from types import SimpleNamespace

    import trio
    import trio.testing
    from libp2p.peer.peerstore import PeerStore

    from node.links import LinkService

    peer = "12D3KooWAryLGnBY8mLnyeLJic65wxvQVwsL9J9AcUf7yY6wSLz6"
    release = trio.Event()
    calls = {"connect": 0, "stream": 0}

    async def connect(info: object) -> None:
        calls["connect"] += 1
        await release.wait()

    async def new_stream(peer_id: object, protocols: object) -> object:
        calls["stream"] += 1
        conn = SimpleNamespace(peer_id=peer_id)
        return SimpleNamespace(muxed_conn=conn, get_remote_address=lambda: ("45.33.1.1", 4001))

    store = PeerStore()
    network = SimpleNamespace(register_notifee=lambda n: None)
    host = SimpleNamespace(
        get_peerstore=lambda: store,
        get_network=lambda: network,
        connect=connect,
        new_stream=new_stream,
    )
    links = LinkService(host, "12D3KooWme", "/smu/replication/2")
    got: list[str] = []

    async def dial() -> None:
        got.append(await links.dial(f"/ip4/45.33.1.1/tcp/4001/p2p/{peer}"))

    async with trio.open_nursery() as nursery:
        await nursery.start(links.run, lambda link: trio.sleep_forever(), [])
        nursery.start_soon(dial)
        nursery.start_soon(dial)
        await trio.testing.wait_all_tasks_blocked()
        assert calls == {"connect": 1, "stream": 0}  # the second waits
        release.set()
        await trio.testing.wait_all_tasks_blocked()
        assert got == [peer, peer] and calls == {"connect": 1, "stream": 1}
        assert list(links.links) == [peer] and links.manager.stats.admitted == 1
        nursery.cancel_scope.cancel()


def test_an_inbound_circuit_is_counted_at_its_relay_not_at_ourselves() -> None:
    # py-libp2p writes the receiving node's own id as the relay of an
    # inbound circuit; the relay is the peer of the stream it runs in
    from types import SimpleNamespace

    from node.relay import relay_of

    me, relay, src = "12D3KooWme", "12D3KooWrelay", "12D3KooWsrc"
    hop = SimpleNamespace(
        muxed_conn=SimpleNamespace(peer_id=SimpleNamespace(to_base58=lambda: relay))
    )
    raw = SimpleNamespace(stream=hop)
    muxed = SimpleNamespace(
        secured_conn=SimpleNamespace(conn=SimpleNamespace(conn=raw)),
        get_transport_addresses=lambda: [f"/p2p/{me}/p2p-circuit/p2p/{src}"],
    )
    assert relay_of(muxed) == relay
    direct = SimpleNamespace(get_transport_addresses=lambda: ["/ip4/100.64.0.2/tcp/4001"])
    assert relay_of(direct) is None
