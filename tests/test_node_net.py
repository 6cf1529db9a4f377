"""Real nodes, separate processes, over loopback (issue: Node, Tests)."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from node.netdemo import Demo
from node.verify import verify_store
from protocol.core.keys import DeviceKeys, RecoveryKey
from protocol.core.params import TESTNET
from protocol.log import authoring
from protocol.log.events import Event

from .process import start_nodes, wait_for

pytestmark = pytest.mark.process


T = 1_750_000_000_000


def _account(seed: int, name: str, n: int = 1) -> tuple[list[DeviceKeys], list[Event]]:
    """A genesis plus a chain of n-1 add-device events, made offline."""
    keys = [DeviceKeys.from_random(bytes([seed, i]) * 32) for i in range(n)]
    rk = RecoveryKey(bytes([seed]) * 32)
    g = authoring.genesis(TESTNET, keys[0], rk, display_name=name, device_name="d0", timestamp=T)
    events = [g]
    for i in range(1, n):
        intro = authoring.introduce(TESTNET, g.id, keys[i], f"d{i}")
        events.append(
            authoring.add_device(
                TESTNET, g.id, [events[-1].id], keys[i - 1], intro, timestamp=T + i
            )
        )
    return keys, events


def test_five_nodes_converge_and_late_node_catches_up(demo: Demo) -> None:
    nodes = start_nodes(demo, [f"n{i}" for i in range(5)])
    for i in range(4):
        demo.connect(nodes[i], nodes[i + 1])
    for seed, node in enumerate(nodes):
        _, events = _account(seed + 1, f"user{seed}", 3)
        for e in events:
            node.submit(e)
    demo.wait_converged(nodes)
    assert {n.status()["events"] for n in nodes} == {15}
    (late,) = start_nodes(demo, ["late"], bootstrap=[nodes[2].addr])
    demo.wait_converged(demo.nodes)
    assert late.status()["events"] == 15


def test_partition_with_concurrent_changes_heals(demo: Demo) -> None:
    nodes = start_nodes(demo, [f"p{i}" for i in range(4)])
    for i in range(4):
        demo.connect(nodes[i], nodes[(i + 1) % 4])
    keys, events = _account(9, "bob", 2)
    for e in events:
        nodes[0].submit(e)
    demo.wait_converged(nodes)
    left, right = nodes[:2], nodes[2:]
    demo.partition(left, right)
    account = events[0].id
    thief = DeviceKeys.from_random(b"\x77" * 64)
    theft = authoring.add_device(
        TESTNET,
        account,
        [events[1].id],
        keys[1],
        authoring.introduce(TESTNET, account, thief, "thief"),
        timestamp=T + 10,
    )
    revoke = authoring.revoke_device(
        TESTNET, account, [events[1].id], keys[0], keys[1].sign_public, timestamp=T + 11
    )
    right[0].submit(theft)
    left[0].submit(revoke)
    # Each side sees only its own change.
    demo.wait_converged(left)
    demo.wait_converged(right)
    assert left[1].client.call("event.has", ids=[theft.id.hex()])["present"] == []
    demo.heal(left, right)
    demo.wait_converged(nodes)
    docs = [n.client.call("account.show", account=account.hex()) for n in nodes]
    assert len({d["state_digest"] for d in docs}) == 1
    status = {d["name"]: d["status"] for d in docs[0]["devices"]}
    assert status == {"d0": "active", "d1": "revoked", "thief": "void"}


def test_kill_during_ingest_loses_nothing_acknowledged(demo: Demo) -> None:
    (node,) = start_nodes(demo, ["k0"])
    _, events = _account(42, "many", 1)
    genesis = events[0]
    node.submit(genesis)
    keys = [DeviceKeys.from_random(bytes([42, 0]) * 32)]
    chain = [genesis]
    for i in range(1, 400):
        if i % 2 == 0:  # each new device revokes the one that added it: at most
            # max_active_devices may be active (PROTOCOL.md §7.3)
            chain.append(
                authoring.revoke_device(
                    TESTNET,
                    genesis.id,
                    [chain[-1].id],
                    keys[-1],
                    keys[-2].sign_public,
                    timestamp=T + i,
                )
            )
            continue
        k = DeviceKeys.from_random(os.urandom(64))
        intro = authoring.introduce(TESTNET, genesis.id, k, f"d{i}")
        chain.append(
            authoring.add_device(
                TESTNET, genesis.id, [chain[-1].id], keys[-1], intro, timestamp=T + i
            )
        )
        keys.append(k)
    acked: list[str] = []
    stop = threading.Event()
    enough = threading.Event()

    def feed() -> None:
        for e in chain[1:]:
            if stop.is_set():
                return
            try:
                node.submit(e)
            except Exception:
                return
            acked.append(e.id.hex())
            if len(acked) >= 100:
                enough.set()

    t = threading.Thread(target=feed)
    t.start()
    assert enough.wait(120)
    assert node.proc is not None
    os.kill(node.proc.pid, signal.SIGKILL)
    node.proc.wait()
    stop.set()
    t.join()
    report = verify_store(node.dir / "events.sqlite", TESTNET)
    assert report.ok, report.problems
    assert report.accepted >= len(acked) + 1
    # Restart the same node: everything acknowledged is there.
    node.proc = None
    node.start_existing()
    node.wait_ready()
    present = node.client.call("event.has", ids=acked)["present"]
    assert present == acked


def test_peer_exchange_links_nodes_that_only_knew_a_hub(demo: Demo) -> None:
    """§11.8 and §11.5.3: two nodes that know only a hub learn of each other
    through its PEERS frames, and one dials the other (loopback is exempt
    from the network-group limits)."""
    (hub,) = start_nodes(demo, ["hub"])
    (b,) = start_nodes(demo, ["b"], bootstrap=[hub.addr])
    # b's PEERS frame names b itself, at the host it connects from: the hub
    # vouches for that and tells the next node that connects
    wait_for(lambda: hub.status()["replication"].get("peers_learned", 0) >= 1)
    (c,) = start_nodes(demo, ["c"], bootstrap=[hub.addr])

    def linked() -> bool:
        return c.peer_id in {p["peer_id"] for p in b.client.call("peers.list")["peers"]}

    wait_for(linked)
    demo.partition([hub], [b, c])  # b and c now have only each other
    _, events = _account(21, "carol", 2)
    for e in events:
        c.submit(e)
    demo.wait_converged([b, c])
    assert b.status()["events"] == 2 and hub.status()["events"] == 0


def test_every_link_gets_one_channel_that_ends_with_it(demo: Demo) -> None:
    """DESIGN §10: one framed, flow-controlled channel per peer link
    (PROTOCOL.md §17.3), opened by the dialler, closed with the link."""
    a, b = start_nodes(demo, ["a", "b"])
    demo.connect(a, b)
    for x, y in ((a, b), (b, a)):
        wait_for(
            lambda x=x, y=y: x.status()["channels"]["open"] == [y.peer_id],
            what=f"{x.name}'s channel with {y.name}",
        )
    a.client.call("peers.refuse", peer=b.peer_id)  # the link ends, and stays ended
    for x in (a, b):
        wait_for(lambda x=x: x.status()["channels"]["open"] == [], what=f"{x.name}: no channel")
    assert a.status()["peers"] == 0 and b.peer_id in a.client.call("peers.list")["refused"]
