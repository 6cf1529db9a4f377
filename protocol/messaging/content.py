"""Message contents and replay state (PROTOCOL.md §15.4, §15.6).

What travels *inside* an envelope (``protocol.messaging.envelope``) is one content
value, tagged by its kind:

* ``Text`` (kind 1) — a UTF-8 message;
* ``Receipt`` (kind 2) — "these message ids were delivered / read", signed
  and encrypted like any message and sent to the same devices;
* ``HistoryBundle`` (kind 4; kind 3 is its older form, decoded only) — a
  batch of earlier messages, sent by the device that approved a new device
  of the *same* account, wrapped for the new device only; each entry may
  carry a ``HistoryProof`` that lets the new device check who wrote it
  (``protocol.messaging.history``);
* ``SessionReset`` (kind 16, ``protocol.messaging.resets``) — the sessions
  a device could not open, so that their sender sets up afresh (§19.15);
* ``SyncEdits`` (kind 32, ``protocol.messaging.sync``) — account-wide
  state among the devices of one account;
* ``SentCopy`` (kind 33) — a copy of a text the sending device sent to
  another account, for its own account's other devices (§15.22);
* ``TokenBatch`` (kind 48, ``protocol.messaging.tokens``) — one-time
  mailbox deposit tokens the sending device hands a contact (§15.16);
* ``UnknownContent`` — any other kind: authenticated and replay-checked
  like the rest, and reported with its ``ContentRange`` (DESIGN §10: 1-15
  messages, receipts and history; 16-31 session control; 32-47 account
  sync; 48-63 mailbox tokens; 64 and up groups and attachments), which says
  what a receiver does with a kind it does not know (§15.4).

The per-link channel's item kinds (§17.3) come from the same numbers:
``MAILBOX_NOTICE`` (49) is a mailbox's push notice (§15.12.1), never a
content.

Replay state (§15.6) is kept per stream, (sender account, sender device,
recipient account): a ``ReplayWindow`` holds the highest counter seen and a
bitmap of the ``window`` counters below it, so envelopes that arrive out of
order through mailboxes are still accepted once each.  ``ReplayGuard``
keeps a bounded number of windows in memory (simnet, tests);
``PendingReplay`` reads one window per envelope from a store and collects
the changed window, which a node writes as one row, in place, in the
transaction that stores the message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from itertools import pairwise
from typing import Protocol

from protocol.core.canonical import decode_flat, encode_flat
from protocol.core.errors import InvalidInput, SchemaError, UsageError
from protocol.core.fields import fixed_bin as _bin
from protocol.core.fields import uint as _uint
from protocol.messaging.resets import SessionReset, decode_reset
from protocol.messaging.sync import SyncEdits, decode_sync_edits
from protocol.messaging.tokens import TokenBatch, decode_batch

MESSAGE_ID_BYTES = 16
MAX_TEXT_BYTES = 64 * 1024
MAX_RECEIPT_IDS = 512
MAX_HISTORY_ENTRIES = 1000
#: heads per view in a history proof: the envelope's ``MAX_VIEW_HEADS`` (§15.2)
MAX_PROOF_VIEW_HEADS = 32
SIGNATURE_BYTES = 64
#: largest encoded content (a history bundle); an envelope adds < 8 KiB
MAX_CONTENT_BYTES = 960 * 1024
#: default replay window (counters below the highest that may still arrive)
REPLAY_WINDOW = 4096


class ContentKind(IntEnum):
    TEXT = 1
    RECEIPT = 2
    #: history without proofs (7-field entries): decoded, never sent (§15.4)
    HISTORY_V1 = 3
    #: history whose entries may carry proofs of who wrote them (§15.4)
    HISTORY = 4
    #: "I do not hold these sessions with you" (§19.15); the first kind of
    #: range 16-31
    SESSION_RESET = 16
    #: account-wide state (§15.19); the first kind of range 32-47
    SYNC_EDITS = 32
    #: a copy of a message sent to another account, for the sender's own
    #: other devices (§15.22)
    SENT_COPY = 33
    #: one-time mailbox tokens (§15.16); the first kind of range 48-63
    TOKENS = 48
    # 5..13: later messages, receipts and history (14 and 15 are channel
    # items); 16..31 session control (§15.9); 32..47 account sync; 48..63
    # mailbox tokens; 64.. groups and attachments.  ``content_range`` tells
    # them apart.


#: Kinds of the per-link channel (§17.3) share this number space (DESIGN
#: §10), so none of them may ever be a content kind.  49, in the mailbox
#: range: a mailbox's push notice (§15.12.1), an item of the channel and
#: never sealed in an envelope.
MAILBOX_NOTICE = 49
#: 14 and 15, in the messages range: an envelope delivered on the channel
#: and the receiver's answer to it (§15.14.1, ``channel_delivery.py``)
DELIVERY_ITEM = 14
DELIVERY_ANSWER_ITEM = 15
CHANNEL_KINDS = frozenset({MAILBOX_NOTICE, DELIVERY_ITEM, DELIVERY_ANSWER_ITEM})


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


#: one view of an envelope's inner: (head count, the lowest heads, ascending)
ProofView = tuple[int, tuple[bytes, ...]]


@dataclass(frozen=True, slots=True)
class HistoryProof:
    """The parts of an envelope's signed message (§15.3 step 6) that a
    history entry's claims do not already give (§15.4 *History proofs*).

    With the entry's sender account, sender device, timestamp, kind and body
    they rebuild the envelope's inner exactly; with ``header_hash`` that is
    the signed message, so ``signature`` checks under the sender device's key
    without the header or its wraps."""

    #: H(D_ENV_HEADER, header_raw) of the envelope the message came in
    header_hash: bytes
    counter: int
    #: the inner's views: the sender account's, then (if another) the recipient's
    views: tuple[ProofView, ...]
    signature: bytes

    def to_wire(self) -> list[object]:
        views = [[count, list(heads)] for count, heads in self.views]
        return [self.header_hash, self.counter, views, self.signature]


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One earlier message as the approving device stored it: its claims,
    and the proof of them when the approver kept one (None: a message
    stored before proofs were kept, or one it holds only as relayed)."""

    #: the other account of the conversation
    peer_account: bytes
    message_id: bytes
    sender_account: bytes
    sender_device: bytes
    timestamp: int
    content: Text | Receipt
    proof: HistoryProof | None = None

    def to_wire(self) -> list[object]:
        return [
            self.peer_account,
            self.message_id,
            self.sender_account,
            self.sender_device,
            self.timestamp,
            int(self.content.kind),
            self.content.to_wire(),
            [] if self.proof is None else self.proof.to_wire(),
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


@dataclass(frozen=True, slots=True)
class SentCopy:
    """What this device sent to ``recipient_account`` under ``message_id``,
    for the account's other devices, in an envelope of its own (§15.22):
    its own content key, ciphertext and envelope message id, so that no
    observer can pair it with the original."""

    recipient_account: bytes
    #: the original's message id: receipts, trash and history name it
    message_id: bytes
    content: Text
    #: the original's history proof (§15.4), so that the account's other
    #: devices can relay the text as proven, under the original's signature
    proof: HistoryProof | None = None

    kind = ContentKind.SENT_COPY

    def to_wire(self) -> list[object]:
        return [
            self.recipient_account,
            self.message_id,
            int(self.content.kind),
            self.content.to_wire(),
            [] if self.proof is None else self.proof.to_wire(),
        ]


Content = (
    Text
    | Receipt
    | HistoryBundle
    | SessionReset
    | SyncEdits
    | TokenBatch
    | SentCopy
    | UnknownContent
)


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


def _proof_view(v: object) -> ProofView:
    if type(v) is not list or len(v) != 2 or type(v[1]) is not list:
        raise SchemaError("a proof view is [count, [heads]]")
    count = _uint(v[0], "head count")
    if count == 0 or len(v[1]) != min(count, MAX_PROOF_VIEW_HEADS):
        raise SchemaError(f"a proof view lists min(count, {MAX_PROOF_VIEW_HEADS}) heads")
    heads = tuple(_bin(h, 32, "head") for h in v[1])
    if any(a >= b for a, b in pairwise(heads)):
        raise SchemaError("a proof view's heads are ascending and unique")
    return count, heads


def decode_proof(fields: object) -> HistoryProof | None:
    """A history entry's proof field: ``[]`` for none (§15.4)."""
    if type(fields) is list and not fields:
        return None
    if type(fields) is not list or len(fields) != 4:
        raise SchemaError("a history proof is [header hash, counter, [views], signature]")
    header_hash, counter, views, signature = fields
    if type(views) is not list or not 1 <= len(views) <= 2:
        raise SchemaError("a history proof holds one or two views")
    if _uint(counter, "counter") < 1:
        raise SchemaError("counters start at 1")
    return HistoryProof(
        _bin(header_hash, 32, "header hash"),
        counter,
        tuple(_proof_view(v) for v in views),
        _bin(signature, SIGNATURE_BYTES, "signature"),
    )


def _history_bundle(fields: object, entry_fields: int) -> HistoryBundle:
    """Kind 4 (8-field entries, with a proof or ``[]``) or kind 3 (7 fields,
    the form before proofs: every entry unproven)."""
    if type(fields) is not list or len(fields) != 3:
        raise SchemaError("a history body is [part, parts, [entries]]")
    part, parts, entries = fields
    if not _uint(part, "part") < _uint(parts, "parts"):
        raise SchemaError("history part out of range")
    if type(entries) is not list or len(entries) > MAX_HISTORY_ENTRIES:
        raise SchemaError(f"a history bundle holds at most {MAX_HISTORY_ENTRIES} entries")
    out = []
    for e in entries:
        if type(e) is not list or len(e) != entry_fields:
            raise SchemaError(f"a history entry here has {entry_fields} fields")
        peer, mid, sacc, sdev, ts, kind, body = e[:7]
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
                decode_proof(e[7]) if entry_fields == 8 else None,
            )
        )
    return HistoryBundle(part, parts, tuple(out))


def _sent_copy(fields: object) -> SentCopy:
    if type(fields) is not list or len(fields) != 5:
        raise SchemaError("a sent copy is [recipient, message id, kind, body, proof]")
    recipient, mid, kind, body, proof = fields
    if type(kind) is not int or kind != ContentKind.TEXT:
        raise SchemaError("a sent copy holds a text")
    return SentCopy(
        _bin(recipient, 32, "recipient"),
        _bin(mid, MESSAGE_ID_BYTES, "message id"),
        _text(body),
        decode_proof(proof),
    )


def _history(fields: object) -> HistoryBundle:
    return _history_bundle(fields, 8)


def _history_v1(fields: object) -> HistoryBundle:
    return _history_bundle(fields, 7)


def decode_content(kind: int, body: bytes) -> Content:
    """Decode an authenticated body; an unknown kind is a value, not an error."""
    decoders: dict[int, Callable[[object], Content]] = {
        ContentKind.TEXT: _text,
        ContentKind.RECEIPT: _receipt,
        ContentKind.HISTORY_V1: _history_v1,
        ContentKind.HISTORY: _history,
        ContentKind.SESSION_RESET: decode_reset,
        ContentKind.SYNC_EDITS: decode_sync_edits,
        ContentKind.SENT_COPY: _sent_copy,
        ContentKind.TOKENS: decode_batch,
    }
    if kind not in decoders:
        content_range(kind)  # 0 is no kind at all
        return UnknownContent(kind, body)
    # Bodies hold no maps, so the C-level canonical check is enough (§2.2).
    return decoders[ContentKind(kind)](decode_flat(body, MAX_CONTENT_BYTES))


# --------------------------------------------------------------------------
# Replay state (§15.6)

#: (sender account, sender device, recipient account): one replay stream
ReplayKey = tuple[bytes, bytes, bytes]

#: streams an in-memory ``ReplayGuard`` keeps before it forgets the least
#: recently used one (§15.6 "Eviction"); the node's table has the same bound
MAX_REPLAY_STREAMS = 65_536


@dataclass(frozen=True, slots=True)
class ReplayWindow:
    """One stream's replay state (§15.6): the highest counter accepted and a
    bitmap of which of the ``window`` counters below it were accepted.

    A value: ``accepted`` returns the next window, so that a node can store
    exactly one row per stream, in place, with the message it accepted.
    """

    highest: int = 0
    #: bit i set: counter ``highest - 1 - i`` was accepted
    bits: int = 0

    def check(self, counter: int, window: int = REPLAY_WINDOW) -> None:
        """``ReplayError`` if ``counter`` was accepted already or is too old."""
        if counter < 1:
            raise ReplayError("counters start at 1")
        if counter > self.highest:
            return
        if counter == self.highest:
            raise ReplayError(f"counter {counter} was already accepted")
        age = self.highest - counter  # >= 1
        if age > window:
            raise ReplayError(f"counter {counter} is older than the replay window")
        if (self.bits >> (age - 1)) & 1:
            raise ReplayError(f"counter {counter} was already accepted")

    def accepted(self, counter: int, window: int = REPLAY_WINDOW) -> ReplayWindow:
        """The window once ``counter`` is accepted (``check`` first)."""
        self.check(counter, window)
        if counter < self.highest:
            return ReplayWindow(self.highest, self.bits | 1 << (self.highest - counter - 1))
        shift = counter - self.highest
        if shift > window:
            # Everything slides out.  Never shift by a sender-chosen amount:
            # ``bits << 2**40`` would allocate a terabit (§15.6).
            return ReplayWindow(counter, 0)
        # the old highest becomes bit shift-1 (if it was a real counter)
        old = 1 if self.highest else 0
        mask = (1 << window) - 1
        return ReplayWindow(counter, ((self.bits << shift) | (old << (shift - 1))) & mask)

    def encode(self) -> bytes:
        """``enc([highest, bitmap])``, the bitmap as minimal big-endian bytes
        (no leading zero byte: one encoding per value), at most window/8."""
        bitmap = self.bits.to_bytes((self.bits.bit_length() + 7) // 8, "big")
        return encode_flat([self.highest, bitmap])

    @classmethod
    def decode(cls, raw: bytes, window: int = REPLAY_WINDOW) -> ReplayWindow:
        value = decode_flat(raw, 64 + (window + 7) // 8)
        if type(value) is not list or len(value) != 2 or type(value[1]) is not bytes:
            raise SchemaError("a replay window is [highest, bitmap]")
        highest, bitmap = _uint(value[0], "highest"), value[1]
        if bitmap[:1] == b"\x00":
            raise SchemaError("a replay bitmap has no leading zero byte")
        bits = int.from_bytes(bitmap, "big")
        if bits >> window:
            raise SchemaError("replay bitmap wider than its window")
        return cls(highest, bits)


class ReplayState(Protocol):
    """What ``open_envelope`` needs of replay state: ``accept`` raises
    ``ReplayError`` for a counter it must refuse, and records it otherwise."""

    def accept(self, key: ReplayKey, counter: int) -> None: ...


class PendingReplay:
    """The replay state as one envelope sees it, over a store (§15.6).

    Windows are read through ``lookup`` (a node: one indexed row per stream);
    ``accept`` records the new window in ``changes`` and nothing else, so the
    caller stores ``changes`` in the transaction that stores the message and
    simply drops this object if anything fails.  Cost per envelope: one
    lookup and one changed window, whatever the number of streams.
    """

    def __init__(
        self, lookup: Callable[[ReplayKey], ReplayWindow | None], window: int = REPLAY_WINDOW
    ) -> None:
        self.lookup = lookup
        self.window = window
        self.changes: dict[ReplayKey, ReplayWindow] = {}
        #: streams that had no window before this envelope
        self.new: set[ReplayKey] = set()

    def _current(self, key: ReplayKey) -> ReplayWindow:
        if key in self.changes:
            return self.changes[key]
        found = self.lookup(key)
        if found is None:
            self.new.add(key)
            return ReplayWindow()
        return found

    def check(self, key: ReplayKey, counter: int) -> None:
        self._current(key).check(counter, self.window)

    def accept(self, key: ReplayKey, counter: int) -> None:
        self.changes[key] = self._current(key).accepted(counter, self.window)


@dataclass(slots=True)
class ReplayGuard:
    """Per-stream sliding windows of accepted counters, in memory (§15.6).

    ``check`` raises ``ReplayError`` for a counter already accepted or older
    than ``window`` below the highest; ``accept`` records it.  The envelope
    opener calls ``accept`` after all other checks, so a rejected envelope
    leaves no trace.  At most ``max_streams`` streams are kept: accepting on
    a new stream beyond that forgets the least recently used one (§15.6
    "Eviction").  simnet and tests use this; a node keeps one row per stream
    in its database instead (``PendingReplay``).
    """

    window: int = REPLAY_WINDOW
    max_streams: int = MAX_REPLAY_STREAMS
    #: least recently used first (dicts keep insertion order)
    _streams: dict[ReplayKey, ReplayWindow] = field(default_factory=dict)

    @property
    def stream_count(self) -> int:
        # Not __len__: an empty guard must not be falsy (``guard or new``).
        return len(self._streams)

    def check(self, key: ReplayKey, counter: int) -> None:
        self._streams.get(key, ReplayWindow()).check(counter, self.window)

    def accept(self, key: ReplayKey, counter: int) -> None:
        new = self._streams.get(key, ReplayWindow()).accepted(counter, self.window)
        self._streams.pop(key, None)
        self._streams[key] = new  # now the most recently used
        while len(self._streams) > self.max_streams:
            del self._streams[next(iter(self._streams))]

    def highest(self, key: ReplayKey) -> int:
        w = self._streams.get(key)
        return w.highest if w else 0

    def windows(self) -> dict[ReplayKey, ReplayWindow]:
        """Every stream's window, least recently used first."""
        return dict(self._streams)

    def encode(self) -> bytes:
        """Canonical bytes of the whole guard (§15.6 "Persistence")."""
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
        guard = cls(window=window, max_streams=max(MAX_REPLAY_STREAMS, len(value[1])))
        nbytes = (window + 7) // 8
        for row in value[1]:
            if type(row) is not list or len(row) != 5:
                raise SchemaError("a replay row has 5 fields")
            key = (_bin(row[0], 32, "account"), _bin(row[1], 32, "device"), _bin(row[2], 32, "acc"))
            bits = int.from_bytes(_bin(row[4], nbytes, "bitmap"), "big")
            if bits >> window:
                raise SchemaError("replay bitmap wider than its window")
            guard._streams[key] = ReplayWindow(_uint(row[3], "highest"), bits)
        return guard
