"""events.json: one valid event of each kind, and invalid events
(docs/PROTOCOL.md §5).

Invalid events are *forged*: built field by field (``forge``) with a real
proof-of-work and a real signature, so each carries exactly one defect.
"""

from __future__ import annotations

from collections.abc import Callable

from protocol.core import crypto
from protocol.core.canonical import encode, encode_flat
from protocol.core.params import FORMAT_VERSION, SUITE_V1
from protocol.log import authoring
from protocol.log.events import (
    AddDeviceBody,
    DeviceIntro,
    Event,
    GenesisBody,
    ProfileBody,
    RecoverBody,
    RevokeDeviceBody,
    RotateEncKeyBody,
    body_to_wire,
    decode_event,
    pop_message,
    verify_event,
)
from protocol.log.ledger import Ledger

from ._common import (
    FORMAT_NOTE,
    PARAMS,
    T0,
    Json,
    assert_raises,
    core_bytes,
    device_json,
    device_keys,
    domains_json,
    params_json,
    recovery_json,
    recovery_key,
)

Sign = Callable[[bytes], bytes]

DEVICES = {
    "phone": "events/alice-phone",
    "laptop": "events/alice-laptop",
    "tablet": "events/alice-tablet",
    "laptop-enc2": "events/alice-laptop-enc2",
    "stranger": "events/stranger",
}
RECOVERIES = {"r0": "events/alice-recovery-0", "r1": "events/alice-recovery-1"}

# Curve25519 u-coordinates: 0 has small order, 1 has order 1 (both the
# identity class); p = 2**255 - 19 is a non-canonical encoding of 0.
X25519_ZERO = bytes(32)
X25519_ORDER_8 = (
    325606250916557431795983626356110631294008115727848805560023387167927233504
).to_bytes(32, "little")
X25519_P = (2**255 - 19).to_bytes(32, "little")


def fields_of(e: Event) -> list[object]:
    """The nine core fields before the nonce, as wire values."""
    return [
        FORMAT_VERSION,
        SUITE_V1,
        e.network,
        int(e.kind),
        e.account,
        list(e.parents),
        e.timestamp,
        body_to_wire(e.body),
        e.signer,
    ]


def forge(
    fields: list[object], sign: Sign, bits: int, accept: Callable[[bytes], bool] | None = None
) -> bytes:
    """Grind a nonce from 0 until ``accept(pow_hash)``, sign, and encode."""
    if accept is None:

        def accept(h: bytes) -> bool:
            return crypto.leading_zero_bits_ok(h, bits)

    n = 0
    while True:
        nonce = n.to_bytes(8, "big")
        core = core_bytes(fields, nonce)
        if accept(crypto.hash32(crypto.D_POW, core)):
            break
        n += 1
    return encode_flat([*fields, nonce, sign(crypto.D_EVENT_SIG + core)])


def _with(fields: list[object], **changes: object) -> list[object]:
    names = ["version", "suite", "network", "kind", "account", "parents", "ts", "body", "signer"]
    out = list(fields)
    for k, v in changes.items():
        out[names.index(k)] = v
    return out


def _device_json(d: DeviceIntro) -> dict[str, Json]:
    return {
        "sign_public": d.sign_public.hex(),
        "enc_public": d.enc_public.hex(),
        "name": d.name,
        "pop": d.pop.hex(),
    }


def body_json(e: Event) -> dict[str, Json]:
    b = e.body
    if isinstance(b, GenesisBody):
        return {
            "display_name": b.display_name,
            "device": _device_json(b.device),
            "recovery_commitment": b.recovery_commitment.hex(),
        }
    if isinstance(b, AddDeviceBody):
        return {"device": _device_json(b.device)}
    if isinstance(b, RevokeDeviceBody):
        return {"device": b.device.hex()}
    if isinstance(b, RecoverBody):
        return {
            "device": _device_json(b.device),
            "recovery_commitment": b.recovery_commitment.hex(),
        }
    if isinstance(b, RotateEncKeyBody):
        return {"enc_public": b.enc_public.hex()}
    assert isinstance(b, ProfileBody)
    return {"display_name": b.display_name}


def event_json(name: str, e: Event, signer: str, introduced: str | None) -> dict[str, Json]:
    core = e.core
    out: dict[str, Json] = {
        "name": name,
        "kind": int(e.kind),
        "kind_name": e.kind.name,
        "signer_key": signer,
        "fields": {
            "version": e.version,
            "suite": e.suite,
            "network": e.network,
            "kind": int(e.kind),
            "account": e.account.hex(),
            "parents": [p.hex() for p in e.parents],
            "timestamp": e.timestamp,
            "body": body_json(e),
            "signer": e.signer.hex(),
            "nonce": e.nonce.hex(),
        },
        "body_hex": encode_flat(body_to_wire(e.body)).hex(),
        "core_hex": core.hex(),
        "event_id": e.id.hex(),
        "pow_hash": crypto.hash32(crypto.D_POW, core).hex(),
        "signing_input_hex": (crypto.D_EVENT_SIG + core).hex(),
        "signature": e.signature.hex(),
        "raw_hex": e.raw.hex(),
    }
    dev = e.introduced_device
    if dev is not None:
        out["introduced_key"] = introduced
        out["pop_message_hex"] = pop_message(
            e.network, e.account, dev.sign_public, dev.enc_public
        ).hex()
    return out


def _valid_chain() -> list[tuple[str, Event, str, str | None]]:
    p = PARAMS
    phone, laptop, tablet = (device_keys(DEVICES[n]) for n in ("phone", "laptop", "tablet"))
    enc2 = device_keys(DEVICES["laptop-enc2"]).enc_public
    r0, r1 = recovery_key(RECOVERIES["r0"]), recovery_key(RECOVERIES["r1"])
    g = authoring.genesis(p, phone, r0, display_name="Alice", device_name="phone", timestamp=T0)
    acc = g.id
    add = authoring.add_device(
        p, acc, [g.id], phone, authoring.introduce(p, acc, laptop, "laptop"), timestamp=T0 + 1000
    )
    rot = authoring.rotate_enc_key(p, acc, [add.id], laptop, enc2, timestamp=T0 + 2000)
    prof = authoring.profile(
        p, acc, [add.id], phone, display_name="Alïce Liddell \U0001f407", timestamp=T0 + 2500
    )
    rev = authoring.revoke_device(
        p, acc, [rot.id, prof.id], phone, laptop.sign_public, timestamp=T0 + 3000
    )
    rec = authoring.recover(
        p, acc, [rev.id], r0, tablet, r1, device_name="tablet", timestamp=T0 + 4000
    )
    return [
        ("genesis", g, "phone", "phone"),
        ("add_device", add, "phone", "laptop"),
        ("rotate_enc_key", rot, "laptop", None),
        ("profile", prof, "phone", None),
        ("revoke_device", rev, "phone", None),
        ("recover", rec, "r0", "tablet"),
    ]


def _invalid(chain: dict[str, Event]) -> list[tuple[str, str, bytes, str, str]]:
    """(name, description, raw, stage, error class)."""
    p = PARAMS
    phone, laptop = device_keys(DEVICES["phone"]), device_keys(DEVICES["laptop"])
    stranger = device_keys(DEVICES["stranger"])
    r0 = recovery_key(RECOVERIES["r0"])
    g, add, rot = chain["genesis"], chain["add_device"], chain["rotate_enc_key"]
    prof = chain["profile"]
    acc = g.id
    gf, af, rf, pf = fields_of(g), fields_of(add), fields_of(rot), fields_of(prof)
    rec_f = fields_of(chain["recover"])
    rec_body = rec_f[7]
    assert isinstance(rec_body, list)
    ev_bits, gen_bits = p.event_pow_bits, p.genesis_pow_bits
    out: list[tuple[str, str, bytes, str, str]] = []

    def case(name: str, why: str, raw: bytes, stage: str, error: str) -> None:
        out.append((name, why, raw, stage, error))

    def intro(
        keys_label: str,
        name: str,
        *,
        account: bytes = acc,
        enc: bytes | None = None,
        pop_enc: bytes | None = None,
        pop_net: str = p.network_id,
    ) -> list[object]:
        k = device_keys(keys_label)
        e = enc if enc is not None else k.enc_public
        msg = pop_message(pop_net, account, k.sign_public, pop_enc if pop_enc is not None else e)
        return [k.sign_public, e, name, k.sign(msg)]

    # -- signatures (verify_event) ----------------------------------------
    sig = bytearray(add.raw)
    sig[-64] ^= 0x01  # first byte of R
    case(
        "bad signature",
        "one bit of the signature's R flipped",
        bytes(sig),
        "verify",
        "BadSignatureError",
    )
    case(
        "signed by another key",
        "signer field names the phone, the laptop signed",
        forge(af, laptop.sign, ev_bits),
        "verify",
        "BadSignatureError",
    )
    case(
        "bad PoP: other account",
        "the new device's proof of possession names another account",
        forge(_with(af, body=[intro("events/new", "new", account=bytes(32))]), phone.sign, ev_bits),
        "verify",
        "BadSignatureError",
    )
    case(
        "bad PoP: other encryption key",
        "the proof of possession covers a different X25519 key than the event carries",
        forge(
            _with(
                af,
                body=[intro("events/new", "new", pop_enc=device_keys("events/other").enc_public)],
            ),
            phone.sign,
            ev_bits,
        ),
        "verify",
        "BadSignatureError",
    )
    case(
        "bad PoP: other network",
        "the proof of possession was made for network smu-main",
        forge(
            _with(af, body=[intro("events/new", "new", pop_net="smu-main")]), phone.sign, ev_bits
        ),
        "verify",
        "BadSignatureError",
    )
    case(
        "bad PoP in a recover",
        "the recovered device's PoP names another account",
        forge(
            _with(rec_f, body=[intro("events/new", "new", account=bytes(32)), rec_body[1]]),
            r0.sign,
            ev_bits,
        ),
        "verify",
        "BadSignatureError",
    )
    case(
        "genesis signed by another device",
        "a genesis is signed by its own first device; here the signer is a stranger",
        forge(_with(gf, signer=stranger.sign_public), stranger.sign, gen_bits),
        "verify",
        "SchemaError",
    )

    # -- proof-of-work (verify_event) ---------------------------------------
    case(
        "insufficient work",
        f"pow hash has fewer than {ev_bits} leading zero bits",
        forge(af, phone.sign, ev_bits, lambda h: not crypto.leading_zero_bits_ok(h, ev_bits)),
        "verify",
        "InsufficientWorkError",
    )
    case(
        "genesis with only event work",
        f"pow hash has {ev_bits} to {gen_bits - 1} leading zero bits: enough for an event, "
        "not for a genesis",
        forge(
            gf,
            phone.sign,
            gen_bits,
            lambda h: (
                crypto.leading_zero_bits_ok(h, ev_bits)
                and not crypto.leading_zero_bits_ok(h, gen_bits)
            ),
        ),
        "verify",
        "InsufficientWorkError",
    )

    # -- structure (decode_event) -------------------------------------------
    case(
        "wrong network",
        "network id smu-main",
        forge(_with(af, network="smu-main"), phone.sign, ev_bits),
        "decode",
        "WrongNetworkError",
    )
    case(
        "wrong version",
        "format version 2",
        forge(_with(af, version=2), phone.sign, ev_bits),
        "decode",
        "UnsupportedVersionError",
    )
    case(
        "wrong suite",
        "algorithm suite 2",
        forge(_with(af, suite=2), phone.sign, ev_bits),
        "decode",
        "UnsupportedVersionError",
    )
    kind_at = add.raw.index(b"\xabsmu-vectors") + 12
    assert add.raw[kind_at] == 2
    case(
        "non-canonical integer",
        "the kind 2 written as uint8 (cc 02)",
        add.raw[:kind_at] + b"\xcc" + add.raw[kind_at:],
        "decode",
        "NonCanonicalError",
    )
    net_at = add.raw.index(b"\xabsmu-vectors")
    case(
        "non-canonical string",
        "the network id written as str8 (d9 0b)",
        add.raw[:net_at] + b"\xd9\x0b" + add.raw[net_at + 1 :],
        "decode",
        "NonCanonicalError",
    )
    case(
        "trailing byte",
        "a valid event followed by 0x00",
        add.raw + b"\x00",
        "decode",
        "NonCanonicalError",
    )
    case(
        "network as bin",
        "the network id as bin instead of str (bin/str confusion)",
        forge(_with(af, network=p.network_id.encode()), phone.sign, ev_bits),
        "decode",
        "SchemaError",
    )
    case(
        "device name as bin",
        "a device name as bin instead of str",
        forge(
            _with(
                af, body=[[*intro("events/new", "new")[:2], b"new", intro("events/new", "new")[3]]]
            ),
            phone.sign,
            ev_bits,
        ),
        "decode",
        "SchemaError",
    )
    case(
        "unknown kind",
        "kind 7",
        forge(_with(pf, kind=7), phone.sign, ev_bits),
        "decode",
        "SchemaError",
    )
    case(
        "genesis with an account",
        "a genesis's account field must be empty",
        forge(_with(gf, account=bytes(32)), phone.sign, gen_bits),
        "decode",
        "SchemaError",
    )
    case(
        "twelve fields",
        "a version-1 event has 11 fields",
        encode_flat([*gf, add.nonce, add.signature, 0]),
        "decode",
        "SchemaError",
    )
    case(
        "short signer",
        "a 31-byte signer key",
        forge(_with(pf, signer=phone.sign_public[:31]), phone.sign, ev_bits),
        "decode",
        "SchemaError",
    )

    # Values canonical MessagePack has no place for, inside an event: the
    # schema check rejects them (SchemaError), before any canonical walk.
    no_place: list[tuple[str, dict[str, object]]] = [
        ("timestamp as float64", {"ts": float(T0)}),
        ("account as nil", {"account": None}),
        ("kind as bool", {"kind": True}),
    ]
    for what, changes in no_place:
        case(what, what, forge(_with(pf, **changes), phone.sign, ev_bits), "decode", "SchemaError")
    case(
        "a map, not an array",
        "an event is an array",
        encode({"kind": 6}),
        "decode",
        "SchemaError",
    )

    # -- parents (decode_event) ---------------------------------------------
    two = sorted([add.id, rot.id])
    case(
        "unsorted parents",
        "two parents in descending order",
        forge(_with(pf, parents=two[::-1]), phone.sign, ev_bits),
        "decode",
        "BadParentsError",
    )
    case(
        "duplicate parents",
        "the same parent twice",
        forge(_with(pf, parents=[add.id, add.id]), phone.sign, ev_bits),
        "decode",
        "BadParentsError",
    )
    nine = sorted([add.id, *(bytes([i]) * 32 for i in range(1, 9))])
    case(
        "too many parents",
        f"{p.max_parents + 1} sorted parents",
        forge(_with(pf, parents=nine), phone.sign, ev_bits),
        "decode",
        "BadParentsError",
    )
    case(
        "genesis with parents",
        "a genesis naming a parent",
        forge(_with(gf, parents=[bytes(32)]), phone.sign, gen_bits),
        "decode",
        "BadParentsError",
    )
    case(
        "no parents",
        "a non-genesis event naming no parent",
        forge(_with(pf, parents=[]), phone.sign, ev_bits),
        "decode",
        "BadParentsError",
    )

    # -- keys (decode_event) --------------------------------------------------
    case(
        "low-order X25519 key in add-device",
        "encryption key u = 0",
        forge(_with(af, body=[intro("events/new", "new", enc=X25519_ZERO)]), phone.sign, ev_bits),
        "decode",
        "InvalidKeyError",
    )
    case(
        "order-8 X25519 key in add-device",
        "encryption key of order 8",
        forge(
            _with(af, body=[intro("events/new", "new", enc=X25519_ORDER_8)]), phone.sign, ev_bits
        ),
        "decode",
        "InvalidKeyError",
    )
    case(
        "low-order X25519 key in a rotation",
        "rotating to u = 1",
        forge(_with(rf, body=[(1).to_bytes(32, "little")]), laptop.sign, ev_bits),
        "decode",
        "InvalidKeyError",
    )
    case(
        "non-canonical X25519 key",
        "u = p (an encoding of 0 that is not reduced)",
        forge(_with(rf, body=[X25519_P]), laptop.sign, ev_bits),
        "decode",
        "InvalidKeyError",
    )

    # -- names (decode_event) -------------------------------------------------
    for what, name in [
        ("control character (BEL)", "ali\x07ce"),
        ("newline", "alice\nroot"),
        ("DEL (U+007F)", "alice\x7f"),
        ("tab", "alice\tsmith"),
        ("escape sequence (ESC [2J)", "\x1b[2Jalice"),
        ("trailing space", "alice "),
        ("no-break space U+00A0 (whitespace other than space)", "alice\u00a0smith"),
        ("bidi override U+202E", "alice\u202egnp.exe"),
        ("zero-width joiner U+200D", "al\u200dice"),
        ("private use U+E000", "alice\ue000"),
        ("noncharacter U+FFFE", "alice\ufffe"),
        ("leading space", " alice"),
        ("doubled space", "alice  smith"),
        ("empty", ""),
        (f"{p.max_name_bytes + 1} bytes", "a" * (p.max_name_bytes + 1)),
    ]:
        case(
            f"bad display name: {what}",
            f"profile display name {name!r}",
            forge(_with(pf, body=[name]), phone.sign, ev_bits),
            "decode",
            "BadNameError",
        )
    case(
        "bad device name: bidi override U+202E",
        "add-device with a device name holding U+202E",
        forge(_with(af, body=[intro("events/new", "phone\u202e")]), phone.sign, ev_bits),
        "decode",
        "BadNameError",
    )

    # -- the order of checks inside an intro (PROTOCOL.md §5.3, step 12) ------
    short_sign = intro("events/new", "")
    short_sign[0] = bytes(31)
    case(
        "intro checked out of array order: the name before the signing key",
        "add-device whose intro has a 31-byte signing key and an empty name",
        forge(_with(af, body=[short_sign]), phone.sign, ev_bits),
        "decode",
        "BadNameError",
    )
    bad_enc = intro("events/new", "", enc=X25519_ZERO)
    case(
        "intro checked out of array order: the encryption key before the name",
        "add-device whose intro has a low-order encryption key and an empty name",
        forge(_with(af, body=[bad_enc]), phone.sign, ev_bits),
        "decode",
        "InvalidKeyError",
    )

    # -- time and size --------------------------------------------------------
    for what, ts in [
        ("zero timestamp", 0),
        ("timestamp before the network minimum", p.min_timestamp_ms - 1),
        ("timestamp after the network maximum", p.max_timestamp_ms + 1),
    ]:
        case(
            what,
            f"timestamp {ts}",
            forge(_with(pf, ts=ts), phone.sign, ev_bits),
            "decode",
            "BadTimestampError",
        )
    big = forge(_with(pf, body=["x" * (p.max_event_bytes + 1)]), phone.sign, ev_bits)
    case(
        "oversized",
        f"{len(big)} bytes, over the {p.max_event_bytes}-byte limit (checked before parsing)",
        big,
        "decode",
        "SizeLimitError",
    )
    return out


def build() -> dict[str, Json]:
    chain = _valid_chain()
    ledger = Ledger(PARAMS)
    for _, e, _, _ in chain:
        ledger.ingest(e.raw)  # the valid chain is a valid account history
    valid = [event_json(*row) for row in chain]
    invalid = []
    for name, why, raw, stage, error in _invalid({n: e for n, e, _, _ in chain}):
        if stage == "decode":
            assert_raises(error, decode_event, raw, PARAMS)
        else:
            event = decode_event(raw, PARAMS)
            assert_raises(error, verify_event, event, PARAMS)
        invalid.append(
            {"name": name, "why": why, "stage": stage, "error": error, "raw_hex": raw.hex()}
        )
    return {
        "description": "Events (docs/PROTOCOL.md §5). 'valid' is one account's history, one "
        "event of each kind, in delivery order. 'invalid': each raw event fails at 'stage' "
        "('decode': structure, decode_event; 'verify': proof-of-work and signatures, "
        "verify_event, after decoding succeeds) with 'error'.",
        "format": FORMAT_NOTE,
        "params": params_json(),
        "domains": domains_json(),
        "keys": {
            **{n: device_json(label) for n, label in DEVICES.items()},
            **{n: recovery_json(label) for n, label in RECOVERIES.items()},
        },
        "valid": valid,
        "invalid": invalid,
    }
