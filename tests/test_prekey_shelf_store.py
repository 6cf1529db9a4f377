"""The mailbox's one-time prekeys in SQLite (PROTOCOL.md §19.16, *At
mailboxes*): a row per device, so serving a key writes that device's row
only; what is loaded again is the shelf that was saved; the file of before
the table is imported once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from node.datadir import PREKEY_SHELF_FILE, DataDir
from node.storage import open_database
from node.storage.prekey_shelf import PrekeyShelfStore
from protocol.messaging import prekey_fetch as pf
from protocol.messaging import prekey_shelf as ps

from .conftest import FAST, T0
from .test_prekey_fetch import DEVICE, _tokens
from .test_prekey_shelf import MAILBOX, _fetch, _upload


def _rows(db_path: Path) -> dict[bytes, bytes]:
    conn = sqlite3.connect(db_path)
    try:
        return {
            bytes(d): bytes(o) for d, o in conn.execute("SELECT device, offer FROM prekey_offers")
        }
    finally:
        conn.close()


def test_a_served_key_rewrites_one_device_row_and_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    db = open_database(path)
    store = PrekeyShelfStore(db, FAST)
    empty = store.load(T0)
    assert empty == ps.PrekeyShelf()
    _, shelf = _upload(empty, 1000)
    store.save(empty, shelf)
    assert set(_rows(path)) == {DEVICE.sign_public}

    # another device's row is in the table too; serving DEVICE's key leaves it
    other = b"\x07" * 32
    other_offer = shelf.offers[DEVICE.sign_public]
    two = ps.PrekeyShelf({**shelf.offers, other: other_offer}, {**shelf.floors, other: 5})
    store.save(shelf, two)
    before = _rows(path)
    answer, served = _fetch(two, _tokens(1, mailbox_key=MAILBOX, label="store")[0])
    assert isinstance(answer, pf.OneTimeAnswer)
    changes = db.conn.total_changes
    store.save(two, served)
    assert db.conn.total_changes - changes == 1  # one row, not the shelf
    after = _rows(path)
    assert after[other] == before[other] and after[DEVICE.sign_public] != before[DEVICE.sign_public]
    db.close()

    # what is loaded again serves no key twice, and keeps the floors
    again = PrekeyShelfStore(open_database(path), FAST).load(T0 + 1)
    assert again.offers[DEVICE.sign_public].served == served.offers[DEVICE.sign_public].served
    assert again.floors == served.floors


def test_a_damaged_row_is_dropped_and_the_rest_kept(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    db = open_database(path)
    store = PrekeyShelfStore(db, FAST)
    _, shelf = _upload(ps.PrekeyShelf(), 1000)
    store.save(ps.PrekeyShelf(), shelf)
    db.write([("UPDATE prekey_offers SET offer=?", (b"\x93garbage",))])
    loaded = store.load(T0)
    assert loaded.offers == {} and loaded.floors == shelf.floors  # a stale batch stays out
    assert _rows(path) == {}


def test_the_shelf_file_of_before_is_imported_once(tmp_path: Path) -> None:
    _, shelf = _upload(ps.PrekeyShelf(), 1000)
    (tmp_path / PREKEY_SHELF_FILE).write_bytes(shelf.encode(FAST))
    raw = DataDir(tmp_path).take_prekey_shelf()
    assert raw is not None and not (tmp_path / PREKEY_SHELF_FILE).exists()
    assert DataDir(tmp_path).take_prekey_shelf() is None
    store = PrekeyShelfStore(open_database(tmp_path / "node.db"), FAST)
    store.import_file(raw, T0)
    assert store.load(T0) == shelf
    store.import_file(b"not a shelf", T0)  # a damaged file: nothing, no error
    assert store.load(T0) == shelf


def test_a_request_prunes_only_its_device() -> None:
    _, shelf = _upload(ps.PrekeyShelf(), 1000)
    other = b"\x09" * 32
    offer = shelf.offers[DEVICE.sign_public]
    two = ps.PrekeyShelf({**shelf.offers, other: offer}, shelf.floors)
    late = T0 + pf.OFFER_LIFETIME_MS + 1  # every batch has expired
    pruned = two.pruned_device(DEVICE.sign_public, late)
    assert DEVICE.sign_public not in pruned.offers and pruned.offers[other] is offer
    assert two.pruned_device(b"\x01" * 32, late) is two
    assert pruned.pruned(late).offers == {}
