"""rotations.json (docs/PROTOCOL.md §6.8, suite 3): the rotation of the
recovery key, checked from the recorded bytes as another implementation
would, independently of the generator."""

from __future__ import annotations

from protocol.core import crypto
from protocol.core.canonical import decode_flat, encode_flat
from protocol.core.keys import RecoveryKey, recovery_commitment
from protocol.core.params import SUITE_V3
from protocol.log.events import decode_event, verify_event
from protocol.log.ledger import Ledger
from tests.vectors._common import state_json

from .vector_support import load, params_of, raises_exactly


def test_rotation_event_and_its_co_signature() -> None:
    data = load("rotations.json")
    params = params_of(data)
    assert params.suite == SUITE_V3
    label = bytes.fromhex(data["domains"]["D_ROTATE_RECOVERY"])
    assert label == b"smu/rotate-recovery/v1\x00"
    keys = {k["label"]: k for k in data["recovery_keys"]}
    for k in keys.values():
        r = RecoveryKey(bytes.fromhex(k["seed"]))
        assert r.public.hex() == k["public"] and r.commitment.hex() == k["commitment"]
    events = {e["name"]: e for e in data["events"]}
    rot = events["rotate"]
    raw = bytes.fromhex(rot["raw_hex"])
    fields = decode_flat(raw, params.max_event_bytes)
    assert isinstance(fields, list) and fields[3] == 7 == rot["kind"]
    # the body: [recovery_public, next_recovery_commitment, co_signature]
    public, nxt, cosig = fields[7]
    r = data["rotation"]
    assert (public.hex(), nxt.hex(), cosig.hex()) == (
        r["recovery_public"],
        r["next_recovery_commitment"],
        r["co_signature"],
    )
    assert encode_flat(fields[7]).hex() == rot["body_hex"]
    # the co-signature: D_ROTATE_RECOVERY || enc([network, account, parents, signer, next])
    message = label + encode_flat([fields[2], fields[4], fields[5], fields[8], nxt])
    assert message.hex() == r["co_signature_message_hex"]
    crypto.verify(public, message, cosig)
    assert recovery_commitment(public).hex() == keys["rotation/recovery-0"]["commitment"]
    assert nxt.hex() == keys["rotation/recovery-1"]["commitment"]
    assert crypto.hash32(crypto.D_EVENT_ID, bytes.fromhex(rot["core_hex"])).hex() == rot["event_id"]


def test_rotation_states_and_refusals() -> None:
    data = load("rotations.json")
    params = params_of(data)
    ledger = Ledger(params)
    account = b""
    for e in data["events"]:
        raw = bytes.fromhex(e["raw_hex"])
        event = decode_event(raw, params)
        verify_event(event, params)
        assert event.id.hex() == e["event_id"]
        account = account or event.id
        ledger.ingest(raw)
        if e["name"] == "rotate":
            assert state_json(ledger.state(account)) == data["state_after_rotation"]
            assert ledger.recovery_epoch(account) == account  # a rotation keeps the epoch
    assert state_json(ledger.state(account)) == data["state_after_recover"]
    assert (
        data["state_after_rotation"]["recovery_commitment"]
        == (data["recovery_keys"][1]["commitment"])
    )
    # the old key below the rotation: concurrent uses, compromised
    raced = Ledger(params)
    for e in [*data["events"][:3], data["concurrent_recover"]]:
        raced.ingest(bytes.fromhex(e["raw_hex"]))
    got = state_json(raced.state(account))
    assert got == data["state_compromised"]
    assert got["status"] == "compromised" and got["recovery_commitment"] == ""
    reasons = {v["reason"] for v in got["voided"]}
    assert reasons == {"concurrent_with_recover", "concurrent_with_rotation"}
    assert len(data["invalid"]) == 4
    for case in data["invalid"]:
        raw = bytes.fromhex(case["raw_hex"])
        if case["stage"] == "decode":
            raises_exactly(case["error"], decode_event, raw, params)
        elif case["stage"] == "verify":
            raises_exactly(case["error"], verify_event, decode_event(raw, params), params)
        else:
            fresh = Ledger(params)
            for e in data["events"][:3]:
                fresh.ingest(bytes.fromhex(e["raw_hex"]))
            raises_exactly(case["error"], fresh.ingest, raw)
