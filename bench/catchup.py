"""Catch-up benchmark (issue: Node): a fresh node joins a node holding N events.

Builds N valid events (TESTNET proof-of-work; per account a genesis, two
add-devices and a revocation), writes them straight into the source node's
SQLite store, starts the source node, then starts a fresh node that knows
only the source's address and times how long it takes to hold every event
(reconciliation, transfer, verification, rules, SQLite with
synchronous=FULL).  In the same run it times PyNaCl alone verifying every
signature those events carry, with the node's parallelism (as many threads
as the node's verifying threads, ``node.replication.VERIFY_THREADS``;
libsodium releases the GIL), and reports
``ratio = pynacl_verify_seconds / catchup_seconds`` (target >= 0.5).  Both
are timed ``--repeats`` times, interleaved (a catch-up, then the baseline,
each catch-up by a new fresh node from the same source), and the best of
each is reported, as bench/ingest.py does: the machine is shared, and a
load change during one timing must not move the ratio.

    .venv/bin/python bench/catchup.py [--events 100000] [--repeats 3]
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
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ingest import signature_jobs, time_pynacl
from node.datadir import DataDir
from node.netdemo import DemoNode
from node.replication import VERIFY_THREADS
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
    # the suite is in the name: events of a retired suite are refused (§12.2)
    name = f"smu-catchup-v{GENERATOR_VERSION}-suite{TESTNET.suite}-{n_events}.pickle"
    cache = Path(tempfile.gettempdir()) / name
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


def time_pynacl_parallel(jobs: Sequence[tuple[bytes, bytes]], threads: int) -> float:
    """Wall-clock seconds for PyNaCl to check ``jobs`` split over ``threads``
    threads, as the node's verifying threads do."""
    if threads <= 1:
        return time_pynacl(jobs)
    parts = [jobs[k::threads] for k in range(threads)]
    times = [0.0] * threads

    def work(k: int) -> None:
        times[k] = time_pynacl(parts[k])

    started = time.perf_counter()
    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - started


def catch_up(
    base: Path, name: str, source: DemoNode, n_events: int
) -> tuple[float, dict[str, Any]]:
    """A fresh node that knows only ``source``: seconds until it holds
    ``n_events`` events, and its last status."""
    fresh = DemoNode(base, name)
    try:
        fresh.smu("init", "--network", TESTNET.network_id, "--name", name)
        start = time.perf_counter()
        fresh.start_existing(bootstrap=[source.addr])
        fresh.wait_ready()
        while True:
            status: dict[str, Any] = fresh.status()
            if status["events"] >= n_events:
                break
            if time.perf_counter() - start > 1800:
                raise SystemExit("catch-up did not finish in 30 minutes")
            time.sleep(0.1)
        return time.perf_counter() - start, status
    finally:
        fresh.stop()
        shutil.rmtree(fresh.dir, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    t = time.perf_counter()
    raws = generate(args.events)
    print(f"{len(raws)} events ready in {time.perf_counter() - t:.1f}s", flush=True)
    jobs = signature_jobs(raws, TESTNET)

    base = Path(tempfile.mkdtemp(prefix="smu-catchup-"))
    source = DemoNode(base, "source")
    catchups: list[float] = []
    verifies: list[float] = []
    one_core: list[float] = []
    try:
        DataDir(source.dir).init(TESTNET.network_id, "source", None)
        store = SqliteEventStore(open_database(source.dir / "events.sqlite"))
        for raw in raws:
            store.put(decode_event(raw, TESTNET))
        store.close()
        source.start_existing()
        source.wait_ready(timeout=300)
        source_digest = source.status()["event_set_digest"]
        same = True
        for k in range(args.repeats):
            seconds, status = catch_up(base, f"fresh{k}", source, len(raws))
            catchups.append(seconds)
            same = same and status["event_set_digest"] == source_digest
            stats = {key: v for key, v in status["replication"].items() if v}
            verifies.append(time_pynacl_parallel(jobs, VERIFY_THREADS))
            one_core.append(time_pynacl(jobs))
            print(
                f"run {k + 1}: catch-up {seconds:.2f}s, pynacl {verifies[-1]:.2f}s on "
                f"{VERIFY_THREADS} threads, {one_core[-1]:.2f}s on one",
                flush=True,
            )
    finally:
        source.stop()
        shutil.rmtree(base, ignore_errors=True)
    catchup_s, verify_s = min(catchups), min(verifies)
    ratio = verify_s / catchup_s
    print(
        f"catch-up: {len(raws)} events in {catchup_s:.2f}s = {len(raws) / catchup_s:,.0f} "
        f"events/s; ratio {ratio:.2f} (target >= {TARGET}); same set: {same}; "
        f"best of {args.repeats}"
    )
    print(
        json.dumps(
            {
                "benchmark": "catchup",
                "events": len(raws),
                "signatures": len(jobs),
                "catchup_seconds": round(catchup_s, 3),
                "catchup_seconds_all": [round(x, 3) for x in catchups],
                "events_per_second": round(len(raws) / catchup_s),
                "pynacl_verify_seconds": round(verify_s, 3),
                "pynacl_verify_seconds_all": [round(x, 3) for x in verifies],
                "pynacl_threads": VERIFY_THREADS,
                "pynacl_one_thread_seconds": round(min(one_core), 3),
                "ratio": round(ratio, 3),
                "ratio_meaning": "best pynacl_verify_seconds / best catchup_seconds, "
                "interleaved, same threads as the node's verifiers",
                "target": TARGET,
                "met": ratio >= TARGET,
                "same_set": same,
                "repeats": args.repeats,
                "cpus": os.cpu_count(),
                "fresh_node_replication_stats": stats,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
