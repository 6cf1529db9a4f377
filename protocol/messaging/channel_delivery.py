"""Direct delivery on the per-link channel (PROTOCOL.md §15.14.1).

When a node has a channel (§17.3) with the node a recipient device's record
names, an envelope travels as one channel item instead of a new
``/smu/message/1`` stream, and the receiver's typed answer comes back as an
item too:

* ``DELIVERY`` (14): the payload is exactly the stream's request frame,
  ``[1, 1, envelope]`` (``delivery_frame``; decoded by ``decode_delivery``).
* ``DELIVERY_ANSWER`` (15): ``[1, 16, seq]`` (ACCEPTED, stored) or
  ``[1, 31, seq, code, message]`` (REFUSED), where ``seq`` is the channel
  sequence number of the DELIVERY item it answers, in the answering node's
  receive direction: unique on one channel, unlike a message id (one
  message goes to several devices, and a retry reuses the id).

Both kinds are in the messages range 1-15 of DESIGN §10 and, like every
channel item kind, never content kinds (``CHANNEL_KINDS``).  Pure and
deterministic: the node (``node/services/channel_delivery.py``) does the
I/O.
"""

from __future__ import annotations

from protocol.core.canonical import decode_flat, encode_flat
from protocol.core.errors import InvalidInput, SchemaError, UnsupportedVersionError, UsageError
from protocol.messaging.content import DELIVERY_ANSWER_ITEM, DELIVERY_ITEM
from protocol.messaging.envelope import (
    DELIVERY_VERSION,
    DeliveryFrame,
    DeliveryRefused,
)

__all__ = [
    "DELIVERY",
    "DELIVERY_ANSWER",
    "MAX_ANSWER_BYTES",
    "MAX_CODE_CHARS",
    "MAX_MESSAGE_CHARS",
    "ChannelAnswer",
    "decode_channel_answer",
    "encode_channel_answer",
]

DELIVERY = DELIVERY_ITEM
DELIVERY_ANSWER = DELIVERY_ANSWER_ITEM
#: the whole answer payload, checked before it is decoded (as the stream's)
MAX_ANSWER_BYTES = 1024
#: an error code (§10) and its text, for logs only, as on the stream
MAX_CODE_CHARS = 64
MAX_MESSAGE_CHARS = 200
#: channel sequence numbers are unsigned 64-bit and start at 1 (§17.3.3)
_MAX_SEQ = (1 << 64) - 1

#: (the seq of the DELIVERY item answered, None if stored or the refusal)
ChannelAnswer = tuple[int, DeliveryRefused | None]


def encode_channel_answer(seq: int, error: InvalidInput | DeliveryRefused | None) -> bytes:
    """ACCEPTED once the message is stored; otherwise REFUSED with the code."""
    if type(seq) is not int or not 1 <= seq <= _MAX_SEQ:
        raise UsageError("a channel sequence number is from 1 to 2^64 - 1")
    if error is None:
        return encode_flat([DELIVERY_VERSION, int(DeliveryFrame.ACCEPTED), seq])
    if isinstance(error, DeliveryRefused):
        code, message = error.code, error.message
    else:
        code, message = error.code, str(error)
    code, message = code[:MAX_CODE_CHARS], message[:MAX_MESSAGE_CHARS]
    while True:  # 200 wide characters would not fit: the text is for logs only
        raw = encode_flat([DELIVERY_VERSION, int(DeliveryFrame.REFUSED), seq, code, message])
        if len(raw) <= MAX_ANSWER_BYTES:
            return raw
        message = message[: len(message) // 2]


def decode_channel_answer(raw: bytes) -> ChannelAnswer:
    """An answer item's payload (raises ``InvalidInput``: ``size_limit``,
    ``non_canonical``, ``unsupported_version``, ``schema``)."""
    f = decode_flat(raw, MAX_ANSWER_BYTES)
    if type(f) is not list or len(f) < 3 or any(type(x) is not int for x in f[:3]):
        raise SchemaError("a delivery answer item is [version, type, seq, ...]")
    if f[0] != DELIVERY_VERSION:
        raise UnsupportedVersionError(f"delivery version {f[0]} is not known here")
    t, seq, rest = f[1], f[2], f[3:]
    if not 1 <= seq <= _MAX_SEQ:
        raise SchemaError("a delivery answer names item 1 or later")
    if t == DeliveryFrame.ACCEPTED and not rest:
        return seq, None
    if t == DeliveryFrame.REFUSED and len(rest) == 2:
        code, message = rest
        if (
            type(code) is str
            and type(message) is str
            and 0 < len(code) <= MAX_CODE_CHARS
            and len(message) <= MAX_MESSAGE_CHARS
        ):
            return seq, DeliveryRefused(code, message)
    raise SchemaError("expected [1, 16, seq] or [1, 31, seq, code, message]")
