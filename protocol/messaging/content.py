"""Message contents and replay state (PROTOCOL.md §15.4, §15.6).

What travels *inside* an envelope (``protocol.messaging.envelope``) is one content
value, tagged by its kind:

* ``Text`` (kind 1) — a UTF-8 message;
* ``Receipt`` (kind 2) — "these message ids were delivered / read", signed
  and encrypted like any message and sent to the same devices;
* ``HistoryBundle`` (kind 3) — a batch of earlier messages, sent by the
  device that approved a new device of the *same* account, wrapped for the
  new device only;
* ``TokenBatch`` (kind 48, ``protocol.messaging.tokens``) — one-time
  mailbox deposit tokens the sending device hands a contact (§15.16);
* ``UnknownContent`` — any other kind: authenticated and replay-checked
  like the rest, and reported with its ``ContentRange`` (DESIGN §10: 1-15
  messages, receipts and history; 16-31 session control; 32-47 account
  sync; 48-63 mailbox tokens; 64 and up groups and attachments), which says
  what a receiver does with a kind it does not know (§15.4).

``ReplayGuard`` is a receiving device's replay state: per (sender account,
sender device, recipient account) the highest counter seen and a bitmap of
the ``window`` counters below it, so envelopes that arrive out of order
through mailboxes are still accepted once each (§15.6).  It is a plain
value the node persists (``encode``/``decode``) in the same transaction as
the messages it accepted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from itertools import pairwise

from protocol.core.canonical import decode_flat, encode_flat
from protocol.core.errors import InvalidInput, SchemaError, UsageError
from protocol.core.fields import fixed_bin as _bin
from protocol.core.fields import uint as _uint
from protocol.messaging.tokens import TokenBatch, decode_batch

MESSAGE_ID_BYTES = 16
MAX_TEXT_BYTES = 64 * 1024
MAX_RECEIPT_IDS = 512
MAX_HISTORY_ENTRIES = 1000
#: largest encoded content (a history bundle); an envelope adds < 8 KiB
MAX_CONTENT_BYTES = 960 * 1024
#: default replay window (counters below the highest that may still arrive)
REPLAY_WINDOW = 4096


class ContentKind(IntEnum):
    TEXT = 1
    RECEIPT = 2
    HISTORY = 3
    #: one-time mailbox tokens (§15.16); the first kind of range 48-63
    TOKENS = 48
    # 4..15: later messages, receipts and history; 16..31 session control
    # (§15.9); 32..47 account sync; 48..63 mailbox tokens; 64.. groups and
    # attachments.  ``content_range`` tells them apart.


class ContentRange(Enum):
    """What a content kind is for, by its range (DESIGN §10, PROTOCOL.md
    §15.4).  Fixed for every version, so that a receiver knows what to do
    with a kind it cannot decode."""

    #: 1-15: messages, receipts and history, shown to the user
    MESSAGES = "messages"
    #: 16-31: session control of the ratchet layer (§15.9)
    SESSION = "session"
    #: 32-47: sync among the devices of one account, from that account only
    ACCOUNT_SYNC = "account_sync"
    #: 48-63: one-time mailbox deposit tokens handed to contacts
    MAILBOX_TOKENS = "mailbox_tokens"
    #: 64 and up: reserved for groups and attachments
    RESERVED = "reserved"


#: the first kind of each range after the first, ascending
_RANGE_STARTS = (
    (64, ContentRange.RESERVED),
    (48, ContentRange.MAILBOX_TOKENS),
    (32, ContentRange.ACCOUNT_SYNC),
    (16, ContentRange.SESSION),
    (1, ContentRange.MESSAGES),
)


def content_range(kind: int) -> ContentRange:
    """The range of a kind; 0 is no kind (``SchemaError``): every range
    starts at 1 or above, and 0 was never sent."""
    if isinstance(kind, bool) or not isinstance(kind, int) or kind < 1:  # ContentKind is an int
        raise SchemaError(f"content kind {kind!r} is not 1 or more")
    return next(r for start, r in _RANGE_STARTS if kind >= start)


class ReceiptStatus(IntEnum):
    DELIVERED = 1
    READ = 2


class ReplayError(InvalidInput):
    """The envelope's counter was already accepted, or is older than the window."""

    code = "replay"


@dataclass(frozen=True, slots=True)
class Text:
    text: str

    kind = ContentKind.TEXT

    def to_wire(self) -> list[object]:
        return [self.text]


@dataclass(frozen=True, slots=True)
class Receipt:
    status: ReceiptStatus
    #: ids of the messages it acknowledges, ascending and unique
    message_ids: tuple[bytes, ...]

    kind = ContentKind.RECEIPT

    def to_wire(self) -> list[object]:
        return [int(self.status), list(self.message_ids)]


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One earlier message as the approving device stored it (already verified)."""

    #: the other account of the conversation
    peer_account: bytes
    message_id: bytes
    sender_account: bytes
    sender_device: bytes
    timestamp: int
    content: Text | Receipt

    def to_wire(self) -> list[object]:
        return [
            self.peer_account,
            self.message_id,
            self.sender_account,
            self.sender_device,
            self.timestamp,
            int(self.content.kind),
            self.content.to_wire(),
        ]


@dataclass(frozen=True, slots=True)
class HistoryBundle:
    #: this bundle is part ``part`` (0-based) of ``parts``
    part: int
    parts: int
    entries: tuple[HistoryEntry, ...]

    kind = ContentKind.HISTORY

    def to_wire(self) -> list[object]:
        return [self.part, self.parts, [e.to_wire() for e in self.entries]]


@dataclass(frozen=True, slots=True)
class UnknownContent:
    """A kind this version does not know, kept undecoded.  Its ``range``
    says what to do with it (§15.4): show "needs upgrade" for messages,
    groups and attachments; ignore session control and mailbox tokens;
    account sync arrives only from one's own account."""

    kind: int
    body: bytes

    @property
    def range(self) -> ContentRange:
        return content_range(self.kind)


Content = Text | Receipt | HistoryBundle | TokenBatch | UnknownContent


def encode_content(content: Content) -> tuple[int, bytes]:
    """(kind, body bytes); raises ``UsageError`` on a value that cannot be sent."""
    if isinstance(content, UnknownContent):
        raise UsageError("cannot send content of an unknown kind")
    body = encode_flat(content.to_wire())
    try:
        decoded = decode_content(int(content.kind), body)
    except InvalidInput as exc:
        raise UsageError(f"content would be refused by receivers: {exc}") from exc
    assert decoded == content
    return int(content.kind), body


def _text(fields: object) -> Text:
    if type(fields) is not list or len(fields) != 1 or type(fields[0]) is not str:
        raise SchemaError("a text body is [str]")
    if len(fields[0].encode()) > MAX_TEXT_BYTES:
        raise SchemaError(f"a text is at most {MAX_TEXT_BYTES} bytes")
    return Text(fields[0])


def _receipt(fields: object) -> Receipt:
    if type(fields) is not list or len(fields) != 2:
        raise SchemaError("a receipt body is [status, [ids]]")
    status, ids = fields
    try:
        st = ReceiptStatus(_uint(status, "receipt status"))
    except ValueError as exc:
        raise SchemaError(f"unknown receipt status {status}") from exc
    if type(ids) is not list or not 0 < len(ids) <= MAX_RECEIPT_IDS:
        raise SchemaError(f"a receipt names 1 to {MAX_RECEIPT_IDS} message ids")
    out = tuple(_bin(i, MESSAGE_ID_BYTES, "message id") for i in ids)
    if any(a >= b for a, b in pairwise(out)):
        raise SchemaError("receipt ids must be ascending and unique")
    return Receipt(st, out)


def _history(fields: object) -> HistoryBundle:
    if type(fields) is not list or len(fields) != 3:
        raise SchemaError("a history body is [part, parts, [entries]]")
    part, parts, entries = fields
    if not _uint(part, "part") < _uint(parts, "parts"):
        raise SchemaError("history part out of range")
    if type(entries) is not list or len(entries) > MAX_HISTORY_ENTRIES:
        raise SchemaError(f"a history bundle holds at most {MAX_HISTORY_ENTRIES} entries")
    out = []
    for e in entries:
        if type(e) is not list or len(e) != 7:
            raise SchemaError("a history entry has 7 fields")
        peer, mid, sacc, sdev, ts, kind, body = e
        content: Text | Receipt
        if kind == ContentKind.TEXT and type(kind) is int:
            content = _text(body)
        elif kind == ContentKind.RECEIPT and type(kind) is int:
            content = _receipt(body)
        else:
            raise SchemaError("a history entry holds a text or a receipt")
        out.append(
            HistoryEntry(
                _bin(peer, 32, "peer account"),
                _bin(mid, MESSAGE_ID_BYTES, "message id"),
                _bin(sacc, 32, "sender account"),
                _bin(sdev, 32, "sender device"),
                _uint(ts, "timestamp"),
                content,
            )
        )
    return HistoryBundle(part, parts, tuple(out))


def decode_content(kind: int, body: bytes) -> Content:
    """Decode an authenticated body; an unknown kind is a value, not an error."""
    decoders: dict[int, Callable[[object], Content]] = {
        ContentKind.TEXT: _text,
        ContentKind.RECEIPT: _receipt,
        ContentKind.HISTORY: _history,
        ContentKind.TOKENS: decode_batch,
    }
    if kind not in decoders:
        content_range(kind)  # 0 is no kind at all
        return UnknownContent(kind, body)
    # Bodies hold no maps, so the C-level canonical check is enough (§2.2).
    return decoders[ContentKind(kind)](decode_flat(body, MAX_CONTENT_BYTES))


# --------------------------------------------------------------------------
# Replay state (§15.6)

#: (sender account, sender device, recipient account)
ReplayKey = tuple[bytes, bytes, bytes]


@dataclass(slots=True)
class _Window:
    highest: int = 0
    #: bit i set: counter ``highest - 1 - i`` was accepted
    bits: int = 0


@dataclass(slots=True)
class ReplayGuard:
    """Per-stream sliding windows of accepted counters (§15.6).

    ``check`` raises ``ReplayError`` for a counter already accepted or older
    than ``window`` below the highest; ``accept`` records it.  The envelope
    opener calls ``check`` before and ``accept`` after all other checks, so
    a rejected envelope leaves no trace.
    """

    window: int = REPLAY_WINDOW
    _streams: dict[ReplayKey, _Window] = field(default_factory=dict)

    @property
    def stream_count(self) -> int:
        # Not __len__: an empty guard must not be falsy (``guard or new``).
        return len(self._streams)

    def check(self, key: ReplayKey, counter: int) -> None:
        if counter < 1:
            raise ReplayError("counters start at 1")
        w = self._streams.get(key)
        if w is None or counter > w.highest:
            return
        if counter == w.highest:
            raise ReplayError(f"counter {counter} was already accepted")
        age = w.highest - counter  # >= 1
        if age > self.window:
            raise ReplayError(f"counter {counter} is older than the replay window")
        if (w.bits >> (age - 1)) & 1:
            raise ReplayError(f"counter {counter} was already accepted")

    def accept(self, key: ReplayKey, counter: int) -> None:
        self.check(key, counter)
        w = self._streams.setdefault(key, _Window())
        mask = (1 << self.window) - 1
        if counter > w.highest:
            shift = counter - w.highest
            if shift > self.window:
                # Everything slides out.  Never shift by a sender-chosen
                # amount: ``bits << 2**40`` would allocate a terabit (§15.6).
                w.bits = 0
            else:
                # the old highest becomes bit shift-1 (if it was a real counter)
                old = 1 if w.highest else 0
                w.bits = ((w.bits << shift) | (old << (shift - 1))) & mask
            w.highest = counter
        else:
            w.bits |= 1 << (w.highest - counter - 1)

    def highest(self, key: ReplayKey) -> int:
        w = self._streams.get(key)
        return w.highest if w else 0

    def encode(self) -> bytes:
        """Canonical bytes for the node to persist."""
        rows = [
            [k[0], k[1], k[2], w.highest, w.bits.to_bytes((self.window + 7) // 8, "big")]
            for k, w in sorted(self._streams.items())
        ]
        return encode_flat([self.window, rows])

    @classmethod
    def decode(cls, raw: bytes, max_size: int = 64 * 1024 * 1024) -> ReplayGuard:
        value = decode_flat(raw, max_size)
        if type(value) is not list or len(value) != 2 or type(value[1]) is not list:
            raise SchemaError("replay state is [window, [rows]]")
        window = _uint(value[0], "window")
        if not 0 < window <= 1 << 20:
            raise SchemaError("replay window out of range")
        guard = cls(window=window)
        nbytes = (window + 7) // 8
        for row in value[1]:
            if type(row) is not list or len(row) != 5:
                raise SchemaError("a replay row has 5 fields")
            key = (_bin(row[0], 32, "account"), _bin(row[1], 32, "device"), _bin(row[2], 32, "acc"))
            bits = int.from_bytes(_bin(row[4], nbytes, "bitmap"), "big")
            if bits >> window:
                raise SchemaError("replay bitmap wider than its window")
            guard._streams[key] = _Window(_uint(row[3], "highest"), bits)
        return guard
