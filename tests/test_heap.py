"""The node's garbage-collector schedule (node/heap.py): what start-up made
is frozen out of the collector's walks, the youngest generation is collected
less often, and cyclic garbage made afterwards is still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from node import heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> weakref.ref[_Node]:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.mark.usefixtures("restored_gc")
def test_settle_freezes_start_up_and_spaces_out_young_collections() -> None:
    gc.set_threshold(700, 10, 10)
    heap.space_out()
    assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, 10, 10)
    before = _cycle()  # garbage from before settle: collected by its collect
    kept = _Node()  # alive at settle: frozen, not walked any more
    heap.settle()
    assert before() is None
    assert gc.get_freeze_count() > 0
    assert kept not in gc.get_objects()
    assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, 10, 10)
    after = _cycle()  # a cycle made later is still the collector's
    assert after() is not None
    gc.collect()
    assert after() is None
