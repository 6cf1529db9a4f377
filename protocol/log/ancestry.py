"""Ancestry of one account's events, in memory linear in the events
(PROTOCOL.md §8, "Ancestry").

Events are numbered in acceptance order, which is a topological order
(parents first), so an ancestor always has the smaller number.  For every
event the index keeps five small integers:

- its *generation*, 1 + the largest generation of its parents (genesis 0):
  an ancestor has a smaller one, which answers most "no" at once;
- its *tree parent*: its parent, or for a merge the parent of highest
  generation, and its depth in the tree these links form;
- a skew-binary jump pointer (Myers, "An applicative random-access stack",
  1983), so that the ancestor of any event at a given tree depth is found in
  O(log n) steps;
- the nearest *junction* on its tree path (itself included), and the start of
  the run of consecutive numbers its tree path has there.

Junctions are the genesis, merges, revocations and recovers.  Each keeps the
set of its strict ancestors as a bit mask; every other event has exactly one
parent, so its ancestors are those of the junction above it plus the events
of the tree path in between.  "Is x an ancestor of y" is then a generation
test, one level-ancestor query on y's tree path and one bit of a mask:
O(log n) whatever the shape of the account.

The cost is one mask of (position of its latest ancestor) / 8 bytes per
junction.  Junctions are the events that carry more proof-of-work (§3.4),
and an honest account has few; a chain or a fan of ordinary events has none
but the genesis.  Building a junction's mask reads the tree paths between it
and the junctions above its parents, in runs of consecutive numbers (one run
for a chain appended without interruption).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence

#: per event, in one array (one object for the garbage collector, however
#: long the account): generation, tree parent, tree depth, jump pointer,
#: junction, start of the run
_W = 6
_GEN, _TP, _TD, _JP, _JN, _RUN = range(_W)


class Ancestry:
    __slots__ = ("_f", "_masks", "_parents")

    def __init__(self) -> None:
        self._f = array("i")
        #: junction -> bit mask of its strict ancestors
        self._masks: dict[int, int] = {}
        #: merge -> all its parents (other events: the tree parent alone)
        self._parents: dict[int, tuple[int, ...]] = {}

    def __len__(self) -> int:
        return len(self._f) // _W

    # -- adding ------------------------------------------------------------

    def add(self, parents: Sequence[int], junction: bool) -> int:
        """Number the next event, whose parents (numbers) are all here;
        ``junction`` for a revocation or recover (a genesis and a merge always
        are one).  Returns its number."""
        f = self._f
        i = len(f) // _W
        if not parents:
            f.extend((0, -1, 0, i, i, i))
            self._masks[i] = 0
            return i
        if len(parents) == 1:
            tp = parents[0]
        else:
            tp = max(parents, key=lambda q: (f[q * _W], q))
            self._parents[i] = tuple(parents)
            junction = True
        b = tp * _W
        gen, _, td, j1, jn, run = f[b : b + _W]
        c = j1 * _W
        jj = f[c + _JP]
        j1d = f[c + _TD]
        jp = jj if td - j1d == j1d - f[jj * _W + _TD] else tp
        # the tree parent has the highest generation
        if junction:
            f.extend((gen + 1, tp, td + 1, jp, i, i))
            mask = 0
            for p in parents:
                mask |= self.down_mask(p)
            self._masks[i] = mask
        else:
            if tp != i - 1 or jn == tp:
                run = i
            f.extend((gen + 1, tp, td + 1, jp, jn, run))
        return i

    # -- queries -------------------------------------------------------------

    def generation(self, i: int) -> int:
        return self._f[i * _W]

    def is_junction(self, i: int) -> bool:
        return self._f[i * _W + _JN] == i

    def parents(self, i: int) -> tuple[int, ...]:
        """Every parent of ``i``, by number."""
        merge = self._parents.get(i)
        if merge is not None:
            return merge
        tp = self._f[i * _W + _TP]
        return (tp,) if tp >= 0 else ()

    def _level(self, v: int, depth: int) -> int:
        """The tree ancestor of ``v`` at ``depth`` (at most ``v``'s own)."""
        f = self._f
        while f[v * _W + _TD] > depth:
            j = f[v * _W + _JP]
            v = j if f[j * _W + _TD] >= depth else f[v * _W + _TP]
        return v

    def is_ancestor(self, x: int, y: int) -> bool:
        """Whether ``x`` is a strict ancestor of ``y``."""
        f = self._f
        if x >= y or f[x * _W] >= f[y * _W]:
            return False
        j = f[y * _W + _JN]
        if j == y:
            return bool(self._masks[y] >> x & 1)
        if x == j:
            return True
        tdx = f[x * _W + _TD]
        if f[j * _W + _TD] < tdx <= f[y * _W + _TD] and self._level(y, tdx) == x:
            return True  # on y's tree path, below the junction above y
        return bool(self._masks[j] >> x & 1)

    def is_below(self, x: int, y: int) -> bool:
        """``x`` is ``y`` or one of its ancestors."""
        return x == y or self.is_ancestor(x, y)

    def in_down_set(self, x: int, tops: Iterable[int]) -> bool:
        """Whether ``x`` is in the down-set of ``tops`` (them and their ancestors)."""
        return any(x == t or self.is_ancestor(x, t) for t in tops)

    def mask(self, junction: int) -> int:
        """A junction's strict ancestors, as a bit mask."""
        return self._masks[junction]

    def down_mask(self, p: int) -> int:
        """``p`` and its ancestors, as a bit mask."""
        f = self._f
        j = f[p * _W + _JN]
        bits = self._masks[j] | (1 << j)
        if j == p:
            return bits
        v = p
        while v != j:
            s = f[v * _W + _RUN]
            bits |= (1 << (v + 1)) - (1 << s)
            v = f[s * _W + _TP]
        return bits

    def ancestor_mask(self, i: int) -> int:
        """``i``'s strict ancestors, as a bit mask (computed unless ``i`` is a
        junction: O(n / 64) words)."""
        f = self._f
        if f[i * _W + _JN] == i:
            return self._masks[i]
        return self.down_mask(f[i * _W + _TP])


class AncestorMasks(Sequence[int]):
    """``view[i]``: the strict ancestors of event ``i`` as a bit mask, made on
    demand (for callers written against the old per-event masks; nothing in
    the log keeps one per event)."""

    __slots__ = ("_ancestry",)

    def __init__(self, ancestry: Ancestry) -> None:
        self._ancestry = ancestry

    def __len__(self) -> int:
        return len(self._ancestry)

    def __getitem__(self, i: int) -> int:  # type: ignore[override]
        if not 0 <= i < len(self._ancestry):
            raise IndexError(i)
        return self._ancestry.ancestor_mask(i)
