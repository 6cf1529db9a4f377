"""Wrap scheme 2 on a node (PROTOCOL.md §15.9, §19.11, §19.13): which
devices a message goes to with scheme 2, the sessions it reads and the
rows it writes, and sessions ending with the log.

* Sending: a device whose current record advertises ``WRAP_SCHEME_2`` with
  a signed prekey gets scheme 2, sealed to that prekey; a device seen with
  it before (sticky, ``scheme2_devices``) gets scheme 2 too, sealed to its
  encryption key and set up, if need be, from the last signed prekey seen.
  Only the others get scheme 1.  The advanced sessions are written in the
  transaction that stores the message and its outbox rows (persist before
  forward).
* Receiving: the opener reads only the sessions of the wrap's peer; the
  new book, the prekey store and the sticky mark are committed with the
  message, before the answer.
* The log: when an account's events change, sessions with its devices
  that are no longer ACTIVE, or whose encryption key was replaced, end.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from protocol.log.state import AccountState, DeviceStatus
from protocol.messaging.envelope import OpenedEnvelope
from protocol.messaging.prekeys import OneTimePrekey
from protocol.messaging.ratchet import FULL_LIMITS, STRANGER_LIMITS, RatchetLimits
from protocol.messaging.scheme2 import (
    WRAP_SCHEME_2,
    Reach2,
    ReceiveSessions,
    SendSessions,
    party_of,
)
from protocol.messaging.sessions import SessionBook
from protocol.messaging.x3dh import Party
from protocol.records.device import Capability, SignedDeviceRecord, SignedPrekey

from ..context import NodeContext
from ..prekeys import PrekeyKeeper
from ..storage.db import Statement
from ..storage.sessions import SessionStore

#: fetched one-time prekeys kept at once (each waits for the seal after it)
MAX_FETCHED = 1024


def _pair(prekey: SignedPrekey) -> tuple[int, bytes]:
    return prekey.prekey_id, prekey.public


@dataclass
class MemoryPrekeyFile:
    """A prekey file in memory (a node without a data directory: tests)."""

    raw: bytes | None = None
    offer: bytes | None = None

    def load_prekeys(self) -> bytes | None:
        return self.raw

    def save_prekeys(self, raw: bytes) -> None:
        self.raw = raw

    def load_prekey_offer(self) -> bytes | None:
        return self.offer

    def save_prekey_offer(self, raw: bytes) -> None:
        self.offer = raw


@dataclass
class Outgoing:
    sessions: SendSessions
    before: SessionBook
    store: SessionStore
    #: sticky marks to write with the message
    rows: list[Statement] = field(default_factory=list)

    def statements(self, after: SessionBook | None) -> list[Statement]:
        if after is None:
            return list(self.rows)
        return [*self.rows, *self.store.statements(self.before, after)]


class SessionService:
    def __init__(
        self,
        ctx: NodeContext,
        store: SessionStore,
        prekeys: PrekeyKeeper,
        clock_ms: Callable[[], int],
        is_contact: Callable[[bytes], bool] = lambda account: False,
    ) -> None:
        self.ctx = ctx
        self.store = store
        #: the contact set (DESIGN §10): a stranger's sessions get the lower
        #: skip bounds (§19.7)
        self.is_contact = is_contact
        self.prekeys = prekeys
        self.now_ms = clock_ms
        #: one-time prekeys fetched for the next set-up with a device
        #: (§19.16): used by the next seal, or dropped; at most one a device
        self._fetched: dict[tuple[bytes, bytes], OneTimePrekey] = {}

    def has_session(self, peer: Party) -> bool:
        # a query, not the book: every text's send asks (prekey_client), and
        # reading the book would open every session state of the device
        return self.store.active_ik(peer.account, peer.device) == peer.ik

    def fetched_for(self, account: bytes, device: bytes, opk: OneTimePrekey) -> None:
        if len(self._fetched) >= MAX_FETCHED:
            self._fetched.clear()  # stale ones: a fresh fetch precedes every send
        self._fetched[(account, device)] = opk

    def for_send(self, states: Sequence[AccountState]) -> Outgoing:
        me = self.ctx.device.sign_public
        reach: dict[bytes, Reach2] = {}
        rows: list[Statement] = []
        peers: list[tuple[bytes, bytes]] = []
        for state in states:
            for d in state.devices:
                if d.status is not DeviceStatus.ACTIVE or d.sign_public == me:
                    continue
                key = (state.account_id, d.sign_public)
                record = self.ctx.records.get(*key)
                seen, spk_id, spk = self.store.scheme2(*key)
                prekey = None if record is None else record.signed_prekey
                if record is not None and record.has(Capability.WRAP_SCHEME_2) and prekey:
                    # the one-time prekey fetched for it, if any (§19.4's full form)
                    opk = self._fetched.pop(key, None)
                    reach[d.sign_public] = Reach2(prekey.prekey_id, prekey.public, True, opk)
                    if (spk_id, spk) != (prekey.prekey_id, prekey.public):
                        rows.append(
                            SessionStore.seen_statement(*key, prekey.prekey_id, prekey.public)
                        )
                elif seen:  # sticky: never scheme 1 again (§15.9)
                    reach[d.sign_public] = Reach2(spk_id, spk, False)
                else:
                    continue
                peers.append(key)
        before = self.store.book_of(peers)
        current = {(s.account_id, d.sign_public): d.enc_public for s in states for d in s.devices}
        # a session under a replaced key ends now (§19.11)
        book = before.keep_only(lambda p: current.get((p.account, p.device)) == p.ik)
        return Outgoing(
            SendSessions(book, reach, self.prekeys.published()), before, self.store, rows
        )

    def record_seen(self, record: SignedDeviceRecord) -> None:
        """Remember a device that advertises scheme 2, with its signed prekey
        (sticky from now on, §15.9); a write only when that is news."""
        prekey = record.signed_prekey
        if prekey is None or not record.has(Capability.WRAP_SCHEME_2):
            return
        _, spk_id, spk = self.store.scheme2(record.account, record.device)
        if (spk_id, spk) != (prekey.prekey_id, prekey.public):
            self.store.db.write(
                [SessionStore.seen_statement(record.account, record.device, *_pair(prekey))]
            )

    def for_receive(self) -> tuple[ReceiveSessions, list[SessionBook]]:
        """The opener's inputs, and where the book it read is kept (to
        write back only what changed)."""
        read: list[SessionBook] = []

        def book_for(sid: bytes, who: tuple[bytes, bytes] | None) -> SessionBook:
            book = self.store.book_for(sid, who)
            read.append(book)
            return book

        own = self.ctx.account()

        def limits_for(account: bytes) -> RatchetLimits:
            known = account == own or self.is_contact(account)
            return FULL_LIMITS if known else STRANGER_LIMITS

        inputs = ReceiveSessions(
            book_for, self.prekeys.store, self.now_ms(), os.urandom(32), limits_for
        )
        return inputs, read

    def received(self, opened: OpenedEnvelope, read: list[SessionBook]) -> list[Statement]:
        """What a scheme-2 envelope commits with its message; the prekey
        store is on disk before this returns (and so before the answer)."""
        if opened.scheme != WRAP_SCHEME_2 or opened.book is None or not read:
            return []
        if opened.prekeys is not None:
            self.prekeys.commit(opened.prekeys)
        return [
            *self.store.statements(read[-1], opened.book),
            # it speaks scheme 2: sticky from now on (§15.9)
            SessionStore.seen_statement(opened.sender_account, opened.sender_device),
        ]

    def end_with(self, account: bytes, device: bytes) -> None:
        """End every session with one device (it refused them as unknown)."""
        self.store.db.write([SessionStore.end_device_statement(account, device)])

    def end_strangers(self, is_contact: Callable[[bytes], bool]) -> None:
        """End the sessions with accounts that are not contacts (nor this
        one) and from which no message is held: a request that expired, or
        a blocked account's purged ones."""
        own = self.ctx.account()  # None before this device has one: nobody is own
        rows = self.store.stranger_statements(lambda a: a == own or is_contact(a))
        if rows:
            self.store.db.write(rows)

    def log_changed(self, account: bytes) -> None:
        """End the sessions of ``account``'s devices that the log no longer
        shows ACTIVE under the same key (S6: a revoked device's end at once)."""
        ledger = self.ctx.ledger
        states: list[AccountState | None] = []

        def keep(peer: Party) -> bool:
            # the state only for an account we hold sessions with: this runs
            # for every event a catch-up delivers (bench/catchup.py)
            if not states:
                states.append(ledger.state(account) if account in ledger.accounts else None)
            return party_of(states[0], peer.device) == peer

        rows = self.store.end_sessions(account, keep)
        if rows:
            self.store.db.write(rows)
