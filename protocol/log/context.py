"""The state at an event's parents, without evaluating its ancestors
(PROTOCOL.md §7.1, §7.3).

Rule 1 and the caps judge a new event against the state of its ancestors
``A``.  Re-evaluating ``A`` for every event that does not extend the heads
made a wide account quadratic.  Instead every event keeps the *context*
after it, ``D(e) = A ∪ {e}``: which devices are active there (with the
events that added each one, for rule 5) and each active device's event
count (the per-device cap).  A context is shared by reference until an
event changes it:

- a profile or rotation changes one count;
- an add-device, a revocation or a recover changes the device set, exactly
  as if ``e`` extended the heads of ``A``, because ``e`` descends from all of
  ``A`` and so can void nothing in it;
- a merge combines its parents' contexts (``merge``): a device active at the
  merge was active at one of its parents, and stays so unless another
  parent brings a revocation of it or of the device that added it, or a
  recover that removes it.  When all parents share one device set, only the
  counts are combined.

The latest recover among ``A`` (``rec``) gives the recovery commitment: the
recovers among any event's ancestors form a chain (rule 6 of suite 2 leaves
no device active above two concurrent recovers, so nothing can be
appended there).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from protocol.log.ancestry import Ancestry
from protocol.log.events import Event, EventKind, RecoverBody

_ADD = EventKind.ADD_DEVICE
_GENESIS = EventKind.GENESIS
_RECOVER = EventKind.RECOVER


#: The active devices at a point of the history, sorted by key, and each
#: one's adders there (every event that introduces it, void or not): two
#: plain tuples, so that the garbage collector stops tracking them, which
#: matters when a node holds many small accounts (bench/ingest.py).
KeySet = tuple[tuple[bytes, ...], tuple[tuple[int, ...], ...]]
#: Each active device's count (§7.3), in the order of its key set.
Counts = tuple[int, ...]

#: No device active (above two concurrent recovers): nothing is authorised.
EMPTY: KeySet = ((), ())
#: ``merge``'s latest recover for a set holding two concurrent recovers:
#: no recovery key is committed to there either.
BROKEN = -2


def find(ks: KeySet, key: bytes) -> int | None:
    """The key's place in ``ks``, or ``None`` if it is not active there (at
    most 64 keys: a scan in C)."""
    keys = ks[0]
    return keys.index(key) if key in keys else None


def bump(counts: Counts, n: int) -> Counts:
    """``counts`` with entry ``n`` one higher."""
    return (*counts[:n], counts[n] + 1, *counts[n + 1 :])


def with_device(
    ks: KeySet, counts: Counts, key: bytes, adder: int, approver: int | None
) -> tuple[KeySet, Counts]:
    """After an add-device of ``key`` by the device at index ``approver``."""
    if approver is not None:
        counts = bump(counts, approver)
    keys, adders = ks
    n = 0
    while n < len(keys) and keys[n] < key:
        n += 1
    new = ((*keys[:n], key, *keys[n:]), (*adders[:n], (adder,), *adders[n:]))
    return new, (*counts[:n], 0, *counts[n:])


def without_device(ks: KeySet, counts: Counts, key: bytes) -> tuple[KeySet, Counts]:
    keys, adders = ks
    n = keys.index(key)
    return ((*keys[:n], *keys[n + 1 :]), (*adders[:n], *adders[n + 1 :])), (
        *counts[:n],
        *counts[n + 1 :],
    )


def merge(
    parents: Sequence[int],
    *,
    ancestry: Ancestry,
    events: Sequence[Event],
    rec_of: Sequence[int],
    rdepth: Mapping[int, int],
    ks_of: Callable[[int], KeySet],
    counts_of: Callable[[int], Counts],
    adders: Mapping[bytes, Sequence[int]],
    revocations: Mapping[bytes, Sequence[int]],
    sadders: Sequence[tuple[int, ...] | None],
) -> tuple[int, KeySet, Counts]:
    """The context at ``A``, the union of several parents' down-sets:
    (latest recover, active devices, their counts).  ``EMPTY`` if ``A``
    holds two concurrent recovers (and the recover ``BROKEN``)."""
    recs = {rec_of[p] for p in parents}
    top = max(recs, key=lambda r: rdepth[r] if r >= 0 else -1)
    for r in recs:
        if r != top and r >= 0 and not ancestry.is_ancestor(r, top):
            return BROKEN, EMPTY, ()
    # Parents whose latest recover is older contribute no active device:
    # what they added is among the top recover's ancestors (removed) or
    # concurrent with it (void).
    current = [p for p in parents if rec_of[p] == top]
    first = ks_of(current[0])

    def in_a(x: int) -> bool:
        return ancestry.in_down_set(x, parents)

    def count_of(key: bytes) -> int:
        """The device's count at ``A``: the largest at a parent where it is
        active (§7.3)."""
        best = 0
        for p in parents:
            n = find(ks_of(p), key)
            if n is not None:
                best = max(best, counts_of(p)[n])
        return best

    if all(ks_of(p) is first for p in current):
        if len(current) == len(parents):
            counts = counts_of(parents[0])
            for p in parents[1:]:
                counts = tuple(map(max, counts, counts_of(p)))
        else:
            counts = tuple(count_of(k) for k in first[0])
        # The same device set means the same structural events, except that
        # an older parent may bring another (void) adder of a device.
        extra = []
        for n, key in enumerate(first[0]):
            known = first[1][n]
            if len(adders[key]) > len(known):
                found = tuple(a for a in adders[key] if a in known or in_a(a))
                if found != known:
                    extra.append((n, found))
        if not extra:
            return top, first, counts
        fixed = list(first[1])
        for n, found in extra:
            fixed[n] = found
        return top, (first[0], tuple(fixed)), counts

    live_memo: dict[int, bool] = {}

    def revoked_here(key: bytes) -> list[int]:
        """Final revocations of ``key`` in ``A``: those after the top
        recover (an earlier one would have removed the key)."""
        return [v for v in revocations.get(key, ()) if rec_of[v] == top and in_a(v)]

    def live(a: int) -> bool:
        """Adder ``a`` (in ``A``) is not void at ``A`` (rules 2, 4, 5)."""
        stack = [a]
        while stack:
            x = stack[-1]
            if x in live_memo:
                stack.pop()
                continue
            if rec_of[x] != top:
                live_memo[x] = False  # concurrent with the top recover, or removed
                stack.pop()
                continue
            e = events[x]
            if e.kind is not _ADD:
                live_memo[x] = True  # the genesis or the top recover itself
                stack.pop()
                continue
            if any(not ancestry.is_ancestor(x, v) for v in revoked_here(e.signer)):
                live_memo[x] = False  # rule 4
                stack.pop()
                continue
            approvers = sadders[x]
            assert approvers is not None  # an add-device's signer was added
            pending = [s for s in approvers if s not in live_memo]
            if pending:
                stack.extend(pending)
                continue
            live_memo[x] = any(live_memo[s] for s in approvers)  # rule 5
            stack.pop()
        return live_memo[a]

    own = None
    if top >= 0:
        body = events[top].body
        assert isinstance(body, RecoverBody)
        own = body.device.sign_public
    keys: list[bytes] = []
    key_adders: list[tuple[int, ...]] = []
    counts_list: list[int] = []
    candidates = sorted({k for p in current for k in ks_of(p)[0]})
    for key in candidates:
        seen: set[int] = set()
        for p in current:
            at = find(ks_of(p), key)
            if at is not None:
                seen.update(ks_of(p)[1][at])
        here = tuple(a for a in adders[key] if a in seen or in_a(a))
        if top >= 0 and key != own and any(ancestry.is_ancestor(a, top) for a in here):
            continue  # rule 6: removed by the top recover
        if revoked_here(key):
            continue  # rule 3
        if not any(live(a) for a in here):
            continue
        keys.append(key)
        key_adders.append(here)
        counts_list.append(count_of(key))
    return top, (tuple(keys), tuple(key_adders)), tuple(counts_list)


def genesis_context(genesis: Event) -> tuple[KeySet, Counts]:
    assert genesis.kind is _GENESIS
    return ((genesis.signer,), ((0,),)), (1,)


def recover_context(recover: int, event: Event) -> tuple[KeySet, Counts]:
    body = event.body
    assert isinstance(body, RecoverBody)
    return ((body.device.sign_public,), ((recover,),)), (0,)
