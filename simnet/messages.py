"""Message-sized traffic: real envelopes between simulated devices.

A message is sealed with ``protocol.messaging.envelope.seal`` on the sender device's
home node, from that node's own replica (so it is wrapped for exactly the
devices that node believes active), and travels straight to the home node
of each device it was wrapped for: one latency sample of the scenario's
distribution, like a direct libp2p stream (DESIGN.md §5; delivery does not
ride the gossip overlay).  Each receiving node opens it with
``open_envelope`` against *its* replica, a per-device replay guard and,
for wrap scheme 2, the device's session book and prekey store, values
kept by ``sessions.py`` (devices whose records advertise scheme 2 get it,
PROTOCOL.md §19.13; the others scheme 1).  A
node whose replica lags (the sender's device is not active there yet)
retries, as a real node does after reconciling (PROTOCOL.md §15.14).

Figures: messages sent, deliveries expected and made, end-to-end latency
(sealing to opening), and openings by a device that was not active in the
*receiver's* view of the recipient account at opening time (must be 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from protocol.core.errors import InvalidInput, UsageError
from protocol.messaging.content import ReplayGuard, Text
from protocol.messaging.envelope import ledger_lookup, open_envelope, peek, seal

from . import topology as topo
from .metrics import percentile
from .sessions import SessionWorld
from .workload import T0_MS, Account, Device, active_in_view, timestamp

if TYPE_CHECKING:
    from .engine import Engine, SimNode
    from .workload import Workload

RETRY_AFTER = 0.5
MAX_TRIES = 40


@dataclass(slots=True)
class MessageStats:
    sent: int = 0
    not_sent: int = 0
    expected: int = 0
    delivered: int = 0
    retries: int = 0
    gave_up: int = 0
    opened_by_inactive: int = 0
    opened_from_inactive_sender: int = 0
    latencies: list[float] = field(default_factory=list)
    #: the last refusal of each delivery given up on, by error code: a
    #: device revoked meanwhile is refused for good, which is correct
    refusals: dict[str, int] = field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        return {
            "sent": self.sent,
            "not_sent": self.not_sent,
            "deliveries_expected": self.expected,
            "deliveries": self.delivered,
            "delivery_ratio": round(self.delivered / self.expected, 6) if self.expected else 1.0,
            "retries": self.retries,
            "gave_up": self.gave_up,
            "gave_up_refusals": dict(sorted(self.refusals.items())),
            "in_flight_at_end": self.expected - self.delivered - self.gave_up,
            "opened_by_inactive_device": self.opened_by_inactive,
            "opened_from_inactive_sender": self.opened_from_inactive_sender,
            "latency": {
                "p50": _r(percentile(lat, 50)),
                "p99": _r(percentile(lat, 99)),
                "max": _r(lat[-1] if lat else None),
            },
        }


@dataclass(frozen=True, slots=True)
class Delivery:
    """One envelope on its way to one device."""

    raw: bytes
    #: the account the target device belongs to (recipient or sender)
    account: Account
    target: Device
    sent: float
    sender: Account
    device: Device  # the sending device


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


class MessageTraffic:
    def __init__(self, workload: Workload) -> None:
        self.w = workload
        self.e: Engine = workload.e
        self.rng = workload.rng
        self.stats = MessageStats()
        self.guards: dict[bytes, ReplayGuard] = {}
        self.counters: dict[tuple[bytes, bytes], int] = {}
        #: every device's sessions and prekeys, as values (§19.13)
        self.sessions = SessionWorld(self.e.sc.workload.scheme2_share, T0_MS)

    def schedule(self, slots: list[int]) -> None:
        w = self.e.sc.workload
        if w.messages <= 0 or len(slots) < 2:
            return
        span = max(w.end - w.start, 0.001)
        for _ in range(w.messages):
            t = self.rng.uniform(w.start + span * 0.3, w.end)
            a, b = self.rng.sample(slots, 2)
            self.e.at(t, self._send_at(a, b, 0))

    def _send_at(self, sender_slot: int, recipient_slot: int, tries: int) -> Any:
        def fire(t: float) -> None:
            sender = self.w.accounts[sender_slot]
            recipient = self.w.accounts[recipient_slot]
            devs = self.w._eligible(sender)
            if not devs or recipient.account_id is None:
                if tries < MAX_TRIES:
                    self.e.at(
                        t + RETRY_AFTER, self._send_at(sender_slot, recipient_slot, tries + 1)
                    )
                else:
                    self.stats.not_sent += 1
                return
            device = self.rng.choice(devs)
            self.e.call_on(self.e.nodes[device.home], self._seal_job(sender, recipient, device), t)

        return fire

    def _seal_job(self, sender: Account, recipient: Account, device: Device) -> Any:
        seed = self.rng.randbytes(32)
        text = Text("m" * self.e.sc.workload.message_bytes)

        def job(n: SimNode, now: float) -> list[Any]:
            assert sender.account_id is not None and recipient.account_id is not None
            if recipient.account_id not in n.ledger.accounts:
                self.stats.not_sent += 1
                return []
            key = (device.keys.sign_public, recipient.account_id)
            counter = self.counters.get(key, 0) + 1
            try:
                env = seal(
                    self.e.params,
                    device.keys,
                    n.ledger.state(sender.account_id),
                    n.ledger.state(recipient.account_id),
                    text,
                    counter=counter,
                    timestamp=timestamp(n, now),
                    seed=seed,
                    force=True,
                    sessions=self.sessions.for_send(
                        device.keys, [d.keys for d in recipient.devices]
                    ),
                )
            except UsageError:
                self.stats.not_sent += 1
                return []
            schemes = [w.scheme for w in peek(env.raw, self.e.params).wraps]
            self.sessions.sent(device.keys, env.book, schemes)
            self.counters[key] = counter
            self.stats.sent += 1
            targets = {d.keys.sign_public: d for a in (sender, recipient) for d in a.devices}
            for dev_key in env.wrapped_for:
                target = targets.get(dev_key)
                if target is None or dev_key == device.keys.sign_public:
                    continue
                self.stats.expected += 1
                account = recipient if target in recipient.devices else sender
                arrive = now + topo.sample(self.e._lat, self.rng)  # a direct stream
                delivery = Delivery(env.raw, account, target, now, sender, device)
                self.e.at(arrive, self._deliver_at(delivery, 0))
            return []

        return job

    def _deliver_at(self, d: Delivery, tries: int) -> Any:
        def fire(t: float) -> None:
            node = self.e.nodes[d.target.home]
            if not node.up:
                self._retry(d, tries, t, "offline")
                return
            self.e.call_on(node, self._open_job(d, tries), t)

        return fire

    def _open_job(self, d: Delivery, tries: int) -> Any:
        def job(n: SimNode, now: float) -> list[Any]:
            assert d.account.account_id is not None and d.sender.account_id is not None
            guard = self.guards.setdefault(d.target.keys.sign_public, ReplayGuard())
            n.extra += self.e.sc.cpu.per_open
            try:
                opened = open_envelope(
                    self.e.params,
                    d.raw,
                    d.account.account_id,
                    d.target.keys,
                    ledger_lookup(n.ledger),
                    guard,
                    self.sessions.for_receive(d.target.keys, d.raw, timestamp(n, now)),
                )
            except InvalidInput as exc:
                self._retry(d, tries, now, exc.code)
                return []
            self.sessions.received(d.target.keys, opened)
            self.stats.delivered += 1
            self.stats.latencies.append(now - d.sent)
            # Judged from this node's own view, as the protocol promises (S6).
            if d.target.keys.sign_public not in active_in_view(n.ledger, d.account.account_id):
                self.stats.opened_by_inactive += 1
            if d.device.keys.sign_public not in active_in_view(n.ledger, d.sender.account_id):
                self.stats.opened_from_inactive_sender += 1
            return []

        return job

    def _retry(self, d: Delivery, tries: int, t: float, code: str) -> None:
        if tries >= MAX_TRIES:
            self.stats.gave_up += 1
            self.stats.refusals[code] = self.stats.refusals.get(code, 0) + 1
            return
        self.stats.retries += 1
        self.e.at(t + RETRY_AFTER, self._deliver_at(d, tries + 1))
