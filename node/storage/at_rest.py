"""Values encrypted at rest in the node's store (PROTOCOL.md §15.21).

One ``RowCipher`` per store, under the device's storage key (32 random
bytes kept in ``keys.json`` with the device secrets, so that ``--passphrase``
protects it exactly when it protects them).  A value is sealed with
XChaCha20-Poly1305 (libsodium, through pynacl) under a fresh random nonce;
the associated data names the table, the column and the row's key, so a
value copied to another row or column does not open.  A table that keeps a
secret column calls::

    blob = cipher.seal("sessions", "state", row_key(peer, device), state)
    state = cipher.open("sessions", "state", row_key(peer, device), blob)

``open`` raises ``StoreCorruptError`` (a ``StoreError``) for a value that
does not open: a damaged store, or a ``keys.json`` that is not this store's.
"""

from __future__ import annotations

import os
import sqlite3
import struct
from collections.abc import Callable
from typing import Any

import nacl.bindings
import nacl.exceptions

from ..errors import StoreCorruptError, StoreError

#: the first byte of every sealed value: the layout below
VERSION = 1
#: the associated data's prefix (PROTOCOL.md §15.21)
D_AT_REST = b"smu/at-rest/v1\x00"
KEY_BYTES = 32
NONCE_BYTES = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
TAG_BYTES = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_ABYTES
#: version ‖ nonce ‖ ciphertext ‖ tag: what sealing adds to a value
OVERHEAD = 1 + NONCE_BYTES + TAG_BYTES

RowKeyPart = bytes | str | int


def row_key(*parts: RowKeyPart) -> bytes:
    """A row's key for the associated data: each part (bytes, UTF-8 text or
    an unsigned 64-bit integer) preceded by its u16 length, so that no two
    different tuples of parts give the same bytes."""
    out = bytearray()
    for part in parts:
        if isinstance(part, int):
            raw = struct.pack(">Q", part)
        elif isinstance(part, str):
            raw = part.encode()
        else:
            raw = bytes(part)
        if len(raw) > 0xFFFF:
            raise ValueError("a row key part is at most 65,535 bytes")
        out += struct.pack(">H", len(raw)) + raw
    return bytes(out)


def associated_data(table: str, column: str, key: bytes) -> bytes:
    """``D_AT_REST ‖ u16 len ‖ table ‖ u16 len ‖ column ‖ u32 len ‖ row key``."""
    t, c = table.encode(), column.encode()
    return (
        D_AT_REST
        + struct.pack(">H", len(t))
        + t
        + struct.pack(">H", len(c))
        + c
        + struct.pack(">I", len(key))
        + key
    )


class RowCipher:
    """Seals and opens single column values of one store."""

    __slots__ = ("_key", "_random")

    def __init__(self, key: bytes, random: Callable[[int], bytes] = os.urandom) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a storage key is {KEY_BYTES} bytes")
        self._key = bytes(key)
        self._random = random

    def __repr__(self) -> str:  # never the key
        return "RowCipher(<storage key>)"

    def seal(self, table: str, column: str, key: bytes, plaintext: bytes) -> bytes:
        nonce = self._random(NONCE_BYTES)
        body = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
            plaintext, associated_data(table, column, key), nonce, self._key
        )
        return bytes([VERSION]) + nonce + body

    def open(self, table: str, column: str, key: bytes, sealed: object) -> bytes:
        if not isinstance(sealed, bytes) or len(sealed) < OVERHEAD or sealed[0] != VERSION:
            raise StoreCorruptError(_damaged(table, column, "not a sealed value"))
        nonce, body = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
        try:
            return bytes(
                nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                    body, associated_data(table, column, key), nonce, self._key
                )
            )
        except nacl.exceptions.CryptoError:
            raise StoreCorruptError(_damaged(table, column, "it does not open")) from None

    def seal_text(self, table: str, column: str, key: bytes, text: str) -> bytes:
        return self.seal(table, column, key, text.encode())

    def open_text(self, table: str, column: str, key: bytes, sealed: object) -> str:
        raw = self.open(table, column, key, sealed)
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise StoreCorruptError(_damaged(table, column, "not UTF-8 text")) from None


def _damaged(table: str, column: str, why: str) -> str:
    return (
        f"a stored {table}.{column} value cannot be read ({why}): the store is damaged, "
        "or keys.json is not this store's"
    )


# -- the key check and the migration helper ------------------------------------

#: meta row holding a sealed constant: a store opened with another storage
#: key is refused at once, not at the first message read
CHECK_META = "at_rest_check"
CHECK_PLAINTEXT = b"smu at rest v1"


def check_value(cipher: RowCipher) -> bytes:
    return cipher.seal("meta", "value", row_key(CHECK_META), CHECK_PLAINTEXT)


def verify_check(cipher: RowCipher, stored: object) -> None:
    """Raise ``StoreCorruptError`` unless ``stored`` is this key's check."""
    try:
        ok = cipher.open("meta", "value", row_key(CHECK_META), stored) == CHECK_PLAINTEXT
    except StoreCorruptError:
        ok = False
    if not ok:
        raise StoreCorruptError(
            "this store's messages are sealed under another storage key: keys.json "
            "does not belong to this events.sqlite"
        )


#: rows sealed per statement batch while migrating (bounded memory)
MIGRATE_BATCH = 500


def seal_clear_rows(
    conn: sqlite3.Connection,
    cipher: RowCipher | None,
    table: str,
    column: str,
    key_columns: tuple[str, ...],
    seal: Callable[[RowCipher, tuple[Any, ...], Any], bytes],
) -> None:
    """Seal every value of ``table.column``, held in the clear before (a
    migration runs once, in one transaction), in rowid order and in
    batches; ``seal`` gets the row's ``key_columns`` and the clear value."""
    keys = ", ".join(key_columns)
    last = 0
    while True:
        rows = conn.execute(
            f"SELECT rowid, {keys}, {column} FROM {table} WHERE rowid > ? "
            f"ORDER BY rowid LIMIT {MIGRATE_BATCH}",
            (last,),
        ).fetchall()
        if not rows:
            return
        for row in rows:
            rowid, parts, value = row[0], tuple(row[1:-1]), row[-1]
            last = rowid
            if cipher is None:
                raise StoreError(
                    f"{table} holds values to encrypt at rest: open the store with "
                    "its storage key (keys.json)"
                )
            conn.execute(
                f"UPDATE {table} SET {column}=? WHERE rowid=?", (seal(cipher, parts, value), rowid)
            )
