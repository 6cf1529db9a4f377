"""The golden vectors of the messaging and link layers (tests/vectors/:
channel, channel delivery, mailbox, envelopes, linking, sync, backup and
session) hold for the current code; the others are checked in
test_vectors.py."""

from __future__ import annotations

from typing import Any

import pytest

from protocol.core import crypto, errors, keys
from protocol.core.canonical import decode, encode, encode_flat
from protocol.core.machine import Now
from protocol.links import channel_wire
from protocol.links.channel import (
    Acknowledged,
    Channel,
    ChannelConfig,
    CloseCode,
    Closed,
    Misbehaved,
    Queued,
    Received,
    Send,
)
from protocol.log.events import decode_event
from protocol.log.ledger import IngestStatus, Ledger
from tests.vectors._common import PARAMS, T0, device_keys, from_tagged

from .vector_support import error_class, load, params_of, raises_exactly

# -- channel.json --------------------------------------------------------------


def test_channel_limits_and_frames() -> None:
    data = load("channel.json")
    assert data["protocol_id"] == channel_wire.PROTOCOL_ID
    assert data["limits"] == {
        "max_item_bytes": channel_wire.MAX_ITEM_BYTES,
        "item_cost": channel_wire.ITEM_COST,
        "min_frame_bytes": channel_wire.MIN_FRAME_BYTES,
        "min_window": channel_wire.MIN_WINDOW,
        "max_items_per_frame": channel_wire.MAX_ITEMS_PER_FRAME,
        "max_reason_bytes": channel_wire.MAX_REASON_BYTES,
    }
    types = set()
    for case in data["frames"]:
        raw = bytes.fromhex(case["hex"])
        frame = channel_wire.decode_frame(raw, channel_wire.MIN_FRAME_BYTES)
        types.add(type(frame).__name__)
        assert channel_wire.encode_frame(frame) == raw, case["name"]
        assert decode(raw, len(raw)) == from_tagged(case["value"]), case["name"]
    assert len(types) == 5  # every frame type of §17.3.2
    for case in data["rejected"]:
        raw = bytes.fromhex(case["hex"])
        raises_exactly(case["error"], channel_wire.decode_frame, raw, channel_wire.MIN_FRAME_BYTES)


def _session_channel(data: dict[str, Any]) -> Channel:
    c = data["session"]["config"]
    config = ChannelConfig(
        receive_window=c["receive_window"],
        max_frame_bytes=c["max_frame_bytes"],
        ack_delay=c["ack_delay"],
        keepalive_interval=c["keepalive_interval"],
    )
    return Channel(config)


def test_channel_frames_refused_out_of_place() -> None:
    data = load("channel.json")
    for case in data["out_of_place"]:
        ch = _session_channel(data)
        ch.start(Now.virtual(0))
        for raw in case["before"]:
            accepted = ch.receive(bytes.fromhex(raw), Now.virtual(0))
            assert not [o for o in accepted if isinstance(o, Misbehaved)], case["name"]
        out = ch.receive(bytes.fromhex(case["hex"]), Now.virtual(0))
        (bad,) = [o for o in out if isinstance(o, Misbehaved)]
        assert type(bad.error) is error_class(case["error"]), case["name"]
        assert ch.closed is not None and ch.closed.code is CloseCode.PROTOCOL, case["name"]


def test_channel_session_is_reproduced_step_by_step() -> None:
    """Two channels driven by the recorded steps send exactly the recorded
    frames and report exactly the recorded events."""
    data = load("channel.json")
    ends = {"A": _session_channel(data), "B": _session_channel(data)}
    wire: dict[str, list[bytes]] = {"A": [], "B": []}
    for step in data["session"]["steps"]:
        side, now = step["side"], Now.virtual(step["at"])
        ch = ends[side]
        match step["do"]:
            case "start":
                out = ch.start(now)
            case "offer":
                out = ch.offer(step["kind"], bytes.fromhex(step["payload"]), now)
            case "deliver":
                out = ch.receive(wire[side].pop(0), now)
            case "processed":
                out = ch.processed(step["seq"], now)
            case "tick":
                out = ch.tick(now)
            case "close":
                out = ch.close(now, step["reason"])
        sends = [o.frame for o in out if isinstance(o, Send)]
        wire["B" if side == "A" else "A"] += sends
        assert [f.hex() for f in sends] == step["sends"], step
        events: list[dict[str, Any]] = []
        for o in out:
            if isinstance(o, Queued):
                events.append({"queued": o.seq})
            elif isinstance(o, Received):
                events.append({"received": [o.seq, o.kind, o.payload.hex()]})
            elif isinstance(o, Acknowledged):
                events.append({"acknowledged": [o.first, o.last]})
            elif isinstance(o, Closed):
                closed = {
                    "code": None if o.code is None else int(o.code),
                    "reason": o.reason,
                    "by_peer": o.by_peer,
                    "unacknowledged": [i.seq for i in o.unacknowledged],
                }
                events.append({"closed": closed})
        assert events == step["events"], step
    assert all(ch.closed is not None for ch in ends.values())


# -- mailbox.json ----------------------------------------------------------------


def test_mailbox_tokens_are_reproduced_from_their_fields() -> None:
    from protocol.messaging import mailbox_wire as mw
    from protocol.messaging import tokens as tk

    data = load("mailbox.json")
    assert data["domains"] == {
        "D_MAILBOX_TOKEN": tk.D_MAILBOX_TOKEN.hex(),
        "D_MAILBOX_AUTH": mw.D_MAILBOX_AUTH.hex(),
        "D_MAILBOX_ITEM": mw.D_MAILBOX_ITEM.hex(),
    }
    assert tk.D_MAILBOX_TOKEN == b"smu/mailbox-token/v1\x00"
    params = params_of(data)
    signer = tk.TokenSigner(bytes.fromhex(data["token_key"]["seed"]))
    assert signer.public.hex() == data["token_key"]["public"]
    now = data["check_time_ms"]
    for case in data["tokens"]:
        mailbox, device = bytes.fromhex(case["mailbox_key"]), bytes.fromhex(case["device"])
        nonce, expires = bytes.fromhex(case["nonce"]), case["expires"]
        signed = tk.token_message(params.network_id, mailbox, device, nonce, expires)
        assert signed.hex() == case["signed_hex"], case["name"]
        assert signed == tk.D_MAILBOX_TOKEN + encode_flat(
            [params.network_id, mailbox, device, nonce, expires]
        )
        (token,) = signer.issue(params, mailbox, device, [nonce], expires)
        assert token.signature.hex() == case["signature"], case["name"]
        crypto.verify(signer.public, signed, token.signature)
        assert encode_flat(token.to_wire()).hex() == case["token_hex"]
        assert tk.decode_token(decode(bytes.fromhex(case["token_hex"]), 200)) == token
        tk.verify_token(params, mailbox, device, signer.public, token, now)
    good_mailbox = bytes.fromhex(data["mailbox"]["public"])
    good_device = bytes.fromhex(data["device"]["sign_public"])
    errs = {"TokenInvalidError": tk.TokenInvalidError, "TokenExpiredError": tk.TokenExpiredError}
    for case in data["refused_tokens"]:
        token = tk.decode_token(decode(bytes.fromhex(case["token_hex"]), 200))
        with pytest.raises(errors.ProtocolError) as info:
            tk.verify_token(params, good_mailbox, good_device, signer.public, token, now)
        assert type(info.value) is errs[case["error"]], case["name"]


def test_mailbox_tokens_content_invite_and_frames() -> None:
    from protocol.core.invite import Invite
    from protocol.messaging import mailbox_wire as mw
    from protocol.messaging import tokens as tk
    from protocol.messaging.content import decode_content, encode_content

    data = load("mailbox.json")
    params = params_of(data)
    body = bytes.fromhex(data["tokens_content"]["body_hex"])
    batch = decode_content(data["tokens_content"]["kind"], body)
    assert isinstance(batch, tk.TokenBatch) and encode_content(batch) == (48, body)
    assert [t.nonce.hex() for t in batch.tokens] == sorted(c["nonce"] for c in data["tokens"])
    invite = Invite.parse(data["invite"]["text"], params)
    assert invite._payload() == from_tagged(data["invite"]["payload"])
    assert invite.to_text() == data["invite"]["text"]
    assert tk.from_invite(invite)[0].tokens == batch.tokens[:2]
    types = set()
    for case in data["frames"]:
        raw = bytes.fromhex(case["hex"])
        assert decode(raw, len(raw)) == from_tagged(case["value"]), case["name"]
        types.add(raw[2])  # [1, type, ...]: the type is the third byte
        try:
            request = mw.decode_request(raw)
        except errors.SchemaError:
            mw.decode_answer(raw)  # an answer, then
            continue
        if isinstance(request, mw.DepositRequest) and request.token is not None:
            assert request.token == tk.decode_token(decode(bytes.fromhex(
                data["tokens"][0]["token_hex"]), 200))  # fmt: skip
    assert {1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 31} <= types  # every type of §15.13
    for case in data["rejected"]:
        raises_exactly(case["error"], mw.decode_request, bytes.fromhex(case["hex"]))
    assert data["rejected_answers"]
    for case in data["rejected_answers"]:
        raises_exactly(case["error"], mw.decode_answer, bytes.fromhex(case["hex"]))


# -- envelopes.json ----------------------------------------------------------------


def _envelope_error(name: str) -> type[errors.ProtocolError]:
    from protocol.messaging import content, envelope

    for module in (errors, envelope, content):
        cls = getattr(module, name, None)
        if isinstance(cls, type) and issubclass(cls, errors.InvalidInput):
            return cls
    raise AssertionError(f"no error class {name}")


def _envelope_ledger(data: dict[str, Any]) -> Ledger:
    ledger = Ledger(params_of(data))
    for raw in data["events"]:
        assert ledger.ingest(bytes.fromhex(raw)).status is IngestStatus.ACCEPTED
    return ledger


def _device(data: dict[str, Any], name: str) -> keys.DeviceKeys:
    return keys.DeviceKeys.from_random(bytes.fromhex(data["devices"][name]["seed"]))


def test_envelopes_sealed_byte_for_byte() -> None:
    from protocol.messaging import envelope
    from protocol.messaging.content import decode_content

    data = load("envelopes.json")
    ledger = _envelope_ledger(data)
    alice, bob = (bytes.fromhex(data["accounts"][a]) for a in ("alice", "bob"))
    assert data["envelopes"]
    for case in data["envelopes"]:
        sealed = envelope.seal(
            params_of(data),
            _device(data, case["sender"]),
            ledger.state(alice),
            ledger.state(bytes.fromhex(case["recipient_account"])),
            decode_content(case["content_kind"], bytes.fromhex(case["content_body"])),
            counter=case["counter"],
            timestamp=case["timestamp"],
            seed=bytes.fromhex(case["seed"]),
        )
        assert sealed.raw.hex() == case["hex"], case["name"]
        assert decode(sealed.raw, len(sealed.raw)) == from_tagged(case["value"])
        assert sealed.recipient_account == bytes.fromhex(case["recipient_account"])
    # the header names the recipient's devices only (§15.1); the copy is alice's
    assert {c["recipient_account"] for c in data["envelopes"]} == {alice.hex(), bob.hex()}


def test_envelopes_opened_by_each_reader() -> None:
    from protocol.messaging import envelope
    from protocol.messaging.content import ReplayGuard, encode_content

    data = load("envelopes.json")
    ledger = _envelope_ledger(data)
    for case in data["envelopes"]:
        for r in case["opened_by"]:
            opened = envelope.open_envelope(
                params_of(data),
                bytes.fromhex(case["hex"]),
                bytes.fromhex(r["account"]),
                _device(data, r["device"]),
                envelope.ledger_lookup(ledger),
                ReplayGuard(),
            )
            kind, body = encode_content(opened.content)
            got = {
                "device": r["device"],
                "account": r["account"],
                "sender_account": opened.sender_account.hex(),
                "sender_device": opened.sender_device.hex(),
                "counter": opened.counter,
                "timestamp": opened.timestamp,
                "message_id": opened.message_id.hex(),
                "content_kind": kind,
                "content_body": body.hex(),
                "wrapped_for": [d.hex() for d in opened.wrapped_for],
                "views_same": [v.same for v in opened.views],
            }
            assert got == r, (case["name"], r["device"])


def test_envelopes_refused() -> None:
    from protocol.messaging import envelope
    from protocol.messaging.content import ReplayGuard

    data = load("envelopes.json")
    ledger = _envelope_ledger(data)
    accounts = {d: data["accounts"]["alice" if d.startswith("a") else "bob"] for d in ["a1", "b1"]}
    codes = set()
    for case in data["refused"]:
        cls = _envelope_error(case["error"])
        assert cls.code == case["code"]
        codes.add(case["code"])
        with pytest.raises(errors.InvalidInput) as info:
            envelope.open_envelope(
                params_of(data),
                bytes.fromhex(case["hex"]),
                bytes.fromhex(accounts[case["reader"]]),
                _device(data, case["reader"]),
                envelope.ledger_lookup(ledger),
                ReplayGuard(),
            )
        assert type(info.value) is cls, case["name"]
    assert {"decrypt", "decode", "not_for_me"} <= codes
    # a replay: the same envelope twice against one replay state
    guard = ReplayGuard()
    first = bytes.fromhex(data["envelopes"][0]["hex"])
    b1, bob = _device(data, "b1"), bytes.fromhex(data["accounts"]["bob"])
    envelope.open_envelope(params_of(data), first, bob, b1, envelope.ledger_lookup(ledger), guard)
    with pytest.raises(_envelope_error(data["replay"]["error"])):
        envelope.open_envelope(
            params_of(data), first, bob, b1, envelope.ledger_lookup(ledger), guard
        )


def test_envelope_delivery_frames() -> None:
    from protocol.messaging import envelope

    data = load("envelopes.json")
    frames = {f["name"]: bytes.fromhex(f["hex"]) for f in data["delivery"]}
    env_case = next(f for f in data["delivery"] if f["name"] == "ENVELOPE")
    assert envelope.decode_delivery(frames["ENVELOPE"]).hex() == env_case["envelope"]
    assert envelope.delivery_frame(bytes.fromhex(env_case["envelope"])) == frames["ENVELOPE"]
    assert envelope.decode_delivery_answer(frames["ACCEPTED"]) is None
    refused = envelope.decode_delivery_answer(frames["REFUSED: replay"])
    assert refused is not None and refused.code == "replay"
    for case in data["delivery_rejected"]:
        raises_exactly(case["error"], envelope.decode_delivery, bytes.fromhex(case["hex"]))


def test_channel_delivery_items() -> None:
    """channel_delivery.json (§15.14.1): the kinds, the DELIVERY payload,
    the answers both ways, and the answers a receiver refuses."""
    from protocol.messaging import channel_delivery as cd
    from protocol.messaging import envelope
    from protocol.messaging.content import CHANNEL_KINDS

    data = load("channel_delivery.json")
    assert (data["delivery"]["kind"], data["delivery_answer_kind"]) == (14, 15)
    assert {cd.DELIVERY, cd.DELIVERY_ANSWER} == {14, 15} and {14, 15} <= CHANNEL_KINDS
    raw = bytes.fromhex(data["delivery"]["envelope"])
    assert envelope.delivery_frame(raw).hex() == data["delivery"]["hex"]
    for case in data["answers"]:
        seq, refusal = cd.decode_channel_answer(bytes.fromhex(case["hex"]))
        assert seq == case["seq"]
        if case["code"] is None:
            assert refusal is None
            assert cd.encode_channel_answer(seq, None).hex() == case["hex"]
        else:
            assert refusal == envelope.DeliveryRefused(case["code"], case["message"])
            assert cd.encode_channel_answer(seq, refusal).hex() == case["hex"]
    for case in data["answers_rejected"]:
        raises_exactly(case["error"], cd.decode_channel_answer, bytes.fromhex(case["hex"]))


def test_envelope_history_bundle_proves_its_sender() -> None:
    """The history vector (§15.4 History proofs): the bundle decodes to the
    recorded proof, the inner and signed message rebuild byte for byte, the
    signature checks under a1, and the verdicts hold."""
    import dataclasses

    from protocol.messaging import envelope
    from protocol.messaging.content import HistoryBundle, Text, decode_content, encode_content
    from protocol.messaging.history import check_entry, inner_of, signed_message

    data = load("envelopes.json")
    case = data["history"]
    ledger = _envelope_ledger(data)
    body = bytes.fromhex(case["content_body"])
    bundle = decode_content(case["content_kind"], body)
    assert isinstance(bundle, HistoryBundle) and encode_content(bundle)[1] == body
    assert decode(body, len(body)) == from_tagged(case["value"])
    entry = bundle.entries[0]
    proof = entry.proof
    assert proof is not None and bundle.entries[1].proof is None
    assert {
        "header_hash": proof.header_hash.hex(),
        "counter": proof.counter,
        "views": [[c, [h.hex() for h in heads]] for c, heads in proof.views],
        "signature": proof.signature.hex(),
    } == case["proof"]
    assert inner_of(entry, proof).hex() == case["inner"]
    signed = signed_message(entry, proof)
    assert signed.hex() == case["signed"]
    crypto.verify(_device(data, "a1").sign_public, signed, proof.signature)
    account = bytes.fromhex(case["receiving_account"])
    states = envelope.ledger_lookup(ledger)
    of = ledger.account_of
    verdicts = [check_entry(e, account, states, of).verdict.value for e in bundle.entries]
    assert verdicts == case["verdicts"]
    forged = dataclasses.replace(entry, content=Text(case["forged_text"]))
    assert check_entry(forged, account, states, of).verdict.value == case["forged_verdict"]


# -- linking.json ------------------------------------------------------------------


def test_linking_handshake_frame_by_frame() -> None:
    """The code's two machines, given the recorded inputs, send exactly the
    recorded frames; the link string, transcript, MACs and code are what
    §14.2-§14.3 compute from the recorded fields."""
    import hashlib

    from protocol.linking import machines as lk

    data = load("linking.json")
    params = params_of(data)
    hs = data["handshake"]
    account, secret = bytes.fromhex(hs["account"]), bytes.fromhex(hs["secret"])
    offer = lk.LinkOffer(
        params.network_id,
        account,
        bytes.fromhex(hs["link_id"]),
        secret,
        hs["approver_peer"],
        tuple(hs["addrs"]),
        hs["expires_at_ms"],
    )
    assert offer.to_text() == hs["link_text"] and offer.to_uri() == hs["link_uri"]
    assert lk.LinkOffer.parse(hs["link_uri"].upper()) == offer
    transcript = bytes.fromhex(hs["transcript"])
    th = hashlib.blake2b(lk.D_LINK_TRANSCRIPT + transcript, digest_size=32).digest()
    assert th.hex() == hs["transcript_hash"]

    def mac(domain: bytes, msg: bytes, size: int = 32) -> bytes:
        return hashlib.blake2b(domain + msg, key=secret, digest_size=size).digest()

    assert mac(lk.D_LINK_JOIN, transcript).hex() == hs["join_mac"]
    events = [bytes.fromhex(e) for e in hs["accept_events"]]
    assert mac(lk.D_LINK_ACCEPT, th + encode(events)).hex() == hs["accept_mac"]
    new = keys.DeviceKeys.from_random(bytes.fromhex(data["new_device"]["seed"]))
    approver = keys.DeviceKeys.from_random(bytes.fromhex(data["approver"]["seed"]))
    code = int.from_bytes(mac(lk.D_LINK_CODE, th + new.sign_public, 8), "big") % 10**6
    assert f"{code:06d}" == hs["code"]

    ledger = Ledger(params)
    assert ledger.ingest(bytes.fromhex(hs["genesis"])).status is IngestStatus.ACCEPTED
    base = hs["expires_at_ms"] - 600_000  # the offer was made 10 minutes before its expiry

    def at(ms: int) -> Now:
        return Now(ms / 1000, base + ms)

    ap = lk.Approver(
        params,
        account,
        peer_id=hs["approver_peer"],
        addrs=tuple(hs["addrs"]),
        link_id=offer.link_id,
        secret=secret,
        now=at(0),
    )
    jn = lk.Joiner(
        params,
        offer,
        new,
        hs["device_name"],
        own_peer=hs["joiner_peer"],
        remote_peer=hs["approver_peer"],
        now=at(1000),
    )
    recorded = [bytes.fromhex(f["hex"]) for f in hs["frames"]]
    assert [f["name"] for f in hs["frames"]] == ["JOIN", "ACCEPT", "CONFIRM", "APPROVED", "DONE"]

    def sent(outputs: Any) -> bytes:
        (frame,) = [o.frame for o in outputs if isinstance(o, lk.Send)]
        return bytes(frame)

    joiner = hs["joiner_peer"]
    assert sent(jn.start(at(1000))) == recorded[0]
    assert (
        sent(ap.receive(recorded[0], remote_peer=joiner, now=at(2000), ledger=ledger))
        == (recorded[1])
    )
    (confirm,) = jn.receive(recorded[1], at(2500))
    assert isinstance(confirm, lk.ConfirmRequired) and confirm.code == hs["code"]
    assert sent(jn.confirm(at(3000))) == recorded[2]
    ap.receive(recorded[2], remote_peer=joiner, now=at(3000), ledger=ledger)
    approval = ap.approve(
        approver, ledger, timestamp_ms=hs["add_device_timestamp_ms"], now=at(4000)
    )
    assert approval.event.raw.hex() == hs["add_device_event"]
    assert sent(approval.outputs) == recorded[3]
    assert sent(jn.receive(recorded[3], at(4500))) == recorded[4]
    for raw, case in zip(recorded, hs["frames"], strict=True):
        assert decode(raw, len(raw)) == from_tagged(case["value"])


def test_linking_rejected() -> None:
    from protocol.linking import machines as lk

    data = load("linking.json")
    params = params_of(data)
    assert data["rejected_links"] and data["rejected_frames"]
    for case in data["rejected_links"]:
        raises_exactly(case["error"], lk.LinkOffer.parse, case["text"])
    for case in data["rejected_frames"]:
        raises_exactly(
            case["error"], lk.decode_frame, bytes.fromhex(case["hex"]), params, case["max_bytes"]
        )


# -- sync.json -------------------------------------------------------------------


def test_sync_edits_batches_refusals_and_winners() -> None:
    from protocol.messaging import sync

    data = load("sync.json")
    assert bytes.fromhex(data["domain_hex"]) == sync.D_SYNC_EDIT
    assert data["limits"]["max_edit_bytes"] == sync.MAX_EDIT_BYTES
    assert data["limits"]["max_skew_ms"] == sync.MAX_SKEW_MS
    ledger = Ledger(PARAMS)
    ids = {}
    for ev in data["events"]:
        raw = bytes.fromhex(ev["raw_hex"])
        ledger.ingest(raw)
        ids[ev["label"]] = decode_event(raw, PARAMS).id
    account = bytes.fromhex(data["account_hex"])
    for label, seed_label in data["device_seed_labels"].items():
        assert device_keys(seed_label).sign_public.hex() == data["devices"][label]
    book = sync.SyncBook(PARAMS, account)
    log = sync.LedgerView(ledger, account)
    by_label = {}
    for case in data["edits"]:
        raw = bytes.fromhex(case["edit_hex"])
        edit = sync.decode_edit(raw, PARAMS)
        assert edit.device == bytes.fromhex(data["devices"][case["device_label"]])
        assert list(edit.heads) == sorted(ids[h] for h in case["heads"])
        assert [edit.key, edit.value, list(edit.clock)] == [
            case["key"],
            from_tagged(case["value"]),
            case["clock"],
        ]
        signing_input = bytes.fromhex(case["signing_input_hex"])
        assert signing_input == sync.D_SYNC_EDIT + encode([PARAMS.network_id, edit.unsigned()])
        crypto.verify(edit.device, signing_input, edit.signature)
        assert edit.encode() == raw
        book.offer(edit, log, T0)  # a receiver clock the edits are not ahead of
        by_label[case["label"]] = edit
    for key, label in data["winners"].items():
        assert book.winner(key, log) == by_label[label], key
    batch = sync.decode_sync_edits(decode(bytes.fromhex(data["batch"]["content_hex"]), 1 << 16))
    assert [sync.decode_edit(e, PARAMS) for e in batch.edits] == [
        by_label[lbl] for lbl in data["batch"]["edits"]
    ]
    for case in data["rejected"]:
        with pytest.raises(errors.InvalidInput) as info:
            sync.decode_edit(bytes.fromhex(case["edit_hex"]), PARAMS)
        assert type(info.value).__name__ == case["error"], case["label"]


# -- backup.json -----------------------------------------------------------------


def test_backup_key_certificate_and_files() -> None:
    from protocol.core.keys import RecoveryKey
    from protocol.messaging import backup

    data = load("backup.json")
    rk = RecoveryKey(bytes.fromhex(data["recovery"]["seed"]))
    assert backup.backup_secret(rk).hex() == data["backup_secret"]
    assert backup.backup_public(rk).hex() == data["backup_public"]
    cert = backup.decode_cert(bytes.fromhex(data["cert_hex"]), PARAMS)
    cert.check(rk.commitment)
    assert cert.account.hex() == data["account"] and cert.recovery_public == rk.public
    items = [from_tagged(i) for i in data["items"]]
    for f in data["files"]:
        raw = bytes.fromhex(f["file_hex"])
        opened = backup.open_backup(PARAMS, raw, rk, passphrase=f["passphrase"])
        assert list(opened.items) == items
        assert opened.device.hex() == data["device"]["sign_public"]
        assert opened.header.created_ms == data["created_ms"]
        assert (opened.header.salt or b"").hex() == (f["salt"] or "")
        # the file is a pure function of its recorded randomness
        again = b"".join(
            backup.seal_backup(
                PARAMS,
                cert,
                keys.DeviceKeys.from_random(bytes.fromhex(data["device"]["seed"])),
                items,  # type: ignore[arg-type]
                created_ms=data["created_ms"],
                file_key=bytes.fromhex(f["file_key"]),
                eph_secret=bytes.fromhex(f["eph_secret"]),
                salt=None if f["salt"] is None else bytes.fromhex(f["salt"]),
                passphrase=f["passphrase"],
            )
        )
        assert again == raw


# -- session.json ----------------------------------------------------------------


def test_session_prekeys_are_reproduced_from_their_secrets() -> None:
    from protocol.messaging import prekeys, ratchet, session_errors

    data = load("session.json")
    params = params_of(data)
    assert data["labels"]["D_PREKEY_BATCH"] == b"smu/prekey-batch/v1\x00".hex()
    assert data["limits"]["MAX_SKIP"] == ratchet.MAX_SKIP == 2000
    now = data["check_time_ms"]
    bob = keys.DeviceKeys.from_random(bytes.fromhex(data["setup"]["bob"]["seed"]))
    account = bytes.fromhex(data["setup"]["bob"]["account"])
    b = data["prekeys"]["batch"]
    secrets = [bytes.fromhex(s) for s in b["secrets"]]
    batch = prekeys.make_batch(params, bob, account, b["first_id"], b["expires"], secrets)
    assert [k.hex() for k in batch.keys] == b["keys"]
    assert batch.root.hex() == b["root"]
    signed = prekeys.batch_message(
        params, account, bob.sign_public, b["first_id"], len(secrets), b["expires"], batch.root
    )
    assert signed.hex() == b["signed_hex"]
    crypto.verify(bob.sign_public, signed, bytes.fromhex(b["signature"]))
    assert batch.encode(params).hex() == b["batch_hex"]
    assert prekeys.decode_batch(params, bytes.fromhex(b["batch_hex"]), account,
                                bob.sign_public, now) == batch  # fmt: skip
    pr = data["prekeys"]["proof"]
    opk = prekeys.verify_proof(params, bytes.fromhex(pr["proof_hex"]), account,
                               bob.sign_public, now)  # fmt: skip
    assert opk.key.hex() == b["keys"][pr["index"]]
    assert opk.prekey_id == b["first_id"] + pr["index"]
    assert [p.hex() for p in batch.proof(pr["index"]).path] == pr["path"]
    for case in data["prekeys"]["rejected_batches"]:
        device = bytes.fromhex(case.get("device", bob.sign_public.hex()))
        with pytest.raises(session_errors.SessionError) as info:
            prekeys.decode_batch(params, bytes.fromhex(case["batch_hex"]), account, device, now)
        assert type(info.value).__name__ == case["error"], case["name"]


def test_session_setup_and_first_messages_both_ways() -> None:
    from protocol.messaging import prekeys, ratchet, session_errors, x3dh

    data = load("session.json")
    params = params_of(data)
    s, pk = data["setup"], data["prekeys"]
    now = data["check_time_ms"]
    akeys = keys.DeviceKeys.from_random(bytes.fromhex(s["alice"]["seed"]))
    bkeys = keys.DeviceKeys.from_random(bytes.fromhex(s["bob"]["seed"]))
    alice = x3dh.Party(bytes.fromhex(s["alice"]["account"]), akeys.sign_public, akeys.enc_public)
    bob = x3dh.Party(bytes.fromhex(s["bob"]["account"]), bkeys.sign_public, bkeys.enc_public)
    random = bytes.fromhex(s["random"])
    spk = bytes.fromhex(pk["signed_prekey"]["public"])
    opk = bytes.fromhex(pk["batch"]["keys"][0])
    # the X3DH secret, from the recorded DH outputs and binding (§19.4)
    ek = random[:32]
    assert [d.hex() for d in (ratchet.dh(akeys.enc_secret, spk), ratchet.dh(ek, bob.ik),
            ratchet.dh(ek, spk), ratchet.dh(ek, opk))] == s["dh"]  # fmt: skip
    ad_input = bytes.fromhex(s["ad_input_hex"])
    assert crypto.hash32(b"smu/session-ad/v1\x00", ad_input).hex() == s["ad"]
    assert x3dh.session_ad(params, alice, bob).hex() == s["ad"]
    ikm = b"\xff" * 32 + b"".join(bytes.fromhex(d) for d in s["dh"])
    info = b"smu/x3dh/v1\x00" + bytes.fromhex(s["ad"])
    assert ratchet.hkdf_sha256(bytes(32), ikm, info, 32).hex() == s["sk"]
    bundle = x3dh.Bundle(bob, pk["signed_prekey"]["id"], spk,
                         prekeys.OneTimePrekey(s["one_time_prekey_id"], opk, now + 1))  # fmt: skip
    a = x3dh.initiate(params, alice, akeys.enc_secret, bundle, random)
    assert a.state.dhs_public.hex() == s["first_ratchet_public"]
    assert a.state.rk.hex() == s["alice_root_key"]
    assert (a.state.cks or b"").hex() == s["alice_sending_chain_key"]
    store = (
        prekeys.PrekeyStore()
        .with_signed(pk["signed_prekey"]["id"], bytes.fromhex(pk["signed_prekey"]["secret"]), 0)
        .with_batch(pk["batch"]["first_id"], pk["batch"]["expires"],
                    [bytes.fromhex(x) for x in pk["batch"]["secrets"]])
    )  # fmt: skip
    fresh_store = store
    b: ratchet.Session | None = None
    for step in data["messages"]:
        sender = a if step["from"] == "alice" else b
        assert sender is not None and sender.state.cks is not None
        assert ratchet.kdf_ck(sender.state.cks)[1].hex() == step["message_key"]
        raw = sender.encrypt(bytes.fromhex(step["plaintext"]))
        assert raw.hex() == step["message_hex"]
        m = ratchet.decode_message(raw)
        assert m.header.encode().hex() == step["header_hex"]
        assert (m.prekey is not None) == (step["form"] == "prekey")
        key, nonce = ratchet.message_aead_keys(bytes.fromhex(step["message_key"]))
        assert (key.hex(), nonce.hex()) == (step["aead_key"], step["nonce"])
        fresh = bytes.fromhex(step["receiver_fresh"])
        if b is None:
            b, got, store = x3dh.respond_from_store(
                params, alice, bob, bkeys.enc_secret, store, m, fresh, now
            )
            receiver = b
        else:
            receiver = b if step["from"] == "alice" else a
            got = receiver.decrypt(raw, fresh)
        assert got.hex() == step["plaintext"]
        assert receiver.state.rk.hex() == step["receiver_root_key_after"]
    assert b is not None
    _dropped_keys(data["dropped_keys"], b.state)
    for case in data["rejected"]:
        raw = bytes.fromhex(case["message_hex"])
        before = b.to_bytes()
        with pytest.raises(session_errors.SessionError) as info:
            if case["to"] == "bob_session":
                b.decrypt(raw, bytes(32))
            else:
                x3dh.respond_from_store(
                    params, alice, bob, bkeys.enc_secret,
                    store if case["to"] == "bob_store" else fresh_store,
                    ratchet.decode_message(raw), bytes(32), now,
                )  # fmt: skip
        assert type(info.value).__name__ == case["error"], case["name"]
        assert b.to_bytes() == before


def _dropped_keys(d: dict[str, Any], after_script: object) -> None:
    """The stranger's bounds drop skipped keys; the marks in the stored
    state tell a dropped key (``session_key_gone``) from a used one (§19.5)."""
    from protocol.messaging import ratchet, session_errors

    assert isinstance(after_script, ratchet.SessionState)
    limits = ratchet.RatchetLimits(d["limits"]["max_skip"], d["limits"]["max_skipped"])
    raws = [bytes.fromhex(r) for r in d["messages_hex"]]
    with pytest.raises(session_errors.TooFarAheadError):
        ratchet.Session(after_script).decrypt(raws[d["too_far_first"]], bytes(32), limits)
    b = ratchet.Session(after_script)
    for step in d["opened"]:
        b.decrypt(raws[step["index"]], bytes.fromhex(step["fresh"]), limits)
    assert b.to_bytes().hex() == d["state_after_hex"]
    assert {k.hex(): n for k, n in b.state.gone.items()} == d["marks"]
    for case in d["refused"]:
        with pytest.raises(session_errors.SessionError) as info:
            ratchet.Session.from_bytes(bytes.fromhex(d["state_after_hex"])).decrypt(
                raws[case["index"]], bytes(32), limits
            )
        assert type(info.value).__name__ == case["error"]
    assert ratchet.Session(b.state).decrypt(raws[d["still_opens"]], bytes(32), limits)


def test_session_first_message_in_a_sealed_wrap() -> None:
    from protocol.messaging import ratchet, wrap2

    data = load("session.json")
    w = data["wrap2"]
    assert data["labels"]["D_WRAP2"] == b"smu/wrap2/v1\x00".hex()
    device, key = bytes.fromhex(w["device"]), bytes.fromhex(w["key"])
    e = bytes.fromhex(w["e_secret"])
    assert ratchet.x25519_public(e).hex() == w["e_public"]
    assert ratchet.dh(e, key).hex() == w["shared"]
    kek = crypto.hash32(b"smu/wrap2/v1\x00", bytes.fromhex(w["shared"] + w["e_public"]) + key)
    assert kek.hex() == w["kek"]
    assert w["aad_hex"] == (b"smu/wrap2/v1\x00" + device + key).hex()
    inner = wrap2.decode_inner(bytes.fromhex(w["inner_hex"]))
    assert inner.message.hex() == data["messages"][0]["message_hex"]
    assert inner.session_id.hex() == data["setup"]["initiation_id"]
    assert inner.initiator is not None
    assert inner.initiator[0].hex() == data["setup"]["alice"]["account"]
    assert wrap2.seal(device, key, e, inner).hex() == w["data_hex"]
    spk_secret = bytes.fromhex(data["prekeys"]["signed_prekey"]["secret"])
    assert wrap2.open_wrap(device, key, spk_secret, bytes.fromhex(w["data_hex"])) == inner
