"""Catch-up benchmark (issue: Node): a fresh node joins a node holding N events.

Builds N valid events (TESTNET proof-of-work; per account a genesis, two
add-devices and a revocation), writes them straight into the source node's
SQLite store, starts the source node, then starts a fresh node that knows
only the source's address and times how long it takes to hold every event
(reconciliation, transfer, verification, rules, SQLite with
synchronous=FULL).  In the same run it times PyNaCl alone verifying every
signature those events carry, on one core, and reports
``ratio = pynacl_verify_seconds / catchup_seconds`` (target >= 0.5; the node
may use both cores).

    .venv/bin/python bench/catchup.py [--events 100000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ingest import signature_jobs, time_pynacl
from node.datadir import DataDir
from node.netdemo import DemoNode
from node.storage import SqliteEventStore, open_database
from protocol.core.keys import DeviceKeys, RecoveryKey
from protocol.core.params import TESTNET
from protocol.log import authoring
from protocol.log.events import decode_event

TARGET = 0.5
T0 = 1_750_000_000_000
GENERATOR_VERSION = 1


def _keys(*label: int) -> DeviceKeys:
    return DeviceKeys.from_random(hashlib.blake2b(repr(label).encode()).digest())


def generate(n_events: int) -> list[bytes]:
    cache = Path(tempfile.gettempdir()) / f"smu-catchup-v{GENERATOR_VERSION}-{n_events}.pickle"
    if cache.exists():
        raws: list[bytes] = pickle.loads(cache.read_bytes())
        return raws
    raws = []
    account = 0
    while len(raws) < n_events:
        k = [_keys(account, i) for i in range(3)]
        g = authoring.genesis(
            TESTNET,
            k[0],
            RecoveryKey(hashlib.blake2b(b"r%d" % account, digest_size=32).digest()),
            display_name=f"user{account}",
            device_name="d0",
            timestamp=T0 + account,
        )
        a1 = authoring.add_device(
            TESTNET,
            g.id,
            [g.id],
            k[0],
            authoring.introduce(TESTNET, g.id, k[1], "d1"),
            timestamp=T0 + 1,
        )
        a2 = authoring.add_device(
            TESTNET,
            g.id,
            [a1.id],
            k[1],
            authoring.introduce(TESTNET, g.id, k[2], "d2"),
            timestamp=T0 + 2,
        )
        rv = authoring.revoke_device(
            TESTNET, g.id, [a2.id], k[0], k[1].sign_public, timestamp=T0 + 3
        )
        raws += [g.raw, a1.raw, a2.raw, rv.raw]
        account += 1
    raws = raws[:n_events]
    cache.write_bytes(pickle.dumps(raws))
    return raws


def pynacl_seconds(raws: list[bytes]) -> tuple[float, int]:
    """One core, PyNaCl alone, every signature the events carry (as the
    ingest benchmark measures it)."""
    jobs = signature_jobs(raws, TESTNET)
    return time_pynacl(jobs), len(jobs)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    args = ap.parse_args()
    t = time.perf_counter()
    raws = generate(args.events)
    print(f"{len(raws)} events ready in {time.perf_counter() - t:.1f}s", flush=True)
    verify_s, sigs = pynacl_seconds(raws)
    print(f"pynacl alone: {sigs} signatures in {verify_s:.2f}s", flush=True)

    base = Path(tempfile.mkdtemp(prefix="smu-catchup-"))
    source, fresh = DemoNode(base, "source"), DemoNode(base, "fresh")
    try:
        DataDir(source.dir).init(TESTNET.network_id, "source", None)
        store = SqliteEventStore(open_database(source.dir / "events.sqlite"))
        for raw in raws:
            store.put(decode_event(raw, TESTNET))
        store.close()
        source.start_existing()
        source.wait_ready(timeout=300)
        fresh.smu("init", "--network", TESTNET.network_id, "--name", "fresh")
        start = time.perf_counter()
        fresh.start_existing(bootstrap=[source.addr])
        fresh.wait_ready()
        while True:
            status = fresh.status()
            if status["events"] >= len(raws):
                break
            if time.perf_counter() - start > 1800:
                raise SystemExit("catch-up did not finish in 30 minutes")
            time.sleep(0.1)
        catchup_s = time.perf_counter() - start
        same = status["event_set_digest"] == source.status()["event_set_digest"]
        stats = {k: v for k, v in status["replication"].items() if v}
    finally:
        source.stop()
        fresh.stop()
        shutil.rmtree(base, ignore_errors=True)
    ratio = verify_s / catchup_s
    print(
        f"catch-up: {len(raws)} events in {catchup_s:.2f}s = {len(raws) / catchup_s:,.0f} "
        f"events/s; ratio {ratio:.2f} (target >= {TARGET}); same set: {same}"
    )
    print(
        json.dumps(
            {
                "benchmark": "catchup",
                "events": len(raws),
                "signatures": sigs,
                "catchup_seconds": round(catchup_s, 3),
                "events_per_second": round(len(raws) / catchup_s),
                "pynacl_verify_seconds": round(verify_s, 3),
                "ratio": round(ratio, 3),
                "target": TARGET,
                "met": ratio >= TARGET,
                "same_set": same,
                "cpus": os.cpu_count(),
                "fresh_node_replication_stats": stats,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
