"""The device's signed prekeys on a node (PROTOCOL.md §19.3, §16.5).

The ``PrekeyStore`` lives in ``prekeys.json`` beside ``keys.json``, with
the same protection (``DataDir.save_prekeys``).  The current signed prekey
goes into every record the node publishes, with ``WRAP_SCHEME_2``; it is
replaced every ``ROTATE_MS`` (2 days, Signal's interval, DESIGN §8): the
sealed layer and a set-up without a one-time prekey are forward secret
once their signed prekey is gone, so the shorter the rotation, the
shorter the window; the node republishes its record every 6 hours anyway,
so a rotation costs one key-file write and no extra traffic.  Superseded
prekeys stay for ``SIGNED_PREKEY_GRACE_MS`` (§19.3), as long as a sender
may hold a record naming one, then are pruned.

A prekey's id is the second it was made (unix time; at least one more than
the previous id): ids are opaque to others and never reused (§19.3), and
the id tells the keeper the current prekey's age with nothing else stored.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Protocol

from protocol.messaging.prekeys import PrekeyStore
from protocol.messaging.ratchet import x25519_public
from protocol.records.device import PREKEY_ID_BOUND, SignedPrekey

ROTATE_MS = 2 * 24 * 3600 * 1000


class PrekeyFile(Protocol):
    def load_prekeys(self) -> bytes | None: ...

    def save_prekeys(self, raw: bytes) -> None: ...


class PrekeyKeeper:
    def __init__(
        self,
        file: PrekeyFile,
        random: Callable[[int], bytes] = os.urandom,
        rotate_ms: int = ROTATE_MS,
    ) -> None:
        self.file = file
        self.random = random
        self.rotate_ms = rotate_ms
        self._public: tuple[int, bytes] | None = None
        raw = file.load_prekeys()
        self.store = PrekeyStore() if raw is None else PrekeyStore.decode(raw)

    def _current_id(self) -> int | None:
        current = [i for i, (_, until) in self.store.signed.items() if until == 0]
        return max(current) if current else None

    def current(self, now_ms: int) -> SignedPrekey:
        """The signed prekey to publish, made or rotated first when due
        (written to disk before any record can name it)."""
        cur = self._current_id()
        if cur is None or now_ms - cur * 1000 >= self.rotate_ms:
            new_id = max(now_ms // 1000, max(self.store.signed, default=0) + 1)
            if new_id >= PREKEY_ID_BOUND:
                raise OverflowError("signed prekey ids are exhausted")
            store = self.store.pruned(now_ms).with_signed(new_id, self.random(32), now_ms)
            self.file.save_prekeys(store.encode())
            self.store = store
            cur = new_id
        return SignedPrekey(cur, x25519_public(self.store.signed[cur][0]))

    def published(self) -> bytes | None:
        """The current signed prekey's public key, without rotating (every
        seal to the own account asks: computed once per prekey)."""
        cur = self._current_id()
        if cur is None:
            return None
        if self._public is None or self._public[0] != cur:
            self._public = (cur, x25519_public(self.store.signed[cur][0]))
        return self._public[1]

    def commit(self, store: PrekeyStore) -> None:
        """Keep a store an opened message returned (a spent one-time
        prekey): on disk before the message is acknowledged (§19.8)."""
        if store != self.store:
            self.file.save_prekeys(store.encode())
            self.store = store
