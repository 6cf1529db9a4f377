"""Benchmark of range-based set reconciliation (PROTOCOL.md §11.3).

Two stores of ~100,000 random 32-byte event ids differ by ``d`` ids (``d``
counts differences on both sides: ceil(d/2) only in A, floor(d/2) only in
B).  Differences are *bunched* (consecutive in the sorted id space) or
*spread* (at random positions).  The exchange runs through the real frame
encoder (protocol.wire) and the real ``respond`` until both sides know what
they lack; then each side requests what it lacks in windows of 512 ids and
gets the events back.

Assumption: an event is 300 bytes (a typical add-device event is ~330, a
profile event ~190).  Each frame carries the transport's 4-byte length
prefix (§11.1), counted here.

Cost model in half-trips: A's first message arrives at t=1; a message
answered at arrival time t arrives back at t+1; a side that learns at t
that it lacks ids has them at t+2 (request out, events back), one more
round trip per further window.  Round trips = ceil(last arrival / 2).

Targets (the issue): overhead beyond the missing events' bytes
<= 64 KiB + 100 B per difference (bunched) and <= 64 KiB + 2 KiB per
difference (spread); round trips <= 6.  The naive cost is one side sending
all its ids (32 B each) before anything is fetched.

    .venv/bin/python bench/reconcile.py [--n 100000] [--seed 1]

The last line of output is one JSON object with all figures.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protocol.sync.reconcile import IdIndex, ReconcileConfig, chunk, initiate, respond
from protocol.sync.wire import (
    FLAG_OWN,
    EventsFrame,
    ReconcileFrame,
    RequestFrame,
    decode_frame,
    encode_frame,
)

EVENT_BYTES = 300
MAX_FRAME = 256 * 1024
MAX_RANGES = 8192
EVENTS_PER_FRAME = 256
WINDOW = 512
KIB = 1024


LENGTH_PREFIX = 4  # big-endian u32 before every frame (§11.1)


def wire(data: bytes) -> int:
    return len(data) + LENGTH_PREFIX


def make_pair(n: int, d: int, rng: random.Random, bunched: bool) -> tuple[IdIndex, IdIndex]:
    n_a = n  # A holds n ids; B holds n - ceil(d/2) + floor(d/2)
    common_n = n_a - (d + 1) // 2
    ids = sorted(rng.randbytes(32) for _ in range(common_n + d))
    if bunched:
        start = rng.randrange(len(ids) - d + 1)
        diff = ids[start : start + d]
    else:
        diff = rng.sample(ids, d)
    only_a = set(diff[0::2])
    only_b = set(diff[1::2])
    a = IdIndex(i for i in ids if i not in only_b)
    b = IdIndex(i for i in ids if i not in only_a)
    return a, b


def fetch_cost(need: int) -> tuple[int, int, int]:
    """(request bytes, event-frame bytes, round trips) to fetch ``need`` events."""
    if need == 0:
        return 0, 0, 0
    req = ev = 0
    fake_id = bytes(32)
    for start in range(0, need, WINDOW):
        k = min(WINDOW, need - start)
        ids = tuple(fake_id[:-4] + i.to_bytes(4, "big") for i in range(k))
        req += wire(encode_frame(RequestFrame(ids)))
        for s in range(0, k, EVENTS_PER_FRAME):
            m = min(EVENTS_PER_FRAME, k - s)
            ev += wire(encode_frame(EventsFrame((b"\xee" * EVENT_BYTES,) * m)))
    return req, ev, math.ceil(need / WINDOW)


def run(n: int, d: int, bunched: bool, seed: int) -> dict[str, object]:
    rng = random.Random(f"{seed}/{n}/{d}/{bunched}")
    a, b = make_pair(n, d, rng, bunched)
    sides = {"a": a, "b": b}
    cfg = ReconcileConfig()
    recon_bytes = 0
    frames = 0
    need: dict[str, int] = {"a": 0, "b": 0}
    learned: dict[str, int] = {"a": 0, "b": 0}  # last half-trip at which a side learnt a need
    pending = [("b", initiate(a, cfg))]
    t = 0
    started = time.perf_counter()
    while pending:
        t += 1
        nxt = []
        for to, ranges in pending:
            for piece in chunk(ranges, MAX_FRAME, MAX_RANGES):
                data = encode_frame(ReconcileFrame(0, FLAG_OWN, piece))
                recon_bytes += wire(data)
                frames += 1
                frame = decode_frame(data)
                assert isinstance(frame, ReconcileFrame)
                out = respond(sides[to], frame.ranges, cfg)
                if out.need:
                    need[to] += len(out.need)
                    learned[to] = t
                if out.wants_reply:
                    nxt.append(("a" if to == "b" else "b", out.reply))
        pending = nxt
    seconds = time.perf_counter() - started
    assert need["a"] + need["b"] == d, (need, d)
    last = t
    req_bytes = ev_bytes = 0
    for side in ("a", "b"):
        rq, ev, rts = fetch_cost(need[side])
        req_bytes += rq
        ev_bytes += ev
        if rts:
            last = max(last, learned[side] + 2 * rts)
    wire_bytes = recon_bytes + req_bytes + ev_bytes
    missing_bytes = d * EVENT_BYTES
    overhead = wire_bytes - missing_bytes
    per_diff = 100 if bunched else 2 * KIB
    target = 64 * KIB + per_diff * d
    round_trips = math.ceil(last / 2)
    naive_bytes = 32 * len(b) + ev_bytes + req_bytes  # one side lists every id
    return {
        "d": d,
        "layout": "bunched" if bunched else "spread",
        "wire_bytes": wire_bytes,
        "reconcile_bytes": recon_bytes,
        "request_bytes": req_bytes,
        "event_frame_bytes": ev_bytes,
        "missing_event_bytes": missing_bytes,
        "overhead_bytes": overhead,
        "overhead_target_bytes": target,
        "overhead_met": overhead <= target,
        "round_trips": round_trips,
        "round_trips_met": round_trips <= 6,
        "reconcile_frames": frames,
        "naive_bytes": naive_bytes,
        "naive_over_ours": round(naive_bytes / wire_bytes, 2),
        "cpu_seconds": round(seconds, 3),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rows = []
    for bunched in (True, False):
        for d in (1, 100, 1000):
            row = run(args.n, d, bunched, args.seed)
            rows.append(row)
            print(
                f"{row['layout']:7} d={d:5}: wire {row['wire_bytes']:>9} B "
                f"(reconcile {row['reconcile_bytes']}, requests {row['request_bytes']}, "
                f"events {row['event_frame_bytes']}), overhead {row['overhead_bytes']} "
                f"<= {row['overhead_target_bytes']}: {row['overhead_met']}, "
                f"round trips {row['round_trips']}, naive/ours {row['naive_over_ours']}"
            )
    met = all(r["overhead_met"] and r["round_trips_met"] for r in rows)
    result = {
        "benchmark": "reconcile",
        "ids_per_store": args.n,
        "event_bytes_assumed": EVENT_BYTES,
        "max_frame_bytes": MAX_FRAME,
        "branching": ReconcileConfig().branching,
        "ids_threshold": ReconcileConfig().ids_threshold,
        "runs": rows,
        "ratio": min(float(str(r["naive_over_ours"])) for r in rows),
        "ratio_meaning": "smallest naive_bytes / wire_bytes over all runs",
        "met": met,
        "seed": args.seed,
        "python": platform.python_version(),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
