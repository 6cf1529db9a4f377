"""Mailbox traffic: contacts and a stranger depositing at a real ``Mailbox``.

One honest node runs ``protocol.messaging.mailbox.Mailbox`` for one device
of a recipient account (created here, at another honest node); the device's
token key signs one-time tokens, handed to the recipient's contacts (as
they would be inside encrypted messages, §15.10).  Each contact deposits
real envelopes (sealed from its node's own replica) with a token; one
honest stranger deposits without a token now and then, from its own
network group.  A deposit travels as a direct stream: one latency sample
there, a job on the mailbox node's CPU (``Mailbox.handle``; charged for
the frame's bytes and, with a token, one signature check), one back.

Figures: contacts' deposits accepted (must all be), their latency from
sending to the answer, and the stranger's deposits accepted and still held
at the end (an accepted item can be pushed out of a full pool later).  The
``mailbox_fill`` adversary (``attacks.MailboxFill``) floods the same
mailbox from fresh peer ids in a few /16s.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from protocol.core.machine import Send
from protocol.links.policy import network_group
from protocol.messaging.content import Text
from protocol.messaging.envelope import seal
from protocol.messaging.mailbox import Mailbox, MailboxLimits
from protocol.messaging.mailbox_wire import (
    Deposited,
    MailboxIdentity,
    Refused,
    decode_answer,
    deposit_request,
)
from protocol.messaging.tokens import Token, TokenSigner, token_expiry

from . import topology as topo
from .metrics import percentile
from .workload import Account, timestamp

if TYPE_CHECKING:
    from .engine import Engine, SimNode
    from .workload import Workload

RETRY_AFTER = 0.5


@dataclass(slots=True)
class Tally:
    attempted: int = 0
    accepted: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    items: list[bytes] = field(default_factory=list)

    def report(self, held: set[bytes]) -> dict[str, Any]:
        lat = sorted(self.latencies)
        kept = sum(1 for i in self.items if i in held)
        return {
            "attempted": self.attempted,
            "accepted": self.accepted,
            #: accepted and still held at the end (not pushed out since)
            "held_at_end": kept,
            "held_at_end_ratio": round(kept / self.attempted, 6) if self.attempted else 1.0,
            "accepted_ratio": round(self.accepted / self.attempted, 6) if self.attempted else 1.0,
            "refused": dict(sorted(self.refused.items())),
            "latency_p50": _r(percentile(lat, 50)),
            "latency_p99": _r(percentile(lat, 99)),
        }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


class MailboxLoad:
    def __init__(self, workload: Workload) -> None:
        self.w = workload
        self.e: Engine = workload.e
        self.rng = workload.rng
        self.spec = self.e.sc.mailbox
        self.contacts = Tally()
        self.stranger = Tally()
        self.attackers = Tally()
        self.box: Mailbox | None = None
        self.counters: dict[bytes, int] = {}

    def schedule(self) -> None:
        spec, rng, honest = self.spec, self.rng, self.w.honest
        self.mailbox_node, home = rng.sample(honest, 2)
        self.recipient = self.w.new_account(home, managed=False)
        self.device = self.recipient.devices[0]
        self.w.create_genesis(self.recipient, 0.5)
        others = [i for i in honest if i not in (self.mailbox_node, home)]
        self.senders: list[Account] = []
        for _ in range(spec.contacts + 1):  # the last one is the stranger
            acc = self.w.new_account(rng.choice(others), managed=False)
            self.w.create_genesis(acc, 0.6)
            self.senders.append(acc)
        self.signer = TokenSigner(rng.randbytes(32))
        self.identity = MailboxIdentity(rng.randbytes(32))
        self.tokens: list[list[Token]] = [[] for _ in range(spec.contacts)]
        self.e.at(1.0, self._open)
        span = max(spec.end - spec.start, 0.001)
        for k in range(spec.deposits):
            t = spec.start + rng.uniform(0, span)
            self.e.at(t, self._deposit_at(self.senders[k % spec.contacts], k % spec.contacts))
        if spec.stranger_interval > 0:
            t = spec.start
            while t < spec.end:
                self.e.at(t, self._deposit_at(self.senders[-1], None))
                t += spec.stranger_interval

    def _open(self, t: float) -> None:
        """The mailbox node grants the device; the device hands its contacts
        one token per deposit they will make."""
        m = self.e.nodes[self.mailbox_node]
        now = m.now(t)
        limits = MailboxLimits(**self.spec.limits)
        box = Mailbox(self.e.params, self.identity, peer_id=m.pid, limits=limits)
        acc = self.recipient.account_id
        assert acc is not None
        box.issue_grant(acc, self.device.keys.sign_public, now=now, token_key=self.signer.public)
        self.box = box
        expires = token_expiry(now.wall_ms)
        for k in range(self.spec.contacts):
            n = len(range(k, self.spec.deposits, self.spec.contacts))
            nonces = [self.rng.randbytes(16) for _ in range(n)]
            self.tokens[k] = list(
                self.signer.issue(
                    self.e.params,
                    self.identity.public,
                    self.device.keys.sign_public,
                    nonces,
                    expires,
                )
            )

    def envelope(self, n: SimNode, sender: Account, now: float) -> bytes | None:
        """A real envelope from ``sender``'s first device to the recipient's
        device, sealed from ``n``'s replica (None: it lacks an account)."""
        acc, rec = sender.account_id, self.recipient.account_id
        if acc is None or rec is None:
            return None
        if acc not in n.ledger.accounts or rec not in n.ledger.accounts:
            return None
        dev = sender.devices[0]
        counter = self.counters.get(dev.keys.sign_public, 0) + 1
        self.counters[dev.keys.sign_public] = counter
        env = seal(
            self.e.params,
            dev.keys,
            n.ledger.state(acc),
            n.ledger.state(rec),
            Text("m" * self.spec.message_bytes),
            counter=counter,
            timestamp=timestamp(n, now),
            seed=self.rng.randbytes(32),
            force=True,
            only_devices=[self.device.keys.sign_public],
        )
        return env.raw

    def _deposit_at(self, sender: Account, contact: int | None) -> Any:
        def fire(t: float) -> None:
            if t > self.e.sc.duration - 1.0:
                return
            home = self.e.nodes[sender.home]
            self.e.call_on(home, lambda n, now: self._send(n, now, sender, contact), t)

        return fire

    def _send(self, n: SimNode, now: float, sender: Account, contact: int | None) -> list[Any]:
        raw = self.envelope(n, sender, now)
        if raw is None or self.box is None:
            self.e.at(now + RETRY_AFTER, self._deposit_at(sender, contact))
            return []
        token = self.tokens[contact].pop() if contact is not None else None
        frame = deposit_request(self.device.keys.sign_public, raw, token)
        tally = self.contacts if contact is not None else self.stranger
        self.deposit(n.pid, n.host, frame, now, tally, token is not None)
        return []

    def deposit(
        self, pid: str, host: str, frame: bytes, t: float, tally: Tally, tokened: bool
    ) -> None:
        """``frame`` leaves a node at ``host`` at ``t`` for the mailbox."""
        tally.attempted += 1
        m = self.e.nodes[self.mailbox_node]
        group = pid if self.spec.group_by == "peer_id" else network_group(host)
        cpu = self.e.sc.cpu

        def job(node: SimNode, now: float) -> list[Any]:
            assert self.box is not None
            node.extra += cpu.per_byte * len(frame) + (cpu.per_signature if tokened else 0.0)
            outs = self.box.handle(
                frame, peer=pid, group=group, now=node.now(now), random16=self.rng.randbytes(16)
            )
            answer = decode_answer(next(o.frame for o in outs if type(o) is Send))
            back = now + cpu.per_frame + node.extra + topo.sample(self.e._lat, self.rng)
            self.e.at(back, lambda t2: self._answered(tally, answer, t, t2))
            return []

        arrive = t + topo.sample(self.e._lat, self.rng)
        self.e.at(arrive, lambda t2: self.e.call_on(m, job, t2))

    @staticmethod
    def _answered(tally: Tally, answer: Any, sent: float, t: float) -> None:
        if isinstance(answer, Deposited):
            tally.accepted += 1
            tally.items.append(answer.item_id)
            tally.latencies.append(t - sent)
        elif isinstance(answer, Refused):
            tally.refused[answer.code] += 1
        else:
            tally.refused[type(answer).__name__] += 1

    def report(self) -> dict[str, Any]:
        box = self.box
        held = box.held(self.device.keys.sign_public) if box is not None else (0, 0)
        strangers = box.held_by_strangers(self.device.keys.sign_public) if box else (0, 0)
        ids = {m.item_id for m in box.store.load().items} if box is not None else set()
        return {
            "contacts": self.contacts.report(ids),
            "stranger": self.stranger.report(ids),
            "attackers": self.attackers.report(ids),
            "held_at_end": {"items": held[1], "stranger_items": strangers[1]},
        }
