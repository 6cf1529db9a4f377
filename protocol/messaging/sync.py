"""Account-wide state, synced among the devices of one account (PROTOCOL.md
§15.19; DESIGN §6 "An account's devices are equals").

Contacts, verification marks, request decisions and blocks, read markers
and deletions belong to the account, not to the device that made them.  A
device that changes one signs an **edit** and sends it, inside an envelope
to its own account (content kind 32, ``SyncEdits``), to its other devices;
every device merges the same edits into the same state.

An edit names a **key** (what it is about, e.g. ``contact/<account>``), a
**value**, the device that made it, the own account's **log heads** it was
made at, and a hybrid logical **clock**.  Merging never trusts device
clocks alone:

* **Validity follows the log** (rule 4's idea, DESIGN §3): an edit counts
  only if its device had been added at the edit's heads, and, if the device
  was later revoked (or removed by a recovery), only if every head is a
  strict ancestor of the event that ended it: what a stolen device did after
  (or unseen by) its revocation is undone everywhere, and what it did before
  stays, shown as made by a since-revoked device.
* **Order**: per key, the valid edit with the highest (log height of its
  heads, clock, device key) wins; log height is a function of the DAG, so
  every device orders the same edits the same way.
* **A far-future clock wins nothing**: an edit whose clock is more than the
  allowed skew ahead of the receiver's wall clock waits, unmerged, until
  the receiver's clock gets there (it is not refused: the sender's clock may
  just be a little fast).

Each device keeps, per key, only the newest edit of each device (a register
per device), so that undoing a revoked device's edit brings back what the
others said; everything is bounded (keys per device, value size, edits per
message).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from protocol.core import crypto
from protocol.core.canonical import Value, decode, encode
from protocol.core.errors import InvalidInput, SchemaError, SizeLimitError, UsageError
from protocol.core.fields import fixed_bin as _bin
from protocol.core.fields import uint as _uint
from protocol.core.keys import DeviceKeys
from protocol.core.params import NetworkParams
from protocol.log.events import ID_BYTES
from protocol.log.ledger import Ledger
from protocol.log.state import DeviceStatus

D_SYNC_EDIT = b"smu/sync-edit/v1\x00"
EDIT_VERSION = 1
#: content kind of a batch of edits (the account-sync range, 32-47)
SYNC_EDITS_KIND = 32

#: room for "verified/<account hex>/<epoch hex>" (138) and "trash/<account>/<message id>"
MAX_KEY_CHARS = 160
MAX_VALUE_BYTES = 1024
MAX_EDIT_BYTES = 2048
MAX_HEADS = 8
#: edits in one SYNC_EDITS content (a snapshot for a new device is several)
MAX_EDITS_PER_BATCH = 256
#: keys one device may hold a register for: a stolen device cannot fill
#: every device's store (honest use: contacts, marks, read markers, the trash)
MAX_KEYS_PER_DEVICE = 50_000
#: edits waiting for a clock or for log events, in all
MAX_WAITING = 4096
#: how far ahead of the receiver's clock an edit's clock may be (as records)
MAX_SKEW_MS = 5 * 60 * 1000


class SyncError(InvalidInput):
    code = "sync"


class SyncForgedError(SyncError):
    """An edit not signed by the device it names, or for another account."""

    code = "sync_forged"


@dataclass(frozen=True, slots=True)
class Edit:
    account: bytes
    device: bytes
    heads: tuple[bytes, ...]
    #: hybrid logical clock: (Unix ms, counter)
    clock: tuple[int, int]
    key: str
    value: Value
    signature: bytes

    def unsigned(self) -> list[object]:
        return [
            EDIT_VERSION,
            self.account,
            self.device,
            list(self.heads),
            list(self.clock),
            self.key,
            self.value,
        ]

    def to_wire(self) -> list[object]:
        return [*self.unsigned(), self.signature]

    def encode(self) -> bytes:
        return encode(self.to_wire())


def _signed_message(params: NetworkParams, unsigned: list[object]) -> bytes:
    return D_SYNC_EDIT + encode([params.network_id, unsigned])


def make_edit(
    params: NetworkParams,
    keys: DeviceKeys,
    account: bytes,
    heads: Iterable[bytes],
    clock: tuple[int, int],
    key: str,
    value: Value,
) -> Edit:
    """Sign an edit (local); raises ``UsageError`` if it would be refused."""
    draft = Edit(account, keys.sign_public, tuple(sorted(set(heads))), clock, key, value, b"")
    signature = keys.sign(_signed_message(params, draft.unsigned()))
    edit = Edit(draft.account, draft.device, draft.heads, clock, key, value, signature)
    try:
        return decode_edit(edit.encode(), params)
    except InvalidInput as exc:
        raise UsageError(f"an edit others would refuse: {exc}") from exc


def decode_edit(raw: bytes, params: NetworkParams, *, verify: bool = True) -> Edit:
    """Structure and (unless ``verify`` is False: for edits this device
    stored after checking them) signature; validity against the log is
    ``SyncBook``'s."""
    if len(raw) > MAX_EDIT_BYTES:
        raise SizeLimitError(f"an edit is at most {MAX_EDIT_BYTES} bytes")
    fields = decode(raw, MAX_EDIT_BYTES)
    if type(fields) is not list or len(fields) != 8:
        raise SchemaError("an edit is an array of 8")
    version, account, device, heads, clock, key, value, sig = fields
    if _uint(version, "edit version") != EDIT_VERSION:
        raise SchemaError(f"edit version {version} is not known here")
    if type(heads) is not list or not 0 < len(heads) <= MAX_HEADS:
        raise SchemaError(f"an edit names 1 to {MAX_HEADS} heads")
    head_ids = tuple(_bin(h, ID_BYTES, "head") for h in heads)
    if list(head_ids) != sorted(set(head_ids)):
        raise SchemaError("heads are sorted and unique")
    if type(clock) is not list or len(clock) != 2:
        raise SchemaError("a clock is [ms, counter]")
    ms, counter = _uint(clock[0], "clock ms"), _uint(clock[1], "clock counter")
    if not params.min_timestamp_ms <= ms <= params.max_timestamp_ms:
        raise SchemaError("clock out of the network's bounds")
    if type(key) is not str or not 0 < len(key) <= MAX_KEY_CHARS or not key.isprintable():
        raise SchemaError(f"a key is printable text of 1 to {MAX_KEY_CHARS} characters")
    if len(encode(value)) > MAX_VALUE_BYTES:
        raise SizeLimitError(f"a value is at most {MAX_VALUE_BYTES} bytes")
    edit = Edit(
        _bin(account, 32, "account"),
        _bin(device, 32, "device"),
        head_ids,
        (ms, counter),
        key,
        value,
        _bin(sig, 64, "signature"),
    )
    if verify:
        try:
            crypto.verify(edit.device, _signed_message(params, edit.unsigned()), edit.signature)
        except InvalidInput as exc:
            raise SyncForgedError("the edit is not signed by the device it names") from exc
    return edit


@dataclass(frozen=True, slots=True)
class SyncEdits:
    """Content kind 32: a batch of encoded edits, to one's own account only
    (the envelope refuses the account-sync range from anyone else, §15.4).
    Each edit carries its own signature (a snapshot relays edits made by
    other devices), checked by ``decode_edits``."""

    edits: tuple[bytes, ...]

    #: ``content.ContentKind.SYNC_EDITS`` (this module sits below content.py)
    kind = SYNC_EDITS_KIND

    @classmethod
    def of(cls, edits: Iterable[Edit]) -> SyncEdits:
        items = tuple(e.encode() for e in edits)
        if not 0 < len(items) <= MAX_EDITS_PER_BATCH:
            raise UsageError(f"a batch holds 1 to {MAX_EDITS_PER_BATCH} edits")
        return cls(items)

    def to_wire(self) -> list[object]:
        return [list(self.edits)]


def decode_sync_edits(value: object) -> SyncEdits:
    """``[[edit bytes, ...]]``: structure only (signatures: ``decode_edits``)."""
    if type(value) is not list or len(value) != 1 or type(value[0]) is not list:
        raise SchemaError("a sync batch is [[edit, ...]]")
    items = value[0]
    if not 0 < len(items) <= MAX_EDITS_PER_BATCH:
        raise SchemaError(f"a sync batch holds 1 to {MAX_EDITS_PER_BATCH} edits")
    if any(type(i) is not bytes or len(i) > MAX_EDIT_BYTES for i in items):
        raise SchemaError(f"a sync batch is a list of edits of at most {MAX_EDIT_BYTES} bytes")
    return SyncEdits(tuple(items))


def decode_edits(batch: SyncEdits, params: NetworkParams) -> tuple[Edit, ...]:
    return tuple(decode_edit(raw, params) for raw in batch.edits)


# --------------------------------------------------------------------------
# The account's log, as sync sees it


class LogView(Protocol):
    """What the merge needs of the own account's log."""

    def has(self, event_id: bytes) -> bool: ...

    def height(self, event_id: bytes) -> int:
        """Longest path from the genesis (0) to the event."""
        ...

    def strictly_before(self, a: bytes, b: bytes) -> bool:
        """``a`` is a strict ancestor of ``b``."""
        ...

    def at_or_before(self, a: bytes, b: bytes) -> bool:
        """``a`` is ``b`` or one of its ancestors."""
        ...

    def device(self, key: bytes) -> tuple[DeviceStatus, bytes, bytes | None] | None:
        """(status, the event that added it, the event that ended it)."""
        ...


class LedgerView:
    """``LogView`` over one account of a ``Ledger``."""

    def __init__(self, ledger: Ledger, account: bytes) -> None:
        self.ledger = ledger
        self.account = account
        self._heights: dict[bytes, int] = {}

    def has(self, event_id: bytes) -> bool:
        return self.ledger.account_of(event_id) == self.account

    def height(self, event_id: bytes) -> int:
        known = self._heights.get(event_id)
        if known is not None:
            return known
        log = self.ledger.log(self.account)
        # events are in a topological order: parents first
        for i in range(len(self._heights), len(log.events)):
            ev = log.events[i]
            self._heights[ev.id] = 1 + max((self._heights[p] for p in ev.parents), default=-1)
        return self._heights[event_id]

    def strictly_before(self, a: bytes, b: bytes) -> bool:
        log = self.ledger.log(self.account)
        return a != b and log.is_ancestor(a, b)

    def at_or_before(self, a: bytes, b: bytes) -> bool:
        return a == b or self.strictly_before(a, b)

    def device(self, key: bytes) -> tuple[DeviceStatus, bytes, bytes | None] | None:
        d = self.ledger.state(self.account).device(key)
        return None if d is None else (d.status, d.added_by, d.ended_by)


# --------------------------------------------------------------------------
# The merged state


class Offer(Enum):
    MERGED = "merged"
    #: older than what this device already holds from that device
    STALE = "stale"
    #: its clock is ahead of ours by more than the skew; merged when we get there
    WAITING_CLOCK = "waiting_clock"
    #: it names heads we do not hold yet; merged when they arrive
    WAITING_LOG = "waiting_log"


def order_key(edit: Edit, log: LogView) -> tuple[int, int, int, bytes, bytes]:
    """The total order of edits of one key (the highest wins).  The
    signature breaks the last tie: a device that signs two edits with one
    clock (only a thief would) still gets one answer everywhere."""
    height = max(log.height(h) for h in edit.heads)
    return (height, edit.clock[0], edit.clock[1], edit.device, edit.signature)


class SyncBook:
    """Every device's newest edit per key, and the winners."""

    def __init__(self, params: NetworkParams, account: bytes) -> None:
        self.params = params
        self.account = account
        #: key -> device -> that device's newest edit
        self._registers: dict[str, dict[bytes, Edit]] = {}
        self._keys_of: dict[bytes, int] = {}
        self._waiting: list[Edit] = []

    def __len__(self) -> int:
        return sum(len(r) for r in self._registers.values())

    def edits(self) -> Iterator[Edit]:
        """Everything held (a snapshot for a new device), in a fixed order."""
        for key in sorted(self._registers):
            for device in sorted(self._registers[key]):
                yield self._registers[key][device]

    def offer(self, edit: Edit, log: LogView, now_ms: int) -> Offer:
        """Merge an edit that ``decode_edit`` accepted.  Raises
        ``SyncForgedError`` for an edit of another account."""
        if edit.account != self.account:
            raise SyncForgedError("an edit for another account")
        if edit.clock[0] > now_ms + MAX_SKEW_MS:
            return self._wait(edit, Offer.WAITING_CLOCK)
        if not all(log.has(h) for h in edit.heads):
            return self._wait(edit, Offer.WAITING_LOG)
        register = self._registers.setdefault(edit.key, {})
        held = register.get(edit.device)
        if held is not None and order_key(held, log) >= order_key(edit, log):
            return Offer.STALE
        if held is None:
            if self._keys_of.get(edit.device, 0) >= MAX_KEYS_PER_DEVICE:
                raise SyncError("that device holds too many keys already")
            self._keys_of[edit.device] = self._keys_of.get(edit.device, 0) + 1
        register[edit.device] = edit
        return Offer.MERGED

    def _wait(self, edit: Edit, why: Offer) -> Offer:
        if edit not in self._waiting:
            if len(self._waiting) >= MAX_WAITING:
                self._waiting.pop(0)  # the oldest: its sender sends again
            self._waiting.append(edit)
        return why

    def next_clock_ms(self) -> int | None:
        """When the earliest edit waiting for a clock may be merged (our wall
        clock, ms)."""
        clocks = [e.clock[0] - MAX_SKEW_MS for e in self._waiting]
        return min(clocks) if clocks else None

    def retry(self, log: LogView, now_ms: int) -> list[Edit]:
        """Offer the waiting edits again (the clock moved, events arrived);
        the ones merged now."""
        waiting, self._waiting = self._waiting, []
        merged = []
        for edit in waiting:
            try:
                if self.offer(edit, log, now_ms) is Offer.MERGED:
                    merged.append(edit)
            except SyncError:
                continue
        return merged

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    # -- what holds ---------------------------------------------------------

    def valid(self, edit: Edit, log: LogView) -> bool:
        """Does the log let ``edit`` count (module docstring)?"""
        device = log.device(edit.device)
        if device is None:
            return False
        status, added_by, ended_by = device
        if status is DeviceStatus.VOID:
            return False
        if not any(log.at_or_before(added_by, h) for h in edit.heads):
            return False
        if ended_by is not None:
            return all(log.strictly_before(h, ended_by) for h in edit.heads)
        return True

    def winner(self, key: str, log: LogView) -> Edit | None:
        candidates = [e for e in self._registers.get(key, {}).values() if self.valid(e, log)]
        return max(candidates, key=lambda e: order_key(e, log), default=None)

    def keys(self, prefix: str = "") -> list[str]:
        return sorted(k for k in self._registers if k.startswith(prefix))

    def view(self, log: LogView, prefix: str = "") -> dict[str, Edit]:
        """Every key under ``prefix`` with its winning edit."""
        out = {}
        for key in self.keys(prefix):
            w = self.winner(key, log)
            if w is not None:
                out[key] = w
        return out


class HybridClock:
    """A device's hybrid logical clock: never behind its wall clock, never
    behind an edit it merged, and never running ahead by itself."""

    def __init__(self, last: tuple[int, int] = (0, 0)) -> None:
        self.last = last

    def next(self, now_ms: int) -> tuple[int, int]:
        ms = max(now_ms, self.last[0])
        self.last = (ms, self.last[1] + 1 if ms == self.last[0] else 0)
        return self.last

    def observe(self, clock: tuple[int, int], now_ms: int) -> None:
        if clock[0] <= now_ms + MAX_SKEW_MS and clock > self.last:
            self.last = clock
