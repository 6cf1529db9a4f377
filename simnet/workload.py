"""Honest users: accounts, devices and their changes, as raw signed events.

Every device lives on one node (its *home*); a change is built there, from
that node's own view of the account (its heads, its active devices), at the
moment the job runs, with the node's skewed clock as the timestamp.  Two
devices of one account acting at the same moment on different nodes make
concurrent branches, as in real life.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from protocol.core.errors import InvalidInput, UnknownAccountError
from protocol.core.keys import DeviceKeys, RecoveryKey
from protocol.core.machine import SIM_EPOCH_MS
from protocol.log import authoring
from protocol.log.events import Event
from protocol.log.ledger import Ledger

from .engine import Engine, SimNode

T0_MS = SIM_EPOCH_MS


@dataclass(slots=True)
class Device:
    keys: DeviceKeys
    home: int
    name: str
    #: held (also) by an attacker: the workload never acts with it
    compromised: bool = False
    #: the event that added it (set when built)
    added_by: bytes | None = None


@dataclass(slots=True)
class Account:
    slot: int
    home: int
    recovery: RecoveryKey
    devices: list[Device] = field(default_factory=list)
    account_id: bytes | None = None
    #: adversary scenarios own their victim accounts; the workload leaves them alone
    managed: bool = True


def timestamp(node: SimNode, t: float) -> int:
    return T0_MS + int((t + node.skew) * 1000)


def active_in_view(ledger: Ledger, account: bytes) -> frozenset[bytes]:
    try:
        return ledger.state(account).active_keys
    except UnknownAccountError:
        return frozenset()


class Workload:
    def __init__(self, engine: Engine, honest: list[int], observer: Any) -> None:
        self.e = engine
        self.rng = engine.rng
        self.honest = honest
        self.obs = observer
        self.accounts: list[Account] = []
        self.skipped = 0
        self.rejected_local = 0

    # -- keys -----------------------------------------------------------------

    def new_device(self, home: int, name: str) -> Device:
        return Device(DeviceKeys.from_random(self.rng.randbytes(64)), home, name)

    def new_account(self, home: int, managed: bool = True) -> Account:
        acc = Account(len(self.accounts), home, RecoveryKey(self.rng.randbytes(32)))
        acc.managed = managed
        acc.devices.append(self.new_device(home, "d0"))
        self.accounts.append(acc)
        return acc

    # -- publishing -------------------------------------------------------------

    def publish_built(self, node: SimNode, event: Event, t: float, honest: bool) -> list[Any]:
        """Hand a freshly built event to the node's replicator (inside a job)."""
        self.obs.created(event, node.idx, t, honest)
        try:
            outs: list[Any] = node.rep.publish(event.raw, node.now(t))
        except InvalidInput:
            self.rejected_local += 1  # e.g. a concurrent change made it invalid here
            self.obs.forget(event)
            return []
        return outs

    def create_genesis(self, acc: Account, t: float, extra_homes: list[int] | None = None) -> None:
        """Genesis at the account's home, then one add per extra device, chained."""
        node = self.e.nodes[acc.home]

        def job(n: SimNode, now: float) -> list[Any]:
            d0 = acc.devices[0]
            g = authoring.genesis(
                self.e.params,
                d0.keys,
                acc.recovery,
                display_name=f"acct{acc.slot}",
                device_name=d0.name,
                timestamp=timestamp(n, now),
            )
            acc.account_id = g.id
            d0.added_by = g.id
            outs = self.publish_built(n, g, now, True)
            parent = g.id
            for home in extra_homes or []:
                dev = self.new_device(home, f"d{len(acc.devices)}")
                acc.devices.append(dev)
                ev = self._add(n, acc, d0, dev, [parent], now)
                dev.added_by = ev.id
                outs += self.publish_built(n, ev, now, True)
                parent = ev.id
            return outs

        self.e.call_on(node, job, t)

    def _add(
        self,
        n: SimNode,
        acc: Account,
        approver: Device,
        dev: Device,
        parents: list[bytes],
        t: float,
    ) -> Event:
        assert acc.account_id is not None
        intro = authoring.introduce(self.e.params, acc.account_id, dev.keys, dev.name)
        return authoring.add_device(
            self.e.params, acc.account_id, parents, approver.keys, intro, timestamp=timestamp(n, t)
        )

    # -- the honest schedule ------------------------------------------------------

    def schedule(self) -> list[int]:
        """Schedule the honest accounts and their changes; the accounts' slots."""
        w = self.e.sc.workload
        span = max(w.end - w.start, 0.001)
        mine = []
        for _ in range(w.accounts):
            acc = self.new_account(self.rng.choice(self.honest))
            mine.append(acc.slot)
            self.create_genesis(acc, w.start + self.rng.uniform(0, span * 0.1))
        changes = max(0, w.events - w.accounts)
        times = sorted(self.rng.uniform(w.start + span * 0.15, w.end) for _ in range(changes))
        budget = [changes]
        for t in times:
            if mine:
                self.e.at(t, self._change_at(self.rng.choice(mine), budget))
        return mine

    def _eligible(self, acc: Account) -> list[Device]:
        if acc.account_id is None:
            return []
        out = []
        for d in acc.devices:
            node = self.e.nodes[d.home]
            if d.compromised or not node.up:
                continue
            if d.keys.sign_public in active_in_view(node.ledger, acc.account_id):
                out.append(d)
        return out

    def _change_at(self, slot: int, budget: list[int]) -> Callable[[float], None]:
        def fire(t: float) -> None:
            if budget[0] <= 0:
                return
            acc = self.accounts[slot]
            devs = self._eligible(acc)
            if not devs:
                if t + 1.0 < self.e.sc.duration * 0.9:
                    self.e.at(t + 1.0, fire)
                else:
                    self.skipped += 1
                return
            actor = self.rng.choice(devs)
            budget[0] -= 1
            self._act(acc, actor, t)
            others = [d for d in devs if d.home != actor.home]
            if others and budget[0] > 0 and self.rng.random() < self.e.sc.workload.concurrent:
                budget[0] -= 1
                self._act(acc, self.rng.choice(others), t)

        return fire

    def _act(self, acc: Account, actor: Device, t: float) -> None:
        w = self.e.sc.workload
        r = self.rng.uniform(0, w.add + w.revoke + w.profile)
        kind = "add" if r < w.add else "revoke" if r < w.add + w.revoke else "profile"
        new_home = self.rng.choice(self.honest)
        name = f"p{self.rng.randrange(1_000_000)}"

        def job(n: SimNode, now: float) -> list[Any]:
            assert acc.account_id is not None
            params = self.e.params
            try:
                log = n.ledger.log(acc.account_id)
            except UnknownAccountError:
                return []
            heads = list(log.heads)
            active = log.state().active_keys
            if actor.keys.sign_public not in active:
                return []  # revoked by a concurrent change since it was chosen
            ts = timestamp(n, now)
            targets = [
                d
                for d in acc.devices
                if d is not actor and not d.compromised and d.keys.sign_public in active
            ]
            if kind == "revoke" and targets:
                target = self.rng.choice(targets)
                ev = authoring.revoke_device(
                    params, acc.account_id, heads, actor.keys, target.keys.sign_public, timestamp=ts
                )
            elif kind in ("add", "revoke"):
                dev = self.new_device(new_home, f"d{len(acc.devices)}")
                acc.devices.append(dev)
                ev = self._add(n, acc, actor, dev, heads, now)
                dev.added_by = ev.id
            else:
                ev = authoring.profile(
                    params, acc.account_id, heads, actor.keys, display_name=name, timestamp=ts
                )
            return self.publish_built(n, ev, now, True)

        self.e.call_on(self.e.nodes[actor.home], job, t)
