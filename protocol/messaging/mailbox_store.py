"""Where a mailbox keeps what it holds (PROTOCOL.md §15.18).

The ``Mailbox`` machine decides (grants, quotas, tokens, expiry); what it
holds lives behind ``MailboxStore``: the envelopes (the bulk: up to 1 MiB
each), the grants, and the spent tokens.  A node backs it with SQLite
(``node/storage/mailbox.py``); tests and simnet use ``MemoryMailboxStore``.

The machine keeps in memory only what it needs to decide: per item its id,
device, size, time, class and group (``ItemMeta``, tens of bytes), never
the envelope; the global caps on items and spent tokens bound that memory.

Every change of one request is one ``StoreChange``, applied whole by
``apply`` and durable when it returns: a deposit is answered DEPOSITED
only after its envelope (and the token it spent) is stored.  ``load``
gives everything back after a restart; ``read`` fetches envelopes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ItemMeta:
    """What the machine remembers of one held envelope."""

    device: bytes
    item_id: bytes
    #: deposit order over the whole mailbox (fetch and expiry follow it)
    seq: int
    deposited_at: int
    size: int
    #: deposited without a token: from the strangers' pool (§15.17)
    stranger: bool
    #: the depositor's network group (strangers only; "" for contacts)
    group: str


@dataclass(frozen=True, slots=True)
class SpentToken:
    device: bytes
    nonce: bytes
    expires: int


@dataclass(frozen=True, slots=True)
class StoreChange:
    """One transaction: applied whole or not at all."""

    put_items: tuple[tuple[ItemMeta, bytes], ...] = ()
    #: (device, item id)
    drop_items: tuple[tuple[bytes, bytes], ...] = ()
    put_spent: tuple[SpentToken, ...] = ()
    #: (device, nonce)
    drop_spent: tuple[tuple[bytes, bytes], ...] = ()
    #: (device, grant bytes)
    put_grants: tuple[tuple[bytes, bytes], ...] = ()
    drop_grants: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class StoreSnapshot:
    """Everything a store holds but the envelopes, for ``Mailbox`` to load."""

    grants: tuple[bytes, ...] = ()
    #: ascending by ``seq``
    items: tuple[ItemMeta, ...] = ()
    spent: tuple[SpentToken, ...] = ()


class MailboxStore(Protocol):
    def load(self) -> StoreSnapshot: ...

    def apply(self, change: StoreChange) -> None:
        """Make ``change`` durable, whole, before returning."""
        ...

    def read(self, device: bytes, item_ids: Sequence[bytes]) -> list[bytes]:
        """The envelopes of ``item_ids`` (all held for ``device``), in order."""
        ...


@dataclass(slots=True)
class MemoryMailboxStore:
    """A store in memory, for tests and simnet: a restart keeps what was
    applied when the same instance is passed to a new ``Mailbox``."""

    grants: dict[bytes, bytes] = field(default_factory=dict)
    items: dict[tuple[bytes, bytes], tuple[ItemMeta, bytes]] = field(default_factory=dict)
    spent: dict[tuple[bytes, bytes], SpentToken] = field(default_factory=dict)
    #: how many changes were applied (tests count writes)
    writes: int = 0

    def load(self) -> StoreSnapshot:
        return StoreSnapshot(
            tuple(self.grants.values()),
            tuple(sorted((m for m, _ in self.items.values()), key=lambda m: m.seq)),
            tuple(self.spent.values()),
        )

    def apply(self, change: StoreChange) -> None:
        self.writes += 1
        for key in change.drop_items:
            self.items.pop(key, None)
        for meta, envelope in change.put_items:
            self.items[(meta.device, meta.item_id)] = (meta, envelope)
        for key in change.drop_spent:
            self.spent.pop(key, None)
        for s in change.put_spent:
            self.spent[(s.device, s.nonce)] = s
        for device in change.drop_grants:
            self.grants.pop(device, None)
        for device, raw in change.put_grants:
            self.grants[device] = raw

    def read(self, device: bytes, item_ids: Sequence[bytes]) -> list[bytes]:
        return [self.items[(device, i)][1] for i in item_ids]

    @property
    def stored_bytes(self) -> int:
        return sum(len(e) for _, e in self.items.values())
