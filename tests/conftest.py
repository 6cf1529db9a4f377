"""Shared fixtures: deterministic keys and an account-history builder."""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings

from protocol.core.keys import DeviceKeys, RecoveryKey
from protocol.core.params import NetworkParams
from protocol.log import authoring
from protocol.log.events import Event
from protocol.log.ledger import Ledger

if TYPE_CHECKING:
    from node.netdemo import Demo, DemoNode

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
# Real nodes (separate processes on loopback) for the node tests.


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    """A harness for real nodes; every node started in it is stopped after."""
    from node.netdemo import Demo

    d = Demo(tmp_path, as_json=True, quiet=True)
    yield d
    for node in d.nodes:
        node.stop()


def start_nodes(d: Demo, names: list[str], bootstrap: list[str] | None = None) -> list[DemoNode]:
    """Start ``smu node run`` processes and wait until each answers."""
    from node.netdemo import DemoNode

    nodes = [DemoNode(d.base, n) for n in names]
    for n in nodes:
        n.start(bootstrap)
    for n in nodes:
        n.wait_ready()
    d.nodes.extend(nodes)
    return nodes


def alice_and_bob(
    d: Demo, names: list[str], bob_on: int
) -> tuple[list[DemoNode], dict[str, Any], dict[str, Any]]:
    """Start nodes linked in a chain, create alice on the first and bob on
    node ``bob_on``, and wait until every node holds both accounts."""
    nodes = start_nodes(d, names)
    for left, right in itertools.pairwise(nodes):
        d.connect(left, right)
    alice: dict[str, Any] = nodes[0].client.call("account.create", name="alice")
    bob: dict[str, Any] = nodes[bob_on].client.call("account.create", name="bob")
    d.wait_converged(d.nodes)
    return nodes, alice, bob


T = TypeVar("T")


def wait_for(fn: Callable[[], T], timeout: float = 30.0) -> T:
    """Poll ``fn`` until it returns something truthy (real processes settle)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)
