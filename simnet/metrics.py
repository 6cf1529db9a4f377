"""What the simulator measures, and how it judges safety (DESIGN.md §1).

Safety is judged against the simulator's own ground truth (``Attack``):
which keys the attacker holds or added, and which revocations the owner
issued.  A sample counts a violation when an honest node holds every one of
the owner's revocations and still reports one of the attacker's keys as
active (for injected keys: reports it active at all).  The account rules in
``protocol.log.state`` are what is being judged, so they are not used here.

S3 is checked directly: honest nodes holding identical event sets must
report identical state digests.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from typing import Any

from protocol.core.errors import InvalidInput
from protocol.log.events import Event

from .engine import SimNode


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def stat(stats: Any, *names: str) -> int:
    """A counter from a replicator's stats object, whatever it is called."""
    for n in names:
        v = getattr(stats, n, None)
        if isinstance(v, int):
            return v
    return 0


DUP_NAMES = ("duplicate_events", "duplicates", "duplicate_receptions", "dup_events")


class Observer:
    def __init__(self, sim: Any) -> None:
        self.sim = sim
        #: event id -> (creation time, origin node, honest origin)
        self.created_at: dict[bytes, tuple[float, int, bool]] = {}
        self.honest_events: list[bytes] = []
        #: event id -> honest node -> first delivery time
        self.first: dict[bytes, dict[int, float]] = {}
        self.node_honest_count: dict[int, int] = {}
        self.pairs_delivered = 0
        self.misbehaviour: Counter[str] = Counter()
        self.violations = 0
        self.violation_examples: list[dict[str, Any]] = []
        self.digest_mismatch_pairs = 0
        self.digest_checks = 0
        self.samples: list[tuple[float, float, float]] = []
        self._digest_cache: dict[int, tuple[int, bytes]] = {}
        self._acct_cache: dict[tuple[int, bytes], tuple[int, bytes]] = {}
        self._nsample = 0
        self._set_cache: dict[int, tuple[int, frozenset[bytes]]] = {}
        self._key_cache: dict[int, tuple[int, tuple[int, int]]] = {}
        #: victims of eclipse attacks: (time, links with honest nodes, with
        #: attackers, inbound ones with attackers)
        self.victim_links: dict[int, list[tuple[float, int, int, int]]] = {}

    # -- hooks from the engine ----------------------------------------------------

    def created(self, event: Event, origin: int, t: float, honest: bool) -> None:
        if event.id in self.created_at:
            return
        self.created_at[event.id] = (t, origin, honest)
        if honest:
            self.honest_events.append(event.id)

    def forget(self, event: Event) -> None:
        """An event its author could not publish after all."""
        info = self.created_at.pop(event.id, None)
        if info is not None and info[2]:
            self.honest_events.remove(event.id)

    def delivered(self, node: SimNode, event: Event, source: str | None, t: float) -> None:
        if not node.honest:
            return
        seen = self.first.setdefault(event.id, {})
        if node.idx in seen:
            return
        seen[node.idx] = t
        info = self.created_at.get(event.id)
        if info is not None and info[2]:
            if info[1] != node.idx:
                self.pairs_delivered += 1
            self.node_honest_count[node.idx] = self.node_honest_count.get(node.idx, 0) + 1

    def misbehaved(self, node: SimNode, peer: str, error: InvalidInput, t: float) -> None:
        who = "honest" if node.honest else "attacker"
        self.misbehaviour[f"{who}:{error.code}"] += 1

    # -- sampling -----------------------------------------------------------------

    def sample(self, t: float, final: bool = False) -> None:
        self._nsample += 1
        self._check_safety(t)
        for attack in self.sim.attacks():
            if attack.victim is not None:
                c = self.sim.engine.link_counts(attack.victim)
                entry = (t, c.honest, c.attacker, c.attacker_inbound)
                self.victim_links.setdefault(attack.victim, []).append(entry)
        honest = self.sim.honest
        n_events = len(self.honest_events)
        total = n_events * (len(honest) - 1)
        frac_pairs = self.pairs_delivered / total if total else 1.0
        complete = sum(1 for i in honest if self.node_honest_count.get(i, 0) == n_events)
        self.samples.append((t, frac_pairs, complete / len(honest) if honest else 1.0))
        if final or self._nsample % max(1, self.sim.sc.digest_every) == 0:
            self._check_digests()

    def _check_safety(self, t: float) -> None:
        nodes = self.sim.engine.nodes
        for attack in self.sim.attacks():
            acc = attack.account.account_id
            if acc is None or not attack.attacker_keys:
                continue
            keys = set(attack.attacker_keys)
            batch = attack.owner_batch
            if attack.need_batch and not batch:
                continue
            for i in self.sim.honest:
                ledger = nodes[i].ledger
                if attack.need_batch and not all(ledger.has(b) for b in batch):
                    continue
                if acc not in ledger.accounts:
                    continue
                bad = keys & ledger.state(acc).active_keys
                if bad:
                    self.violations += 1
                    if len(self.violation_examples) < 10:
                        self.violation_examples.append(
                            {
                                "time": round(t, 3),
                                "node": i,
                                "attack": attack.kind,
                                "keys": len(bad),
                            }
                        )

    def _node_digest(self, node: SimNode) -> bytes:
        ledger = node.ledger
        cached = self._digest_cache.get(node.idx)
        if cached is not None and cached[0] == ledger.event_count:
            return cached[1]
        h = hashlib.blake2b(digest_size=16)
        for acc in sorted(ledger.accounts):
            log = ledger.accounts[acc]
            key = (node.idx, acc)
            c = self._acct_cache.get(key)
            if c is None or c[0] != len(log):
                c = (len(log), log.state().digest)
                self._acct_cache[key] = c
            h.update(acc + c[1])
        d = h.digest()
        self._digest_cache[node.idx] = (ledger.event_count, d)
        return d

    def _id_set(self, node: SimNode) -> frozenset[bytes]:
        count = node.ledger.event_count
        cached = self._set_cache.get(node.idx)
        if cached is None or cached[0] != count:
            cached = (count, frozenset(node.ledger.event_ids()))
            self._set_cache[node.idx] = cached
        return cached[1]

    def _set_key(self, node: SimNode) -> tuple[int, int]:
        """A cheap key under which equal event sets fall together."""
        count = node.ledger.event_count
        cached = self._key_cache.get(node.idx)
        if cached is None or cached[0] != count:
            total = sum(int.from_bytes(eid[:8], "big") for eid in node.ledger.event_ids())
            cached = (count, (count, total))
            self._key_cache[node.idx] = cached
        return cached[1]

    def _check_digests(self) -> None:
        """Pairs of up honest nodes with identical event sets and different digests."""
        self.digest_checks += 1
        groups: dict[tuple[int, int], list[SimNode]] = {}
        for i in self.sim.honest:
            node = self.sim.engine.nodes[i]
            if node.up:
                groups.setdefault(self._set_key(node), []).append(node)
        for members in groups.values():
            if len(members) < 2:
                continue
            # confirm the sets really are equal, then compare digests
            by_set: dict[frozenset[bytes], list[SimNode]] = {}
            for m in members:
                by_set.setdefault(self._id_set(m), []).append(m)
            for same in by_set.values():
                digests = Counter(self._node_digest(m) for m in same)
                n = len(same)
                agree = sum(c * (c - 1) // 2 for c in digests.values())
                self.digest_mismatch_pairs += n * (n - 1) // 2 - agree

    # -- the report -------------------------------------------------------------------

    def latencies(self) -> list[float]:
        out = []
        for eid in self.honest_events:
            t0, origin, _ = self.created_at[eid]
            for i, t in self.first.get(eid, {}).items():
                if i != origin:
                    out.append(t - t0)
        out.sort()
        return out

    def convergence_after(self, heal: float) -> float | None:
        """Seconds after ``heal`` until every up honest node held every event
        some honest node held at ``heal``; None if that never happened."""
        up = [i for i in self.sim.honest if self.sim.engine.nodes[i].up]
        worst = 0.0
        for seen in self.first.values():
            if not any(t <= heal for t in seen.values()):
                continue
            for i in up:
                t = seen.get(i)
                if t is None:
                    return None
                worst = max(worst, t - heal)
        return worst
