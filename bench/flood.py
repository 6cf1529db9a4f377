"""Floods against real nodes on loopback (issue: Survive a hostile network).

Two honest ``smu node`` processes, A and B, linked.  An attacker in this
process, with fresh libp2p peer ids, does two things in turn:

* **replay flood**: it links with B and sends B, as fast as B reads, frames
  of events B already holds (``--rate`` events per second, default 5,000);
  meanwhile an honest event is published on A every ``--interval`` seconds
  and its latency is the time until B holds it (B's ``event.has``, polled
  every 5 ms).  The same number of honest events is timed first with no
  attacker.  Figures: both p50s and p99s, their ratio (target ≤ 2), how many
  of the attacker's events B counted as duplicates, how often it paused the
  attacker, and whether it cut it off.
* **connection flood**: ``--sybils`` (default 120) fresh peer ids connect to
  B and hold replication streams; then a new honest node C dials B.  Figure:
  whether C got a link (target: yes), and B's link counts.

On loopback every address is exempt from network-group caps (PROTOCOL.md
§11.5.3), so what keeps C in is eviction (§17.1.1), not group caps.

    .venv/bin/python bench/flood.py [--rate 5000] [--honest 20] [--sybils 120]

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import info_from_p2p_addr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node.netdemo import Demo, DemoNode
from node.transport import REPLICATION_PROTOCOL, frame, make_host, parse_multiaddr
from protocol.core.keys import DeviceKeys, RecoveryKey
from protocol.core.params import TESTNET
from protocol.log import authoring
from protocol.sync.wire import EventsFrame, encode_frame

T0 = 1_750_000_000_000
EVENTS_PER_FRAME = 250


def old_events(n: int) -> list[bytes]:
    """An account of ``n`` events in a chain: what the attacker replays."""
    keys = DeviceKeys.from_random(b"\x05" * 64)
    g = authoring.genesis(
        TESTNET, keys, RecoveryKey(b"\x06" * 32), display_name="old", device_name="d",
        timestamp=T0,
    )  # fmt: skip
    raws, prev = [g.raw], g.id
    for i in range(n - 1):
        ev = authoring.profile(
            TESTNET, g.id, [prev], keys, display_name=f"n{i}", timestamp=T0 + i + 1
        )
        raws.append(ev.raw)
        prev = ev.id
    return raws


def honest_latencies(a: DemoNode, b: DemoNode, n: int, interval: float, seed: int) -> list[float]:
    """Publish ``n`` fresh genesis events on A; seconds until B holds each."""
    out = []
    for i in range(n):
        label = f"honest/{seed}/{i}".encode()
        keys = DeviceKeys.from_random(hashlib.blake2b(label).digest())
        recovery = RecoveryKey(hashlib.blake2b(label, digest_size=32).digest())
        g = authoring.genesis(
            TESTNET, keys, recovery, display_name=f"h{seed}-{i}", device_name="d",
            timestamp=int(time.time() * 1000),
        )  # fmt: skip
        start = time.perf_counter()
        a.submit(g)
        while not b.client.call("event.has", ids=[g.id.hex()])["present"]:
            time.sleep(0.005)
        out.append(time.perf_counter() - start)
        time.sleep(interval)
    return out


def summary(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {
        "p50_ms": round(statistics.median(xs) * 1000, 2),
        "p99_ms": round(xs[min(len(xs) - 1, int(0.99 * len(xs)))] * 1000, 2),
    }


async def replay_flood(
    addr: str, raws: list[bytes], rate: float, stop: trio.Event
) -> dict[str, Any]:
    """Link with the node at ``addr`` under a fresh peer id and replay
    ``raws`` at ``rate`` events per second until ``stop``."""
    frames = [
        frame(encode_frame(EventsFrame(tuple(raws[i : i + EVENTS_PER_FRAME]))))
        for i in range(0, len(raws), EVENTS_PER_FRAME)
    ]
    host = make_host(os.urandom(32))
    sent, cut_off = 0, False
    async with host.run([parse_multiaddr("/ip4/127.0.0.1/tcp/0")]):
        info = info_from_p2p_addr(parse_multiaddr(addr))
        await host.connect(info)
        stream = await host.new_stream(info.peer_id, [TProtocol(REPLICATION_PROTOCOL)])

        async def drain() -> None:  # read what the node sends, so it is not blocked
            while await stream.read(65536):
                pass

        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            start = trio.current_time()
            i = 0
            while not stop.is_set():
                due = start + sent / rate
                if trio.current_time() < due:
                    await trio.sleep_until(due)
                try:
                    await stream.write(frames[i % len(frames)])
                except Exception:  # the node cut us off
                    cut_off = True
                    break
                sent += EVENTS_PER_FRAME
                i += 1
            nursery.cancel_scope.cancel()
        await host.close()
    return {"events_sent": sent, "cut_off": cut_off}


async def hold_links(addr: str, n: int, held: trio.Event, release: trio.Event) -> int:
    """``n`` fresh peer ids each open a replication stream to ``addr`` and
    hold it until ``release``; the number that got a stream."""
    opened = 0

    async def one() -> None:
        nonlocal opened
        host = make_host(os.urandom(32))
        async with host.run([parse_multiaddr("/ip4/127.0.0.1/tcp/0")]):
            info = info_from_p2p_addr(parse_multiaddr(addr))
            try:
                await host.connect(info)
                await host.new_stream(info.peer_id, [TProtocol(REPLICATION_PROTOCOL)])
                opened += 1
            except Exception:  # refused: that is the node's right
                pass
            await release.wait()
            await host.close()

    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(one)
        with trio.move_on_after(60):
            while opened < n:
                await trio.sleep(0.1)
        held.set()
    return opened


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=5000.0)
    ap.add_argument("--honest", type=int, default=20)
    ap.add_argument("--interval", type=float, default=0.2)
    ap.add_argument("--sybils", type=int, default=120)
    ap.add_argument("--old", type=int, default=2000)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="smu-flood-"))
    demo = Demo(base, as_json=True, quiet=True)
    result: dict[str, Any] = {"benchmark": "flood"}
    try:
        a, b, c = (DemoNode(base, n) for n in ("a", "b", "c"))
        demo.nodes = [a, b]
        for n in (a, b):
            n.start()
        for n in (a, b):
            n.wait_ready()
        demo.connect(a, b)
        raws = old_events(args.old)
        for raw in raws:
            b.client.call("event.submit", event=raw.hex())
        demo.wait_converged([a, b], timeout=120)

        quiet = honest_latencies(a, b, args.honest, args.interval, seed=1)
        before = b.status()["replication"]

        async def flooded() -> tuple[list[float], dict[str, Any]]:
            stop = trio.Event()
            async with trio.open_nursery() as nursery:
                box: dict[str, Any] = {}

                async def attacker() -> None:
                    box.update(await replay_flood(b.addr, raws, args.rate, stop))

                nursery.start_soon(attacker)
                await trio.sleep(1.0)  # the flood is on
                lat = await trio.to_thread.run_sync(
                    honest_latencies, a, b, args.honest, args.interval, 2
                )
                stop.set()
            return lat, box

        under, attack = trio.run(flooded)
        after = b.status()["replication"]
        result["replay"] = {
            "rate_events_per_s": args.rate,
            "without_attacker": summary(quiet),
            "during_flood": summary(under),
            "p50_ratio": round(statistics.median(under) / statistics.median(quiet), 2),
            "target_ratio": 2.0,
            "duplicates_counted": after["duplicate_events"] - before["duplicate_events"],
            "unsolicited": after["duplicates_unsolicited"] - before["duplicates_unsolicited"],
            "pauses": after["duplicate_pauses"] - before["duplicate_pauses"],
            **attack,
        }
        result["replay"]["met"] = result["replay"]["p50_ratio"] <= 2.0

        async def connections() -> dict[str, Any]:
            held, release = trio.Event(), trio.Event()
            async with trio.open_nursery() as nursery:
                box = {"held": 0}

                async def sybils() -> None:
                    box["held"] = await hold_links(b.addr, args.sybils, held, release)

                nursery.start_soon(sybils)
                await held.wait()
                status = await trio.to_thread.run_sync(b.status)
                await trio.to_thread.run_sync(c.start)
                await trio.to_thread.run_sync(c.wait_ready)
                demo.nodes.append(c)
                t = time.perf_counter()
                reply = await trio.to_thread.run_sync(
                    lambda: c.client.call("peers.connect", addr=b.addr)
                )
                took = time.perf_counter() - t
                after_b = await trio.to_thread.run_sync(b.status)
                release.set()
            return {
                "sybils": args.sybils,
                "sybil_streams_opened": box["held"],
                "links_of_b_before": status["peers"],
                "honest_newcomer_linked": bool(reply["connected"]),
                "seconds_to_link": round(took, 3),
                "evicted": after_b["links"]["evicted"],
                "met": bool(reply["connected"]),
            }

        result["connections"] = trio.run(connections)
        result["met"] = result["replay"]["met"] and result["connections"]["met"]
    finally:
        for n in demo.nodes:
            n.stop()
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
