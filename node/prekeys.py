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

One-time prekeys (§19.16): the keeper also holds the device's
``PrekeyOffer``, the public batches its own node serves on
``/smu/prekey/1`` (``prekey-offer.bin``), and makes a new batch when fewer
than 16 keys remain to hand out (at most 4 a day).  The secrets are
written before the batch is offered; a served key is written before its
answer is sent.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Protocol

from protocol.core.errors import InvalidInput
from protocol.core.keys import DeviceKeys
from protocol.core.params import NetworkParams
from protocol.messaging.prekey_fetch import (
    OFFER_BATCH,
    Answer,
    FetchRequest,
    PrekeyOffer,
    replenish,
    serve,
)
from protocol.messaging.prekeys import PrekeyStore
from protocol.messaging.ratchet import x25519_public
from protocol.records.device import PREKEY_ID_BOUND, SignedPrekey

ROTATE_MS = 2 * 24 * 3600 * 1000
log = logging.getLogger("smu.prekeys")


class PrekeyFile(Protocol):
    def load_prekeys(self) -> bytes | None: ...

    def save_prekeys(self, raw: bytes) -> None: ...

    def load_prekey_offer(self) -> bytes | None: ...

    def save_prekey_offer(self, raw: bytes) -> None: ...


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
        #: loaded on first use (decoding it needs the network and the account)
        self._offer: PrekeyOffer | None = None

    def offer(
        self, params: NetworkParams, account: bytes, device: bytes, now_ms: int
    ) -> PrekeyOffer:
        if self._offer is None:
            raw = self.file.load_prekey_offer()
            self._offer = PrekeyOffer()
            if raw is not None:
                try:
                    self._offer = PrekeyOffer.decode(params, raw, account, device, now_ms)
                except InvalidInput as exc:
                    # not this device's (or damaged): start afresh; new batches
                    # take ids above every one held, so nothing is served twice
                    log.warning("prekey-offer.bin not used: %s", exc.code)
        return self._offer

    def _keep_offer(self, params: NetworkParams, offer: PrekeyOffer) -> None:
        if offer != self._offer:
            self.file.save_prekey_offer(offer.encode(params))
            self._offer = offer

    def replenish(
        self, params: NetworkParams, keys: DeviceKeys, account: bytes, now_ms: int
    ) -> bool:
        """A new one-time batch if the offer runs low (§19.16); the secrets
        are on disk before the batch can be served."""
        offer = self.offer(params, account, keys.sign_public, now_ms).pruned(now_ms)
        if not offer.needs_batch(now_ms):
            self._keep_offer(params, offer)
            return False
        secrets = [self.random(32) for _ in range(OFFER_BATCH)]
        store, offer = replenish(
            params, keys, account, self.store.pruned(now_ms), offer, secrets, now_ms
        )
        self.file.save_prekeys(store.encode())
        self.store = store
        self._keep_offer(params, offer)
        return True

    def batch_for(
        self, params: NetworkParams, keys: DeviceKeys, account: bytes, now_ms: int
    ) -> bytes:
        """A new batch for a mailbox (its own ids: never one the node or
        another mailbox holds, §19.16); its secrets are on disk first."""
        # ids above every one-time id the store holds (the node's own too)
        store = self.store.pruned(now_ms)
        secrets = [self.random(32) for _ in range(OFFER_BATCH)]
        store, made = replenish(params, keys, account, store, PrekeyOffer(), secrets, now_ms)
        self.file.save_prekeys(store.encode())
        self.store = store
        return made.batches[-1].encode(params)

    def serve(
        self,
        params: NetworkParams,
        keys: DeviceKeys,
        account: bytes,
        request: FetchRequest,
        *,
        mailbox_key: bytes,
        token_key: bytes,
        now_ms: int,
    ) -> Answer:
        """Answer a fetch for this device; a served key and the token that
        paid for it are on disk before the answer is returned."""
        self.replenish(params, keys, account, now_ms)
        offer = self.offer(params, account, keys.sign_public, now_ms)
        answer, offer = serve(
            params, offer, request, mailbox_key=mailbox_key, token_key=token_key, now_ms=now_ms
        )
        self._keep_offer(params, offer)
        return answer

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
