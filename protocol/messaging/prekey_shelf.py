"""One-time prekeys at a mailbox (PROTOCOL.md §19.16, *At mailboxes*).

A device uploads batches it signed (§19.2) to the mailboxes that hold a
grant for it, so that contacts can fetch its one-time prekeys while it is
offline.  The batch's own signature, by the device key its grant names,
authenticates the upload; each device's batches are made with rising ids
(§19.3), so the shelf takes only a batch above every id it took before
for that device: an old batch replayed by anyone (after its keys were
served, or after the shelf dropped it) is refused, and no key is served
twice.  The shelf serves each key once, paid with a token naming the
mailbox (§15.16), exactly as the device's own node does (``serve``).

A device makes separate batches for its node and each mailbox, so no key
is held at two servers.  Pure: time is a parameter; the caller makes the
returned shelf durable before it answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from protocol.core.canonical import decode_flat, encode_flat
from protocol.core.errors import InvalidInput, LimitExceededError, SchemaError
from protocol.core.fields import fixed_bin as _bin
from protocol.core.fields import uint as _uint
from protocol.core.params import NetworkParams
from protocol.messaging.prekey_fetch import (
    Answer,
    FetchRequest,
    PrekeyOffer,
    SignedOnly,
    SignedOnlyAnswer,
    UploadedAnswer,
    UploadRequest,
    serve,
)
from protocol.messaging.prekeys import decode_batch

#: batches a mailbox holds for one device (256 keys: a day's worth of
#: set-ups at the device's own rate, §19.16), and over all devices (about
#: 2.3 KB each: at most ~10 MB of a mailbox's disk)
DEVICE_BATCHES = 4
TOTAL_BATCHES = 4096
SHELF_VERSION = 1
#: the whole kept shelf: every batch, with served ids and tokens
MAX_SHELF_BYTES = TOTAL_BATCHES * 5200 + 1024 * 1024
#: devices whose floor is remembered (a mailbox holds at most 10,000 grants)
MAX_FLOORS = 65_536


class PrekeyShelfError(InvalidInput):
    """An upload the mailbox refuses: no grant for the device, or a batch
    not above the ids it took before (``prekey_stale``)."""

    code = "prekey_upload"


class PrekeyStaleError(PrekeyShelfError):
    code = "prekey_stale"


class ShelfFullError(LimitExceededError):
    code = "quota"


@dataclass(frozen=True, slots=True)
class PrekeyShelf:
    #: device -> its offer here
    offers: Mapping[bytes, PrekeyOffer] = field(default_factory=dict)
    #: device -> the lowest id a new batch may start at (above all taken)
    floors: Mapping[bytes, int] = field(default_factory=dict)

    def batches(self) -> int:
        return sum(len(o.batches) for o in self.offers.values())

    def upload(
        self,
        params: NetworkParams,
        request: UploadRequest,
        *,
        granted: bool,
        now_ms: int,
    ) -> tuple[Answer, PrekeyShelf]:
        """Take a batch for a device this mailbox holds a grant for (checks:
        the grant, the batch (§19.2), its ids above the floor, the caps)."""
        if not granted:
            raise PrekeyShelfError("this mailbox holds no grant for that device")
        batch = decode_batch(params, request.batch, request.account, request.device, now_ms)
        if batch.first_id < self.floors.get(request.device, 0):
            raise PrekeyStaleError("a batch is taken only above the ids taken before")
        offer = self.offers.get(request.device, PrekeyOffer()).pruned(now_ms)
        if len(offer.batches) >= DEVICE_BATCHES:
            raise ShelfFullError(f"at most {DEVICE_BATCHES} batches per device")
        if self.batches() >= TOTAL_BATCHES:
            raise ShelfFullError("the mailbox holds as many prekey batches as it may")
        offer = offer.with_batch(batch)
        shelf = replace(
            self,
            offers={**self.offers, request.device: offer},
            floors={**self._floors_with_room(), request.device: batch.first_id + len(batch.keys)},
        )
        return UploadedAnswer(len(offer.unserved(now_ms))), shelf

    def _floors_with_room(self) -> Mapping[bytes, int]:
        """The floors, the lowest dropped if they are as many as may be kept
        (a device so long gone holds nothing here)."""
        if len(self.floors) < MAX_FLOORS:
            return self.floors
        keep = sorted(self.floors.items(), key=lambda e: (e[0] not in self.offers, e[1]))
        return dict(keep[: MAX_FLOORS - 1])

    def fetch(
        self,
        params: NetworkParams,
        request: FetchRequest,
        *,
        mailbox_key: bytes,
        token_key: bytes,
        now_ms: int,
    ) -> tuple[Answer, PrekeyShelf]:
        """As the device's own node serves (§19.16), from what was uploaded."""
        offer = self.offers.get(request.device)
        if offer is None or any(b.account != request.account for b in offer.batches[:1]):
            return SignedOnlyAnswer(
                SignedOnly.NO_TOKEN if request.token is None else SignedOnly.EXHAUSTED
            ), self
        answer, new = serve(
            params, offer, request, mailbox_key=mailbox_key, token_key=token_key, now_ms=now_ms
        )
        if new is offer:
            return answer, self
        return answer, replace(self, offers={**self.offers, request.device: new})

    def pruned(self, now_ms: int) -> PrekeyShelf:
        """Expired batches and tokens dropped; the floors stay (they are
        what keeps an old batch out)."""
        offers = {d: o.pruned(now_ms) for d, o in self.offers.items()}
        return replace(self, offers={d: o for d, o in offers.items() if o.batches or o.paid})

    def pruned_device(self, device: bytes, now_ms: int) -> PrekeyShelf:
        """``pruned`` for one device's offer only: what a request for that
        device needs, at a cost that does not grow with the shelf."""
        offer = self.offers.get(device)
        if offer is None:
            return self
        kept = offer.pruned(now_ms)
        offers = {d: o for d, o in self.offers.items() if d != device}
        if kept.batches or kept.paid:
            offers[device] = kept
        return replace(self, offers=offers)

    def encode(self, params: NetworkParams) -> bytes:
        """As a mailbox keeps it (local, §19.16): sorted by device."""
        return encode_flat(
            [SHELF_VERSION,
             [[d, o.batches[0].account, o.encode(params)]
              for d, o in sorted(self.offers.items()) if o.batches],
             [[d, f] for d, f in sorted(self.floors.items())]]
        )  # fmt: skip

    @classmethod
    def decode(cls, params: NetworkParams, raw: bytes, now_ms: int) -> PrekeyShelf:
        v = decode_flat(raw, MAX_SHELF_BYTES)
        if type(v) is not list or len(v) != 3 or v[0] != SHELF_VERSION:
            raise SchemaError("a prekey shelf is [1, offers, floors]")
        if type(v[1]) is not list or type(v[2]) is not list or len(v[2]) > MAX_FLOORS:
            raise SchemaError("a shelf's lists are bounded")
        offers: dict[bytes, PrekeyOffer] = {}
        for e in v[1]:
            if type(e) is not list or len(e) != 3 or type(e[2]) is not bytes:
                raise SchemaError("a kept offer is [device, account, offer]")
            device, account = _bin(e[0], 32, "device"), _bin(e[1], 32, "account")
            offers[device] = PrekeyOffer.decode(params, e[2], account, device, now_ms)
        floors: dict[bytes, int] = {}
        for e in v[2]:
            if type(e) is not list or len(e) != 2:
                raise SchemaError("a floor is [device, id]")
            floors[_bin(e[0], 32, "device")] = _uint(e[1], "floor")
        return cls(offers, floors).pruned(now_ms)

    def drop_device(self, device: bytes) -> PrekeyShelf:
        """Its grant is gone: its batches go too (the floor stays)."""
        return replace(self, offers={d: o for d, o in self.offers.items() if d != device})


__all__ = [
    "DEVICE_BATCHES",
    "TOTAL_BATCHES",
    "PrekeyShelf",
    "PrekeyShelfError",
    "PrekeyStaleError",
    "ShelfFullError",
]
