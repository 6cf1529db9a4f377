"""Wrap scheme 2 in simnet (PROTOCOL.md §19.13): each simulated device's
session book and prekey store, kept as values, and which devices advertise
the scheme.

A device advertises ``WRAP_SCHEME_2`` with one signed prekey, as its record
would (§16.5): whether it does is decided by a hash of its key against the
scenario's ``scheme2_share``, and its prekey secret is derived from its
key, so nothing here draws from the scenario's random stream and every run
with the same seed is the same run.  A sender seals with scheme 2 to the
devices that advertise it (sealed to their signed prekey, set up from it
without a one-time prekey, §19.4) and with scheme 1 to the others; the
book ``seal`` returns is kept at once (a node commits it with the message).
A receiver opens on its book and store and keeps the new ones only when
the whole envelope opened (§19.13: nothing advances on a refusal).  The 32
fresh bytes of each opening are derived from the envelope and the device.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from protocol.core import crypto
from protocol.core.keys import DeviceKeys
from protocol.messaging.envelope import OpenedEnvelope
from protocol.messaging.prekeys import PrekeyStore
from protocol.messaging.ratchet import x25519_public
from protocol.messaging.scheme2 import Reach2, ReceiveSessions, SendSessions
from protocol.messaging.sessions import SessionBook

#: the one signed prekey each simulated device publishes
SPK_ID = 1
D_SIM_SPK = b"simnet/signed-prekey/v1\x00"
D_SIM_FRESH = b"simnet/open-fresh/v1\x00"
D_SIM_SHARE = b"simnet/scheme2-share/v1\x00"


@dataclass(slots=True)
class DeviceSessions:
    """One device's side of wrap scheme 2: its published prekey, its store
    (the prekey's secret) and its sessions with other devices."""

    spk: bytes
    store: PrekeyStore
    book: SessionBook = field(default_factory=SessionBook)


class SessionWorld:
    """Every simulated device's sessions, created on first use."""

    def __init__(self, share: float, epoch_ms: int) -> None:
        self.share = share
        self.epoch_ms = epoch_ms
        self._devices: dict[bytes, DeviceSessions] = {}
        #: the scheme of every wrap sealed, and of every wrap opened
        self.sealed: dict[int, int] = {}
        self.opened: dict[int, int] = {}

    def advertises(self, device: bytes) -> bool:
        """Whether this device's record would advertise scheme 2."""
        if self.share >= 1.0:
            return True
        draw = int.from_bytes(crypto.hash32(D_SIM_SHARE, device)[:8], "big")
        return draw < self.share * 2**64

    def of(self, keys: DeviceKeys) -> DeviceSessions:
        me = keys.sign_public
        got = self._devices.get(me)
        if got is None:
            secret = crypto.hash32(D_SIM_SPK, keys.enc_secret)
            store = PrekeyStore().with_signed(SPK_ID, secret, self.epoch_ms)
            got = DeviceSessions(x25519_public(secret), store)
            self._devices[me] = got
        return got

    def for_send(self, sender: DeviceKeys, targets: list[DeviceKeys]) -> SendSessions:
        """The sender's book and how to reach each target that advertises
        scheme 2 (the others get scheme 1)."""
        reach = {
            t.sign_public: Reach2(SPK_ID, self.of(t).spk, True)
            for t in targets
            if self.advertises(t.sign_public)
        }
        mine = self.of(sender)
        return SendSessions(mine.book, reach, mine.spk)

    def sent(self, sender: DeviceKeys, book: SessionBook | None, schemes: list[int]) -> None:
        if book is not None:
            self.of(sender).book = book
        for s in schemes:
            self.sealed[s] = self.sealed.get(s, 0) + 1

    def for_receive(self, target: DeviceKeys, raw: bytes, now_ms: int) -> ReceiveSessions:
        mine = self.of(target)
        book = mine.book
        fresh = crypto.hash32(D_SIM_FRESH, raw + target.sign_public)
        return ReceiveSessions(lambda sid, who: book, mine.store, now_ms, fresh)

    def received(self, target: DeviceKeys, opened: OpenedEnvelope) -> None:
        """Keep what an envelope that opened changed (§19.13)."""
        mine = self.of(target)
        if opened.book is not None:
            mine.book = opened.book
        if opened.prekeys is not None:
            mine.store = opened.prekeys
        self.opened[opened.scheme] = self.opened.get(opened.scheme, 0) + 1

    def report(self) -> dict[str, object]:
        return {
            "scheme2_share": self.share,
            "wraps_sealed_by_scheme": {str(k): v for k, v in sorted(self.sealed.items())},
            "wraps_opened_by_scheme": {str(k): v for k, v in sorted(self.opened.items())},
            "sessions": sum(len(d.book.entries) for d in self._devices.values()),
        }
