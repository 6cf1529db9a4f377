"""Graphs of who connects to whom, and link latency samplers.

An edge is a dial intention: one end has the other on its bootstrap list
(``diallers``); whether a link comes up is for both ends' link managers.

Everything draws from the simulation's one seeded ``random.Random`` and
returns sorted edge lists, so a topology is a function of the seed.
"""

from __future__ import annotations

import math
import random

from protocol.core.errors import UsageError

from .scenario import Distribution, Topology

Edge = tuple[int, int]


def _norm(a: int, b: int) -> Edge:
    return (a, b) if a < b else (b, a)


def ring_lattice(n: int, degree: int) -> set[Edge]:
    half = max(1, degree // 2)
    edges: set[Edge] = set()
    for i in range(n):
        for k in range(1, half + 1):
            j = (i + k) % n
            if j != i:
                edges.add(_norm(i, j))
    return edges


def random_regular(n: int, degree: int, rng: random.Random) -> set[Edge]:
    """A ring lattice randomised by degree-preserving double-edge swaps.

    The pairing model almost never succeeds at n=1000, d=8; the swap chain
    mixes to a uniform random regular graph and never fails.
    """
    edges = ring_lattice(n, degree)
    if n < 4:
        return edges
    elist = sorted(edges)
    swaps = 0
    tries = 0
    target = len(elist) * 4
    while swaps < target and tries < target * 10:
        tries += 1
        i, j = rng.randrange(len(elist)), rng.randrange(len(elist))
        (a, b), (c, d) = elist[i], elist[j]
        if len({a, b, c, d}) < 4:
            continue
        if rng.random() < 0.5:
            c, d = d, c
        e1, e2 = _norm(a, c), _norm(b, d)
        if e1 in edges or e2 in edges:
            continue
        edges.discard(elist[i])
        edges.discard(elist[j])
        edges.add(e1)
        edges.add(e2)
        elist[i], elist[j] = e1, e2
        swaps += 1
    return edges


def small_world(n: int, degree: int, rewire: float, rng: random.Random) -> set[Edge]:
    """Watts-Strogatz: a ring lattice whose edges are rewired with probability ``rewire``."""
    edges = ring_lattice(n, degree)
    for a, b in sorted(edges):
        if rng.random() >= rewire:
            continue
        c = rng.randrange(n)
        new = _norm(a, c)
        if c == a or new in edges:
            continue
        edges.discard((a, b))
        edges.add(new)
    return edges


def build(topo: Topology, n: int, rng: random.Random) -> list[Edge]:
    if topo.kind == "random_regular":
        edges = random_regular(n, topo.degree, rng)
    elif topo.kind == "small_world":
        edges = small_world(n, topo.degree, topo.rewire, rng)
    elif topo.kind == "line":
        edges = {(i, i + 1) for i in range(n - 1)}
    elif topo.kind == "edges":
        edges = {_norm(a, b) for a, b in topo.edges if a != b and a < n and b < n}
    else:
        raise UsageError(f"unknown topology {topo.kind!r}")
    return sorted(edges)


def diallers(topo: Topology, edges: list[Edge], rng: random.Random) -> list[Edge]:
    """Each edge as (dialler, dialled): as written for given ``edges``
    (the first dials the second), else a seeded coin per edge."""
    if topo.kind == "edges":
        given = {_norm(a, b): (a, b) for a, b in topo.edges}
        return [given[e] for e in edges]
    return [(a, b) if rng.random() < 0.5 else (b, a) for a, b in edges]


def connected(n: int, edges: list[Edge], members: set[int] | None = None) -> bool:
    """Whether ``members`` (default: all nodes) form one component using only
    edges between members."""
    nodes = set(range(n)) if members is None else members
    if not nodes:
        return True
    adj: dict[int, list[int]] = {i: [] for i in nodes}
    for a, b in edges:
        if a in nodes and b in nodes:
            adj[a].append(b)
            adj[b].append(a)
    start = min(nodes)
    seen = {start}
    stack = [start]
    while stack:
        for j in adj[stack.pop()]:
            if j not in seen:
                seen.add(j)
                stack.append(j)
    return len(seen) == len(nodes)


def sampler(dist: Distribution, rng: random.Random) -> tuple[float, float, float]:
    """Validate ``dist``; return the parameters ``sample`` needs."""
    if dist.kind == "constant":
        return (0.0, dist.value, 0.0)
    if dist.kind == "uniform":
        if dist.high < dist.low:
            raise UsageError("uniform latency needs low <= high")
        return (1.0, dist.low, dist.high)
    if dist.kind == "lognormal":
        return (2.0, math.log(dist.median), dist.sigma)
    raise UsageError(f"unknown latency distribution {dist.kind!r}")


def sample(params: tuple[float, float, float], rng: random.Random) -> float:
    kind, a, b = params
    if kind == 0.0:
        return a
    if kind == 1.0:
        return rng.uniform(a, b)
    return rng.lognormvariate(a, b)
