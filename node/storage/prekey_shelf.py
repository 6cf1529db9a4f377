"""One-time prekeys this node's mailbox holds for other devices, in SQLite
(PROTOCOL.md §19.16, *At mailboxes*).

One row per device's offer and one per device's floor, so serving a key
rewrites that device's row in one transaction, not the whole shelf (up to
4,096 batches, about 22 MB, which ``prekey-shelf.bin`` used to be written
whole for every key served).  The shelf itself stays the pure
``protocol.messaging.prekey_shelf.PrekeyShelf``; ``save`` writes what
differs between the shelf as loaded or last saved and the new one.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from protocol.core.errors import InvalidInput
from protocol.core.params import NetworkParams
from protocol.messaging.prekey_fetch import PrekeyOffer
from protocol.messaging.prekey_shelf import MAX_FLOORS, PrekeyShelf

if TYPE_CHECKING:
    from .db import Database, Statement

log = logging.getLogger("smu.prekeys")

SCHEMA_V15 = [
    """CREATE TABLE IF NOT EXISTS prekey_offers (
           device BLOB PRIMARY KEY,
           account BLOB NOT NULL,
           offer BLOB NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS prekey_floors (
           device BLOB PRIMARY KEY,
           floor INTEGER NOT NULL)""",
]


class PrekeyShelfStore:
    def __init__(self, db: Database, params: NetworkParams) -> None:
        self.db = db
        self.params = params

    def load(self, now_ms: int) -> PrekeyShelf:
        """What the rows hold; an offer that no longer decodes is dropped
        (its device uploads again), and the floors are kept whole."""
        offers: dict[bytes, PrekeyOffer] = {}
        damaged: list[bytes] = []
        for device, account, raw in self.db.query(
            "SELECT device, account, offer FROM prekey_offers"
        ):
            device, account = bytes(device), bytes(account)
            try:
                offers[device] = PrekeyOffer.decode(
                    self.params, bytes(raw), account, device, now_ms
                )
            except InvalidInput as exc:
                log.warning("a kept prekey offer is not used: %s", exc.code)
                damaged.append(device)
        if damaged:
            self.db.write([("DELETE FROM prekey_offers WHERE device=?", (d,)) for d in damaged])
        rows = self.db.query(
            "SELECT device, floor FROM prekey_floors ORDER BY floor DESC LIMIT ?", (MAX_FLOORS,)
        )
        floors = {bytes(d): int(f) for d, f in rows}
        return PrekeyShelf(offers, floors).pruned(now_ms)

    def save(self, old: PrekeyShelf, new: PrekeyShelf) -> None:
        """Write, in one transaction, the rows of the devices whose offer or
        floor differs between ``old`` and ``new``."""
        statements: list[Statement] = []
        for device in old.offers.keys() | new.offers.keys():
            before, after = old.offers.get(device), new.offers.get(device)
            if before is after:
                continue
            if after is None or not after.batches:
                statements.append(("DELETE FROM prekey_offers WHERE device=?", (device,)))
            elif after != before:
                statements.append((
                    "INSERT OR REPLACE INTO prekey_offers(device, account, offer) VALUES(?, ?, ?)",
                    (device, after.batches[0].account, after.encode(self.params)),
                ))  # fmt: skip
        for device in old.floors.keys() | new.floors.keys():
            floor = new.floors.get(device)
            if floor == old.floors.get(device):
                continue
            if floor is None:
                statements.append(("DELETE FROM prekey_floors WHERE device=?", (device,)))
            else:
                statements.append((
                    "INSERT OR REPLACE INTO prekey_floors(device, floor) VALUES(?, ?)",
                    (device, floor),
                ))  # fmt: skip
        if statements:
            self.db.write(statements)

    def import_file(self, raw: bytes, now_ms: int) -> None:
        """A ``prekey-shelf.bin`` of before this table, once (a damaged one
        is dropped: its devices upload again)."""
        try:
            shelf = PrekeyShelf.decode(self.params, raw, now_ms)
        except InvalidInput as exc:
            log.warning("prekey-shelf.bin not imported: %s", exc.code)
            return
        self.save(PrekeyShelf(), shelf)
