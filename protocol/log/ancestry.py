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


class Ancestry:
    __slots__ = ("_gen", "_jn", "_jp", "_masks", "_parents", "_run", "_td", "_tp")

    def __init__(self) -> None:
        self._gen = array("i")
        self._tp = array("i")
        self._td = array("i")
        self._jp = array("i")
        self._jn = array("i")
        self._run = array("i")
        #: junction -> bit mask of its strict ancestors
        self._masks: dict[int, int] = {}
        #: merge -> all its parents (other events: the tree parent alone)
        self._parents: dict[int, tuple[int, ...]] = {}

    def __len__(self) -> int:
        return len(self._gen)

    # -- adding ------------------------------------------------------------

    def add(self, parents: Sequence[int], junction: bool) -> int:
        """Number the next event, whose parents (numbers) are all here;
        ``junction`` for a revocation or recover (a genesis and a merge always
        are one).  Returns its number."""
        i = len(self._gen)
        gen, tpa, td, jp = self._gen, self._tp, self._td, self._jp
        if not parents:
            gen.append(0)
            tpa.append(-1)
            td.append(0)
            jp.append(i)
            self._jn.append(i)
            self._run.append(i)
            self._masks[i] = 0
            return i
        if len(parents) == 1:
            tp = parents[0]
            g = gen[tp]
        else:
            tp = max(parents, key=lambda q: (gen[q], q))
            g = gen[tp]
            self._parents[i] = tuple(parents)
            junction = True
        gen.append(g + 1)
        tpa.append(tp)
        d = td[tp] + 1
        td.append(d)
        j1 = jp[tp]
        jp.append(jp[j1] if td[tp] - td[j1] == td[j1] - td[jp[j1]] else tp)
        if junction:
            self._jn.append(i)
            self._run.append(i)
            mask = 0
            for p in parents:
                mask |= self.down_mask(p)
            self._masks[i] = mask
        else:
            self._jn.append(self._jn[tp])
            run = self._run
            run.append(run[tp] if tp == i - 1 and self._jn[tp] != tp else i)
        return i

    # -- queries -------------------------------------------------------------

    def generation(self, i: int) -> int:
        return self._gen[i]

    def is_junction(self, i: int) -> bool:
        return self._jn[i] == i

    def parents(self, i: int) -> tuple[int, ...]:
        """Every parent of ``i``, by number."""
        merge = self._parents.get(i)
        if merge is not None:
            return merge
        tp = self._tp[i]
        return (tp,) if tp >= 0 else ()

    def _level(self, v: int, depth: int) -> int:
        """The tree ancestor of ``v`` at ``depth`` (at most ``v``'s own)."""
        td, jp, tp = self._td, self._jp, self._tp
        while td[v] > depth:
            j = jp[v]
            v = j if td[j] >= depth else tp[v]
        return v

    def is_ancestor(self, x: int, y: int) -> bool:
        """Whether ``x`` is a strict ancestor of ``y``."""
        if x >= y or self._gen[x] >= self._gen[y]:
            return False
        j = self._jn[y]
        if j == y:
            return bool(self._masks[y] >> x & 1)
        if x == j:
            return True
        td = self._td
        if td[j] < td[x] <= td[y] and self._level(y, td[x]) == x:
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
        j = self._jn[p]
        bits = self._masks[j] | (1 << j)
        if j == p:
            return bits
        run, tp = self._run, self._tp
        v = p
        while v != j:
            s = run[v]
            bits |= (1 << (v + 1)) - (1 << s)
            v = tp[s]
        return bits

    def ancestor_mask(self, i: int) -> int:
        """``i``'s strict ancestors, as a bit mask (computed unless ``i`` is a
        junction: O(n / 64) words)."""
        if self._jn[i] == i:
            return self._masks[i]
        return self.down_mask(self._tp[i])


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
