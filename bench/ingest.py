"""Ingest benchmark: how close is ``Ledger.ingest`` to the cost of its signatures?

DESIGN.md §9: libsodium's Ed25519 verification is the floor of ingest cost.
This measures, in one run and on one core, (a) ingesting N raw events into a
fresh ``Ledger`` with a ``MemoryEventStore`` (decode + proof-of-work +
signatures + rules + store) and (b) PyNaCl alone verifying exactly the
signatures those events carry (event signatures and proofs of possession),
and reports ``ratio = pynacl_verify_seconds / ingest_seconds``.  The target
is 0.7: everything beyond the signature checks costs under 30%.

Workload (TESTNET proof-of-work): per account a genesis, an add-device, then
a profile or a second add-device, then a revocation.  Every
``--concurrent-every``-th account instead forks after its add-device: a
profile signed by the new device races the revocation of that device, so
the slow path of ``AccountLog`` (re-evaluation of the rules) runs too, and
rule 4 voids the profile.

Events are generated first (not timed) and cached under /tmp, keyed by a
hash of the generator's parameters.  Each timing runs ``--repeats`` times,
interleaved, and the best is reported because the machine is shared.  The
last line of output is one JSON object.

    .venv/bin/python bench/ingest.py [--accounts 5000] [--repeats 3] [--profile]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import msgpack
import nacl
import nacl.bindings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protocol.core.crypto import D_EVENT_SIG
from protocol.core.keys import DeviceKeys, RecoveryKey
from protocol.core.params import TESTNET, NetworkParams
from protocol.log import authoring
from protocol.log.events import Event, decode_event, pop_message
from protocol.log.ledger import Ledger
from protocol.log.store import MemoryEventStore

TARGET = 0.7
#: bump when the generator changes what it makes, to invalidate caches
GENERATOR_VERSION = 1
T0 = 1_750_000_000_000

Account = list[bytes]  # one account's raw events, parents first


# --------------------------------------------------------------------------
# Generation (not timed)


def _device(seed: bytes, label: str) -> DeviceKeys:
    return DeviceKeys.from_random(hashlib.blake2b(seed + b"/device/" + label.encode()).digest())


def _account(params: NetworkParams, seed: bytes, n: int, concurrent: bool) -> Account:
    tag = seed + n.to_bytes(4, "big")
    d0, d1, d2 = (_device(tag, x) for x in ("d0", "d1", "d2"))
    rk = RecoveryKey(hashlib.blake2b(tag + b"/recovery", digest_size=32).digest())
    t = T0 + n * 10
    g = authoring.genesis(
        params, d0, rk, display_name=f"user {n}", device_name="laptop", timestamp=t
    )
    acct = g.id

    def add(approver: DeviceKeys, new: DeviceKeys, name: str, parent: Event, ts: int) -> Event:
        intro = authoring.introduce(params, acct, new, name)
        return authoring.add_device(params, acct, [parent.id], approver, intro, timestamp=ts)

    a1 = add(d0, d1, "phone", g, t + 1)
    if concurrent:
        # The profile and the revocation both have a1 as their only parent.
        third = authoring.profile(
            params, acct, [a1.id], d1, display_name=f"user {n} (phone)", timestamp=t + 2
        )
        rv = authoring.revoke_device(params, acct, [a1.id], d0, d1.sign_public, timestamp=t + 3)
    elif n % 2:
        third = authoring.profile(
            params, acct, [a1.id], d1, display_name=f"user {n}!", timestamp=t + 2
        )
        rv = authoring.revoke_device(params, acct, [third.id], d0, d1.sign_public, timestamp=t + 3)
    else:
        third = add(d1, d2, "tablet", a1, t + 2)
        rv = authoring.revoke_device(params, acct, [third.id], d2, d0.sign_public, timestamp=t + 3)
    return [g.raw, a1.raw, third.raw, rv.raw]


def generate(
    params: NetworkParams, accounts: int, concurrent_every: int, seed: int, use_cache: bool
) -> tuple[list[Account], str]:
    key = json.dumps(
        [GENERATOR_VERSION, params.network_id, params.suite, params.genesis_pow_bits,
         params.event_pow_bits, params.special_pow_bits, accounts, concurrent_every, seed]
    )  # fmt: skip
    digest = hashlib.blake2b(key.encode(), digest_size=8).hexdigest()
    path = Path(f"/tmp/smu-bench-ingest-{digest}.msgpack")
    if use_cache and path.exists():
        try:
            data = msgpack.unpackb(path.read_bytes())
        except (ValueError, msgpack.UnpackException):
            data = None  # a damaged cache: make the events again
        if isinstance(data, list) and len(data) == accounts:
            return data, f"cached in {path}"
    s = seed.to_bytes(8, "big")
    out = [_account(params, s, n, concurrent_every > 0 and n % concurrent_every == 0)
           for n in range(accounts)]  # fmt: skip
    if use_cache:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(msgpack.packb(out, use_bin_type=True))
        tmp.replace(path)
    return out, f"generated (cached in {path})" if use_cache else "generated"


# --------------------------------------------------------------------------
# Ingest orders: always parents first, so nothing is escrowed.


def layered_order(accounts: Sequence[Account]) -> list[bytes]:
    """All geneses, then every account's second event, and so on."""
    depth = max(len(a) for a in accounts)
    return [a[k] for k in range(depth) for a in accounts if k < len(a)]


def shuffled_order(
    accounts: Sequence[Account], rng: random.Random, concurrent_every: int
) -> list[bytes]:
    """A uniformly random interleaving of the accounts' sequences; within a
    concurrent account, the two branch tips also come in random order."""
    seqs = [list(a) for a in accounts]
    for n, s in enumerate(seqs):
        if concurrent_every > 0 and n % concurrent_every == 0 and rng.random() < 0.5:
            s[2], s[3] = s[3], s[2]  # both are children of the add-device
    slots = [i for i, s in enumerate(seqs) for _ in s]
    rng.shuffle(slots)
    pos = [0] * len(seqs)
    out = []
    for i in slots:
        out.append(seqs[i][pos[i]])
        pos[i] += 1
    return out


# --------------------------------------------------------------------------
# What PyNaCl alone must verify: (signature || message, public key) pairs.


def signature_jobs(raws: Sequence[bytes], params: NetworkParams) -> list[tuple[bytes, bytes]]:
    jobs = []
    for raw in raws:
        e = decode_event(raw, params)
        jobs.append((e.signature + D_EVENT_SIG + e.core, e.signer))
        dev = e.introduced_device
        if dev is not None:
            msg = pop_message(e.network, e.account, dev.sign_public, dev.enc_public)
            jobs.append((dev.pop + msg, dev.sign_public))
    return jobs


def time_pynacl(jobs: Sequence[tuple[bytes, bytes]]) -> float:
    sign_open = nacl.bindings.crypto_sign_open
    gc.collect()
    t0 = time.perf_counter()
    for signed, pk in jobs:
        sign_open(signed, pk)
    return time.perf_counter() - t0


def run_ingest(order: Sequence[bytes], params: NetworkParams) -> tuple[float, Ledger]:
    ledger = Ledger(params, store=MemoryEventStore())
    ingest = ledger.ingest
    gc.collect()
    t0 = time.perf_counter()
    for raw in order:
        ingest(raw)
    elapsed = time.perf_counter() - t0
    return elapsed, ledger


def check_ledger(ledger: Ledger, accounts: Sequence[Account], concurrent_every: int) -> str:
    """Everything was accepted, and concurrent accounts have the expected void;
    returns a digest of every account's state (equal across orders)."""
    n_events = sum(len(a) for a in accounts)
    assert ledger.event_count == n_events, (ledger.event_count, n_events)
    assert len(ledger.store) == n_events
    h = hashlib.blake2b(digest_size=16)
    for n, acct in enumerate(accounts):
        genesis_id = decode_event(acct[0], ledger.params).id
        state = ledger.state(genesis_id)
        concurrent = concurrent_every > 0 and n % concurrent_every == 0
        assert len(state.voided) == (1 if concurrent else 0), (n, state.voided)
        h.update(state.digest)
    return h.hexdigest()


def sodium_version() -> str:
    try:
        from nacl._sodium import ffi, lib

        return str(ffi.string(lib.sodium_version_string()).decode())
    except Exception:
        return f"bundled with PyNaCl {nacl.__version__} (version not exposed)"


def best_of(repeats: int, fns: Sequence[Callable[[], float]]) -> list[float]:
    """Run each function ``repeats`` times, interleaved; the best time of each."""
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            best[k] = min(best[k], fn())
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--accounts", type=int, default=5000)
    ap.add_argument("--concurrent-every", type=int, default=25)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-cache", action="store_true")
    ap.add_argument("--profile", action="store_true", help="cProfile one ingest and print it")
    args = ap.parse_args(argv)
    params = TESTNET

    t = time.perf_counter()
    accounts, how = generate(
        params, args.accounts, args.concurrent_every, args.seed, not args.no_cache
    )
    print(f"events {how} in {time.perf_counter() - t:.1f} s")
    orders = {
        "layered": layered_order(accounts),
        "shuffled": shuffled_order(accounts, random.Random(args.seed), args.concurrent_every),
    }
    n_events = len(orders["layered"])
    jobs = signature_jobs(orders["layered"], params)
    print(
        f"{n_events} events, {len(accounts)} accounts, {len(jobs)} signatures "
        f"(every {args.concurrent_every}th account forks), network {params.network_id}"
    )

    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        run_ingest(orders["shuffled"], params)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)

    digests: dict[str, str] = {}

    def ingest_fn(name: str) -> Callable[[], float]:
        def fn() -> float:
            elapsed, ledger = run_ingest(orders[name], params)
            if name not in digests:
                digests[name] = check_ledger(ledger, accounts, args.concurrent_every)
            return elapsed

        return fn

    names = list(orders)
    times = best_of(args.repeats, [*(ingest_fn(n) for n in names), lambda: time_pynacl(jobs)])
    verify_s = times[-1]
    by_order = dict(zip(names, times[:-1], strict=True))
    assert len(set(digests.values())) == 1, f"states differ between orders: {digests}"

    for name, secs in by_order.items():
        print(
            f"ingest ({name:8}) {secs:7.3f} s  {n_events / secs:8.0f} events/s  "
            f"{len(jobs) / secs:8.0f} signatures/s  ratio {verify_s / secs:.3f}"
        )
    print(
        f"pynacl verify      {verify_s:7.3f} s  {len(jobs) / verify_s:8.0f} signatures/s  "
        f"({verify_s / len(jobs) * 1e6:.1f} us each)"
    )
    # The headline is the slower order.
    worst = max(by_order, key=lambda k: by_order[k])
    ingest_s = by_order[worst]
    ratio = verify_s / ingest_s
    met = ratio >= TARGET
    print(
        f"ratio {ratio:.3f} (pynacl verify / ingest, {worst} order); target {TARGET}: "
        f"{'met' if met else 'NOT met'}; non-signature overhead "
        f"{(ingest_s - verify_s) / n_events * 1e6:.1f} us/event; best of {args.repeats}"
    )
    result = {
        "benchmark": "ingest",
        "events": n_events,
        "accounts": len(accounts),
        "signatures": len(jobs),
        "order": worst,
        "ingest_seconds": round(ingest_s, 4),
        "ingest_seconds_by_order": {k: round(v, 4) for k, v in by_order.items()},
        "events_per_second": round(n_events / ingest_s, 1),
        "signatures_per_second": round(len(jobs) / ingest_s, 1),
        "pynacl_verify_seconds": round(verify_s, 4),
        "ratio": round(ratio, 4),
        "target": TARGET,
        "met": met,
        "repeats": args.repeats,
        "states_digest": next(iter(digests.values())),
        "network": params.network_id,
        "python": platform.python_version(),
        "pynacl": nacl.__version__,
        "libsodium": sodium_version(),
        "msgpack": ".".join(map(str, msgpack.version)),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
