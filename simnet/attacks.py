"""Resource attacks (issue 11): the network's costs, each tried as an
attacker would, with honest delivery and latency as the figure of merit.

* ``wide_dag``: an attacker's own account, every event a child of its
  genesis (on today's ledger each such append re-evaluates the account);
* ``deep_chain``: an attacker's own account, one long chain;
* ``connection_flood``: fresh peer ids in a few /16s dial every honest node
  and hold what they get, rushing one node as it restarts;
* replay floods are ``adversaries.Replay`` with a large ``burst``, and the
  eclipse through the link policy is ``adversaries.EclipseSybil``.

Their events are valid: what is judged is what they cost honest nodes (the
engine charges each signature check and each evaluation of the account
rules, ``simnet.cpu``), not whether they are refused.
"""

from __future__ import annotations

from typing import Any

from protocol.core.errors import InvalidInput, UsageError
from protocol.log import authoring
from protocol.log.ledger import Ledger

from . import topology as topo
from .adversaries import Attack, Base
from .engine import SimNode
from .ledgers import FilteringLedger
from .workload import Account, timestamp


def publish_genesis(adv: Base, acc: Account, t: float, name: str) -> None:
    """The genesis of an attacker's own account, made and published at its
    home node (not an honest event: the observer does not hear of it)."""

    def job(n: SimNode, now: float) -> list[Any]:
        d0 = acc.devices[0]
        g = authoring.genesis(
            adv.e.params,
            d0.keys,
            acc.recovery,
            display_name=name,
            device_name=d0.name,
            timestamp=timestamp(n, now),
        )
        acc.account_id = g.id
        outs: list[Any] = n.rep.publish(g.raw, n.now(now))
        return outs

    adv.e.call_on(adv.e.nodes[acc.home], job, t)


class OwnAccountFlood(Base):
    """An attacker node creates an account of its own at ``create_at`` and,
    from ``start``, publishes ``events`` profile events, ``batch`` per job
    every ``interval`` seconds: all children of the genesis (``wide``) or
    each the child of the last (a chain).  The attacker's ledger refuses
    nothing it made; honest nodes replicate it all, as they must."""

    kind = "own_account_flood"
    wide = True

    def setup(self) -> None:
        self.home = self.nodes[0]
        self.account: Account = self.w.new_account(self.home, managed=False)
        self.attack = Attack(self.kind, self.account)
        self.made = 0
        self.last: bytes | None = None
        self.refused_here = 0
        self.total = int(self.f("events", 500))
        self.batch = int(self.f("batch", 25))
        self.interval = self.f("interval", 0.1)
        self.e.at(self.f("create_at", 0.5), self._genesis)
        self.e.at(self.f("start", 4.0), self._fire)

    def _genesis(self, t: float) -> None:
        publish_genesis(self, self.account, t, "flood")

    def _fire(self, t: float) -> None:
        if self.made >= self.total:
            return
        self.e.call_on(self.e.nodes[self.home], self._job, t)
        self.e.at(t + self.interval, self._fire)

    def _job(self, n: SimNode, now: float) -> list[Any]:
        acc = self.account
        if acc.account_id is None:
            return []
        d0 = acc.devices[0]
        outs: list[Any] = []
        for _ in range(min(self.batch, self.total - self.made)):
            parent = acc.account_id if self.wide or self.last is None else self.last
            ev = authoring.profile(
                self.e.params,
                acc.account_id,
                [parent],
                d0.keys,
                display_name=f"f{self.made}",
                timestamp=timestamp(n, now),
            )
            self.made += 1
            try:
                outs += n.rep.publish(ev.raw, n.now(now))
            except InvalidInput:
                self.refused_here += 1  # over a cap: the flood ends here
                self.made = self.total
                break
            self.last = ev.id
        return outs

    def figures(self) -> dict[str, Any]:
        acc = self.account.account_id
        held = [
            len(self.e.nodes[i].ledger.log(acc))
            for i in self.sim.honest
            if acc is not None and acc in self.e.nodes[i].ledger.accounts
        ]
        return {
            "attacker_events_made": self.made,
            "refused_by_the_attacker_ledger": self.refused_here,
            "attacker_account_events_at_honest_nodes": {
                "min": min(held, default=0),
                "max": max(held, default=0),
            },
        }


class WideDag(OwnAccountFlood):
    kind = "wide_dag"
    wide = True


class DeepChain(OwnAccountFlood):
    kind = "deep_chain"
    wide = False


class ConnectionFlood(Base):
    """Fresh peer ids (``count`` Sybils in ``groups`` /16s of their own)
    dial every honest node at ``start`` and again every ``redial`` seconds,
    and hold whatever links they get without relaying anything (their ledger
    refuses every event).  One honest node (the victim) restarts at
    ``restart_at`` and is rushed the moment it listens again, before any
    dial of its own, as a new node joining would be.  Whether honest nodes
    keep honest links is up to their link managers (inbound caps per
    network group, outbound slots, eviction from the largest group)."""

    kind = "connection_flood"
    in_topology = False

    def ledger(self) -> Ledger:
        return FilteringLedger(self.e.params, self.e.verify, lambda ev: True)

    def setup(self) -> None:
        self.victim = self.honest_choice([])
        acc = self.w.new_account(self.victim, managed=False)  # no account is attacked
        self.attack = Attack(self.kind, acc, victim=self.victim)
        self.collude()
        self.redial = self.f("redial", 2.0)
        down = self.f("restart_at", 2.0)
        up = down + self.f("down", 1.0)
        self.attack.eclipse_from = up
        self.e.at(self.f("start", 1.0), self._hammer)
        self.e.at(down, lambda t: self.e.node_down(self.victim, t))
        self.e.at(up, self._rush)

    def _rush(self, t: float) -> None:
        self.e.node_up(self.victim, t)
        for a in self.nodes:
            self.e.connect(a, self.victim, t, setup=0.0)

    def _hammer(self, t: float) -> None:
        if t >= self.sim.sc.duration:
            return
        for a in self.nodes:
            held = self.e.nodes[a].peers
            for h in self.sim.honest:
                if h not in held and self.e.nodes[h].up:
                    self.e.connect(a, h, t)
        self.e.at(t + self.redial, self._hammer)

    def protected(self) -> list[int]:
        return [self.victim]

    def figures(self) -> dict[str, Any]:
        e = self.e
        honest_links = [e.link_counts(i).honest for i in self.sim.honest if e.nodes[i].up]
        attacker_links = [e.link_counts(i).attacker for i in self.sim.honest if e.nodes[i].up]
        return {
            "honest_links_per_honest_node_min_at_end": min(honest_links, default=0),
            "attacker_links_per_honest_node_max_at_end": max(attacker_links, default=0),
        }


class PeriodicFlood(Base):
    """An attacker account of its own whose nodes each run ``_flood(node,
    now, burst)`` every ``interval`` seconds from ``start`` to ``end``."""

    genesis_label = "flood"

    def setup(self) -> None:
        self.account = self.w.new_account(self.nodes[0], managed=False)
        self.counters()
        self.e.at(0.7, self._genesis)
        start, interval = self.f("start", 4.0), self.f("interval", 0.1)
        self.end = self.f("end", self.sim.sc.duration - 2.0)
        for i in self.nodes:
            self.e.at(start + self.e.rng.uniform(0, interval), self._loop(i, interval))

    def counters(self) -> None:
        """The figures' counters, before anything runs."""

    def _genesis(self, t: float) -> None:
        publish_genesis(self, self.account, t, self.genesis_label)

    def _loop(self, i: int, interval: float) -> Any:
        burst = int(self.f("burst", 5))

        def fire(t: float) -> None:
            if t > self.end:
                return
            self.e.call_on(self.e.nodes[i], lambda n, now: self._flood(n, now, burst), t)
            self.e.at(t + interval, fire)

        return fire

    def _flood(self, n: SimNode, now: float, burst: int) -> list[Any]:
        raise NotImplementedError


class MailboxFill(PeriodicFlood):
    """Strangers flood the scenario's mailbox (``[mailbox]``): every
    ``interval`` seconds from ``start`` to ``end`` each attacker node makes
    ``burst`` deposits without a token, each from a fresh peer id, of real
    envelopes from an account of its own to the recipient's device.  Its
    nodes sit in ``groups`` /16s of their own; the mailbox counts by
    network group and never by peer id (§15.17)."""

    kind = "mailbox_fill"

    genesis_label = "spam"

    def counters(self) -> None:
        self.fresh = 0

    def _flood(self, n: SimNode, now: float, burst: int) -> list[Any]:
        load = self.sim.mailboxes
        if load is None or load.box is None:
            return []
        from protocol.messaging.mailbox_wire import deposit_request

        for _ in range(burst):
            raw = load.envelope(n, self.account, now)
            if raw is None:
                return []
            self.fresh += 1
            frame = deposit_request(load.device.keys.sign_public, raw)
            load.deposit(f"fresh{self.fresh}", n.host, frame, now, load.attackers, False)
        return []

    def figures(self) -> dict[str, Any]:
        return {"fresh_peer_ids": self.fresh}


class StrangerFlood(PeriodicFlood):
    """A non-contact floods an honest account with real envelopes, sent
    straight to the home node of each of its devices (as messages travel,
    simnet/messages.py): every ``interval`` seconds from ``start`` to
    ``end`` each attacker node seals ``burst`` envelopes (``message_bytes``
    of text each) from an account of its own.  Each receiving node opens
    every one (charged ``Cpu.per_open``), as a real node must before it can
    tell a stranger's text from a contact's; what it then keeps is capped
    by its request store (node/), which simnet does not model."""

    kind = "stranger_flood"

    genesis_label = "stranger"

    def counters(self) -> None:
        self.sent = 0
        self.opened = 0
        self.refused: dict[str, int] = {}
        self.guards: dict[bytes, Any] = {}

    def _flood(self, n: SimNode, now: float, burst: int) -> list[Any]:
        from protocol.messaging.content import Text
        from protocol.messaging.envelope import seal

        victim = next(a for a in self.w.accounts if a.managed)
        acc, rec = self.account.account_id, victim.account_id
        if acc is None or rec is None or rec not in n.ledger.accounts:
            return []
        if acc not in n.ledger.accounts:
            return []
        homes = {d.keys.sign_public: d for d in victim.devices}
        dev = self.account.devices[0]
        for _ in range(burst):
            self.sent += 1
            try:
                env = seal(
                    self.e.params,
                    dev.keys,
                    n.ledger.state(acc),
                    n.ledger.state(rec),
                    Text("s" * int(self.f("message_bytes", 200))),
                    counter=self.sent,
                    timestamp=timestamp(n, now),
                    seed=self.e.rng.randbytes(32),
                    force=True,
                )
            except UsageError:
                return []  # nobody to send to in this node's view yet
            for key in env.wrapped_for:
                target = homes.get(key)
                if target is not None:
                    arrive = now + topo.sample(self.e._lat, self.e.rng)
                    self.e.at(arrive, self._deliver(env.raw, victim, target))
        return []

    def _deliver(self, raw: bytes, victim: Account, target: Any) -> Any:
        def fire(t: float) -> None:
            node = self.e.nodes[target.home]
            if node.up:
                self.e.call_on(node, lambda n, now: self._open(n, raw, victim, target), t)

        return fire

    def _open(self, n: SimNode, raw: bytes, victim: Account, target: Any) -> list[Any]:
        from protocol.messaging.content import ReplayGuard
        from protocol.messaging.envelope import ledger_lookup, open_envelope

        assert victim.account_id is not None
        n.extra += self.e.sc.cpu.per_open
        guard = self.guards.setdefault(target.keys.sign_public, ReplayGuard())
        try:
            open_envelope(
                self.e.params, raw, victim.account_id, target.keys, ledger_lookup(n.ledger), guard
            )
            self.opened += 1
        except InvalidInput as exc:
            self.refused[exc.code] = self.refused.get(exc.code, 0) + 1
        return []

    def figures(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "opened": self.opened,
            "refused": dict(sorted(self.refused.items())),
        }


KINDS: dict[str, type[Base]] = {
    cls.kind: cls for cls in (WideDag, DeepChain, ConnectionFlood, MailboxFill, StrangerFlood)
}
