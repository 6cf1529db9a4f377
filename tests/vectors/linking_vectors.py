"""linking.json: device linking (docs/PROTOCOL.md §14): link strings, the
transcript, MACs and confirmation code, and one whole handshake frame by
frame on the vectors' network, with link strings and frames a reader
refuses.

The account is one genesis by the approver device ``approver``; the new
device is ``laptop``.  The machines are the code's own (``Approver`` and
``Joiner``); each frame one sends is recorded and fed to the other.  The
link id and secret are fixed bytes (a real approver draws them at random).
"""

from __future__ import annotations

import hashlib

from protocol.core.canonical import decode, encode
from protocol.core.machine import Now
from protocol.linking import machines as lk
from protocol.log import authoring
from protocol.log.ledger import IngestStatus, Ledger

from ._common import (
    FORMAT_NOTE,
    PARAMS,
    T0,
    Json,
    assert_raises,
    device_json,
    device_keys,
    params_json,
    recovery_key,
    to_tagged,
)

APPROVER = "linking/approver"
NEW_DEVICE = "linking/laptop"
APPROVER_PEER = "12D3KooWVectorsApprover"
JOINER_PEER = "12D3KooWVectorsJoiner"
ADDRS = ("/ip4/192.0.2.7/tcp/4001",)
LINK_ID = bytes(range(0x30, 0x38))
SECRET = bytes(range(0x50, 0x60))


def at(ms: int) -> Now:
    return Now(ms / 1000, T0 + 60_000 + ms)


def _account() -> tuple[Ledger, bytes, bytes]:
    ledger = Ledger(PARAMS)
    g = authoring.genesis(
        PARAMS,
        device_keys(APPROVER),
        recovery_key("linking/recovery"),
        display_name="carol",
        device_name="desktop",
        timestamp=T0,
    )
    assert ledger.ingest(g.raw).status is IngestStatus.ACCEPTED
    return ledger, g.id, g.raw


def _send(outputs: list[lk.LinkOutput]) -> bytes:
    (frame,) = [o.frame for o in outputs if isinstance(o, lk.Send)]
    return frame


def handshake() -> dict[str, Json]:
    ledger, account, genesis = _account()
    ap = lk.Approver(
        PARAMS,
        account,
        peer_id=APPROVER_PEER,
        addrs=ADDRS,
        link_id=LINK_ID,
        secret=SECRET,
        now=at(0),
    )
    offer = lk.LinkOffer.parse(ap.offer.to_text())
    new = device_keys(NEW_DEVICE)
    jn = lk.Joiner(
        PARAMS, offer, new, "laptop", own_peer=JOINER_PEER, remote_peer=APPROVER_PEER, now=at(1000)
    )
    frames: list[Json] = []

    def record(sender: str, name: str, frame: bytes) -> bytes:
        frames.append(
            {
                "from": sender,
                "name": name,
                "hex": frame.hex(),
                "value": to_tagged(decode(frame, len(frame))),
            }
        )
        return frame

    join = record("joiner", "JOIN", _send(jn.start(at(1000))))
    accept = record(
        "approver",
        "ACCEPT",
        _send(ap.receive(join, remote_peer=JOINER_PEER, now=at(2000), ledger=ledger)),
    )
    (confirm,) = jn.receive(accept, at(2500))
    assert isinstance(confirm, lk.ConfirmRequired)
    confirm_frame = record("joiner", "CONFIRM", _send(jn.confirm(at(3000))))
    ap.receive(confirm_frame, remote_peer=JOINER_PEER, now=at(3000), ledger=ledger)
    approval = ap.approve(device_keys(APPROVER), ledger, timestamp_ms=T0 + 4000, now=at(4000))
    assert ledger.ingest(approval.event.raw).status is IngestStatus.ACCEPTED
    approved = record("approver", "APPROVED", _send(approval.outputs))
    out = jn.receive(approved, at(4500))
    assert isinstance(out[0], lk.Joined)
    done = record("joiner", "DONE", _send(out))
    final = ap.receive(done, remote_peer=JOINER_PEER, now=at(5000), ledger=ledger)
    assert isinstance(final[0], lk.LinkCompleted)

    join_frame = lk.decode_frame(join, PARAMS, lk.APPROVER_BOUND_MAX_BYTES)
    assert isinstance(join_frame, lk.JoinFrame)
    transcript = encode(
        [
            PARAMS.network_id,
            account,
            APPROVER_PEER,
            JOINER_PEER,
            LINK_ID,
            join_frame.intro.to_wire(),
        ]
    )
    # §14.3, computed here from the text, then checked against the machines
    th = hashlib.blake2b(lk.D_LINK_TRANSCRIPT + transcript, digest_size=32).digest()
    join_mac = hashlib.blake2b(lk.D_LINK_JOIN + transcript, key=SECRET, digest_size=32).digest()
    assert join_mac == join_frame.mac
    accept_frame = lk.decode_frame(accept, PARAMS, lk.joiner_bound_max_bytes(PARAMS))
    assert isinstance(accept_frame, lk.AcceptFrame) and accept_frame.events == (genesis,)
    accept_mac = hashlib.blake2b(
        lk.D_LINK_ACCEPT + th + encode([genesis]), key=SECRET, digest_size=32
    ).digest()
    assert accept_mac == accept_frame.mac
    code_digest = hashlib.blake2b(
        lk.D_LINK_CODE + th + new.sign_public, key=SECRET, digest_size=8
    ).digest()
    code = f"{int.from_bytes(code_digest, 'big') % 10**6:06d}"
    assert code == confirm.code == lk.confirmation_code(SECRET, th, new.sign_public)
    return {
        "account": account.hex(),
        "genesis": genesis.hex(),
        "approver_peer": APPROVER_PEER,
        "joiner_peer": JOINER_PEER,
        "addrs": list(ADDRS),
        "link_id": LINK_ID.hex(),
        "secret": SECRET.hex(),
        "expires_at_ms": offer.expires_at_ms,
        "link_text": offer.to_text(),
        "link_uri": offer.to_uri(),
        "device_name": "laptop",
        "transcript": transcript.hex(),
        "transcript_hash": th.hex(),
        "join_mac": join_mac.hex(),
        "accept_events": [genesis.hex()],
        "accept_mac": accept_mac.hex(),
        "code": code,
        "add_device_event": approval.event.raw.hex(),
        "add_device_timestamp_ms": T0 + 4000,
        "frames": frames,
    }


def _rejected_links(text: str) -> list[tuple[str, str, str]]:
    body = text[len("smu1link") :]
    typo = body[:10] + ("0" if body[10] != "0" else "1") + body[11:]
    return [
        ("a typo in the body (checksum)", "smu1link" + typo, "ChecksumError"),
        ("an unknown prefix", "smu1lynk" + body, "DecodeError"),
        ("a character outside the alphabet ('u')", "smu1link" + body[:-1] + "u", "DecodeError"),
        ("longer than 2048 characters", "smu1link" + "0" * 2041, "SizeLimitError"),
    ]


def _rejected_frames(join_hex: str) -> list[tuple[str, str, str, int]]:
    join = bytes.fromhex(join_hex)
    approver_max = lk.APPROVER_BOUND_MAX_BYTES
    return [
        ("frame version 2", "9202" + "03", "UnsupportedVersionError", approver_max),
        ("unknown frame type 7", "920107", "SchemaError", approver_max),
        ("CONFIRM with an extra field", "930103c0", "NonCanonicalError", approver_max),
        ("CONFIRM with an extra field (canonical)", "93010300", "SchemaError", approver_max),
        ("ERROR code with a space", "930106a3612062", "SchemaError", approver_max),
        ("a JOIN over the approver's 1024-byte limit", join.hex(), "SizeLimitError", len(join) - 1),
    ]


def build() -> dict[str, Json]:
    hs = handshake()
    rejected_links = []
    for name, text, error in _rejected_links(str(hs["link_text"])):
        assert_raises(error, lk.LinkOffer.parse, text)
        rejected_links.append({"name": name, "text": text, "error": error})
    frames = hs["frames"]
    assert isinstance(frames, list) and isinstance(frames[0], dict)
    rejected_frames = []
    for name, hexed, error, max_bytes in _rejected_frames(str(frames[0]["hex"])):
        assert_raises(error, lk.decode_frame, bytes.fromhex(hexed), PARAMS, max_bytes)
        rejected_frames.append({"name": name, "hex": hexed, "max_bytes": max_bytes, "error": error})
    return {
        "description": "Device linking (docs/PROTOCOL.md §14) on 'params': the approver "
        "device (account = its genesis) offers a link; the new device joins. 'handshake' "
        "holds the link string for the recorded fields, the transcript T, th = "
        "H(D_LINK_TRANSCRIPT, T), the confirmation code, and every frame in order; the "
        "add-device event is the one APPROVED carries (proof-of-work from nonce 0). "
        "'rejected_links': LinkOffer.parse raises 'error'; 'rejected_frames': "
        "decode_frame(hex, max_bytes) raises 'error'.",
        "format": FORMAT_NOTE,
        "params": params_json(),
        "domains": {
            name: getattr(lk, name).hex()
            for name in (
                "D_LINK_CHECKSUM",
                "D_LINK_JOIN",
                "D_LINK_TRANSCRIPT",
                "D_LINK_ACCEPT",
                "D_LINK_CODE",
            )
        },
        "approver": device_json(APPROVER),
        "new_device": device_json(NEW_DEVICE),
        "handshake": hs,
        "rejected_links": rejected_links,
        "rejected_frames": rejected_frames,
    }
