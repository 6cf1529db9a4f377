"""A mailbox's bounds and counts (PROTOCOL.md §15.17-§15.18): the limits,
what one device's box holds, and the stranger deposit rate of each network
group.  ``protocol.messaging.mailbox`` decides with them.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from protocol.core.machine import Now
from protocol.messaging.mailbox_store import ItemMeta
from protocol.messaging.mailbox_wire import StrangerPoolFullError
from protocol.messaging.tokens import MAX_TOKEN_LIFETIME_MS
from protocol.records.grant import Grant

MiB = 1024 * 1024
DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class MailboxLimits:
    """Every bound of a mailbox; the reasons are in PROTOCOL.md §15.17-§15.18."""

    #: what a grant promises one device (its defaults)
    quota_bytes: int = 64 * MiB
    quota_count: int = 10_000
    grant_lifetime_ms: int = 30 * DAY_MS
    #: over all devices of one account
    account_bytes: int = 128 * MiB
    account_count: int = 20_000
    account_grants: int = 8
    #: the whole mailbox
    max_bytes: int = 1024 * MiB
    max_items: int = 100_000
    max_grants: int = 10_000
    #: a contact's item not fetched and deleted within this is dropped
    item_ttl_ms: int = 14 * DAY_MS
    #: a stranger's item lives a day: the pool turns over
    stranger_ttl_ms: int = DAY_MS
    #: the strangers' pool of one device (inside its grant's quota)
    stranger_bytes: int = 4 * MiB
    stranger_count: int = 64
    #: one network group's share of one device's pool
    group_device_count: int = 8
    #: one network group over the whole mailbox
    group_bytes: int = 16 * MiB
    group_count: int = 256
    #: every stranger's item in the mailbox
    strangers_bytes: int = 64 * MiB
    strangers_count: int = 4096
    #: stranger deposits per network group: sustained per second, and burst
    group_rate: float = 1.0
    group_burst: int = 60
    #: network groups whose rate is remembered at once
    max_groups: int = 65_536
    #: tokens: the longest life a mailbox accepts, and spent tokens kept
    max_token_lifetime_ms: int = MAX_TOKEN_LIFETIME_MS
    spent_per_device: int = 20_000
    max_spent: int = 200_000
    #: open challenges over all devices
    max_challenges: int = 10_000


@dataclass(slots=True)
class Use:
    """Bytes and items held, in one count of §15.17."""

    bytes: int = 0
    count: int = 0

    def add(self, size: int, n: int = 1) -> None:
        self.bytes += size
        self.count += n


@dataclass(slots=True)
class DeviceBox:
    """What a mailbox holds for one device, and its counts."""

    grant: Grant
    #: the account the box's items count against (fixed while it holds items)
    account: bytes
    #: contacts' and strangers' items, each in deposit order
    contact: dict[bytes, ItemMeta] = field(default_factory=dict)
    stranger: dict[bytes, ItemMeta] = field(default_factory=dict)
    use: Use = field(default_factory=Use)
    strangers: Use = field(default_factory=Use)
    groups: Counter[str] = field(default_factory=Counter)

    def get(self, item_id: bytes) -> ItemMeta | None:
        return self.contact.get(item_id) or self.stranger.get(item_id)

    def ordered(self) -> Iterable[ItemMeta]:
        """Every item, oldest deposit first."""
        return heapq.merge(self.contact.values(), self.stranger.values(), key=lambda m: m.seq)

    @property
    def empty(self) -> bool:
        return not self.contact and not self.stranger


class GroupRates:
    """A token bucket per network group for strangers' deposits: at most
    ``max_groups`` remembered at once; a full bucket is forgotten."""

    def __init__(self, limits: MailboxLimits) -> None:
        self.limits = limits
        #: group -> (level, monotonic time of the level)
        self._buckets: dict[str, tuple[float, float]] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, group: str, now: Now) -> None:
        """One stranger deposit from ``group``: refill its bucket, take one."""
        lim = self.limits
        level, at = self._buckets.get(group, (float(lim.group_burst), now.mono))
        level = min(float(lim.group_burst), level + max(0.0, now.mono - at) * lim.group_rate)
        if group not in self._buckets and len(self._buckets) >= lim.max_groups:
            self.prune(now)
            if len(self._buckets) >= lim.max_groups:
                raise StrangerPoolFullError("too many network groups deposit here; retry later")
        if level < 1.0:
            raise StrangerPoolFullError("your network deposits too fast here; retry later")
        self._buckets[group] = (level - 1.0, now.mono)

    def prune(self, now: Now) -> None:
        """Forget buckets that have refilled: a full bucket is no bucket."""
        lim = self.limits
        full = [
            g
            for g, (level, at) in self._buckets.items()
            if level + (now.mono - at) * lim.group_rate >= lim.group_burst
        ]
        for g in full:
            del self._buckets[g]
