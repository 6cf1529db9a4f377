"""channel_delivery.json: envelopes and their answers as items of the
per-link channel (docs/PROTOCOL.md §15.14.1): the item kinds, the DELIVERY
payload (the stream's request frame), the DELIVERY_ANSWER payloads, and
answers a receiver must refuse."""

from __future__ import annotations

from protocol.core.canonical import encode_flat
from protocol.messaging import channel_delivery as cd
from protocol.messaging.content import ReplayError
from protocol.messaging.envelope import DeliveryRefused, delivery_frame

from ._common import FORMAT_NOTE, Json, assert_raises, bytes_from_label


def build() -> dict[str, Json]:
    envelope = bytes_from_label("channel-delivery/envelope", 48)
    delivery: Json = {
        "kind": cd.DELIVERY,
        "envelope": envelope.hex(),
        "hex": delivery_frame(envelope).hex(),
    }
    answers: list[Json] = []
    for name, seq, error in (
        ("ACCEPTED item 1", 1, None),
        ("ACCEPTED item 2^64 - 1", (1 << 64) - 1, None),
        ("REFUSED item 7: replay", 7, ReplayError("counter 1 was already accepted")),
        ("REFUSED item 300: requests_full", 300, DeliveryRefused("requests_full", "")),
    ):
        raw = cd.encode_channel_answer(seq, error)
        got_seq, refusal = cd.decode_channel_answer(raw)
        assert got_seq == seq and (refusal is None) == (error is None)
        answers.append(
            {
                "name": name,
                "hex": raw.hex(),
                "seq": seq,
                "code": None if refusal is None else refusal.code,
                "message": None if refusal is None else refusal.message,
            }
        )
    rejected: list[Json] = []
    for name, raw, error in (
        ("version 2", encode_flat([2, 16, 1]), "UnsupportedVersionError"),
        ("sequence number 0", encode_flat([1, 16, 0]), "SchemaError"),
        ("no sequence number", encode_flat([1, 16]), "SchemaError"),
        ("ACCEPTED with a code", encode_flat([1, 16, 1, "replay"]), "SchemaError"),
        ("REFUSED without a message", encode_flat([1, 31, 1, "replay"]), "SchemaError"),
        ("REFUSED with an empty code", encode_flat([1, 31, 1, "", ""]), "SchemaError"),
        ("REFUSED with a code of 65 chars", encode_flat([1, 31, 1, "x" * 65, ""]), "SchemaError"),
        ("the stream's ENVELOPE frame", delivery_frame(b"\x01"), "SchemaError"),
        ("an unknown type", encode_flat([1, 17, 1]), "SchemaError"),
        ("a non-canonical integer", bytes.fromhex("9301cd0010cc01"), "NonCanonicalError"),
        ("over 1,024 bytes", encode_flat([1, 31, 1, "x", "y" * 1100]), "SizeLimitError"),
    ):
        assert_raises(error, cd.decode_channel_answer, raw)
        rejected.append({"name": name, "hex": raw.hex(), "error": error})
    return {
        "format": FORMAT_NOTE,
        "description": (
            "Direct delivery on the per-link channel (PROTOCOL.md §15.14.1). 'delivery': "
            "a DELIVERY item (kind 14): its payload is the /smu/message/1 request frame "
            "[1, 1, envelope]. 'answers': DELIVERY_ANSWER items (kind 15): [1, 16, seq] or "
            "[1, 31, seq, code, message], 'seq' naming the DELIVERY item answered; "
            "'code' and 'message' null for ACCEPTED. 'answers_rejected': "
            "decode_channel_answer raises 'error'."
        ),
        "delivery_answer_kind": cd.DELIVERY_ANSWER,
        "delivery": delivery,
        "answers": answers,
        "answers_rejected": rejected,
    }
