"""Shared fixtures: deterministic keys and an account-history builder."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

from protocol.core.keys import DeviceKeys, RecoveryKey
from protocol.core.params import NetworkParams
from protocol.log import authoring
from protocol.log.events import Event
from protocol.log.ledger import Ledger

if TYPE_CHECKING:
    from node.netdemo import Demo

#: proof-of-work off, so that tests spend their time on the rules
FAST = NetworkParams(network_id="smu-unit", genesis_pow_bits=0, event_pow_bits=0)
T0 = 1_750_000_000_000


def device(label: str) -> DeviceKeys:
    return DeviceKeys.from_random(hashlib.blake2b(b"device:" + label.encode()).digest())


def recovery(label: str) -> RecoveryKey:
    return RecoveryKey(hashlib.blake2b(b"recovery:" + label.encode(), digest_size=32).digest())


class History:
    """Builds one account's events by name, for readable tests."""

    def __init__(self, params: NetworkParams = FAST, name: str = "bob") -> None:
        self.params = params
        self.keys: dict[str, DeviceKeys] = {"d0": device(name + "/d0")}
        self.rk = recovery(name + "/r0")
        self.t = T0
        self.genesis = authoring.genesis(
            params, self.keys["d0"], self.rk, display_name=name, device_name="d0", timestamp=self.t
        )
        self.account = self.genesis.id
        self.events: dict[str, Event] = {"g": self.genesis}

    def _ts(self) -> int:
        self.t += 1
        return self.t

    def _parents(self, parents: list[str]) -> list[bytes]:
        return [self.events[p].id for p in parents]

    def add(self, label: str, signer: str, new: str, parents: list[str]) -> Event:
        self.keys.setdefault(new, device(f"{self.account.hex()}/{new}"))
        intro = authoring.introduce(self.params, self.account, self.keys[new], new)
        e = authoring.add_device(
            self.params,
            self.account,
            self._parents(parents),
            self.keys[signer],
            intro,
            timestamp=self._ts(),
        )
        self.events[label] = e
        return e

    def revoke(self, label: str, signer: str, target: str, parents: list[str]) -> Event:
        e = authoring.revoke_device(
            self.params,
            self.account,
            self._parents(parents),
            self.keys[signer],
            self.keys[target].sign_public,
            timestamp=self._ts(),
        )
        self.events[label] = e
        return e

    def recover(
        self, label: str, new: str, parents: list[str], rk: RecoveryKey | None = None
    ) -> Event:
        self.keys.setdefault(new, device(f"{self.account.hex()}/{new}"))
        nxt = recovery(f"{self.account.hex()}/{label}")
        e = authoring.recover(
            self.params,
            self.account,
            self._parents(parents),
            rk or self.rk,
            self.keys[new],
            nxt,
            device_name=new,
            timestamp=self._ts(),
        )
        self.events[label] = e
        return e

    def next_key(self, label: str) -> RecoveryKey:
        """The recovery key that the recover or rotation ``label`` commits to."""
        return recovery(f"{self.account.hex()}/{label}")

    def rotate(
        self, label: str, signer: str, parents: list[str], rk: RecoveryKey | None = None
    ) -> Event:
        """A rotation of the recovery key (PROTOCOL.md §6.8) by device
        ``signer``, co-signed by ``rk`` (default: the genesis key), to
        ``next_key(label)``."""
        e = authoring.rotate_recovery(
            self.params,
            self.account,
            self._parents(parents),
            self.keys[signer],
            rk or self.rk,
            self.next_key(label),
            timestamp=self._ts(),
        )
        self.events[label] = e
        return e

    def profile(
        self, label: str, signer: str, name: str, parents: list[str], ts: int | None = None
    ) -> Event:
        e = authoring.profile(
            self.params,
            self.account,
            self._parents(parents),
            self.keys[signer],
            display_name=name,
            timestamp=ts if ts is not None else self._ts(),
        )
        self.events[label] = e
        return e

    def ledger(self, labels: list[str] | None = None) -> Ledger:
        ledger = Ledger(self.params)
        for label in labels or list(self.events):
            ledger.ingest(self.events[label].raw)
        return ledger

    def status(self, ledger: Ledger) -> dict[str, str]:
        state = ledger.state(self.account)
        out = {}
        for name, k in self.keys.items():
            d = state.device(k.sign_public)
            if d is not None:
                out[name] = d.status.value
        return out


@pytest.fixture
def history() -> History:
    return History()


def hypothesis_settings(n: int, **kw: object) -> settings:
    """Reproducible Hypothesis runs: fixed derivation, no example database,
    no deadline (the machines are shared and noisy)."""
    return settings(
        max_examples=n,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        **kw,  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------
# Real nodes (separate processes on loopback): helpers in tests/process.py.


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    """A harness for real nodes; every node started in it is stopped after."""
    from node.netdemo import Demo

    from .process import ACTIVE

    d = Demo(tmp_path, as_json=True, quiet=True)
    ACTIVE.append(d)
    try:
        yield d
    finally:
        ACTIVE.remove(d)
        for node in d.nodes:
            node.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test that ran real nodes shows the tail of each node's log."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed and call.when in ("setup", "call"):
        from .process import ACTIVE, log_tails

        if ACTIVE:
            report.sections.append(("node logs", log_tails()))
