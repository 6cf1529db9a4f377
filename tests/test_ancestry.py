"""The ancestry index (protocol/log/ancestry.py) against plain ancestor sets,
on random DAGs of every shape: chains, fans, merges, junctions anywhere."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from protocol.log.ancestry import AncestorMasks, Ancestry

from .conftest import hypothesis_settings

# One step per event: (how it picks parents, a number to pick with, junction?)
step_st = st.tuples(st.integers(0, 5), st.integers(0, 2**16), st.booleans())


def build(steps: list[tuple[int, int, bool]]) -> tuple[Ancestry, list[int]]:
    index = Ancestry()
    index.add((), True)
    masks = [0]
    for mode, r, junction in steps:
        n = len(masks)
        if mode <= 1:
            parents = [n - 1]  # a chain
        elif mode == 2:
            parents = [0]  # a fan of the genesis
        elif mode == 3:
            parents = [r % n]
        else:
            parents = sorted({r % n, (r >> 4) % n, (r >> 8) % n})[: 1 + mode % 3]
        index.add(parents, junction and mode != 2)
        m = 0
        for p in parents:
            m |= masks[p] | (1 << p)
        masks.append(m)
    return index, masks


@hypothesis_settings(300)
@given(st.lists(step_st, max_size=80))
def test_is_ancestor_matches_plain_sets(steps: list[tuple[int, int, bool]]) -> None:
    index, masks = build(steps)
    view = AncestorMasks(index)
    n = len(masks)
    assert len(index) == len(view) == n
    for y in range(n):
        assert view[y] == index.ancestor_mask(y) == masks[y]
        assert index.down_mask(y) == masks[y] | (1 << y)
        for x in range(n):
            assert index.is_ancestor(x, y) == bool(masks[y] >> x & 1), (x, y)
        parents = index.parents(y)
        if y:
            assert parents and all(index.generation(p) < index.generation(y) for p in parents)


def test_long_chain_and_wide_fan_stay_cheap() -> None:
    """No per-event mask: a 20,000-event chain and fan keep only the genesis'."""
    chain, fan = Ancestry(), Ancestry()
    chain.add((), True)
    fan.add((), True)
    for i in range(1, 20_000):
        chain.add((i - 1,), False)
        fan.add((0,), False)
    assert chain.is_ancestor(3, 19_999) and not chain.is_ancestor(19_999, 3)
    assert fan.is_ancestor(0, 12_345) and not fan.is_ancestor(1, 12_345)
    assert chain.down_mask(19_999) == (1 << 20_000) - 1
    assert [i for i in range(20_000) if chain.is_junction(i)] == [0]
