"""What a simulated node's CPU is charged for, and the calibration behind it.

A job on a node's virtual CPU (``engine.Engine._run_job``) costs

* ``per_frame`` and ``per_byte`` for a frame received (decoding, framing);
* ``per_event`` for each output other than a ``Send`` (bookkeeping);
* ``per_signature`` for each Ed25519 verification the node's ledger asked
  for (``MeteredVerifier``: an event's signature, and its device's proof of
  possession when it introduces one).  A duplicate the replicator drops
  before verification (``Ledger.held_raw``, PROTOCOL.md §8) asks for none,
  so it costs the frame and a lookup only;
* ``per_evaluation`` for each event checked against the account rules
  (``MeteredLedger``: accepted, released from escrow, or refused);
* ``per_evaluated_event`` for each event a *full* evaluation of the account
  rules visits (``state.evaluate`` called by ``account.AccountLog``: an
  append that does not extend the heads re-evaluates the whole account on
  today's ledger).  Counted by wrapping ``protocol.log.account.evaluate``
  once per process (``install``); a ledger that no longer calls it is
  charged for what it does do, no more.

Counts are exact and deterministic (no wall clock enters a report); the
seconds per count come from ``calibrate`` (``simnet calibrate``), measured
on the machine that wrote the scenario defaults (``scenario.Cpu``).

Only honest nodes are metered: an attacker's own work is not the figure of
interest, and a flooding attacker is given all the CPU it wants.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import protocol.log.account as _account
from protocol.core.errors import InvalidInput
from protocol.core.keys import DeviceKeys, RecoveryKey
from protocol.core.machine import SIM_EPOCH_MS
from protocol.core.params import NetworkParams
from protocol.log import authoring
from protocol.log.events import AddDeviceBody, Event, GenesisBody, RecoverBody, verify_event
from protocol.log.ledger import IngestResult, Ledger

_INTRO = (GenesisBody, AddDeviceBody, RecoverBody)
#: a timestamp inside every network's bounds
T0 = SIM_EPOCH_MS


@dataclass(slots=True)
class Meter:
    """Work one node did; the engine charges the difference over each job."""

    signatures: int = 0
    evaluations: int = 0


#: events visited by full evaluations of the account rules, process-wide
#: (the engine reads it before and after each job: one job runs at a time)
_EVALUATED = [0]


def evaluated_events() -> int:
    return _EVALUATED[0]


def install() -> None:
    """Count what ``protocol.log.account.evaluate`` visits (idempotent)."""
    fn = getattr(_account, "evaluate", None)
    if fn is None or getattr(fn, "_simnet_metered", False):
        return

    def metered(*args: Any, **kwargs: Any) -> Any:
        mask = args[2] if len(args) > 2 else kwargs.get("mask")
        events = args[0] if args else kwargs.get("events", ())
        _EVALUATED[0] += mask.bit_count() if isinstance(mask, int) else len(events)
        return fn(*args, **kwargs)

    metered._simnet_metered = True  # type: ignore[attr-defined]
    _account.evaluate = metered  # type: ignore[attr-defined]


def signatures_of(event: Event) -> int:
    """Ed25519 verifications ``verify_event`` makes for ``event``."""
    return 2 if isinstance(event.body, _INTRO) else 1


class MeteredVerifier:
    """One node's view of the shared signature cache: each call is a
    verification the real node would make, so it is counted here even when
    the cache (which only saves the simulator's wall clock) answers it."""

    def __init__(self, inner: Callable[[Event, NetworkParams], None], meter: Meter) -> None:
        self.inner = inner
        self.meter = meter

    def __call__(self, event: Event, params: NetworkParams) -> None:
        self.meter.signatures += signatures_of(event)
        self.inner(event, params)


class MeteredLedger(Ledger):
    """A ledger that counts the events it checks against the account rules.

    With ``dedup=False`` it is the ledger before duplicates were dropped
    ahead of verification (the defence removed, to show what it is worth):
    ``held_raw`` never answers yes, and ``ingest`` verifies first."""

    def __init__(
        self,
        params: NetworkParams,
        verify: Callable[[Event, NetworkParams], None],
        meter: Meter,
        dedup: bool = True,
    ) -> None:
        super().__init__(params, verify=verify)
        self.meter = meter
        self.dedup = dedup

    def held_raw(self, raw: bytes) -> bool:
        return self.dedup and super().held_raw(raw)

    def ingest(self, raw: bytes, source: Hashable | None = None) -> IngestResult:
        if not self.dedup:
            self.verify(self.decode(raw, self.params), self.params)
        return super().ingest(raw, source)

    def ingest_verified(self, event: Event, source: Hashable | None = None) -> IngestResult:
        before = self.event_count
        try:
            result = super().ingest_verified(event, source)
        except InvalidInput:
            self.meter.evaluations += 1
            raise
        self.meter.evaluations += self.event_count - before + len(result.rejected)
        return result


# -- calibration --------------------------------------------------------------------


def _best(fn: Callable[[], int], repeats: int) -> float:
    """Seconds per unit of ``fn``'s work (it returns how many units it did),
    the fastest of ``repeats`` runs (on a shared machine the others include
    time the process did not run)."""
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = fn()
        runs.append((time.perf_counter() - t0) / max(n, 1))
    return min(runs)


def _profile_account(params: NetworkParams, n: int, wide: bool, seed: int) -> list[Event]:
    """A genesis and ``n`` profile events: a chain, or siblings of the genesis."""
    rng = random.Random(seed)
    dev = DeviceKeys.from_random(rng.randbytes(64))
    g = authoring.genesis(
        params,
        dev,
        RecoveryKey(rng.randbytes(32)),
        display_name="c",
        device_name="d",
        timestamp=T0,
    )
    events = [g]
    for k in range(n):
        parent = g.id if wide else events[-1].id
        ev = authoring.profile(params, g.id, [parent], dev, display_name=f"n{k}", timestamp=T0 + k)
        events.append(ev)
    return events


def _ledger(params: NetworkParams, events: list[Event]) -> MeteredLedger:
    led = MeteredLedger(params, lambda e, p: None, Meter())
    for e in events:
        led.ingest_verified(e)
    return led


def check_wide(params: NetworkParams, width: int, tail: int = 100) -> dict[str, float]:
    """The model against the real ledger on a wide DAG: seconds per event
    of the last ``tail`` of ``width`` siblings (children of the genesis),
    measured, and the counts the model charges for them."""
    install()
    events = _profile_account(params, width, wide=True, seed=2)
    led = _ledger(params, events[:-tail])
    ev0, m0 = _EVALUATED[0], led.meter.evaluations
    t0 = time.perf_counter()
    for e in events[-tail:]:
        led.ingest_verified(e)
    spent = time.perf_counter() - t0
    return {
        "width": width,
        "measured_per_event": round(spent / tail, 9),
        "evaluations_per_event": (led.meter.evaluations - m0) / tail,
        "evaluated_events_per_event": (_EVALUATED[0] - ev0) / tail,
    }


def _open_cost(params: NetworkParams, n: int, repeats: int) -> float:
    """Seconds per ``open_envelope`` of a 200-byte text to a one-device
    account (decryption, the sender's signature, the replay guard)."""
    from protocol.messaging.content import ReplayGuard, Text
    from protocol.messaging.envelope import ledger_lookup, open_envelope, seal

    a = _profile_account(params, 0, wide=False, seed=4)
    b = _profile_account(params, 0, wide=False, seed=5)
    led = _ledger(params, a + b)
    rng = random.Random(6)
    ka = DeviceKeys.from_random(random.Random(4).randbytes(64))
    kb = DeviceKeys.from_random(random.Random(5).randbytes(64))
    sa, sb = led.state(a[0].id), led.state(b[0].id)
    runs = []
    for r in range(repeats):
        envs = [
            seal(
                params,
                ka,
                sa,
                sb,
                Text("m" * 200),
                counter=r * n + k + 1,
                timestamp=T0,
                seed=rng.randbytes(32),
            ).raw
            for k in range(n)
        ]
        guard = ReplayGuard()
        t0 = time.perf_counter()
        for raw in envs:
            open_envelope(params, raw, b[0].id, kb, ledger_lookup(led), guard)
        runs.append((time.perf_counter() - t0) / n)
    return min(runs)


def calibrate(n: int = 1000, repeats: int = 5) -> dict[str, Any]:
    """Measure the CPU model's costs on this machine (``simnet calibrate``).

    * ``per_signature``: ``verify_event`` of a profile event (one libsodium
      Ed25519 verification);
    * ``per_evaluation``: ``Ledger.ingest_verified`` of a profile event that
      extends the heads (the incremental check and apply, no signature),
      over a chain of ``n``;
    * ``per_open``: ``open_envelope`` of a 200-byte text;
    * ``per_evaluated_event``: fitted to appends of siblings of the genesis
      at width 2,000 (each re-evaluates the whole account on today's
      ledger), then checked at width 300: the model's prediction beside the
      time measured (``check_wide``).
    """
    install()
    params = NetworkParams(network_id="smu-calibrate", genesis_pow_bits=0, event_pow_bits=0)
    chain = _profile_account(params, n, wide=False, seed=1)

    def verify() -> int:
        for _ in range(n):
            verify_event(chain[1], params)
        return n

    def ingest() -> int:
        _ledger(params, chain)
        return len(chain)

    out: dict[str, Any] = {
        "per_signature": round(_best(verify, repeats), 9),
        "per_evaluation": round(_best(ingest, repeats), 9),
        "per_open": round(_open_cost(params, n // 4, repeats), 9),
    }
    # the full evaluation an off-head append triggers, fitted where it
    # matters (siblings at width 2,000), then checked at width 300
    fit: dict[str, Any] = check_wide(params, 2000)
    extra = fit["measured_per_event"] - out["per_evaluation"] * fit["evaluations_per_event"]
    out["per_evaluated_event"] = round(extra / fit["evaluated_events_per_event"], 9)
    out["fitted_at"] = fit
    c: dict[str, Any] = check_wide(params, 300)
    c["model_per_event"] = round(
        out["per_evaluation"] * c["evaluations_per_event"]
        + out["per_evaluated_event"] * c["evaluated_events_per_event"],
        9,
    )
    out["checked_at"] = c
    out["events"] = n
    return out
