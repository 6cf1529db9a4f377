"""What a hostile account costs a node: ingest per event whatever the
account's shape, memory per event, start-up per stored event (DESIGN §4,
"every cost bounded by what the writer paid"; PROTOCOL.md §7.3, §8).

Every node verifies every account, so the measure is the marginal cost of
one more event in an account an attacker shaped:

- **width**: 500 more children of the genesis, in an account that already
  has 60 of them, and one that has ``max_device_events - 500`` (the stolen
  key's fan: under suite 1 each such event re-evaluated the account);
- **chain**: 500 more events at the tip of a chain of 400, and of 40,000;
- **off-head**: 500 events attached to random points of those chains (the
  appends that do not extend the heads);
- **memory**: resident memory of a 40,000-event chain minus a 4,000-event
  one, per event (each size in a fresh process);
- **start-up**: ``Ledger(store=...)`` replaying 100,000 stored events, per
  event, over the same at 10,000 (a mixed account: four devices, forks and
  merges, revocations and adds), with and without signature checks.

Each ingest is timed twice: ``ingest`` (decode, proof-of-work, signatures,
rules, store) and the rules alone (``ingest_verified`` on decoded events).
The same run measures PyNaCl's Ed25519 verification, and every cost is also
printed in verifications (DESIGN §8: libsodium is the floor).  The machine
is shared: every timing is the best of ``--repeats``, interleaved.  Events
are generated once (TESTNET) and cached under /tmp.  The last line of output
is one JSON object.

    .venv/bin/python bench/attack_cost.py [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import msgpack
import nacl
import nacl.bindings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protocol.core.keys import DeviceKeys, RecoveryKey
from protocol.core.params import TESTNET, NetworkParams
from protocol.log import authoring
from protocol.log.events import Event, decode_event
from protocol.log.ledger import Ledger
from protocol.log.store import MemoryEventStore

PARAMS = TESTNET
#: bump when the generators change what they make, to invalidate caches
GENERATOR_VERSION = 1
T0 = 1_750_000_000_000
BATCH = 500
TARGETS = {"width_ratio": 1.5, "chain_ratio": 1.5, "bytes_per_event": 2048, "startup_ratio": 1.5}


# --------------------------------------------------------------------------
# Generation (not timed), cached


def _keys(tag: str) -> DeviceKeys:
    return DeviceKeys.from_random(hashlib.blake2b(b"attack-cost/" + tag.encode()).digest())


def _genesis(params: NetworkParams, tag: str) -> tuple[Event, DeviceKeys]:
    d0 = _keys(tag + "/d0")
    rk = RecoveryKey(hashlib.blake2b(b"attack-cost/rec/" + tag.encode(), digest_size=32).digest())
    g = authoring.genesis(params, d0, rk, display_name=tag, device_name="d0", timestamp=T0)
    return g, d0


def _profile(
    params: NetworkParams, g: Event, parents: list[bytes], key: DeviceKeys, t: int
) -> Event:
    return authoring.profile(
        params, g.id, parents, key, display_name=f"n{t % 997}", timestamp=T0 + t
    )


def fan(params: NetworkParams, n: int) -> list[bytes]:
    """A genesis and ``n`` profile events, all its children (width ``n``)."""
    g, d0 = _genesis(params, "fan")
    return [g.raw, *(_profile(params, g, [g.id], d0, t).raw for t in range(1, n + 1))]


def chain(params: NetworkParams, n: int) -> list[bytes]:
    """A genesis and a chain of ``n`` profile events."""
    g, d0 = _genesis(params, "chain")
    out, prev = [g.raw], g
    for t in range(1, n + 1):
        prev = _profile(params, g, [prev.id], d0, t)
        out.append(prev.raw)
    return out


def mixed(params: NetworkParams, n: int) -> list[bytes]:
    """``n`` events of four devices taking turns: mostly a chain, with a fork
    and its merge every 200 events, and every 1,000 a revocation of one of
    them and an add-device of its successor."""
    g, d0 = _genesis(params, "mixed")
    acct = g.id
    devices = [d0]
    out = [g.raw]
    head = g
    t = 0
    gen = 0

    def nxt() -> int:
        nonlocal t
        t += 1
        return t

    while len(devices) < 4:
        new = _keys(f"mixed/dev{len(devices)}")
        intro = authoring.introduce(params, acct, new, f"dev{len(devices)}")
        head = authoring.add_device(
            params, acct, [head.id], devices[0], intro, timestamp=T0 + nxt()
        )
        out.append(head.raw)
        devices.append(new)
    while len(out) < n:
        signer = devices[len(out) % len(devices)]
        k = len(out)
        if k % 1000 == 999:
            old = devices.pop(0)
            head = authoring.revoke_device(
                params, acct, [head.id], devices[0], old.sign_public, timestamp=T0 + nxt()
            )
            out.append(head.raw)
            gen += 1
            new = _keys(f"mixed/gen{gen}")
            intro = authoring.introduce(params, acct, new, f"gen{gen}")
            head = authoring.add_device(
                params, acct, [head.id], devices[0], intro, timestamp=T0 + nxt()
            )
            out.append(head.raw)
            devices.append(new)
        elif k % 200 == 199:
            a = _profile(params, g, [head.id], devices[0], nxt())
            b = _profile(params, g, [head.id], devices[1], nxt())
            head = _profile(params, g, sorted([a.id, b.id]), signer, nxt())
            out.extend((a.raw, b.raw, head.raw))
        else:
            head = _profile(params, g, [head.id], signer, nxt())
            out.append(head.raw)
    return out[:n]


def batch(params: NetworkParams, base: Sequence[bytes], how: str, seed: int) -> list[bytes]:
    """``BATCH`` more events for an account made by ``fan`` or ``chain``:
    more children of the genesis (``fan``), more chain (``tip``), or
    children of random chain events (``off``)."""
    events = [decode_event(r, params) for r in base]
    g = events[0]
    tag = "fan" if how == "fan" else "chain"
    d0 = _keys(tag + "/d0")
    rng = random.Random(seed)
    out, prev = [], events[-1]
    t0 = len(base) + 10
    for t in range(t0, t0 + BATCH):
        if how == "fan":
            e = _profile(params, g, [g.id], d0, t)
        elif how == "tip":
            e = prev = _profile(params, g, [prev.id], d0, t)
        else:
            e = _profile(params, g, [events[rng.randrange(1, len(events))].id], d0, t)
        out.append(e.raw)
    return out


def cached(name: str, make: Callable[[], list[bytes]], key: object) -> list[bytes]:
    spec = json.dumps([GENERATOR_VERSION, name, PARAMS.network_id, PARAMS.suite, key])
    digest = hashlib.blake2b(spec.encode(), digest_size=8).hexdigest()
    path = Path(f"/tmp/smu-bench-attack-{name}-{digest}.msgpack")
    if path.exists():
        try:
            data = msgpack.unpackb(path.read_bytes())
            if isinstance(data, list):
                return data
        except (ValueError, msgpack.UnpackException):
            pass
    data = make()
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(msgpack.packb(data, use_bin_type=True))
    tmp.replace(path)
    return data


# --------------------------------------------------------------------------
# Timing


def base_ledger(raws: Sequence[bytes]) -> Ledger:
    """An account loaded without timing (signatures skipped: they were
    checked when the events were made)."""
    ledger = Ledger(PARAMS, store=MemoryEventStore())
    for raw in raws:
        ledger.ingest_verified(decode_event(raw, PARAMS))
    return ledger


def best(repeats: int, fns: Sequence[Callable[[], float]]) -> list[float]:
    """Each function ``repeats`` times, interleaved; the lowest of each."""
    out = [float("inf")] * len(fns)
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            out[k] = min(out[k], fn())
    return out


def marginal(base_raws: Sequence[bytes], more: Sequence[bytes], full: bool) -> Callable[[], float]:
    """A timer: load ``base_raws`` (untimed), then add ``more``; seconds per
    event of the latter."""

    def run() -> float:
        ledger = base_ledger(base_raws)
        if full:
            ingest = ledger.ingest
            gc.collect()
            t = time.perf_counter()
            for raw in more:
                ingest(raw)
        else:
            decoded = [decode_event(r, PARAMS) for r in more]
            ingest_v = ledger.ingest_verified
            gc.collect()
            t = time.perf_counter()
            for e in decoded:
                ingest_v(e)
        elapsed = time.perf_counter() - t
        assert ledger.event_count == len(base_raws) + len(more)
        return elapsed / len(more)

    return run


def startup(raws: Sequence[bytes], verify: bool) -> Callable[[], float]:
    store = MemoryEventStore()
    for raw in raws:
        store.put(decode_event(raw, PARAMS))

    def run() -> float:
        gc.collect()
        t = time.perf_counter()
        ledger = Ledger(PARAMS, store=store, verify_signatures_on_load=verify)
        elapsed = time.perf_counter() - t
        assert ledger.event_count == len(raws)
        return elapsed / len(raws)

    return run


def verify_rate(n: int = 4000) -> Callable[[], float]:
    """Seconds per Ed25519 verification, PyNaCl (libsodium) alone."""
    keys = [_keys(f"verify/{i % 16}") for i in range(n)]
    jobs = []
    for i, k in enumerate(keys):
        msg = b"attack-cost/verify/%d" % i
        jobs.append((k.sign(msg) + msg, k.sign_public))
    sign_open = nacl.bindings.crypto_sign_open

    def run() -> float:
        gc.collect()
        t = time.perf_counter()
        for signed, pk in jobs:
            sign_open(signed, pk)
        return (time.perf_counter() - t) / n

    return run


_CHILD = r"""
import gc, sys
sys.path.insert(0, sys.argv[1])
import msgpack
from protocol.core.params import TESTNET
from protocol.log.events import decode_event
from protocol.log.ledger import Ledger
from protocol.log.store import MemoryEventStore

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096

raws = msgpack.unpackb(open(sys.argv[2], "rb").read())
gc.collect()
ledger = Ledger(TESTNET, store=MemoryEventStore())
for raw in raws:
    assert ledger.ingest(raw).status.value == "accepted"
del raws
ledger.state(next(iter(ledger.accounts)))
gc.collect()
print(rss())
"""


def rss_of(raws: list[bytes], tag: str) -> int:
    """Resident bytes of a fresh process holding a ledger of ``raws``."""
    path = Path(f"/tmp/smu-bench-attack-rss-{tag}-{os.getpid()}.msgpack")
    path.write_bytes(msgpack.packb(raws, use_bin_type=True))
    try:
        root = str(Path(__file__).resolve().parent.parent)
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, root, str(path)],
            check=True,
            capture_output=True,
            text=True,
        )
        return int(out.stdout.strip().splitlines()[-1])
    finally:
        path.unlink(missing_ok=True)


# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="smaller accounts (a smoke test)")
    args = ap.parse_args(argv)
    cap = PARAMS.max_device_events
    wide = cap - BATCH
    chain_small, chain_large = 400, 40_000
    mem_small, mem_large = 4_000, 40_000
    start_small, start_large = 10_000, 100_000
    if args.quick:
        wide, chain_large, mem_large, start_large = 3_000, 4_000, 8_000, 20_000
        mem_small, start_small = 800, 2_000

    t = time.perf_counter()
    fan_small = cached("fan", lambda: fan(PARAMS, 60), 60)
    fan_large = cached("fan", lambda: fan(PARAMS, wide), wide)
    ch_small = cached("chain", lambda: chain(PARAMS, chain_small), chain_small)
    ch_large = cached("chain", lambda: chain(PARAMS, chain_large), chain_large)
    mix_large = cached("mixed", lambda: mixed(PARAMS, start_large), start_large)
    mix_small = mix_large[:start_small]
    mem_s = cached("chain", lambda: chain(PARAMS, mem_small), mem_small)
    mem_l = cached("chain", lambda: chain(PARAMS, mem_large), mem_large)
    batches = {
        "width": (
            (fan_small, cached("batch-fan", lambda: batch(PARAMS, fan_small, "fan", 1), [60, 1])),
            (fan_large, cached("batch-fan", lambda: batch(PARAMS, fan_large, "fan", 1), [wide, 1])),
        ),
        "chain": (
            (
                ch_small,
                cached("batch-tip", lambda: batch(PARAMS, ch_small, "tip", 1), [chain_small]),
            ),
            (
                ch_large,
                cached("batch-tip", lambda: batch(PARAMS, ch_large, "tip", 1), [chain_large]),
            ),
        ),
        "off_head": (
            (
                ch_small,
                cached("batch-off", lambda: batch(PARAMS, ch_small, "off", 2), [chain_small]),
            ),
            (
                ch_large,
                cached("batch-off", lambda: batch(PARAMS, ch_large, "off", 2), [chain_large]),
            ),
        ),
    }
    print(f"events ready in {time.perf_counter() - t:.1f} s (cached under /tmp)", flush=True)

    timers: list[Callable[[], float]] = [verify_rate()]
    names: list[tuple[str, str, str]] = []
    for shape, (small, large) in batches.items():
        for size, (base, more) in (("small", small), ("large", large)):
            for mode, full in (("ingest", True), ("rules", False)):
                timers.append(marginal(base, more, full))
                names.append((shape, size, mode))
    for size, raws in (("small", mix_small), ("large", mix_large)):
        for mode, verify in (("verified", True), ("rules", False)):
            timers.append(startup(raws, verify))
            names.append(("startup", size, mode))
    times = best(args.repeats, timers)
    verify_s = times[0]
    got = dict(zip(names, times[1:], strict=True))

    def entry(shape: str, small_n: int, large_n: int) -> dict[str, object]:
        d: dict[str, object] = {"small": small_n, "large": large_n}
        for mode in ("ingest", "rules", "verified"):
            if (shape, "small", mode) not in got:
                continue
            s, lg = got[(shape, "small", mode)], got[(shape, "large", mode)]
            d[mode] = {
                "us_per_event_small": round(s * 1e6, 2),
                "us_per_event_large": round(lg * 1e6, 2),
                "verifies_per_event_small": round(s / verify_s, 3),
                "verifies_per_event_large": round(lg / verify_s, 3),
                "ratio": round(lg / s, 3),
            }
        return d

    result: dict[str, object] = {
        "benchmark": "attack_cost",
        "ed25519_verify_us": round(verify_s * 1e6, 2),
        "ed25519_verifies_per_second": round(1 / verify_s),
        "batch": BATCH,
        "max_device_events": cap,
        "width": entry("width", 60, wide),
        "chain": entry("chain", chain_small, chain_large),
        "off_head": entry("off_head", chain_small, chain_large),
        "startup": entry("startup", start_small, start_large),
    }
    for shape in ("width", "chain", "off_head", "startup"):
        e = result[shape]
        assert isinstance(e, dict)
        for mode, d in e.items():
            if isinstance(d, dict):
                print(
                    f"{shape:8} {mode:8} {d['us_per_event_small']:9.1f} us/event at "
                    f"{e['small']:>6}, {d['us_per_event_large']:9.1f} at {e['large']:>6}: "
                    f"ratio {d['ratio']:.3f} ({d['verifies_per_event_large']:.2f} verifications)"
                )
    rss_s, rss_l = rss_of(mem_s, "small"), rss_of(mem_l, "large")
    per_event = (rss_l - rss_s) / (mem_large - mem_small)
    result["memory"] = {
        "small": mem_small,
        "large": mem_large,
        "rss_small_mb": round(rss_s / 2**20, 1),
        "rss_large_mb": round(rss_l / 2**20, 1),
        "bytes_per_event": round(per_event),
    }
    print(
        f"memory   {per_event:9.0f} bytes/event (RSS {rss_s / 2**20:.1f} -> {rss_l / 2**20:.1f} MB)"
    )
    width = result["width"]
    chain_r = result["chain"]
    start = result["startup"]
    assert isinstance(width, dict) and isinstance(chain_r, dict) and isinstance(start, dict)
    checks = {
        "width_ratio": width["ingest"]["ratio"] <= TARGETS["width_ratio"],  # type: ignore[index]
        "chain_ratio": chain_r["ingest"]["ratio"] <= TARGETS["chain_ratio"],  # type: ignore[index]
        "bytes_per_event": per_event <= TARGETS["bytes_per_event"],
        "startup_ratio": start["rules"]["ratio"] <= TARGETS["startup_ratio"],  # type: ignore[index]
    }
    result["targets"] = TARGETS
    result["met"] = checks
    result.update(
        repeats=args.repeats,
        quick=args.quick,
        network=PARAMS.network_id,
        python=platform.python_version(),
        pynacl=nacl.__version__,
        cpu_count=os.cpu_count(),
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
