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

from protocol.core.errors import InvalidInput
from protocol.log import authoring
from protocol.log.ledger import Ledger

from .adversaries import Attack, Base
from .engine import SimNode
from .ledgers import FilteringLedger
from .workload import Account, timestamp


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
        self.refused_here = 0
        self.total = int(self.f("events", 500))
        self.batch = int(self.f("batch", 25))
        self.interval = self.f("interval", 0.1)
        self.e.at(self.f("create_at", 0.5), self._genesis)
        self.e.at(self.f("start", 4.0), self._fire)

    def _genesis(self, t: float) -> None:
        acc = self.account

        def job(n: SimNode, now: float) -> list[Any]:
            d0 = acc.devices[0]
            g = authoring.genesis(
                self.e.params,
                d0.keys,
                acc.recovery,
                display_name="flood",
                device_name=d0.name,
                timestamp=timestamp(n, now),
            )
            acc.account_id = g.id
            self.last = g.id
            outs: list[Any] = n.rep.publish(g.raw, n.now(now))
            return outs

        self.e.call_on(self.e.nodes[self.home], job, t)

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
            parent = acc.account_id if self.wide else self.last
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


KINDS: dict[str, type[Base]] = {cls.kind: cls for cls in (WideDag, DeepChain, ConnectionFlood)}
