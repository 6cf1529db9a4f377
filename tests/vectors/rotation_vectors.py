"""rotations.json: the rotation of the recovery key (docs/PROTOCOL.md §6.8,
suite 3), with its co-signature's message, the account state after it, and
the ways a rotation is refused.

Written under suite 3 (``PARAMS_V3``); every other file stays under suite 2,
byte for byte as before.
"""

from __future__ import annotations

from protocol.core import crypto
from protocol.core.canonical import encode_flat
from protocol.log import authoring
from protocol.log.events import (
    D_ROTATE_RECOVERY,
    Event,
    RotateRecoveryBody,
    body_to_wire,
    decode_event,
    rotation_message,
    verify_event,
)
from protocol.log.ledger import Ledger

from ._common import (
    FORMAT_NOTE,
    PARAMS_V3,
    T0,
    Json,
    assert_raises,
    device_json,
    device_keys,
    params_json,
    recovery_json,
    recovery_key,
    state_json,
)
from .event_vectors import fields_of, forge

PHONE, LAPTOP = "rotation/alice-phone", "rotation/alice-laptop"
R0, R1, R2 = "rotation/recovery-0", "rotation/recovery-1", "rotation/recovery-2"


def _event_json(name: str, e: Event) -> dict[str, Json]:
    return {
        "name": name,
        "event_id": e.id.hex(),
        "kind": int(e.kind),
        "signer": e.signer.hex(),
        "parents": [p.hex() for p in e.parents],
        "timestamp": e.timestamp,
        "body_hex": encode_flat(body_to_wire(e.body)).hex(),
        "core_hex": e.core.hex(),
        "raw_hex": e.raw.hex(),
    }


def build() -> dict[str, Json]:
    params = PARAMS_V3
    phone, laptop = device_keys(PHONE), device_keys(LAPTOP)
    r0, r1, r2 = recovery_key(R0), recovery_key(R1), recovery_key(R2)
    g = authoring.genesis(
        params, phone, r0, display_name="alice", device_name="phone", timestamp=T0
    )
    acc = g.id
    add = authoring.add_device(
        params,
        acc,
        [g.id],
        phone,
        authoring.introduce(params, acc, laptop, "laptop"),
        timestamp=T0 + 1000,
    )
    rot = authoring.rotate_recovery(params, acc, [add.id], laptop, r0, r1, timestamp=T0 + 2000)
    rec = authoring.recover(
        params,
        acc,
        [rot.id],
        r1,
        device_keys("rotation/alice-new"),
        r2,
        device_name="new",
        timestamp=T0 + 3000,
    )
    ledger = Ledger(params)
    for e in (g, add, rot):
        ledger.ingest(e.raw)
    after_rotation = ledger.state(acc)
    ledger.ingest(rec.raw)
    after_recover = ledger.state(acc)
    # The old key used below the rotation: a recover concurrent with it.
    race = authoring.recover(
        params,
        acc,
        [add.id],
        r0,
        device_keys("rotation/other-hand"),
        r2,
        device_name="other",
        timestamp=T0 + 2100,
    )
    raced = Ledger(params)
    for e in (g, add, rot, race):
        raced.ingest(e.raw)
    compromised = raced.state(acc)
    assert compromised.recovery_commitment is None and not compromised.active_keys
    body = rot.body
    assert isinstance(body, RotateRecoveryBody)
    message = rotation_message(params.network_id, acc, rot.parents, rot.signer, r1.commitment)
    assert message.startswith(D_ROTATE_RECOVERY)

    invalid: list[dict[str, Json]] = []
    bits = params.pow_bits(False, special=True)

    def case(name: str, raw: bytes, error: str, stage: str, note: str) -> None:
        if stage == "decode":
            assert_raises(error, decode_event, raw, params)
        elif stage == "verify":
            assert_raises(error, verify_event, decode_event(raw, params), params)
        else:
            fresh = Ledger(params)
            for e in (g, add, rot):
                fresh.ingest(e.raw)
            assert_raises(error, fresh.ingest, raw)
        invalid.append(
            {"name": name, "raw_hex": raw.hex(), "error": error, "stage": stage, "note": note}
        )

    fields = fields_of(rot)
    same = [
        r0.public,
        r0.commitment,
        r0.sign(rotation_message(params.network_id, acc, rot.parents, rot.signer, r0.commitment)),
    ]
    case(
        "same_key",
        forge([*fields[:7], same, fields[8]], laptop.sign, bits),
        "SchemaError",
        "decode",
        "a rotation must commit to another key than the one it rotates",
    )
    moved = authoring.rotate_recovery(params, acc, [g.id], laptop, r0, r1, timestamp=T0 + 2000)
    moved_fields = fields_of(moved)
    moved_fields[7] = body_to_wire(body)  # the co-signature of the rotation at [add]
    case(
        "moved_co_signature",
        forge(moved_fields, laptop.sign, bits),
        "BadSignatureError",
        "verify",
        "the co-signature covers the parents: the same body at other parents fails",
    )
    stale = authoring.rotate_recovery(params, acc, [rot.id], phone, r0, r2, timestamp=T0 + 2500)
    case(
        "stale_key",
        stale.raw,
        "UnauthorisedError",
        "ingest",
        "above the rotation r0 is no longer in force: a rotation co-signed by it is refused",
    )
    old_recover = authoring.recover(
        params,
        acc,
        [rot.id],
        r0,
        device_keys("rotation/thief"),
        r2,
        device_name="thief",
        timestamp=T0 + 2600,
    )
    case(
        "old_key_recover",
        old_recover.raw,
        "UnauthorisedError",
        "ingest",
        "a recover with the rotated-away key above the rotation is refused",
    )

    return {
        "format": FORMAT_NOTE,
        "params": params_json(params),
        "domains": {
            "D_ROTATE_RECOVERY": D_ROTATE_RECOVERY.hex(),
            "D_RECOVERY_COMMIT": crypto.D_RECOVERY_COMMIT.hex(),
        },
        "devices": [device_json(PHONE), device_json(LAPTOP)],
        "recovery_keys": [recovery_json(R0), recovery_json(R1), recovery_json(R2)],
        "events": [
            _event_json("genesis", g),
            _event_json("add_laptop", add),
            _event_json("rotate", rot),
            _event_json("recover_with_new_key", rec),
        ],
        "rotation": {
            "recovery_public": body.recovery_public.hex(),
            "next_recovery_commitment": body.recovery_commitment.hex(),
            "co_signature_message_hex": message.hex(),
            "co_signature": body.recovery_signature.hex(),
        },
        "state_after_rotation": state_json(after_rotation),
        "state_after_recover": state_json(after_recover),
        # genesis, add_laptop, rotate, then this recover signed by recovery-0
        # at add_laptop: two concurrent uses of the key (§7.2, rule 2)
        "concurrent_recover": _event_json("recover_below_the_rotation", race),
        "state_compromised": state_json(compromised),
        "invalid": invalid,
    }
