"""Push notices from a mailbox to its recipients (PROTOCOL.md §15.12.1).

When this node's mailbox accepts a deposit for a device, and a node that
device's record names is linked with us, the mailbox tells it at once on
the per-link channel (item kind ``MAILBOX_NOTICE``, 49, of the mailbox
range 48-63; content kind 48 is TOKENS); a device that links with us
later is told when its channel opens.  The recipient acts on a notice only
if one of its grants names the peer it came from
(``MailboxClient.notified``), so a notice from anyone else costs it
nothing; a notice carries no content, only the device it is for.
Notices are hints: a lost one only waits for the poll.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from protocol.core.canonical import decode_flat, encode_flat
from protocol.core.errors import InvalidInput, SchemaError
from protocol.messaging.content import MAILBOX_NOTICE
from protocol.records.device import RecordBook

from .channels import ChannelService

log = logging.getLogger("smu.push")

NOTICE_VERSION = 1
MAX_NOTICE_BYTES = 64
#: devices with items waiting that we remember to tell when they link
MAX_WAITING = 4096


def notice(device: bytes) -> bytes:
    return encode_flat([NOTICE_VERSION, device])


def decode_notice(raw: bytes) -> bytes:
    value = decode_flat(raw, MAX_NOTICE_BYTES)
    if (
        type(value) is not list
        or len(value) != 2
        or value[0] != NOTICE_VERSION
        or type(value[1]) is not bytes
        or len(value[1]) != 32
    ):
        raise SchemaError("a mailbox notice is [1, device bin(32)]")
    return value[1]


class PushService:
    def __init__(
        self,
        channels: ChannelService,
        records: Callable[[], RecordBook],
        account_of: Callable[[bytes], bytes | None],
        held: Callable[[bytes], int],
        own_device: bytes,
        notified: Callable[[str], None],
    ) -> None:
        self.channels = channels
        self.records = records
        #: the account a device's grant here names (None: no grant)
        self.account_of = account_of
        #: items this node's mailbox holds for a device
        self.held = held
        self.own_device = own_device
        self.notified = notified
        self._waiting: dict[bytes, None] = {}
        self.sent = 0
        self.received = 0
        self.ignored = 0
        channels.handle(MAILBOX_NOTICE, self._on_notice)
        channels.on_open.append(self._channel_opened)

    def deposited(self, device: bytes) -> None:
        """Our mailbox accepted a deposit for ``device``."""
        self._waiting.pop(device, None)
        self._waiting[device] = None
        while len(self._waiting) > MAX_WAITING:
            del self._waiting[next(iter(self._waiting))]
        for peer in self._peers_of(device):
            self._offer(peer, device)

    def _peers_of(self, device: bytes) -> tuple[str, ...]:
        account = self.account_of(device)
        if account is None:
            return ()
        record = self.records().get(account, device)
        return record.peer_ids if record is not None else ()

    def _offer(self, peer: str, device: bytes) -> None:
        if self.channels.offer(peer, MAILBOX_NOTICE, notice(device)) is not None:
            self.sent += 1

    def _channel_opened(self, peer: str) -> None:
        for device in list(self._waiting):
            if not self.held(device):
                del self._waiting[device]
            elif peer in self._peers_of(device):
                self._offer(peer, device)

    def _on_notice(self, peer: str, payload: bytes) -> None:
        try:
            device = decode_notice(payload)
        except InvalidInput as exc:
            log.debug("bad mailbox notice from %s: %s", peer, exc)
            self.ignored += 1
            return
        if device != self.own_device:
            self.ignored += 1
            return
        self.received += 1
        self.notified(peer)  # acted on only if a grant of ours names the peer

    def status(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "received": self.received,
            "ignored": self.ignored,
            "waiting": len(self._waiting),
        }
