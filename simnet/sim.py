"""One simulation run: build the network from a scenario, run it, report.

``Simulation(scenario).run()`` returns the report as a plain dict (what
report.json holds: a function of scenario and seed alone) and the wall-clock
figures separately (stats.json), so the report stays byte-identical across
runs of one seed.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import time
from collections.abc import Callable
from typing import Any

from protocol.links.manager import LinkStats
from protocol.links.policy import network_group

from . import topology as topo
from .adversaries import KINDS as ACCOUNT_KINDS
from .adversaries import Attack, Base
from .attacks import KINDS as RESOURCE_KINDS
from .engine import Engine, SimNode
from .mailboxes import MailboxLoad
from .messages import MessageTraffic
from .metrics import DUP_NAMES, Observer, percentile, stat
from .scenario import Scenario
from .workload import Workload

KINDS = {**ACCOUNT_KINDS, **RESOURCE_KINDS}


class Simulation:
    def __init__(self, scenario: Scenario) -> None:
        self.sc = sc = scenario
        self.obs = Observer(self)
        self.engine = e = Engine(sc, self.obs)
        n = sc.nodes
        sizes = [a.size(n) for a in sc.adversaries]
        n_honest = n - sum(sizes)
        if n_honest < 2:
            raise ValueError("a scenario needs at least two honest nodes")
        self.honest = list(range(n_honest))
        self.workload = Workload(e, self.honest, self.obs)
        self.adversaries: list[Base] = []
        first = n_honest
        for spec, size in zip(sc.adversaries, sizes, strict=True):
            cls = KINDS.get(spec.kind)
            if cls is None:
                raise ValueError(f"unknown adversary {spec.kind!r}")
            self.adversaries.append(cls(self, spec, list(range(first, first + size))))
            first += size
        for _ in self.honest:
            e.add_node(True)
        for adv in self.adversaries:
            for _ in adv.nodes:
                node = e.add_node(False, adv.ledger())
                node.role = adv.kind
        for node in e.nodes:
            node.skew = e.rng.uniform(-sc.clock_skew, sc.clock_skew) if sc.clock_skew else 0.0
        self._assign_addresses()
        self._groups = self._partition_groups()
        # the topology spans the honest nodes and the adversaries that join
        # it like anyone (given edges name nodes directly)
        members = list(range(n))
        if sc.topology.kind != "edges":
            members = self.honest + [i for a in self.adversaries if a.in_topology for i in a.nodes]
        edges = topo.build(sc.topology, len(members), e.rng)
        for a, b in topo.diallers(sc.topology, edges, e.rng):
            e.add_edge(members[a], members[b], 0.0)
        k = min(sc.network.bootstrap, n_honest)
        self.bootstrap_nodes = sorted(e.rng.sample(self.honest, k)) if k else []
        for node in e.nodes:
            node.bootstrap.update(j for j in self.bootstrap_nodes if j != node.idx)
        e.at(0.0, e.start)
        for adv in self.adversaries:
            adv.setup()
        self._schedule_partitions()
        self._schedule_churn()
        slots = self.workload.schedule()
        self.messages: MessageTraffic | None = None
        if sc.workload.messages > 0:  # message traffic is optional
            self.messages = MessageTraffic(self.workload)
            self.messages.schedule(slots)
        self.mailboxes: MailboxLoad | None = None
        if sc.mailbox.deposits > 0:
            self.mailboxes = MailboxLoad(self.workload)
            self.mailboxes.schedule()
        t = sc.sample_interval
        while t < sc.duration:
            e.at(t, self.obs.sample)
            t += sc.sample_interval

    # -- addresses ----------------------------------------------------------------

    def _assign_addresses(self) -> None:
        """Honest nodes ``honest_per_group`` to a /16, each adversary in
        ``groups`` /16s of its own, all drawn from a seeded pool of
        global-looking /16s (strings only: nothing is ever dialled)."""
        e = self.engine
        used: set[str] = set()
        per = max(1, self.sc.network.honest_per_group)
        prefixes: list[str] = []
        for k, i in enumerate(self.honest):
            if k % per == 0:
                prefixes.append(_draw_prefix(e.rng, used))
            e.set_address(e.nodes[i], _host(prefixes[-1], k % per))
        for adv in self.adversaries:
            groups = [_draw_prefix(e.rng, used) for _ in range(max(1, int(adv.p.get("groups", 1))))]
            for k, i in enumerate(adv.nodes):
                e.set_address(e.nodes[i], _host(groups[k % len(groups)], k // len(groups)))

    # -- partitions and churn -----------------------------------------------------

    def _partition_groups(self) -> list[list[int]]:
        out = []
        n = self.sc.nodes
        for p in self.sc.partitions:
            group_of = [len(p.groups)] * n
            for g, (lo, hi) in enumerate(p.groups):
                for i in range(round(lo * n), min(n, round(hi * n))):
                    group_of[i] = g
            out.append(group_of)
        return out

    def group_of(self, i: int) -> int:
        return self._groups[0][i] if self._groups else 0

    def group_count(self) -> int:
        return len(set(self._groups[0])) if self._groups else 1

    def _schedule_partitions(self) -> None:
        e = self.engine

        def crossing(group_of: list[int]) -> list[tuple[int, int]]:
            return [
                k
                for k, link in sorted(e.links.items())
                if link.connected and group_of[k[0]] != group_of[k[1]]
            ]

        for p, group_of in zip(self.sc.partitions, self._groups, strict=True):
            entry = (group_of, p.asymmetric)

            def start(t: float, entry: tuple[list[int], bool] = entry) -> None:
                e.cuts.append(entry)
                if not entry[1]:
                    for a, b in crossing(entry[0]):
                        e.close_link(a, b, t)

            def end(t: float, entry: tuple[list[int], bool] = entry) -> None:
                # the link managers redial on their own timers; links that
                # stayed open across a one-way cut are reset
                e.cuts.remove(entry)
                if entry[1]:
                    for a, b in crossing(entry[0]):
                        e.close_link(a, b, t)

            e.at(p.start, start)
            e.at(p.end, end)

    def _schedule_churn(self) -> None:
        c = self.sc.churn
        if c is None:
            return
        e = self.engine
        protected = {i for adv in self.adversaries for i in adv.protected()}
        cands = [i for i in self.honest if i not in protected]
        k = min(len(cands), round(c.fraction * len(self.honest)))
        self.churned = sorted(e.rng.sample(cands, k))
        for i in self.churned:
            t = c.start
            for _ in range(c.cycles):
                t = e.rng.uniform(t, c.end)
                back = t + e.rng.uniform(c.down_min, c.down_max)
                e.at(t, functools.partial(_swap_args, e.node_down, i))
                e.at(back, functools.partial(_swap_args, e.node_up, i))
                t = back

    def attacks(self) -> list[Attack]:
        return [a.attack for a in self.adversaries if a.attack is not None]

    # -- running ------------------------------------------------------------------

    def run(self) -> tuple[dict[str, Any], dict[str, Any]]:
        wall0 = time.perf_counter()
        e = self.engine
        e.run(self.sc.duration)
        self.obs.sample(self.sc.duration, final=True)
        report = self.report()
        if self.sc.compare_baseline and self.sc.adversaries:
            base, _ = Simulation(self.sc.without_attackers()).run()
            report["attacker_free_baseline"] = {
                "honest_nodes": base["honest_nodes"],
                "delivery_ratio": base["delivery_ratio"],
                "propagation_latency": base["propagation_latency"],
                "links": base["links"]["honest"],
            }
        wall = time.perf_counter() - wall0
        stats = {
            "wall_seconds": round(wall, 3),
            "simulated_seconds": self.sc.duration,
            "scheduler_events": e.heap_events,
            "scheduler_events_per_wall_second": round(e.heap_events / wall, 1) if wall else None,
            "frames_per_wall_second": round(sum(n.frames_sent for n in e.nodes) / wall, 1)
            if wall
            else None,
            "signature_cache_hits": e.verify.hits,
            "signature_cache_misses": e.verify.misses,
        }
        return report, stats

    def report(self) -> dict[str, Any]:
        sc, e, obs = self.sc, self.engine, self.obs
        honest_nodes = [e.nodes[i] for i in self.honest]
        n_h = len(honest_nodes)
        n_ev = len(obs.honest_events)
        lat = obs.latencies()
        expected = sum(n_h - 1 for _ in obs.honest_events)
        up = [n for n in honest_nodes if n.up]
        sets = {frozenset(n.ledger.event_ids()) for n in up}
        duplicates = 0
        for n in honest_nodes:
            for s in [*n.retired, n.rep.stats]:
                duplicates += stat(s, *DUP_NAMES)
        # deliveries that came from a peer: every first delivery at an honest
        # node except the origin's own
        deliveries_from_peers = 0
        for eid, seen in obs.first.items():
            info = obs.created_at.get(eid)
            deliveries_from_peers += len(seen) - (1 if info and info[1] in seen else 0)
        frames = sum(n.frames_sent for n in honest_nodes)
        nbytes = sum(n.bytes_sent for n in honest_nodes)
        denom = n_h * n_ev if n_h and n_ev else 1
        report: dict[str, Any] = {
            "scenario": sc.name,
            "seed": sc.seed,
            "nodes": sc.nodes,
            "honest_nodes": n_h,
            "attackers": {adv.kind: len(adv.nodes) for adv in self.adversaries},
            "replication": "protocol.sync.replication",
            "simulated_seconds": sc.duration,
            "honest_events": n_ev,
            "scenario_parameters": dataclasses.asdict(sc),
            "workload_skipped": self.workload.skipped,
            "safety": {
                "violations": obs.violations,
                "violation_examples": obs.violation_examples,
                "digest_mismatch_pairs": obs.digest_mismatch_pairs,
                "digest_checks": obs.digest_checks,
            },
            "convergence": {
                "converged": len(sets) <= 1,
                "distinct_event_sets_at_end": len(sets),
                "after_heal": [
                    {"heal_at": p.end, "seconds": _r(obs.convergence_after(p.end))}
                    for p in sc.partitions
                ],
            },
            "delivery_ratio": _r(obs.pairs_delivered / expected if expected else 1.0),
            "propagation_latency": {
                "count": len(lat),
                "p50": _r(percentile(lat, 50)),
                "p95": _r(percentile(lat, 95)),
                "p99": _r(percentile(lat, 99)),
                "max": _r(lat[-1] if lat else None),
            },
            "cost": {
                "messages_per_node_per_event": _r(frames / denom),
                "bytes_per_node_per_event": _r(nbytes / denom),
                "duplicate_receptions_per_node_per_event": _r(duplicates / denom),
                "duplicate_receptions_per_delivery": _r(
                    duplicates / deliveries_from_peers if deliveries_from_peers else 0.0
                ),
                "frames_dropped": e.frames_dropped,
                "retransmissions": e.retransmissions,
            },
            "misbehaviour_reports": dict(sorted(obs.misbehaviour.items())),
            "links": self._links(),
            "scores": self._scores(),
            "attacks": [self._attack_report(a) for a in self.attacks()],
            "cpu": self._cpu(),
        }
        figures = {a.kind: a.figures() for a in self.adversaries if hasattr(a, "figures")}
        if figures:
            report["adversary_figures"] = figures
        if self.messages is not None:
            report["messages"] = {
                **self.messages.stats.report(),
                "wrap_scheme_2": self.messages.sessions.report(),
            }
        if self.mailboxes is not None:
            report["mailbox"] = self.mailboxes.report()
        return report

    def _cpu(self) -> dict[str, Any]:
        """What honest nodes' CPUs were charged for (``simnet.cpu``)."""
        nodes = [self.engine.nodes[i] for i in self.honest]
        sigs = [n.meter.signatures for n in nodes]
        evals = [n.meter.evaluations for n in nodes]
        return {
            "signature_checks_per_honest_node_max": max(sigs, default=0),
            "signature_checks_total": sum(sigs),
            "evaluations_total": sum(evals),
        }

    def _links(self) -> dict[str, Any]:
        """Per node class: the links up nodes hold at the end (all, inbound,
        outbound, in how many network groups, with attackers) and what
        their link managers did over the run (``LinkManager.stats``)."""
        e = self.engine
        out: dict[str, Any] = {
            "dials": e.dials,
            "dials_failed": e.dials_failed,
            "bootstrap_nodes": self.bootstrap_nodes,
        }
        classes = {"honest": [n for n in e.nodes if n.honest]}
        if len(classes["honest"]) < len(e.nodes):
            classes["attacker"] = [n for n in e.nodes if not n.honest]
        for name, nodes in classes.items():
            out[name] = _link_figures(e, nodes)
        return out

    def _scores(self) -> dict[str, Any]:
        """Each honest node's score of every peer it held a link with.

        A peer banned for misbehaviour starts again from 0 after its
        back-off, so bans (and current bans) say more than the score does.
        """
        e = self.engine
        vals: dict[str, list[float]] = {"honest_peers": [], "attackers": []}
        banned: dict[str, int] = {"honest_peers": 0, "attackers": 0}
        for i in self.honest:
            node = e.nodes[i]
            book = getattr(node.rep, "book", None)
            for j in sorted(node.ever):
                peer = e.nodes[j]
                key = "honest_peers" if peer.honest else "attackers"
                vals[key].append(float(node.rep.score(peer.pid)))
                if book is not None and book.banned_until(peer.pid, e.now) is not None:
                    banned[key] += 1
        out: dict[str, Any] = {}
        for k, v in vals.items():
            out[k] = (
                {
                    "count": len(v),
                    "mean": _r(sum(v) / len(v)),
                    "min": _r(min(v)),
                    "max": _r(max(v)),
                    "banned_at_end": banned[k],
                }
                if v
                else {"count": 0}
            )
        out["misbehaviour_disconnects_by_honest"] = sum(
            stat(s, "disconnects")
            for i in self.honest
            for s in [*e.nodes[i].retired, e.nodes[i].rep.stats]
        )
        return out

    def _attack_report(self, a: Attack) -> dict[str, Any]:
        obs = self.obs
        out: dict[str, Any] = {
            "kind": a.kind,
            "attacker_keys": len(a.attacker_keys),
            "owner_revocations": len(a.owner_batch),
            "attacker_events_valid": len(a.attacker_events),
            "recovers": a.recovers,
        }
        acc = a.account.account_id
        statuses: set[str] = set()
        active_anywhere = 0
        holding = 0
        keys = set(a.attacker_keys)
        for i in self.honest:
            ledger = self.engine.nodes[i].ledger
            if acc is None or acc not in ledger.accounts:
                continue
            st = ledger.state(acc)
            statuses.add(st.status.value)
            active_anywhere += bool(keys & st.active_keys)
            holding += all(ledger.has(x) for x in a.attacker_events)
        out["account_status_at_end"] = sorted(statuses)
        out["honest_nodes_with_attacker_key_active_at_end"] = active_anywhere
        out["honest_nodes_holding_all_attacker_events"] = holding
        if a.victim is not None:
            times = [obs.first.get(b, {}).get(a.victim) for b in a.owner_batch]
            reached = None if (not times or None in times) else max(t for t in times if t)
            out["victim"] = a.victim
            if a.heal_at is not None:
                out["heal_at"] = a.heal_at
                out["withheld_reached_victim_after_heal"] = (
                    _r(reached - a.heal_at) if reached is not None else None
                )
            # from the owner's (last) revocation to the victim holding them all
            made = [obs.created_at[b][0] for b in a.owner_batch if b in obs.created_at]
            out["revocation_reached_victim_seconds"] = (
                _r(reached - max(made)) if reached is not None and made else None
            )
            out["victim_links"] = self._victim_links(a)
        return out

    def _victim_links(self, a: Attack) -> dict[str, Any]:
        e, obs = self.engine, self.obs
        assert a.victim is not None
        series = obs.victim_links.get(a.victim, [])
        now = e.link_counts(a.victim)
        victim = e.nodes[a.victim]
        made = [obs.created_at[b][0] for b in a.owner_batch if b in obs.created_at]
        at_revocation = None
        before = [s for s in series if made and s[0] <= min(made)]
        if before:
            at_revocation = {"honest": before[-1][1], "attacker": before[-1][2]}
        # after the attackers rushed it (samples strictly later)
        after = [s for s in series if a.eclipse_from is None or s[0] > a.eclipse_from]
        return {
            "at_end": dataclasses.asdict(now),
            "at_revocation": at_revocation,
            "most_attacker_links": max((s[2] for s in after), default=0),
            "most_attacker_inbound_links": max((s[3] for s in after), default=0),
            "fewest_honest_links": min((s[1] for s in after), default=0),
            "seconds_without_honest_links": _r(
                self.sc.sample_interval * sum(1 for s in after if s[1] == 0)
            ),
            "refused": _refusals(victim.link_stats()),
            # [time, links with honest nodes, links with attackers], per sample
            "over_time": [[_r(s[0]), s[1], s[2]] for s in series],
        }


def _refusals(stats: list[LinkStats]) -> dict[str, int]:
    total: dict[str, int] = {}
    for st in stats:
        for reason, count in st.rejected.items():
            total[reason] = total.get(reason, 0) + count
    return dict(sorted(total.items()))


def _link_figures(e: Engine, nodes: list[SimNode]) -> dict[str, Any]:
    up = [n for n in nodes if n.up]
    held, inbound, outbound, groups, attackers = [], [], [], [], []
    for n in up:
        c = e.link_counts(n.idx)
        held.append(c.inbound + c.outbound)
        inbound.append(c.inbound)
        outbound.append(c.outbound)
        attackers.append(c.attacker)
        groups.append(len({network_group(e.nodes[j].host) for j in n.peers}))
    stats = [st for n in nodes for st in n.link_stats()]

    def mean(xs: list[int]) -> float | None:
        return _r(sum(xs) / len(xs)) if xs else None

    return {
        "nodes_up": len(up),
        "held": {
            "mean": mean(held),
            "min": min(held, default=0),
            "max": max(held, default=0),
        },
        "inbound_mean": mean(inbound),
        "outbound_mean": mean(outbound),
        "network_groups_mean": mean(groups),
        "with_attackers_mean": mean(attackers),
        "admitted": sum(st.admitted for st in stats),
        "refused": _refusals(stats),
        "dials": sum(st.dials for st in stats),
        "dial_failures": sum(st.dial_failures for st in stats),
        "bans": sum(st.bans for st in stats),
    }


_RESERVED_FIRST_OCTETS = frozenset({0, 10, 100, 127, 169, 172, 192, 198, 203})


def _draw_prefix(rng: random.Random, used: set[str]) -> str:
    """A fresh global-looking /16 (first octets holding private, shared,
    loopback, link-local, benchmark or documentation ranges are skipped)."""
    while True:
        a, b = rng.randrange(1, 224), rng.randrange(256)
        prefix = f"{a}.{b}"
        if a not in _RESERVED_FIRST_OCTETS and prefix not in used:
            used.add(prefix)
            return prefix


def _host(prefix: str, k: int) -> str:
    host = f"{prefix}.{k // 254 + 1}.{k % 254 + 1}"
    assert network_group(host) == f"ip4:{prefix}.0.0/16", host
    return host


def _swap_args(fn: Callable[[int, float], None], i: int, now: float) -> None:
    fn(i, now)


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 6)
