"""channel.json: the per-link channel /smu/channel/1 (docs/PROTOCOL.md §17.3):
its frames, frames a receiver must refuse, and one session step by step."""

from __future__ import annotations

from collections import deque
from typing import Any

from protocol.core.canonical import decode, encode_flat
from protocol.core.errors import InvalidInput
from protocol.core.machine import Now
from protocol.links import channel_wire as cw
from protocol.links.channel import (
    Acknowledged,
    Channel,
    ChannelConfig,
    Closed,
    Misbehaved,
    Output,
    Queued,
    Received,
    Send,
)

from ._common import FORMAT_NOTE, Json, assert_raises, bytes_from_label, to_tagged

#: both ends of the session use the smallest limits a HELLO may announce
CONFIG = ChannelConfig(receive_window=cw.MIN_WINDOW, max_frame_bytes=cw.MIN_FRAME_BYTES)


def _frames() -> list[tuple[str, cw.Frame]]:
    return [
        ("HELLO", cw.HelloFrame(1, 2 * 1024 * 1024, cw.MIN_FRAME_BYTES)),
        (
            "DATA: three items from item 1",
            cw.DataFrame(1, ((1, b"hello"), (16, b""), (48, bytes_from_label("channel/item")))),
        ),
        ("DATA: one item, a large sequence number", cw.DataFrame(300, ((65_535, b"\x00"),))),
        ("ACK: items up to 2 processed", cw.AckFrame(2, cw.MIN_WINDOW)),
        ("ACK: nothing processed yet, the window raised", cw.AckFrame(0, 4_000_000)),
        ("PING", cw.PingFrame()),
        ("CLOSE: normal", cw.CloseFrame(cw.CloseCode.NORMAL, "bye")),
        (
            "CLOSE: protocol error",
            cw.CloseFrame(cw.CloseCode.PROTOCOL, "flow_control: over the window"),
        ),
    ]


def _hex(*value: object) -> str:
    return encode_flat(list(value)).hex()


MW, MF = cw.MIN_WINDOW, cw.MIN_FRAME_BYTES

#: frames the decoder refuses whole, with the error class
_REJECTED: list[tuple[str, str, str]] = [
    ("not an array", "04", "SchemaError"),
    ("empty array", _hex(), "SchemaError"),
    ("unknown frame type 6", _hex(6), "SchemaError"),
    ("HELLO version 0", _hex(1, 0, MW, MF), "UnsupportedVersionError"),
    ("HELLO window below the minimum", _hex(1, 1, MW - 1, MF), "SchemaError"),
    ("HELLO max_frame below the minimum", _hex(1, 1, MW, MF - 1), "SchemaError"),
    ("HELLO window over 32 bits", _hex(1, 1, 1 << 32, MF), "SchemaError"),
    ("HELLO with a field too many", _hex(1, 1, MW, MF, 0), "SchemaError"),
    ("DATA without items", _hex(2, 1, []), "SchemaError"),
    ("DATA from item 0", _hex(2, 0, [[1, b""]]), "SchemaError"),
    ("DATA item kind over 16 bits", _hex(2, 1, [[65_536, b""]]), "SchemaError"),
    ("DATA item payload a str", _hex(2, 1, [[1, "text"]]), "SchemaError"),
    ("DATA item of three elements", _hex(2, 1, [[1, b"", 0]]), "SchemaError"),
    ("DATA past sequence number 2^64 - 1", _hex(2, (1 << 64) - 1, [[1, b""]] * 2), "SchemaError"),
    (
        "DATA with 1025 items",
        _hex(2, 1, [[1, b""]] * (cw.MAX_ITEMS_PER_FRAME + 1)),
        "SizeLimitError",
    ),
    ("ACK window below the minimum", _hex(3, 0, MW - 1), "SchemaError"),
    ("PING with a field", _hex(4, 0), "SchemaError"),
    ("CLOSE code 4", _hex(5, 4, ""), "SchemaError"),
    ("CLOSE reason not printable", _hex(5, 0, "a\nb"), "SchemaError"),
    ("CLOSE reason over 256 bytes", _hex(5, 0, "x" * 257), "SizeLimitError"),
    ("a boolean for an integer", _hex(3, True, MW), "SchemaError"),
    ("trailing byte", _hex(4) + "00", "NonCanonicalError"),
    ("PING with its type as a non-minimal integer", "91cc04", "NonCanonicalError"),
]

#: frames valid on their own that a receiver refuses at that point of the
#: stream: ``before`` are the frames it has received (after sending its own
#: HELLO and nothing else)
_OUT_OF_PLACE: list[tuple[str, list[str], str, str]] = [
    ("DATA before HELLO", [], _hex(2, 1, [[1, b"x"]]), "ChannelProtocolError"),
    ("PING before HELLO", [], _hex(4), "ChannelProtocolError"),
    ("a second HELLO", [_hex(1, 1, MW, MF)], _hex(1, 1, MW, MF), "ChannelProtocolError"),
    (
        "DATA not from the next item",
        [_hex(1, 1, MW, MF)],
        _hex(2, 2, [[1, b"x"]]),
        "ChannelProtocolError",
    ),
    (
        "DATA repeating an item",
        [_hex(1, 1, MW, MF), _hex(2, 1, [[1, b"x"]])],
        _hex(2, 1, [[1, b"x"]]),
        "ChannelProtocolError",
    ),
    ("ACK of an item never sent", [_hex(1, 1, MW, MF)], _hex(3, 1, MW), "ChannelProtocolError"),
    ("ACK that changes nothing", [_hex(1, 1, MW, MF)], _hex(3, 0, MW), "ChannelProtocolError"),
    (
        "ACK shrinking the window",
        [_hex(1, 1, MW + 1, MF)],
        _hex(3, 0, MW),
        "FlowControlError",
    ),
]


class _Session:
    """Two channels and the frames in flight between them, driven by steps."""

    def __init__(self) -> None:
        self.ends = {"A": Channel(CONFIG), "B": Channel(CONFIG)}
        self.wire: dict[str, deque[bytes]] = {"A": deque(), "B": deque()}

    def step(self, at: float, side: str, do: str, **args: Any) -> dict[str, Json]:
        ch, now = self.ends[side], Now.virtual(at)
        if do == "start":
            out = ch.start(now)
        elif do == "offer":
            out = ch.offer(args["kind"], bytes.fromhex(args["payload"]), now)
        elif do == "deliver":
            out = ch.receive(self.wire[side].popleft(), now)
        elif do == "processed":
            out = ch.processed(args["seq"], now)
        elif do == "tick":
            out = ch.tick(now)
        else:
            out = ch.close(now, args["reason"])
        other = "B" if side == "A" else "A"
        for o in out:
            if isinstance(o, Send):
                self.wire[other].append(o.frame)
        return {"at": at, "side": side, "do": do, **args, **outputs_json(out)}


def outputs_json(outputs: list[Output]) -> dict[str, Json]:
    """A step's outputs: the frames it sends and what it reports."""
    events: list[Json] = []
    for o in outputs:
        if isinstance(o, Queued):
            events.append({"queued": o.seq})
        elif isinstance(o, Received):
            events.append({"received": [o.seq, o.kind, o.payload.hex()]})
        elif isinstance(o, Acknowledged):
            events.append({"acknowledged": [o.first, o.last]})
        elif isinstance(o, Closed):
            code = None if o.code is None else int(o.code)
            left = [i.seq for i in o.unacknowledged]
            events.append(
                {
                    "closed": {
                        "code": code,
                        "reason": o.reason,
                        "by_peer": o.by_peer,
                        "unacknowledged": left,
                    }
                }
            )
        elif isinstance(o, Misbehaved):
            events.append({"misbehaved": type(o.error).__name__})
    return {"sends": [o.frame.hex() for o in outputs if isinstance(o, Send)], "events": events}


def _session() -> list[Json]:
    s = _Session()
    big = bytes_from_label("channel/session", 64).hex()
    steps: list[tuple[float, str, str, dict[str, Any]]] = [
        (0.0, "A", "start", {}),
        (0.0, "B", "start", {}),
        (0.0, "A", "deliver", {}),  # B's HELLO
        (0.0, "A", "offer", {"kind": 1, "payload": b"hello".hex()}),
        (0.0, "A", "offer", {"kind": 16, "payload": ""}),
        (0.0, "A", "offer", {"kind": 48, "payload": big}),
        (0.0, "A", "tick", {}),  # the three items share one DATA frame
        (0.01, "B", "deliver", {}),  # A's HELLO
        (0.01, "B", "deliver", {}),  # the DATA
        (0.02, "B", "processed", {"seq": 2}),  # out of order: no ACK yet
        (0.03, "B", "processed", {"seq": 1}),  # acks wait ack_delay
        (0.06, "B", "tick", {}),  # ACK of 1-2 (due at 0.055)
        (0.06, "A", "deliver", {}),
        (0.5, "B", "offer", {"kind": 2, "payload": b"reply".hex()}),
        (0.5, "B", "tick", {}),
        (0.51, "A", "deliver", {}),
        (0.52, "A", "processed", {"seq": 1}),
        (0.55, "A", "tick", {}),  # ACK of 1 (due at 0.545)
        (20.6, "A", "tick", {}),  # nothing sent for 20 s: PING (due at 20.55)
        (20.61, "B", "deliver", {}),  # A's ACK
        (20.61, "B", "deliver", {}),  # the PING
        (21.0, "B", "processed", {"seq": 3}),
        (21.0, "B", "close", {"reason": "bye"}),  # the last ACK, then CLOSE
        (21.01, "A", "deliver", {}),
        (21.01, "A", "deliver", {}),
    ]
    return [s.step(at, side, do, **args) for at, side, do, args in steps]


def build() -> dict[str, Json]:
    frames = []
    for name, frame in _frames():
        raw = cw.encode_frame(frame)
        assert cw.decode_frame(raw, cw.MIN_FRAME_BYTES) == frame
        frames.append({"name": name, "value": to_tagged(decode(raw, len(raw))), "hex": raw.hex()})
    rejected = []
    for name, hexed, error in _REJECTED:
        assert_raises(error, cw.decode_frame, bytes.fromhex(hexed), cw.MIN_FRAME_BYTES)
        rejected.append({"name": name, "hex": hexed, "error": error})
    out_of_place = []
    for name, before, hexed, error in _OUT_OF_PLACE:
        assert out_of_place_error(before, hexed) == error, name
        out_of_place.append({"name": name, "before": before, "hex": hexed, "error": error})
    return {
        "format": FORMAT_NOTE,
        "protocol_id": cw.PROTOCOL_ID,
        "limits": {
            "max_item_bytes": cw.MAX_ITEM_BYTES,
            "item_cost": cw.ITEM_COST,
            "min_frame_bytes": cw.MIN_FRAME_BYTES,
            "min_window": cw.MIN_WINDOW,
            "max_items_per_frame": cw.MAX_ITEMS_PER_FRAME,
            "max_reason_bytes": cw.MAX_REASON_BYTES,
        },
        "frames": frames,
        "rejected": rejected,
        "out_of_place": out_of_place,
        "session": {
            "config": {
                "receive_window": CONFIG.receive_window,
                "max_frame_bytes": CONFIG.max_frame_bytes,
                "ack_delay": CONFIG.ack_delay,
                "keepalive_interval": CONFIG.keepalive_interval,
            },
            "steps": _session(),
        },
    }


def out_of_place_error(before: list[str], hexed: str) -> str | None:
    """The error class a fresh channel reports for ``hexed`` after ``before``."""
    ch = Channel(CONFIG)
    ch.start(Now.virtual(0))
    for raw in before:
        ch.receive(bytes.fromhex(raw), Now.virtual(0))
    for o in ch.receive(bytes.fromhex(hexed), Now.virtual(0)):
        if isinstance(o, Misbehaved):
            assert isinstance(o.error, InvalidInput)
            return type(o.error).__name__
    return None
